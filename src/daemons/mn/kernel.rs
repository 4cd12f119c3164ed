//! Carries out the node's [`Action`]s: the tunnel (through
//! [`crate::dataplane`]), the home address on the tunnel device, and the
//! policy rule and route that send traffic from the home address into
//! the tunnel (RFC 3024 reverse tunnelling), while the tunnel's own outer
//! datagrams (source: the care-of address) keep using the main table.
//!
//! Everything installed is remembered, and [`Installer::remove_all`]
//! takes it away again, so a clean exit leaves the node as it found it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use tracing::{info, warn};

use crate::dataplane::{DataPlane, Encapsulation, Tunnel, TunnelBinding, TunnelDevice};
use crate::mn::node::VpnGuard;
use crate::mn::Action;
use crate::netlink::{bypass, sysctl, Netlink, RouteSpec, RuleSpec};

/// The VPN guard's rules ([`Action::GuardVpn`]) come right after
/// charon's (`charon.routing_table_prio`, 220), so they see only what
/// charon's table 220 did not route: at this priority the probe, marked
/// ([`bypass::PROBE_FWMARK`]), goes on to the main table ...
pub const GUARD_PROBE_PRIORITY: u32 = 221;
/// ... and at this one what must never leave outside ESP is refused.
pub const GUARD_PRIORITY: u32 = 222;

/// The VPN guard's rules, in the order they are added: the probe's
/// exception first, then what is refused ([`Installer::guard`]).
pub fn guard_rules(g: VpnGuard) -> [RuleSpec; 3] {
    [
        RuleSpec {
            fwmark: Some(bypass::PROBE_FWMARK),
            table: crate::netlink::route::TABLE_MAIN,
            priority: GUARD_PROBE_PRIORITY,
            ..RuleSpec::default()
        },
        RuleSpec {
            to: Some((g.home_agent, 32)),
            priority: GUARD_PRIORITY,
            unreachable: true,
            ..RuleSpec::default()
        },
        RuleSpec {
            from: Some((g.tia, 32)),
            priority: GUARD_PRIORITY,
            unreachable: true,
            ..RuleSpec::default()
        },
    ]
}

/// What this daemon put into the kernel for one home address.
#[derive(Debug, Clone)]
struct Installed {
    home: Ipv4Addr,
    device: TunnelDevice,
    address: bool,
    route: Option<RouteSpec>,
    rule: Option<RuleSpec>,
}

/// Applies actions and keeps track of what it installed.
#[derive(Debug)]
pub struct Installer {
    nl: Arc<Netlink>,
    dp: DataPlane,
    table: u32,
    priority: u32,
    installed: Option<Installed>,
    /// `to <home agent> lookup main` while the care-of address is a
    /// physical one (mode 'c') and a VPN may be up: see [`Self::direct`].
    direct: Option<RuleSpec>,
    /// The VPN guard's rules while in mode 'mc': see [`Self::guard`].
    guard: (Option<VpnGuard>, Vec<RuleSpec>),
}

const EEXIST: i32 = libc::EEXIST;

impl Installer {
    pub fn new(nl: Arc<Netlink>, dp: DataPlane, table: u32, priority: u32) -> Self {
        Installer {
            nl,
            dp,
            table,
            priority,
            installed: None,
            direct: None,
            guard: (None, Vec::new()),
        }
    }

    pub fn data_plane(&self) -> &DataPlane {
        &self.dp
    }

    /// The tunnel device's name, if one is up (its addresses are ours,
    /// not attachments).
    pub fn tunnel_ifname(&self) -> Option<&str> {
        self.installed.as_ref().map(|i| i.device.ifname.as_str())
    }

    pub async fn apply(&mut self, a: &Action) -> Result<(), String> {
        match a {
            Action::TunnelUp {
                home,
                care_of,
                home_agent,
                reverse_tunnel,
            } => {
                self.tunnel_up(*home, *care_of, *home_agent, *reverse_tunnel)
                    .await
            }
            Action::TunnelDown { home } => self.tunnel_down(*home).await,
            Action::TunnelMtu { home, mtu } => self.tunnel_mtu(*home, *mtu).await,
            Action::HoldTraffic { home } => self.hold(*home, true).await,
            Action::ReleaseTraffic { home } => self.hold(*home, false).await,
            Action::DirectToHomeAgent { home_agent } => {
                self.direct(*home_agent).await;
                Ok(())
            }
            Action::GuardVpn { guard } => self.guard(*guard).await,
            // The daemon sends these to the plugin.
            Action::Vpn(_) => Ok(()),
        }
    }

