//! `mn-originated` end to end on the Figure 1 lab: a TCP
//! stream the MN opens without binding a source leaves from the home
//! address in mode 'c', and carries on through mode 'mc' and back to
//! mode 'c': the correspondent sees the home address, one connection, no
//! reset. Needs root, strongSwan 5.9.8 (kernel-libipsec) and the plugin
//! built against strongSwan's source.

mod lab_support;

use lab_support::{check_held, event, figure, home_stream_kept, run_passing};

#[test]
fn lab_mn_originated_stream_keeps_the_home_address_across_c_mc_c() {
    let s = run_passing("mn-originated");
    // The CN accepted the connection from the home address, not from the
    // care-of address the MN had when it opened it, and kept it through
    // mode 'mc' and back to mode 'c'.
    home_stream_kept(&s, "stream_in_c", "stream_in_mc");
    home_stream_kept(&s, "stream_in_mc", "stream_in_c_again");
    let t = |n: &str| event(&s, n).t;
    assert!(t("registered_mc") > t("stream_in_c"));
    assert!(t("stream_in_mc") > t("registered_mc"));
    assert!(t("stream_in_c_again") > t("registered_c_again"));

    // Exclusions: the home agent kept the care-of address, an on-link
    // destination never got the home address (and answered); other
    // destinations got the home address.
    check_held(&s, "ip -4 route get");
    check_held(&s, "ping");
    for f in [
        "leg1_to_tcp_ms",
        "leg2_to_tcp_ms",
        "tcp_stall_ms",
        "rtt_access_ms",
    ] {
        figure(&s, f);
    }
}
