//! Which kernel ipip link and which reverse-tunnel table each visitor of
//! mip4-fa's kernel backend uses (the I/O is [`super::kernel`]'s).
//!
//! One link per home agent, shared by that HA's visitors: the kernel keys
//! an ipip link by its endpoints, and they are the same for all of them
//! (the care-of address and the HA). Per link a routing table whose only
//! route is "everything into this link": a visitor's reverse-tunnel rule
//! (RFC 3024 §5, `from HoA iif LINK`) looks it up, so that its datagrams
//! go to its own home agent. Tables are numbered after the configured
//! `reverse_tunnel_table` (which keeps the visitors' host routes), the
//! lowest free one first, skipping the kernel's own (253-255).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// What every FA link is named with: `mip4fa-` and the HA's address in
/// hex (15 characters). Distinct from mip4-ha's `mip4-` links, whose
/// ingress rule must not judge the FA's.
pub const LINK_PREFIX: &str = "mip4fa-";

/// The link to home agent `ha`.
pub fn link_name(ha: Ipv4Addr) -> String {
    crate::dataplane::kernel::named(LINK_PREFIX, ha)
}

/// A home agent's link and table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaLink {
    pub name: String,
    pub table: u32,
}

#[derive(Debug)]
struct Entry {
    link: HaLink,
    visitors: BTreeSet<Ipv4Addr>,
}

/// The links in use and their visitors.
#[derive(Debug)]
pub struct HaLinks {
    base: u32,
    by_ha: BTreeMap<Ipv4Addr, Entry>,
}

impl HaLinks {
    /// `base`: the table of the visitors' host routes.
    pub fn new(base: u32) -> Self {
        HaLinks {
            base,
            by_ha: BTreeMap::new(),
        }
    }

    /// `home` is a visitor of `ha`: its link and table, and whether they
    /// are new (to be created). None when no table number is left.
    pub fn join(&mut self, ha: Ipv4Addr, home: Ipv4Addr) -> Option<(HaLink, bool)> {
        if let Some(e) = self.by_ha.get_mut(&ha) {
            e.visitors.insert(home);
            return Some((e.link.clone(), false));
        }
        let used: BTreeSet<u32> = self.by_ha.values().map(|e| e.link.table).collect();
        let table = (1..=u32::MAX - self.base)
            .map(|i| self.base + i)
            .find(|t| !used.contains(t) && !(253..=255).contains(t))?;
        let link = HaLink {
            name: link_name(ha),
            table,
        };
        self.by_ha.insert(
            ha,
            Entry {
                link: link.clone(),
                visitors: BTreeSet::from([home]),
            },
        );
        Some((link, true))
    }

    /// Whether `home` is a visitor of `ha` already.
    pub fn serves(&self, ha: Ipv4Addr, home: Ipv4Addr) -> bool {
        self.by_ha
            .get(&ha)
            .is_some_and(|e| e.visitors.contains(&home))
    }

    /// `home` is no longer a visitor of `ha`: the link and table when it
    /// was the last (to be removed).
    pub fn leave(&mut self, ha: Ipv4Addr, home: Ipv4Addr) -> Option<HaLink> {
        let e = self.by_ha.get_mut(&ha)?;
        e.visitors.remove(&home);
        if !e.visitors.is_empty() {
            return None;
        }
        self.by_ha.remove(&ha).map(|e| e.link)
    }

    /// Every visitor: (home agent, home address).
    pub fn visitors(&self) -> impl Iterator<Item = (Ipv4Addr, Ipv4Addr)> + '_ {
        self.by_ha
            .iter()
            .flat_map(|(ha, e)| e.visitors.iter().map(move |h| (*ha, *h)))
    }

    /// Every link in use, by home agent.
    pub fn links(&self) -> impl Iterator<Item = (Ipv4Addr, &HaLink)> {
        self.by_ha.iter().map(|(ha, e)| (*ha, &e.link))
    }
}

/// Whether interface `name` is an FA link (what a killed instance left).
pub fn is_fa_link(name: &str) -> bool {
    name.strip_prefix(LINK_PREFIX)
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HA1: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const HA2: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 3);
    const MN1: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 5);
    const MN2: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 6);

    #[test]
    fn visitors_of_one_home_agent_share_its_link_and_table() {
        let mut l = HaLinks::new(434);
        let (a, new) = l.join(HA1, MN1).unwrap();
        assert!(new);
        assert_eq!(a.name, "mip4fa-0a010102");
        assert_eq!(a.table, 435);
        assert!(!l.serves(HA1, MN2));
        assert_eq!(l.join(HA1, MN2), Some((a.clone(), false)));
        assert!(l.serves(HA1, MN2));
        // The first to leave keeps the link up for the other.
        assert_eq!(
            l.visitors().collect::<Vec<_>>(),
            vec![(HA1, MN1), (HA1, MN2)]
        );
        assert_eq!(l.leave(HA1, MN1), None);
        assert_eq!(l.leave(HA1, MN2), Some(a));
        assert_eq!(l.links().count(), 0);
    }

    #[test]
    fn each_home_agent_gets_a_table_of_its_own_and_freed_ones_are_reused() {
        let mut l = HaLinks::new(434);
        let (a, _) = l.join(HA1, MN1).unwrap();
        let (b, _) = l.join(HA2, MN2).unwrap();
        assert_ne!(a.table, b.table);
        assert_ne!(a.name, b.name);
        l.leave(HA1, MN1).unwrap();
        let (c, new) = l.join(HA1, MN1).unwrap();
        assert!(new);
        assert_eq!(c.table, a.table);
    }

    #[test]
    fn the_kernels_tables_are_never_taken_and_the_numbers_can_run_out() {
        let mut l = HaLinks::new(252);
        assert_eq!(l.join(HA1, MN1).unwrap().0.table, 256);
        let mut l = HaLinks::new(u32::MAX - 1);
        assert_eq!(l.join(HA1, MN1).unwrap().0.table, u32::MAX);
        assert_eq!(l.join(HA2, MN2), None);
    }

    #[test]
    fn only_the_fas_own_links_are_swept() {
        assert!(is_fa_link(&link_name(HA1)));
        assert!(!is_fa_link("mip4-0a016405"));
        assert!(!is_fa_link("mip4fa0"));
        assert!(!is_fa_link("mip4fa-eth0xyz1"));
        assert!(!is_fa_link("eth-t2"));
    }
}
