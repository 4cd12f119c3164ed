//! Registration Requests from mobile nodes on a served link: checked in
//! the order of RFC 5944 §3.7.2.1, each denial with its code: too short
//! to answer (dropped); extensions that overrun or are unknown and
//! non-skippable (70); MN-FA authentication (67); lifetime (69); care-of
//! address (77); encapsulation (72); reverse tunnel and its TTL rule (74,
//! 75, 76, 79; RFC 3024 §3.3, §4.2); home agent and home address present
//! (98, 97; RFC 2794); policy (65); room in the visitor list (66). Then
//! the request is relayed (§3.7.2.2).

use std::time::Instant;

use tracing::{debug, info};

use super::*;

impl ForeignAgent {
    /// A Registration Request from a mobile node on a served link
    /// (RFC 5944 §3.7.2).
    pub fn handle_request(&mut self, now: Instant, req: LinkRequest<'_>) -> Disposition {
        let data = req.data;
        let Ok(p) = RequestPacket::new_checked(data) else {
            self.counters.dropped_malformed += 1;
            debug!(src = %req.src, "dropped: not a registration request");
            return Disposition::Dropped(DropReason::Malformed);
        };
        let Some(ifc) = self.cfg.interfaces.get(req.interface) else {
            self.counters.dropped_malformed += 1;
            return Disposition::Dropped(DropReason::NotForUs);
        };
        // The link socket sees every request on the link, also one a
        // co-located node sends to its home agent through this host as a
        // router (RFC 5944 §3.6.1.1: "directly"; RFC 5266 §3.4's probe):
        // not ours to answer, the kernel forwards it.
        let ours = [ifc.address.addr(), self.cfg.care_of_address];
        if !(req.dst.is_multicast() || req.dst.is_broadcast() || ours.contains(&req.dst)) {
            debug!(src = %req.src, dst = %req.dst, "request to another host: forwarded, not relayed");
            return Disposition::Dropped(DropReason::NotForUs);
        }
        // RFC 5944 §3.7.3.2: the reply's source is the address the
        // request was sent to, or ours on the link if that was a
        // multicast or broadcast address.
        let local =
            if req.dst.is_multicast() || req.dst.is_broadcast() || req.dst != ifc.address.addr() {
                ifc.address.addr()
            } else {
                req.dst
            };
        self.counters.requests += 1;
        let hdr = Hdr::of(&p);
        let ret = Return {
            interface: req.interface,
            mac: req.mac,
            src: req.src,
            local,
        };
        let Some(exts) = walk(data, REQUEST_HEADER_LEN) else {
            return self.deny(ret, hdr, None, Denial::ExtensionOverrun);
        };
        let nai = exts
            .iter()
            .find(|e| e.type_ == ext_type::NAI)
            .map(|e| e.data.to_vec());
        // RFC 5944 §1.9, §3.7.2.1: unknown non-skippable, or malformed.
        for e in &exts {
            let known = matches!(
                e.type_,
                ext_type::MN_HA_AUTH | ext_type::MN_FA_AUTH | ext_type::FA_HA_AUTH
            );
            if !is_skippable(e.type_) && !known {
                return self.deny(ret, hdr, nai, Denial::UnknownExtension(e.type_));
            }
            if Extension::parse(e.type_, e.data).is_err() {
                return self.deny(ret, hdr, nai, Denial::BadExtension(e.type_));
            }
        }
        // RFC 5944 §3.7.2.1, §3.5.3: MN-FA authentication, when the FA
        // shares an SA with the node or policy demands one.
        let mnfa = exts.iter().find(|e| e.type_ == ext_type::MN_FA_AUTH);
        let node_sa = self.mn_sas.get(&hdr.home_address);
        let auth_failure = match (mnfa, node_sa) {
            (Some(e), Some(sa)) => match AuthExtAt::parse(data, e.offset) {
                Ok(at) if at.verify(sa).is_ok() => None,
                Ok(_) => Some(Denial::MnFaAuthDoesNotVerify),
                Err(_) => Some(Denial::MnFaAuthTooShort),
            },
            (Some(_), None) => Some(Denial::MnFaAuthWithoutSa),
            (None, Some(_)) => Some(Denial::MnFaAuthMissing),
            (None, None) if self.cfg.mn_fa_auth_required => Some(Denial::MnFaAuthRequired),
            (None, None) => None,
        };
        if let Some(why) = auth_failure {
            return self.deny(ret, hdr, nai, why);
        }
        if hdr.lifetime > self.cfg.max_lifetime {
            let why = Denial::LifetimeTooLong {
                requested: hdr.lifetime,
                max: self.cfg.max_lifetime,
            };
            return self.deny(ret, hdr, nai, why);
        }
        if hdr.care_of_address != self.cfg.care_of_address {
            return self.deny(ret, hdr, nai, Denial::CareOfNotOurs);
        }
        if hdr.flags.contains(Flags::M) || hdr.flags.contains(Flags::G) {
            return self.deny(ret, hdr, nai, Denial::EncapsulationUnavailable);
        }
        let t = hdr.flags.contains(Flags::T);
        match self.cfg.reverse_tunnel {
            ReverseTunnelSupport::Unsupported if t => {
                return self.deny(ret, hdr, nai, Denial::ReverseTunnelUnavailable)
            }
            ReverseTunnelSupport::Required if !t => {
                return self.deny(ret, hdr, nai, Denial::ReverseTunnelMandatory)
            }
            _ => {}
        }
        if t && req.ttl != ON_LINK_TTL {
            return self.deny(ret, hdr, nai, Denial::TooDistant { ttl: req.ttl });
        }
        if exts.iter().any(|e| e.type_ == EXT_ENCAPSULATING_DELIVERY) {
            // RFC 3024 §3.3: only meaningful with 'T'; this agent offers
            // the direct delivery style only.
            if !t {
                return self.deny(ret, hdr, nai, Denial::DeliveryStyleWithoutT);
            }
            return self.deny(ret, hdr, nai, Denial::DeliveryStyleUnsupported);
        }
        let ha = hdr.home_agent;
        if ha.is_unspecified() || ha.is_broadcast() || ha.is_multicast() || ha.is_loopback() {
            return self.deny(ret, hdr, nai, Denial::MissingHomeAgent);
        }
        if hdr.home_address.is_unspecified() && nai.is_none() {
            return self.deny(ret, hdr, nai, Denial::MissingNai);
        }
        if !self.cfg.allowed_home_agents.iter().any(|n| n.contains(&ha)) {
            return self.deny(ret, hdr, nai, Denial::HomeAgentNotAllowed);
        }
        let key = VisitorKey {
            home_address: hdr.home_address,
            mac: req.mac,
        };
        if self.busy() && !self.pending.contains_key(&key) && !self.visitors.contains_key(&key) {
            let why = Denial::VisitorListFull {
                max: self.cfg.max_visitors,
            };
            return self.deny(ret, hdr, nai, why);
        }
        // Pending entries are made before anyone authenticated the node:
        // one link-layer address gets a few, not the whole list.
        let pending_of_mac = self.pending.keys().filter(|k| k.mac == req.mac).count();
        if !self.pending.contains_key(&key) && pending_of_mac >= self.cfg.max_pending_per_mac {
            self.counters.pending_per_mac_refused += 1;
            let why = Denial::TooManyPending {
                pending: pending_of_mac,
            };
            return self.deny(ret, hdr, nai, why);
        }

        // RFC 5944 §3.7.2.2: relay unchanged up to the MN-HA extension;
        // what followed it was for us (MN-FA) and goes no further. The
        // FA-HA extension, when we share an SA with the HA, goes last.
        let cut = mnfa.map_or(data.len(), |e| e.offset);
        let mut payload = data[..cut].to_vec();
        if let Some(sa) = self.ha_sas.get(&ha) {
            append_auth(&mut payload, AuthKind::FaHa, sa);
        }
        let v = Visitor {
            interface: req.interface,
            mac: req.mac,
            source: req.src,
            local,
            home_address: hdr.home_address,
            home_agent: ha,
            identification: hdr.identification,
            requested_lifetime: hdr.lifetime,
            lifetime: 0,
            reverse_tunnel: t,
            nai,
            deadline: now + self.cfg.registration_timeout,
        };
        // A retransmission replaces the pending entry: the newest
        // Identification is the one whose reply counts.
        self.pending.insert(key, v);
        self.counters.relayed += 1;
        info!(
            home_address = %hdr.home_address, home_agent = %ha, mac = %mac_string(&req.mac),
            lifetime = hdr.lifetime, reverse_tunnel = t, fa_ha_auth = self.ha_sas.contains_key(&ha),
            "registration request relayed to the home agent"
        );
        self.out.push_back(Output::ToHomeAgent {
            dst: SocketAddrV4::new(ha, MIP_PORT),
            payload,
        });
        Disposition::Relayed
    }
}
