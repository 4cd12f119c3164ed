//! The sans-IO mobile node: attachment, access mode and the tunnel to the
//! home agent, above the registration [`Client`].
//!
//! Driven like the client (quinn-proto style):
//! - in: [`Node::address_added`], [`Node::address_removed`],
//!   [`Node::link_up`], [`Node::link_down`], [`Node::ipv6_address_added`],
//!   [`Node::ipv6_default_route`] (rtnetlink's view, mapped by
//!   the daemon), [`Node::handle_datagram`] (UDP replies),
//!   [`Node::handle_timeout`], [`Node::shutdown`];
//! - out: [`Node::poll_transmit`] (registration datagrams),
//!   [`Node::poll_action`] (tunnel up / moved / down, which the daemon
//!   turns into the tunnel, the home address on it, and the routes and
//!   rules), [`Node::poll_event`] (timestamped events for the operator
//!   and the lab), [`Node::poll_timeout`].
//!
//! Every state change is an [`NodeEvent::State`] with its reason, and a
//! tracing line.
//!
//! Mode 'c' (RFC 5266 §3.1.1): a new address on a trusted network is a
//! co-located care-of address; it is registered at once, superseding any
//! outstanding request (break before make, RFC 5944 §3.6: one outstanding
//! request per binding). Back on the home link the node deregisters
//! (RFC 5944 §3.6.1.1) and removes the tunnel. Mode 'mc' (the VPN's TIA
//! as care-of address, §3.1.3) and the trusted-network probe (§3.4) add
//! inputs to this same machine; [`TrustPolicy`] selects the probe.
//!
//! One file per concern:
//! - this file: the [`Node`], its inputs and outputs;
//! - `state`: [`State`] and the care-of address with its mode (`Access`);
//! - `attach`: the decision after every change of attachment;
//! - `binding`: registering through the client and what its outcomes mean;
//! - `mc`: VPN inputs and mode 'mc';
//! - `ipv6`: IPv6 access, untrusted by definition, the VPN over it;
//! - `detection`: the probe, its verdicts and monitoring;
//! - `stray`: the i-HA's binding from a probe accepted without TNC,
//!   replaced or deregistered at once, and deregistered on shutdown;
//! - `tunnel`: the tunnel, its MTU, the home agent rule, holding traffic;
//! - `dsmip`: DSMIPv4 (RFC 5454), the IPv6 home address from the granted
//!   prefix and its routes into the tunnel;
//! - `nat`: RFC 3519 §4.10, registering again when the NAT lost its mapping;
//! - `reason`: why, typed, each decision with the RFC rule it follows;
//! - `action`, `event`, `status`, `config`: the types the daemon sees.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Instant, SystemTime};

use ipnet::Ipv4Net;
use tracing::info;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::detect::{Detector, ProbeTransmit};
use super::discovery::Discovery;
use super::mode::{Mode, TrustPolicy};
use super::registration::{self, Client, Transmit};
use super::vpn::{VpnSa, VpnView};
use crate::wire::Flags;

mod action;
mod attach;
mod binding;
mod config;
mod detection;
mod dsmip;
mod event;
mod foreign;
mod ipv6;
mod mc;
mod multihome;
mod nat;
mod operator;
mod reason;
mod state;
mod status;
mod stray;
mod tunnel;

pub use action::{Action, AgentRoute, HomeSource, Ipv6Home, VpnGuard, VpnRequest};
pub use config::{mac_string, Dsmipv4, Multihoming, NetworkMatch, NodeConfig};
pub use event::NodeEvent;
pub use mc::VPN_COMING_WAIT;
pub use multihome::CachedVerdictStatus;
pub use nat::SILENT_INTERVALS;
pub use operator::{Denials, Handover, Handovers, OperatorStats, Refused, HANDOVER_WINDOW};
use reason::Reason;
pub use state::State;
use state::{Access, McAttachment, TunnelState};
pub use status::{AgentsStatus, DetectionStatus, NodeStats, Status, VpnStatus};

#[derive(Debug, Clone)]
struct LocalAddress {
    ifname: String,
    addr: Ipv4Addr,
    prefix_len: u8,
    /// Order of appearance: among attachments as preferred, the newest
    /// trusted address wins a move.
    seq: u64,
    /// When it appeared (how long it may wait for its gateway's MAC).
    appeared: Instant,
}

