//! A userspace delay line: two veth ends in one namespace joined by a
//! relay that holds every frame for a configured time in each direction.
//!
//! The kernel here has no netem, so the delay comes from userspace. The
//! relay is a pair of AF_PACKET sockets (not NFQUEUE): it works at layer 2
//! (ARP, IPv4, anything), needs no extra library and sits on the link, not
//! on a router, so a delayed link looks like a long cable. The sockets use
//! PACKET_VNET_HDR so that GSO frames and partial checksums from veth pass
//! through intact (without it a TCP segment bigger than the MTU could not
//! be re-sent and offloaded checksums would arrive unfilled).
//!
//! The delay models the path beyond the access router, not the access
//! link itself: IP is held, while what only crosses the link (ARP, IPv6
//! Neighbor Discovery, any other non-IP frame) is relayed at once, as it
//! would be on a real access network ([`held`]; the kernel tier's netem
//! gets the same split from a prio qdisc, `topology::link_delay`).
//!
//! The relay's threads run under SCHED_FIFO: netem holds frames on the
//! kernel's timers whatever the load, and a relay thread kept off the CPU
//! by other processes would hold a frame longer than its delay.
//!
//! It can also lose frames (`set_loss`): a seeded pseudo-random share of
//! the held (IP) frames in each direction is dropped, counted, instead of
//! relayed (the `lossy` scenario; netem's `loss` is what it stands in
//! for).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rand::{Rng, SeedableRng};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::Netns;
use super::{Error, Result};
use crate::sys::packet::{Framing, PacketSocket, ETH_P_ALL};

/// `struct virtio_net_hdr` (without num_buffers): 10 bytes in front of
/// every frame read or written with PACKET_VNET_HDR.
const VNET_HDR_LEN: usize = 10;
/// Room for a 64 KiB GSO frame plus its Ethernet and vnet headers.
const FRAME_MAX: usize = 65536 + 14 + VNET_HDR_LEN;
/// The relay threads' SCHED_FIFO priority: above every ordinary process,
/// low among real-time ones.
const RT_PRIORITY: i32 = 10;
/// Ethernet's header: the ethertype at 12, the payload at 14.
const ETH_HLEN: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ICMPv6 in IPv6's Next Header.
const NEXT_HEADER_ICMPV6: u8 = 58;
/// Neighbor Discovery's ICMPv6 types (RFC 4861 §4): Router Solicitation
/// and Advertisement, Neighbor Solicitation and Advertisement, Redirect.
const ND_TYPES: std::ops::RangeInclusive<u8> = 133..=137;

/// Whether an Ethernet frame is held for the delay: IPv4, and IPv6 other
/// than Neighbor Discovery. ARP and ND are the access link's own and do
/// not cross the path the delay stands for (ND never carries extension
/// headers, RFC 4861 §§4.1-4.5, so ICMPv6's type is right after the
/// 40-byte header).
pub fn held(frame: &[u8]) -> bool {
    let Some(ethertype) = frame.get(12..ETH_HLEN) else {
        return false;
    };
    match u16::from_be_bytes([ethertype[0], ethertype[1]]) {
        ETHERTYPE_IPV4 => true,
        ETHERTYPE_IPV6 => {
            let ip = &frame[ETH_HLEN..];
            let nd = ip.get(6) == Some(&NEXT_HEADER_ICMPV6)
                && ip.get(40).is_some_and(|t| ND_TYPES.contains(t));
            !nd
        }
        _ => false,
    }
}

/// A running delay line; stops when dropped.
pub struct Wire {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    delay: Duration,
    loss: Arc<Loss>,
}

/// Frame loss on a wire, both directions: none until `set_loss`.
#[derive(Default)]
struct Loss {
    /// (share dropped in parts per million, its generator).
    state: Mutex<(u32, Option<rand::rngs::StdRng>)>,
    dropped: AtomicU64,
}

