//! The probe socket's IPsec bypass (RFC 5266 §3.4): kernel XFRM
//! policies and routes into a VPN device catch ordinary sockets; the
//! probe socket leaves directly and gets its reply.

mod dataplane_support;

use std::net::SocketAddrV4;
use std::time::Duration;

use dataplane_support::*;
use mip4::netlink::bypass;

const WAIT: Duration = Duration::from_secs(5);

/// Runs a UDP echo on the HA side and returns its address.
fn echo_on_ha(p: &Pair) -> SocketAddrV4 {
    let addr = SocketAddrV4::new(HA_ADDR.into(), 4343);
    let s =
        p.ha.run(async move { std::net::UdpSocket::bind(addr).unwrap() });
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

#[test]
fn xfrm_policies_block_ordinary_sockets_but_not_the_probe() {
    require_root();
    let p = Pair::new("xfrm");
    let echo = echo_on_ha(&p);
    // What an IPsec policy without SAs does (strongSwan's trap/drop
    // policies look the same to a socket): block both ways.
    p.mn.ip("xfrm policy add dir out src 10.77.0.2/32 dst 10.77.0.1/32 proto udp action block");
    p.mn.ip("xfrm policy add dir in src 10.77.0.1/32 dst 10.77.0.2/32 proto udp action block");

    let (plain_errno, reply) = p.mn.run(async move {
        let plain = std::net::UdpSocket::bind(SocketAddrV4::new(COA.into(), 0)).unwrap();
        let plain_errno = plain.send_to(b"x", echo).unwrap_err().raw_os_error();

        let probe = bypass::probe_socket("vmn", SocketAddrV4::new(COA.into(), 0)).unwrap();
        probe.set_read_timeout(Some(WAIT)).unwrap();
        probe.send_to(b"probe", echo).unwrap();
        let mut buf = [0u8; 64];
        let reply = probe.recv(&mut buf).map(|n| buf[..n].to_vec());
        (plain_errno, reply)
    });
    assert_eq!(
        plain_errno,
        Some(libc::EPERM),
        "the policy did not catch a plain socket"
    );
    assert_eq!(reply.expect("probe reply"), b"probe");
    // Nothing global was installed: only the two test policies exist.
    assert_eq!(
        p.mn.ip("xfrm policy show").matches("action block").count(),
        2
    );
}

#[test]
fn routes_into_a_vpn_device_do_not_catch_the_pinned_probe() {
    require_root();
    let p = Pair::new("route");
    let echo = echo_on_ha(&p);
    // kernel-libipsec routes the VPN's traffic into its TUN device; a
    // host route into a veth whose peer is down plays that part here.
    p.mn.ip("link add vpn0 type veth peer name vpn0p");
    p.mn.ip("link set vpn0 up");
    p.mn.ip("route add 10.77.0.1/32 dev vpn0 table 220");
    p.mn.ip("rule add pref 220 lookup 220");
    let route = p.mn.ip("route get 10.77.0.1 from 10.77.0.2");
    assert!(
        route.contains("dev vpn0"),
        "the VPN route does not apply: {route}"
    );

    let reply = p.mn.run(async move {
        let probe = bypass::probe_socket("vmn", SocketAddrV4::new(COA.into(), 0)).unwrap();
        probe.set_read_timeout(Some(WAIT)).unwrap();
        probe.send_to(b"probe", echo).unwrap();
        let mut buf = [0u8; 64];
        probe.recv(&mut buf).map(|n| buf[..n].to_vec())
    });
    assert_eq!(reply.expect("probe reply past the VPN route"), b"probe");
}
