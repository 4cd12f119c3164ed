//! The node simulator shared by the mn_* tests: a sans-IO [`Node`] with a
//! hand-held clock, a scripted home agent (`FakeHa` of
//! registration_support, which every includer declares as `support`), and
//! what the node hands back collected after every input. Each test file
//! adds its own `Sim::new()` (its configuration) and scenario steps in an
//! `impl Sim` of its own.

#![allow(dead_code)]

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use mip4::mn::node::{HomeSource, NodeConfig, NodeEvent};
use mip4::mn::{Action, Client, Node, Transmit, VpnInput};
use mip4::replay::NtpTimestamp;
use mip4::wire::{ReplyCode, RequestRepr, MIP_PORT};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::support::{self, FakeHa, HA};

pub struct Sim {
    pub node: Node,
    pub ha: FakeHa,
    pub t0: Instant,
    pub now: Instant,
    /// Every event the node reported so far (`events()` adds to it).
    pub events: Vec<NodeEvent>,
    /// Every action the node asked for so far (`actions()` adds to it),
    /// but the home-address-source ones.
    pub actions: Vec<Action>,
    /// Every home-address-source action so far, in order (`sources()`).
    pub sources: Vec<Option<HomeSource>>,
    /// Every action so far in order, the home-address-source ones too.
    pub all: Vec<Action>,
}

impl Sim {
    /// A node with `cfg`, its client's randomness seeded: runs repeat.
    pub fn start(cfg: NodeConfig) -> Self {
        let t0 = Instant::now();
        let client = Client::with_rng(
            Node::registration_config(&cfg),
            t0,
            support::wall(),
            Box::new(StdRng::seed_from_u64(7)),
        )
        .unwrap();
        Sim {
            node: Node::with_client(cfg, client),
            ha: FakeHa::new(),
            t0,
            now: t0,
            events: Vec::new(),
            actions: Vec::new(),
            sources: Vec::new(),
            all: Vec::new(),
        }
    }

    /// The wall clock as the home agent sees it now.
    pub fn ntp(&self) -> NtpTimestamp {
        NtpTimestamp::from_system_time(support::wall()).plus(self.now - self.t0)
    }

    /// The registration datagrams the node sends now (never a probe).
    pub fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.node.poll_transmit()).collect()
    }

    /// Exactly one registration datagram, and the request in it.
    pub fn one_transmit(&mut self) -> (Transmit, RequestRepr) {
        let mut t = self.transmits();
        assert_eq!(t.len(), 1, "expected one datagram, got {t:?}");
        let t = t.pop().unwrap();
        let req = self.ha.parse(&t.payload);
        (t, req)
    }

    /// The node's new actions (kept in `self.actions` too), but the
    /// home-address-source ones: they go to `self.sources`, which the
    /// tests of that feature read (`sources()`).
    pub fn actions(&mut self) -> Vec<Action> {
        let mut new = Vec::new();
        while let Some(a) = self.node.poll_action() {
            self.all.push(a.clone());
            match a {
                Action::HomeAddressSource { source } => self.sources.push(source),
                a => new.push(a),
            }
        }
        self.actions.extend(new.iter().cloned());
        new
    }

    /// Every home-address-source action so far, in order.
    pub fn sources(&mut self) -> Vec<Option<HomeSource>> {
        self.actions();
        self.sources.clone()
    }

    /// The node's new events (kept in `self.events` too), each stamped
    /// within the simulated clock.
    pub fn events(&mut self) -> Vec<NodeEvent> {
        let new: Vec<NodeEvent> = std::iter::from_fn(|| self.node.poll_event())
            .map(|(at, e)| {
                assert!(
                    at >= self.t0 && at <= self.now,
                    "event stamped outside the clock"
                );
                e
            })
            .collect();
        self.events.extend(new.iter().cloned());
        new
    }

    /// The scripted home agent answers `t` with `code`.
    pub fn answer(&mut self, t: &Transmit, code: ReplyCode) {
        let reply = self.ha.answer(&t.payload, self.ntp(), code);
        self.node
            .handle_datagram(self.now, SocketAddrV4::new(HA, MIP_PORT), &reply);
    }

    /// The clock jumps by `d`; the node sees one timeout at the end.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.node.handle_timeout(self.now);
    }

    /// The clock runs `d` on, the node's timers fired in order on the way.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.node.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.node.handle_timeout(self.now);
        }
        self.now = end;
    }

    /// The clock moves to the node's next timer, which fires.
    pub fn fire_next_timer(&mut self) {
        let t = self.node.poll_timeout().expect("a timer is armed");
        assert!(t >= self.now);
        self.now = t;
        self.node.handle_timeout(t);
    }

    /// What the daemon maps one of the plugin's messages to.
    pub fn vpn(&mut self, input: VpnInput) {
        self.node.vpn_input(self.now, input);
    }
}
