//! A reader of tcpdump's capture files for `lab::clear-text` where tshark
//! is not installed (the kernel tier's guest runs install-deps --runtime,
//! which leaves Wireshark out). It finds every IPv4 header tshark's
//! `ip.addr` would: the frame's own, the inner one of IP in IP (RFC 2003),
//! of RFC 3519 tunnel data (UDP 434, message type 4), of GRE (RFC 2784)
//! and the datagram an ICMP error quotes (RFC 792). ESP and ESP in UDP
//! stay opaque, as they are on the wire. It also finds IPv6 inside IPv4
//! (protocol 41, RFC 4213 §3; RFC 3519 next header 41) for
//! `lab::ipv6-in-ipv4` ([`ipv6_in_ipv4`]).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::cleartext::Seen;
use super::{Error, Result};

const LINKTYPE_ETHERNET: u32 = 1;
const LINKTYPE_RAW: u32 = 101;
const LINKTYPE_LINUX_SLL: u32 = 113;
const LINKTYPE_IPV4: u32 = 228;

/// The link-layer payloads of a classic pcap file (either byte order,
/// micro- or nanosecond stamps) and its link type. A frame cut short at
/// the end (tcpdump still writing) is left out.
pub fn frames(data: &[u8]) -> Result<(u32, Vec<&[u8]>)> {
    let bad = |why: &str| Error::Other(format!("not a pcap capture: {why}"));
    let magic = data
        .get(..4)
        .ok_or_else(|| bad("shorter than its header"))?;
    let le = match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err(bad("unknown magic (pcapng is not read here)")),
    };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        })
    };
    let linktype = u32_at(data, 20).ok_or_else(|| bad("shorter than its header"))? & 0x0fff_ffff;
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(len) = u32_at(data, at + 8) {
        let start = at + 16;
        let Some(frame) = data.get(start..start + len as usize) else {
            break;
        };
        out.push(frame);
        at = start + len as usize;
    }
    Ok((linktype, out))
}

/// The IPv4 datagram a frame of `linktype` carries, if any.
fn network_layer(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    let (ethertype, rest) = match linktype {
        LINKTYPE_ETHERNET => {
            let mut t = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
            let mut off = 14;
            // 802.1Q / 802.1ad tags.
            while t == 0x8100 || t == 0x88a8 {
                t = u16::from_be_bytes([*frame.get(off + 2)?, *frame.get(off + 3)?]);
                off += 4;
            }
            (t, frame.get(off..)?)
        }
        LINKTYPE_LINUX_SLL => (
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]),
            frame.get(16..)?,
        ),
        LINKTYPE_RAW | LINKTYPE_IPV4 => (0x0800, frame),
        _ => return None,
    };
    (ethertype == 0x0800 && rest.first()? >> 4 == 4).then_some(rest)
}

/// Every IPv4 header's addresses in `ip`, nested ones included.
pub fn addresses(ip: &[u8], out: &mut Vec<Ipv4Addr>) {
    addresses_at(ip, out, 0);
}

