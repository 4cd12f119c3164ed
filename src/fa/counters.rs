//! What the FA did with what it received: the operator's first look when
//! a visitor cannot register, and the proof that bad input was refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Registration Requests received from mobile nodes on served links.
    pub requests: u64,
    /// Requests relayed to a home agent.
    pub relayed: u64,
    /// Replies from home agents matched to a pending request.
    pub replies: u64,
    /// Accepted registrations relayed to the mobile node.
    pub accepted: u64,
    /// Accepted deregistrations (visitor removed).
    pub deregistered: u64,
    /// Home agent denials relayed to the mobile node.
    pub denied_by_home_agent: u64,
    /// FA denials (RFC 5944 §3.4 codes 64-127) by code.
    pub denied: BTreeMap<u8, u64>,
    /// Visitors removed because their lifetime ran out.
    pub expired: u64,
    /// Pending requests that got no reply in time (78).
    pub timeouts: u64,
    /// Datagrams too malformed to answer (dropped, no reply).
    pub dropped_malformed: u64,
    /// Replies matching no pending request, or from the wrong address.
    pub dropped_unmatched_reply: u64,
    /// Agent Advertisements sent.
    pub advertisements: u64,
    /// Agent Solicitations received.
    pub solicitations: u64,
    /// ICMP errors about relayed requests (80, 81, 82, 88).
    pub icmp_errors: u64,
    /// New requests refused (66) because their link-layer address
    /// already had `max_pending_per_mac` pending. `default` keeps mip4ctl
    /// able to read a daemon that predates the counter.
    #[serde(default)]
    pub pending_per_mac_refused: u64,
    /// Log lines about unmatched replies (anyone can send one) suppressed
    /// by the per-source and total rate limits.
    #[serde(default)]
    pub rate_limited: u64,
}

impl Counters {
    pub fn deny(&mut self, code: u8) {
        *self.denied.entry(code).or_default() += 1;
    }
    pub fn denied(&self, code: u8) -> u64 {
        self.denied.get(&code).copied().unwrap_or(0)
    }
}
