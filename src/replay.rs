//! Replay protection for registration messages (RFC 5944 §5.7).
//!
//! The 64-bit Identification field of a Registration Request and Reply
//! carries either an NTP-format timestamp (§5.7.1) or a pair of nonces
//! (§5.7.2). This module holds the rules of both methods for each side:
//! [`MnReplay`] builds the mobile node's identifications and learns from
//! authenticated replies; [`HaReplay`] is the home agent's per-binding check.
//!
//! Nothing here reads a clock: the caller passes the time of day as an
//! [`NtpTimestamp`], so every rule is a deterministic test.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;

/// Seconds from the NTP era origin (1900-01-01) to the Unix epoch.
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Default timestamp tolerance: RFC 5944 §5.7.1 suggests the home agent
/// accept timestamps "within 7 seconds" of its own time of day.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(7);

/// A 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, the
/// binary fraction of a second in the low 32 bits (RFC 5905 §6), the
/// format RFC 5944 §5.7.1 prescribes for the Identification field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// From whole seconds since 1900 and a 32-bit fraction.
    pub const fn new(seconds: u32, fraction: u32) -> Self {
        NtpTimestamp(((seconds as u64) << 32) | fraction as u64)
    }

    /// Converts a wall-clock time. Times before 1970 map to the Unix epoch
    /// (a host clock that far off is a configuration error, not a value).
    pub fn from_system_time(t: SystemTime) -> Self {
        let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self::from_unix(since_unix)
    }

    /// From the time elapsed since the Unix epoch. NTP era 0 wraps in 2036;
    /// the seconds are taken modulo 2^32 as NTP does.
    pub fn from_unix(since_unix: Duration) -> Self {
        let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET) as u32;
        let frac = ((since_unix.subsec_nanos() as u64) << 32) / 1_000_000_000;
        Self::new(secs, frac as u32)
    }

    /// Whole seconds since 1900 (high-order 32 bits).
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Fraction of a second in units of 2^-32 s (low-order 32 bits).
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Adds a signed offset in seconds (the MN's learned clock offset),
    /// wrapping like NTP era arithmetic.
    pub fn offset_by(self, seconds: i64) -> Self {
        let secs = (self.seconds() as i64).wrapping_add(seconds) as u32;
        Self::new(secs, self.fraction())
    }

    /// Advances by `d`, wrapping like NTP era arithmetic.
    pub fn plus(self, d: Duration) -> Self {
        let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
        NtpTimestamp(self.0.wrapping_add((d.as_secs() << 32).wrapping_add(frac)))
    }

    /// Signed difference `self - other` in seconds, interpreting the
    /// 32-bit seconds as a circle (RFC 5905 era-agnostic difference).
    pub fn seconds_since(self, other: NtpTimestamp) -> i64 {
        self.seconds().wrapping_sub(other.seconds()) as i32 as i64
    }

    /// `self` is later than `other` on the NTP circle: serial-number
    /// comparison of the 64-bit values (RFC 5905 §6: timestamps are taken
    /// modulo the era, and two within half an era, 68 years, compare by
    /// their signed difference; RFC 1982's rule). Era 0 ends in February
    /// 2036; a timestamp just after that, seconds near 0, is later than
    /// one just before, seconds near 2^32, though smaller as an integer.
    pub fn is_after(self, other: NtpTimestamp) -> bool {
        (self.0.wrapping_sub(other.0) as i64) > 0
    }

    /// Absolute distance between two timestamps, era-agnostic.
    pub fn distance(self, other: NtpTimestamp) -> Duration {
        let d = self.0.wrapping_sub(other.0) as i64;
        let units = d.unsigned_abs();
        let secs = units >> 32;
        let nanos = ((units & 0xffff_ffff) * 1_000_000_000) >> 32;
        Duration::new(secs, nanos as u32)
    }
}

/// Which replay-protection method a mobility security association uses
/// (RFC 5944 §5.7: timestamps are mandatory to implement, nonces optional).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayMethod {
    /// §5.7.1: the Identification is the sender's NTP time of day.
    #[default]
    Timestamp,
    /// §5.7.2: the HA's nonce in the high-order 32 bits, the MN's in the
    /// low-order 32 bits.
    Nonce,
}

