//! The control-socket protocol shared by mip4d, mip4-ha, mip4-fa and
//! mip4ctl (the daemons' server is [`crate::daemons::control`]).
//!
//! A root-only (0600) unix stream socket; one JSON request per line, one
//! JSON response per line, then the client may send another request or
//! close. Requests are `{"cmd":"status"}`, `{"cmd":"bindings"}`,
//! `{"cmd":"counters"}`, `{"cmd":"visitors"}` (mip4-fa), `{"cmd":"events"}`
//! (a subscription: event lines until the client closes), and for mip4d
//! `{"cmd":"stats"}`, `{"cmd":"probe"}`, `{"cmd":"force","mode":"c"}`,
//! `{"cmd":"release"}`; responses are
//! `{"ok":true,"data":...}` or
//! `{"ok":false,"error":"..."}`. Each daemon decides what `data` holds for
//! the commands it serves (and answers the others with an error), so the
//! protocol stays one small enum.

use std::io::{self, BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::mn::Mode;

/// Default control socket of mip4-ha.
pub const HA_SOCKET: &str = "/run/mip4/ha.sock";
/// Default control socket of mip4-fa.
pub const FA_SOCKET: &str = "/run/mip4/fa.sock";
/// Default control socket of mip4d.
pub const MN_SOCKET: &str = "/run/mip4/mip4d.sock";
/// Longest request line a server accepts: anything longer is refused, so
/// a local client cannot make the daemon buffer without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// Bindings per page when the request names no limit.
pub const BINDINGS_PAGE: usize = 1000;
/// The largest page a daemon answers: building and sending it must not
/// hold the daemon's loop for long.
pub const BINDINGS_PAGE_MAX: usize = 10_000;

/// A request from mip4ctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Daemon status: addresses, modes, data-plane backend.
    Status,
    /// The HA's binding cache, a page at a time (a million bindings are
    /// no one answer): the bindings whose home address is above `after`,
    /// in address order, at most `limit` ([`BINDINGS_PAGE`] when not
    /// given, never more than [`BINDINGS_PAGE_MAX`]). A page shorter than
    /// asked for is the last. `{"cmd":"bindings"}` is the first page.
    Bindings {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Ipv4Addr>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Counters: accepted, denied per code, dropped.
    Counters,
    /// Subscribe: the daemon answers with one JSON event object per line
    /// (no `ok` envelope) until the client closes. Served by mip4d.
    Events,
    /// The FA's visitor list (pending and accepted).
    Visitors,
    /// Registration statistics: denials by code, drops by reason,
    /// handover times (mip4d).
    Stats,
    /// Run the trusted-network probe now (mip4d, RFC 5266 §3.4).
    Probe,
    /// Pin mip4d's access mode (see `mip4::mn::node` `operator`).
    Force { mode: Mode },
    /// Release the pin.
    Release,
}

impl Request {
    /// The first page of the binding cache.
    pub const BINDINGS: Request = Request::Bindings {
        after: None,
        limit: None,
    };

    /// The page size a `bindings` request asks for, within the bounds.
    pub fn page_len(limit: Option<u32>) -> usize {
        limit
            .map_or(BINDINGS_PAGE, |l| l as usize)
            .clamp(1, BINDINGS_PAGE_MAX)
    }

    /// The command's name, as on the wire and on mip4ctl's command line.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Bindings { .. } => "bindings",
            Request::Counters => "counters",
            Request::Events => "events",
            Request::Visitors => "visitors",
            Request::Stats => "stats",
            Request::Probe => "probe",
            Request::Force { .. } => "force",
            Request::Release => "release",
        }
    }
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
            serde_json::to_string(&Request::BINDINGS).unwrap(),
            r#"{"cmd":"bindings"}"#
        );
        assert_eq!(
            parse_request(r#"{"cmd":"bindings"}"#).unwrap(),
            Request::BINDINGS
        );
        let page = Request::Bindings {
            after: Some(Ipv4Addr::new(10, 0, 0, 9)),
            limit: Some(500),
        };
        let text = serde_json::to_string(&page).unwrap();
        assert_eq!(text, r#"{"cmd":"bindings","after":"10.0.0.9","limit":500}"#);
        assert_eq!(parse_request(&text).unwrap(), page);
        assert_eq!(Request::page_len(None), BINDINGS_PAGE);
        assert_eq!(Request::page_len(Some(0)), 1);
        assert_eq!(Request::page_len(Some(1 << 30)), BINDINGS_PAGE_MAX);
        assert_eq!(
            parse_request(r#"{"cmd":"counters"}"#).unwrap(),
            Request::Counters
        );
        assert_eq!(
            serde_json::to_string(&Request::Force { mode: Mode::Mc }).unwrap(),
            r#"{"cmd":"force","mode":"mc"}"#
        );
        assert_eq!(
            parse_request(r#"{"cmd":"release"}"#).unwrap(),
            Request::Release
        );
        let bad = parse_request(r#"{"cmd":"reboot"}"#).unwrap_err();
        assert!(!bad.ok);
        assert!(bad.error.unwrap().contains("bad request"));
    }
}
