//! IPv6 in IPv4 for DSMIPv4 (RFC 5454): the IPv6 header fields the tunnel
//! reads, the IPv4 header (protocol 41, RFC 4213 §3.5) it puts in front,
//! and the inner-source rule of the home agent. Pure functions.
//!
//! RFC 5454 §2.2 negotiates where IPv6 goes: to the IPv4 home address
//! (IPv6 in IPv4 addressed HA <-> home address, inside the binding's
//! IPv4 tunnel) or to the care-of address (IPv6 in IPv4 addressed HA <->
//! care-of address, or in RFC 3519 Tunnel Data with next header 41 behind
//! a NAT, §3.9).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipip::{EncapError, OuterHeader};
use super::ipv4::{HeaderError, Ipv4Repr, MIN_HEADER_LEN};

/// IP protocol number of IPv6 encapsulated in IPv4 (RFC 4213 §3.5), also
/// the RFC 3519 Next Header value of an IPv6 datagram (RFC 5454 §3.9).
pub const PROTO_IPV6: u8 = 41;
/// Length of the fixed IPv6 header (RFC 8200 §3).
pub const HEADER_LEN: usize = 40;
/// IPv6's minimum link MTU (RFC 8200 §5): every link, a tunnel too,
/// carries this much without the sender hearing of it.
pub const MIN_MTU: usize = 1280;
/// ICMPv6's next header value (RFC 4443 §1).
const PROTO_ICMPV6: u8 = 58;

mod field {
    pub const PAYLOAD_LEN: std::ops::Range<usize> = 4..6;
    pub const NEXT_HEADER: usize = 6;
    pub const SRC: std::ops::Range<usize> = 8..24;
    pub const DST: std::ops::Range<usize> = 24..40;
}

/// A checked view of an IPv6 datagram: version 6, the fixed header and
/// the payload its Payload Length announces are all there.
#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv6Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, HeaderError> {
        if buf.len() < HEADER_LEN {
            return Err(HeaderError::Truncated);
        }
        if buf[0] >> 4 != 6 {
            return Err(HeaderError::NotIpv6);
        }
        let len = &buf[field::PAYLOAD_LEN];
        let total = HEADER_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
        if buf.len() < total {
            return Err(HeaderError::BadTotalLength);
        }
        Ok(Ipv6Packet { buf: &buf[..total] })
    }

    fn addr(&self, r: std::ops::Range<usize>) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[r]);
        Ipv6Addr::from(a)
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr(field::SRC)
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr(field::DST)
    }
    /// Traffic Class, copied to the outer TOS.
    pub fn traffic_class(&self) -> u8 {
        (self.buf[0] << 4) | (self.buf[1] >> 4)
    }
    pub fn packet(&self) -> &'a [u8] {
        self.buf
    }
    /// An ICMPv6 error message (RFC 4443 §2.1: types 0-127), when the
    /// ICMPv6 header follows the fixed header directly.
    fn is_icmpv6_error(&self) -> bool {
        self.buf[field::NEXT_HEADER] == PROTO_ICMPV6
            && self.buf.get(HEADER_LEN).is_some_and(|t| *t < 128)
    }
}

