//! How many netlink requests this process has sent: every [`Netlink`]
//! handle's socket counts its datagrams (netlink-proto sends one message
//! per datagram, so one per request). Each is a system call and a round
//! trip through the kernel, which on a slow machine is what a move waits
//! for: mip4d exports the count on its control socket (`status`,
//! `netlink.requests`) so that a scenario can count a move's.
//!
//! [`Netlink`]: super::Netlink

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use netlink_sys::{AsyncSocket, Socket, SocketAddr, TokioSocket};

static SENT: AtomicU64 = AtomicU64::new(0);

/// Requests sent by this process's request sockets so far.
pub fn requests_sent() -> u64 {
    SENT.load(Ordering::Relaxed)
}

fn counted(p: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
    if let Poll::Ready(Ok(_)) = p {
        SENT.fetch_add(1, Ordering::Relaxed);
    }
    p
}

/// tokio's netlink socket, counting what it sends.
pub struct CountingSocket(TokioSocket);

impl AsyncSocket for CountingSocket {
    fn socket_ref(&self) -> &Socket {
        self.0.socket_ref()
    }

    fn socket_mut(&mut self) -> &mut Socket {
        self.0.socket_mut()
    }

    fn new(protocol: isize) -> io::Result<Self> {
        TokioSocket::new(protocol).map(CountingSocket)
    }

    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        counted(self.0.poll_send(cx, buf))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        addr: &SocketAddr,
    ) -> Poll<io::Result<usize>> {
        counted(self.0.poll_send_to(cx, buf, addr))
    }

    fn poll_recv<B>(&self, cx: &mut Context<'_>, buf: &mut B) -> Poll<io::Result<()>>
    where
        B: bytes::BufMut,
    {
        self.0.poll_recv(cx, buf)
    }

    fn poll_recv_from<B>(&self, cx: &mut Context<'_>, buf: &mut B) -> Poll<io::Result<SocketAddr>>
    where
        B: bytes::BufMut,
    {
        self.0.poll_recv_from(cx, buf)
    }

    fn poll_recv_from_full(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Vec<u8>, SocketAddr)>> {
        self.0.poll_recv_from_full(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request the kernel answers is one more on the count (a dump of
    /// the links, which any namespace answers without privileges).
    #[tokio::test]
    async fn each_request_is_counted_once() {
        let nl = super::super::Netlink::new().unwrap();
        let before = requests_sent();
        nl.links().await.unwrap();
        assert_eq!(requests_sent() - before, 1);
    }
}
