//! One datagram in, one decision out: the whole per-packet logic of the
//! userspace data plane, free of sockets so it is tested byte for byte.
//! The I/O loop in [`super::userspace`] only moves buffers.
//!
//! IPv6 (DSMIPv4, RFC 5454) rides the same tunnels: to the care-of
//! address as IPv4 protocol 41 (or RFC 3519 next header 41, §3.9), or to
//! the home address as protocol 41 between the HA and the home address
//! inside the binding's IPv4 tunnel. Either way the home agent believes
//! an inner IPv6 source only inside the prefix registered for the tunnel
//! it came through (§3.3.2, §4); anything else is a spoof, dropped and
//! counted.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::binding::{BindingTable, Encapsulation, Endpoint, Ipv6TunnelTo, Role, TunnelBinding};
use super::ingress::{self, Counters};
use super::ipip::{self, EncapError, OuterHeader};
use super::ipv4::Ipv4Packet;
use super::ipv6::{self, Ipv6Packet, PROTO_IPV6};
use super::udp::{self, UdpDecapError};

/// Where an encapsulated datagram in `out` must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub encapsulation: Encapsulation,
    /// The outer source: the binding's local end (at the MN, the care-of
    /// address), checked once more just before the send
    /// ([`super::source`]).
    pub from: Ipv4Addr,
    /// For IP-in-IP `out` is a whole IP datagram (whose outer header the
    /// kernel writes again, [`super::raw_egress`]) and the port is 0; for
    /// RFC 3519 `out` is the UDP payload.
    pub to: SocketAddrV4,
}

/// A datagram the kernel routed into the tunnel device: find its binding
/// (by inner destination at the HA, inner source at the MN) and
/// encapsulate it into `out`.
pub fn from_device(
    role: Role,
    bindings: &BindingTable,
    datagram: &[u8],
    ident: u16,
    ttl: u8,
    out: &mut Vec<u8>,
    counters: &Counters,
) -> Option<Transmit> {
    if datagram.first().is_some_and(|v| v >> 4 == 6) {
        return ipv6_from_device(role, bindings, datagram, ident, ttl, out, counters);
    }
    let Ok(inner) = Ipv4Packet::new_checked(datagram) else {
        Counters::bump(&counters.malformed);
        return None;
    };
    let key = match role {
        Role::HomeAgent => inner.dst_addr(),
        Role::MobileNode => inner.src_addr(),
    };
    let Some(b) = bindings.get(key) else {
        Counters::bump(&counters.no_binding);
        return None;
    };
    let result = encapsulate_ipv4(b, inner, ident, ttl, out);
    sent(b, result, counters)
}

/// An IPv6 datagram from the device (RFC 5454): the binding whose prefix
/// holds its destination (HA) or source (MN), then the negotiated tunnel.
fn ipv6_from_device(
    role: Role,
    bindings: &BindingTable,
    datagram: &[u8],
    ident: u16,
    ttl: u8,
    out: &mut Vec<u8>,
    counters: &Counters,
) -> Option<Transmit> {
    let Ok(p) = Ipv6Packet::new_checked(datagram) else {
        Counters::bump(&counters.malformed);
        return None;
    };
    let key = match role {
        Role::HomeAgent => p.dst_addr(),
        Role::MobileNode => p.src_addr(),
    };
    let Some((b, v6)) = bindings
        .home_of_ipv6(key)
        .and_then(|(home, v6)| Some((bindings.get(home)?, v6)))
    else {
        Counters::bump(&counters.no_binding);
        return None;
    };
    let result = match (v6.tunnel_to, b.encapsulation) {
        (Ipv6TunnelTo::CareOf, Encapsulation::IpInIp) => {
            let outer = OuterHeader {
                src: b.local,
                dst: *b.remote.ip(),
                ttl,
            };
            ipv6::encapsulate(p.packet(), &outer, ident, out)
        }
        (Ipv6TunnelTo::CareOf, Encapsulation::Udp) => {
            udp::encapsulate_ipv6(p.packet(), out).map_err(EncapError::Inner)
        }
        (Ipv6TunnelTo::HomeAddress, _) => {
            // IPv6 in IPv4 between the HA and the home address, then the
            // binding's own IPv4 tunnel around it.
            let (src, dst) = match role {
                Role::HomeAgent => (b.local, b.home),
                Role::MobileNode => (b.home, *b.remote.ip()),
            };
            let mut v4 = Vec::with_capacity(datagram.len() + 20);
            ipv6::encapsulate(p.packet(), &OuterHeader { src, dst, ttl }, ident, &mut v4).and_then(
                |()| {
                    let inner = Ipv4Packet::new_checked(&v4[..]).map_err(EncapError::Inner)?;
                    encapsulate_ipv4(b, inner, ident, ttl, out)
                },
            )
        }
    };
    sent(b, result, counters)
}

