//! The latest state the bridge keeps while mip4d is absent, so it can send
//! a full snapshot when mip4d (re)connects: per IKE_SA its connection name,
//! endpoints (the VPN gateway is the remote one), local interface and TIA.
//!
//! Only an event that says an IKE_SA is alive (connecting, its TIA
//! installed or assigned, IKE_SA or CHILD_SA up, the new IKE_SA of a rekey
//! or a reestablishment) creates an entry; `ike_updown(down)` and charon's
//! IKE_DESTROYING remove it (the latter is all an IKE_SA that never came
//! up gets). Everything else about an IKE_SA the
//! state does not know changes nothing: charon's `ike_sa_t.destroy()`
//! fires `handle_vips(FALSE)` after `ike_updown(FALSE)`, and a rekeyed
//! IKE_SA is destroyed after `ike_rekey` moved its state on, so a release
//! that created entries would keep one per IKE_SA that ever existed.
//!
//! The state is bounded twice over: at most [`MAX_IKE_SAS`] entries,
//! each with at most [`MAX_CHILDREN`] CHILD_SA names, and its snapshot
//! message never longer than [`SNAPSHOT_BUDGET`] (below the frame limit of
//! [`super::proto::MAX_FRAME`]). Past a bound the oldest IKE_SA that is not
//! up goes first, then the oldest (lowest unique id) of all; each eviction
//! is counted.

use std::collections::BTreeMap;

use super::proto::{Event, IkeSa, IkeSaState, IkeState, PluginMsg, HEADER_LEN, MAX_FRAME};

/// Most IKE_SAs kept. A mobile node has one or two VPNs; a gateway
/// running the plugin has more, but mip4d only acts on the MN's.
pub const MAX_IKE_SAS: usize = 128;
/// Most CHILD_SA names kept per IKE_SA.
pub const MAX_CHILDREN: usize = 16;
/// Longest snapshot message body; a frame header and slack stay below
/// `MAX_FRAME`.
pub const SNAPSHOT_BUDGET: usize = MAX_FRAME - HEADER_LEN - 1024;

