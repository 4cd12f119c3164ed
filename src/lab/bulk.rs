//! Bulk TCP between two lab namespaces, for throughput figures (issue 14
//! §5: the tunnel against the bare link). A receiver listens in one
//! namespace, a sender in another writes as fast as TCP takes it for a
//! fixed time and closes; the rate is what the receiver counted, from
//! its first byte to the end of the stream, so connection setup and the
//! sender's buffered tail are both outside it. In-process threads (as
//! [`super::stream`]) rather than iperf3, which the machines lack.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{netns, Error, Result};

/// Write and read size: large enough that the system calls cost little
/// next to the bytes.
const CHUNK: usize = 128 * 1024;

/// A stalled path fails the transfer instead of hanging the run.
const STALL: Duration = Duration::from_secs(10);

/// What one transfer measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transfer {
    pub bytes: u64,
    pub seconds: f64,
}

impl Transfer {
    pub fn mbit_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 * 8.0 / self.seconds / 1e6
        } else {
            0.0
        }
    }
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { path: what, source }
}

/// Sends for `duration` from namespace `sender_ns` to `to`, received on
/// `to`'s port (any address) in namespace `receiver_ns`.
pub fn transfer(
    sender_ns: &str,
    receiver_ns: &str,
    to: SocketAddrV4,
    duration: Duration,
) -> Result<Transfer> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let ns = receiver_ns.to_string();
    let port = to.port();
    let receiver = std::thread::spawn(move || -> Result<Transfer> {
        let listen = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let bound = netns::enter(&ns).and_then(|()| {
            TcpListener::bind(listen).map_err(io(format!("tcp listen {listen} in {ns}")))
        });
        let listener = match bound {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(Error::Other(e.to_string())));
                return Err(e);
            }
        };
        receive(&listener)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .map_err(|_| Error::Other("bulk receiver did not start".into()))??;
    let ns = sender_ns.to_string();
    let sent = std::thread::spawn(move || -> Result<u64> {
        netns::enter(&ns)?;
        let mut s = TcpStream::connect_timeout(&SocketAddr::V4(to), Duration::from_secs(5))
            .map_err(io(format!("tcp connect {to} from {ns}")))?;
        s.set_write_timeout(Some(STALL))
            .map_err(io(format!("tcp {to}")))?;
        let buf = vec![0x5au8; CHUNK];
        let end = Instant::now() + duration;
        let mut n = 0u64;
        while Instant::now() < end {
            s.write_all(&buf).map_err(io(format!("tcp send to {to}")))?;
            n += CHUNK as u64;
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(io(format!("tcp shutdown to {to}")))?;
        Ok(n)
    })
    .join()
    .map_err(|_| Error::Other("bulk sender panicked".into()));
    let sent = match sent {
        Ok(Ok(n)) => n,
        Ok(Err(e)) | Err(e) => {
            // The receiver's accept gives up after STALL.
            let _ = receiver.join();
            return Err(e);
        }
    };
    let got = receiver
        .join()
        .map_err(|_| Error::Other("bulk receiver panicked".into()))??;
    if got.bytes != sent {
        return Err(Error::Other(format!(
            "bulk transfer to {to}: sent {sent} bytes, received {}",
            got.bytes
        )));
    }
    Ok(got)
}

fn receive(listener: &TcpListener) -> Result<Transfer> {
    listener
        .set_nonblocking(true)
        .map_err(io("tcp listen (bulk)".into()))?;
    let ((mut conn, _), _) = super::wait::until(STALL, "the bulk sender's connection", || {
        listener.accept().ok()
    })?;
    conn.set_nonblocking(false)
        .and_then(|()| conn.set_read_timeout(Some(STALL)))
        .map_err(io("tcp (bulk)".into()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    let mut first = None;
    loop {
        let n = conn
            .read(&mut buf)
            .map_err(io("tcp receive (bulk)".into()))?;
        if n == 0 {
            break;
        }
        first.get_or_insert_with(Instant::now);
        bytes += n as u64;
    }
    Ok(Transfer {
        bytes,
        seconds: first.map_or(0.0, |t| t.elapsed().as_secs_f64()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_bits_over_the_receivers_time() {
        let t = Transfer {
            bytes: 1_250_000,
            seconds: 0.5,
        };
        assert_eq!(t.mbit_s(), 20.0);
        assert_eq!(
            Transfer {
                bytes: 10,
                seconds: 0.0
            }
            .mbit_s(),
            0.0
        );
    }
}
