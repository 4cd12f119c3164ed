//! What a binding installs in the kernel, for the `mip4-ha` daemon: the
//! tunnel to the care-of address (IP in IP, or RFC 3519 UDP), the host
//! route that sends the home address into it, and on a real home link the
//! proxy ARP entry and gratuitous ARP (RFC 5944 §4.6), and for a binding
//! with an IPv6 prefix (RFC 5454) the route of the prefix (on the kernel
//! backend into a `sit` link, [`crate::dataplane::sit`]). On the kernel
//! backend a link is shared by the bindings tunnelling to the same address
//! ([`crate::dataplane::shared`]): the `ipip` link per care-of address, the
//! `sit` link per care-of (or IPv4 home) address. The core
//! ([`crate::ha::HomeAgent`]) decides; this carries [`crate::ha::Output`]s out and
//! remembers exactly what it installed, so that a binding's end and the
//! daemon's shutdown remove that and nothing else.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::dataplane::ipip::DEFAULT_TTL;
use crate::dataplane::shared::SharedLinks;
use crate::dataplane::userspace::ControlSink;
use crate::dataplane::{
    sit, Backend, DataPlane, DataPlaneStatus, Encapsulation, Role, Tunnel, TunnelBinding,
    TunnelDevice, UserspaceConfig, UserspacePlane,
};
use crate::ha::binding::{lowest, Binding, Ipv6Binding, TunnelMode};
use crate::ha::config::{HaConfig, HomeNetworkMode, TunnelBackend};
use crate::netlink::{sysctl, Netlink, RouteSpec};
use crate::sys::packet::{Framing, PacketSocket, BROADCAST, ETH_P_ARP};

/// RFC 3519 overhead: outer IP 20, UDP 8, Tunnel Data header 4.
const UDP_OVERHEAD: u32 = 32;

/// The kernel state of one binding.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub home_address: Ipv4Addr,
    pub device: TunnelDevice,
    pub encapsulation: Encapsulation,
    pub remote: SocketAddrV4,
    /// Proxy ARP entry on this home link interface (name, index).
    pub proxy_arp: Option<(String, u32)>,
    #[serde(skip)]
    route: RouteSpec,
    /// RFC 5454: the IPv6 prefix, routed into the userspace plane's
    /// device or, on the kernel backend, into `ipv6_device`.
    pub ipv6: Option<Ipv6Binding>,
    /// Kernel backend: the binding's `sit` link (IPv6 in IPv4, RFC 5454),
    /// shared with the bindings that tunnel to the same address.
    pub ipv6_device: Option<TunnelDevice>,
}

impl Installed {
    /// The device the binding's IPv6 prefix is routed into.
    fn ipv6_route_dev(&self) -> u32 {
        self.ipv6_device
            .as_ref()
            .map_or(self.device.ifindex, |d| d.ifindex)
    }
}

/// What a binding asks of the data plane: compared with what it has
/// ([`Installed::serves`]) before any kernel request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    encapsulation: Encapsulation,
    remote: SocketAddrV4,
    ipv6: Option<Ipv6Binding>,
    /// The home link of its proxy ARP entry (RFC 5944 §4.6), if any.
    proxy_arp: Option<String>,
}

impl Wanted {
    fn of(cfg: &HaConfig, b: &Binding) -> Wanted {
        let (encapsulation, remote) = match b.tunnel {
            TunnelMode::Ipip => (
                Encapsulation::IpInIp,
                SocketAddrV4::new(b.care_of_address, 0),
            ),
            // RFC 3519 §3.3: tunnel to where the request came from (the
            // NAT's mapping), not to the private care-of address.
            TunnelMode::Udp => (Encapsulation::Udp, b.source),
        };
        let proxy_arp =
            cfg.home_network_of(b.home_address)
                .and_then(|net| match (net.mode, &net.interface) {
                    (HomeNetworkMode::ProxyArp, Some(ifname)) => Some(ifname.clone()),
                    _ => None,
                });
        Wanted {
            encapsulation,
            remote,
            ipv6: b.ipv6,
            proxy_arp,
        }
    }
}

impl Installed {
    /// Whether what is installed is what `want` asks for: the same
    /// tunnel (encapsulation and far end), IPv6 prefix and proxy ARP
    /// link. Then the tunnel, routes and entry are in place and a renewal
    /// needs no kernel request.
    fn serves(&self, want: &Wanted) -> bool {
        self.encapsulation == want.encapsulation
            && self.remote == want.remote
            && self.ipv6 == want.ipv6
            && self.proxy_arp.as_ref().map(|(n, _)| n) == want.proxy_arp.as_ref()
    }
}

/// What the daemon holds in the kernel beyond its process, as its record
/// under /run keeps it for the next instance (issue 13: after SIGKILL,
/// the next start removes what no restored binding owns, and restores
/// `ip_forward` at its clean stop).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRecord {
    /// net.ipv4.ip_forward before the first instance turned it on.
    pub ip_forward_was: Option<bool>,
    /// net.ipv6.conf.all.forwarding likewise (DSMIPv4 prefixes
    /// configured). Absent from records of versions without it.
    #[serde(default)]
    pub ipv6_forwarding_was: Option<bool>,
    /// Proxy ARP entries: (home link, home address).
    pub proxy_arp: Vec<(String, Ipv4Addr)>,
    /// The kernel backend's tunnel links (`ipip`, and `sit` for IPv6).
    pub links: Vec<String>,
}

