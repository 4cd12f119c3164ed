//! The project's daemons seen from the lab, through their control sockets
//! (the same requests `mip4ctl` sends, see [`crate::ctl`]): mip4d's event
//! stream and mip4-ha's binding cache.
//!
//! Unix sockets with a path are reachable from every network namespace,
//! so the lab reads them from its own process without entering a host.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::{wait, Error, Result};
use crate::ctl::{self, Request};

/// A subscription to mip4d's events (`{"cmd":"events"}`): every line the
/// daemon publishes from now on, kept in order. mip4d keeps no backlog, so
/// subscribe before the action whose events matter.
pub struct Events {
    lines: Arc<Mutex<Vec<Value>>>,
    stream: UnixStream,
    reader: Option<JoinHandle<()>>,
}

impl Events {
    /// Connects to `socket` (waiting up to `timeout` for the daemon to
    /// create it) and subscribes.
    pub fn subscribe(socket: &Path, timeout: Duration) -> Result<Events> {
        let what = format!("control socket {}", socket.display());
        let (mut stream, _) = wait::until(timeout, &what, || UnixStream::connect(socket).ok())?;
        let io = |source| Error::Io {
            path: socket.display().to_string(),
            source,
        };
        let mut req =
            serde_json::to_vec(&Request::Events).map_err(|e| Error::Other(e.to_string()))?;
        req.push(b'\n');
        stream.write_all(&req).map_err(io)?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let read = stream.try_clone().map_err(io)?;
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(read).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
            }
        });
        Ok(Events {
            lines,
            stream,
            reader: Some(reader),
        })
    }

    /// Every event received so far.
    pub fn all(&self) -> Vec<Value> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The first event called `name` whose fields match `conds` and whose
    /// wall clock stamp is at or after `after` (unix seconds); with
    /// `last_before`, the last such event stamped at or before it.
    pub fn find(
        &self,
        name: &str,
        conds: &[(String, String)],
        after: f64,
        last_before: Option<f64>,
    ) -> Option<Value> {
        let mut hits = self.all().into_iter().filter(|e| {
            e["event"] == name
                && wall(e).is_some_and(|t| t >= after && last_before.is_none_or(|b| t <= b))
                && matches(e, conds)
        });
        match last_before {
            None => hits.next(),
            Some(_) => hits.next_back(),
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// An event's `wall_ns` in unix seconds.
pub fn wall(e: &Value) -> Option<f64> {
    e["wall_ns"].as_u64().map(|ns| ns as f64 / 1e9)
}

/// `field=value` conditions: a dotted field reaches into objects
/// (`to.state=registered`); strings compare as text, others as JSON.
pub fn matches(e: &Value, conds: &[(String, String)]) -> bool {
    conds.iter().all(|(k, want)| {
        let v = k.split('.').fold(e, |v, part| &v[part]);
        match v {
            Value::String(s) => s == want,
            Value::Null => false,
            other => *other == serde_json::from_str::<Value>(want).unwrap_or(Value::Null),
        }
    })
}

/// The HA's binding for `home_address` (`mip4ctl bindings --json`), or
/// None if there is none; an error if the HA does not answer.
pub fn binding(socket: &Path, home_address: &str) -> Result<Option<Value>> {
    let resp = ctl::call(socket, Request::BINDINGS, Duration::from_secs(2)).map_err(|source| {
        Error::Io {
            path: socket.display().to_string(),
            source,
        }
    })?;
    if !resp.ok {
        return Err(Error::Other(format!(
            "{}: {}",
            socket.display(),
            resp.error.unwrap_or_default()
        )));
    }
    Ok(resp
        .data
        .and_then(|d| d.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .find(|b| b["home_address"] == home_address))
}

/// A daemon's status (`mip4ctl status --json`).
pub fn status(socket: &Path) -> Result<Value> {
    let resp =
        ctl::call(socket, Request::Status, Duration::from_secs(2)).map_err(|source| Error::Io {
            path: socket.display().to_string(),
            source,
        })?;
    match (resp.ok, resp.data) {
        (true, Some(v)) => Ok(v),
        _ => Err(Error::Other(format!(
            "{}: {}",
            socket.display(),
            resp.error.unwrap_or_default()
        ))),
    }
}

/// One line describing a binding, for evaltest patterns.
pub fn describe_binding(b: Option<&Value>) -> String {
    match b {
        None => "no binding".to_string(),
        Some(b) => format!(
            "home_address={} care_of={} lifetime={} remaining={} reverse_tunnel={} tunnel={}",
            text(&b["home_address"]),
            text(&b["care_of_address"]),
            text(&b["lifetime"]),
            text(&b["remaining"]),
            text(&b["reverse_tunnel"]),
            text(&b["tunnel"]),
        ),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The project's programs a scenario starts, by the variable that names
/// them in scenario files (`${MIP4D}`, `${MIP4_HA}`, `${MIP4_FA}`,
/// `${MIP4CTL}`).
pub const PROGRAMS: [(&str, &str); 4] = [
    ("MIP4D", "mip4d"),
    ("MIP4_HA", "mip4-ha"),
    ("MIP4_FA", "mip4-fa"),
    ("MIP4CTL", "mip4ctl"),
];

/// The programs found in `dir` (e.g. the directory of `mip4-lab` itself,
/// where cargo puts every binary of the package).
pub fn programs_in(dir: &Path) -> Vec<(String, PathBuf)> {
    PROGRAMS
        .iter()
        .map(|(var, bin)| (var.to_string(), dir.join(bin)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_match_strings_numbers_and_nested_fields() {
        let e = serde_json::json!({
            "event": "state", "care_of": "10.1.20.100", "lifetime": 120,
            "to": {"state": "registered"}, "wall_ns": 2_000_000_000u64
        });
        let c = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert!(matches(
            &e,
            &[c("care_of", "10.1.20.100"), c("lifetime", "120")]
        ));
        assert!(matches(&e, &[c("to.state", "registered")]));
        assert!(!matches(&e, &[c("care_of", "10.1.10.100")]));
        assert!(!matches(&e, &[c("missing", "x")]));
        assert_eq!(wall(&e), Some(2.0));
    }
}
