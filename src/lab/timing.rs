//! Timing a handover where the clock cannot be trusted to run evenly: the
//! kernel tier's guest is emulated (TCG) on a shared machine and stops
//! for whole seconds when the host does not run it.
//!
//! - [`RouteWatch`]: when the address change itself happened, from the
//!   MN's own rtnetlink (the new default route's RTM_NEWROUTE, received
//!   by a real-time thread in the MN's namespace), not from when the
//!   lab's `ip` command started (a process start alone costs 0.1-0.5 s
//!   under TCG).
//! - [`Heartbeat`]: a real-time thread that wakes every
//!   [`Heartbeat::PERIOD`]; a wake-up later than [`Heartbeat::LATE`]
//!   means nothing in the guest ran (the vCPU was not scheduled, or the
//!   guest kernel held the CPU): a stall. The stalls within a measured
//!   interval are reported beside it, so a figure can be read as the
//!   protocol's time plus the machine's.
//!
//! Both threads run SCHED_FIFO (`chrt`), so the guest's own processes
//! (charon's crypto, the lab's commands) never delay them; only a stall
//! of the whole guest does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cpu::Threads;
use super::netns::Netns;
use super::{Error, Result};
use crate::netlink::watch::{NetEvent, Watcher};

/// Unix time now, seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Gives the calling thread SCHED_FIFO priority `prio` (util-linux's
/// `chrt` on its thread id): false where that is not allowed.
pub(super) fn realtime(prio: u8) -> bool {
    let Ok(link) = std::fs::read_link("/proc/thread-self") else {
        return false;
    };
    // "PID/task/TID"
    let Some(tid) = link.file_name().and_then(|t| t.to_str()).map(String::from) else {
        return false;
    };
    std::process::Command::new("chrt")
        .args(["-f", "-p", &prio.to_string(), &tid])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One stall: from the deadline the heartbeat missed to when it ran,
/// unix seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub from: f64,
    pub to: f64,
}

/// Milliseconds of `stalls` that fall within `[t0, t1]` (unix seconds).
pub fn stalled_ms(stalls: &[Stall], t0: f64, t1: f64) -> f64 {
    let s: f64 = stalls
        .iter()
        .map(|s| (s.to.min(t1) - s.from.max(t0)).max(0.0))
        .sum();
    // `+ 0.0`: no "-0.0" in a report.
    (s * 1e4).round() / 10.0 + 0.0
}

/// The stall detector (see the module's text). Stops when dropped.
/// On the tier's guest as two machines (src/lab/machines.rs) one thread
/// watches each machine's CPU, and a stall is time when either stood
/// still (their stalls merged: either can hold a move up).
pub struct Heartbeat {
    stalls: Arc<Mutex<Vec<Stall>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Whether the threads got real-time priority.
    pub realtime: bool,
}

impl Heartbeat {
    /// How often the thread wakes.
    pub const PERIOD: Duration = Duration::from_millis(2);
    /// A wake-up this much past its deadline counts as a stall (the
    /// guest's timer latency under TCG is far below it).
    pub const LATE: Duration = Duration::from_millis(3);

    pub fn start() -> Heartbeat {
        let stalls: Arc<Mutex<Vec<Stall>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let cpus = super::machines::watched_cpus();
        let threads = cpus
            .iter()
            .map(|&cpu| {
                let (s, st, tx) = (stalls.clone(), stop.clone(), tx.clone());
                std::thread::spawn(move || {
                    if let Some(cpu) = cpu {
                        super::machines::pin_this_thread(cpu);
                    }
                    let _ = tx.send(realtime(60));
                    beat(&s, &st);
                })
            })
            .collect();
        let realtime = (0..cpus.len()).all(|_| rx.recv().unwrap_or(false));
        Heartbeat {
            stalls,
            stop,
            threads,
            realtime,
        }
    }

    /// The stalls so far, those of different CPUs merged where they
    /// overlap, in order.
    pub fn stalls(&self) -> Vec<Stall> {
        let all = self
            .stalls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        merged(all)
    }
}

/// One heartbeat thread's loop, until `stop`.
fn beat(stalls: &Mutex<Vec<Stall>>, stop: &AtomicBool) {
    let mut deadline = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        deadline += Heartbeat::PERIOD;
        let now = Instant::now();
        if let Some(d) = deadline.checked_duration_since(now) {
            std::thread::sleep(d);
        }
        let woke = Instant::now();
        let late = woke.saturating_duration_since(deadline);
        if late > Heartbeat::LATE {
            let to = unix_now();
            let from = to - late.as_secs_f64();
            stalls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Stall { from, to });
            // Start again from now: one stall, one entry.
            deadline = woke;
        }
    }
}

