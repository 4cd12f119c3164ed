//! Deterministic tests of the node core in mode 'mc' (RFC 5266 §3,
//! §3.1.3, §3.3): the VPN's TIA as co-located care-of address, registered
//! through the VPN with the 'T' bit; MOBIKE moves that keep the TIA cost
//! no registration; a new TIA or gateway re-registers at once; charon and
//! mip4d restarts converge through the plugin's snapshot. A hand-held
//! clock and a scripted home agent; the VPN inputs are what the daemon
//! maps the plugin's messages to.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ipnet::Ipv4Net;
use mip4::mn::node::{HomeSource, NodeConfig, NodeEvent, VpnRequest};
use mip4::mn::{Action, Mode, PathMtu, State, TrustPolicy, VpnInput, VpnSa};
use mip4::wire::{Flags, ReplyCode, MIP_PORT};
use support::{HA, HOA};

/// Physical addresses on external (untrusted) networks A and B.
const EXT_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const EXT_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 20);
const TRUSTED: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const GW2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 200);
const TIA: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
const TIA2: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

const LIBIPSEC: PathMtu = PathMtu {
    physical: Some(1500),
    tia_device: Some(1400),
    outer_ipv6: false,
};

fn node_config() -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into(), "eth1".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg.vpn_connections = vec!["vpn".into()];
    cfg
}

fn sa(ike_sa: u32, local: Ipv4Addr, gateway: Ipv4Addr, tia: Option<Ipv4Addr>) -> VpnSa {
    let mut s = VpnSa::new("vpn", ike_sa);
    s.local = Some(local.into());
    s.local_ifname = Some("eth0".into());
    s.gateway = Some(gateway.into());
    s.tia = tia;
    s.mtu = LIBIPSEC;
    s
}

use sim::Sim;

impl Sim {
    fn new() -> Self {
        Self::start(node_config())
    }

    /// On external network A with the VPN up: the TIA is registered and
    /// accepted; the tunnel comes up from the TIA with its MTU.
    fn outside_registered(&mut self) {
        self.node.address_added(self.now, "eth0", EXT_A, 24);
        assert_eq!(self.node.state(), State::Untrusted { address: EXT_A });
        assert!(self.transmits().is_empty(), "nothing registered outside");
        self.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA))));
        let (t, req) = self.one_transmit();
        assert_eq!(req.care_of_address, TIA);
        self.answer(&t, ReplyCode::ACCEPTED);
        assert_eq!(self.node.state(), State::Registered { care_of: TIA });
        assert_eq!(self.node.mode(), Some(Mode::Mc));
        self.actions();
        self.events();
    }

    /// On external network A, charon has put the TIA on the MN but not
    /// yet the CHILD_SA that carries it (handle_vips comes first).
    fn tia_before_its_child_sa(&mut self) {
        self.node.address_added(self.now, "eth0", EXT_A, 24);
        let mut early = sa(1, EXT_A, GW, Some(TIA));
        early.child_up = Some(false);
        self.vpn(VpnInput::TiaAssigned(early));
    }

    fn requests_sent(&self) -> u64 {
        self.node.client().stats().requests_sent
    }
}

#[test]
fn tia_assigned_is_registered_through_the_vpn_from_the_tia_with_the_t_bit() {
    let mut cfg = node_config();
    // RFC 5266 §3: 'T' is a MUST inside IPsec, whatever the mode 'c'
    // default says.
    cfg.reverse_tunnel = false;
    let mut s = Sim::start(cfg);
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });
    assert!(s.transmits().is_empty());

    s.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA))));
    let (t, req) = s.one_transmit();
    assert_eq!(t.src, Some(TIA), "the request leaves from the TIA");
    assert_eq!(t.dst, SocketAddrV4::new(HA, MIP_PORT));
    assert_eq!(req.care_of_address, TIA);
    assert_eq!(req.home_address, HOA);
    assert!(req.flags.contains(Flags::T), "'T' set (RFC 5266 §3)");
    assert!(req.flags.contains(Flags::D), "co-located care-of address");
    assert_eq!(s.node.state(), State::Registering { care_of: TIA });
    assert_eq!(s.node.mode(), Some(Mode::Mc));
    assert!(s.actions().is_empty(), "no tunnel before the HA accepts");

    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
    // The tunnel's outer source is the TIA, reverse tunnelled, and sized
    // to fit in ESP: min(1500 - 85, 1400) - 20.
    assert_eq!(
        s.actions(),
        vec![
            Action::TunnelUp {
                home: HOA,
                care_of: TIA,
                home_agent: HA,
                reverse_tunnel: true
            },
            Action::TunnelMtu {
                home: HOA,
                mtu: 1380
            }
        ]
    );
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::ModeChanged { to: Some(Mode::Mc), reason, .. } if reason.contains("RFC 5266 §3.1.3"))), "{ev:#?}");
    assert!(ev.iter().any(
        |e| matches!(e, NodeEvent::VpnTiaAssigned { tia, gateway: Some(g), .. } if *tia == TIA && *g == IpAddr::from(GW))
    ));
    assert!(ev
        .iter()
        .any(|e| matches!(e, NodeEvent::TunnelMtu { mtu: 1380, .. })));
    let st = s.node.status(s.now);
    assert_eq!(st.mode, Some(Mode::Mc));
    assert_eq!(st.node.tia_registrations, 1);
    assert_eq!(st.vpn.unwrap().current.unwrap().tia, Some(TIA));
}

