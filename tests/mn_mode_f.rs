//! Mode 'f' on the sans-IO mobile node (RFC 5266 §3.1.2): agent
//! discovery beside co-located acquisition, a foreign agent's care-of
//! address only on a network found trusted (never on an untrusted one,
//! §3), registration through the agent with the agent as router, and the
//! moves between the agent's care-of address and the co-located one.

#[path = "mn_support/mod.rs"]
mod sim;
#[path = "registration_support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mip4::auth::sign_reply;
use mip4::mn::detect::{DetectConfig, VpnWhenInside};
use mip4::mn::node::{AgentRoute, NodeConfig, NodeEvent};
use mip4::mn::registration::Retransmit;
use mip4::mn::{Action, Mode, State, TrustPolicy};
use mip4::wire::icmp::{AdvFlags, AgentAdvertisementRepr, MobilityAgentAdv};
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr, MIP_PORT};
use support::{HA, HOA};

/// The MN's co-located address on the agent's link, the agent there,
/// and the care-of address it offers.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 100);
const AGENT: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 1);
const FA_COA: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const OUTSIDE_AGENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The advertisement's lifetime (RFC 1256 §3) and the agent's longest
/// registration lifetime (RFC 5944 §2.1.1).
const ADV_LIFETIME: u16 = 9;
const FA_MAX_LIFETIME: u16 = 300;

fn advertisement(seq: u16, from_coa: Ipv4Addr) -> Vec<u8> {
    let mut flags = AdvFlags::F;
    flags.insert(AdvFlags::T);
    AgentAdvertisementRepr {
        code: 0,
        lifetime: ADV_LIFETIME,
        routers: vec![(from_coa, 0)],
        mobility: MobilityAgentAdv {
            sequence: seq,
            registration_lifetime: FA_MAX_LIFETIME,
            flags,
            care_of_addresses: vec![from_coa],
        },
        prefix_lengths: None,
        unknown: vec![],
        padding: false,
    }
    .to_bytes()
}

fn base() -> NodeConfig {
    let mut cfg = NodeConfig::new(support::config());
    cfg.interfaces = vec!["eth0".into()];
    cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
    cfg.foreign_agent = true;
    cfg
}

fn prefixes() -> NodeConfig {
    let mut cfg = base();
    cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
    cfg
}

fn detecting() -> NodeConfig {
    let mut cfg = base();
    cfg.trust = TrustPolicy::Tnc(DetectConfig {
        retransmit: Retransmit::probe(),
        t_monitor: None,
        monitor_grace: Duration::from_secs(10),
        vpn_when_inside: VpnWhenInside::Keep,
        vpn_connection: None,
    });
    cfg
}

use sim::Sim;

impl Sim {
    fn heard(&mut self, from: Ipv4Addr, seq: u16) {
        self.node
            .agent_advertisement(self.now, "eth0", from, &advertisement(seq, from));
    }

    /// The agent relays the home agent's reply (it never signs MN-HA).
    fn relay_answer(&mut self, t: &mip4::mn::Transmit, code: ReplyCode) {
        let reply = self.ha.answer(&t.payload, self.ntp(), code);
        self.node
            .handle_datagram(self.now, SocketAddrV4::new(AGENT, MIP_PORT), &reply);
    }

    fn solicitations(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.node.poll_solicitation()).collect()
    }

    /// On the trusted link, registered through the agent.
    fn in_mode_f(&mut self) {
        self.node.address_added(self.now, "eth0", LOCAL, 24);
        self.heard(AGENT, 1);
        let t = self
            .transmits()
            .into_iter()
            .rfind(|t| *t.dst.ip() == AGENT)
            .expect("a request through the agent");
        self.relay_answer(&t, ReplyCode::ACCEPTED);
        assert_eq!(self.node.state(), State::Registered { care_of: FA_COA });
        assert_eq!(self.node.mode(), Some(Mode::F));
        self.actions();
        self.events();
    }
}

