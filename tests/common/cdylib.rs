//! Where the libmip4.so cargo built for this test run is.

use std::path::PathBuf;

/// target/<profile>/deps beside the test binary, else target/<profile>:
/// `cargo test` does not copy a cdylib up to target/<profile>, so the copy
/// there may be stale or missing.
pub fn built_cdylib() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("target/<profile>/deps");
    [deps, deps.parent().unwrap_or(deps)]
        .iter()
        .map(|d| d.join("libmip4.so"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("libmip4.so not built in {}", deps.display()))
}
