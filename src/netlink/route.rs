//! Routes (`ip route`) and policy rules (`ip rule`) in a given table.
//!
//! mip4d uses them to make the home address usable while away (a rule
//! `from HoA lookup T` and a default route into the tunnel in table T), the
//! HA to route home addresses into their tunnels.

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use netlink_packet_route::route::{
    RouteAttribute, RouteMessage, RouteMetric, RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleMessage};
use rtnetlink::RouteMessageBuilder;

use super::{Error, Netlink, Result};

/// The main routing table (RT_TABLE_MAIN).
pub const TABLE_MAIN: u32 = 254;

/// A unicast IPv4 route: `DST/LEN [via GW] [dev IF] [src SRC] table T
/// [metric M] [mtu MTU]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub via: Option<Ipv4Addr>,
    pub dev: Option<u32>,
    pub src: Option<Ipv4Addr>,
    pub table: u32,
    pub metric: Option<u32>,
    /// The path MTU of what takes the route (RTAX_MTU).
    pub mtu: Option<u32>,
}

impl RouteSpec {
    /// `DST/LEN dev IF` in the main table.
    pub fn to_dev(dst: Ipv4Addr, prefix_len: u8, dev: u32) -> Self {
        RouteSpec {
            dst,
            prefix_len,
            via: None,
            dev: Some(dev),
            src: None,
            table: TABLE_MAIN,
            metric: None,
            mtu: None,
        }
    }

    pub fn in_table(mut self, table: u32) -> Self {
        self.table = table;
        self
    }

    fn message(&self) -> RouteMessage {
        let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst, self.prefix_len)
            .table_id(self.table);
        if let Some(gw) = self.via {
            b = b.gateway(gw);
        } else {
            // What `ip route add ... dev X` does: a directly reachable
            // destination has link scope.
            b = b.scope(RouteScope::Link);
        }
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
        if let Some(mtu) = self.mtu {
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        msg
    }
}

/// A route without a device: `KIND DST/LEN table T`.
fn typed_message(dst: Ipv4Addr, prefix_len: u8, table: u32, kind: RouteType) -> RouteMessage {
    let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, prefix_len)
        .table_id(table)
        .build();
    msg.header.kind = kind;
    msg
}

/// A policy rule: `[from SRC/LEN] [to DST/LEN] [iif IF] [fwmark M]
/// lookup T priority P`, or `... unreachable priority P` when
/// `unreachable` (the table is then not used).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSpec {
    pub from: Option<(Ipv4Addr, u8)>,
    pub to: Option<(Ipv4Addr, u8)>,
    pub iif: Option<String>,
    pub fwmark: Option<u32>,
    pub table: u32,
    pub priority: u32,
    /// `unreachable`: a matching lookup fails with ENETUNREACH, so the
    /// datagram is refused to its sender rather than routed by a later
    /// rule.
    pub unreachable: bool,
}

impl Netlink {
    /// `ip route add`; fails with EEXIST if the route is there.
    pub async fn add_route(&self, r: &RouteSpec) -> Result<()> {
        self.handle
            .route()
            .add(r.message())
            .execute()
            .await
            .map_err(Error::request(format!("add route {r:?}")))
    }

    /// `ip route replace`.
    pub async fn replace_route(&self, r: &RouteSpec) -> Result<()> {
        self.replace_message(r.message(), format!("replace route {r:?}"))
            .await
    }

    /// `ip route replace` (either family), the failure named `op`.
    pub(super) async fn replace_message(&self, msg: RouteMessage, op: String) -> Result<()> {
        self.handle
            .route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(Error::request(op))
    }

    /// `ip route del` (either family), the failure named `op`.
    pub(super) async fn del_message(&self, msg: RouteMessage, op: String) -> Result<()> {
        self.handle
            .route()
            .del(msg)
            .execute()
            .await
            .map_err(Error::request(op))
    }

    /// `ip route replace blackhole DST/LEN table T`: traffic routed here
    /// is dropped before any device (mip4d holds the home address's
    /// traffic this way while trusted-network detection runs).
    pub async fn replace_blackhole(&self, dst: Ipv4Addr, prefix_len: u8, table: u32) -> Result<()> {
        self.replace_typed(dst, prefix_len, table, RouteType::BlackHole)
            .await
    }

    /// `ip route replace throw DST/LEN table T`: a lookup that ends here
    /// goes on with the next rule (mip4d keeps the home agent, the VPN
    /// gateway and on-link destinations out of its home-source table).
    pub async fn replace_throw(&self, dst: Ipv4Addr, prefix_len: u8, table: u32) -> Result<()> {
        self.replace_typed(dst, prefix_len, table, RouteType::Throw)
            .await
    }

    /// `ip route del throw DST/LEN table T`.
    pub async fn del_throw(&self, dst: Ipv4Addr, prefix_len: u8, table: u32) -> Result<()> {
        self.handle
            .route()
            .del(typed_message(dst, prefix_len, table, RouteType::Throw))
            .execute()
            .await
            .map_err(Error::request(format!(
                "delete throw {dst}/{prefix_len} table {table}"
            )))
    }

