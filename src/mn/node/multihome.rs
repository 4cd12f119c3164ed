//! More than one interface up at once: which attachment the node
//! prefers, which networks are never probed, and the verdict cache that
//! keeps a known untrusted network from being probed in the clear every
//! time (RFC 5266 §5: the probe reveals the home agent, the NAI and the
//! home address to whoever watches the access network).
//!
//! Rules kept here:
//! - trusted before untrusted, always: mode 'c' needs no VPN and no
//!   second encapsulation (RFC 5266 §3.1.1); among attachments of the
//!   same trust the configured preference decides, then the newest;
//! - an attachment less preferred than the trusted care-of address in
//!   use is not probed while that one serves: the probe *is* a
//!   registration (RFC 5266 §3.4) and would move the binding; it is
//!   probed when it is needed;
//! - a network is known by its default gateway's MAC and its prefix;
//!   only untrusted verdicts spare a probe. A cached trusted verdict
//!   spares nothing: the probe is the mode 'c' registration itself and
//!   must come back authenticated with TNC (RFC 5265 §4.1), so a
//!   spoofed gateway MAC gains an attacker nothing;
//! - the cache lives in memory only: on disk it would be a history of
//!   the places the laptop went, and it exists to spare repeated probes
//!   while the daemon runs (the never-probe list is the lasting tool).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use serde::Serialize;
use tracing::info;

use super::config::{mac_string, NetworkMatch};
use super::{Access, LocalAddress, Node, NodeEvent};
use crate::mn::detect::{Cause, Verdict};
use crate::mn::mode::Trust;

/// At most this many networks are remembered; the oldest verdict goes.
const CACHE_SIZE: usize = 256;

/// How many `gateway_wait`s an attachment that a MAC-keyed rule could
/// spare its probe (a cached untrusted verdict for its prefix, a
/// `never_probe` MAC) waits for its gateway's MAC, resolving it again
/// after each, before it is taken as untrusted without a probe.
const GATEWAY_TRIES: u32 = 5;

/// What an attachment without a known gateway MAC does next.
enum GatewayWait {
    /// Probe: no gateway-keyed rule could spare it, or the wait ran out.
    No,
    /// Wait for the MAC until then.
    Until(Instant),
    /// Untrusted without a probe, for this cause: a MAC-keyed rule could
    /// spare it and the MAC stayed unknown.
    GiveUp(Cause),
}

/// One network's verdict as the cache keeps it.
#[derive(Debug, Clone)]
struct CachedVerdict {
    gateway: [u8; 6],
    prefix: Ipv4Net,
    verdict: Verdict,
    until: Instant,
}

/// A cached verdict as `mip4ctl status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct CachedVerdictStatus {
    pub gateway: String,
    pub prefix: Ipv4Net,
    pub verdict: Verdict,
    pub expires_in: u64,
}

/// The node's multihoming state.
#[derive(Debug, Default)]
pub(super) struct Multi {
    /// The default gateway's MAC per interface, as the daemon learned it
    /// from the neighbour table.
    gateways: Vec<(String, [u8; 6])>,
    cache: Vec<CachedVerdict>,
    /// The attachment whose probe waits for its gateway's MAC, and until
    /// when.
    waiting: Option<(String, Ipv4Addr, Instant)>,
    /// An untrusted verdict was reached without a probe since the last
    /// evaluation: the VPN may be needed (RFC 5266 §3.4.2 step 1).
    decided_unprobed: bool,
    /// A wait for a gateway's MAC ran out and goes on: the daemon
    /// resolves the gateways again (the datagram or its ARP reply may
    /// have been lost).
    resolve_again: bool,
    /// Attachments taken as untrusted because their gateway's MAC stayed
    /// unknown: probed (or spared) by the rules once it is learnt.
    unresolved: Vec<(String, Ipv4Addr)>,
}

/// The prefix of an attachment (the network part only).
fn network_of(a: &LocalAddress) -> Ipv4Net {
    Ipv4Net::new(a.addr, a.prefix_len.min(32))
        .map(|n| n.trunc())
        .unwrap_or_else(|_| Ipv4Net::from(a.addr))
}

