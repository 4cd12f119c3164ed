//! The userspace data plane, for kernels without the ipip module: one TUN
//! device and one raw `IPPROTO_IPIP` socket (and one for IPv6 in IPv4,
//! plus, for RFC 3519, the UDP socket on the Mobile IP port) carry every
//! binding. The kernel routes datagrams for tunnelled addresses into the
//! TUN device; we encapsulate them and send them out of the raw socket
//! ([`super::raw_egress`]: the kernel writes the outer header and refuses
//! a source the node no longer has), and write what the raw socket
//! decapsulates back into the device. All decisions are in
//! [`super::process`]; these tasks only move buffers.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsFd;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::binding::{BindingTable, Encapsulation, Role, TunnelBinding};
use super::ingress::{CounterSnapshot, Counters};
use super::ipv4::PROTO_IPIP;
use super::ipv6::PROTO_IPV6;
use super::process::{self, UdpInput};
use super::raw_egress::RawEgress;
use super::recv::Batch;
use super::source::{SharedSources, SourceVerdict};
use super::TunnelError;
use crate::netlink::Netlink;
use crate::ratelimit::{Limits, SourceLimiter, Verdict};
use crate::sys::async_fd;
use crate::sys::tun::TunDevice;

/// Where a control message (registration, keepalive) that arrived on the
/// shared Mobile IP UDP socket goes: the caller's, called on the reading
/// task with the sender and the datagram. It must not block: the home
/// agent screens the datagram there and queues only what may need an
/// answer (`crate::daemons::ha::intake`), so a flood is settled at the
/// socket instead of in a queue.
pub type ControlSink = Arc<dyn Fn(SocketAddrV4, &[u8]) + Send + Sync>;

const MAX_DATAGRAM: usize = 65_535;

/// The raw sockets' receive buffer. The kernel's default (about 200 KiB,
/// some 140 full-size datagrams) overflowed under one bulk TCP stream
/// whenever the reading task was off the CPU for a moment: each datagram
/// dropped there is a TCP loss (and an ICMP protocol unreachable from the
/// kernel, which has no ipip handler of its own). 4 MiB holds a few
/// milliseconds of a gigabit link; the lab's `dataplane` scenario
/// measured the tunnel's throughput with and without it (docs/PERFORMANCE.md).
const RAW_RECEIVE_BUFFER: usize = 4 << 20;

/// How to build a userspace data plane.
pub struct UserspaceConfig {
    /// TUN interface name (e.g. `mip4tun0`).
    pub ifname: String,
    pub role: Role,
    /// Outer TTL (RFC 2003 §3.1).
    pub ttl: u8,
    /// Device MTU: 1500 less the encapsulation overhead (20 for IP-in-IP,
    /// 32 for RFC 3519) so that tunnelled datagrams are not fragmented.
    pub mtu: u32,
    /// The Mobile IP UDP socket for RFC 3519 bindings. The plane reads it:
    /// Tunnel Data is handled here, everything else goes to `control`.
    /// (The mobile node gives none here: its socket changes with the
    /// care-of address, [`UserspacePlane::set_udp`], and its reader hands
    /// tunnel data to [`UserspacePlane::udp_sink`].)
    pub udp: Option<Arc<UdpSocket>>,
    pub control: Option<ControlSink>,
    /// The mobile node's: send only from addresses the node has now, a
    /// TIA only under the VPN guard ([`super::source`]). Its owner (mip4d's
    /// installer) feeds it the node's address events.
    pub sources: Option<SharedSources>,
}

impl std::fmt::Debug for UserspaceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceConfig")
            .field("ifname", &self.ifname)
            .field("role", &self.role)
            .field("mtu", &self.mtu)
            .field("udp", &self.udp)
            .field("control", &self.control.is_some())
            .field("sources", &self.sources.is_some())
            .finish_non_exhaustive()
    }
}

impl UserspaceConfig {
    pub fn new(ifname: &str, role: Role) -> Self {
        UserspaceConfig {
            ifname: ifname.to_string(),
            role,
            ttl: super::ipip::DEFAULT_TTL,
            mtu: 1500 - 20,
            udp: None,
            control: None,
            sources: None,
        }
    }
}

