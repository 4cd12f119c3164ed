//! mip4-ha's data plane end to end, in three network namespaces this test
//! makes (unique names, removed on drop also on failure):
//!
//! ```text
//!   cn 10.88.0.2 ---- 10.88.0.1 [ha: mip4-ha, 10.77.0.1] 10.77.0.1 ---- 10.77.0.2 mn
//!                                                                       (HoA 10.1.0.10 on lo)
//! ```
//!
//! The MN registers its co-located care-of address 10.77.0.2 with real
//! signed requests and runs its own end of the IP-in-IP tunnel with
//! `mip4::dataplane`; the correspondent reaches the home address only
//! through the tunnel the daemon set up. Needs root: fails without it.

mod dataplane_support;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dataplane_support::{ping, send_raw, start_plane, udp_datagram, wait_for, Netns, Pair};
use mip4::auth::{append_auth, AuthExtAt, AuthKind, SecurityAssociation};
use mip4::dataplane::binding::{Ipv6Binding, Ipv6TunnelTo};
use mip4::dataplane::ipip::{self, OuterHeader};
use mip4::dataplane::{DataPlane, Encapsulation, Role, TunnelBinding};
use mip4::replay::{NtpTimestamp, ReplayMethod};
use mip4::wire::extension::Dsmipv4Ext;
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr};

const KEY: &str = "00112233445566778899aabbccddeeff";
const HA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const CN: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
/// The HA's address on the home link, in the proxy-ARP lab.
const HOME_HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const WAIT: Duration = Duration::from_secs(10);
/// DSMIPv4 (RFC 5454): the MN's IPv6 home network prefix and an address
/// in it; the correspondent's IPv6 network behind the HA.
const MN_PREFIX: &str = "2001:db8:10::/64";
const MN_V6: &str = "2001:db8:10::5";
const CN_V6: &str = "2001:db8:88::2";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test creates network namespaces and must run as root (euid is {euid})"
    );
}

/// Kills the daemon on drop if the test did not stop it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sa() -> SecurityAssociation {
    let k = mip4::config::SecretKey::from_hex(KEY).unwrap();
    SecurityAssociation::new(
        256,
        mip4::auth::Algorithm::HmacMd5,
        k.expose(),
        ReplayMethod::Timestamp,
    )
    .unwrap()
}

/// A signed request for HOA at COA with the 'T' bit (reverse tunnel).
fn request(lifetime: u16, id: u64) -> Vec<u8> {
    request_to(HA, lifetime, id)
}

fn request_to(ha: Ipv4Addr, lifetime: u16, id: u64) -> Vec<u8> {
    request_with(ha, lifetime, id, vec![])
}

fn request_with(ha: Ipv4Addr, lifetime: u16, id: u64, extensions: Vec<Extension>) -> Vec<u8> {
    let mut b = RequestRepr {
        flags: Flags::T,
        lifetime,
        home_address: HOA,
        home_agent: ha,
        care_of_address: COA,
        identification: id,
        extensions,
    }
    .to_bytes();
    append_auth(&mut b, AuthKind::MnHa, &sa());
    b
}

/// A fresh timestamp Identification; `n` keeps successive ones increasing.
fn now_id(n: u64) -> u64 {
    NtpTimestamp::from_system_time(std::time::SystemTime::now()).0 + n
}

/// Sends a request and returns the verified reply (the socket's read
/// timeout is the deadline).
fn register(sock: &UdpSocket, bytes: &[u8]) -> ReplyRepr {
    register_at(HA, sock, bytes)
}

