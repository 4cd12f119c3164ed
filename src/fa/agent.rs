//! The foreign agent (RFC 5944 §2 agent discovery, §3.7 registration
//! relay; RFC 3024 reverse tunnelling), sans-IO: link datagrams, home
//! agent datagrams, ICMP and `now` in; advertisements, relayed messages,
//! visitor changes (routes, neighbour entries, tunnels) and timers out.
//! The `mip4-fa` daemon is a thin loop around [`ForeignAgent`].
//!
//! Requests from the link are checked and relayed in `agent/relay.rs`;
//! replies and ICMP errors from the network side are handled in
//! `agent/reply.rs`. This
//! file holds the agent's state, its timers and advertisements, and the
//! one way an answer goes back to a mobile node (denials included).

mod relay;
mod reply;

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