/// The binding's IPv4 tunnel around `inner`: IP in IP, or RFC 3519 UDP.
fn encapsulate_ipv4(
    b: &TunnelBinding,
    inner: Ipv4Packet<&[u8]>,
    ident: u16,
    ttl: u8,
    out: &mut Vec<u8>,
) -> Result<(), EncapError> {
    match b.encapsulation {
        Encapsulation::IpInIp => {
            let outer = OuterHeader {
                src: b.local,
                dst: *b.remote.ip(),
                ttl,
            };
            ipip::encapsulate(inner.packet(), &outer, ident, out)
        }
        Encapsulation::Udp => {
            if inner.src_addr() == *b.remote.ip() {
                Err(EncapError::Loop)
            } else {
                udp::encapsulate(inner.packet(), out).map_err(EncapError::Inner)
            }
        }
    }
}

fn sent(
    b: &TunnelBinding,
    result: Result<(), EncapError>,
    counters: &Counters,
) -> Option<Transmit> {
    match result {
        Ok(()) => {
            Counters::bump(&counters.encapsulated);
            Some(Transmit {
                encapsulation: b.encapsulation,
                from: b.local,
                to: b.remote,
            })
        }
        Err(EncapError::Loop) => {
            Counters::bump(&counters.loops);
            None
        }
        Err(_) => {
            Counters::bump(&counters.malformed);
            None
        }
    }
}

/// A datagram read from a raw socket, protocol 4 (IP in IP) or 41 (IPv6
/// in IPv4 to the care-of address): decapsulate and apply the ingress
/// check. Returns the inner datagram to write into the device.
pub fn from_raw<'a>(
    role: Role,
    bindings: &BindingTable,
    datagram: &'a [u8],
    counters: &Counters,
) -> Option<&'a [u8]> {
    if let Some(v6) = ipv6_in_ipv4(datagram) {
        return match v6 {
            Ok((outer_src, p)) => {
                accept_ipv6(role, bindings, &Endpoint::ipip(outer_src), p, counters)
            }
            Err(()) => {
                Counters::bump(&counters.malformed);
                None
            }
        };
    }
    let Ok(d) = ipip::decapsulate(datagram) else {
        Counters::bump(&counters.malformed);
        return None;
    };
    accept(
        role,
        bindings,
        &Endpoint::ipip(d.outer_src),
        d.inner,
        counters,
    )
}

/// `Some` when `datagram` is IPv4 protocol 41: its outer source and the
/// IPv6 datagram inside, or `Err` when either header is broken.
#[allow(clippy::type_complexity)]
fn ipv6_in_ipv4(datagram: &[u8]) -> Option<Result<(Ipv4Addr, Ipv6Packet<'_>), ()>> {
    let outer = Ipv4Packet::new_checked(datagram).ok()?;
    if outer.protocol() != PROTO_IPV6 {
        return None;
    }
    if outer.is_fragment() {
        return Some(Err(()));
    }
    let payload = &datagram[outer.header_len()..outer.total_len()];
    Some(
        Ipv6Packet::new_checked(payload)
            .map(|p| (outer.src_addr(), p))
            .map_err(|_| ()),
    )
}

