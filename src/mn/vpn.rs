//! What the node knows of the VPN (charon, through the plugin): typed
//! inputs for mode 'mc' (RFC 5266 §3.1.3), where the VPN tunnel inner
//! address (TIA) is the co-located care-of address, and the MTU of the
//! Mobile IP tunnel that runs inside ESP.
//!
//! The TIA is IPv4 (Mobile IPv4), but the IKE_SA around it may run over
//! IPv6 and MOBIKE may move it between the families (RFC 4555 carries
//! addresses of both, ADDITIONAL_IP4_ADDRESS and ADDITIONAL_IP6_ADDRESS):
//! endpoints are [`IpAddr`], and the ESP overhead counts the outer header
//! of the family in use.
//!
//! The daemon maps the plugin's protocol ([`crate::bridge::proto`]) onto
//! [`VpnInput`]; the node folds each into its view ([`VpnView`]) and then
//! decides. A snapshot replaces the view, so whatever the node believed,
//! it converges on what charon has.

use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

/// Bytes the IP-in-IP header adds (RFC 2003 §3).
pub const IPIP_OVERHEAD: u32 = 20;

/// Default worst-case ESP overhead in tunnel mode with UDP encapsulation
/// (RFC 3948: MOBIKE moves behind NATs, so count it): outer IPv4 20, UDP
/// 8, SPI and sequence 8, IV 16, padding up to 15, pad length and next
/// header 2, ICV 16: 85 bytes for AES-CBC with HMAC-SHA2-256-128.
/// AES-GCM-16 needs at most 65 (IV 8, padding up to 3), so this default
/// covers both.
pub const DEFAULT_ESP_OVERHEAD: u32 = 85;

/// Bytes an IPv6 outer header adds over an IPv4 one: 40 (RFC 8200 §3)
/// against 20 (RFC 791). ESP over IPv6 carries the Mobile IP tunnel in
/// that much less room.
pub const IPV6_OUTER_EXTRA: u32 = 20;

/// The smallest MTU an IPv4 link may have (RFC 791): never set below it.
pub const MIN_IPV4_MTU: u32 = 68;

/// MTUs on the way out, as the daemon found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PathMtu {
    /// MTU of the physical interface carrying the IKE_SA (and ESP).
    pub physical: Option<u32>,
    /// MTU of the device holding the TIA when it is not the physical one
    /// (kernel-libipsec's TUN, `ipsec0`, whose MTU already leaves room for
    /// ESP: charon.plugins.kernel-libipsec.mtu, 1400 by default).
    pub tia_device: Option<u32>,
    /// ESP leaves in IPv6 (the IKE_SA's local endpoint is IPv6): the
    /// outer header is 20 bytes longer. Follows the endpoint
    /// ([`VpnView::apply`]), so a MOBIKE move between the families
    /// resizes the tunnel.
    pub outer_ipv6: bool,
}

impl PathMtu {
    /// The ESP overhead on this path: the configured one (counted with an
    /// outer IPv4 header), plus [`IPV6_OUTER_EXTRA`] when ESP runs over
    /// IPv6.
    pub fn esp_overhead(&self, configured: u32) -> u32 {
        configured + if self.outer_ipv6 { IPV6_OUTER_EXTRA } else { 0 }
    }

    /// The MTU for the Mobile IP tunnel device so that its IP-in-IP
    /// datagrams fit, once in ESP, into one physical frame: the smaller of
    /// (physical − ESP overhead of the outer family) and the TIA device's
    /// MTU, less the IP-in-IP header. `None` when nothing is known (the
    /// data plane's default stays).
    pub fn tunnel_mtu(&self, esp_overhead: u32) -> Option<u32> {
        let esp_overhead = self.esp_overhead(esp_overhead);
        let esp = self.physical.map(|p| p.saturating_sub(esp_overhead));
        let inner = match (esp, self.tia_device) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(inner.saturating_sub(IPIP_OVERHEAD).max(MIN_IPV4_MTU))
    }
}

