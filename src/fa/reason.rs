//! Why the foreign agent denied a registration: one variant per rule,
//! its reply code beside it (RFC 5944 §3.4, codes 64-127) and the RFC
//! section in its text, so a log line and a counter name the same rule.

use std::fmt;

use crate::wire::ReplyCode;

/// An FA denial (RFC 5944 §3.7.2.3, §3.7.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The home agent did not answer within `registration_timeout`.
    RegistrationTimeout,
    ExtensionOverrun,
    UnknownExtension(u8),
    BadExtension(u8),
    MnFaAuthDoesNotVerify,
    MnFaAuthTooShort,
    MnFaAuthWithoutSa,
    MnFaAuthMissing,
    MnFaAuthRequired,
    LifetimeTooLong {
        requested: u16,
        max: u16,
    },
    CareOfNotOurs,
    EncapsulationUnavailable,
    ReverseTunnelUnavailable,
    ReverseTunnelMandatory,
    /// 'T' set but the request's TTL was not 255.
    TooDistant {
        ttl: u8,
    },
    DeliveryStyleWithoutT,
    DeliveryStyleUnsupported,
    MissingHomeAgent,
    MissingNai,
    HomeAgentNotAllowed,
    VisitorListFull {
        max: usize,
    },
    TooManyPending {
        pending: usize,
    },
    ReplyExtensionOverrun,
    ReplyBadExtension(u8),
    HaFailedAuth,
    /// ICMP destination unreachable, with its code, from the path to the
    /// home agent.
    Unreachable {
        icmp_code: u8,
    },
}

