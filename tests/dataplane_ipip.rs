//! The userspace IP-in-IP data plane between two network namespaces: an
//! HA and an MN joined by a veth pair, the MN's home address reachable
//! only through the tunnel.

mod dataplane_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use dataplane_support::*;
use mip4::dataplane::ipip::{self, OuterHeader};
use mip4::dataplane::{
    Backend, BackendChoice, DataPlane, Encapsulation, Role, Tunnel, TunnelBinding, UserspaceConfig,
};

const WAIT: Duration = Duration::from_secs(10);

fn ha_binding() -> TunnelBinding {
    TunnelBinding {
        home: HOA,
        local: HA_ADDR.into(),
        remote: SocketAddrV4::new(COA.into(), 0),
        encapsulation: Encapsulation::IpInIp,
    }
}

fn mn_binding() -> TunnelBinding {
    TunnelBinding {
        home: HOA,
        local: COA.into(),
        remote: SocketAddrV4::new(HA_ADDR.into(), 0),
        encapsulation: Encapsulation::IpInIp,
    }
}

#[test]
fn ping_and_tcp_cross_the_userspace_ipip_tunnel_and_spoofs_are_dropped() {
    require_root();
    let p = Pair::new("ipip");
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let (_ha_nl, ha) =
        p.ha.run(start_plane(Role::HomeAgent, ha_binding(), None, None));
    let (_mn_nl, mn) =
        p.mn.run(start_plane(Role::MobileNode, mn_binding(), None, None));
    assert_eq!(ha.backend(), Backend::Userspace);

    // The MN's home address has no route but the tunnel: a reply proves
    // both directions (MN encapsulates, HA decapsulates and checks, HA
    // encapsulates, MN decapsulates and checks).
    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "no echo reply through the tunnel"
    );

    let before = counters(&ha);
    assert!(before.decapsulated > 0 && before.encapsulated > 0);
    assert_eq!(before.unknown_tunnel_source, 0);
    assert_eq!(before.inner_address_mismatch, 0);
    // Where the spoofs are aimed: if one got through, it would be the first
    // datagram this socket reads.
    let sink =
        p.ha.run(async { std::net::UdpSocket::bind(SocketAddrV4::new(CN, 7001)).unwrap() });

    // RFC 3024 ingress check: a wrong outer source (not the registered
    // care-of address) carrying the home address is dropped and counted.
    let inner = udp_datagram(
        SocketAddrV4::new(HOA, 7000),
        SocketAddrV4::new(CN, 7001),
        b"spoofed",
    );
    let mut outer = Vec::new();
    let forged_coa = Ipv4Addr::new(10, 77, 0, 3);
    ipip::encapsulate(
        &inner,
        &OuterHeader {
            src: forged_coa,
            dst: HA_ADDR.into(),
            ttl: 64,
        },
        1,
        &mut outer,
    )
    .unwrap();
    p.mn.run(async move { send_raw(&outer).await });
    assert!(
        wait_for(WAIT, || counters(&ha).unknown_tunnel_source == 1),
        "spoofed outer source not counted: {:?}",
        counters(&ha)
    );

    // The registered care-of address carrying somebody else's address as
    // inner source: dropped and counted too.
    let inner = udp_datagram(
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 66), 7000),
        SocketAddrV4::new(CN, 7001),
        b"spoofed",
    );
    let mut outer = Vec::new();
    ipip::encapsulate(
        &inner,
        &OuterHeader {
            src: COA.into(),
            dst: HA_ADDR.into(),
            ttl: 64,
        },
        2,
        &mut outer,
    )
    .unwrap();
    p.mn.run(async move { send_raw(&outer).await });
    assert!(
        wait_for(WAIT, || counters(&ha).inner_address_mismatch == 1),
        "spoofed inner source not counted: {:?}",
        counters(&ha)
    );
    // A legitimate datagram sent after both drops were counted is the
    // first one to arrive: neither spoof was delivered.
    p.mn.run(async {
        let u = std::net::UdpSocket::bind(SocketAddrV4::new(HOA, 7000)).unwrap();
        u.send_to(b"legit", SocketAddrV4::new(CN, 7001)).unwrap();
    });
    sink.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    let n = sink
        .recv(&mut buf)
        .expect("legitimate datagram through the tunnel");
    assert_eq!(&buf[..n], b"legit", "a spoofed datagram was delivered");

    let server = p.ha.run(tcp_echo_server(SocketAddrV4::new(CN, 5000)));
    assert!(
        p.mn.run(tcp_round_trip(HOA, SocketAddrV4::new(CN, 5000), 200_000)),
        "TCP data changed or lost in the tunnel"
    );
    p.ha.join(server);

    // A malformed datagram of protocol 4 is dropped and counted, not fatal.
    let mut junk = udp_datagram(
        SocketAddrV4::new(COA.into(), 1),
        SocketAddrV4::new(HA_ADDR.into(), 2),
        &[0x45, 0, 0, 99],
    );
    junk[9] = 4;
    junk[10] = 0;
    junk[11] = 0;
    let c = mip4::dataplane::ipv4::checksum(&junk[..20]);
    junk[10..12].copy_from_slice(&c.to_be_bytes());
    p.mn.run(async move { send_raw(&junk).await });
    assert!(
        wait_for(WAIT, || counters(&ha).malformed >= 1),
        "malformed tunnel datagram not counted: {:?}",
        counters(&ha)
    );
    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "plane stopped after bad input"
    );
    drop((ha, mn));
}

