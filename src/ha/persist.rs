//! The binding cache and the replay state as a record that outlives the
//! daemon process (issue 13): a restarted home agent that forgot its
//! bindings leaves every home address unreachable until the node's next
//! renewal, since nothing in RFC 5944 tells a mobile node that its home
//! agent restarted. Sans-IO like the rest of the core: the daemon stores
//! and reads the record ([`crate::daemons::ha`]), the core exports and
//! restores it, and decides what of it still holds.
//!
//! Lifetimes are kept as wall-clock expiry: a monotonic instant means
//! nothing to the next process.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::binding::{Binding, Ipv6Binding, TunnelMode};
use crate::replay::HaReplayState;
use crate::wire::Flags;

/// Everything the core keeps across a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedCache {
    pub bindings: Vec<SavedBinding>,
    pub nodes: Vec<SavedNode>,
}

/// One mobility binding (RFC 5944 §3.8.1) as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedBinding {
    pub home_address: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    pub source: SocketAddrV4,
    /// Granted lifetime, seconds.
    pub lifetime: u16,
    /// When the lifetime runs out: milliseconds since the Unix epoch.
    pub expires_unix_ms: u64,
    pub identification: u64,
    /// The request's flags octet (S B D M G r T x).
    pub flags: u8,
    pub reverse_tunnel: bool,
    pub tunnel: TunnelMode,
    pub nai: Option<Vec<u8>>,
    pub spi: u32,
    /// The RFC 5454 prefix; absent in a record of an older daemon.
    #[serde(default)]
    pub ipv6: Option<Ipv6Binding>,
}

/// Per mobile node (by SPI): its replay state (RFC 5944 §5.7) and the
/// home address the pool gave it (RFC 2794).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedNode {
    pub spi: u32,
    pub replay: HaReplayState,
    pub assigned: Option<Ipv4Addr>,
}

/// What [`crate::ha::HomeAgent::restore`] made of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// Bindings back in the cache (their [`crate::ha::Output::BindingUp`]
    /// queued).
    pub bindings: Vec<Ipv4Addr>,
    /// Bindings whose lifetime ran out while the daemon was down.
    pub expired: Vec<Ipv4Addr>,
    /// Bindings the configuration no longer allows, and why.
    pub refused: Vec<(Ipv4Addr, &'static str)>,
    /// Nodes whose replay state was taken up.
    pub replay_states: usize,
}

fn unix_ms(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SavedBinding {
    /// `b` as saved at monotonic `now`, which is wall-clock `wall`.
    pub fn of(b: &Binding, now: Instant, wall: SystemTime) -> Self {
        let left = b.expires.saturating_duration_since(now);
        SavedBinding {
            home_address: b.home_address,
            care_of_address: b.care_of_address,
            source: b.source,
            lifetime: b.lifetime,
            expires_unix_ms: unix_ms(wall + left),
            identification: b.identification,
            flags: b.flags.0,
            reverse_tunnel: b.reverse_tunnel,
            tunnel: b.tunnel,
            nai: b.nai.as_deref().map(<[u8]>::to_vec),
            spi: b.spi,
            ipv6: b.ipv6,
        }
    }

    /// The binding again, at monotonic `now` and wall-clock `wall`; `None`
    /// when its lifetime has run out. What is left never exceeds the
    /// granted lifetime, so a clock stepped back cannot lengthen it.
    pub fn binding(&self, now: Instant, wall: SystemTime) -> Option<Binding> {
        let left = Duration::from_millis(self.expires_unix_ms.saturating_sub(unix_ms(wall)))
            .min(Duration::from_secs(u64::from(self.lifetime)));
        if left.is_zero() {
            return None;
        }
        Some(Binding {
            home_address: self.home_address,
            care_of_address: self.care_of_address,
            source: self.source,
            lifetime: self.lifetime,
            expires: now + left,
            identification: self.identification,
            flags: Flags(self.flags),
            reverse_tunnel: self.reverse_tunnel,
            tunnel: self.tunnel,
            nai: self.nai.clone().map(Vec::into_boxed_slice),
            spi: self.spi,
            ipv6: self.ipv6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(now: Instant, lifetime: u16, left: u64) -> Binding {
        Binding {
            home_address: Ipv4Addr::new(10, 1, 0, 10),
            care_of_address: Ipv4Addr::new(10, 10, 1, 5),
            source: SocketAddrV4::new(Ipv4Addr::new(10, 10, 1, 5), 434),
            lifetime,
            expires: now + Duration::from_secs(left),
            identification: 42,
            flags: Flags::T,
            reverse_tunnel: true,
            tunnel: TunnelMode::Ipip,
            nai: Some(b"mn1@example.com"[..].into()),
            spi: 256,
            ipv6: None,
        }
    }

    #[test]
    fn a_binding_keeps_its_remaining_lifetime_in_wall_clock_time() {
        let (now, wall) = (
            Instant::now(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let saved = SavedBinding::of(&binding(now, 120, 100), now, wall);
        assert_eq!(saved.expires_unix_ms, 1_700_000_100_000);
        // Restored 30 s later by another process (another monotonic clock).
        let later = Instant::now() + Duration::from_secs(5);
        let b = saved
            .binding(later, wall + Duration::from_secs(30))
            .expect("70 s left");
        assert_eq!(b.expires, later + Duration::from_secs(70));
        assert_eq!(
            (b.identification, b.flags, b.nai.as_deref()),
            (42, Flags::T, Some(&b"mn1@example.com"[..]))
        );
        // Past its expiry: gone.
        assert!(saved
            .binding(later, wall + Duration::from_secs(100))
            .is_none());
    }

    #[test]
    fn a_clock_stepped_back_never_lengthens_a_binding() {
        let (now, wall) = (
            Instant::now(),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let saved = SavedBinding::of(&binding(now, 120, 100), now, wall);
        let b = saved
            .binding(now, wall - Duration::from_secs(3600))
            .unwrap();
        assert_eq!(b.expires, now + Duration::from_secs(120));
    }
}
