//! Scenarios as data, in the style of strongSwan's testing/tests: a folder
//! per scenario with `description.txt`, `pre.dat`, `evaltest.dat`,
//! `post.dat` and optional host configs under `hosts/<host>/`.
//!
//! Lines of `pre.dat`/`post.dat` are `host::shell command` (run inside
//! that host) or `lab::verb args` (a lab action: attach the MN, start a
//! charon or a daemon, wait on an event, measure). `evaltest.dat` lines
//! are `host::command::regex::YES|NO`; a YES check is polled until it
//! holds or times out (conditions converge), a NO check is read once.
//! `${VAR}` is replaced by variables set by earlier steps (e.g. `${TIA}`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::charon::{Charon, CharonConfig, IkeSa};
use super::daemon::{self, Events};
use super::leaks::Snapshot;
use super::netns::Process;
use super::platform::{self, Platform};
use super::stream::TcpProbe;
use super::topology::Lab;
use super::{wait, Error, Result, WorkDir};

/// The MN's home address in the lab's configs (lab/hosts/mn/mip4d-*.conf).
const LAB_HOME_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 1, 100, 5);

/// A command line of `pre.dat`, `post.dat` or `evaltest.dat`.
#[derive(Debug, Clone)]
pub struct Line {
    pub file: String,
    pub line: usize,
    pub host: String,
    pub command: String,
    /// evaltest only: the pattern and whether it must match.
    pub expect: Option<(String, bool)>,
}

/// A scenario folder, parsed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    pub description: String,
    /// `known-defect.txt`: a defect this scenario finds and that is not
    /// fixed yet (the scenario fails until it is; the tour skips it).
    pub known_defect: Option<String>,
    pub pre: Vec<Line>,
    pub evaltest: Vec<Line>,
    pub post: Vec<Line>,
}

fn parse_dat(path: &Path, eval: bool) -> Result<Vec<Line>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let file = path.display().to_string();
    let vars = regex::Regex::new(r"\$\{[A-Za-z0-9_]+\}").expect("static regex");
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |msg: &str| Error::Parse {
            file: file.clone(),
            line: i + 1,
            msg: msg.to_string(),
        };
        let parts: Vec<&str> = l.split("::").collect();
        let (host, command, expect) = match (eval, parts.as_slice()) {
            (false, [h, c]) => (h, c, None),
            (true, [h, c, p, yn]) => {
                let yes = match *yn {
                    "YES" => true,
                    "NO" => false,
                    _ => return Err(err("the last field must be YES or NO")),
                };
                // Variables are filled in at run time: check the rest.
                regex::Regex::new(&vars.replace_all(p, "x"))
                    .map_err(|e| err(&format!("bad pattern: {e}")))?;
                (h, c, Some((p.to_string(), yes)))
            }
            (false, _) => return Err(err("expected host::command")),
            (true, _) => return Err(err("expected host::command::pattern::YES|NO")),
        };
        out.push(Line {
            file: file.clone(),
            line: i + 1,
            host: host.trim().to_string(),
            command: command.trim().to_string(),
            expect,
        });
    }
    Ok(out)
}

impl Scenario {
    pub fn load(dir: &Path) -> Result<Scenario> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let description = std::fs::read_to_string(dir.join("description.txt"))
            .map_err(|source| Error::Io {
                path: dir.join("description.txt").display().to_string(),
                source,
            })?
            .trim()
            .to_string();
        let known_defect = std::fs::read_to_string(dir.join("known-defect.txt"))
            .ok()
            .map(|t| t.trim().to_string());
        Ok(Scenario {
            name,
            dir: dir.to_path_buf(),
            description,
            known_defect,
            pre: parse_dat(&dir.join("pre.dat"), false)?,
            evaltest: parse_dat(&dir.join("evaltest.dat"), true)?,
            post: parse_dat(&dir.join("post.dat"), false)?,
        })
    }

    /// Every scenario under `lab/scenarios`, by name.
    pub fn list(lab_dir: &Path) -> Result<Vec<Scenario>> {
        let root = lab_dir.join("scenarios");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        for e in entries.flatten() {
            if e.path().join("description.txt").exists() {
                out.push(Scenario::load(&e.path())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// A timestamped event of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Unix time, seconds.
    pub t: f64,
    /// Milliseconds since the run started.
    pub ms: f64,
    pub event: String,
    pub host: String,
    pub detail: serde_json::Value,
}

/// An evaltest result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub host: String,
    pub command: String,
    pub pattern: String,
    pub expect: bool,
    pub ok: bool,
}

/// The final object of a run (`--json` prints it without `events`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub scenario: String,
    pub verdict: String,
    /// What ran: kernel, each charon's IPsec backend, each daemon's
    /// tunnel backend (read back from them, not assumed).
    #[serde(default)]
    pub platform: Platform,
    pub figures: BTreeMap<String, f64>,
    pub vars: BTreeMap<String, String>,
    pub checks: Vec<Check>,
    pub error: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.verdict == "PASS"
    }
    /// The first event called `name`.
    pub fn event(&self, name: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.event == name)
    }
}

/// Options of `mip4-lab run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Write a pcap per host interface here.
    pub capture: Option<PathBuf>,
    /// Extra plugins for every charon (the plugin helper adds `mip4`).
    pub charon: CharonConfig,
    /// The project's programs by variable (`MIP4D` -> path, see
    /// [`daemon::PROGRAMS`]): the caller says which build to run (tests
    /// pass cargo's `CARGO_BIN_EXE_*`, mip4-lab its own directory).
    pub programs: BTreeMap<String, String>,
    /// The built mip4 plugin (`libmip4.so`), loaded by `lab::charon HOST
    /// mip4=SOCKET` from charon's standard plugin directory (an overlay
    /// inside that charon's mount namespace only).
    pub mip4_plugin: Option<PathBuf>,
    /// The libreswan root: `lab::charon vpngw` starts libreswan's pluto
    /// from it instead of charon (`--gateway libreswan`, kernel tier).
    pub libreswan_root: Option<PathBuf>,
}

impl RunOptions {
    /// Takes the project's programs from `dir`.
    pub fn with_programs_in(mut self, dir: &Path) -> RunOptions {
        for (var, path) in daemon::programs_in(dir) {
            self.programs.insert(var, path.display().to_string());
        }
        self
    }
}

/// Every program the scenario names (`${MIP4D}` ...) must be given and
/// exist: a missing build fails before any namespace is made, saying so.
fn check_programs(scenario: &Scenario, opts: &RunOptions) -> Result<()> {
    let text: Vec<&str> = scenario
        .pre
        .iter()
        .chain(&scenario.evaltest)
        .chain(&scenario.post)
        .map(|l| l.command.as_str())
        .collect();
    let mut missing = Vec::new();
    for (var, bin) in daemon::PROGRAMS {
        if !text.iter().any(|t| t.contains(&format!("${{{var}}}"))) {
            continue;
        }
        match opts.programs.get(var) {
            None => missing.push(format!("{bin} (no path given for ${{{var}}})")),
            Some(p) if !Path::new(p).is_file() => missing.push(format!(
                "{bin}: {p} not found (build it: cargo build --bins)"
            )),
            Some(_) => {}
        }
    }
    if text.iter().any(|t| t.contains(" mip4=")) {
        match &opts.mip4_plugin {
            None => missing.push("the mip4 plugin (no libmip4.so given)".into()),
            Some(p) if !p.is_file() => missing.push(format!(
                "the mip4 plugin: {} not found (build it: cargo build --lib)",
                p.display()
            )),
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "scenario `{}` needs the project's programs, missing: {}",
            scenario.name,
            missing.join("; ")
        )))
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A background `ping -D` whose replies are read from its output file.
struct Pinger {
    out: PathBuf,
    _process: Process,
}

impl Pinger {
    /// Replies as (unix time received, rtt ms).
    fn replies(&self) -> Vec<(f64, f64)> {
        self.replies_seq()
            .into_iter()
            .map(|(t, rtt, _)| (t, rtt))
            .collect()
    }