/// IKE_SAs by charon's unique id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    ike_sas: BTreeMap<u32, IkeSaState>,
    /// Entries dropped to stay within the bounds, since start.
    evicted: u64,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything known, for a snapshot.
    pub fn snapshot(&self) -> Vec<IkeSaState> {
        self.ike_sas.values().cloned().collect()
    }

    /// The snapshot as the message the bridge sends.
    pub fn snapshot_msg(&self) -> PluginMsg {
        PluginMsg::Snapshot {
            ike_sas: self.snapshot(),
        }
    }

    pub fn get(&self, unique_id: u32) -> Option<&IkeSaState> {
        self.ike_sas.get(&unique_id)
    }

    pub fn len(&self) -> usize {
        self.ike_sas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ike_sas.is_empty()
    }

    /// Entries dropped to stay within the bounds, since start.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Folds one hook into the state, then enforces the bounds.
    pub fn apply(&mut self, event: &Event) {
        self.fold(event);
        self.bound();
    }

    fn fold(&mut self, event: &Event) {
        match event {
            Event::HandleVips { ike, handle: true } => {
                self.entry(ike).tia.clone_from(&ike.vips);
            }
            Event::HandleVips { ike, handle: false } => {
                if let Some(sa) = self.known(ike) {
                    sa.tia.clear();
                }
            }
            Event::AssignVips { ike, assign: true } => {
                self.entry(ike).peer_vips.clone_from(&ike.vips);
            }
            Event::AssignVips { ike, assign: false } => {
                if let Some(sa) = self.known(ike) {
                    sa.peer_vips.clear();
                }
            }
            Event::IkeUpdate {
                ike,
                new_local,
                new_remote,
            } => {
                if let Some(sa) = self.known(ike) {
                    sa.local = new_local.or(sa.local);
                    sa.remote = new_remote.or(sa.remote);
                }
            }
            Event::IkeUpdown { ike, up: true } => {
                let sa = self.entry(ike);
                sa.up = true;
                sa.connecting = false;
            }
            Event::IkeState {
                ike,
                state: IkeState::Connecting,
            } => {
                let sa = self.entry(ike);
                sa.connecting = !sa.up;
            }
            Event::IkeState {
                ike,
                state: IkeState::Destroying,
            } => {
                self.ike_sas.remove(&ike.unique_id);
            }
            Event::IkeUpdown { ike, up: false } => {
                self.ike_sas.remove(&ike.unique_id);
            }
            Event::IkeRekey { ike, new_unique_id } => {
                // The new IKE_SA inherits everything (RFC 7296 §2.18); the
                // old one is gone.
                let mut sa = self
                    .ike_sas
                    .remove(&ike.unique_id)
                    .unwrap_or_else(|| fresh(ike));
                sa.unique_id = *new_unique_id;
                self.ike_sas.insert(*new_unique_id, sa);
            }
            Event::IkeReestablishPre { .. } => {}
            Event::IkeReestablishPost {
                ike,
                new_unique_id,
                new_local,
                new_remote,
                ..
            } => {
                // The new IKE_SA brings its own TIA (handle_vips follows);
                // until then it has the old one's name and new endpoints.
                let sa = self
                    .ike_sas
                    .entry(*new_unique_id)
                    .or_insert_with(|| IkeSaState {
                        name: ike.name.clone(),
                        unique_id: *new_unique_id,
                        ..Default::default()
                    });
                sa.local = new_local.or(sa.local);
                sa.remote = new_remote.or(sa.remote);
            }
            Event::ChildUpdown {
                ike,
                child,
                up: true,
            } => {
                let sa = self.entry(ike);
                sa.children.retain(|c| c != child);
                if sa.children.len() < MAX_CHILDREN {
                    sa.children.push(child.clone());
                }
            }
            Event::ChildUpdown {
                ike,
                child,
                up: false,
            } => {
                if let Some(sa) = self.known(ike) {
                    sa.children.retain(|c| c != child);
                }
            }
            Event::Roam { .. } => {}
        }
    }

    /// The IKE_SA's entry, created if new, endpoints refreshed.
    fn entry(&mut self, ike: &IkeSa) -> &mut IkeSaState {
        let sa = self
            .ike_sas
            .entry(ike.unique_id)
            .or_insert_with(|| fresh(ike));
        refresh(sa, ike);
        sa
    }

    /// The IKE_SA's entry if it is known, endpoints refreshed.
    fn known(&mut self, ike: &IkeSa) -> Option<&mut IkeSaState> {
        let sa = self.ike_sas.get_mut(&ike.unique_id)?;
        refresh(sa, ike);
        Some(sa)
    }

    /// Drops entries until both bounds hold.
    fn bound(&mut self) {
        while self.ike_sas.len() > MAX_IKE_SAS || self.snapshot_len() > SNAPSHOT_BUDGET {
            let victim = self
                .ike_sas
                .values()
                .find(|sa| !sa.up)
                .or_else(|| self.ike_sas.values().next())
                .map(|sa| sa.unique_id);
            let Some(id) = victim else { return };
            self.ike_sas.remove(&id);
            self.evicted += 1;
        }
    }

    /// Length of the snapshot message's body.
    fn snapshot_len(&self) -> usize {
        serde_json::to_vec(&self.snapshot_msg()).map_or(usize::MAX, |b| b.len())
    }
}

fn refresh(sa: &mut IkeSaState, ike: &IkeSa) {
    sa.name.clone_from(&ike.name);
    if ike.local.is_some() {
        sa.local = ike.local;
    }
    if ike.remote.is_some() {
        sa.remote = ike.remote;
    }
    if ike.local_ifname.is_some() {
        sa.local_ifname.clone_from(&ike.local_ifname);
    }
    if ike.mobike.is_some() {
        sa.mobike = ike.mobike;
    }
}

