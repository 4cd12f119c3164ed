//! DSMIPv4 (RFC 5454) in the registration client: the IPv6 Prefix Request
//! and the Tunneling Mode extension go out inside the authenticated part;
//! the IPv6 Prefix Reply is believed only from there; a home agent that
//! skips the extension leaves an IPv4-only binding (§3.5).

#[path = "mn_support/mod.rs"]
mod sim;
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

/// The node (src/mn/node/dsmip.rs) on top of the client: what each
/// reply's IPv6 part asks of the daemon.
mod node {
    use std::net::Ipv4Addr;

    use ipnet::Ipv6Net;
    use mip4::dataplane::binding::{Ipv6Binding, Ipv6TunnelTo};
    use mip4::mn::node::{Dsmipv4, Ipv6Home, NodeConfig};
    use mip4::mn::{Action, State, TrustPolicy};
    use mip4::wire::extension::Dsmipv4Ext;
    use mip4::wire::{Extension, ReplyCode};

    use super::sim::Sim;
    use super::support::{self, HA, HOA};

    const COA: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 5);
    const COA2: Ipv4Addr = Ipv4Addr::new(10, 20, 2, 5);

    fn prefix() -> Ipv6Net {
        "2001:db8:10::/64".parse().unwrap()
    }

    /// A node asking for a prefix, IPv6 to the care-of address.
    fn sim(reply: Option<(u8, Ipv6Net)>) -> Sim {
        let mut reg = support::config();
        reg.extensions = vec![
            super::prefix_request(),
            Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode),
        ];
        let mut cfg = NodeConfig::new(reg);
        cfg.interfaces = vec!["eth0".into(), "eth1".into()];
        cfg.home_network = Some("10.1.0.0/24".parse().unwrap());
        cfg.trust = TrustPolicy::Prefixes(vec!["10.20.0.0/16".parse().unwrap()]);
        cfg.dsmipv4 = Some(Dsmipv4 {
            interface_id: "::1".parse().unwrap(),
            routes: vec![Ipv6Net::default()],
        });
        let mut s = Sim::start(cfg);
        s.ha.ipv6_reply = reply;
        s
    }

    fn granted() -> Ipv6Home {
        Ipv6Home {
            binding: Ipv6Binding {
                prefix: prefix(),
                tunnel_to: Ipv6TunnelTo::CareOf,
            },
            address: "2001:db8:10::1".parse().unwrap(),
            routes: vec![Ipv6Net::default()],
        }
    }

    fn register(s: &mut Sim, ifname: &str, coa: Ipv4Addr) -> Vec<Action> {
        s.node.address_added(s.now, ifname, coa, 24);
        let (t, req) = s.one_transmit();
        assert!(req.extensions.contains(&super::prefix_request()), "{req:?}");
        s.answer(&t, ReplyCode::ACCEPTED);
        assert_eq!(s.node.state(), State::Registered { care_of: coa });
        s.actions()
    }

    fn ipv6_actions(a: &[Action]) -> Vec<Option<Ipv6Home>> {
        a.iter()
            .filter_map(|a| match a {
                Action::Ipv6Home { home, ipv6 } => {
                    assert_eq!(*home, HOA);
                    Some(ipv6.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// §2.2 code 1: the IPv6 home address after the tunnel it rides on;
    /// a move and a renewal granted the same prefix change nothing; back
    /// home it goes before the tunnel.
    #[test]
    fn a_granted_prefix_becomes_the_ipv6_home_address_for_the_tunnels_life() {
        let mut s = sim(Some((Dsmipv4Ext::CODE_ACCEPTED_TO_CARE_OF, prefix())));
        let a = register(&mut s, "eth0", COA);
        let up = a.iter().position(|a| matches!(a, Action::TunnelUp { .. }));
        let v6 = a.iter().position(|a| matches!(a, Action::Ipv6Home { .. }));
        assert!(up < v6, "IPv6 after its tunnel: {a:?}");
        assert_eq!(ipv6_actions(&a), vec![Some(granted())]);
        // A move: the tunnel moves, the IPv6 home address stays.
        s.node.address_removed(s.now, "eth0", COA);
        let a = register(&mut s, "eth1", COA2);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::TunnelUp { care_of, .. } if *care_of == COA2)));
        assert_eq!(ipv6_actions(&a), vec![], "{a:?}");
        // A renewal granted the same prefix.
        let renewal = loop {
            s.fire_next_timer();
            if let Some(t) = s.transmits().pop() {
                break t;
            }
        };
        s.answer(&renewal, ReplyCode::ACCEPTED);
        assert_eq!(s.node.state(), State::Registered { care_of: COA2 });
        assert_eq!(ipv6_actions(&s.actions()), vec![]);
        // Home: IPv6 removed, then the tunnel.
        s.node.address_removed(s.now, "eth1", COA2);
        s.node
            .address_added(s.now, "eth0", Ipv4Addr::new(10, 1, 0, 77), 24);
        let a = s.actions();
        let gone = a
            .iter()
            .position(|a| matches!(a, Action::Ipv6Home { ipv6: None, .. }));
        let down = a
            .iter()
            .position(|a| matches!(a, Action::TunnelDown { .. }));
        assert!(gone.is_some() && gone < down, "{a:?}");
    }

    /// §2.2 codes 8 and 9, and §3.5 (no Prefix Reply): the IPv4 binding
    /// and its tunnel, no IPv6 home address.
    #[test]
    fn a_refused_or_ignored_request_leaves_ipv4_alone() {
        for reply in [
            Some((Dsmipv4Ext::CODE_REJECTED_UNSPECIFIED, prefix())),
            Some((Dsmipv4Ext::CODE_REJECTED_PROHIBITED, prefix())),
            None,
        ] {
            let mut s = sim(reply);
            let a = register(&mut s, "eth0", COA);
            assert!(
                a.contains(&Action::TunnelUp {
                    home: HOA,
                    care_of: COA,
                    home_agent: HA,
                    reverse_tunnel: true
                }),
                "{reply:?}: {a:?}"
            );
            assert_eq!(ipv6_actions(&a), vec![], "{reply:?}");
        }
    }

    /// A prefix granted, then refused on the next registration: the IPv6
    /// home address goes, the IPv4 tunnel stays.
    #[test]
    fn a_later_refusal_removes_the_ipv6_home_address_only() {
        let mut s = sim(Some((Dsmipv4Ext::CODE_ACCEPTED_TO_CARE_OF, prefix())));
        register(&mut s, "eth0", COA);
        s.ha.ipv6_reply = Some((Dsmipv4Ext::CODE_REJECTED_PROHIBITED, prefix()));
        s.node.address_removed(s.now, "eth0", COA);
        let a = register(&mut s, "eth1", COA2);
        assert_eq!(ipv6_actions(&a), vec![None], "{a:?}");
        assert!(!a.iter().any(|a| matches!(a, Action::TunnelDown { .. })));
    }

    /// Through a foreign agent the Tunneling Mode extension stays home
    /// (the agent's care-of address is not the node's); the prefix is
    /// still asked for.
    #[test]
    fn through_a_foreign_agent_no_tunneling_mode_is_asked() {
        use mip4::mn::Client;
        let mut reg = support::config();
        reg.extensions = vec![
            super::prefix_request(),
            Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode),
        ];
        reg.foreign_agent = Some(support::FA);
        let mut c = Client::new(reg, std::time::Instant::now(), support::wall()).unwrap();
        c.register(std::time::Instant::now());
        let t = c.poll_transmit().unwrap();
        let req = support::FakeHa::new().parse(&t.payload);
        assert!(req.extensions.contains(&super::prefix_request()));
        assert!(!req
            .extensions
            .contains(&Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode)));
    }
}