    /// Replies as (unix time received, rtt ms, icmp_seq).
    fn replies_seq(&self) -> Vec<(f64, f64, u64)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        parse_ping(&text)
    }
}

/// `ping -D` reply lines as (unix time received, rtt ms, icmp_seq).
fn parse_ping(text: &str) -> Vec<(f64, f64, u64)> {
    let field = |l: &str, key: &str| -> Option<String> {
        Some(l.split(key).nth(1)?.split_whitespace().next()?.to_string())
    };
    text.lines()
        .filter_map(|l| {
            // [1700000000.123456] 64 bytes from 10.1.2.2: icmp_seq=5 ttl=62 time=21.3 ms
            let t: f64 = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let rtt: f64 = field(l, "time=")?.parse().ok()?;
            let seq: u64 = field(l, "icmp_seq=")?.parse().ok()?;
            Some((t, rtt, seq))
        })
        .collect()
}

/// Echoes lost around unix time `t0`: the sequence numbers missing
/// between the last reply to an echo sent before `t0` and the first reply
/// to one sent at or after it (echoes in flight when the path broke count).
fn lost_around(replies: &[(f64, f64, u64)], t0: f64) -> Option<u64> {
    let sent = |r: &(f64, f64, u64)| r.0 - r.1 / 1e3;
    let before = replies.iter().filter(|r| sent(r) < t0).map(|r| r.2).max()?;
    let after = replies
        .iter()
        .filter(|r| sent(r) >= t0)
        .map(|r| r.2)
        .min()?;
    let replied: std::collections::BTreeSet<u64> = replies.iter().map(|r| r.2).collect();
    Some((before + 1..after).filter(|n| !replied.contains(n)).count() as u64)
}

/// One run of one scenario. Field order is teardown order: captures,
/// pingers, daemons and charons go before the namespaces they live in.
struct Run<'a> {
    captures: Vec<Process>,
    pingers: BTreeMap<String, Pinger>,
    streams: BTreeMap<String, TcpProbe>,
    forgers: BTreeMap<String, super::forger::Forger>,
    subscriptions: BTreeMap<String, Events>,
    procs: BTreeMap<String, Process>,
    charons: BTreeMap<String, Charon>,
    plutos: BTreeMap<String, super::pluto::Pluto>,
    lab: Lab,
    scenario: &'a Scenario,
    lab_dir: PathBuf,
    work: WorkDir,
    opts: RunOptions,
    start: f64,
    vars: BTreeMap<String, String>,
    /// Like `vars`, but never reported (keys made by `lab::secret`).
    secrets: BTreeMap<String, String>,
    figures: BTreeMap<String, f64>,
    events: Vec<Event>,
    sink: &'a mut dyn FnMut(&Event),
    /// `lab::snapshot HOST NAME`, by `HOST/NAME`.
    snapshots: BTreeMap<String, Snapshot>,
    /// `lab::capture NAME HOST DEV`: the pcap by NAME.
    pcaps: BTreeMap<String, PathBuf>,
    /// `lab::seed`: every random choice of the run comes from here.
    rng: Option<rand::rngs::StdRng>,
    /// Each daemon's control socket by host, as the scenario named it
    /// (`lab::subscribe`, `lab::binding`): read for the platform.
    control_sockets: BTreeMap<String, String>,
    platform: Platform,
}

/// Runs `scenario` on a fresh Figure 1 lab built from `lab_dir`, calling
/// `sink` for every event as it happens; always tears down what it made.
pub fn run(
    lab_dir: &Path,
    scenario: &Scenario,
    opts: &RunOptions,
    sink: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    super::preflight()?;
    check_programs(scenario, opts)?;
    let work = WorkDir::new(&scenario.name)?;
    let start = now();
    let lab = Lab::build_file(&lab_dir.join("figure1.toml"))?;
    let mut r = Run {
        captures: Vec::new(),
        pingers: BTreeMap::new(),
        streams: BTreeMap::new(),
        forgers: BTreeMap::new(),
        subscriptions: BTreeMap::new(),
        procs: BTreeMap::new(),
        charons: BTreeMap::new(),
        plutos: BTreeMap::new(),
        lab,
        scenario,
        lab_dir: lab_dir.to_path_buf(),
        work,
        opts: opts.clone(),
        start,
        vars: opts.programs.clone(),
        secrets: BTreeMap::new(),
        figures: BTreeMap::new(),
        events: Vec::new(),
        sink,
        snapshots: BTreeMap::new(),
        pcaps: BTreeMap::new(),
        rng: None,
        control_sockets: BTreeMap::new(),
        platform: Platform {
            kernel: platform::release(),
            ..Default::default()
        },
    };
    r.emit(
        "lab_built",
        "",
        serde_json::json!({"workdir": r.work.path()}),
    );
    let mut error = None;
    if let Some(dir) = opts.capture.clone() {
        if let Err(e) = r.start_captures(&dir) {
            error = Some(e.to_string());
        }
    }
    let pre = scenario.pre.clone();
    if error.is_none() {
        for l in &pre {
            if let Err(e) = r.step(l) {
                error = Some(format!("{}:{}: {e}", l.file, l.line));
                break;
            }
        }
    }
    let mut checks = Vec::new();
    if error.is_none() {
        for l in &scenario.evaltest.clone() {
            checks.push(r.check(l));
        }
    }
    // What ran, from the daemons while they still run (post stops them).
    r.read_tunnel_backends();
    for l in &scenario.post.clone() {
        // post always runs; its failures are reported, not fatal.
        if let Err(e) = r.step(l) {
            r.emit(
                "post_failed",
                &l.host,
                serde_json::json!({"error": e.to_string()}),
            );
        }
    }
    let ok = error.is_none() && checks.iter().all(|c| c.ok);
    // MIP4_LAB_KEEP=1 keeps the logs of a passing run too.
    if !ok || std::env::var_os("MIP4_LAB_KEEP").is_some_and(|v| v == "1") {
        // Keep the logs of a failed run for inspection.
        r.work.keep();
        r.emit(
            "logs_kept",
            "",
            serde_json::json!({"workdir": r.work.path()}),
        );
    }
    Ok(Summary {
        scenario: scenario.name.clone(),
        verdict: if ok { "PASS" } else { "FAIL" }.to_string(),
        platform: r.platform.clone(),
        figures: r.figures.clone(),
        vars: r.vars.clone(),
        checks,
        error,
        events: r.events.clone(),
    })
}

