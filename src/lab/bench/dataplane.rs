//! `mip4-lab bench --dataplane N [--vm]`: issue 14 §5, mip4d's footprint
//! and the tunnel's throughput against the bare link, from the
//! `dataplane` scenario (lab/scenarios/dataplane).
//!
//! On the host lab the scenario runs N times, each on a fresh lab with a
//! fresh mip4d: its memory idle (registered, no traffic), after a move
//! (with the peak, which covers the move) and after the bulk transfers;
//! and 20 pairs of bulk TCP transfers per run, to the home address
//! (mip4-ha's and mip4d's userspace IP-in-IP tunnel) and to the care-of
//! address over the same links, ABBA. With `--vm` the scenario runs in
//! the kernel tier's guest, one boot (kernel ipip against no tunnel).
//! Each ratio is one pair's, tunnel over bare, both measured back to back.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::handover::Spread;
use crate::lab::scenario::{run, RunOptions, Scenario, Summary};
use crate::lab::{Error, Result};

/// One pair of bulk transfers.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Pair {
    pub tunnel_mbit_s: f64,
    pub bare_mbit_s: f64,
}

/// The result of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where it ran: "host" (userspace tunnels) or "vm" (kernel ipip).
    pub tier: String,
    /// What the daemons ran as tunnel backend (read back from them).
    pub tunnels: String,
    /// The cargo profile whose binaries ran (the name of their
    /// directory: `dist` is what the packages ship) and mip4d's size.
    pub profile: String,
    pub mip4d_bytes: Option<u64>,
    pub runs: usize,
    /// Per memory figure (`idle_rss_kib` ...): median and worst (largest).
    pub memory: Vec<(String, Spread)>,
    pub tunnel_mbit_s: Spread,
    pub bare_mbit_s: Spread,
    /// Per pair tunnel / bare: median, and the worst (lowest).
    pub ratio: Spread,
    pub failed: Vec<String>,
    pub pairs: Vec<Pair>,
}

/// The memory figures reported, in this order, with their labels.
const MEMORY: [(&str, &str); 9] = [
    ("idle_rss_kib", "idle: VmRSS"),
    (
        "idle_private_dirty_kib",
        "idle: Private_Dirty (written by itself: heap, stack, relocated data)",
    ),
    (
        "idle_file_kib",
        "idle: RssFile (the binary's and libraries' clean pages)",
    ),
    ("idle_binary_kib", "idle: the binary's clean pages"),
    ("idle_libraries_kib", "idle: shared libraries' clean pages"),
    ("moved_rss_kib", "after a move: VmRSS"),
    ("moved_hwm_kib", "peak since start: VmHWM"),
    ("moved_private_dirty_kib", "after a move: Private_Dirty"),
    ("bulk_rss_kib", "after 40 bulk transfers: VmRSS"),
];

/// The pairs of a run's `throughput_pair` events (`detail` objects).
fn pairs_of<'a>(details: impl Iterator<Item = &'a serde_json::Value>) -> Vec<Pair> {
    details
        .filter_map(|d| {
            Some(Pair {
                tunnel_mbit_s: d["tunnel_mbit_s"].as_f64()?,
                bare_mbit_s: d["bare_mbit_s"].as_f64()?,
            })
        })
        .collect()
}

fn pairs_of_summary(s: &Summary) -> Vec<Pair> {
    pairs_of(
        s.events
            .iter()
            .filter(|e| e.event == "throughput_pair")
            .map(|e| &e.detail),
    )
}

/// The figures of the runs (pure: tested without a lab).
pub fn report(
    tier: &str,
    tunnels: String,
    runs: &[std::collections::BTreeMap<String, f64>],
    pairs: Vec<Pair>,
    failed: Vec<String>,
) -> Report {
    let memory = MEMORY
        .iter()
        .map(|&(k, _)| {
            let v: Vec<f64> = runs.iter().filter_map(|f| f.get(k).copied()).collect();
            (k.to_string(), Spread::of(&v))
        })
        .collect();
    let col = |f: &dyn Fn(&Pair) -> f64| pairs.iter().map(f).collect::<Vec<f64>>();
    let ratios = col(&|p| p.tunnel_mbit_s / p.bare_mbit_s);
    let mut ratio = lowest(&ratios);
    ratio.median = round3(super::median(&ratios));
    ratio.worst = round3(ratio.worst);
    Report {
        tier: tier.to_string(),
        tunnels,
        profile: String::new(),
        mip4d_bytes: None,
        runs: runs.len(),
        memory,
        tunnel_mbit_s: lowest(&col(&|p| p.tunnel_mbit_s)),
        bare_mbit_s: lowest(&col(&|p| p.bare_mbit_s)),
        ratio,
        failed,
        pairs,
    }
}

