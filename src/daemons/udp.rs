//! The one UDP reader loop of the three daemons (registration replies and
//! probe answers at mip4d, registrations at mip4-ha, home agents' replies
//! at mip4-fa): each datagram from an IPv4 sender goes to the main loop
//! with its source, through a channel; receive errors (ICMP errors about
//! earlier sends surface here) are logged and the socket kept.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

/// A received datagram: sender and payload.
pub type Received = (SocketAddrV4, Vec<u8>);

/// Reads `sock` until the main loop's end of `tx` is gone; `wrap` makes
/// each datagram the loop's message. `what` names the socket in logs.
pub fn spawn_reader<T: Send + 'static>(
    what: &'static str,
    sock: Arc<UdpSocket>,
    tx: mpsc::Sender<T>,
    wrap: fn(SocketAddrV4, Vec<u8>) -> T,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, SocketAddr::V4(from))) => {
                    if tx.send(wrap(from, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "{what} receive error"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn datagrams_reach_the_loop_with_their_source() {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let to = sock.local_addr().unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = spawn_reader("test socket", sock, tx, |src, data| (src, data));
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        peer.send_to(b"hello", to).await.unwrap();
        let (src, data) = rx.recv().await.unwrap();
        assert_eq!(SocketAddr::V4(src), peer.local_addr().unwrap());
        assert_eq!(data, b"hello");
        task.abort();
    }
}
