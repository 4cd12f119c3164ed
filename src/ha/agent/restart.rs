//! What survives a restart of the daemon: the binding cache and the
//! nodes' replay state exported, and restored by the next instance
//! (RFC 5944 §5.7: a restored binding never accepts an old
//! identification).

use super::*;

impl HomeAgent {
    /// Whether anything [`export`](Self::export) saves changed since the
    /// last call; the daemon saves then, before it sends the replies
    /// queued (an accepted reply promises a binding the next instance
    /// must still know).
    pub fn take_changed(&mut self) -> bool {
        !self.take_changes().is_empty()
    }

    /// What changed since the last call, each node and home address once
    /// (see [`take_changed`](Self::take_changed)).
    pub fn take_changes(&mut self) -> Changes {
        let mut c = std::mem::take(&mut self.changes);
        c.nodes.sort_unstable();
        c.nodes.dedup();
        c.bindings.sort_unstable();
        c.bindings.dedup();
        c
    }

    /// One node's saved state (by SPI), if it is configured.
    pub fn saved_node(&self, spi: u32) -> Option<SavedNode> {
        let n = &self.nodes[*self.by_spi.get(&spi)?];
        Some(SavedNode {
            spi,
            replay: n.replay.state(),
            assigned: n.assigned,
        })
    }

    /// One binding as saved, if there is one for `home`.
    pub fn saved_binding(
        &self,
        home: Ipv4Addr,
        now: Instant,
        wall: SystemTime,
    ) -> Option<SavedBinding> {
        self.bindings
            .get(home)
            .map(|b| SavedBinding::of(b, now, wall))
    }

    /// The binding cache, the nodes' replay state and pool addresses, as
    /// the next instance of the daemon needs them. `now` is monotonic,
    /// `wall` the same moment in wall-clock time.
    pub fn export(&self, now: Instant, wall: SystemTime) -> SavedCache {
        SavedCache {
            bindings: self
                .bindings
                .iter()
                .map(|b| SavedBinding::of(b, now, wall))
                .collect(),
            nodes: self
                .nodes
                .iter()
                .map(|n| SavedNode {
                    spi: n.conf.spi,
                    replay: n.replay.state(),
                    assigned: n.assigned,
                })
                .collect(),
        }
    }

    /// Takes up what an earlier instance saved ([`export`](Self::export)),
    /// before the first datagram is handled. Replay state comes back for
    /// every node still configured under the same method (RFC 5944 §5.7:
    /// an Identification accepted before the restart is still old after
    /// it). A binding comes back when its lifetime has not run out and the
    /// configuration still allows it: its node (SPI) is configured and
    /// owns the home address, and its tunnel mode is still offered. Each
    /// restored binding's [`Output::BindingUp`] is queued: the daemon
    /// installs it again before it answers anything, and one that cannot
    /// be installed is dropped ([`install_result`](Self::install_result)).
    pub fn restore(&mut self, saved: SavedCache, now: Instant, wall: SystemTime) -> Restored {
        let mut r = Restored::default();
        for s in &saved.nodes {
            let Some(&i) = self.by_spi.get(&s.spi) else {
                continue;
            };
            if self.nodes[i].replay.restore(&s.replay) {
                self.publish_replay(i);
                r.replay_states += 1;
            }
            let pool = self.cfg.address_pool;
            if let Some(a) = s.assigned.filter(|&a| pool.is_some_and(|p| p.contains(a))) {
                if !self.nodes.iter().any(|n| n.assigned == Some(a)) {
                    self.nodes[i].assigned = Some(a);
                }
            }
        }
        for s in saved.bindings {
            let home = s.home_address;
            let Some(b) = s.binding(now, wall) else {
                r.expired.push(home);
                continue;
            };
            if let Err(why) = self.restorable(&b) {
                r.refused.push((home, why));
                continue;
            }
            info!(home_address = %home, care_of = %b.care_of_address, remaining = b.expires.saturating_duration_since(now).as_secs(), "binding restored");
            self.out.push_back(Output::BindingUp(b.clone()));
            self.bindings.insert(b);
            r.bindings.push(home);
        }
        self.changes.all = true;
        r
    }

    /// Whether the configuration still allows a saved binding.
    pub(super) fn restorable(&self, b: &Binding) -> Result<(), &'static str> {
        let &i = self
            .by_spi
            .get(&b.spi)
            .ok_or("its mobile node is no longer configured")?;
        let node = &self.nodes[i];
        if !node.owns(b.home_address) {
            return Err("the home address is no longer its node's");
        }
        if b.nai.is_some() && b.nai.as_deref() != node.conf.nai.as_deref() {
            return Err("its node's NAI changed");
        }
        if b.ipv6
            .is_some_and(|v6| node.conf.ipv6_prefix != Some(v6.prefix))
        {
            return Err("its IPv6 prefix is no longer its node's (RFC 5454)");
        }
        if b.tunnel == TunnelMode::Udp && !self.cfg.udp_tunnelling {
            return Err("UDP tunnelling (RFC 3519) is no longer offered");
        }
        if self.bindings.get(b.home_address).is_some() {
            return Err("listed twice");
        }
        Ok(())
    }
}
