//! Registration Request processing (RFC 5944 §3.8), sans-IO.
//!
//! The stages, in order, one function each (a stage believes only what
//! the stages before it established):
//! 0. [`HomeAgent::handle_datagram`]: at an i-HA (trusted networks
//!    configured), a request whose source is on no trusted network is
//!    dropped silently (RFC 5265 §4.3).
//! 1. [`parse`]: the fixed header and the extensions (type, length). A
//!    datagram that is not even that is dropped and counted: there is
//!    nobody to answer.
//! 2. [`HomeAgent::authenticate`] (RFC 5944 §3.8.2.1, §3.5.2): the MN-HA
//!    extension is mandatory and must verify under the SA its SPI names,
//!    and that SA must belong to the node the request is about: its NAI,
//!    and a home address it owns (§3.5.1), for a registration and a
//!    deregistration alike. Failure: 131. An unknown SPI is dropped and
//!    counted: nothing could sign a reply, and the source may be spoofed.
//!    The MAC is computed once per message: here, or by the screen at the
//!    socket under the same configuration ([`super::screen::Verified`]).
//!    Nothing in the request is believed before this.
//! 3. [`HomeAgent::check_replay`] (§5.7): Identification checked per the
//!    SA's method; failure 133 with the HA's Identification so the MN can
//!    resynchronise.
//! 4. [`HomeAgent::validate`]: the remaining validity checks, each with
//!    its code (134, 136, 137, 138, 139).
//! 5. [`HomeAgent::deregister`] or [`HomeAgent::register`] (§3.8.2.2,
//!    RFC 2794, RFC 3519 §3.2; codes 130, 134, 139, 142): the binding
//!    update. An accepted registration's reply leaves only once the daemon
//!    reports its tunnel and route installed
//!    ([`HomeAgent::install_result`]); if that failed, 130. The IPv6 part
//!    (RFC 5454, `dsmip`): an IPv6 Prefix Request is answered by an IPv6
//!    Prefix Reply whose own code (§2.2) accepts the node's configured
//!    prefix, or refuses it while the IPv4 binding stands; a registration
//!    without one leaves the binding without IPv6 (§3.8).
//!
//! What unauthenticated input (stages 0 to 2) makes the HA do, a log line
//! or an unsigned reply, is rate-limited per source and in total
//! ([`crate::ratelimit`]); beyond the limit it is only counted.
//!
//! Only extensions placed before the MN-HA authentication extension are
//! acted upon: those after it are not covered by the authenticator.

mod dsmip;
mod restart;
mod update;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime};

use rand::RngCore;
use tracing::{debug, error, info, warn};

use super::accepted::ReplayBoard;
use super::binding::{Binding, BindingCache, BindingInfo, TunnelMode};
use super::config::{HaConfig, MobileNodeConfig, ReverseTunnelPolicy};
use super::counters::Counters;
use super::persist::{Restored, SavedBinding, SavedCache, SavedNode};
use super::reason::{Denial, Malformed};
use super::screen::Verified;
use crate::auth::{append_auth, AuthExtAt, SecurityAssociation};
use crate::ratelimit::{Limits, SourceLimiter, Verdict};
use crate::replay::{HaReplay, HaReplayState, NtpTimestamp, ReplayVerdict};
use crate::request::{walk, Header as Hdr, RawExt};
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
    /// Set up (or change, or restore) the tunnel to the MN and the route
    /// or proxy ARP entry for its home address, then report the outcome
    /// with [`HomeAgent::install_result`]: the registration's reply waits
    /// for it. Idempotent for the daemon; a renewal asks again, and the
    /// daemon compares it with what it installed (a renewal that changes
    /// nothing asks nothing of the kernel, RFC 5944 §3.8).
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
    /// The daemon could not install it (the node was denied with 130).
    InstallFailed,
}

/// What became of one datagram (for the daemon's log and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A reply with this code was queued.
    Replied(ReplyCode),
    /// A valid registration: a reply with this code leaves once the daemon
    /// reports the binding installed ([`HomeAgent::install_result`]).
    AwaitingInstall(ReplyCode),
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
    /// The MN-HA extension's SPI names no security association.
    UnknownSpi,
    /// Unauthenticated, and over the rate limit for replies.
    RateLimited,
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

