//! The first look at every datagram on UDP 434, taken where the socket is
//! read and before anything is queued for the [`HomeAgent`] (issue 13
//! item 9). Sans-IO: the caller passes `now`.
//!
//! Why here: the agent's loop serves one datagram at a time and a flood
//! of forged requests would queue in front of a legitimate one. What no
//! key signed is settled here, cheaply, and never queued:
//! - a request from outside every trusted network (RFC 5265 §4.3: drop
//!   silently, before any MAC is computed);
//! - anything that is neither a request nor tunnel data, or too broken to
//!   parse (RFC 5944 §3.8.2.1: nobody to answer);
//! - an SPI that names no security association (RFC 5944 §3.5.1:
//!   nothing could sign a reply);
//! - a missing or wrong MN-HA authenticator (RFC 5944 §3.8.2.1), beyond
//!   the rate of 131 replies and log lines the [`SourceLimiter`] allows;
//! - a correctly signed request the agent's replay check would certainly
//!   deny (RFC 5944 §5.7.1, timestamps only): an Identification not newer
//!   than the last accepted, beyond one a second per node (the rule, and
//!   why it never drops what the agent would take nor starves a node that
//!   needs the agent's 133: [`super::accepted`]). Counted `replayed`, like
//!   the agent's own.
//!
//! What passes: requests whose MN-HA authenticator verifies and that are
//! not certainly replayed (the agent checks the rest: NAI, home address,
//! replay, validity), the few
//! unauthenticated ones the limiter lets the agent answer with 131, and
//! RFC 3519 tunnel data (the agent knows the bindings). The agent
//! repeats stages 0 to 2 on what passes, except the authenticator of a
//! request that passes [`Screened::Verified`]: one verified check per
//! message, the screen's (constant-time, like the agent's), and the
//! agent believes it only under the configuration it was made with
//! ([`Verified`]). Each datagram is counted once, here when dropped
//! here, by the agent otherwise.
//!
//! One [`SourceLimiter`] bounds the log lines of everything dropped here
//! and of what is passed for a 131: the agent's own limiter sees no more
//! unauthenticated input than this one allowed.
//!
//! [`HomeAgent`]: super::HomeAgent

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::Instant;

use ipnet::Ipv4Net;
use tracing::{debug, warn};

use super::accepted::{Fresh, ReplayBoard};
use super::agent::{parse, within_limit};
use super::config::HaConfig;
use super::counters::Counters;
use super::reason::Malformed;
use crate::auth::{AuthExtAt, SecurityAssociation};
use crate::ratelimit::{Limits, SourceLimiter, Verdict};
use crate::replay::{NtpTimestamp, ReplayMethod};
use crate::wire::extension::ext_type;
use crate::wire::msg_type;
use crate::wire::registration::REQUEST_HEADER_LEN;

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screened {
    /// Queue it for the agent.
    Pass,
    /// Queue it for the agent, with the screen's word that its MN-HA
    /// authenticator verified.
    Verified(Verified),
    /// Dropped here, and counted.
    Dropped,
}

impl Screened {
    /// Whether the agent is to have it.
    pub fn passes(self) -> bool {
        self != Screened::Dropped
    }

    /// What to hand the agent with it ([`super::HomeAgent::handle_screened`]).
    pub fn verified(self) -> Option<Verified> {
        match self {
            Screened::Verified(v) => Some(v),
            _ => None,
        }
    }
}

/// A request's MN-HA authenticator verified here (RFC 5944 §3.8.2.1)
/// under the key of node `node` (its index in the configuration, SPI
/// `spi`) of the configuration whose replay board is `board`. The agent
/// then skips its own computation of the same MAC (issue 14 §4: at a
/// million nodes, the SPI lookup and the MAC are a fifth of a
/// registration), but only under that same board: a request screened
/// with another configuration's keys (queued across a reload) is checked
/// again. Made only here, never from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub(super) board: u64,
    pub(super) node: usize,
    pub(super) spi: u32,
}

