//! The bridge against a fake mip4d on a temporary unix socket.

use super::proto::{self, Endpoint, VERSION};
use super::*;
use std::io::Write;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::sync::{Arc, Mutex};

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct FakeCharon {
    logs: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<(u64, Action)>>>,
    /// A bug in the bridge: charon's request callback panics.
    panic_on_request: bool,
}

impl FakeCharon {
    /// Log lines containing `needle`.
    fn count_logs(&self, needle: &str) -> usize {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until a log line contains `needle`.
    fn wait_log(&self, needle: &str) {
        let end = Instant::now() + DEADLINE;
        while !self.logs.lock().unwrap().iter().any(|l| l.contains(needle)) {
            assert!(
                Instant::now() < end,
                "no `{needle}` logged: {:?}",
                self.logs.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Charon for FakeCharon {
    fn log(&self, _level: u8, msg: &str) {
        self.logs.lock().unwrap().push(msg.to_string());
    }
    fn request(&self, id: u64, action: &Action) -> bool {
        assert!(!self.panic_on_request, "request {id} trips a bug");
        self.requests.lock().unwrap().push((id, action.clone()));
        true
    }
}

/// A fake mip4d: a 0600 listener on a temp path.
struct FakeDaemon {
    listener: UnixListener,
}

impl FakeDaemon {
    fn listen(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        listener.set_nonblocking(true).unwrap();
        Self { listener }
    }

    /// Waits for the bridge to connect.
    fn accept(&self) -> UnixStream {
        let end = Instant::now() + DEADLINE;
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(DEADLINE)).unwrap();
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("bridge did not connect: {e}"),
            }
        }
    }
}

fn recv(s: &mut UnixStream) -> PluginMsg {
    proto::read_msg(s).unwrap().expect("message")
}

/// Reads Hello then Snapshot, returns the snapshot.
fn handshake(s: &mut UnixStream) -> Vec<proto::IkeSaState> {
    match recv(s) {
        PluginMsg::Hello { version, .. } => assert_eq!(version, VERSION),
        other => panic!("expected hello, got {other:?}"),
    }
    proto::write_msg(s, &DaemonMsg::Hello { version: VERSION }).unwrap();
    match recv(s) {
        PluginMsg::Snapshot { ike_sas } => ike_sas,
        other => panic!("expected snapshot, got {other:?}"),
    }
}

fn settings(dir: &tempfile::TempDir) -> Settings {
    Settings {
        socket: dir.path().join("plugin.sock"),
        connections: vec!["home".into()],
        loglevel: 4,
        reconnect: Duration::from_millis(20),
        charon: Default::default(),
    }
}

fn ike(name: &str, id: u32, local: u8) -> IkeSa {
    IkeSa {
        name: name.into(),
        unique_id: id,
        local: Some(Endpoint {
            addr: Ipv4Addr::new(192, 0, 2, local).into(),
            port: 4500,
        }),
        remote: Some(Endpoint {
            addr: Ipv4Addr::new(198, 51, 100, 1).into(),
            port: 4500,
        }),
        local_ifname: Some("eth0".into()),
        vips: vec![],
        mobike: Some(true),
        child_sas: None,
    }
}

fn tia_event(id: u32) -> Event {
    let mut i = ike("home", id, 10);
    i.vips = vec![Ipv4Addr::new(10, 200, 0, 1).into()];
    Event::HandleVips {
        ike: i,
        handle: true,
    }
}

struct Running {
    handle: Handle,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.send(Input::Stop);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start(settings: Settings, charon: FakeCharon) -> Running {
    let (bridge, handle) = Bridge::new(settings, charon);
    let thread = Some(thread::spawn(move || bridge.run()));
    Running { handle, thread }
}

#[test]
fn state_gathered_while_mip4d_is_absent_arrives_as_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let bridge = start(s.clone(), charon.clone());
    assert!(bridge.handle.send(Input::Event(tia_event(1))));
    assert!(bridge.handle.send(Input::Event(Event::IkeUpdown {
        ike: ike("home", 1, 10),
        up: true,
    })));
    // Not a connection the plugin acts on: not in the snapshot.
    assert!(bridge.handle.send(Input::Event(Event::IkeUpdown {
        ike: ike("other", 2, 10),
        up: true,
    })));
    // The bridge has folded them all in while mip4d was absent.
    charon.wait_log("ignoring other");
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    let snap = handshake(&mut conn);
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].name, "home");
    assert!(snap[0].up);
    assert_eq!(
        snap[0].tia,
        vec![IpAddr::from(Ipv4Addr::new(10, 200, 0, 1))]
    );
    assert_eq!(
        snap[0].remote.unwrap().addr,
        IpAddr::from(Ipv4Addr::new(198, 51, 100, 1))
    );

