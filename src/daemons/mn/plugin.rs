//! mip4d's end of the charon plugin's bridge ([`crate::bridge::proto`]):
//! a root-only unix socket that the plugin in charon connects to. On each
//! connection the plugin sends Hello and a full snapshot, then one event
//! per hook; this module reads the frames and hands them to the main loop,
//! which maps them onto the node's typed [`VpnInput`]s ([`to_input`]).
//!
//! Only the newest connection counts: a charon that restarts connects
//! again, and its snapshot replaces whatever the node believed.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::bridge::proto::{
    self, DaemonMsg, Endpoint, Event, IkeSa, IkeSaState, IkeState, PluginMsg,
};
use crate::daemons::accept::{accept, Backoff};
use crate::mn::vpn::{PathMtu, VpnInput, VpnSa};

/// What the listener tells the main loop.
#[derive(Debug)]
pub enum PluginInput {
    /// A plugin connected; `writer` sends [`DaemonMsg`]s to it.
    Connected {
        conn: u64,
        writer: OwnedWriteHalf,
    },
    Msg {
        conn: u64,
        msg: PluginMsg,
    },
    Gone {
        conn: u64,
        reason: String,
    },
}

/// Binds the socket (0600, its directory 0700 when created) and accepts
/// plugins until the task is aborted.
pub fn serve(path: &Path, tx: mpsc::Sender<PluginInput>) -> io::Result<JoinHandle<()>> {
    let listener = crate::daemons::control::bind_root_only(path)?;
    Ok(tokio::spawn(async move {
        let mut count = 0u64;
        let mut backoff = Backoff::default();
        loop {
            let stream = accept(&listener, "plugin", &mut backoff).await;
            // The socket's mode keeps others out; the peer's credentials
            // say so again (anyone who can talk here steers mip4d's view
            // of the VPN).
            let me = nix::unistd::geteuid().as_raw();
            match stream.peer_cred() {
                Ok(c) if c.uid() == 0 || c.uid() == me => {}
                Ok(c) => {
                    warn!(uid = c.uid(), "plugin socket: peer is not root, refused");
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "plugin socket: no peer credentials, refused");
                    continue;
                }
            }
            count += 1;
            tokio::spawn(connection(count, stream, tx.clone()));
        }
    }))
}

