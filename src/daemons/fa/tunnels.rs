//! mip4-fa's tunnel end towards its visitors' home agents, one of two
//! backends (`tunnel_backend`, chosen as mip4-ha chooses,
//! [`crate::dataplane::choose`]):
//! - userspace: the userspace data plane's TUN device for every visitor
//!   (it decapsulates only from a visitor's HA and only for that visitor,
//!   `dataplane::ingress`), and one routing table that holds the
//!   visitors' host routes and "everything into the device";
//! - kernel: one kernel ipip link per home agent ([`super::ha_links`]),
//!   made as mip4-ha makes its links ([`crate::dataplane::kernel`]), with
//!   a table of its own for the reverse tunnel and the decapsulation check
//!   in nftables ([`super::ingress`]).
//!
//! Either way what leaves a tunnel is delivered by a rule `iif <tunnel>
//! lookup <reverse_tunnel_table>`, which holds the visitors' host routes
//! (installed by [`super::kernel`]).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use tracing::{info, warn};

use super::ha_links::{HaLink, HaLinks};
use super::ingress;
use super::kernel::RULE_PRIORITY;
use crate::dataplane::ipip::DEFAULT_TTL;
use crate::dataplane::{
    kernel as ipip_link, Backend, CounterSnapshot, DataPlane, Encapsulation, Role, Tunnel,
    TunnelBinding, TunnelDevice, UserspaceConfig,
};
use crate::netlink::{sysctl, Netlink, RouteSpec, RuleSpec};

/// One home agent's link in the kernel backend.
pub struct KernelLink {
    link: HaLink,
    device: TunnelDevice,
    /// `iif LINK lookup <visitors' table>`.
    delivery: RuleSpec,
}

/// The tunnel end, by backend.
pub enum Tunnels {
    Userspace {
        dp: DataPlane,
        device: TunnelDevice,
        /// "Everything into the device" in the visitors' table.
        table_route: Option<RouteSpec>,
        delivery: Option<RuleSpec>,
    },
    Kernel {
        care_of: Ipv4Addr,
        links: HaLinks,
        up: HashMap<Ipv4Addr, KernelLink>,
        /// Packets (decapsulated, encapsulated) of links already removed.
        retired: (u64, u64),
        /// As last read by [`Tunnels::refresh_counters`].
        counters: CounterSnapshot,
    },
}

/// The device a visitor's datagrams are tunnelled through and the table
/// its reverse-tunnel rule looks up.
pub struct End {
    pub device: TunnelDevice,
    pub table: u32,
}

