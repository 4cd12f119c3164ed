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

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::detect::{self, Cause, DetectStats, Detector, Outcome, ProbeTransmit};
use super::detect::{Verdict, VpnWhenInside};
use super::mode::{Mode, Trust, TrustPolicy};
use super::registration::{self, Client, Purpose, Transmit};
use super::vpn::{PathMtu, VpnInput, VpnSa, VpnView, DEFAULT_ESP_OVERHEAD};
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
    /// VPN connections (charon peer_cfg names) whose TIA may become the
    /// care-of address in mode 'mc'; empty: any.
    pub vpn_connections: Vec<String>,
    /// Bytes ESP (with UDP encapsulation) adds to a datagram, for the
    /// MTU of the Mobile IP tunnel inside the VPN (see [`PathMtu`]).
    pub esp_overhead: u32,
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
            vpn_connections: Vec::new(),
            esp_overhead: DEFAULT_ESP_OVERHEAD,
        }
    }
}

/// Where the node stands. Serialized in status and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No usable address yet (start, or every address gone).
    Detached,
    /// Only addresses on networks not known to be trusted, and no TIA
    /// from the VPN (yet, or any more): mode 'c' does not apply and mode
    /// 'mc' waits for the VPN.
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
    /// Finding out whether `address` is on a trusted network (RFC 5266
    /// §3.4): the probe to the i-HA runs, no mode is decided, traffic
    /// that would leave in the clear is held.
    Detecting { address: Ipv4Addr },
    /// Shut down: nothing installed any more.
    Stopped,
}

impl State {
    /// Whether this state runs in an access mode (it has a care-of
    /// address); which one is the node's ([`Node::mode`]). Answers
    /// `Mode::C` for those states, kept for callers that only ask
    /// whether.
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
    /// Set the MTU of the tunnel device of `home` (mode 'mc': the tunnel
    /// runs inside ESP and must not fragment, see [`PathMtu`]).
    TunnelMtu { home: Ipv4Addr, mtu: u32 },
    /// Hold the home address's traffic: the mode is not decided (RFC
    /// 5266 §3.4 last paragraph, RFC 5265 §3.2.2). The daemon makes the
    /// home address's route a blackhole until [`Action::ReleaseTraffic`].
    HoldTraffic { home: Ipv4Addr },
    /// The path is decided again: route the home address's traffic into
    /// the tunnel. A no-op without a tunnel.
    ReleaseTraffic { home: Ipv4Addr },
    /// Ask charon, through the plugin, to bring a VPN connection up or
    /// down (RFC 5266 §3.4.1 step 2, §3.4.2 step 1).
    Vpn(VpnRequest),
}

/// A request to charon about the VPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum VpnRequest {
    Initiate { connection: String },
    Terminate { connection: String },
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
    /// A request that found no route when it was due went out when a
    /// route appeared (the daemon's doing: it never reached the wire
    /// before, so this is not a retransmission).
    RequestSentOnRoute {
        src: Option<Ipv4Addr>,
        dst: SocketAddrV4,
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
    /// The plugin in charon connected (mip4d side of the bridge).
    PluginConnected {
        agent: String,
    },
    /// The plugin's connection ended; the VPN view is kept until the next
    /// snapshot.
    PluginDisconnected {
        reason: String,
    },
    /// handle_vips: the VPN installed a TIA on the MN.
    VpnTiaAssigned {
        connection: String,
        ike_sa: u32,
        tia: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
        local: Option<Ipv4Addr>,
    },
    /// handle_vips(release): the IKE_SA's TIA goes.
    VpnTiaReleased {
        ike_sa: u32,
        tia: Option<Ipv4Addr>,
    },
    /// ike_update: MOBIKE moved the IKE_SA.
    VpnMoved {
        ike_sa: u32,
        from: Option<Ipv4Addr>,
        to: Option<Ipv4Addr>,
        gateway: Option<Ipv4Addr>,
    },
    VpnUp {
        connection: String,
        ike_sa: u32,
    },
    VpnDown {
        ike_sa: u32,
    },
    /// ike_rekey (`reestablished` false) or ike_reestablish_post (true).
    VpnRekeyed {
        from: u32,
        to: u32,
        reestablished: bool,
        gateway: Option<Ipv4Addr>,
    },
    /// The kernel roam event, as charon saw it.
    VpnRoam,
    /// A snapshot from the plugin: the view is replaced by it.
    VpnSnapshot {
        ike_sas: usize,
        tia: Option<Ipv4Addr>,
        gateway: Option<Ipv4Addr>,
    },
    /// A VPN input that changed nothing at the home agent, and why
    /// (`keep_binding`: e.g. a MOBIKE move with the TIA unchanged,
    /// RFC 5266 §3).
    Decision {
        decision: &'static str,
        reason: String,
    },
    /// The binding at the home agent no longer leads anywhere: its
    /// care-of address (the TIA) is gone with the VPN.
    BindingStale {
        care_of: Ipv4Addr,
        reason: String,
    },
    /// The Mobile IP tunnel's MTU was set (mode 'mc').
    TunnelMtu {
        mtu: u32,
        physical: Option<u32>,
        tia_device: Option<u32>,
        esp_overhead: u32,
    },
    /// Trusted-network detection began for an attachment (RFC 5266 §3.4).
    ProbeStarted {
        ifname: String,
        address: Ipv4Addr,
        reason: String,
    },
    /// A probe request left (directly, bypassing the VPN).
    ProbeSent {
        ifname: String,
        address: Ipv4Addr,
        home_agent: Ipv4Addr,
        identification: u64,
        retransmission: bool,
    },
    /// A newer attachment (or the loss of this one) ended a probe before
    /// its verdict.
    ProbeCancelled {
        ifname: String,
        address: Ipv4Addr,
        reason: String,
    },
    /// A reply to the probe that was not believed: it failed the MN-HA
    /// authenticator, did not parse, or named another home address.
    ProbeReplyDropped {
        from: SocketAddrV4,
    },
    /// The detection's outcome for an attachment.
    TrustVerdict {
        ifname: String,
        address: Ipv4Addr,
        verdict: Verdict,
        #[serde(flatten)]
        cause: Cause,
        /// Milliseconds from the probe's start (null for monitoring).
        elapsed_ms: Option<u64>,
        /// Replies dropped as forged during this probe.
        forged: u64,
        reason: String,
    },
    /// Traffic from the home address is held (blackholed).
    TrafficHeld {
        reason: String,
    },
    /// Traffic from the home address flows again.
    TrafficReleased {
        reason: String,
    },
    /// mip4d asked charon to initiate or terminate the VPN.
    VpnRequested {
        #[serde(flatten)]
        request: VpnRequest,
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
    /// Registrations of a TIA as care-of address (mode 'mc').
    pub tia_registrations: u64,
    /// MOBIKE moves of the IKE_SA that needed no registration (RFC 5266
    /// §3: the TIA stayed).
    pub vpn_moves_absorbed: u64,
    /// Times the TIA changed, or the MN moved to another gateway, while
    /// in mode 'mc' (each re-registered at once).
    pub tia_changes: u64,
    /// Times the binding went stale (TIA released, IKE_SA down).
    pub bindings_stale: u64,
    /// Times traffic from the home address was held (detection running
    /// with no protected path), and released.
    pub traffic_holds: u64,
    pub traffic_releases: u64,
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
    /// Mode 'mc': the VPN the care-of address comes from.
    pub vpn: Option<VpnStatus>,
    pub registration: RegistrationCounters,
    pub node: NodeStats,
    /// Trusted-network detection (null when trust comes from prefixes).
    pub detection: Option<DetectionStatus>,
}

/// The detection part of `mip4ctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionStatus {
    /// The attachment being probed, if any.
    pub probing: Option<Ipv4Addr>,
    pub verdicts: Vec<detect::Attachment>,
    /// Whether traffic from the home address is held now.
    pub traffic_held: bool,
    pub counters: DetectStats,
}

