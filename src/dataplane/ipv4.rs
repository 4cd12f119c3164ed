//! The few IPv4 header fields a tunnel endpoint reads and writes
//! (RFC 791 §3.1), as a zero-copy view in the style of smoltcp's `wire`.
//!
//! Why not a crate: the tunnel only needs addresses, TOS, DF, TTL, the
//! protocol and the header checksum; the project's codec (`crate::wire`)
//! covers Mobile IP messages, not IP itself, and smoltcp would pull a whole
//! TCP/IP stack in for twenty bytes.

use std::net::Ipv4Addr;

/// IP protocol number of IP-in-IP (RFC 2003 §3.1).
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// TCP (RFC 9293).
pub const PROTO_TCP: u8 = 6;
/// ICMP (RFC 792).
pub const PROTO_ICMP: u8 = 1;
/// Length of an IPv4 header without options.
pub const MIN_HEADER_LEN: usize = 20;

mod field {
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: std::ops::Range<usize> = 2..4;
    pub const IDENT: std::ops::Range<usize> = 4..6;
    pub const FLAGS_FRAG: std::ops::Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: std::ops::Range<usize> = 10..12;
    pub const SRC: std::ops::Range<usize> = 12..16;
    pub const DST: std::ops::Range<usize> = 16..20;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// Why an IPv4 header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("shorter than an IPv4 header")]
    Truncated,
    #[error("IP version is not 4")]
    NotIpv4,
    /// Where an IPv6 datagram was expected (DSMIPv4, RFC 5454).
    #[error("IP version is not 6")]
    NotIpv6,
    #[error("header length field is invalid")]
    BadHeaderLength,
    #[error("total length field disagrees with the buffer")]
    BadTotalLength,
    #[error("header checksum is wrong")]
    BadChecksum,
}

/// A checked view of an IPv4 packet.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length, total length and header checksum
    /// (RFC 791 §3.1). Trailing bytes past the total length (link padding)
    /// are allowed and ignored by [`Ipv4Packet::packet`].
    pub fn new_checked(buffer: T) -> Result<Self, HeaderError> {
        let b = buffer.as_ref();
        if b.len() < MIN_HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(HeaderError::NotIpv4);
        }
        let ihl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if ihl < MIN_HEADER_LEN || ihl > b.len() {
            return Err(HeaderError::BadHeaderLength);
        }
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < ihl || total > b.len() {
            return Err(HeaderError::BadTotalLength);
        }
        if checksum(&b[..ihl]) != 0 {
            return Err(HeaderError::BadChecksum);
        }
        Ok(Ipv4Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        u16::from_be_bytes([self.b()[r.start], self.b()[r.start + 1]])
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[field::VER_IHL] & 0x0f) * 4
    }
    pub fn total_len(&self) -> usize {
        usize::from(self.u16_at(field::TOTAL_LEN))
    }
    pub fn tos(&self) -> u8 {
        self.b()[field::TOS]
    }
    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & FLAG_DF != 0
    }
    /// True for any fragment (MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        let f = self.u16_at(field::FLAGS_FRAG);
        f & FLAG_MF != 0 || f & FRAG_OFFSET_MASK != 0
    }
    pub fn ttl(&self) -> u8 {
        self.b()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.b()[field::PROTOCOL]
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        let s = &self.b()[field::SRC];
        Ipv4Addr::new(s[0], s[1], s[2], s[3])
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.b()[field::DST];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }
    /// The whole datagram, without link-layer padding.
    pub fn packet(&self) -> &[u8] {
        &self.b()[..self.total_len()]
    }
    /// The payload after the header (and options).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<'a> Ipv4Packet<&'a [u8]> {
    /// [`Ipv4Packet::packet`] with the buffer's lifetime.
    pub fn into_packet(self) -> &'a [u8] {
        &self.buffer[..self.total_len()]
    }
}

/// The owned form of the header fields an encapsulator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub ttl: u8,
    pub payload_len: usize,
}

impl Ipv4Repr {
    /// Writes a 20-byte header (no options) with its checksum into `out`.
    pub fn emit(&self, out: &mut [u8; MIN_HEADER_LEN]) {
        let total = (MIN_HEADER_LEN + self.payload_len) as u16;
        out[field::VER_IHL] = 0x45;
        out[field::TOS] = self.tos;
        out[field::TOTAL_LEN].copy_from_slice(&total.to_be_bytes());
        out[field::IDENT].copy_from_slice(&self.ident.to_be_bytes());
        let flags = if self.dont_frag { FLAG_DF } else { 0 };
        out[field::FLAGS_FRAG].copy_from_slice(&flags.to_be_bytes());
        out[field::TTL] = self.ttl;
        out[field::PROTOCOL] = self.protocol;
        out[field::CHECKSUM].copy_from_slice(&[0, 0]);
        out[field::SRC].copy_from_slice(&self.src.octets());
        out[field::DST].copy_from_slice(&self.dst.octets());
        let c = checksum(&out[..]);
        out[field::CHECKSUM].copy_from_slice(&c.to_be_bytes());
    }
}

