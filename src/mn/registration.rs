//! Sans-IO Mobile IPv4 registration client (RFC 5944 §3.6).
//!
//! One [`Client`] keeps one mobility binding with one home agent. It is
//! driven like quinn-proto: the caller hands in events and the current
//! time, then drains what the client wants done:
//!
//! - in: [`Client::register`], [`Client::move_to`], [`Client::deregister`],
//!   [`Client::deregister_at_home`], [`Client::handle_datagram`] (a UDP
//!   payload received on port 434), [`Client::handle_timeout`];
//! - out: [`Client::poll_transmit`] (datagrams to send),
//!   [`Client::poll_timeout`] (when to call `handle_timeout` next),
//!   [`Client::poll_event`] (outcomes for the daemon and the operator).
//!
//! Rules kept here, with where they come from:
//! - at most one outstanding request per binding; a new one supersedes
//!   the old, whose replies then count as late (§3.6.2.1 matches replies
//!   against the most recent request only);
//! - a reply is matched by the low-order 32 bits of its Identification
//!   and by home address (or NAI, RFC 2794), then authenticated with the
//!   MN-HA extension before anything in it is believed (§3.6.2.1);
//! - retransmission with exponential backoff, never faster than once a
//!   second, capped by the requested lifetime (§3.6.3); a new
//!   Identification per retransmission with timestamps, the same request
//!   with nonces (§3.6.3, §5.7);
//! - renewal before the granted lifetime runs out, counting the lifetime
//!   from when the request was sent (§3.6.2.3);
//! - denials (§3.6.2.4): 133 resynchronises (§5.7) and retries, 136
//!   learns the home agent's unicast address from the reply, 69 retries
//!   with the lifetime the foreign agent offers, 75/138 retry with the T
//!   bit (RFC 3024 §6), every other denial ends the attempt.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tracing::debug;

use crate::auth::{self, AuthKind, SecurityAssociation};
use crate::replay::{self, MnReplay, NtpTimestamp, ReplayMethod};
use crate::wire::extension::ExtensionIter;
use crate::wire::registration::REPLY_HEADER_LEN;
use crate::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr, MIP_PORT};

/// Lifetime value meaning "infinity" (RFC 5944 §3.3).
pub const INFINITE_LIFETIME: u16 = 0xffff;

/// RFC 5944 §3.6.3: "The minimum time between Registration Requests
/// MUST NOT be less than 1 second."
pub const MIN_RETRANSMIT_INTERVAL: Duration = Duration::from_secs(1);

/// How many earlier Identifications are remembered to tell late and
/// duplicate replies from forged ones in the statistics.
const ID_MEMORY: usize = 16;

/// Retransmission settings (RFC 5944 §3.6.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retransmit {
    /// First timeout; at least [`MIN_RETRANSMIT_INTERVAL`].
    pub initial_timeout: Duration,
    /// Cap of the doubling timeout. The effective cap is also at most the
    /// requested lifetime (§3.6.3: "no greater than the requested
    /// Lifetime").
    pub max_timeout: Duration,
    /// Transmissions of one request (first one included) before the
    /// attempt is given up with [`Event::Failed`].
    pub max_attempts: u32,
}

impl Default for Retransmit {
    /// 1 s, doubling up to 32 s, 5 transmissions: the attempt fails after
    /// 1 + 2 + 4 + 8 + 16 = 31 s of silence.
    fn default() -> Self {
        Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(32),
            max_attempts: 5,
        }
    }
}

impl Retransmit {
    /// Settings for a registration used as a reachability probe, as
    /// RFC 5266 does to tell whether the mobile node sits inside the
    /// enterprise: the answer matters quickly, so few and short tries
    /// (1 s, 2 s, 2 s), still within §3.6.3's one-second floor.
    pub fn probe() -> Self {
        Retransmit {
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(2),
            max_attempts: 3,
        }
    }
}

