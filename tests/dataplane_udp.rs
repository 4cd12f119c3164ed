//! RFC 3519 UDP tunnelling through the userspace data plane: the same two
//! namespaces, tunnel data in UDP on the Mobile IP port, registrations on
//! the same socket handed to the caller.

mod dataplane_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use dataplane_support::*;
use mip4::dataplane::udp::MIP_PORT;
use mip4::dataplane::{Encapsulation, Role, TunnelBinding};

const WAIT: Duration = Duration::from_secs(10);
const MN_PORT: u16 = 43_434;

#[test]
fn ping_and_tcp_cross_the_udp_tunnel_and_foreign_sources_are_dropped() {
    require_root();
    let p = Pair::new("udp");
    p.ha.ip(&format!("addr add {CN}/32 dev lo"));
    p.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let ha_sock = SocketAddrV4::new(HA_ADDR.into(), MIP_PORT);
    let mn_sock = SocketAddrV4::new(COA.into(), MN_PORT);

    let (ha_ctl_tx, mut ha_ctl) = tokio::sync::mpsc::channel(8);
    let (_ha_nl, ha) = p.ha.run(async move {
        let udp = Arc::new(tokio::net::UdpSocket::bind(ha_sock).await.unwrap());
        let b = TunnelBinding {
            home: HOA,
            local: HA_ADDR.into(),
            remote: mn_sock,
            encapsulation: Encapsulation::Udp,
        };
        start_plane(Role::HomeAgent, b, Some(udp), Some(ha_ctl_tx)).await
    });
    let (mn_udp, (_mn_nl, mn)) = p.mn.run(async move {
        let udp = Arc::new(tokio::net::UdpSocket::bind(mn_sock).await.unwrap());
        let b = TunnelBinding {
            home: HOA,
            local: COA.into(),
            remote: ha_sock,
            encapsulation: Encapsulation::Udp,
        };
        (
            udp.clone(),
            start_plane(Role::MobileNode, b, Some(udp), None).await,
        )
    });

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
