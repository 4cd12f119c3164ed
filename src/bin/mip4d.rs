//! mip4d: the Mobile IPv4 mobile node daemon (RFC 5944; RFC 5266 modes
//! 'c' and 'mc'). See packaging/mip4d.conf.example and docs/mip4d.md. A
//! thin main: arguments, configuration, then [`mip4::daemons::mn::run`].

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mip4::daemons::mn::{self as daemon, MnConfig};

#[derive(Debug, Parser)]
#[command(
    name = "mip4d",
    version,
    about = "Mobile IPv4 mobile node daemon (RFC 5944, RFC 5266)",
    after_help = mip4::cli::EXIT_CODES
)]
pub(crate) struct Args {
    /// Configuration file (TOML).
    #[arg(short, long, default_value = "/etc/mip4/mip4d.conf")]
    config: PathBuf,
    /// Parse and check the whole configuration file (and the key files
    /// it names), print every error with its file, line and key (never a
    /// key's value), and exit: 0 if it has none, 1 if it has any.
    #[arg(long = "check-config", visible_alias = "check")]
    check_config: bool,
    /// Log filter: a level, or TARGET=LEVEL directives after an optional
    /// level, separated by commas (info,mip4::dataplane=debug); RUST_LOG
    /// overrides it.
    #[arg(long, default_value = "info", value_parser = log_filter)]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

/// `--log`, checked: a bad filter is bad usage (exit 2).
fn log_filter(s: &str) -> Result<String, String> {
    mip4::cli::log_filter(s).map(|_| s.to_string())
}

fn main() -> ExitCode {
    // The 64 KiB receive buffers in mappings of their own, so that only
    // the pages datagrams fill are resident (issue 14 §5).
    mip4::sys::malloc::mmap_from(64 * 1024);
    let args = Args::parse();
    mip4::cli::init_logging(&args.log, args.log_json);
    if args.check_config {
        return mip4::cli::check_config(
            "mip4d",
            &args.config,
            MnConfig::check_file(&args.config),
            |c| format!("control socket {}", c.control_socket.display()),
        );
    }
    let cfg = match mip4::cli::config_or_exit("mip4d", MnConfig::check_file(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    mip4::cli::block_on("mip4d", daemon::run(cfg))
}
