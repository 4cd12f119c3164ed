//! mip4d's trusted-network detection (RFC 5266 §3.4, RFC 5265) end to
//! end, as real processes in network namespaces this test makes (names
//! unique per process, removed on drop even when an assertion fails):
//!
//! ```text
//!   cn 10.3.0.2 ── router ── 10.0.0.2 ha (mip4-ha, trusted_networks 10.20.0.0/16)
//!                  │  │  └── forger 10.9.0.2 ── 203.0.113.0/24 (on path, answers
//!                  │  │                          port 434 itself with a TNC it
//!       10.20.1.0/24  198.51.100.0/24            cannot sign)
//!       (trusted)     (untrusted; the i-HA is reachable from it)
//!              mn0 └─mn─┘ mn1 ─────────── mn2
//! ```
//!
//! 1. On the trusted subnet the probe is answered with an authenticated
//!    TNC: mode 'c', the HA's binding names the physical address, the
//!    correspondent reaches the home address.
//! 2. On the untrusted subnet the probe reaches the i-HA, which drops it
//!    silently (RFC 5265 §4.3): untrusted after the configured
//!    retransmissions; the home address's traffic stays held (blackhole).
//! 3. Behind the forger, which answers every probe with an unsigned and a
//!    wrongly signed TNC reply: untrusted, the forged replies counted,
//!    never 'trusted'.
//! 4. Back inside: trusted again, traffic released, ping works.
//!
//! And with a home agent without trusted networks, which accepts the
//! probe without TNC: mip4d deregisters the binding it made at once.
//!
//! Every wait polls a condition with a deadline. Needs root.

mod mip4d_support;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mip4::auth::{sign_reply, SecurityAssociation};
use mip4::lab::netns::{self, Netns, Process};
use mip4::lab::wait;
use mip4::wire::{Extension, ReplyCode, ReplyRepr, RequestRepr};
use serde_json::Value;

const KEY: &str = "00112233445566778899aabbccddeeff";
const HOA: &str = "10.1.0.5";
const HA: &str = "10.0.0.2";
const IN1: &str = "10.20.1.5";
const IN2: &str = "10.20.1.6";
const EXT: &str = "198.51.100.5";
const FORGED: &str = "203.0.113.5";
const CN: &str = "10.3.0.2";

