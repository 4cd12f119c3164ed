//! mip4-fa's loop around the sans-IO [`ForeignAgent`]: what the link
//! sockets ([`super::sockets`]) and UDP 434 towards home agents read goes
//! to the core; its outputs go out in order (advertisements, relayed
//! requests and replies, and per visitor the routes, neighbour entries and
//! tunnels of [`super::kernel`] and its tunnel backend); the control socket ([`super::control`]);
//! a SIGTERM shutdown removes everything it installed; SIGHUP is logged
//! and ignored (no reload). What it installed is recorded under /run
//! (`fa.state`), so that a start after SIGKILL removes it first.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::kernel::{Installer, KernelRecord};
use super::sockets::{icmp_socket, read_icmp, read_link, Event};
use crate::daemons::control::{Query, Server};
use crate::daemons::record;
use crate::daemons::udp;
use crate::daemons::wake::{hangup_ignored, sleep_until, Hangup, StopSignals};
use crate::fa::link::{parse_mip_datagram, udp_datagram};
use crate::fa::{Disposition, FaConfig, ForeignAgent, LinkRequest, Output};
use crate::sys::async_fd;
use crate::sys::packet::{Framing, PacketSocket, ETH_P_IP};

/// The daemon's state, owned by the main loop.
pub(super) struct Daemon {
    pub(super) fa: ForeignAgent,
    pub(super) dp: Installer,
    udp: Arc<UdpSocket>,
    icmp: Vec<Arc<AsyncFd<Socket>>>,
    link: Vec<Arc<AsyncFd<PacketSocket>>>,
    ident: u16,
    pub(super) started: Instant,
    /// The record under /run and what it says, as last written.
    state_file: std::path::PathBuf,
    saved: KernelRecord,
}

/// Runs mip4-fa until SIGTERM or SIGINT.
pub async fn run(cfg: FaConfig) -> Result<(), String> {
    let nl = crate::netlink::Netlink::new().map_err(|e| format!("netlink: {e}"))?;
    let mut links = Vec::new();
    for i in &cfg.interfaces {
        let idx = nl
            .link_index(&i.name)
            .await
            .map_err(|e| format!("served interface {}: {e}", i.name))?;
        links.push((i.name.clone(), idx));
    }
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let mut icmp = Vec::new();
    let mut link = Vec::new();
    for (n, (i, (name, idx))) in cfg.interfaces.iter().zip(&links).enumerate() {
        let s = icmp_socket(name, i.address.addr())
            .map_err(|e| format!("ICMP socket on {name}: {e}"))?;
        let s = Arc::new(async_fd::register(s).map_err(|e| e.to_string())?);
        tokio::spawn(read_icmp(s.clone(), Some(n), tx.clone()));
        icmp.push(s);
        let p = PacketSocket::bind(*idx, ETH_P_IP, Framing::Datagram)
            .and_then(|p| p.set_nonblocking(true).map(|()| p))
            .map_err(|e| format!("packet socket on {name}: {e}"))?;
        let p = Arc::new(async_fd::register(p).map_err(|e| e.to_string())?);
        tokio::spawn(read_link(p.clone(), n, tx.clone()));
        link.push(p);
    }
    let errs = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| format!("ICMP error socket: {e}"))?;
    let errs = Arc::new(async_fd::register(errs).map_err(|e| e.to_string())?);
    tokio::spawn(read_icmp(errs, None, tx.clone()));
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, crate::wire::MIP_PORT);
    let udp = Arc::new(
        UdpSocket::bind(any)
            .await
            .map_err(|e| format!("cannot bind UDP {any}: {e}"))?,
    );
    udp::spawn_reader("Mobile IP socket", udp.clone(), tx.clone(), |src, data| {
        Event::Udp { src, data }
    });

    let state_file = cfg
        .control_socket
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."))
        .join("fa.state");
    let previous = match record::read::<KernelRecord>(&state_file) {
        Ok(Some(r)) if r.daemon == "mip4-fa" => r,
        Ok(Some(r)) => {
            record::refused(&state_file, &format!("a record of {:?}", r.daemon));
            KernelRecord::default()
        }
        Ok(None) => KernelRecord::default(),
        Err(e) => {
            record::refused(&state_file, &e.to_string());
            KernelRecord::default()
        }
    };
    let dp = Installer::start(&cfg, links, &previous).await?;
    let ctl_path = cfg.control_socket.clone();
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<Query>(16);
    let control = Server {
        daemon: "mip4-fa",
        queries: ctl_tx,
        events: None,
    }
    .serve(&ctl_path)
    .map_err(|e| format!("cannot bind control socket {}: {e}", ctl_path.display()))?;
    info!(
        care_of = %cfg.care_of_address, interfaces = ?cfg.interfaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        reverse_tunnel = ?cfg.reverse_tunnel, backend = %dp.backend(), control = %ctl_path.display(),
        "mip4-fa started"
    );
    let fa = ForeignAgent::new(
        cfg,
        Instant::now(),
        Box::new(rand::rngs::StdRng::from_entropy()),
    )
    .map_err(|e| format!("bad security association: {e}"))?;
    let mut d = Daemon {
        fa,
        dp,
        udp,
        icmp,
        link,
        ident: rand::random(),
        started: Instant::now(),
        state_file,
        saved: KernelRecord::default(),
    };
    d.save();

    let mut stop = StopSignals::new()?;
    let mut hup = Hangup::new()?;
    d.fa.handle_timeout(Instant::now());
    d.apply().await;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                d.handle(ev);
                d.apply().await;
            }
            () = sleep_until(d.fa.poll_timeout()) => {
                d.fa.handle_timeout(Instant::now());
                d.apply().await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                if matches!(req, crate::ctl::Request::Counters | crate::ctl::Request::Status) {
                    d.dp.refresh_counters().await;
                }
                let _ = reply.send(d.answer(req));
            }
            () = hup.recv() => hangup_ignored("mip4-fa"),
            s = stop.recv() => {
                info!("{s}: shutting down");
                break;
            }
        }
    }
    info!("removing every visitor's routes, neighbour entries and tunnels");
    d.fa.shutdown();
    d.apply().await;
    d.dp.shutdown().await;
    d.save();
    control.abort();
    let _ = std::fs::remove_file(&ctl_path);
    Ok(())
}

