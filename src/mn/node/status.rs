//! `mip4ctl status` of the mobile node, and the node's counters.

use std::net::Ipv4Addr;
use std::time::Instant;

use serde::Serialize;

use super::{Node, State};
use crate::mn::detect::{self, DetectStats};
use crate::mn::discovery::{DiscoveryStats, HeardAgent};
use crate::mn::mode::Mode;
use crate::mn::registration;
use crate::mn::vpn::VpnSa;

/// Counters of the node itself (the client keeps the registration ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeStats {
    pub moves: u64,
    pub home_returns: u64,
    pub tunnel_ups: u64,
    pub tunnel_downs: u64,
    /// Registration datagrams not handed out because no care-of address
    /// was usable (retransmissions of a request whose address vanished).
    pub transmits_suppressed: u64,
    /// Registrations of a TIA as care-of address (mode 'mc').
    pub tia_registrations: u64,
    /// MOBIKE moves of the IKE_SA that needed no registration (RFC 5266
    /// §3: the TIA stayed).
    pub vpn_moves_absorbed: u64,
    /// Times the TIA changed, or the MN moved to another gateway, while
    /// in mode 'mc' (each re-registered at once).
    pub tia_changes: u64,
    /// Times the binding went stale (TIA released, IKE_SA down).
    pub bindings_stale: u64,
    /// Times traffic from the home address was held (detection running
    /// with no protected path), and released.
    pub traffic_holds: u64,
    pub traffic_releases: u64,
    /// RFC 3519 §4.10: registrations sent because nothing came from the
    /// home agent through the UDP tunnel for `SILENT_INTERVALS`
    /// keepalive intervals (the NAT lost its mapping).
    pub nat_reregistrations: u64,
}

/// `mip4ctl status` of the mobile node.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// "c", "f", "mc", or null (at home / detached).
    pub mode: Option<Mode>,
    #[serde(flatten)]
    pub state: State,
    pub home_address: Ipv4Addr,
    pub care_of_address: Option<Ipv4Addr>,
    pub home_agent: Ipv4Addr,
    /// Seconds left of the granted binding (null: none; u64::MAX never
    /// happens: an infinite lifetime shows as null `binding_expires_in`
    /// with `binding_infinite` true).
    pub binding_expires_in: Option<u64>,
    pub binding_infinite: bool,
    pub tunnel_up: bool,
    /// Mode 'mc': the VPN the care-of address comes from.
    pub vpn: Option<VpnStatus>,
    pub registration: registration::Stats,
    pub node: NodeStats,
    /// Trusted-network detection (null when trust comes from prefixes).
    pub detection: Option<DetectionStatus>,
    /// Agent discovery (mode 'f'; null when `foreign_agent` is off).
    pub foreign_agents: Option<AgentsStatus>,
    /// DSMIPv4 (RFC 5454): the IPv6 home address, its prefix and routes
    /// (null: none granted, or none asked for).
    pub ipv6_home: Option<super::Ipv6Home>,
}

/// The agent-discovery part of `mip4ctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentsStatus {
    /// Foreign agents heard within their advertisements' lifetime.
    pub heard: Vec<HeardAgent>,
    /// Mode 'f''s agent: the link and address of its route.
    pub route: Option<super::AgentRoute>,
    pub counters: DiscoveryStats,
}

/// The detection part of `mip4ctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionStatus {
    /// The attachment being probed, if any.
    pub probing: Option<Ipv4Addr>,
    pub verdicts: Vec<detect::Attachment>,
    /// Whether traffic from the home address is held now.
    pub traffic_held: bool,
    pub counters: DetectStats,
    /// Networks (gateway MAC and prefix) with a verdict still cached.
    pub verdict_cache: Vec<super::CachedVerdictStatus>,
}

/// The VPN part of `mip4ctl status`.
#[derive(Debug, Clone, Serialize)]
pub struct VpnStatus {
    /// The IKE_SA whose TIA is (or would be) the care-of address.
    pub current: Option<VpnSa>,
    /// Every IKE_SA the plugin reported.
    pub ike_sas: Vec<VpnSa>,
    /// The binding's care-of address is a TIA that is gone.
    pub binding_stale: bool,
    pub tunnel_mtu: Option<u32>,
}

impl Node {
    pub fn status(&self, now: Instant) -> Status {
        let b = self.client.binding();
        Status {
            mode: self.mode(),
            state: self.state,
            home_address: self.client.home_address(),
            care_of_address: self.access.care_of(),
            home_agent: self.client.home_agent(),
            binding_expires_in: b
                .and_then(|b| b.expires)
                .map(|e| e.saturating_duration_since(now).as_secs()),
            binding_infinite: b.is_some_and(|b| b.expires.is_none()),
            tunnel_up: self.kernel.tunnel.is_some(),
            vpn: (!self.vpn.sas().is_empty() || self.access.mc().is_some()).then(|| VpnStatus {
                current: self.vpn.current(&self.cfg.vpn_connections).cloned(),
                ike_sas: self.vpn.sas().to_vec(),
                binding_stale: self.access.is_stale(),
                tunnel_mtu: self.kernel.tunnel_mtu,
            }),
            registration: self.client.stats().clone(),
            node: self.stats.clone(),
            detection: self.detector.as_ref().map(|d| DetectionStatus {
                probing: d.probing().map(|(_, a)| a),
                verdicts: d.verdicts().to_vec(),
                traffic_held: self.kernel.held,
                counters: d.stats().clone(),
                verdict_cache: self.cache_status(now),
            }),
            foreign_agents: self.cfg.foreign_agent.then(|| AgentsStatus {
                heard: self.discovery.agents().to_vec(),
                route: self.kernel.agent_route.clone(),
                counters: self.discovery.stats().clone(),
            }),
            ipv6_home: self.kernel.ipv6_home.clone(),
        }
    }
}
