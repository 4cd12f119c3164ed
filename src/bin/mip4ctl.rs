//! mip4ctl: the operator's CLI for mip4d, mip4-ha and mip4-fa (control socket,
//! see [`mip4::ctl`]).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use mip4::ctl::{self, Request};
use mip4::fa::VisitorInfo;
use mip4::ha::{BindingInfo, Counters};
use mip4::mn::Mode;

/// mip4ctl's exit codes (documented in --help and mip4ctl(1)).
mod exit {
    pub const OK: u8 = 0;
    // 2: a bad command line, clap's own exit.
    pub const REFUSED: u8 = 3;
    pub const UNREACHABLE: u8 = 4;
    pub const BAD_ANSWER: u8 = 5;
}

const EXIT_CODES: &str = "\
Exit status:
  0  done (the daemon answered ok; `events` ends when the daemon closes)
  2  bad usage (unknown command or option, missing argument)
  3  the daemon refused the request (its reason on stderr), e.g. a
     command it does not serve, or `force f` (mode f is never pinned)
  4  the daemon is unreachable: no socket, connection refused, no
     permission (the socket is root-only), or no answer within 5 s
  5  the daemon's answer is not what this mip4ctl understands
     (mip4ctl and the daemon from different versions)

With --json the daemon's `data` object is printed as one line of JSON;
its field names are stable (see the operator guide, docs/operator-guide.md).";

#[derive(Parser, Debug)]
#[command(
    name = "mip4ctl",
    version,
    about = "Query and steer mip4d, mip4-ha and mip4-fa",
    long_about = "Query and steer mip4d, mip4-ha and mip4-fa through their \
root-only control sockets (one JSON request per line, one JSON answer).",
    after_help = EXIT_CODES
)]
pub(crate) struct Args {
    /// Control socket (default: mip4d's for status, stats, events, probe,
    /// force and release; the HA's for bindings and counters; the FA's for
    /// visitors).
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Print the daemon's answer as one line of JSON (stable field
    /// names) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Daemon status (any daemon).
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
    /// mip4d's registration statistics: denials by code (RFC 5944
    /// names), drops by reason, handover times (last, median, worst).
    Stats,
    /// mip4d runs the trusted-network probe of its attachment now (RFC
    /// 5266 §3.4, RFC 5265): the verdict follows in `events`.
    Probe,
    /// Pin mip4d to an access mode until `release`.
    ///
    /// A pin narrows the modes mip4d uses; it never makes a network
    /// trusted (trust comes only from trusted_networks or the
    /// authenticated probe, RFC 5266 §3.4). `mc`: everything goes through
    /// the VPN, also on a trusted network, and no probe leaves in the
    /// clear. `c`: the VPN is never used or asked for; on a trusted
    /// network mode c as usual, on any other no Mobile IP service (state
    /// untrusted) rather than an untrusted address registered. `f`:
    /// refused until mode f exists in mip4d.
    Force {
        /// The RFC 5266 §3.1 access mode.
        #[arg(value_enum)]
        mode: ModeArg,
    },
    /// Release the pin: mip4d chooses its mode again.
    Release,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Co-located care-of address on a trusted network (§3.1.1).
    C,
    /// Foreign agent care-of address (§3.1.2).
    F,
    /// The VPN's TIA as care-of address, MIP inside IPsec (§3.1.3).
    Mc,
}

fn main() -> ExitCode {
    let args = Args::parse();
    ExitCode::from(run(args))
}

fn run(args: Args) -> u8 {
    let (req, default) = match args.cmd {
        Cmd::Status => (Request::Status, ctl::MN_SOCKET),
        Cmd::Bindings => (Request::BINDINGS, ctl::HA_SOCKET),
        Cmd::Counters => (Request::Counters, ctl::HA_SOCKET),
        Cmd::Events => (Request::Events, ctl::MN_SOCKET),
        Cmd::Visitors => (Request::Visitors, ctl::FA_SOCKET),
        Cmd::Stats => (Request::Stats, ctl::MN_SOCKET),
        Cmd::Probe => (Request::Probe, ctl::MN_SOCKET),
        Cmd::Force { mode } => {
            let mode = match mode {
                ModeArg::C => Mode::C,
                ModeArg::F => Mode::F,
                ModeArg::Mc => Mode::Mc,
            };
            (Request::Force { mode }, ctl::MN_SOCKET)
        }
        Cmd::Release => (Request::Release, ctl::MN_SOCKET),
    };
    let path = args.socket.unwrap_or_else(|| PathBuf::from(default));
    if req == Request::Events {
        return stream_events(&path, args.json);
    }
    let answer = match req {
        Request::Bindings { .. } => all_bindings(&path),
        _ => ask(&path, req),
    };
    let data = match answer {
        Ok(d) => d,
        Err(code) => return code,
    };
    if args.json {
        println!("{data}");
        return exit::OK;
    }
    let shown = match req {
        Request::Bindings { .. } => serde_json::from_value::<Vec<BindingInfo>>(data)
            .map(|b| print_bindings(&b))
            .map_err(|e| e.to_string()),
        Request::Visitors => serde_json::from_value::<Vec<VisitorInfo>>(data)
            .map(|v| print_visitors(&v))
            .map_err(|e| e.to_string()),
        // A foreign agent's counters (they have `relayed`).
        Request::Counters if data.get("relayed").is_some() => {
            print_object(&data, "");
            Ok(())
        }
        Request::Counters => serde_json::from_value::<Counters>(data.clone())
            .map(|c| {
                print_counters(&c);
                if let Some(dp) = data.get("dataplane") {
                    println!("data plane:");
                    print_object(dp, "  ");
                }
            })
            .map_err(|e| e.to_string()),
        Request::Status => {
            // mip4d's deployment warnings first, one line each.
            let warnings = data["warnings"].as_array().cloned().unwrap_or_default();
            for w in &warnings {
                println!("WARNING: {}", w["message"].as_str().unwrap_or_default());
            }
            print_object(&data, "");
            Ok(())
        }
        Request::Stats => print_stats(&data),
        Request::Probe => {
            let p = &data["probing"];
            println!(
                "probing {} on {}: the verdict follows in `mip4ctl events`",
                p["address"].as_str().unwrap_or("?"),
                p["ifname"].as_str().unwrap_or("?")
            );
            Ok(())
        }
        Request::Force { .. } | Request::Release => {
            print_object(&data, "");
            Ok(())
        }
        Request::Events => unreachable!("streamed above"),
    };
    match shown {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("mip4ctl: unexpected answer: {e}");
            exit::BAD_ANSWER
        }
    }
}