/// The attachments as rtnetlink reported them.
#[derive(Debug, Default)]
struct Links {
    addresses: Vec<LocalAddress>,
    /// Watched links that are down: their addresses are not usable.
    down: Vec<String>,
    /// Counts addresses as they appear ([`LocalAddress::seq`]).
    seq: u64,
    /// Global IPv6 addresses on watched links (`ipv6`): no care-of
    /// address, but an access network the VPN runs over.
    ipv6: Vec<(String, std::net::Ipv6Addr)>,
    /// The main table has an IPv6 default route (`ipv6`).
    ipv6_default_route: bool,
}

/// What the node handed out and the daemon has not polled yet.
#[derive(Debug, Default)]
struct Outbox {
    actions: VecDeque<Action>,
    transmits: VecDeque<Transmit>,
    probes: VecDeque<ProbeTransmit>,
    events: VecDeque<(Instant, NodeEvent)>,
}

/// The kernel state as last asked of the daemon (each action is sent
/// only when it changes something).
#[derive(Debug, Default)]
struct Kernel {
    tunnel: Option<TunnelState>,
    /// The tunnel MTU (mode 'mc').
    tunnel_mtu: Option<u32>,
    /// The `to <home agent> lookup main` rule.
    direct_to_ha: Option<Ipv4Addr>,
    /// The rules that keep mode 'mc' inside ESP without the VPN's routes.
    vpn_guard: Option<VpnGuard>,
    /// Traffic from the home address is held.
    held: bool,
    /// The home address as the source of what the node opens.
    home_source: Option<HomeSource>,
    /// RFC 3519 UDP tunnelling granted, with its keepalive interval.
    udp: Option<u16>,
    /// Mode 'f': the home address routed to the foreign agent.
    agent_route: Option<AgentRoute>,
    /// DSMIPv4: the IPv6 home address and its routes.
    ipv6_home: Option<Ipv6Home>,
}

