//! Property tests: `parse(emit(r)) == r` for every Repr, and arbitrary
//! bytes never panic any parser.

use std::net::{Ipv4Addr, Ipv6Addr};

use mip4::wire::extension::{self, ext_type};
use mip4::wire::icmp::{
    AdvFlags, AdvertisementPacket, AgentAdvertisementRepr, AgentSolicitationRepr, MobilityAgentAdv,
    SolicitationPacket,
};
use mip4::wire::tunnel::{TunnelDataPacket, TunnelDataRepr};
use mip4::wire::{
    AuthExt, Dsmipv4Ext, Extension, Flags, ReplyCode, ReplyPacket, ReplyRepr, RequestPacket,
    RequestRepr, UdpTunnelReply, UdpTunnelRequest,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}

fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

fn auth() -> impl Strategy<Value = AuthExt> {
    (any::<u32>(), vec(any::<u8>(), 0..=251))
        .prop_map(|(spi, authenticator)| AuthExt { spi, authenticator })
}

fn dsmipv4() -> impl Strategy<Value = Dsmipv4Ext> {
    prop_oneof![
        (any::<u8>(), ipv6()).prop_map(|(prefix_length, prefix)| Dsmipv4Ext::Ipv6PrefixRequest {
            prefix_length,
            prefix
        }),
        (any::<u8>(), any::<u8>(), ipv6()).prop_map(|(code, prefix_length, prefix)| {
            Dsmipv4Ext::Ipv6PrefixReply {
                code,
                prefix_length,
                prefix,
            }
        }),
        Just(Dsmipv4Ext::TunnelingMode),
    ]
}

/// Skippable types the codec does not interpret.
fn unknown_type() -> impl Strategy<Value = u8> {
    (128u8..=255).prop_filter("recognised type", |t| {
        ![
            ext_type::NAI,
            ext_type::UDP_TUNNEL_REQUEST,
            ext_type::MESSAGE_STRING,
            ext_type::TRUSTED_NETWORKS_CONFIGURED,
            ext_type::DSMIPV4,
        ]
        .contains(t)
    })
}

fn ext() -> impl Strategy<Value = Extension> {
    prop_oneof![
        auth().prop_map(Extension::MnHaAuth),
        auth().prop_map(Extension::MnFaAuth),
        auth().prop_map(Extension::FaHaAuth),
        vec(any::<u8>(), 1..=255).prop_map(Extension::Nai),
        (any::<u8>(), any::<bool>(), any::<bool>(), any::<u8>()).prop_map(
            |(sub_type, force, registration_through_fa, encapsulation)| {
                Extension::UdpTunnelRequest(UdpTunnelRequest {
                    sub_type,
                    force,
                    registration_through_fa,
                    encapsulation,
                })
            }
        ),
        (any::<u8>(), any::<u8>(), any::<bool>(), any::<u16>()).prop_map(
            |(sub_type, reply_code, force, keepalive_interval)| {
                Extension::UdpTunnelReply(UdpTunnelReply {
                    sub_type,
                    reply_code,
                    force,
                    keepalive_interval,
                })
            }
        ),
        Just(Extension::TrustedNetworksConfigured),
        dsmipv4().prop_map(Extension::Dsmipv4),
        (any::<u8>(), vec(any::<u8>(), 0..=254))
            .prop_map(|(sub_type, text)| Extension::MessageString { sub_type, text }),
        (unknown_type(), vec(any::<u8>(), 0..=255))
            .prop_map(|(type_, data)| Extension::Unknown { type_, data }),
    ]
}

fn request() -> impl Strategy<Value = RequestRepr> {
    (
        any::<u8>(),
        any::<u16>(),
        ipv4(),
        ipv4(),
        ipv4(),
        any::<u64>(),
        vec(ext(), 0..6),
    )
        .prop_map(
            |(f, lifetime, ha, agent, coa, id, extensions)| RequestRepr {
                flags: Flags(f),
                lifetime,
                home_address: ha,
                home_agent: agent,
                care_of_address: coa,
                identification: id,
                extensions,
            },
        )
}

fn reply() -> impl Strategy<Value = ReplyRepr> {
    (
        any::<u8>(),
        any::<u16>(),
        ipv4(),
        ipv4(),
        any::<u64>(),
        vec(ext(), 0..6),
    )
        .prop_map(|(code, lifetime, ha, agent, id, extensions)| ReplyRepr {
            code: ReplyCode(code),
            lifetime,
            home_address: ha,
            home_agent: agent,
            identification: id,
            extensions,
        })
}

