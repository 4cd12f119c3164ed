//! Every denial code class, and the codes the client answers by
//! correcting its request: 133 (clock skew, RFC 5944 §5.7), 136 (unknown
//! home agent, §3.6.1.2), 69 (lifetime too long, §3.4), 75/138 (reverse
//! tunnel mandatory, RFC 3024 §6).

mod registration_support;

use std::time::Duration;

use mip4::auth::{self, AuthKind, SecurityAssociation};
use mip4::mn::{Agent, ClientEvent, Config, Purpose};
use mip4::replay::ReplayMethod;
use mip4::wire::{Flags, ReplyCode, ReplyRepr};
use registration_support::*;

fn via_fa(mn_fa: Option<SecurityAssociation>) -> Config {
    let mut cfg = config();
    cfg.care_of_address = FA;
    cfg.foreign_agent = Some(FA);
    cfg.mn_fa_sa = mn_fa;
    cfg
}

fn fa_sa() -> SecurityAssociation {
    SecurityAssociation::hmac_md5(0x3000, b"mn-fa key").unwrap()
}

/// A foreign agent's reply (FAs do not hold the MN-HA key).
fn fa_reply(
    req: &[u8],
    code: ReplyCode,
    lifetime: u16,
    sign: Option<&SecurityAssociation>,
) -> Vec<u8> {
    let req = FakeHa::new().parse(req);
    let mut msg = ReplyRepr {
        code,
        lifetime,
        home_address: req.home_address,
        home_agent: req.home_agent,
        identification: req.identification,
        extensions: vec![],
    }
    .to_bytes();
    if let Some(sa) = sign {
        auth::append_auth(&mut msg, AuthKind::MnFa, sa);
    }
    msg
}

#[test]
fn every_home_agent_denial_ends_the_attempt_with_its_code() {
    let corrected = [
        ReplyCode::HA_IDENTIFICATION_MISMATCH,
        ReplyCode::HA_REVERSE_TUNNEL_MANDATORY,
    ];
    let mut seen = 0;
    for &code in mip4::wire::code::ALL_NAMED
        .iter()
        .filter(|c| c.is_ha_denial())
    {
        if corrected.contains(&code) {
            continue;
        }
        let mut mn = Mn::new(config());
        let ha = FakeHa::new(); // answers with its own address: 136 cannot redirect
        mn.client.register(mn.now);
        let t = mn.one_transmit();
        let req = ha.parse(&t.payload);
        mn.deliver(&ha.reply_to(&req, code, 0, req.identification));
        assert_eq!(
            mn.events(),
            vec![ClientEvent::Denied {
                code,
                by: Agent::HomeAgent,
                purpose: Purpose::Register,
                authenticated: true
            }],
            "code {code}"
        );
        assert!(mn.client.binding().is_none());
        assert!(!mn.client.is_pending(), "code {code}: no retry");
        assert!(mn.transmits().is_empty(), "code {code}: nothing sent");
        assert!(!code.name().is_empty());
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} HA denial codes named");
}

#[test]
fn every_foreign_agent_denial_ends_the_attempt_unauthenticated_without_mn_fa_sa() {
    // 69 and 75 too: only an authenticated denial is corrected.
    let mut seen = 0;
    for &code in mip4::wire::code::ALL_NAMED
        .iter()
        .filter(|c| c.is_fa_denial())
    {
        let mut mn = Mn::new(via_fa(None));
        mn.client.register(mn.now);
        let t = mn.one_transmit();
        mn.deliver(&fa_reply(&t.payload, code, 0, None));
        assert_eq!(
            mn.events(),
            vec![ClientEvent::Denied {
                code,
                by: Agent::ForeignAgent,
                purpose: Purpose::Register,
                authenticated: false
            }],
            "code {code}"
        );
        assert!(!mn.client.is_pending());
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} FA denial codes named");
}

#[test]
fn with_an_mn_fa_association_foreign_agent_denials_must_authenticate() {
    let mut mn = Mn::new(via_fa(Some(fa_sa())));
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    // The request carries MN-FA after MN-HA (§3.6.1.3).
    auth::find_auth(&t.payload, AuthKind::MnFa)
        .unwrap()
        .verify(&fa_sa())
        .unwrap();

    mn.deliver(&fa_reply(
        &t.payload,
        ReplyCode::FA_ADMIN_PROHIBITED,
        0,
        None,
    ));
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.stats().dropped_unauthenticated, 1);
    let wrong = SecurityAssociation::hmac_md5(0x3000, b"not it").unwrap();
    mn.deliver(&fa_reply(
        &t.payload,
        ReplyCode::FA_ADMIN_PROHIBITED,
        0,
        Some(&wrong),
    ));
    assert_eq!(mn.client.stats().dropped_unauthenticated, 2);

    mn.deliver(&fa_reply(
        &t.payload,
        ReplyCode::FA_ADMIN_PROHIBITED,
        0,
        Some(&fa_sa()),
    ));
    assert_eq!(
        mn.events(),
        vec![ClientEvent::Denied {
            code: ReplyCode::FA_ADMIN_PROHIBITED,
            by: Agent::ForeignAgent,
            purpose: Purpose::Register,
            authenticated: true
        }]
    );
}

