//! `mip4-lab bench-baseline --vm`: issue 14 §3's baselines on the kernel
//! tier, where charon's kernel-netlink moves the SAs in place after a
//! MOBIKE update (no CHILD_SA rekey, as on a real laptop and gateway).
//!
//! The guest runs `mip4-lab bench-baseline --timed --json`: the host's
//! bench (the same three scenarios, a fresh lab per variant each round,
//! the order changing every round) in one boot, except that each move is
//! `lab::timed-move` (src/lab/timing.rs), as `bench --handover N --vm`
//! times its moves: from the MN's new default route on its own rtnetlink
//! to the first reply to the correspondent's echo to the home address
//! sent after it (10 ms apart), on the guest's clock, with the stalls of
//! the emulated guest inside each move measured by a real-time heartbeat.
//! Moves alternate B (behind NAT) and A, as the host bench's.

use std::fmt::Write as _;
use std::path::Path;

use super::{bytes_markdown, BaselineOptions, Report, VARIANTS};
use crate::lab::bench::tier::HostView;
use crate::lab::scenario::{Line, Scenario};
use crate::lab::{Error, Result};

/// The move file of a timed run: one timed move to ${NEXT_NET}, then the
/// two networks swap. A baseline also waits for its new VPN and its
/// registration (the next move starts from a registered MN), as the host
/// bench's `reestablish-psk/move.dat`.
fn move_file(baseline: bool) -> String {
    let mut t = String::from(
        "# Written by mip4-lab bench-baseline --timed: one move timed on the\n\
         # guest's clock (lab::timed-move), then the networks swap.\n\
         lab::timed-move ${NEXT_NET} cn 10.1.2.2 10.1.100.5 move_to_ping_ms_${ROUND} 30\n",
    );
    if baseline {
        t.push_str(
            "lab::wait-event mn/mip4d vpn_up after=address_change vpn_again_${ROUND} 30\n\
             lab::wait-event mn/mip4d registration_accepted after=address_change registered_${ROUND} 30\n\
             lab::figure move_to_vpn_ms_${ROUND} address_change vpn_again_${ROUND}\n\
             lab::figure move_to_registered_ms_${ROUND} address_change registered_${ROUND}\n",
        );
    }
    t.push_str(
        "lab::rtt mn 203.0.113.10 ike_rtt_ms_${ROUND} 5 min\n\
         lab::set THIS_NET ${NEXT_NET}\n\
         lab::set NEXT_NET ${OTHER_NET}\n\
         lab::set OTHER_NET ${THIS_NET}\n",
    );
    t
}

/// `s` (one of [`VARIANTS`], its MOVES set) with its moves timed: its
/// `lab::set MOVE` names a move file written into `dir`.
pub fn timed(s: &Scenario, dir: &Path) -> Result<Scenario> {
    let baseline = s.name != VARIANTS[0].scenario;
    let file = dir.join(format!("timed-move-{}.dat", s.name));
    std::fs::write(&file, move_file(baseline)).map_err(|source| Error::Io {
        path: file.display().to_string(),
        source,
    })?;
    let mut s = s.clone();
    let at = s
        .pre
        .iter()
        .position(|l| l.host == "lab" && l.command.starts_with("set MOVE "))
        .ok_or_else(|| Error::Other(format!("scenario `{}` has no `lab::set MOVE`", s.name)))?;
    let line = |command: String| Line {
        command,
        ..s.pre[at].clone()
    };
    let lines = [
        line(format!("set MOVE {}", file.display())),
        line("set NEXT_NET ext-b".into()),
        line("set OTHER_NET ext-a".into()),
    ];
    s.pre.splice(at..=at, lines);
    Ok(s)
}

/// The guest's side (`--timed --json`): progress as JSON lines, then the
/// report as the `summary` line the host side reads.
pub fn guest(opts: &BaselineOptions) -> std::process::ExitCode {
    let r = super::run(opts, &mut |line| {
        println!("{}", serde_json::json!({"type": "progress", "line": line}));
    });
    crate::lab::bench::tier::guest_summary(r, "mip4-lab bench-baseline")
}