#[test]
fn on_a_trusted_link_the_agents_care_of_address_is_registered_through_it() {
    let mut s = Sim::start(prefixes());
    s.node.address_added(s.now, "eth0", LOCAL, 24);
    // Discovery starts with the attachment (§2.4): a solicitation at once.
    assert_eq!(s.solicitations(), vec!["eth0".to_string()]);
    // Until an agent answers, mode 'c' on the co-located address.
    let (t, req) = s.one_transmit();
    assert_eq!(req.care_of_address, LOCAL);
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.mode(), Some(Mode::C));
    s.actions();

    s.heard(AGENT, 1);
    let (t, req) = s.one_transmit();
    // RFC 5944 §3.6.1.1: to the agent, from the home address, the agent's
    // care-of address, D clear; no longer than the agent accepts (§2.1.1).
    assert_eq!(t.dst, SocketAddrV4::new(AGENT, MIP_PORT));
    assert_eq!(t.src, Some(HOA));
    assert_eq!(req.care_of_address, FA_COA);
    assert!(!req.flags.contains(Flags::D));
    assert!(req.flags.contains(Flags::T));
    assert_eq!(req.lifetime, FA_MAX_LIFETIME);
    // The tunnel goes and the route to the agent is in place before the
    // request leaves (the daemon carries out actions first).
    let route = Action::ForeignAgentRoute {
        home: HOA,
        route: Some(AgentRoute {
            ifname: "eth0".into(),
            router: AGENT,
        }),
    };
    assert_eq!(
        s.actions(),
        vec![Action::TunnelDown { home: HOA }, route.clone()]
    );
    assert_eq!(s.node.state(), State::Registering { care_of: FA_COA });
    assert_eq!(s.node.mode(), Some(Mode::F));

    s.relay_answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: FA_COA });
    assert!(
        s.actions().is_empty(),
        "no tunnel of the node's own: the agent decapsulates"
    );
    assert!(s.events().iter().any(|e| matches!(
        e,
        NodeEvent::AgentHeard {
            agent: AGENT,
            care_of: FA_COA,
            ..
        }
    )));
    // An agent heard: no more solicitations on its link.
    s.run_for(Duration::from_secs(5));
    s.heard(AGENT, 2);
    assert!(s.solicitations().is_empty());
}

#[test]
fn an_agent_on_an_untrusted_network_is_never_used() {
    let mut s = Sim::start(prefixes());
    s.node.address_added(s.now, "eth0", OUTSIDE, 24);
    for seq in 0..10 {
        s.heard(OUTSIDE_AGENT, seq);
        s.run_for(Duration::from_secs(1));
    }
    assert!(
        s.transmits().is_empty(),
        "no registration at all outside without a VPN, none through the agent"
    );
    assert_eq!(s.node.state(), State::Untrusted { address: OUTSIDE });
    assert!(s
        .actions()
        .iter()
        .all(|a| !matches!(a, Action::ForeignAgentRoute { .. })));
}

/// RFC 5266 §3, §3.4: an advertisement proves nothing about the network;
/// the authenticated probe does. Heard before the verdict, the agent waits
/// for it; after a trusted verdict the node registers through it.
#[test]
fn with_detection_the_agent_waits_for_the_probes_trusted_verdict() {
    let mut s = Sim::start(detecting());
    s.node.seed_probes(3);
    s.node.address_added(s.now, "eth0", LOCAL, 24);
    s.heard(AGENT, 1);
    assert!(
        s.transmits().is_empty(),
        "nothing through the agent before the verdict"
    );
    let probe = s.node.poll_probe_transmit().expect("the probe");
    assert_eq!(probe.transmit.dst, SocketAddrV4::new(HA, MIP_PORT));
    let req = RequestRepr::parse_bytes(&probe.transmit.payload).unwrap();
    let reply = sign_reply(
        &ReplyRepr {
            code: ReplyCode::ACCEPTED,
            lifetime: req.lifetime,
            home_address: req.home_address,
            home_agent: HA,
            identification: req.identification,
            extensions: vec![Extension::TrustedNetworksConfigured],
        },
        &support::sa(),
    );
    s.node
        .handle_datagram(s.now, SocketAddrV4::new(HA, MIP_PORT), &reply);
    // Trusted: the probe's binding (mode 'c') gives way to the agent.
    let (t, req) = s.one_transmit();
    assert_eq!(*t.dst.ip(), AGENT);
    assert_eq!(req.care_of_address, FA_COA);
    assert_eq!(s.node.mode(), Some(Mode::F));
}

