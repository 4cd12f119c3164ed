//! The operator's tools on the Figure 1 lab (issue 12): `mip4ctl probe`,
//! `force mc` on a trusted network, `release`, `stats`, with real charons
//! and daemons (lab/scenarios/operator-tools; its evaltest checks the
//! final state, the counts of probes and pins, and the refused `force f`).
//! Needs root, strongSwan 5.9.8 (kernel-libipsec) and the plugin built.

mod lab_support;

use lab_support::{event, run_passing};

#[test]
fn lab_operator_pins_mc_on_a_trusted_network_and_releases_it() {
    let s = run_passing("operator-tools");
    // The pin, not the network, took the MN out of mode 'c': the VPN was
    // asked for on trusted-1 because of it.
    let ask = &event(&s, "vpn_initiate_asked").detail;
    assert!(
        ask["reason"]
            .as_str()
            .unwrap()
            .contains("pinned to mode mc"),
        "{ask}"
    );
    // The user's own initiate reached charon while mip4d's IKE_SA was
    // still connecting, and the VPN came up only after it; evaltest saw
    // one IKE_SA with one CHILD_SA: charon reused the connecting IKE_SA.
    let heard = event(&s, "user_initiate_heard").t;
    assert!(event(&s, "mip4d_ike_sa_connecting").t < heard);
    assert!(event(&s, "vpn_tia").t > heard);
    lab_support::check_held(&s, "swanctl --list-sas --raw | grep -o");
    // mip4d asked charon once, for the pin: the operator's probe in mode
    // 'c' asked for no VPN and closed none; one IKE_SA_INIT in the run.
    lab_support::check_held(&s, "events mn/mip4d vpn_requested");
    lab_support::check_held(&s, "grep -c \"initiating IKE_SA vpn");
    let mc = &event(&s, "registered_mc").detail;
    assert!(
        mc["care_of"].as_str().unwrap().starts_with("10.200.0."),
        "the TIA: {mc}"
    );
    // After the release the probe's registration is the mode 'c' one.
    let c = &event(&s, "mode_c_again").detail;
    assert!(
        c["reason"].as_str().unwrap().contains("trusted network"),
        "{c}"
    );
    // `mip4ctl stats --json`, as the scenario ran it last: the handover
    // times the MN measured.
    let stats = s
        .events
        .iter()
        .rev()
        .find(|e| {
            e.event == "command" && e.detail["cmd"].as_str().unwrap().ends_with("stats --json")
        })
        .expect("stats --json ran");
    let v: serde_json::Value = serde_json::from_str(stats.detail["out"].as_str().unwrap()).unwrap();
    let h = &v["handovers"];
    assert_eq!(h["count"], 2, "{v}");
    assert!(h["worst_ms"].as_u64() >= h["median_ms"].as_u64(), "{v}");
    assert_eq!(v["registrations"]["denied"], 0, "{v}");
}
