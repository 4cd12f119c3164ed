//! What the HA did with what it received: an operator's first look when a
//! mobile node cannot register, and the proof that bad input was refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Registration Requests received (well formed enough to be one).
    pub requests: u64,
    /// Registrations accepted (codes 0 and 1), deregistrations included.
    pub accepted: u64,
    /// Accepted deregistrations (lifetime 0 or care-of = home address).
    pub deregistered: u64,
    /// Bindings removed because their lifetime ran out.
    pub expired: u64,
    /// Denials by reply code.
    pub denied: BTreeMap<u8, u64>,
    /// Datagrams that were not a parseable request (dropped, no reply).
    pub dropped_malformed: u64,
    /// Requests that failed MN-HA authentication: missing extension,
    /// unknown SPI, SPI of another node, or a bad authenticator.
    pub unauthenticated: u64,
    /// Authenticated requests whose Identification failed the replay
    /// check (denied with 133).
    pub replayed: u64,
    /// RFC 3519 tunnel data from an address with no UDP binding.
    pub tunnel_data_dropped: u64,
    /// Requests dropped silently because their source address is on no
    /// configured trusted network (RFC 5265 §4.3). `default` keeps
    /// mip4ctl able to read a daemon that predates the counter.
    #[serde(default)]
    pub dropped_untrusted_source: u64,
    /// Replies that carried the Trusted Networks Configured extension.
    #[serde(default)]
    pub tnc_replies: u64,
    /// Authenticated requests naming a home address that is not the
    /// node's own (denied with 131; the owner's binding untouched).
    #[serde(default)]
    pub home_address_not_owned: u64,
    /// Requests whose SPI names no security association: dropped without
    /// a reply (the source may be spoofed, and nothing can sign one).
    #[serde(default)]
    pub unknown_spi: u64,
    /// Unauthenticated input over the per-source or total rate: its log
    /// line and, for a 131, its reply were suppressed (each is also
    /// counted under its own counter above).
    #[serde(default)]
    pub rate_limited: u64,
    /// Accepted registrations whose tunnel or route the daemon could not
    /// install: denied with 130 and the binding dropped.
    #[serde(default)]
    pub install_failed: u64,
    /// IPv6 Prefix Requests granted (RFC 5454 §3.2, codes 0 and 1).
    #[serde(default)]
    pub ipv6_prefixes_accepted: u64,
    /// IPv6 Prefix Requests refused (codes 8 and 9; the IPv4 binding kept).
    #[serde(default)]
    pub ipv6_prefixes_refused: u64,
    /// Registrations that passed the screen at the socket but found the
    /// agent's queue full (issue 13 item 9).
    #[serde(default)]
    pub queue_full: u64,
    /// Datagrams the kernel dropped at UDP 434 before mip4-ha read them
    /// (its receive buffer full): the socket's own drop count, read by
    /// the daemon when asked (SO_MEMINFO; `/proc/net/udp`'s `drops`).
    /// Each lost request costs its node a retransmission (RFC 5944
    /// §3.6.3); this says that it happened here, not on the way.
    #[serde(default)]
    pub socket_dropped: u64,
}

impl Counters {
    pub fn deny(&mut self, code: u8) {
        *self.denied.entry(code).or_default() += 1;
    }

    /// Adds `other`'s counts (what the screen at the socket dropped, to
    /// what the agent did).
    pub fn add(&mut self, other: &Counters) {
        let Counters {
            requests,
            accepted,
            deregistered,
            expired,
            denied,
            dropped_malformed,
            unauthenticated,
            replayed,
            tunnel_data_dropped,
            dropped_untrusted_source,
            tnc_replies,
            home_address_not_owned,
            unknown_spi,
            rate_limited,
            install_failed,
            ipv6_prefixes_accepted,
            ipv6_prefixes_refused,
            queue_full,
            socket_dropped,
        } = other;
        self.requests += requests;
        self.accepted += accepted;
        self.deregistered += deregistered;
        self.expired += expired;
        for (code, n) in denied {
            *self.denied.entry(*code).or_default() += n;
        }
        self.dropped_malformed += dropped_malformed;
        self.unauthenticated += unauthenticated;
        self.replayed += replayed;
        self.tunnel_data_dropped += tunnel_data_dropped;
        self.dropped_untrusted_source += dropped_untrusted_source;
        self.tnc_replies += tnc_replies;
        self.home_address_not_owned += home_address_not_owned;
        self.unknown_spi += unknown_spi;
        self.rate_limited += rate_limited;
        self.install_failed += install_failed;
        self.ipv6_prefixes_accepted += ipv6_prefixes_accepted;
        self.ipv6_prefixes_refused += ipv6_prefixes_refused;
        self.queue_full += queue_full;
        self.socket_dropped += socket_dropped;
    }

    pub fn denied(&self, code: u8) -> u64 {
        self.denied.get(&code).copied().unwrap_or(0)
    }
}
