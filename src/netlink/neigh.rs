//! Proxy ARP entries (`ip neigh add proxy ADDR dev IF`): an HA serving
//! home addresses on a real home link answers ARP for each away mobile
//! node (RFC 5944 §4.6, "proxy ARP" by the home agent), so that hosts on
//! the home link send it the datagrams it must tunnel.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;

use super::{Error, Netlink, Result};

impl Netlink {
    /// Answer ARP for `addr` on interface `ifindex` (NTF_PROXY entry).
    /// The kernel answers for proxy entries without `proxy_arp` set on the
    /// interface; forwarding must be on for the datagrams to reach the
    /// tunnel.
    pub async fn add_proxy_neighbour(&self, ifindex: u32, addr: Ipv4Addr) -> Result<()> {
        self.handle
            .neighbours()
            .add(ifindex, IpAddr::V4(addr))
            .flags(NeighbourFlags::Proxy)
            .replace()
            .execute()
            .await
            .map_err(Error::request(format!(
                "add proxy neighbour {addr} on {ifindex}"
            )))
    }

    /// Stop answering ARP for `addr` (the node came home, or its binding
    /// expired).
    pub async fn del_proxy_neighbour(&self, ifindex: u32, addr: Ipv4Addr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = ifindex;
        m.header.flags = NeighbourFlags::Proxy;
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        self.handle
            .neighbours()
            .del(m)
            .execute()
            .await
            .map_err(Error::request(format!(
                "delete proxy neighbour {addr} on {ifindex}"
            )))
    }

    /// A permanent neighbour entry `addr lladdr MAC dev IF` (`ip neigh
    /// replace ... nud permanent`): a foreign agent delivers to a visitor
    /// by the link-layer address its registration came from, never by ARP
    /// for its home address (RFC 5944 §4.6).
    pub async fn add_static_neighbour(
        &self,
        ifindex: u32,
        addr: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<()> {
        self.handle
            .neighbours()
            .add(ifindex, IpAddr::V4(addr))
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(Error::request(format!("add neighbour {addr} on {ifindex}")))
    }

    /// Removes the neighbour entry for `addr` on `ifindex`.
    pub async fn del_neighbour(&self, ifindex: u32, addr: Ipv4Addr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = ifindex;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
                addr,
            )));
        self.handle
            .neighbours()
            .del(m)
            .execute()
            .await
            .map_err(Error::request(format!(
                "delete neighbour {addr} on {ifindex}"
            )))
    }
}