/// `stalls` in order, overlapping ones joined.
fn merged(mut stalls: Vec<Stall>) -> Vec<Stall> {
    stalls.sort_by(|a, b| a.from.total_cmp(&b.from));
    let mut out: Vec<Stall> = Vec::with_capacity(stalls.len());
    for s in stalls {
        match out.last_mut() {
            Some(last) if s.from <= last.to => last.to = last.to.max(s.to),
            _ => out.push(s),
        }
    }
    out
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Default routes of the main table added in one namespace, stamped when
/// a real-time thread there received the kernel's notification.
pub struct RouteWatch {
    added: Arc<Mutex<Vec<Added>>>,
    /// Processes whose CPU time is read at each new default route
    /// ([`RouteWatch::read_cpu_of`]).
    cpu_of: Arc<Mutex<Vec<(String, Threads)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub realtime: bool,
}

impl RouteWatch {
    /// Watches `ns`; returns once the thread listens.
    pub fn start(ns: &Netns) -> Result<RouteWatch> {
        let added: Arc<Mutex<Vec<Added>>> = Arc::default();
        let cpu_of: Arc<Mutex<Vec<(String, Threads)>>> = Arc::default();
        let pids = cpu_of.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<std::result::Result<bool, String>>();
        let (a, st) = (added.clone(), stop.clone());
        let (name, host) = (ns.name().to_string(), ns.host().to_string());
        let thread = std::thread::spawn(move || {
            let rt = match super::netns::runtime_in(&name) {
                Ok(rt) => rt,
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            };
            // The MN's own timing: on the MN's machine.
            super::machines::pin_this_thread(super::machines::cpu_of(&host));
            let rt_prio = realtime(70);
            rt.block_on(async move {
                let mut w = match Watcher::new() {
                    Ok(w) => w,
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                let _ = tx.send(Ok(rt_prio));
                while !st.load(Ordering::Relaxed) {
                    let next = tokio::time::timeout(Duration::from_millis(100), w.next());
                    match next.await {
                        Ok(Some(NetEvent::RouteAdded {
                            table: 254,
                            prefix_len: 0,
                            ..
                        })) => {
                            let t = unix_now();
                            let of = pids.lock().unwrap_or_else(|e| e.into_inner()).clone();
                            let cpu = read_cpu(&of);
                            let read_ms = (unix_now() - t) * 1e3;
                            a.lock().unwrap_or_else(|e| e.into_inner()).push(Added {
                                t,
                                cpu,
                                read_ms,
                            });
                        }
                        Ok(None) => return,
                        _ => {}
                    }
                }
            });
        });
        let realtime = match rx.recv() {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(Error::Other(format!("route watch in {}: {e}", ns.name()))),
            Err(_) => return Err(Error::Other("route watch thread ended".into())),
        };
        Ok(RouteWatch {
            added,
            cpu_of,
            stop,
            thread: Some(thread),
            realtime,
        })
    }

    /// The first default route added at or after `since` (unix seconds).
    pub fn first_since(&self, since: f64) -> Option<f64> {
        self.added_since(since).map(|a| a.t)
    }

    /// The first new default route at or after `since`, with the CPU
    /// times read then.
    pub fn added_since(&self, since: f64) -> Option<Added> {
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|a| a.t >= since)
            .cloned()
    }

    /// From now on, each new default route also reads these processes'
    /// CPU time (label, threads), in the watch's real-time thread.
    pub fn read_cpu_of(&self, pids: Vec<(String, Threads)>) {
        *self.cpu_of.lock().unwrap_or_else(|e| e.into_inner()) = pids;
    }
}

/// A new default route: when (unix seconds), the CPU times of the
/// processes named by [`RouteWatch::read_cpu_of`] at that moment, and how
/// long reading them took (ms: the watch's own cost, inside the move).
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub t: f64,
    pub cpu: Vec<(String, super::cpu::Reading)>,
    pub read_ms: f64,
}

/// Each process's CPU time now (those gone are left out).
pub fn read_cpu(of: &[(String, Threads)]) -> Vec<(String, super::cpu::Reading)> {
    of.iter()
        .filter_map(|(label, t)| Some((label.clone(), t.read()?)))
        .collect()
}

impl Drop for RouteWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalls_count_only_within_the_interval() {
        let s = [
            Stall { from: 0.0, to: 1.0 },
            Stall { from: 2.0, to: 2.5 },
            Stall {
                from: 9.0,
                to: 10.0,
            },
        ];
        assert_eq!(stalled_ms(&s, 0.5, 3.0), 1000.0);
        assert_eq!(stalled_ms(&s, 3.0, 8.0), 0.0);
    }

    #[test]
    fn two_machines_stalls_overlapping_count_once() {
        let s = merged(vec![
            Stall { from: 2.0, to: 3.0 },
            Stall { from: 0.0, to: 1.0 },
            Stall { from: 0.5, to: 1.5 },
            Stall { from: 3.0, to: 4.0 },
        ]);
        assert_eq!(
            s,
            [Stall { from: 0.0, to: 1.5 }, Stall { from: 2.0, to: 4.0 }]
        );
        assert_eq!(stalled_ms(&s, 0.0, 10.0), 3500.0);
    }
}
