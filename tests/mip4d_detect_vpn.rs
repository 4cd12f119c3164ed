//! Trusted-network detection with the VPN up (RFC 5266 §3.4, §3.4.1,
//! §3.4.2): two real charons (the MN's with the built mip4 plugin),
//! mip4-ha behind the VPN gateway with trusted networks configured, and
//! mip4d with `[detect]`, in namespaces this test makes (unique names,
//! removed on drop even when an assertion fails):
//!
//! ```text
//!   mn eth0 203.0.113.x ──── 203.0.113.10 vpngw 10.1.0.1 ── 10.1.0.2 ha
//!      eth1 10.20.1.5 ─────── 10.20.1.1 (trusted)  10.1.3.1 ── 10.1.3.2 cn
//! ```
//!
//! 1. Outside, no VPN: the probe reaches the i-HA (the gateway routes
//!    it: a "misconfigured firewall"), which drops it (RFC 5265 §4.3):
//!    untrusted; mip4d asks charon for the VPN (§3.4.2 step 1), the TIA
//!    is registered (mode 'mc').
//! 2. A new outside address with the VPN up: the probe still leaves
//!    directly, past charon's routes into kernel-libipsec's TUN (the i-HA
//!    counts it as dropped from an untrusted source), and the node stays
//!    in 'mc' without registering anything.
//! 3. Entering the trusted subnet: the probe leaves by eth1, bypassing
//!    the VPN, the i-HA answers with TNC: mode 'c' from the probe's own
//!    registration; the VPN is kept (vpn_when_inside = keep) and the
//!    correspondent still reaches the home address, now outside ESP.
//! 4. Leaving again: the TIA is registered through the VPN.
//!
//! Needs root, strongSwan 5.9.8 (kernel-libipsec) and the plugin built
//! against strongSwan's source (scripts/fetch-strongswan-source.sh).

mod mip4d_support;

use std::time::Duration;

use mip4::lab::netns::veth;
use mip4::lab::{preflight, wait};
use mip4d_support::{verdict, Lab};
const HOA: &str = "10.1.5.5";
const HA: &str = "10.1.0.2";
const CN: &str = "10.1.3.2";
const OUT_A: &str = "203.0.113.100";
const OUT_B: &str = "203.0.113.101";
const INSIDE: &str = "10.20.1.5";
const T: Duration = Duration::from_secs(25);

fn build() -> Lab {
    preflight().expect("lab preflight");
    let mut lab = Lab::new("detect-vpn", HOA, &["vpngw"]);
    let (gw, ha, mn, cn) = (lab.host("vpngw"), &lab.ha, &lab.mn, &lab.cn);
    veth(mn, "eth0", gw, "eth0").unwrap();
    veth(mn, "eth1", gw, "in0").unwrap();
    veth(gw, "int0", ha, "ha0").unwrap();
    veth(gw, "int1", cn, "cn0").unwrap();
    mn.sysctl("net.ipv4.conf.all.promote_secondaries", "1")
        .unwrap();
    gw.add_addr("eth0", "203.0.113.10/24").unwrap();
    gw.add_addr("in0", "10.20.1.1/24").unwrap();
    gw.add_addr("int0", "10.1.0.1/24").unwrap();
    gw.add_addr("int1", "10.1.3.1/24").unwrap();
    gw.enable_forwarding().unwrap();
    gw.route("10.1.5.0/24", HA).unwrap();
    ha.add_addr("ha0", &format!("{HA}/24")).unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.1.0.1").unwrap();
    cn.add_addr("cn0", &format!("{CN}/24")).unwrap();
    cn.route("default", "10.1.3.1").unwrap();

    lab.start_charons("vpngw");
    lab.start_ha();
    lab.start_mip4d("mip4d.log");
    lab
}

