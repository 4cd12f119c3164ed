//! The sans-IO home agent driven deterministically: no sockets, no clock.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use mip4::auth::{append_auth, AuthExtAt, AuthKind, SecurityAssociation};
use mip4::config::Source;
use mip4::ha::{
    Binding, Changes, Disposition, DownReason, DropReason, HaConfig, HomeAgent, Ipv6Binding,
    Ipv6TunnelTo, Output, TunnelMode,
};
use mip4::replay::{NtpTimestamp, ReplayMethod};
use mip4::wire::extension::{Dsmipv4Ext, UdpTunnelReply, UdpTunnelRequest};
use mip4::wire::{Extension, Flags, ReplyCode, ReplyRepr, RequestRepr};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const K1: &str = "00112233445566778899aabbccddeeff";
const K2: &str = "0102030405060708090a0b0c0d0e0f10";
const K3: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf";
const K6: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

fn config(extra: &str) -> HaConfig {
    let text = format!(
        r#"
home_agent = "10.1.0.1"
max_lifetime = 300
trusted_networks = ["10.10.0.0/16"]
{extra}
[[home_network]]
prefix = "10.1.0.0/24"

[address_pool]
first = "10.1.0.100"
last = "10.1.0.101"

[[mobile_node]]
nai = "mn1@example.com"
home_address = "10.1.0.10"
spi = 256
key = "{K1}"
ipv6_prefix = "2001:db8:10::/64"

[[mobile_node]]
home_address = "10.1.0.11"
spi = 257
key = "{K2}"
reverse_tunnel = "denied"

[[mobile_node]]
nai = "mn3@example.com"
spi = 258
key = "{K3}"
reverse_tunnel = "required"

[[mobile_node]]
nai = "mn4@example.com"
spi = 259
key = "{K3}"

[[mobile_node]]
nai = "mn5@example.com"
spi = 260
key = "{K3}"

[[mobile_node]]
home_address = "10.1.0.12"
spi = 261
key = "{K6}"
replay = "nonce"
"#
    );
    HaConfig::from_source(&Source::from_str("test.conf", text)).unwrap()
}

fn ha_with(extra: &str) -> HomeAgent {
    HomeAgent::new(config(extra), Box::new(StdRng::seed_from_u64(1))).unwrap()
}

fn ha() -> HomeAgent {
    ha_with("")
}

fn sa(spi: u32, key: &str, replay: ReplayMethod) -> SecurityAssociation {
    let key = mip4::config::SecretKey::from_hex(key).unwrap();
    SecurityAssociation::new(spi, mip4::auth::Algorithm::HmacMd5, key.expose(), replay).unwrap()
}

fn mn1() -> SecurityAssociation {
    sa(256, K1, ReplayMethod::Timestamp)
}

const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const HOA1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const COA_TRUSTED: Ipv4Addr = Ipv4Addr::new(10, 10, 1, 5);
const COA_TRUSTED2: Ipv4Addr = Ipv4Addr::new(10, 10, 2, 5);
const COA_OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

fn wall() -> NtpTimestamp {
    NtpTimestamp::new(3_900_000_000, 0)
}

/// A timestamp Identification `n` fractions after `wall()`.
fn ts(n: u32) -> u64 {
    NtpTimestamp::new(3_900_000_000, n).0
}

struct Req {
    flags: Flags,
    lifetime: u16,
    home: Ipv4Addr,
    ha: Ipv4Addr,
    coa: Ipv4Addr,
    id: u64,
    exts: Vec<Extension>,
}

impl Req {
    fn new(home: Ipv4Addr, coa: Ipv4Addr, id: u64) -> Self {
        Req {
            flags: Flags::empty(),
            lifetime: 120,
            home,
            ha: HA,
            coa,
            id,
            exts: Vec::new(),
        }
    }
    fn unsigned(&self) -> Vec<u8> {
        RequestRepr {
            flags: self.flags,
            lifetime: self.lifetime,
            home_address: self.home,
            home_agent: self.ha,
            care_of_address: self.coa,
            identification: self.id,
            extensions: self.exts.clone(),
        }
        .to_bytes()
    }
    fn signed(&self, sa: &SecurityAssociation) -> Vec<u8> {
        let mut b = self.unsigned();
        append_auth(&mut b, AuthKind::MnHa, sa);
        b
    }
}

fn from(ip: Ipv4Addr) -> SocketAddrV4 {
    SocketAddrV4::new(ip, 434)
}

/// Drains outputs: (the one reply, binding actions), acting as the daemon
/// with an installer that always succeeds.
fn drain(ha: &mut HomeAgent) -> (Option<(SocketAddrV4, Vec<u8>)>, Vec<Output>) {
    drain_installing(ha, |_| Ok(()))
}

/// Drains outputs as the daemon does: each `BindingUp` goes to the fake
/// installer `install`, whose outcome is reported back to the core.
fn drain_installing(
    ha: &mut HomeAgent,
    install: impl Fn(&Binding) -> Result<(), &'static str>,
) -> (Option<(SocketAddrV4, Vec<u8>)>, Vec<Output>) {
    let mut reply = None;
    let mut actions = Vec::new();
    while let Some(o) = ha.poll_output() {
        match o {
            Output::Transmit { dst, payload } => {
                assert!(reply.is_none(), "one reply per request");
                reply = Some((dst, payload));
            }
            Output::BindingUp(b) => {
                assert!(reply.is_none(), "no reply before the binding is installed");
                ha.install_result(b.home_address, install(&b));
                actions.push(Output::BindingUp(b));
            }
            other => actions.push(other),
        }
    }
    (reply, actions)
}

/// Parses a reply and checks its MN-HA authenticator with `sa`; returns
/// the reply and the extensions the authenticator covers.
fn verified(bytes: &[u8], sa: &SecurityAssociation) -> (ReplyRepr, Vec<Extension>) {
    let reply = ReplyRepr::parse_bytes(bytes).unwrap();
    let offs = mip4::wire::extension::parse_all(bytes, mip4::wire::registration::REPLY_HEADER_LEN)
        .unwrap();
    let (auth_at, _) = offs
        .iter()
        .find(|(_, e)| matches!(e, Extension::MnHaAuth(_)))
        .expect("reply carries MN-HA authentication");
    let at = AuthExtAt::parse(bytes, *auth_at).unwrap();
    at.verify(sa).expect("reply authenticator verifies");
    assert_eq!(at.end, bytes.len(), "MN-HA auth is the last extension");
    let covered = offs
        .iter()
        .filter(|(o, _)| o < auth_at)
        .map(|(_, e)| e.clone())
        .collect();
    (reply, covered)
}

/// A binding asked up, then torn down because installing it failed.
fn installed_then_torn_down(actions: &[Output]) -> bool {
    matches!(
        actions,
        [
            Output::BindingUp(_),
            Output::BindingDown {
                reason: DownReason::InstallFailed,
                ..
            }
        ]
    )
}

fn send(ha: &mut HomeAgent, now: Instant, src: SocketAddrV4, bytes: &[u8]) -> Disposition {
    ha.handle_datagram(now, wall(), src, bytes)
}

