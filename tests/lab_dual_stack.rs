//! `dual-stack` end to end on the Figure 1 lab (issue 11 §2, RFC 5454):
//! mip4d asks mip4-ha for an IPv6 home prefix in every registration, puts
//! its IPv6 home address on its tunnel device when granted, and IPv6
//! flows between the correspondent and that address across c -> mc -> c
//! (ping6 and one TCP-over-IPv6 connection); a spoofed inner IPv6 source
//! from the MN side is dropped and counted by mip4-ha; the captures show
//! IPv6 inside IPv4 both ways, and none of it outside ESP outside; a
//! mip4d killed and started again sweeps what it left. Needs
//! root, strongSwan 5.9.8 (kernel-libipsec) and the plugin.

mod lab_support;

use lab_support::{check_held, event, run_passing, same_stream};

#[test]
fn lab_dual_stack_carries_ipv6_to_the_prefix_across_c_mc_c_and_counts_spoofed_sources() {
    let s = run_passing("dual-stack");
    // RFC 5454 §2.2 code 1: granted, tunnelled to the care-of address.
    let up = &event(&s, "ipv6_up_c1").detail;
    assert_eq!(up["address"], "2001:db8:10::1");
    assert_eq!(up["prefix"], "2001:db8:10::/64");
    assert_eq!(up["tunnel_to"], "care-of");
    // Mode 'mc' with the TIA as care-of address, then 'c' again; after
    // each move the same TCP-over-IPv6 connection carried new bytes.
    let tia = s.vars["TIA"].clone();
    assert_eq!(
        event(&s, "ha_binding_mc").detail["care_of_address"],
        tia.as_str()
    );
    assert_eq!(
        event(&s, "ha_binding_c2").detail["care_of_address"],
        "10.1.10.100"
    );
    same_stream(&s, "stream6_flowing", "stream6_mc");
    same_stream(&s, "stream6_mc", "stream6_c2");
    assert!(event(&s, "ping6_mc").t > event(&s, "registered_mc").t - 1.0);
    // The IPv6 home address stayed through both moves.
    check_held(&s, "events mn/mip4d ipv6_home_down");
    check_held(&s, "ip -6 -o addr show to 2001:db8:10::1/128");
    // §3.3.2, §4: the spoofed inner sources dropped and counted (what
    // the spoof added to the HA's count, read before it).
    let counters = s
        .checks
        .iter()
        .find(|c| c.command.contains("spoofed-before") && c.pattern.contains("added=5"))
        .expect("the HA's counters were checked");
    assert!(counters.ok, "{counters:?}");
    // SIGKILL: the next instance swept the old prefix rule, put the
    // address back, and the same connection went on.
    same_stream(&s, "stream6_c2", "stream6_again");
    // ... and on after the new instance had put its address back (the
    // wait itself requires bytes echoed past that point). With the
    // userspace plane the TUN device went with the killed instance, so
    // nothing was echoed between the kill and the new address: one echo
    // may answer both waits, the byte counts then equal.
    let (again, restarted) = (
        &event(&s, "stream6_again").detail,
        &event(&s, "stream6_restarted").detail,
    );
    assert_eq!(
        restarted["connections"], 1,
        "the server saw a new connection"
    );
    assert_eq!(
        again["client"], restarted["client"],
        "the stream reconnected"
    );
    assert!(restarted["bytes_echoed"].as_u64() >= again["bytes_echoed"].as_u64());
    assert!(event(&s, "ping6_restarted").t >= event(&s, "ipv6_up_again").t);
    check_held(&s, "ip -6 rule show");
    check_held(&s, "events mn/mip4d-2 ipv6_home_up");
    // tshark (or the lab's pcap reader) saw IPv6 in IPv4 both ways, with each care-of address, and
    // none of it outside ESP on external A.
    check_held(&s, "ipv6-in-ipv4 ha-link");
    check_held(&s, "ipv6-in-ipv4 t1");
    check_held(&s, "ipv6-in-ipv4 ext-a");
}
