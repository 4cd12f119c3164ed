//! Shared fixtures for the registration client tests: a scripted home
//! agent built from the crate's own auth and replay modules, and helpers
//! that drive the sans-IO client with a hand-held clock.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mip4::auth::{self, SecurityAssociation};
use mip4::mn::{Client, ClientEvent, Config, Transmit};
use mip4::replay::{HaReplay, NtpTimestamp, ReplayMethod, DEFAULT_TOLERANCE};
use mip4::wire::extension::UdpTunnelReply;
use mip4::wire::{Extension, ReplyCode, ReplyRepr, RequestRepr, MIP_PORT};
use rand::rngs::StdRng;
use rand::SeedableRng;

pub const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
pub const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const HA2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
pub const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
pub const COA2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
pub const FA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
pub const SPI: u32 = 0x1000;
pub const KEY: &[u8] = b"0123456789abcdef";
pub const NAI: &[u8] = b"alice@corp.example";

/// Wall-clock time at the test's start (2023-11-14).
pub fn wall() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

pub fn sa() -> SecurityAssociation {
    SecurityAssociation::hmac_md5(SPI, KEY).unwrap()
}

pub fn sa_with(method: ReplayMethod) -> SecurityAssociation {
    SecurityAssociation::new(SPI, auth::Algorithm::HmacMd5, KEY, method).unwrap()
}

pub fn config() -> Config {
    Config::new(HOA, HA, COA, sa())
}

pub fn ha_addr() -> SocketAddrV4 {
    SocketAddrV4::new(HA, MIP_PORT)
}

/// The test's clock and the client under test.
pub struct Mn {
    pub client: Client,
    pub t0: Instant,
    pub now: Instant,
    /// When the client last handed out a datagram.
    pub last_sent: Option<Instant>,
}

impl Mn {
    pub fn new(cfg: Config) -> Self {
        let t0 = Instant::now();
        let client =
            Client::with_rng(cfg, t0, wall(), Box::new(StdRng::seed_from_u64(0x5eed))).unwrap();
        Mn {
            client,
            t0,
            now: t0,
            last_sent: None,
        }
    }

    /// The MN's NTP time of day at `self.now`.
    pub fn ntp(&self) -> NtpTimestamp {
        NtpTimestamp::from_system_time(wall()).plus(self.now - self.t0)
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
    }

    /// Jumps to the client's next timer and runs it.
    pub fn fire_next_timer(&mut self) -> Instant {
        let t = self.client.poll_timeout().expect("a timer is armed");
        assert!(t >= self.now, "timer in the past");
        self.now = t;
        self.client.handle_timeout(t);
        t
    }

    pub fn transmits(&mut self) -> Vec<Transmit> {
        let t: Vec<Transmit> = std::iter::from_fn(|| self.client.poll_transmit()).collect();
        if !t.is_empty() {
            self.last_sent = Some(self.now);
        }
        t
    }

    /// The corrected request after a denial (133, 136, 69, 75/138): held
    /// until one second after the request it corrects (RFC 5944 §3.6.3),
    /// then sent by the client's timer, not a moment sooner.
    pub fn corrected(&mut self) -> Transmit {
        let sent = self.last_sent.expect("a request went out before");
        assert!(
            self.transmits().is_empty(),
            "corrected request sent at once"
        );
        let due = sent + Duration::from_secs(1);
        if self.now < due {
            self.advance(due - self.now - Duration::from_nanos(1));
            assert!(self.transmits().is_empty(), "corrected request sent early");
        }
        assert_eq!(self.fire_next_timer(), due.max(self.now));
        self.one_transmit()
    }

    pub fn one_transmit(&mut self) -> Transmit {
        let mut t = self.transmits();
        assert_eq!(t.len(), 1, "expected exactly one datagram, got {t:?}");
        t.pop().unwrap()
    }

    pub fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    pub fn deliver(&mut self, payload: &[u8]) {
        self.client.handle_datagram(self.now, ha_addr(), payload);
    }
}

/// A scripted home agent: verifies what the client sends with the
/// crate's auth module and answers with signed replies.
pub struct FakeHa {
    pub sa: SecurityAssociation,
    pub replay: HaReplay,
    /// The HA's clock minus the MN's, in seconds.
    pub skew: i64,
    pub max_lifetime: u16,
    /// Address handed out when the request carries 0.0.0.0 (RFC 2794).
    pub assign: Ipv4Addr,
    pub address: Ipv4Addr,
    /// RFC 3519: answer a UDP Tunnel Request with a UDP Tunnel Reply,
    /// "will do" with this keepalive interval (`Some`) or declined.
    pub udp_keepalive: Option<u16>,
    /// RFC 5454: answer an IPv6 Prefix Request with an IPv6 Prefix Reply
    /// of this code and prefix (`None`: skip it, as a home agent without
    /// DSMIPv4 does, §3.5).
    pub ipv6_reply: Option<(u8, ipnet::Ipv6Net)>,
    rng: StdRng,
}

impl FakeHa {
    pub fn new() -> Self {
        Self::with(sa())
    }