impl Node {
    /// The daemon learned (or lost) the MAC address of the default
    /// gateway on `ifname`.
    pub fn gateway_learned(&mut self, now: Instant, ifname: &str, mac: Option<[u8; 6]>) {
        let known = self.gateway_of(ifname);
        if known == mac || !self.watches(ifname) {
            return;
        }
        self.multi.gateways.retain(|(i, _)| i != ifname);
        let Some(mac) = mac else {
            return;
        };
        self.multi.gateways.push((ifname.to_string(), mac));
        self.reconsider_unresolved(ifname);
        let gateway = mac_string(&mac);
        info!(ifname, %gateway, "gateway learned");
        self.event(
            now,
            NodeEvent::GatewayLearned {
                ifname: ifname.to_string(),
                gateway: gateway.clone(),
            },
        );
        self.evaluate(now, None, &format!("the gateway on {ifname} is {gateway}"));
        self.settle(now);
    }

    /// The interface's attachment changed: its gateway is not known any
    /// more (the kernel flushes its neighbours on link down).
    pub(super) fn forget_gateway(&mut self, ifname: &str) {
        let in_use = self.links.addresses.iter().any(|a| a.ifname == ifname)
            && !self.links.down.iter().any(|l| l == ifname);
        if !in_use {
            self.multi.gateways.retain(|(i, _)| i != ifname);
        }
        let links = &self.links;
        self.multi.unresolved.retain(|(i, addr)| {
            i != ifname
                || links
                    .addresses
                    .iter()
                    .any(|a| a.ifname == *i && a.addr == *addr)
                    && !links.down.contains(i)
        });
        if self
            .multi
            .waiting
            .as_ref()
            .is_some_and(|(i, ..)| i == ifname)
        {
            self.multi.waiting = None;
        }
    }

    fn gateway_of(&self, ifname: &str) -> Option<[u8; 6]> {
        self.multi
            .gateways
            .iter()
            .find(|(i, _)| i == ifname)
            .map(|(_, m)| *m)
    }

    fn matches(&self, m: &NetworkMatch, a: &LocalAddress) -> bool {
        match m {
            NetworkMatch::Interface(i) => *i == a.ifname,
            NetworkMatch::Prefix(p) => p.contains(&a.addr),
            NetworkMatch::Gateway(mac) => self.gateway_of(&a.ifname) == Some(*mac),
        }
    }

    /// The attachment's place in the configured preference: 0 is the
    /// most preferred, unlisted ones share the last place.
    pub(super) fn rank(&self, a: &LocalAddress) -> usize {
        let prefer = &self.cfg.multihoming.prefer;
        prefer
            .iter()
            .position(|m| self.matches(m, a))
            .unwrap_or(prefer.len())
    }

    /// Of `a` and `b` (same trust), whether `a` is the better attachment:
    /// more preferred, or as preferred and newer.
    pub(super) fn better(&self, a: &LocalAddress, b: &LocalAddress) -> bool {
        (self.rank(a), std::cmp::Reverse(a.seq)) < (self.rank(b), std::cmp::Reverse(b.seq))
    }

    /// The rank of the trusted mode 'c' care-of address in use, if any:
    /// attachments ranked after it wait (their probe would move the
    /// binding).
    fn serving_rank(&self) -> Option<usize> {
        let Access::C { care_of } = self.access else {
            return None;
        };
        self.usable_addresses()
            .find(|a| a.addr == care_of && self.trust_of(a.addr) == Trust::Trusted)
            .map(|a| self.rank(a))
    }

    /// Settles without a probe what the never-probe list and the cache
    /// settle, and returns the attachment to probe next: the best one
    /// without a verdict, unless it is less preferred than the trusted
    /// care-of address in use or waits for its gateway's MAC.
    pub(super) fn next_to_probe(&mut self, now: Instant) -> Option<(String, Ipv4Addr)> {
        self.multi.waiting = None;
        self.multi.decided_unprobed = false;
        let d = self.detector.as_ref()?;
        let mut candidates: Vec<LocalAddress> = self
            .usable_addresses()
            .filter(|a| d.verdict(a.addr).is_none())
            .cloned()
            .collect();
        candidates.sort_by_key(|a| (self.rank(a), std::cmp::Reverse(a.seq)));
        let serving = self.serving_rank();
        for a in candidates {
            if let Some(cause) = self.unprobed_cause(&a, now) {
                self.decide_unprobed(now, &a, cause);
                continue;
            }
            if serving.is_some_and(|r| self.rank(&a) > r) {
                continue;
            }
            match self.waits_for_gateway(&a, now) {
                GatewayWait::No => return Some((a.ifname, a.addr)),
                GatewayWait::Until(until) => {
                    self.multi.waiting = Some((a.ifname.clone(), a.addr, until));
                    return None;
                }
                GatewayWait::GiveUp(cause) => {
                    self.multi.unresolved.push((a.ifname.clone(), a.addr));
                    self.decide_unprobed(now, &a, cause);
                }
            }
        }
        None
    }

