//! Shared by the lab scenario tests: the run options (the programs and
//! the mip4 plugin cargo built for this test run) and event lookups.

#![allow(dead_code)]

use std::path::PathBuf;

use mip4::lab::scenario::{run, Event, RunOptions, Scenario, Summary};

#[path = "../common/cdylib.rs"]
mod cdylib;
pub use cdylib::built_cdylib as built_plugin;

pub fn options() -> RunOptions {
    let mut o = RunOptions::default();
    for (var, path) in [
        ("MIP4D", env!("CARGO_BIN_EXE_mip4d")),
        ("MIP4_HA", env!("CARGO_BIN_EXE_mip4-ha")),
        ("MIP4_FA", env!("CARGO_BIN_EXE_mip4-fa")),
        ("MIP4CTL", env!("CARGO_BIN_EXE_mip4ctl")),
    ] {
        o.programs.insert(var.to_string(), path.to_string());
    }
    o.mip4_plugin = Some(built_plugin());
    o
}

/// Runs scenario `name` from lab/scenarios; panics with the failed checks
/// unless it passed.
pub fn run_passing(name: &str) -> Summary {
    mip4::lab::preflight().expect("lab preflight");
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab");
    let sc = Scenario::load(&lab.join("scenarios").join(name)).unwrap();
    let s = run(&lab, &sc, &options(), &mut |_| {}).unwrap();
    assert!(
        s.passed(),
        "{name} failed: {:?}\n{:#?}",
        s.error,
        s.checks.iter().filter(|c| !c.ok).collect::<Vec<_>>()
    );
    s
}

pub fn event<'a>(s: &'a Summary, name: &str) -> &'a Event {
    s.event(name)
        .unwrap_or_else(|| panic!("no `{name}` event in the run: {:?}", s.error))
}

/// The last event called `name`.
pub fn last<'a>(s: &'a Summary, name: &str) -> &'a Event {
    s.events
        .iter()
        .rev()
        .find(|e| e.event == name)
        .unwrap_or_else(|| panic!("no `{name}` event in the run"))
}

/// Mode 'mc' across `moves` MOBIKE moves (`mobike_heard_1`..): each
/// moved the VPN's first IKE_SA (`vpn_up_0`), none sent a registration
/// request, the HA's binding stayed, one UPDATE_SA_ADDRESSES per move.
/// mip4d's `vpn_moved` event of each move, in order.
pub fn mobike_kept_all(s: &Summary, moves: u32) -> Vec<&serde_json::Value> {
    let first = &event(s, "vpn_up_0").detail["ike_sa"];
    let moved: Vec<_> = (1..=moves)
        .map(|n| {
            let m = &event(s, &format!("mobike_heard_{n}")).detail;
            assert_eq!(&m["ike_sa"], first, "move {n}: {m}");
            m
        })
        .collect();
    assert_eq!(figure(s, "requests_sent_in_moves"), 0.0);
    check_held(s, "binding ");
    check_held(
        s,
        "grep -c 'generating INFORMATIONAL request.*N(UPD_SA_ADDR)'",
    );
    moved
}

pub fn figure(s: &Summary, name: &str) -> f64 {
    *s.figures
        .get(name)
        .unwrap_or_else(|| panic!("figure {name} missing: {:?}", s.figures))
}

/// The evaltest checks whose command starts with `prefix` ran and held.
pub fn check_held(s: &Summary, prefix: &str) {
    let checks: Vec<_> = s
        .checks
        .iter()
        .filter(|c| c.command.starts_with(prefix))
        .collect();
    assert!(!checks.is_empty(), "no check `{prefix}` ran");
    for c in checks {
        assert!(c.ok, "{c:?}");
    }
}

/// The TCP stream is the same connection before and after, with bytes
/// echoed after: `before` and `after` are `wait-stream` events.
pub fn same_stream(s: &Summary, before: &str, after: &str) {
    let b = &event(s, before).detail;
    let a = &event(s, after).detail;
    assert_eq!(a["connections"], 1, "the server saw a new connection");
    assert_eq!(b["client"], a["client"], "the stream reconnected");
    assert!(a["bytes_echoed"].as_u64() > b["bytes_echoed"].as_u64());
    check_held(s, "tcp-stream");
}

/// The MN's home address in the Figure 1 lab.
pub const HOME: &str = "10.1.100.5";

/// The stream the MN opened itself without binding an address (`out`,
/// to the CN): the CN saw it from the home address at `first` and at
/// `last`, and it is the same connection with bytes echoed after.
pub fn home_stream_kept(s: &Summary, first: &str, last: &str) {
    for name in [first, last] {
        let d = &event(s, name).detail;
        for key in ["client", "peer"] {
            assert!(
                d[key]
                    .as_str()
                    .is_some_and(|a| a.starts_with(&format!("{HOME}:"))),
                "{name}: {key} is not the home address: {d}"
            );
        }
        assert_eq!(d["client"], d["peer"], "{name}: translated on the way");
    }
    same_stream(s, first, last);
}