/// Boots the guest once and runs the guest's side in it.
pub fn run_vm(
    opts: &BaselineOptions,
    bin_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let project = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = "bench-baseline".to_string();
    let mut vm = crate::lab::vm::VmOptions::new(project, &opts.lab_dir, bin_dir, vec![name]);
    vm.guest_args = Some(format!(
        "bench-baseline --moves {} --rounds {} --timed --json",
        opts.moves, opts.rounds
    ));
    // Three labs a round and a capture run, minutes each under TCG, and
    // a baseline move can take seconds.
    vm.scenario_timeout =
        std::time::Duration::from_secs(900 + 240 * opts.rounds as u64 + 30 * 3 * opts.moves as u64);
    let mut host = HostView::default();
    let outcomes = crate::lab::vm::run(&vm, &mut |v| match v["type"].as_str() {
        Some("vm") => {
            if let Some(h) = HostView::from_vm_line(v) {
                host = h;
            }
            progress(&format!("vm: {v}"));
        }
        Some("progress") => progress(v["line"].as_str().unwrap_or_default()),
        _ => {}
    })?;
    let summary = outcomes
        .into_iter()
        .next()
        .and_then(|o| o.summary)
        .ok_or_else(|| Error::Other("the guest printed no report (its logs are kept)".into()))?;
    let mut r: Report = serde_json::from_value(summary)
        .map_err(|e| Error::Other(format!("the guest's report: {e}")))?;
    r.host = Some(host);
    Ok(r)
}

/// The section for docs/PERFORMANCE.md.
pub fn markdown(r: &Report, command: &str) -> String {
    let m = &r.stats[0];
    let mut t = String::new();
    let _ = writeln!(
        t,
        "## The baselines RFC 4093 argues against, on the kernel tier (issue 14 §3)\n"
    );
    let _ = writeln!(t, "Command: `{command}`\n");
    let _ = writeln!(
        t,
        "The kernel tier (Debian's kernel {} in a QEMU guest under TCG, one boot, 1 vCPU): \
         ESP in the kernel (the MN's charon: {}), netem on the access links (20 ms RTT; the IKE round trip after each move, the least of 5 echoes: median {:.1} ms). \
         The Figure 1 lab and the three scenarios of `mip4-lab bench-baseline`, a fresh lab \
         for each per round, their order changing every round. Each move is break before \
         make between external network A and external network B (behind NAT), timed on the \
         guest's clock from the address change itself (the MN's new default route, as its \
         rtnetlink reported it to a real-time thread) to the first reply to an echo the \
         correspondent sent to the home address after it (echoes 10 ms apart, `lab::timed-move`). \
         With kernel-netlink a MOBIKE update moves the SAs in place: no CHILD_SA rekey, as on a \
         real laptop and gateway.\n",
        r.kernel, r.ipsec, m.median_ike_rtt_ms
    );
    let host = r.host.as_ref().map_or(String::new(), |h| h.sentence());
    let _ = writeln!(
        t,
        "Stalls: a real-time heartbeat thread in the guest wakes every 2 ms and records \
         each wake-up more than 3 ms late (src/lab/timing.rs); nothing is discarded, the \
         columns less stalls take each move's stalled time out.{host}\n"
    );
    t.push_str(
        "| variant | scenario | moves | median ms | worst ms | median in IKE RTTs | \
         median less stalls ms | worst less stalls ms | moves with a stall | \
         VPN up again (median ms) | registered (median ms) | median / mip4 + MOBIKE |\n",
    );
    t.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let dash = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    for s in &r.stats {
        let _ = writeln!(
            t,
            "| {} | `{}` | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.2} |",
            s.label,
            s.scenario,
            s.n,
            s.median_ms,
            s.worst_ms,
            s.median_ms / s.median_ike_rtt_ms,
            dash(s.median_unstalled_ms),
            dash(s.worst_unstalled_ms),
            s.stalled,
            dash(s.median_vpn_ms),
            dash(s.median_registered_ms),
            s.median_ms / m.median_ms,
        );
    }
    let verdict = |ratio: f64, goal: f64| {
        format!(
            "{ratio:.2}×: {}",
            if ratio >= goal { "met" } else { "not met" }
        )
    };
    let less = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}×"));
    let _ = writeln!(
        t,
        "\nRatios within this run (baseline median / mip4 + MOBIKE median). Goal at least \
         2× with PSK: {} ({} less stalls); at least 3× with EAP-MSCHAPv2: {} ({} less \
         stalls). \"VPN up again\" and \"registered\" count from the `ip` command of the \
         move (a process start under TCG is 0.1-0.5 s), the moves themselves from the new \
         route.\n",
        verdict(r.ratio_psk, 2.0),
        less(r.ratio_psk_unstalled),
        verdict(r.ratio_eap, 3.0),
        less(r.ratio_eap_unstalled),
    );
    if !r.notes.is_empty() {
        t.push_str("Runs that did not hold all their checks (their timed moves count):\n\n");
        // A check's command names the scenario's files by the project's
        // path on this machine: the report says it from the project.
        let project = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        for n in &r.notes {
            let _ = writeln!(t, "- {}", n.replace(project, ""));
        }
        t.push('\n');
    }
    match &r.bytes {
        Some(b) => t.push_str(&bytes_markdown(
            b,
            "captured in the guest on external network B (`natb:eth-b`)",
        )),
        None => t.push_str("### Bytes per data packet\n\nNot measured in this run (see above).\n"),
    }
    t
}