    /// The attachment whose probe waits for its gateway's MAC.
    pub(super) fn gateway_waiting(&self) -> Option<(String, Ipv4Addr)> {
        self.multi.waiting.as_ref().map(|(i, a, _)| (i.clone(), *a))
    }

    pub(super) fn gateway_wait_timeout(&self) -> Option<Instant> {
        self.multi.waiting.as_ref().map(|(.., t)| *t)
    }

    /// The wait for a gateway's MAC ran out and was not settled: notes
    /// that the gateways are to be resolved again.
    pub(super) fn gateway_wait_expired(&mut self) {
        self.multi.resolve_again |= self.multi.waiting.is_some();
    }

    /// Whether the daemon should resolve the default gateways again
    /// (another datagram to each unresolved one, a fresh look at the
    /// neighbour table), since the last call.
    pub fn take_resolve_gateways(&mut self) -> bool {
        std::mem::take(&mut self.multi.resolve_again)
    }

    /// Whether an untrusted verdict came without a probe since the last
    /// call (the VPN may be needed).
    pub(super) fn take_decided_unprobed(&mut self) -> bool {
        std::mem::take(&mut self.multi.decided_unprobed)
    }

    pub(super) fn unprobed_cause(&self, a: &LocalAddress, now: Instant) -> Option<Cause> {
        let mh = &self.cfg.multihoming;
        if mh.never_probe.iter().any(|m| self.matches(m, a)) {
            return Some(Cause::NeverProbe);
        }
        let gateway = self.gateway_of(&a.ifname)?;
        let prefix = network_of(a);
        self.multi
            .cache
            .iter()
            .any(|c| {
                c.gateway == gateway
                    && c.prefix == prefix
                    && c.verdict == Verdict::Untrusted
                    && now < c.until
            })
            .then_some(Cause::Cached)
    }

    /// Whether `a` waits for its gateway's MAC: while a gateway-keyed
    /// rule could spare it its probe once the MAC is known.
    ///
    /// Such an attachment is never probed before its gateway is known:
    /// the probe, if the network is the cached untrusted one or a
    /// `never_probe` one, reveals the home agent, the NAI and the home
    /// address in the clear, which the rule exists to spare (RFC 5266
    /// §5). It waits, the gateway resolved again after each
    /// `gateway_wait`, and when the MAC stays unknown it is untrusted
    /// without a probe (the VPN serves; nothing could pass an unresolved
    /// gateway anyway) until the MAC is learnt
    /// ([`Self::reconsider_unresolved`]).
    fn waits_for_gateway(&self, a: &LocalAddress, now: Instant) -> GatewayWait {
        if self.gateway_of(&a.ifname).is_some() {
            return GatewayWait::No;
        }
        let Some(cause) = self.spared_by_gateway(a, now) else {
            return GatewayWait::No;
        };
        let wait = self.cfg.multihoming.gateway_wait;
        let elapsed = now.saturating_duration_since(a.appeared);
        let tries = elapsed.as_nanos() / wait.as_nanos().max(1) + 1;
        match u32::try_from(tries) {
            Ok(k) if k <= GATEWAY_TRIES && !wait.is_zero() => {
                GatewayWait::Until(a.appeared + wait * k)
            }
            _ => GatewayWait::GiveUp(cause),
        }
    }

