//! A TCP stream across the lab that must survive a move: a client in one
//! host writes a numbered byte pattern at a steady rate, a server in
//! another host echoes it back, and the client checks every echoed byte.
//!
//! Both ends run as threads of the lab process, each moved into its host's
//! network namespace ([`super::netns::enter`]): no helper program has to
//! exist on the machine, and the counters are read without parsing output.
//! The client never reconnects: a reset, an EOF or a wrong byte ends the
//! stream and is reported, so "the stream survived" means the same TCP
//! connection carried data before and after the move.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{netns, Error, Result};

/// Bytes written per tick, and the tick: 100 kB/s, small enough for any
/// socket buffer to absorb a stall of several seconds.
const CHUNK: usize = 1000;
const TICK: Duration = Duration::from_millis(10);
/// How often blocked reads, writes and accepts look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// A write that makes no progress this long fails the stream: a path
/// that stays black-holed must fail the scenario with a message, never
/// hang it (a blocked write once held a run for 982 s).
const WRITE_STALL: Duration = Duration::from_secs(30);

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The byte at stream offset `i`: a period (251) prime to every chunk and
/// segment size, so a lost, doubled or reordered piece shows.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// What the stream did so far.
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    /// The client's end, `addr:port` (the connection's identity).
    pub client: Option<SocketAddr>,
    /// The peer the server accepted (must be the same client).
    pub server_peer: Option<SocketAddr>,
    /// Connections the server accepted: 1 for an intact stream.
    pub accepted: u32,
    /// (unix time, total bytes written) after each write.
    pub sent: Vec<(f64, u64)>,
    /// (unix time, total bytes echoed back and checked) after each read.
    pub received: Vec<(f64, u64)>,
    /// Why the stream ended early: reset, EOF, wrong byte, write error.
    pub error: Option<String>,
}

impl StreamState {
    pub fn bytes_sent(&self) -> u64 {
        self.sent.last().map_or(0, |s| s.1)
    }
    pub fn bytes_echoed(&self) -> u64 {
        self.received.last().map_or(0, |s| s.1)
    }
    /// Bytes written by unix time `t`.
    pub fn sent_by(&self, t: f64) -> u64 {
        self.sent
            .iter()
            .take_while(|(ts, _)| *ts <= t)
            .last()
            .map_or(0, |s| s.1)
    }
    /// When the echo first went past byte `n` (all bytes up to `n` back).
    pub fn echoed_past(&self, n: u64) -> Option<f64> {
        self.received.iter().find(|(_, b)| *b > n).map(|s| s.0)
    }
    /// The longest time without an echoed byte between the first and the
    /// last read, in ms: the stall a user of the stream saw.
    pub fn longest_gap_ms(&self) -> f64 {
        self.received
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * 1e3)
            .fold(0.0, f64::max)
    }
    /// One line for evaltest patterns and logs.
    pub fn describe(&self) -> String {
        format!(
            "connections={} client={} peer={} sent={} echoed={} stall_ms={:.1} error={}",
            self.accepted,
            self.client.map_or("none".to_string(), |c| c.to_string()),
            self.server_peer
                .map_or("none".to_string(), |c| c.to_string()),
            self.bytes_sent(),
            self.bytes_echoed(),
            self.longest_gap_ms(),
            self.error.as_deref().unwrap_or("none")
        )
    }
}

/// A running stream; stopped (threads joined) on Drop.
pub struct TcpProbe {
    state: Arc<Mutex<StreamState>>,
    stop: Arc<AtomicBool>,
    /// The client writes nothing while set (an idle application).
    paused: Arc<AtomicBool>,
    client: Option<TcpStream>,
    threads: Vec<JoinHandle<()>>,
}

