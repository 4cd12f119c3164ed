//! What the node asks of the daemon: kernel changes and VPN requests.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// What the daemon must do to the kernel, or ask of charon. The daemon
/// carries out every action the node queued before it sends the
/// datagrams queued with them: an action may prepare a datagram's path
/// ([`Action::DirectToHomeAgent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the tunnel of `home`, or move it: outer source `care_of`,
    /// outer destination `home_agent`; the home address on the tunnel
    /// device; traffic from the home address routed into it when
    /// `reverse_tunnel` (RFC 3024), with the outer datagrams on the
    /// physical route.
    TunnelUp {
        home: Ipv4Addr,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        reverse_tunnel: bool,
    },
    /// RFC 3519: the home agent granted UDP tunnelling (`Some`, with the
    /// keepalive interval in seconds, 0 for the default of §3.2) or not
    /// (`None`: IP in IP). Queued before the [`Action::TunnelUp`] of the
    /// registration that decided it, and applies to it and every later
    /// tunnel of `home` until changed; sent only when it changes.
    UdpTunnel {
        home: Ipv4Addr,
        keepalive: Option<u16>,
    },
    /// Remove the tunnel of `home` and everything installed with it.
    TunnelDown { home: Ipv4Addr },
    /// Set the MTU of the tunnel device of `home` (mode 'mc': the tunnel
    /// runs inside ESP and must not fragment, see [`PathMtu`](crate::mn::vpn::PathMtu)).
    TunnelMtu { home: Ipv4Addr, mtu: u32 },
    /// Hold the home address's traffic: the mode is not decided (RFC
    /// 5266 §3.4 last paragraph, RFC 5265 §3.2.2). The daemon makes the
    /// home address's route a blackhole until [`Action::ReleaseTraffic`].
    HoldTraffic { home: Ipv4Addr },
    /// The path is decided again: route the home address's traffic into
    /// the tunnel. A no-op without a tunnel.
    ReleaseTraffic { home: Ipv4Addr },
    /// `Some`: add a rule `to <home_agent> lookup main`, ordered after
    /// the home address's own rule and before charon's (priority 220);
    /// `None`: remove it. Mode 'c' with a VPN kept up inside (RFC 5266
    /// §3.4.2: it MAY stay): charon's routes would catch datagrams to the
    /// intranet, the home agent among them, and its policies (for the
    /// TIA) drop what leaves from the physical care-of address: the
    /// tunnel's outer datagrams and the renewals. Mode 'mc' needs the
    /// rule gone before anything leaves from the TIA, which must take
    /// charon's routes. Only with a charon plugin
    /// ([`NodeConfig::with_charon`](super::NodeConfig::with_charon)).
    DirectToHomeAgent { home_agent: Option<Ipv4Addr> },
    /// `Some`: connections the node opens without a source address take
    /// the home address as their source ([`HomeSource`]); `None`: remove
    /// that, the kernel chooses as it would without mip4d.
    HomeAddressSource { source: Option<HomeSource> },
    /// `Some`: while the care-of address is the TIA (mode 'mc'), refuse
    /// in the kernel what would leave outside ESP when the VPN's routes
    /// are gone: datagrams to the home agent and from the TIA, by
    /// `unreachable` rules behind charon's (priority 220), so that only a
    /// lookup that charon's table does not answer reaches them (RFC 5266
    /// §3.1.3: outside, the Mobile IP tunnel runs inside the VPN). The
    /// probe (RFC 5266 §3.4), marked, is let through to the main table.
    /// `None`: remove them. Only with a charon plugin.
    GuardVpn { guard: Option<VpnGuard> },
    /// Ask charon, through the plugin, to bring a VPN connection up or
    /// down (RFC 5266 §3.4.1 step 2, §3.4.2 step 1).
    Vpn(VpnRequest),
    /// Mode 'f' (RFC 5266 §3.1.2): `Some`: the home address local to the
    /// node without a tunnel (the foreign agent decapsulates and delivers
    /// on the link, RFC 5944 §4.2.2), and traffic from it routed to the
    /// agent as its router (§4.2.2: "the foreign agent as its default
    /// router"); queued before the requests that go through the agent,
    /// which leave from the home address (§3.6.1.1). `None`: remove
    /// that. Never together with a tunnel: [`Action::TunnelDown`] comes
    /// first.
    ForeignAgentRoute {
        home: Ipv4Addr,
        route: Option<AgentRoute>,
    },
    /// DSMIPv4 (RFC 5454): `Some`: the IPv6 home address from the
    /// granted prefix on the device the tunnel of `home` routes into, the
    /// prefix made known to the data plane (where its IPv6 goes: to the
    /// care-of or the home address, §2.2), and IPv6 from the prefix and
    /// to the configured destinations routed into that device. Queued
    /// after the [`Action::TunnelUp`] it rides on; [`Action::HoldTraffic`]
    /// holds its IPv6 too. `None`: all of it removed (before a
    /// [`Action::TunnelDown`]). Sent only when it changes; a device
    /// changed by a later `TunnelUp` (RFC 3519 granted or withdrawn)
    /// carries it over without another action.
    Ipv6Home {
        home: Ipv4Addr,
        ipv6: Option<Ipv6Home>,
    },
}

/// The IPv6 side of a binding as the node configures it (RFC 5454).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ipv6Home {
    /// The prefix and where the home agent tunnels its IPv6 (§2.2).
    pub binding: crate::dataplane::binding::Ipv6Binding,
    /// The node's IPv6 home address in it (the prefix with the configured
    /// interface identifier), put on the device as a /128.
    pub address: Ipv6Addr,
    /// Destinations reached through the home agent (default `::/0`).
    pub routes: Vec<Ipv6Net>,
}

/// Where mode 'f' routes the home address's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRoute {
    pub ifname: String,
    /// The agent's address on the link (its advertisement's source).
    pub router: Ipv4Addr,
}

/// The home address as the source of what the node itself opens while
/// away (modes 'c' and 'mc'): without it the kernel picks the care-of
/// address (mode 'c') or the TIA (charon's routes carry `src TIA`), and a
/// connection opened there breaks at the next move. The daemon routes
/// `prefixes` with the home address as preferred source into the tunnel
/// for lookups that have no source yet (a rule placed after the home
/// address's own rule and before charon's table 220); once the kernel
/// chose the home address, the home address's own rule routes the
/// datagrams, so holding traffic holds them too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeSource {
    pub home: Ipv4Addr,
    /// Destinations reached from the home address (configured; default
    /// everything).
    pub prefixes: Vec<Ipv4Net>,
    /// Destinations that keep the kernel's own choice: the home agent
    /// (the tunnel's outer datagrams, the registrations and the probe go
    /// there from the care-of address), the VPN gateways (IKE) and the
    /// on-link prefixes of the physical attachments.
    pub exclude: Vec<Ipv4Net>,
}

/// What [`Action::GuardVpn`] keeps inside ESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpnGuard {
    pub tia: Ipv4Addr,
    pub home_agent: Ipv4Addr,
}

/// A request to charon about the VPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum VpnRequest {
    Initiate {
        connection: String,
    },
    Terminate {
        connection: String,
    },
    /// Run charon's roam now ([`Node::default_route_added`](super::Node::default_route_added)).
    Roam {
        connection: String,
    },
}
