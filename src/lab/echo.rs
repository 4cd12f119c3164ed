//! The lab's own echo sender, for `lab::pinger` under 10 ms: ICMP echo
//! requests (RFC 792) at a fixed interval, whether replies come or not.
//!
//! iputils ping cannot keep an interval under its MININTERVAL (10 ms)
//! while echoes are unanswered: its main loop (ping_common.c) then sleeps
//! MININTERVAL between sends and wakes early only for a reply. A move is
//! timed by the first reply after an outage, the one window where nothing
//! comes back: there `ping -i 0.002` sent every ~10 ms, and each move's
//! figure (stock's and mip4's alike) was late by ~5 ms on average, the
//! wait for ping's next echo.
//!
//! Replies go to a file as `ping -D` writes them (`[unix time] 64 bytes
//! from DST: icmp_seq=N ttl=T time=RTT ms`), so the pinger's readers take
//! either; the time is the kernel's receive timestamp (SO_TIMESTAMPNS),
//! as ping's RTT is.

use std::io::{IoSliceMut, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, recvmsg, sendto, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned,
    MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use nix::sys::time::TimeVal;

use super::netns::Netns;
use super::topology::unix_now;
use super::{Error, Result};
use crate::dataplane::ipv4::{Ipv4Packet, PROTO_ICMP};

/// ICMP echo request and reply types (RFC 792).
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
/// ping's default payload: 64 bytes of ICMP.
const PAYLOAD: [u8; 56] = [0x55; 56];

/// An echo request with identifier `id`, sequence number `seq` and
/// `payload`, its checksum filled in.
pub fn echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![ECHO_REQUEST, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let sum = crate::wire::icmp::checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An echo reply to one of ours in a raw socket's datagram (IPv4 header
/// first): from `from`, identifier `id`, checksum right. Its sequence
/// number, TTL and ICMP length.
pub fn parse_reply(datagram: &[u8], from: Ipv4Addr, id: u16) -> Option<(u16, u8, usize)> {
    let ip = Ipv4Packet::new_checked(datagram).ok()?;
    let icmp = ip.payload();
    let ours = ip.src_addr() == from
        && ip.protocol() == PROTO_ICMP
        && icmp.len() >= 8
        && icmp[0] == ECHO_REPLY
        && icmp[1] == 0
        && u16::from_be_bytes([icmp[4], icmp[5]]) == id
        && crate::wire::icmp::checksum(icmp) == 0;
    ours.then(|| (u16::from_be_bytes([icmp[6], icmp[7]]), ip.ttl(), icmp.len()))
}

/// The reply's line, as `ping -D -n` prints it.
pub fn reply_line(t: f64, len: usize, from: Ipv4Addr, seq: u64, ttl: u8, rtt_ms: f64) -> String {
    format!("[{t:.6}] {len} bytes from {from}: icmp_seq={seq} ttl={ttl} time={rtt_ms:.3} ms\n")
}

/// Which of the `sent` echoes (numbered from 1) a reply's 16-bit
/// sequence number is: the latest with those low bits.
pub fn echo_number(sent: u64, seq16: u16) -> Option<u64> {
    let back = u64::from((sent as u16).wrapping_sub(seq16));
    sent.checked_sub(back).filter(|n| *n > 0)
}

/// Sends echoes from a namespace until dropped.
pub struct EchoSender {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl EchoSender {
    /// Echoes from `src` (bound, as `ping -I SRC`) to `dst` in `ns`, one
    /// every `interval`, replies appended to `out`. Both threads run on
    /// the machine of `ns`'s host (the kernel tier's guest as two
    /// machines: src/lab/machines.rs), as a ping process there would;
    /// with `realtime`, at SCHED_FIFO 50 (`chrt -f 50 ping`), so that
    /// the work being timed never delays an echo.
    pub fn start(
        ns: &Netns,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        interval: Duration,
        out: &Path,
        realtime: bool,
    ) -> Result<EchoSender> {
        let io = move |e: nix::Error| Error::Other(format!("echo socket {src} -> {dst}: {e}"));
        // The socket belongs to the namespace it was made in, whichever
        // thread uses it later.
        let fd: OwnedFd = super::netns::run_in(ns.name(), "echo socket", move || {
            let fd = socket(
                AddressFamily::Inet,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::Icmp,
            )
            .map_err(io)?;
            bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(src, 0))).map_err(io)?;
            setsockopt(&fd, sockopt::ReceiveTimestampns, &true).map_err(io)?;
            // Wakes the receiver to see the stop flag.
            setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000)).map_err(io)?;
            Ok(fd)
        })?;
        let file = std::fs::File::create(out).map_err(|source| Error::Io {
            path: out.display().to_string(),
            source,
        })?;
        let fd = Arc::new(fd);
        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<Vec<f64>>> = Arc::default();
        let id: u16 = rand::random();
        let (fd2, stop2, sent2) = (fd.clone(), stop.clone(), sent.clone());
        let stop3 = stop.clone();
        let cpu = super::machines::cpu_of(ns.host());
        let place = move || {
            super::machines::pin_this_thread(cpu);
            if realtime {
                super::timing::realtime(50);
            }
        };
        let sender = std::thread::spawn(move || {
            place();
            let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
            let mut next = Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                if let Some(d) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
                let seq = {
                    let mut s = sent2.lock().unwrap_or_else(|e| e.into_inner());
                    s.push(unix_now());
                    s.len()
                };
                let m = echo_request(id, seq as u16, &PAYLOAD);
                // Unreachable while the path is down: the next goes on
                // time all the same (ping counts these as errors).
                let _ = sendto(fd2.as_raw_fd(), &m, &to, MsgFlags::empty());
                // On schedule; after a stall, one at once and on from there.
                next = (next + interval).max(Instant::now());
            }
        });
        let receiver = std::thread::spawn(move || {
            place();
            let mut file = file;
            let mut buf = [0u8; 2048];
            let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
            while !stop3.load(Ordering::Relaxed) {
                let mut iov = [IoSliceMut::new(&mut buf)];
                let Ok(msg) =
                    recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                else {
                    continue;
                };
                let mut t = unix_now();
                if let Ok(mut c) = msg.cmsgs() {
                    if let Some(ControlMessageOwned::ScmTimestampns(ts)) = c.next() {
                        t = ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9;
                    }
                }
                let n = msg.bytes;
                let Some((seq16, ttl, len)) = parse_reply(&buf[..n], dst, id) else {
                    continue;
                };
                let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
                let Some(seq) = echo_number(sent.len() as u64, seq16) else {
                    continue;
                };
                let rtt = (t - sent[(seq - 1) as usize]) * 1e3;
                drop(sent);
                let _ = file.write_all(reply_line(t, len, dst, seq, ttl, rtt).as_bytes());
            }
        });
        Ok(EchoSender {
            stop,
            threads: vec![sender, receiver],
        })
    }
}

