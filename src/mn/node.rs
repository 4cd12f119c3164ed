//! The sans-IO mobile node: attachment, access mode and the tunnel to the
//! home agent, above the registration [`Client`].
//!
//! Driven like the client (quinn-proto style):
//! - in: [`Node::address_added`], [`Node::address_removed`],
//!   [`Node::link_up`], [`Node::link_down`] (rtnetlink's view, mapped by
//!   the daemon), [`Node::handle_datagram`] (UDP replies),
//!   [`Node::handle_timeout`], [`Node::shutdown`];
//! - out: [`Node::poll_transmit`] (registration datagrams),
//!   [`Node::poll_action`] (tunnel up / moved / down, which the daemon
//!   turns into the tunnel, the home address on it, and the routes and
//!   rules), [`Node::poll_event`] (timestamped events for the operator
//!   and the lab), [`Node::poll_timeout`].
//!
//! Every state change is an [`Event::State`] with its reason, and a
//! tracing line.
//!
//! Mode 'c' (RFC 5266 §3.1.1): a new address on a trusted network is a
//! co-located care-of address; it is registered at once, superseding any
//! outstanding request (break before make, RFC 5944 §3.6: one outstanding
//! request per binding). Back on the home link the node deregisters
//! (RFC 5944 §3.6.1.1) and removes the tunnel. Modes 'f' and 'mc' (the
//! VPN's TIA as care-of address, issue 4) and the TNC probe (issue 5) add
//! inputs to this same machine; [`TrustPolicy`] is the seam for the probe.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

use ipnet::Ipv4Net;
use serde::Serialize;
use tracing::{info, warn};

use super::mode::{Mode, Trust, TrustPolicy};
use super::registration::{self, Client, Purpose, Transmit};
use crate::wire::{Flags, RequestPacket};

/// What the node is configured with (besides the registration itself).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The registration template. Its care-of address is ignored: the
    /// node picks it from the interfaces.
    pub registration: registration::Config,
    /// Interfaces whose addresses may become care-of addresses; empty
    /// means every interface the daemon reports.
    pub interfaces: Vec<String>,
    /// The home network: an address inside it on one of the interfaces
    /// means the node is on its home link. Defaults to the home address
    /// alone (/32).
    pub home_network: Option<Ipv4Net>,
    pub trust: TrustPolicy,
    /// Ask for reverse tunnelling (RFC 3024, 'T' bit): traffic from the
    /// home address goes through the tunnel to the home agent, so it
    /// passes ingress filters and the enterprise firewall.
    pub reverse_tunnel: bool,
    /// After a registration attempt went unanswered (every retransmission
    /// spent), try again after this long.
    pub retry_interval: Duration,
}

impl NodeConfig {
    pub fn new(registration: registration::Config) -> Self {
        NodeConfig {
            registration,
            interfaces: Vec::new(),
            home_network: None,
            trust: TrustPolicy::Prefixes(Vec::new()),
            reverse_tunnel: true,
            retry_interval: Duration::from_secs(30),
        }
    }
}

/// Where the node stands. Serialized in status and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No usable address yet (start, or every address gone).
    Detached,
    /// Only addresses on networks not known to be trusted: mode 'c' does
    /// not apply (mode 'mc' through the VPN will, issue 4).
    Untrusted { address: Ipv4Addr },
    /// On the home link: no binding, no tunnel.
    AtHome,
    /// A request for this care-of address is outstanding.
    Registering { care_of: Ipv4Addr },
    /// The home agent accepted this care-of address.
    Registered { care_of: Ipv4Addr },
    /// The home agent refused; no retry until the attachment changes.
    Denied { care_of: Ipv4Addr, code: u8 },
    /// No answer after every retransmission; retried later.
    Unreachable { care_of: Ipv4Addr },
    /// Deregistering before exit.
    Deregistering { care_of: Ipv4Addr },
    /// Shut down: nothing installed any more.
    Stopped,
}

impl State {
    /// The access mode this state runs in, if any.
    pub fn mode(&self) -> Option<Mode> {
        match self {
            State::Registering { .. }
            | State::Registered { .. }
            | State::Denied { .. }
            | State::Unreachable { .. }
            | State::Deregistering { .. } => Some(Mode::C),
            _ => None,
        }
    }
}