fn register_at(ha: Ipv4Addr, sock: &UdpSocket, bytes: &[u8]) -> ReplyRepr {
    sock.send_to(bytes, SocketAddrV4::new(ha, 434)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply from mip4-ha");
    let bytes = &buf[..n];
    let offs = mip4::wire::extension::parse_all(bytes, mip4::wire::registration::REPLY_HEADER_LEN)
        .unwrap();
    let (at, _) = offs
        .iter()
        .find(|(_, e)| matches!(e, Extension::MnHaAuth(_)))
        .expect("signed reply");
    AuthExtAt::parse(bytes, *at).unwrap().verify(&sa()).unwrap();
    ReplyRepr::parse_bytes(bytes).unwrap()
}

fn ctl_json(socket: &Path, what: &str) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .args(["--socket", socket.to_str().unwrap(), what, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mip4ctl {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `ip route show HOA` in the HA's namespace.
fn ha_route(ns: &Netns) -> String {
    ns.ip(&format!("route show {HOA}"))
}

fn ip_forward(ns: &Netns) -> String {
    ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"])
        .trim()
        .to_string()
}

fn ipv6_forwarding(ns: &Netns) -> String {
    ns.exec(&["cat", "/proc/sys/net/ipv6/conf/all/forwarding"])
        .trim()
        .to_string()
}

struct Lab {
    // Field order is drop order: the daemon goes before its namespace.
    daemon: Daemon,
    ctl: std::path::PathBuf,
    _dir: tempfile::TempDir,
    pair: Pair,
    cn: Netns,
    /// A host on the HA's home link (10.1.0.50), proxy-ARP labs only.
    home: Option<Netns>,
}

/// How the lab serves the home network.
#[derive(PartialEq)]
enum HomeMode {
    Virtual,
    /// A real home link 10.1.0.0/24 on the HA's `vhome`, with a host.
    ProxyArp,
}

/// The three namespaces, the MN's tunnel end, and mip4-ha running.
fn lab(tag: &str, mode: HomeMode) -> Lab {
    require_root();
    let pair = Pair::new(tag);
    let cn = Netns::new(&format!("{tag}-cn"));
    cn.ip(&format!(
        "link add vcn type veth peer name vcnh netns {}",
        pair.ha.name
    ));
    cn.ip(&format!("addr add {CN}/24 dev vcn"));
    cn.ip("link set vcn up");
    cn.ip("route add default via 10.88.0.1");
    pair.ha.ip("addr add 10.88.0.1/24 dev vcnh");
    pair.ha.ip("link set vcnh up");
    pair.mn.ip(&format!("addr add {HOA}/32 dev lo"));
    let home = (mode == HomeMode::ProxyArp).then(|| {
        let home = Netns::new(&format!("{tag}-home"));
        home.ip(&format!(
            "link add vh type veth peer name vhome netns {}",
            pair.ha.name
        ));
        home.ip("addr add 10.1.0.50/24 dev vh");
        home.ip("link set vh up");
        pair.ha.ip("addr add 10.1.0.1/24 dev vhome");
        pair.ha.ip("link set vhome up");
        home
    });
    // On a home link the HA's address is its address on that link.
    let ha_addr = match mode {
        HomeMode::Virtual => HA,
        HomeMode::ProxyArp => {
            pair.mn.ip("route add 10.1.0.0/24 via 10.77.0.1");
            HOME_HA
        }
    };
    let home_network = match mode {
        HomeMode::Virtual => "mode = \"virtual\"",
        HomeMode::ProxyArp => "mode = \"proxy-arp\"\ninterface = \"vhome\"",
    };

    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ha.sock");
    let conf = dir.path().join("mip4-ha.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
home_agent = "{ha_addr}"
control_socket = "{}"
tunnel_backend = "userspace"
trusted_networks = ["10.77.0.0/24"]

[[home_network]]
prefix = "10.1.0.0/24"
{home_network}

[[mobile_node]]
home_address = "{HOA}"
spi = 256
key = "{KEY}"
ipv6_prefix = "{MN_PREFIX}"
"#,
            ctl.display()
        ),
    )
    .unwrap();
    // It holds a key: private, as mip4-ha, mip4-fa and mip4d require.
    std::fs::set_permissions(&conf, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_eq!(
        (ip_forward(&pair.ha), ipv6_forwarding(&pair.ha)),
        ("0".to_string(), "0".to_string()),
        "a new namespace does not forward"
    );
    let child = Command::new("ip")
        .args(["netns", "exec", &pair.ha.name])
        .arg(env!("CARGO_BIN_EXE_mip4-ha"))
        .arg("--config")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    assert!(
        wait_for(WAIT, || mip4::ctl::call(
            &ctl,
            mip4::ctl::Request::Status,
            Duration::from_secs(1)
        )
        .is_ok()),
        "mip4-ha did not open its control socket"
    );
    Lab {
        daemon,
        ctl,
        _dir: dir,
        pair,
        cn,
        home,
    }
}

#[test]
fn registered_home_address_is_reachable_through_the_tunnel_and_spoofs_are_counted() {
    let lab = lab("hadp", HomeMode::Virtual);
    let (ha, mn, cn) = (&lab.pair.ha, &lab.pair.mn, &lab.cn);
    let status = ctl_json(&lab.ctl, "status");
    assert_eq!(status["dataplane"]["backend"], "userspace");
    assert_eq!(ip_forward(ha), "1", "the HA forwards while it runs");
    assert_eq!(ha_route(ha), "", "no route before any registration");

    // The MN's end of the tunnel (its own rule and route for the HoA).
    let (_mn_nl, _mn_dp) = mn_plane(mn, HA);
    let sock = mn.run(async { UdpSocket::bind(SocketAddrV4::new(COA, 0)).unwrap() });
    sock.set_read_timeout(Some(WAIT)).unwrap();

    // Co-located care-of address registered, from a trusted network.
    let rep = register(&sock, &request(120, now_id(0)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert!(rep
        .extensions
        .contains(&Extension::TrustedNetworksConfigured));
    // Installed before the reply left.
    assert!(
        ha_route(ha).contains("dev mip4ha0"),
        "route: {}",
        ha_route(ha)
    );
    let status = ctl_json(&lab.ctl, "status");
    assert_eq!(status["dataplane"]["tunnels"][0]["home"], HOA.to_string());
    assert_eq!(
        status["dataplane"]["tunnels"][0]["remote"],
        format!("{COA}:0")
    );

    // The correspondent behind the HA pings the home address: the HA
    // tunnels to the care-of address, the MN answers through its reverse
    // tunnel, the HA checks and forwards.
    assert!(
        cn.run(ping(CN, HOA, WAIT)),
        "no echo reply from the home address"
    );

    // RFC 3024 ingress check at the HA: a wrong outer source, and the
    // registered care-of address carrying another inner source, are
    // dropped and counted in `mip4ctl counters`.
    let sink = cn.run(async { UdpSocket::bind(SocketAddrV4::new(CN, 7001)).unwrap() });
    sink.set_read_timeout(Some(WAIT)).unwrap();
    for (outer_src, inner_src) in [
        (Ipv4Addr::new(10, 77, 0, 3), HOA),
        (COA, Ipv4Addr::new(10, 1, 0, 99)),
    ] {
        let inner = udp_datagram(
            SocketAddrV4::new(inner_src, 7000),
            SocketAddrV4::new(CN, 7001),
            b"spoofed",
        );
        let mut outer = Vec::new();
        let oh = OuterHeader {
            src: outer_src,
            dst: HA,
            ttl: 64,
        };
        ipip::encapsulate(&inner, &oh, 7, &mut outer).unwrap();
        mn.run(async move { send_raw(&outer).await });
    }
    assert!(
        wait_for(WAIT, || {
            let c = ctl_json(&lab.ctl, "counters");
            c["dataplane"]["unknown_tunnel_source"] == 1
                && c["dataplane"]["inner_address_mismatch"] == 1
        }),
        "spoofs not counted: {}",
        ctl_json(&lab.ctl, "counters")
    );
    // Reverse-tunnelled traffic from the home address reaches the
    // correspondent, and is the first datagram there: no spoof got through.
    mn.run(async {
        let u = UdpSocket::bind(SocketAddrV4::new(HOA, 7000)).unwrap();
        u.send_to(b"from home", SocketAddrV4::new(CN, 7001))
            .unwrap();
    });
    let mut buf = [0u8; 64];
    let n = sink.recv(&mut buf).expect("reverse-tunnelled datagram");
    assert_eq!(&buf[..n], b"from home", "a spoofed datagram was delivered");
    let c = ctl_json(&lab.ctl, "counters");
    assert!(c["dataplane"]["decapsulated"].as_u64().unwrap() >= 2);
    assert!(c["dataplane"]["encapsulated"].as_u64().unwrap() >= 1);

    // Deregistration removes the route and the tunnel before the reply.
    let rep = register(&sock, &request(0, now_id(1)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(ha_route(ha), "", "route left after deregistration");
    let status = ctl_json(&lab.ctl, "status");
    assert_eq!(status["dataplane"]["tunnels"], serde_json::json!([]));
}

#[test]
fn sigterm_removes_routes_tunnel_device_and_restores_forwarding() {
    let mut lab = lab("hadt", HomeMode::Virtual);
    let ha = &lab.pair.ha;
    let sock = lab
        .pair
        .mn
        .run(async { UdpSocket::bind(SocketAddrV4::new(COA, 0)).unwrap() });
    sock.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        register(&sock, &request(120, now_id(0))).code,
        ReplyCode::ACCEPTED
    );
    assert!(ha_route(ha).contains("dev mip4ha0"));
    ha.ip("link show mip4ha0");

    // SAFETY: kill(2) on the `ip netns exec` child, which execs mip4-ha
    // in place (same pid).
    unsafe { libc::kill(lab.daemon.0.id() as i32, libc::SIGTERM) };
    let st = lab.daemon.0.wait().unwrap();
    assert!(st.success(), "mip4-ha exited with {st}");
    assert_eq!(ha_route(ha), "", "route left after shutdown");
    let links = ha.ip("-o link show");
    assert!(!links.contains("mip4ha0"), "TUN device left: {links}");
    assert_eq!(ip_forward(ha), "0", "ip_forward not restored");
    // The node's ipv6_prefix had it turn IPv6 forwarding on (RFC 5454).
    assert_eq!(ipv6_forwarding(ha), "0", "IPv6 forwarding not restored");
    assert!(!lab.ctl.exists(), "control socket removed on shutdown");
}

// RFC 5944 §4.6: on a real home link the HA answers ARP for the home
// address of an away node, so hosts on the link reach it through the HA.
#[test]
fn on_a_home_link_the_ha_proxies_arp_for_the_away_home_address() {
    let lab = lab("hadh", HomeMode::ProxyArp);
    let (ha, mn) = (&lab.pair.ha, &lab.pair.mn);
    let home = lab.home.as_ref().unwrap();
    let (_mn_nl, _mn_dp) = mn_plane(mn, HOME_HA);
    let proxies = || ha.ip("neigh show proxy");
    assert!(!proxies().contains(&HOA.to_string()));
    let sock = mn.run(async { UdpSocket::bind(SocketAddrV4::new(COA, 0)).unwrap() });
    sock.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(
        register_at(HOME_HA, &sock, &request_to(HOME_HA, 120, now_id(0))).code,
        ReplyCode::ACCEPTED
    );
    assert!(
        proxies().contains(&format!("{HOA} dev vhome")),
        "proxy entries: {}",
        proxies()
    );
    let home_host = Ipv4Addr::new(10, 1, 0, 50);
    assert!(
        home.run(ping(home_host, HOA, WAIT)),
        "home link host cannot reach the away home address"
    );
    let mac = |ns: &Netns, dev: &str| {
        let l = ns.ip(&format!("-o link show {dev}"));
        l.split("link/ether ").nth(1).unwrap()[..17].to_string()
    };
    let learnt = home.ip(&format!("neigh show {HOA}"));
    assert!(
        learnt.contains(&mac(ha, "vhome")),
        "home host should map the home address to the HA: {learnt}"
    );

    assert_eq!(
        register_at(HOME_HA, &sock, &request_to(HOME_HA, 0, now_id(1))).code,
        ReplyCode::ACCEPTED
    );
    assert!(
        !proxies().contains(&HOA.to_string()),
        "proxy entry left after deregistration: {}",
        proxies()
    );
    assert_eq!(ha_route(ha), "");
}

/// The MN's end of the tunnel to `ha` (its own rule and route for the
/// home address).
fn mn_plane(mn: &Netns, ha: Ipv4Addr) -> (std::sync::Arc<mip4::netlink::Netlink>, DataPlane) {
    mn.run(start_plane(
        Role::MobileNode,
        TunnelBinding {
            home: HOA,
            local: COA,
            remote: SocketAddrV4::new(ha, 0),
            encapsulation: Encapsulation::IpInIp,
        },
        None,
        None,
    ))
}

/// A TCP connection over IPv6 from `src` to `dst` port 7002 carries a
/// message there and back (the peer echoes it) before the deadline.
async fn tcp6_round_trip(src: &str, dst: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let src: std::net::SocketAddr = format!("[{src}]:0").parse().unwrap();
    let dst: std::net::SocketAddr = format!("[{dst}]:7002").parse().unwrap();
    let attempt = async {
        let s = tokio::net::TcpSocket::new_v6().ok()?;
        s.bind(src).ok()?;
        let mut c = s.connect(dst).await.ok()?;
        c.write_all(b"dual stack").await.ok()?;
        let mut buf = [0u8; 10];
        c.read_exact(&mut buf).await.ok()?;
        Some(&buf == b"dual stack")
    };
    matches!(tokio::time::timeout(WAIT, attempt).await, Ok(Some(true)))
}

async fn tcp6_echo_server(addr: &str) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind(format!("[{addr}]:7002"))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 10];
            if s.read_exact(&mut buf).await.is_ok() {
                let _ = s.write_all(&buf).await;
            }
        }
    })
}

/// One IPv6 echo from `src` to `dst` as large as the sender's kernel
/// allows towards `dst` now (at most the devices' 1480: the HA's device
/// may be smaller, RFC 3519's), never fragmented by the sender; whether
/// it is answered does not matter here.
fn too_big_ping(ns: &Netns, src: &str, dst: &str) {
    let mtu = ns
        .ip(&format!("-6 route get {dst} from {src}"))
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(1480)
        .min(1480);
    let size = mtu - 48;
    let ping = format!("ping -6 -n -c 1 -W 1 -s {size} -M do -I {src} {dst} >/dev/null 2>&1; true");
    ns.exec(&["sh", "-c", &ping]);
}

/// The IPv6 Prefix Reply among a reply's extensions: (code, prefix).
fn prefix_reply(rep: &ReplyRepr) -> Option<(u8, String)> {
    rep.extensions.iter().find_map(|e| match e {
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
            code,
            prefix_length,
            prefix,
        }) => Some((*code, format!("{prefix}/{prefix_length}"))),
        _ => None,
    })
}

