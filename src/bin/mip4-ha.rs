//! mip4-ha: the internal home agent daemon. A thin loop around the
//! sans-IO core ([`mip4::ha::HomeAgent`]): registrations in from UDP 434,
//! replies out, binding timers, tunnels and routes per binding
//! ([`mip4::ha::install`]), the control socket, SIGHUP reload and a
//! SIGTERM shutdown that removes everything it installed.
//!
//! The loop owns all state; the control socket's tasks ask it through a
//! channel, so no lock is ever held across a kernel request.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use clap::Parser;
use mip4::ctl::{self, Request, Response};
use mip4::ha::install::Installer;
use mip4::ha::{HaConfig, HomeAgent, Output};
use mip4::replay::NtpTimestamp;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "mip4-ha",
    version,
    about = "Mobile IPv4 home agent (RFC 5944, RFC 5266 i-HA)"
)]
struct Args {
    /// Configuration file.
    #[arg(short, long, default_value = "/etc/mip4/mip4-ha.conf")]
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
    let cfg = match mip4::cli::config_or_exit("mip4-ha", HaConfig::load(&args.config)) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.check {
        println!(
            "{}: ok ({} mobile nodes)",
            args.config.display(),
            cfg.mobile_nodes.len()
        );
        return std::process::ExitCode::SUCCESS;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mip4-ha: cannot start runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args.config, cfg)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

type CtlCall = (Request, oneshot::Sender<Response>);

/// The daemon's state, owned by the main loop.
struct Daemon {
    ha: HomeAgent,
    dp: Installer,
    sock: Arc<UdpSocket>,
    started: Instant,
    /// The configuration as loaded (the core's copy may have UDP
    /// tunnelling turned off when the backend cannot carry it).
    udp_unavailable: bool,
}

async fn run(path: PathBuf, cfg: HaConfig) -> Result<(), String> {
    let sock = Arc::new(
        UdpSocket::bind(SocketAddr::V4(cfg.listen))
            .await
            .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?,
    );
    // Registrations, from the data plane (which owns reads on the socket
    // when it carries RFC 3519 tunnel data) or from our own reader.
    let (reg_tx, mut reg_rx) = mpsc::channel::<(SocketAddrV4, Vec<u8>)>(1024);
    let udp = cfg.udp_tunnelling.then(|| (sock.clone(), reg_tx.clone()));
    let (dp, took_socket) = Installer::start(&cfg, udp).await?;
    if !took_socket {
        tokio::spawn(read_registrations(sock.clone(), reg_tx));
    }
    let udp_unavailable = cfg.udp_tunnelling && !took_socket;
    if udp_unavailable {
        warn!(backend = %dp.backend(), "RFC 3519 UDP tunnelling needs the userspace backend: declined for every mobile node");
    }

    let ctl_path = cfg.control_socket.clone();
    let listener = ctl::bind_root_only(&ctl_path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", ctl_path.display()))?;
    info!(
        listen = %cfg.listen, home_agent = %cfg.home_agent, mobile_nodes = cfg.mobile_nodes.len(),
        backend = %dp.backend(), control = %ctl_path.display(), "mip4-ha started"
    );
    let ha = HomeAgent::new(
        core_config(cfg, udp_unavailable),
        Box::new(rand::rngs::StdRng::from_entropy()),
    )
    .map_err(|e| format!("bad security association: {e}"))?;
    let mut d = Daemon {
        ha,
        dp,
        sock,
        started: Instant::now(),
        udp_unavailable,
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
                            return Response::error("mip4-ha is shutting down");
                        }
                        orx.await
                            .unwrap_or_else(|_| Response::error("mip4-ha is shutting down"))
                    }
                })
                .await;
            });
        }
    });

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    loop {
        let deadline = d.ha.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = reg_rx.recv() => {
                let Some((src, data)) = r else { break };
                let wall = NtpTimestamp::from_system_time(SystemTime::now());
                d.ha.handle_datagram(Instant::now(), wall, src, &data);
                d.apply().await;
            }
            () = sleep => {
                d.ha.handle_timeout(Instant::now());
                d.apply().await;
            }
            Some((req, reply)) = ctl_rx.recv() => {
                let _ = reply.send(d.answer(req));
            }
            _ = hup.recv() => {
                match HaConfig::load(&path) {
                    Ok(c) => {
                        match d.ha.reload(core_config(c, d.udp_unavailable)) {
                            Ok(()) => info!("configuration reloaded"),
                            Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                        }
                        d.apply().await;
                    }
                    Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("shutting down: removing every binding, tunnel and route");
    d.ha.shutdown();
    d.apply().await;
    d.dp.shutdown().await;
    let _ = std::fs::remove_file(&ctl_path);
    Ok(())
}

/// The core declines RFC 3519 (and answers 142 to a forced request) when
/// the data plane in use cannot carry it.
fn core_config(mut cfg: HaConfig, udp_unavailable: bool) -> HaConfig {
    if udp_unavailable {
        cfg.udp_tunnelling = false;
    }
    cfg
}

/// Reads the Mobile IP socket when the data plane does not.
async fn read_registrations(sock: Arc<UdpSocket>, tx: mpsc::Sender<(SocketAddrV4, Vec<u8>)>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, SocketAddr::V4(src))) => {
                if tx.send((src, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            // ICMP errors for earlier replies surface here; keep serving.
            Err(e) => warn!("receive error: {e}"),
        }
    }
}

impl Daemon {
    /// Carries out the core's outputs in order: a binding's tunnel and
    /// route are in place before its reply leaves (the core holds the reply
    /// until `install_result`), and gone before a deregistration is
    /// answered.
    async fn apply(&mut self) {
        while let Some(o) = self.ha.poll_output() {
            match o {
                Output::Transmit { dst, payload } => {
                    if let Err(e) = self.sock.send_to(&payload, SocketAddr::V4(dst)).await {
                        warn!(%dst, "cannot send reply: {e}");
                    }
                }
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

    fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        let ha = &self.ha;
        match req {
            Request::Bindings => Response::ok(ha.bindings(now)),
            Request::Events => Response::error("events: served by mip4d only"),
            Request::Visitors => Response::error("mip4-ha has no visitor list (ask mip4-fa)"),
            Request::Counters => {
                // The core's counters, plus the data plane's datagram
                // counters (RFC 3024 ingress drops among them).
                let mut v = serde_json::to_value(ha.counters()).unwrap_or_default();
                if let Some(c) = self.dp.status().counters {
                    v["dataplane"] = serde_json::to_value(c).unwrap_or_default();
                }
                Response::ok(v)
            }
            Request::Status => {
                let c = ha.config();
                let dp = self.dp.status();
                Response::ok(serde_json::json!({
                    "daemon": "mip4-ha",
                    "version": env!("CARGO_PKG_VERSION"),
                    "listen": c.listen.to_string(),
                    "home_agent": c.home_agent.to_string(),
                    "home_networks": c.home_networks.iter().map(|n| serde_json::json!({
                        "prefix": n.prefix.to_string(), "mode": n.mode, "interface": n.interface,
                    })).collect::<Vec<_>>(),
                    "trusted_networks": c.trusted_networks.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "udp_tunnelling": c.udp_tunnelling,
                    "dataplane": {
                        "configured": format!("{:?}", c.tunnel_backend).to_lowercase(),
                        "backend": dp.backend,
                        "tunnels": dp.bindings,
                        "installed": self.dp.installed(),
                        "counters": dp.counters,
                    },
                    "mobile_nodes": c.mobile_nodes.len(),
                    "bindings": ha.bindings(now).len(),
                    "uptime": now.duration_since(self.started).as_secs(),
                }))
            }
        }
    }
}