/// RFC 4213 §3.2 (dynamic tunnel MTU): an IPv6 datagram too big for the
/// tunnel (the IPv4 path MTU to its far end less the encapsulation, never
/// below [`MIN_MTU`]) is dropped and its source gets an ICMPv6 Packet Too
/// Big (RFC 4443 §3.2: type 2, code 0, the tunnel MTU, then as much of
/// the datagram as keeps the message within the minimum MTU). Returns
/// the ICMPv6 message with a zero checksum (the kernel fills it in on a
/// raw ICMPv6 socket, RFC 3542 §3.1, knowing the source it picks), or
/// `None` when the datagram fits, is no IPv6, or is one RFC 4443 §2.4
/// (e) forbids answering: an ICMPv6 error, or from an address that names
/// no single node (unspecified, multicast).
pub fn packet_too_big(inner: &[u8], tunnel_mtu: usize) -> Option<Vec<u8>> {
    let p = Ipv6Packet::new_checked(inner).ok()?;
    let mtu = tunnel_mtu.max(MIN_MTU);
    let src = p.src_addr();
    if p.packet().len() <= mtu || src.is_unspecified() || src.is_multicast() {
        return None;
    }
    if p.is_icmpv6_error() {
        return None;
    }
    const ICMP_HEADER: usize = 8;
    let quoted = &p.packet()[..MIN_MTU - HEADER_LEN - ICMP_HEADER];
    let mut icmp = vec![2, 0, 0, 0];
    icmp.extend_from_slice(&u32::try_from(mtu).unwrap_or(u32::MAX).to_be_bytes());
    icmp.extend_from_slice(quoted);
    Some(icmp)
}

