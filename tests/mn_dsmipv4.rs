//! DSMIPv4 (RFC 5454) in the registration client: the IPv6 Prefix Request
//! and the Tunneling Mode extension go out inside the authenticated part;
//! the IPv6 Prefix Reply is believed only from there; a home agent that
//! skips the extension leaves an IPv4-only binding (§3.5).

#[path = "registration_support/mod.rs"]
mod support;

use mip4::dataplane::binding::{Ipv6Binding, Ipv6TunnelTo};
use mip4::mn::registration::Ipv6Outcome;
use mip4::wire::extension::Dsmipv4Ext;
use mip4::wire::Extension;

fn prefix_request() -> Extension {
    Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: 0,
        prefix: "::".parse().unwrap(),
    })
}

fn prefix_reply(code: u8) -> Extension {
    Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
        code,
        prefix_length: 64,
        prefix: "2001:db8:10::".parse().unwrap(),
    })
}

fn outcome(ask: &[Extension], exts: Vec<Extension>, appended: Option<Extension>) -> Ipv6Outcome {
    support::registered_with(ask, exts, appended).ipv6
}

#[test]
fn a_granted_prefix_says_where_ipv6_goes() {
    let prefix = "2001:db8:10::/64".parse().unwrap();
    let ask = [prefix_request()];
    assert_eq!(
        outcome(&ask, vec![prefix_reply(0)], None),
        Ipv6Outcome::Granted(Ipv6Binding {
            prefix,
            tunnel_to: Ipv6TunnelTo::HomeAddress
        })
    );
    let ask = [
        prefix_request(),
        Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode),
    ];
    assert_eq!(
        outcome(&ask, vec![prefix_reply(1)], None),
        Ipv6Outcome::Granted(Ipv6Binding {
            prefix,
            tunnel_to: Ipv6TunnelTo::CareOf
        })
    );
}

/// RFC 5454 §2.2: codes 8 and 9 refuse the prefix; the IPv4 binding is
/// registered all the same.
#[test]
fn a_refused_prefix_keeps_the_ipv4_binding() {
    for code in [8, 9] {
        assert_eq!(
            outcome(&[prefix_request()], vec![prefix_reply(code)], None),
            Ipv6Outcome::Refused { code }
        );
    }
}

/// RFC 5454 §3.5: a home agent that does not know extension 152 skips
/// it (it is skippable) and answers without an IPv6 Prefix Reply: the
/// node goes on with IPv4 only. A Prefix Reply after the authenticator
/// is anyone's and changes nothing.
#[test]
fn a_home_agent_that_ignores_dsmipv4_leaves_ipv4_only() {
    let ask = [prefix_request()];
    assert_eq!(outcome(&ask, vec![], None), Ipv6Outcome::Ignored);
    assert_eq!(
        outcome(&ask, vec![], Some(prefix_reply(0))),
        Ipv6Outcome::Ignored
    );
    assert_eq!(
        outcome(&[], vec![], None),
        Ipv6Outcome::NotRequested,
        "nothing asked, nothing expected"
    );
}