/// RFC 5454: with IPv6 prefixes configured the HA forwards IPv6 between
/// its links and the tunnels as it does IPv4, so it turns
/// net.ipv6.conf.all.forwarding on like net.ipv4.ip_forward (without it
/// IPv6 to the mobile nodes would go nowhere, silently) and restores it
/// at shutdown. Returns the value found when it changed it. It cannot be
/// turned on (IPv6 disabled on the host): no start, naming the sysctl.
fn ipv6_forwarding(cfg: &HaConfig) -> Result<Option<bool>, String> {
    if !cfg.mobile_nodes.iter().any(|m| m.ipv6_prefix.is_some()) {
        return Ok(None);
    }
    let cannot = |e| {
        format!("mobile_node.ipv6_prefix is configured but net.ipv6.conf.all.forwarding cannot be turned on: {e}")
    };
    if sysctl::ipv6_forwarding().map_err(cannot)? {
        return Ok(None);
    }
    // Forwarding on makes accept_ra = 1 mean "ignore Router
    // Advertisements": say so where it does.
    let ra = sysctl::accept_ra_unless_forwarding();
    sysctl::set_ipv6_forwarding(true).map_err(cannot)?;
    info!("net.ipv6.conf.all.forwarding set to 1 for the IPv6 prefixes (restored at shutdown)");
    if !ra.is_empty() {
        warn!(interfaces = %ra.join(","), "these interfaces stop accepting Router Advertisements while IPv6 forwarding is on (accept_ra = 1); set accept_ra = 2 on them to keep autoconfiguration");
    }
    Ok(Some(false))
}

/// The daemon's data plane and what it installed per binding.
pub struct Installer {
    nl: Arc<Netlink>,
    dp: DataPlane,
    /// RFC 3519 bindings when `dp` is the kernel backend chosen by `auto`:
    /// no kernel tunnel carries IP in UDP with the Tunnel Data header, so
    /// a userspace plane (owning the UDP socket) serves them beside it.
    udp_plane: Option<UserspacePlane>,
    local: Ipv4Addr,
    installed: HashMap<Ipv4Addr, Installed>,
    /// Kernel backend: the `sit` links, one per remote address (the
    /// care-of address, or the IPv4 home address, RFC 5454 §2.2).
    sit_links: SharedLinks<TunnelDevice>,
    /// net.ipv4.ip_forward before we turned it on, restored at shutdown.
    forward_was: Option<bool>,
    /// net.ipv6.conf.all.forwarding likewise.
    forward6_was: Option<bool>,
    /// Kernel backend: datagrams its RFC 3024 ingress rule dropped, as
    /// last read ([`Installer::refresh_counters`]).
    ingress_dropped: Option<u64>,
    /// Kernel backend carrying IPv6 (it has `sit` and the RFC 5454 rule
    /// is installed): IPv6 its rule dropped, as last read.
    ipv6_spoofed: Option<u64>,
    /// Kernel backend: `sit` links a moved binding left, by name, each
    /// removed by its task when [`super::ingress::GRACE`] is over (or
    /// taken back by a binding that tunnels there again).
    lingering: HashMap<String, tokio::task::JoinHandle<()>>,
    /// Counts the changes to what [`Installer::record`] reports, so that
    /// the daemon builds the record only when it changed (not on every
    /// renewal of a million bindings).
    generation: u64,
}

impl Installer {
    /// Starts the configured backend. `udp` is the Mobile IP socket and
    /// where the registrations read from it go: given (RFC 3519 enabled),
    /// the userspace plane owns reads on the socket, keeps tunnel data and
    /// hands everything else to the sink. Returns whether it
    /// took the socket (the kernel backend cannot carry UDP tunnelling).
    ///
    /// `previous` is what an earlier instance recorded: the value of
    /// `ip_forward` it found stays the one restored at shutdown.
    pub async fn start(
        cfg: &HaConfig,
        udp: Option<(Arc<UdpSocket>, ControlSink)>,
        previous: &KernelRecord,
    ) -> Result<(Self, bool), String> {
        let nl = Arc::new(Netlink::new().map_err(|e| format!("netlink: {e}"))?);
        let ucfg = || {
            let mut ucfg = UserspaceConfig::new(&cfg.tunnel_interface, Role::HomeAgent);
            if let Some((sock, tx)) = &udp {
                // One MTU for the device: the smaller, so that neither
                // encapsulation fragments.
                ucfg.mtu = 1500 - UDP_OVERHEAD;
                ucfg.udp = Some(sock.clone());
                ucfg.control = Some(tx.clone());
            }
            ucfg
        };
        let wants_udp = udp.is_some();
        let dp = DataPlane::start(nl.clone(), cfg.tunnel_backend.into(), ucfg())
            .await
            .map_err(|e| format!("cannot start the tunnel data plane: {e}"))?;
        // `auto` took kernel ipip: RFC 3519 bindings get a userspace plane
        // of their own (`kernel` forced declines them instead).
        let udp_plane = if wants_udp
            && dp.backend() == Backend::Kernel
            && cfg.tunnel_backend == TunnelBackend::Auto
        {
            let u = UserspacePlane::start(&nl, ucfg())
                .await
                .map_err(|e| format!("cannot start the userspace plane for RFC 3519: {e}"))?;
            info!(device = %u.ifname(), "RFC 3519 UDP tunnels in the userspace plane, IP in IP in kernel links");
            Some(u)
        } else {
            None
        };
        let took_udp = wants_udp && (dp.backend() == Backend::Userspace || udp_plane.is_some());
        // The HA forwards between its home side and the tunnels.
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
        // An instance killed before its shutdown left it on: the value it
        // found is the one to restore.
        let forward_was = previous.ip_forward_was.or(forward_was);
        let found6 = ipv6_forwarding(cfg)?;
        let forward6_was = previous.ipv6_forwarding_was.or(found6);
        let mut ingress_dropped = None;
        if dp.backend() == Backend::Kernel {
            // The userspace plane checks inner sources itself; kernel ipip
            // links need the rule. Without it the HA would forward spoofed
            // sources into the intranet: no start.
            super::ingress::install().await.map_err(|e| {
                format!(
                    "cannot install the RFC 3024 ingress check for the kernel tunnel backend: {e}"
                )
            })?;
            info!(
                table = super::ingress::CHECK.name,
                "RFC 3024 ingress check: nftables rule on the tunnel links"
            );
            ingress_dropped = Some(0);
        }
        let ipv6_spoofed = if dp.backend() == Backend::Kernel {
            kernel_ipv6(&nl).await
        } else {
            None
        };
        let userspace = match &dp {
            DataPlane::Userspace(u) => Some(u),
            DataPlane::Kernel(_) => udp_plane.as_ref(),
        };
        if let Some(u) = userspace {
            // Reverse-tunnelled datagrams enter through the device with a
            // home address as source; the host route points back into the
            // same device, but a loose/strict filter on "all" must not
            // judge them before the route exists.
            if let Err(e) = sysctl::disable_rp_filter(u.ifname()) {
                warn!("cannot disable rp_filter on {}: {e}", u.ifname());
            }
        }
        Ok((
            Installer {
                nl,
                dp,
                udp_plane,
                local: cfg.home_agent,
                installed: HashMap::new(),
                sit_links: SharedLinks::default(),
                generation: 0,
                forward_was,
                forward6_was,
                ingress_dropped,
                ipv6_spoofed,
                lingering: HashMap::new(),
            },
            took_udp,
        ))
    }

