//! The foreign agent (RFC 5944 §2 agent discovery, §3.7 registration
//! relay; RFC 3024 reverse tunnelling), sans-IO: link datagrams, home
//! agent datagrams, ICMP and `now` in; advertisements, relayed messages,
//! visitor changes (routes, neighbour entries, tunnels) and timers out.
//! The `mip4-fa` daemon is a thin loop around [`ForeignAgent`].
//!
//! Order of checks on a request (RFC 5944 §3.7.2.1), each denial with its
//! code: too short to answer (dropped); extensions that overrun or are
//! unknown and non-skippable (70); MN-FA authentication (67); lifetime
//! (69); care-of address (77); encapsulation (72); reverse tunnel and its
//! TTL rule (74, 75, 76, 79; RFC 3024 §3.3, §4.2); home agent and home
//! address present (98, 97; RFC 2794); policy (65); room in the visitor
//! list (66). Then the request is relayed (§3.7.2.2).

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant;

use rand::RngCore;
use tracing::{debug, info, warn};

use super::advert::{self, Schedule};
use super::config::{FaConfig, ReverseTunnelSupport};
use super::counters::Counters;
use super::reason::{Denial, Unmatched};
use super::visitor::{
    lifetime_duration, mac_string, remaining, Mac, Visitor, VisitorInfo, VisitorKey,
};
use crate::auth::{append_auth, AuthExtAt, AuthKind, SecurityAssociation};
use crate::ratelimit::{Limits, SourceLimiter, Verdict};
use crate::replay::ReplayMethod;
use crate::request::{walk, Header as Hdr};
use crate::wire::extension::{ext_type, is_skippable};
use crate::wire::icmp::AdvFlags;
use crate::wire::registration::{REPLY_HEADER_LEN, REQUEST_HEADER_LEN};
use crate::wire::{
    msg_type, Extension, Flags, ReplyCode, ReplyPacket, ReplyRepr, RequestPacket, MIP_PORT,
};

/// Encapsulating Delivery Style Extension, RFC 3024 §3.3 (skippable).
pub const EXT_ENCAPSULATING_DELIVERY: u8 = 130;
/// RFC 3024 §3.1 ... §4.2: a request with 'T' must arrive with TTL 255,
/// which proves the mobile node is on the link.
pub const ON_LINK_TTL: u8 = 255;

/// Something the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An ICMP Agent Advertisement on served interface `interface`, to
    /// `dst` (224.0.0.1 or 255.255.255.255), TTL 1 (RFC 5944 §2.3.1).
    Advertise {
        interface: usize,
        dst: Ipv4Addr,
        payload: Vec<u8>,
    },
    /// A Registration Request relayed to a home agent (UDP 434).
    ToHomeAgent { dst: SocketAddrV4, payload: Vec<u8> },
    /// A Registration Reply to a mobile node on its link, addressed by
    /// link-layer address (RFC 5944 §3.7.3.2: the FA must not ARP for a
    /// visitor's home address).
    ToMobileNode {
        interface: usize,
        mac: Mac,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        payload: Vec<u8>,
    },
    /// Install delivery to this visitor (host route and neighbour entry
    /// on its link, the tunnel from its HA, and with 'T' the reverse
    /// tunnel). Idempotent for the daemon.
    VisitorUp(Visitor),
    /// Remove what `VisitorUp` installed.
    VisitorDown {
        visitor: Visitor,
        reason: DownReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    Deregistered,
    Expired,
    /// Another node took over the home address, or it moved links.
    Replaced,
    Shutdown,
}

/// What became of one datagram (for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Relayed to the home agent.
    Relayed,
    /// Denied by the FA with this code (reply queued to the MN).
    Denied(ReplyCode),
    /// A home agent's reply, relayed to the MN with this code.
    ReplyRelayed(ReplyCode),
    /// An advertisement will answer this solicitation.
    Solicited,
    Dropped(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not even a header to answer to.
    Malformed,
    /// A reply no pending request matches (or from the wrong address).
    UnmatchedReply,
    /// Not a message the FA handles on this socket.
    NotForUs,
    /// An ICMP error about nothing we relayed.
    UnmatchedIcmp,
}

/// A Registration Request as the link delivered it.
#[derive(Debug, Clone, Copy)]
pub struct LinkRequest<'a> {
    /// Index of the served interface in the configuration.
    pub interface: usize,
    /// Link-layer source address of the frame.
    pub mac: Mac,
    /// IP source address and UDP source port.
    pub src: SocketAddrV4,
    /// IP destination address.
    pub dst: Ipv4Addr,
    /// IP TTL as received (RFC 3024 'T' rule).
    pub ttl: u8,
    /// The UDP payload.
    pub data: &'a [u8],
}

/// Where a reply to a mobile node goes.
#[derive(Debug, Clone, Copy)]
struct Return {
    interface: usize,
    mac: Mac,
    src: SocketAddrV4,
    local: Ipv4Addr,
}

