//! mip4-ha as a real process in a network namespace this test makes:
//! real UDP requests in, replies checked, `mip4ctl` read back, bad input
//! refused or dropped and counted while a second node is still served.
//! Needs root (network namespaces).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mip4::auth::{append_auth, AuthExtAt, AuthKind, SecurityAssociation};
use mip4::daemons::nft::Table;
use mip4::replay::{NtpTimestamp, ReplayMethod};
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr};

const K1: &str = "00112233445566778899aabbccddeeff";
const K2: &str = "0102030405060708090a0b0c0d0e0f10";
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 5);

/// Deletes the namespace on drop, also when the test fails.
struct Netns(String);

impl Netns {
    fn new(prefix: &str) -> Netns {
        let name = format!("{prefix}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns(name);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }
    /// A namespace with the home agent's and the care-of address on lo.
    fn with_ha_and_coa(prefix: &str) -> Netns {
        let ns = Netns::new(prefix);
        ns.exec(&["ip", "addr", "add", "10.1.0.1/32", "dev", "lo"]);
        ns.exec(&["ip", "addr", "add", "10.10.1.5/32", "dev", "lo"]);
        ns
    }
    fn exec(&self, cmd: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", &self.0];
        v.extend_from_slice(cmd);
        run(&v);
    }
    /// What `cmd` prints in this namespace.
    fn output(&self, cmd: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(cmd)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {cmd:?}: {e}", self.0));
        assert!(
            out.status.success(),
            "ip netns exec {} {cmd:?}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// A UDP socket that lives in this namespace: a helper thread enters
    /// the namespace, binds, and hands the socket back (a socket stays in
    /// the namespace it was created in).
    fn udp_socket(&self, bind: SocketAddrV4) -> UdpSocket {
        self.within(move || UdpSocket::bind(bind).expect("bind in netns"))
    }
    /// `f` run by a helper thread inside this namespace.
    fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/var/run/netns").join(&self.0);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            // SAFETY: setns on a valid namespace fd only changes this
            // helper thread's network namespace.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Kills the daemon on drop if the test did not stop it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Namespace tests need root; without it they fail (CI runs as root, so a
/// silent skip would hide a broken setup).
fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test creates network namespaces and must run as root (euid is {euid})"
    );
}

fn run(cmd: &[&str]) {
    let st = Command::new(cmd[0]).args(&cmd[1..]).status().expect(cmd[0]);
    assert!(st.success(), "{cmd:?} failed (this test needs root)");
}

fn sa(spi: u32, key: &str) -> SecurityAssociation {
    let k = mip4::config::SecretKey::from_hex(key).unwrap();
    SecurityAssociation::new(
        spi,
        mip4::auth::Algorithm::HmacMd5,
        k.expose(),
        ReplayMethod::Timestamp,
    )
    .unwrap()
}

fn request(home: Ipv4Addr, id: u64, exts: Vec<Extension>, sa: &SecurityAssociation) -> Vec<u8> {
    let mut b = RequestRepr {
        flags: Flags::T,
        lifetime: 120,
        home_address: home,
        home_agent: HA,
        care_of_address: COA,
        identification: id,
        extensions: exts,
    }
    .to_bytes();
    append_auth(&mut b, AuthKind::MnHa, sa);
    b
}

/// The first node's NAI extension (RFC 2794).
fn nai1() -> Extension {
    Extension::Nai(b"mn1@example.com".to_vec())
}

fn now_id() -> u64 {
    let t = NtpTimestamp::from_system_time(std::time::SystemTime::now());
    t.0
}

/// The mobile nodes' socket, on the care-of address in `ns`; a reply is
/// awaited for at most 5 s.
fn mn_socket(ns: &Netns) -> UdpSocket {
    let sock = ns.udp_socket(SocketAddrV4::new(COA, 0));
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock
}

/// Sends and waits for the reply (socket timeout is the deadline).
fn exchange(sock: &UdpSocket, bytes: &[u8]) -> Vec<u8> {
    sock.send_to(bytes, SocketAddrV4::new(HA, 434)).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).expect("a reply from mip4-ha");
    buf[..n].to_vec()
}

fn verify(bytes: &[u8], sa: &SecurityAssociation) -> ReplyRepr {
    let rep = ReplyRepr::parse_bytes(bytes).unwrap();
    let offs = mip4::wire::extension::parse_all(bytes, mip4::wire::registration::REPLY_HEADER_LEN)
        .unwrap();
    let (at, _) = offs
        .iter()
        .find(|(_, e)| matches!(e, Extension::MnHaAuth(_)))
        .expect("signed reply");
    AuthExtAt::parse(bytes, *at).unwrap().verify(sa).unwrap();
    rep
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

/// Polls `f` until it holds or the deadline passes.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes the two-node configuration, and `extra` after it, into `dir`
/// and starts mip4-ha in `ns` with it; returns once its control socket
/// answers.
fn start_ha(ns: &Netns, dir: &Path, stderr: Stdio, extra: &str) -> Daemon {
    start_ha_with(ns, dir, stderr, extra, &[])
}

/// [`start_ha`] with `wrapper` in front of the command (`prlimit ...`).
fn start_ha_with(ns: &Netns, dir: &Path, stderr: Stdio, extra: &str, wrapper: &[&str]) -> Daemon {
    let ctl = dir.join("ha.sock");
    let conf = dir.join("mip4-ha.conf");
    std::fs::write(
        &conf,
        format!(
            r#"
listen = "0.0.0.0:434"
home_agent = "10.1.0.1"
control_socket = "{}"
max_lifetime = 300
trusted_networks = ["10.10.0.0/16"]

[[home_network]]
prefix = "10.1.0.0/24"

[[mobile_node]]
nai = "mn1@example.com"
home_address = "10.1.0.10"
spi = 256
key = "{K1}"

[[mobile_node]]
home_address = "10.1.0.11"
spi = 257
key = "{K2}"
{extra}"#,
            ctl.display()
        ),
    )
    .unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&conf, mode).unwrap();
    let mut cmd = Command::new(wrapper.first().copied().unwrap_or("ip"));
    if !wrapper.is_empty() {
        cmd.args(&wrapper[1..]).arg("ip");
    }
    let child = cmd
        .args([
            "netns",
            "exec",
            &ns.0,
            env!("CARGO_BIN_EXE_mip4-ha"),
            "--config",
        ])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    wait_for("the control socket", || {
        mip4::ctl::call(&ctl, mip4::ctl::Request::Status, Duration::from_secs(1)).is_ok()
    });
    daemon
}

#[test]
fn daemon_serves_registrations_refuses_bad_input_and_reports_through_mip4ctl() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4ha");
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ha.sock");
    let mut daemon = start_ha(&ns, dir.path(), Stdio::inherit(), "");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&ctl).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "control socket is root-only");

    let sock = mn_socket(&ns);
    let (mn1, mn2) = (sa(256, K1), sa(257, K2));
    let hoa1 = Ipv4Addr::new(10, 1, 0, 10);
    let hoa2 = Ipv4Addr::new(10, 1, 0, 11);

    // A good registration from a trusted network: accepted, signed, TNC.
    let id = now_id();
    let good = request(hoa1, id, vec![nai1()], &mn1);
    let rep = verify(&exchange(&sock, &good), &mn1);
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(rep.identification, id);
    assert!(rep
        .extensions
        .contains(&Extension::TrustedNetworksConfigured));
    let b = ctl_json(&ctl, "bindings");
    assert_eq!(b[0]["home_address"], "10.1.0.10");
    assert_eq!(b[0]["care_of_address"], "10.10.1.5");
    assert_eq!(b[0]["nai"], "mn1@example.com");
    assert_eq!(b[0]["reverse_tunnel"], true);

    // Replayed: the same datagram again.
    let rep = verify(&exchange(&sock, &good), &mn1);
    assert_eq!(rep.code, ReplyCode::HA_IDENTIFICATION_MISMATCH);
    // Forged: right SPI, wrong key.
    let forged = request(hoa1, now_id() + 1, vec![], &sa(256, K2));
    let rep = ReplyRepr::parse_bytes(&exchange(&sock, &forged)).unwrap();
    assert_eq!(rep.code, ReplyCode::HA_MN_FAILED_AUTH);
    // Unauthenticated: no MN-HA extension at all.
    let mut bare = good.clone();
    bare.truncate(mip4::wire::registration::REQUEST_HEADER_LEN);
    let rep = ReplyRepr::parse_bytes(&exchange(&sock, &bare)).unwrap();
    assert_eq!(rep.code, ReplyCode::HA_MN_FAILED_AUTH);
    // Malformed: dropped without reply, counted.
    sock.send_to(&[1, 2, 3], SocketAddrV4::new(HA, 434))
        .unwrap();
    wait_for("the malformed datagram to be counted", || {
        ctl_json(&ctl, "counters")["dropped_malformed"] == 1
    });

    // The HA still serves another mobile node.
    let rep = verify(
        &exchange(&sock, &request(hoa2, now_id() + 2, vec![], &mn2)),
        &mn2,
    );
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    let b = ctl_json(&ctl, "bindings");
    assert_eq!(b.as_array().unwrap().len(), 2);
    // The first binding survived the attacks unchanged.
    assert_eq!(b[0]["identification"], id);

    let c = ctl_json(&ctl, "counters");
    assert_eq!(c["accepted"], 2);
    assert_eq!(c["replayed"], 1);
    assert_eq!(c["unauthenticated"], 2);
    assert_eq!(c["denied"]["131"], 2);
    assert_eq!(c["denied"]["133"], 1);

    // Deregistration removes the binding.
    let mut dereg = RequestRepr::parse_bytes(&request(hoa2, now_id() + 3, vec![], &mn2)).unwrap();
    dereg.lifetime = 0;
    dereg.extensions.clear();
    let mut bytes = dereg.to_bytes();
    append_auth(&mut bytes, AuthKind::MnHa, &mn2);
    assert_eq!(
        verify(&exchange(&sock, &bytes), &mn2).code,
        ReplyCode::ACCEPTED
    );
    assert_eq!(ctl_json(&ctl, "bindings").as_array().unwrap().len(), 1);

    // Clean shutdown on SIGTERM removes the control socket.
    // SAFETY: kill(2) on the pid of the `ip netns exec` child, which execs
    // mip4-ha in place (same pid).
    unsafe { libc::kill(daemon.0.id() as i32, libc::SIGTERM) };
    let st = daemon.0.wait().unwrap();
    assert!(st.success(), "mip4-ha exited with {st}");
    assert!(!ctl.exists(), "control socket removed on shutdown");
}

