//! The plugin's bridge between charon's hooks and mip4d.
//!
//! charon's hooks (through the C shim and [`crate::ffi`]) only enqueue an
//! [`Input`] on a channel and return: they never wait for mip4d. One bridge
//! thread ([`Bridge::run`]) folds every event into [`state::State`], forwards
//! it to mip4d when connected, and reconnects when mip4d is absent or
//! restarts; on every (re)connection it sends a full snapshot, so mip4d
//! always converges to what charon has. Requests from mip4d are handed to
//! charon through [`Charon::request`], which queues a charon job and
//! returns; the job's outcome comes back as [`Input::ActionDone`].

pub mod proto;
pub mod state;

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use proto::{Action, ActionStatus, DaemonMsg, Event, IkeSa, PluginMsg, ProtoError};
use state::State;

/// Default socket of mip4d (charon.plugins.mip4.socket).
pub const DEFAULT_SOCKET: &str = "/run/mip4/plugin.sock";

/// What the bridge needs from charon (the shim, or a fake in tests).
pub trait Charon: Send + 'static {
    /// A line for charon's log at level 0..=4.
    fn log(&self, level: u8, msg: &str);
    /// Queue `action` as a charon job; false if it could not be queued.
    /// The job reports with [`Input::ActionDone`] carrying `id`.
    fn request(&self, id: u64, action: &Action) -> bool;
}

/// charon.plugins.mip4.* as the bridge uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// mip4d's unix socket.
    pub socket: PathBuf,
    /// Connections the plugin acts on; empty: all.
    pub connections: Vec<String>,
    /// Highest charon log level the bridge logs at.
    pub loglevel: u8,
    /// Wait between connection attempts while mip4d is absent.
    pub reconnect: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            connections: Vec::new(),
            loglevel: 1,
            reconnect: Duration::from_millis(500),
        }
    }
}

impl Settings {
    /// Splits a `connections` setting ("a, b c") into names.
    pub fn parse_connections(list: &str) -> Vec<String> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Whether the plugin acts on this connection.
    pub fn acts_on(&self, connection: &str) -> bool {
        self.connections.is_empty() || self.connections.iter().any(|c| c == connection)
    }
}

/// Everything the bridge thread reacts to.
#[derive(Debug)]
pub enum Input {
    /// A charon hook fired.
    Event(Event),
    /// A charon job finished a request of mip4d.
    ActionDone {
        id: u64,
        status: ActionStatus,
        path: Option<IkeSa>,
    },
    /// A message from the mip4d connection `conn`.
    FromDaemon { conn: u64, msg: DaemonMsg },
    /// The mip4d connection `conn` ended (reason for the log).
    DaemonGone { conn: u64, reason: String },
    /// End the bridge loop.
    Stop,
}

/// The sending side, cloned into the FFI layer. Sending never blocks: the
/// channel is unbounded because hooks must not wait and IKE events are few;
/// a hook's event is never dropped, so the state stays exact.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: Sender<Input>,
}

impl Handle {
    /// Hands an input to the bridge; false if the bridge has ended.
    pub fn send(&self, input: Input) -> bool {
        self.tx.send(input).is_ok()
    }
}

/// A live connection to mip4d.
struct Conn {
    id: u64,
    stream: UnixStream,
}

/// The bridge loop and its state.
pub struct Bridge<C: Charon> {
    settings: Settings,
    charon: C,
    rx: Receiver<Input>,
    tx: Sender<Input>,
    state: State,
    conn: Option<Conn>,
    conn_count: u64,
    seq: u64,
    /// Reason of the last failed connection attempt, logged once per change.
    last_failure: Option<String>,
}

impl<C: Charon> Bridge<C> {
    pub fn new(settings: Settings, charon: C) -> (Self, Handle) {
        let (tx, rx) = mpsc::channel();
        let handle = Handle { tx: tx.clone() };
        let bridge = Self {
            settings,
            charon,
            rx,
            tx,
            state: State::new(),
            conn: None,
            conn_count: 0,
            seq: 0,
            last_failure: None,
        };
        (bridge, handle)
    }

    /// Runs until [`Input::Stop`].
    pub fn run(mut self) {
        self.log(
            1,
            &format!(
                "bridge started, mip4d socket {}, connections: {}",
                self.settings.socket.display(),
                if self.settings.connections.is_empty() {
                    "all".to_string()
                } else {
                    self.settings.connections.join(" ")
                }
            ),
        );
        let mut next_attempt = Instant::now();
        loop {
            if self.conn.is_none() && Instant::now() >= next_attempt {
                self.connect();
                next_attempt = Instant::now() + self.settings.reconnect;
            }
            let wait = if self.conn.is_none() {
                next_attempt.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(3600)
            };
            match self.rx.recv_timeout(wait) {
                Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        self.log(1, "bridge stopped");
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Event(event) => self.on_event(event),
            Input::ActionDone { id, status, path } => {
                self.send(&PluginMsg::ActionResult { id, status, path });
            }
            Input::FromDaemon { conn, msg } if self.is_current(conn) => self.on_daemon(msg),
            Input::DaemonGone { conn, reason } if self.is_current(conn) => {
                self.log(1, &format!("mip4d disconnected: {reason}"));
                self.conn = None;
            }
            Input::FromDaemon { .. } | Input::DaemonGone { .. } | Input::Stop => {}
        }
    }

    fn is_current(&self, conn: u64) -> bool {
        self.conn.as_ref().is_some_and(|c| c.id == conn)
    }

    fn on_event(&mut self, event: Event) {
        if let Some(ike) = event.ike() {
            if !self.settings.acts_on(&ike.name) {
                self.log(3, &format!("ignoring {} (not in connections)", ike.name));
                return;
            }
        }
        self.log(2, &format!("hook {}", describe(&event)));
        self.state.apply(&event);
        self.seq += 1;
        let seq = self.seq;
        self.send(&PluginMsg::Event { seq, event });
    }

    fn on_daemon(&mut self, msg: DaemonMsg) {
        match msg {
            DaemonMsg::Hello { version } => {
                self.log(2, &format!("mip4d speaks protocol {version}"));
            }
            DaemonMsg::Request { id, action } => {
                let status = if !self.settings.acts_on(action.connection()) {
                    Some(ActionStatus::Refused)
                } else if !self.charon.request(id, &action) {
                    Some(ActionStatus::Unavailable)
                } else {
                    None
                };
                self.log(1, &format!("mip4d asks {action:?} (request {id})"));
                if let Some(status) = status {
                    self.send(&PluginMsg::ActionResult {
                        id,
                        status,
                        path: None,
                    });
                }
            }
        }
    }

    /// Sends to mip4d if connected; a failed write drops the connection
    /// (the next one gets a snapshot, so nothing is lost).
    fn send(&mut self, msg: &PluginMsg) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = proto::write_msg(&mut conn.stream, msg) {
            self.log(1, &format!("writing to mip4d failed: {e}"));
            self.conn = None;
        }
    }

