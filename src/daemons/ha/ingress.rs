//! The RFC 3024 ingress check for the kernel tunnel backend: an nftables
//! table of mip4-ha's own (`ip mip4-ha`) with one rule and a named counter.
//!
//! RFC 3024 §4.3 (home agent): a reverse-tunnelled datagram whose inner
//! source is not the home address registered for that tunnel is silently
//! discarded, else anyone who can reach the HA could inject datagrams with
//! intranet sources. The userspace plane checks that itself
//! (`dataplane::ingress`); a kernel ipip link checks only the outer source
//! (its fixed remote). Each binding's link is `mip4-<home address>` and
//! its only route is the home address's /32, so "the inner source is this
//! link's home address" is exactly strict reverse-path filtering on the
//! link (RFC 3704 §2.2): `fib saddr . iif oif missing`.
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
//! `nft` ([`crate::daemons::nft`]) is run for the three operations; the table
//! is replaced atomically at start (what a killed instance left goes with
//! it) and deleted at a clean stop.

use crate::daemons::nft;

/// mip4-ha's own nftables table (family ip) and its named counter:
/// reverse-tunnelled datagrams dropped.
pub const CHECK: nft::Table = nft::Table {
    name: "mip4-ha",
    counter: COUNTER,
};
const COUNTER: &str = "rfc3024_ingress_dropped";

/// The ruleset ([`nft::Table::ruleset`]).
pub fn ruleset() -> String {
    let links = format!("{}*", crate::dataplane::kernel::LINK_PREFIX);
    CHECK.ruleset(&format!(
        "\tchain prerouting {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"{links}\" fib saddr . iif oif missing counter name \"{COUNTER}\" drop\n\
             \t}}\n"
    ))
}

/// Installs (or replaces) the table.
pub async fn install() -> Result<(), String> {
    nft::load(&ruleset()).await
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
             \tchain prerouting {\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"mip4-*\" fib saddr . iif oif missing counter name \"rfc3024_ingress_dropped\" drop\n\
             \t}\n}\n"
        );
    }
}
