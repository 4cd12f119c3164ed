//! What every daemon's main does around its loop: logging set up the same
//! way (RUST_LOG overrides the default filter; text or JSON lines on
//! stderr), its configuration loaded with one kind of error exit, and the
//! loop run on a single-threaded runtime.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Logs to stderr, filtered by RUST_LOG or else `default_filter`.
pub fn init_logging(default_filter: &str, json: bool) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        sub.json().init();
    } else {
        sub.init();
    }
}

/// A loaded configuration, or exit code 2 after printing the error (which
/// names the file, line and key: see [`crate::config`]).
pub fn config_or_exit<T, E: Display>(daemon: &str, loaded: Result<T, E>) -> Result<T, ExitCode> {
    loaded.map_err(|e| {
        eprintln!("{daemon}: {e}");
        ExitCode::from(2)
    })
}

/// Runs a daemon's loop to its end on a current-thread runtime: success,
/// or the error printed and exit code 1.
pub fn block_on<E: Display>(daemon: &str, run: impl Future<Output = Result<(), E>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{daemon}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{daemon}: {e}");
            ExitCode::FAILURE
        }
    }
}
