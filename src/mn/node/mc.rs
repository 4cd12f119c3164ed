//! Mode 'mc' (RFC 5266 §3.1.3): what charon reports through the plugin,
//! the TIA as co-located care-of address, and the requests to charon.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use tracing::info;

use super::{Access, Action, McAttachment, Node, NodeEvent, Reason, State, VpnRequest};
use crate::mn::mode::Mode;
use crate::mn::vpn::{VpnInput, VpnView};

/// Longest wait for an IKE_SA of the VPN that is connecting (someone
/// else's, or mip4d's own) before mip4d asks charon as if there were
/// none. charon ends every such IKE_SA itself, up or destroyed, within
/// its retransmission window (about 11 s in the lab, 165 s with
/// charon's defaults), and the plugin reports either; this bound only
/// keeps a report that never comes (a plugin without IKE_SA states, a
/// charon that hangs) from stranding the node without a VPN. An IKE_SA
/// that needs longer than this is retransmitting on a bad path: asking
/// charon again reuses it (charon's default `reuse_ikesa`).
pub const VPN_COMING_WAIT: Duration = Duration::from_secs(30);

/// An IKE_SA of the VPN on its way that the node waits for instead of
/// asking charon ([`Node::after_untrusted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AwaitedVpn {
    pub ike_sa: u32,
    pub until: Instant,
}

