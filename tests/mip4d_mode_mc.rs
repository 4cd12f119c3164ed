//! mip4d in mode 'mc' (RFC 5266 §3.1.3) end to end: two real charons
//! (the MN's with the built mip4 plugin, the VPN gateway's), mip4-ha
//! behind the gateway, mip4d on the MN, in namespaces this test makes
//! (unique names, removed on drop even when an assertion fails):
//!
//! ```text
//!   mn 203.0.113.100 ──── 203.0.113.10 vpngw 10.1.0.1 ── 10.1.0.2 ha (mip4-ha,
//!   (charon+mip4,                     (charon,   10.1.3.1 ── 10.1.3.2 cn      virtual home
//!    mip4d, HoA 10.1.5.5)              pool 10.200.0.0/24)                    10.1.5.0/24)
//! ```
//!
//! The MN is outside (203.0.113.0/24 is not a trusted network); the VPN
//! comes up with a TIA; mip4d registers the TIA through the VPN (the HA's
//! binding: care-of address = TIA, request from the TIA, 'T' set); the
//! correspondent pings the home address through HA -> IP in IP -> ESP.
//! Then the MN's address changes, MOBIKE moves the IKE_SA: no
//! registration request is sent, the binding is unchanged, the ping
//! resumes. Needs root and strongSwan 5.9.8 (kernel-libipsec), and the
//! plugin built against strongSwan's source (scripts/fetch-strongswan-
//! source.sh); fails naming the missing piece.

mod mip4d_support;

use std::time::Duration;

use mip4::lab::netns::veth;
use mip4::lab::{preflight, wait};
use mip4d_support::Lab;
use serde_json::Value;

const HOA: &str = "10.1.5.5";
const HA: &str = "10.1.0.2";
const CN: &str = "10.1.3.2";
const MN_A: &str = "203.0.113.100";
const MN_B: &str = "203.0.113.101";
const T: Duration = Duration::from_secs(25);

fn build() -> Lab {
    let mut lab = topology();
    // What a deployment sets (docs/mip4d.md): charon keeps off mip4d's
    // tunnel device.
    lab.mn_charon_settings = "    interfaces_ignore = mip4mn0\n".into();
    lab.start_charons("vpngw");
    lab.start_ha();
    lab.start_mip4d("mip4d.log");
    lab
}

/// The namespaces and their links and routes, nothing started.
fn topology() -> Lab {
    preflight().expect("lab preflight");
    let lab = Lab::new("mode-mc", HOA, &["vpngw"]);
    let (gw, ha, mn, cn) = (lab.host("vpngw"), &lab.ha, &lab.mn, &lab.cn);
    veth(mn, "eth0", gw, "eth0").unwrap();
    veth(gw, "int0", ha, "ha0").unwrap();
    veth(gw, "int1", cn, "cn0").unwrap();
    mn.sysctl("net.ipv4.conf.all.promote_secondaries", "1")
        .unwrap();
    mn.add_addr("eth0", &format!("{MN_A}/24")).unwrap();
    gw.add_addr("eth0", "203.0.113.10/24").unwrap();
    gw.add_addr("int0", "10.1.0.1/24").unwrap();
    gw.add_addr("int1", "10.1.3.1/24").unwrap();
    gw.enable_forwarding().unwrap();
    // The home network lives behind the HA (virtual home network).
    gw.route("10.1.5.0/24", HA).unwrap();
    ha.add_addr("ha0", &format!("{HA}/24")).unwrap();
    ha.enable_forwarding().unwrap();
    ha.route("default", "10.1.0.1").unwrap();
    cn.add_addr("cn0", &format!("{CN}/24")).unwrap();
    cn.route("default", "10.1.3.1").unwrap();
    lab
}

fn ping(lab: &Lab) -> bool {
    lab.cn.ping_once(CN, HOA, 500)
}

