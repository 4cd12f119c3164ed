//! Reading a UDP socket a batch at a time: one recvmmsg(2) takes up to
//! [`BATCH`] datagrams. Under a flood the per-call cost (the system call,
//! the wake-up, the runtime's readiness bookkeeping) is paid once per
//! batch instead of once per datagram, so the socket is emptied faster
//! and the requests queued behind the flood wait less (issue 13 item 9).
//! Writing likewise: [`send_batch`] sends a batch of replies with one
//! sendmmsg(2) (issue 14 §4).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddrV4;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams read by one call at most.
pub const BATCH: usize = 32;

/// Sets `sock`'s receive buffer to `bytes`: beyond `net.core.rmem_max`
/// with CAP_NET_ADMIN (`SO_RCVBUFFORCE`), else as far as that limit
/// allows. Returns what the kernel granted (it doubles the request for its
/// bookkeeping). Kernel memory, used only while datagrams wait: a daemon's
/// RSS does not grow with it.
pub fn widen_receive_buffer(sock: &impl std::os::fd::AsFd, bytes: usize) -> Option<usize> {
    use nix::sys::socket::{getsockopt, setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &bytes);
    }
    getsockopt(sock, sockopt::RcvBuf).ok()
}

/// Buffers for a batch and what the last [`Batch::recv`] read into them.
pub struct Batch {
    bufs: Vec<Vec<u8>>,
    got: Vec<(SocketAddrV4, usize)>,
}

impl Batch {
    /// [`BATCH`] buffers of `size` bytes (a longer datagram is truncated,
    /// as with recvfrom(2)).
    pub fn new(size: usize) -> Self {
        Batch {
            bufs: (0..BATCH).map(|_| vec![0u8; size]).collect(),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Waits until `sock` is readable, then reads what is there, up to
    /// [`BATCH`] datagrams, without waiting for more. An error is the
    /// first datagram's (ICMP errors about earlier sends surface here).
    pub async fn recv(&mut self, sock: &UdpSocket) -> io::Result<()> {
        let Batch { bufs, got } = self;
        got.clear();
        sock.async_io(Interest::READABLE, || {
            // Not kept across calls: it holds raw pointers (not Send).
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.iter_mut().map(|b| [IoSliceMut::new(b)]).collect();
            let read = recvmmsg(
                sock.as_raw_fd(),
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for r in read {
                if let Some(a) = r.address {
                    got.push((SocketAddrV4::new(a.ip(), a.port()), r.bytes));
                }
            }
            Ok(())
        })
        .await
    }

    /// The datagrams of the last [`recv`](Self::recv): sender and bytes.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddrV4, &[u8])> {
        self.got
            .iter()
            .zip(&self.bufs)
            .map(|(&(from, n), b)| (from, &b[..n.min(b.len())]))
    }
}

/// Sends each `(to, datagram)` of `out`, up to [`BATCH`] a sendmmsg(2)
/// call, in order, waiting while the socket's buffer is full. A datagram
/// the kernel refuses is given to `refused` with the error, and the rest
/// still go.
pub async fn send_batch(
    sock: &UdpSocket,
    out: &[(SocketAddrV4, Vec<u8>)],
    refused: &mut dyn FnMut(SocketAddrV4, io::Error),
) {
    let mut done = 0;
    while let Some(rest) = out.get(done..).filter(|r| !r.is_empty()) {
        let chunk = &rest[..rest.len().min(BATCH)];
        let sent = sock
            .async_io(Interest::WRITABLE, || {
                // Not kept across calls: it holds raw pointers (not Send).
                let mut headers = MultiHeaders::<SockaddrIn>::preallocate(chunk.len(), None);
                let iovs: Vec<[IoSlice<'_>; 1]> =
                    chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
                let to: Vec<Option<SockaddrIn>> = chunk
                    .iter()
                    .map(|(a, _)| Some(SockaddrIn::from(*a)))
                    .collect();
                sendmmsg(
                    sock.as_raw_fd(),
                    &mut headers,
                    &iovs,
                    &to,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                )
                .map(Iterator::count)
                .map_err(io::Error::from)
            })
            .await;
        match sent {
            Ok(n) if n > 0 => done += n,
            // The first of the chunk was refused (sendmmsg(2) reports an
            // error only when nothing was sent).
            Ok(_) => {
                refused(chunk[0].0, io::Error::other("not sent"));
                done += 1;
            }
            Err(e) => {
                refused(chunk[0].0, e);
                done += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_holds_every_waiting_datagram_with_its_sender() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = sock.local_addr().unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..40u8 {
            peer.send_to(&[i; 3], to).await.unwrap();
        }
        let mut batch = Batch::new(2048);
        let mut seen = Vec::new();
        while seen.len() < 40 {
            batch.recv(&sock).await.unwrap();
            for (from, data) in batch.datagrams() {
                assert_eq!(std::net::SocketAddr::V4(from), peer.local_addr().unwrap());
                seen.push(data.to_vec());
            }
        }
        let want: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 3]).collect();
        assert_eq!(seen, want);
    }

    /// More than a batch, to two receivers: each gets its own, in order;
    /// one the kernel refuses (too long for UDP) is reported and the rest
    /// still go.
    #[tokio::test(flavor = "current_thread")]
    async fn a_batch_of_replies_reaches_each_receiver_in_order() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let at = |s: &std::net::UdpSocket| match s.local_addr().unwrap() {
            std::net::SocketAddr::V4(v) => v,
            _ => unreachable!(),
        };
        let mut out: Vec<(SocketAddrV4, Vec<u8>)> = (0..40u8)
            .map(|i| (at(if i % 2 == 0 { &a } else { &b }), vec![i; 3]))
            .collect();
        out.insert(5, (at(&a), vec![0; 70_000]));
        let mut refused = Vec::new();
        send_batch(&sock, &out, &mut |to, e| refused.push((to, e.kind()))).await;
        assert_eq!(refused.len(), 1, "{refused:?}");
        let mut buf = [0u8; 64];
        for (s, first) in [(&a, 0u8), (&b, 1)] {
            for i in (first..40).step_by(2) {
                let n = s.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[i; 3]);
            }
        }
    }
}
