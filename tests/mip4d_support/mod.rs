//! The harness of the mip4d namespace tests: a [`Lab`] of namespaces (the
//! MN, the correspondent, the HA and the hosts between them), the daemons
//! started from the configs in `configs/NAME/` (`${DIR}` is the lab's work
//! folder, `${KEY}` the MN-HA key), charons with the lab's swanctl.conf,
//! asking the daemons through mip4ctl and collecting mip4d's event stream.
//! Everything is torn down on drop, also when an assertion fails (the work
//! folder, with the logs, is kept then).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "../plugin_support/mod.rs"]
mod plugin_support;

use mip4::lab::charon::Charon;
use mip4::lab::forger::Forger;
use mip4::lab::netns::{unique_prefix, Netns, Process};
use mip4::lab::{wait, WorkDir};
use serde_json::Value;

/// The MN-HA key of every config in `configs/`.
pub const KEY: &str = "00112233445566778899aabbccddeeff";

/// One test's lab. Field order is teardown order: the forger and the
/// daemons, the charons, the namespaces, the work folder.
pub struct Lab {
    pub forger: Option<Forger>,
    /// mip4d is `procs[0]` once started (`start_mip4d`).
    pub procs: Vec<Process>,
    /// The MN's charon is `charons[0]` once started (`start_charons`).
    pub charons: Vec<Charon>,
    pub mn: Netns,
    pub cn: Netns,
    pub ha: Netns,
    /// The hosts between them (routers, the VPN gateway), by their names.
    between: Vec<(String, Netns)>,
    pub dir: WorkDir,
    configs: &'static str,
    home_address: &'static str,
    /// The MN charon's swanctl.conf (default: the lab's) and extra
    /// `charon { }` settings, for `start_charons`/`start_mn_charon`.
    pub mn_swanctl: PathBuf,
    pub mn_charon_settings: String,
}

impl Lab {
    /// Namespaces `mn`, `cn`, `ha` and each of `between` (unique names),
    /// a fresh work folder; the daemons will use `configs/CONFIGS/`.
    pub fn new(configs: &'static str, home_address: &'static str, between: &[&str]) -> Lab {
        let prefix = unique_prefix();
        let ns = |name: &str| Netns::new(&prefix, name).unwrap();
        Lab {
            forger: None,
            procs: Vec::new(),
            charons: Vec::new(),
            mn: ns("mn"),
            cn: ns("cn"),
            ha: ns("ha"),
            between: between.iter().map(|n| (n.to_string(), ns(n))).collect(),
            dir: WorkDir::new(&format!("mip4d-{configs}")).unwrap(),
            configs,
            home_address,
            mn_swanctl: lab_hosts().join("mn/swanctl.conf"),
            mn_charon_settings: String::new(),
        }
    }

    /// `configs/CONFIGS/FILE` itself (a file with nothing to fill in).
    pub fn config_file(&self, file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mip4d_support/configs")
            .join(self.configs)
            .join(file)
    }

    /// A host between the MN and the others, by the name given to `new`.
    pub fn host(&self, name: &str) -> &Netns {
        &self
            .between
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no host `{name}` in this lab"))
            .1
    }

    /// `configs/CONFIGS/FILE` with `${DIR}` and `${KEY}` filled in, written
    /// to the work folder readable by root only (it holds a key, and the
    /// daemons refuse a config others can read).
    pub fn config(&self, file: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/mip4d_support/configs")
            .join(self.configs)
            .join(file);
        let text = std::fs::read_to_string(&src)
            .unwrap_or_else(|e| panic!("{}: {e}", src.display()))
            .replace("${DIR}", &self.dir.path().display().to_string())
            .replace("${KEY}", KEY);
        let dst = self.dir.path().join(file);
        std::fs::write(&dst, text).unwrap();
        std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        dst
    }

    /// mip4-ha in `ha` with `mip4-ha.conf`, its log `ha.log`.
    pub fn start_ha(&mut self) {
        self.start_ha_with("mip4-ha.conf");
    }

    /// mip4-ha in `ha` with another config of `configs/CONFIGS/` (e.g. a
    /// home agent without trusted networks), its log `ha.log`.
    pub fn start_ha_with(&mut self, file: &str) {
        let mut c = self.ha.command(env!("CARGO_BIN_EXE_mip4-ha"));
        c.arg("--config")
            .arg(self.config(file))
            .env("RUST_LOG", "debug");
        let p = self.ha.spawn("mip4-ha", c, &self.dir.path().join("ha.log"));
        self.procs.push(p.unwrap());
    }

    /// mip4d in `mn` with `mip4d.conf`, logging to `log`, as `procs[0]`.
    pub fn start_mip4d(&mut self, log: &str) {
        self.start_mip4d_with("mip4d.conf", log);
    }

    /// mip4d with another config of `configs/CONFIGS/`, as `procs[0]`.
    pub fn start_mip4d_with(&mut self, file: &str, log: &str) {
        let mut c = self.mn.command(env!("CARGO_BIN_EXE_mip4d"));
        c.arg("--config")
            .arg(self.config(file))
            .env("RUST_LOG", "debug");
        let p = self.mn.spawn("mip4d", c, &self.dir.path().join(log));
        self.procs.insert(0, p.unwrap());
    }

    /// The gateway's charon in host `gateway` and the MN's (with the built
    /// plugin), each with the lab's swanctl.conf (lab/hosts/).
    pub fn start_charons(&mut self, gateway: &str) {
        let gw = Charon::start(
            self.host(gateway),
            &self.dir.path().join(gateway),
            &Default::default(),
        )
        .unwrap();
        gw.load_all(&lab_hosts().join("vpngw/swanctl.conf"))
            .unwrap();
        let mn = self.start_mn_charon("mn");
        self.charons = vec![mn, gw];
    }