    pub fn with(sa: SecurityAssociation) -> Self {
        FakeHa {
            replay: HaReplay::new(sa.replay_method(), DEFAULT_TOLERANCE),
            sa,
            skew: 0,
            max_lifetime: 0xfffe,
            assign: HOA,
            address: HA,
            udp_keepalive: None,
            ipv6_reply: None,
            rng: StdRng::seed_from_u64(0xa9e),
        }
    }

    /// Parses and authenticates a request as the HA would; panics (fails
    /// the test) if the client sent something a correct HA must refuse.
    pub fn parse(&self, payload: &[u8]) -> RequestRepr {
        auth::verify_mn_ha(payload, &self.sa).expect("client request authenticates");
        RequestRepr::parse_bytes(payload).expect("client request parses")
    }

    /// The reply a correct HA sends: replay check first (133 on failure),
    /// then `code` with the granted lifetime.
    pub fn answer(&mut self, payload: &[u8], mn_ntp: NtpTimestamp, code: ReplyCode) -> Vec<u8> {
        let req = self.parse(payload);
        let verdict = self.replay.check(
            req.identification,
            mn_ntp.offset_by(self.skew),
            &mut self.rng,
        );
        let code = if verdict.is_accepted() {
            code
        } else {
            ReplyCode::HA_IDENTIFICATION_MISMATCH
        };
        self.reply_to(
            &req,
            code,
            req.lifetime.min(self.max_lifetime),
            verdict.reply_identification(),
        )
    }

    /// A signed reply with explicit fields.
    pub fn reply_to(&self, req: &RequestRepr, code: ReplyCode, lifetime: u16, id: u64) -> Vec<u8> {
        let home_address = if req.home_address.is_unspecified() {
            self.assign
        } else {
            req.home_address
        };
        let mut extensions: Vec<Extension> = req
            .extensions
            .iter()
            .filter(|e| matches!(e, Extension::Nai(_)))
            .cloned()
            .collect();
        let udp_asked = req
            .extensions
            .iter()
            .any(|e| matches!(e, Extension::UdpTunnelRequest(_)));
        if udp_asked && code.is_accepted() {
            let (reply_code, keepalive_interval) = match self.udp_keepalive {
                Some(k) => (UdpTunnelReply::CODE_ACCEPTED, k),
                None => (UdpTunnelReply::CODE_DECLINED, 0),
            };
            extensions.push(Extension::UdpTunnelReply(UdpTunnelReply {
                sub_type: 0,
                reply_code,
                force: false,
                keepalive_interval,
            }));
        }
        let prefix_asked = req.extensions.iter().any(|e| {
            matches!(
                e,
                Extension::Dsmipv4(mip4::wire::extension::Dsmipv4Ext::Ipv6PrefixRequest { .. })
            )
        });
        if let (true, true, Some((code, prefix))) =
            (prefix_asked, code.is_accepted(), self.ipv6_reply)
        {
            extensions.push(Extension::Dsmipv4(
                mip4::wire::extension::Dsmipv4Ext::Ipv6PrefixReply {
                    code,
                    prefix_length: prefix.prefix_len(),
                    prefix: prefix.network(),
                },
            ));
        }
        let reply = ReplyRepr {
            code,
            lifetime: if code.is_accepted() { lifetime } else { 0 },
            home_address,
            home_agent: self.address,
            identification: id,
            extensions,
        };
        auth::sign_reply(&reply, &self.sa)
    }
}

/// An accepted reply for the request in `t`, at the MN's current time.
pub fn accept(ha: &mut FakeHa, mn: &Mn, t: &Transmit) -> Vec<u8> {
    ha.answer(&t.payload, mn.ntp(), ReplyCode::ACCEPTED)
}

pub fn config_with(method: ReplayMethod) -> Config {
    Config::new(HOA, HA, COA, sa_with(method))
}

/// Registers a client whose requests carry `ask` (checked to go out
/// inside the authenticated part) and answers with an accepting reply
/// carrying `exts` before the MN-HA authenticator and `appended` after
/// it; returns the binding the client reports.
pub fn registered_with(
    ask: &[Extension],
    exts: Vec<Extension>,
    appended: Option<Extension>,
) -> mip4::mn::Binding {
    let mut cfg = config();
    cfg.extensions.extend_from_slice(ask);
    let mut mn = Mn::new(cfg);
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    for e in ask {
        assert!(req.extensions.contains(e), "authenticated: {req:?}");
    }
    let reply = ReplyRepr {
        code: ReplyCode::ACCEPTED,
        lifetime: req.lifetime,
        home_address: HOA,
        home_agent: HA,
        identification: req.identification,
        extensions: exts,
    };
    let mut payload = auth::sign_reply(&reply, &sa());
    if let Some(e) = appended {
        payload.extend_from_slice(&e.to_bytes());
    }
    mn.deliver(&payload);
    match mn.events().as_slice() {
        [ClientEvent::Registered { binding, .. }] => binding.clone(),
        other => panic!("not registered: {other:?}"),
    }
}