struct Forger {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Forger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Lab {
    // Drop order: the forger's thread and the processes first, then the
    // namespaces.
    forger: Forger,
    _procs: Vec<Process>,
    mn: Netns,
    cn: Netns,
    _ha: Netns,
    _fz: Netns,
    _router: Netns,
    dir: tempfile::TempDir,
}

/// `trusted`: the i-HA's trusted networks (RFC 5265 §4.3); `None` makes
/// a plain RFC 5944 home agent, which serves every source without TNC.
fn ha_conf(dir: &Path, trusted: Option<&str>) -> PathBuf {
    let p = dir.join("mip4-ha.conf");
    let trusted = trusted.map_or(String::new(), |t| format!("trusted_networks = [\"{t}\"]"));
    std::fs::write(
        &p,
        format!(
            r#"listen = "0.0.0.0:434"
home_agent = "{HA}"
control_socket = "{sock}"
max_lifetime = 120
tunnel_backend = "userspace"
udp_tunnelling = false
{trusted}

[[home_network]]
prefix = "10.1.0.0/24"
mode = "virtual"

[[mobile_node]]
home_address = "{HOA}"
spi = 4096
key = "{KEY}"
"#,
            sock = dir.join("ha.sock").display()
        ),
    )
    .unwrap();
    // It holds a key: private, as mip4-ha, mip4-fa and mip4d require.
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

fn mn_conf(dir: &Path) -> PathBuf {
    let p = dir.join("mip4d.conf");
    std::fs::write(
        &p,
        format!(
            r#"home_address = "{HOA}"
home_network = "10.1.0.0/24"
home_agent = "{HA}"
spi = 4096
key = "{KEY}"
interfaces = ["mn0", "mn1", "mn2"]
lifetime = 120
tunnel_backend = "userspace"
control_socket = "{sock}"

[detect]
timeout_ms = 1000
retries = 1
backoff_cap_ms = 1000

[vpn]
plugin_socket = ""
"#,
            sock = dir.join("mip4d.sock").display(),
        ),
    )
    .unwrap();
    // It holds a key: private, as mip4-ha, mip4-fa and mip4d require.
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

/// The on-path host: every registration request that passes it is
/// redirected (nftables) to this socket instead of the i-HA, and answered
/// with TNC twice, unsigned and signed with a key of its own; conntrack
/// makes the answers come from the i-HA's address and port.
fn forger(fz: &Netns) -> Forger {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let name = fz.name().to_string();
    let (s, a) = (stop.clone(), answered.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        netns::enter(&name).unwrap();
        let sock = UdpSocket::bind("0.0.0.0:434").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let guess = SecurityAssociation::hmac_md5(4096, b"not the MN's key").unwrap();
        let mut buf = [0u8; 2048];
        while !s.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(req) = RequestRepr::parse_bytes(&buf[..n]) else {
                continue;
            };
            let reply = ReplyRepr {
                code: ReplyCode::ACCEPTED,
                lifetime: req.lifetime,
                home_address: req.home_address,
                home_agent: req.home_agent,
                identification: req.identification,
                extensions: vec![Extension::TrustedNetworksConfigured],
            };
            let _ = sock.send_to(&reply.to_bytes(), from);
            let _ = sock.send_to(&sign_reply(&reply, &guess), from);
            a.fetch_add(1, Ordering::SeqCst);
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("forger socket bound");
    Forger {
        stop,
        answered,
        thread: Some(thread),
    }
}

fn build() -> Lab {
    build_with(Some("10.20.0.0/16"))
}

fn build_with(trusted: Option<&str>) -> Lab {
    let prefix = netns::unique_prefix();
    let router = Netns::new(&prefix, "r").unwrap();
    let ha = Netns::new(&prefix, "ha").unwrap();
    let mn = Netns::new(&prefix, "mn").unwrap();
    let cn = Netns::new(&prefix, "cn").unwrap();
    let fz = Netns::new(&prefix, "fz").unwrap();
    netns::veth(&router, "rha", &ha, "ha0").unwrap();
    netns::veth(&router, "rcn", &cn, "cn0").unwrap();
    netns::veth(&router, "r1", &mn, "mn0").unwrap();
    netns::veth(&router, "r2", &mn, "mn1").unwrap();
    netns::veth(&router, "rfz", &fz, "fz0").unwrap();
    netns::veth(&fz, "fz1", &mn, "mn2").unwrap();
    router.enable_forwarding().unwrap();
    router.add_addr("rha", "10.0.0.1/30").unwrap();
    router.add_addr("rcn", "10.3.0.1/24").unwrap();
    router.add_addr("r1", "10.20.1.1/24").unwrap();
    // A firewall that lets the untrusted network reach the i-HA.
    router.add_addr("r2", "198.51.100.1/24").unwrap();
    router.add_addr("rfz", "10.9.0.1/30").unwrap();
    router.route("10.1.0.0/24", HA).unwrap();
    router.route("203.0.113.0/24", "10.9.0.2").unwrap();
    ha.add_addr("ha0", "10.0.0.2/30").unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.0.0.1").unwrap();
    cn.add_addr("cn0", "10.3.0.2/24").unwrap();
    cn.route("default", "10.3.0.1").unwrap();
    fz.add_addr("fz0", "10.9.0.2/30").unwrap();
    fz.add_addr("fz1", "203.0.113.1/24").unwrap();
    fz.route("default", "10.9.0.1").unwrap();
    fz.enable_forwarding().unwrap();
    fz.exec(
        "nft",
        &[
            "add table ip forger; add chain ip forger pre { type nat hook prerouting priority -100 ; } ; add rule ip forger pre udp dport 434 redirect to :434",
        ],
    )
    .unwrap();
    let forger = forger(&fz);
    // The MN's gateways, as DHCP would install them with each address.
    for (gw, dev, metric) in [
        ("10.20.1.1", "mn0", "100"),
        ("198.51.100.1", "mn1", "200"),
        ("203.0.113.1", "mn2", "300"),
    ] {
        mn.ip(&[
            "route", "add", "default", "via", gw, "dev", dev, "onlink", "metric", metric,
        ])
        .unwrap();
    }
    mn.add_addr("mn0", &format!("{IN1}/24")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut c = ha.command(env!("CARGO_BIN_EXE_mip4-ha"));
    c.arg("--config")
        .arg(ha_conf(dir.path(), trusted))
        .env("RUST_LOG", "debug");
    let ha_proc = ha.spawn("mip4-ha", c, &dir.path().join("ha.log")).unwrap();
    let mut c = mn.command(env!("CARGO_BIN_EXE_mip4d"));
    c.arg("--config")
        .arg(mn_conf(dir.path()))
        .env("RUST_LOG", "debug");
    let mn_proc = mn.spawn("mip4d", c, &dir.path().join("mip4d.log")).unwrap();
    Lab {
        forger,
        _procs: vec![mn_proc, ha_proc],
        mn,
        cn,
        _ha: ha,
        _fz: fz,
        _router: router,
        dir,
    }
}

impl Lab {
    fn ctl(&self, socket: &str, args: &[&str]) -> Option<Value> {
        mip4d_support::ctl(self.dir.path(), socket, args)
    }

    fn ha_binding(&self) -> Option<String> {
        self.ctl("ha.sock", &["bindings"])?
            .as_array()?
            .iter()
            .find(|b| b["home_address"] == HOA)
            .and_then(|b| b["care_of_address"].as_str().map(str::to_string))
    }

    /// A counter of the HA's, wherever it sits in `mip4ctl counters`.
    fn ha_counter(&self, name: &str) -> Option<u64> {
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

    fn mn_status(&self) -> Option<Value> {
        self.ctl("mip4d.sock", &["status"])
    }

    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- mip4d.log\n{}\n--- ha.log\n{}",
            read("mip4d.log"),
            read("ha.log")
        )
    }

    /// Subscribes to mip4d's events; the lines land in the returned list.
    fn subscribe(&self) -> Arc<Mutex<Vec<Value>>> {
        mip4d_support::subscribe(&self.dir.path().join("mip4d.sock"))
    }

    fn table(&self) -> String {
        self.mn
            .ip(&["route", "show", "table", "434"])
            .unwrap_or_default()
    }
}

fn must<T>(lab: &Lab, r: mip4::lab::Result<(T, std::time::Instant)>) -> T {
    match r {
        Ok((v, _)) => v,
        Err(e) => panic!("{e}\n{}", lab.logs()),
    }
}

use mip4d_support::verdict;

#[test]
fn only_an_authenticated_tnc_makes_the_mn_decide_it_is_inside() {
    let lab = build();
    let timeout = Duration::from_secs(20);
    let events = lab.subscribe();

    // 1. Trusted subnet: probe answered with TNC by the i-HA.
    let st = must(
        &lab,
        wait::until(timeout, "mode c on the trusted subnet", || {
            lab.mn_status()
                .filter(|s| s["state"] == "registered" && s["care_of_address"] == IN1)
        }),
    );
    assert_eq!(st["mode"], "c");
    let det = &st["detection"];
    assert_eq!(det["counters"]["trusted"], 1, "{st}");
    assert_eq!(
        st["registration"]["registrations"], 1,
        "the probe is the registration: {st}"
    );
    assert!(st["probe_sockets"]["sent"].as_u64().unwrap() >= 1);
    must(
        &lab,
        wait::until(timeout, "HA binding = trusted address", || {
            (lab.ha_binding()? == IN1).then_some(())
        }),
    );
    must(
        &lab,
        wait::until(timeout, "ping cn -> home address", || {
            lab.cn.ping_once(CN, HOA, 500).then_some(())
        }),
    );
    let tnc_replies = lab.ha_counter("tnc_replies").expect("HA counters");
    assert!(tnc_replies >= 1);

    // 2. Untrusted subnet; the i-HA is reachable but stays silent.
    let dropped_before = lab.ha_counter("dropped_untrusted_source").unwrap();
    lab.mn.del_addr("mn0", &format!("{IN1}/24")).unwrap();
    lab.mn.add_addr("mn1", &format!("{EXT}/24")).unwrap();
    let v = must(
        &lab,
        wait::until(timeout, "verdict for the untrusted subnet", || {
            verdict(&events, EXT)
        }),
    );
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["cause"], "no_reply", "{v}");
    assert_eq!(v["attempts"], 2, "{v}");
    // The probes did reach the i-HA, which dropped them (RFC 5265 §4.3).
    let dropped = lab.ha_counter("dropped_untrusted_source").unwrap();
    assert!(dropped >= dropped_before + 2, "{dropped} {dropped_before}");
    let st = lab.mn_status().unwrap();
    assert_ne!(st["mode"], "c", "{st}");
    assert_eq!(st["detection"]["traffic_held"], true, "{st}");
    let table = lab.table();
    assert!(
        table.contains("blackhole"),
        "home address traffic held: {table}"
    );
    assert_eq!(
        lab.ha_binding().as_deref(),
        Some(IN1),
        "nothing registered from outside"
    );

    // 3. Behind the on-path forger.
    lab.mn.del_addr("mn1", &format!("{EXT}/24")).unwrap();
    lab.mn.add_addr("mn2", &format!("{FORGED}/24")).unwrap();
    let v = must(
        &lab,
        wait::until(timeout, "verdict behind the forger", || {
            verdict(&events, FORGED)
        }),
    );
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["cause"], "no_reply", "{v}");
    assert!(v["forged"].as_u64().unwrap() >= 2, "{v}");
    assert!(lab.forger.answered.load(Ordering::SeqCst) >= 1);
    let st = lab.mn_status().unwrap();
    assert!(
        st["detection"]["counters"]["forged_replies"]
            .as_u64()
            .unwrap()
            >= 2,
        "{st}"
    );
    assert_eq!(st["detection"]["counters"]["trusted"], 1, "{st}");
    assert_ne!(st["mode"], "c");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "probe_reply_dropped"));