#[test]
fn moving_the_care_of_address_keeps_the_tunnel_working() {
    require_root();
    let p = Pair::new("move");
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let (_ha_nl, mut ha) =
        p.ha.run(start_plane(Role::HomeAgent, ha_binding(), None, None));
    let (_mn_nl, mut mn) =
        p.mn.run(start_plane(Role::MobileNode, mn_binding(), None, None));
    assert!(p.mn.run(ping(HOA, CN, WAIT)));

    // The MN gets a new care-of address; both ends move the tunnel.
    // (Deleting a primary address drops its secondaries unless
    // promote_secondaries is set.)
    let new_coa = Ipv4Addr::new(10, 77, 0, 20);
    p.mn.exec(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/vmn/promote_secondaries",
    ]);
    p.mn.ip(&format!("addr add {new_coa}/24 dev vmn"));
    p.mn.ip("addr del 10.77.0.2/24 dev vmn");
    futures::executor::block_on(ha.update_endpoint(
        HOA,
        HA_ADDR.into(),
        SocketAddrV4::new(new_coa, 0),
    ))
    .unwrap();
    futures::executor::block_on(mn.update_endpoint(
        HOA,
        new_coa,
        SocketAddrV4::new(HA_ADDR.into(), 0),
    ))
    .unwrap();
    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "no echo reply after the move"
    );
    assert_eq!(
        ha.status().bindings[0].remote,
        SocketAddrV4::new(new_coa, 0)
    );
}

#[test]
fn auto_backend_follows_the_kernels_ipip_support() {
    require_root();
    let ns = Netns::new("auto");
    // Independent oracle: can iproute2 create an ipip link here?
    let kernel_ipip = std::process::Command::new("ip")
        .args([
            "-n",
            &ns.name,
            "link",
            "add",
            "probe0",
            "type",
            "ipip",
            "remote",
            "192.0.2.1",
        ])
        .output()
        .unwrap()
        .status
        .success();
    if kernel_ipip {
        ns.ip("link del probe0");
    }
    let backend = ns.run(async {
        let nl = std::sync::Arc::new(mip4::netlink::Netlink::new().unwrap());
        let dp = DataPlane::start(
            nl.clone(),
            BackendChoice::Auto,
            UserspaceConfig::new("mip4t0", Role::HomeAgent),
        )
        .await
        .unwrap();
        dp.backend()
    });
    let expected = if kernel_ipip {
        Backend::Kernel
    } else {
        Backend::Userspace
    };
    assert_eq!(backend, expected);
    assert!(
        !ns.ip("link show").contains("mip4p"),
        "the ipip probe link was left behind"
    );
}

