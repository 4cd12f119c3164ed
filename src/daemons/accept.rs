//! The accept loop's answer to a failing `accept`, shared by every unix
//! socket a daemon listens on (the control socket, mip4d's plugin
//! socket). Out of descriptors (EMFILE, ENFILE) or kernel memory, the
//! pending connection stays in the backlog and the listener stays
//! readable: retrying at once spins a core for as long as the shortage
//! lasts. So the loop waits, 10 ms at first and twice as long each time
//! up to 1 s, says so (at most once a minute: a shortage comes back as
//! soon as the backlog's connections take the freed descriptors) and says
//! when it accepts again, and counts every failure and every wait
//! ([`accept_counters`], in each daemon's `status`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;
use tokio::net::{UnixListener, UnixStream};
use tracing::{info, warn};

const FIRST_WAIT: Duration = Duration::from_millis(10);
const LONGEST_WAIT: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(60);

/// This process's accept failures and waits, over all its listeners.
static ERRORS: AtomicU64 = AtomicU64::new(0);
static BACKOFFS: AtomicU64 = AtomicU64::new(0);

/// What [`accept`] met so far in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AcceptCounters {
    /// `accept` calls that failed.
    pub errors: u64,
    /// Waits before the next `accept` (one per failure).
    pub backoffs: u64,
}

pub fn accept_counters() -> AcceptCounters {
    AcceptCounters {
        errors: ERRORS.load(Ordering::Relaxed),
        backoffs: BACKOFFS.load(Ordering::Relaxed),
    }
}

/// The wait of one listener's shortage: grows while `accept` fails,
/// starts over once it succeeds.
#[derive(Debug, Default)]
pub struct Backoff {
    wait: Option<Duration>,
    failures: u64,
    /// This shortage was logged.
    logged: bool,
    last_log: Option<Instant>,
}

fn is_shortage(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The next connection of `listener` (`what` names it in the log),
/// waiting after each failure as the module says.
pub async fn accept(listener: &UnixListener, what: &str, backoff: &mut Backoff) -> UnixStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if backoff.logged {
                    info!(
                        socket = what,
                        failures = backoff.failures,
                        "accepting connections again"
                    );
                }
                *backoff = Backoff {
                    last_log: backoff.last_log,
                    ..Backoff::default()
                };
                return stream;
            }
            Err(e) => {
                ERRORS.fetch_add(1, Ordering::Relaxed);
                BACKOFFS.fetch_add(1, Ordering::Relaxed);
                backoff.failures += 1;
                let now = Instant::now();
                // A connection that was gone before it was accepted
                // (ECONNABORTED) is no shortage.
                if is_shortage(&e)
                    && !backoff.logged
                    && backoff.last_log.is_none_or(|t| now - t >= LOG_EVERY)
                {
                    warn!(socket = what, error = %e, "cannot accept a connection: waiting, up to 1 s between tries, until descriptors are free");
                    backoff.logged = true;
                    backoff.last_log = Some(now);
                }
                let wait = match backoff.wait {
                    None => FIRST_WAIT,
                    Some(w) => (w * 2).min(LONGEST_WAIT),
                };
                backoff.wait = Some(wait);
                tokio::time::sleep(wait).await;
            }
        }
    }
}
