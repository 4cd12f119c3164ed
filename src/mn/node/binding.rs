//! The node's registrations through its [`Client`]: registering a
//! care-of address, deregistering from home, and what the client's
//! transmits and outcomes mean for the node.

use std::time::Instant;

use tracing::{info, warn};

use super::{Access, AgentRoute, Node, NodeEvent, State};
use crate::mn::detect::Cause;
use crate::mn::registration::{self, Purpose};

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Register => "register",
        Purpose::Renew => "renew",
        Purpose::Deregister => "deregister",
        Purpose::DeregisterAtHome => "deregister_at_home",
    }
}

impl Node {
    pub(super) fn register(&mut self, now: Instant, access: Access, reason: &str) {
        let Some(care_of) = access.care_of() else {
            return;
        };
        self.retry_at = None;
        self.access = access;
        // RFC 5266 §3: reverse tunnelling is a MUST when the Mobile IP
        // tunnel runs inside IPsec; in mode 'c' it is the operator's
        // choice (RFC 3024).
        self.client
            .set_reverse_tunnel(self.access.mc().is_some() || self.cfg.reverse_tunnel);
        self.set_state(now, State::Registering { care_of }, reason);
        let configured = self.cfg.registration.lifetime;
        match self.access.fa().cloned() {
            Some(f) => {
                // Mode 'f': the agent decapsulates; the home address's
                // route to it is in place before the request leaves from
                // the home address (RFC 5944 §3.6.1.1).
                self.tunnel_down(now, "mode f: the foreign agent ends the tunnel");
                self.agent_route(Some(AgentRoute {
                    ifname: f.ifname.clone(),
                    router: f.agent,
                }));
                // §2.1.1: no more than the agent accepts (else 69).
                self.client.set_lifetime(configured.min(f.max_lifetime));
                self.client.move_to(now, care_of, Some(f.agent));
            }
            None => {
                self.agent_route(None);
                self.client.set_lifetime(configured);
                // RFC 5944 §3.6: a newer request supersedes a pending one.
                self.client.move_to(now, care_of, None);
            }
        }
        self.drain_client(now);
    }

    pub(super) fn go_home(&mut self, now: Instant, reason: &str) {
        // At home nothing is tunnelled: a probe's binding elsewhere
        // would only undo the deregistration below.
        self.cancel_probe(now, "back on the home link");
        self.monitor = None;
        self.stats.home_returns += 1;
        self.retry_at = None;
        self.access = Access::None;
        self.tunnel_down(now, "back on the home link");
        self.agent_route(None);
        self.set_state(now, State::AtHome, reason);
        // RFC 5944 §3.6.1.1: deregister all bindings, care-of address =
        // home address, sent from the home address to the home agent.
        if !self.client.home_address().is_unspecified() {
            self.client.deregister_at_home(now);
            self.drain_client(now);
        }
    }

    /// Moves the client's datagrams and outcomes through the node.
    pub(super) fn drain_client(&mut self, now: Instant) {
        while let Some(t) = self.client.poll_transmit() {
            let via_agent = self.access.fa().filter(|f| *t.dst.ip() == f.agent);
            let sendable = match (via_agent, t.src) {
                // Mode 'f': from the home address through the agent, while
                // the node's address on the agent's link stays.
                (Some(f), _) => self.is_usable(f.local),
                // Co-located: the source is the care-of address, which
                // must still be ours (RFC 5944 §3.6.1.1).
                (None, Some(src)) if t.purpose != Purpose::DeregisterAtHome => {
                    self.source_usable(src)
                }
                _ => true,
            };
            if !sendable {
                self.stats.transmits_suppressed += 1;
                continue;
            }
            if let Some(tia) = t.src.filter(|a| self.vpn.is_tia(*a)) {
                // Mode 'mc': the request must take charon's routes. Mode
                // c's rule would send it by the main table, outside ESP,
                // where the firewall drops it; the guard refuses it there
                // when those routes are gone.
                self.direct_to_home_agent(None);
                self.guard_vpn_from(tia);
            }
            self.event(
                now,
                NodeEvent::RequestSent {
                    purpose: purpose_name(t.purpose),
                    care_of: t.care_of_address,
                    home_agent: *t.dst.ip(),
                    identification: t.identification,
                    retransmission: t.retransmission,
                },
            );
            self.out.transmits.push_back(t);
        }
        while let Some(e) = self.client.poll_event() {
            self.on_client_event(now, e);
        }
    }

