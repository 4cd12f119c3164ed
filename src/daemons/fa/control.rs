//! What mip4-fa answers on its control socket (served by
//! [`crate::daemons::control`]): its visitor list, counters and status.

use std::time::Instant;

use super::run::Daemon;
use crate::ctl::{Request, Response};

impl Daemon {
    pub(super) fn answer(&self, req: Request) -> Response {
        let now = Instant::now();
        match req {
            Request::Visitors => Response::ok(self.fa.visitors(now)),
            Request::Events
            | Request::Stats
            | Request::Probe
            | Request::Force { .. }
            | Request::Release => Response::error(format!("{}: served by mip4d only", req.name())),
            Request::Bindings { .. } => {
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
                    "accept": crate::daemons::accept::accept_counters(),
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
