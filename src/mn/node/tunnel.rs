//! The tunnel to the home agent as the node asks the daemon for it: up,
//! moved, down, its MTU in mode 'mc', and holding the home address's
//! traffic while no path is decided.

use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use tracing::info;

use super::{Access, Action, HomeSource, Node, NodeEvent, Reason, State, TunnelState, VpnGuard};
use crate::mn::mode::Trust;
use crate::mn::vpn::PathMtu;

impl Node {
    /// Mode 'mc': the Mobile IP tunnel runs inside ESP; size it so that
    /// it does not fragment ([`PathMtu::tunnel_mtu`]). Asked only while a
    /// tunnel exists (the daemon applies it to the device) and when it
    /// changes.
    pub(super) fn update_mtu(&mut self, now: Instant, path: PathMtu) {
        let Some(mtu) = path.tunnel_mtu(self.cfg.esp_overhead) else {
            return;
        };
        if self.kernel.tunnel.is_none()
            || self.access.mc().is_none()
            || self.kernel.tunnel_mtu == Some(mtu)
        {
            return;
        }
        self.kernel.tunnel_mtu = Some(mtu);
        let home = self.client.home_address();
        // The outer family's header counts (IPv6: 20 bytes more).
        let esp_overhead = path.esp_overhead(self.cfg.esp_overhead);
        info!(%home, mtu, physical = ?path.physical, tia_device = ?path.tia_device, esp_overhead, "tunnel mtu");
        self.out.actions.push_back(Action::TunnelMtu { home, mtu });
        self.event(
            now,
            NodeEvent::TunnelMtu {
                mtu,
                physical: path.physical,
                tia_device: path.tia_device,
                esp_overhead,
            },
        );
    }

    /// Holds the home address's traffic while no decided path exists
    /// (see docs/mip4d.md, "Holding traffic"): a tunnel is installed,
    /// and its care-of address is neither a trusted physical address
    /// (mode 'c') nor the TIA of a live VPN binding (mode 'mc', inside
    /// ESP). Without `[detect]`, mode 'mc' only.
    pub(super) fn settle(&mut self, now: Instant) {
        self.update_nat_watch(now);
        let hold = !self.path_decided() && !self.stopping;
        if hold == self.kernel.held {
            self.update_home_source();
            return;
        }
        self.kernel.held = hold;
        // Holding withdraws the home source first and releasing puts it
        // back last (`update_home_source`).
        if hold {
            self.update_home_source();
        }
        let home = self.client.home_address();
        if hold {
            self.stats.traffic_holds += 1;
            let reason = match self.state {
                State::Detecting { address } => Reason::HeldDetecting { address, home },
                _ => Reason::HeldUndecided { home },
            }
            .to_string();
            info!(%home, reason = %reason, "traffic held");
            self.out.actions.push_back(Action::HoldTraffic { home });
            self.event(now, NodeEvent::TrafficHeld { reason });
        } else {
            self.stats.traffic_releases += 1;
            let reason = match (self.kernel.tunnel, self.mode()) {
                (Some(t), Some(m)) => {
                    format!(
                        "mode {m} decided: traffic from {home} flows through the tunnel from {}",
                        t.care_of
                    )
                }
                _ => "no tunnel any more: nothing to hold".to_string(),
            };
            info!(%home, reason = %reason, "traffic released");
            self.out.actions.push_back(Action::ReleaseTraffic { home });
            self.event(now, NodeEvent::TrafficReleased { reason });
            self.update_home_source();
        }
    }

