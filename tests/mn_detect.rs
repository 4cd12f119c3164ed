//! Deterministic tests of trusted-network detection in the node core
//! (RFC 5266 §3.4, §3.4.1, §3.4.2; RFC 5265 §3.2, §4.1): every verdict
//! path, forged replies, cancelled probes, the order of the probe's reply
//! and the VPN's events, the hold of the home address's traffic, and
//! registration-based monitoring. A hand-held clock; the i-HA's replies
//! are built and signed here (with TNC where a configured i-HA would add
//! it, RFC 5265 §4.3).

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mip4::auth::{sign_reply, SecurityAssociation};
use mip4::mn::detect::{Cause, DetectConfig, Verdict, VpnWhenInside};
use mip4::mn::node::{NodeConfig, NodeEvent, VpnRequest, VPN_COMING_WAIT};
use mip4::mn::registration::Retransmit;
use mip4::mn::{Action, Mode, PathMtu, State, TrustPolicy, VpnInput, VpnSa};
use mip4::wire::{Extension, ReplyCode, ReplyRepr, RequestRepr, MIP_PORT};
use support::{HA, HOA, KEY, SPI};

/// Physical addresses: two external networks, two trusted subnets.
const EXT_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const EXT_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const IN_1: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const IN_2: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 5);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const TIA: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

fn ha() -> SocketAddrV4 {
    SocketAddrV4::new(HA, MIP_PORT)
}

fn detect_config() -> DetectConfig {
    DetectConfig {
        retransmit: Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(2),
            max_attempts: 3,
        },
        t_monitor: Some(Duration::from_secs(60)),
        monitor_grace: Duration::from_secs(10),
        vpn_when_inside: VpnWhenInside::Keep,
        vpn_connection: Some("vpn".into()),
    }
}

fn node_config(d: DetectConfig) -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into(), "eth1".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Tnc(d);
    cfg.vpn_connections = vec!["vpn".into()];
    cfg
}

fn vpn_sa(local: Ipv4Addr, tia: Option<Ipv4Addr>) -> VpnSa {
    let mut s = VpnSa::new("vpn", 1);
    s.local = Some(local.into());
    s.local_ifname = Some("eth0".into());
    s.gateway = Some(GW.into());
    s.tia = tia;
    s.mtu = PathMtu {
        physical: Some(1500),
        tia_device: Some(1400),
        outer_ipv6: false,
    };
    s
}

fn moved(to: Ipv4Addr) -> VpnInput {
    VpnInput::Moved {
        ike_sa: 1,
        local: Some(to.into()),
        local_ifname: Some("eth0".into()),
        gateway: Some(GW.into()),
        mtu: PathMtu {
            physical: Some(1500),
            tia_device: Some(1400),
            outer_ipv6: false,
        },
    }
}

/// What the i-HA (or a forger) answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Accepted, TNC inside the authenticated part (a trusted source).
    Tnc,
    /// Accepted, authenticated, no TNC (an i-HA without trusted_networks).
    NoTnc,
    /// Authenticated, no TNC, with a TNC appended after the authenticator
    /// by an on-path host.
    TncAppended,
    /// TNC, signed with a key the forger made up.
    ForgedKey,
    /// TNC, no authenticator at all.
    Unsigned,
    /// An authenticated denial.
    Denied(ReplyCode),
}

fn reply_bytes(req: &RequestRepr, a: Answer) -> Vec<u8> {
    let sa = support::sa();
    let mut r = ReplyRepr {
        code: ReplyCode::ACCEPTED,
        lifetime: req.lifetime,
        home_address: req.home_address,
        home_agent: HA,
        identification: req.identification,
        extensions: vec![Extension::TrustedNetworksConfigured],
    };
    match a {
        Answer::Tnc => sign_reply(&r, &sa),
        Answer::NoTnc => {
            r.extensions.clear();
            sign_reply(&r, &sa)
        }
        Answer::TncAppended => {
            r.extensions.clear();
            let mut b = sign_reply(&r, &sa);
            b.extend_from_slice(&Extension::TrustedNetworksConfigured.to_bytes());
            b
        }
        Answer::ForgedKey => {
            let guess = SecurityAssociation::hmac_md5(SPI, b"forger's own key").unwrap();
            assert_ne!(KEY, b"forger's own key");
            sign_reply(&r, &guess)
        }
        Answer::Unsigned => r.to_bytes(),
        Answer::Denied(code) => {
            r.code = code;
            r.lifetime = 0;
            sign_reply(&r, &sa)
        }
    }
}

/// A probe datagram as the daemon would send it.
struct Probe {
    ifname: String,
    src: Ipv4Addr,
    req: RequestRepr,
    /// The interface charon reports for `src`, if any.
    fallback: Option<String>,
}

use sim::Sim;

impl Sim {
    fn new() -> Self {
        Self::with(detect_config())
    }

    fn with(d: DetectConfig) -> Self {
        Self::from_config(node_config(d))
    }

    /// Probe identifications seeded too: runs repeat.
    fn from_config(cfg: NodeConfig) -> Self {
        let mut s = Self::start(cfg);
        s.node.seed_probes(11);
        s
    }

    fn probes(&mut self) -> Vec<Probe> {
        std::iter::from_fn(|| self.node.poll_probe_transmit())
            .map(|p| {
                assert_eq!(p.transmit.dst, ha(), "the probe goes to the i-HA");
                Probe {
                    ifname: p.ifname,
                    src: p.transmit.src.expect("a probe has a source"),
                    req: RequestRepr::parse_bytes(&p.transmit.payload).unwrap(),
                    fallback: p.fallback_ifname,
                }
            })
            .collect()
    }

    fn one_probe(&mut self) -> Probe {
        let mut p = self.probes();
        assert_eq!(p.len(), 1, "expected one probe datagram");
        p.pop().unwrap()
    }

    /// Registration requests through the node's own client (never a
    /// probe).
    fn requests(&mut self) -> Vec<(Option<Ipv4Addr>, RequestRepr)> {
        std::iter::from_fn(|| self.node.poll_transmit())
            .map(|t| (t.src, RequestRepr::parse_bytes(&t.payload).unwrap()))
            .collect()
    }

    fn deliver(&mut self, req: &RequestRepr, a: Answer) {
        let bytes = reply_bytes(req, a);
        self.node.handle_datagram(self.now, ha(), &bytes);
    }

