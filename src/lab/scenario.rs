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

mod parse;
mod verbs_daemon;
mod verbs_faults;
mod verbs_ipsec;
mod verbs_lab;
mod verbs_measure;
mod verbs_traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use parse::{Line, Scenario};

use super::charon::{Charon, CharonConfig, CharonLog};
use super::daemon::{self, Events};
use super::leaks::Snapshot;
use super::netns::Process;
use super::platform::{self, Platform};
use super::stream::TcpProbe;
use super::topology::Lab;
use super::{wait, Error, Result, WorkDir};
use verbs_traffic::Pinger;

/// The MN's home address in the lab's configs (lab/hosts/mn/mip4d-*.conf).
const LAB_HOME_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 1, 100, 5);

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
    /// What the command printed last, when the check failed (the line
    /// the pattern missed is the first thing a failure needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<String>,
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

/// One run of one scenario. Field order is teardown order: captures,
/// pingers, daemons and charons go before the namespaces they live in.
struct Run<'a> {
    captures: Vec<Process>,
    pingers: BTreeMap<String, Pinger>,
    /// `lab::timed-move`'s stall detector and the MN's route watch.
    heartbeat: Option<super::timing::Heartbeat>,
    route_watch: Option<super::timing::RouteWatch>,
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

/// Runs `scenario` on a fresh Figure 1 lab built from `lab_dir` (or on
/// the scenario's own `topology.toml`), calling
/// `sink` for every event as it happens; always tears down what it made.
pub fn run(
    lab_dir: &Path,
    scenario: &Scenario,
    opts: &RunOptions,
    sink: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    super::preflight()?;
    check_programs(scenario, opts)?;
    if let Some(why) = &scenario.kernel_only {
        let k = super::platform::Kernel::detect();
        if !k.esp || !k.sit {
            return Err(Error::Other(format!(
                "{} runs only where the kernel has ESP and sit (the kernel tier: mip4-lab run {} --vm): {why}",
                scenario.name, scenario.name
            )));
        }
    }
    // On the tier's guest as two machines, the lab itself (its commands,
    // the network's changes) runs beside the gateway, not on the MN's CPU.
    super::machines::pin_this_thread(super::machines::REST_CPU);
    let work = WorkDir::new(&scenario.name)?;
    let start = now();
    let topology = scenario
        .topology
        .clone()
        .unwrap_or_else(|| lab_dir.join("figure1.toml"));
    let lab = Lab::build_file(&topology)?;
    let mut r = Run {
        captures: Vec::new(),
        pingers: BTreeMap::new(),
        heartbeat: None,
        route_watch: None,
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

    /// A config file of `host` ([`Scenario::host_file`]).
    fn host_file(&self, host: &str, file: &str) -> PathBuf {
        let libreswan = self.opts.libreswan_root.is_some();
        self.scenario
            .host_file(&self.lab_dir, libreswan, host, file)
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
        // The TIA on the loopback device, as packaging/strongswan.d ships
        // it: a move then leaves it there (kernel-netlink; kernel-libipsec
        // puts it on its own TUN device whatever this says).
        cfg.extra_settings
            .push_str("    install_virtual_ip_on = lo\n");
        // The plugin's own level with the lab's log; its default (1) with
        // charon's defaults.
        let level = match cfg.log {
            CharonLog::Lab => "            loglevel = 2\n",
            CharonLog::Default => "",
        };
        cfg.extra_settings.push_str(&format!(
            "    plugins {{\n        mip4 {{\n            socket = {socket}\n{level}        }}\n    }}\n"
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

    /// One line of `pre.dat`/`post.dat`: a host's shell command, or a
    /// `lab::` verb dispatched to its function (one per verb, grouped by
    /// concern in scenario/verbs_*.rs).
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
        let a = Args::new(&command, &l.file);
        match a.arg(0)? {
            "attach" | "move" => self.attach(&a)?,
            "attach-also" | "detach" => self.attach_also(&a)?,
            "mac" => self.mac(&a)?,
            "charon" => self.start_charon(&a)?,
            "charon-kill" => self.kill_charon(&a)?,
            "terminate" => self.terminate(&a)?,
            "ike-soak" => self.soak_ike(&a)?,
            "rss" => self.rss(&a)?,
            "memory" => self.memory(&a)?,
            "throughput" => self.throughput(&a)?,
            "initiate" => self.initiate(&a)?,
            "user-initiate" => self.user_initiate(&a)?,
            "vpn-up" => self.vpn_up(&a)?,
            "wait-sa" => self.wait_sa(&a)?,
            "wait-log" => self.wait_log(&a)?,
            "spawn" => self.spawn(&a)?,
            "stop" => self.stop(&a)?,
            "forge-tnc" => self.forge_tnc(&a)?,
            "forged" => self.forged(&a)?,
            "pinger" => self.pinger(&a)?,
            "wait-reply" => self.wait_reply(&a)?,
            "timed-move" => self.timed_move(&a)?,
            "rtt" => self.rtt(&a)?,
            "xfrm-cost" => self.xfrm_cost(&a)?,
            "ipip-send" => self.ipip_send(&a)?,
            "dsmip-register" => self.dsmip_register(&a)?,
            "sit-up" => self.sit_up(&a)?,
            "ipv6-send" => self.ipv6_send(&a)?,
            "pmtu" => self.pmtu(&a)?,
            "figure" => self.figure(&a)?,
            "delta" => self.delta(&a)?,
            "ratio" => self.ratio(&a)?,
            "secret" => self.secret(&a)?,
            "render" => self.render(&a)?,
            "subscribe" => self.subscribe(&a)?,
            "wait-event" => self.wait_event(&a)?,
            "binding" => self.wait_binding(&a)?,
            "tcp-stream" => self.tcp_stream(&a)?,
            "wait-stream" => self.wait_stream(&a)?,
            "stream-gap" => self.stream_gap(&a)?,
            "stream-pause" => self.stream_pause(&a, true)?,
            "stream-resume" => self.stream_pause(&a, false)?,
            "status-figure" => self.status_figure(&a)?,
            "ping-lost" => self.ping_lost(&a)?,
            "set" => self.set_var(&a)?,
            "mark" => self.mark(&a)?,
            "kill" => self.kill(a.arg(1)?, a.words.get(2).copied().unwrap_or("killed"))?,
            "hold" => verbs_faults::hold(a.arg(1)?)?,
            "snapshot" => self.snapshot(a.arg(1)?, a.arg(2)?)?,
            "same-as" => self.expect_same(a.arg(1)?, a.arg(2)?, a.secs(3, 10)?)?,
            "capture" => self.capture(a.arg(1)?, a.arg(2)?, a.arg(3)?)?,
            "loss" => self.loss(a.arg(1)?, a.arg(2)?)?,
            "delay" => self.delay(&a)?,
            "seed" => self.seed(a.arg(1)?)?,
            "random" => self.random(a.arg(1)?, a.arg(2)?, a.arg(3)?)?,
            "pick" => self.pick(a.arg(1)?, a.words.get(2..).unwrap_or_default())?,
            "repeat" => self.repeat(a.arg(1)?, a.arg(2)?, Path::new(a.file))?,
            "var" => self.var_from(a.arg(1)?, a.arg(2)?, a.arg(3)?)?,
            other => return Err(Error::Other(format!("unknown lab verb `{other}`"))),
        }
        Ok(())
    }

    /// An evaltest `lab::` line: the lab's own view as one line of text.
    fn query(&self, command: &str) -> Result<String> {
        let a = Args::new(command, "");
        match a.arg(0)? {
            // lab::binding SOCKET HOA: the HA's binding for HOA.
            "binding" => {
                let b = daemon::binding(Path::new(a.arg(1)?), a.arg(2)?)?;
                Ok(daemon::describe_binding(b.as_ref()))
            }
            // lab::tcp-stream NAME: the stream's counters.
            "tcp-stream" => Ok(self
                .streams
                .get(a.arg(1)?)
                .ok_or_else(|| Error::Other(format!("no stream `{}`", a.arg(1).unwrap_or(""))))?
                .state()
                .describe()),
            // lab::events HOST/PROC EVENT [field=value ...] [after=EV]:
            // how many (with `after`, stamped at or after lab event EV).
            "events" => {
                let sub = self.subscriptions.get(a.arg(1)?).ok_or_else(|| {
                    Error::Other(format!("no subscription `{}`", a.arg(1).unwrap_or("")))
                })?;
                let mut after = 0.0;
                let mut conds = Vec::new();
                for (k, v) in a
                    .words
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
                        e["event"] == a.arg(2).unwrap_or("")
                            && daemon::matches(e, &conds)
                            && daemon::wall(e).is_some_and(|t| t >= after)
                    })
                    .count();
                Ok(format!("count={n}"))
            }
            // lab::figure NAME: a figure of this run, `NAME=value`.
            "figure" => {
                let v = self.figures.get(a.arg(1)?).ok_or_else(|| {
                    Error::Other(format!("no figure `{}`", a.arg(1).unwrap_or("")))
                })?;
                Ok(format!("{}={v}", a.arg(1)?))
            }
            "same-as" => self.same_as(a.arg(1)?, a.arg(2)?),
            "clear-text" => self.clear_text(a.arg(1)?, a.arg(2)?),
            "ipv6-in-ipv4" => self.ipv6_in_ipv4(&a),
            "largest" => self.largest(&a),
            other => Err(Error::Other(format!("unknown lab query `{other}`"))),
        }
    }

    fn check(&mut self, l: &Line) -> Check {
        let command = self.subst(&l.command);
        let (pattern, expect) = l.expect.clone().expect("evaltest line");
        let pattern = self.subst(&pattern);
        let re = regex::Regex::new(&pattern).ok();
        let last = std::cell::RefCell::new(String::new());
        let probe = |r: &Run| -> bool {
            let out = if l.host == "lab" {
                r.query(&command)
            } else {
                r.host_sh(&l.host, &command)
            }
            .unwrap_or_else(|e| e.to_string());
            let hit = re.as_ref().is_some_and(|re| re.is_match(&out));
            *last.borrow_mut() = out;
            hit
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
            out: (!ok).then(|| last.take().trim().to_string()),
        };
        self.emit(
            "check",
            &l.host,
            serde_json::to_value(&c).unwrap_or_default(),
        );
        c
    }
}

/// The words of a `lab::` line; `words[0]` is the verb.
struct Args<'a> {
    command: &'a str,
    words: Vec<&'a str>,
    /// The file of the line (`lab::repeat` reads files beside it).
    file: &'a str,
}

impl<'a> Args<'a> {
    fn new(command: &'a str, file: &'a str) -> Args<'a> {
        Args {
            command,
            words: command.split_whitespace().collect(),
            file,
        }
    }

    fn arg(&self, i: usize) -> Result<&'a str> {
        self.words
            .get(i)
            .copied()
            .ok_or_else(|| Error::Other(format!("`lab::{}`: argument {i} missing", self.command)))
    }

    /// Word `i` as an IPv4 address.
    fn ipv4(&self, i: usize) -> Result<std::net::Ipv4Addr> {
        let w = self.arg(i)?;
        w.parse()
            .map_err(|_| Error::Other(format!("`{w}` is not an IPv4 address")))
    }

    /// Word `i` as a number of seconds, `default` if absent.
    fn secs(&self, i: usize, default: u64) -> Result<Duration> {
        match self.words.get(i) {
            None => Ok(Duration::from_secs(default)),
            Some(s) => s
                .parse()
                .map(Duration::from_secs)
                .map_err(|_| Error::Other(format!("`{s}` is not a number of seconds"))),
        }
    }
}

/// Runs `sh -c` in no namespace (for `which` style checks by the binary).
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
