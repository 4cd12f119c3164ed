//! mip4-lab: RFC 5266 Figure 1 on one machine, with real charon daemons.
//!
//! `mip4-lab list`, `mip4-lab run NAME... [--json] [--capture DIR]`,
//! `mip4-lab run NAME... --vm [--gateway libreswan]` (the kernel tier: the
//! same scenarios in a guest with Debian's kernel, src/lab/vm.rs),
//! `mip4-lab tour` (what `make demo` runs). Everything a run makes is torn
//! down at the end, on failure, and on Ctrl-C or SIGTERM.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mip4::lab::scenario::{self, Event, RunOptions, Scenario, Summary};

#[derive(Parser)]
#[command(
    name = "mip4-lab",
    about = "RFC 5266 Figure 1 in network namespaces, with real charon daemons"
)]
pub(crate) struct Cli {
    /// The lab folder (figure1.toml, hosts/, scenarios/).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/lab"))]
    lab_dir: PathBuf,
    /// Extra charon plugins for every lab host (e.g. `mip4`).
    #[arg(long = "charon-plugin")]
    charon_plugins: Vec<String>,
    /// Where mip4d, mip4-ha and mip4ctl are (default: beside mip4-lab,
    /// where cargo builds them).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The scenarios and what each shows.
    List,
    /// Runs scenarios, one after another.
    Run {
        #[arg(required = true)]
        names: Vec<String>,
        /// One JSON object per line: events, then a summary.
        #[arg(long)]
        json: bool,
        /// Write a pcap per host interface into DIR (with --vm: taken in
        /// the guest, into DIR/NAME/).
        #[arg(long, value_name = "DIR")]
        capture: Option<PathBuf>,
        /// In a QEMU guest with Debian's stock kernel: kernel ESP
        /// (charon's kernel-netlink), kernel ipip tunnels, netem (one boot
        /// for all NAMES).
        #[arg(long)]
        vm: bool,
        /// The VPN gateway: strongswan, or libreswan (kernel tier only).
        #[arg(long, default_value = "strongswan")]
        gateway: mip4::lab::vm::Gateway,
    },
    /// Runs every scenario and tells each one: timeline and figures.
    Tour,
    /// MOBIKE update time with and without the mip4 plugin, side by side.
    Bench {
        /// Moves measured per variant.
        #[arg(long, default_value_t = 20)]
        moves: usize,
        /// Fresh charon and VPN per round; variants alternate ABBA.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        /// The plugin (default: libmip4.so next to this binary). Not with
        /// --handover or --dataplane: their labs load the one beside the
        /// binaries (in the guest too), and a plugin given but not loaded
        /// would mislabel a comparison.
        #[arg(long, conflicts_with_all = ["handover", "dataplane"])]
        plugin: Option<PathBuf>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Instead: issue 14's handover figures, N rounds of stock MOBIKE
        /// (vpn-move) and mip4 (untrusted-move) side by side.
        #[arg(long, value_name = "N")]
        handover: Option<usize>,
        /// Instead: issue 14 §5, mip4d's memory and the tunnel's
        /// throughput against the bare link, N runs of the `dataplane`
        /// scenario.
        #[arg(long, value_name = "N")]
        dataplane: Option<usize>,
        /// With --dataplane: one run in the kernel tier's guest (kernel
        /// ipip against no tunnel). With --handover: all N rounds on one
        /// lab in one boot of the guest, in IKE round trips (--one-lab
        /// there).
        #[arg(long)]
        vm: bool,
        /// With --handover: all N rounds on one lab (fresh MN charon per
        /// variant), each move timed from the MN's new default route; with
        /// --json, the run's lines as `run --json` prints them (what the
        /// guest of --vm prints for the host).
        #[arg(long, requires = "handover", conflicts_with = "vm")]
        one_lab: bool,
        /// With --handover and --vm (or --one-lab on netem): N rounds at
        /// each of these access-link delays (ms each way, taking turns),
        /// and each variant's time fitted as a line in the IKE RTT: round
        /// trips (slope) and fixed cost (intercept). The headline figures
        /// are the first delay's.
        #[arg(
            long,
            requires = "handover",
            value_delimiter = ',',
            value_name = "MS,..."
        )]
        delays: Vec<u64>,
        /// With --handover and --vm (or --one-lab): the charons' file log,
        /// `lab` (ike, cfg and knl at level 2, each line flushed: what the
        /// scenarios read) or `default` (strongSwan's default levels, as a
        /// deployment logs; the bench reads no charon log). The default:
        /// in quiet alternating tier boots the lab's levels cost the MN's
        /// charon 13 ms and the gateway's 4.5 ms of CPU per move.
        #[arg(
            long,
            requires = "handover",
            value_name = "lab|default",
            default_value = "default"
        )]
        charon_log: mip4::lab::charon::CharonLog,
        /// With --handover or --dataplane: also write the markdown section
        /// here (build/bench/NN-name.md for docs/PERFORMANCE.md).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
    },
    /// RFC 4093's baselines against mip4 with MOBIKE (issue 14 §3):
    /// re-establishing the VPN and re-registering on every move, with PSK
    /// and EAP-MSCHAPv2; bytes per data packet, mode mc and RFC 5265.
    BenchBaseline {
        /// Moves measured per variant.
        #[arg(long, default_value_t = 20)]
        moves: usize,
        /// A fresh lab per variant each round; the order changes per round.
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        /// Write the docs/PERFORMANCE.md section here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// In the kernel tier (one boot of the guest): the guest runs
        /// `--timed`, the moves timed on its clock.
        #[arg(long)]
        vm: bool,
        /// Each move by `lab::timed-move` (the new default route on the
        /// MN's rtnetlink -> first reply, the guest's stalls beside it); a
        /// failed check is reported, not fatal. With --json, progress and
        /// the report as JSON lines (what the guest of --vm prints).
        #[arg(long, conflicts_with = "vm")]
        timed: bool,
    },
    /// mip4-ha answering a legitimate node under a flood of forged
    /// registration requests (issue 13 item 9): writes the markdown
    /// section for docs/PERFORMANCE.md.
    Flood {
        /// Floods per reader of UDP 434 (the userspace plane, mip4-ha's own).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Forged requests per flood.
        #[arg(long, default_value_t = 100_000)]
        forged: usize,
        /// A fifth of the flood: copies of the node's last accepted
        /// request (correctly signed, replayed; RFC 5944 §5.7).
        #[arg(long)]
        replayed: bool,
        /// Where the section goes (e.g. build/bench/50-flood.md); stdout
        /// when not given.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// mip4-ha at scale: authenticated registrations for N mobile nodes
    /// against a UDP echo server with the same socket setup (issue 14 §4).
    BenchHa {
        /// Mobile nodes configured and registered.
        #[arg(long, default_value_t = 100_000)]
        mobile_nodes: usize,
        /// Bindings of the first phase (the flatness reference).
        #[arg(long, default_value_t = 1_000)]
        small: usize,
        /// Runs per phase.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Registrations per run.
        #[arg(long, default_value_t = 2_000)]
        batch: usize,
        /// Requests outstanding at once.
        #[arg(long, default_value_t = 32)]
        window: usize,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
        /// Print the docs/PERFORMANCE.md section.
        #[arg(long, conflicts_with = "json")]
        markdown: bool,
    },
}