impl Daemon {
    /// Writes the record when what is installed changed.
    fn save(&mut self) {
        let r = self.dp.record();
        if r == self.saved {
            return;
        }
        if let Err(e) = record::write(&self.state_file, &r) {
            warn!(state_file = %self.state_file.display(), "cannot save what is installed: {e}");
        }
        self.saved = r;
    }

    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        let disp = match ev {
            Event::Icmp { iface, data } => self.fa.handle_solicitation(now, iface, &data),
            Event::IcmpError(data) => self.fa.handle_icmp_error(now, &data),
            Event::Udp { src, data } => self.fa.handle_ha_datagram(now, src, &data),
            Event::Link {
                iface,
                mac,
                datagram,
            } => {
                let Some(d) = parse_mip_datagram(&datagram) else {
                    return;
                };
                self.fa.handle_request(
                    now,
                    LinkRequest {
                        interface: iface,
                        mac,
                        src: d.src,
                        dst: d.dst,
                        ttl: d.ttl,
                        data: d.payload,
                    },
                )
            }
        };
        if let Disposition::Dropped(r) = disp {
            debug!(reason = ?r, "datagram dropped");
        }
    }

    /// Carries out the core's outputs in order: a visitor's route and
    /// tunnel are in place before its accepted reply leaves.
    async fn apply(&mut self) {
        while let Some(o) = self.fa.poll_output() {
            match o {
                Output::Advertise {
                    interface,
                    dst,
                    payload,
                } => {
                    let to = socket2::SockAddr::from(SocketAddrV4::new(dst, 0));
                    let s = &self.icmp[interface];
                    if let Err(e) = s
                        .async_io(Interest::WRITABLE, |s| s.send_to(&payload, &to))
                        .await
                    {
                        warn!(interface, %dst, "cannot send agent advertisement: {e}");
                    }
                }
                Output::ToHomeAgent { dst, payload } => {
                    if let Err(e) = self.udp.send_to(&payload, SocketAddr::V4(dst)).await {
                        warn!(%dst, "cannot relay request to the home agent: {e}");
                    }
                }
                Output::ToMobileNode {
                    interface,
                    mac,
                    src,
                    dst,
                    payload,
                } => {
                    self.ident = self.ident.wrapping_add(1);
                    let datagram = udp_datagram(src, dst, &payload, self.ident);
                    let p = &self.link[interface];
                    if let Err(e) = p
                        .async_io(Interest::WRITABLE, |p| p.send_to(mac, &datagram))
                        .await
                    {
                        warn!(%dst, "cannot send reply to the mobile node: {e}");
                    }
                }
                Output::VisitorUp(v) => {
                    if let Err(e) = self.dp.up(&v).await {
                        error!(home_address = %v.home_address, "visitor accepted but not installed: {e}");
                    }
                }
                Output::VisitorDown { visitor, reason } => {
                    info!(home_address = %visitor.home_address, ?reason, "visitor down");
                    if let Err(e) = self.dp.down(visitor.home_address).await {
                        error!("{e}");
                    }
                }
            }
        }
        self.save();
    }
}
