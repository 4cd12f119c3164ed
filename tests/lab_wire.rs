//! The lab's links: the userspace delay line (frames cross it: ARP, ICMP,
//! TCP with GSO; no IP frame arrives before its time, and the access
//! link's own frames, ARP and IPv6 Neighbor Discovery, are not held) and
//! the MN's access links brought up and down in a move. Needs root.

use std::time::Duration;

use mip4::lab::netns::{unique_prefix, veth, Netns};
use mip4::lab::wire::Wire;
use mip4::lab::{preflight, wait};

fn rtt_ms(out: &str) -> f64 {
    // "rtt min/avg/max/mdev = 40.1/40.3/40.6/0.2 ms"
    let line = out
        .lines()
        .find(|l| l.starts_with("rtt"))
        .expect("ping summary");
    let nums = line.split('=').nth(1).unwrap().trim();
    nums.split('/').next().unwrap().parse().unwrap()
}

/// Hosts x (10.9.0.1, fd00:9::1) and y (10.9.0.2, fd00:9::2) with their
/// link's ends `a` and `b` in namespace w, for a wire to join.
fn two_hosts() -> (Netns, Netns, Netns) {
    preflight().expect("lab preflight");
    let prefix = unique_prefix();
    let x = Netns::new(&prefix, "x").unwrap();
    let y = Netns::new(&prefix, "y").unwrap();
    let w = Netns::new(&prefix, "wire").unwrap();
    veth(&x, "eth0", &w, "a").unwrap();
    veth(&y, "eth0", &w, "b").unwrap();
    x.add_addr("eth0", "10.9.0.1/24").unwrap();
    y.add_addr("eth0", "10.9.0.2/24").unwrap();
    x.add_addr("eth0", "fd00:9::1/64").unwrap();
    y.add_addr("eth0", "fd00:9::2/64").unwrap();
    (x, y, w)
}

/// An ICMP counter of the host (`Icmp` row of /proc/net/snmp for IPv4,
/// `Icmp6<name>` of /proc/net/snmp6 for IPv6), read inside its namespace.
fn icmp_counter(ns: &Netns, v6: bool, name: &str) -> u64 {
    if v6 {
        let text = ns.exec("cat", &["/proc/net/snmp6"]).unwrap();
        let key = format!("Icmp6{name}");
        text.lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(key.as_str())).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no {key} in /proc/net/snmp6"))
    } else {
        let text = ns.exec("cat", &["/proc/net/snmp"]).unwrap();
        let mut rows = text.lines().filter(|l| l.starts_with("Icmp:"));
        let (names, values) = (rows.next().unwrap(), rows.next().unwrap());
        let i = names.split_whitespace().position(|n| n == name).unwrap();
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    }
}

/// Whether x has resolved `dst` on its link (a link-layer address, not
/// still INCOMPLETE).
fn resolved(x: &Netns, dst: &str) -> bool {
    let out = x
        .ip(&["neigh", "show", dst, "dev", "eth0"])
        .unwrap_or_default();
    out.contains("lladdr") && !out.contains("INCOMPLETE") && !out.contains("FAILED")
}

#[test]
fn lab_wire_delays_both_directions_and_carries_tcp() {
    let (x, y, w) = two_hosts();
    let _wire = Wire::start(&w, "a", "b", Duration::from_millis(10)).unwrap();

    wait::until(
        Duration::from_secs(5),
        "first reply across the wire",
        || x.ping_once("10.9.0.1", "10.9.0.2", 500).then_some(()),
    )
    .unwrap();
    let out = x
        .exec("ping", &["-n", "-q", "-c", "5", "-i", "0.05", "10.9.0.2"])
        .unwrap();
    // Each direction holds frames 10 ms: no reply can come sooner than
    // 20 ms (a lower bound the relay guarantees, not a speed figure).
    assert!(rtt_ms(&out) >= 20.0, "{out}");

    // A TCP transfer bigger than the MTU crosses intact (GSO frames and
    // partial checksums through PACKET_VNET_HDR).
    let server = "import socket,hashlib\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.9.0.2',5001));s.listen(1)\nc,_=s.accept();h=hashlib.sha256()\nwhile True:\n d=c.recv(65536)\n if not d: break\n h.update(d)\nprint(h.hexdigest())";
    let client = "import socket,hashlib,time\ndata=bytes(range(256))*4096\nfor i in range(100):\n try:\n  s=socket.create_connection(('10.9.0.2',5001));break\n except OSError: time.sleep(0.05)\ns.sendall(data);s.close()\nprint(hashlib.sha256(data).hexdigest())";
    let y2 = y
        .command("python3")
        .args(["-c", server])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sent = x.exec("python3", &["-c", client]).unwrap();
    let received = y2.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&received.stdout).trim(),
        sent.trim()
    );
}

