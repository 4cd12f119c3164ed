//! mip4-fa: the foreign agent daemon (RFC 5944 §2, §3.7; RFC 3024). A
//! thin loop around the sans-IO core ([`mip4::fa::ForeignAgent`]):
//! - per served interface, a raw ICMP socket (Agent Advertisements out,
//!   TTL 1, to 224.0.0.1 or 255.255.255.255; Agent Solicitations in) and a
//!   packet socket (Registration Requests in, with the link-layer source
//!   address and TTL the FA needs; replies out by link-layer address);
//! - a UDP 434 socket towards home agents, and a raw ICMP socket for the
//!   errors that come back about relayed requests (80, 81, 82, 88);
//! - per visitor, routes, neighbour entries, tunnel and reverse tunnel
//!   ([`mip4::daemons::fa::kernel`]);
//! - the control socket (`mip4ctl visitors|counters|status`), and a
//!   SIGTERM shutdown that removes everything it installed.

#![forbid(unsafe_code)]

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use mip4::ctl::{self, Request, Response};
use mip4::daemons::fa::kernel::Installer;
use mip4::fa::link::{parse_mip_datagram, udp_datagram};
use mip4::fa::{Disposition, FaConfig, ForeignAgent, LinkRequest, Mac, Output};
use mip4::sys::async_fd;
use mip4::sys::packet::{Framing, PacketSocket, ETH_P_IP, PACKET_OUTGOING};
use rand::SeedableRng;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "mip4-fa",
    version,
    about = "Mobile IPv4 foreign agent (RFC 5944, RFC 3024)"
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-fa.conf")]
    config: PathBuf,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    mip4::cli::init_logging("info", args.log_json);
    let cfg = match mip4::cli::config_or_exit("mip4-fa", FaConfig::load(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check {
        println!(
            "{}: ok ({} interfaces, care-of address {})",
            args.config.display(),
            cfg.interfaces.len(),
            cfg.care_of_address
        );
        return std::process::ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mip4-fa: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the reader tasks hand the main loop.
enum Event {
    /// An ICMP message (IP header stripped) on served interface `iface`.
    Icmp { iface: usize, data: Vec<u8> },
    /// An ICMP message on the unbound socket (errors about relays).
    IcmpError(Vec<u8>),
    /// An IPv4 datagram from served interface `iface`'s packet socket.
    Link {
        iface: usize,
        mac: Mac,
        datagram: Vec<u8>,
    },
    /// A datagram on UDP 434.
    Udp { src: SocketAddrV4, data: Vec<u8> },
}

type CtlCall = (Request, oneshot::Sender<Response>);

/// The raw ICMP socket of one served interface: bound to it, TTL 1
/// (RFC 5944 §2.3.1 for advertisements), member of 224.0.0.2 (all
/// routers: where Agent Solicitations go, §2.2) and 224.0.0.11 (all
/// mobility agents).
fn icmp_socket(ifname: &str, addr: Ipv4Addr) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_ttl(1)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_loop_v4(false)?;
    s.set_broadcast(true)?;
    for g in [Ipv4Addr::new(224, 0, 0, 2), Ipv4Addr::new(224, 0, 0, 11)] {
        s.join_multicast_v4(&g, &addr)?;
    }
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(s)
}

/// The ICMP part of a datagram a raw socket delivered (IP header first).
fn strip_ip(b: &[u8]) -> Option<&[u8]> {
    let ihl = usize::from(*b.first()? & 0x0f) * 4;
    b.get(ihl..).filter(|_| ihl >= 20)
}

async fn read_icmp(s: Arc<AsyncFd<Socket>>, iface: Option<usize>, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match s
            .async_io(Interest::READABLE, |mut s| s.read(&mut buf))
            .await
        {
            Ok(n) => n,
            Err(e) => {
                warn!("ICMP receive error: {e}");
                continue;
            }
        };
        let Some(icmp) = strip_ip(&buf[..n]) else {
            continue;
        };
        let ev = match iface {
            Some(i) if icmp.first() == Some(&mip4::wire::icmp::TYPE_SOLICITATION) => Event::Icmp {
                iface: i,
                data: icmp.to_vec(),
            },
            None if icmp.first() == Some(&3) => Event::IcmpError(icmp.to_vec()),
            _ => continue,
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn read_link(s: Arc<AsyncFd<PacketSocket>>, iface: usize, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, mac, kind) = match s
            .async_io(Interest::READABLE, |p| p.recv_from(&mut buf))
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!("link receive error: {e}");
                continue;
            }
        };
        if kind == PACKET_OUTGOING {
            continue;
        }
        // Only registration requests matter here; everything else on the
        // link is the kernel's.
        let is_request = parse_mip_datagram(&buf[..n]).is_some_and(|d| {
            d.payload.first() == Some(&mip4::wire::msg_type::REGISTRATION_REQUEST)
        });
        if !is_request {
            continue;
        }
        let ev = Event::Link {
            iface,
            mac,
            datagram: buf[..n].to_vec(),
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

async fn read_udp(sock: Arc<UdpSocket>, tx: mpsc::Sender<Event>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, SocketAddr::V4(src))) => {
                let ev = Event::Udp {
                    src,
                    data: buf[..n].to_vec(),
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => debug!("UDP receive error: {e}"),
        }
    }
}

struct Daemon {
    fa: ForeignAgent,
    dp: Installer,
    udp: Arc<UdpSocket>,
    icmp: Vec<Arc<AsyncFd<Socket>>>,
    link: Vec<Arc<AsyncFd<PacketSocket>>>,
    ident: u16,
    started: Instant,
}

async fn run(cfg: FaConfig) -> Result<(), String> {
    let nl = mip4::netlink::Netlink::new().map_err(|e| format!("netlink: {e}"))?;
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
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, mip4::wire::MIP_PORT);
    let udp = Arc::new(
        UdpSocket::bind(any)
            .await
            .map_err(|e| format!("cannot bind UDP {any}: {e}"))?,
    );
    tokio::spawn(read_udp(udp.clone(), tx.clone()));

    let dp = Installer::start(&cfg, links).await?;
    let ctl_path = cfg.control_socket.clone();
    let listener = ctl::bind_root_only(&ctl_path)
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
    };

    let (ctl_tx, mut ctl_rx) = mpsc::channel::<CtlCall>(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = ctl_tx.clone();
            tokio::spawn(async move {
                let _ = ctl::serve_connection_async(stream, |req| {
                    let tx = tx.clone();
                    async move {
                        let (otx, orx) = oneshot::channel();
                        if tx.send((req, otx)).await.is_err() {
                            return Response::error("mip4-fa is shutting down");
                        }
                        orx.await
                            .unwrap_or_else(|_| Response::error("mip4-fa is shutting down"))
                    }
                })
                .await;
            });
        }
    });

    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    d.fa.handle_timeout(Instant::now());
    d.apply().await;
    loop {
        let deadline = d.fa.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                d.handle(ev);
                d.apply().await;
            }
            () = sleep => {
                d.fa.handle_timeout(Instant::now());
                d.apply().await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                let _ = reply.send(d.answer(req));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("shutting down: removing every visitor's routes, neighbour entries and tunnels");
    d.fa.shutdown();
    d.apply().await;
    d.dp.shutdown().await;
    let _ = std::fs::remove_file(&ctl_path);
    Ok(())
}

