//! Conformance against independent implementations.
//!
//! 1. Each message kind is encoded by the codec, written to a pcap (IPv4
//!    with UDP port 434, or ICMP for agent discovery) and dissected by
//!    Wireshark's tshark; every `mip.*` / `icmp.*` field tshark reports
//!    must equal, in order, the list this file derives from the Repr's
//!    fields (never from the emitted bytes).
//! 2. scapy's MobileIP layer (PyPI `scapy`) encodes requests, replies and
//!    tunnel data (tests/conformance/scapy_requests.py) that the codec
//!    must decode with the expected fields.
//!
//! Both tools are required: a missing tool fails the test with the
//! command that installs it (`make check` installs them).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mip4::wire::icmp::{AdvFlags, AgentAdvertisementRepr, AgentSolicitationRepr, MobilityAgentAdv};
use mip4::wire::tunnel::{TunnelDataPacket, TunnelDataRepr};
use mip4::wire::{
    AuthExt, Dsmipv4Ext, Extension, Flags, ReplyCode, ReplyRepr, RequestRepr, UdpTunnelReply,
    UdpTunnelRequest, MIP_PORT,
};

// ---------------------------------------------------------------- tools

fn python() -> String {
    std::env::var("MIP4_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn helper(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

fn require_tshark() {
    let ok = Command::new("tshark")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark not found: conformance needs it (apt-get install -y tshark; `make check` installs it)"
    );
}

/// Checks that scapy's MobileIP layer imports in the interpreter the tests
/// use. Tests install nothing: scripts/install-deps.sh (run by `make
/// check`) installs scapy.
fn require_scapy() {
    let ok = Command::new(python())
        .args(["-c", "import scapy.layers.mobileip"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "scapy not importable by {}: run scripts/install-deps.sh (`make check` does)",
        python()
    );
}

// ----------------------------------------------------------------- pcap

/// IPv4 header (RFC 791) with its checksum.
fn ipv4(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut h = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0,
        1,
        0,
        0,
        ttl,
        proto,
        0,
        0,
    ];
    h.extend(src.octets());
    h.extend(dst.octets());
    let c = mip4::wire::icmp::checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend(payload);
    h
}

fn udp434(src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let len = 8 + payload.len();
    let mut u = Vec::with_capacity(len);
    u.extend(MIP_PORT.to_be_bytes());
    u.extend(MIP_PORT.to_be_bytes());
    u.extend((len as u16).to_be_bytes());
    u.extend([0, 0]); // no UDP checksum (allowed over IPv4)
    u.extend(payload);
    ipv4(17, src, dst, 64, &u)
}

/// Writes a classic pcap (24-octet global header, 16-octet record
/// headers) with link type 101, raw IP. Written by hand: it is 40 octets
/// of headers and spares a dev-dependency.
fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend(0xa1b2_c3d4u32.to_le_bytes());
    out.extend(2u16.to_le_bytes());
    out.extend(4u16.to_le_bytes());
    out.extend(0i32.to_le_bytes()); // thiszone
    out.extend(0u32.to_le_bytes()); // sigfigs
    out.extend(65535u32.to_le_bytes()); // snaplen
    out.extend(101u32.to_le_bytes()); // LINKTYPE_RAW
    for (i, f) in frames.iter().enumerate() {
        out.extend((1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend((f.len() as u32).to_le_bytes());
        out.extend(f);
    }
    std::fs::write(path, out).unwrap();
}

type Field = (String, String, String); // name, show, value (hex)

/// Dissects `frames` with tshark and returns, per packet, the fields whose
/// names start with `prefix` (e.g. "mip." or "icmp.").
fn dissect(frames: &[Vec<u8>], prefix: &str) -> Vec<Vec<Field>> {
    require_tshark();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("frames.pcap");
    write_pcap(&pcap, frames);
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "udp.port==434,mip", "-T", "pdml"])
        .stderr(Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}", pcap.display());
    let mut flat = Command::new(python())
        .arg(helper("pdml_fields.py"))
        .args(["mip", "icmp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3 for the PDML helper");
    use std::io::Write;
    flat.stdin.take().unwrap().write_all(&out.stdout).unwrap();
    let flat = flat.wait_with_output().unwrap();
    assert!(flat.status.success(), "pdml_fields.py failed");
    let text = String::from_utf8_lossy(&flat.stdout);
    let mut packets: Vec<Vec<Field>> = Vec::new();
    for line in text.lines() {
        if line == "packet" {
            packets.push(Vec::new());
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let (n, s, v) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if n.starts_with(prefix) {
            packets
                .last_mut()
                .expect("field before packet")
                .push((n.into(), s.into(), v.into()));
        }
    }
    assert_eq!(
        packets.len(),
        frames.len(),
        "tshark saw a different number of packets"
    );
    packets
}

/// Compares tshark's (name, value) list with the expected one, in order,
/// and shows both in full on mismatch.
fn assert_fields(got: &[Field], want: &[(String, String)], what: &str) {
    let got_nv: Vec<(String, String)> =
        got.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect();
    if got_nv != want {
        let mut msg = format!("{what}: tshark disagrees with the codec\n  tshark:\n");
        for (n, s, v) in got {
            let _ = writeln!(msg, "    {n} = {v} ({s})");
        }
        msg.push_str("  expected:\n");
        for (n, v) in want {
            let _ = writeln!(msg, "    {n} = {v}");
        }
        panic!("{msg}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn show_of<'a>(got: &'a [Field], name: &str) -> Vec<&'a str> {
    got.iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, s, _)| s.as_str())
        .collect()
}

/// Expected fields of `mip` extensions, from the Repr.
fn want_extensions(exts: &[Extension], w: &mut Vec<(String, String)>) {
    let mut push = |n: &str, v: String| w.push((n.to_string(), v));
    for e in exts {
        push("mip.ext.type", format!("{:02x}", e.type_()));
        push("mip.ext.len", format!("{:02x}", e.data_len()));
        match e {
            Extension::MnHaAuth(a) | Extension::MnFaAuth(a) | Extension::FaHaAuth(a) => {
                push("mip.auth.spi", format!("{:08x}", a.spi));
                push("mip.auth.auth", hex(&a.authenticator));
            }
            Extension::Nai(n) => push("mip.nai", hex(n)),
            Extension::UdpTunnelRequest(u) => {
                let flags = (u8::from(u.force) << 7) | (u8::from(u.registration_through_fa) << 6);
                push("mip.ext.utrq.subtype", format!("{:02x}", u.sub_type));
                push("mip.ext.utrq.reserved1", "00".into());
                push("mip.ext.utrq.flags", format!("{flags:02x}"));
                push("mip.ext.utrq.f", u8::from(u.force).to_string());
                push(
                    "mip.ext.utrq.r",
                    u8::from(u.registration_through_fa).to_string(),
                );
                push("mip.ext.utrq.reserved2", "0".into());
                push("mip.ext.utrq.encaptype", format!("{:02x}", u.encapsulation));
                push("mip.ext.utrq.reserved3", "0000".into());
            }
            Extension::UdpTunnelReply(u) => {
                push("mip.ext.utrp.subtype", format!("{:02x}", u.sub_type));
                push("mip.ext.utrp.code", format!("{:02x}", u.reply_code));
                push(
                    "mip.ext.utrp.flags",
                    if u.force { "8000" } else { "0000" }.into(),
                );
                push("mip.ext.utrp.f", u8::from(u.force).to_string());
                push("mip.ext.utrp.reserved", "0".into());
                push(
                    "mip.ext.utrp.keepalive",
                    format!("{:04x}", u.keepalive_interval),
                );
            }
            Extension::MessageString { sub_type, text } => {
                push("mip.ext.msgstr.subtype", format!("{sub_type:02x}"));
                push("mip.ext.msgstr.text", hex(text));
            }
            // tshark 4.0 knows types 149 and 152 by name only and shows
            // their data as bytes; the layout is checked field by field in
            // tests/wire_registration.rs against RFC 5265 / RFC 5454.
            Extension::TrustedNetworksConfigured => push("mip.extension", "0000".into()),
            Extension::Dsmipv4(d) => {
                let mut data = Vec::new();
                match d {
                    Dsmipv4Ext::Ipv6PrefixRequest {
                        prefix_length,
                        prefix,
                    } => {
                        data.extend([1, *prefix_length]);
                        data.extend(prefix.octets());
                    }
                    Dsmipv4Ext::Ipv6PrefixReply {
                        code,
                        prefix_length,
                        prefix,
                    } => {
                        data.extend([2, *code, *prefix_length, 0]);
                        data.extend(prefix.octets());
                    }
                    Dsmipv4Ext::TunnelingMode => data.extend([3, 0]),
                }
                push("mip.extension", hex(&data));
            }
            Extension::Unknown { data, .. } => push("mip.extension", hex(data)),
        }
    }
}

fn want_request(r: &RequestRepr) -> Vec<(String, String)> {
    let f = r.flags;
    let bit = |x: Flags| u8::from(f.contains(x)).to_string();
    let mut w: Vec<(String, String)> = vec![
        ("mip.type".into(), "01".into()),
        ("mip.flags".into(), format!("{:02x}", f.bits())),
        ("mip.s".into(), bit(Flags::S)),
        ("mip.b".into(), bit(Flags::B)),
        ("mip.d".into(), bit(Flags::D)),
        ("mip.m".into(), bit(Flags::M)),
        ("mip.g".into(), bit(Flags::G)),
        // Wireshark still calls the reserved 'r' bit "v" (VJ compression,
        // RFC 2002); RFC 5944 §3.3 reserved it.
        ("mip.v".into(), bit(Flags::R)),
        ("mip.t".into(), bit(Flags::T)),
        ("mip.x".into(), bit(Flags::X)),
        ("mip.life".into(), format!("{:04x}", r.lifetime)),
        ("mip.homeaddr".into(), hex(&r.home_address.octets())),
        ("mip.haaddr".into(), hex(&r.home_agent.octets())),
        ("mip.coa".into(), hex(&r.care_of_address.octets())),
        ("mip.ident".into(), format!("{:016x}", r.identification)),
    ];
    want_extensions(&r.extensions, &mut w);
    w
}

fn want_reply(r: &ReplyRepr) -> Vec<(String, String)> {
    let mut w: Vec<(String, String)> = vec![
        ("mip.type".into(), "03".into()),
        ("mip.code".into(), format!("{:02x}", r.code.0)),
        ("mip.life".into(), format!("{:04x}", r.lifetime)),
        ("mip.homeaddr".into(), hex(&r.home_address.octets())),
        ("mip.haaddr".into(), hex(&r.home_agent.octets())),
        ("mip.ident".into(), format!("{:016x}", r.identification)),
    ];
    want_extensions(&r.extensions, &mut w);
    w
}

// -------------------------------------------------------------- messages

const MN: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

fn auth(spi: u32) -> AuthExt {
    AuthExt {
        spi,
        authenticator: (0..16).map(|i| 0xa0 ^ i).collect(),
    }
}

fn requests() -> Vec<RequestRepr> {
    let base = RequestRepr {
        flags: Flags::empty(),
        lifetime: 1800,
        home_address: Ipv4Addr::new(10, 1, 0, 5),
        home_agent: HA,
        care_of_address: MN,
        identification: 0xe6c4_5a3b_0000_0001,
        extensions: vec![],
    };
    let mut out = Vec::new();
    // One request per flag bit, so each of tshark's flag fields is seen
    // set alone.
    for bit in 0..8 {
        let mut r = base.clone();
        r.flags = Flags(0x80 >> bit);
        r.identification += bit;
        out.push(r);
    }
    // Every extension kind.
    let mut r = base.clone();
    r.flags = Flags::T | Flags::D;
    r.extensions = vec![
        Extension::Nai(b"alice@example.com".to_vec()),
        Extension::UdpTunnelRequest(UdpTunnelRequest {
            sub_type: 0,
            force: true,
            registration_through_fa: false,
            encapsulation: 4,
        }),
        Extension::TrustedNetworksConfigured,
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
            prefix_length: 64,
            prefix: "2001:db8:5::".parse::<Ipv6Addr>().unwrap(),
        }),
        Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode),
        Extension::Unknown {
            type_: 200,
            data: vec![1, 2, 3],
        },
        Extension::MnHaAuth(auth(0x100)),
        Extension::MnFaAuth(auth(0x101)),
    ];
    out.push(r);
    let mut r = base;
    r.extensions = vec![
        Extension::UdpTunnelRequest(UdpTunnelRequest {
            sub_type: 0,
            force: false,
            registration_through_fa: true,
            encapsulation: 47,
        }),
        Extension::FaHaAuth(auth(7)),
    ];
    out.push(r);
    out
}

