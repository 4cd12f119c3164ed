//! Timestamped events for `mip4ctl events --json` and the lab.
//!
//! Every record carries two clocks: `mono_ns`, CLOCK_MONOTONIC in
//! nanoseconds (shared by every process and network namespace on the
//! machine, so the lab can subtract one daemon's timestamps from
//! another's), and `wall_ns`, nanoseconds since the Unix epoch, for
//! humans and logs. The node stamps each event with the `Instant` it was
//! given; [`Clock`] maps that onto both clocks from one reading taken at
//! start, so the figure is when the daemon handled the input, not when
//! the record was written.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::mn::node::NodeEvent;

/// One reading of the three clocks at the same moment.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    mono_ns: u64,
    wall_ns: u64,
}

/// CLOCK_MONOTONIC now, in nanoseconds. std's `Instant` is the same
/// clock on Linux but opaque, hence the clock itself.
pub fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC exists on every Linux: the call cannot fail.
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|ts| ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
        .unwrap_or(0)
}

impl Clock {
    pub fn now() -> Self {
        // CLOCK_MONOTONIC first: a stamp is then never later than the
        // clock itself (the two reads are microseconds apart).
        let mono_ns = monotonic_ns();
        let instant = Instant::now();
        let wall_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock {
            instant,
            mono_ns,
            wall_ns,
        }
    }

    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The wall clock at [`Clock::instant`]: the pair the node maps its
    /// instants to time of day with (RFC 5944 §5.7.1 timestamps). A wall
    /// reading taken later, after start-up's netlink and data-plane work,
    /// would put every timestamp ahead by that work's time: seconds on a
    /// stalled machine, out of the home agent's 7 s window.
    pub fn wall(&self) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_nanos(self.wall_ns)
    }

    /// `at` on the monotonic and wall clocks.
    pub fn stamp(&self, at: Instant) -> (u64, u64) {
        let (mono, wall) = match at.checked_duration_since(self.instant) {
            Some(d) => (
                self.mono_ns + d.as_nanos() as u64,
                self.wall_ns + d.as_nanos() as u64,
            ),
            None => {
                let d = self.instant.duration_since(at).as_nanos() as u64;
                (self.mono_ns - d, self.wall_ns - d)
            }
        };
        (mono, wall)
    }
}

/// What `mip4ctl events --json` prints, one per line.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub mono_ns: u64,
    pub wall_ns: u64,
    #[serde(flatten)]
    pub event: NodeEvent,
}

/// Fan-out of event records to every subscriber. A subscriber that falls
/// behind loses the oldest records and is told how many (a `lagged`
/// line), never blocks the daemon.
#[derive(Debug, Clone)]
pub struct EventBus {
    clock: Clock,
    tx: broadcast::Sender<String>,
}

impl EventBus {
    pub fn new(clock: Clock) -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventBus { clock, tx }
    }

    pub fn publish(&self, at: Instant, event: NodeEvent) {
        let (mono_ns, wall_ns) = self.clock.stamp(at);
        let rec = EventRecord {
            mono_ns,
            wall_ns,
            event,
        };
        if let Ok(line) = serde_json::to_string(&rec) {
            // No subscriber is not an error.
            let _ = self.tx.send(line);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }

    /// The sending side, for the control socket's `events` subscriptions.
    pub fn subscriptions(&self) -> broadcast::Sender<String> {
        self.tx.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_follow_the_instant_on_both_clocks() {
        let c = Clock::now();
        let (m0, w0) = c.stamp(c.instant());
        let (m1, w1) = c.stamp(c.instant() + Duration::from_millis(1500));
        assert_eq!(m1 - m0, 1_500_000_000);
        assert_eq!(w1 - w0, 1_500_000_000);
        // The monotonic stamp is the machine's CLOCK_MONOTONIC.
        let (m_now, _) = c.stamp(Instant::now());
        let direct = monotonic_ns();
        assert!(direct >= m_now && direct - m_now < 1_000_000_000);
    }

    #[test]
    fn the_wall_clock_is_read_at_the_instant() {
        // The node maps instants to time of day from this pair: a wall
        // time read later would run every timestamp ahead (the kernel
        // tier's 133 after a restart, RFC 5944 §5.7.1).
        let c = Clock::now();
        let (_, w) = c.stamp(c.instant());
        let wall = c.wall().duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(wall.as_nanos() as u64, w);
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(wall <= after && after - wall < Duration::from_secs(1));
    }

    #[test]
    fn records_are_flat_json_lines() {
        let bus = EventBus::new(Clock::now());
        let mut rx = bus.subscribe();
        bus.publish(
            Instant::now(),
            NodeEvent::LinkDown {
                ifname: "eth0".into(),
            },
        );
        let line = rx.try_recv().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["event"], "link_down");
        assert_eq!(v["ifname"], "eth0");
        assert!(v["mono_ns"].as_u64().unwrap() > 0);
        assert!(v["wall_ns"].as_u64().unwrap() > 1_600_000_000_000_000_000);
    }
}
