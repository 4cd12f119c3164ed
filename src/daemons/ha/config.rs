//! mip4-ha's configuration file: read at start and on SIGHUP (the file
//! format and its checks are the core's, [`crate::ha::config`]).

use std::path::Path;

use crate::config::{ConfigError, Source};
use crate::ha::HaConfig;

/// Reads and checks `path` (a reload: the first error).
pub fn load(path: &Path) -> Result<HaConfig, ConfigError> {
    HaConfig::from_source(&Source::read(path)?)
}

/// Reads and checks `path`: every error (start, `--check-config`).
pub fn check_file(path: &Path) -> Result<HaConfig, Vec<ConfigError>> {
    HaConfig::check(&Source::read(path).map_err(|e| vec![e])?)
}

/// The core declines RFC 3519 (and answers 142 to a forced request) when
/// the data plane in use cannot carry it.
pub(super) fn core_config(
    mut cfg: HaConfig,
    udp_unavailable: bool,
    ipv6_carried: bool,
) -> HaConfig {
    if udp_unavailable {
        cfg.udp_tunnelling = false;
    }
    cfg.ipv6_carried = ipv6_carried;
    cfg
}

/// What a reload (SIGHUP) cannot change in a running mip4-ha: the
/// sockets, files and data plane it set up at start. A configuration that
/// changes any is refused as a whole, naming the key, so that nothing is
/// silently ignored (issue 13 item 10); a restart applies it.
pub(super) fn reload_refusal(
    running: &HaConfig,
    new: &HaConfig,
    udp_on_at_start: bool,
) -> Option<String> {
    let fixed = [
        ("listen", running.listen != new.listen),
        (
            "control_socket",
            running.control_socket != new.control_socket,
        ),
        ("state_file", running.state_file != new.state_file),
        (
            "tunnel_backend",
            running.tunnel_backend != new.tunnel_backend,
        ),
        (
            "tunnel_interface",
            running.tunnel_interface != new.tunnel_interface,
        ),
    ];
    if let Some((key, _)) = fixed.iter().find(|(_, changed)| *changed) {
        return Some(format!("`{key}` changed: restart mip4-ha to apply it"));
    }
    // Switched on: the data plane did not take the UDP socket at start.
    // (On at start but not carried: declined as before, core_config.)
    if new.udp_tunnelling && !udp_on_at_start {
        return Some(
            "`udp_tunnelling` switched on, but the data plane started without RFC 3519 \
             (restart mip4-ha to apply it)"
                .to_string(),
        );
    }
    None
}