fn replies() -> Vec<ReplyRepr> {
    let base = ReplyRepr {
        code: ReplyCode::ACCEPTED,
        lifetime: 1800,
        home_address: Ipv4Addr::new(10, 1, 0, 5),
        home_agent: HA,
        identification: 0xe6c4_5a3b_0000_0001,
        extensions: vec![],
    };
    let mut a = base.clone();
    a.extensions = vec![
        Extension::UdpTunnelReply(UdpTunnelReply {
            sub_type: 0,
            reply_code: 0,
            force: true,
            keepalive_interval: 110,
        }),
        Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixReply {
            code: 0,
            prefix_length: 64,
            prefix: "2001:db8:5::".parse::<Ipv6Addr>().unwrap(),
        }),
        Extension::MnHaAuth(auth(0x100)),
    ];
    let mut d = base;
    d.code = ReplyCode::HA_IDENTIFICATION_MISMATCH;
    d.lifetime = 0;
    d.extensions = vec![
        Extension::MessageString {
            sub_type: 1,
            text: b"clock skew".to_vec(),
        },
        Extension::MnHaAuth(auth(0x100)),
    ];
    vec![a, d]
}

// ---------------------------------------------------------------- tshark

#[test]
fn tshark_dissects_registration_requests_as_encoded() {
    let reqs = requests();
    let frames: Vec<_> = reqs.iter().map(|r| udp434(MN, HA, &r.to_bytes())).collect();
    let got = dissect(&frames, "mip.");
    for (i, (r, g)) in reqs.iter().zip(&got).enumerate() {
        assert_fields(g, &want_request(r), &format!("request {i}"));
    }
    // Text fields as tshark shows them.
    assert_eq!(show_of(&got[8], "mip.nai"), ["alice@example.com"]);
    assert_eq!(
        show_of(&got[8], "mip.auth.spi"),
        ["0x00000100", "0x00000101"]
    );
    assert_eq!(show_of(&got[8], "mip.coa"), ["192.0.2.7"]);
}

