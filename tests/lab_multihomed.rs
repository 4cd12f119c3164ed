//! More than one interface up at once (issue 10 §5), end to end on the
//! Figure 1 lab: scenario `multihomed`. mip4d with `[detect]` prefers
//! trusted-2; trusted-1 coming up beside it moves nothing, the external
//! networks on the never-probe list (by prefix, by gateway MAC) send no
//! probe (captures), and trusted-2 going down moves the binding to
//! trusted-1 with the TCP stream intact. Scenario `verdict-cache`: a
//! known untrusted network is not probed again, a known trusted one is
//! (its probe is the authenticated registration). Needs root.

mod lab_support;

use lab_support::{check_held, event, figure, run_passing, same_stream};

const TRUSTED_1: &str = "10.1.10.100";
const TRUSTED_2: &str = "10.1.20.100";

#[test]
fn lab_multihomed_prefers_trusted_2_never_probes_the_excluded_and_fails_over_to_trusted_1() {
    let s = run_passing("multihomed");

    // trusted-2 first: probed, trusted, the binding.
    assert_eq!(
        event(&s, "ha_binding_t2").detail["care_of_address"],
        TRUSTED_2
    );
    // trusted-1 came up and its gateway was learned, yet nothing was sent
    // for it until trusted-2 went: one probe from it in the whole run,
    // and that one after the detach.
    check_held(&s, "events mn/mip4d probe_sent ifname=eth-t1");
    assert!(event(&s, "t1_probe").t >= event(&s, "detached").t);

    // The excluded networks: untrusted without a probe, ext-b once its
    // gateway's MAC was known.
    for (name, addr) in [
        ("verdict_ext_a", "192.0.2.100"),
        ("verdict_ext_b", "192.168.1.100"),
    ] {
        let v = &event(&s, name).detail;
        assert_eq!(v["address"], addr, "{v}");
        assert_eq!(v["verdict"], "untrusted", "{v}");
        assert_eq!(v["cause"], "never_probe", "{v}");
    }
    assert!(event(&s, "verdict_ext_b").t >= event(&s, "ext_b_gateway").t);
    check_held(&s, "events mn/mip4d probe_sent ifname=eth-a");
    check_held(&s, "events mn/mip4d probe_sent ifname=eth-b");
    check_held(&s, "clear-text ext_a");
    check_held(&s, "clear-text ext_b");

    // trusted-2 down: the binding on trusted-1, the same TCP stream.
    let b = &event(&s, "ha_binding_t1").detail;
    assert_eq!(b["care_of_address"], TRUSTED_1, "{b}");
    same_stream(&s, "stream_flowing", "stream_resumed");
    for f in [
        "rtt_access_ms",
        "down_to_probe_ms",
        "down_to_registered_ms",
        "down_to_registered_rtts",
        "probe_round_trip_rtts",
        "detach_to_registered_rtts",
        "detach_to_tcp_ms",
    ] {
        figure(&s, f);
    }
}

#[test]
fn lab_verdict_cache_spares_a_known_untrusted_network_and_still_confirms_a_trusted_one() {
    let s = run_passing("verdict-cache");

    // First visit of ext-a: probed, no answer.
    let v = &event(&s, "first_verdict").detail;
    assert_eq!(v["cause"], "no_reply", "{v}");
    // Second visit: the same gateway, untrusted from the cache, no probe.
    assert_eq!(
        event(&s, "ext_a_gateway_1").detail["gateway"],
        event(&s, "ext_a_gateway_2").detail["gateway"]
    );
    let c = &event(&s, "cached_verdict").detail;
    assert_eq!(
        (c["verdict"].as_str(), c["cause"].as_str()),
        (Some("untrusted"), Some("cached")),
        "{c}"
    );
    assert!(c["elapsed_ms"].is_null(), "no probe ran: {c}");
    check_held(
        &s,
        "events mn/mip4d probe_sent ifname=eth-a after=ext_a_gone",
    );
    check_held(&s, "clear-text ext_a");
    // trusted-1 again: probed again whatever the cache says, trusted on
    // the i-HA's authenticated TNC reply, registered.
    assert!(event(&s, "t1_probed_again").t <= event(&s, "t1_confirmed").t);
    assert_eq!(event(&s, "ha_binding").detail["care_of_address"], TRUSTED_1);
    figure(&s, "second_visit_to_verdict_ms");
}