/// The VPN part of `mip4ctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct VpnStatus {
    /// The IKE_SA whose TIA is (or would be) the care-of address.
    pub current: Option<VpnSa>,
    /// Every IKE_SA the plugin reported.
    pub ike_sas: Vec<VpnSa>,
    /// The binding's care-of address is a TIA that is gone.
    pub binding_stale: bool,
    pub tunnel_mtu: Option<u32>,
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

/// The VPN attachment a mode 'mc' registration was made through.
#[derive(Debug, Clone, PartialEq, Eq)]
struct McAttachment {
    tia: Ipv4Addr,
    /// The gateway as of the registration, followed through MOBIKE moves
    /// and rekeys of the same IKE_SA (same gateway, RFC 4555); a TIA from
    /// an IKE_SA with another remote is another gateway.
    gateway: Option<Ipv4Addr>,
    ike_sa: u32,
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
    /// How the current care-of address is used (c or mc).
    access: Mode,
    /// The mode last reported in a `mode_changed` event.
    mode_shown: Option<Mode>,
    vpn: VpnView,
    /// The VPN attachment of the current mode 'mc' registration.
    mc: Option<McAttachment>,
    /// The mode 'mc' binding's TIA is gone (released, IKE_SA down).
    stale: bool,
    /// The tunnel MTU last asked of the daemon.
    tunnel_mtu: Option<u32>,
    /// Counts registrations the node started (to tell, after a VPN
    /// input, whether it registered).
    registrations_started: u64,
    /// Trusted-network detection, with `TrustPolicy::Tnc`.
    detector: Option<Detector>,
    probe_transmits: VecDeque<ProbeTransmit>,
    /// Randomness for the probes' clients.
    rng: StdRng,
    /// Traffic from the home address is held.
    held: bool,
    /// The plugin's connection ended and no new snapshot came yet: charon
    /// may be dead, and with it the routes into ESP (kernel-libipsec).
    plugin_lost: bool,
    /// Whether the last reply handed to the client had TNC in its
    /// authenticated part.
    last_tnc: Option<bool>,
    /// RFC 5265 §3.2.4: re-register at `.0`; no user data after `.1`.
    monitor: Option<(Option<Instant>, Instant)>,
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
        let detector = match &cfg.trust {
            TrustPolicy::Tnc(d) => Some(Detector::new(d.clone(), cfg.registration.sa.clone())),
            TrustPolicy::Prefixes(_) => None,
        };
        Node {
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
            access: Mode::C,
            mode_shown: None,
            vpn: VpnView::default(),
            mc: None,
            stale: false,
            tunnel_mtu: None,
            registrations_started: 0,
            detector,
            probe_transmits: VecDeque::new(),
            rng: StdRng::from_entropy(),
            held: false,
            plugin_lost: false,
            last_tnc: None,
            monitor: None,
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
        self.held
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
        self.state.mode().map(|_| self.access)
    }