    pub fn backend(&self) -> Backend {
        self.dp.backend()
    }

    /// Backend, tunnels and (userspace) datagram counters.
    pub fn status(&self) -> DataPlaneStatus {
        let mut st = self.dp.status();
        if let Some(u) = &self.udp_plane {
            st.bindings.extend(u.bindings());
            st.counters = st.counters.or(Some(u.counters()));
        }
        st
    }

    /// The data plane's datagram counters for `mip4ctl counters` and
    /// `status`: those of the plane that sees datagrams (the userspace
    /// backend, or the UDP plane beside kernel ipip links), plus what the
    /// kernel backend's ingress rules dropped, under the userspace
    /// counters' names (`inner_address_mismatch`, `ipv6_source_spoofed`).
    pub fn counters(&self) -> Option<serde_json::Value> {
        let seen = match &self.dp {
            DataPlane::Userspace(u) => Some(u.counters()),
            DataPlane::Kernel(_) => self.udp_plane.as_ref().map(|u| u.counters()),
        };
        let mut v = seen.and_then(|c| serde_json::to_value(c).ok());
        for (name, n) in [
            ("inner_address_mismatch", self.ingress_dropped),
            ("ipv6_source_spoofed", self.ipv6_spoofed),
        ] {
            if let Some(n) = n {
                let v = v.get_or_insert_with(|| serde_json::json!({}));
                let userspace = v[name].as_u64().unwrap_or(0);
                v[name] = (userspace + n).into();
            }
        }
        v
    }

    /// Reads the kernel backend's ingress counter again (before a control
    /// answer that shows it); the last value stays if nft fails.
    pub async fn refresh_counters(&mut self) {
        if self.ingress_dropped.is_none() {
            return;
        }
        match super::ingress::CHECK.dropped() {
            Ok(n) => self.ingress_dropped = Some(n),
            Err(e) => warn!("cannot read the RFC 3024 ingress counter: {e}"),
        }
        if self.ipv6_spoofed.is_some() {
            match super::ingress::CHECK6.dropped() {
                Ok(n) => self.ipv6_spoofed = Some(n),
                Err(e) => warn!("cannot read the RFC 5454 ingress counter: {e}"),
            }
        }
    }

    /// Changes whenever [`record`](Self::record) would.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What `i` adds to the record: its proxy ARP entry's home link and
    /// its kernel tunnel links.
    fn recorded(&self, i: &Installed) -> (Option<String>, Vec<String>) {
        let mut links: Vec<String> = (self.dp.backend() == Backend::Kernel
            && i.encapsulation == Encapsulation::IpInIp)
            .then(|| i.device.ifname.clone())
            .into_iter()
            .collect();
        links.extend(i.ipv6_device.as_ref().map(|d| d.ifname.clone()));
        (i.proxy_arp.as_ref().map(|(n, _)| n.clone()), links)
    }

    /// What `home`'s binding adds to the record (nothing when none).
    fn recorded_of(&self, home: Ipv4Addr) -> (Option<String>, Vec<String>) {
        self.installed
            .get(&home)
            .map(|i| self.recorded(i))
            .unwrap_or_default()
    }

    /// Room for `n` bindings' kernel state, now: the daemon sizes it for
    /// every configured node ([`crate::ha::binding::BindingCache::reserve`]).
    pub fn reserve(&mut self, n: usize) {
        self.installed
            .reserve(n.saturating_sub(self.installed.len()));
        self.dp.reserve(n);
    }