/// `mip4-lab bench-baseline --vm`.
pub fn cli(opts: BaselineOptions, bin_dir: &Path, json: bool) -> std::process::ExitCode {
    eprintln!(
        "mip4-lab bench-baseline: {} moves per variant in {} rounds, in the kernel tier",
        opts.moves, opts.rounds
    );
    let r = match run_vm(&opts, bin_dir, &mut |l| eprintln!("{l}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mip4-lab bench-baseline: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let text = markdown(&r, &opts.command);
    crate::lab::bench::emit("bench-baseline", &r, &text, opts.out.as_deref(), json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_report_reads_back_and_its_section_gives_both_ratios() {
        let sample = |scenario: &str, index: u32, ms: f64, stall: f64| super::super::Sample {
            scenario: scenario.into(),
            round: 0,
            index,
            move_to_ping_ms: ms,
            ike_rtt_ms: 20.0,
            move_to_vpn_ms: None,
            move_to_registered_ms: None,
            stall_ms: Some(stall),
        };
        let samples = vec![
            sample("untrusted-moves", 1, 100.0, 0.0),
            sample("untrusted-moves", 2, 300.0, 100.0),
            sample("reestablish-psk", 1, 400.0, 0.0),
            sample("reestablish-psk", 2, 500.0, 100.0),
            sample("reestablish-eap", 1, 500.0, 0.0),
            sample("reestablish-eap", 2, 700.0, 0.0),
        ];
        let stats: Vec<_> = VARIANTS
            .iter()
            .map(|v| super::super::stats(v, &samples))
            .collect();
        assert_eq!(stats[0].median_unstalled_ms, Some(150.0));
        assert_eq!(stats[0].stalled, 1);
        let mut guest = serde_json::json!({
            "stats": stats, "ratio_psk": 2.25, "ratio_eap": 3.0,
            "ratio_psk_unstalled": 2.83, "ratio_eap_unstalled": 4.0,
            "bytes": null, "kernel": "6.1.0", "ipsec": "kernel-netlink",
            "notes": [format!("round 0: 2 of 2 moves timed; untrusted-moves failed:  mn::sh {}/lab/scenarios/untrusted-moves/early-moves.sh", env!("CARGO_MANIFEST_DIR"))],
            "host": null, "samples": samples,
        });
        guest["type"] = "summary".into();
        let r: Report = serde_json::from_value(guest).unwrap();
        let md = markdown(&r, "mip4-lab bench-baseline --moves 2 --rounds 1 --vm");
        assert!(md.contains("| mip4 + MOBIKE (mode mc) | `untrusted-moves` | 2 | 200.0 | 300.0 | 10.0 | 150.0 | 200.0 | 1 |"), "{md}");
        assert!(md.contains("2.25×: met (2.83× less stalls)"), "{md}");
        assert!(md.contains("3.00×: met (4.00× less stalls)"), "{md}");
        assert!(md.contains("- round 0: 2 of 2 moves timed"), "{md}");
        // The failed check's command from the project, not this machine.
        assert!(
            md.contains("mn::sh lab/scenarios/untrusted-moves/early-moves.sh"),
            "{md}"
        );
        assert!(!md.contains(env!("CARGO_MANIFEST_DIR")), "{md}");
        assert!(md.contains("Not measured in this run"), "{md}");
    }

    #[test]
    fn timed_scenarios_alternate_networks_and_baselines_wait_for_their_registration() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/scenarios");
        let dir = crate::lab::WorkDir::new("baseline-timed-test").unwrap();
        for v in VARIANTS {
            let s = Scenario::load(&lab.join(v.scenario)).unwrap();
            let s = timed(&s, dir.path()).unwrap();
            let sets: Vec<&str> = s
                .pre
                .iter()
                .filter(|l| l.command.starts_with("set "))
                .map(|l| l.command.as_str())
                .collect();
            let file = dir.path().join(format!("timed-move-{}.dat", v.scenario));
            assert!(sets.contains(&format!("set MOVE {}", file.display()).as_str()));
            assert!(sets.contains(&"set NEXT_NET ext-b") && sets.contains(&"set OTHER_NET ext-a"));
            let moves = std::fs::read_to_string(&file).unwrap();
            assert!(moves.contains("lab::timed-move ${NEXT_NET} cn 10.1.2.2 10.1.100.5"));
            assert_eq!(
                moves.contains("registration_accepted"),
                v.scenario != "untrusted-moves"
            );
        }
    }
}