impl Node {
    /// What charon told through the plugin (mode 'mc', RFC 5266
    /// §3.1.3). The view is updated, then the node decides as for any
    /// change of attachment; a VPN input that needs no registration while
    /// in mode 'mc' is reported as a `decision` with its reason.
    pub fn vpn_input(&mut self, now: Instant, input: VpnInput) {
        if self.stopping {
            return;
        }
        // A new connection's snapshot: charon's view is known again.
        if matches!(input, VpnInput::Snapshot(_)) {
            self.plugin_lost = false;
        }
        let accepted = |c: &str| {
            self.cfg.vpn_connections.is_empty() || self.cfg.vpn_connections.iter().any(|a| a == c)
        };
        let known = |id: u32| self.vpn.sas().iter().find(|s| s.ike_sa == id).cloned();
        let (event, why, mobike) = match &input {
            VpnInput::TiaAssigned(sa) => {
                if !accepted(&sa.connection) {
                    return;
                }
                let Some(tia) = sa.tia else { return };
                (
                    NodeEvent::VpnTiaAssigned {
                        connection: sa.connection.clone(),
                        ike_sa: sa.ike_sa,
                        tia,
                        gateway: sa.gateway,
                        local: sa.local,
                    },
                    format!(
                        "VPN '{}' IKE_SA {} installed the TIA {tia}",
                        sa.connection, sa.ike_sa
                    ),
                    false,
                )
            }
            VpnInput::TiaReleased { ike_sa } => {
                let Some(sa) = known(*ike_sa) else { return };
                (
                    NodeEvent::VpnTiaReleased {
                        ike_sa: *ike_sa,
                        tia: sa.tia,
                    },
                    format!("VPN IKE_SA {ike_sa} released its TIA"),
                    false,
                )
            }
            VpnInput::Moved {
                ike_sa,
                local,
                gateway,
                ..
            } => {
                let Some(sa) = known(*ike_sa) else { return };
                let show = |a: Option<IpAddr>| a.map_or("?".to_string(), |a| a.to_string());
                (
                    NodeEvent::VpnMoved {
                        ike_sa: *ike_sa,
                        from: sa.local,
                        to: local.or(sa.local),
                        gateway: gateway.or(sa.gateway),
                    },
                    format!(
                        "MOBIKE moved IKE_SA {ike_sa} from {} to {} (gateway {})",
                        show(sa.local),
                        show(local.or(sa.local)),
                        show(gateway.or(sa.gateway))
                    ),
                    true,
                )
            }
            VpnInput::Connecting(sa) => {
                if !accepted(&sa.connection) {
                    return;
                }
                (
                    NodeEvent::VpnConnecting {
                        connection: sa.connection.clone(),
                        ike_sa: sa.ike_sa,
                        local: sa.local,
                        gateway: sa.gateway,
                    },
                    format!("VPN '{}' IKE_SA {} connecting", sa.connection, sa.ike_sa),
                    false,
                )
            }
            VpnInput::Up(sa) => {
                if !accepted(&sa.connection) {
                    return;
                }
                (
                    NodeEvent::VpnUp {
                        connection: sa.connection.clone(),
                        ike_sa: sa.ike_sa,
                    },
                    format!("VPN '{}' IKE_SA {} up", sa.connection, sa.ike_sa),
                    false,
                )
            }
            VpnInput::Down { ike_sa } => {
                if known(*ike_sa).is_none() {
                    return;
                }
                (
                    NodeEvent::VpnDown { ike_sa: *ike_sa },
                    format!("VPN IKE_SA {ike_sa} down"),
                    false,
                )
            }
            VpnInput::Rekeyed { from, to } => {
                let Some(sa) = known(*from) else { return };
                (
                    NodeEvent::VpnRekeyed {
                        from: *from,
                        to: *to,
                        reestablished: false,
                        gateway: sa.gateway,
                    },
                    format!("IKE_SA {from} rekeyed into {to}"),
                    false,
                )
            }
            VpnInput::Reestablished { from, sa } => {
                if !accepted(&sa.connection) {
                    return;
                }
                (
                    NodeEvent::VpnRekeyed {
                        from: *from,
                        to: sa.ike_sa,
                        reestablished: true,
                        gateway: sa.gateway,
                    },
                    format!("IKE_SA {from} reestablished as {}", sa.ike_sa),
                    false,
                )
            }
            VpnInput::ChildUp { ike_sa, child } => {
                if known(*ike_sa).is_none() {
                    return;
                }
                (
                    NodeEvent::VpnChildUp {
                        ike_sa: *ike_sa,
                        child: child.clone(),
                    },
                    format!("VPN IKE_SA {ike_sa} installed its CHILD_SA '{child}'"),
                    false,
                )
            }
            VpnInput::Roam => (
                NodeEvent::VpnRoam,
                "the kernel reported a roam".to_string(),
                false,
            ),
            VpnInput::Snapshot(sas) => {
                let mut view = VpnView::default();
                view.apply(&input);
                let cur = view.current(&self.cfg.vpn_connections);
                (
                    NodeEvent::VpnSnapshot {
                        ike_sas: sas.len(),
                        tia: cur.and_then(|c| c.tia),
                        gateway: cur.and_then(|c| c.gateway),
                    },
                    "snapshot from the charon plugin".to_string(),
                    false,
                )
            }
        };
        info!(input = ?input, "vpn");
        self.event(now, event);
        self.vpn.apply(&input);
        // With kernel IPsec charon puts the TIA on the physical interface,
        // and rtnetlink reports it before handle_vips reaches us: the node
        // took it for an attachment and may be probing it (found in the
        // kernel tier). It is none: its probe and verdict go.
        let tias: Vec<(String, Ipv4Addr)> = self
            .links
            .addresses
            .iter()
            .filter(|a| self.vpn.is_tia(a.addr))
            .map(|a| (a.ifname.clone(), a.addr))
            .collect();
        for (ifname, tia) in tias {
            let why = format!("{why}: {tia} on {ifname} is the VPN's TIA, not an attachment");
            let probed = self
                .detector
                .as_ref()
                .and_then(|d| d.probing())
                .is_some_and(|(i, a)| i == ifname && a == tia);
            self.forget_attachment(now, &ifname, Some(tia), &why);
            if probed {
                self.after_tia_probe(now, tia, &why);
            }
        }
        if let (VpnInput::Rekeyed { from, to }, Access::Mc(m)) = (&input, &mut self.access) {
            if m.ike_sa == *from {
                m.ike_sa = *to;
            }
        }
        if let (
            VpnInput::Moved {
                ike_sa, gateway, ..
            },
            Access::Mc(m),
        ) = (&input, &mut self.access)
        {
            // MOBIKE keeps the peer (RFC 4555): a new remote address of
            // the same IKE_SA is the same gateway.
            if m.ike_sa == *ike_sa && gateway.is_some() {
                m.gateway = *gateway;
            }
        }
        let registered = self.evaluate(now, None, &why);
        if matches!(input, VpnInput::Snapshot(_)) {
            // A request sent while no plugin was connected was lost: ask
            // again now that charon listens.
            self.after_untrusted(now, &why);
        }
        self.awaited_vpn_changed(now, &why);
        let in_mc = self.access.is_live_mc() && self.state.has_care_of();
        if !registered && in_mc && !matches!(input, VpnInput::Roam) {
            let tia = self.access.care_of();
            if mobike {
                self.stats.vpn_moves_absorbed += 1;
            }
            let reason = if mobike {
                format!("{why}; {}", Reason::MobikeKeepsTia { tia })
            } else {
                format!("{why}; {}", Reason::BindingUnchanged { tia })
            };
            info!(reason = %reason, "decision: keep binding");
            self.event(
                now,
                NodeEvent::Decision {
                    decision: "keep_binding",
                    reason,
                },
            );
        }
        self.settle(now);
    }