/// The socket RFC 3519 tunnel data leaves from (none: UDP bindings are
/// refused). The mobile node swaps it when its care-of address changes.
/// Weak: the socket's owner (the HA's loop, the MN's registration
/// sockets) decides its life; a socket closed with its address is not
/// kept open by the plane.
type UdpSlot = Arc<RwLock<Option<Weak<UdpSocket>>>>;

fn udp_socket(slot: &UdpSlot) -> Option<Arc<UdpSocket>> {
    slot.read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(Weak::upgrade)
}

/// The outer sources the mobile node's plane may send from, when it
/// checks them ([`UserspaceConfig::sources`]).
type Sources = Option<SharedSources>;

/// Whether an outer datagram from `from` may leave now; counted and
/// dropped when not. Asked inside the send itself, so that an address
/// removed while its datagram waited for the socket is seen.
fn may_leave(sources: &Sources, from: Ipv4Addr, counters: &Counters) -> bool {
    let Some(s) = sources else {
        return true;
    };
    let verdict = s.read().unwrap_or_else(|p| p.into_inner()).check(from);
    match verdict {
        SourceVerdict::Send => return true,
        SourceVerdict::Stale => Counters::bump(&counters.stale_source),
        SourceVerdict::OutsideEsp => Counters::bump(&counters.outside_esp),
    }
    tracing::debug!(%from, ?verdict, "outer datagram dropped: its source may not send");
    false
}

/// RFC 3519 §4.9: the mobile node's keepalive for the UDP binding of
/// `home`, every `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub home: Ipv4Addr,
    pub interval: Duration,
}

/// A running userspace data plane. Dropping it stops its tasks and removes
/// the TUN device.
#[derive(Debug)]
pub struct UserspacePlane {
    ifname: String,
    ifindex: u32,
    bindings: Arc<RwLock<BindingTable>>,
    counters: Arc<Counters>,
    udp: UdpSlot,
    keepalive: watch::Sender<Option<Keepalive>>,
    sink: UdpSink,
    tasks: Vec<JoinHandle<()>>,
}

/// Where tunnel data read from a Mobile IP UDP socket goes: checked
/// ([`process::from_udp`]) and written into the TUN device. Cloned into
/// the reader of each socket that may carry it.
#[derive(Debug, Clone)]
pub struct UdpSink {
    role: Role,
    tun: Arc<AsyncFd<TunDevice>>,
    bindings: Arc<RwLock<BindingTable>>,
    counters: Arc<Counters>,
}

impl UdpSink {
    /// Takes `msg`, received from `from`, if it is tunnel data (delivered,
    /// or dropped and counted) and returns `None`; anything else (a
    /// registration message) is handed back for the control plane.
    pub async fn input<'a>(&self, from: SocketAddrV4, msg: &'a [u8]) -> Option<&'a [u8]> {
        let deliver = {
            let table = self.bindings.read().unwrap_or_else(|p| p.into_inner());
            match process::from_udp(self.role, &table, from, msg, &self.counters) {
                UdpInput::Deliver(d) => Some(d),
                UdpInput::Control => return Some(msg),
                UdpInput::Dropped => None,
            }
        };
        if let Some(d) = deliver {
            write_device(&self.tun, d, &self.counters).await;
        }
        None
    }
}

