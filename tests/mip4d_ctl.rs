//! mip4ctl's operator commands against the real daemons (issue 12):
//! `probe`, `force`/`release`, `stats`, their `--json` answers and exit
//! codes. Namespaces this test makes (unique names, removed on drop):
//!
//! ```text
//!   ha 10.0.0.2 (mip4-ha, trusted_networks 10.20.0.0/16) ── router
//!                                                   │    │
//!                                   10.20.1.0/24 (trusted)  198.51.100.0/24
//!                                                   │    │   (untrusted; the
//!                                               mn0 └─mn─┘ mn1  i-HA drops its probes)
//! ```
//!
//! Needs root. Every wait polls a condition with a deadline.

mod mip4d_support;

use std::process::{Command, Output};
use std::time::Duration;

use mip4::lab::netns;
use mip4::lab::wait;
use mip4d_support::Lab;
use serde_json::Value;

const HOA: &str = "10.1.0.5";
const HA: &str = "10.0.0.2";
const IN1: &str = "10.20.1.5";
const EXT: &str = "198.51.100.5";

fn build(mip4d_conf: &str) -> Lab {
    let mut lab = Lab::new("ctl", HOA, &["r"]);
    let (router, ha, mn) = (lab.host("r"), &lab.ha, &lab.mn);
    netns::veth(router, "rha", ha, "ha0").unwrap();
    netns::veth(router, "r1", mn, "mn0").unwrap();
    netns::veth(router, "r2", mn, "mn1").unwrap();
    router.enable_forwarding().unwrap();
    router.add_addr("rha", "10.0.0.1/30").unwrap();
    router.add_addr("r1", "10.20.1.1/24").unwrap();
    router.add_addr("r2", "198.51.100.1/24").unwrap();
    router.route("10.1.0.0/24", HA).unwrap();
    ha.add_addr("ha0", "10.0.0.2/30").unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.0.0.1").unwrap();
    for (gw, dev, metric) in [("10.20.1.1", "mn0", "100"), ("198.51.100.1", "mn1", "200")] {
        mn.ip(&[
            "route", "add", "default", "via", gw, "dev", dev, "onlink", "metric", metric,
        ])
        .unwrap();
    }
    mn.add_addr("mn0", &format!("{IN1}/24")).unwrap();
    lab.start_ha();
    lab.start_mip4d_with(mip4d_conf, "mip4d.log");
    lab
}