/// What the daemon must do to the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the tunnel of `home`, or move it: outer source `care_of`,
    /// outer destination `home_agent`; the home address on the tunnel
    /// device; traffic from the home address routed into it when
    /// `reverse_tunnel` (RFC 3024), with the outer datagrams on the
    /// physical route.
    TunnelUp {
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        reverse_tunnel: bool,
    },
    /// Remove the tunnel of `home` and everything installed with it.
    TunnelDown { home: Ipv4Addr },
}

/// Something the operator (and the lab's timing) wants to know. The node
/// stamps each with the `now` it was given; the daemon adds wall and
/// monotonic clock readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    AddressAdded {
        ifname: String,
        address: Ipv4Addr,
        prefix_len: u8,
    },
    AddressRemoved {
        ifname: String,
        address: Ipv4Addr,
    },
    LinkUp {
        ifname: String,
    },
    LinkDown {
        ifname: String,
    },
    /// A state transition and why.
    State {
        from: State,
        to: State,
        reason: String,
    },
    /// The access mode changed (`null` = none: at home or detached).
    ModeChanged {
        from: Option<Mode>,
        to: Option<Mode>,
        reason: String,
    },
    RequestSent {
        purpose: &'static str,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        identification: u64,
        retransmission: bool,
    },
    ReplyReceived {
        from: SocketAddrV4,
    },
    RegistrationAccepted {
        care_of: Ipv4Addr,
        lifetime: u64,
        renewal: bool,
    },
    RegistrationDenied {
        code: u8,
        reason: &'static str,
        by: &'static str,
        purpose: &'static str,
    },
    RegistrationFailed {
        purpose: &'static str,
        attempts: u32,
    },
    Deregistered {
        care_of: Ipv4Addr,
    },
    BindingExpired {
        care_of: Ipv4Addr,
    },
    HomeAgentChanged {
        from: Ipv4Addr,
        to: Ipv4Addr,
    },
    TunnelUp {
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
    },
    TunnelDown {
        reason: String,
    },
}

/// Counters of the node itself (the client keeps the registration ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    pub moves: u64,
    pub home_returns: u64,
    pub tunnel_ups: u64,
    pub tunnel_downs: u64,
    /// Registration datagrams not handed out because no care-of address
    /// was usable (retransmissions of a request whose address vanished).
    pub transmits_suppressed: u64,
}

/// `mip4ctl status` of the mobile node.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// "c", "f", "mc", or null (at home / detached).
    pub mode: Option<Mode>,
    #[serde(flatten)]
    pub state: State,
    pub home_address: Ipv4Addr,
    pub care_of_address: Option<Ipv4Addr>,
    pub home_agent: Ipv4Addr,
    /// Seconds left of the granted binding (null: none; u64::MAX never
    /// happens: an infinite lifetime shows as null `binding_expires_in`
    /// with `binding_infinite` true).
    pub binding_expires_in: Option<u64>,
    pub binding_infinite: bool,
    pub tunnel_up: bool,
    pub registration: RegistrationCounters,
    pub node: NodeStats,
}

/// The client's counters, serializable.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RegistrationCounters {
    pub requests_sent: u64,
    pub retransmissions: u64,
    pub replies_received: u64,
    pub replies_processed: u64,
    pub registrations: u64,
    pub deregistrations: u64,
    pub denials: u64,
    pub failures: u64,
    pub resyncs: u64,
    pub dropped_malformed: u64,
    pub dropped_unmatched: u64,
    pub dropped_late: u64,
    pub dropped_duplicate: u64,
    pub dropped_wrong_home_address: u64,
    pub dropped_unauthenticated: u64,
}

