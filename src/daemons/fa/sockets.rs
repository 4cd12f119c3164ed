//! mip4-fa's sockets on the served links, read by one task each: per
//! served interface a raw ICMP socket (Agent Advertisements out, TTL 1, to
//! 224.0.0.1 or 255.255.255.255; Agent Solicitations in) and a packet
//! socket (Registration Requests in, with the link-layer source address
//! and TTL the FA needs; replies out by link-layer address), and an
//! unbound raw ICMP socket for the errors that come back about relayed
//! requests (80, 81, 82, 88).

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tracing::warn;

use crate::fa::link::parse_mip_datagram;
use crate::fa::Mac;
use crate::sys::packet::{PacketSocket, PACKET_OUTGOING};

/// What the reader tasks hand the main loop.
pub(super) enum Event {
    /// An ICMP message (IP header stripped) on served interface `iface`.
    Icmp { iface: usize, data: Vec<u8> },
    /// An ICMP message on the unbound socket (errors about relays).
    IcmpError(Vec<u8>),
    /// A datagram on UDP 434.
    Udp { src: SocketAddrV4, data: Vec<u8> },
    /// An IPv4 datagram from served interface `iface`'s packet socket.
    Link {
        iface: usize,
        mac: Mac,
        datagram: Vec<u8>,
    },
}

/// The raw ICMP socket of one served interface: bound to it, TTL 1
/// (RFC 5944 §2.3.1 for advertisements), member of 224.0.0.2 (all
/// routers: where Agent Solicitations go, §2.2) and 224.0.0.11 (all
/// mobility agents).
pub(super) fn icmp_socket(ifname: &str, addr: Ipv4Addr) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_ttl(1)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_loop_v4(false)?;
    s.set_broadcast(true)?;
    for g in [Ipv4Addr::new(224, 0, 0, 2), Ipv4Addr::new(224, 0, 0, 11)] {
        s.join_multicast_v4(&g, &addr)?;
    }
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

pub(super) async fn read_icmp(
    s: Arc<AsyncFd<Socket>>,
    iface: Option<usize>,
    tx: mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (_, range) = crate::daemons::icmp::recv(&s, &mut buf).await;
        let icmp = &buf[range];
        let ev = match iface {
            Some(i) if icmp.first() == Some(&crate::wire::icmp::TYPE_SOLICITATION) => Event::Icmp {
                iface: i,
                data: icmp.to_vec(),
            },
            None if icmp.first() == Some(&3) => Event::IcmpError(icmp.to_vec()),
            _ => continue,
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

pub(super) async fn read_link(
    s: Arc<AsyncFd<PacketSocket>>,
    iface: usize,
    tx: mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, mac, kind) = match s
            .async_io(Interest::READABLE, |p| p.recv_from(&mut buf))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!("link receive error: {e}");
                continue;
            }
        };
        if kind == PACKET_OUTGOING {
            continue;
        }
        // Only registration requests matter here; everything else on the
        // link is the kernel's.
        let is_request = parse_mip_datagram(&buf[..n]).is_some_and(|d| {
            d.payload.first() == Some(&crate::wire::msg_type::REGISTRATION_REQUEST)
        });
        if !is_request {
            continue;
        }
        let ev = Event::Link {
            iface,
            mac,
            datagram: buf[..n].to_vec(),
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}