    fn verdicts(&mut self) -> Vec<(Ipv4Addr, Verdict, Cause)> {
        self.events();
        self.events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::TrustVerdict {
                    address,
                    verdict,
                    cause,
                    ..
                } => Some((*address, *verdict, *cause)),
                _ => None,
            })
            .collect()
    }

    fn modes(&mut self) -> Vec<(Option<Mode>, Option<Mode>)> {
        self.events();
        self.events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::ModeChanged { from, to, .. } => Some((*from, *to)),
                _ => None,
            })
            .collect()
    }

    /// Outside on EXT_A: the probe fails, the VPN's TIA is registered.
    fn outside_in_mc(&mut self) {
        self.node.address_added(self.now, "eth0", EXT_A, 24);
        let p = self.one_probe();
        assert_eq!(p.src, EXT_A);
        self.node
            .vpn_input(self.now, VpnInput::TiaAssigned(vpn_sa(EXT_A, Some(TIA))));
        assert!(
            self.requests().is_empty(),
            "the TIA waits for the probe's verdict (RFC 5266 §3.4.2 step 4)"
        );
        self.run_for(Duration::from_secs(5));
        self.probes();
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "{reqs:?}");
        assert_eq!(reqs[0].0, Some(TIA));
        self.deliver(&reqs[0].1, Answer::Tnc);
        assert_eq!(self.node.state(), State::Registered { care_of: TIA });
        assert_eq!(self.node.mode(), Some(Mode::Mc));
        self.actions();
        self.events();
        self.events.clear();
        self.actions.clear();
    }

    /// Inside on IN_1 (eth0): probe answered with TNC.
    fn inside_in_c(&mut self) {
        self.node.address_added(self.now, "eth0", IN_1, 24);
        let p = self.one_probe();
        self.deliver(&p.req, Answer::Tnc);
        assert_eq!(self.node.state(), State::Registered { care_of: IN_1 });
        self.actions();
        self.events();
        self.events.clear();
        self.actions.clear();
    }
}

#[test]
fn trusted_only_with_an_authenticated_tnc_and_the_probe_is_the_registration() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    assert_eq!(s.node.state(), State::Detecting { address: IN_1 });
    assert_eq!(s.node.mode(), None, "no mode while detecting");
    let p = s.one_probe();
    // RFC 5266 §3.4: from the new physical address as co-located care-of
    // address, to the i-HA, leaving by the interface it belongs to.
    assert_eq!(p.ifname, "eth0");
    assert_eq!(p.src, IN_1);
    assert_eq!(p.req.care_of_address, IN_1);
    assert_eq!(p.req.home_address, HOA);
    assert!(s.requests().is_empty(), "nothing else is sent");

    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert!(
        s.requests().is_empty() && s.probes().is_empty(),
        "the accepted probe is the registration: nothing registered twice"
    );
    let b = s.node.client().binding().expect("binding adopted");
    assert_eq!(b.care_of_address, IN_1);
    assert_eq!(
        s.actions(),
        vec![Action::TunnelUp {
            home: HOA,
            care_of: IN_1,
            home_agent: HA,
            reverse_tunnel: true
        }]
    );
    assert_eq!(
        s.verdicts(),
        vec![(IN_1, Verdict::Trusted, Cause::TncReply)]
    );
    assert_eq!(s.modes(), vec![(None, Some(Mode::C))]);
    let st = s.node.status(s.now);
    let d = st.detection.unwrap();
    assert_eq!(d.counters.trusted, 1);
    assert_eq!(d.counters.probe_requests_sent, 1);
    assert_eq!(st.registration.registrations, 1, "probe counters adopted");
}

#[test]
fn accepted_without_tnc_is_untrusted_and_asks_for_the_vpn() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::NoTnc);
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::AcceptedWithoutTnc)]
    );
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });
    assert_eq!(s.node.mode(), None);
    assert!(s.node.client().binding().is_none(), "nothing adopted");
    // RFC 5266 §3.4.2 step 1: no VPN, so ask charon for it.
    assert_eq!(
        s.actions(),
        vec![Action::Vpn(VpnRequest::Initiate {
            connection: "vpn".into()
        })]
    );
}

#[test]
fn tnc_appended_after_the_authenticator_is_not_believed() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::TncAppended);
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::AcceptedWithoutTnc)]
    );
    assert_ne!(s.node.mode(), Some(Mode::C));
}

#[test]
fn denial_is_untrusted() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::Denied(ReplyCode::HA_ADMIN_PROHIBITED));
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::Denied { code: 129 })]
    );
}

#[test]
fn forged_tnc_replies_change_nothing_and_the_probe_times_out_untrusted() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    // An on-path host sees the request and answers at once, with TNC,
    // under a key it made up, and without any authenticator.
    s.deliver(&p.req, Answer::ForgedKey);
    s.deliver(&p.req, Answer::Unsigned);
    assert_eq!(s.node.state(), State::Detecting { address: EXT_A });
    assert!(s.verdicts().is_empty(), "nothing unauthenticated decides");
    let dropped = s
        .events
        .iter()
        .filter(|e| matches!(e, NodeEvent::ProbeReplyDropped { .. }))
        .count();
    assert_eq!(dropped, 2);
    // The retransmissions get forged answers too; the i-HA stays silent.
    s.run_for(Duration::from_secs(1));
    let p2 = s.one_probe();
    s.deliver(&p2.req, Answer::ForgedKey);
    s.run_for(Duration::from_secs(10));
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::NoReply { attempts: 3 })]
    );
    let st = s.node.status(s.now);
    assert_eq!(st.detection.unwrap().counters.forged_replies, 3);
    assert!(!s.modes().iter().any(|(_, to)| *to == Some(Mode::C)));
}

#[test]
fn silence_is_untrusted_after_the_configured_retransmissions() {
    let mut d = detect_config();
    d.retransmit.max_attempts = 4;
    let mut s = Sim::with(d);
    let t0 = s.now;
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let mut sent = vec![(Duration::ZERO, s.one_probe())];
    while s.verdicts().is_empty() {
        let next = s.node.poll_timeout().expect("a timer runs");
        s.now = next;
        s.node.handle_timeout(next);
        for p in s.probes() {
            sent.push((next - t0, p));
        }
    }
    // 1 s, then doubling up to the 2 s cap: 0, 1, 3, 5; untrusted at 7.
    let at: Vec<u64> = sent.iter().map(|(t, _)| t.as_secs()).collect();
    assert_eq!(at, vec![0, 1, 3, 5]);
    assert!(sent.iter().all(|(_, p)| p.src == EXT_A));
    assert_eq!(s.now - t0, Duration::from_secs(7));
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::NoReply { attempts: 4 })]
    );
}

