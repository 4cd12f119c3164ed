//! Network namespaces and what lives in them, cleaned up on Drop.
//!
//! iproute2 commands are used rather than rtnetlink: this is a test lab,
//! the commands are what an engineer would type to reproduce a step, and
//! every one of them is logged. Each [`Netns`] gets a unique name
//! (`m4l<pid>x<n>-<host>`) so parallel runs never collide, and everything
//! it created is also recorded in a process-wide registry so that a signal
//! handler can tear it down ([`teardown_all`]) when Drop will not run.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Error, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// What exists right now, for [`teardown_all`].
struct Registry {
    namespaces: BTreeSet<String>,
    pids: BTreeSet<i32>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    namespaces: BTreeSet::new(),
    pids: BTreeSet::new(),
});
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // A panic while holding the lock must not stop the cleanup.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A prefix unique to this process and call: `m4l<pid>x<n>`.
pub fn unique_prefix() -> String {
    format!(
        "m4l{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command, returns its stdout; a non-zero exit is an error that
/// carries the command line and its stderr.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = format!("{cmd:?}").replace('"', "");
    tracing::debug!(cmd = %line, "run");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            cmd: line.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd: line,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace made by the lab; deleted (with every process still
/// inside) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host: String,
}

impl Netns {
    /// Creates `<prefix>-<host>` with loopback up and the lab's defaults:
    /// `promote_secondaries=1` (deleting a primary IPv4 address must not
    /// drop the secondaries, the MOBIKE move relies on it) and `rp_filter=0`
    /// (asymmetric paths through the VPN and the NAT are normal here),
    /// `accept_dad=0` for links made later (IPv6 usable at once).
    pub fn new(prefix: &str, host: &str) -> Result<Netns> {
        let name = format!("{prefix}-{host}");
        run(Command::new("ip").args(["netns", "add", &name]))?;
        registry().namespaces.insert(name.clone());
        let ns = Netns {
            name,
            host: host.to_string(),
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        for (key, value) in [
            ("net.ipv4.conf.all.promote_secondaries", "1"),
            ("net.ipv4.conf.default.promote_secondaries", "1"),
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            // No duplicate address detection on the links made later
            // (RFC 4862 §5.4): the plan's addresses are unique, and the
            // routers' link-local addresses tentative for a second or two
            // after the build held the first IPv6 datagrams (2 s).
            ("net.ipv6.conf.default.accept_dad", "0"),
        ] {
            ns.sysctl(key, value)?;
        }
        Ok(ns)
    }

    /// The namespace's name as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host name inside the lab (e.g. `mn`, `vpngw`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `program args...` inside, returns stdout.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// Runs a shell command line inside (scenario files are shell lines).
    pub fn sh(&self, line: &str) -> Result<String> {
        self.exec("sh", &["-c", line])
    }

    /// `ip -n <ns> args...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// Sets a sysctl of this namespace (`net.ipv4.ip_forward` style key).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.exec("sh", &["-c", &format!("echo {value} > {path}")])
            .map(|_| ())
    }

    /// Turns IPv4 and IPv6 forwarding on: this host routes (one process:
    /// under the kernel tier's emulation each start costs ~0.1 s).
    pub fn enable_forwarding(&self) -> Result<()> {
        let cmd = "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding";
        self.exec("sh", &["-c", cmd]).map(|_| ())
    }

    /// Adds `addr` (CIDR) to `dev`. An IPv6 one skips duplicate address
    /// detection ([`addr_add_args`]).
    pub fn add_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        let args = addr_add_args(cidr, dev);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ip(&args).map(|_| ())
    }

    /// Deletes `addr` (CIDR) from `dev`.
    pub fn del_addr(&self, dev: &str, cidr: &str) -> Result<()> {
        self.ip(&["addr", "del", cidr, "dev", dev]).map(|_| ())
    }

    /// `ip route replace <dest> via <gw>` (`dest` may be `default`).
    pub fn route(&self, dest: &str, via: &str) -> Result<()> {
        self.ip(&["route", "replace", dest, "via", via]).map(|_| ())
    }

    /// Sets a link up or down.
    pub fn link_up(&self, dev: &str, up: bool) -> Result<()> {
        self.ip(&["link", "set", "dev", dev, if up { "up" } else { "down" }])
            .map(|_| ())
    }

    /// The IPv4 addresses (without prefix length) on `dev`, in kernel order.
    pub fn addrs(&self, dev: &str) -> Result<Vec<String>> {
        let out = self.ip(&["-4", "-o", "addr", "show", "dev", dev])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                it.find(|w| *w == "inet")?;
                Some(it.next()?.split('/').next()?.to_string())
            })
            .collect())
    }

    /// One ICMP echo from `src` (an address of this host) to `dst`, waiting
    /// at most `wait_ms` for the reply; true if it came back.
    pub fn ping_once(&self, src: &str, dst: &str, wait_ms: u32) -> bool {
        // `-W` takes seconds (fractions allowed in iputils-ping).
        let w = format!("{:.3}", f64::from(wait_ms) / 1000.0);
        self.exec("ping", &["-n", "-q", "-c", "1", "-W", &w, "-I", src, dst])
            .is_ok()
    }

    /// Moves the calling thread into this namespace: see [`enter`].
    pub fn enter_this_thread(&self) -> Result<()> {
        enter(&self.name)
    }

    /// Starts a long-running process inside; it is stopped when the
    /// returned [`Process`] is dropped. Its stdout and stderr go to `log`.
    pub fn spawn(&self, name: &str, mut cmd: Command, log: &std::path::Path) -> Result<Process> {
        let line = format!("{cmd:?}").replace('"', "");
        let file = std::fs::File::create(log).map_err(|source| Error::Io {
            path: log.display().to_string(),
            source,
        })?;
        let err = file.try_clone().map_err(|source| Error::Io {
            path: log.display().to_string(),
            source,
        })?;
        // Own process group: Ctrl-C at the terminal reaches the lab, which
        // tears down in order, not every daemon at once.
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .process_group(0);
        // On the tier's two-vCPU guest, on the CPU of this host's machine.
        let child = super::machines::on_machine_of(&self.host, || cmd.spawn());
        let child = child.map_err(|source| Error::Spawn {
            cmd: line.clone(),
            source,
        })?;
        let pid = child.id() as i32;
        registry().pids.insert(pid);
        tracing::debug!(pid, cmd = %line, "spawned");
        Ok(Process {
            name: format!("{}:{name}", self.host),
            child,
            pid,
        })
    }

    /// The pids of every process in this namespace.
    fn pids(&self) -> Vec<i32> {
        run(Command::new("ip").args(["netns", "pids", &self.name]))
            .map(|out| {
                out.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Anything still inside (a daemon a scenario started and forgot)
        // keeps the namespace alive: stop it first.
        for pid in self.pids() {
            kill_group_or_pid(pid, Signal::SIGKILL);
        }
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            tracing::warn!(ns = %self.name, error = %e, "netns del failed");
        }
        registry().namespaces.remove(&self.name);
    }
}

