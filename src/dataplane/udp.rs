//! RFC 3519 UDP tunnelling: the 4-byte MIP Tunnel Data header that
//! precedes the tunnelled datagram in a UDP datagram on port 434.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Type (4)     |  Next Header  |           Reserved            |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Written here because the codec (`crate::wire`) had no tunnel module
//! when the data plane was written; once `wire::tunnel::TunnelDataPacket`
//! is merged, these two functions should be built on it. Registration messages (types 1 and 3) share
//! the port: [`decapsulate`] tells them apart so the caller can hand them
//! to the control plane.

use std::net::Ipv4Addr;

use super::ipv4::{checksum, HeaderError, Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN, PROTO_ICMP};
use super::ipv6::{Ipv6Packet, PROTO_IPV6};

/// UDP port of Mobile IP (RFC 5944 §3.1), shared by registrations and
/// tunnel data (RFC 3519).
pub const MIP_PORT: u16 = 434;
/// Mobile IP message type of the Tunnel Data message (RFC 3519).
pub const TUNNEL_DATA_TYPE: u8 = 4;
/// Next Header value for an IPv4 datagram (IP-in-IP, RFC 3519).
pub const NEXT_HEADER_IPV4: u8 = 4;
pub const HEADER_LEN: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdpDecapError {
    /// Another Mobile IP message (e.g. a registration): not for the data
    /// plane. Type 0 is also reported for an empty datagram.
    #[error("message type {0} is not Tunnel Data")]
    NotTunnelData(u8),
    #[error("shorter than the Tunnel Data header")]
    Truncated,
    /// RFC 3519 also allows GRE (47) and minimal encapsulation (55); this
    /// data plane only carries IPv4 in IP.
    #[error("next header {0} is not supported")]
    UnsupportedNextHeader(u8),
    #[error("inner datagram: {0}")]
    Inner(HeaderError),
}

/// Writes the Tunnel Data header and `inner` into `out` (cleared first).
pub fn encapsulate(inner: &[u8], out: &mut Vec<u8>) -> Result<(), HeaderError> {
    let p = Ipv4Packet::new_checked(inner)?;
    out.clear();
    out.extend_from_slice(&[TUNNEL_DATA_TYPE, NEXT_HEADER_IPV4, 0, 0]);
    out.extend_from_slice(p.packet());
    Ok(())
}

/// RFC 5454 §3.9: an IPv6 datagram in Tunnel Data, next header 41.
pub fn encapsulate_ipv6(inner: &[u8], out: &mut Vec<u8>) -> Result<(), HeaderError> {
    let p = Ipv6Packet::new_checked(inner)?;
    out.clear();
    out.extend_from_slice(&[TUNNEL_DATA_TYPE, PROTO_IPV6, 0, 0]);
    out.extend_from_slice(p.packet());
    Ok(())
}

/// Whether the outer IPv4 header of the Tunnel Data message `msg` (as
/// [`encapsulate`] wrote it) has DF set. RFC 3519 carries the datagram as
/// IP in IP does, behind a UDP header, so IP in IP's rules hold: IPv4
/// inside, DF copied from its header (RFC 2003 §3.1, so that §5.1's
/// "fragmentation needed" reaches the source); IPv6 inside, RFC 4213
/// §3.2 ([`super::ipv6::outer_dont_frag`]). Anything else (a keepalive
/// is built by [`keepalive`] without DF): clear.
pub fn outer_dont_frag(msg: &[u8]) -> bool {
    match decapsulate(msg) {
        Ok(Inner::Ipv4(p)) => p.dont_frag(),
        Ok(Inner::Ipv6(p)) => super::ipv6::outer_dont_frag(p.packet().len()),
        Err(_) => false,
    }
}

/// What a Tunnel Data message carries.
#[derive(Debug, Clone, Copy)]
pub enum Inner<'a> {
    /// Next header 4 (RFC 3519 §3.3).
    Ipv4(Ipv4Packet<&'a [u8]>),
    /// Next header 41 (RFC 5454 §3.9).
    Ipv6(Ipv6Packet<'a>),
}

/// Reads a UDP payload received on the Mobile IP port.
pub fn decapsulate(msg: &[u8]) -> Result<Inner<'_>, UdpDecapError> {
    match msg.first() {
        None => return Err(UdpDecapError::NotTunnelData(0)),
        Some(&t) if t != TUNNEL_DATA_TYPE => return Err(UdpDecapError::NotTunnelData(t)),
        Some(_) => {}
    }
    if msg.len() < HEADER_LEN {
        return Err(UdpDecapError::Truncated);
    }
    // Reserved: sent as zero, ignored on receipt.
    let inner = &msg[HEADER_LEN..];
    match msg[1] {
        NEXT_HEADER_IPV4 => Ipv4Packet::new_checked(inner).map(Inner::Ipv4),
        PROTO_IPV6 => Ipv6Packet::new_checked(inner).map(Inner::Ipv6),
        other => return Err(UdpDecapError::UnsupportedNextHeader(other)),
    }
    .map_err(UdpDecapError::Inner)
}

/// ICMP Echo Request (RFC 792), the keepalive's inner datagram.
const ICMP_ECHO_REQUEST: u8 = 8;