    /// Mode 'mc' (RFC 5266 §3.1.3): no trusted address, and the VPN
    /// offers a TIA. Registers it unless the binding already uses it
    /// through the same gateway: a MOBIKE move or a rekey changes
    /// nothing the home agent knows (RFC 5266 §3).
    pub(super) fn evaluate_mc(&mut self, now: Instant, why: &str) -> bool {
        let Some(v) = self.current_vpn().cloned() else {
            return false;
        };
        let tia = v.tia.expect("current() has a TIA");
        let active = matches!(
            self.state,
            State::Registering { .. }
                | State::Registered { .. }
                | State::Denied { .. }
                | State::Unreachable { .. }
        );
        let prev = self.access.mc().cloned();
        let same_tia = prev.as_ref().is_some_and(|m| m.tia == tia);
        let same_gateway = prev
            .as_ref()
            .is_some_and(|m| m.gateway == v.gateway || m.ike_sa == v.ike_sa || v.gateway.is_none());
        if active && same_tia && same_gateway && self.access.is_live_mc() {
            // Same binding: follow the IKE_SA (rekey, MOBIKE) and the MTU.
            if let Access::Mc(m) = &mut self.access {
                m.ike_sa = v.ike_sa;
                m.gateway = v.gateway.or(m.gateway);
            }
            self.update_mtu(now, v.mtu);
            return false;
        }
        let (connection, gateway) = (v.connection.clone(), v.gateway);
        let decision = match &prev {
            Some(m) if m.tia != tia => {
                self.stats.tia_changes += 1;
                Reason::TiaChanged {
                    from: m.tia,
                    to: tia,
                    connection,
                    gateway,
                }
            }
            Some(m) if !same_gateway => {
                self.stats.tia_changes += 1;
                Reason::OtherGateway {
                    from: m.gateway,
                    to: gateway,
                    tia,
                }
            }
            Some(m) if m.stale => Reason::TiaBack {
                tia,
                connection,
                gateway,
            },
            _ => Reason::TiaRegistered {
                tia,
                connection,
                gateway,
            },
        };
        let reason = format!("{why}: {decision}");
        self.stats.moves += u64::from(self.access.care_of().is_some_and(|c| c != tia));
        self.stats.tia_registrations += 1;
        let mc = McAttachment {
            tia,
            gateway: v.gateway,
            ike_sa: v.ike_sa,
            stale: false,
        };
        self.register(now, Access::Mc(mc), &reason);
        true
    }

    /// A mode 'mc' binding whose TIA the VPN still offers: its traffic
    /// runs inside ESP whatever the physical network is.
    pub(super) fn in_mc(&self) -> bool {
        self.access.is_live_mc()
            && matches!(
                self.state,
                State::Registering { .. } | State::Registered { .. } | State::Unreachable { .. }
            )
            && self.current_vpn().and_then(|v| v.tia).is_some()
    }

    /// RFC 5266 §3.4.2 step 1 without an IKE_SA: an attachment left
    /// from mode 'c' is being probed and the VPN is down (as after
    /// `vpn_when_inside = terminate`). The VPN is asked for now, not after
    /// an untrusted verdict, so that the handover takes about the longer
    /// of the probe and IKE, not their sum. Traffic stays held and the
    /// TIA is registered only after the verdict (`Detecting`); a trusted
    /// verdict closes it again (`inside`), as it was never used. A probe
    /// of the address the node is registered with in mode 'c' (`mip4ctl
    /// probe`) leaves nothing: traffic flows meanwhile, and the verdict
    /// is nearly always trusted again, so asking would make an IKE_SA
    /// only to close it (and a `force mc` right after would ask again).
    pub(super) fn vpn_with_probe(&mut self, now: Instant, probed: Ipv4Addr) {
        if !matches!(self.access, Access::C { .. })
            || self.state == (State::Registered { care_of: probed })
            || self.vpn_asked_with_probe.is_some()
            || self.pin == Some(Mode::C)
        {
            return;
        }
        let Some(connection) = self
            .detector
            .as_ref()
            .and_then(|d| d.config().vpn_connection.clone())
        else {
            return;
        };
        if self.vpn.sas().iter().any(|s| s.connection == connection) {
            return;
        }
        self.vpn_asked_with_probe = Some(connection.clone());
        self.request_vpn(
            now,
            VpnRequest::Initiate { connection },
            &Reason::VpnWithProbe.to_string(),
        );
    }