/// The half of the Identification the mobile node chose and the reply
/// must echo (RFC 5944 §3.6.2.1: the MN compares the low-order 32 bits).
pub const fn mn_half(identification: u64) -> u32 {
    identification as u32
}

/// The half of the Identification the home agent controls: its time of
/// day after a 133 (timestamps) or its next nonce (nonces).
pub const fn ha_half(identification: u64) -> u32 {
    (identification >> 32) as u32
}

/// The low bits of a timestamp's fraction that no clock here resolves
/// (2^-20 s is under a microsecond): random, per RFC 5944 §5.7.1.
const RANDOM_FRACTION_BITS: u32 = 0xfff;

/// Joins the HA half (high-order) and MN half (low-order).
pub const fn join(ha: u32, mn: u32) -> u64 {
    ((ha as u64) << 32) | mn as u64
}

/// The mobile node's replay state for one mobility security association.
#[derive(Debug, Clone)]
pub struct MnReplay {
    method: ReplayMethod,
    /// Seconds to add to the MN's clock so its timestamps fall inside the
    /// HA's window; learned from a 133 reply (RFC 5944 §5.7.1).
    clock_offset: i64,
    /// The nonce the HA handed out in its last authenticated reply, to be
    /// put in the high-order bits of the next request (§5.7.2).
    ha_nonce: u32,
    /// The last Identification sent, so timestamps keep increasing.
    last_sent: Option<u64>,
}

impl MnReplay {
    pub fn new(method: ReplayMethod) -> Self {
        MnReplay {
            method,
            clock_offset: 0,
            ha_nonce: 0,
            last_sent: None,
        }
    }

    pub fn method(&self) -> ReplayMethod {
        self.method
    }

    /// The learned clock offset towards the HA, in seconds.
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset
    }

    /// A fresh Identification for a new Registration Request.
    ///
    /// Timestamps (RFC 5944 §5.7.1): the high-order 32 bits are the MN's
    /// NTP seconds corrected by the learned offset; the low-order 32 bits
    /// are the fraction of the second, its bits below the clock's useful
    /// resolution (the low 12, under a microsecond) random as §5.7.1 asks.
    /// The real fraction keeps the value greater than any earlier request's
    /// even across a restart within the same second (the HA accepts only
    /// timestamps "greater than all previously accepted", §5.7.1); replies
    /// are believed only once authenticated, so the low bits need not be
    /// unpredictable. Each value is strictly greater than the previous one.
    ///
    /// Nonces (§5.7.2): the HA's last nonce in the high-order bits and a
    /// new random nonce of the MN's own in the low-order bits.
    pub fn next_identification(&mut self, now: NtpTimestamp, rng: &mut dyn RngCore) -> u64 {
        let id = match self.method {
            ReplayMethod::Timestamp => {
                let t = now.offset_by(self.clock_offset);
                let fraction = (t.fraction() & !RANDOM_FRACTION_BITS)
                    | (rng.next_u32() & RANDOM_FRACTION_BITS);
                let candidate = join(t.seconds(), fraction);
                match self.last_sent {
                    Some(last) if !NtpTimestamp(candidate).is_after(NtpTimestamp(last)) => {
                        // Same second as the previous request (e.g. a quick
                        // retransmission): step just past it, still random.
                        last.wrapping_add(1 + (rng.next_u32() & 0xffff) as u64)
                    }
                    _ => candidate,
                }
            }
            ReplayMethod::Nonce => {
                let mut mine = rng.next_u32();
                if let Some(last) = self.last_sent {
                    if mine == mn_half(last) {
                        mine = mine.wrapping_add(1);
                    }
                }
                join(self.ha_nonce, mine)
            }
        };
        self.last_sent = Some(id);
        id
    }

    /// Learns from an AUTHENTICATED reply whose low-order bits matched an
    /// outstanding request. Returns the new clock offset when the reply
    /// was a timestamp mismatch (code 133) and the MN resynchronised.
    ///
    /// - Timestamps, 133: the HA put its own time of day in the high-order
    ///   bits (§5.7.1); the MN adopts the difference as its offset.
    /// - Nonces, any code: the high-order bits are the HA's nonce for the
    ///   next request (§5.7.2).
    pub fn on_authenticated_reply(
        &mut self,
        reply_identification: u64,
        mismatch: bool,
        now: NtpTimestamp,
    ) -> Option<i64> {
        match self.method {
            ReplayMethod::Timestamp if mismatch => {
                let ha = NtpTimestamp::new(ha_half(reply_identification), 0);
                let mine = NtpTimestamp::new(now.seconds(), 0);
                self.clock_offset = ha.seconds_since(mine);
                // The next timestamp comes from the HA's clock: forget the
                // old monotonic floor if the HA is behind us.
                self.last_sent = None;
                Some(self.clock_offset)
            }
            ReplayMethod::Timestamp => None,
            ReplayMethod::Nonce => {
                self.ha_nonce = ha_half(reply_identification);
                None
            }
        }
    }
}