    /// What is installed now, for the daemon's record.
    pub fn record(&self) -> KernelRecord {
        let mut proxy_arp: Vec<(String, Ipv4Addr)> = self
            .installed
            .values()
            .filter_map(|i| {
                i.proxy_arp
                    .as_ref()
                    .map(|(n, _)| (n.clone(), i.home_address))
            })
            .collect();
        proxy_arp.sort();
        // The RFC 3519 plane's TUN device is no link of the backend's.
        let mut links: Vec<String> = self
            .installed
            .values()
            .flat_map(|i| self.recorded(i).1)
            .collect();
        links.sort();
        // Shared by the bindings with one care-of address.
        links.dedup();
        KernelRecord {
            ip_forward_was: self.forward_was,
            ipv6_forwarding_was: self.forward6_was,
            proxy_arp,
            links,
        }
    }

    /// Removes what an earlier instance of this daemon left in the kernel
    /// and no binding installed now owns (call after the restored bindings
    /// are installed): the proxy ARP entries and tunnel links of its
    /// record, and kernel tunnel links of this HA's own naming
    /// ([`crate::dataplane::kernel::link_name`], and the `sit` links of
    /// [`crate::dataplane::sit::link_name`]) whose local end is this home
    /// agent (a link made just before a SIGKILL may be in no record). Its
    /// nftables tables were replaced whole at start. Nothing else is
    /// touched.
    pub async fn sweep(&mut self, cfg: &HaConfig, previous: &KernelRecord) {
        for (ifname, home) in &previous.proxy_arp {
            let ours = self.installed.get(home).and_then(|i| i.proxy_arp.as_ref());
            if ours.is_some_and(|(n, _)| n == ifname) {
                continue;
            }
            // A home link that is gone took its entries with it.
            let Ok(ifindex) = self.nl.link_index(ifname).await else {
                continue;
            };
            match self.nl.del_proxy_neighbour(ifindex, *home).await {
                Ok(()) => {
                    info!(home_address = %home, %ifname, "left by an earlier instance: proxy ARP entry removed")
                }
                Err(e) if e.errno() == Some(libc::ENOENT) => {}
                Err(e) => warn!("cannot remove a proxy ARP entry left by an earlier instance: {e}"),
            }
        }
        let links = match self.nl.links().await {
            Ok(l) => l,
            Err(e) => return warn!("cannot list links to remove an earlier instance's: {e}"),
        };
        let mine: Vec<u32> = self
            .installed
            .values()
            .flat_map(|i| {
                std::iter::once(i.device.ifindex).chain(i.ipv6_device.as_ref().map(|d| d.ifindex))
            })
            .collect();
        for (ifindex, name) in links {
            if mine.contains(&ifindex) || sit::remote_of_link(&name).is_none() {
                continue;
            }
            let recorded = previous.links.contains(&name);
            if !recorded {
                match self.nl.tunnel_local(ifindex).await {
                    Ok(Some(local)) if local == cfg.home_agent => {}
                    Ok(_) => continue,
                    Err(e) => {
                        warn!("cannot read link {name}'s endpoints: {e}");
                        continue;
                    }
                }
            }
            match self.nl.delete_link(ifindex).await {
                Ok(()) => info!(link = %name, "left by an earlier instance: tunnel link removed"),
                Err(e) => warn!("cannot remove link {name} left by an earlier instance: {e}"),
            }
        }
    }

    /// How many bindings are installed, and the first `limit` of them by
    /// home address (`status` at a million bindings stays small).
    pub fn installed(&self, limit: usize) -> (usize, Vec<Installed>) {
        let all: Vec<&Installed> = self.installed.values().collect();
        let first = lowest(all, limit, |i| i.home_address);
        (self.installed.len(), first.into_iter().cloned().collect())
    }

    /// How many tunnels the data plane holds, and the first `limit` of
    /// them by home address.
    pub fn tunnels(&self, limit: usize) -> (usize, Vec<crate::dataplane::TunnelBinding>) {
        let all = self.status().bindings;
        (all.len(), lowest(all, limit, |t| t.home))
    }

    /// Starts loading what [`up`](Self::up) reads first of `home`'s
    /// binding (the daemon asks for a batch at once, issue 14 §4).
    pub fn prefetch(&self, home: Ipv4Addr) {
        if let Some(i) = self.installed.get(&home) {
            crate::sys::prefetch::lines(i);
        }
    }

