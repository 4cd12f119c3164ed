//! One datagram in, one decision out: the whole per-packet logic of the
//! userspace data plane, free of sockets so it is tested byte for byte.
//! The I/O loop in [`super::userspace`] only moves buffers.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::binding::{BindingTable, Encapsulation, Endpoint, Role};
use super::ingress::{self, Counters};
use super::ipip::{self, EncapError, OuterHeader};
use super::ipv4::Ipv4Packet;
use super::udp::{self, UdpDecapError};

/// Where an encapsulated datagram in `out` must be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub encapsulation: Encapsulation,
    /// For IP-in-IP `out` is a whole IP datagram (sent with IP_HDRINCL) and
    /// the port is 0; for RFC 3519 `out` is the UDP payload.
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
    let Ok(inner) = Ipv4Packet::new_checked(datagram) else {
        // The kernel also writes IPv6 into a TUN device; not ours to carry.
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
    let result = match b.encapsulation {
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
    };
    match result {
        Ok(()) => {
            Counters::bump(&counters.encapsulated);
            Some(Transmit {
                encapsulation: b.encapsulation,
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

/// A datagram read from the raw IP-in-IP socket: decapsulate and apply the
/// ingress check. Returns the inner datagram to write into the device.
pub fn from_raw<'a>(
    role: Role,
    bindings: &BindingTable,
    datagram: &'a [u8],
    counters: &Counters,
) -> Option<&'a [u8]> {
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
    match udp::decapsulate(msg) {
        Ok(inner) => {
            // Tunnel data is not authenticated: it never moves a
            // binding's endpoint (RFC 3519 §6.1.2). Only the endpoint an
            // authenticated registration recorded is believed; anything
            // else, a NAT's new port included, is dropped and counted.
            let ep = Endpoint::new(Encapsulation::Udp, from);
            match accept(role, bindings, &ep, inner, counters) {
                Some(d) => UdpInput::Deliver(d),
                None => UdpInput::Dropped,
            }
        }
        Err(UdpDecapError::NotTunnelData(_)) => UdpInput::Control,
        Err(_) => {
            Counters::bump(&counters.malformed);
            UdpInput::Dropped
        }
    }
}

fn accept<'a>(
    role: Role,
    bindings: &BindingTable,
    from: &Endpoint,
    inner: Ipv4Packet<&'a [u8]>,
    counters: &Counters,
) -> Option<&'a [u8]> {
    let (src, dst): (Ipv4Addr, Ipv4Addr) = (inner.src_addr(), inner.dst_addr());
    match ingress::check(role, bindings, from, src, dst) {
        Ok(_) => {
            Counters::bump(&counters.decapsulated);
            Some(inner.into_packet())
        }
        Err(drop) => {
            counters.record_drop(drop);
            None
        }
    }
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
            prop_assert_eq!(delivered + s.malformed + s.unknown_tunnel_source + s.inner_address_mismatch, 1);
            let c = Counters::default();
            let r = from_udp(Role::HomeAgent, &t, SocketAddrV4::new(COA2, port), &bytes, &c);
            let s = c.snapshot();
            let counted = s.malformed + s.unknown_tunnel_source + s.inner_address_mismatch;
            match r {
                UdpInput::Deliver(_) => prop_assert_eq!(counted, 0),
                UdpInput::Control => prop_assert_eq!(counted, 0),
                UdpInput::Dropped => prop_assert_eq!(counted, 1),
            }
        }
    }
}
