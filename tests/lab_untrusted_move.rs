//! `untrusted-move` end to end on the Figure 1 lab (RFC 5266 §3.1.3, mode
//! 'mc'): real charons on the MN (with the built mip4 plugin) and the VPN
//! gateway, mip4d and mip4-ha. The TIA is registered through the VPN; a
//! MOBIKE move from external network A to B (behind NAT) keeps the TIA, so
//! mip4d sends no registration request, the HA's binding is the same one
//! and the correspondent's TCP stream to the home address carries on.
//! Needs root and strongSwan 5.9.8 (kernel-libipsec), and the plugin built
//! against strongSwan's source: fails naming the missing piece otherwise.

mod lab_support;

use lab_support::{event, figure, home_stream_kept, run_passing, same_stream};

const HOA: &str = "10.1.100.5";

#[test]
fn lab_untrusted_move_keeps_tia_binding_and_stream_without_a_registration() {
    let s = run_passing("untrusted-move");
    let tia = s.vars["TIA"].clone();
    assert!(tia.starts_with("10.200.0."), "TIA {tia} not from the pool");

    // The TIA was registered through the VPN: the HA's binding has the TIA
    // as care-of address, reverse tunnelling granted.
    let b1 = &event(&s, "ha_binding_1").detail;
    assert_eq!(b1["home_address"], HOA);
    assert_eq!(b1["care_of_address"], tia.as_str());
    assert!(b1["flags"].as_str().unwrap_or("").contains('T'), "{b1}");
    assert!(
        b1["source"]
            .as_str()
            .is_some_and(|src| src.starts_with(&format!("{tia}:"))),
        "the request did not come from the TIA: {b1}"
    );

    // MOBIKE moved the IKE_SA behind the NAT, the TIA stayed.
    let moved = &event(&s, "mobike_updated").detail;
    assert_eq!(moved["local-host"], "192.168.1.100");
    assert_eq!(moved["local-vips"], serde_json::json!([tia]));
    let heard = &event(&s, "mobike_heard").detail;
    assert_eq!(heard["from"], "192.0.2.100");
    assert_eq!(heard["to"], "192.168.1.100");
    assert_eq!(event(&s, "kept_binding").detail["decision"], "keep_binding");

    // The same binding afterwards: the HA saw no new registration.
    let b2 = &event(&s, "ha_binding_2").detail;
    assert_eq!(b2["care_of_address"], tia.as_str());
    assert_eq!(b2["identification"], b1["identification"]);
    // Zero requests after the move, by counter (the events are checked
    // by evaltest: `request_sent after=address_change` count 0).
    assert_eq!(figure(&s, "requests_sent_after_move"), 0.0);
    assert!(figure(&s, "requests_before_move") >= 1.0);
    let zero = s
        .checks
        .iter()
        .find(|c| c.command.starts_with("events mn/mip4d request_sent"))
        .expect("the request count check ran");
    assert!(zero.ok, "{zero:?}");

    // The TCP stream: one connection throughout, bytes echoed after the
    // move; the ping resumed too.
    same_stream(&s, "stream_flowing", "stream_resumed");
    home_stream_kept(&s, "out_flowing", "out_resumed");
    let change = event(&s, "address_change").t;
    assert!(event(&s, "stream_resumed").t > change);
    assert!(event(&s, "ping_resumed").t > change);
    // The figures count from network B's address, which the lab's move
    // gives the kernel after it began.
    assert!(event(&s, "address_up").t >= change);

    // The figures exist, the ratios are the times in IKE round trips.
    for f in [
        "move_to_mobike_ms",
        "move_to_ping_ms",
        "move_to_tcp_ms",
        "ike_rtt_ms",
        "rtt_access_b_ms",
        "ping_lost",
        "tcp_stall_ms",
        "move_to_ping_ike_rtts",
        "move_to_tcp_ike_rtts",
        "move_to_mobike_ike_rtts",
    ] {
        figure(&s, f);
    }
    let r = figure(&s, "move_to_ping_ms") / figure(&s, "ike_rtt_ms");
    assert!((r - figure(&s, "move_to_ping_ike_rtts")).abs() < 0.01);
}

#[test]
fn lab_mode_mc_scenario_names_a_missing_plugin() {
    // Without the plugin the run stops before building anything, naming
    // what is missing (independent of root).
    let lab = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = mip4::lab::scenario::Scenario::load(&lab.join("scenarios/untrusted-move")).unwrap();
    let mut o = lab_support::options();
    o.mip4_plugin = Some("/nonexistent/libmip4.so".into());
    let err = mip4::lab::scenario::run(&lab, &sc, &o, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("mip4 plugin") || err.contains("root"), "{err}");
    assert!(err.contains("libmip4.so") || err.contains("root"), "{err}");
}