    /// Sets up (or moves) the tunnel, route and proxy ARP of `b`. A
    /// renewal that wants what is installed already asks nothing of the
    /// kernel (RFC 5944 §3.8: a re-registration only refreshes the
    /// lifetime): [`Installed::serves`].
    pub async fn up(&mut self, cfg: &HaConfig, b: &Binding) -> Result<(), String> {
        let home = b.home_address;
        let want = Wanted::of(cfg, b);
        if self.installed.get(&home).is_some_and(|i| i.serves(&want)) {
            debug!(home_address = %home, "binding renewed: tunnel and route in place");
            return Ok(());
        }
        let Wanted {
            encapsulation,
            remote,
            ..
        } = want;
        let tb = TunnelBinding {
            home,
            local: self.local,
            remote,
            encapsulation,
        };
        let device = match (&self.udp_plane, encapsulation) {
            (Some(u), Encapsulation::Udp) => {
                // From kernel ipip to UDP: the link goes.
                remove_tunnel(&mut self.dp, home).await?;
                u.insert(tb)
                    .map_err(|e| format!("tunnel for {home}: {e}"))?;
                TunnelDevice {
                    ifindex: u.ifindex(),
                    ifname: u.ifname().to_string(),
                }
            }
            (u, _) => {
                if let Some(u) = u {
                    u.remove(home);
                }
                // A link left a moment ago: taken back.
                let name = crate::dataplane::kernel::link_name(*remote.ip());
                if let Some(h) = self.lingering.remove(&name) {
                    h.abort();
                }
                self.dp
                    .create(tb)
                    .await
                    .map_err(|e| format!("tunnel for {home}: {e}"))?
            }
        };
        // The link the binding left (a move, its last user): what the
        // node sent through it before the reply still passes there for
        // the grace (`ingress`), added before the route moves.
        let mut grace = false;
        for left in self.dp.take_left() {
            let moved = self.ingress_dropped.is_some()
                && self
                    .installed
                    .get(&home)
                    .is_some_and(|i| i.device.ifindex == left.ifindex);
            let net = ipnet::IpNet::from(ipnet::Ipv4Net::from(home));
            match moved.then(|| super::ingress::grace(&left.ifname, net)) {
                Some(Ok(())) => {
                    grace = true;
                    linger(&self.nl, &mut self.lingering, left);
                }
                other => {
                    if let Some(Err(e)) = other {
                        warn!(home_address = %home, "no grace on {}: {e}", left.ifname);
                    }
                    if let Err(e) = sit::down(&self.nl, &left.ifname).await {
                        warn!(home_address = %home, "cannot remove tunnel {}: {e}", left.ifname);
                    }
                }
            }
        }
        // Virtual home network and home link alike: datagrams for the
        // home address are routed into the tunnel; on a home link the
        // proxy ARP entry below draws them to this host first.
        let route = RouteSpec::to_dev(home, 32, device.ifindex);
        if let Some(old) = self.installed.get(&home) {
            // With the grace the route is replaced below instead (never
            // without one); the old link takes its own along.
            if old.route != route && !grace {
                let _ = self.nl.del_route(&old.route).await;
            }
        }
        self.nl
            .replace_route(&route)
            .await
            .map_err(|e| format!("route for {home}: {e}"))?;
        let was_away = self.installed.contains_key(&home);
        let old_ipv6 = self
            .installed
            .get(&home)
            .and_then(|i| i.ipv6.map(|o| (o, i.ipv6_route_dev())));
        let old_sit = self
            .installed
            .get(&home)
            .and_then(|i| i.ipv6_device.clone());
        // A renewal that changes nothing is no news for the log.
        let same = self
            .installed
            .get(&home)
            .is_some_and(|o| o.remote == remote && o.device.ifindex == device.ifindex);
        // From here the binding has kernel state: remembered now, so that
        // `down` removes it even when a later step fails (the core then
        // denies the registration and drops the binding).
        let old_proxy_arp = self.installed.get(&home).and_then(|o| o.proxy_arp.clone());
        let before = self.recorded_of(home);
        self.installed.insert(
            home,
            Installed {
                home_address: home,
                device: device.clone(),
                encapsulation,
                remote,
                proxy_arp: old_proxy_arp,
                route: route.clone(),
                ipv6: b.ipv6,
                ipv6_device: old_sit.clone(),
            },
        );
        let sit = self
            .ipv6_up(b, encapsulation, old_ipv6, device.ifindex)
            .await;
        if let Some(i) = self.installed.get_mut(&home) {
            i.ipv6_device = sit.as_ref().ok().cloned().flatten();
        }
        sit?;
        if self.recorded_of(home) != before {
            self.generation += 1;
        }
        let mut proxy_arp = None;
        if let Some(net) = cfg.home_network_of(home) {
            if let (HomeNetworkMode::ProxyArp, Some(ifname)) = (net.mode, &net.interface) {
                let ifindex = self
                    .nl
                    .link_index(ifname)
                    .await
                    .map_err(|e| format!("home link {ifname}: {e}"))?;
                // RFC 5944 §4.6: answer ARP for the home address while the
                // node is away.
                self.nl
                    .add_proxy_neighbour(ifindex, home)
                    .await
                    .map_err(|e| format!("proxy ARP for {home} on {ifname}: {e}"))?;
                proxy_arp = Some((ifname.clone(), ifindex));
                if !was_away {
                    // RFC 5944 §4.6: a new binding for a node assumed at
                    // home: gratuitous ARP on its behalf, repeated a few
                    // times since broadcasts may be lost.
                    match self.link_mac(ifindex).await {
                        Ok(mac) => spawn_gratuitous_arp(ifindex, mac, home),
                        Err(e) => warn!("no gratuitous ARP for {home}: {e}"),
                    }
                }
            }
        }
        if same {
            debug!(home_address = %home, "binding renewed: tunnel and route set again");
        } else {
            info!(
                home_address = %home, care_of = %b.care_of_address, %remote,
                device = %device.ifname, ?encapsulation, proxy_arp = proxy_arp.is_some(),
                "binding installed: tunnel and route"
            );
        }
        if let Some(i) = self.installed.get_mut(&home) {
            if i.proxy_arp != proxy_arp {
                i.proxy_arp = proxy_arp;
                self.generation += 1;
            }
        }
        Ok(())
    }

