//! The binding cache (RFC 5944 §3.8.1): home address -> care-of address,
//! lifetime and what the data plane needs to reach the mobile node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
    /// Boxed, not a `Vec`: 8 bytes less in each of a million bindings.
    pub nai: Option<Box<[u8]>>,
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

/// The `limit` items of `v` with the lowest keys, in key order: a
/// partial sort, O(n + limit log limit).
pub fn lowest<T, K: Ord>(mut v: Vec<T>, limit: usize, mut key: impl FnMut(&T) -> K) -> Vec<T> {
    if v.len() > limit {
        v.select_nth_unstable_by_key(limit, &mut key);
        v.truncate(limit);
    }
    v.sort_unstable_by_key(key);
    v
}

/// Bindings by home address, and their expiry order.
///
/// Sized for a million bindings (issue 14 §4): the bindings sit in one
/// slab (`Vec`), found by home address through a hash index of slab
/// positions; expiry is a min-heap of (deadline, home address). Insert,
/// lookup and removal are O(1) (the heap push O(log n)); the next expiry
/// is the heap's top, and each expired binding costs O(log n). A renewal
/// leaves its old heap entry behind: an entry whose deadline is not the
/// binding's any more is stale, dropped when it reaches the top, and the
/// heap is rebuilt when stale entries outnumber the bindings, so it never
/// holds more than twice as many entries as there are bindings.
///
/// One care-of address per home address: the HA declines simultaneous
/// bindings (RFC 5944 §3.8.3.1, code 1).
#[derive(Debug, Clone)]
pub struct BindingCache {
    slab: Vec<Binding>,
    by_home: HashMap<Ipv4Addr, u32>,
    expiry: BinaryHeap<Reverse<(u64, Ipv4Addr)>>,
    /// The origin of the heap's deadlines (nanoseconds, biased so that an
    /// instant before it still orders correctly).
    epoch: Instant,
}

impl Default for BindingCache {
    fn default() -> Self {
        BindingCache {
            slab: Vec::new(),
            by_home: HashMap::new(),
            expiry: BinaryHeap::new(),
            epoch: Instant::now(),
        }
    }
}

/// Deadlines before the epoch map below this, those after it above.
const BIAS: u64 = 1 << 63;