impl From<&registration::Stats> for RegistrationCounters {
    fn from(s: &registration::Stats) -> Self {
        RegistrationCounters {
            requests_sent: s.requests_sent,
            retransmissions: s.retransmissions,
            replies_received: s.replies_received,
            replies_processed: s.replies_processed,
            registrations: s.registrations,
            deregistrations: s.deregistrations,
            denials: s.denials,
            failures: s.failures,
            resyncs: s.resyncs,
            dropped_malformed: s.dropped_malformed,
            dropped_unmatched: s.dropped_unmatched,
            dropped_late: s.dropped_late,
            dropped_duplicate: s.dropped_duplicate,
            dropped_wrong_home_address: s.dropped_wrong_home_address,
            dropped_unauthenticated: s.dropped_unauthenticated,
        }
    }
}

#[derive(Debug, Clone)]
struct LocalAddress {
    ifname: String,
    addr: Ipv4Addr,
    prefix_len: u8,
    /// Order of appearance: the newest trusted address wins a move.
    seq: u64,
}

/// The tunnel as last asked of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TunnelState {
    care_of: Ipv4Addr,
    home_agent: Ipv4Addr,
}

/// The mobile node core. See the module documentation.
pub struct Node {
    cfg: NodeConfig,
    client: Client,
    state: State,
    addresses: Vec<LocalAddress>,
    links_down: Vec<String>,
    seq: u64,
    /// The care-of address the client registers (or last registered).
    care_of: Option<Ipv4Addr>,
    /// What the current request is for, as far as the node asked.
    purpose: Purpose,
    tunnel: Option<TunnelState>,
    retry_at: Option<Instant>,
    stopping: bool,
    actions: VecDeque<Action>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(Instant, Event)>,
    stats: NodeStats,
    /// Retransmissions already reported in events.
    seen_retransmissions: u64,
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Register => "register",
        Purpose::Renew => "renew",
        Purpose::Deregister => "deregister",
        Purpose::DeregisterAtHome => "deregister_at_home",
    }
}

