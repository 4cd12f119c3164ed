//! mip4d's loop around the sans-IO [`crate::mn::Node`]: rtnetlink events
//! in, registration datagrams out and in, the node's actions carried out
//! on the kernel, the control socket, and signals (SIGHUP is logged and
//! ignored: no reload). Every decision is the node's; this module only
//! moves things.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use crate::bridge::proto::{self, DaemonMsg, PluginMsg};
use crate::dataplane::source::SharedSources;
use crate::dataplane::{DataPlane, Role, UserspaceConfig};
use crate::mn::guard::Guard;
use crate::mn::node::{Action, NodeEvent, VpnRequest};
use crate::mn::vpn::{PathMtu, VpnInput};
use crate::mn::Node;
use crate::netlink::gateway::{self, NeighbourWatcher};
use crate::netlink::{NetEvent, Netlink, Watcher};

use super::agents::AgentSockets;
use super::config::MnConfig;
use super::events::{Clock, EventBus};
use super::kernel::Installer;
use super::plugin::{self, PluginInput};
use super::probe::ProbeSockets;
use super::sockets::Sockets;
use crate::daemons::control;
use crate::daemons::wake::{hangup_ignored, sleep_until, Hangup, StopSignals};

/// Interfaces that are never attachments: loopback and our own tunnels.
fn is_own(cfg: &MnConfig, ifname: &str) -> bool {
    ifname == "lo"
        || ifname == cfg.tunnel_device
        // The kernel backend's ipip links (crate::dataplane::kernel).
        || ifname.starts_with("mip4-")
}

/// Whether an address there may be the outer source of the userspace
/// planes' datagrams: any interface's but our tunnels', and on loopback
/// any but the home address (mode 'f' keeps it there, and it is never an
/// outer source): charon puts the TIA on loopback with
/// `charon.install_virtual_ip_on = lo` (packaging/strongswan.d), and the
/// RFC 3519 tunnel leaves from it.
fn is_outer_source(cfg: &MnConfig, ifname: &str, a: Ipv4Addr) -> bool {
    if ifname == "lo" {
        return a != cfg.node.registration.home_address;
    }
    !is_own(cfg, ifname)
}

/// At most this many rtnetlink events reach the node before the daemon
/// carries out what they asked (a flood cannot hold the actions back).
const NET_BATCH: usize = 64;

/// The daemon's state, owned by the main loop.
pub(super) struct Daemon {
    pub(super) cfg: MnConfig,
    pub(super) node: Node,
    nl: Arc<Netlink>,
    pub(super) installer: Installer,
    pub(super) sockets: Sockets,
    /// Trusted-network detection probes (bypassing the VPN).
    pub(super) probes: ProbeSockets,
    /// Agent discovery (mode 'f').
    pub(super) agents: AgentSockets,
    pub(super) bus: EventBus,
    /// The current plugin connection (the newest) and its writer, for
    /// requests to charon (the probe bypass and the VPN actions).
    pub(super) plugin: Option<(u64, tokio::net::unix::OwnedWriteHalf)>,
    pub(super) plugin_msgs: u64,
    /// Ids of requests to charon (initiate/terminate the VPN, roam), and
    /// how many were sent.
    pub(super) plugin_requests: u64,
    /// Roam requests the plugin has not answered yet.
    roams: plugin::RoamsPending,
    /// Protocol version of the connected plugin (its Hello).
    plugin_version: u32,
    /// Deployment warnings in force (status, events, log).
    pub(super) guard: Guard,
    /// Each interface's default gateway: ifindex -> (gateway, ifname).
    gateways: HashMap<u32, (std::net::Ipv4Addr, String)>,
    /// The rtnetlink events (addresses, routes, links).
    net: Watcher,
    /// A route appeared since [`Daemon::routes_added`] last ran.
    routes_seen: bool,
    /// The event socket closed (the daemon stops).
    net_closed: bool,
    /// The node's actions taken but not carried out yet.
    pending: VecDeque<Action>,
}