/// mip4ctl against mip4d's socket, as an operator runs it.
fn mip4ctl(lab: &Lab, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .arg("--socket")
        .arg(lab.dir.path().join("mip4d.sock"))
        .args(args)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

fn stats(lab: &Lab) -> Value {
    json(&mip4ctl(lab, &["stats", "--json"]))
}

fn count(events: &std::sync::Mutex<Vec<Value>>, pred: impl Fn(&Value) -> bool) -> usize {
    events.lock().unwrap().iter().filter(|e| pred(e)).count()
}

#[test]
fn probe_force_release_and_stats_on_the_real_daemon() {
    let mut lab = build("mip4d.conf");
    let t = Duration::from_secs(20);
    let events = lab.subscribe();
    lab.must(wait::until(t, "mode c on the trusted subnet", || {
        lab.mn_registered(IN1)
    }));
    let s = stats(&lab);
    assert_eq!(s["registrations"]["accepted"], 1, "{s}");
    assert_eq!(s["registrations"]["probes_started"], 1, "{s}");
    assert_eq!(s["denials"], serde_json::json!([]), "{s}");
    assert_eq!(
        s["handovers"]["count"], 0,
        "the first registration is no handover: {s}"
    );
    assert_eq!(s["drops"]["reply_unauthenticated"], 0, "{s}");
    assert_eq!(s["pinned"], Value::Null);

    // probe: a second, operator-started probe of the care-of address,
    // answered with TNC; the node stays in mode c throughout.
    let p = json(&mip4ctl(&lab, &["probe", "--json"]));
    assert_eq!(p["probing"]["address"], IN1, "{p}");
    assert_eq!(p["probing"]["ifname"], "mn0", "{p}");
    lab.must(wait::until(
        t,
        "the operator's probe: trusted again",
        || {
            (count(&events, |e| {
                e["event"] == "trust_verdict" && e["address"] == IN1 && e["verdict"] == "trusted"
            }) >= 2)
                .then_some(())
        },
    ));
    assert!(
        count(&events, |e| e["event"] == "probe_started"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("mip4ctl probe"))
            == 1
    );
    assert_eq!(stats(&lab)["registrations"]["probes_started"], 2);
    assert!(lab.mn_registered(IN1).is_some());

    // force: f does not exist, mc needs charon (its plugin is off here):
    // refused, exit code 3, the reason on stderr; nothing pinned.
    for (mode, why) in [("f", "mode f"), ("mc", "plugin")] {
        let out = mip4ctl(&lab, &["force", mode]);
        assert_eq!(out.status.code(), Some(3), "force {mode}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "force {mode}: {err}");
    }
    let out = mip4ctl(&lab, &["force", "x"]);
    assert_eq!(out.status.code(), Some(2), "bad usage: {out:?}");

    // force c: pinned, still in mode c on the trusted subnet.
    let f = json(&mip4ctl(&lab, &["force", "c", "--json"]));
    assert_eq!(f["pinned"], "c", "{f}");
    assert_eq!(f["mode"], "c", "{f}");
    assert_eq!(lab.mn_status().unwrap()["pinned"], "c");

    // Pinned to c, the MN moves to the untrusted subnet: the probe still
    // decides, untrusted; the pin never registers the untrusted address.
    lab.mn.del_addr("mn0", &format!("{IN1}/24")).unwrap();
    lab.mn.add_addr("mn1", &format!("{EXT}/24")).unwrap();
    lab.must(wait::until(t, "untrusted, pinned to c", || {
        lab.mn_status().filter(|s| s["state"] == "untrusted")
    }));
    lab.must(wait::until(
        t,
        "untrusted verdict for the outside address",
        || mip4d_support::verdict(&events, EXT).filter(|v| v["verdict"] == "untrusted"),
    ));
    assert_ne!(lab.ha_care_of().as_deref(), Some(EXT));
    assert_eq!(lab.mn_status().unwrap()["mode"], Value::Null);

    // Back inside: mode c again; that was a handover the MN timed.
    lab.mn.del_addr("mn1", &format!("{EXT}/24")).unwrap();
    lab.mn_attach("mn0", &format!("{IN1}/24"), "10.20.1.1", "100");
    lab.must(wait::until(t, "mode c again", || lab.mn_registered(IN1)));
    let s = stats(&lab);
    let h = &s["handovers"];
    assert_eq!(h["count"], 1, "{s}");
    let (last, median, worst) = (
        h["last_ms"].as_u64().unwrap(),
        h["median_ms"].as_u64().unwrap(),
        h["worst_ms"].as_u64().unwrap(),
    );
    assert!(last == median && median == worst, "one handover: {s}");
    assert_eq!(h["last"]["from"]["state"], "registered", "{s}");
    assert_eq!(h["last"]["to"]["care_of"], IN1, "{s}");
    assert_eq!(s["pinned"], "c");

    // release: answered with the pin it ended; a second one ends none.
    let r = json(&mip4ctl(&lab, &["release", "--json"]));
    assert_eq!(r["released"], "c", "{r}");
    let r = json(&mip4ctl(&lab, &["release", "--json"]));
    assert_eq!(r["released"], Value::Null, "{r}");
    assert!(count(&events, |e| e["event"] == "mode_pinned") >= 2);

    // The text forms exit 0 too.
    let out = mip4ctl(&lab, &["stats"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("handovers: 1"));

    // Unreachable daemon: exit code 4.
    lab.procs.remove(0);
    let out = mip4ctl(&lab, &["status"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
}

#[test]
fn stats_name_the_home_agents_denial_code() {
    // The MN forces RFC 3519 UDP tunnelling (F flag); this HA does not
    // do it: 142 (RFC 3519 §3.2), authenticated.
    let lab = build("mip4d-udp-always.conf");
    let t = Duration::from_secs(20);
    let s = lab.must(wait::until(t, "a denial counted", || {
        let out = mip4ctl(&lab, &["stats", "--json"]);
        let s: Value = serde_json::from_slice(&out.stdout).ok()?;
        (!s["denials"].as_array()?.is_empty()).then_some(s)
    }));
    let d = &s["denials"][0];
    assert_eq!(d["code"], 142, "{s}");
    assert_eq!(d["by"], "home_agent", "{s}");
    assert_eq!(
        d["name"],
        mip4::wire::ReplyCode(142).name(),
        "the RFC's name: {s}"
    );
    assert!(d["count"].as_u64().unwrap() >= 1);
    // The HA's own view of it.
    assert!(lab.ctl("ha.sock", &["counters"]).unwrap()["denied"]["142"].as_u64() >= Some(1));
    // mip4-ha does not serve mip4d's commands: refused, exit code 3.
    let out = Command::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .arg("--socket")
        .arg(lab.dir.path().join("ha.sock"))
        .arg("probe")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("served by mip4d only"));
}
