//! mip4-fa end to end with mip4-ha, in four network namespaces this test
//! makes (unique names, removed on drop also on failure):
//!
//! ```text
//!  cn 10.88.0.2 -- 10.88.0.1 [ha: mip4-ha 10.77.0.1] -- 10.77.0.2 [fa: mip4-fa, CoA] 10.50.0.1 -- mn
//!                                                                                        (HoA 10.1.0.10)
//! ```
//!
//! The test is the mobile node (mip4::wire and mip4::auth): it hears the
//! FA's Agent Advertisement, registers the FA's care-of address through
//! the FA with 'T' set, and gets the HA's reply relayed back. A
//! correspondent behind the HA then pings the home address: the HA
//! tunnels to the FA, the FA delivers on the link, and the MN's echo reply
//! is reverse-tunnelled FA -> HA (the FA has no other route to the
//! correspondent). Needs root: fails without it.

mod dataplane_support;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dataplane_support::{ping, wait_for, Netns};
use mip4::auth::{append_auth, AuthExtAt, AuthKind, SecurityAssociation};
use mip4::replay::{NtpTimestamp, ReplayMethod};
use mip4::wire::icmp::{AdvFlags, AgentAdvertisementRepr, AgentSolicitationRepr};
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr};

const KEY: &str = "00112233445566778899aabbccddeeff";
const HA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const FA_LINK: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 1);
const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const CN: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 2);
const WAIT: Duration = Duration::from_secs(10);

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test creates network namespaces and must run as root (euid is {euid})"
    );
}

/// Kills a daemon on drop if the test did not stop it.
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

fn now_id(n: u64) -> u64 {
    NtpTimestamp::from_system_time(std::time::SystemTime::now()).0 + n
}

fn request(lifetime: u16, id: u64) -> Vec<u8> {
    let mut b = RequestRepr {
        flags: Flags::T,
        lifetime,
        home_address: HOA,
        home_agent: HA,
        care_of_address: COA,
        identification: id,
        extensions: vec![],
    }
    .to_bytes();
    append_auth(&mut b, AuthKind::MnHa, &sa());
    b
}