#[test]
fn mobike_move_with_the_same_tia_sends_no_request() {
    let mut s = Sim::new();
    s.outside_registered();
    let sent = s.requests_sent();

    // The MN moves to network B: new address, old one gone, charon's roam
    // and the MOBIKE update (RFC 4555), TIA kept.
    s.node.address_added(s.now, "eth0", EXT_B, 24);
    s.node.address_removed(s.now, "eth0", EXT_A);
    s.vpn(VpnInput::Roam);
    s.vpn(VpnInput::Moved {
        ike_sa: 1,
        local: Some(EXT_B.into()),
        local_ifname: Some("eth0".into()),
        gateway: Some(GW.into()),
        mtu: LIBIPSEC,
    });
    assert!(s.transmits().is_empty(), "no registration after MOBIKE");
    assert!(s.actions().is_empty(), "tunnel untouched");
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
    assert_eq!(s.requests_sent(), sent);
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        NodeEvent::VpnMoved {
            from: Some(f),
            to: Some(t),
            ..
        } if *f == IpAddr::from(EXT_A) && *t == IpAddr::from(EXT_B)
    )));
    let decision = ev
        .iter()
        .find_map(|e| match e {
            NodeEvent::Decision { decision, reason } => Some((*decision, reason.clone())),
            _ => None,
        })
        .expect("the decision is reported");
    assert_eq!(decision.0, "keep_binding");
    assert!(
        decision.1.contains("MOBIKE") && decision.1.contains("RFC 5266 §3"),
        "{}",
        decision.1
    );
    assert_eq!(s.node.status(s.now).node.vpn_moves_absorbed, 1);
    assert!(
        !ev.iter().any(|e| matches!(e, NodeEvent::State { .. })),
        "no state change: {ev:#?}"
    );

    // The gateway's address changing within the same IKE_SA (MOBIKE on
    // a multihomed gateway) is the same gateway: still nothing.
    s.vpn(VpnInput::Moved {
        ike_sa: 1,
        local: Some(EXT_B.into()),
        local_ifname: Some("eth0".into()),
        gateway: Some(GW2.into()),
        mtu: LIBIPSEC,
    });
    assert!(s.transmits().is_empty());
    // A rekey keeps TIA and peer (RFC 7296 §2.18): nothing either.
    s.vpn(VpnInput::Rekeyed { from: 1, to: 2 });
    assert!(s.transmits().is_empty());
    assert_eq!(s.requests_sent(), sent);
}

#[test]
fn tia_change_reregisters_at_once() {
    let mut s = Sim::new();
    s.outside_registered();
    // Reauthentication, make before break: the new IKE_SA brings another
    // TIA before the old one is released.
    s.vpn(VpnInput::Reestablished {
        from: 1,
        sa: sa(2, EXT_A, GW, None),
    });
    assert!(s.transmits().is_empty(), "no TIA on the new IKE_SA yet");
    s.vpn(VpnInput::TiaAssigned(sa(2, EXT_A, GW, Some(TIA2))));
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TIA2), TIA2));
    assert!(req.flags.contains(Flags::T));
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::State { to: State::Registering { care_of }, reason, .. } if *care_of == TIA2 && reason.contains("TIA changed"))), "{ev:#?}");
    // The old IKE_SA goes: that is no reason for another request.
    s.vpn(VpnInput::TiaReleased { ike_sa: 1 });
    s.vpn(VpnInput::Down { ike_sa: 1 });
    assert!(s.transmits().is_empty());
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: TIA2 });
    assert_eq!(
        s.actions(),
        vec![Action::TunnelUp {
            home: HOA,
            care_of: TIA2,
            home_agent: HA,
            reverse_tunnel: true
        }],
        "the tunnel moves to the new TIA (MTU unchanged)"
    );
    assert_eq!(s.node.status(s.now).node.tia_changes, 1);
}

