//! Network namespaces for the data-plane and netlink tests: unique names
//! (prefix + pid + tag), removed on drop even when the test fails, and a
//! tokio runtime whose threads live inside the namespace, so sockets and
//! netlink connections made by its tasks belong to it.

#![allow(dead_code)]

use std::fs::File;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// Fails the test, saying why, unless it runs as root: a test that
/// cannot make its namespaces must not pass as if it had run.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test makes network namespaces and needs root (euid is {euid}): run it as root"
    );
}

pub struct Netns {
    pub name: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("mip4t-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let mut ns = Netns { name, rt: None };
        ns.ip("link set lo up");
        let path = format!("/run/netns/{}", ns.name);
        let rt = std::thread::spawn(move || {
            let f = File::open(&path).expect("open netns");
            // SAFETY: a valid namespace fd; setns affects only this thread,
            // whose children (the runtime's workers) inherit the namespace.
            let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
        })
        .join()
        .expect("namespace thread");
        ns.rt = Some(rt);
        ns
    }

    /// `ip -n NS ARGS`, panicking with ip's message on failure.
    pub fn ip(&self, args: &str) -> String {
        let mut a = vec!["-n", &self.name];
        a.extend(args.split_whitespace());
        run("ip", &a)
    }

    /// A command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> String {
        let mut a = vec!["netns", "exec", &self.name];
        a.extend_from_slice(cmd);
        run("ip", &a)
    }

    /// Runs `f` on the namespace's runtime and waits for it.
    pub fn run<F>(&self, f: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let rt = self.rt.as_ref().expect("runtime");
        rt.block_on(rt.spawn(f)).expect("task panicked")
    }

    /// Starts `f` on the namespace's runtime without waiting.
    pub fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.as_ref().expect("runtime").spawn(f)
    }

    /// Waits for a spawned task from outside the runtime.
    pub fn join<T: Send + 'static>(&self, h: tokio::task::JoinHandle<T>) -> T {
        self.rt
            .as_ref()
            .expect("runtime")
            .block_on(h)
            .expect("task panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .expect("spawn command");
    assert!(
        out.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` until it holds or `deadline` passes; returns whether it held.
pub fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two namespaces joined by a veth pair: "ha" (10.77.0.1/24 on vha) and
/// "mn" (10.77.0.2/24 on vmn).
pub struct Pair {
    pub ha: Netns,
    pub mn: Netns,
}

pub const HA_ADDR: [u8; 4] = [10, 77, 0, 1];
pub const COA: [u8; 4] = [10, 77, 0, 2];

impl Pair {
    pub fn new(tag: &str) -> Pair {
        let ha = Netns::new(&format!("{tag}-ha"));
        let mn = Netns::new(&format!("{tag}-mn"));
        ha.ip(&format!(
            "link add vha type veth peer name vmn netns {}",
            mn.name
        ));
        ha.ip("addr add 10.77.0.1/24 dev vha");
        ha.ip("link set vha up");
        mn.ip("addr add 10.77.0.2/24 dev vmn");
        mn.ip("link set vmn up");
        Pair { ha, mn }
    }
}

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use mip4::dataplane::{BackendChoice, DataPlane, Role, Tunnel, TunnelBinding, UserspaceConfig};
use mip4::netlink::{sysctl, Netlink, RouteSpec, RuleSpec};

/// Home address of the test MN and the "correspondent" address on the HA.
pub const HOA: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const CN: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
pub const MN_TABLE: u32 = 100;

/// Starts a userspace data plane with one binding and the routes that use
/// it: at the HA the home address routed into the tunnel; at the MN a rule
/// `from HoA lookup 100` and a default route into the tunnel in table 100.
/// Runs inside the namespace's runtime.
pub async fn start_plane(
    role: Role,
    binding: TunnelBinding,
    udp: Option<Arc<tokio::net::UdpSocket>>,
    control: Option<tokio::sync::mpsc::Sender<(SocketAddrV4, Vec<u8>)>>,
) -> (Arc<Netlink>, DataPlane) {
    start_plane_with(
        role,
        binding,
        udp,
        control,
        UserspaceConfig::new("mip4t0", role),
    )
    .await
}

/// [`start_plane`] from a configuration of the caller's (e.g. with the
/// mobile node's outer-source check).
pub async fn start_plane_with(
    role: Role,
    binding: TunnelBinding,
    udp: Option<Arc<tokio::net::UdpSocket>>,
    control: Option<tokio::sync::mpsc::Sender<(SocketAddrV4, Vec<u8>)>>,
    mut cfg: UserspaceConfig,
) -> (Arc<Netlink>, DataPlane) {
    let nl = Arc::new(Netlink::new().expect("netlink"));
    if udp.is_some() {
        cfg.mtu = 1500 - 32;
    }
    cfg.udp = udp;
    // The plane hands control messages to a sink: here, the test's channel.
    cfg.control = control.map(|tx| -> mip4::dataplane::userspace::ControlSink {
        Arc::new(move |from, data| {
            let _ = tx.try_send((from, data.to_vec()));
        })
    });
    let mut dp = DataPlane::start(nl.clone(), BackendChoice::Userspace, cfg)
        .await
        .expect("start data plane");
    let dev = dp.create(binding).await.expect("create tunnel");
    sysctl::disable_rp_filter("all").unwrap();
    sysctl::disable_rp_filter(&dev.ifname).unwrap();
    match role {
        Role::HomeAgent => nl
            .add_route(&RouteSpec::to_dev(binding.home, 32, dev.ifindex))
            .await
            .expect("route home address into tunnel"),
        Role::MobileNode => {
            nl.add_route(
                &RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, dev.ifindex).in_table(MN_TABLE),
            )
            .await
            .expect("default route into tunnel");
            nl.add_rule(&RuleSpec {
                from: Some((binding.home, 32)),
                to: None,
                iif: None,
                table: MN_TABLE,
                priority: 100,
                ..Default::default()
            })
            .await
            .expect("rule from home address");
        }
    }
    (nl, dp)
}

fn icmp_checksum_fill(b: &mut [u8]) {
    b[2] = 0;
    b[3] = 0;
    let c = mip4::dataplane::ipv4::checksum(b);
    b[2..4].copy_from_slice(&c.to_be_bytes());
}

/// ICMP echo from `src` to `dst` (there is no ping(8) on the test
/// machines): true when a matching reply came back before the deadline.
/// Resends once a second (the first may wait for ARP).
pub async fn ping(src: Ipv4Addr, dst: Ipv4Addr, deadline: Duration) -> bool {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::mem::MaybeUninit;
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    s.bind(&SocketAddrV4::new(src, 0).into()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let id: u16 = std::process::id() as u16;
    let end = Instant::now() + deadline;
    let mut seq: u16 = 0;
    let mut last_sent = Instant::now() - Duration::from_secs(10);
    while Instant::now() < end {
        if last_sent.elapsed() >= Duration::from_secs(1) {
            seq += 1;
            let mut req = vec![8u8, 0, 0, 0];
            req.extend_from_slice(&id.to_be_bytes());
            req.extend_from_slice(&seq.to_be_bytes());
            req.extend_from_slice(b"mip4-mobike tunnel test");
            icmp_checksum_fill(&mut req);
            s.send_to(&req, &SocketAddrV4::new(dst, 0).into()).unwrap();
            last_sent = Instant::now();
        }
        let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
        if let Ok(n) = s.recv(&mut buf) {
            // SAFETY: recv initialised the first n bytes.
            let b: Vec<u8> = buf[..n]
                .iter()
                .map(|x| unsafe { x.assume_init() })
                .collect();
            let hl = usize::from(b[0] & 0x0f) * 4;
            let icmp = &b[hl..];
            if icmp.len() >= 8
                && icmp[0] == 0
                && icmp[4..6] == id.to_be_bytes()
                && b[12..16] == dst.octets()
            {
                return true;
            }
        }
    }
    false
}

/// Echoes one TCP connection on `addr`.
pub async fn tcp_echo_server(addr: SocketAddrV4) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(addr).await.expect("listen");
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.expect("write");
        }
    })
}

/// Connects from `src` to `dst`, sends `len` bytes and checks they come
/// back unchanged.
pub async fn tcp_round_trip(src: Ipv4Addr, dst: SocketAddrV4, len: usize) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddrV4::new(src, 0).into()).unwrap();
    let s = tokio::time::timeout(Duration::from_secs(10), sock.connect(dst.into()))
        .await
        .expect("connect timed out")
        .expect("connect");
    let (mut r, mut w) = s.into_split();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&sent).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut back))
        .await
        .expect("echo timed out")
        .expect("read");
    writer.await.unwrap();
    back == data
}

/// Sends a hand-made IPv4 datagram (header included) from the namespace.
pub async fn send_raw(datagram: &[u8]) {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255))).unwrap();
    let dst = Ipv4Addr::new(datagram[16], datagram[17], datagram[18], datagram[19]);
    s.send_to(datagram, &SocketAddrV4::new(dst, 0).into())
        .unwrap();
}

/// A UDP datagram from `src` to `dst` as a whole IPv4 datagram (checksum
/// 0: optional over IPv4).
pub fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    use mip4::dataplane::ipv4::{Ipv4Repr, MIN_HEADER_LEN, PROTO_UDP};
    let mut udp = Vec::new();
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let repr = Ipv4Repr {
        src: *src.ip(),
        dst: *dst.ip(),
        protocol: PROTO_UDP,
        tos: 0,
        ident: 1,
        dont_frag: false,
        ttl: 64,
        payload_len: udp.len(),
    };
    let mut h = [0u8; MIN_HEADER_LEN];
    repr.emit(&mut h);
    let mut v = h.to_vec();
    v.extend_from_slice(&udp);
    v
}

pub fn counters(dp: &DataPlane) -> mip4::dataplane::CounterSnapshot {
    dp.status().counters.expect("userspace counters")
}