fn lock(s: &Mutex<StreamState>) -> std::sync::MutexGuard<'_, StreamState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl TcpProbe {
    /// Listens on `server` inside namespace `server_ns`, connects to it
    /// from namespace `client_ns` and starts the pattern. Returns once the
    /// connection is up.
    pub fn start(server_ns: &str, server: SocketAddr, client_ns: &str) -> Result<TcpProbe> {
        let state = Arc::new(Mutex::new(StreamState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();

        // Server: accept, then echo the first connection; count the rest.
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        {
            let (ns, state, stop) = (server_ns.to_string(), state.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let listener = match netns::enter(&ns).and_then(|()| {
                    let l = TcpListener::bind(server).map_err(|source| Error::Io {
                        path: format!("tcp listen {server} in {ns}"),
                        source,
                    })?;
                    l.set_nonblocking(true).map_err(|source| Error::Io {
                        path: format!("tcp listen {server}"),
                        source,
                    })?;
                    Ok(l)
                }) {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        l
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                serve(&listener, &state, stop);
            }));
        }
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| Error::Other("tcp server did not start".into()))??;

        // Client: connect inside its namespace, hand the socket back.
        let (conn_tx, conn_rx) = mpsc::channel::<Result<TcpStream>>();
        {
            let ns = client_ns.to_string();
            std::thread::spawn(move || {
                let r = netns::enter(&ns).and_then(|()| {
                    TcpStream::connect_timeout(&server, Duration::from_secs(5)).map_err(|source| {
                        Error::Io {
                            path: format!("tcp connect {server} from {ns}"),
                            source,
                        }
                    })
                });
                let _ = conn_tx.send(r);
            })
            .join()
            .map_err(|_| Error::Other("tcp client thread panicked".into()))?;
        }
        let conn = conn_rx
            .recv()
            .map_err(|_| Error::Other("tcp client did not connect".into()))??;
        let io = |source| Error::Io {
            path: format!("tcp stream to {server}"),
            source,
        };
        conn.set_nodelay(true).map_err(io)?;
        conn.set_read_timeout(Some(POLL)).map_err(io)?;
        conn.set_write_timeout(Some(POLL)).map_err(io)?;
        if let Ok(local) = conn.local_addr() {
            lock(&state).client = Some(local);
        }
        let writer = conn.try_clone().map_err(io)?;
        let reader = conn.try_clone().map_err(io)?;
        let paused = Arc::new(AtomicBool::new(false));
        {
            let (state, stop, paused) = (state.clone(), stop.clone(), paused.clone());
            threads.push(std::thread::spawn(move || {
                write_pattern(writer, &state, &stop, &paused)
            }));
        }
        {
            let (state, stop) = (state.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                check_echo(reader, &state, &stop)
            }));
        }
        Ok(TcpProbe {
            state,
            stop,
            paused,
            client: Some(conn),
            threads,
        })
    }

    /// A copy of the state now.
    pub fn state(&self) -> StreamState {
        lock(&self.state).clone()
    }

    /// Stops (`true`) or resumes writing, the connection left open: an
    /// idle application, so that nothing but keepalives crosses the path.
    pub fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
    }

    /// Stops writing and closes the connection (FIN, not a reset).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(c) = self.client.take() {
            let _ = c.shutdown(Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for TcpProbe {
    fn drop(&mut self) {
        self.stop();
    }
}

fn fail(state: &Mutex<StreamState>, stop: &AtomicBool, why: String) {
    // Errors caused by our own shutdown are not the stream's.
    if stop.load(Ordering::SeqCst) {
        return;
    }
    let mut s = lock(state);
    if s.error.is_none() {
        s.error = Some(why);
    }
}

fn serve(listener: &TcpListener, state: &Arc<Mutex<StreamState>>, stop: Arc<AtomicBool>) {
    let mut echo: Option<JoinHandle<()>> = None;
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, peer)) => {
                let first = {
                    let mut s = lock(state);
                    s.accepted += 1;
                    s.server_peer.get_or_insert(peer);
                    s.accepted == 1
                };
                if first {
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(POLL));
                    let _ = conn.set_write_timeout(Some(POLL));
                    let (state, stop) = (state.clone(), stop.clone());
                    echo = Some(std::thread::spawn(move || echo_loop(conn, &state, &stop)));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(_) => std::thread::sleep(POLL),
        }
    }
    if let Some(t) = echo {
        let _ = t.join();
    }
}

