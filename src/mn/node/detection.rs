//! Trusted-network detection as the node runs it (RFC 5266 §3.4, RFC
//! 5265 §3.2-§3.3): the probe beside the binding, its verdict, the
//! probe's registration adopted inside, and registration-based
//! monitoring.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{info, warn};

use super::{Access, McAttachment, Node, NodeEvent, Reason, State, VpnRequest};
use crate::mn::detect::{Cause, Outcome, Verdict, VpnWhenInside};
use crate::mn::mode::Trust;
use crate::mn::registration::{self, Client};

impl Node {
    /// Whether `addr` is on a trusted network, as far as the node knows.
    pub(super) fn trust_of(&self, addr: Ipv4Addr) -> Trust {
        // Pinned to mode 'mc', no address serves mode 'c' (`operator`);
        // no pin ever makes one trusted.
        if self.pin == Some(crate::mn::mode::Mode::Mc) {
            return Trust::Untrusted;
        }
        match &self.detector {
            Some(d) => match d.verdict(addr) {
                Some(Verdict::Trusted) => Trust::Trusted,
                Some(Verdict::Untrusted) => Trust::Untrusted,
                None => Trust::Unknown,
            },
            None => self.cfg.trust.classify(addr),
        }
    }

    pub(super) fn probe_pending(&self) -> bool {
        self.detector
            .as_ref()
            .is_some_and(|d| d.probing().is_some())
    }

    /// Starts a probe of the best attachment without a verdict, unless
    /// it is the one being probed (RFC 5266 §3.4: "whenever the mobile
    /// node detects a change in network connectivity"). A newer (or more
    /// preferred) attachment cancels an older probe; the older one is probed again
    /// once the newer is decided (RFC 5265 §3.2.1: each interface on its
    /// own).
    pub(super) fn maybe_probe(&mut self, now: Instant, why: &str) {
        // Pinned to mode 'mc': nothing leaves in the clear (`operator`).
        if self.pin == Some(crate::mn::mode::Mode::Mc) {
            return;
        }
        // Best first (`multihome`): the configured preference, then the
        // newest; networks never probed or cached untrusted are decided
        // there without a probe.
        let Some(target) = self.next_to_probe(now) else {
            return;
        };
        let Some(d) = self.detector.as_ref() else {
            return;
        };
        if d.probing().map(|(i, a)| (i.to_string(), a)) == Some(target.clone()) {
            return;
        }
        let (ifname, address) = target;
        self.start_probe(now, ifname, address, why);
    }

