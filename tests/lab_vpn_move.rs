//! `vpn-move` end to end on the Figure 1 lab: the MN moves from external
//! network A to external network B (behind NAT) with the VPN up; MOBIKE
//! updates the IKE_SA, the TIA is unchanged and traffic through the tunnel
//! resumes. Needs root and strongSwan 5.9.8 with kernel-libipsec: fails
//! with the missing piece named otherwise.

use std::path::PathBuf;

use mip4::lab::scenario::{run, RunOptions, Scenario};

#[test]
fn lab_vpn_move_keeps_tia_and_traffic_resumes() {
    mip4::lab::preflight().expect("lab preflight");
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = Scenario::load(&lab.join("scenarios/vpn-move")).unwrap();
    let s = run(&lab, &sc, &RunOptions::default(), &mut |_| {}).unwrap();
    assert!(s.passed(), "vpn-move failed: {:?} {:?}", s.error, s.checks);

    let up = s.event("vpn_up").expect("VPN came up");
    let moved = s.event("mobike_updated").expect("MOBIKE update seen");
    let tia = &up.detail["local-vips"];
    assert!(tia.as_array().is_some_and(|a| a.len() == 1), "{tia}");
    assert_eq!(
        &moved.detail["local-vips"], tia,
        "the TIA changed across the move"
    );
    assert_eq!(up.detail["local-host"], "192.0.2.100");
    assert_eq!(moved.detail["local-host"], "192.168.1.100");

    // Traffic through the tunnel resumed after the move: a reply to an
    // echo sent after the address change.
    let change = s.event("address_change").expect("the move happened");
    let resumed = s.event("data_resumed").expect("traffic resumed");
    assert!(resumed.t > change.t);
    assert!(s.figures.contains_key("move_to_data_ms"));
    assert!(s.figures.contains_key("rtt_access_b_ms"));
}
