//! What the operator asks of the node through `mip4ctl`: a probe now, a
//! pinned access mode, and the registration statistics (denials by
//! code, drops by reason, handover times from the node's own clock).
//!
//! A pin narrows the modes the node may use; it never widens trust.
//! Trust still comes only from the configured prefixes or an
//! authenticated reply with TNC (RFC 5266 §3.4, RFC 5265 §4.1):
//! - `mc`: mode 'c' is never used; no probe is sent in the clear (RFC
//!   5266 §5: a probe reveals the home agent and the home address), the
//!   VPN carries everything (§3.1.3), also on a trusted network;
//! - `c`: mode 'mc' is never used and no VPN is asked for. On a
//!   trusted network the node runs mode 'c' as usual; on any other it
//!   has no Mobile IP service (state `untrusted`, home-address traffic
//!   not carried) rather than register an untrusted address with the
//!   i-HA;
//! - `f`: refused until mode 'f' exists in this build.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Instant;

use serde::Serialize;
use tracing::info;

use super::{Node, NodeEvent, State};
use crate::mn::detect::Cause;
use crate::mn::mode::Mode;
use crate::wire::ReplyCode;

/// How many handovers the median is taken over.
pub const HANDOVER_WINDOW: usize = 64;

/// What the operator asked for was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Counted from the node's own events (`Node::event`), so that what
/// `mip4ctl stats` says and what `mip4ctl events` showed never differ.
#[derive(Debug, Default)]
pub(super) struct Record {
    /// Denials by code: registrations and probes alike.
    denied: BTreeMap<u8, (u64, &'static str)>,
    /// When the node last left a state with a working binding (or the
    /// home link); None while it has one.
    left_service: Option<(Instant, State)>,
    handovers: u64,
    durations_ms: VecDeque<u64>,
    worst_ms: Option<u64>,
    last: Option<Handover>,
}

/// One handover: from the last state with service to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handover {
    pub from: State,
    pub to: State,
    pub ms: u64,
}

/// Denials of one code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Denials {
    pub code: u8,
    /// RFC 5944 §3.4 / §3.8.3's name of the code.
    pub name: &'static str,
    /// "home_agent" or "foreign_agent" (RFC 5944 codes 64-127 are the
    /// foreign agent's).
    pub by: &'static str,
    pub count: u64,
}

/// Handover times, from the node's monotonic clock: from leaving a
/// state with a working binding (or the home link) to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Handovers {
    pub count: u64,
    pub last_ms: Option<u64>,
    /// Over the last `window` handovers.
    pub median_ms: Option<u64>,
    /// Since the daemon started.
    pub worst_ms: Option<u64>,
    pub window: usize,
    pub last: Option<Handover>,
}

/// `mip4ctl stats` of the node.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorStats {
    pub registrations: RegistrationCounts,
    pub denials: Vec<Denials>,
    /// Datagrams dropped or not sent, by reason (every dropped reply in
    /// exactly one).
    pub drops: BTreeMap<&'static str, u64>,
    pub handovers: Handovers,
    /// The operator's pin, if any.
    pub pinned: Option<Mode>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegistrationCounts {
    pub requests_sent: u64,
    pub retransmissions: u64,
    pub accepted: u64,
    pub denied: u64,
    pub failed: u64,
    pub deregistrations: u64,
    pub probes_started: u64,
}

/// States in which the node's traffic flows: a binding, or home.
fn has_service(s: &State) -> bool {
    matches!(s, State::Registered { .. } | State::AtHome)
}

impl Record {
    pub(super) fn observe(&mut self, now: Instant, e: &NodeEvent) {
        match e {
            NodeEvent::RegistrationDenied { code, .. } => self.deny(*code),
            NodeEvent::TrustVerdict {
                cause: Cause::Denied { code },
                ..
            } => self.deny(*code),
            NodeEvent::State { from, to, .. } => self.state(now, from, to),
            _ => {}
        }
    }

    fn deny(&mut self, code: u8) {
        let e = self
            .denied
            .entry(code)
            .or_insert((0, ReplyCode(code).name()));
        e.0 += 1;
    }