impl Node {
    /// A node with the operating system's randomness.
    pub fn new(
        cfg: NodeConfig,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Self, registration::ConfigError> {
        let reg = Self::registration_config(&cfg);
        let client = Client::new(reg, now, wall)?;
        Ok(Self::with_client(cfg, client))
    }

    /// A node around a caller-built client (tests pass a seeded one).
    pub fn with_client(cfg: NodeConfig, client: Client) -> Self {
        Node {
            cfg,
            client,
            state: State::Detached,
            addresses: Vec::new(),
            links_down: Vec::new(),
            seq: 0,
            care_of: None,
            purpose: Purpose::Register,
            tunnel: None,
            retry_at: None,
            stopping: false,
            actions: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: NodeStats::default(),
            seen_retransmissions: 0,
        }
    }

    /// The client configuration the node runs: co-located (no foreign
    /// agent), 'T' as configured, care-of address chosen later.
    pub fn registration_config(cfg: &NodeConfig) -> registration::Config {
        let mut reg = cfg.registration.clone();
        reg.care_of_address = Ipv4Addr::UNSPECIFIED;
        reg.foreign_agent = None;
        reg.flags.set(Flags::T, cfg.reverse_tunnel);
        reg
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn mode(&self) -> Option<Mode> {
        self.state.mode()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn care_of_address(&self) -> Option<Ipv4Addr> {
        self.care_of
    }

    /// Whether [`shutdown`](Self::shutdown) has finished.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    pub fn status(&self, now: Instant) -> Status {
        let b = self.client.binding();
        Status {
            mode: self.mode(),
            state: self.state,
            home_address: self.client.home_address(),
            care_of_address: self.care_of,
            home_agent: self.client.home_agent(),
            binding_expires_in: b
                .and_then(|b| b.expires)
                .map(|e| e.saturating_duration_since(now).as_secs()),
            binding_infinite: b.is_some_and(|b| b.expires.is_none()),
            tunnel_up: self.tunnel.is_some(),
            registration: self.client.stats().into(),
            node: self.stats.clone(),
        }
    }

    // ----- inputs -----

    pub fn address_added(&mut self, now: Instant, ifname: &str, addr: Ipv4Addr, prefix_len: u8) {
        if !self.watches(ifname) {
            return;
        }
        let known = self
            .addresses
            .iter()
            .any(|a| a.addr == addr && a.ifname == ifname);
        if known {
            // The kernel repeats RTM_NEWADDR on changes of flags or
            // lifetimes: not a new attachment.
            return;
        }
        self.seq += 1;
        self.addresses.push(LocalAddress {
            ifname: ifname.to_string(),
            addr,
            prefix_len,
            seq: self.seq,
        });
        self.event(
            now,
            Event::AddressAdded {
                ifname: ifname.to_string(),
                address: addr,
                prefix_len,
            },
        );
        info!(ifname, %addr, prefix_len, "address added");
        self.evaluate(
            now,
            Some(addr),
            &format!("address {addr}/{prefix_len} added on {ifname}"),
        );
    }

    pub fn address_removed(&mut self, now: Instant, ifname: &str, addr: Ipv4Addr) {
        let before = self.addresses.len();
        self.addresses
            .retain(|a| !(a.addr == addr && a.ifname == ifname));
        if self.addresses.len() == before {
            return;
        }
        self.event(
            now,
            Event::AddressRemoved {
                ifname: ifname.to_string(),
                address: addr,
            },
        );
        info!(ifname, %addr, "address removed");
        self.evaluate(now, None, &format!("address {addr} removed from {ifname}"));
    }

    pub fn link_down(&mut self, now: Instant, ifname: &str) {
        if !self.watches(ifname) || self.links_down.iter().any(|l| l == ifname) {
            return;
        }
        self.links_down.push(ifname.to_string());
        self.event(
            now,
            Event::LinkDown {
                ifname: ifname.to_string(),
            },
        );
        info!(ifname, "link down");
        self.evaluate(now, None, &format!("link {ifname} down"));
    }

    pub fn link_up(&mut self, now: Instant, ifname: &str) {
        let before = self.links_down.len();
        self.links_down.retain(|l| l != ifname);
        if self.links_down.len() == before {
            return;
        }
        self.event(
            now,
            Event::LinkUp {
                ifname: ifname.to_string(),
            },
        );
        info!(ifname, "link up");
        self.evaluate(now, None, &format!("link {ifname} up"));
    }

    /// The interface is gone: its addresses with it.
    pub fn link_removed(&mut self, now: Instant, ifname: &str) {
        let gone: Vec<Ipv4Addr> = self
            .addresses
            .iter()
            .filter(|a| a.ifname == ifname)
            .map(|a| a.addr)
            .collect();
        for a in gone {
            self.address_removed(now, ifname, a);
        }
        self.links_down.retain(|l| l != ifname);
    }

    /// A UDP payload received on a registration socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.event(now, Event::ReplyReceived { from });
        self.client.handle_datagram(now, from, payload);
        self.drain_client(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            if let State::Unreachable { care_of } = self.state {
                self.register(now, care_of, "retrying after the home agent did not answer");
            }
        }
        let was_pending = self.client.is_pending();
        self.client.handle_timeout(now);
        if !was_pending && self.client.is_pending() {
            // The client started a renewal on its own timer.
            self.purpose = Purpose::Renew;
        }
        self.drain_client(now);
    }

    /// Begins a clean exit: with `deregister`, a registered binding is
    /// deregistered first (lifetime 0, RFC 5944 §3.6.1.1); the tunnel is
    /// removed when that ends (or at once without it). The daemon calls
    /// [`finish`](Self::finish) if the home agent never answers.
    pub fn shutdown(&mut self, now: Instant, deregister: bool) {
        self.stopping = true;
        self.retry_at = None;
        let usable = self.care_of.filter(|c| self.is_usable(*c));
        match (deregister, self.client.binding().is_some(), usable) {
            (true, true, Some(care_of)) => {
                self.purpose = Purpose::Deregister;
                self.client.deregister(now);
                self.set_state(
                    now,
                    State::Deregistering { care_of },
                    "shutting down: deregistering the binding",
                );
                self.drain_client(now);
            }
            _ => self.finish(now, "shutting down"),
        }
    }

    /// Ends the shutdown: tunnel removed, state Stopped.
    pub fn finish(&mut self, now: Instant, reason: &str) {
        self.stopping = true;
        self.tunnel_down(now, reason);
        self.set_state(now, State::Stopped, reason);
    }

    // ----- outputs -----

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<(Instant, Event)> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.client.poll_timeout(), self.retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- the decision -----

    fn watches(&self, ifname: &str) -> bool {
        self.cfg.interfaces.is_empty() || self.cfg.interfaces.iter().any(|i| i == ifname)
    }

    fn home_network(&self) -> Ipv4Net {
        self.cfg.home_network.unwrap_or_else(|| {
            Ipv4Net::new(self.client.home_address(), 32).expect("/32 is a valid prefix")
        })
    }

    fn usable_addresses(&self) -> impl Iterator<Item = &LocalAddress> {
        self.addresses
            .iter()
            .filter(|a| !self.links_down.contains(&a.ifname))
    }

    fn is_usable(&self, addr: Ipv4Addr) -> bool {
        self.usable_addresses().any(|a| a.addr == addr)
    }

    /// Decides the attachment after a change. `new` is an address that
    /// just appeared: if trusted, it is the one to register (the node
    /// moved there; break before make).
    fn evaluate(&mut self, now: Instant, new: Option<Ipv4Addr>, why: &str) {
        if self.stopping {
            return;
        }
        // Home link first (RFC 5944 §3.6.1.1): the home address, or an
        // address of the home network, on one of our interfaces.
        let home = self.home_network();
        let unassigned =
            self.client.home_address().is_unspecified() && self.cfg.home_network.is_none();
        let at_home = self
            .usable_addresses()
            .find(|a| !unassigned && home.contains(&a.addr))
            .cloned();
        if let Some(a) = at_home {
            if self.state != State::AtHome {
                let reason = format!(
                    "{why}: {} on {} is in the home network {home}",
                    a.addr, a.ifname
                );
                self.go_home(now, &reason);
            }
            return;
        }

        let policy = &self.cfg.trust;
        let trusted = |a: &&LocalAddress| policy.classify(a.addr) == Trust::Trusted;
        let current = self.care_of.filter(|c| {
            self.usable_addresses()
                .any(|a| a.addr == *c && policy.classify(a.addr) == Trust::Trusted)
        });
        let newest = self
            .usable_addresses()
            .filter(trusted)
            .max_by_key(|a| a.seq)
            .map(|a| (a.addr, a.ifname.clone(), a.prefix_len));
        let chosen = match (new, current) {
            (Some(n), _) if policy.classify(n) == Trust::Trusted && self.is_usable(n) => self
                .usable_addresses()
                .find(|a| a.addr == n)
                .map(|a| (a.addr, a.ifname.clone(), a.prefix_len)),
            (_, Some(c)) => self
                .usable_addresses()
                .find(|a| a.addr == c)
                .map(|a| (a.addr, a.ifname.clone(), a.prefix_len)),
            _ => newest,
        };

        match chosen {
            Some((addr, ifname, _)) => {
                let same = self.care_of == Some(addr)
                    && !matches!(
                        self.state,
                        State::AtHome | State::Detached | State::Untrusted { .. }
                    );
                if !same {
                    let reason = format!(
                        "{why}: {addr} on {ifname} is on a trusted network, co-located care-of address (RFC 5266 §3.1.1)"
                    );
                    self.stats.moves += u64::from(self.care_of.is_some());
                    self.register(now, addr, &reason);
                }
            }
            None => {
                let untrusted = self
                    .usable_addresses()
                    .max_by_key(|a| a.seq)
                    .map(|a| a.addr);
                let to = match untrusted {
                    Some(address) => State::Untrusted { address },
                    None => State::Detached,
                };
                if to != self.state {
                    let reason = match to {
                        State::Untrusted { address } => format!(
                            "{why}: {address} is not on a trusted network; mode c does not apply"
                        ),
                        _ => format!("{why}: no usable address left"),
                    };
                    // The binding, if any, stays at the home agent until
                    // it expires or the node reattaches: the next
                    // registration replaces it (break before make).
                    self.retry_at = None;
                    self.set_state(now, to, &reason);
                }
            }
        }
    }

    fn register(&mut self, now: Instant, care_of: Ipv4Addr, reason: &str) {
        self.care_of = Some(care_of);
        self.retry_at = None;
        self.purpose = Purpose::Register;
        self.set_state(now, State::Registering { care_of }, reason);
        // RFC 5944 §3.6: a newer request supersedes a pending one.
        self.client.move_to(now, care_of, None);
        self.drain_client(now);
    }

    fn go_home(&mut self, now: Instant, reason: &str) {
        self.stats.home_returns += 1;
        self.retry_at = None;
        self.care_of = None;
        self.tunnel_down(now, "back on the home link");
        self.set_state(now, State::AtHome, reason);
        // RFC 5944 §3.6.1.1: deregister all bindings, care-of address =
        // home address, sent from the home address to the home agent.
        if !self.client.home_address().is_unspecified() {
            self.purpose = Purpose::DeregisterAtHome;
            self.client.deregister_at_home(now);
            self.drain_client(now);
        }
    }

    fn tunnel_down(&mut self, now: Instant, reason: &str) {
        if self.tunnel.take().is_some() {
            self.stats.tunnel_downs += 1;
            let home = self.client.home_address();
            info!(%home, reason, "tunnel down");
            self.actions.push_back(Action::TunnelDown { home });
            self.event(
                now,
                Event::TunnelDown {
                    reason: reason.to_string(),
                },
            );
        }
    }

    fn tunnel_up(&mut self, now: Instant, care_of: Ipv4Addr) {
        let t = TunnelState {
            care_of,
            home_agent: self.client.home_agent(),
        };
        if self.tunnel == Some(t) {
            return;
        }
        self.tunnel = Some(t);
        self.stats.tunnel_ups += 1;
        let home = self.client.home_address();
        info!(%home, %care_of, home_agent = %t.home_agent, "tunnel up");
        self.actions.push_back(Action::TunnelUp {
            home,
            care_of,
            home_agent: t.home_agent,
            reverse_tunnel: self.cfg.reverse_tunnel,
        });
        self.event(
            now,
            Event::TunnelUp {
                care_of,
                home_agent: t.home_agent,
            },
        );
    }

    fn set_state(&mut self, now: Instant, to: State, reason: &str) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        info!(from = ?from, to = ?to, reason, "state");
        self.event(
            now,
            Event::State {
                from,
                to,
                reason: reason.to_string(),
            },
        );
        if from.mode() != to.mode() {
            let show = |m: Option<Mode>| m.map_or("none".to_string(), |m| m.to_string());
            info!(from = %show(from.mode()), to = %show(to.mode()), reason, "mode");
            self.event(
                now,
                Event::ModeChanged {
                    from: from.mode(),
                    to: to.mode(),
                    reason: reason.to_string(),
                },
            );
        }
    }

