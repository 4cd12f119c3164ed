//! `mip4-lab bench-ha` (issue 14 §4) on a small scale: the real mip4-ha
//! accepts every signed registration of the load generator, the cache
//! holds one binding per node, and the report's figures are the ones its
//! runs measured (never their values: timings are not asserted).

use mip4::lab::bench::median;
use mip4::lab::bench_ha::{self, HaBenchOptions};

#[test]
fn bench_ha_reports_consistent_figures_for_every_node_registered() {
    let opts = HaBenchOptions {
        mobile_nodes: 300,
        small: 100,
        runs: 3,
        batch: 150,
        window: 8,
        ha: env!("CARGO_BIN_EXE_mip4-ha").into(),
    };
    let r = bench_ha::run(&opts, &mut |_| {}).expect("bench-ha runs");
    assert_eq!(r.bindings, 300, "one binding per mobile node");
    assert_eq!((r.lost, r.refused), (0, 0), "every request accepted");
    assert_eq!(r.small_ha_bindings, 100, "the small side holds its own");
    // Every request is accounted for, once: 100 registrations on each
    // side, the fill's 200, then a pair of runs of 150 not counted and 3
    // that are.
    let t = &r.requests;
    assert_eq!(t.sent, 2 * 100 + 200 + 8 * 150, "{t:?}");
    assert_eq!(t.sent, t.ok + t.refused + t.late + t.lost, "{t:?}");
    assert_eq!(r.echo_requests.sent, 8 * 150, "{:?}", r.echo_requests);
    assert_eq!(
        t.stray + r.echo_requests.stray,
        0,
        "every reply answers a request"
    );
    assert_eq!(r.drops.unexplained, 0, "{:?}", r.drops);
    assert_eq!(r.drops.ha["socket_dropped"], 0, "{:?}", r.drops);
    assert_eq!(r.small_bindings, 100);
    // The full side's 900 registrations journal 1,800 entries: the journal outgrows its
    // snapshot (300 nodes) at least once, and the report reads the
    // compactions from mip4-ha's log (the loop's pause, not timed here).
    assert!(r.compactions >= 1, "{}", r.compactions);
    assert_eq!(r.runs.len(), 6);
    let at = |side: bench_ha::Side| r.runs.iter().filter(|x| x.ha == side).collect::<Vec<_>>();
    let (small, full) = (at(bench_ha::Side::Small), at(bench_ha::Side::Full));
    assert_eq!((small.len(), full.len()), (3, 3));
    assert!(small.iter().all(|x| x.bindings == 100) && full.iter().all(|x| x.bindings == 300));
    // The runs come in pairs, one on either side, the first alternating.
    let order: Vec<bench_ha::Side> = r.runs.iter().map(|x| x.ha).collect();
    use bench_ha::Side::{Full, Small};
    assert_eq!(order, [Small, Full, Full, Small, Small, Full]);
    for run in &r.runs {
        assert!(
            run.registrations_per_s > 0.0 && run.echo_pps > 0.0,
            "{run:?}"
        );
        // CPU time on either side, from the kernel's account of it.
        assert!(
            run.echo_cpu_us > 0.0 && run.registration_cpu_us > 0.0,
            "{run:?}"
        );
        let c = run.echo_cpu_us / run.registration_cpu_us;
        assert!((run.cpu_ratio - c).abs() < 0.01, "{run:?}");
        // A run's silence is one of the bench's.
        assert!(
            run.longest_silence_ms <= r.longest_silence_ms,
            "{run:?} {}",
            r.longest_silence_ms
        );
        let q = run.registrations_per_s / run.echo_pps;
        assert!(
            (run.ratio - q).abs() < 0.001,
            "a run's ratio is its own: {run:?}"
        );
    }
    let med = |v: &[&bench_ha::Run], f: fn(&bench_ha::Run) -> f64| {
        median(&v.iter().map(|x| f(x)).collect::<Vec<_>>())
    };
    assert_eq!(r.registrations_per_s, med(&full, |x| x.registrations_per_s));
    assert_eq!(r.echo_pps, med(&full, |x| x.echo_pps));
    assert!((r.ratio - med(&full, |x| x.ratio)).abs() < 0.001);
    assert!(r.ratio_worst <= r.ratio);
    // The flatness is the median of the pairs' quotients, each of its
    // own two runs; the unpaired quotient of the medians is kept beside.
    assert_eq!(r.pairs, bench_ha::pairs(&r.runs));
    assert_eq!(r.pairs.len(), 3);
    let q: Vec<f64> = r.pairs.iter().map(|p| p.flat_ratio).collect();
    assert!((r.flat_ratio - median(&q)).abs() < 0.001, "{r:?}");
    assert!(r.flat_ratio_lowest <= r.flat_ratio && r.flat_ratio <= r.flat_ratio_highest);
    let [q1, q3] = r.flat_ratio_quartiles;
    assert!(r.flat_ratio_lowest <= q1 && q1 <= q3 && q3 <= r.flat_ratio_highest);
    let c: Vec<f64> = r.pairs.iter().map(|p| p.flat_cpu_ratio).collect();
    assert!((r.flat_cpu_ratio - median(&c)).abs() < 0.001, "{r:?}");
    let [c1, c3] = r.flat_cpu_ratio_quartiles;
    assert!(c1 <= r.flat_cpu_ratio && r.flat_cpu_ratio <= c3, "{r:?}");
    // 3 pairs: the first half is the first pair, the second the rest.
    let second = median(&c[1..]);
    assert_eq!(r.flat_cpu_ratio_halves[0], c[0], "{r:?}");
    assert!((r.flat_cpu_ratio_halves[1] - second).abs() < 0.001, "{r:?}");
    assert!((r.flat_ratio_unpaired - r.small_ratio / r.ratio).abs() < 0.01);
    assert!(r.rss_kib_full >= r.rss_kib_small && r.rss_kib_small > 0);
    assert!(r.bytes_per_binding.is_finite());

    let json = serde_json::to_value(&r).unwrap();
    for k in [
        "registrations_per_s",
        "echo_pps",
        "ratio",
        "bytes_per_binding",
        "bindings",
        "flat_ratio",
        "flat_cpu_ratio",
    ] {
        assert!(json[k].is_number(), "--json has {k}: {json}");
    }
    assert!(r.fill_longest_silence_ms <= r.longest_silence_ms);
    // What of mip4-ha's memory sits in huge pages is part of its RSS.
    assert!(r.huge_kib_full <= r.rss_kib_full, "{r:?}");
    let md = bench_ha::markdown_section(&opts, &r);
    let huge = format!(
        "| mip4-ha's memory in huge pages at 300 bindings (AnonHugePages of its RSS) | {} of {} MiB |",
        r.huge_kib_full / 1024,
        r.rss_kib_full / 1024
    );
    assert!(md.contains(&huge), "{md}");
    assert!(
        md.starts_with("## The home agent at scale") && md.contains("| 300 | 3 |"),
        "{md}"
    );
    // Each size's row ends with its runs' longest silence, median and
    // worst: a stall in one run shows there.
    let worst = full.iter().map(|x| x.longest_silence_ms).max().unwrap();
    let row = md.lines().find(|l| l.starts_with("| 300 | 3 |")).unwrap();
    assert!(row.ends_with(&format!(" | {worst} |")), "{row}");
}
