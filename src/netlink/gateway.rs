//! Each interface's default gateway and its MAC address, from the main
//! routing table and the neighbour table: how mip4d tells one access
//! network from another (the key of its verdict cache and of
//! `never_probe` by MAC, RFC 5266 §5). A DHCP client installs the default
//! route but rarely talks to the gateway before the first datagram; a
//! [`Resolver`] datagram makes the kernel resolve it, and the
//! [`NeighbourWatcher`] reports the answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::{MulticastGroup, RouteMessageBuilder};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::task::JoinHandle;

use super::{Error, Netlink, Result};

/// The main table.
const MAIN: u32 = 254;

/// `(oif, gateway)` of a default route in the main table.
pub fn default_route(m: &RouteMessage) -> Option<(u32, Ipv4Addr)> {
    if m.header.destination_prefix_length != 0 {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let (mut oif, mut gateway) = (None, None);
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
            _ => {}
        }
    }
    (table == MAIN).then_some(())?;
    Some((oif?, gateway?))
}

/// `(ifindex, address, MAC)` of a resolved IPv4 neighbour entry; None
/// for an entry without a usable link-layer address (incomplete, failed).
pub fn resolved_neighbour(m: &NeighbourMessage) -> Option<(u32, Ipv4Addr, [u8; 6])> {
    let usable = [
        NeighbourState::Reachable,
        NeighbourState::Stale,
        NeighbourState::Delay,
        NeighbourState::Probe,
        NeighbourState::Permanent,
        NeighbourState::Noarp,
    ];
    if !usable.contains(&m.header.state) {
        return None;
    }
    let (mut addr, mut mac) = (None, None);
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(d)) => addr = Some(*d),
            NeighbourAttribute::LinkLayerAddress(l) => mac = <[u8; 6]>::try_from(&l[..]).ok(),
            _ => {}
        }
    }
    Some((m.header.ifindex, addr?, mac?))
}

impl Netlink {
    /// The default routes of the main table: `(oif, gateway)`.
    pub async fn default_gateways(&self) -> Result<Vec<(u32, Ipv4Addr)>> {
        let msg = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let routes: Vec<RouteMessage> = self
            .handle
            .route()
            .get(msg)
            .execute()
            .try_collect()
            .await
            .map_err(Error::request("dump routes"))?;
        Ok(routes.iter().filter_map(default_route).collect())
    }

    /// The MAC the neighbour table holds for `addr` on `ifindex`.
    pub async fn neighbour_mac(&self, ifindex: u32, addr: Ipv4Addr) -> Result<Option<[u8; 6]>> {
        let entries: Vec<NeighbourMessage> = self
            .handle
            .neighbours()
            .get()
            .set_address_family(netlink_packet_route::AddressFamily::Inet)
            .execute()
            .try_collect()
            .await
            .map_err(Error::request("dump neighbours"))?;
        Ok(entries
            .iter()
            .filter_map(resolved_neighbour)
            .find(|(i, a, _)| *i == ifindex && *a == addr)
            .map(|(.., mac)| mac))
    }
}

/// Makes the kernel resolve a gateway's MAC: one empty UDP datagram to
/// its discard port (9) from the interface. It carries nothing about
/// the node.
pub fn resolve(ifname: &str, gateway: Ipv4Addr) -> std::io::Result<()> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind_device(Some(ifname.as_bytes()))?;
    s.set_nonblocking(true)?;
    s.send_to(&[], &SocketAddr::new(IpAddr::V4(gateway), 9).into())?;
    Ok(())
}

type Messages = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// A multicast socket on the neighbour table (RTNLGRP_NEIGH). Must be
/// created inside a tokio runtime.
pub struct NeighbourWatcher {
    messages: Messages,
    conn: JoinHandle<()>,
}

impl NeighbourWatcher {
    pub fn new() -> Result<Self> {
        let (conn, _handle, messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Neigh])?;
        Ok(NeighbourWatcher {
            messages,
            conn: tokio::spawn(conn),
        })
    }

    /// The next resolved neighbour `(ifindex, address, MAC)`; None when
    /// the socket is gone.
    pub async fn next(&mut self) -> Option<(u32, Ipv4Addr, [u8; 6])> {
        loop {
            let (msg, _) = self.messages.next().await?;
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m)) = msg.payload
            {
                if let Some(n) = resolved_neighbour(&m) {
                    return Some(n);
                }
            }
        }
    }
}

impl Drop for NeighbourWatcher {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::AddressFamily;

    #[test]
    fn only_main_table_default_routes_with_a_gateway_count() {
        let mut m = RouteMessage::default();
        m.header.table = 254;
        m.attributes.push(RouteAttribute::Oif(3));
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(
                [10, 1, 10, 1].into(),
            )));
        assert_eq!(default_route(&m), Some((3, [10, 1, 10, 1].into())));
        let mut other = m.clone();
        other.header.table = 220;
        assert_eq!(default_route(&other), None, "charon's table");
        let mut host = m.clone();
        host.header.destination_prefix_length = 24;
        assert_eq!(default_route(&host), None);
    }

    #[test]
    fn only_resolved_neighbours_give_a_mac() {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = 3;
        m.header.state = NeighbourState::Reachable;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                [10, 1, 10, 1].into(),
            )));
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(vec![
            2, 0, 0x5e, 0, 0x53, 1,
        ]));
        assert_eq!(
            resolved_neighbour(&m),
            Some((3, [10, 1, 10, 1].into(), [2, 0, 0x5e, 0, 0x53, 1]))
        );
        m.header.state = NeighbourState::Incomplete;
        assert_eq!(resolved_neighbour(&m), None);
    }
}