    fn event(&mut self, now: Instant, e: Event) {
        self.events.push_back((now, e));
    }

    /// Moves the client's datagrams and outcomes through the node.
    fn drain_client(&mut self, now: Instant) {
        while let Some(t) = self.client.poll_transmit() {
            // One datagram per transmission; the client counts each
            // retransmission before handing it out, in order.
            let retransmission = self.client.stats().retransmissions > self.seen_retransmissions;
            if retransmission {
                self.seen_retransmissions += 1;
            }
            let identification = RequestPacket::new_checked(&t.payload[..])
                .map(|p| p.identification())
                .unwrap_or(0);
            let care_of = RequestPacket::new_checked(&t.payload[..])
                .map(|p| p.care_of_address())
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let sendable = match t.src {
                // Co-located: the source is the care-of address, which
                // must still be ours (RFC 5944 §3.6.1.1).
                Some(src) if self.purpose != Purpose::DeregisterAtHome => self.is_usable(src),
                _ => true,
            };
            if !sendable {
                self.stats.transmits_suppressed += 1;
                continue;
            }
            self.event(
                now,
                Event::RequestSent {
                    purpose: purpose_name(self.purpose),
                    care_of,
                    home_agent: *t.dst.ip(),
                    identification,
                    retransmission,
                },
            );
            self.transmits.push_back(t);
        }
        while let Some(e) = self.client.poll_event() {
            self.on_client_event(now, e);
        }
    }