/// The screen's state: what it needs of the configuration, its limiter
/// and the counters of what it dropped.
#[derive(Debug)]
pub struct Screen {
    trusted: Vec<Ipv4Net>,
    /// By SPI: the key, the node's index in the configuration, and
    /// whether it uses timestamps (else nonces, never screened for
    /// replay).
    sas: HashMap<u32, (SecurityAssociation, usize, bool)>,
    /// What the agent's replay check accepted, by that index
    /// ([`Self::replay_board`]; empty until the agent gives it, and
    /// again from a reload until it gives the new one).
    board: ReplayBoard,
    limiter: SourceLimiter,
    counters: Counters,
}

impl Screen {
    pub fn new(cfg: &HaConfig, now: Instant) -> Result<Self, crate::auth::AuthError> {
        let mut s = Screen {
            trusted: Vec::new(),
            sas: HashMap::new(),
            board: ReplayBoard::default(),
            limiter: SourceLimiter::new(Limits::default(), now),
            counters: Counters::default(),
        };
        s.reload(cfg)?;
        Ok(s)
    }

    /// Takes the trusted networks and security associations of `cfg`
    /// (SIGHUP); the counters and the limiter stay. The board goes (it
    /// was the old configuration's) until the agent gives the new one.
    pub fn reload(&mut self, cfg: &HaConfig) -> Result<(), crate::auth::AuthError> {
        let mut sas = HashMap::with_capacity(cfg.mobile_nodes.len());
        for (i, m) in cfg.mobile_nodes.iter().enumerate() {
            let timestamps = m.replay == ReplayMethod::Timestamp;
            sas.insert(m.spi, (m.security_association()?, i, timestamps));
        }
        self.sas = sas;
        self.board = ReplayBoard::default();
        self.trusted.clone_from(&cfg.trusted_networks);
        Ok(())
    }

    /// The agent's replay board ([`super::HomeAgent::replay_board`]),
    /// after it was made or reloaded with the configuration this screen
    /// has: the screen's word that a request verified names it, and the
    /// agent takes that word for its own configuration's keys.
    pub fn replay_board(&mut self, board: ReplayBoard) {
        self.board = board;
    }

    /// What was dropped here, under the agent's counter names.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Looks at one datagram from `src`; `wall` is the time of day (the
    /// agent's clock: one not newer request a second passes).
    pub fn screen(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
    ) -> Screened {
        match data.first() {
            Some(&msg_type::REGISTRATION_REQUEST) => self.request(now, wall, src, data),
            Some(&msg_type::TUNNEL_DATA) => Screened::Pass,
            _ => {
                self.counters.dropped_malformed += 1;
                debug!(%src, "dropped: not a registration request");
                Screened::Dropped
            }
        }
    }

    /// Starts loading what [`screen`](Self::screen) reads of `data`'s
    /// node, its key and its replay slot, without waiting for them: the
    /// reader asks this for every datagram of a receive batch first, so
    /// that at a million nodes their cache misses overlap (issue 14 §4).
    /// Believes nothing: a datagram that names no node costs a lookup.
    pub fn prefetch(&self, data: &[u8]) {
        let Some(spi) = mn_ha_spi(data) else {
            return;
        };
        if let Some(entry @ &(_, node, _)) = self.sas.get(&spi) {
            crate::sys::prefetch::lines(entry);
            self.board.prefetch(node);
        }
    }

    /// The agent's loop could not take a datagram that passed (its queue
    /// is full): counted, and said within the limit.
    pub fn queue_full(&mut self, now: Instant, src: SocketAddrV4) {
        self.counters.queue_full += 1;
        if let Some(suppressed) = self.within_limit(now, src) {
            warn!(%src, suppressed, "registration dropped: the home agent's queue is full");
        }
    }

