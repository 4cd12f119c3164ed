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

use super::ipv4::{HeaderError, Ipv4Packet};

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

/// Reads a UDP payload received on the Mobile IP port.
pub fn decapsulate(msg: &[u8]) -> Result<Ipv4Packet<&[u8]>, UdpDecapError> {
    match msg.first() {
        None => return Err(UdpDecapError::NotTunnelData(0)),
        Some(&t) if t != TUNNEL_DATA_TYPE => return Err(UdpDecapError::NotTunnelData(t)),
        Some(_) => {}
    }
    if msg.len() < HEADER_LEN {
        return Err(UdpDecapError::Truncated);
    }
    if msg[1] != NEXT_HEADER_IPV4 {
        return Err(UdpDecapError::UnsupportedNextHeader(msg[1]));
    }
    // Reserved: sent as zero, ignored on receipt.
    Ipv4Packet::new_checked(&msg[HEADER_LEN..]).map_err(UdpDecapError::Inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ipip::tests::inner_datagram;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

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
        assert_eq!(decapsulate(&out).unwrap().packet(), &inner[..]);
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

    proptest! {
        #[test]
        fn udp_decapsulate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decapsulate(&bytes);
        }
    }
}
