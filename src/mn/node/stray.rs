//! A binding the node never wanted: the i-HA accepted a detection probe
//! without the Trusted Networks Configured extension (an i-HA that
//! ignores RFC 5265 §4.3). The probe is a real registration (RFC 5266
//! §3.4), so that i-HA now binds the home address to the untrusted
//! physical address, and home traffic would flow there outside any VPN,
//! which RFC 5265 §3.2.3 and §4.1 exist to prevent.
//!
//! What the node does about it:
//! - replace it at once when it has a care-of address to register (the
//!   TIA in mode 'mc', RFC 5266 §3.1.3; a trusted address in mode 'c'):
//!   with simultaneous bindings off, the new registration replaces the
//!   binding (RFC 5944 §3.6.1.2); the stray is forgotten once the node's
//!   own registration is accepted;
//! - otherwise deregister it at once: lifetime 0 for that care-of
//!   address (RFC 5944 §3.6.1.1), from that address and by the probe's
//!   path (the binding was made there), with the probe's own client;
//! - on shutdown, deregister whatever is left of it, whatever
//!   `deregister_on_shutdown` says: keeping the node's own binding is an
//!   operator's choice, keeping this one never is.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use tracing::{info, warn};

use super::{Node, NodeEvent, State};
use crate::mn::detect::{reply_mn_half, ProbeTransmit};
use crate::mn::registration::{Client, ClientEvent};

/// The i-HA's binding to an untrusted address, and the client that made
/// it.
pub(super) struct Stray {
    ifname: String,
    care_of: Ipv4Addr,
    client: Client,
}

impl Node {
    /// The probe of `care_of` on `ifname` was accepted without TNC:
    /// `client` holds that registration. Called after the node's decision
    /// on the verdict, so a replacement it started is already pending.
    pub(super) fn stray_binding(
        &mut self,
        now: Instant,
        ifname: &str,
        care_of: Ipv4Addr,
        client: Client,
    ) {
        self.stray = Some(Stray {
            ifname: ifname.to_string(),
            care_of,
            client,
        });
        if self.client.is_pending() {
            // The node's next registration replaces it.
            return;
        }
        if let State::Registered { care_of: mine } = self.state {
            if mine != care_of && self.source_usable(mine) {
                let access = self.access.clone();
                let reason = format!(
                    "the i-HA accepted the probe of {care_of} without TNC and now binds the home address there: registering {mine} again"
                );
                self.register(now, access, &reason);
                return;
            }
        }
        self.deregister_stray(now, "nothing replaces it");
    }

    /// Deregisters the stray binding, unless that is under way already.
    pub(super) fn deregister_stray(&mut self, now: Instant, why: &str) {
        let Some(s) = self.stray.as_mut() else {
            return;
        };
        if s.client.is_pending() {
            return;
        }
        let expired = match s.client.binding() {
            None => true,
            Some(b) => b.expires.is_some_and(|e| now >= e),
        };
        if expired {
            // The i-HA has dropped it by now (its lifetime ran out).
            self.stray = None;
            return;
        }
        let care_of = s.care_of;
        if !self.is_usable(care_of) {
            // Nothing leaves from an address we no longer have; the
            // binding ends with its lifetime.
            warn!(%care_of, "cannot deregister the i-HA's binding to an untrusted address: the address is gone");
            return;
        }
        warn!(%care_of, reason = why, "deregistering the i-HA's binding to an untrusted address (accepted without TNC)");
        let s = self.stray.as_mut().expect("checked above");
        s.client.deregister(now);
        self.drain_stray(now);
    }

    /// The node's own registration was accepted (or everything was
    /// deregistered from home): the i-HA's binding is the node's again.
    pub(super) fn stray_replaced(&mut self) {
        if self.stray.as_ref().is_some_and(|s| !s.client.is_pending()) {
            self.stray = None;
        }
    }

    pub(super) fn stray_care_of(&self) -> Option<Ipv4Addr> {
        self.stray.as_ref().map(|s| s.care_of)
    }

    /// Whether the stray binding's deregistration is outstanding.
    pub(super) fn stray_pending(&self) -> bool {
        self.stray.as_ref().is_some_and(|s| s.client.is_pending())
    }

    /// Whether `payload` answers the stray binding's deregistration.
    pub(super) fn stray_owns(&self, payload: &[u8]) -> bool {
        let id = reply_mn_half(payload);
        self.stray
            .as_ref()
            .is_some_and(|s| id.is_some() && s.client.pending_identification() == id)
    }

    pub(super) fn stray_datagram(
        &mut self,
        now: Instant,
        from: std::net::SocketAddrV4,
        payload: &[u8],
    ) {
        if let Some(s) = self.stray.as_mut() {
            s.client.handle_datagram(now, from, payload);
        }
        self.drain_stray(now);
    }

    /// Its retransmissions only: the registration it holds is never
    /// renewed.
    pub(super) fn stray_timeout(&self) -> Option<Instant> {
        self.stray
            .as_ref()
            .filter(|s| s.client.is_pending())
            .and_then(|s| s.client.poll_timeout())
    }

    pub(super) fn stray_handle_timeout(&mut self, now: Instant) {
        if self.stray_timeout().is_some_and(|t| now >= t) {
            if let Some(s) = self.stray.as_mut() {
                s.client.handle_timeout(now);
            }
            self.drain_stray(now);
        }
    }

    /// Sends the stray client's requests by the probe's path and reads
    /// its outcome.
    fn drain_stray(&mut self, now: Instant) {
        let Some(s) = self.stray.as_mut() else {
            return;
        };
        let ifname = s.ifname.clone();
        let mut transmits = Vec::new();
        while let Some(t) = s.client.poll_transmit() {
            transmits.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = s.client.poll_event() {
            events.push(e);
        }
        for t in transmits {
            let fallback_ifname = self
                .vpn
                .sas()
                .iter()
                .find(|v| v.local.is_some() && v.local == t.src.map(IpAddr::V4))
                .and_then(|v| v.local_ifname.clone());
            self.event(
                now,
                NodeEvent::RequestSent {
                    purpose: "deregister",
                    care_of: t.care_of_address,
                    home_agent: *t.dst.ip(),
                    identification: t.identification,
                    retransmission: t.retransmission,
                },
            );
            self.out.probes.push_back(ProbeTransmit {
                ifname: ifname.clone(),
                transmit: t,
                fallback_ifname,
            });
        }
        for e in events {
            match e {
                ClientEvent::Deregistered { care_of_address } => {
                    info!(care_of = %care_of_address, "the i-HA's binding to an untrusted address is deregistered");
                    self.stray = None;
                    self.event(
                        now,
                        NodeEvent::Deregistered {
                            care_of: care_of_address,
                        },
                    );
                }
                ClientEvent::Denied { code, .. } => {
                    warn!(%code, "deregistering the i-HA's binding to an untrusted address was denied");
                }
                ClientEvent::Failed { attempts, .. } => {
                    warn!(
                        attempts,
                        "no answer to the deregistration of the i-HA's binding to an untrusted address"
                    );
                }
                _ => {}
            }
        }
        if self.stopping && !self.stray_pending() {
            self.finish_when_done(
                now,
                "the i-HA's binding to an untrusted address is dealt with",
            );
        }
    }
}