    /// Whether IPv6 (RFC 5454) can be carried: the userspace plane reads
    /// and writes IPv6 in its device and protocol 41; the kernel backend
    /// puts a `sit` link beside each binding's `ipip` link, where the
    /// kernel has `sit` and the RFC 5454 ingress rule could be installed
    /// (without them the core refuses prefixes, code 8).
    pub fn carries_ipv6(&self) -> bool {
        match self.dp {
            DataPlane::Userspace(_) => true,
            DataPlane::Kernel(_) => self.ipv6_spoofed.is_some(),
        }
    }

    /// RFC 5454: the binding's IPv6 prefix routed into the plane that
    /// carries it, or (none) the one it had taken away (§3.8). RFC 3519
    /// bindings and the userspace backend: the userspace plane's device
    /// (`ifindex`), the plane told the prefix. Kernel ipip bindings: the
    /// `sit` link to the care-of or the home address as the node asked
    /// (§2.2, [`sit::endpoints`]), shared with the bindings tunnelling to
    /// that address. Returns that link (none when there is none now; the
    /// one the binding used before goes when it was its last user).
    async fn ipv6_up(
        &mut self,
        b: &Binding,
        encapsulation: Encapsulation,
        old: Option<(Ipv6Binding, u32)>,
        ifindex: u32,
    ) -> Result<Option<TunnelDevice>, String> {
        let home = b.home_address;
        let v6 = b.ipv6;
        let userspace = match (&self.dp, encapsulation) {
            (DataPlane::Userspace(u), _) => Some(u),
            (DataPlane::Kernel(_), Encapsulation::Udp) => self.udp_plane.as_ref(),
            (DataPlane::Kernel(_), Encapsulation::IpInIp) => None,
        };
        let sit = match (userspace, v6) {
            (None, Some(v6)) => {
                let (local, remote) = sit::endpoints(
                    Role::HomeAgent,
                    v6.tunnel_to,
                    home,
                    b.care_of_address,
                    self.local,
                );
                let dev = match self.sit_links.link(remote) {
                    Some(d) => d.clone(),
                    None => {
                        // A link left a moment ago: taken back.
                        if let Some(h) = self.lingering.remove(&sit::link_name(remote)) {
                            h.abort();
                        }
                        sit::up(
                            &self.nl,
                            &sit::link_name(remote),
                            local,
                            remote,
                            DEFAULT_TTL,
                        )
                        .await
                        .map_err(|e| format!("IPv6 tunnel for {home}: {e}"))?
                    }
                };
                Some((remote, dev))
            }
            _ => None,
        };
        let gone = match &sit {
            Some((remote, dev)) => self.sit_links.join(*remote, home, dev.clone()),
            None => self.sit_links.leave(home),
        };
        let sit = sit.map(|(_, d)| d);
        let route_dev = sit.as_ref().map_or(ifindex, |d| d.ifindex);
        // The prefix leaves the old `sit` link (a move): what the node
        // sent that way before it had the reply still passes there for
        // the grace (`ingress`), added before the route moves.
        let old_link = self
            .installed
            .get(&home)
            .and_then(|i| i.ipv6_device.clone());
        let mut grace = false;
        if let (Some((o, dev)), Some(link), Some(_)) = (old, &old_link, self.ipv6_spoofed) {
            // The same prefix on another link (not taken away: then
            // nothing of it passes any more).
            if link.ifindex == dev && dev != route_dev && v6.map(|n| n.prefix) == Some(o.prefix) {
                match super::ingress::grace(&link.ifname, o.prefix.into()) {
                    Ok(()) => grace = true,
                    Err(e) => {
                        warn!(home_address = %home, "no grace for the IPv6 left on {}: {e}", link.ifname)
                    }
                }
            }
        }
        if let Some((o, dev)) = old {
            // With the grace the route is replaced below instead (the
            // prefix never without one); the link takes its own along.
            if (v6.map(|n| n.prefix) != Some(o.prefix) || dev != route_dev) && !grace {
                let _ = self.nl.del_route6(o.prefix, dev).await;
            }
        }
        if let Some(o) = gone {
            if grace {
                linger(&self.nl, &mut self.lingering, o);
            } else if let Err(e) = sit::down(&self.nl, &o.ifname).await {
                warn!(home_address = %home, "cannot remove IPv6 tunnel {}: {e}", o.ifname);
            }
        }
        match userspace {
            Some(u) => u.set_ipv6(home, v6),
            // The kernel backend's userspace UDP plane keeps no IPv6 of a
            // binding that left it.
            None => {
                if let Some(u) = &self.udp_plane {
                    u.set_ipv6(home, None);
                }
            }
        }
        if let Some(v6) = v6 {
            self.nl
                .replace_route6(v6.prefix, route_dev)
                .await
                .map_err(|e| format!("route for {}: {e}", v6.prefix))?;
        }
        Ok(sit)
    }

