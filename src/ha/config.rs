//! mip4-ha's configuration file (TOML), see packaging/mip4-ha.conf.example.
//!
//! Parsing is serde's (shape and types, with `file:line: key` errors from
//! [`crate::config`]); the checks serde cannot express (SPI ranges and
//! uniqueness, home addresses inside a home network, one key source per
//! mobile node) follow, and also name file, line and key.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

use crate::auth::FIRST_USABLE_SPI;
use crate::config::{ConfigError, Findings, SecretKey, Source};

/// How the home addresses are served on the home network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeNetworkMode {
    /// No home link: the HA owns routes for the home addresses of
    /// registered mobile nodes (a virtual home network).
    Virtual,
    /// A real home link: the HA answers ARP for the home addresses of
    /// registered mobile nodes on `interface` (RFC 5944 §4.6).
    ProxyArp,
}

/// Tunnel data plane: kernel ipip (rtnetlink) or userspace (TUN + raw
/// socket); `auto` picks the kernel when it has ipip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelBackend {
    #[default]
    Auto,
    Kernel,
    Userspace,
}

impl From<TunnelBackend> for crate::dataplane::BackendChoice {
    fn from(b: TunnelBackend) -> Self {
        match b {
            TunnelBackend::Auto => Self::Auto,
            TunnelBackend::Kernel => Self::Kernel,
            TunnelBackend::Userspace => Self::Userspace,
        }
    }
}

/// RFC 3024 reverse tunnelling policy for a mobile node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReverseTunnelPolicy {
    /// The MN may set 'T' or not.
    #[default]
    Allowed,
    /// 'T' must be set (else 138).
    Required,
    /// 'T' is refused (137).
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlgorithmName {
    #[default]
    HmacMd5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReplayName {
    #[default]
    Timestamp,
    Nonce,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "default_listen")]
    listen: SocketAddrV4,
    home_agent: Ipv4Addr,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    state_file: Option<PathBuf>,
    #[serde(default = "default_max_lifetime")]
    max_lifetime: u16,
    #[serde(default = "default_replay_tolerance")]
    replay_tolerance: u64,
    #[serde(default)]
    trusted_networks: Vec<Ipv4Net>,
    #[serde(default)]
    tunnel_backend: TunnelBackend,
    #[serde(default = "default_tunnel_interface")]
    tunnel_interface: String,
    #[serde(default = "default_true")]
    udp_tunnelling: bool,
    #[serde(default = "default_keepalive")]
    udp_keepalive: u16,
    #[serde(default)]
    home_network: Vec<HomeNetworkFile>,
    address_pool: Option<PoolFile>,
    #[serde(default)]
    mobile_node: Vec<MobileNodeFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HomeNetworkFile {
    prefix: Ipv4Net,
    #[serde(default = "default_mode")]
    mode: HomeNetworkMode,
    interface: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolFile {
    first: Ipv4Addr,
    last: Ipv4Addr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // `algorithm` has one value today; parsed so typos are errors
struct MobileNodeFile {
    nai: Option<String>,
    home_address: Option<Ipv4Addr>,
    spi: u32,
    key: Option<SecretKey>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    algorithm: AlgorithmName,
    #[serde(default)]
    replay: ReplayName,
    #[serde(default)]
    reverse_tunnel: ReverseTunnelPolicy,
    ipv6_prefix: Option<Ipv6Net>,
}

fn default_listen() -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, crate::wire::MIP_PORT)
}
fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::ctl::HA_SOCKET)
}
fn default_max_lifetime() -> u16 {
    600
}
fn default_replay_tolerance() -> u64 {
    7
}
fn default_tunnel_interface() -> String {
    "mip4ha0".to_string()
}
fn default_true() -> bool {
    true
}
fn default_keepalive() -> u16 {
    // RFC 3519 §3.7: the default keepalive interval is 110 seconds.
    110
}
fn default_mode() -> HomeNetworkMode {
    HomeNetworkMode::Virtual
}

/// RFC 5454 §2.1: each node's IPv6 home network prefix is a global
/// unicast prefix written as a network (no host bits), and no two nodes'
/// prefixes overlap: an IPv6 packet for the prefix must name one binding.
fn check_ipv6_prefixes(src: &Source, nodes: &[MobileNodeFile], errs: &mut Findings) {
    let prefixes: Vec<Ipv6Net> = nodes.iter().filter_map(|m| m.ipv6_prefix).collect();
    for (i, p) in prefixes.iter().enumerate() {
        let a = p.network();
        let unicast = !(a.is_unspecified()
            || a.is_loopback()
            || a.is_multicast()
            || (a.segments()[0] & 0xffc0) == 0xfe80);
        if !unicast || p.trunc() != *p || p.prefix_len() == 0 {
            errs.push(src.error_at_key(
                "mobile_node.ipv6_prefix",
                i,
                format!("{p} is not a unicast network prefix (write it without host bits)"),
            ));
            continue;
        }
        if let Some(other) = prefixes[..i]
            .iter()
            .find(|o| o.contains(&p.network()) || p.contains(&o.network()))
        {
            errs.push(src.error_at_key(
                "mobile_node.ipv6_prefix",
                i,
                format!("{p} overlaps {other}, given to another mobile node (RFC 5454 §2.1)"),
            ));
        }
    }
}