/// Issue 13 Medium 9, through either reader of UDP 434: 100,000 forged
/// requests from 32 sources (half outside the trusted networks) while a
/// legitimate node registers every few milliseconds
/// ([`mip4::lab::flood`]). Every registration of the node is answered and
/// accepted (the run fails otherwise) and its binding is in place after
/// the flood; each kind of forgery is counted under its reason, and every
/// forged datagram that reached the HA is counted once; the log grows by
/// the rate limiter's bound and two lines per accepted registration, not
/// with the flood. The timing figures are `mip4-lab flood`'s (make bench),
/// printed here with `--nocapture`, never asserted. With `replayed`, a
/// fifth of the flood is a copy of a request the node signed: dropped at
/// the screen and counted `replayed`, but for one a second that reaches
/// the agent (its 133 is what a node with a wrong clock would need; RFC
/// 5944 §5.7.1, src/ha/accepted.rs).
fn flood_is_settled_at_the_socket(udp_tunnelling: bool, replayed: bool) {
    require_root();
    let mut opts = mip4::lab::flood::FloodOptions::new(Path::new(env!("CARGO_BIN_EXE_mip4-ha")));
    opts.udp_tunnelling = udp_tunnelling;
    opts.replayed = replayed;
    let r = mip4::lab::flood::run_once(&opts).unwrap();
    let c = &r.counters;
    println!(
        "flood (udp_tunnelling = {udp_tunnelling}): ratio {:.2}, unloaded {:?}, flooded {:?} \
         ({} registrations, {} sends), flood sent in {:?}, {} dropped at the socket, \
         mip4-ha CPU {:?} ({:?} per datagram read); log {} lines; counters {c}",
        r.ratio(),
        mip4::lab::flood::median(&r.unloaded),
        mip4::lab::flood::median(&r.loaded),
        r.loaded.len(),
        r.sends,
        r.flood_took,
        r.socket_drops,
        r.ha_cpu,
        r.cpu_per_datagram(opts.forged),
        r.log.lines().count(),
    );

    // The node's binding, to its care-of address, after the flood.
    let b = r.bindings.as_array().unwrap();
    assert_eq!(b.len(), 1, "{}", r.bindings);
    assert_eq!(b[0]["home_address"], "10.1.0.11", "{}", r.bindings);
    assert_eq!(b[0]["care_of_address"], COA.to_string(), "{}", r.bindings);
    // Each of its registrations (unloaded, under the flood, one after)
    // was accepted by the HA.
    let registrations = (r.unloaded.len() + r.loaded.len() + 1) as u64;
    assert!(c["accepted"].as_u64().unwrap() >= registrations, "{c}");

    // Every kind of forgery reached the HA and was counted by its reason.
    let n = |k: &str| c[k].as_u64().unwrap();
    for reason in [
        "unknown_spi",
        "unauthenticated",
        "dropped_malformed",
        "dropped_untrusted_source",
        "rate_limited",
    ] {
        assert!(n(reason) > 0, "{reason}: {c}");
    }
    // Each forged datagram the kernel delivered is counted once, under
    // one reason (or as found the agent's queue full).
    let counted = n("unknown_spi")
        + n("unauthenticated")
        + n("dropped_malformed")
        + n("dropped_untrusted_source")
        + n("replayed")
        + n("queue_full");
    let screened = |k: &str| c["screened"][k].as_u64().unwrap();
    if replayed {
        // RFC 5944 §5.7.1: a replay is settled at the socket; at most one
        // a second reaches the agent, which answers it with 133.
        let queued = n("replayed") - screened("replayed");
        assert!(screened("replayed") > 0, "{c}");
        assert!(
            queued <= r.elapsed.as_secs() + 1,
            "{queued} replays queued: {c}"
        );
        assert_eq!(c["denied"]["133"].as_u64().unwrap_or(0), queued, "{c}");
    } else {
        assert_eq!(n("replayed"), 0, "{c}");
    }
    let forged = opts.forged as u64;
    assert!(
        counted <= forged && counted + r.socket_drops >= forged,
        "{counted} counted of {forged} forged, {} dropped at the socket: {c}",
        r.socket_drops
    );
    // What the kernel dropped at UDP 434 (forged or the node's own)
    // mip4-ha counts itself, among the namespace's drops (its sockets'
    // all).
    assert!(
        counted + n("socket_dropped") <= forged + r.sends as u64
            && n("socket_dropped") <= r.socket_drops,
        "{counted} counted of {forged} forged, {} dropped in the namespace: {c}",
        r.socket_drops
    );
    // Replies to unauthenticated requests (131) stay within the limit.
    let secs = r.elapsed.as_secs() + 1;
    let limit = 50 + 10 * secs;
    assert!(c["denied"]["131"].as_u64().unwrap_or(0) <= limit, "{c}");

    // The log: a start-up handful, two lines per accepted registration
    // (installed, accepted), and what the limiter allows for the rest.
    let per_registration =
        |l: &str| l.contains("registration accepted") || l.contains("binding installed");
    let other_lines = r.log.lines().filter(|l| !per_registration(l)).count() as u64;
    assert!(
        other_lines <= 20 + limit,
        "{other_lines} log lines besides acceptances in {secs} s:\n{}",
        r.log
    );
}

