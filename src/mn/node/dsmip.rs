//! DSMIPv4 (RFC 5454) on the node: what a registration's IPv6 Prefix
//! Reply means for the node's IPv6.
//!
//! - §2.2 codes 0 and 1 grant the prefix: the node's IPv6 home address in
//!   it goes on the tunnel's device and IPv6 from the prefix (and to the
//!   configured destinations) is routed into the tunnel, which carries it
//!   to the care-of or the home address as the code says.
//! - Codes 8 and 9 (and any other) refuse it: the IPv4 binding stands,
//!   the node has no IPv6 home address.
//! - §3.5: a reply without an IPv6 Prefix Reply comes from a home agent
//!   that skipped the extension: IPv4 only, nothing else changes.
//! - Every accepted registration asks again (§3.8: one without the
//!   request would deregister the prefix), so the reply to each one says
//!   what the node has from then on.
//!
//! Mode 'f' asks for the prefix too, but the node configures no IPv6
//! there: the IPv6 in IPv4 that the home agent sends to the home address
//! arrives through the foreign agent, and this node's data plane has no
//! tunnel to take it from (not implemented).

use std::time::Instant;

use tracing::info;

use super::{Ipv6Home, Node, NodeEvent};
use crate::mn::registration::{Binding, Ipv6Outcome};

impl Node {
    /// After an accepted registration (the tunnel of its care-of address
    /// already asked for): the node's IPv6 as the reply's Prefix Reply
    /// says.
    pub(super) fn ipv6_from(&mut self, now: Instant, binding: &Binding) {
        let (want, why) = match (binding.ipv6, &self.cfg.dsmipv4) {
            (Ipv6Outcome::Granted(v6), Some(cfg)) if self.kernel.tunnel.is_some() => (
                Some(Ipv6Home {
                    binding: v6,
                    address: cfg.address_in(v6.prefix),
                    routes: cfg.routes.clone(),
                }),
                String::new(),
            ),
            (Ipv6Outcome::Granted(v6), _) => (
                None,
                format!(
                    "prefix {} granted, but mode f has no tunnel of the node's to carry its IPv6",
                    v6.prefix
                ),
            ),
            (Ipv6Outcome::Refused { code }, _) => (
                None,
                format!(
                    "the home agent refused the IPv6 prefix (RFC 5454 §2.2 code {code}); IPv4 only"
                ),
            ),
            (Ipv6Outcome::Ignored, _) => (
                None,
                "the home agent ignored the IPv6 Prefix Request (RFC 5454 §3.5); IPv4 only"
                    .to_string(),
            ),
            (Ipv6Outcome::NotRequested, _) => (None, "no IPv6 prefix asked for".to_string()),
        };
        if want.is_none()
            && self.kernel.ipv6_home.is_none()
            && binding.ipv6 != Ipv6Outcome::NotRequested
        {
            info!(reason = %why, "no IPv6 home address");
        }
        self.ipv6_home(now, want, &why);
    }

    /// Asks for the IPv6 home address and its routes, or for their
    /// removal, when that changes ([`super::Action::Ipv6Home`]).
    pub(super) fn ipv6_home(&mut self, now: Instant, want: Option<Ipv6Home>, reason: &str) {
        if self.kernel.ipv6_home == want {
            return;
        }
        let home = self.client.home_address();
        match &want {
            Some(v6) => {
                info!(%home, address = %v6.address, prefix = %v6.binding.prefix, tunnel_to = ?v6.binding.tunnel_to, "IPv6 home address up (RFC 5454)");
                self.event(
                    now,
                    NodeEvent::Ipv6HomeUp {
                        address: v6.address,
                        prefix: v6.binding.prefix,
                        tunnel_to: v6.binding.tunnel_to,
                    },
                );
            }
            None => {
                info!(%home, reason, "IPv6 home address removed");
                self.event(
                    now,
                    NodeEvent::Ipv6HomeDown {
                        reason: reason.to_string(),
                    },
                );
            }
        }
        self.kernel.ipv6_home = want.clone();
        self.out
            .actions
            .push_back(super::Action::Ipv6Home { home, ipv6: want });
    }
}