#[test]
fn clock_skew_is_resynchronised_on_133_then_registration_succeeds() {
    for skew in [100i64, -3600, 86_400] {
        let mut mn = Mn::new(config());
        let mut ha = FakeHa::new();
        ha.skew = skew;
        mn.client.register(mn.now);
        let t = mn.one_transmit();
        mn.now += Duration::from_millis(30);
        mn.deliver(&accept(&mut ha, &mn, &t));
        assert_eq!(
            mn.events(),
            vec![ClientEvent::ReplayResync {
                method: ReplayMethod::Timestamp,
                clock_offset: skew
            }],
            "skew {skew}"
        );
        assert_eq!(mn.client.clock_offset(), skew);
        // The retry goes out one second after the first request (§3.6.3),
        // timestamped on the HA's clock.
        let t = mn.corrected();
        let req = ha.parse(&t.payload);
        assert_eq!(
            (req.identification >> 32) as u32,
            mn.ntp().offset_by(skew).seconds()
        );
        mn.deliver(&accept(&mut ha, &mn, &t));
        assert!(
            matches!(mn.events().as_slice(), [ClientEvent::Registered { .. }]),
            "skew {skew}"
        );
        assert_eq!(mn.client.stats().resyncs, 1);
    }
}

#[test]
fn repeated_133_gives_up_after_max_resyncs() {
    let mut mn = Mn::new(config());
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let mut resyncs = 0;
    let mut t = mn.one_transmit();
    loop {
        let req = ha.parse(&t.payload);
        // An HA that rejects everything with 133 (e.g. a replay cache gone
        // wrong): its time is the MN's, so resync never helps.
        let id = (u64::from(mn.ntp().seconds()) << 32) | (req.identification & 0xffff_ffff);
        mn.deliver(&ha.reply_to(&req, ReplyCode::HA_IDENTIFICATION_MISMATCH, 0, id));
        match mn.events().as_slice() {
            [ClientEvent::ReplayResync { .. }] => resyncs += 1,
            [ClientEvent::Denied { code, .. }] => {
                assert_eq!(*code, ReplyCode::HA_IDENTIFICATION_MISMATCH);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
        t = mn.corrected();
    }
    assert_eq!(resyncs, 2, "config default max_resyncs");
    assert!(!mn.client.is_pending());
}

#[test]
fn forged_133_does_not_move_the_clock() {
    let mut mn = Mn::new(config());
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let req = FakeHa::new().parse(&t.payload);
    let forged = ReplyRepr {
        code: ReplyCode::HA_IDENTIFICATION_MISMATCH,
        lifetime: 0,
        home_address: HOA,
        home_agent: HA,
        identification: (1u64 << 32) | (req.identification & 0xffff_ffff),
        extensions: vec![],
    };
    let attacker = SecurityAssociation::hmac_md5(SPI, b"nope").unwrap();
    mn.deliver(&auth::sign_reply(&forged, &attacker));
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.clock_offset(), 0);
    assert!(mn.transmits().is_empty(), "no resend on a forged 133");
}

#[test]
fn unknown_home_agent_136_redirects_to_the_named_home_agent() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    ha.address = HA2;
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    mn.deliver(&ha.reply_to(
        &req,
        ReplyCode::HA_UNKNOWN_HOME_AGENT,
        0,
        req.identification,
    ));
    assert_eq!(
        mn.events(),
        vec![ClientEvent::HomeAgentChanged { from: HA, to: HA2 }]
    );
    let t = mn.corrected();
    assert_eq!(*t.dst.ip(), HA2);
    let req = ha.parse(&t.payload);
    assert_eq!(req.home_agent, HA2);
    mn.deliver(&accept(&mut ha, &mn, &t));
    match mn.events().as_slice() {
        [ClientEvent::Registered { binding, .. }] => assert_eq!(binding.home_agent, HA2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(mn.client.home_agent(), HA2);

    // A second 136 in the same attempt is a denial, not a loop.
    let mut mn = Mn::new(config());
    mn.client.register(mn.now);
    let mut t = mn.one_transmit();
    let mut last = None;
    for (i, to) in [HA2, std::net::Ipv4Addr::new(192, 0, 2, 3)]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            t = mn.corrected();
        }
        let mut ha = FakeHa::new();
        ha.address = to;
        let req = ha.parse(&t.payload);
        mn.deliver(&ha.reply_to(
            &req,
            ReplyCode::HA_UNKNOWN_HOME_AGENT,
            0,
            req.identification,
        ));
        last = mn.events().pop();
    }
    assert!(matches!(
        last,
        Some(ClientEvent::Denied {
            code: ReplyCode::HA_UNKNOWN_HOME_AGENT,
            ..
        })
    ));
}

