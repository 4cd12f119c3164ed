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
//! - the tunnel end ([`super::tunnels`]: the userspace plane's device, or
//!   a kernel ipip link per home agent): datagrams the HA tunnels to the
//!   care-of address are decapsulated (only from that HA, only for that
//!   home address) and routed on to the visitor;
//! - with 'T', the reverse tunnel (RFC 3024 §5): a rule `from HoA iif
//!   LINK lookup T'`, table T' routing everything into the tunnel device
//!   (the userspace plane's, where it is encapsulated to the visitor's HA;
//!   or the kernel link to that HA, with a table of its own).
//!
//! The core ([`crate::fa::ForeignAgent`]) decides; this remembers exactly what
//! it installed so that a visitor's end and shutdown remove that only.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::ha_links::is_fa_link;
use super::tunnels::Tunnels;
use crate::dataplane::{Backend, DataPlaneStatus};
use crate::fa::config::FaConfig;
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
    /// The tunnel device: the userspace plane's, or the kernel link to
    /// the home agent.
    pub tunnel: String,
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
/// visitors' routes and neighbour entries, the kernel backend's links,
/// rules and nftables table, and the sysctls go back to the values the
/// first instance found at the clean stop.
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
    /// Kernel backend: the reverse-tunnel tables of its links (the links
    /// themselves are found by name, `mip4fa-*`).
    #[serde(default)]
    pub tables: Vec<u32>,
    /// Kernel backend: its nftables table was installed.
    #[serde(default)]
    pub ingress: bool,
}

const DAEMON: &str = "mip4-fa";

/// The FA's data plane and what it installed per visitor.
pub struct Installer {
    nl: Arc<Netlink>,
    tunnels: Tunnels,
    care_of: Ipv4Addr,
    /// The visitors' host routes (and, userspace, the reverse tunnel's
    /// route).
    table: u32,
    /// Served interfaces: name -> index.
    links: Vec<(String, u32)>,
    installed: HashMap<Ipv4Addr, Installed>,
    forward_was: Option<bool>,
    rp_filter_was: Vec<(String, u8)>,
}

impl Installer {
    /// Starts the configured tunnel backend ([`super::tunnels`]) and the
    /// visitors' table.
    ///
    /// `previous` is what an earlier instance recorded: what it left
    /// (visitors, its rules, tables, links and nftables table) is removed
    /// first, and the values of the sysctls it found stay the ones
    /// restored at shutdown.
    pub async fn start(
        cfg: &FaConfig,
        links: Vec<(String, u32)>,
        previous: &KernelRecord,
    ) -> Result<Self, String> {
        let nl = Arc::new(Netlink::new().map_err(|e| format!("netlink: {e}"))?);
        sweep(&nl, cfg.reverse_tunnel_table, previous).await;
        let backend = crate::dataplane::choose(&nl, cfg.tunnel_backend.into())
            .await
            .map_err(|e| format!("cannot start the tunnel data plane: {e}"))?;
        let tunnels = Tunnels::start(
            &nl,
            backend,
            &cfg.tunnel_interface,
            cfg.care_of_address,
            cfg.reverse_tunnel_table,
        )
        .await?;
        // Visitors' datagrams enter the link with a home address the
        // routing table sends elsewhere: reverse-path filtering must not
        // judge them.
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
        Ok(Installer {
            nl,
            tunnels,
            care_of: cfg.care_of_address,
            table: cfg.reverse_tunnel_table,
            links,
            installed: HashMap::new(),
            forward_was,
            rp_filter_was,
        })
    }

    pub fn backend(&self) -> Backend {
        self.tunnels.backend()
    }

    /// Backend, tunnels and datagram counters (kernel backend: as last
    /// read by [`refresh_counters`](Self::refresh_counters)).
    pub fn status(&self) -> DataPlaneStatus {
        DataPlaneStatus {
            backend: self.tunnels.backend(),
            bindings: self.tunnels.bindings(),
            counters: Some(self.tunnels.counters()),
        }
    }

