//! mip4-fa's configuration file (TOML), see packaging/mip4-fa.conf.example.
//!
//! Shape and types come from serde (with `file:line: key` errors from
//! [`crate::config`]); the checks serde cannot express follow and name
//! file, line and key too: the RFC 1256 §4 advertisement limits, SPI
//! ranges, and the care-of address being usable.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::auth::FIRST_USABLE_SPI;
use crate::config::{ConfigError, Findings, SecretKey, Source};
pub use crate::ha::config::TunnelBackend;

/// RFC 3024 reverse tunnelling offered by this foreign agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReverseTunnelSupport {
    /// 'T' not advertised; a request with 'T' is denied with 74.
    Unsupported,
    /// 'T' advertised; the mobile node chooses.
    #[default]
    Allowed,
    /// 'T' advertised and mandatory: a request without it gets 75.
    Required,
}

/// Where periodic advertisements go (RFC 5944 §2.3.1: one of these two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdvertisementDestination {
    /// 224.0.0.1, "all systems on this link".
    #[default]
    AllSystems,
    /// 255.255.255.255, the limited broadcast address.
    Broadcast,
}

impl AdvertisementDestination {
    pub fn address(self) -> Ipv4Addr {
        match self {
            AdvertisementDestination::AllSystems => Ipv4Addr::new(224, 0, 0, 1),
            AdvertisementDestination::Broadcast => Ipv4Addr::BROADCAST,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    care_of_address: Ipv4Addr,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    #[serde(default = "default_max_lifetime")]
    max_lifetime: u16,
    #[serde(default = "default_true")]
    registration_required: bool,
    #[serde(default)]
    reverse_tunnel: ReverseTunnelSupport,
    #[serde(default = "default_max_visitors")]
    max_visitors: usize,
    #[serde(default = "default_registration_timeout")]
    registration_timeout: u64,
    #[serde(default)]
    mn_fa_auth_required: bool,
    #[serde(default)]
    allowed_home_agents: Vec<Ipv4Net>,
    #[serde(default = "default_max_pending_per_mac")]
    max_pending_per_mac: usize,
    #[serde(default)]
    tunnel_backend: TunnelBackend,
    #[serde(default = "default_tunnel_interface")]
    tunnel_interface: String,
    #[serde(default = "default_table")]
    reverse_tunnel_table: u32,
    #[serde(default)]
    advertisement: AdvertisementFile,
    #[serde(default)]
    interface: Vec<InterfaceFile>,
    #[serde(default)]
    home_agent: Vec<PeerFile>,
    #[serde(default)]
    mobile_node: Vec<PeerFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvertisementFile {
    #[serde(default = "default_adv_interval")]
    interval: u32,
    min_interval: Option<u32>,
    lifetime: Option<u16>,
    #[serde(default)]
    destination: AdvertisementDestination,
    #[serde(default = "default_true")]
    prefix_lengths: bool,
    #[serde(default)]
    mobility_only: bool,
}

impl Default for AdvertisementFile {
    fn default() -> Self {
        AdvertisementFile {
            interval: default_adv_interval(),
            min_interval: None,
            lifetime: None,
            destination: AdvertisementDestination::default(),
            prefix_lengths: true,
            mobility_only: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceFile {
    name: String,
    address: Ipv4Net,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerFile {
    address: Option<Ipv4Addr>,
    home_address: Option<Ipv4Addr>,
    spi: u32,
    key: SecretKey,
}

fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::ctl::FA_SOCKET)
}
fn default_max_lifetime() -> u16 {
    600
}
fn default_true() -> bool {
    true
}
/// A node has one home address, maybe a few (several home agents): more
/// pending requests from one link-layer address is a node filling the
/// visitor list.
fn default_max_pending_per_mac() -> usize {
    4
}

fn default_max_visitors() -> usize {
    1024
}
fn default_registration_timeout() -> u64 {
    7
}
fn default_tunnel_interface() -> String {
    "mip4fa0".to_string()
}
fn default_table() -> u32 {
    434
}
fn default_adv_interval() -> u32 {
    3
}

/// A link the foreign agent serves: advertisements go out on it, and its
/// address is the router address and the source of replies to visitors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedInterface {
    pub name: String,
    /// The FA's address on the link and the link's prefix length.
    pub address: Ipv4Net,
}

/// Advertisement timing and content (RFC 5944 §2.1, §2.3; RFC 1256 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertisementConfig {
    /// MaxAdvertisementInterval.
    pub max_interval: Duration,
    /// MinAdvertisementInterval (default 0.75 x max, RFC 1256 §4).
    pub min_interval: Duration,
    /// ICMP Lifetime (default 3 x max: RFC 5944 §2.3.2 wants the nominal
    /// interval no longer than a third of it).
    pub lifetime: u16,
    pub destination: AdvertisementDestination,
    pub prefix_lengths: bool,
    /// Code 16: the agent does not route common traffic (RFC 5944 §2.1).
    pub mobility_only: bool,
}

/// A security association with a peer (FA-HA by HA address, MN-FA by
/// home address).
#[derive(Debug, Clone)]
pub struct PeerSa {
    pub address: Ipv4Addr,
    pub spi: u32,
    pub key: SecretKey,
}

/// The FA's whole configuration, checked.
#[derive(Debug, Clone)]
pub struct FaConfig {
    /// The care-of address offered in advertisements and accepted in
    /// requests (RFC 5944 §2.1.1); the local end of the tunnels.
    pub care_of_address: Ipv4Addr,
    pub control_socket: PathBuf,
    /// Longest registration lifetime accepted (advertised, §2.1.1).
    pub max_lifetime: u16,
    /// 'R': registration required even for co-located care-of addresses.
    pub registration_required: bool,
    pub reverse_tunnel: ReverseTunnelSupport,
    /// Pending plus accepted visitors; beyond, 66 and the 'B' bit.
    pub max_visitors: usize,
    /// How long a relayed request waits for the HA (then 78).
    pub registration_timeout: Duration,
    /// Every request must carry a valid MN-FA authentication extension.
    pub mn_fa_auth_required: bool,
    /// The home agents this FA relays to; others get 65. Required: an
    /// FA that relays anywhere is an open relay for anyone on its links.
    pub allowed_home_agents: Vec<Ipv4Net>,
    /// Pending (relayed, unanswered) requests per link-layer address;
    /// beyond, 66, so that one node cannot fill `max_visitors`.
    pub max_pending_per_mac: usize,
    pub tunnel_backend: TunnelBackend,
    pub tunnel_interface: String,
    /// Routing table of the reverse tunnel (RFC 3024 §5 policy routing).
    pub reverse_tunnel_table: u32,
    pub advertisement: AdvertisementConfig,
    pub interfaces: Vec<ServedInterface>,
    /// FA-HA security associations (RFC 5944 §3.5.4).
    pub home_agents: Vec<PeerSa>,
    /// MN-FA security associations (RFC 5944 §3.5.3).
    pub mobile_nodes: Vec<PeerSa>,
}

impl FaConfig {
    /// Parses and checks configuration text; the first error.
    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        Self::check(src).map_err(crate::config::first)
    }

    /// Parses and checks configuration text: every error, each with
    /// file, line and key (`--check-config`).
    pub fn check(src: &Source) -> Result<Self, Vec<ConfigError>> {
        let (f, mut errs) = src.parse_all::<File>();
        let Some(f) = f else {
            return Err(errs.into_errors(&src.file));
        };
        let coa = f.care_of_address;
        if coa.is_unspecified() || coa.is_broadcast() || coa.is_multicast() || coa.is_loopback() {
            errs.push(src.error_at_key(
                "care_of_address",
                0,
                "must be a unicast address of this host",
            ));
        }
        if f.max_lifetime == 0 {
            errs.push(src.error_at_key(
                "max_lifetime",
                0,
                "must be at least 1 second (65535 means infinity)",
            ));
        }
        if f.allowed_home_agents.is_empty() {
            errs.push(src.error_at_key(
                "allowed_home_agents",
                0,
                "must list the home agents (prefixes) this agent relays to; \
                 without it the agent would relay for anyone to anywhere",
            ));
        }
        if f.max_pending_per_mac == 0 {
            errs.push(src.error_at_key("max_pending_per_mac", 0, "must be at least 1"));
        }
        if f.max_visitors == 0 {
            errs.push(src.error_at_key("max_visitors", 0, "must be at least 1"));
        }
        if f.registration_timeout == 0 || f.registration_timeout > 600 {
            errs.push(src.error_at_key(
                "registration_timeout",
                0,
                "must be between 1 and 600 seconds",
            ));
        }
        if f.tunnel_interface.is_empty()
            || f.tunnel_interface.len() > 15
            || f.tunnel_interface.contains(['/', ' ', '%'])
        {
            errs.push(src.error_at_key(
                "tunnel_interface",
                0,
                "must be an interface name of 1-15 characters without '/', ' ' or '%'",
            ));
        }
        if matches!(f.reverse_tunnel_table, 0 | 253..=255) {
            errs.push(src.error_at_key(
                "reverse_tunnel_table",
                0,
                "must not be 0 or a reserved table (253 default, 254 main, 255 local)",
            ));
        }
        let a = &f.advertisement;
        // RFC 5944 §2.3.2 lets mobility agents advertise faster than
        // RFC 1256's 4 s floor (down to once a second); the ceiling is
        // RFC 1256 §4's 1800 s.
        if !(1..=1800).contains(&a.interval) {
            errs.push(src.error_at_key(
                "advertisement.interval",
                0,
                "must be between 1 and 1800 seconds",
            ));
        }
        let max_interval = Duration::from_secs(a.interval.into());
        let min_interval = match a.min_interval {
            None => max_interval * 3 / 4,
            Some(m) if m >= 1 && m <= a.interval => Duration::from_secs(m.into()),
            Some(_) => {
                errs.push(src.error_at_key(
                    "advertisement.min_interval",
                    0,
                    "must be between 1 second and `interval` (RFC 1256 §4)",
                ));
                max_interval
            }
        };
        let lifetime = match a.lifetime {
            None => u16::try_from(a.interval.saturating_mul(3).min(9000)).unwrap_or(9000),
            Some(l) if u32::from(l) >= a.interval && l <= 9000 => l,
            Some(l) => {
                errs.push(src.error_at_key(
                    "advertisement.lifetime",
                    0,
                    "must be between `interval` and 9000 seconds (RFC 1256 §4)",
                ));
                l
            }
        };
        if f.interface.is_empty() {
            errs.push(src.error("no [[interface]]: the FA must serve at least one link"));
        }
        let mut names = HashSet::new();
        for (i, ifc) in f.interface.iter().enumerate() {
            if ifc.name.is_empty() || ifc.name.len() > 15 || !names.insert(ifc.name.clone()) {
                errs.push(src.error_at_key(
                    "interface.name",
                    i,
                    "must be a unique interface name of 1-15 characters",
                ));
            }
        }
        let mut spis = HashSet::new();
        let mut peers = |list: &[PeerFile], table: &str, by_home: bool, errs: &mut Findings| {
            let mut out = Vec::new();
            for (i, p) in list.iter().enumerate() {
                let key_name = format!("{table}.spi");
                if p.spi < FIRST_USABLE_SPI {
                    errs.push(src.error_at_key(
                        &key_name,
                        i,
                        format!(
                            "SPI {} is reserved (RFC 5944 §1.6: use 256 or above)",
                            p.spi
                        ),
                    ));
                }
                if !spis.insert(p.spi) {
                    errs.push(src.error_at_key(
                        &key_name,
                        i,
                        format!("SPI {} is used by another security association", p.spi),
                    ));
                }
                let (addr, wrong) = if by_home {
                    (p.home_address, p.address.is_some())
                } else {
                    (p.address, p.home_address.is_some())
                };
                let want = if by_home { "home_address" } else { "address" };
                let Some(address) = addr.filter(|_| !wrong) else {
                    errs.push(src.error_at_key(
                        &key_name,
                        i,
                        format!("a [[{table}]] needs `{want}` (and only that)"),
                    ));
                    continue;
                };
                if errs
                    .ok(src.refuse_shared_inline_key(&format!("{table}.key"), i))
                    .is_none()
                {
                    continue;
                }
                out.push(PeerSa {
                    address,
                    spi: p.spi,
                    key: p.key.clone(),
                });
            }
            out
        };
        let home_agents = peers(&f.home_agent, "home_agent", false, &mut errs);
        let mobile_nodes = peers(&f.mobile_node, "mobile_node", true, &mut errs);
        errs.finish(
            &src.file,
            FaConfig {
                care_of_address: coa,
                control_socket: f.control_socket,
                max_lifetime: f.max_lifetime,
                registration_required: f.registration_required,
                reverse_tunnel: f.reverse_tunnel,
                max_visitors: f.max_visitors,
                registration_timeout: Duration::from_secs(f.registration_timeout),
                mn_fa_auth_required: f.mn_fa_auth_required,
                allowed_home_agents: f.allowed_home_agents,
                max_pending_per_mac: f.max_pending_per_mac,
                tunnel_backend: f.tunnel_backend,
                tunnel_interface: f.tunnel_interface,
                reverse_tunnel_table: f.reverse_tunnel_table,
                advertisement: AdvertisementConfig {
                    max_interval,
                    min_interval,
                    lifetime,
                    destination: f.advertisement.destination,
                    prefix_lengths: f.advertisement.prefix_lengths,
                    mobility_only: f.advertisement.mobility_only,
                },
                interfaces: f
                    .interface
                    .into_iter()
                    .map(|i| ServedInterface {
                        name: i.name,
                        address: i.address,
                    })
                    .collect(),
                home_agents,
                mobile_nodes,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
care_of_address = "10.77.0.2"
max_lifetime = 300
reverse_tunnel = "required"
allowed_home_agents = ["10.77.0.0/24"]

[advertisement]
interval = 2

[[interface]]
name = "vlink"
address = "10.50.0.1/24"

[[home_agent]]
address = "10.77.0.1"
spi = 300
key = "00112233445566778899aabbccddeeff"
"#;

    fn load(text: &str) -> Result<FaConfig, String> {
        FaConfig::from_source(&Source::from_str("mip4-fa.conf", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn inline_keys_in_a_file_others_can_read_are_refused() {
        crate::config::assert_inline_key_needs_private_file(
            GOOD,
            crate::daemons::fa::config::load,
            "home_agent.key",
        );
    }

    #[test]
    fn good_config_loads_with_rfc1256_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.advertisement.max_interval, Duration::from_secs(2));
        assert_eq!(c.advertisement.min_interval, Duration::from_millis(1500));
        assert_eq!(c.advertisement.lifetime, 6);
        assert_eq!(c.reverse_tunnel, ReverseTunnelSupport::Required);
        assert_eq!(c.home_agents[0].spi, 300);
        assert!(!format!("{c:?}").contains("00112233"));
    }

    #[test]
    fn allowed_home_agents_is_required() {
        let text = GOOD.replace("allowed_home_agents = [\"10.77.0.0/24\"]\n", "");
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with("mip4-fa.conf: key `allowed_home_agents`: must list the home agents"),
            "{e}"
        );
        assert_eq!(load(GOOD).unwrap().max_pending_per_mac, 4);
    }

    #[test]
    fn shipped_example_loads() {
        let text = include_str!("../../packaging/mip4-fa.conf.example");
        let c = load(text).unwrap();
        assert_eq!(c.interfaces[0].name, "eth1");
        assert_eq!(c.reverse_tunnel, ReverseTunnelSupport::Allowed);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = load(&GOOD.replace("interval = 2", "interval = 0")).unwrap_err();
        assert!(
            e.starts_with("mip4-fa.conf:8: key `advertisement.interval`"),
            "{e}"
        );
        let e = load(&GOOD.replace("spi = 300", "spi = 3")).unwrap_err();
        assert!(
            e.starts_with("mip4-fa.conf:16: key `home_agent.spi`: SPI 3 is reserved"),
            "{e}"
        );
        let e = load(&GOOD.replace("\"required\"", "\"always\"")).unwrap_err();
        assert!(
            e.starts_with("mip4-fa.conf:4: key `reverse_tunnel`: unknown variant"),
            "{e}"
        );
        let e = load(&GOOD.replace("address = \"10.77.0.1\"", "home_address = \"10.77.0.1\""))
            .unwrap_err();
        assert!(e.contains("needs `address`"), "{e}");
        let e = load(&GOOD.replace(
            "care_of_address = \"10.77.0.2\"",
            "care_of_address = \"0.0.0.0\"",
        ))
        .unwrap_err();
        assert!(
            e.starts_with("mip4-fa.conf:2: key `care_of_address`"),
            "{e}"
        );
    }
}