/// The next of the node's actions to carry out: a roam request before
/// the kernel changes queued ahead of it. charon's kernel-netlink queues
/// its own roam job 100 ms after a move's first address event, and the
/// kernel changes (the home address's source routes) take tens of ms of
/// netlink round trips each on a slow machine. A roam only moves an
/// existing IKE_SA towards its gateway, a route none of them touches;
/// everything else keeps the node's order.
///
/// What a later queued action makes moot is dropped, not carried out:
/// the same roam request queued twice (a move's old address going, then
/// its default route, both read in one batch) goes to charon once, and a
/// home-address-source change followed at once by another (the old
/// access network's exclusion going, the new one's coming) is made only
/// as the later one asks: each costs netlink round trips while charon's
/// move waits for the CPU.
fn next_action(pending: &mut VecDeque<Action>) -> Option<Action> {
    if let Some(i) = pending.iter().position(is_roam) {
        let roam = pending.remove(i)?;
        pending.retain(|a| *a != roam);
        return Some(roam);
    }
    loop {
        let a = pending.pop_front()?;
        if !(is_home_source(&a) && pending.front().is_some_and(is_home_source)) {
            return Some(a);
        }
    }
}

fn is_roam(a: &Action) -> bool {
    matches!(a, Action::Vpn(VpnRequest::Roam { .. }))
}

/// [`crate::daemons::mn::kernel::Installer`] makes the table of the home
/// address as source what the newest of these asks, whatever it held.
fn is_home_source(a: &Action) -> bool {
    matches!(a, Action::HomeAddressSource { .. })
}

impl Daemon {
    /// Carries out what the node asked: actions first (the tunnel must be
    /// gone before a deregistration from home leaves), then datagrams,
    /// then the events.
    ///
    /// Before each action the node hears of the rtnetlink events queued
    /// meanwhile: a move's default route, which the roam decision waits
    /// for, arrives while the kernel changes its address asked for (the
    /// home address's source routes) are being made, and the roam request
    /// it allows then leaves before the rest of them ([`next_action`]).
    async fn flush(&mut self) {
        loop {
            self.take_pending();
            if self.pending.is_empty() {
                break;
            }
            // The runtime has one thread: the event socket's reader runs
            // only when this task waits, so it gets its turn before each
            // action (and with it the route a move's address came with).
            // A roam already decided waits for nothing more and goes
            // first: it leaves before the other tasks' turn (the event
            // subscribers' writes).
            if !self.pending.iter().any(is_roam) {
                tokio::task::yield_now().await;
                self.take_pending();
            }
            if self.source_changes_wait() {
                break;
            }
            let Some(a) = next_action(&mut self.pending) else {
                break;
            };
            self.carry_out(a).await;
        }
        // Probes first: on a move the probe and the MOBIKE update race
        // (RFC 5266 §3.4), and nothing here waits for charon.
        while let Some(p) = self.node.poll_probe_transmit() {
            if self.probes.send(&p, p.fallback_ifname.as_deref()).await {
                self.node.transmit_parked(p.transmit.identification);
            }
        }
        while let Some(t) = self.node.poll_transmit() {
            if self.sockets.send(&t).await {
                self.node.transmit_parked(t.identification);
            }
        }
        while let Some(ifname) = self.node.poll_solicitation() {
            self.agents.solicit(&ifname);
        }
        while let Some((at, e)) = self.node.poll_event() {
            self.bus.publish(at, e);
        }
    }

    /// Whether what is left to carry out, changes of the home address's
    /// source table only, waits for charon's answer to a roam request
    /// (or [`plugin::ROAM_ANSWER_WITHIN`]). A move's address events ask
    /// for them (the new access network's exclusion in, the old one's
    /// out), and on a slow machine they took the CPU between the new
    /// address and the default route's roam request, whose update charon
    /// then built later: the roam goes first, the exclusions while the
    /// update is in flight. Nothing else waits behind them.
    fn source_changes_wait(&mut self) -> bool {
        !self.pending.is_empty()
            && self.pending.iter().all(is_home_source)
            && self.roams.any_pending(Instant::now())
    }

