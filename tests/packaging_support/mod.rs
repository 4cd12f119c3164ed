//! What the package tests (tests/packaging_*.rs) share.

use std::path::PathBuf;
use std::process::Command;

/// The daemons `mip4-mobike` ships, each with its unit, its root-only
/// config (the example) and its man pages.
#[allow(dead_code)] // not every package test reads it
pub const DAEMONS: &[&str] = &["mip4-ha", "mip4d", "mip4-fa"];

/// The checkout.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd`, which must succeed; its stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
