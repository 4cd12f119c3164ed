//! Why the node decided what it did, typed: each variant prints the
//! decision and the RFC rule it follows, for the `reason` of the node's
//! events and log lines. The trigger (an address added, a VPN input, a
//! verdict) is prefixed where the decision is made.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address, or "?" when not known (a gateway charon did not report).
struct Maybe<A>(Option<A>);

impl<A: fmt::Display> fmt::Display for Maybe<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("?"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reason {
    /// Mode 'c' (RFC 5266 §3.1.1).
    TrustedCareOf { addr: Ipv4Addr, ifname: String },
    /// Mode 'f' (RFC 5266 §3.1.2): a foreign agent advertises on the
    /// trusted link of `addr`.
    ForeignAgentCareOf {
        care_of: Ipv4Addr,
        agent: Ipv4Addr,
        addr: Ipv4Addr,
        ifname: String,
    },
    /// No mode until the probe's verdict (RFC 5266 §3.4).
    Detecting { address: Ipv4Addr, ifname: String },
    /// The probe registers directly with the i-HA (RFC 5266 §3.4).
    ProbeStarted {
        address: Ipv4Addr,
        ifname: String,
        home_agent: Ipv4Addr,
    },
    /// Inside: the accepted probe is the mode 'c' registration (RFC 5266
    /// §3.4.1, §3.4.2).
    ProbeKept { addr: Ipv4Addr, ifname: String },
    /// RFC 5266 §3.4.1 step 2: the MN MAY tear the VPN down inside.
    TerminateVpnInside,
    /// Inside: the VPN asked for with the probe ([`Reason::VpnWithProbe`])
    /// was never used.
    TerminateVpnOfProbe,
    /// Mode 'mc': a MOBIKE move keeps the TIA, so the home agent never
    /// learns of it (RFC 5266 §3).
    MobikeKeepsTia { tia: Option<Ipv4Addr> },
    /// Mode 'mc': a VPN input that leaves TIA and gateway as they were.
    BindingUnchanged { tia: Option<Ipv4Addr> },
    /// Mode 'mc': a new TIA is registered at once (RFC 5266 §3).
    TiaChanged {
        from: Ipv4Addr,
        to: Ipv4Addr,
        connection: String,
        gateway: Option<IpAddr>,
    },
    /// Mode 'mc': another gateway, same TIA: registered at once (RFC 5266
    /// §3).
    OtherGateway {
        from: Option<IpAddr>,
        to: Option<IpAddr>,
        tia: Ipv4Addr,
    },
    /// Mode 'mc': a TIA came back after the binding went stale.
    TiaBack {
        tia: Ipv4Addr,
        connection: String,
        gateway: Option<IpAddr>,
    },
    /// Mode 'mc' (RFC 5266 §3.1.3): the TIA as co-located care-of
    /// address, through the VPN, reverse tunnelled.
    TiaRegistered {
        tia: Ipv4Addr,
        connection: String,
        gateway: Option<IpAddr>,
    },
    /// IPv6-only access: untrusted by definition (RFC 5266 §3.4).
    Ipv6Only { address: Ipv6Addr },
    /// Outside without a VPN (RFC 5266 §3.4.2 step 1).
    VpnNeeded,
    /// Leaving mode 'c' with no IKE_SA: the VPN is asked for with the
    /// probe, so that IKE runs while the verdict is awaited.
    VpnWithProbe,
    /// Outside without a VPN, but an IKE_SA of the connection is on its
    /// way (whoever initiated it): mip4d waits for it up to `secs`.
    VpnComing { ike_sa: u32, secs: u64 },
    /// The IKE_SA awaited did not come up within `secs`.
    VpnComingTooLong { ike_sa: u32, secs: u64 },
    /// An IKE_SA lost its local address and `new` is usable: charon is
    /// asked to roam now, not after kernel-netlink's delay.
    RoamNow {
        old: std::net::IpAddr,
        new: Ipv4Addr,
        ifname: String,
    },
    /// An IKE_SA's local address went: charon is asked to roam as soon
    /// as it knows a new path.
    RoamWhenReady { old: Ipv4Addr },
    /// Nothing leaves in the clear while detecting (RFC 5266 §3.4).
    HeldDetecting { address: Ipv4Addr, home: Ipv4Addr },
    /// No decided path (RFC 5265 §3.2.2).
    HeldUndecided { home: Ipv4Addr },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::TrustedCareOf { addr, ifname } => write!(
                f,
                "{addr} on {ifname} is on a trusted network, co-located care-of address (RFC 5266 §3.1.1)"
            ),
            Reason::ForeignAgentCareOf {
                care_of,
                agent,
                addr,
                ifname,
            } => write!(
                f,
                "{addr} on {ifname} is on a trusted network and foreign agent {agent} advertises there: its care-of address {care_of}, registered through it (RFC 5266 §3.1.2)"
            ),
            Reason::Detecting { address, ifname } => write!(
                f,
                "detecting whether {address} on {ifname} is on a trusted network (RFC 5266 §3.4): registering with the i-HA directly, no mode until the verdict"
            ),
            Reason::ProbeStarted {
                address,
                ifname,
                home_agent,
            } => write!(
                f,
                "registering {address} with the i-HA {home_agent} directly, without the VPN, to learn whether {ifname} is on a trusted network (RFC 5266 §3.4)"
            ),
            Reason::ProbeKept { addr, ifname } => write!(
                f,
                "mode c with {addr} on {ifname} as co-located care-of address, the probe's registration kept (RFC 5266 §3.4.1, §3.4.2)"
            ),
            Reason::TerminateVpnInside => f.write_str(
                "inside the enterprise; vpn_when_inside = terminate (RFC 5266 §3.4.1 step 2: MAY tear down)",
            ),
            Reason::TerminateVpnOfProbe => f.write_str(
                "inside the enterprise: the VPN asked for with the probe was never used, whatever vpn_when_inside says (RFC 5266 §3.4.1 step 2: MAY tear down)",
            ),
            Reason::MobikeKeepsTia { tia } => write!(
                f,
                "the TIA {} is unchanged: no re-registration, the home agent never learns of the move (RFC 5266 §3)",
                Maybe(*tia)
            ),
            Reason::BindingUnchanged { tia } => write!(
                f,
                "the binding's TIA {} and gateway are unchanged: no re-registration",
                Maybe(*tia)
            ),
            Reason::TiaChanged {
                from,
                to,
                connection,
                gateway,
            } => write!(
                f,
                "the TIA changed {from} -> {to} (VPN '{connection}', gateway {}): re-registering at once (RFC 5266 §3)",
                Maybe(*gateway)
            ),
            Reason::OtherGateway { from, to, tia } => write!(
                f,
                "attached to another VPN gateway {} -> {} (TIA {tia}): re-registering at once (RFC 5266 §3)",
                Maybe(*from),
                Maybe(*to)
            ),
            Reason::TiaBack {
                tia,
                connection,
                gateway,
            } => write!(
                f,
                "a TIA is back ({tia}, VPN '{connection}', gateway {}) after the binding went stale: registering it",
                Maybe(*gateway)
            ),
            Reason::TiaRegistered {
                tia,
                connection,
                gateway,
            } => write!(
                f,
                "not on a trusted network; the VPN '{connection}' (gateway {}) gave the TIA {tia}: registering it as co-located care-of address through the VPN, reverse tunnelled (RFC 5266 §3.1.3)",
                Maybe(*gateway)
            ),
            Reason::Ipv6Only { address } => write!(
                f,
                "{address} is IPv6-only access: the trusted-network probe is a Mobile IPv4 registration (RFC 5266 §3.4) and cannot run over it, so it is untrusted; mode mc waits for a TIA from the VPN, whose IKE_SA runs over IPv6 (RFC 5266 §3.1.3, RFC 4555)"
            ),
            Reason::VpnNeeded => f.write_str("no VPN is up: mode mc needs one (RFC 5266 §3.4.2 step 1)"),
            Reason::VpnComing { ike_sa, secs } => write!(
                f,
                "IKE_SA {ike_sa} of the VPN is connecting (the user's, a network manager's or mip4d's own): a second initiate would make a second IKE_SA or CHILD_SA; waiting up to {secs} s for it to come up or fail (RFC 5266 §3.4.2 step 1)"
            ),
            Reason::VpnComingTooLong { ike_sa, secs } => write!(
                f,
                "IKE_SA {ike_sa} of the VPN still connecting after {secs} s: asking charon as if there were none (RFC 5266 §3.4.2 step 1)"
            ),
            Reason::VpnWithProbe => f.write_str("no IKE_SA while leaving mode c: the VPN is asked for with the probe, so that IKE runs while the verdict is awaited; the TIA waits for an untrusted verdict (RFC 5266 §3.4.2 step 1)"),
            Reason::RoamNow { old, new, ifname } => write!(
                f,
                "the IKE_SA's address {old} is gone and {new} on {ifname} has a default route: charon roams now, MOBIKE moves the IKE_SA (RFC 4555 §3.5)"
            ),
            Reason::RoamWhenReady { old } => write!(
                f,
                "the IKE_SA's address {old} is gone: charon roams as soon as it knows a new path, MOBIKE moves the IKE_SA (RFC 4555 §3.5)"
            ),
            Reason::HeldDetecting { address, home } => write!(
                f,
                "detecting whether {address} is on a trusted network: traffic from {home} held, nothing leaves in the clear (RFC 5266 §3.4)"
            ),
            Reason::HeldUndecided { home } => {
                write!(f, "no decided path for {home}: traffic held (RFC 5265 §3.2.2)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_name_the_rule_and_unknown_addresses_print_as_a_question_mark() {
        let r = Reason::OtherGateway {
            from: None,
            to: Some([192, 0, 2, 200].into()),
            tia: [10, 200, 0, 1].into(),
        };
        assert_eq!(
            r.to_string(),
            "attached to another VPN gateway ? -> 192.0.2.200 (TIA 10.200.0.1): re-registering at once (RFC 5266 §3)"
        );
    }
}
