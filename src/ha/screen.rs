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
//!   the rate of 131 replies and log lines the [`SourceLimiter`] allows.
//!
//! What passes: requests whose MN-HA authenticator verifies (the agent
//! checks the rest: NAI, home address, replay, validity), the few
//! unauthenticated ones the limiter lets the agent answer with 131, and
//! RFC 3519 tunnel data (the agent knows the bindings). The agent
//! repeats stages 0 to 2 on what passes; each datagram is counted once,
//! here when dropped here, by the agent otherwise.
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

use super::agent::{parse, within_limit};
use super::config::HaConfig;
use super::counters::Counters;
use super::reason::Malformed;
use crate::auth::{AuthExtAt, SecurityAssociation};
use crate::ratelimit::{Limits, SourceLimiter, Verdict};
use crate::wire::msg_type;

/// What to do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screened {
    /// Queue it for the agent.
    Pass,
    /// Dropped here, and counted.
    Dropped,
}

/// The screen's state: what it needs of the configuration, its limiter
/// and the counters of what it dropped.
#[derive(Debug)]
pub struct Screen {
    trusted: Vec<Ipv4Net>,
    sas: HashMap<u32, SecurityAssociation>,
    limiter: SourceLimiter,
    counters: Counters,
}

impl Screen {
    pub fn new(cfg: &HaConfig, now: Instant) -> Result<Self, crate::auth::AuthError> {
        let mut s = Screen {
            trusted: Vec::new(),
            sas: HashMap::new(),
            limiter: SourceLimiter::new(Limits::default(), now),
            counters: Counters::default(),
        };
        s.reload(cfg)?;
        Ok(s)
    }

    /// Takes the trusted networks and security associations of `cfg`
    /// (SIGHUP); the counters and the limiter stay.
    pub fn reload(&mut self, cfg: &HaConfig) -> Result<(), crate::auth::AuthError> {
        let mut sas = HashMap::with_capacity(cfg.mobile_nodes.len());
        for m in &cfg.mobile_nodes {
            sas.insert(m.spi, m.security_association()?);
        }
        self.sas = sas;
        self.trusted.clone_from(&cfg.trusted_networks);
        Ok(())
    }

    /// What was dropped here, under the agent's counter names.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Looks at one datagram from `src`.
    pub fn screen(&mut self, now: Instant, src: SocketAddrV4, data: &[u8]) -> Screened {
        match data.first() {
            Some(&msg_type::REGISTRATION_REQUEST) => self.request(now, src, data),
            Some(&msg_type::TUNNEL_DATA) => Screened::Pass,
            _ => {
                self.counters.dropped_malformed += 1;
                debug!(%src, "dropped: not a registration request");
                Screened::Dropped
            }
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

    fn request(&mut self, now: Instant, src: SocketAddrV4, data: &[u8]) -> Screened {
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
        let Some(sa) = self.sas.get(&at.spi) else {
            self.counters.requests += 1;
            self.counters.unknown_spi += 1;
            if let Some(suppressed) = self.within_limit(now, src) {
                warn!(%src, spi = at.spi, suppressed, "dropped registration request: unknown SPI (RFC 5944 §3.5.1)");
            }
            return Screened::Dropped;
        };
        if at.verify(sa).is_ok() {
            return Screened::Pass;
        }
        self.unauthenticated(now, src)
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
"#
        );
        HaConfig::from_source(&crate::config::Source::from_str("mip4-ha.conf", &text)).unwrap()
    }

    fn cfg() -> HaConfig {
        config(false)
    }

    fn request(spi: u32, key: &[u8]) -> Vec<u8> {
        let mut b = RequestRepr {
            flags: Flags::T,
            lifetime: 120,
            home_address: Ipv4Addr::new(10, 1, 0, 11),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            care_of_address: Ipv4Addr::new(10, 10, 1, 5),
            identification: 1,
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

    const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 5);
    /// On no trusted network.
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    #[test]
    fn a_signed_request_passes_however_loud_the_flood() {
        let now = Instant::now();
        let mut s = Screen::new(&cfg(), now).unwrap();
        for _ in 0..1000 {
            s.screen(now, src(INSIDE), &request(257, b"wrong key"));
        }
        assert_eq!(
            s.screen(now, src(INSIDE), &request(257, &KEY)),
            Screened::Pass
        );
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
            assert_eq!(s.screen(now, from, &data), Screened::Dropped);
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
            .filter(|_| s.screen(now, src(INSIDE), &forged) == Screened::Pass)
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
            s.screen(now, src(OUTSIDE), &request(258, &OTHER)),
            Screened::Pass
        );
        assert_eq!(
            s.screen(now, src(INSIDE), &request(257, &KEY)),
            Screened::Dropped
        );
        assert_eq!(s.counters().unknown_spi, 1);
    }
}