impl Drop for EchoSender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request as an echo reply from `from` in an IPv4 datagram.
    fn reply_to(request: &[u8], from: Ipv4Addr, ttl: u8) -> Vec<u8> {
        let mut icmp = request.to_vec();
        icmp[0] = ECHO_REPLY;
        icmp[2..4].copy_from_slice(&[0, 0]);
        let sum = crate::wire::icmp::checksum(&icmp);
        icmp[2..4].copy_from_slice(&sum.to_be_bytes());
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, ttl, 1, 0, 0];
        ip.extend_from_slice(&from.octets());
        ip.extend_from_slice(&[10, 1, 2, 2]);
        ip.extend_from_slice(&icmp);
        let total = u16::try_from(ip.len()).unwrap();
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let sum = crate::dataplane::ipv4::checksum(&ip[..20]);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        ip
    }

    #[test]
    fn only_a_reply_to_our_echo_from_the_destination_counts() {
        let dst = Ipv4Addr::new(10, 1, 100, 5);
        let req = echo_request(0x1234, 7, &PAYLOAD);
        assert_eq!(req.len(), 64);
        assert_eq!(crate::wire::icmp::checksum(&req), 0);
        let reply = reply_to(&req, dst, 62);
        assert_eq!(parse_reply(&reply, dst, 0x1234), Some((7, 62, 64)));
        // Another pinger's identifier, another source, a request, a
        // damaged checksum, a truncated datagram: none is ours.
        assert_eq!(parse_reply(&reply, dst, 0x1235), None);
        assert_eq!(
            parse_reply(&reply, Ipv4Addr::new(10, 1, 2, 9), 0x1234),
            None
        );
        let mut request = reply.clone();
        request[20] = ECHO_REQUEST;
        assert_eq!(parse_reply(&request, dst, 0x1234), None);
        let mut damaged = reply.clone();
        damaged[30] ^= 1;
        assert_eq!(parse_reply(&damaged, dst, 0x1234), None);
        assert_eq!(parse_reply(&reply[..24], dst, 0x1234), None);
    }

    #[test]
    fn a_reply_is_the_latest_echo_with_its_sequence_bits() {
        assert_eq!(echo_number(5, 5), Some(5));
        assert_eq!(echo_number(5, 3), Some(3));
        // Past 65535 the 16 bits wrap; the count does not.
        assert_eq!(echo_number(65_540, 2), Some(65_538));
        assert_eq!(echo_number(65_540, 65_535), Some(65_535));
        // Not sent yet (nothing numbered 0 or less).
        assert_eq!(echo_number(5, 9), None);
        assert_eq!(echo_number(0, 0), None);
    }
}
