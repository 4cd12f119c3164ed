//! What wakes a daemon's loop besides its sockets: the core's next timer
//! (`poll_timeout`, the quinn-proto shape), the signals that ask it to
//! stop, and SIGHUP.

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

/// SIGHUP, caught by every daemon: the default action would kill it
/// without its cleanup (issue 13). mip4-ha reloads its configuration; a
/// daemon without a reload says that it ignores it.
#[derive(Debug)]
pub struct Hangup(Signal);

impl Hangup {
    pub fn new() -> Result<Self, String> {
        signal(SignalKind::hangup())
            .map(Hangup)
            .map_err(|e| format!("signal handler: {e}"))
    }

    pub async fn recv(&mut self) {
        self.0.recv().await;
    }
}

/// The log line of a daemon that has no reload.
pub fn hangup_ignored(daemon: &str) {
    tracing::info!("SIGHUP ignored: {daemon} has no configuration reload (restart it to apply a new configuration)");
}
