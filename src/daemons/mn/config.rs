//! mip4d's configuration file (TOML), see packaging/mip4d.conf.example.
//!
//! serde checks shape and types (with `file:line: key` errors from
//! [`crate::config`]); the rules serde cannot express follow and name
//! file, line and key too.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::net::Ipv6Addr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Deserialize;

use crate::auth::{Algorithm, SecurityAssociation, FIRST_USABLE_SPI};
use crate::config::{first, ConfigError, Findings, SecretKey, Source};
use crate::dataplane::BackendChoice;
use crate::mn::detect::{DetectConfig, VpnWhenInside};
use crate::mn::node::{Dsmipv4, Multihoming, NetworkMatch, NodeConfig};
use crate::mn::registration::{self, Retransmit, MIN_RETRANSMIT_INTERVAL};
use crate::mn::TrustPolicy;
use crate::replay::ReplayMethod;
use crate::wire::extension::{Dsmipv4Ext, UdpTunnelRequest};
use crate::wire::Extension;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum AlgorithmName {
    #[default]
    HmacMd5,
    /// RFC 5944 §5.1: only for peers that need RFC 2002 compatibility.
    KeyedMd5PrefixSuffix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ReplayName {
    #[default]
    Timestamp,
    Nonce,
}

/// `udp_tunnel`: when the registration asks for RFC 3519 UDP tunnelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpTunnel {
    /// A UDP Tunnel Request without the F flag: the home agent tunnels in
    /// UDP when it detects a NAT (RFC 3519 §3.1, §4.6: the request's
    /// source is not its care-of address), in IP in IP otherwise.
    #[default]
    Auto,
    /// The F flag: UDP tunnelling whether or not a NAT is detected (a
    /// firewall that drops IP protocol 4, RFC 3519 §3.1.1).
    Always,
    /// No request: IP in IP only.
    Never,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    home_address: Option<Ipv4Addr>,
    nai: Option<String>,
    home_network: Option<Ipv4Net>,
    home_agent: Ipv4Addr,
    spi: u32,
    key: Option<SecretKey>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    algorithm: AlgorithmName,
    #[serde(default)]
    replay: ReplayName,
    #[serde(default)]
    interfaces: Vec<String>,
    #[serde(default)]
    trusted_networks: Vec<Ipv4Net>,
    #[serde(default = "default_lifetime")]
    lifetime: u16,
    #[serde(default = "default_true")]
    reverse_tunnel: bool,
    /// Mode 'f': agent discovery and foreign-agent care-of addresses on
    /// trusted networks (RFC 5266 §3.1.2).
    #[serde(default = "default_true")]
    foreign_agent: bool,
    #[serde(default = "default_true")]
    deregister_on_shutdown: bool,
    #[serde(default)]
    tunnel_backend: BackendChoice,
    #[serde(default)]
    udp_tunnel: UdpTunnel,
    #[serde(default = "default_tunnel_device")]
    tunnel_device: String,
    #[serde(default = "default_table")]
    routing_table: u32,
    #[serde(default = "default_rule_priority")]
    rule_priority: u32,
    #[serde(default = "default_control_socket")]
    control_socket: PathBuf,
    #[serde(default)]
    retransmission: RetransmissionFile,
    #[serde(default)]
    vpn: VpnFile,
    detect: Option<DetectFile>,
    #[serde(default)]
    home_address_source: HomeSourceFile,
    #[serde(default)]
    multihoming: MultihomingFile,
    dsmipv4: Option<Dsmipv4File>,
}

/// `[dsmipv4]`: ask the home agent for an IPv6 home prefix (RFC 5454)
/// in every registration, and use it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dsmipv4File {
    /// §2.1: `::/0` (all zeros) asks the home agent to assign the prefix;
    /// a prefix names the one the node wants.
    #[serde(default = "default_dsmipv4_prefix")]
    prefix: Ipv6Net,
    /// The host part of the IPv6 home address in the granted prefix.
    #[serde(default = "default_interface_id")]
    interface_id: Ipv6Addr,
    /// §2.3: where the home agent tunnels the prefix's IPv6.
    #[serde(default)]
    tunnel_to: TunnelTo,
    /// IPv6 destinations routed through the home agent.
    #[serde(default = "default_dsmipv4_routes")]
    routes: Vec<Ipv6Net>,
}

/// `dsmipv4.tunnel_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum TunnelTo {
    /// The Tunneling Mode extension (§2.3): IPv6 in IPv4 straight to the
    /// care-of address (code 1; RFC 3519 next header 41 behind a NAT).
    #[default]
    CareOf,
    /// No Tunneling Mode extension: IPv6 in IPv4 to the IPv4 home
    /// address, inside the binding's tunnel (code 0).
    HomeAddress,
}