fn addresses_at(ip: &[u8], out: &mut Vec<Ipv4Addr>, depth: u8) {
    // A nest deeper than a few levels is no traffic of the lab's.
    if depth > 4 || ip.len() < 20 || ip[0] >> 4 != 4 {
        return;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    out.push(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    out.push(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let Some(payload) = ip.get(ihl..).filter(|_| first_fragment && ihl >= 20) else {
        return;
    };
    let inner = match ip[9] {
        // IP in IP.
        4 => Some(payload),
        // ICMP errors quote the offending datagram after 8 bytes.
        1 if matches!(payload.first(), Some(3 | 4 | 5 | 11 | 12)) => payload.get(8..),
        // RFC 3519 tunnel data: UDP to or from 434, message type 4, next
        // header 4 (IPv4).
        17 if payload.len() >= 12 => {
            let sport = u16::from_be_bytes([payload[0], payload[1]]);
            let dport = u16::from_be_bytes([payload[2], payload[3]]);
            ((sport == 434 || dport == 434) && payload[8] == 4 && payload[9] == 4)
                .then(|| &payload[12..])
        }
        // GRE carrying IPv4: 4 bytes, plus 4 per C, K and S flag.
        47 if payload.len() >= 4 && u16::from_be_bytes([payload[2], payload[3]]) == 0x0800 => {
            let extra = [0x80u8, 0x20, 0x10]
                .iter()
                .filter(|f| payload[0] & **f != 0)
                .count();
            payload.get(4 + 4 * extra..)
        }
        _ => None,
    };
    if let Some(inner) = inner {
        addresses_at(inner, out, depth + 1);
    }
}

/// The total lengths of the IPv4 datagrams `src -> dst` of protocol
/// `proto` in the capture `pcap` (outer headers only).
pub fn sizes(pcap: &Path, src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Result<Vec<u16>> {
    let data = read(pcap)?;
    let (linktype, frames) = frames(&data)?;
    Ok(frames
        .iter()
        .filter_map(|f| network_layer(linktype, f))
        .filter(|ip| {
            ip.len() >= 20
                && ip[9] == proto
                && ip[12..16] == src.octets()
                && ip[16..20] == dst.octets()
        })
        .map(|ip| u16::from_be_bytes([ip[2], ip[3]]))
        .collect())
}

/// Every IPv4 datagram of the capture `pcap`, whole (outer header first).
pub fn datagrams(pcap: &Path) -> Result<Vec<Vec<u8>>> {
    let data = read(pcap)?;
    let (linktype, frames) = frames(&data)?;
    Ok(frames
        .iter()
        .filter_map(|f| network_layer(linktype, f))
        .map(<[u8]>::to_vec)
        .collect())
}

fn read(pcap: &Path) -> Result<Vec<u8>> {
    std::fs::read(pcap).map_err(|source| Error::Io {
        path: pcap.display().to_string(),
        source,
    })
}

/// Frames of the capture `pcap` (all, and those with `addr` in an IPv4
/// header).
pub fn count(pcap: &Path, addr: Ipv4Addr) -> Result<Seen> {
    let data = read(pcap)?;
    let (linktype, frames) = frames(&data)?;
    let mut with_addr = 0;
    let mut seen = Vec::new();
    for f in &frames {
        seen.clear();
        if let Some(ip) = network_layer(linktype, f) {
            addresses(ip, &mut seen);
        }
        if seen.contains(&addr) {
            with_addr += 1;
        }
    }
    Ok(Seen {
        total: frames.len() as u64,
        with_addr,
    })
}

/// IPv6 datagrams to and from `addr` inside IPv4 in the capture `pcap`:
/// `(to, from)`, frames counted as tshark's `(ip.proto == 41 || udp.port
/// == 434) && ipv6.dst|src == addr [&& ip.addr == outer]` counts them:
/// `outer` (when given) in any IPv4 header of the frame, the IPv6 carried
/// as protocol 41 at any level of IP in IP (RFC 5454 to the home address
/// nests it in the binding's tunnel) or as RFC 3519 tunnel data with next
/// header 41.
pub fn ipv6_in_ipv4(pcap: &Path, addr: Ipv6Addr, outer: Option<Ipv4Addr>) -> Result<(u64, u64)> {
    let data = read(pcap)?;
    let (linktype, frames) = frames(&data)?;
    let (mut to, mut from) = (0, 0);
    let mut seen = Vec::new();
    for ip in frames.iter().filter_map(|f| network_layer(linktype, f)) {
        seen.clear();
        let Some(v6) = ipv6_inside(ip, &mut seen, 0) else {
            continue;
        };
        if outer.is_some_and(|o| !seen.contains(&o)) {
            continue;
        }
        to += u64::from(v6[24..40] == addr.octets());
        from += u64::from(v6[8..24] == addr.octets());
    }
    Ok((to, from))
}

/// The IPv6 header (at least its 40 bytes) IPv4 datagram `ip` carries as
/// protocol 41 or RFC 3519 tunnel data, through IP in IP; every IPv4
/// header's addresses on the way into `seen`.
fn ipv6_inside<'a>(ip: &'a [u8], seen: &mut Vec<Ipv4Addr>, depth: u8) -> Option<&'a [u8]> {
    if depth > 4 || ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    seen.push(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    seen.push(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    let first_fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let payload = ip.get(ihl..).filter(|_| first_fragment && ihl >= 20)?;
    let v6 = match ip[9] {
        4 => return ipv6_inside(payload, seen, depth + 1),
        41 => payload,
        // RFC 3519 tunnel data (type 4) with next header 41.
        17 if payload.len() >= 12 => {
            let sport = u16::from_be_bytes([payload[0], payload[1]]);
            let dport = u16::from_be_bytes([payload[2], payload[3]]);
            if (sport == 434 || dport == 434) && payload[8] == 4 && payload[9] == 41 {
                &payload[12..]
            } else {
                return None;
            }
        }
        _ => return None,
    };
    (v6.len() >= 40 && v6[0] >> 4 == 6).then_some(v6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::ipip::OuterHeader;
    use crate::lab::spoof::udp_in_ipip;

    const HOA: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 5);
    const COA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
    const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 2);

    fn pcap(frames: &[Vec<u8>], linktype: u32) -> Vec<u8> {
        let mut v = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        v.extend_from_slice(&[0; 8]);
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        for f in frames {
            v.extend_from_slice(&[0; 8]);
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(&(f.len() as u32).to_le_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    fn ethernet(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(ip);
        f
    }

    fn count_in(frames: &[Vec<u8>], linktype: u32, addr: Ipv4Addr) -> Seen {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pcap");
        std::fs::write(&p, pcap(frames, linktype)).unwrap();
        count(&p, addr).unwrap()
    }

    #[test]
    fn the_home_address_is_found_outer_inner_and_quoted() {
        // Outer header, the inner one of IP in IP, the datagram an ICMP
        // error quotes: each a frame with the home address.
        let ipip = udp_in_ipip(HA, COA, CN, HOA, 1, b"x").unwrap();
        let plain = ipip[20..].to_vec();
        let mut icmp_err = udp_in_ipip(COA, HA, CN, HOA, 2, b"").unwrap();
        icmp_err[9] = 1; // protocol ICMP
        let mut body = vec![3, 4, 0, 0, 0, 0, 5, 0x78];
        body.extend_from_slice(&plain);
        icmp_err.truncate(20);
        icmp_err.extend_from_slice(&body);
        let frames = vec![ethernet(&ipip), ethernet(&plain), ethernet(&icmp_err)];
        let s = count_in(&frames, LINKTYPE_ETHERNET, HOA);
        assert_eq!((s.with_addr, s.total), (3, 3));
    }

    #[test]
    fn esp_and_other_addresses_do_not_count() {
        // ESP whose bytes happen to hold the home address: opaque.
        let mut esp = udp_in_ipip(COA, Ipv4Addr::new(203, 0, 113, 10), CN, HOA, 1, b"").unwrap();
        esp[9] = 50;
        let other = udp_in_ipip(COA, HA, CN, Ipv4Addr::new(10, 1, 2, 3), 2, b"").unwrap();
        let s = count_in(&[ethernet(&esp), ethernet(&other)], LINKTYPE_ETHERNET, HOA);
        assert_eq!((s.with_addr, s.total), (0, 2));
    }

    #[test]
    fn rfc3519_tunnel_data_and_raw_captures_are_read() {
        let inner = udp_in_ipip(COA, HA, HOA, CN, 1, b"").unwrap()[20..].to_vec();
        // UDP 434 -> 434, tunnel data (type 4, next header 4).
        let mut udp = vec![1, 0xb2, 1, 0xb2, 0, 0, 0, 0, 4, 4, 0, 0];
        udp.extend_from_slice(&inner);
        let mut outer = udp_in_ipip(COA, HA, COA, HA, 3, b"").unwrap();
        outer.truncate(20);
        outer[9] = 17;
        outer.extend_from_slice(&udp);
        let s = count_in(&[outer], LINKTYPE_RAW, HOA);
        assert_eq!((s.with_addr, s.total), (1, 1));
    }

    #[test]
    fn tshark_counts_the_same_frames() {
        // The frames of the tests above in one capture: the reader and
        // tshark (installed by install-deps on the host) agree.
        let ipip = udp_in_ipip(HA, COA, CN, HOA, 1, b"x").unwrap();
        let plain = ipip[20..].to_vec();
        let mut esp = udp_in_ipip(COA, HA, CN, HOA, 2, b"").unwrap();
        esp[9] = 50;
        let other = udp_in_ipip(COA, HA, CN, CN, 3, b"").unwrap();
        let frames: Vec<Vec<u8>> = [ipip, plain, esp, other]
            .iter()
            .map(|i| ethernet(i))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pcap");
        std::fs::write(&p, pcap(&frames, LINKTYPE_ETHERNET)).unwrap();
        let ours = count(&p, HOA).unwrap();
        assert_eq!((ours.with_addr, ours.total), (2, 4));
        let theirs = crate::lab::cleartext::count_tshark(&p, HOA)
            .expect("tshark (scripts/install-deps.sh installs it)");
        assert_eq!(ours, theirs);
    }

    const HOA6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x10, 0, 0, 0, 0, 1);
    const CN6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, 2);

    /// IPv6 in IPv4 both ways between the HA and the care-of address
    /// (RFC 5454 §2.3), IPv6 to the home address nested in the binding's
    /// IP in IP (§2.2 code 0), one with another inner address, one to
    /// another outer address, one as RFC 3519 tunnel data, plain IPv6 and
    /// ESP: as ethernet frames.
    fn dual_stack_frames() -> Vec<Vec<u8>> {
        use crate::lab::spoof::udp6_in_ipv4;
        let to_mn = udp6_in_ipv4(HA, COA, CN6, HOA6, 1, b"x").unwrap();
        let from_mn = udp6_in_ipv4(COA, HA, HOA6, CN6, 2, b"y").unwrap();
        let nested = {
            let inner = udp6_in_ipv4(HA, HOA, CN6, HOA6, 3, b"").unwrap();
            let outer = OuterHeader {
                src: HA,
                dst: COA,
                ttl: 64,
            };
            let mut out = Vec::new();
            crate::dataplane::ipip::encapsulate(&inner, &outer, 3, &mut out).unwrap();
            out
        };
        let other = udp6_in_ipv4(HA, COA, CN6, CN6, 4, b"").unwrap();
        let elsewhere = udp6_in_ipv4(HA, CN, CN6, HOA6, 5, b"").unwrap();
        let rfc3519 = {
            // Tunnel data (type 4), next header 41 (RFC 3519 §3.3.1).
            let mut payload = vec![4, 41, 0, 0];
            payload.extend_from_slice(&from_mn[20..]);
            crate::fa::link::udp_datagram(
                std::net::SocketAddrV4::new(COA, 434),
                std::net::SocketAddrV4::new(HA, 434),
                &payload,
                6,
            )
        };
        let mut esp = to_mn.clone();
        esp[9] = 50;
        let mut frames: Vec<Vec<u8>> = [to_mn, from_mn, nested, other, elsewhere, rfc3519, esp]
            .iter()
            .map(|i| ethernet(i))
            .collect();
        // The plain IPv6 datagram (ethertype 0x86dd) on the intranet link.
        let mut plain = vec![0u8; 12];
        plain.extend_from_slice(&[0x86, 0xdd]);
        plain.extend_from_slice(&udp6_in_ipv4(HA, COA, CN6, HOA6, 7, b"").unwrap()[20..]);
        frames.push(plain);
        frames
    }

    fn v6_counts(frames: &[Vec<u8>], outer: Option<Ipv4Addr>) -> (u64, u64) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pcap");
        std::fs::write(&p, pcap(frames, LINKTYPE_ETHERNET)).unwrap();
        ipv6_in_ipv4(&p, HOA6, outer).unwrap()
    }

    #[test]
    fn ipv6_in_ipv4_is_found_both_ways_with_its_outer_address() {
        let frames = dual_stack_frames();
        // To the home address: direct, nested, and the one to the
        // correspondent's IPv4 address; from it: direct and RFC 3519.
        assert_eq!(v6_counts(&frames, None), (3, 2));
        assert_eq!(v6_counts(&frames, Some(COA)), (2, 2));
        // The nested one's inner header has the IPv4 home address.
        assert_eq!(v6_counts(&frames, Some(HOA)), (1, 0));
        assert_eq!(
            v6_counts(&frames, Some(Ipv4Addr::new(192, 0, 2, 9))),
            (0, 0)
        );
    }

    #[test]
    fn tshark_finds_the_same_ipv6_in_ipv4() {
        let frames = dual_stack_frames();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pcap");
        std::fs::write(&p, pcap(&frames, LINKTYPE_ETHERNET)).unwrap();
        for outer in [None, Some(COA), Some(HOA), Some(CN)] {
            let theirs = crate::lab::cleartext::ipv6_in_ipv4_tshark(&p, HOA6, outer)
                .expect("tshark (scripts/install-deps.sh installs it)");
            assert_eq!(ipv6_in_ipv4(&p, HOA6, outer).unwrap(), theirs, "{outer:?}");
        }
    }

    #[test]
    fn sizes_are_those_of_one_direction_and_protocol() {
        let ip = udp_in_ipip(HA, COA, CN, HOA, 1, b"x").unwrap();
        let frames = vec![ethernet(&ip), ethernet(&ip[20..])];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pcap");
        std::fs::write(&p, pcap(&frames, LINKTYPE_ETHERNET)).unwrap();
        assert_eq!(sizes(&p, HA, COA, 4).unwrap(), vec![ip.len() as u16]);
        assert_eq!(sizes(&p, CN, HOA, 17).unwrap(), vec![ip.len() as u16 - 20]);
        assert!(sizes(&p, HOA, CN, 17).unwrap().is_empty());
    }

    #[test]
    fn a_frame_cut_short_is_left_out_and_garbage_is_an_error() {
        let ip = udp_in_ipip(HA, COA, CN, HOA, 1, b"x").unwrap();
        let mut data = pcap(&[ethernet(&ip), ethernet(&ip)], LINKTYPE_ETHERNET);
        data.truncate(data.len() - 5);
        let (_, f) = frames(&data).unwrap();
        assert_eq!(f.len(), 1);
        assert!(frames(b"garbage that is no pcap at all").is_err());
    }
}
