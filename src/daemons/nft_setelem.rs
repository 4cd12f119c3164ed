//! Adding an element with a timeout to an nftables set over netlink
//! (NFT_MSG_NEWSETELEM in a batch), for mip4-ha's grace of a moved
//! binding on its old `ipip` or `sit` link ([`super::ha::ingress`]).
//!
//! Why not `nft add element`: it runs in the registration's path, before
//! the prefix's route moves, and spawning `nft` took 0.8 s under QEMU's
//! emulation on a loaded host (the node's probe gave up waiting for the
//! reply). One batch is a single netlink round trip that nf_tables
//! answers in the sender's `sendmsg`, as [`super::nft_counter`]'s GETOBJ.
//! The framing is netlink-packet-netfilter's typed nftables messages
//! (as [`super::nft_counter`]'s), laid out as `nft --debug=netlink`
//! shows nft's own: a concatenated key (`ifname . ipv6_addr`, each field
//! in 16 bytes; `ifname . ipv4_addr`, 16 and 4) with its closing key for
//! the range, and the timeout in milliseconds.
//!
//! A binding that leaves the same link again within the grace needs the
//! grace from that move on, as the userspace plane's table and the
//! link's own lingering restart theirs. A NEWSETELEM without NLM_F_EXCL
//! of an element already there succeeds and keeps its expiry (the
//! nftables wiki's "Element timeouts": recreate the element to reset
//! it; recent kernels update the timeout when it differs, but 6.18 kept
//! the expiry of one added again with the same timeout). So the element
//! is created exclusively and, if it exists, replaced: deleted and
//! created again in one transaction, applied atomically.

use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{
    DefaultNla, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    NetfilterSubsystem,
};

/// An interface name's bytes in a key (IFNAMSIZ).
const IFNAMSIZ: usize = 16;

/// Adds (`ifname`, `net`) to the set `set` of the table `table` of
/// `net`'s family (`ip` or `ip6`; type `ifname . ipv4_addr` or `ifname .
/// ipv6_addr`, flags interval and timeout), expiring after `timeout`
/// from now: an element already there is replaced, its expiry renewed.
pub fn add_ifname_net(
    table: &str,
    set: &str,
    ifname: &str,
    net: IpNet,
    timeout: Duration,
) -> Result<(), String> {
    let family = if net.addr().is_ipv4() { "ip" } else { "ip6" };
    let what = format!("element \"{ifname}\" . {net} of set {set} of table {family} {table}");
    if ifname.len() >= IFNAMSIZ {
        return Err(format!("{what}: interface name too long"));
    }
    let ask = |op| {
        let request = request(op, table, set, ifname, net, timeout);
        let reply = super::nft_counter::round_trip(&request)?;
        parse_ack(&reply)
    };
    let done = |r: Result<(), Refused>| r.map_err(|e| format!("{what}: {e}"));
    for _ in 0..3 {
        match ask(Op::Create) {
            Err(Refused::Errno(libc::EEXIST)) => {}
            other => return done(other),
        }
        match ask(Op::Replace) {
            // Expired since: create it again.
            Err(Refused::Errno(libc::ENOENT)) => {}
            other => return done(other),
        }
    }
    Err(format!("{what}: came and went three times"))
}

/// Why a batch failed: the kernel's answer, or no answer.
#[derive(Debug, PartialEq)]
enum Refused {
    /// The kernel refused with this errno.
    Errno(i32),
    /// No socket, no reply, or one that is no acknowledgement.
    Other(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Errno(e) => write!(
                f,
                "the kernel answered {}",
                std::io::Error::from_raw_os_error(*e)
            ),
            Refused::Other(e) => f.write_str(e),
        }
    }
}

impl From<String> for Refused {
    fn from(e: String) -> Self {
        Refused::Other(e)
    }
}

/// What a batch does with the element.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// NEWSETELEM with NLM_F_EXCL: EEXIST if it is there.
    Create,
    /// DELSETELEM, then that NEWSETELEM: ENOENT if it is not there.
    Replace,
}

