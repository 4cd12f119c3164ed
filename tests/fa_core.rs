//! The foreign agent core, deterministically: advertisement timing and
//! sequence numbers, relay and reply, every denial the FA produces,
//! timeouts, expiry, and malformed input. No sockets, no clocks.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use mip4::auth::{append_auth, find_auth, AuthKind, SecurityAssociation};
use mip4::config::Source;
use mip4::fa::advert::next_sequence;
use mip4::fa::{Disposition, DownReason, DropReason, FaConfig, ForeignAgent, LinkRequest, Output};
use mip4::replay::ReplayMethod;
use mip4::wire::icmp::{AdvFlags, AgentAdvertisementRepr, AgentSolicitationRepr};
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr};
use proptest::prelude::*;
use rand::SeedableRng;

const HA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const LINK: Ipv4Addr = Ipv4Addr::new(10, 50, 0, 1);
const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 10];
const MN_PORT: u16 = 40000;
const HA_KEY: &str = "ffeeddccbbaa99887766554433221100";
const MN_KEY: &str = "0123456789abcdef0123456789abcdef";

const BASE: &str = r#"
care_of_address = "10.77.0.2"
max_lifetime = 300
registration_timeout = 5
max_visitors = 2
allowed_home_agents = ["10.77.0.0/24"]

[advertisement]
interval = 60
min_interval = 45

[[interface]]
name = "vlink"
address = "10.50.0.1/24"
"#;

/// `extra` is top-level keys, or tables (starting with `[[`) to append.
fn cfg(extra: &str) -> FaConfig {
    let text = if extra.starts_with("[[") {
        format!("{BASE}{extra}")
    } else {
        format!("{extra}{BASE}")
    };
    FaConfig::from_source(&Source::from_str("t.conf", text)).unwrap()
}

fn fa_with(extra: &str, now: Instant) -> ForeignAgent {
    ForeignAgent::new(
        cfg(extra),
        now,
        Box::new(rand::rngs::StdRng::seed_from_u64(7)),
    )
    .unwrap()
}

fn key_sa(spi: u32, hex: &str) -> SecurityAssociation {
    let k = mip4::config::SecretKey::from_hex(hex).unwrap();
    SecurityAssociation::new(
        spi,
        mip4::auth::Algorithm::HmacMd5,
        k.expose(),
        ReplayMethod::Timestamp,
    )
    .unwrap()
}

fn mn_ha() -> SecurityAssociation {
    key_sa(256, "00112233445566778899aabbccddeeff")
}

fn repr(flags: Flags, lifetime: u16, id: u64) -> RequestRepr {
    RequestRepr {
        flags,
        lifetime,
        home_address: HOA,
        home_agent: HA,
        care_of_address: COA,
        identification: id,
        extensions: vec![],
    }
}

fn signed(r: &RequestRepr) -> Vec<u8> {
    let mut b = r.to_bytes();
    append_auth(&mut b, AuthKind::MnHa, &mn_ha());
    b
}

fn link<'a>(data: &'a [u8], ttl: u8) -> LinkRequest<'a> {
    LinkRequest {
        interface: 0,
        mac: MAC,
        src: SocketAddrV4::new(HOA, MN_PORT),
        dst: LINK,
        ttl,
        data,
    }
}

fn outputs(fa: &mut ForeignAgent) -> Vec<Output> {
    std::iter::from_fn(|| fa.poll_output()).collect()
}

/// The reply an FA output carries to the mobile node.
fn to_mn(o: &[Output]) -> (ReplyRepr, Vec<u8>) {
    let (payload, src, dst, mac) = o
        .iter()
        .find_map(|o| match o {
            Output::ToMobileNode {
                payload,
                src,
                dst,
                mac,
                ..
            } => Some((payload.clone(), *src, *dst, *mac)),
            _ => None,
        })
        .expect("a reply to the mobile node");
    // RFC 5944 §3.7.3.2: from the address the request was sent to, to
    // the request's source address and port, by link-layer address.
    assert_eq!(src, SocketAddrV4::new(LINK, 434));
    assert_eq!(dst, SocketAddrV4::new(HOA, MN_PORT));
    assert_eq!(mac, MAC);
    (ReplyRepr::parse_bytes(&payload).unwrap(), payload)
}

