//! IPv6 addresses, routes and rules of a DSMIPv4 mobile node (RFC 5454):
//! its IPv6 home address on the tunnel's device, the destinations routed
//! into it, and the rule that sends what leaves from its prefix there.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::Ipv6Net;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::route::{RouteMessage, RouteType};
use netlink_packet_route::rule::{RuleAction, RuleMessage};
use rtnetlink::RouteMessageBuilder;

use super::{Error, Netlink, Result};

/// An IPv6 route: `[blackhole] DST [dev IF] [src SRC] table T [metric M]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    pub dst: Ipv6Net,
    /// `None`: a blackhole.
    pub dev: Option<u32>,
    pub src: Option<Ipv6Addr>,
    pub table: u32,
    pub metric: Option<u32>,
}

impl Route6 {
    /// `DST dev IF` in the main table.
    pub fn to_dev(dst: Ipv6Net, dev: u32) -> Self {
        Route6 {
            dst,
            dev: Some(dev),
            src: None,
            table: super::route::TABLE_MAIN,
            metric: None,
        }
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(self.dst.network(), self.dst.prefix_len())
            .table_id(self.table);
        if let Some(dev) = self.dev {
            b = b.output_interface(dev);
        }
        if let Some(src) = self.src {
            b = b.pref_source(src);
        }
        if let Some(m) = self.metric {
            b = b.priority(m);
        }
        let mut msg = b.build();
        if self.dev.is_none() {
            msg.header.kind = RouteType::BlackHole;
        }
        msg
    }
}

impl Netlink {
    /// `ip -6 addr add ADDR/LEN dev IF nodad`: usable at once (the
    /// address is the node's own, from the prefix its home agent gave it
    /// alone, RFC 5454 §2.2).
    pub async fn add_address6(&self, ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(ifindex, IpAddr::V6(addr), prefix_len);
        let m = req.message_mut();
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
        req.execute().await.map_err(Error::request(format!(
            "add address {addr}/{prefix_len} on {ifindex}"
        )))
    }

    /// `ip -6 addr del ADDR/LEN dev IF`.
    pub async fn del_address6(&self, ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(ifindex, IpAddr::V6(addr), prefix_len);
        let msg = req.message_mut().clone();
        self.handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(Error::request(format!(
                "delete address {addr}/{prefix_len} on {ifindex}"
            )))
    }

    /// `ip -6 route replace ...`.
    pub async fn replace_route6_in(&self, r: &Route6) -> Result<()> {
        self.replace_message(r.message(), format!("replace route {r:?}"))
            .await
    }

    /// `ip -6 route del ...`.
    pub async fn del_route6_in(&self, r: &Route6) -> Result<()> {
        self.del_message(r.message(), format!("delete route {r:?}"))
            .await
    }

    /// `ip -6 route del DST table T`, repeated while one is left (any
    /// device, blackholes too). Returns how many went.
    pub async fn del_routes6_to(&self, dst: Ipv6Net, table: u32) -> Result<usize> {
        let mut n = 0;
        loop {
            let msg = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst.network(), dst.prefix_len())
                .table_id(table)
                .build();
            match self.handle.route().del(msg).execute().await {
                Ok(()) => n += 1,
                Err(e) => {
                    let e = Error::request(format!("delete route {dst} table {table}"))(e);
                    if e.errno() == Some(libc::ESRCH) || e.errno() == Some(libc::ENOENT) {
                        return Ok(n);
                    }
                    return Err(e);
                }
            }
        }
    }

    fn rule6_message(&self, from: Option<Ipv6Net>, table: u32, priority: u32) -> RuleMessage {
        let mut req = self
            .handle
            .rule()
            .add()
            .table_id(table)
            .priority(priority)
            .action(RuleAction::ToTable)
            .v6();
        if let Some(p) = from {
            req = req.source_prefix(p.network(), p.prefix_len());
        }
        req.message_mut().clone()
    }

    /// `ip -6 rule add from PREFIX lookup T priority P`.
    pub async fn add_rule6_from(&self, from: Ipv6Net, table: u32, priority: u32) -> Result<()> {
        let mut req = self.handle.rule().add().v6();
        *req.message_mut() = self.rule6_message(Some(from), table, priority);
        req.execute().await.map_err(Error::request(format!(
            "add rule from {from} lookup {table} priority {priority}"
        )))
    }

    /// `ip -6 rule del from PREFIX lookup T priority P`.
    pub async fn del_rule6_from(&self, from: Ipv6Net, table: u32, priority: u32) -> Result<()> {
        self.handle
            .rule()
            .del(self.rule6_message(Some(from), table, priority))
            .execute()
            .await
            .map_err(Error::request(format!(
                "delete rule from {from} lookup {table} priority {priority}"
            )))
    }

    /// `ip -6 rule del priority P lookup T`, repeated while one is left.
    pub async fn del_rules6_at(&self, priority: u32, table: u32) -> Result<usize> {
        let mut n = 0;
        loop {
            let msg = self.rule6_message(None, table, priority);
            match self.handle.rule().del(msg).execute().await {
                Ok(()) => n += 1,
                Err(e) => {
                    let e = Error::request(format!("delete rule priority {priority}"))(e);
                    if e.errno() == Some(libc::ENOENT) {
                        return Ok(n);
                    }
                    return Err(e);
                }
            }
        }
    }
}