/// Sends a request to the FA and returns its reply and whether it carried
/// a valid MN-HA authenticator.
fn register(sock: &UdpSocket, bytes: &[u8]) -> (ReplyRepr, bool) {
    sock.send_to(bytes, SocketAddrV4::new(FA_LINK, 434))
        .unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock
        .recv_from(&mut buf)
        .expect("a reply relayed by mip4-fa");
    assert_eq!(
        from,
        SocketAddrV4::new(FA_LINK, 434).into(),
        "reply not from the FA"
    );
    let bytes = &buf[..n];
    let offs = mip4::wire::extension::parse_all(bytes, mip4::wire::registration::REPLY_HEADER_LEN)
        .unwrap();
    let signed = offs
        .iter()
        .find(|(_, e)| matches!(e, Extension::MnHaAuth(_)))
        .is_some_and(|(at, _)| AuthExtAt::parse(bytes, *at).unwrap().verify(&sa()).is_ok());
    (ReplyRepr::parse_bytes(bytes).unwrap(), signed)
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

fn spawn(ns: &Netns, bin: &str, conf: &Path) -> Daemon {
    Daemon(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(bin)
            .arg("--config")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

fn wait_ctl(path: &Path, who: &str) {
    assert!(
        wait_for(WAIT, || mip4::ctl::call(
            path,
            mip4::ctl::Request::Status,
            Duration::from_secs(1)
        )
        .is_ok()),
        "{who} did not open its control socket"
    );
}

struct Lab {
    // Field order is drop order: daemons before their namespaces.
    fa: Daemon,
    _ha: Daemon,
    fa_ctl: PathBuf,
    ha_ctl: PathBuf,
    _dir: tempfile::TempDir,
    _ha_ns: Netns,
    fa_ns: Netns,
    mn: Netns,
    cn: Netns,
}

fn lab(tag: &str) -> Lab {
    require_root();
    let ha_ns = Netns::new(&format!("{tag}-ha"));
    let fa_ns = Netns::new(&format!("{tag}-fa"));
    let mn = Netns::new(&format!("{tag}-mn"));
    let cn = Netns::new(&format!("{tag}-cn"));
    // cn -- ha
    cn.ip(&format!(
        "link add vcn type veth peer name vcnh netns {}",
        ha_ns.name
    ));
    cn.ip(&format!("addr add {CN}/24 dev vcn"));
    cn.ip("link set vcn up");
    cn.ip("route add default via 10.88.0.1");
    ha_ns.ip("addr add 10.88.0.1/24 dev vcnh");
    ha_ns.ip("link set vcnh up");
    // ha -- fa
    ha_ns.ip(&format!(
        "link add vha type veth peer name vfa netns {}",
        fa_ns.name
    ));
    ha_ns.ip(&format!("addr add {HA}/24 dev vha"));
    ha_ns.ip("link set vha up");
    fa_ns.ip(&format!("addr add {COA}/24 dev vfa"));
    fa_ns.ip("link set vfa up");
    // fa -- mn (the foreign link); the MN keeps its home address.
    fa_ns.ip(&format!(
        "link add vlink type veth peer name vmn netns {}",
        mn.name
    ));
    fa_ns.ip(&format!("addr add {FA_LINK}/24 dev vlink"));
    fa_ns.ip("link set vlink up");
    // Loose reverse-path filtering on the served link, as an operator may
    // have it: mip4-fa turns it off and must put it back.
    fa_ns.run(async {
        std::fs::write("/proc/sys/net/ipv4/conf/vlink/rp_filter", "2").unwrap();
    });
    mn.ip(&format!("addr add {HOA}/32 dev vmn"));
    mn.ip("link set vmn up");
    mn.ip(&format!("route add {FA_LINK} dev vmn"));
    mn.ip(&format!("route add default via {FA_LINK} dev vmn"));

    let dir = tempfile::tempdir().unwrap();
    let ha_ctl = dir.path().join("ha.sock");
    let fa_ctl = dir.path().join("fa.sock");
    let ha_conf = dir.path().join("mip4-ha.conf");
    let fa_conf = dir.path().join("mip4-fa.conf");
    std::fs::write(
        &ha_conf,
        format!(
            r#"
home_agent = "{HA}"
control_socket = "{}"
tunnel_backend = "userspace"

[[home_network]]
prefix = "10.1.0.0/24"
mode = "virtual"

[[mobile_node]]
home_address = "{HOA}"
spi = 256
key = "{KEY}"
"#,
            ha_ctl.display()
        ),
    )
    .unwrap();
    // It holds a key: private, as mip4-ha, mip4-fa and mip4d require.
    std::fs::set_permissions(
        &ha_conf,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(
        &fa_conf,
        format!(
            r#"
care_of_address = "{COA}"
control_socket = "{}"
max_lifetime = 300
reverse_tunnel = "allowed"
allowed_home_agents = ["{HA}/32"]

[advertisement]
interval = 1

[[interface]]
name = "vlink"
address = "{FA_LINK}/24"
"#,
            fa_ctl.display()
        ),
    )
    .unwrap();
    // It holds a key: private, as mip4-ha, mip4-fa and mip4d require.
    std::fs::set_permissions(
        &fa_conf,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let ha = spawn(&ha_ns, env!("CARGO_BIN_EXE_mip4-ha"), &ha_conf);
    wait_ctl(&ha_ctl, "mip4-ha");
    let fa = spawn(&fa_ns, env!("CARGO_BIN_EXE_mip4-fa"), &fa_conf);
    wait_ctl(&fa_ctl, "mip4-fa");
    Lab {
        fa,
        _ha: ha,
        fa_ctl,
        ha_ctl,
        _dir: dir,
        _ha_ns: ha_ns,
        fa_ns,
        mn,
        cn,
    }
}

/// Waits for an Agent Advertisement on the MN's link (sending one Agent
/// Solicitation first); returns it with the IP TTL and destination.
fn hear_advertisement(mn: &Netns) -> (AgentAdvertisementRepr, u8, Ipv4Addr) {
    mn.run(async {
        use socket2::{Domain, Protocol, Socket, Type};
        use std::mem::MaybeUninit;
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.set_multicast_if_v4(&HOA).unwrap();
        s.set_multicast_ttl_v4(1).unwrap();
        // RFC 5944 §2.2: solicitations go to 224.0.0.2 (or broadcast).
        let sol = AgentSolicitationRepr.to_bytes();
        s.send_to(
            &sol,
            &SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 2), 0).into(),
        )
        .unwrap();
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            let mut buf = [MaybeUninit::<u8>::uninit(); 1500];
            let Ok(n) = s.recv(&mut buf) else { continue };
            // SAFETY: recv initialised the first n bytes.
            let b: Vec<u8> = buf[..n]
                .iter()
                .map(|x| unsafe { x.assume_init() })
                .collect();
            let hl = usize::from(b[0] & 0x0f) * 4;
            if b.get(hl) != Some(&mip4::wire::icmp::TYPE_ADVERTISEMENT) {
                continue;
            }
            let dst = Ipv4Addr::new(b[16], b[17], b[18], b[19]);
            let adv =
                AgentAdvertisementRepr::parse_bytes(&b[hl..]).expect("well-formed advertisement");
            return (adv, b[8], dst);
        }
        panic!("no agent advertisement heard within {WAIT:?}");
    })
}

fn mn_socket(mn: &Netns) -> UdpSocket {
    let sock = mn.run(async { UdpSocket::bind(SocketAddrV4::new(HOA, 0)).unwrap() });
    sock.set_read_timeout(Some(WAIT)).unwrap();
    // RFC 3024 §4.2: a request with 'T' leaves the MN with TTL 255.
    sock.set_ttl(255).unwrap();
    sock
}

#[test]
fn visitor_registers_through_the_fa_and_is_reachable_with_a_reverse_tunnel() {
    let lab = lab("fadp");
    let (fa_ns, mn, cn) = (&lab.fa_ns, &lab.mn, &lab.cn);

    // Agent discovery (RFC 5944 §2): the FA's advertisement, TTL 1, to
    // all systems, offering its care-of address with F, R and T.
    let (adv, ttl, dst) = hear_advertisement(mn);
    assert_eq!(ttl, 1, "advertisements are sent with TTL 1");
    assert_eq!(dst, Ipv4Addr::new(224, 0, 0, 1));
    assert_eq!(adv.routers, vec![(FA_LINK, 0)]);
    assert_eq!(adv.mobility.care_of_addresses, vec![COA]);
    assert_eq!(adv.mobility.registration_lifetime, 300);
    let f = adv.mobility.flags;
    assert!(f.contains(AdvFlags::F) && f.contains(AdvFlags::R) && f.contains(AdvFlags::T));
    assert!(!f.contains(AdvFlags::H) && !f.contains(AdvFlags::B));
    assert_eq!(adv.prefix_lengths, Some(vec![24]));
    let (next, _, _) = hear_advertisement(mn);
    assert!(
        next.mobility.sequence > adv.mobility.sequence,
        "sequence numbers count up: {} then {}",
        adv.mobility.sequence,
        next.mobility.sequence
    );

    let sock = mn_socket(mn);
    // An FA denial reaches the MN on the link: lifetime above the max.
    let (rep, _) = register(&sock, &request(1000, now_id(0)));
    assert_eq!(rep.code, ReplyCode::FA_LIFETIME_TOO_LONG);
    assert_eq!(rep.lifetime, 300);
    assert_eq!(rep.home_address, HOA);

    // Registration through the FA, relayed to the HA and back.
    let (rep, signed) = register(&sock, &request(120, now_id(1)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED, "reply: {rep:?}");
    assert!(signed, "the HA's MN-HA authenticator survives the relay");
    assert_eq!(rep.lifetime, 120);
    let visitors = ctl_json(&lab.fa_ctl, "visitors");
    assert_eq!(visitors.as_array().unwrap().len(), 1, "{visitors}");
    let v = &visitors[0];
    assert_eq!(
        (v["state"].as_str(), v["home_address"].as_str()),
        (Some("accepted"), Some("10.1.0.10"))
    );
    assert_eq!(v["reverse_tunnel"], true);
    assert_eq!(v["interface"], "vlink");
    let mac = mn
        .ip("-o link show vmn")
        .split("link/ether ")
        .nth(1)
        .unwrap()[..17]
        .to_string();
    assert_eq!(
        v["mac"],
        mac.as_str(),
        "visitor keyed by the MN's link-layer address"
    );
    let bindings = ctl_json(&lab.ha_ctl, "bindings");
    assert_eq!(bindings[0]["care_of_address"], COA.to_string());
    // Delivery on the link: host route (in the agent's table, looked up
    // only for what leaves its tunnel) and a permanent neighbour entry.
    assert!(fa_ns
        .ip(&format!("route show {HOA} table 434"))
        .contains("dev vlink"));
    let neigh = fa_ns.ip(&format!("neigh show {HOA}"));
    assert!(
        neigh.contains(&mac) && neigh.contains("PERMANENT"),
        "{neigh}"
    );
    assert!(fa_ns
        .ip("rule show")
        .contains(&format!("from {HOA} iif vlink lookup 434")));
    assert!(fa_ns.ip("rule show").contains("iif mip4fa0 lookup 434"));
    assert_eq!(fa_ns.ip(&format!("route show {HOA}")), "", "not in main");

    // The correspondent reaches the home address: HA -> FA tunnel, FA ->
    // MN on the link, and back through the reverse tunnel (the FA has no
    // route to the correspondent's network of its own).
    assert!(
        cn.run(ping(CN, HOA, WAIT)),
        "no echo reply from the home address"
    );
    let fc = ctl_json(&lab.fa_ctl, "counters");
    assert!(
        fc["dataplane"]["decapsulated"].as_u64().unwrap() >= 1,
        "{fc}"
    );
    assert!(
        fc["dataplane"]["encapsulated"].as_u64().unwrap() >= 1,
        "{fc}"
    );
    assert_eq!(
        fc["relayed"], 1,
        "the over-long request was not relayed: {fc}"
    );
    assert_eq!(fc["denied"]["69"], 1, "{fc}");
    let hc = ctl_json(&lab.ha_ctl, "counters");
    assert!(
        hc["dataplane"]["decapsulated"].as_u64().unwrap() >= 1,
        "reverse tunnel reached the HA: {hc}"
    );

    // Deregistration through the FA removes the visitor and its state.
    let (rep, _) = register(&sock, &request(0, now_id(2)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(ctl_json(&lab.fa_ctl, "visitors"), serde_json::json!([]));
    assert_eq!(fa_ns.ip(&format!("route show {HOA} table 434")), "");
    assert!(!fa_ns.ip("rule show").contains(&HOA.to_string()));
}

#[test]
fn sigterm_removes_visitor_state_and_the_tunnel_device() {
    let mut lab = lab("fadt");
    let sock = mn_socket(&lab.mn);
    let (rep, _) = register(&sock, &request(120, now_id(0)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    let fa_ns = &lab.fa_ns;
    assert!(fa_ns
        .ip(&format!("route show {HOA} table 434"))
        .contains("dev vlink"));
    // SAFETY: kill(2) on the `ip netns exec` child, which execs mip4-fa
    // in place (same pid).
    unsafe { libc::kill(lab.fa.0.id() as i32, libc::SIGTERM) };
    let st = lab.fa.0.wait().unwrap();
    assert!(st.success(), "mip4-fa exited with {st}");
    assert_eq!(fa_ns.ip(&format!("route show {HOA} table 434")), "");
    assert!(!fa_ns.ip("rule show").contains(&HOA.to_string()));
    assert_eq!(fa_ns.ip("route show table 434"), "");
    assert!(!fa_ns.ip(&format!("neigh show {HOA}")).contains("PERMANENT"));
    assert!(!fa_ns.ip("-o link show").contains("mip4fa0"));
    assert!(!lab.fa_ctl.exists());
}

/// What mip4-fa holds in the FA's namespace: the visitor's host route,
/// its reverse-tunnel rules, ip_forward and the served link's rp_filter.
fn fa_kernel(ns: &Netns) -> (String, usize, String, String) {
    let rules = ns
        .ip("rule show")
        .lines()
        .filter(|l| l.contains(&format!("from {HOA} iif vlink lookup 434")))
        .count();
    let sysctl = |k: &'static str| ns.run(async move { std::fs::read_to_string(k).unwrap() });
    (
        ns.ip(&format!("route show {HOA} table 434")),
        rules,
        sysctl("/proc/sys/net/ipv4/ip_forward").trim().to_string(),
        sysctl("/proc/sys/net/ipv4/conf/vlink/rp_filter")
            .trim()
            .to_string(),
    )
}

/// Issue 13: mip4-fa killed with SIGKILL while it serves a visitor leaves
/// its route, neighbour entry, rule and sysctls; started again it removes
/// them first (nothing twice once the visitor registers again), survives
/// SIGHUP, and its clean stop leaves nothing and puts ip_forward and
/// rp_filter back to what the first instance found.
#[test]
fn a_killed_fa_starts_again_cleanly_and_restores_its_sysctls() {
    let mut lab = lab("fakill");
    // What the first instance found: a new namespace does not forward;
    // lab() set the link's rp_filter to 2.
    let found = (String::new(), 0, "0".to_string(), "2".to_string());
    let sock = mn_socket(&lab.mn);
    let (rep, _) = register(&sock, &request(120, now_id(0)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    let serving = fa_kernel(&lab.fa_ns);
    assert!(
        serving.0.contains("dev vlink") && serving.1 == 1,
        "{serving:?}"
    );
    let _ = lab.fa.0.kill();
    lab.fa.0.wait().unwrap();
    assert_eq!(fa_kernel(&lab.fa_ns), serving, "SIGKILL leaves it all");

    let conf = lab._dir.path().join("mip4-fa.conf");
    lab.fa = spawn(&lab.fa_ns, env!("CARGO_BIN_EXE_mip4-fa"), &conf);
    wait_ctl(&lab.fa_ctl, "mip4-fa");
    let fresh = fa_kernel(&lab.fa_ns);
    assert_eq!(fresh.0, "", "the visitor's route left by the killed one");
    assert_eq!(fresh.1, 0, "its rule");
    assert!(!lab
        .fa_ns
        .ip(&format!("neigh show {HOA}"))
        .contains("PERMANENT"));
    // The visitor registers again: one of each.
    let (rep, _) = register(&sock, &request(120, now_id(1)));
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(fa_kernel(&lab.fa_ns), serving);

    // SIGHUP: logged and ignored, no longer fatal.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.fa.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    assert!(wait_for(WAIT, || mip4::ctl::call(
        &lab.fa_ctl,
        mip4::ctl::Request::Status,
        Duration::from_secs(1)
    )
    .is_ok()));
    assert!(
        lab.fa.0.try_wait().unwrap().is_none(),
        "SIGHUP killed mip4-fa"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lab.fa.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(lab.fa.0.wait().unwrap().success());
    assert_eq!(fa_kernel(&lab.fa_ns), found);
}

/// mip4-fa's kernel backend checks what its ipip links decapsulate in
/// nftables (RFC 5944 §4.2.2: only to a visitor, and only to one of the
/// link's home agent). The host has no ipip module, so this loads the
/// rule as mip4-fa loads it into a namespace where a veth named like the
/// FA's link to home agent 10.77.0.1 stands in for that link (the rule
/// judges by link name and inner destination), and pings across it: the
/// counter mip4ctl shows says each drop happened.
#[test]
fn the_kernel_backends_check_delivers_only_to_a_visitor_of_the_links_home_agent() {
    use mip4::daemons::fa::ha_links::{link_name, LINK_PREFIX};
    use mip4::daemons::fa::ingress;
    require_root();
    let fa = Netns::new("fachk-fa");
    let ha = Netns::new("fachk-ha");
    let link = link_name(HA);
    fa.ip(&format!(
        "link add {link} type veth peer name vha netns {}",
        ha.name
    ));
    fa.ip(&format!("addr add {COA}/24 dev {link}"));
    fa.ip(&format!("link set {link} up"));
    ha.ip(&format!("addr add {HA}/24 dev vha"));
    ha.ip("link set vha up");
    // Once, without the rule: the path works.
    let reaches = || {
        Command::new("ip")
            .args([
                "netns", "exec", &ha.name, "ping", "-n", "-c", "1", "-W", "2",
            ])
            .arg(COA.to_string())
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(reaches(), "no path from the HA's namespace to {COA}");
    let dropped = || fa.run(async { ingress::CHECK.dropped().unwrap() });
    fa.run(async { ingress::install(LINK_PREFIX).await })
        .unwrap();
    assert_eq!(dropped(), 0);
    assert!(!reaches(), "no visitor yet: dropped");
    assert_eq!(dropped(), 1);
    let l = link.clone();
    fa.run(async move { ingress::admit(&l, COA).await })
        .unwrap();
    assert!(reaches(), "a visitor of the link's HA: delivered");
    assert_eq!(dropped(), 1);
    let l = link.clone();
    fa.run(async move { ingress::revoke(&l, COA).await })
        .unwrap();
    assert!(!reaches(), "the visitor gone: dropped again");
    assert_eq!(dropped(), 2);
    // A visitor of another home agent: not from this link.
    let other = link_name(Ipv4Addr::new(10, 77, 0, 9));
    fa.run(async move { ingress::admit(&other, COA).await })
        .unwrap();
    assert!(!reaches(), "a visitor of another HA: dropped");
    assert_eq!(dropped(), 3);
    fa.run(async { ingress::CHECK.remove().await }).unwrap();
    assert!(reaches(), "the table removed at a clean stop");
}
