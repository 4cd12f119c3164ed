//! Registration Request processing (RFC 5944 §3.8), sans-IO.
//!
//! Order of checks, and why:
//! 0. At an i-HA (trusted networks configured), a request whose source is
//!    on no trusted network is dropped silently (RFC 5265 §4.3).
//! 1. Parse the fixed header and walk the extensions (type, length). A
//!    datagram that is not even that is dropped and counted: there is
//!    nobody to answer.
//! 2. Authenticate (RFC 5944 §3.8.2.1, §3.5.2): the MN-HA extension is
//!    mandatory and must verify under the SA its SPI names, and that SA
//!    must belong to the node the request is about (NAI or home address).
//!    Failure: 131. Nothing in the request is believed before this.
//! 3. Replay (§5.7): Identification checked per the SA's method; failure
//!    133 with the HA's Identification so the MN can resynchronise.
//! 4. The remaining validity checks, each with its code (134, 136, 137,
//!    138, 139, 129, 130, 142), then the binding update and the reply.
//!
//! Only extensions placed before the MN-HA authentication extension are
//! acted upon: those after it are not covered by the authenticator.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::RngCore;
use tracing::{debug, info, warn};

use super::binding::{Binding, BindingCache, BindingInfo, TunnelMode};
use super::config::{HaConfig, MobileNodeConfig, ReverseTunnelPolicy};
use super::counters::Counters;
use crate::auth::{append_auth, AuthExtAt, SecurityAssociation};
use crate::replay::{HaReplay, NtpTimestamp, ReplayVerdict};
use crate::wire::extension::{ext_type, is_skippable, UdpTunnelReply};
use crate::wire::registration::REQUEST_HEADER_LEN;
use crate::wire::{msg_type, Extension, Flags, ReplyCode, ReplyRepr, RequestPacket};

/// RFC 3519 §3.1: encapsulation value for IP in IP.
const ENCAP_IPIP: u8 = 4;
/// RFC 3519 §3.3: Tunnel Data message header (type, next header, reserved).
const TUNNEL_DATA_HEADER_LEN: usize = 4;

/// Something the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `payload` from the HA's UDP 434 socket to `dst`.
    Transmit { dst: SocketAddrV4, payload: Vec<u8> },
    /// Set up (or change) the tunnel to the MN and the route or proxy ARP
    /// entry for its home address. Idempotent for the daemon.
    BindingUp(Binding),
    /// Tear down the tunnel and route of a binding that ended.
    BindingDown {
        binding: Binding,
        reason: DownReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownReason {
    Deregistered,
    Expired,
    /// The mobile node's SA left the configuration (reload).
    Unconfigured,
    Shutdown,
}

/// What became of one datagram (for the daemon's log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A reply with this code was queued.
    Replied(ReplyCode),
    /// Dropped and counted, no reply.
    Dropped(DropReason),
    /// RFC 3519 tunnel data from a registered UDP binding: the IP packet
    /// starts at `offset`; the data plane forwards it after its ingress
    /// check.
    TunnelData {
        home_address: Ipv4Addr,
        offset: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    NotARequest,
    UnknownTunnelPeer,
    /// RFC 5265 §4.3: a request from outside every trusted network.
    UntrustedSource,
}

/// Per mobile node state: its SA, replay window and pool address.
struct Node {
    conf: MobileNodeConfig,
    sa: SecurityAssociation,
    replay: HaReplay,
    /// Home address handed out from the pool (RFC 2794), kept for the
    /// node's next registrations.
    assigned: Option<Ipv4Addr>,
}

/// The header fields a reply echoes.
#[derive(Debug, Clone, Copy)]
struct Hdr {
    flags: Flags,
    lifetime: u16,
    home_address: Ipv4Addr,
    home_agent: Ipv4Addr,
    care_of_address: Ipv4Addr,
    identification: u64,
}

/// One extension as found on the wire.
struct RawExt<'a> {
    offset: usize,
    type_: u8,
    data: &'a [u8],
}

