//! Registration Request (type 1, RFC 5944 §3.3) and Registration Reply
//! (type 3, RFC 5944 §3.4), both sent over UDP port 434.
//!
//! ```text
//! Request:                                Reply:
//!  0      Type = 1                         0      Type = 3
//!  1      S B D M G r T x                  1      Code
//!  2..4   Lifetime                         2..4   Lifetime
//!  4..8   Home Address                     4..8   Home Address
//!  8..12  Home Agent                       8..12  Home Agent
//! 12..16  Care-of Address                 12..20  Identification
//! 16..24  Identification                  20..    Extensions
//! 24..    Extensions
//! ```

use std::fmt;
use std::net::Ipv4Addr;

use super::code::ReplyCode;
use super::extension::{self, Extension, ExtensionIter};
use super::{be, msg_type, Error, Result};

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const FLAGS: usize = 1; // request
    pub const CODE: usize = 1; // reply
    pub const LIFETIME: Range<usize> = 2..4;
    pub const HOME_ADDRESS: Range<usize> = 4..8;
    pub const HOME_AGENT: Range<usize> = 8..12;
    pub const CARE_OF_ADDRESS: Range<usize> = 12..16;
    pub const REQ_IDENTIFICATION: Range<usize> = 16..24;
    pub const REQ_EXTENSIONS: usize = 24;
    pub const REP_IDENTIFICATION: Range<usize> = 12..20;
    pub const REP_EXTENSIONS: usize = 20;
}

/// Length of the fixed part of a Registration Request.
pub const REQUEST_HEADER_LEN: usize = field::REQ_EXTENSIONS;
/// Length of the fixed part of a Registration Reply.
pub const REPLY_HEADER_LEN: usize = field::REP_EXTENSIONS;

/// The flag octet of a Registration Request (RFC 5944 §3.3), most
/// significant bit first: S B D M G r T x.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// S: simultaneous bindings requested.
    pub const S: Flags = Flags(0x80);
    /// B: broadcast datagrams requested.
    pub const B: Flags = Flags(0x40);
    /// D: decapsulation by the mobile node (co-located care-of address).
    pub const D: Flags = Flags(0x20);
    /// M: minimal encapsulation (RFC 2004) requested.
    pub const M: Flags = Flags(0x10);
    /// G: GRE encapsulation requested.
    pub const G: Flags = Flags(0x08);
    /// r: reserved, sent as zero (RFC 5944 §3.3).
    pub const R: Flags = Flags(0x04);
    /// T: reverse tunnelling requested (RFC 3024 §5).
    pub const T: Flags = Flags(0x02);
    /// x: reserved, sent as zero (RFC 5944 §3.3).
    pub const X: Flags = Flags(0x01);

    /// No flag set.
    pub const fn empty() -> Flags {
        Flags(0)
    }
    /// The raw octet.
    pub const fn bits(self) -> u8 {
        self.0
    }
    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Flags) {
        self.0 &= !other.0;
    }
    /// Sets or clears the bits of `other`.
    pub fn set(&mut self, other: Flags, value: bool) {
        if value {
            self.insert(other)
        } else {
            self.remove(other)
        }
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl core::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(Flags, char); 8] = [
            (Flags::S, 'S'),
            (Flags::B, 'B'),
            (Flags::D, 'D'),
            (Flags::M, 'M'),
            (Flags::G, 'G'),
            (Flags::R, 'r'),
            (Flags::T, 'T'),
            (Flags::X, 'x'),
        ];
        let s: String = NAMES
            .iter()
            .map(|&(fl, c)| if self.contains(fl) { c } else { '-' })
            .collect();
        write!(f, "Flags({s})")
    }
}

