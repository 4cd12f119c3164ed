//! Spoofed reverse-tunnelled datagrams (`lab::ipip-send`): what an
//! attacker on the care-of address's path, or a compromised mobile node,
//! sends to make the home agent forward a forged source into the intranet
//! (`lab::ipv6-send`: the same inside IPv6 in IPv4, RFC 5454).
//! RFC 3024 §4.3 has the HA drop them; the scenario checks that it does
//! and that the correspondent never sees one.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};

use crate::dataplane::ipip::{self, OuterHeader};

use super::netns::{self, Netns};
use super::{Error, Result};

/// The UDP port the inner datagrams go to (discard, RFC 863).
pub const DISCARD_PORT: u16 = 9;

/// An IP-in-IP datagram `outer_src -> outer_dst` carrying a UDP datagram
/// `inner_src -> inner_dst:9` with `payload`.
pub fn udp_in_ipip(
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner_src: Ipv4Addr,
    inner_dst: Ipv4Addr,
    ident: u16,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let inner = crate::fa::link::udp_datagram(
        SocketAddrV4::new(inner_src, DISCARD_PORT),
        SocketAddrV4::new(inner_dst, DISCARD_PORT),
        payload,
        ident,
    );
    let outer = OuterHeader {
        src: outer_src,
        dst: outer_dst,
        ttl: 64,
    };
    let mut out = Vec::new();
    ipip::encapsulate(&inner, &outer, ident, &mut out)
        .map_err(|e| Error::Other(format!("IP-in-IP datagram not built: {e}")))?;
    Ok(out)
}

/// An IPv6 datagram (UDP to the discard port) from `inner_src` inside
/// IPv4 protocol 41 from `outer_src` (RFC 5454 §3.3.2: IPv6 tunnelled to
/// the care-of address): a datagram whose inner source lies outside the
/// prefix registered for that tunnel.
pub fn udp6_in_ipv4(
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner_src: Ipv6Addr,
    inner_dst: Ipv6Addr,
    ident: u16,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let udp_len = u16::try_from(8 + payload.len())
        .map_err(|_| Error::Other("IPv6 payload too long".into()))?;
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    for w in [DISCARD_PORT, DISCARD_PORT, udp_len, 0] {
        udp.extend_from_slice(&w.to_be_bytes());
    }
    udp.extend_from_slice(payload);
    // RFC 8200 §8.1: the checksum over the pseudo-header (never 0).
    let mut sum: u32 = 17 + u32::from(udp_len);
    let words = inner_src
        .octets()
        .into_iter()
        .chain(inner_dst.octets())
        .chain(udp.iter().copied());
    let bytes: Vec<u8> = words.collect();
    for c in bytes.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let check = match !(sum as u16) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());
    let mut inner = vec![0x60, 0, 0, 0];
    inner.extend_from_slice(&udp_len.to_be_bytes());
    inner.extend_from_slice(&[17, 64]);
    inner.extend_from_slice(&inner_src.octets());
    inner.extend_from_slice(&inner_dst.octets());
    inner.extend_from_slice(&udp);
    let outer = OuterHeader {
        src: outer_src,
        dst: outer_dst,
        ttl: 64,
    };
    let mut out = Vec::new();
    crate::dataplane::ipv6::encapsulate(&inner, &outer, ident, &mut out)
        .map_err(|e| Error::Other(format!("IPv6-in-IPv4 datagram not built: {e}")))?;
    Ok(out)
}

/// Sends whole IPv4 datagrams from inside `ns` through a raw socket
/// (IPPROTO_RAW: the header is ours, source included).
pub fn send_raw(ns: &Netns, datagrams: Vec<Vec<u8>>) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    netns::run_in(ns.name(), "the raw sender", move || {
        let s = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .map_err(|e| Error::Other(format!("raw socket: {e}")))?;
        for d in &datagrams {
            let dst = Ipv4Addr::new(d[16], d[17], d[18], d[19]);
            s.send_to(d, &SocketAddrV4::new(dst, 0).into())
                .map_err(|e| Error::Other(format!("raw send to {dst}: {e}")))?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inner_source_is_the_spoofed_one_and_the_outer_the_care_of_address() {
        let coa = Ipv4Addr::new(10, 1, 20, 100);
        let ha = Ipv4Addr::new(10, 1, 1, 2);
        let forged = Ipv4Addr::new(10, 1, 2, 77);
        let cn = Ipv4Addr::new(10, 1, 2, 2);
        let d = udp_in_ipip(coa, ha, forged, cn, 7, b"x").unwrap();
        let dec = ipip::decapsulate(&d).unwrap();
        assert_eq!((dec.outer_src, dec.outer_dst), (coa, ha));
        assert_eq!((dec.inner.src_addr(), dec.inner.dst_addr()), (forged, cn));
        assert_eq!(dec.inner.protocol(), crate::dataplane::ipv4::PROTO_UDP);
    }

    #[test]
    fn ipv6_inside_is_protocol_41_with_the_forged_source() {
        let (coa, ha) = (Ipv4Addr::new(10, 1, 10, 100), Ipv4Addr::new(10, 1, 1, 2));
        let forged: Ipv6Addr = "2001:db8:77::1".parse().unwrap();
        let cn: Ipv6Addr = "2001:db8:1:2::2".parse().unwrap();
        let d = udp6_in_ipv4(coa, ha, forged, cn, 3, b"x").unwrap();
        let o = crate::dataplane::ipv4::Ipv4Packet::new_checked(&d[..]).unwrap();
        assert_eq!((o.src_addr(), o.dst_addr(), o.protocol()), (coa, ha, 41));
        let p = crate::dataplane::ipv6::Ipv6Packet::new_checked(o.payload()).unwrap();
        assert_eq!((p.src_addr(), p.dst_addr()), (forged, cn));
    }
}
