//! The control-socket protocol shared by mip4d, mip4-ha and mip4ctl.
//!
//! A root-only (0600) unix stream socket; one JSON request per line, one
//! JSON response per line, then the client may send another request or
//! close. Requests are `{"cmd":"status"}`, `{"cmd":"bindings"}`,
//! `{"cmd":"counters"}`, `{"cmd":"visitors"}` (mip4-fa), `{"cmd":"events"}`
//! (a subscription: event lines until the client closes); responses are
//! `{"ok":true,"data":...}` or
//! `{"ok":false,"error":"..."}`. Each daemon decides what `data` holds for
//! the commands it serves (and answers the others with an error), so the
//! protocol stays one small enum.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default control socket of mip4-ha.
pub const HA_SOCKET: &str = "/run/mip4/ha.sock";
/// Default control socket of mip4-fa.
pub const FA_SOCKET: &str = "/run/mip4/fa.sock";
/// Default control socket of mip4d.
pub const MN_SOCKET: &str = "/run/mip4/mip4d.sock";
/// Longest request line a server accepts: anything longer is refused, so
/// a local client cannot make the daemon buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// A request from mip4ctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Daemon status: addresses, modes, data-plane backend.
    Status,
    /// The HA's binding cache.
    Bindings,
    /// Counters: accepted, denied per code, dropped.
    Counters,
    /// Subscribe: the daemon answers with one JSON event object per line
    /// (no `ok` envelope) until the client closes. Served by mip4d.
    Events,
    /// The FA's visitor list (pending and accepted).
    Visitors,
}

/// A daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    pub fn ok(data: impl Serialize) -> Self {
        match serde_json::to_value(data) {
            Ok(v) => Self {
                ok: true,
                data: Some(v),
                error: None,
            },
            Err(e) => Self::error(format!("cannot encode response: {e}")),
        }
    }

    pub fn error(msg: impl Into<String>) -> Self {
        Self {
            ok: false,
            data: None,
            error: Some(msg.into()),
        }
    }
}

/// Parses one request line; a bad line gets an error response, not a
/// dropped connection, so the operator sees why.
pub fn parse_request(line: &str) -> Result<Request, Response> {
    serde_json::from_str(line.trim()).map_err(|e| Response::error(format!("bad request: {e}")))
}

/// Binds a unix socket that only root can use: the parent directory is
/// created 0700 if missing, a stale socket file is removed, and the socket
/// itself is chmod 0600 before the first accept.
pub fn bind_root_only(path: &Path) -> io::Result<tokio::net::UnixListener> {
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
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves one connection: reads request lines and answers each with
/// `handler`, until the client closes or sends an over-long line.
pub async fn serve_connection<F>(stream: tokio::net::UnixStream, mut handler: F) -> io::Result<()>
where
    F: FnMut(Request) -> Response,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
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
        let resp = if line.len() > MAX_LINE {
            Response::error("request too long")
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => parse_request(text).map_or_else(|e| e, &mut handler),
                Err(_) => Response::error("bad request: not UTF-8"),
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
        if line.len() > MAX_LINE {
            return Ok(());
        }
    }
}

/// Like [`serve_connection`], for a daemon whose state lives in its main
/// loop: `handler` may await (e.g. send the request to the loop and wait
/// for its answer), so no lock is held across the daemon's own awaits.
pub async fn serve_connection_async<F, Fut>(
    stream: tokio::net::UnixStream,
    mut handler: F,
) -> io::Result<()>
where
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
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
        let resp = if too_long {
            Response::error("request too long")
        } else {
            match std::str::from_utf8(&line).map(parse_request) {
                Ok(Ok(req)) => handler(req).await,
                Ok(Err(e)) => e,
                Err(_) => Response::error("bad request: not UTF-8"),
            }
        };
        let mut out = serde_json::to_vec(&resp).unwrap_or_default();
        out.push(b'\n');
        wr.write_all(&out).await?;
        if too_long {
            return Ok(());
        }
    }
}

/// Client side (blocking, for mip4ctl and tests): sends one request and
/// reads one response.
pub fn call(path: &Path, req: Request, timeout: Duration) -> io::Result<Response> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(&req).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    let mut resp = String::new();
    reader.read_line(&mut resp)?;
    serde_json::from_str(&resp).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad response from daemon: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_form_is_stable() {
        assert_eq!(
            serde_json::to_string(&Request::Bindings).unwrap(),
            r#"{"cmd":"bindings"}"#
        );
        assert_eq!(
            parse_request(r#"{"cmd":"counters"}"#).unwrap(),
            Request::Counters
        );
        let bad = parse_request(r#"{"cmd":"reboot"}"#).unwrap_err();
        assert!(!bad.ok);
        assert!(bad.error.unwrap().contains("bad request"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn socket_is_root_only_and_answers_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("t.sock");
        let listener = bind_root_only(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = listener.accept().await.unwrap();
                serve_connection(s, |r| match r {
                    Request::Status => Response::ok(serde_json::json!({"up": true})),
                    _ => Response::error("not served here"),
                })
                .await?;
            }
            io::Result::Ok(())
        });
        let p = path.clone();
        let (a, b) = tokio::task::spawn_blocking(move || {
            let a = call(&p, Request::Status, Duration::from_secs(5)).unwrap();
            let b = call(&p, Request::Bindings, Duration::from_secs(5)).unwrap();
            (a, b)
        })
        .await
        .unwrap();
        assert!(a.ok);
        assert_eq!(a.data.unwrap()["up"], true);
        assert!(!b.ok);
        assert_eq!(b.error.as_deref(), Some("not served here"));
        server.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn async_handler_answers_and_bad_lines_get_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let listener = bind_root_only(&path).unwrap();
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_connection_async(s, |r| async move {
                tokio::task::yield_now().await;
                Response::ok(serde_json::json!({ "asked": format!("{r:?}") }))
            })
            .await
        });
        let p = path.clone();
        let lines = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            s.write_all(b"{\"cmd\":\"counters\"}\n{\"cmd\":\"reboot\"}\n")
                .unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let r = BufReader::new(s);
            r.lines().map(Result::unwrap).collect::<Vec<_>>()
        })
        .await
        .unwrap();
        let a: Response = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(a.data.unwrap()["asked"], "Counters");
        let b: Response = serde_json::from_str(&lines[1]).unwrap();
        assert!(b.error.unwrap().starts_with("bad request"));
        server.await.unwrap().unwrap();
    }
}
