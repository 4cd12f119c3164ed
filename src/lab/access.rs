//! The MN's access links changed through rtnetlink from inside its
//! namespace, with no process started: a move's break and make are the
//! kernel's work alone. With `ip -batch` each half cost a fork and exec
//! (and `ip -n`'s own mount namespace), 5-10 ms on an idle machine and up
//! to 200 ms on a loaded one (~0.1 s in the kernel tier's emulation), all
//! of it inside the measured move, the same for every variant compared.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::LinkFlags;
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, SocketAddr};
use rtnetlink::{proto, AddressMessageBuilder, RouteMessageBuilder};

use super::topology::{unix_now, AccessSpec};
use super::{Error, Result};
use crate::netlink::Netlink;

/// What a DHCP client does on one access network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The network's own address goes (with kernel-netlink, charon puts
    /// the VPN's virtual IP on the access interface too, and it stays),
    /// then the link goes down.
    Down,
    /// The link comes up with the address and a default route via the
    /// network's gateway: replacing the default route, or beside the
    /// others with a metric of its own. The address and route come
    /// `late` after the link is operational: a DHCP client's lease takes
    /// its exchange (hundreds of ms to seconds on a real network).
    Up { metric: Option<u32>, late: Duration },
}

/// The network's end of an access link: its namespace and device.
pub type Peer = (String, String);

/// Runs `steps` in order, in namespace `ns` (a name under /run/netns).
/// Returns when the last [`Step::Up`] gave the kernel its address (unix
/// seconds, read just before the request: the kernel's RTM_NEWADDR, the
/// first a routing daemon, charon or mip4d can see of the new network,
/// comes after it, so a time measured from here is never short).
pub fn change(ns: &str, steps: &[(&AccessSpec, Step, Option<Peer>)]) -> Result<Option<f64>> {
    // Each link's network end is watched from before the MN's end comes
    // up, so that the watch's own start (a thread entering the peer's
    // namespace, its runtime and netlink socket: tens of ms in the kernel
    // tier's one-vCPU guest) is not between the link and the address,
    // where kernel-netlink's roam job (100 ms after the link) would meet
    // the address.
    let steps: Vec<_> = steps
        .iter()
        .map(|(a, step, peer)| {
            let watch = match (step, peer.clone()) {
                (Step::Up { .. }, Some(peer)) if watch_peers() => {
                    Some(std::thread::spawn(move || peer_operational(&peer)))
                }
                _ => None,
            };
            ((*a).clone(), *step, watch)
        })
        .collect();
    // The netlink socket must be opened inside the namespace.
    super::netns::block_on_in(ns, "access link", move || async move {
        let nl = Netlink::new().map_err(other)?;
        let mut address_at = None;
        for (a, step, watch) in steps {
            address_at = apply(&nl, &a, step, watch).await?.or(address_at);
        }
        Ok(address_at)
    })
}

/// One step; for [`Step::Up`], when its address was requested.
async fn apply(
    nl: &Netlink,
    a: &AccessSpec,
    step: Step,
    peer: Option<std::thread::JoinHandle<Result<()>>>,
) -> Result<Option<f64>> {
    let index = nl.link_index(&a.dev).await.map_err(other)?;
    let (addr, len) = cidr(&a.addr)?;
    match step {
        Step::Down => {
            match addr {
                IpAddr::V4(v4) => nl.del_address(index, v4, len).await,
                IpAddr::V6(v6) => nl.del_address6(index, v6, len).await,
            }
            .map_err(other)?;
            nl.set_link_up(index, false).await.map_err(other)?;
            Ok(None)
        }
        Step::Up { metric, late } => {
            nl.set_link_up(index, true).await.map_err(other)?;
            operational(nl, index, &a.dev).await?;
            if let Some(watch) = peer {
                watch
                    .join()
                    .map_err(|_| Error::Other("the access link's peer watch panicked".into()))??;
            }
            if !late.is_zero() {
                tokio::time::sleep(late).await;
            }
            let route = default_route(&a.gateway, index, metric)?;
            let address_at = unix_now();
            // Beside the other networks' routes: a plain add (each has a
            // metric of its own); else the one default route, replaced.
            address_and_route(index, addr, len, route, metric.is_none())
                .await
                .map_err(|e| {
                    Error::Other(format!(
                        "address {} and default route via {}: {e}",
                        a.addr, a.gateway
                    ))
                })?;
            Ok(Some(address_at))
        }
    }
}