impl Run<'_> {
    /// Each daemon's tunnel backend, from its `mip4ctl status`.
    fn read_tunnel_backends(&mut self) {
        for (host, socket) in &self.control_sockets {
            if let Some(b) = daemon::status(Path::new(socket))
                .ok()
                .as_ref()
                .and_then(platform::tunnel_backend)
            {
                self.platform.tunnels.insert(host.clone(), b);
            }
        }
    }

    fn emit(&mut self, event: &str, host: &str, detail: serde_json::Value) -> f64 {
        self.emit_at(event, host, detail, now())
    }

    /// An event stamped at unix time `t`: when it happened, as its source
    /// stamped it, rather than when the lab noticed (the sink sees that
    /// time too).
    fn emit_at(&mut self, event: &str, host: &str, detail: serde_json::Value, t: f64) -> f64 {
        let e = Event {
            t,
            ms: ((t - self.start) * 1e4).round() / 10.0,
            event: event.to_string(),
            host: host.to_string(),
            detail,
        };
        (self.sink)(&e);
        self.events.push(e);
        t
    }

    fn event_time(&self, name: &str) -> Result<f64> {
        self.events
            .iter()
            .rev()
            .find(|e| e.event == name)
            .map(|e| e.t)
            .ok_or_else(|| Error::Other(format!("no event `{name}` yet")))
    }

    /// For data sent "after" event `name`: the moment the old path was
    /// gone for a move (`path_gone_t`), the event's time otherwise.
    fn path_time(&self, name: &str) -> Result<f64> {
        let t = self.event_time(name)?;
        Ok(self
            .events
            .iter()
            .rev()
            .find(|e| e.event == name)
            .and_then(|e| e.detail["path_gone_t"].as_f64())
            .unwrap_or(t))
    }

    fn subst(&self, s: &str) -> String {
        let mut out = s.replace("${SCENARIO_DIR}", &self.scenario.dir.display().to_string());
        out = out.replace("${WORK_DIR}", &self.work.path().display().to_string());
        for (k, v) in self.vars.iter().chain(&self.secrets) {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        out
    }

    /// A host's shell line; `swanctl` talks to that host's charon.
    fn host_sh(&self, host: &str, line: &str) -> Result<String> {
        let ns = self.lab.host(host)?;
        let prelude = match self.charons.get(host) {
            Some(c) => format!(
                "swanctl() {{ command swanctl \"$@\" --uri {}; }}; ",
                c.uri()
            ),
            None => String::new(),
        };
        ns.sh(&format!("{prelude}{line}"))
    }

    /// A config file of `host`: the scenario's own
    /// (`scenarios/NAME/hosts/HOST/FILE`), else the lab's
    /// (`hosts/HOST/FILE`), file by file.
    fn host_file(&self, host: &str, file: &str) -> PathBuf {
        let own = self.scenario.dir.join("hosts").join(host).join(file);
        if own.exists() {
            own
        } else {
            self.lab_dir.join("hosts").join(host).join(file)
        }
    }

    /// The charon config of `lab::charon HOST [mip4=SOCKET]`: with
    /// `mip4=`, the built plugin laid over the plugin directory, loaded,
    /// and pointed at mip4d's plugin socket.
    fn charon_config(&self, mip4_socket: Option<&str>) -> Result<CharonConfig> {
        let mut cfg = self.opts.charon.clone();
        let Some(socket) = mip4_socket else {
            return Ok(cfg);
        };
        let plugin = self
            .opts
            .mip4_plugin
            .as_ref()
            .ok_or_else(|| Error::Other("no mip4 plugin given (libmip4.so)".into()))?;
        let dir = self.work.path().join("plugins");
        let io = |source| Error::Io {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        // Copy then rename: a charon still running has the previous copy
        // mapped, and rewriting a mapped library in place crashes it.
        let tmp = dir.join(".libstrongswan-mip4.so.new");
        std::fs::copy(plugin, &tmp).map_err(io)?;
        std::fs::rename(&tmp, dir.join("libstrongswan-mip4.so")).map_err(io)?;
        if !cfg.extra_plugins.iter().any(|p| p == "mip4") {
            cfg.extra_plugins.push("mip4".into());
        }
        // charon must never take the home address (on mip4d's tunnel
        // device, `tunnel_device` = mip4mn0) for an IKE path: after a
        // break-before-make move it is the only address left for a moment,
        // MOBIKE would probe from it, through the Mobile IP tunnel that
        // itself runs inside this IKE_SA's ESP, and never recover. The
        // device is mip4d's TUN with the userspace backend and the
        // binding's ipip link (named after the lab's home address) with
        // the kernel backend; charon matches names exactly.
        let ipip = crate::dataplane::kernel::link_name(LAB_HOME_ADDRESS);
        cfg.extra_settings
            .push_str(&format!("    interfaces_ignore = mip4mn0, {ipip}\n"));
        cfg.extra_settings.push_str(&format!(
            "    plugins {{\n        mip4 {{\n            socket = {socket}\n            \
             loglevel = 2\n        }}\n    }}\n"
        ));
        cfg.plugin_overlay = Some(dir);
        Ok(cfg)
    }

    fn charon(&self, host: &str) -> Result<&Charon> {
        self.charons
            .get(host)
            .ok_or_else(|| Error::Other(format!("no charon started on `{host}`")))
    }

    fn start_captures(&mut self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.display().to_string(),
            source,
        })?;
        for (host, dev) in self.lab.interfaces() {
            // The MN's access interfaces are down while detached (tcpdump
            // refuses those); their traffic is in the pcap of the access
            // router's end of the same link.
            if self
                .lab
                .spec
                .access
                .iter()
                .any(|a| a.host == host && a.dev == dev)
            {
                continue;
            }
            self.capture_one(&host, &dev, &dir.join(format!("{host}-{dev}.pcap")))?;
        }
        self.emit("capture_started", "", serde_json::json!({"dir": dir}));
        Ok(())
    }

    /// tcpdump on `host:dev` into `pcap`, running once it says so.
    fn capture_one(&mut self, host: &str, dev: &str, pcap: &Path) -> Result<()> {
        let log = self.work.path().join(format!("tcpdump-{host}-{dev}.log"));
        let ns = self.lab.host(host)?;
        let mut cmd = ns.command("tcpdump");
        cmd.args(["-n", "-U", "-s", "0", "-i", dev, "-w"]).arg(pcap);
        let p = ns.spawn(&format!("tcpdump-{dev}"), cmd, &log)?;
        self.captures.push(p);
        let what = format!("tcpdump on {host}:{dev}");
        wait::until(Duration::from_secs(5), &what, || {
            std::fs::read_to_string(&log)
                .ok()?
                .contains("listening on")
                .then_some(())
        })?;
        Ok(())
    }

    fn step(&mut self, l: &Line) -> Result<()> {
        let command = self.subst(&l.command);
        if l.host != "lab" {
            let out = self.host_sh(&l.host, &command)?;
            self.emit(
                "command",
                &l.host,
                serde_json::json!({"cmd": command, "out": out.trim()}),
            );
            return Ok(());
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        let arg = |i: usize| -> Result<&str> {
            words
                .get(i)
                .copied()
                .ok_or_else(|| Error::Other(format!("`lab::{command}`: argument {i} missing")))
        };
        let secs = |i: usize, default: u64| -> Result<Duration> {
            match words.get(i) {
                None => Ok(Duration::from_secs(default)),
                Some(s) => s
                    .parse()
                    .map(Duration::from_secs)
                    .map_err(|_| Error::Other(format!("`{s}` is not a number of seconds"))),
            }
        };
        match arg(0)? {
            // lab::attach NET: first attachment of the MN.
            // lab::move NET: the measured move (event `address_change`).
            verb @ ("attach" | "move") => {
                let net = self.next_net(arg(1)?)?;
                let net = net.as_str();
                let host = self.lab.spec.access(net)?.host.clone();
                let from = self.lab.attached(&host).map(str::to_string);
                let before = now();
                self.lab.attach(net)?;
                // The change counts from its first command; the data
                // checks after it (`path_time`) from the moment the old
                // path was gone, the end of the detach: under the kernel
                // tier's emulation a process start takes ~0.1 s, and
                // echoes sent before the break still went through.
                let gone = self.lab.left_at().unwrap_or(before);
                // ${MN_ADDR}: the MN's address on the network it is on now.
                let addr = self.lab.spec.access(net)?.addr.clone();
                let addr = addr.split('/').next().unwrap_or_default().to_string();
                self.vars.insert("MN_ADDR".into(), addr);
                let name = if verb == "move" {
                    "address_change"
                } else {
                    "attached"
                };
                let took_ms = ((now() - before) * 1e4).round() / 10.0;
                self.emit_at(
                    name,
                    &host,
                    serde_json::json!({"from": from, "to": net, "took_ms": took_ms,
                        "path_gone_ms": ((gone - before) * 1e4).round() / 10.0, "path_gone_t": gone}),
                    before,
                );
            }
            // lab::charon HOST [mip4=SOCKET] [set:KEY=VALUE ...]: start
            // charon (with the mip4 plugin talking to SOCKET, and each
            // charon.KEY = VALUE), load the host's swanctl.conf. A
            // second start on HOST (after charon-kill) gets a fresh folder
            // HOST-N, so the first charon's log stays.
            // With `--gateway libreswan`, vpngw's gateway is pluto instead
            // (the host's ipsec.conf and ipsec.secrets).
            "charon" if arg(1)? == "vpngw" && self.opts.libreswan_root.is_some() => {
                let host = arg(1)?.to_string();
                let root = self.opts.libreswan_root.clone().unwrap_or_default();
                let dir = self.work.path().join(&host);
                drop(self.plutos.remove(&host));
                let conf = self.host_file(&host, "ipsec.conf");
                let p = super::pluto::Pluto::start(
                    self.lab.host(&host)?,
                    &dir,
                    &root,
                    &conf,
                    &self.host_file(&host, "ipsec.secrets"),
                )?;
                self.platform
                    .ipsec
                    .insert(host.clone(), "libreswan".to_string());
                self.emit(
                    "pluto_started",
                    &host,
                    serde_json::json!({"ipsec_conf": conf, "log": p.log_path()}),
                );
                self.plutos.insert(host, p);
            }
            "charon" => {
                let host = arg(1)?.to_string();
                let mip4 = words.iter().find_map(|w| w.strip_prefix("mip4="));
                let mut cfg = self.charon_config(mip4)?;
                cfg.extra_settings.push_str(&charon_settings(&words[2..]));
                let starts = self
                    .events
                    .iter()
                    .filter(|e| e.event == "charon_started" && e.host == host)
                    .count();
                let dir = match starts {
                    0 => self.work.path().join(&host),
                    n => self.work.path().join(format!("{host}-{}", n + 1)),
                };
                // A charon still running on HOST goes first.
                drop(self.charons.remove(&host));
                let c = Charon::start(self.lab.host(&host)?, &dir, &cfg)?;
                let conf = self.host_file(&host, "swanctl.conf");
                c.load_all(&conf)?;
                self.platform
                    .ipsec
                    .insert(host.clone(), c.ipsec_backend().to_string());
                self.charons.insert(host.clone(), c);
                self.emit(
                    "charon_started",
                    &host,
                    serde_json::json!({"swanctl": conf, "mip4": mip4, "dir": dir}),
                );
            }
            // lab::charon-kill HOST: charon dies (SIGKILL: no DELETE sent,
            // kernel-libipsec's ipsec0 and its routes vanish with it).
            "charon-kill" => {
                let host = arg(1)?.to_string();
                let mut c = self
                    .charons
                    .remove(&host)
                    .ok_or_else(|| Error::Other(format!("no charon started on `{host}`")))?;
                let killed = now();
                c.process_mut().kill();
                drop(c);
                self.emit_at("charon_killed", &host, serde_json::json!({}), killed);
            }
            // lab::terminate HOST IKE: `swanctl --terminate --ike IKE`,
            // waiting until charon has deleted it; the event is stamped
            // when the command started (what follows it may come sooner
            // than swanctl returns).
            "terminate" => {
                let (host, ike) = (arg(1)?, arg(2)?);
                let started = now();
                let out = self.charon(host)?.swanctl(&[
                    "--terminate",
                    "--ike",
                    ike,
                    "--timeout",
                    "10",
                ])?;
                self.emit_at(
                    "vpn_terminated",
                    host,
                    serde_json::json!({"ike": ike, "out": out.trim()}),
                    started,
                );
            }
            // lab::ike-soak HOST IKE CHILD ROUNDS REKEYS FIGURE: ROUNDS
            // times initiate CHILD, rekey IKE REKEYS times and terminate
            // it: 1 + REKEYS IKE_SAs a round (figure FIGURE, time
            // FIGURE_ms).
            "ike-soak" => {
                let (host, ike, child, fig) = (arg(1)?, arg(2)?, arg(3)?, arg(6)?);
                let count = |i: usize| -> Result<u32> {
                    let w = arg(i)?;
                    w.parse()
                        .map_err(|_| Error::Other(format!("`{w}` is not a count")))
                };
                let (rounds, rekeys) = (count(4)?, count(5)?);
                let started = now();
                let lives = ike_soak(self.charon(host)?, ike, child, rounds, rekeys)?;
                let ms = ((now() - started) * 1e3).round();
                self.figures.insert(fig.to_string(), f64::from(lives));
                self.figures.insert(format!("{fig}_ms"), ms);
                self.emit(
                    "ike_soak_done",
                    host,
                    serde_json::json!({"ike": ike, "ike_sas": lives, "ms": ms}),
                );
            }
            // lab::rss HOST FIGURE: the resident memory of HOST's charon
            // (KiB, /proc/PID/status VmRSS).
            "rss" => {
                let (host, fig) = (arg(1)?, arg(2)?);
                let pid = self
                    .charons
                    .get_mut(host)
                    .ok_or_else(|| Error::Other(format!("no charon started on `{host}`")))?
                    .process_mut()
                    .pid();
                self.figures.insert(fig.to_string(), rss_kib(pid)?);
            }
            // lab::vpn-up HOST IKE CHILD VAR: initiate, wait for the TIA.
            "vpn-up" => {
                let (host, ike, child, var) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?);
                let c = self.charon(host)?;
                c.initiate(child)?;
                let (sa, _) = c.wait_sa(ike, Duration::from_secs(15), "VPN with a TIA", |sa| {
                    !sa.local_vips.is_empty()
                })?;
                let tia = sa.local_vips[0].clone();
                self.vars.insert(var.to_string(), tia.clone());
                self.emit("vpn_up", host, sa_json(&sa));
            }
            // lab::wait-sa HOST IKE FIELD=VALUE EVENT [SECS]
            "wait-sa" => {
                let (host, ike, cond, event) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?);
                let (key, value) = cond
                    .split_once('=')
                    .ok_or_else(|| Error::Other(format!("`{cond}`: expected field=value")))?;
                let c = self.charon(host)?;
                let (sa, _) = c.wait_sa(ike, secs(5, 20)?, cond, |sa| {
                    sa_json(sa)[key].as_str() == Some(value)
                        || sa_json(sa)[key]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|v| v == value))
                })?;
                self.emit(event, host, sa_json(&sa));
            }
            // lab::wait-log HOST[/PROC] NEEDLE EVENT [SECS]
            "wait-log" => {
                let (target, needle, event) = (arg(1)?, arg(2)?, arg(3)?);
                let path = match target.split_once('/') {
                    None => self.charon(target)?.log_path().to_path_buf(),
                    Some((h, p)) => self.work.path().join(format!("{h}-{p}.log")),
                };
                let what = format!("`{needle}` in {}", path.display());
                let (line, _) = wait::until(secs(4, 20)?, &what, || {
                    let text = std::fs::read_to_string(&path).ok()?;
                    text.lines()
                        .find(|l| l.contains(needle))
                        .map(str::to_string)
                })?;
                self.emit(event, target, serde_json::json!({"line": line}));
            }
            // lab::spawn HOST NAME CMD...: a daemon inside HOST, log in
            // the work dir as HOST-NAME.log (mip4d, mip4-ha later).
            "spawn" => {
                let (host, name) = (arg(1)?, arg(2)?);
                let rest = words.get(3..).unwrap_or_default().join(" ");
                let ns = self.lab.host(host)?;
                let mut cmd = ns.command("sh");
                cmd.args(["-c", &format!("exec {rest}")]);
                let log = self.work.path().join(format!("{host}-{name}.log"));
                let p = ns.spawn(name, cmd, &log)?;
                self.procs.insert(format!("{host}/{name}"), p);
                self.emit(
                    "spawned",
                    host,
                    serde_json::json!({"name": name, "cmd": rest}),
                );
            }
            // lab::stop HOST/NAME
            "stop" => {
                let key = arg(1)?;
                if let Some(mut p) = self.procs.remove(key) {
                    p.stop(Duration::from_secs(3));
                }
                if let Some(mut s) = self.streams.remove(key) {
                    s.stop();
                }
                self.emit("stopped", key, serde_json::json!({}));
            }
            // lab::pinger NAME HOST SRC DST: continuous ping, 20 ms apart.
            // lab::forge-tnc NAME HOST HOME_AGENT: HOST answers the
            // registration requests passing it towards HOME_AGENT with
            // forged TNC replies (src/lab/forger.rs).
            "forge-tnc" => {
                let (name, host, ha) = (arg(1)?, arg(2)?, arg(3)?);
                let f = super::forger::Forger::start(self.lab.host(host)?, ha)?;
                self.forgers.insert(name.to_string(), f);
                self.emit(
                    "forger_started",
                    host,
                    serde_json::json!({"name": name, "home_agent": ha}),
                );
            }
            // lab::forged NAME FIGURE: requests forger NAME answered.
            "forged" => {
                let (name, fig) = (arg(1)?, arg(2)?);
                let f = self
                    .forgers
                    .get(name)
                    .ok_or_else(|| Error::Other(format!("no forger `{name}`")))?;
                self.figures.insert(fig.to_string(), f.answered() as f64);
            }
            "pinger" => {
                let (name, host, src, dst) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?);
                let ns = self.lab.host(host)?;
                let out = self.work.path().join(format!("ping-{name}.txt"));
                let mut cmd = ns.command("ping");
                cmd.args(["-D", "-n", "-i", "0.02", "-W", "1", "-I", src, dst]);
                let p = ns.spawn(&format!("ping-{name}"), cmd, &out)?;
                self.pingers
                    .insert(name.to_string(), Pinger { out, _process: p });
                self.emit(
                    "pinger_started",
                    host,
                    serde_json::json!({"name": name, "src": src, "dst": dst}),
                );
            }
            // lab::wait-reply NAME AFTER EVENT [SECS]: the first reply to
            // an echo sent after event AFTER.
            "wait-reply" => {
                let (name, after, event) = (arg(1)?, arg(2)?, arg(3)?);
                let t0 = self.path_time(after)?;
                let p = self
                    .pingers
                    .get(name)
                    .ok_or_else(|| Error::Other(format!("no pinger `{name}`")))?;
                let what = format!("a reply on pinger `{name}` after `{after}`");
                let ((t, rtt), _) = wait::until(secs(4, 20)?, &what, || {
                    p.replies().into_iter().find(|(t, rtt)| t - rtt / 1e3 >= t0)
                })?;
                let lost = p.replies().iter().filter(|(rt, _)| *rt >= t0).count();
                self.emit_at(
                    event,
                    "",
                    serde_json::json!({"pinger": name, "rtt_ms": rtt, "replies_since": lost}),
                    t,
                );
            }
            // lab::rtt HOST DST FIGURE [COUNT]: average ping RTT, ms.
            "rtt" => {
                let (host, dst, fig) = (arg(1)?, arg(2)?, arg(3)?);
                let count = words.get(4).copied().unwrap_or("5");
                let ns = self.lab.host(host)?;
                let out = ns.exec("ping", &["-n", "-q", "-c", count, "-i", "0.05", dst])?;
                let avg = out
                    .lines()
                    .find(|l| l.starts_with("rtt"))
                    .and_then(|l| l.split('=').nth(1)?.split('/').nth(1)?.trim().parse().ok())
                    .ok_or_else(|| Error::Other(format!("no RTT in ping output: {out}")))?;
                self.figures.insert(fig.to_string(), avg);
                self.emit(
                    "rtt",
                    host,
                    serde_json::json!({"dst": dst, "figure": fig, "avg_ms": avg}),
                );
            }
            // lab::figure NAME FROM TO: ms between two events.
            "figure" => {
                let (fig, from, to) = (arg(1)?, arg(2)?, arg(3)?);
                let ms = (self.event_time(to)? - self.event_time(from)?) * 1e3;
                self.figures
                    .insert(fig.to_string(), (ms * 10.0).round() / 10.0);
            }
            // lab::delta NAME A B: figure A - figure B (e.g. a counter
            // after and before a move).
            "delta" => {
                let (fig, a, b) = (arg(1)?, arg(2)?, arg(3)?);
                let get = |k: &str| {
                    self.figures
                        .get(k)
                        .copied()
                        .ok_or_else(|| Error::Other(format!("no figure `{k}`")))
                };
                let d = get(a)? - get(b)?;
                self.figures.insert(fig.to_string(), d);
            }
            // lab::ratio NAME A B: figure A / figure B.
            "ratio" => {
                let (fig, a, b) = (arg(1)?, arg(2)?, arg(3)?);
                let get = |k: &str| {
                    self.figures
                        .get(k)
                        .copied()
                        .ok_or_else(|| Error::Other(format!("no figure `{k}`")))
                };
                let r = get(a)? / get(b)?;
                self.figures
                    .insert(fig.to_string(), (r * 100.0).round() / 100.0);
            }
            // lab::secret VAR BYTES: a random key (hex) for this run only,
            // substituted like a variable but never reported or logged.
            "secret" => {
                let (var, n) = (arg(1)?, arg(2)?);
                let n: usize = n
                    .parse()
                    .map_err(|_| Error::Other(format!("`{n}` is not a byte count")))?;
                let mut key = vec![0u8; n];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                self.secrets.insert(var.to_string(), hex);
                self.emit(
                    "secret_made",
                    "",
                    serde_json::json!({"var": var, "bytes": n}),
                );
            }
            // lab::render HOST FILE VAR: the host's config FILE with
            // ${VARS} filled in, written to the work dir (mode 0600, it may
            // hold a key); its path goes into ${VAR}.
            "render" => {
                let (host, file, var) = (arg(1)?, arg(2)?, arg(3)?);
                let src = self.host_file(host, file);
                let text = std::fs::read_to_string(&src).map_err(|source| Error::Io {
                    path: src.display().to_string(),
                    source,
                })?;
                let dir = self.work.path().join(host);
                let dst = dir.join(file);
                write_private(&dir, &dst, &self.subst(&text))?;
                self.vars.insert(var.to_string(), dst.display().to_string());
                self.emit(
                    "config_written",
                    host,
                    serde_json::json!({"from": src, "to": dst}),
                );
            }
            // lab::subscribe HOST/PROC SOCKET [SECS]: mip4d's event stream
            // (no backlog: subscribe before the events that matter).
            "subscribe" => {
                let (key, socket) = (arg(1)?, arg(2)?);
                let ev = Events::subscribe(Path::new(socket), secs(3, 10)?)?;
                self.subscriptions.insert(key.to_string(), ev);
                let host = key.split('/').next().unwrap_or(key);
                self.control_sockets
                    .insert(host.to_string(), socket.to_string());
                self.emit("subscribed", key, serde_json::json!({"socket": socket}));
            }
            // lab::wait-event HOST/PROC EVENT [field=value ...]
            //   [after=LABEVENT] [last-before=LABEVENT] NAME [SECS]: waits
            // for the daemon's first EVENT with those fields (stamped at or
            // after `after`; with `last-before`, the last one stamped up to
            // then) and records it as NAME at the daemon's own timestamp.
            "wait-event" => {
                let (key, dev) = (arg(1)?, arg(2)?);
                let mut conds = Vec::new();
                let mut after = 0.0;
                let mut last_before = None;
                let mut rest = words.get(3..).unwrap_or_default().iter();
                let name = loop {
                    let Some(w) = rest.next() else {
                        return Err(Error::Other(format!(
                            "`lab::{command}`: the lab event name is missing"
                        )));
                    };
                    match w.split_once('=') {
                        Some(("after", ev)) => after = self.event_time(ev)?,
                        Some(("last-before", ev)) => last_before = Some(self.event_time(ev)?),
                        Some((k, v)) => conds.push((k.to_string(), v.to_string())),
                        None => break *w,
                    }
                };
                let timeout =
                    match rest.next() {
                        None => Duration::from_secs(20),
                        Some(s) => Duration::from_secs(s.parse().map_err(|_| {
                            Error::Other(format!("`{s}` is not a number of seconds"))
                        })?),
                    };
                let sub = self
                    .subscriptions
                    .get(key)
                    .ok_or_else(|| Error::Other(format!("no `lab::subscribe {key}` yet")))?;
                let what = format!("`{dev}` {conds:?} from {key}");
                let (e, _) =
                    wait::until(timeout, &what, || sub.find(dev, &conds, after, last_before))?;
                let t = daemon::wall(&e).unwrap_or_else(now);
                self.emit_at(name, key, e, t);
            }
            // lab::binding HOST SOCKET HOA COA NAME [SECS]: waits until
            // the HA's binding for HOA has care-of address COA.
            "binding" => {
                let (host, socket, hoa, coa, name) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?, arg(5)?);
                self.control_sockets
                    .insert(host.to_string(), socket.to_string());
                let what = format!("binding {hoa} -> {coa} at {host}");
                let mut last = None;
                let r = wait::until(secs(6, 20)?, &what, || {
                    let b = daemon::binding(Path::new(socket), hoa).ok()?;
                    last = b.clone();
                    b.filter(|b| b["care_of_address"] == coa)
                });
                let (b, _) = r.map_err(|e| {
                    Error::Other(format!(
                        "{e}; last seen: {}",
                        daemon::describe_binding(last.as_ref())
                    ))
                })?;
                self.emit(name, host, b);
            }
            // lab::tcp-stream NAME CLIENT_HOST SERVER_HOST ADDR:PORT: a
            // checked echo stream from CLIENT_HOST to a server on ADDR.
            "tcp-stream" => {
                let (name, client, server, addr) = (arg(1)?, arg(2)?, arg(3)?, arg(4)?);
                let addr: std::net::SocketAddrV4 = addr
                    .parse()
                    .map_err(|_| Error::Other(format!("`{addr}`: expected ADDR:PORT")))?;
                let probe = TcpProbe::start(
                    self.lab.host(server)?.name(),
                    addr,
                    self.lab.host(client)?.name(),
                )?;
                let st = probe.state();
                self.streams.insert(name.to_string(), probe);
                self.emit(
                    "tcp_connected",
                    client,
                    serde_json::json!({
                        "stream": name,
                        "client": st.client.map(|c| c.to_string()),
                        "server": addr.to_string(),
                    }),
                );
            }
            // lab::wait-stream NAME AFTER EVENT [SECS]: the stream's echo
            // carries bytes written after event AFTER (they crossed the
            // path as it is since AFTER).
            "wait-stream" => {
                let (name, after, event) = (arg(1)?, arg(2)?, arg(3)?);
                let t0 = self.path_time(after)?;
                let probe = self
                    .streams
                    .get(name)
                    .ok_or_else(|| Error::Other(format!("no stream `{name}`")))?;
                let what = format!("stream `{name}` echoing bytes written after `{after}`");
                let r = wait::until(secs(4, 20)?, &what, || {
                    let st = probe.state();
                    if st.error.is_some() {
                        return Some(Err(st));
                    }
                    // A byte written after t0: the first write's end.
                    let n = st.sent_by(t0);
                    st.echoed_past(n).map(|t| Ok((t, st)))
                });
                let (t, st) = match r? {
                    (Ok(v), _) => v,
                    (Err(st), _) => {
                        return Err(Error::Other(format!(
                            "stream `{name}` broke: {}",
                            st.describe()
                        )))
                    }
                };
                self.emit_at(
                    event,
                    "",
                    serde_json::json!({
                        "stream": name,
                        "connections": st.accepted,
                        "client": st.client.map(|c| c.to_string()),
                        "bytes_sent": st.bytes_sent(),
                        "bytes_echoed": st.bytes_echoed(),
                    }),
                    t,
                );
            }
            // lab::stream-gap NAME FIGURE: the stream's longest stall, ms.
            "stream-gap" => {
                let (name, fig) = (arg(1)?, arg(2)?);
                let st = self
                    .streams
                    .get(name)
                    .ok_or_else(|| Error::Other(format!("no stream `{name}`")))?
                    .state();
                self.figures
                    .insert(fig.to_string(), (st.longest_gap_ms() * 10.0).round() / 10.0);
            }
            // lab::status-figure SOCKET FIELD.PATH FIGURE: a number from a
            // daemon's `mip4ctl status --json` (e.g. a counter).
            "status-figure" => {
                let (socket, field, fig) = (arg(1)?, arg(2)?, arg(3)?);
                let v = daemon::status(Path::new(socket))?;
                let n = field
                    .split('.')
                    .fold(&v, |v, part| &v[part])
                    .as_f64()
                    .ok_or_else(|| {
                        Error::Other(format!("status of {socket}: no number at `{field}`"))
                    })?;
                self.figures.insert(fig.to_string(), n);
            }
            // lab::ping-lost NAME AROUND FIGURE: echoes of pinger NAME
            // lost around event AROUND (see `lost_around`).
            "ping-lost" => {
                let (name, around, fig) = (arg(1)?, arg(2)?, arg(3)?);
                let t0 = self.path_time(around)?;
                let p = self
                    .pingers
                    .get(name)
                    .ok_or_else(|| Error::Other(format!("no pinger `{name}`")))?;
                let lost = lost_around(&p.replies_seq(), t0).ok_or_else(|| {
                    Error::Other(format!(
                        "pinger `{name}`: no replies on both sides of `{around}`"
                    ))
                })?;
                self.figures.insert(fig.to_string(), lost as f64);
            }
            "kill" => self.kill(arg(1)?, words.get(2).copied().unwrap_or("killed"))?,
            "hold" => hold(arg(1)?)?,
            "snapshot" => self.snapshot(arg(1)?, arg(2)?)?,
            "same-as" => self.expect_same(arg(1)?, arg(2)?, secs(3, 10)?)?,
            "capture" => self.capture(arg(1)?, arg(2)?, arg(3)?)?,
            "loss" => self.loss(arg(1)?, arg(2)?)?,
            "seed" => self.seed(arg(1)?)?,
            "random" => self.random(arg(1)?, arg(2)?, arg(3)?)?,
            "pick" => self.pick(arg(1)?, words.get(2..).unwrap_or_default())?,
            "repeat" => self.repeat(arg(1)?, arg(2)?, Path::new(&l.file))?,
            // lab::set VAR WORDS...: ${VAR} = the words.
            "set" => {
                let v = words.get(2..).unwrap_or_default().join(" ");
                self.vars.insert(arg(1)?.to_string(), v);
            }
            "var" => self.var_from(arg(1)?, arg(2)?, arg(3)?)?,
            // lab::mark EVENT: an event now (e.g. a fault's end, for `after`).
            "mark" => {
                self.emit(arg(1)?, "", serde_json::json!({}));
            }
            other => return Err(Error::Other(format!("unknown lab verb `{other}`"))),
        }
        Ok(())
    }

    /// An evaltest `lab::` line: the lab's own view as one line of text.
    fn query(&self, command: &str) -> Result<String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let arg = |i: usize| -> Result<&str> {
            words
                .get(i)
                .copied()
                .ok_or_else(|| Error::Other(format!("`lab::{command}`: argument {i} missing")))
        };
        match arg(0)? {
            // lab::binding SOCKET HOA: the HA's binding for HOA.
            "binding" => {
                let b = daemon::binding(Path::new(arg(1)?), arg(2)?)?;
                Ok(daemon::describe_binding(b.as_ref()))
            }
            // lab::tcp-stream NAME: the stream's counters.
            "tcp-stream" => Ok(self
                .streams
                .get(arg(1)?)
                .ok_or_else(|| Error::Other(format!("no stream `{}`", arg(1).unwrap_or(""))))?
                .state()
                .describe()),
            // lab::events HOST/PROC EVENT [field=value ...] [after=EV]:
            // how many (with `after`, stamped at or after lab event EV).
            "events" => {
                let sub = self.subscriptions.get(arg(1)?).ok_or_else(|| {
                    Error::Other(format!("no subscription `{}`", arg(1).unwrap_or("")))
                })?;
                let mut after = 0.0;
                let mut conds = Vec::new();
                for (k, v) in words
                    .get(3..)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|w| w.split_once('='))
                {
                    match k {
                        "after" => after = self.event_time(v)?,
                        _ => conds.push((k.to_string(), v.to_string())),
                    }
                }
                let n = sub
                    .all()
                    .iter()
                    .filter(|e| {
                        e["event"] == arg(2).unwrap_or("")
                            && daemon::matches(e, &conds)
                            && daemon::wall(e).is_some_and(|t| t >= after)
                    })
                    .count();
                Ok(format!("count={n}"))
            }
            // lab::figure NAME: a figure of this run, `NAME=value`.
            "figure" => {
                let v = self
                    .figures
                    .get(arg(1)?)
                    .ok_or_else(|| Error::Other(format!("no figure `{}`", arg(1).unwrap_or(""))))?;
                Ok(format!("{}={v}", arg(1)?))
            }
            "same-as" => self.same_as(arg(1)?, arg(2)?),
            "clear-text" => self.clear_text(arg(1)?, arg(2)?),
            other => Err(Error::Other(format!("unknown lab query `{other}`"))),
        }
    }

    fn check(&mut self, l: &Line) -> Check {
        let command = self.subst(&l.command);
        let (pattern, expect) = l.expect.clone().expect("evaltest line");
        let pattern = self.subst(&pattern);
        let re = regex::Regex::new(&pattern).ok();
        let probe = |r: &Run| -> bool {
            let out = if l.host == "lab" {
                r.query(&command)
            } else {
                r.host_sh(&l.host, &command)
            }
            .unwrap_or_else(|e| e.to_string());
            re.as_ref().is_some_and(|re| re.is_match(&out))
        };
        let ok = if expect {
            wait::until(Duration::from_secs(10), &pattern, || {
                probe(self).then_some(())
            })
            .is_ok()
        } else {
            !probe(self)
        };
        let c = Check {
            host: l.host.clone(),
            command,
            pattern,
            expect,
            ok,
        };
        self.emit(
            "check",
            &l.host,
            serde_json::to_value(&c).unwrap_or_default(),
        );
        c
    }
}