#[test]
fn lifetime_too_long_69_retries_with_the_foreign_agents_maximum() {
    let mut mn = Mn::new(via_fa(Some(fa_sa())));
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&fa_reply(
        &t.payload,
        ReplyCode::FA_LIFETIME_TOO_LONG,
        600,
        Some(&fa_sa()),
    ));
    assert!(mn.events().is_empty());
    let t = mn.corrected();
    assert_eq!(ha.parse(&t.payload).lifetime, 600);
    mn.deliver(&accept(&mut ha, &mn, &t));
    match mn.events().as_slice() {
        [ClientEvent::Registered { binding, .. }] => {
            assert_eq!(binding.lifetime, Duration::from_secs(600))
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// RFC 5944 §3.6.2.1: without an MN-FA association nothing proves that a
/// foreign-agent denial came from the agent; anyone on the link can send
/// one. It ends the attempt, but its contents (69's lifetime, 75's demand
/// for 'T') never shape the next request: the next registration asks for
/// the configured lifetime and flags again.
#[test]
fn an_unauthenticated_foreign_agent_denial_never_changes_the_next_request() {
    for (code, lifetime) in [
        (ReplyCode::FA_LIFETIME_TOO_LONG, 5),
        (ReplyCode::FA_REVERSE_TUNNEL_MANDATORY, 0),
    ] {
        let mut mn = Mn::new(via_fa(None));
        let ha = FakeHa::new();
        mn.client.register(mn.now);
        let first = ha.parse(&mn.one_transmit().payload);
        let mut forged = ReplyRepr {
            code,
            lifetime,
            home_address: first.home_address,
            home_agent: first.home_agent,
            identification: first.identification,
            extensions: vec![],
        }
        .to_bytes();
        // An MN-FA authenticator the node cannot check is no better.
        auth::append_auth(&mut forged, AuthKind::MnFa, &fa_sa());
        mn.deliver(&forged);
        assert!(
            matches!(
                mn.events().as_slice(),
                [ClientEvent::Denied {
                    authenticated: false,
                    ..
                }]
            ),
            "code {code}"
        );
        assert!(!mn.client.is_pending(), "code {code}: no corrected request");
        mn.advance(Duration::from_secs(5));
        assert!(mn.transmits().is_empty(), "code {code}: nothing sent");
        // The next registration is the configured one, unchanged.
        mn.client.register(mn.now);
        let next = ha.parse(&mn.one_transmit().payload);
        assert_eq!(next.lifetime, first.lifetime, "code {code}");
        assert_eq!(next.flags, first.flags, "code {code}");
        assert!(!next.flags.contains(Flags::T), "code {code}");
    }
}

#[test]
fn reverse_tunnel_mandatory_retries_with_the_t_bit() {
    for (cfg, via_agent) in [(config(), false), (via_fa(Some(fa_sa())), true)] {
        let mut mn = Mn::new(cfg);
        let mut ha = FakeHa::new();
        mn.client.register(mn.now);
        let t = mn.one_transmit();
        assert!(!ha.parse(&t.payload).flags.contains(Flags::T));
        let denial = if via_agent {
            fa_reply(
                &t.payload,
                ReplyCode::FA_REVERSE_TUNNEL_MANDATORY,
                0,
                Some(&fa_sa()),
            )
        } else {
            let req = ha.parse(&t.payload);
            ha.reply_to(
                &req,
                ReplyCode::HA_REVERSE_TUNNEL_MANDATORY,
                0,
                req.identification,
            )
        };
        mn.deliver(&denial);
        let t = mn.corrected();
        assert!(ha.parse(&t.payload).flags.contains(Flags::T));
        mn.deliver(&accept(&mut ha, &mn, &t));
        assert!(matches!(
            mn.events().as_slice(),
            [ClientEvent::Registered { .. }]
        ));
    }
}

#[test]
fn denied_renewal_keeps_the_current_binding_until_it_expires() {
    let mut cfg = config();
    cfg.lifetime = 100;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();
    mn.fire_next_timer();
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    mn.deliver(&ha.reply_to(
        &req,
        ReplyCode::HA_INSUFFICIENT_RESOURCES,
        0,
        req.identification,
    ));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Denied {
            purpose: Purpose::Renew,
            ..
        }]
    ));
    assert!(mn.client.binding().is_some());
    mn.fire_next_timer();
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Expired { .. }]
    ));
    assert_eq!(mn.now - mn.t0, Duration::from_secs(100));
}

