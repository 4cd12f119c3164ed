//! Real-time scheduling for the calling thread (sched(7)): the lab's
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