/// What to do with a UDP datagram received on the Mobile IP port.
#[derive(Debug, PartialEq, Eq)]
pub enum UdpInput<'a> {
    /// Tunnel data that passed the checks: write it into the device.
    Deliver(&'a [u8]),
    /// A registration or other control message: the caller's business.
    Control,
    /// Dropped and counted.
    Dropped,
}

pub fn from_udp<'a>(
    role: Role,
    bindings: &BindingTable,
    from: SocketAddrV4,
    msg: &'a [u8],
    counters: &Counters,
) -> UdpInput<'a> {
    // Tunnel data is not authenticated: it never moves a binding's
    // endpoint (RFC 3519 §6.1.2). Only the endpoint an authenticated
    // registration recorded is believed; anything else, a NAT's new port
    // included, is dropped and counted.
    let ep = Endpoint::new(Encapsulation::Udp, from);
    let delivered = match udp::decapsulate(msg) {
        Ok(udp::Inner::Ipv4(inner)) => accept(role, bindings, &ep, inner, counters),
        Ok(udp::Inner::Ipv6(p)) => accept_ipv6(role, bindings, &ep, p, counters),
        Err(UdpDecapError::NotTunnelData(_)) => return UdpInput::Control,
        Err(_) => {
            Counters::bump(&counters.malformed);
            return UdpInput::Dropped;
        }
    };
    match delivered {
        Some(d) => UdpInput::Deliver(d),
        None => UdpInput::Dropped,
    }
}

/// An IPv4 datagram out of a tunnel: the RFC 3024 check, then, when it is
/// IPv6 in IPv4 between the HA and the home address (RFC 5454 code 0),
/// the IPv6 inside it.
fn accept<'a>(
    role: Role,
    bindings: &BindingTable,
    from: &Endpoint,
    inner: Ipv4Packet<&'a [u8]>,
    counters: &Counters,
) -> Option<&'a [u8]> {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (inner.src_addr(), inner.dst_addr());
    let home = match ingress::check(role, bindings, from, src, dst) {
        Ok(home) => home,
        Err(drop) => {
            counters.record_drop(drop);
            return None;
        }
    };
    let to_tunnel_end = bindings.get(home).is_some_and(|b| match role {
        Role::HomeAgent => dst == b.local,
        Role::MobileNode => src == *b.remote.ip(),
    });
    if inner.protocol() == PROTO_IPV6 && to_tunnel_end && !inner.is_fragment() {
        let header_len = inner.header_len();
        let Ok(p) = Ipv6Packet::new_checked(&inner.into_packet()[header_len..]) else {
            Counters::bump(&counters.malformed);
            return None;
        };
        return check_ipv6(role, bindings, &[home], p, counters);
    }
    Counters::bump(&counters.decapsulated);
    Some(inner.into_packet())
}

/// IPv6 straight out of a tunnel to the care-of address (RFC 5454 code 1).
fn accept_ipv6<'a>(
    role: Role,
    bindings: &BindingTable,
    from: &Endpoint,
    p: Ipv6Packet<'a>,
    counters: &Counters,
) -> Option<&'a [u8]> {
    let homes = bindings.homes_at(from);
    if homes.is_empty() {
        // A binding that moved off `from` a moment ago
        // (`binding::MOVE_GRACE`); looked up only here, off the common path.
        let left: Vec<Ipv4Addr> = bindings.left_at(from, std::time::Instant::now()).collect();
        if left.is_empty() {
            Counters::bump(&counters.unknown_tunnel_source);
            return None;
        }
        return check_ipv6(role, bindings, &left, p, counters);
    }
    check_ipv6(role, bindings, homes, p, counters)
}