    /// When held source-table changes are carried out without an answer.
    fn held_until(&self) -> Option<Instant> {
        (!self.pending.is_empty())
            .then(|| self.roams.deadline())
            .flatten()
    }

    /// The node's actions after it heard of the events queued meanwhile.
    fn take_pending(&mut self) {
        self.take_net_events(None);
        self.pending
            .extend(std::iter::from_fn(|| self.node.poll_action()));
    }

    /// Feeds the node `first` (if any) and the rtnetlink events already
    /// queued, a bounded batch (a flood cannot hold the actions back),
    /// without waiting for more.
    fn take_net_events(&mut self, first: Option<NetEvent>) {
        let mut next = first;
        for _ in 0..NET_BATCH {
            let ev = match next.take() {
                Some(ev) => ev,
                None if self.net_closed => return,
                None => match self.net.next().now_or_never() {
                    Some(Some(ev)) => ev,
                    Some(None) => {
                        self.net_closed = true;
                        return;
                    }
                    None => return,
                },
            };
            debug!(event = ?ev, "rtnetlink");
            match ev {
                NetEvent::RouteAdded {
                    table, prefix_len, ..
                } => {
                    self.routes_seen = true;
                    if table == crate::netlink::route::TABLE_MAIN && prefix_len == 0 {
                        self.node.default_route_added(Instant::now());
                    }
                }
                ev => self.net_event(Instant::now(), ev),
            }
        }
    }

    /// Carries out one of the node's actions.
    async fn carry_out(&mut self, a: Action) {
        debug!(action = ?a, "carrying out");
        if let Action::Vpn(r) = &a {
            self.vpn_request(r).await;
            return;
        }
        if let Action::TunnelUp { care_of, .. } = &a {
            // RFC 3519: tunnel data shares the registration's socket
            // (and so the NAT's mapping).
            match self.sockets.socket(Some(*care_of)) {
                Ok(s) => self.installer.set_udp_socket(Some(&s)),
                Err(e) => {
                    warn!(%care_of, error = %e, "no registration socket for the tunnel");
                    self.installer.set_udp_socket(None);
                }
            }
        }
        if let Err(e) = self.installer.apply(&a).await {
            error!(action = ?a, error = %e, "kernel change failed");
        }
        if let Action::UdpTunnel { .. } = &a {
            self.sockets.set_sink(self.installer.udp_sink());
        }
    }

    /// Asks charon, through the plugin, to initiate or terminate the VPN.
    async fn vpn_request(&mut self, r: &VpnRequest) {
        use tokio::io::AsyncWriteExt;
        let action = match r {
            VpnRequest::Initiate { connection } => proto::Action::Initiate {
                connection: connection.clone(),
            },
            VpnRequest::Terminate { connection } => proto::Action::Terminate {
                connection: connection.clone(),
            },
            VpnRequest::Roam { connection } => {
                if self.plugin_version < proto::ROAM_VERSION {
                    // charon's own roam follows after its delay.
                    debug!(
                        version = self.plugin_version,
                        "the plugin cannot roam on request"
                    );
                    return;
                }
                let now = Instant::now();
                if let Some(id) = self
                    .roams
                    .holding_back(now, connection, self.plugin_version)
                {
                    info!(
                        id,
                        connection, "roam not asked again: charon still works on the request"
                    );
                    return;
                }
                proto::Action::Roam {
                    connection: connection.clone(),
                }
            }
        };
        let Some((_, writer)) = self.plugin.as_mut() else {
            warn!(request = ?r, "no charon plugin connected: VPN request not sent");
            return;
        };
        self.plugin_requests += 1;
        let msg = DaemonMsg::Request {
            id: self.plugin_requests,
            action,
        };
        match proto::encode(&msg) {
            Ok(frame) => {
                if let Err(e) = writer.write_all(&frame).await {
                    warn!(error = %e, "sending a VPN request to the plugin failed");
                } else {
                    info!(id = self.plugin_requests, request = ?r, "VPN request sent to charon");
                    if let VpnRequest::Roam { connection } = r {
                        self.roams
                            .sent(Instant::now(), self.plugin_requests, connection);
                    }
                }
            }
            Err(e) => warn!(error = %e, "encoding a VPN request failed"),
        }
    }