#[test]
fn a_flood_of_forged_requests_read_by_the_userspace_plane_is_settled_at_the_socket() {
    flood_is_settled_at_the_socket(true, false);
}

/// The HA's own reader, with replayed signed requests in the flood.
#[test]
fn a_flood_of_forged_and_replayed_requests_read_by_the_ha_itself_is_settled_at_the_socket() {
    flood_is_settled_at_the_socket(false, true);
}

/// Issue 13 High 3 through the real daemon and installer: a home link
/// whose interface does not exist makes installing the binding fail after
/// its tunnel and route were made. The node gets 130, never "accepted";
/// nothing of the binding stays in the data plane, the routing table or
/// the binding list; another node is still served.
#[test]
fn a_binding_that_cannot_be_installed_is_denied_and_leaves_nothing() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4hainst");
    let dir = tempfile::tempdir().unwrap();
    let _daemon = start_ha(
        &ns,
        dir.path(),
        Stdio::inherit(),
        &format!(
            r#"
[[home_network]]
prefix = "10.2.0.0/24"
mode = "proxy-arp"
interface = "nosuchlink0"

[[mobile_node]]
home_address = "10.2.0.20"
spi = 258
key = "{K1}"
"#
        ),
    );
    let ctl = dir.path().join("ha.sock");
    let sock = mn_socket(&ns);
    let mn3 = sa(258, K1);
    let hoa3 = Ipv4Addr::new(10, 2, 0, 20);
    let rep = verify(
        &exchange(&sock, &request(hoa3, now_id(), vec![], &mn3)),
        &mn3,
    );
    assert_eq!(rep.code, ReplyCode::HA_INSUFFICIENT_RESOURCES);
    assert_eq!(rep.lifetime, 0);
    assert_eq!(ctl_json(&ctl, "bindings").as_array().unwrap().len(), 0);
    let status = ctl_json(&ctl, "status");
    assert_eq!(
        status["dataplane"]["tunnels"].as_array().unwrap().len(),
        0,
        "{status}"
    );
    assert_eq!(
        status["dataplane"]["installed"].as_array().unwrap().len(),
        0,
        "{status}"
    );
    let routes = ns.output(&["ip", "route", "show", "10.2.0.20/32"]);
    assert!(routes.is_empty(), "route left: {routes}");
    let c = ctl_json(&ctl, "counters");
    assert_eq!(
        (c["install_failed"].as_u64(), c["accepted"].as_u64()),
        (Some(1), Some(0)),
        "{c}"
    );
    // The node on the virtual home network is installed and accepted.
    let mn2 = sa(257, K2);
    let rep = verify(
        &exchange(
            &sock,
            &request(Ipv4Addr::new(10, 1, 0, 11), now_id(), vec![], &mn2),
        ),
        &mn2,
    );
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
}

