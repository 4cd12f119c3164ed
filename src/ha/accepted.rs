//! What the agent's replay check (RFC 5944 §5.7.1, timestamps) accepted
//! last, per mobile node, shared with the [`Screen`](super::Screen) at the
//! socket so that a flood of replayed, correctly signed requests is
//! settled there instead of queued in front of the node's own.
//!
//! The agent's loop is the only writer and stays the authority; the
//! screen reads in the socket's reader, without a lock: one slot of two
//! atomics per node, in a board the agent makes on each (re)build of its
//! nodes and the screen takes on its own reload (24 bytes per node).
//!
//! The screen drops only what the agent would certainly deny with 133:
//! an Identification not newer than the last one it accepted (§5.7.1: it
//! accepts a timestamp only "greater than" every one accepted before), and
//! of those it lets one a second per node through. A replay is such a
//! request (a copy of one the node signed; §3.6.3 has the node choose a
//! new Identification for every timestamp request, retransmissions
//! included, so the node itself never repeats one); but so is the node's
//! own request after its clock stepped back, or after a restart that lost
//! the offset it had learned, and only the agent's 133 (carrying its time
//! of day, §5.7.1) puts that right. One a second keeps that, and the 133
//! a lone replay gets, while a replay flood costs the agent no more.
//!
//! Nonces (§5.7.2) are never screened: §3.6.3 retransmits a nonce request
//! unchanged, and only the agent's 133 hands out the next nonce.
//!
//! A slot read a moment late (the agent accepted a newer one meanwhile)
//! lets a replay through to the agent, which denies it: never the other
//! way round, since what the agent accepted only grows (a reload or a
//! restore that changes it rebuilds or republishes the slot).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::replay::NtpTimestamp;

/// How often a not newer Identification may reach the agent, per node:
/// one second, in NTP units (2^-32 s).
const OLDER_EVERY: u64 = 1 << 32;

/// What the screen does with an authenticated timestamp request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Newer than the last accepted (or none yet): the agent's to take.
    Pass,
    /// Not newer, the first this second: the agent answers 133.
    PassNotNewer,
    /// Not newer, beyond one a second: dropped.
    Replayed,
}

/// One node's slot.
#[derive(Debug, Default)]
pub struct Slot {
    /// The node's SPI, so that a screen with a configuration other than
    /// the agent's (between their reloads) never reads another's slot.
    spi: u32,
    /// The last accepted Identification (0: none; no timestamp of 1900 is
    /// ever within the agent's tolerance).
    last: AtomicU64,
    /// When (the agent's time of day, NTP) a not newer one last passed.
    not_newer_passed: AtomicU64,
}

impl Slot {
    /// The agent: its highest accepted Identification now (None: none).
    pub fn publish(&self, last: Option<u64>) {
        self.last.store(last.unwrap_or(0), Ordering::Release);
    }

    /// The screen: a request of this node with Identification `id`, at
    /// the agent's time of day `now`.
    pub fn check(&self, id: u64, now: NtpTimestamp) -> Fresh {
        let last = self.last.load(Ordering::Acquire);
        if last == 0 || NtpTimestamp(id).is_after(NtpTimestamp(last)) {
            return Fresh::Pass;
        }
        let passed = self.not_newer_passed.load(Ordering::Acquire);
        let since = now.0.wrapping_sub(passed) as i64;
        // A clock that stepped back counts as a second gone by.
        let due = passed == 0 || since >= OLDER_EVERY as i64 || since < 0;
        // Of several readers seeing it due at once, one passes it.
        if due
            && self
                .not_newer_passed
                .compare_exchange(passed, now.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Fresh::PassNotNewer;
        }
        Fresh::Replayed
    }
}