#[test]
fn mode_mc_registers_the_tia_through_the_vpn_and_a_mobike_move_costs_no_registration() {
    let lab = build();
    // mip4d has its plugin socket; the plugin in charon connects to it.
    lab.must(wait::until(T, "the plugin connected to mip4d", || {
        lab.mn_status()
            .filter(|s| s["plugin"]["connected"] == true)
            .map(|_| ())
    }));
    // Outside: 203.0.113.100 is not trusted, nothing registered.
    let st = lab.mn_status().unwrap();
    assert_eq!(st["state"], "untrusted", "{st}");
    assert_eq!(st["registration"]["requests_sent"], 0);

    lab.mn_charon().initiate("net").unwrap();
    let (sa, _) = lab
        .mn_charon()
        .wait_sa("vpn", T, "VPN up with a TIA", |sa| {
            !sa.local_vips.is_empty()
        })
        .unwrap();
    let tia = sa.local_vips[0].clone();

    // mip4d registers the TIA through the VPN, in mode 'mc'.
    let st = lab.must(wait::until(T, "mip4d registered the TIA", || {
        lab.mn_status()
            .filter(|s| s["state"] == "registered" && s["care_of_address"] == tia.as_str())
    }));
    assert_eq!(st["mode"], "mc");
    assert_eq!(st["vpn"]["current"]["gateway"], "203.0.113.10");
    assert_eq!(st["vpn"]["current"]["connection"], "vpn");
    // kernel-libipsec's ipsec0 has MTU 1400: 1400 - 20 for IP in IP.
    assert_eq!(st["vpn"]["tunnel_mtu"], 1380, "{st}");
    let link = lab.mn.ip(&["-o", "link", "show", "mip4mn0"]).unwrap();
    assert!(link.contains(" mtu 1380 "), "{link}");
    // The HA's binding: care-of = TIA, the request came from the TIA
    // (through ESP and the gateway), reverse tunnelling granted.
    let b = lab.must(wait::until(T, "HA binding with the TIA", || {
        lab.ha_binding()
            .filter(|b| b["care_of_address"] == tia.as_str())
    }));
    let source = b["source"].as_str().unwrap();
    assert!(
        source.starts_with(&format!("{tia}:")),
        "registration from {source}, not from the TIA {tia}"
    );
    assert_eq!(b["reverse_tunnel"], true, "{b}");
    assert!(b["flags"].as_str().unwrap().contains('T'), "{b}");
    // charon ignores the tunnel device and the IKE_SA has MOBIKE:
    // nothing to warn of.
    assert_eq!(st["warnings"], serde_json::json!([]), "{st}");

    // The correspondent reaches the home address: HA -> IP in IP -> ESP.
    lab.must(wait::until(
        T,
        "ping cn -> home address through the VPN",
        || ping(&lab).then_some(()),
    ));

    // --- MOBIKE move: the MN's address changes, the TIA stays.
    let events = lab.subscribe();
    let before = lab.mn_status().unwrap();
    let sent_before = before["registration"]["requests_sent"].as_u64().unwrap();
    lab.mn.add_addr("eth0", &format!("{MN_B}/24")).unwrap();
    lab.mn.del_addr("eth0", &format!("{MN_A}/24")).unwrap();
    let (moved, _) = lab
        .mn_charon()
        .wait_sa("vpn", T, "MOBIKE update to the new address", |sa| {
            sa.local_host == MN_B
        })
        .unwrap();
    assert_eq!(moved.local_vips, vec![tia.clone()], "TIA kept by MOBIKE");
    // mip4d heard of the move and decided to keep the binding.
    let ev = lab.must(wait::until(T, "mip4d's decision on the move", || {
        let ev = events.lock().unwrap().clone();
        ev.iter()
            .any(|e| e["event"] == "decision" && e["decision"] == "keep_binding")
            .then_some(ev)
    }));
    let vpn_moved = ev
        .iter()
        .find(|e| e["event"] == "vpn_moved")
        .expect("vpn_moved event");
    assert_eq!(vpn_moved["from"], MN_A);
    assert_eq!(vpn_moved["to"], MN_B);
    // The ping resumes through the same binding.
    lab.must(wait::until(
        T,
        "ping cn -> home address after the move",
        || ping(&lab).then_some(()),
    ));
    // Zero registration requests after the move, by events and counters.
    let ev = events.lock().unwrap().clone();
    let requests: Vec<&Value> = ev.iter().filter(|e| e["event"] == "request_sent").collect();
    assert!(requests.is_empty(), "requests after the move: {requests:?}");
    let after = lab.mn_status().unwrap();
    assert_eq!(
        after["registration"]["requests_sent"].as_u64().unwrap(),
        sent_before,
        "{after}"
    );
    assert_eq!(after["node"]["vpn_moves_absorbed"], 1, "{after}");
    assert_eq!(after["state"], "registered");
    assert_eq!(after["care_of_address"], tia.as_str());
    let b2 = lab.ha_binding().expect("binding still there");
    assert_eq!(b2["care_of_address"], tia.as_str());
    assert_eq!(
        b2["identification"], b["identification"],
        "the HA saw no new registration"
    );
    let t = |e: &Value| e["mono_ns"].as_u64().unwrap();
    if let Some(removed) = ev
        .iter()
        .find(|e| e["event"] == "address_removed" && e["address"] == MN_A)
    {
        eprintln!(
            "address removed -> vpn_moved (MOBIKE done, as mip4d heard it): {:.3} ms",
            (t(vpn_moved) as f64 - t(removed) as f64) / 1e6
        );
    }
}

/// Waits until mip4d has the VPN's current TIA registered in mode 'mc'
/// and the HA's binding points at it; returns the TIA.
fn converged(lab: &Lab, what: &str) -> String {
    let (sa, _) = lab
        .mn_charon()
        .wait_sa("vpn", T, "VPN up with a TIA", |sa| {
            !sa.local_vips.is_empty()
        })
        .unwrap();
    let tia = sa.local_vips[0].clone();
    lab.must(wait::until(
        T,
        &format!("{what}: mip4d registered {tia}"),
        || {
            lab.mn_status().filter(|s| {
                s["state"] == "registered"
                    && s["mode"] == "mc"
                    && s["care_of_address"] == tia.as_str()
            })
        },
    ));
    lab.must(wait::until(
        T,
        &format!("{what}: HA binding = {tia}"),
        || {
            lab.ha_binding()
                .filter(|b| b["care_of_address"] == tia.as_str())
        },
    ));
    lab.must(wait::until(
        T,
        &format!("{what}: ping cn -> home address"),
        || ping(lab).then_some(()),
    ));
    tia
}