/// The lab's probe settings (lab/hosts/mn/mip4d-detect.conf): 1 s, one
/// retransmission 1 s later, untrusted after 2 s of silence.
fn lab_detect_config() -> DetectConfig {
    let mut d = detect_config();
    d.retransmit = Retransmit {
        initial_timeout: Duration::from_secs(1),
        max_timeout: Duration::from_secs(1),
        max_attempts: 2,
    };
    d
}

/// On the lab's settings, a probe from `addr` that the daemon holds for
/// want of a route (it said so: `transmit_parked`), and when it began.
fn parked_probe(addr: Ipv4Addr) -> (Sim, std::time::Instant, Probe) {
    let mut s = Sim::with(lab_detect_config());
    let t0 = s.now;
    s.node.address_added(s.now, "eth0", addr, 24);
    let p = s.one_probe();
    s.node.transmit_parked(p.req.identification);
    (s, t0, p)
}

/// A probe the daemon held for want of a route (a DHCP-style attach adds
/// the address before the default route; under the kernel tier's load the
/// route came over a second later) is timed from when it left: nothing
/// replaces it while it waits, and the i-HA's reply 0.8 s after it left
/// is the verdict. Before, the timer ran from the hand-over: the
/// retransmission replaced the held request, and the verdict (untrusted)
/// came 0.5 s after the only request had left, before the i-HA's reply.
#[test]
fn a_probe_held_for_its_route_is_timed_from_when_it_left() {
    let (mut s, t0, p) = parked_probe(IN_1);
    s.run_for(Duration::from_millis(1500));
    assert!(
        s.probes().is_empty(),
        "no retransmission replaces the request still waiting for its route"
    );
    assert!(s.verdicts().is_empty());
    s.node.transmit_left(s.now, p.req.identification);
    s.run_for(Duration::from_millis(800));
    assert!(
        s.verdicts().is_empty(),
        "the wait runs from {:?}",
        s.now - t0
    );
    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(
        s.verdicts(),
        vec![(IN_1, Verdict::Trusted, Cause::TncReply)]
    );
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    // Unanswered, it is retransmitted 1 s after it left, and the verdict
    // comes 1 s after that: the configured schedule, from the wire.
    let (mut s, t0, p) = parked_probe(IN_1);
    s.run_for(Duration::from_millis(1500));
    s.node.transmit_left(s.now, p.req.identification);
    let mut sent = Vec::new();
    while s.verdicts().is_empty() {
        s.fire_next_timer();
        sent.extend(s.probes().into_iter().map(|_| s.now - t0));
    }
    assert_eq!(sent, vec![Duration::from_millis(2500)]);
    assert_eq!(s.now - t0, Duration::from_millis(3500));
    assert_eq!(
        s.verdicts(),
        vec![(IN_1, Verdict::Untrusted, Cause::NoReply { attempts: 2 })]
    );
}

/// A probe whose route never comes is silence all the same: untrusted
/// when the whole schedule (1 s + 1 s) has passed, with no datagram sent.
#[test]
fn a_probe_whose_route_never_comes_is_untrusted_after_the_schedule() {
    let (mut s, t0, _) = parked_probe(EXT_A);
    while s.verdicts().is_empty() {
        s.fire_next_timer();
        assert!(s.probes().is_empty(), "nothing replaces the held request");
    }
    assert_eq!(s.now - t0, Duration::from_secs(2));
    assert_eq!(
        s.verdicts(),
        vec![(EXT_A, Verdict::Untrusted, Cause::NoReply { attempts: 0 })]
    );
}

#[test]
fn a_newer_move_cancels_the_older_probe() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    let old = s.one_probe();
    // Moved on before the answer came back.
    s.node.address_removed(s.now, "eth0", IN_1);
    s.node.address_added(s.now, "eth0", IN_2, 24);
    let new = s.one_probe();
    assert_eq!(new.src, IN_2);
    s.events();
    assert!(s
        .events
        .iter()
        .any(|e| matches!(e, NodeEvent::ProbeCancelled { address, .. } if *address == IN_1)));
    // The old probe's (genuine) answer arrives late: it decides nothing.
    s.deliver(&old.req, Answer::Tnc);
    assert!(s.verdicts().is_empty());
    assert_eq!(s.node.state(), State::Detecting { address: IN_2 });
    s.deliver(&new.req, Answer::Tnc);
    assert_eq!(
        s.verdicts(),
        vec![(IN_2, Verdict::Trusted, Cause::TncReply)]
    );
    assert_eq!(s.node.state(), State::Registered { care_of: IN_2 });
    assert_eq!(s.node.detector().unwrap().stats().probes_cancelled, 1);
}

/// Untrusted -> trusted (RFC 5266 §3.4.1): the MOBIKE update and the
/// probe run in parallel; whichever answers first, the same verdict,
/// the same transitions, and no registration through the VPN.
#[test]
fn entering_the_enterprise_gives_the_same_outcome_in_either_order() {
    let run = |mobike_first: bool| {
        let mut s = Sim::new();
        s.outside_in_mc();
        s.node.address_removed(s.now, "eth0", EXT_A);
        s.node.address_added(s.now, "eth0", IN_1, 24);
        let p = s.one_probe();
        assert_eq!(s.node.mode(), Some(Mode::Mc), "mc carries data meanwhile");
        assert!(!s.node.traffic_held(), "inside ESP: nothing to hold");
        if mobike_first {
            s.node.vpn_input(s.now, moved(IN_1));
        }
        s.deliver(&p.req, Answer::Tnc);
        if !mobike_first {
            s.node.vpn_input(s.now, moved(IN_1));
        }
        assert!(s.requests().is_empty(), "no TIA re-registration");
        assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
        let tunnel: Vec<Action> = s
            .actions()
            .into_iter()
            .filter(|a| matches!(a, Action::TunnelUp { .. }))
            .collect();
        (s.verdicts(), s.modes(), s.node.state(), tunnel)
    };
    let a = run(true);
    let b = run(false);
    assert_eq!(a, b);
    assert_eq!(a.0, vec![(IN_1, Verdict::Trusted, Cause::TncReply)]);
    assert_eq!(a.1, vec![(Some(Mode::Mc), Some(Mode::C))]);
}

