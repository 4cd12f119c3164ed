//! Issue 13 item 9: a flood of forged registration requests against a real
//! mip4-ha, while a legitimate mobile node registers. [`run_once`] is one
//! flood (the test `ha_daemon` asserts on it); [`bench`] repeats it and
//! writes the figure for docs/PERFORMANCE.md (`mip4-lab flood`).
//!
//! One namespace holds the HA, the node's care-of address and the flood's
//! sources (half on the HA's trusted network, half outside it). Each
//! flood datagram is made before the flood starts, so the sender does
//! nothing but `sendto`: the flood is as fast as the machine can send.
//! The legitimate node's registration time is measured from its first
//! send to the authenticated acceptance, unloaded and under the flood,
//! within the same run; their medians' ratio is the figure.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::netns::{self, Netns, Process};
use super::{wait, Error, Result, WorkDir};
use crate::auth::{append_auth, find_auth, AuthKind, SecurityAssociation};
use crate::replay::{NtpTimestamp, ReplayMethod};
use crate::wire::registration::REQUEST_HEADER_LEN;
use crate::wire::{Flags, ReplyCode, ReplyRepr, RequestRepr};

const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 5);
/// The legitimate node (SPI 257) and its home address.
pub const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const SPI: u32 = 257;
const KEY: &str = "0102030405060708090a0b0c0d0e0f10";
/// A key the flood uses under the node's SPI: wrong, as an attacker's is.
const WRONG_KEY: &str = "00112233445566778899aabbccddeeff";

/// What to run.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// The mip4-ha binary.
    pub ha_bin: PathBuf,
    /// Forged datagrams per flood.
    pub forged: usize,
    /// Flood sources on the trusted network, and as many outside it.
    pub sources: u8,
    /// Legitimate registrations measured before the flood.
    pub unloaded: usize,
    /// RFC 3519 on: the userspace data plane reads UDP 434 (it carries
    /// tunnel data); off: mip4-ha's own reader does.
    pub udp_tunnelling: bool,
    /// A fifth of the flood is a copy of the node's last accepted request
    /// (correctly signed, replayed: RFC 5944 §5.7).
    pub replayed: bool,
}

impl FloodOptions {
    pub fn new(ha_bin: &Path) -> Self {
        FloodOptions {
            ha_bin: ha_bin.to_path_buf(),
            forged: 100_000,
            sources: 16,
            unloaded: 20,
            udp_tunnelling: true,
            replayed: false,
        }
    }
}

/// One flood's outcome.
#[derive(Debug, Clone)]
pub struct FloodRun {
    pub unloaded: Vec<Duration>,
    pub loaded: Vec<Duration>,
    /// Requests the node sent for all its registrations (more than one
    /// per registration when a send was lost and repeated after 1 s).
    pub sends: u32,
    /// How long the flood took to send.
    pub flood_took: Duration,
    /// `mip4ctl counters` and `bindings` after the flood.
    pub counters: serde_json::Value,
    pub bindings: serde_json::Value,
    /// The daemon's log.
    pub log: String,
    /// From the daemon's start to the counters' read.
    pub elapsed: Duration,
    /// Datagrams the kernel dropped because the HA's socket buffer was
    /// full (the namespace's UDP RcvbufErrors): the HA did not read fast
    /// enough, and a legitimate request among them had to be sent again.
    pub socket_drops: u64,
    /// CPU time mip4-ha spent from the flood's start to its end and the
    /// last registration.
    pub ha_cpu: Duration,
}

impl FloodRun {
    /// mip4-ha's CPU time per forged datagram it read.
    pub fn cpu_per_datagram(&self, forged: usize) -> Duration {
        let read = (forged as u64).saturating_sub(self.socket_drops).max(1);
        self.ha_cpu / u32::try_from(read).unwrap_or(u32::MAX)
    }

