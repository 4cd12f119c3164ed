//! More than one interface in the node core (issue 10 §5): the
//! configured preference among usable attachments, moves as they come and
//! go, the networks never probed, and the verdict cache keyed by the
//! gateway's MAC and the prefix (RFC 5266 §5: the probe reveals the home
//! agent, the NAI and the home address in the clear). A hand-held clock;
//! the i-HA's replies are built and signed here.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mip4::auth::sign_reply;
use mip4::mn::detect::{Cause, DetectConfig, Verdict, VpnWhenInside};
use mip4::mn::node::{NetworkMatch, NodeConfig, NodeEvent, VpnRequest};
use mip4::mn::registration::Retransmit;
use mip4::mn::{Mode, State, TrustPolicy};
use mip4::wire::{Extension, ReplyCode, ReplyRepr, RequestRepr, MIP_PORT};
use sim::Sim;
use support::HA;

/// Two trusted subnets (eth0, eth1) and an external network (eth2).
const IN_1: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const IN_2: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 5);
const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const GW_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x01];
const OTHER_MAC: [u8; 6] = [0x02, 0, 0x5e, 0, 0x53, 0x02];

fn node_config(prefer: &[&str], never_probe: &[&str]) -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into(), "eth1".into(), "eth2".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Tnc(DetectConfig {
        retransmit: Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(1),
            max_attempts: 2,
        },
        t_monitor: None,
        monitor_grace: Duration::ZERO,
        vpn_when_inside: VpnWhenInside::Keep,
        vpn_connection: Some("vpn".into()),
    });
    let parse = |l: &[&str]| -> Vec<NetworkMatch> {
        l.iter().map(|s| NetworkMatch::parse(s).unwrap()).collect()
    };
    cfg.multihoming.prefer = parse(prefer);
    cfg.multihoming.never_probe = parse(never_probe);
    cfg
}

impl Sim {
    fn multihomed(prefer: &[&str], never_probe: &[&str]) -> Self {
        let mut s = Self::start(node_config(prefer, never_probe));
        s.node.seed_probes(5);
        s
    }

    /// The probes sent now: (interface, source, request).
    fn probes(&mut self) -> Vec<(String, Ipv4Addr, RequestRepr)> {
        std::iter::from_fn(|| self.node.poll_probe_transmit())
            .map(|p| {
                let req = RequestRepr::parse_bytes(&p.transmit.payload).unwrap();
                (p.ifname, p.transmit.src.unwrap(), req)
            })
            .collect()
    }

    /// The i-HA's authenticated acceptance, with TNC or without.
    fn accept(&mut self, req: &RequestRepr, tnc: bool) {
        let r = ReplyRepr {
            code: ReplyCode::ACCEPTED,
            lifetime: req.lifetime,
            home_address: req.home_address,
            home_agent: HA,
            identification: req.identification,
            extensions: if tnc {
                vec![Extension::TrustedNetworksConfigured]
            } else {
                vec![]
            },
        };
        let bytes = sign_reply(&r, &support::sa());
        self.node
            .handle_datagram(self.now, SocketAddrV4::new(HA, MIP_PORT), &bytes);
    }

    /// `addr` on `ifname` is probed at once and found trusted.
    fn trusted(&mut self, ifname: &str, addr: Ipv4Addr) {
        self.node.address_added(self.now, ifname, addr, 24);
        let mut p = self.probes();
        assert_eq!(p.len(), 1, "one probe of {addr}: {p:?}");
        let (i, src, req) = p.pop().unwrap();
        assert_eq!((i.as_str(), src), (ifname, addr));
        self.accept(&req, true);
        assert_eq!(self.node.state(), State::Registered { care_of: addr });
    }

    /// The newest trust verdict the node reported.
    fn last_verdict(&mut self) -> Option<(Ipv4Addr, Verdict, Cause)> {
        self.events();
        self.events.iter().rev().find_map(|e| match e {
            NodeEvent::TrustVerdict {
                address,
                verdict,
                cause,
                ..
            } => Some((*address, *verdict, *cause)),
            _ => None,
        })
    }

    fn vpn_requests(&mut self) -> usize {
        self.events();
        self.events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    NodeEvent::VpnRequested {
                        request: VpnRequest::Initiate { .. },
                        ..
                    }
                )
            })
            .count()
    }
}

