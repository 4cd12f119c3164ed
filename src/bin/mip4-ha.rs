//! mip4-ha: the internal home agent daemon. A thin loop around the
//! sans-IO core ([`mip4::ha::HomeAgent`]): UDP 434 in and out, binding
//! timers, the control socket, SIGHUP reload, clean SIGTERM shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use clap::Parser;
use mip4::ctl::{self, Request, Response};
use mip4::ha::{HaConfig, HomeAgent, Output};
use mip4::replay::NtpTimestamp;
use rand::SeedableRng;
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let sub = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_json {
        sub.json().init();
    } else {
        sub.init();
    }
    let cfg = match HaConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mip4-ha: {e}");
            return std::process::ExitCode::from(2);
        }
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

struct Shared {
    ha: Mutex<HomeAgent>,
    started: Instant,
}

async fn run(path: PathBuf, cfg: HaConfig) -> Result<(), String> {
    let sock = UdpSocket::bind(SocketAddr::V4(cfg.listen))
        .await
        .map_err(|e| format!("cannot bind UDP {}: {e}", cfg.listen))?;
    let ctl_path = cfg.control_socket.clone();
    let listener = ctl::bind_root_only(&ctl_path)
        .map_err(|e| format!("cannot bind control socket {}: {e}", ctl_path.display()))?;
    info!(
        listen = %cfg.listen, home_agent = %cfg.home_agent, mobile_nodes = cfg.mobile_nodes.len(),
        control = %ctl_path.display(), "mip4-ha started"
    );
    let ha = HomeAgent::new(cfg, Box::new(rand::rngs::StdRng::from_entropy()))
        .map_err(|e| format!("bad security association: {e}"))?;
    let shared = Arc::new(Shared {
        ha: Mutex::new(ha),
        started: Instant::now(),
    });

    let ctl_shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let s = ctl_shared.clone();
            tokio::spawn(async move {
                let _ = ctl::serve_connection(stream, |req| answer(&s, req)).await;
            });
        }
    });

    let mut hup = signal(SignalKind::hangup()).map_err(|e| e.to_string())?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_536];
    loop {
        let deadline = shared.ha.lock().unwrap().poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = match r {
                    Ok(x) => x,
                    Err(e) => { warn!("receive error: {e}"); continue; }
                };
                let SocketAddr::V4(src) = from else { continue };
                let wall = NtpTimestamp::from_system_time(SystemTime::now());
                let outs = {
                    let mut ha = shared.ha.lock().unwrap();
                    ha.handle_datagram(Instant::now(), wall, src, &buf[..n]);
                    drain(&mut ha)
                };
                apply(&sock, outs).await;
            }
            () = sleep => {
                let outs = {
                    let mut ha = shared.ha.lock().unwrap();
                    ha.handle_timeout(Instant::now());
                    drain(&mut ha)
                };
                apply(&sock, outs).await;
            }
            _ = hup.recv() => {
                match HaConfig::load(&path) {
                    Ok(c) => {
                        let outs = {
                            let mut ha = shared.ha.lock().unwrap();
                            match ha.reload(c) {
                                Ok(()) => info!("configuration reloaded"),
                                Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                            }
                            drain(&mut ha)
                        };
                        apply(&sock, outs).await;
                    }
                    Err(e) => warn!("reload refused, keeping the old configuration: {e}"),
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!("shutting down: removing every binding");
    let outs = {
        let mut ha = shared.ha.lock().unwrap();
        ha.shutdown();
        drain(&mut ha)
    };
    apply(&sock, outs).await;
    let _ = std::fs::remove_file(&ctl_path);
    Ok(())
}

fn drain(ha: &mut HomeAgent) -> Vec<Output> {
    std::iter::from_fn(|| ha.poll_output()).collect()
}

/// Carries out the core's outputs. Tunnels and routes: the data plane
/// (src/dataplane) is not wired in yet, so binding changes are logged only.
async fn apply(sock: &UdpSocket, outs: Vec<Output>) {
    for o in outs {
        match o {
            Output::Transmit { dst, payload } => {
                if let Err(e) = sock.send_to(&payload, SocketAddr::V4(dst)).await {
                    warn!(%dst, "cannot send reply: {e}");
                }
            }
            Output::BindingUp(b) => info!(
                home_address = %b.home_address, care_of = %b.care_of_address, tunnel = ?b.tunnel,
                reverse_tunnel = b.reverse_tunnel, "binding up"
            ),
            Output::BindingDown { binding, reason } => info!(
                home_address = %binding.home_address, care_of = %binding.care_of_address,
                ?reason, "binding down"
            ),
        }
    }
}

fn answer(s: &Shared, req: Request) -> Response {
    let ha = s.ha.lock().unwrap();
    let now = Instant::now();
    match req {
        Request::Bindings => Response::ok(ha.bindings(now)),
        Request::Counters => Response::ok(ha.counters()),
        Request::Events => Response::error("events: served by mip4d only"),
        Request::Status => {
            let c = ha.config();
            Response::ok(serde_json::json!({
                "daemon": "mip4-ha",
                "version": env!("CARGO_PKG_VERSION"),
                "listen": c.listen.to_string(),
                "home_agent": c.home_agent.to_string(),
                "home_networks": c.home_networks.iter().map(|n| serde_json::json!({
                    "prefix": n.prefix.to_string(), "mode": n.mode, "interface": n.interface,
                })).collect::<Vec<_>>(),
                "trusted_networks": c.trusted_networks.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                "tunnel_backend": c.tunnel_backend,
                "dataplane": "not wired (bindings are logged only)",
                "mobile_nodes": c.mobile_nodes.len(),
                "bindings": ha.bindings(now).len(),
                "uptime": now.duration_since(s.started).as_secs(),
            }))
        }
    }
}
