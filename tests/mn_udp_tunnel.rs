//! RFC 3519 in the sans-IO mobile node and its registration client: the
//! UDP Tunnel Request goes out inside the authenticated part, the granted
//! keepalive interval is believed only from an authenticated "will do"
//! UDP Tunnel Reply, and the node asks the daemon for the encapsulation
//! before the tunnel it applies to, and again only when it changes.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use mip4::mn::node::NodeConfig;
use mip4::mn::node::{NodeEvent, SILENT_INTERVALS};
use mip4::mn::{Action, Purpose, State, Transmit, TrustPolicy};
use mip4::wire::extension::{UdpTunnelReply, UdpTunnelRequest};
use mip4::wire::RequestRepr;
use mip4::wire::{Extension, ReplyCode};
use sim::Sim;
use support::{HA, HOA};

const COA1: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const COA2: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 5);

fn udp_request() -> Extension {
    Extension::UdpTunnelRequest(UdpTunnelRequest {
        sub_type: 0,
        force: false,
        registration_through_fa: false,
        encapsulation: 4,
    })
}

fn udp_reply(reply_code: u8, keepalive_interval: u16) -> Extension {
    Extension::UdpTunnelReply(UdpTunnelReply {
        sub_type: 0,
        reply_code,
        force: false,
        keepalive_interval,
    })
}

/// The keepalive interval the client believed from `reply`'s extensions,
/// placed before the MN-HA authenticator, or `appended` after it.
fn granted(exts: Vec<Extension>, appended: Option<Extension>) -> Option<u16> {
    support::registered_with(&[udp_request()], exts, appended).udp_keepalive
}

#[test]
fn the_keepalive_interval_comes_only_from_an_authenticated_will_do() {
    assert_eq!(granted(vec![udp_reply(0, 25)], None), Some(25));
    // 0: the mobile node's default (RFC 3519 §3.2), still granted.
    assert_eq!(granted(vec![udp_reply(0, 0)], None), Some(0));
    assert_eq!(granted(vec![udp_reply(64, 0)], None), None, "declined");
    assert_eq!(granted(vec![], None), None, "no reply extension");
    // After the authenticator: anyone on the path could have added it.
    assert_eq!(granted(vec![], Some(udp_reply(0, 25))), None);
}

fn node() -> Sim {
    let mut reg = support::config();
    reg.extensions.push(udp_request());
    let mut cfg = NodeConfig::new(reg);
    cfg.interfaces = vec!["eth0".into(), "eth1".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg.retry_interval = Duration::from_secs(30);
    Sim::start(cfg)
}

fn tunnel_up(coa: Ipv4Addr) -> Action {
    Action::TunnelUp {
        home: HOA,
        care_of: coa,
        home_agent: HA,
        reverse_tunnel: true,
    }
}

fn udp(keepalive: Option<u16>) -> Action {
    Action::UdpTunnel {
        home: HOA,
        keepalive,
    }
}

#[test]
fn the_node_asks_for_the_encapsulation_before_its_tunnel_and_on_change_only() {
    let mut s = node();
    s.ha.udp_keepalive = Some(20);
    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t, req) = s.one_transmit();
    assert!(req.extensions.contains(&udp_request()));
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
    assert_eq!(s.actions(), vec![udp(Some(20)), tunnel_up(COA1)]);

    // A renewal granting the same: nothing to change.
    let (t, _) = s.answered_until_a_request();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert!(s.actions().is_empty());

    // A move: a new tunnel, still in UDP.
    s.node.address_removed(s.now, "eth0", COA1);
    s.node.address_added(s.now, "eth1", COA2, 24);
    let t = s
        .transmits()
        .into_iter()
        .last()
        .expect("a request from the new address");
    s.answer(&t, ReplyCode::ACCEPTED);
    let actions = s.actions();
    assert_eq!(actions.last(), Some(&tunnel_up(COA2)), "{actions:?}");
    assert!(!actions.contains(&udp(None)), "{actions:?}");

    // The HA stops granting it (no NAT any more): IP in IP again, the
    // tunnel itself unchanged.
    s.ha.udp_keepalive = None;
    let (t, _) = s.answered_until_a_request();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.actions(), vec![udp(None)]);
}

impl Sim {
    /// The node's timers fire in order, each keepalive answered (the data
    /// plane reports one more datagram from the home agent every time),
    /// until the node sends a request: the lifetime's renewal.
    fn answered_until_a_request(&mut self) -> (Transmit, RequestRepr) {
        let mut heard = 0;
        loop {
            heard += 1;
            self.node.udp_tunnel_received(heard);
            self.fire_next_timer();
            if let Some(t) = self.node.poll_transmit() {
                let req = self.ha.parse(&t.payload);
                assert!(self.transmits().is_empty());
                return (t, req);
            }
        }
    }
}

/// RFC 3519 §4.10: the home agent follows a UDP tunnel only to where an
/// authenticated registration came from (§6.1.2), so when the NAT lost
/// its mapping the node must register again. Its keepalives are answered
/// through the tunnel: `SILENT_INTERVALS` keepalive intervals with
/// nothing from the home agent make it renew at once, from the same
/// care-of address; one silent interval among answered ones does not.
#[test]
fn silence_in_the_udp_tunnel_for_three_keepalive_intervals_registers_again() {
    assert_eq!(SILENT_INTERVALS, 3);
    let interval = Duration::from_secs(10);
    let mut s = node();
    s.ha.udp_keepalive = Some(10);
    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.actions(), vec![udp(Some(10)), tunnel_up(COA1)]);

    // Answered keepalives, and once two silent intervals: no request.
    let mut heard = 0;
    for i in 0..12 {
        if i % 4 != 1 && i % 4 != 2 {
            heard += 1;
        }
        s.node.udp_tunnel_received(heard);
        s.advance(interval);
        assert!(s.transmits().is_empty(), "interval {i}");
    }
    s.events();

    // The NAT forgets the mapping: the answers stop.
    for _ in 1..SILENT_INTERVALS {
        s.advance(interval);
        assert!(s.transmits().is_empty());
    }
    s.advance(interval);
    let (t, req) = s.one_transmit();
    assert_eq!(t.purpose, Purpose::Renew);
    assert_eq!(t.src, Some(COA1));
    assert_eq!(req.care_of_address, COA1);
    assert!(
        s.events().contains(&NodeEvent::NatMappingLost {
            care_of: COA1,
            silent_s: 30
        }),
        "{:?}",
        s.events
    );
    assert_eq!(s.node.status(s.now).node.nat_reregistrations, 1);
    // The home agent records the new mapping from the reply's request;
    // the tunnel itself is unchanged on the node.
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
    assert!(s.actions().is_empty());
    // Answers again: no further request until the lifetime's renewal.
    for _ in 0..SILENT_INTERVALS + 1 {
        heard += 1;
        s.node.udp_tunnel_received(heard);
        s.advance(interval);
        assert!(s.transmits().is_empty());
    }
}

/// An IP-in-IP tunnel has no NAT mapping and no keepalives: silence in
/// it never makes the node register.
#[test]
fn an_ip_in_ip_tunnel_is_not_watched() {
    let mut s = node();
    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.actions(), vec![tunnel_up(COA1)]);
    for _ in 0..10 {
        s.advance(Duration::from_secs(110));
        assert!(s.transmits().is_empty());
    }
    assert_eq!(s.node.status(s.now).node.nat_reregistrations, 0);
}
