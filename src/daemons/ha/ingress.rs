//! The RFC 3024 ingress check for the kernel tunnel backend: an nftables
//! table of mip4-ha's own (`ip mip4-ha`) with one rule and a named counter.
//!
//! RFC 3024 §4.3 (home agent): a reverse-tunnelled datagram whose inner
//! source is not the home address registered for that tunnel is silently
//! discarded, else anyone who can reach the HA could inject datagrams with
//! intranet sources. The userspace plane checks that itself
//! (`dataplane::ingress`); a kernel ipip link checks only the outer source
//! (its fixed remote). The link is `mip4-<care-of address>`, shared by
//! the bindings registered with that care-of address (the nodes behind one
//! foreign agent, RFC 5944 §3; the kernel allows one link per endpoint
//! pair), and its only routes are their home addresses' /32s. So "the
//! inner source is a home address registered via this care-of address" is
//! exactly strict reverse-path filtering on the link (RFC 3704 §2.2):
//! `fib saddr . iif oif missing` accepts those home addresses and no
//! other, still exact with several routes into one link: a node behind
//! another care-of address has its route into another link, and a node
//! sharing the link is as registered through that care-of address as
//! RFC 3024 §4.3 asks (the FA checks its own visitors, §4.2).
//!
//! Why nftables and not the link's `rp_filter` sysctl: the kernel applies
//! the larger of `conf/all` and `conf/<link>`, so a host with
//! `all.rp_filter = 2` (loose, common on multihomed routers and the default
//! of some distributions) silently turns a per-link strict setting into
//! loose, which lets any routable spoofed source through; and rp_filter
//! drops are only counted host-wide (`IPReversePathFilter`), not per check.
//! The rule below is independent of those sysctls, static (nothing to
//! change per binding: the route the binding installs anyway is what it
//! reads), runs at `raw` priority before conntrack, and its counter is
//! ours, read back into `mip4ctl counters` / `status`.
//!
//! RFC 5454 §3.3.2, §4 (DSMIPv4): the same for IPv6 out of a `sit` link
//! (`mip6-<remote address>`, [`crate::dataplane::sit`], shared like the
//! ipip link by the bindings tunnelling to one care-of address): its only
//! IPv6 routes are those bindings' prefixes, so "the inner IPv6 source lies
//! in a prefix registered for this tunnel" is again strict reverse-path
//! filtering on the link, in a table of the ip6 family (`ip6 mip4-ha`)
//! whose counter has the userspace plane's name, `ipv6_source_spoofed`.
//! Link-local sources pass it (the link's own fe80::/64) and stay on the
//! link: the kernel never forwards them (RFC 4291 §2.5.6).
//!
//! A binding that moves leaves datagrams behind on its old path: what
//! the node sent through its previous care-of address before it had the
//! new registration's reply, still on its way when the home agent moved
//! the prefix's route (a move from mode 'mc' to a trusted network: the
//! registration goes straight to the home agent, the last data through
//! the VPN gateway behind it). Rejected by the rule above, that is user
//! data lost at every such handover (the kernel tier's `dual-stack` lost
//! 16 datagrams when the VPN path lagged 800 ms). So each table has a
//! set `grace` of (old link, home address or prefix) pairs that mip4-ha
//! adds with a timeout when a binding leaves a link ([`grace`]): for
//! that long the old link's datagrams from that address alone pass,
//! as they did a moment before (the link's fixed remote is still the
//! outer-source check), and the kernel expires the pair.
//!
//! `nft` ([`crate::daemons::nft`]) loads and removes the tables, the
//! counters are read over netlink ([`crate::daemons::nft_counter`]); each
//! table is replaced atomically at start (what a killed instance left goes
//! with it) and deleted at a clean stop.

use crate::daemons::nft;

/// mip4-ha's own nftables table of the ip family and its named counter:
/// reverse-tunnelled datagrams dropped.
pub const CHECK: nft::Table = nft::Table {
    family: "ip",
    name: TABLE,
    counter: "rfc3024_ingress_dropped",
};

/// The ip6 table (RFC 5454): IPv6 with a source outside the tunnel's
/// prefix dropped (the userspace plane's counter of the same name).
pub const CHECK6: nft::Table = nft::Table {
    family: "ip6",
    name: TABLE,
    counter: "ipv6_source_spoofed",
};

