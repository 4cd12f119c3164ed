//! What comes back from the network side: Registration Replies from
//! home agents, relayed to the mobile node (RFC 5944 §3.7.3), and ICMP
//! errors about requests we relayed (§3.7.2.3).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use tracing::{debug, info, warn};

use super::*;

impl ForeignAgent {
    /// A datagram on the FA's UDP 434 socket from the network side:
    /// Registration Replies from home agents (RFC 5944 §3.7.3).
    pub fn handle_ha_datagram(
        &mut self,
        now: Instant,
        src: SocketAddrV4,
        data: &[u8],
    ) -> Disposition {
        let Ok(p) = ReplyPacket::new_checked(data) else {
            if data.first() == Some(&msg_type::REGISTRATION_REQUEST) {
                // Our own link's requests also reach this socket; the
                // link-layer path handles them.
                return Disposition::Dropped(DropReason::NotForUs);
            }
            self.counters.dropped_malformed += 1;
            debug!(%src, "dropped: not a registration reply");
            return Disposition::Dropped(DropReason::Malformed);
        };
        let (code, home, id) = (p.code(), p.home_address(), p.identification());
        // RFC 5944 §3.7.3.1: match a pending request by home address and
        // the low-order 32 bits of the Identification (the HA rewrites the
        // high-order ones under nonce replay protection). With NAI
        // registration the request's home address was 0.0.0.0.
        let key = self
            .pending
            .iter()
            .filter(|(_, v)| {
                (v.home_address == home || v.home_address.is_unspecified())
                    && v.identification as u32 == id as u32
            })
            .min_by_key(|(_, v)| v.home_address != home)
            .map(|(k, _)| *k);
        let Some(key) = key else {
            return self.unmatched_reply(now, src, home, Unmatched::NoPendingRequest);
        };
        if *src.ip() != self.pending[&key].home_agent {
            return self.unmatched_reply(now, src, home, Unmatched::NotFromItsHomeAgent);
        }
        let Some(pending) = self.pending.remove(&key) else {
            return Disposition::Dropped(DropReason::UnmatchedReply);
        };
        self.counters.replies += 1;
        let (ret, hdr) = self.return_to(&pending);
        let nai = pending.nai.clone();
        let Some(exts) = walk(data, REPLY_HEADER_LEN) else {
            return self.deny(ret, hdr, nai, Denial::ReplyExtensionOverrun);
        };
        for e in &exts {
            let known = matches!(
                e.type_,
                ext_type::MN_HA_AUTH
                    | ext_type::MN_FA_AUTH
                    | ext_type::FA_HA_AUTH
                    | ext_type::UDP_TUNNEL_REPLY
            );
            if (!is_skippable(e.type_) && !known) || Extension::parse(e.type_, e.data).is_err() {
                return self.deny(ret, hdr, nai, Denial::ReplyBadExtension(e.type_));
            }
        }
        // RFC 5944 §3.7.3.1: with an FA-HA SA, the reply must carry a
        // valid FA-HA authenticator, else 68 to the mobile node.
        let faha = exts.iter().find(|e| e.type_ == ext_type::FA_HA_AUTH);
        if let Some(sa) = self.ha_sas.get(&pending.home_agent) {
            let ok = faha
                .and_then(|e| AuthExtAt::parse(data, e.offset).ok())
                .is_some_and(|at| at.verify(sa).is_ok());
            if !ok {
                return self.deny(ret, hdr, nai, Denial::HaFailedAuth);
            }
        }
        // RFC 5944 §3.7.3.2: the FA-HA extension (and anything after it)
        // is for us; MN-FA authentication is added when we share an SA.
        let cut = faha.map_or(data.len(), |e| e.offset);
        let mut payload = data[..cut].to_vec();
        if let Some(sa) = self.mn_sas.get(&pending.home_address) {
            append_auth(&mut payload, AuthKind::MnFa, sa);
        }
        if code.is_accepted() {
            self.counters.accepted += 1;
            let lifetime = p.lifetime().min(pending.requested_lifetime);
            if lifetime == 0 {
                self.counters.deregistered += 1;
                let vkey = VisitorKey {
                    home_address: home,
                    mac: pending.mac,
                };
                if let Some(v) = self.visitors.remove(&vkey) {
                    self.out.push_back(Output::VisitorDown {
                        visitor: v,
                        reason: DownReason::Deregistered,
                    });
                }
                info!(home_address = %home, "deregistration accepted by the home agent: visitor removed");
            } else {
                let v = Visitor {
                    home_address: home,
                    lifetime,
                    deadline: now + lifetime_duration(lifetime),
                    ..pending
                };
                // Another entry for the same home address (another link
                // or link-layer address) is superseded.
                let stale: Vec<VisitorKey> = self
                    .visitors
                    .iter()
                    .filter(|(k, o)| {
                        k.home_address == home && (**k != v.key() || o.interface != v.interface)
                    })
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    if let Some(o) = self.visitors.remove(&k) {
                        self.out.push_back(Output::VisitorDown {
                            visitor: o,
                            reason: DownReason::Replaced,
                        });
                    }
                }
                info!(
                    home_address = %home, home_agent = %v.home_agent, mac = %mac_string(&v.mac),
                    lifetime, reverse_tunnel = v.reverse_tunnel, "registration accepted by the home agent: {code}"
                );
                self.visitors.insert(v.key(), v.clone());
                self.out.push_back(Output::VisitorUp(v));
            }
        } else {
            self.counters.denied_by_home_agent += 1;
            info!(home_address = %home, "registration denied by the home agent: {code}");
        }
        self.reply_to_mn(ret, payload);
        Disposition::ReplyRelayed(code)
    }

    /// An ICMP error received by the FA (the ICMP message, from its type
    /// octet). Destination Unreachable about a request we relayed denies
    /// it (RFC 5944 §3.7.2.3): net 80, host 81, port 82, other 88.
    pub fn handle_icmp_error(&mut self, _now: Instant, data: &[u8]) -> Disposition {
        const DEST_UNREACHABLE: u8 = 3;
        let quoted = || -> Option<(Ipv4Addr, Option<u64>)> {
            if data.len() < 8 + 20 || data[0] != DEST_UNREACHABLE {
                return None;
            }
            let ip = &data[8..];
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl + 8 || ip[9] != 17 {
                return None;
            }
            let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
            let udp = &ip[ihl..];
            if u16::from_be_bytes([udp[2], udp[3]]) != MIP_PORT {
                return None;
            }
            let msg = &udp[8..];
            let id = (msg.len() >= REQUEST_HEADER_LEN && msg[0] == msg_type::REGISTRATION_REQUEST)
                .then(|| u64::from_be_bytes(msg[16..24].try_into().unwrap_or_default()));
            Some((dst, id))
        };
        let Some((ha, id)) = quoted() else {
            return Disposition::Dropped(DropReason::UnmatchedIcmp);
        };
        let why = Denial::Unreachable { icmp_code: data[1] };
        let code = why.code();
        let keys: Vec<VisitorKey> = self
            .pending
            .iter()
            .filter(|(_, v)| v.home_agent == ha && id.is_none_or(|id| id == v.identification))
            .map(|(k, _)| *k)
            .collect();
        if keys.is_empty() {
            return Disposition::Dropped(DropReason::UnmatchedIcmp);
        }
        for k in keys {
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            self.counters.icmp_errors += 1;
            let (ret, hdr) = self.return_to(&p);
            self.deny(ret, hdr, p.nai, why);
        }
        Disposition::Denied(code)
    }

    /// A reply that answers nothing we relayed: anyone can send one, so it
    /// is counted, and logged only within the rate limit.
    fn unmatched_reply(
        &mut self,
        now: Instant,
        src: SocketAddrV4,
        home: Ipv4Addr,
        why: Unmatched,
    ) -> Disposition {
        self.counters.dropped_unmatched_reply += 1;
        match self.limiter.allow(now, *src.ip()) {
            Verdict::Allowed { suppressed } => {
                warn!(%src, home_address = %home, suppressed, "dropped reply: {why}");
            }
            Verdict::Refused => self.counters.rate_limited += 1,
        }
        Disposition::Dropped(DropReason::UnmatchedReply)
    }
}