    fn on_client_event(&mut self, now: Instant, e: registration::Event) {
        use registration::Event as E;
        match e {
            E::Registered {
                binding, renewal, ..
            } => {
                self.event(
                    now,
                    Event::RegistrationAccepted {
                        care_of: binding.care_of_address,
                        lifetime: binding.lifetime.as_secs(),
                        renewal,
                    },
                );
                info!(care_of = %binding.care_of_address, lifetime = binding.lifetime.as_secs(), renewal, "registration accepted");
                if self.stopping {
                    return;
                }
                if self.care_of == Some(binding.care_of_address) {
                    self.tunnel_up(now, binding.care_of_address);
                    self.set_state(
                        now,
                        State::Registered {
                            care_of: binding.care_of_address,
                        },
                        &format!(
                            "home agent accepted {} for {} s",
                            binding.care_of_address,
                            binding.lifetime.as_secs()
                        ),
                    );
                }
            }
            E::Deregistered { care_of_address } => {
                self.event(
                    now,
                    Event::Deregistered {
                        care_of: care_of_address,
                    },
                );
                info!(care_of = %care_of_address, "deregistered");
                if self.stopping {
                    self.finish(now, "deregistration accepted");
                } else if self.state != State::AtHome {
                    self.tunnel_down(now, "binding removed");
                }
            }
            E::Denied {
                code,
                by,
                purpose,
                authenticated,
            } => {
                let by = match by {
                    registration::Agent::HomeAgent => "home_agent",
                    registration::Agent::ForeignAgent => "foreign_agent",
                };
                self.event(
                    now,
                    Event::RegistrationDenied {
                        code: code.0,
                        reason: code.name(),
                        by,
                        purpose: purpose_name(purpose),
                    },
                );
                warn!(%code, by, purpose = purpose_name(purpose), authenticated, "registration denied");
                if self.stopping {
                    self.finish(now, &format!("deregistration denied: {code}"));
                    return;
                }
                if let (Purpose::Register | Purpose::Renew, Some(care_of)) = (purpose, self.care_of)
                {
                    self.tunnel_down(now, &format!("registration denied: {code}"));
                    self.set_state(
                        now,
                        State::Denied {
                            care_of,
                            code: code.0,
                        },
                        &format!("home agent denied {care_of}: {code}"),
                    );
                }
            }
            E::Failed { purpose, attempts } => {
                self.event(
                    now,
                    Event::RegistrationFailed {
                        purpose: purpose_name(purpose),
                        attempts,
                    },
                );
                warn!(
                    purpose = purpose_name(purpose),
                    attempts, "no reply from the home agent"
                );
                if self.stopping {
                    self.finish(now, "home agent did not answer the deregistration");
                    return;
                }
                if let (Purpose::Register, State::Registering { care_of }) = (purpose, self.state) {
                    self.retry_at = Some(now + self.cfg.retry_interval);
                    self.set_state(
                        now,
                        State::Unreachable { care_of },
                        &format!(
                            "no reply after {attempts} transmissions; retry in {} s",
                            self.cfg.retry_interval.as_secs()
                        ),
                    );
                }
                // A failed renewal: the client keeps renewing while the
                // binding lasts; Expired follows if it never succeeds.
            }
            E::Expired { binding } => {
                self.event(
                    now,
                    Event::BindingExpired {
                        care_of: binding.care_of_address,
                    },
                );
                warn!(care_of = %binding.care_of_address, "binding expired");
                if self.stopping {
                    return;
                }
                self.tunnel_down(now, "binding expired");
                if let Some(care_of) = self.care_of.filter(|c| self.is_usable(*c)) {
                    if !matches!(self.state, State::Registering { .. }) {
                        self.register(now, care_of, "binding expired: registering again");
                    }
                }
            }
            E::HomeAgentChanged { from, to } => {
                self.event(now, Event::HomeAgentChanged { from, to });
                info!(%from, %to, "home agent named its unicast address (code 136)");
            }
            E::ReplayResync {
                method,
                clock_offset,
            } => {
                info!(
                    ?method,
                    clock_offset, "replay protection resynchronised (code 133)"
                );
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("state", &self.state)
            .field("care_of", &self.care_of)
            .field("tunnel", &self.tunnel)
            .finish_non_exhaustive()
    }
}