    /// Median registration time under the flood over the unloaded one.
    pub fn ratio(&self) -> f64 {
        median(&self.loaded).as_secs_f64() / median(&self.unloaded).as_secs_f64()
    }
}

pub fn median(v: &[Duration]) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[v.len() / 2]
}

fn sa(spi: u32, key: &str) -> SecurityAssociation {
    let k = crate::config::SecretKey::from_hex(key).expect("hex key");
    SecurityAssociation::new(
        spi,
        crate::auth::Algorithm::HmacMd5,
        k.expose(),
        ReplayMethod::Timestamp,
    )
    .expect("HMAC-MD5 SA")
}

fn request(id: u64, sa: &SecurityAssociation) -> Vec<u8> {
    let mut b = RequestRepr {
        flags: Flags::T,
        lifetime: 120,
        home_address: HOME,
        home_agent: HA,
        care_of_address: COA,
        identification: id,
        extensions: vec![],
    }
    .to_bytes();
    append_auth(&mut b, AuthKind::MnHa, sa);
    b
}

fn now_id() -> u64 {
    NtpTimestamp::from_system_time(SystemTime::now()).0
}

/// What the flood sends, `i`-th of a source: each kind an attacker
/// without a key can make, in turn, and with `replay` a copy of a request
/// the node signed.
fn forged(i: usize, id: u64, replay: Option<&[u8]>) -> Vec<u8> {
    if let Some(r) = replay.filter(|_| i % 5 == 4) {
        return r.to_vec();
    }
    match i % 4 {
        // The node's SPI under a wrong key.
        0 => request(id, &sa(SPI, WRONG_KEY)),
        // An SPI no node has.
        1 => request(id, &sa(4242, WRONG_KEY)),
        // No authenticator at all.
        2 => request(id, &sa(SPI, WRONG_KEY))[..REQUEST_HEADER_LEN].to_vec(),
        // Not even a request.
        _ => vec![1; 10],
    }
}

fn config(dir: &Path, udp_tunnelling: bool) -> String {
    format!(
        r#"listen = "0.0.0.0:434"
home_agent = "{HA}"
control_socket = "{}"
state_file = "{}"
max_lifetime = 300
trusted_networks = ["10.10.0.0/16"]
udp_tunnelling = {udp_tunnelling}

[[home_network]]
prefix = "10.1.0.0/24"

[[mobile_node]]
home_address = "{HOME}"
spi = {SPI}
key = "{KEY}"
"#,
        dir.join("ha.sock").display(),
        dir.join("ha.state").display(),
    )
}

/// A UDP socket bound to `bind` inside `ns` (a socket stays in the
/// namespace it was made in).
fn socket_in(ns: &Netns, bind: SocketAddrV4) -> Result<UdpSocket> {
    let name = ns.name().to_string();
    netns::run_in(ns.name(), "socket", move || {
        UdpSocket::bind(bind).map_err(|source| Error::Io {
            path: format!("UDP {bind} in {name}"),
            source,
        })
    })
}

fn ctl(dir: &Path, req: crate::ctl::Request) -> Result<serde_json::Value> {
    let r = crate::ctl::call(&dir.join("ha.sock"), req, Duration::from_secs(5))
        .map_err(|e| Error::Other(format!("mip4-ha control socket: {e}")))?;
    r.data
        .ok_or_else(|| Error::Other(format!("mip4-ha control: {:?}", r.error)))
}

