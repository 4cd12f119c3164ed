//! Address and link events (RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR,
//! RTNLGRP_LINK) as the small typed events the mobile node core consumes:
//! a new IPv4 address may be a new care-of address (RFC 5266 §3.1.1, RFC
//! 5944 §4.3 move detection), a new IPv6 address an access network that
//! only the VPN can use (IKE over IPv6, RFC 5266 §3.1.3), a link going down
//! ends the attachment.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::StreamExt;
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::MulticastGroup;
use tokio::task::JoinHandle;

use super::addr::IfAddress;
use super::link::{link_name, LinkState};
use super::Result;

/// What changed on the node's interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    AddressAdded {
        ifindex: u32,
        ifname: String,
        addr: IpAddr,
        prefix_len: u8,
    },
    AddressRemoved {
        ifindex: u32,
        ifname: String,
        addr: IpAddr,
        prefix_len: u8,
    },
    /// Administratively up with carrier.
    LinkUp { ifindex: u32, ifname: String },
    /// Down, or lost its carrier.
    LinkDown { ifindex: u32, ifname: String },
    /// The interface is gone.
    LinkRemoved { ifindex: u32, ifname: String },
    /// An IPv4 unicast route appeared (any table). A DHCP-style attach adds
    /// the address first and the default route a moment later: a request
    /// that found no route can go out now.
    RouteAdded {
        table: u32,
        dst: Ipv4Addr,
        prefix_len: u8,
    },
    /// An IPv6 default route of the main table appeared (`added`) or went:
    /// IPv6 access reaches beyond its link only with it, and charon would
    /// otherwise start the VPN from a link-local address.
    Ipv6DefaultRoute { added: bool },
}

/// A unicast default route of the main table.
pub(crate) fn is_default_route(m: &netlink_packet_route::route::RouteMessage) -> bool {
    let table = m
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(m.header.table));
    m.header.kind == RouteType::Unicast
        && m.header.destination_prefix_length == 0
        && table == u32::from(netlink_packet_route::route::RouteHeader::RT_TABLE_MAIN)
}

/// Turns rtnetlink notifications into [`NetEvent`]s. The kernel sends
/// RTM_NEWLINK for many reasons (statistics, MTU, ...): only transitions
/// of the running state become events.
#[derive(Debug, Default)]
pub struct EventMapper {
    running: HashMap<u32, bool>,
    names: HashMap<u32, String>,
}

impl EventMapper {
    pub fn map(&mut self, msg: &RouteNetlinkMessage) -> Option<NetEvent> {
        match msg {
            RouteNetlinkMessage::NewAddress(m) | RouteNetlinkMessage::DelAddress(m) => {
                let a = IfAddress::from_message(m)?;
                // IPv4 labels are "ifname" or "ifname:alias"; ':' cannot
                // appear in an interface name. IPv6 addresses have none.
                let ifname = a
                    .label
                    .as_deref()
                    .map(|l| l.split(':').next().unwrap_or(l).to_string())
                    .or_else(|| self.names.get(&a.ifindex).cloned())
                    .unwrap_or_default();
                let (ifindex, addr, prefix_len) = (a.ifindex, a.addr, a.prefix_len);
                Some(if matches!(msg, RouteNetlinkMessage::NewAddress(_)) {
                    NetEvent::AddressAdded {
                        ifindex,
                        ifname,
                        addr,
                        prefix_len,
                    }
                } else {
                    NetEvent::AddressRemoved {
                        ifindex,
                        ifname,
                        addr,
                        prefix_len,
                    }
                })
            }
            RouteNetlinkMessage::NewLink(m) => {
                let st = LinkState::from_message(m);
                if let Some(n) = link_name(m) {
                    self.names.insert(st.index, n);
                }
                let ifname = self.names.get(&st.index).cloned().unwrap_or_default();
                let now = st.is_running();
                if self.running.insert(st.index, now) == Some(now) {
                    return None;
                }
                Some(if now {
                    NetEvent::LinkUp {
                        ifindex: st.index,
                        ifname,
                    }
                } else {
                    NetEvent::LinkDown {
                        ifindex: st.index,
                        ifname,
                    }
                })
            }
            RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m)
                if m.header.address_family == AddressFamily::Inet6 =>
            {
                is_default_route(m).then_some(NetEvent::Ipv6DefaultRoute {
                    added: matches!(msg, RouteNetlinkMessage::NewRoute(_)),
                })
            }
            RouteNetlinkMessage::NewRoute(m)
                if m.header.address_family == AddressFamily::Inet
                    && m.header.kind == RouteType::Unicast =>
            {
                let mut table = u32::from(m.header.table);
                let mut dst = Ipv4Addr::UNSPECIFIED;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Table(t) => table = *t,
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = *d,
                        _ => {}
                    }
                }
                Some(NetEvent::RouteAdded {
                    table,
                    dst,
                    prefix_len: m.header.destination_prefix_length,
                })
            }
            RouteNetlinkMessage::DelLink(m) => {
                let ifindex = m.header.index;
                self.running.remove(&ifindex);
                let ifname = self
                    .names
                    .remove(&ifindex)
                    .or_else(|| link_name(m))
                    .unwrap_or_default();
                Some(NetEvent::LinkRemoved { ifindex, ifname })
            }
            _ => None,
        }
    }
}

