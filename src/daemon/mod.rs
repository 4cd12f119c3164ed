//! mip4d's I/O around the sans-IO [`crate::mn::Node`]: rtnetlink events
//! in, registration datagrams out and in, the node's actions carried out
//! on the kernel, the control socket, and signals. Every decision is the
//! node's; this module only moves things.

pub mod config;
pub mod control;
pub mod events;
pub mod kernel;
pub mod sockets;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::json;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::ctl::{Request, Response};
use crate::dataplane::{DataPlane, Role, UserspaceConfig};
use crate::mn::Node;
use crate::netlink::{NetEvent, Netlink, Watcher};

pub use config::MnConfig;
use events::{Clock, EventBus};
use kernel::Installer;
use sockets::Sockets;

/// Interfaces that are never attachments: loopback and our own tunnels.
fn is_own(cfg: &MnConfig, ifname: &str) -> bool {
    ifname == "lo"
        || ifname == cfg.tunnel_device
        // The kernel backend's ipip links (crate::dataplane::kernel).
        || ifname.starts_with("mip4-")
}

struct Daemon {
    cfg: MnConfig,
    node: Node,
    installer: Installer,
    sockets: Sockets,
    bus: EventBus,
}

impl Daemon {
    /// Carries out what the node asked: actions first (the tunnel must be
    /// gone before a deregistration from home leaves), then datagrams,
    /// then the events.
    async fn flush(&mut self) {
        while let Some(a) = self.node.poll_action() {
            if let Err(e) = self.installer.apply(&a).await {
                error!(action = ?a, error = %e, "kernel change failed");
            }
        }
        while let Some(t) = self.node.poll_transmit() {
            self.sockets.send(&t).await;
        }
        while let Some((at, e)) = self.node.poll_event() {
            self.bus.publish(at, e);
        }
    }

    fn net_event(&mut self, now: Instant, ev: NetEvent) {
        match ev {
            NetEvent::AddressAdded {
                ifname,
                addr,
                prefix_len,
                ..
            } if !is_own(&self.cfg, &ifname) => {
                self.node.address_added(now, &ifname, addr, prefix_len)
            }
            NetEvent::AddressRemoved { ifname, addr, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.address_removed(now, &ifname, addr);
                self.sockets.forget(addr);
            }
            NetEvent::LinkUp { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.link_up(now, &ifname)
            }
            NetEvent::LinkDown { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.link_down(now, &ifname)
            }
            NetEvent::LinkRemoved { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.link_removed(now, &ifname)
            }
            _ => {}
        }
    }

    fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        match req {
            Request::Status | Request::Counters => {
                let mut v = serde_json::to_value(self.node.status(now)).unwrap_or(json!({}));
                let dp = self.installer.data_plane().status();
                if let Some(o) = v.as_object_mut() {
                    o.insert("daemon".into(), json!("mip4d"));
                    o.insert("tunnel_backend".into(), json!(dp.backend));
                    o.insert(
                        "tunnel_device".into(),
                        json!(self.installer.tunnel_ifname()),
                    );
                    o.insert("data_plane".into(), json!(dp.counters));
                    o.insert(
                        "registration_send_errors".into(),
                        json!(self.sockets.send_errors),
                    );
                }
                Response::ok(v)
            }
            Request::Bindings => {
                let b = self.node.client().binding().map(|b| {
                    json!({
                        "home_address": b.home_address,
                        "home_agent": b.home_agent,
                        "care_of_address": b.care_of_address,
                        "lifetime": b.lifetime.as_secs(),
                        "expires_in": b.expires.map(|e| e.saturating_duration_since(now).as_secs()),
                    })
                });
                Response::ok(json!(b.into_iter().collect::<Vec<_>>()))
            }
            Request::Events => Response::error("events is a subscription"),
        }
    }

    /// Feeds the node what the kernel has now (after the watcher is up,
    /// so nothing falls between the dump and the first event; repeats
    /// are ignored by the node).
    async fn initial_dump(&mut self, nl: &Netlink, now: Instant) -> Result<(), String> {
        let addrs = nl.list_addresses(None).await.map_err(|e| e.to_string())?;
        let mut names: HashMap<u32, String> = HashMap::new();
        for a in addrs {
            let name = match names.get(&a.ifindex) {
                Some(n) => n.clone(),
                None => {
                    let n = nl.link_name(a.ifindex).await.map_err(|e| e.to_string())?;
                    names.insert(a.ifindex, n.clone());
                    n
                }
            };
            if is_own(&self.cfg, &name) {
                continue;
            }
            if let Ok(st) = nl.link_state(a.ifindex).await {
                if !st.is_running() {
                    self.node.link_down(now, &name);
                }
            }
            self.node.address_added(now, &name, a.addr, a.prefix_len);
        }
        Ok(())
    }
}