    fn connect(&mut self) {
        match self.try_connect() {
            Ok(conn) => {
                self.last_failure = None;
                self.conn = Some(conn);
                let hello = PluginMsg::Hello {
                    version: proto::VERSION,
                    agent: concat!("libstrongswan-mip4 ", env!("CARGO_PKG_VERSION")).into(),
                };
                self.send(&hello);
                let snapshot = PluginMsg::Snapshot {
                    ike_sas: self.state.snapshot(),
                };
                self.send(&snapshot);
                if self.conn.is_some() {
                    self.log(1, "connected to mip4d, snapshot sent");
                }
            }
            Err(reason) => {
                if self.last_failure.as_ref() != Some(&reason) {
                    self.log(2, &format!("mip4d not reachable: {reason}"));
                    self.last_failure = Some(reason);
                }
            }
        }
    }

    fn try_connect(&mut self) -> Result<Conn, String> {
        let path = &self.settings.socket;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.file_type().is_socket() {
            return Err(format!("{} is not a socket", path.display()));
        }
        // The control socket must be root-only (or owned by charon's user):
        // anyone else able to connect could steer the VPN.
        let me = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        if meta.mode() & 0o077 != 0 || (meta.uid() != 0 && meta.uid() != me) {
            return Err(format!(
                "{} has mode {:o} owner {}: refusing (must be 0600, root)",
                path.display(),
                meta.mode() & 0o777,
                meta.uid()
            ));
        }
        let stream = UnixStream::connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.conn_count += 1;
        let id = self.conn_count;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let tx = self.tx.clone();
        thread::Builder::new()
            .name("mip4-reader".into())
            .spawn(move || read_daemon(id, reader, tx))
            .map_err(|e| e.to_string())?;
        Ok(Conn { id, stream })
    }

    fn log(&self, level: u8, msg: &str) {
        if level <= self.settings.loglevel {
            self.charon.log(level, msg);
        }
    }
}

/// Reader thread of one mip4d connection: decodes frames into inputs. It
/// touches nothing of charon's; it ends with the connection.
fn read_daemon(conn: u64, mut stream: UnixStream, tx: Sender<Input>) {
    let reason = loop {
        match proto::read_msg::<DaemonMsg, _>(&mut stream) {
            Ok(Some(DaemonMsg::Hello { version })) if version != proto::VERSION => {
                break ProtoError::Version {
                    ours: proto::VERSION,
                    theirs: version,
                }
                .to_string();
            }
            Ok(Some(msg)) => {
                if tx.send(Input::FromDaemon { conn, msg }).is_err() {
                    return;
                }
            }
            Ok(None) => break "closed".to_string(),
            Err(ProtoError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                break "reset".to_string();
            }
            Err(e) => break e.to_string(),
        }
    };
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = tx.send(Input::DaemonGone { conn, reason });
}

/// One line per hook for charon's log.
fn describe(event: &Event) -> String {
    let ike = |i: &IkeSa| format!("{}[{}]", i.name, i.unique_id);
    match event {
        Event::HandleVips { ike: i, handle } => {
            format!("handle_vips {} {} {:?}", ike(i), handle, i.vips)
        }
        Event::AssignVips { ike: i, assign } => {
            format!("assign_vips {} {} {:?}", ike(i), assign, i.vips)
        }
        Event::IkeUpdate {
            ike: i,
            new_local,
            new_remote,
        } => format!(
            "ike_update {} {:?}->{:?} {:?}->{:?}",
            ike(i),
            i.local.map(|e| e.addr),
            new_local.map(|e| e.addr),
            i.remote.map(|e| e.addr),
            new_remote.map(|e| e.addr)
        ),
        Event::IkeUpdown { ike: i, up } => format!("ike_updown {} {}", ike(i), up),
        Event::IkeRekey {
            ike: i,
            new_unique_id,
        } => {
            format!("ike_rekey {} -> {}", ike(i), new_unique_id)
        }
        Event::IkeReestablishPre {
            ike: i,
            new_unique_id,
        } => {
            format!("ike_reestablish_pre {} -> {}", ike(i), new_unique_id)
        }
        Event::IkeReestablishPost {
            ike: i,
            new_unique_id,
            ..
        } => format!("ike_reestablish_post {} -> {}", ike(i), new_unique_id),
        Event::ChildUpdown { ike: i, child, up } => {
            format!("child_updown {} {} {}", ike(i), child, up)
        }
        Event::Roam { address } => format!("roam address={address}"),
    }
}

#[cfg(test)]
mod tests;
