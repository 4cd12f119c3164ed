//! Registration Requests (RFC 5944 §3.6.1): building, signing, sending,
//! and retransmitting them (§3.6.3).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use tracing::debug;

use super::{remember, Client, ClientEvent, Pending, Purpose, Transmit};
use super::{INFINITE_LIFETIME, MIN_RETRANSMIT_INTERVAL};
use crate::auth::{self, AuthKind};
use crate::replay::{self, ReplayMethod};
use crate::wire::{Extension, Flags, RequestRepr, MIP_PORT};

impl Client {
    pub(super) fn start(&mut self, now: Instant, purpose: Purpose) {
        if let Some(old) = self.pending.take() {
            remember(
                &mut self.superseded_ids,
                replay::mn_half(old.request.identification),
            );
        }
        let at_home = purpose == Purpose::DeregisterAtHome;
        let home_address = self.home_address();
        let mut flags = self.config.flags;
        flags.remove(Flags::R);
        flags.remove(Flags::X);
        flags.set(Flags::D, self.config.foreign_agent.is_none());
        if at_home {
            // No tunnel to or from home.
            flags = Flags::empty();
        }
        let mut extensions = Vec::with_capacity(1 + self.config.extensions.len());
        if let Some(nai) = &self.config.nai {
            extensions.push(Extension::Nai(nai.clone()));
        }
        // Through a foreign agent the agent's end of the tunnel is its
        // own: RFC 3519 between the agent and the home agent is the
        // agent's to ask for (§3.1's R flag serves agents that relay it),
        // so the node's UDP Tunnel Request is for co-located care-of
        // addresses only. So is DSMIPv4's Tunneling Mode extension (RFC
        // 5454 §2.3: IPv6 tunnelled to the care-of address): a foreign
        // agent's care-of address is the agent's, which does not take
        // IPv6 in IPv4 for its visitors; the prefix is asked for without
        // it (to the home address, §2.2 code 0).
        let via_agent = self.config.foreign_agent.is_some();
        extensions.extend(
            self.config
                .extensions
                .iter()
                .filter(|e| {
                    !(via_agent
                        && matches!(
                            e,
                            Extension::UdpTunnelRequest(_)
                                | Extension::Dsmipv4(
                                    crate::wire::extension::Dsmipv4Ext::TunnelingMode
                                )
                        ))
                })
                .cloned(),
        );
        let request = RequestRepr {
            flags,
            lifetime: if purpose.is_deregistration() {
                0
            } else {
                self.config.lifetime
            },
            home_address,
            home_agent: self.home_agent,
            care_of_address: if at_home {
                home_address
            } else {
                self.config.care_of_address
            },
            identification: 0,
            extensions,
        };
        let (dst, src) = self.route(at_home, home_address);
        let initial = self.config.retransmit.initial_timeout;
        let mut p = Pending {
            purpose,
            request,
            payload: Vec::new(),
            dst,
            src,
            first_sent: now,
            last_sent: now,
            attempts: 0,
            timeout: initial,
            deadline: now,
            held: false,
            parked: false,
            resyncs: 0,
            ha_switched: false,
            lifetime_adjusted: false,
            t_bit_added: false,
        };
        self.sign_new_identification(now, &mut p);
        self.send(now, p, false);
    }

    pub(super) fn route(
        &self,
        at_home: bool,
        home_address: Ipv4Addr,
    ) -> (SocketAddrV4, Option<Ipv4Addr>) {
        match self.config.foreign_agent {
            Some(fa) if !at_home => (SocketAddrV4::new(fa, MIP_PORT), Some(home_address)),
            _ if at_home => (
                SocketAddrV4::new(self.home_agent, MIP_PORT),
                Some(home_address),
            ),
            _ => (
                SocketAddrV4::new(self.home_agent, MIP_PORT),
                Some(self.config.care_of_address),
            ),
        }
    }

    pub(super) fn sign_new_identification(&mut self, now: Instant, p: &mut Pending) {
        let ntp = self.clock.ntp(now);
        p.request.identification = self.replay.next_identification(ntp, &mut *self.rng);
        let mut payload = auth::sign_request(&p.request, &self.config.sa);
        if self.config.foreign_agent.is_some() && p.purpose != Purpose::DeregisterAtHome {
            if let Some(fa_sa) = &self.config.mn_fa_sa {
                // §3.6.1.3: MN-FA after MN-HA.
                auth::append_auth(&mut payload, AuthKind::MnFa, fa_sa);
            }
        }
        p.payload = payload;
    }

    pub(super) fn send(&mut self, now: Instant, mut p: Pending, retransmission: bool) {
        p.attempts += 1;
        p.last_sent = now;
        if p.attempts == 1 {
            p.first_sent = now;
        }
        p.deadline = now + p.timeout;
        self.stats.requests_sent += 1;
        self.last_request_at = Some(now);
        self.transmits.push_back(Transmit {
            dst: p.dst,
            src: p.src,
            payload: p.payload.clone(),
            purpose: p.purpose,
            care_of_address: p.request.care_of_address,
            identification: p.request.identification,
            retransmission,
        });
        self.pending = Some(p);
    }