    // 4. Back inside: trusted again, released, reachable.
    lab.mn.del_addr("mn2", &format!("{FORGED}/24")).unwrap();
    // DHCP-style: the address first, its default route after (the
    // kernel flushed the old one with mn0's last address).
    lab.mn.add_addr("mn0", &format!("{IN2}/24")).unwrap();
    lab.mn
        .ip(&[
            "route",
            "replace",
            "default",
            "via",
            "10.20.1.1",
            "dev",
            "mn0",
            "metric",
            "100",
        ])
        .unwrap();
    let v = must(
        &lab,
        wait::until(timeout, "verdict back inside", || verdict(&events, IN2)),
    );
    assert_eq!(v["verdict"], "trusted", "{v}");
    assert_eq!(v["cause"], "tnc_reply", "{v}");
    must(
        &lab,
        wait::until(timeout, "released and registered", || {
            lab.mn_status().filter(|s| {
                s["state"] == "registered"
                    && s["care_of_address"] == IN2
                    && s["detection"]["traffic_held"] == false
            })
        }),
    );
    assert!(!lab.table().contains("blackhole"), "{}", lab.table());
    must(
        &lab,
        wait::until(timeout, "ping cn -> home address again", || {
            lab.cn.ping_once(CN, HOA, 500).then_some(())
        }),
    );

