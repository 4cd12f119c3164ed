//! `ipv6-access` end to end on the Figure 1 lab (issue 10 §4): the MN on
//! an IPv6-only access network (ext-a6) is untrusted by definition (the
//! probe is Mobile IPv4, RFC 5266 §3.4), its VPN runs over IPv6 with an
//! IPv4 TIA inside, mip4d registers the TIA through it (mode 'mc', RFC
//! 5266 §3.1.3) and sizes the tunnel for an IPv6 outer header; then
//! MOBIKE (RFC 4555) moves the IKE_SA to IPv4 behind a NAT: no
//! registration, the same TCP connection, and a full-size ping with DF
//! gets through on both accesses. Needs root and strongSwan 5.9.8
//! (kernel-libipsec), and the plugin built against strongSwan's source.

mod lab_support;

use lab_support::{event, figure, run_passing, same_stream};

#[test]
fn lab_ipv6_access_runs_mode_mc_over_ipv6_and_mobike_moves_it_to_ipv4_without_a_registration() {
    let s = run_passing("ipv6-access");
    let tia = s.vars["TIA"].clone();
    assert!(tia.starts_with("10.200.0."), "TIA {tia} not from the pool");

    // IPv6-only access: untrusted without a probe.
    let untrusted = &event(&s, "untrusted_ipv6").detail;
    assert_eq!(untrusted["to"]["address"], "2001:db8:a::100");
    assert!(
        untrusted["reason"]
            .as_str()
            .is_some_and(|r| r.contains("RFC 5266 §3.4")),
        "{untrusted}"
    );

    // The VPN over IPv6, with the IPv4 TIA inside, registered through it.
    let up = &event(&s, "vpn_up").detail;
    assert_eq!(up["local-host"], "2001:db8:a::100");
    assert_eq!(up["remote-host"], "2001:db8:cafe::10");
    assert_eq!(up["local-vips"], serde_json::json!([tia]));
    let b1 = &event(&s, "ha_binding_1").detail;
    assert_eq!(b1["care_of_address"], tia.as_str());

    // The tunnel sized for ESP over IPv6, then over IPv4 (kernel-libipsec:
    // ipsec0's 1400 bounds the IPv4 case): the full-size DF pings of
    // pre.dat and evaltest.dat used these sizes.
    assert_eq!(event(&s, "mtu_v6").detail["esp_overhead"], 105);
    assert_eq!(event(&s, "mtu_v4").detail["esp_overhead"], 85);
    assert_eq!(figure(&s, "tunnel_mtu_v6"), 1375.0);
    assert_eq!(figure(&s, "tunnel_mtu_v4"), 1380.0);
    let df = s
        .checks
        .iter()
        .find(|c| c.command.starts_with("ping -n -M do"))
        .expect("the full-size DF ping after the move ran");
    assert!(df.ok, "{df:?}");

    // MOBIKE from IPv6 to IPv4 behind the NAT, same IKE_SA, same gateway
    // (at its IPv4 address), TIA kept.
    let moved = &event(&s, "mobike_updated").detail;
    assert_eq!(moved["local-host"], "192.168.1.100");
    assert_eq!(moved["remote-host"], "203.0.113.10");
    assert_eq!(moved["local-vips"], serde_json::json!([tia]));
    let heard = &event(&s, "mobike_heard").detail;
    assert_eq!(heard["from"], "2001:db8:a::100");
    assert_eq!(heard["to"], "192.168.1.100");
    assert_eq!(heard["gateway"], "203.0.113.10");
    assert_eq!(event(&s, "kept_binding").detail["decision"], "keep_binding");

    // Zero registrations after the move: the HA's binding is the same one.
    let b2 = &event(&s, "ha_binding_2").detail;
    assert_eq!(b2["care_of_address"], tia.as_str());
    assert_eq!(b2["identification"], b1["identification"]);
    assert_eq!(figure(&s, "requests_sent_after_move"), 0.0);

    // One TCP connection throughout, bytes echoed after the move.
    same_stream(&s, "stream_flowing", "stream_resumed");
    assert!(event(&s, "stream_resumed").t > event(&s, "address_change").t);
    for f in [
        "move_to_mobike_ms",
        "move_to_tcp_ms",
        "ike_rtt_v6_ms",
        "ike_rtt_v4_ms",
    ] {
        figure(&s, f);
    }
}

/// `ipv6-access-detect`: mip4d with `[detect]` asks charon for the VPN
/// itself on the IPv6-only network, without a probe or a verdict, once an
/// IPv6 default route leads beyond the link; on ext-b the probe runs and
/// finds it untrusted while the mode 'mc' binding keeps carrying the data.
#[test]
fn lab_ipv6_access_detect_asks_for_the_vpn_on_ipv6_only_access_without_a_probe() {
    let s = run_passing("ipv6-access-detect");
    let tia = s.vars["TIA"].clone();
    let asked = &event(&s, "vpn_initiate_asked").detail;
    assert_eq!(asked["connection"], "vpn");
    assert!(
        asked["reason"]
            .as_str()
            .is_some_and(|r| r.contains("IPv6-only access")),
        "{asked}"
    );
    let assigned = &event(&s, "vpn_tia").detail;
    assert_eq!(assigned["local"], "2001:db8:a::100");
    assert_eq!(assigned["gateway"], "2001:db8:cafe::10");
    assert_eq!(
        event(&s, "ha_binding_1").detail["care_of_address"],
        tia.as_str()
    );
    // The probes: none on IPv6, one on ext-b (evaltest counts them).
    for c in [
        "events mn/mip4d probe_started",
        "events mn/mip4d vpn_requested",
    ] {
        let check = s
            .checks
            .iter()
            .find(|k| k.command.starts_with(c))
            .unwrap_or_else(|| panic!("no check `{c}`"));
        assert!(check.ok, "{check:?}");
    }
    assert_eq!(
        event(&s, "verdict_untrusted").detail["address"],
        "192.168.1.100"
    );
    assert_eq!(figure(&s, "requests_sent_after_move"), 0.0);
    same_stream(&s, "stream_flowing", "stream_resumed");
}