fn fresh(ike: &IkeSa) -> IkeSaState {
    IkeSaState {
        name: ike.name.clone(),
        unique_id: ike.unique_id,
        local: ike.local,
        remote: ike.remote,
        local_ifname: ike.local_ifname.clone(),
        mobike: ike.mobike,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::proto::Endpoint;
    use std::net::{IpAddr, Ipv4Addr};

    fn ep(last: u8) -> Option<Endpoint> {
        Some(Endpoint {
            addr: Ipv4Addr::new(192, 0, 2, last).into(),
            port: 4500,
        })
    }

    fn ike(id: u32, local: u8) -> IkeSa {
        IkeSa {
            name: "home".into(),
            unique_id: id,
            local: ep(local),
            remote: ep(1),
            local_ifname: Some("eth0".into()),
            vips: vec![],
            mobike: Some(true),
            child_sas: None,
        }
    }

    const TIA: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 200, 0, 1));

    #[test]
    fn tia_then_mobike_move_keeps_tia_and_takes_new_endpoint() {
        let mut s = State::new();
        let mut with_tia = ike(1, 10);
        with_tia.vips = vec![TIA];
        s.apply(&Event::HandleVips {
            ike: with_tia,
            handle: true,
        });
        s.apply(&Event::IkeUpdown {
            ike: ike(1, 10),
            up: true,
        });
        let mut moved = ike(1, 10);
        moved.local_ifname = Some("eth1".into());
        s.apply(&Event::IkeUpdate {
            ike: moved,
            new_local: ep(20),
            new_remote: ep(1),
        });
        let sa = s.get(1).unwrap();
        assert!(sa.up);
        assert_eq!(sa.tia, vec![TIA]);
        assert_eq!(sa.local, ep(20));
        assert_eq!(sa.local_ifname.as_deref(), Some("eth1"));
    }

    #[test]
    fn release_clears_tia_and_down_forgets_the_sa() {
        let mut s = State::new();
        let mut with_tia = ike(1, 10);
        with_tia.vips = vec![TIA];
        s.apply(&Event::HandleVips {
            ike: with_tia.clone(),
            handle: true,
        });
        s.apply(&Event::HandleVips {
            ike: with_tia,
            handle: false,
        });
        assert!(s.get(1).unwrap().tia.is_empty());
        s.apply(&Event::IkeUpdown {
            ike: ike(1, 10),
            up: false,
        });
        assert!(s.snapshot().is_empty());
    }

    #[test]
    fn rekey_moves_state_to_the_new_sa() {
        let mut s = State::new();
        let mut with_tia = ike(1, 10);
        with_tia.vips = vec![TIA];
        s.apply(&Event::HandleVips {
            ike: with_tia,
            handle: true,
        });
        s.apply(&Event::IkeRekey {
            ike: ike(1, 10),
            new_unique_id: 2,
        });
        assert!(s.get(1).is_none());
        assert_eq!(s.get(2).unwrap().tia, vec![TIA]);
        assert_eq!(s.get(2).unwrap().unique_id, 2);
    }

    #[test]
    fn children_follow_child_updown() {
        let mut s = State::new();
        for (child, up) in [("a", true), ("b", true), ("a", false)] {
            s.apply(&Event::ChildUpdown {
                ike: ike(1, 10),
                child: child.into(),
                up,
            });
        }
        assert_eq!(s.get(1).unwrap().children, vec!["b".to_string()]);
    }

    /// What charon fires over one IKE_SA's life, ending with `destroy()`:
    /// ike_updown(FALSE), then handle_vips(FALSE) and child_updown(FALSE)
    /// about an IKE_SA that is already gone.
    fn lifetime(s: &mut State, id: u32) {
        let mut with_tia = ike(id, 10);
        with_tia.vips = vec![TIA];
        s.apply(&Event::HandleVips {
            ike: with_tia.clone(),
            handle: true,
        });
        s.apply(&Event::IkeUpdown {
            ike: ike(id, 10),
            up: true,
        });
        s.apply(&Event::ChildUpdown {
            ike: ike(id, 10),
            child: "net".into(),
            up: true,
        });
        s.apply(&Event::IkeRekey {
            ike: ike(id, 10),
            new_unique_id: id + 1,
        });
        // The rekeyed IKE_SA is destroyed after its state moved on.
        s.apply(&Event::HandleVips {
            ike: ike(id, 10),
            handle: false,
        });
        s.apply(&Event::IkeUpdown {
            ike: ike(id + 1, 10),
            up: false,
        });
        s.apply(&Event::HandleVips {
            ike: with_tia,
            handle: false,
        });
        s.apply(&Event::ChildUpdown {
            ike: ike(id + 1, 10),
            child: "net".into(),
            up: false,
        });
        s.apply(&Event::AssignVips {
            ike: ike(id + 1, 10),
            assign: false,
        });
        s.apply(&Event::IkeUpdate {
            ike: ike(id + 1, 10),
            new_local: ep(20),
            new_remote: None,
        });
    }

    #[test]
    fn events_after_destroy_never_bring_an_ike_sa_back() {
        let mut s = State::new();
        lifetime(&mut s, 1);
        assert!(s.is_empty(), "{:?}", s.snapshot());
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn a_connecting_ike_sa_is_in_the_snapshot_until_it_is_up_or_destroyed() {
        let connecting = |id| Event::IkeState {
            ike: ike(id, 10),
            state: IkeState::Connecting,
        };
        let mut s = State::new();
        s.apply(&connecting(1));
        assert!(s.get(1).is_some_and(|sa| sa.connecting && !sa.up));
        s.apply(&Event::IkeUpdown {
            ike: ike(1, 10),
            up: true,
        });
        assert!(s.get(1).is_some_and(|sa| !sa.connecting && sa.up));
        // One that never comes up: charon fires no ike_updown for it, only
        // IKE_DESTROYING, then handle_vips(FALSE) from destroy().
        s.apply(&connecting(2));
        s.apply(&Event::IkeState {
            ike: ike(2, 10),
            state: IkeState::Destroying,
        });
        s.apply(&Event::HandleVips {
            ike: ike(2, 10),
            handle: false,
        });
        assert_eq!(s.snapshot().len(), 1);
        assert!(s.get(2).is_none());
    }

    #[test]
    fn a_thousand_lifetimes_and_rekeys_leave_nothing_behind() {
        let mut s = State::new();
        let mut up = ike(100_000, 10);
        up.vips = vec![TIA];
        s.apply(&Event::HandleVips {
            ike: up,
            handle: true,
        });
        for n in 0..1000 {
            lifetime(&mut s, 2 * n + 1);
        }
        // Only the one IKE_SA that is still alive.
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(100_000).unwrap().tia, vec![TIA]);
        assert_eq!(s.evicted(), 0);
    }

    #[test]
    fn state_and_snapshot_stay_bounded_under_any_events() {
        let mut s = State::new();
        // Long names that JSON escapes six-fold, four IPv6 TIAs, many
        // children: the worst an entry can be.
        let name: String = "\u{1}".repeat(200);
        let v6: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        for id in 0..(MAX_IKE_SAS as u32 + 8) {
            let mut i = ike(id, 10);
            i.name.clone_from(&name);
            i.local_ifname = Some(name.clone());
            i.vips = vec![v6; 4];
            s.apply(&Event::HandleVips {
                ike: i.clone(),
                handle: true,
            });
            s.apply(&Event::AssignVips {
                ike: i.clone(),
                assign: true,
            });
            for c in 0..(MAX_CHILDREN + 2) {
                s.apply(&Event::ChildUpdown {
                    ike: i.clone(),
                    child: format!("{name}{c}"),
                    up: true,
                });
            }
            assert!(s.len() <= MAX_IKE_SAS);
            assert!(s
                .snapshot()
                .iter()
                .all(|sa| sa.children.len() <= MAX_CHILDREN));
            let frame = crate::bridge::proto::encode(&s.snapshot_msg()).expect("fits a frame");
            assert!(frame.len() <= MAX_FRAME);
        }
        assert!(s.evicted() > 0);
        // The newest IKE_SA is kept.
        assert!(s.get(MAX_IKE_SAS as u32 + 7).is_some());
    }

    #[test]
    fn an_ike_sa_that_is_up_outlives_older_dead_ones() {
        let mut s = State::new();
        s.apply(&Event::IkeUpdown {
            ike: ike(1, 10),
            up: true,
        });
        for id in 2..(MAX_IKE_SAS as u32 + 10) {
            s.apply(&Event::AssignVips {
                ike: ike(id, 10),
                assign: true,
            });
        }
        assert_eq!(s.len(), MAX_IKE_SAS);
        assert!(s.get(1).unwrap().up, "the live VPN is kept");
    }

    #[test]
    fn reestablish_creates_the_new_sa_with_new_endpoints() {
        let mut s = State::new();
        s.apply(&Event::IkeUpdown {
            ike: ike(1, 10),
            up: true,
        });
        s.apply(&Event::IkeReestablishPost {
            ike: ike(1, 10),
            new_unique_id: 5,
            new_local: ep(30),
            new_remote: ep(2),
            initiated: true,
        });
        let sa = s.get(5).unwrap();
        assert_eq!(
            (sa.name.as_str(), sa.local, sa.remote),
            ("home", ep(30), ep(2))
        );
        assert!(
            s.get(1).is_some(),
            "old SA stays until its ike_updown(down)"
        );
    }
}