#[test]
fn another_gateway_with_the_same_tia_reregisters_at_once() {
    let mut s = Sim::new();
    s.outside_registered();
    s.vpn(VpnInput::Reestablished {
        from: 1,
        sa: sa(2, EXT_A, GW2, None),
    });
    s.vpn(VpnInput::TiaAssigned(sa(2, EXT_A, GW2, Some(TIA))));
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TIA);
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::State { to: State::Registering { .. }, reason, .. } if reason.contains("another VPN gateway"))), "{ev:#?}");
}

#[test]
fn released_tia_makes_the_binding_stale_and_a_returning_tia_registers_again() {
    let mut s = Sim::new();
    s.outside_registered();
    s.vpn(VpnInput::TiaReleased { ike_sa: 1 });
    assert!(s.transmits().is_empty());
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });
    assert_eq!(s.node.mode(), None);
    let ev = s.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, NodeEvent::BindingStale { care_of, .. } if *care_of == TIA)),
        "{ev:#?}"
    );
    assert!(s.node.status(s.now).vpn.unwrap().binding_stale);
    // The tunnel stays so that a returning TIA needs only a request; the
    // home address's traffic is held meanwhile (no path inside ESP).
    assert_eq!(s.actions(), vec![Action::HoldTraffic { home: HOA }]);
    // Renewals from the vanished TIA are not sent.
    s.now += Duration::from_secs(3600);
    s.node.handle_timeout(s.now);
    assert!(s.transmits().is_empty(), "nothing leaves from a gone TIA");

    s.vpn(VpnInput::Down { ike_sa: 1 });
    s.vpn(VpnInput::TiaAssigned(sa(3, EXT_A, GW, Some(TIA))));
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TIA), TIA));
    assert_eq!(s.node.mode(), Some(Mode::Mc));
}

#[test]
fn charon_restart_with_another_tia_converges_through_the_snapshot() {
    let mut s = Sim::new();
    s.outside_registered();
    s.node.plugin_disconnected(s.now, "closed");
    assert!(
        s.transmits().is_empty(),
        "a lost plugin alone changes nothing"
    );
    // The restarted charon's plugin connects before its IKE_SA is up...
    s.node.plugin_connected(s.now, "libstrongswan-mip4");
    s.vpn(VpnInput::Snapshot(vec![]));
    assert!(s.transmits().is_empty());
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e, NodeEvent::BindingStale { .. })));
    // ... and the new IKE_SA (unique ids restart) brings another TIA.
    s.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA2))));
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TIA2);
}

#[test]
fn snapshot_that_agrees_sends_nothing_and_one_that_differs_reregisters() {
    let mut s = Sim::new();
    s.outside_registered();
    let sent = s.requests_sent();
    // The plugin reconnects (charon kept running, or came back with the
    // same TIA from the same gateway before we noticed): nothing to do.
    s.vpn(VpnInput::Snapshot(vec![sa(1, EXT_A, GW, Some(TIA))]));
    assert!(s.transmits().is_empty());
    assert_eq!(s.requests_sent(), sent);
    assert!(s.events().iter().any(|e| matches!(
        e,
        NodeEvent::Decision {
            decision: "keep_binding",
            ..
        }
    )));
    // A snapshot with another TIA: registered at once.
    s.vpn(VpnInput::Snapshot(vec![sa(7, EXT_A, GW, Some(TIA2))]));
    let (_, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TIA2);
}

#[test]
fn mip4d_restart_registers_from_the_snapshot_even_before_the_addresses() {
    let mut s = Sim::new();
    // A fresh mip4d: the plugin's snapshot is its first input.
    s.node.plugin_connected(s.now, "libstrongswan-mip4");
    s.vpn(VpnInput::Snapshot(vec![sa(4, EXT_A, GW, Some(TIA))]));
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TIA), TIA));
    assert!(req.flags.contains(Flags::T));
    // rtnetlink's dump follows (the TIA on ipsec0 included): no request.
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    s.node.address_added(s.now, "ipsec0", TIA, 32);
    assert!(s.transmits().is_empty());
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
}

#[test]
fn connections_not_configured_are_ignored() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    let mut other = sa(1, EXT_A, GW, Some(TIA));
    other.connection = "guest".into();
    s.vpn(VpnInput::TiaAssigned(other));
    assert!(s.transmits().is_empty());
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });
}

