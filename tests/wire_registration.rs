//! Registration Request/Reply and extensions against byte vectors built by
//! hand from the RFC layouts (RFC 5944 §3.3, §3.4, §3.5; RFC 2794;
//! RFC 3519 §3.1-§3.2; RFC 3846; RFC 5265; RFC 5454).

use std::net::{Ipv4Addr, Ipv6Addr};

use mip4::wire::extension::{self, ext_type};
use mip4::wire::{
    AuthExt, Dsmipv4Ext, Error, Extension, Flags, ReplyCode, ReplyPacket, ReplyRepr, RequestPacket,
    RequestRepr, UdpTunnelReply, UdpTunnelRequest,
};

/// A request with the G and T flags, lifetime 1800, then NAI "mn@x" and an
/// MN-HA auth extension with SPI 0x100 and a 16-octet authenticator.
fn request_bytes() -> Vec<u8> {
    let mut v = vec![
        1,    // Type
        0x0a, // S B D M G r T x = 0000 1010: G and T
        0x07, 0x08, // Lifetime 1800
        10, 0, 0, 5, // Home Address
        10, 0, 0, 1, // Home Agent
        192, 0, 2, 7, // Care-of Address
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // Identification
        131, 4, b'm', b'n', b'@', b'x', // NAI
        32, 20, 0, 0, 1, 0, // MN-HA auth, length 4 + 16, SPI 256
    ];
    v.extend(0xa0..0xb0u8); // authenticator
    v
}