fn to_ha(o: &[Output]) -> Vec<u8> {
    o.iter()
        .find_map(|o| match o {
            Output::ToHomeAgent { dst, payload } => {
                assert_eq!(*dst, SocketAddrV4::new(HA, 434));
                Some(payload.clone())
            }
            _ => None,
        })
        .expect("a request relayed to the home agent")
}

fn advertisements(o: &[Output]) -> Vec<AgentAdvertisementRepr> {
    o.iter()
        .filter_map(|o| match o {
            Output::Advertise { dst, payload, .. } => {
                assert_eq!(*dst, Ipv4Addr::new(224, 0, 0, 1));
                Some(AgentAdvertisementRepr::parse_bytes(payload).unwrap())
            }
            _ => None,
        })
        .collect()
}

/// Denial expected for `req` at TTL `ttl`: code, echoed fields, counter.
fn assert_denied(fa: &mut ForeignAgent, now: Instant, req: &[u8], ttl: u8, code: ReplyCode) {
    let before = fa.counters().denied(code.0);
    let visitors = fa.visitors(now);
    assert_eq!(
        fa.handle_request(now, link(req, ttl)),
        Disposition::Denied(code)
    );
    let o = outputs(fa);
    assert!(
        !o.iter().any(|o| matches!(o, Output::ToHomeAgent { .. })),
        "{code} must not relay"
    );
    let (rep, _) = to_mn(&o);
    assert_eq!(rep.code, code);
    let sent = mip4::wire::RequestPacket::new_checked(req).unwrap();
    assert_eq!(rep.home_address, sent.home_address());
    assert_eq!(rep.home_agent, sent.home_agent());
    assert_eq!(rep.identification, sent.identification());
    assert_eq!(fa.counters().denied(code.0), before + 1);
    assert_eq!(fa.visitors(now), visitors, "a denial changes no visitor");
}

// ---- Agent advertisements (RFC 5944 §2.1, §2.3; RFC 1256 §4) ----

#[test]
fn first_advertisement_at_start_with_configured_content() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    assert_eq!(fa.poll_timeout(), Some(t0));
    fa.handle_timeout(t0);
    let a = advertisements(&outputs(&mut fa));
    assert_eq!(a.len(), 1);
    let a = &a[0];
    assert_eq!(a.code, 0);
    assert_eq!(a.lifetime, 180, "3 x the interval by default");
    assert_eq!(a.routers, vec![(LINK, 0)]);
    assert_eq!(a.mobility.sequence, 0, "RFC 5944 §2.3.2: the first is 0");
    assert_eq!(a.mobility.registration_lifetime, 300);
    assert_eq!(a.mobility.care_of_addresses, vec![COA]);
    assert_eq!(a.mobility.flags, AdvFlags::R | AdvFlags::F | AdvFlags::T);
    assert_eq!(a.prefix_lengths, Some(vec![24]));
}

#[test]
fn flags_follow_configuration() {
    let t0 = Instant::now();
    let mut fa = fa_with(
        "registration_required = false\nreverse_tunnel = \"unsupported\"\n",
        t0,
    );
    fa.handle_timeout(t0);
    let a = &advertisements(&outputs(&mut fa))[0];
    assert_eq!(a.mobility.flags, AdvFlags::F);
}

#[test]
fn intervals_are_jittered_between_min_and_max_and_initial_ones_capped() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    let mut t = t0;
    let mut seqs = Vec::new();
    let mut gaps = Vec::new();
    for _ in 0..12 {
        let due = fa.poll_timeout().unwrap();
        gaps.push(due - t);
        t = due;
        fa.handle_timeout(t);
        seqs.extend(
            advertisements(&outputs(&mut fa))
                .iter()
                .map(|a| a.mobility.sequence),
        );
    }
    assert_eq!(seqs, (0..12).collect::<Vec<u16>>());
    // gaps[0] is the start; gaps[1], gaps[2] follow the first two
    // advertisements (RFC 1256 §4: at most 16 s while fewer than 3 sent).
    assert!(gaps[1] <= Duration::from_secs(16) && gaps[2] <= Duration::from_secs(16));
    for g in &gaps[3..] {
        assert!(
            *g >= Duration::from_secs(45) && *g <= Duration::from_secs(60),
            "gap {g:?} outside [45 s, 60 s]"
        );
    }
    assert!(
        gaps[3..].windows(2).any(|w| w[0] != w[1]),
        "intervals are randomised, not fixed: {gaps:?}"
    );
}

