//! Registration Replies (RFC 5944 §3.6.2): matched, authenticated, then
//! believed; acceptances and denials (§3.6.2.3, §3.6.2.4).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{is_unicast, remember, Agent, Binding, Client, ClientEvent, Pending, Purpose};
use super::{INFINITE_LIFETIME, MIN_RETRANSMIT_INTERVAL};
use crate::auth::{self, AuthKind};
use crate::replay::{self, ReplayMethod};
use ipnet::Ipv6Net;

use super::Ipv6Outcome;
use crate::dataplane::binding::{Ipv6Binding, Ipv6TunnelTo};
use crate::wire::extension::{Dsmipv4Ext, ExtensionIter, UdpTunnelReply};
use crate::wire::registration::REPLY_HEADER_LEN;
use crate::wire::{Extension, Flags, ReplyCode, ReplyRepr};

impl Client {
    /// Processes a UDP payload received on the registration socket.
    /// `from` is the sender, for logging only: the MN-HA authenticator,
    /// not the source address, decides what is believed.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddrV4, payload: &[u8]) {
        self.stats.replies_received += 1;
        let reply = match ReplyRepr::parse_bytes(payload) {
            Ok(r) => r,
            Err(e) => {
                // Unknown non-skippable extensions (§1.8-§1.9) and bad
                // messages are silently discarded (§3.6.2.1).
                debug!(%from, error = %e, "dropped malformed registration reply");
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        let mine = replay::mn_half(reply.identification);
        // A held corrected request is not on the wire: nothing answers it.
        let Some(p) = self.pending.as_ref().filter(|p| !p.held) else {
            self.drop_unmatched(mine, from);
            return;
        };
        // §3.6.2.1: the low-order 32 bits must match the most recent
        // request.
        if mine != replay::mn_half(p.request.identification) {
            self.drop_unmatched(mine, from);
            return;
        }
        if !p.request.home_address.is_unspecified() && reply.home_address != p.request.home_address
        {
            debug!(%from, "dropped reply for another home address");
            self.stats.dropped_wrong_home_address += 1;
            return;
        }

        // Authenticate before believing anything (§3.6.2.1).
        let code = reply.code;
        let authenticated_end = if code.is_fa_denial() {
            match (self.config.foreign_agent, &self.config.mn_fa_sa) {
                // Registered directly: no foreign agent can answer.
                (None, _) => {
                    debug!(%from, %code, "dropped foreign-agent code without a foreign agent");
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
                (Some(_), Some(fa_sa)) => {
                    match auth::find_auth(payload, AuthKind::MnFa).and_then(|a| {
                        a.verify(fa_sa)?;
                        Ok(a.end)
                    }) {
                        Ok(end) => Some(end),
                        Err(e) => {
                            debug!(%from, error = %e, "dropped unauthenticated FA reply");
                            self.stats.dropped_unauthenticated += 1;
                            return;
                        }
                    }
                }
                // §3.6.2.1: without an MN-FA association the MN cannot
                // check a foreign agent's denial; it is taken as a denial
                // only, never to change a binding.
                (Some(_), None) => None,
            }
        } else {
            match auth::verify_mn_ha(payload, &self.config.sa) {
                Ok(end) => Some(end),
                Err(e) => {
                    debug!(%from, error = %e, "dropped unauthenticated reply");
                    self.stats.dropped_unauthenticated += 1;
                    return;
                }
            }
        };

        // With an assigned home address (RFC 2794) the NAI identifies us:
        // it must be among the authenticated extensions of an HA reply.
        if p.request.home_address.is_unspecified() && !code.is_fa_denial() {
            let end = authenticated_end.unwrap_or(REPLY_HEADER_LEN);
            let nai_ok = self
                .config
                .nai
                .as_deref()
                .is_some_and(|nai| authenticated_nai(payload, end).as_deref() == Some(nai));
            if !nai_ok || reply.home_address.is_unspecified() && code.is_accepted() {
                debug!(%from, "dropped reply with a foreign NAI");
                self.stats.dropped_wrong_home_address += 1;
                return;
            }
        }

        self.stats.replies_processed += 1;
        let p = self.pending.take().expect("matched above");
        let ntp_now = self.clock.ntp(now);
        if authenticated_end.is_some() && !code.is_fa_denial() {
            // Nonces: every authenticated HA reply hands the next nonce
            // (§5.7.2). Timestamps: only 133 moves the clock offset.
            let mismatch = code == ReplyCode::HA_IDENTIFICATION_MISMATCH;
            if let Some(offset) =
                self.replay
                    .on_authenticated_reply(reply.identification, mismatch, ntp_now)
            {
                debug!(offset, "clock offset towards the home agent adjusted");
            }
        }
        remember(&mut self.answered_ids, mine);

        if code.is_accepted() {
            let tnc = authenticated_end.is_some_and(|end| carries_tnc(payload, end));
            let udp = authenticated_end.and_then(|end| udp_tunnel_granted(payload, end));
            let end = authenticated_end.unwrap_or(REPLY_HEADER_LEN);
            let ipv6 = ipv6_outcome(&p.request.extensions, payload, end);
            self.accepted(now, p, &reply, tnc, udp, ipv6);
        } else {
            self.denied(now, p, &reply, authenticated_end.is_some());
        }
    }

    pub(super) fn drop_unmatched(&mut self, mine: u32, from: SocketAddrV4) {
        if self.answered_ids.contains(&mine) {
            self.stats.dropped_duplicate += 1;
            debug!(%from, "dropped duplicate reply");
        } else if self.superseded_ids.contains(&mine) {
            self.stats.dropped_late += 1;
            debug!(%from, "dropped late reply to a superseded request");
        } else {
            self.stats.dropped_unmatched += 1;
            debug!(%from, "dropped reply matching no request");
        }
    }

    pub(super) fn accepted(
        &mut self,
        now: Instant,
        p: Pending,
        reply: &ReplyRepr,
        tnc: bool,
        udp_keepalive: Option<u16>,
        ipv6: Ipv6Outcome,
    ) {
        // §3.6.2.3: never assume more than was requested.
        let granted = reply.lifetime.min(p.request.lifetime);
        if p.purpose.is_deregistration() || granted == 0 {
            self.binding = None;
            self.renew_at = None;
            self.stats.deregistrations += 1;
            self.events.push_back(ClientEvent::Deregistered {
                care_of_address: p.request.care_of_address,
            });
            return;
        }
        // The lifetime runs from when the request was sent. With nonces
        // the request may have been retransmitted unchanged: count from
        // the first copy, the conservative choice.
        let sent = match self.replay.method() {
            ReplayMethod::Timestamp => p.last_sent,
            ReplayMethod::Nonce => p.first_sent,
        };
        let lifetime = Duration::from_secs(granted.into());
        let expires = (granted != INFINITE_LIFETIME).then(|| sent + lifetime);
        self.renew_at = expires.map(|_| {
            let at = sent + lifetime * u32::from(self.config.renew_percent) / 100;
            // §3.6.3's one-second floor between requests.
            at.max(now + MIN_RETRANSMIT_INTERVAL)
        });
        if p.request.home_address.is_unspecified() {
            self.assigned_home_address = Some(reply.home_address);
        }
        if is_unicast(reply.home_agent) {
            self.home_agent = reply.home_agent;
        }
        let binding = Binding {
            home_address: reply.home_address,
            home_agent: self.home_agent,
            care_of_address: p.request.care_of_address,
            lifetime,
            expires,
            udp_keepalive,
            ipv6,
        };
        self.binding = Some(binding.clone());
        self.stats.registrations += 1;
        self.events.push_back(ClientEvent::Registered {
            binding,
            code: reply.code,
            renewal: p.purpose == Purpose::Renew,
            tnc,
        });
    }

    pub(super) fn denied(
        &mut self,
        now: Instant,
        mut p: Pending,
        reply: &ReplyRepr,
        authenticated: bool,
    ) {
        let code = reply.code;
        match code {
            // §3.6.2.4, §5.7: resynchronise and try again.
            ReplyCode::HA_IDENTIFICATION_MISMATCH if p.resyncs < self.config.max_resyncs => {
                self.stats.resyncs += 1;
                self.events.push_back(ClientEvent::ReplayResync {
                    method: self.replay.method(),
                    clock_offset: self.replay.clock_offset(),
                });
                p.resyncs += 1;
                self.resend(now, p);
                return;
            }
            // §3.6.2.4: the denying home agent names its unicast address.
            ReplyCode::HA_UNKNOWN_HOME_AGENT
                if !p.ha_switched
                    && is_unicast(reply.home_agent)
                    && reply.home_agent != p.request.home_agent =>
            {
                let from = self.home_agent;
                self.home_agent = reply.home_agent;
                self.events.push_back(ClientEvent::HomeAgentChanged {
                    from,
                    to: reply.home_agent,
                });
                p.ha_switched = true;
                p.request.home_agent = reply.home_agent;
                let at_home = p.purpose == Purpose::DeregisterAtHome;
                (p.dst, p.src) = self.route(at_home, p.request.home_address);
                self.resend(now, p);
                return;
            }
            // The foreign agent's reply carries the longest lifetime it
            // accepts (RFC 5944 §3.4 code 69, §3.6.2.4). Only an
            // authenticated one (MN-FA, §3.6.2.1) is believed: anyone on
            // the link can send an unauthenticated denial, and its
            // contents never shape the next request.
            ReplyCode::FA_LIFETIME_TOO_LONG
                if authenticated
                    && !p.lifetime_adjusted
                    && reply.lifetime > 0
                    && reply.lifetime < p.request.lifetime =>
            {
                p.lifetime_adjusted = true;
                p.request.lifetime = reply.lifetime;
                self.resend(now, p);
                return;
            }
            // RFC 3024 §6: reverse tunnelling is mandatory; ask for it
            // (HA codes are always MN-HA authenticated here; an FA's only
            // with MN-FA, as above).
            ReplyCode::FA_REVERSE_TUNNEL_MANDATORY | ReplyCode::HA_REVERSE_TUNNEL_MANDATORY
                if authenticated && !p.t_bit_added && !p.request.flags.contains(Flags::T) =>
            {
                p.t_bit_added = true;
                p.request.flags.insert(Flags::T);
                self.resend(now, p);
                return;
            }
            _ => {}
        }
        self.stats.denials += 1;
        let by = if code.is_fa_denial() {
            Agent::ForeignAgent
        } else {
            Agent::HomeAgent
        };
        debug!(%code, ?by, purpose = ?p.purpose, "registration denied");
        self.events.push_back(ClientEvent::Denied {
            code,
            by,
            purpose: p.purpose,
            authenticated,
        });
    }
}

/// The extensions of a reply that precede `end` (the authenticated part
/// of the message).
fn authenticated_extensions(msg: &[u8], end: usize) -> impl Iterator<Item = Extension> + '_ {
    ExtensionIter::new(msg, REPLY_HEADER_LEN)
        .map_while(Result::ok)
        .take_while(move |(offset, _)| *offset < end)
        .map(|(_, e)| e)
}

/// Whether the Trusted Networks Configured extension is among the
/// authenticated extensions (RFC 5265 §4.1): one appended after the
/// authenticator could come from any on-path host.
fn carries_tnc(msg: &[u8], end: usize) -> bool {
    authenticated_extensions(msg, end).any(|e| e == Extension::TrustedNetworksConfigured)
}

/// RFC 3519 §3.2: the keepalive interval of an authenticated UDP Tunnel
/// Reply that says "will do tunnelling"; `None` without one, or declined.
fn udp_tunnel_granted(msg: &[u8], end: usize) -> Option<u16> {
    authenticated_extensions(msg, end).find_map(|e| match e {
        Extension::UdpTunnelReply(r) if r.reply_code == UdpTunnelReply::CODE_ACCEPTED => {
            Some(r.keepalive_interval)
        }
        _ => None,
    })
}

/// RFC 5454: the IPv6 Prefix Reply among the authenticated extensions,
/// read against what the request asked. A request with an IPv6 Prefix
/// Request answered without a reply met a home agent that skipped the
/// extension (§3.5): IPv4 only.
fn ipv6_outcome(asked: &[Extension], msg: &[u8], end: usize) -> Ipv6Outcome {
    let requested = asked
        .iter()
        .any(|e| matches!(e, Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest { .. })));
    if !requested {
        return Ipv6Outcome::NotRequested;
    }
    let reply = authenticated_extensions(msg, end).find_map(|e| match e {
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
            code,
            prefix_length,
            prefix,
        }) => Some((code, prefix_length, prefix)),
        _ => None,
    });
    let Some((code, len, prefix)) = reply else {
        return Ipv6Outcome::Ignored;
    };
    let tunnel_to = match code {
        Dsmipv4Ext::CODE_ACCEPTED_TO_HOME_ADDRESS => Ipv6TunnelTo::HomeAddress,
        Dsmipv4Ext::CODE_ACCEPTED_TO_CARE_OF => Ipv6TunnelTo::CareOf,
        code => return Ipv6Outcome::Refused { code },
    };
    match Ipv6Net::new(prefix, len) {
        Ok(prefix) if len > 0 => Ipv6Outcome::Granted(Ipv6Binding {
            prefix: prefix.trunc(),
            tunnel_to,
        }),
        // An accepting code with no usable prefix: nothing to configure.
        _ => Ipv6Outcome::Refused { code },
    }
}

