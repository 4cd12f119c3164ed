//! DSMIPv4 (RFC 5454) on the mobile node's kernel: the IPv6 home address
//! on the device the data plane carries the prefix's IPv6 from, and the
//! routes into it ([`Action::Ipv6Home`](crate::mn::Action::Ipv6Home)).
//!
//! - the address as a /128 (`nodad`: the prefix is the node's alone);
//! - in the home address's table (the IPv4 one's number, IPv6's own
//!   table): each configured destination into the device with the
//!   address as source, and a rule `from <prefix> lookup <table>` at the
//!   home address's priority: what leaves from the prefix goes to the
//!   home agent, which checks that source (§3.3.2, §4);
//! - in the main table, the same destinations at [`MAIN_METRIC`], for
//!   what the node opens without a source: behind a native IPv6 default
//!   route (metric 1024), the only one without it;
//! - held traffic: every one of those routes a blackhole until released
//!   (the IPv4 hold's rule, docs/mip4d.md "Holding traffic").
//!
//! The device is the data plane's: which one, and how it carries IPv6,
//! is the backend's ([`crate::dataplane::DataPlane::set_ipv6`]). A
//! userspace device takes its address and routes with it when mip4d is
//! killed; the rule and the table's blackholes stay for [`sweep`].

use std::net::Ipv4Addr;

use ipnet::Ipv6Net;
use tracing::{info, warn};

use crate::dataplane::binding::Ipv6TunnelTo;
use crate::dataplane::TunnelDevice;
use crate::mn::Ipv6Home;
use crate::netlink::ipv6::Route6;
use crate::netlink::{route::TABLE_MAIN, Netlink};

/// The main table's routes to the configured destinations: after a
/// native IPv6 default route (the kernel's and RA's 1024).
pub const MAIN_METRIC: u32 = 2048;

/// What is installed for one IPv6 home address.
#[derive(Debug, Clone)]
struct Installed {
    v6: Ipv6Home,
    device: TunnelDevice,
    address: bool,
    routes: Vec<Route6>,
    rule: bool,
}

/// The IPv6 home address asked for, and what of it is in the kernel.
#[derive(Debug, Default)]
pub struct Home6 {
    table: u32,
    priority: u32,
    /// The node's last [`Action::Ipv6Home`](crate::mn::Action::Ipv6Home).
    pub want: Option<(Ipv4Addr, Ipv6Home)>,
    held: bool,
    installed: Option<Installed>,
}

impl Home6 {
    pub fn new(table: u32, priority: u32) -> Self {
        Home6 {
            table,
            priority,
            ..Home6::default()
        }
    }

    /// Whether anything is installed.
    pub fn is_installed(&self) -> bool {
        self.installed.is_some()
    }

    /// The device the IPv6 home address is on, and where its IPv6 is
    /// tunnelled.
    pub fn device(&self) -> Option<(&TunnelDevice, Ipv6TunnelTo)> {
        self.installed
            .as_ref()
            .map(|i| (&i.device, i.v6.binding.tunnel_to))
    }

    fn routes(&self, v6: &Ipv6Home, device: &TunnelDevice) -> Vec<Route6> {
        let dev = (!self.held).then_some(device.ifindex);
        let route = |dst: Ipv6Net, table, metric| Route6 {
            dst: dst.trunc(),
            dev,
            src: dev.map(|_| v6.address),
            table,
            metric,
        };
        v6.routes
            .iter()
            .map(|d| route(*d, self.table, None))
            .chain(
                v6.routes
                    .iter()
                    .map(|d| route(*d, TABLE_MAIN, Some(MAIN_METRIC))),
            )
            .collect()
    }

    /// Installs [`Self::want`] on `device` (the data plane already
    /// carries its prefix), or removes what is installed when nothing is
    /// wanted. A change of address or device starts clean.
    pub async fn apply(
        &mut self,
        nl: &Netlink,
        device: Option<TunnelDevice>,
    ) -> Result<(), String> {
        let target = self.want.clone().zip(device);
        let same = match (&self.installed, &target) {
            (Some(i), Some(((_, v6), dev))) => i.v6 == *v6 && i.device == *dev,
            (None, None) => true,
            _ => false,
        };
        if same {
            return Ok(());
        }
        self.remove(nl).await;
        let Some(((home, v6), device)) = target else {
            return Ok(());
        };
        let mut inst = Installed {
            v6: v6.clone(),
            device: device.clone(),
            address: false,
            routes: Vec::new(),
            rule: false,
        };
        let result = self.install(nl, &mut inst).await;
        self.installed = Some(inst);
        match &result {
            Ok(()) => {
                info!(%home, address = %v6.address, prefix = %v6.binding.prefix, device = %device.ifname, routes = ?v6.routes, "IPv6 home address installed (RFC 5454)")
            }
            Err(e) => warn!(%home, error = %e, "IPv6 home address: installing failed"),
        }
        result
    }