#[test]
fn a_less_preferred_trusted_network_coming_up_moves_nothing_and_takes_over_at_once() {
    let mut s = Sim::multihomed(&["eth1"], &[]);
    s.trusted("eth1", IN_2);
    // trusted-1 comes up: less preferred than the binding in use. Its
    // probe would be a registration and move the binding: none is sent.
    s.node.address_added(s.now, "eth0", IN_1, 24);
    assert!(
        s.probes().is_empty(),
        "no probe of the less preferred network"
    );
    assert!(s.transmits().is_empty(), "no registration either");
    assert_eq!(s.node.state(), State::Registered { care_of: IN_2 });
    // trusted-2 goes down: trusted-1 is probed at that very instant, and
    // the one reply is the registration (one round trip, no timer).
    s.node.link_down(s.now, "eth1");
    let mut p = s.probes();
    assert_eq!(p.len(), 1, "{p:?}");
    let (ifname, src, req) = p.pop().unwrap();
    assert_eq!((ifname.as_str(), src), ("eth0", IN_1));
    assert_eq!(req.care_of_address, IN_1);
    assert!(s.node.traffic_held(), "held while the probe decides");
    s.accept(&req, true);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert!(!s.node.traffic_held());
    assert_eq!(s.now, s.t0, "no timer fired on the way");
}

#[test]
fn a_more_preferred_network_takes_the_binding_when_it_comes_up() {
    let mut s = Sim::multihomed(&["10.20.2.0/24"], &[]);
    s.trusted("eth0", IN_1);
    // The preferred network by prefix: probed, and its acceptance with
    // TNC is the move.
    s.trusted("eth1", IN_2);
    // Back to the first when it goes.
    s.node.address_removed(s.now, "eth1", IN_2);
    assert_eq!(s.node.state(), State::Registering { care_of: IN_1 });
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, IN_1, "its verdict still holds");
}

#[test]
fn without_a_preference_the_newest_network_wins_as_before() {
    let mut s = Sim::multihomed(&[], &[]);
    s.trusted("eth0", IN_1);
    s.trusted("eth1", IN_2);
}

#[test]
fn a_network_never_probed_by_prefix_gets_no_probe_and_the_vpn_is_asked_for() {
    let mut s = Sim::multihomed(&[], &["198.51.100.0/24"]);
    s.node.address_added(s.now, "eth2", EXT, 24);
    assert!(s.probes().is_empty());
    assert_eq!(
        s.last_verdict(),
        Some((EXT, Verdict::Untrusted, Cause::NeverProbe))
    );
    assert_eq!(s.node.state(), State::Untrusted { address: EXT });
    assert_eq!(
        s.vpn_requests(),
        1,
        "outside: the VPN (RFC 5266 §3.4.2 step 1)"
    );
    s.run_for(Duration::from_secs(30));
    assert!(s.probes().is_empty(), "never, not even later");
    let st = s.node.status(s.now);
    assert_eq!(st.detection.unwrap().counters.never_probed, 1);
}

#[test]
fn an_excluded_network_beside_a_trusted_binding_changes_nothing() {
    let mut s = Sim::multihomed(&[], &["eth2"]);
    s.trusted("eth0", IN_1);
    s.node.address_added(s.now, "eth2", EXT, 24);
    assert!(s.probes().is_empty() && s.transmits().is_empty());
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });
    assert_eq!(s.vpn_requests(), 0, "inside: no VPN asked for");
}

#[test]
fn a_network_never_probed_by_gateway_mac_waits_for_the_mac_then_sends_nothing() {
    let mut s = Sim::multihomed(&[], &["02:00:5e:00:53:01"]);
    s.node.address_added(s.now, "eth2", EXT, 24);
    assert!(
        s.probes().is_empty(),
        "the probe waits for the gateway's MAC"
    );
    assert_eq!(s.node.state(), State::Detecting { address: EXT });
    excluded_gateway_learnt_after(&mut s, Duration::from_millis(30));
}

/// EXT's gateway's MAC, the excluded one, is learnt `after` this long:
/// untrusted without a probe, and never probed later.
fn excluded_gateway_learnt_after(s: &mut Sim, after: Duration) {
    s.run_for(after);
    s.node.gateway_learned(s.now, "eth2", Some(GW_MAC));
    assert!(s.probes().is_empty());
    assert_eq!(
        s.last_verdict(),
        Some((EXT, Verdict::Untrusted, Cause::NeverProbe))
    );
    s.run_for(Duration::from_secs(30));
    assert!(s.probes().is_empty(), "never, not even later");
}

#[test]
fn another_gateway_is_probed_at_once() {
    let mut s = Sim::multihomed(&[], &["02:00:5e:00:53:01"]);
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.node.gateway_learned(s.now, "eth2", Some(OTHER_MAC));
    assert_eq!(s.probes().len(), 1, "another gateway: probed");
}