#[test]
fn sequence_wraps_from_0xffff_to_256() {
    assert_eq!(next_sequence(0), 1);
    assert_eq!(next_sequence(255), 256);
    assert_eq!(next_sequence(0xfffe), 0xffff);
    assert_eq!(next_sequence(0xffff), 256, "RFC 5944 §2.3.2");
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.schedule_mut(0).set_next_sequence(0xffff);
    fa.handle_timeout(t0);
    let t1 = fa.poll_timeout().unwrap();
    fa.handle_timeout(t1);
    let seqs: Vec<u16> = advertisements(&outputs(&mut fa))
        .iter()
        .map(|a| a.mobility.sequence)
        .collect();
    assert_eq!(seqs, vec![0xffff, 256]);
}

#[test]
fn solicitation_brings_the_advertisement_forward_but_at_most_once_a_second() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_timeout(t0);
    outputs(&mut fa);
    let sol = AgentSolicitationRepr.to_bytes();
    let t = t0 + Duration::from_millis(300);
    assert_eq!(fa.handle_solicitation(t, 0, &sol), Disposition::Solicited);
    assert_eq!(
        fa.poll_timeout(),
        Some(t0 + Duration::from_secs(1)),
        "rate limit: one second after the last"
    );
    fa.handle_timeout(t0 + Duration::from_secs(1));
    assert_eq!(advertisements(&outputs(&mut fa))[0].mobility.sequence, 1);
    let t = t0 + Duration::from_secs(5);
    assert!(fa.poll_timeout().unwrap() > t + Duration::from_secs(10));
    fa.handle_solicitation(t, 0, &sol);
    assert_eq!(fa.poll_timeout(), Some(t), "answered at once");
    fa.handle_timeout(t);
    assert_eq!(advertisements(&outputs(&mut fa))[0].mobility.sequence, 2);
    assert_eq!(fa.counters().solicitations, 2);
    // A bad solicitation is dropped and counted.
    let mut bad = sol.clone();
    bad[2] ^= 1;
    assert_eq!(
        fa.handle_solicitation(t, 0, &bad),
        Disposition::Dropped(DropReason::Malformed)
    );
    assert_eq!(fa.counters().dropped_malformed, 1);
}

// ---- Relay and reply (RFC 5944 §3.7.2.2, §3.7.3) ----

fn accept_reply(id: u64, lifetime: u16) -> Vec<u8> {
    let r = ReplyRepr {
        code: ReplyCode::ACCEPTED,
        lifetime,
        home_address: HOA,
        home_agent: HA,
        identification: id,
        extensions: vec![],
    };
    mip4::auth::sign_reply(&r, &mn_ha())
}

fn ha_src() -> SocketAddrV4 {
    SocketAddrV4::new(HA, 434)
}