#[test]
fn tshark_dissects_registration_replies_as_encoded() {
    let reps = replies();
    let frames: Vec<_> = reps.iter().map(|r| udp434(HA, MN, &r.to_bytes())).collect();
    let got = dissect(&frames, "mip.");
    for (i, (r, g)) in reps.iter().zip(&got).enumerate() {
        assert_fields(g, &want_reply(r), &format!("reply {i}"));
    }
    assert_eq!(show_of(&got[1], "mip.code"), ["133"]);
    assert_eq!(show_of(&got[1], "mip.ext.msgstr.text"), ["clock skew"]);
    assert_eq!(show_of(&got[0], "mip.ext.utrp.keepalive"), ["110"]);
}

#[test]
fn tshark_dissects_tunnel_data_as_encoded() {
    let inner = ipv4(
        17,
        Ipv4Addr::new(10, 1, 0, 5),
        Ipv4Addr::new(10, 1, 0, 9),
        64,
        &[0; 8],
    );
    let frames: Vec<_> = [4u8, 47, 55]
        .iter()
        .map(|&nh| {
            udp434(
                MN,
                HA,
                &TunnelDataRepr { next_header: nh }.to_bytes_with(&inner),
            )
        })
        .collect();
    let got = dissect(&frames, "mip.");
    for (nh, g) in [4u8, 47, 55].iter().zip(&got) {
        let want = vec![
            ("mip.type".into(), "04".into()),
            ("mip.nattt.nexthdr".into(), format!("{nh:02x}")),
            ("mip.nattt.reserved".into(), "0000".into()),
        ];
        assert_fields(g, &want, "tunnel data");
    }
}

