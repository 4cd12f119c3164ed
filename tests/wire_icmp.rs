//! Agent Advertisement / Solicitation (RFC 5944 §2.1-§2.2) and the
//! RFC 3519 §3.3 Tunnel Data header, against hand-built byte vectors.

use std::net::Ipv4Addr;

use mip4::wire::icmp::{
    checksum, AdvFlags, AdvertisementPacket, AgentAdvertisementRepr, AgentSolicitationRepr,
    MobilityAgentAdv, SolicitationPacket,
};
use mip4::wire::tunnel::{TunnelDataPacket, TunnelDataRepr};
use mip4::wire::Error;

/// One router 192.0.2.1 (preference 0), FA with R F T U set, sequence 7,
/// registration lifetime 600, CoA 192.0.2.1, prefix length 24, padding.
fn advertisement_bytes() -> Vec<u8> {
    let mut v = vec![
        9, 16, 0, 0, // type, code 16, checksum (filled below)
        1, 2, 0x07, 0x08, // 1 address, entry size 2, lifetime 1800
        192, 0, 2, 1, 0, 0, 0, 0, // router address, preference
        16, 10, 0, 7, 0x02, 0x58, // ext 16: len 6+4, seq 7, reg lifetime 600
        0x91, 0x80, // R . . F . . . T | U . . . . . . .
        192, 0, 2, 1, // care-of address
        19, 1, 24, // prefix lengths
        0,  // one-byte padding
    ];
    let c = checksum(&v);
    v[2..4].copy_from_slice(&c.to_be_bytes());
    v
}

#[test]
fn checksum_matches_rfc1071_example() {
    // RFC 1071 §3 example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
    assert_eq!(
        checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
        !0xddf2
    );
    // Odd length pads with a zero octet.
    assert_eq!(checksum(&[0xff]), !0xff00);
}

#[test]
fn advertisement_fields() {
    let b = advertisement_bytes();
    let p = AdvertisementPacket::new_checked(&b[..]).unwrap();
    assert!(p.verify_checksum());
    assert_eq!(p.code(), 16);
    assert_eq!(p.lifetime(), 1800);
    assert_eq!(p.router(0), (Ipv4Addr::new(192, 0, 2, 1), 0));
    let r = AgentAdvertisementRepr::parse(&p).unwrap();
    assert_eq!(
        r,
        AgentAdvertisementRepr {
            code: 16,
            lifetime: 1800,
            routers: vec![(Ipv4Addr::new(192, 0, 2, 1), 0)],
            mobility: MobilityAgentAdv {
                sequence: 7,
                registration_lifetime: 600,
                flags: AdvFlags::R | AdvFlags::F | AdvFlags::T | AdvFlags::U,
                care_of_addresses: vec![Ipv4Addr::new(192, 0, 2, 1)],
            },
            prefix_lengths: Some(vec![24]),
            unknown: vec![],
            padding: true,
        }
    );
    assert_eq!(r.to_bytes(), b);
}

#[test]
fn every_advertisement_flag_has_its_rfc_bit_position() {
    // RFC 5944 §2.1.1: R B H F M G r T U X I, then 5 reserved bits.
    let flags = [
        AdvFlags::R,
        AdvFlags::B,
        AdvFlags::H,
        AdvFlags::F,
        AdvFlags::M,
        AdvFlags::G,
        AdvFlags::LOWER_R,
        AdvFlags::T,
        AdvFlags::U,
        AdvFlags::X,
        AdvFlags::I,
    ];
    for (i, f) in flags.iter().enumerate() {
        let bit = 0x8000u16 >> i;
        let mut b = advertisement_bytes();
        b[22..24].copy_from_slice(&bit.to_be_bytes());
        b[2..4].copy_from_slice(&[0, 0]);
        let c = checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        let r = AgentAdvertisementRepr::parse_bytes(&b).unwrap();
        assert_eq!(r.mobility.flags, *f, "bit {i}");
        for (j, g) in flags.iter().enumerate() {
            assert_eq!(r.mobility.flags.contains(*g), i == j);
        }
    }
}

