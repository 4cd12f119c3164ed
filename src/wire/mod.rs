//! Mobile IPv4 on the wire, in the style of smoltcp's `wire` module.
//!
//! Every message family has a zero-copy view (`*Packet<T: AsRef<[u8]>>`,
//! length-checked up front by `new_checked`, field offsets in a private
//! `field` module) and an owned `*Repr` with `parse` and `emit`.
//! Malformed input is always an [`Error`], never a panic.
//!
//! - [`registration`]: Registration Request (type 1) and Reply (type 3),
//!   RFC 5944 §3.3 and §3.4.
//! - [`extension`]: the extensions that follow them (RFC 5944 §1.9-§1.11,
//!   §3.5; RFC 2794, 3519, 3846, 5265, 5454), iterated with their offsets.
//! - [`code`]: Registration Reply codes, with names in words.
//! - [`icmp`]: Agent Advertisement and Agent Solicitation, RFC 5944 §2.1.
//! - [`tunnel`]: the RFC 3519 §3.3 Tunnel Data message (type 4).

pub mod code;
pub mod extension;
pub mod icmp;
pub mod registration;
pub mod tunnel;

pub use code::ReplyCode;
pub use extension::{
    AuthExt, Dsmipv4Ext, Extension, ExtensionIter, UdpTunnelReply, UdpTunnelRequest,
};
pub use registration::{Flags, ReplyPacket, ReplyRepr, RequestPacket, RequestRepr};

/// UDP port of Mobile IP registration messages (RFC 5944 §3.1).
pub const MIP_PORT: u16 = 434;

/// Mobile IP message types (IANA "Mobile IP Message Types").
pub mod msg_type {
    /// Registration Request, RFC 5944 §3.3.
    pub const REGISTRATION_REQUEST: u8 = 1;
    /// Registration Reply, RFC 5944 §3.4.
    pub const REGISTRATION_REPLY: u8 = 3;
    /// Tunnel Data message, RFC 3519 §3.3.
    pub const TUNNEL_DATA: u8 = 4;
}

/// Why a message could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer ends before the fixed part of the message (or of an
    /// extension) does.
    #[error("message truncated")]
    Truncated,
    /// The message type octet is not the one this parser handles.
    #[error("unexpected message type {0}")]
    BadType(u8),
    /// A length field disagrees with the bytes present or with the format.
    #[error("bad length field")]
    BadLength,
    /// A field holds a value the format forbids.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
    /// A non-skippable extension (type 0..=127) this codec does not know.
    /// RFC 5944 §1.9: the receiver must reject the message (the home agent
    /// with code 134, the foreign agent with code 70, see
    /// [`ReplyCode::for_unknown_extension`]); the mobile node silently
    /// discards a reply carrying one (§3.6.2.1).
    #[error("unrecognised non-skippable extension type {0}")]
    UnknownExtension(u8),
}

/// Result of parsing.
pub type Result<T> = core::result::Result<T, Error>;

/// Big-endian helpers; every caller has checked the length first.
pub(crate) mod be {
    pub fn u16(b: &[u8]) -> u16 {
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn u32(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn u64(b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_be_bytes(a)
    }
    pub fn ipv4(b: &[u8]) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
}