/// With a `never_probe` MAC configured, a network whose gateway's MAC
/// stays unknown may be that network: never probed in the clear until
/// the MAC says it is not (RFC 5266 §5).
#[test]
fn with_a_never_probe_mac_no_network_is_probed_while_its_gateway_is_unknown() {
    let mut s = Sim::multihomed(&[], &["02:00:5e:00:53:01"]);
    s.node.take_resolve_gateways();
    s.node.address_added(s.now, "eth0", IN_1, 24);
    s.run_for(Duration::from_millis(2500));
    assert!(s.probes().is_empty(), "no probe past one gateway_wait");
    assert!(s.node.take_resolve_gateways(), "the gateway resolved again");
    s.run_for(Duration::from_secs(10));
    assert!(s.probes().is_empty(), "nor after the last wait");
    assert_eq!(
        s.last_verdict(),
        Some((IN_1, Verdict::Untrusted, Cause::NeverProbeUnresolved))
    );
    assert_eq!(s.node.state(), State::Untrusted { address: IN_1 });
    assert_eq!(s.vpn_requests(), 1, "the VPN serves meanwhile");
    assert!(
        s.node.probe_now(s.now).is_err(),
        "nor when the operator asks"
    );
    assert!(s.probes().is_empty());
    // The MAC comes at last and is another gateway: not the excluded
    // network, so probed, and trusted.
    s.node.gateway_learned(s.now, "eth0", Some(OTHER_MAC));
    let mut p = s.probes();
    assert_eq!(p.len(), 1, "known not to be excluded: probed");
    let (_, _, req) = p.pop().unwrap();
    s.accept(&req, true);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_1 });

    // The MAC that comes at last is the excluded one: still no probe.
    let mut s = Sim::multihomed(&[], &["02:00:5e:00:53:01"]);
    s.node.address_added(s.now, "eth2", EXT, 24);
    excluded_gateway_learnt_after(&mut s, Duration::from_secs(10));
}

/// The MN on EXT behind GW_MAC: its probe goes unanswered (untrusted),
/// then it leaves.
fn visit_untrusted(s: &mut Sim) {
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.node.gateway_learned(s.now, "eth2", Some(GW_MAC));
    assert_eq!(s.probes().len(), 1);
    s.run_for(Duration::from_secs(2));
    s.probes();
    assert_eq!(
        s.last_verdict().map(|v| v.2),
        Some(Cause::NoReply { attempts: 2 })
    );
    s.node.address_removed(s.now, "eth2", EXT);
    s.node.link_down(s.now, "eth2");
}

#[test]
fn the_cache_spares_a_known_untrusted_network_its_probe_until_it_expires() {
    let mut s = Sim::multihomed(&[], &[]);
    visit_untrusted(&mut s);
    let st = s.node.status(s.now).detection.unwrap();
    assert_eq!(st.verdict_cache.len(), 1);
    assert_eq!(st.verdict_cache[0].gateway, "02:00:5e:00:53:01");
    assert_eq!(st.verdict_cache[0].prefix.to_string(), "198.51.100.0/24");
    // Back on the same network half an hour later: the MAC is waited
    // for, then no probe.
    s.advance(Duration::from_secs(1800));
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    assert!(s.probes().is_empty());
    s.node.gateway_learned(s.now, "eth2", Some(GW_MAC));
    assert!(
        s.probes().is_empty(),
        "known untrusted: not probed in the clear"
    );
    assert_eq!(
        s.last_verdict(),
        Some((EXT, Verdict::Untrusted, Cause::Cached))
    );
    assert_eq!(s.node.state(), State::Untrusted { address: EXT });
    // The same prefix behind another gateway is another network.
    s.node.address_removed(s.now, "eth2", EXT);
    s.node.link_down(s.now, "eth2");
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.node.gateway_learned(s.now, "eth2", Some(OTHER_MAC));
    assert_eq!(s.probes().len(), 1, "another gateway: probed");
    // After the cache's lifetime (1 h) the first network is probed again.
    let mut s = Sim::multihomed(&[], &[]);
    visit_untrusted(&mut s);
    s.advance(Duration::from_secs(3600));
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.node.gateway_learned(s.now, "eth2", Some(GW_MAC));
    assert_eq!(s.probes().len(), 1, "expired: probed again");
}

