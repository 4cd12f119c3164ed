//! `mip4-lab bench --handover N`: issue 14's handover figures, mip4
//! against stock strongSwan in one invocation.
//!
//! Each round runs two scenarios on a fresh Figure 1 lab, ordered ABBA
//! so that a drift of the machine's load falls on both equally:
//! - stock MOBIKE, `vpn-move`: the MN's charon alone, address change ->
//!   first ping reply through the VPN (`move_to_data_ms`);
//! - mip4, `untrusted-move`: mip4d asks charon to roam through the plugin,
//!   address change -> first ping reply to the home address
//!   (`move_to_ping_ms`), and VPN up -> registered
//!   (`vpn_to_registered_ms`, issue 14 §2) against the round trip to the
//!   home agent through the VPN (`ha_rtt_ms`, the MN's ping to it right
//!   after that registration, on the same path, in the same run).
//!
//! Times are also given in IKE round trips (`ike_rtt_ms`, the MN's ping
//! to the gateway through network B's NAT; `rtt_access_b_ms` for the
//! stock scenario, the same delay line). The ratio is of the medians of
//! one invocation. The section is written as markdown for
//! docs/PERFORMANCE.md (`make bench`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{median, round2, round_order};
use crate::lab::scenario::{run, RunOptions, Scenario, Summary};
use crate::lab::{Error, Result};

/// What one scenario run gave.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub mip4: bool,
    pub round: usize,
    /// Address change -> first ping reply.
    pub move_ms: f64,
    /// The IKE round trip of that run.
    pub ike_rtt_ms: f64,
    /// mip4 only: VPN up -> registered, and the round trip to the HA.
    pub registered_ms: Option<f64>,
    pub ha_rtt_ms: Option<f64>,
}

/// Median and worst of a series.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub worst: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Spread {
        Spread {
            n: v.len(),
            median: round2(median(v)),
            worst: round2(v.iter().copied().fold(f64::NAN, f64::max)),
        }
    }
}

/// The result of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stock_ms: Spread,
    pub mip4_ms: Spread,
    pub stock_rtts: Spread,
    pub mip4_rtts: Spread,
    /// mip4 / stock, of the medians in ms.
    pub ratio: f64,
    pub ike_rtt_ms: Spread,
    pub registered_ms: Spread,
    /// Runs whose VPN up -> registered was within 1 HA RTT + 5 ms.
    pub registered_within_goal: usize,
    /// Scenario runs that failed (left out of the figures).
    pub failed: Vec<String>,
    pub samples: Vec<Sample>,
}

fn figure(s: &Summary, name: &str) -> Result<f64> {
    s.figures
        .get(name)
        .copied()
        .ok_or_else(|| Error::Other(format!("{}: no figure {name}", s.scenario)))
}

fn sample(s: &Summary, mip4: bool, round: usize) -> Result<Sample> {
    Ok(if mip4 {
        Sample {
            mip4,
            round,
            move_ms: figure(s, "move_to_ping_ms")?,
            ike_rtt_ms: figure(s, "ike_rtt_ms")?,
            registered_ms: Some(figure(s, "vpn_to_registered_ms")?),
            ha_rtt_ms: Some(figure(s, "ha_rtt_ms")?),
        }
    } else {
        Sample {
            mip4,
            round,
            move_ms: figure(s, "move_to_data_ms")?,
            ike_rtt_ms: figure(s, "rtt_access_b_ms")?,
            registered_ms: None,
            ha_rtt_ms: None,
        }
    })
}

/// The figures of the samples (pure: tested without a lab).
pub fn report(samples: Vec<Sample>, failed: Vec<String>) -> Report {
    let of = |mip4: bool, f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
        samples
            .iter()
            .filter(|s| s.mip4 == mip4)
            .filter_map(f)
            .collect()
    };
    let stock = of(false, &|s| Some(s.move_ms));
    let mip4 = of(true, &|s| Some(s.move_ms));
    let rtts = |mip4: bool| of(mip4, &|s| Some(s.move_ms / s.ike_rtt_ms));
    let registered = of(true, &|s| s.registered_ms);
    let within = samples
        .iter()
        .filter(|s| matches!((s.registered_ms, s.ha_rtt_ms), (Some(r), Some(h)) if r <= h + 5.0))
        .count();
    let all_rtts: Vec<f64> = samples.iter().map(|s| s.ike_rtt_ms).collect();
    Report {
        stock_ms: Spread::of(&stock),
        mip4_ms: Spread::of(&mip4),
        stock_rtts: Spread::of(&rtts(false)),
        mip4_rtts: Spread::of(&rtts(true)),
        ratio: round2(median(&mip4) / median(&stock)),
        ike_rtt_ms: Spread::of(&all_rtts),
        registered_ms: Spread::of(&registered),
        registered_within_goal: within,
        failed,
        samples,
    }
}

/// Runs `runs` rounds (each one stock and one mip4 scenario).
pub fn measure(
    lab_dir: &Path,
    runs: usize,
    opts: &RunOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let load = |name: &str| Scenario::load(&lab_dir.join("scenarios").join(name));
    let (stock, mip4) = (load("vpn-move")?, load("untrusted-move")?);
    let mut samples = Vec::new();
    let mut failed = Vec::new();
    for round in 0..runs {
        for with in round_order(round) {
            let sc = if with { &mip4 } else { &stock };
            let got = run(lab_dir, sc, opts, &mut |_| {}).and_then(|s| {
                if s.passed() {
                    sample(&s, with, round)
                } else {
                    Err(Error::Other(format!("{}: {:?}", s.verdict, s.error)))
                }
            });
            match got {
                Ok(s) => {
                    progress(&format!(
                        "round {round} {:<14} {:>7.1} ms = {:>5.2} IKE RTTs{}",
                        sc.name,
                        s.move_ms,
                        s.move_ms / s.ike_rtt_ms,
                        s.registered_ms
                            .map(|r| format!(", VPN up -> registered {r:.1} ms"))
                            .unwrap_or_default()
                    ));
                    samples.push(s);
                }
                Err(e) => {
                    progress(&format!("round {round} {}: failed: {e}", sc.name));
                    failed.push(format!("round {round} {}: {e}", sc.name));
                }
            }
        }
    }
    Ok(report(samples, failed))
}

