//! What the node is configured with.

use std::time::Duration;

use ipnet::Ipv4Net;

use crate::mn::mode::TrustPolicy;
use crate::mn::registration;
use crate::mn::vpn::DEFAULT_ESP_OVERHEAD;

/// What the node is configured with (besides the registration itself).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The registration template. Its care-of address is ignored: the
    /// node picks it from the interfaces.
    pub registration: registration::Config,
    /// Interfaces whose addresses may become care-of addresses; empty
    /// means every interface the daemon reports.
    pub interfaces: Vec<String>,
    /// The home network: an address inside it on one of the interfaces
    /// means the node is on its home link. Defaults to the home address
    /// alone (/32).
    pub home_network: Option<Ipv4Net>,
    pub trust: TrustPolicy,
    /// Ask for reverse tunnelling (RFC 3024, 'T' bit): traffic from the
    /// home address goes through the tunnel to the home agent, so it
    /// passes ingress filters and the enterprise firewall.
    pub reverse_tunnel: bool,
    /// After a registration attempt went unanswered (every retransmission
    /// spent), try again after this long.
    pub retry_interval: Duration,
    /// VPN connections (charon peer_cfg names) whose TIA may become the
    /// care-of address in mode 'mc'; empty: any.
    pub vpn_connections: Vec<String>,
    /// Bytes ESP (with UDP encapsulation) adds to a datagram, for the
    /// MTU of the Mobile IP tunnel inside the VPN (see [`PathMtu`](crate::mn::vpn::PathMtu)).
    pub esp_overhead: u32,
    /// mip4d talks to charon's plugin: a VPN may be up, with routes that
    /// catch datagrams to the home agent (see
    /// [`Action::DirectToHomeAgent`](super::Action::DirectToHomeAgent)).
    pub with_charon: bool,
    /// Destinations that connections the node opens (no source address
    /// chosen) reach from the home address while away, in modes 'c' and
    /// 'mc' (see [`HomeSource`](super::HomeSource)); empty: none, the
    /// kernel picks the care-of address or the TIA as before. Default:
    /// everything (`0.0.0.0/0`).
    pub home_source: Vec<Ipv4Net>,
}

impl NodeConfig {
    pub fn new(registration: registration::Config) -> Self {
        NodeConfig {
            registration,
            interfaces: Vec::new(),
            home_network: None,
            trust: TrustPolicy::Prefixes(Vec::new()),
            reverse_tunnel: true,
            retry_interval: Duration::from_secs(30),
            vpn_connections: Vec::new(),
            esp_overhead: DEFAULT_ESP_OVERHEAD,
            with_charon: false,
            home_source: vec![Ipv4Net::default()],
        }
    }
}
