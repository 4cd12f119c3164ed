//! The kernel tier's guest as two machines (issue 14 §1): on a real
//! laptop and gateway the MN's move and the gateway's handling of its
//! update run on separate CPUs, while in a one-vCPU guest every lab host
//! takes turns on the same one, so the gateway's charon (25-40 ms of it
//! under TCG per update) queues behind the MN's own move work.
//!
//! With two or more vCPUs (`MIP4_VM_SMP`, multi-threaded TCG) the tier's
//! guest script sets [`PIN_VAR`]; the lab then pins the MN's processes
//! (its charon, mip4d, its pings) and the MN's timing thread to one vCPU,
//! [`MN_CPU`], and the rest (the gateway's charon, the HA, the
//! correspondent, the NATs' work, the lab itself) to another, [`REST_CPU`],
//! with sched_setaffinity(2). Never on the host lab: the variable is the
//! tier's, and a guest with one CPU pins nothing.

use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::unistd::Pid;

/// Set to `1` by the tier's guest script (src/lab/vm.rs).
pub const PIN_VAR: &str = "MIP4_VM_PIN";
/// The MN's machine.
pub const MN_CPU: usize = 1;
/// Everything else: gateway, HA, correspondent, NATs, the lab.
pub const REST_CPU: usize = 0;
/// The lab host that is the MN.
const MN_HOST: &str = "mn";

/// Whether this run pins: in the tier's guest ([`PIN_VAR`]) with more
/// than one CPU.
pub fn enabled() -> bool {
    std::env::var(PIN_VAR).is_ok_and(|v| v == "1") && cpus() > 1
}

/// The machine's CPUs online: not the calling thread's affinity, which
/// the pinning itself narrows to one.
pub fn cpus() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    count_cpus(&online)
}

/// The CPUs in a kernel CPU list ("0", "0-1", "0,2-3").
fn count_cpus(list: &str) -> usize {
    list.trim()
        .split(',')
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => r.parse::<usize>().ok().map(|_| 1),
        })
        .sum()
}

/// The CPU of lab host `host`'s machine.
pub fn cpu_of(host: &str) -> usize {
    match host {
        MN_HOST => MN_CPU,
        _ => REST_CPU,
    }
}

/// Pins the calling thread (and the threads and processes it starts
/// later) to `cpu`, when [`enabled`]; false when it did not.
pub fn pin_this_thread(cpu: usize) -> bool {
    if !enabled() {
        return false;
    }
    let mut set = CpuSet::new();
    set.set(cpu).is_ok() && sched_setaffinity(Pid::from_raw(0), &set).is_ok()
}

/// Runs `f` (a spawn) with the calling thread on `host`'s machine, so
/// that the process it starts inherits that CPU, then puts the thread
/// back where it was. Without pinning, just `f()`.
pub fn on_machine_of<T>(host: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let Ok(before) = sched_getaffinity(Pid::from_raw(0)) else {
        return f();
    };
    pin_this_thread(cpu_of(host));
    let out = f();
    let _ = sched_setaffinity(Pid::from_raw(0), &before);
    out
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list` of its
/// status, e.g. "1" or "0-1"): the events show where each daemon ran.
pub fn cpus_allowed(pid: i32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// The CPUs to watch for stalls: each machine's when pinning (either
/// standing still can hold a move up), else none in particular.
pub fn watched_cpus() -> Vec<Option<usize>> {
    match enabled() {
        true => vec![Some(MN_CPU), Some(REST_CPU)],
        false => vec![None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mn_has_a_machine_of_its_own() {
        assert_eq!(cpu_of("mn"), MN_CPU);
        for host in ["vpngw", "iha", "cn", "natb"] {
            assert_eq!(cpu_of(host), REST_CPU, "{host}");
        }
        assert_ne!(MN_CPU, REST_CPU);
    }

    #[test]
    fn cpu_lists_are_counted() {
        assert_eq!(count_cpus("0\n"), 1);
        assert_eq!(count_cpus("0-1\n"), 2);
        assert_eq!(count_cpus("0,2-3"), 3);
        assert_eq!(count_cpus(""), 0);
    }

    #[test]
    fn pinning_a_thread_leaves_the_machines_cpus_as_they_are() {
        // Once the lab's thread is pinned to one CPU, the count that
        // decides whether to pin must still see them all.
        let before = cpus();
        let after = std::thread::spawn(|| {
            let own = sched_getaffinity(Pid::from_raw(0)).expect("own affinity");
            let first = (0..CpuSet::count()).find(|&i| own.is_set(i).unwrap_or(false));
            let mut one = CpuSet::new();
            one.set(first.expect("a CPU")).expect("in range");
            sched_setaffinity(Pid::from_raw(0), &one).expect("narrowed");
            cpus()
        })
        .join()
        .expect("thread");
        assert_eq!(after, before);
        assert!(before >= 1);
    }

    #[test]
    fn the_host_lab_pins_nothing() {
        // The tier's variable is not set outside its guest.
        if std::env::var_os(PIN_VAR).is_none() {
            assert!(!enabled());
            assert_eq!(watched_cpus(), vec![None]);
            let before = sched_getaffinity(Pid::from_raw(0)).expect("own affinity");
            assert!(!pin_this_thread(MN_CPU));
            assert_eq!(on_machine_of("mn", || 7), 7);
            let after = sched_getaffinity(Pid::from_raw(0)).expect("own affinity");
            assert_eq!(before, after);
        }
        let own = cpus_allowed(std::process::id() as i32).expect("own status");
        assert!(!own.is_empty(), "{own}");
    }
}