/// RFC 3519 §4.9: the mobile node's keepalive, an ICMP Echo Request from
/// its home address to the home agent carried as tunnel data, so that it
/// takes the very path (and NAT mapping) the tunnel data takes; the home
/// agent's kernel answers it through the tunnel, which refreshes the
/// mapping from both sides. Written into `out` (cleared first) as the UDP
/// payload: the Tunnel Data header, then the IP datagram.
pub fn keepalive(home: Ipv4Addr, home_agent: Ipv4Addr, ident: u16, seq: u16, out: &mut Vec<u8>) {
    let mut icmp = [0u8; 8];
    icmp[0] = ICMP_ECHO_REQUEST;
    icmp[4..6].copy_from_slice(&ident.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = [0u8; MIN_HEADER_LEN];
    Ipv4Repr {
        src: home,
        dst: home_agent,
        protocol: PROTO_ICMP,
        tos: 0,
        ident: seq,
        dont_frag: false,
        ttl: super::ipip::DEFAULT_TTL,
        payload_len: icmp.len(),
    }
    .emit(&mut ip);
    out.clear();
    out.extend_from_slice(&[TUNNEL_DATA_TYPE, NEXT_HEADER_IPV4, 0, 0]);
    out.extend_from_slice(&ip);
    out.extend_from_slice(&icmp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ipip::tests::inner_datagram;
    use proptest::prelude::*;

    /// DF of the outer header follows the inner datagram: copied from
    /// IPv4, set for IPv6 above 1280 bytes only.
    #[test]
    fn outer_df_is_copied_from_ipv4_and_set_for_ipv6_above_1280() {
        let (a, b) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let mut msg = Vec::new();
        for df in [true, false] {
            encapsulate(&inner_datagram(a, b, 0, df, &[0; 1400]), &mut msg).unwrap();
            assert_eq!(outer_dont_frag(&msg), df);
        }
        for (len, df) in [(1280, false), (1281, true), (1468, true), (100, false)] {
            let mut d = vec![0x60, 0, 0, 0];
            d.extend_from_slice(&u16::try_from(len - 40).unwrap().to_be_bytes());
            d.extend_from_slice(&[59, 64]);
            d.resize(len, 0);
            encapsulate_ipv6(&d, &mut msg).unwrap();
            assert_eq!(outer_dont_frag(&msg), df, "{len} bytes of IPv6");
        }
        keepalive(a, b, 1, 1, &mut msg);
        assert!(!outer_dont_frag(&msg));
    }

    #[test]
    fn header_is_type_4_next_header_4() {
        let inner = inner_datagram(
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            0,
            false,
            b"p",
        );
        let mut out = Vec::new();
        encapsulate(&inner, &mut out).unwrap();
        assert_eq!(&out[..4], &[4, 4, 0, 0]);
        assert!(matches!(decapsulate(&out), Ok(Inner::Ipv4(p)) if p.packet() == &inner[..]));
    }

    /// RFC 5454 §3.9: IPv6 in Tunnel Data has next header 41.
    #[test]
    fn ipv6_tunnel_data_has_next_header_41() {
        let inner =
            crate::dataplane::ipv6::tests::ipv6_datagram("2001:db8::1", "2001:db8::2", b"p");
        let mut out = Vec::new();
        encapsulate_ipv6(&inner, &mut out).unwrap();
        assert_eq!(&out[..4], &[4, 41, 0, 0]);
        assert!(matches!(decapsulate(&out), Ok(Inner::Ipv6(p)) if p.packet() == &inner[..]));
        assert!(matches!(
            decapsulate(&[4, 41, 0, 0, 0x60]),
            Err(UdpDecapError::Inner(_))
        ));
    }

    #[test]
    fn registration_and_broken_messages_are_told_apart() {
        assert_eq!(
            decapsulate(&[1, 0, 0, 0]).unwrap_err(),
            UdpDecapError::NotTunnelData(1)
        );
        assert_eq!(decapsulate(&[4, 4]).unwrap_err(), UdpDecapError::Truncated);
        assert_eq!(
            decapsulate(&[4, 47, 0, 0]).unwrap_err(),
            UdpDecapError::UnsupportedNextHeader(47)
        );
        assert!(matches!(
            decapsulate(&[4, 4, 0, 0, 0x45]),
            Err(UdpDecapError::Inner(_))
        ));
    }

    #[test]
    fn keepalive_is_an_echo_request_from_home_in_tunnel_data() {
        let (home, ha) = (Ipv4Addr::new(10, 1, 100, 5), Ipv4Addr::new(10, 1, 1, 2));
        let mut out = Vec::new();
        keepalive(home, ha, 0x3519, 7, &mut out);
        let Ok(Inner::Ipv4(inner)) = decapsulate(&out) else {
            panic!("keepalive is IPv4 tunnel data");
        };
        assert_eq!((inner.src_addr(), inner.dst_addr()), (home, ha));
        assert_eq!(inner.protocol(), 1);
        let icmp = inner.payload();
        assert_eq!(&icmp[..2], &[8, 0], "echo request, code 0");
        assert_eq!(&icmp[4..8], &[0x35, 0x19, 0, 7], "identifier, sequence");
        assert_eq!(checksum(icmp), 0, "ICMP checksum");
    }

    proptest! {
        #[test]
        fn udp_decapsulate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decapsulate(&bytes);
        }
    }
}