/// Untrusted -> untrusted: MOBIKE only, and a probe that fails quietly:
/// no mode change, no registration, nothing held, in either order.
#[test]
fn moving_between_external_networks_keeps_mc_in_either_order() {
    let run = |mobike_first: bool| {
        let mut s = Sim::new();
        s.outside_in_mc();
        let sent = s.node.client().stats().requests_sent;
        s.node.address_removed(s.now, "eth0", EXT_A);
        s.node.address_added(s.now, "eth0", EXT_B, 24);
        assert_eq!(s.one_probe().src, EXT_B);
        if mobike_first {
            s.node.vpn_input(s.now, moved(EXT_B));
        }
        s.run_for(Duration::from_secs(6));
        if !mobike_first {
            s.node.vpn_input(s.now, moved(EXT_B));
        }
        assert_eq!(s.node.state(), State::Registered { care_of: TIA });
        assert_eq!(s.node.client().stats().requests_sent, sent);
        assert!(s.requests().is_empty());
        assert!(!s.node.traffic_held());
        (s.verdicts(), s.modes(), s.actions())
    };
    let a = run(true);
    assert_eq!(a, run(false));
    assert_eq!(
        a.0,
        vec![(EXT_B, Verdict::Untrusted, Cause::NoReply { attempts: 3 })]
    );
    assert!(a.1.is_empty(), "no mode change: {:?}", a.1);
    assert!(a.2.is_empty(), "nothing to the kernel: {:?}", a.2);
}

/// Trusted -> untrusted (RFC 5266 §3.4.2): traffic held from the move
/// until the TIA's registration is accepted; the TIA is registered only
/// after the probe failed, whether the VPN came up before or after.
#[test]
fn leaving_the_enterprise_holds_traffic_until_mc_is_registered() {
    let run = |vpn_first: bool| {
        let mut s = Sim::new();
        s.inside_in_c();
        s.node.address_removed(s.now, "eth0", IN_1);
        s.node.address_added(s.now, "eth0", EXT_B, 24);
        s.one_probe();
        assert_eq!(s.node.state(), State::Detecting { address: EXT_B });
        assert!(s.node.traffic_held(), "the mode-c tunnel would leak");
        // No IKE_SA: the VPN is asked for with the probe (RFC 5266 §3.4.2
        // step 1, issue 10 §3), not after the verdict.
        assert_eq!(
            s.actions(),
            vec![
                Action::HoldTraffic { home: HOA },
                Action::Vpn(VpnRequest::Initiate {
                    connection: "vpn".into()
                })
            ]
        );
        if vpn_first {
            s.node
                .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(EXT_B, Some(TIA))));
            assert!(s.requests().is_empty(), "not before the probe failed");
        }
        s.run_for(Duration::from_secs(5));
        s.probes();
        if !vpn_first {
            assert_eq!(s.node.state(), State::Untrusted { address: EXT_B });
            assert!(
                !s.actions().iter().any(|a| matches!(a, Action::Vpn(_))),
                "asked with the probe already"
            );
            s.node
                .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(EXT_B, Some(TIA))));
        }
        let reqs = s.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].0, Some(TIA), "through the VPN, from the TIA");
        assert!(s.node.traffic_held(), "held until accepted");
        s.deliver(&reqs[0].1, Answer::Tnc);
        assert!(!s.node.traffic_held());
        let actions: Vec<Action> = s
            .actions()
            .into_iter()
            .filter(|a| !matches!(a, Action::Vpn(_) | Action::TunnelMtu { .. }))
            .collect();
        assert_eq!(
            actions,
            vec![
                Action::TunnelUp {
                    home: HOA,
                    care_of: TIA,
                    home_agent: HA,
                    reverse_tunnel: true
                },
                Action::ReleaseTraffic { home: HOA }
            ]
        );
        (s.verdicts(), s.modes(), s.node.state())
    };
    let a = run(true);
    assert_eq!(a, run(false));
    assert_eq!(
        a.0,
        vec![(EXT_B, Verdict::Untrusted, Cause::NoReply { attempts: 3 })]
    );
    assert_eq!(a.1, vec![(Some(Mode::C), None), (None, Some(Mode::Mc))]);
}

#[test]
fn accepted_without_tnc_while_in_mc_puts_the_tia_back_at_once() {
    let mut s = Sim::new();
    s.outside_in_mc();
    s.node.address_removed(s.now, "eth0", EXT_A);
    s.node.address_added(s.now, "eth0", EXT_B, 24);
    let p = s.one_probe();
    // A misconfigured i-HA (no trusted networks) took the probe as a
    // registration: its binding names EXT_B now.
    s.deliver(&p.req, Answer::NoTnc);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(TIA));
    assert_eq!(reqs[0].1.care_of_address, TIA);
    assert_eq!(s.node.mode(), Some(Mode::Mc));
}

#[test]
fn vpn_when_inside_terminate_asks_charon_to_close_the_vpn() {
    let mut d = detect_config();
    d.vpn_when_inside = VpnWhenInside::Terminate;
    let mut s = Sim::with(d);
    s.outside_in_mc();
    s.node.address_added(s.now, "eth1", IN_1, 24);
    let p = s.one_probe();
    assert_eq!(p.ifname, "eth1");
    s.deliver(&p.req, Answer::Tnc);
    assert!(s.actions().contains(&Action::Vpn(VpnRequest::Terminate {
        connection: "vpn".into()
    })));
}

/// RFC 5265 §3.2.4: inside, re-register every T_MONITOR - N; without a
/// successful one within T_MONITOR, hold and detect again.
#[test]
fn monitoring_re_registers_inside_and_detects_again_when_it_fails() {
    let mut s = Sim::new();
    let t0 = s.now;
    s.inside_in_c();
    s.run_for(Duration::from_secs(49));
    assert!(s.requests().is_empty());
    s.run_for(Duration::from_secs(1));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "renewal at T_MONITOR - N = 50 s");
    assert_eq!(reqs[0].0, Some(IN_1));
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert!(!s.node.traffic_held());
    // The next one goes unanswered: at 100 s a renewal, at 110 s no
    // successful registration for T_MONITOR: held, probed again.
    s.run_for(Duration::from_secs(59));
    assert!(!s.node.traffic_held());
    s.requests();
    s.run_for(Duration::from_secs(1));
    assert!(s.node.traffic_held());
    assert_eq!(s.node.state(), State::Detecting { address: IN_1 });
    let p = s.one_probe();
    assert_eq!(p.src, IN_1);
    s.deliver(&p.req, Answer::Tnc);
    assert!(!s.node.traffic_held());
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    let withdrawn = s.verdicts();
    assert!(withdrawn.contains(&(IN_1, Verdict::Untrusted, Cause::MonitorExpired)));
    assert!(s.now - t0 >= Duration::from_secs(110));
}