#[test]
fn a_trusted_address_takes_over_from_the_tia_and_the_tia_is_never_a_physical_care_of() {
    let mut cfg = node_config();
    // Even a TIA inside a trusted prefix is not a physical attachment.
    cfg.trust = TrustPolicy::Prefixes(vec![
        "10.20.0.0/16".parse().unwrap(),
        "10.200.0.0/24".parse().unwrap(),
    ]);
    cfg.interfaces = vec![];
    let mut s = Sim::start(cfg);
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    s.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA))));
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    s.node.address_added(s.now, "ipsec0", TIA, 32);
    assert!(s.transmits().is_empty());
    assert_eq!(s.node.mode(), Some(Mode::Mc));
    // Inside the enterprise again (the trusted prefix here; the lab
    // detects by the authenticated probe): mode 'c' from the address.
    s.node.address_added(s.now, "eth1", TRUSTED, 24);
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TRUSTED), TRUSTED));
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        NodeEvent::ModeChanged {
            from: Some(Mode::Mc),
            to: Some(Mode::C),
            ..
        }
    )));
}

#[test]
fn a_lost_plugin_holds_the_traffic_until_a_tia_is_registered_again() {
    let mut s = Sim::new();
    s.outside_registered();
    s.actions();
    // charon died: with kernel-libipsec its routes into ESP went with it,
    // while its TIA stays on the interface; nothing may leave outside ESP.
    s.node.plugin_disconnected(s.now, "closed");
    let held = s.actions();
    assert!(
        held.iter().any(|a| matches!(a, Action::HoldTraffic { .. })),
        "{held:?}"
    );
    assert!(s.node.traffic_held());
    // The restarted charon: an empty snapshot, then the new IKE_SA's TIA,
    // registered; the traffic flows again once it is accepted.
    s.node.plugin_connected(s.now, "libstrongswan-mip4");
    s.vpn(VpnInput::Snapshot(vec![]));
    assert!(s.node.traffic_held(), "connected, but no VPN yet");
    s.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA2))));
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert!(!s.node.traffic_held());
    assert!(s
        .actions()
        .iter()
        .any(|a| matches!(a, Action::ReleaseTraffic { .. })));
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn everything_from(exclude: &[&str]) -> Option<HomeSource> {
    Some(HomeSource {
        home: HOA,
        prefixes: vec![net("0.0.0.0/0")],
        exclude: exclude.iter().map(|e| net(e)).collect(),
    })
}

/// What the node opens itself leaves from the home address
/// in mode 'c' and in mode 'mc', so it survives the moves; the home agent
/// (outer datagrams, registrations), the gateway (IKE) and the on-link
/// prefixes keep the kernel's choice; at home nothing is asked, and the
/// source routes go before the tunnel device they name.
#[test]
fn the_nodes_own_connections_leave_from_the_home_address_in_c_and_mc_not_at_home() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth1", TRUSTED, 24);
    let (t, _) = s.one_transmit();
    assert!(s.sources().is_empty(), "nothing before the tunnel");
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    let c = everything_from(&["10.20.1.0/24", "192.0.2.1/32"]);
    assert_eq!(s.sources(), vec![c.clone()]);

    // Out of the enterprise: mode 'mc' from the TIA, the gateway and the
    // new on-link prefix excluded, the old one no more.
    s.node.address_removed(s.now, "eth1", TRUSTED);
    s.node.address_added(s.now, "eth0", EXT_A, 24);
    s.vpn(VpnInput::TiaAssigned(sa(1, EXT_A, GW, Some(TIA))));
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::Mc));
    let mc = everything_from(&["192.0.2.1/32", "192.0.2.100/32", "198.51.100.0/24"]);
    assert_eq!(s.sources().last(), Some(&mc));

    // Back inside (mode 'c', the VPN kept): the gateway stays excluded.
    s.node.address_added(s.now, "eth1", TRUSTED, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    let c_vpn = everything_from(&[
        "10.20.1.0/24",
        "192.0.2.1/32",
        "192.0.2.100/32",
        "198.51.100.0/24",
    ]);
    assert_eq!(s.sources().last(), Some(&c_vpn));

    // Home: the tunnel goes, and the source routes before it.
    s.node
        .address_added(s.now, "eth1", Ipv4Addr::new(10, 1, 0, 5), 24);
    while let Some(t) = s.transmits().pop() {
        s.answer(&t, ReplyCode::ACCEPTED);
    }
    s.actions();
    let off = s
        .all
        .iter()
        .position(|a| *a == Action::HomeAddressSource { source: None })
        .expect("removed at home");
    let down = s
        .all
        .iter()
        .position(|a| matches!(a, Action::TunnelDown { .. }))
        .expect("tunnel down at home");
    assert!(off < down, "{:?}", s.all);
    assert_eq!(s.sources().last(), Some(&None));
}

