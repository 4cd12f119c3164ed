//! Agent discovery's sockets (mode 'f', RFC 5944 §2): per watched
//! interface with an address, a raw ICMP socket bound to it. Its reader
//! hands Agent Advertisements (ICMP type 9, to 224.0.0.1 or broadcast,
//! §2.3.1) with their IP source to the main loop; Agent Solicitations
//! (type 10) leave from it to 224.0.0.2 with TTL 1 (§2.2, §2.4). The node
//! decides what any of it means ([`crate::mn::discovery`]).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::wire::icmp::{AgentSolicitationRepr, TYPE_ADVERTISEMENT};

/// All routers (RFC 1256 §3): where Agent Solicitations go (§2.2).
const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);

/// An advertisement as read: interface, IP source, ICMP message.
pub type Advertisement = (String, Ipv4Addr, Vec<u8>);

pub struct AgentSockets {
    by_if: HashMap<String, (Arc<AsyncFd<Socket>>, JoinHandle<()>)>,
    tx: mpsc::Sender<Advertisement>,
    pub send_errors: u64,
}

impl AgentSockets {
    pub fn new(tx: mpsc::Sender<Advertisement>) -> Self {
        AgentSockets {
            by_if: HashMap::new(),
            tx,
            send_errors: 0,
        }
    }

    /// Listens on `ifname` (once).
    pub fn listen(&mut self, ifname: &str) {
        if self.by_if.contains_key(ifname) {
            return;
        }
        match open(ifname) {
            Ok(s) => {
                let s = Arc::new(s);
                let task = tokio::spawn(read(s.clone(), ifname.to_string(), self.tx.clone()));
                debug!(ifname, "listening for agent advertisements");
                self.by_if.insert(ifname.to_string(), (s, task));
            }
            Err(e) => warn!(ifname, error = %e, "cannot listen for agent advertisements"),
        }
    }

    /// The interface is gone.
    pub fn forget(&mut self, ifname: &str) {
        if let Some((_, task)) = self.by_if.remove(ifname) {
            task.abort();
        }
    }

    /// An Agent Solicitation on `ifname`; listening there from now on
    /// (the node solicits as soon as a link has an address).
    pub fn solicit(&mut self, ifname: &str) {
        self.listen(ifname);
        let Some((s, _)) = self.by_if.get(ifname) else {
            self.send_errors += 1;
            return;
        };
        let msg = AgentSolicitationRepr.to_bytes();
        let to = SockAddr::from(SocketAddrV4::new(ALL_ROUTERS, 0));
        if let Err(e) = s.get_ref().send_to(&msg, &to) {
            self.send_errors += 1;
            debug!(ifname, error = %e, "agent solicitation not sent");
        }
    }
}

fn open(ifname: &str) -> io::Result<AsyncFd<Socket>> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    // §2.2: solicitations with TTL 1, to the link only.
    s.set_ttl(1)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    crate::sys::async_fd::register(s)
}

async fn read(s: Arc<AsyncFd<Socket>>, ifname: String, tx: mpsc::Sender<Advertisement>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (src, icmp) = crate::daemons::icmp::recv(&s, &mut buf).await;
        // Router advertisements only; the node checks the rest.
        if buf[icmp.clone()].first() != Some(&TYPE_ADVERTISEMENT) {
            continue;
        }
        if tx
            .send((ifname.clone(), src, buf[icmp].to_vec()))
            .await
            .is_err()
        {
            return;
        }
    }
}

impl Drop for AgentSockets {
    fn drop(&mut self) {
        for (_, (_, t)) in self.by_if.drain() {
            t.abort();
        }
    }
}