/// The slots of the agent's nodes, by their index there.
#[derive(Debug, Clone, Default)]
pub struct ReplayBoard {
    /// Names the agent's configuration this board was made with: unique
    /// in the process, 0 for none (the default board, before the agent
    /// gave one). The screen's word that a request verified holds for
    /// the agent only under the same board ([`super::screen::Verified`]).
    id: u64,
    slots: Arc<[Slot]>,
}

/// The next board's id.
static NEXT_BOARD: AtomicU64 = AtomicU64::new(1);

impl ReplayBoard {
    /// One slot per SPI of `spis`, in the agent's order.
    pub fn new(spis: impl IntoIterator<Item = u32>) -> Self {
        ReplayBoard {
            id: NEXT_BOARD.fetch_add(1, Ordering::Relaxed),
            slots: spis
                .into_iter()
                .map(|spi| Slot {
                    spi,
                    ..Slot::default()
                })
                .collect(),
        }
    }

    /// The slot at `index`, if it is `spi`'s.
    pub fn slot(&self, index: usize, spi: u32) -> Option<&Slot> {
        self.slots.get(index).filter(|s| s.spi == spi)
    }

    /// Starts loading the slot at `index` ([`crate::sys::prefetch`]).
    pub fn prefetch(&self, index: usize) {
        if let Some(s) = self.slots.get(index) {
            crate::sys::prefetch::lines(s);
        }
    }

    /// Which configuration of the agent's this board is (0: none).
    pub fn id(&self) -> u64 {
        self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL: u32 = 3_900_000_000;

    fn at(secs: u32, frac: u32) -> NtpTimestamp {
        NtpTimestamp::new(WALL + secs, frac)
    }

    fn id(secs: u32, frac: u32) -> u64 {
        at(secs, frac).0
    }

    fn slot(last: Option<u64>) -> Slot {
        let s = Slot::default();
        s.publish(last);
        s
    }

    #[test]
    fn nothing_accepted_everything_passes() {
        let s = slot(None);
        assert_eq!(s.check(id(0, 5), at(0, 0)), Fresh::Pass);
        assert_eq!(s.check(0, at(0, 0)), Fresh::Pass);
    }

    #[test]
    fn newer_passes_not_newer_once_a_second_for_the_133_a_node_may_need() {
        let s = slot(Some(id(10, 500)));
        assert_eq!(s.check(id(10, 501), at(10, 0)), Fresh::Pass);
        assert_eq!(s.check(id(15, 0), at(15, 0)), Fresh::Pass);
        // A copy of the last accepted: the first gets its 133, the rest
        // of that second end at the screen.
        assert_eq!(s.check(id(10, 500), at(10, 0)), Fresh::PassNotNewer);
        assert_eq!(s.check(id(10, 500), at(10, 1 << 31)), Fresh::Replayed);
        // Older ones share the same second.
        assert_eq!(s.check(id(3, 0), at(10, u32::MAX)), Fresh::Replayed);
        assert_eq!(s.check(id(9, 0), at(11, 0)), Fresh::PassNotNewer);
        assert_eq!(s.check(id(10, 500), at(11, 7)), Fresh::Replayed);
        // The agent's clock stepped back: not held for ever.
        assert_eq!(s.check(id(9, 0), at(2, 0)), Fresh::PassNotNewer);
    }

    #[test]
    fn the_board_gives_a_slot_only_to_its_own_spi() {
        let b = ReplayBoard::new([257, 258]);
        assert!(b.slot(0, 257).is_some());
        assert!(b.slot(1, 257).is_none(), "another node's slot");
        assert!(b.slot(2, 259).is_none());
        b.slot(1, 258).unwrap().publish(Some(id(0, 1)));
        let s = b.slot(1, 258).unwrap();
        assert_eq!(s.check(id(0, 1), at(0, 0)), Fresh::PassNotNewer);
        assert_eq!(s.check(id(0, 1), at(0, 0)), Fresh::Replayed);
        assert_eq!(
            b.slot(0, 257).unwrap().check(id(0, 1), at(0, 0)),
            Fresh::Pass
        );
    }
}