impl Tunnels {
    /// Starts `backend`. `table` holds the visitors' host routes.
    pub async fn start(
        nl: &Arc<Netlink>,
        backend: Backend,
        tunnel_interface: &str,
        care_of: Ipv4Addr,
        table: u32,
    ) -> Result<Self, String> {
        if backend == Backend::Kernel {
            // Without the check the FA would deliver whatever any host
            // able to spoof the HA's address tunnels to it: no start.
            ingress::install(super::ha_links::LINK_PREFIX)
                .await
                .map_err(|e| {
                    format!(
                        "cannot install the decapsulation check for the kernel tunnel backend: {e}"
                    )
                })?;
            info!(
                table = ingress::CHECK.name,
                "RFC 5944 §4.2.2 decapsulation check: nftables rule on the FA links"
            );
            return Ok(Tunnels::Kernel {
                care_of,
                links: HaLinks::new(table),
                up: HashMap::new(),
                retired: (0, 0),
                counters: CounterSnapshot::default(),
            });
        }
        // This end is "mobile node"-like: it tunnels *from* home
        // addresses and accepts *to* them.
        let ucfg = UserspaceConfig::new(tunnel_interface, Role::MobileNode);
        let dp = DataPlane::start(nl.clone(), crate::dataplane::BackendChoice::Userspace, ucfg)
            .await
            .map_err(|e| format!("cannot start the tunnel data plane: {e}"))?;
        let DataPlane::Userspace(u) = &dp else {
            return Err("unexpected data plane backend".into());
        };
        let device = TunnelDevice {
            ifindex: u.ifindex(),
            ifname: u.ifname().to_string(),
        };
        // Decapsulated datagrams enter through the device with a
        // correspondent's source.
        if let Err(e) = sysctl::disable_rp_filter(&device.ifname) {
            warn!("cannot disable rp_filter on {}: {e}", device.ifname);
        }
        let mut me = Tunnels::Userspace {
            dp,
            device: device.clone(),
            table_route: None,
            delivery: None,
        };
        let route = RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, device.ifindex).in_table(table);
        nl.replace_route(&route)
            .await
            .map_err(|e| format!("reverse tunnel table {table}: {e}"))?;
        let rule = delivery_rule(&device, table);
        nl.add_rule(&rule)
            .await
            .map_err(|e| format!("delivery rule of table {table}: {e}"))?;
        if let Tunnels::Userspace {
            table_route,
            delivery,
            ..
        } = &mut me
        {
            *table_route = Some(route);
            *delivery = Some(rule);
        }
        Ok(me)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Tunnels::Userspace { .. } => Backend::Userspace,
            Tunnels::Kernel { .. } => Backend::Kernel,
        }
    }

    /// The tunnel of visitor `home` of home agent `ha`. `table` is the
    /// visitors' table. A renewal finds what is there.
    pub async fn join(
        &mut self,
        nl: &Netlink,
        table: u32,
        care_of: Ipv4Addr,
        ha: Ipv4Addr,
        home: Ipv4Addr,
    ) -> Result<End, String> {
        let (device, rt_table) = match self {
            Tunnels::Userspace { dp, device, .. } => {
                dp.create(TunnelBinding {
                    home,
                    local: care_of,
                    remote: SocketAddrV4::new(ha, 0),
                    encapsulation: Encapsulation::IpInIp,
                })
                .await
                .map_err(|e| format!("tunnel for {home}: {e}"))?;
                return Ok(End {
                    device: device.clone(),
                    table,
                });
            }
            Tunnels::Kernel { links, up, .. } => {
                if links.serves(ha, home) {
                    // A renewal: link, table and check are in place.
                    let (link, _) = links.join(ha, home).ok_or("no link")?;
                    return Ok(End {
                        device: up[&ha].device.clone(),
                        table: link.table,
                    });
                }
                let (link, new) = links
                    .join(ha, home)
                    .ok_or_else(|| format!("no routing table left for home agent {ha}"))?;
                if new {
                    match add_kernel_link(nl, &link, care_of, ha, table).await {
                        Ok(k) => {
                            up.insert(ha, k);
                        }
                        Err(e) => {
                            links.leave(ha, home);
                            return Err(e);
                        }
                    }
                }
                (up[&ha].device.clone(), link.table)
            }
        };
        if let Err(e) = ingress::admit(&device.ifname, home).await {
            self.leave(nl, ha, home).await;
            return Err(format!("decapsulation check for {home}: {e}"));
        }
        Ok(End {
            device,
            table: rt_table,
        })
    }

    /// Visitor `home` of `ha` is gone: its tunnel too (in the kernel
    /// backend, the HA's link with its last visitor). Failures are logged.
    pub async fn leave(&mut self, nl: &Netlink, ha: Ipv4Addr, home: Ipv4Addr) {
        match self {
            Tunnels::Userspace { dp, .. } => {
                if let Err(e) = dp.remove(home).await {
                    warn!(home_address = %home, "tunnel: {e}");
                }
            }
            Tunnels::Kernel {
                links, up, retired, ..
            } => {
                if let Some(k) = up.get(&ha) {
                    if let Err(e) = ingress::revoke(&k.device.ifname, home).await {
                        warn!(home_address = %home, "decapsulation check: {e}");
                    }
                }
                if links.leave(ha, home).is_some() {
                    if let Some(k) = up.remove(&ha) {
                        remove_kernel_link(nl, &k, retired).await;
                    }
                }
            }
        }
    }

    /// The tunnels in use, for status.
    pub fn bindings(&self) -> Vec<TunnelBinding> {
        match self {
            Tunnels::Userspace { dp, .. } => dp.status().bindings,
            Tunnels::Kernel { care_of, links, .. } => links
                .visitors()
                .map(|(ha, home)| TunnelBinding {
                    home,
                    local: *care_of,
                    remote: SocketAddrV4::new(ha, 0),
                    encapsulation: Encapsulation::IpInIp,
                })
                .collect(),
        }
    }

    /// Datagram counters: the userspace plane's, or the kernel links'
    /// packet counts and the check's drops as last read.
    pub fn counters(&self) -> CounterSnapshot {
        match self {
            Tunnels::Userspace { dp, .. } => dp.status().counters.unwrap_or_default(),
            Tunnels::Kernel { counters, .. } => *counters,
        }
    }

    /// Kernel backend: reads the links' packet counts and the check's
    /// counter again (before a control answer that shows them).
    pub async fn refresh_counters(&mut self, nl: &Netlink) {
        let Tunnels::Kernel {
            up,
            retired,
            counters,
            ..
        } = self
        else {
            return;
        };
        let (mut rx, mut tx) = *retired;
        for k in up.values() {
            match nl.link_packets(k.device.ifindex).await {
                Ok((r, t)) => {
                    rx += r;
                    tx += t;
                }
                Err(e) => warn!("cannot read the counters of {}: {e}", k.device.ifname),
            }
        }
        counters.decapsulated = rx;
        counters.encapsulated = tx;
        match ingress::CHECK.dropped() {
            Ok(n) => counters.inner_address_mismatch = n,
            Err(e) => warn!("cannot read the decapsulation check's counter: {e}"),
        }
    }

    /// The kernel backend's reverse-tunnel tables in use (for the record).
    pub fn tables(&self) -> Vec<u32> {
        match self {
            Tunnels::Userspace { .. } => Vec::new(),
            Tunnels::Kernel { links, .. } => links.links().map(|(_, l)| l.table).collect(),
        }
    }

    /// Removes what is left: the userspace plane's table route and rule,
    /// or the kernel backend's links and nftables table.
    pub async fn shutdown(&mut self, nl: &Netlink) {
        match self {
            Tunnels::Userspace {
                dp,
                table_route,
                delivery,
                ..
            } => {
                if let Some(r) = delivery.take() {
                    if let Err(e) = nl.del_rule(&r).await {
                        warn!("delivery rule: {e}");
                    }
                }
                if let Some(r) = table_route.take() {
                    if let Err(e) = nl.del_route(&r).await {
                        warn!("reverse tunnel table route: {e}");
                    }
                }
                if let Err(e) = dp.shutdown().await {
                    warn!("tunnel data plane shutdown: {e}");
                }
            }
            Tunnels::Kernel { up, retired, .. } => {
                for (_, k) in std::mem::take(up) {
                    remove_kernel_link(nl, &k, retired).await;
                }
                if let Err(e) = ingress::CHECK.remove().await {
                    warn!("cannot remove the decapsulation check: {e}");
                }
            }
        }
    }
}