/// RFC 5944 §3.6.3: "The minimum time between Registration Requests MUST
/// NOT be less than 1 second." A denial that the client answers with a
/// corrected request (133, 136, 69, 75/138) comes back within a round
/// trip; the corrected request repeats the same registration, so it
/// waits for the rest of that second. A copy of the denial meanwhile
/// changes nothing, and a denial slower than a second is answered at once.
#[test]
fn a_corrected_request_leaves_no_sooner_than_a_second_after_the_one_it_corrects() {
    enum Denial {
        Ha(ReplyCode),
        Fa(ReplyCode, u16),
    }
    let cases = [
        Denial::Ha(ReplyCode::HA_IDENTIFICATION_MISMATCH),
        Denial::Ha(ReplyCode::HA_UNKNOWN_HOME_AGENT),
        Denial::Ha(ReplyCode::HA_REVERSE_TUNNEL_MANDATORY),
        Denial::Fa(ReplyCode::FA_LIFETIME_TOO_LONG, 600),
        Denial::Fa(ReplyCode::FA_REVERSE_TUNNEL_MANDATORY, 0),
    ];
    for round_trip in [Duration::from_millis(2), Duration::from_millis(1500)] {
        for case in &cases {
            let (cfg, code) = match case {
                Denial::Ha(c) => (config(), *c),
                Denial::Fa(c, _) => (via_fa(Some(fa_sa())), *c),
            };
            let mut mn = Mn::new(cfg);
            let mut ha = FakeHa::new();
            if code == ReplyCode::HA_UNKNOWN_HOME_AGENT {
                ha.address = HA2;
            }
            if code == ReplyCode::HA_IDENTIFICATION_MISMATCH {
                ha.skew = 100;
            }
            mn.client.register(mn.now);
            let first = mn.one_transmit();
            let sent = mn.now;
            mn.now += round_trip;
            let denial = match case {
                Denial::Ha(ReplyCode::HA_IDENTIFICATION_MISMATCH) => {
                    // The HA's own replay check answers 133.
                    ha.answer(&first.payload, mn.ntp(), ReplyCode::ACCEPTED)
                }
                Denial::Ha(c) => {
                    let req = ha.parse(&first.payload);
                    ha.reply_to(&req, *c, 0, req.identification)
                }
                Denial::Fa(c, lifetime) => fa_reply(&first.payload, *c, *lifetime, Some(&fa_sa())),
            };
            mn.deliver(&denial);
            assert!(
                !mn.events()
                    .iter()
                    .any(|e| matches!(e, ClientEvent::Denied { .. })),
                "{code}: corrected, not denied"
            );
            let corrected = if round_trip < Duration::from_secs(1) {
                assert!(mn.transmits().is_empty(), "{code}: not at once");
                assert!(mn.client.is_pending(), "{code}: still registering");
                assert_eq!(mn.client.pending_identification(), None);
                // The same denial again (duplicated on the path): no
                // second correction, nothing sent.
                mn.deliver(&denial);
                assert!(mn.events().is_empty(), "{code}: copy ignored");
                assert_eq!(mn.client.stats().dropped_duplicate, 1, "{code}");
                assert_eq!(
                    mn.client.poll_timeout(),
                    Some(sent + Duration::from_secs(1))
                );
                mn.advance(sent + Duration::from_secs(1) - mn.now - Duration::from_nanos(1));
                assert!(mn.transmits().is_empty(), "{code}: not before the second");
                mn.advance(Duration::from_nanos(1));
                let t = mn.one_transmit();
                assert_eq!(mn.now - sent, Duration::from_secs(1), "{code}");
                t
            } else {
                // Slower than the floor: nothing to wait for.
                mn.one_transmit()
            };
            assert!(!corrected.retransmission, "{code}: a fresh exchange");
            assert_ne!(corrected.identification, first.identification, "{code}");
            // Signed when it leaves: the timestamp is of that moment.
            if code == ReplyCode::HA_IDENTIFICATION_MISMATCH {
                let req = ha.parse(&corrected.payload);
                assert_eq!(
                    (req.identification >> 32) as u32,
                    mn.ntp().offset_by(100).seconds(),
                    "{code}"
                );
            }
            mn.deliver(&accept(&mut ha, &mn, &corrected));
            assert!(
                matches!(mn.events().as_slice(), [ClientEvent::Registered { .. }]),
                "{code}"
            );
            // Its first retransmission would have come a full initial
            // timeout after it, not after the denied one.
            assert_eq!(mn.client.stats().requests_sent, 2, "{code}");
        }
    }
}
