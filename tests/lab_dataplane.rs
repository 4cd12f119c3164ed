//! The `dataplane` scenario (issue 14 §5): mip4d's memory read from /proc
//! and bulk TCP through the userspace IP-in-IP tunnel against the same
//! links without it. The figures themselves are `make bench`'s
//! (docs/PERFORMANCE.md); this shows the scenario measures what it says.
//! Needs root and network namespaces.

mod lab_support;

use lab_support::{figure, run_passing};

#[test]
fn lab_dataplane_carries_bulk_tcp_through_the_tunnel_and_reads_mip4d_memory() {
    let s = run_passing("dataplane");
    assert_eq!(
        s.platform.tunnels.get("mn").map(String::as_str),
        Some("userspace")
    );
    // Every pair moved data both ways: through the tunnel (to the home
    // address) and on the bare path (to the care-of address).
    assert_eq!(figure(&s, "bulk_pairs"), 20.0);
    let pairs: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.event == "throughput_pair")
        .collect();
    assert_eq!(pairs.len(), 20);
    for p in pairs {
        for k in ["tunnel_mbit_s", "bare_mbit_s"] {
            assert!(p.detail[k].as_f64().is_some_and(|v| v > 0.0), "{p:?}");
        }
    }
    assert!(figure(&s, "bulk_ratio") > 0.0);
    // The memory figures are mip4d's and hang together: resident is
    // anonymous plus file-backed, the peak is at least what is resident,
    // and a running daemon has written some memory of its own.
    for at in ["idle", "moved", "bulk"] {
        let f = |k: &str| figure(&s, &format!("{at}_{k}_kib"));
        assert!(
            f("rss") >= f("anon") && f("rss") >= f("file"),
            "{at}: {:?}",
            s.figures
        );
        assert!(f("hwm") >= f("rss"), "{at}: {:?}", s.figures);
        assert!(f("private_dirty") > 0.0, "{at}: {:?}", s.figures);
    }
}
