//! mip4-ha: the internal home agent daemon (RFC 5944 §3.8, RFC 5266 i-HA).
//! A thin main: arguments, configuration, then [`mip4::daemons::ha::run`].

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mip4::daemons::ha;

/// The binding cache's and the nodes' tables take huge pages: at a
/// million bindings, a lookup in 4 KiB pages misses the TLB as well as
/// the cache (issue 14 §4).
#[global_allocator]
static ALLOCATOR: mip4::sys::hugepage::HugeLarge = mip4::sys::hugepage::HugeLarge;

#[derive(Parser, Debug)]
#[command(
    name = "mip4-ha",
    version,
    about = "Mobile IPv4 home agent (RFC 5944, RFC 5266 i-HA)",
    after_help = mip4::cli::EXIT_CODES
)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-ha.conf")]
    config: PathBuf,
    /// Parse and check the whole configuration file (and the key files
    /// it names), print every error with its file, line and key (never a
    /// key's value), and exit: 0 if it has none, 1 if it has any.
    #[arg(long = "check-config", visible_alias = "check")]
    check_config: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mip4::cli::init_logging("info", args.log_json);
    if args.check_config {
        return mip4::cli::check_config(
            "mip4-ha",
            &args.config,
            ha::config::check_file(&args.config),
            |c| format!("{} mobile nodes", c.mobile_nodes.len()),
        );
    }
    let cfg = match mip4::cli::config_or_exit("mip4-ha", ha::config::check_file(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    mip4::cli::block_on("mip4-ha", ha::run(args.config, cfg))
}