/// What the home agent decides about a request's Identification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// Fresh: accept, and put `reply_identification` in the reply.
    Accept { reply_identification: u64 },
    /// Replayed or out of the window: deny with code 133 (registration
    /// Identification mismatch) carrying `reply_identification`.
    Mismatch { reply_identification: u64 },
}

impl ReplayVerdict {
    pub fn reply_identification(self) -> u64 {
        match self {
            ReplayVerdict::Accept {
                reply_identification,
            }
            | ReplayVerdict::Mismatch {
                reply_identification,
            } => reply_identification,
        }
    }

    pub fn is_accepted(self) -> bool {
        matches!(self, ReplayVerdict::Accept { .. })
    }
}

/// [`HaReplay`]'s state as the home agent saves it across a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HaReplayState {
    pub method: ReplayMethod,
    /// The highest timestamp accepted (§5.7.1).
    pub last_accepted: Option<u64>,
    /// The nonce handed out last (§5.7.2).
    pub issued_nonce: Option<u32>,
}

/// The home agent's replay state for one mobile node.
#[derive(Debug, Clone)]
pub struct HaReplay {
    method: ReplayMethod,
    tolerance: Duration,
    /// Highest timestamp accepted so far (§5.7.1: each must be newer).
    last_accepted: Option<u64>,
    /// The nonce handed to the MN in the last reply (§5.7.2).
    issued_nonce: Option<u32>,
}

impl HaReplay {
    pub fn new(method: ReplayMethod, tolerance: Duration) -> Self {
        HaReplay {
            method,
            tolerance,
            last_accepted: None,
            issued_nonce: None,
        }
    }

    /// What must outlive the daemon process (RFC 5944 §5.7: a restarted
    /// home agent must not accept an Identification it accepted before).
    pub fn state(&self) -> HaReplayState {
        HaReplayState {
            method: self.method,
            last_accepted: self.last_accepted,
            issued_nonce: self.issued_nonce,
        }
    }

    /// Takes up a saved state; refused (`false`, nothing changed) when it
    /// was kept under another method.
    pub fn restore(&mut self, s: &HaReplayState) -> bool {
        if s.method != self.method {
            return false;
        }
        self.last_accepted = s.last_accepted;
        self.issued_nonce = s.issued_nonce;
        true
    }

