//! mip4d's VPN guard (issue 13, kill-anytime) against a real kernel, in
//! a fresh namespace built like the MN under kernel-libipsec: the TIA on
//! the access interface, charon's rule (priority 220) into table 220,
//! whose route into the VPN goes through charon's TUN. When that TUN goes
//! (charon killed), what must stay inside ESP is refused by the kernel at
//! once, while the probe, marked, still leaves from the physical address.

mod dataplane_support;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use dataplane_support::*;
use mip4::daemons::mn::kernel::guard_rules;
use mip4::mn::node::VpnGuard;
use mip4::netlink::{bypass, Netlink};

const ACCESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const TIA: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 9);
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 2);
const ELSEWHERE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// Sends one datagram to `dst` from a socket bound to `src` (any port).
fn send_from(src: Ipv4Addr, dst: Ipv4Addr) -> io::Result<usize> {
    let s = UdpSocket::bind(SocketAddrV4::new(src, 0))?;
    s.send_to(b"x", SocketAddrV4::new(dst, 434))
}

fn unreachable(r: io::Result<usize>) -> bool {
    r.is_err_and(|e| e.raw_os_error() == Some(libc::ENETUNREACH))
}

/// The MN's namespace: `d0` the access link (default route), `vpn0` a
/// stand-in for kernel-libipsec's TUN with the route into the VPN in
/// table 220, charon's rule; the TIA on the access interface.
fn mn_under_kernel_libipsec() -> Netns {
    let ns = Netns::new("guard");
    ns.ip("link add d0 type veth peer name d0p");
    ns.ip("link add vpn0 type veth peer name vpn0p");
    for l in ["d0", "d0p", "vpn0", "vpn0p"] {
        ns.ip(&format!("link set {l} up"));
    }
    ns.ip(&format!("addr add {ACCESS}/24 dev d0"));
    ns.ip(&format!("addr add {TIA}/32 dev d0"));
    ns.ip("route add default via 192.0.2.1 dev d0");
    ns.ip(&format!(
        "route add 10.1.0.0/16 dev vpn0 src {TIA} table 220"
    ));
    ns.ip("rule add priority 220 lookup 220");
    ns
}

#[test]
fn without_the_vpn_routes_the_guard_refuses_what_must_stay_inside_esp() {
    require_root();
    let ns = mn_under_kernel_libipsec();
    // The defect: with the VPN's route gone, a datagram from the TIA to
    // the home agent takes the main table, outside ESP.
    ns.ip("link del vpn0");
    let leaked = ns.run(async { send_from(TIA, HA) });
    assert!(leaked.is_ok(), "{leaked:?}");
    assert!(
        ns.ip(&format!("route get {HA} from {TIA}"))
            .contains("dev d0"),
        "without the guard the main table routes it"
    );
    ns.ip("link add vpn0 type veth peer name vpn0p");
    ns.ip("link set vpn0 up");
    ns.ip(&format!(
        "route add 10.1.0.0/16 dev vpn0 src {TIA} table 220"
    ));

    let guard = VpnGuard {
        tia: TIA,
        home_agent: HA,
    };
    ns.run(async move {
        let nl = Netlink::new().unwrap();
        for r in guard_rules(guard) {
            nl.add_rule(&r).await.unwrap();
        }
    });
    let rules = ns.ip("rule show");
    assert!(
        rules.contains(&format!("222:\tfrom all to {HA} unreachable")),
        "{rules}"
    );
    assert!(
        rules.contains(&format!("222:\tfrom {TIA} unreachable")),
        "{rules}"
    );
    assert!(
        rules.contains("221:\tfrom all fwmark 0x434 lookup main"),
        "{rules}"
    );

    // With the VPN's routes, charon's table answers first: the guard
    // changes nothing.
    assert!(ns
        .ip(&format!("route get {HA} from {TIA}"))
        .contains("dev vpn0"));
    assert!(ns.run(async { send_from(TIA, HA) }).is_ok());
    assert!(ns
        .run(async { send_from(Ipv4Addr::UNSPECIFIED, HA) })
        .is_ok());

    // charon killed: its TUN, and with it table 220's route, is gone.
    ns.ip("link del vpn0");
    assert_eq!(ns.ip("route show table 220").trim(), "");
    // Renewals from the TIA, and the outer datagrams of a raw socket that
    // looks its route up without a source, are refused.
    assert!(unreachable(ns.run(async { send_from(TIA, HA) })));
    assert!(unreachable(
        ns.run(async { send_from(Ipv4Addr::UNSPECIFIED, HA) })
    ));
    // Nothing from the TIA leaves by the main table either.
    assert!(unreachable(ns.run(async { send_from(TIA, ELSEWHERE) })));
    // Other traffic is not the guard's business.
    assert!(ns.run(async { send_from(ACCESS, ELSEWHERE) }).is_ok());
    // The probe (RFC 5266 §3.4) still leaves in the clear from the
    // physical address.
    let probe = ns.run(async {
        let s = bypass::probe_socket("d0", SocketAddrV4::new(ACCESS, 0))?;
        s.send_to(b"probe", SocketAddrV4::new(HA, 434))
    });
    assert!(probe.is_ok(), "{probe:?}");
    // By its gateway: a refused lookup on a socket bound to a device
    // would be taken for on-link instead, and the probe would vanish.
    let route = ns.ip(&format!("route get {HA} from {ACCESS} mark 0x434 oif d0"));
    assert!(route.contains("via 192.0.2.1 dev d0"), "{route}");
}
