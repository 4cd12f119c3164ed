//! mip4-ha's loop around the sans-IO [`HomeAgent`]: registrations in from
//! UDP 434, replies out, binding timers, the core's outputs carried to the
//! kernel ([`super::kernel`]) in order, the control socket
//! ([`super::control`]), SIGHUP reload ([`super::config`]) and a SIGTERM
//! shutdown that removes everything it installed.
//!
//! Restarts (issue 13): the binding cache, replay state and what is in
//! the kernel are saved ([`super::state`]) on every change, before the
//! reply that follows it. At start the bindings still within their
//! lifetime are restored and installed before anything is answered, then
//! whatever an earlier instance left that no restored binding owns is
//! removed. A clean stop removes everything from the kernel but keeps the
//! bindings in the record, so that a restart finds them.
//!
//! The loop owns all state; the control socket's tasks ask it through a
//! channel, so no lock is ever held across a kernel request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::config;
use super::intake::{self, Intake};
use super::kernel::{Installer, KernelRecord};
use super::state;
use crate::ctl::Request;
use crate::daemons::control::{Query, Server};
use crate::daemons::wake::{sleep_until, Hangup, StopSignals};
use crate::dataplane::recv::{send_batch, BATCH};
use crate::ha::{Changes, HaConfig, HomeAgent, Output, SavedCache, Screen};
use crate::replay::NtpTimestamp;
use crate::sys::hugepage::{populated, small_pages};

/// The daemon's state, owned by the main loop.
pub(super) struct Daemon {
    pub(super) ha: HomeAgent,
    pub(super) dp: Installer,
    /// The screen at the socket (its counters join the agent's).
    pub(super) intake: Arc<Intake>,
    sock: Arc<UdpSocket>,
    pub(super) started: Instant,
    /// The configuration as loaded (the core's copy may have UDP
    /// tunnelling turned off when the backend cannot carry it).
    udp_unavailable: bool,
    /// The record: snapshot and journal.
    record: state::Record,
    /// The data plane's [`Installer::generation`] as last recorded.
    saved_kernel: Option<u64>,
    /// The data plane carries RFC 3519 (it took the UDP socket at start).
    udp_carried: bool,
    /// Replies carried out, waiting for the record ([`Daemon::finish`]).
    replies: Vec<(std::net::SocketAddrV4, Vec<u8>)>,
}