impl Loss {
    /// Whether the next frame is lost (and counted).
    fn lose(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let ppm = st.0;
        let lost = match &mut st.1 {
            Some(rng) if ppm > 0 => rng.gen_range(0..1_000_000) < ppm,
            _ => false,
        };
        if lost {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        lost
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wire").field("delay", &self.delay).finish()
    }
}

impl Wire {
    /// Relays frames between `a_dev` and `b_dev` (both in `ns`), each
    /// direction held for `delay` (so a ping across sees 2 x `delay` more).
    pub fn start(ns: &Netns, a_dev: &str, b_dev: &str, delay: Duration) -> Result<Wire> {
        let netns_path = format!("/run/netns/{}", ns.name());
        let (a, b) = open_pair(&netns_path, a_dev, b_dev).map_err(|source| Error::Io {
            path: format!("{netns_path} {a_dev}<->{b_dev}"),
            source,
        })?;
        let a = Arc::new(a);
        let b = Arc::new(b);
        let stop = Arc::new(AtomicBool::new(false));
        let loss = Arc::new(Loss::default());
        let mut threads = Vec::new();
        for (from, to) in [(a.clone(), b.clone()), (b, a)] {
            let line = Arc::new(Line::default());
            let (s, l, lo, t) = (stop.clone(), line.clone(), loss.clone(), to.clone());
            threads.push(std::thread::spawn(move || {
                realtime();
                receive(&from, &t, &l, &s, delay, &lo)
            }));
            let s = stop.clone();
            threads.push(std::thread::spawn(move || {
                realtime();
                transmit(&to, &line, &s)
            }));
        }
        Ok(Wire {
            stop,
            threads,
            delay,
            loss,
        })
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// From now on, drops `percent` % of the frames in each direction,
    /// chosen by a generator seeded with `seed` (same seed, same choices
    /// for the same frame sequence); 0 stops the loss.
    pub fn set_loss(&self, percent: f64, seed: u64) {
        let ppm = (percent.clamp(0.0, 100.0) * 10_000.0).round() as u32;
        let mut st = self.loss.state.lock().unwrap_or_else(|e| e.into_inner());
        *st = (ppm, Some(rand::rngs::StdRng::seed_from_u64(seed)));
    }

    /// Frames dropped by the loss setting so far.
    pub fn dropped(&self) -> u64 {
        self.loss.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Frames in flight in one direction, each with the instant it is due.
#[derive(Default)]
struct Line {
    queue: Mutex<VecDeque<(Instant, Vec<u8>)>>,
    ready: Condvar,
}

/// SCHED_FIFO for the calling relay thread. Without the privilege the
/// relay still works, only as late as the scheduler lets it.
fn realtime() {
    let _ = crate::sys::sched::set_fifo(RT_PRIORITY);
}

fn receive(
    sock: &PacketSocket,
    to: &PacketSocket,
    line: &Line,
    stop: &AtomicBool,
    delay: Duration,
    loss: &Loss,
) {
    let mut buf = vec![0u8; FRAME_MAX];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv(&mut buf) {
            Ok(n) if n > VNET_HDR_LEN => n,
            _ => continue, // SO_RCVTIMEO expired (stop check) or a transient error
        };
        if !held(&buf[VNET_HDR_LEN..n]) {
            // The access link's own: across at once (it may overtake IP
            // still held, as ARP would on a real access network).
            let _ = to.send(&buf[..n]);
            continue;
        }
        if loss.lose() {
            continue;
        }
        let due = Instant::now() + delay;
        let mut q = line.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back((due, buf[..n].to_vec()));
        line.ready.notify_one();
    }
    line.ready.notify_all();
}

fn transmit(sock: &PacketSocket, line: &Line, stop: &AtomicBool) {
    let mut q = line.queue.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        match q.front() {
            None => {
                q = line
                    .ready
                    .wait_timeout(q, Duration::from_millis(100))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Some((due, _)) if *due > now => {
                let wait = *due - now;
                q = line
                    .ready
                    .wait_timeout(q, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            Some(_) => {
                let (_, frame) = q.pop_front().expect("front checked");
                drop(q);
                // A frame the link refuses is lost, as on a cable.
                let _ = sock.send(&frame);
                q = line.queue.lock().unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Opens the two AF_PACKET sockets inside the namespace at `netns_path`
/// (a socket belongs to the namespace it was created in, so a short-lived
/// thread enters the namespace, opens them and exits).
fn open_pair(
    netns_path: &str,
    a_dev: &str,
    b_dev: &str,
) -> io::Result<(PacketSocket, PacketSocket)> {
    let (path, a_dev, b_dev) = (netns_path.to_string(), a_dev.to_string(), b_dev.to_string());
    std::thread::spawn(move || -> io::Result<(PacketSocket, PacketSocket)> {
        let ns = std::fs::File::open(&path)?;
        // CLONE_NEWNET affects this thread only.
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok((open_packet_socket(&a_dev)?, open_packet_socket(&b_dev)?))
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

fn open_packet_socket(dev: &str) -> io::Result<PacketSocket> {
    let ifindex = nix::net::if_::if_nametoindex(dev)
        .map_err(|_| io::Error::other(format!("no interface {dev}")))?;
    let sock = PacketSocket::bind(ifindex, ETH_P_ALL, Framing::Frame)?;
    sock.set_vnet_hdr()?;
    sock.set_ignore_outgoing()?;
    // The relay's end of the MN's access link loses its carrier while the
    // MN is away (one veth pair), and gets it back when the MN comes: the
    // kernel's linkwatch work then swaps its `noop` qdisc for the real
    // one, later under load. Through the qdisc, an ARP reply relayed in
    // that window was dropped and the MN's first datagram on the new
    // network waited the 1 s of ARP's retransmission; an access router's
    // port does not go dark when a client leaves. Past the qdisc, a frame
    // needs only the carrier, which veth sets at once.
    sock.set_qdisc_bypass()?;
    // A bounded wait, so the receiver sees the stop flag.
    sock.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(sock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(loss: &Loss, n: usize) -> Vec<bool> {
        (0..n).map(|_| loss.lose()).collect()
    }

    /// An Ethernet frame of `ethertype` carrying `payload`.
    fn frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An IPv6 header with `next_header`, then `first` as the payload's
    /// first byte.
    fn ipv6(next_header: u8, first: u8) -> Vec<u8> {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = next_header;
        p[40] = first;
        p
    }

    #[test]
    fn ip_is_held_and_the_links_own_frames_are_not() {
        assert!(held(&frame(ETHERTYPE_IPV4, &[0x45; 28])));
        // ARP, and any other non-IP frame.
        assert!(!held(&frame(0x0806, &[0; 28])));
        assert!(!held(&frame(0x88cc, &[0; 28])));
        // IPv6: every Neighbor Discovery type passes, echo and UDP wait.
        for t in 133..=137 {
            assert!(!held(&frame(ETHERTYPE_IPV6, &ipv6(58, t))), "type {t}");
        }
        assert!(held(&frame(ETHERTYPE_IPV6, &ipv6(58, 128))));
        assert!(held(&frame(ETHERTYPE_IPV6, &ipv6(58, 138))));
        assert!(held(&frame(ETHERTYPE_IPV6, &ipv6(17, 135))));
        // Too short for an ethertype: passed; IPv6 too short for
        // ICMPv6's type: held as IP.
        assert!(!held(&[0u8; 10]));
        assert!(held(&frame(ETHERTYPE_IPV6, &[0x60; 10])));
    }

    #[test]
    fn loss_is_seeded_and_near_its_share() {
        let set = |percent, seed| {
            let l = Loss::default();
            *l.state.lock().unwrap() = (
                (percent * 10_000.0) as u32,
                Some(rand::rngs::StdRng::seed_from_u64(seed)),
            );
            l
        };
        let (a, b) = (set(10.0, 7), set(10.0, 7));
        let da = decisions(&a, 100_000);
        assert_eq!(da, decisions(&b, 100_000), "same seed, same frames lost");
        let lost = da.iter().filter(|x| **x).count();
        assert_eq!(a.dropped.load(Ordering::Relaxed), lost as u64);
        // 10 % of 100,000: the binomial's standard deviation is ~95.
        assert!((9_000..11_000).contains(&lost), "{lost}");
        assert_ne!(da, decisions(&set(10.0, 8), 100_000));
        // No loss set: nothing is lost.
        assert!(!decisions(&Loss::default(), 1000).contains(&true));
    }
}
