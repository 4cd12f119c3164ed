//! What wakes a daemon's loop besides its sockets: the core's next timer
//! (`poll_timeout`, the quinn-proto shape) and the signals that ask it to
//! stop.

use std::time::Instant;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Sleeps until `deadline`, or forever when the core has no timer.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM and SIGINT, the two ways to ask a daemon to stop.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub fn new() -> Result<Self, String> {
        let listen = |kind| signal(kind).map_err(|e| format!("signal handler: {e}"));
        Ok(StopSignals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    /// The next stop signal's name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