fn print_timeline_event(e: &Event) {
    let detail = match &e.detail {
        serde_json::Value::Object(m) if m.is_empty() => String::new(),
        d => {
            let s = d.to_string();
            if s.len() > 110 {
                format!("{}...", &s[..110])
            } else {
                s
            }
        }
    };
    println!("{:>9.1} ms  {:<6} {:<16} {}", e.ms, e.host, e.event, detail);
}

fn print_summary(s: &Summary) {
    println!("--- {}: {}", s.scenario, s.verdict);
    let p = &s.platform;
    println!(
        "    platform: kernel {}, ipsec {:?}, tunnels {:?}",
        p.kernel, p.ipsec, p.tunnels
    );
    for (k, v) in &s.figures {
        println!("    {k:<22} {v}");
    }
    for c in s.checks.iter().filter(|c| !c.ok) {
        println!(
            "    FAILED {}::{} expected {} /{}/",
            c.host,
            c.command,
            if c.expect { "YES" } else { "NO" },
            c.pattern
        );
        if let Some(out) = &c.out {
            println!("      got: {out}");
        }
    }
    if let Some(e) = &s.error {
        println!("    error: {e}");
    }
}

fn find(lab_dir: &std::path::Path, name: &str) -> Result<Scenario, String> {
    let all = Scenario::list(lab_dir).map_err(|e| e.to_string())?;
    all.into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no scenario `{name}` (see `mip4-lab list`)"))
}