impl Daemon {
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
    }

    fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        match req {
            Request::Visitors => Response::ok(self.fa.visitors(now)),
            Request::Events => Response::error("events: served by mip4d only"),
            Request::Bindings => {
                Response::error("mip4-fa has visitors, not bindings (ask `visitors`)")
            }
            Request::Counters => {
                let mut v = serde_json::to_value(self.fa.counters()).unwrap_or_default();
                if let Some(c) = self.dp.status().counters {
                    v["dataplane"] = serde_json::to_value(c).unwrap_or_default();
                }
                Response::ok(v)
            }
            Request::Status => {
                let c = self.fa.config();
                let dp = self.dp.status();
                Response::ok(serde_json::json!({
                    "daemon": "mip4-fa",
                    "version": env!("CARGO_PKG_VERSION"),
                    "care_of_address": c.care_of_address.to_string(),
                    "interfaces": c.interfaces.iter().map(|i| serde_json::json!({
                        "name": i.name, "address": i.address.to_string(),
                    })).collect::<Vec<_>>(),
                    "advertised_flags": format!("{:#06x}", self.fa.advertised_flags().0),
                    "max_lifetime": c.max_lifetime,
                    "reverse_tunnel": c.reverse_tunnel,
                    "dataplane": {
                        "backend": dp.backend,
                        "tunnels": dp.bindings,
                        "installed": self.dp.installed(),
                        "counters": dp.counters,
                    },
                    "visitors": self.fa.visitors(now).len(),
                    "uptime": now.duration_since(self.started).as_secs(),
                }))
            }
        }
    }
}