impl UserspacePlane {
    /// Creates the TUN device, brings it up and starts the I/O tasks.
    pub async fn start(nl: &Netlink, cfg: UserspaceConfig) -> Result<Self, TunnelError> {
        let tun = TunDevice::open(&cfg.ifname)
            .map_err(|e| TunnelError::Io(format!("open TUN device {}", cfg.ifname), e))?;
        let ifname = tun.name().to_string();
        let ifindex = nl.link_index(&ifname).await?;
        nl.set_link_mtu(ifindex, cfg.mtu).await?;
        nl.set_link_up(ifindex, true).await?;

        let raw = raw_socket(PROTO_IPIP)?;
        // RFC 5454: IPv6 in IPv4 to the care-of address arrives as
        // protocol 41; what it carries is decided in [`process::from_raw`].
        let raw6 = raw_socket(PROTO_IPV6)?;
        let tun = async_fd::register(tun).map_err(|e| TunnelError::Io("register TUN".into(), e))?;
        let tun = Arc::new(tun);
        let bindings = Arc::new(RwLock::new(BindingTable::default()));
        let counters = Arc::new(Counters::default());

        let udp: UdpSlot = Arc::new(RwLock::new(cfg.udp.as_ref().map(Arc::downgrade)));
        let sources: Sources = cfg.sources.clone();
        let (keepalive, keepalive_rx) = watch::channel(None);
        let sink = UdpSink {
            role: cfg.role,
            tun: tun.clone(),
            bindings: bindings.clone(),
            counters: counters.clone(),
        };
        let mut tasks = vec![
            tokio::spawn(device_to_network(
                cfg.role,
                cfg.ttl,
                tun.clone(),
                Egress {
                    raw: RawEgress::new(raw.clone(), raw6.clone()),
                    udp: udp.clone(),
                    sources: sources.clone(),
                },
                bindings.clone(),
                counters.clone(),
            )),
            tokio::spawn(keepalives(
                keepalive_rx,
                udp.clone(),
                bindings.clone(),
                sources.clone(),
                counters.clone(),
            )),
            tokio::spawn(raw_to_device(
                cfg.role,
                tun.clone(),
                raw,
                bindings.clone(),
                counters.clone(),
            )),
            tokio::spawn(raw_to_device(
                cfg.role,
                tun.clone(),
                raw6,
                bindings.clone(),
                counters.clone(),
            )),
        ];
        if let Some(sock) = cfg.udp {
            tasks.push(tokio::spawn(udp_to_device(sink.clone(), sock, cfg.control)));
        }
        tracing::info!(ifname, ifindex, "userspace tunnel data plane started");
        Ok(UserspacePlane {
            ifname,
            ifindex,
            bindings,
            counters,
            udp,
            keepalive,
            sink,
            tasks,
        })
    }

    /// The socket RFC 3519 tunnel data leaves from from now on (at the
    /// mobile node: the registration socket of its care-of address, so
    /// that data and registrations share the NAT's mapping, RFC 3519
    /// §3.3). Whoever reads that socket hands tunnel data to
    /// [`udp_sink`](Self::udp_sink).
    pub fn set_udp(&self, sock: Option<&Arc<UdpSocket>>) {
        *self.udp.write().unwrap_or_else(|p| p.into_inner()) = sock.map(Arc::downgrade);
    }

    /// Where the reader of a Mobile IP socket hands what it receives.
    pub fn udp_sink(&self) -> UdpSink {
        self.sink.clone()
    }

    /// RFC 3519 §4.9: keepalives for a UDP binding (the mobile node's
    /// end), or none.
    pub fn set_keepalive(&self, k: Option<Keepalive>) {
        self.keepalive.send_replace(k);
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Adds or replaces the binding of `b.home`.
    pub fn insert(&self, b: TunnelBinding) -> Result<(), TunnelError> {
        let has_udp = udp_socket(&self.udp).is_some();
        if b.encapsulation == Encapsulation::Udp && !has_udp {
            return Err(TunnelError::Unsupported(
                "RFC 3519 UDP tunnelling needs the Mobile IP UDP socket".into(),
            ));
        }
        self.bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(b);
        Ok(())
    }

    /// RFC 5454: the IPv6 prefix of the binding of `home` (none: its IPv6
    /// is no longer carried).
    pub fn set_ipv6(&self, home: Ipv4Addr, v6: Option<super::binding::Ipv6Binding>) {
        self.bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .set_ipv6(home, v6);
    }

    /// [`Self::set_ipv6`], and the device the prefix's IPv6 is routed
    /// into when it has one (the mobile node's end).
    pub fn carry_ipv6(
        &self,
        home: Ipv4Addr,
        v6: Option<super::binding::Ipv6Binding>,
    ) -> Option<super::TunnelDevice> {
        self.set_ipv6(home, v6);
        v6.map(|_| super::TunnelDevice {
            ifindex: self.ifindex,
            ifname: self.ifname.clone(),
        })
    }

    pub fn remove(&self, home: Ipv4Addr) -> Option<TunnelBinding> {
        self.bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(home)
    }

    pub fn get(&self, home: Ipv4Addr) -> Option<TunnelBinding> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(home)
            .copied()
    }

    /// [`BindingTable::reserve`].
    pub fn reserve(&self, n: usize) {
        self.bindings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .reserve(n);
    }

    pub fn bindings(&self) -> Vec<TunnelBinding> {
        self.bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }
}