    /// The cause `a` would be untrusted for, without a probe, if its
    /// gateway's MAC stays unknown: a MAC-keyed rule that could match it.
    fn spared_by_gateway(&self, a: &LocalAddress, now: Instant) -> Option<Cause> {
        let prefix = network_of(a);
        let cached = self
            .multi
            .cache
            .iter()
            .any(|c| c.prefix == prefix && c.verdict == Verdict::Untrusted && now < c.until);
        if cached {
            Some(Cause::CachedPrefix)
        } else if self.may_be_never_probe(a) {
            Some(Cause::NeverProbeUnresolved)
        } else {
            None
        }
    }

    /// Whether `a` may be a network never probed, for all the node knows:
    /// `never_probe` names networks by their gateway's MAC and `a`'s is
    /// unknown.
    pub(super) fn may_be_never_probe(&self, a: &LocalAddress) -> bool {
        self.gateway_of(&a.ifname).is_none()
            && self
                .cfg
                .multihoming
                .never_probe
                .iter()
                .any(|m| matches!(m, NetworkMatch::Gateway(_)))
    }

    /// The gateway on `ifname` was learnt: its attachments taken as
    /// untrusted for want of it are decided again by the rules (spared
    /// if the network is a cached or `never_probe` one, else probed).
    fn reconsider_unresolved(&mut self, ifname: &str) {
        let mut learnt = Vec::new();
        self.multi.unresolved.retain(|(i, addr)| {
            let on = i == ifname;
            if on {
                learnt.push(*addr);
            }
            !on
        });
        if let Some(d) = self.detector.as_mut() {
            for addr in learnt {
                d.reprobe(addr);
            }
        }
    }

    fn decide_unprobed(&mut self, now: Instant, a: &LocalAddress, cause: Cause) {
        let Some(d) = self.detector.as_mut() else {
            return;
        };
        d.decide_untrusted(&a.ifname, a.addr, cause);
        self.multi.decided_unprobed = true;
        let reason = cause.to_string();
        info!(ifname = %a.ifname, address = %a.addr, reason = %reason, "trust verdict without a probe");
        self.event(
            now,
            NodeEvent::TrustVerdict {
                ifname: a.ifname.clone(),
                address: a.addr,
                verdict: Verdict::Untrusted,
                cause,
                elapsed_ms: None,
                forged: 0,
                reason,
            },
        );
    }

    /// Keeps a probe's verdict for the network of `address` on `ifname`,
    /// if its gateway is known.
    pub(super) fn remember_verdict(
        &mut self,
        now: Instant,
        ifname: &str,
        address: Ipv4Addr,
        verdict: Verdict,
    ) {
        let lifetime = self.cfg.multihoming.verdict_cache;
        if lifetime == Duration::ZERO {
            return;
        }
        let Some(a) = self
            .links
            .addresses
            .iter()
            .find(|a| a.ifname == ifname && a.addr == address)
        else {
            return;
        };
        let Some(gateway) = self.gateway_of(ifname) else {
            return;
        };
        let prefix = network_of(a);
        let cache = &mut self.multi.cache;
        cache.retain(|c| !(c.gateway == gateway && c.prefix == prefix) && now < c.until);
        if cache.len() >= CACHE_SIZE {
            cache.remove(0);
        }
        cache.push(CachedVerdict {
            gateway,
            prefix,
            verdict,
            until: now + lifetime,
        });
    }

    /// A trusted verdict was withdrawn (monitoring): the network's cached
    /// verdict goes too, the next probe decides.
    pub(super) fn forget_cached(&mut self, care_of: Ipv4Addr) {
        let Some(a) = self.links.addresses.iter().find(|a| a.addr == care_of) else {
            return;
        };
        let (prefix, gateway) = (network_of(a), self.gateway_of(&a.ifname));
        self.multi
            .cache
            .retain(|c| !(Some(c.gateway) == gateway && c.prefix == prefix));
    }

    /// The cache as `mip4ctl status` shows it.
    pub(super) fn cache_status(&self, now: Instant) -> Vec<CachedVerdictStatus> {
        self.multi
            .cache
            .iter()
            .filter(|c| now < c.until)
            .map(|c| CachedVerdictStatus {
                gateway: mac_string(&c.gateway),
                prefix: c.prefix,
                verdict: c.verdict,
                expires_in: c.until.saturating_duration_since(now).as_secs(),
            })
            .collect()
    }
}
