//! Deterministic tests of the sans-IO mobile node (src/mn/node.rs): a
//! hand-held clock, a scripted home agent, and the node's actions and
//! events checked after every input. Mode 'c', RFC 5266 §3.1.1.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mip4::mn::node::{NodeConfig, NodeEvent};
use mip4::mn::{Action, Mode, State, TrustPolicy};
use mip4::wire::{Flags, ReplyCode, MIP_PORT};
use support::{HA, HOA};

const COA1: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
const COA2: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 5);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

fn node_config() -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into(), "eth1".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg.retry_interval = Duration::from_secs(30);
    cfg
}

use sim::Sim;

impl Sim {
    fn new() -> Self {
        Self::start(node_config())
    }

    /// Attach on `coa`, register it, and check the tunnel comes up.
    fn attach_and_register(&mut self, ifname: &str, coa: Ipv4Addr) {
        self.node.address_added(self.now, ifname, coa, 24);
        let (t, req) = self.one_transmit();
        assert_eq!(req.care_of_address, coa);
        self.answer(&t, ReplyCode::ACCEPTED);
        assert_eq!(self.node.state(), State::Registered { care_of: coa });
        assert_eq!(
            self.actions(),
            vec![Action::TunnelUp {
                home: HOA,
                care_of: coa,
                home_agent: HA,
                reverse_tunnel: true
            }]
        );
    }
}

#[test]
fn trusted_address_is_registered_as_colocated_care_of_and_tunnel_comes_up() {
    let mut s = Sim::new();
    assert_eq!(s.node.state(), State::Detached);
    assert_eq!(s.node.mode(), None);

    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t, req) = s.one_transmit();
    // RFC 5944 §3.6.1.1: co-located care-of address as source, D set;
    // RFC 3024: T set for reverse tunnelling.
    assert_eq!(t.src, Some(COA1));
    assert_eq!(t.dst, SocketAddrV4::new(HA, MIP_PORT));
    assert_eq!(req.care_of_address, COA1);
    assert_eq!(req.home_address, HOA);
    assert!(req.flags.contains(Flags::D));
    assert!(req.flags.contains(Flags::T));
    assert!(req.lifetime > 0);
    assert_eq!(s.node.state(), State::Registering { care_of: COA1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert!(s.actions().is_empty(), "no tunnel before the HA accepts");

    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
    assert_eq!(
        s.actions(),
        vec![Action::TunnelUp {
            home: HOA,
            care_of: COA1,
            home_agent: HA,
            reverse_tunnel: true
        }]
    );
    let ev = s.events();
    assert!(ev.contains(&NodeEvent::ModeChanged {
        from: None,
        to: Some(Mode::C),
        reason: format!(
            "address {COA1}/24 added on eth0: {COA1} on eth0 is on a trusted network, co-located care-of address (RFC 5266 §3.1.1)"
        )
    }));
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::RequestSent { purpose: "register", care_of, retransmission: false, .. } if *care_of == COA1)));
    assert!(ev.iter().any(|e| matches!(e, NodeEvent::RegistrationAccepted { care_of, renewal: false, .. } if *care_of == COA1)));
    let st = s.node.status(s.now);
    assert_eq!(st.care_of_address, Some(COA1));
    assert!(st.binding_expires_in.unwrap() > 0);
    assert_eq!(st.registration.registrations, 1);
}

#[test]
fn move_between_subnets_break_before_make_reregisters_and_moves_the_tunnel() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);

    // Break: the old address goes. The binding stays at the HA (its next
    // registration replaces it); the node has nothing to register from.
    s.node.address_removed(s.now, "eth0", COA1);
    assert_eq!(s.node.state(), State::Detached);
    assert_eq!(s.node.mode(), None);
    assert!(s.transmits().is_empty());
    assert!(
        s.actions().is_empty(),
        "tunnel kept until the binding moves"
    );

    // Make: the new subnet's address is registered at once.
    s.advance(Duration::from_millis(300));
    s.node.address_added(s.now, "eth0", COA2, 24);
    let (t, req) = s.one_transmit();
    assert_eq!(t.src, Some(COA2));
    assert_eq!(req.care_of_address, COA2);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA2 });
    assert_eq!(
        s.actions(),
        vec![Action::TunnelUp {
            home: HOA,
            care_of: COA2,
            home_agent: HA,
            reverse_tunnel: true
        }]
    );
    assert_eq!(s.node.status(s.now).node.moves, 1);
}

