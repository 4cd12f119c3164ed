//! The mobile node's last look at an outer datagram before it leaves the
//! userspace plane: its source must be an address the node has now, and a
//! tunnel from the TIA must stay inside ESP (RFC 5266 §3.1.3: outside the
//! enterprise, nothing of the home address leaves in the clear).
//!
//! Why a second line: mip4d withdraws the home source while it holds a
//! tunnel from a physical address (`crate::mn::node` tunnel.rs), but a
//! datagram routed into the tunnel device before that, or by any path
//! nobody foresaw (the lab's `flap` saw charon's unbound IKE_SA_INIT),
//! would otherwise leave as IP in IP from a care-of address that has gone,
//! the home address inside, across whatever link the kernel picks.
//!
//! The plane learns the node's addresses from mip4d's rtnetlink
//! address events ([`OuterSources::added`], [`OuterSources::removed`]),
//! and the TIA under the VPN guard from [`OuterSources::vpn_guard`]. The
//! guard is the kernel's rules that refuse what leaves from the TIA
//! outside charon's routes into ESP (`crate::daemons::mn::kernel`); a
//! source the plane knows as a TIA leaves only while those rules are in.
//! Sans-IO: the plane asks [`OuterSources::check`] right before the send.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

/// One [`OuterSources`] shared by its owner, who feeds it, and the planes
/// that check against it (read per datagram, written per address event).
pub type SharedSources = Arc<RwLock<OuterSources>>;

/// May a datagram leave from this source?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceVerdict {
    Send,
    /// The source is no address of the node (any more): counted
    /// `stale_source`.
    Stale,
    /// The source is a TIA and the VPN guard is not in force for it:
    /// counted `outside_esp`.
    OutsideEsp,
}

/// The node's current IPv4 addresses and its TIAs.
#[derive(Debug, Default, Clone)]
pub struct OuterSources {
    /// (address, interface index): an address may sit on two links, and
    /// goes only when its last one reports it removed.
    addresses: HashSet<(Ipv4Addr, u32)>,
    /// Addresses charon handed out as TIAs while they last: they carry the
    /// tunnel only inside ESP.
    tias: HashSet<Ipv4Addr>,
    /// The TIA whose VPN guard rules are installed.
    guarded: Option<Ipv4Addr>,
}

impl OuterSources {
    /// RTM_NEWADDR: `a` is on interface `ifindex`.
    pub fn added(&mut self, ifindex: u32, a: Ipv4Addr) {
        self.addresses.insert((a, ifindex));
    }

    /// RTM_DELADDR: `a` left interface `ifindex`. A TIA that is nowhere
    /// any more is forgotten (the next one is told again).
    pub fn removed(&mut self, ifindex: u32, a: Ipv4Addr) {
        self.addresses.remove(&(a, ifindex));
        if !self.has(a) {
            self.tias.remove(&a);
        }
    }

    /// The VPN guard for `tia` was installed (`Some`), or removed.
    pub fn vpn_guard(&mut self, tia: Option<Ipv4Addr>) {
        if let Some(t) = tia {
            self.tias.insert(t);
        }
        self.guarded = tia;
    }

    fn has(&self, a: Ipv4Addr) -> bool {
        self.addresses.iter().any(|(x, _)| *x == a)
    }

    /// Whether an outer datagram from `src` may leave now.
    pub fn check(&self, src: Ipv4Addr) -> SourceVerdict {
        if !self.has(src) {
            SourceVerdict::Stale
        } else if self.tias.contains(&src) && self.guarded != Some(src) {
            SourceVerdict::OutsideEsp
        } else {
            SourceVerdict::Send
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COA: Ipv4Addr = Ipv4Addr::new(10, 1, 20, 100);
    const TIA: Ipv4Addr = Ipv4Addr::new(10, 1, 200, 7);

    #[test]
    fn a_care_of_address_that_went_is_refused() {
        let mut s = OuterSources::default();
        assert_eq!(s.check(COA), SourceVerdict::Stale, "never seen");
        s.added(3, COA);
        assert_eq!(s.check(COA), SourceVerdict::Send);
        s.removed(3, COA);
        assert_eq!(s.check(COA), SourceVerdict::Stale);
    }

    #[test]
    fn an_address_on_two_links_stays_until_both_remove_it() {
        let mut s = OuterSources::default();
        s.added(3, COA);
        s.added(4, COA);
        s.removed(3, COA);
        assert_eq!(s.check(COA), SourceVerdict::Send);
        // A removal from a link it was never on changes nothing.
        s.removed(9, COA);
        assert_eq!(s.check(COA), SourceVerdict::Send);
        s.removed(4, COA);
        assert_eq!(s.check(COA), SourceVerdict::Stale);
    }

    #[test]
    fn a_tia_leaves_only_under_the_vpn_guard() {
        let mut s = OuterSources::default();
        s.added(3, TIA);
        s.vpn_guard(Some(TIA));
        assert_eq!(s.check(TIA), SourceVerdict::Send);
        // Mode 'mc' left (or the guard lifted) while the tunnel still
        // names the TIA, which stays on the access interface: refused.
        s.vpn_guard(None);
        assert_eq!(s.check(TIA), SourceVerdict::OutsideEsp);
        // Another TIA guarded: this one still is not.
        s.added(3, COA);
        s.vpn_guard(Some(COA));
        assert_eq!(s.check(TIA), SourceVerdict::OutsideEsp);
        // Gone and back as a plain address (a later DHCP lease): a
        // physical care-of address like any other.
        s.removed(3, TIA);
        assert_eq!(s.check(TIA), SourceVerdict::Stale);
        s.added(3, TIA);
        assert_eq!(s.check(TIA), SourceVerdict::Send);
    }
}
