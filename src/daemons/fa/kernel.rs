//! What a visitor installs in the kernel, for the `mip4-fa` daemon:
//! - delivery on the link: a host route to the home address through the
//!   visitor's interface and a permanent neighbour entry with the
//!   link-layer address its request came from (RFC 5944 §4.6: no ARP for
//!   a visitor's home address). The host route sits in the agent's own
//!   table, looked up only for what leaves its tunnels (a rule `iif
//!   <tunnel device> lookup T`): the agent delivers what home agents
//!   tunnel to it, and never draws other traffic for a home address off
//!   its path through the home agent (on a host that also routes towards
//!   the home network, a host route in the main table would);
//! - the tunnel end: datagrams the HA tunnels to the care-of address are
//!   decapsulated (only from that HA, only for that home address) and
//!   routed on to the visitor;
//! - with 'T', the reverse tunnel (RFC 3024 §5): a rule `from HoA iif
//!   LINK lookup T`, table T routing everything into the tunnel device,
//!   where the data plane encapsulates it to the visitor's HA.
//!
//! The core ([`crate::fa::ForeignAgent`]) decides; this remembers exactly what
//! it installed so that a visitor's end and shutdown remove that only.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::dataplane::{
    Backend, BackendChoice, DataPlane, DataPlaneStatus, Encapsulation, Role, Tunnel, TunnelBinding,
    UserspaceConfig,
};
use crate::fa::config::{FaConfig, TunnelBackend};
use crate::fa::visitor::{mac_string, Visitor};
use crate::netlink::{sysctl, Netlink, RouteSpec, RuleSpec};

/// Priority of the reverse-tunnel rules: after `local` (0), before
/// `main` (32766).
pub const RULE_PRIORITY: u32 = 1000;

/// The kernel state of one visitor.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub home_address: Ipv4Addr,
    pub interface: String,
    pub mac: String,
    pub home_agent: Ipv4Addr,
    pub reverse_tunnel: bool,
    #[serde(skip)]
    ifindex: u32,
    #[serde(skip)]
    route: RouteSpec,
    #[serde(skip)]
    rule: Option<RuleSpec>,
}

/// What mip4-fa holds in the kernel beyond its process, kept in its
/// record under /run (`fa.state` beside the control socket) for the next
/// instance (issue 13): after SIGKILL the next start removes the
/// visitors' routes and neighbour entries, and the sysctls go back to
/// the values the first instance found at the clean stop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecord {
    /// "mip4-fa": another daemon's record is not taken up.
    pub daemon: String,
    /// net.ipv4.ip_forward before the first instance turned it on.
    pub ip_forward_was: Option<bool>,
    /// net.ipv4.conf.IF.rp_filter of the served links before it was
    /// turned off.
    pub rp_filter_was: Vec<(String, u8)>,
    /// Visitors installed: (served link, home address).
    pub visitors: Vec<(String, Ipv4Addr)>,
}

const DAEMON: &str = "mip4-fa";

/// The FA's data plane and what it installed per visitor.
pub struct Installer {
    nl: Arc<Netlink>,
    dp: DataPlane,
    care_of: Ipv4Addr,
    table: u32,
    tunnel_ifindex: u32,
    /// Served interfaces: name -> index.
    links: Vec<(String, u32)>,
    installed: HashMap<Ipv4Addr, Installed>,
    forward_was: Option<bool>,
    rp_filter_was: Vec<(String, u8)>,
    table_route: Option<RouteSpec>,
    /// `iif <tunnel device> lookup <table>`: decapsulated datagrams find
    /// the visitors' host routes.
    delivery_rule: Option<RuleSpec>,
}