#[test]
fn registration_accepted_binding_installed_and_reply_signed() {
    let mut ha = ha();
    let now = Instant::now();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.flags = Flags::T;
    let d = send(&mut ha, now, from(COA_TRUSTED), &r.signed(&mn1()));
    assert_eq!(d, Disposition::AwaitingInstall(ReplyCode::ACCEPTED));
    let (reply, actions) = drain(&mut ha);
    let (dst, bytes) = reply.unwrap();
    assert_eq!(dst, from(COA_TRUSTED), "reply goes to the request's source");
    let (rep, _) = verified(&bytes, &mn1());
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(rep.lifetime, 120);
    assert_eq!(rep.home_address, HOA1);
    assert_eq!(rep.home_agent, HA);
    assert_eq!(
        rep.identification, r.id,
        "timestamps: identification copied"
    );
    match &actions[..] {
        [Output::BindingUp(b)] => {
            assert_eq!(b.home_address, HOA1);
            assert_eq!(b.care_of_address, COA_TRUSTED);
            assert!(b.reverse_tunnel);
            assert_eq!(b.tunnel, TunnelMode::Ipip);
        }
        other => panic!("expected one BindingUp, got {other:?}"),
    }
    let infos = ha.bindings(now);
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].remaining, 120);
    assert_eq!(ha.counters().accepted, 1);
}

/// The daemon's first look at a batch (`prefetch`) names the home
/// address a request is about and changes nothing: no output, no
/// counter, and the request is then handled as it would be without it.
#[test]
fn the_first_look_at_a_batch_names_the_home_address_and_changes_nothing() {
    let mut ha = ha();
    let now = Instant::now();
    let r = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(ha.prefetch(&r, None), Some(HOA1));
    assert_eq!(ha.prefetch(&r[..10], None), None, "too short for a header");
    assert_eq!(ha.prefetch(&[4; 40], None), None, "not a request");
    assert!(ha.poll_output().is_none());
    assert_eq!(ha.counters(), &mip4::ha::Counters::default());
    assert_eq!(
        send(&mut ha, now, from(COA_TRUSTED), &r),
        Disposition::AwaitingInstall(ReplyCode::ACCEPTED)
    );
    // With the binding there, the look finds it, and still changes nothing.
    let _ = drain(&mut ha);
    let before = ha.counters().clone();
    assert_eq!(ha.prefetch(&r, None), Some(HOA1));
    assert!(ha.poll_output().is_none());
    assert_eq!(ha.counters(), &before);
}

#[test]
fn lifetime_is_capped_by_policy() {
    let mut ha = ha();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.lifetime = 0xffff;
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &r.signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert_eq!(rep.lifetime, 300);
}

#[test]
fn reregistration_refreshes_and_a_move_changes_the_tunnel() {
    let mut ha = ha();
    let t0 = Instant::now();
    send(
        &mut ha,
        t0,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
    );
    drain(&mut ha);
    // Same care-of address: lifetime refreshed, and the daemon asked
    // again (it compares the binding with what it installed and, nothing
    // having changed, asks nothing of the kernel) before the reply leaves.
    let t1 = t0 + Duration::from_secs(60);
    send(
        &mut ha,
        t1,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(2)).signed(&mn1()),
    );
    let (reply, actions) = drain(&mut ha);
    assert!(reply.is_some());
    assert!(
        matches!(&actions[..], [Output::BindingUp(b)] if b.care_of_address == COA_TRUSTED),
        "{actions:?}"
    );
    assert_eq!(
        ha.binding(HOA1).unwrap().expires,
        t1 + Duration::from_secs(120)
    );
    // New care-of address: the binding follows.
    send(
        &mut ha,
        t1,
        from(COA_TRUSTED2),
        &Req::new(HOA1, COA_TRUSTED2, ts(3)).signed(&mn1()),
    );
    let (_, actions) = drain(&mut ha);
    assert!(matches!(&actions[..], [Output::BindingUp(b)] if b.care_of_address == COA_TRUSTED2));
    assert_eq!(ha.binding(HOA1).unwrap().care_of_address, COA_TRUSTED2);
}

#[test]
fn deregistration_by_lifetime_zero_and_by_coming_home() {
    for how in ["lifetime0", "coa=hoa"] {
        let mut ha = ha();
        let now = Instant::now();
        send(
            &mut ha,
            now,
            from(COA_TRUSTED),
            &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
        );
        drain(&mut ha);
        let mut r = Req::new(HOA1, COA_TRUSTED, ts(2));
        if how == "lifetime0" {
            r.lifetime = 0;
        } else {
            r.coa = HOA1;
        }
        let d = send(&mut ha, now, from(COA_TRUSTED), &r.signed(&mn1()));
        assert_eq!(d, Disposition::Replied(ReplyCode::ACCEPTED), "{how}");
        let (reply, actions) = drain(&mut ha);
        let (rep, _) = verified(&reply.unwrap().1, &mn1());
        assert_eq!(rep.lifetime, 0, "{how}");
        assert!(
            matches!(&actions[..], [Output::BindingDown { reason: DownReason::Deregistered, binding }] if binding.home_address == HOA1),
            "{how}: {actions:?}"
        );
        assert!(ha.binding(HOA1).is_none());
        assert_eq!(ha.counters().deregistered, 1);
    }
}

#[test]
fn binding_expires_at_its_lifetime() {
    let mut ha = ha();
    let t0 = Instant::now();
    send(
        &mut ha,
        t0,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
    );
    drain(&mut ha);
    let deadline = ha.poll_timeout().unwrap();
    assert_eq!(deadline, t0 + Duration::from_secs(120));
    ha.handle_timeout(deadline - Duration::from_millis(1));
    assert!(ha.binding(HOA1).is_some(), "not before its time");
    ha.handle_timeout(deadline);
    let (_, actions) = drain(&mut ha);
    assert!(matches!(
        &actions[..],
        [Output::BindingDown {
            reason: DownReason::Expired,
            ..
        }]
    ));
    assert!(ha.binding(HOA1).is_none());
    assert_eq!(ha.poll_timeout(), None);
    assert_eq!(ha.counters().expired, 1);
}

/// Sends `bytes` and returns the reply's code, checking the reply's
/// authenticator with `sa` when given.
fn code_of(
    ha: &mut HomeAgent,
    src: Ipv4Addr,
    bytes: &[u8],
    sa: Option<&SecurityAssociation>,
) -> ReplyCode {
    let d = send(ha, Instant::now(), from(src), bytes);
    let (reply, actions) = drain(ha);
    let bytes = reply.expect("a reply").1;
    let rep = match sa {
        Some(sa) => verified(&bytes, sa).0,
        None => ReplyRepr::parse_bytes(&bytes).unwrap(),
    };
    if !rep.code.is_accepted() {
        assert!(
            actions.is_empty(),
            "a denial changes no binding: {actions:?}"
        );
    }
    if rep.code.is_accepted() && !actions.is_empty() {
        assert_eq!(d, Disposition::AwaitingInstall(rep.code));
    } else {
        assert_eq!(d, Disposition::Replied(rep.code));
    }
    rep.code
}

#[test]
fn bad_authenticator_is_131_and_counted() {
    let mut ha = ha();
    let mut b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    let last = b.len() - 1;
    b[last] ^= 1;
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_MN_FAILED_AUTH
    );
    // Wrong key entirely.
    let forged = Req::new(HOA1, COA_TRUSTED, ts(2)).signed(&sa(256, K2, ReplayMethod::Timestamp));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &forged, Some(&mn1())),
        ReplyCode::HA_MN_FAILED_AUTH
    );
    assert_eq!(ha.counters().unauthenticated, 2);
    assert_eq!(ha.counters().denied(131), 2);
    assert!(ha.binding(HOA1).is_none());
}