fn default_dsmipv4_prefix() -> Ipv6Net {
    Ipv6Net::default()
}
fn default_interface_id() -> Ipv6Addr {
    Ipv6Addr::from(1u128)
}
fn default_dsmipv4_routes() -> Vec<Ipv6Net> {
    vec![Ipv6Net::default()]
}

/// `[dsmipv4]` checked: its extensions for every request, and the node's
/// part.
fn dsmipv4_config(src: &Source, d: &Dsmipv4File, errs: &mut Findings) -> (Vec<Extension>, Dsmipv4) {
    let prefix = d.prefix.trunc();
    if prefix != d.prefix {
        errs.push(src.error_at_key(
            "dsmipv4.prefix",
            0,
            format!("{} has host bits set (the prefix is {prefix})", d.prefix),
        ));
    }
    if d.interface_id.is_unspecified() {
        errs.push(src.error_at_key(
            "dsmipv4.interface_id",
            0,
            "must not be :: (the subnet-router anycast address, RFC 4291 §2.6.1)",
        ));
    }
    if d.routes.is_empty() {
        errs.push(src.error_at_key(
            "dsmipv4.routes",
            0,
            "must name at least one destination (\"::/0\" for everything)",
        ));
    }
    let mut exts = vec![Extension::Dsmipv4(Dsmipv4Ext::Ipv6PrefixRequest {
        prefix_length: prefix.prefix_len(),
        prefix: prefix.network(),
    })];
    if d.tunnel_to == TunnelTo::CareOf {
        exts.push(Extension::Dsmipv4(Dsmipv4Ext::TunnelingMode));
    }
    let node = Dsmipv4 {
        interface_id: d.interface_id,
        routes: d.routes.iter().map(|r| r.trunc()).collect(),
    };
    (exts, node)
}

/// `[home_address_source]`: what the node opens itself leaves from the
/// home address while away (modes 'c' and 'mc'), to these destinations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HomeSourceFile {
    /// Default everything; `[]` leaves the kernel's choice (the care-of
    /// address or the TIA).
    #[serde(default = "default_home_source_prefixes")]
    prefixes: Vec<Ipv4Net>,
}

impl Default for HomeSourceFile {
    fn default() -> Self {
        HomeSourceFile {
            prefixes: default_home_source_prefixes(),
        }
    }
}

/// `[multihoming]`: more than one interface up at once (docs/mip4d.md,
/// "More than one interface").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MultihomingFile {
    /// Most preferred first: interface names, IPv4 prefixes, gateway MACs.
    #[serde(default)]
    prefer: Vec<String>,
    /// Networks never probed (RFC 5266 §5): prefixes, gateway MACs or
    /// interface names.
    #[serde(default)]
    never_probe: Vec<String>,
    /// Lifetime of a cached verdict; 0: no cache.
    #[serde(default = "default_verdict_cache")]
    verdict_cache_s: u64,
    #[serde(default = "default_gateway_wait")]
    gateway_wait_ms: u64,
}

impl Default for MultihomingFile {
    fn default() -> Self {
        MultihomingFile {
            prefer: Vec::new(),
            never_probe: Vec::new(),
            verdict_cache_s: default_verdict_cache(),
            gateway_wait_ms: default_gateway_wait(),
        }
    }
}

fn default_home_source_prefixes() -> Vec<Ipv4Net> {
    vec![Ipv4Net::default()]
}

fn default_verdict_cache() -> u64 {
    Multihoming::default().verdict_cache.as_secs()
}
fn default_gateway_wait() -> u64 {
    Multihoming::default().gateway_wait.as_millis() as u64
}

/// `[multihoming]` checked: every entry parses, and the probe's settings
/// come with the probe.
fn multihoming_config(
    src: &Source,
    m: &MultihomingFile,
    detect: bool,
    errs: &mut Findings,
) -> Multihoming {
    let mut parse = |key: &str, list: &[String]| -> Vec<NetworkMatch> {
        list.iter()
            .enumerate()
            .filter_map(|(i, e)| {
                errs.ok(NetworkMatch::parse(e)
                    .map_err(|why| src.error_at_key(key, 0, format!("entry {i}: {why}"))))
            })
            .collect()
    };
    let never_probe = parse("multihoming.never_probe", &m.never_probe);
    let prefer = parse("multihoming.prefer", &m.prefer);
    if !never_probe.is_empty() && !detect {
        errs.push(src.error_at_key(
            "multihoming.never_probe",
            0,
            "needs a `[detect]` section: without the probe (RFC 5266 §3.4) nothing is probed",
        ));
    }
    if m.gateway_wait_ms > 10_000 {
        errs.push(src.error_at_key(
            "multihoming.gateway_wait_ms",
            0,
            "must be at most 10000 (a new attachment waits that long before its probe)",
        ));
    }
    Multihoming {
        prefer,
        never_probe,
        verdict_cache: Duration::from_secs(m.verdict_cache_s),
        gateway_wait: Duration::from_millis(m.gateway_wait_ms),
    }
}