impl Drop for UserspacePlane {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where encapsulated datagrams leave, and what may leave.
struct Egress {
    raw: RawEgress,
    udp: UdpSlot,
    sources: Sources,
}

async fn device_to_network(
    role: Role,
    ttl: u8,
    tun: Arc<AsyncFd<TunDevice>>,
    egress: Egress,
    bindings: Arc<RwLock<BindingTable>>,
    counters: Arc<Counters>,
) {
    let Egress {
        mut raw,
        udp,
        sources,
    } = egress;
    let mut too_big = TooBig::new();
    let mut udp_df = UdpDf::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut out = Vec::with_capacity(MAX_DATAGRAM);
    let mut ident: u16 = rand::random();
    loop {
        let n = match tun.async_io(Interest::READABLE, |t| t.recv(&mut buf)).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the tunnel device failed; data plane stopped");
                return;
            }
        };
        ident = ident.wrapping_add(1);
        let tx = {
            let table = bindings.read().unwrap_or_else(|p| p.into_inner());
            process::from_device(role, &table, &buf[..n], ident, ttl, &mut out, &counters)
        };
        let Some(tx) = tx else { continue };
        let udp = match tx.encapsulation {
            Encapsulation::Udp => udp_socket(&udp),
            Encapsulation::IpInIp => None,
        };
        let leave = || may_leave(&sources, tx.from, &counters);
        let sent = match (tx.encapsulation, &udp) {
            (Encapsulation::IpInIp, _) => raw.send(&out, leave).await,
            (Encapsulation::Udp, Some(u)) => {
                udp_df.follow(u, super::udp::outer_dont_frag(&out));
                let to = SocketAddr::V4(tx.to);
                u.async_io(Interest::WRITABLE, || match leave() {
                    true => u.try_send_to(&out, to).map(drop),
                    false => Ok(()),
                })
                .await
            }
            (Encapsulation::Udp, None) => Err(io::ErrorKind::Unsupported.into()),
        };
        if let Err(e) = sent {
            if super::raw_egress::source_gone(&e, tx.from) {
                // The kernel removed the care-of address before mip4d's
                // view of it caught up: refused by the kernel itself.
                Counters::bump(&counters.stale_source);
                tracing::debug!(from = %tx.from, error = %e, "outer datagram refused: its source has gone");
                continue;
            }
            Counters::bump(&counters.send_errors);
            tracing::debug!(error = %e, to = %tx.to, "sending a tunnelled datagram failed");
            if e.raw_os_error() == Some(libc::EMSGSIZE) {
                // What the plane put in front of the datagram: `out` is
                // the whole IP datagram for IP in IP (the header the
                // kernel writes in its place), the UDP payload for RFC
                // 3519 (then the IPv4 and UDP headers come on top).
                let headers = match tx.encapsulation {
                    Encapsulation::IpInIp => 0,
                    Encapsulation::Udp => super::ipv4::MIN_HEADER_LEN + UDP_HEADER_LEN,
                };
                let overhead = out.len().saturating_sub(n) + headers;
                too_big.answer(&buf[..n], *tx.to.ip(), overhead, &counters);
            }
        }
    }
}

const UDP_HEADER_LEN: usize = 8;

/// DF on RFC 3519 tunnel data ([`super::udp::outer_dont_frag`]). The
/// kernel writes the outer header of a UDP socket's datagrams, so DF is
/// the socket's IP_MTU_DISCOVER: DO (DF set; one that does not fit the
/// path MTU is refused with EMSGSIZE and its source told, [`TooBig`]) or
/// DONT (DF clear; fragmented to fit). Linux's default for UDP, WANT,
/// would fragment an oversized one whatever the inner header asks. Set
/// only when the class changes from the last datagram's on this socket
/// (a Weak: a new socket in the slot starts again).
#[derive(Default)]
struct UdpDf {
    last: Option<(Weak<UdpSocket>, bool)>,
}

impl UdpDf {
    fn follow(&mut self, socket: &Arc<UdpSocket>, df: bool) {
        if let Some((s, was)) = &self.last {
            if *was == df && s.as_ptr() == Arc::as_ptr(socket) {
                return;
            }
        }
        match super::raw_egress::set_dont_fragment(socket.as_fd(), df) {
            Ok(()) => self.last = Some((Arc::downgrade(socket), df)),
            Err(e) => {
                self.last = None;
                tracing::debug!(error = %e, df, "IP_MTU_DISCOVER on the UDP tunnel socket");
            }
        }
    }
}

