//! `mip4-lab bench-ha`: the home agent at scale (issue 14 §4).
//!
//! A real mip4-ha in a namespace of its own (loopback only, userspace
//! tunnel backend, every binding's route in that namespace), configured
//! with N mobile nodes, each its own MN-HA security association (HMAC-MD5,
//! RFC 5944 §3.5.1) and timestamp replay protection (§5.7.1). The load
//! generator signs every request as a mobile node would and keeps
//! `window` requests outstanding on one socket.
//!
//! The baseline is a UDP echo server with mip4-ha's socket setup and
//! batching: a tokio current-thread runtime, one reader task
//! ([`crate::daemons::udp::spawn_reader`]) feeding a channel of 1024, one
//! `send_to` per datagram from the loop. Each run measures both, back to
//! back, with the same signed requests, so the ratio holds when the
//! machine's load drifts.
//!
//! Phases, in one invocation:
//! 1. `small` nodes register; `runs` runs of `batch` renewals among them;
//! 2. every other node registers (the fill);
//! 3. `runs` runs of `batch` renewals among all N.
//!
//! What it reports: registrations/s and echo datagrams/s (median and worst
//! of the full-size runs), their ratio, how flat a registration's cost is
//! from `small` to N bindings (the echo-normalised cost at N over that at
//! `small`), and the binding cache's bytes per binding, from the daemon's
//! RSS before and after the fill.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::bench::median;
use super::netns::{unique_prefix, Netns, Process};
use super::{daemon, wait, Error, Result, WorkDir};
use crate::auth::{self, SecurityAssociation, FIRST_USABLE_SPI};
use crate::ha::binding::BindingCache;
use crate::ha::{Binding, TunnelMode};
use crate::replay::NtpTimestamp;
use crate::wire::{Flags, ReplyRepr, RequestRepr};

/// What to run.
#[derive(Debug, Clone)]
pub struct HaBenchOptions {
    /// Mobile nodes configured and registered (N).
    pub mobile_nodes: usize,
    /// Bindings in the first phase, the flatness ratio's reference.
    pub small: usize,
    /// Runs per phase.
    pub runs: usize,
    /// Registrations (and echoes) per run.
    pub batch: usize,
    /// Requests outstanding at once.
    pub window: usize,
    /// mip4-ha.
    pub ha: PathBuf,
}

/// One run: the echo server and mip4-ha, back to back.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub bindings: usize,
    pub echo_pps: f64,
    pub registrations_per_s: f64,
    /// registrations_per_s / echo_pps, of this run.
    pub ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HaBenchReport {
    /// Bindings mip4-ha reported after the fill.
    pub bindings: usize,
    /// Medians of the runs at `bindings`.
    pub registrations_per_s: f64,
    pub echo_pps: f64,
    /// Median of the per-run ratios at `bindings`.
    pub ratio: f64,
    /// The worst of those runs.
    pub registrations_per_s_worst: f64,
    pub echo_pps_worst: f64,
    pub ratio_worst: f64,
    pub small_bindings: usize,
    pub small_registrations_per_s: f64,
    pub small_ratio: f64,
    /// The cost of one registration at `bindings` over that at
    /// `small_bindings`, each normalised by its own run's echo rate:
    /// small_ratio / ratio.
    pub flat_ratio: f64,
    /// mip4-ha's (RSS after the fill - RSS before it) / bindings added:
    /// the binding cache and the data plane's per-binding records.
    pub bytes_per_binding: f64,
    /// The binding cache alone ([`BindingCache`] with N bindings, in this
    /// process): RSS growth / N.
    pub cache_bytes_per_binding: f64,
    pub rss_kib_small: u64,
    pub rss_kib_full: u64,
    /// Registrations of the fill per second.
    pub fill_per_s: f64,
    /// Requests without a reply (dropped somewhere), all phases.
    pub lost: u64,
    /// Replies that were not an acceptance (or echo).
    pub refused: u64,
    pub runs: Vec<Run>,
}

/// The mobile nodes' fixed parameters.
const HOME_PREFIX: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);
const HOME_PREFIX_LEN: u8 = 12;
const LIFETIME: u16 = 600;
/// Care-of addresses: one per node, co-located (RFC 5266: the MN's VPN
/// inner address), from 100.64.0.0/10.
const CARE_OF_PREFIX: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
const HA_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Largest N: the home prefix's addresses.
pub const MAX_NODES: usize = (1 << (32 - HOME_PREFIX_LEN)) - 2;