/// `[detect]`: trusted-network detection by the probe of RFC 5266 §3.4
/// (replaces `trusted_networks`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectFile {
    /// RFC 5266 §3.4: timeout and retransmissions of the probe are
    /// "configurable on the mobile node".
    #[serde(default = "default_probe_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_probe_retries")]
    retries: u32,
    #[serde(default = "default_probe_cap_ms")]
    backoff_cap_ms: u64,
    /// RFC 5265 §3.2.4 T_MONITOR (default 60 s); 0 turns monitoring off.
    #[serde(default = "default_t_monitor")]
    t_monitor_s: u64,
    #[serde(default = "default_monitor_grace")]
    monitor_grace_s: u64,
    #[serde(default)]
    vpn_when_inside: VpnWhenInside,
    /// The charon connection to initiate outside without a VPN, and to
    /// terminate inside with `vpn_when_inside = "terminate"`. Default:
    /// the first of `[vpn] connections`.
    vpn_connection: Option<String>,
}

fn default_probe_timeout_ms() -> u64 {
    1000
}
fn default_probe_retries() -> u32 {
    2
}
fn default_probe_cap_ms() -> u64 {
    2000
}
fn default_t_monitor() -> u64 {
    60
}
fn default_monitor_grace() -> u64 {
    10
}

/// `[vpn]`: mode 'mc' (RFC 5266 §3.1.3) with charon's mip4 plugin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VpnFile {
    /// The socket the plugin connects to (charon.plugins.mip4.socket);
    /// "" turns the plugin side off (mode 'c' only).
    #[serde(default = "default_plugin_socket")]
    plugin_socket: PathBuf,
    #[serde(default)]
    connections: Vec<String>,
    #[serde(default = "default_esp_overhead")]
    esp_overhead: u32,
}

impl Default for VpnFile {
    fn default() -> Self {
        VpnFile {
            plugin_socket: default_plugin_socket(),
            connections: Vec::new(),
            esp_overhead: default_esp_overhead(),
        }
    }
}