    pub(super) fn on_client_event(&mut self, now: Instant, e: registration::ClientEvent) {
        use registration::ClientEvent as E;
        match e {
            E::Registered {
                binding,
                renewal,
                tnc,
                ..
            } => {
                self.event(
                    now,
                    NodeEvent::RegistrationAccepted {
                        care_of: binding.care_of_address,
                        lifetime: binding.lifetime.as_secs(),
                        renewal,
                    },
                );
                info!(care_of = %binding.care_of_address, lifetime = binding.lifetime.as_secs(), renewal, "registration accepted");
                // The i-HA's binding names our care-of address again.
                self.stray_replaced();
                if self.stopping {
                    return;
                }
                if self.detector.is_some()
                    && self.access
                        == (Access::C {
                            care_of: binding.care_of_address,
                        })
                {
                    if tnc {
                        self.monitor_ok(now);
                    } else {
                        // RFC 5265 §3.2.3: inside only with TNC.
                        self.inside_lost(now, binding.care_of_address, Cause::RenewalWithoutTnc);
                        return;
                    }
                }
                if self.access.care_of() == Some(binding.care_of_address) {
                    // Mode 'f': no tunnel here, the agent ends it.
                    if self.access.fa().is_none() {
                        self.udp_tunnel(binding.udp_keepalive);
                        self.tunnel_up(now, binding.care_of_address);
                    }
                    self.ipv6_from(now, &binding);
                    self.set_state(
                        now,
                        State::Registered {
                            care_of: binding.care_of_address,
                        },
                        &format!(
                            "home agent accepted {} for {} s",
                            binding.care_of_address,
                            binding.lifetime.as_secs()
                        ),
                    );
                }
            }
            E::Deregistered { care_of_address } => {
                self.event(
                    now,
                    NodeEvent::Deregistered {
                        care_of: care_of_address,
                    },
                );
                info!(care_of = %care_of_address, "deregistered");
                if care_of_address == self.client.home_address() {
                    // From home: every binding is gone (RFC 5944 §3.6.1.1).
                    self.stray_replaced();
                }
                if self.stopping {
                    self.deregistering = false;
                    self.finish_when_done(now, "deregistration accepted");
                } else if self.state != State::AtHome {
                    self.tunnel_down(now, "binding removed");
                }
            }
            E::Denied {
                code,
                by,
                purpose,
                authenticated,
            } => {
                let by = match by {
                    registration::Agent::HomeAgent => "home_agent",
                    registration::Agent::ForeignAgent => "foreign_agent",
                };
                self.event(
                    now,
                    NodeEvent::RegistrationDenied {
                        code: code.0,
                        reason: code.name(),
                        by,
                        purpose: purpose_name(purpose),
                    },
                );
                warn!(%code, by, purpose = purpose_name(purpose), authenticated, "registration denied");
                if self.stopping {
                    self.deregistering = false;
                    self.finish_when_done(now, &format!("deregistration denied: {code}"));
                    return;
                }
                self.deregister_stray(now, "the registration meant to replace it was denied");
                if self.access.fa().is_some() && by == "foreign_agent" {
                    // §3.7.2: the agent will not serve us; authenticated
                    // or not, the node's next request is its own choice:
                    // the co-located address of the same trusted link.
                    self.refuse_agent(now, &format!("the foreign agent denied: {code}"));
                    return;
                }
                if let (Purpose::Register | Purpose::Renew, Some(care_of)) =
                    (purpose, self.access.care_of())
                {
                    self.tunnel_down(now, &format!("registration denied: {code}"));
                    self.set_state(
                        now,
                        State::Denied {
                            care_of,
                            code: code.0,
                        },
                        &format!("home agent denied {care_of}: {code}"),
                    );
                }
            }
            E::Failed { purpose, attempts } => {
                self.event(
                    now,
                    NodeEvent::RegistrationFailed {
                        purpose: purpose_name(purpose),
                        attempts,
                    },
                );
                warn!(
                    purpose = purpose_name(purpose),
                    attempts, "no reply from the home agent"
                );
                if self.stopping {
                    self.deregistering = false;
                    self.finish_when_done(now, "home agent did not answer the deregistration");
                    return;
                }
                self.deregister_stray(now, "the registration meant to replace it got no answer");
                if self.access.fa().is_some() && purpose == Purpose::Register {
                    // The agent relays nothing (or its home agent is out
                    // of reach through it): co-located on the same link.
                    self.refuse_agent(
                        now,
                        &format!(
                            "no reply through the foreign agent after {attempts} transmissions"
                        ),
                    );
                    return;
                }
                if let (Purpose::Renew, Access::C { care_of }, true) =
                    (purpose, &self.access, self.detector.is_some())
                {
                    let care_of = *care_of;
                    // RFC 5265 §3.3: a failed re-registration while inside
                    // stops plaintext traffic and restarts detection.
                    self.inside_lost(now, care_of, Cause::NoReply { attempts });
                    return;
                }
                if let (Purpose::Register, State::Registering { care_of }) = (purpose, self.state) {
                    self.retry_at = Some(now + self.cfg.retry_interval);
                    self.set_state(
                        now,
                        State::Unreachable { care_of },
                        &format!(
                            "no reply after {attempts} transmissions; retry in {} s",
                            self.cfg.retry_interval.as_secs()
                        ),
                    );
                }
                // A failed renewal: the client keeps renewing while the
                // binding lasts; Expired follows if it never succeeds.
            }
            E::Expired { binding } => {
                self.event(
                    now,
                    NodeEvent::BindingExpired {
                        care_of: binding.care_of_address,
                    },
                );
                warn!(care_of = %binding.care_of_address, "binding expired");
                if self.stopping {
                    return;
                }
                self.tunnel_down(now, "binding expired");
                let usable = self.access_usable();
                if usable && !matches!(self.state, State::Registering { .. }) {
                    let access = self.access.clone();
                    self.register(now, access, "binding expired: registering again");
                }
            }
            E::HomeAgentChanged { from, to } => {
                self.event(now, NodeEvent::HomeAgentChanged { from, to });
                info!(%from, %to, "home agent named its unicast address (code 136)");
            }
            E::ReplayResync {
                method,
                clock_offset,
            } => {
                info!(
                    ?method,
                    clock_offset, "replay protection resynchronised (code 133)"
                );
            }
        }
    }
}
