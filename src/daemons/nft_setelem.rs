//! Adding an element with a timeout to an nftables set over netlink
//! (NFT_MSG_NEWSETELEM in a batch), for mip4-ha's grace of a moved
//! binding on its old `ipip` or `sit` link ([`super::ha::ingress`]).
//!
//! Why not `nft add element`: it runs in the registration's path, before
//! the prefix's route moves, and spawning `nft` took 0.8 s under QEMU's
//! emulation on a loaded host (the node's probe gave up waiting for the
//! reply). One batch is a single netlink round trip that nf_tables
//! answers in the sender's `sendmsg`, as [`super::nft_counter`]'s GETOBJ.
//! The attributes are numbered as in linux/netfilter/nf_tables.h and laid
//! out as `nft --debug=netlink` shows nft's own: a concatenated key
//! (`ifname . ipv6_addr`, each field in 16 bytes; `ifname . ipv4_addr`,
//! 16 and 4) with its closing key
//! for the range, and the timeout in milliseconds, big-endian.

use std::time::Duration;

use ipnet::IpNet;

// linux/netfilter/nfnetlink.h
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
// enum nf_tables_msg_types
const NFT_MSG_NEWSETELEM: u16 = 12;
// enum nft_set_elem_list_attributes
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
// enum nft_list_attributes, nft_set_elem_attributes, nft_data_attributes
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
const NFTA_SET_ELEM_KEY_END: u16 = 10;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NFPROTO_IPV4: u8 = 2;
const NFPROTO_IPV6: u8 = 10;
const NLMSG_ERROR: u16 = 2;
/// An interface name's bytes in a key (IFNAMSIZ).
const IFNAMSIZ: usize = 16;

/// Adds (`ifname`, `net`) to the set `set` of the table `table` of
/// `net`'s family (`ip` or `ip6`; type `ifname . ipv4_addr` or `ifname .
/// ipv6_addr`, flags interval and timeout), expiring after `timeout`.
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
    let request = request(table, set, ifname, net, timeout);
    let reply = super::nft_counter::round_trip(&request).map_err(|e| format!("{what}: {e}"))?;
    parse_ack(&reply).map_err(|e| format!("{what}: {e}"))
}

/// One attribute: length, type, value, padded to 4 bytes.
fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut out = Vec::with_capacity(len.next_multiple_of(4));
    out.extend((len as u16).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(value);
    out.resize(len.next_multiple_of(4), 0);
    out
}

/// A NUL-terminated string attribute value.
fn c_str(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// One netlink message: header, nfgenmsg (family, version 0, `res_id`
/// big-endian), attributes.
fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend((len as u32).to_ne_bytes());
    out.extend(kind.to_ne_bytes());
    out.extend(flags.to_ne_bytes());
    out.extend(seq.to_ne_bytes());
    out.extend(0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend(res_id.to_be_bytes());
    out.extend(attrs);
    out
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

/// The batch: begin, NEWSETELEM (create, acknowledged), end.
fn request(table: &str, set: &str, ifname: &str, net: IpNet, timeout: Duration) -> Vec<u8> {
    let data = |k: Vec<u8>| nla(NFTA_DATA_VALUE, &k);
    let mut elem = nla(
        NFTA_SET_ELEM_TIMEOUT,
        &(timeout.as_millis() as u64).to_be_bytes(),
    );
    elem.extend(nla(
        NFTA_SET_ELEM_KEY | NLA_F_NESTED,
        &data(key(ifname, net.network())),
    ));
    elem.extend(nla(
        NFTA_SET_ELEM_KEY_END | NLA_F_NESTED,
        &data(key(ifname, net.broadcast())),
    ));
    let mut attrs = nla(NFTA_SET_ELEM_LIST_TABLE, &c_str(table));
    attrs.extend(nla(NFTA_SET_ELEM_LIST_SET, &c_str(set)));
    attrs.extend(nla(
        NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED,
        &nla(NFTA_LIST_ELEM | NLA_F_NESTED, &elem),
    ));
    let request = libc::NLM_F_REQUEST as u16;
    let mut out = message(
        NFNL_MSG_BATCH_BEGIN,
        request,
        1,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    out.extend(message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM,
        request | libc::NLM_F_CREATE as u16 | libc::NLM_F_ACK as u16,
        2,
        if net.addr().is_ipv4() {
            NFPROTO_IPV4
        } else {
            NFPROTO_IPV6
        },
        0,
        &attrs,
    ));
    out.extend(message(
        NFNL_MSG_BATCH_END,
        request,
        3,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    out
}

/// The acknowledgement (NLMSG_ERROR with error 0), or the error the
/// kernel answered.
fn parse_ack(reply: &[u8]) -> Result<(), String> {
    if reply.len() < 20 {
        return Err("short reply".into());
    }
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if kind != NLMSG_ERROR {
        return Err(format!("unexpected reply of type {kind}"));
    }
    match i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]) {
        0 => Ok(()),
        e => Err(format!(
            "the kernel answered {}",
            std::io::Error::from_raw_os_error(-e)
        )),
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
        let b = request("t", "grace", "mip6-0ac80001", p, Duration::from_secs(3));
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

    #[cfg(target_endian = "little")]
    #[test]
    fn the_batch_is_the_reference_vector() {
        let three = Duration::from_secs(3);
        let v6 = request(
            "mip4-ha",
            "grace",
            "mip6-0ac80001",
            "2001:db8:10::/64".parse().unwrap(),
            three,
        );
        assert_eq!(v6, unhex(GRACE_V6));
        let v4 = request(
            "mip4-ha",
            "grace",
            "mip4-0ac80001",
            "10.2.0.5/32".parse().unwrap(),
            three,
        );
        assert_eq!(v4, unhex(GRACE_V4));
    }

    #[test]
    fn an_error_is_the_kernels_errno() {
        let mut r = vec![0u8; 36];
        r[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_ack(&r), Ok(()));
        r[16..20].copy_from_slice(&(-libc::ENOENT).to_ne_bytes());
        assert!(parse_ack(&r).unwrap_err().contains("No such file"));
    }
}
