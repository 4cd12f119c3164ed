//! IP-in-IP encapsulation (RFC 2003) over byte buffers: pure functions,
//! no I/O, so every rule is a unit or property test.

use std::net::Ipv4Addr;

use super::ipv4::{HeaderError, Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN, PROTO_IPIP};

/// Default outer TTL. RFC 2003 §3.1 asks for "a value appropriate for
/// delivery of the encapsulated datagram to the tunnel exit point"; 64 is
/// what Linux's own ipip device uses when `ttl inherit` is not set.
pub const DEFAULT_TTL: u8 = 64;

/// The outer header's variable part: one per tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterHeader {
    /// Tunnel entry point (HA address, or the MN's care-of address).
    pub src: Ipv4Addr,
    /// Tunnel exit point.
    pub dst: Ipv4Addr,
    pub ttl: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    #[error("inner datagram: {0}")]
    Inner(HeaderError),
    /// RFC 2003 §3.2: a datagram whose source is the tunnel exit point would
    /// be sent back where it came from (a routing loop); never tunnel it.
    #[error("inner source is the tunnel exit point (routing loop)")]
    Loop,
    #[error("encapsulated datagram would exceed 65535 bytes")]
    TooBig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecapError {
    #[error("outer header: {0}")]
    Outer(HeaderError),
    #[error("outer protocol {0} is not IP-in-IP")]
    NotIpip(u8),
    /// Raw sockets see reassembled datagrams; a fragment here is forged.
    #[error("outer datagram is a fragment")]
    Fragment,
    #[error("inner datagram: {0}")]
    Inner(HeaderError),
}

/// RFC 2003 §5.1 (tunnel MTU discovery): a datagram with DF set that is
/// too big for the tunnel is not dropped silently; the encapsulator
/// returns an ICMP Destination Unreachable, "fragmentation needed and DF
/// set" (RFC 792; next-hop MTU, RFC 1191 §4), to its source, carrying
/// the tunnel MTU (the path MTU to the tunnel's far end less the outer
/// header). Returns the ICMP message (to go out in an IP datagram to the
/// inner source), or `None` when the datagram did not ask for DF (the
/// kernel then fragments the outer datagram) or is not IPv4.
pub fn fragmentation_needed(inner: &[u8], tunnel_mtu: u16) -> Option<Vec<u8>> {
    let p = Ipv4Packet::new_checked(inner).ok()?;
    if !p.dont_frag() {
        return None;
    }
    let quoted = &p.packet()[..(p.header_len() + 8).min(p.packet().len())];
    let mut icmp = vec![3, 4, 0, 0, 0, 0];
    icmp.extend_from_slice(&tunnel_mtu.to_be_bytes());
    icmp.extend_from_slice(quoted);
    let sum = super::ipv4::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    Some(icmp)
}

/// Encapsulates `inner` (a whole IPv4 datagram) into `out` (cleared first).
///
/// RFC 2003 §3.1: protocol 4; Type of Service copied from the inner header;
/// DF copied from the inner header ("if the Don't Fragment bit is set in
/// the inner header, it MUST be set in the outer header"); the inner TTL is
/// left alone (the kernel already decremented it when it forwarded the
/// datagram into the tunnel device).
pub fn encapsulate(
    inner: &[u8],
    outer: &OuterHeader,
    ident: u16,
    out: &mut Vec<u8>,
) -> Result<(), EncapError> {
    let p = Ipv4Packet::new_checked(inner).map_err(EncapError::Inner)?;
    if p.src_addr() == outer.dst {
        return Err(EncapError::Loop);
    }
    let inner = p.packet();
    if inner.len() + MIN_HEADER_LEN > usize::from(u16::MAX) {
        return Err(EncapError::TooBig);
    }
    let repr = Ipv4Repr {
        src: outer.src,
        dst: outer.dst,
        protocol: PROTO_IPIP,
        tos: p.tos(),
        ident,
        dont_frag: p.dont_frag(),
        ttl: outer.ttl,
        payload_len: inner.len(),
    };
    prepend(&repr, inner, out);
    Ok(())
}

/// `out` (cleared first) = the outer IPv4 header `repr`, then `inner`:
/// shared by IP in IP and IPv6 in IPv4 (`ipv6`).
pub(super) fn prepend(repr: &Ipv4Repr, inner: &[u8], out: &mut Vec<u8>) {
    let mut hdr = [0u8; MIN_HEADER_LEN];
    repr.emit(&mut hdr);
    out.clear();
    out.reserve(MIN_HEADER_LEN + inner.len());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(inner);
}

/// A decapsulated datagram: the outer addresses (for the ingress check)
/// and a checked view of the inner datagram.
#[derive(Debug, Clone, Copy)]
pub struct Decapsulated<'a> {
    pub outer_src: Ipv4Addr,
    pub outer_dst: Ipv4Addr,
    pub inner: Ipv4Packet<&'a [u8]>,
}