/// Walks type-length-value extensions. Every MIPv4 extension format has
/// the 8-bit Length in its second octet (RFC 5944 §1.9, §1.10), so even an
/// unknown extension can be stepped over; the caller decides what an
/// unknown one means (134 once authenticated). The codec's iterator stops
/// at the first unknown non-skippable type, which would hide a
/// following MN-HA extension and make an authenticated 134 impossible.
fn walk(msg: &[u8], start: usize) -> Option<Vec<RawExt<'_>>> {
    let mut out = Vec::new();
    let mut at = start;
    while at < msg.len() {
        let type_ = msg[at];
        let len = usize::from(*msg.get(at + 1)?);
        let data = msg.get(at + 2..at + 2 + len)?;
        out.push(RawExt {
            offset: at,
            type_,
            data,
        });
        at += 2 + len;
    }
    Some(out)
}

/// The home agent.
pub struct HomeAgent {
    cfg: HaConfig,
    nodes: Vec<Node>,
    by_spi: HashMap<u32, usize>,
    bindings: BindingCache,
    counters: Counters,
    out: VecDeque<Output>,
    rng: Box<dyn RngCore + Send>,
}

impl HomeAgent {
    /// `rng` draws nonces (RFC 5944 §5.7.2); tests pass a seeded one.
    pub fn new(
        cfg: HaConfig,
        rng: Box<dyn RngCore + Send>,
    ) -> Result<Self, crate::auth::AuthError> {
        let mut ha = HomeAgent {
            nodes: Vec::new(),
            by_spi: HashMap::new(),
            bindings: BindingCache::default(),
            counters: Counters::default(),
            out: VecDeque::new(),
            rng,
            cfg,
        };
        ha.build_nodes(HashMap::new())?;
        Ok(ha)
    }

