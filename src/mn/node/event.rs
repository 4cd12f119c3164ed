//! The node's events, for the operator (`mip4ctl events`) and the lab.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use serde::Serialize;

use super::{State, VpnRequest};
use crate::mn::detect::{Cause, Verdict};
use crate::mn::guard::Warning;
use crate::mn::mode::Mode;

/// Something the operator (and the lab's timing) wants to know. The node
/// stamps each with the `now` it was given; the daemon adds wall and
/// monotonic clock readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NodeEvent {
    AddressAdded {
        ifname: String,
        address: Ipv4Addr,
        prefix_len: u8,
    },
    AddressRemoved {
        ifname: String,
        address: Ipv4Addr,
    },
    LinkUp {
        ifname: String,
    },
    LinkDown {
        ifname: String,
    },
    /// A deployment mistake the node cannot fix ([`crate::mn::guard`]).
    Warning {
        #[serde(flatten)]
        warning: Warning,
        message: String,
    },
    /// A state transition and why.
    State {
        from: State,
        to: State,
        reason: String,
    },
    /// The access mode changed (`null` = none: at home or detached).
    ModeChanged {
        from: Option<Mode>,
        to: Option<Mode>,
        reason: String,
    },
    RequestSent {
        purpose: &'static str,
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
        identification: u64,
        retransmission: bool,
    },
    /// A request that found no route when it was due went out when a
    /// route appeared (the daemon's doing: it never reached the wire
    /// before, so this is not a retransmission).
    RequestSentOnRoute {
        src: Option<Ipv4Addr>,
        dst: SocketAddrV4,
    },
    ReplyReceived {
        from: SocketAddrV4,
    },
    RegistrationAccepted {
        care_of: Ipv4Addr,
        lifetime: u64,
        renewal: bool,
    },
    RegistrationDenied {
        code: u8,
        reason: &'static str,
        by: &'static str,
        purpose: &'static str,
    },
    RegistrationFailed {
        purpose: &'static str,
        attempts: u32,
    },
    Deregistered {
        care_of: Ipv4Addr,
    },
    BindingExpired {
        care_of: Ipv4Addr,
    },
    HomeAgentChanged {
        from: Ipv4Addr,
        to: Ipv4Addr,
    },
    TunnelUp {
        care_of: Ipv4Addr,
        home_agent: Ipv4Addr,
    },
    TunnelDown {
        reason: String,
    },
    /// DSMIPv4 (RFC 5454): the IPv6 home address from the granted prefix
    /// is on the tunnel's device, IPv6 routed into the tunnel.
    Ipv6HomeUp {
        address: std::net::Ipv6Addr,
        prefix: ipnet::Ipv6Net,
        tunnel_to: crate::dataplane::binding::Ipv6TunnelTo,
    },
    /// The IPv6 home address and its routes were removed.
    Ipv6HomeDown {
        reason: String,
    },
    /// The plugin in charon connected (mip4d side of the bridge).
    PluginConnected {
        agent: String,
    },
    /// The plugin's connection ended; the VPN view is kept until the next
    /// snapshot.
    PluginDisconnected {
        reason: String,
    },
    /// handle_vips: the VPN installed a TIA on the MN.
    VpnTiaAssigned {
        connection: String,
        ike_sa: u32,
        tia: Ipv4Addr,
        gateway: Option<IpAddr>,
        local: Option<IpAddr>,
    },
    /// handle_vips(release): the IKE_SA's TIA goes.
    VpnTiaReleased {
        ike_sa: u32,
        tia: Option<Ipv4Addr>,
    },
    /// ike_update: MOBIKE moved the IKE_SA.
    VpnMoved {
        ike_sa: u32,
        from: Option<IpAddr>,
        to: Option<IpAddr>,
        gateway: Option<IpAddr>,
    },
    /// ike_state_change(IKE_CONNECTING): an IKE_SA of the VPN is on its
    /// way up, whoever initiated it.
    VpnConnecting {
        connection: String,
        ike_sa: u32,
        local: Option<IpAddr>,
        gateway: Option<IpAddr>,
    },
    VpnUp {
        connection: String,
        ike_sa: u32,
    },
    VpnDown {
        ike_sa: u32,
    },
    /// ike_rekey (`reestablished` false) or ike_reestablish_post (true).
    VpnRekeyed {
        from: u32,
        to: u32,
        reestablished: bool,
        gateway: Option<IpAddr>,
    },
    /// The kernel roam event, as charon saw it.
    VpnRoam,
    /// child_updown(up): a CHILD_SA of the IKE_SA is installed; its TIA
    /// carries traffic from now on.
    VpnChildUp {
        ike_sa: u32,
        child: String,
    },
    /// A snapshot from the plugin: the view is replaced by it.
    VpnSnapshot {
        ike_sas: usize,
        tia: Option<Ipv4Addr>,
        gateway: Option<IpAddr>,
    },
    /// A VPN input that changed nothing at the home agent, and why
    /// (`keep_binding`: e.g. a MOBIKE move with the TIA unchanged,
    /// RFC 5266 §3).
    Decision {
        decision: &'static str,
        reason: String,
    },
    /// The binding at the home agent no longer leads anywhere: its
    /// care-of address (the TIA) is gone with the VPN.
    BindingStale {
        care_of: Ipv4Addr,
        reason: String,
    },
    /// RFC 3519 §4.10: nothing came from the home agent through the UDP
    /// tunnel for `silent_s` seconds (keepalives unanswered): the NAT
    /// lost its mapping, and the node registers again at once.
    NatMappingLost {
        care_of: Ipv4Addr,
        silent_s: u64,
    },
    /// The Mobile IP tunnel's MTU was set (mode 'mc').
    TunnelMtu {
        mtu: u32,
        physical: Option<u32>,
        tia_device: Option<u32>,
        esp_overhead: u32,
    },
    /// Trusted-network detection began for an attachment (RFC 5266 §3.4).
    ProbeStarted {
        ifname: String,
        address: Ipv4Addr,
        reason: String,
    },
    /// A probe request left (directly, bypassing the VPN).
    ProbeSent {
        ifname: String,
        address: Ipv4Addr,
        home_agent: Ipv4Addr,
        identification: u64,
        retransmission: bool,
    },
    /// A newer attachment (or the loss of this one) ended a probe before
    /// its verdict.
    ProbeCancelled {
        ifname: String,
        address: Ipv4Addr,
        reason: String,
    },
    /// A reply to the probe that was not believed: it failed the MN-HA
    /// authenticator, did not parse, or named another home address.
    ProbeReplyDropped {
        from: SocketAddrV4,
    },
    /// The detection's outcome for an attachment.
    TrustVerdict {
        ifname: String,
        address: Ipv4Addr,
        verdict: Verdict,
        #[serde(flatten)]
        cause: Cause,
        /// Milliseconds from the probe's start (null for monitoring).
        elapsed_ms: Option<u64>,
        /// Replies dropped as forged during this probe.
        forged: u64,
        reason: String,
    },
    /// The MAC address of the default gateway on `ifname` (the key of the
    /// verdict cache and of `never_probe` by MAC).
    GatewayLearned {
        ifname: String,
        gateway: String,
    },
    /// A foreign agent's advertisement heard on `ifname` (RFC 5944 §2.1):
    /// a candidate for mode 'f', used only on a trusted network.
    AgentHeard {
        ifname: String,
        agent: Ipv4Addr,
        care_of: Ipv4Addr,
        registration_lifetime: u16,
        reverse_tunnel: bool,
    },
    /// A foreign agent is no longer used: its advertisements stopped for
    /// their lifetime (§2.4.2), it withdrew, or it (or the home agent
    /// behind it) denied or never answered.
    AgentLost {
        ifname: String,
        agent: Ipv4Addr,
        reason: String,
    },
    /// Traffic from the home address is held (blackholed).
    TrafficHeld {
        reason: String,
    },
    /// Traffic from the home address flows again.
    TrafficReleased {
        reason: String,
    },
    /// The operator pinned the access mode (`mip4ctl force`), or
    /// released the pin (`mode` null).
    ModePinned {
        mode: Option<Mode>,
        reason: String,
    },
    /// mip4d asked charon to initiate or terminate the VPN.
    VpnRequested {
        #[serde(flatten)]
        request: VpnRequest,
        reason: String,
    },
}