/// Strips the outer header of an IP-in-IP datagram as read from a raw
/// `IPPROTO_IPIP` socket (which always delivers the IP header).
pub fn decapsulate(datagram: &[u8]) -> Result<Decapsulated<'_>, DecapError> {
    let outer = Ipv4Packet::new_checked(datagram).map_err(DecapError::Outer)?;
    if outer.protocol() != PROTO_IPIP {
        return Err(DecapError::NotIpip(outer.protocol()));
    }
    if outer.is_fragment() {
        return Err(DecapError::Fragment);
    }
    let (outer_src, outer_dst) = (outer.src_addr(), outer.dst_addr());
    let payload = &datagram[outer.header_len()..outer.total_len()];
    let inner = Ipv4Packet::new_checked(payload).map_err(DecapError::Inner)?;
    Ok(Decapsulated {
        outer_src,
        outer_dst,
        inner,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A valid inner IPv4 datagram with the given fields and payload.
    pub(crate) fn inner_datagram(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        tos: u8,
        df: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let repr = Ipv4Repr {
            src,
            dst,
            protocol: 17,
            tos,
            ident: 7,
            dont_frag: df,
            ttl: 33,
            payload_len: payload.len(),
        };
        let mut h = [0u8; MIN_HEADER_LEN];
        repr.emit(&mut h);
        let mut v = h.to_vec();
        v.extend_from_slice(payload);
        v
    }

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
    const HOA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    const CN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

    fn outer() -> OuterHeader {
        OuterHeader {
            src: HA,
            dst: COA,
            ttl: DEFAULT_TTL,
        }
    }

    #[test]
    fn outer_header_follows_rfc2003_3_1() {
        let inner = inner_datagram(CN, HOA, 0xb8, true, b"hello");
        let mut out = Vec::new();
        encapsulate(&inner, &outer(), 42, &mut out).unwrap();
        let o = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!(o.protocol(), PROTO_IPIP);
        assert_eq!((o.src_addr(), o.dst_addr()), (HA, COA));
        assert_eq!(o.tos(), 0xb8, "TOS copied from the inner header");
        assert!(o.dont_frag(), "DF copied from the inner header");
        assert_eq!(o.ttl(), DEFAULT_TTL);
        assert_eq!(o.ident(), 42);
        assert_eq!(o.payload(), &inner[..], "inner datagram unchanged");

        let inner = inner_datagram(CN, HOA, 0, false, b"x");
        encapsulate(&inner, &outer(), 1, &mut out).unwrap();
        assert!(!Ipv4Packet::new_checked(&out[..]).unwrap().dont_frag());
    }

    #[test]
    fn datagram_from_the_exit_point_is_not_tunnelled_back() {
        let inner = inner_datagram(COA, HOA, 0, false, b"loop");
        let mut out = Vec::new();
        assert_eq!(
            encapsulate(&inner, &outer(), 1, &mut out),
            Err(EncapError::Loop)
        );
    }

    #[test]
    fn malformed_inner_is_refused_not_tunnelled() {
        let mut out = Vec::new();
        assert!(matches!(
            encapsulate(&[0x60, 0, 0, 0], &outer(), 1, &mut out),
            Err(EncapError::Inner(_))
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn decapsulation_refuses_other_protocols_fragments_and_bad_inner() {
        let inner = inner_datagram(HOA, CN, 0, false, b"abc");
        let mut out = Vec::new();
        encapsulate(&inner, &outer(), 1, &mut out).unwrap();

        let mut udp = out.clone();
        udp[9] = 17;
        fix_checksum(&mut udp);
        assert_eq!(decapsulate(&udp).unwrap_err(), DecapError::NotIpip(17));

        let mut frag = out.clone();
        frag[6] |= 0x20; // MF
        fix_checksum(&mut frag);
        assert_eq!(decapsulate(&frag).unwrap_err(), DecapError::Fragment);

        let mut bad_inner = out.clone();
        bad_inner[20 + 12] ^= 0xff; // inner source, inner checksum now wrong
        assert!(matches!(
            decapsulate(&bad_inner),
            Err(DecapError::Inner(HeaderError::BadChecksum))
        ));

        assert!(matches!(decapsulate(&out[..25]), Err(DecapError::Outer(_))));
    }

    fn fix_checksum(b: &mut [u8]) {
        b[10] = 0;
        b[11] = 0;
        let c = super::super::ipv4::checksum(&b[..20]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }

    proptest! {
        #[test]
        fn encap_decap_round_trip(
            src in any::<u32>(), dst in any::<u32>(), tos in any::<u8>(),
            df in any::<bool>(), payload in proptest::collection::vec(any::<u8>(), 0..1500),
            ident in any::<u16>(), ttl in 1u8..,
        ) {
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            prop_assume!(src != COA);
            let inner = inner_datagram(src, dst, tos, df, &payload);
            let mut out = Vec::new();
            encapsulate(&inner, &OuterHeader { src: HA, dst: COA, ttl }, ident, &mut out).unwrap();
            let d = decapsulate(&out).unwrap();
            prop_assert_eq!(d.outer_src, HA);
            prop_assert_eq!(d.outer_dst, COA);
            prop_assert_eq!(d.inner.packet(), &inner[..]);
            prop_assert_eq!(d.inner.src_addr(), src);
        }

        #[test]
        fn decapsulate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decapsulate(&bytes);
        }
    }

    #[test]
    fn too_big_with_df_is_answered_with_fragmentation_needed() {
        let inner = inner_datagram(CN, HOA, 0, true, &[0x55; 1400]);
        let icmp = fragmentation_needed(&inner, 1380).expect("DF set");
        assert_eq!(&icmp[..2], &[3, 4], "destination unreachable, frag needed");
        assert_eq!(super::super::ipv4::checksum(&icmp), 0);
        assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1380);
        // The inner header and the first 8 octets of its payload (RFC 792).
        assert_eq!(&icmp[8..], &inner[..28]);
        let no_df = inner_datagram(CN, HOA, 0, false, &[0x55; 1400]);
        assert!(fragmentation_needed(&no_df, 1380).is_none());
    }
}
