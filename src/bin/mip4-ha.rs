//! mip4-ha: the internal home agent daemon (RFC 5944 §3.8, RFC 5266 i-HA).
//! A thin main: arguments, configuration, then [`mip4::daemons::ha::run`].

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mip4::daemons::ha;

#[derive(Parser, Debug)]
#[command(
    name = "mip4-ha",
    version,
    about = "Mobile IPv4 home agent (RFC 5944, RFC 5266 i-HA)"
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-ha.conf")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    mip4::cli::init_logging("info", args.log_json);
    let cfg = match mip4::cli::config_or_exit("mip4-ha", ha::config::load(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check {
        println!(
            "{}: ok ({} mobile nodes)",
            args.config.display(),
            cfg.mobile_nodes.len()
        );
        return ExitCode::SUCCESS;
    }
    mip4::cli::block_on("mip4-ha", ha::run(args.config, cfg))
}