    /// A route appeared: requests held for want of one go out now.
    async fn routes_added(&mut self) {
        debug!("a route appeared: held requests, gateways");
        for p in self.probes.route_added().await {
            self.node
                .transmit_left(Instant::now(), p.transmit.identification);
            self.bus.publish(
                Instant::now(),
                NodeEvent::RequestSentOnRoute {
                    src: p.transmit.src,
                    dst: p.transmit.dst,
                },
            );
        }
        for t in self.sockets.route_added().await {
            self.node.transmit_left(Instant::now(), t.identification);
            self.bus.publish(
                Instant::now(),
                NodeEvent::RequestSentOnRoute {
                    src: t.src,
                    dst: t.dst,
                },
            );
        }
        self.refresh_gateways().await;
    }

    fn net_event(&mut self, now: Instant, ev: NetEvent) {
        // The planes' outer sources first: a care-of address that went
        // sends nothing more, whatever the node makes of it.
        match &ev {
            NetEvent::AddressAdded {
                ifindex,
                ifname,
                addr: IpAddr::V4(a),
                ..
            } if is_outer_source(&self.cfg, ifname, *a) => {
                self.installer.outer_address(*ifindex, *a, true)
            }
            NetEvent::AddressRemoved {
                ifindex,
                ifname,
                addr: IpAddr::V4(a),
                ..
            } if is_outer_source(&self.cfg, ifname, *a) => {
                self.installer.outer_address(*ifindex, *a, false)
            }
            _ => {}
        }
        match ev {
            NetEvent::AddressAdded {
                ifname,
                addr,
                prefix_len,
                ..
            } if !is_own(&self.cfg, &ifname) => match addr {
                IpAddr::V4(a) => self.node.address_added(now, &ifname, a, prefix_len),
                IpAddr::V6(a) => self.node.ipv6_address_added(now, &ifname, a),
            },
            NetEvent::AddressRemoved { ifname, addr, .. } if !is_own(&self.cfg, &ifname) => {
                match addr {
                    IpAddr::V4(a) => {
                        self.node.address_removed(now, &ifname, a);
                        self.sockets.forget(a);
                        self.probes.forget(a);
                    }
                    IpAddr::V6(a) => self.node.ipv6_address_removed(now, &ifname, a),
                }
            }
            NetEvent::Ipv6DefaultRoute { added } => self.node.ipv6_default_route(now, added),
            NetEvent::LinkUp { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.link_up(now, &ifname)
            }
            NetEvent::LinkDown { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.node.link_down(now, &ifname)
            }
            NetEvent::LinkRemoved { ifname, .. } if !is_own(&self.cfg, &ifname) => {
                self.agents.forget(&ifname);
                self.node.link_removed(now, &ifname)
            }
            _ => {}
        }
    }

    async fn plugin_input(&mut self, now: Instant, input: PluginInput) {
        match input {
            PluginInput::Connected { conn, writer } => {
                // A newer connection supersedes (a restarted charon);
                // the old one's answers never come.
                self.plugin = Some((conn, writer));
                self.roams.clear();
            }
            PluginInput::Gone { conn, reason } => {
                if self.plugin.as_ref().is_some_and(|(c, _)| *c == conn) {
                    self.plugin = None;
                    self.roams.clear();
                    self.node.plugin_disconnected(now, &reason);
                }
            }
            PluginInput::Msg { conn, msg } => {
                if self.plugin.as_ref().is_none_or(|(c, _)| *c != conn) {
                    return;
                }
                self.plugin_msgs += 1;
                self.guard_plugin_msg(now, &msg);
                if let PluginMsg::Hello { agent, version, .. } = &msg {
                    self.plugin_version = *version;
                    self.node.plugin_connected(now, agent);
                    return;
                }
                if let PluginMsg::ActionResult { id, status, .. } = &msg {
                    info!(id, ?status, "charon answered a request");
                    self.roams.answered(*id);
                    return;
                }
                let Some(mut input) = plugin::to_input(&msg) else {
                    return;
                };
                self.add_mtus(&mut input).await;
                self.node.vpn_input(now, input);
            }
        }
    }