    /// The MN's charon with the built plugin talking to mip4d's socket,
    /// its folder `tag` (`mn_swanctl`, `mn_charon_settings`).
    pub fn start_mn_charon(&self, tag: &str) -> Charon {
        let dir = self.dir.path();
        let mut cfg = plugin_support::charon_config(dir, &dir.join("plugin.sock"), "vpn");
        cfg.extra_settings.push_str(&self.mn_charon_settings);
        let c = Charon::start(&self.mn, &dir.join(tag), &cfg).unwrap();
        c.load_all(&self.mn_swanctl).unwrap();
        c
    }

    /// DHCP-style on the MN: `addr` (CIDR) on `ifname`, then the default
    /// route through `gateway` at `metric` (the kernel flushed the old
    /// one with the interface's last address).
    pub fn mn_attach(&self, ifname: &str, addr: &str, gateway: &str, metric: &str) {
        self.mn.add_addr(ifname, addr).unwrap();
        self.mn
            .ip(&[
                "route", "replace", "default", "via", gateway, "dev", ifname, "metric", metric,
            ])
            .unwrap();
    }

    pub fn mn_charon(&self) -> &Charon {
        &self.charons[0]
    }

    pub fn ctl(&self, socket: &str, args: &[&str]) -> Option<Value> {
        ctl(self.dir.path(), socket, args)
    }

    /// The HA's binding cache (None: the HA did not answer).
    pub fn ha_bindings(&self) -> Option<Vec<Value>> {
        self.ctl("ha.sock", &["bindings"])?.as_array().cloned()
    }

    /// The HA's binding for the home address.
    pub fn ha_binding(&self) -> Option<Value> {
        self.ha_bindings()?
            .into_iter()
            .find(|b| b["home_address"] == self.home_address)
    }

    /// The care-of address of the HA's binding for the home address.
    pub fn ha_care_of(&self) -> Option<String> {
        Some(self.ha_binding()?["care_of_address"].as_str()?.to_string())
    }

    /// A counter of the HA's, wherever it sits in `mip4ctl counters`.
    pub fn ha_counter(&self, name: &str) -> Option<u64> {
        fn find(v: &Value, name: &str) -> Option<u64> {
            match v {
                Value::Object(m) => m
                    .get(name)
                    .and_then(Value::as_u64)
                    .or_else(|| m.values().find_map(|v| find(v, name))),
                _ => None,
            }
        }
        find(&self.ctl("ha.sock", &["counters"])?, name)
    }

    pub fn mn_status(&self) -> Option<Value> {
        self.ctl("mip4d.sock", &["status"])
    }

    /// mip4d's status once it has registered `care_of`.
    pub fn mn_registered(&self, care_of: &str) -> Option<Value> {
        self.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == care_of)
    }

    /// Subscribes to mip4d's events; the lines land in the returned list.
    pub fn subscribe(&self) -> Arc<Mutex<Vec<Value>>> {
        subscribe(&self.dir.path().join("mip4d.sock"))
    }

    /// The MN's routing table 434 (the home address's).
    pub fn table(&self) -> String {
        self.mn
            .ip(&["route", "show", "table", "434"])
            .unwrap_or_default()
    }

    /// What a failed wait prints: the daemons' logs, the MN charon's last
    /// lines, both daemons' state and the MN's rules and routes.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        let charon = self
            .charons
            .first()
            .map(|c| tail(&c.log_text(), 60))
            .unwrap_or_default();
        format!(
            "--- mip4d.log\n{}\n--- ha.log\n{}\n--- mn charon.log (tail)\n{}\n--- mn status\n{}\n--- mn rules\n{}\n--- mn routes\n{}\n--- ha counters\n{}",
            read("mip4d.log"),
            read("ha.log"),
            charon,
            self.mn_status().unwrap_or_default(),
            self.mn.ip(&["rule"]).unwrap_or_default(),
            self.mn.ip(&["route", "show", "table", "all"]).unwrap_or_default(),
            self.ctl("ha.sock", &["counters"]).unwrap_or_default(),
        )
    }

    /// The value a wait found, or a panic with the wait's error and the
    /// lab's logs.
    pub fn must<T>(&self, r: mip4::lab::Result<(T, std::time::Instant)>) -> T {
        match r {
            Ok((v, _)) => v,
            Err(e) => panic!("{e}\n{}", self.logs()),
        }
    }
}

/// The lab's host configs (swanctl.conf of the MN and the VPN gateway).
fn lab_hosts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/hosts")
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The first event that satisfies `pred`.
pub fn first(events: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    events.iter().find(|e| pred(e))
}

/// `mip4ctl --socket DIR/SOCKET ARGS --json`; None when the daemon did not
/// answer or answered with an error.
pub fn ctl(dir: &Path, socket: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .arg("--socket")
        .arg(dir.join(socket))
        .args(args)
        .arg("--json")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Subscribes to mip4d's events on its control socket; the lines land in
/// the returned list.
pub fn subscribe(control_socket: &Path) -> Arc<Mutex<Vec<Value>>> {
    let (mut s, _) = wait::until(Duration::from_secs(10), "mip4d control socket", || {
        std::os::unix::net::UnixStream::connect(control_socket).ok()
    })
    .unwrap();
    s.write_all(b"{\"cmd\":\"events\"}\n").unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    events
}

/// The trust verdict mip4d reported for `address`, if any.
pub fn verdict(events: &Arc<Mutex<Vec<Value>>>, address: &str) -> Option<Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "trust_verdict" && e["address"] == address)
        .cloned()
}
