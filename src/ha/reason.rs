//! Why the home agent dropped or denied a request: one variant per rule,
//! its reply code beside it and the RFC section in its text, so a log line
//! and a counter name the same rule.

use std::fmt;

use crate::wire::ReplyCode;

/// A datagram too broken to answer (RFC 5944 §3.8.2.1: nobody to reply to
/// that could believe us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    ShortHeader,
    ExtensionOverrun,
    AuthExtensionShort,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::ShortHeader => "shorter than the fixed header (RFC 5944 §3.3)",
            Malformed::ExtensionOverrun => {
                "an extension's length runs past the datagram (RFC 5944 §1.9)"
            }
            Malformed::AuthExtensionShort => {
                "MN-HA authentication extension too short (RFC 5944 §3.5.2)"
            }
        })
    }
}

/// A request the home agent answers with a denial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    NoMnHaAuth,
    BadAuthenticator,
    /// The request's NAI is not the one of the SA's node.
    NaiNotThisNodes,
    /// The home address is neither configured nor assigned for the SA's
    /// node: another node's binding, which this node must not touch.
    HomeAddressNotOwned,
    IdentificationMismatch,
    TwoMnHaAuth,
    UnknownExtension(u8),
    BadExtension(u8),
    NotThisHomeAgent,
    EncapsulationUnavailable,
    ReverseTunnelNotAllowed,
    ReverseTunnelRequired,
    PoolExhausted,
    CareOfNotUnicast,
    UdpForcedButDisabled,
    UdpNotIpInIp,
    /// The daemon could not install the binding's tunnel or route.
    InstallFailed,
}

impl Denial {
    pub fn code(self) -> ReplyCode {
        match self {
            Denial::NoMnHaAuth
            | Denial::BadAuthenticator
            | Denial::NaiNotThisNodes
            | Denial::HomeAddressNotOwned => ReplyCode::HA_MN_FAILED_AUTH,
            Denial::IdentificationMismatch => ReplyCode::HA_IDENTIFICATION_MISMATCH,
            Denial::TwoMnHaAuth
            | Denial::UnknownExtension(_)
            | Denial::BadExtension(_)
            | Denial::CareOfNotUnicast => ReplyCode::HA_POORLY_FORMED_REQUEST,
            Denial::NotThisHomeAgent => ReplyCode::HA_UNKNOWN_HOME_AGENT,
            Denial::EncapsulationUnavailable | Denial::UdpNotIpInIp => {
                ReplyCode::HA_ENCAPSULATION_UNAVAILABLE
            }
            Denial::ReverseTunnelNotAllowed => ReplyCode::HA_REVERSE_TUNNEL_UNAVAILABLE,
            Denial::ReverseTunnelRequired => ReplyCode::HA_REVERSE_TUNNEL_MANDATORY,
            Denial::PoolExhausted | Denial::InstallFailed => ReplyCode::HA_INSUFFICIENT_RESOURCES,
            Denial::UdpForcedButDisabled => ReplyCode::HA_UDP_ENCAPSULATION_UNAVAILABLE,
        }
    }