/// The daemon's `data` for `req`, or the exit code (its reason said on
/// stderr).
fn ask(path: &std::path::Path, req: Request) -> Result<serde_json::Value, u8> {
    let resp = match ctl::call(path, req, Duration::from_secs(5)) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            eprintln!("mip4ctl: {}: {e}", path.display());
            return Err(exit::BAD_ANSWER);
        }
        Err(e) => {
            eprintln!("mip4ctl: {}: {e}", path.display());
            return Err(exit::UNREACHABLE);
        }
    };
    if !resp.ok {
        eprintln!(
            "mip4ctl: {}: {}",
            req.name(),
            resp.error.as_deref().unwrap_or("daemon refused")
        );
        return Err(exit::REFUSED);
    }
    Ok(resp.data.unwrap_or(serde_json::Value::Null))
}

/// The whole binding cache, asked a page at a time (each answer is quick
/// for the daemon, however many bindings it holds), as one JSON array.
fn all_bindings(path: &std::path::Path) -> Result<serde_json::Value, u8> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let limit = ctl::BINDINGS_PAGE_MAX;
        let req = Request::Bindings {
            after,
            limit: Some(limit as u32),
        };
        let serde_json::Value::Array(page) = ask(path, req)? else {
            eprintln!("mip4ctl: bindings: unexpected answer: not a list");
            return Err(exit::BAD_ANSWER);
        };
        let last = page
            .last()
            .map(|b| b["home_address"].as_str().map(str::parse));
        let full = page.len() >= limit;
        all.extend(page);
        match last {
            Some(Some(Ok(a))) if full => after = Some(a),
            Some(Some(Err(_)) | None) => {
                eprintln!("mip4ctl: bindings: unexpected answer: no home address");
                return Err(exit::BAD_ANSWER);
            }
            _ => return Ok(serde_json::Value::Array(all)),
        }
    }
}

/// `mip4ctl stats` as text.
fn print_stats(v: &serde_json::Value) -> Result<(), String> {
    let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let r = v.get("registrations").ok_or("no `registrations`")?;
    println!(
        "state {}  mode {}  pinned {}",
        v["state"]["state"].as_str().unwrap_or("?"),
        v["mode"].as_str().unwrap_or("-"),
        v["pinned"].as_str().unwrap_or("-")
    );
    println!("registrations:");
    print_object(r, "  ");
    println!("denials:");
    let denials = v["denials"].as_array().ok_or("no `denials`")?;
    if denials.is_empty() {
        println!("  none");
    }
    for d in denials {
        println!(
            "  {:>3} {:<6} {}  ({})",
            n(&d["code"]),
            n(&d["count"]),
            d["name"].as_str().unwrap_or(""),
            d["by"].as_str().unwrap_or("")
        );
    }
    println!("drops:");
    print_object(&v["drops"], "  ");
    let h = &v["handovers"];
    println!(
        "handovers: {}  last {} ms  median {} ms (last {})  worst {} ms",
        n(&h["count"]),
        n(&h["last_ms"]),
        n(&h["median_ms"]),
        n(&h["window"]),
        n(&h["worst_ms"])
    );
    Ok(())
}

/// Subscribes to mip4d's events and copies them to stdout: the JSON line
/// as sent with `--json`, else `seconds.micro (monotonic) event key=value`.
fn stream_events(path: &std::path::Path, json: bool) -> u8 {
    use std::io::{BufRead, BufReader, Write};
    let mut s = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mip4ctl: {}: {e}", path.display());
            return exit::UNREACHABLE;
        }
    };
    let mut req = serde_json::to_vec(&Request::Events).unwrap_or_default();
    req.push(b'\n');
    if let Err(e) = s.write_all(&req) {
        eprintln!("mip4ctl: {}: {e}", path.display());
        return exit::UNREACHABLE;
    }
    let stdout = std::io::stdout();
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { break };
        // A daemon without events answers with a refusal instead.
        if let Ok(r) = serde_json::from_str::<ctl::Response>(&line) {
            if !r.ok {
                eprintln!(
                    "mip4ctl: events: {}",
                    r.error.as_deref().unwrap_or("daemon refused")
                );
                return exit::REFUSED;
            }
        }
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
    exit::OK
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
        ("dropped (queue full)", c.queue_full),
        ("dropped (socket)", c.socket_dropped),
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