/// Runs mip4-ha until SIGTERM or SIGINT; `path` is re-read on SIGHUP.
pub async fn run(path: PathBuf, cfg: HaConfig) -> Result<(), String> {
    let (saved, previous, generation) = state::load(
        &cfg.state_file,
        cfg.home_agent,
        state::max_len(cfg.mobile_nodes.len()),
    );
    let record = state::Record::new(&cfg.state_file, cfg.home_agent, generation);
    let sock = Arc::new(
        UdpSocket::bind(SocketAddr::V4(cfg.listen))
            .await
            .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?,
    );
    intake::widen_receive_buffer(&sock);
    // Registrations, from the data plane (which owns reads on the socket
    // when it carries RFC 3519 tunnel data) or from our own reader, each
    // through the screen first: what no key signed is settled there.
    let (reg_tx, mut reg_rx) = mpsc::channel::<intake::Passed>(1024);
    let screen =
        Screen::new(&cfg, Instant::now()).map_err(|e| format!("bad security association: {e}"))?;
    let intake = Intake::new(screen, reg_tx);
    let udp = cfg.udp_tunnelling.then(|| (sock.clone(), intake.sink()));
    let (mut dp, took_socket) = Installer::start(&cfg, udp, &previous).await?;
    if !took_socket {
        intake::spawn_reader(sock.clone(), intake.clone());
    }
    let udp_unavailable = cfg.udp_tunnelling && !took_socket;
    if udp_unavailable {
        warn!(backend = %dp.backend(), "RFC 3519 UDP tunnelling needs the userspace backend: declined for every mobile node");
    }

    let ctl_path = cfg.control_socket.clone();
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Query>(16);
    let control = Server {
        daemon: "mip4-ha",
        queries: ctl_tx,
        events: None,
    }
    .serve(&ctl_path)
    .map_err(|e| format!("cannot bind control socket {}: {e}", ctl_path.display()))?;
    info!(
        listen = %cfg.listen, home_agent = %cfg.home_agent, mobile_nodes = cfg.mobile_nodes.len(),
        backend = %dp.backend(), control = %ctl_path.display(), "mip4-ha started"
    );
    // The tables that grow with the bindings are sized for every
    // configured node and faulted in here, before anything is answered:
    // grown on the way, a doubling at a million bindings held a
    // registration, and all queued behind it, for over a second.
    let nodes = cfg.mobile_nodes.len();
    populated(|| dp.reserve(nodes));
    let ha = populated(|| {
        HomeAgent::new(
            config::core_config(cfg, udp_unavailable, dp.carries_ipv6()),
            Box::new(rand::rngs::StdRng::from_entropy()),
        )
    })
    .map_err(|e| format!("bad security association: {e}"))?;
    // What the agent's replay check accepts, read by the screen.
    intake.replay_board(ha.replay_board());
    // Parsing a configuration of many nodes peaks far above what the
    // nodes keep: give that back.
    crate::sys::malloc::trim();
    let mut d = Daemon {
        ha,
        dp,
        intake,
        sock,
        started: Instant::now(),
        udp_unavailable,
        record,
        saved_kernel: None,
        udp_carried: took_socket,
        replies: Vec::new(),
    };
    // Nothing is answered before the earlier instance's bindings are back
    // in the kernel: requests and control queries wait in their channels.
    if let Some(cache) = saved {
        let r = d.ha.restore(cache, Instant::now(), SystemTime::now());
        info!(
            restored = r.bindings.len(),
            expired = r.expired.len(),
            refused = r.refused.len(),
            replay_states = r.replay_states,
            "binding cache of the previous instance taken up"
        );
        for (home, why) in &r.refused {
            warn!(home_address = %home, "binding of the previous instance not restored: {why}");
        }
    }
    d.apply().await;
    let cfg_now = d.ha.config().clone();
    d.dp.sweep(&cfg_now, &previous).await;
    d.save(Changes {
        all: true,
        ..Changes::default()
    });

    let mut hup = Hangup::new()?;
    let mut stop = StopSignals::new()?;
    let mut batch: Vec<intake::Passed> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            r = reg_rx.recv() => {
                let Some(first) = r else { break };
                // What is queued behind it too, up to a receive batch.
                batch.push(first);
                while batch.len() < BATCH {
                    let Ok(next) = reg_rx.try_recv() else { break };
                    batch.push(next);
                }
                // First what each will read at random (at a million
                // bindings, some fifteen cache misses a registration)
                // asked for all at once, so that the misses overlap;
                // then each through the core and the data plane in turn,
                // and one save for all and their replies (`finish`).
                for (_, data, verified) in &batch {
                    if let Some(home) = d.ha.prefetch(data, *verified) {
                        d.dp.prefetch(home);
                    }
                }
                for (src, data, verified) in batch.drain(..) {
                    let wall = NtpTimestamp::from_system_time(SystemTime::now());
                    d.ha.handle_screened(Instant::now(), wall, src, &data, verified);
                    d.carry_out().await;
                }
                d.finish().await;
            }
            () = sleep_until(d.ha.poll_timeout()) => {
                d.ha.handle_timeout(Instant::now());
                d.apply().await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                if matches!(req, Request::Counters | Request::Status) {
                    d.dp.refresh_counters().await;
                }
                // (A listing of a million bindings is a transient.)
                let _ = reply.send(small_pages(|| d.answer(req)));
            }
            () = hup.recv() => {
                let loaded = config::load(&path).map_err(|e| e.to_string()).and_then(|c| {
                    match config::reload_refusal(d.ha.config(), &c, d.udp_carried || d.udp_unavailable) {
                        Some(why) => Err(why),
                        None => Ok(c),
                    }
                });
                match loaded {
                    Ok(c) => {
                        let core = config::core_config(c, d.udp_unavailable, d.dp.carries_ipv6());
                        // (Tables sized for the new nodes, as at start.)
                        let reloaded = populated(|| d.ha.reload(core))
                            .and_then(|()| d.intake.reload(d.ha.config(), d.ha.replay_board()));
                        let nodes = d.ha.config().mobile_nodes.len();
                        populated(|| d.dp.reserve(nodes));
                        // Said once what the reload changed is carried out
                        // and in the record: a kill after the line loses none
                        // of it.
                        d.apply().await;
                        match reloaded {
                            Ok(()) => info!("configuration reloaded"),
                            Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                        }
                    }
                    Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                }
            }
            s = stop.recv() => {
                info!("{s}: shutting down");
                break;
            }
        }
    }
    info!("removing every binding, tunnel and route");
    // The bindings stay in the record: a restart within their lifetime
    // restores them; the kernel part says that nothing is installed.
    let kept = d.ha.export(Instant::now(), SystemTime::now());
    d.ha.shutdown();
    d.ha.take_changes();
    d.apply().await;
    d.dp.shutdown().await;
    let kernel = d.dp.record();
    d.record.snapshot(kept, kernel);
    control.abort();
    let _ = std::fs::remove_file(&ctl_path);
    Ok(())
}