/// Zero-copy view of a Registration Request.
#[derive(Debug, Clone)]
pub struct RequestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestPacket<T> {
    /// Wraps a buffer without checks; accessors may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        RequestPacket { buffer }
    }

    /// Wraps a buffer after checking it holds the fixed header and that
    /// the type octet is 1.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the length and the message type.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < REQUEST_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::TYPE] != msg_type::REGISTRATION_REQUEST {
            return Err(Error::BadType(b[field::TYPE]));
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn flags(&self) -> Flags {
        Flags(self.buffer.as_ref()[field::FLAGS])
    }
    pub fn lifetime(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::LIFETIME])
    }
    pub fn home_address(&self) -> Ipv4Addr {
        be::ipv4(&self.buffer.as_ref()[field::HOME_ADDRESS])
    }
    pub fn home_agent(&self) -> Ipv4Addr {
        be::ipv4(&self.buffer.as_ref()[field::HOME_AGENT])
    }
    pub fn care_of_address(&self) -> Ipv4Addr {
        be::ipv4(&self.buffer.as_ref()[field::CARE_OF_ADDRESS])
    }
    pub fn identification(&self) -> u64 {
        be::u64(&self.buffer.as_ref()[field::REQ_IDENTIFICATION])
    }
    /// The extensions, with their byte offsets in the whole message.
    pub fn extensions(&self) -> ExtensionIter<'_> {
        ExtensionIter::new(self.buffer.as_ref(), field::REQ_EXTENSIONS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RequestPacket<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_msg_type(&mut self, v: u8) {
        self.b()[field::TYPE] = v;
    }
    pub fn set_flags(&mut self, v: Flags) {
        self.b()[field::FLAGS] = v.0;
    }
    pub fn set_lifetime(&mut self, v: u16) {
        self.b()[field::LIFETIME].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_home_address(&mut self, v: Ipv4Addr) {
        self.b()[field::HOME_ADDRESS].copy_from_slice(&v.octets());
    }
    pub fn set_home_agent(&mut self, v: Ipv4Addr) {
        self.b()[field::HOME_AGENT].copy_from_slice(&v.octets());
    }
    pub fn set_care_of_address(&mut self, v: Ipv4Addr) {
        self.b()[field::CARE_OF_ADDRESS].copy_from_slice(&v.octets());
    }
    pub fn set_identification(&mut self, v: u64) {
        self.b()[field::REQ_IDENTIFICATION].copy_from_slice(&v.to_be_bytes());
    }
}

/// Zero-copy view of a Registration Reply.
#[derive(Debug, Clone)]
pub struct ReplyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ReplyPacket<T> {
    /// Wraps a buffer without checks; accessors may panic on short input.
    pub const fn new_unchecked(buffer: T) -> Self {
        ReplyPacket { buffer }
    }

    /// Wraps a buffer after checking it holds the fixed header and that
    /// the type octet is 3.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Checks the length and the message type.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < REPLY_HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::TYPE] != msg_type::REGISTRATION_REPLY {
            return Err(Error::BadType(b[field::TYPE]));
        }
        Ok(())
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn code(&self) -> ReplyCode {
        ReplyCode(self.buffer.as_ref()[field::CODE])
    }
    pub fn lifetime(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::LIFETIME])
    }
    pub fn home_address(&self) -> Ipv4Addr {
        be::ipv4(&self.buffer.as_ref()[field::HOME_ADDRESS])
    }
    pub fn home_agent(&self) -> Ipv4Addr {
        be::ipv4(&self.buffer.as_ref()[field::HOME_AGENT])
    }
    pub fn identification(&self) -> u64 {
        be::u64(&self.buffer.as_ref()[field::REP_IDENTIFICATION])
    }
    /// The extensions, with their byte offsets in the whole message.
    pub fn extensions(&self) -> ExtensionIter<'_> {
        ExtensionIter::new(self.buffer.as_ref(), field::REP_EXTENSIONS)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReplyPacket<T> {
    fn b(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_msg_type(&mut self, v: u8) {
        self.b()[field::TYPE] = v;
    }
    pub fn set_code(&mut self, v: ReplyCode) {
        self.b()[field::CODE] = v.0;
    }
    pub fn set_lifetime(&mut self, v: u16) {
        self.b()[field::LIFETIME].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_home_address(&mut self, v: Ipv4Addr) {
        self.b()[field::HOME_ADDRESS].copy_from_slice(&v.octets());
    }
    pub fn set_home_agent(&mut self, v: Ipv4Addr) {
        self.b()[field::HOME_AGENT].copy_from_slice(&v.octets());
    }
    pub fn set_identification(&mut self, v: u64) {
        self.b()[field::REP_IDENTIFICATION].copy_from_slice(&v.to_be_bytes());
    }
}

/// Owned form of a Registration Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRepr {
    pub flags: Flags,
    /// Seconds; 0 asks for deregistration, 0xffff means infinity (§3.3).
    pub lifetime: u16,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Replay protection value, RFC 5944 §5.7.
    pub identification: u64,
    /// In wire order (the order matters for authentication, §3.6.1.3).
    pub extensions: Vec<Extension>,
}

impl RequestRepr {
    /// Parses a checked view, extensions included. An unknown
    /// non-skippable extension is [`Error::UnknownExtension`].
    pub fn parse<T: AsRef<[u8]>>(p: &RequestPacket<T>) -> Result<Self> {
        p.check_len()?;
        let extensions = p
            .extensions()
            .map(|r| r.map(|(_, e)| e))
            .collect::<Result<Vec<_>>>()?;
        Ok(RequestRepr {
            flags: p.flags(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            care_of_address: p.care_of_address(),
            identification: p.identification(),
            extensions,
        })
    }

    /// Parses raw bytes.
    pub fn parse_bytes(buf: &[u8]) -> Result<Self> {
        Self::parse(&RequestPacket::new_checked(buf)?)
    }

    /// Bytes needed by [`emit`](Self::emit).
    pub fn buffer_len(&self) -> usize {
        REQUEST_HEADER_LEN + extension::total_len(&self.extensions)
    }

    /// Writes the message into `buf[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), or an
    /// extension is too long for its length field (a programming error).
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = RequestPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::REGISTRATION_REQUEST);
        p.set_flags(self.flags);
        p.set_lifetime(self.lifetime);
        p.set_home_address(self.home_address);
        p.set_home_agent(self.home_agent);
        p.set_care_of_address(self.care_of_address);
        p.set_identification(self.identification);
        extension::emit_all(&self.extensions, &mut buf[REQUEST_HEADER_LEN..]);
    }

    /// Emits into a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}

/// Owned form of a Registration Reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRepr {
    pub code: ReplyCode,
    /// Seconds granted (meaningful when the code accepts).
    pub lifetime: u16,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub identification: u64,
    pub extensions: Vec<Extension>,
}

