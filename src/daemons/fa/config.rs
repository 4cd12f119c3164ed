//! mip4-fa's configuration file (the format and its checks are the
//! core's, [`crate::fa::config`]).

use std::path::Path;

use crate::config::{ConfigError, Source};
use crate::fa::FaConfig;

/// Reads and checks `path` (the first error).
pub fn load(path: &Path) -> Result<FaConfig, ConfigError> {
    FaConfig::from_source(&Source::read(path)?)
}

/// Reads and checks `path`: every error (start, `--check-config`).
pub fn check_file(path: &Path) -> Result<FaConfig, Vec<ConfigError>> {
    FaConfig::check(&Source::read(path).map_err(|e| vec![e])?)
}