impl Node {
    /// The home address is this node's: configured, or assigned to it.
    fn owns(&self, home: Ipv4Addr) -> bool {
        self.conf.home_address == Some(home) || self.assigned == Some(home)
    }
}

/// Stage 1's result: the header and the extensions as found.
pub(super) struct ParsedRequest<'a> {
    hdr: Hdr,
    exts: Vec<RawExt<'a>>,
}

impl<'a> ParsedRequest<'a> {
    /// The request's Identification (RFC 5944 §5.7).
    pub(super) fn identification(&self) -> u64 {
        self.hdr.identification
    }

    /// The first MN-HA authentication extension.
    pub(super) fn mn_ha_auth(&self) -> Option<&RawExt<'a>> {
        self.exts.iter().find(|e| e.type_ == ext_type::MN_HA_AUTH)
    }

    /// The extensions the MN-HA authenticator covers (those before it).
    fn protected(&self) -> impl Iterator<Item = &RawExt<'a>> {
        let end = self.mn_ha_auth().map_or(0, |a| a.offset);
        self.exts.iter().take_while(move |e| e.offset < end)
    }
}

/// The rate limiter's verdict for unauthenticated input from `src`:
/// `Some(refused since the last allowed)` or, counted, `None`.
pub(super) fn within_limit(
    limiter: &mut SourceLimiter,
    counters: &mut Counters,
    now: Instant,
    src: SocketAddrV4,
) -> Option<u64> {
    match limiter.allow(now, *src.ip()) {
        Verdict::Allowed { suppressed } => Some(suppressed),
        Verdict::Refused => {
            counters.rate_limited += 1;
            None
        }
    }
}

/// Stage 1 (RFC 5944 §3.3, §1.9): the fixed header, then the extensions'
/// types and lengths.
pub(super) fn parse(data: &[u8]) -> Result<ParsedRequest<'_>, Malformed> {
    let p = RequestPacket::new_checked(data).map_err(|_| Malformed::ShortHeader)?;
    let hdr = Hdr::of(&p);
    let exts = walk(data, REQUEST_HEADER_LEN).ok_or(Malformed::ExtensionOverrun)?;
    Ok(ParsedRequest { hdr, exts })
}

/// Stage 2's result: the node the request authenticated as.
struct Authenticated {
    node: usize,
    nai: Option<Vec<u8>>,
}

/// Why stage 2 did not authenticate a request.
enum Unauthenticated {
    Malformed(Malformed),
    UnknownSpi(u32),
    /// 131, signed under the node's SA when the SPI named one.
    Denied(Option<usize>, Denial),
}

/// An accepted registration's reply, held until the daemon reports the
/// binding installed.
struct PendingReply {
    ctx: ReplyCtx,
    code: ReplyCode,
    lifetime: u16,
    exts: Vec<Extension>,
    /// A new binding, or one whose tunnel moved (else a renewal: logged
    /// at debug, since a million bindings renew thousands a second).
    moved: bool,
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
    /// Replies to valid registrations, by home address, until the daemon
    /// reports the binding installed (at most one per home address).
    awaiting_install: HashMap<Ipv4Addr, PendingReply>,
    /// Log lines and replies that unauthenticated input may cause.
    limiter: SourceLimiter,
    /// What [`export`](Self::export) saves that changed since the last
    /// [`take_changes`](Self::take_changes).
    changes: Changes,
    /// The replay state's accepted Identifications, shared with the
    /// screen at the socket ([`super::accepted`]).
    board: ReplayBoard,
}