    /// Outside: with no VPN to carry mode 'mc', ask charon for one (RFC
    /// 5266 §3.4.2 step 1; on IPv6-only access at once, `ipv6`), unless
    /// it was asked for with the probe, or an IKE_SA of the connection is
    /// on its way: then wait for it, up to [`VPN_COMING_WAIT`].
    pub(super) fn after_untrusted(&mut self, now: Instant, why: &str) {
        let awaited = self.vpn_awaited.take();
        if self.vpn_asked_with_probe.take().is_some() || self.pin == Some(Mode::C) {
            return;
        }
        if self.current_vpn().is_some()
            || !matches!(
                self.state,
                State::Untrusted { .. } | State::UntrustedIpv6 { .. }
            )
        {
            return;
        }
        let Some(connection) = self
            .detector
            .as_ref()
            .and_then(|d| d.config().vpn_connection.clone())
        else {
            return;
        };
        let secs = VPN_COMING_WAIT.as_secs();
        let reason = match (self.vpn.coming(&connection).map(|s| s.ike_sa), awaited) {
            // Still within the wait (for this IKE_SA or one that replaced
            // it): a second initiate would make a second IKE_SA (with
            // `charon.reuse_ikesa = no`) or a duplicate CHILD_SA.
            (Some(_), Some(a)) if now < a.until => {
                self.vpn_awaited = Some(a);
                return;
            }
            (Some(ike_sa), None) => {
                self.vpn_awaited = Some(AwaitedVpn {
                    ike_sa,
                    until: now + VPN_COMING_WAIT,
                });
                let reason = format!("{why}; {}", Reason::VpnComing { ike_sa, secs });
                info!(reason = %reason, "decision: await the VPN");
                self.event(
                    now,
                    NodeEvent::Decision {
                        decision: "await_vpn",
                        reason,
                    },
                );
                return;
            }
            (Some(ike_sa), Some(_)) => {
                format!("{why}; {}", Reason::VpnComingTooLong { ike_sa, secs })
            }
            (None, _) => format!("{why}; {}", Reason::VpnNeeded),
        };
        self.request_vpn(now, VpnRequest::Initiate { connection }, &reason);
    }

    /// After a VPN input: the IKE_SA awaited came up (nothing to do: the
    /// TIA registers as usual) or went without coming up (ask charon as
    /// if there had been none).
    fn awaited_vpn_changed(&mut self, now: Instant, why: &str) {
        let Some(a) = self.vpn_awaited else { return };
        match self.vpn.sas().iter().find(|s| s.ike_sa == a.ike_sa) {
            Some(s) if s.connecting => {}
            Some(_) => self.vpn_awaited = None,
            None => self.after_untrusted(now, &format!("{why}: it never came up")),
        }
    }

    /// The wait for an IKE_SA on its way ([`VPN_COMING_WAIT`]) is over.
    pub(super) fn awaited_vpn_timeout(&mut self, now: Instant) {
        if self.vpn_awaited.is_some_and(|a| now >= a.until) {
            self.after_untrusted(now, "waiting for the VPN");
            // Never a deadline in the past: after_untrusted either asked
            // or has nothing to ask for.
            self.vpn_awaited = self.vpn_awaited.filter(|a| now < a.until);
        }
    }