#[test]
fn an_untrusted_verdict_keeps_the_agent_unused() {
    let mut s = Sim::start(detecting());
    s.node.seed_probes(3);
    s.node.address_added(s.now, "eth0", OUTSIDE, 24);
    s.heard(OUTSIDE_AGENT, 1);
    // The probe gets no answer: untrusted (RFC 5266 §3.4.2).
    for _ in 0..20 {
        s.run_for(Duration::from_secs(1));
        while s.node.poll_probe_transmit().is_some() {}
        s.heard(OUTSIDE_AGENT, 2);
    }
    assert!(s.transmits().iter().all(|t| *t.dst.ip() != OUTSIDE_AGENT));
    assert_ne!(s.node.mode(), Some(Mode::F));
}

/// RFC 5944 §2.4.2: no advertisement within its lifetime, the agent is
/// gone; the node registers its co-located address on the same link.
#[test]
fn when_the_agent_falls_silent_the_node_is_back_in_mode_c_within_the_lifetime() {
    let mut s = Sim::start(prefixes());
    s.in_mode_f();
    let last = s.now;
    s.run_for(Duration::from_secs(ADV_LIFETIME.into()));
    let (t, req) = s.one_transmit();
    assert_eq!(t.dst, SocketAddrV4::new(HA, MIP_PORT));
    assert_eq!(t.src, Some(LOCAL));
    assert_eq!(req.care_of_address, LOCAL);
    assert_eq!(s.node.mode(), Some(Mode::C));
    assert!(s.now - last <= Duration::from_secs(ADV_LIFETIME.into()));
    assert!(s.actions().contains(&Action::ForeignAgentRoute {
        home: HOA,
        route: None
    }));
    s.answer(&t, ReplyCode::ACCEPTED);
    assert_eq!(s.node.state(), State::Registered { care_of: LOCAL });
    // Soliciting again on the link (§2.4).
    assert!(!s.solicitations().is_empty());
}

/// §3.7.2: the agent denies (here without an MN-FA association, so
/// unauthenticated): the node does not use it again until it is heard
/// anew, and registers its co-located address with its own, unchanged,
/// request (never the denial's lifetime or 'T').
#[test]
fn a_foreign_agent_denial_falls_back_to_the_colocated_address() {
    let mut s = Sim::start(prefixes());
    s.node.address_added(s.now, "eth0", LOCAL, 24);
    let (t, _) = s.one_transmit();
    s.answer(&t, ReplyCode::ACCEPTED);
    s.heard(AGENT, 1);
    let (t, req) = s.one_transmit();
    let denial = ReplyRepr {
        code: ReplyCode::FA_LIFETIME_TOO_LONG,
        lifetime: 5,
        home_address: req.home_address,
        home_agent: req.home_agent,
        identification: req.identification,
        extensions: vec![],
    }
    .to_bytes();
    s.node
        .handle_datagram(s.now, SocketAddrV4::new(AGENT, MIP_PORT), &denial);
    let (t2, req2) = s.one_transmit();
    assert_eq!(*t2.dst.ip(), HA);
    assert_eq!(req2.care_of_address, LOCAL);
    assert_eq!(req2.lifetime, support::config().lifetime);
    assert!(req2.flags.contains(Flags::D));
    assert_ne!(t.identification, t2.identification);
    assert_eq!(s.node.mode(), Some(Mode::C));
    // Further advertisements of the same agent change nothing.
    s.heard(AGENT, 2);
    assert!(s.transmits().is_empty());
}
