//! The control-socket server of all three daemons ([`crate::ctl`] is the
//! protocol, `mip4ctl` the client). Request lines are answered by the
//! daemon's main loop, which owns its state, through a channel, so no lock
//! is ever held across the daemon's own awaits; an `events` request turns
//! the connection into a subscription where the daemon has events
//! (mip4d), and goes to the loop like any other request where it has not.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::debug;

use super::accept::{accept, Backoff};
use crate::ctl::{self, Request, Response, MAX_LINE};

/// A request for the main loop and where its answer goes.
pub type Query = (Request, oneshot::Sender<Response>);

/// Binds a unix socket that only root can use: the parent directory is
/// created 0700 if missing, a stale socket file is removed, and the socket
/// itself is chmod 0600 before the first accept.
pub fn bind_root_only(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The control socket of daemon `daemon` (its name, for answers while it
/// shuts down): requests go to `queries`; `events`, where the daemon has
/// them, feeds `events` subscriptions.
#[derive(Debug, Clone)]
pub struct Server {
    pub daemon: &'static str,
    pub queries: mpsc::Sender<Query>,
    pub events: Option<broadcast::Sender<String>>,
}

impl Server {
    /// Binds the root-only socket and serves it until the task is aborted.
    pub fn serve(self, path: &Path) -> io::Result<JoinHandle<()>> {
        let listener = bind_root_only(path)?;
        Ok(tokio::spawn(async move {
            let mut backoff = Backoff::default();
            loop {
                let stream = accept(&listener, "control", &mut backoff).await;
                let server = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = server.connection(stream).await {
                        debug!(error = %e, "control connection ended");
                    }
                });
            }
        }))
    }

    /// Answers request lines until the client closes or sends an
    /// over-long line (refused, so a local client cannot make the daemon
    /// buffer without bound).
    async fn connection(self, stream: UnixStream) -> io::Result<()> {
        let (rd, mut wr) = stream.into_split();
        let mut rd = tokio::io::BufReader::new(rd);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut rd)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)
                .await?;
            if n == 0 {
                return Ok(());
            }
            let too_long = line.len() > MAX_LINE;
            let req = if too_long {
                Err(Response::error("request too long"))
            } else {
                match std::str::from_utf8(&line) {
                    Ok(text) => ctl::parse_request(text),
                    Err(_) => Err(Response::error("bad request: not UTF-8")),
                }
            };
            let resp = match (req, &self.events) {
                (Ok(Request::Events), Some(events)) => {
                    return stream_events(events.subscribe(), wr).await
                }
                (Ok(r), _) => self.ask(r).await,
                (Err(resp), _) => resp,
            };
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            wr.write_all(&out).await?;
            if too_long {
                return Ok(());
            }
        }
    }

    /// The main loop's answer to `req`.
    async fn ask(&self, req: Request) -> Response {
        let gone = || Response::error(format!("{} is shutting down", self.daemon));
        let (tx, rx) = oneshot::channel();
        if self.queries.send((req, tx)).await.is_err() {
            return gone();
        }
        rx.await.unwrap_or_else(|_| gone())
    }
}

async fn stream_events(
    mut rx: broadcast::Receiver<String>,
    mut wr: tokio::net::unix::OwnedWriteHalf,
) -> io::Result<()> {
    let lagged = |n: u64| format!(r#"{{"event":"lagged","missed":{n}}}"#);
    let mut out = Vec::new();
    loop {
        let line = match rx.recv().await {
            Ok(l) => l,
            Err(broadcast::error::RecvError::Lagged(n)) => lagged(n),
            Err(broadcast::error::RecvError::Closed) => return Ok(()),
        };
        // The lines queued meanwhile go in the same write: a move
        // publishes several at once, and each write is a system call
        // while the move waits for the CPU.
        out.clear();
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        loop {
            let line = match rx.try_recv() {
                Ok(l) => l,
                Err(broadcast::error::TryRecvError::Lagged(n)) => lagged(n),
                Err(_) => break,
            };
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        wr.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;

    use super::*;

    /// A main loop that answers `status` and refuses everything else.
    fn serve_test(path: &Path, events: Option<broadcast::Sender<String>>) -> JoinHandle<()> {
        let (queries, mut rx) = mpsc::channel::<Query>(4);
        tokio::spawn(async move {
            while let Some((req, reply)) = rx.recv().await {
                let _ = reply.send(match req {
                    Request::Status => Response::ok(serde_json::json!({"up": true})),
                    r => Response::error(format!("not served here: {r:?}")),
                });
            }
        });
        let server = Server {
            daemon: "testd",
            queries,
            events,
        };
        server.serve(path).unwrap()
    }

    /// Sends `lines` and half-closes; returns every line the server wrote.
    fn exchange(path: &Path, lines: &[u8]) -> Vec<String> {
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.write_all(lines).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        BufReader::new(s).lines().map(Result::unwrap).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn socket_is_root_only_and_the_loop_answers_each_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.sock");
        let task = serve_test(&path, None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let p = path.clone();
        let (a, b) = tokio::task::spawn_blocking(move || {
            let a = ctl::call(&p, Request::Status, Duration::from_secs(5)).unwrap();
            let b = ctl::call(&p, Request::BINDINGS, Duration::from_secs(5)).unwrap();
            (a, b)
        })
        .await
        .unwrap();
        assert!(a.ok);
        assert_eq!(a.data.unwrap()["up"], true);
        assert_eq!(
            b.error.as_deref(),
            Some("not served here: Bindings { after: None, limit: None }")
        );
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_and_over_long_lines_get_errors_and_events_go_to_the_loop_without_a_bus() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let task = serve_test(&path, None);
        let p = path.clone();
        let lines = tokio::task::spawn_blocking(move || {
            let mut long = vec![b'x'; MAX_LINE + 10];
            long.push(b'\n');
            let mut input = b"{\"cmd\":\"events\"}\n{\"cmd\":\"reboot\"}\n".to_vec();
            input.extend_from_slice(&long);
            input.extend_from_slice(b"{\"cmd\":\"status\"}\n");
            exchange(&p, &input)
        })
        .await
        .unwrap();
        let r: Vec<Response> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            r.len(),
            3,
            "the over-long line ends the connection: {lines:?}"
        );
        assert_eq!(r[0].error.as_deref(), Some("not served here: Events"));
        assert!(r[1].error.as_deref().unwrap().starts_with("bad request"));
        assert_eq!(r[2].error.as_deref(), Some("request too long"));
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_become_a_subscription_where_the_daemon_has_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let (tx, _) = broadcast::channel(16);
        let task = serve_test(&path, Some(tx.clone()));
        let p = path.clone();
        let reader = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"cmd\":\"events\"}\n").unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            line
        });
        // Publish until the subscriber has joined and read one line.
        while !reader.is_finished() {
            let _ = tx.send(r#"{"event":"x"}"#.to_string());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(reader.await.unwrap(), "{\"event\":\"x\"}\n");
        task.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_loop_is_reported_by_the_daemons_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let (queries, rx) = mpsc::channel::<Query>(1);
        drop(rx);
        let server = Server {
            daemon: "testd",
            queries,
            events: None,
        };
        let task = server.serve(&path).unwrap();
        let p = path.clone();
        let lines = tokio::task::spawn_blocking(move || exchange(&p, b"{\"cmd\":\"status\"}\n"))
            .await
            .unwrap();
        let r: Response = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(r.error.as_deref(), Some("testd is shutting down"));
        task.abort();
    }
}