    /// A default route appeared in the main table (rtnetlink). charon's
    /// kernel-netlink hears the same change but waits 100 ms to coalesce
    /// events before its roam job looks for a new path. When an IKE_SA of
    /// the VPN has lost its local address and an address is usable again
    /// (address and route: what the roam job's route lookup needs), ask
    /// charon through the plugin to roam now: MOBIKE (RFC 4555 §3.5)
    /// starts without that wait. One request per connection and route.
    /// Only in mode 'mc', where the VPN carries the binding: elsewhere
    /// (detecting, mode 'c') charon's roam job, which looks at every
    /// IKE_SA, would also restart one still connecting from whatever
    /// source the kernel picks, and nothing waits on it.
    pub fn default_route_added(&mut self, now: Instant) {
        if self.stopping || !self.cfg.with_charon || self.plugin_lost || !self.access.is_live_mc() {
            return;
        }
        let Some(new) = self
            .usable_addresses()
            .last()
            .map(|a| (a.addr, a.ifname.clone()))
        else {
            return;
        };
        let accepted = &self.cfg.vpn_connections;
        let mut lost: Vec<(String, IpAddr)> = self
            .vpn
            .sas()
            .iter()
            .filter(|s| accepted.is_empty() || accepted.contains(&s.connection))
            // An IKE_SA still connecting is charon's to retransmit; its
            // roam job would restart it from whatever source.
            .filter(|s| !s.connecting)
            .filter_map(|s| match s.local {
                Some(IpAddr::V4(l)) if !self.is_usable(l) => Some((s.connection.clone(), s.local?)),
                _ => None,
            })
            .collect();
        lost.dedup_by(|a, b| a.0 == b.0);
        for (connection, old) in lost {
            let reason = Reason::RoamNow {
                old,
                new: new.0,
                ifname: new.1.clone(),
            };
            self.request_vpn(now, VpnRequest::Roam { connection }, &reason.to_string());
        }
    }

    /// The IKE_SA's own address `gone` was removed (break before make):
    /// ask charon to roam at once, before the next network's address and
    /// route arrive. The plugin waits inside charon until charon's kernel
    /// interface knows a new source towards the gateway, and its direct
    /// update (RFC 4555 §3.5) leaves then, without this daemon's reading
    /// of the next network's events in between. kernel-netlink's own roam
    /// job is due 100 ms after the first event it hears after its last
    /// one; a slow machine (the kernel tier's emulated guest) read the new
    /// address and route here 26-120 ms after charon did, and its job then
    /// came first. [`Node::default_route_added`] asks again when the route
    /// comes: the plugin stops looking for this request's path after
    /// 100 ms and the second request runs the roam (an older plugin, which
    /// keeps looking, is sent it only once it answered this one:
    /// `daemons::mn::plugin::RoamsPending`).
    pub(super) fn roam_when_ready(&mut self, now: Instant, gone: Ipv4Addr) {
        if self.stopping || !self.cfg.with_charon || self.plugin_lost || !self.access.is_live_mc() {
            return;
        }
        let accepted = &self.cfg.vpn_connections;
        let mut lost: Vec<String> = self
            .vpn
            .sas()
            .iter()
            .filter(|s| accepted.is_empty() || accepted.contains(&s.connection))
            .filter(|s| !s.connecting && s.local == Some(IpAddr::V4(gone)))
            .map(|s| s.connection.clone())
            .collect();
        lost.dedup();
        for connection in lost {
            let reason = Reason::RoamWhenReady { old: gone };
            self.request_vpn(now, VpnRequest::Roam { connection }, &reason.to_string());
        }
    }

    pub(super) fn request_vpn(&mut self, now: Instant, request: VpnRequest, reason: &str) {
        info!(?request, reason, "vpn request");
        self.out.actions.push_back(Action::Vpn(request.clone()));
        self.event(
            now,
            NodeEvent::VpnRequested {
                request,
                reason: reason.to_string(),
            },
        );
    }
}

impl Node {
    /// The probe of `tia` may have left already, and an i-HA that took it
    /// from a trusted network binds the home address to the TIA now: the
    /// node's own care-of address, when it is another, is registered
    /// again at once (RFC 5944 §3.6.1.2: the newer registration replaces
    /// the binding), unless a registration is under way already.
    fn after_tia_probe(&mut self, now: Instant, tia: Ipv4Addr, why: &str) {
        let State::Registered { care_of: mine } = self.state else {
            return;
        };
        if mine == tia || self.client.is_pending() || !self.source_usable(mine) {
            return;
        }
        let access = self.access.clone();
        let reason = format!(
            "{why}; its probe may have moved the i-HA's binding to {tia}: registering {mine} again"
        );
        self.register(now, access, &reason);
    }
}
