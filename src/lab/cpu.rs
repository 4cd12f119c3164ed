//! The CPU time a process spent, read from its threads' schedstat, for
//! `lab::timed-move`'s per-move cost (issue 14 §1 on the kernel tier):
//! the guest has one emulated CPU, so every CPU-millisecond mip4d, the
//! plugin or the gateway spends at a move is one charon waits for.
//!
//! `/proc/PID/task/TID/schedstat`'s first field is the thread's time on a
//! CPU in ns (the scheduler's `sum_exec_runtime`, user and kernel time
//! alike), unlike `/proc/PID/stat`'s clock ticks (10 ms: coarser than a
//! move's share). A thread that ends between two readings takes its time
//! with it; the processes read here keep their threads.

use std::path::Path;

/// Threads whose name starts so are the mip4 plugin's inside charon (the
/// bridge, `ffi::mip4_bridge_run`, and its reader, `bridge::Conn`).
pub const PLUGIN_THREAD_PREFIX: &str = "mip4-";

/// One process's CPU time at one instant, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// All its threads.
    pub total_ns: u64,
    /// Those named [`PLUGIN_THREAD_PREFIX`]…
    pub plugin_ns: u64,
}

impl Reading {
    /// What was spent from `earlier` to this one, ms (0.01 ms steps).
    pub fn since(&self, earlier: &Reading) -> (f64, f64) {
        let ms = |a: u64, b: u64| (a.saturating_sub(b) as f64 / 1e4).round() / 100.0;
        (
            ms(self.total_ns, earlier.total_ns),
            ms(self.plugin_ns, earlier.plugin_ns),
        )
    }
}

/// Process `pid`'s threads now; None if it is gone.
pub fn read(pid: i32) -> Option<Reading> {
    read_at(&Path::new("/proc").join(pid.to_string()))
}

fn read_at(proc_dir: &Path) -> Option<Reading> {
    let mut r = Reading::default();
    for task in std::fs::read_dir(proc_dir.join("task")).ok()?.flatten() {
        let dir = task.path();
        let Some(ns) = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| first_field(&s))
        else {
            continue;
        };
        r.total_ns += ns;
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.starts_with(PLUGIN_THREAD_PREFIX) {
            r.plugin_ns += ns;
        }
    }
    Some(r)
}

/// schedstat: "RUN_NS WAIT_NS TIMESLICES".
fn first_field(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_thread_of_this_process_is_counted_and_named_threads_apart() {
        let pid = std::process::id() as i32;
        let before = read(pid).expect("this process");
        let busy = std::thread::Builder::new()
            .name(format!("{PLUGIN_THREAD_PREFIX}test"))
            .spawn(|| {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(30) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                // Read while the thread still exists.
                (x, read(std::process::id() as i32).expect("this process"))
            })
            .expect("thread")
            .join()
            .expect("joined");
        let (total_ms, plugin_ms) = busy.1.since(&before);
        // Thread CPU time, not wall time: at least most of the 30 ms busy
        // loop, unless the machine did not run it at all.
        assert!(plugin_ms > 0.0, "{plugin_ms}");
        assert!(total_ms >= plugin_ms, "{total_ms} {plugin_ms}");
        assert_eq!(first_field("123 456 7\n"), Some(123));
        assert_eq!(first_field(""), None);
        assert!(read(i32::MAX).is_none());
    }
}