const TABLE: &str = "mip4-ha";

/// The set of the ip6 table: (old `sit` link, prefix) pairs a moved
/// binding's datagrams still pass on, each with its timeout.
const GRACE_SET: &str = "grace";

/// The rule of either table: drop what enters a link named `links*` with
/// a source the link's routes do not lead back into; before it, the
/// table's grace set (`addr`: `ipv4_addr` or `ipv6_addr`) and the rule
/// that lets its pairs pass (looked up for those links only).
fn ruleset_of(check: &nft::Table, links: &str, addr: &str) -> String {
    let saddr = if check.family == "ip6" { "ip6" } else { "ip" };
    check.ruleset(&format!(
        "\tset {GRACE_SET} {{\n\t\ttype ifname . {addr}\n\t\tflags interval, timeout\n\t}}\n\
         \tchain prerouting {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"{links}*\" iifname . {saddr} saddr @{GRACE_SET} accept\n\
             \t\tiifname \"{links}*\" fib saddr . iif oif missing counter name \"{}\" drop\n\
             \t}}\n",
        check.counter
    ))
}

/// The RFC 3024 table (IPv4 out of the `ipip` links).
pub fn ruleset() -> String {
    ruleset_of(&CHECK, crate::dataplane::kernel::LINK_PREFIX, "ipv4_addr")
}

/// The RFC 5454 table (IPv6 out of the `sit` links).
pub fn ruleset6() -> String {
    ruleset_of(&CHECK6, crate::dataplane::sit::LINK_PREFIX, "ipv6_addr")
}

/// How long a moved binding's old link still passes its home address's
/// or prefix's datagrams, and stays: the userspace plane's grace.
pub const GRACE: std::time::Duration = crate::dataplane::binding::MOVE_GRACE;

/// Adds (`link`, `net`: a home address as a /32 or an IPv6 prefix) to
/// the grace set of its family's table for [`GRACE`] (one netlink round
/// trip: [`crate::daemons::nft_setelem`]).
pub fn grace(link: &str, net: ipnet::IpNet) -> Result<(), String> {
    crate::daemons::nft_setelem::add_ifname_net(TABLE, GRACE_SET, link, net, GRACE)
}

/// Installs (or replaces) the RFC 3024 table.
pub async fn install() -> Result<(), String> {
    nft::load(&ruleset()).await
}

/// Installs (or replaces) the RFC 5454 table.
pub async fn install6() -> Result<(), String> {
    nft::load(&ruleset6()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_drops_what_a_link_carries_from_another_source_than_its_home_address() {
        assert_eq!(
            ruleset(),
            "table ip mip4-ha\ndelete table ip mip4-ha\ntable ip mip4-ha {\n\
             \tcounter rfc3024_ingress_dropped {\n\t}\n\
             \tset grace {\n\t\ttype ifname . ipv4_addr\n\t\tflags interval, timeout\n\t}\n\
             \tchain prerouting {\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"mip4-*\" iifname . ip saddr @grace accept\n\
             \t\tiifname \"mip4-*\" fib saddr . iif oif missing counter name \"rfc3024_ingress_dropped\" drop\n\
             \t}\n}\n"
        );
    }

    /// The ip6 table checks IPv6 sources against the routes of the sit
    /// link it came in on, with the userspace plane's counter name.
    #[test]
    fn the_ip6_rule_drops_what_a_sit_link_carries_from_outside_its_prefix() {
        assert_eq!(
            ruleset6(),
            "table ip6 mip4-ha\ndelete table ip6 mip4-ha\ntable ip6 mip4-ha {\n\
             \tcounter ipv6_source_spoofed {\n\t}\n\
             \tset grace {\n\t\ttype ifname . ipv6_addr\n\t\tflags interval, timeout\n\t}\n\
             \tchain prerouting {\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"mip6-*\" iifname . ip6 saddr @grace accept\n\
             \t\tiifname \"mip6-*\" fib saddr . iif oif missing counter name \"ipv6_source_spoofed\" drop\n\
             \t}\n}\n"
        );
    }
}
