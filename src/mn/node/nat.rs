//! RFC 3519 §4.10: noticing that the NAT in front of a UDP tunnel lost
//! its mapping, and registering again so that the home agent learns the
//! new one.
//!
//! The home agent believes a tunnel endpoint only from an authenticated
//! registration (RFC 3519 §6.1.2: unauthenticated tunnel data could
//! redirect a binding), so after a NAT made a new mapping (a timeout, a
//! reboot, `conntrack -F`) its traffic goes to the dead port until the
//! node registers again. The node's keepalive (§4.9, an ICMP echo to the
//! home agent inside the tunnel, sent by the data plane every granted
//! interval) is answered through the tunnel, so a healthy tunnel brings
//! at least one datagram from the home agent every interval. When none
//! came for [`SILENT_INTERVALS`] intervals in a row, the node renews at
//! once, from the registration socket that carries the tunnel: the
//! request creates (or uses) the NAT's new mapping and its reply moves
//! the home agent's endpoint there.

use std::time::{Duration, Instant};

use tracing::info;

use super::{Node, NodeEvent, State};
use crate::wire::extension::UdpTunnelReply;

/// Keepalive intervals without a datagram from the home agent after which
/// the mapping counts as lost. One lost echo or reply (or a reply landing
/// just past a check) must not cost a registration, and two in a row is
/// still within ordinary loss on a busy access link; three silent
/// intervals mean the mapping (or the path) is gone. A wrong guess costs
/// one authenticated registration round trip and changes nothing.
pub const SILENT_INTERVALS: u32 = 3;

/// The watch over one granted UDP tunnel.
#[derive(Debug, Clone, Copy)]
pub(super) struct NatWatch {
    interval: Duration,
    next_check: Instant,
    /// The plane's count of tunnel datagrams from the home agent at the
    /// last check.
    seen: u64,
    /// Checks in a row with nothing new.
    silent: u32,
}

impl Node {
    /// The data plane's count of tunnel datagrams it accepted from the
    /// home agent so far (RFC 3519 plane, monotonic). The daemon reports
    /// it before every [`handle_timeout`](Self::handle_timeout).
    pub fn udp_tunnel_received(&mut self, total: u64) {
        self.udp_received = total;
    }

    /// Starts the watch while a granted UDP tunnel is registered, ends it
    /// otherwise (called from `settle`, after every input).
    pub(super) fn update_nat_watch(&mut self, now: Instant) {
        let wanted = match (self.kernel.udp, self.kernel.tunnel, self.state) {
            (Some(k), Some(_), State::Registered { .. }) if !self.stopping => {
                Some(UdpTunnelReply::interval(k))
            }
            _ => None,
        };
        match (wanted, &self.nat_watch) {
            (None, _) => self.nat_watch = None,
            (Some(i), Some(w)) if w.interval == i => {}
            (Some(interval), _) => {
                self.nat_watch = Some(NatWatch {
                    interval,
                    next_check: now + interval,
                    seen: self.udp_received,
                    silent: 0,
                });
            }
        }
    }

    pub(super) fn nat_watch_timeout(&self) -> Option<Instant> {
        self.nat_watch.map(|w| w.next_check)
    }

    /// One keepalive interval has passed: anything from the home agent?
    pub(super) fn nat_watch_check(&mut self, now: Instant) {
        let received = self.udp_received;
        let Some(w) = self.nat_watch.as_mut().filter(|w| now >= w.next_check) else {
            return;
        };
        w.silent = if received == w.seen { w.silent + 1 } else { 0 };
        w.seen = received;
        w.next_check = now + w.interval;
        if w.silent < SILENT_INTERVALS {
            return;
        }
        w.silent = 0;
        let silent_s = w.interval.as_secs() * u64::from(SILENT_INTERVALS);
        let Some(care_of) = self.access.care_of() else {
            return;
        };
        self.stats.nat_reregistrations += 1;
        info!(%care_of, silent_s, "nothing from the home agent through the UDP tunnel: NAT mapping lost? registering again (RFC 3519 §4.10)");
        self.event(now, NodeEvent::NatMappingLost { care_of, silent_s });
        self.client.renew_now(now);
        self.drain_client(now);
    }
}
