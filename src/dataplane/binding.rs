//! The tunnel endpoints of each binding, indexed both ways: by home
//! address (to encapsulate) and by outer source (to demultiplex many
//! bindings arriving on one raw or UDP socket at the HA).
//!
//! A binding that moves leaves datagrams on its old path: what the node
//! sent through its previous care-of address before it had the new
//! registration's reply, still on its way when the home agent moved the
//! binding (from mode 'mc' to a trusted network the registration goes
//! straight to the home agent, the last data through the VPN gateway
//! behind it). Dropped, that is user data lost at each such handover; so
//! the old endpoint still passes the binding's datagrams for
//! [`MOVE_GRACE`] ([`BindingTable::left_at`]), as it did a moment before.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::Serialize;

pub use crate::ha::binding::{Ipv6Binding, Ipv6TunnelTo};

/// How long a moved binding's previous tunnel endpoint still passes its
/// datagrams: longer than the old path can lag behind the new one (a VPN
/// gateway's detour and ESP, under load).
pub const MOVE_GRACE: Duration = Duration::from_secs(3);

/// How datagrams of one binding are carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encapsulation {
    /// IP protocol 4 (RFC 2003).
    IpInIp,
    /// MIP Tunnel Data in UDP on port 434 (RFC 3519), for NATs and firewalls.
    Udp,
}

/// Which end of the tunnel this node is: it decides which inner address
/// names the binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Tunnels datagrams *to* home addresses; receives reverse-tunnelled
    /// datagrams *from* them (RFC 3024).
    HomeAgent,
    /// Tunnels datagrams *from* its home address to the HA.
    MobileNode,
}

/// One binding as the data plane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TunnelBinding {
    /// The mobile node's home address.
    pub home: Ipv4Addr,
    /// Local tunnel endpoint: the HA's address, or the MN's care-of address.
    pub local: Ipv4Addr,
    /// Remote tunnel endpoint. For IP-in-IP the port is 0; for RFC 3519 it
    /// is the UDP source the registration came from (after any NAT).
    pub remote: SocketAddrV4,
    pub encapsulation: Encapsulation,
}

impl TunnelBinding {
    fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.encapsulation, self.remote)
    }
}

/// Where a tunnelled datagram came from, as the demultiplexer keys it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub encapsulation: Encapsulation,
    pub addr: SocketAddrV4,
}

impl Endpoint {
    pub fn new(encapsulation: Encapsulation, addr: SocketAddrV4) -> Self {
        let addr = match encapsulation {
            Encapsulation::IpInIp => SocketAddrV4::new(*addr.ip(), 0),
            Encapsulation::Udp => addr,
        };
        Endpoint {
            encapsulation,
            addr,
        }
    }
    pub fn ipip(addr: Ipv4Addr) -> Self {
        Self::new(Encapsulation::IpInIp, SocketAddrV4::new(addr, 0))
    }
}

/// All bindings of one data plane.
#[derive(Debug, Default, Clone)]
pub struct BindingTable {
    by_home: HashMap<Ipv4Addr, TunnelBinding>,
    // Several home addresses may share one remote endpoint (e.g. many MNs
    // behind one foreign agent care-of address).
    by_endpoint: HashMap<Endpoint, Vec<Ipv4Addr>>,
    /// RFC 5454: the IPv6 prefix registered with a home address, and where
    /// its IPv6 goes. Set apart from the tunnel ([`Self::set_ipv6`]): a
    /// tunnel's move keeps it.
    ipv6: HashMap<Ipv4Addr, Ipv6Binding>,
    /// Bindings that moved off an endpoint, until when that endpoint still
    /// passes their datagrams ([`MOVE_GRACE`]); few (the moves of the last
    /// seconds), pruned at each insert.
    left: Vec<(Endpoint, Ipv4Addr, Instant)>,
}

impl BindingTable {
    /// Room for `n` tunnels in all, now: a home agent's table doubling at
    /// a million bindings stood its loop still (issue 14 §4).
    pub fn reserve(&mut self, n: usize) {
        let more = n.saturating_sub(self.by_home.len());
        self.by_home.reserve(more);
        self.by_endpoint.reserve(more);
    }

    /// Adds or replaces the binding of `b.home`; returns the previous one.
    pub fn insert(&mut self, b: TunnelBinding) -> Option<TunnelBinding> {
        self.insert_at(b, Instant::now())
    }

    /// [`Self::insert`] at `now`: a binding moved to another endpoint
    /// leaves its old one passing its datagrams until `now` +
    /// [`MOVE_GRACE`].
    pub fn insert_at(&mut self, b: TunnelBinding, now: Instant) -> Option<TunnelBinding> {
        let ep = b.endpoint();
        self.left
            .retain(|(e, h, until)| *until > now && !(*h == b.home && *e == ep));
        let old = self.unindex(b.home);
        if let Some(o) = old.filter(|o| o.endpoint() != ep) {
            self.left.push((o.endpoint(), b.home, now + MOVE_GRACE));
        }
        self.by_endpoint
            .entry(b.endpoint())
            .or_default()
            .push(b.home);
        self.by_home.insert(b.home, b);
        old
    }