    /// Probes `address` on `ifname` now (a newer probe cancels a running
    /// one).
    pub(super) fn start_probe(
        &mut self,
        now: Instant,
        ifname: String,
        address: Ipv4Addr,
        why: &str,
    ) {
        let Some(d) = self.detector.as_ref() else {
            return;
        };
        let retransmit = d.config().retransmit.clone();
        let rng = Box::new(StdRng::from_rng(&mut self.rng).expect("StdRng seeds from StdRng"));
        let mut probe = match self.client.sibling(address, retransmit, rng) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot build the detection probe");
                return;
            }
        };
        // The probe is the mode 'c' registration if it succeeds.
        probe.set_reverse_tunnel(self.cfg.reverse_tunnel);
        let d = self.detector.as_mut().expect("checked above");
        let cancelled = d.start(now, &ifname, address, probe);
        if let Some((old_if, old)) = cancelled {
            self.out.probes.clear();
            let reason =
                format!("{why}: a newer attachment {address} on {ifname} is probed instead");
            info!(ifname = %old_if, address = %old, reason = %reason, "probe cancelled");
            self.event(
                now,
                NodeEvent::ProbeCancelled {
                    ifname: old_if,
                    address: old,
                    reason,
                },
            );
        }
        let reason = format!(
            "{why}: {}",
            Reason::ProbeStarted {
                address,
                ifname: ifname.clone(),
                home_agent: self.client.home_agent(),
            }
        );
        info!(%ifname, %address, reason = %reason, "probe started");
        self.event(
            now,
            NodeEvent::ProbeStarted {
                ifname,
                address,
                reason,
            },
        );
        self.drain_probe(now);
        self.vpn_with_probe(now, address);
    }

    /// Ends a running probe before its verdict.
    pub(super) fn cancel_probe(&mut self, now: Instant, reason: &str) {
        if let Some((ifname, address)) = self.detector.as_mut().and_then(|d| d.cancel()) {
            self.out.probes.clear();
            self.event(
                now,
                NodeEvent::ProbeCancelled {
                    ifname,
                    address,
                    reason: reason.to_string(),
                },
            );
        }
    }

    pub(super) fn drain_probe(&mut self, now: Instant) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        let mut out = Vec::new();
        while let Some(t) = d.poll_transmit() {
            out.push(t);
        }
        for mut t in out {
            let address = t.transmit.src.unwrap_or(Ipv4Addr::UNSPECIFIED);
            // The interface charon uses for this address (the plugin's
            // path report), where the node's own name no longer binds.
            t.fallback_ifname = self
                .vpn
                .sas()
                .iter()
                .find(|s| s.local.is_some() && s.local == t.transmit.src.map(IpAddr::V4))
                .and_then(|s| s.local_ifname.clone());
            self.event(
                now,
                NodeEvent::ProbeSent {
                    ifname: t.ifname.clone(),
                    address,
                    home_agent: *t.transmit.dst.ip(),
                    identification: t.transmit.identification,
                    retransmission: t.transmit.retransmission,
                },
            );
            self.out.probes.push_back(t);
        }
    }

    /// The connection status of an attachment changed: its verdict and
    /// probe end (RFC 5265 §3.2.3).
    pub(super) fn forget_attachment(
        &mut self,
        now: Instant,
        ifname: &str,
        addr: Option<Ipv4Addr>,
        why: &str,
    ) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        let probed = d.probing().map(|(i, a)| (i.to_string(), a));
        if d.forget(ifname, addr) {
            self.out.probes.clear();
            if let Some((ifname, address)) = probed {
                self.event(
                    now,
                    NodeEvent::ProbeCancelled {
                        ifname,
                        address,
                        reason: why.to_string(),
                    },
                );
            }
        }
        if self
            .access
            .care_of()
            .is_some_and(|c| addr.is_none_or(|a| a == c) && self.access.is_c())
        {
            self.monitor = None;
        }
    }

    pub(super) fn on_probe_outcome(&mut self, now: Instant, o: Outcome) {
        let elapsed_ms = Some(now.saturating_duration_since(o.started).as_millis() as u64);
        let verdict = o.cause.verdict();
        self.remember_verdict(now, &o.ifname, o.address, verdict);
        let reason = o.cause.to_string();
        info!(ifname = %o.ifname, address = %o.address, ?verdict, reason = %reason, forged = o.forged, "trust verdict");
        self.event(
            now,
            NodeEvent::TrustVerdict {
                ifname: o.ifname.clone(),
                address: o.address,
                verdict,
                cause: o.cause,
                elapsed_ms,
                forged: o.forged,
                reason: reason.clone(),
            },
        );
        let why = format!(
            "{} is {}: {reason}",
            o.address,
            match verdict {
                Verdict::Trusted => "on a trusted network",
                Verdict::Untrusted => "not on a trusted network",
            }
        );
        if let Some((client, binding)) = o.accepted {
            self.inside(now, client, binding, &o.ifname, &why);
            // Other attachments without a verdict are probed next.
            self.evaluate(now, None, &why);
        } else {
            // RFC 5265 §4.3 ignored by the i-HA: the decision below, or
            // `stray_binding`, replaces or removes its binding at once.
            if o.cause == Cause::AcceptedWithoutTnc && self.in_mc() {
                // The i-HA took the probe as a registration: its binding
                // now names the untrusted address. Put the TIA back at
                // once (RFC 5266 §3.4.2 step 4).
                let tia = self.current_vpn().and_then(|v| v.tia);
                if let (Some(tia), Some(mc)) = (tia, self.access.mc()) {
                    let reason = format!(
                        "{why}; the i-HA's binding now names {}: registering the TIA {tia} through the VPN again",
                        o.address
                    );
                    let mc = McAttachment { tia, ..mc.clone() };
                    self.register(now, Access::Mc(mc), &reason);
                }
            }
            self.evaluate(now, None, &why);
            self.after_untrusted(now, &why);
            if let Some(client) = o.stray {
                self.stray_binding(now, &o.ifname, o.address, client);
            }
        }
    }

    /// RFC 5266 §3.4.1 step 2, §3.4.2 step 3: the accepted probe is the
    /// mode 'c' registration; the VPN carries no data from now on.
    pub(super) fn inside(
        &mut self,
        now: Instant,
        client: Client,
        binding: registration::Binding,
        ifname: &str,
        why: &str,
    ) {
        let addr = binding.care_of_address;
        if self.stopping || !self.is_usable(addr) {
            return;
        }
        self.client.adopt(client);
        self.stray_replaced();
        self.client.set_reverse_tunnel(self.cfg.reverse_tunnel);
        self.stats.moves += u64::from(self.access.care_of().is_some_and(|c| c != addr));
        self.access = Access::C { care_of: addr };
        self.retry_at = None;
        self.event(
            now,
            NodeEvent::RegistrationAccepted {
                care_of: addr,
                lifetime: binding.lifetime.as_secs(),
                renewal: false,
            },
        );
        self.udp_tunnel(binding.udp_keepalive);
        self.tunnel_up(now, addr);
        self.ipv6_from(now, &binding);
        let reason = format!(
            "{why}: {}",
            Reason::ProbeKept {
                addr,
                ifname: ifname.to_string(),
            }
        );
        self.set_state(now, State::Registered { care_of: addr }, &reason);
        self.monitor_ok(now);
        if self.eligible_agent(ifname, addr).is_some() {
            // RFC 5266 §3.1.2: trusted now, and a foreign agent already
            // advertises on this link: mode 'f' (`foreign`).
            self.evaluate(now, None, "the probe found the network trusted");
        }
        let terminate = self
            .detector
            .as_ref()
            .is_some_and(|d| d.config().vpn_when_inside == VpnWhenInside::Terminate);
        // The VPN asked for with the probe (`vpn_with_probe`) and never
        // used goes whatever `vpn_when_inside` says: it exists only
        // because the verdict was not known; it may still be coming up.
        let asked = self.vpn_asked_with_probe.take();
        let reason = if terminate {
            Reason::TerminateVpnInside
        } else {
            Reason::TerminateVpnOfProbe
        };
        if terminate || asked.is_some() {
            if let Some(connection) = self.current_vpn().map(|v| v.connection.clone()).or(asked) {
                self.request_vpn(
                    now,
                    VpnRequest::Terminate { connection },
                    &reason.to_string(),
                );
            }
        }
    }

    /// RFC 5265 §3.2.4: a successful (re-)registration while inside.
    pub(super) fn monitor_ok(&mut self, now: Instant) {
        let Some(t) = self.detector.as_ref().and_then(|d| d.config().t_monitor) else {
            return;
        };
        let grace = self
            .detector
            .as_ref()
            .map(|d| d.config().monitor_grace)
            .unwrap_or_default();
        let renew = (t > grace).then(|| now + (t - grace));
        self.monitor = Some((renew, now + t));
    }

    pub(super) fn monitor_timeout(&mut self, now: Instant) {
        let Some((renew, deadline)) = self.monitor else {
            return;
        };
        if now >= deadline {
            self.monitor = None;
            if let Access::C { care_of } = self.access {
                self.inside_lost(now, care_of, Cause::MonitorExpired);
            }
            return;
        }
        if renew.is_some_and(|r| now >= r) {
            self.monitor = Some((None, deadline));
            if !self.client.is_pending() {
                // Re-registration is no matter of the binding's lifetime
                // here: data is no substitute for it (§3.2.4).
                self.client.renew_now(now);
                self.drain_client(now);
            }
        }
    }

    /// Inside no more, as far as the node can tell: stop plaintext traffic
    /// and detect again (RFC 5265 §3.2.4, §3.3).
    pub(super) fn inside_lost(&mut self, now: Instant, care_of: Ipv4Addr, cause: Cause) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        d.withdraw(care_of, cause);
        d.reprobe(care_of);
        self.monitor = None;
        self.forget_cached(care_of);
        let ifname = self
            .links
            .addresses
            .iter()
            .find(|a| a.addr == care_of)
            .map_or(String::new(), |a| a.ifname.clone());
        let reason = cause.to_string();
        warn!(%care_of, reason = %reason, "trusted verdict withdrawn");
        self.event(
            now,
            NodeEvent::TrustVerdict {
                ifname,
                address: care_of,
                verdict: Verdict::Untrusted,
                cause,
                elapsed_ms: None,
                forged: 0,
                reason: reason.clone(),
            },
        );
        self.evaluate(now, None, &format!("{care_of}: {reason}; detecting again"));
    }
}