    /// The node's view of the VPN.
    pub fn vpn_view(&self) -> &VpnView {
        &self.vpn
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
            vpn: (!self.vpn.sas().is_empty() || self.mc.is_some()).then(|| VpnStatus {
                current: self.vpn.current(&self.cfg.vpn_connections).cloned(),
                ike_sas: self.vpn.sas().to_vec(),
                binding_stale: self.stale,
                tunnel_mtu: self.tunnel_mtu,
            }),
            registration: self.client.stats().into(),
            node: self.stats.clone(),
            detection: self.detector.as_ref().map(|d| DetectionStatus {
                probing: d.probing().map(|(_, a)| a),
                verdicts: d.verdicts().to_vec(),
                traffic_held: self.held,
                counters: d.stats().clone(),
            }),
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
        self.settle(now);
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
        let why = format!("address {addr} removed from {ifname}");
        self.forget_attachment(now, ifname, Some(addr), &why);
        self.evaluate(now, None, &why);
        self.settle(now);
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
        let why = format!("link {ifname} down");
        self.forget_attachment(now, ifname, None, &why);
        self.evaluate(now, None, &why);
        self.settle(now);
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
        self.settle(now);
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

    /// The plugin in charon connected; a snapshot follows.
    pub fn plugin_connected(&mut self, now: Instant, agent: &str) {
        info!(agent, "charon plugin connected");
        self.event(
            now,
            Event::PluginConnected {
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
            Event::PluginDisconnected {
                reason: reason.to_string(),
            },
        );
        self.settle(now);
    }

    /// What charon told through the plugin (mode 'mc', RFC 5266
    /// §3.1.3). The view is updated, then the node decides as for any
    /// change of attachment; a VPN input that needs no registration while
    /// in mode 'mc' is reported as a `decision` with its reason.
    pub fn vpn_input(&mut self, now: Instant, input: VpnInput) {
        if self.stopping {
            return;
        }
        // A new connection's snapshot: charon's view is known again.
        if matches!(input, VpnInput::Snapshot(_)) {
            self.plugin_lost = false;
        }
        let accepted = |c: &str| {
            self.cfg.vpn_connections.is_empty() || self.cfg.vpn_connections.iter().any(|a| a == c)
        };
        let known = |id: u32| self.vpn.sas().iter().find(|s| s.ike_sa == id).cloned();
        let (event, why, mobike) = match &input {
            VpnInput::TiaAssigned(sa) => {
                if !accepted(&sa.connection) {
                    return;
                }
                let Some(tia) = sa.tia else { return };
                (
                    Event::VpnTiaAssigned {
                        connection: sa.connection.clone(),
                        ike_sa: sa.ike_sa,
                        tia,
                        gateway: sa.gateway,
                        local: sa.local,
                    },
                    format!(
                        "VPN '{}' IKE_SA {} installed the TIA {tia}",
                        sa.connection, sa.ike_sa
                    ),
                    false,
                )
            }
            VpnInput::TiaReleased { ike_sa } => {
                let Some(sa) = known(*ike_sa) else { return };
                (
                    Event::VpnTiaReleased {
                        ike_sa: *ike_sa,
                        tia: sa.tia,
                    },
                    format!("VPN IKE_SA {ike_sa} released its TIA"),
                    false,
                )
            }
            VpnInput::Moved {
                ike_sa,
                local,
                gateway,
                ..
            } => {
                let Some(sa) = known(*ike_sa) else { return };
                let show = |a: Option<Ipv4Addr>| a.map_or("?".to_string(), |a| a.to_string());
                (
                    Event::VpnMoved {
                        ike_sa: *ike_sa,
                        from: sa.local,
                        to: local.or(sa.local),
                        gateway: gateway.or(sa.gateway),
                    },
                    format!(
                        "MOBIKE moved IKE_SA {ike_sa} from {} to {} (gateway {})",
                        show(sa.local),
                        show(local.or(sa.local)),
                        show(gateway.or(sa.gateway))
                    ),
                    true,
                )
            }
            VpnInput::Up(sa) => {
                if !accepted(&sa.connection) {
                    return;
                }
                (
                    Event::VpnUp {
                        connection: sa.connection.clone(),
                        ike_sa: sa.ike_sa,
                    },
                    format!("VPN '{}' IKE_SA {} up", sa.connection, sa.ike_sa),
                    false,
                )
            }
            VpnInput::Down { ike_sa } => {
                if known(*ike_sa).is_none() {
                    return;
                }
                (
                    Event::VpnDown { ike_sa: *ike_sa },
                    format!("VPN IKE_SA {ike_sa} down"),
                    false,
                )
            }
            VpnInput::Rekeyed { from, to } => {
                let Some(sa) = known(*from) else { return };
                (
                    Event::VpnRekeyed {
                        from: *from,
                        to: *to,
                        reestablished: false,
                        gateway: sa.gateway,
                    },
                    format!("IKE_SA {from} rekeyed into {to}"),
                    false,
                )
            }
            VpnInput::Reestablished { from, sa } => {
                if !accepted(&sa.connection) {
                    return;
                }
                (
                    Event::VpnRekeyed {
                        from: *from,
                        to: sa.ike_sa,
                        reestablished: true,
                        gateway: sa.gateway,
                    },
                    format!("IKE_SA {from} reestablished as {}", sa.ike_sa),
                    false,
                )
            }
            VpnInput::Roam => (
                Event::VpnRoam,
                "the kernel reported a roam".to_string(),
                false,
            ),
            VpnInput::Snapshot(sas) => {
                let mut view = VpnView::default();
                view.apply(&input);
                let cur = view.current(&self.cfg.vpn_connections);
                (
                    Event::VpnSnapshot {
                        ike_sas: sas.len(),
                        tia: cur.and_then(|c| c.tia),
                        gateway: cur.and_then(|c| c.gateway),
                    },
                    "snapshot from the charon plugin".to_string(),
                    false,
                )
            }
        };
        info!(input = ?input, "vpn");
        self.event(now, event);
        self.vpn.apply(&input);
        if let (VpnInput::Rekeyed { from, to }, Some(m)) = (&input, self.mc.as_mut()) {
            if m.ike_sa == *from {
                m.ike_sa = *to;
            }
        }
        if let (
            VpnInput::Moved {
                ike_sa, gateway, ..
            },
            Some(m),
        ) = (&input, self.mc.as_mut())
        {
            // MOBIKE keeps the peer (RFC 4555): a new remote address of
            // the same IKE_SA is the same gateway.
            if m.ike_sa == *ike_sa && gateway.is_some() {
                m.gateway = *gateway;
            }
        }
        let started = self.registrations_started;
        self.evaluate(now, None, &why);
        if matches!(input, VpnInput::Snapshot(_)) {
            // A request sent while no plugin was connected was lost: ask
            // again now that charon listens.
            self.after_untrusted(now, &why);
        }
        let in_mc = self.access == Mode::Mc && self.mode().is_some() && !self.stale;
        if self.registrations_started == started && in_mc && !matches!(input, VpnInput::Roam) {
            let tia = self.care_of.map_or("?".to_string(), |c| c.to_string());
            if mobike {
                self.stats.vpn_moves_absorbed += 1;
            }
            let reason = if mobike {
                format!("{why}; the TIA {tia} is unchanged: no re-registration, the home agent never learns of the move (RFC 5266 §3)")
            } else {
                format!(
                    "{why}; the binding's TIA {tia} and gateway are unchanged: no re-registration"
                )
            };
            info!(reason = %reason, "decision: keep binding");
            self.event(
                now,
                Event::Decision {
                    decision: "keep_binding",
                    reason,
                },
            );
        }
        self.settle(now);
    }

    /// A UDP payload received on a registration socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.event(now, Event::ReplyReceived { from });
        if let Some(d) = self.detector.as_mut().filter(|d| d.owns(payload)) {
            let forged = d.stats().forged_replies;
            let out = d.handle_datagram(now, from, payload);
            if d.stats().forged_replies > forged {
                self.event(now, Event::ProbeReplyDropped { from });
            }
            self.drain_probe(now);
            if let Some(o) = out {
                self.on_probe_outcome(now, o);
            }
            self.settle(now);
            return;
        }
        self.last_tnc = detect::authenticated_tnc(payload, &self.cfg.registration.sa).ok();
        self.client.handle_datagram(now, from, payload);
        self.drain_client(now);
        self.last_tnc = None;
        self.settle(now);
    }

    /// The next probe datagram: send it from a socket that bypasses the
    /// VPN, bound to `ifname` and the source address
    /// ([`crate::netlink::bypass::probe_socket`]).
    pub fn poll_probe_transmit(&mut self) -> Option<ProbeTransmit> {
        self.probe_transmits.pop_front()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.retry_at.is_some_and(|t| now >= t) {
            self.retry_at = None;
            if let State::Unreachable { care_of } = self.state {
                let access = self.access;
                self.register(
                    now,
                    care_of,
                    access,
                    "retrying after the home agent did not answer",
                );
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
        self.monitor_timeout(now);
        let was_pending = self.client.is_pending();
        self.client.handle_timeout(now);
        if !was_pending && self.client.is_pending() {
            // The client started a renewal on its own timer.
            self.purpose = Purpose::Renew;
        }
        self.drain_client(now);
        self.settle(now);
    }

    /// Begins a clean exit: with `deregister`, a registered binding is
    /// deregistered first (lifetime 0, RFC 5944 §3.6.1.1); the tunnel is
    /// removed when that ends (or at once without it). The daemon calls
    /// [`finish`](Self::finish) if the home agent never answers.
    pub fn shutdown(&mut self, now: Instant, deregister: bool) {
        self.stopping = true;
        self.retry_at = None;
        self.monitor = None;
        if let Some((ifname, address)) = self.detector.as_mut().and_then(|d| d.cancel()) {
            self.probe_transmits.clear();
            self.event(
                now,
                Event::ProbeCancelled {
                    ifname,
                    address,
                    reason: "shutting down".into(),
                },
            );
        }
        let usable = self.care_of.filter(|c| self.source_usable(*c));
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
        [
            self.client.poll_timeout(),
            self.retry_at,
            self.detector.as_ref().and_then(|d| d.poll_timeout()),
            self.monitor.and_then(|(r, _)| r),
            self.monitor.map(|(_, d)| d),
        ]
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

    /// Physical attachments: addresses on watched, running links, never
    /// a TIA (with kernel IPsec charon puts the TIA on the physical
    /// interface; it is a care-of address only through the VPN).
    fn usable_addresses(&self) -> impl Iterator<Item = &LocalAddress> {
        self.addresses
            .iter()
            .filter(|a| !self.links_down.contains(&a.ifname) && !self.vpn.is_tia(a.addr))
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
        self.is_usable(src) || self.current_vpn().and_then(|v| v.tia) == Some(src)
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

        if self.detector.is_some() {
            self.maybe_probe(now, why);
        }
        let trusted = |a: &&LocalAddress| self.trust_of(a.addr) == Trust::Trusted;
        let current = self.care_of.filter(|c| {
            self.usable_addresses()
                .any(|a| a.addr == *c && self.trust_of(a.addr) == Trust::Trusted)
        });
        let newest = self
            .usable_addresses()
            .filter(trusted)
            .max_by_key(|a| a.seq)
            .map(|a| (a.addr, a.ifname.clone(), a.prefix_len));
        let chosen = match (new, current) {
            (Some(n), _) if self.trust_of(n) == Trust::Trusted && self.is_usable(n) => self
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
                let same = same && self.access == Mode::C;
                if !same {
                    let reason = format!(
                        "{why}: {addr} on {ifname} is on a trusted network, co-located care-of address (RFC 5266 §3.1.1)"
                    );
                    self.stats.moves += u64::from(self.care_of.is_some());
                    self.mc = None;
                    self.stale = false;
                    self.register(now, addr, Mode::C, &reason);
                }
            }
            // RFC 5266 §3.4.2 step 4: through the VPN only once the probe
            // failed; a mode 'mc' binding that already carries the traffic
            // (inside ESP) keeps it meanwhile (§3.4.1, step 1a).
            None if self.probe_pending() && !self.in_mc() => {
                let (ifname, address) = self
                    .detector
                    .as_ref()
                    .and_then(|d| d.probing().map(|(i, a)| (i.to_string(), a)))
                    .expect("probe_pending");
                let to = State::Detecting { address };
                if self.state != to {
                    self.retry_at = None;
                    let reason = format!(
                        "{why}: detecting whether {address} on {ifname} is on a trusted network (RFC 5266 §3.4): registering with the i-HA directly, no mode until the verdict"
                    );
                    self.set_state(now, to, &reason);
                }
            }
            None if self.current_vpn().is_some() => self.evaluate_mc(now, why),
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
                    let mut reason = match to {
                        State::Untrusted { address } => format!(
                            "{why}: {address} is not on a trusted network; mode c does not apply, mode mc waits for a TIA from the VPN"
                        ),
                        _ => format!("{why}: no usable address left"),
                    };
                    let went_stale = self.mc.is_some() && !self.stale;
                    if let (Some(m), false) = (&self.mc, self.stale) {
                        // RFC 5266 §3.1.3: the care-of address was the TIA;
                        // without it nothing reaches the MN through the
                        // binding. Re-registered when a TIA comes back.
                        let care_of = m.tia;
                        self.stale = true;
                        self.stats.bindings_stale += 1;
                        let why_stale = format!(
                            "{why}: the TIA {care_of} is gone with the VPN; the binding at the home agent is stale until a TIA comes back"
                        );
                        warn!(%care_of, reason = %why_stale, "binding stale");
                        self.event(
                            now,
                            Event::BindingStale {
                                care_of,
                                reason: why_stale.clone(),
                            },
                        );
                        reason = why_stale;
                    }
                    // The binding, if any, stays at the home agent until
                    // it expires or the node reattaches: the next
                    // registration replaces it (break before make). The
                    // tunnel stays too, so that a TIA coming back needs
                    // only the registration.
                    self.retry_at = None;
                    self.set_state(now, to, &reason);
                    if went_stale {
                        // RFC 5266 §3.4.2 step 1: outside, the VPN is gone.
                        self.after_untrusted(now, &reason);
                    }
                }
            }
        }
    }

    /// Mode 'mc' (RFC 5266 §3.1.3): no trusted address, and the VPN
    /// offers a TIA. Registers it unless the binding already uses it
    /// through the same gateway: a MOBIKE move or a rekey changes
    /// nothing the home agent knows (RFC 5266 §3).
    fn evaluate_mc(&mut self, now: Instant, why: &str) {
        let Some(v) = self.current_vpn().cloned() else {
            return;
        };
        let tia = v.tia.expect("current() has a TIA");
        let active = matches!(
            self.state,
            State::Registering { .. }
                | State::Registered { .. }
                | State::Denied { .. }
                | State::Unreachable { .. }
        );
        let prev = self.mc.clone().filter(|_| self.access == Mode::Mc);
        let same_tia = prev.as_ref().is_some_and(|m| m.tia == tia);
        let same_gateway = prev
            .as_ref()
            .is_some_and(|m| m.gateway == v.gateway || m.ike_sa == v.ike_sa || v.gateway.is_none());
        if active && same_tia && same_gateway && !self.stale && self.care_of == Some(tia) {
            // Same binding: follow the IKE_SA (rekey, MOBIKE) and the MTU.
            if let Some(m) = self.mc.as_mut() {
                m.ike_sa = v.ike_sa;
                m.gateway = v.gateway.or(m.gateway);
            }
            self.update_mtu(now, v.mtu);
            return;
        }
        let gw = |g: Option<Ipv4Addr>| g.map_or("?".to_string(), |g| g.to_string());
        let reason = match &prev {
            Some(m) if m.tia != tia => {
                self.stats.tia_changes += 1;
                format!(
                    "{why}: the TIA changed {} -> {tia} (VPN '{}', gateway {}): re-registering at once (RFC 5266 §3)",
                    m.tia,
                    v.connection,
                    gw(v.gateway)
                )
            }
            Some(m) if !same_gateway => {
                self.stats.tia_changes += 1;
                format!(
                    "{why}: attached to another VPN gateway {} -> {} (TIA {tia}): re-registering at once (RFC 5266 §3)",
                    gw(m.gateway),
                    gw(v.gateway)
                )
            }
            Some(_) if self.stale => format!(
                "{why}: a TIA is back ({tia}, VPN '{}', gateway {}) after the binding went stale: registering it",
                v.connection,
                gw(v.gateway)
            ),
            _ => format!(
                "{why}: not on a trusted network; the VPN '{}' (gateway {}) gave the TIA {tia}: registering it as co-located care-of address through the VPN, reverse tunnelled (RFC 5266 §3.1.3)",
                v.connection,
                gw(v.gateway)
            ),
        };
        self.stats.moves += u64::from(self.care_of.is_some_and(|c| c != tia));
        self.stats.tia_registrations += 1;
        self.mc = Some(McAttachment {
            tia,
            gateway: v.gateway,
            ike_sa: v.ike_sa,
        });
        self.stale = false;
        self.register(now, tia, Mode::Mc, &reason);
    }

    /// Mode 'mc': the Mobile IP tunnel runs inside ESP; size it so that
    /// it does not fragment ([`PathMtu::tunnel_mtu`]). Asked only while a
    /// tunnel exists (the daemon applies it to the device) and when it
    /// changes.
    fn update_mtu(&mut self, now: Instant, path: PathMtu) {
        let Some(mtu) = path.tunnel_mtu(self.cfg.esp_overhead) else {
            return;
        };
        if self.tunnel.is_none() || self.access != Mode::Mc || self.tunnel_mtu == Some(mtu) {
            return;
        }
        self.tunnel_mtu = Some(mtu);
        let home = self.client.home_address();
        info!(%home, mtu, physical = ?path.physical, tia_device = ?path.tia_device, esp_overhead = self.cfg.esp_overhead, "tunnel mtu");
        self.actions.push_back(Action::TunnelMtu { home, mtu });
        self.event(
            now,
            Event::TunnelMtu {
                mtu,
                physical: path.physical,
                tia_device: path.tia_device,
                esp_overhead: self.cfg.esp_overhead,
            },
        );
    }

    // ----- trusted-network detection (RFC 5266 §3.4, RFC 5265 §3.2) -----

    /// Whether `addr` is on a trusted network, as far as the node knows.
    fn trust_of(&self, addr: Ipv4Addr) -> Trust {
        match &self.detector {
            Some(d) => match d.verdict(addr) {
                Some(Verdict::Trusted) => Trust::Trusted,
                Some(Verdict::Untrusted) => Trust::Untrusted,
                None => Trust::Unknown,
            },
            None => self.cfg.trust.classify(addr),
        }
    }

    fn probe_pending(&self) -> bool {
        self.detector
            .as_ref()
            .is_some_and(|d| d.probing().is_some())
    }

    /// A mode 'mc' binding whose TIA the VPN still offers: its traffic
    /// runs inside ESP whatever the physical network is.
    fn in_mc(&self) -> bool {
        self.access == Mode::Mc
            && !self.stale
            && matches!(
                self.state,
                State::Registering { .. } | State::Registered { .. } | State::Unreachable { .. }
            )
            && self.current_vpn().and_then(|v| v.tia).is_some()
    }

    /// Starts a probe of the newest attachment without a verdict, unless
    /// it is the one being probed (RFC 5266 §3.4: "whenever the mobile
    /// node detects a change in network connectivity"). A newer
    /// attachment cancels an older probe; the older one is probed again
    /// once the newer is decided (RFC 5265 §3.2.1: each interface on its
    /// own).
    fn maybe_probe(&mut self, now: Instant, why: &str) {
        let Some(d) = self.detector.as_ref() else {
            return;
        };
        let Some(target) = self
            .usable_addresses()
            .filter(|a| d.verdict(a.addr).is_none())
            .max_by_key(|a| a.seq)
            .map(|a| (a.ifname.clone(), a.addr))
        else {
            return;
        };
        if d.probing().map(|(i, a)| (i.to_string(), a)) == Some(target.clone()) {
            return;
        }
        let (ifname, address) = target;
        let retransmit = d.config().retransmit.clone();
        let rng = Box::new(StdRng::from_rng(&mut self.rng).expect("StdRng seeds from StdRng"));
        let mut probe = match self.client.sibling(address, retransmit, rng) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot build the detection probe");
                return;
            }
        };
        // The probe is the mode 'c' registration if it succeeds.
        probe.set_reverse_tunnel(self.cfg.reverse_tunnel);
        let d = self.detector.as_mut().expect("checked above");
        let cancelled = d.start(now, &ifname, address, probe);
        if let Some((old_if, old)) = cancelled {
            self.probe_transmits.clear();
            let reason =
                format!("{why}: a newer attachment {address} on {ifname} is probed instead");
            info!(ifname = %old_if, address = %old, reason = %reason, "probe cancelled");
            self.event(
                now,
                Event::ProbeCancelled {
                    ifname: old_if,
                    address: old,
                    reason,
                },
            );
        }
        let reason = format!(
            "{why}: registering {address} with the i-HA {} directly, without the VPN, to learn whether {ifname} is on a trusted network (RFC 5266 §3.4)",
            self.client.home_agent()
        );
        info!(%ifname, %address, reason = %reason, "probe started");
        self.event(
            now,
            Event::ProbeStarted {
                ifname,
                address,
                reason,
            },
        );
        self.drain_probe(now);
    }

    fn drain_probe(&mut self, now: Instant) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = d.poll_transmit() {
            out.push(t);
        }
        for t in out {
            let address = t.transmit.src.unwrap_or(Ipv4Addr::UNSPECIFIED);
            self.event(
                now,
                Event::ProbeSent {
                    ifname: t.ifname.clone(),
                    address,
                    home_agent: *t.transmit.dst.ip(),
                    identification: t.identification,
                    retransmission: t.retransmission,
                },
            );
            self.probe_transmits.push_back(t);
        }
    }

    /// The connection status of an attachment changed: its verdict and
    /// probe end (RFC 5265 §3.2.3).
    fn forget_attachment(&mut self, now: Instant, ifname: &str, addr: Option<Ipv4Addr>, why: &str) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        let probed = d.probing().map(|(i, a)| (i.to_string(), a));
        if d.forget(ifname, addr) {
            self.probe_transmits.clear();
            if let Some((ifname, address)) = probed {
                self.event(
                    now,
                    Event::ProbeCancelled {
                        ifname,
                        address,
                        reason: why.to_string(),
                    },
                );
            }
        }
        if self
            .care_of
            .is_some_and(|c| addr.map_or(true, |a| a == c) && self.access == Mode::C)
        {
            self.monitor = None;
        }
    }

    fn on_probe_outcome(&mut self, now: Instant, o: Outcome) {
        let elapsed_ms = Some(now.saturating_duration_since(o.started).as_millis() as u64);
        let verdict = o.cause.verdict();
        let reason = o.cause.explain();
        info!(ifname = %o.ifname, address = %o.address, ?verdict, reason = %reason, forged = o.forged, "trust verdict");
        self.event(
            now,
            Event::TrustVerdict {
                ifname: o.ifname.clone(),
                address: o.address,
                verdict,
                cause: o.cause,
                elapsed_ms,
                forged: o.forged,
                reason: reason.clone(),
            },
        );
        let why = format!(
            "{} is {}: {reason}",
            o.address,
            match verdict {
                Verdict::Trusted => "on a trusted network",
                Verdict::Untrusted => "not on a trusted network",
            }
        );
        if let Some((client, binding)) = o.accepted {
            self.inside(now, client, binding, &o.ifname, &why);
            // Other attachments without a verdict are probed next.
            self.evaluate(now, None, &why);
        } else {
            if o.cause == Cause::AcceptedWithoutTnc && self.in_mc() {
                // The i-HA took the probe as a registration: its binding
                // now names the untrusted address. Put the TIA back at
                // once (RFC 5266 §3.4.2 step 4).
                if let Some(tia) = self.current_vpn().and_then(|v| v.tia) {
                    let reason = format!(
                        "{why}; the i-HA's binding now names {}: registering the TIA {tia} through the VPN again",
                        o.address
                    );
                    self.register(now, tia, Mode::Mc, &reason);
                }
            }
            self.evaluate(now, None, &why);
            self.after_untrusted(now, &why);
        }
    }

    /// RFC 5266 §3.4.1 step 2, §3.4.2 step 3: the accepted probe is the
    /// mode 'c' registration; the VPN carries no data from now on.
    fn inside(
        &mut self,
        now: Instant,
        client: Client,
        binding: registration::Binding,
        ifname: &str,
        why: &str,
    ) {
        let addr = binding.care_of_address;
        if self.stopping || !self.is_usable(addr) {
            return;
        }
        self.client.adopt(client);
        self.seen_retransmissions = self.client.stats().retransmissions;
        self.client.set_reverse_tunnel(self.cfg.reverse_tunnel);
        self.stats.moves += u64::from(self.care_of.is_some_and(|c| c != addr));
        self.care_of = Some(addr);
        self.access = Mode::C;
        self.mc = None;
        self.stale = false;
        self.retry_at = None;
        self.purpose = Purpose::Register;
        self.event(
            now,
            Event::RegistrationAccepted {
                care_of: addr,
                lifetime: binding.lifetime.as_secs(),
                renewal: false,
            },
        );
        self.tunnel_up(now, addr);
        let reason = format!(
            "{why}: mode c with {addr} on {ifname} as co-located care-of address, the probe's registration kept (RFC 5266 §3.4.1, §3.4.2)"
        );
        self.set_state(now, State::Registered { care_of: addr }, &reason);
        self.monitor_ok(now);
        let terminate = self
            .detector
            .as_ref()
            .is_some_and(|d| d.config().vpn_when_inside == VpnWhenInside::Terminate);
        if terminate {
            if let Some(v) = self.current_vpn().cloned() {
                self.request_vpn(
                    now,
                    VpnRequest::Terminate {
                        connection: v.connection,
                    },
                    "inside the enterprise; vpn_when_inside = terminate (RFC 5266 §3.4.1 step 2: MAY tear down)",
                );
            }
        }
    }

    /// Outside: with no VPN to carry mode 'mc', ask charon for one (RFC
    /// 5266 §3.4.2 step 1).
    fn after_untrusted(&mut self, now: Instant, why: &str) {
        if self.current_vpn().is_some() || !matches!(self.state, State::Untrusted { .. }) {
            return;
        }
        let connection = self
            .detector
            .as_ref()
            .and_then(|d| d.config().vpn_connection.clone());
        if let Some(connection) = connection {
            self.request_vpn(
                now,
                VpnRequest::Initiate { connection },
                &format!("{why}; no VPN is up: mode mc needs one (RFC 5266 §3.4.2 step 1)"),
            );
        }
    }

    fn request_vpn(&mut self, now: Instant, request: VpnRequest, reason: &str) {
        info!(?request, reason, "vpn request");
        self.actions.push_back(Action::Vpn(request.clone()));
        self.event(
            now,
            Event::VpnRequested {
                request,
                reason: reason.to_string(),
            },
        );
    }

    /// RFC 5265 §3.2.4: a successful (re-)registration while inside.
    fn monitor_ok(&mut self, now: Instant) {
        let Some(t) = self.detector.as_ref().and_then(|d| d.config().t_monitor) else {
            return;
        };
        let grace = self
            .detector
            .as_ref()
            .map(|d| d.config().monitor_grace)
            .unwrap_or_default();
        let renew = (t > grace).then(|| now + (t - grace));
        self.monitor = Some((renew, now + t));
    }

    fn monitor_timeout(&mut self, now: Instant) {
        let Some((renew, deadline)) = self.monitor else {
            return;
        };
        if now >= deadline {
            self.monitor = None;
            if let (Some(care_of), Mode::C) = (self.care_of, self.access) {
                self.inside_lost(now, care_of, Cause::MonitorExpired);
            }
            return;
        }
        if renew.is_some_and(|r| now >= r) {
            self.monitor = Some((None, deadline));
            if !self.client.is_pending() {
                // Re-registration is no matter of the binding's lifetime
                // here: data is no substitute for it (§3.2.4).
                self.purpose = Purpose::Renew;
                self.client.renew_now(now);
                self.drain_client(now);
            }
        }
    }

    /// Inside no more, as far as the node can tell: stop plaintext traffic
    /// and detect again (RFC 5265 §3.2.4, §3.3).
    fn inside_lost(&mut self, now: Instant, care_of: Ipv4Addr, cause: Cause) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        d.withdraw(care_of, cause);
        d.reprobe(care_of);
        self.monitor = None;
        let ifname = self
            .addresses
            .iter()
            .find(|a| a.addr == care_of)
            .map_or(String::new(), |a| a.ifname.clone());
        let reason = cause.explain();
        warn!(%care_of, reason = %reason, "trusted verdict withdrawn");
        self.event(
            now,
            Event::TrustVerdict {
                ifname,
                address: care_of,
                verdict: Verdict::Untrusted,
                cause,
                elapsed_ms: None,
                forged: 0,
                reason: reason.clone(),
            },
        );
        self.evaluate(now, None, &format!("{care_of}: {reason}; detecting again"));
    }

    /// Holds the home address's traffic while no decided path exists
    /// (see docs/mip4d.md, "Holding traffic"): a tunnel is installed,
    /// and its care-of address is neither a trusted physical address
    /// (mode 'c') nor the TIA of a live VPN binding (mode 'mc', inside
    /// ESP). Without `[detect]`, mode 'mc' only.
    fn settle(&mut self, now: Instant) {
        let decided = match self.tunnel {
            None => true,
            // Without detection, configured trust decides mode 'c'; but a
            // mode 'mc' tunnel loses its path with the VPN all the same
            // (charon killed: its TIA stays on the access interface, the
            // routes into ESP go), and RFC 5266 §3.1.3 keeps that traffic
            // inside the VPN: held until a TIA is registered again.
            Some(_) if self.detector.is_none() => {
                self.access != Mode::Mc || !(self.stale || self.plugin_lost)
            }
            Some(t) => {
                self.care_of == Some(t.care_of)
                    && matches!(
                        self.state,
                        State::Registered { .. }
                            | State::Registering { .. }
                            | State::Unreachable { .. }
                            | State::Deregistering { .. }
                    )
                    && match self.access {
                        Mode::C => {
                            self.trust_of(t.care_of) == Trust::Trusted && self.is_usable(t.care_of)
                        }
                        Mode::Mc => {
                            !(self.stale || self.plugin_lost)
                                && self.current_vpn().and_then(|v| v.tia) == Some(t.care_of)
                        }
                        Mode::F => false,
                    }
            }
        };
        let hold = !decided && !self.stopping;
        if hold == self.held {
            return;
        }
        self.held = hold;
        let home = self.client.home_address();
        if hold {
            self.stats.traffic_holds += 1;
            let reason = match self.state {
                State::Detecting { address } => format!(
                    "detecting whether {address} is on a trusted network: traffic from {home} held, nothing leaves in the clear (RFC 5266 §3.4)"
                ),
                _ => format!("no decided path for {home}: traffic held (RFC 5265 §3.2.2)"),
            };
            info!(%home, reason = %reason, "traffic held");
            self.actions.push_back(Action::HoldTraffic { home });
            self.event(now, Event::TrafficHeld { reason });
        } else {
            self.stats.traffic_releases += 1;
            let reason = match (self.tunnel, self.mode()) {
                (Some(t), Some(m)) => {
                    format!(
                        "mode {m} decided: traffic from {home} flows through the tunnel from {}",
                        t.care_of
                    )
                }
                _ => "no tunnel any more: nothing to hold".to_string(),
            };
            info!(%home, reason = %reason, "traffic released");
            self.actions.push_back(Action::ReleaseTraffic { home });
            self.event(now, Event::TrafficReleased { reason });
        }
    }

    fn register(&mut self, now: Instant, care_of: Ipv4Addr, access: Mode, reason: &str) {
        self.registrations_started += 1;
        self.care_of = Some(care_of);
        self.retry_at = None;
        self.purpose = Purpose::Register;
        self.access = access;
        // RFC 5266 §3: reverse tunnelling is a MUST when the Mobile IP
        // tunnel runs inside IPsec; in mode 'c' it is the operator's
        // choice (RFC 3024).
        self.client
            .set_reverse_tunnel(access == Mode::Mc || self.cfg.reverse_tunnel);
        self.set_state(now, State::Registering { care_of }, reason);
        // RFC 5944 §3.6: a newer request supersedes a pending one.
        self.client.move_to(now, care_of, None);
        self.drain_client(now);
    }

    fn go_home(&mut self, now: Instant, reason: &str) {
        if let Some((ifname, address)) = self.detector.as_mut().and_then(|d| d.cancel()) {
            // At home nothing is tunnelled: a probe's binding elsewhere
            // would only undo the deregistration below.
            self.probe_transmits.clear();
            self.event(
                now,
                Event::ProbeCancelled {
                    ifname,
                    address,
                    reason: "back on the home link".into(),
                },
            );
        }
        self.monitor = None;
        self.stats.home_returns += 1;
        self.retry_at = None;
        self.care_of = None;
        self.mc = None;
        self.stale = false;
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
            self.tunnel_mtu = None;
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
            reverse_tunnel: self.cfg.reverse_tunnel || self.access == Mode::Mc,
        });
        self.event(
            now,
            Event::TunnelUp {
                care_of,
                home_agent: t.home_agent,
            },
        );
        if self.access == Mode::Mc {
            if let Some(path) = self.current_vpn().map(|v| v.mtu) {
                self.update_mtu(now, path);
            }
        }
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
        let (from_mode, to_mode) = (self.mode_shown, self.mode());
        if from_mode != to_mode {
            self.mode_shown = to_mode;
            let show = |m: Option<Mode>| m.map_or("none".to_string(), |m| m.to_string());
            info!(from = %show(from_mode), to = %show(to_mode), reason, "mode");
            self.event(
                now,
                Event::ModeChanged {
                    from: from_mode,
                    to: to_mode,
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
                Some(src) if self.purpose != Purpose::DeregisterAtHome => self.source_usable(src),
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
                if self.detector.is_some()
                    && self.access == Mode::C
                    && self.care_of == Some(binding.care_of_address)
                {
                    if self.last_tnc == Some(true) {
                        self.monitor_ok(now);
                    } else {
                        // RFC 5265 §3.2.3: inside only with TNC.
                        self.inside_lost(now, binding.care_of_address, Cause::RenewalWithoutTnc);
                        return;
                    }
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
                if let (Purpose::Renew, Mode::C, Some(care_of), true) =
                    (purpose, self.access, self.care_of, self.detector.is_some())
                {
                    // RFC 5265 §3.3: a failed re-registration while inside
                    // stops plaintext traffic and restarts detection.
                    self.inside_lost(now, care_of, Cause::NoReply { attempts });
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
                if let Some(care_of) = self.care_of.filter(|c| self.source_usable(*c)) {
                    if !matches!(self.state, State::Registering { .. }) {
                        let access = self.access;
                        self.register(now, care_of, access, "binding expired: registering again");
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
