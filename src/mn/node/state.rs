//! Where the node stands ([`State`], what the operator sees) and the
//! care-of address with the access mode it serves ([`Access`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use crate::mn::mode::Mode;

/// Where the node stands. Serialized in status and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    /// No usable address yet (start, or every address gone).
    Detached,
    /// Only addresses on networks not known to be trusted, and no TIA
    /// from the VPN (yet, or any more): mode 'c' does not apply and mode
    /// 'mc' waits for the VPN.
    Untrusted { address: Ipv4Addr },
    /// Only IPv6 access, and no TIA from the VPN (yet, or any more): the
    /// trusted-network probe is Mobile IPv4 and cannot run there, so the
    /// network is untrusted by definition; mode 'mc' waits for the VPN,
    /// whose IKE_SA runs over IPv6 (RFC 5266 §3.4, §3.1.3).
    UntrustedIpv6 { address: Ipv6Addr },
    /// On the home link: no binding, no tunnel.
    AtHome,
    /// A request for this care-of address is outstanding.
    Registering { care_of: Ipv4Addr },
    /// The home agent accepted this care-of address.
    Registered { care_of: Ipv4Addr },
    /// The home agent refused; no retry until the attachment changes.
    Denied { care_of: Ipv4Addr, code: u8 },
    /// No answer after every retransmission; retried later.
    Unreachable { care_of: Ipv4Addr },
    /// Deregistering before exit.
    Deregistering { care_of: Ipv4Addr },
    /// Finding out whether `address` is on a trusted network (RFC 5266
    /// §3.4): the probe to the i-HA runs, no mode is decided, traffic
    /// that would leave in the clear is held.
    Detecting { address: Ipv4Addr },
    /// Shut down: nothing installed any more.
    Stopped,
}

impl State {
    /// Whether this state runs in an access mode (it has a care-of
    /// address); which one is the node's ([`Node::mode`](super::Node::mode)).
    pub fn has_care_of(&self) -> bool {
        matches!(
            self,
            State::Registering { .. }
                | State::Registered { .. }
                | State::Denied { .. }
                | State::Unreachable { .. }
                | State::Deregistering { .. }
        )
    }
}

/// The care-of address the node registers (or last registered) and the
/// access mode it serves, with what each mode needs (RFC 5266 §3). It
/// outlives the registration states: outside with the VPN gone, a mode
/// 'mc' binding stays at the home agent, stale, until a TIA comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Access {
    /// No care-of address: nothing registered yet, or back home.
    None,
    /// Mode 'c' (§3.1.1): a trusted physical address, co-located.
    C { care_of: Ipv4Addr },
    /// Mode 'f' (§3.1.2): a foreign agent's care-of address on a
    /// trusted network, registered through the agent, which is the home
    /// address's router there.
    F(FaAttachment),
    /// Mode 'mc' (§3.1.3): the VPN's TIA, co-located, inside ESP.
    Mc(McAttachment),
}

/// The foreign agent a mode 'f' registration goes through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FaAttachment {
    /// The agent's care-of address (its advertisement's).
    pub(super) care_of: Ipv4Addr,
    /// The agent's address on the link: requests go there, and it routes
    /// the home address's traffic (RFC 5944 §3.6.1.1, §4.2.2).
    pub(super) agent: Ipv4Addr,
    pub(super) ifname: String,
    /// The node's co-located address on that link: the one the probe
    /// found trusted (RFC 5266 §3), and mode 'c''s fallback.
    pub(super) local: Ipv4Addr,
    /// The agent's longest registration lifetime (§2.1.1).
    pub(super) max_lifetime: u16,
}

/// The VPN attachment a mode 'mc' registration was made through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct McAttachment {
    pub(super) tia: Ipv4Addr,
    /// The gateway as of the registration, followed through MOBIKE moves
    /// and rekeys of the same IKE_SA (same gateway, RFC 4555); a TIA from
    /// an IKE_SA with another remote is another gateway.
    pub(super) gateway: Option<IpAddr>,
    pub(super) ike_sa: u32,
    /// The TIA is gone (released, IKE_SA down): the binding at the home
    /// agent leads nowhere until a TIA is registered again.
    pub(super) stale: bool,
}

impl Access {
    pub(super) fn care_of(&self) -> Option<Ipv4Addr> {
        match self {
            Access::None => None,
            Access::C { care_of } => Some(*care_of),
            Access::F(f) => Some(f.care_of),
            Access::Mc(m) => Some(m.tia),
        }
    }

    /// The node's own physical address the access rests on (mode 'c':
    /// the care-of address; mode 'f': its address on the agent's link).
    pub(super) fn local(&self) -> Option<Ipv4Addr> {
        match self {
            Access::C { care_of } => Some(*care_of),
            Access::F(f) => Some(f.local),
            Access::None | Access::Mc(_) => None,
        }
    }

    pub(super) fn fa(&self) -> Option<&FaAttachment> {
        match self {
            Access::F(f) => Some(f),
            _ => None,
        }
    }

    pub(super) fn mode(&self) -> Option<Mode> {
        match self {
            Access::None => None,
            Access::C { .. } => Some(Mode::C),
            Access::F(_) => Some(Mode::F),
            Access::Mc(_) => Some(Mode::Mc),
        }
    }

    pub(super) fn is_c(&self) -> bool {
        matches!(self, Access::C { .. })
    }

    pub(super) fn mc(&self) -> Option<&McAttachment> {
        match self {
            Access::Mc(m) => Some(m),
            _ => None,
        }
    }

    /// A mode 'mc' binding whose TIA is still there.
    pub(super) fn is_live_mc(&self) -> bool {
        self.mc().is_some_and(|m| !m.stale)
    }

    pub(super) fn is_stale(&self) -> bool {
        self.mc().is_some_and(|m| m.stale)
    }
}

/// The tunnel as last asked of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TunnelState {
    pub(super) care_of: Ipv4Addr,
    pub(super) home_agent: Ipv4Addr,
}