/// The setting: configured prefixes only, or none at all.
#[test]
fn home_address_source_covers_the_configured_prefixes_or_nothing() {
    let mut cfg = node_config();
    cfg.home_source = vec![net("10.0.0.0/8"), net("172.16.0.0/12")];
    let mut s = Sim::start(cfg);
    s.outside_registered();
    let got = s.sources().last().cloned().flatten().expect("installed");
    assert_eq!(got.prefixes, vec![net("10.0.0.0/8"), net("172.16.0.0/12")]);

    let mut cfg = node_config();
    cfg.home_source = Vec::new();
    let mut s = Sim::start(cfg);
    s.outside_registered();
    assert!(s.node.mode().is_some());
    assert!(s.sources().is_empty(), "switched off: {:?}", s.all);
}

/// Held traffic (charon lost in mode 'mc') keeps the home source: the
/// home address's own rule is the hold, so new connections are held as
/// well instead of leaving from the TIA outside ESP, and the VPN guard
/// refuses what an unbound datagram's outer header would send outside
/// ESP. (A mode-'c' tunnel has no guard: `mn_detect`'s
/// `leaving_mode_c_withdraws_the_home_source_for_the_hold`.)
#[test]
fn a_hold_keeps_the_home_source_so_new_connections_are_held_too() {
    let mut cfg = node_config();
    cfg.with_charon = true;
    let mut s = Sim::start(cfg);
    s.outside_registered();
    let before = s.sources();
    assert!(matches!(before.last(), Some(Some(_))), "{before:?}");
    s.node.plugin_disconnected(s.now, "closed");
    assert!(s.node.traffic_held());
    assert_eq!(s.sources(), before, "unchanged while held");
}

/// Issue 14 §2: charon's handle_vips installs the TIA before the
/// CHILD_SA that carries it; a request sent then is dropped and waits for
/// §3.6.3's retransmission. The node registers when the CHILD_SA is up.
#[test]
fn the_tia_is_registered_when_its_child_sa_is_up_not_before() {
    let mut s = Sim::new();
    s.tia_before_its_child_sa();
    assert!(s.transmits().is_empty(), "nothing before the CHILD_SA");
    assert_eq!(s.node.state(), State::Untrusted { address: EXT_A });

    s.vpn(VpnInput::ChildUp {
        ike_sa: 1,
        child: "net".into(),
    });
    let (t, req) = s.one_transmit();
    assert_eq!(t.src, Some(TIA));
    assert_eq!(req.care_of_address, TIA);
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e, NodeEvent::VpnChildUp { ike_sa: 1, .. })));
    // A rekey of the IKE_SA keeps its CHILD_SA: nothing waits again.
    s.answer(&t, ReplyCode::ACCEPTED);
    s.vpn(VpnInput::Rekeyed { from: 1, to: 2 });
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
}

/// Issue 14 §2 and RFC 5266 §3.1.3: the step that handles child_updown
/// asks for the VPN guard and sends the first request, with no timer or
/// later input between; the daemon carries out a step's actions before
/// its datagrams, so the request never leaves from the TIA without the
/// rules that keep it inside ESP.
#[test]
fn the_child_sa_up_step_asks_for_the_guard_and_sends_the_request() {
    let mut cfg = node_config();
    cfg.with_charon = true;
    let mut s = Sim::start(cfg);
    s.tia_before_its_child_sa();
    let guard = |a: &Action| matches!(a, Action::GuardVpn { guard: Some(g) } if g.tia == TIA && g.home_agent == HA);
    assert!(
        !s.actions().iter().any(guard),
        "no guard before the CHILD_SA"
    );
    assert!(s.transmits().is_empty());

    s.vpn(VpnInput::ChildUp {
        ike_sa: 1,
        child: "net".into(),
    });
    assert!(s.actions().iter().any(guard), "the guard in the same step");
    let (t, _) = s.one_transmit();
    assert_eq!(t.src, Some(TIA));
}