/// One registration of the legitimate node, timed from the first send to
/// the authenticated acceptance. Like a mobile node it sends again (a new
/// Identification) when no reply came within a second (RFC 5944 §3.6.3).
/// Also the request that was accepted (what an attacker replays).
fn timed_registration(
    sock: &UdpSocket,
    next_id: &mut dyn FnMut() -> u64,
    sa: &SecurityAssociation,
) -> Result<(Duration, u32, Vec<u8>)> {
    let io = |source| Error::Io {
        path: "the mobile node's socket".into(),
        source,
    };
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(io)?;
    let t = Instant::now();
    for sends in 1..=10 {
        let id = next_id();
        let req = request(id, sa);
        sock.send_to(&req, SocketAddrV4::new(HA, 434)).map_err(io)?;
        let mut buf = [0u8; 2048];
        // Replies to an earlier send of ours may still arrive: skip them.
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let signed = find_auth(&buf[..n], AuthKind::MnHa).and_then(|a| a.verify(sa));
            let Ok(rep) = ReplyRepr::parse_bytes(&buf[..n]) else {
                continue;
            };
            if signed.is_ok() && rep.identification == id {
                if rep.code != ReplyCode::ACCEPTED {
                    return Err(Error::Other(format!("registration denied: {}", rep.code)));
                }
                return Ok((t.elapsed(), sends, req));
            }
        }
    }
    Err(Error::Other("no reply from mip4-ha to 10 sends".into()))
}

/// A namespace with the HA, the node's care-of address and the flood's
/// sources on its loopback, and mip4-ha running in it.
struct Setup {
    proc: Process,
    ns: Netns,
    dir: WorkDir,
}

fn setup(opts: &FloodOptions) -> Result<Setup> {
    let ns = Netns::new(&netns::unique_prefix(), "floodha")?;
    ns.add_addr("lo", &format!("{HA}/32"))?;
    ns.add_addr("lo", &format!("{COA}/32"))?;
    for k in 1..=opts.sources {
        ns.add_addr("lo", &format!("10.10.9.{k}/32"))?;
        ns.add_addr("lo", &format!("192.0.2.{k}/32"))?;
    }
    let dir = WorkDir::new("flood")?;
    let conf = dir.path().join("mip4-ha.conf");
    let write = std::fs::write(&conf, config(dir.path(), opts.udp_tunnelling)).and_then(|()| {
        std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600))
    });
    write.map_err(|source| Error::Io {
        path: conf.display().to_string(),
        source,
    })?;
    let mut cmd: Command = ns.command(&opts.ha_bin.display().to_string());
    cmd.arg("--config").arg(&conf);
    let proc = ns.spawn("mip4-ha", cmd, &dir.path().join("mip4-ha.log"))?;
    let path = dir.path().to_path_buf();
    wait::until(Duration::from_secs(10), "mip4-ha's control socket", || {
        ctl(&path, crate::ctl::Request::Status).ok()
    })?;
    Ok(Setup { proc, ns, dir })
}