#[test]
fn a_renewal_without_tnc_withdraws_the_verdict() {
    let mut s = Sim::new();
    s.inside_in_c();
    s.run_for(Duration::from_secs(50));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1);
    s.deliver(&reqs[0].1, Answer::NoTnc);
    assert!(s
        .verdicts()
        .contains(&(IN_1, Verdict::Untrusted, Cause::RenewalWithoutTnc)));
    assert!(s.node.traffic_held());
    assert_eq!(s.node.state(), State::Detecting { address: IN_1 });
}

#[test]
fn each_interface_is_probed_on_its_own() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    let a = s.one_probe();
    // A second interface comes up: newest first, the other after.
    s.node.address_added(s.now, "eth1", EXT_A, 24);
    let b = s.one_probe();
    assert_eq!((b.ifname.as_str(), b.src), ("eth1", EXT_A));
    s.run_for(Duration::from_secs(5));
    // EXT_A's two retransmissions, then IN_1 once EXT_A is decided.
    let mut p = s.probes();
    assert_eq!(p.len(), 3);
    assert!(p[..2].iter().all(|p| p.src == EXT_A));
    let again = p.pop().unwrap();
    assert_eq!((again.ifname.as_str(), again.src), ("eth0", IN_1));
    assert_ne!(again.req.identification, a.req.identification);
    s.deliver(&again.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    let v = s.verdicts();
    assert_eq!(
        v,
        vec![
            (EXT_A, Verdict::Untrusted, Cause::NoReply { attempts: 3 }),
            (IN_1, Verdict::Trusted, Cause::TncReply)
        ]
    );
}

#[test]
fn the_home_link_ends_a_probe_and_needs_none() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    let p = s.one_probe();
    s.node
        .address_added(s.now, "eth1", Ipv4Addr::new(10, 1, 0, 77), 24);
    assert_eq!(s.node.state(), State::AtHome);
    assert!(s.probes().is_empty(), "no probe from the home link");
    // The old probe's answer changes nothing at home.
    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::AtHome);
    assert!(s.verdicts().is_empty());
    assert!(!s.node.traffic_held());
}

#[test]
fn outside_a_vpn_that_goes_down_under_the_binding_is_asked_for_again() {
    // RFC 5266 §3.4.2 step 1: outside, the MN needs the VPN. Found by the
    // lab's bounce scenario: an IKE_SA that died under a mode-mc binding
    // left the MN with its traffic held for good.
    let mut s = Sim::new();
    s.outside_in_mc();
    let ike_sa = vpn_sa(EXT_A, Some(TIA)).ike_sa;
    s.node.vpn_input(s.now, VpnInput::TiaReleased { ike_sa });
    s.node.vpn_input(s.now, VpnInput::Down { ike_sa });
    let asks: Vec<Action> = s
        .actions()
        .into_iter()
        .filter(|a| matches!(a, Action::Vpn(_)))
        .collect();
    assert_eq!(
        asks,
        vec![Action::Vpn(VpnRequest::Initiate {
            connection: "vpn".into()
        })]
    );
    // A new TIA from the new IKE_SA is registered through it at once.
    s.node.vpn_input(
        s.now,
        VpnInput::TiaAssigned(vpn_sa(EXT_A, Some(Ipv4Addr::new(10, 200, 0, 9)))),
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].1.care_of_address, Ipv4Addr::new(10, 200, 0, 9));
}

/// The `to <home agent> lookup main` rule actions among `actions`.
fn direct_rules(actions: &[Action]) -> Vec<Option<Ipv4Addr>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::DirectToHomeAgent { home_agent } => Some(*home_agent),
            _ => None,
        })
        .collect()
}

#[test]
fn with_charon_mode_c_keeps_the_home_agent_off_the_vpn_and_mode_mc_gives_it_back() {
    let mut cfg = node_config(detect_config());
    cfg.with_charon = true;
    let mut s = Sim::from_config(cfg);
    // Inside with the VPN kept (vpn_when_inside = keep): the tunnel from
    // the physical care-of address, then the rule, so that its outer
    // datagrams and renewals miss charon's routes.
    s.node
        .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(IN_1, Some(TIA))));
    s.requests();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    let a = s.actions();
    let up = a
        .iter()
        .position(|a| matches!(a, Action::TunnelUp { care_of, .. } if *care_of == IN_1))
        .expect("tunnel up");
    assert_eq!(
        a.get(up + 1),
        Some(&Action::DirectToHomeAgent {
            home_agent: Some(HA)
        })
    );
    assert_eq!(direct_rules(&a), vec![Some(HA)]);

    // Leaving (the lab's leave-enterprise, commit 0d79bb7): the trusted
    // address goes and the VPN's TIA is registered at once. The rule goes
    // in the same step as the request from the TIA (actions are carried
    // out before datagrams), or the request leaves by the main table,
    // outside ESP, and is dropped.
    s.node.address_removed(s.now, "eth0", IN_1);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(TIA));
    assert_eq!(direct_rules(&s.actions()), vec![None]);
    // Registered through the VPN: the tunnel from the TIA asks for no rule.
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert_eq!(s.node.mode(), Some(Mode::Mc));
    let a = s.actions();
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::TunnelUp { care_of, .. } if *care_of == TIA)));
    assert_eq!(direct_rules(&a), vec![]);
}

#[test]
fn without_charon_no_home_agent_rule_is_asked_for() {
    let mut s = Sim::new();
    s.inside_in_c();
    s.node.address_removed(s.now, "eth0", IN_1);
    s.outside_in_mc();
    assert_eq!(direct_rules(&s.actions), vec![]);
}