#[test]
fn newer_address_supersedes_a_pending_request() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t1, _) = s.one_transmit();
    // Before the HA answers, the node is on another subnet (RFC 5944 §3.6:
    // one outstanding request per binding, the newer one wins).
    s.advance(Duration::from_millis(200));
    s.node.address_added(s.now, "eth1", COA2, 24);
    let (t2, req2) = s.one_transmit();
    assert_eq!(req2.care_of_address, COA2);
    // The late reply to the first request changes nothing.
    s.answer(&t1, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registering { care_of: COA2 });
    assert!(s.actions().is_empty());
    assert_eq!(s.node.client().stats().dropped_late, 1);
    s.answer(&t2, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA2 });
    assert!(matches!(
        s.actions()[..],
        [Action::TunnelUp { care_of, .. }] if care_of == COA2
    ));
}

#[test]
fn address_loss_detaches_and_silences_retransmissions_from_the_lost_address() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", COA1, 24);
    let _ = s.one_transmit();
    s.node.address_removed(s.now, "eth0", COA1);
    assert_eq!(s.node.state(), State::Detached);
    // The client would retransmit from an address that is gone: nothing
    // leaves, and the suppression is counted.
    s.fire_next_timer();
    assert!(s.transmits().is_empty());
    assert!(s.node.status(s.now).node.transmits_suppressed >= 1);
    assert!(s.actions().is_empty());
}

#[test]
fn link_down_detaches_and_link_up_registers_again() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.node.link_down(s.now, "eth0");
    assert_eq!(s.node.state(), State::Detached);
    s.advance(Duration::from_secs(2));
    s.node.link_up(s.now, "eth0");
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, COA1);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
    assert!(s.actions().is_empty(), "same endpoints: nothing to change");
}

#[test]
fn home_link_return_removes_tunnel_and_deregisters_from_home() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.node.address_removed(s.now, "eth0", COA1);
    s.node.address_added(s.now, "eth0", HOA, 24);
    assert_eq!(s.node.state(), State::AtHome);
    assert_eq!(s.node.mode(), None);
    assert_eq!(s.actions(), vec![Action::TunnelDown { home: HOA }]);
    // RFC 5944 §3.6.1.1: care-of address = home address, lifetime 0,
    // sent from the home address to the home agent.
    let (t, req) = s.one_transmit();
    assert_eq!(req.lifetime, 0);
    assert_eq!(req.care_of_address, HOA);
    assert_eq!(t.src, Some(HOA));
    s.answer(&t, ReplyCode::ACCEPTED);
    assert!(s
        .events()
        .iter()
        .any(|e| matches!(e, NodeEvent::Deregistered { care_of } if *care_of == HOA)));
    assert_eq!(s.node.state(), State::AtHome);
    assert!(s.actions().is_empty());
    assert_eq!(s.node.status(s.now).node.home_returns, 1);
    // Trusted addresses appearing while at home do not start a
    // registration: the home link wins.
    s.node.address_added(s.now, "eth1", COA2, 24);
    assert!(s.transmits().is_empty());
    assert_eq!(s.node.state(), State::AtHome);
}

#[test]
fn denied_registration_installs_nothing_and_is_not_retried() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", COA1, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::HA_ADMIN_PROHIBITED);
    assert_eq!(
        s.node.state(),
        State::Denied {
            care_of: COA1,
            code: ReplyCode::HA_ADMIN_PROHIBITED.0
        }
    );
    assert!(s.actions().is_empty());
    assert!(s.events().iter().any(|e| matches!(
        e,
        NodeEvent::RegistrationDenied {
            code: 129,
            by: "home_agent",
            ..
        }
    )));
    s.advance(Duration::from_secs(3600));
    assert!(s.transmits().is_empty(), "a denial is not hammered");
    // A new attachment is a new attempt.
    s.node.address_added(s.now, "eth1", COA2, 24);
    assert_eq!(s.one_transmit().1.care_of_address, COA2);
}