/// `iif DEVICE lookup TABLE`: what leaves the tunnel finds the visitors'
/// host routes.
fn delivery_rule(device: &TunnelDevice, table: u32) -> RuleSpec {
    RuleSpec {
        iif: Some(device.ifname.clone()),
        table,
        priority: RULE_PRIORITY,
        ..Default::default()
    }
}

/// A home agent's link: the ipip link (care-of address -> HA), its
/// reverse-tunnel table's one route, and the delivery rule. What was made
/// goes again when a step fails.
async fn add_kernel_link(
    nl: &Netlink,
    link: &HaLink,
    care_of: Ipv4Addr,
    ha: Ipv4Addr,
    table: u32,
) -> Result<KernelLink, String> {
    let device = ipip_link::add_link(nl, &link.name, care_of, ha, DEFAULT_TTL)
        .await
        .map_err(|e| format!("tunnel to {ha}: {e}"))?;
    // Decapsulated datagrams enter the link with a correspondent's
    // source, which the routing table sends elsewhere.
    if let Err(e) = sysctl::disable_rp_filter(&device.ifname) {
        warn!("cannot disable rp_filter on {}: {e}", device.ifname);
    }
    let delivery = delivery_rule(&device, table);
    let route = RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, device.ifindex).in_table(link.table);
    let made = async {
        nl.replace_route(&route)
            .await
            .map_err(|e| format!("reverse tunnel table {}: {e}", link.table))?;
        nl.add_rule(&delivery)
            .await
            .map_err(|e| format!("delivery rule of {}: {e}", device.ifname))
    }
    .await;
    if let Err(e) = made {
        // Its table's route goes with it.
        let _ = nl.delete_link(device.ifindex).await;
        return Err(e);
    }
    info!(link = %device.ifname, home_agent = %ha, %care_of, table = link.table, "kernel ipip link to a home agent");
    Ok(KernelLink {
        link: link.clone(),
        device,
        delivery,
    })
}

/// Removes a home agent's link and its delivery rule (its table's route
/// goes with the link), keeping its packet counts.
async fn remove_kernel_link(nl: &Netlink, k: &KernelLink, retired: &mut (u64, u64)) {
    if let Ok((rx, tx)) = nl.link_packets(k.device.ifindex).await {
        retired.0 += rx;
        retired.1 += tx;
    }
    if let Err(e) = nl.del_rule(&k.delivery).await {
        warn!("delivery rule of {}: {e}", k.device.ifname);
    }
    if let Err(e) = nl.delete_link(k.device.ifindex).await {
        warn!("cannot remove {}: {e}", k.device.ifname);
    }
    info!(link = %k.device.ifname, table = k.link.table, "kernel ipip link removed");
}
