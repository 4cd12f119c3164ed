//! Which kernel tunnel link each binding of a home agent uses, shared per
//! endpoint pair (the I/O is [`super::kernel`]'s and mip4-ha's).
//!
//! The kernel keys an `ipip` (and a `sit`) link by its endpoints and
//! refuses a second link with the same local and remote address. Every
//! mobile node registered through one foreign agent has that agent's
//! care-of address (RFC 5944 §3), so the home agent's tunnels to them are
//! one link: shared by the bindings that tunnel to its remote address,
//! each routing its home address (or IPv6 prefix) into it, and removed
//! when the last of them goes. The home agent's end is the same for all
//! links, so the remote address alone names a link.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// The links in use, by remote address, with the home addresses of the
/// bindings that use them. `D` is what a link is to the caller (its
/// device).
#[derive(Debug)]
pub struct SharedLinks<D> {
    by_remote: BTreeMap<Ipv4Addr, (D, BTreeSet<Ipv4Addr>)>,
    remote_of: HashMap<Ipv4Addr, Ipv4Addr>,
}

impl<D> Default for SharedLinks<D> {
    fn default() -> Self {
        SharedLinks {
            by_remote: BTreeMap::new(),
            remote_of: HashMap::new(),
        }
    }
}

impl<D: Clone> SharedLinks<D> {
    /// The link to `remote`, if one is in use (else the caller makes one
    /// and [`join`](Self::join)s it).
    pub fn link(&self, remote: Ipv4Addr) -> Option<&D> {
        self.by_remote.get(&remote).map(|(d, _)| d)
    }

    /// The remote address of the link `home` uses.
    pub fn remote_of(&self, home: Ipv4Addr) -> Option<Ipv4Addr> {
        self.remote_of.get(&home).copied()
    }

    /// `home` uses the link to `remote` (`dev` when it is new to the
    /// table; an existing link keeps its device). The link it used before
    /// (a move to another care-of address) is left: returned when `home`
    /// was its last user, to be removed.
    pub fn join(&mut self, remote: Ipv4Addr, home: Ipv4Addr, dev: D) -> Option<D> {
        if self.remote_of(home) == Some(remote) {
            return None;
        }
        let gone = self.leave(home);
        self.by_remote
            .entry(remote)
            .or_insert_with(|| (dev, BTreeSet::new()))
            .1
            .insert(home);
        self.remote_of.insert(home, remote);
        gone
    }

    /// `home` uses no link any more: the one it used, when it was its
    /// last user (to be removed).
    pub fn leave(&mut self, home: Ipv4Addr) -> Option<D> {
        let remote = self.remote_of.remove(&home)?;
        let (_, users) = self.by_remote.get_mut(&remote)?;
        users.remove(&home);
        if !users.is_empty() {
            return None;
        }
        self.by_remote.remove(&remote).map(|(d, _)| d)
    }

    /// The home addresses routed into the link to `remote`.
    pub fn users(&self, remote: Ipv4Addr) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.by_remote
            .get(&remote)
            .into_iter()
            .flat_map(|(_, u)| u.iter().copied())
    }

    /// Every link in use.
    pub fn links(&self) -> impl Iterator<Item = &D> {
        self.by_remote.values().map(|(d, _)| d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FA: Ipv4Addr = Ipv4Addr::new(10, 1, 10, 2);
    const FA2: Ipv4Addr = Ipv4Addr::new(10, 1, 20, 2);
    const MN1: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 5);
    const MN2: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 6);

    #[test]
    fn nodes_behind_one_foreign_agent_share_its_link_until_the_last_leaves() {
        let mut l = SharedLinks::default();
        assert_eq!(l.link(FA), None);
        assert_eq!(l.join(FA, MN1, "a"), None);
        // The second node finds the link and keeps its device.
        assert_eq!(l.link(FA), Some(&"a"));
        assert_eq!(l.join(FA, MN2, "b"), None);
        assert_eq!(l.link(FA), Some(&"a"));
        assert_eq!(l.users(FA).collect::<Vec<_>>(), vec![MN1, MN2]);
        // A renewal through the same agent changes nothing.
        assert_eq!(l.join(FA, MN1, "c"), None);
        assert_eq!(l.links().count(), 1);
        assert_eq!(l.leave(MN1), None);
        assert_eq!(l.link(FA), Some(&"a"));
        assert_eq!(l.leave(MN2), Some("a"));
        assert_eq!(l.link(FA), None);
        assert_eq!(l.leave(MN2), None);
    }

    #[test]
    fn a_move_leaves_the_old_link_which_goes_with_its_last_user() {
        let mut l = SharedLinks::default();
        l.join(FA, MN1, "a");
        l.join(FA, MN2, "a");
        // MN1 moves on: the link stays for MN2.
        assert_eq!(l.join(FA2, MN1, "b"), None);
        assert_eq!(l.remote_of(MN1), Some(FA2));
        assert_eq!(l.users(FA).collect::<Vec<_>>(), vec![MN2]);
        // MN2 follows: the first link has no user left.
        assert_eq!(l.join(FA2, MN2, "x"), Some("a"));
        assert_eq!(l.users(FA2).collect::<Vec<_>>(), vec![MN1, MN2]);
        assert_eq!(l.links().collect::<Vec<_>>(), vec![&"b"]);
    }
}