fn home(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(HOME_PREFIX) + 1 + i as u32)
}

fn care_of(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(CARE_OF_PREFIX) + 1 + i as u32)
}

fn spi(i: usize) -> u32 {
    FIRST_USABLE_SPI + i as u32
}

/// Node `i`'s key: distinct per node (a bench's, not a secret).
fn key(i: usize) -> [u8; 16] {
    (0x6d69_7034_6265_6e63_0000_0000_0000_0000u128 + i as u128).to_be_bytes()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// mip4-ha's configuration for N nodes.
pub fn config(dir: &Path, n: usize) -> String {
    let mut s = format!(
        "listen = \"{HA_ADDR}:434\"\nhome_agent = \"{HA_ADDR}\"\n\
         control_socket = \"{}\"\nstate_file = \"{}\"\nmax_lifetime = {LIFETIME}\n\
         tunnel_backend = \"userspace\"\ntunnel_interface = \"mip4bench0\"\n\
         udp_tunnelling = false\n\n[[home_network]]\nprefix = \"{HOME_PREFIX}/{HOME_PREFIX_LEN}\"\n\
         mode = \"virtual\"\n",
        dir.join("ha.sock").display(),
        dir.join("ha.state").display()
    );
    s.reserve(n * 90);
    for i in 0..n {
        s.push_str(&format!(
            "\n[[mobile_node]]\nhome_address = \"{}\"\nspi = {}\nkey = \"{}\"\n",
            home(i),
            spi(i),
            hex(&key(i))
        ));
    }
    s
}

/// Node `i`'s signed request with `identification`.
fn request(i: usize, identification: u64) -> Vec<u8> {
    let sa = SecurityAssociation::hmac_md5(spi(i), &key(i)).expect("a 16-byte key");
    let repr = RequestRepr {
        flags: Flags::D,
        lifetime: LIFETIME,
        home_address: home(i),
        home_agent: HA_ADDR,
        care_of_address: care_of(i),
        identification,
        extensions: Vec::new(),
    };
    auth::sign_request(&repr, &sa)
}

/// RFC 5944 §5.7.1 timestamps, strictly increasing within the bench.
struct Clock(u64);

impl Clock {
    fn next(&mut self) -> u64 {
        let now = NtpTimestamp::from_system_time(SystemTime::now()).0;
        self.0 = now.max(self.0 + 1);
        self.0
    }
}

/// Replies and losses of one drive.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    ok: u64,
    refused: u64,
    lost: u64,
}

/// Sends `count` datagrams made by `make(j)` to `dst`, at most `window`
/// unanswered; a reply for which `good` is false is counted refused. A
/// silence of `LOSS_WAIT` writes every outstanding one off as lost.
fn drive(
    sock: &UdpSocket,
    dst: SocketAddr,
    count: usize,
    window: usize,
    make: &mut dyn FnMut(usize) -> Vec<u8>,
    good: &dyn Fn(&[u8]) -> bool,
) -> Result<(Duration, Tally)> {
    const LOSS_WAIT: Duration = Duration::from_secs(2);
    let io = |source| Error::Io {
        path: format!("bench socket to {dst}"),
        source,
    };
    sock.set_read_timeout(Some(LOSS_WAIT)).map_err(io)?;
    let mut t = Tally::default();
    let (mut sent, mut outstanding) = (0usize, 0usize);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while sent < count || outstanding > 0 {
        while sent < count && outstanding < window {
            sock.send_to(&make(sent), dst).map_err(io)?;
            sent += 1;
            outstanding += 1;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                outstanding -= 1;
                if good(&buf[..n]) {
                    t.ok += 1;
                } else {
                    t.refused += 1;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                t.lost += outstanding as u64;
                outstanding = 0;
            }
            Err(e) => return Err(io(e)),
        }
    }
    Ok((start.elapsed(), t))
}

fn accepted(reply: &[u8]) -> bool {
    ReplyRepr::parse_bytes(reply).is_ok_and(|r| r.code.is_accepted())
}

fn per_s(n: u64, d: Duration) -> f64 {
    (n as f64 / d.as_secs_f64()).round()
}

/// The daemon's resident set, KiB.
fn rss_kib(pid: i32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let s = std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::Other(format!("/proc/{pid}/status: no VmRSS")))
}