impl BindingCache {
    fn deadline(&self, t: Instant) -> u64 {
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX >> 1);
        match t.checked_duration_since(self.epoch) {
            Some(d) => BIAS.saturating_add(ns(d)),
            None => BIAS.saturating_sub(ns(self.epoch - t)),
        }
    }

    /// Makes room for `n` bindings in all, now. Filling a hash table
    /// beyond its room doubles it: at a million bindings that rehash and
    /// the new table's page faults held the registration that caused it
    /// (and every one queued behind it) for over a second. The daemon
    /// sizes the cache for every configured node at start and on reload.
    pub fn reserve(&mut self, n: usize) {
        let more = n.saturating_sub(self.len());
        self.slab.reserve(more);
        self.by_home.reserve(more);
        // The heap holds up to twice as many entries (stale renewals'),
        // and is rebuilt in place: it never grows past this either.
        let heap = Self::heap_limit(n) + 1;
        self.expiry.reserve(heap.saturating_sub(self.expiry.len()));
    }

    /// The most entries the expiry heap keeps for `n` bindings before it
    /// is rebuilt from them.
    fn heap_limit(n: usize) -> usize {
        2 * n + 64
    }

    /// How many bindings the cache holds without growing a table.
    pub fn capacity(&self) -> usize {
        self.slab.capacity().min(self.by_home.capacity())
    }

    pub fn get(&self, home: Ipv4Addr) -> Option<&Binding> {
        self.by_home.get(&home).map(|&i| &self.slab[i as usize])
    }

    /// Starts loading `home`'s binding, for a request about to be handled
    /// ([`crate::sys::prefetch`]).
    pub fn prefetch(&self, home: Ipv4Addr) {
        if let Some(b) = self
            .by_home
            .get(&home)
            .and_then(|&i| self.slab.get(i as usize))
        {
            crate::sys::prefetch::lines(b);
        }
    }

    /// Inserts or replaces; returns the previous binding.
    pub fn insert(&mut self, b: Binding) -> Option<Binding> {
        let key = (self.deadline(b.expires), b.home_address);
        let old = match self.by_home.get(&b.home_address) {
            Some(&i) => Some(std::mem::replace(&mut self.slab[i as usize], b)),
            None => {
                let i = u32::try_from(self.slab.len()).expect("fewer than 2^32 bindings");
                self.by_home.insert(b.home_address, i);
                self.slab.push(b);
                None
            }
        };
        if old.as_ref().map(|o| self.deadline(o.expires)) != Some(key.0) {
            self.expiry.push(Reverse(key));
        }
        self.tidy();
        old
    }

    pub fn remove(&mut self, home: Ipv4Addr) -> Option<Binding> {
        let i = self.by_home.remove(&home)? as usize;
        let b = self.slab.swap_remove(i);
        if let Some(moved) = self.slab.get(i) {
            self.by_home.insert(moved.home_address, i as u32);
        }
        self.tidy();
        Some(b)
    }

    /// The first `limit` bindings whose home address is above `after`
    /// (all when none), in address order: one pass over the slab and a
    /// partial sort, O(n + limit log limit), so that listing a million
    /// bindings a page at a time never holds the caller long.
    pub fn page(&self, after: Option<Ipv4Addr>, limit: usize) -> Vec<&Binding> {
        let v: Vec<&Binding> = self
            .slab
            .iter()
            .filter(|b| after.is_none_or(|a| b.home_address > a))
            .collect();
        lowest(v, limit, |b| b.home_address)
    }

    /// Unordered.
    pub fn iter(&self) -> impl Iterator<Item = &Binding> {
        self.slab.iter()
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// Whether heap entry `e` is a binding's current deadline.
    fn live(&self, &(deadline, home): &(u64, Ipv4Addr)) -> bool {
        self.get(home)
            .is_some_and(|b| self.deadline(b.expires) == deadline)
    }

    /// Drops stale entries from the top (so that the top is a binding's
    /// deadline) and rebuilds the heap when it is mostly stale.
    fn tidy(&mut self) {
        while let Some(Reverse(top)) = self.expiry.peek() {
            if self.live(top) {
                break;
            }
            self.expiry.pop();
        }
        if self.expiry.len() > Self::heap_limit(self.slab.len()) {
            // In place: a new heap would be a fresh allocation, its page
            // faults taken by this registration.
            let mut v = std::mem::take(&mut self.expiry).into_vec();
            v.clear();
            v.extend(
                self.slab
                    .iter()
                    .map(|b| Reverse((self.deadline(b.expires), b.home_address))),
            );
            self.expiry = BinaryHeap::from(v);
        }
    }

    /// The earliest expiry.
    pub fn next_expiry(&self) -> Option<Instant> {
        let Reverse((_, home)) = self.expiry.peek()?;
        self.get(*home).map(|b| b.expires)
    }

    /// Removes and returns every binding whose lifetime has run out, the
    /// earliest first.
    pub fn expire(&mut self, now: Instant) -> Vec<Binding> {
        let mut gone = Vec::new();
        while let Some(Reverse(top)) = self.expiry.peek().copied() {
            if !self.live(&top) {
                self.expiry.pop();
                continue;
            }
            match self.get(top.1) {
                Some(b) if b.expires <= now => {
                    self.expiry.pop();
                    gone.extend(self.remove(top.1));
                }
                _ => break,
            }
        }
        gone
    }

    /// Keeps only the bindings `keep` approves; returns the others.
    pub fn retain(&mut self, mut keep: impl FnMut(&Binding) -> bool) -> Vec<Binding> {
        let gone: Vec<Ipv4Addr> = self
            .slab
            .iter()
            .filter(|b| !keep(b))
            .map(|b| b.home_address)
            .collect();
        gone.into_iter().filter_map(|h| self.remove(h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn binding(home: u32, expires: Instant) -> Binding {
        Binding {
            home_address: Ipv4Addr::from(home),
            care_of_address: Ipv4Addr::new(192, 0, 2, 1),
            source: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 434),
            lifetime: 600,
            expires,
            identification: 1,
            flags: Flags(0),
            reverse_tunnel: false,
            tunnel: TunnelMode::Ipip,
            nai: None,
            ipv6: None,
            spi: 256,
        }
    }

    fn homes(v: &[Binding]) -> Vec<u32> {
        v.iter().map(|b| u32::from(b.home_address)).collect()
    }

    #[test]
    fn expiry_removes_exactly_the_bindings_whose_lifetime_ran_out() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = BindingCache::default();
        for (home, secs) in [(1, 30), (2, 10), (3, 20), (4, 40)] {
            c.insert(binding(home, t0 + s(secs)));
        }
        assert_eq!(c.next_expiry(), Some(t0 + s(10)));
        assert!(c.expire(t0 + s(9)).is_empty());
        assert_eq!(homes(&c.expire(t0 + s(25))), [2, 3]);
        assert_eq!(c.len(), 2);
        assert!(c.get(Ipv4Addr::from(2)).is_none() && c.get(Ipv4Addr::from(1)).is_some());
        assert_eq!(c.next_expiry(), Some(t0 + s(30)));
        assert_eq!(homes(&c.expire(t0 + s(40))), [1, 4]);
        assert!(c.is_empty() && c.next_expiry().is_none());
    }

    #[test]
    fn a_renewal_moves_the_expiry_and_a_removal_cancels_it() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = BindingCache::default();
        c.insert(binding(1, t0 + s(10)));
        c.insert(binding(2, t0 + s(20)));
        c.insert(binding(3, t0 + s(30)));
        // Renewed: 1 now outlives 2; 2 deregistered.
        let old = c.insert(binding(1, t0 + s(50)));
        assert_eq!(old.map(|b| b.expires), Some(t0 + s(10)));
        assert_eq!(
            c.remove(Ipv4Addr::from(2)).map(|b| b.expires),
            Some(t0 + s(20))
        );
        assert_eq!(c.next_expiry(), Some(t0 + s(30)));
        assert_eq!(homes(&c.expire(t0 + s(35))), [3]);
        assert_eq!(
            c.get(Ipv4Addr::from(1)).map(|b| b.expires),
            Some(t0 + s(50))
        );
        // A renewal to an earlier deadline is honoured too.
        c.insert(binding(1, t0 + s(40)));
        assert_eq!(c.next_expiry(), Some(t0 + s(40)));
        assert_eq!(homes(&c.expire(t0 + s(40))), [1]);
        assert!(c.is_empty());
    }

    #[test]
    fn renewals_do_not_grow_the_expiry_heap_without_bound() {
        let t0 = Instant::now();
        let mut c = BindingCache::default();
        for home in 0..100 {
            c.insert(binding(home, t0 + Duration::from_secs(600)));
        }
        for round in 1..=50u64 {
            for home in 0..100 {
                c.insert(binding(home, t0 + Duration::from_secs(600 + round)));
            }
        }
        assert!(c.expiry.len() <= 2 * c.len() + 64, "{}", c.expiry.len());
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(650)));
        assert_eq!(c.expire(t0 + Duration::from_secs(650)).len(), 100);
    }

    /// A cache sized for `n` fills to `n` without growing a table (no
    /// rehash in the middle of a registration), renewals included.
    #[test]
    fn a_cache_sized_for_n_bindings_fills_without_growing() {
        let t0 = Instant::now();
        let n = 5000;
        let mut c = BindingCache::default();
        c.reserve(n);
        let (room, heap) = (c.capacity(), c.expiry.capacity());
        assert!(room >= n && heap >= n, "{room} {heap}");
        for home in 0..n as u32 {
            c.insert(binding(home, t0 + Duration::from_secs(600)));
        }
        // Renewals, each a new deadline: the heap fills with stale
        // entries and is rebuilt, in the room it has.
        for round in 1..=5 {
            for home in 0..n as u32 {
                c.insert(binding(home, t0 + Duration::from_secs(600 + round)));
            }
        }
        assert_eq!(c.len(), n);
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(605)));
        assert_eq!((c.capacity(), c.expiry.capacity()), (room, heap));
        // Sized again for as many: nothing moves.
        c.reserve(n);
        assert_eq!(c.capacity(), room);
    }

    #[test]
    fn pages_list_every_binding_once_in_address_order() {
        let t0 = Instant::now();
        let mut c = BindingCache::default();
        // Inserted out of order, some removed.
        for home in (0..50u32).rev().chain(50..100) {
            c.insert(binding(home * 7 % 101, t0));
        }
        c.remove(Ipv4Addr::from(7));
        let mut want: Vec<u32> = c.iter().map(|b| u32::from(b.home_address)).collect();
        want.sort_unstable();
        let (mut got, mut after) = (Vec::new(), None);
        loop {
            let page = c.page(after, 8);
            got.extend(page.iter().map(|b| u32::from(b.home_address)));
            if page.len() < 8 {
                break;
            }
            after = page.last().map(|b| b.home_address);
        }
        assert_eq!(got, want);
        assert!(c.page(Some(Ipv4Addr::from(1000)), 8).is_empty());
    }

    #[test]
    fn lookups_survive_removals_that_move_the_slab() {
        let t0 = Instant::now();
        let mut c = BindingCache::default();
        for home in 0..10 {
            c.insert(binding(home, t0 + Duration::from_secs(u64::from(home) + 1)));
        }
        let gone = c.retain(|b| u32::from(b.home_address) % 3 != 0);
        assert_eq!(gone.len(), 4);
        for home in 0..10u32 {
            let b = c.get(Ipv4Addr::from(home));
            assert_eq!(b.is_some(), home % 3 != 0, "{home}");
            assert!(b.is_none_or(|b| u32::from(b.home_address) == home));
        }
        assert_eq!(
            homes(&c.expire(t0 + Duration::from_secs(10))),
            [1, 2, 4, 5, 7, 8]
        );
    }
}
