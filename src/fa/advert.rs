//! Agent Advertisement timing and content (RFC 5944 §2.1, §2.3; the
//! router rules of RFC 1256 §4 that §2.3 builds on), sans-IO.
//!
//! Per served interface: the first advertisement goes out at start, the
//! first three at most 16 s apart (RFC 1256 §4, MAX_INITIAL_ADVERT_INTERVAL
//! and MAX_INITIAL_ADVERTISEMENTS), then one every uniformly random
//! interval in [MinAdvertisementInterval, MaxAdvertisementInterval] (the
//! jitter RFC 5944 §2.3.2 asks for against synchronisation). A
//! solicitation brings the next one forward, but never closer than one
//! second to the previous: RFC 5944 §2.3.2 recommends at most one
//! multicast advertisement per second.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore};

use super::config::AdvertisementConfig;
use crate::wire::icmp::{AdvFlags, AgentAdvertisementRepr, MobilityAgentAdv, CODE_MOBILITY_ONLY};

/// RFC 1256 §4: MAX_INITIAL_ADVERT_INTERVAL.
pub const MAX_INITIAL_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
/// RFC 1256 §4: MAX_INITIAL_ADVERTISEMENTS.
pub const MAX_INITIAL_ADVERTISEMENTS: u32 = 3;
/// RFC 5944 §2.3.2: recommended maximum rate of multicast advertisements.
pub const MIN_SPACING: Duration = Duration::from_secs(1);

/// The next Sequence Number after `seq` (RFC 5944 §2.1.1, §2.3.2): it
/// counts up from 0, and after 0xffff goes to 256, so that values below
/// 256 always mean "the agent has rebooted" to a mobile node.
pub const fn next_sequence(seq: u16) -> u16 {
    if seq == u16::MAX {
        256
    } else {
        seq + 1
    }
}

/// The advertisement schedule of one interface.
#[derive(Debug, Clone)]
pub struct Schedule {
    next_seq: u16,
    next_at: Instant,
    sent: u32,
    last_sent: Option<Instant>,
}

impl Schedule {
    /// The first advertisement is due at `now`.
    pub fn new(now: Instant) -> Self {
        Schedule {
            next_seq: 0,
            next_at: now,
            sent: 0,
            last_sent: None,
        }
    }

    /// When the next advertisement is due.
    pub fn due(&self) -> Instant {
        self.next_at
    }

    /// The sequence number the next advertisement will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_seq
    }

    /// Records an advertisement sent at `now`; returns its sequence number
    /// and schedules the next.
    pub fn sent(&mut self, now: Instant, cfg: &AdvertisementConfig, rng: &mut dyn RngCore) -> u16 {
        let seq = self.next_seq;
        self.next_seq = next_sequence(seq);
        self.sent += 1;
        self.last_sent = Some(now);
        let mut interval = if cfg.min_interval >= cfg.max_interval {
            cfg.max_interval
        } else {
            rng.gen_range(cfg.min_interval..=cfg.max_interval)
        };
        if self.sent < MAX_INITIAL_ADVERTISEMENTS {
            interval = interval.min(MAX_INITIAL_ADVERT_INTERVAL);
        }
        self.next_at = now + interval;
        seq
    }

    /// A solicitation arrived at `now`: answer as soon as the rate limit
    /// allows.
    pub fn solicited(&mut self, now: Instant) {
        let earliest = match self.last_sent {
            Some(t) => (t + MIN_SPACING).max(now),
            None => now,
        };
        self.next_at = self.next_at.min(earliest);
    }

    /// Restarts the count (for tests of the wrap rule).
    pub fn set_next_sequence(&mut self, seq: u16) {
        self.next_seq = seq;
    }
}

/// Builds one Agent Advertisement (RFC 5944 §2.1): router address = the
/// FA's address on the link, Mobility Agent Advertisement extension with
/// the flags and care-of address, and Prefix-Lengths when configured.
#[allow(clippy::too_many_arguments)]
pub fn build(
    cfg: &AdvertisementConfig,
    router: Ipv4Addr,
    prefix_len: u8,
    sequence: u16,
    registration_lifetime: u16,
    flags: AdvFlags,
    care_of: Ipv4Addr,
) -> Vec<u8> {
    AgentAdvertisementRepr {
        code: if cfg.mobility_only {
            CODE_MOBILITY_ONLY
        } else {
            0
        },
        lifetime: cfg.lifetime,
        routers: vec![(router, 0)],
        mobility: MobilityAgentAdv {
            sequence,
            registration_lifetime,
            flags,
            care_of_addresses: vec![care_of],
        },
        prefix_lengths: cfg.prefix_lengths.then(|| vec![prefix_len]),
        unknown: Vec::new(),
        padding: false,
    }
    .to_bytes()
}