    async fn install(&self, nl: &Netlink, inst: &mut Installed) -> Result<(), String> {
        let dev = inst.device.ifindex;
        match nl.add_address6(dev, inst.v6.address, 128).await {
            Ok(()) => inst.address = true,
            Err(e) if e.errno() == Some(libc::EEXIST) => inst.address = true,
            Err(e) => return Err(e.to_string()),
        }
        for r in self.routes(&inst.v6, &inst.device) {
            nl.replace_route6_in(&r).await.map_err(|e| e.to_string())?;
            inst.routes.push(r);
        }
        let prefix = inst.v6.binding.prefix;
        match nl.add_rule6_from(prefix, self.table, self.priority).await {
            Ok(()) => inst.rule = true,
            Err(e) if e.errno() == Some(libc::EEXIST) => inst.rule = true,
            Err(e) => return Err(e.to_string()),
        }
        Ok(())
    }

    /// Holds (every route a blackhole) or releases the IPv6 home
    /// address's traffic, with the IPv4 home address's.
    pub async fn hold(&mut self, nl: &Netlink, hold: bool) -> Result<(), String> {
        self.held = hold;
        let Some(mut inst) = self.installed.take() else {
            return Ok(());
        };
        let want = self.routes(&inst.v6, &inst.device);
        let mut result = Ok(());
        for r in &want {
            if let Err(e) = nl.replace_route6_in(r).await {
                result = Err(format!("IPv6 hold {hold}: {e}"));
            }
        }
        inst.routes = want;
        self.installed = Some(inst);
        result
    }

    /// Removes the rule, the routes and the address (in that order).
    pub async fn remove(&mut self, nl: &Netlink) {
        let Some(inst) = self.installed.take() else {
            return;
        };
        if inst.rule {
            let prefix = inst.v6.binding.prefix;
            if let Err(e) = nl.del_rule6_from(prefix, self.table, self.priority).await {
                warn!(error = %e, "removing the IPv6 prefix rule failed");
            }
        }
        for r in &inst.routes {
            if let Err(e) = nl.del_route6_in(r).await {
                // Gone with its device already.
                if e.errno() != Some(libc::ESRCH) {
                    warn!(error = %e, "removing an IPv6 route failed");
                }
            }
        }
        if inst.address {
            if let Err(e) = nl
                .del_address6(inst.device.ifindex, inst.v6.address, 128)
                .await
            {
                if e.errno() != Some(libc::EADDRNOTAVAIL) && e.errno() != Some(libc::ENODEV) {
                    warn!(error = %e, "removing the IPv6 home address failed");
                }
            }
        }
        info!(address = %inst.v6.address, device = %inst.device.ifname, "IPv6 home address removed");
    }
}

/// What an earlier instance, killed before its cleanup, left of the IPv6
/// home address (issue 13): the prefix's rule at the home address's
/// priority and the routes to `destinations` in its table (blackholes
/// while held; those into a userspace device went with it). Returns what
/// went, for the daemon's one log line.
pub async fn sweep(
    nl: &Netlink,
    table: u32,
    priority: u32,
    destinations: &[Ipv6Net],
) -> Vec<String> {
    let mut left = Vec::new();
    match nl.del_rules6_at(priority, table).await {
        Ok(0) => {}
        Ok(n) => left.push(format!("{n} IPv6 rule(s) at priority {priority}")),
        Err(e) => warn!(error = %e, "cannot remove IPv6 rules left by an earlier instance"),
    }
    for d in destinations {
        for (t, what) in [(table, "its table"), (TABLE_MAIN, "the main table")] {
            let blackhole = Route6 {
                dst: d.trunc(),
                dev: None,
                src: None,
                table: t,
                metric: (t == TABLE_MAIN).then_some(MAIN_METRIC),
            };
            let gone = match t {
                TABLE_MAIN => nl.del_route6_in(&blackhole).await.map(|()| 1),
                _ => nl.del_routes6_to(d.trunc(), t).await,
            };
            match gone {
                Ok(0) => {}
                Ok(n) => left.push(format!("{n} IPv6 route(s) to {d} in {what}")),
                Err(e) if e.errno() == Some(libc::ESRCH) => {}
                Err(e) => {
                    warn!(error = %e, "cannot remove IPv6 routes left by an earlier instance")
                }
            }
        }
    }
    left
}
