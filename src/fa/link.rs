//! The served link at the IP and UDP layers, over byte buffers: reading
//! a Registration Request out of an IPv4 datagram a packet socket
//! delivered (the FA needs the link-layer source address and the TTL,
//! which a UDP socket does not give), and building the IPv4/UDP datagram
//! of a reply sent by link-layer address (RFC 5944 §3.7.3.2: no ARP for a
//! visitor's home address).

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::dataplane::ipv4::{Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN, PROTO_UDP};
use crate::wire::MIP_PORT;

/// A UDP datagram to port 434 read from the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDatagram<'a> {
    pub src: SocketAddrV4,
    pub dst: Ipv4Addr,
    pub ttl: u8,
    pub payload: &'a [u8],
}

/// The UDP payload of an IPv4 datagram to port 434, or `None` for
/// anything else (other protocols, ports, fragments, bad lengths).
pub fn parse_mip_datagram(ip: &[u8]) -> Option<LinkDatagram<'_>> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    if p.protocol() != PROTO_UDP || p.is_fragment() {
        return None;
    }
    let udp = &ip[p.header_len()..p.total_len()];
    if udp.len() < 8 {
        return None;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let ulen = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dport != MIP_PORT || ulen < 8 || ulen > udp.len() {
        return None;
    }
    Some(LinkDatagram {
        src: SocketAddrV4::new(p.src_addr(), sport),
        dst: p.dst_addr(),
        ttl: p.ttl(),
        payload: &udp[8..ulen],
    })
}

/// An IPv4/UDP datagram from `src` to `dst` carrying `payload`, with the
/// UDP checksum filled in (TTL 255: the receiver may check it is on link).
pub fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8], ident: u16) -> Vec<u8> {
    let ulen = 8 + payload.len();
    let mut udp = Vec::with_capacity(ulen);
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&(ulen as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    // RFC 768: checksum over the pseudo-header and the datagram.
    let mut pseudo = Vec::with_capacity(12 + ulen);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, PROTO_UDP]);
    pseudo.extend_from_slice(&(ulen as u16).to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let mut c = crate::dataplane::ipv4::checksum(&pseudo);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let repr = Ipv4Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        protocol: PROTO_UDP,
        tos: 0,
        ident,
        dont_frag: false,
        ttl: 255,
        payload_len: udp.len(),
    };
    let mut h = [0u8; MIN_HEADER_LEN];
    repr.emit(&mut h);
    let mut v = h.to_vec();
    v.extend_from_slice(&udp);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_datagram_parses_back_and_other_ports_are_ignored() {
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 50, 0, 1), 434);
        let d = udp_datagram(src, dst, b"hello", 1);
        let p = parse_mip_datagram(&d).unwrap();
        assert_eq!(
            (p.src, p.dst, p.ttl, p.payload),
            (src, *dst.ip(), 255, &b"hello"[..])
        );
        // The UDP checksum verifies: summing the pseudo-header and the
        // datagram gives 0.
        let udp = &d[20..];
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.ip().octets());
        pseudo.extend_from_slice(&dst.ip().octets());
        pseudo.extend_from_slice(&[0, 17, 0, udp.len() as u8]);
        pseudo.extend_from_slice(udp);
        assert_eq!(crate::dataplane::ipv4::checksum(&pseudo), 0);
        let other = udp_datagram(src, SocketAddrV4::new(*dst.ip(), 53), b"x", 1);
        assert_eq!(parse_mip_datagram(&other), None);
        assert_eq!(parse_mip_datagram(&d[..27]), None);
    }
}