/// DSMIPv4 (RFC 5454) through the running mip4-ha: the prefix is granted
/// and routed into the tunnel device; TCP over IPv6 between the
/// correspondent and an address of the MN's prefix crosses the tunnel to
/// the care-of address (code 1, Tunneling Mode extension) and then to the
/// home address (code 0); an inner IPv6 source outside the prefix is
/// dropped and counted (§3.3.2, §4); a renewal without the IPv6 Prefix
/// Request takes the prefix's route away (§3.8).
#[test]
fn dsmipv4_prefix_carries_ipv6_both_ways_and_spoofed_sources_are_counted() {
    let lab = lab("hads", HomeMode::Virtual);
    let (ha, mn, cn) = (&lab.pair.ha, &lab.pair.mn, &lab.cn);
    // A prefix is configured: mip4-ha forwards IPv6 itself, as IPv4.
    assert_eq!(ipv6_forwarding(ha), "1", "mip4-ha left IPv6 forwarding off");
    ha.ip("-6 addr add 2001:db8:88::1/64 dev vcnh nodad");
    cn.ip(&format!("-6 addr add {CN_V6}/64 dev vcn nodad"));
    cn.ip("-6 route add default via 2001:db8:88::1");
    let (_mn_nl, mn_dp) = mn_plane(mn, HA);
    let DataPlane::Userspace(mn_plane) = &mn_dp else {
        panic!("the test's MN plane is the userspace one");
    };
    mn.ip(&format!("-6 addr add {MN_V6}/128 dev lo nodad"));
    mn.ip("-6 route add 2001:db8:88::/64 dev mip4t0");
    let _server = cn.run(tcp6_echo_server(CN_V6));
    let sock = mn.run(async { UdpSocket::bind(SocketAddrV4::new(COA, 0)).unwrap() });
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let ask = Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: 0,
        prefix: "::".parse().unwrap(),
    });
    let v6_route = || ha.ip(&format!("-6 route show {MN_PREFIX}"));

    for (n, (tunneling_mode, code, to)) in [
        (true, 1, Ipv6TunnelTo::CareOf),
        (false, 0, Ipv6TunnelTo::HomeAddress),
    ]
    .into_iter()
    .enumerate()
    {
        let mut exts = vec![ask.clone()];
        if tunneling_mode {
            exts.push(Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode));
        }
        let rep = register(&sock, &request_with(HA, 120, now_id(n as u64), exts));
        assert_eq!(rep.code, ReplyCode::ACCEPTED);
        assert_eq!(prefix_reply(&rep), Some((code, MN_PREFIX.to_string())));
        assert!(v6_route().contains("dev mip4ha0"), "route: {}", v6_route());
        mn_plane.set_ipv6(
            HOA,
            Some(Ipv6Binding {
                prefix: MN_PREFIX.parse().unwrap(),
                tunnel_to: to,
            }),
        );
        assert!(
            mn.run(tcp6_round_trip(MN_V6, CN_V6)),
            "TCP over IPv6 did not cross the tunnel to the {to:?}"
        );
        if to == Ipv6TunnelTo::HomeAddress {
            // IPv6 in IPv4 inside the IPv4 tunnel: the path's 1500 less
            // 40 bytes. A datagram the devices take but the tunnel does
            // not, from either side, is answered with a Packet Too Big
            // carrying 1460, from the tunnel's entry point (RFC 4213
            // §3.2), and the source's kernel learns it.
            for (ns, src, dst) in [(cn, CN_V6, MN_V6), (mn, MN_V6, CN_V6)] {
                assert!(
                    wait_for(WAIT, || {
                        too_big_ping(ns, src, dst);
                        ns.ip(&format!("-6 route get {dst} from {src}"))
                            .contains("mtu 1460")
                    }),
                    "{src} never learnt the tunnel MTU: {}",
                    ns.ip(&format!("-6 route get {dst} from {src}"))
                );
            }
            let c = ctl_json(&lab.ctl, "counters")["dataplane"].clone();
            assert!(c["too_big_sent"].as_u64() >= Some(1), "{c}");
            assert!(mn_plane.counters().too_big_sent >= 1);
        }
    }

    // Protocol 41 from the registered care-of address with a source
    // outside the prefix: dropped and counted.
    let spoof = {
        let mut d = vec![0x60, 0, 0, 0, 0, 0, 59, 64];
        d.extend_from_slice(
            &"2001:db8:99::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        d.extend_from_slice(&CN_V6.parse::<std::net::Ipv6Addr>().unwrap().octets());
        let mut out = Vec::new();
        let oh = OuterHeader {
            src: COA,
            dst: HA,
            ttl: 64,
        };
        mip4::dataplane::ipv6::encapsulate(&d, &oh, 9, &mut out).unwrap();
        out
    };
    mn.run(async move { send_raw(&spoof).await });
    assert!(
        wait_for(WAIT, || {
            ctl_json(&lab.ctl, "counters")["dataplane"]["ipv6_source_spoofed"] == 1
        }),
        "spoof not counted: {}",
        ctl_json(&lab.ctl, "counters")
    );

    // §3.8: no IPv6 Prefix Request in the renewal, no prefix.
    let rep = register(&sock, &request(120, now_id(5)));
    assert_eq!((rep.code, prefix_reply(&rep)), (ReplyCode::ACCEPTED, None));
    assert_eq!(v6_route(), "", "the prefix's route is gone");
}
