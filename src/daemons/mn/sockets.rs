//! Registration sockets: one UDP socket per source address the node sends
//! from (the co-located care-of address, RFC 5944 §3.6.1.1; the home
//! address when deregistering from home). The home agent answers to the
//! request's source address and port (§3.8.3), so each socket also
//! receives its replies; they are handed to the main loop through one
//! channel. With RFC 3519 the socket of the care-of address also carries
//! the tunnel's data both ways (the NAT's mapping of the registration is
//! the tunnel's, RFC 3519 §3.3): its reader hands Tunnel Data messages to
//! the userspace data plane ([`UdpSink`]) and only the rest to the loop.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, RwLock};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::daemons::udp::Received;
use crate::dataplane::udp::TUNNEL_DATA_TYPE;
use crate::dataplane::userspace::UdpSink;
use crate::mn::Transmit;

/// The userspace plane's entry for tunnel data, once one runs.
type SharedSink = Arc<RwLock<Option<UdpSink>>>;

pub struct Sockets {
    by_src: HashMap<Option<Ipv4Addr>, (Arc<UdpSocket>, JoinHandle<()>)>,
    tx: mpsc::Sender<Received>,
    /// The newest request per source that found no route: it never
    /// reached the wire, so sending it when a route appears is not a
    /// retransmission in the sense of RFC 5944 §3.6.3 (at most one request
    /// a second on the wire), and waiting for the node's retransmission
    /// timer would cost a whole second on every DHCP-style attach.
    parked: HashMap<Option<Ipv4Addr>, Transmit>,
    pub send_errors: u64,
    pub sent_on_route: u64,
    sink: SharedSink,
}

impl Sockets {
    pub fn new(tx: mpsc::Sender<Received>) -> Self {
        Sockets {
            by_src: HashMap::new(),
            tx,
            parked: HashMap::new(),
            send_errors: 0,
            sent_on_route: 0,
            sink: SharedSink::default(),
        }
    }

    /// Where tunnel data read from these sockets goes (RFC 3519).
    pub fn set_sink(&self, sink: Option<UdpSink>) {
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }

    /// The socket datagrams from `src` leave from (opened if needed).
    pub fn socket(&mut self, src: Option<Ipv4Addr>) -> io::Result<Arc<UdpSocket>> {
        if let Some((s, _)) = self.by_src.get(&src) {
            return Ok(s.clone());
        }
        let bind = SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
        let std_sock = std::net::UdpSocket::bind(bind)?;
        // RFC 3024 §3.3: a request with 'T' through a foreign agent
        // arrives with TTL 255 or is denied (76); harmless elsewhere.
        std_sock.set_ttl(255)?;
        std_sock.set_nonblocking(true)?;
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
        let task = tokio::spawn(read(sock.clone(), self.tx.clone(), self.sink.clone()));
        debug!(%bind, "registration socket opened");
        self.by_src.insert(src, (sock.clone(), task));
        Ok(sock)
    }

    /// Sends a request; true when it is parked until a route appears
    /// (the node is told: its timer waits for the request to leave).
    pub async fn send(&mut self, t: &Transmit) -> bool {
        let sock = match self.socket(t.src) {
            Ok(s) => s,
            Err(e) => {
                self.send_errors += 1;
                warn!(src = ?t.src, error = %e, "cannot open a registration socket");
                return false;
            }
        };
        match sock.send_to(&t.payload, SocketAddr::V4(t.dst)).await {
            Ok(_) => {
                // With the reader's line below, the daemon's share of a
                // registration's round trip (issue 14 §2) is in its log.
                debug!(src = ?t.src, dst = %t.dst, identification = t.identification, "registration datagram sent");
                self.parked.remove(&t.src);
                false
            }
            Err(e) => {
                self.send_errors += 1;
                if no_route(&e) {
                    debug!(src = ?t.src, dst = %t.dst, "no route yet: request parked until one appears");
                    self.parked.insert(t.src, t.clone());
                    true
                } else {
                    warn!(src = ?t.src, dst = %t.dst, error = %e, "sending a registration request failed");
                    false
                }
            }
        }
    }

    /// A route appeared: send the parked requests once more. Returns the
    /// ones that went out.
    pub async fn route_added(&mut self) -> Vec<Transmit> {
        let parked: Vec<Transmit> = self.parked.drain().map(|(_, t)| t).collect();
        let mut sent = Vec::new();
        for t in parked {
            let errors = self.send_errors;
            let _ = self.send(&t).await;
            if self.send_errors == errors {
                self.sent_on_route += 1;
                debug!(src = ?t.src, dst = %t.dst, "parked request sent: a route appeared");
                sent.push(t);
            }
        }
        sent
    }

    /// The address is gone: its socket and parked request go too.
    pub fn forget(&mut self, addr: Ipv4Addr) {
        self.parked.remove(&Some(addr));
        if let Some((_, task)) = self.by_src.remove(&Some(addr)) {
            task.abort();
        }
    }
}

/// A registration socket's reader: replies to the main loop, Tunnel Data
/// (RFC 3519) to the data plane. Receive errors (ICMP errors about earlier
/// sends) are logged and the socket kept.
async fn read(sock: Arc<UdpSocket>, tx: mpsc::Sender<Received>, sink: SharedSink) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok((n, SocketAddr::V4(from))) => (n, from),
            Ok(_) => continue,
            Err(e) => {
                debug!(error = %e, "registration socket receive error");
                continue;
            }
        };
        let msg = &buf[..n];
        let sink = match msg.first() {
            Some(&TUNNEL_DATA_TYPE) => sink.read().unwrap_or_else(|p| p.into_inner()).clone(),
            _ => None,
        };
        let control = match &sink {
            Some(s) => s.input(from, msg).await,
            None => Some(msg),
        };
        if let Some(m) = control {
            debug!(%from, len = m.len(), "registration datagram received");
            if tx.send((from, m.to_vec())).await.is_err() {
                return;
            }
        }
    }
}

fn no_route(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
    )
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for (_, (_, t)) in self.by_src.drain() {
            t.abort();
        }
    }
}