async fn connection(conn: u64, stream: UnixStream, tx: mpsc::Sender<PluginInput>) {
    let (mut rd, mut wr) = stream.into_split();
    let hello = DaemonMsg::Hello {
        version: proto::VERSION,
    };
    let reason = match proto::encode(&hello) {
        Ok(frame) => match wr.write_all(&frame).await {
            Ok(()) => {
                if tx
                    .send(PluginInput::Connected { conn, writer: wr })
                    .await
                    .is_err()
                {
                    return;
                }
                read_frames(conn, &mut rd, &tx).await
            }
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    debug!(conn, reason = %reason, "plugin connection ended");
    let _ = tx.send(PluginInput::Gone { conn, reason }).await;
}

/// Reads frames until the end of the stream or the first bad one (the
/// stream is then out of step: the connection is dropped, the plugin
/// reconnects and sends a snapshot, so nothing is lost).
async fn read_frames(
    conn: u64,
    rd: &mut tokio::net::unix::OwnedReadHalf,
    tx: &mpsc::Sender<PluginInput>,
) -> String {
    let mut dec = proto::Decoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        loop {
            match dec.next_msg::<PluginMsg>() {
                Ok(Some(PluginMsg::Hello { version, .. })) if !proto::compatible(version) => {
                    return proto::ProtoError::Version {
                        ours: proto::VERSION,
                        theirs: version,
                    }
                    .to_string();
                }
                Ok(Some(msg)) => {
                    if tx.send(PluginInput::Msg { conn, msg }).await.is_err() {
                        return "mip4d is stopping".into();
                    }
                }
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) => return "closed".into(),
            Ok(n) => dec.push(&buf[..n]),
            Err(e) => return e.to_string(),
        }
    }
}

fn v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

/// An IKE endpoint's address, of either family: the IKE_SA may run over
/// IPv6 around an IPv4 TIA, and MOBIKE may move it between the families
/// (RFC 4555: ADDITIONAL_IP4_ADDRESS and ADDITIONAL_IP6_ADDRESS).
fn ep(e: Option<Endpoint>) -> Option<IpAddr> {
    e.map(|e| e.addr)
}

/// The node's view of one IKE_SA from the plugin's; `mtu` filled in by
/// the caller. Endpoints of both families; of the virtual IPs only an
/// IPv4 one is a TIA (Mobile IPv4).
pub fn sa_from_ike(ike: &IkeSa) -> VpnSa {
    let mut sa = VpnSa::new(&ike.name, ike.unique_id);
    sa.local = ep(ike.local);
    sa.local_ifname.clone_from(&ike.local_ifname);
    sa.gateway = ep(ike.remote);
    sa.tia = ike.vips.iter().copied().find_map(v4);
    sa
}

pub fn sa_from_state(s: &IkeSaState) -> VpnSa {
    let mut sa = VpnSa::new(&s.name, s.unique_id);
    sa.local = ep(s.local);
    sa.local_ifname.clone_from(&s.local_ifname);
    sa.gateway = ep(s.remote);
    sa.tia = s.tia.iter().copied().find_map(v4);
    // A snapshot without CHILD_SAs says nothing (a stub, an old plugin).
    sa.child_up = (!s.children.is_empty()).then_some(true);
    sa.connecting = s.connecting;
    sa
}

/// Maps one plugin message onto a node input, without MTUs (the main loop
/// adds them, it has the netlink socket). None: nothing for the node
/// (the gateway-side assign_vips, CHILD_SA changes, reestablish_pre,
/// action results).
pub fn to_input(msg: &PluginMsg) -> Option<VpnInput> {
    match msg {
        PluginMsg::Snapshot { ike_sas } => Some(VpnInput::Snapshot(
            ike_sas.iter().map(sa_from_state).collect(),
        )),
        PluginMsg::Event { event, .. } => match event {
            Event::HandleVips { ike, handle: true } => {
                let mut sa = sa_from_ike(ike);
                sa.child_up = ike.child_sas.map(|n| n > 0);
                Some(VpnInput::TiaAssigned(sa))
            }
            Event::HandleVips { ike, handle: false } => Some(VpnInput::TiaReleased {
                ike_sa: ike.unique_id,
            }),
            Event::IkeUpdate {
                ike,
                new_local,
                new_remote,
            } => Some(VpnInput::Moved {
                ike_sa: ike.unique_id,
                local: ep(*new_local),
                // The plugin reports the interface of the new local
                // endpoint with ike_update.
                local_ifname: ike.local_ifname.clone(),
                gateway: ep(*new_remote),
                mtu: PathMtu::default(),
            }),
            Event::IkeUpdown { ike, up: true } => Some(VpnInput::Up(sa_from_ike(ike))),
            Event::IkeUpdown { ike, up: false } => Some(VpnInput::Down {
                ike_sa: ike.unique_id,
            }),
            Event::IkeRekey { ike, new_unique_id } => Some(VpnInput::Rekeyed {
                from: ike.unique_id,
                to: *new_unique_id,
            }),
            Event::IkeReestablishPost {
                ike,
                new_unique_id,
                new_local,
                new_remote,
                ..
            } => {
                let mut sa = VpnSa::new(&ike.name, *new_unique_id);
                sa.local = ep(*new_local);
                sa.gateway = ep(*new_remote);
                Some(VpnInput::Reestablished {
                    from: ike.unique_id,
                    sa,
                })
            }
            Event::Roam { .. } => Some(VpnInput::Roam),
            Event::IkeState {
                ike,
                state: IkeState::Connecting,
            } => Some(VpnInput::Connecting(sa_from_ike(ike))),
            Event::IkeState {
                ike,
                state: IkeState::Destroying,
            } => Some(VpnInput::Down {
                ike_sa: ike.unique_id,
            }),
            Event::ChildUpdown {
                ike,
                child,
                up: true,
            } => Some(VpnInput::ChildUp {
                ike_sa: ike.unique_id,
                child: child.clone(),
            }),
            Event::AssignVips { .. }
            | Event::IkeReestablishPre { .. }
            | Event::ChildUpdown { up: false, .. } => None,
        },
        PluginMsg::Hello { .. } | PluginMsg::ActionResult { .. } => None,
    }
}

/// Sends a message to the plugin.
pub async fn send(writer: &mut OwnedWriteHalf, msg: &DaemonMsg) -> Result<(), String> {
    let frame = proto::encode(msg).map_err(|e| e.to_string())?;
    writer.write_all(&frame).await.map_err(|e| e.to_string())
}

/// How long the plugin works on one roam request at most: it looks for
/// charon's new path, then waits for charon's roam event or mip4d's next
/// request, for 2 s in all (`ROAM_WINDOW_MS` in
/// strongswan-plugin/mip4_actions.c) and then answers; the rest is margin
/// for the answer's way back.
pub const ROAM_ANSWER_WITHIN: Duration = Duration::from_millis(2500);

/// Roam requests sent to the plugin and not answered yet, by connection.
///
/// mip4d asks charon to roam when the IKE_SA's address goes, and again
/// when a default route comes. A plugin older than
/// [`proto::PARKED_ROAM_VERSION`] keeps looking for the first request's
/// path every 10 ms, finds it once the route is there and moves the
/// IKE_SA then: a second request would only add a bridge round trip and a
/// charon job while the update is in flight (on one CPU, the kernel
/// tier's, on the move's critical path), so it is not sent to such a
/// plugin. A newer plugin stops looking after 100 ms (each look a route
/// lookup in the kernel on charon's threads) and waits for the second
/// request, which runs the roam and answers both. An answer, a lost
/// plugin or [`ROAM_ANSWER_WITHIN`] ends the wait.
#[derive(Debug, Default)]
pub struct RoamsPending {
    /// (request id, connection, sent at)
    sent: Vec<(u64, String, Instant)>,
}

impl RoamsPending {
    /// The request still working for `connection`, if any.
    pub fn pending(&mut self, now: Instant, connection: &str) -> Option<u64> {
        self.sent
            .retain(|(_, _, at)| now.saturating_duration_since(*at) < ROAM_ANSWER_WITHIN);
        self.sent
            .iter()
            .find(|(_, c, _)| c == connection)
            .map(|(id, _, _)| *id)
    }

    /// The unanswered request that keeps a new roam of `connection` from
    /// being sent to a plugin speaking `version`: none from
    /// [`proto::PARKED_ROAM_VERSION`] on, whose plugin waits for it.
    pub fn holding_back(&mut self, now: Instant, connection: &str, version: u32) -> Option<u64> {
        let id = self.pending(now, connection)?;
        (version < proto::PARKED_ROAM_VERSION).then_some(id)
    }

    /// Whether a roam request of any connection still works in charon.
    pub fn any_pending(&mut self, now: Instant) -> bool {
        self.sent
            .retain(|(_, _, at)| now.saturating_duration_since(*at) < ROAM_ANSWER_WITHIN);
        !self.sent.is_empty()
    }

    /// When the last unanswered request stops counting as pending.
    pub fn deadline(&self) -> Option<Instant> {
        self.sent
            .iter()
            .map(|(_, _, at)| *at + ROAM_ANSWER_WITHIN)
            .max()
    }

    /// Request `id` to roam `connection` was sent.
    pub fn sent(&mut self, now: Instant, id: u64, connection: &str) {
        self.sent.retain(|(_, c, _)| c != connection);
        self.sent.push((id, connection.to_string(), now));
    }

    /// The plugin answered request `id` (of any kind).
    pub fn answered(&mut self, id: u64) {
        self.sent.retain(|(i, _, _)| *i != id);
    }

    /// The plugin's connection ended: its answers never come.
    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ike() -> IkeSa {
        IkeSa {
            name: "vpn".into(),
            unique_id: 3,
            local: Some(Endpoint {
                addr: Ipv4Addr::new(203, 0, 113, 100).into(),
                port: 4500,
            }),
            remote: Some(Endpoint {
                addr: Ipv4Addr::new(203, 0, 113, 10).into(),
                port: 4500,
            }),
            local_ifname: Some("eth0".into()),
            vips: vec![
                "2001:db8::1".parse().unwrap(),
                Ipv4Addr::new(10, 200, 0, 1).into(),
            ],
            mobike: Some(true),
            child_sas: None,
        }
    }

    #[test]
    fn handle_vips_becomes_tia_assigned_with_the_ipv4_tia_and_gateway() {
        let msg = PluginMsg::Event {
            seq: 1,
            event: Event::HandleVips {
                ike: ike(),
                handle: true,
            },
        };
        let Some(VpnInput::TiaAssigned(sa)) = to_input(&msg) else {
            panic!("{:?}", to_input(&msg));
        };
        assert_eq!(sa.tia, Some(Ipv4Addr::new(10, 200, 0, 1)));
        assert_eq!(sa.gateway, Some(Ipv4Addr::new(203, 0, 113, 10).into()));
        assert_eq!(sa.local, Some(Ipv4Addr::new(203, 0, 113, 100).into()));
        assert_eq!((sa.connection.as_str(), sa.ike_sa), ("vpn", 3));
    }

    #[test]
    fn ike_update_becomes_a_move_to_the_new_endpoints() {
        let msg = PluginMsg::Event {
            seq: 2,
            event: Event::IkeUpdate {
                ike: ike(),
                new_local: Some(Endpoint {
                    addr: Ipv4Addr::new(198, 51, 100, 7).into(),
                    port: 4500,
                }),
                new_remote: ike().remote,
            },
        };
        assert_eq!(
            to_input(&msg),
            Some(VpnInput::Moved {
                ike_sa: 3,
                local: Some(Ipv4Addr::new(198, 51, 100, 7).into()),
                local_ifname: Some("eth0".into()),
                gateway: Some(Ipv4Addr::new(203, 0, 113, 10).into()),
                mtu: PathMtu::default(),
            })
        );
    }

    #[test]
    fn ipv6_endpoints_are_kept_around_the_ipv4_tia() {
        let gw6: IpAddr = "2001:db8:cafe::10".parse().unwrap();
        let mn6: IpAddr = "2001:db8:a::100".parse().unwrap();
        let mut ike = ike();
        ike.local = Some(Endpoint {
            addr: mn6,
            port: 500,
        });
        ike.remote = Some(Endpoint {
            addr: gw6,
            port: 500,
        });
        let sa = sa_from_ike(&ike);
        assert_eq!((sa.local, sa.gateway), (Some(mn6), Some(gw6)));
        assert_eq!(sa.tia, Some(Ipv4Addr::new(10, 200, 0, 1)));
        // MOBIKE from IPv6 to IPv4 behind a NAT: both ends typed as given.
        let moved = PluginMsg::Event {
            seq: 3,
            event: Event::IkeUpdate {
                ike: ike.clone(),
                new_local: Some(Endpoint {
                    addr: Ipv4Addr::new(192, 168, 1, 100).into(),
                    port: 4500,
                }),
                new_remote: Some(Endpoint {
                    addr: Ipv4Addr::new(203, 0, 113, 10).into(),
                    port: 4500,
                }),
            },
        };
        let Some(VpnInput::Moved { local, gateway, .. }) = to_input(&moved) else {
            panic!("{:?}", to_input(&moved));
        };
        assert_eq!(local, Some(Ipv4Addr::new(192, 168, 1, 100).into()));
        assert_eq!(gateway, Some(Ipv4Addr::new(203, 0, 113, 10).into()));
        let state = IkeSaState {
            name: "vpn".into(),
            unique_id: 3,
            local: ike.local,
            remote: ike.remote,
            tia: ike.vips.clone(),
            ..IkeSaState::default()
        };
        let snap = sa_from_state(&state);
        assert_eq!((snap.local, snap.gateway), (Some(mn6), Some(gw6)));
    }

    #[test]
    fn handle_vips_before_the_child_sa_marks_the_tia_not_yet_usable() {
        let mut early = ike();
        early.child_sas = Some(0);
        let msg = PluginMsg::Event {
            seq: 1,
            event: Event::HandleVips {
                ike: early,
                handle: true,
            },
        };
        let Some(VpnInput::TiaAssigned(sa)) = to_input(&msg) else {
            panic!("{:?}", to_input(&msg));
        };
        assert_eq!(sa.child_up, Some(false));
        let up = PluginMsg::Event {
            seq: 2,
            event: Event::ChildUpdown {
                ike: ike(),
                child: "net".into(),
                up: true,
            },
        };
        assert_eq!(
            to_input(&up),
            Some(VpnInput::ChildUp {
                ike_sa: 3,
                child: "net".into()
            })
        );
    }

    #[test]
    fn ike_state_changes_tell_an_ike_sa_connecting_and_one_that_never_came_up() {
        let event = |state| PluginMsg::Event {
            seq: 1,
            event: Event::IkeState { ike: ike(), state },
        };
        let Some(VpnInput::Connecting(sa)) = to_input(&event(IkeState::Connecting)) else {
            panic!("{:?}", to_input(&event(IkeState::Connecting)));
        };
        assert_eq!((sa.connection.as_str(), sa.ike_sa), ("vpn", 3));
        assert_eq!(
            to_input(&event(IkeState::Destroying)),
            Some(VpnInput::Down { ike_sa: 3 })
        );
        let state = IkeSaState {
            name: "vpn".into(),
            unique_id: 4,
            connecting: true,
            ..IkeSaState::default()
        };
        assert!(sa_from_state(&state).connecting);
    }

    #[test]
    fn gateway_side_and_child_down_events_are_not_node_inputs() {
        for event in [
            Event::AssignVips {
                ike: ike(),
                assign: true,
            },
            Event::ChildUpdown {
                ike: ike(),
                child: "net".into(),
                up: false,
            },
        ] {
            assert_eq!(to_input(&PluginMsg::Event { seq: 1, event }), None);
        }
    }

    #[test]
    fn a_roam_waits_for_the_answer_to_the_one_before() {
        let t0 = Instant::now();
        let mut p = RoamsPending::default();
        assert_eq!(p.pending(t0, "vpn"), None);
        p.sent(t0, 1, "vpn");
        assert_eq!(p.pending(t0, "vpn"), Some(1));
        assert_eq!(p.pending(t0, "other"), None, "per connection");
        p.answered(2);
        assert_eq!(p.pending(t0, "vpn"), Some(1), "another request's answer");
        p.answered(1);
        assert_eq!(p.pending(t0, "vpn"), None);

        p.sent(t0, 3, "vpn");
        let late = t0 + ROAM_ANSWER_WITHIN;
        assert_eq!(p.pending(late, "vpn"), None, "no answer within the bound");

        p.sent(late, 4, "vpn");
        assert!(p.any_pending(late));
        assert_eq!(p.deadline(), Some(late + ROAM_ANSWER_WITHIN));
        assert!(!p.any_pending(late + ROAM_ANSWER_WITHIN), "bounded");
        p.sent(late, 4, "vpn");
        p.clear();
        assert_eq!(p.pending(late, "vpn"), None, "plugin gone");
        assert!(!p.any_pending(late) && p.deadline().is_none());
    }

    #[test]
    fn a_plugin_that_waits_for_the_next_roam_request_gets_it() {
        let t0 = Instant::now();
        let mut p = RoamsPending::default();
        p.sent(t0, 1, "vpn");
        let old = proto::PARKED_ROAM_VERSION - 1;
        assert_eq!(p.holding_back(t0, "vpn", old), Some(1), "still looking");
        assert_eq!(p.holding_back(t0, "vpn", proto::PARKED_ROAM_VERSION), None);
        assert_eq!(p.holding_back(t0, "other", old), None, "per connection");
        // The route's request answers the one before it as well.
        p.sent(t0, 2, "vpn");
        p.answered(2);
        assert_eq!(p.holding_back(t0, "vpn", old), None);
    }
}