/// What changed of the saved state since the daemon last saved it
/// ([`HomeAgent::take_changes`]): the daemon appends just these to its
/// record, so that saving costs the same with a million bindings as with
/// one (issue 14 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Anything may have changed (a restore, the shutdown): save
    /// everything.
    pub all: bool,
    /// Nodes, by SPI, whose replay state or pool address moved.
    pub nodes: Vec<u32>,
    /// Home addresses whose binding was made, renewed or removed.
    pub bindings: Vec<Ipv4Addr>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        !self.all && self.nodes.is_empty() && self.bindings.is_empty()
    }
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
            awaiting_install: HashMap::new(),
            limiter: SourceLimiter::new(Limits::default(), Instant::now()),
            changes: Changes::default(),
            board: ReplayBoard::default(),
        };
        ha.build_nodes(HashMap::new())?;
        // One binding per node at most: room for all of them now.
        ha.bindings.reserve(ha.nodes.len());
        Ok(ha)
    }

    fn build_nodes(
        &mut self,
        mut previous: HashMap<u32, (HaReplay, Option<Ipv4Addr>)>,
    ) -> Result<(), crate::auth::AuthError> {
        let mut nodes = Vec::with_capacity(self.cfg.mobile_nodes.len());
        for m in &self.cfg.mobile_nodes {
            let sa = m.security_association()?;
            // The replay settings as configured now (a reload may change
            // the method or the tolerance), with the state kept when the
            // method stays (RFC 5944 §5.7).
            let mut replay = HaReplay::new(m.replay, self.cfg.replay_tolerance);
            let assigned = previous.remove(&m.spi).and_then(|(old, assigned)| {
                replay.restore(&old.state());
                assigned
            });
            nodes.push(Node {
                conf: m.clone(),
                sa,
                replay,
                assigned,
            });
        }
        self.board = ReplayBoard::new(nodes.iter().map(|n| n.conf.spi));
        self.by_spi = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.conf.spi, i))
            .collect();
        self.nodes = nodes;
        (0..self.nodes.len()).for_each(|i| self.publish_replay(i));
        Ok(())
    }

    /// What the replay checks accepted, per node, for the screen at the
    /// socket ([`super::Screen::reload`]); a new board after each reload.
    pub fn replay_board(&self) -> ReplayBoard {
        self.board.clone()
    }

    /// Tells the screen what node `i`'s replay state accepted last.
    pub(super) fn publish_replay(&self, i: usize) {
        if let Some(slot) = self.board.slot(i, self.nodes[i].conf.spi) {
            slot.publish(self.nodes[i].replay.state().last_accepted);
        }
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
        let old_saved: HashMap<u32, (HaReplayState, Option<Ipv4Addr>)> = self
            .nodes
            .iter()
            .map(|n| (n.conf.spi, (n.replay.state(), n.assigned)))
            .collect();
        // Copied, not drained: a configuration that fails to build leaves
        // the nodes (and the index into them) as they were.
        for n in &self.nodes {
            previous.insert(n.conf.spi, (n.replay.clone(), n.assigned));
        }
        let old_cfg = std::mem::replace(&mut self.cfg, cfg);
        if let Err(e) = self.build_nodes(previous) {
            self.cfg = old_cfg;
            return Err(e);
        }
        self.bindings.reserve(self.nodes.len());
        let still = |b: &Binding, nodes: &[Node]| {
            nodes.iter().any(|n| {
                n.conf.spi == b.spi
                    && old_conf.get(&b.spi).is_some_and(|o| {
                        o.key == n.conf.key
                            && o.home_address == n.conf.home_address
                            && o.ipv6_prefix == n.conf.ipv6_prefix
                    })
            })
        };
        // What the daemon's record must hear of, no more (a snapshot of
        // everything would stand its loop still, O(n) at a million
        // nodes): the nodes new or whose replay state or pool address
        // changed, and the bindings removed. (A node that left keeps its
        // line in the record: a restart takes up only configured nodes.)
        for n in &self.nodes {
            let now = (n.replay.state(), n.assigned);
            if old_saved.get(&n.conf.spi) != Some(&now) {
                self.changes.nodes.push(n.conf.spi);
            }
        }
        let nodes = &self.nodes;
        for b in self.bindings.retain(|b| still(b, nodes)) {
            self.changes.bindings.push(b.home_address);
            self.awaiting_install.remove(&b.home_address);
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

    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    /// Every binding, by home address.
    pub fn bindings(&self, now: Instant) -> Vec<BindingInfo> {
        self.bindings_page(now, None, usize::MAX)
    }

    /// The first `limit` bindings whose home address is above `after`, by
    /// home address ([`BindingCache::page`]).
    pub fn bindings_page(
        &self,
        now: Instant,
        after: Option<Ipv4Addr>,
        limit: usize,
    ) -> Vec<BindingInfo> {
        self.bindings
            .page(after, limit)
            .into_iter()
            .map(|b| b.info(now))
            .collect()
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
            self.changes.bindings.push(b.home_address);
            self.awaiting_install.remove(&b.home_address);
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
        self.changes.all = true;
        self.awaiting_install.clear();
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
        self.handle_screened(now, wall, src, data, None)
    }

    /// [`handle_datagram`](Self::handle_datagram) for a datagram the
    /// [`Screen`](super::Screen) passed, with its word that the request's
    /// authenticator verified ([`Screened::verified`]).
    ///
    /// [`Screened::verified`]: super::Screened::verified
    pub fn handle_screened(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
        verified: Option<Verified>,
    ) -> Disposition {
        match data.first() {
            Some(&msg_type::REGISTRATION_REQUEST) if !self.source_allowed(src) => {
                self.counters.dropped_untrusted_source += 1;
                if let Some(suppressed) = self.within_limit(now, src) {
                    warn!(%src, suppressed, "dropped registration request: source is on no configured trusted network (RFC 5265 §4.3)");
                }
                Disposition::Dropped(DropReason::UntrustedSource)
            }
            Some(&msg_type::REGISTRATION_REQUEST) => {
                self.handle_request(now, wall, src, data, verified)
            }
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

    /// Unauthenticated input costs a log line at most as often as the
    /// rate limiter allows; beyond that it is only counted.
    fn malformed(&mut self, now: Instant, src: SocketAddrV4, why: Malformed) -> Disposition {
        self.counters.dropped_malformed += 1;
        if let Some(suppressed) = self.within_limit(now, src) {
            warn!(%src, suppressed, "dropped malformed request: {why}");
        }
        Disposition::Dropped(DropReason::Malformed)
    }

    fn within_limit(&mut self, now: Instant, src: SocketAddrV4) -> Option<u64> {
        within_limit(&mut self.limiter, &mut self.counters, now, src)
    }

    /// Starts loading what handling `data` (a datagram the screen passed,
    /// with its word `verified`) reads at random among a million nodes:
    /// the node, its replay slot and the binding of the home address the
    /// request names. The daemon asks this for a whole batch before it
    /// handles any, so that their cache misses overlap instead of
    /// following one another (issue 14 §4). Believes nothing: it only
    /// loads. Returns that home address, for the data plane's own.
    pub fn prefetch(&self, data: &[u8], verified: Option<Verified>) -> Option<Ipv4Addr> {
        if data.first() != Some(&msg_type::REGISTRATION_REQUEST) {
            return None;
        }
        if let Some(v) = verified {
            if let Some(n) = self.nodes.get(v.node) {
                crate::sys::prefetch::lines(n);
                self.board.prefetch(v.node);
            }
            // The record's look-up of the node (`saved_node`): a hash
            // probe, so done here, where the batch's probes overlap.
            std::hint::black_box(self.by_spi.get(&v.spi));
        }
        let home = RequestPacket::new_checked(data).ok()?.home_address();
        self.bindings.prefetch(home);
        Some(home)
    }

    /// One request through the stages of the module doc, in order.
    fn handle_request(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
        verified: Option<Verified>,
    ) -> Disposition {
        let req = match parse(data) {
            Ok(r) => r,
            Err(why) => return self.malformed(now, src, why),
        };
        self.counters.requests += 1;
        let who = match self.authenticate(data, &req, verified) {
            Ok(who) => who,
            Err(Unauthenticated::Malformed(why)) => return self.malformed(now, src, why),
            Err(Unauthenticated::UnknownSpi(spi)) => return self.unknown_spi(now, src, spi),
            Err(Unauthenticated::Denied(node, why)) => {
                return self.unauthenticated(now, src, req.hdr, node, why)
            }
        };
        let ctx = match self.check_replay(wall, src, &req, who) {
            Ok(ctx) => ctx,
            Err(ctx) => {
                self.counters.replayed += 1;
                return self.deny(ctx, Denial::IdentificationMismatch);
            }
        };
        if let Err(why) = self.validate(&req, ctx.node) {
            return self.deny(ctx, why);
        }
        if req.hdr.is_deregistration() {
            return self.deregister(ctx);
        }
        self.register(now, ctx, &req)
    }

    /// Stage 2 (RFC 5944 §3.8.2.1, §3.5.2): the MN-HA extension must be
    /// there and verify under the SA its SPI names, and that SA must be the
    /// one of the node the request speaks for (§3.5.1: a mobile node's SA
    /// is indexed by SPI and its home address; RFC 2794 §2: or its NAI).
    /// A node must not register, nor deregister, another's home address
    /// with its own key. The MAC is computed here unless the screen
    /// verified it under this configuration's key (`verified`).
    fn authenticate<'a>(
        &self,
        data: &[u8],
        req: &ParsedRequest<'a>,
        verified: Option<Verified>,
    ) -> Result<Authenticated, Unauthenticated> {
        let Some(auth_ext) = req.mn_ha_auth() else {
            return Err(Unauthenticated::Denied(None, Denial::NoMnHaAuth));
        };
        let at = AuthExtAt::parse(data, auth_ext.offset)
            .map_err(|_| Unauthenticated::Malformed(Malformed::AuthExtensionShort))?;
        let idx = match self.screened(verified, at.spi) {
            Some(idx) => idx,
            None => {
                let &idx = self
                    .by_spi
                    .get(&at.spi)
                    .ok_or(Unauthenticated::UnknownSpi(at.spi))?;
                if at.verify(&self.nodes[idx].sa).is_err() {
                    return Err(Unauthenticated::Denied(Some(idx), Denial::BadAuthenticator));
                }
                idx
            }
        };
        let node = &self.nodes[idx];
        // Authenticated: the header and every extension before the MN-HA
        // extension are the node's own words from here on.
        let nai = req
            .protected()
            .find(|e| e.type_ == ext_type::NAI)
            .map(|e| e.data.to_vec());
        let home = req.hdr.home_address;
        let denied = |why| Err(Unauthenticated::Denied(Some(idx), why));
        match (&nai, &node.conf.nai) {
            (Some(req_nai), Some(conf)) if req_nai != conf => {
                return denied(Denial::NaiNotThisNodes)
            }
            (Some(_), None) => return denied(Denial::NaiNotThisNodes),
            // RFC 2794 §2: 0.0.0.0 asks for an address, only with an NAI.
            (None, _) if home.is_unspecified() => return denied(Denial::HomeAddressNotOwned),
            _ => {}
        }
        if !home.is_unspecified() && !node.owns(home) {
            return denied(Denial::HomeAddressNotOwned);
        }
        Ok(Authenticated { node: idx, nai })
    }

    /// The node whose key the screen verified a request under, when its
    /// word holds here: given under the configuration the agent has (the
    /// board it names is the agent's own), for the SPI the request names.
    fn screened(&self, verified: Option<Verified>, spi: u32) -> Option<usize> {
        let v = verified.filter(|v| v.board == self.board.id() && v.spi == spi)?;
        self.nodes
            .get(v.node)
            .is_some_and(|n| n.conf.spi == spi)
            .then_some(v.node)
    }

    /// Stage 3 (RFC 5944 §5.7): the Identification, per the SA's method.
    /// `Err` is the context of a 133, which carries the HA's own
    /// Identification so the node can resynchronise.
    fn check_replay(
        &mut self,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        req: &ParsedRequest<'_>,
        who: Authenticated,
    ) -> Result<ReplyCtx, ReplyCtx> {
        let verdict =
            self.nodes[who.node]
                .replay
                .check(req.hdr.identification, wall, &mut *self.rng);
        // Replay state moved on (and a binding may follow): saved before
        // any reply leaves, and told to the screen.
        self.changes.nodes.push(self.nodes[who.node].conf.spi);
        self.publish_replay(who.node);
        let ctx = ReplyCtx {
            src,
            hdr: req.hdr,
            node: Some(who.node),
            reply_id: verdict.reply_identification(),
            nai: who.nai,
            tnc: self.tnc_for(src),
        };
        match verdict {
            ReplayVerdict::Accept { .. } => Ok(ctx),
            ReplayVerdict::Mismatch { .. } => Err(ctx),
        }
    }

    /// Stage 4: the remaining validity checks of an authenticated, fresh
    /// request (RFC 5944 §3.8.2.1, §1.9, §3.8.2.2; RFC 3024 §4.2).
    fn validate(&self, req: &ParsedRequest<'_>, node: Option<usize>) -> Result<(), Denial> {
        // RFC 5944 §3.8.2.1 and §1.9: poorly formed requests.
        if req
            .exts
            .iter()
            .filter(|e| e.type_ == ext_type::MN_HA_AUTH)
            .count()
            > 1
        {
            return Err(Denial::TwoMnHaAuth);
        }
        for e in &req.exts {
            if !is_skippable(e.type_) && !is_known_in_request(e.type_) {
                return Err(Denial::UnknownExtension(e.type_));
            }
            if Extension::parse(e.type_, e.data).is_err() {
                return Err(Denial::BadExtension(e.type_));
            }
        }
        let hdr = &req.hdr;
        // RFC 5944 §3.8.2.2: a request to another address (e.g. dynamic
        // home agent discovery) gets 136 with our address in the reply.
        if hdr.home_agent != self.cfg.home_agent {
            return Err(Denial::NotThisHomeAgent);
        }
        // RFC 3024 §4.2 / RFC 5944 §3.8.2.1: only IP in IP is offered.
        if hdr.flags.contains(Flags::M) || hdr.flags.contains(Flags::G) {
            return Err(Denial::EncapsulationUnavailable);
        }
        // RFC 3024 §4.2: reverse tunnel policy.
        let t = hdr.flags.contains(Flags::T);
        let policy = node.map(|i| self.nodes[i].conf.reverse_tunnel);
        match policy {
            Some(ReverseTunnelPolicy::Denied) if t => Err(Denial::ReverseTunnelNotAllowed),
            Some(ReverseTunnelPolicy::Required) if !t => Err(Denial::ReverseTunnelRequired),
            _ => Ok(()),
        }
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

    /// An SPI that names no SA: no reply (nothing could sign it, and the
    /// source may be spoofed to make us a reflector), counted, and logged
    /// within the rate limit.
    fn unknown_spi(&mut self, now: Instant, src: SocketAddrV4, spi: u32) -> Disposition {
        self.counters.unknown_spi += 1;
        if let Some(suppressed) = self.within_limit(now, src) {
            warn!(%src, spi, suppressed, "dropped registration request: unknown SPI (RFC 5944 §3.5.1)");
        }
        Disposition::Dropped(DropReason::UnknownSpi)
    }

    /// 131 (RFC 5944 §3.8.2.1). Signed when the SPI named a known SA, so
    /// the MN can believe it; unsigned otherwise (the MN will discard it,
    /// but an operator's capture shows the reason). Denials that need no
    /// key to provoke are answered within the rate limit only.
    fn unauthenticated(
        &mut self,
        now: Instant,
        src: SocketAddrV4,
        hdr: Hdr,
        node: Option<usize>,
        why: Denial,
    ) -> Disposition {
        if why == Denial::HomeAddressNotOwned {
            // Authenticated, but for another node's home address: that
            // node's binding stays as it is.
            self.counters.home_address_not_owned += 1;
        } else {
            self.counters.unauthenticated += 1;
        }
        if why.unauthenticated() && self.within_limit(now, src).is_none() {
            return Disposition::Dropped(DropReason::RateLimited);
        }
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
        self.deny(ctx, why)
    }

    fn deny(&mut self, ctx: ReplyCtx, why: Denial) -> Disposition {
        let code = why.code();
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
