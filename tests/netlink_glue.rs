//! The rtnetlink glue against a real kernel, in a fresh namespace; `ip`
//! is the independent oracle for what got installed.

mod dataplane_support;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use dataplane_support::*;
use mip4::netlink::{sysctl, NetEvent, Netlink, RouteSpec, RuleSpec, Watcher};

const WAIT: Duration = Duration::from_secs(5);

async fn next_matching(w: &mut Watcher, want: impl Fn(&NetEvent) -> bool) -> NetEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let ev = w.next().await.expect("watcher closed");
            if want(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("event did not arrive")
}

#[test]
fn address_and_link_changes_become_watcher_events() {
    require_root();
    let ns = Netns::new("watch");
    ns.ip("link add d0 type veth peer name d0p"); // no dummy module here
    ns.ip("link set d0p up");
    ns.run(async {
        let nl = Netlink::new().unwrap();
        let mut w = Watcher::new().unwrap();
        let d0 = nl.link_index("d0").await.unwrap();
        assert_eq!(nl.link_name(d0).await.unwrap(), "d0");

        nl.set_link_up(d0, true).await.unwrap();
        let ev = next_matching(
            &mut w,
            |e| matches!(e, NetEvent::LinkUp { ifindex, .. } if *ifindex == d0),
        )
        .await;
        assert_eq!(
            ev,
            NetEvent::LinkUp {
                ifindex: d0,
                ifname: "d0".into()
            }
        );
        assert!(nl.link_state(d0).await.unwrap().is_running());

        let a = Ipv4Addr::new(10, 55, 0, 1);
        nl.add_address(d0, a, 24).await.unwrap();
        // The link's IPv6 link-local address comes too: match the family.
        let ev = next_matching(
            &mut w,
            |e| matches!(e, NetEvent::AddressAdded { addr, .. } if addr.is_ipv4()),
        )
        .await;
        assert_eq!(
            ev,
            NetEvent::AddressAdded {
                ifindex: d0,
                ifname: "d0".into(),
                addr: a.into(),
                prefix_len: 24
            }
        );
        let listed = nl.list_addresses(Some(d0)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].addr, listed[0].prefix_len), (a, 24));

        nl.del_address(d0, a, 24).await.unwrap();
        let ev = next_matching(
            &mut w,
            |e| matches!(e, NetEvent::AddressRemoved { addr, .. } if addr.is_ipv4()),
        )
        .await;
        assert_eq!(
            ev,
            NetEvent::AddressRemoved {
                ifindex: d0,
                ifname: "d0".into(),
                addr: a.into(),
                prefix_len: 24
            }
        );
        assert!(nl.list_addresses(Some(d0)).await.unwrap().is_empty());

        // IPv6 too (an IPv6-only access network still carries the VPN):
        // `ip` adds it, the watcher reports it with the interface's name.
        let a6: Ipv6Addr = "2001:db8:55::1".parse().unwrap();
        let st = std::process::Command::new("ip")
            .args([
                "-6",
                "addr",
                "add",
                "2001:db8:55::1/64",
                "dev",
                "d0",
                "nodad",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let ev = next_matching(
            &mut w,
            |e| matches!(e, NetEvent::AddressAdded { addr, .. } if *addr == IpAddr::V6(a6)),
        )
        .await;
        assert_eq!(
            ev,
            NetEvent::AddressAdded {
                ifindex: d0,
                ifname: "d0".into(),
                addr: a6.into(),
                prefix_len: 64
            }
        );

        nl.set_link_up(d0, false).await.unwrap();
        let ev = next_matching(&mut w, |e| matches!(e, NetEvent::LinkDown { .. })).await;
        assert_eq!(
            ev,
            NetEvent::LinkDown {
                ifindex: d0,
                ifname: "d0".into()
            }
        );

        // A refused request is an error naming the operation, with errno.
        let err = nl.del_address(d0, a, 24).await.unwrap_err();
        assert!(err.to_string().contains("10.55.0.1/24"), "{err}");
        assert!(nl.link_index("nosuch0").await.is_err());
    });
}

