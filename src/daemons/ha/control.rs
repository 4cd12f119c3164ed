//! What mip4-ha answers on its control socket (served by
//! [`crate::daemons::control`]): its binding cache (a page at a time),
//! counters and status (a summary: counts, and the first bindings' kernel
//! state).

use std::time::Instant;

use super::run::Daemon;
use crate::ctl::{Request, Response};

/// The tunnels and installed bindings `status` lists, the lowest home
/// addresses first; the counts say how many there are (`bindings` pages
/// through them all). A status at a million bindings stays a summary.
const STATUS_LIST: usize = 100;

impl Daemon {
    pub(super) fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        let ha = &self.ha;
        match req {
            Request::Bindings { after, limit } => {
                Response::ok(ha.bindings_page(now, after, Request::page_len(limit)))
            }
            Request::Events
            | Request::Stats
            | Request::Probe
            | Request::Force { .. }
            | Request::Release => Response::error(format!("{}: served by mip4d only", req.name())),
            Request::Visitors => Response::error("mip4-ha has no visitor list (ask mip4-fa)"),
            Request::Counters => {
                // The core's counters and the screen's at the socket, plus
                // the data plane's datagram counters (RFC 3024 ingress
                // drops among them).
                let screened = self.intake.counters();
                let mut c = ha.counters().clone();
                c.add(&screened);
                c.socket_dropped = self.socket_dropped();
                let mut v = serde_json::to_value(c).unwrap_or_default();
                // Of those, what never reached the agent's queue.
                v["screened"] = serde_json::to_value(screened).unwrap_or_default();
                if let Some(c) = self.dp.counters() {
                    v["dataplane"] = c;
                }
                Response::ok(v)
            }
            Request::Status => {
                let c = ha.config();
                let (tunnel_count, tunnels) = self.dp.tunnels(STATUS_LIST);
                let (installed_count, installed) = self.dp.installed(STATUS_LIST);
                Response::ok(serde_json::json!({
                    "daemon": "mip4-ha",
                    "accept": crate::daemons::accept::accept_counters(),
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
                        "backend": self.dp.backend(),
                        "tunnels": tunnels,
                        "tunnel_count": tunnel_count,
                        "installed": installed,
                        "installed_count": installed_count,
                        "counters": self.dp.counters(),
                    },
                    "mobile_nodes": c.mobile_nodes.len(),
                    "bindings": ha.binding_count(),
                    "socket_dropped": self.socket_dropped(),
                    "uptime": now.duration_since(self.started).as_secs(),
                }))
            }
        }
    }
}