#[test]
fn request_view_reads_every_field() {
    let b = request_bytes();
    let p = RequestPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.flags(), Flags::G | Flags::T);
    assert_eq!(p.lifetime(), 1800);
    assert_eq!(p.home_address(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(p.home_agent(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(p.care_of_address(), Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(p.identification(), 0x0102_0304_0506_0708);
    let exts: Vec<_> = p.extensions().collect::<Result<_, _>>().unwrap();
    assert_eq!(exts.len(), 2);
    assert_eq!(exts[0], (24, Extension::Nai(b"mn@x".to_vec())));
    // The auth extension starts after the 24-octet header and the 6-octet
    // NAI extension; the authenticator covers bytes up to offset 30+6.
    assert_eq!(
        exts[1],
        (
            30,
            Extension::MnHaAuth(AuthExt {
                spi: 256,
                authenticator: (0xa0..0xb0).collect()
            })
        )
    );
}

#[test]
fn request_repr_round_trips_byte_for_byte() {
    let b = request_bytes();
    let r = RequestRepr::parse(&RequestPacket::new_checked(&b[..]).unwrap()).unwrap();
    assert_eq!(r.buffer_len(), b.len());
    assert_eq!(r.to_bytes(), b);
}

#[test]
fn every_request_flag_has_its_rfc_bit_position() {
    // RFC 5944 §3.3: S B D M G r T x from the most significant bit.
    let cases = [
        (Flags::S, 0x80),
        (Flags::B, 0x40),
        (Flags::D, 0x20),
        (Flags::M, 0x10),
        (Flags::G, 0x08),
        (Flags::R, 0x04),
        (Flags::T, 0x02),
        (Flags::X, 0x01),
    ];
    for (flag, bit) in cases {
        let mut b = request_bytes();
        b[1] = bit;
        let p = RequestPacket::new_checked(&b[..]).unwrap();
        assert!(p.flags().contains(flag), "bit {bit:#04x}");
        for (other, obit) in cases {
            if obit != bit {
                assert!(
                    !p.flags().contains(other),
                    "bit {bit:#04x} also set {obit:#04x}"
                );
            }
        }
        let mut r = RequestRepr::parse(&p).unwrap();
        r.flags = Flags::empty();
        r.flags.insert(flag);
        assert_eq!(r.to_bytes()[1], bit);
    }
}

#[test]
fn reply_fields_and_round_trip() {
    let mut b = vec![
        3,   // Type
        133, // Code: identification mismatch
        0, 0, // Lifetime
        10, 0, 0, 5, 10, 0, 0, 1, // Home Address, Home Agent
        0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, // Identification
        145, 6, 1, b'c', b'l', b'o', b'c', b'k', // message string from HA
        44, 6, 0, 0, 0x80, 0, 0, 30, // UDP tunnel reply: accepted, F, keepalive 30
        32, 8, 0, 0, 1, 0, 1, 2, 3, 4, // MN-HA auth, SPI 256, 4-octet auth
    ];
    let p = ReplyPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.code(), ReplyCode::HA_IDENTIFICATION_MISMATCH);
    assert_eq!(p.lifetime(), 0);
    assert_eq!(p.home_address(), Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(p.home_agent(), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(p.identification(), 0xdead_beef_0000_0001);
    let r = ReplyRepr::parse(&p).unwrap();
    assert_eq!(
        r.extensions,
        vec![
            Extension::MessageString {
                sub_type: 1,
                text: b"clock".to_vec()
            },
            Extension::UdpTunnelReply(UdpTunnelReply {
                sub_type: 0,
                reply_code: 0,
                force: true,
                keepalive_interval: 30
            }),
            Extension::MnHaAuth(AuthExt {
                spi: 256,
                authenticator: vec![1, 2, 3, 4]
            }),
        ]
    );
    assert_eq!(r.to_bytes(), b);
    // Reserved bits of the UDP tunnel reply are ignored on receipt.
    b[20 + 8 + 5] = 0x01;
    let r2 = ReplyRepr::parse_bytes(&b).unwrap();
    assert_eq!(r2, r);
}

#[test]
fn udp_tunnel_request_layout() {
    // RFC 3519 §3.1: Sub-Type, Reserved 1, F R Reserved 2, Encapsulation,
    // Reserved 3.
    let data = [0, 0, 0x80 | 0x40, 4, 0, 0];
    let e = Extension::parse(ext_type::UDP_TUNNEL_REQUEST, &data).unwrap();
    let want = Extension::UdpTunnelRequest(UdpTunnelRequest {
        sub_type: 0,
        force: true,
        registration_through_fa: true,
        encapsulation: 4,
    });
    assert_eq!(e, want);
    for (byte, f, r) in [(0x80, true, false), (0x40, false, true), (0, false, false)] {
        let e = Extension::parse(144, &[0, 0, byte, 47, 0, 0]).unwrap();
        let Extension::UdpTunnelRequest(u) = e else {
            panic!("not a UDP tunnel request")
        };
        assert_eq!(
            (u.force, u.registration_through_fa, u.encapsulation),
            (f, r, 47)
        );
    }
    assert_eq!(want.to_bytes(), [144, 6, 0, 0, 0xc0, 4, 0, 0]);
    assert_eq!(
        Extension::parse(144, &[0, 0, 0, 4, 0]),
        Err(Error::BadLength)
    );
}

#[test]
fn tnc_and_dsmipv4_layouts() {
    assert_eq!(
        Extension::TrustedNetworksConfigured.to_bytes(),
        [149, 2, 0, 0]
    );
    assert_eq!(
        Extension::parse(149, &[0, 0]).unwrap(),
        Extension::TrustedNetworksConfigured
    );
    // An unknown TNC sub-type is a skippable extension we keep opaque.
    assert_eq!(
        Extension::parse(149, &[7, 0]).unwrap(),
        Extension::Unknown {
            type_: 149,
            data: vec![7, 0]
        }
    );
    assert_eq!(Extension::parse(149, &[0]), Err(Error::BadLength));

    let prefix: Ipv6Addr = "2001:db8:1::".parse().unwrap();
    let req = Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: 64,
        prefix,
    });
    let b = req.to_bytes();
    assert_eq!(&b[..4], [152, 18, 1, 64]);
    assert_eq!(&b[4..], prefix.octets());
    let rep = Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
        code: 0,
        prefix_length: 64,
        prefix,
    });
    let b = rep.to_bytes();
    assert_eq!(&b[..6], [152, 20, 2, 0, 64, 0]);
    assert_eq!(&b[6..], prefix.octets());
    let tm = Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode);
    assert_eq!(tm.to_bytes(), [152, 2, 3, 0]);
    for e in [req, rep, tm] {
        let b = e.to_bytes();
        assert_eq!(Extension::parse(b[0], &b[2..]).unwrap(), e);
    }
}

#[test]
fn unknown_skippable_extension_is_kept_and_skipped() {
    let mut b = request_bytes();
    b.truncate(24);
    b.extend([200, 3, 9, 9, 9, 131, 1, b'a']);
    let r = RequestRepr::parse_bytes(&b).unwrap();
    assert_eq!(
        r.extensions,
        vec![
            Extension::Unknown {
                type_: 200,
                data: vec![9, 9, 9]
            },
            Extension::Nai(b"a".to_vec())
        ]
    );
    assert_eq!(r.to_bytes(), b);
}