/// Sends `sig` to the daemon (the `ip netns exec` child execs mip4-ha in
/// place: same pid) and waits for it to end.
fn signal_and_wait(d: &mut Daemon, sig: nix::sys::signal::Signal) -> std::process::ExitStatus {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(d.0.id() as i32), sig).unwrap();
    d.0.wait().unwrap()
}

/// What of the daemon's is in the namespace's kernel: the routes of the
/// home addresses, the tunnel devices and ip_forward.
fn kernel_state(ns: &Netns) -> (String, usize, String) {
    let routes = ns.output(&["ip", "-4", "route", "show", "root", "10.1.0.0/24"]);
    let links = ns.output(&["ip", "-o", "link", "show"]);
    let tunnels = links.lines().filter(|l| l.contains("mip4ha0")).count();
    let forward = ns.output(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    (routes, tunnels, forward.trim().to_string())
}

/// Issue 13: mip4-ha killed with SIGKILL while it holds a binding comes
/// back with it: the binding (same Identification, lifetime running on),
/// its tunnel and route installed before anything is answered, nothing
/// twice; the request it accepted before is still a replay (RFC 5944
/// §5.7). A clean stop after that leaves nothing, and puts ip_forward back
/// to what the first instance found. A corrupt state file is a log line
/// and an empty cache, never a failed start.
#[test]
fn a_killed_ha_restarts_with_its_bindings_and_a_clean_stop_leaves_nothing() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4harestart");
    let forward_before = kernel_state(&ns).2;
    assert_eq!(forward_before, "0", "a new namespace does not forward");
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ha.sock");
    let state = dir.path().join("ha.state");
    let mut first = start_ha(&ns, dir.path(), Stdio::inherit(), "");
    let sock = mn_socket(&ns);
    let mn1 = sa(256, K1);
    let hoa1 = Ipv4Addr::new(10, 1, 0, 10);
    let id = now_id();
    let good = request(hoa1, id, vec![nai1()], &mn1);
    assert_eq!(
        verify(&exchange(&sock, &good), &mn1).code,
        ReplyCode::ACCEPTED
    );
    let held = kernel_state(&ns);
    assert!(held.0.contains("10.1.0.10 dev mip4ha0"), "{held:?}");
    assert_eq!((held.1, held.2.as_str()), (1, "1"), "{held:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&state).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the state file is root-only");

    let st = signal_and_wait(&mut first, nix::sys::signal::Signal::SIGKILL);
    assert!(!st.success());
    let mut second = start_ha(&ns, dir.path(), Stdio::inherit(), "");
    // The first thing it answers already has the binding, installed.
    let b = ctl_json(&ctl, "bindings");
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b[0]["home_address"], "10.1.0.10");
    assert_eq!(b[0]["identification"], id);
    assert_eq!(b[0]["nai"], "mn1@example.com");
    let remaining = b[0]["remaining"].as_u64().unwrap();
    assert!((100..120).contains(&remaining), "{b}");
    assert_eq!(kernel_state(&ns), held, "the same routes and one tunnel");
    // RFC 5944 §5.7: accepted before the restart, a replay after it.
    assert_eq!(
        verify(&exchange(&sock, &good), &mn1).code,
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
    let renewal = request(hoa1, now_id(), vec![], &mn1);
    assert_eq!(
        verify(&exchange(&sock, &renewal), &mn1).code,
        ReplyCode::ACCEPTED
    );
    assert_eq!(kernel_state(&ns), held, "a renewal adds nothing");

    // A clean stop: nothing left, ip_forward as the first instance found it.
    assert!(signal_and_wait(&mut second, nix::sys::signal::Signal::SIGTERM).success());
    assert_eq!(
        kernel_state(&ns),
        (String::new(), 0, forward_before.clone())
    );

    // A corrupt state file: logged, set aside, an empty cache; it serves.
    std::fs::write(&state, b"{ not json").unwrap();
    let log_path = dir.path().join("mip4-ha.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut third = start_ha(&ns, dir.path(), Stdio::from(log), "");
    assert_eq!(ctl_json(&ctl, "bindings").as_array().unwrap().len(), 0);
    let rejected = dir.path().join("ha.state.rejected");
    assert_eq!(std::fs::read(&rejected).unwrap(), b"{ not json");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("state file not taken up, starting afresh")
            && log.contains("an empty binding cache"),
        "{log}"
    );
    assert_eq!(
        verify(
            &exchange(&sock, &request(hoa1, now_id(), vec![], &mn1)),
            &mn1
        )
        .code,
        ReplyCode::ACCEPTED
    );
    assert!(signal_and_wait(&mut third, nix::sys::signal::Signal::SIGTERM).success());
    assert_eq!(kernel_state(&ns), (String::new(), 0, forward_before));
}