#[test]
fn missing_auth_is_131_unsigned_and_unknown_spi_is_dropped_and_counted() {
    let mut ha = ha();
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).unsigned();
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, None),
        ReplyCode::HA_MN_FAILED_AUTH
    );
    assert_eq!(ha.counters().unauthenticated, 1);
    // Nothing could sign a reply, and the source may be spoofed: silence.
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&sa(999, K1, ReplayMethod::Timestamp));
    let d = send(&mut ha, Instant::now(), from(COA_TRUSTED), &b);
    assert_eq!(d, Disposition::Dropped(DropReason::UnknownSpi));
    let (reply, actions) = drain(&mut ha);
    assert!(reply.is_none() && actions.is_empty());
    assert_eq!(ha.counters().unknown_spi, 1);
}

#[test]
fn unauthenticated_replies_are_rate_limited_per_source_and_counted() {
    let mut ha = ha();
    let now = Instant::now();
    let mut replies = 0;
    for i in 0..1000 {
        let b = Req::new(HOA1, COA_TRUSTED, ts(i)).unsigned();
        send(&mut ha, now, from(COA_TRUSTED2), &b);
        replies += usize::from(drain(&mut ha).0.is_some());
    }
    // A burst answered, then silence within the same instant.
    assert!((1..=10).contains(&replies), "{replies} replies");
    assert_eq!(ha.counters().rate_limited, 1000 - replies as u64);
    // The legitimate node is answered all along: its request is signed.
    assert_eq!(
        code_of(
            &mut ha,
            COA_TRUSTED2,
            &Req::new(HOA1, COA_TRUSTED2, ts(2000)).signed(&mn1()),
            Some(&mn1())
        ),
        ReplyCode::ACCEPTED
    );
    // Later, the flooding source is heard again.
    let later = now + Duration::from_secs(10);
    send(
        &mut ha,
        later,
        from(COA_TRUSTED2),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).unsigned(),
    );
    assert!(drain(&mut ha).0.is_some());
}

#[test]
fn no_node_can_register_or_deregister_anothers_home_address() {
    let mut ha = ha();
    let t0 = Instant::now();
    let mn1_req = Req {
        exts: vec![Extension::Nai(b"mn1@example.com".to_vec())],
        ..Req::new(HOA1, COA_TRUSTED, ts(1))
    };
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &mn1_req.signed(&mn1()), Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    let before = ha.binding(HOA1).cloned().unwrap();
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    let mn4 = sa(259, K3, ReplayMethod::Timestamp);
    let nai4 = || vec![Extension::Nai(b"mn4@example.com".to_vec())];
    // Each with its own valid key, naming mn1's home address.
    let attacks: Vec<(&str, Req, &SecurityAssociation)> = vec![
        (
            "dereg, lifetime 0, NAI",
            Req {
                lifetime: 0,
                exts: nai4(),
                ..Req::new(HOA1, COA_TRUSTED2, ts(10))
            },
            &mn4,
        ),
        (
            "dereg, coa = home, NAI",
            Req {
                exts: nai4(),
                ..Req::new(HOA1, HOA1, ts(11))
            },
            &mn4,
        ),
        (
            "reg, NAI",
            Req {
                exts: nai4(),
                ..Req::new(HOA1, COA_TRUSTED2, ts(12))
            },
            &mn4,
        ),
        (
            "dereg, lifetime 0, no NAI",
            Req {
                lifetime: 0,
                ..Req::new(HOA1, COA_TRUSTED2, ts(13))
            },
            &mn2,
        ),
        (
            "dereg, coa = home, no NAI",
            Req::new(HOA1, HOA1, ts(14)),
            &mn2,
        ),
        ("reg, no NAI", Req::new(HOA1, COA_TRUSTED2, ts(15)), &mn2),
    ];
    for (i, (what, r, key)) in attacks.iter().enumerate() {
        // RFC 5944 §3.5.1 / §3.8.2.1: the SA is not mn1's: 131, signed
        // under the sender's own SA so it can tell why.
        assert_eq!(
            code_of(&mut ha, COA_TRUSTED2, &r.signed(key), Some(key)),
            ReplyCode::HA_MN_FAILED_AUTH,
            "{what}"
        );
        assert_eq!(
            ha.binding(HOA1),
            Some(&before),
            "{what}: mn1's binding untouched"
        );
        assert_eq!(ha.counters().home_address_not_owned, i as u64 + 1, "{what}");
    }
    assert_eq!(ha.counters().deregistered, 0);
    // mn1 itself still deregisters.
    let r = Req {
        lifetime: 0,
        ..mn1_req
    };
    let r = Req { id: ts(20), ..r };
    send(&mut ha, t0, from(COA_TRUSTED), &r.signed(&mn1()));
    drain(&mut ha);
    assert!(ha.binding(HOA1).is_none());
}

#[test]
fn install_failure_is_130_and_drops_the_binding_and_a_renewal_reinstalls() {
    let mut ha = ha();
    let now = Instant::now();
    let fail = |_: &Binding| Err("injected: cannot create the tunnel");
    // A new binding whose tunnel cannot be installed: never "accepted".
    let d = send(
        &mut ha,
        now,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
    );
    assert_eq!(d, Disposition::AwaitingInstall(ReplyCode::ACCEPTED));
    let (reply, actions) = drain_installing(&mut ha, fail);
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::HA_INSUFFICIENT_RESOURCES);
    assert_eq!(rep.lifetime, 0);
    assert!(
        installed_then_torn_down(&actions),
        "what was installed of it is torn down: {actions:?}"
    );
    assert!(ha.binding(HOA1).is_none());
    assert_eq!(
        (ha.counters().accepted, ha.counters().install_failed),
        (0, 1)
    );
    // Installed the next time: accepted.
    send(
        &mut ha,
        now,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(2)).signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    assert_eq!(
        verified(&reply.unwrap().1, &mn1()).0.code,
        ReplyCode::ACCEPTED
    );
    // A renewal asks the daemon again; when that fails, the renewal is
    // denied and the binding dropped.
    send(
        &mut ha,
        now,
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(3)).signed(&mn1()),
    );
    let (reply, actions) = drain_installing(&mut ha, fail);
    assert!(matches!(&actions[0], Output::BindingUp(b) if b.care_of_address == COA_TRUSTED));
    assert_eq!(
        verified(&reply.unwrap().1, &mn1()).0.code,
        ReplyCode::HA_INSUFFICIENT_RESOURCES
    );
    assert!(ha.binding(HOA1).is_none());
    assert_eq!(ha.counters().install_failed, 2);
}

#[test]
fn another_nodes_spi_cannot_register_this_home_address() {
    let mut ha = ha();
    // MN2's valid SA, but the request claims MN1's home address.
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn2);
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn2)),
        ReplyCode::HA_MN_FAILED_AUTH
    );
    assert!(ha.binding(HOA1).is_none());
}