/// Starts mip4-ha in a namespace of its own, measures the legitimate
/// node unloaded, then under `opts.forged` forged requests, then once
/// after; reads the counters, bindings and log.
pub fn run_once(opts: &FloodOptions) -> Result<FloodRun> {
    let started = Instant::now();
    let s = setup(opts)?;
    let mn = socket_in(&s.ns, SocketAddrV4::new(COA, 0))?;
    let key = sa(SPI, KEY);
    // Timestamps (RFC 5944 §5.7.1): the time of day, always increasing.
    let mut id = 0;
    let mut next_id = || {
        id = now_id().max(id + 1);
        id
    };
    let mut sends = 0;
    let mut unloaded = Vec::new();
    let mut accepted = Vec::new();
    for _ in 0..opts.unloaded {
        let (took, n, req) = timed_registration(&mn, &mut next_id, &key)?;
        unloaded.push(took);
        sends += n;
        accepted = req;
    }
    let replay = opts.replayed.then_some(accepted.as_slice());

    let mut senders = Vec::new();
    for k in 1..=opts.sources {
        for a in [Ipv4Addr::new(10, 10, 9, k), Ipv4Addr::new(192, 0, 2, k)] {
            senders.push(socket_in(&s.ns, SocketAddrV4::new(a, 0))?);
        }
    }
    let cpu_before = cpu_time(s.proc.pid())?;
    let base = now_id();
    let datagrams: Vec<Vec<u8>> = (0..opts.forged)
        .map(|i| forged(i / senders.len(), base + i as u64, replay))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let flood = {
        let done = done.clone();
        std::thread::spawn(move || {
            let to = SocketAddrV4::new(HA, 434);
            let t = Instant::now();
            for (i, d) in datagrams.iter().enumerate() {
                // A full socket buffer at the HA drops datagrams, as a
                // flood does; the sender never waits for it.
                let _ = senders[i % senders.len()].send_to(d, to);
            }
            done.store(true, Ordering::SeqCst);
            t.elapsed()
        })
    };
    let mut loaded = Vec::new();
    let mut result = Ok(());
    while !done.load(Ordering::SeqCst) || loaded.len() < 10 {
        match timed_registration(&mn, &mut next_id, &key) {
            Ok((took, n, _)) => {
                loaded.push(took);
                sends += n;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        // A sample every few milliseconds, leaving the cores to the flood.
        std::thread::sleep(Duration::from_millis(2));
    }
    let flood_took = flood
        .join()
        .map_err(|_| Error::Other("flood thread panicked".into()))?;
    result?;
    // Still served after the flood.
    let (_, n, _) = timed_registration(&mn, &mut next_id, &key)?;
    sends += n;

    let ha_cpu = cpu_time(s.proc.pid())?.saturating_sub(cpu_before);
    let socket_drops = udp_rcvbuf_errors(&s.ns)?;
    let counters = ctl(s.dir.path(), crate::ctl::Request::Counters)?;
    let bindings = ctl(s.dir.path(), crate::ctl::Request::BINDINGS)?;
    let elapsed = started.elapsed();
    let log_path = s.dir.path().join("mip4-ha.log");
    let log = std::fs::read_to_string(&log_path).map_err(|source| Error::Io {
        path: log_path.display().to_string(),
        source,
    })?;
    Ok(FloodRun {
        unloaded,
        loaded,
        sends,
        flood_took,
        counters,
        bindings,
        log,
        elapsed,
        socket_drops,
        ha_cpu,
    })
}

/// User and system CPU time of process `pid` (/proc/PID/stat, proc(5)).
fn cpu_time(pid: i32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    // After "pid (comm) ": state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(utime), Some(stime)) = (ticks(11), ticks(12)) else {
        return Err(Error::Other(format!("{path}: no utime and stime")));
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|h| u64::try_from(h).ok())
        .filter(|h| *h > 0)
        .unwrap_or(100);
    Ok(Duration::from_micros((utime + stime) * 1_000_000 / hz))
}

/// The namespace's `Udp: ... RcvbufErrors` (/proc/net/snmp).
fn udp_rcvbuf_errors(ns: &Netns) -> Result<u64> {
    udp_snmp(ns, "RcvbufErrors")
}

/// The namespace's UDP counter `name` (/proc/net/snmp's `Udp:` lines).
pub(super) fn udp_snmp(ns: &Netns, name: &str) -> Result<u64> {
    let snmp = ns.exec("cat", &["/proc/net/snmp"])?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return Err(Error::Other("no Udp lines in /proc/net/snmp".into()));
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| Error::Other(format!("no Udp {name} in /proc/net/snmp")))
}

/// One row of the bench's table.
#[derive(Debug, Clone, Serialize)]
pub struct RunFigures {
    pub unloaded_ms: f64,
    pub loaded_ms: f64,
    pub ratio: f64,
    /// The slowest registration under the flood (a lost send costs 1 s).
    pub worst_loaded_ms: f64,
    pub flood_ms: f64,
    pub log_lines: usize,
    pub socket_drops: u64,
    pub cpu_us_per_datagram: f64,
    /// Replayed requests dropped at the screen, and those that reached
    /// the agent's queue (denied there with 133).
    pub replays_screened: u64,
    pub replays_queued: u64,
}