/// What the mobile node registers.
#[derive(Debug, Clone)]
pub struct Config {
    /// Home address; 0.0.0.0 asks the home agent to assign one, which
    /// needs an NAI (RFC 2794 §2).
    pub home_address: Ipv4Addr,
    /// Network Access Identifier (RFC 2794), sent before the MN-HA
    /// extension so the home agent can find the association.
    pub nai: Option<Vec<u8>>,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Register through this foreign agent (foreign-agent care-of
    /// address, §3.6.1.1); `None` means a co-located care-of address
    /// registered directly with the home agent (the D bit is set).
    pub foreign_agent: Option<Ipv4Addr>,
    /// Requested services: S, B, M, G, T (RFC 3024 reverse tunnelling).
    /// D is derived from `foreign_agent`; the reserved r and x bits are
    /// always sent as zero (§3.3).
    pub flags: Flags,
    /// Requested lifetime in seconds (non-zero; 0xffff is infinity).
    pub lifetime: u16,
    /// The MN-HA mobility security association.
    pub sa: SecurityAssociation,
    /// An MN-FA association, if the foreign agent has one with us
    /// (§3.5.3). Without it, foreign-agent denials cannot be
    /// authenticated and are reported as such (§3.6.2.1).
    pub mn_fa_sa: Option<SecurityAssociation>,
    /// Further extensions for the home agent (UDP tunnel request, DSMIPv4,
    /// ...); emitted after the NAI and before the MN-HA extension so that
    /// they are authenticated (§3.6.1.3).
    pub extensions: Vec<Extension>,
    pub retransmit: Retransmit,
    /// Renew when this share of the granted lifetime has passed (1..=99).
    /// RFC 5944 leaves the moment to the mobile node (it "should"
    /// re-register before the lifetime expires, §3.6); 75% leaves room
    /// for the default retransmission schedule on lifetimes above ~2 min.
    pub renew_percent: u8,
    /// How many 133 (identification mismatch) replies in a row are
    /// answered by resynchronising and retrying.
    pub max_resyncs: u32,
}

impl Config {
    /// A co-located registration with the RFC defaults: 30 min lifetime,
    /// default retransmission, renewal at 75%.
    pub fn new(
        home_address: Ipv4Addr,
        home_agent: Ipv4Addr,
        care_of_address: Ipv4Addr,
        sa: SecurityAssociation,
    ) -> Self {
        Config {
            home_address,
            nai: None,
            home_agent,
            care_of_address,
            foreign_agent: None,
            flags: Flags::empty(),
            lifetime: 1800,
            sa,
            mn_fa_sa: None,
            extensions: Vec::new(),
            retransmit: Retransmit::default(),
            renew_percent: 75,
            max_resyncs: 2,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.home_address.is_unspecified() && self.nai.is_none() {
            return Err(ConfigError::NoIdentity);
        }
        if let Some(nai) = &self.nai {
            if nai.is_empty() || nai.len() > 255 {
                return Err(ConfigError::BadNai(nai.len()));
            }
        }
        if self.home_agent.is_unspecified() {
            return Err(ConfigError::NoHomeAgent);
        }
        if self.lifetime == 0 {
            return Err(ConfigError::ZeroLifetime);
        }
        if self.retransmit.initial_timeout < MIN_RETRANSMIT_INTERVAL {
            return Err(ConfigError::RetransmitTooFast(
                self.retransmit.initial_timeout,
            ));
        }
        if self.retransmit.max_timeout < self.retransmit.initial_timeout {
            return Err(ConfigError::BadBackoffCap(self.retransmit.max_timeout));
        }
        if self.retransmit.max_attempts == 0 {
            return Err(ConfigError::ZeroAttempts);
        }
        if !(1..=99).contains(&self.renew_percent) {
            return Err(ConfigError::BadRenewPercent(self.renew_percent));
        }
        if self.extensions.iter().any(|e| {
            matches!(
                e,
                Extension::MnHaAuth(_) | Extension::MnFaAuth(_) | Extension::FaHaAuth(_)
            )
        }) {
            return Err(ConfigError::AuthInExtensions);
        }
        Ok(())
    }
}

/// A configuration the client refuses, with the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("home address 0.0.0.0 needs an NAI to be assigned one (RFC 2794)")]
    NoIdentity,
    #[error("NAI must be 1..=255 octets, got {0}")]
    BadNai(usize),
    #[error("home agent address must be set")]
    NoHomeAgent,
    #[error("requested lifetime must be non-zero (0 means deregistration)")]
    ZeroLifetime,
    #[error("initial retransmission timeout {0:?} is below 1 s (RFC 5944 §3.6.3)")]
    RetransmitTooFast(Duration),
    #[error("retransmission cap {0:?} is below the initial timeout")]
    BadBackoffCap(Duration),
    #[error("max_attempts must be at least 1")]
    ZeroAttempts,
    #[error("renew_percent must be in 1..=99, got {0}")]
    BadRenewPercent(u8),
    #[error("authentication extensions are added by the client, not configured")]
    AuthInExtensions,
}

/// Why a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new registration (first one, or after a move).
    Register,
    /// Renewal of a binding before its lifetime ends.
    Renew,
    /// Lifetime 0 for the current care-of address.
    Deregister,
    /// Back on the home link: care-of address = home address, lifetime 0,
    /// removing every binding (§3.6.1.1).
    DeregisterAtHome,
}

impl Purpose {
    fn is_deregistration(self) -> bool {
        matches!(self, Purpose::Deregister | Purpose::DeregisterAtHome)
    }
}

/// Which agent denied a registration (RFC 5944 §3.4 code ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ForeignAgent,
    HomeAgent,
}

/// A datagram to send to UDP port 434, with what the client did: the
/// caller reports it without parsing the request again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddrV4,
    /// Source address to bind: the co-located care-of address, or the
    /// home address when registering via a foreign agent or from home
    /// (§3.6.1.1). `None` lets the routing table choose.
    pub src: Option<Ipv4Addr>,
    pub payload: Vec<u8>,
    /// Why the request was sent.
    pub purpose: Purpose,
    /// The request's care-of address (the home address from home).
    pub care_of_address: Ipv4Addr,
    /// The request's Identification (§5.7).
    pub identification: u64,
    /// A repeat of an unanswered request on the §3.6.3 backoff (with
    /// timestamps under a new Identification); a corrected request after
    /// a denial (133, 136, 69, 75/138) starts a fresh exchange and is not.
    pub retransmission: bool,
}