#[test]
fn request_is_relayed_unchanged_and_accepted_reply_installs_the_visitor() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    let req = signed(&repr(Flags::T, 120, 42));
    assert_eq!(fa.handle_request(t0, link(&req, 255)), Disposition::Relayed);
    let o = outputs(&mut fa);
    assert_eq!(to_ha(&o), req, "no FA-HA SA: relayed byte for byte");
    let v = fa.visitors(t0);
    assert_eq!((v.len(), v[0].state.as_str()), (1, "pending"));

    let rep = accept_reply(42, 100);
    let t1 = t0 + Duration::from_millis(20);
    assert_eq!(
        fa.handle_ha_datagram(t1, ha_src(), &rep),
        Disposition::ReplyRelayed(ReplyCode::ACCEPTED)
    );
    let o = outputs(&mut fa);
    let up = o
        .iter()
        .position(|o| matches!(o, Output::VisitorUp(_)))
        .unwrap();
    let tx = o
        .iter()
        .position(|o| matches!(o, Output::ToMobileNode { .. }))
        .unwrap();
    assert!(up < tx, "delivery installed before the reply leaves");
    let (_, bytes) = to_mn(&o);
    assert_eq!(
        bytes, rep,
        "reply relayed byte for byte (MN-HA auth intact)"
    );
    let Output::VisitorUp(v) = &o[up] else {
        unreachable!()
    };
    assert_eq!(
        (v.home_address, v.home_agent, v.mac, v.reverse_tunnel),
        (HOA, HA, MAC, true)
    );
    assert_eq!(v.lifetime, 100);
    let info = fa.visitors(t1);
    assert_eq!(
        (info.len(), info[0].state.as_str(), info[0].remaining),
        (1, "accepted", 100)
    );
    assert_eq!(fa.counters().accepted, 1);

    // Lifetime runs out: the visitor goes (RFC 5944 §3.7.1).
    let t2 = t1 + Duration::from_secs(100);
    assert!(fa.poll_timeout().unwrap() <= t2);
    fa.handle_timeout(t2);
    let o = outputs(&mut fa);
    assert!(o.iter().any(|o| matches!(
        o,
        Output::VisitorDown { reason: DownReason::Expired, visitor } if visitor.home_address == HOA
    )));
    assert!(fa.visitors(t2).is_empty());
    assert_eq!(fa.counters().expired, 1);
}

#[test]
fn deregistration_reply_removes_the_visitor() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 1)), 64));
    fa.handle_ha_datagram(t0, ha_src(), &accept_reply(1, 120));
    outputs(&mut fa);
    fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 0, 2)), 64));
    fa.handle_ha_datagram(t0, ha_src(), &accept_reply(2, 0));
    let o = outputs(&mut fa);
    assert!(o.iter().any(|o| matches!(
        o,
        Output::VisitorDown {
            reason: DownReason::Deregistered,
            ..
        }
    )));
    assert!(fa.visitors(t0).is_empty());
    assert_eq!(fa.counters().deregistered, 1);
}

#[test]
fn home_agent_denial_is_relayed_and_nothing_installed() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 9)), 64));
    outputs(&mut fa);
    let r = ReplyRepr {
        code: ReplyCode::HA_MN_FAILED_AUTH,
        lifetime: 0,
        home_address: HOA,
        home_agent: HA,
        identification: 9,
        extensions: vec![],
    }
    .to_bytes();
    assert_eq!(
        fa.handle_ha_datagram(t0, ha_src(), &r),
        Disposition::ReplyRelayed(ReplyCode::HA_MN_FAILED_AUTH)
    );
    let o = outputs(&mut fa);
    assert_eq!(to_mn(&o).0.code, ReplyCode::HA_MN_FAILED_AUTH);
    assert!(!o.iter().any(|o| matches!(o, Output::VisitorUp(_))));
    assert!(fa.visitors(t0).is_empty());
    assert_eq!(fa.counters().denied_by_home_agent, 1);
}

#[test]
fn reply_matches_on_low_32_bits_of_identification_and_the_ha_address() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_request(
        t0,
        link(
            &signed(&repr(Flags::empty(), 120, 0x1111_2222_3333_4444)),
            64,
        ),
    );
    outputs(&mut fa);
    // Wrong low-order bits: dropped.
    let d = fa.handle_ha_datagram(t0, ha_src(), &accept_reply(0x1111_2222_3333_4445, 60));
    assert_eq!(d, Disposition::Dropped(DropReason::UnmatchedReply));
    // Right identification, wrong source: a forgery, dropped.
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 9), 434);
    let d = fa.handle_ha_datagram(t0, other, &accept_reply(0x1111_2222_3333_4444, 60));
    assert_eq!(d, Disposition::Dropped(DropReason::UnmatchedReply));
    assert_eq!(fa.counters().dropped_unmatched_reply, 2);
    assert!(outputs(&mut fa).is_empty(), "nothing reaches the MN");
    // High-order bits rewritten by the HA (nonces, §5.7.2): matched.
    let d = fa.handle_ha_datagram(t0, ha_src(), &accept_reply(0x9999_9999_3333_4444, 60));
    assert_eq!(d, Disposition::ReplyRelayed(ReplyCode::ACCEPTED));
}

