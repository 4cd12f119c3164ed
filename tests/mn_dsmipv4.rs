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

/// The client against the real home agent core: what mip4-ha answers to
/// the client's request is what the client reports, for a node with a
/// prefix (granted, to the care-of address as asked) and a node without
/// one (refused with 9, the IPv4 binding registered).
#[test]
fn the_client_and_the_home_agent_agree() {
    use mip4::ha::{HaConfig, HomeAgent, Output};
    use std::net::SocketAddrV4;
    use support::{COA, HA, HOA};
    let key: String = support::KEY.iter().map(|b| format!("{b:02x}")).collect();
    for (prefix_line, want) in [
        (
            "ipv6_prefix = \"2001:db8:10::/64\"",
            Ipv6Outcome::Granted(Ipv6Binding {
                prefix: "2001:db8:10::/64".parse().unwrap(),
                tunnel_to: Ipv6TunnelTo::CareOf,
            }),
        ),
        ("", Ipv6Outcome::Refused { code: 9 }),
    ] {
        let conf = format!(
            "home_agent = \"{HA}\"\n[[home_network]]\nprefix = \"10.1.0.0/24\"\n\
             [[mobile_node]]\nhome_address = \"{HOA}\"\nspi = {}\nkey = \"{key}\"\n{prefix_line}\n",
            support::SPI
        );
        let cfg = HaConfig::from_source(&mip4::config::Source::from_str("ha.conf", conf)).unwrap();
        let mut ha = HomeAgent::new(cfg, Box::new(rand::rngs::OsRng)).unwrap();
        let mut reg = support::config();
        reg.extensions = vec![
            prefix_request(),
            Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode),
        ];
        let mut mn = support::Mn::new(reg);
        mn.client.register(mn.now);
        let t = mn.one_transmit();
        let wall = mip4::replay::NtpTimestamp::from_system_time(support::wall());
        ha.handle_datagram(mn.now, wall, SocketAddrV4::new(COA, 434), &t.payload);
        while let Some(o) = ha.poll_output() {
            match o {
                Output::BindingUp(b) => ha.install_result(b.home_address, Ok(())),
                Output::Transmit { payload, .. } => mn.deliver(&payload),
                Output::BindingDown { .. } => panic!("nothing goes down"),
            }
        }
        let ipv6 = mn.client.binding().map(|b| b.ipv6);
        assert_eq!(ipv6, Some(want), "{prefix_line:?}");
    }
}