impl Installer {
    /// Starts the tunnel data plane (this end is "mobile node"-like: it
    /// tunnels *from* home addresses and accepts *to* them) and the
    /// reverse-tunnel table.
    ///
    /// `previous` is what an earlier instance recorded: what it left
    /// (visitors, its rules and table) is removed first, and the values
    /// of the sysctls it found stay the ones restored at shutdown.
    pub async fn start(
        cfg: &FaConfig,
        links: Vec<(String, u32)>,
        previous: &KernelRecord,
    ) -> Result<Self, String> {
        let nl = Arc::new(Netlink::new().map_err(|e| format!("netlink: {e}"))?);
        sweep(&nl, cfg.reverse_tunnel_table, &links, previous).await;
        let choice = match cfg.tunnel_backend {
            TunnelBackend::Auto => BackendChoice::Auto,
            TunnelBackend::Kernel => BackendChoice::Kernel,
            TunnelBackend::Userspace => BackendChoice::Userspace,
        };
        if choice == BackendChoice::Kernel {
            return Err(
                "tunnel_backend \"kernel\" is not implemented for mip4-fa yet; use \"userspace\" or \"auto\"".into(),
            );
        }
        // The FA decapsulates for many visitors on one device and needs
        // the per-visitor ingress check: the userspace plane does both.
        let ucfg = UserspaceConfig::new(&cfg.tunnel_interface, Role::MobileNode);
        let dp = DataPlane::start(nl.clone(), BackendChoice::Userspace, ucfg)
            .await
            .map_err(|e| format!("cannot start the tunnel data plane: {e}"))?;
        let DataPlane::Userspace(u) = &dp else {
            return Err("unexpected data plane backend".into());
        };
        let tunnel_ifindex = u.ifindex();
        let tunnel_ifname = u.ifname().to_string();
        // Decapsulated datagrams enter through the tunnel device with a
        // correspondent's source; visitors' datagrams enter the link with
        // a home address the routing table sends elsewhere: neither must
        // be judged by reverse-path filtering.
        if let Err(e) = sysctl::disable_rp_filter(u.ifname()) {
            warn!("cannot disable rp_filter on {}: {e}", u.ifname());
        }
        let mut rp_filter_was = Vec::new();
        for (name, _) in &links {
            let was = previous
                .rp_filter_was
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(_, v)| v)
                .or_else(|| sysctl::rp_filter(name).ok());
            if let Err(e) = sysctl::disable_rp_filter(name) {
                warn!("cannot disable rp_filter on {name}: {e}");
                continue;
            }
            if let Some(v) = was.filter(|&v| v != 0) {
                rp_filter_was.push((name.clone(), v));
            }
        }
        if std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/rp_filter")
            .is_ok_and(|s| s.trim() != "0")
        {
            warn!("net.ipv4.conf.all.rp_filter is on: the kernel uses the stricter of 'all' and the interface's value, so visitors' traffic may be dropped");
        }
        let forward_was = match sysctl::ip_forward() {
            Ok(true) => None,
            Ok(false) => {
                sysctl::set_ip_forward(true)
                    .map_err(|e| format!("cannot enable IPv4 forwarding: {e}"))?;
                info!("net.ipv4.ip_forward set to 1 (restored at shutdown)");
                Some(false)
            }
            Err(e) => return Err(format!("cannot read net.ipv4.ip_forward: {e}")),
        };
        let forward_was = previous.ip_forward_was.or(forward_was);
        let mut me = Installer {
            nl,
            dp,
            care_of: cfg.care_of_address,
            table: cfg.reverse_tunnel_table,
            tunnel_ifindex,
            links,
            installed: HashMap::new(),
            forward_was,
            rp_filter_was,
            table_route: None,
            delivery_rule: None,
        };
        let route = RouteSpec::to_dev(Ipv4Addr::UNSPECIFIED, 0, tunnel_ifindex).in_table(me.table);
        me.nl
            .replace_route(&route)
            .await
            .map_err(|e| format!("reverse tunnel table {}: {e}", me.table))?;
        me.table_route = Some(route);
        let rule = RuleSpec {
            iif: Some(tunnel_ifname),
            table: me.table,
            priority: RULE_PRIORITY,
            ..Default::default()
        };
        me.nl
            .add_rule(&rule)
            .await
            .map_err(|e| format!("delivery rule of table {}: {e}", me.table))?;
        me.delivery_rule = Some(rule);
        Ok(me)
    }

    pub fn backend(&self) -> Backend {
        self.dp.backend()
    }

    pub fn status(&self) -> DataPlaneStatus {
        self.dp.status()
    }

    /// What is installed now, for the daemon's record.
    pub fn record(&self) -> KernelRecord {
        let mut visitors: Vec<(String, Ipv4Addr)> = self
            .installed
            .values()
            .map(|i| (i.interface.clone(), i.home_address))
            .collect();
        visitors.sort();
        KernelRecord {
            daemon: DAEMON.to_string(),
            ip_forward_was: self.forward_was,
            rp_filter_was: self.rp_filter_was.clone(),
            visitors,
        }
    }

    pub fn installed(&self) -> Vec<Installed> {
        let mut v: Vec<Installed> = self.installed.values().cloned().collect();
        v.sort_by_key(|i| i.home_address);
        v
    }

    /// Installs (or moves) delivery to `v` and its tunnels.
    pub async fn up(&mut self, v: &Visitor) -> Result<(), String> {
        let home = v.home_address;
        let (ifname, ifindex) = self
            .links
            .get(v.interface)
            .cloned()
            .ok_or_else(|| format!("no served interface {}", v.interface))?;
        if let Some(old) = self.installed.get(&home) {
            if old.ifindex != ifindex || old.reverse_tunnel != v.reverse_tunnel {
                self.down(home).await?;
            }
        }
        self.dp
            .create(TunnelBinding {
                home,
                local: self.care_of,
                remote: SocketAddrV4::new(v.home_agent, 0),
                encapsulation: Encapsulation::IpInIp,
            })
            .await
            .map_err(|e| format!("tunnel for {home}: {e}"))?;
        self.nl
            .add_static_neighbour(ifindex, home, v.mac)
            .await
            .map_err(|e| format!("neighbour entry for {home}: {e}"))?;
        let route = RouteSpec::to_dev(home, 32, ifindex).in_table(self.table);
        self.nl
            .replace_route(&route)
            .await
            .map_err(|e| format!("route for {home}: {e}"))?;
        let had_rule = self.installed.get(&home).and_then(|i| i.rule.clone());
        let rule = if v.reverse_tunnel {
            let r = RuleSpec {
                from: Some((home, 32)),
                to: None,
                iif: Some(ifname.clone()),
                table: self.table,
                priority: RULE_PRIORITY,
                ..Default::default()
            };
            if had_rule.as_ref() != Some(&r) {
                self.nl
                    .add_rule(&r)
                    .await
                    .map_err(|e| format!("reverse tunnel rule for {home}: {e}"))?;
            }
            Some(r)
        } else {
            None
        };
        info!(
            home_address = %home, interface = %ifname, mac = %mac_string(&v.mac), home_agent = %v.home_agent,
            reverse_tunnel = v.reverse_tunnel, "visitor installed: route, neighbour entry and tunnel"
        );
        self.installed.insert(
            home,
            Installed {
                home_address: home,
                interface: ifname,
                mac: mac_string(&v.mac),
                home_agent: v.home_agent,
                reverse_tunnel: v.reverse_tunnel,
                ifindex,
                route,
                rule,
            },
        );
        Ok(())
    }

    /// Removes what `up` installed for `home`; every step is attempted.
    pub async fn down(&mut self, home: Ipv4Addr) -> Result<(), String> {
        let Some(i) = self.installed.remove(&home) else {
            return Ok(());
        };
        let mut errors = Vec::new();
        if let Some(r) = &i.rule {
            if let Err(e) = self.nl.del_rule(r).await {
                errors.push(format!("rule: {e}"));
            }
        }
        if let Err(e) = self.nl.del_route(&i.route).await {
            if e.errno() != Some(libc::ESRCH) {
                errors.push(format!("route: {e}"));
            }
        }
        if let Err(e) = self.nl.del_neighbour(i.ifindex, home).await {
            if e.errno() != Some(libc::ENOENT) {
                errors.push(format!("neighbour: {e}"));
            }
        }
        if let Err(e) = self.dp.remove(home).await {
            errors.push(format!("tunnel: {e}"));
        }
        info!(home_address = %home, interface = %i.interface, "visitor uninstalled");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("removing {home}: {}", errors.join("; ")))
        }
    }

    /// Removes every visitor's state, the table route, and restores
    /// ip_forward.
    pub async fn shutdown(&mut self) {
        let homes: Vec<Ipv4Addr> = self.installed.keys().copied().collect();
        for h in homes {
            if let Err(e) = self.down(h).await {
                warn!("{e}");
            }
        }
        if let Some(r) = self.delivery_rule.take() {
            if let Err(e) = self.nl.del_rule(&r).await {
                warn!("delivery rule: {e}");
            }
        }
        if let Some(r) = self.table_route.take() {
            if let Err(e) = self.nl.del_route(&r).await {
                warn!("reverse tunnel table route: {e}");
            }
        }
        let _ = self.tunnel_ifindex;
        if let Err(e) = self.dp.shutdown().await {
            warn!("tunnel data plane shutdown: {e}");
        }
        if let Some(was) = self.forward_was.take() {
            if let Err(e) = sysctl::set_ip_forward(was) {
                warn!("cannot restore net.ipv4.ip_forward: {e}");
            }
        }
        for (name, was) in std::mem::take(&mut self.rp_filter_was) {
            if let Err(e) = sysctl::set_rp_filter(&name, was) {
                warn!("cannot restore rp_filter on {name}: {e}");
            }
        }
    }
}

/// Removes what an earlier instance of mip4-fa left when it was killed
/// before its cleanup (issue 13): its reverse-tunnel rules (its priority,
/// its table) and the table's route, and per visitor of its record the
/// host route and neighbour entry on the served link. Nothing else.
async fn sweep(nl: &Netlink, table: u32, links: &[(String, u32)], previous: &KernelRecord) {
    let mut removed = 0;
    match nl.del_rules_at(RULE_PRIORITY, table).await {
        Ok(n) => removed += n,
        Err(e) => warn!("cannot remove rules left by an earlier instance: {e}"),
    }
    match nl.del_routes_to(Ipv4Addr::UNSPECIFIED, 0, table).await {
        Ok(n) => removed += n,
        Err(e) => warn!("cannot remove routes left by an earlier instance: {e}"),
    }
    for (name, home) in &previous.visitors {
        let Some(&(_, ifindex)) = links.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if nl
            .del_route(&RouteSpec::to_dev(*home, 32, ifindex).in_table(table))
            .await
            .is_ok()
        {
            removed += 1;
        }
        if nl.del_neighbour(ifindex, *home).await.is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        info!(
            removed,
            "left by an earlier instance of mip4-fa: rules, routes and neighbour entries removed"
        );
    }
}
