//! `tia-change` end to end on the Figure 1 lab (RFC 5266 §3.1.3, mode
//! 'mc'): the VPN is re-established make before break over a second
//! connection that the gateway serves from another pool, so the TIA
//! changes; mip4d registers the new TIA at once, the HA's binding follows,
//! terminating the old VPN sends nothing, and the correspondent's TCP
//! stream to the home address carries on. Needs root, strongSwan 5.9.8
//! (kernel-libipsec) and the plugin built against strongSwan's source.

mod lab_support;

use lab_support::{event, figure, home_stream_kept, run_passing, same_stream};

#[test]
fn lab_tia_change_registers_the_new_tia_at_once_and_keeps_the_stream() {
    let s = run_passing("tia-change");
    let (old, new) = (s.vars["TIA"].clone(), s.vars["TIA_B"].clone());
    assert_ne!(old, new, "the VPN came back with the same TIA");

    assert_eq!(
        event(&s, "ha_binding_1").detail["care_of_address"],
        old.as_str()
    );
    // The new TIA: registered once it was installed, the HA's binding
    // follows, from the new TIA.
    let b = &event(&s, "ha_binding_b").detail;
    assert_eq!(b["care_of_address"], new.as_str());
    assert!(
        b["source"]
            .as_str()
            .is_some_and(|src| src.starts_with(&format!("{new}:"))),
        "{b}"
    );
    let t = |n: &str| event(&s, n).t;
    assert!(t("tia_b_assigned") <= t("reg_sent_b"));
    assert!(t("reg_sent_b") < t("reg_reply_b"));
    assert!(t("reg_reply_b") <= t("ha_binding_b"));
    // Re-registered before the old VPN went: make before break.
    assert!(t("registered_b") < t("vpn_terminated"));
    assert_eq!(event(&s, "tia_b_assigned").detail["connection"], "vpn-b");

    // Terminating the old VPN sent no request.
    assert_eq!(figure(&s, "requests_sent_after_terminate"), 0.0);

    // The same TCP connection through both TIAs and after the old VPN.
    same_stream(&s, "stream_flowing", "stream_via_b");
    same_stream(&s, "stream_flowing", "stream_after_terminate");
    home_stream_kept(&s, "out_flowing", "out_via_b");
    home_stream_kept(&s, "out_flowing", "out_resumed");
    assert!(t("stream_after_terminate") > t("vpn_terminated"));

    for f in [
        "tia_to_request_ms",
        "tia_to_registered_ms",
        "registration_rtt_ms",
        "registration_rtt_rtts",
        "tia_to_registered_rtts",
        "tcp_stall_ms",
        "ping_lost",
        "rtt_access_a_ms",
    ] {
        figure(&s, f);
    }
}
