//! The plugin's bridge between charon's hooks and mip4d.
//!
//! charon's hooks (through the C shim and [`crate::ffi`]) hand an [`Input`]
//! to a [`Handle`] and return: they never wait for mip4d. A hook's event is
//! folded into the bounded [`state::State`] at once and queued for mip4d;
//! the queue is bounded too, and when it overflows (mip4d stalled) mip4d
//! gets one snapshot instead of the events it missed. One bridge thread
//! ([`Bridge::run`]) forwards what is queued, with a time limit on each
//! write, and reconnects when mip4d is absent, stalled or restarts; on
//! every (re)connection it sends a full snapshot, so mip4d always
//! converges to what charon has. Requests from mip4d are handed to charon
//! through [`Charon::request`], which queues a charon job and returns; the
//! job's outcome comes back as [`Input::ActionDone`]. Stopping is bounded:
//! no step of the loop waits longer than [`WRITE_TIMEOUT`].

pub mod proto;
pub mod state;

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use proto::{
    Action, ActionStatus, CharonInterfaces, DaemonMsg, Event, IkeSa, PluginMsg, ProtoError,
};
use state::State;

/// Default socket of mip4d (charon.plugins.mip4.socket).
pub const DEFAULT_SOCKET: &str = "/run/mip4/plugin.sock";
/// Most hook events queued for mip4d; past it the queue is folded into
/// the state and mip4d gets one snapshot instead.
pub const MAX_QUEUED_EVENTS: usize = 1024;
/// Most messages from mip4d waiting for the bridge; a mip4d sending more
/// is disconnected.
pub const MAX_QUEUED_FROM_DAEMON: usize = 64;
/// Most requests of mip4d that charon has not answered yet; more are
/// answered `unavailable` at once.
pub const MAX_PENDING_REQUESTS: usize = 32;
/// Longest time one frame may take to write: a mip4d that reads slower is
/// stalled and disconnected (the next connection gets a snapshot).
pub const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest wait between connection attempts after protocol version
/// mismatches (the wait doubles from `Settings::reconnect` up to this).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

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
    /// charon's interface filter, told to mip4d in Hello.
    pub charon: CharonInterfaces,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            connections: Vec::new(),
            loglevel: 1,
            reconnect: Duration::from_millis(500),
            charon: CharonInterfaces::default(),
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
    /// The mip4d connection `conn` ended.
    DaemonGone { conn: u64, reason: Gone },
    /// End the bridge loop.
    Stop,
}

/// Why a mip4d connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// mip4d speaks another protocol version.
    Version(u32),
    /// Anything else, for the log.
    Other(String),
}

/// What hooks, charon jobs and reader threads hand to the bridge thread,
/// under one lock. Hooks fold their event into `state` at once, so a
/// stalled bridge never loses one; the queue of events to forward is
/// bounded, and once it overflows mip4d gets a snapshot instead.
#[derive(Debug, Default)]
struct Inbox {
    state: State,
    /// Events folded into `state` and not yet forwarded, with their seq.
    events: VecDeque<(u64, Event)>,
    /// The event queue overflowed: send a snapshot instead of `events`.
    resync: bool,
    /// Events dropped from the queue since the last snapshot.
    folded: u64,
    seq: u64,
    /// Action results and mip4d's messages.
    control: VecDeque<Input>,
    /// The last connection ignored (not in `connections`), for the log.
    ignored: Option<String>,
    /// The bridge loop has started / has ended.
    started: bool,
    finished: bool,
}

/// Shared between the hooks (through [`Handle`]) and the bridge thread.
#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    /// Signalled when the inbox has something, and when the loop ends.
    wake: Condvar,
    stop: AtomicBool,
    settings: Settings,
}

impl Shared {
    fn inbox(&self) -> MutexGuard<'_, Inbox> {
        // Every update of the inbox is complete before a panic could
        // happen, so a poisoned lock still guards a consistent inbox.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// The sending side, cloned into the FFI layer. Sending never blocks
/// beyond a short lock and never grows without bound (see [`Inbox`]).
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Hands an input to the bridge; false if the bridge has ended or, for
    /// a message of mip4d, if too many are waiting.
    pub fn send(&self, input: Input) -> bool {
        let shared = &self.shared;
        if shared.stopping() {
            return false;
        }
        let mut inbox = shared.inbox();
        if inbox.finished {
            return false;
        }
        match input {
            Input::Event(event) => {
                if let Some(ike) = event.ike() {
                    if !shared.settings.acts_on(&ike.name) {
                        inbox.ignored = Some(ike.name.clone());
                        shared.wake.notify_all();
                        return true;
                    }
                }
                inbox.state.apply(&event);
                inbox.seq += 1;
                let seq = inbox.seq;
                if inbox.resync {
                    inbox.folded += 1;
                } else if inbox.events.len() < MAX_QUEUED_EVENTS {
                    inbox.events.push_back((seq, event));
                } else {
                    inbox.folded += inbox.events.len() as u64 + 1;
                    inbox.events.clear();
                    inbox.resync = true;
                }
            }
            Input::Stop => {
                shared.stop.store(true, Ordering::Relaxed);
            }
            Input::FromDaemon { .. } if inbox.control.len() >= MAX_QUEUED_FROM_DAEMON => {
                return false;
            }
            other => inbox.control.push_back(other),
        }
        shared.wake.notify_all();
        true
    }

