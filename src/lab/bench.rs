//! `mip4-lab bench`: what the mip4 plugin costs charon's MOBIKE.
//!
//! On one Figure 1 lab, the MN's charon runs alternately without and with
//! the plugin (rounds ordered ABBA..., so a drift of the machine's load
//! falls on both equally), each time bringing the VPN up on external
//! network A and moving the MN A -> B -> A ... (B is behind NAT). With the
//! plugin, a stub mip4d is connected, so the bridge is active and every
//! hook is encoded and sent; the stub checks that each move reached it.
//! Both variants load the same plugin directory (the built plugin laid
//! over charon's, in charon's private mount namespace): they differ only
//! in whether `mip4` is in charon's `load` list.
//!
//! Per move, from the first command of the address change:
//! - `mn_ms`: until the MN's IKE_SA has the new local address (MOBIKE's
//!   path check answered: charon called `update_hosts`, the `ike_update`
//!   hook fired), as `swanctl --list-sas` reports it;
//! - `gw_ms`: until the gateway's IKE_SA has the MN's new (public)
//!   address (UPDATE_SA_ADDRESSES processed, RFC 4555 §3.5).
//!
//! Both include charon's roam delay (kernel-netlink waits 100 ms for
//! address events to settle) and two IKE round trips over 10 ms links;
//! the figures are read as medians, the plugin's cost as their ratio.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

pub mod dataplane;
pub mod handover;
pub mod tier;

use super::charon::{Charon, CharonConfig};
use super::topology::Lab;
use super::{wait, Error, Result, WorkDir};
use crate::bridge::proto::{self, DaemonMsg, Event, PluginMsg};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The lab folder (figure1.toml, hosts/).
    pub lab_dir: PathBuf,
    /// Moves measured per variant.
    pub moves: usize,
    /// Rounds per variant (each a fresh charon and VPN); `moves` is split
    /// over them.
    pub rounds: usize,
    /// The plugin to load as `libstrongswan-mip4.so`.
    pub plugin: PathBuf,
}

/// One measured move.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    pub plugin: bool,
    pub round: usize,
    pub from: String,
    pub to: String,
    pub mn_ms: f64,
    pub gw_ms: f64,
}

/// Medians of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub n: usize,
    pub mn_median_ms: f64,
    pub mn_min_ms: f64,
    pub mn_max_ms: f64,
    pub gw_median_ms: f64,
    pub gw_max_ms: f64,
}

/// The result: both variants and the ratios with/without.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub without: Stats,
    pub with: Stats,
    /// with / without, of the `mn_ms` medians.
    pub mn_ratio: f64,
    /// with / without, of the `gw_ms` medians.
    pub gw_ratio: f64,
    /// Messages the stub mip4d received from the plugin (all rounds).
    pub plugin_messages: u64,
    pub moves: Vec<Move>,
}

/// The median of `v` (mean of the middle two for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn stats(moves: &[Move], plugin: bool) -> Stats {
    let mn: Vec<f64> = moves
        .iter()
        .filter(|m| m.plugin == plugin)
        .map(|m| m.mn_ms)
        .collect();
    let gw: Vec<f64> = moves
        .iter()
        .filter(|m| m.plugin == plugin)
        .map(|m| m.gw_ms)
        .collect();
    Stats {
        n: mn.len(),
        mn_median_ms: median(&mn),
        mn_min_ms: mn.iter().copied().fold(f64::INFINITY, f64::min),
        mn_max_ms: mn.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        gw_median_ms: median(&gw),
        gw_max_ms: gw.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    }
}

/// Variant order of round `r`: ABBA ABBA ... (false = without the plugin).
pub fn round_order(r: usize) -> [bool; 2] {
    if r.is_multiple_of(2) {
        [false, true]
    } else {
        [true, false]
    }
}

