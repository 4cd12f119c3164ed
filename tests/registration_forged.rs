//! Forged, stray and malformed replies: dropped, counted, and the
//! genuine reply still gets through (RFC 5944 §3.6.2.1: authenticate
//! before believing).

mod registration_support;

use std::net::Ipv4Addr;

use mip4::auth::{self, AuthKind, SecurityAssociation};
use mip4::mn::{ClientEvent, Stats};
use mip4::wire::{ReplyCode, ReplyRepr};
use proptest::prelude::*;
use registration_support::*;

/// A client with one outstanding request; returns it with the request's
/// bytes and the genuine accepting reply.
fn outstanding() -> (Mn, Vec<u8>, Vec<u8>) {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let genuine = accept(&mut ha, &mn, &t);
    (mn, t.payload, genuine)
}

/// Delivers `forged`, checks it changed nothing, then checks the genuine
/// reply is still accepted.
fn assert_dropped(forged: &[u8], counter: fn(&Stats) -> u64) {
    let (mut mn, _, genuine) = outstanding();
    mn.deliver(forged);
    assert!(mn.events().is_empty(), "a forged reply produced an event");
    assert!(mn.client.binding().is_none());
    assert!(mn.client.is_pending(), "a forged reply ended the attempt");
    assert_eq!(counter(mn.client.stats()), 1);
    assert_eq!(mn.client.stats().replies_processed, 0);
    mn.deliver(&genuine);
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { .. }]
    ));
}

fn unsigned_reply(req: &[u8], code: ReplyCode) -> ReplyRepr {
    let req = FakeHa::new().parse(req);
    ReplyRepr {
        code,
        lifetime: req.lifetime,
        home_address: req.home_address,
        home_agent: HA,
        identification: req.identification,
        extensions: vec![],
    }
}