    // Never 'trusted' for an untrusted attachment, in any event.
    let ev = events.lock().unwrap().clone();
    for e in &ev {
        if e["event"] == "trust_verdict" && (e["address"] == EXT || e["address"] == FORGED) {
            assert_eq!(e["verdict"], "untrusted", "{e}");
        }
        if e["event"] == "mode_changed" && e["to"] == "c" {
            assert!(!e["reason"].as_str().unwrap().contains(EXT), "{e}");
            assert!(!e["reason"].as_str().unwrap().contains(FORGED), "{e}");
        }
    }
    let held = ev.iter().position(|e| e["event"] == "traffic_held");
    let released = ev.iter().rposition(|e| e["event"] == "traffic_released");
    assert!(held.is_some() && released > held, "held, then released");
}

/// A home agent without trusted networks (a plain RFC 5944 HA, or an i-HA
/// that ignores RFC 5265 §4.3) accepts the probe without TNC and binds
/// the home address to the probed address, where home traffic would flow
/// outside any VPN. mip4d deregisters that binding at once, by the
/// probe's socket, and the HA holds no binding afterwards.
#[test]
fn a_binding_accepted_without_tnc_is_deregistered_at_once() {
    let lab = build_with(None);
    let timeout = Duration::from_secs(20);
    must(
        &lab,
        wait::until(
            timeout,
            "the probe of the first address accepted without TNC",
            || {
                lab.mn_status().filter(|s| {
                    s["detection"]["counters"]["accepted_without_tnc"]
                        .as_u64()
                        .is_some_and(|n| n >= 1)
                })
            },
        ),
    );
    must(
        &lab,
        wait::until(timeout, "the HA's binding deregistered", || {
            let gone = lab.ha_counter("deregistered")? >= 1 && lab.ha_binding().is_none();
            gone.then_some(())
        }),
    );
    let st = lab.mn_status().unwrap();
    assert_ne!(st["mode"], "c", "{st}");
    assert_eq!(st["detection"]["counters"]["trusted"], 0, "{st}");
    assert!(lab
        .logs()
        .contains("deregistering the i-HA's binding to an untrusted address"));
}