/// The foreign agent.
pub struct ForeignAgent {
    cfg: FaConfig,
    schedules: Vec<Schedule>,
    pending: HashMap<VisitorKey, Visitor>,
    visitors: HashMap<VisitorKey, Visitor>,
    ha_sas: HashMap<Ipv4Addr, SecurityAssociation>,
    mn_sas: HashMap<Ipv4Addr, SecurityAssociation>,
    counters: Counters,
    out: VecDeque<Output>,
    rng: Box<dyn RngCore + Send>,
    /// Log lines that replies from anywhere on the network (spoofable,
    /// unauthenticated until matched) may cause.
    limiter: SourceLimiter,
}

fn sa(spi: u32, key: &[u8]) -> Result<SecurityAssociation, crate::auth::AuthError> {
    // The replay method belongs to MN-HA associations (§5.7); MN-FA and
    // FA-HA authenticators protect single exchanges.
    SecurityAssociation::new(
        spi,
        crate::auth::Algorithm::HmacMd5,
        key,
        ReplayMethod::Timestamp,
    )
}

impl ForeignAgent {
    /// The first advertisement on each interface is due at `now`; `rng`
    /// draws the advertisement jitter (tests pass a seeded one).
    pub fn new(
        cfg: FaConfig,
        now: Instant,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, crate::auth::AuthError> {
        let mut ha_sas = HashMap::new();
        for p in &cfg.home_agents {
            ha_sas.insert(p.address, sa(p.spi, p.key.expose())?);
        }
        let mut mn_sas = HashMap::new();
        for p in &cfg.mobile_nodes {
            mn_sas.insert(p.address, sa(p.spi, p.key.expose())?);
        }
        Ok(ForeignAgent {
            schedules: cfg.interfaces.iter().map(|_| Schedule::new(now)).collect(),
            cfg,
            pending: HashMap::new(),
            visitors: HashMap::new(),
            ha_sas,
            mn_sas,
            counters: Counters::default(),
            out: VecDeque::new(),
            rng,
            limiter: SourceLimiter::new(Limits::default(), now),
        })
    }

    pub fn config(&self) -> &FaConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The advertisement schedule of interface `i`.
    pub fn schedule_mut(&mut self, i: usize) -> &mut Schedule {
        &mut self.schedules[i]
    }

    /// Pending and accepted visitors, for `mip4ctl visitors`.
    pub fn visitors(&self, now: Instant) -> Vec<VisitorInfo> {
        let info = |v: &Visitor, state: &str| VisitorInfo {
            state: state.to_string(),
            interface: self.cfg.interfaces[v.interface].name.clone(),
            mac: mac_string(&v.mac),
            home_address: v.home_address,
            home_agent: v.home_agent,
            source: v.source.to_string(),
            lifetime: if state == "pending" {
                v.requested_lifetime
            } else {
                v.lifetime
            },
            remaining: remaining(now, v.deadline),
            reverse_tunnel: v.reverse_tunnel,
            nai: v
                .nai
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned()),
        };
        let mut v: Vec<VisitorInfo> = self
            .visitors
            .values()
            .map(|v| info(v, "accepted"))
            .chain(self.pending.values().map(|v| info(v, "pending")))
            .collect();
        v.sort_by(|a, b| (a.home_address, &a.state).cmp(&(b.home_address, &b.state)));
        v
    }

    /// The accepted visitor with home address `home`, if any.
    pub fn visitor(&self, home: Ipv4Addr) -> Option<&Visitor> {
        self.visitors.values().find(|v| v.home_address == home)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedules
            .iter()
            .map(Schedule::due)
            .chain(self.pending.values().map(|v| v.deadline))
            .chain(self.visitors.values().map(|v| v.deadline))
            .min()
    }

    fn busy(&self) -> bool {
        self.pending.len() + self.visitors.len() >= self.cfg.max_visitors
    }

    /// The Mobility Agent Advertisement flags (RFC 5944 §2.1.1): F always;
    /// R as configured; B while the visitor list is full; T when reverse
    /// tunnelling is offered (RFC 3024 §3.1). Never H, M or G.
    pub fn advertised_flags(&self) -> AdvFlags {
        let mut f = AdvFlags::F;
        if self.cfg.registration_required {
            f.insert(AdvFlags::R);
        }
        if self.busy() {
            f.insert(AdvFlags::B);
        }
        if self.cfg.reverse_tunnel != ReverseTunnelSupport::Unsupported {
            f.insert(AdvFlags::T);
        }
        f
    }

