//! The visitor list (RFC 5944 §3.7.1): per mobile node, what the foreign
//! agent must remember to relay its reply, deliver its datagrams and tunnel
//! its traffic back. An entry is first *pending* (request relayed, reply
//! awaited) and becomes *accepted* when the home agent accepts.
//!
//! Entries are keyed by home address and link-layer address together: the
//! home address alone could be claimed by another node on the link.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Link-layer (Ethernet) address.
pub type Mac = [u8; 6];

/// Key of a visitor list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VisitorKey {
    pub home_address: Ipv4Addr,
    pub mac: Mac,
}

/// What RFC 5944 §3.7.1 lists for each pending or current registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor {
    /// Index of the served interface the node is on.
    pub interface: usize,
    /// Link-layer source address of the request.
    pub mac: Mac,
    /// IP source address of the request (its home address) and UDP port.
    pub source: SocketAddrV4,
    /// The address the node sent the request to (source of our reply).
    pub local: Ipv4Addr,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub identification: u64,
    /// Lifetime requested (seconds).
    pub requested_lifetime: u16,
    /// Lifetime granted by the HA (seconds), once accepted.
    pub lifetime: u16,
    /// 'T' bit: reverse tunnel to the HA (RFC 3024).
    pub reverse_tunnel: bool,
    pub nai: Option<Vec<u8>>,
    /// Pending: when the relayed request times out (78). Accepted: when
    /// the registration expires.
    pub deadline: Instant,
}

impl Visitor {
    pub fn key(&self) -> VisitorKey {
        VisitorKey {
            home_address: self.home_address,
            mac: self.mac,
        }
    }
}

/// A visitor as `mip4ctl visitors` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorInfo {
    pub state: String,
    pub interface: String,
    pub mac: String,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub source: String,
    pub lifetime: u16,
    /// Seconds left (accepted) or until timeout (pending).
    pub remaining: u64,
    pub reverse_tunnel: bool,
    pub nai: Option<String>,
}

pub fn mac_string(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Seconds from `now` to `t`, rounded up, 0 if past.
pub fn remaining(now: Instant, t: Instant) -> u64 {
    let d = t.saturating_duration_since(now);
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A lifetime in seconds as a duration (0xffff is infinity on the wire;
/// a year stands in for it, the HA never grants it by default).
pub fn lifetime_duration(s: u16) -> Duration {
    if s == u16::MAX {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        Duration::from_secs(s.into())
    }
}