    fn state(&mut self, now: Instant, from: &State, to: &State) {
        if matches!(to, State::Stopped | State::Deregistering { .. }) {
            self.left_service = None;
            return;
        }
        if has_service(from) && !has_service(to) {
            self.left_service = Some((now, *from));
        }
        let moved = has_service(from) && has_service(to);
        let started = if moved {
            Some((now, *from))
        } else {
            self.left_service
        };
        if let (true, Some((at, from))) = (has_service(to), started) {
            self.left_service = None;
            let ms = now.saturating_duration_since(at).as_millis() as u64;
            self.handovers += 1;
            if self.durations_ms.len() == HANDOVER_WINDOW {
                self.durations_ms.pop_front();
            }
            self.durations_ms.push_back(ms);
            self.worst_ms = Some(self.worst_ms.map_or(ms, |w| w.max(ms)));
            self.last = Some(Handover { from, to: *to, ms });
        }
    }

    fn handovers(&self) -> Handovers {
        let mut sorted: Vec<u64> = self.durations_ms.iter().copied().collect();
        sorted.sort_unstable();
        Handovers {
            count: self.handovers,
            last_ms: self.last.as_ref().map(|h| h.ms),
            median_ms: sorted.get(sorted.len() / 2).copied(),
            worst_ms: self.worst_ms,
            window: HANDOVER_WINDOW,
            last: self.last.clone(),
        }
    }
}

impl Node {
    /// The operator's pin, if any.
    pub fn pinned(&self) -> Option<Mode> {
        self.pin
    }

    /// `mip4ctl probe`: runs the trusted-network probe (RFC 5266 §3.4,
    /// RFC 5265 §3.2) of the node's attachment now: the care-of address
    /// in mode 'c', else the newest usable address. Its verdict replaces
    /// the one it has when it comes; until then the node keeps what it
    /// has. Returns the attachment probed.
    pub fn probe_now(&mut self, now: Instant) -> Result<(String, Ipv4Addr), Refused> {
        if self.detector.is_none() {
            return Err(Refused(
                "detection is off (no [detect] section): trust comes from trusted_networks".into(),
            ));
        }
        if self.stopping {
            return Err(Refused("mip4d is shutting down".into()));
        }
        if self.pin == Some(Mode::Mc) {
            return Err(Refused(
                "pinned to mode mc: no probe leaves in the clear (mip4ctl release first)".into(),
            ));
        }
        let c = self.access.care_of().filter(|_| self.access.is_c());
        let target = self
            .usable_addresses()
            .filter(|a| c.is_none_or(|c| a.addr == c))
            .max_by_key(|a| a.seq)
            .cloned()
            .ok_or_else(|| Refused("no usable IPv4 address to probe".into()))?;
        if let Some(cause) = self.unprobed_cause(&target, now) {
            if cause == Cause::NeverProbe {
                return Err(Refused(format!(
                    "{} on {} is a network never probed ([multihoming] never_probe, RFC 5266 §5)",
                    target.addr, target.ifname
                )));
            }
            // A cached untrusted verdict: the operator asks again.
            self.forget_cached(target.addr);
        }
        if self.may_be_never_probe(&target) {
            return Err(Refused(format!(
                "{} on {}: its gateway's MAC address is unknown and [multihoming] never_probe names networks by MAC: it may be one (RFC 5266 §5)",
                target.addr, target.ifname
            )));
        }
        let why = "the operator asked for a probe (mip4ctl probe)";
        self.start_probe(now, target.ifname.clone(), target.addr, why);
        Ok((target.ifname, target.addr))
    }

    /// `mip4ctl force MODE`: pins the access mode (see the module
    /// documentation for what each pin means).
    pub fn force(&mut self, now: Instant, mode: Mode) -> Result<(), Refused> {
        match mode {
            Mode::F => {
                return Err(Refused(
                    "mode f cannot be pinned: a foreign agent's care-of address is used only when one is heard on a network the probe found trusted (RFC 5266 §3.1.2, §3)".into(),
                ))
            }
            Mode::Mc if !self.cfg.with_charon => {
                return Err(Refused(
                    "mode mc needs charon's mip4 plugin ([vpn] plugin_socket)".into(),
                ))
            }
            _ => {}
        }
        if self.stopping {
            return Err(Refused("mip4d is shutting down".into()));
        }
        self.pin = Some(mode);
        let reason = format!("pinned to mode {mode} by the operator (mip4ctl force {mode})");
        info!(%mode, "{reason}");
        self.event(
            now,
            NodeEvent::ModePinned {
                mode: Some(mode),
                reason: reason.clone(),
            },
        );
        if mode == Mode::Mc {
            self.cancel_probe(now, &reason);
        } else {
            self.reprobe_unless_in_c();
        }
        self.evaluate(now, None, &reason);
        self.settle(now);
        Ok(())
    }