    /// Checks a request's Identification (call only after the request
    /// authenticated). `now` is the HA's time of day; `rng` draws the next
    /// nonce in nonce mode.
    pub fn check(
        &mut self,
        identification: u64,
        now: NtpTimestamp,
        rng: &mut dyn RngCore,
    ) -> ReplayVerdict {
        match self.method {
            ReplayMethod::Timestamp => {
                let in_window = NtpTimestamp(identification).distance(now) <= self.tolerance;
                // §5.7.1: newer than every accepted one, across the 2036
                // era boundary too.
                let newer = self
                    .last_accepted
                    .is_none_or(|last| NtpTimestamp(identification).is_after(NtpTimestamp(last)));
                if in_window && newer {
                    self.last_accepted = Some(identification);
                    // §5.7.1: an accepted Identification is copied whole.
                    ReplayVerdict::Accept {
                        reply_identification: identification,
                    }
                } else {
                    // §5.7.1: copy the MN's low-order 32 bits and supply the
                    // high-order 32 bits from the HA's own time of day.
                    ReplayVerdict::Mismatch {
                        reply_identification: join(now.seconds(), mn_half(identification)),
                    }
                }
            }
            ReplayMethod::Nonce => {
                let expected = self.issued_nonce;
                let next = rng.next_u32();
                self.issued_nonce = Some(next);
                let reply_identification = join(next, mn_half(identification));
                if expected == Some(ha_half(identification)) {
                    ReplayVerdict::Accept {
                        reply_identification,
                    }
                } else {
                    // §5.7.2: the MN did not echo our nonce (first contact or
                    // a replay): deny with 133 and hand out a new nonce.
                    ReplayVerdict::Mismatch {
                        reply_identification,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn ntp_conversion_from_unix_epoch() {
        let t = NtpTimestamp::from_unix(Duration::new(0, 500_000_000));
        assert_eq!(t.seconds() as u64, NTP_UNIX_OFFSET);
        assert_eq!(t.fraction(), 1 << 31);
        let sys = NtpTimestamp::from_system_time(UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(sys.seconds() as u64, NTP_UNIX_OFFSET + 10);
    }

    #[test]
    fn distance_and_offsets_wrap_like_ntp() {
        let a = NtpTimestamp::new(u32::MAX, 0);
        let b = a.offset_by(3);
        assert_eq!(b.seconds(), 2);
        assert_eq!(b.seconds_since(a), 3);
        assert_eq!(a.seconds_since(b), -3);
        assert_eq!(a.distance(b), Duration::from_secs(3));
        assert_eq!(
            NtpTimestamp::new(5, 1 << 31).distance(NtpTimestamp::new(5, 0)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn mn_timestamps_strictly_increase_within_one_second() {
        let mut mn = MnReplay::new(ReplayMethod::Timestamp);
        let mut r = rng();
        let now = NtpTimestamp::new(3_900_000_000, 0);
        let mut prev = 0;
        for _ in 0..100 {
            let id = mn.next_identification(now, &mut r);
            assert!(id > prev);
            assert!(NtpTimestamp(id).distance(now) < Duration::from_secs(1));
            prev = id;
        }
    }

    #[test]
    fn a_restarted_mn_outbids_its_previous_self_within_the_same_second() {
        // mip4d restarted 40 ms later: fresh state, same second. The HA
        // accepts only timestamps greater than the last accepted (§5.7.1).
        let mut r = rng();
        let before = NtpTimestamp::new(3_900_000_000, 0x1000_0000);
        let after = before.plus(Duration::from_millis(40));
        for _ in 0..100 {
            let old = MnReplay::new(ReplayMethod::Timestamp).next_identification(before, &mut r);
            let new = MnReplay::new(ReplayMethod::Timestamp).next_identification(after, &mut r);
            assert!(new > old, "{new:#x} <= {old:#x}");
        }
    }

    #[test]
    fn ha_accepts_fresh_timestamp_and_rejects_replay() {
        let mut ha = HaReplay::new(ReplayMethod::Timestamp, DEFAULT_TOLERANCE);
        let mut mn = MnReplay::new(ReplayMethod::Timestamp);
        let mut r = rng();
        let now = NtpTimestamp::new(3_900_000_000, 0);
        let id = mn.next_identification(now, &mut r);
        let v = ha.check(id, now, &mut r);
        assert_eq!(
            v,
            ReplayVerdict::Accept {
                reply_identification: id
            }
        );
        // The same request again is a replay.
        let v = ha.check(id, now, &mut r);
        assert!(!v.is_accepted());
        assert_eq!(mn_half(v.reply_identification()), mn_half(id));
    }

    #[test]
    fn ha_window_edges() {
        let mut r = rng();
        let now = NtpTimestamp::new(3_900_000_000, 0);
        for (skew, ok) in [(7i64, true), (-7, true), (8, false), (-8, false)] {
            let mut ha = HaReplay::new(ReplayMethod::Timestamp, DEFAULT_TOLERANCE);
            let id = now.offset_by(skew).0;
            assert_eq!(ha.check(id, now, &mut r).is_accepted(), ok, "skew {skew}");
        }
    }

    #[test]
    fn timestamps_keep_increasing_across_the_2036_era_boundary() {
        // RFC 5905 era 0 ends at 2036-02-07 06:28:16 UTC: seconds wrap.
        let mut r = rng();
        let before = NtpTimestamp::new(u32::MAX, 0x8000_0000);
        let after = before.plus(Duration::from_secs(2));
        assert_eq!(after.seconds(), 1);
        assert!(after.is_after(before) && !before.is_after(after));
        let mut ha = HaReplay::new(ReplayMethod::Timestamp, DEFAULT_TOLERANCE);
        let mut mn = MnReplay::new(ReplayMethod::Timestamp);
        let id = mn.next_identification(before, &mut r);
        assert!(ha.check(id, before, &mut r).is_accepted());
        // Two seconds later, in era 1: newer, accepted.
        let id2 = mn.next_identification(after, &mut r);
        assert!(NtpTimestamp(id2).is_after(NtpTimestamp(id)));
        assert!(ha.check(id2, after, &mut r).is_accepted());
        // The era-0 request again is a replay, not "newer".
        assert!(!ha.check(id, after, &mut r).is_accepted());
        // Within one second of the wrap the MN still steps forward.
        let edge = NtpTimestamp::new(u32::MAX, u32::MAX - 10);
        let mut mn = MnReplay::new(ReplayMethod::Timestamp);
        let a = mn.next_identification(edge, &mut r);
        let b = mn.next_identification(edge.plus(Duration::from_micros(1)), &mut r);
        assert!(NtpTimestamp(b).is_after(NtpTimestamp(a)), "{a:#x} {b:#x}");
    }

    #[test]
    fn clock_skew_resynchronises_on_133() {
        let mut r = rng();
        let ha_now = NtpTimestamp::new(3_900_000_100, 0);
        let mn_now = NtpTimestamp::new(3_900_000_000, 0); // MN is 100 s late
        let mut ha = HaReplay::new(ReplayMethod::Timestamp, DEFAULT_TOLERANCE);
        let mut mn = MnReplay::new(ReplayMethod::Timestamp);

        let id = mn.next_identification(mn_now, &mut r);
        let v = ha.check(id, ha_now, &mut r);
        assert!(!v.is_accepted());
        let off = mn.on_authenticated_reply(v.reply_identification(), true, mn_now);
        assert_eq!(off, Some(100));

        let id = mn.next_identification(mn_now, &mut r);
        assert!(ha.check(id, ha_now, &mut r).is_accepted());
    }

    #[test]
    fn nonce_first_request_fails_then_succeeds_with_ha_nonce() {
        let mut r = rng();
        let now = NtpTimestamp::default();
        let mut ha = HaReplay::new(ReplayMethod::Nonce, DEFAULT_TOLERANCE);
        let mut mn = MnReplay::new(ReplayMethod::Nonce);

        let id1 = mn.next_identification(now, &mut r);
        let v = ha.check(id1, now, &mut r);
        assert!(!v.is_accepted());
        assert_eq!(mn_half(v.reply_identification()), mn_half(id1));
        mn.on_authenticated_reply(v.reply_identification(), true, now);

        let id2 = mn.next_identification(now, &mut r);
        assert_eq!(ha_half(id2), ha_half(v.reply_identification()));
        let v2 = ha.check(id2, now, &mut r);
        assert!(v2.is_accepted());
        // The accepted reply carries a new nonce for the next request.
        assert_ne!(ha_half(v2.reply_identification()), ha_half(id2));
        assert_eq!(mn_half(v2.reply_identification()), mn_half(id2));

        // Replaying the accepted request fails: its nonce is spent.
        assert!(!ha.check(id2, now, &mut r).is_accepted());
    }
}
