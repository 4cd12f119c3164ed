//! The reverse-tunnel ingress check (RFC 3024 §5 at the home agent) and
//! its mirror at the mobile node, with the drop counters the status output
//! shows.
//!
//! RFC 3024: a home agent decapsulating a reverse-tunnelled datagram must
//! make sure the outer source is the care-of address registered for the
//! mobile node and the inner source is that node's home address; anything
//! else is silently discarded. Without it, anyone could inject datagrams
//! with a home address as source into the home network. The MN applies the
//! same rule the other way round: only its HA may tunnel to it, and only
//! datagrams for its home address.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::binding::{BindingTable, Endpoint, Role};

/// Why a decapsulated datagram was dropped by the ingress check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngressDrop {
    /// No binding has this outer source (wrong or spoofed care-of address).
    #[error("outer source is no registered tunnel endpoint")]
    UnknownTunnelSource,
    /// The outer source is registered, but not for this inner address.
    #[error("inner address is not a home address registered at this endpoint")]
    InnerAddressMismatch,
}

/// Checks one decapsulated datagram; returns the home address it belongs to.
///
/// At the HA the inner *source* must be a home address registered with
/// this outer source (RFC 3024 §5); at the MN the inner *destination*.
pub fn check(
    role: Role,
    bindings: &BindingTable,
    from: &Endpoint,
    inner_src: Ipv4Addr,
    inner_dst: Ipv4Addr,
) -> Result<Ipv4Addr, IngressDrop> {
    let homes = bindings.homes_at(from);
    let inner = match role {
        Role::HomeAgent => inner_src,
        Role::MobileNode => inner_dst,
    };
    if let Some(h) = homes.iter().copied().find(|h| *h == inner) {
        return Ok(h);
    }
    // A binding that moved off `from` a moment ago: what it sent that
    // way before the reply is still arriving (`binding::MOVE_GRACE`).
    if bindings
        .left_at(from, std::time::Instant::now())
        .any(|h| h == inner)
    {
        return Ok(inner);
    }
    if homes.is_empty() {
        Err(IngressDrop::UnknownTunnelSource)
    } else {
        Err(IngressDrop::InnerAddressMismatch)
    }
}

/// Datagram counters of one data plane; shared by its I/O tasks.
#[derive(Debug, Default)]
pub struct Counters {
    pub encapsulated: AtomicU64,
    pub decapsulated: AtomicU64,
    /// Inner datagram from the tunnel device that no binding covers.
    pub no_binding: AtomicU64,
    /// Malformed on either side (bad header, wrong protocol, fragment...).
    pub malformed: AtomicU64,
    pub unknown_tunnel_source: AtomicU64,
    pub inner_address_mismatch: AtomicU64,
    /// Routing loop refused (RFC 2003 §3.2).
    pub loops: AtomicU64,
    pub send_errors: AtomicU64,
    /// RFC 3519 §4.9: keepalives sent.
    pub keepalives: AtomicU64,
    /// RFC 5454 §3.3.2, §4: IPv6 out of a tunnel whose source (at the HA;
    /// destination at the MN) is outside the prefix of that tunnel's
    /// binding.
    pub ipv6_source_spoofed: AtomicU64,
    /// IPv6 out of a tunnel with a link-local source or destination.
    pub ipv6_link_local: AtomicU64,
    /// The MN's outer datagrams not sent because their source was no
    /// address of the node any more (a care-of address that went while
    /// they were in flight): [`super::source`], or the kernel's refusal
    /// when mip4d's view of the addresses lagged ([`super::raw_egress`]).
    pub stale_source: AtomicU64,
    /// The MN's outer datagrams from a TIA not sent because the VPN guard
    /// was not in force (they would have left outside ESP).
    pub outside_esp: AtomicU64,
    /// Datagrams too big for their tunnel answered to their source: ICMP
    /// "fragmentation needed" (RFC 2003 §5.1), ICMPv6 Packet Too Big (RFC
    /// 4213 §3.2, RFC 4443 §3.2).
    pub too_big_sent: AtomicU64,
    /// Such answers the rate limit held back (RFC 4443 §2.4 (f)).
    pub too_big_limited: AtomicU64,
}