#[test]
fn fa_ha_authentication_appended_to_requests_and_required_on_replies() {
    let extra = format!("[[home_agent]]\naddress = \"{HA}\"\nspi = 300\nkey = \"{HA_KEY}\"\n");
    let t0 = Instant::now();
    let mut fa = fa_with(&extra, t0);
    let faha = key_sa(300, HA_KEY);
    let req = signed(&repr(Flags::empty(), 120, 5));
    fa.handle_request(t0, link(&req, 64));
    let relayed = to_ha(&outputs(&mut fa));
    assert_eq!(&relayed[..req.len()], &req[..], "MN's part unchanged");
    find_auth(&relayed, AuthKind::FaHa)
        .unwrap()
        .verify(&faha)
        .unwrap();

    // A reply with a valid FA-HA authenticator: relayed without it.
    let mut rep = accept_reply(5, 120);
    let mn_part = rep.clone();
    append_auth(&mut rep, AuthKind::FaHa, &faha);
    fa.handle_ha_datagram(t0, ha_src(), &rep);
    let (_, bytes) = to_mn(&outputs(&mut fa));
    assert_eq!(bytes, mn_part, "FA-HA extension stripped before the MN");

    // Missing or bad FA-HA authenticator: 68 to the MN.
    for bad in [accept_reply(6, 120), {
        let mut r = accept_reply(6, 120);
        append_auth(&mut r, AuthKind::FaHa, &key_sa(300, MN_KEY));
        r
    }] {
        fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 6)), 64));
        outputs(&mut fa);
        assert_eq!(
            fa.handle_ha_datagram(t0, ha_src(), &bad),
            Disposition::Denied(ReplyCode::FA_HA_FAILED_AUTH)
        );
        assert_eq!(
            to_mn(&outputs(&mut fa)).0.code,
            ReplyCode::FA_HA_FAILED_AUTH
        );
    }
}

#[test]
fn mn_fa_authentication_checked_stripped_and_added_to_replies() {
    let extra =
        format!("[[mobile_node]]\nhome_address = \"{HOA}\"\nspi = 400\nkey = \"{MN_KEY}\"\n");
    let t0 = Instant::now();
    let mut fa = fa_with(&extra, t0);
    let mnfa = key_sa(400, MN_KEY);
    let base = signed(&repr(Flags::empty(), 120, 7));
    let mut req = base.clone();
    append_auth(&mut req, AuthKind::MnFa, &mnfa);
    assert_eq!(fa.handle_request(t0, link(&req, 64)), Disposition::Relayed);
    assert_eq!(
        to_ha(&outputs(&mut fa)),
        base,
        "MN-FA extension not relayed"
    );
    fa.handle_ha_datagram(t0, ha_src(), &accept_reply(7, 120));
    let (_, bytes) = to_mn(&outputs(&mut fa));
    find_auth(&bytes, AuthKind::MnFa)
        .unwrap()
        .verify(&mnfa)
        .unwrap();

    // Missing, or made with another key: 67.
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::empty(), 120, 8)),
        64,
        ReplyCode::FA_MN_FAILED_AUTH,
    );
    let mut forged = base.clone();
    append_auth(&mut forged, AuthKind::MnFa, &key_sa(400, HA_KEY));
    assert_denied(&mut fa, t0, &forged, 64, ReplyCode::FA_MN_FAILED_AUTH);
}

// ---- Every FA denial (RFC 5944 §3.7.2.1, RFC 3024 §4.2, RFC 2794) ----

