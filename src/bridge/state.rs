//! The latest state the bridge keeps while mip4d is absent, so it can send
//! a full snapshot when mip4d (re)connects: per IKE_SA its connection name,
//! endpoints (the VPN gateway is the remote one), local interface and TIA.

use std::collections::BTreeMap;

use super::proto::{Event, IkeSa, IkeSaState};

/// IKE_SAs by charon's unique id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct State {
    ike_sas: BTreeMap<u32, IkeSaState>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything known, for a snapshot.
    pub fn snapshot(&self) -> Vec<IkeSaState> {
        self.ike_sas.values().cloned().collect()
    }

    pub fn get(&self, unique_id: u32) -> Option<&IkeSaState> {
        self.ike_sas.get(&unique_id)
    }

    /// Folds one hook into the state.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::HandleVips { ike, handle } => {
                let sa = self.entry(ike);
                sa.tia = if *handle {
                    ike.vips.clone()
                } else {
                    Vec::new()
                };
            }
            Event::AssignVips { ike, assign } => {
                let sa = self.entry(ike);
                sa.peer_vips = if *assign {
                    ike.vips.clone()
                } else {
                    Vec::new()
                };
            }
            Event::IkeUpdate {
                ike,
                new_local,
                new_remote,
            } => {
                let sa = self.entry(ike);
                sa.local = new_local.or(sa.local);
                sa.remote = new_remote.or(sa.remote);
                if ike.local_ifname.is_some() {
                    sa.local_ifname = ike.local_ifname.clone();
                }
            }
            Event::IkeUpdown { ike, up: true } => {
                self.entry(ike).up = true;
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
            Event::ChildUpdown { ike, child, up } => {
                let sa = self.entry(ike);
                sa.children.retain(|c| c != child);
                if *up {
                    sa.children.push(child.clone());
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
        sa
    }
}

fn fresh(ike: &IkeSa) -> IkeSaState {
    IkeSaState {
        name: ike.name.clone(),
        unique_id: ike.unique_id,
        local: ike.local,
        remote: ike.remote,
        local_ifname: ike.local_ifname.clone(),
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
