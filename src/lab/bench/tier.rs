//! `mip4-lab bench --handover N --vm`: issue 14 §1's kernel-tier figure,
//! mip4 against stock strongSwan's MOBIKE in one run, in IKE round trips.
//!
//! A scenario run per round (what `--handover N` does on the host lab)
//! takes minutes under the tier's emulation, so here one lab serves all
//! rounds (`--one-lab`; `--vm` runs that in one boot of the guest). Each
//! round runs both variants, ordered ABBA, each with a fresh MN charon and
//! VPN on external network A, one pair of moves to warm up (not counted,
//! their median reported apart), then two timed moves, A -> B (behind NAT)
//! and back:
//! - stock: the MN's charon alone, the MN pinging the correspondent from
//!   its TIA (as `vpn-move`);
//! - mip4: mip4d (registered through the VPN) and the MN's charon with the
//!   plugin, the MN pinging the correspondent from its home address: the
//!   same direction as stock's, the main figure; beside it, in the same
//!   moves, the correspondent pinging the home address (as
//!   `untrusted-move`). Traffic the correspondent starts needs 1.5 IKE
//!   RTTs at least (the gateway learns the new address half a round trip
//!   after the update leaves, then its packet goes down and the reply up);
//!   traffic the MN starts needs 1 if the MN sends on the new path once
//!   its update has left.
//!
//! Each move is `lab::timed-move` (src/lab/timing.rs): from the MN's new
//! default route, as its own rtnetlink reported it, to the first reply to
//! an echo sent after it (2 ms apart, sent by the lab on the MN's
//! machine), on the guest's clock; then the IKE
//! round trip on the new network (the MN's ping to the gateway). The guest
//! stands still at times (TCG on a shared machine): a real-time heartbeat
//! thread records each stall, and every move reports the stall inside its
//! interval. Nothing is discarded: the figures are given as measured and,
//! beside them, less the stalls.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use serde::Serialize;

use super::handover::Spread;
use super::{median, round2, round_order};
use crate::lab::charon::CharonLog;
use crate::lab::scenario::{run, Event, Line as ScriptLine, RunOptions, Scenario, Summary};
use crate::lab::xfrm_cost::Cost;
use crate::lab::{Error, Result};

/// The two networks of a round's moves, in order (B is behind NAT).
const MOVES: [(&str, &str); 2] = [("ext-b", "b"), ("ext-a", "a")];
/// The guest's vCPUs unless `MIP4_VM_SMP` says: two, run as two machines
/// (src/lab/machines.rs), as a laptop and its gateway are; measured
/// against one in lab/README.md (the kernel tier).
const VCPUS: u32 = 2;
/// What the issue allows on the kernel tier: 1 IKE RTT + this.
const GOAL_EXTRA_MS: f64 = 20.0;

/// One timed move, timed by one direction's echoes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Sample {
    pub mip4: bool,
    /// Timed by the correspondent's echoes to the home address (mip4's
    /// second figure of the same move), not by the MN's.
    pub from_cn: bool,
    pub round: usize,
    /// The network moved to.
    pub to: String,
    /// Address change -> first reply, ms.
    pub ms: f64,
    /// How long the guest stood still within that interval.
    pub stall_ms: f64,
    /// The IKE round trip measured right after, on the new network.
    pub ike_rtt_ms: f64,
    /// The access links' delay (each way) in its round, with `--delays`.
    pub delay_ms: Option<u64>,
    /// CPU time each process spent inside the timed interval, from the
    /// new default route to the reply (`lab::timed-move`), ms: `mip4d`,
    /// `plugin` (the plugin's own threads in charon: the bridge and its
    /// reader; its short jobs on charon's threads count as charon's),
    /// `charon_mn` and `charon_vpngw` (less the plugin's threads).
    /// The move's, so on its main sample only (empty with `from_cn`).
    pub cpu_ms: BTreeMap<String, f64>,
    /// The same over the whole move: from before the lab's command (the
    /// old address going) to half a second after the reply (work left
    /// until the data flowed included).
    pub settled_cpu_ms: BTreeMap<String, f64>,
}

impl Sample {
    pub fn rtts(&self) -> f64 {
        self.ms / self.ike_rtt_ms
    }
    pub fn unstalled_ms(&self) -> f64 {
        self.ms - self.stall_ms
    }
}

/// One variant's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Variant {
    pub ms: Spread,
    pub rtts: Spread,
    /// Less the stalls inside each interval.
    pub unstalled_ms: Spread,
    pub unstalled_rtts: Spread,
    /// Moves with any stall inside.
    pub stalled: usize,
    /// Moves within 1 IKE RTT (that round's) + 20 ms.
    pub within_goal: usize,
    /// Medians over every move (all delays) of [`Sample::cpu_ms`] ...
    pub cpu_ms: BTreeMap<String, f64>,
    /// ... and of [`Sample::settled_cpu_ms`].
    pub settled_cpu_ms: BTreeMap<String, f64>,
}

/// The emulation's factor for charon's kind of kernel work at a move
/// (src/lab/xfrm_cost.rs: XFRM policy add/delete cycles, the same code
/// on the host and in the guest), and the fixed costs read through it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Emulation {
    pub host: Cost,
    /// The guest's cycle, CPU and wall µs (its clock).
    pub guest_cycle_cpu_us: f64,
    pub guest_cycle_wall_us: f64,
    /// Guest CPU time / host CPU time per cycle.
    pub factor: f64,
    /// With `--delays`: each variant's fitted fixed cost / factor, ms.
    pub stock_native_fixed_ms: Option<f64>,
    pub mip4_native_fixed_ms: Option<f64>,
}

/// The guest's XFRM figures' prefix (`lab::xfrm-cost ... xfrm_guest`).
const XFRM_GUEST: &str = "xfrm_guest";
/// Cycles per run and runs (the least run counts), in the guest and on
/// the host alike.
pub const XFRM_CYCLES: usize = 200;
pub const XFRM_RUNS: usize = 9;

/// The result of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// "vm" (the kernel tier's guest) or "host".
    pub tier: String,
    /// What ran: kernel, IPsec backends, tunnel backends.
    pub platform: serde_json::Value,
    pub rounds: usize,
    pub stock: Variant,
    /// Timed by the MN's echoes, as stock's.
    pub mip4: Variant,
    /// The same moves timed by the correspondent's echoes to the home
    /// address.
    pub mip4_from_cn: Variant,
    /// mip4 / stock, of the medians in ms (as measured; less the stalls).
    pub ratio: f64,
    pub ratio_unstalled: f64,
    /// mip4_from_cn / stock, the same way.
    pub ratio_from_cn: f64,
    pub ratio_from_cn_unstalled: f64,
    pub ike_rtt_ms: Spread,
    /// Whether the heartbeat and route watch ran real-time.
    pub realtime: bool,
    /// Of the moves' time, the share the guest stood still (heartbeat).
    pub stalled_share: f64,
    /// The host's view (`--vm`): QEMU's vCPU thread over the whole boot.
    pub host: Option<HostView>,
    /// With `--delays`: each variant's time against the IKE RTT.
    pub fit: Option<Fit>,
    /// With the host's XFRM cycles and the guest's (`--vm`).
    pub emulation: Option<Emulation>,
    /// Why the run stopped early, if it did (the moves before it count).
    pub error: Option<String>,
    /// The median of each round's first pair of moves after a fresh MN
    /// charon (and mip4d), not counted above (script()), ms.
    pub cold_stock_ms: Option<f64>,
    pub cold_mip4_ms: Option<f64>,
    /// The charons' file log (`--charon-log`: "lab" or "default").
    pub charon_log: String,
    /// How far apart the timed moves' echoes went, ms (the
    /// `timed_move` events': a move is late by up to that).
    pub echo_ms: Option<u64>,
    pub samples: Vec<Sample>,
}

/// A variant's move time as a line in the IKE RTT, fitted (least squares)
/// through its median per access delay: the slope is the round trips on
/// the critical path, the intercept what a move costs beside them (under
/// emulation: compute; ROAM_DELAY for stock).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Line {
    pub rtts: f64,
    pub fixed_ms: f64,
    /// The same through the medians less the stalls.
    pub unstalled_rtts: f64,
    pub unstalled_fixed_ms: f64,
    pub points: Vec<Point>,
}