    fn build_nodes(
        &mut self,
        mut previous: HashMap<u32, (HaReplay, Option<Ipv4Addr>)>,
    ) -> Result<(), crate::auth::AuthError> {
        let mut nodes = Vec::with_capacity(self.cfg.mobile_nodes.len());
        for m in &self.cfg.mobile_nodes {
            let sa = SecurityAssociation::new(
                m.spi,
                crate::auth::Algorithm::HmacMd5,
                m.key.expose(),
                m.replay,
            )?;
            let (replay, assigned) = previous
                .remove(&m.spi)
                .unwrap_or_else(|| (HaReplay::new(m.replay, self.cfg.replay_tolerance), None));
            nodes.push(Node {
                conf: m.clone(),
                sa,
                replay,
                assigned,
            });
        }
        self.by_spi = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.conf.spi, i))
            .collect();
        self.nodes = nodes;
        Ok(())
    }

    /// Takes a new configuration (SIGHUP). Replay state and pool addresses
    /// of nodes whose SPI stays are kept; bindings of nodes that left, or
    /// whose key or home address changed, are torn down.
    pub fn reload(&mut self, cfg: HaConfig) -> Result<(), crate::auth::AuthError> {
        let mut previous = HashMap::new();
        let old_conf: HashMap<u32, MobileNodeConfig> = self
            .nodes
            .iter()
            .map(|n| (n.conf.spi, n.conf.clone()))
            .collect();
        for n in self.nodes.drain(..) {
            previous.insert(n.conf.spi, (n.replay, n.assigned));
        }
        let old_cfg = std::mem::replace(&mut self.cfg, cfg);
        if let Err(e) = self.build_nodes(previous) {
            self.cfg = old_cfg;
            return Err(e);
        }
        let still = |b: &Binding, nodes: &[Node]| {
            nodes.iter().any(|n| {
                n.conf.spi == b.spi
                    && old_conf.get(&b.spi).is_some_and(|o| {
                        o.key == n.conf.key && o.home_address == n.conf.home_address
                    })
            })
        };
        let nodes = &self.nodes;
        for b in self.bindings.retain(|b| still(b, nodes)) {
            info!(home_address = %b.home_address, "binding removed: mobile node no longer configured");
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::Unconfigured,
            });
        }
        Ok(())
    }

    pub fn config(&self) -> &HaConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn binding(&self, home: Ipv4Addr) -> Option<&Binding> {
        self.bindings.get(home)
    }

    pub fn bindings(&self, now: Instant) -> Vec<BindingInfo> {
        self.bindings.iter().map(|b| b.info(now)).collect()
    }

    /// The next thing the daemon must do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.bindings.next_expiry()
    }

    /// Expires bindings whose lifetime ran out (RFC 5944 §3.8.1).
    pub fn handle_timeout(&mut self, now: Instant) {
        for b in self.bindings.expire(now) {
            info!(home_address = %b.home_address, care_of = %b.care_of_address, "binding expired: lifetime {} s ran out", b.lifetime);
            self.counters.expired += 1;
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::Expired,
            });
        }
    }

    /// Removes every binding (clean shutdown): the daemon tears down what
    /// it installed.
    pub fn shutdown(&mut self) {
        for b in self.bindings.retain(|_| false) {
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::Shutdown,
            });
        }
    }

    /// Handles one UDP datagram received on port 434 from `src`. `now` is
    /// monotonic (lifetimes), `wall` the time of day (timestamps).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
    ) -> Disposition {
        match data.first() {
            Some(&msg_type::REGISTRATION_REQUEST) if !self.source_allowed(src) => {
                self.counters.dropped_untrusted_source += 1;
                warn!(%src, "dropped registration request: source is on no configured trusted network (RFC 5265 §4.3)");
                Disposition::Dropped(DropReason::UntrustedSource)
            }
            Some(&msg_type::REGISTRATION_REQUEST) => self.handle_request(now, wall, src, data),
            Some(&msg_type::TUNNEL_DATA) => self.handle_tunnel_data(src, data),
            _ => {
                self.counters.dropped_malformed += 1;
                debug!(%src, "dropped: not a registration request");
                Disposition::Dropped(DropReason::NotARequest)
            }
        }
    }

    /// RFC 3519 §3.3: tunnel data is accepted only from the address and
    /// port of a UDP-mode binding.
    fn handle_tunnel_data(&mut self, src: SocketAddrV4, data: &[u8]) -> Disposition {
        let home = self
            .bindings
            .iter()
            .find(|b| b.tunnel == TunnelMode::Udp && b.source == src)
            .map(|b| b.home_address);
        match home {
            Some(home_address) if data.len() > TUNNEL_DATA_HEADER_LEN => Disposition::TunnelData {
                home_address,
                offset: TUNNEL_DATA_HEADER_LEN,
            },
            _ => {
                self.counters.tunnel_data_dropped += 1;
                debug!(%src, "dropped tunnel data: no UDP binding for this source");
                Disposition::Dropped(DropReason::UnknownTunnelPeer)
            }
        }
    }

    fn malformed(&mut self, src: SocketAddrV4, why: &str) -> Disposition {
        self.counters.dropped_malformed += 1;
        warn!(%src, "dropped malformed request: {why}");
        Disposition::Dropped(DropReason::Malformed)
    }

    fn handle_request(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
    ) -> Disposition {
        let Ok(p) = RequestPacket::new_checked(data) else {
            return self.malformed(src, "shorter than the fixed header");
        };
        let hdr = Hdr {
            flags: p.flags(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            care_of_address: p.care_of_address(),
            identification: p.identification(),
        };
        let Some(exts) = walk(data, REQUEST_HEADER_LEN) else {
            return self.malformed(src, "extension length runs past the datagram");
        };
        self.counters.requests += 1;

        // RFC 5944 §3.8.2.1 / §3.5.2: the MN-HA authentication extension
        // is mandatory.
        let mut auths = exts.iter().filter(|e| e.type_ == ext_type::MN_HA_AUTH);
        let Some(auth_ext) = auths.next() else {
            return self.unauthenticated(src, hdr, None, "no MN-HA authentication extension");
        };
        let more_auths = auths.next().is_some();
        let Ok(at) = AuthExtAt::parse(data, auth_ext.offset) else {
            return self.malformed(src, "MN-HA authentication extension too short");
        };
        let Some(&idx) = self.by_spi.get(&at.spi) else {
            let why = format!("unknown SPI {}", at.spi);
            return self.unauthenticated(src, hdr, None, &why);
        };
        if at.verify(&self.nodes[idx].sa).is_err() {
            return self.unauthenticated(src, hdr, Some(idx), "authenticator does not verify");
        }
        // Authenticated: the header and every extension before the MN-HA
        // extension are the node's own words from here on.
        let protected: Vec<&RawExt<'_>> = exts
            .iter()
            .take_while(|e| e.offset < auth_ext.offset)
            .collect();
        let nai = protected
            .iter()
            .find(|e| e.type_ == ext_type::NAI)
            .map(|e| e.data.to_vec());

        // The SA must be the one of the node the request speaks for (a node
        // must not register another's home address with its own key).
        let node = &self.nodes[idx];
        let identity_ok = match (&nai, &node.conf.nai) {
            (Some(req), Some(conf)) => req == conf,
            (Some(_), None) => false,
            (None, _) => {
                hdr.home_address != Ipv4Addr::UNSPECIFIED
                    && (node.conf.home_address == Some(hdr.home_address)
                        || node.assigned == Some(hdr.home_address))
            }
        };
        if !identity_ok {
            return self.unauthenticated(
                src,
                hdr,
                Some(idx),
                "SPI belongs to another mobile node (NAI or home address differs)",
            );
        }

        // RFC 5944 §5.7: replay protection.
        let verdict = self.nodes[idx]
            .replay
            .check(hdr.identification, wall, &mut *self.rng);
        let reply_id = verdict.reply_identification();
        let trusted = self.tnc_for(src);
        let ctx = ReplyCtx {
            src,
            hdr,
            node: Some(idx),
            reply_id,
            nai: nai.clone(),
            tnc: trusted,
        };
        if let ReplayVerdict::Mismatch { .. } = verdict {
            self.counters.replayed += 1;
            return self.deny(
                ctx,
                ReplyCode::HA_IDENTIFICATION_MISMATCH,
                "identification outside the replay window or not newer than the last accepted",
            );
        }

        // RFC 5944 §3.8.2.1 and §1.9: poorly formed requests.
        if more_auths {
            return self.deny(
                ctx,
                ReplyCode::HA_POORLY_FORMED_REQUEST,
                "more than one MN-HA authentication extension",
            );
        }
        for e in &exts {
            if !is_skippable(e.type_) && !is_known_in_request(e.type_) {
                let why = format!("unknown non-skippable extension type {}", e.type_);
                return self.deny(ctx, ReplyCode::HA_POORLY_FORMED_REQUEST, &why);
            }
            if Extension::parse(e.type_, e.data).is_err() {
                let why = format!("extension type {} has a bad length or value", e.type_);
                return self.deny(ctx, ReplyCode::HA_POORLY_FORMED_REQUEST, &why);
            }
        }
        // RFC 5944 §3.8.2.2: a request to another address (e.g. dynamic
        // home agent discovery) gets 136 with our address in the reply.
        if hdr.home_agent != self.cfg.home_agent {
            return self.deny(
                ctx,
                ReplyCode::HA_UNKNOWN_HOME_AGENT,
                "home agent field is not this home agent's address",
            );
        }
        // RFC 3024 §4.2 / RFC 5944 §3.8.2.1: only IP in IP is offered.
        if hdr.flags.contains(Flags::M) || hdr.flags.contains(Flags::G) {
            return self.deny(
                ctx,
                ReplyCode::HA_ENCAPSULATION_UNAVAILABLE,
                "minimal or GRE encapsulation requested; only IP in IP is offered",
            );
        }
        // RFC 3024 §4.2: reverse tunnel policy.
        let t = hdr.flags.contains(Flags::T);
        match self.nodes[idx].conf.reverse_tunnel {
            ReverseTunnelPolicy::Denied if t => {
                return self.deny(
                    ctx,
                    ReplyCode::HA_REVERSE_TUNNEL_UNAVAILABLE,
                    "reverse tunnel requested but not allowed for this mobile node",
                )
            }
            ReverseTunnelPolicy::Required if !t => {
                return self.deny(
                    ctx,
                    ReplyCode::HA_REVERSE_TUNNEL_MANDATORY,
                    "reverse tunnel is mandatory for this mobile node and 'T' is not set",
                )
            }
            _ => {}
        }

        // Deregistration (RFC 5944 §3.8.2.3 ... §3.8.3): lifetime 0, or
        // care-of address equal to the home address (the MN is home).
        if hdr.lifetime == 0 || hdr.care_of_address == hdr.home_address {
            return self.deregister(ctx);
        }

        // The home address: given, or assigned (RFC 2794: 0.0.0.0 with NAI).
        // (The identity check above guarantees an NAI when it is 0.0.0.0.)
        let home = if hdr.home_address == Ipv4Addr::UNSPECIFIED {
            match self.assign_home_address(idx) {
                Some(h) => h,
                None => {
                    return self.deny(
                        ctx,
                        ReplyCode::HA_INSUFFICIENT_RESOURCES,
                        "address pool exhausted",
                    )
                }
            }
        } else {
            let n = &self.nodes[idx];
            if n.conf.home_address != Some(hdr.home_address) && n.assigned != Some(hdr.home_address)
            {
                return self.deny(
                    ctx,
                    ReplyCode::HA_ADMIN_PROHIBITED,
                    "home address is not the one configured or assigned for this NAI",
                );
            }
            hdr.home_address
        };
        let coa = hdr.care_of_address;
        if coa.is_unspecified() || coa.is_broadcast() || coa.is_multicast() || coa.is_loopback() {
            return self.deny(
                ctx,
                ReplyCode::HA_POORLY_FORMED_REQUEST,
                "care-of address is not a unicast address",
            );
        }

        // RFC 3519 §3.2: UDP tunnelling when asked and a NAT is detected
        // (source address differs from the care-of address) or forced.
        let mut reply_exts = Vec::new();
        let mut tunnel = TunnelMode::Ipip;
        let udp_req = protected.iter().find_map(|e| {
            (e.type_ == ext_type::UDP_TUNNEL_REQUEST)
                .then(|| match Extension::parse(e.type_, e.data) {
                    Ok(Extension::UdpTunnelRequest(r)) => Some(r),
                    _ => None,
                })
                .flatten()
        });
        if let Some(r) = udp_req {
            let nat = *src.ip() != coa && !r.registration_through_fa;
            if !self.cfg.udp_tunnelling {
                if r.force {
                    return self.deny(
                        ctx,
                        ReplyCode::HA_UDP_ENCAPSULATION_UNAVAILABLE,
                        "UDP tunnelling forced by the MN but disabled here",
                    );
                }
                reply_exts.push(udp_reply(UdpTunnelReply::CODE_DECLINED, 0));
            } else if nat || r.force {
                if r.encapsulation != ENCAP_IPIP {
                    return self.deny(
                        ctx,
                        ReplyCode::HA_ENCAPSULATION_UNAVAILABLE,
                        "UDP tunnel with an encapsulation other than IP in IP",
                    );
                }
                tunnel = TunnelMode::Udp;
                reply_exts.push(udp_reply(
                    UdpTunnelReply::CODE_ACCEPTED,
                    self.cfg.udp_keepalive,
                ));
                info!(%src, care_of = %coa, nat, forced = r.force, "UDP tunnelling (RFC 3519) for this binding");
            } else {
                reply_exts.push(udp_reply(UdpTunnelReply::CODE_DECLINED, 0));
            }
        }

        // RFC 5944 §3.8.3.1: the granted lifetime is at most the policy's.
        let lifetime = hdr.lifetime.min(self.cfg.max_lifetime);
        let code = if hdr.flags.contains(Flags::S) {
            // Simultaneous bindings are declined: the new binding replaces
            // the old (RFC 5944 §3.8.3.1, code 1).
            ReplyCode::ACCEPTED_NO_SIMULTANEOUS_BINDINGS
        } else {
            ReplyCode::ACCEPTED
        };
        let binding = Binding {
            home_address: home,
            care_of_address: coa,
            source: src,
            lifetime,
            expires: now + Duration::from_secs(u64::from(lifetime)),
            identification: hdr.identification,
            flags: hdr.flags,
            reverse_tunnel: t,
            tunnel,
            nai: nai.clone(),
            spi: self.nodes[idx].conf.spi,
        };
        let changed = match self.bindings.insert(binding.clone()) {
            Some(old) => old.dataplane_differs(&binding),
            None => true,
        };
        if changed {
            self.out.push_back(Output::BindingUp(binding));
        }
        self.counters.accepted += 1;
        info!(
            home_address = %home, care_of = %coa, %src, lifetime, requested = hdr.lifetime,
            reverse_tunnel = t, tunnel = ?tunnel, tnc = trusted,
            "registration accepted: {}", code
        );
        let ctx = ReplyCtx {
            hdr: Hdr {
                home_address: home,
                ..ctx.hdr
            },
            ..ctx
        };
        self.reply(&ctx, code, lifetime, reply_exts);
        Disposition::Replied(code)
    }

    fn deregister(&mut self, ctx: ReplyCtx) -> Disposition {
        let home = if ctx.hdr.home_address.is_unspecified() {
            ctx.node.and_then(|i| self.nodes[i].assigned)
        } else {
            Some(ctx.hdr.home_address)
        };
        let removed = home.and_then(|h| self.bindings.remove(h));
        let had = removed.is_some();
        if let Some(b) = removed {
            self.out.push_back(Output::BindingDown {
                binding: b,
                reason: DownReason::Deregistered,
            });
        }
        self.counters.accepted += 1;
        self.counters.deregistered += 1;
        info!(
            home_address = %ctx.hdr.home_address, src = %ctx.src, had_binding = had,
            "deregistration accepted ({})",
            if ctx.hdr.lifetime == 0 { "lifetime 0" } else { "care-of address is the home address" }
        );
        self.reply(&ctx, ReplyCode::ACCEPTED, 0, Vec::new());
        Disposition::Replied(ReplyCode::ACCEPTED)
    }

    /// RFC 2794: a node that asked with home address 0.0.0.0 gets its
    /// configured address, the one it had, or a free one from the pool.
    fn assign_home_address(&mut self, idx: usize) -> Option<Ipv4Addr> {
        if let Some(h) = self.nodes[idx]
            .conf
            .home_address
            .or(self.nodes[idx].assigned)
        {
            return Some(h);
        }
        let pool = self.cfg.address_pool?;
        let taken = |a: Ipv4Addr, nodes: &[Node]| nodes.iter().any(|n| n.assigned == Some(a));
        let free = pool.iter().find(|&a| !taken(a, &self.nodes))?;
        self.nodes[idx].assigned = Some(free);
        info!(home_address = %free, "home address assigned from the pool (RFC 2794)");
        Some(free)
    }

    /// RFC 5265 §4.3: an i-HA, i.e. an HA configured with trusted
    /// subnets, "MUST reject (drop silently) any registration request
    /// coming from a source address that is not inside any of the
    /// configured trusted subnets". Checked before any MAC is computed, so
    /// outsiders cannot make the HA spend work or learn anything. With no
    /// trusted network configured this is a plain RFC 5944 home agent:
    /// every source is served and no reply carries TNC.
    fn source_allowed(&self, src: SocketAddrV4) -> bool {
        self.cfg.trusted_networks.is_empty() || self.cfg.is_trusted(*src.ip())
    }

    /// RFC 5265 §4.3: the i-HA "MUST include a Trusted Networks Configured
    /// extension in a registration reply sent in response to a
    /// registration request coming from a trusted address". The rule is
    /// the request's source address only: the request need not carry TNC
    /// (RFC 5265 §3.4 defines it as the i-HA's reply extension), and the
    /// care-of address is not consulted (behind an internal NAT it is a
    /// private address while the source is trusted). Whether the MN may
    /// then stop using IPsec is the MN's rule (RFC 5265 §3.2.3, §4.1): a
    /// successful, authenticated reply carrying TNC to a request sent
    /// without VPN encapsulation (RFC 5266 §3.4).
    fn tnc_for(&self, src: SocketAddrV4) -> bool {
        self.cfg.is_trusted(*src.ip())
    }

    /// 131 (RFC 5944 §3.8.2.1). Signed when the SPI named a known SA, so
    /// the MN can believe it; unsigned otherwise (the MN will discard it,
    /// but an operator's capture shows the reason).
    fn unauthenticated(
        &mut self,
        src: SocketAddrV4,
        hdr: Hdr,
        node: Option<usize>,
        why: &str,
    ) -> Disposition {
        self.counters.unauthenticated += 1;
        let ctx = ReplyCtx {
            src,
            hdr,
            node,
            reply_id: hdr.identification,
            nai: None,
            // RFC 5265 §4.3 asks for TNC in *a* reply to a trusted source,
            // denials included; the MN acts on it only in an accepted,
            // authenticated reply (RFC 5265 §3.2.3, RFC 5266 §3.4).
            tnc: self.tnc_for(src),
        };
        self.deny(ctx, ReplyCode::HA_MN_FAILED_AUTH, why)
    }

    fn deny(&mut self, ctx: ReplyCtx, code: ReplyCode, why: &str) -> Disposition {
        self.counters.deny(code.0);
        warn!(
            src = %ctx.src, home_address = %ctx.hdr.home_address, care_of = %ctx.hdr.care_of_address,
            "registration denied: {code}: {why}"
        );
        self.reply(&ctx, code, 0, Vec::new());
        Disposition::Replied(code)
    }

    /// Builds, signs and queues a reply (RFC 5944 §3.8.3.1). Extensions
    /// that the MN must be able to trust (NAI echo, UDP Tunnel Reply, TNC)
    /// go before the MN-HA authentication extension, which covers them.
    fn reply(&mut self, ctx: &ReplyCtx, code: ReplyCode, lifetime: u16, mut exts: Vec<Extension>) {
        if let Some(nai) = &ctx.nai {
            // RFC 2794 §2: the reply carries the MN's NAI.
            exts.insert(0, Extension::Nai(nai.clone()));
        }
        if ctx.tnc {
            // Before the MN-HA extension, so the authenticator covers it.
            exts.push(Extension::TrustedNetworksConfigured);
            self.counters.tnc_replies += 1;
        }
        let repr = ReplyRepr {
            code,
            lifetime,
            home_address: ctx.hdr.home_address,
            home_agent: self.cfg.home_agent,
            identification: ctx.reply_id,
            extensions: exts,
        };
        let mut payload = repr.to_bytes();
        if let Some(i) = ctx.node {
            append_auth(&mut payload, crate::auth::AuthKind::MnHa, &self.nodes[i].sa);
        }
        self.out.push_back(Output::Transmit {
            dst: ctx.src,
            payload,
        });
    }
}

struct ReplyCtx {
    src: SocketAddrV4,
    hdr: Hdr,
    node: Option<usize>,
    reply_id: u64,
    nai: Option<Vec<u8>>,
    tnc: bool,
}

fn udp_reply(code: u8, keepalive: u16) -> Extension {
    Extension::UdpTunnelReply(UdpTunnelReply {
        sub_type: 0,
        reply_code: code,
        force: false,
        keepalive_interval: keepalive,
    })
}

/// Non-skippable extension types (< 128) a home agent understands in a
/// request: the three authentication extensions (RFC 5944 §3.5.2-4).
fn is_known_in_request(t: u8) -> bool {
    matches!(
        t,
        ext_type::MN_HA_AUTH | ext_type::MN_FA_AUTH | ext_type::FA_HA_AUTH
    )
}