    fn request(
        &mut self,
        now: Instant,
        wall: NtpTimestamp,
        src: SocketAddrV4,
        data: &[u8],
    ) -> Screened {
        if !self.trusted.is_empty() && !self.trusted.iter().any(|n| n.contains(src.ip())) {
            self.counters.dropped_untrusted_source += 1;
            if let Some(suppressed) = self.within_limit(now, src) {
                warn!(%src, suppressed, "dropped registration request: source is on no configured trusted network (RFC 5265 §4.3)");
            }
            return Screened::Dropped;
        }
        let req = match parse(data) {
            Ok(r) => r,
            Err(why) => return self.malformed(now, src, why),
        };
        let Some(ext) = req.mn_ha_auth() else {
            return self.unauthenticated(now, src);
        };
        let Ok(at) = AuthExtAt::parse(data, ext.offset) else {
            self.counters.requests += 1;
            return self.malformed(now, src, Malformed::AuthExtensionShort);
        };
        let Some(&(ref sa, node, timestamps)) = self.sas.get(&at.spi) else {
            self.counters.requests += 1;
            self.counters.unknown_spi += 1;
            if let Some(suppressed) = self.within_limit(now, src) {
                warn!(%src, spi = at.spi, suppressed, "dropped registration request: unknown SPI (RFC 5944 §3.5.1)");
            }
            return Screened::Dropped;
        };
        if at.verify(sa).is_err() {
            return self.unauthenticated(now, src);
        }
        let id = req.identification();
        let fresh = timestamps
            .then(|| self.board.slot(node, at.spi))
            .flatten()
            .map_or(Fresh::Pass, |s| s.check(id, wall));
        if fresh != Fresh::Replayed {
            return match self.board.id() {
                0 => Screened::Pass,
                board => Screened::Verified(Verified {
                    board,
                    node,
                    spi: at.spi,
                }),
            };
        }
        self.counters.requests += 1;
        self.counters.replayed += 1;
        if let Some(suppressed) = self.within_limit(now, src) {
            warn!(%src, spi = at.spi, identification = id, suppressed, "dropped replayed registration request: its identification is not newer than the last accepted, and one such a second already reached the agent (RFC 5944 §5.7.1)");
        }
        Screened::Dropped
    }

    /// No MN-HA authenticator, or a wrong one: the agent answers 131
    /// within the limit; beyond it the request ends here.
    fn unauthenticated(&mut self, now: Instant, src: SocketAddrV4) -> Screened {
        if let Verdict::Allowed { .. } = self.limiter.allow(now, *src.ip()) {
            return Screened::Pass;
        }
        self.counters.requests += 1;
        self.counters.unauthenticated += 1;
        self.counters.rate_limited += 1;
        Screened::Dropped
    }

    fn malformed(&mut self, now: Instant, src: SocketAddrV4, why: Malformed) -> Screened {
        self.counters.dropped_malformed += 1;
        if let Some(suppressed) = self.within_limit(now, src) {
            warn!(%src, suppressed, "dropped malformed request: {why}");
        }
        Screened::Dropped
    }

    fn within_limit(&mut self, now: Instant, src: SocketAddrV4) -> Option<u64> {
        within_limit(&mut self.limiter, &mut self.counters, now, src)
    }
}