/// The key of (`ifname`, `addr`): the name in 16 bytes, the address.
fn key(ifname: &str, addr: std::net::IpAddr) -> Vec<u8> {
    let mut k = ifname.as_bytes().to_vec();
    k.resize(IFNAMSIZ, 0);
    match addr {
        std::net::IpAddr::V4(a) => k.extend(a.octets()),
        std::net::IpAddr::V6(a) => k.extend(a.octets()),
    }
    k
}

/// The element (`ifname`, `net`): its key (the range's first address)
/// and closing key (the last).
fn range(ifname: &str, net: IpNet) -> [SetElementAttribute; 2] {
    let last = DataAttribute::Value(key(ifname, net.broadcast()));
    // 0.4 types the closing key as raw attributes: the same DATA_VALUE.
    let mut value = vec![0; last.value_len()];
    last.emit_value(&mut value);
    [
        SetElementAttribute::Key(DataAttribute::Value(key(ifname, net.network()))),
        SetElementAttribute::KeyEnd(vec![DefaultNla::new(last.kind(), value)]),
    ]
}

/// A set element message's attributes: the table, the set, `element`.
fn one_element(table: &str, set: &str, element: Vec<SetElementAttribute>) -> SetElementMessage {
    SetElementMessage {
        attributes: vec![
            SetElementList::Table(table.into()),
            SetElementList::Set(set.into()),
            SetElementList::Elements(vec![ListAttribute::Element(element)]),
        ],
    }
}

/// `messages` (flags, family, message) framed as one nfnetlink batch:
/// BATCH_BEGIN and BATCH_END around them for the nftables subsystem,
/// sequence numbers from 1 in order.
fn batch(messages: Vec<(u16, NetfilterProtoFamily, NfTablesMessage)>) -> Vec<u8> {
    let nftables = u8::from(NetfilterSubsystem::NfTables).into();
    let control = |m: ControlMessage| {
        (
            NLM_F_REQUEST,
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, nftables),
            NetfilterMessageInner::from(m),
        )
    };
    let mut all = vec![control(ControlMessage::BatchBegin)];
    all.extend(messages.into_iter().map(|(flags, family, m)| {
        (
            flags,
            NetfilterHeader::new(family, 0, 0),
            NetfilterMessageInner::from(m),
        )
    }));
    all.push(control(ControlMessage::BatchEnd));
    let mut out = Vec::new();
    for (seq, (flags, header, inner)) in (1..).zip(all) {
        let mut h = NetlinkHeader::default();
        h.flags = flags;
        h.sequence_number = seq;
        let mut msg = NetlinkMessage::new(
            h,
            NetlinkPayload::from(NetfilterMessage::new(header, inner)),
        );
        msg.finalize();
        let at = out.len();
        out.resize(at + msg.buffer_len(), 0);
        msg.serialize(&mut out[at..]);
    }
    out
}

/// The batch of `op`: NEWSETELEM (create exclusively, acknowledged) of
/// the element with its timeout, after its DELSETELEM for a replace.
fn request(op: Op, table: &str, set: &str, ifname: &str, net: IpNet, timeout: Duration) -> Vec<u8> {
    let family = if net.addr().is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    let mut add = vec![SetElementAttribute::Timeout(timeout.as_millis() as u64)];
    add.extend(range(ifname, net));
    let add = NfTablesMessage::NewSetElement(one_element(table, set, add));
    let create = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
    batch(match op {
        Op::Create => vec![(create, family, add)],
        // Unacknowledged: a refusal is answered all the same, and the
        // one reply read is then that refusal.
        Op::Replace => {
            let del = one_element(table, set, range(ifname, net).into());
            vec![
                (
                    NLM_F_REQUEST,
                    family,
                    NfTablesMessage::DeleteSetElement(del),
                ),
                (create, family, add),
            ]
        }
    })
}