    /// Whether the home address's traffic has a decided path: no tunnel,
    /// or one whose care-of address is a trusted physical address (mode
    /// 'c') or the TIA of a live VPN binding (mode 'mc', inside ESP).
    fn path_decided(&self) -> bool {
        match self.kernel.tunnel {
            None => true,
            // Without detection, configured trust decides mode 'c'; but a
            // mode 'mc' tunnel loses its path with the VPN all the same
            // (charon killed: its TIA stays on the access interface, the
            // routes into ESP go), and RFC 5266 §3.1.3 keeps that traffic
            // inside the VPN: held until a TIA is registered again.
            Some(_) if self.detector.is_none() => match &self.access {
                Access::Mc(m) => !(m.stale || self.plugin_lost),
                _ => true,
            },
            Some(t) => {
                self.access.care_of() == Some(t.care_of)
                    && matches!(
                        self.state,
                        State::Registered { .. }
                            | State::Registering { .. }
                            | State::Unreachable { .. }
                            | State::Deregistering { .. }
                    )
                    && match &self.access {
                        Access::C { .. } => {
                            self.trust_of(t.care_of) == Trust::Trusted && self.is_usable(t.care_of)
                        }
                        Access::Mc(m) => {
                            !(m.stale || self.plugin_lost)
                                && self.current_vpn().and_then(|v| v.tia) == Some(t.care_of)
                        }
                        // Mode 'f' has no tunnel of its own.
                        Access::F(_) | Access::None => false,
                    }
            }
        }
    }

    /// RFC 3519: the encapsulation a registration's reply granted (UDP
    /// with its keepalive interval, or IP in IP), asked of the daemon when
    /// it changes; call before [`tunnel_up`](Self::tunnel_up).
    pub(super) fn udp_tunnel(&mut self, keepalive: Option<u16>) {
        if self.kernel.udp == keepalive {
            return;
        }
        self.kernel.udp = keepalive;
        let home = self.client.home_address();
        info!(%home, ?keepalive, "tunnel encapsulation: {}", if keepalive.is_some() { "UDP (RFC 3519)" } else { "IP in IP" });
        self.out
            .actions
            .push_back(Action::UdpTunnel { home, keepalive });
    }

    pub(super) fn tunnel_down(&mut self, now: Instant, reason: &str) {
        if self.kernel.tunnel.is_some() {
            // IPv6 rides on the tunnel: gone before it.
            self.ipv6_home(now, None, reason);
        }
        if self.kernel.tunnel.take().is_some() {
            // Its routes name the tunnel device: gone before the device.
            self.update_home_source();
            self.kernel.tunnel_mtu = None;
            // The daemon forgets the encapsulation with the tunnel.
            self.kernel.udp = None;
            self.stats.tunnel_downs += 1;
            let home = self.client.home_address();
            info!(%home, reason, "tunnel down");
            self.out.actions.push_back(Action::TunnelDown { home });
            self.direct_to_home_agent(None);
            self.guard_vpn(None);
            self.event(
                now,
                NodeEvent::TunnelDown {
                    reason: reason.to_string(),
                },
            );
        }
    }

    pub(super) fn tunnel_up(&mut self, now: Instant, care_of: Ipv4Addr) {
        let t = TunnelState {
            care_of,
            home_agent: self.client.home_agent(),
        };
        if self.kernel.tunnel == Some(t) {
            return;
        }
        self.kernel.tunnel = Some(t);
        self.stats.tunnel_ups += 1;
        let home = self.client.home_address();
        info!(%home, %care_of, home_agent = %t.home_agent, "tunnel up");
        self.out.actions.push_back(Action::TunnelUp {
            home,
            care_of,
            home_agent: t.home_agent,
            reverse_tunnel: self.cfg.reverse_tunnel || self.access.mc().is_some(),
        });
        if self.cfg.with_charon {
            // Outer datagrams from a physical care-of address stay off
            // the VPN's routes; from the TIA they must take them.
            let direct = (!self.vpn.is_tia(care_of)).then_some(t.home_agent);
            self.direct_to_home_agent(direct);
            self.guard_vpn_from(care_of);
        }
        self.update_home_source();
        self.event(
            now,
            NodeEvent::TunnelUp {
                care_of,
                home_agent: t.home_agent,
            },
        );
        if self.access.mc().is_some() {
            if let Some(path) = self.current_vpn().map(|v| v.mtu) {
                self.update_mtu(now, path);
            }
        }
    }