/// The current mobility binding as the home agent granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Granted lifetime (never more than requested).
    pub lifetime: Duration,
    /// When it ends, counted from when the request was sent; `None` for
    /// an infinite lifetime.
    pub expires: Option<Instant>,
}

/// What happened, for the daemon and the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The home agent accepted: the binding is in place.
    Registered {
        binding: Binding,
        code: ReplyCode,
        renewal: bool,
        /// The reply carried the Trusted Networks Configured extension
        /// inside its MN-HA authenticated part (RFC 5265 §4.1); anything
        /// after the authenticator is never believed (§3.6.1.3).
        tnc: bool,
    },
    /// A deregistration was accepted (or the home agent granted 0 s).
    Deregistered { care_of_address: Ipv4Addr },
    /// A registration was denied. `authenticated` is false only for a
    /// foreign-agent denial that could not be authenticated (no MN-FA
    /// association, §3.6.2.1); such a denial never changes a binding.
    Denied {
        code: ReplyCode,
        by: Agent,
        purpose: Purpose,
        authenticated: bool,
    },
    /// No acceptable reply after every retransmission.
    Failed { purpose: Purpose, attempts: u32 },
    /// A 133 reply resynchronised replay protection: with timestamps the
    /// clock offset towards the home agent (seconds) was adjusted, with
    /// nonces the HA's nonce was learnt.
    ReplayResync {
        method: ReplayMethod,
        clock_offset: i64,
    },
    /// The home agent told us its unicast address (code 136).
    HomeAgentChanged { from: Ipv4Addr, to: Ipv4Addr },
    /// The binding's lifetime ran out before a renewal succeeded.
    Expired { binding: Binding },
}

/// Counters, for `mip4ctl status`. Every dropped datagram lands in
/// exactly one `dropped_*` counter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests_sent: u64,
    pub retransmissions: u64,
    pub replies_received: u64,
    pub replies_processed: u64,
    /// Not a Registration Reply the codec can parse (including unknown
    /// non-skippable extensions, RFC 5944 §1.9).
    pub dropped_malformed: u64,
    /// Identification matches no request we remember: forged or stray.
    pub dropped_unmatched: u64,
    /// Answers an earlier, superseded request.
    pub dropped_late: u64,
    /// Answers a request already answered.
    pub dropped_duplicate: u64,
    /// Identification matched, home address (or NAI) did not.
    pub dropped_wrong_home_address: u64,
    /// Missing or failing MN-HA (or MN-FA) authentication.
    pub dropped_unauthenticated: u64,
    pub registrations: u64,
    pub deregistrations: u64,
    pub denials: u64,
    pub failures: u64,
    pub resyncs: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    purpose: Purpose,
    /// The request without authentication extensions.
    request: RequestRepr,
    /// The signed bytes last sent.
    payload: Vec<u8>,
    dst: SocketAddrV4,
    src: Option<Ipv4Addr>,
    first_sent: Instant,
    last_sent: Instant,
    attempts: u32,
    timeout: Duration,
    deadline: Instant,
    resyncs: u32,
    ha_switched: bool,
    lifetime_adjusted: bool,
    t_bit_added: bool,
}

/// Maps the caller's monotonic `Instant`s to NTP time of day, from one
/// reading of the wall clock the caller took at start.
#[derive(Debug, Clone, Copy)]
struct WallClock {
    at: Instant,
    ntp: NtpTimestamp,
}

impl WallClock {
    fn ntp(&self, now: Instant) -> NtpTimestamp {
        self.ntp.plus(now.saturating_duration_since(self.at))
    }
}

/// The registration client. See the module documentation.
pub struct Client {
    config: Config,
    home_agent: Ipv4Addr,
    /// Home address the HA assigned (RFC 2794), used from then on.
    assigned_home_address: Option<Ipv4Addr>,
    replay: MnReplay,
    rng: Box<dyn RngCore + Send>,
    clock: WallClock,
    pending: Option<Pending>,
    binding: Option<Binding>,
    renew_at: Option<Instant>,
    last_request_at: Option<Instant>,
    superseded_ids: VecDeque<u32>,
    answered_ids: VecDeque<u32>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.config)
            .field("home_agent", &self.home_agent)
            .field("pending", &self.pending.as_ref().map(|p| p.purpose))
            .field("binding", &self.binding)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn remember(list: &mut VecDeque<u32>, id: u32) {
    if list.len() == ID_MEMORY {
        list.pop_front();
    }
    list.push_back(id);
}

/// A plausible unicast home-agent address from a 136 reply.
fn is_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast())
}

impl Client {
    /// A client whose random numbers come from the operating system.
    /// `now` and `wall` are the same moment on the monotonic and the
    /// wall clock; nothing else in the client reads a clock.
    pub fn new(config: Config, now: Instant, wall: SystemTime) -> Result<Self, ConfigError> {
        Self::with_rng(config, now, wall, Box::new(StdRng::from_entropy()))
    }