/// The acknowledgement (NLMSG_ERROR with error 0), or the error the
/// kernel answered.
fn parse_ack(reply: &[u8]) -> Result<(), Refused> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(reply)
        .map_err(|e| format!("undecodable reply: {e}"))?;
    match msg.payload {
        NetlinkPayload::Error(e) => match e.raw_code() {
            0 => Ok(()),
            code => Err(Refused::Errno(-code)),
        },
        other => Err(format!("unexpected reply {other:?}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element as `nft --debug=netlink add element ip6 t grace
    /// '{ "mip6-0ac80001" . 2001:db8:10::/64 timeout 3s }'` lays it out:
    /// the name padded to 16 bytes, then the range's first and last
    /// address, the timeout in ms.
    #[test]
    fn the_element_is_the_name_and_the_prefixs_range_with_the_timeout() {
        let p: IpNet = "2001:db8:10::/64".parse().unwrap();
        let b = request(
            Op::Create,
            "t",
            "grace",
            "mip6-0ac80001",
            p,
            Duration::from_secs(3),
        );
        // Batch begin (20 bytes), then NEWSETELEM.
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), 0x10);
        assert_eq!(&b[18..20], &[0, 10], "res_id NFNL_SUBSYS_NFTABLES");
        let m = &b[20..];
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), (10 << 8) | 12);
        assert_eq!(m[16], 10, "NFPROTO_IPV6");
        let hex: String = m.iter().map(|x| format!("{x:02x}")).collect();
        assert!(hex.contains("0000000000000bb8"), "3000 ms: {hex}");
        let start = key("mip6-0ac80001", "2001:db8:10::".parse().unwrap());
        let end = key(
            "mip6-0ac80001",
            "2001:db8:10::ffff:ffff:ffff:ffff".parse().unwrap(),
        );
        let find = |k: &[u8]| m.windows(k.len()).any(|w| w == k);
        assert!(find(&start) && find(&end));
        assert_eq!(&start[..16], b"mip6-0ac80001\0\0\0");
        let len = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize;
        assert_eq!(u16::from_ne_bytes([m[len + 4], m[len + 5]]), 0x11, "end");
    }

    /// Hex with spaces and line breaks for reading, to bytes.
    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The batch byte for byte, as the first (hand-framed) encoder wrote
    /// it and nf_tables accepted it (ha_daemon's grace test): the
    /// reference for any re-framing. Native-endian netlink headers, so
    /// little-endian hosts only.
    const GRACE_V6: &str = "
        14000000 1000 0100 01000000 00000000  00 00 000a
        90000000 0c0a 0504 02000000 00000000  0a 00 0000
        0c00 0100 6d6970342d686100
        0a00 0200 6772616365 00 0000
        6400 0380 6000 0180
        0c00 0400 0000000000000bb8
        2800 0180 2400 0100 6d6970362d3061633830303031 000000 20010db8001000000000000000000000
        2800 0a80 2400 0100 6d6970362d3061633830303031 000000 20010db800100000ffffffffffffffff
        14000000 1100 0100 03000000 00000000  00 00 000a";
    // In order: BATCH_BEGIN (20 bytes, NLM_F_REQUEST, seq 1; nfgenmsg
    // AF_UNSPEC, res_id NFNL_SUBSYS_NFTABLES big-endian); NEWSETELEM (144
    // bytes, type 10 << 8 | 12, REQUEST|ACK|CREATE, seq 2; NFPROTO_IPV6);
    // LIST_TABLE "mip4-ha", LIST_SET "grace"; LIST_ELEMENTS > LIST_ELEM
    // (nested); ELEM_TIMEOUT 3000 ms big-endian; ELEM_KEY > DATA_VALUE
    // (name in 16 bytes, first address); ELEM_KEY_END > DATA_VALUE (name,
    // last address); BATCH_END (seq 3).

    /// The IPv4 batch: NFPROTO_IPV4, a /32's key and closing key alike.
    const GRACE_V4: &str = "
        14000000 1000 0100 01000000 00000000  00 00 000a
        78000000 0c0a 0504 02000000 00000000  02 00 0000
        0c00 0100 6d6970342d686100
        0a00 0200 6772616365 00 0000
        4c00 0380 4800 0180
        0c00 0400 0000000000000bb8
        1c00 0180 1800 0100 6d6970342d3061633830303031 000000 0a020005
        1c00 0a80 1800 0100 6d6970342d3061633830303031 000000 0a020005
        14000000 1100 0100 03000000 00000000  00 00 000a";

    /// The library's batch is the first encoder's, byte for byte, but
    /// for NLM_F_EXCL in NEWSETELEM's flags (an element already there is
    /// then refused with EEXIST and replaced, not silently kept).
    #[cfg(target_endian = "little")]
    #[test]
    fn the_batch_is_the_reference_vector() {
        let excl = |vector: &str| {
            let mut b = unhex(vector);
            // NEWSETELEM's nlmsg_flags: the second message's bytes 6-7.
            let flags = u16::from_le_bytes([b[26], b[27]]);
            assert_eq!(flags, 0x0405, "REQUEST|ACK|CREATE");
            b[26..28].copy_from_slice(&(flags | 0x0200).to_le_bytes());
            b
        };
        let create = |ifname, net: &str| {
            let net = net.parse().unwrap();
            let three = Duration::from_secs(3);
            request(Op::Create, "mip4-ha", "grace", ifname, net, three)
        };
        let v6 = create("mip6-0ac80001", "2001:db8:10::/64");
        assert_eq!(v6, excl(GRACE_V6));
        let v4 = create("mip4-0ac80001", "10.2.0.5/32");
        assert_eq!(v4, excl(GRACE_V4));
    }

    /// The replace batch, read back with the library: the element's
    /// DELSETELEM (its range, no timeout, not acknowledged), then the
    /// same NEWSETELEM as a create, between BATCH_BEGIN and BATCH_END.
    #[test]
    fn a_replace_deletes_then_creates_in_one_batch() {
        let net: IpNet = "2001:db8:10::/64".parse().unwrap();
        let three = Duration::from_secs(3);
        let b = request(Op::Replace, "mip4-ha", "grace", "mip6-1", net, three);
        let mut messages = Vec::new();
        let mut rest = &b[..];
        while !rest.is_empty() {
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(rest).unwrap();
            rest = &rest[m.header.length as usize..];
            messages.push(m);
        }
        let inner = |m: &NetlinkMessage<NetfilterMessage>| match &m.payload {
            NetlinkPayload::InnerMessage(n) => n.inner.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(messages.len(), 4);
        assert_eq!(
            inner(&messages[0]),
            NetfilterMessageInner::None(ControlMessage::BatchBegin)
        );
        assert_eq!(
            inner(&messages[3]),
            NetfilterMessageInner::None(ControlMessage::BatchEnd)
        );
        let [key, key_end] = range("mip6-1", net);
        let elements = |element| SetElementList::Elements(vec![ListAttribute::Element(element)]);
        assert_eq!(messages[1].header.flags, NLM_F_REQUEST);
        let NetfilterMessageInner::NfTables(NfTablesMessage::DeleteSetElement(del)) =
            inner(&messages[1])
        else {
            panic!("{:?}", messages[1]);
        };
        assert_eq!(
            del.attributes[2],
            elements(vec![key.clone(), key_end.clone()])
        );
        assert_eq!(
            messages[2].header.flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK
        );
        let NetfilterMessageInner::NfTables(NfTablesMessage::NewSetElement(add)) =
            inner(&messages[2])
        else {
            panic!("{:?}", messages[2]);
        };
        assert_eq!(
            add.attributes[2],
            elements(vec![SetElementAttribute::Timeout(3000), key, key_end])
        );
        let seqs: Vec<u32> = messages.iter().map(|m| m.header.sequence_number).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }

    /// An acknowledgement is success; a refusal is the kernel's errno;
    /// anything else an error.
    #[test]
    fn an_error_is_the_kernels_errno() {
        let reply = |code: i32| {
            let mut e = netlink_packet_core::ErrorMessage::default();
            e.code = std::num::NonZeroI32::new(code);
            e.header = vec![0; 16];
            let mut m = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::<NetfilterMessage>::Error(e),
            );
            m.finalize();
            let mut b = vec![0; m.buffer_len()];
            m.serialize(&mut b);
            b
        };
        assert_eq!(parse_ack(&reply(0)), Ok(()));
        let e = parse_ack(&reply(-libc::ENOENT)).unwrap_err();
        assert_eq!(e, Refused::Errno(libc::ENOENT));
        assert!(e.to_string().contains("os error 2"), "{e}");
        assert!(matches!(parse_ack(&[0; 8]), Err(Refused::Other(_))));
        let net = "10.0.0.1/32".parse().unwrap();
        let not_ack = request(Op::Create, "t", "s", "l", net, Duration::ZERO);
        let e = parse_ack(&not_ack).unwrap_err();
        assert!(
            matches!(e, Refused::Other(_)),
            "a request is no answer: {e}"
        );
    }
}
