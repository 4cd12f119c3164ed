//! mip4ctl: the operator's CLI for mip4d, mip4-ha and mip4-fa (control socket,
//! see [`mip4::ctl`]).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mip4::ctl::{self, Request};
use mip4::fa::VisitorInfo;
use mip4::ha::{BindingInfo, Counters};

#[derive(Parser, Debug)]
#[command(name = "mip4ctl", version, about = "Query mip4d, mip4-ha and mip4-fa")]
struct Args {
    /// Control socket (default: the HA's for `bindings` and `counters`,
    /// mip4d's for `status`).
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    /// Print the daemon's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon status.
    Status,
    /// The home agent's binding cache.
    Bindings,
    /// The home agent's (or, with --socket, the foreign agent's) counters.
    Counters,
    /// mip4d's event stream: one JSON object per line (timestamps
    /// `mono_ns`, CLOCK_MONOTONIC, and `wall_ns`), until interrupted.
    Events,
    /// The foreign agent's visitor list.
    Visitors,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (req, default) = match args.cmd {
        Cmd::Status => (Request::Status, ctl::MN_SOCKET),
        Cmd::Bindings => (Request::Bindings, ctl::HA_SOCKET),
        Cmd::Counters => (Request::Counters, ctl::HA_SOCKET),
        Cmd::Events => (Request::Events, ctl::MN_SOCKET),
        Cmd::Visitors => (Request::Visitors, ctl::FA_SOCKET),
    };
    let path = args.socket.unwrap_or_else(|| PathBuf::from(default));
    if req == Request::Events {
        return stream_events(&path, args.json);
    }
    let resp = match ctl::call(&path, req, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mip4ctl: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    if !resp.ok {
        eprintln!(
            "mip4ctl: {}",
            resp.error.as_deref().unwrap_or("daemon refused")
        );
        return ExitCode::FAILURE;
    }
    let data = resp.data.unwrap_or(serde_json::Value::Null);
    if args.json {
        println!("{data}");
        return ExitCode::SUCCESS;
    }
    match req {
        Request::Bindings => match serde_json::from_value::<Vec<BindingInfo>>(data) {
            Ok(b) => print_bindings(&b),
            Err(e) => {
                eprintln!("mip4ctl: unexpected answer: {e}");
                return ExitCode::FAILURE;
            }
        },
        Request::Visitors => match serde_json::from_value::<Vec<VisitorInfo>>(data) {
            Ok(v) => print_visitors(&v),
            Err(e) => {
                eprintln!("mip4ctl: unexpected answer: {e}");
                return ExitCode::FAILURE;
            }
        },
        // A foreign agent's counters (they have `relayed`).
        Request::Counters if data.get("relayed").is_some() => print_object(&data, ""),
        Request::Counters => match serde_json::from_value::<Counters>(data.clone()) {
            Ok(c) => {
                print_counters(&c);
                if let Some(dp) = data.get("dataplane") {
                    println!("data plane:");
                    print_object(dp, "  ");
                }
            }
            Err(e) => {
                eprintln!("mip4ctl: unexpected answer: {e}");
                return ExitCode::FAILURE;
            }
        },
        Request::Status => {
            // mip4d's deployment warnings first, one line each.
            let warnings = data["warnings"].as_array().cloned().unwrap_or_default();
            for w in &warnings {
                println!("WARNING: {}", w["message"].as_str().unwrap_or_default());
            }
            print_object(&data, "");
        }
        Request::Events => unreachable!("streamed above"),
    }
    ExitCode::SUCCESS
}

/// Subscribes to mip4d's events and copies them to stdout: the JSON line
/// as sent with `--json`, else `seconds.micro (monotonic) event key=value`.
fn stream_events(path: &std::path::Path, json: bool) -> ExitCode {
    use std::io::{BufRead, BufReader, Write};
    let mut s = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mip4ctl: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut req = serde_json::to_vec(&Request::Events).unwrap_or_default();
    req.push(b'\n');
    if let Err(e) = s.write_all(&req) {
        eprintln!("mip4ctl: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    let stdout = std::io::stdout();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        let mut out = stdout.lock();
        let written = if json {
            writeln!(out, "{line}")
        } else {
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(serde_json::Value::Object(mut m)) => {
                    let mono = m.remove("mono_ns").and_then(|v| v.as_u64()).unwrap_or(0);
                    m.remove("wall_ns");
                    let ev = m.remove("event").unwrap_or_default();
                    let rest: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    writeln!(
                        out,
                        "{}.{:06} {} {}",
                        mono / 1_000_000_000,
                        mono % 1_000_000_000 / 1000,
                        ev.as_str().unwrap_or("?"),
                        rest.join(" ")
                    )
                }
                _ => writeln!(out, "{line}"),
            }
        };
        if written.and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    ExitCode::SUCCESS
}

fn print_bindings(bs: &[BindingInfo]) {
    println!(
        "{:<15} {:<15} {:<21} {:>5} {:>5} {:<5} {:<4} NAI",
        "HOME ADDRESS", "CARE-OF", "SOURCE", "LIFE", "LEFT", "TUNL", "FLAG"
    );
    for b in bs {
        let tunnel = match b.tunnel {
            mip4::ha::TunnelMode::Ipip => "ipip",
            mip4::ha::TunnelMode::Udp => "udp",
        };
        println!(
            "{:<15} {:<15} {:<21} {:>5} {:>5} {:<5} {:<4} {}",
            b.home_address.to_string(),
            b.care_of_address.to_string(),
            b.source,
            b.lifetime,
            b.remaining,
            tunnel,
            if b.flags.is_empty() { "-" } else { &b.flags },
            b.nai.as_deref().unwrap_or("-")
        );
    }
}

fn print_visitors(vs: &[VisitorInfo]) {
    println!(
        "{:<15} {:<8} {:<10} {:<17} {:<15} {:>5} {:>5} {:<2} NAI",
        "HOME ADDRESS", "STATE", "INTERFACE", "LINK-LAYER", "HOME AGENT", "LIFE", "LEFT", "T"
    );
    for v in vs {
        println!(
            "{:<15} {:<8} {:<10} {:<17} {:<15} {:>5} {:>5} {:<2} {}",
            v.home_address.to_string(),
            v.state,
            v.interface,
            v.mac,
            v.home_agent.to_string(),
            v.lifetime,
            v.remaining,
            if v.reverse_tunnel { "T" } else { "-" },
            v.nai.as_deref().unwrap_or("-")
        );
    }
}

fn print_counters(c: &Counters) {
    let rows = [
        ("requests", c.requests),
        ("accepted", c.accepted),
        ("deregistered", c.deregistered),
        ("expired", c.expired),
        ("dropped (malformed)", c.dropped_malformed),
        ("unauthenticated", c.unauthenticated),
        ("replayed", c.replayed),
        ("tunnel data dropped", c.tunnel_data_dropped),
        ("dropped (untrusted)", c.dropped_untrusted_source),
        ("replies with TNC", c.tnc_replies),
    ];
    for (k, v) in rows {
        println!("{k:<22} {v}");
    }
    for (code, n) in &c.denied {
        let name = mip4::wire::ReplyCode(*code).name();
        println!("denied {code:<15} {n}  ({name})");
    }
}

fn print_object(v: &serde_json::Value, indent: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match v {
                    serde_json::Value::Object(_) => {
                        println!("{indent}{k}:");
                        print_object(v, &format!("{indent}  "));
                    }
                    serde_json::Value::String(s) => println!("{indent}{k}: {s}"),
                    other => println!("{indent}{k}: {other}"),
                }
            }
        }
        other => println!("{indent}{other}"),
    }
}