    /// Removes what `up` installed for `home`; every step is attempted
    /// even if an earlier one fails, and failures are reported together.
    pub async fn down(&mut self, home: Ipv4Addr) -> Result<(), String> {
        let Some(i) = self.installed.remove(&home) else {
            // An `up` that failed half-way (the core then drops the
            // binding) may have left its tunnel.
            if let Some(u) = &self.udp_plane {
                u.remove(home);
            }
            return remove_tunnel(&mut self.dp, home).await;
        };
        if let Some(u) = &self.udp_plane {
            u.remove(home);
        }
        if self.recorded(&i) != (None, Vec::new()) {
            self.generation += 1;
        }
        let mut errors = Vec::new();
        if let Some((ifname, ifindex)) = &i.proxy_arp {
            if let Err(e) = self.nl.del_proxy_neighbour(*ifindex, home).await {
                errors.push(format!("proxy ARP on {ifname}: {e}"));
            }
        }
        if let Some(v6) = i.ipv6 {
            if let Err(e) = self.nl.del_route6(v6.prefix, i.ipv6_route_dev()).await {
                if e.errno() != Some(libc::ESRCH) {
                    errors.push(format!("route {}: {e}", v6.prefix));
                }
            }
        }
        // The binding's `sit` link goes with its last user.
        if let Some(o) = self.sit_links.leave(home) {
            if let Err(e) = sit::down(&self.nl, &o.ifname).await {
                errors.push(format!("IPv6 tunnel {}: {e}", o.ifname));
            }
        }
        if let Err(e) = self.nl.del_route(&i.route).await {
            // Gone already (e.g. the kernel removed it with its device).
            if e.errno() != Some(libc::ESRCH) {
                errors.push(format!("route: {e}"));
            }
        }
        if i.encapsulation == Encapsulation::IpInIp || self.udp_plane.is_none() {
            if let Err(e) = self.dp.remove(home).await {
                errors.push(format!("tunnel: {e}"));
            }
        }
        info!(home_address = %home, device = %i.device.ifname, "binding uninstalled");
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("removing {home}: {}", errors.join("; ")))
        }
    }

    /// Removes everything still installed and restores ip_forward.
    pub async fn shutdown(&mut self) {
        let homes: Vec<Ipv4Addr> = self.installed.keys().copied().collect();
        for h in homes {
            if let Err(e) = self.down(h).await {
                warn!("{e}");
            }
        }
        for (name, task) in self.lingering.drain() {
            task.abort();
            if let Err(e) = sit::down(&self.nl, &name).await {
                warn!("cannot remove IPv6 tunnel {name}: {e}");
            }
        }
        if let Err(e) = self.dp.shutdown().await {
            warn!("tunnel data plane shutdown: {e}");
        }
        // Its TUN device goes with it.
        self.udp_plane = None;
        if self.ingress_dropped.take().is_some() {
            if let Err(e) = super::ingress::CHECK.remove().await {
                warn!("cannot remove the RFC 3024 ingress rule: {e}");
            }
        }
        if self.ipv6_spoofed.take().is_some() {
            if let Err(e) = super::ingress::CHECK6.remove().await {
                warn!("cannot remove the RFC 5454 ingress rule: {e}");
            }
        }
        if let Some(was) = self.forward_was.take() {
            if let Err(e) = sysctl::set_ip_forward(was) {
                warn!("cannot restore net.ipv4.ip_forward: {e}");
            }
        }
        if let Some(was) = self.forward6_was.take() {
            if let Err(e) = sysctl::set_ipv6_forwarding(was) {
                warn!("cannot restore net.ipv6.conf.all.forwarding: {e}");
            }
        }
    }

    async fn link_mac(&self, ifindex: u32) -> Result<[u8; 6], String> {
        use futures::TryStreamExt;
        use netlink_packet_route::link::LinkAttribute;
        let mut s = self.nl.handle().link().get().match_index(ifindex).execute();
        let m = s
            .try_next()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no such link")?;
        m.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(v) if v.len() == 6 => v.as_slice().try_into().ok(),
                _ => None,
            })
            .ok_or_else(|| "the home link has no Ethernet address".to_string())
    }
}

/// The kernel backend's IPv6 (RFC 5454): where the kernel has `sit`, the
/// RFC 5454 ingress rule is installed and its counter starts (`Some(0)`);
/// without either, IPv6 is not carried (the core refuses prefixes, code
/// 8), and a table an earlier instance left goes.
async fn kernel_ipv6(nl: &Netlink) -> Option<u64> {
    if !sit::kernel_has_sit(nl).await {
        info!("this kernel cannot create sit links: no IPv6 in the kernel tunnel backend (IPv6 prefixes refused, RFC 5454 code 8)");
        let _ = super::ingress::CHECK6.remove().await;
        return None;
    }
    match super::ingress::install6().await {
        Ok(()) => {
            info!(
                table = super::ingress::CHECK6.name,
                "RFC 5454 ingress check: nftables rule on the sit links"
            );
            Some(0)
        }
        Err(e) => {
            warn!("cannot install the RFC 5454 ingress check: no IPv6 in the kernel tunnel backend (IPv6 prefixes refused, code 8): {e}");
            None
        }
    }
}

/// Removes the `sit` link `o` once [`super::ingress::GRACE`] is over,
/// unless a binding takes it back first (its task in `lingering` is
/// aborted then).
fn linger(
    nl: &Arc<Netlink>,
    lingering: &mut HashMap<String, tokio::task::JoinHandle<()>>,
    o: TunnelDevice,
) {
    let nl = nl.clone();
    let name = o.ifname.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep(super::ingress::GRACE).await;
        if let Err(e) = sit::down(&nl, &name).await {
            warn!("cannot remove IPv6 tunnel {name}: {e}");
        }
    });
    lingering.retain(|_, t| !t.is_finished());
    if let Some(h) = lingering.insert(o.ifname, task) {
        h.abort();
    }
}

/// Removes the tunnel of `home` from `dp`; none is no error.
async fn remove_tunnel(dp: &mut DataPlane, home: Ipv4Addr) -> Result<(), String> {
    match dp.remove(home).await {
        Ok(()) | Err(crate::dataplane::TunnelError::NoBinding(_)) => Ok(()),
        Err(e) => Err(format!("removing {home}: tunnel: {e}")),
    }
}

