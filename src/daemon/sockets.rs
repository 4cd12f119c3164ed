//! Registration sockets: one UDP socket per source address the node sends
//! from (the co-located care-of address, RFC 5944 §3.6.1.1; the home
//! address when deregistering from home). The home agent answers to the
//! request's source address and port (§3.8.3), so each socket also
//! receives its replies; they are handed to the main loop through one
//! channel.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::mn::Transmit;

/// A received datagram: sender and payload.
pub type Received = (SocketAddrV4, Vec<u8>);

pub struct Sockets {
    by_src: HashMap<Option<Ipv4Addr>, (Arc<UdpSocket>, JoinHandle<()>)>,
    tx: mpsc::Sender<Received>,
    pub send_errors: u64,
}

impl Sockets {
    pub fn new(tx: mpsc::Sender<Received>) -> Self {
        Sockets {
            by_src: HashMap::new(),
            tx,
            send_errors: 0,
        }
    }

    fn socket(&mut self, src: Option<Ipv4Addr>) -> io::Result<Arc<UdpSocket>> {
        if let Some((s, _)) = self.by_src.get(&src) {
            return Ok(s.clone());
        }
        let bind = SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0);
        let std_sock = std::net::UdpSocket::bind(bind)?;
        std_sock.set_nonblocking(true)?;
        let sock = Arc::new(UdpSocket::from_std(std_sock)?);
        let rx = sock.clone();
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                match rx.recv_from(&mut buf).await {
                    Ok((n, SocketAddr::V4(from))) => {
                        if tx.send((from, buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // ICMP errors (port unreachable) surface here.
                    Err(e) => debug!(error = %e, "registration socket receive error"),
                }
            }
        });
        debug!(%bind, "registration socket opened");
        self.by_src.insert(src, (sock.clone(), task));
        Ok(sock)
    }

    pub async fn send(&mut self, t: &Transmit) {
        let sock = match self.socket(t.src) {
            Ok(s) => s,
            Err(e) => {
                self.send_errors += 1;
                warn!(src = ?t.src, error = %e, "cannot open a registration socket");
                return;
            }
        };
        if let Err(e) = sock.send_to(&t.payload, SocketAddr::V4(t.dst)).await {
            self.send_errors += 1;
            warn!(src = ?t.src, dst = %t.dst, error = %e, "sending a registration request failed");
        }
    }

    /// The address is gone: its socket goes too.
    pub fn forget(&mut self, addr: Ipv4Addr) {
        if let Some((_, task)) = self.by_src.remove(&Some(addr)) {
            task.abort();
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for (_, (_, t)) in self.by_src.drain() {
            t.abort();
        }
    }
}
