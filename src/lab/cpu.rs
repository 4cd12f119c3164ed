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
//!
//! Beside it, the process's page faults (`/proc/PID/stat`'s minflt and
//! majflt, all its threads' alike, those gone included): under TCG a
//! fault is dear (an emulated trap, the kernel's page walk, QEMU's soft
//! TLB refilled), so a move that faults its code or heap back in costs
//! far more in the guest than on the host.

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
    /// The process's minor page faults so far (all threads)...
    pub minflt: u64,
    /// ... and major ones (read from disk).
    pub majflt: u64,
    /// How many times its listed threads were put on a CPU (schedstat's
    /// third field): each a context switch, dear under TCG (QEMU's soft
    /// TLB flushed with the page tables).
    pub runs: u64,
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

    /// The page faults from `earlier` to this one, (minor, major), and
    /// the times its threads were put on a CPU.
    pub fn faults_since(&self, earlier: &Reading) -> (u64, u64, u64) {
        (
            self.minflt.saturating_sub(earlier.minflt),
            self.majflt.saturating_sub(earlier.majflt),
            self.runs.saturating_sub(earlier.runs),
        )
    }
}

/// A process's threads as listed once: each one's schedstat file and
/// whether it is the plugin's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Threads {
    stats: Vec<(PathBuf, bool)>,
    /// The process's /proc/PID/stat (its page faults).
    process_stat: PathBuf,
}

impl Threads {
    /// Their CPU time now; None if the process is gone.
    pub fn read(&self) -> Option<Reading> {
        let mut r = Reading::default();
        let mut any = false;
        for (path, plugin) in &self.stats {
            let Some((ns, runs)) = std::fs::read_to_string(path)
                .ok()
                .and_then(|s| Some((first_field(&s)?, third_field(&s)?)))
            else {
                continue;
            };
            any = true;
            r.total_ns += ns;
            r.runs += runs;
            if *plugin {
                r.plugin_ns += ns;
            }
        }
        if let Some((minflt, majflt)) = std::fs::read_to_string(&self.process_stat)
            .ok()
            .and_then(|s| faults(&s))
        {
            (r.minflt, r.majflt) = (minflt, majflt);
        }
        any.then_some(r)
    }
}

/// Process `pid`'s threads now; None if it is gone.
pub fn threads(pid: i32) -> Option<Threads> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut t = Threads {
        process_stat: PathBuf::from(format!("/proc/{pid}/stat")),
        ..Threads::default()
    };
    for task in std::fs::read_dir(dir).ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        t.stats.push((
            task.path().join("schedstat"),
            comm.starts_with(PLUGIN_THREAD_PREFIX),
        ));
    }
    Some(t)
}

/// /proc/PID/stat: "PID (COMM) STATE PPID ... MINFLT CMINFLT MAJFLT ...",
/// minflt and majflt the 10th and 12th fields (proc(5)); COMM may hold
/// spaces and parentheses, so the fields are counted after its last `)`.
fn faults(stat: &str) -> Option<(u64, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    // After COMM: STATE (3) PPID PGRP SESSION TTY_NR TPGID FLAGS MINFLT (10)
    // CMINFLT MAJFLT (12).
    let mut f = rest.split_whitespace().skip(7);
    let minflt = f.next()?.parse().ok()?;
    let majflt = f.nth(1)?.parse().ok()?;
    Some((minflt, majflt))
}

/// schedstat: "RUN_NS WAIT_NS TIMESLICES".
fn first_field(s: &str) -> Option<u64> {
    s.split_whitespace().next()?.parse().ok()
}

/// schedstat's TIMESLICES: how many times the thread ran.
fn third_field(s: &str) -> Option<u64> {
    s.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_read_after_the_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 1234 0 7 0 5 6 0 0 20 0";
        assert_eq!(faults(stat), Some((1234, 7)));
        assert_eq!(faults("42 (x) S 1"), None);
        assert_eq!(faults("no name"), None);
    }

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
        assert_eq!(third_field("123 456 7\n"), Some(7));
        let (minflt, _, runs) = after.faults_since(&before);
        assert!(runs > 0, "the busy thread ran");
        let total = t.read().expect("this process");
        assert!(total.minflt > 0, "{total:?}");
        assert!(minflt <= total.minflt);
        assert!(threads(i32::MAX).is_none());
    }
}
