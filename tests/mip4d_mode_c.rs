//! mip4d in mode 'c' (RFC 5266 §3.1.1) end to end, as real processes in
//! network namespaces this test makes (names unique per process, removed
//! on drop even when an assertion fails):
//!
//! ```text
//!   cn 10.3.0.2 ── router ── 10.0.0.2 ha (mip4-ha, virtual home 10.1.0.0/24)
//!                  │    │
//!       10.20.1.0/24    10.20.2.0/24      (trusted subnets)
//!                  │    │
//!              mn0 └─mn─┘ mn1   (mip4d, home address 10.1.0.5)
//! ```
//!
//! The MN registers its co-located address on subnet 1; the HA's binding
//! cache shows it; the correspondent pings the home address through the
//! tunnel; the MN moves to subnet 2 (old address removed, new one added);
//! it re-registers, the HA's binding follows and the ping resumes.
//! Every wait polls a condition with a deadline. Needs root.

mod mip4d_support;

use std::time::Duration;

use mip4::lab::netns;
use mip4::lab::wait;
use mip4d_support::{first, Lab};
use serde_json::Value;

const HOA: &str = "10.1.0.5";
const HA: &str = "10.0.0.2";
const COA1: &str = "10.20.1.5";
const COA2: &str = "10.20.2.5";
const CN: &str = "10.3.0.2";

fn build() -> Lab {
    let mut lab = Lab::new("mode-c", HOA, &["r"]);
    let (router, ha, mn, cn) = (lab.host("r"), &lab.ha, &lab.mn, &lab.cn);
    netns::veth(router, "rha", ha, "ha0").unwrap();
    netns::veth(router, "rcn", cn, "cn0").unwrap();
    netns::veth(router, "r1", mn, "mn0").unwrap();
    netns::veth(router, "r2", mn, "mn1").unwrap();
    router.enable_forwarding().unwrap();
    router.add_addr("rha", "10.0.0.1/30").unwrap();
    router.add_addr("rcn", "10.3.0.1/24").unwrap();
    router.add_addr("r1", "10.20.1.1/24").unwrap();
    router.add_addr("r2", "10.20.2.1/24").unwrap();
    // The home network lives behind the HA (virtual home network).
    router.route("10.1.0.0/24", HA).unwrap();
    ha.add_addr("ha0", "10.0.0.2/30").unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.0.0.1").unwrap();
    cn.add_addr("cn0", "10.3.0.2/24").unwrap();
    cn.route("default", "10.3.0.1").unwrap();
    // The MN: attached to subnet 1; subnet 2's gateway is known (as a
    // DHCP client would install it with the address), at a worse metric.
    mn.add_addr("mn0", &format!("{COA1}/24")).unwrap();
    mn.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.20.1.1",
        "dev",
        "mn0",
        "metric",
        "100",
    ])
    .unwrap();
    mn.ip(&[
        "route",
        "add",
        "default",
        "via",
        "10.20.2.1",
        "dev",
        "mn1",
        "onlink",
        "metric",
        "200",
    ])
    .unwrap();
    lab.start_ha();
    lab.start_mip4d("mip4d.log");
    lab
}

fn ping(lab: &Lab) -> bool {
    lab.cn.ping_once(CN, HOA, 500)
}