/// fe80::/10: never forwarded off the link it was sent on (RFC 4291
/// §2.5.6). The tunnel device of a home agent is one device for every
/// mobile node, so a link-local datagram from one node's tunnel is not
/// written into it: dropped and counted.
pub fn is_link_local(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// RFC 4213 §3.2: whether the IPv4 header around an IPv6 datagram of
/// `len` bytes has DF set: only above IPv6's minimum MTU. One that size
/// or smaller must get through, fragmented on the IPv4 path if need be;
/// a larger one that does not fit the path is answered with
/// [`packet_too_big`].
pub fn outer_dont_frag(len: usize) -> bool {
    len > MIN_MTU
}

/// Puts an IPv4 header with protocol 41 in front of `inner` (an IPv6
/// datagram) into `out` (cleared first). RFC 4213 §3.5: the outer TOS is
/// the inner Traffic Class. §3.2 (dynamic tunnel MTU): DF only on what is
/// larger than IPv6's minimum MTU; a datagram that size or smaller must
/// get through, fragmented on the IPv4 path if need be, while a larger
/// one that does not fit the path is answered with [`packet_too_big`].
pub fn encapsulate(
    inner: &[u8],
    outer: &OuterHeader,
    ident: u16,
    out: &mut Vec<u8>,
) -> Result<(), EncapError> {
    let p = Ipv6Packet::new_checked(inner).map_err(EncapError::Inner)?;
    let inner = p.packet();
    if inner.len() + MIN_HEADER_LEN > usize::from(u16::MAX) {
        return Err(EncapError::TooBig);
    }
    let repr = Ipv4Repr {
        src: outer.src,
        dst: outer.dst,
        protocol: PROTO_IPV6,
        tos: p.traffic_class(),
        ident,
        dont_frag: outer_dont_frag(inner.len()),
        ttl: outer.ttl,
        payload_len: inner.len(),
    };
    super::ipip::prepend(&repr, inner, out);
    Ok(())
}

/// The IPv4 tunnel addresses of IPv6 sent to the home address (RFC 5454
/// §2.2 code 0): between the home agent and the home address.
pub fn home_address_tunnel(home_agent: Ipv4Addr, home: Ipv4Addr, ttl: u8) -> OuterHeader {
    OuterHeader {
        src: home_agent,
        dst: home,
        ttl,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dataplane::ipv4::Ipv4Packet;
    use proptest::prelude::*;

    /// An IPv6 datagram (next header 59, no next header) with `payload`.
    pub(crate) fn ipv6_datagram(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x6a, 0xb0, 0, 0];
        v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        v.extend_from_slice(&[59, 64]);
        v.extend_from_slice(&src.parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(&dst.parse::<Ipv6Addr>().unwrap().octets());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn ipv6_in_ipv4_is_protocol_41_with_the_traffic_class() {
        let d = ipv6_datagram("2001:db8:10::1", "2001:db8:99::9", b"hello");
        let outer = OuterHeader {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 9),
            ttl: 64,
        };
        let mut out = Vec::new();
        encapsulate(&d, &outer, 5, &mut out).unwrap();
        let o = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(o.protocol(), PROTO_IPV6);
        assert_eq!(o.tos(), 0xab);
        assert_eq!((o.src_addr(), o.dst_addr()), (outer.src, outer.dst));
        assert_eq!(o.payload(), &d[..]);
        assert!(encapsulate(&d[..30], &outer, 5, &mut out).is_err());
        let mut v4 = d.clone();
        v4[0] = 0x45;
        assert!(encapsulate(&v4, &outer, 5, &mut out).is_err());
    }

    /// RFC 4213 §3.2: DF above the minimum MTU only.
    #[test]
    fn df_is_set_only_above_the_minimum_mtu() {
        let outer = OuterHeader {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(198, 51, 100, 9),
            ttl: 64,
        };
        let mut out = Vec::new();
        for (payload, df) in [
            (MIN_MTU - HEADER_LEN, false),
            (MIN_MTU - HEADER_LEN + 1, true),
        ] {
            let d = ipv6_datagram("2001:db8:10::1", "2001:db8:99::9", &vec![0; payload]);
            encapsulate(&d, &outer, 5, &mut out).unwrap();
            assert_eq!(Ipv4Packet::new_checked(&out[..]).unwrap().dont_frag(), df);
        }
    }

    /// RFC 4443 §3.2: type 2 code 0, the MTU, and the invoking datagram
    /// cut so that the message with its IPv6 header fits in 1280 bytes.
    #[test]
    fn too_big_ipv6_is_answered_with_packet_too_big() {
        let d = ipv6_datagram("2001:db8:99::9", "2001:db8:10::1", &[7; 1440]);
        let icmp = packet_too_big(&d, 1460).expect("1480 bytes do not fit 1460");
        assert_eq!(&icmp[..4], &[2, 0, 0, 0]);
        assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1460);
        assert_eq!(icmp.len() + HEADER_LEN, MIN_MTU);
        assert_eq!(&icmp[8..], &d[..icmp.len() - 8]);
        assert!(packet_too_big(&d, 1480).is_none(), "it fits");
        // Below the minimum MTU the tunnel still carries 1280 bytes.
        let icmp = packet_too_big(&d, 1000).unwrap();
        assert_eq!(u32::from_be_bytes(icmp[4..8].try_into().unwrap()), 1280);
        let small = ipv6_datagram("2001:db8:99::9", "2001:db8:10::1", &[7; 1240]);
        assert!(packet_too_big(&small, 1000).is_none());
    }

    /// RFC 4443 §2.4 (e): never about an ICMPv6 error, nor to a source
    /// that names no single node.
    #[test]
    fn no_packet_too_big_about_errors_or_to_unspecified_or_multicast() {
        for src in ["::", "ff02::1"] {
            let d = ipv6_datagram(src, "2001:db8:10::1", &[0; 1440]);
            assert!(packet_too_big(&d, 1400).is_none(), "{src}");
        }
        let mut err = ipv6_datagram("2001:db8:99::9", "2001:db8:10::1", &[1; 1440]);
        err[6] = 58; // ICMPv6, type 1: destination unreachable
        assert!(packet_too_big(&err, 1400).is_none());
        err[40] = 128; // echo request: informational, answered
        assert!(packet_too_big(&err, 1400).is_some());
    }

    #[test]
    fn link_local_is_fe80_slash_10() {
        assert!(is_link_local("fe80::1".parse().unwrap()));
        assert!(is_link_local("febf::1".parse().unwrap()));
        assert!(!is_link_local("fec0::1".parse().unwrap()));
        assert!(!is_link_local("2001:db8::1".parse().unwrap()));
    }

    proptest! {
        #[test]
        fn ipv6_view_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(p) = Ipv6Packet::new_checked(&bytes) {
                prop_assert!(p.packet().len() >= HEADER_LEN);
                let _ = (p.src_addr(), p.dst_addr(), p.traffic_class());
            }
            let _ = packet_too_big(&bytes, 40);
        }
    }
}
