//! The registration client's normal life: register, renew, move,
//! deregister, return home (RFC 5944 §3.6).

mod registration_support;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use mip4::mn::ClientEvent;
use mip4::replay::ReplayMethod;
use mip4::wire::{Extension, Flags, ReplyCode, MIP_PORT};
use registration_support::*;

#[test]
fn colocated_registration_is_signed_sent_and_accepted() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    assert_eq!(t.dst, SocketAddrV4::new(HA, MIP_PORT));
    assert_eq!(
        t.src,
        Some(COA),
        "co-located: sent from the care-of address"
    );

    let req = ha.parse(&t.payload);
    assert!(req.flags.contains(Flags::D), "co-located sets D (§3.3)");
    assert!(!req.flags.contains(Flags::R) && !req.flags.contains(Flags::X));
    assert_eq!(req.lifetime, 1800);
    assert_eq!(
        (req.home_address, req.home_agent, req.care_of_address),
        (HOA, HA, COA)
    );
    // The timestamp is the MN's NTP time of day (§5.7.1).
    assert_eq!((req.identification >> 32) as u32, mn.ntp().seconds());

    mn.now += Duration::from_millis(40);
    let reply = accept(&mut ha, &mn, &t);
    mn.deliver(&reply);
    let ev = mn.events();
    assert_eq!(ev.len(), 1);
    match &ev[0] {
        ClientEvent::Registered {
            binding,
            code,
            renewal,
            ..
        } => {
            assert_eq!(*code, ReplyCode::ACCEPTED);
            assert!(!renewal);
            assert_eq!(binding.home_address, HOA);
            assert_eq!(binding.care_of_address, COA);
            assert_eq!(binding.lifetime, Duration::from_secs(1800));
            // Counted from when the request was sent, not received.
            assert_eq!(binding.expires, Some(mn.t0 + Duration::from_secs(1800)));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!mn.client.is_pending());
    assert_eq!(mn.client.stats().registrations, 1);
    assert_eq!(mn.client.stats().replies_processed, 1);
}

#[test]
fn granted_lifetime_never_exceeds_requested_and_shorter_grant_is_used() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    ha.max_lifetime = 300;
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert_eq!(
        mn.client.binding().unwrap().lifetime,
        Duration::from_secs(300)
    );

    // A (buggy) HA granting more than asked: the MN keeps what it asked.
    let mut mn = Mn::new(config());
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    mn.deliver(&ha.reply_to(&req, ReplyCode::ACCEPTED, 9000, req.identification));
    assert_eq!(
        mn.client.binding().unwrap().lifetime,
        Duration::from_secs(1800)
    );
}