    /// Asks the loop to end and waits up to `timeout` for it to end; true
    /// if it has ended (or never started), so its thread can be joined
    /// without blocking.
    pub fn stop(&self, timeout: Duration) -> bool {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake.notify_all();
        let inbox = self.shared.inbox();
        let (inbox, _) = self
            .shared
            .wake
            .wait_timeout_while(inbox, timeout, |i| i.started && !i.finished)
            .unwrap_or_else(|e| e.into_inner());
        !inbox.started || inbox.finished
    }

    /// Events waiting to be forwarded (bounded by [`MAX_QUEUED_EVENTS`]).
    pub fn queued_events(&self) -> usize {
        self.shared.inbox().events.len()
    }

    /// IKE_SAs in the state (bounded by [`state::MAX_IKE_SAS`]).
    pub fn known_ike_sas(&self) -> usize {
        self.shared.inbox().state.len()
    }
}

/// What the bridge thread takes from the inbox in one go.
#[derive(Default)]
struct Batch {
    control: Vec<Input>,
    events: Vec<(u64, Event)>,
    /// The queue overflowed: this snapshot replaces the dropped events.
    snapshot: Option<(PluginMsg, u64)>,
    ignored: Option<String>,
    /// IKE_SAs evicted from the state since start.
    evicted: u64,
}

/// A live connection to mip4d.
struct Conn {
    id: u64,
    stream: UnixStream,
    reader: Option<JoinHandle<()>>,
}

impl Drop for Conn {
    /// Hangs up and waits for the reader thread: the shutdown ends its
    /// read at once, and no thread of the plugin outlives the bridge.
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The bridge loop and its state.
pub struct Bridge<C: Charon> {
    charon: C,
    shared: Arc<Shared>,
    conn: Option<Conn>,
    conn_count: u64,
    /// Requests handed to charon and not answered yet.
    pending: usize,
    /// Reason of the last failed connection attempt, logged once per change.
    last_failure: Option<String>,
    /// The protocol version of mip4d last refused, logged once.
    refused_version: Option<u32>,
    /// Wait before the next connection attempt.
    backoff: Duration,
    next_attempt: Instant,
    /// IKE_SAs evicted from the state, as last logged.
    evicted: u64,
}

impl<C: Charon> Bridge<C> {
    pub fn new(settings: Settings, charon: C) -> (Self, Handle) {
        let backoff = settings.reconnect;
        let shared = Arc::new(Shared {
            inbox: Mutex::default(),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            settings,
        });
        let handle = Handle {
            shared: shared.clone(),
        };
        let bridge = Self {
            charon,
            shared,
            conn: None,
            conn_count: 0,
            pending: 0,
            last_failure: None,
            refused_version: None,
            backoff,
            next_attempt: Instant::now(),
            evicted: 0,
        };
        (bridge, handle)
    }

    fn settings(&self) -> &Settings {
        &self.shared.settings
    }

    /// Runs until [`Input::Stop`]. A panic in the loop is logged to
    /// charon (the plugin then no longer reports to mip4d), never
    /// silent, and never crosses into charon.
    pub fn run(mut self) {
        self.shared.inbox().started = true;
        let outcome = catch_unwind(AssertUnwindSafe(|| self.serve()));
        self.conn = None;
        let mut inbox = self.shared.inbox();
        inbox.finished = true;
        inbox.events.clear();
        inbox.control.clear();
        drop(inbox);
        if let Err(panic) = outcome {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            self.charon.log(
                0,
                &format!("bridge thread panicked: {what}; mip4d gets no more events"),
            );
        }
        self.shared.wake.notify_all();
    }

