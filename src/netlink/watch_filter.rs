//! The event socket's filter (classic BPF, SO_ATTACH_FILTER): the kernel
//! drops the route notifications [`super::watch::EventMapper`] would
//! ignore, before they are queued, so a move's local-table, broadcast,
//! multicast and IPv6 link routes (about half of its rtnetlink messages)
//! and mip4d's own throw routes cost no read and no parse. Kept: every
//! message that is not a route, IPv4 unicast routes added, IPv6 unicast
//! default routes (the mapper still checks their table). A notification
//! is one message per datagram, which the filter sees from its nlmsghdr.

use std::io;
use std::os::fd::AsFd;

use libc::sock_filter;

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTN_UNICAST: u32 = 1;
const AF_INET6: u32 = 10;
// Offsets: nlmsghdr (type at 4), then rtmsg (family 16, dst_len 17, type 23).
const NLMSG_TYPE: u32 = 4;
const RTM_FAMILY: u32 = 16;
const RTM_DST_LEN: u32 = 17;
const RTM_TYPE: u32 = 23;

const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// A halfword load reads network order; nlmsg_type is in host order.
fn as_loaded(t: u16) -> u32 {
    u32::from(u16::from_be_bytes(t.to_ne_bytes()))
}

/// The program (jumps count the instructions skipped).
pub fn program() -> Vec<sock_filter> {
    let (new, del) = (as_loaded(RTM_NEWROUTE), as_loaded(RTM_DELROUTE));
    vec![
        /* 0 */ op(LD_H_ABS, 0, 0, NLMSG_TYPE),
        /* 1 */ op(JEQ_K, 1, 0, new), // a route: 3
        /* 2 */ op(JEQ_K, 0, 8, del), // not a route: accept
        /* 3 */ op(LD_B_ABS, 0, 0, RTM_TYPE),
        /* 4 */ op(JEQ_K, 0, 7, RTN_UNICAST), // local, broadcast, throw...: drop
        /* 5 */ op(LD_B_ABS, 0, 0, RTM_FAMILY),
        /* 6 */ op(JEQ_K, 2, 0, AF_INET6), // IPv6: 9
        /* 7 */ op(LD_H_ABS, 0, 0, NLMSG_TYPE),
        /* 8 */ op(JEQ_K, 2, 3, new), // IPv4: added only
        /* 9 */ op(LD_B_ABS, 0, 0, RTM_DST_LEN),
        /* 10 */ op(JEQ_K, 0, 1, 0), // IPv6: default routes only
        /* 11 */ op(RET_K, 0, 0, u32::MAX),
        /* 12 */ op(RET_K, 0, 0, 0),
    ]
}

/// Attaches [`program`] to the event socket.
pub fn attach(sock: &impl AsFd) -> io::Result<()> {
    socket2::SockRef::from(sock).attach_filter(&program())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::watch::EventMapper;
    use netlink_packet_route::route::{RouteMessage, RouteType};
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use rtnetlink::packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};

    /// The program run on `data` as the kernel would: accepted or not.
    fn accepts(prog: &[sock_filter], data: &[u8]) -> bool {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_H_ABS => {
                    let k = i.k as usize;
                    a = u32::from(u16::from_be_bytes([data[k], data[k + 1]]));
                }
                LD_B_ABS => a = u32::from(data[i.k as usize]),
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                RET_K => return i.k != 0,
                c => panic!("opcode {c:#x} not in this program"),
            }
        }
    }

    fn wire(m: RouteNetlinkMessage) -> Vec<u8> {
        let mut msg = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(m));
        msg.finalize();
        let mut buf = vec![0; msg.buffer_len()];
        msg.serialize(&mut buf);
        buf
    }

    /// Every route the filter lets through or drops, against the mapper:
    /// what it drops, the mapper ignores; what the mapper turns into an
    /// event, it lets through.
    #[test]
    fn the_filter_drops_only_routes_the_mapper_ignores() {
        let prog = program();
        let mut kept = 0;
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            for kind in [
                RouteType::Unicast,
                RouteType::Local,
                RouteType::Broadcast,
                RouteType::Multicast,
                RouteType::Throw,
                RouteType::BlackHole,
            ] {
                for prefix_len in [0u8, 24, 32, 64, 128] {
                    for table in [254u8, 255, 220] {
                        for added in [true, false] {
                            let mut m = RouteMessage::default();
                            m.header.address_family = family;
                            m.header.kind = kind;
                            m.header.destination_prefix_length = prefix_len;
                            m.header.table = table;
                            let msg = if added {
                                RouteNetlinkMessage::NewRoute(m)
                            } else {
                                RouteNetlinkMessage::DelRoute(m)
                            };
                            let event = EventMapper::default().map(&msg).is_some();
                            let pass = accepts(&prog, &wire(msg.clone()));
                            assert!(pass || !event, "{msg:?} dropped but an event");
                            kept += usize::from(pass);
                            if family == AddressFamily::Inet && kind == RouteType::Unicast {
                                assert_eq!(pass, added, "{msg:?}");
                            }
                        }
                    }
                }
            }
        }
        // IPv4 unicast added (5 lengths x 3 tables), IPv6 unicast
        // default routes (3 tables x added/removed).
        assert_eq!(kept, 15 + 6);
    }

    /// Addresses and links pass whatever they hold.
    #[test]
    fn messages_other_than_routes_pass() {
        use netlink_packet_route::address::AddressMessage;
        use netlink_packet_route::link::LinkMessage;
        let prog = program();
        for m in [
            RouteNetlinkMessage::NewAddress(AddressMessage::default()),
            RouteNetlinkMessage::DelAddress(AddressMessage::default()),
            RouteNetlinkMessage::NewLink(LinkMessage::default()),
            RouteNetlinkMessage::DelLink(LinkMessage::default()),
        ] {
            assert!(accepts(&prog, &wire(m.clone())), "{m:?}");
        }
    }
}