fn advertisement() -> impl Strategy<Value = AgentAdvertisementRepr> {
    (
        any::<u8>(),
        any::<u16>(),
        vec((ipv4(), any::<i32>()), 0..4),
        (any::<u16>(), any::<u16>(), any::<u16>(), vec(ipv4(), 0..8)),
        proptest::option::of(vec(any::<u8>(), 0..=255)),
        vec((128u8..=255, vec(any::<u8>(), 0..=255)), 0..3),
        any::<bool>(),
    )
        .prop_map(
            |(code, lifetime, routers, (seq, rl, fl, coas), prefix_lengths, unknown, padding)| {
                AgentAdvertisementRepr {
                    code,
                    lifetime,
                    routers,
                    mobility: MobilityAgentAdv {
                        sequence: seq,
                        registration_lifetime: rl,
                        flags: AdvFlags(fl),
                        care_of_addresses: coas,
                    },
                    prefix_lengths,
                    unknown,
                    padding,
                }
            },
        )
}

proptest! {
    #[test]
    fn request_round_trip(r in request()) {
        let b = r.to_bytes();
        prop_assert_eq!(b.len(), r.buffer_len());
        let p = RequestPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(RequestRepr::parse(&p).unwrap(), r.clone());
        // Offsets reported by the iterator point at each Type octet.
        for (at, e) in p.extensions().map(Result::unwrap) {
            prop_assert_eq!(b[at], e.type_());
        }
    }

    #[test]
    fn reply_round_trip(r in reply()) {
        let b = r.to_bytes();
        prop_assert_eq!(ReplyRepr::parse_bytes(&b).unwrap(), r);
    }

    #[test]
    fn extension_round_trip(e in ext()) {
        let b = e.to_bytes();
        prop_assert_eq!(b.len(), e.buffer_len());
        prop_assert_eq!(extension::parse_all(&b, 0).unwrap(), vec![(0, e)]);
    }

    #[test]
    fn advertisement_round_trip(r in advertisement()) {
        let b = r.to_bytes();
        prop_assert_eq!(b.len(), r.buffer_len());
        prop_assert_eq!(AgentAdvertisementRepr::parse_bytes(&b).unwrap(), r);
    }

    #[test]
    fn tunnel_data_round_trip(nh in any::<u8>(), payload in vec(any::<u8>(), 0..64)) {
        let r = TunnelDataRepr { next_header: nh };
        let b = r.to_bytes_with(&payload);
        let p = TunnelDataPacket::new_checked(&b[..]).unwrap();
        prop_assert_eq!(TunnelDataRepr::parse(&p).unwrap(), r);
        prop_assert_eq!(p.payload(), &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut b in vec(any::<u8>(), 0..300), t in 0u8..6) {
        // Force the type octet half of the time so parsing goes deep.
        if !b.is_empty() && t < 3 {
            b[0] = [1, 3, 4][usize::from(t)];
        }
        let _ = RequestRepr::parse_bytes(&b);
        let _ = ReplyRepr::parse_bytes(&b);
        let _ = extension::parse_all(&b, 0);
        if let Ok(p) = TunnelDataPacket::new_checked(&b[..]) {
            let _ = TunnelDataRepr::parse(&p);
            let _ = p.payload();
        }
        if let Ok(p) = RequestPacket::new_checked(&b[..]) {
            let _ = (p.flags(), p.lifetime(), p.home_address(), p.identification());
            let _: Vec<_> = p.extensions().collect();
        }
        if let Ok(p) = ReplyPacket::new_checked(&b[..]) {
            let _ = (p.code(), p.home_agent(), p.identification());
            let _: Vec<_> = p.extensions().collect();
        }
    }

    #[test]
    fn arbitrary_icmp_never_panics(mut b in vec(any::<u8>(), 0..300), fix in any::<bool>()) {
        if b.len() >= 8 {
            b[0] = 9;
            if fix {
                // Make the checksum right so parsing reaches the extensions.
                b[2] = 0;
                b[3] = 0;
                let c = mip4::wire::icmp::checksum(&b);
                b[2..4].copy_from_slice(&c.to_be_bytes());
            }
        }
        if let Ok(p) = AdvertisementPacket::new_checked(&b[..]) {
            for i in 0..usize::from(p.num_addrs()) {
                let _ = p.router(i);
            }
            let _ = AgentAdvertisementRepr::parse(&p);
        }
        let _ = AgentAdvertisementRepr::parse_bytes(&b);
        let _ = AgentSolicitationRepr::parse_bytes(&b);
        if let Ok(p) = SolicitationPacket::new_checked(&b[..]) {
            let _ = p.reserved();
        }
    }
}
