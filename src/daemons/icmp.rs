//! Reading a raw ICMP socket (IPv4 header first): mip4-fa's
//! solicitations and errors, mip4d's agent advertisements.

use std::io::Read;
use std::net::Ipv4Addr;
use std::ops::Range;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tracing::debug;

/// The next datagram: its IP source and where its ICMP message lies in
/// `buf`. Receive errors (and datagrams too short for their header) are
/// logged and skipped.
pub async fn recv(s: &AsyncFd<Socket>, buf: &mut [u8]) -> (Ipv4Addr, Range<usize>) {
    loop {
        match s
            .async_io(Interest::READABLE, |mut s| s.read(&mut *buf))
            .await
        {
            Ok(n) => {
                if let Some(r) = split(&buf[..n]) {
                    return r;
                }
            }
            Err(e) => debug!(error = %e, "ICMP receive error"),
        }
    }
}

/// IP source and the ICMP message's range of a datagram as a raw socket
/// delivers it.
fn split(b: &[u8]) -> Option<(Ipv4Addr, Range<usize>)> {
    let ihl = usize::from(*b.first()? & 0x0f) * 4;
    if ihl < 20 || b.len() < ihl {
        return None;
    }
    let src = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
    Some((src, ihl..b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ip_header_gives_the_source_and_its_length_the_message() {
        let mut d = vec![
            0x46, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 10, 1, 20, 1, 224, 0, 0, 1,
        ];
        d.extend_from_slice(&[0; 4]); // options (IHL 6)
        d.extend_from_slice(&[9, 0]);
        assert_eq!(split(&d), Some((Ipv4Addr::new(10, 1, 20, 1), 24..26)));
        assert_eq!(split(&d[..10]), None);
        assert_eq!(split(&[0x44]), None);
    }
}