    fn serve(&mut self) {
        let s = self.settings();
        let started = format!(
            "bridge started, mip4d socket {}, connections: {}",
            s.socket.display(),
            if s.connections.is_empty() {
                "all".to_string()
            } else {
                s.connections.join(" ")
            }
        );
        self.log(1, &started);
        while !self.shared.stopping() {
            if self.conn.is_none() && Instant::now() >= self.next_attempt {
                self.connect();
                self.next_attempt = Instant::now() + self.backoff;
            }
            let wait = if self.conn.is_none() {
                self.next_attempt.saturating_duration_since(Instant::now())
            } else {
                Duration::from_secs(3600)
            };
            let batch = self.take(wait);
            if let Some(name) = batch.ignored {
                self.log(3, &format!("ignoring {name} (not in connections)"));
            }
            if batch.evicted > self.evicted {
                self.log(
                    1,
                    &format!(
                        "{} IKE_SAs dropped from the bridge state to stay within its bounds \
                         ({} IKE_SAs, one frame), {} since start",
                        batch.evicted - self.evicted,
                        state::MAX_IKE_SAS,
                        batch.evicted
                    ),
                );
                self.evicted = batch.evicted;
            }
            for input in batch.control {
                self.handle(input);
            }
            if let Some((snapshot, folded)) = batch.snapshot {
                self.log(
                    1,
                    &format!(
                        "{folded} hook events not forwarded in time: sending a snapshot instead"
                    ),
                );
                self.send(&snapshot);
            }
            for (seq, event) in batch.events {
                self.log(2, &format!("hook {}", describe(&event)));
                self.send(&PluginMsg::Event { seq, event });
            }
        }
        self.log(1, "bridge stopped");
    }

    /// Waits up to `wait` for inputs and takes them all.
    fn take(&self, wait: Duration) -> Batch {
        let inbox = self.shared.inbox();
        let (mut inbox, _) = self
            .shared
            .wake
            .wait_timeout_while(inbox, wait, |i| {
                !self.shared.stopping()
                    && i.control.is_empty()
                    && i.events.is_empty()
                    && !i.resync
                    && i.ignored.is_none()
            })
            .unwrap_or_else(|e| e.into_inner());
        let mut batch = Batch {
            control: inbox.control.drain(..).collect(),
            events: inbox.events.drain(..).collect(),
            ignored: inbox.ignored.take(),
            evicted: inbox.state.evicted(),
            ..Batch::default()
        };
        if std::mem::take(&mut inbox.resync) {
            batch.snapshot = Some((
                inbox.state.snapshot_msg(),
                std::mem::take(&mut inbox.folded),
            ));
        }
        batch
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::ActionDone { id, status, path } => {
                self.pending = self.pending.saturating_sub(1);
                self.send(&PluginMsg::ActionResult { id, status, path });
            }
            Input::FromDaemon { conn, msg } if self.is_current(conn) => self.on_daemon(msg),
            Input::DaemonGone { conn, reason } if self.is_current(conn) => {
                self.conn = None;
                self.on_gone(reason);
            }
            Input::Event(_) | Input::FromDaemon { .. } | Input::DaemonGone { .. } | Input::Stop => {
            }
        }
    }

    fn on_gone(&mut self, reason: Gone) {
        match reason {
            Gone::Version(theirs) => {
                // Reconnecting cannot help until one side is upgraded:
                // say so once, then try ever more rarely.
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                self.next_attempt = Instant::now() + self.backoff;
                if self.refused_version != Some(theirs) {
                    let e = ProtoError::Version {
                        ours: proto::VERSION,
                        theirs,
                    };
                    self.log(
                        1,
                        &format!(
                            "mip4d disconnected: {e}; upgrade mip4d and the plugin together \
                             (retrying at most every {}s)",
                            MAX_BACKOFF.as_secs()
                        ),
                    );
                    self.refused_version = Some(theirs);
                }
            }
            Gone::Other(reason) => self.log(1, &format!("mip4d disconnected: {reason}")),
        }
    }

    fn is_current(&self, conn: u64) -> bool {
        self.conn.as_ref().is_some_and(|c| c.id == conn)
    }