/// The fault verbs (issue 13, "Faults in the lab"): one function each.
impl Run<'_> {
    /// `lab::move A,B,C`: the first of the list after the network the MN
    /// is on now (cyclic; the first if it is on none of them). A single
    /// name is itself.
    fn next_net(&self, list: &str) -> Result<String> {
        let nets: Vec<&str> = list.split(',').collect();
        let host = self.lab.spec.access(nets[0])?.host.clone();
        let now = self.lab.attached(&host);
        let i = nets
            .iter()
            .position(|n| Some(*n) == now)
            .map_or(0, |i| (i + 1) % nets.len());
        Ok(nets[i].to_string())
    }

    /// lab::kill HOST/NAME [EVENT]: SIGKILL a daemon started by
    /// `lab::spawn` (a crash: no deregistration, no cleanup). Its log is
    /// kept as HOST-NAME.killed-N.log, so that a new one of the same name
    /// starts a fresh log.
    fn kill(&mut self, key: &str, event: &str) -> Result<()> {
        let mut p = self
            .procs
            .remove(key)
            .ok_or_else(|| Error::Other(format!("no daemon `{key}` running")))?;
        let t = now();
        p.kill();
        let log = self
            .work
            .path()
            .join(format!("{}.log", key.replace('/', "-")));
        let n = self
            .events
            .iter()
            .filter(|e| e.event == event && e.host == key)
            .count();
        let kept = log.with_extension(format!("killed-{}.log", n + 1));
        let _ = std::fs::rename(&log, &kept);
        self.emit_at(event, key, serde_json::json!({"log": kept}), t);
        Ok(())
    }

    /// lab::snapshot HOST NAME: the host's XFRM policies, routes, rules,
    /// devices and sockets, normalised (src/lab/leaks.rs).
    fn snapshot(&mut self, host: &str, name: &str) -> Result<()> {
        let snap = Snapshot::take(self.lab.host(host)?)?;
        self.snapshots.insert(format!("{host}/{name}"), snap);
        self.emit("snapshot", host, serde_json::json!({"name": name}));
        Ok(())
    }

    /// Query lab::same-as HOST NAME: `same`, or what differs from snapshot
    /// NAME (`+section: line` new, `-section: line` gone).
    fn same_as(&self, host: &str, name: &str) -> Result<String> {
        let before = self
            .snapshots
            .get(&format!("{host}/{name}"))
            .ok_or_else(|| Error::Other(format!("no `lab::snapshot {host} {name}` yet")))?;
        let d = before.diff(&Snapshot::take(self.lab.host(host)?)?);
        Ok(if d.is_empty() {
            "same".into()
        } else {
            d.join("; ")
        })
    }

    /// lab::same-as HOST NAME [SECS] (a step): waits until the host is as
    /// snapshot NAME was, else fails with what differs (event
    /// `same_as_NAME`).
    fn expect_same(&mut self, host: &str, name: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let what = format!("{host} as in snapshot `{name}`");
        let r = wait::until(timeout, &what, || match self.same_as(host, name) {
            Ok(s) if s == "same" => Some(Ok(())),
            Ok(s) => {
                last = s;
                None
            }
            Err(e) => Some(Err(e)),
        });
        match r {
            Ok((r, _)) => r?,
            Err(e) => return Err(Error::Other(format!("{e}; differs: {last}"))),
        }
        self.emit(&format!("same_as_{name}"), host, serde_json::json!({}));
        Ok(())
    }

    /// lab::capture NAME HOST DEV: tcpdump on HOST:DEV into NAME.pcap in
    /// the work folder, for `lab::clear-text NAME ADDR`.
    fn capture(&mut self, name: &str, host: &str, dev: &str) -> Result<()> {
        let pcap = self.work.path().join(format!("{name}.pcap"));
        self.capture_one(host, dev, &pcap)?;
        self.pcaps.insert(name.to_string(), pcap.clone());
        self.emit("capture_started", host, serde_json::json!({"pcap": pcap}));
        Ok(())
    }

    /// Query lab::clear-text NAME ADDR: `home=N total=M`, frames of
    /// capture NAME with ADDR in an IPv4 header (outside ESP) and all.
    fn clear_text(&self, name: &str, addr: &str) -> Result<String> {
        let pcap = self
            .pcaps
            .get(name)
            .ok_or_else(|| Error::Other(format!("no `lab::capture {name}` yet")))?;
        Ok(super::cleartext::count(pcap, addr)?.describe())
    }

    /// The run's generator (`lab::seed` first).
    fn rng(&mut self) -> Result<&mut rand::rngs::StdRng> {
        self.rng
            .as_mut()
            .ok_or_else(|| Error::Other("random choice before `lab::seed`".into()))
    }

    /// lab::seed VAR: seeds every random choice of the run, from
    /// MIP4_LAB_SEED if set (to replay a run), else at random; the seed
    /// goes into ${VAR} and so into the summary.
    fn seed(&mut self, var: &str) -> Result<()> {
        use rand::SeedableRng;
        let seed: u64 = match std::env::var("MIP4_LAB_SEED") {
            Ok(s) => s
                .parse()
                .map_err(|_| Error::Other(format!("MIP4_LAB_SEED `{s}` is not a number")))?,
            Err(_) => rand::random(),
        };
        self.rng = Some(rand::rngs::StdRng::seed_from_u64(seed));
        self.vars.insert(var.to_string(), seed.to_string());
        self.emit("seeded", "", serde_json::json!({"seed": seed}));
        Ok(())
    }

    /// lab::random VAR LO HI: an integer in LO..=HI into ${VAR}.
    fn random(&mut self, var: &str, lo: &str, hi: &str) -> Result<()> {
        use rand::Rng;
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| Error::Other(format!("`{s}` is not a number")))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(Error::Other(format!("empty range {lo}..={hi}")));
        }
        let v = self.rng()?.gen_range(lo..=hi);
        self.vars.insert(var.to_string(), v.to_string());
        Ok(())
    }

    /// lab::pick VAR A B ...: one of the words into ${VAR}.
    fn pick(&mut self, var: &str, choices: &[&str]) -> Result<()> {
        use rand::seq::SliceRandom;
        let v = choices
            .choose(self.rng()?)
            .ok_or_else(|| Error::Other(format!("`lab::pick {var}`: nothing to pick")))?
            .to_string();
        self.vars.insert(var.to_string(), v);
        Ok(())
    }

    /// lab::loss NET PERCENT: the access link of NET loses PERCENT % of
    /// its frames each way from now on (0: none), seeded from the run's
    /// generator (`lab::seed` first).
    fn loss(&mut self, net: &str, percent: &str) -> Result<()> {
        use rand::Rng;
        let p: f64 = percent
            .parse()
            .map_err(|_| Error::Other(format!("`{percent}` is not a percentage")))?;
        let seed: u64 = self.rng()?.gen();
        let a = self.lab.spec.access(net)?.clone();
        let w = self
            .lab
            .wire(&a.host, &a.dev)
            .ok_or_else(|| Error::Other(format!("access `{net}` has no delay line to lose on")))?;
        w.set_loss(p, seed);
        let dropped = w.dropped();
        self.emit(
            "loss_set",
            net,
            serde_json::json!({"percent": p, "dropped_so_far": dropped}),
        );
        Ok(())
    }

    /// lab::var VAR EVENT FIELD: ${VAR} = field FIELD of the last event
    /// EVENT (e.g. the TIA a daemon reported).
    fn var_from(&mut self, var: &str, event: &str, field: &str) -> Result<()> {
        let e = self
            .events
            .iter()
            .rev()
            .find(|e| e.event == event)
            .ok_or_else(|| Error::Other(format!("no event `{event}` yet")))?;
        let v = match &e.detail[field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => {
                return Err(Error::Other(format!("event `{event}` has no `{field}`")))
            }
            other => other.to_string(),
        };
        self.vars.insert(var.to_string(), v);
        Ok(())
    }

    /// lab::repeat N FILE: the lines of FILE (`pre.dat` syntax, beside the
    /// file of the line that names it: `from`) N times, with ${ROUND} =
    /// 1..=N; `lab::repeat 1 FILE` includes a file.
    fn repeat(&mut self, n: &str, file: &str, from: &Path) -> Result<()> {
        let n: u32 = n
            .parse()
            .map_err(|_| Error::Other(format!("`{n}` is not a count")))?;
        let dir = from.parent().unwrap_or(&self.scenario.dir);
        let lines = parse_dat(&dir.join(file), false)?;
        if lines.is_empty() {
            return Err(Error::Other(format!("`{file}`: no lines to repeat")));
        }
        // A repeat inside a repeat (`lab::repeat 1 FILE` to include a
        // file) leaves the outer ${ROUND} as it was.
        let outer = self.vars.get("ROUND").cloned();
        for round in 1..=n {
            self.vars.insert("ROUND".into(), round.to_string());
            for l in &lines {
                self.step(l).map_err(|e| {
                    Error::Other(format!("round {round}, {}:{}: {e}", l.file, l.line))
                })?;
            }
        }
        match outer {
            Some(r) => self.vars.insert("ROUND".into(), r),
            None => self.vars.remove("ROUND"),
        };
        Ok(())
    }
}