impl Daemon {
    /// What the kernel dropped at UDP 434 ([`crate::ha::Counters::socket_dropped`]).
    pub(super) fn socket_dropped(&self) -> u64 {
        use std::os::fd::AsFd;
        crate::sys::socket::drops(self.sock.as_fd()).map_or(0, u64::from)
    }

    /// [`carry_out`](Self::carry_out), then [`finish`](Self::finish).
    async fn apply(&mut self) {
        self.carry_out().await;
        self.finish().await;
    }

    /// Carries out the core's outputs in order: a binding's tunnel and
    /// route are in place before its reply leaves (the core holds the reply
    /// until `install_result`), and gone before a deregistration is
    /// answered. Replies wait in `replies` for [`finish`](Self::finish).
    async fn carry_out(&mut self) {
        while let Some(o) = self.ha.poll_output() {
            match o {
                Output::Transmit { dst, payload } => self.replies.push((dst, payload)),
                Output::BindingUp(b) => {
                    // The core answers the registration once it hears how
                    // this went: accepted, or 130 and the binding dropped.
                    let r = self.dp.up(self.ha.config(), &b).await;
                    self.ha.install_result(
                        b.home_address,
                        r.as_ref().map(|_| ()).map_err(String::as_str),
                    );
                }
                Output::BindingDown { binding, reason } => {
                    info!(home_address = %binding.home_address, care_of = %binding.care_of_address, ?reason, "binding down");
                    if let Err(e) = self.dp.down(binding.home_address).await {
                        error!("{e}");
                    }
                }
            }
        }
    }

    /// Saves what changed, then sends the replies waiting: an accepted
    /// reply promises a binding that the next instance must know, so it
    /// leaves only once the record holds it. A batch of requests costs
    /// one journal write; what a crash loses is what no reply promised yet
    /// (a node whose request was lost so retransmits, RFC 5944 §3.6.3).
    async fn finish(&mut self) {
        let changes = self.ha.take_changes();
        self.save(changes);
        // One sendmmsg(2) for the batch's replies.
        let replies = std::mem::take(&mut self.replies);
        send_batch(&self.sock, &replies, &mut |dst, e| {
            warn!(%dst, "cannot send reply: {e}");
        })
        .await;
        // The buffer is kept for the next batch.
        self.replies = replies;
        self.replies.clear();
    }

    /// The binding cache and the kernel's state, for a snapshot: large
    /// and soon dropped, so in small pages ([`small_pages`]).
    fn export(&self, now: Instant, wall: SystemTime) -> (SavedCache, KernelRecord) {
        small_pages(|| (self.ha.export(now, wall), self.dp.record()))
    }

    /// Records what changed in the core's state (`changes`) and in the
    /// kernel since the last save: the changed bindings and nodes
    /// appended to the journal (a reload's too), or everything in a
    /// snapshot (at start, and after the journal failed). A journal
    /// that outgrew its snapshot is rotated, and compacted by a thread of
    /// its own (`state::Record::compact`).
    fn save(&mut self, changes: Changes) {
        let kernel_changed = self.saved_kernel != Some(self.dp.generation());
        if changes.is_empty() && !kernel_changed {
            return;
        }
        self.saved_kernel = Some(self.dp.generation());
        let started = Instant::now();
        if self.record.take_up() {
            info!(
                pause_us = started.elapsed().as_micros() as u64,
                "journal compaction: its snapshot and journal renamed into place"
            );
        }
        let (now, wall) = (Instant::now(), SystemTime::now());
        if changes.all || self.record.wants_snapshot() {
            let (cache, kernel) = self.export(now, wall);
            self.record.snapshot(cache, kernel);
            return;
        }
        let mut entries: Vec<state::Entry> = changes
            .nodes
            .iter()
            .filter_map(|&spi| self.ha.saved_node(spi).map(state::Entry::Node))
            .collect();
        entries.extend(changes.bindings.iter().map(
            |&h| match self.ha.saved_binding(h, now, wall) {
                Some(b) => state::Entry::Binding(b),
                None => state::Entry::Unbound(h),
            },
        ));
        if kernel_changed {
            entries.push(state::Entry::Kernel(self.dp.record()));
        }
        self.record.append(&entries);
        if self.record.wants_compaction() {
            // The loop only rotates the journal: the snapshot is built
            // from the files by a thread of its own. Timed, so that a
            // node's slow reply has its cause in the log.
            let started = Instant::now();
            self.record.compact();
            info!(
                pause_us = started.elapsed().as_micros() as u64,
                "journal compaction: journal rotated, the snapshot built from the last one and its journal by a thread of its own"
            );
        }
    }
}