/// The Internet checksum (RFC 1071) of `data`: 0 over a header that
/// carries a correct checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Completes the TCP or UDP checksum of `packet` (an IPv4 datagram).
///
/// A datagram a raw socket reads off a veth or virtio path may carry a
/// transport checksum its sender's kernel left for the interface to finish
/// (checksum offload: the field holds the pseudo-header sum only). The
/// kernel ipip module finishes it on decapsulation; written into a TUN
/// device as read, the receiver drops it as corrupt (the lab's kernel tier:
/// a TCP SYN from a kernel ipip home agent through the userspace plane).
/// The checksum is computed afresh, so a correct one stays as it was;
/// fragments, other protocols and UDP without a checksum are left alone.
pub fn finish_transport_checksum(packet: &mut [u8]) {
    let Ok(h) = Ipv4Packet::new_checked(&packet[..]) else {
        return;
    };
    let (hl, tl, proto) = (h.header_len(), h.total_len(), h.protocol());
    let at = match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return,
    };
    if h.is_fragment() || tl > packet.len() || tl < hl + at + 2 {
        return;
    }
    let (src, dst) = (h.src_addr().octets(), h.dst_addr().octets());
    let field = hl + at..hl + at + 2;
    if proto == PROTO_UDP && packet[field.clone()] == [0, 0] {
        return;
    }
    packet[field.clone()].copy_from_slice(&[0, 0]);
    let len = (tl - hl) as u16;
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src);
    pseudo[4..8].copy_from_slice(&dst);
    pseudo[9] = proto;
    pseudo[10..].copy_from_slice(&len.to_be_bytes());
    let sum = ones_sum(&packet[hl..tl], ones_sum(&pseudo, 0));
    let mut c = !fold(sum);
    if proto == PROTO_UDP && c == 0 {
        // RFC 768: a computed 0 is sent as all ones.
        c = 0xffff;
    }
    packet[field].copy_from_slice(&c.to_be_bytes());
}

/// The 16-bit one's complement sum of `data` added to `sum`, unfolded.
fn ones_sum(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_checksum_left_for_offload_is_finished_and_a_right_one_kept() {
        // A UDP datagram 10.0.0.1:1000 -> 10.0.0.2:2000, "hi".
        let mut d = vec![
            0x45, 0, 0, 30, 0, 1, 0x40, 0, 64, PROTO_UDP, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let h = checksum(&d);
        d[10..12].copy_from_slice(&h.to_be_bytes());
        d.extend_from_slice(&[0x03, 0xe8, 0x07, 0xd0, 0, 10, 0x12, 0x34, b'h', b'i']);
        finish_transport_checksum(&mut d);
        let right = [d[26], d[27]];
        // Verifies: the sum over pseudo-header and segment is all ones.
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, PROTO_UDP, 0, 10];
        pseudo.extend_from_slice(&d[20..]);
        assert_eq!(checksum(&pseudo), 0);
        // A right one is kept; a TCP segment too short is left alone.
        finish_transport_checksum(&mut d);
        assert_eq!([d[26], d[27]], right);
        let mut short = d[..24].to_vec();
        short[3] = 24;
        short[9] = PROTO_TCP;
        short[10..12].copy_from_slice(&[0, 0]);
        let h = checksum(&short[..20]);
        short[10..12].copy_from_slice(&h.to_be_bytes());
        let before = short.clone();
        finish_transport_checksum(&mut short);
        assert_eq!(short, before);
    }

    #[test]
    fn emitted_header_parses_back() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 7),
            protocol: PROTO_IPIP,
            tos: 0x10,
            ident: 0xbeef,
            dont_frag: true,
            ttl: 64,
            payload_len: 4,
        };
        let mut hdr = [0u8; MIN_HEADER_LEN];
        repr.emit(&mut hdr);
        let mut buf = hdr.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.src_addr(), repr.src);
        assert_eq!(p.dst_addr(), repr.dst);
        assert_eq!(p.protocol(), PROTO_IPIP);
        assert_eq!(p.tos(), 0x10);
        assert_eq!(p.ident(), 0xbeef);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn corrupted_header_is_refused() {
        let repr = Ipv4Repr {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            protocol: 1,
            tos: 0,
            ident: 1,
            dont_frag: false,
            ttl: 1,
            payload_len: 0,
        };
        let mut hdr = [0u8; MIN_HEADER_LEN];
        repr.emit(&mut hdr);
        hdr[15] ^= 1;
        assert_eq!(
            Ipv4Packet::new_checked(&hdr[..]).unwrap_err(),
            HeaderError::BadChecksum
        );
        assert_eq!(
            Ipv4Packet::new_checked(&hdr[..10]).unwrap_err(),
            HeaderError::Truncated
        );
    }
}