/// How often the plane tells a source its datagram was too big for the
/// tunnel. RFC 4443 §2.4 (f): ICMPv6 errors MUST be rate-limited (and RFC
/// 1812 §4.3.2.8 asks the same of ICMP). Generous, since each answer lost
/// costs the source a full-size retransmission and every mobile node it
/// talks to needs one of its own; bounded, since the source may be
/// spoofed. The total is Linux's own (`icmp_msgs_per_sec`,
/// `icmp_msgs_burst`).
const TOO_BIG_LIMITS: Limits = Limits {
    per_source_burst: 10,
    per_source_rate: 10.0,
    total_burst: 50,
    total_rate: 1000.0,
    max_sources: 4096,
};

/// The answers to datagrams that did not fit the path to the tunnel's far
/// end (the kernel knows its MTU, e.g. from an ESP gateway's
/// "fragmentation needed", and refused the send with EMSGSIZE): without
/// one the source would retransmit the same size for ever (a PMTU black
/// hole). IPv4 with DF gets "fragmentation needed" (RFC 2003 §5.1), IPv6
/// a Packet Too Big (RFC 4213 §3.2), both carrying the tunnel MTU: the
/// path MTU less what the plane puts in front of the datagram.
struct TooBig {
    limiter: SourceLimiter,
}

impl TooBig {
    fn new() -> Self {
        TooBig {
            limiter: SourceLimiter::new(TOO_BIG_LIMITS, Instant::now()),
        }
    }

    fn answer(&mut self, inner: &[u8], to: Ipv4Addr, overhead: usize, counters: &Counters) {
        let Ok(pmtu) = path_mtu(to) else { return };
        let tunnel_mtu = pmtu.saturating_sub(overhead);
        let Some((icmp, src)) = too_big_message(inner, tunnel_mtu) else {
            return;
        };
        if self.limiter.allow(Instant::now(), src) == Verdict::Refused {
            Counters::bump(&counters.too_big_limited);
            return;
        }
        let sent = match src {
            IpAddr::V4(a) => Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
                .and_then(|s| s.send_to(&icmp, &SocketAddrV4::new(a, 0).into())),
            // The kernel computes an ICMPv6 raw socket's checksum (RFC
            // 3542 §3.1) over the source address it picks.
            IpAddr::V6(a) => Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
                .and_then(|s| s.send_to(&icmp, &SocketAddrV6::new(a, 0, 0, 0).into())),
        };
        match sent {
            Ok(_) => {
                Counters::bump(&counters.too_big_sent);
                tracing::debug!(to = %src, tunnel_mtu, "datagram too big for the tunnel: told its source");
            }
            Err(e) => tracing::debug!(error = %e, to = %src, "too-big answer not sent"),
        }
    }
}

/// The ICMP or ICMPv6 answer to `inner` for a tunnel of `tunnel_mtu`, and
/// where it goes (the datagram's source); `None` when it gets none.
fn too_big_message(inner: &[u8], tunnel_mtu: usize) -> Option<(Vec<u8>, IpAddr)> {
    if inner.first().is_some_and(|v| v >> 4 == 6) {
        let src = super::ipv6::Ipv6Packet::new_checked(inner).ok()?.src_addr();
        let icmp = super::ipv6::packet_too_big(inner, tunnel_mtu)?;
        return Some((icmp, src.into()));
    }
    let src = super::ipv4::Ipv4Packet::new_checked(inner).ok()?.src_addr();
    let mtu = u16::try_from(tunnel_mtu).unwrap_or(u16::MAX);
    let icmp = super::ipip::fragmentation_needed(inner, mtu)?;
    Some((icmp, src.into()))
}

/// The kernel's path MTU to `to`, read through a connected socket.
fn path_mtu(to: Ipv4Addr) -> io::Result<usize> {
    let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    s.connect((to, 9))?;
    let pmtu = nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::IpMtu)?;
    Ok(usize::try_from(pmtu).unwrap_or(0))
}