    /// Denials any sender can provoke without a key: rate-limited, since
    /// their reply may go to a spoofed address.
    pub fn unauthenticated(self) -> bool {
        matches!(self, Denial::NoMnHaAuth | Denial::BadAuthenticator)
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NoMnHaAuth => {
                f.write_str("no MN-HA authentication extension (RFC 5944 §3.8.2.1)")
            }
            Denial::BadAuthenticator => {
                f.write_str("authenticator does not verify (RFC 5944 §3.8.2.1)")
            }
            Denial::NaiNotThisNodes => {
                f.write_str("NAI is not the one of the SPI's mobile node (RFC 2794 §2)")
            }
            Denial::HomeAddressNotOwned => f.write_str(
                "home address is not the SPI's mobile node's (RFC 5944 §3.5.1, §3.8.2.1)",
            ),
            Denial::IdentificationMismatch => {
                f.write_str("identification fails the replay check (RFC 5944 §5.7)")
            }
            Denial::TwoMnHaAuth => {
                f.write_str("more than one MN-HA authentication extension (RFC 5944 §3.8.2.1)")
            }
            Denial::UnknownExtension(t) => {
                write!(
                    f,
                    "unknown non-skippable extension type {t} (RFC 5944 §1.9)"
                )
            }
            Denial::BadExtension(t) => write!(
                f,
                "extension type {t} has a bad length or value (RFC 5944 §1.9)"
            ),
            Denial::NotThisHomeAgent => {
                f.write_str("home agent field is not this home agent (RFC 5944 §3.8.2.2)")
            }
            Denial::EncapsulationUnavailable => f.write_str(
                "minimal or GRE encapsulation requested; only IP in IP here (RFC 5944 §3.8.2.1)",
            ),
            Denial::ReverseTunnelNotAllowed => {
                f.write_str("reverse tunnel not allowed for this mobile node (RFC 3024 §4.2)")
            }
            Denial::ReverseTunnelRequired => {
                f.write_str("reverse tunnel mandatory and 'T' not set (RFC 3024 §4.2)")
            }
            Denial::PoolExhausted => f.write_str("address pool exhausted (RFC 2794 §2)"),
            Denial::CareOfNotUnicast => {
                f.write_str("care-of address is not a unicast address (RFC 5944 §3.8.2.1)")
            }
            Denial::UdpForcedButDisabled => {
                f.write_str("UDP tunnelling forced but disabled here (RFC 3519 §3.2)")
            }
            Denial::UdpNotIpInIp => {
                f.write_str("UDP tunnel with an encapsulation other than IP in IP (RFC 3519 §3.1)")
            }
            Denial::InstallFailed => f.write_str(
                "the binding's tunnel or route could not be installed (RFC 5944 §3.4, code 130)",
            ),
        }
    }
}

/// Why the IPv6 part of a registration was refused (RFC 5454 §2.2): the
/// IPv4 binding is unaffected, the IPv6 Prefix Reply carries the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixDenial {
    /// No `ipv6_prefix` is configured for the node.
    NoPrefixConfigured,
    /// The node asked for a prefix that is not its configured one.
    NotThisNodesPrefix,
    /// The requested prefix overlaps one registered to another binding.
    OverlapsAnotherBinding,
    /// A prefix length of 0 or above 128.
    BadPrefixLength,
    /// The daemon's data plane carries no IPv6 (the kernel backend on a
    /// kernel without `sit` links or the ip6 nftables rule).
    NoIpv6DataPlane,
}

impl PrefixDenial {
    pub fn code(self) -> u8 {
        use crate::wire::extension::Dsmipv4Ext as D;
        match self {
            PrefixDenial::BadPrefixLength | PrefixDenial::NoIpv6DataPlane => {
                D::CODE_REJECTED_UNSPECIFIED
            }
            PrefixDenial::NoPrefixConfigured
            | PrefixDenial::NotThisNodesPrefix
            | PrefixDenial::OverlapsAnotherBinding => D::CODE_REJECTED_PROHIBITED,
        }
    }
}

impl fmt::Display for PrefixDenial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PrefixDenial::NoPrefixConfigured => {
                "no IPv6 prefix is configured for this mobile node (RFC 5454 §2.2, code 9)"
            }
            PrefixDenial::NotThisNodesPrefix => {
                "the requested IPv6 prefix is not this mobile node's (RFC 5454 §2.2, code 9)"
            }
            PrefixDenial::OverlapsAnotherBinding => {
                "the requested IPv6 prefix overlaps another binding's (RFC 5454 §2.2, code 9)"
            }
            PrefixDenial::BadPrefixLength => {
                "IPv6 prefix length outside 1-128 (RFC 5454 §2.1, code 8)"
            }
            PrefixDenial::NoIpv6DataPlane => {
                "this home agent's tunnel backend carries no IPv6 (kernel without sit links; RFC 5454 §2.2, code 8)"
            }
        })
    }
}