/// Writes all of `buf` on a socket with a write timeout of [`POLL`]:
/// returns early (Ok) once `stop` is set, fails when no byte went out for
/// `limit`.
fn write_within(
    conn: &mut TcpStream,
    buf: &[u8],
    stop: &AtomicBool,
    limit: Duration,
) -> std::result::Result<(), String> {
    let mut done = 0;
    let mut progress = std::time::Instant::now();
    while done < buf.len() {
        match conn.write(&buf[done..]) {
            Ok(0) => return Err("write failed: the connection takes no more".into()),
            Ok(n) => {
                done += n;
                progress = std::time::Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                if progress.elapsed() >= limit {
                    return Err(format!(
                        "write stalled: no byte accepted for {} s (the path is black-holed \
                         or the peer stopped reading)",
                        limit.as_secs()
                    ));
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write failed: {e}")),
        }
    }
    Ok(())
}

fn echo_loop(mut conn: TcpStream, state: &Mutex<StreamState>, stop: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(why) = write_within(&mut conn, &buf[..n], stop, WRITE_STALL) {
                    fail(state, stop, format!("echo server: {why}"));
                    return;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
}

fn write_pattern(
    mut conn: TcpStream,
    state: &Mutex<StreamState>,
    stop: &AtomicBool,
    paused: &AtomicBool,
) {
    let mut offset = 0u64;
    let mut chunk = [0u8; CHUNK];
    while !stop.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            continue;
        }
        for (i, b) in chunk.iter_mut().enumerate() {
            *b = pattern(offset + i as u64);
        }
        // When the path stalls the socket buffer absorbs the ticks, as it
        // would for an application; a stall past WRITE_STALL ends it.
        if let Err(why) = write_within(&mut conn, &chunk, stop, WRITE_STALL) {
            fail(state, stop, why);
            return;
        }
        offset += CHUNK as u64;
        lock(state).sent.push((now(), offset));
        std::thread::sleep(TICK);
    }
}

fn check_echo(mut conn: TcpStream, state: &Mutex<StreamState>, stop: &AtomicBool) {
    let mut offset = 0u64;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => {
                fail(state, stop, "connection closed by the server (EOF)".into());
                return;
            }
            Ok(n) => {
                if let Some(i) = (0..n).find(|&i| buf[i] != pattern(offset + i as u64)) {
                    fail(
                        state,
                        stop,
                        format!("wrong byte at offset {}", offset + i as u64),
                    );
                    return;
                }
                offset += n as u64;
                lock(state).received.push((now(), offset));
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
            }
            Err(e) => {
                let why = if e.kind() == ErrorKind::ConnectionReset {
                    format!("connection reset: {e}")
                } else {
                    format!("read failed: {e}")
                };
                fail(state, stop, why);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_figures_follow_the_logs() {
        let s = StreamState {
            sent: vec![(1.0, 1000), (1.01, 2000), (1.02, 3000)],
            received: vec![(1.005, 1000), (1.3, 2500), (1.31, 3000)],
            ..Default::default()
        };
        assert_eq!(s.sent_by(1.015), 2000);
        assert_eq!(s.echoed_past(2000), Some(1.3));
        assert!((s.longest_gap_ms() - 295.0).abs() < 1e-6);
        assert!(s.describe().contains("error=none"));
    }

    /// A peer that never reads: the writer fails naming the stall
    /// instead of blocking, and a stop ends it at once.
    #[test]
    fn a_write_to_a_peer_that_never_reads_fails_as_a_stall() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_peer, _) = l.accept().unwrap();
        c.set_write_timeout(Some(POLL)).unwrap();
        let stop = AtomicBool::new(false);
        let big = vec![0u8; 1 << 16];
        let limit = Duration::from_millis(300);
        let err = loop {
            if let Err(e) = write_within(&mut c, &big, &stop, limit) {
                break e;
            }
        };
        assert!(err.starts_with("write stalled"), "{err}");
        stop.store(true, Ordering::SeqCst);
        assert_eq!(write_within(&mut c, &big, &stop, WRITE_STALL), Ok(()));
    }

    #[test]
    fn pattern_period_is_prime_to_the_chunk() {
        assert_ne!(pattern(0), pattern(CHUNK as u64));
    }
}