#[test]
fn replayed_and_stale_identification_are_133_with_ha_time() {
    let mut ha = ha();
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    // The very same datagram again.
    send(&mut ha, Instant::now(), from(COA_TRUSTED), &b);
    let (reply, actions) = drain(&mut ha);
    assert!(actions.is_empty());
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::HA_IDENTIFICATION_MISMATCH);
    // RFC 5944 §5.7.1: low-order bits echoed, high-order from the HA's clock.
    assert_eq!(rep.identification as u32, ts(1) as u32);
    assert_eq!((rep.identification >> 32) as u32, wall().seconds());
    // A timestamp 100 s in the past.
    let old = NtpTimestamp::new(3_900_000_000 - 100, 5).0;
    let b = Req::new(HOA1, COA_TRUSTED, old).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
    assert_eq!(ha.counters().replayed, 2);
    assert_eq!(ha.counters().denied(133), 2);
}

#[test]
fn nonce_replay_method_hands_out_and_checks_nonces() {
    let mut ha = ha();
    let mn6 = sa(261, K6, ReplayMethod::Nonce);
    let hoa6 = Ipv4Addr::new(10, 1, 0, 12);
    // First contact: the MN cannot know the HA's nonce: 133 with one.
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &Req::new(hoa6, COA_TRUSTED, 0x0000_0000_1111_1111).signed(&mn6),
    );
    let (reply, _) = drain(&mut ha);
    let (rep, _) = verified(&reply.unwrap().1, &mn6);
    assert_eq!(rep.code, ReplyCode::HA_IDENTIFICATION_MISMATCH);
    assert_eq!(rep.identification as u32, 0x1111_1111);
    let nonce = rep.identification >> 32;
    let id = (nonce << 32) | 0x2222_2222;
    let b = Req::new(hoa6, COA_TRUSTED, id).signed(&mn6);
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn6)),
        ReplyCode::ACCEPTED
    );
    // The same nonce again is a replay.
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn6)),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
}

#[test]
fn unknown_non_skippable_extension_is_134_authenticated() {
    let mut ha = ha();
    // The codec cannot emit an unknown non-skippable type; splice it in.
    let mut b = Req::new(HOA1, COA_TRUSTED, ts(1)).unsigned();
    b.extend_from_slice(&[99, 3, 1, 2, 3]);
    append_auth(&mut b, AuthKind::MnHa, &mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_POORLY_FORMED_REQUEST
    );
    // An unknown skippable one is ignored.
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(2));
    r.exts.push(Extension::Unknown {
        type_: 200,
        data: vec![9],
    });
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn1()), Some(&mn1())),
        ReplyCode::ACCEPTED
    );
}

#[test]
fn two_mn_ha_extensions_are_134() {
    let mut ha = ha();
    let mut b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    append_auth(&mut b, AuthKind::MnHa, &mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_POORLY_FORMED_REQUEST
    );
}

#[test]
fn wrong_home_agent_is_136_with_our_address() {
    let mut ha = ha();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.ha = Ipv4Addr::new(10, 1, 0, 255);
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &r.signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::HA_UNKNOWN_HOME_AGENT);
    assert_eq!(rep.home_agent, HA);
}

#[test]
fn reverse_tunnel_policy_137_138_and_encapsulation_139() {
    let mut ha = ha();
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    let mut r = Req::new(Ipv4Addr::new(10, 1, 0, 11), COA_TRUSTED, ts(1));
    r.flags = Flags::T;
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn2), Some(&mn2)),
        ReplyCode::HA_REVERSE_TUNNEL_UNAVAILABLE
    );

    let mn3 = sa(258, K3, ReplayMethod::Timestamp);
    let mut r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
    r.exts.push(Extension::Nai(b"mn3@example.com".to_vec()));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn3), Some(&mn3)),
        ReplyCode::HA_REVERSE_TUNNEL_MANDATORY
    );

    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.flags = Flags::G;
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn1()), Some(&mn1())),
        ReplyCode::HA_ENCAPSULATION_UNAVAILABLE
    );
    assert_eq!(ha.counters().denied(137), 1);
    assert_eq!(ha.counters().denied(138), 1);
    assert_eq!(ha.counters().denied(139), 1);
}

#[test]
fn simultaneous_bindings_are_declined_with_code_1() {
    let mut ha = ha();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.flags = Flags::S;
    assert_eq!(
        code_of_accepting(&mut ha, &r),
        ReplyCode::ACCEPTED_NO_SIMULTANEOUS_BINDINGS
    );
    assert_eq!(ha.binding(HOA1).unwrap().care_of_address, COA_TRUSTED);
}

fn code_of_accepting(ha: &mut HomeAgent, r: &Req) -> ReplyCode {
    send(ha, Instant::now(), from(r.coa), &r.signed(&mn1()));
    let (reply, _) = drain(ha);
    verified(&reply.unwrap().1, &mn1()).0.code
}

#[test]
fn nai_with_zero_home_address_gets_one_from_the_pool() {
    let mut ha = ha();
    let mn4 = sa(259, K3, ReplayMethod::Timestamp);
    let mut r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
    r.exts.push(Extension::Nai(b"mn4@example.com".to_vec()));
    send(&mut ha, Instant::now(), from(COA_TRUSTED), &r.signed(&mn4));
    let (reply, actions) = drain(&mut ha);
    let (rep, covered) = verified(&reply.unwrap().1, &mn4);
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    let pool_first = Ipv4Addr::new(10, 1, 0, 100);
    assert_eq!(rep.home_address, pool_first);
    assert!(covered.contains(&Extension::Nai(b"mn4@example.com".to_vec())));
    assert!(matches!(&actions[..], [Output::BindingUp(b)] if b.home_address == pool_first));
    // Asking again keeps the same address; registering it by address works.
    let r2 = Req {
        id: ts(2),
        ..Req::new(pool_first, COA_TRUSTED2, 0)
    };
    let mut r2 = r2;
    r2.exts.push(Extension::Nai(b"mn4@example.com".to_vec()));
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED2),
        &r2.signed(&mn4),
    );
    let (reply, _) = drain(&mut ha);
    assert_eq!(
        verified(&reply.unwrap().1, &mn4).0.code,
        ReplyCode::ACCEPTED
    );
    // Another address than the assigned one: not this node's (131).
    let mut r3 = Req::new(Ipv4Addr::new(10, 1, 0, 101), COA_TRUSTED, ts(3));
    r3.exts.push(Extension::Nai(b"mn4@example.com".to_vec()));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r3.signed(&mn4), Some(&mn4)),
        ReplyCode::HA_MN_FAILED_AUTH
    );
}

#[test]
fn exhausted_pool_is_130() {
    let mut ha = ha();
    let mut codes = Vec::new();
    for (spi, nai) in [(259, "mn4@example.com"), (260, "mn5@example.com")] {
        let s = sa(spi, K3, ReplayMethod::Timestamp);
        let mut r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
        r.exts.push(Extension::Nai(nai.as_bytes().to_vec()));
        codes.push(code_of(&mut ha, COA_TRUSTED, &r.signed(&s), Some(&s)));
    }
    // Two addresses in the pool, both taken by mn4 and mn5: mn3 gets none.
    assert_eq!(codes, vec![ReplyCode::ACCEPTED, ReplyCode::ACCEPTED]);
    let mn3 = sa(258, K3, ReplayMethod::Timestamp);
    let mut r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
    r.flags = Flags::T;
    r.exts.push(Extension::Nai(b"mn3@example.com".to_vec()));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn3), Some(&mn3)),
        ReplyCode::HA_INSUFFICIENT_RESOURCES
    );
}