#[test]
fn mode_c_registers_tunnels_and_follows_a_move_between_trusted_subnets() {
    let lab = build();
    let timeout = Duration::from_secs(20);

    // Registration of the co-located address on subnet 1.
    let st = lab.must(wait::until(timeout, "mip4d registered on subnet 1", || {
        lab.mn_registered(COA1)
    }));
    assert_eq!(st["mode"], "c");
    assert_eq!(st["home_address"], HOA);
    assert_eq!(st["home_agent"], HA);
    assert_eq!(st["tunnel_backend"], "userspace");
    assert!(st["binding_expires_in"].as_u64().unwrap() > 0);
    assert!(st["registration"]["registrations"].as_u64().unwrap() >= 1);
    lab.must(wait::until(
        timeout,
        "HA binding = subnet 1 address",
        || (lab.ha_care_of()? == COA1).then_some(()),
    ));
    // The home address is on the tunnel device, with the rule for it.
    let addrs = lab.mn.addrs("mip4mn0").unwrap();
    assert_eq!(addrs, vec![HOA.to_string()]);
    let rules = lab.mn.ip(&["rule", "show"]).unwrap();
    assert!(rules.contains(&format!("from {HOA} lookup 434")), "{rules}");

    // Reverse tunnelling (RFC 3024) on the MN: traffic from the home
    // address is routed into the tunnel device and leaves encapsulated
    // (outer source the care-of address) without a send error.
    let _ = lab.mn.ping_once(HOA, CN, 200);
    lab.must(wait::until(
        timeout,
        "datagram from the home address encapsulated",
        || {
            let s = lab.mn_status()?;
            let dp = &s["data_plane"];
            (dp["encapsulated"].as_u64()? >= 1 && dp["send_errors"] == 0).then_some(())
        },
    ));

    // The correspondent reaches the home address through the tunnel.
    lab.must(wait::until(
        timeout,
        "ping cn -> home address via subnet 1",
        || ping(&lab).then_some(()),
    ));

    // Move: break (old address and its route gone), then make.
    let events = lab.subscribe();
    lab.mn.del_addr("mn0", &format!("{COA1}/24")).unwrap();
    let _ = lab.mn.ip(&["route", "del", "default", "dev", "mn0"]);
    lab.mn.add_addr("mn1", &format!("{COA2}/24")).unwrap();

    lab.must(wait::until(timeout, "mip4d registered on subnet 2", || {
        lab.mn_registered(COA2)
    }));
    lab.must(wait::until(
        timeout,
        "HA binding = subnet 2 address",
        || (lab.ha_care_of()? == COA2).then_some(()),
    ));
    lab.must(wait::until(
        timeout,
        "ping cn -> home address via subnet 2",
        || ping(&lab).then_some(()),
    ));

    // The events tell the move in order, on one monotonic clock.
    let ev = lab.must(wait::until(
        timeout,
        "registration_accepted event for subnet 2",
        || {
            let ev = events.lock().unwrap().clone();
            first(&ev, |e| {
                e["event"] == "registration_accepted" && e["care_of"] == COA2
            })?;
            Some(ev)
        },
    ));
    let removed = first(&ev, |e| {
        e["event"] == "address_removed" && e["address"] == COA1
    })
    .expect("address_removed event");
    let added = first(&ev, |e| {
        e["event"] == "address_added" && e["address"] == COA2
    })
    .expect("address_added event");
    let sent = first(&ev, |e| {
        e["event"] == "request_sent" && e["care_of"] == COA2 && e["purpose"] == "register"
    })
    .expect("request_sent event");
    let accepted = first(&ev, |e| {
        e["event"] == "registration_accepted" && e["care_of"] == COA2
    })
    .unwrap();
    let t = |e: &Value| e["mono_ns"].as_u64().unwrap();
    assert!(t(removed) <= t(added) && t(added) <= t(sent) && t(sent) <= t(accepted));
    assert!(first(&ev, |e| e["event"] == "state"
        && e["to"]["state"] == "registered")
    .is_some());
    eprintln!(
        "address added -> registration accepted: {:.3} ms",
        (t(accepted) - t(added)) as f64 / 1e6
    );
}

