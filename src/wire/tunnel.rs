//! Tunnel Data message, RFC 3519 §3.3 (Mobile IP message type 4): the
//! header put before a tunnelled packet when it travels in UDP on port
//! 434 through a NAT.
//!
//! ```text
//!  0      Type = 4
//!  1      Next Header (4 IP-in-IP, 47 GRE, 55 minimal encapsulation)
//!  2..4   Reserved (sent as zero)
//!  4..    the tunnelled packet
//! ```

use super::{be, msg_type, Error, Result};

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const NEXT_HEADER: usize = 1;
    pub const RESERVED: Range<usize> = 2..4;
    pub const PAYLOAD: usize = 4;
}

/// Length of the Tunnel Data header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// Next Header values of RFC 3519 §3.3 (IP protocol numbers).
pub mod next_header {
    /// IP in IP, RFC 2003.
    pub const IPIP: u8 = 4;
    /// GRE, RFC 2784.
    pub const GRE: u8 = 47;
    /// Minimal encapsulation, RFC 2004.
    pub const MINIMAL: u8 = 55;
}

/// Zero-copy view of a Tunnel Data message.
#[derive(Debug, Clone)]
pub struct TunnelDataPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TunnelDataPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        TunnelDataPacket { buffer }
    }
    /// Wraps a buffer after checking the header is present and the type
    /// octet is 4.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }
    /// Checks length and type.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::TYPE] != msg_type::TUNNEL_DATA {
            return Err(Error::BadType(b[field::TYPE]));
        }
        Ok(())
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NEXT_HEADER]
    }
    pub fn reserved(&self) -> u16 {
        be::u16(&self.buffer.as_ref()[field::RESERVED])
    }
    /// The tunnelled packet.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TunnelDataPacket<T> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NEXT_HEADER] = v;
    }
    pub fn set_reserved(&mut self, v: u16) {
        self.buffer.as_mut()[field::RESERVED].copy_from_slice(&v.to_be_bytes());
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// Owned form of the Tunnel Data header (the payload stays borrowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelDataRepr {
    /// Protocol of the tunnelled packet, see [`next_header`].
    pub next_header: u8,
}

impl TunnelDataRepr {
    /// Parses the header; the reserved field is ignored on receipt
    /// (RFC 3519 §3.3).
    pub fn parse<T: AsRef<[u8]>>(p: &TunnelDataPacket<T>) -> Result<Self> {
        p.check_len()?;
        Ok(TunnelDataRepr {
            next_header: p.next_header(),
        })
    }
    /// Header length.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }
    /// Writes the header into `buf[..4]`; the payload follows it.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut p = TunnelDataPacket::new_unchecked(buf);
        p.set_msg_type(msg_type::TUNNEL_DATA);
        p.set_next_header(self.next_header);
        p.set_reserved(0);
    }
    /// Header followed by `payload`, in a fresh vector.
    pub fn to_bytes_with(&self, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0; HEADER_LEN + payload.len()];
        self.emit(&mut v);
        v[HEADER_LEN..].copy_from_slice(payload);
        v
    }
}