/// The NAI among the authenticated extensions.
fn authenticated_nai(msg: &[u8], end: usize) -> Option<Vec<u8>> {
    authenticated_extensions(msg, end).find_map(|e| match e {
        Extension::Nai(n) => Some(n),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{sign_reply, SecurityAssociation};

    fn sa() -> SecurityAssociation {
        SecurityAssociation::hmac_md5(0x1000, b"0123456789abcdef").unwrap()
    }

    fn reply(exts: Vec<Extension>) -> ReplyRepr {
        ReplyRepr {
            code: ReplyCode::ACCEPTED,
            lifetime: 600,
            home_address: [10, 1, 0, 5].into(),
            home_agent: [10, 1, 0, 1].into(),
            identification: 7,
            extensions: exts,
        }
    }

    /// TNC as the client reports it in `Registered`: `Err` when the reply
    /// does not verify under `sa`.
    fn tnc(payload: &[u8], sa: &SecurityAssociation) -> Result<bool, auth::AuthError> {
        let end = auth::verify_mn_ha(payload, sa)?;
        Ok(carries_tnc(payload, end))
    }

    #[test]
    fn tnc_counts_only_inside_the_authenticated_part() {
        let with = sign_reply(&reply(vec![Extension::TrustedNetworksConfigured]), &sa());
        assert_eq!(tnc(&with, &sa()), Ok(true));
        let without = sign_reply(&reply(vec![]), &sa());
        assert_eq!(tnc(&without, &sa()), Ok(false));
        // Appended after the authenticator: not covered, not believed.
        let mut appended = without.clone();
        appended.extend_from_slice(&Extension::TrustedNetworksConfigured.to_bytes());
        assert_eq!(tnc(&appended, &sa()), Ok(false));
        // Signed with another key: an error, whatever it carries.
        let other = SecurityAssociation::hmac_md5(0x1000, b"not the right key").unwrap();
        let forged = sign_reply(&reply(vec![Extension::TrustedNetworksConfigured]), &other);
        assert!(tnc(&forged, &sa()).is_err());
    }
}