    /// Kernel backend: reads the links' packet counts and the
    /// decapsulation check's drops again.
    pub async fn refresh_counters(&mut self) {
        self.tunnels.refresh_counters(&self.nl).await;
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
            tables: self.tunnels.tables(),
            ingress: self.tunnels.backend() == Backend::Kernel,
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
            if old.ifindex != ifindex
                || old.reverse_tunnel != v.reverse_tunnel
                || old.home_agent != v.home_agent
            {
                self.down(home).await?;
            }
        }
        let end = self
            .tunnels
            .join(&self.nl, self.table, self.care_of, v.home_agent, home)
            .await?;
        // From here the visitor has kernel state: remembered now, so that
        // `down` removes it even when a later step fails.
        let had_rule = self.installed.get(&home).and_then(|i| i.rule.clone());
        let route = RouteSpec::to_dev(home, 32, ifindex).in_table(self.table);
        self.installed.insert(
            home,
            Installed {
                home_address: home,
                interface: ifname.clone(),
                mac: mac_string(&v.mac),
                home_agent: v.home_agent,
                reverse_tunnel: v.reverse_tunnel,
                tunnel: end.device.ifname.clone(),
                ifindex,
                route: route.clone(),
                rule: had_rule.clone(),
            },
        );
        self.nl
            .add_static_neighbour(ifindex, home, v.mac)
            .await
            .map_err(|e| format!("neighbour entry for {home}: {e}"))?;
        self.nl
            .replace_route(&route)
            .await
            .map_err(|e| format!("route for {home}: {e}"))?;
        let rule = if v.reverse_tunnel {
            let r = RuleSpec {
                from: Some((home, 32)),
                to: None,
                iif: Some(ifname.clone()),
                table: end.table,
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
        if let Some(i) = self.installed.get_mut(&home) {
            i.rule = rule;
        }
        info!(
            home_address = %home, interface = %ifname, mac = %mac_string(&v.mac), home_agent = %v.home_agent,
            reverse_tunnel = v.reverse_tunnel, tunnel = %end.device.ifname,
            "visitor installed: route, neighbour entry and tunnel"
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
        self.tunnels.leave(&self.nl, i.home_agent, home).await;
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
        self.tunnels.shutdown(&self.nl).await;
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
/// its tables) and the tables' routes, per visitor of its record the
/// host route and neighbour entry on its link (served by this instance
/// or not), the kernel
/// backend's links (named `mip4fa-*`: one mip4-fa per namespace, it owns
/// the Mobile IP port) and its nftables table. Nothing else.
async fn sweep(nl: &Netlink, table: u32, previous: &KernelRecord) {
    let mut removed = 0;
    match nl.links().await {
        Ok(all) => {
            for (index, name) in all.iter().filter(|(_, n)| is_fa_link(n)) {
                match nl.delete_link(*index).await {
                    Ok(()) => {
                        info!(link = %name, "ipip link left by an earlier instance removed");
                        removed += 1;
                    }
                    Err(e) => warn!("cannot remove {name} left by an earlier instance: {e}"),
                }
            }
        }
        Err(e) => warn!("cannot list links: {e}"),
    }
    for &t in &previous.tables {
        match nl.del_rules_at(RULE_PRIORITY, t).await {
            Ok(n) => removed += n,
            Err(e) => warn!("cannot remove rules left by an earlier instance: {e}"),
        }
    }
    if previous.ingress {
        match super::ingress::CHECK.remove().await {
            Ok(()) => removed += 1,
            Err(e) => warn!("cannot remove the nftables table left by an earlier instance: {e}"),
        }
    }
    match nl.del_rules_at(RULE_PRIORITY, table).await {
        Ok(n) => removed += n,
        Err(e) => warn!("cannot remove rules left by an earlier instance: {e}"),
    }
    match nl.del_routes_to(Ipv4Addr::UNSPECIFIED, 0, table).await {
        Ok(n) => removed += n,
        Err(e) => warn!("cannot remove routes left by an earlier instance: {e}"),
    }
    for (name, home) in &previous.visitors {
        // By name: the link may be one this instance does not serve.
        let Ok(ifindex) = nl.link_index(name).await else {
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
            "left by an earlier instance of mip4-fa: rules, routes, neighbour entries and links removed"
        );
    }
}
