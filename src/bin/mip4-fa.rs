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
    about = "Mobile IPv4 foreign agent (RFC 5944, RFC 3024)",
    after_help = mip4::cli::EXIT_CODES
)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-fa.conf")]
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
            "mip4-fa",
            &args.config,
            fa::config::check_file(&args.config),
            |c| {
                format!(
                    "{} interfaces, care-of address {}",
                    c.interfaces.len(),
                    c.care_of_address
                )
            },
        );
    }
    let cfg = match mip4::cli::config_or_exit("mip4-fa", fa::config::check_file(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    mip4::cli::block_on("mip4-fa", fa::run(cfg))
}
