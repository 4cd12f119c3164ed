//! What mip4-ha answers on its control socket (served by
//! [`crate::daemons::control`]): its binding cache, counters and status.

use std::time::Instant;

use super::run::Daemon;
use crate::ctl::{Request, Response};

impl Daemon {
    pub(super) fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        let ha = &self.ha;
        match req {
            Request::Bindings => Response::ok(ha.bindings(now)),
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
                let dp = self.dp.status();
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
                        "backend": dp.backend,
                        "tunnels": dp.bindings,
                        "installed": self.dp.installed(),
                        "counters": self.dp.counters(),
                    },
                    "mobile_nodes": c.mobile_nodes.len(),
                    "bindings": ha.binding_count(),
                    "uptime": now.duration_since(self.started).as_secs(),
                }))
            }
        }
    }
}