#[test]
fn bad_authenticator_is_dropped() {
    let (_, _, genuine) = outstanding();
    let mut forged = genuine.clone();
    let last = forged.len() - 1;
    forged[last] ^= 0x80;
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn tampered_lifetime_is_dropped() {
    let (_, _, genuine) = outstanding();
    let mut forged = genuine.clone();
    forged[2] = 0xff; // lifetime high byte, covered by the authenticator
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn reply_signed_with_another_key_is_dropped() {
    let (_, req, _) = outstanding();
    let attacker = SecurityAssociation::hmac_md5(SPI, b"guessed key").unwrap();
    let forged = auth::sign_reply(&unsigned_reply(&req, ReplyCode::ACCEPTED), &attacker);
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn reply_under_a_different_spi_is_dropped() {
    let (_, req, _) = outstanding();
    // Same key, other SPI: the MN's association is SPI 0x1000 only.
    let other = SecurityAssociation::hmac_md5(SPI + 1, KEY).unwrap();
    let forged = auth::sign_reply(&unsigned_reply(&req, ReplyCode::ACCEPTED), &other);
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn unauthenticated_reply_is_dropped() {
    let (_, req, _) = outstanding();
    let forged = unsigned_reply(&req, ReplyCode::ACCEPTED).to_bytes();
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn unauthenticated_denial_is_dropped_too() {
    // A forged "administratively prohibited" must not end the attempt.
    let (_, req, _) = outstanding();
    let forged = unsigned_reply(&req, ReplyCode::HA_ADMIN_PROHIBITED).to_bytes();
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn foreign_agent_code_without_a_foreign_agent_is_dropped() {
    // Co-located registration: no FA is on the path, so an FA denial
    // (which needs no MN-HA authenticator) can only be forged.
    let (_, req, _) = outstanding();
    let forged = unsigned_reply(&req, ReplyCode::FA_ADMIN_PROHIBITED).to_bytes();
    assert_dropped(&forged, |s| s.dropped_unauthenticated);
}

#[test]
fn wrong_identification_is_dropped_even_when_signed() {
    let (_, req, _) = outstanding();
    let mut r = unsigned_reply(&req, ReplyCode::ACCEPTED);
    r.identification ^= 1; // low-order bits differ
    let forged = auth::sign_reply(&r, &sa());
    assert_dropped(&forged, |s| s.dropped_unmatched);
}

#[test]
fn wrong_home_address_is_dropped_even_when_signed() {
    let (_, req, _) = outstanding();
    let mut r = unsigned_reply(&req, ReplyCode::ACCEPTED);
    r.home_address = Ipv4Addr::new(10, 1, 0, 6);
    let forged = auth::sign_reply(&r, &sa());
    assert_dropped(&forged, |s| s.dropped_wrong_home_address);
}

#[test]
fn extensions_after_the_authenticator_are_not_believed() {
    // With an assigned home address the NAI names the node (RFC 2794).
    // An NAI appended after the MN-HA extension is outside what the HA
    // signed, so it cannot make a reply ours.
    let mut cfg = config();
    cfg.home_address = Ipv4Addr::UNSPECIFIED;
    cfg.nai = Some(NAI.to_vec());
    let mut mn = Mn::new(cfg);
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let mut req = ha.parse(&t.payload);
    req.extensions.clear();
    let mut forged = ha.reply_to(&req, ReplyCode::ACCEPTED, 1800, req.identification);
    forged.push(131);
    forged.push(NAI.len() as u8);
    forged.extend_from_slice(NAI);
    mn.deliver(&forged);
    assert!(mn.events().is_empty());
    assert!(mn.client.binding().is_none());
    assert_eq!(mn.client.stats().dropped_wrong_home_address, 1);

    // The same reply with the NAI inside the signed part is accepted.
    let genuine = ha.reply_to(
        &ha.parse(&t.payload),
        ReplyCode::ACCEPTED,
        1800,
        req.identification,
    );
    mn.deliver(&genuine);
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { .. }]
    ));
}

#[test]
fn malformed_datagrams_are_dropped() {
    let (_, _, genuine) = outstanding();
    for bad in [
        &genuine[..10],                // truncated header
        &genuine[..genuine.len() - 3], // truncated extension
        &[1u8; 30][..],                // a request, not a reply
        &[][..],
    ] {
        assert_dropped(bad, |s| s.dropped_malformed);
    }
    // §1.9: an unknown non-skippable extension (type < 128) makes the MN
    // discard the reply.
    let mut unknown = genuine[..20].to_vec();
    unknown.extend_from_slice(&[7, 2, 0, 0]);
    auth::append_auth(&mut unknown, AuthKind::MnHa, &sa());
    assert_dropped(&unknown, |s| s.dropped_malformed);
}

#[test]
fn replies_with_nothing_outstanding_are_dropped() {
    let mut mn = Mn::new(config());
    let (_, _, stray) = outstanding();
    mn.deliver(&stray);
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.stats().dropped_unmatched, 1);
}

#[test]
fn nai_reply_for_someone_else_is_dropped() {
    let mut cfg = config();
    cfg.home_address = Ipv4Addr::UNSPECIFIED;
    cfg.nai = Some(NAI.to_vec());
    let mut mn = Mn::new(cfg);
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let mut req = ha.parse(&t.payload);
    req.extensions = vec![mip4::wire::Extension::Nai(b"mallory@corp.example".to_vec())];
    let forged = ha.reply_to(&req, ReplyCode::ACCEPTED, 1800, req.identification);
    mn.deliver(&forged);
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.stats().dropped_wrong_home_address, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// Arbitrary bytes never panic the client nor change its state.
    #[test]
    fn arbitrary_datagrams_never_panic_or_register(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let (mut mn, _, _) = outstanding();
        mn.deliver(&bytes);
        prop_assert!(mn.events().is_empty());
        prop_assert!(mn.client.is_pending());
        let s = mn.client.stats();
        prop_assert_eq!(
            s.dropped_malformed + s.dropped_unmatched + s.dropped_unauthenticated
                + s.dropped_wrong_home_address + s.dropped_late + s.dropped_duplicate,
            1
        );
    }

    /// Any single-bit change to a genuine reply is dropped.
    #[test]
    fn flipped_bits_in_a_genuine_reply_are_dropped(bit in 0usize..(46 * 8)) {
        let (mut mn, _, genuine) = outstanding();
        let mut forged = genuine.clone();
        prop_assume!(bit / 8 < forged.len());
        forged[bit / 8] ^= 1 << (bit % 8);
        mn.deliver(&forged);
        prop_assert!(mn.events().is_empty());
        prop_assert!(mn.client.binding().is_none());
    }
}