/// Issue 14 §4: a journal compaction no longer stands mip4-ha's loop
/// still for an export of the cache: the loop rotates the journal and a
/// thread builds the next snapshot from the files. Killed (SIGKILL) at
/// points of a compaction, mip4-ha comes back each time with every
/// binding it accepted, each at the Identification of the last request
/// it accepted.
#[test]
fn a_ha_killed_during_a_journal_compaction_comes_back_with_every_accepted_binding() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4hacompact");
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ha.sock");
    let rotated = dir.path().join("ha.state.journal.next");
    let log_path = dir.path().join("mip4-ha.log");
    // Nodes enough that the binding cache is more than a couple of lines:
    // a compaction comes after 512 registrations (the journal's minimum).
    let nodes: Vec<(Ipv4Addr, SecurityAssociation)> = (0..200u32)
        .map(|i| (Ipv4Addr::new(10, 1, 0, 20 + i as u8), sa(300 + i, K1)))
        .collect();
    let extra: String = nodes
        .iter()
        .map(|(home, sa)| {
            format!(
                "\n[[mobile_node]]\nhome_address = \"{home}\"\nspi = {}\nkey = \"{K1}\"\n",
                sa.spi()
            )
        })
        .collect();
    let start = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        start_ha(&ns, dir.path(), Stdio::from(log), &extra)
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let sock = mn_socket(&ns);
    let mut accepted = BTreeMap::new();
    let register = |i: usize, accepted: &mut BTreeMap<String, u64>| {
        let (home, sa) = &nodes[i % nodes.len()];
        let id = now_id();
        let reply = verify(&exchange(&sock, &request(*home, id, vec![], sa)), sa);
        assert_eq!(reply.code, ReplyCode::ACCEPTED, "{home}");
        accepted.insert(home.to_string(), id);
    };
    let held = |accepted: &BTreeMap<String, u64>| {
        let b = ctl_json(&ctl, "bindings");
        let got: BTreeMap<String, u64> = b
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["home_address"].as_str().unwrap().to_string(),
                    b["identification"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            &got, accepted,
            "every accepted binding, at its last Identification"
        );
    };

    let compactions = |l: &str| l.matches("journal compaction: snapshot written").count();
    let mut next = 0;
    let mut ha = start();
    // Killed at three points of a compaction: at once after the reply
    // whose save rotated the journal; a few registrations after it (into
    // the rotated journal, the snapshot written or not); once the
    // snapshot was taken up and the new journal written to.
    for after in [None, Some(3), Some(50)] {
        let written = compactions(&log());
        let until = next + 5000;
        while !rotated.exists() {
            register(next, &mut accepted);
            next += 1;
            assert!(next < until, "no journal compaction in 5000 registrations");
        }
        if after == Some(50) {
            wait_for("the compaction's snapshot", || {
                compactions(&log()) > written
            });
        }
        for _ in 0..after.unwrap_or(0) {
            register(next, &mut accepted);
            next += 1;
        }
        if after == Some(50) {
            assert!(!rotated.exists(), "taken up: the rotated journal renamed");
        }
        signal_and_wait(&mut ha, nix::sys::signal::Signal::SIGKILL);
        ha = start();
        held(&accepted);
    }
    let l = log();
    assert!(
        l.contains("journal rotated") && l.contains("its snapshot and journal renamed into place"),
        "{l}"
    );
    assert!(signal_and_wait(&mut ha, nix::sys::signal::Signal::SIGTERM).success());
}

