//! What the client hands out: datagrams, outcomes and counters.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::replay::ReplayMethod;
use crate::wire::ReplyCode;

/// Why a request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new registration (first one, or after a move).
    Register,
    /// Renewal of a binding before its lifetime ends.
    Renew,
    /// Lifetime 0 for the current care-of address.
    Deregister,
    /// Back on the home link: care-of address = home address, lifetime 0,
    /// removing every binding (§3.6.1.1).
    DeregisterAtHome,
}

impl Purpose {
    pub(super) fn is_deregistration(self) -> bool {
        matches!(self, Purpose::Deregister | Purpose::DeregisterAtHome)
    }
}

/// Which agent denied a registration (RFC 5944 §3.4 code ranges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ForeignAgent,
    HomeAgent,
}

/// A datagram to send to UDP port 434, with what the client did: the
/// caller reports it without parsing the request again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: SocketAddrV4,
    /// Source address to bind: the co-located care-of address, or the
    /// home address when registering via a foreign agent or from home
    /// (§3.6.1.1). `None` lets the routing table choose.
    pub src: Option<Ipv4Addr>,
    pub payload: Vec<u8>,
    /// Why the request was sent.
    pub purpose: Purpose,
    /// The request's care-of address (the home address from home).
    pub care_of_address: Ipv4Addr,
    /// The request's Identification (§5.7).
    pub identification: u64,
    /// A repeat of an unanswered request on the §3.6.3 backoff (with
    /// timestamps under a new Identification); a corrected request after
    /// a denial (133, 136, 69, 75/138) starts a fresh exchange and is not.
    pub retransmission: bool,
}

/// The current mobility binding as the home agent granted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Granted lifetime (never more than requested).
    pub lifetime: Duration,
    /// When it ends, counted from when the request was sent; `None` for
    /// an infinite lifetime.
    pub expires: Option<Instant>,
    /// RFC 3519 §3.2: the home agent will tunnel in UDP (its authenticated
    /// UDP Tunnel Reply said "will do"); the keepalive interval it gave, in
    /// seconds (0: the mobile node's default, §3.2).
    pub udp_keepalive: Option<u16>,
    /// The IPv6 part (RFC 5454), when the request asked for a prefix.
    pub ipv6: Ipv6Outcome,
}

/// What became of an IPv6 Prefix Request (RFC 5454), as the reply's
/// authenticated extensions say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Outcome {
    /// The request carried no IPv6 Prefix Request.
    NotRequested,
    /// RFC 5454 §3.5: no IPv6 Prefix Reply came back: the home agent does
    /// not support the extension and skipped it. The binding is IPv4
    /// only.
    Ignored,
    /// §2.2 codes 0 and 1: the prefix, and where its IPv6 is tunnelled.
    Granted(crate::dataplane::binding::Ipv6Binding),
    /// §2.2 codes 8, 9 (or any other): refused, the IPv4 binding stands.
    Refused { code: u8 },
}

/// What happened, for the daemon and the operator's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The home agent accepted: the binding is in place.
    Registered {
        binding: Binding,
        code: ReplyCode,
        renewal: bool,
        /// The reply carried the Trusted Networks Configured extension
        /// inside its MN-HA authenticated part (RFC 5265 §4.1); anything
        /// after the authenticator is never believed (§3.6.1.3).
        tnc: bool,
    },
    /// A deregistration was accepted (or the home agent granted 0 s).
    Deregistered { care_of_address: Ipv4Addr },
    /// A registration was denied. `authenticated` is false only for a
    /// foreign-agent denial that could not be authenticated (no MN-FA
    /// association, §3.6.2.1); such a denial never changes a binding.
    Denied {
        code: ReplyCode,
        by: Agent,
        purpose: Purpose,
        authenticated: bool,
    },
    /// No acceptable reply after every retransmission.
    Failed { purpose: Purpose, attempts: u32 },
    /// A 133 reply resynchronised replay protection: with timestamps the
    /// clock offset towards the home agent (seconds) was adjusted, with
    /// nonces the HA's nonce was learnt.
    ReplayResync {
        method: ReplayMethod,
        clock_offset: i64,
    },
    /// The home agent told us its unicast address (code 136).
    HomeAgentChanged { from: Ipv4Addr, to: Ipv4Addr },
    /// The binding's lifetime ran out before a renewal succeeded.
    Expired { binding: Binding },
}

/// Counters, for `mip4ctl status`. Every dropped datagram lands in
/// exactly one `dropped_*` counter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub requests_sent: u64,
    pub retransmissions: u64,
    pub replies_received: u64,
    pub replies_processed: u64,
    /// Not a Registration Reply the codec can parse (including unknown
    /// non-skippable extensions, RFC 5944 §1.9).
    pub dropped_malformed: u64,
    /// Identification matches no request we remember: forged or stray.
    pub dropped_unmatched: u64,
    /// Answers an earlier, superseded request.
    pub dropped_late: u64,
    /// Answers a request already answered.
    pub dropped_duplicate: u64,
    /// Identification matched, home address (or NAI) did not.
    pub dropped_wrong_home_address: u64,
    /// Missing or failing MN-HA (or MN-FA) authentication.
    pub dropped_unauthenticated: u64,
    pub registrations: u64,
    pub deregistrations: u64,
    pub denials: u64,
    pub failures: u64,
    pub resyncs: u64,
}
