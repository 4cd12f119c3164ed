//! RFC 3519 UDP tunnelling through the userspace data plane: the same two
//! namespaces, tunnel data in UDP on the Mobile IP port, registrations on
//! the same socket handed to the caller.

mod dataplane_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use dataplane_support::*;
use mip4::dataplane::udp::MIP_PORT;
use mip4::dataplane::{DataPlane, Encapsulation, Role, TunnelBinding};
use mip4::netlink::Netlink;

const WAIT: Duration = Duration::from_secs(10);
const MN_PORT: u16 = 43_434;

type Control = tokio::sync::mpsc::Sender<(SocketAddrV4, Vec<u8>)>;

/// One end's plane over RFC 3519 UDP: its socket bound to `local`, the
/// tunnel to `remote`; the socket is returned too (the registrations'
/// and the tunnel's, shared).
fn udp_plane(
    ns: &Netns,
    role: Role,
    local: SocketAddrV4,
    remote: SocketAddrV4,
    control: Option<Control>,
) -> (Arc<tokio::net::UdpSocket>, (Arc<Netlink>, DataPlane)) {
    ns.run(async move {
        let udp = Arc::new(tokio::net::UdpSocket::bind(local).await.unwrap());
        let b = TunnelBinding {
            home: HOA,
            local: *local.ip(),
            remote,
            encapsulation: Encapsulation::Udp,
        };
        (udp.clone(), start_plane(role, b, Some(udp), control).await)
    })
}

#[test]
fn ping_and_tcp_cross_the_udp_tunnel_and_foreign_sources_are_dropped() {
    require_root();
    let p = Pair::new("udp");
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let ha_sock = SocketAddrV4::new(HA_ADDR.into(), MIP_PORT);
    let mn_sock = SocketAddrV4::new(COA.into(), MN_PORT);

    let (ha_ctl_tx, mut ha_ctl) = tokio::sync::mpsc::channel(8);
    let (_, (_ha_nl, ha)) = udp_plane(&p.ha, Role::HomeAgent, ha_sock, mn_sock, Some(ha_ctl_tx));
    let (mn_udp, (_mn_nl, mn)) = udp_plane(&p.mn, Role::MobileNode, mn_sock, ha_sock, None);

    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "no echo reply through the UDP tunnel"
    );
    let server = p.ha.run(tcp_echo_server(SocketAddrV4::new(CN, 5000)));
    assert!(
        p.mn.run(tcp_round_trip(HOA, SocketAddrV4::new(CN, 5000), 200_000)),
        "TCP data changed or lost in the UDP tunnel"
    );
    p.ha.join(server);
    assert!(counters(&ha).decapsulated > 0);

    // A registration request (type 1) on the shared socket reaches the
    // caller, with the source the tunnel must later use (RFC 3519).
    p.mn.run(async move {
        mn_udp.send_to(&[1, 0, 0, 180], ha_sock).await.unwrap();
    });
    let (from, msg) =
        p.ha.run(async move { tokio::time::timeout(WAIT, ha_ctl.recv()).await })
            .expect("control message not handed over")
            .expect("control channel closed");
    assert_eq!((from, msg), (mn_sock, vec![1, 0, 0, 180]));

    // Tunnel data from another port, for no home address of a binding:
    // not a tunnel endpoint, dropped and counted.
    let inner = udp_datagram(
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 65), 7000),
        SocketAddrV4::new(CN, 7001),
        b"spoof",
    );
    let mut msg = Vec::new();
    mip4::dataplane::udp::encapsulate(&inner, &mut msg).unwrap();
    let m = msg.clone();
    p.mn.run(async move {
        let other = std::net::UdpSocket::bind(SocketAddrV4::new(COA.into(), MN_PORT + 1)).unwrap();
        other.send_to(&m, ha_sock).unwrap();
    });
    assert!(
        wait_for(WAIT, || counters(&ha).unknown_tunnel_source == 1),
        "foreign UDP tunnel source not counted: {:?}",
        counters(&ha)
    );
    // From the registered endpoint but with a foreign inner source.
    let inner = udp_datagram(
        SocketAddrV4::new(Ipv4Addr::new(10, 99, 0, 66), 7000),
        SocketAddrV4::new(CN, 7001),
        b"spoof",
    );
    mip4::dataplane::udp::encapsulate(&inner, &mut msg).unwrap();
    p.mn.run(async move {
        // Forged from outside the plane's socket: a raw datagram with the
        // registered source address and port.
        send_raw(&udp_datagram(mn_sock, ha_sock, &msg)).await;
    });
    assert!(
        wait_for(WAIT, || counters(&ha).inner_address_mismatch == 1),
        "foreign inner source not counted: {:?}",
        counters(&ha)
    );
    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "plane stopped after bad input"
    );

    // RFC 3519 §6.1.2: another host behind the MN's NAT (the same
    // address, another port) forges tunnel data with the MN's home
    // address inside. Not the registered endpoint: dropped and counted,
    // and the binding stays where the registration put it.
    let inner = udp_datagram(
        SocketAddrV4::new(HOA, 7000),
        SocketAddrV4::new(CN, 7001),
        b"forged",
    );
    let mut m = Vec::new();
    mip4::dataplane::udp::encapsulate(&inner, &mut m).unwrap();
    let forger_addr = SocketAddrV4::new(COA.into(), MN_PORT + 2);
    let forger = p.mn.run(async move {
        let s = std::net::UdpSocket::bind(forger_addr).unwrap();
        s.send_to(&m, ha_sock).unwrap();
        s
    });
    assert!(
        wait_for(WAIT, || counters(&ha).unknown_tunnel_source == 2),
        "forged tunnel data not dropped: {:?}",
        counters(&ha)
    );
    assert_eq!(ha.status().bindings[0].remote, mn_sock);
    // The MN's traffic still reaches the MN; none reaches the forger.
    assert!(
        p.mn.run(ping(HOA, CN, WAIT)),
        "no echo reply after the forged datagram"
    );
    forger.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    assert_eq!(
        forger.recv_from(&mut buf).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "the forger received tunnel data"
    );
    drop((ha, mn));
}

