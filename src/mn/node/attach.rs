//! The decision after every change of attachment: home link, mode 'c'
//! on a trusted address, detection running, mode 'mc' through the VPN,
//! or untrusted / detached (RFC 5266 §3, §3.4).

use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::warn;

use super::{Access, LocalAddress, Node, NodeEvent, Reason, State};
use crate::mn::mode::Trust;

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
        let current = self.access.care_of().filter(|c| {
            self.usable_addresses()
                .any(|a| a.addr == *c && self.trust_of(a.addr) == Trust::Trusted)
        });
        let newest = self
            .usable_addresses()
            .filter(trusted)
            .max_by_key(|a| a.seq)
            .map(|a| (a.addr, a.ifname.clone(), a.prefix_len));
        let chosen = match (new, current) {
            (Some(n), _) if self.trust_of(n) == Trust::Trusted && self.is_usable(n) => self
                .usable_addresses()
                .find(|a| a.addr == n)
                .map(|a| (a.addr, a.ifname.clone(), a.prefix_len)),
            (_, Some(c)) => self
                .usable_addresses()
                .find(|a| a.addr == c)
                .map(|a| (a.addr, a.ifname.clone(), a.prefix_len)),
            _ => newest,
        };

        match chosen {
            Some((addr, ifname, _)) => {
                let same = self.access == Access::C { care_of: addr }
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
                let reason = format!("{why}: {}", Reason::TrustedCareOf { addr, ifname });
                self.stats.moves += u64::from(self.access.care_of().is_some());
                self.register(now, Access::C { care_of: addr }, &reason);
                true
            }
            // RFC 5266 §3.4.2 step 4: through the VPN only once the probe
            // failed; a mode 'mc' binding that already carries the traffic
            // (inside ESP) keeps it meanwhile (§3.4.1, step 1a).
            None if self.probe_pending() && !self.in_mc() => {
                let (ifname, address) = self
                    .detector
                    .as_ref()
                    .and_then(|d| d.probing().map(|(i, a)| (i.to_string(), a)))
                    .expect("probe_pending");
                let to = State::Detecting { address };
                if self.state != to {
                    self.retry_at = None;
                    let reason = format!("{why}: {}", Reason::Detecting { address, ifname });
                    self.set_state(now, to, &reason);
                }
                false
            }
            None if self.current_vpn().is_some() => self.evaluate_mc(now, why),
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
                    if went_stale || matches!(to, State::UntrustedIpv6 { .. }) {
                        // RFC 5266 §3.4.2 step 1: outside, the VPN is gone;
                        // on IPv6 access no probe runs, no verdict comes.
                        self.after_untrusted(now, &reason);
                    }
                }
                false
            }
        }
    }
}