/// Issue 14 §2: charon's ike_updown repeats the IKE_SA that handle_vips
/// reported a moment before (same interface, same TIA): the MTUs measured
/// then stand, and the daemon asks the kernel nothing while the
/// child_updown that the first registration waits for queues behind.
/// Another interface, TIA or IKE_SA is measured again.
#[test]
fn an_ike_sa_reported_again_keeps_the_mtus_measured_for_it() {
    let mut s = Sim::new();
    s.tia_before_its_child_sa();
    let view = s.node.vpn_view();
    // As the plugin reports ike_updown: the daemon has not measured yet.
    let up = VpnSa {
        mtu: PathMtu::default(),
        ..sa(1, EXT_A, GW, Some(TIA))
    };
    assert_eq!(view.known_path_mtu(&up), Some(LIBIPSEC));
    let elsewhere = VpnSa {
        local_ifname: Some("eth1".into()),
        ..up.clone()
    };
    let other_tia = VpnSa {
        tia: Some(TIA2),
        ..up.clone()
    };
    let other_sa = VpnSa {
        ike_sa: 2,
        ..up.clone()
    };
    let unnamed = VpnSa {
        local_ifname: None,
        ..up.clone()
    };
    for sa in [elsewhere, other_tia, other_sa, unnamed] {
        assert_eq!(view.known_path_mtu(&sa), None, "{sa:?}");
    }
}

/// Issue 14 §1: the IKE_SA's address went and another came with a
/// default route: mip4d asks charon to roam now, not after
/// kernel-netlink's 100 ms; nothing while the IKE_SA's path stays.
#[test]
fn a_default_route_after_the_ike_path_went_asks_charon_to_roam_now() {
    let mut cfg = node_config();
    cfg.with_charon = true;
    let mut s = Sim::start(cfg);
    s.outside_registered();

    // A second interface with a route while the IKE_SA's path stays.
    s.node.address_added(s.now, "eth1", EXT_B, 24);
    s.node.default_route_added(s.now);
    let roam = |a: &Action| matches!(a, Action::Vpn(VpnRequest::Roam { connection }) if connection == "vpn");
    assert!(!s.actions().iter().any(roam), "the IKE path is still there");

    s.node.address_removed(s.now, "eth0", EXT_A);
    s.actions();
    s.node.default_route_added(s.now);
    let actions = s.actions();
    assert_eq!(actions.iter().filter(|a| roam(a)).count(), 1, "{actions:?}");
    assert!(s.events().iter().any(|e| matches!(
        e,
        NodeEvent::VpnRequested {
            request: VpnRequest::Roam { .. },
            ..
        }
    )));
    assert_eq!(
        s.requests_sent(),
        1,
        "MOBIKE keeps the TIA: no registration"
    );
}

/// Issue 14 §1 on a slow machine: the IKE_SA's own address went (break
/// before make), so charon is asked to roam at once, before the next
/// network's address and route (the plugin waits in charon for the path);
/// another address's removal asks nothing.
#[test]
fn the_ike_sa_address_going_asks_charon_to_roam_at_once() {
    let mut cfg = node_config();
    cfg.with_charon = true;
    let mut s = Sim::start(cfg);
    s.outside_registered();
    let roam = |a: &Action| matches!(a, Action::Vpn(VpnRequest::Roam { connection }) if connection == "vpn");

    s.node.address_added(s.now, "eth1", EXT_B, 24);
    s.actions();
    s.node.address_removed(s.now, "eth1", EXT_B);
    assert!(!s.actions().iter().any(roam), "not the IKE_SA's address");

    s.node.address_removed(s.now, "eth0", EXT_A);
    let actions = s.actions();
    assert_eq!(actions.iter().filter(|a| roam(a)).count(), 1, "{actions:?}");
    assert_eq!(
        s.requests_sent(),
        1,
        "MOBIKE keeps the TIA: no registration"
    );
}

/// Outside mode 'mc' (here: the IKE_SA's CHILD_SA not up yet, nothing
/// registered through it) the node leaves roaming to charon: its roam
/// job would restart every IKE_SA, one still connecting too.
#[test]
fn no_roam_is_asked_outside_mode_mc() {
    let mut cfg = node_config();
    cfg.with_charon = true;
    let mut s = Sim::start(cfg);
    s.tia_before_its_child_sa();
    s.node.address_removed(s.now, "eth0", EXT_A);
    s.node.address_added(s.now, "eth1", EXT_B, 24);
    s.node.default_route_added(s.now);
    let actions = s.actions();
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::Vpn(VpnRequest::Roam { .. }))),
        "{actions:?}"
    );
}
