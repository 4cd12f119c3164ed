//! The decapsulation check of mip4-fa's kernel tunnel backend: an
//! nftables table of its own (`ip mip4-fa`) with a set, one rule and a
//! named counter.
//!
//! RFC 5944 §4.2.2: the foreign agent compares the inner destination of
//! what arrives tunnelled to its care-of address with its visitor list and
//! does not forward what is for no visitor; and the tunnel is that of the
//! visitor's home agent (the mirror of the home agent's RFC 3024 check,
//! as the userspace plane does it, `dataplane::ingress`). A kernel
//! ipip link checks only the outer source (its fixed remote, the HA), so
//! the rule drops what leaves an FA link (`mip4fa-<HA>`) for a destination
//! that is not a visitor of that HA: the set holds (link, home address)
//! for every visitor, added and removed with it.
//!
//! The table is replaced atomically at start (what a killed instance left
//! goes with it) and deleted at a clean stop (as mip4-ha's,
//! `daemons::ha::ingress`).

use std::net::Ipv4Addr;

use crate::daemons::nft;

/// mip4-fa's own nftables table (family ip) and its named counter:
/// decapsulated datagrams dropped (the userspace plane's counter of the
/// same name counts the same drops).
pub const CHECK: nft::Table = nft::Table {
    family: "ip",
    name: TABLE,
    counter: COUNTER,
};
const TABLE: &str = "mip4-fa";
const COUNTER: &str = "inner_address_mismatch";
/// The set of (FA link, home address) pairs.
const SET: &str = "visitors";

/// The ruleset ([`nft::Table::ruleset`]). The raw prerouting hook sees
/// decapsulated datagrams as entering the link, before routing and
/// conntrack.
pub fn ruleset(link_prefix: &str) -> String {
    CHECK.ruleset(&format!(
            "\tset {SET} {{\n\
             \t\ttype ifname . ipv4_addr\n\
             \t}}\n\
             \tchain prerouting {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\tiifname \"{link_prefix}*\" iifname . ip daddr != @{SET} counter name \"{COUNTER}\" drop\n\
             \t}}\n"
    ))
}

/// The nft command that adds (`add`) or deletes (`delete`) a visitor.
fn element(verb: &str, link: &str, home: Ipv4Addr) -> String {
    format!("{verb} element ip {TABLE} {SET} {{ \"{link}\" . {home} }}\n")
}

/// Installs (or replaces) the table, with no visitor.
pub async fn install(link_prefix: &str) -> Result<(), String> {
    nft::load(&ruleset(link_prefix)).await
}

/// Datagrams for `home` from `link` pass from now on.
pub async fn admit(link: &str, home: Ipv4Addr) -> Result<(), String> {
    nft::load(&element("add", link, home)).await
}

/// Datagrams for `home` from `link` are dropped again.
pub async fn revoke(link: &str, home: Ipv4Addr) -> Result<(), String> {
    nft::load(&element("delete", link, home)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_drops_what_an_fa_link_carries_to_no_visitor_of_its_home_agent() {
        let r = ruleset("mip4fa-");
        assert!(r.starts_with("table ip mip4-fa\ndelete table ip mip4-fa\n"));
        assert!(r.contains("type ifname . ipv4_addr"));
        assert!(r.contains(
            "iifname \"mip4fa-*\" iifname . ip daddr != @visitors counter name \"inner_address_mismatch\" drop"
        ));
    }

    #[test]
    fn a_visitor_is_its_link_and_home_address() {
        let h = Ipv4Addr::new(10, 1, 100, 5);
        assert_eq!(
            element("add", "mip4fa-0a010102", h),
            "add element ip mip4-fa visitors { \"mip4fa-0a010102\" . 10.1.100.5 }\n"
        );
        assert!(element("delete", "mip4fa-0a010102", h).starts_with("delete element "));
    }
}