/// Runs mip4d until SIGTERM or SIGINT.
pub async fn run(cfg: MnConfig) -> Result<(), String> {
    let clock = Clock::now();
    let bus = EventBus::new(clock);
    let nl = Arc::new(Netlink::new().map_err(|e| format!("netlink: {e}"))?);
    let mut watcher = Watcher::new().map_err(|e| format!("netlink watcher: {e}"))?;
    let dp = DataPlane::start(
        nl.clone(),
        cfg.tunnel_backend,
        UserspaceConfig::new(&cfg.tunnel_device, Role::MobileNode),
    )
    .await
    .map_err(|e| format!("tunnel data plane: {e}"))?;
    let installer = Installer::new(nl.clone(), dp, cfg.routing_table, cfg.rule_priority);
    let node = Node::new(cfg.node.clone(), clock.instant(), SystemTime::now())
        .map_err(|e| format!("registration settings: {e}"))?;
    let (rx_tx, mut replies) = mpsc::channel(256);
    let (q_tx, mut queries) = mpsc::channel(16);
    let control = control::serve(&cfg.control_socket, q_tx, bus.clone())
        .map_err(|e| format!("control socket {}: {e}", cfg.control_socket.display()))?;
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut d = Daemon {
        node,
        installer,
        sockets: Sockets::new(rx_tx),
        bus,
        cfg,
    };
    info!(
        home_address = %d.node.client().home_address(),
        home_agent = %d.node.client().home_agent(),
        backend = %d.installer.data_plane().status().backend,
        control_socket = %d.cfg.control_socket.display(),
        "mip4d started"
    );
    let dump = d.initial_dump(&nl, Instant::now()).await;
    if let Err(e) = dump {
        warn!(error = %e, "reading the current addresses failed; waiting for events");
    }
    d.flush().await;

    let mut shutdown_deadline: Option<Instant> = None;
    let result = loop {
        let wake = [d.node.poll_timeout(), shutdown_deadline]
            .into_iter()
            .flatten()
            .min();
        let sleep = async move {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = watcher.next() => match ev {
                Some(ev) => d.net_event(Instant::now(), ev),
                None => break Err("the netlink event socket closed".to_string()),
            },
            Some((from, payload)) = replies.recv() => {
                d.node.handle_datagram(Instant::now(), from, &payload);
            }
            Some((req, tx)) = queries.recv() => {
                let _ = tx.send(d.answer(req));
            }
            _ = sleep => {
                let now = Instant::now();
                if shutdown_deadline.is_some_and(|t| now >= t) {
                    d.node.finish(now, "no answer to the deregistration within shutdown_timeout_ms");
                } else {
                    d.node.handle_timeout(now);
                }
            }
            _ = term.recv(), if shutdown_deadline.is_none() => {
                info!("SIGTERM: shutting down");
                let now = Instant::now();
                shutdown_deadline = Some(now + d.cfg.shutdown_timeout);
                d.node.shutdown(now, d.cfg.deregister_on_shutdown);
            }
            _ = int.recv(), if shutdown_deadline.is_none() => {
                info!("SIGINT: shutting down");
                let now = Instant::now();
                shutdown_deadline = Some(now + d.cfg.shutdown_timeout);
                d.node.shutdown(now, d.cfg.deregister_on_shutdown);
            }
        }
        d.flush().await;
        if d.node.is_stopped() {
            break Ok(());
        }
    };
    control.abort();
    d.installer.remove_all().await;
    let _ = std::fs::remove_file(&d.cfg.control_socket);
    info!("mip4d stopped");
    result
}