    /// `mip4ctl release`: the node chooses its mode again.
    pub fn release(&mut self, now: Instant) -> Result<Option<Mode>, Refused> {
        let Some(was) = self.pin.take() else {
            return Ok(None);
        };
        let reason = format!("mode {was} released by the operator (mip4ctl release)");
        info!("{reason}");
        self.event(
            now,
            NodeEvent::ModePinned {
                mode: None,
                reason: reason.clone(),
            },
        );
        self.reprobe_unless_in_c();
        self.evaluate(now, None, &reason);
        self.settle(now);
        Ok(Some(was))
    }

    /// Out of a pin that kept the node from mode 'c', its verdicts are
    /// probed again before mode 'c' is used: the probe is the
    /// registration, sent past the VPN (a request from the physical
    /// address would otherwise take the VPN's routes), and monitoring did
    /// not run meanwhile (RFC 5265 §3.2.4). The mode 'mc' binding carries
    /// the traffic until the verdict.
    fn reprobe_unless_in_c(&mut self) {
        if self.access.is_c() {
            return;
        }
        let addrs: Vec<Ipv4Addr> = self.usable_addresses().map(|a| a.addr).collect();
        if let Some(d) = self.detector.as_mut() {
            for a in addrs {
                d.reprobe(a);
            }
        }
    }

    /// `mip4ctl stats`.
    pub fn operator_stats(&self) -> OperatorStats {
        let r = self.client.stats();
        let d = self.detector.as_ref().map(|d| d.stats().clone());
        let drops = BTreeMap::from([
            ("reply_malformed", r.dropped_malformed),
            ("reply_unmatched", r.dropped_unmatched),
            ("reply_late", r.dropped_late),
            ("reply_duplicate", r.dropped_duplicate),
            ("reply_wrong_home_address", r.dropped_wrong_home_address),
            ("reply_unauthenticated", r.dropped_unauthenticated),
            (
                "probe_reply_forged",
                d.as_ref().map_or(0, |d| d.forged_replies),
            ),
            ("request_no_usable_source", self.stats.transmits_suppressed),
        ]);
        OperatorStats {
            registrations: RegistrationCounts {
                requests_sent: r.requests_sent,
                retransmissions: r.retransmissions,
                accepted: r.registrations,
                denied: r.denials,
                failed: r.failures,
                deregistrations: r.deregistrations,
                probes_started: d.as_ref().map_or(0, |d| d.probes_started),
            },
            denials: self
                .record
                .denied
                .iter()
                .map(|(&code, &(count, name))| Denials {
                    code,
                    name,
                    by: if (64..128).contains(&code) {
                        "foreign_agent"
                    } else {
                        "home_agent"
                    },
                    count,
                })
                .collect(),
            drops,
            handovers: self.record.handovers(),
            pinned: self.pin,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn handovers_run_from_leaving_service_to_the_next_and_keep_worst_and_median() {
        let t0 = Instant::now();
        let mut r = Record::default();
        let a = State::Registered {
            care_of: [10, 0, 0, 1].into(),
        };
        let b = State::Registered {
            care_of: [10, 0, 0, 2].into(),
        };
        let reg_b = State::Registering {
            care_of: [10, 0, 0, 2].into(),
        };
        // The first registration after start is no handover.
        r.state(t0, &State::Detached, &reg_b);
        r.state(t0, &reg_b, &a);
        assert_eq!(r.handovers().count, 0);
        for (i, ms) in [300u64, 100, 200].into_iter().enumerate() {
            let at = t0 + Duration::from_secs(10 * (i as u64 + 1));
            r.state(at, &a, &reg_b);
            r.state(at + Duration::from_millis(ms), &reg_b, &b);
            r.state(at + Duration::from_secs(1), &b, &a);
        }
        let h = r.handovers();
        // Three moves a->b (300, 100, 200 ms) and three b->a (0 ms).
        assert_eq!(h.count, 6);
        assert_eq!(h.worst_ms, Some(300));
        assert_eq!(h.last_ms, Some(0));
        assert_eq!(h.median_ms, Some(100));
    }

    #[test]
    fn denials_are_counted_by_code_with_the_rfc_name() {
        let mut r = Record::default();
        let e = NodeEvent::RegistrationDenied {
            code: 131,
            reason: "x",
            by: "home_agent",
            purpose: "register",
        };
        r.observe(Instant::now(), &e);
        r.observe(Instant::now(), &e);
        assert_eq!(r.denied[&131].0, 2);
        assert_eq!(r.denied[&131].1, ReplyCode(131).name());
    }
}