/// One IKE_SA of the VPN as the node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VpnSa {
    /// Connection (peer_cfg) name.
    pub connection: String,
    /// charon's unique id of the IKE_SA.
    pub ike_sa: u32,
    /// Local IKE endpoint: the MN's physical address, of either family.
    pub local: Option<IpAddr>,
    pub local_ifname: Option<String>,
    /// Remote IKE endpoint: the VPN gateway, of either family.
    pub gateway: Option<IpAddr>,
    /// The TIA installed on the MN (handle_vips), if any.
    pub tia: Option<Ipv4Addr>,
    /// Whether a CHILD_SA is installed: `Some(false)` while charon has
    /// put the TIA on the MN but not yet the CHILD_SA that carries it
    /// (handle_vips comes first), so the TIA is not usable yet; `None`
    /// when the plugin does not say (an older plugin: usable at once).
    pub child_up: Option<bool>,
    /// charon's IKE_CONNECTING: IKE_SA_INIT or IKE_AUTH under way, not up
    /// yet. Whoever initiated it (the user, a network manager,
    /// `start_action`, mip4d), the connection's VPN is on its way: asking
    /// charon again would make a second IKE_SA or CHILD_SA.
    pub connecting: bool,
    pub mtu: PathMtu,
}

impl VpnSa {
    pub fn new(connection: &str, ike_sa: u32) -> Self {
        VpnSa {
            connection: connection.to_string(),
            ike_sa,
            local: None,
            local_ifname: None,
            gateway: None,
            tia: None,
            child_up: None,
            connecting: false,
            mtu: PathMtu::default(),
        }
    }
}

/// One thing charon told (through the plugin), typed for the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VpnInput {
    /// handle_vips(handle): the TIA is installed on the MN.
    TiaAssigned(VpnSa),
    /// handle_vips(release): the IKE_SA's TIA is about to go.
    TiaReleased { ike_sa: u32 },
    /// ike_update: MOBIKE moved the IKE_SA (RFC 4555) to new endpoints.
    Moved {
        ike_sa: u32,
        local: Option<IpAddr>,
        local_ifname: Option<String>,
        gateway: Option<IpAddr>,
        mtu: PathMtu,
    },
    /// ike_state_change(IKE_CONNECTING): an IKE_SA on its way up.
    Connecting(VpnSa),
    /// ike_updown(up).
    Up(VpnSa),
    /// child_updown(up): the IKE_SA has a CHILD_SA installed.
    ChildUp { ike_sa: u32, child: String },
    /// ike_updown(down), or IKE_DESTROYING (all that an IKE_SA that never
    /// came up reports): the IKE_SA (and its TIA) is gone.
    Down { ike_sa: u32 },
    /// ike_rekey: the IKE_SA continues as `to`, TIA and peer inherited.
    Rekeyed { from: u32, to: u32 },
    /// ike_reestablish_post: a new IKE_SA `sa` replaces `from`, possibly
    /// with another gateway; its TIA follows in a TiaAssigned.
    Reestablished { from: u32, sa: VpnSa },
    /// The kernel's roam event: the MN's addresses or routes changed.
    Roam,
    /// Everything the plugin knows, on each (re)connection.
    Snapshot(Vec<VpnSa>),
}

/// The node's view of the VPN: IKE_SAs by unique id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VpnView {
    sas: Vec<VpnSa>,
}

impl VpnView {
    pub fn sas(&self) -> &[VpnSa] {
        &self.sas
    }

    fn get_mut(&mut self, ike_sa: u32) -> Option<&mut VpnSa> {
        self.sas.iter_mut().find(|s| s.ike_sa == ike_sa)
    }

    fn upsert(&mut self, sa: &VpnSa) -> &mut VpnSa {
        let i = match self.sas.iter().position(|s| s.ike_sa == sa.ike_sa) {
            Some(i) => i,
            None => {
                self.sas.push(VpnSa::new(&sa.connection, sa.ike_sa));
                self.sas.len() - 1
            }
        };
        let s = &mut self.sas[i];
        s.connection.clone_from(&sa.connection);
        s.local = sa.local.or(s.local);
        if sa.local_ifname.is_some() {
            s.local_ifname.clone_from(&sa.local_ifname);
        }
        s.gateway = sa.gateway.or(s.gateway);
        // Once a CHILD_SA is up it stays so for the IKE_SA (a rekey
        // replaces it without a down).
        if s.child_up != Some(true) {
            s.child_up = sa.child_up.or(s.child_up);
        }
        s.mtu.physical = sa.mtu.physical.or(s.mtu.physical);
        s.mtu.tia_device = sa.mtu.tia_device.or(s.mtu.tia_device);
        s
    }