fn advertisement() -> AgentAdvertisementRepr {
    AgentAdvertisementRepr {
        code: 16,
        lifetime: 1800,
        routers: vec![
            (Ipv4Addr::new(192, 0, 2, 1), 0),
            (Ipv4Addr::new(192, 0, 2, 2), -1),
        ],
        mobility: MobilityAgentAdv {
            sequence: 300,
            registration_lifetime: 600,
            flags: AdvFlags::R | AdvFlags::F | AdvFlags::T | AdvFlags::U,
            care_of_addresses: vec![Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 9)],
        },
        prefix_lengths: Some(vec![24, 24]),
        unknown: vec![],
        padding: true,
    }
}

#[test]
fn tshark_dissects_agent_advertisements_as_encoded() {
    // One advertisement per flag bit, plus the one above.
    let mut advs = vec![advertisement()];
    for bit in 0..11 {
        let mut a = advertisement();
        a.mobility.flags = AdvFlags(0x8000 >> bit);
        a.padding = bit % 2 == 0;
        a.prefix_lengths = None;
        advs.push(a);
    }
    let src = Ipv4Addr::new(192, 0, 2, 1);
    let frames: Vec<_> = advs
        .iter()
        .map(|a| ipv4(1, src, Ipv4Addr::new(224, 0, 0, 1), 1, &a.to_bytes()))
        .collect();
    let got = dissect(&frames, "icmp.");
    for (i, (a, g)) in advs.iter().zip(&got).enumerate() {
        let m = &a.mobility;
        let f = m.flags;
        let bit = |x: AdvFlags| u8::from(f.contains(x)).to_string();
        let mut w: Vec<(String, String)> = vec![
            ("icmp.type".into(), "09".into()),
            ("icmp.code".into(), format!("{:02x}", a.code)),
            ("icmp.checksum".into(), hex(&a.to_bytes()[2..4])),
            ("icmp.checksum.status".into(), String::new()),
            ("icmp.num_addrs".into(), format!("{:02x}", a.routers.len())),
            ("icmp.addr_entry_size".into(), "02".into()),
            ("icmp.lifetime".into(), format!("{:04x}", a.lifetime)),
        ];
        for (addr, pref) in &a.routers {
            w.push(("icmp.router_address".into(), hex(&addr.octets())));
            w.push(("icmp.pref_level".into(), format!("{pref:08x}")));
        }
        w.extend([
            ("icmp.mip.type".into(), "10".into()),
            (
                "icmp.mip.length".into(),
                format!("{:02x}", 6 + 4 * m.care_of_addresses.len()),
            ),
            ("icmp.mip.seq".into(), format!("{:04x}", m.sequence)),
            (
                "icmp.mip.life".into(),
                format!("{:04x}", m.registration_lifetime),
            ),
            ("icmp.mip.flags".into(), format!("{:04x}", f.0)),
            ("icmp.mip.r".into(), bit(AdvFlags::R)),
            ("icmp.mip.b".into(), bit(AdvFlags::B)),
            ("icmp.mip.h".into(), bit(AdvFlags::H)),
            ("icmp.mip.f".into(), bit(AdvFlags::F)),
            ("icmp.mip.m".into(), bit(AdvFlags::M)),
            ("icmp.mip.g".into(), bit(AdvFlags::G)),
            ("icmp.mip.v".into(), bit(AdvFlags::LOWER_R)),
            ("icmp.mip.rt".into(), bit(AdvFlags::T)),
            ("icmp.mip.u".into(), bit(AdvFlags::U)),
            ("icmp.mip.x".into(), bit(AdvFlags::X)),
            // tshark 4.0 has no field for I (RFC 4857): it is part of its
            // "reserved" bits.
            ("icmp.mip.reserved".into(), format!("{:x}", f.0 & 0x3f)),
        ]);
        for coa in &m.care_of_addresses {
            w.push(("icmp.mip.coa".into(), hex(&coa.octets())));
        }
        if let Some(p) = &a.prefix_lengths {
            w.push(("icmp.mip.type".into(), "13".into()));
            w.push(("icmp.mip.length".into(), format!("{:02x}", p.len())));
            for l in p {
                w.push(("icmp.mip.prefixlength".into(), format!("{l:02x}")));
            }
        }
        if a.padding {
            w.push(("icmp.mip.type".into(), "00".into()));
        }
        assert_fields(g, &w, &format!("advertisement {i}"));
        assert_eq!(show_of(g, "icmp.checksum.status"), ["1"], "checksum good");
    }
}