    /// As [`new`](Self::new), with a caller-supplied random source (tests
    /// pass a seeded one).
    pub fn with_rng(
        config: Config,
        now: Instant,
        wall: SystemTime,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Client {
            home_agent: config.home_agent,
            assigned_home_address: None,
            replay: MnReplay::new(config.sa.replay_method()),
            rng,
            clock: WallClock {
                at: now,
                ntp: NtpTimestamp::from_system_time(wall),
            },
            pending: None,
            binding: None,
            renew_at: None,
            last_request_at: None,
            superseded_ids: VecDeque::new(),
            answered_ids: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The home agent in use (the configured one, or the one a 136 reply
    /// named).
    pub fn home_agent(&self) -> Ipv4Addr {
        self.home_agent
    }

    /// The home address in use (configured or assigned).
    pub fn home_address(&self) -> Ipv4Addr {
        self.assigned_home_address
            .unwrap_or(self.config.home_address)
    }

    /// Whether a request is outstanding.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Seconds added to the local clock for timestamps (learnt from 133).
    pub fn clock_offset(&self) -> i64 {
        self.replay.clock_offset()
    }

    /// Registers (again) with the current configuration, superseding any
    /// outstanding request.
    pub fn register(&mut self, now: Instant) {
        self.start(now, Purpose::Register);
    }

    /// The care-of address changed (and with it, perhaps, the foreign
    /// agent): register the new one at once. Moving to the home address
    /// means the node is back home: deregister all bindings.
    pub fn move_to(
        &mut self,
        now: Instant,
        care_of_address: Ipv4Addr,
        foreign_agent: Option<Ipv4Addr>,
    ) {
        if care_of_address == self.home_address() {
            self.deregister_at_home(now);
            return;
        }
        self.config.care_of_address = care_of_address;
        self.config.foreign_agent = foreign_agent;
        self.start(now, Purpose::Register);
    }

    /// Asks (or stops asking) for reverse tunnelling ('T', RFC 3024) from
    /// the next request on. RFC 5266 §3 makes it a MUST when the care-of
    /// address is the VPN's TIA, whatever the configured default.
    pub fn set_reverse_tunnel(&mut self, on: bool) {
        self.config.flags.set(Flags::T, on);
    }

    /// A second client for the same mobile node and MN-HA association,
    /// for RFC 5266 §3.4's boundary-detection probe: a real registration
    /// of `care_of` (co-located), with its own retransmission settings,
    /// that may run while this client keeps (and renews) its binding.
    /// It starts from this client's clock, home agent, assigned home
    /// address and replay state, so its Identification is as fresh as
    /// ours (RFC 5944 §5.7). Call [`register`](Self::register) on it.
    pub fn sibling(
        &self,
        care_of: Ipv4Addr,
        retransmit: Retransmit,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Client, ConfigError> {
        let mut config = self.config.clone();
        config.care_of_address = care_of;
        config.foreign_agent = None;
        config.retransmit = retransmit;
        config.validate()?;
        Ok(Client {
            home_agent: self.home_agent,
            assigned_home_address: self.assigned_home_address,
            replay: self.replay.clone(),
            rng,
            clock: self.clock,
            pending: None,
            binding: None,
            renew_at: None,
            last_request_at: self.last_request_at,
            superseded_ids: VecDeque::new(),
            answered_ids: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// Takes over the binding a [`sibling`](Self::sibling) registered
    /// (the accepted probe is the registration: RFC 5266 §3.4 does not
    /// register twice). Our outstanding request, if any, is superseded;
    /// the sibling's replay state, binding and renewal timer become ours,
    /// our own retransmission settings stay, and its counters are added
    /// to ours.
    pub fn adopt(&mut self, other: Client) {
        if let Some(old) = self.pending.take() {
            remember(
                &mut self.superseded_ids,
                replay::mn_half(old.request.identification),
            );
        }
        for id in other.answered_ids.iter().copied() {
            remember(&mut self.answered_ids, id);
        }
        for id in other.superseded_ids.iter().copied() {
            remember(&mut self.superseded_ids, id);
        }
        self.home_agent = other.home_agent;
        self.assigned_home_address = other.assigned_home_address.or(self.assigned_home_address);
        self.replay = other.replay;
        self.config.care_of_address = other.config.care_of_address;
        self.config.foreign_agent = other.config.foreign_agent;
        self.binding = other.binding;
        self.renew_at = other.renew_at;
        self.last_request_at = other.last_request_at.max(self.last_request_at);
        let (a, b) = (&mut self.stats, &other.stats);
        a.requests_sent += b.requests_sent;
        a.retransmissions += b.retransmissions;
        a.replies_received += b.replies_received;
        a.replies_processed += b.replies_processed;
        a.dropped_malformed += b.dropped_malformed;
        a.dropped_unmatched += b.dropped_unmatched;
        a.dropped_late += b.dropped_late;
        a.dropped_duplicate += b.dropped_duplicate;
        a.dropped_wrong_home_address += b.dropped_wrong_home_address;
        a.dropped_unauthenticated += b.dropped_unauthenticated;
        a.registrations += b.registrations;
        a.deregistrations += b.deregistrations;
        a.denials += b.denials;
        a.failures += b.failures;
        a.resyncs += b.resyncs;
    }

    /// Renews the binding now (RFC 5265 §3.2.4: registration-based
    /// monitoring re-registers more often than the lifetime asks). No-op
    /// without a binding or with a request outstanding.
    pub fn renew_now(&mut self, now: Instant) {
        if self.binding.is_some() && self.pending.is_none() {
            self.renew_at = None;
            self.start(now, Purpose::Renew);
        }
    }

    /// The Identification (low-order 32 bits, RFC 5944 §3.6.2.1) of the
    /// outstanding request.
    pub fn pending_identification(&self) -> Option<u32> {
        self.pending
            .as_ref()
            .map(|p| replay::mn_half(p.request.identification))
    }

    /// Deregisters the current care-of address (lifetime 0, §3.6.1.1).
    pub fn deregister(&mut self, now: Instant) {
        self.start(now, Purpose::Deregister);
    }

    /// Back on the home link: care-of address = home address, lifetime 0,
    /// sent straight to the home agent (§3.6.1.1).
    pub fn deregister_at_home(&mut self, now: Instant) {
        self.start(now, Purpose::DeregisterAtHome);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next outcome.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retransmit = self.pending.as_ref().map(|p| p.deadline);
        let renew = if self.pending.is_none() {
            self.renew_at
        } else {
            None
        };
        let expiry = self.binding.as_ref().and_then(|b| b.expires);
        [retransmit, renew, expiry].into_iter().flatten().min()
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(b) = &self.binding {
            if b.expires.is_some_and(|e| now >= e) {
                let binding = self.binding.take().expect("checked above");
                self.renew_at = None;
                debug!(home_address = %binding.home_address, "binding expired");
                self.events.push_back(Event::Expired { binding });
            }
        }
        if let Some(p) = &self.pending {
            if now >= p.deadline {
                if p.attempts >= self.config.retransmit.max_attempts {
                    self.give_up(now);
                } else {
                    self.retransmit(now);
                }
            }
        }
        if self.pending.is_none() && self.renew_at.is_some_and(|t| now >= t) {
            self.renew_at = None;
            if self.binding.is_some() {
                self.start(now, Purpose::Renew);
            }
        }
    }

    /// Processes a UDP payload received on the registration socket.
    /// `from` is the sender, for logging only: the MN-HA authenticator,
    /// not the source address, decides what is believed.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.stats.replies_received += 1;
        let reply = match ReplyRepr::parse_bytes(payload) {
            Ok(r) => r,
            Err(e) => {
                // Unknown non-skippable extensions (§1.8-§1.9) and bad
                // messages are silently discarded (§3.6.2.1).
                debug!(%from, error = %e, "dropped malformed registration reply");
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let mine = replay::mn_half(reply.identification);
        let Some(p) = &self.pending else {
            self.drop_unmatched(mine, from);
            return;
        };
        // §3.6.2.1: the low-order 32 bits must match the most recent
        // request.
        if mine != replay::mn_half(p.request.identification) {
            self.drop_unmatched(mine, from);
            return;
        }
        if !p.request.home_address.is_unspecified() && reply.home_address != p.request.home_address
        {
            debug!(%from, "dropped reply for another home address");
            self.stats.dropped_wrong_home_address += 1;
            return;
        }

        // Authenticate before believing anything (§3.6.2.1).
        let code = reply.code;
        let authenticated_end = if code.is_fa_denial() {
            match (self.config.foreign_agent, &self.config.mn_fa_sa) {
                // Registered directly: no foreign agent can answer.
                (None, _) => {
                    debug!(%from, %code, "dropped foreign-agent code without a foreign agent");
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
                (Some(_), Some(fa_sa)) => {
                    match auth::find_auth(payload, AuthKind::MnFa).and_then(|a| {
                        a.verify(fa_sa)?;
                        Ok(a.end)
                    }) {
                        Ok(end) => Some(end),
                        Err(e) => {
                            debug!(%from, error = %e, "dropped unauthenticated FA reply");
                            self.stats.dropped_unauthenticated += 1;
                            return;
                        }
                    }
                }
                // §3.6.2.1: without an MN-FA association the MN cannot
                // check a foreign agent's denial; it is taken as a denial
                // only, never to change a binding.
                (Some(_), None) => None,
            }
        } else {
            match auth::verify_mn_ha(payload, &self.config.sa) {
                Ok(end) => Some(end),
                Err(e) => {
                    debug!(%from, error = %e, "dropped unauthenticated reply");
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
            }
        };

        // With an assigned home address (RFC 2794) the NAI identifies us:
        // it must be among the authenticated extensions of an HA reply.
        if p.request.home_address.is_unspecified() && !code.is_fa_denial() {
            let end = authenticated_end.unwrap_or(REPLY_HEADER_LEN);
            let nai_ok = self
                .config
                .nai
                .as_deref()
                .is_some_and(|nai| authenticated_nai(payload, end).as_deref() == Some(nai));
            if !nai_ok || reply.home_address.is_unspecified() && code.is_accepted() {
                debug!(%from, "dropped reply with a foreign NAI");
                self.stats.dropped_wrong_home_address += 1;
                return;
            }
        }

        self.stats.replies_processed += 1;
        let p = self.pending.take().expect("matched above");
        let ntp_now = self.clock.ntp(now);
        if authenticated_end.is_some() && !code.is_fa_denial() {
            // Nonces: every authenticated HA reply hands the next nonce
            // (§5.7.2). Timestamps: only 133 moves the clock offset.
            let mismatch = code == ReplyCode::HA_IDENTIFICATION_MISMATCH;
            if let Some(offset) =
                self.replay
                    .on_authenticated_reply(reply.identification, mismatch, ntp_now)
            {
                debug!(offset, "clock offset towards the home agent adjusted");
            }
        }
        remember(&mut self.answered_ids, mine);

        if code.is_accepted() {
            let tnc = authenticated_end.is_some_and(|end| carries_tnc(payload, end));
            self.accepted(now, p, &reply, tnc);
        } else {
            self.denied(now, p, &reply, authenticated_end.is_some());
        }
    }

    // ----- internals -----

    fn drop_unmatched(&mut self, mine: u32, from: SocketAddrV4) {
        if self.answered_ids.contains(&mine) {
            self.stats.dropped_duplicate += 1;
            debug!(%from, "dropped duplicate reply");
        } else if self.superseded_ids.contains(&mine) {
            self.stats.dropped_late += 1;
            debug!(%from, "dropped late reply to a superseded request");
        } else {
            self.stats.dropped_unmatched += 1;
            debug!(%from, "dropped reply matching no request");
        }
    }

    fn start(&mut self, now: Instant, purpose: Purpose) {
        if let Some(old) = self.pending.take() {
            remember(
                &mut self.superseded_ids,
                replay::mn_half(old.request.identification),
            );
        }
        let at_home = purpose == Purpose::DeregisterAtHome;
        let home_address = self.home_address();
        let mut flags = self.config.flags;
        flags.remove(Flags::R);
        flags.remove(Flags::X);
        flags.set(Flags::D, self.config.foreign_agent.is_none());
        if at_home {
            // No tunnel to or from home.
            flags = Flags::empty();
        }
        let mut extensions = Vec::with_capacity(1 + self.config.extensions.len());
        if let Some(nai) = &self.config.nai {
            extensions.push(Extension::Nai(nai.clone()));
        }
        extensions.extend(self.config.extensions.iter().cloned());
        let request = RequestRepr {
            flags,
            lifetime: if purpose.is_deregistration() {
                0
            } else {
                self.config.lifetime
            },
            home_address,
            home_agent: self.home_agent,
            care_of_address: if at_home {
                home_address
            } else {
                self.config.care_of_address
            },
            identification: 0,
            extensions,
        };
        let (dst, src) = self.route(at_home, home_address);
        let initial = self.config.retransmit.initial_timeout;
        let mut p = Pending {
            purpose,
            request,
            payload: Vec::new(),
            dst,
            src,
            first_sent: now,
            last_sent: now,
            attempts: 0,
            timeout: initial,
            deadline: now,
            resyncs: 0,
            ha_switched: false,
            lifetime_adjusted: false,
            t_bit_added: false,
        };
        self.sign_new_identification(now, &mut p);
        self.send(now, p, false);
    }

    fn route(&self, at_home: bool, home_address: Ipv4Addr) -> (SocketAddrV4, Option<Ipv4Addr>) {
        match self.config.foreign_agent {
            Some(fa) if !at_home => (SocketAddrV4::new(fa, MIP_PORT), Some(home_address)),
            _ if at_home => (
                SocketAddrV4::new(self.home_agent, MIP_PORT),
                Some(home_address),
            ),
            _ => (
                SocketAddrV4::new(self.home_agent, MIP_PORT),
                Some(self.config.care_of_address),
            ),
        }
    }

    fn sign_new_identification(&mut self, now: Instant, p: &mut Pending) {
        let ntp = self.clock.ntp(now);
        p.request.identification = self.replay.next_identification(ntp, &mut *self.rng);
        let mut payload = auth::sign_request(&p.request, &self.config.sa);
        if self.config.foreign_agent.is_some() && p.purpose != Purpose::DeregisterAtHome {
            if let Some(fa_sa) = &self.config.mn_fa_sa {
                // §3.6.1.3: MN-FA after MN-HA.
                auth::append_auth(&mut payload, AuthKind::MnFa, fa_sa);
            }
        }
        p.payload = payload;
    }

    fn send(&mut self, now: Instant, mut p: Pending, retransmission: bool) {
        p.attempts += 1;
        p.last_sent = now;
        if p.attempts == 1 {
            p.first_sent = now;
        }
        p.deadline = now + p.timeout;
        self.stats.requests_sent += 1;
        self.last_request_at = Some(now);
        self.transmits.push_back(Transmit {
            dst: p.dst,
            src: p.src,
            payload: p.payload.clone(),
            purpose: p.purpose,
            care_of_address: p.request.care_of_address,
            identification: p.request.identification,
            retransmission,
        });
        self.pending = Some(p);
    }

    fn backoff_cap(&self, lifetime: u16) -> Duration {
        let mut cap = self.config.retransmit.max_timeout;
        if lifetime != 0 && lifetime != INFINITE_LIFETIME {
            // §3.6.3: no greater than the requested lifetime.
            cap = cap.min(Duration::from_secs(lifetime.into()));
        }
        cap.max(MIN_RETRANSMIT_INTERVAL)
    }

    fn retransmit(&mut self, now: Instant) {
        let mut p = self.pending.take().expect("caller checked");
        self.stats.retransmissions += 1;
        if self.replay.method() == ReplayMethod::Timestamp {
            // §3.6.3: with timestamps each retransmission is a new
            // registration with a new Identification.
            remember(
                &mut self.superseded_ids,
                replay::mn_half(p.request.identification),
            );
            self.sign_new_identification(now, &mut p);
        }
        // With nonces the request goes out unchanged (§3.6.3).
        p.timeout = (p.timeout * 2).min(self.backoff_cap(p.request.lifetime));
        self.send(now, p, true);
    }

    /// Sends a corrected request at once (after 133, 136, 69, 75/138):
    /// a fresh exchange with a fresh retransmission budget.
    fn resend(&mut self, now: Instant, mut p: Pending) {
        remember(
            &mut self.superseded_ids,
            replay::mn_half(p.request.identification),
        );
        p.attempts = 0;
        p.timeout = self.config.retransmit.initial_timeout;
        self.sign_new_identification(now, &mut p);
        self.send(now, p, false);
    }

    fn give_up(&mut self, now: Instant) {
        let p = self.pending.take().expect("caller checked");
        remember(
            &mut self.superseded_ids,
            replay::mn_half(p.request.identification),
        );
        self.stats.failures += 1;
        debug!(purpose = ?p.purpose, attempts = p.attempts, "registration attempt failed");
        if p.purpose == Purpose::Renew {
            if let Some(b) = &self.binding {
                // Keep trying while the binding lasts: pause for the
                // backoff cap, or half the time left if that is shorter.
                let mut pause = self.config.retransmit.max_timeout;
                if let Some(e) = b.expires {
                    pause = pause.min(e.saturating_duration_since(now) / 2);
                }
                self.renew_at = Some(now + pause.max(MIN_RETRANSMIT_INTERVAL));
            }
        }
        self.events.push_back(Event::Failed {
            purpose: p.purpose,
            attempts: p.attempts,
        });
    }

    fn accepted(&mut self, now: Instant, p: Pending, reply: &ReplyRepr, tnc: bool) {
        // §3.6.2.3: never assume more than was requested.
        let granted = reply.lifetime.min(p.request.lifetime);
        if p.purpose.is_deregistration() || granted == 0 {
            self.binding = None;
            self.renew_at = None;
            self.stats.deregistrations += 1;
            self.events.push_back(Event::Deregistered {
                care_of_address: p.request.care_of_address,
            });
            return;
        }
        // The lifetime runs from when the request was sent. With nonces
        // the request may have been retransmitted unchanged: count from
        // the first copy, the conservative choice.
        let sent = match self.replay.method() {
            ReplayMethod::Timestamp => p.last_sent,
            ReplayMethod::Nonce => p.first_sent,
        };
        let lifetime = Duration::from_secs(granted.into());
        let expires = (granted != INFINITE_LIFETIME).then(|| sent + lifetime);
        self.renew_at = expires.map(|_| {
            let at = sent + lifetime * u32::from(self.config.renew_percent) / 100;
            // §3.6.3's one-second floor between requests.
            at.max(now + MIN_RETRANSMIT_INTERVAL)
        });
        if p.request.home_address.is_unspecified() {
            self.assigned_home_address = Some(reply.home_address);
        }
        if is_unicast(reply.home_agent) {
            self.home_agent = reply.home_agent;
        }
        let binding = Binding {
            home_address: reply.home_address,
            home_agent: self.home_agent,
            care_of_address: p.request.care_of_address,
            lifetime,
            expires,
        };
        self.binding = Some(binding.clone());
        self.stats.registrations += 1;
        self.events.push_back(Event::Registered {
            binding,
            code: reply.code,
            renewal: p.purpose == Purpose::Renew,
            tnc,
        });
    }

    fn denied(&mut self, now: Instant, mut p: Pending, reply: &ReplyRepr, authenticated: bool) {
        let code = reply.code;
        match code {
            // §3.6.2.4, §5.7: resynchronise and try again.
            ReplyCode::HA_IDENTIFICATION_MISMATCH if p.resyncs < self.config.max_resyncs => {
                self.stats.resyncs += 1;
                self.events.push_back(Event::ReplayResync {
                    method: self.replay.method(),
                    clock_offset: self.replay.clock_offset(),
                });
                p.resyncs += 1;
                self.resend(now, p);
                return;
            }
            // §3.6.2.4: the denying home agent names its unicast address.
            ReplyCode::HA_UNKNOWN_HOME_AGENT
                if !p.ha_switched
                    && is_unicast(reply.home_agent)
                    && reply.home_agent != p.request.home_agent =>
            {
                let from = self.home_agent;
                self.home_agent = reply.home_agent;
                self.events.push_back(Event::HomeAgentChanged {
                    from,
                    to: reply.home_agent,
                });
                p.ha_switched = true;
                p.request.home_agent = reply.home_agent;
                let at_home = p.purpose == Purpose::DeregisterAtHome;
                (p.dst, p.src) = self.route(at_home, p.request.home_address);
                self.resend(now, p);
                return;
            }
            // The foreign agent's reply carries the longest lifetime it
            // accepts (RFC 5944 §3.4 code 69, §3.6.2.4).
            ReplyCode::FA_LIFETIME_TOO_LONG
                if !p.lifetime_adjusted
                    && reply.lifetime > 0
                    && reply.lifetime < p.request.lifetime =>
            {
                p.lifetime_adjusted = true;
                p.request.lifetime = reply.lifetime;
                self.resend(now, p);
                return;
            }
            // RFC 3024 §6: reverse tunnelling is mandatory; ask for it.
            ReplyCode::FA_REVERSE_TUNNEL_MANDATORY | ReplyCode::HA_REVERSE_TUNNEL_MANDATORY
                if !p.t_bit_added && !p.request.flags.contains(Flags::T) =>
            {
                p.t_bit_added = true;
                p.request.flags.insert(Flags::T);
                self.resend(now, p);
                return;
            }
            _ => {}
        }
        self.stats.denials += 1;
        let by = if code.is_fa_denial() {
            Agent::ForeignAgent
        } else {
            Agent::HomeAgent
        };
        debug!(%code, ?by, purpose = ?p.purpose, "registration denied");
        self.events.push_back(Event::Denied {
            code,
            by,
            purpose: p.purpose,
            authenticated,
        });
    }
}

/// The extensions of a reply that precede `end` (the authenticated part
/// of the message).
fn authenticated_extensions(msg: &[u8], end: usize) -> impl Iterator<Item = Extension> + '_ {
    ExtensionIter::new(msg, REPLY_HEADER_LEN)
        .map_while(Result::ok)
        .take_while(move |(offset, _)| *offset < end)
        .map(|(_, e)| e)
}

/// Whether the Trusted Networks Configured extension is among the
/// authenticated extensions (RFC 5265 §4.1): one appended after the
/// authenticator could come from any on-path host.
fn carries_tnc(msg: &[u8], end: usize) -> bool {
    authenticated_extensions(msg, end).any(|e| e == Extension::TrustedNetworksConfigured)
}

/// The NAI among the authenticated extensions.
fn authenticated_nai(msg: &[u8], end: usize) -> Option<Vec<u8>> {
    authenticated_extensions(msg, end).find_map(|e| match e {
        Extension::Nai(n) => Some(n),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sign_reply;

    fn sa() -> SecurityAssociation {
        SecurityAssociation::hmac_md5(0x1000, b"0123456789abcdef").unwrap()
    }

    fn reply(exts: Vec<Extension>) -> ReplyRepr {
        ReplyRepr {
            code: ReplyCode::ACCEPTED,
            lifetime: 600,
            home_address: [10, 1, 0, 5].into(),
            home_agent: [10, 1, 0, 1].into(),
            identification: 7,
            extensions: exts,
        }
    }

    /// TNC as the client reports it in `Registered`: `Err` when the reply
    /// does not verify under `sa`.
    fn tnc(payload: &[u8], sa: &SecurityAssociation) -> Result<bool, auth::AuthError> {
        let end = auth::verify_mn_ha(payload, sa)?;
        Ok(carries_tnc(payload, end))
    }

    #[test]
    fn tnc_counts_only_inside_the_authenticated_part() {
        let with = sign_reply(&reply(vec![Extension::TrustedNetworksConfigured]), &sa());
        assert_eq!(tnc(&with, &sa()), Ok(true));
        let without = sign_reply(&reply(vec![]), &sa());
        assert_eq!(tnc(&without, &sa()), Ok(false));
        // Appended after the authenticator: not covered, not believed.
        let mut appended = without.clone();
        appended.extend_from_slice(&Extension::TrustedNetworksConfigured.to_bytes());
        assert_eq!(tnc(&appended, &sa()), Ok(false));
        // Signed with another key: an error, whatever it carries.
        let other = SecurityAssociation::hmac_md5(0x1000, b"not the right key").unwrap();
        let forged = sign_reply(&reply(vec![Extension::TrustedNetworksConfigured]), &other);
        assert!(tnc(&forged, &sa()).is_err());
    }
}
