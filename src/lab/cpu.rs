//! The CPU time a process spent, read from its threads' schedstat, for
//! `lab::timed-move`'s per-move cost (issue 14 §1 on the kernel tier):
//! the guest has one emulated CPU, so every CPU-millisecond mip4d, the
//! plugin or the gateway spends at a move is one charon waits for.
//!
//! `/proc/PID/task/TID/schedstat`'s first field is the thread's time on a
//! CPU in ns (the scheduler's `sum_exec_runtime`, user and kernel time
//! alike), unlike `/proc/PID/stat`'s clock ticks (10 ms: coarser than a
//! move's share). The threads are listed once ([`threads`]) and every
//! later reading takes only their schedstat ([`Threads::read`]): one file
//! per thread, as little as the reading itself costs inside a move. A
//! thread started after the listing is not counted; charon's pool and
//! mip4d's runtime keep theirs.

use std::path::PathBuf;

/// Threads whose name starts so are the mip4 plugin's inside charon (the
/// bridge, `ffi::mip4_bridge_run`, and its reader, `bridge::Conn`); the
/// plugin's short jobs on charon's own threads count as charon's.
pub const PLUGIN_THREAD_PREFIX: &str = "mip4-";

/// One process's CPU time at one instant, ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// All its listed threads.
    pub total_ns: u64,
    /// Those named [`PLUGIN_THREAD_PREFIX`]…
    pub plugin_ns: u64,
}

impl Reading {
    /// What was spent from `earlier` to this one, ms (0.01 ms steps):
    /// (all threads, the plugin's).
    pub fn since(&self, earlier: &Reading) -> (f64, f64) {
        let ms = |a: u64, b: u64| (a.saturating_sub(b) as f64 / 1e4).round() / 100.0;
        (
            ms(self.total_ns, earlier.total_ns),
            ms(self.plugin_ns, earlier.plugin_ns),
        )
    }
}

/// A process's threads as listed once: each one's schedstat file and
/// whether it is the plugin's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threads {
    stats: Vec<(PathBuf, bool)>,
}

impl Threads {
    /// Their CPU time now; None if the process is gone.
    pub fn read(&self) -> Option<Reading> {
        let mut r = Reading::default();
        let mut any = false;
        for (path, plugin) in &self.stats {
            let Some(ns) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| first_field(&s))
            else {
                continue;
            };
            any = true;
            r.total_ns += ns;
            if *plugin {
                r.plugin_ns += ns;
            }
        }
        any.then_some(r)
    }
}

/// Process `pid`'s threads now; None if it is gone.
pub fn threads(pid: i32) -> Option<Threads> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut t = Threads::default();
    for task in std::fs::read_dir(dir).ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        t.stats.push((
            task.path().join("schedstat"),
            comm.starts_with(PLUGIN_THREAD_PREFIX),
        ));
    }
    Some(t)
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
        let (named_tx, named_rx) = std::sync::mpsc::channel::<()>();
        let (listed_tx, listed_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let busy = std::thread::Builder::new()
            .name(format!("{PLUGIN_THREAD_PREFIX}test"))
            .spawn(move || {
                // The new thread names itself (its comm) once it runs: a
                // listing before that would take it for another's.
                named_tx.send(()).expect("main waits");
                listed_rx.recv().expect("listed");
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < std::time::Duration::from_millis(30) {
                    x = x.wrapping_add(std::hint::black_box(1));
                }
                go_tx.send(()).expect("main waits");
                // Stays until read (its schedstat goes with it).
                std::thread::park();
                x
            })
            .expect("thread");
        named_rx.recv().expect("busy thread started");
        let t = threads(pid).expect("this process");
        let before = t.read().expect("this process");
        listed_tx.send(()).expect("thread waits");
        go_rx.recv().expect("busy loop done");
        let after = t.read().expect("this process");
        busy.thread().unpark();
        busy.join().expect("joined");
        let (total_ms, plugin_ms) = after.since(&before);
        // Thread CPU time, not wall time: the 30 ms busy loop ran on a
        // CPU for some of it at least, however loaded the machine.
        assert!(plugin_ms > 0.0, "{plugin_ms}");
        assert!(total_ms >= plugin_ms, "{total_ms} {plugin_ms}");
        assert_eq!(first_field("123 456 7\n"), Some(123));
        assert_eq!(first_field(""), None);
        assert!(threads(i32::MAX).is_none());
    }
}