#[test]
fn advertisement_errors() {
    let b = advertisement_bytes();
    let mut bad = b.clone();
    bad[2] ^= 1;
    assert_eq!(
        AgentAdvertisementRepr::parse_bytes(&bad),
        Err(Error::Malformed("bad ICMP checksum"))
    );
    // Num Addrs larger than the buffer holds.
    let mut bad = b.clone();
    bad[4] = 9;
    assert_eq!(
        AdvertisementPacket::new_checked(&bad[..]).err(),
        Some(Error::Truncated)
    );
    let mut bad = b.clone();
    bad[5] = 1;
    assert!(matches!(
        AdvertisementPacket::new_checked(&bad[..]).err(),
        Some(Error::Malformed(_))
    ));
    // A plain router advertisement (no extension 16) is not an agent one.
    let mut plain = b[..16].to_vec();
    plain[2..4].copy_from_slice(&[0, 0]);
    let c = checksum(&plain);
    plain[2..4].copy_from_slice(&c.to_be_bytes());
    assert!(matches!(
        AgentAdvertisementRepr::parse_bytes(&plain),
        Err(Error::Malformed(_))
    ));
    // Mobility extension with a length that is not 6 + 4n.
    let mut odd = b[..16].to_vec();
    odd.extend([16, 7, 0, 0, 0, 0, 0, 0, 1]);
    odd[2..4].copy_from_slice(&[0, 0]);
    let c = checksum(&odd);
    odd[2..4].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        AgentAdvertisementRepr::parse_bytes(&odd),
        Err(Error::BadLength)
    );
    // Unknown non-skippable extension.
    let mut unk = b.clone();
    unk.pop();
    unk.extend([42, 0]);
    unk[2..4].copy_from_slice(&[0, 0]);
    let c = checksum(&unk);
    unk[2..4].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        AgentAdvertisementRepr::parse_bytes(&unk),
        Err(Error::UnknownExtension(42))
    );
}

#[test]
fn solicitation() {
    let b = AgentSolicitationRepr.to_bytes();
    assert_eq!(b, [10, 0, 0xf5, 0xff, 0, 0, 0, 0]);
    let p = SolicitationPacket::new_checked(&b[..]).unwrap();
    assert!(p.verify_checksum());
    assert_eq!(AgentSolicitationRepr::parse(&p), Ok(AgentSolicitationRepr));
    assert_eq!(
        AgentSolicitationRepr::parse_bytes(&b[..7]),
        Err(Error::Truncated)
    );
    assert_eq!(
        AgentSolicitationRepr::parse_bytes(&[9, 0, 0, 0, 0, 0, 0, 0]),
        Err(Error::BadType(9))
    );
    let mut bad = b.clone();
    bad[7] = 1;
    assert!(AgentSolicitationRepr::parse_bytes(&bad).is_err());
}

#[test]
fn tunnel_data_header() {
    let inner = [0x45, 0, 0, 20];
    let b = TunnelDataRepr { next_header: 4 }.to_bytes_with(&inner);
    assert_eq!(b, [4, 4, 0, 0, 0x45, 0, 0, 20]);
    let p = TunnelDataPacket::new_checked(&b[..]).unwrap();
    assert_eq!(p.next_header(), 4);
    assert_eq!(p.reserved(), 0);
    assert_eq!(p.payload(), inner);
    assert_eq!(
        TunnelDataRepr::parse(&p),
        Ok(TunnelDataRepr { next_header: 4 })
    );
    assert_eq!(
        TunnelDataPacket::new_checked(&b[..3]).err(),
        Some(Error::Truncated)
    );
    assert_eq!(
        TunnelDataPacket::new_checked(&[1u8, 4, 0, 0][..]).err(),
        Some(Error::BadType(1))
    );
}