    /// Sends what is due: advertisements, 78 for timed-out requests,
    /// removal of expired visitors (RFC 5944 §3.7.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.schedules.len() {
            if self.schedules[i].due() <= now {
                self.advertise(now, i);
            }
        }
        let timed_out: Vec<VisitorKey> = self
            .pending
            .iter()
            .filter(|(_, v)| v.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in timed_out {
            let Some(p) = self.pending.remove(&k) else {
                continue;
            };
            self.counters.timeouts += 1;
            let (ret, hdr) = self.return_to(&p);
            let nai = p.nai.clone();
            self.deny(ret, hdr, nai, Denial::RegistrationTimeout);
        }
        let expired: Vec<VisitorKey> = self
            .visitors
            .iter()
            .filter(|(_, v)| v.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            if let Some(v) = self.visitors.remove(&k) {
                info!(home_address = %v.home_address, mac = %mac_string(&v.mac), "visitor expired: lifetime {} s ran out", v.lifetime);
                self.counters.expired += 1;
                self.out.push_back(Output::VisitorDown {
                    visitor: v,
                    reason: DownReason::Expired,
                });
            }
        }
    }

    fn advertise(&mut self, now: Instant, i: usize) {
        let flags = self.advertised_flags();
        let seq = self.schedules[i].sent(now, &self.cfg.advertisement, &mut *self.rng);
        let ifc = &self.cfg.interfaces[i];
        let payload = advert::build(
            &self.cfg.advertisement,
            ifc.address.addr(),
            ifc.address.prefix_len(),
            seq,
            self.cfg.max_lifetime,
            flags,
            self.cfg.care_of_address,
        );
        self.counters.advertisements += 1;
        debug!(interface = %ifc.name, sequence = seq, "agent advertisement");
        self.out.push_back(Output::Advertise {
            interface: i,
            dst: self.cfg.advertisement.destination.address(),
            payload,
        });
    }

    /// An ICMP message of type 10 (Agent Solicitation, RFC 5944 §2.2) on
    /// served interface `interface`.
    pub fn handle_solicitation(
        &mut self,
        now: Instant,
        interface: usize,
        data: &[u8],
    ) -> Disposition {
        if interface >= self.schedules.len()
            || crate::wire::icmp::AgentSolicitationRepr::parse_bytes(data).is_err()
        {
            self.counters.dropped_malformed += 1;
            return Disposition::Dropped(DropReason::Malformed);
        }
        self.counters.solicitations += 1;
        self.schedules[interface].solicited(now);
        debug!(interface = %self.cfg.interfaces[interface].name, "agent solicitation: advertisement brought forward");
        Disposition::Solicited
    }

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
            .filter(|(_, v)| v.home_agent == ha && id.map_or(true, |id| id == v.identification))
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

    /// Removes every visitor (clean shutdown).
    pub fn shutdown(&mut self) {
        for (_, v) in self.visitors.drain() {
            self.out.push_back(Output::VisitorDown {
                visitor: v,
                reason: DownReason::Shutdown,
            });
        }
        self.pending.clear();
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

    /// Where a denial about the pending request `p` goes, and the fields
    /// it echoes (RFC 5944 §3.7.2.3).
    fn return_to(&self, p: &Visitor) -> (Return, Hdr) {
        let ret = Return {
            interface: p.interface,
            mac: p.mac,
            src: p.source,
            local: p.local,
        };
        let hdr = Hdr {
            flags: Flags::empty(),
            lifetime: p.requested_lifetime,
            home_address: p.home_address,
            home_agent: p.home_agent,
            care_of_address: self.cfg.care_of_address,
            identification: p.identification,
        };
        (ret, hdr)
    }

    /// An FA denial (RFC 5944 §3.7.2.3): Home Address, Home Agent and
    /// Identification echoed from the request; for 69 the Lifetime holds
    /// the longest this agent accepts.
    fn deny(&mut self, ret: Return, hdr: Hdr, nai: Option<Vec<u8>>, why: Denial) -> Disposition {
        let code = why.code();
        self.counters.deny(code.0);
        warn!(
            src = %ret.src, home_address = %hdr.home_address, home_agent = %hdr.home_agent,
            mac = %mac_string(&ret.mac), "registration denied: {code}: {why}"
        );
        let lifetime = if code == ReplyCode::FA_LIFETIME_TOO_LONG {
            self.cfg.max_lifetime
        } else {
            0
        };
        let mut extensions = Vec::new();
        if let Some(n) = nai {
            // RFC 2794 §2: the reply carries the node's NAI.
            extensions.push(Extension::Nai(n));
        }
        let mut payload = ReplyRepr {
            code,
            lifetime,
            home_address: hdr.home_address,
            home_agent: hdr.home_agent,
            identification: hdr.identification,
            extensions,
        }
        .to_bytes();
        if code != ReplyCode::FA_MN_FAILED_AUTH {
            if let Some(sa) = self.mn_sas.get(&hdr.home_address) {
                append_auth(&mut payload, AuthKind::MnFa, sa);
            }
        }
        let _ = (hdr.flags, hdr.care_of_address);
        self.reply_to_mn(ret, payload);
        Disposition::Denied(code)
    }

    /// RFC 5944 §3.7.3.2: to the request's source address and port, from
    /// the address it was sent to, by link-layer address.
    fn reply_to_mn(&mut self, ret: Return, payload: Vec<u8>) {
        self.out.push_back(Output::ToMobileNode {
            interface: ret.interface,
            mac: ret.mac,
            src: SocketAddrV4::new(ret.local, MIP_PORT),
            dst: ret.src,
            payload,
        });
    }
}