/// A stand-in for mip4d on the plugin's socket: answers the hello and
/// counts what the plugin sends, so the bridge does its full work.
struct Mip4dStub {
    path: PathBuf,
    messages: Arc<AtomicU64>,
    ike_updates: Arc<AtomicU64>,
    hellos: Arc<AtomicU64>,
}

impl Mip4dStub {
    fn listen(path: &Path) -> Result<Mip4dStub> {
        let io = |source| Error::Io {
            path: path.display().to_string(),
            source,
        };
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).map_err(io)?;
        // mip4d's socket is root-only; the plugin refuses anything else.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let stub = Mip4dStub {
            path: path.to_path_buf(),
            messages: Arc::default(),
            ike_updates: Arc::default(),
            hellos: Arc::default(),
        };
        let (messages, ike_updates, hellos) = (
            stub.messages.clone(),
            stub.ike_updates.clone(),
            stub.hellos.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let hello = DaemonMsg::Hello {
                    version: proto::VERSION,
                };
                if proto::write_msg(&mut stream, &hello).is_err() {
                    continue;
                }
                let (messages, ike_updates, hellos) =
                    (messages.clone(), ike_updates.clone(), hellos.clone());
                std::thread::spawn(move || {
                    while let Ok(Some(m)) = proto::read_msg::<PluginMsg, _>(&mut stream) {
                        messages.fetch_add(1, Ordering::Relaxed);
                        match m {
                            PluginMsg::Hello { .. } => {
                                hellos.fetch_add(1, Ordering::Relaxed);
                            }
                            PluginMsg::Event {
                                event: Event::IkeUpdate { .. },
                                ..
                            } => {
                                ike_updates.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        Ok(stub)
    }
}

/// The MN's charon for one variant: the same plugin overlay for both,
/// `mip4` loaded (and pointed at the stub) only with the plugin.
fn mn_charon_config(plugin: bool, overlay: &Path, socket: &Path) -> CharonConfig {
    CharonConfig {
        extra_plugins: if plugin {
            vec!["mip4".into()]
        } else {
            Vec::new()
        },
        extra_settings: if plugin {
            format!(
                "    plugins {{\n        mip4 {{\n            socket = {}\n        }}\n    }}\n",
                socket.display()
            )
        } else {
            String::new()
        },
        plugin_overlay: Some(overlay.to_path_buf()),
        ..CharonConfig::default()
    }
}

fn addr_of(lab: &Lab, net: &str) -> Result<String> {
    let a = &lab.spec.access(net)?.addr;
    Ok(a.split('/').next().unwrap_or(a).to_string())
}

const T: Duration = Duration::from_secs(20);

/// Runs the benchmark; `progress` gets one line per step and move.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    super::preflight()?;
    if opts.moves == 0 || opts.rounds == 0 || opts.moves < opts.rounds {
        return Err(Error::Other(
            "--moves must be at least --rounds, both above 0".into(),
        ));
    }
    if !opts.plugin.is_file() {
        return Err(Error::Other(format!(
            "plugin {} not found (cargo build --release --lib)",
            opts.plugin.display()
        )));
    }
    let work = WorkDir::new("bench")?;
    let overlay = work.path().join("plugins");
    std::fs::create_dir_all(&overlay).map_err(|source| Error::Io {
        path: overlay.display().to_string(),
        source,
    })?;
    std::fs::copy(&opts.plugin, overlay.join("libstrongswan-mip4.so")).map_err(|source| {
        Error::Io {
            path: opts.plugin.display().to_string(),
            source,
        }
    })?;
    let stub = Mip4dStub::listen(&work.path().join("mip4.sock"))?;

    let mut lab = Lab::build_file(&opts.lab_dir.join("figure1.toml"))?;
    let gw = Charon::start(
        lab.host("vpngw")?,
        &work.path().join("vpngw"),
        &CharonConfig::default(),
    )?;
    gw.load_all(&opts.lab_dir.join("hosts/vpngw/swanctl.conf"))?;
    let nets = ["ext-a", "ext-b"];
    lab.attach(nets[0])?;

    let mut moves = Vec::new();
    for round in 0..opts.rounds {
        // This round's share of the moves (the first rounds take the rest).
        let n = opts.moves / opts.rounds + usize::from(round < opts.moves % opts.rounds);
        for plugin in round_order(round) {
            let variant = if plugin { "with mip4" } else { "without" };
            let dir = work.path().join(format!(
                "mn-r{round}-{}",
                if plugin { "mip4" } else { "base" }
            ));
            // Every round starts from external network A.
            if lab.attached("mn") != Some(nets[0]) {
                lab.attach(nets[0])?;
            }
            let cfg = mn_charon_config(plugin, &overlay, &stub.path);
            let hellos = stub.hellos.load(Ordering::Relaxed);
            let mn = Charon::start(lab.host("mn")?, &dir, &cfg)?;
            let (loaded, _) = mn.wait_log(0, "loaded plugins:", Duration::from_secs(10))?;
            let has_mip4 = loaded.split_whitespace().any(|p| p == "mip4");
            if has_mip4 != plugin {
                return Err(Error::Other(format!(
                    "charon ({variant}) loaded plugins: {loaded}"
                )));
            }
            if plugin {
                wait::until(Duration::from_secs(10), "the plugin's hello", || {
                    (stub.hellos.load(Ordering::Relaxed) > hellos).then_some(())
                })?;
            }
            mn.load_all(&opts.lab_dir.join("hosts/mn/swanctl.conf"))?;
            mn.initiate("net")?;
            let (sa, _) = mn.wait_sa("vpn", T, "VPN up with a TIA", |sa| {
                !sa.local_vips.is_empty()
            })?;
            let tia = sa.local_vips[0].clone();
            let (gw_sa, _) =
                gw.wait_sa("vpn", T, "gateway SA", |sa| sa.remote_vips.contains(&tia))?;
            let mut gw_remote = gw_sa.remote_host;
            settle(&lab, &tia)?;
            progress(&format!(
                "round {round}, {variant}: VPN up, TIA {tia}, {n} moves"
            ));
            for i in 0..n {
                let from = nets[i % 2];
                let to = nets[(i + 1) % 2];
                let new_addr = addr_of(&lab, to)?;
                let updates = stub.ike_updates.load(Ordering::Relaxed);
                let t0 = Instant::now();
                lab.attach(to)?;
                let (_, t_mn) = mn.wait_sa("vpn", T, "MOBIKE update on the MN", |sa| {
                    sa.local_host == new_addr
                })?;
                let old = gw_remote.clone();
                let (moved, t_gw) = gw.wait_sa("vpn", T, "MOBIKE update on the gateway", |sa| {
                    sa.remote_host != old && sa.remote_vips.contains(&tia)
                })?;
                gw_remote = moved.remote_host;
                if plugin {
                    wait::until(
                        Duration::from_secs(5),
                        "ike_update at the stub mip4d",
                        || (stub.ike_updates.load(Ordering::Relaxed) > updates).then_some(()),
                    )?;
                }
                let m = Move {
                    plugin,
                    round,
                    from: from.into(),
                    to: to.into(),
                    mn_ms: ms(t_mn - t0),
                    gw_ms: ms(t_gw - t0),
                };
                progress(&format!(
                    "  {variant:<9} {} -> {}: MN updated {:>6.1} ms, gateway {:>6.1} ms",
                    m.from, m.to, m.mn_ms, m.gw_ms
                ));
                moves.push(m);
                // The CHILD_SAs follow (UPDATE_SA_ADDRESSES answered) before
                // the next move: one exchange at a time.
                settle(&lab, &tia)?;
            }
            // Leave the gateway clean for the next charon.
            mn.swanctl(&["--terminate", "--ike", "vpn", "--timeout", "5"])?;
            wait::until(T, "the gateway to drop the IKE_SA", || {
                gw.list_sas()
                    .ok()?
                    .iter()
                    .all(|sa| sa.name != "vpn")
                    .then_some(())
            })?;
            drop(mn);
        }
    }
    let without = stats(&moves, false);
    let with = stats(&moves, true);
    Ok(Report {
        mn_ratio: round2(with.mn_median_ms / without.mn_median_ms),
        gw_ratio: round2(with.gw_median_ms / without.gw_median_ms),
        without,
        with,
        plugin_messages: stub.messages.load(Ordering::Relaxed),
        moves,
    })
}

/// How a bench verb ends: its markdown section written to `out` (for
/// docs/PERFORMANCE.md, scripts/bench.sh), then the section or, with
/// `json`, the report as one JSON object on stdout.
pub fn emit<R: Serialize>(
    verb: &str,
    report: &R,
    text: &str,
    out: Option<&Path>,
    json: bool,
) -> std::process::ExitCode {
    if let Some(out) = out {
        let written = out
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(out, text));
        if let Err(e) = written {
            eprintln!("mip4-lab {verb}: {}: {e}", out.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    if json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
    } else {
        print!("{text}");
    }
    std::process::ExitCode::SUCCESS
}

/// `libmip4.so` next to the running binary (cargo puts the cdylib and
/// the binaries in one target directory), else the installed plugin.
pub fn default_plugin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("libmip4.so")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| Path::new(super::charon::PLUGIN_DIR).join("libstrongswan-mip4.so"))
}

/// `mip4-lab bench`: runs, prints the moves as they happen, then the
/// medians and ratios (or one JSON object).
pub fn cli(opts: BenchOptions, json: bool) -> std::process::ExitCode {
    eprintln!(
        "mip4-lab bench: {} moves per variant in {} rounds, plugin {}",
        opts.moves,
        opts.rounds,
        opts.plugin.display()
    );
    match run(&opts, &mut |line| eprintln!("{line}")) {
        Ok(r) => {
            if json {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            } else {
                println!("MOBIKE update time, address change -> IKE_SA updated (medians):");
                for (name, s) in [("without mip4", &r.without), ("with mip4", &r.with)] {
                    println!(
                        "  {name:<13} n={:<3} MN {:>7.1} ms (min {:.1}, max {:.1})   gateway {:>7.1} ms",
                        s.n, s.mn_median_ms, s.mn_min_ms, s.mn_max_ms, s.gw_median_ms
                    );
                }
                println!(
                    "  ratio with/without: MN {:.2}, gateway {:.2} ({} messages to the stub mip4d)",
                    r.mn_ratio, r.gw_ratio, r.plugin_messages
                );
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mip4-lab bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Waits until a ping from the TIA crosses the tunnel to the correspondent.
fn settle(lab: &Lab, tia: &str) -> Result<()> {
    let mn = lab.host("mn")?;
    wait::until(T, "a ping through the tunnel", || {
        mn.ping_once(tia, "10.1.2.2", 300).then_some(())
    })
    .map(|_| ())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn rounds_alternate_abba() {
        let order: Vec<bool> = (0..4).flat_map(round_order).collect();
        assert_eq!(order, [false, true, true, false, false, true, true, false]);
    }

    #[test]
    fn stats_split_by_variant() {
        let mv = |plugin, mn_ms| Move {
            plugin,
            round: 0,
            from: "a".into(),
            to: "b".into(),
            mn_ms,
            gw_ms: mn_ms + 10.0,
        };
        let moves = [mv(false, 100.0), mv(true, 120.0), mv(false, 110.0)];
        let s = stats(&moves, false);
        assert_eq!((s.n, s.mn_median_ms, s.gw_median_ms), (2, 105.0, 115.0));
        assert_eq!((s.mn_min_ms, s.mn_max_ms), (100.0, 110.0));
        assert_eq!(stats(&moves, true).mn_median_ms, 120.0);
    }
}
