//! Shared by the plugin tests: the built plugin laid over charon's plugin
//! directory (inside charon's private mount namespace only), and a fake
//! mip4d that records what the plugin sends.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mip4::bridge::proto::{self, DaemonMsg, PluginMsg};
use mip4::lab::charon::CharonConfig;
use mip4::lab::netns::{unique_prefix, veth, Netns};

#[path = "../common/cdylib.rs"]
mod cdylib;

/// The libmip4.so cargo built for this test run, checked to carry the
/// charon shim.
pub fn built_plugin() -> PathBuf {
    let lib = cdylib::built_cdylib();
    let out = std::process::Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib)
        .output()
        .expect("nm (binutils)");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" T mip4_plugin_create"),
        "{} has no mip4_plugin_create: it was built without the strongSwan \
         source (run scripts/fetch-strongswan-source.sh, then cargo build)",
        lib.display()
    );
    lib
}

/// A directory holding the plugin as `libstrongswan-mip4.so`, for
/// [`CharonConfig::plugin_overlay`].
pub fn overlay_dir(work: &Path) -> PathBuf {
    let dir = work.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    // Copy then rename: a running charon has the previous copy mapped, and
    // rewriting a mapped library in place crashes it.
    let tmp = dir.join(".libstrongswan-mip4.so.new");
    std::fs::copy(built_plugin(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("libstrongswan-mip4.so")).unwrap();
    dir
}

/// A directory holding a copy of the plugin whose embedded strongSwan
/// headers version (build.rs, src/ffi) says `version` instead: what a
/// plugin built for another strongSwan release looks like to charon.
/// Returns the directory and the version the plugin was built for.
pub fn overlay_dir_built_for(work: &Path, version: &str) -> (PathBuf, String) {
    const MARK: &[u8] = b"mip4-strongswan-headers=";
    let mut lib = std::fs::read(built_plugin()).unwrap();
    let at = lib
        .windows(MARK.len())
        .position(|w| w == MARK)
        .expect("the plugin embeds its strongSwan headers version")
        + MARK.len();
    let built: String = lib[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|&b| char::from(b))
        .collect();
    assert_eq!(built.len(), version.len(), "same length, same layout");
    lib[at..at + version.len()].copy_from_slice(version.as_bytes());
    let dir = work.join("plugins-other");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("libstrongswan-mip4.so"), lib).unwrap();
    (dir, built)
}

/// A charon config loading the plugin, talking to `socket`.
pub fn charon_config(work: &Path, socket: &Path, connections: &str) -> CharonConfig {
    CharonConfig {
        extra_plugins: vec!["mip4".into()],
        extra_settings: format!(
            "    plugins {{\n        mip4 {{\n            socket = {}\n            \
             connections = {connections}\n            loglevel = 2\n        }}\n    }}\n",
            socket.display()
        ),
        plugin_overlay: Some(overlay_dir(work)),
        ..CharonConfig::default()
    }
}

/// A fake mip4d: listens (0600) on a socket, records every message of the
/// current connection, and can send requests.
pub struct FakeMip4d {
    pub path: PathBuf,
    msgs: Arc<Mutex<Vec<PluginMsg>>>,
    conn: Arc<Mutex<Option<UnixStream>>>,
    connections: Arc<Mutex<u32>>,
}

impl FakeMip4d {
    pub fn listen(path: &Path) -> FakeMip4d {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fake = FakeMip4d {
            path: path.to_path_buf(),
            msgs: Arc::default(),
            conn: Arc::default(),
            connections: Arc::default(),
        };
        let (msgs, conn, count) = (
            fake.msgs.clone(),
            fake.conn.clone(),
            fake.connections.clone(),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                *count.lock().unwrap() += 1;
                let _ = proto::write_msg(
                    &mut stream,
                    &DaemonMsg::Hello {
                        version: proto::VERSION,
                    },
                );
                *conn.lock().unwrap() = stream.try_clone().ok();
                let msgs = msgs.clone();
                thread::spawn(move || {
                    while let Ok(Some(m)) = proto::read_msg::<PluginMsg, _>(&mut stream) {
                        msgs.lock().unwrap().push(m);
                    }
                });
            }
        });
        fake
    }

    /// Everything received so far.
    pub fn msgs(&self) -> Vec<PluginMsg> {
        self.msgs.lock().unwrap().clone()
    }

    pub fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }

    /// Waits until a received message at index >= `from` matches; returns
    /// it and its index.
    pub fn wait<T>(
        &self,
        from: usize,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&PluginMsg) -> Option<T>,
    ) -> (T, usize) {
        let end = Instant::now() + timeout;
        loop {
            {
                let msgs = self.msgs.lock().unwrap();
                for (i, m) in msgs.iter().enumerate().skip(from) {
                    if let Some(t) = pick(m) {
                        return (t, i);
                    }
                }
            }
            if Instant::now() >= end {
                panic!(
                    "fake mip4d at {}: no {what} within {timeout:?}; received:\n{:#?}",
                    self.path.display(),
                    self.msgs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a request on the current connection.
    pub fn request(&self, id: u64, action: proto::Action) {
        let mut conn = self.conn.lock().unwrap();
        let stream = conn.as_mut().expect("plugin connected");
        proto::write_msg(stream, &DaemonMsg::Request { id, action }).unwrap();
    }
}

/// A stalled mip4d: listens (0600), accepts every connection and never
/// reads a byte, so the plugin's writes fill the socket buffer.
pub struct StalledMip4d {
    pub path: PathBuf,
    accepted: Arc<Mutex<Vec<UnixStream>>>,
}

impl StalledMip4d {
    pub fn listen(path: &Path) -> StalledMip4d {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let accepted: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let keep = accepted.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                keep.lock().unwrap().push(stream);
            }
        });
        StalledMip4d {
            path: path.to_path_buf(),
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

/// The lab's host configs (lab/hosts).
pub fn hosts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("lab/hosts")
}

/// An MN and a VPN gateway on one link (203.0.113.0/24), the gateway
/// with an intranet address (10.1.0.1) behind it and forwarding on.
pub fn mn_and_gateway() -> (Netns, Netns) {
    let prefix = unique_prefix();
    let mn = Netns::new(&prefix, "mn").unwrap();
    let gw = Netns::new(&prefix, "vpngw").unwrap();
    veth(&mn, "eth0", &gw, "eth0").unwrap();
    gw.add_addr("eth0", "203.0.113.10/24").unwrap();
    mn.add_addr("eth0", "203.0.113.100/24").unwrap();
    gw.add_addr("lo", "10.1.0.1/32").unwrap();
    gw.enable_forwarding().unwrap();
    (mn, gw)
}
