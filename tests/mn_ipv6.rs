//! IPv6 access networks in the node core (issue 10 §4): the IKE_SA runs
//! over IPv6 around an IPv4 TIA (mode 'mc', RFC 5266 §3.1.3), IPv6-only
//! access is untrusted by definition because the probe is a Mobile IPv4
//! registration (RFC 5266 §3.4) and the VPN is asked for at once, the
//! tunnel's MTU counts the outer family's header, and a MOBIKE move from
//! IPv6 to IPv4 (RFC 4555) keeps the binding and the gateway.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use mip4::mn::detect::{DetectConfig, VpnWhenInside};
use mip4::mn::node::{NodeConfig, NodeEvent, VpnRequest};
use mip4::mn::registration::Retransmit;
use mip4::mn::{Action, Mode, PathMtu, State, TrustPolicy, VpnInput, VpnSa};
use mip4::wire::ReplyCode;
use support::HOA;

use sim::Sim;

const EXT_A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xa, 0, 0, 0, 0, 0x100);
const GW6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xcafe, 0, 0, 0, 0, 0x10);
const EXT_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);
const GW4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const TIA: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

fn node_config(trust: TrustPolicy) -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth-a".into(), "eth-b".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = trust;
    cfg.vpn_connections = vec!["vpn".into()];
    cfg
}

fn detecting() -> TrustPolicy {
    TrustPolicy::Tnc(DetectConfig {
        retransmit: Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(2),
            max_attempts: 2,
        },
        t_monitor: None,
        monitor_grace: Duration::from_secs(10),
        vpn_when_inside: VpnWhenInside::Keep,
        vpn_connection: Some("vpn".into()),
    })
}

/// The IKE_SA over IPv6 (ext-a to the gateway's IPv6 address), the TIA
/// on kernel-libipsec's ipsec0 (MTU 1400) inside.
fn sa_over_ipv6() -> VpnSa {
    let mut s = VpnSa::new("vpn", 1);
    s.local = Some(EXT_A6.into());
    s.local_ifname = Some("eth-a".into());
    s.gateway = Some(GW6.into());
    s.tia = Some(TIA);
    s.mtu = PathMtu {
        physical: Some(1500),
        tia_device: Some(1400),
        outer_ipv6: false,
    };
    s
}

impl Sim {
    fn vpn_requests(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, NodeEvent::VpnRequested { request: VpnRequest::Initiate { connection }, .. } if connection == "vpn"))
            .count()
    }

    /// On IPv6-only ext-a, the TIA from the VPN over IPv6 registered.
    fn registered_over_ipv6(&mut self) {
        self.node.ipv6_address_added(self.now, "eth-a", EXT_A6);
        self.node.ipv6_default_route(self.now, true);
        self.vpn(VpnInput::TiaAssigned(sa_over_ipv6()));
        let (t, req) = self.one_transmit();
        assert_eq!((t.src, req.care_of_address), (Some(TIA), TIA));
        self.answer(&t, ReplyCode::ACCEPTED);
        assert_eq!(self.node.state(), State::Registered { care_of: TIA });
        assert_eq!(self.node.mode(), Some(Mode::Mc));
    }
}

#[test]
fn ipv6_only_access_is_untrusted_without_a_probe_and_asks_for_the_vpn() {
    let mut s = Sim::start(node_config(detecting()));
    // A link-local address alone is no access network.
    s.node
        .ipv6_address_added(s.now, "eth-a", "fe80::1".parse().unwrap());
    assert_eq!(s.node.state(), State::Detached);
    s.events();
    assert_eq!(s.vpn_requests(), 0);

    // The address comes first, the default route a moment later (as a
    // DHCP client sets them): only then does IPv6 reach the gateway, and
    // only then is the VPN asked for (charon would start it from a
    // link-local address).
    s.node.ipv6_address_added(s.now, "eth-a", EXT_A6);
    assert_eq!(s.node.state(), State::Detached);
    s.events();
    assert_eq!(s.vpn_requests(), 0);
    s.node.ipv6_default_route(s.now, true);
    assert_eq!(s.node.state(), State::UntrustedIpv6 { address: EXT_A6 });
    assert!(
        s.node.poll_probe_transmit().is_none(),
        "no Mobile IPv4 probe on IPv6"
    );
    assert!(s.transmits().is_empty());
    let ev = s.events();
    assert_eq!(s.vpn_requests(), 1, "{ev:#?}");
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::State { to: State::UntrustedIpv6 { .. }, reason, .. } if reason.contains("RFC 5266 §3.4"))), "{ev:#?}");
    // Once is enough: the same address again asks nothing more.
    s.node.ipv6_address_added(s.now, "eth-a", EXT_A6);
    s.events();
    assert_eq!(s.vpn_requests(), 1);

    // The default route goes: nothing beyond the link, detached.
    s.node.ipv6_default_route(s.now, false);
    assert_eq!(s.node.state(), State::Detached);
    s.node.ipv6_default_route(s.now, true);
    assert_eq!(s.node.state(), State::UntrustedIpv6 { address: EXT_A6 });
    // The link goes down, the address with it: detached.
    s.node.link_down(s.now, "eth-a");
    assert_eq!(s.node.state(), State::Detached);
}