type Messages = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// A multicast netlink socket subscribed to IPv4 and IPv6 address, route
/// and link events.
/// Must be created inside a tokio runtime. After a socket overrun
/// (ENOBUFS) events may be missing: callers resynchronise with
/// [`super::Netlink::list_addresses`] on start and when in doubt.
pub struct Watcher {
    messages: Messages,
    mapper: EventMapper,
    conn: JoinHandle<()>,
}

impl Watcher {
    pub fn new() -> Result<Self> {
        let (mut conn, _handle, messages) = rtnetlink::new_multicast_connection(&[
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ])?;
        super::watch_filter::attach(conn.socket_mut().socket_ref())?;
        Ok(Watcher {
            messages,
            mapper: EventMapper::default(),
            conn: tokio::spawn(conn),
        })
    }

    /// The next event; None when the socket is gone.
    pub async fn next(&mut self) -> Option<NetEvent> {
        loop {
            let (msg, _) = self.messages.next().await?;
            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                if let Some(ev) = self.mapper.map(&m) {
                    return Some(ev);
                }
            }
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
    use netlink_packet_route::AddressFamily;

    fn link(index: u32, flags: LinkFlags) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName("wlan0".into()));
        RouteNetlinkMessage::NewLink(m)
    }

    #[test]
    fn only_link_transitions_become_events() {
        let mut map = EventMapper::default();
        let up = LinkFlags::Up | LinkFlags::LowerUp;
        assert_eq!(
            map.map(&link(3, up)),
            Some(NetEvent::LinkUp {
                ifindex: 3,
                ifname: "wlan0".into()
            })
        );
        assert_eq!(map.map(&link(3, up)), None, "no change, no event");
        assert_eq!(
            map.map(&link(3, LinkFlags::Up)),
            Some(NetEvent::LinkDown {
                ifindex: 3,
                ifname: "wlan0".into()
            }),
            "carrier loss is down"
        );
    }

    #[test]
    fn address_alias_label_maps_to_interface_name() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.index = 7;
        m.header.prefix_len = 24;
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4([10, 1, 1, 9].into())));
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4([10, 1, 1, 2].into())));
        m.attributes
            .push(AddressAttribute::Label("eth1:mip".into()));
        let mut map = EventMapper::default();
        assert_eq!(
            map.map(&RouteNetlinkMessage::DelAddress(m)),
            Some(NetEvent::AddressRemoved {
                ifindex: 7,
                ifname: "eth1".into(),
                addr: Ipv4Addr::new(10, 1, 1, 2).into(),
                prefix_len: 24
            })
        );
    }

    #[test]
    fn ipv6_addresses_are_events_with_the_interface_name_known_from_its_link() {
        let mut map = EventMapper::default();
        map.map(&link(4, LinkFlags::Up | LinkFlags::LowerUp));
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.header.index = 4;
        m.header.prefix_len = 64;
        let a: std::net::Ipv6Addr = "2001:db8:a::100".parse().unwrap();
        m.attributes.push(AddressAttribute::Address(IpAddr::V6(a)));
        assert_eq!(
            map.map(&RouteNetlinkMessage::NewAddress(m)),
            Some(NetEvent::AddressAdded {
                ifindex: 4,
                ifname: "wlan0".into(),
                addr: IpAddr::V6(a),
                prefix_len: 64
            })
        );
    }

    #[test]
    fn an_address_of_the_other_family_than_the_header_is_ignored() {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4([10, 1, 1, 2].into())));
        assert_eq!(
            EventMapper::default().map(&RouteNetlinkMessage::NewAddress(m)),
            None
        );
    }

    #[test]
    fn only_the_ipv6_default_route_of_the_main_table_is_an_event() {
        use netlink_packet_route::route::{RouteHeader, RouteMessage};
        let route = |prefix_len: u8, table: u8| {
            let mut m = RouteMessage::default();
            m.header.address_family = AddressFamily::Inet6;
            m.header.kind = RouteType::Unicast;
            m.header.destination_prefix_length = prefix_len;
            m.header.table = table;
            m
        };
        let mut map = EventMapper::default();
        let main = RouteHeader::RT_TABLE_MAIN;
        assert_eq!(
            map.map(&RouteNetlinkMessage::NewRoute(route(0, main))),
            Some(NetEvent::Ipv6DefaultRoute { added: true })
        );
        assert_eq!(
            map.map(&RouteNetlinkMessage::DelRoute(route(0, main))),
            Some(NetEvent::Ipv6DefaultRoute { added: false })
        );
        // The link's fe80::/64, and a default route of another table.
        assert_eq!(
            map.map(&RouteNetlinkMessage::NewRoute(route(64, main))),
            None
        );
        assert_eq!(map.map(&RouteNetlinkMessage::NewRoute(route(0, 220))), None);
    }
}