    /// Fills in the MTUs of the path (physical interface, TIA device) the
    /// node sizes the tunnel from.
    async fn add_mtus(&self, input: &mut VpnInput) {
        match input {
            VpnInput::TiaAssigned(sa) | VpnInput::Up(sa) => {
                sa.mtu = match self.node.vpn_view().known_path_mtu(sa) {
                    Some(known) => known,
                    None => self.path_mtu(sa.local_ifname.as_deref(), sa.tia).await,
                };
            }
            VpnInput::Snapshot(sas) => {
                for sa in sas.iter_mut() {
                    sa.mtu = self.path_mtu(sa.local_ifname.as_deref(), sa.tia).await;
                }
            }
            VpnInput::Moved {
                ike_sa,
                local_ifname,
                mtu,
                ..
            } => {
                let tia = self
                    .node
                    .vpn_view()
                    .sas()
                    .iter()
                    .find(|s| s.ike_sa == *ike_sa)
                    .and_then(|s| s.tia);
                *mtu = self.path_mtu(local_ifname.as_deref(), tia).await;
            }
            _ => {}
        }
    }

    async fn path_mtu(&self, ifname: Option<&str>, tia: Option<std::net::Ipv4Addr>) -> PathMtu {
        // One request gives the physical link's index and MTU.
        let link = match ifname {
            Some(n) => self.nl.link_index_mtu(n).await.ok(),
            None => None,
        };
        let physical = link.and_then(|(_, mtu)| mtu);
        let mut tia_device = None;
        if let Some(tia) = tia {
            if let Ok(addrs) = self.nl.list_addresses(None).await {
                if let Some(a) = addrs.iter().find(|a| a.addr == tia) {
                    if link.map(|(index, _)| index) != Some(a.ifindex) {
                        tia_device = link_mtu(&self.nl, a.ifindex).await;
                    }
                }
            }
        }
        // The outer family follows the IKE_SA's endpoint (VpnView).
        PathMtu {
            physical,
            tia_device,
            outer_ipv6: false,
        }
    }

    /// Learns each interface's default gateway and its MAC for the node
    /// (its verdict cache and `never_probe` by MAC): the main table's
    /// default routes, then the neighbour table; an unresolved gateway
    /// gets one datagram, and the neighbour watcher reports its MAC.
    /// Only with detection: without a probe there is nothing to spare.
    async fn refresh_gateways(&mut self) {
        if self.node.detector().is_none() {
            return;
        }
        let routes = match self.nl.default_gateways().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "reading the default routes failed");
                return;
            }
        };
        self.gateways.clear();
        for (ifindex, gw) in routes {
            let Ok(name) = self.nl.link_name(ifindex).await else {
                continue;
            };
            let watched = &self.cfg.node.interfaces;
            if is_own(&self.cfg, &name) || !(watched.is_empty() || watched.contains(&name)) {
                continue;
            }
            self.gateways.insert(ifindex, (gw, name.clone()));
            match self.nl.neighbour_mac(ifindex, gw).await {
                Ok(Some(mac)) => self.node.gateway_learned(Instant::now(), &name, Some(mac)),
                _ => {
                    if let Err(e) = gateway::resolve(&name, gw) {
                        warn!(ifname = %name, gateway = %gw, error = %e, "resolving the gateway failed");
                    }
                }
            }
        }
    }

    /// A resolved neighbour: the MAC of a default gateway, if it is one.
    fn neighbour(&mut self, ifindex: u32, addr: std::net::Ipv4Addr, mac: [u8; 6]) {
        if let Some((gw, name)) = self.gateways.get(&ifindex) {
            if *gw == addr {
                let name = name.clone();
                self.node.gateway_learned(Instant::now(), &name, Some(mac));
            }
        }
    }

    /// Feeds the node what the kernel has now (after the watcher is up,
    /// so nothing falls between the dump and the first event; repeats
    /// are ignored by the node).
    async fn initial_dump(&mut self, nl: &Netlink, now: Instant) -> Result<(), String> {
        if nl.has_ipv6_default_route().await.unwrap_or(false) {
            self.node.ipv6_default_route(now, true);
        }
        let addrs = nl
            .list_if_addresses(None)
            .await
            .map_err(|e| e.to_string())?;
        let mut names: HashMap<u32, String> = HashMap::new();
        for a in addrs {
            let name = match names.get(&a.ifindex) {
                Some(n) => n.clone(),
                None => {
                    let n = nl.link_name(a.ifindex).await.map_err(|e| e.to_string())?;
                    names.insert(a.ifindex, n.clone());
                    n
                }
            };
            if let IpAddr::V4(v4) = a.addr {
                if is_outer_source(&self.cfg, &name, v4) {
                    self.installer.outer_address(a.ifindex, v4, true);
                }
            }
            if is_own(&self.cfg, &name) {
                continue;
            }
            if let Ok(st) = nl.link_state(a.ifindex).await {
                if !st.is_running() {
                    self.node.link_down(now, &name);
                }
            }
            match a.addr {
                IpAddr::V4(v4) => self.node.address_added(now, &name, v4, a.prefix_len),
                IpAddr::V6(v6) => self.node.ipv6_address_added(now, &name, v6),
            }
        }
        Ok(())
    }
}