/// Median and worst of a rate, where the worst is the lowest.
fn lowest(v: &[f64]) -> Spread {
    Spread {
        worst: v.iter().copied().fold(f64::NAN, f64::min),
        ..Spread::of(v)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn tunnels_of(s: &Summary) -> String {
    serde_json::to_string(&s.platform.tunnels).unwrap_or_default()
}

/// Runs the scenario `runs` times on the host lab.
pub fn measure(
    lab_dir: &Path,
    runs: usize,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let sc = Scenario::load(&lab_dir.join("scenarios").join("dataplane"))?;
    let (mut figures, mut pairs, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut tunnels = String::new();
    for i in 0..runs {
        match run(lab_dir, &sc, opts, &mut |_| {}) {
            Ok(s) if s.passed() => {
                let f = &s.figures;
                let get = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
                progress(&format!(
                    "run {i}: idle VmRSS {} KiB, Private_Dirty {} KiB; tunnel {:.0} / bare {:.0} Mbit/s, ratio {:.3}",
                    get("idle_rss_kib"),
                    get("idle_private_dirty_kib"),
                    get("bulk_tunnel_mbit_s"),
                    get("bulk_bare_mbit_s"),
                    get("bulk_ratio"),
                ));
                tunnels = tunnels_of(&s);
                pairs.extend(pairs_of_summary(&s));
                figures.push(s.figures);
            }
            Ok(s) => {
                progress(&format!("run {i}: {} {:?}", s.verdict, s.error));
                failed.push(format!("run {i}: {} {:?}", s.verdict, s.error));
            }
            Err(e) => {
                progress(&format!("run {i}: failed: {e}"));
                failed.push(format!("run {i}: {e}"));
            }
        }
    }
    Ok(report("host", tunnels, &figures, pairs, failed))
}

/// Runs the scenario once in the kernel tier's guest.
pub fn measure_vm(
    lab_dir: &Path,
    bin_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let opts = crate::lab::vm::VmOptions::new(project, lab_dir, bin_dir, vec!["dataplane".into()]);
    let mut details = Vec::new();
    let outcomes = crate::lab::vm::run(&opts, &mut |v| {
        if v["event"] == "throughput_pair" {
            details.push(v["detail"].clone());
        } else if v["type"] == "vm" {
            progress(&format!("vm: {v}"));
        }
    })?;
    let o = outcomes
        .into_iter()
        .next()
        .ok_or_else(|| Error::Other("the guest ran no scenario".into()))?;
    let summary: Summary = o
        .summary
        .clone()
        .and_then(|s| serde_json::from_value(s).ok())
        .ok_or_else(|| Error::Other("the guest printed no summary".into()))?;
    if !o.passed() || !summary.passed() {
        return Err(Error::Other(format!(
            "dataplane failed in the guest (exit {}): {:?}",
            o.status, summary.error
        )));
    }
    Ok(report(
        "vm",
        tunnels_of(&summary),
        std::slice::from_ref(&summary.figures),
        pairs_of(details.iter()),
        Vec::new(),
    ))
}

/// The section for docs/PERFORMANCE.md.
pub fn markdown(r: &Report, command: &str) -> String {
    let mut m = String::new();
    let vm = r.tier == "vm";
    let _ = writeln!(
        m,
        "## {} (issue 14 §5)\n",
        if vm {
            "Kernel tier: kernel ipip against no tunnel"
        } else {
            "mip4d's footprint and the userspace tunnel's throughput"
        }
    );
    let _ = writeln!(m, "Command: `{command}`\n");
    let _ = writeln!(
        m,
        "The `dataplane` scenario (lab/scenarios/dataplane: the intranet part of \
         Figure 1, access links without the delay line), {} run{}{} ({}; {}tunnel \
         backends {}). Bulk TCP from the home agent's host to the MN, pairs of \
         250 ms transfers alternating ABBA: to the home address through the \
         IP-in-IP tunnel (and the reverse tunnel back) and to the care-of \
         address over the same links without it; the rate is the receiver's. \
         Memory of the MN's mip4d from /proc/PID/status and smaps_rollup, KiB.\n",
        r.runs,
        if r.runs == 1 { "" } else { "s" },
        match r.failed.len() {
            0 => String::new(),
            n => format!(" ({n} more failed and are left out)"),
        },
        if vm {
            "one boot of the guest, Debian's kernel under TCG: absolute rates are the emulator's, the ratio is the figure"
        } else {
            "a fresh lab and mip4d per run"
        },
        match (r.profile.as_str(), r.mip4d_bytes) {
            ("", _) => String::new(),
            (p, Some(b)) => format!("binaries of cargo profile `{p}`, mip4d {b} bytes; "),
            (p, None) => format!("binaries of cargo profile `{p}`; "),
        },
        r.tunnels,
    );
    let _ = writeln!(
        m,
        "| figure | samples | median | worst (rates: lowest; memory: largest) |"
    );
    let _ = writeln!(m, "| --- | --- | --- | --- |");
    let _ = writeln!(
        m,
        "| tunnel / bare, per pair | {} | **{:.3}** | {:.3} |",
        r.ratio.n, r.ratio.median, r.ratio.worst
    );
    for (name, s) in [
        ("through the tunnel, Mbit/s", &r.tunnel_mbit_s),
        ("bare link, Mbit/s", &r.bare_mbit_s),
    ] {
        let _ = writeln!(m, "| {name} | {} | {:.0} | {:.0} |", s.n, s.median, s.worst);
    }
    for ((_, s), (_, label)) in r.memory.iter().zip(MEMORY) {
        if s.n == 0 {
            continue;
        }
        let _ = writeln!(
            m,
            "| mip4d {label}, KiB | {} | {:.0} | {:.0} |",
            s.n, s.median, s.worst
        );
    }
    if let Some((_, idle)) = r.memory.first().filter(|(_, s)| !vm && s.n > 0) {
        let verdict = ["not met", "met"][usize::from(idle.worst <= 4096.0)];
        let _ = writeln!(
            m,
            "\nGoal: idle RSS ≤ 4 MiB (4096 KiB): VmRSS median {:.0} KiB, worst {:.0}: {verdict}.",
            idle.median, idle.worst
        );
        let median = |k: &str| {
            r.memory
                .iter()
                .find(|(n, s)| n == k && s.n > 0)
                .map(|(_, s)| s.median)
        };
        if let (Some(b), Some(l), Some(d)) = (
            median("idle_binary_kib"),
            median("idle_libraries_kib"),
            median("idle_private_dirty_kib"),
        ) {
            let _ = writeln!(
                m,
                "Idle, medians: the binary's pages {b:.0} KiB, shared libraries' {l:.0} KiB \
                 (libc, ld.so, libgcc_s: the same page-cache pages as every process \
                 that maps them), written by mip4d itself {d:.0} KiB. Clean file pages \
                 are those run since mip4d released start-up's before its loop \
                 (src/sys/resident.rs); VmHWM keeps start-up's peak."
            );
        }
    }
    m
}

/// `mip4-lab bench --dataplane N [--vm] [--markdown FILE]`.
pub fn cli(
    lab_dir: PathBuf,
    bin_dir: &Path,
    runs: usize,
    vm: bool,
    opts: RunOptions,
    markdown_to: Option<PathBuf>,
    json: bool,
) -> std::process::ExitCode {
    let mut progress = |l: &str| eprintln!("{l}");
    // The binaries' directory names their cargo profile (target/PROFILE).
    let profile = bin_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (r, command) = if vm {
        eprintln!("mip4-lab bench: dataplane, one run in the kernel tier");
        (
            measure_vm(&lab_dir, bin_dir, &mut progress),
            "mip4-lab bench --dataplane 1 --vm".to_string(),
        )
    } else {
        eprintln!("mip4-lab bench: dataplane, {runs} runs");
        (
            measure(&lab_dir, runs, &opts, &mut progress),
            format!("mip4-lab --bin-dir target/{profile} bench --dataplane {runs}"),
        )
    };
    let r = match r {
        // The guest runs its own copies: only the host's are named.
        Ok(r) if !r.pairs.is_empty() && vm => r,
        Ok(r) if !r.pairs.is_empty() => Report {
            profile,
            mip4d_bytes: std::fs::metadata(bin_dir.join("mip4d"))
                .map(|m| m.len())
                .ok(),
            ..r
        },
        Ok(_) => {
            eprintln!("mip4-lab bench: no run of dataplane passed");
            return std::process::ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("mip4-lab bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let text = markdown(&r, &command);
    super::emit("bench", &r, &text, markdown_to.as_deref(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_takes_per_pair_ratios_and_memory_spreads() {
        let runs = vec![
            [("idle_rss_kib".to_string(), 3000.0)].into_iter().collect(),
            [("idle_rss_kib".to_string(), 5000.0)].into_iter().collect(),
        ];
        let pairs = vec![
            Pair {
                tunnel_mbit_s: 50.0,
                bare_mbit_s: 100.0,
            },
            Pair {
                tunnel_mbit_s: 10.0,
                bare_mbit_s: 100.0,
            },
            Pair {
                tunnel_mbit_s: 90.0,
                bare_mbit_s: 100.0,
            },
        ];
        let r = report("host", "{}".into(), &runs, pairs, vec![]);
        assert_eq!((r.ratio.n, r.ratio.median, r.ratio.worst), (3, 0.5, 0.1));
        assert_eq!(r.memory[0].1.median, 4000.0);
        assert_eq!(r.memory[0].1.worst, 5000.0);
        let md = markdown(&r, "mip4-lab bench --dataplane 2");
        assert!(
            md.contains("| tunnel / bare, per pair | 3 | **0.500** | 0.100 |"),
            "{md}"
        );
        assert!(
            md.contains("VmRSS median 4000 KiB, worst 5000: not met"),
            "{md}"
        );
    }

    #[test]
    fn pairs_are_read_from_event_details() {
        let d = [
            serde_json::json!({"tunnel_mbit_s": 1.0, "bare_mbit_s": 2.0}),
            serde_json::json!({"other": 1}),
        ];
        assert_eq!(
            pairs_of(d.iter()),
            vec![Pair {
                tunnel_mbit_s: 1.0,
                bare_mbit_s: 2.0
            }]
        );
    }
}