/// RFC 5454 §3.3.2, §4: the inner IPv6 source (at the HA; the destination
/// at the MN) must lie in the prefix registered for one of `homes`, the
/// bindings of the tunnel it came through. Link-local addresses never
/// leave the tunnel's link (the HA's device is shared by every node).
fn check_ipv6<'a>(
    role: Role,
    bindings: &BindingTable,
    homes: &[Ipv4Addr],
    p: Ipv6Packet<'a>,
    counters: &Counters,
) -> Option<&'a [u8]> {
    if ipv6::is_link_local(p.src_addr()) || ipv6::is_link_local(p.dst_addr()) {
        Counters::bump(&counters.ipv6_link_local);
        return None;
    }
    let inner = match role {
        Role::HomeAgent => p.src_addr(),
        Role::MobileNode => p.dst_addr(),
    };
    let ok = homes
        .iter()
        .filter_map(|h| bindings.ipv6_of(*h))
        .any(|v6| v6.prefix.contains(&inner));
    if !ok {
        Counters::bump(&counters.ipv6_source_spoofed);
        return None;
    }
    Counters::bump(&counters.decapsulated);
    Some(p.packet())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::binding::TunnelBinding;
    use crate::dataplane::ipip::tests::inner_datagram;
    use crate::dataplane::ipip::DEFAULT_TTL;
    use proptest::prelude::*;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const COA1: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    const COA2: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const HOA1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
    const HOA2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    const CN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

    /// An HA with two MNs, one over IP-in-IP and one over UDP.
    fn ha_table() -> BindingTable {
        let mut t = BindingTable::default();
        t.insert(TunnelBinding {
            home: HOA1,
            local: HA,
            remote: SocketAddrV4::new(COA1, 0),
            encapsulation: Encapsulation::IpInIp,
        });
        t.insert(TunnelBinding {
            home: HOA2,
            local: HA,
            remote: SocketAddrV4::new(COA2, 41000),
            encapsulation: Encapsulation::Udp,
        });
        t
    }

    #[test]
    fn ha_demultiplexes_two_bindings_both_ways() {
        let t = ha_table();
        let c = Counters::default();
        let mut out = Vec::new();

        let to1 = inner_datagram(CN, HOA1, 0, false, b"one");
        let tx = from_device(Role::HomeAgent, &t, &to1, 1, DEFAULT_TTL, &mut out, &c).unwrap();
        assert_eq!(tx.to, SocketAddrV4::new(COA1, 0));
        assert_eq!(tx.encapsulation, Encapsulation::IpInIp);
        let d = ipip::decapsulate(&out).unwrap();
        assert_eq!((d.outer_src, d.outer_dst), (HA, COA1));

        let to2 = inner_datagram(CN, HOA2, 0, false, b"two");
        let tx = from_device(Role::HomeAgent, &t, &to2, 2, DEFAULT_TTL, &mut out, &c).unwrap();
        assert_eq!(tx.to, SocketAddrV4::new(COA2, 41000));
        assert_eq!(&out[..4], &[4, 4, 0, 0]);
        assert_eq!(&out[4..], &to2[..]);

        // Reverse tunnel from MN 1 (IP-in-IP): accepted.
        let from1 = inner_datagram(HOA1, CN, 0, false, b"r1");
        let mut outer = Vec::new();
        let oh = OuterHeader {
            src: COA1,
            dst: HA,
            ttl: 64,
        };
        ipip::encapsulate(&from1, &oh, 9, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), Some(&from1[..]));

        // MN 2's home address inside MN 1's tunnel: refused.
        let spoof = inner_datagram(HOA2, CN, 0, false, b"spoof");
        ipip::encapsulate(&spoof, &oh, 10, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None);

        // Reverse tunnel from MN 2 (UDP): accepted from its port only.
        let from2 = inner_datagram(HOA2, CN, 0, false, b"r2");
        let mut msg = Vec::new();
        udp::encapsulate(&from2, &mut msg).unwrap();
        assert_eq!(
            from_udp(
                Role::HomeAgent,
                &t,
                SocketAddrV4::new(COA2, 41000),
                &msg,
                &c
            ),
            UdpInput::Deliver(&from2[..])
        );
        assert_eq!(
            from_udp(
                Role::HomeAgent,
                &t,
                SocketAddrV4::new(COA1, 41000),
                &msg,
                &c
            ),
            UdpInput::Dropped
        );
        // An IP-in-IP binding never moves on unauthenticated UDP.
        let from1_udp = {
            let mut m = Vec::new();
            udp::encapsulate(&from1, &mut m).unwrap();
            m
        };
        assert_eq!(
            from_udp(
                Role::HomeAgent,
                &t,
                SocketAddrV4::new(COA1, 41000),
                &from1_udp,
                &c
            ),
            UdpInput::Dropped
        );
        assert_eq!(
            from_udp(
                Role::HomeAgent,
                &t,
                SocketAddrV4::new(COA2, 41000),
                &[1, 0],
                &c
            ),
            UdpInput::Control
        );

        let s = c.snapshot();
        assert_eq!(s.encapsulated, 2);
        assert_eq!(s.decapsulated, 2);
        assert_eq!(s.inner_address_mismatch, 1);
        assert_eq!(s.unknown_tunnel_source, 2);
    }

    /// RFC 3519 §6.1.2: another host behind MN 2's NAT (the same public
    /// address, another port) forges tunnel data, even a keepalive, with
    /// MN 2's home address inside. Dropped and counted; the binding and
    /// the traffic to MN 2 stay where its registration put them.
    #[test]
    fn forged_tunnel_data_from_the_nat_never_moves_a_binding() {
        let t = ha_table();
        let c = Counters::default();
        let forger = SocketAddrV4::new(COA2, 41001);
        let data = inner_datagram(HOA2, CN, 0, false, b"forged");
        let mut keepalive = Vec::new();
        udp::keepalive(HOA2, HA, 1, 1, &mut keepalive);
        let mut msg = Vec::new();
        udp::encapsulate(&data, &mut msg).unwrap();
        for m in [&msg, &keepalive] {
            assert_eq!(
                from_udp(Role::HomeAgent, &t, forger, m, &c),
                UdpInput::Dropped
            );
        }
        assert_eq!(t.get(HOA2).unwrap().remote, SocketAddrV4::new(COA2, 41000));
        let s = c.snapshot();
        assert_eq!((s.unknown_tunnel_source, s.decapsulated), (2, 0));

        let mut out = Vec::new();
        let to2 = inner_datagram(CN, HOA2, 0, false, b"to mn 2");
        let tx = from_device(Role::HomeAgent, &t, &to2, 1, DEFAULT_TTL, &mut out, &c).unwrap();
        assert_eq!(tx.to, SocketAddrV4::new(COA2, 41000));
    }

    #[test]
    fn unroutable_and_malformed_device_datagrams_are_counted() {
        let t = ha_table();
        let c = Counters::default();
        let mut out = Vec::new();
        let stray = inner_datagram(CN, Ipv4Addr::new(203, 0, 113, 99), 0, false, b"");
        assert!(from_device(Role::HomeAgent, &t, &stray, 1, 64, &mut out, &c).is_none());
        let ipv6 = [0x60u8; 40];
        assert!(from_device(Role::HomeAgent, &t, &ipv6, 1, 64, &mut out, &c).is_none());
        let back_to_coa = inner_datagram(COA1, HOA1, 0, false, b"");
        assert!(from_device(Role::HomeAgent, &t, &back_to_coa, 1, 64, &mut out, &c).is_none());
        let s = c.snapshot();
        assert_eq!(
            (s.no_binding, s.malformed, s.loops, s.encapsulated),
            (1, 1, 1, 0)
        );
    }

    /// The HA table with prefixes: MN 1 over IP-in-IP with IPv6 to its
    /// care-of address, MN 2 over UDP with IPv6 to its home address.
    fn ha_table_v6() -> BindingTable {
        use crate::dataplane::binding::Ipv6Binding;
        let mut t = ha_table();
        let v6 = |p: &str, to| Ipv6Binding {
            prefix: p.parse().unwrap(),
            tunnel_to: to,
        };
        t.set_ipv6(HOA1, Some(v6("2001:db8:1::/64", Ipv6TunnelTo::CareOf)));
        t.set_ipv6(HOA2, Some(v6("2001:db8:2::/64", Ipv6TunnelTo::HomeAddress)));
        t
    }

    /// RFC 5454 §2.2: IPv6 for MN 1's prefix leaves as protocol 41 to its
    /// care-of address; for MN 2's as protocol 41 to its home address
    /// inside the RFC 3519 tunnel. Each comes back the same way.
    #[test]
    fn ipv6_goes_where_the_prefix_reply_said_both_ways() {
        use crate::dataplane::ipv6::tests::ipv6_datagram;
        let t = ha_table_v6();
        let c = Counters::default();
        let mut out = Vec::new();

        let to1 = ipv6_datagram("2001:db8:99::1", "2001:db8:1::5", b"to one");
        let tx = from_device(Role::HomeAgent, &t, &to1, 1, 64, &mut out, &c).unwrap();
        assert_eq!(tx.to, SocketAddrV4::new(COA1, 0));
        let o = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert_eq!((o.src_addr(), o.dst_addr(), o.protocol()), (HA, COA1, 41));
        assert_eq!(o.payload(), &to1[..]);
        // Back from MN 1: straight IPv6 in IPv4 from its care-of address.
        let from1 = ipv6_datagram("2001:db8:1::5", "2001:db8:99::1", b"from one");
        let oh = OuterHeader {
            src: COA1,
            dst: HA,
            ttl: 64,
        };
        let mut outer = Vec::new();
        ipv6::encapsulate(&from1, &oh, 3, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), Some(&from1[..]));

        let to2 = ipv6_datagram("2001:db8:99::1", "2001:db8:2::5", b"to two");
        let tx = from_device(Role::HomeAgent, &t, &to2, 2, 64, &mut out, &c).unwrap();
        assert_eq!(tx.to, SocketAddrV4::new(COA2, 41000));
        assert_eq!(&out[..4], &[4, 4, 0, 0], "IPv4 tunnel data");
        let i = Ipv4Packet::new_checked(&out[4..]).unwrap();
        assert_eq!((i.src_addr(), i.dst_addr(), i.protocol()), (HA, HOA2, 41));
        assert_eq!(i.payload(), &to2[..]);
        // Back from MN 2: IPv6 in IPv4 from its home address, in UDP.
        let from2 = ipv6_datagram("2001:db8:2::5", "2001:db8:99::1", b"from two");
        let hoa_tunnel = ipv6::home_address_tunnel(HA, HOA2, 64);
        let back = OuterHeader {
            src: HOA2,
            dst: HA,
            ..hoa_tunnel
        };
        let mut v4 = Vec::new();
        ipv6::encapsulate(&from2, &back, 4, &mut v4).unwrap();
        let mut msg = Vec::new();
        udp::encapsulate(&v4, &mut msg).unwrap();
        let nat = SocketAddrV4::new(COA2, 41000);
        assert_eq!(
            from_udp(Role::HomeAgent, &t, nat, &msg, &c),
            UdpInput::Deliver(&from2[..])
        );
        // RFC 5454 §3.9: next header 41 behind the NAT works too.
        udp::encapsulate_ipv6(&from2, &mut msg).unwrap();
        assert_eq!(
            from_udp(Role::HomeAgent, &t, nat, &msg, &c),
            UdpInput::Deliver(&from2[..])
        );

        let s = c.snapshot();
        assert_eq!((s.encapsulated, s.decapsulated), (2, 3));
        assert_eq!((s.ipv6_source_spoofed, s.ipv6_link_local), (0, 0));
    }

    /// A move: what MN 1 sent through its previous care-of address before
    /// it had the reply still passes there (`binding::MOVE_GRACE`), IPv4
    /// and IPv6 alike, for its own addresses only; its deregistration
    /// ends that.
    #[test]
    fn a_moved_binding_still_passes_what_comes_through_its_old_care_of_address() {
        use crate::dataplane::ipv6::tests::ipv6_datagram;
        let mut t = ha_table_v6();
        t.insert(TunnelBinding {
            home: HOA1,
            local: HA,
            remote: SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 3), 0),
            encapsulation: Encapsulation::IpInIp,
        });
        let c = Counters::default();
        let old = OuterHeader {
            src: COA1,
            dst: HA,
            ttl: 64,
        };
        let mut outer = Vec::new();
        let late4 = inner_datagram(HOA1, CN, 0, false, b"late");
        ipip::encapsulate(&late4, &old, 1, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), Some(&late4[..]));
        let late6 = ipv6_datagram("2001:db8:1::5", "2001:db8:99::1", b"late");
        ipv6::encapsulate(&late6, &old, 2, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), Some(&late6[..]));
        // Not MN 2's, nor any address outside MN 1's.
        let other4 = inner_datagram(HOA2, CN, 0, false, b"x");
        ipip::encapsulate(&other4, &old, 3, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None);
        let other6 = ipv6_datagram("2001:db8:2::5", "2001:db8:99::1", b"x");
        ipv6::encapsulate(&other6, &old, 4, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None);
        // Deregistered: nothing from the old address any more.
        t.remove(HOA1);
        ipip::encapsulate(&late4, &old, 5, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None);
        let s = c.snapshot();
        assert_eq!((s.decapsulated, s.unknown_tunnel_source), (2, 2));
        assert_eq!((s.inner_address_mismatch, s.ipv6_source_spoofed), (0, 1));
    }

    /// RFC 5454 §3.3.2, §4: an inner IPv6 source outside the prefix of the
    /// tunnel's own binding (another node's prefix, any other address) is
    /// a spoof; link-local never crosses into the shared device. Dropped
    /// and counted, whichever way it was tunnelled.
    #[test]
    fn spoofed_and_link_local_ipv6_sources_are_dropped_and_counted() {
        use crate::dataplane::ipv6::tests::ipv6_datagram;
        let t = ha_table_v6();
        let c = Counters::default();
        let oh = OuterHeader {
            src: COA1,
            dst: HA,
            ttl: 64,
        };
        let mut outer = Vec::new();
        for src in ["2001:db8:2::5", "2001:db8:99::7", "fe80::1"] {
            let d = ipv6_datagram(src, "2001:db8:99::1", b"x");
            ipv6::encapsulate(&d, &oh, 1, &mut outer).unwrap();
            assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None, "{src}");
        }
        // MN 2's own home-address tunnel carrying MN 1's prefix.
        let d = ipv6_datagram("2001:db8:1::5", "2001:db8:99::1", b"x");
        let mut v4 = Vec::new();
        let back = OuterHeader {
            src: HOA2,
            dst: HA,
            ttl: 64,
        };
        ipv6::encapsulate(&d, &back, 1, &mut v4).unwrap();
        let mut msg = Vec::new();
        udp::encapsulate(&v4, &mut msg).unwrap();
        let nat = SocketAddrV4::new(COA2, 41000);
        assert_eq!(
            from_udp(Role::HomeAgent, &t, nat, &msg, &c),
            UdpInput::Dropped
        );
        // Protocol 41 from no registered care-of address.
        let stranger = OuterHeader {
            src: CN,
            dst: HA,
            ttl: 64,
        };
        ipv6::encapsulate(&d, &stranger, 1, &mut outer).unwrap();
        assert_eq!(from_raw(Role::HomeAgent, &t, &outer, &c), None);
        let s = c.snapshot();
        assert_eq!(
            (
                s.ipv6_source_spoofed,
                s.ipv6_link_local,
                s.unknown_tunnel_source,
                s.decapsulated
            ),
            (3, 1, 1, 0)
        );
        // No prefix registered: nothing for it is tunnelled.
        let mut t = t;
        t.set_ipv6(HOA1, None);
        let mut out = Vec::new();
        let to1 = ipv6_datagram("2001:db8:99::1", "2001:db8:1::5", b"");
        assert!(from_device(Role::HomeAgent, &t, &to1, 1, 64, &mut out, &c).is_none());
        assert_eq!(c.snapshot().no_binding, 1);
    }

    /// The mobile node's side: its prefix's IPv6 goes to the HA the way
    /// the reply said, and only IPv6 for its prefix from its HA comes in.
    #[test]
    fn mobile_node_tunnels_its_prefix_and_accepts_only_its_prefix() {
        use crate::dataplane::binding::Ipv6Binding;
        use crate::dataplane::ipv6::tests::ipv6_datagram;
        let mut t = BindingTable::default();
        t.insert(TunnelBinding {
            home: HOA1,
            local: COA1,
            remote: SocketAddrV4::new(HA, 0),
            encapsulation: Encapsulation::IpInIp,
        });
        t.set_ipv6(
            HOA1,
            Some(Ipv6Binding {
                prefix: "2001:db8:1::/64".parse().unwrap(),
                tunnel_to: Ipv6TunnelTo::HomeAddress,
            }),
        );
        let c = Counters::default();
        let mut out = Vec::new();
        let up = ipv6_datagram("2001:db8:1::5", "2001:db8:99::1", b"up");
        from_device(Role::MobileNode, &t, &up, 1, 64, &mut out, &c).unwrap();
        let d = ipip::decapsulate(&out).unwrap();
        assert_eq!((d.outer_src, d.outer_dst), (COA1, HA));
        assert_eq!(
            (d.inner.src_addr(), d.inner.dst_addr(), d.inner.protocol()),
            (HOA1, HA, 41)
        );

        for (dst, delivered) in [("2001:db8:1::5", true), ("2001:db8:2::5", false)] {
            let down = ipv6_datagram("2001:db8:99::1", dst, b"down");
            let mut v4 = Vec::new();
            ipv6::encapsulate(&down, &ipv6::home_address_tunnel(HA, HOA1, 64), 1, &mut v4).unwrap();
            let oh = OuterHeader {
                src: HA,
                dst: COA1,
                ttl: 64,
            };
            ipip::encapsulate(&v4, &oh, 2, &mut out).unwrap();
            let got = from_raw(Role::MobileNode, &t, &out, &c);
            assert_eq!(got.is_some(), delivered, "{dst}");
        }
        assert_eq!(c.snapshot().ipv6_source_spoofed, 1);
    }

    proptest! {
        /// Whatever arrives from the network, nothing panics and every
        /// datagram is either delivered or counted exactly once.
        #[test]
        fn every_network_datagram_is_delivered_or_counted(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            port in any::<u16>(),
        ) {
            let t = ha_table();
            let c = Counters::default();
            let delivered = from_raw(Role::HomeAgent, &t, &bytes, &c).is_some() as u64;
            let s = c.snapshot();
            let v6 = s.ipv6_source_spoofed + s.ipv6_link_local;
            prop_assert_eq!(delivered + s.malformed + s.unknown_tunnel_source + s.inner_address_mismatch + v6, 1);
            let c = Counters::default();
            let r = from_udp(Role::HomeAgent, &t, SocketAddrV4::new(COA2, port), &bytes, &c);
            let s = c.snapshot();
            let counted = s.malformed + s.unknown_tunnel_source + s.inner_address_mismatch
                + s.ipv6_source_spoofed + s.ipv6_link_local;
            match r {
                UdpInput::Deliver(_) => prop_assert_eq!(counted, 0),
                UdpInput::Control => prop_assert_eq!(counted, 0),
                UdpInput::Dropped => prop_assert_eq!(counted, 1),
            }
        }
    }
}
