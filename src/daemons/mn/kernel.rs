//! Carries out the node's [`Action`]s: the tunnel (through
//! [`crate::dataplane`]), the home address on the tunnel device, and the
//! policy rule and route that send traffic from the home address into
//! the tunnel (RFC 3024 reverse tunnelling), while the tunnel's own outer
//! datagrams (source: the care-of address) keep using the main table.
//!
//! What the node opens itself takes the home address as its source
//! while away ([`HomeSource`]): a table of `PREFIX dev <tunnel> src HoA`
//! routes and `throw` routes for the exclusions, looked up only by
//! locally started lookups that have no source yet.
//!
//! Everything installed is remembered, and [`Installer::remove_all`]
//! takes it away again, so a clean exit leaves the node as it found it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::home6::Home6;
use crate::dataplane::source::SharedSources;
use crate::dataplane::udp::MIP_PORT;
use crate::dataplane::userspace::{Keepalive, UdpSink};
use crate::dataplane::{
    DataPlane, Encapsulation, Role, Tunnel, TunnelBinding, TunnelDevice, UserspaceConfig,
    UserspacePlane,
};
use crate::mn::node::{AgentRoute, VpnGuard};
use crate::mn::{Action, HomeSource, Ipv6Home};
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

fn keepalive_interval(granted: u16) -> Duration {
    crate::wire::extension::UdpTunnelReply::interval(granted)
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

/// RFC 3519 overhead beyond IP in IP's 20 bytes: UDP 8, Tunnel Data 4.
const UDP_EXTRA_OVERHEAD: u32 = 12;
/// The device MTU when nothing else sized it: 1500 less IP in IP.
const DEFAULT_TUNNEL_MTU: u32 = 1500 - 20;

/// The last tunnel asked for, to build again when its encapsulation
/// changes (RFC 3519 granted or withdrawn on a renewal).
#[derive(Debug, Clone, Copy)]
struct Asked {
    home: Ipv4Addr,
    care_of: Ipv4Addr,
    home_agent: Ipv4Addr,
    reverse_tunnel: bool,
}

/// Applies actions and keeps track of what it installed.
#[derive(Debug)]
pub struct Installer {
    nl: Arc<Netlink>,
    dp: DataPlane,
    /// RFC 3519 tunnels, when `dp` is the kernel backend: no kernel tunnel
    /// carries IP in UDP with the Tunnel Data header, so a userspace plane
    /// is started when the home agent first grants one.
    udp_plane: Option<UserspacePlane>,
    /// The userspace device's name (the plane RFC 3519 needs).
    udp_device: String,
    /// RFC 3519 granted: the keepalive interval (0: the default).
    udp: Option<u16>,
    /// The registration socket of the care-of address: tunnel data
    /// leaves from it (RFC 3519 §3.3: the NAT's mapping of the
    /// registration is the tunnel's). Weak: it closes with its address
    /// ([`super::sockets`] owns it).
    udp_socket: Option<Weak<UdpSocket>>,
    /// The MTU the node asked for (mode 'mc'), for IP in IP.
    node_mtu: Option<u32>,
    asked: Option<Asked>,
    table: u32,
    priority: u32,
    installed: Option<Installed>,
    /// `to <home agent> lookup main` while the care-of address is a
    /// physical one (mode 'c') and a VPN may be up: see [`Self::direct`].
    direct: Option<RuleSpec>,
    /// The VPN guard's rules while in mode 'mc': see [`Self::guard`].
    guard: (Option<VpnGuard>, Vec<RuleSpec>),
    /// The home address as the source of the node's own connections.
    source: Option<SourceInstalled>,
    /// DSMIPv4 (RFC 5454): the IPv6 home address and its routes.
    home6: Home6,
    /// The node's addresses and its guarded TIA, against which the
    /// userspace planes check every outer datagram's source
    /// ([`crate::dataplane::source`]).
    outer: SharedSources,
}

/// The home-source table's routes and rule as installed.
#[derive(Debug, Clone, Default)]
struct SourceInstalled {
    routes: Vec<RouteSpec>,
    throws: Vec<Ipv4Net>,
    rule: Option<RuleSpec>,
}

const EEXIST: i32 = libc::EEXIST;
/// Where mode 'f' keeps the home address.
const LOOPBACK: &str = "lo";

impl Installer {
    /// `outer` is what `dp`'s userspace plane, if it is one, checks
    /// against ([`UserspaceConfig::sources`]); the RFC 3519 plane shares it.
    pub fn new(
        nl: Arc<Netlink>,
        dp: DataPlane,
        outer: SharedSources,
        udp_device: &str,
        table: u32,
        priority: u32,
    ) -> Self {
        Installer {
            nl,
            dp,
            udp_plane: None,
            udp_device: udp_device.to_string(),
            udp: None,
            udp_socket: None,
            node_mtu: None,
            asked: None,
            table,
            priority,
            installed: None,
            direct: None,
            source: None,
            guard: (None, Vec::new()),
            home6: Home6::new(table, priority),
            outer,
        }
    }

    /// An address event of the node's own interfaces (not the tunnel
    /// device's): the userspace planes send only from addresses there are.
    pub fn outer_address(&self, ifindex: u32, a: Ipv4Addr, added: bool) {
        let mut o = self.outer.write().unwrap_or_else(|p| p.into_inner());
        match added {
            true => o.added(ifindex, a),
            false => o.removed(ifindex, a),
        }
    }

    fn outer_guard(&self, tia: Option<Ipv4Addr>) {
        self.outer
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .vpn_guard(tia);
    }

    pub fn data_plane(&self) -> &DataPlane {
        &self.dp
    }

    /// The userspace plane, if one runs: `dp` itself, or the one started
    /// for RFC 3519.
    fn userspace(&self) -> Option<&UserspacePlane> {
        match &self.dp {
            DataPlane::Userspace(u) => Some(u),
            DataPlane::Kernel(_) => self.udp_plane.as_ref(),
        }
    }

    /// Where the registration sockets' readers hand tunnel data (RFC 3519),
    /// once a userspace plane runs.
    pub fn udp_sink(&self) -> Option<UdpSink> {
        self.userspace().map(UserspacePlane::udp_sink)
    }

    /// RFC 3519 §4.10: tunnel data from the home agent the RFC 3519 plane
    /// accepted so far (none without that plane), for the node's watch on
    /// the NAT's mapping.
    pub fn udp_received(&self) -> Option<u64> {
        self.udp
            .and(self.userspace().map(|u| u.counters().decapsulated))
    }

    /// What status shows of RFC 3519: granted or not, the keepalive
    /// interval, and the counters of the plane that carries it.
    pub fn udp_status(&self) -> serde_json::Value {
        serde_json::json!({
            "granted": self.udp.is_some(),
            "keepalive_s": self.udp.map(|k| keepalive_interval(k).as_secs()),
            "data_plane": self.userspace().map(UserspacePlane::counters),
        })
    }

    /// Outer datagrams the userspace planes did not send because their
    /// source was gone (`stale_source`) or a TIA outside the VPN guard
    /// (`outside_esp`): both planes together, for `mip4ctl stats`.
    pub fn outer_drops(&self) -> serde_json::Value {
        let main = match &self.dp {
            DataPlane::Userspace(u) => Some(u),
            DataPlane::Kernel(_) => None,
        };
        let planes = [main, self.udp_plane.as_ref()];
        let (mut stale, mut esp) = (0, 0);
        for c in planes.into_iter().flatten().map(UserspacePlane::counters) {
            stale += c.stale_source;
            esp += c.outside_esp;
        }
        serde_json::json!({"stale_source": stale, "outside_esp": esp})
    }

    /// The registration socket of the care-of address the next
    /// [`Action::TunnelUp`] names (the daemon's, [`super::sockets`]).
    pub fn set_udp_socket(&mut self, sock: Option<&Arc<UdpSocket>>) {
        self.udp_socket = sock.map(Arc::downgrade);
    }

    /// RFC 3519 granted (`Some`: the keepalive interval) or not: the next
    /// tunnel, and the current one, are built that way.
    async fn udp_tunnel(&mut self, home: Ipv4Addr, keepalive: Option<u16>) -> Result<(), String> {
        self.udp = keepalive;
        if keepalive.is_some() && self.userspace().is_none() {
            let mut cfg = UserspaceConfig::new(&self.udp_device, Role::MobileNode);
            cfg.mtu = DEFAULT_TUNNEL_MTU - UDP_EXTRA_OVERHEAD;
            cfg.sources = Some(self.outer.clone());
            let u = UserspacePlane::start(&self.nl, cfg)
                .await
                .map_err(|e| format!("userspace tunnel plane for RFC 3519: {e}"))?;
            info!(device = %u.ifname(), "RFC 3519 granted: userspace tunnel plane started (the kernel backend has no UDP tunnel)");
            self.udp_plane = Some(u);
        }
        match self.asked.filter(|a| a.home == home) {
            Some(a) => {
                self.tunnel_up(a.home, a.care_of, a.home_agent, a.reverse_tunnel)
                    .await
            }
            None => Ok(()),
        }
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
            Action::UdpTunnel { home, keepalive } => self.udp_tunnel(*home, *keepalive).await,
            Action::TunnelDown { home } => self.tunnel_down(*home).await,
            Action::TunnelMtu { home, mtu } => self.tunnel_mtu(*home, *mtu).await,
            Action::HoldTraffic { home } => self.hold(*home, true).await,
            Action::ReleaseTraffic { home } => self.hold(*home, false).await,
            Action::DirectToHomeAgent { home_agent } => {
                self.direct(*home_agent).await;
                Ok(())
            }
            Action::HomeAddressSource { source } => self.home_source(source.as_ref()).await,
            Action::GuardVpn { guard } => self.guard(*guard).await,
            // The daemon sends these to the plugin.
            Action::Vpn(_) => Ok(()),
            Action::ForeignAgentRoute { home, route } => {
                self.agent_route(*home, route.as_ref()).await
            }
            Action::Ipv6Home { home, ipv6 } => self.ipv6_home(*home, ipv6.as_ref()).await,
        }
    }

    /// DSMIPv4 ([`Action::Ipv6Home`]): the plane that carries the tunnel
    /// of `home` learns the prefix, and the IPv6 home address and its
    /// routes go on the device it names.
    async fn ipv6_home(&mut self, home: Ipv4Addr, v6: Option<&Ipv6Home>) -> Result<(), String> {
        let old = self.home6.want.take();
        self.home6.want = v6.map(|v| (home, v.clone()));
        if v6.is_none() {
            if let Some((h, _)) = old {
                // Neither plane carries it any more.
                if let Some(u) = self.udp_plane.as_ref() {
                    u.set_ipv6(h, None);
                }
                if let Err(e) = self.dp.set_ipv6(h, None).await {
                    warn!(error = %e, "IPv6 prefix left in the data plane");
                }
            }
        }
        self.ipv6_sync().await
    }

    /// Puts [`Home6::want`] on the plane that carries the tunnel now (the
    /// RFC 3519 plane when UDP is granted) and its device; called again
    /// after each tunnel change.
    async fn ipv6_sync(&mut self) -> Result<(), String> {
        let device = match self.home6.want.clone() {
            None => None,
            Some((home, v6)) => {
                let carried = match (self.udp, self.userspace()) {
                    (Some(_), Some(u)) => Ok(u.carry_ipv6(home, Some(v6.binding))),
                    _ => self.dp.set_ipv6(home, Some(v6.binding)).await,
                };
                match carried {
                    Ok(d) => d,
                    Err(e) => {
                        self.home6.apply(&self.nl, None).await?;
                        return Err(format!("IPv6 home address: {e}"));
                    }
                }
            }
        };
        self.home6.apply(&self.nl, device).await?;
        self.apply_mtu6().await
    }

    async fn tunnel_up(
        &mut self,
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        reverse_tunnel: bool,
    ) -> Result<(), String> {
        self.asked = Some(Asked {
            home,
            care_of,
            home_agent,
            reverse_tunnel,
        });
        let device = match self.udp {
            None => self.ipip_tunnel(home, care_of, home_agent).await?,
            Some(k) => self.udp_tunnel_up(home, care_of, home_agent, k).await?,
        };
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
        let encapsulation = if self.udp.is_some() {
            "udp"
        } else {
            "ip-in-ip"
        };
        info!(%home, %care_of, %home_agent, device = %device.ifname, backend = %self.dp.backend(), encapsulation, "tunnel installed");
        let result = result.and(self.apply_mtu().await);
        if self.home6.want.is_some() {
            // Another plane or device (RFC 3519 granted or withdrawn)
            // carries the IPv6 from now on.
            return result.and(self.ipv6_sync().await);
        }
        result
    }

    /// IP in IP through the configured backend; an RFC 3519 tunnel of
    /// `home` in the userspace plane goes.
    async fn ipip_tunnel(
        &mut self,
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
    ) -> Result<TunnelDevice, String> {
        if let Some(u) = self.udp_plane.as_ref() {
            u.set_keepalive(None);
            u.remove(home);
        } else if let DataPlane::Userspace(u) = &self.dp {
            u.set_keepalive(None);
        }
        let binding = TunnelBinding {
            home,
            local: care_of,
            remote: SocketAddrV4::new(home_agent, 0),
            encapsulation: Encapsulation::IpInIp,
        };
        // `create` moves an existing tunnel of `home` to the new endpoints.
        self.dp
            .create(binding)
            .await
            .map_err(|e| format!("tunnel {care_of} -> {home_agent}: {e}"))
    }

    /// RFC 3519: Tunnel Data to the home agent's port 434 from the
    /// registration socket of the care-of address, through the userspace
    /// plane, with keepalives at the granted interval (§4.9); a kernel
    /// tunnel of `home` goes.
    async fn udp_tunnel_up(
        &mut self,
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        keepalive: u16,
    ) -> Result<TunnelDevice, String> {
        if matches!(self.dp, DataPlane::Kernel(_)) {
            match self.dp.remove(home).await {
                Ok(()) | Err(crate::dataplane::TunnelError::NoBinding(_)) => {}
                Err(e) => warn!(error = %e, "removing the kernel tunnel for RFC 3519 failed"),
            }
        }
        let sock = self.udp_socket.as_ref().and_then(Weak::upgrade);
        let u = self
            .userspace()
            .ok_or("RFC 3519 granted but no userspace tunnel plane runs")?;
        if sock.is_none() {
            return Err(format!("no registration socket of {care_of} for RFC 3519"));
        }
        u.set_udp(sock.as_ref());
        u.insert(TunnelBinding {
            home,
            local: care_of,
            remote: SocketAddrV4::new(home_agent, MIP_PORT),
            encapsulation: Encapsulation::Udp,
        })
        .map_err(|e| format!("UDP tunnel {care_of} -> {home_agent}: {e}"))?;
        u.set_keepalive(Some(Keepalive {
            home,
            interval: keepalive_interval(keepalive),
        }));
        Ok(TunnelDevice {
            ifindex: u.ifindex(),
            ifname: u.ifname().to_string(),
        })
    }

    /// The device MTU: the node's (mode 'mc', sized for IP in IP) or
    /// IP in IP's default, less RFC 3519's extra 12 bytes when the tunnel
    /// is UDP, so that its datagrams leave unfragmented.
    async fn apply_mtu(&self) -> Result<(), String> {
        let (Some(inst), Some(mtu)) = (self.installed.as_ref(), self.tunnel_mtu_now()) else {
            return Ok(());
        };
        self.nl
            .set_link_mtu(inst.device.ifindex, mtu)
            .await
            .map_err(|e| format!("mtu {mtu} on {}: {e}", inst.device.ifname))?;
        self.apply_mtu6().await
    }

    /// The IPv4 tunnel's MTU the node asked for (mode 'mc': sized for
    /// ESP; an RFC 3519 tunnel's UDP header less), `None` for the data
    /// plane's own.
    fn tunnel_mtu_now(&self) -> Option<u32> {
        match (self.node_mtu, self.udp) {
            (Some(m), None) => Some(m),
            (None, None) => None,
            (m, Some(_)) => Some(m.unwrap_or(DEFAULT_TUNNEL_MTU) - UDP_EXTRA_OVERHEAD),
        }
    }

    /// The kernel backend's `sit` link carrying the IPv6 home address
    /// sized like the IPv4 tunnel it runs beside or inside
    /// (`dataplane::sit::mtu_beside`): left at the sit default of 1480 in
    /// mode 'mc', IPv6 over ESP lost its first full-size segments after
    /// each move until the kernel learnt the path MTU. The userspace
    /// plane's TUN carries both families at the IPv4 tunnel's link MTU;
    /// IPv6 to the home address (RFC 5454 §2.2 code 0) goes inside that
    /// tunnel in an IPv4 header of its own, 20 bytes more, so the TUN's
    /// IPv6 MTU (`net.ipv6.conf.DEV.mtu`, which the kernel puts back to
    /// the link MTU on each change of it: set after it) is that much less.
    async fn apply_mtu6(&self) -> Result<(), String> {
        let Some((dev, to)) = self.home6.device() else {
            return Ok(());
        };
        if !dev.ifname.starts_with(crate::dataplane::sit::LINK_PREFIX) {
            // Not fatal: the plane answers what does not fit with a
            // Packet Too Big (dataplane::userspace).
            let set = sysctl::link_mtu(&dev.ifname)
                .map(|m| crate::dataplane::sit::mtu_beside(m, to))
                .and_then(|m| sysctl::set_ipv6_mtu(&dev.ifname, m).map(|()| m));
            match set {
                Ok(mtu) => info!(device = %dev.ifname, mtu, ?to, "IPv6 mtu of the tunnel device"),
                Err(e) => {
                    warn!(device = %dev.ifname, error = %e, "cannot set the IPv6 mtu of the tunnel device")
                }
            }
            return Ok(());
        }
        let Some(mtu) = self.tunnel_mtu_now() else {
            return Ok(());
        };
        let mtu = crate::dataplane::sit::mtu_beside(mtu, to);
        self.nl
            .set_link_mtu(dev.ifindex, mtu)
            .await
            .map_err(|e| format!("mtu {mtu} on {}: {e}", dev.ifname))
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
            self.route_home(inst, route).await?;
        }
        Ok(())
    }

    /// The home address's table routes by `route`, and a rule `from
    /// <home> lookup <table>` sends it there.
    async fn route_home(&self, inst: &mut Installed, route: RouteSpec) -> Result<(), String> {
        self.nl
            .replace_route(&route)
            .await
            .map_err(|e| e.to_string())?;
        inst.route = Some(route);
        if inst.rule.is_some() {
            return Ok(());
        }
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
        Ok(())
    }

    /// Mode 'f' ([`Action::ForeignAgentRoute`]): no tunnel here, the
    /// foreign agent decapsulates and delivers on the link (RFC 5944
    /// §4.2.2). The home address goes on the loopback device (local, so
    /// what the agent delivers is accepted and applications keep it;
    /// mip4d never takes `lo` for an attachment) and the home address's
    /// table routes to the agent, the home address's router on its link.
    async fn agent_route(
        &mut self,
        home: Ipv4Addr,
        route: Option<&AgentRoute>,
    ) -> Result<(), String> {
        let on_lo = |i: &Installed| i.home == home && i.device.ifname == LOOPBACK;
        let Some(r) = route else {
            if self.installed.as_ref().is_some_and(on_lo) {
                self.remove_installed().await;
            }
            return Ok(());
        };
        let index = |name: &str| {
            nix::net::if_::if_nametoindex(name).map_err(|e| format!("no interface {name}: {e}"))
        };
        let (lo, link) = (index(LOOPBACK)?, index(&r.ifname)?);
        if self.installed.as_ref().is_some_and(|i| !on_lo(i)) {
            self.remove_installed().await;
        }
        let mut inst = self.installed.take().unwrap_or(Installed {
            home,
            device: TunnelDevice {
                ifindex: lo,
                ifname: LOOPBACK.to_string(),
            },
            address: false,
            route: None,
            rule: None,
        });
        let mut result = Ok(());
        if !inst.address {
            match self.nl.add_address(lo, home, 32).await {
                Ok(()) => inst.address = true,
                Err(e) if e.errno() == Some(EEXIST) => inst.address = true,
                Err(e) => result = Err(format!("home address on {LOOPBACK}: {e}")),
            }
        }
        // The agent reverse-tunnels what it routes for the home address
        // (RFC 3024): 20 bytes more than the link carries. Its ICMP
        // "fragmentation needed" would come from its own address, which
        // it cannot send itself back through its tunnel (a martian
        // source), so the node sizes the home address's datagrams.
        let mtu = super::run::link_mtu(&self.nl, link)
            .await
            .unwrap_or(1500)
            .saturating_sub(20);
        let spec = RouteSpec {
            via: Some(r.router),
            dev: Some(link),
            mtu: Some(mtu),
            ..RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, link).in_table(self.table)
        };
        if result.is_ok() {
            result = self.route_home(&mut inst, spec).await;
        }
        self.installed = Some(inst);
        info!(%home, agent = %r.router, ifname = %r.ifname, "home address routed to the foreign agent (mode f)");
        result
    }

    /// Mode 'mc': the tunnel runs inside ESP; the node sized it so that
    /// its datagrams do not fragment (docs/mip4d.md, "MTU").
    async fn tunnel_mtu(&mut self, home: Ipv4Addr, mtu: u32) -> Result<(), String> {
        let Some(inst) = self.installed.as_ref().filter(|i| i.home == home) else {
            return Err(format!("no tunnel of {home} to set the MTU of"));
        };
        let device = inst.device.ifname.clone();
        self.node_mtu = Some(mtu);
        self.apply_mtu().await?;
        info!(%home, mtu, %device, udp = self.udp.is_some(), "tunnel mtu set");
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
        self.home6.hold(&self.nl, hold).await
    }

    async fn tunnel_down(&mut self, home: Ipv4Addr) -> Result<(), String> {
        if self.home6.want.as_ref().is_some_and(|(h, _)| *h == home) {
            // The node removes IPv6 first; a tunnel never leaves it behind.
            self.home6.want = None;
            self.home6.apply(&self.nl, None).await?;
        }
        if self.installed.as_ref().is_some_and(|i| i.home == home) {
            self.remove_installed().await;
        }
        self.asked = None;
        self.udp = None;
        self.node_mtu = None;
        if let Some(u) = self.userspace() {
            u.set_keepalive(None);
        }
        if let Some(u) = self.udp_plane.as_ref() {
            u.remove(home);
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

    /// The table of the home address as source: the home address's
    /// table + 1. Its rule comes after the home address's own rule and
    /// the home agent rule, before charon's (220): charon's routes carry
    /// `src TIA` and would choose the TIA.
    fn source_table(&self) -> (u32, u32) {
        (self.table + 1, self.priority + 2)
    }

    /// Installs [`HomeSource`] (or removes it with `None`). The rule
    /// `from 0.0.0.0/32 iif lo` matches only lookups of what this host
    /// starts before a source is chosen (connect, unbound sends); the
    /// kernel takes the route's preferred source, and looks up again
    /// with it, which the home address's own rule answers (into the
    /// tunnel, or the hold's blackhole). Changes are made before stale
    /// entries go, so no lookup in between misses the table.
    async fn home_source(&mut self, want: Option<&HomeSource>) -> Result<(), String> {
        let (table, priority) = self.source_table();
        let mut cur = self.source.take().unwrap_or_default();
        let (routes, throws) = match want {
            None => (Vec::new(), Vec::new()),
            Some(s) => {
                let Some(inst) = self.installed.as_ref().filter(|i| i.home == s.home) else {
                    self.source = Some(cur);
                    return Err(format!("no tunnel of {} for its source routes", s.home));
                };
                let routes: Vec<RouteSpec> = s
                    .prefixes
                    .iter()
                    .map(|p| RouteSpec {
                        src: Some(s.home),
                        ..RouteSpec::to_dev(p.network(), p.prefix_len(), inst.device.ifindex)
                            .in_table(table)
                    })
                    .collect();
                (routes, s.exclude.clone())
            }
        };
        if want.is_none() {
            if let Some(rule) = cur.rule.take() {
                if let Err(e) = self.nl.del_rule(&rule).await {
                    warn!(error = %e, "removing the home source rule failed");
                }
            }
        }
        let mut result = Ok(());
        for r in routes.iter().filter(|r| !cur.routes.contains(r)) {
            if let Err(e) = self.nl.replace_route(r).await {
                result = Err(format!("home source route: {e}"));
            }
        }
        for t in throws.iter().filter(|t| !cur.throws.contains(t)) {
            if let Err(e) = self
                .nl
                .replace_throw(t.network(), t.prefix_len(), table)
                .await
            {
                result = Err(format!("home source exclusion: {e}"));
            }
        }
        for r in cur.routes.iter().filter(|r| !routes.contains(r)) {
            if let Err(e) = self.nl.del_route(r).await {
                warn!(error = %e, "removing a home source route failed");
            }
        }
        for t in cur.throws.iter().filter(|t| !throws.contains(t)) {
            if let Err(e) = self.nl.del_throw(t.network(), t.prefix_len(), table).await {
                warn!(error = %e, "removing a home source exclusion failed");
            }
        }
        if want.is_some() && cur.rule.is_none() {
            let rule = RuleSpec {
                from: Some((Ipv4Addr::UNSPECIFIED, 32)),
                iif: Some("lo".into()),
                table,
                priority,
                ..RuleSpec::default()
            };
            match self.nl.add_rule(&rule).await {
                Ok(()) => cur.rule = Some(rule),
                Err(e) if e.errno() == Some(EEXIST) => cur.rule = Some(rule),
                Err(e) => result = Err(format!("home source rule: {e}")),
            }
        }
        info!(home = ?want.map(|s| s.home), table, priority, routes = routes.len(), exclusions = throws.len(), "home address as source");
        cur.routes = routes;
        cur.throws = throws;
        self.source = want.map(|_| cur);
        result
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
        // The planes stop sending from the old TIA before its rules go,
        // and start from the new one once they are in.
        self.outer_guard(None);
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
        self.outer_guard(Some(g.tia));
        info!(tia = %g.tia, home_agent = %g.home_agent, priority = GUARD_PRIORITY, "mode mc: what must stay inside ESP is unreachable without the VPN's routes");
        Ok(())
    }

    /// Removes what an earlier instance of mip4d left when it was killed
    /// before its cleanup (issue 13), before anything is installed: its
    /// rules (`from <home> lookup <table>` at its priority, `to <home
    /// agent> lookup main` at the next, the VPN guard's at
    /// [`GUARD_PROBE_PRIORITY`] and [`GUARD_PRIORITY`]), the default route of its table
    /// (a blackhole while traffic was held), the home-address-source rule
    /// (its table is looked up by nothing once the rule is gone) and the
    /// kernel backend's links of its home address (`ipip`, and `sit` for
    /// IPv6). The userspace TUN device, and with it its
    /// address and routes, went with the process. Nothing else is touched.
    pub async fn sweep(&self, home: Ipv4Addr) {
        let mut left = Vec::new();
        let rules = [
            (self.priority, self.table),
            (self.priority + 1, crate::netlink::route::TABLE_MAIN),
            (self.source_table().1, self.source_table().0),
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
        // The kernel backend's ipip link, and its sit link for IPv6 (RFC
        // 5454, `KernelTunnels::set_ipv6`).
        for link in [
            crate::dataplane::kernel::link_name(home),
            crate::dataplane::sit::link_name(home),
        ] {
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
        }
        // Mode 'f' keeps the home address on the loopback device.
        if let (false, Ok(lo)) = (
            home.is_unspecified(),
            nix::net::if_::if_nametoindex(LOOPBACK),
        ) {
            if self.nl.del_address(lo, home, 32).await.is_ok() {
                left.push(format!("{home}/32 on {LOOPBACK}"));
            }
        }
        if !left.is_empty() {
            info!(removed = %left.join(", "), "left by an earlier instance of mip4d: removed");
        }
    }

    /// [`Self::sweep`]'s IPv6 part (DSMIPv4): the prefix's rule and the
    /// routes to `destinations` an earlier instance left.
    pub async fn sweep_ipv6(&self, destinations: &[ipnet::Ipv6Net]) {
        let left = super::home6::sweep(&self.nl, self.table, self.priority, destinations).await;
        if !left.is_empty() {
            info!(removed = %left.join(", "), "left by an earlier instance of mip4d: removed");
        }
    }

    /// Removes everything (exit): routes, address, tunnels.
    pub async fn remove_all(&mut self) {
        if let Err(e) = self.home_source(None).await {
            warn!(error = %e, "removing the home source table failed");
        }
        self.direct(None).await;
        self.asked = None;
        self.home6.want = None;
        self.home6.remove(&self.nl).await;
        if let Err(e) = self.guard(None).await {
            warn!(error = %e, "removing the VPN guard failed");
        }
        let home = self.installed.as_ref().map(|i| i.home);
        self.remove_installed().await;
        if let (Some(home), DataPlane::Kernel(_)) = (home, &self.dp) {
            // The kernel backend's IPv6 tunnel, if one was made
            // (`KernelTunnels::set_ipv6`): none is no error.
            if let Err(e) = crate::dataplane::sit::ipv6_tunnel_down(&self.nl, home).await {
                warn!(error = %e, "removing the IPv6 tunnel failed");
            }
        }
        if let Err(e) = self.dp.shutdown().await {
            warn!(error = %e, "removing tunnels failed");
        }
        // Its TUN device goes with it.
        self.udp_plane = None;
    }
}