    /// Folds an input into the view.
    pub fn apply(&mut self, input: &VpnInput) {
        match input {
            VpnInput::TiaAssigned(sa) => {
                let s = self.upsert(sa);
                s.tia = sa.tia;
            }
            VpnInput::TiaReleased { ike_sa } => {
                if let Some(s) = self.get_mut(*ike_sa) {
                    s.tia = None;
                }
            }
            VpnInput::Moved {
                ike_sa,
                local,
                local_ifname,
                gateway,
                mtu,
            } => {
                if let Some(s) = self.get_mut(*ike_sa) {
                    s.local = local.or(s.local);
                    if local_ifname.is_some() {
                        s.local_ifname.clone_from(local_ifname);
                    }
                    s.gateway = gateway.or(s.gateway);
                    s.mtu.physical = mtu.physical.or(s.mtu.physical);
                    s.mtu.tia_device = mtu.tia_device.or(s.mtu.tia_device);
                }
            }
            VpnInput::Connecting(sa) => {
                let s = self.upsert(sa);
                s.connecting = true;
            }
            VpnInput::Up(sa) => {
                let s = self.upsert(sa);
                s.connecting = false;
            }
            VpnInput::ChildUp { ike_sa, .. } => {
                if let Some(s) = self.get_mut(*ike_sa) {
                    s.child_up = Some(true);
                }
            }
            VpnInput::Down { ike_sa } => self.sas.retain(|s| s.ike_sa != *ike_sa),
            VpnInput::Rekeyed { from, to } => {
                // RFC 7296 §2.18: the new IKE_SA inherits the old one's
                // peer, addresses and (charon) virtual IPs.
                self.sas.retain(|s| s.ike_sa != *to);
                if let Some(s) = self.get_mut(*from) {
                    s.ike_sa = *to;
                }
            }
            VpnInput::Reestablished { sa, .. } => {
                let s = self.upsert(sa);
                s.tia = None;
            }
            VpnInput::Roam => {}
            VpnInput::Snapshot(sas) => self.sas = sas.clone(),
        }
        for s in &mut self.sas {
            s.mtu.outer_ipv6 = s.local.is_some_and(|a| a.is_ipv6());
        }
        self.sas.sort_by_key(|s| s.ike_sa);
    }

    /// The MTUs already measured for `sa`'s IKE_SA on the same interface
    /// with the same TIA, or `None` when the daemon must ask the kernel.
    /// charon's `ike_updown` repeats what `handle_vips` said a moment
    /// before; asking again costs netlink round trips that the
    /// `child_updown` queued behind them waits out, and the first
    /// registration waits for that event (issue 14 §2).
    pub fn known_path_mtu(&self, sa: &VpnSa) -> Option<PathMtu> {
        let known = self.sas.iter().find(|s| s.ike_sa == sa.ike_sa)?;
        (sa.local_ifname.is_some()
            && known.local_ifname == sa.local_ifname
            && known.tia == sa.tia
            && known.mtu.physical.is_some())
        .then_some(known.mtu)
    }

    /// An IKE_SA of `connection` that charon is bringing up: IKE_SA_INIT
    /// or IKE_AUTH under way, or its TIA installed before the CHILD_SA
    /// that carries it (kernel-netlink's order).
    pub fn coming(&self, connection: &str) -> Option<&VpnSa> {
        self.sas.iter().find(|s| {
            s.connection == connection
                && (s.connecting || (s.tia.is_some() && s.child_up == Some(false)))
        })
    }

    /// Whether `addr` is a TIA of some IKE_SA (never a physical
    /// attachment).
    pub fn is_tia(&self, addr: Ipv4Addr) -> bool {
        self.sas.iter().any(|s| s.tia == Some(addr))
    }