#[test]
fn a_probe_falls_back_to_the_interface_charon_reports_for_its_address() {
    let mut s = Sim::new();
    s.outside_in_mc();
    // A new attachment charon knows nothing of yet: no fallback.
    s.node.address_added(s.now, "eth1", EXT_B, 24);
    let p = s.one_probe();
    assert_eq!((p.ifname.as_str(), p.src), ("eth1", EXT_B));
    assert_eq!(p.fallback, None);
    // MOBIKE moves the IKE_SA there, and charon names the interface
    // (wlan1: the node's eth1 was renamed under it). The probe's
    // retransmission may bind there.
    s.node.vpn_input(
        s.now,
        VpnInput::Moved {
            ike_sa: 1,
            local: Some(EXT_B.into()),
            local_ifname: Some("wlan1".into()),
            gateway: Some(GW.into()),
            mtu: PathMtu::default(),
        },
    );
    s.run_for(Duration::from_secs(1));
    let p = s.one_probe();
    assert_eq!(p.src, EXT_B);
    assert_eq!(p.fallback.as_deref(), Some("wlan1"));
}

/// The deregistrations (lifetime 0) the node sends by the probe's path.
fn deregistrations(probes: &[Probe]) -> Vec<(String, Ipv4Addr, Ipv4Addr)> {
    probes
        .iter()
        .filter(|p| p.req.lifetime == 0)
        .map(|p| (p.ifname.clone(), p.src, p.req.care_of_address))
        .collect()
}

fn deregistered(events: &[NodeEvent]) -> Vec<Ipv4Addr> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Deregistered { care_of } => Some(*care_of),
            _ => None,
        })
        .collect()
}

/// RFC 5265 §4.3 ignored by the i-HA: it took the probe from an untrusted
/// address as a registration and would tunnel home traffic there in the
/// clear. With no VPN to register instead, the node deregisters that
/// binding at once, from that address, by the probe's path (RFC 5944
/// §3.6.1.1), and nothing renews it later.
#[test]
fn accepted_without_tnc_outside_any_vpn_deregisters_that_binding_at_once() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::NoTnc);
    let d = s.one_probe();
    assert_eq!(
        deregistrations(std::slice::from_ref(&d)),
        vec![("eth0".to_string(), EXT_A, EXT_A)]
    );
    assert_eq!(d.req.home_address, HOA);
    assert!(s.requests().is_empty(), "nothing through the node's client");
    s.deliver(&d.req, Answer::NoTnc);
    let events = s.events();
    assert_eq!(deregistered(&events), vec![EXT_A]);
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });
    // Its registration is never renewed, and shutdown has nothing left.
    s.run_for(Duration::from_secs(3600));
    assert!(s.probes().is_empty() && s.requests().is_empty());
    s.node.shutdown(s.now, true);
    assert!(s.node.is_stopped());
    assert!(s.probes().is_empty() && s.requests().is_empty());
}

/// A shutdown before that binding is gone deregisters it, whatever
/// `deregister_on_shutdown` says, and waits for the answer.
#[test]
fn a_binding_accepted_without_tnc_is_deregistered_on_shutdown_either_way() {
    for deregister_on_shutdown in [true, false] {
        let mut s = Sim::new();
        s.node.address_added(s.now, "eth0", EXT_A, 24);
        let p = s.one_probe();
        s.deliver(&p.req, Answer::NoTnc);
        // The first deregistration is lost; its retransmissions too.
        assert_eq!(deregistrations(&s.probes()).len(), 1);
        s.run_for(Duration::from_secs(10));
        assert_eq!(
            deregistrations(&s.probes()).len(),
            2,
            "1 s, 2 s, then given up"
        );
        s.node.shutdown(s.now, deregister_on_shutdown);
        assert!(!s.node.is_stopped(), "waits for the deregistration");
        assert_eq!(s.node.state(), State::Deregistering { care_of: EXT_A });
        let d = s.probes();
        assert_eq!(
            deregistrations(&d),
            vec![("eth0".to_string(), EXT_A, EXT_A)],
            "deregister_on_shutdown = {deregister_on_shutdown}"
        );
        s.deliver(&d[0].req, Answer::NoTnc);
        assert!(s.node.is_stopped());
        assert_eq!(deregistered(&s.events()), vec![EXT_A]);
    }
    // Once its lifetime has run out the i-HA holds it no more: a shutdown
    // then sends nothing for it.
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let p = s.one_probe();
    let lifetime = Duration::from_secs(p.req.lifetime.into());
    s.deliver(&p.req, Answer::NoTnc);
    s.run_for(lifetime);
    s.probes();
    s.node.shutdown(s.now, false);
    assert!(s.node.is_stopped());
    assert!(s.probes().is_empty() && s.requests().is_empty());
}

/// Beside a mode 'c' binding on a trusted interface, a probe of another
/// interface accepted without TNC took the i-HA's binding away from it:
/// the node registers its care-of address again at once, and once that
/// is accepted nothing is left to deregister.
#[test]
fn accepted_without_tnc_beside_a_trusted_binding_registers_that_binding_again() {
    let mut s = Sim::new();
    s.inside_in_c();
    s.node.address_added(s.now, "eth1", EXT_B, 24);
    let p = s.one_probe();
    assert_eq!((p.ifname.as_str(), p.src), ("eth1", EXT_B));
    s.deliver(&p.req, Answer::NoTnc);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(IN_1));
    assert_eq!(reqs[0].1.care_of_address, IN_1);
    assert_ne!(reqs[0].1.lifetime, 0);
    assert!(s.probes().is_empty(), "replaced, not deregistered");
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
    s.node.shutdown(s.now, false);
    assert!(s.node.is_stopped());
    assert!(s.probes().is_empty() && s.requests().is_empty());
}

/// In mode 'mc' the TIA goes back at once (as before); a shutdown while
/// that registration is unanswered still deregisters the untrusted one.
#[test]
fn accepted_without_tnc_in_mc_then_shutdown_before_the_tia_is_back_deregisters_it() {
    let mut s = Sim::new();
    s.outside_in_mc();
    s.node.address_removed(s.now, "eth0", EXT_A);
    s.node.address_added(s.now, "eth0", EXT_B, 24);
    let p = s.one_probe();
    s.deliver(&p.req, Answer::NoTnc);
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].1.care_of_address, TIA);
    assert!(s.probes().is_empty(), "the TIA replaces it");
    s.node.shutdown(s.now, false);
    assert_eq!(
        deregistrations(&s.probes()),
        vec![("eth0".to_string(), EXT_B, EXT_B)]
    );
    assert!(!s.node.is_stopped());
}

