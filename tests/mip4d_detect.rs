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
//! Every wait polls a condition with a deadline. Needs root.

mod mip4d_support;

use std::time::Duration;

use mip4::lab::forger::Forger;
use mip4::lab::netns;
use mip4::lab::wait;
use mip4d_support::{verdict, Lab};
const HOA: &str = "10.1.0.5";
const HA: &str = "10.0.0.2";
const IN1: &str = "10.20.1.5";
const IN2: &str = "10.20.1.6";
const EXT: &str = "198.51.100.5";
const FORGED: &str = "203.0.113.5";
const CN: &str = "10.3.0.2";

fn build() -> Lab {
    build_with("mip4-ha.conf")
}

/// The topology above with the home agent configured by `ha_conf`.
fn build_with(ha_conf: &str) -> Lab {
    let mut lab = Lab::new("detect", HOA, &["r", "fz"]);
    let (router, fz, ha, mn, cn) = (lab.host("r"), lab.host("fz"), &lab.ha, &lab.mn, &lab.cn);
    netns::veth(router, "rha", ha, "ha0").unwrap();
    netns::veth(router, "rcn", cn, "cn0").unwrap();
    netns::veth(router, "r1", mn, "mn0").unwrap();
    netns::veth(router, "r2", mn, "mn1").unwrap();
    netns::veth(router, "rfz", fz, "fz0").unwrap();
    netns::veth(fz, "fz1", mn, "mn2").unwrap();
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
    // The on-path host answers every probe towards the i-HA itself.
    let forger = Forger::start(lab.host("fz"), HA).unwrap();
    lab.forger = Some(forger);
    lab.start_ha_with(ha_conf);
    lab.start_mip4d("mip4d.log");
    lab
}

#[test]
fn only_an_authenticated_tnc_makes_the_mn_decide_it_is_inside() {
    let lab = build();
    let timeout = Duration::from_secs(20);
    let events = lab.subscribe();

    // 1. Trusted subnet: probe answered with TNC by the i-HA.
    let st = lab.must(wait::until(timeout, "mode c on the trusted subnet", || {
        lab.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == IN1)
    }));
    assert_eq!(st["mode"], "c");
    let det = &st["detection"];
    assert_eq!(det["counters"]["trusted"], 1, "{st}");
    assert_eq!(
        st["registration"]["registrations"], 1,
        "the probe is the registration: {st}"
    );
    assert!(st["probe_sockets"]["sent"].as_u64().unwrap() >= 1);
    lab.must(wait::until(timeout, "HA binding = trusted address", || {
        (lab.ha_care_of()? == IN1).then_some(())
    }));
    lab.must(wait::until(timeout, "ping cn -> home address", || {
        lab.cn.ping_once(CN, HOA, 500).then_some(())
    }));
    let tnc_replies = lab.ha_counter("tnc_replies").expect("HA counters");
    assert!(tnc_replies >= 1);

    // 2. Untrusted subnet; the i-HA is reachable but stays silent.
    let dropped_before = lab.ha_counter("dropped_untrusted_source").unwrap();
    lab.mn.del_addr("mn0", &format!("{IN1}/24")).unwrap();
    lab.mn.add_addr("mn1", &format!("{EXT}/24")).unwrap();
    let v = lab.must(wait::until(
        timeout,
        "verdict for the untrusted subnet",
        || verdict(&events, EXT),
    ));
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
        lab.ha_care_of().as_deref(),
        Some(IN1),
        "nothing registered from outside"
    );

    // 3. Behind the on-path forger.
    lab.mn.del_addr("mn1", &format!("{EXT}/24")).unwrap();
    lab.mn.add_addr("mn2", &format!("{FORGED}/24")).unwrap();
    let v = lab.must(wait::until(timeout, "verdict behind the forger", || {
        verdict(&events, FORGED)
    }));
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["cause"], "no_reply", "{v}");
    assert!(v["forged"].as_u64().unwrap() >= 2, "{v}");
    assert!(lab.forger.as_ref().unwrap().answered() >= 1);
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
    lab.mn_attach("mn0", &format!("{IN2}/24"), "10.20.1.1", "100");
    let v = lab.must(wait::until(timeout, "verdict back inside", || {
        verdict(&events, IN2)
    }));
    assert_eq!(v["verdict"], "trusted", "{v}");
    assert_eq!(v["cause"], "tnc_reply", "{v}");
    lab.must(wait::until(timeout, "released and registered", || {
        lab.mn_status().filter(|s| {
            s["state"] == "registered"
                && s["care_of_address"] == IN2
                && s["detection"]["traffic_held"] == false
        })
    }));
    assert!(!lab.table().contains("blackhole"), "{}", lab.table());
    lab.must(wait::until(
        timeout,
        "ping cn -> home address again",
        || lab.cn.ping_once(CN, HOA, 500).then_some(()),
    ));

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
    let lab = build_with("mip4-ha-no-tnc.conf");
    let timeout = Duration::from_secs(20);
    lab.must(wait::until(
        timeout,
        "the probe of the first address accepted without TNC",
        || {
            lab.mn_status().filter(|s| {
                s["detection"]["counters"]["accepted_without_tnc"]
                    .as_u64()
                    .is_some_and(|n| n >= 1)
            })
        },
    ));
    lab.must(wait::until(
        timeout,
        "the HA's binding deregistered",
        || {
            let gone = lab.ha_counter("deregistered")? >= 1 && lab.ha_binding().is_none();
            gone.then_some(())
        },
    ));
    let st = lab.mn_status().unwrap();
    assert_ne!(st["mode"], "c", "{st}");
    assert_eq!(st["detection"]["counters"]["trusted"], 0, "{st}");
    assert!(lab
        .logs()
        .contains("deregistering the i-HA's binding to an untrusted address"));
}