fn default_plugin_socket() -> PathBuf {
    PathBuf::from(crate::bridge::DEFAULT_SOCKET)
}
fn default_esp_overhead() -> u32 {
    crate::mn::vpn::DEFAULT_ESP_OVERHEAD
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetransmissionFile {
    #[serde(default = "default_initial_ms")]
    initial_timeout_ms: u64,
    #[serde(default = "default_retries")]
    retries: u32,
    #[serde(default = "default_cap_ms")]
    backoff_cap_ms: u64,
    #[serde(default = "default_retry_interval")]
    retry_interval_s: u64,
    #[serde(default = "default_shutdown_ms")]
    shutdown_timeout_ms: u64,
}

impl Default for RetransmissionFile {
    fn default() -> Self {
        RetransmissionFile {
            initial_timeout_ms: default_initial_ms(),
            retries: default_retries(),
            backoff_cap_ms: default_cap_ms(),
            retry_interval_s: default_retry_interval(),
            shutdown_timeout_ms: default_shutdown_ms(),
        }
    }
}

fn default_lifetime() -> u16 {
    600
}
fn default_true() -> bool {
    true
}
fn default_tunnel_device() -> String {
    "mip4mn0".into()
}
/// A table of our own for the home address's routes; 434 after the port.
fn default_table() -> u32 {
    434
}
/// Before charon's rule for the VPN's routes (priority 220): in mode
/// 'mc' traffic from the home address must enter the Mobile IP tunnel.
fn default_rule_priority() -> u32 {
    200
}
fn default_control_socket() -> PathBuf {
    PathBuf::from(crate::ctl::MN_SOCKET)
}
fn default_initial_ms() -> u64 {
    1000
}
fn default_retries() -> u32 {
    4
}
fn default_cap_ms() -> u64 {
    32_000
}
fn default_retry_interval() -> u64 {
    30
}
fn default_shutdown_ms() -> u64 {
    3000
}

/// mip4d's whole configuration, checked.
#[derive(Debug, Clone)]
pub struct MnConfig {
    pub node: NodeConfig,
    pub deregister_on_shutdown: bool,
    /// How long a deregistration at shutdown may wait for its reply.
    pub shutdown_timeout: Duration,
    /// The backend of IP-in-IP tunnels. RFC 3519 UDP tunnels always take
    /// the userspace plane (no kernel tunnel carries them), started when
    /// the home agent first grants one.
    pub tunnel_backend: BackendChoice,
    pub udp_tunnel: UdpTunnel,
    /// Name of the userspace TUN device (the kernel backend names its
    /// ipip links itself).
    pub tunnel_device: String,
    /// Routing table and rule priority for the home address's routes.
    pub routing_table: u32,
    pub rule_priority: u32,
    pub control_socket: PathBuf,
    /// Where the charon plugin connects (mode 'mc'); None: off.
    pub plugin_socket: Option<PathBuf>,
}

impl MnConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::check_file(path).map_err(first)
    }

    pub fn from_source(src: &Source) -> Result<Self, ConfigError> {
        Self::check(src).map_err(first)
    }

    /// Reads and checks `path`, finding every error (`--check-config`).
    pub fn check_file(path: &Path) -> Result<Self, Vec<ConfigError>> {
        Self::check(&Source::read(path).map_err(|e| vec![e])?)
    }

    /// Checks the whole file: every error, each with file, line and key.
    pub fn check(src: &Source) -> Result<Self, Vec<ConfigError>> {
        let (f, mut errs) = src.parse_all::<File>();
        let Some(f) = f else {
            return Err(errs.into_errors(&src.file));
        };
        let home_address = f.home_address.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if f.home_address.is_none() && f.nai.is_none() {
            errs.push(src.error("needs `home_address` or `nai` (or both)"));
        }
        if let Some(nai) = &f.nai {
            if nai.is_empty() || nai.len() > 255 {
                errs.push(src.error_at_key("nai", 0, "NAI must be 1-255 octets (RFC 2794)"));
            }
        }
        if let (Some(hoa), Some(net)) = (f.home_address, f.home_network) {
            if !net.contains(&hoa) {
                errs.push(src.error_at_key(
                    "home_network",
                    0,
                    format!("does not contain the home address {hoa}"),
                ));
            }
        }
        if f.home_agent.is_unspecified() {
            errs.push(src.error_at_key("home_agent", 0, "must be a unicast address"));
        }
        if f.spi < FIRST_USABLE_SPI {
            errs.push(src.error_at_key(
                "spi",
                0,
                format!(
                    "SPI {} is reserved (RFC 5944 §1.6: use 256 or above)",
                    f.spi
                ),
            ));
        }
        let key = match (&f.key, &f.key_file) {
            (Some(k), None) => errs
                .ok(src.refuse_shared_inline_key("key", 0))
                .map(|()| k.clone()),
            (None, Some(p)) => {
                errs.ok(SecretKey::from_file(p).map_err(|e| src.error_at_key("key_file", 0, e)))
            }
            (Some(_), Some(_)) => {
                errs.push(src.error_at_key("key_file", 0, "give `key` or `key_file`, not both"));
                None
            }
            (None, None) => {
                errs.push(src.error("needs `key` or `key_file`"));
                None
            }
        };
        let algorithm = match f.algorithm {
            AlgorithmName::HmacMd5 => Algorithm::HmacMd5,
            AlgorithmName::KeyedMd5PrefixSuffix => Algorithm::KeyedMd5PrefixSuffix,
        };
        let replay = match f.replay {
            ReplayName::Timestamp => ReplayMethod::Timestamp,
            ReplayName::Nonce => ReplayMethod::Nonce,
        };
        let sa = key.and_then(|key| {
            errs.ok(
                SecurityAssociation::new(f.spi, algorithm, key.expose(), replay)
                    .map_err(|e| src.error_at_key("key", 0, e.to_string())),
            )
        });
        if f.lifetime == 0 {
            errs.push(src.error_at_key(
                "lifetime",
                0,
                "must be at least 1 second (0 is a deregistration)",
            ));
        }
        let r = &f.retransmission;
        let initial = Duration::from_millis(r.initial_timeout_ms);
        if initial < MIN_RETRANSMIT_INTERVAL {
            errs.push(src.error_at_key(
                "retransmission.initial_timeout_ms",
                0,
                "must be at least 1000 (RFC 5944 §3.6.3: at most one request a second)",
            ));
        }
        let cap = Duration::from_millis(r.backoff_cap_ms);
        if cap < initial {
            errs.push(src.error_at_key(
                "retransmission.backoff_cap_ms",
                0,
                "must not be below initial_timeout_ms",
            ));
        }
        if r.retry_interval_s == 0 {
            errs.push(src.error_at_key(
                "retransmission.retry_interval_s",
                0,
                "must be at least 1 second",
            ));
        }
        for (i, name) in f.interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 || name.contains('/') {
                errs.push(src.error_at_key(
                    "interfaces",
                    0,
                    format!("entry {i}: {name:?} is not an interface name"),
                ));
            }
        }
        if f.udp_tunnel != UdpTunnel::Never && f.tunnel_backend == BackendChoice::Kernel {
            // No kernel tunnel carries IP in UDP on port 434 with the
            // Tunnel Data header: only the userspace plane does.
            errs.push(src.error_at_key(
                "udp_tunnel",
                0,
                "RFC 3519 UDP tunnelling needs the userspace tunnel backend: set tunnel_backend = \"auto\" or \"userspace\", or udp_tunnel = \"never\"",
            ));
        }
        if f.tunnel_device.is_empty() || f.tunnel_device.len() > 15 {
            errs.push(src.error_at_key("tunnel_device", 0, "must be 1-15 characters"));
        }
        if f.routing_table == 0 || (253..=255).contains(&f.routing_table) {
            errs.push(src.error_at_key(
                "routing_table",
                0,
                "must be a table of its own (not 0, default, main or local)",
            ));
        }

        let v = &f.vpn;
        // ESP's overhead is tens of bytes; anything near an MTU is a typo.
        if v.esp_overhead > 400 {
            errs.push(src.error_at_key(
                "vpn.esp_overhead",
                0,
                "must be at most 400 bytes (ESP with UDP encapsulation adds 62-85)",
            ));
        }
        for (i, c) in v.connections.iter().enumerate() {
            if c.is_empty() {
                errs.push(src.error_at_key(
                    "vpn.connections",
                    0,
                    format!("entry {i} is empty (charon connection names)"),
                ));
            }
        }
        if f.routing_table
            .checked_add(1)
            .is_none_or(|t| (253..=255).contains(&t))
        {
            errs.push(src.error_at_key(
                "routing_table",
                0,
                "the next table holds the home address's source routes: it must not be default, main or local",
            ));
        }
        // + 2: the home-source rule comes after the home agent rule.
        if f.rule_priority.saturating_add(2) >= 220 && !v.plugin_socket.as_os_str().is_empty() {
            // charon's own rule (charon.routing_table_prio, 220) routes
            // the VPN's traffic; ours must come first so that traffic from
            // the home address enters the Mobile IP tunnel (RFC 3024), not
            // the VPN directly with a source its policies do not cover.
            tracing::warn!(
                rule_priority = f.rule_priority,
                "rule_priority is not below charon's routing rule (220): in mode mc the home address's traffic would bypass the tunnel"
            );
        }

        let node_trust = match &f.detect {
            None => Some(TrustPolicy::Prefixes(f.trusted_networks.clone())),
            Some(d) => {
                if !f.trusted_networks.is_empty() {
                    errs.push(src.error_at_key(
                        "trusted_networks",
                        0,
                        "give `trusted_networks` or a `[detect]` section, not both (the probe decides trust, RFC 5266 §3.4)",
                    ));
                }
                Some(TrustPolicy::Tnc(detect_config(
                    src,
                    d,
                    &f.vpn.connections,
                    &mut errs,
                )))
            }
        };
        let multihoming = multihoming_config(src, &f.multihoming, f.detect.is_some(), &mut errs);
        let dsmipv4 = f
            .dsmipv4
            .as_ref()
            .map(|d| dsmipv4_config(src, d, &mut errs));
        let (Some(sa), Some(trust), true) = (sa, node_trust, errs.is_empty()) else {
            return Err(errs.into_errors(&src.file));
        };
        let mut reg =
            registration::Config::new(home_address, f.home_agent, Ipv4Addr::UNSPECIFIED, sa);
        reg.nai = f.nai.map(String::into_bytes);
        reg.lifetime = f.lifetime;
        if f.udp_tunnel != UdpTunnel::Never {
            // RFC 3519 §3.1: protected by the MN-HA authenticator (the
            // client puts configured extensions before it).
            reg.extensions
                .push(Extension::UdpTunnelRequest(UdpTunnelRequest {
                    sub_type: 0,
                    force: f.udp_tunnel == UdpTunnel::Always,
                    registration_through_fa: false,
                    encapsulation: crate::dataplane::ipv4::PROTO_IPIP,
                }));
        }
        if let Some((exts, _)) = &dsmipv4 {
            // RFC 5454 §2: inside the part the MN-HA authenticator covers.
            reg.extensions.extend(exts.iter().cloned());
        }
        reg.retransmit = Retransmit {
            initial_timeout: initial,
            max_timeout: cap,
            max_attempts: r.retries + 1,
        };
        if let Err(e) = reg.validate() {
            errs.push(src.error(format!("registration settings: {e}")));
            return Err(errs.into_errors(&src.file));
        }
        let mut node = NodeConfig::new(reg);
        node.interfaces = f.interfaces;
        node.home_network = f.home_network;
        node.trust = trust;
        node.multihoming = multihoming;
        node.reverse_tunnel = f.reverse_tunnel;
        node.foreign_agent = f.foreign_agent;
        node.retry_interval = Duration::from_secs(r.retry_interval_s);
        node.vpn_connections = f.vpn.connections.clone();
        node.esp_overhead = f.vpn.esp_overhead;
        node.home_source = f.home_address_source.prefixes;
        node.dsmipv4 = dsmipv4.map(|(_, d)| d);
        let plugin_socket =
            (!f.vpn.plugin_socket.as_os_str().is_empty()).then(|| f.vpn.plugin_socket.clone());
        errs.finish(
            &src.file,
            MnConfig {
                node,
                deregister_on_shutdown: f.deregister_on_shutdown,
                shutdown_timeout: Duration::from_millis(r.shutdown_timeout_ms),
                tunnel_backend: f.tunnel_backend,
                udp_tunnel: f.udp_tunnel,
                tunnel_device: f.tunnel_device,
                routing_table: f.routing_table,
                rule_priority: f.rule_priority,
                control_socket: f.control_socket,
                plugin_socket,
            },
        )
    }
}

