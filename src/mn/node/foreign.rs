//! Mode 'f' (RFC 5266 §3.1.2): foreign agents heard on the node's links
//! ([`Discovery`]) and registering through one.
//!
//! Discovery runs on every attachment, in parallel with co-located
//! address acquisition and the probe. An agent's care-of address is a
//! candidate only on a network the node found trusted: with `[detect]`
//! that is the authenticated probe's verdict on the co-located address
//! of the same link (RFC 5266 §3, §3.4); an advertisement, which anyone
//! on the link can send, never decides it. `attach::evaluate` picks the
//! agent ([`Node::eligible_agent`]) over the co-located address of the
//! trusted link it advertises on; the node falls back to that co-located
//! address (mode 'c') when the agent's advertisements stop for their
//! lifetime (RFC 5944 §2.4.2), when it or its home agent denies or
//! never answers, and when it is withdrawn or busy.

use std::net::Ipv4Addr;
use std::time::Instant;

use tracing::info;

use super::state::FaAttachment;
use super::{Access, Action, Node, NodeEvent};
use crate::mn::discovery::{Heard, Ignored};
use crate::mn::node::action::AgentRoute;

impl Node {
    /// An ICMP Router Advertisement (type 9) received on `ifname` from
    /// `from` (the ICMP message, IP header stripped).
    pub fn agent_advertisement(&mut self, now: Instant, ifname: &str, from: Ipv4Addr, icmp: &[u8]) {
        if !self.cfg.foreign_agent || !self.watches(ifname) {
            return;
        }
        let mine = |n: &Node| {
            n.access
                .fa()
                .is_some_and(|f| f.ifname == ifname && f.agent == from)
        };
        match self.discovery.advertisement(now, ifname, from, icmp) {
            Ok(Heard::New(a)) => {
                info!(ifname, agent = %a.address, care_of = %a.care_of, "foreign agent heard");
                self.event(
                    now,
                    NodeEvent::AgentHeard {
                        ifname: ifname.to_string(),
                        agent: a.address,
                        care_of: a.care_of,
                        registration_lifetime: a.registration_lifetime,
                        reverse_tunnel: a.reverse_tunnel,
                    },
                );
                // A new agent gets its chance, whatever the last refused.
                self.refused_agent = None;
                let why = format!("foreign agent {} heard on {ifname}", a.address);
                self.evaluate(now, None, &why);
            }
            Ok(Heard::Refreshed) => {
                // The verdict may have come since the agent was first
                // heard: the link's co-located binding gives way to it.
                if self.access.is_c() && self.attachment_ifname().as_deref() == Some(ifname) {
                    self.evaluate(
                        now,
                        None,
                        "the foreign agent advertises on a trusted network",
                    );
                }
            }
            Ok(Heard::Rebooted(a)) if mine(self) => {
                // RFC 5944 §2.4.3: its visitor list is gone.
                let access = self.access.clone();
                let why = format!(
                    "foreign agent {} rebooted (sequence {} below 256): registering again (RFC 5944 §2.4.3)",
                    a.address, a.sequence
                );
                self.register(now, access, &why);
            }
            Ok(Heard::Rebooted(_)) => {}
            Err(Ignored::Withdrawn | Ignored::Busy) if mine(self) => {
                self.agent_gone(now, ifname, from, "the foreign agent withdrew or is busy");
            }
            Err(_) => {}
        }
        self.settle(now);
    }

    /// The interface to send an Agent Solicitation on (to 224.0.0.2,
    /// TTL 1, RFC 5944 §2.2).
    pub fn poll_solicitation(&mut self) -> Option<String> {
        self.discovery.poll_solicitation()
    }

    /// The agent mode 'f' would use on `ifname`, the node's co-located
    /// address there being `local`: heard within its lifetime, not the
    /// one that last refused, with a registration lifetime, and offering
    /// reverse tunnelling when the node asks for it (else the agent
    /// denies with 74, RFC 3024 §3.3).
    pub(super) fn eligible_agent(&self, ifname: &str, local: Ipv4Addr) -> Option<FaAttachment> {
        if !self.cfg.foreign_agent {
            return None;
        }
        let a = self.discovery.agent(ifname)?;
        let refused = self.refused_agent.as_ref() == Some(&(ifname.to_string(), a.address));
        if refused || a.registration_lifetime == 0 || (self.cfg.reverse_tunnel && !a.reverse_tunnel)
        {
            return None;
        }
        Some(FaAttachment {
            care_of: a.care_of,
            agent: a.address,
            ifname: ifname.to_string(),
            local,
            max_lifetime: a.registration_lifetime,
        })
    }

    /// The interface of the physical address the access rests on.
    fn attachment_ifname(&self) -> Option<String> {
        let local = self.access.local()?;
        self.usable_addresses()
            .find(|a| a.addr == local)
            .map(|a| a.ifname.clone())
    }

    /// Mode 'f' failed with this agent (a denial, no answer): it is not
    /// used again until it is heard anew, and the node decides again
    /// (mode 'c' on the same link).
    pub(super) fn refuse_agent(&mut self, now: Instant, why: &str) {
        let Some(f) = self.access.fa().cloned() else {
            return;
        };
        self.refused_agent = Some((f.ifname.clone(), f.agent));
        self.agent_gone(now, &f.ifname, f.agent, why);
    }

    fn agent_gone(&mut self, now: Instant, ifname: &str, agent: Ipv4Addr, why: &str) {
        self.event(
            now,
            NodeEvent::AgentLost {
                ifname: ifname.to_string(),
                agent,
                reason: why.to_string(),
            },
        );
        info!(ifname, %agent, reason = why, "foreign agent lost");
        if self.access.fa().is_some_and(|f| f.ifname == ifname) {
            self.evaluate(
                now,
                None,
                &format!("{why}: back to the co-located care-of address"),
            );
        }
    }

    /// The agents whose advertisements stopped for their lifetime (RFC
    /// 5944 §2.4.2), and the solicitations due.
    pub(super) fn discovery_timeout(&mut self, now: Instant) {
        if !matches!(self.discovery.poll_timeout(), Some(t) if now >= t) {
            return;
        }
        for a in self.discovery.handle_timeout(now) {
            if self.usable_addresses().any(|l| l.ifname == a.ifname) {
                self.discovery.attached(now, &a.ifname);
            }
            let why = format!(
                "no advertisement from foreign agent {} on {} within its lifetime (RFC 5944 §2.4.2)",
                a.address, a.ifname
            );
            self.agent_gone(now, &a.ifname, a.address, &why);
        }
    }

    /// Asks for mode 'f''s route to the agent, or its removal, when that
    /// changes ([`Action::ForeignAgentRoute`]).
    pub(super) fn agent_route(&mut self, route: Option<AgentRoute>) {
        if self.kernel.agent_route == route {
            return;
        }
        self.kernel.agent_route = route.clone();
        let home = self.client.home_address();
        info!(%home, ?route, "foreign agent route");
        self.out
            .actions
            .push_back(Action::ForeignAgentRoute { home, route });
    }

    /// Whether requests for the current access can leave: from the
    /// care-of address (modes 'c', 'mc'), or through the agent while the
    /// node's address on its link stays (mode 'f').
    pub(super) fn access_usable(&self) -> bool {
        match &self.access {
            Access::F(f) => self.is_usable(f.local),
            a => a.care_of().is_some_and(|c| self.source_usable(c)),
        }
    }
}