#[test]
fn renewal_happens_at_the_configured_share_of_the_lifetime() {
    let mut cfg = config();
    cfg.lifetime = 600;
    cfg.renew_percent = 80;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();

    assert_eq!(
        mn.client.poll_timeout(),
        Some(mn.t0 + Duration::from_secs(480))
    );
    mn.advance(Duration::from_secs(479));
    assert!(mn.transmits().is_empty(), "no renewal before 80%");
    let at = mn.fire_next_timer();
    assert_eq!(at, mn.t0 + Duration::from_secs(480));
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    assert_eq!(req.lifetime, 600);
    mn.deliver(&accept(&mut ha, &mn, &t));
    match mn.events().as_slice() {
        [ClientEvent::Registered {
            renewal: true,
            binding,
            ..
        }] => {
            assert_eq!(binding.expires, Some(at + Duration::from_secs(600)));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn binding_expires_when_renewals_go_unanswered() {
    let mut cfg = config();
    cfg.lifetime = 60;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();

    let expiry = mn.t0 + Duration::from_secs(60);
    let mut events = Vec::new();
    while mn.now < expiry {
        mn.fire_next_timer();
        mn.transmits();
        events.extend(mn.events());
    }
    assert_eq!(mn.now, expiry);
    assert!(mn.client.binding().is_none());
    assert!(
        matches!(events.last(), Some(ClientEvent::Expired { .. })),
        "{events:?}"
    );
    // The renewal started at 45 s (75%) and was still retransmitting.
    assert!(mn.client.stats().retransmissions >= 3);
}

#[test]
fn infinite_lifetime_is_never_renewed() {
    let mut cfg = config();
    cfg.lifetime = 0xffff;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    ha.max_lifetime = 0xffff;
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert_eq!(mn.client.binding().unwrap().expires, None);
    assert_eq!(mn.client.poll_timeout(), None);
}

#[test]
fn deregistration_sends_lifetime_zero_and_clears_the_binding() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();

    mn.now += Duration::from_secs(10);
    mn.client.deregister(mn.now);
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    assert_eq!(req.lifetime, 0);
    assert_eq!(req.care_of_address, COA);
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert_eq!(
        mn.events(),
        vec![ClientEvent::Deregistered {
            care_of_address: COA
        }]
    );
    assert!(mn.client.binding().is_none());
    assert_eq!(
        mn.client.poll_timeout(),
        None,
        "no renewal after deregistration"
    );
}

#[test]
fn returning_home_deregisters_with_care_of_address_equal_to_home_address() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();

    mn.now += Duration::from_secs(5);
    // The daemon sees the home address on the link: move "to" it.
    mn.client.move_to(mn.now, HOA, None);
    let t = mn.one_transmit();
    assert_eq!(t.dst, SocketAddrV4::new(HA, MIP_PORT));
    assert_eq!(t.src, Some(HOA), "sent from home (§3.6.1.1)");
    let req = ha.parse(&t.payload);
    assert_eq!(req.lifetime, 0);
    assert_eq!(req.care_of_address, HOA);
    assert!(!req.flags.contains(Flags::D) && !req.flags.contains(Flags::T));
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert_eq!(
        mn.events(),
        vec![ClientEvent::Deregistered {
            care_of_address: HOA
        }]
    );
}

#[test]
fn moving_supersedes_the_outstanding_request() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let old = mn.one_transmit();
    mn.now += Duration::from_millis(300);
    mn.client.move_to(mn.now, COA2, None);
    let new = mn.one_transmit();
    assert_eq!(new.src, Some(COA2));
    assert_eq!(ha.parse(&new.payload).care_of_address, COA2);

    // The HA answers both; only the answer to the newest request counts.
    let late = accept(&mut ha, &mn, &old);
    let fresh = accept(&mut ha, &mn, &new);
    mn.deliver(&late);
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.stats().dropped_late, 1);
    mn.deliver(&fresh);
    match mn.events().as_slice() {
        [ClientEvent::Registered { binding, .. }] => assert_eq!(binding.care_of_address, COA2),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn nai_gets_a_home_address_assigned_and_keeps_using_it() {
    let mut cfg = config();
    cfg.home_address = Ipv4Addr::UNSPECIFIED;
    cfg.nai = Some(NAI.to_vec());
    cfg.flags = Flags::T;
    cfg.lifetime = 100;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    ha.assign = Ipv4Addr::new(10, 1, 0, 77);
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let req = ha.parse(&t.payload);
    assert_eq!(req.home_address, Ipv4Addr::UNSPECIFIED);
    assert!(req.flags.contains(Flags::T));
    // RFC 2794: the NAI comes before the MN-HA extension.
    assert_eq!(req.extensions[0], Extension::Nai(NAI.to_vec()));
    assert!(matches!(req.extensions[1], Extension::MnHaAuth(_)));

    mn.deliver(&accept(&mut ha, &mn, &t));
    assert_eq!(mn.client.binding().unwrap().home_address, ha.assign);
    assert_eq!(mn.client.home_address(), ha.assign);
    mn.events();

    // The renewal carries the assigned address.
    mn.fire_next_timer();
    let t = mn.one_transmit();
    assert_eq!(ha.parse(&t.payload).home_address, ha.assign);
}

#[test]
fn registration_via_foreign_agent_goes_to_the_agent_from_the_home_address() {
    let mut cfg = config();
    cfg.care_of_address = FA;
    cfg.foreign_agent = Some(FA);
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    assert_eq!(t.dst, SocketAddrV4::new(FA, MIP_PORT));
    assert_eq!(t.src, Some(HOA));
    let req = ha.parse(&t.payload);
    assert!(
        !req.flags.contains(Flags::D),
        "FA care-of address: no D bit"
    );
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert!(mn.client.binding().is_some());
}

#[test]
fn nonce_mode_learns_the_home_agents_nonce() {
    let mut mn = Mn::new(registration_support::config_with(ReplayMethod::Nonce));
    let mut ha = FakeHa::with(sa_with(ReplayMethod::Nonce));
    mn.client.register(mn.now);
    // §5.7.2: the first request cannot carry the HA's nonce: 133, then
    // the retry with the learnt nonce succeeds.
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::ReplayResync {
            method: ReplayMethod::Nonce,
            ..
        }]
    ));
    let t = mn.corrected();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { .. }]
    ));

    // The renewal uses the nonce from the accepting reply: accepted
    // straight away.
    mn.fire_next_timer();
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { renewal: true, .. }]
    ));
}

#[test]
fn invalid_configurations_are_refused_with_the_rule() {
    use mip4::mn::{Client, ConfigError};
    let now = std::time::Instant::now();
    let mut cfg = config();
    cfg.home_address = Ipv4Addr::UNSPECIFIED;
    assert_eq!(
        Client::new(cfg, now, wall()).unwrap_err(),
        ConfigError::NoIdentity
    );
    let mut cfg = config();
    cfg.retransmit.initial_timeout = Duration::from_millis(500);
    assert!(matches!(
        Client::new(cfg, now, wall()).unwrap_err(),
        ConfigError::RetransmitTooFast(_)
    ));
    let mut cfg = config();
    cfg.lifetime = 0;
    assert_eq!(
        Client::new(cfg, now, wall()).unwrap_err(),
        ConfigError::ZeroLifetime
    );
    let mut cfg = config();
    cfg.renew_percent = 100;
    assert_eq!(
        Client::new(cfg, now, wall()).unwrap_err(),
        ConfigError::BadRenewPercent(100)
    );
}