/// The `set:KEY=VALUE` words of `lab::charon` as strongswan.conf lines of
/// the `charon { }` section (e.g. `set:retransmit_timeout=1` for a fast
/// dead-peer detection).
fn charon_settings(words: &[&str]) -> String {
    words
        .iter()
        .filter_map(|w| w.strip_prefix("set:")?.split_once('='))
        .map(|(k, v)| format!("    {k} = {v}\n"))
        .collect()
}

/// lab::hold MS: keeps a fault in place for MS milliseconds (a fault's
/// length, as the scenario says it; never a wait for a result).
fn hold(ms: &str) -> Result<()> {
    let ms: u64 = ms
        .parse()
        .map_err(|_| Error::Other(format!("`{ms}` is not a number of milliseconds")))?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}

fn sa_json(sa: &IkeSa) -> serde_json::Value {
    serde_json::json!({
        "name": sa.name,
        "state": sa.state,
        "local-host": sa.local_host,
        "local-port": sa.local_port,
        "remote-host": sa.remote_host,
        "remote-port": sa.remote_port,
        "local-vips": sa.local_vips,
        "remote-vips": sa.remote_vips,
        "nat-local": sa.nat_local,
    })
}

/// Writes `text` to `path` (in `dir`, made if needed), readable by root
/// only: rendered configs may hold a key.
/// `rounds` times: initiate `child`, `rekeys` times rekey the IKE_SA
/// `ike` and wait for the new one, terminate it. Returns the IKE_SAs that
/// lived.
fn ike_soak(c: &Charon, ike: &str, child: &str, rounds: u32, rekeys: u32) -> Result<u32> {
    let established = |c: &Charon| -> Result<Vec<(u32, String)>> {
        Ok(ike_sa_states(
            &c.swanctl(&["--list-sas", "--ike", ike, "--raw"])?,
            ike,
        ))
    };
    let mut lives = 0;
    for _ in 0..rounds {
        c.initiate(child)?;
        lives += 1;
        let Some(&(mut old, _)) = established(c)?.first() else {
            return Err(Error::Other(format!("`{ike}` not up after initiate")));
        };
        for _ in 0..rekeys {
            c.swanctl(&["--rekey", "--ike", ike])?;
            let what = format!("IKE_SA {ike}[{old}] rekeyed");
            (old, _) = wait::until(Duration::from_secs(10), &what, || {
                match established(c).ok()?.as_slice() {
                    [(id, state)] if *id != old && state == "ESTABLISHED" => Some(*id),
                    _ => None,
                }
            })?;
            lives += 1;
        }
        c.swanctl(&["--terminate", "--ike", ike, "--timeout", "10"])?;
    }
    Ok(lives)
}