/// Issue 10 §3, RFC 5266 §3.4.2 step 1 with no IKE_SA (`vpn_when_inside =
/// terminate`): leaving, the VPN is asked for with the probe; IKE runs
/// while the verdict is awaited, traffic stays held, and the TIA that
/// comes first waits for the untrusted verdict, whose instant is the one
/// its registration leaves: the handover costs the longer of the two, not
/// their sum.
#[test]
fn leaving_with_no_ike_sa_asks_for_the_vpn_with_the_probe() {
    let mut d = detect_config();
    d.vpn_when_inside = VpnWhenInside::Terminate;
    let mut s = Sim::with(d);
    s.inside_in_c();
    s.node.address_removed(s.now, "eth0", IN_1);
    s.node.address_added(s.now, "eth0", EXT_B, 24);
    let probe_at = s.now;
    s.one_probe();
    assert!(s.actions().contains(&Action::Vpn(VpnRequest::Initiate {
        connection: "vpn".into()
    })));
    // IKE is done first: the TIA waits, traffic stays held.
    s.run_for(Duration::from_millis(300));
    s.node
        .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(EXT_B, Some(TIA))));
    assert!(s.requests().is_empty(), "the TIA waits for the verdict");
    assert!(s.node.traffic_held());
    // The verdict: the TIA's registration leaves at that instant, and
    // the VPN is not asked for again.
    let mut verdict_at = None;
    while verdict_at.is_none() {
        s.run_for(Duration::from_millis(100));
        s.probes();
        if matches!(
            s.node.state(),
            State::Untrusted { .. } | State::Registering { .. }
        ) {
            verdict_at = Some(s.now);
        }
    }
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(TIA));
    assert!(!s.actions().iter().any(|a| matches!(a, Action::Vpn(_))));
    assert!(verdict_at.unwrap() > probe_at);
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert!(!s.node.traffic_held());
    assert_eq!(s.node.mode(), Some(Mode::Mc));
}

/// The same, but the new network is trusted after all and the VPN asked
/// for with the probe is not up yet: it is closed, never used, even with
/// `vpn_when_inside = keep` (the lab's flap moves on before any verdict).
#[test]
fn a_trusted_verdict_closes_the_vpn_asked_for_with_the_probe() {
    let mut s = Sim::with(detect_config());
    s.inside_in_c();
    s.node.address_removed(s.now, "eth0", IN_1);
    s.node.address_added(s.now, "eth1", IN_2, 24);
    let p = s.one_probe();
    assert!(s.actions().contains(&Action::Vpn(VpnRequest::Initiate {
        connection: "vpn".into()
    })));
    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_2 });
    assert!(s.actions().contains(&Action::Vpn(VpnRequest::Terminate {
        connection: "vpn".into()
    })));
}

/// `mip4ctl probe` in mode 'c' probes the address the node is registered
/// with: it leaves nothing (traffic flows meanwhile), so no VPN is asked
/// for with the probe and the trusted verdict has none to close, even
/// with `vpn_when_inside = terminate`. A `force mc` after it asks charon
/// once (the lab's `operator-tools`: the probe's initiate and its
/// verdict's terminate came just before the pin's own initiate).
#[test]
fn an_operators_probe_in_mode_c_asks_for_no_vpn_and_force_mc_then_asks_once() {
    let mut d = detect_config();
    d.vpn_when_inside = VpnWhenInside::Terminate;
    let mut cfg = node_config(d);
    cfg.with_charon = true;
    let mut s = Sim::from_config(cfg);
    s.inside_in_c();
    s.node.probe_now(s.now).unwrap();
    let p = s.one_probe();
    assert_eq!(p.src, IN_1);
    s.deliver(&p.req, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    let a = s.actions();
    assert!(!a.iter().any(|a| matches!(a, Action::Vpn(_))), "{a:?}");

    s.node.force(s.now, Mode::Mc).unwrap();
    let a = s.actions();
    assert_eq!(initiates(&a), 1, "{a:?}");
    assert!(
        !a.iter()
            .any(|a| matches!(a, Action::Vpn(VpnRequest::Terminate { .. }))),
        "{a:?}"
    );
}

/// RFC 5266 §3 (the lab's `flap`): leaving mode 'c' with no IKE_SA, the
/// VPN is asked for while traffic is held. charon's IKE_SA_INIT to a
/// gateway it has no IKE_SA with yet (so not excluded from the home
/// source) is an unbound datagram, routed once: with the home source in
/// place it would take the mode-'c' tunnel, left for the next
/// registration, and leave IP in IP from the home address in the clear
/// on the new, unknown network. The source goes before the hold and the
/// request, and comes back (the gateway excluded) once mode 'mc' is
/// decided.
#[test]
fn leaving_mode_c_withdraws_the_home_source_for_the_hold() {
    let mut s = Sim::new();
    s.inside_in_c();
    assert!(matches!(s.sources().last(), Some(Some(_))), "mode 'c'");
    let from = s.all.len();
    s.node.address_removed(s.now, "eth0", IN_1);
    s.node.address_added(s.now, "eth0", EXT_B, 24);
    s.one_probe();
    s.actions();
    assert!(s.node.traffic_held());
    let after = &s.all[from..];
    let at = |f: &dyn Fn(&Action) -> bool| after.iter().position(f);
    let withdrawn = at(&|a| *a == Action::HomeAddressSource { source: None })
        .unwrap_or_else(|| panic!("home source kept while held: {after:?}"));
    let held = at(&|a| matches!(a, Action::HoldTraffic { .. })).expect("held");
    let asked = at(&|a| matches!(a, Action::Vpn(VpnRequest::Initiate { .. }))).expect("asked");
    assert!(withdrawn < held && held < asked, "{after:?}");
    assert!(
        !after[withdrawn..]
            .iter()
            .any(|a| matches!(a, Action::HomeAddressSource { source: Some(_) })),
        "{after:?}"
    );

    // Untrusted verdict, the TIA registered: mode 'mc' decided, the
    // source back with the gateway excluded.
    s.run_for(Duration::from_secs(5));
    s.probes();
    s.node
        .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(EXT_B, Some(TIA))));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert!(!s.node.traffic_held());
    let back = s.sources().last().cloned().flatten().expect("source back");
    assert!(
        back.exclude.contains(&"192.0.2.100/32".parse().unwrap()),
        "{back:?}"
    );
}