/// A point-in-time copy of [`Counters`] for status and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CounterSnapshot {
    pub encapsulated: u64,
    pub decapsulated: u64,
    pub no_binding: u64,
    pub malformed: u64,
    pub unknown_tunnel_source: u64,
    pub inner_address_mismatch: u64,
    pub loops: u64,
    pub send_errors: u64,
    pub keepalives: u64,
    pub ipv6_source_spoofed: u64,
    pub ipv6_link_local: u64,
    pub stale_source: u64,
    pub outside_esp: u64,
    pub too_big_sent: u64,
    pub too_big_limited: u64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub fn record_drop(&self, d: IngressDrop) {
        match d {
            IngressDrop::UnknownTunnelSource => Self::bump(&self.unknown_tunnel_source),
            IngressDrop::InnerAddressMismatch => Self::bump(&self.inner_address_mismatch),
        }
    }
    pub fn snapshot(&self) -> CounterSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            encapsulated: g(&self.encapsulated),
            decapsulated: g(&self.decapsulated),
            no_binding: g(&self.no_binding),
            malformed: g(&self.malformed),
            unknown_tunnel_source: g(&self.unknown_tunnel_source),
            inner_address_mismatch: g(&self.inner_address_mismatch),
            loops: g(&self.loops),
            send_errors: g(&self.send_errors),
            keepalives: g(&self.keepalives),
            ipv6_source_spoofed: g(&self.ipv6_source_spoofed),
            ipv6_link_local: g(&self.ipv6_link_local),
            stale_source: g(&self.stale_source),
            outside_esp: g(&self.outside_esp),
            too_big_sent: g(&self.too_big_sent),
            too_big_limited: g(&self.too_big_limited),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::binding::{Encapsulation, TunnelBinding};
    use std::net::SocketAddrV4;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
    const HOA: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 5);
    const CN: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);

    fn table(encapsulation: Encapsulation, port: u16) -> BindingTable {
        let mut t = BindingTable::default();
        t.insert(TunnelBinding {
            home: HOA,
            local: HA,
            remote: SocketAddrV4::new(COA, port),
            encapsulation,
        });
        t
    }

    #[test]
    fn ha_accepts_registered_coa_and_home_address_only() {
        let t = table(Encapsulation::IpInIp, 0);
        let coa = Endpoint::ipip(COA);
        assert_eq!(check(Role::HomeAgent, &t, &coa, HOA, CN), Ok(HOA));
        assert_eq!(
            check(Role::HomeAgent, &t, &Endpoint::ipip(CN), HOA, CN),
            Err(IngressDrop::UnknownTunnelSource)
        );
        assert_eq!(
            check(Role::HomeAgent, &t, &coa, CN, HOA),
            Err(IngressDrop::InnerAddressMismatch)
        );
    }

    #[test]
    fn mn_accepts_its_ha_tunnelling_to_its_home_address_only() {
        let mut t = BindingTable::default();
        t.insert(TunnelBinding {
            home: HOA,
            local: COA,
            remote: SocketAddrV4::new(HA, 0),
            encapsulation: Encapsulation::IpInIp,
        });
        let ha = Endpoint::ipip(HA);
        assert_eq!(check(Role::MobileNode, &t, &ha, CN, HOA), Ok(HOA));
        assert_eq!(
            check(Role::MobileNode, &t, &ha, HOA, CN),
            Err(IngressDrop::InnerAddressMismatch)
        );
        assert_eq!(
            check(Role::MobileNode, &t, &Endpoint::ipip(CN), CN, HOA),
            Err(IngressDrop::UnknownTunnelSource)
        );
    }

    #[test]
    fn udp_tunnel_source_includes_the_port() {
        let t = table(Encapsulation::Udp, 40000);
        let good = Endpoint::new(Encapsulation::Udp, SocketAddrV4::new(COA, 40000));
        let other_port = Endpoint::new(Encapsulation::Udp, SocketAddrV4::new(COA, 40001));
        let as_ipip = Endpoint::ipip(COA);
        assert_eq!(check(Role::HomeAgent, &t, &good, HOA, CN), Ok(HOA));
        assert_eq!(
            check(Role::HomeAgent, &t, &other_port, HOA, CN),
            Err(IngressDrop::UnknownTunnelSource)
        );
        assert_eq!(
            check(Role::HomeAgent, &t, &as_ipip, HOA, CN),
            Err(IngressDrop::UnknownTunnelSource)
        );
    }

    #[test]
    fn drops_are_counted_by_reason() {
        let c = Counters::default();
        c.record_drop(IngressDrop::UnknownTunnelSource);
        c.record_drop(IngressDrop::InnerAddressMismatch);
        c.record_drop(IngressDrop::InnerAddressMismatch);
        let s = c.snapshot();
        assert_eq!((s.unknown_tunnel_source, s.inner_address_mismatch), (1, 2));
    }
}
