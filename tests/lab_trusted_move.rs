//! `trusted-move` end to end on the Figure 1 lab (RFC 5266 §3.1.1, mode
//! 'c'): mip4d on the MN registers its co-located address on trusted
//! subnet 1 with mip4-ha on the i-HA; the correspondent pings the home
//! address and keeps a TCP stream to it; the MN moves to trusted subnet 2
//! (break before make) and re-registers. The HA's binding follows the MN
//! after every move, the ping resumes and the same TCP connection carries
//! on. Runs the mip4d, mip4-ha and mip4ctl cargo built for this test run.
//! Needs root: fails with the missing piece named otherwise.

mod lab_support;

use std::path::PathBuf;

use mip4::lab::scenario::{run, RunOptions, Scenario, Summary};

const HOA: &str = "10.1.100.5";
const SUBNET_1_ADDR: &str = "10.1.10.100";
const SUBNET_2_ADDR: &str = "10.1.20.100";

fn options() -> RunOptions {
    let mut o = RunOptions::default();
    for (var, path) in [
        ("MIP4D", env!("CARGO_BIN_EXE_mip4d")),
        ("MIP4_HA", env!("CARGO_BIN_EXE_mip4-ha")),
        ("MIP4CTL", env!("CARGO_BIN_EXE_mip4ctl")),
    ] {
        o.programs.insert(var.to_string(), path.to_string());
    }
    o
}

fn event<'a>(s: &'a Summary, name: &str) -> &'a mip4::lab::scenario::Event {
    s.event(name)
        .unwrap_or_else(|| panic!("no `{name}` event in the run: {:?}", s.error))
}

#[test]
fn lab_trusted_move_keeps_binding_ping_and_tcp_stream() {
    mip4::lab::preflight().expect("lab preflight");
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = Scenario::load(&lab.join("scenarios/trusted-move")).unwrap();
    let s = run(&lab, &sc, &options(), &mut |_| {}).unwrap();
    assert!(
        s.passed(),
        "trusted-move failed: {:?}\n{:#?}",
        s.error,
        s.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
    );

    // The HA's binding equals the MN's address after the first
    // registration and after the move.
    for (ev, coa) in [
        ("ha_binding_1", SUBNET_1_ADDR),
        ("ha_binding_2", SUBNET_2_ADDR),
    ] {
        let b = &event(&s, ev).detail;
        assert_eq!(b["home_address"], HOA, "{ev}: {b}");
        assert_eq!(b["care_of_address"], coa, "{ev}: {b}");
    }
    // mip4d registered each address (mode 'c': the care-of address is the
    // MN's own address on the trusted subnet).
    assert_eq!(event(&s, "registered_1").detail["care_of"], SUBNET_1_ADDR);
    assert_eq!(event(&s, "registered_2").detail["care_of"], SUBNET_2_ADDR);
    // In order: the move, mip4d seeing the address, the request, the
    // reply, the HA's binding.
    let t = |n: &str| event(&s, n).t;
    assert!(t("address_change") <= t("mn_saw_address"));
    assert!(t("mn_saw_address") <= t("reg_sent_2"));
    assert!(t("reg_sent_2") <= t("reg_answered_2"));
    assert!(t("reg_answered_2") < t("reg_reply_2"));
    assert!(t("reg_reply_2") <= t("ha_binding_2"));

    // The TCP stream: one connection from the same client port before and
    // after the move, bytes echoed after the move, no reset.
    let before = &event(&s, "stream_flowing").detail;
    let after = &event(&s, "stream_resumed").detail;
    assert_eq!(after["connections"], 1, "the server saw a new connection");
    assert_eq!(before["client"], after["client"], "the stream reconnected");
    assert!(after["bytes_echoed"].as_u64() > before["bytes_echoed"].as_u64());
    assert!(t("stream_resumed") > t("address_change"));
    let intact = s
        .checks
        .iter()
        .find(|c| c.command.starts_with("tcp-stream"))
        .expect("the stream check ran");
    assert!(intact.ok, "{intact:?}");
    // The MN's own unbound stream to the CN: from the home address,
    // the same connection after the move.
    lab_support::home_stream_kept(&s, "out_flowing", "out_resumed");

    // The ping resumed after the move.
    assert!(t("ping_resumed") > t("address_change"));

    // RFC 3024 §4.3: the IP-in-IP datagrams with a forged inner source
    // were sent from the care-of address, counted as dropped at the HA and
    // absent from the correspondent's capture.
    assert_eq!(event(&s, "ipip_sent").detail["count"], 5);
    for what in ["inner_address_mismatch", "clear-text spoof-cn"] {
        let c = s
            .checks
            .iter()
            .find(|c| c.command.contains(what) || c.pattern.contains(what))
            .unwrap_or_else(|| panic!("no check of {what}"));
        assert!(c.ok, "{c:?}");
    }

    // The summary's figures exist and read in access link RTTs.
    for f in [
        "registration_rtt_ms",
        "move_to_registered_ms",
        "move_to_ping_ms",
        "move_to_tcp_ms",
        "ping_lost",
        "tcp_stall_ms",
        "rtt_access_2_ms",
        "registration_rtt_rtts",
        "move_to_registered_rtts",
        "move_to_request_ms",
        "request_send_errors",
        "request_retransmissions",
    ] {
        assert!(
            s.figures.contains_key(f),
            "figure {f} missing: {:?}",
            s.figures
        );
    }
    let ratio = s.figures["move_to_registered_ms"] / s.figures["rtt_access_2_ms"];
    assert!((ratio - s.figures["move_to_registered_rtts"]).abs() < 0.01);
    // The key made for this run is never reported.
    assert!(!s.vars.contains_key("KEY"));
}

#[test]
fn lab_trusted_move_names_a_missing_program() {
    // Without the daemons' paths the run stops before building anything,
    // naming what is missing (independent of root).
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = Scenario::load(&lab.join("scenarios/trusted-move")).unwrap();
    let mut o = options();
    o.programs
        .insert("MIP4D".into(), "/nonexistent/mip4d".into());
    let err = run(&lab, &sc, &o, &mut |_| {}).unwrap_err().to_string();
    assert!(
        err.contains("mip4d") && (err.contains("not found") || err.contains("root")),
        "{err}"
    );
}