/// The kernel tier's ipv6-access-detect: with kernel-netlink, charon
/// reports the TIA before its CHILD_SA is up. The IKE_SA asked for is on
/// its way: no second initiate (it would make a second IKE_SA), and the
/// TIA is registered once the CHILD_SA is up.
#[test]
fn a_tia_before_its_child_sa_asks_for_no_second_vpn() {
    let mut s = Sim::start(node_config(detecting()));
    s.node.ipv6_address_added(s.now, "eth-a", EXT_A6);
    s.node.ipv6_default_route(s.now, true);
    s.events();
    assert_eq!(s.vpn_requests(), 1);

    // kernel-netlink puts the TIA on the access interface itself.
    s.node.address_added(s.now, "eth-a", TIA, 32);
    let mut early = sa_over_ipv6();
    early.child_up = Some(false);
    s.vpn(VpnInput::TiaAssigned(early));
    let ev = s.events();
    assert_eq!(s.vpn_requests(), 1, "{ev:#?}");
    assert!(s.transmits().is_empty(), "nothing before the CHILD_SA");

    s.vpn(VpnInput::ChildUp {
        ike_sa: 1,
        child: "net".into(),
    });
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TIA), TIA));
    s.events();
    assert_eq!(s.vpn_requests(), 1);
}

#[test]
fn without_detection_ipv6_only_access_waits_for_the_vpn_it_did_not_start() {
    let mut s = Sim::start(node_config(TrustPolicy::Prefixes(vec!["10.20.0.0/16"
        .parse()
        .unwrap()])));
    s.node.ipv6_default_route(s.now, true);
    s.node.ipv6_address_added(s.now, "eth-a", EXT_A6);
    assert_eq!(s.node.state(), State::UntrustedIpv6 { address: EXT_A6 });
    s.events();
    assert_eq!(
        s.vpn_requests(),
        0,
        "no VPN connection is configured to ask for"
    );
    s.node.ipv6_address_removed(s.now, "eth-a", EXT_A6);
    assert_eq!(s.node.state(), State::Detached);
}

#[test]
fn tia_over_ipv6_is_registered_with_the_tunnel_sized_for_an_ipv6_outer_header() {
    let mut s = Sim::start(node_config(detecting()));
    s.registered_over_ipv6();
    // min(1500 - (85 + 20), 1400) - 20: ESP over IPv6 leaves 20 bytes
    // less than over IPv4 (1380), and ipsec0's 1400 no longer bounds it.
    let mtu = s.actions().into_iter().find_map(|a| match a {
        Action::TunnelMtu { home, mtu } if home == HOA => Some(mtu),
        _ => None,
    });
    assert_eq!(mtu, Some(1375));
    let ev = s.events();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            NodeEvent::TunnelMtu {
                mtu: 1375,
                esp_overhead: 105,
                ..
            }
        )),
        "{ev:#?}"
    );
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::VpnTiaAssigned { gateway: Some(g), local: Some(l), .. } if *g == IpAddr::from(GW6) && *l == IpAddr::from(EXT_A6))), "{ev:#?}");
}

#[test]
fn mobike_from_ipv6_to_ipv4_behind_a_nat_keeps_the_binding_and_resizes_the_tunnel() {
    let mut s = Sim::start(node_config(TrustPolicy::Prefixes(vec!["10.20.0.0/16"
        .parse()
        .unwrap()])));
    s.registered_over_ipv6();
    s.actions();
    s.events();
    let sent = s.node.client().stats().requests_sent;

    // Break before make: IPv6 access gone, then IPv4 behind a NAT.
    s.node.ipv6_address_removed(s.now, "eth-a", EXT_A6);
    s.node.link_down(s.now, "eth-a");
    s.node.address_added(s.now, "eth-b", EXT_B, 24);
    s.vpn(VpnInput::Moved {
        ike_sa: 1,
        local: Some(EXT_B.into()),
        local_ifname: Some("eth-b".into()),
        gateway: Some(GW4.into()),
        mtu: PathMtu {
            physical: Some(1500),
            tia_device: Some(1400),
            outer_ipv6: false,
        },
    });
    let t = s.transmits();
    assert!(
        t.is_empty(),
        "the home agent never learns of it: {:#?}",
        s.events()
    );
    assert_eq!(s.node.client().stats().requests_sent, sent);
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
    let mtu = s.actions().into_iter().find_map(|a| match a {
        Action::TunnelMtu { mtu, .. } => Some(mtu),
        _ => None,
    });
    assert_eq!(mtu, Some(1380), "ESP over IPv4 again: ipsec0 bounds it");
    let ev = s.events();
    assert!(
        ev.iter().any(|e| matches!(
            e,
            NodeEvent::Decision {
                decision: "keep_binding",
                ..
            }
        )),
        "{ev:#?}"
    );
    let st = s.node.status(s.now);
    assert_eq!(st.node.vpn_moves_absorbed, 1);
    assert_eq!(
        st.node.tia_changes, 0,
        "the same gateway, at another address"
    );
}

#[test]
fn a_tia_seen_on_the_access_interface_before_the_plugin_says_so_is_not_probed_on() {
    // Kernel IPsec: charon installs the TIA on eth-a, and rtnetlink's
    // event comes before the plugin's handle_vips.
    let mut s = Sim::start(node_config(detecting()));
    s.node.ipv6_default_route(s.now, true);
    s.node.ipv6_address_added(s.now, "eth-a", EXT_A6);
    s.node.address_added(s.now, "eth-a", TIA, 32);
    assert_eq!(s.node.state(), State::Detecting { address: TIA });
    s.events();
    let mut sa = sa_over_ipv6();
    sa.mtu.tia_device = None;
    s.vpn(VpnInput::TiaAssigned(sa));
    let ev = s.events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, NodeEvent::ProbeCancelled { address, .. } if *address == TIA)),
        "{ev:#?}"
    );
    let (t, req) = s.one_transmit();
    assert_eq!((t.src, req.care_of_address), (Some(TIA), TIA));
    assert_eq!(s.node.state(), State::Registering { care_of: TIA });
}