/// The address of `dst`'s route as the kernel of `ns` reports it, with
/// its learnt path MTU when it has one (`ip route get`).
fn route_to(ns: &Netns, family: &str, dst: &str, src: &str) -> String {
    ns.ip(&format!("{family} route get {dst} from {src}"))
}

/// A UDP socket in `ns` bound to `addr`, for datagrams the test sends or
/// waits for (a read timeout: the wait is for the datagram itself).
fn udp_in(ns: &Netns, addr: std::net::SocketAddr) -> std::net::UdpSocket {
    let s = ns.run(async move { std::net::UdpSocket::bind(addr).unwrap() });
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// RFC 3519 tunnel data over a path narrower than the tunnel devices
/// (the veth pair at 1400, the devices at 1468): the outer DF follows the
/// datagram inside, as over IP in IP. IPv4 without DF: the outer datagram
/// is fragmented on the way and delivered. IPv4 with DF (RFC 2003 §3.1,
/// §5.1) and full-size IPv6 (RFC 4213 §3.2): the send is refused, the
/// source gets "fragmentation needed" or a Packet Too Big with the
/// tunnel MTU (1400 - 32) and learns it; the datagram is not delivered.
/// A smaller IPv6 datagram is. Before, the kernel's default for UDP
/// fragmented every oversized outer datagram, so IPv6 never learnt.
#[test]
fn on_a_narrower_path_df_follows_the_inner_datagram_and_too_big_is_answered() {
    use mip4::dataplane::binding::{Ipv6Binding, Ipv6TunnelTo};
    use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
    require_root();
    let p = Pair::new("udpdf");
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let ha_sock = SocketAddrV4::new(HA_ADDR.into(), MIP_PORT);
    let mn_sock = SocketAddrV4::new(COA.into(), MN_PORT);
    let (_, (_ha_nl, ha)) = udp_plane(&p.ha, Role::HomeAgent, ha_sock, mn_sock, None);
    let (_, (_mn_nl, mn)) = udp_plane(&p.mn, Role::MobileNode, mn_sock, ha_sock, None);
    // RFC 5454's IPv6 in the same tunnel (Tunneling Mode: to the care-of
    // address, right behind the Tunnel Data header).
    let v6 = Ipv6Binding {
        prefix: "2001:db8:5::/64".parse().unwrap(),
        tunnel_to: Ipv6TunnelTo::CareOf,
    };
    for dp in [&ha, &mn] {
        let DataPlane::Userspace(u) = dp else {
            panic!("the test's planes are userspace ones");
        };
        u.set_ipv6(HOA, Some(v6));
    }
    let (mn_v6, cn_v6): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8:5::2".parse().unwrap(),
        "2001:db8:88::1".parse().unwrap(),
    );
    p.mn.ip(&format!("-6 addr add {mn_v6}/128 dev lo nodad"));
    p.mn.ip(&format!("-6 route add {cn_v6}/128 dev mip4t0"));
    p.ha.ip(&format!("-6 addr add {cn_v6}/128 dev lo nodad"));
    p.ha.ip("link set vha mtu 1400");
    p.mn.ip("link set vmn mtu 1400");
    let too_big = || counters(&mn).too_big_sent;
    let mut buf = vec![0u8; 4096];
    // The datagram just sent was answered (the MN's `too_big_sent` reached
    // `n`), its source learnt the tunnel's MTU, and nothing arrived.
    let answered_not_delivered = |n, family, to: &str, from: &str, rx: &std::net::UdpSocket| {
        assert!(
            wait_for(WAIT, || too_big() == n),
            "{family}: not answered as too big: {:?}",
            counters(&mn)
        );
        let route = || route_to(&p.mn, family, to, from);
        assert!(
            wait_for(WAIT, || route().contains("mtu 1368")),
            "{family}: the source never learnt the tunnel MTU: {}",
            route()
        );
        rx.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 4096];
        assert!(rx.recv(&mut buf).is_err(), "{family}: sent on fragmented");
        rx.set_nonblocking(false).unwrap();
    };

    // IPv4 without DF, 2000 bytes: the MN's kernel fragments it to the
    // device's 1468 (fragments never carry DF), and each 1468-byte
    // fragment crosses the 1400 path fragmented outside.
    let v4 = |port| SocketAddr::V4(SocketAddrV4::new(CN, port));
    let rx = udp_in(&p.ha, v4(7100));
    let tx = udp_in(&p.mn, SocketAddr::V4(SocketAddrV4::new(HOA, 0)));
    tx.send_to(&[0x41; 2000], v4(7100)).unwrap();
    assert_eq!(rx.recv(&mut buf).ok(), Some(2000), "IPv4 without DF lost");
    assert_eq!(too_big(), 0);

    // IPv4 that fits the device: Linux sets DF on it (IP_PMTUDISC_WANT).
    let rx = udp_in(&p.ha, v4(7101));
    tx.send_to(&[0x42; 1440], v4(7101)).unwrap();
    answered_not_delivered(1, "-4", &CN.to_string(), &HOA.to_string(), &rx);

    // Full-size IPv6 (1468 bytes): a Packet Too Big with 1368, learnt;
    // not delivered. Then 1048 bytes, which fit: delivered.
    let v6 = |a, port| SocketAddr::V6(SocketAddrV6::new(a, port, 0, 0));
    let rx = udp_in(&p.ha, v6(cn_v6, 7102));
    let tx = udp_in(&p.mn, v6(mn_v6, 0));
    tx.send_to(&[0x66; 1420], v6(cn_v6, 7102)).unwrap();
    answered_not_delivered(2, "-6", &cn_v6.to_string(), &mn_v6.to_string(), &rx);
    tx.send_to(&[0x67; 1000], v6(cn_v6, 7102)).unwrap();
    assert_eq!(rx.recv(&mut buf).ok(), Some(1000), "smaller IPv6 lost");
    assert_eq!(counters(&ha).too_big_sent, 0);
    drop((ha, mn));
}