#[test]
fn unreachable_home_agent_is_retried_after_the_retry_interval() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", COA1, 24);
    let mut sent = s.transmits().len();
    // Every retransmission unanswered (RFC 5944 §3.6.3 backoff).
    while s.node.state() == (State::Registering { care_of: COA1 }) {
        s.fire_next_timer();
        sent += s.transmits().len();
    }
    assert_eq!(sent, 5, "the default schedule sends 5 copies");
    assert_eq!(s.node.state(), State::Unreachable { care_of: COA1 });
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert!(s.actions().is_empty());
    let failed_at = s.now;
    s.fire_next_timer();
    assert_eq!(s.now - failed_at, Duration::from_secs(30));
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, COA1);
    assert_eq!(s.node.state(), State::Registering { care_of: COA1 });
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        NodeEvent::RegistrationFailed {
            purpose: "register",
            attempts: 5
        }
    )));
    assert!(ev.iter().any(|e| matches!(
        e,
        NodeEvent::RequestSent {
            retransmission: true,
            ..
        }
    )));
}

#[test]
fn untrusted_address_does_not_register_in_mode_c() {
    let mut s = Sim::new();
    s.node.address_added(s.now, "eth0", OUTSIDE, 24);
    assert_eq!(s.node.state(), State::Untrusted { address: OUTSIDE });
    assert_eq!(s.node.mode(), None);
    assert!(s.transmits().is_empty());
    // Addresses on interfaces not configured are ignored altogether.
    s.node.address_added(s.now, "wlan9", COA1, 24);
    assert!(s.transmits().is_empty());
}

#[test]
fn renewal_keeps_the_tunnel_and_is_reported_as_such() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.events();
    s.fire_next_timer();
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, COA1);
    s.answer(&t, ReplyCode::ACCEPTED);
    let ev = s.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        NodeEvent::RequestSent {
            purpose: "renew",
            ..
        }
    )));
    assert!(ev
        .iter()
        .any(|e| matches!(e, NodeEvent::RegistrationAccepted { renewal: true, .. })));
    assert!(s.actions().is_empty());
    assert_eq!(s.node.state(), State::Registered { care_of: COA1 });
}

#[test]
fn shutdown_deregisters_then_removes_the_tunnel() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.node.shutdown(s.now, true);
    assert_eq!(s.node.state(), State::Deregistering { care_of: COA1 });
    let (t, req) = s.one_transmit();
    assert_eq!(req.lifetime, 0);
    assert_eq!(req.care_of_address, COA1);
    assert!(s.actions().is_empty(), "tunnel stays until the HA answers");
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.actions(), vec![Action::TunnelDown { home: HOA }]);
    assert!(s.node.is_stopped());
    // Events after stop change nothing.
    s.node.address_added(s.now, "eth1", COA2, 24);
    assert!(s.transmits().is_empty());
}

#[test]
fn shutdown_without_deregistration_removes_the_tunnel_at_once() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.node.shutdown(s.now, false);
    assert!(s.transmits().is_empty());
    assert_eq!(s.actions(), vec![Action::TunnelDown { home: HOA }]);
    assert!(s.node.is_stopped());
}

#[test]
fn every_transition_is_explained() {
    let mut s = Sim::new();
    s.attach_and_register("eth0", COA1);
    s.node.address_removed(s.now, "eth0", COA1);
    s.node.address_added(s.now, "eth0", HOA, 24);
    let ev = s.events();
    let transitions: Vec<(State, &str)> = ev
        .iter()
        .filter_map(|e| match e {
            NodeEvent::State { to, reason, .. } => Some((*to, reason.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![
            State::Registering { care_of: COA1 },
            State::Registered { care_of: COA1 },
            State::Detached,
            State::AtHome
        ]
    );
    assert!(transitions.iter().all(|(_, r)| !r.is_empty()));
    assert!(transitions[3].1.contains("home network 10.1.0.0/24"));
}
