//! Registration Reply codes (RFC 5944 §3.4), with the additions of
//! RFC 2794 (NAI), RFC 3024 (reverse tunnelling), RFC 3519 (NAT traversal)
//! and the IANA "Code Values for Mobile IP Registration Reply Messages".
//!
//! 0 and 1 accept; 64..=127 are denials by the foreign agent, 128..=255
//! denials by the home agent (RFC 5944 §3.4).

use std::fmt;

/// The Code octet of a Registration Reply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(pub u8);

macro_rules! codes {
    ($( $(#[$m:meta])* $name:ident = $v:expr, $text:expr; )*) => {
        impl ReplyCode {
            $( $(#[$m])* pub const $name: ReplyCode = ReplyCode($v); )*

            /// The reason in words, as the RFC names it.
            pub fn name(&self) -> &'static str {
                match self.0 {
                    $( $v => $text, )*
                    2..=63 => "unassigned acceptance code",
                    64..=127 => "denied by foreign agent (unassigned code)",
                    _ => "denied by home agent (unassigned code)",
                }
            }
        }
        /// Every named code, in numeric order (for tests and tables).
        pub const ALL_NAMED: &[ReplyCode] = &[ $( ReplyCode::$name, )* ];
    };
}

codes! {
    // RFC 5944 §3.4: accepted.
    /// 0, RFC 5944 §3.4.
    ACCEPTED = 0, "registration accepted";
    /// 1, RFC 5944 §3.4.
    ACCEPTED_NO_SIMULTANEOUS_BINDINGS = 1,
        "registration accepted, but simultaneous mobility bindings unsupported";

    // RFC 5944 §3.4: denied by the foreign agent.
    /// 64, RFC 5944 §3.4.
    FA_UNSPECIFIED = 64, "denied by foreign agent: reason unspecified";
    /// 65, RFC 5944 §3.4.
    FA_ADMIN_PROHIBITED = 65, "denied by foreign agent: administratively prohibited";
    /// 66, RFC 5944 §3.4.
    FA_INSUFFICIENT_RESOURCES = 66, "denied by foreign agent: insufficient resources";
    /// 67, RFC 5944 §3.4.
    FA_MN_FAILED_AUTH = 67, "denied by foreign agent: mobile node failed authentication";
    /// 68, RFC 5944 §3.4.
    FA_HA_FAILED_AUTH = 68, "denied by foreign agent: home agent failed authentication";
    /// 69, RFC 5944 §3.4.
    FA_LIFETIME_TOO_LONG = 69, "denied by foreign agent: requested lifetime too long";
    /// 70, RFC 5944 §3.4; also the FA's answer to an unknown
    /// non-skippable extension (see [`ReplyCode::for_unknown_extension`]).
    FA_POORLY_FORMED_REQUEST = 70, "denied by foreign agent: poorly formed request";
    /// 71, RFC 5944 §3.4.
    FA_POORLY_FORMED_REPLY = 71, "denied by foreign agent: poorly formed reply";
    /// 72, RFC 5944 §3.4.
    FA_ENCAPSULATION_UNAVAILABLE = 72,
        "denied by foreign agent: requested encapsulation unavailable";
    /// 73, RFC 5944 §3.4 (formerly VJ compression).
    FA_RESERVED_73 = 73, "denied by foreign agent: reserved and unavailable";
    /// 74, RFC 3024 §6.
    FA_REVERSE_TUNNEL_UNAVAILABLE = 74,
        "denied by foreign agent: requested reverse tunnel unavailable";
    /// 75, RFC 3024 §6.
    FA_REVERSE_TUNNEL_MANDATORY = 75,
        "denied by foreign agent: reverse tunnel is mandatory and 'T' bit not set";
    /// 76, RFC 3024 §6.
    FA_MN_TOO_DISTANT = 76, "denied by foreign agent: mobile node too distant";
    /// 77, RFC 5944 §3.4.
    FA_INVALID_CARE_OF_ADDRESS = 77, "denied by foreign agent: invalid care-of address";
    /// 78, RFC 5944 §3.4.
    FA_REGISTRATION_TIMEOUT = 78, "denied by foreign agent: registration timeout";
    /// 79, RFC 3024 §6.
    FA_DELIVERY_STYLE_UNSUPPORTED = 79,
        "denied by foreign agent: delivery style not supported";
    /// 80, RFC 5944 §3.4.
    FA_HOME_NETWORK_UNREACHABLE = 80,
        "denied by foreign agent: home network unreachable (ICMP error received)";
    /// 81, RFC 5944 §3.4.
    FA_HA_HOST_UNREACHABLE = 81,
        "denied by foreign agent: home agent host unreachable (ICMP error received)";
    /// 82, RFC 5944 §3.4.
    FA_HA_PORT_UNREACHABLE = 82,
        "denied by foreign agent: home agent port unreachable (ICMP error received)";
    /// 88, RFC 5944 §3.4.
    FA_HA_UNREACHABLE = 88,
        "denied by foreign agent: home agent unreachable (other ICMP error received)";
    /// 89, RFC 3115.
    FA_VENDOR_SPECIFIC = 89, "denied by foreign agent: vendor-specific reason";
    /// 96, RFC 2794 §4.
    FA_NONZERO_HOME_ADDRESS_REQUIRED = 96,
        "denied by foreign agent: non-zero home address required";
    /// 97, RFC 2794 §4.
    FA_MISSING_NAI = 97, "denied by foreign agent: missing NAI";
    /// 98, RFC 2794 §4.
    FA_MISSING_HOME_AGENT = 98, "denied by foreign agent: missing home agent";
    /// 99, RFC 2794 §4.
    FA_MISSING_HOME_ADDRESS = 99, "denied by foreign agent: missing home address";

    // RFC 5944 §3.4: denied by the home agent.
    /// 128, RFC 5944 §3.4.
    HA_UNSPECIFIED = 128, "denied by home agent: reason unspecified";
    /// 129, RFC 5944 §3.4.
    HA_ADMIN_PROHIBITED = 129, "denied by home agent: administratively prohibited";
    /// 130, RFC 5944 §3.4.
    HA_INSUFFICIENT_RESOURCES = 130, "denied by home agent: insufficient resources";
    /// 131, RFC 5944 §3.4.
    HA_MN_FAILED_AUTH = 131, "denied by home agent: mobile node failed authentication";
    /// 132, RFC 5944 §3.4.
    HA_FA_FAILED_AUTH = 132, "denied by home agent: foreign agent failed authentication";
    /// 133, RFC 5944 §3.4; the reply's Identification lets the MN
    /// resynchronise (§5.7).
    HA_IDENTIFICATION_MISMATCH = 133, "registration identification mismatch";
    /// 134, RFC 5944 §3.4; also the HA's answer to an unknown
    /// non-skippable extension (see [`ReplyCode::for_unknown_extension`]).
    HA_POORLY_FORMED_REQUEST = 134, "denied by home agent: poorly formed request";
    /// 135, RFC 5944 §3.4.
    HA_TOO_MANY_BINDINGS = 135,
        "denied by home agent: too many simultaneous mobility bindings";
    /// 136, RFC 5944 §3.4.
    HA_UNKNOWN_HOME_AGENT = 136, "denied by home agent: unknown home agent address";
    /// 137, RFC 3024 §6.
    HA_REVERSE_TUNNEL_UNAVAILABLE = 137,
        "denied by home agent: requested reverse tunnel unavailable";
    /// 138, RFC 3024 §6.
    HA_REVERSE_TUNNEL_MANDATORY = 138,
        "denied by home agent: reverse tunnel is mandatory and 'T' bit not set";
    /// 139, RFC 3024 §6.
    HA_ENCAPSULATION_UNAVAILABLE = 139,
        "denied by home agent: requested encapsulation unavailable";
    /// 140, RFC 3115.
    HA_CVSE_FROM_MN = 140, "denied by home agent: unable to interpret CVSE sent by mobile node";
    /// 141, RFC 3115.
    HA_CVSE_FROM_FA = 141, "denied by home agent: unable to interpret CVSE sent by foreign agent";
    /// 142, RFC 3519 §3.2: the HA cannot or will not do UDP tunnelling
    /// although the request forced it (F bit).
    HA_UDP_ENCAPSULATION_UNAVAILABLE = 142,
        "denied by home agent: UDP encapsulation unavailable";
}

impl ReplyCode {
    /// 0 or 1: the registration was accepted.
    pub const fn is_accepted(self) -> bool {
        self.0 <= 1
    }
    /// 64..=127: denied by the foreign agent.
    pub const fn is_fa_denial(self) -> bool {
        self.0 >= 64 && self.0 <= 127
    }
    /// 128..=255: denied by the home agent.
    pub const fn is_ha_denial(self) -> bool {
        self.0 >= 128
    }

    /// The code an agent answers with when a request carries an
    /// unrecognised non-skippable extension (RFC 5944 §1.9): 134 "poorly
    /// formed request" from the home agent (validity checks of §3.8.2.1),
    /// 70 from a foreign agent (§3.7.2.1).
    pub const fn for_unknown_extension(by_home_agent: bool) -> ReplyCode {
        if by_home_agent {
            ReplyCode::HA_POORLY_FORMED_REQUEST
        } else {
            ReplyCode::FA_POORLY_FORMED_REQUEST
        }
    }
}

impl fmt::Display for ReplyCode {
    /// `133 (registration identification mismatch)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

impl fmt::Debug for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplyCode({self})")
    }
}

impl From<u8> for ReplyCode {
    fn from(v: u8) -> Self {
        ReplyCode(v)
    }
}