#[test]
fn routes_and_rules_are_installed_and_removed() {
    require_root();
    let ns = Netns::new("routes");
    ns.ip("link add d0 type veth peer name d0p"); // no dummy module here
    ns.ip("link set d0p up");
    ns.ip("link set d0 up");
    ns.ip("addr add 10.55.0.1/24 dev d0");
    let d0 = ns.run(async { Netlink::new().unwrap().link_index("d0").await.unwrap() });

    let via = RouteSpec {
        dst: Ipv4Addr::new(10, 66, 0, 0),
        prefix_len: 24,
        via: Some(Ipv4Addr::new(10, 55, 0, 254)),
        dev: Some(d0),
        src: None,
        table: 100,
        metric: Some(5),
        mtu: None,
    };
    let r = via.clone();
    ns.run(async move { Netlink::new().unwrap().add_route(&r).await.unwrap() });
    let shown = ns.ip("route show table 100");
    assert!(
        shown.contains("10.66.0.0/24 via 10.55.0.254 dev d0"),
        "{shown}"
    );
    assert!(shown.contains("metric 5"), "{shown}");

    // add of an existing route is refused; replace swaps it for a
    // directly connected one with a preferred source.
    let r = via.clone();
    let errno = ns.run(async move {
        Netlink::new()
            .unwrap()
            .add_route(&r)
            .await
            .unwrap_err()
            .errno()
    });
    assert_eq!(errno, Some(libc::EEXIST));
    let direct = RouteSpec {
        via: None,
        src: Some(Ipv4Addr::new(10, 55, 0, 1)),
        ..via.clone()
    };
    let r = direct.clone();
    ns.run(async move { Netlink::new().unwrap().replace_route(&r).await.unwrap() });
    let shown = ns.ip("route show table 100");
    assert!(
        shown.contains("10.66.0.0/24 dev d0 proto static scope link src 10.55.0.1 metric 5"),
        "{shown}"
    );
    assert!(!shown.contains("via"), "{shown}");
    let r = direct.clone();
    ns.run(async move { Netlink::new().unwrap().del_route(&r).await.unwrap() });
    assert_eq!(ns.ip("route show table 100").trim(), "");

    let from_hoa = RuleSpec {
        from: Some((Ipv4Addr::new(10, 99, 0, 2), 32)),
        to: None,
        iif: None,
        table: 100,
        priority: 1000,
        ..Default::default()
    };
    let to_net = RuleSpec {
        from: None,
        to: Some((Ipv4Addr::new(10, 88, 0, 0), 16)),
        iif: Some("d0".into()),
        table: 300,
        priority: 1001,
        ..Default::default()
    };
    let (a, b) = (from_hoa.clone(), to_net.clone());
    ns.run(async move {
        let nl = Netlink::new().unwrap();
        nl.add_rule(&a).await.unwrap();
        nl.add_rule(&b).await.unwrap();
    });
    let shown = ns.ip("rule show");
    assert!(
        shown.contains("1000:\tfrom 10.99.0.2 lookup 100"),
        "{shown}"
    );
    assert!(
        shown.contains("1001:\tfrom all to 10.88.0.0/16 iif d0 lookup 300"),
        "{shown}"
    );
    let (a, b) = (from_hoa.clone(), to_net.clone());
    ns.run(async move {
        let nl = Netlink::new().unwrap();
        nl.del_rule(&a).await.unwrap();
        nl.del_rule(&b).await.unwrap();
    });
    let shown = ns.ip("rule show");
    assert!(
        !shown.contains("1000:") && !shown.contains("1001:"),
        "{shown}"
    );
}

#[test]
fn proxy_arp_entries_and_sysctls_for_a_home_link() {
    require_root();
    let ns = Netns::new("proxy");
    ns.ip("link add d0 type veth peer name d0p"); // no dummy module here
    ns.ip("link set d0p up");
    ns.ip("link set d0 up");
    let hoa = Ipv4Addr::new(10, 55, 0, 77);
    ns.run(async move {
        let nl = Netlink::new().unwrap();
        let d0 = nl.link_index("d0").await.unwrap();
        nl.add_proxy_neighbour(d0, hoa).await.unwrap();
        sysctl::set_ip_forward(true).unwrap();
        sysctl::set_proxy_arp("d0", true).unwrap();
        assert!(sysctl::ip_forward().unwrap());
        assert!(sysctl::proxy_arp("d0").unwrap());
    });
    let shown = ns.ip("neigh show proxy");
    assert!(shown.contains("10.55.0.77 dev d0 proxy"), "{shown}");
    let fwd = ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(fwd.trim(), "1");
    let parp = ns.exec(&["cat", "/proc/sys/net/ipv4/conf/d0/proxy_arp"]);
    assert_eq!(parp.trim(), "1");

    ns.run(async move {
        let nl = Netlink::new().unwrap();
        let d0 = nl.link_index("d0").await.unwrap();
        nl.del_proxy_neighbour(d0, hoa).await.unwrap();
        sysctl::set_proxy_arp("d0", false).unwrap();
    });
    assert!(!ns.ip("neigh show proxy").contains("10.55.0.77"));
    let parp = ns.exec(&["cat", "/proc/sys/net/ipv4/conf/d0/proxy_arp"]);
    assert_eq!(parp.trim(), "0");
}
