//! What mip4d answers on its control socket (served by
//! [`crate::daemons::control`], which also streams its events): the
//! node's status, binding and statistics, and the operator's requests
//! (probe now, pin a mode, release it), which go to the node like any
//! other input; the loop then carries out what they caused.

use std::time::Instant;

use serde_json::json;

use super::run::Daemon;
use crate::ctl::{Request, Response};
use crate::daemons::accept::accept_counters;

impl Daemon {
    pub(super) fn answer(&mut self, req: Request) -> Response {
        let now = Instant::now();
        match req {
            Request::Status | Request::Counters => {
                let mut v = serde_json::to_value(self.node.status(now)).unwrap_or(json!({}));
                let dp = self.installer.data_plane().status();
                if let Some(o) = v.as_object_mut() {
                    o.insert("daemon".into(), json!("mip4d"));
                    o.insert("pinned".into(), json!(self.node.pinned()));
                    o.insert("tunnel_backend".into(), json!(dp.backend));
                    o.insert(
                        "tunnel_device".into(),
                        json!(self.installer.tunnel_ifname()),
                    );
                    o.insert("data_plane".into(), json!(dp.counters));
                    o.insert("udp_tunnel".into(), self.installer.udp_status());
                    o.insert("accept".into(), json!(accept_counters()));
                    o.insert(
                        "registration_send_errors".into(),
                        json!(self.sockets.send_errors),
                    );
                    o.insert(
                        "registration_sent_on_route".into(),
                        json!(self.sockets.sent_on_route),
                    );
                    o.insert(
                        "probe_sockets".into(),
                        json!({
                            "sent": self.probes.sent,
                            "send_errors": self.probes.send_errors,
                            "sent_on_route": self.probes.sent_on_route,
                        }),
                    );
                    // Deployment mistakes in force (mn::guard), each
                    // with its message.
                    let warnings: Vec<_> = self
                        .guard
                        .warnings()
                        .into_iter()
                        .map(|w| {
                            let mut v = json!(w);
                            v["message"] = json!(w.to_string());
                            v
                        })
                        .collect();
                    o.insert("warnings".into(), json!(warnings));
                    o.insert(
                        "plugin".into(),
                        json!({
                            "socket": self.cfg.plugin_socket,
                            "connected": self.plugin.is_some(),
                            "messages": self.plugin_msgs,
                            "requests_sent": self.plugin_requests,
                        }),
                    );
                    // Kernel round trips a move pays for (src/netlink/count.rs).
                    o.insert(
                        "netlink".into(),
                        json!({ "requests": crate::netlink::count::requests_sent() }),
                    );
                }
                Response::ok(v)
            }
            Request::Bindings { .. } => {
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
            Request::Stats => {
                let mut v = serde_json::to_value(self.node.operator_stats()).unwrap_or(json!({}));
                v["daemon"] = json!("mip4d");
                v["state"] = json!(self.node.state());
                v["mode"] = json!(self.node.mode());
                v["outer_source_drops"] = self.installer.outer_drops();
                Response::ok(v)
            }
            Request::Probe => match self.node.probe_now(now) {
                Ok((ifname, address)) => Response::ok(json!({
                    "probing": {"ifname": ifname, "address": address},
                })),
                Err(e) => Response::error(e.to_string()),
            },
            Request::Force { mode } => match self.node.force(now, mode) {
                Ok(()) => Response::ok(json!({
                    "pinned": mode, "state": self.node.state(), "mode": self.node.mode(),
                })),
                Err(e) => Response::error(e.to_string()),
            },
            Request::Release => match self.node.release(now) {
                Ok(was) => Response::ok(json!({
                    "released": was, "state": self.node.state(), "mode": self.node.mode(),
                })),
                Err(e) => Response::error(e.to_string()),
            },
            Request::Events => Response::error("events is a subscription"),
            Request::Visitors => Response::error("mip4d has no visitor list (ask mip4-fa)"),
        }
    }
}