    // Live events follow the snapshot, numbered.
    bridge
        .handle
        .send(Input::Event(Event::Roam { address: true }));
    match recv(&mut conn) {
        PluginMsg::Event { seq, event } => {
            assert_eq!(seq, 3);
            assert_eq!(event, Event::Roam { address: true });
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn mip4d_restart_gets_a_fresh_snapshot_with_what_happened_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let bridge = start(s.clone(), FakeCharon::default());
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    assert!(handshake(&mut conn).is_empty());
    bridge.handle.send(Input::Event(tia_event(1)));
    assert!(matches!(recv(&mut conn), PluginMsg::Event { .. }));

    // mip4d goes away; MOBIKE moves the IKE_SA meanwhile.
    drop(conn);
    drop(daemon);
    bridge.handle.send(Input::Event(Event::IkeUpdate {
        ike: ike("home", 1, 10),
        new_local: Some(Endpoint {
            addr: Ipv4Addr::new(203, 0, 113, 5).into(),
            port: 4500,
        }),
        new_remote: None,
    }));

    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    let snap = handshake(&mut conn);
    assert_eq!(snap.len(), 1);
    assert_eq!(
        snap[0].local.unwrap().addr,
        IpAddr::from(Ipv4Addr::new(203, 0, 113, 5))
    );
    assert_eq!(
        snap[0].tia,
        vec![IpAddr::from(Ipv4Addr::new(10, 200, 0, 1))]
    );
}

/// Protocol 2 is compatible with 1: a version-1 mip4d is served (it
/// never asks to roam), and a version-2 one's roam request reaches charon.
#[test]
fn a_version_one_mip4d_is_served_and_a_roam_request_reaches_charon() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let _bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    assert!(matches!(
        recv(&mut conn),
        PluginMsg::Hello {
            version: VERSION,
            ..
        }
    ));
    proto::write_msg(&mut conn, &DaemonMsg::Hello { version: 1 }).unwrap();
    assert!(matches!(recv(&mut conn), PluginMsg::Snapshot { .. }));
    let roam = Action::Roam {
        connection: "home".into(),
    };
    proto::write_msg(
        &mut conn,
        &DaemonMsg::Request {
            id: 3,
            action: roam.clone(),
        },
    )
    .unwrap();
    let end = Instant::now() + DEADLINE;
    while charon.requests.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "the request never reached charon");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(*charon.requests.lock().unwrap(), vec![(3, roam)]);
    assert_eq!(charon.count_logs("not supported"), 0);
}