#[test]
fn lab_wire_loses_the_share_of_frames_it_is_set_to() {
    let (x, _y, w) = two_hosts();
    let wire = Wire::start(&w, "a", "b", Duration::from_millis(1)).unwrap();
    wait::until(Duration::from_secs(5), "first reply", || {
        x.ping_once("10.9.0.1", "10.9.0.2", 500).then_some(())
    })
    .unwrap();
    // The neighbours are resolved (the first reply) before the loss starts.
    let ping = |n: &str| {
        x.exec(
            "ping",
            &["-n", "-q", "-c", n, "-i", "0.005", "-W", "1", "10.9.0.2"],
        )
        .unwrap_or_else(|e| e.to_string())
    };
    wire.set_loss(10.0, 42);
    let out = ping("400");
    let dropped = wire.dropped();
    // Each echo crosses twice: 1 - 0.9^2 = 19 % of the round trips lost on
    // average; 400 of them put 5..40 % beyond any honest doubt.
    let lost: f64 = out
        .split(", ")
        .find_map(|p| p.strip_suffix("% packet loss"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no loss figure in {out}"));
    assert!((5.0..40.0).contains(&lost), "{lost}% lost: {out}");
    assert!(dropped >= 20, "{dropped} frames dropped");
    // Loss off: nothing more is dropped.
    wire.set_loss(0.0, 0);
    let out = ping("50");
    assert!(out.contains(" 0% packet loss"), "{out}");
    assert_eq!(wire.dropped(), dropped);
}

/// The delay stands for the path beyond the access router: ARP and IPv6
/// Neighbor Discovery cross at once, IP waits. Shown by order, not by a
/// clock: x sends an echo, which the wire holds a whole second; then x
/// forgets y's link-layer address and asks again. The answer comes back
/// while the echo is still on the wire (y has not seen it), and the echo
/// arrives after. A relay that held ARP or ND behind the echo would
/// deliver the echo first.
#[test]
fn lab_wire_passes_arp_and_nd_at_once_and_holds_ip() {
    let (x, y, w) = two_hosts();
    let hold = Duration::from_secs(1);
    let _wire = Wire::start(&w, "a", "b", hold).unwrap();
    for (v6, dst) in [(false, "10.9.0.2"), (true, "fd00:9::2")] {
        let family = if v6 { "-6" } else { "-4" };
        let ping = |count: &str| {
            x.command("ping")
                .args(["-n", "-q", "-c", count, "-W", "5", dst])
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        // Neighbours resolved both ways, then the echo that waits.
        assert!(ping("1").wait().unwrap().success(), "{dst}: no reply");
        let arrived = icmp_counter(&y, v6, "InEchos");
        let sent = icmp_counter(&x, v6, "OutEchos");
        let mut held = ping("1");
        wait::until(Duration::from_secs(5), "the echo sent", || {
            (icmp_counter(&x, v6, "OutEchos") > sent).then_some(())
        })
        .unwrap();
        x.ip(&[family, "neigh", "flush", "dev", "eth0"]).unwrap();
        assert!(!resolved(&x, dst), "{dst} still resolved after the flush");
        // Resolving again: ARP (or a Neighbor Solicitation) and its answer.
        let mut probe = ping("1");
        wait::until(
            Duration::from_secs(5),
            &format!("{dst} resolved again"),
            || resolved(&x, dst).then_some(()),
        )
        .unwrap();
        assert_eq!(
            icmp_counter(&y, v6, "InEchos"),
            arrived,
            "{dst}: the echo sent before the resolution arrived first"
        );
        // The held echo does arrive, and both are answered.
        wait::until(Duration::from_secs(5), "the held echo at y", || {
            (icmp_counter(&y, v6, "InEchos") > arrived).then_some(())
        })
        .unwrap();
        assert!(
            held.wait().unwrap().success(),
            "{dst}: held echo unanswered"
        );
        assert!(probe.wait().unwrap().success(), "{dst}: probe unanswered");
    }
}

/// A move's make and break (`lab::access`): the link comes up
/// operational at both ends before the address and default route go on
/// (a datagram sent at once, or the router's ARP reply to it, must not
/// meet a device's `noop` qdisc), and the break takes the network's
/// address only, then the link.
#[test]
fn lab_access_link_is_operational_with_address_and_route_then_down() {
    use mip4::lab::access::{change, Step};
    use mip4::lab::topology::AccessSpec;
    preflight().expect("lab preflight");
    let prefix = unique_prefix();
    let mn = Netns::new(&prefix, "mn").unwrap();
    let gw = Netns::new(&prefix, "gw").unwrap();
    veth(&mn, "eth-a", &gw, "eth0").unwrap();
    gw.add_addr("eth0", "192.0.2.1/24").unwrap();
    mn.link_up("eth-a", false).unwrap();
    // An address of the MN's that is not the network's: it stays.
    mn.add_addr("eth-a", "10.200.0.1/32").unwrap();
    let net = AccessSpec {
        name: "ext-a".into(),
        host: "mn".into(),
        dev: "eth-a".into(),
        addr: "192.0.2.100/24".into(),
        gateway: "192.0.2.1".into(),
        trusted: false,
    };

    let peer = Some((gw.name().to_string(), "eth0".to_string()));
    change(
        mn.name(),
        &[(
            &net,
            Step::Up {
                metric: None,
                late: std::time::Duration::ZERO,
            },
            peer,
        )],
    )
    .unwrap();
    // Operational (RFC 2863 operstate, what IFF_RUNNING says; `ip`
    // prints the state, not that flag), the router's end too.
    for (ns, dev) in [(&mn, "eth-a"), (&gw, "eth0")] {
        let link = ns.ip(&["link", "show", "dev", dev]).unwrap();
        assert!(
            link.contains("LOWER_UP") && link.contains("state UP"),
            "{link}"
        );
    }
    assert!(mn
        .addrs("eth-a")
        .unwrap()
        .contains(&"192.0.2.100".to_string()));
    let route = mn.ip(&["route", "show", "default"]).unwrap();
    assert!(route.contains("via 192.0.2.1 dev eth-a"), "{route}");
    assert!(mn.ping_once("192.0.2.100", "192.0.2.1", 2000));

    change(mn.name(), &[(&net, Step::Down, None)]).unwrap();
    let addrs = mn.addrs("eth-a").unwrap();
    assert!(!addrs.contains(&"192.0.2.100".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"10.200.0.1".to_string()), "{addrs:?}");
    let link = mn.ip(&["link", "show", "dev", "eth-a"]).unwrap();
    assert!(link.contains("state DOWN"), "{link}");
}