#[test]
fn mip4d_restart_and_charon_restart_converge_without_manual_action() {
    let mut lab = build();
    lab.must(wait::until(T, "the plugin connected to mip4d", || {
        lab.mn_status()
            .filter(|s| s["plugin"]["connected"] == true)
            .map(|_| ())
    }));
    lab.mn_charon().initiate("net").unwrap();
    converged(&lab, "first start");

    // --- mip4d restarts (SIGTERM deregisters and removes everything):
    // the new one learns the TIA from the plugin's snapshot alone.
    let mut old = lab.procs.remove(0);
    old.stop(Duration::from_secs(10));
    drop(old);
    lab.start_mip4d("mip4d-2.log");
    converged(&lab, "after the mip4d restart");
    // It learnt the TIA from the snapshot alone (no new handle_vips).
    let log = std::fs::read_to_string(lab.dir.path().join("mip4d-2.log")).unwrap();
    assert!(
        log.contains("Snapshot("),
        "no snapshot in the new mip4d's log"
    );
    assert!(!log.contains("TiaAssigned("), "a new handle_vips arrived");

    // --- charon restarts: the VPN comes back (same or another TIA), the
    // plugin reconnects, mip4d converges on the new TIA.
    let events = lab.subscribe();
    let old = lab.charons.remove(0);
    drop(old);
    let c = lab.start_mn_charon("mn-2");
    lab.charons.insert(0, c);
    lab.must(wait::until(
        T,
        "the restarted charon's plugin connected",
        || {
            let ev = events.lock().unwrap();
            ev.iter()
                .any(|e| e["event"] == "plugin_connected")
                .then_some(())
        },
    ));
    lab.mn_charon().initiate("net").unwrap();
    let tia = converged(&lab, "after the charon restart");
    let ev = events.lock().unwrap().clone();
    assert!(ev.iter().any(|e| e["event"] == "vpn_snapshot"));
    assert!(
        ev.iter()
            .any(|e| e["event"] == "request_sent" && e["care_of"] == tia.as_str()),
        "the restarted VPN's TIA was registered: {ev:#?}"
    );
}

/// The guardrails with a real charon and the plugin: charon was not told
/// to ignore mip4d's tunnel device, and the VPN connection has
/// `mobike = no`. mip4d warns of each in its status, as an event and in
/// its log, naming what to set.
#[test]
fn mip4d_warns_when_charon_may_use_the_tunnel_device_and_when_an_ike_sa_lacks_mobike() {
    let mut lab = topology();
    lab.mn_swanctl = lab.config_file("swanctl-no-mobike.conf");
    lab.start_ha();
    lab.start_mip4d("mip4d.log");
    // Subscribed before charon starts: its plugin's Hello comes after.
    let events = lab.subscribe();
    lab.start_charons("vpngw");
    let warning = |kind: &'static str| {
        move |ev: &Vec<Value>| ev.iter().find(|e| e["warning"] == kind).cloned()
    };
    let devices = lab.must(wait::until(T, "the tunnel device warning", || {
        warning("tunnel_devices_not_ignored")(&events.lock().unwrap())
    }));
    let st = lab.mn_status().unwrap();
    assert_eq!(devices["event"], "warning", "{devices}");
    assert_eq!(st["tunnel_backend"], "userspace", "the host has no ipip");
    assert_eq!(
        devices["devices"],
        serde_json::json!(["mip4mn0"]),
        "{devices}"
    );
    assert_eq!(devices["fix"], "charon.interfaces_ignore = mip4mn0");
    assert_eq!(
        st["warnings"][0]["warning"], "tunnel_devices_not_ignored",
        "{st}"
    );
    assert_eq!(st["warnings"][0]["message"], devices["message"]);

    lab.mn_charon().initiate("net").unwrap();
    let no_mobike = lab.must(wait::until(T, "the no-MOBIKE warning", || {
        warning("no_mobike")(&events.lock().unwrap())
    }));
    assert_eq!(no_mobike["connection"], "vpn", "{no_mobike}");
    let st = lab.mn_status().unwrap();
    let kinds: Vec<&Value> = st["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["warning"])
        .collect();
    assert_eq!(kinds, ["tunnel_devices_not_ignored", "no_mobike"], "{st}");
    let log = std::fs::read_to_string(lab.dir.path().join("mip4d.log")).unwrap();
    for w in [&devices, &no_mobike] {
        let first_line = w["message"].as_str().unwrap();
        assert!(log.contains(first_line), "not in mip4d.log: {first_line}");
    }
    // The VPN still works without MOBIKE: the TIA is registered.
    lab.must(wait::until(T, "mip4d registered the TIA", || {
        lab.mn_status().filter(|s| s["state"] == "registered")
    }));
}
