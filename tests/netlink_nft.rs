//! mip4-ha's grace sets (src/daemons/ha/ingress.rs) filled over netlink
//! (src/daemons/nft_setelem.rs) in a fresh namespace, with `nft -j` as
//! the independent oracle for what the kernel holds.

mod dataplane_support;

use std::time::Duration;

use dataplane_support::*;
use mip4::daemons::ha::ingress;
use mip4::daemons::nft_setelem::add_ifname_net;
use serde_json::{json, Value};

/// Loads `ruleset` (mip4-ha's own table, as the daemon does) in `ns`.
fn load(ns: &Netns, ruleset: &str) {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.nft");
    std::fs::write(&rules, ruleset).unwrap();
    ns.exec(&["nft", "-f", rules.to_str().unwrap()]);
}

/// One element of a set as `nft -j` lists it.
#[derive(Debug)]
struct Listed {
    /// `{"concat": [link, address or prefix]}`.
    val: Value,
    /// Seconds.
    timeout: u64,
    /// Seconds left.
    expires: u64,
}

/// The elements of the grace set of mip4-ha's table of `family`.
fn grace(ns: &Netns, family: &str) -> Vec<Listed> {
    let out = ns.exec(&["nft", "-j", "list", "set", family, "mip4-ha", "grace"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let set = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o.get("set"))
        .unwrap_or_else(|| panic!("no set in {out}"));
    let Some(elems) = set.get("elem") else {
        return Vec::new(); // nft leaves the key out of an empty set
    };
    elems
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let e = &e["elem"];
            Listed {
                val: e["val"].clone(),
                timeout: e["timeout"].as_u64().unwrap_or_else(|| panic!("{e}")),
                expires: e["expires"].as_u64().unwrap_or_else(|| panic!("{e}")),
            }
        })
        .collect()
}

/// The listed element of `link`, if any.
fn of<'a>(listed: &'a [Listed], link: &str) -> Option<&'a Listed> {
    listed.iter().find(|l| l.val["concat"][0] == link)
}

/// [`add_ifname_net`] to `table`'s set `set`, from inside `ns`.
fn add(
    ns: &Netns,
    (table, set): (&str, &str),
    link: &str,
    net: &str,
    timeout: Duration,
) -> Result<(), String> {
    let (table, set, link) = (table.to_owned(), set.to_owned(), link.to_owned());
    let net = net.parse().unwrap();
    ns.run(async move { add_ifname_net(&table, &set, &link, net, timeout) })
}

const GRACE: (&str, &str) = ("mip4-ha", "grace");
const SECOND: Duration = Duration::from_secs(1);

/// The element is the link's name and the home address or prefix as a
/// range, with its timeout, in the set of the family's table.
#[test]
fn a_grace_is_the_links_name_and_the_range_with_its_timeout() {
    require_root();
    let ns = Netns::new("nftg");
    load(&ns, &ingress::ruleset6());
    load(&ns, &ingress::ruleset());
    let link6 = "mip6-0ac80001";
    assert_eq!(
        add(&ns, GRACE, link6, "2001:db8:10::/64", 3 * SECOND),
        Ok(())
    );
    let link4 = "mip4-0ac80001";
    assert_eq!(add(&ns, GRACE, link4, "10.1.100.5/32", 3 * SECOND), Ok(()));

    let l6 = grace(&ns, "ip6");
    assert_eq!(l6.len(), 1, "{l6:?}");
    let prefix = json!({"prefix": {"addr": "2001:db8:10::", "len": 64}});
    assert_eq!(l6[0].val, json!({ "concat": [link6, prefix] }));
    assert_eq!(l6[0].timeout, 3);
    assert!(l6[0].expires <= 3, "{l6:?}");
    let l4 = grace(&ns, "ip");
    assert_eq!(l4.len(), 1, "{l4:?}");
    assert_eq!(l4[0].val, json!({ "concat": [link4, "10.1.100.5"] }));
    assert_eq!(l4[0].timeout, 3);
    assert!(l4[0].expires <= 3, "{l4:?}");
}

/// A binding that leaves the same link again within the grace gets the
/// grace from that move on, as the userspace plane and the link's
/// lingering do. The earlier element is written by `nft` as a first
/// move's would be 2 s on (1 s left of its 3 s): after the second add the
/// kernel lists it with its whole timeout again, and the other link's
/// element as it was. A kernel that keeps an existing element (6.1
/// always, 6.12 and later for the same timeout) fails this.
#[test]
fn a_second_add_of_the_same_element_renews_it() {
    require_root();
    let ns = Netns::new("nftr");
    load(&ns, &ingress::ruleset6());
    let (link, other, prefix) = ("mip6-0ac80001", "mip6-0ac80002", "2001:db8:10::/64");
    for l in [link, other] {
        let element = format!("{{ \"{l}\" . {prefix} timeout 3s expires 1s }}");
        ns.exec(&["nft", "add", "element", "ip6", "mip4-ha", "grace", &element]);
    }
    let before = grace(&ns, "ip6");
    assert!(before.iter().all(|e| e.expires <= 1), "{before:?}");

    assert_eq!(add(&ns, GRACE, link, prefix, 3 * SECOND), Ok(()));
    let l = grace(&ns, "ip6");
    assert_eq!(l.len(), 2, "{l:?}");
    let renewed = of(&l, link).unwrap();
    assert_eq!(renewed.timeout, 3, "{l:?}");
    assert!(renewed.expires >= 2, "renewed: {l:?}");
    assert!(of(&l, other).unwrap().expires <= 1, "untouched: {l:?}");
}

/// A set or table that is not there is the kernel's ENOENT, not a silent
/// success, and adds nothing elsewhere.
#[test]
fn a_missing_set_is_the_kernels_enoent() {
    require_root();
    let ns = Netns::new("nfte");
    load(&ns, &ingress::ruleset6());
    let link = "mip6-0ac80001";
    for (table, set) in [("mip4-ha", "nothing"), ("nothing", "grace")] {
        let e = add(&ns, (table, set), link, "2001:db8:10::/64", 3 * SECOND).unwrap_err();
        assert!(e.contains("os error 2"), "{table} {set}: {e}");
        assert!(
            e.contains(&format!("set {set} of table ip6 {table}")),
            "{e}"
        );
    }
    // The ip table is not loaded: an IPv4 home address has no set.
    let e = add(&ns, GRACE, "mip4-0ac80001", "10.1.100.5/32", 3 * SECOND).unwrap_err();
    assert!(e.contains("os error 2"), "{e}");
    assert!(grace(&ns, "ip6").is_empty());
}
