//! How a datagram read from UDP 434 reaches mip4-ha's loop (issue 13 item
//! 9): on the task that read it, through the [`Screen`], and only then
//! into the loop's queue. The userspace data plane (when it owns the
//! socket, RFC 3519) calls [`Intake::offer`] as its control sink; else our
//! own reader ([`spawn_reader`]) does.
//!
//! A flood of forged requests is thus settled at the socket's pace:
//! nothing waits behind it in the queue, and a full queue never blocks
//! the reader (the datagram is counted and said within the limit).

use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::dataplane::recv::Batch;
use crate::dataplane::userspace::ControlSink;
use crate::ha::accepted::ReplayBoard;
use crate::ha::{Counters, HaConfig, Screen, Verified};
use crate::replay::NtpTimestamp;

/// What the loop's queue holds: a datagram that passed the screen, from
/// whom, and the screen's word if its authenticator verified.
pub type Passed = (SocketAddrV4, Vec<u8>, Option<Verified>);

/// The screen and the loop's queue, shared by the reading task and the
/// loop (which reloads the screen and reads its counters).
pub struct Intake {
    screen: Mutex<Screen>,
    queue: mpsc::Sender<Passed>,
}

impl Intake {
    pub fn new(screen: Screen, queue: mpsc::Sender<Passed>) -> Arc<Self> {
        Arc::new(Intake {
            screen: Mutex::new(screen),
            queue,
        })
    }

    fn screen(&self) -> MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Screens one datagram from `src`; queues it when it passes.
    pub fn offer(&self, src: SocketAddrV4, data: &[u8]) {
        self.offer_to(&mut self.screen(), src, data);
    }

    /// [`offer`](Self::offer) for each of a receive batch, their nodes'
    /// keys and replay slots first asked for all at once
    /// ([`Screen::prefetch`]): at a million nodes the cache misses of
    /// the batch then overlap (issue 14 §4).
    pub fn offer_batch(&self, batch: &Batch) {
        let mut screen = self.screen();
        batch.datagrams().for_each(|(_, d)| screen.prefetch(d));
        batch
            .datagrams()
            .for_each(|(from, d)| self.offer_to(&mut screen, from, d));
    }

    fn offer_to(&self, screen: &mut Screen, src: SocketAddrV4, data: &[u8]) {
        let now = Instant::now();
        let wall = NtpTimestamp::from_system_time(SystemTime::now());
        let s = screen.screen(now, wall, src, data);
        if s.passes()
            && self
                .queue
                .try_send((src, data.to_vec(), s.verified()))
                .is_err()
        {
            screen.queue_full(now, src);
        }
    }

    /// `offer` as the userspace plane's control sink.
    pub fn sink(self: &Arc<Self>) -> ControlSink {
        let me = self.clone();
        Arc::new(move |src, data| me.offer(src, data))
    }

    /// The new configuration's keys and trusted networks, and the agent's
    /// replay board made with it (SIGHUP, after the agent took it).
    pub fn reload(&self, cfg: &HaConfig, board: ReplayBoard) -> Result<(), crate::auth::AuthError> {
        let mut screen = self.screen();
        screen.reload(cfg)?;
        screen.replay_board(board);
        Ok(())
    }

    /// What the agent's replay check accepts ([`Screen::replay_board`]).
    pub fn replay_board(&self, board: ReplayBoard) {
        self.screen().replay_board(board);
    }

    /// What the screen dropped.
    pub fn counters(&self) -> Counters {
        self.screen().counters().clone()
    }
}

/// The receive buffer UDP 434 asks for. The kernel's default (about 200
/// KiB, a few hundred small datagrams) overflows whenever the process is
/// off the CPU for a few milliseconds under a flood, and a legitimate
/// request dropped there costs its node a retransmission, a second
/// (RFC 5944 §3.6.3). This holds some thousands of forged requests, which
/// the screen reads in a few milliseconds once the process runs again.
const RECEIVE_BUFFER: usize = 4 << 20;

/// Sets UDP 434's receive buffer to [`RECEIVE_BUFFER`]: beyond
/// `net.core.rmem_max` with CAP_NET_ADMIN (`SO_RCVBUFFORCE`), else as far
/// as that limit allows.
pub fn widen_receive_buffer(sock: &UdpSocket) {
    if let Some(n) = crate::dataplane::recv::widen_receive_buffer(sock, RECEIVE_BUFFER) {
        debug!(bytes = n, "Mobile IP socket receive buffer");
    }
}

/// Reads `sock` (when no data plane does) into `intake` until aborted.
pub fn spawn_reader(sock: Arc<UdpSocket>, intake: Arc<Intake>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut batch = Batch::new(65_536);
        loop {
            match batch.recv(&sock).await {
                Ok(()) => intake.offer_batch(&batch),
                // ICMP errors about earlier sends surface here.
                Err(e) => debug!(error = %e, "Mobile IP socket receive error"),
            }
        }
    })
}
