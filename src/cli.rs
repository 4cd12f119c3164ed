//! What every daemon's main does around its loop: logging set up the same
//! way (RUST_LOG overrides the default filter; text or JSON lines on
//! stderr), its configuration loaded with one kind of error exit, and the
//! loop run on a single-threaded runtime.

use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::ConfigError;

/// A log filter: a level (`debug`), or directives `TARGET=LEVEL` after an
/// optional default level, separated by commas
/// (`info,mip4::dataplane=debug`). tracing-subscriber's `Targets`, not
/// its `EnvFilter`: no span or field filters, and so no regex engine in
/// the daemons (issue 14 §5: its code was 300 KB of mip4d's binary, and
/// every page of it counts in the daemon's resident memory).
pub fn log_filter(s: &str) -> Result<Targets, String> {
    s.parse::<Targets>()
        .map_err(|e| format!("log filter `{s}`: {e}"))
}

/// Logs to stderr, filtered by RUST_LOG (when set and valid) or else
/// `default_filter` (see [`log_filter`]; `info` when it is invalid).
pub fn init_logging(default_filter: &str, json: bool) {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.is_empty())
        .and_then(|v| {
            log_filter(&v)
                .map_err(|e| eprintln!("RUST_LOG: {e}: ignored"))
                .ok()
        });
    let filter = from_env
        .or_else(|| log_filter(default_filter).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    // fmt's own ceiling is INFO unless told: the filter alone decides
    // (`--log debug` logged nothing below INFO).
    let sub = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    if json {
        sub.json().finish().with(filter).init();
    } else {
        sub.finish().with(filter).init();
    }
}

/// Exit code of a daemon whose configuration has errors, at start and
/// with `--check-config` (2 is clap's for a bad command line).
pub const EXIT_CONFIG: u8 = 1;

/// What `--check-config` and the man pages say about exit codes.
pub const EXIT_CODES: &str = "\
Exit status:
  0  the daemon ran and stopped cleanly, or --check-config found no error
  1  the configuration has errors (each printed on stderr as
     FILE:LINE: key `KEY`: what is wrong; a key's value is never shown),
     or the daemon stopped on an error
  2  bad usage (unknown option, missing argument)";

/// A loaded configuration, or [`EXIT_CONFIG`] after printing every error
/// (each names the file, line and key: see [`crate::config`]).
pub fn config_or_exit<T>(daemon: &str, loaded: Result<T, Vec<ConfigError>>) -> Result<T, ExitCode> {
    loaded.map_err(|errors| {
        for e in &errors {
            eprintln!("{daemon}: {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// `--check-config`: every error of the file on stderr and a count,
/// else `summary` of the valid configuration on stdout.
pub fn check_config<T>(
    daemon: &str,
    path: &Path,
    checked: Result<T, Vec<ConfigError>>,
    summary: impl FnOnce(&T) -> String,
) -> ExitCode {
    match checked {
        Ok(cfg) => {
            println!("{}: OK ({})", path.display(), summary(&cfg));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            let n = errors.len();
            eprintln!(
                "{daemon}: {}: {n} error{}",
                path.display(),
                if n == 1 { "" } else { "s" }
            );
            ExitCode::from(EXIT_CONFIG)
        }
    }
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
    // On the heap: block_on keeps the future it polls on the stack, and
    // a daemon's loop is a large state machine (issue 14 §5).
    match rt.block_on(Box::pin(run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{daemon}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filter_takes_levels_and_targets_and_names_a_bad_one() {
        for good in [
            "info",
            "debug",
            "info,mip4::dataplane=debug",
            "warn,mip4=trace",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for bad in ["mip4=loud", "a=b=c"] {
            let e = log_filter(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