/// The mobile node core. See the module documentation.
pub struct Node {
    cfg: NodeConfig,
    client: Client,
    state: State,
    links: Links,
    /// The care-of address and the mode it serves.
    access: Access,
    /// What the daemon was asked to install.
    kernel: Kernel,
    retry_at: Option<Instant>,
    stopping: bool,
    /// The shutdown's deregistration of the node's binding is under way.
    deregistering: bool,
    /// The i-HA's binding to an untrusted address, from a probe it
    /// accepted without TNC (`stray`).
    stray: Option<stray::Stray>,
    out: Outbox,
    stats: NodeStats,
    /// The mode last reported in a `mode_changed` event.
    mode_shown: Option<Mode>,
    vpn: VpnView,
    /// The plugin's connection ended and no new snapshot came yet: charon
    /// may be dead, and with it the routes into ESP (kernel-libipsec).
    plugin_lost: bool,
    /// The VPN was asked for with the probe of an attachment left from
    /// mode 'c' (RFC 5266 §3.4.2 step 1, `mc::vpn_with_probe`); its
    /// verdict does not ask again.
    vpn_asked_with_probe: Option<String>,
    /// An IKE_SA of the VPN on its way, waited for instead of asking
    /// charon for another (`mc::after_untrusted`).
    vpn_awaited: Option<mc::AwaitedVpn>,
    /// Trusted-network detection, with `TrustPolicy::Tnc`.
    detector: Option<Detector>,
    /// Randomness for the probes' clients.
    rng: StdRng,
    /// RFC 5265 §3.2.4: re-register at `.0`; no user data after `.1`.
    monitor: Option<(Option<Instant>, Instant)>,
    /// Gateways, the verdict cache, a probe waiting for a gateway.
    multi: multihome::Multi,
    /// RFC 3519 §4.10: the watch over a granted UDP tunnel (`nat`).
    nat_watch: Option<nat::NatWatch>,
    /// The data plane's count of tunnel datagrams from the home agent.
    udp_received: u64,
    /// Foreign agents heard, solicitations due (mode 'f', `foreign`).
    discovery: Discovery,
    /// The agent that last denied or never answered (link, address): not
    /// used again until heard anew.
    refused_agent: Option<(String, Ipv4Addr)>,
    /// The operator's pin (`mip4ctl force`, `operator`).
    pin: Option<Mode>,
    /// Denials and handovers, from the node's events (`mip4ctl stats`).
    record: operator::Record,
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
        let detector = match &cfg.trust {
            TrustPolicy::Tnc(d) => Some(Detector::new(d.clone())),
            TrustPolicy::Prefixes(_) => None,
        };
        Node {
            client,
            state: State::Detached,
            links: Links::default(),
            access: Access::None,
            kernel: Kernel::default(),
            out: Outbox::default(),
            retry_at: None,
            stopping: false,
            deregistering: false,
            stray: None,
            stats: NodeStats::default(),
            mode_shown: None,
            vpn: VpnView::default(),
            plugin_lost: false,
            vpn_asked_with_probe: None,
            vpn_awaited: None,
            detector,
            rng: StdRng::from_entropy(),
            monitor: None,
            multi: multihome::Multi::default(),
            nat_watch: None,
            udp_received: 0,
            discovery: Discovery::default(),
            refused_agent: None,
            pin: None,
            record: operator::Record::default(),
            cfg,
        }
    }

    /// Seeds the randomness of the probes' clients (deterministic tests).
    pub fn seed_probes(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
    }

    /// Detection, when trust comes from the probe.
    pub fn detector(&self) -> Option<&Detector> {
        self.detector.as_ref()
    }

    /// Whether traffic from the home address is held now.
    pub fn traffic_held(&self) -> bool {
        self.kernel.held
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

    /// The access mode: 'c' or 'mc' while the node has a care-of
    /// address, None at home or detached.
    pub fn mode(&self) -> Option<Mode> {
        self.access.mode().filter(|_| self.state.has_care_of())
    }

    /// The node's view of the VPN.
    pub fn vpn_view(&self) -> &VpnView {
        &self.vpn
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn care_of_address(&self) -> Option<Ipv4Addr> {
        self.access.care_of()
    }

    /// Whether [`shutdown`](Self::shutdown) has finished.
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    pub fn address_added(&mut self, now: Instant, ifname: &str, addr: Ipv4Addr, prefix_len: u8) {
        if !self.watches(ifname) {
            return;
        }
        let known = self
            .links
            .addresses
            .iter()
            .any(|a| a.addr == addr && a.ifname == ifname);
        if known {
            // The kernel repeats RTM_NEWADDR on changes of flags or
            // lifetimes: not a new attachment.
            return;
        }
        self.links.seq += 1;
        self.links.addresses.push(LocalAddress {
            ifname: ifname.to_string(),
            addr,
            prefix_len,
            seq: self.links.seq,
            appeared: now,
        });
        self.event(
            now,
            NodeEvent::AddressAdded {
                ifname: ifname.to_string(),
                address: addr,
                prefix_len,
            },
        );
        info!(ifname, %addr, prefix_len, "address added");
        if self.cfg.foreign_agent {
            // Agent discovery beside co-located acquisition (RFC 5266
            // §3.1.2): solicit on the link until an agent answers.
            self.discovery.attached(now, ifname);
        }
        self.evaluate(
            now,
            Some(addr),
            &format!("address {addr}/{prefix_len} added on {ifname}"),
        );
        self.settle(now);
    }

    pub fn address_removed(&mut self, now: Instant, ifname: &str, addr: Ipv4Addr) {
        let before = self.links.addresses.len();
        self.links
            .addresses
            .retain(|a| !(a.addr == addr && a.ifname == ifname));
        if self.links.addresses.len() == before {
            return;
        }
        self.event(
            now,
            NodeEvent::AddressRemoved {
                ifname: ifname.to_string(),
                address: addr,
            },
        );
        info!(ifname, %addr, "address removed");
        // Before the attachment is forgotten: mode 'mc' still holds.
        self.roam_when_ready(now, addr);
        let why = format!("address {addr} removed from {ifname}");
        if !self.links.addresses.iter().any(|a| a.ifname == ifname) {
            self.discovery.detached(ifname);
        }
        self.forget_gateway(ifname);
        self.forget_attachment(now, ifname, Some(addr), &why);
        self.evaluate(now, None, &why);
        self.settle(now);
    }

    pub fn link_down(&mut self, now: Instant, ifname: &str) {
        if !self.watches(ifname) || self.links.down.iter().any(|l| l == ifname) {
            return;
        }
        self.links.down.push(ifname.to_string());
        self.event(
            now,
            NodeEvent::LinkDown {
                ifname: ifname.to_string(),
            },
        );
        info!(ifname, "link down");
        let why = format!("link {ifname} down");
        self.discovery.detached(ifname);
        self.forget_gateway(ifname);
        self.forget_attachment(now, ifname, None, &why);
        self.evaluate(now, None, &why);
        self.settle(now);
    }

    pub fn link_up(&mut self, now: Instant, ifname: &str) {
        let before = self.links.down.len();
        self.links.down.retain(|l| l != ifname);
        if self.links.down.len() == before {
            return;
        }
        self.event(
            now,
            NodeEvent::LinkUp {
                ifname: ifname.to_string(),
            },
        );
        info!(ifname, "link up");
        self.evaluate(now, None, &format!("link {ifname} up"));
        self.settle(now);
    }

    /// The interface is gone: its addresses with it.
    pub fn link_removed(&mut self, now: Instant, ifname: &str) {
        let gone: Vec<Ipv4Addr> = self
            .links
            .addresses
            .iter()
            .filter(|a| a.ifname == ifname)
            .map(|a| a.addr)
            .collect();
        for a in gone {
            self.address_removed(now, ifname, a);
        }
        self.links.ipv6.retain(|(i, _)| i != ifname);
        self.links.down.retain(|l| l != ifname);
    }

    /// The plugin in charon connected; a snapshot follows.
    pub fn plugin_connected(&mut self, now: Instant, agent: &str) {
        info!(agent, "charon plugin connected");
        self.event(
            now,
            NodeEvent::PluginConnected {
                agent: agent.to_string(),
            },
        );
    }

    /// The plugin's connection ended (charon stopped or restarts). The
    /// VPN view stays as it was: charon's TIA and policies may well still
    /// be in place, and the snapshot of the next connection decides. But
    /// a mode 'mc' binding's traffic is held meanwhile: if charon died,
    /// its routes into ESP may have gone with it while the TIA stays on
    /// the access interface, and the tunnel would leave outside ESP
    /// (RFC 5266 §3.1.3; seen by the lab's kill-anytime captures).
    pub fn plugin_disconnected(&mut self, now: Instant, reason: &str) {
        info!(reason, "charon plugin disconnected");
        self.plugin_lost = true;
        self.event(
            now,
            NodeEvent::PluginDisconnected {
                reason: reason.to_string(),
            },
        );
        self.settle(now);
    }

    /// A UDP payload received on a registration socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.event(now, NodeEvent::ReplyReceived { from });
        if let Some(d) = self.detector.as_mut().filter(|d| d.owns(payload)) {
            let forged = d.stats().forged_replies;
            let out = d.handle_datagram(now, from, payload);
            if d.stats().forged_replies > forged {
                self.event(now, NodeEvent::ProbeReplyDropped { from });
            }
            self.drain_probe(now);
            if let Some(o) = out {
                self.on_probe_outcome(now, o);
            }
            self.settle(now);
            return;
        }
        if self.stray_owns(payload) {
            self.stray_datagram(now, from, payload);
            self.settle(now);
            return;
        }
        self.client.handle_datagram(now, from, payload);
        self.drain_client(now);
        self.settle(now);
    }

    /// The next probe datagram: send it from a socket that bypasses the
    /// VPN, bound to `ifname` and the source address
    /// ([`crate::netlink::bypass::probe_socket`]).
    pub fn poll_probe_transmit(&mut self) -> Option<ProbeTransmit> {
        self.out.probes.pop_front()
    }

    /// The daemon could not send the transmit (probe or registration
    /// request) with `identification` yet, for want of a route, and holds
    /// it: its retransmission timer waits for it
    /// ([`Client::transmit_parked`]).
    pub fn transmit_parked(&mut self, identification: u64) {
        if let Some(d) = self.detector.as_mut() {
            d.transmit_parked(identification);
        }
        self.client.transmit_parked(identification);
    }

    /// The held transmit with `identification` left at `now`: the wait
    /// for its reply starts now ([`Client::transmit_left`]).
    pub fn transmit_left(&mut self, now: Instant, identification: u64) {
        if let Some(d) = self.detector.as_mut() {
            d.transmit_left(now, identification);
        }
        self.client.transmit_left(now, identification);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            if let State::Unreachable { .. } = self.state {
                let access = self.access.clone();
                self.register(now, access, "retrying after the home agent did not answer");
            }
        }
        if let Some(d) = self.detector.as_mut() {
            if d.poll_timeout().is_some_and(|t| now >= t) {
                let out = d.handle_timeout(now);
                self.drain_probe(now);
                if let Some(o) = out {
                    self.on_probe_outcome(now, o);
                }
            }
        }
        if self.gateway_wait_timeout().is_some_and(|t| now >= t) {
            self.evaluate(now, None, "no gateway MAC address in time");
            self.gateway_wait_expired();
        }
        self.awaited_vpn_timeout(now);
        self.monitor_timeout(now);
        self.discovery_timeout(now);
        self.stray_handle_timeout(now);
        self.nat_watch_check(now);
        self.client.handle_timeout(now);
        self.drain_client(now);
        self.settle(now);
    }

    /// Begins a clean exit: with `deregister`, a registered binding is
    /// deregistered first (lifetime 0, RFC 5944 §3.6.1.1); the tunnel is
    /// removed when that ends (or at once without it). A binding the
    /// i-HA holds to an untrusted address (a probe accepted without TNC)
    /// is deregistered whatever `deregister` says. The daemon calls
    /// [`finish`](Self::finish) if the home agent never answers.
    pub fn shutdown(&mut self, now: Instant, deregister: bool) {
        self.stopping = true;
        self.retry_at = None;
        self.monitor = None;
        self.cancel_probe(now, "shutting down");
        let usable = self.access.care_of().filter(|_| self.access_usable());
        if let (true, true, Some(care_of)) = (deregister, self.client.binding().is_some(), usable) {
            self.client.deregister(now);
            self.deregistering = true;
            self.set_state(
                now,
                State::Deregistering { care_of },
                "shutting down: deregistering the binding",
            );
            self.drain_client(now);
        }
        self.deregister_stray(now, "shutting down");
        if let (false, Some(care_of)) = (self.deregistering, self.stray_care_of()) {
            if self.stray_pending() {
                self.set_state(
                    now,
                    State::Deregistering { care_of },
                    "shutting down: deregistering the i-HA's binding to an untrusted address",
                );
            }
        }
        self.finish_when_done(now, "shutting down");
    }

    /// Finishes the shutdown once no deregistration is outstanding.
    fn finish_when_done(&mut self, now: Instant, reason: &str) {
        if self.stopping
            && !self.deregistering
            && !self.stray_pending()
            && self.state != State::Stopped
        {
            self.finish(now, reason);
        }
    }

    /// Ends the shutdown: tunnel removed, state Stopped.
    pub fn finish(&mut self, now: Instant, reason: &str) {
        self.stopping = true;
        self.tunnel_down(now, reason);
        self.agent_route(None);
        self.set_state(now, State::Stopped, reason);
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.actions.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<(Instant, NodeEvent)> {
        self.out.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.stray_timeout(),
            self.retry_at,
            self.detector.as_ref().and_then(|d| d.poll_timeout()),
            self.monitor.and_then(|(r, _)| r),
            self.monitor.map(|(_, d)| d),
            self.gateway_wait_timeout(),
            self.nat_watch_timeout(),
            self.discovery.poll_timeout(),
            self.vpn_awaited.map(|a| a.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn watches(&self, ifname: &str) -> bool {
        self.cfg.interfaces.is_empty() || self.cfg.interfaces.iter().any(|i| i == ifname)
    }

    fn home_network(&self) -> Ipv4Net {
        self.cfg.home_network.unwrap_or_else(|| {
            Ipv4Net::new(self.client.home_address(), 32).expect("/32 is a valid prefix")
        })
    }

    /// Physical attachments: addresses on watched, running links, never
    /// a TIA (with kernel IPsec charon puts the TIA on the physical
    /// interface; it is a care-of address only through the VPN).
    fn usable_addresses(&self) -> impl Iterator<Item = &LocalAddress> {
        self.links
            .addresses
            .iter()
            .filter(|a| !self.links.down.contains(&a.ifname) && !self.vpn.is_tia(a.addr))
    }

    fn is_usable(&self, addr: Ipv4Addr) -> bool {
        self.usable_addresses().any(|a| a.addr == addr)
    }

    /// The TIA the VPN offers now, with its IKE_SA.
    fn current_vpn(&self) -> Option<&VpnSa> {
        self.vpn.current(&self.cfg.vpn_connections)
    }

    /// Whether requests may leave from `src`: a physical address we have,
    /// or the TIA the VPN offers now (mode 'mc').
    fn source_usable(&self, src: Ipv4Addr) -> bool {
        // Pinned to mode 'c', a TIA is no care-of address: its binding
        // is not renewed.
        self.is_usable(src)
            || (self.pin != Some(Mode::C) && self.current_vpn().and_then(|v| v.tia) == Some(src))
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
            NodeEvent::State {
                from,
                to,
                reason: reason.to_string(),
            },
        );
        let (from_mode, to_mode) = (self.mode_shown, self.mode());
        if from_mode != to_mode {
            self.mode_shown = to_mode;
            let show = |m: Option<Mode>| m.map_or("none".to_string(), |m| m.to_string());
            info!(from = %show(from_mode), to = %show(to_mode), reason, "mode");
            self.event(
                now,
                NodeEvent::ModeChanged {
                    from: from_mode,
                    to: to_mode,
                    reason: reason.to_string(),
                },
            );
        }
    }

    fn event(&mut self, now: Instant, e: NodeEvent) {
        self.record.observe(now, &e);
        self.out.events.push_back((now, e));
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("state", &self.state)
            .field("access", &self.access)
            .field("tunnel", &self.kernel.tunnel)
            .finish_non_exhaustive()
    }
}