impl ReplyRepr {
    /// Parses a checked view, extensions included.
    pub fn parse<T: AsRef<[u8]>>(p: &ReplyPacket<T>) -> Result<Self> {
        p.check_len()?;
        let extensions = p
            .extensions()
            .map(|r| r.map(|(_, e)| e))
            .collect::<Result<Vec<_>>>()?;
        Ok(ReplyRepr {
            code: p.code(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            identification: p.identification(),
            extensions,
        })
    }

    /// Parses raw bytes.
    pub fn parse_bytes(buf: &[u8]) -> Result<Self> {
        Self::parse(&ReplyPacket::new_checked(buf)?)
    }

    /// Bytes needed by [`emit`](Self::emit).
    pub fn buffer_len(&self) -> usize {
        REPLY_HEADER_LEN + extension::total_len(&self.extensions)
    }

    /// Writes the message into `buf[..self.buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = ReplyPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(msg_type::REGISTRATION_REPLY);
        p.set_code(self.code);
        p.set_lifetime(self.lifetime);
        p.set_home_address(self.home_address);
        p.set_home_agent(self.home_agent);
        p.set_identification(self.identification);
        extension::emit_all(&self.extensions, &mut buf[REPLY_HEADER_LEN..]);
    }

    /// Emits into a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = vec![0; self.buffer_len()];
        self.emit(&mut v);
        v
    }
}
