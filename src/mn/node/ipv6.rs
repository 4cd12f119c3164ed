//! IPv6 access networks. Mobile IPv4 has no IPv6 care-of address, but
//! the VPN runs over IPv6 as well as IPv4 (IKE over IPv6 with an IPv4 TIA
//! inside; MOBIKE moves it between the families, RFC 4555), so mode 'mc'
//! (RFC 5266 §3.1.3) works there. The trusted-network probe is a Mobile
//! IPv4 registration sent to the i-HA (RFC 5266 §3.4): on IPv6-only
//! access it cannot run, so such a network is untrusted by definition,
//! and the VPN is asked for at once, as soon as an IPv6 default route
//! leads beyond the link ([`State::UntrustedIpv6`](super::State::UntrustedIpv6)).

use std::net::Ipv6Addr;
use std::time::Instant;

use tracing::info;

use super::Node;

/// Addresses that reach no VPN gateway: link-local (fe80::/10, on
/// every link that is up), loopback, unspecified, multicast.
fn reaches_beyond_the_link(a: Ipv6Addr) -> bool {
    let link_local = a.segments()[0] & 0xffc0 == 0xfe80;
    !(link_local || a.is_loopback() || a.is_unspecified() || a.is_multicast())
}

impl Node {
    /// An IPv6 address appeared on an interface (rtnetlink's view).
    pub fn ipv6_address_added(&mut self, now: Instant, ifname: &str, addr: Ipv6Addr) {
        if !self.watches(ifname) || !reaches_beyond_the_link(addr) {
            return;
        }
        if self
            .links
            .ipv6
            .iter()
            .any(|(i, a)| i == ifname && *a == addr)
        {
            return;
        }
        self.links.ipv6.push((ifname.to_string(), addr));
        info!(ifname, %addr, "IPv6 address added");
        self.evaluate(now, None, &format!("IPv6 address {addr} added on {ifname}"));
        self.settle(now);
    }

    pub fn ipv6_address_removed(&mut self, now: Instant, ifname: &str, addr: Ipv6Addr) {
        let before = self.links.ipv6.len();
        self.links
            .ipv6
            .retain(|(i, a)| !(i == ifname && *a == addr));
        if self.links.ipv6.len() == before {
            return;
        }
        info!(ifname, %addr, "IPv6 address removed");
        self.evaluate(
            now,
            None,
            &format!("IPv6 address {addr} removed from {ifname}"),
        );
        self.settle(now);
    }

    /// An IPv6 default route appeared or went (main table). Until there
    /// is one, IPv6 access reaches nothing beyond its link: a DHCP-style
    /// attachment adds the address first, and charon asked for the VPN
    /// then starts it from a link-local address and never recovers
    /// (`error writing to socket: Invalid argument`, found in the lab).
    pub fn ipv6_default_route(&mut self, now: Instant, present: bool) {
        if self.links.ipv6_default_route == present {
            return;
        }
        self.links.ipv6_default_route = present;
        info!(present, "IPv6 default route");
        let why = if present {
            "an IPv6 default route appeared"
        } else {
            "the IPv6 default route went"
        };
        self.evaluate(now, None, why);
        self.settle(now);
    }

    /// The newest IPv6 address on a watched link that is up, when an IPv6
    /// default route leads beyond the link.
    pub(super) fn usable_ipv6(&self) -> Option<Ipv6Addr> {
        if !self.links.ipv6_default_route {
            return None;
        }
        self.links
            .ipv6
            .iter()
            .rev()
            .find(|(i, _)| !self.links.down.contains(i))
            .map(|(_, a)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_beyond_the_link_count_as_access() {
        for (a, want) in [
            ("2001:db8:a::100", true),
            ("fd00::1", true),
            ("fe80::1", false),
            ("febf::1", false),
            ("::1", false),
            ("::", false),
            ("ff02::1", false),
        ] {
            assert_eq!(reaches_beyond_the_link(a.parse().unwrap()), want, "{a}");
        }
    }
}