/// A home network the HA serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomeNetwork {
    pub prefix: Ipv4Net,
    pub mode: HomeNetworkMode,
    /// The home link, for proxy ARP.
    pub interface: Option<String>,
}

/// Addresses handed to mobile nodes that ask with an NAI and home address
/// 0.0.0.0 (RFC 2794).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressPool {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl AddressPool {
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        a >= self.first && a <= self.last
    }
    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

/// One mobile node the HA serves, with its security association.
#[derive(Debug, Clone)]
pub struct MobileNodeConfig {
    pub nai: Option<Vec<u8>>,
    pub home_address: Option<Ipv4Addr>,
    pub spi: u32,
    pub key: SecretKey,
    pub replay: crate::replay::ReplayMethod,
    pub reverse_tunnel: ReverseTunnelPolicy,
    /// The IPv6 home network prefix this node may register (RFC 5454
    /// §2.1); none: its IPv6 Prefix Requests are refused with code 9.
    pub ipv6_prefix: Option<Ipv6Net>,
}

impl MobileNodeConfig {
    /// The node's MN-HA security association (RFC 5944 §3.5.1: HMAC-MD5).
    pub fn security_association(
        &self,
    ) -> Result<crate::auth::SecurityAssociation, crate::auth::AuthError> {
        crate::auth::SecurityAssociation::new(
            self.spi,
            crate::auth::Algorithm::HmacMd5,
            self.key.expose(),
            self.replay,
        )
    }
}

/// The HA's whole configuration, checked.
#[derive(Debug, Clone)]
pub struct HaConfig {
    pub listen: SocketAddrV4,
    pub home_agent: Ipv4Addr,
    pub control_socket: PathBuf,
    /// The daemon's record of its bindings, replay state and kernel state,
    /// for its next instance (default: `ha.state` beside the control
    /// socket, under /run).
    pub state_file: PathBuf,
    /// Longest lifetime granted (RFC 5944 §3.8.3.1: the reply's lifetime
    /// may be shorter than requested).
    pub max_lifetime: u16,
    /// Timestamp window (RFC 5944 §5.7.1).
    pub replay_tolerance: Duration,
    /// The internal network's subnets (RFC 5265 §4.3). When any is set
    /// this HA is an i-HA: requests from sources outside them are dropped
    /// silently, and every reply to a request from inside carries the TNC
    /// extension. Empty: a plain RFC 5944 HA (all sources, never TNC).
    pub trusted_networks: Vec<Ipv4Net>,
    pub tunnel_backend: TunnelBackend,
    /// Name of the userspace backend's TUN device.
    pub tunnel_interface: String,
    /// Whether RFC 3519 UDP tunnelling is offered.
    pub udp_tunnelling: bool,
    /// Keepalive interval put in the UDP Tunnel Reply (RFC 3519 §3.2).
    pub udp_keepalive: u16,
    pub home_networks: Vec<HomeNetwork>,
    pub address_pool: Option<AddressPool>,
    pub mobile_nodes: Vec<MobileNodeConfig>,
    /// The daemon's data plane carries IPv6 (RFC 5454): not a file key;
    /// mip4-ha clears it when the kernel ipip backend was chosen, whose
    /// links carry IPv4 only, and the core then refuses prefixes (code 8).
    pub ipv6_carried: bool,
}