/// A raw IPv4 socket for one IP protocol, registered with the runtime.
/// Without IP_HDRINCL: the kernel writes the outer header, and refuses a
/// source that is no address of the node ([`super::raw_egress`]). What
/// it receives still starts with the IP header (raw(7)).
fn raw_socket(protocol: u8) -> Result<Arc<AsyncFd<Socket>>, TunnelError> {
    let what = format!("raw IP protocol {protocol} socket");
    let raw = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(i32::from(protocol))),
    )
    .and_then(|raw| {
        super::recv::widen_receive_buffer(&raw, RAW_RECEIVE_BUFFER);
        raw.set_nonblocking(true)?;
        raw.set_cloexec(true)?;
        Ok(raw)
    })
    .map_err(|e| TunnelError::Io(what.clone(), e))?;
    let raw = async_fd::register(raw).map_err(|e| TunnelError::Io(what, e))?;
    Ok(Arc::new(raw))
}

async fn raw_to_device(
    role: Role,
    tun: Arc<AsyncFd<TunDevice>>,
    raw: Arc<AsyncFd<Socket>>,
    bindings: Arc<RwLock<BindingTable>>,
    counters: Arc<Counters>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let n = match raw
            .async_io(Interest::READABLE, |mut s| s.read(&mut buf))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading the raw IP-in-IP socket failed; data plane stopped");
                return;
            }
        };
        let inner = {
            let table = bindings.read().unwrap_or_else(|p| p.into_inner());
            process::from_raw(role, &table, &buf[..n], &counters).map(|d| span_in(&buf, d))
        };
        if let Some((start, end)) = inner {
            super::ipv4::finish_transport_checksum(&mut buf[start..end]);
            write_device(&tun, &buf[start..end], &counters).await;
        }
    }
}

async fn udp_to_device(sink: UdpSink, udp: Arc<UdpSocket>, control: Option<ControlSink>) {
    let mut batch = Batch::new(MAX_DATAGRAM);
    loop {
        if let Err(e) = batch.recv(&udp).await {
            // ICMP errors surface here as ECONNREFUSED and the like.
            tracing::debug!(error = %e, "UDP receive error");
            continue;
        }
        for (from, data) in batch.datagrams() {
            let Some(msg) = sink.input(from, data).await else {
                continue;
            };
            if let Some(c) = &control {
                c(from, msg);
            }
        }
    }
}

/// RFC 3519 §4.9: the mobile node keeps its NAT's mapping alive with a
/// keepalive every interval the home agent granted, sent from the socket
/// the tunnel data leaves from, to the binding's far end.
async fn keepalives(
    mut config: watch::Receiver<Option<Keepalive>>,
    udp: UdpSlot,
    bindings: Arc<RwLock<BindingTable>>,
    sources: Sources,
    counters: Arc<Counters>,
) {
    let ident: u16 = rand::random();
    let mut seq: u16 = 0;
    let mut msg = Vec::new();
    loop {
        let current = *config.borrow_and_update();
        let Some(k) = current else {
            if config.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            r = config.changed() => {
                if r.is_err() {
                    return;
                }
                continue;
            }
            () = tokio::time::sleep(k.interval) => {}
        }
        let b = bindings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(k.home)
            .copied();
        let sock = udp_socket(&udp);
        let (Some(b), Some(sock)) = (b, sock) else {
            continue;
        };
        if b.encapsulation != Encapsulation::Udp {
            continue;
        }
        seq = seq.wrapping_add(1);
        super::udp::keepalive(b.home, *b.remote.ip(), ident, seq, &mut msg);
        let to = SocketAddr::V4(b.remote);
        let sent = sock
            .async_io(Interest::WRITABLE, || {
                match may_leave(&sources, b.local, &counters) {
                    true => sock.try_send_to(&msg, to).map(Some),
                    false => Ok(None),
                }
            })
            .await;
        match sent {
            Ok(None) => {}
            Ok(Some(_)) => Counters::bump(&counters.keepalives),
            Err(e) => {
                Counters::bump(&counters.send_errors);
                tracing::debug!(error = %e, to = %b.remote, "keepalive not sent");
            }
        }
    }
}

/// Where `part`, a sub-slice of `buf`, lies in it; lets the lock on the
/// binding table be released before the (awaiting) write.
fn span_in(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start, start + part.len())
}

async fn write_device(tun: &AsyncFd<TunDevice>, datagram: &[u8], counters: &Counters) {
    if let Err(e) = tun.async_io(Interest::WRITABLE, |t| t.send(datagram)).await {
        Counters::bump(&counters.send_errors);
        tracing::debug!(error = %e, "writing to the tunnel device failed");
    }
}
