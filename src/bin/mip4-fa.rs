//! mip4-fa: the foreign agent daemon (RFC 5944 §2, §3.7; RFC 3024). A thin
//! main: arguments, configuration, then [`mip4::daemons::fa::run`].

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use mip4::daemons::fa;

#[derive(Parser, Debug)]
#[command(
    name = "mip4-fa",
    version,
    about = "Mobile IPv4 foreign agent (RFC 5944, RFC 3024)"
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-fa.conf")]
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
    let cfg = match mip4::cli::config_or_exit("mip4-fa", fa::config::load(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check {
        println!(
            "{}: ok ({} interfaces, care-of address {})",
            args.config.display(),
            cfg.interfaces.len(),
            cfg.care_of_address
        );
        return ExitCode::SUCCESS;
    }
    mip4::cli::block_on("mip4-fa", fa::run(cfg))
}