#[test]
fn every_request_denial_has_its_code() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    let ok = repr(Flags::empty(), 120, 1);

    // 70: unknown non-skippable extension; an extension overrunning.
    let mut r = ok.clone();
    r.extensions.push(Extension::Unknown {
        type_: 99,
        data: vec![1, 2],
    });
    assert_denied(
        &mut fa,
        t0,
        &signed(&r),
        64,
        ReplyCode::FA_POORLY_FORMED_REQUEST,
    );
    let mut b = ok.to_bytes();
    b.extend_from_slice(&[131, 10, b'x']);
    assert_denied(&mut fa, t0, &b, 64, ReplyCode::FA_POORLY_FORMED_REQUEST);
    // 69, with the longest acceptable lifetime in the reply.
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::empty(), 301, 1)),
        64,
        ReplyCode::FA_LIFETIME_TOO_LONG,
    );
    // 77: not our care-of address (e.g. a co-located one).
    let mut r = ok.clone();
    r.care_of_address = Ipv4Addr::new(10, 50, 0, 99);
    assert_denied(
        &mut fa,
        t0,
        &signed(&r),
        64,
        ReplyCode::FA_INVALID_CARE_OF_ADDRESS,
    );
    // 72: minimal or GRE encapsulation.
    for f in [Flags::M, Flags::G] {
        assert_denied(
            &mut fa,
            t0,
            &signed(&repr(f, 120, 1)),
            64,
            ReplyCode::FA_ENCAPSULATION_UNAVAILABLE,
        );
    }
    // 76: 'T' but not TTL 255 (not on the link, RFC 3024 §4.2).
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::T, 120, 1)),
        254,
        ReplyCode::FA_MN_TOO_DISTANT,
    );
    // 79, and 70 for the delivery style extension without 'T'.
    let mut r = repr(Flags::T, 120, 1);
    r.extensions.push(Extension::Unknown {
        type_: 130,
        data: vec![0, 0],
    });
    assert_denied(
        &mut fa,
        t0,
        &signed(&r),
        255,
        ReplyCode::FA_DELIVERY_STYLE_UNSUPPORTED,
    );
    r.flags = Flags::empty();
    assert_denied(
        &mut fa,
        t0,
        &signed(&r),
        64,
        ReplyCode::FA_POORLY_FORMED_REQUEST,
    );
    // 98: no home agent to relay to; 97: no home address and no NAI.
    let mut r = ok.clone();
    r.home_agent = Ipv4Addr::UNSPECIFIED;
    assert_denied(
        &mut fa,
        t0,
        &signed(&r),
        64,
        ReplyCode::FA_MISSING_HOME_AGENT,
    );
    let mut r = ok.clone();
    r.home_address = Ipv4Addr::UNSPECIFIED;
    assert_denied(&mut fa, t0, &signed(&r), 64, ReplyCode::FA_MISSING_NAI);
    assert_eq!(fa.counters().relayed, 0);
}

#[test]
fn reverse_tunnel_policy_denials() {
    let t0 = Instant::now();
    let mut fa = fa_with("reverse_tunnel = \"unsupported\"\n", t0);
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::T, 120, 1)),
        255,
        ReplyCode::FA_REVERSE_TUNNEL_UNAVAILABLE,
    );
    let mut fa = fa_with("reverse_tunnel = \"required\"\n", t0);
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::empty(), 120, 1)),
        64,
        ReplyCode::FA_REVERSE_TUNNEL_MANDATORY,
    );
    assert_eq!(
        fa.handle_request(t0, link(&signed(&repr(Flags::T, 120, 1)), 255)),
        Disposition::Relayed
    );
}

#[test]
fn policy_and_resource_denials_and_the_busy_bit() {
    let t0 = Instant::now();
    let mut fa = fa_with("mn_fa_auth_required = false\n", t0);
    let mut r = repr(Flags::empty(), 120, 1);
    r.home_agent = Ipv4Addr::new(192, 0, 2, 1);
    assert_denied(&mut fa, t0, &signed(&r), 64, ReplyCode::FA_ADMIN_PROHIBITED);
    // max_visitors = 2: two nodes fill the list, the third gets 66.
    for (i, hoa) in [[10, 1, 0, 11], [10, 1, 0, 12]].into_iter().enumerate() {
        let mut r = repr(Flags::empty(), 120, i as u64);
        r.home_address = hoa.into();
        assert_eq!(
            fa.handle_request(t0, link(&signed(&r), 64)),
            Disposition::Relayed
        );
    }
    outputs(&mut fa);
    assert!(
        fa.advertised_flags().contains(AdvFlags::B),
        "busy when full"
    );
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::empty(), 120, 3)),
        64,
        ReplyCode::FA_INSUFFICIENT_RESOURCES,
    );

    let mut fa = fa_with("mn_fa_auth_required = true\n", t0);
    assert_denied(
        &mut fa,
        t0,
        &signed(&repr(Flags::empty(), 120, 1)),
        64,
        ReplyCode::FA_MN_FAILED_AUTH,
    );
}

