//! mip4-lab: RFC 5266 Figure 1 built from network namespaces on one
//! machine, with real charon daemons, and scenarios run against it.
//!
//! - [`netns`]: namespaces, veth links, addresses, routes, sysctls and the
//!   processes started inside them, all torn down on Drop (and by
//!   [`netns::teardown_all`] from a signal handler).
//! - [`charon`]: a real strongSwan charon per host (private /run, own
//!   strongswan.conf, own vici socket, own log) and swanctl helpers.
//! - [`wire`]: a userspace delay line between two veth ends, for links
//!   with a configured delay where the kernel has no netem.
//! - [`platform`]: what the kernel offers (ESP, netem) and what each host
//!   ran on it, for the summary.
//! - [`pluto`]: libreswan's pluto as the VPN gateway (`--gateway
//!   libreswan`, kernel tier).
//! - [`vm`]: the kernel tier: the same scenarios in a QEMU guest running
//!   Debian's stock kernel (`mip4-lab run NAME --vm`).
//! - [`topology`]: Figure 1 as data, and the function that builds it.
//! - [`scenario`]: scenarios as data (strongSwan testing/tests style) and
//!   the runner behind `mip4-lab run`.
//! - [`forger`]: an on-path host answering the MN's probe with forged TNC.
//! - [`bench`]: the plugin's cost on MOBIKE (`mip4-lab bench`).
//! - [`flood`]: mip4-ha under a flood of forged registration requests
//!   (`mip4-lab flood`, issue 13 item 9).
//! - [`leaks`]: a host's kernel state and sockets, normalised, to compare
//!   before and after a fault (`lab::snapshot`, `lab::same-as`).
//! - [`cleartext`]: reads a capture for the home address outside ESP
//!   (`lab::clear-text`).
//! - [`echo`]: the lab's own echo sender, for pingers under ping's 10 ms
//!   floor (`lab::pinger ... MS`, the timed moves).

pub mod access;
pub mod bench;
pub mod bench_baseline;
pub mod bench_ha;
pub mod bulk;
pub mod charon;
pub mod cleartext;
pub mod cpu;
pub mod daemon;
pub mod dsmip;
pub mod echo;
pub mod flood;
pub mod forger;
pub mod leaks;
pub mod machines;
pub mod narrate;
pub mod netns;
pub mod pcap;
pub mod platform;
pub mod pluto;
pub mod scenario;
pub mod spoof;
pub mod stream;
pub mod timing;
pub mod topology;
pub mod vm;
pub mod wait;
pub mod wire;
pub mod xfrm_cost;

/// Errors of the lab: each names the command or file that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("`{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(std::time::Duration, String),
    #[error("{file}:{line}: {msg}")]
    Parse {
        file: String,
        line: usize,
        msg: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks that the lab can run here: root, iproute2, strongSwan's charon,
/// swanctl and the plugins the lab loads. Lab tests call this first so that
/// a machine without them fails with a clear message instead of passing.
pub fn preflight() -> Result<()> {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root privileges (network namespaces)".to_string());
    }
    for (path, what) in [
        ("/usr/sbin/ip", "iproute2"),
        (charon::CHARON, "strongSwan charon (strongswan-charon)"),
        ("/usr/sbin/swanctl", "swanctl (strongswan-swanctl)"),
        ("/usr/sbin/nft", "nftables"),
        ("/usr/bin/ping", "ping (iputils-ping)"),
        ("/dev/net/tun", "TUN device (/dev/net/tun)"),
    ] {
        if !std::path::Path::new(path).exists() {
            missing.push(format!("{what}: {path} not found"));
        }
    }
    for plugin in charon::missing_base_plugins() {
        missing.push(format!("strongSwan plugin {plugin}"));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "mip4-lab cannot run here, missing: {}",
            missing.join("; ")
        )))
    }
}

/// A new directory `parent/<unique prefix><suffix>`, made by this call:
/// the prefix holds the process ID, which the kernel hands out again, so a
/// run's kept logs (a failed run's, or any with MIP4_LAB_KEEP=1) may
/// already hold a name; a later run must never write into them or read
/// their verdicts as its own.
pub fn fresh_dir(parent: &std::path::Path, suffix: &str) -> Result<std::path::PathBuf> {
    let io = |path: &std::path::Path, source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let names = std::iter::repeat_with(|| format!("{}{suffix}", netns::unique_prefix()));
    first_new_dir(parent, names).map_err(|(path, e)| io(&path, e))
}

/// The first of `names` that `create_dir` makes anew under `parent`.
fn first_new_dir(
    parent: &std::path::Path,
    names: impl IntoIterator<Item = String>,
) -> std::result::Result<std::path::PathBuf, (std::path::PathBuf, std::io::Error)> {
    let mut last = parent.to_path_buf();
    for name in names {
        let path = parent.join(name);
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = path,
            Err(e) => return Err((path, e)),
        }
    }
    Err((last, std::io::ErrorKind::AlreadyExists.into()))
}

/// A scratch directory for one lab run (configs, logs, captures): removed
/// when dropped, but kept (and its path printed) when a test panics, so
/// the charon logs of a failed run can be read.
#[derive(Debug)]
pub struct WorkDir {
    path: std::path::PathBuf,
    keep: bool,
}

impl WorkDir {
    /// A fresh directory under the system's temporary directory.
    pub fn new(tag: &str) -> Result<WorkDir> {
        let path = fresh_dir(&std::env::temp_dir(), &format!("-{tag}"))?;
        Ok(WorkDir { path, keep: false })
    }

    /// An existing directory the caller owns (e.g. `--capture DIR`): never
    /// removed.
    pub fn existing(path: &std::path::Path) -> Result<WorkDir> {
        std::fs::create_dir_all(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(WorkDir {
            path: path.to_path_buf(),
            keep: true,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Keep the directory after Drop.
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if std::thread::panicking() {
            eprintln!("mip4-lab: kept {} for inspection", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name whose directory a kept run left behind is passed over: its
    /// logs stay as they were and the new run gets a directory of its own.
    #[test]
    fn a_kept_run_directory_is_never_reused() {
        let parent = fresh_dir(&std::env::temp_dir(), "-fresh-dir-test").unwrap();
        std::fs::create_dir(parent.join("m4l7x0")).unwrap();
        std::fs::write(parent.join("m4l7x0/verdict"), "PASS").unwrap();
        let names = ["m4l7x0", "m4l7x1"].map(String::from);
        let got = first_new_dir(&parent, names).unwrap();
        assert_eq!(got, parent.join("m4l7x1"));
        assert_eq!(std::fs::read_dir(&got).unwrap().count(), 0);
        assert_eq!(
            std::fs::read_to_string(parent.join("m4l7x0/verdict")).unwrap(),
            "PASS"
        );
        let (_, e) = first_new_dir(&parent, ["m4l7x0".to_string()]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