    async fn tunnel_up(
        &mut self,
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        reverse_tunnel: bool,
    ) -> Result<(), String> {
        let binding = TunnelBinding {
            home,
            local: care_of,
            remote: SocketAddrV4::new(home_agent, 0),
            encapsulation: Encapsulation::IpInIp,
        };
        // `create` moves an existing tunnel of `home` to the new endpoints.
        let device = self
            .dp
            .create(binding)
            .await
            .map_err(|e| format!("tunnel {care_of} -> {home_agent}: {e}"))?;
        let mut inst = match self.installed.take() {
            Some(i) if i.home == home && i.device == device => i,
            Some(old) => {
                // Another device or home address: start clean.
                self.installed = Some(old);
                self.remove_installed().await;
                Installed {
                    home,
                    device: device.clone(),
                    address: false,
                    route: None,
                    rule: None,
                }
            }
            None => Installed {
                home,
                device: device.clone(),
                address: false,
                route: None,
                rule: None,
            },
        };
        let result = self.install(&mut inst, reverse_tunnel).await;
        self.installed = Some(inst);
        info!(%home, %care_of, %home_agent, device = %device.ifname, backend = %self.dp.backend(), "tunnel installed");
        result
    }

    async fn install(&self, inst: &mut Installed, reverse_tunnel: bool) -> Result<(), String> {
        let dev = inst.device.ifindex;
        // Datagrams for the home address arrive decapsulated on the
        // tunnel device with sources the reverse-path filter would judge
        // by the physical routes.
        if let Err(e) = sysctl::disable_rp_filter(&inst.device.ifname) {
            warn!(error = %e, "cannot disable rp_filter on the tunnel device");
        }
        if !inst.address {
            // The home address on the tunnel device: local, so datagrams
            // to it are delivered and applications can bind it.
            match self.nl.add_address(dev, inst.home, 32).await {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => return Err(e.to_string()),
            }
            inst.address = true;
        }
        if reverse_tunnel && inst.rule.is_none() {
            // RFC 3024: traffic from the home address leaves through the
            // tunnel; the outer datagrams, sourced from the care-of
            // address, do not match the rule and take the main table.
            let route = RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, dev).in_table(self.table);
            self.nl
                .replace_route(&route)
                .await
                .map_err(|e| e.to_string())?;
            inst.route = Some(route);
            let rule = RuleSpec {
                from: Some((inst.home, 32)),
                to: None,
                iif: None,
                table: self.table,
                priority: self.priority,
                ..Default::default()
            };
            match self.nl.add_rule(&rule).await {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => return Err(e.to_string()),
            }
            inst.rule = Some(rule);
        }
        Ok(())
    }

    /// Mode 'mc': the tunnel runs inside ESP; the node sized it so that
    /// its datagrams do not fragment (docs/mip4d.md, "MTU").
    async fn tunnel_mtu(&mut self, home: Ipv4Addr, mtu: u32) -> Result<(), String> {
        let Some(inst) = self.installed.as_ref().filter(|i| i.home == home) else {
            return Err(format!("no tunnel of {home} to set the MTU of"));
        };
        self.nl
            .set_link_mtu(inst.device.ifindex, mtu)
            .await
            .map_err(|e| format!("mtu {mtu} on {}: {e}", inst.device.ifname))?;
        info!(%home, mtu, device = %inst.device.ifname, "tunnel mtu set");
        Ok(())
    }

    /// Holds (or releases) the home address's traffic while the mode is
    /// undecided (RFC 5266 §3.4, RFC 5265 §3.2.2): the default route of
    /// the home address's table becomes a blackhole, so nothing from the
    /// home address leaves, in the clear or otherwise, and is replaced
    /// by the route into the tunnel again on release. The same rule for
    /// both backends: the kernel drops before any device, and TCP
    /// retransmits what was dropped once the path is decided.
    async fn hold(&mut self, home: Ipv4Addr, hold: bool) -> Result<(), String> {
        let Some(inst) = self.installed.as_ref().filter(|i| i.home == home) else {
            // No tunnel, no rule: nothing routes the home address.
            return Ok(());
        };
        let Some(route) = inst.route.clone() else {
            return Ok(());
        };
        if hold {
            self.nl
                .replace_blackhole(route.dst, route.prefix_len, route.table)
                .await
                .map_err(|e| format!("hold {home}: {e}"))?;
        } else {
            self.nl
                .replace_route(&route)
                .await
                .map_err(|e| format!("release {home}: {e}"))?;
        }
        info!(%home, hold, table = route.table, "home address traffic");
        Ok(())
    }

    async fn tunnel_down(&mut self, home: Ipv4Addr) -> Result<(), String> {
        if self.installed.as_ref().is_some_and(|i| i.home == home) {
            self.remove_installed().await;
        }
        match self.dp.remove(home).await {
            Ok(()) | Err(crate::dataplane::TunnelError::NoBinding(_)) => Ok(()),
            Err(e) => Err(format!("remove tunnel of {home}: {e}")),
        }
    }

    /// Removes the rule, the route and the home address (in that order:
    /// nothing is routed to a device without the address in between).
    async fn remove_installed(&mut self) {
        let Some(inst) = self.installed.take() else {
            return;
        };
        if let Some(rule) = &inst.rule {
            if let Err(e) = self.nl.del_rule(rule).await {
                warn!(error = %e, "removing the home address rule failed");
            }
        }
        if let Some(route) = &inst.route {
            if let Err(e) = self.nl.del_route(route).await {
                warn!(error = %e, "removing the tunnel route failed");
            }
        }
        if inst.address {
            if let Err(e) = self
                .nl
                .del_address(inst.device.ifindex, inst.home, 32)
                .await
            {
                warn!(error = %e, "removing the home address from the tunnel failed");
            }
        }
        info!(home = %inst.home, device = %inst.device.ifname, "tunnel routes and address removed");
    }

    /// Mode 'c' inside with the VPN kept (RFC 5266 §3.4.2: it MAY stay
    /// up): charon's routing rule (priority 220) would send datagrams to
    /// the intranet, the home agent among them, into kernel-libipsec's
    /// TUN, whose policies (for the TIA) drop what comes from the
    /// physical care-of address: the tunnel's outer datagrams (the
    /// userspace data plane's raw socket writes its own header, so its
    /// route lookup knows no source address) and renewals. A rule `to
    /// <home agent> lookup main`, after the home address's own rule and
    /// before charon's, keeps them on the physical path. `None` removes it
    /// (mode 'mc': the TIA's datagrams must take charon's table).
    pub async fn direct(&mut self, home_agent: Option<Ipv4Addr>) {
        let want = home_agent.map(|ha| RuleSpec {
            from: None,
            to: Some((ha, 32)),
            iif: None,
            table: crate::netlink::route::TABLE_MAIN,
            priority: self.priority + 1,
            ..Default::default()
        });
        if want == self.direct {
            return;
        }
        if let Some(old) = self.direct.take() {
            if let Err(e) = self.nl.del_rule(&old).await {
                warn!(error = %e, "removing the home agent rule failed");
            }
        }
        if let Some(rule) = want {
            match self.nl.add_rule(&rule).await {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => {
                    warn!(error = %e, "adding the home agent rule failed");
                    return;
                }
            }
            info!(home_agent = ?home_agent, priority = rule.priority, "mode c: datagrams to the home agent kept off the VPN's routes");
            self.direct = Some(rule);
        }
    }

    /// Mode 'mc' (RFC 5266 §3.1.3: outside, the Mobile IP tunnel runs
    /// inside the VPN): a guard in the kernel that does not wait for
    /// mip4d. With kernel-libipsec, charon's routes (table 220, into its
    /// TUN) vanish with charon, while the TIA stays on the access
    /// interface: until mip4d hears of it and holds the home address's
    /// traffic, the tunnel's outer datagrams (TIA -> home agent; the
    /// userspace data plane's raw socket looks its route up without a
    /// source, hence `to <home agent>`) and the renewals would take the
    /// main table, outside ESP. Behind charon's rule, they meet
    /// `unreachable` instead and are refused to their sender. The probe
    /// (RFC 5266 §3.4), which must leave in the clear from the physical
    /// address, carries [`bypass::PROBE_FWMARK`] and is sent to the main
    /// table just before. With kernel-netlink, charon's routes and XFRM
    /// policies outlive it and the guard never matches. `None` removes
    /// the rules (leaving mode 'mc', exit).
    async fn guard(&mut self, guard: Option<VpnGuard>) -> Result<(), String> {
        if guard == self.guard.0 {
            return Ok(());
        }
        for rule in std::mem::take(&mut self.guard.1) {
            if let Err(e) = self.nl.del_rule(&rule).await {
                warn!(error = %e, "removing a VPN guard rule failed");
            }
        }
        self.guard.0 = guard;
        let Some(g) = guard else {
            return Ok(());
        };
        for rule in guard_rules(g) {
            match self.nl.add_rule(&rule).await {
                Ok(()) => {}
                Err(e) if e.errno() == Some(EEXIST) => {}
                Err(e) => return Err(format!("VPN guard: {e}")),
            }
            self.guard.1.push(rule);
        }
        info!(tia = %g.tia, home_agent = %g.home_agent, priority = GUARD_PRIORITY, "mode mc: what must stay inside ESP is unreachable without the VPN's routes");
        Ok(())
    }

    /// Removes what an earlier instance of mip4d left when it was killed
    /// before its cleanup (issue 13), before anything is installed: its
    /// rules (`from <home> lookup <table>` at its priority, `to <home
    /// agent> lookup main` at the next, the VPN guard's at
    /// [`GUARD_PROBE_PRIORITY`] and [`GUARD_PRIORITY`]), the default route of its table
    /// (a blackhole while traffic was held) and the kernel backend's link
    /// of its home address. The userspace TUN device, and with it its
    /// address and routes, went with the process. Nothing else is touched.
    pub async fn sweep(&self, home: Ipv4Addr) {
        let mut left = Vec::new();
        let rules = [
            (self.priority, self.table),
            (self.priority + 1, crate::netlink::route::TABLE_MAIN),
            (GUARD_PROBE_PRIORITY, crate::netlink::route::TABLE_MAIN),
        ];
        for (priority, table) in rules {
            match self.nl.del_rules_at(priority, table).await {
                Ok(0) => {}
                Ok(n) => left.push(format!("{n} rule(s) at priority {priority}")),
                Err(e) => warn!(error = %e, "cannot remove rules left by an earlier instance"),
            }
        }
        let guard = RuleSpec {
            priority: GUARD_PRIORITY,
            unreachable: true,
            ..RuleSpec::default()
        };
        match self.nl.del_rules_like(&guard).await {
            Ok(0) => {}
            Ok(n) => left.push(format!("{n} rule(s) at priority {GUARD_PRIORITY}")),
            Err(e) => warn!(error = %e, "cannot remove rules left by an earlier instance"),
        }
        match self
            .nl
            .del_routes_to(Ipv4Addr::UNSPECIFIED, 0, self.table)
            .await
        {
            Ok(0) => {}
            Ok(n) => left.push(format!("{n} route(s) in table {}", self.table)),
            Err(e) => warn!(error = %e, "cannot remove routes left by an earlier instance"),
        }
        // (A home address the HA assigns, RFC 2794, is not known yet.)
        let link = crate::dataplane::kernel::link_name(home);
        let index = match home.is_unspecified() {
            true => None,
            false => self.nl.link_index(&link).await.ok(),
        };
        if let Some(ifindex) = index {
            match self.nl.delete_link(ifindex).await {
                Ok(()) => left.push(format!("link {link}")),
                Err(e) => {
                    warn!(error = %e, "cannot remove link {link} left by an earlier instance")
                }
            }
        }
        if !left.is_empty() {
            info!(removed = %left.join(", "), "left by an earlier instance of mip4d: removed");
        }
    }

    /// Removes everything (exit): routes, address, tunnels.
    pub async fn remove_all(&mut self) {
        self.direct(None).await;
        if let Err(e) = self.guard(None).await {
            warn!(error = %e, "removing the VPN guard failed");
        }
        self.remove_installed().await;
        if let Err(e) = self.dp.shutdown().await {
            warn!(error = %e, "removing tunnels failed");
        }
    }
}
