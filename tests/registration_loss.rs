//! Loss, duplicates and late replies: retransmission with exponential
//! backoff (RFC 5944 §3.6.3) and reply matching (§3.6.2.1).

mod registration_support;

use std::time::Duration;

use mip4::mn::{ClientEvent, Purpose, Retransmit};
use mip4::replay::ReplayMethod;
use registration_support::*;

/// Times between successive transmissions while nothing answers.
fn silence(mn: &mut Mn) -> (Vec<Duration>, Vec<Vec<u8>>, Vec<ClientEvent>) {
    let mut gaps = Vec::new();
    let mut payloads = vec![mn.one_transmit().payload];
    let mut last = mn.now;
    let mut events = Vec::new();
    while mn.client.is_pending() {
        mn.fire_next_timer();
        events.extend(mn.events());
        for t in mn.transmits() {
            gaps.push(mn.now - last);
            last = mn.now;
            payloads.push(t.payload);
        }
    }
    (gaps, payloads, events)
}

#[test]
fn unanswered_request_backs_off_exponentially_then_fails() {
    let mut mn = Mn::new(config());
    mn.client.register(mn.now);
    let (gaps, payloads, events) = silence(&mut mn);
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 4, 8], "5 transmissions, doubling");
    assert_eq!(payloads.len(), 5);
    assert_eq!(
        events,
        vec![ClientEvent::Failed {
            purpose: Purpose::Register,
            attempts: 5
        }]
    );
    // Failure comes one doubled timeout (16 s) after the last try.
    assert_eq!(mn.now - mn.t0, Duration::from_secs(1 + 2 + 4 + 8 + 16));
    let s = mn.client.stats();
    assert_eq!((s.requests_sent, s.retransmissions, s.failures), (5, 4, 1));
    assert_eq!(mn.client.poll_timeout(), None, "nothing left to do");
}

#[test]
fn backoff_is_capped_by_the_configured_maximum_and_by_the_lifetime() {
    let mut cfg = config();
    cfg.retransmit = Retransmit {
        initial_timeout: Duration::from_secs(1),
        max_timeout: Duration::from_secs(5),
        max_attempts: 6,
    };
    let mut mn = Mn::new(cfg);
    mn.client.register(mn.now);
    let (gaps, _, _) = silence(&mut mn);
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 4, 5, 5]);

    // §3.6.3: never longer than the requested lifetime.
    let mut cfg = config();
    cfg.lifetime = 3;
    cfg.retransmit.max_attempts = 5;
    let mut mn = Mn::new(cfg);
    mn.client.register(mn.now);
    let (gaps, _, _) = silence(&mut mn);
    let secs: Vec<u64> = gaps.iter().map(|d| d.as_secs()).collect();
    assert_eq!(secs, vec![1, 2, 3, 3]);
}

#[test]
fn timestamp_retransmissions_carry_new_identifications() {
    let mut mn = Mn::new(config());
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let (_, payloads, _) = silence(&mut mn);
    let ids: Vec<u64> = payloads
        .iter()
        .map(|p| ha.parse(p).identification)
        .collect();
    for w in ids.windows(2) {
        assert!(w[1] > w[0], "identifications must increase: {ids:x?}");
    }
}

