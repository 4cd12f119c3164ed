//! The decision after every change of attachment: home link, mode 'c'
//! on a trusted address, detection running, mode 'mc' through the VPN,
//! or untrusted / detached (RFC 5266 §3, §3.4).

use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::warn;

use super::{Access, LocalAddress, Node, NodeEvent, Reason, State};
use crate::mn::mode::{Mode, Trust};

impl Node {
    /// Decides the attachment after a change. `new` is an address that
    /// just appeared: if trusted, it is the one to register (the node
    /// moved there; break before make). Returns whether it started a
    /// registration.
    pub(super) fn evaluate(&mut self, now: Instant, new: Option<Ipv4Addr>, why: &str) -> bool {
        if self.stopping {
            return false;
        }
        // Home link first (RFC 5944 §3.6.1.1): the home address, or an
        // address of the home network, on one of our interfaces.
        let home = self.home_network();
        let unassigned =
            self.client.home_address().is_unspecified() && self.cfg.home_network.is_none();
        let at_home = self
            .usable_addresses()
            .find(|a| !unassigned && home.contains(&a.addr))
            .cloned();
        if let Some(a) = at_home {
            if self.state != State::AtHome {
                let reason = format!(
                    "{why}: {} on {} is in the home network {home}",
                    a.addr, a.ifname
                );
                self.go_home(now, &reason);
            }
            return false;
        }

        if self.detector.is_some() {
            self.maybe_probe(now, why);
        }
        let trusted = |a: &&LocalAddress| self.trust_of(a.addr) == Trust::Trusted;
        let current = self.access.local().and_then(|c| {
            self.usable_addresses()
                .filter(trusted)
                .find(|a| a.addr == c)
        });
        // Trusted first; among trusted ones the configured preference,
        // then the newest (`multihome`).
        let best = self
            .usable_addresses()
            .filter(trusted)
            .fold(None::<&LocalAddress>, |b, a| match b {
                Some(b) if !self.better(a, b) => Some(b),
                _ => Some(a),
            });
        let new = new.and_then(|n| {
            self.usable_addresses()
                .filter(trusted)
                .find(|a| a.addr == n)
        });
        let chosen = match (new, current) {
            // A new trusted address wins a move unless the current one is
            // preferred to it.
            (Some(n), Some(c)) if self.rank(n) > self.rank(c) => Some(c),
            (Some(n), _) => Some(n),
            (None, Some(c)) if best.is_some_and(|b| self.rank(b) < self.rank(c)) => best,
            (None, Some(c)) => Some(c),
            (None, None) => best,
        }
        .map(|a| (a.addr, a.ifname.clone(), a.prefix_len));

        match chosen {
            Some((addr, ifname, _)) => {
                // Mode 'f' on a trusted link with an agent (RFC 5266
                // §3.1.2), else mode 'c' on the same address (`foreign`).
                let access = match self.eligible_agent(&ifname, addr) {
                    Some(f) => Access::F(f),
                    None => Access::C { care_of: addr },
                };
                let same = self.access == access
                    && !matches!(
                        self.state,
                        State::AtHome
                            | State::Detached
                            | State::Untrusted { .. }
                            | State::UntrustedIpv6 { .. }
                    );
                if same {
                    return false;
                }
                let reason = match &access {
                    Access::F(f) => format!(
                        "{why}: {}",
                        Reason::ForeignAgentCareOf {
                            care_of: f.care_of,
                            agent: f.agent,
                            addr,
                            ifname,
                        }
                    ),
                    _ => format!("{why}: {}", Reason::TrustedCareOf { addr, ifname }),
                };
                self.stats.moves += u64::from(self.access.care_of().is_some());
                self.register(now, access, &reason);
                true
            }
            // RFC 5266 §3.4.2 step 4: through the VPN only once the probe
            // failed; a mode 'mc' binding that already carries the traffic
            // (inside ESP) keeps it meanwhile (§3.4.1, step 1a).
            None if (self.probe_pending() || self.gateway_waiting().is_some()) && !self.in_mc() => {
                let (ifname, address) = self
                    .detector
                    .as_ref()
                    .and_then(|d| d.probing().map(|(i, a)| (i.to_string(), a)))
                    .or_else(|| self.gateway_waiting())
                    .expect("probe_pending or waiting");
                let to = State::Detecting { address };
                if self.state != to {
                    self.retry_at = None;
                    let reason = format!("{why}: {}", Reason::Detecting { address, ifname });
                    self.set_state(now, to, &reason);
                }
                false
            }
            // Pinned to mode 'c', the VPN's TIA is never registered.
            None if self.current_vpn().is_some() && self.pin != Some(Mode::C) => {
                self.evaluate_mc(now, why)
            }
            None => {
                let untrusted = self
                    .usable_addresses()
                    .max_by_key(|a| a.seq)
                    .map(|a| a.addr);
                let to = match (untrusted, self.usable_ipv6()) {
                    (Some(address), _) => State::Untrusted { address },
                    (None, Some(address)) => State::UntrustedIpv6 { address },
                    (None, None) => State::Detached,
                };
                if to != self.state {
                    let mut reason = match to {
                        State::Untrusted { address } => format!(
                            "{why}: {address} is not on a trusted network; mode c does not apply, mode mc waits for a TIA from the VPN"
                        ),
                        State::UntrustedIpv6 { address } => {
                            format!("{why}: {}", Reason::Ipv6Only { address })
                        }
                        _ => format!("{why}: no usable address left"),
                    };
                    let went_stale = self.access.is_live_mc();
                    // A mode 'c' binding whose trusted address went, with
                    // only untrusted ones left (more than one interface).
                    let left_c = self.access.local().is_some() && self.state.has_care_of();
                    if let (true, Access::Mc(m)) = (went_stale, &mut self.access) {
                        // RFC 5266 §3.1.3: the care-of address was the TIA;
                        // without it nothing reaches the MN through the
                        // binding. Re-registered when a TIA comes back.
                        let care_of = m.tia;
                        m.stale = true;
                        self.stats.bindings_stale += 1;
                        let why_stale = format!(
                            "{why}: the TIA {care_of} is gone with the VPN; the binding at the home agent is stale until a TIA comes back"
                        );
                        warn!(%care_of, reason = %why_stale, "binding stale");
                        self.event(
                            now,
                            NodeEvent::BindingStale {
                                care_of,
                                reason: why_stale.clone(),
                            },
                        );
                        reason = why_stale;
                    }
                    // The binding, if any, stays at the home agent until
                    // it expires or the node reattaches: the next
                    // registration replaces it (break before make). The
                    // tunnel stays too, so that a TIA coming back needs
                    // only the registration.
                    self.retry_at = None;
                    self.set_state(now, to, &reason);
                    if went_stale || left_c || matches!(to, State::UntrustedIpv6 { .. }) {
                        // RFC 5266 §3.4.2 step 1: outside, no VPN (gone, or
                        // never needed while a trusted network served); on
                        // IPv6 access no probe runs, no verdict comes.
                        self.after_untrusted(now, &reason);
                    }
                }
                if self.take_decided_unprobed() {
                    // A network never probed, or cached untrusted: the
                    // VPN as after a failed probe (§3.4.2 step 1).
                    self.after_untrusted(now, why);
                }
                false
            }
        }
    }
}
