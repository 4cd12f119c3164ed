//! The operator's pins on the node core (`mip4ctl force` / `release`,
//! issue 12): a pin narrows the modes the node uses and never widens
//! trust. A hand-held clock and a scripted home agent, as in mn_mode_mc.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use mip4::mn::node::{NodeConfig, NodeEvent, VpnRequest};
use mip4::mn::{Action, Mode, PathMtu, State, TrustPolicy, VpnInput, VpnSa};
use mip4::wire::ReplyCode;
use sim::Sim;

const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const TRUSTED: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const GW: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
const TIA: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

fn node_config(with_charon: bool) -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into(), "eth1".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg.vpn_connections = vec!["vpn".into()];
    cfg.with_charon = with_charon;
    cfg
}

fn sa() -> VpnSa {
    let mut s = VpnSa::new("vpn", 1);
    s.local = Some(EXT.into());
    s.local_ifname = Some("eth0".into());
    s.gateway = Some(GW.into());
    s.tia = Some(TIA);
    s.mtu = PathMtu {
        physical: Some(1500),
        tia_device: Some(1400),
        outer_ipv6: false,
    };
    s
}

/// Outside with the VPN up: the TIA registered in mode 'mc'.
fn outside_in_mc() -> Sim {
    let mut s = Sim::start(node_config(true));
    s.node.address_added(s.now, "eth0", EXT, 24);
    s.vpn(VpnInput::TiaAssigned(sa()));
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TIA);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::Mc));
    s.actions();
    s.events();
    s
}

#[test]
fn pinned_to_mc_a_trusted_network_is_not_used_until_released() {
    let mut s = outside_in_mc();
    s.node.force(s.now, Mode::Mc).unwrap();
    assert_eq!(s.node.pinned(), Some(Mode::Mc));
    s.node.address_added(s.now, "eth1", TRUSTED, 24);
    assert!(
        s.transmits().is_empty(),
        "pinned to mc: the trusted address is not registered"
    );
    assert_eq!(s.node.state(), State::Registered { care_of: TIA });
    assert_eq!(s.node.mode(), Some(Mode::Mc));

    // Released: the node chooses again, mode 'c' on the trusted network.
    assert_eq!(s.node.release(s.now).unwrap(), Some(Mode::Mc));
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TRUSTED);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    let ev = s.events();
    let pins: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            NodeEvent::ModePinned { mode, .. } => Some(*mode),
            _ => None,
        })
        .collect();
    assert_eq!(pins, vec![Some(Mode::Mc), None]);
    assert_eq!(s.node.release(s.now).unwrap(), None, "nothing pinned");
}

#[test]
fn pinned_to_c_outside_the_node_neither_uses_nor_asks_for_the_vpn() {
    let mut s = outside_in_mc();
    s.node.force(s.now, Mode::C).unwrap();
    // Outside and pinned to c: no service rather than an untrusted
    // address registered; the TIA binding is left to expire.
    assert_eq!(s.node.state(), State::Untrusted { address: EXT });
    assert_eq!(s.node.mode(), None);
    s.run_for(Duration::from_secs(300));
    assert!(
        s.transmits().is_empty(),
        "no renewal of the TIA binding, no registration of {EXT}"
    );
    assert!(!s
        .actions()
        .iter()
        .any(|a| matches!(a, Action::Vpn(VpnRequest::Initiate { .. }))));

    // A trusted network: mode 'c' as usual.
    s.node.address_added(s.now, "eth1", TRUSTED, 24);
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, TRUSTED);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert_eq!(s.node.operator_stats().pinned, Some(Mode::C));
    // Leaving the mc binding for the trusted network was a handover.
    assert_eq!(s.node.operator_stats().handovers.count, 1);
}

#[test]
fn a_pin_the_node_cannot_honour_is_refused() {
    let mut s = Sim::start(node_config(false));
    let f = s.node.force(s.now, Mode::F).unwrap_err();
    assert!(f.to_string().contains("mode f"), "{f}");
    let mc = s.node.force(s.now, Mode::Mc).unwrap_err();
    assert!(mc.to_string().contains("plugin"), "{mc}");
    assert_eq!(s.node.pinned(), None);
    // Trust from prefixes: there is no probe to run.
    let p = s.node.probe_now(s.now).unwrap_err();
    assert!(p.to_string().contains("detection is off"), "{p}");
}