#[test]
fn nonce_retransmissions_are_identical() {
    let mut mn = Mn::new(config_with(ReplayMethod::Nonce));
    mn.client.register(mn.now);
    let (_, payloads, _) = silence(&mut mn);
    assert!(payloads.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn reply_after_a_lost_request_is_accepted() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let _lost = mn.one_transmit();
    mn.fire_next_timer();
    let _also_lost = mn.one_transmit();
    mn.fire_next_timer();
    let third = mn.one_transmit();
    mn.now += Duration::from_millis(80);
    mn.deliver(&accept(&mut ha, &mn, &third));
    match mn.events().as_slice() {
        [ClientEvent::Registered { binding, .. }] => {
            // Lifetime counted from the third (answered) transmission.
            assert_eq!(
                binding.expires,
                Some(mn.t0 + Duration::from_secs(3) + Duration::from_secs(1800))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(mn.client.stats().retransmissions, 2);
}

#[test]
fn reply_to_an_earlier_transmission_is_late_and_dropped() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let first = mn.one_transmit();
    // The reply to the first copy is slow; the MN retransmits meanwhile.
    let slow_reply = accept(&mut ha, &mn, &first);
    mn.fire_next_timer();
    let second = mn.one_transmit();
    mn.deliver(&slow_reply);
    assert!(
        mn.events().is_empty(),
        "§3.6.2.1: only the most recent request matches"
    );
    assert_eq!(mn.client.stats().dropped_late, 1);
    assert!(mn.client.is_pending());
    mn.deliver(&accept(&mut ha, &mn, &second));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { .. }]
    ));
}

#[test]
fn duplicate_replies_are_counted_and_ignored() {
    let mut mn = Mn::new(config());
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    let reply = accept(&mut ha, &mn, &t);
    mn.deliver(&reply);
    mn.deliver(&reply);
    mn.deliver(&reply);
    assert_eq!(mn.events().len(), 1);
    let s = mn.client.stats();
    assert_eq!((s.registrations, s.dropped_duplicate), (1, 2));

    // Still ignored once the next request (a renewal) is outstanding.
    mn.fire_next_timer();
    let _renewal = mn.one_transmit();
    mn.deliver(&reply);
    assert!(mn.events().is_empty());
    assert_eq!(mn.client.stats().dropped_duplicate, 3);
    assert!(mn.client.is_pending());
}

#[test]
fn failed_renewal_keeps_the_binding_and_retries_until_it_expires() {
    let mut cfg = config();
    cfg.lifetime = 200;
    let mut mn = Mn::new(cfg);
    let mut ha = FakeHa::new();
    mn.client.register(mn.now);
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    mn.events();

    // Renewal at 150 s; 31 s of silence later the attempt fails.
    let mut failed_at = None;
    while failed_at.is_none() {
        mn.fire_next_timer();
        mn.transmits();
        if mn.events().iter().any(|e| {
            matches!(
                e,
                ClientEvent::Failed {
                    purpose: Purpose::Renew,
                    ..
                }
            )
        }) {
            failed_at = Some(mn.now);
        }
    }
    assert_eq!(failed_at.unwrap() - mn.t0, Duration::from_secs(150 + 31));
    assert!(
        mn.client.binding().is_some(),
        "binding outlives a failed renewal"
    );
    // A new renewal is scheduled before the binding expires at 200 s.
    let next = mn.client.poll_timeout().unwrap();
    assert!(
        next - mn.t0 < Duration::from_secs(200),
        "{:?}",
        next - mn.t0
    );
    mn.fire_next_timer();
    let t = mn.one_transmit();
    mn.deliver(&accept(&mut ha, &mn, &t));
    assert!(matches!(
        mn.events().as_slice(),
        [ClientEvent::Registered { renewal: true, .. }]
    ));
}

#[test]
fn each_transmit_says_its_purpose_identification_and_whether_it_repeats() {
    let mut mn = Mn::new(config());
    let ha = FakeHa::new();
    mn.client.register(mn.now);
    let mut sent = vec![mn.one_transmit()];
    while mn.client.is_pending() {
        mn.fire_next_timer();
        sent.extend(mn.transmits());
    }
    assert_eq!(sent.len(), 5);
    for (i, t) in sent.iter().enumerate() {
        let req = ha.parse(&t.payload);
        // What the client reports is what it put on the wire.
        assert_eq!(t.identification, req.identification);
        assert_eq!(t.care_of_address, req.care_of_address);
        assert_eq!(t.purpose, Purpose::Register);
        assert_eq!(t.retransmission, i > 0, "transmission {i}");
    }
}
