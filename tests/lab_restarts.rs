//! `charon-restart` and `mip4d-restart` end to end on the Figure 1 lab
//! (RFC 5266 §3.1.3, mode 'mc'): either process on the MN restarts and the
//! other recovers; the HA's binding converges to the VPN's TIA without any
//! manual action and the correspondent's TCP stream to the home address
//! carries on. Needs root, strongSwan 5.9.8 (kernel-libipsec) and the
//! plugin built against strongSwan's source.

mod lab_support;

use lab_support::{check_held, event, figure, run_passing, same_stream};

#[test]
fn lab_charon_restart_converges_the_binding_to_the_new_vpn() {
    let s = run_passing("charon-restart");
    let tia = s.vars["TIA_2"].clone();
    let t = |n: &str| event(&s, n).t;

    // The kill cut the plugin off; the restarted charon's plugin came back
    // with an empty snapshot, then the new IKE_SA's TIA was registered.
    assert!(t("charon_killed") <= t("plugin_lost"));
    assert!(t("plugin_lost") <= t("plugin_back"));
    let snap = &event(&s, "snapshot_after_restart").detail;
    assert_eq!(snap["ike_sas"], 0, "{snap}");
    assert!(t("plugin_back") <= t("tia_assigned_2"));
    assert!(t("tia_assigned_2") <= t("reg_sent_2"));
    assert!(t("reg_sent_2") < t("registered_2"));
    assert_eq!(event(&s, "registered_2").detail["care_of"], tia.as_str());
    // The HA's binding is the TIA the VPN has now.
    let b = &event(&s, "ha_binding_2").detail;
    assert_eq!(b["care_of_address"], tia.as_str());
    assert!(t("registered_2") <= t("ha_binding_2"));
    check_held(&s, "events mn/mip4d plugin_disconnected");

    same_stream(&s, "stream_flowing", "stream_resumed");
    assert!(t("stream_resumed") > t("charon_killed"));
    for f in [
        "kill_to_plugin_back_ms",
        "kill_to_tia_ms",
        "kill_to_registered_ms",
        "tia_to_registered_ms",
        "kill_to_ping_ms",
        "kill_to_tcp_ms",
        "tcp_stall_ms",
    ] {
        figure(&s, f);
    }
}

#[test]
fn lab_mip4d_restart_registers_the_tia_from_the_plugin_snapshot() {
    let s = run_passing("mip4d-restart");
    let tia = s.vars["TIA"].clone();
    let t = |n: &str| event(&s, n).t;

    // The new mip4d registered the VPN's TIA (learnt from the snapshot
    // alone, checked by evaltest on its log) and the binding is back.
    assert_eq!(event(&s, "registered_2").detail["care_of"], tia.as_str());
    assert!(t("stopped") < t("registered_2"));
    let b = &event(&s, "ha_binding_2").detail;
    assert_eq!(b["care_of_address"], tia.as_str());
    assert_ne!(
        b["identification"],
        event(&s, "ha_binding_1").detail["identification"],
        "the HA saw no new registration"
    );
    check_held(&s, "cat ");

    same_stream(&s, "stream_flowing", "stream_resumed");
    assert!(t("stream_resumed") > t("stopped"));
    for f in [
        "stop_to_registered_ms",
        "stop_to_ping_ms",
        "stop_to_tcp_ms",
        "tcp_stall_ms",
    ] {
        figure(&s, f);
    }
}