impl HaConfig {
    /// Parses and checks configuration text (tests); the first error.
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
        if f.max_lifetime == 0 || f.max_lifetime == u16::MAX {
            errs.push(src.error_at_key(
                "max_lifetime",
                0,
                "must be between 1 and 65534 seconds (65535 means infinity on the wire)",
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
        if f.home_network.is_empty() {
            errs.push(src.error("no [[home_network]]: the HA must serve at least one"));
        }
        for (i, n) in f.home_network.iter().enumerate() {
            if n.mode == HomeNetworkMode::ProxyArp && n.interface.is_none() {
                errs.push(src.error_at_key(
                    "home_network.mode",
                    i,
                    "mode \"proxy-arp\" needs `interface` (the home link)",
                ));
            }
        }
        let in_home = |a: Ipv4Addr| f.home_network.iter().any(|n| n.prefix.contains(&a));
        if !in_home(f.home_agent)
            && f.home_network
                .iter()
                .all(|n| n.mode == HomeNetworkMode::ProxyArp)
        {
            errs.push(src.error_at_key(
                "home_agent",
                0,
                "the home agent address is on none of the home networks",
            ));
        }
        let pool = match &f.address_pool {
            None => None,
            Some(p) => {
                if p.first > p.last {
                    errs.push(src.error_at_key("address_pool.last", 0, "last is below first"));
                }
                if !in_home(p.first) || !in_home(p.last) {
                    errs.push(src.error_at_key(
                        "address_pool.first",
                        0,
                        "the pool must lie inside a home network",
                    ));
                }
                Some(AddressPool {
                    first: p.first,
                    last: p.last,
                })
            }
        };
        check_ipv6_prefixes(src, &f.mobile_node, &mut errs);
        let mut spis = HashSet::new();
        let mut nais = HashSet::new();
        let mut hoas = HashSet::new();
        let mut nodes = Vec::with_capacity(f.mobile_node.len());
        // Per-key occurrence counters: the n-th [[mobile_node]] that has a
        // `nai` is the n-th `nai =` line, and so on.
        let (mut nai_i, mut hoa_i, mut key_i, mut keyfile_i) = (0, 0, 0, 0);
        for (i, m) in f.mobile_node.iter().enumerate() {
            if m.spi < FIRST_USABLE_SPI {
                errs.push(src.error_at_key(
                    "mobile_node.spi",
                    i,
                    format!(
                        "SPI {} is reserved (RFC 5944 §1.6: use 256 or above)",
                        m.spi
                    ),
                ));
            }
            if !spis.insert(m.spi) {
                errs.push(src.error_at_key(
                    "mobile_node.spi",
                    i,
                    format!("SPI {} is used by another mobile node", m.spi),
                ));
            }
            if m.nai.is_none() && m.home_address.is_none() {
                errs.push(src.error_at_key(
                    "mobile_node.spi",
                    i,
                    "a mobile node needs `nai` or `home_address` (or both)",
                ));
                continue;
            }
            if let Some(nai) = &m.nai {
                if nai.is_empty() || nai.len() > 255 || !nais.insert(nai.clone()) {
                    errs.push(src.error_at_key(
                        "mobile_node.nai",
                        nai_i,
                        "NAI must be 1-255 octets and unique",
                    ));
                }
                nai_i += 1;
            }
            if let Some(hoa) = m.home_address {
                if !in_home(hoa) {
                    errs.push(src.error_at_key(
                        "mobile_node.home_address",
                        hoa_i,
                        format!("{hoa} is on none of the home networks"),
                    ));
                }
                if !hoas.insert(hoa) || pool.is_some_and(|p| p.contains(hoa)) {
                    errs.push(src.error_at_key(
                        "mobile_node.home_address",
                        hoa_i,
                        format!(
                            "{hoa} is given to another mobile node or lies in the address pool"
                        ),
                    ));
                }
                hoa_i += 1;
            } else if pool.is_none() {
                errs.push(src.error_at_key(
                    "mobile_node.nai",
                    nai_i.saturating_sub(1),
                    "no home_address and no [address_pool] to assign one from",
                ));
            }
            let key = match (&m.key, &m.key_file) {
                (Some(k), None) => {
                    let ok = errs.ok(src.refuse_shared_inline_key("mobile_node.key", key_i));
                    key_i += 1;
                    ok.map(|()| k.clone())
                }
                (None, Some(p)) => {
                    let k = errs.ok(SecretKey::from_file(p)
                        .map_err(|e| src.error_at_key("mobile_node.key_file", keyfile_i, e)));
                    keyfile_i += 1;
                    k
                }
                _ => {
                    errs.push(src.error_at_key(
                        "mobile_node.spi",
                        i,
                        "give exactly one of `key` (hex) or `key_file`",
                    ));
                    None
                }
            };
            let Some(key) = key else { continue };
            nodes.push(MobileNodeConfig {
                nai: m.nai.as_ref().map(|s| s.as_bytes().to_vec()),
                home_address: m.home_address,
                spi: m.spi,
                key,
                replay: match m.replay {
                    ReplayName::Timestamp => crate::replay::ReplayMethod::Timestamp,
                    ReplayName::Nonce => crate::replay::ReplayMethod::Nonce,
                },
                reverse_tunnel: m.reverse_tunnel,
                ipv6_prefix: m.ipv6_prefix,
            });
        }
        let state_file = f.state_file.unwrap_or_else(|| {
            f.control_socket
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("ha.state")
        });
        errs.finish(
            &src.file,
            HaConfig {
                listen: f.listen,
                home_agent: f.home_agent,
                control_socket: f.control_socket,
                state_file,
                max_lifetime: f.max_lifetime,
                replay_tolerance: Duration::from_secs(f.replay_tolerance),
                trusted_networks: f.trusted_networks,
                tunnel_backend: f.tunnel_backend,
                tunnel_interface: f.tunnel_interface,
                udp_tunnelling: f.udp_tunnelling,
                udp_keepalive: f.udp_keepalive,
                home_networks: f
                    .home_network
                    .into_iter()
                    .map(|n| HomeNetwork {
                        prefix: n.prefix,
                        mode: n.mode,
                        interface: n.interface,
                    })
                    .collect(),
                address_pool: pool,
                mobile_nodes: nodes,
                ipv6_carried: true,
            },
        )
    }

    /// Whether `a` is on a configured trusted network.
    pub fn is_trusted(&self, a: Ipv4Addr) -> bool {
        self.trusted_networks.iter().any(|n| n.contains(&a))
    }

    /// The home network `a` is on.
    pub fn home_network_of(&self, a: Ipv4Addr) -> Option<&HomeNetwork> {
        self.home_networks.iter().find(|n| n.prefix.contains(&a))
    }

    /// Whether `a` is on one of the home networks.
    pub fn is_home(&self, a: Ipv4Addr) -> bool {
        self.home_networks.iter().any(|n| n.prefix.contains(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
home_agent = "10.1.0.1"
max_lifetime = 300
trusted_networks = ["10.10.1.0/24", "10.10.2.0/24"]

[[home_network]]
prefix = "10.1.0.0/24"
mode = "virtual"

[address_pool]
first = "10.1.0.100"
last = "10.1.0.199"

[[mobile_node]]
nai = "mn1@example.com"
home_address = "10.1.0.10"
spi = 256
key = "00112233445566778899aabbccddeeff"

[[mobile_node]]
nai = "mn2@example.com"
spi = 257
key = "ffeeddccbbaa99887766554433221100"
replay = "nonce"
reverse_tunnel = "required"
"#;

    fn load(text: &str) -> Result<HaConfig, String> {
        HaConfig::from_source(&Source::from_str("mip4-ha.conf", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn inline_keys_in_a_file_others_can_read_are_refused() {
        crate::config::assert_inline_key_needs_private_file(
            GOOD,
            crate::daemons::ha::config::load,
            "mobile_node.key",
        );
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.listen.port(), 434);
        assert_eq!(c.max_lifetime, 300);
        assert_eq!(c.mobile_nodes.len(), 2);
        assert_eq!(
            c.mobile_nodes[1].reverse_tunnel,
            ReverseTunnelPolicy::Required
        );
        assert!(c.is_trusted("10.10.2.7".parse().unwrap()));
        assert!(!c.is_trusted("192.0.2.1".parse().unwrap()));
        // Keys never show in Debug output.
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("00112233"), "{dbg}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = GOOD.replace("spi = 257", "spi = \"257\"");
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:22: key `spi`: expected an integer"),
            "{e}"
        );
    }

    #[test]
    fn reserved_spi_names_its_line() {
        let text = GOOD.replace("spi = 257", "spi = 17");
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:22: key `mobile_node.spi`: SPI 17 is reserved"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_spi_is_refused() {
        let text = GOOD.replace("spi = 257", "spi = 256");
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:22: key `mobile_node.spi`: SPI 256 is used"),
            "{e}"
        );
    }

    #[test]
    fn home_address_outside_home_network() {
        let text = GOOD.replace(
            "home_address = \"10.1.0.10\"",
            "home_address = \"10.9.0.10\"",
        );
        let e = load(&text).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:16: key `mobile_node.home_address`: 10.9.0.10 is on none"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_and_bad_enum() {
        let e = load(&GOOD.replace("max_lifetime", "max_lifetim")).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:3: key `max_lifetim`: unknown field"),
            "{e}"
        );
        let e = load(&GOOD.replace("\"virtual\"", "\"bridge\"")).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:8: key `mode`: unknown variant"),
            "{e}"
        );
    }

    #[test]
    fn proxy_arp_needs_interface_and_key_source_is_exclusive() {
        let e = load(&GOOD.replace("\"virtual\"", "\"proxy-arp\"")).unwrap_err();
        assert!(
            e.starts_with("mip4-ha.conf:8: key `home_network.mode`"),
            "{e}"
        );
        let text = GOOD.replace(
            "key = \"ffeeddccbbaa99887766554433221100\"",
            "key = \"ff\"\nkey_file = \"/nonexistent\"",
        );
        let e = load(&text).unwrap_err();
        assert!(e.contains("exactly one of `key`"), "{e}");
    }
}
