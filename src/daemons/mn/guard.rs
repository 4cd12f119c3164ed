//! Feeds the node's guardrails ([`crate::mn::guard`]) what the plugin
//! reports, with the tunnel devices this mip4d uses; each new warning is
//! logged and published once, and stays in `mip4ctl status` while it
//! holds.

use std::time::Instant;

use tracing::warn;

use super::run::Daemon;
use crate::bridge::proto::{Event, PluginMsg};
use crate::dataplane::{kernel::link_name, Backend};
use crate::mn::guard::Warning;
use crate::mn::node::NodeEvent;

impl Daemon {
    /// The devices the home address's tunnel lives on: the TUN device
    /// (userspace backend) or the ipip link named after the home address
    /// (kernel backend; unknown while an HA is still to assign it).
    fn tunnel_devices(&self) -> Vec<String> {
        match self.installer.data_plane().status().backend {
            Backend::Userspace => vec![self.cfg.tunnel_device.clone()],
            Backend::Kernel => {
                let home = self.node.client().home_address();
                match home.is_unspecified() {
                    true => Vec::new(),
                    false => vec![link_name(home)],
                }
            }
        }
    }

    pub(super) fn guard_plugin_msg(&mut self, now: Instant, msg: &PluginMsg) {
        let mut new = Vec::new();
        match msg {
            PluginMsg::Hello { charon, .. } => {
                let devices = self.tunnel_devices();
                let c = charon.clone().unwrap_or_default();
                new.extend(self.guard.charon_interfaces(
                    c.interfaces_use.as_deref(),
                    c.interfaces_ignore.as_deref(),
                    &devices,
                    charon.is_some(),
                ));
            }
            PluginMsg::Snapshot { ike_sas } => {
                let alive: Vec<u32> = ike_sas.iter().map(|s| s.unique_id).collect();
                self.guard.retain_ike_sas(&alive);
                for s in ike_sas {
                    new.extend(self.guard.ike_sa(&s.name, s.unique_id, s.up, s.mobike));
                }
            }
            PluginMsg::Event {
                event: Event::IkeUpdown { ike, up },
                ..
            } => new.extend(self.guard.ike_sa(&ike.name, ike.unique_id, *up, ike.mobike)),
            _ => {}
        }
        for w in new {
            self.warn(now, w);
        }
    }

    fn warn(&self, now: Instant, warning: Warning) {
        let message = warning.to_string();
        warn!("{message}");
        self.bus
            .publish(now, NodeEvent::Warning { warning, message });
    }
}