/// Issue 13: SIGHUP reloads mip4-ha (it used to be the only daemon that
/// survived it); the daemon keeps serving with its bindings.
#[test]
fn sighup_reloads_the_ha_and_keeps_its_bindings() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4hahup");
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("ha.sock");
    let log_path = dir.path().join("mip4-ha.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut d = start_ha(&ns, dir.path(), Stdio::from(log), "");
    let sock = mn_socket(&ns);
    let mn2 = sa(257, K2);
    let hoa2 = Ipv4Addr::new(10, 1, 0, 11);
    assert_eq!(
        verify(
            &exchange(&sock, &request(hoa2, now_id(), vec![], &mn2)),
            &mn2
        )
        .code,
        ReplyCode::ACCEPTED
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the reload", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("configuration reloaded"))
    });
    assert!(d.0.try_wait().unwrap().is_none(), "still running");
    assert_eq!(ctl_json(&ctl, "bindings").as_array().unwrap().len(), 1);
    // A reload that removes a node saves what it changed (the journal),
    // not everything: killed after it, mip4-ha comes back with the
    // binding it kept and without the one it removed.
    let conf = dir.path().join("mip4-ha.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let mn1 = sa(256, K1);
    let hoa1 = Ipv4Addr::new(10, 1, 0, 10);
    let good = request(hoa1, now_id(), vec![nai1()], &mn1);
    assert_eq!(
        verify(&exchange(&sock, &good), &mn1).code,
        ReplyCode::ACCEPTED
    );
    let without_mn1 = text.replace(
        &format!(
            "[[mobile_node]]\nnai = \"mn1@example.com\"\nhome_address = \"10.1.0.10\"\nspi = 256\nkey = \"{K1}\"\n"
        ),
        "",
    );
    assert_ne!(without_mn1, text);
    std::fs::write(&conf, &without_mn1).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the second reload", || {
        std::fs::read_to_string(&log_path)
            .is_ok_and(|l| l.matches("configuration reloaded").count() == 2)
    });
    signal_and_wait(&mut d, nix::sys::signal::Signal::SIGKILL);
    std::fs::write(&conf, &text).unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .unwrap();
    let mut d = start_ha(&ns, dir.path(), Stdio::from(log), "");
    let b = ctl_json(&ctl, "bindings");
    assert_eq!(b.as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b[0]["home_address"], "10.1.0.11");
    // Issue 13 item 10: a change a reload cannot apply is refused, with
    // the key, never ignored silently.
    std::fs::write(&conf, text.replace("0.0.0.0:434", "0.0.0.0:4434")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("the refusal", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| {
            l.contains("reload refused") && l.contains("`listen` changed: restart mip4-ha")
        })
    });
    assert_eq!(
        verify(
            &exchange(&sock, &request(hoa2, now_id(), vec![], &mn2)),
            &mn2
        )
        .code,
        ReplyCode::ACCEPTED,
        "still serving on the old port"
    );
    assert!(signal_and_wait(&mut d, nix::sys::signal::Signal::SIGTERM).success());
}

