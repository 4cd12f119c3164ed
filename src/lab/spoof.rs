//! Spoofed reverse-tunnelled datagrams (`lab::ipip-send`): what an
//! attacker on the care-of address's path, or a compromised mobile node,
//! sends to make the home agent forward a forged source into the intranet.
//! RFC 3024 §4.3 has the HA drop them; the scenario checks that it does
//! and that the correspondent never sees one.

use std::net::{Ipv4Addr, SocketAddrV4};

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

/// Sends whole IPv4 datagrams from inside `ns` through a raw socket
/// (IPPROTO_RAW: the header is ours, source included).
pub fn send_raw(ns: &Netns, datagrams: Vec<Vec<u8>>) -> Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let name = ns.name().to_string();
    std::thread::spawn(move || -> Result<()> {
        netns::enter(&name)?;
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
    .join()
    .map_err(|_| Error::Other("the raw sender thread panicked".into()))?
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
}