impl Denial {
    pub fn code(self) -> ReplyCode {
        use Denial::*;
        match self {
            RegistrationTimeout => ReplyCode::FA_REGISTRATION_TIMEOUT,
            ExtensionOverrun | UnknownExtension(_) | BadExtension(_) | DeliveryStyleWithoutT => {
                ReplyCode::FA_POORLY_FORMED_REQUEST
            }
            MnFaAuthDoesNotVerify
            | MnFaAuthTooShort
            | MnFaAuthWithoutSa
            | MnFaAuthMissing
            | MnFaAuthRequired => ReplyCode::FA_MN_FAILED_AUTH,
            LifetimeTooLong { .. } => ReplyCode::FA_LIFETIME_TOO_LONG,
            CareOfNotOurs => ReplyCode::FA_INVALID_CARE_OF_ADDRESS,
            EncapsulationUnavailable => ReplyCode::FA_ENCAPSULATION_UNAVAILABLE,
            ReverseTunnelUnavailable => ReplyCode::FA_REVERSE_TUNNEL_UNAVAILABLE,
            ReverseTunnelMandatory => ReplyCode::FA_REVERSE_TUNNEL_MANDATORY,
            TooDistant { .. } => ReplyCode::FA_MN_TOO_DISTANT,
            DeliveryStyleUnsupported => ReplyCode::FA_DELIVERY_STYLE_UNSUPPORTED,
            MissingHomeAgent => ReplyCode::FA_MISSING_HOME_AGENT,
            MissingNai => ReplyCode::FA_MISSING_NAI,
            HomeAgentNotAllowed => ReplyCode::FA_ADMIN_PROHIBITED,
            VisitorListFull { .. } | TooManyPending { .. } => ReplyCode::FA_INSUFFICIENT_RESOURCES,
            ReplyExtensionOverrun | ReplyBadExtension(_) => ReplyCode::FA_POORLY_FORMED_REPLY,
            HaFailedAuth => ReplyCode::FA_HA_FAILED_AUTH,
            Unreachable { icmp_code: 0 } => ReplyCode::FA_HOME_NETWORK_UNREACHABLE,
            Unreachable { icmp_code: 1 } => ReplyCode::FA_HA_HOST_UNREACHABLE,
            Unreachable { icmp_code: 3 } => ReplyCode::FA_HA_PORT_UNREACHABLE,
            Unreachable { .. } => ReplyCode::FA_HA_UNREACHABLE,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Denial::*;
        match self {
            RegistrationTimeout => f.write_str("no reply from the home agent in time (RFC 5944 §3.7.1)"),
            ExtensionOverrun => f.write_str("an extension runs past the datagram (RFC 5944 §1.9)"),
            UnknownExtension(t) => {
                write!(f, "unknown non-skippable extension type {t} (RFC 5944 §1.9)")
            }
            BadExtension(t) => write!(f, "extension type {t} has a bad length or value (RFC 5944 §1.9)"),
            MnFaAuthDoesNotVerify => {
                f.write_str("MN-FA authenticator does not verify, or wrong SPI (RFC 5944 §3.7.2.1)")
            }
            MnFaAuthTooShort => f.write_str("MN-FA authentication extension too short (RFC 5944 §3.5.3)"),
            MnFaAuthWithoutSa => {
                f.write_str("MN-FA authentication from a node we share no SA with (RFC 5944 §3.7.2.1)")
            }
            MnFaAuthMissing => f.write_str(
                "no MN-FA authentication, but an SA with this node exists (RFC 5944 §3.7.2.1)",
            ),
            MnFaAuthRequired => {
                f.write_str("no MN-FA authentication, and policy requires it (RFC 5944 §3.7.2.1)")
            }
            LifetimeTooLong { requested, max } => write!(
                f,
                "requested lifetime {requested} s exceeds the maximum {max} s (RFC 5944 §3.7.2.1)"
            ),
            CareOfNotOurs => {
                f.write_str("care-of address is not the one this agent offers (RFC 5944 §3.7.2.1)")
            }
            EncapsulationUnavailable => f.write_str(
                "minimal or GRE encapsulation requested; only IP in IP here (RFC 5944 §3.7.2.1)",
            ),
            ReverseTunnelUnavailable => {
                f.write_str("reverse tunnel requested but not offered here (RFC 3024 §4.2)")
            }
            ReverseTunnelMandatory => {
                f.write_str("reverse tunnel mandatory here and 'T' not set (RFC 3024 §4.2)")
            }
            TooDistant { ttl } => write!(
                f,
                "'T' set but the request arrived with TTL {ttl}, not 255: not on this link (RFC 3024 §4.2)"
            ),
            DeliveryStyleWithoutT => {
                f.write_str("encapsulating delivery style extension without 'T' (RFC 3024 §3.3)")
            }
            DeliveryStyleUnsupported => f.write_str(
                "encapsulating delivery style requested; only direct delivery here (RFC 3024 §3.3)",
            ),
            MissingHomeAgent => f.write_str("no unicast home agent address to relay to (RFC 2794 §4)"),
            MissingNai => f.write_str("home address 0.0.0.0 without an NAI extension (RFC 2794 §4)"),
            HomeAgentNotAllowed => f.write_str("home agent outside allowed_home_agents"),
            VisitorListFull { max } => write!(f, "visitor list full ({max} entries)"),
            TooManyPending { pending } => write!(
                f,
                "{pending} requests from this link-layer address already pending"
            ),
            ReplyExtensionOverrun => {
                f.write_str("home agent's reply: an extension runs past the datagram (RFC 5944 §1.9)")
            }
            ReplyBadExtension(t) => write!(
                f,
                "home agent's reply: bad or unknown extension type {t} (RFC 5944 §1.9)"
            ),
            HaFailedAuth => f.write_str(
                "home agent's reply lacks a valid FA-HA authenticator (RFC 5944 §3.7.3.1)",
            ),
            Unreachable { icmp_code } => write!(
                f,
                "ICMP destination unreachable (code {icmp_code}) from the path to the home agent (RFC 5944 §3.7.3.1)"
            ),
        }
    }
}

/// Why a reply from the network side answers nothing this agent relayed
/// (RFC 5944 §3.7.3.1): dropped and counted, no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    NoPendingRequest,
    NotFromItsHomeAgent,
}

impl fmt::Display for Unmatched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unmatched::NoPendingRequest => {
                "no pending request has its home address and Identification (RFC 5944 §3.7.3.1)"
            }
            Unmatched::NotFromItsHomeAgent => {
                "not from the home agent the request went to (RFC 5944 §3.7.3.1)"
            }
        })
    }
}