#[test]
fn zero_home_address_without_nai_is_131() {
    let mut ha = ha();
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    // No NAI and HoA 0: the SA cannot even be tied to a node: 131.
    let r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn2), Some(&mn2)),
        ReplyCode::HA_MN_FAILED_AUTH
    );
}

/// Whether a reply carries TNC, and whether the authenticator covers it.
fn tnc_of(bytes: &[u8], sa: Option<&SecurityAssociation>) -> (bool, bool) {
    let rep = ReplyRepr::parse_bytes(bytes).unwrap();
    let has = rep
        .extensions
        .contains(&Extension::TrustedNetworksConfigured);
    let covered = sa.is_some_and(|sa| {
        verified(bytes, sa)
            .1
            .contains(&Extension::TrustedNetworksConfigured)
    });
    (has, covered)
}

// RFC 5265 §4.3, third bullet: TNC in a reply to a request coming from a
// trusted address. The request need not carry TNC itself, and the rule
// looks at the source address, not at the claimed care-of address.
#[test]
fn tnc_in_replies_to_requests_from_a_trusted_source_address() {
    let mut ha = ha();
    // No TNC in the request; trusted source: TNC, covered by the MN-HA
    // authenticator.
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    let bytes = reply.unwrap().1;
    assert_eq!(tnc_of(&bytes, Some(&mn1())), (true, true));
    // With TNC in the request: same answer (the request's TNC is a
    // skippable extension the HA does not need).
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(2));
    r.exts.push(Extension::TrustedNetworksConfigured);
    assert_eq!(
        send(
            &mut ha,
            Instant::now(),
            from(COA_TRUSTED),
            &r.signed(&mn1())
        ),
        Disposition::AwaitingInstall(ReplyCode::ACCEPTED)
    );
    let (reply, _) = drain(&mut ha);
    assert_eq!(tnc_of(&reply.unwrap().1, Some(&mn1())), (true, true));
    // Trusted source, care-of address outside the trusted networks (an
    // internal NAT): the source decides, TNC.
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED2),
        &Req::new(HOA1, Ipv4Addr::new(192, 168, 7, 7), ts(3)).signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    assert_eq!(tnc_of(&reply.unwrap().1, Some(&mn1())), (true, true));
    // "a registration reply": a denial to a trusted source carries it too
    // (the MN only acts on an accepted, authenticated one).
    let replayed = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    send(&mut ha, Instant::now(), from(COA_TRUSTED), &replayed);
    let (reply, _) = drain(&mut ha);
    let bytes = reply.unwrap().1;
    assert_eq!(
        ReplyRepr::parse_bytes(&bytes).unwrap().code,
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
    assert_eq!(tnc_of(&bytes, Some(&mn1())), (true, true));
    assert_eq!(ha.counters().tnc_replies, 4);
}

// RFC 5265 §4.3, second bullet: a request from a source on no trusted
// network is dropped silently, whatever it claims and however well it is
// signed; so it never gets a reply, let alone one with TNC. This is what
// keeps an MN outside in mode 'mc' when a firewall lets its probe through
// (RFC 5265 §3.6.1).
#[test]
fn requests_from_untrusted_sources_are_dropped_silently_and_counted() {
    let mut ha = ha();
    for (i, (coa, id)) in [(COA_OUTSIDE, ts(1)), (COA_TRUSTED, ts(2))]
        .into_iter()
        .enumerate()
    {
        let d = send(
            &mut ha,
            Instant::now(),
            from(COA_OUTSIDE),
            &Req::new(HOA1, coa, id).signed(&mn1()),
        );
        assert_eq!(d, Disposition::Dropped(DropReason::UntrustedSource), "{i}");
        let (reply, actions) = drain(&mut ha);
        assert!(reply.is_none() && actions.is_empty(), "{i}");
    }
    // Deregistrations too: an outsider cannot tear a binding down.
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(3)).signed(&mn1()),
    );
    drain(&mut ha);
    let mut dereg = Req::new(HOA1, COA_TRUSTED, ts(4));
    dereg.lifetime = 0;
    assert_eq!(
        send(
            &mut ha,
            Instant::now(),
            from(COA_OUTSIDE),
            &dereg.signed(&mn1())
        ),
        Disposition::Dropped(DropReason::UntrustedSource)
    );
    assert!(ha.binding(HOA1).is_some());
    let c = ha.counters();
    assert_eq!((c.dropped_untrusted_source, c.requests), (3, 1));
    assert_eq!(c.unauthenticated, 0, "no MAC computed for outsiders");
}

// Without trusted networks the HA is a plain RFC 5944 home agent: every
// source is served and no reply claims Trusted Networks Configured.
#[test]
fn without_trusted_networks_every_source_is_served_without_tnc() {
    let text = r#"
home_agent = "10.1.0.1"
[[home_network]]
prefix = "10.1.0.0/24"
[[mobile_node]]
home_address = "10.1.0.10"
spi = 256
key = "00112233445566778899aabbccddeeff"
"#;
    let cfg = HaConfig::from_source(&Source::from_str("plain.conf", text)).unwrap();
    let mut ha = HomeAgent::new(cfg, Box::new(StdRng::seed_from_u64(1))).unwrap();
    for (src, id) in [(COA_OUTSIDE, ts(1)), (COA_TRUSTED, ts(2))] {
        assert_eq!(
            send(
                &mut ha,
                Instant::now(),
                from(src),
                &Req::new(HOA1, src, id).signed(&mn1())
            ),
            Disposition::AwaitingInstall(ReplyCode::ACCEPTED)
        );
        let (reply, _) = drain(&mut ha);
        assert_eq!(tnc_of(&reply.unwrap().1, Some(&mn1())), (false, false));
    }
}

fn udp_req(force: bool) -> Extension {
    Extension::UdpTunnelRequest(UdpTunnelRequest {
        sub_type: 0,
        force,
        registration_through_fa: false,
        encapsulation: 4,
    })
}

#[test]
fn udp_tunnel_request_behind_nat_is_granted() {
    let mut ha = ha();
    let private_coa = Ipv4Addr::new(192, 168, 1, 20);
    // A NAT inside the enterprise (e.g. a VPN gateway that NATs tunnel
    // addresses, RFC 5265 §4.3): its address is on a trusted network.
    let nat = SocketAddrV4::new(Ipv4Addr::new(10, 10, 200, 1), 40_000);
    let mut r = Req::new(HOA1, private_coa, ts(1));
    r.exts.push(udp_req(false));
    send(&mut ha, Instant::now(), nat, &r.signed(&mn1()));
    let (reply, actions) = drain(&mut ha);
    let (dst, bytes) = reply.unwrap();
    assert_eq!(dst, nat, "reply goes back through the NAT mapping");
    let (rep, covered) = verified(&bytes, &mn1());
    assert_eq!(rep.code, ReplyCode::ACCEPTED);
    assert!(covered.iter().any(|e| matches!(
        e,
        Extension::UdpTunnelReply(UdpTunnelReply {
            reply_code: 0,
            keepalive_interval: 110,
            ..
        })
    )));
    match &actions[..] {
        [Output::BindingUp(b)] => {
            assert_eq!(b.tunnel, TunnelMode::Udp);
            assert_eq!(b.source, nat);
        }
        other => panic!("{other:?}"),
    }
    // Tunnel data from the NAT mapping is the MN's; from elsewhere, dropped.
    let data = [4u8, 4, 0, 0, 0x45, 0, 0, 20];
    assert_eq!(
        ha.handle_datagram(Instant::now(), wall(), nat, &data),
        Disposition::TunnelData {
            home_address: HOA1,
            offset: 4
        }
    );
    let other = SocketAddrV4::new(Ipv4Addr::new(10, 10, 200, 1), 40_001);
    assert_eq!(
        ha.handle_datagram(Instant::now(), wall(), other, &data),
        Disposition::Dropped(DropReason::UnknownTunnelPeer)
    );
    assert_eq!(ha.counters().tunnel_data_dropped, 1);
}