/// Back on a known untrusted prefix whose gateway's MAC is slow to come
/// (its ARP request or reply lost under load): no probe in the clear while
/// it is unknown; the gateways are resolved again after each wait.
#[test]
fn a_known_untrusted_prefix_is_not_probed_while_its_gateway_is_unknown() {
    let mut s = Sim::multihomed(&[], &[]);
    visit_untrusted(&mut s);
    s.node.take_resolve_gateways();
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.run_for(Duration::from_millis(2500));
    assert!(s.probes().is_empty(), "no probe before the MAC is known");
    assert!(s.node.take_resolve_gateways(), "the gateway resolved again");
    // The MAC comes late: the cached network, untrusted without a probe.
    s.node.gateway_learned(s.now, "eth2", Some(GW_MAC));
    assert!(s.probes().is_empty());
    assert_eq!(
        s.last_verdict(),
        Some((EXT, Verdict::Untrusted, Cause::Cached))
    );

    // It never comes: untrusted without a probe all the same (the VPN).
    let mut s = Sim::multihomed(&[], &[]);
    visit_untrusted(&mut s);
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.run_for(Duration::from_secs(10));
    assert!(s.probes().is_empty(), "no probe in the clear");
    assert_eq!(
        s.last_verdict(),
        Some((EXT, Verdict::Untrusted, Cause::CachedPrefix))
    );
    assert_eq!(s.node.state(), State::Untrusted { address: EXT });
    // Another gateway behind the same prefix is another network: probed.
    let mut s = Sim::multihomed(&[], &[]);
    visit_untrusted(&mut s);
    s.node.link_up(s.now, "eth2");
    s.node.address_added(s.now, "eth2", EXT, 24);
    s.run_for(Duration::from_millis(1500));
    s.node.gateway_learned(s.now, "eth2", Some(OTHER_MAC));
    assert_eq!(s.probes().len(), 1, "another gateway: probed");
}

#[test]
fn a_cached_trusted_verdict_never_skips_the_authenticated_registration() {
    let mut s = Sim::multihomed(&[], &[]);
    s.node.gateway_learned(s.now, "eth0", Some(GW_MAC));
    s.trusted("eth0", IN_1);
    assert_eq!(
        s.node.status(s.now).detection.unwrap().verdict_cache[0].verdict,
        Verdict::Trusted
    );
    s.node.address_removed(s.now, "eth0", IN_1);
    s.node.link_down(s.now, "eth0");
    s.node.link_up(s.now, "eth0");
    s.node.gateway_learned(s.now, "eth0", Some(GW_MAC));
    s.node.address_added(s.now, "eth0", IN_1, 24);
    // Same gateway, same prefix: still probed, and an answer without TNC
    // is not trusted whatever the cache said (RFC 5265 §4.1).
    let mut p = s.probes();
    assert_eq!(p.len(), 1, "the registration is the confirmation");
    let (_, _, req) = p.pop().unwrap();
    s.accept(&req, false);
    assert_eq!(
        s.last_verdict(),
        Some((IN_1, Verdict::Untrusted, Cause::AcceptedWithoutTnc))
    );
    assert_ne!(s.node.mode(), Some(Mode::C));
}

#[test]
fn with_configured_prefixes_the_preferred_trusted_address_is_kept() {
    let mut cfg = NodeConfig::new(support::config());
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg.multihoming.prefer = vec![NetworkMatch::parse("eth1").unwrap()];
    let mut s = Sim::start(cfg);
    s.node.address_added(s.now, "eth1", IN_2, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: IN_2 });
    s.node.address_added(s.now, "eth0", IN_1, 24);
    assert!(s.transmits().is_empty(), "less preferred: nothing moves");
    s.node.link_down(s.now, "eth1");
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, IN_1);
    s.node.link_up(s.now, "eth1");
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, IN_2, "back to the preferred one");
}

#[test]
fn the_trusted_network_going_with_only_an_untrusted_one_left_asks_for_the_vpn() {
    let mut s = Sim::multihomed(&[], &["eth2"]);
    s.trusted("eth0", IN_1);
    s.node.address_added(s.now, "eth2", EXT, 24);
    assert_eq!(s.vpn_requests(), 0, "inside: no VPN");
    s.node.link_down(s.now, "eth0");
    assert_eq!(s.node.state(), State::Untrusted { address: EXT });
    assert!(
        s.probes().is_empty(),
        "the excluded network is still not probed"
    );
    assert_eq!(
        s.vpn_requests(),
        1,
        "outside now: the VPN (RFC 5266 §3.4.2 step 1)"
    );
    assert!(
        s.node.traffic_held(),
        "nothing leaves in the clear meanwhile"
    );
}
