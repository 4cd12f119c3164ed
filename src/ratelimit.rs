//! Rate limits for what unauthenticated input makes an agent do: a log
//! line, an unsigned reply to an address anyone can spoof, or an ICMP
//! error from a data plane. Sans-IO: the caller passes `now`.
//!
//! Two token buckets must both have a token: one per source address, so a
//! single noisy sender is held to a trickle, and one shared, so that a
//! flood from many (spoofed) sources is still bounded in total. The map of
//! per-source buckets is bounded too: when full, buckets that have refilled
//! (idle senders) are forgotten; if none has, a new source is refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `burst` tokens, one more every `every`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits of one [`SourceLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per source: tokens at most, and per second.
    pub per_source_burst: u32,
    pub per_source_rate: f64,
    /// All sources together.
    pub total_burst: u32,
    pub total_rate: f64,
    /// Sources remembered at most.
    pub max_sources: usize,
}

impl Default for Limits {
    /// A few lines and replies per second per source and a few dozen in
    /// all: enough for an operator to see what happens, too few for a
    /// flood to fill a disk or turn the agent into a reflector.
    fn default() -> Self {
        Limits {
            per_source_burst: 5,
            per_source_rate: 1.0,
            total_burst: 50,
            total_rate: 10.0,
            max_sources: 4096,
        }
    }
}

/// Per-source and total token buckets.
#[derive(Debug, Clone)]
pub struct SourceLimiter {
    limits: Limits,
    sources: HashMap<IpAddr, Bucket>,
    total: Bucket,
    /// Events refused since the last one allowed (for the next log line).
    suppressed: u64,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Self {
        Bucket {
            tokens: f64::from(burst),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant, burst: u32, rate: f64) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(f64::from(burst));
        self.at = now.max(self.at);
    }

    fn has_token(&self) -> bool {
        self.tokens >= 1.0
    }
}

/// What [`SourceLimiter::allow`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead; `suppressed` events were refused since the last allowed
    /// one (worth saying in the log line).
    Allowed {
        suppressed: u64,
    },
    Refused,
}

impl SourceLimiter {
    pub fn new(limits: Limits, now: Instant) -> Self {
        SourceLimiter {
            limits,
            sources: HashMap::new(),
            total: Bucket::full(limits.total_burst, now),
            suppressed: 0,
        }
    }

    /// Takes a token from `src`'s bucket and the shared one, if both have
    /// one.
    pub fn allow(&mut self, now: Instant, src: impl Into<IpAddr>) -> Verdict {
        let src = src.into();
        let l = self.limits;
        self.total.refill(now, l.total_burst, l.total_rate);
        if !self.sources.contains_key(&src) && self.sources.len() >= l.max_sources {
            self.forget_idle(now);
        }
        let ok = if let Some(b) = self.sources.get_mut(&src) {
            b.refill(now, l.per_source_burst, l.per_source_rate);
            b.has_token() && self.total.has_token()
        } else {
            self.sources.len() < l.max_sources && self.total.has_token()
        };
        if !ok {
            self.suppressed += 1;
            return Verdict::Refused;
        }
        let b = self
            .sources
            .entry(src)
            .or_insert_with(|| Bucket::full(l.per_source_burst, now));
        b.tokens -= 1.0;
        self.total.tokens -= 1.0;
        Verdict::Allowed {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }

    /// Sources remembered now (bounded by `max_sources`).
    pub fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Drops the buckets that are full again: their sources are idle, and
    /// a fresh bucket for them would be the same.
    fn forget_idle(&mut self, now: Instant) {
        let (burst, rate) = (self.limits.per_source_burst, self.limits.per_source_rate);
        let refill = Duration::from_secs_f64(f64::from(burst) / rate.max(f64::MIN_POSITIVE));
        self.sources
            .retain(|_, b| now.saturating_duration_since(b.at) < refill);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits() -> Limits {
        Limits {
            per_source_burst: 2,
            per_source_rate: 1.0,
            total_burst: 3,
            total_rate: 2.0,
            max_sources: 2,
        }
    }

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        assert_eq!(l.allow(t0, A), Verdict::Allowed { suppressed: 0 });
        assert_eq!(l.allow(t0, A), Verdict::Allowed { suppressed: 0 });
        assert_eq!(l.allow(t0, A), Verdict::Refused);
        assert_eq!(l.allow(t0, A), Verdict::Refused);
        // One second later: one token more, and the refusals are reported.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.allow(t1, A), Verdict::Allowed { suppressed: 2 });
        assert_eq!(l.allow(t1, A), Verdict::Refused);
    }

    #[test]
    fn the_total_bounds_many_sources() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        assert!(matches!(l.allow(t0, A), Verdict::Allowed { .. }));
        assert!(matches!(l.allow(t0, A), Verdict::Allowed { .. }));
        assert!(matches!(l.allow(t0, B), Verdict::Allowed { .. }));
        // B still has a token of its own, but the total is spent.
        assert_eq!(l.allow(t0, B), Verdict::Refused);
    }

    #[test]
    fn the_source_map_stays_bounded_and_forgets_idle_sources() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(limits(), t0);
        assert!(matches!(l.allow(t0, A), Verdict::Allowed { .. }));
        assert!(matches!(l.allow(t0, B), Verdict::Allowed { .. }));
        // Full map, nobody idle: a third source is refused, not stored.
        assert_eq!(l.allow(t0, C), Verdict::Refused);
        assert_eq!(l.sources(), 2);
        // Once A and B have refilled, C takes a place.
        let later = t0 + Duration::from_secs(5);
        assert!(matches!(l.allow(later, C), Verdict::Allowed { .. }));
        assert!(l.sources() <= 2);
    }
}