#[test]
fn one_link_layer_address_cannot_fill_the_visitor_list_with_pending_requests() {
    let t0 = Instant::now();
    // max_visitors = 2: one pending entry per link-layer address leaves
    // room for another node.
    let mut fa = fa_with("max_pending_per_mac = 1\n", t0);
    // Nothing about these is authenticated yet: each invents a home address.
    for i in 0..1u8 {
        let mut r = repr(Flags::empty(), 120, u64::from(i));
        r.home_address = Ipv4Addr::new(10, 1, 0, 100 + i);
        assert_eq!(
            fa.handle_request(t0, link(&signed(&r), 64)),
            Disposition::Relayed
        );
    }
    outputs(&mut fa);
    let mut third = repr(Flags::empty(), 120, 3);
    third.home_address = Ipv4Addr::new(10, 1, 0, 102);
    assert_denied(
        &mut fa,
        t0,
        &signed(&third),
        64,
        ReplyCode::FA_INSUFFICIENT_RESOURCES,
    );
    assert_eq!(fa.counters().pending_per_mac_refused, 1);
    assert!(
        !fa.advertised_flags().contains(AdvFlags::B),
        "others are still served"
    );
    // A retransmission of a pending request is no new entry.
    let mut again = repr(Flags::empty(), 120, 9);
    again.home_address = Ipv4Addr::new(10, 1, 0, 100);
    assert_eq!(
        fa.handle_request(t0, link(&signed(&again), 64)),
        Disposition::Relayed
    );
    // Another node on the link is served.
    let bytes = signed(&repr(Flags::empty(), 120, 4));
    let other = LinkRequest {
        mac: [2, 0, 0, 0, 0, 99],
        ..link(&bytes, 64)
    };
    assert_eq!(fa.handle_request(t0, other), Disposition::Relayed);
}

#[test]
fn poorly_formed_reply_gets_71() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 3)), 64));
    outputs(&mut fa);
    let mut rep = accept_reply(3, 120);
    rep.extend_from_slice(&[33, 40, 0]); // runs past the datagram
    assert_eq!(
        fa.handle_ha_datagram(t0, ha_src(), &rep),
        Disposition::Denied(ReplyCode::FA_POORLY_FORMED_REPLY)
    );
    assert_eq!(
        to_mn(&outputs(&mut fa)).0.code,
        ReplyCode::FA_POORLY_FORMED_REPLY
    );
}

#[test]
fn pending_request_times_out_with_78() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_timeout(t0);
    let t1 = t0 + Duration::from_secs(1);
    fa.handle_request(t1, link(&signed(&repr(Flags::empty(), 120, 77)), 64));
    outputs(&mut fa);
    assert_eq!(fa.poll_timeout(), Some(t1 + Duration::from_secs(5)));
    fa.handle_timeout(t1 + Duration::from_secs(5));
    let (rep, _) = to_mn(&outputs(&mut fa));
    assert_eq!(
        (rep.code, rep.identification),
        (ReplyCode::FA_REGISTRATION_TIMEOUT, 77)
    );
    assert_eq!(fa.counters().timeouts, 1);
    assert!(fa.visitors(t1).is_empty());
    // A late reply then matches nothing.
    let d = fa.handle_ha_datagram(
        t1 + Duration::from_secs(6),
        ha_src(),
        &accept_reply(77, 120),
    );
    assert_eq!(d, Disposition::Dropped(DropReason::UnmatchedReply));
}

/// An ICMP Destination Unreachable quoting the relayed request.
fn unreachable(code: u8, relayed: &[u8]) -> Vec<u8> {
    let mut icmp = vec![3, code, 0, 0, 0, 0, 0, 0];
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&COA.octets());
    ip.extend_from_slice(&HA.octets());
    let total = (20 + 8 + relayed.len()) as u16;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    icmp.extend_from_slice(&ip);
    icmp.extend_from_slice(&[1, 178, 1, 178, 0, 0, 0, 0]); // 434 -> 434
    icmp.extend_from_slice(relayed);
    icmp
}