fn detect_config(
    src: &Source,
    d: &DetectFile,
    connections: &[String],
    errs: &mut Findings,
) -> DetectConfig {
    let initial = Duration::from_millis(d.timeout_ms);
    if initial < MIN_RETRANSMIT_INTERVAL {
        errs.push(src.error_at_key(
            "detect.timeout_ms",
            0,
            "must be at least 1000 (RFC 5944 §3.6.3: at most one request a second)",
        ));
    }
    let cap = Duration::from_millis(d.backoff_cap_ms);
    if cap < initial {
        errs.push(src.error_at_key("detect.backoff_cap_ms", 0, "must not be below timeout_ms"));
    }
    if d.t_monitor_s != 0 && d.monitor_grace_s >= d.t_monitor_s {
        errs.push(src.error_at_key(
            "detect.monitor_grace_s",
            0,
            "must be below t_monitor_s (RFC 5265 §3.2.4: re-register every T_MONITOR - N)",
        ));
    }
    DetectConfig {
        retransmit: Retransmit {
            initial_timeout: initial,
            max_timeout: cap,
            max_attempts: d.retries + 1,
        },
        t_monitor: (d.t_monitor_s != 0).then(|| Duration::from_secs(d.t_monitor_s)),
        monitor_grace: Duration::from_secs(d.monitor_grace_s),
        vpn_when_inside: d.vpn_when_inside,
        vpn_connection: d
            .vpn_connection
            .clone()
            .or_else(|| connections.first().cloned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
home_address = "10.1.0.5"
home_network = "10.1.0.0/24"
home_agent = "10.1.0.1"
spi = 4096
key = "00112233445566778899aabbccddeeff"
interfaces = ["eth0"]
trusted_networks = ["10.20.0.0/16"]
lifetime = 300

[retransmission]
initial_timeout_ms = 1000
retries = 2
backoff_cap_ms = 4000
"#;

    fn load(text: &str) -> Result<MnConfig, String> {
        MnConfig::from_source(&Source::from_str("mip4d.conf", text)).map_err(|e| e.to_string())
    }

    #[test]
    fn example_settings_load() {
        let c = load(GOOD).unwrap();
        let reg = &c.node.registration;
        assert_eq!(reg.home_address, Ipv4Addr::new(10, 1, 0, 5));
        assert_eq!(reg.lifetime, 300);
        assert_eq!(reg.retransmit.max_attempts, 3);
        assert_eq!(reg.retransmit.max_timeout, Duration::from_secs(4));
        assert_eq!(c.node.interfaces, vec!["eth0".to_string()]);
        assert_eq!(c.routing_table, 434);
        assert!(c.deregister_on_shutdown);
        assert_eq!(c.tunnel_backend, BackendChoice::Auto);
    }

    #[test]
    fn home_address_source_defaults_to_everything_and_takes_prefixes() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.node.home_source, vec![Ipv4Net::default()]);
        let c = load(&format!(
            "{GOOD}\n[home_address_source]\nprefixes = [\"10.0.0.0/8\", \"192.0.2.0/24\"]\n"
        ))
        .unwrap();
        let want: Vec<Ipv4Net> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.0/24".parse().unwrap(),
        ];
        assert_eq!(c.node.home_source, want);
        let c = load(&format!("{GOOD}\n[home_address_source]\nprefixes = []\n")).unwrap();
        assert!(c.node.home_source.is_empty());
        let e = load(&format!(
            "{GOOD}\n[home_address_source]\nprefixes = [\"10.0.0.0/33\"]\n"
        ))
        .unwrap_err();
        assert!(e.starts_with("mip4d.conf:17: key `prefixes`"), "{e}");
        let e = load(&GOOD.replace("lifetime = 300", "lifetime = 300\nrouting_table = 252"))
            .unwrap_err();
        assert!(e.contains("key `routing_table`"), "{e}");
    }

    #[test]
    fn the_packaged_example_loads() {
        let text = include_str!("../../../packaging/mip4d.conf.example");
        load(text).unwrap();
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = load(&GOOD.replace("spi = 4096", "spi = 12")).unwrap_err();
        assert!(
            e.starts_with("mip4d.conf:5: key `spi`: SPI 12 is reserved"),
            "{e}"
        );
        let e = load(&GOOD.replace("initial_timeout_ms = 1000", "initial_timeout_ms = 200"))
            .unwrap_err();
        assert!(
            e.starts_with("mip4d.conf:12: key `retransmission.initial_timeout_ms`"),
            "{e}"
        );
        let e = load(&GOOD.replace("lifetime = 300", "lifetim = 300")).unwrap_err();
        assert!(
            e.starts_with("mip4d.conf:9: key `lifetim`: unknown field"),
            "{e}"
        );
        let e = load(&GOOD.replace(
            "home_network = \"10.1.0.0/24\"",
            "home_network = \"10.2.0.0/24\"",
        ))
        .unwrap_err();
        assert!(e.starts_with("mip4d.conf:3: key `home_network`"), "{e}");
    }

    /// RFC 5454: `[dsmipv4]` puts the IPv6 Prefix Request (and, to the
    /// care-of address, the Tunneling Mode extension) in every request;
    /// without it nothing is asked. Bad values name their key.
    #[test]
    fn dsmipv4_section_asks_for_a_prefix() {
        let dsmip = |c: &MnConfig| -> Vec<Dsmipv4Ext> {
            c.node
                .registration
                .extensions
                .iter()
                .filter_map(|e| match e {
                    Extension::Dsmipv4(d) => Some(*d),
                    _ => None,
                })
                .collect()
        };
        let none = load(GOOD).unwrap();
        assert!(dsmip(&none).is_empty() && none.node.dsmipv4.is_none());
        let c = load(&format!("{GOOD}\n[dsmipv4]\n")).unwrap();
        assert_eq!(
            dsmip(&c),
            vec![
                Dsmipv4Ext::Ipv6PrefixRequest {
                    prefix_length: 0,
                    prefix: Ipv6Addr::UNSPECIFIED
                },
                Dsmipv4Ext::TunnelingMode
            ]
        );
        let node = c.node.dsmipv4.unwrap();
        assert_eq!(node.routes, vec![Ipv6Net::default()]);
        assert_eq!(
            node.address_in("2001:db8:10::/64".parse().unwrap()),
            "2001:db8:10::1".parse::<Ipv6Addr>().unwrap()
        );
        let c = load(&format!(
            "{GOOD}\n[dsmipv4]\nprefix = \"2001:db8:10::/64\"\ntunnel_to = \"home-address\"\nroutes = [\"2001:db8:1::/48\"]\n"
        ))
        .unwrap();
        assert_eq!(
            dsmip(&c),
            vec![Dsmipv4Ext::Ipv6PrefixRequest {
                prefix_length: 64,
                prefix: "2001:db8:10::".parse().unwrap()
            }]
        );
        let e = load(&format!("{GOOD}\n[dsmipv4]\ninterface_id = \"::\"\n")).unwrap_err();
        assert!(e.contains("key `dsmipv4.interface_id`"), "{e}");
        let e = load(&format!("{GOOD}\n[dsmipv4]\nprefix = \"2001:db8::1/64\"\n")).unwrap_err();
        assert!(e.contains("key `dsmipv4.prefix`"), "{e}");
        let e = load(&format!("{GOOD}\n[dsmipv4]\ntunnel_to = \"fa\"\n")).unwrap_err();
        assert!(e.contains("tunnel_to"), "{e}");
    }

    /// RFC 3519 §3.1: the request asks for UDP tunnelling unless told not
    /// to, forced only with `always`; no kernel tunnel carries it.
    #[test]
    fn udp_tunnel_setting_shapes_the_request() {
        let request = |text: &str| {
            load(text)
                .unwrap()
                .node
                .registration
                .extensions
                .iter()
                .find_map(|e| match e {
                    Extension::UdpTunnelRequest(r) => Some(*r),
                    _ => None,
                })
        };
        let auto = request(GOOD).expect("a UDP Tunnel Request by default");
        assert!(!auto.force && !auto.registration_through_fa);
        assert_eq!(auto.encapsulation, 4, "IP in IP inside UDP");
        let always =
            request(&(GOOD.replace("lifetime = 300", "lifetime = 300\nudp_tunnel = \"always\"")));
        assert!(always.expect("requested").force, "F flag");
        let never = GOOD.replace("lifetime = 300", "lifetime = 300\nudp_tunnel = \"never\"");
        assert_eq!(request(&never), None);
        let kernel = GOOD.replace(
            "lifetime = 300",
            "lifetime = 300\ntunnel_backend = \"kernel\"",
        );
        let e = load(&kernel).unwrap_err();
        assert!(
            e.contains("key `udp_tunnel`") && e.contains("userspace"),
            "{e}"
        );
        load(&kernel.replace("lifetime = 300", "lifetime = 300\nudp_tunnel = \"never\"")).unwrap();
    }

    #[test]
    fn detect_section_selects_the_probe() {
        let text = GOOD.replace("trusted_networks = [\"10.20.0.0/16\"]\n", "")
            + "\n[detect]\ntimeout_ms = 1500\nretries = 3\nbackoff_cap_ms = 3000\nt_monitor_s = 30\nvpn_when_inside = \"terminate\"\n[vpn]\nconnections = [\"corp\"]\n";
        let c = load(&text).unwrap();
        let TrustPolicy::Tnc(d) = &c.node.trust else {
            panic!("{:?}", c.node.trust)
        };
        assert_eq!(d.retransmit.max_attempts, 4);
        assert_eq!(d.retransmit.initial_timeout, Duration::from_millis(1500));
        assert_eq!(d.t_monitor, Some(Duration::from_secs(30)));
        assert_eq!(d.vpn_when_inside, VpnWhenInside::Terminate);
        assert_eq!(d.vpn_connection.as_deref(), Some("corp"));
        // Both ways of deciding trust at once is a mistake.
        let e = load(&(GOOD.to_string() + "\n[detect]\n")).unwrap_err();
        assert!(e.contains("key `trusted_networks`"), "{e}");
        let e = load(&text.replace("timeout_ms = 1500", "timeout_ms = 100")).unwrap_err();
        assert!(e.contains("key `detect.timeout_ms`"), "{e}");
    }

    #[test]
    fn multihoming_section_names_file_line_and_key() {
        let detect = GOOD.replace("trusted_networks = [\"10.20.0.0/16\"]\n", "") + "\n[detect]\n";
        let text = detect.clone()
            + "[multihoming]\nprefer = [\"eth1\", \"10.20.0.0/16\"]\nnever_probe = [\"192.0.2.0/24\", \"02:00:5e:00:53:01\"]\nverdict_cache_s = 600\n";
        let c = load(&text).unwrap();
        let m = &c.node.multihoming;
        assert_eq!(m.prefer[0], NetworkMatch::Interface("eth1".into()));
        assert_eq!(
            m.never_probe[1],
            NetworkMatch::Gateway([2, 0, 0x5e, 0, 0x53, 1])
        );
        assert_eq!(m.verdict_cache, Duration::from_secs(600));
        let e = load(&text.replace("02:00:5e:00:53:01", "02:00:5e:00:53")).unwrap_err();
        assert!(
            e.starts_with("mip4d.conf:18: key `multihoming.never_probe`: entry 1:"),
            "{e}"
        );
        let e =
            load(&(GOOD.to_string() + "[multihoming]\nnever_probe = [\"eth0\"]\n")).unwrap_err();
        assert!(
            e.contains("key `multihoming.never_probe`: needs a `[detect]`"),
            "{e}"
        );
    }

    #[test]
    fn the_key_never_appears_in_errors() {
        let e =
            load(&GOOD.replace("00112233445566778899aabbccddeeff", "secretsecret")).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