/// Ctrl-C and SIGTERM: tear down every namespace and process this run
/// made, then exit (Drop does not run when a signal ends the process).
fn install_signal_teardown() {
    std::thread::spawn(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(_) => return,
        };
        rt.block_on(async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            eprintln!("mip4-lab: interrupted, tearing down");
            mip4::lab::netns::teardown_all();
            std::process::exit(130);
        });
    });
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    install_signal_teardown();
    let bin_dir = cli.bin_dir.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
            .unwrap_or_default()
    });
    let opts = |capture: Option<PathBuf>| {
        RunOptions {
            capture,
            charon: mip4::lab::charon::CharonConfig {
                extra_plugins: cli.charon_plugins.clone(),
                extra_settings: String::new(),
                ..Default::default()
            },
            // The mode 'mc' scenarios load the plugin cargo built beside
            // mip4-lab (else the installed one).
            mip4_plugin: Some(mip4::lab::bench::default_plugin()),
            ..Default::default()
        }
        .with_programs_in(&bin_dir)
    };
    match cli.cmd {
        Cmd::Bench {
            handover: Some(runs),
            markdown,
            json,
            vm,
            one_lab,
            delays,
            charon_log,
            ..
        } if vm || one_lab => mip4::lab::bench::tier::cli(
            cli.lab_dir,
            &bin_dir,
            mip4::lab::bench::tier::Rounds {
                per_delay: runs,
                delays,
            },
            vm,
            RunOptions {
                charon: mip4::lab::charon::CharonConfig {
                    log: charon_log,
                    ..opts(None).charon
                },
                ..opts(None)
            },
            markdown,
            json,
        ),
        Cmd::Bench {
            handover: Some(_),
            delays,
            ..
        } if !delays.is_empty() => {
            eprintln!("mip4-lab bench: --delays goes with --handover N --vm (or --one-lab)");
            ExitCode::FAILURE
        }
        Cmd::Bench {
            handover: Some(runs),
            markdown,
            json,
            ..
        } => mip4::lab::bench::handover::cli(cli.lab_dir, runs, opts(None), markdown, json),
        Cmd::Bench {
            vm: true,
            dataplane: None,
            ..
        } => {
            eprintln!("mip4-lab bench: --vm goes with --handover N or --dataplane N");
            ExitCode::FAILURE
        }
        Cmd::Bench {
            dataplane: Some(runs),
            vm,
            markdown,
            json,
            ..
        } => mip4::lab::bench::dataplane::cli(
            cli.lab_dir,
            &bin_dir,
            runs,
            vm,
            opts(None),
            markdown,
            json,
        ),
        Cmd::Bench {
            moves,
            rounds,
            plugin,
            json,
            ..
        } => mip4::lab::bench::cli(
            mip4::lab::bench::BenchOptions {
                lab_dir: cli.lab_dir,
                moves,
                rounds,
                plugin: plugin.unwrap_or_else(mip4::lab::bench::default_plugin),
            },
            json,
        ),
        Cmd::BenchBaseline {
            moves,
            rounds,
            out,
            json,
            vm,
            timed,
        } => {
            let o = mip4::lab::bench_baseline::BaselineOptions {
                lab_dir: cli.lab_dir.clone(),
                moves,
                rounds,
                run: opts(None),
                out,
                command: format!(
                    "mip4-lab bench-baseline --moves {moves} --rounds {rounds}{}",
                    if vm { " --vm" } else { "" }
                ),
                timed,
            };
            if vm {
                mip4::lab::bench_baseline::tier::cli(o, &bin_dir, json)
            } else if timed && json {
                mip4::lab::bench_baseline::tier::guest(&o)
            } else {
                mip4::lab::bench_baseline::cli(o, json)
            }
        }
        Cmd::Flood {
            runs,
            forged,
            replayed,
            out,
        } => flood(&bin_dir, runs, forged, replayed, out.as_deref()),
        Cmd::BenchHa {
            mobile_nodes,
            small,
            runs,
            batch,
            window,
            json,
            markdown,
        } => mip4::lab::bench_ha::cli(
            mip4::lab::bench_ha::HaBenchOptions {
                mobile_nodes,
                small,
                runs,
                batch,
                window,
                ha: bin_dir.join("mip4-ha"),
            },
            json,
            markdown,
        ),
        Cmd::List => match Scenario::list(&cli.lab_dir) {
            Ok(all) => {
                for s in all {
                    let first = s.description.lines().next().unwrap_or_default().to_string();
                    println!("{:<20} {}", s.name, first);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mip4-lab: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            names,
            json,
            capture,
            vm,
            gateway,
        } => {
            if vm {
                return run_vm(
                    &cli.lab_dir,
                    &cli.charon_plugins,
                    &bin_dir,
                    names,
                    gateway,
                    capture,
                    json,
                );
            }
            let libreswan_root = match gateway {
                mip4::lab::vm::Gateway::StrongSwan => None,
                mip4::lab::vm::Gateway::Libreswan => match mip4::lab::pluto::root() {
                    Some(r) => Some(r),
                    None => {
                        eprintln!(
                            "mip4-lab: --gateway libreswan runs in the kernel tier only (add --vm)"
                        );
                        return ExitCode::FAILURE;
                    }
                },
            };
            let mut ok = true;
            for name in names {
                let o = RunOptions {
                    libreswan_root: libreswan_root.clone(),
                    ..opts(capture.clone())
                };
                ok &= run_one(&cli.lab_dir, &name, json, &o) == ExitCode::SUCCESS;
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Tour => {
            let all = match Scenario::list(&cli.lab_dir) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("mip4-lab: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut ok = true;
            for sc in all {
                println!("=== {}\n{}\n", sc.name, sc.description);
                if let Some(d) = &sc.known_defect {
                    // It fails until the defect is fixed: `mip4-lab run`
                    // shows it; the tour shows what works.
                    println!("  skipped, known defect: {d}\n");
                    continue;
                }
                if sc.kernel_only.is_some() && !mip4::lab::platform::Kernel::detect().esp {
                    println!(
                        "  skipped, kernel tier only (mip4-lab run {} --vm)\n",
                        sc.name
                    );
                    continue;
                }
                match scenario::run(&cli.lab_dir, &sc, &opts(None), &mut |_| {}) {
                    Ok(s) => {
                        for l in mip4::lab::narrate::summary(&s) {
                            println!("{l}");
                        }
                        for c in s.checks.iter().filter(|c| !c.ok) {
                            println!("  FAILED check {}::{} /{}/", c.host, c.command, c.pattern);
                        }
                        ok &= s.passed();
                    }
                    Err(e) => {
                        println!("  error: {e}");
                        ok = false;
                    }
                }
                println!();
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// `mip4-lab run NAME` on this machine's kernel.
fn run_one(lab_dir: &std::path::Path, name: &str, json: bool, opts: &RunOptions) -> ExitCode {
    let sc = match find(lab_dir, name) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mip4-lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sink = |e: &Event| {
        if json {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["type"] = "event".into();
            println!("{v}");
        } else {
            print_timeline_event(e);
        }
    };
    match scenario::run(lab_dir, &sc, opts, &mut sink) {
        Ok(s) => {
            if json {
                let mut v = serde_json::to_value(&s).unwrap_or_default();
                v["type"] = "summary".into();
                if let Some(m) = v.as_object_mut() {
                    m.remove("events");
                }
                println!("{v}");
            } else {
                print_summary(&s);
            }
            if s.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("mip4-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `mip4-lab run NAME... --vm`: one guest boot for all of them; the
/// guest's JSON lines printed as they come (or told, without `--json`).
fn run_vm(
    lab_dir: &std::path::Path,
    charon_plugins: &[String],
    bin_dir: &std::path::Path,
    names: Vec<String>,
    gateway: mip4::lab::vm::Gateway,
    capture: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut opts = mip4::lab::vm::VmOptions::new(project, lab_dir, bin_dir, names);
    opts.gateway = gateway;
    opts.capture = capture;
    opts.charon_plugins = charon_plugins.to_vec();
    let mut print = |v: &serde_json::Value| {
        if json {
            println!("{v}");
            return;
        }
        match v["type"].as_str() {
            Some("event") => {
                if let Ok(e) = serde_json::from_value::<Event>(v.clone()) {
                    print_timeline_event(&e);
                }
            }
            Some("summary") => {
                if let Ok(s) = serde_json::from_value::<Summary>(v.clone()) {
                    print_summary(&s);
                }
            }
            _ => println!("vm: {v}"),
        }
    };
    match mip4::lab::vm::run(&opts, &mut print) {
        Ok(outcomes) if outcomes.iter().all(|o| o.passed()) => ExitCode::SUCCESS,
        Ok(outcomes) => {
            for o in outcomes.iter().filter(|o| !o.passed()) {
                eprintln!(
                    "mip4-lab: {} failed in the guest (exit {})",
                    o.scenario, o.status
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mip4-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flood(
    bin_dir: &std::path::Path,
    runs: usize,
    forged: usize,
    replayed: bool,
    out: Option<&std::path::Path>,
) -> ExitCode {
    let mut opts = mip4::lab::flood::FloodOptions::new(&bin_dir.join("mip4-ha"));
    opts.forged = forged;
    opts.replayed = replayed;
    let mut command = format!("mip4-lab flood --runs {runs} --forged {forged}");
    if replayed {
        command += " --replayed";
    }
    if let Some(o) = out {
        command += &format!(" --out {}", o.display());
    }
    let md = match mip4::lab::flood::bench(&opts, runs, &command) {
        Ok(md) => md,
        Err(e) => {
            eprintln!("mip4-lab flood: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match out {
        Some(path) => path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, &md)),
        None => {
            print!("{md}");
            Ok(())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "mip4-lab flood: cannot write {}: {e}",
                out.unwrap_or(std::path::Path::new("-")).display()
            );
            ExitCode::FAILURE
        }
    }
}
