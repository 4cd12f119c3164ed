//! mip4-ha's configuration file: read at start and on SIGHUP (the file
//! format and its checks are the core's, [`crate::ha::config`]).

use std::path::Path;

use crate::config::{ConfigError, Source};
use crate::ha::HaConfig;

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<HaConfig, ConfigError> {
    HaConfig::from_source(&Source::read(path)?)
}

/// The core declines RFC 3519 (and answers 142 to a forced request) when
/// the data plane in use cannot carry it.
pub(super) fn core_config(mut cfg: HaConfig, udp_unavailable: bool) -> HaConfig {
    if udp_unavailable {
        cfg.udp_tunnelling = false;
    }
    cfg
}
