//! What the node is configured with.

use std::time::Duration;

use std::fmt;

use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};

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
    /// More than one interface: preference, networks never probed, the
    /// verdict cache.
    pub multihoming: Multihoming,
    /// Mode 'f' (RFC 5266 §3.1.2): listen for foreign agents and solicit
    /// them, and register through one advertising on a network the node
    /// found trusted. Off: modes 'c' and 'mc' only.
    pub foreign_agent: bool,
    /// DSMIPv4 (RFC 5454): how the node configures a granted IPv6 prefix;
    /// `None`: no prefix asked for (the request's extensions are the
    /// registration template's, see [`registration::Config::extensions`]).
    pub dsmipv4: Option<Dsmipv4>,
}

/// How a granted IPv6 home prefix is used (docs/mip4d.md, "Dual stack").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dsmipv4 {
    /// The host part of the IPv6 home address: the granted prefix's
    /// network bits, this value's other bits.
    pub interface_id: Ipv6Addr,
    /// Destinations routed into the tunnel (default `::/0`).
    pub routes: Vec<Ipv6Net>,
}

impl Dsmipv4 {
    /// The IPv6 home address in `prefix`.
    pub fn address_in(&self, prefix: Ipv6Net) -> Ipv6Addr {
        let net = u128::from(prefix.network());
        let host = u128::from(self.interface_id) & !u128::from(prefix.netmask());
        Ipv6Addr::from(net | host)
    }
}

/// A network as the operator names it: by interface, by the prefix the
/// address is in, or by the MAC address of its default gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkMatch {
    Interface(String),
    Prefix(Ipv4Net),
    Gateway([u8; 6]),
}

impl NetworkMatch {
    /// `eth0`, `192.0.2.0/24` or `02:00:5e:00:53:01`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            return s
                .parse::<Ipv4Net>()
                .map(|n| NetworkMatch::Prefix(n.trunc()))
                .map_err(|_| format!("{s:?} is not an IPv4 prefix"));
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() == 6 {
            let mut mac = [0u8; 6];
            for (b, p) in mac.iter_mut().zip(&parts) {
                if p.len() != 2 {
                    return Err(format!("{s:?} is not a MAC address"));
                }
                *b =
                    u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
            }
            return Ok(NetworkMatch::Gateway(mac));
        }
        if s.is_empty() || s.len() > 15 || s.contains(':') || s.contains(char::is_whitespace) {
            return Err(format!(
                "{s:?} is neither an interface name, an IPv4 prefix nor a MAC address"
            ));
        }
        Ok(NetworkMatch::Interface(s.to_string()))
    }
}

/// A MAC address as `ip neigh` prints it.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

impl fmt::Display for NetworkMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkMatch::Interface(i) => f.write_str(i),
            NetworkMatch::Prefix(p) => write!(f, "{p}"),
            NetworkMatch::Gateway(m) => f.write_str(&mac_string(m)),
        }
    }
}

/// More than one interface up at once (docs/mip4d.md, "More than one
/// interface").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multihoming {
    /// Most preferred first. Among usable attachments of the same trust
    /// the first match wins; unlisted ones come last, the newest first.
    /// A trusted attachment always wins over an untrusted one.
    pub prefer: Vec<NetworkMatch>,
    /// Networks never probed (RFC 5266 §5): untrusted at once.
    pub never_probe: Vec<NetworkMatch>,
    /// How long an untrusted verdict spares a network (gateway MAC and
    /// prefix) the probe; zero: no cache.
    pub verdict_cache: Duration,
    /// How long a new attachment waits for its gateway's MAC before it is
    /// probed anyway, when a gateway-keyed rule (the cache, `never_probe`
    /// by MAC) could spare it the probe.
    pub gateway_wait: Duration,
}

impl Default for Multihoming {
    fn default() -> Self {
        Multihoming {
            prefer: Vec::new(),
            never_probe: Vec::new(),
            verdict_cache: Duration::from_secs(3600),
            gateway_wait: Duration::from_secs(1),
        }
    }
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
            multihoming: Multihoming::default(),
            // mip4d's configuration turns it on unless told otherwise
            // (`foreign_agent`); a node built here asks for it.
            foreign_agent: false,
            dsmipv4: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_by_their_shape() {
        assert_eq!(
            NetworkMatch::parse("eth0"),
            Ok(NetworkMatch::Interface("eth0".into()))
        );
        assert_eq!(
            NetworkMatch::parse("192.0.2.7/24"),
            Ok(NetworkMatch::Prefix("192.0.2.0/24".parse().unwrap()))
        );
        assert_eq!(
            NetworkMatch::parse("02:00:5E:00:53:01"),
            Ok(NetworkMatch::Gateway([2, 0, 0x5e, 0, 0x53, 1]))
        );
        assert_eq!(
            NetworkMatch::parse("02:00:5e:00:53:01")
                .unwrap()
                .to_string(),
            "02:00:5e:00:53:01"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "02:00:5e:00:53",
            "02:00:5e:00:53:zz",
            "a very long name",
        ] {
            assert!(NetworkMatch::parse(bad).is_err(), "{bad:?}");
        }
    }
}