    pub(super) fn backoff_cap(&self, lifetime: u16) -> Duration {
        let mut cap = self.config.retransmit.max_timeout;
        if lifetime != 0 && lifetime != INFINITE_LIFETIME {
            // §3.6.3: no greater than the requested lifetime.
            cap = cap.min(Duration::from_secs(lifetime.into()));
        }
        cap.max(MIN_RETRANSMIT_INTERVAL)
    }

    pub(super) fn retransmit(&mut self, now: Instant) {
        let mut p = self.pending.take().expect("caller checked");
        self.stats.retransmissions += 1;
        if self.replay.method() == ReplayMethod::Timestamp {
            // §3.6.3: with timestamps each retransmission is a new
            // registration with a new Identification.
            remember(
                &mut self.superseded_ids,
                replay::mn_half(p.request.identification),
            );
            self.sign_new_identification(now, &mut p);
        }
        // With nonces the request goes out unchanged (§3.6.3).
        p.timeout = (p.timeout * 2).min(self.backoff_cap(p.request.lifetime));
        self.send(now, p, true);
    }

    /// Sends a corrected request (after 133, 136, 69, 75/138): a fresh
    /// exchange with a fresh retransmission budget. It repeats the
    /// registration just denied, so RFC 5944 §3.6.3's floor holds: "The
    /// minimum time between Registration Requests MUST NOT be less than
    /// 1 second". A denial comes back within a round trip, so the
    /// corrected request is held until one second after the last one
    /// left, and signed only then (a fresh timestamp, §5.7).
    pub(super) fn resend(&mut self, now: Instant, mut p: Pending) {
        remember(
            &mut self.superseded_ids,
            replay::mn_half(p.request.identification),
        );
        p.attempts = 0;
        p.timeout = self.config.retransmit.initial_timeout;
        let due = self
            .last_request_at
            .map_or(now, |t| t + MIN_RETRANSMIT_INTERVAL);
        if due > now {
            debug!(purpose = ?p.purpose, wait_ms = (due - now).as_millis() as u64, "corrected request held for the one-second floor (§3.6.3)");
            p.held = true;
            p.deadline = due;
            self.pending = Some(p);
            return;
        }
        self.sign_new_identification(now, &mut p);
        self.send(now, p, false);
    }

    /// Sends the corrected request [`resend`](Self::resend) held.
    pub(super) fn send_held(&mut self, now: Instant) {
        let mut p = self.pending.take().expect("caller checked");
        p.held = false;
        self.sign_new_identification(now, &mut p);
        self.send(now, p, false);
    }

    /// The daemon could not put the transmit with `identification` on
    /// the wire (no route yet: a DHCP-style attach adds the address before
    /// the default route) and holds it until a route appears. It is no
    /// attempt: §3.6.3's retransmission answers silence after a request
    /// left, and a retransmission now would only replace the held request
    /// with a new Identification while nothing is out to be answered (the
    /// kernel tier lost a probe's whole wait that way: its route came a
    /// second after the address, the retransmission replaced the first
    /// request, and the reply to it came after the verdict).
    pub fn transmit_parked(&mut self, identification: u64) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.request.identification == identification && !p.held && !p.parked {
            p.parked = true;
            p.attempts = p.attempts.saturating_sub(1);
        }
    }

    /// The held transmit with `identification` left at `now`: the wait
    /// for its reply starts here (§3.6.3 times a retransmission from the
    /// request's transmission).
    pub fn transmit_left(&mut self, now: Instant, identification: u64) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        if p.request.identification == identification && p.parked {
            p.parked = false;
            p.attempts += 1;
            p.last_sent = now;
            if p.attempts == 1 {
                p.first_sent = now;
            }
            p.deadline = now + p.timeout;
        }
    }

    /// A parked request's timer: it waits on for its route, at most the
    /// time the whole retransmission schedule would have taken since it
    /// was handed over (no route to the home agent all that while is
    /// silence, as before), then gives up.
    pub(super) fn wait_parked(&mut self, now: Instant) {
        let Some(p) = self.pending.as_ref() else {
            return;
        };
        let r = &self.config.retransmit;
        let cap = self.backoff_cap(p.request.lifetime);
        let mut t = r.initial_timeout;
        let mut schedule = Duration::ZERO;
        for _ in 0..r.max_attempts {
            schedule += t;
            t = (t * 2).min(cap);
        }
        let limit = p.first_sent + schedule;
        if now >= limit {
            self.give_up(now);
        } else if let Some(p) = self.pending.as_mut() {
            p.deadline = (now + p.timeout).min(limit);
        }
    }

    pub(super) fn give_up(&mut self, now: Instant) {
        let p = self.pending.take().expect("caller checked");
        remember(
            &mut self.superseded_ids,
            replay::mn_half(p.request.identification),
        );
        self.stats.failures += 1;
        debug!(purpose = ?p.purpose, attempts = p.attempts, "registration attempt failed");
        if p.purpose == Purpose::Renew {
            if let Some(b) = &self.binding {
                // Keep trying while the binding lasts: pause for the
                // backoff cap, or half the time left if that is shorter.
                let mut pause = self.config.retransmit.max_timeout;
                if let Some(e) = b.expires {
                    pause = pause.min(e.saturating_duration_since(now) / 2);
                }
                self.renew_at = Some(now + pause.max(MIN_RETRANSMIT_INTERVAL));
            }
        }
        self.events.push_back(ClientEvent::Failed {
            purpose: p.purpose,
            attempts: p.attempts,
        });
    }
}