    /// Asks for the VPN guard when `src` is the TIA (mode 'mc'), or for
    /// its removal when it is a physical address ([`Action::GuardVpn`]);
    /// only with a charon plugin.
    pub(super) fn guard_vpn_from(&mut self, src: Ipv4Addr) {
        let mc = self.cfg.with_charon && self.vpn.is_tia(src);
        let guard = mc.then_some(VpnGuard {
            tia: src,
            home_agent: self.client.home_agent(),
        });
        self.guard_vpn(guard);
    }

    fn guard_vpn(&mut self, guard: Option<VpnGuard>) {
        if self.kernel.vpn_guard == guard {
            return;
        }
        self.kernel.vpn_guard = guard;
        self.out.actions.push_back(Action::GuardVpn { guard });
    }

    /// Asks for the `to <home agent> lookup main` rule, or for its
    /// removal, when that changes ([`Action::DirectToHomeAgent`]).
    pub(super) fn direct_to_home_agent(&mut self, home_agent: Option<Ipv4Addr>) {
        if self.kernel.direct_to_ha == home_agent {
            return;
        }
        self.kernel.direct_to_ha = home_agent;
        self.out
            .actions
            .push_back(Action::DirectToHomeAgent { home_agent });
    }
}

impl Node {
    /// While a tunnel is up (modes 'c' and 'mc'), what the
    /// node itself opens leaves from the home address, so it survives
    /// the next move ([`HomeSource`]). Asked again whenever the
    /// exclusions change (the VPN gateway, the on-link prefixes); at
    /// home, without a tunnel, nothing is asked.
    ///
    /// Held traffic: a connect() looks its route up again from the home
    /// address, whose own rule holds it; an unbound datagram (UDP without
    /// connect) is routed once, straight into the tunnel device. Under
    /// the VPN guard (a tunnel from the TIA, mode 'mc') its outer datagram
    /// cannot leave outside ESP, so the source stays and new connections
    /// are held too. A tunnel from a physical care-of address (mode 'c'
    /// left, or not yet decided) has no such guard: the source goes for
    /// the hold, or charon's IKE_SA_INIT to a gateway it has no IKE_SA
    /// with yet (so not excluded) would leave IP in IP from the home
    /// address in the clear (RFC 5266 §3; the lab's `flap`).
    pub(super) fn update_home_source(&mut self) {
        let guarded = !self.kernel.held || self.kernel.vpn_guard.is_some();
        let want = match self.kernel.tunnel {
            Some(t) if !self.cfg.home_source.is_empty() && guarded => Some(HomeSource {
                home: self.client.home_address(),
                prefixes: self.cfg.home_source.clone(),
                exclude: self.home_source_exclusions(t.home_agent),
            }),
            _ => None,
        };
        if self.kernel.home_source == want {
            return;
        }
        match &want {
            Some(s) => {
                info!(home = %s.home, prefixes = ?s.prefixes, exclude = ?s.exclude, "home address as the source of the node's connections")
            }
            None => info!("home address source removed"),
        }
        self.kernel.home_source = want.clone();
        self.out
            .actions
            .push_back(Action::HomeAddressSource { source: want });
    }

    /// The home agent (the tunnel's outer datagrams, registrations and
    /// the probe must leave from the care-of address), every VPN gateway
    /// (IKE, RFC 4555 §3.5 moves it between physical addresses) and the
    /// on-link prefixes of the physical attachments (reached directly,
    /// not through the home agent), sorted and without repeats.
    fn home_source_exclusions(&self, home_agent: Ipv4Addr) -> Vec<Ipv4Net> {
        let host = |a: Ipv4Addr| Ipv4Net::new(a, 32).expect("/32 is a valid prefix");
        let mut out: Vec<Ipv4Net> = std::iter::once(host(home_agent))
            // An IPv6 gateway needs no exclusion: the rule is IPv4's.
            .chain(self.vpn.sas().iter().filter_map(|v| match v.gateway {
                Some(std::net::IpAddr::V4(a)) => Some(host(a)),
                _ => None,
            }))
            .chain(
                self.usable_addresses()
                    .filter_map(|a| Ipv4Net::new(a.addr, a.prefix_len).ok())
                    .map(|n| n.trunc()),
            )
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