#[test]
fn udp_tunnel_request_without_nat_is_declined_unless_forced() {
    let mut ha = ha();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.exts.push(udp_req(false));
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &r.signed(&mn1()),
    );
    let (reply, _) = drain(&mut ha);
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert!(rep.extensions.iter().any(|e| matches!(
        e,
        Extension::UdpTunnelReply(UdpTunnelReply { reply_code: 64, .. })
    )));
    assert_eq!(ha.binding(HOA1).unwrap().tunnel, TunnelMode::Ipip);
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(2));
    r.exts.push(udp_req(true));
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &r.signed(&mn1()),
    );
    drain(&mut ha);
    assert_eq!(ha.binding(HOA1).unwrap().tunnel, TunnelMode::Udp);
}

#[test]
fn forced_udp_when_disabled_is_142() {
    let mut ha = ha_with("udp_tunnelling = false");
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.exts.push(udp_req(true));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn1()), Some(&mn1())),
        ReplyCode::HA_UDP_ENCAPSULATION_UNAVAILABLE
    );
}

#[test]
fn malformed_datagrams_are_dropped_counted_and_the_ha_keeps_serving() {
    let mut ha = ha();
    let good = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        vec![1],
        good[..23].to_vec(),
        // Extension length running past the datagram.
        {
            let mut b = good.clone();
            let n = b.len();
            b[24 + 1] = 200;
            b.truncate(n);
            b
        },
        // Truncated authenticator.
        good[..good.len() - 3].to_vec(),
        vec![3; 40],
        vec![0xff; 100],
    ];
    for (i, c) in cases.iter().enumerate() {
        let d = send(&mut ha, Instant::now(), from(COA_TRUSTED), c);
        assert!(matches!(d, Disposition::Dropped(_)), "case {i}: {d:?}");
        let (reply, actions) = drain(&mut ha);
        assert!(reply.is_none() && actions.is_empty(), "case {i}");
    }
    assert_eq!(ha.counters().dropped_malformed, cases.len() as u64);
    // Another mobile node is still served.
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    let b = Req::new(Ipv4Addr::new(10, 1, 0, 11), COA_TRUSTED, ts(1)).signed(&mn2);
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn2)),
        ReplyCode::ACCEPTED
    );
}

#[test]
fn reload_keeps_bindings_of_unchanged_nodes_and_drops_removed_ones() {
    let mut ha = ha();
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1()),
    );
    drain(&mut ha);
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    send(
        &mut ha,
        Instant::now(),
        from(COA_TRUSTED),
        &Req::new(Ipv4Addr::new(10, 1, 0, 11), COA_TRUSTED, ts(1)).signed(&mn2),
    );
    drain(&mut ha);
    ha.take_changes();
    // New config without MN2 (its key changes to something else).
    let mut cfg = config("");
    cfg.mobile_nodes.retain(|m| m.spi != 257);
    ha.reload(cfg).unwrap();
    let (_, actions) = drain(&mut ha);
    assert!(
        matches!(&actions[..], [Output::BindingDown { reason: DownReason::Unconfigured, binding }] if binding.spi == 257)
    );
    assert!(ha.binding(HOA1).is_some());
    // The daemon's record hears of the removed binding alone, not of
    // everything (issue 14 §4: no O(n) snapshot at a reload).
    assert_eq!(
        ha.take_changes(),
        Changes {
            all: false,
            nodes: vec![],
            bindings: vec![Ipv4Addr::new(10, 1, 0, 11)],
        }
    );
    // MN2 back: a node new to the configuration, saved with its fresh
    // replay state.
    ha.reload(config("")).unwrap();
    assert_eq!(
        ha.take_changes(),
        Changes {
            all: false,
            nodes: vec![257],
            bindings: vec![],
        }
    );
    // Replay state survived: the old request is still a replay.
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
}

#[test]
fn a_reload_that_fails_leaves_the_nodes_served_as_before() {
    let mut ha = ha();
    let first = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &first, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    // SPIs 0-255 are reserved (RFC 5944 §3.5.1): no association is built.
    let mut cfg = config("");
    cfg.mobile_nodes[0].spi = 5;
    assert!(ha.reload(cfg).is_err());
    // The node is still known, its replay state kept.
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &first, Some(&mn1())),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
    let next = Req::new(HOA1, COA_TRUSTED, ts(2)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &next, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), first in 0u8..6) {
        let mut ha = ha();
        let mut data = data;
        if let Some(b) = data.first_mut() { *b = first; }
        let _ = ha.handle_datagram(Instant::now(), wall(), from(COA_TRUSTED), &data);
        while ha.poll_output().is_some() {}
        prop_assert!(ha.binding(HOA1).is_none());
    }

    #[test]
    fn flipping_any_bit_of_a_signed_request_never_registers(bit in 0usize..(8 * 46)) {
        let mut ha = ha();
        let mut b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
        prop_assume!(bit / 8 < b.len());
        b[bit / 8] ^= 1 << (bit % 8);
        let _ = ha.handle_datagram(Instant::now(), wall(), from(COA_TRUSTED), &b);
        prop_assert_eq!(ha.counters().accepted, 0);
        prop_assert!(ha.binding(HOA1).is_none());
    }
}

#[test]
fn shipped_example_config_loads() {
    let text = include_str!("../packaging/mip4-ha.conf.example").replace(
        "key_file = \"/etc/mip4/keys/alice.key\"",
        "key = \"00112233445566778899aabbccddeeff\"",
    );
    let c = HaConfig::from_source(&Source::from_str("mip4-ha.conf.example", text)).unwrap();
    assert_eq!(c.mobile_nodes.len(), 2);
}

/// Issue 13: a restarted home agent takes up its predecessor's binding
/// cache. `ha` exports; a new instance (another monotonic clock) restores
/// `after` seconds of wall-clock time later.
fn restarted(ha: &HomeAgent, now: Instant, after: u64) -> (HomeAgent, mip4::ha::Restored) {
    let wall0 = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let saved = ha.export(now, wall0);
    // Through the text the daemon stores: what was saved is what comes back.
    let text = serde_json::to_string(&saved).unwrap();
    let saved: mip4::ha::SavedCache = serde_json::from_str(&text).unwrap();
    let mut next = ha_with("");
    let later = now + Duration::from_secs(1);
    let r = next.restore(saved, later, wall0 + Duration::from_secs(after));
    (next, r)
}