#[test]
fn requests_go_to_charon_and_results_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    handshake(&mut conn);

    let initiate = Action::Initiate {
        connection: "home".into(),
    };
    proto::write_msg(
        &mut conn,
        &DaemonMsg::Request {
            id: 7,
            action: initiate.clone(),
        },
    )
    .unwrap();
    // A connection outside charon.plugins.mip4.connections is refused
    // without bothering charon.
    proto::write_msg(
        &mut conn,
        &DaemonMsg::Request {
            id: 8,
            action: Action::Terminate {
                connection: "other".into(),
            },
        },
    )
    .unwrap();
    match recv(&mut conn) {
        PluginMsg::ActionResult { id, status, .. } => {
            assert_eq!((id, status), (8, ActionStatus::Refused));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*charon.requests.lock().unwrap(), vec![(7, initiate)]);

    // The charon job reports back.
    bridge.handle.send(Input::ActionDone {
        id: 7,
        status: ActionStatus::Ok,
        path: None,
    });
    match recv(&mut conn) {
        PluginMsg::ActionResult { id, status, .. } => {
            assert_eq!((id, status), (7, ActionStatus::Ok));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_from_mip4d_drops_the_connection_and_the_bridge_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let _bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    for garbage in [
        &u32::MAX.to_be_bytes()[..],
        &[0, 0, 0, 3, b'x', b'y', b'z'][..],
    ] {
        let mut conn = daemon.accept();
        handshake(&mut conn);
        conn.write_all(garbage).unwrap();
        // The bridge hangs up: the next read sees end of stream.
        assert!(proto::read_msg::<PluginMsg, _>(&mut conn)
            .unwrap()
            .is_none());
    }
    // ... and comes back.
    let mut conn = daemon.accept();
    handshake(&mut conn);
    charon.wait_log("exceeds the limit");
    charon.wait_log("malformed message");
}

#[test]
fn socket_others_can_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let daemon = FakeDaemon::listen(&s.socket);
    std::fs::set_permissions(&s.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let _bridge = start(s.clone(), charon.clone());
    let end = Instant::now() + DEADLINE;
    while !charon
        .logs
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("refusing"))
    {
        assert!(Instant::now() < end, "no refusal logged");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(matches!(
        daemon.listener.accept(),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    ));
    // Fixed by mip4d: the bridge connects.
    std::fs::set_permissions(&s.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut conn = daemon.accept();
    handshake(&mut conn);
}

#[test]
fn connections_setting_parses_commas_and_spaces() {
    assert_eq!(
        Settings::parse_connections(" home, work  lab,"),
        vec!["home", "work", "lab"]
    );
    let s = Settings {
        connections: vec![],
        ..Default::default()
    };
    assert!(s.acts_on("anything"));
}

#[test]
fn a_mip4d_that_never_reads_neither_blocks_the_bridge_nor_grows_its_memory() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    // Accepts, then never reads a byte: the socket buffer fills.
    let _stalled = daemon.accept();
    charon.wait_log("connected to mip4d");
    let mut i = ike("home", 1, 10);
    i.vips = vec![Ipv4Addr::new(10, 200, 0, 1).into()];
    i.local_ifname = Some("x".repeat(15));
    for n in 0..5_000u32 {
        i.unique_id = n % 64;
        assert!(bridge.handle.send(Input::Event(Event::IkeUpdown {
            ike: i.clone(),
            up: n % 2 == 0,
        })));
        assert!(bridge.handle.queued_events() <= MAX_QUEUED_EVENTS);
        assert!(bridge.handle.known_ike_sas() <= state::MAX_IKE_SAS);
    }
    // The bridge gave up on the write instead of waiting for ever ...
    charon.wait_log("stalled, not waiting");
    // ... and stops at once: charon's shutdown joins this thread.
    let asked = Instant::now();
    assert!(
        bridge.handle.stop(Duration::from_secs(2)),
        "bridge still running 2 s after stop"
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
}

#[test]
fn hook_events_beyond_the_queue_become_one_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let (bridge, handle) = Bridge::new(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    // The loop runs only once the hooks have overflowed the queue.
    for n in 0..(MAX_QUEUED_EVENTS as u32 + 10) {
        handle.send(Input::Event(Event::IkeUpdown {
            ike: ike("home", n % 3, 10),
            up: true,
        }));
    }
    assert!(handle.queued_events() <= MAX_QUEUED_EVENTS);
    let thread = thread::spawn(move || bridge.run());
    let mut conn = daemon.accept();
    let snap = handshake(&mut conn);
    assert_eq!(snap.len(), 3, "the snapshot has what the hooks said");
    // Nothing of the dropped queue follows: the next message is new.
    handle.send(Input::Event(Event::Roam { address: true }));
    match recv(&mut conn) {
        PluginMsg::Event { event, .. } => assert_eq!(event, Event::Roam { address: true }),
        other => panic!("{other:?}"),
    }
    assert!(handle.stop(DEADLINE));
    thread.join().unwrap();
}

#[test]
fn a_protocol_version_mismatch_is_logged_once_and_retried_ever_more_rarely() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let daemon = FakeDaemon::listen(&s.socket);
    let _bridge = start(s.clone(), charon.clone());
    let mut accepted = Vec::new();
    for _ in 0..4 {
        let mut conn = daemon.accept();
        accepted.push(Instant::now());
        assert!(matches!(recv(&mut conn), PluginMsg::Hello { .. }));
        proto::write_msg(
            &mut conn,
            &DaemonMsg::Hello {
                version: VERSION + 1,
            },
        )
        .unwrap();
        // The bridge hangs up. It sends its snapshot right after its hello,
        // without waiting for ours, so the snapshot may or may not beat the
        // hang-up.
        while let Some(msg) = proto::read_msg::<PluginMsg, _>(&mut conn).unwrap() {
            assert!(matches!(msg, PluginMsg::Snapshot { .. }), "{msg:?}");
        }
    }
    charon.wait_log(&format!("version {} not supported", VERSION + 1));
    assert_eq!(charon.count_logs("not supported"), 1, "logged once");
    // Waits of at least 2, 4, then 8 times the reconnect setting.
    let waited = accepted[3] - accepted[0];
    let logs = charon.logs.lock().unwrap().clone();
    assert!(
        waited >= s.reconnect * (2 + 4 + 8),
        "reconnected after {waited:?}: {logs:?}"
    );
}

#[test]
fn a_socket_served_by_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let s = settings(&dir);
    // A listener of uid 65534 (nobody) behind a socket file that looks
    // like mip4d's (root, 0600): only SO_PEERCRED tells them apart.
    let script = format!(
        "import socket,time\ns=socket.socket(socket.AF_UNIX)\ns.bind({:?})\ns.listen(8)\n\
         while True: time.sleep(1)\n",
        s.socket.display().to_string()
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("python3");
    let end = Instant::now() + DEADLINE;
    while !s.socket.exists() {
        assert!(Instant::now() < end, "listener did not start");
        thread::sleep(Duration::from_millis(10));
    }
    std::os::unix::fs::chown(&s.socket, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&s.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
    let charon = FakeCharon::default();
    let bridge = start(s.clone(), charon.clone());
    charon.wait_log("is served by uid 65534: refusing");
    assert_eq!(charon.count_logs("connected to mip4d"), 0);
    drop(bridge);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_panic_in_the_bridge_thread_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon {
        panic_on_request: true,
        ..FakeCharon::default()
    };
    let bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    handshake(&mut conn);
    proto::write_msg(
        &mut conn,
        &DaemonMsg::Request {
            id: 1,
            action: Action::Initiate {
                connection: "home".into(),
            },
        },
    )
    .unwrap();
    charon.wait_log("bridge thread panicked: request 1 trips a bug");
    // Hooks after it are refused, not queued for ever.
    assert!(!bridge.handle.send(Input::Event(tia_event(1))));
}

#[test]
fn ike_sas_dropped_to_stay_bounded_are_counted_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let bridge = start(s, charon.clone());
    for id in 0..(state::MAX_IKE_SAS as u32 + 5) {
        bridge.handle.send(Input::Event(Event::IkeUpdown {
            ike: ike("home", id, 10),
            up: true,
        }));
    }
    assert_eq!(bridge.handle.known_ike_sas(), state::MAX_IKE_SAS);
    charon.wait_log("5 since start");
}