/// A variant's moves at one access delay.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Each way, as `lab::delay` set it.
    pub delay_ms: u64,
    /// Medians.
    pub ike_rtt_ms: f64,
    pub ms: f64,
    pub unstalled_ms: f64,
    pub moves: usize,
}

/// Both variants' lines, from the same rounds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Fit {
    pub stock: Line,
    pub mip4: Line,
    /// mip4's moves timed by the correspondent's echoes (none in a run
    /// without them).
    pub mip4_from_cn: Option<Line>,
}

/// Least squares through (x, y); None with fewer than two distinct x.
fn least_squares(p: &[(f64, f64)]) -> Option<(f64, f64)> {
    let n = p.len() as f64;
    let (mx, my) = (
        p.iter().map(|q| q.0).sum::<f64>() / n,
        p.iter().map(|q| q.1).sum::<f64>() / n,
    );
    let sxx: f64 = p.iter().map(|q| (q.0 - mx).powi(2)).sum();
    let sxy: f64 = p.iter().map(|q| (q.0 - mx) * (q.1 - my)).sum();
    (sxx > 1e-9).then(|| (sxy / sxx, my - sxy / sxx * mx))
}

fn line(samples: &[Sample], mip4: bool, from_cn: bool, delays: &[u64]) -> Option<Line> {
    let points: Vec<Point> = delays
        .iter()
        .filter_map(|&d| {
            let at: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.mip4 == mip4 && s.from_cn == from_cn && s.delay_ms == Some(d))
                .collect();
            let med = |f: fn(&Sample) -> f64| {
                round2(median(&at.iter().map(|s| f(s)).collect::<Vec<_>>()))
            };
            (!at.is_empty()).then(|| Point {
                delay_ms: d,
                ike_rtt_ms: med(|s| s.ike_rtt_ms),
                ms: med(|s| s.ms),
                unstalled_ms: med(Sample::unstalled_ms),
                moves: at.len(),
            })
        })
        .collect();
    let fit = |f: fn(&Point) -> f64| {
        least_squares(
            &points
                .iter()
                .map(|p| (p.ike_rtt_ms, f(p)))
                .collect::<Vec<_>>(),
        )
    };
    let (slope, intercept) = fit(|p| p.ms)?;
    let (u_slope, u_intercept) = fit(|p| p.unstalled_ms)?;
    Some(Line {
        rtts: round2(slope),
        fixed_ms: round2(intercept),
        unstalled_rtts: round2(u_slope),
        unstalled_fixed_ms: round2(u_intercept),
        points,
    })
}

/// The host's view of the guest's vCPU thread over the boot (schedstat).
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct HostView {
    pub boot_to_off_s: f64,
    pub vcpu_ran_s: f64,
    /// Runnable but waiting for a host CPU: the guest stood still.
    pub vcpu_waited_s: f64,
    /// The guest's vCPUs (the two figures above are their threads' sum).
    pub vcpus: u32,
    /// Whether the guest's lab ran as two machines (src/lab/machines.rs).
    pub pinned: bool,
    /// QEMU's CPU model for the guest (`-cpu`, src/lab/vm.rs).
    pub cpu: String,
}

