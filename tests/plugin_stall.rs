//! A mip4d that accepts the plugin's connection and never reads holds up
//! neither charon's IKE work nor its shutdown: the
//! plugin gives up on a write after a bounded time, folds the events it
//! could not send into its bounded state, and charon stops within 2 s of
//! SIGTERM. Without the fix the bridge thread blocks in write() for ever
//! and charon's shutdown, which joins it, never ends.
//! Needs root and strongSwan 5.9.8; fails naming the missing piece.

mod plugin_support;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

use mip4::lab::charon::Charon;
use mip4::lab::{preflight, wait, WorkDir};
use plugin_support::{charon_config, hosts_dir, mn_and_gateway, StalledMip4d};

/// IKE_SA lifetimes driven through the stalled plugin: each fires six
/// hooks of a few hundred bytes, well past a unix socket's buffer.
const LIFETIMES: usize = 60;
/// How long charon may take to stop: what an operator's `systemctl stop`
/// (and a package upgrade) relies on.
const STOP_BOUND: Duration = Duration::from_secs(2);

#[test]
fn charon_stops_within_2s_while_mip4d_never_reads() {
    preflight().expect("lab preflight");
    let tmp = WorkDir::new("plugin-stall").unwrap();
    let (mn, gw) = mn_and_gateway();

    let stalled = StalledMip4d::listen(&tmp.path().join("mip4.sock"));
    let gw_c = Charon::start(&gw, &tmp.path().join("vpngw"), &Default::default()).unwrap();
    let mut mn_c = Charon::start(
        &mn,
        &tmp.path().join("mn"),
        &charon_config(tmp.path(), &stalled.path, ""),
    )
    .unwrap();
    gw_c.load_all(&hosts_dir().join("vpngw/swanctl.conf"))
        .unwrap();
    mn_c.load_all(&hosts_dir().join("mn/swanctl.conf")).unwrap();
    mn_c.wait_log(0, "mip4: connected to mip4d", Duration::from_secs(10))
        .unwrap();

    // charon's IKE work goes on while mip4d reads nothing.
    for _ in 0..LIFETIMES {
        mn_c.initiate("net").unwrap();
        mn_c.swanctl(&["--terminate", "--ike", "vpn", "--timeout", "10"])
            .unwrap();
    }
    assert!(stalled.connections() >= 1);

    let pid = mn_c.process_mut().pid();
    kill(Pid::from_raw(pid), Signal::SIGTERM)
        .unwrap_or_else(|e| panic!("SIGTERM to charon {pid}: {e}"));
    let stopped = wait::until(STOP_BOUND, "charon to exit after SIGTERM", || {
        (!mn_c.process_mut().is_running()).then_some(())
    });
    let log = mn_c.log_text();
    stopped.unwrap_or_else(|e| panic!("{e}; charon's log:\n{log}"));
    // The plugin hit the stall, said so, and did not wait for it.
    assert!(
        log.contains("stalled, not waiting"),
        "the plugin never found mip4d stalled: {LIFETIMES} lifetimes too few?"
    );
}