/// A mobile node whose plane checks its outer sources
/// ([`UserspaceConfig::sources`]), fed the care-of address on `vmn`, and a
/// second address there that keeps vmn's on-link route to the HA when
/// the care-of address goes (so the kernel would route a datagram from
/// it); the HA's plane with its binding.
struct CheckedNode {
    p: Pair,
    ha: DataPlane,
    mn: DataPlane,
    outer: mip4::dataplane::source::SharedSources,
}

const OTHER_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 30);

fn checked_node(tag: &str, ttl: u8) -> CheckedNode {
    require_root();
    let p = Pair::new(tag);
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    p.mn.exec(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv4/conf/vmn/promote_secondaries",
    ]);
    p.mn.ip(&format!("addr add {OTHER_ADDR}/24 dev vmn"));
    let (_ha_nl, ha) =
        p.ha.run(start_plane(Role::HomeAgent, ha_binding(), None, None));
    let outer = mip4::dataplane::source::SharedSources::default();
    let mut cfg = UserspaceConfig::new("mip4t0", Role::MobileNode);
    cfg.ttl = ttl;
    cfg.sources = Some(outer.clone());
    let (mn_nl, mn) = p.mn.run(start_plane_with(
        Role::MobileNode,
        mn_binding(),
        None,
        None,
        cfg,
    ));
    let vmn =
        p.mn.run(async move { mn_nl.link_index("vmn").await.unwrap() });
    outer.write().unwrap().added(vmn, COA.into());
    CheckedNode { p, ha, mn, outer }
}

impl CheckedNode {
    /// Ten datagrams from the home address after the care-of address
    /// went: each is refused at the MN (counted `stale_source`) and none
    /// reaches the HA. A datagram from the old care-of address would
    /// have been decapsulated there (the HA's binding still names it) or
    /// refused by its ingress check, counted either way; a ping from the
    /// remaining address, outside the tunnel, arrives after them.
    fn none_leave(&self, send: impl Fn()) {
        let before = counters(&self.ha);
        for _ in 0..10 {
            send();
        }
        assert!(
            wait_for(WAIT, || counters(&self.mn).stale_source == 10),
            "not refused at the MN: {:?}",
            counters(&self.mn)
        );
        assert_eq!(counters(&self.mn).send_errors, 0);
        assert!(self.p.mn.run(ping(OTHER_ADDR, HA_ADDR.into(), WAIT)));
        let after = counters(&self.ha);
        assert_eq!(
            (after.decapsulated, after.unknown_tunnel_source),
            (before.decapsulated, before.unknown_tunnel_source),
            "an outer datagram left from the care-of address that went"
        );
    }
}

/// A UDP datagram from the home address to the CN with the inner `tos`
/// and DF, sent inside the MN's namespace.
fn send_from_home(p: &Pair, tos: u8, df: bool, payload: &'static [u8]) {
    use socket2::SockRef;
    use std::os::fd::AsFd;
    p.mn.run(async move {
        let u = std::net::UdpSocket::bind(SocketAddrV4::new(HOA, 0)).unwrap();
        SockRef::from(&u).set_tos(u32::from(tos)).unwrap();
        let mode = if df {
            libc::IP_PMTUDISC_DO
        } else {
            libc::IP_PMTUDISC_DONT
        };
        mip4::sys::socket::setsockopt(u.as_fd(), libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, &mode)
            .unwrap();
        u.send_to(payload, SocketAddrV4::new(CN, 7001)).unwrap();
    })
}