    async fn replace_typed(
        &self,
        dst: Ipv4Addr,
        prefix_len: u8,
        table: u32,
        kind: RouteType,
    ) -> Result<()> {
        self.handle
            .route()
            .add(typed_message(dst, prefix_len, table, kind))
            .replace()
            .execute()
            .await
            .map_err(Error::request(format!(
                "replace {kind:?} {dst}/{prefix_len} table {table}"
            )))
    }

    /// `ip -6 route replace DST/LEN dev IF` in the main table (mip4-ha:
    /// a DSMIPv4 prefix into the tunnel device, RFC 5454).
    pub async fn replace_route6(&self, dst: Ipv6Net, dev: u32) -> Result<()> {
        self.replace_route6_in(&super::ipv6::Route6::to_dev(dst, dev))
            .await
    }

    /// `ip -6 route del DST/LEN dev IF`.
    pub async fn del_route6(&self, dst: Ipv6Net, dev: u32) -> Result<()> {
        self.del_route6_in(&super::ipv6::Route6::to_dev(dst, dev))
            .await
    }

    /// `ip route del`.
    pub async fn del_route(&self, r: &RouteSpec) -> Result<()> {
        self.del_message(r.message(), format!("delete route {r:?}"))
            .await
    }

    fn rule_message(&self, r: &RuleSpec) -> RuleMessage {
        let (table, action) = match r.unreachable {
            true => (0, RuleAction::Unreachable),
            false => (r.table, RuleAction::ToTable),
        };
        let mut req = self
            .handle
            .rule()
            .add()
            .table_id(table)
            .priority(r.priority)
            .action(action);
        if let Some(iif) = &r.iif {
            req = req.input_interface(iif.clone());
        }
        if let Some(mark) = r.fwmark {
            req = req.fw_mark(mark);
        }
        let mut req = req.v4();
        if let Some((a, l)) = r.from {
            req = req.source_prefix(a, l);
        }
        if let Some((a, l)) = r.to {
            req = req.destination_prefix(a, l);
        }
        req.message_mut().clone()
    }

    /// `ip rule add`.
    pub async fn add_rule(&self, r: &RuleSpec) -> Result<()> {
        let mut req = self.handle.rule().add().v4();
        *req.message_mut() = self.rule_message(r);
        req.execute()
            .await
            .map_err(Error::request(format!("add rule {r:?}")))
    }

    /// `ip rule del`.
    pub async fn del_rule(&self, r: &RuleSpec) -> Result<()> {
        self.handle
            .rule()
            .del(self.rule_message(r))
            .execute()
            .await
            .map_err(Error::request(format!("delete rule {r:?}")))
    }

    /// `ip rule del priority P lookup T`, repeated while one is left:
    /// every rule at that priority into that table, whatever its
    /// selectors. Returns how many went.
    pub async fn del_rules_at(&self, priority: u32, table: u32) -> Result<usize> {
        self.del_rules_like(&RuleSpec {
            table,
            priority,
            ..RuleSpec::default()
        })
        .await
    }

    /// `ip rule del` with `like`, repeated while one is left: every rule
    /// at its priority with its action (and table), whatever its
    /// selectors. Returns how many went.
    pub async fn del_rules_like(&self, like: &RuleSpec) -> Result<usize> {
        let mut n = 0;
        loop {
            match self.del_rule(like).await {
                Ok(()) => n += 1,
                Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(n),
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the main table has an IPv6 default route (`ip -6 route
    /// show default`): an IPv6 access network can reach the VPN gateway.
    pub async fn has_ipv6_default_route(&self) -> Result<bool> {
        use futures::TryStreamExt;
        let msgs: Vec<RouteMessage> = self
            .handle
            .route()
            .get(RouteMessageBuilder::<std::net::Ipv6Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .map_err(Error::request("list IPv6 routes"))?;
        Ok(msgs.iter().any(|m| {
            super::watch::is_default_route(m)
                && m.header.address_family == netlink_packet_route::AddressFamily::Inet6
        }))
    }

    /// `ip route del DST/LEN table T`, repeated while one is left: every
    /// route to exactly that prefix in that table, whatever its type
    /// (blackholes included) or device. Returns how many went.
    pub async fn del_routes_to(&self, dst: Ipv4Addr, prefix_len: u8, table: u32) -> Result<usize> {
        let mut n = 0;
        loop {
            let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst, prefix_len)
                .table_id(table)
                .build();
            // Any scope and any type, as `ip route del` asks.
            msg.header.scope = RouteScope::NoWhere;
            msg.header.kind = netlink_packet_route::route::RouteType::Unspec;
            match self.handle.route().del(msg).execute().await {
                Ok(()) => n += 1,
                Err(e) => {
                    let e = Error::request(format!("delete {dst}/{prefix_len} table {table}"))(e);
                    return match e.errno() {
                        Some(libc::ESRCH) => Ok(n),
                        _ => Err(e),
                    };
                }
            }
        }
    }
}
