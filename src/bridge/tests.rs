//! The bridge against a fake mip4d on a temporary unix socket.

use super::proto::{self, Endpoint, VERSION};
use super::*;
use std::io::Write;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex};

const DEADLINE: Duration = Duration::from_secs(10);

#[derive(Clone, Default)]
struct FakeCharon {
    logs: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<Vec<(u64, Action)>>>,
}

impl FakeCharon {
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
fn other_protocol_version_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&dir);
    let charon = FakeCharon::default();
    let _bridge = start(s.clone(), charon.clone());
    let daemon = FakeDaemon::listen(&s.socket);
    let mut conn = daemon.accept();
    assert!(matches!(recv(&mut conn), PluginMsg::Hello { .. }));
    proto::write_msg(
        &mut conn,
        &DaemonMsg::Hello {
            version: VERSION + 1,
        },
    )
    .unwrap();
    // The bridge sends its snapshot right after its hello, without waiting
    // for ours, so the snapshot may or may not beat the disconnect: read
    // until the bridge closes the connection.
    while let Some(msg) = proto::read_msg::<PluginMsg, _>(&mut conn).unwrap() {
        assert!(matches!(msg, PluginMsg::Snapshot { .. }), "{msg:?}");
    }
    charon.wait_log("version 2 not supported");
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