#[test]
fn unknown_non_skippable_extension_rejects_the_message() {
    let mut b = request_bytes();
    b.truncate(24);
    b.extend([131, 1, b'a', 99, 2, 0, 0, 32, 4, 0, 0, 0, 1]);
    assert_eq!(
        RequestRepr::parse_bytes(&b),
        Err(Error::UnknownExtension(99))
    );
    // The iterator still hands out what came before, with offsets.
    let p = RequestPacket::new_checked(&b[..]).unwrap();
    let mut it = p.extensions();
    assert_eq!(it.next(), Some(Ok((24, Extension::Nai(b"a".to_vec())))));
    assert_eq!(it.next(), Some(Err(Error::UnknownExtension(99))));
    assert_eq!(it.next(), None);
    // What the agents answer (RFC 5944 §1.9, §3.7.2.1, §3.8.2.1).
    assert_eq!(ReplyCode::for_unknown_extension(true), ReplyCode(134));
    assert_eq!(ReplyCode::for_unknown_extension(false), ReplyCode(70));
}

#[test]
fn truncation_and_bad_lengths_are_errors() {
    let b = request_bytes();
    for n in 0..24 {
        assert_eq!(
            RequestPacket::new_checked(&b[..n]).err(),
            Some(Error::Truncated)
        );
    }
    // Cut inside the auth extension: its Length now overruns the buffer.
    assert_eq!(
        RequestRepr::parse_bytes(&b[..b.len() - 1]),
        Err(Error::BadLength)
    );
    // Cut right after an extension's Type octet.
    assert_eq!(RequestRepr::parse_bytes(&b[..25]), Err(Error::Truncated));
    // Auth extension shorter than its SPI.
    let mut s = b[..24].to_vec();
    s.extend([32, 3, 0, 0, 0]);
    assert_eq!(RequestRepr::parse_bytes(&s), Err(Error::BadLength));
    // Wrong message types.
    assert_eq!(
        ReplyPacket::new_checked(&b[..]).err(),
        Some(Error::BadType(1))
    );
    let mut r = b.clone();
    r[0] = 3;
    assert_eq!(
        RequestPacket::new_checked(&r[..]).err(),
        Some(Error::BadType(3))
    );
    // Empty NAI (RFC 2794 needs at least one octet).
    let mut s = b[..24].to_vec();
    s.extend([131, 0]);
    assert!(matches!(
        RequestRepr::parse_bytes(&s),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn parse_all_gives_offsets_for_authentication() {
    let b = request_bytes();
    let all = extension::parse_all(&b, 24).unwrap();
    let offsets: Vec<usize> = all.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, [24, 30]);
    assert_eq!(extension::parse_all(&b, b.len() + 1), Err(Error::Truncated));
    assert_eq!(extension::parse_all(&b, b.len()).unwrap(), vec![]);
}

#[test]
fn reply_codes_have_names_and_classes() {
    assert_eq!(
        ReplyCode(133).to_string(),
        "133 (registration identification mismatch)"
    );
    assert!(ReplyCode(0).is_accepted() && ReplyCode(1).is_accepted());
    assert!(!ReplyCode(2).is_accepted());
    assert!(ReplyCode(64).is_fa_denial() && ReplyCode(127).is_fa_denial());
    assert!(!ReplyCode(63).is_fa_denial() && !ReplyCode(128).is_fa_denial());
    assert!(ReplyCode(128).is_ha_denial() && ReplyCode(255).is_ha_denial());
    // Every named code has a distinct name, and its class matches its range.
    let all = mip4::wire::code::ALL_NAMED;
    let mut names: Vec<_> = all.iter().map(|c| c.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len());
    for c in all {
        if c.is_fa_denial() {
            assert!(c.name().contains("foreign agent"), "{c}");
        }
    }
    // The RFC 3024 and RFC 3519 codes are there.
    for v in [74, 75, 76, 79, 137, 138, 139, 142] {
        assert!(all.contains(&ReplyCode(v)), "{v}");
    }
    assert!(ReplyCode(200).name().contains("unassigned"));
}