    /// Removes the binding of `home`, its IPv6 prefix with it.
    pub fn remove(&mut self, home: Ipv4Addr) -> Option<TunnelBinding> {
        self.ipv6.remove(&home);
        // Gone, not moved: no grace.
        self.left.retain(|(_, h, _)| *h != home);
        self.unindex(home)
    }

    /// Gives the binding of `home` an IPv6 prefix, or takes it away.
    pub fn set_ipv6(&mut self, home: Ipv4Addr, v6: Option<Ipv6Binding>) {
        match v6 {
            Some(v6) => self.ipv6.insert(home, v6),
            None => self.ipv6.remove(&home),
        };
    }

    pub fn ipv6_of(&self, home: Ipv4Addr) -> Option<Ipv6Binding> {
        self.ipv6.get(&home).copied()
    }

    /// The home address whose IPv6 prefix holds `a`, with that prefix.
    /// Prefixes never overlap (the HA's configuration refuses it).
    pub fn home_of_ipv6(&self, a: Ipv6Addr) -> Option<(Ipv4Addr, Ipv6Binding)> {
        self.ipv6
            .iter()
            .find(|(_, v6)| v6.prefix.contains(&a))
            .map(|(h, v6)| (*h, *v6))
    }

    fn unindex(&mut self, home: Ipv4Addr) -> Option<TunnelBinding> {
        let old = self.by_home.remove(&home)?;
        let ep = old.endpoint();
        if let Some(v) = self.by_endpoint.get_mut(&ep) {
            v.retain(|h| *h != home);
            if v.is_empty() {
                self.by_endpoint.remove(&ep);
            }
        }
        Some(old)
    }

    pub fn get(&self, home: Ipv4Addr) -> Option<&TunnelBinding> {
        self.by_home.get(&home)
    }

    /// Home addresses whose tunnel ends at `ep`.
    pub fn homes_at(&self, ep: &Endpoint) -> &[Ipv4Addr] {
        self.by_endpoint.get(ep).map_or(&[], Vec::as_slice)
    }

    /// Home addresses whose binding moved off `ep` less than
    /// [`MOVE_GRACE`] before `now` (and is still bound elsewhere).
    pub fn left_at(&self, ep: &Endpoint, now: Instant) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let ep = *ep;
        self.left
            .iter()
            .filter(move |(e, _, until)| *e == ep && *until > now)
            .map(|(_, h, _)| *h)
    }

    pub fn len(&self) -> usize {
        self.by_home.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_home.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &TunnelBinding> {
        self.by_home.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(home: [u8; 4], remote: [u8; 4]) -> TunnelBinding {
        TunnelBinding {
            home: home.into(),
            local: Ipv4Addr::new(192, 0, 2, 1),
            remote: SocketAddrV4::new(remote.into(), 0),
            encapsulation: Encapsulation::IpInIp,
        }
    }

    #[test]
    fn moving_a_binding_reindexes_its_endpoint() {
        let mut t = BindingTable::default();
        t.insert(b([10, 9, 0, 1], [198, 51, 100, 1]));
        t.insert(b([10, 9, 0, 2], [198, 51, 100, 1]));
        let old_ep = Endpoint::ipip([198, 51, 100, 1].into());
        assert_eq!(t.homes_at(&old_ep).len(), 2);
        t.insert(b([10, 9, 0, 1], [198, 51, 100, 2]));
        assert_eq!(t.homes_at(&old_ep), &[Ipv4Addr::new(10, 9, 0, 2)]);
        let new_ep = Endpoint::ipip([198, 51, 100, 2].into());
        assert_eq!(t.homes_at(&new_ep), &[Ipv4Addr::new(10, 9, 0, 1)]);
        t.remove([10, 9, 0, 2].into());
        assert!(t.homes_at(&old_ep).is_empty());
        assert_eq!(t.len(), 1);
    }

    /// A move leaves the old endpoint passing the binding for the grace,
    /// and no longer; a removal ends it at once.
    #[test]
    fn a_moved_binding_passes_at_its_old_endpoint_for_the_grace_only() {
        let mut t = BindingTable::default();
        let t0 = Instant::now();
        let home = Ipv4Addr::new(10, 9, 0, 1);
        let old_ep = Endpoint::ipip([198, 51, 100, 1].into());
        t.insert_at(b([10, 9, 0, 1], [198, 51, 100, 1]), t0);
        assert_eq!(t.left_at(&old_ep, t0).count(), 0, "no move yet");
        t.insert_at(b([10, 9, 0, 1], [198, 51, 100, 2]), t0);
        assert!(t.homes_at(&old_ep).is_empty());
        assert_eq!(t.left_at(&old_ep, t0).collect::<Vec<_>>(), vec![home]);
        let later = t0 + MOVE_GRACE;
        assert_eq!(t.left_at(&old_ep, later).count(), 0, "the grace is over");
        // Back on the old endpoint: bound there again, not left.
        t.insert_at(b([10, 9, 0, 1], [198, 51, 100, 1]), t0);
        assert_eq!(t.homes_at(&old_ep), &[home]);
        assert_eq!(t.left_at(&old_ep, t0).count(), 0);
        let new_ep = Endpoint::ipip([198, 51, 100, 2].into());
        assert_eq!(t.left_at(&new_ep, t0).collect::<Vec<_>>(), vec![home]);
        t.remove(home);
        assert_eq!(t.left_at(&new_ep, t0).count(), 0, "deregistered: no grace");
    }
}