#[test]
fn the_probe_bypasses_the_vpn_outside_and_inside_and_decides_the_mode() {
    let lab = build();
    lab.must(wait::until(T, "the plugin connected to mip4d", || {
        lab.mn_status()
            .filter(|s| s["plugin"]["connected"] == true)
            .map(|_| ())
    }));
    let events = lab.subscribe();

    // 1. Outside, no VPN yet: attach (DHCP-style: address, then route).
    lab.mn.add_addr("eth0", &format!("{OUT_A}/24")).unwrap();
    lab.mn.route("default", "203.0.113.10").unwrap();
    let v = lab.must(wait::until(T, "verdict outside", || {
        verdict(&events, OUT_A)
    }));
    assert_eq!(v["verdict"], "untrusted", "{v}");
    assert_eq!(v["cause"], "no_reply", "{v}");
    let dropped = lab.ha_counter("dropped_untrusted_source").unwrap();
    assert!(dropped >= 2, "the probes reached the i-HA: {dropped}");
    // RFC 5266 §3.4.2 step 1: mip4d asked charon for the VPN.
    let (sa, _) = lab.charons[0]
        .wait_sa("vpn", T, "VPN initiated at mip4d's request", |sa| {
            !sa.local_vips.is_empty()
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.logs()));
    let tia = sa.local_vips[0].clone();
    let st = lab.must(wait::until(T, "mode mc with the TIA", || {
        lab.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == tia.as_str())
    }));
    assert_eq!(st["mode"], "mc");
    assert!(events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e["event"] == "vpn_requested" && e["action"] == "initiate"));
    lab.must(wait::until(
        T,
        "ping cn -> home address through the VPN",
        || lab.cn.ping_once(CN, HOA, 500).then_some(()),
    ));

    // 2. A new outside address while the VPN's routes catch everything
    // to 10.1.0.0/16: the probe still reaches the i-HA directly.
    let requests = lab.mn_status().unwrap()["registration"]["requests_sent"].clone();
    lab.mn.add_addr("eth0", &format!("{OUT_B}/24")).unwrap();
    let v = lab.must(wait::until(
        T,
        "verdict for the second outside address",
        || verdict(&events, OUT_B),
    ));
    assert_eq!(v["verdict"], "untrusted", "{v}");
    let dropped2 = lab.ha_counter("dropped_untrusted_source").unwrap();
    assert!(
        dropped2 >= dropped + 2,
        "probes bypassed the VPN and reached the i-HA: {dropped} -> {dropped2}"
    );
    let st = lab.mn_status().unwrap();
    assert_eq!(st["mode"], "mc", "{st}");
    assert_eq!(st["care_of_address"], tia.as_str());
    assert_eq!(
        st["registration"]["requests_sent"], requests,
        "nothing registered: {st}"
    );

    // 3. Enter the trusted subnet (a second interface; the VPN stays).
    lab.mn_attach("eth1", &format!("{INSIDE}/24"), "10.20.1.1", "10");
    let v = lab.must(wait::until(T, "verdict inside", || {
        verdict(&events, INSIDE)
    }));
    assert_eq!(v["verdict"], "trusted", "{v}\n{}", lab.logs());
    assert_eq!(v["cause"], "tnc_reply", "{v}");
    let st = lab.must(wait::until(T, "mode c inside", || {
        lab.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == INSIDE)
    }));
    assert_eq!(st["mode"], "c");
    let b = lab.must(wait::until(T, "HA binding = the inside address", || {
        lab.ha_binding().filter(|b| b["care_of_address"] == INSIDE)
    }));
    assert!(
        b["source"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{INSIDE}:")),
        "{b}"
    );
    // vpn_when_inside = keep: the IKE_SA stays, no data through it.
    assert!(lab.charons[0]
        .list_sas()
        .unwrap()
        .iter()
        .any(|s| s.name == "vpn"));
    lab.must(wait::until(
        T,
        "ping cn -> home address, mode c, VPN kept",
        || lab.cn.ping_once(CN, HOA, 500).then_some(()),
    ));

    // 4. Leave: the trusted address goes; the TIA comes back.
    lab.mn.del_addr("eth1", &format!("{INSIDE}/24")).unwrap();
    let st = lab.must(wait::until(T, "mode mc again", || {
        lab.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == tia.as_str())
    }));
    assert_eq!(st["mode"], "mc");
    lab.must(wait::until(
        T,
        "ping cn -> home address through the VPN again",
        || lab.cn.ping_once(CN, HOA, 500).then_some(()),
    ));
    let ev = events.lock().unwrap().clone();
    for e in &ev {
        if e["event"] == "trust_verdict" && (e["address"] == OUT_A || e["address"] == OUT_B) {
            assert_eq!(e["verdict"], "untrusted", "{e}");
        }
    }
}