/// Issue 13: out of descriptors, the control socket's accept loop waits
/// between tries instead of spinning, and serves again once clients
/// close. mip4-ha runs with a low RLIMIT_NOFILE and more clients than it
/// can take; its own counter of accept failures and waits must stay
/// within what the waits allow over the time of the shortage.
#[test]
fn out_of_descriptors_the_control_socket_backs_off_and_serves_again() {
    require_root();
    let ns = Netns::with_ha_and_coa("mip4haemfile");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("ha.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _daemon = start_ha_with(
        &ns,
        dir.path(),
        Stdio::from(log),
        "",
        &["prlimit", "--nofile=64:64"],
    );
    let ctl = dir.path().join("ha.sock");
    let before = ctl_json(&ctl, "status")["accept"].clone();
    assert_eq!(before["errors"], 0, "{before}");

    let started = Instant::now();
    let clients: Vec<std::os::unix::net::UnixStream> = (0..150)
        .map(|_| std::os::unix::net::UnixStream::connect(&ctl).expect("connect"))
        .collect();
    let shortage = "cannot accept a connection";
    wait_for("the accept loop to run out of descriptors", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains(shortage))
    });
    // The shortage lasts a while: long enough for the waits to reach
    // their longest, where a spin would have made millions of tries.
    std::thread::sleep(Duration::from_millis(1500));
    drop(clients);
    let status = loop {
        match mip4::ctl::call(&ctl, mip4::ctl::Request::Status, Duration::from_secs(1)) {
            Ok(r) => break r,
            Err(e) => assert!(
                started.elapsed() < Duration::from_secs(20),
                "mip4-ha does not serve again: {e}"
            ),
        }
    };
    let shortage_s = started.elapsed().as_secs_f64();
    let data = status.data.expect("status data");
    let accept = &data["accept"];
    let errors = accept["errors"].as_u64().expect("accept.errors");
    let backoffs = accept["backoffs"].as_u64().expect("accept.backoffs");
    // Each wait is at least 10 ms and the loop waits one at a time, so no
    // more than 100 a second can fit in the shortage (+1 for the try in
    // progress); a spin makes orders of magnitude more.
    let bound = 1 + (shortage_s * 100.0).ceil() as u64;
    assert!(errors >= 1, "{accept}");
    assert_eq!(errors, backoffs, "one wait per failure: {accept}");
    assert!(
        backoffs <= bound,
        "{backoffs} waits in {shortage_s:.1} s (bound {bound}): the loop spins"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(log.matches(shortage).count(), 1, "logged once: {log}");
    assert!(log.contains("accepting connections again"), "{log}");
}