/// The initiates the node asked of charon among `actions`.
fn initiates(actions: &[Action]) -> usize {
    actions
        .iter()
        .filter(|a| matches!(a, Action::Vpn(VpnRequest::Initiate { .. })))
        .count()
}

fn decisions(events: &[NodeEvent], which: &str) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            NodeEvent::Decision { decision, reason } if *decision == which => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

impl Sim {
    /// On EXT_A, an IKE_SA of the VPN connecting (the user's own
    /// initiate, reported by the plugin's ike_state_change) when the
    /// probe's silence makes the network untrusted.
    fn untrusted_with_ike_sa_connecting(&mut self) {
        self.node.address_added(self.now, "eth0", EXT_A, 24);
        self.one_probe();
        self.vpn(VpnInput::Connecting(vpn_sa(EXT_A, None)));
        self.run_for(Duration::from_secs(5));
        self.probes();
        assert_eq!(
            self.verdicts(),
            vec![(EXT_A, Verdict::Untrusted, Cause::NoReply { attempts: 3 })]
        );
    }
}

/// The laptop's own connection: the user (or NetworkManager, or
/// `start_action`) initiated the VPN at the moment the MN found itself
/// outside. The IKE_SA still connecting is the VPN on its way: the node
/// waits for it, asks charon for no second one (a second IKE_SA, or a
/// duplicate CHILD_SA on the reused one), and registers its TIA.
#[test]
fn an_ike_sa_connecting_at_the_outside_verdict_is_awaited_not_asked_for_again() {
    let mut s = Sim::new();
    s.untrusted_with_ike_sa_connecting();
    assert_eq!(initiates(&s.actions()), 0);
    s.events();
    let waits = decisions(&s.events, "await_vpn");
    assert_eq!(waits.len(), 1, "{waits:?}");
    assert!(
        waits[0].contains("IKE_SA 1 of the VPN is connecting"),
        "{waits:?}"
    );

    // It comes up: TIA, CHILD_SA, IKE_SA up (charon's order).
    let mut early = vpn_sa(EXT_A, Some(TIA));
    early.child_up = Some(false);
    s.vpn(VpnInput::TiaAssigned(early));
    s.vpn(VpnInput::ChildUp {
        ike_sa: 1,
        child: "net".into(),
    });
    s.vpn(VpnInput::Up(vpn_sa(EXT_A, Some(TIA))));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(TIA));
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
    s.run_for(VPN_COMING_WAIT * 2);
    assert_eq!(initiates(&s.actions()), 0, "never a second VPN");
}

/// The IKE_SA waited for never comes up (charon reports only
/// IKE_DESTROYING for it): the node asks charon as before.
#[test]
fn an_awaited_ike_sa_that_fails_is_asked_for_as_before() {
    let mut s = Sim::new();
    s.untrusted_with_ike_sa_connecting();
    assert_eq!(initiates(&s.actions()), 0);
    s.vpn(VpnInput::Down { ike_sa: 1 });
    assert_eq!(initiates(&s.actions()), 1);
    let asked = s
        .events()
        .into_iter()
        .find_map(|e| match e {
            NodeEvent::VpnRequested { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("asked");
    assert!(asked.contains("never came up"), "{asked}");
}

/// The wait is bounded: an IKE_SA still connecting after
/// `VPN_COMING_WAIT` (a report that never came) no longer holds the node
/// back, and it asks once.
#[test]
fn an_ike_sa_connecting_past_the_bound_is_asked_for_once() {
    let mut s = Sim::new();
    s.untrusted_with_ike_sa_connecting();
    s.run_for(VPN_COMING_WAIT - Duration::from_secs(1));
    assert_eq!(initiates(&s.actions()), 0);
    s.run_for(Duration::from_secs(2));
    assert_eq!(initiates(&s.actions()), 1);
    s.run_for(VPN_COMING_WAIT * 2);
    assert_eq!(initiates(&s.actions()), 0);
}

/// The reverse: mip4d's own initiate is in flight when something makes
/// it look again (here the plugin's reconnection snapshot, which asks
/// again for a request it may have lost). Its IKE_SA, connecting, is the
/// VPN on its way: no second initiate.
#[test]
fn mip4ds_own_ike_sa_connecting_is_not_asked_for_twice() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    s.one_probe();
    s.run_for(Duration::from_secs(5));
    assert_eq!(initiates(&s.actions()), 1);
    s.vpn(VpnInput::Connecting(vpn_sa(EXT_A, None)));
    let mut connecting = vpn_sa(EXT_A, None);
    connecting.connecting = true;
    s.vpn(VpnInput::Snapshot(vec![connecting]));
    assert_eq!(initiates(&s.actions()), 0);
    s.vpn(VpnInput::TiaAssigned(vpn_sa(EXT_A, Some(TIA))));
    s.vpn(VpnInput::Up(vpn_sa(EXT_A, Some(TIA))));
    assert_eq!(s.requests().len(), 1);
    s.run_for(VPN_COMING_WAIT * 2);
    assert_eq!(initiates(&s.actions()), 0);
}

/// A restart in mode 'c' while charon's TIA sits on the same interface
/// (kernel-netlink moves it there with MOBIKE): rtnetlink shows the TIA
/// before the plugin names it, and its probe leaves first. The i-HA
/// accepts that probe as a registration (from a trusted network, with
/// TNC) and binds the home address to the TIA. Cancelling the probe is
/// not enough: the node registers its own care-of address again at once
/// (RFC 5944 §3.6.1.2: the newer registration replaces the binding),
/// else the i-HA tunnels home traffic to the TIA until the next renewal.
#[test]
fn a_tia_probed_before_the_plugin_names_it_is_replaced_by_the_nodes_own_binding() {
    let mut s = Sim::new();
    s.inside_in_c();
    s.node.address_added(s.now, "eth0", TIA, 32);
    let p = s.one_probe();
    assert_eq!(p.src, TIA);
    s.node
        .vpn_input(s.now, VpnInput::TiaAssigned(vpn_sa(IN_1, Some(TIA))));
    let ev = s.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, NodeEvent::ProbeCancelled { address, .. } if *address == TIA)),
        "{ev:#?}"
    );
    let reqs = s.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    assert_eq!(reqs[0].0, Some(IN_1));
    assert_eq!(reqs[0].1.care_of_address, IN_1);
    s.deliver(&reqs[0].1, Answer::Tnc);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
}