#[test]
fn a_restarted_ha_restores_its_bindings_and_installs_them_before_any_reply() {
    let mut ha = ha();
    let now = Instant::now();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.flags = Flags::T;
    r.exts.push(Extension::Nai(b"mn1@example.com".to_vec()));
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &r.signed(&mn1()), Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    assert!(ha.take_changed(), "an accepted registration is to be saved");
    assert!(!ha.take_changed());
    let (mut next, restored) = restarted(&ha, now, 20);
    assert_eq!(restored.bindings, vec![HOA1]);
    // The binding is installed again, with no reply to anyone.
    let (reply, actions) = drain(&mut next);
    assert!(reply.is_none());
    match &actions[..] {
        [Output::BindingUp(b)] => {
            assert_eq!(
                (b.home_address, b.care_of_address, b.reverse_tunnel),
                (HOA1, COA_TRUSTED, true)
            );
            assert_eq!(b.nai.as_deref(), Some(&b"mn1@example.com"[..]));
        }
        other => panic!("expected one BindingUp, got {other:?}"),
    }
    // 20 s of the 120 s lifetime went by while the daemon was down.
    let info = &next.bindings(now + Duration::from_secs(1))[0];
    assert_eq!((info.remaining, info.identification), (100, r.id));
    // RFC 5944 §5.7: the request accepted before the restart is still a
    // replay after it.
    send(&mut next, now, from(COA_TRUSTED), &r.signed(&mn1()));
    let (reply, actions) = drain(&mut next);
    assert!(actions.is_empty(), "a replay changes no binding");
    let (rep, _) = verified(&reply.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::HA_IDENTIFICATION_MISMATCH);
    assert_eq!(next.binding(HOA1).unwrap().identification, r.id);
    // A fresh request renews it as before.
    let r2 = Req::new(HOA1, COA_TRUSTED2, ts(2)).signed(&mn1());
    assert_eq!(
        code_of(&mut next, COA_TRUSTED2, &r2, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
}

#[test]
fn restore_drops_expired_unconfigured_and_uninstallable_bindings() {
    let mut ha = ha();
    let now = Instant::now();
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    // Down longer than the lifetime: gone, but the replay state stays.
    let (mut next, restored) = restarted(&ha, now, 121);
    assert_eq!(
        (restored.bindings.len(), restored.expired.clone()),
        (0, vec![HOA1])
    );
    assert!(restored.replay_states >= 1);
    assert!(drain(&mut next).1.is_empty());
    send(&mut next, now, from(COA_TRUSTED), &b);
    let (rep, _) = verified(&drain(&mut next).0.unwrap().1, &mn1());
    assert_eq!(rep.code, ReplyCode::HA_IDENTIFICATION_MISMATCH);

    // A node the new configuration no longer has: refused.
    let saved = ha.export(
        now,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    let text = format!(
        r#"
home_agent = "10.1.0.1"
[[home_network]]
prefix = "10.1.0.0/24"
[[mobile_node]]
home_address = "10.1.0.11"
spi = 257
key = "{K2}"
"#
    );
    let cfg = HaConfig::from_source(&Source::from_str("other.conf", text)).unwrap();
    let mut other = HomeAgent::new(cfg, Box::new(StdRng::seed_from_u64(1))).unwrap();
    let r = other.restore(
        saved.clone(),
        now,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
    );
    assert_eq!(r.refused.len(), 1, "{r:?}");
    assert!(other.bindings(now).is_empty());

    // Restored, but the daemon cannot install it: dropped, counted.
    let mut next = ha_with("");
    let r = next.restore(
        saved,
        now,
        std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_001),
    );
    assert_eq!(r.bindings, vec![HOA1]);
    let (reply, actions) = drain_installing(&mut next, |_| Err("no such link"));
    assert!(reply.is_none());
    assert!(installed_then_torn_down(&actions), "{actions:?}");
    assert!(next.bindings(now).is_empty());
    assert_eq!(next.counters().install_failed, 1);
}

#[test]
fn a_restarted_ha_keeps_the_nonce_it_handed_out_and_the_pool_address() {
    let mut ha = ha();
    let now = Instant::now();
    let mn6 = sa(261, K6, ReplayMethod::Nonce);
    let hoa6 = Ipv4Addr::new(10, 1, 0, 12);
    send(
        &mut ha,
        now,
        from(COA_TRUSTED),
        &Req::new(hoa6, COA_TRUSTED, 0x1111_1111).signed(&mn6),
    );
    let (rep, _) = verified(&drain(&mut ha).0.unwrap().1, &mn6);
    let nonce = rep.identification >> 32;
    let mn4 = sa(259, K3, ReplayMethod::Timestamp);
    let mut r = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED, ts(1));
    r.exts.push(Extension::Nai(b"mn4@example.com".to_vec()));
    send(&mut ha, now, from(COA_TRUSTED), &r.signed(&mn4));
    let pool_first = Ipv4Addr::new(10, 1, 0, 100);
    assert_eq!(
        verified(&drain(&mut ha).0.unwrap().1, &mn4).0.home_address,
        pool_first
    );

    let (mut next, restored) = restarted(&ha, now, 5);
    assert_eq!(restored.bindings, vec![pool_first]);
    drain(&mut next);
    // RFC 5944 §5.7.2: the nonce handed out before the restart is the one
    // the next request must carry.
    let b = Req::new(hoa6, COA_TRUSTED, (nonce << 32) | 0x2222_2222).signed(&mn6);
    assert_eq!(
        code_of(&mut next, COA_TRUSTED, &b, Some(&mn6)),
        ReplyCode::ACCEPTED
    );
    // RFC 2794: the pool address stays the node's.
    let mut r2 = Req::new(Ipv4Addr::UNSPECIFIED, COA_TRUSTED2, ts(2));
    r2.exts.push(Extension::Nai(b"mn4@example.com".to_vec()));
    send(&mut next, now, from(COA_TRUSTED2), &r2.signed(&mn4));
    let (rep, _) = verified(&drain(&mut next).0.unwrap().1, &mn4);
    assert_eq!(
        (rep.code, rep.home_address),
        (ReplyCode::ACCEPTED, pool_first)
    );
}

/// Issue 13 item 10: a reload applies changed replay settings (they were
/// ignored), and keeps the replay state when the method stays.
#[test]
fn reload_applies_the_replay_tolerance_and_keeps_the_replay_state() {
    let mut ha = ha();
    let b = Req::new(HOA1, COA_TRUSTED, ts(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::ACCEPTED
    );
    // 60 s ahead of the HA's clock: outside the default 7 s window.
    let ahead = |n| NtpTimestamp::new(3_900_000_060, n).0;
    let early = Req::new(HOA1, COA_TRUSTED, ahead(1)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &early, Some(&mn1())),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
    ha.reload(config("replay_tolerance = 120")).unwrap();
    drain(&mut ha);
    let early = Req::new(HOA1, COA_TRUSTED, ahead(2)).signed(&mn1());
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &early, Some(&mn1())),
        ReplyCode::ACCEPTED,
        "the new tolerance applies"
    );
    // The state stayed: what was accepted before the reload is old.
    assert_eq!(
        code_of(&mut ha, COA_TRUSTED, &b, Some(&mn1())),
        ReplyCode::HA_IDENTIFICATION_MISMATCH
    );
}