/// The mobile node's plane sends only from addresses the node has: its
/// care-of address removed while traffic flows (the link and its route
/// stay, through another address, so the kernel would send it), nothing
/// more leaves from it; each datagram is dropped and counted
/// `stale_source`. The plane learns the removal from rtnetlink, as mip4d
/// feeds it.
#[test]
fn nothing_leaves_from_a_care_of_address_that_went() {
    use mip4::dataplane::source::SourceVerdict;
    use mip4::netlink::{NetEvent, Watcher};
    let n = checked_node("stale", ipip::DEFAULT_TTL);
    // mip4d's feed: every event after the addresses there are.
    let feed = n.outer.clone();
    let watcher = n.p.mn.spawn(async move {
        let mut w = Watcher::new().expect("netlink watcher");
        while let Some(ev) = w.next().await {
            match ev {
                NetEvent::AddressRemoved {
                    ifindex,
                    addr: std::net::IpAddr::V4(a),
                    ..
                } => feed.write().unwrap().removed(ifindex, a),
                NetEvent::AddressAdded {
                    ifindex,
                    addr: std::net::IpAddr::V4(a),
                    ..
                } => feed.write().unwrap().added(ifindex, a),
                _ => {}
            }
        }
    });
    assert!(n.p.mn.run(ping(HOA, CN, WAIT)), "no echo reply before");
    assert_eq!(counters(&n.mn).stale_source, 0);

    n.p.mn.ip("addr del 10.77.0.2/24 dev vmn");
    let stale = || n.outer.read().unwrap().check(COA.into());
    assert!(
        wait_for(WAIT, || stale() == SourceVerdict::Stale),
        "the removal never reached the plane"
    );
    n.none_leave(|| send_from_home(&n.p, 0, false, b"after"));
    watcher.abort();
}

/// The kernel has the last word on the outer source (RFC 5266 §3.1.3:
/// nothing of the home address leaves in the clear from an address the
/// node no longer has). mip4d's view of the addresses lags the kernel
/// under load: here it never hears that the care-of address went, so
/// only the kernel can refuse. While the address is there, the outer
/// header carries the plane's TTL and the inner TOS and DF (RFC 2003
/// §3.1); once it has gone, each datagram is refused, counted
/// `stale_source`, and none reaches the HA.
#[test]
fn the_kernel_refuses_a_care_of_address_the_plane_still_believes_in() {
    use mip4::dataplane::ipv4::Ipv4Packet;
    use mip4::dataplane::source::SourceVerdict;
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let n = checked_node("refuse", 33);
    // A copy of each IP-in-IP datagram that reaches the HA.
    let tap = n.p.ha.run(async {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(4))).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    });
    // The next datagram at the tap that carries `payload` (skipping the
    // rest), as its outer header's (src, ttl, tos, DF) and the inner TOS.
    let mut buf = vec![0u8; 65_535];
    let mut arrived = |payload: &[u8]| loop {
        let n = (&tap)
            .read(&mut buf)
            .expect("no tunnelled datagram at the HA");
        let o = Ipv4Packet::new_checked(&buf[..n]).unwrap();
        let Ok(i) = Ipv4Packet::new_checked(o.payload()) else {
            continue;
        };
        if i.payload().get(8..) == Some(payload) {
            assert_eq!((o.protocol(), o.dst_addr()), (4, HA_ADDR.into()));
            return (o.src_addr(), o.ttl(), o.tos(), o.dont_frag(), i.tos());
        }
    };
    send_from_home(&n.p, 0xb8, true, b"with DF");
    assert_eq!(
        arrived(b"with DF"),
        (COA.into(), 33, 0xb8, true, 0xb8),
        "outer (source, TTL, TOS, DF), inner TOS"
    );
    send_from_home(&n.p, 0x20, false, b"without DF");
    assert_eq!(arrived(b"without DF"), (COA.into(), 33, 0x20, false, 0x20));

    n.p.mn.ip("addr del 10.77.0.2/24 dev vmn");
    assert_eq!(
        n.outer.read().unwrap().check(COA.into()),
        SourceVerdict::Send,
        "the plane's own view was told nothing"
    );
    n.none_leave(|| send_from_home(&n.p, 0, false, b"after"));
    tap.set_nonblocking(true).unwrap();
    while let Ok(len) = (&tap).read(&mut buf) {
        assert!(
            !buf[..len].ends_with(b"after"),
            "the HA got a datagram from the care-of address that went"
        );
    }
}