/// The section for docs/PERFORMANCE.md.
pub fn markdown(r: &Report, command: &str) -> String {
    let rtt = r.ike_rtt_ms.median;
    let stand_in_goal = 2.0 * rtt + 20.0;
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## Handover: address change -> first ping through (issue 14 §1, §2)\n"
    );
    let _ = writeln!(m, "Command: `{command}`\n");
    let _ = writeln!(
        m,
        "Stand-in lab (kernel-libipsec), 20 ms access RTT; each round runs stock \
         MOBIKE (`vpn-move`) and mip4 (`untrusted-move`) on a fresh lab, ABBA. \
         Each move is timed from the address change itself (network B's address \
         given to the MN's kernel, after the lab has released network A and brought \
         B's link up) to the first reply to an echo sent after it (stock: the MN \
         pings the correspondent from its TIA; mip4: the correspondent pings the \
         home address). The echoes go 2 ms apart, on schedule through the outage, \
         from the lab's own sender (src/lab/echo.rs; iputils ping sends every \
         10 ms at best while its echoes go unanswered): a figure is late by 1 ms \
         on average, the same in both variants. IKE RTT median {rtt:.1} ms.\n"
    );
    let _ = writeln!(m, "| figure | runs | median | worst |");
    let _ = writeln!(m, "| --- | --- | --- | --- |");
    let row = |m: &mut String, name: &str, s: &Spread, unit: &str| {
        let _ = writeln!(
            m,
            "| {name} | {} | {:.1} {unit} | {:.1} {unit} |",
            s.n, s.median, s.worst
        );
    };
    row(
        &mut m,
        "stock MOBIKE: address change -> first reply",
        &r.stock_ms,
        "ms",
    );
    row(
        &mut m,
        "mip4: address change -> first ping to the home address",
        &r.mip4_ms,
        "ms",
    );
    row(&mut m, "stock MOBIKE, in IKE RTTs", &r.stock_rtts, "RTTs");
    row(&mut m, "mip4, in IKE RTTs", &r.mip4_rtts, "RTTs");
    row(&mut m, "mip4: VPN up -> registered", &r.registered_ms, "ms");
    let _ = writeln!(
        m,
        "\nRatio mip4 / stock (medians, one invocation): **{:.2}** (goal ≤ 0.3). \
         Goal 2 IKE RTTs + 20 ms = {stand_in_goal:.1} ms: median {}. \
         VPN up -> registered within 1 RTT to the HA + 5 ms: {} of {} runs (goal: all).",
        r.ratio,
        if r.mip4_ms.median <= stand_in_goal {
            "met"
        } else {
            "not met"
        },
        r.registered_within_goal,
        r.registered_ms.n,
    );
    if !r.failed.is_empty() {
        let _ = writeln!(
            m,
            "\nRuns that failed and are left out: {}.",
            r.failed.len()
        );
    }
    m
}

/// `mip4-lab bench --handover N [--markdown FILE]`.
pub fn cli(
    lab_dir: PathBuf,
    runs: usize,
    opts: RunOptions,
    markdown_to: Option<PathBuf>,
    json: bool,
) -> std::process::ExitCode {
    eprintln!("mip4-lab bench: handover, {runs} rounds of vpn-move and untrusted-move");
    let r = match measure(&lab_dir, runs, &opts, &mut |l| eprintln!("{l}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mip4-lab bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let command = format!("mip4-lab bench --handover {runs}");
    let text = markdown(&r, &command);
    super::emit("bench", &r, &text, markdown_to.as_deref(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(mip4: bool, move_ms: f64, registered: Option<f64>) -> Sample {
        Sample {
            mip4,
            round: 0,
            move_ms,
            ike_rtt_ms: 20.0,
            registered_ms: registered,
            ha_rtt_ms: registered.map(|_| 20.0),
        }
    }

    #[test]
    fn report_takes_medians_worst_ratio_and_counts_the_goal() {
        let r = report(
            vec![
                s(false, 200.0, None),
                s(true, 60.0, Some(21.0)),
                s(false, 240.0, None),
                s(true, 80.0, Some(30.0)),
            ],
            vec![],
        );
        assert_eq!((r.stock_ms.median, r.stock_ms.worst), (220.0, 240.0));
        assert_eq!((r.mip4_ms.median, r.mip4_ms.worst), (70.0, 80.0));
        assert_eq!(r.mip4_rtts.median, 3.5);
        assert_eq!(r.ratio, round2(70.0 / 220.0));
        assert_eq!((r.registered_within_goal, r.registered_ms.n), (1, 2));
        let md = markdown(&r, "mip4-lab bench --handover 2");
        assert!(
            md.contains("| mip4: VPN up -> registered | 2 | 25.5 ms | 30.0 ms |"),
            "{md}"
        );
        assert!(md.contains("1 of 2 runs"), "{md}");
    }
}