/// (uniqueid, state) of each IKE_SA named `ike` in `--list-sas --raw`.
fn ike_sa_states(raw: &str, ike: &str) -> Vec<(u32, String)> {
    let key = format!("{ike} {{uniqueid=");
    raw.match_indices(&key)
        .filter_map(|(at, _)| {
            let rest = &raw[at + key.len()..];
            let id = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            let state = rest.split("state=").nth(1)?.split([' ', '}']).next()?;
            Some((id, state.to_string()))
        })
        .collect()
}

/// VmRSS of process `pid` in KiB.
fn rss_kib(pid: i32) -> Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::Other(format!("{path}: no VmRSS")))
}

fn write_private(dir: &Path, path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// Runs `sh -c` in no namespace (for `which` style checks by the binary).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_sa_states_reads_every_ike_sa_of_the_name() {
        let raw = "list-sa event {soak {uniqueid=7 version=2 state=REKEYING local-host=1} }\n\
                   list-sa event {soak {uniqueid=8 version=2 state=ESTABLISHED} vpn {uniqueid=1 state=ESTABLISHED}}";
        assert_eq!(
            ike_sa_states(raw, "soak"),
            vec![(7, "REKEYING".into()), (8, "ESTABLISHED".into())]
        );
        assert!(ike_sa_states(raw, "other").is_empty());
    }

    #[test]
    fn scenarios_parse() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
        let all = Scenario::list(&lab).unwrap();
        let s = all.iter().find(|s| s.name == "vpn-move").expect("vpn-move");
        assert!(!s.pre.is_empty() && !s.evaltest.is_empty());
        assert_eq!(s.known_defect, None);
        // Its defect (issue 13) is fixed: no known-defect.txt any more.
        let ha = all.iter().find(|s| s.name == "ha-restart").expect("ha");
        assert_eq!(ha.known_defect, None);
    }

    #[test]
    fn ping_loss_counts_the_gap_around_the_move() {
        let text = "\
[100.000] 64 bytes from 10.1.100.5: icmp_seq=1 ttl=62 time=20.0 ms
[100.020] 64 bytes from 10.1.100.5: icmp_seq=2 ttl=62 time=20.0 ms
[100.600] 64 bytes from 10.1.100.5: icmp_seq=31 ttl=62 time=20.0 ms
[100.620] 64 bytes from 10.1.100.5: icmp_seq=32 ttl=62 time=20.0 ms
";
        let r = parse_ping(text);
        assert_eq!(r.len(), 4);
        assert_eq!(r[2], (100.6, 20.0, 31));
        // The path broke at 100.01: echoes 3..=30 never came back.
        assert_eq!(lost_around(&r, 100.01), Some(28));
        // No reply after the event: no figure rather than a wrong one.
        assert_eq!(lost_around(&r, 101.0), None);
    }

    #[test]
    fn evaltest_line_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("evaltest.dat");
        std::fs::write(&p, "# c\nmn::ping x::y::MAYBE\n").unwrap();
        let err = parse_dat(&p, true).unwrap_err().to_string();
        assert!(err.contains("evaltest.dat:2:"), "{err}");
    }
}
