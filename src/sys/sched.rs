//! Scheduling for the calling thread (sched(7)). Real time: the lab's
//! delay line stands in for netem, which the kernel runs from its own
//! timers whatever the load; a relay thread under SCHED_OTHER would hold
//! frames as long as the scheduler keeps it off the CPU, on top of its
//! delay.

use std::io;

/// Puts the calling thread under SCHED_FIFO at `priority` (1-99). Needs
/// CAP_SYS_NICE (the lab runs as root).
pub fn set_fifo(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid
    // 0 is the calling thread, whose policy alone changes.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Lowers the calling thread's share of a busy CPU (nice 10, its own:
/// Linux keeps a nice value per thread, setpriority(2) NOTES), for
/// background work that must not take the CPU from a latency-bound loop
/// in the same process, yet still finishes on a saturated machine (under
/// SCHED_IDLE it might never run).
pub fn set_background() -> io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain integers; PRIO_PROCESS with a thread id changes that
    // thread's nice value alone.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, 10) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    /// The nice value is the calling thread's alone: another thread of
    /// the process (the one that spawned it) keeps its own.
    #[test]
    fn background_lowers_the_calling_thread_only() {
        let nice = |tid: libc::pid_t| {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // After the command's ")": field 19 (nice) is the 17th.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            rest.split(' ').nth(16).unwrap().parse::<i32>().unwrap()
        };
        // SAFETY: gettid cannot fail.
        let me = unsafe { libc::gettid() };
        let before = nice(me);
        let theirs = std::thread::spawn(move || {
            super::set_background().unwrap();
            // SAFETY: as above.
            nice(unsafe { libc::gettid() })
        })
        .join()
        .unwrap();
        assert_eq!(theirs, 10);
        assert_eq!(nice(me), before);
    }
}