    fn on_daemon(&mut self, msg: DaemonMsg) {
        match msg {
            DaemonMsg::Hello { version } => {
                self.log(2, &format!("mip4d speaks protocol {version}"));
                self.refused_version = None;
                self.backoff = self.settings().reconnect;
            }
            DaemonMsg::Request { id, action } => {
                let status = if !self.settings().acts_on(action.connection()) {
                    Some(ActionStatus::Refused)
                } else if self.pending >= MAX_PENDING_REQUESTS || !self.charon.request(id, &action)
                {
                    Some(ActionStatus::Unavailable)
                } else {
                    self.pending += 1;
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

    /// Sends to mip4d if connected; a failed or timed-out write drops the
    /// connection (the next one gets a snapshot, so nothing is lost).
    fn send(&mut self, msg: &PluginMsg) {
        if self.shared.stopping() {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let result = proto::encode(msg)
            .and_then(|frame| write_within(&mut conn.stream, &frame, WRITE_TIMEOUT));
        if let Err(e) = result {
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
                    charon: Some(self.settings().charon.clone()),
                };
                self.send(&hello);
                // Queued events are in the snapshot already.
                let snapshot = {
                    let mut inbox = self.shared.inbox();
                    inbox.events.clear();
                    inbox.resync = false;
                    inbox.folded = 0;
                    inbox.state.snapshot_msg()
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
        let path = &self.shared.settings.socket;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.file_type().is_socket() {
            return Err(format!("{} is not a socket", path.display()));
        }
        // The control socket must be root-only (or owned by charon's user):
        // anyone else able to connect could steer the VPN.
        let me = euid();
        if meta.mode() & 0o077 != 0 || (meta.uid() != 0 && meta.uid() != me) {
            return Err(format!(
                "{} has mode {:o} owner {}: refusing (must be 0600, root)",
                path.display(),
                meta.mode() & 0o777,
                meta.uid()
            ));
        }
        let stream = connect_now(path).map_err(|e| format!("{}: {e}", path.display()))?;
        // The file's owner says who made it, not who listens on it now:
        // the kernel's word on the listener is what counts.
        let peer =
            peer_uid(&stream).map_err(|e| format!("{}: SO_PEERCRED: {e}", path.display()))?;
        if peer != 0 && peer != me {
            return Err(format!(
                "{} is served by uid {peer}: refusing (must be root or uid {me})",
                path.display()
            ));
        }
        self.conn_count += 1;
        let id = self.conn_count;
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let handle = Handle {
            shared: self.shared.clone(),
        };
        let reader = thread::Builder::new()
            .name("mip4-reader".into())
            .spawn(move || read_daemon(id, reader, handle))
            .map_err(|e| e.to_string())?;
        Ok(Conn {
            id,
            stream,
            reader: Some(reader),
        })
    }

    fn log(&self, level: u8, msg: &str) {
        if level <= self.settings().loglevel {
            self.charon.log(level, msg);
        }
    }
}

/// Connects without waiting on a listener whose backlog is full (a mip4d
/// that stopped accepting): that is an error like any other.
fn connect_now(path: &Path) -> io::Result<UnixStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    socket.connect(&SockAddr::unix(path)?).map_err(|e| {
        if e.kind() == io::ErrorKind::WouldBlock {
            io::Error::new(e.kind(), "mip4d is not accepting connections")
        } else {
            e
        }
    })?;
    socket.set_nonblocking(false)?;
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// The uid of the process that listens on the other end (SO_PEERCRED).
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    Ok(getsockopt(stream, PeerCredentials)?.uid())
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Writes all of `frame` within `limit`, or fails (then the stream is out
/// of step and must be dropped).
fn write_within(stream: &mut UnixStream, frame: &[u8], limit: Duration) -> Result<(), ProtoError> {
    let deadline = Instant::now() + limit;
    let mut rest = frame;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(stalled(frame.len() - rest.len(), frame.len(), limit));
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(rest) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero).into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(stalled(frame.len() - rest.len(), frame.len(), limit));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn stalled(done: usize, len: usize, limit: Duration) -> ProtoError {
    ProtoError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("mip4d read {done} of {len} bytes in {limit:?}: stalled, not waiting"),
    ))
}

/// Reader thread of one mip4d connection: decodes frames into inputs. It
/// touches nothing of charon's; it ends with the connection.
fn read_daemon(conn: u64, mut stream: UnixStream, handle: Handle) {
    let reason = loop {
        match proto::read_msg::<DaemonMsg, _>(&mut stream) {
            Ok(Some(DaemonMsg::Hello { version })) if !proto::compatible(version) => {
                break Gone::Version(version);
            }
            Ok(Some(msg)) => {
                if !handle.send(Input::FromDaemon { conn, msg }) {
                    break Gone::Other(format!(
                        "mip4d sent more than {MAX_QUEUED_FROM_DAEMON} messages ahead of the bridge"
                    ));
                }
            }
            Ok(None) => break Gone::Other("closed".into()),
            Err(ProtoError::Io(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
                break Gone::Other("reset".into());
            }
            Err(e) => break Gone::Other(e.to_string()),
        }
    };
    // The bridge hangs up (Conn's drop) once it hears why: a shutdown here
    // could fail a write of the bridge first and hide the reason.
    handle.send(Input::DaemonGone { conn, reason });
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
        Event::IkeState { ike: i, state } => format!("ike_state_change {} {state:?}", ike(i)),
    }
}

#[cfg(test)]
mod tests;
