//! RFC 3519 on the mobile node (issue 10 §2; RFC 5266 §4, RFC 4093 §5.9):
//! the NAT scenarios end to end on the Figure 1 lab, with the real mip4d,
//! mip4-ha and (for `private-tia`) charons. mip4d asks for UDP
//! tunnelling, mip4-ha detects the NAT and grants it, and the tunnel runs
//! as Tunnel Data on UDP 434 with keepalives at the granted interval.
//! Needs root, nftables, conntrack, strongSwan 5.9.8 (kernel-libipsec)
//! and the plugin built against strongSwan's source.

mod lab_support;

use lab_support::{check_held, event, figure, run_passing, same_stream};
use mip4::lab::scenario::Summary;

/// The evaltest checks run on `host` ran and held.
fn held_on(s: &Summary, host: &str) {
    let checks: Vec<_> = s.checks.iter().filter(|c| c.host == host).collect();
    assert!(!checks.is_empty(), "no check ran on {host}");
    for c in checks {
        assert!(c.ok, "{c:?}");
    }
}

/// Mode 'c' behind a masquerading NAT between trusted subnet 2 and the
/// intranet: UDP tunnelling granted, the ping and the TCP stream flow.
#[test]
fn lab_trusted_nat_tunnels_in_udp_through_the_nat() {
    let s = run_passing("trusted-nat");
    // The HA's binding names the care-of address from the request (the
    // NAT's address is only where the tunnel goes).
    let b = &event(&s, "ha_binding").detail;
    assert_eq!(b["care_of_address"], "10.1.20.100", "{b}");
    assert_eq!(event(&s, "registered").detail["care_of"], "10.1.20.100");
    held_on(&s, "iha");
    held_on(&s, "mn");
    check_held(&s, "tcp-stream");
    let t = |n: &str| event(&s, n).t;
    assert!(t("registered") <= t("ping_flowing"));
}

/// The NAT's state flushed mid-stream: its next mapping takes another
/// port. The HA does not believe unauthenticated tunnel data from it
/// (RFC 3519 §6.1.2); mip4d finds the tunnel silent for 3 keepalive
/// intervals and registers again (§4.10), which moves the HA's tunnel to
/// the new port; the same TCP connection resumes.
#[test]
fn lab_nat_flush_mid_stream_is_repaired_by_a_registration() {
    let s = run_passing("nat-flush");
    held_on(&s, "iha");
    held_on(&s, "mn");
    same_stream(&s, "stream_flowing", "stream_resumed");
    assert!(figure(&s, "requests_sent_after_flush") >= 1.0);
    let t = |n: &str| event(&s, n).t;
    assert!(t("nat_flushed") <= t("nat_lost") && t("nat_lost") <= t("reregistered"));
    // Nothing flowed to the MN before the authenticated renewal moved
    // the HA's tunnel: it never followed the NAT's new port on its own.
    assert!(t("reregistered") <= t("ping_resumed"), "{:?}", s.figures);
    assert!(t("reregistered") <= t("stream_resumed"), "{:?}", s.figures);
    figure(&s, "flush_to_reregistered_ms");
    figure(&s, "flush_to_tcp_ms");
}

/// A private TIA behind the gateway's NAT, whose UDP mappings time out
/// after 3 s: an 8 s idle period is bridged by keepalives alone.
#[test]
fn lab_private_tia_keepalives_hold_the_nat_through_idle() {
    let s = run_passing("private-tia");
    let tia = s.vars["TIA"].clone();
    assert_eq!(
        event(&s, "ha_binding").detail["care_of_address"],
        tia.as_str()
    );
    held_on(&s, "iha");
    held_on(&s, "vpngw");
    same_stream(&s, "stream_flowing", "stream_resumed");
    // One a second through the 8 s idle period (one may fall at its edge).
    assert!(figure(&s, "keepalives_in_idle") >= 7.0, "{:?}", s.figures);
    let t = |n: &str| event(&s, n).t;
    assert!(t("idle_over") - t("stream_paused") >= 8.0);
}