/// The SPI of a request's first MN-HA authentication extension, found
/// without parsing the rest ([`Screen::prefetch`]).
fn mn_ha_spi(data: &[u8]) -> Option<u32> {
    if data.first() != Some(&msg_type::REGISTRATION_REQUEST) {
        return None;
    }
    let ext = crate::request::extensions(data, REQUEST_HEADER_LEN)
        .map_while(|e| e)
        .find(|e| e.type_ == ext_type::MN_HA_AUTH)?;
    AuthExtAt::parse(data, ext.offset).ok().map(|at| at.spi)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::auth::{append_auth, AuthKind};
    use crate::wire::{Flags, RequestRepr};

    const KEY: [u8; 16] = [7; 16];
    const OTHER: [u8; 16] = [9; 16];

    /// A node with SPI 257 (`KEY`) and `trusted` networks; or, `other`,
    /// SPI 258 (`OTHER`) and none.
    fn config(other: bool) -> HaConfig {
        config_with(other, "")
    }

    /// [`config`] with `extra` lines in the node's section.
    fn config_with(other: bool, extra: &str) -> HaConfig {
        let (spi, key, trusted) = if other {
            (258, "09090909090909090909090909090909", "")
        } else {
            (
                257,
                "07070707070707070707070707070707",
                r#"trusted_networks = ["10.10.0.0/16"]"#,
            )
        };
        let text = format!(
            r#"
home_agent = "10.1.0.1"
{trusted}
[[home_network]]
prefix = "10.1.0.0/24"

[[mobile_node]]
home_address = "10.1.0.11"
spi = {spi}
key = "{key}"
{extra}
"#
        );
        HaConfig::from_source(&crate::config::Source::from_str("mip4-ha.conf", &text)).unwrap()
    }

    fn cfg() -> HaConfig {
        config(false)
    }

    fn request(spi: u32, key: &[u8]) -> Vec<u8> {
        request_id(spi, key, 1)
    }

    /// A request with Identification `identification`.
    fn request_id(spi: u32, key: &[u8], identification: u64) -> Vec<u8> {
        let mut b = RequestRepr {
            flags: Flags::T,
            lifetime: 120,
            home_address: Ipv4Addr::new(10, 1, 0, 11),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            care_of_address: Ipv4Addr::new(10, 10, 1, 5),
            identification,
            extensions: vec![],
        }
        .to_bytes();
        let sa = SecurityAssociation::hmac_md5(spi, key).unwrap();
        append_auth(&mut b, AuthKind::MnHa, &sa);
        b
    }

    fn src(a: Ipv4Addr) -> SocketAddrV4 {
        SocketAddrV4::new(a, 434)
    }

    /// The agent's time of day in these tests.
    const WALL: NtpTimestamp = NtpTimestamp::new(3_900_000_000, 0);

    const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 5);
    /// On no trusted network.
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    #[test]
    fn a_signed_request_passes_however_loud_the_flood() {
        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        for _ in 0..1000 {
            s.screen(now, WALL, src(INSIDE), &request(257, b"wrong key"));
        }
        assert_eq!(
            s.screen(now, WALL, src(INSIDE), &request(257, &KEY)),
            Screened::Pass
        );
    }

    /// The first look at a batch finds the SPI of the MN-HA extension
    /// behind others, nothing in what is not a request or runs past its
    /// end, and counts nothing: the datagram is screened as without it.
    #[test]
    fn the_first_look_finds_the_spi_and_counts_nothing() {
        let signed = request(257, &KEY);
        assert_eq!(mn_ha_spi(&signed), Some(257));
        let mut with_nai = RequestRepr {
            flags: Flags::T,
            lifetime: 120,
            home_address: Ipv4Addr::new(10, 1, 0, 11),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            care_of_address: Ipv4Addr::new(10, 10, 1, 5),
            identification: 1,
            extensions: vec![crate::wire::Extension::Nai(b"mn@example.com".to_vec())],
        }
        .to_bytes();
        append_auth(
            &mut with_nai,
            AuthKind::MnHa,
            &SecurityAssociation::hmac_md5(258, &KEY).unwrap(),
        );
        assert_eq!(mn_ha_spi(&with_nai), Some(258));
        assert_eq!(mn_ha_spi(&signed[..signed.len() - 1]), None, "past the end");
        assert_eq!(mn_ha_spi(&signed[..REQUEST_HEADER_LEN]), None, "none");
        assert_eq!(mn_ha_spi(&[9; 40]), None, "not a request");

        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        for d in [&signed[..], &with_nai, &signed[..30], &[1; 10]] {
            s.prefetch(d);
        }
        assert_eq!(s.counters(), &Counters::default());
        assert_eq!(s.screen(now, WALL, src(INSIDE), &signed), Screened::Pass);
    }

    #[test]
    fn what_no_key_signed_is_dropped_and_counted_by_reason() {
        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        type Counter = fn(&Counters) -> u64;
        let cases: [(SocketAddrV4, Vec<u8>, Counter); 4] = [
            (src(OUTSIDE), request(257, &KEY), |c| {
                c.dropped_untrusted_source
            }),
            (src(INSIDE), request(4242, &KEY), |c| c.unknown_spi),
            (src(INSIDE), vec![1; 10], |c| c.dropped_malformed),
            (src(INSIDE), vec![9; 40], |c| c.dropped_malformed),
        ];
        for (from, data, counter) in cases {
            assert_eq!(s.screen(now, WALL, from, &data), Screened::Dropped);
            assert_eq!(counter(s.counters()), 1, "{:?}", s.counters());
            s.counters = Counters::default();
        }
    }

    #[test]
    fn a_wrong_authenticator_passes_for_its_131_within_the_limit_only() {
        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        let forged = request(257, b"wrong key");
        let passed = (0..100)
            .filter(|_| s.screen(now, WALL, src(INSIDE), &forged) == Screened::Pass)
            .count();
        // The per-source burst of the default limits.
        assert_eq!(passed, Limits::default().per_source_burst as usize);
        let c = s.counters();
        assert_eq!((c.unauthenticated, c.rate_limited), (95, 95));
    }

    #[test]
    fn a_reload_takes_the_new_keys() {
        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        s.reload(&config(true)).unwrap();
        assert_eq!(
            s.screen(now, WALL, src(OUTSIDE), &request(258, &OTHER)),
            Screened::Pass
        );
        assert_eq!(
            s.screen(now, WALL, src(INSIDE), &request(257, &KEY)),
            Screened::Dropped
        );
        assert_eq!(s.counters().unknown_spi, 1);
    }

    /// The agent and the screen as mip4-ha joins them: one board.
    fn joined(now: Instant) -> (crate::ha::HomeAgent, Screen) {
        use rand::SeedableRng;
        let mut s = Screen::new(&cfg(), now).unwrap();
        let ha = crate::ha::HomeAgent::new(cfg(), Box::new(rand::rngs::StdRng::seed_from_u64(1)))
            .unwrap();
        s.replay_board(ha.replay_board());
        (ha, s)
    }

    /// A timestamp Identification `secs` seconds from the agent's clock.
    fn stamp(secs: i64, frac: u32) -> u64 {
        NtpTimestamp::new(WALL.offset_by(secs).seconds(), frac).0
    }

    #[test]
    fn a_replayed_signed_request_is_dropped_here_and_counted() {
        let now = Instant::now();
        let (mut ha, mut s) = joined(now);
        let req = request_id(257, &KEY, stamp(0, 1 << 20));
        assert!(s.screen(now, WALL, src(INSIDE), &req).verified().is_some());
        ha.handle_datagram(now, WALL, src(INSIDE), &req);
        let c = ha.counters();
        assert_eq!((c.requests, c.replayed), (1, 0), "the first one is fresh");
        // The same bytes again: the first copy gets the agent's 133 (RFC
        // 5944 §5.7.1), every other copy that second ends here, and so in
        // each later second.
        for later in [1, 3600] {
            let wall = WALL.offset_by(later);
            assert!(s.screen(now, wall, src(INSIDE), &req).verified().is_some());
            for _ in 0..100 {
                assert_eq!(s.screen(now, wall, src(INSIDE), &req), Screened::Dropped);
            }
        }
        let c = s.counters();
        assert_eq!((c.requests, c.replayed), (200, 200), "{c:?}");
        assert_eq!(c.unauthenticated, 0);
    }

    #[test]
    fn a_fresh_request_and_a_retransmission_pass() {
        let now = Instant::now();
        let (mut ha, mut s) = joined(now);
        let first = request_id(257, &KEY, stamp(0, 1 << 20));
        ha.handle_datagram(now, WALL, src(INSIDE), &first);
        // RFC 5944 §3.6.3: a node retransmits a timestamp request (its
        // reply lost) with a new Identification, a moment later.
        let again = request_id(257, &KEY, stamp(1, 1 << 20));
        let wall = WALL.offset_by(1);
        assert!(s
            .screen(now, wall, src(INSIDE), &again)
            .verified()
            .is_some());
        ha.handle_datagram(now, wall, src(INSIDE), &again);
        assert_eq!(ha.counters().replayed, 0, "{:?}", ha.counters());
        // Within the same second: newer by its fraction, passes too.
        let quick = request_id(257, &KEY, stamp(1, 1 << 21));
        assert!(s
            .screen(now, wall, src(INSIDE), &quick)
            .verified()
            .is_some());
        assert_eq!(s.counters().replayed, 0);
    }

    #[test]
    fn an_older_identification_passes_when_only_the_agents_133_can_help() {
        let now = Instant::now();
        let (mut ha, mut s) = joined(now);
        let first = request_id(257, &KEY, stamp(0, 1 << 20));
        ha.handle_datagram(now, WALL, src(INSIDE), &first);
        // An older Identification: certainly denied with 133, but that
        // 133 is what a node whose clock went back (or that restarted
        // without the offset it had learned) needs to resynchronise
        // (RFC 5944 §5.7.1): one a second reaches the agent.
        let off = request_id(257, &KEY, stamp(-3600, 0));
        assert!(s.screen(now, WALL, src(INSIDE), &off).verified().is_some());
        ha.handle_datagram(now, WALL, src(INSIDE), &off);
        assert_eq!(ha.counters().replayed, 1, "the agent's 133");
        // The rest of that second's older ones (a replay flood) end here.
        let older = request_id(257, &KEY, stamp(-2, 0));
        assert_eq!(s.screen(now, WALL, src(INSIDE), &older), Screened::Dropped);
        assert_eq!(s.screen(now, WALL, src(INSIDE), &off), Screened::Dropped);
        let next_second = WALL.offset_by(1);
        assert!(s
            .screen(now, next_second, src(INSIDE), &off)
            .verified()
            .is_some());
        // A wrong key is the limiter's business, not a replay.
        let forged = request_id(257, b"wrong key", stamp(0, 1 << 20));
        assert_eq!(s.screen(now, WALL, src(INSIDE), &forged), Screened::Pass);
        assert_eq!(s.counters().replayed, 2);
    }

    /// The agent takes the screen's word for a MAC only under the
    /// configuration it has: a word from another (a request queued across
    /// a reload, screened with the old keys) buys a wrong key nothing.
    #[test]
    fn the_agent_believes_the_screens_check_only_under_its_own_configuration() {
        use crate::ha::Disposition;
        use crate::wire::ReplyCode;
        let now = Instant::now();
        let (mut ha, mut s) = joined(now);
        let signed = request_id(257, &KEY, stamp(0, 1 << 20));
        let word = s.screen(now, WALL, src(INSIDE), &signed).verified();
        assert!(word.is_some());
        let got = ha.handle_screened(now, WALL, src(INSIDE), &signed, word);
        assert_eq!(got, Disposition::AwaitingInstall(ReplyCode::ACCEPTED));
        // After a reload the old word is not the agent's: a forged request
        // carrying it is checked, and denied 131.
        ha.reload(cfg()).unwrap();
        let forged = request_id(257, b"wrong key", stamp(1, 0));
        let got = ha.handle_screened(now, WALL, src(INSIDE), &forged, word);
        assert_eq!(got, Disposition::Replied(ReplyCode::HA_MN_FAILED_AUTH));
        // The screen reloaded gives no word until it has the new board.
        s.reload(&cfg()).unwrap();
        assert_eq!(s.screen(now, WALL, src(INSIDE), &signed), Screened::Pass);
        s.replay_board(ha.replay_board());
        let fresh = request_id(257, &KEY, stamp(2, 0));
        let word = s.screen(now, WALL, src(INSIDE), &fresh).verified();
        assert!(word.is_some_and(|w| w.board == ha.replay_board().id()));
    }

    #[test]
    fn nonce_requests_are_never_screened_for_replay() {
        // RFC 5944 §3.6.3: a nonce request is retransmitted unchanged, and
        // only the agent's 133 hands the node the next nonce.
        let cfg = config_with(false, r#"replay = "nonce""#);
        let now = Instant::now();
        let mut s = Screen::new(&cfg, now).unwrap();
        // Even with something published under the SPI.
        let board = ReplayBoard::new([257]);
        board.slot(0, 257).unwrap().publish(Some(7));
        s.replay_board(board);
        let req = request_id(257, &KEY, 7);
        for _ in 0..3 {
            assert!(s.screen(now, WALL, src(INSIDE), &req).verified().is_some());
        }
        assert_eq!(s.counters().replayed, 0);
    }
}