/// The MTU of link `index` (rtnetlink; the link module has no getter
/// for it).
pub(super) async fn link_mtu(nl: &Netlink, index: u32) -> Option<u32> {
    use futures::TryStreamExt;
    use netlink_packet_route::link::LinkAttribute;
    let mut s = nl.handle().link().get().match_index(index).execute();
    let m = s.try_next().await.ok()??;
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// Started: what start-up alone used leaves the resident set (issue 14
/// §5). The binary's and libraries' code pages are unmapped, to fault
/// back in from the page cache as the loop runs them (crate::sys::resident
/// says why that loses nothing): what stays resident is the code idle and
/// a move run, however the linker laid it out. Then the heap's free pages
/// go back to the kernel.
fn release_start_up_memory() {
    match crate::sys::resident::release_clean_file_pages() {
        Ok(kib) => debug!(kib, "start-up's code pages unmapped"),
        Err(e) => debug!(error = %e, "start-up's code pages kept"),
    }
    // After the release, which reads /proc/self/smaps into the heap.
    crate::sys::malloc::trim();
}

/// Runs mip4d until SIGTERM or SIGINT.
pub async fn run(cfg: MnConfig) -> Result<(), String> {
    let clock = Clock::now();
    let bus = EventBus::new(clock);
    let nl = Arc::new(Netlink::new().map_err(|e| format!("netlink: {e}"))?);
    let net = Watcher::new().map_err(|e| format!("netlink watcher: {e}"))?;
    // What the userspace plane may send from: fed the addresses below
    // (the initial dump, then every event) before the node hears of them.
    let outer = SharedSources::default();
    let mut dp_cfg = UserspaceConfig::new(&cfg.tunnel_device, Role::MobileNode);
    dp_cfg.sources = Some(outer.clone());
    let dp = DataPlane::start(nl.clone(), cfg.tunnel_backend, dp_cfg)
        .await
        .map_err(|e| format!("tunnel data plane: {e}"))?;
    let installer = Installer::new(
        nl.clone(),
        dp,
        outer,
        &cfg.tunnel_device,
        cfg.routing_table,
        cfg.rule_priority,
    );
    installer.sweep(cfg.node.registration.home_address).await;
    if let Some(d) = &cfg.node.dsmipv4 {
        installer.sweep_ipv6(&d.routes).await;
    }
    let mut node_cfg = cfg.node.clone();
    node_cfg.with_charon = cfg.plugin_socket.is_some();
    let node = Node::new(node_cfg, clock.instant(), clock.wall())
        .map_err(|e| format!("registration settings: {e}"))?;
    // Gateways' MACs serve trusted-network detection only (its verdict
    // cache, `never_probe`): without it, no neighbour event is read, and
    // a move's (the old network's entries going, the new gateway's
    // coming) costs no system call. Up before the first look at the
    // neighbour table (refresh_gateways), so none falls between.
    let mut neighbours = match node.detector() {
        Some(_) => {
            Some(NeighbourWatcher::new().map_err(|e| format!("netlink neighbour watcher: {e}"))?)
        }
        None => None,
    };
    let (rx_tx, mut replies) = mpsc::channel(256);
    let (adv_tx, mut adverts) = mpsc::channel(64);
    let (q_tx, mut queries) = mpsc::channel(16);
    let control = control::Server {
        daemon: "mip4d",
        queries: q_tx,
        events: Some(bus.subscriptions()),
    }
    .serve(&cfg.control_socket)
    .map_err(|e| format!("control socket {}: {e}", cfg.control_socket.display()))?;
    let (p_tx, mut plugin_rx) = mpsc::channel(256);
    let plugin_task = match &cfg.plugin_socket {
        Some(path) => Some(
            plugin::serve(path, p_tx)
                .map_err(|e| format!("plugin socket {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut stop = StopSignals::new()?;
    let mut hup = Hangup::new()?;
    let mut d = Daemon {
        node,
        nl: nl.clone(),
        plugin: None,
        plugin_msgs: 0,
        plugin_requests: 0,
        roams: plugin::RoamsPending::default(),
        plugin_version: 0,
        guard: Guard::new(),
        gateways: HashMap::new(),
        net,
        routes_seen: false,
        net_closed: false,
        pending: VecDeque::new(),
        installer,
        probes: ProbeSockets::new(nl.clone(), rx_tx.clone()),
        agents: AgentSockets::new(adv_tx),
        sockets: Sockets::new(rx_tx),
        bus,
        cfg,
    };
    info!(
        home_address = %d.node.client().home_address(),
        home_agent = %d.node.client().home_agent(),
        backend = %d.installer.data_plane().status().backend,
        control_socket = %d.cfg.control_socket.display(),
        plugin_socket = ?d.cfg.plugin_socket,
        "mip4d started"
    );
    let dump = d.initial_dump(&nl, Instant::now()).await;
    if let Err(e) = dump {
        warn!(error = %e, "reading the current addresses failed; waiting for events");
    }
    d.refresh_gateways().await;
    d.flush().await;
    release_start_up_memory();

    let mut shutdown_deadline: Option<Instant> = None;
    let result = loop {
        let wake = [d.node.poll_timeout(), shutdown_deadline, d.held_until()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            ev = d.net.next() => match ev {
                // The queued events reach the node before any is carried
                // out (`take_net_events`, and `flush` between actions).
                Some(ev) => d.take_net_events(Some(ev)),
                None => d.net_closed = true,
            },
            Some((ifindex, addr, mac)) = async {
                match neighbours.as_mut() {
                    Some(n) => n.next().await,
                    None => std::future::pending().await,
                }
            } => d.neighbour(ifindex, addr, mac),
            Some((from, payload)) = replies.recv() => {
                d.node.handle_datagram(Instant::now(), from, &payload);
            }
            Some((ifname, from, icmp)) = adverts.recv() => {
                d.node.agent_advertisement(Instant::now(), &ifname, from, &icmp);
            }
            Some((req, tx)) = queries.recv() => {
                let _ = tx.send(d.answer(req));
            }
            () = hup.recv() => hangup_ignored("mip4d"),
            Some(input) = plugin_rx.recv() => {
                d.plugin_input(Instant::now(), input).await;
            }
            () = sleep_until(wake) => {
                let now = Instant::now();
                if shutdown_deadline.is_some_and(|t| now >= t) {
                    d.node.finish(now, "no answer to the deregistration within shutdown_timeout_ms");
                } else {
                    if let Some(n) = d.installer.udp_received() {
                        d.node.udp_tunnel_received(n);
                    }
                    d.node.handle_timeout(now);
                    if d.node.take_resolve_gateways() {
                        d.refresh_gateways().await;
                    }
                }
            }
            s = stop.recv(), if shutdown_deadline.is_none() => {
                info!("{s}: shutting down");
                let now = Instant::now();
                shutdown_deadline = Some(now + d.cfg.shutdown_timeout);
                d.node.shutdown(now, d.cfg.deregister_on_shutdown);
            }
        }
        d.flush().await;
        if std::mem::take(&mut d.routes_seen) {
            d.routes_added().await;
            d.flush().await;
        }
        if d.net_closed {
            break Err("the netlink event socket closed".to_string());
        }
        if d.node.is_stopped() {
            break Ok(());
        }
    };
    control.abort();
    if let Some(t) = plugin_task {
        t.abort();
    }
    d.installer.remove_all().await;
    let _ = std::fs::remove_file(&d.cfg.control_socket);
    if let Some(p) = &d.cfg.plugin_socket {
        let _ = std::fs::remove_file(p);
    }
    info!("mip4d stopped");
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The TIA on loopback (`charon.install_virtual_ip_on = lo`) is an
    /// outer source of the RFC 3519 tunnel; the home address there (mode
    /// 'f') and the tunnel devices' addresses never are.
    #[test]
    fn loopback_addresses_but_the_home_address_are_outer_sources() {
        let cfg = MnConfig::from_source(&crate::config::Source::from_str(
            "mip4d.conf",
            "home_address = \"10.1.100.5\"\nhome_agent = \"10.1.1.2\"\nspi = 4096\n\
             key = \"00112233445566778899aabbccddeeff\"\n",
        ))
        .unwrap();
        let tia = Ipv4Addr::new(10, 200, 0, 1);
        assert!(is_outer_source(&cfg, "lo", tia));
        assert!(is_outer_source(&cfg, "eth0", tia));
        assert!(!is_outer_source(&cfg, "lo", Ipv4Addr::new(10, 1, 100, 5)));
        assert!(!is_outer_source(&cfg, &cfg.tunnel_device, tia));
        assert!(!is_outer_source(&cfg, "mip4-0a016405", tia));
    }

    fn roam(c: &str) -> Action {
        Action::Vpn(VpnRequest::Roam {
            connection: c.into(),
        })
    }

    /// A move's kernel changes were queued by its address event; the roam
    /// request its default route allowed, queued after them, leaves first,
    /// and the kernel changes then follow in the node's order.
    #[test]
    fn a_roam_request_leaves_before_the_kernel_changes_queued_ahead_of_it() {
        let source = Action::HomeAddressSource { source: None };
        let initiate = Action::Vpn(VpnRequest::Initiate {
            connection: "home".into(),
        });
        let mut pending: VecDeque<Action> =
            [source.clone(), initiate.clone(), roam("a"), roam("b")].into();
        let order: Vec<Action> = std::iter::from_fn(|| next_action(&mut pending)).collect();
        assert_eq!(order, [roam("a"), roam("b"), source, initiate]);
    }

    /// One batch of a move's events (the old address gone, the new one
    /// and its default route) queued the same roam twice and two
    /// source-table changes in a row: charon hears the roam once, the
    /// table is changed once, as the later asks; what comes between or
    /// after keeps its place.
    #[test]
    fn a_move_batch_sends_one_roam_and_makes_only_the_last_source_change() {
        use crate::mn::node::HomeSource;
        let source = |exclude: &str| Action::HomeAddressSource {
            source: Some(HomeSource {
                home: "10.1.100.5".parse().unwrap(),
                prefixes: vec!["0.0.0.0/0".parse().unwrap()],
                exclude: vec![exclude.parse().unwrap()],
            }),
        };
        let (old, new, last) = (
            source("10.1.1.2/32"),
            source("192.168.1.0/24"),
            source("192.0.2.0/24"),
        );
        let down = Action::TunnelDown {
            home: "10.1.100.5".parse().unwrap(),
        };
        let mut pending: VecDeque<Action> = [
            roam("vpn"),
            old,
            new.clone(),
            roam("vpn"),
            down.clone(),
            last.clone(),
        ]
        .into();
        let order: Vec<Action> = std::iter::from_fn(|| next_action(&mut pending)).collect();
        assert_eq!(order, [roam("vpn"), new, down, last]);
    }
}