/// Moves the calling thread into the namespace called `name` (setns(2)
/// acts on one thread only): sockets it creates afterwards live there. For
/// the lab's in-process probes (the TCP stream), which would otherwise need
/// a helper program in every host.
pub fn enter(name: &str) -> Result<()> {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    // CLONE_NEWNET changes only this thread's network namespace.
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| Error::Io {
        path,
        source: e.into(),
    })
}

/// Runs `f` to its end on a new thread that first enters the namespace
/// called `name` ([`enter`]: setns(2) moves one thread only, so the caller
/// stays where it is); `what` names the thread in the error if it panics.
pub fn run_in<T, F>(name: &str, what: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let name = name.to_string();
    std::thread::spawn(move || -> Result<T> {
        enter(&name)?;
        f()
    })
    .join()
    .map_err(|_| Error::Other(format!("{what} thread panicked")))?
}

/// [`run_in`] for async work: the future `f` makes runs on a
/// current-thread tokio runtime inside `name`, so the netlink and other
/// sockets it opens live there.
pub fn block_on_in<T, F, Fut>(name: &str, what: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    run_in(name, what, move || runtime()?.block_on(f()))
}

/// Moves the calling thread into `name` and builds the current-thread
/// tokio runtime it will run on there: for a long-lived thread that
/// reports its own start (a watcher, a server).
pub fn runtime_in(name: &str) -> Result<tokio::runtime::Runtime> {
    enter(name)?;
    runtime()
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Other(format!("runtime: {e}")))
}

/// A veth pair: `a_dev` in `a`, `b_dev` in `b`, both up.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) -> Result<()> {
    a.ip(&[
        "link", "add", "name", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ])?;
    a.link_up(a_dev, true)?;
    b.link_up(b_dev, true)
}

/// A process started by [`Netns::spawn`]; SIGTERM then SIGKILL on Drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    pid: i32,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process at once (SIGKILL: a crash, no cleanup) and reaps
    /// it.
    pub fn kill(&mut self) {
        if self.is_running() {
            kill_group_or_pid(self.pid, Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Stops the process: SIGTERM, then SIGKILL after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        kill_group_or_pid(self.pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_group_or_pid(self.pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
        registry().pids.remove(&self.pid);
    }
}

/// Pids are ours: spawned in their own group, or found inside a namespace
/// this lab created.
fn kill_group_or_pid(pid: i32, sig: Signal) {
    if kill(Pid::from_raw(-pid), sig).is_err() {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Tears down everything the lab made in this process: for the signal path
/// (Ctrl-C, SIGTERM), where Drop will not run.
pub fn teardown_all() {
    let (pids, namespaces) = {
        let r = registry();
        (r.pids.clone(), r.namespaces.clone())
    };
    for pid in pids {
        kill_group_or_pid(pid, Signal::SIGKILL);
    }
    for ns in namespaces {
        if let Ok(out) = run(Command::new("ip").args(["netns", "pids", &ns])) {
            for pid in out.split_whitespace().filter_map(|p| p.parse().ok()) {
                kill_group_or_pid(pid, Signal::SIGKILL);
            }
        }
        let _ = run(Command::new("ip").args(["netns", "del", &ns]));
    }
}

/// `ip` arguments that add `cidr` to `dev`. IPv6 addresses get
/// `nodad`: the lab's addresses are unique by plan, and an address
/// tentative for a second of duplicate address detection would delay
/// every IPv6 attachment (RFC 4862 §5.4).
pub fn addr_add_args(cidr: &str, dev: &str) -> Vec<String> {
    let mut args: Vec<String> = ["addr", "add", cidr, "dev", dev]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if cidr.contains(':') {
        args.push("nodad".into());
    }
    args
}