/// The address and the default route in one netlink datagram, as a DHCP
/// client that has its lease sets them, one right after the other: the
/// kernel applies both in one sendmsg(2), so a watcher of rtnetlink
/// (charon's kernel-netlink, mip4d, the plugin) gets the route right
/// behind the address. Sent as two requests, each awaited, the route came 40-50 ms
/// after the address in the kernel tier's one-vCPU guest: the lab's second
/// request waited behind the MN's charon and mip4d reacting to the first,
/// and kernel-netlink's roam job could run between (lab/README.md, a late
/// address). `replace`: the one default route, replaced. IPv6 without
/// duplicate address detection: the lab's addresses are unique by plan
/// (netns::addr_add_args).
async fn address_and_route(
    index: u32,
    addr: IpAddr,
    len: u8,
    route: RouteMessage,
    replace: bool,
) -> std::result::Result<(), String> {
    let address = match addr {
        IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(v4, len)
            .build(),
        IpAddr::V6(v6) => {
            let mut m = AddressMessageBuilder::<Ipv6Addr>::new()
                .index(index)
                .address(v6, len)
                .build();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
            m
        }
    };
    let request = |m: RouteNetlinkMessage, how: u16| {
        let mut m = NetlinkMessage::from(m);
        m.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | how;
        m
    };
    let batch = [
        request(RouteNetlinkMessage::NewAddress(address), NLM_F_EXCL),
        request(
            RouteNetlinkMessage::NewRoute(route),
            if replace { NLM_F_REPLACE } else { NLM_F_EXCL },
        ),
    ];
    let (conn, handle, _) = proto::new_connection(NETLINK_ROUTE).map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let acked = async {
        // Ends once both were acknowledged; an error is answered instead.
        let mut answers = handle
            .request_batch(batch, SocketAddr::new(0, 0))
            .map_err(|e| e.to_string())?;
        while let Some(m) = answers.next().await {
            if let NetlinkPayload::Error(e) = m.payload {
                return Err(e.to_string());
            }
        }
        Ok(())
    }
    .await;
    conn.abort();
    acked
}

/// Waits until the link is operational (IFF_RUNNING). The kernel sets it
/// from its linkwatch work, which also swaps the device's `noop` qdisc,
/// dropping all it is given, for the real one: on a loaded machine that
/// work ran late, the ARP request of the MN's first datagram went into
/// the `noop` qdisc, and the datagram waited the 1 s of ARP's
/// retransmission (a move of 1.2 s). A DHCP client's address comes only
/// after the link carries its exchange, so the address waits here too.
async fn operational(nl: &Netlink, index: u32, dev: &str) -> Result<()> {
    let deadline = Instant::now() + OPERATIONAL_WITHIN;
    loop {
        let mut links = nl.handle().link().get().match_index(index).execute();
        let running = links
            .try_next()
            .await
            .map_err(|e| Error::Other(format!("get link {dev}: {e}")))?
            .is_some_and(|m| m.header.flags.contains(LinkFlags::Running));
        if running {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "{dev} not operational {OPERATIONAL_WITHIN:?} after it was set up"
            )));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until the network's end of the link is operational too. A veth
/// peer loses its carrier while the MN's end is down and gets it back
/// with it; its own linkwatch work then swaps its `noop` qdisc, which
/// drops the router's ARP reply to the MN's first datagram until it
/// has: the MN's update then waited ARP's 1 s retransmission (the lab's
/// `early-moves`, into network C, in 4 of 7 runs). A real access
/// router's interface stays up while laptops come and go. Blocking: its
/// own thread in the peer's namespace, started before the MN's end comes
/// up and waited for before the MN's address goes on ([`change`]).
fn peer_operational(peer: &Peer) -> Result<()> {
    let (ns, dev) = peer.clone();
    super::netns::block_on_in(&peer.0, "access link's peer", move || async move {
        let nl = Netlink::new().map_err(other)?;
        let index = nl.link_index(&dev).await.map_err(other)?;
        operational(&nl, index, &format!("{ns}:{dev}")).await
    })
}

/// Whether a move waits for the network's end of the link: on the host
/// lab, where the 1 s moves were seen. Not in the kernel tier's guest:
/// a watch thread more on its one vCPU delays the address after the link
/// (121 ms from the command in one boot, against w15-vm2's 77-90 ms from
/// the link) towards kernel-netlink's roam job for the link (100 ms
/// after it), which then takes the move from the plugin's direct update;
/// likely what one round of `untrusted-moves` in `bench-baseline --vm`
/// met in wave 15 (not shown: its logs were not kept).
fn watch_peers() -> bool {
    super::wait::scale() <= 1.0
}

/// How long a link may take to become operational (the kernel's linkwatch
/// runs at once for veth, but on a loaded machine later).
const OPERATIONAL_WITHIN: Duration = Duration::from_secs(5);

/// `default via GATEWAY dev INDEX [metric M]`, of the gateway's family.
fn default_route(gateway: &str, index: u32, metric: Option<u32>) -> Result<RouteMessage> {
    let gw: IpAddr = gateway
        .parse()
        .map_err(|_| Error::Other(format!("gateway `{gateway}` is not an address")))?;
    let mut msg = match gw {
        IpAddr::V4(g) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .gateway(g)
            .build(),
        IpAddr::V6(g) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .gateway(g)
            .build(),
    };
    msg.attributes.push(RouteAttribute::Oif(index));
    if let Some(m) = metric {
        msg.attributes.push(RouteAttribute::Priority(m));
    }
    Ok(msg)
}

/// `ADDR/LEN` of an access network (the host's address with the
/// network's prefix length: ipnet keeps the address as written).
fn cidr(s: &str) -> Result<(IpAddr, u8)> {
    let net: ipnet::IpNet = s
        .parse()
        .map_err(|_| Error::Other(format!("access address `{s}` is not ADDR/LEN")))?;
    Ok((net.addr(), net.prefix_len()))
}

fn other(e: crate::netlink::Error) -> Error {
    Error::Other(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_addresses_of_both_families_parse() {
        assert_eq!(
            cidr("192.0.2.100/24").unwrap(),
            ("192.0.2.100".parse().unwrap(), 24)
        );
        assert_eq!(
            cidr("2001:db8:a::100/64").unwrap(),
            ("2001:db8:a::100".parse().unwrap(), 64)
        );
        assert!(cidr("192.0.2.100").is_err());
        assert!(default_route("not-an-address", 1, None).is_err());
    }
}