/// A counter of `mip4ctl counters`' answer (0 when absent).
fn counter(v: &serde_json::Value, name: &str) -> u64 {
    v[name].as_u64().unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `runs` floods for each reader (the userspace plane's, mip4-ha's
/// own) and returns the markdown section for docs/PERFORMANCE.md.
pub fn bench(opts: &FloodOptions, runs: usize, command: &str) -> Result<String> {
    let mut md = format!(
        "## Flood of forged {}registration requests (issue 13 item 9)\n\n\
         Command: `{command}`\n\n\
         A real mip4-ha in a network namespace; {} forged requests per run from {} sources \
         (half on its trusted network, half outside; a wrong key under a known SPI, an unknown \
         SPI, no authenticator, garbage{}), sent as fast as one thread can, while a legitimate \
         node registers every few milliseconds. Ratio: the node's median registration time \
         under the flood over its median unloaded ({} registrations), measured within one run; \
         median and worst over {runs} runs.\n\n\
         | UDP 434 read by | runs | ratio median | ratio worst | unloaded median ms | flooded median ms | slowest flooded ms | flood sent in ms | dropped at the socket, median | mip4-ha CPU µs per datagram read, median | log lines max |{}\n\
         |---|---|---|---|---|---|---|---|---|---|---|{}\n",
        if opts.replayed { "and replayed " } else { "" },
        opts.forged,
        2 * u32::from(opts.sources),
        if opts.replayed {
            "; with --replayed a fifth are copies of the node's last accepted request, \
             correctly signed"
        } else {
            ""
        },
        opts.unloaded,
        if opts.replayed {
            " replays dropped at the screen, median | replays queued for the agent, max |"
        } else {
            ""
        },
        if opts.replayed { "---|---|" } else { "" },
    );
    for udp in [true, false] {
        let o = FloodOptions {
            udp_tunnelling: udp,
            ..opts.clone()
        };
        let mut rows = Vec::new();
        for i in 0..runs {
            let r = run_once(&o)?;
            let f = RunFigures {
                unloaded_ms: ms(median(&r.unloaded)),
                loaded_ms: ms(median(&r.loaded)),
                ratio: r.ratio(),
                worst_loaded_ms: ms(r.loaded.iter().copied().max().unwrap_or_default()),
                flood_ms: ms(r.flood_took),
                log_lines: r.log.lines().count(),
                socket_drops: r.socket_drops,
                cpu_us_per_datagram: r.cpu_per_datagram(o.forged).as_secs_f64() * 1e6,
                replays_screened: counter(&r.counters["screened"], "replayed"),
                replays_queued: counter(&r.counters, "replayed")
                    .saturating_sub(counter(&r.counters["screened"], "replayed")),
            };
            eprintln!("flood run {i} (udp_tunnelling = {udp}): {f:?}");
            rows.push(f);
        }
        let col = |f: fn(&RunFigures) -> f64| {
            let mut v: Vec<f64> = rows.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v[v.len() - 1])
        };
        let (ratio, worst) = col(|f| f.ratio);
        let replays = match opts.replayed {
            true => format!(
                " {:.0} | {:.0} |",
                col(|f| f.replays_screened as f64).0,
                col(|f| f.replays_queued as f64).1
            ),
            false => String::new(),
        };
        md += &format!(
            "| {} | {runs} | {ratio:.2} | {worst:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {:.0} | {:.1} | {} |{replays}\n",
            if udp {
                "userspace data plane (RFC 3519 on)"
            } else {
                "mip4-ha's own reader"
            },
            col(|f| f.unloaded_ms).0,
            col(|f| f.loaded_ms).0,
            col(|f| f.worst_loaded_ms).1,
            col(|f| f.flood_ms).0,
            col(|f| f.socket_drops as f64).0,
            col(|f| f.cpu_us_per_datagram).0,
            rows.iter().map(|f| f.log_lines).max().unwrap_or(0),
        );
    }
    Ok(md)
}