/// The binding cache's cost per binding with `n` bindings, from this
/// process's RSS before and after filling one.
fn cache_bytes(n: usize) -> Result<f64> {
    let me = std::process::id() as i32;
    let now = Instant::now();
    let before = rss_kib(me)?;
    let mut c = BindingCache::default();
    for i in 0..n {
        c.insert(Binding {
            home_address: home(i),
            care_of_address: care_of(i),
            source: SocketAddrV4::new(care_of(i), crate::wire::MIP_PORT),
            lifetime: LIFETIME,
            expires: now + Duration::from_secs(u64::from(LIFETIME) + (i % 60) as u64),
            identification: i as u64,
            flags: Flags::D,
            reverse_tunnel: false,
            tunnel: TunnelMode::Ipip,
            nai: None,
            ipv6: None,
            spi: spi(i),
        });
    }
    let after = rss_kib(me)?;
    let per = (after.saturating_sub(before) * 1024) as f64 / n as f64;
    drop(c);
    Ok(per.round())
}

/// The echo server, in the namespace, on a thread of its own.
struct Echo {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(ns: &Netns) -> Result<Echo> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let name = ns.name().to_string();
        let thread = std::thread::spawn(move || {
            let started = addr_tx.clone();
            let r = (move || -> std::result::Result<(), String> {
                super::netns::enter(&name).map_err(|e| e.to_string())?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async move {
                    let sock = std::sync::Arc::new(
                        tokio::net::UdpSocket::bind("127.0.0.1:0")
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                    let _ = started.send(sock.local_addr().map_err(|e| e.to_string()));
                    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
                    let reader =
                        crate::daemons::udp::spawn_reader("echo", sock.clone(), tx, |src, data| {
                            (src, data)
                        });
                    let echo = async {
                        while let Some((src, data)) = rx.recv().await {
                            let _ = sock.send_to(&data, SocketAddr::V4(src)).await;
                        }
                    };
                    tokio::select! {
                        () = echo => {}
                        _ = stopped => {}
                    }
                    reader.abort();
                    Ok(())
                })
            })();
            if let Err(e) = r {
                let _ = addr_tx.send(Err(e));
            }
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| Error::Other("the echo server did not start".into()))?
            .map_err(|e| Error::Other(format!("echo server: {e}")))?;
        Ok(Echo {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the bench (as root: it makes a namespace).
pub fn run(opts: &HaBenchOptions, progress: &mut dyn FnMut(&str)) -> Result<HaBenchReport> {
    let n = opts.mobile_nodes;
    if n == 0 || n > MAX_NODES || opts.small == 0 || opts.small > n || opts.runs == 0 {
        return Err(Error::Other(format!(
            "need 0 < small ({}) <= mobile nodes ({n}) <= {MAX_NODES} and runs > 0",
            opts.small
        )));
    }
    // First, while this process is small: the cache on its own.
    let cache_bytes_per_binding = cache_bytes(n)?;
    progress(&format!(
        "binding cache alone: {cache_bytes_per_binding} bytes per binding at {n}"
    ));
    let work = WorkDir::new("bench-ha")?;
    let dir = work.path().to_path_buf();
    let conf = dir.join("mip4-ha.conf");
    // Keys inline: root-only, as mip4-ha demands.
    std::fs::write(&conf, config(&dir, n))
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&conf, std::fs::Permissions::from_mode(0o600))
        })
        .map_err(|source| Error::Io {
            path: conf.display().to_string(),
            source,
        })?;
    let ns = Netns::new(&unique_prefix(), "ha")?;
    let mut cmd = ns.command(&opts.ha.display().to_string());
    cmd.arg("--config").arg(&conf);
    let mut ha: Process = ns.spawn("mip4-ha", cmd, &dir.join("mip4-ha.log"))?;
    let sock_path = dir.join("ha.sock");
    progress(&format!("mip4-ha with {n} mobile nodes: starting"));
    let log = dir.join("mip4-ha.log");
    wait::until(
        Duration::from_secs(60 + n as u64 / 5_000),
        "mip4-ha answering on its control socket",
        || {
            if !ha.is_running() {
                return Some(Err(()));
            }
            daemon::status(&sock_path).ok().map(Ok)
        },
    )
    .and_then(|(r, _)| r.map_err(|()| Error::Other("mip4-ha exited".into())))
    .map_err(|e| {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        Error::Other(format!("{e}; its log ends: {}", tail.join(" / ")))
    })?;
    let echo = Echo::start(&ns)?;

    // The load generator lives in the namespace too: a thread of its own.
    let opts2 = opts.clone();
    let name = ns.name().to_string();
    let pid = ha.pid();
    let echo_addr = echo.addr;
    let gen = std::thread::spawn(move || -> Result<Gen> {
        super::netns::enter(&name)?;
        generate(&opts2, pid, echo_addr)
    });
    // Progress lines come back through the thread's result only: keep the
    // caller informed of the phases up front.
    progress(&format!(
        "{} runs of {} at {} bindings, then the fill to {n}, then {} runs at {n}",
        opts.runs, opts.batch, opts.small, opts.runs
    ));
    let g = gen
        .join()
        .map_err(|_| Error::Other("the load generator panicked".into()))??;
    let status = daemon::status(&sock_path)?;
    let bindings = status["bindings"].as_u64().unwrap_or(0) as usize;
    ha.stop(Duration::from_secs(30));
    drop(echo);

    let at = |size: usize| -> Vec<&Run> { g.runs.iter().filter(|r| r.bindings == size).collect() };
    let (small, full) = (at(opts.small), at(n));
    let med =
        |rs: &[&Run], f: fn(&Run) -> f64| median(&rs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let worst =
        |rs: &[&Run], f: fn(&Run) -> f64| rs.iter().map(|r| f(r)).fold(f64::INFINITY, f64::min);
    let ratio = med(&full, |r| r.ratio);
    let small_ratio = med(&small, |r| r.ratio);
    Ok(HaBenchReport {
        bindings,
        registrations_per_s: med(&full, |r| r.registrations_per_s),
        echo_pps: med(&full, |r| r.echo_pps),
        ratio: round3(ratio),
        registrations_per_s_worst: worst(&full, |r| r.registrations_per_s),
        echo_pps_worst: worst(&full, |r| r.echo_pps),
        ratio_worst: round3(worst(&full, |r| r.ratio)),
        small_bindings: opts.small,
        small_registrations_per_s: med(&small, |r| r.registrations_per_s),
        small_ratio: round3(small_ratio),
        flat_ratio: round3(small_ratio / ratio),
        bytes_per_binding: if n > opts.small {
            ((g.rss_full.saturating_sub(g.rss_small) * 1024) as f64 / (n - opts.small) as f64)
                .round()
        } else {
            f64::NAN
        },
        cache_bytes_per_binding,
        rss_kib_small: g.rss_small,
        rss_kib_full: g.rss_full,
        fill_per_s: g.fill_per_s,
        lost: g.tally.lost,
        refused: g.tally.refused,
        runs: g.runs,
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// What the load generator measured.
struct Gen {
    runs: Vec<Run>,
    rss_small: u64,
    rss_full: u64,
    fill_per_s: f64,
    tally: Tally,
}

fn generate(opts: &HaBenchOptions, ha_pid: i32, echo: SocketAddr) -> Result<Gen> {
    let io = |source| Error::Io {
        path: "bench socket".into(),
        source,
    };
    // One socket per peer: a late reply never counts for the other.
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
    let echo_sock = UdpSocket::bind("127.0.0.1:0").map_err(io)?;
    let ha = SocketAddr::V4(SocketAddrV4::new(HA_ADDR, crate::wire::MIP_PORT));
    let mut clock = Clock(0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let mut total = Tally::default();
    let mut add = |t: Tally| {
        total.ok += t.ok;
        total.refused += t.refused;
        total.lost += t.lost;
    };
    let (n, small, w) = (opts.mobile_nodes, opts.small, opts.window);

    // Registers nodes `from..to` once each.
    let register = |from: usize, to: usize, clock: &mut Clock| {
        drive(
            &sock,
            ha,
            to - from,
            w,
            &mut |j| request(from + j, clock.next()),
            &accepted,
        )
    };
    let (_, t) = register(0, small, &mut clock)?;
    add(t);
    let mut runs = Vec::new();
    let measure = |size: usize,
                   clock: &mut Clock,
                   rng: &mut rand::rngs::StdRng,
                   runs: &mut Vec<Run>|
     -> Result<Tally> {
        let mut all = Tally::default();
        for _ in 0..opts.runs {
            // The same nodes' requests for both, signed alike.
            let picks: Vec<usize> = (0..opts.batch).map(|_| rng.gen_range(0..size)).collect();
            let (e, te) = drive(
                &echo_sock,
                echo,
                opts.batch,
                w,
                &mut |j| request(picks[j], clock.next()),
                &|b| !b.is_empty(),
            )?;
            let (r, tr) = drive(
                &sock,
                ha,
                opts.batch,
                w,
                &mut |j| request(picks[j], clock.next()),
                &accepted,
            )?;
            let (echo_pps, reg) = (per_s(te.ok, e), per_s(tr.ok, r));
            runs.push(Run {
                bindings: size,
                echo_pps,
                registrations_per_s: reg,
                ratio: round3(reg / echo_pps),
            });
            for t in [te, tr] {
                all.ok += t.ok;
                all.refused += t.refused;
                all.lost += t.lost;
            }
        }
        Ok(all)
    };
    add(measure(small, &mut clock, &mut rng, &mut runs)?);
    let rss_small = rss_kib(ha_pid)?;
    let (fill, t) = register(small, n, &mut clock)?;
    add(t);
    let fill_per_s = if n > small {
        per_s(t.ok, fill)
    } else {
        f64::NAN
    };
    let rss_full = rss_kib(ha_pid)?;
    add(measure(n, &mut clock, &mut rng, &mut runs)?);
    Ok(Gen {
        runs,
        rss_small,
        rss_full,
        fill_per_s,
        tally: total,
    })
}

/// `mip4-lab bench-ha`: prints the report (JSON, markdown or text).
pub fn cli(opts: HaBenchOptions, json: bool, markdown: bool) -> std::process::ExitCode {
    match run(&opts, &mut |line| eprintln!("mip4-lab bench-ha: {line}")) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else if markdown {
                print!("{}", markdown_section(&opts, &r));
            } else {
                println!(
                    "mip4-ha at {} bindings: {} registrations/s (worst {}), echo {} datagrams/s, ratio {} (worst {})",
                    r.bindings, r.registrations_per_s, r.registrations_per_s_worst, r.echo_pps, r.ratio, r.ratio_worst
                );
                println!(
                    "  at {} bindings: {} registrations/s, ratio {}; flat ratio {}; {} bytes per binding; lost {}, refused {}",
                    r.small_bindings, r.small_registrations_per_s, r.small_ratio, r.flat_ratio, r.bytes_per_binding, r.lost, r.refused
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mip4-lab bench-ha: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The section of docs/PERFORMANCE.md.
pub fn markdown_section(o: &HaBenchOptions, r: &HaBenchReport) -> String {
    let rows =
        |size: usize| -> Vec<&Run> { r.runs.iter().filter(|x| x.bindings == size).collect() };
    let line = |size: usize| {
        let rs = rows(size);
        let f = |g: fn(&Run) -> f64| {
            let v: Vec<f64> = rs.iter().map(|x| g(x)).collect();
            (median(&v), v.iter().copied().fold(f64::INFINITY, f64::min))
        };
        let (rm, rw) = f(|x| x.registrations_per_s);
        let (em, ew) = f(|x| x.echo_pps);
        let (qm, qw) = f(|x| x.ratio);
        format!(
            "| {size} | {} | {rm} | {rw} | {em} | {ew} | {} | {} |\n",
            rs.len(),
            round3(qm),
            round3(qw)
        )
    };
    format!(
        "## The home agent at scale\n\n\
         Command: `mip4-lab bench-ha --mobile-nodes {} --small {} --runs {} --batch {} --window {}` \
         (src/lab/bench_ha.rs). mip4-ha in a namespace, every request signed (HMAC-MD5) with a \
         fresh timestamp; the baseline is a UDP echo server with mip4-ha's socket setup, run \
         back to back with it in each run. Worst = the slowest run.\n\n\
         | bindings | runs | registrations/s median | worst | echo datagrams/s median | worst | ratio median | worst |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n{}{}\n\
         | figure | value | goal |\n| --- | --- | --- |\n\
         | ratio to echo at {} bindings (median of per-run ratios) | {} | >= 0.5 |\n\
         | cost of a registration at {} over at {} bindings (echo-normalised) | {} | <= 1.2 |\n\
         | binding cache alone, bytes per binding from RSS (at {}) | {} | <= 128 |\n\
         | mip4-ha, bytes per binding from RSS ({} -> {} KiB: cache, data plane, routes' records) | {} | |\n\
         | fill: first registrations/s | {} | |\n\
         | requests lost / refused | {} / {} | 0 / 0 |\n",
        o.mobile_nodes,
        o.small,
        o.runs,
        o.batch,
        o.window,
        line(r.small_bindings),
        line(r.bindings.max(o.mobile_nodes)),
        r.bindings,
        r.ratio,
        r.bindings,
        r.small_bindings,
        r.flat_ratio,
        o.mobile_nodes,
        r.cache_bytes_per_binding,
        r.rss_kib_small,
        r.rss_kib_full,
        r.bytes_per_binding,
        r.fill_per_s,
        r.lost,
        r.refused,
    )
}
