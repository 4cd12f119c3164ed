//! Reading an nftables named counter over netlink (NFT_MSG_GETOBJ), for
//! the ingress checks' drop counts in `mip4ctl counters` / `status`.
//!
//! Why not `nft -j list counter`: the daemons answer a control request
//! on their one event loop, and spawning `nft` (a process that loads
//! libnftables and its cache) took over the control client's 5 s under
//! QEMU's emulation on a loaded host, so `mip4ctl counters` timed out.
//! One GETOBJ is a single netlink round trip that the kernel answers in
//! the sender's own `sendmsg` (nfnetlink processes requests
//! synchronously), so the reply is queued before `recv` is called: no
//! process, no wait that the loop would notice. The framing is
//! netlink-packet-netfilter's (the rust-netlink family the daemons'
//! rtnetlink already uses); it carries objects as raw attributes, read
//! here by their numbers from linux/netfilter/nf_tables.h.

use std::os::fd::AsFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer, NlasIterator, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::NfTablesMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

// enum nft_object_attributes
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
// NFT_OBJECT_COUNTER; enum nft_counter_attributes
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;
/// The attribute type without the nested / byte-order flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// The packets counted so far by counter `counter` of table `table` in
/// `family` ("ip" or "ip6").
pub fn packets(family: &str, table: &str, counter: &str) -> Result<u64, String> {
    let what = format!("counter {counter} of table {family} {table}");
    let proto = match family {
        "ip" => NetfilterProtoFamily::IPv4,
        "ip6" => NetfilterProtoFamily::IPv6,
        _ => return Err(format!("{what}: unknown family")),
    };
    let request = request(proto, table, counter);
    let reply = round_trip(&request).map_err(|e| format!("{what}: {e}"))?;
    parse_reply(&reply).map_err(|e| format!("{what}: {e}"))
}

/// NFT_MSG_GETOBJ for one named counter (strings NUL-terminated, the
/// type in network byte order, as nf_tables expects them).
fn request(family: NetfilterProtoFamily, table: &str, counter: &str) -> Vec<u8> {
    let c_str = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    let nlas = vec![
        netlink_packet_core::DefaultNla::new(NFTA_OBJ_TABLE, c_str(table)),
        netlink_packet_core::DefaultNla::new(NFTA_OBJ_NAME, c_str(counter)),
        netlink_packet_core::DefaultNla::new(
            NFTA_OBJ_TYPE,
            NFT_OBJECT_COUNTER.to_be_bytes().to_vec(),
        ),
    ];
    let inner = NfTablesMessage::GetObject(nlas);
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST;
    header.sequence_number = 1;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            inner,
        )),
    );
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    buf
}

/// Sends `request` and returns the kernel's one reply datagram (also
/// [`super::nft_setelem`]'s batch and its acknowledgement).
pub(super) fn round_trip(request: &[u8]) -> Result<Vec<u8>, String> {
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| format!("netlink socket: {e}"))?;
    sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    // A guard only: the answer is queued during `send` (above).
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    crate::sys::socket::setsockopt(sock.as_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
        .map_err(|e| format!("netlink SO_RCVTIMEO: {e}"))?;
    sock.send_to(request, &SocketAddr::new(0, 0), 0)
        .map_err(|e| format!("netlink send: {e}"))?;
    let (reply, _) = sock
        .recv_from_full()
        .map_err(|e| format!("netlink receive: {e}"))?;
    Ok(reply)
}

/// The counter's packets from the reply (NFT_MSG_NEWOBJ), or the error
/// the kernel answered (ENOENT: no such table or counter).
fn parse_reply(reply: &[u8]) -> Result<u64, String> {
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(reply)
        .map_err(|e| format!("undecodable reply: {e}"))?;
    let nlas = match msg.payload {
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewObject(nlas)),
            ..
        }) => nlas,
        NetlinkPayload::Error(e) => return Err(format!("the kernel answered {e}")),
        other => return Err(format!("unexpected reply {other:?}")),
    };
    let data = nlas
        .iter()
        .find(|n| n.kind() & NLA_TYPE_MASK == NFTA_OBJ_DATA)
        .ok_or("no NFTA_OBJ_DATA in the reply")?;
    let mut value = vec![0; data.value_len()];
    data.emit_value(&mut value);
    for nla in NlasIterator::new(&value[..]) {
        let nla: NlaBuffer<&[u8]> = nla.map_err(|e| format!("bad counter attribute: {e}"))?;
        if nla.kind() & NLA_TYPE_MASK == NFTA_COUNTER_PACKETS {
            let bytes: [u8; 8] = nla
                .value()
                .try_into()
                .map_err(|_| "NFTA_COUNTER_PACKETS is not 8 bytes")?;
            return Ok(u64::from_be_bytes(bytes));
        }
    }
    Err("no NFTA_COUNTER_PACKETS in the reply".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request as nf_tables reads it: GETOBJ of the nftables
    /// subsystem, nfgenmsg with the family, and the three attributes.
    #[test]
    fn the_request_names_table_counter_and_type() {
        let b = request(NetfilterProtoFamily::IPv4, "mip4-ha", "c1");
        // nlmsghdr: type (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETOBJ).
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), (10 << 8) | 19);
        // nfgenmsg: NFPROTO_IPV4, NFNETLINK_V0.
        assert_eq!(&b[16..18], &[2, 0]);
        let attrs: Vec<(u16, Vec<u8>)> = NlasIterator::new(&b[20..])
            .map(|n| {
                let n = n.unwrap();
                (n.kind(), n.value().to_vec())
            })
            .collect();
        assert_eq!(
            attrs,
            vec![
                (NFTA_OBJ_TABLE, b"mip4-ha\0".to_vec()),
                (NFTA_OBJ_NAME, b"c1\0".to_vec()),
                (NFTA_OBJ_TYPE, vec![0, 0, 0, 1]),
            ]
        );
    }

    /// A NEWOBJ reply as the kernel writes it (NFTA_OBJ_DATA nested,
    /// packets and bytes big-endian): the packets are read.
    #[test]
    fn the_packets_are_read_from_the_kernels_reply() {
        let nla = |kind: u16, v: &[u8]| {
            let len = 4 + v.len();
            let mut out = (len as u16).to_ne_bytes().to_vec();
            out.extend(kind.to_ne_bytes());
            out.extend(v);
            out.resize(len.next_multiple_of(4), 0);
            out
        };
        let mut counter = nla(1, &252u64.to_be_bytes());
        counter.extend(nla(NFTA_COUNTER_PACKETS, &3u64.to_be_bytes()));
        let mut payload = vec![2, 0, 0, 0];
        payload.extend(nla(NFTA_OBJ_TABLE, b"mip4-ha\0"));
        payload.extend(nla(NFTA_OBJ_DATA | 0x8000, &counter));
        let mut msg = ((16 + payload.len()) as u32).to_ne_bytes().to_vec();
        msg.extend(((10u16 << 8) | 18).to_ne_bytes());
        msg.extend([0u8; 10]);
        msg.extend(payload);
        assert_eq!(parse_reply(&msg), Ok(3));
        // A reply without the counter's data is an error, not zero.
        let mut short = msg.clone();
        short.truncate(16 + 4 + 12);
        let len = short.len() as u32;
        short[..4].copy_from_slice(&len.to_ne_bytes());
        assert!(parse_reply(&short).is_err());
    }
}