/// A gratuitous ARP Request (RFC 5944 §4.6): sender and target protocol
/// address both `ip`, sender hardware address `mac`, target hardware
/// address zero (unused in a Request).
pub fn gratuitous_arp(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // Request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// Broadcasts the gratuitous ARP three times, a second apart, without
/// holding up the registration reply.
fn spawn_gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) {
    let arp = gratuitous_arp(mac, ip);
    tokio::spawn(async move {
        for i in 0..3 {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            if let Err(e) = send_arp_broadcast(ifindex, &arp) {
                warn!(%ip, "gratuitous ARP not sent: {e}");
                return;
            }
        }
    });
}

/// One ARP packet as a link-layer broadcast through a packet socket (the
/// kernel adds the Ethernet header for SOCK_DGRAM).
fn send_arp_broadcast(ifindex: u32, arp: &[u8; 28]) -> std::io::Result<()> {
    PacketSocket::bind(ifindex, ETH_P_ARP, Framing::Datagram)?.send_to(BROADCAST, arp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::binding::Ipv6TunnelTo;
    use std::time::Instant;

    const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
    const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

    fn config(home_link: &str) -> HaConfig {
        let text = format!(
            "home_agent = \"10.1.0.1\"\n[[home_network]]\nprefix = \"10.1.0.0/24\"\n{home_link}\n\
             [[mobile_node]]\nhome_address = \"{HOME}\"\nspi = 256\nkey = \"{}\"\n",
            "00".repeat(16)
        );
        HaConfig::from_source(&crate::config::Source::from_str("mip4-ha.conf", &text)).unwrap()
    }

    fn binding(coa: Ipv4Addr) -> Binding {
        Binding {
            home_address: HOME,
            care_of_address: coa,
            source: SocketAddrV4::new(coa, 434),
            lifetime: 600,
            expires: Instant::now(),
            identification: 1,
            flags: crate::wire::Flags(0),
            reverse_tunnel: false,
            tunnel: TunnelMode::Ipip,
            nai: None,
            ipv6: None,
            spi: 256,
        }
    }

    /// What `up` records once it installed `want` (the device and route
    /// are the kernel's answer; they do not enter the comparison).
    fn installed(want: &Wanted) -> Installed {
        Installed {
            home_address: HOME,
            device: TunnelDevice {
                ifindex: 7,
                ifname: "mip4ha0".into(),
            },
            encapsulation: want.encapsulation,
            remote: want.remote,
            proxy_arp: want.proxy_arp.clone().map(|n| (n, 3)),
            route: RouteSpec::to_dev(HOME, 32, 7),
            ipv6: want.ipv6,
            ipv6_device: None,
        }
    }

    #[test]
    fn a_renewal_that_changes_nothing_asks_nothing_of_the_kernel() {
        let cfg = config("");
        let first = binding(COA);
        let have = installed(&Wanted::of(&cfg, &first));
        // Same care-of address, later identification and expiry: served.
        let renewal = Binding {
            identification: 2,
            expires: first.expires + std::time::Duration::from_secs(600),
            lifetime: 300,
            ..first.clone()
        };
        assert!(have.serves(&Wanted::of(&cfg, &renewal)));
        // Everything that moves the tunnel or a route is not.
        let moved = binding(Ipv4Addr::new(203, 0, 113, 9));
        assert!(!have.serves(&Wanted::of(&cfg, &moved)));
        let udp = Binding {
            tunnel: TunnelMode::Udp,
            ..first.clone()
        };
        assert!(!have.serves(&Wanted::of(&cfg, &udp)));
        let v6 = Binding {
            ipv6: Some(Ipv6Binding {
                prefix: "2001:db8:1::/64".parse().unwrap(),
                tunnel_to: Ipv6TunnelTo::HomeAddress,
            }),
            ..first.clone()
        };
        assert!(!have.serves(&Wanted::of(&cfg, &v6)));
        // The home link became a proxy ARP one (a reload): the entry is due.
        let cfg_arp = config("mode = \"proxy-arp\"\ninterface = \"eth1\"");
        assert!(!have.serves(&Wanted::of(&cfg_arp, &first)));
        let have_arp = installed(&Wanted::of(&cfg_arp, &first));
        assert!(have_arp.serves(&Wanted::of(&cfg_arp, &renewal)));
        assert!(!have_arp.serves(&Wanted::of(&cfg, &renewal)));
    }

    #[test]
    fn behind_a_nat_a_new_mapping_moves_the_udp_tunnel() {
        let cfg = config("");
        let nat = |port| Binding {
            tunnel: TunnelMode::Udp,
            source: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 50), port),
            ..binding(Ipv4Addr::new(10, 9, 0, 2))
        };
        let have = installed(&Wanted::of(&cfg, &nat(4500)));
        assert!(have.serves(&Wanted::of(&cfg, &nat(4500))));
        assert!(!have.serves(&Wanted::of(&cfg, &nat(4501))));
    }

    #[test]
    fn gratuitous_arp_names_the_home_address_twice_and_our_mac() {
        let mac = [2, 0, 0, 0, 0, 9];
        let p = gratuitous_arp(mac, Ipv4Addr::new(10, 1, 0, 10));
        assert_eq!(&p[..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&p[8..14], &mac);
        assert_eq!(&p[14..18], &[10, 1, 0, 10]);
        assert_eq!(&p[18..24], &[0; 6]);
        assert_eq!(&p[24..28], &[10, 1, 0, 10]);
    }
}