#[test]
fn tshark_dissects_agent_solicitation_as_encoded() {
    let b = AgentSolicitationRepr.to_bytes();
    let frames = vec![ipv4(1, MN, Ipv4Addr::new(224, 0, 0, 2), 1, &b)];
    let got = dissect(&frames, "icmp.");
    let want: Vec<(String, String)> = vec![
        ("icmp.type".into(), "0a".into()),
        ("icmp.code".into(), "00".into()),
        ("icmp.checksum".into(), hex(&b[2..4])),
        ("icmp.checksum.status".into(), String::new()),
    ];
    assert_fields(&got[0], &want, "solicitation");
    assert_eq!(show_of(&got[0], "icmp.checksum.status"), ["1"]);
}

// ----------------------------------------------------------------- scapy

#[test]
fn scapy_encoded_messages_decode_with_expected_fields() {
    require_scapy();
    let out = Command::new(python())
        .arg(helper("scapy_requests.py"))
        .output()
        .expect("run scapy_requests.py");
    assert!(
        out.status.success(),
        "scapy_requests.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let msgs: Vec<(String, Vec<u8>)> = text
        .lines()
        .map(|l| {
            let (k, h) = l.split_once(' ').unwrap();
            let b = (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect();
            (k.to_string(), b)
        })
        .collect();
    assert_eq!(msgs.len(), 6, "scapy_requests.py prints six messages");

    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let nai = Extension::Nai(b"alice@example.com".to_vec());
    let auth = Extension::MnHaAuth(AuthExt {
        spi: 0x1234,
        authenticator: (0..16).collect(),
    });

    // Values repeated from scapy_requests.py.
    let want_rrq = [
        RequestRepr {
            flags: Flags::G | Flags::T,
            lifetime: 1800,
            home_address: ip("10.1.0.5"),
            home_agent: ip("10.1.0.1"),
            care_of_address: ip("192.0.2.7"),
            identification: 0x0102_0304_0506_0708,
            extensions: vec![],
        },
        RequestRepr {
            flags: Flags(0xff),
            lifetime: 0,
            home_address: ip("0.0.0.0"),
            home_agent: ip("10.1.0.1"),
            care_of_address: ip("198.51.100.9"),
            identification: u64::MAX,
            extensions: vec![nai.clone(), auth.clone()],
        },
        RequestRepr {
            flags: Flags::S,
            lifetime: 0xffff,
            home_address: ip("10.1.0.6"),
            home_agent: ip("10.1.0.1"),
            care_of_address: ip("10.1.0.6"),
            identification: 1,
            extensions: vec![nai],
        },
    ];
    let want_rrp = [
        ReplyRepr {
            code: ReplyCode::ACCEPTED,
            lifetime: 1800,
            home_address: ip("10.1.0.5"),
            home_agent: ip("10.1.0.1"),
            identification: 0x0102_0304_0506_0708,
            extensions: vec![auth],
        },
        ReplyRepr {
            code: ReplyCode::HA_IDENTIFICATION_MISMATCH,
            lifetime: 0,
            home_address: ip("10.1.0.5"),
            home_agent: ip("10.1.0.1"),
            identification: 0xdead_beef_0000_0001,
            extensions: vec![],
        },
    ];
    let (mut q, mut p) = (0, 0);
    for (kind, b) in &msgs {
        match kind.as_str() {
            "rrq" => {
                assert_eq!(
                    RequestRepr::parse_bytes(b).unwrap(),
                    want_rrq[q],
                    "scapy request {q}"
                );
                q += 1;
            }
            "rrp" => {
                assert_eq!(
                    ReplyRepr::parse_bytes(b).unwrap(),
                    want_rrp[p],
                    "scapy reply {p}"
                );
                p += 1;
            }
            "tunnel" => {
                let t = TunnelDataPacket::new_checked(&b[..]).unwrap();
                assert_eq!(
                    TunnelDataRepr::parse(&t).unwrap(),
                    TunnelDataRepr { next_header: 4 }
                );
                assert_eq!(t.payload(), [0x45, 0, 0, 20]);
            }
            k => panic!("unexpected kind {k}"),
        }
    }
    assert_eq!((q, p), (3, 2));
}