    /// The IKE_SA whose TIA the node should use: of the accepted
    /// connections, the newest IKE_SA that has a TIA and a CHILD_SA to
    /// carry it (after a reestablishment, the new one). A registration
    /// sent through the TIA before charon installs the CHILD_SA is
    /// dropped and waits for its retransmission.
    pub fn current<'a>(&'a self, accept: &'a [String]) -> Option<&'a VpnSa> {
        self.sas
            .iter()
            .filter(|s| s.tia.is_some() && s.child_up != Some(false))
            .filter(|s| accept.is_empty() || accept.contains(&s.connection))
            .max_by_key(|s| s.ike_sa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_mtu_leaves_room_for_esp_and_ipip() {
        // kernel-libipsec: ipsec0 at 1400 is the tighter bound.
        let libipsec = PathMtu {
            physical: Some(1500),
            tia_device: Some(1400),
            outer_ipv6: false,
        };
        assert_eq!(libipsec.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1380));
        // Kernel XFRM: the TIA sits on the physical interface.
        let xfrm = PathMtu {
            physical: Some(1500),
            ..PathMtu::default()
        };
        assert_eq!(xfrm.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1395));
        assert_eq!(xfrm.tunnel_mtu(65), Some(1415));
        assert_eq!(PathMtu::default().tunnel_mtu(85), None);
        let tiny = PathMtu {
            physical: Some(100),
            ..PathMtu::default()
        };
        assert_eq!(tiny.tunnel_mtu(85), Some(MIN_IPV4_MTU));
    }

    #[test]
    fn rekey_keeps_the_tia_under_the_new_id_and_snapshot_replaces_all() {
        let mut v = VpnView::default();
        let mut sa = VpnSa::new("vpn", 1);
        sa.tia = Some(Ipv4Addr::new(10, 200, 0, 1));
        v.apply(&VpnInput::TiaAssigned(sa));
        v.apply(&VpnInput::Rekeyed { from: 1, to: 2 });
        let cur = v.current(&[]).unwrap();
        assert_eq!(
            (cur.ike_sa, cur.tia),
            (2, Some(Ipv4Addr::new(10, 200, 0, 1)))
        );
        assert!(v.current(&["other".into()]).is_none());
        v.apply(&VpnInput::Snapshot(vec![]));
        assert!(v.current(&[]).is_none());
    }

    #[test]
    fn esp_over_ipv6_leaves_20_bytes_less_for_the_tunnel() {
        let v6 = PathMtu {
            physical: Some(1500),
            outer_ipv6: true,
            ..PathMtu::default()
        };
        assert_eq!(v6.esp_overhead(DEFAULT_ESP_OVERHEAD), 105);
        assert_eq!(v6.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1375));
        // kernel-libipsec: ipsec0's 1400 bounds IPv4 (1380), not IPv6.
        let libipsec_v6 = PathMtu {
            tia_device: Some(1400),
            ..v6
        };
        assert_eq!(libipsec_v6.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1375));
        let libipsec_v4 = PathMtu {
            outer_ipv6: false,
            ..libipsec_v6
        };
        assert_eq!(libipsec_v4.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1380));
    }

    #[test]
    fn a_mobike_move_between_families_follows_the_outer_header_and_keeps_the_tia() {
        let tia = Ipv4Addr::new(10, 200, 0, 1);
        let gw6: IpAddr = "2001:db8:cafe::10".parse().unwrap();
        let gw4: IpAddr = Ipv4Addr::new(203, 0, 113, 10).into();
        let mut v = VpnView::default();
        let mut sa = VpnSa::new("vpn", 1);
        sa.local = Some("2001:db8:a::100".parse().unwrap());
        sa.gateway = Some(gw6);
        sa.tia = Some(tia);
        sa.mtu.physical = Some(1500);
        v.apply(&VpnInput::TiaAssigned(sa));
        let cur = v.current(&[]).unwrap();
        assert!(cur.mtu.outer_ipv6);
        assert_eq!(cur.gateway, Some(gw6));
        v.apply(&VpnInput::Moved {
            ike_sa: 1,
            local: Some(Ipv4Addr::new(192, 168, 1, 100).into()),
            local_ifname: Some("eth-b".into()),
            gateway: Some(gw4),
            mtu: PathMtu::default(),
        });
        let cur = v.current(&[]).unwrap();
        assert!(!cur.mtu.outer_ipv6, "ESP now leaves in IPv4");
        assert_eq!(
            (cur.ike_sa, cur.tia, cur.gateway),
            (1, Some(tia), Some(gw4))
        );
        assert_eq!(cur.mtu.tunnel_mtu(DEFAULT_ESP_OVERHEAD), Some(1395));
    }
}