/// The guest's last line for the host (`vm::run` reads it as the
/// outcome's summary), or the error on stderr.
pub fn guest_summary<T: Serialize>(r: Result<T>, prog: &str) -> std::process::ExitCode {
    match r {
        Ok(r) => {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["type"] = "summary".into();
            println!("{v}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{prog}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl HostView {
    /// What the host saw of the guest, from the tier's `powered_off`
    /// line (the other `vm` lines carry nothing of it).
    pub fn from_vm_line(v: &serde_json::Value) -> Option<Self> {
        if v["event"] != "powered_off" {
            return None;
        }
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        Some(Self {
            boot_to_off_s: f("boot_to_off_s"),
            vcpu_ran_s: f("vcpu_ran_s"),
            vcpu_waited_s: f("vcpu_waited_s"),
            vcpus: v["vcpus"].as_u64().map_or(1, |n| n as u32),
            pinned: v["pinned"] == true,
            cpu: v["cpu"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// The sections' sentence on the guest's CPUs and what ran where.
    pub fn machines(&self) -> String {
        match (self.vcpus, self.pinned) {
            (0 | 1, _) => "The guest has one vCPU: every lab host takes turns on it, so \
                 the gateway's handling of the MN's update queues behind the MN's own \
                 move work."
                .into(),
            (n, true) => format!(
                "The guest has {n} vCPUs (multi-threaded TCG, one host thread each) and \
                 runs as two machines, as a laptop and its gateway do: the lab pins \
                 (sched_setaffinity) the MN's processes (its charon, mip4d, its echoes) \
                 and the MN's route watch to vCPU {}, and the rest (the gateway's \
                 charon, the HA, the correspondent and its echoes, the NATs' and the \
                 lab's own work) to vCPU {}, so the gateway's work on an update does \
                 not wait for the MN's. The stalls count the time either vCPU stood \
                 still (one heartbeat thread on each).",
                crate::lab::machines::MN_CPU,
                crate::lab::machines::REST_CPU
            ),
            (n, false) => format!(
                "The guest has {n} vCPUs (multi-threaded TCG, one host thread each), \
                 nothing pinned: the guest's scheduler places the lab hosts' processes, \
                 so the MN's work spreads over both vCPUs as a laptop's over its cores, \
                 and the gateway's takes a vCPU the MN's work may want when both work at \
                 once, which a laptop and its gateway never share (`MIP4_VM_PIN=1` pins \
                 them as two one-core machines instead; in quiet pairs of boots the \
                 shared vCPUs were as fast or faster, lab/README.md)."
            ),
        }
    }

    /// The sections' sentence on it.
    pub fn sentence(&self) -> String {
        let n = self.vcpus.max(1);
        let threads = match n {
            1 => "QEMU's vCPU thread ran".to_string(),
            n => format!("QEMU's {n} vCPU threads ran together"),
        };
        let share = 100.0 * self.vcpu_waited_s / (self.boot_to_off_s * f64::from(n));
        let share = match n {
            1 => format!("{share:.0}%"),
            n => format!("{share:.0}% of {n} x the boot"),
        };
        let cpu = match self.cpu.as_str() {
            "" => String::new(),
            m => format!(" QEMU's CPU model for the guest: `{m}`."),
        };
        format!(
            " The host's own count, over the whole boot ({:.0} s, idle time \
             included): {threads} {:.0} s on a host CPU and waited {:.0} s \
             ({share}) runnable for one (schedstat), while the guest's clock \
             ran on.{cpu}",
            self.boot_to_off_s, self.vcpu_ran_s, self.vcpu_waited_s,
        )
    }
}

/// The correspondent and the MN's home address (lab/figure1.toml).
const CN: &str = "10.1.2.2";
const HOA: &str = "10.1.100.5";
/// The suffix of a mip4 move's figures timed by the correspondent's
/// echoes (`lab::timed-move`'s second ping).
const FROM_CN: &str = "_cn";

/// The figure names of round `round`'s move to `net` (`b` or `a`).
/// The prefix of a round's first pair of moves, not counted (script()).
const COLD: &str = "cold_";

/// The median of the rounds' first (cold) moves of one variant at the
/// first access delay (the headline's), ms; None without such moves.
fn cold_median(
    figures: &std::collections::BTreeMap<String, f64>,
    mip4: bool,
    rounds: usize,
    delays: &[u64],
) -> Option<f64> {
    let v: Vec<f64> = (0..rounds)
        .filter(|&r| delay_of(r, delays) == delays.first().copied())
        .flat_map(|r| MOVES.map(|(_, net)| format!("{COLD}{}", figure_name(mip4, r, net))))
        .filter_map(|name| figures.get(&name).copied())
        .collect();
    (!v.is_empty()).then(|| round2(median(&v)))
}

fn figure_name(mip4: bool, round: usize, net: &str) -> String {
    format!("{}_r{round}_{net}", if mip4 { "mip4" } else { "stock" })
}

/// The lines one lab runs for `rounds` rounds (a scenario's `pre.dat`,
/// written here: a loop over variants that scenario files do not have).
pub fn script(rounds: usize, delays: &[u64]) -> Vec<ScriptLine> {
    let mut text = String::from(
        "lab::secret KEY 16\n\
         lab::render iha mip4-ha.conf HA_CONF\n\
         lab::render mn mip4d-mc.conf MN_CONF\n\
         lab::spawn iha mip4-ha ${MIP4_HA} --config ${HA_CONF}\n\
         lab::charon vpngw\n\
         lab::attach ext-a\n",
    );
    // Before any move, with only the gateway's charon up: the guest's
    // side of the emulation's factor.
    text.push_str(&format!(
        "lab::xfrm-cost {XFRM_CYCLES} {XFRM_RUNS} {XFRM_GUEST}\n"
    ));
    for round in 0..rounds {
        if let Some(d) = delay_of(round, delays) {
            text.push_str(&format!("lab::delay {d}\n"));
        }
        for mip4 in round_order(round) {
            let (host, src, dst, beside) = if mip4 {
                text.push_str(&format!(
                    "lab::spawn mn mip4d ${{MIP4D}} --config ${{MN_CONF}}\n\
                     lab::subscribe mn/mip4d ${{WORK_DIR}}/mn/mip4d.sock\n\
                     lab::charon mn mip4=${{WORK_DIR}}/mn/plugin.sock\n\
                     lab::wait-event mn/mip4d plugin_connected plugin_connected_{round} 20\n\
                     lab::vpn-up mn vpn net TIA\n\
                     lab::wait-event mn/mip4d registration_accepted care_of=${{TIA}} registered_{round} 20\n"
                ));
                // The MN's echoes from its home address (main), and the
                // correspondent's to it, over the same moves.
                ("mn", HOA, CN, true)
            } else {
                text.push_str("lab::charon mn\nlab::vpn-up mn vpn net TIA\n");
                ("mn", "${TIA}", CN, false)
            };
            // One pair of moves first, timed but not counted (`cold_`):
            // the first move after charon and mip4d start runs their code
            // for the first time, which the emulation translates first
            // (w14-natmove: the first move into B 143.6 ms, the second
            // 94.8, medians, two boots). A laptop's charon and mip4d run
            // for weeks; their first move is the exception, reported apart.
            for (net, short) in MOVES {
                let cold = format!("{COLD}{}", figure_name(mip4, round, short));
                text.push_str(&format!(
                    "lab::timed-move {net} {host} {src} {dst} {cold} 30\n"
                ));
            }
            for (net, short) in MOVES {
                let name = figure_name(mip4, round, short);
                let also = match beside {
                    true => format!(" cn {CN} {HOA} {name}{FROM_CN}"),
                    false => String::new(),
                };
                text.push_str(&format!(
                    "lab::timed-move {net} {host} {src} {dst} {name} 30{also}\n\
                     lab::rtt mn 203.0.113.10 {name}_ike_rtt_ms 5 min\n"
                ));
            }
            if mip4 {
                text.push_str("lab::stop mn/mip4d\n");
            }
            // The gateway's IKE_SA goes too, before the next charon.
            text.push_str("mn::swanctl --terminate --ike vpn --timeout 5\n");
        }
    }
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let (host, command) = l.split_once("::").unwrap_or(("lab", l));
            ScriptLine {
                file: "bench --handover --one-lab".into(),
                line: i + 1,
                host: host.into(),
                command: command.into(),
                expect: None,
            }
        })
        .collect()
}

/// The access delay of round `round` with `--delays`: they take turns,
/// so that the host's load changes no delay's figures more than another's.
pub fn delay_of(round: usize, delays: &[u64]) -> Option<u64> {
    (!delays.is_empty()).then(|| delays[round % delays.len()])
}

/// The samples in a run's figures (those of moves that finished).
pub fn samples(
    figures: &std::collections::BTreeMap<String, f64>,
    rounds: usize,
    delays: &[u64],
) -> Vec<Sample> {
    let mut out = Vec::new();
    for round in 0..rounds {
        for mip4 in round_order(round) {
            for (net, short) in MOVES {
                let name = figure_name(mip4, round, short);
                let get = |suffix: &str| figures.get(&format!("{name}{suffix}")).copied();
                let Some(ike_rtt_ms) = get("_ike_rtt_ms") else {
                    continue;
                };
                // One sample per echo direction timed (the CPU figures
                // are the move's, on its main sample).
                let sample = |from_cn, (ms, stall_ms), cpu_ms, settled_cpu_ms| Sample {
                    mip4,
                    from_cn,
                    round,
                    to: net.into(),
                    ms,
                    stall_ms,
                    ike_rtt_ms,
                    delay_ms: delay_of(round, delays),
                    cpu_ms,
                    settled_cpu_ms,
                };
                if let (Some(ms), Some(stall_ms)) =
                    (get(FROM_CN), get(&format!("{FROM_CN}_stall_ms")))
                {
                    out.push(sample(
                        true,
                        (ms, stall_ms),
                        BTreeMap::new(),
                        BTreeMap::new(),
                    ));
                }
                if let (Some(ms), Some(stall_ms)) = (get(""), get("_stall_ms")) {
                    let cpu = |window: &str| -> BTreeMap<String, f64> {
                        let prefix = format!("{name}{window}_cpu_");
                        figures
                            .range(prefix.clone()..)
                            .take_while(|(k, _)| k.starts_with(&prefix))
                            .filter_map(|(k, v)| {
                                let label = k.strip_prefix(&prefix)?.strip_suffix("_ms")?;
                                Some((label.to_string(), *v))
                            })
                            .collect()
                    };
                    out.push(sample(false, (ms, stall_ms), cpu(""), cpu("_settled")));
                }
            }
        }
    }
    out
}

/// `samples` are the headline's (the first delay's), `all` every move's.
/// A variant's samples timed by the correspondent's echoes (`from_cn`)
/// or by the MN's; the CPU figures are the moves' either way.
fn variant(samples: &[Sample], all: &[Sample], mip4: bool, from_cn: bool) -> Variant {
    let of_it = |s: &&Sample| s.mip4 == mip4 && s.from_cn == from_cn;
    let of =
        |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { samples.iter().filter(of_it).map(f).collect() };
    Variant {
        ms: Spread::of(&of(&|s| s.ms)),
        rtts: Spread::of(&of(&Sample::rtts)),
        unstalled_ms: Spread::of(&of(&Sample::unstalled_ms)),
        unstalled_rtts: Spread::of(&of(&|s| s.unstalled_ms() / s.ike_rtt_ms)),
        stalled: samples
            .iter()
            .filter(of_it)
            .filter(|s| s.stall_ms > 0.0)
            .count(),
        within_goal: samples
            .iter()
            .filter(of_it)
            .filter(|s| s.ms <= s.ike_rtt_ms + GOAL_EXTRA_MS)
            .count(),
        cpu_ms: cpu_medians(all, mip4, |s| &s.cpu_ms),
        settled_cpu_ms: cpu_medians(all, mip4, |s| &s.settled_cpu_ms),
    }
}

/// Each process's median over a variant's moves that measured it.
fn cpu_medians(
    samples: &[Sample],
    mip4: bool,
    window: fn(&Sample) -> &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.mip4 == mip4 && !s.from_cn) {
        for (label, v) in window(s) {
            by.entry(label.clone()).or_default().push(*v);
        }
    }
    by.into_iter()
        .map(|(label, v)| (label, round2(median(&v))))
        .collect()
}

/// The emulation's factor from the guest's figures and the host's run.
fn emulation(
    figures: &BTreeMap<String, f64>,
    host: Option<Cost>,
    fit: Option<&Fit>,
) -> Option<Emulation> {
    let host = host?;
    let guest = |k: &str| figures.get(&format!("{XFRM_GUEST}_{k}")).copied();
    let (cpu, wall) = (guest("cycle_cpu_us")?, guest("cycle_wall_us")?);
    if host.cycle_cpu_us <= 0.0 {
        return None;
    }
    let factor = round2(cpu / host.cycle_cpu_us);
    let native = |l: &Line| round2(l.fixed_ms / factor);
    Some(Emulation {
        host,
        guest_cycle_cpu_us: cpu,
        guest_cycle_wall_us: wall,
        factor,
        stock_native_fixed_ms: fit.map(|f| native(&f.stock)),
        mip4_native_fixed_ms: fit.map(|f| native(&f.mip4)),
    })
}

/// The figures of a run (pure: tested without a lab).
/// With `delays`, `rounds` counts the rounds at all of them; the headline
/// figures are those at the first delay, the fit takes every one.
pub fn report(
    tier: &str,
    summary: &Summary,
    rounds: usize,
    delays: &[u64],
    realtime: bool,
    host: Option<HostView>,
    host_xfrm: Option<Cost>,
) -> Report {
    let all = samples(&summary.figures, rounds, delays);
    let fit = match (
        line(&all, false, false, delays),
        line(&all, true, false, delays),
    ) {
        (Some(stock), Some(mip4)) => Some(Fit {
            stock,
            mip4,
            mip4_from_cn: line(&all, true, true, delays),
        }),
        _ => None,
    };
    let samples: Vec<Sample> = all
        .iter()
        .filter(|s| s.delay_ms == delays.first().copied())
        .cloned()
        .collect();
    let total =
        |f: &dyn Fn(&Sample) -> f64| samples.iter().filter(|s| !s.from_cn).map(f).sum::<f64>();
    let of = |mip4: bool, from_cn: bool, f: fn(&Sample) -> f64| -> f64 {
        let s = samples
            .iter()
            .filter(|s| s.mip4 == mip4 && s.from_cn == from_cn);
        median(&s.map(f).collect::<Vec<_>>())
    };
    let ratio =
        |from_cn: bool, f: fn(&Sample) -> f64| round2(of(true, from_cn, f) / of(false, false, f));
    // One IKE RTT per move (its main sample's).
    let moves = || samples.iter().filter(|s| !s.from_cn);
    let rtts: Vec<f64> = moves().map(|s| s.ike_rtt_ms).collect();
    Report {
        tier: tier.into(),
        platform: serde_json::to_value(&summary.platform).unwrap_or_default(),
        rounds,
        stock: variant(&samples, &all, false, false),
        mip4: variant(&samples, &all, true, false),
        mip4_from_cn: variant(&samples, &all, true, true),
        ratio: ratio(false, |s| s.ms),
        ratio_unstalled: ratio(false, Sample::unstalled_ms),
        ratio_from_cn: ratio(true, |s| s.ms),
        ratio_from_cn_unstalled: ratio(true, Sample::unstalled_ms),
        ike_rtt_ms: Spread::of(&rtts),
        realtime,
        stalled_share: round2(total(&|s| s.stall_ms) / total(&|s| s.ms)),
        host,
        emulation: emulation(&summary.figures, host_xfrm, fit.as_ref()),
        fit,
        error: summary.error.clone(),
        cold_stock_ms: cold_median(&summary.figures, false, rounds, delays),
        cold_mip4_ms: cold_median(&summary.figures, true, rounds, delays),
        charon_log: CharonLog::default().name().into(),
        echo_ms: echo_ms_of(&summary.events),
        samples: all,
    }
}

/// The timed moves' echo interval, ms, if all `timed_move` events say
/// the same.
fn echo_ms_of(events: &[Event]) -> Option<u64> {
    let mut all = events
        .iter()
        .filter(|e| e.event == "timed_move")
        .map(|e| e.detail["echo_ms"].as_u64());
    let first = all.next()??;
    all.all(|ms| ms == Some(first)).then_some(first)
}

/// Whether every `timed_move` event says its threads ran real-time.
fn realtime_of(events: &[Event]) -> bool {
    events
        .iter()
        .filter(|e| e.event == "timed_move")
        .all(|e| e.detail["realtime"] == true)
}

/// The lab's run of all rounds, as a scenario named `handover-rounds`
/// (its host files are the lab's, as `untrusted-moves` uses them).
pub fn run_one_lab(
    lab_dir: &Path,
    rounds: usize,
    delays: &[u64],
    opts: &RunOptions,
    sink: &mut dyn FnMut(&Event),
) -> Result<Summary> {
    let base = Scenario::load(&lab_dir.join("scenarios").join("untrusted-moves"))?;
    let sc = Scenario {
        name: "handover-rounds".into(),
        description: "mip4-lab bench --handover N --one-lab".into(),
        known_defect: None,
        kernel_only: None,
        topology: None,
        pre: script(rounds, delays),
        evaltest: Vec::new(),
        post: Vec::new(),
        ..base
    };
    run(lab_dir, &sc, opts, sink)
}

/// The kernel tier: the same, in one boot of the guest; the guest's
/// `mip4-lab bench --handover N --one-lab --json` prints the run's
/// events and summary as a scenario would. A guest that fails before its
/// first move (the emulated kernel's boot can fail on a loaded host) is
/// booted once more; one that stops later gives the moves it timed, from
/// the events it printed.
pub fn run_vm(
    lab_dir: &Path,
    bin_dir: &Path,
    rounds: usize,
    delays: &[u64],
    log: CharonLog,
    progress: &mut dyn FnMut(&str),
) -> Result<(Summary, HostView)> {
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = "handover-rounds".to_string();
    let mut opts = crate::lab::vm::VmOptions::new(project, lab_dir, bin_dir, vec![name]);
    opts.guest_args = Some(format!(
        "bench --handover {} --one-lab --json{} --charon-log {}",
        rounds / delays.len().max(1),
        delays_arg(delays),
        log.name()
    ));
    // Two machines by default (`MIP4_VM_SMP` still says otherwise): the
    // MN on one vCPU, the gateway and the rest on the other.
    opts.smp = crate::lab::vm::smp_from_env().unwrap_or(VCPUS);
    // Minutes per round under TCG: the guest's whole run is one "scenario".
    opts.scenario_timeout = std::time::Duration::from_secs(600 + 180 * rounds as u64);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut host = HostView::default();
        let mut events = Vec::new();
        let outcomes = crate::lab::vm::run(&opts, &mut |v| match v["type"].as_str() {
            Some("vm") => {
                if let Some(h) = HostView::from_vm_line(v) {
                    host = h;
                }
                progress(&format!("vm: {v}"));
            }
            Some("event") => {
                if v["event"] == "timed_move" {
                    progress(&describe(&v["detail"]));
                } else if v["event"] == "charon_started" && v["host"] == "mn" {
                    progress(&format!("mn charon, mip4 = {}", v["detail"]["mip4"]));
                }
                if let Ok(e) = serde_json::from_value::<Event>(v.clone()) {
                    events.push(e);
                }
            }
            _ => {}
        });
        let summary = match outcomes {
            Ok(o) => o
                .into_iter()
                .next()
                .and_then(|o| o.summary)
                .and_then(|s| serde_json::from_value::<Summary>(s).ok()),
            Err(e) => {
                progress(&format!("the guest failed: {e}"));
                None
            }
        };
        if let Some(s) = summary {
            return Ok((s, host));
        }
        if events.iter().any(|e| e.event == "timed_move") {
            return Ok((from_events(events), host));
        }
        if attempt == 2 {
            return Err(Error::Other(
                "the guest timed no move in two boots (its logs are kept)".into(),
            ));
        }
        progress("no move timed: booting the guest once more");
    }
}

/// A run that stopped before its summary, from the events it printed:
/// the figures of the moves it timed (`timed_move`, `rtt`).
pub fn from_events(events: Vec<Event>) -> Summary {
    let mut figures = std::collections::BTreeMap::new();
    for e in &events {
        let d = &e.detail;
        match (e.event.as_str(), d["name"].as_str(), d["figure"].as_str()) {
            ("timed_move", Some(n), _) => {
                for t in std::iter::once(d).chain(d.get("beside").filter(|b| b.is_object())) {
                    if let Some(n) = t["name"].as_str() {
                        let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
                        figures.insert(n.to_string(), f("ms"));
                        figures.insert(format!("{n}_stall_ms"), f("stall_ms"));
                    }
                }
                for (key, window) in [("cpu_ms", ""), ("settled_cpu_ms", "_settled")] {
                    for (label, v) in d[key].as_object().into_iter().flatten() {
                        if let Some(v) = v.as_f64() {
                            figures.insert(format!("{n}{window}_cpu_{label}_ms"), v);
                        }
                    }
                }
            }
            ("xfrm_cost", _, _) => {
                for k in ["cycle_cpu_us", "cycle_wall_us"] {
                    if let Some(v) = d[k].as_f64() {
                        figures.insert(format!("{XFRM_GUEST}_{k}"), v);
                    }
                }
            }
            ("rtt", _, Some(f)) => {
                figures.insert(f.to_string(), d["avg_ms"].as_f64().unwrap_or(f64::NAN));
            }
            _ => {}
        }
    }
    Summary {
        scenario: "handover-rounds".into(),
        verdict: "FAIL".into(),
        platform: Default::default(),
        figures,
        vars: Default::default(),
        checks: Vec::new(),
        error: Some("the guest stopped before its summary".into()),
        events,
    }
}

/// ` --delays A,B,C` (the guest's and the section's command), or nothing.
fn delays_arg(delays: &[u64]) -> String {
    if delays.is_empty() {
        return String::new();
    }
    let list: Vec<String> = delays.iter().map(u64::to_string).collect();
    format!(" --delays {}", list.join(","))
}

fn describe(d: &serde_json::Value) -> String {
    let beside = match d.get("beside").filter(|b| b.is_object()) {
        Some(b) => format!(
            "; {} {} ms",
            b["name"].as_str().unwrap_or_default(),
            b["ms"]
        ),
        None => String::new(),
    };
    format!(
        "  {:<16} {:>8} ms (stalled {} ms; route {} ms after the command{beside})",
        d["name"].as_str().unwrap_or_default(),
        d["ms"],
        d["stall_ms"],
        d["command_to_route_ms"]
    )
}

/// The section for docs/PERFORMANCE.md.
pub fn markdown(r: &Report, command: &str) -> String {
    let rtt = r.ike_rtt_ms.median;
    let goal = rtt + GOAL_EXTRA_MS;
    let mut m = String::new();
    let where_ = if r.tier == "vm" {
        "The kernel tier (Debian's kernel in a QEMU guest under TCG, one boot): \
         charon's kernel-netlink, kernel ESP and kernel ipip, netem on the access \
         links (20 ms RTT)"
    } else {
        "The host lab's stand-ins (kernel-libipsec, the delay line, 20 ms access RTT)"
    };
    let _ = writeln!(
        m,
        "## Kernel tier handover: address change -> first ping through, in IKE RTTs (issue 14 §1)\n"
    );
    let _ = writeln!(m, "Command: `{command}`\n");
    let _ = writeln!(
        m,
        "{where_}. One lab for all {} rounds; each round runs stock MOBIKE (the MN's \
         charon alone, the MN pinging the correspondent from its TIA) and mip4 (mip4d \
         registered through the VPN, the plugin, the MN pinging the correspondent from \
         its home address, and beside it the correspondent pinging the home address), \
         ABBA, each with a fresh MN charon and VPN, and, after one pair of warm-up \
         moves (below), times two moves, A -> B (behind NAT) and back. Each move is timed on the guest's clock from \
         the address change itself (the MN's new default route, as its rtnetlink \
         reported it to a real-time thread) to the first reply to an echo sent after \
         it (echoes {echo} apart): mip4's main figure by the MN's echoes, as stock's \
         (traffic the MN starts: 1 IKE RTT at least), its second by the \
         correspondent's in the same moves (1.5 IKE RTTs at least: the gateway \
         learns the new address half a round trip after the update leaves); the IKE RTT is the MN's ping to the gateway right \
         after each move (the least of 5 echoes, so that a stall inside one is not counted). IKE RTT median {rtt:.1} ms, worst {:.1} ms.\n",
        r.rounds,
        r.ike_rtt_ms.worst,
        echo = r.echo_ms.map_or("10 ms, ping".into(), |ms| format!("{ms} ms")),
    );
    let machines = r
        .host
        .as_ref()
        .map_or(String::new(), |h| format!("{} ", h.machines()));
    let log = match r.charon_log.as_str() {
        "default" => {
            "The charons log at strongSwan's default levels, buffered, as a \
             deployment does (`--charon-log default`): the bench reads no charon log, \
             and under TCG each flushed level-2 line is charon CPU on a move's path."
        }
        _ => {
            "The charons log as the lab's scenarios do (`--charon-log lab`: ike, cfg \
             and knl at level 2, each line flushed)."
        }
    };
    let _ = writeln!(m, "{machines}{log}\n");
    let _ = writeln!(
        m,
        "Stalls: the guest stands still at times (the emulator not scheduled on the \
         shared host). A real-time heartbeat thread in the guest wakes every 2 ms and \
         records each wake-up more than 3 ms late; the stalled time inside each \
         interval is reported. Nothing is discarded: the first rows are as measured, \
         the last ones less the stalls. Inside the moves the guest stood still {:.0}% \
         of the time.{}{}\n",
        r.stalled_share * 100.0,
        r.host.as_ref().map_or(String::new(), |h| h.sentence()),
        if r.realtime {
            ""
        } else {
            " (The threads did not get real-time priority in this run.)"
        }
    );
    let _ = writeln!(m, "| figure | moves | median | worst |");
    let _ = writeln!(m, "| --- | --- | --- | --- |");
    let row = |m: &mut String, name: &str, s: &Spread, unit: &str| {
        let _ = writeln!(
            m,
            "| {name} | {} | {:.2} {unit} | {:.2} {unit} |",
            s.n, s.median, s.worst
        );
    };
    let variants = [
        ("stock MOBIKE", &r.stock),
        ("mip4", &r.mip4),
        (MIP4_FROM_CN, &r.mip4_from_cn),
    ];
    for (label, v) in variants {
        row(&mut m, &format!("{label}, in IKE RTTs"), &v.rtts, "RTTs");
        row(&mut m, label, &v.ms, "ms");
    }
    for (label, v) in variants {
        row(
            &mut m,
            &format!("{label}, less stalls, in IKE RTTs"),
            &v.unstalled_rtts,
            "RTTs",
        );
        row(
            &mut m,
            &format!("{label}, less stalls"),
            &v.unstalled_ms,
            "ms",
        );
    }
    let met = |v: &Variant| match v.ms.median <= goal {
        true => "met",
        false => "not met",
    };
    let _ = writeln!(
        m,
        "\nRatio mip4 / stock (medians, this run): **{:.2}** as measured, {:.2} less \
         stalls. Goal 1 IKE RTT + 20 ms (each move against its round's RTT): mip4 {} of \
         {} moves, stock {} of {}; median {:.1} ms against {goal:.1} ms: {}. Moves with \
         a stall inside: stock {}, mip4 {}. {MIP4_FROM_CN}: ratio {:.2} ({:.2} less \
         stalls), {} of {} moves within the goal, median {:.1} ms: {}.",
        r.ratio,
        r.ratio_unstalled,
        r.mip4.within_goal,
        r.mip4.ms.n,
        r.stock.within_goal,
        r.stock.ms.n,
        r.mip4.ms.median,
        met(&r.mip4),
        r.stock.stalled,
        r.mip4.stalled,
        r.ratio_from_cn,
        r.ratio_from_cn_unstalled,
        r.mip4_from_cn.within_goal,
        r.mip4_from_cn.ms.n,
        r.mip4_from_cn.ms.median,
        met(&r.mip4_from_cn),
    );
    if let (Some(stock), Some(mip4)) = (r.cold_stock_ms, r.cold_mip4_ms) {
        let _ = writeln!(
            m,
            "\nEach round first moves A -> B and back once, timed the same way but not \
             counted above: the first move after a fresh charon (and mip4d) runs their \
             code for the first time, which the emulation translates first; a laptop's \
             daemons run for weeks and pay that once. Those cold moves, medians at the \
             first delay: stock {stock:.1} ms, mip4 {mip4:.1} ms."
        );
    }
    cpu_markdown(&mut m, r);
    if let Some(f) = &r.fit {
        fit_markdown(&mut m, f);
    }
    if let Some(e) = &r.emulation {
        emulation_markdown(&mut m, e);
    }
    if let Some(e) = &r.error {
        let _ = writeln!(m, "\nThe run stopped early ({e}); the moves before count.");
    }
    m
}

/// The label of mip4's moves timed by the correspondent's echoes.
const MIP4_FROM_CN: &str = "mip4, correspondent -> home address";

/// Each process's CPU time per move (medians), and ours among it.
fn cpu_markdown(m: &mut String, r: &Report) {
    if r.mip4.cpu_ms.is_empty() && r.stock.cpu_ms.is_empty() {
        return;
    }
    let _ = writeln!(
        m,
        "\nCPU time per move (medians over every move, each process's threads' \
         schedstat in the guest): inside the timed interval (the new default \
         route to the reply), and over the whole move (from before the lab's \
         command, the old address going, to half a second after the reply). \
         The plugin's share is its own threads (the bridge and its reader); its \
         short jobs on charon's threads (the roam request's looks) count as charon's. \
         On one vCPU, what mip4d and the plugin spend inside the timed \
         interval, charon waits for. A host stall inside a move is \
         charged to whichever process the guest was running, so these \
         figures are only as quiet as the host.\n"
    );
    let _ = writeln!(
        m,
        "| process | stock: timed interval (whole move) | mip4: timed interval (whole move) |"
    );
    let _ = writeln!(m, "| --- | --- | --- |");
    let labels: std::collections::BTreeSet<&String> =
        r.stock.cpu_ms.keys().chain(r.mip4.cpu_ms.keys()).collect();
    let cell = |v: &Variant, l: &str| match (v.cpu_ms.get(l), v.settled_cpu_ms.get(l)) {
        (Some(a), Some(b)) => format!("{a:.2} ms ({b:.2} ms)"),
        (Some(a), None) => format!("{a:.2} ms"),
        _ => "none".into(),
    };
    for l in labels {
        let _ = writeln!(m, "| {l} | {} | {} |", cell(&r.stock, l), cell(&r.mip4, l));
    }
    let ours = |w: &BTreeMap<String, f64>| {
        ["mip4d", "plugin"]
            .iter()
            .filter_map(|k| w.get(*k))
            .sum::<f64>()
    };
    let _ = writeln!(
        m,
        "| **ours (mip4d + plugin)** | | **{:.2} ms** ({:.2} ms) |",
        ours(&r.mip4.cpu_ms),
        ours(&r.mip4.settled_cpu_ms)
    );
}

/// The emulation's factor and the fixed costs read natively.
fn emulation_markdown(m: &mut String, e: &Emulation) {
    let _ = writeln!(
        m,
        "\nThe emulation's factor for charon's kind of work (src/lab/xfrm_cost.rs): \
         {} XFRM policy add/delete cycles (one ESP tunnel template each, as charon \
         installs), the least of {} runs, the thread's CPU time: {:.1} µs a cycle in the \
         guest, {:.1} µs on the host: **factor {:.1}**.{}",
        e.host.cycles,
        e.host.runs,
        e.guest_cycle_cpu_us,
        e.host.cycle_cpu_us,
        e.factor,
        match (e.stock_native_fixed_ms, e.mip4_native_fixed_ms) {
            (Some(s), Some(p)) => format!(
                " The fitted fixed costs divided by it, an estimate of the same \
                 work on the host's CPU: stock {s:.1} ms, **mip4 {p:.1} ms**."
            ),
            _ => String::new(),
        }
    );
}

/// The round trips and the fixed cost, with `--delays`.
fn fit_markdown(m: &mut String, f: &Fit) {
    let _ = writeln!(
        m,
        "\nRound trips and fixed cost: the same rounds ran at each access delay \
         below in turn (`lab::delay`: netem changed in place). Each variant's median \
         per delay, and the least-squares line through them, ms = a x IKE RTT + b: \
         a is the round trips on the move's critical path (what the protocol needs), \
         b what a move costs beside them (here: the guest's compute under TCG, and \
         for stock kernel-netlink's 100 ms ROAM_DELAY). The headline figures above \
         are the first delay's.\n"
    );
    // mip4's figure timed by the MN's echoes, then by the correspondent's.
    let lines: Vec<&Line> = [Some(&f.stock), Some(&f.mip4), f.mip4_from_cn.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    let _ = writeln!(
        m,
        "| access delay, each way | stock: IKE RTT; median (less stalls); moves | mip4: IKE RTT; median (less stalls); moves |{}",
        match f.mip4_from_cn {
            Some(_) => format!(" {MIP4_FROM_CN}: the same |"),
            None => String::new(),
        }
    );
    let _ = writeln!(m, "|{}", " --- |".repeat(lines.len() + 1));
    let cell = |l: &Line, d: u64| match l.points.iter().find(|p| p.delay_ms == d) {
        Some(p) => format!(
            "{:.1} ms; {:.1} ms ({:.1} ms); {}",
            p.ike_rtt_ms, p.ms, p.unstalled_ms, p.moves
        ),
        None => "none".into(),
    };
    let mut seen = Vec::new();
    for d in lines.iter().flat_map(|l| &l.points).map(|p| p.delay_ms) {
        if !seen.contains(&d) {
            seen.push(d);
            let cells: Vec<String> = lines.iter().map(|l| cell(l, d)).collect();
            let _ = writeln!(m, "| {d} ms | {} |", cells.join(" | "));
        }
    }
    // Each line's figure (less stalls): stock's plain, mip4's in bold.
    let fitted = |what: &str, f: &dyn Fn(&Line) -> (String, String)| {
        let cells: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| match (i, f(l)) {
                (0, (v, u)) => format!("{v} ({u})"),
                (_, (v, u)) => format!("**{v}** ({u})"),
            })
            .collect();
        format!("| fitted: {what} (less stalls) | {} |", cells.join(" | "))
    };
    let rtts = fitted("round trips a", &|l| {
        (
            format!("{:.2} RTTs", l.rtts),
            format!("{:.2}", l.unstalled_rtts),
        )
    });
    let fixed = fitted("fixed cost b", &|l| {
        (
            format!("{:.1} ms", l.fixed_ms),
            format!("{:.1}", l.unstalled_fixed_ms),
        )
    });
    let _ = writeln!(m, "{rtts}\n{fixed}");
}

/// `--handover N [--delays A,B,...]`: N rounds at each delay (each way,
/// ms), or N rounds at the topology's own delays.
pub struct Rounds {
    pub per_delay: usize,
    pub delays: Vec<u64>,
}

/// `mip4-lab bench --handover N --one-lab|--vm [--markdown FILE] [--json]`.
/// In the guest (`--one-lab --json` without `--vm`) it prints the run as a
/// scenario's JSON lines, which the host side reads.
pub fn cli(
    lab_dir: PathBuf,
    bin_dir: &Path,
    rounds: Rounds,
    vm: bool,
    opts: RunOptions,
    markdown_to: Option<PathBuf>,
    json: bool,
) -> std::process::ExitCode {
    let Rounds { per_delay, delays } = rounds;
    let delays = delays.as_slice();
    if per_delay == 0 {
        eprintln!("mip4-lab bench: --handover needs at least one round");
        return std::process::ExitCode::FAILURE;
    }
    // N rounds at each delay, the delays taking turns.
    let rounds = per_delay * delays.len().max(1);
    let summary = if vm {
        eprintln!("mip4-lab bench: handover, {rounds} rounds on one lab in the kernel tier");
        run_vm(
            &lab_dir,
            bin_dir,
            rounds,
            delays,
            opts.charon.log,
            &mut |l| eprintln!("{l}"),
        )
        .map(|(s, host)| (s, Some(host)))
    } else if json {
        // The guest's side: the lines the host reads, as `run --json`.
        let s = run_one_lab(&lab_dir, rounds, delays, &opts, &mut |e| {
            let mut v = serde_json::to_value(e).unwrap_or_default();
            v["type"] = "event".into();
            println!("{v}");
        });
        return guest_summary(s, "mip4-lab bench");
    } else {
        eprintln!("mip4-lab bench: handover, {rounds} rounds on one lab");
        run_one_lab(&lab_dir, rounds, delays, &opts, &mut |e| {
            if e.event == "timed_move" {
                eprintln!("{}", describe(&e.detail));
            }
        })
        .map(|s| (s, None))
    };
    let (summary, host) = match summary {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mip4-lab bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The host's side of the emulation's factor, once the guest is off.
    let host_xfrm = match vm {
        true => match crate::lab::xfrm_cost::measure(XFRM_CYCLES, XFRM_RUNS) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("mip4-lab bench: the host's XFRM cycles: {e}");
                None
            }
        },
        false => None,
    };
    let mut r = report(
        if vm { "vm" } else { "host" },
        &summary,
        rounds,
        delays,
        realtime_of(&summary.events),
        host,
        host_xfrm,
    );
    r.charon_log = opts.charon.log.name().into();
    if r.samples.is_empty() {
        eprintln!(
            "mip4-lab bench: no move was timed: {}",
            r.error.as_deref().unwrap_or("?")
        );
        return std::process::ExitCode::FAILURE;
    }
    let command = format!(
        "mip4-lab bench --handover {per_delay} {}{}{}",
        if vm { "--vm" } else { "--one-lab" },
        delays_arg(delays),
        match opts.charon.log {
            CharonLog::Default => String::new(),
            l => format!(" --charon-log {}", l.name()),
        }
    );
    let text = markdown(&r, &command);
    super::emit("bench", &r, &text, markdown_to.as_deref(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A passing run's summary with these figures.
    fn passed(figures: std::collections::BTreeMap<String, f64>) -> Summary {
        Summary {
            scenario: "handover-rounds".into(),
            verdict: "PASS".into(),
            platform: Default::default(),
            figures,
            vars: Default::default(),
            checks: vec![],
            error: None,
            events: vec![],
        }
    }

    /// The script's commands that start with `prefix`.
    fn commands<'a>(lines: &'a [ScriptLine], prefix: &str) -> Vec<&'a str> {
        lines
            .iter()
            .filter(|l| l.command.starts_with(prefix))
            .map(|l| l.command.as_str())
            .collect()
    }

    #[test]
    fn the_script_alternates_variants_abba_with_a_warm_up_pair_and_two_timed_moves_each() {
        let lines = script(2, &[]);
        let charons = commands(&lines, "charon mn");
        assert_eq!(charons.len(), 4);
        assert!(!charons[0].contains("mip4="), "round 0 starts stock");
        assert!(charons[1].contains("mip4=") && charons[2].contains("mip4="));
        assert!(!charons[3].contains("mip4="));
        let moves = commands(&lines, "timed-move");
        assert_eq!(moves.len(), 16);
        // Each variant: its two cold moves first, then the two counted.
        for v in moves.chunks(4) {
            assert!(v[0].contains(" cold_") && v[1].contains(" cold_"));
            assert!(!v[2].contains("cold_") && !v[3].contains("cold_"));
        }
        assert!(lines
            .iter()
            .any(|l| l.host == "mn" && l.command.starts_with("swanctl --terminate")));
    }

    #[test]
    fn mip4_is_timed_by_the_mns_echoes_and_the_correspondents_beside() {
        let lines = script(1, &[]);
        let moves = commands(&lines, "timed-move");
        // Round 0 is stock then mip4 (ABBA), each after its cold pair.
        assert_eq!(
            moves[0],
            "timed-move ext-b mn ${TIA} 10.1.2.2 cold_stock_r0_b 30"
        );
        assert_eq!(
            moves[2],
            "timed-move ext-b mn ${TIA} 10.1.2.2 stock_r0_b 30"
        );
        assert_eq!(
            moves[6],
            "timed-move ext-b mn 10.1.100.5 10.1.2.2 mip4_r0_b 30 \
             cn 10.1.2.2 10.1.100.5 mip4_r0_b_cn"
        );
    }

    /// An event of the MN's at time 0.
    fn ev(event: &str, detail: serde_json::Value) -> Event {
        Event {
            t: 0.0,
            ms: 0.0,
            event: event.into(),
            host: "mn".into(),
            detail,
        }
    }

    #[test]
    fn cold_moves_are_left_out_of_the_samples_and_reported_apart_at_the_first_delay() {
        let mut f = std::collections::BTreeMap::new();
        for (name, ms) in [
            ("cold_mip4_r0_b", 140.0),
            ("cold_mip4_r0_a", 100.0),
            ("cold_mip4_r1_b", 900.0), // round 1: the second delay
            ("cold_mip4_r0_b_stall_ms", 5.0),
            ("mip4_r0_b", 60.0),
            ("mip4_r0_b_stall_ms", 0.0),
            ("mip4_r0_b_ike_rtt_ms", 21.0),
        ] {
            f.insert(name.to_string(), ms);
        }
        let got = samples(&f, 2, &[10, 25]);
        assert_eq!(got.iter().map(|s| s.ms).collect::<Vec<_>>(), [60.0]);
        assert_eq!(cold_median(&f, true, 2, &[10, 25]), Some(120.0));
        assert_eq!(cold_median(&f, false, 2, &[10, 25]), None);
    }

    #[test]
    fn a_stopped_run_counts_the_moves_its_events_tell() {
        let s = from_events(vec![
            ev(
                "timed_move",
                serde_json::json!({"name": "stock_r0_b", "ms": 250.0, "stall_ms": 10.0}),
            ),
            ev(
                "rtt",
                serde_json::json!({"figure": "stock_r0_b_ike_rtt_ms", "avg_ms": 21.0}),
            ),
            ev(
                "timed_move",
                serde_json::json!({"name": "stock_r0_a", "ms": 300.0, "stall_ms": 0.0}),
            ),
        ]);
        let got = samples(&s.figures, 1, &[]);
        assert_eq!(got.len(), 1, "a move without its IKE RTT is left out");
        assert_eq!(
            (got[0].ms, got[0].stall_ms, got[0].ike_rtt_ms),
            (250.0, 10.0, 21.0)
        );
        assert!(s.error.is_some());
    }

    #[test]
    fn report_reads_the_figures_and_takes_stalls_out_beside_them() {
        let mut f = std::collections::BTreeMap::new();
        let mut put = |name: &str, ms: f64, stall: f64, rtt: f64| {
            f.insert(name.to_string(), ms);
            f.insert(format!("{name}_stall_ms"), stall);
            f.insert(format!("{name}_ike_rtt_ms"), rtt);
        };
        put("stock_r0_b", 200.0, 0.0, 20.0);
        put("stock_r0_a", 1200.0, 1000.0, 20.0);
        put("mip4_r0_b", 35.0, 0.0, 20.0);
        put("mip4_r0_a", 60.0, 0.0, 20.0);
        // A move whose IKE RTT was not measured (the run stopped) is left out.
        f.insert("mip4_r1_b".into(), 1.0);
        let summary = passed(f);
        let host = HostView {
            boot_to_off_s: 100.0,
            vcpu_ran_s: 30.0,
            vcpu_waited_s: 60.0,
            vcpus: 1,
            pinned: false,
            cpu: "max".into(),
        };
        let r = report("vm", &summary, 2, &[], true, Some(host.clone()), None);
        assert_eq!(r.samples.len(), 4);
        assert_eq!((r.stock.ms.median, r.stock.ms.worst), (700.0, 1200.0));
        assert_eq!(r.stock.unstalled_ms.median, 200.0);
        assert_eq!(r.stock.stalled, 1);
        assert_eq!((r.mip4.rtts.median, r.mip4.rtts.worst), (2.38, 3.0));
        assert_eq!((r.mip4.within_goal, r.stock.within_goal), (1, 0));
        assert_eq!(r.ratio, round2(47.5 / 700.0));
        assert_eq!(r.ratio_unstalled, round2(47.5 / 200.0));
        let md = markdown(&r, "mip4-lab bench --handover 2 --vm");
        assert!(
            md.contains("| mip4, in IKE RTTs | 2 | 2.38 RTTs | 3.00 RTTs |"),
            "{md}"
        );
        assert!(md.contains("mip4 1 of 2 moves, stock 0 of 2"), "{md}");
        assert!(md.contains("stood still 67% of the time"), "{md}");
        assert!(md.contains("waited 60 s (60%)"), "{md}");
        assert!(md.contains("The guest has one vCPU"), "{md}");
        assert!(
            md.contains("QEMU's CPU model for the guest: `max`."),
            "{md}"
        );
        // Two vCPUs as two machines: the threads' sum, and what ran where.
        let two = HostView {
            vcpus: 2,
            pinned: true,
            ..host
        };
        let r = report("vm", &summary, 2, &[], true, Some(two), None);
        let md = markdown(&r, "mip4-lab bench --handover 2 --vm");
        assert!(md.contains("waited 60 s (30% of 2 x the boot)"), "{md}");
        assert!(md.contains("runs as two machines"), "{md}");
        assert!(md.contains("to vCPU 1, and the rest"), "{md}");
    }

    #[test]
    fn delays_take_turns_and_each_round_sets_its_own() {
        let lines = script(4, &[10, 40]);
        let set = commands(&lines, "delay ");
        assert_eq!(set, ["delay 10", "delay 40", "delay 10", "delay 40"]);
        assert!(!script(1, &[])
            .iter()
            .any(|l| l.command.starts_with("delay")));
    }

    #[test]
    fn the_fit_separates_round_trips_from_fixed_cost() {
        // Rounds 0, 2 at 10 ms each way (RTT 20), rounds 1, 3 at 40 (RTT 80):
        // stock 3 RTTs + 150 ms, mip4 1 RTT + 60 ms.
        let f = on_two_lines(4);
        let summary = passed(f);
        let r = report("vm", &summary, 4, &[10, 40], true, None, None);
        let fit = r.fit.clone().expect("two delays give a line");
        assert_eq!((fit.stock.rtts, fit.stock.fixed_ms), (3.0, 150.0));
        assert_eq!((fit.mip4.rtts, fit.mip4.fixed_ms), (1.0, 60.0));
        let cn = fit
            .mip4_from_cn
            .clone()
            .expect("the correspondent's echoes");
        assert_eq!((cn.rtts, cn.fixed_ms), (1.5, 60.0));
        assert_eq!(
            fit.mip4.points[1],
            Point {
                delay_ms: 40,
                ike_rtt_ms: 80.0,
                ms: 140.0,
                unstalled_ms: 140.0,
                moves: 4
            }
        );
        // The headline is the first delay's moves alone.
        assert_eq!((r.mip4.ms.n, r.mip4.ms.median), (4, 80.0));
        assert_eq!((r.mip4_from_cn.ms.n, r.mip4_from_cn.ms.median), (4, 90.0));
        assert_eq!(r.ratio, round2(80.0 / 210.0));
        assert_eq!(r.ratio_from_cn, round2(90.0 / 210.0));
        // One IKE RTT per move, not per echo direction.
        assert_eq!(r.ike_rtt_ms.n, 8);
        assert_eq!(r.samples.len(), 24);
        let md = markdown(&r, "mip4-lab bench --handover 2 --vm --delays 10,40");
        assert!(
            md.contains(
                "| 40 ms | 80.0 ms; 390.0 ms (390.0 ms); 4 | 80.0 ms; 140.0 ms (140.0 ms); 4 \
                 | 80.0 ms; 180.0 ms (180.0 ms); 4 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| fitted: round trips a (less stalls) | 3.00 RTTs (3.00) | **1.00 RTTs** (1.00) \
                 | **1.50 RTTs** (1.50) |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| fitted: fixed cost b (less stalls) | 150.0 ms (150.0) | **60.0 ms** (60.0) \
                 | **60.0 ms** (60.0) |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| mip4, correspondent -> home address, in IKE RTTs | 4 | 4.50 RTTs |"),
            "{md}"
        );
        // One delay gives no line.
        let one = report("vm", &summary, 4, &[], true, None, None);
        assert!(one.fit.is_none());
    }

    /// Figures of `rounds` rounds, even ones at 20 ms IKE RTT, odd ones at
    /// 80, each move on its variant's line: stock 3 RTTs + 150 ms, mip4
    /// 1 RTT + 60 ms, and timed by the correspondent's echoes 1.5 RTTs +
    /// 60 ms.
    fn on_two_lines(rounds: usize) -> std::collections::BTreeMap<String, f64> {
        let mut f = std::collections::BTreeMap::new();
        for round in 0..rounds {
            let rtt = if round % 2 == 0 { 20.0 } else { 80.0 };
            for (mip4, a, b) in [(false, 3.0, 150.0), (true, 1.0, 60.0)] {
                for net in ["a", "b"] {
                    let name = figure_name(mip4, round, net);
                    f.insert(name.clone(), a * rtt + b);
                    f.insert(format!("{name}_stall_ms"), 0.0);
                    f.insert(format!("{name}_ike_rtt_ms"), rtt);
                    if mip4 {
                        f.insert(format!("{name}{FROM_CN}"), 1.5 * rtt + 60.0);
                        f.insert(format!("{name}{FROM_CN}_stall_ms"), 0.0);
                    }
                }
            }
        }
        f
    }

    #[test]
    fn cpu_per_move_and_the_emulations_factor_are_reported() {
        let mut f = on_two_lines(2);
        for round in 0..2 {
            for mip4 in [false, true] {
                for net in ["a", "b"] {
                    let name = figure_name(mip4, round, net);
                    f.insert(format!("{name}_cpu_charon_mn_ms"), 30.0 + round as f64);
                    f.insert(format!("{name}_settled_cpu_charon_mn_ms"), 40.0);
                    if mip4 {
                        f.insert(format!("{name}_cpu_mip4d_ms"), 4.0);
                        f.insert(format!("{name}_cpu_plugin_ms"), 1.0);
                        f.insert(format!("{name}_settled_cpu_mip4d_ms"), 6.0);
                    }
                }
            }
        }
        f.insert(format!("{XFRM_GUEST}_cycle_cpu_us"), 300.0);
        f.insert(format!("{XFRM_GUEST}_cycle_wall_us"), 320.0);
        let summary = passed(f);
        let host = Cost {
            cycles: 200,
            runs: 5,
            cycle_cpu_us: 10.0,
            cycle_wall_us: 11.0,
        };
        let r = report("vm", &summary, 2, &[10, 40], true, None, Some(host));
        assert_eq!(r.mip4.cpu_ms["mip4d"], 4.0);
        assert_eq!(r.mip4.cpu_ms["charon_mn"], 30.5);
        assert_eq!(r.mip4.settled_cpu_ms["mip4d"], 6.0);
        assert!(!r.stock.cpu_ms.contains_key("mip4d"));
        let e = r.emulation.clone().expect("both sides measured");
        assert_eq!(e.factor, 30.0);
        assert_eq!(e.mip4_native_fixed_ms, Some(2.0));
        assert_eq!(e.stock_native_fixed_ms, Some(5.0));
        let md = markdown(&r, "mip4-lab bench --handover 1 --vm --delays 10,40");
        assert!(md.contains("| mip4d | none | 4.00 ms (6.00 ms) |"), "{md}");
        assert!(
            md.contains("| **ours (mip4d + plugin)** | | **5.00 ms** (6.00 ms) |"),
            "{md}"
        );
        assert!(md.contains("**factor 30.0**"), "{md}");
        assert!(md.contains("**mip4 2.0 ms**"), "{md}");
        // Without the host's side there is no factor.
        assert!(report("vm", &summary, 2, &[10, 40], true, None, None)
            .emulation
            .is_none());
    }

    #[test]
    fn a_stopped_runs_events_keep_the_cpu_and_xfrm_figures() {
        let s = from_events(vec![
            ev(
                "xfrm_cost",
                serde_json::json!({"cycles": 200, "runs": 5, "cycle_cpu_us": 250.0, "cycle_wall_us": 260.0}),
            ),
            ev(
                "timed_move",
                serde_json::json!({"name": "mip4_r0_b", "ms": 90.0, "stall_ms": 0.0,
                    "cpu_ms": {"mip4d": 3.5}, "settled_cpu_ms": {"mip4d": 5.0},
                    "beside": {"name": "mip4_r0_b_cn", "ms": 110.0, "stall_ms": 2.0}}),
            ),
        ]);
        assert_eq!(s.figures["mip4_r0_b_cn"], 110.0);
        assert_eq!(s.figures["mip4_r0_b_cn_stall_ms"], 2.0);
        assert_eq!(s.figures["mip4_r0_b_cpu_mip4d_ms"], 3.5);
        assert_eq!(s.figures["mip4_r0_b_settled_cpu_mip4d_ms"], 5.0);
        assert_eq!(s.figures[&format!("{XFRM_GUEST}_cycle_cpu_us")], 250.0);
    }
}