#[test]
fn sigterm_deregisters_and_removes_what_mip4d_installed() {
    let mut lab = build();
    let timeout = Duration::from_secs(20);
    lab.must(wait::until(
        timeout,
        "HA binding = subnet 1 address",
        || (lab.ha_care_of()? == COA1).then_some(()),
    ));
    // mip4d deregisters a binding it knows of: wait until the reply has
    // reached it too, not only until the HA has accepted.
    lab.must(wait::until(timeout, "mip4d registered on subnet 1", || {
        lab.mn_registered(COA1).map(|_| ())
    }));
    // Stop mip4d (the first process) with SIGTERM and wait for its exit.
    let mut mn_proc = lab.procs.remove(0);
    mn_proc.stop(Duration::from_secs(10));
    lab.must(wait::until(timeout, "HA binding removed", || {
        let b = lab.ha_bindings()?;
        (!b.iter().any(|b| b["home_address"] == HOA)).then_some(())
    }));
    let rules = lab.mn.ip(&["rule", "show"]).unwrap();
    assert!(!rules.contains(HOA), "rule left behind: {rules}");
    let table = lab
        .mn
        .ip(&["route", "show", "table", "434"])
        .unwrap_or_default();
    assert!(table.trim().is_empty(), "routes left behind: {table}");
    assert!(
        lab.mn.addrs("mip4mn0").is_err() || lab.mn.addrs("mip4mn0").unwrap().is_empty(),
        "tunnel device or home address left behind"
    );
    assert!(!lab.dir.path().join("mip4d.sock").exists());
}

/// How many lines of `ip rule show` in `ns` send the home address to
/// mip4d's table.
fn home_rules(ns: &mip4::lab::netns::Netns) -> usize {
    let rules = ns.ip(&["rule", "show"]).unwrap();
    rules
        .lines()
        .filter(|l| l.contains(&format!("from {HOA} lookup 434")))
        .count()
}

/// mip4d killed with SIGKILL while registered leaves its rule
/// (and, killed while it held traffic, a blackhole in its table). Started
/// again, it removes them before it installs anything: it registers, the
/// rule is there once and the table routes into the tunnel. SIGHUP is
/// logged and ignored (it used to kill mip4d without its cleanup). A
/// clean stop leaves nothing.
#[test]
fn a_killed_mip4d_starts_again_cleanly_and_survives_sighup() {
    let mut lab = build();
    let timeout = Duration::from_secs(20);
    lab.must(wait::until(timeout, "mip4d registered on subnet 1", || {
        lab.mn_registered(COA1).map(|_| ())
    }));
    let mut killed = lab.procs.remove(0);
    killed.kill();
    assert_eq!(home_rules(&lab.mn), 1, "SIGKILL leaves the rule");
    // What an instance killed while holding traffic leaves in its table
    // (its route into the tunnel went with the TUN device).
    lab.mn
        .ip(&["route", "replace", "blackhole", "default", "table", "434"])
        .unwrap();

    let mut c = lab.mn.command(env!("CARGO_BIN_EXE_mip4d"));
    c.arg("--config")
        .arg(lab.config("mip4d.conf"))
        .env("RUST_LOG", "debug");
    let log = lab.dir.path().join("mip4d-2.log");
    let mut again = lab.mn.spawn("mip4d", c, &log).unwrap();
    lab.must(wait::until(timeout, "mip4d registered again", || {
        lab.mn_registered(COA1).map(|_| ())
    }));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("left by an earlier instance of mip4d: removed"),
        "{text}"
    );
    assert_eq!(home_rules(&lab.mn), 1, "nothing twice");
    let table = lab.mn.ip(&["route", "show", "table", "434"]).unwrap();
    assert!(
        table.contains("dev mip4mn0") && !table.contains("blackhole"),
        "{table}"
    );
    lab.must(wait::until(timeout, "ping cn -> home address", || {
        ping(&lab).then_some(())
    }));

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(again.pid()),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    lab.must(wait::until(timeout, "SIGHUP logged", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("SIGHUP ignored"))
    }));
    assert!(again.is_running(), "SIGHUP did not stop mip4d");
    assert!(lab.mn_registered(COA1).is_some());

    again.stop(Duration::from_secs(10));
    assert_eq!(home_rules(&lab.mn), 0, "rule left after a clean stop");
    let table = lab
        .mn
        .ip(&["route", "show", "table", "434"])
        .unwrap_or_default();
    assert!(table.trim().is_empty(), "routes left behind: {table}");
}
