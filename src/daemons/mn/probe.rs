//! Probe sockets: the trusted-network detection probe (RFC 5266 §3.4)
//! leaves "without any VPN encapsulation" from the new physical address,
//! even while charon's policies (kernel IPsec) or kernel-libipsec's routes
//! (table 220 into its TUN) would catch a datagram to the i-HA. Each
//! socket is exempt from XFRM both ways, pinned to the physical interface
//! and bound to the address ([`crate::netlink::bypass::probe_socket`]):
//! per-socket state only, so nothing global is left behind if mip4d (or
//! charon) dies. The i-HA answers to the request's source address and
//! port (RFC 5944 §3.8.3), so the same socket receives the reply; replies
//! join the registration replies' channel and the node tells them apart
//! by Identification.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::daemons::udp::{self, Received};
use crate::mn::detect::ProbeTransmit;
use crate::netlink::{bypass, Netlink};

/// Whether the main table routes `dst` through interface `ifindex`. A
/// socket bound to a device (SO_BINDTODEVICE) whose lookup finds no
/// route does not fail: the kernel assumes the destination is on-link
/// and ARPs for it, so a probe sent between a DHCP-style address and its
/// default route would vanish. The probe waits for the route instead.
async fn route_via(nl: &Netlink, ifindex: u32, dst: Ipv4Addr) -> bool {
    use futures::TryStreamExt;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
    let msg = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new().build();
    let mut routes = nl.handle().route().get(msg).execute();
    while let Ok(Some(m)) = routes.try_next().await {
        if m.header.kind != RouteType::Unicast {
            continue;
        }
        let (mut table, mut oif, mut net) =
            (u32::from(m.header.table), None, Ipv4Addr::UNSPECIFIED);
        for a in &m.attributes {
            match a {
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Destination(RouteAddress::Inet(d)) => net = *d,
                _ => {}
            }
        }
        let len = m.header.destination_prefix_length;
        let contains = ipnet::Ipv4Net::new(net, len).is_ok_and(|n| n.contains(&dst));
        if table == crate::netlink::route::TABLE_MAIN && oif == Some(ifindex) && contains {
            return true;
        }
    }
    false
}

pub struct ProbeSockets {
    nl: Arc<Netlink>,
    by_src: HashMap<(String, Ipv4Addr), (Arc<UdpSocket>, JoinHandle<()>)>,
    tx: mpsc::Sender<Received>,
    /// The newest probe per source that found no route (a DHCP-style
    /// attach adds the address before the default route): sent when a
    /// route appears, as [`super::sockets::Sockets`] does for requests.
    parked: HashMap<Ipv4Addr, ProbeTransmit>,
    pub sent: u64,
    pub send_errors: u64,
    pub sent_on_route: u64,
}

impl ProbeSockets {
    pub fn new(nl: Arc<Netlink>, tx: mpsc::Sender<Received>) -> Self {
        ProbeSockets {
            nl,
            by_src: HashMap::new(),
            tx,
            parked: HashMap::new(),
            sent: 0,
            send_errors: 0,
            sent_on_route: 0,
        }
    }

    fn socket(&mut self, ifname: &str, src: Ipv4Addr) -> io::Result<Arc<UdpSocket>> {
        let key = (ifname.to_string(), src);
        if let Some((s, _)) = self.by_src.get(&key) {
            return Ok(s.clone());
        }
        let std_sock = bypass::probe_socket(ifname, SocketAddrV4::new(src, 0))?;
        std_sock.set_nonblocking(true)?;
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
        let task = udp::spawn_reader(
            "probe socket",
            sock.clone(),
            self.tx.clone(),
            |from, data| (from, data),
        );
        debug!(ifname, %src, "probe socket opened (XFRM bypass, bound to the interface)");
        self.by_src.insert(key, (sock.clone(), task));
        Ok(sock)
    }

    /// Sends a probe. `fallback_ifname` is the physical interface charon
    /// reports for this address (the plugin's path query), used when the
    /// node's own interface name no longer binds (renamed, gone). Returns
    /// true when it is parked until a route appears (the node is told:
    /// its timer waits for the datagram to leave).
    pub async fn send(&mut self, p: &ProbeTransmit, fallback_ifname: Option<&str>) -> bool {
        let Some(src) = p.transmit.src else {
            self.send_errors += 1;
            return false;
        };
        let dst = *p.transmit.dst.ip();
        let routed = match self.nl.link_index(&p.ifname).await {
            Ok(i) => route_via(&self.nl, i, dst).await,
            // Let the socket say what is wrong.
            Err(_) => true,
        };
        if !routed {
            debug!(ifname = %p.ifname, %src, %dst, "probe: no route by its interface yet, parked until one appears");
            self.parked.insert(src, p.clone());
            return true;
        }
        let sock = match self.socket(&p.ifname, src) {
            Ok(s) => s,
            Err(e) => match fallback_ifname.filter(|f| *f != p.ifname) {
                Some(f) => match self.socket(f, src) {
                    Ok(s) => s,
                    Err(e2) => {
                        self.send_errors += 1;
                        warn!(ifname = %p.ifname, fallback = f, %src, error = %e, error2 = %e2, "cannot open a probe socket");
                        return false;
                    }
                },
                None => {
                    self.send_errors += 1;
                    warn!(ifname = %p.ifname, %src, error = %e, "cannot open a probe socket");
                    return false;
                }
            },
        };
        match sock
            .send_to(&p.transmit.payload, SocketAddr::V4(p.transmit.dst))
            .await
        {
            Ok(_) => {
                self.sent += 1;
                self.parked.remove(&src);
                false
            }
            Err(e) => {
                self.send_errors += 1;
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
                ) {
                    debug!(%src, "probe: no route yet, parked until one appears");
                    self.parked.insert(src, p.clone());
                    true
                } else {
                    warn!(%src, dst = %p.transmit.dst, error = %e, "sending a probe failed");
                    false
                }
            }
        }
    }

    /// A route appeared: send the parked probes. Returns those sent.
    pub async fn route_added(&mut self) -> Vec<ProbeTransmit> {
        let parked: Vec<ProbeTransmit> = self.parked.drain().map(|(_, p)| p).collect();
        let mut sent = Vec::new();
        for p in parked {
            let before = self.sent;
            let _ = self.send(&p, None).await;
            if self.sent > before {
                self.sent_on_route += 1;
                sent.push(p);
            }
        }
        sent
    }

    /// The address is gone: its sockets and parked probe go too.
    pub fn forget(&mut self, addr: Ipv4Addr) {
        self.parked.remove(&addr);
        self.by_src.retain(|(_, a), (_, task)| {
            if *a == addr {
                task.abort();
                false
            } else {
                true
            }
        });
    }
}

impl Drop for ProbeSockets {
    fn drop(&mut self) {
        for (_, (_, t)) in self.by_src.drain() {
            t.abort();
        }
    }
}