#[test]
fn icmp_errors_about_relayed_requests_deny_with_80_81_82_88() {
    for (icmp_code, code) in [
        (0, ReplyCode::FA_HOME_NETWORK_UNREACHABLE),
        (1, ReplyCode::FA_HA_HOST_UNREACHABLE),
        (3, ReplyCode::FA_HA_PORT_UNREACHABLE),
        (13, ReplyCode::FA_HA_UNREACHABLE),
    ] {
        let t0 = Instant::now();
        let mut fa = fa_with("", t0);
        fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 11)), 64));
        let relayed = to_ha(&outputs(&mut fa));
        // About another request: ignored.
        let mut other = relayed.clone();
        other[23] ^= 1;
        assert_eq!(
            fa.handle_icmp_error(t0, &unreachable(icmp_code, &other)),
            Disposition::Dropped(DropReason::UnmatchedIcmp)
        );
        assert_eq!(
            fa.handle_icmp_error(t0, &unreachable(icmp_code, &relayed)),
            Disposition::Denied(code)
        );
        assert_eq!(to_mn(&outputs(&mut fa)).0.code, code);
        assert_eq!(fa.counters().icmp_errors, 1);
    }
}

#[test]
fn shutdown_takes_every_visitor_down() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 1)), 64));
    fa.handle_ha_datagram(t0, ha_src(), &accept_reply(1, 120));
    outputs(&mut fa);
    fa.shutdown();
    assert!(matches!(
        outputs(&mut fa).as_slice(),
        [Output::VisitorDown {
            reason: DownReason::Shutdown,
            ..
        }]
    ));
}

// ---- Malformed input: dropped and counted, never a panic ----

#[test]
fn truncated_request_and_garbage_reply_are_dropped_and_counted() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    let req = signed(&repr(Flags::empty(), 120, 1));
    assert_eq!(
        fa.handle_request(t0, link(&req[..23], 64)),
        Disposition::Dropped(DropReason::Malformed)
    );
    assert_eq!(
        fa.handle_ha_datagram(t0, ha_src(), &[3, 0, 0]),
        Disposition::Dropped(DropReason::Malformed)
    );
    assert_eq!(fa.counters().dropped_malformed, 2);
    assert!(outputs(&mut fa).is_empty());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), ttl in any::<u8>()) {
        let t0 = Instant::now();
        let mut fa = fa_with("", t0);
        // A pending request, so replies and ICMP errors reach the matching code.
        fa.handle_request(t0, link(&signed(&repr(Flags::empty(), 120, 1)), 64));
        let _ = fa.handle_request(t0, link(&bytes, ttl));
        let mut as_reply = bytes.clone();
        if !as_reply.is_empty() { as_reply[0] = 3; }
        let _ = fa.handle_ha_datagram(t0, ha_src(), &as_reply);
        let _ = fa.handle_ha_datagram(t0, ha_src(), &bytes);
        let _ = fa.handle_icmp_error(t0, &bytes);
        let _ = fa.handle_solicitation(t0, 0, &bytes);
        let _ = fa.handle_solicitation(t0, 5, &bytes);
        fa.handle_timeout(t0 + Duration::from_secs(400));
        while fa.poll_output().is_some() {}
    }
}

#[test]
fn replies_from_anywhere_that_answer_nothing_are_counted_and_logged_within_a_limit() {
    let t0 = Instant::now();
    let mut fa = fa_with("", t0);
    for i in 0..1000 {
        let d = fa.handle_ha_datagram(t0, ha_src(), &accept_reply(i, 120));
        assert_eq!(d, Disposition::Dropped(DropReason::UnmatchedReply));
    }
    let c = fa.counters();
    assert_eq!(c.dropped_unmatched_reply, 1000);
    // A burst of log lines (the per-source bucket: 5), the rest suppressed.
    assert_eq!(c.rate_limited, 995);
    // Later the source is logged again.
    fa.handle_ha_datagram(
        t0 + Duration::from_secs(10),
        ha_src(),
        &accept_reply(1, 120),
    );
    assert_eq!(fa.counters().rate_limited, 995);
}
