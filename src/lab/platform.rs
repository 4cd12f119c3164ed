//! What the kernel under the lab offers, and what each lab host ran on it.
//!
//! The same scenarios run on two platforms: the development machines'
//! kernel (XFRM but no ESP, ipip or netem: charon's kernel-libipsec, the
//! userspace tunnel plane and the lab's userspace delay line) and, in the
//! kernel tier (src/lab/vm.rs), Debian's stock kernel (charon's
//! kernel-netlink, kernel ipip, netem). The lab picks per feature from what
//! the kernel has, and the summary reports what actually ran.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// What the running kernel can do for the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// ESP in the kernel (esp4): charon's kernel-netlink can carry ESP.
    pub esp: bool,
    /// The netem qdisc: link delays without the userspace delay line.
    pub netem: bool,
    /// `sit` links: IPv6 in IPv4 in the kernel (DSMIPv4 on the kernel
    /// tunnel backend, RFC 5454).
    pub sit: bool,
}

impl Kernel {
    /// Asks the kernel, loading the modules first where it has modules
    /// (Debian's kernel: modules, autoloaded only on first use; loading
    /// them here keeps that cost out of the scenario's measured figures).
    pub fn detect() -> Kernel {
        static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| Kernel {
            esp: has_module("esp4"),
            netem: has_module("sch_netem"),
            sit: has_module("sit"),
        })
    }
}

/// Whether `module` is loaded or built in, after trying `modprobe`.
fn has_module(module: &str) -> bool {
    if Path::new("/sys/module").join(module).exists() {
        return true;
    }
    if Path::new("/proc/modules").exists() && super::scenario::have("modprobe") {
        let _ = std::process::Command::new("modprobe")
            .args(["-q", module])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    Path::new("/sys/module").join(module).exists() || builtin(module)
}

/// Whether `module` is built into the running kernel (modules.builtin).
fn builtin(module: &str) -> bool {
    let release = release();
    let list = Path::new("/lib/modules")
        .join(release)
        .join("modules.builtin");
    std::fs::read_to_string(list)
        .unwrap_or_default()
        .lines()
        .any(|l| l.rsplit('/').next() == Some(&format!("{module}.ko")))
}

/// `uname -r`.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// What a run ran on, for the summary: the kernel's release, each VPN
/// host's IPsec backend (`kernel-netlink`, `kernel-libipsec`, `libreswan`)
/// and each Mobile IP daemon's tunnel backend (`kernel`, `userspace`), as
/// read back from the running charons and daemons.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub kernel: String,
    pub ipsec: BTreeMap<String, String>,
    pub tunnels: BTreeMap<String, String>,
}

/// The IPsec backend a charon with these loaded plugins uses.
pub fn ipsec_backend(loaded: &[String]) -> &'static str {
    if loaded.iter().any(|p| p == "kernel-libipsec") {
        "kernel-libipsec"
    } else if loaded.iter().any(|p| p == "kernel-netlink") {
        "kernel-netlink"
    } else {
        "none"
    }
}

/// The tunnel backend in a daemon's `mip4ctl status --json`: mip4d's
/// `tunnel_backend`, mip4-ha's `dataplane.backend`.
pub fn tunnel_backend(status: &serde_json::Value) -> Option<String> {
    status["tunnel_backend"]
        .as_str()
        .or_else(|| status["dataplane"]["backend"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libipsec_wins_over_netlink() {
        let loaded: Vec<String> = ["kernel-libipsec", "kernel-netlink"]
            .map(String::from)
            .to_vec();
        assert_eq!(ipsec_backend(&loaded), "kernel-libipsec");
        assert_eq!(ipsec_backend(&loaded[1..]), "kernel-netlink");
    }

    #[test]
    fn tunnel_backend_from_either_daemon() {
        let mn = serde_json::json!({"daemon": "mip4d", "tunnel_backend": "kernel"});
        let ha = serde_json::json!({"daemon": "mip4-ha", "dataplane": {"backend": "userspace"}});
        assert_eq!(tunnel_backend(&mn).as_deref(), Some("kernel"));
        assert_eq!(tunnel_backend(&ha).as_deref(), Some("userspace"));
        assert_eq!(tunnel_backend(&serde_json::json!({})), None);
    }
}
