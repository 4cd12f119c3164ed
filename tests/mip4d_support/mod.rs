//! Shared by the mip4d namespace tests: asking a daemon through mip4ctl
//! and collecting mip4d's event stream.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mip4::lab::wait;
use serde_json::Value;

/// `mip4ctl --socket DIR/SOCKET ARGS --json`; None when the daemon did not
/// answer or answered with an error.
pub fn ctl(dir: &Path, socket: &str, args: &[&str]) -> Option<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mip4ctl"))
        .arg("--socket")
        .arg(dir.join(socket))
        .args(args)
        .arg("--json")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Subscribes to mip4d's events on its control socket; the lines land in
/// the returned list.
pub fn subscribe(control_socket: &Path) -> Arc<Mutex<Vec<Value>>> {
    let (mut s, _) = wait::until(Duration::from_secs(10), "mip4d control socket", || {
        std::os::unix::net::UnixStream::connect(control_socket).ok()
    })
    .unwrap();
    s.write_all(b"{\"cmd\":\"events\"}\n").unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { return };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    events
}

/// The trust verdict mip4d reported for `address`, if any.
pub fn verdict(events: &Arc<Mutex<Vec<Value>>>, address: &str) -> Option<Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "trust_verdict" && e["address"] == address)
        .cloned()
}