/// The ingress checks' drop counters (`inner_address_mismatch`,
/// `ipv6_source_spoofed` in `mip4ctl counters`) are read over nftables'
/// netlink, not by running nft in the control answer's path: the value
/// read is the kernel's own, in both families, and a missing table is an
/// error (the daemon then keeps the last value), not a zero.
#[test]
fn the_ingress_counters_are_read_over_netlink() {
    require_root();
    let ns = Netns::new("w-nftc");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.nft");
    std::fs::write(
        &rules,
        "table ip mip4-ha {\n\tcounter rfc3024_ingress_dropped {\n\t\tpackets 7 bytes 700\n\t}\n}\n\
         table ip6 mip4-ha {\n\tcounter ipv6_source_spoofed {\n\t\tpackets 4294967301 bytes 9\n\t}\n}\n",
    )
    .unwrap();
    ns.exec(&["nft", "-f", rules.to_str().unwrap()]);
    // mip4-ha's two tables (src/daemons/ha/ingress.rs).
    const CHECK: Table = Table {
        family: "ip",
        name: "mip4-ha",
        counter: "rfc3024_ingress_dropped",
    };
    const CHECK6: Table = Table {
        family: "ip6",
        ..CHECK
    };
    let (v4, v6) = ns.within(|| {
        (
            CHECK.dropped(),
            Table {
                counter: "ipv6_source_spoofed",
                ..CHECK6
            }
            .dropped(),
        )
    });
    assert_eq!(v4, Ok(7));
    assert_eq!(v6, Ok(4_294_967_301));
    ns.exec(&["nft", "delete", "table", "ip", "mip4-ha"]);
    let gone = ns.within(|| CHECK.dropped());
    let e = gone.expect_err("a missing table is an error");
    assert!(e.contains("rfc3024_ingress_dropped"), "{e}");
}

/// A moved binding's grace on its old link (the RFC 5454 and RFC 3024
/// rules, src/daemons/ha/ingress.rs): the element goes into the `grace`
/// set of its family's table over netlink, with its timeout, as `nft`
/// itself lists it; the kernel expires it.
#[test]
fn a_moved_bindings_grace_is_an_element_of_the_kernels_set() {
    require_root();
    let ns = Netns::new("w-nftg");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.nft");
    std::fs::write(&rules, mip4::daemons::ha::ingress::ruleset6()).unwrap();
    ns.exec(&["nft", "-f", rules.to_str().unwrap()]);
    let added = ns.within(|| {
        mip4::daemons::ha::ingress::grace("mip6-0ac80001", "2001:db8:10::/64".parse().unwrap())
    });
    assert_eq!(added, Ok(()));
    let list = || ns.output(&["nft", "list", "set", "ip6", "mip4-ha", "grace"]);
    let l = list();
    assert!(
        l.contains("\"mip6-0ac80001\" . 2001:db8:10::/64 timeout 3s expires"),
        "{l}"
    );
    // A set that is not there is an error, not a silent success.
    let missing = ns.within(|| {
        mip4::daemons::nft_setelem::add_ifname_net(
            "mip4-ha",
            "nothing",
            "mip6-0ac80001",
            "2001:db8:10::/64".parse().unwrap(),
            Duration::from_secs(3),
        )
    });
    assert!(missing.is_err(), "{missing:?}");
    // The ip table's set likewise, for a home address left on an ipip
    // link.
    std::fs::write(&rules, mip4::daemons::ha::ingress::ruleset()).unwrap();
    ns.exec(&["nft", "-f", rules.to_str().unwrap()]);
    let added = ns.within(|| {
        mip4::daemons::ha::ingress::grace("mip4-0ac80001", "10.1.100.5/32".parse().unwrap())
    });
    assert_eq!(added, Ok(()));
    let l4 = ns.output(&["nft", "list", "set", "ip", "mip4-ha", "grace"]);
    assert!(
        l4.contains("\"mip4-0ac80001\" . 10.1.100.5 timeout 3s expires"),
        "{l4}"
    );
    std::thread::sleep(Duration::from_millis(3300));
    assert!(!list().contains("mip6-0ac80001"), "expired: {}", list());
}
