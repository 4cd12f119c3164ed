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
//!   second, capped by the requested lifetime (§3.6.3); a corrected
//!   request after a denial repeats the same registration, so it too
//!   leaves no sooner than one second after the request it corrects
//!   (§3.6.3: "The minimum time between Registration Requests MUST NOT
//!   be less than 1 second"; §3.6.2.4 and §5.7 ask for the corrected
//!   parameters, not for haste); a new
//!   Identification per retransmission with timestamps, the same request
//!   with nonces (§3.6.3, §5.7);
//! - renewal before the granted lifetime runs out, counting the lifetime
//!   from when the request was sent (§3.6.2.3);
//! - denials (§3.6.2.4): 133 resynchronises (§5.7) and retries, 136
//!   learns the home agent's unicast address from the reply, 69 retries
//!   with the lifetime the foreign agent offers, 75/138 retry with the T
//!   bit (RFC 3024 §6), every other denial ends the attempt. A foreign
//!   agent's denial is believed only with a valid MN-FA authenticator
//!   (§3.6.2.1); without an MN-FA association it ends the attempt but
//!   never corrects the next request (69's lifetime, 75's T bit): anyone
//!   on the link could have sent it.
//!
//! Files: `config` (what is registered, and its checks), `request`
//! (building, signing, sending, retransmitting), `reply` (matching,
//! authenticating, acting on replies), `report` (what the client hands
//! out: transmits, events, counters).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use tracing::debug;

use crate::replay::{self, MnReplay, NtpTimestamp};
use crate::wire::{Flags, RequestRepr};

mod config;
mod reply;
mod report;
mod request;

pub use config::{Config, ConfigError, Retransmit, INFINITE_LIFETIME, MIN_RETRANSMIT_INTERVAL};
pub use report::{Agent, Binding, ClientEvent, Ipv6Outcome, Purpose, Stats, Transmit};

/// How many earlier Identifications are remembered to tell late and
/// duplicate replies from forged ones in the statistics.
const ID_MEMORY: usize = 16;

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
    /// When to act next: retransmit, give up, or send a held request.
    deadline: Instant,
    /// A corrected request (after 133, 136, 69, 75/138) waiting for
    /// §3.6.3's one-second floor: not on the wire yet, signed when sent.
    held: bool,
    /// Handed to the daemon but held there for want of a route
    /// ([`Client::transmit_parked`]): not on the wire, no attempt yet.
    parked: bool,
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
    events: VecDeque<ClientEvent>,
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
        let clock = WallClock {
            at: now,
            ntp: NtpTimestamp::from_system_time(wall),
        };
        let replay = MnReplay::new(config.sa.replay_method());
        let home_agent = config.home_agent;
        Ok(Client::fresh(config, home_agent, replay, rng, clock))
    }

    /// A client with no request, binding or counters yet.
    fn fresh(
        config: Config,
        home_agent: Ipv4Addr,
        replay: MnReplay,
        rng: Box<dyn RngCore + Send>,
        clock: WallClock,
    ) -> Client {
        Client {
            home_agent,
            assigned_home_address: None,
            replay,
            rng,
            clock,
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
        }
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

    /// The lifetime asked for from the next request on (non-zero; a
    /// foreign agent's advertisement caps it, RFC 5944 §2.1.1, §3.6.1.1).
    pub fn set_lifetime(&mut self, lifetime: u16) {
        if lifetime != 0 {
            self.config.lifetime = lifetime;
        }
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
        let mut c = Client::fresh(
            config,
            self.home_agent,
            self.replay.clone(),
            rng,
            self.clock,
        );
        c.assigned_home_address = self.assigned_home_address;
        c.last_request_at = self.last_request_at;
        Ok(c)
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
    /// outstanding request (none while a corrected request is held).
    pub fn pending_identification(&self) -> Option<u32> {
        self.pending
            .as_ref()
            .filter(|p| !p.held)
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
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
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
                self.events.push_back(ClientEvent::Expired { binding });
            }
        }
        if let Some(p) = &self.pending {
            if now >= p.deadline {
                if p.held {
                    self.send_held(now);
                } else if p.parked {
                    self.wait_parked(now);
                } else if p.attempts >= self.config.retransmit.max_attempts {
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
}