// ---- DSMIPv4 (RFC 5454) ----

const MN1_PREFIX: &str = "2001:db8:10::/64";

fn prefix_request(prefix: &str, len: u8) -> Extension {
    Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: len,
        prefix: prefix.parse().unwrap(),
    })
}

/// Registers `r` signed by `sa`; returns the (authenticated) IPv6 Prefix
/// Reply's code, length and prefix, and the binding as installed.
fn register_v6(
    ha: &mut HomeAgent,
    r: &Req,
    sa: &SecurityAssociation,
) -> (Option<(u8, u8, std::net::Ipv6Addr)>, Binding) {
    let d = send(ha, Instant::now(), from(r.coa), &r.signed(sa));
    assert_eq!(d, Disposition::AwaitingInstall(ReplyCode::ACCEPTED));
    let (reply, actions) = drain(ha);
    let (rep, covered) = verified(&reply.unwrap().1, sa);
    assert_eq!(rep.code, ReplyCode::ACCEPTED, "the IPv4 binding stands");
    let prefix_reply = covered.iter().find_map(|e| match e {
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
            code,
            prefix_length,
            prefix,
        }) => Some((*code, *prefix_length, *prefix)),
        _ => None,
    });
    let [Output::BindingUp(b)] = &actions[..] else {
        panic!("expected one BindingUp, got {actions:?}");
    };
    (prefix_reply, b.clone())
}

/// RFC 5454 §2.1, §2.2: an all-zero Home Network Prefix asks the HA to
/// assign one; the reply (under the MN-HA authenticator) gives the node's
/// prefix with code 0 (IPv6 to the home address) without the Tunneling
/// Mode extension, code 1 (to the care-of address) with it (§2.3).
#[test]
fn dsmipv4_prefix_assigned_and_tunnel_mode_negotiated() {
    let want: ipnet::Ipv6Net = MN1_PREFIX.parse().unwrap();
    for (tunneling_mode, code, to) in [
        (false, 0, Ipv6TunnelTo::HomeAddress),
        (true, 1, Ipv6TunnelTo::CareOf),
    ] {
        let mut ha = ha();
        let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
        r.flags = Flags::T;
        r.exts.push(prefix_request("::", 0));
        if tunneling_mode {
            r.exts.push(Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode));
        }
        let (reply, b) = register_v6(&mut ha, &r, &mn1());
        assert_eq!(reply, Some((code, 64, want.network())));
        assert_eq!(
            b.ipv6,
            Some(Ipv6Binding {
                prefix: want,
                tunnel_to: to
            })
        );
        assert_eq!(ha.bindings(Instant::now())[0].ipv6, b.ipv6);
        assert_eq!(ha.counters().ipv6_prefixes_accepted, 1);
    }
}

/// RFC 5454 §2.2: a prefix the node may not have is refused in the IPv6
/// Prefix Reply (9: not its prefix, or none configured for it; 8: a
/// prefix length of 0), and the IPv4 registration is accepted all the
/// same, without IPv6.
#[test]
fn dsmipv4_refusals_keep_the_ipv4_binding() {
    let mn2 = sa(257, K2, ReplayMethod::Timestamp);
    let hoa2 = Ipv4Addr::new(10, 1, 0, 11);
    let cases = [
        (HOA1, mn1(), prefix_request("2001:db8:99::", 64), 9),
        (HOA1, mn1(), prefix_request("2001:db8:10::", 48), 9),
        (HOA1, mn1(), prefix_request("2001:db8:10::", 0), 8),
        (hoa2, mn2, prefix_request("::", 0), 9),
    ];
    for (i, (home, sa, ext, code)) in cases.into_iter().enumerate() {
        let mut ha = ha();
        let mut r = Req::new(home, COA_TRUSTED, ts(1));
        r.exts.push(ext.clone());
        let (reply, b) = register_v6(&mut ha, &r, &sa);
        let Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
            prefix_length,
            prefix,
        }) = ext
        else {
            unreachable!()
        };
        assert_eq!(reply, Some((code, prefix_length, prefix)), "case {i}");
        assert_eq!(b.ipv6, None, "case {i}");
        assert_eq!(ha.counters().ipv6_prefixes_refused, 1, "case {i}");
    }
}

/// RFC 5454 §3.8: a renewal without the IPv6 Prefix Request deregisters
/// the prefix (the daemon is asked to re-install the binding without it)
/// and its reply carries no IPv6 Prefix Reply; lifetime 0 ends the
/// binding with its prefix. A request without DSMIPv4 gets no IPv6
/// Prefix Reply at all.
#[test]
fn dsmipv4_prefix_deregistration() {
    let mut ha = ha();
    let mut r = Req::new(HOA1, COA_TRUSTED, ts(1));
    r.exts.push(prefix_request("::", 0));
    let (_, b) = register_v6(&mut ha, &r, &mn1());
    assert!(b.ipv6.is_some());

    let renewal = Req::new(HOA1, COA_TRUSTED, ts(2));
    let (reply, b) = register_v6(&mut ha, &renewal, &mn1());
    assert_eq!((reply, b.ipv6), (None, None));
    assert_eq!(ha.binding(HOA1).unwrap().ipv6, None);

    let mut again = Req::new(HOA1, COA_TRUSTED, ts(3));
    again.exts.push(prefix_request("::", 0));
    register_v6(&mut ha, &again, &mn1());
    let mut dereg = Req::new(HOA1, COA_TRUSTED, ts(4));
    dereg.lifetime = 0;
    let bytes = dereg.signed(&mn1());
    send(&mut ha, Instant::now(), from(COA_TRUSTED), &bytes);
    let (_, actions) = drain(&mut ha);
    assert!(
        matches!(&actions[..], [Output::BindingDown { binding, .. }] if binding.ipv6.is_some()),
        "the binding going down carries its prefix for the data plane: {actions:?}"
    );
}

/// Prefix overlap between nodes is a configuration error naming the
/// file, line and key; so is a prefix that is no unicast network.
#[test]
fn dsmipv4_overlapping_or_bad_prefixes_are_refused_at_load() {
    let base = |p1: &str, p2: &str| {
        format!(
            r#"
home_agent = "10.1.0.1"
[[home_network]]
prefix = "10.1.0.0/24"
[[mobile_node]]
home_address = "10.1.0.10"
spi = 256
key = "{K1}"
ipv6_prefix = "{p1}"
[[mobile_node]]
home_address = "10.1.0.11"
spi = 257
key = "{K2}"
ipv6_prefix = "{p2}"
"#
        )
    };
    let load = |t: String| HaConfig::from_source(&Source::from_str("ha.conf", t));
    assert!(load(base("2001:db8:1::/64", "2001:db8:2::/64")).is_ok());
    for (p1, p2) in [
        ("2001:db8::/48", "2001:db8:0:5::/64"),
        ("2001:db8:1::/64", "fe80::/64"),
        ("2001:db8:1::/64", "2001:db8:2::1/64"),
    ] {
        let e = load(base(p1, p2)).unwrap_err().to_string();
        assert!(
            e.starts_with("ha.conf:14: key `mobile_node.ipv6_prefix`"),
            "{p2}: {e}"
        );
    }
}
