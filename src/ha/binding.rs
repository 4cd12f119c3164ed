//! The binding cache (RFC 5944 §3.8.1): home address -> care-of address,
//! lifetime and what the data plane needs to reach the mobile node.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use ipnet::Ipv6Net;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::wire::Flags;

/// How packets for the mobile node are encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TunnelMode {
    /// IP in IP to the care-of address (RFC 2003; RFC 5944 §4.1).
    Ipip,
    /// IP in IP inside UDP to the request's source address and port
    /// (RFC 3519 §3.3), for mobile nodes behind a NAT.
    Udp,
}

/// Where IPv6 for a registered prefix is tunnelled (RFC 5454 §2.2, the
/// Prefix Reply's code; §2.3, the Tunneling Mode extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6TunnelTo {
    /// IPv6 in IPv4 to the IPv4 home address, carried inside the
    /// binding's own tunnel (code 0; no Tunneling Mode extension).
    HomeAddress,
    /// IPv6 in IPv4 straight to the care-of address, or in RFC 3519 UDP
    /// with next header 41 behind a NAT (code 1, §3.9).
    CareOf,
}

/// The IPv6 part of a binding (RFC 5454 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ipv6Binding {
    pub prefix: Ipv6Net,
    pub tunnel_to: Ipv6TunnelTo,
}

/// One mobility binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub home_address: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    /// Source address and port of the accepted request: where replies go
    /// and, in UDP mode, the tunnel's far end (the NAT's mapping).
    pub source: SocketAddrV4,
    /// Granted lifetime, seconds.
    pub lifetime: u16,
    pub expires: Instant,
    /// Identification of the accepted request.
    pub identification: u64,
    pub flags: Flags,
    /// 'T' was set: packets from the MN arrive reverse-tunnelled and the
    /// ingress check applies (RFC 3024 §4.2).
    pub reverse_tunnel: bool,
    pub tunnel: TunnelMode,
    pub nai: Option<Vec<u8>>,
    pub spi: u32,
    /// The IPv6 home network prefix registered with it (RFC 5454), if any.
    pub ipv6: Option<Ipv6Binding>,
}

impl Binding {
    /// True when a new registration changes what the data plane must do
    /// (a mere lifetime refresh does not).
    pub fn dataplane_differs(&self, other: &Binding) -> bool {
        self.care_of_address != other.care_of_address
            || self.tunnel != other.tunnel
            || self.reverse_tunnel != other.reverse_tunnel
            || (self.tunnel == TunnelMode::Udp && self.source != other.source)
            || self.ipv6 != other.ipv6
    }

    /// The operator's view (mip4ctl bindings).
    pub fn info(&self, now: Instant) -> BindingInfo {
        BindingInfo {
            home_address: self.home_address,
            care_of_address: self.care_of_address,
            source: self.source.to_string(),
            lifetime: self.lifetime,
            remaining: self.expires.saturating_duration_since(now).as_secs(),
            identification: self.identification,
            flags: flag_letters(self.flags),
            reverse_tunnel: self.reverse_tunnel,
            tunnel: self.tunnel,
            nai: self
                .nai
                .as_ref()
                .map(|n| String::from_utf8_lossy(n).into_owned()),
            spi: self.spi,
            ipv6: self.ipv6,
        }
    }
}

fn flag_letters(f: Flags) -> String {
    [
        (Flags::S, 'S'),
        (Flags::B, 'B'),
        (Flags::D, 'D'),
        (Flags::M, 'M'),
        (Flags::G, 'G'),
        (Flags::T, 'T'),
    ]
    .iter()
    .filter(|(fl, _)| f.contains(*fl))
    .map(|&(_, c)| c)
    .collect()
}

/// A binding as `mip4ctl bindings --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingInfo {
    pub home_address: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    pub source: String,
    pub lifetime: u16,
    /// Seconds until expiry.
    pub remaining: u64,
    pub identification: u64,
    pub flags: String,
    pub reverse_tunnel: bool,
    pub tunnel: TunnelMode,
    pub nai: Option<String>,
    pub spi: u32,
    /// RFC 5454: the IPv6 prefix and where its traffic is tunnelled.
    #[serde(default)]
    pub ipv6: Option<Ipv6Binding>,
}

/// Bindings by home address. One care-of address per home address: the
/// HA declines simultaneous bindings (RFC 5944 §3.8.3.1, code 1).
#[derive(Debug, Default, Clone)]
pub struct BindingCache {
    by_home: BTreeMap<Ipv4Addr, Binding>,
}

impl BindingCache {
    pub fn get(&self, home: Ipv4Addr) -> Option<&Binding> {
        self.by_home.get(&home)
    }

    /// Inserts or replaces; returns the previous binding.
    pub fn insert(&mut self, b: Binding) -> Option<Binding> {
        self.by_home.insert(b.home_address, b)
    }

    pub fn remove(&mut self, home: Ipv4Addr) -> Option<Binding> {
        self.by_home.remove(&home)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.by_home.values()
    }

    pub fn len(&self) -> usize {
        self.by_home.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_home.is_empty()
    }

    /// The earliest expiry.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_home.values().map(|b| b.expires).min()
    }

    /// Removes and returns every binding whose lifetime has run out.
    pub fn expire(&mut self, now: Instant) -> Vec<Binding> {
        let gone: Vec<Ipv4Addr> = self
            .by_home
            .values()
            .filter(|b| b.expires <= now)
            .map(|b| b.home_address)
            .collect();
        gone.into_iter()
            .filter_map(|h| self.by_home.remove(&h))
            .collect()
    }

    /// Keeps only the bindings `keep` approves; returns the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&Binding) -> bool) -> Vec<Binding> {
        let gone: Vec<Ipv4Addr> = self
            .by_home
            .values()
            .filter(|b| !keep(b))
            .map(|b| b.home_address)
            .collect();
        gone.into_iter()
            .filter_map(|h| self.by_home.remove(&h))
            .collect()
    }
}
