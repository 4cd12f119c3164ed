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
//! RFC 5454 §3.3.2, §4 (DSMIPv4): the same for IPv6 out of a binding's
//! `sit` link (`mip6-<home address>`, [`crate::dataplane::sit`]): its
//! only IPv6 route is the binding's prefix, so "the inner IPv6 source lies
//! in the prefix registered for this tunnel" is again strict reverse-path
//! filtering on the link, in a table of the ip6 family (`ip6 mip4-ha`)
//! whose counter has the userspace plane's name, `ipv6_source_spoofed`.
//! Link-local sources pass it (the link's own fe80::/64) and stay on the
//! link: the kernel never forwards them (RFC 4291 §2.5.6).
//!
//! `nft` (the nftables package) is run for the three operations; each
//! table is replaced atomically at start (what a killed instance left goes
//! with it) and deleted at a clean stop.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// mip4-ha's own nftables tables (family ip, and ip6 for RFC 5454).
pub const TABLE: &str = "mip4-ha";
/// The ip table's named counter: reverse-tunnelled datagrams dropped.
pub const COUNTER: &str = "rfc3024_ingress_dropped";
/// The ip6 table's: IPv6 with a source outside the tunnel's prefix
/// dropped (the userspace plane's counter of the same name).
pub const COUNTER6: &str = "ipv6_source_spoofed";

/// One table of the ruleset, loaded as one transaction: `table` +
/// `delete table` first, so that a table an earlier (killed) instance left
/// is replaced whole and a missing one is no error. `family` is `ip` or
/// `ip6`; the rule drops what enters a link named `links*` with a source
/// the link's routes do not lead back into.
fn table(family: &str, links: &str, counter: &str) -> String {
    format!(
        "table {family} {TABLE}\n\
         delete table {family} {TABLE}\n\
         table {family} {TABLE} {{\n\
         \tcounter {counter} {{\n\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname \"{links}*\" fib saddr . iif oif missing counter name \"{counter}\" drop\n\
         \t}}\n\
         }}\n"
    )
}

/// The RFC 3024 table (IPv4 out of the `ipip` links).
pub fn ruleset() -> String {
    table("ip", crate::dataplane::kernel::LINK_PREFIX, COUNTER)
}

/// The RFC 5454 table (IPv6 out of the `sit` links).
pub fn ruleset6() -> String {
    table("ip6", crate::dataplane::sit::LINK_PREFIX, COUNTER6)
}

/// Runs `nft` with `args`, `stdin` as its input; its stdout, or an error
/// naming the command and what nft said.
async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut cmd = Command::new("nft");
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let what = format!("nft {}", args.join(" "));
    let mut child = cmd.spawn().map_err(|e| {
        format!(
            "{what}: {e} (the kernel tunnel backend needs nftables for the RFC 3024 ingress check)"
        )
    })?;
    if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(text.as_bytes())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs (or replaces) the RFC 3024 table.
pub async fn install() -> Result<(), String> {
    nft(&["-f", "-"], Some(&ruleset())).await.map(|_| ())
}

/// Installs (or replaces) the RFC 5454 table.
pub async fn install6() -> Result<(), String> {
    nft(&["-f", "-"], Some(&ruleset6())).await.map(|_| ())
}

/// Removes the table of `family` (`ip`, `ip6`): a clean stop, or at start
/// one an earlier instance left that this one does not install.
pub async fn remove(family: &str) -> Result<(), String> {
    nft(&["delete", "table", family, TABLE], None)
        .await
        .map(|_| ())
}

/// What the rules dropped so far: (RFC 3024, RFC 5454; none when that
/// table is not installed), from one `nft` run.
pub async fn dropped() -> Result<(u64, Option<u64>), String> {
    let text = nft(&["-j", "list", "counters"], None).await?;
    let v4 = packets(&text, "ip", COUNTER)
        .ok_or_else(|| format!("nft: no packet count for counter {COUNTER} in: {text}"))?;
    Ok((v4, packets(&text, "ip6", COUNTER6)))
}

/// The `packets` of our counter `name` in table family `family` in `nft
/// -j list counters` output (every table's counters).
fn packets(json: &str, family: &str, name: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["nftables"].as_array()?.iter().find_map(|o| {
        let c = &o["counter"];
        (c["family"] == family && c["table"] == TABLE && c["name"] == name)
            .then(|| c["packets"].as_u64())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counters_are_read_from_nfts_json() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"counter": {"family": "ip", "name": "rfc3024_ingress_dropped", "table": "other", "handle": 1, "packets": 9, "bytes": 1}},
            {"counter": {"family": "ip6", "name": "ipv6_source_spoofed", "table": "mip4-ha", "handle": 2, "packets": 4, "bytes": 416}},
            {"counter": {"family": "ip", "name": "rfc3024_ingress_dropped", "table": "mip4-ha", "handle": 2, "packets": 3, "bytes": 252}}]}"#;
        assert_eq!(packets(j, "ip", COUNTER), Some(3));
        assert_eq!(packets(j, "ip6", COUNTER6), Some(4));
        assert_eq!(packets(j, "ip6", COUNTER), None);
        assert_eq!(packets(r#"{"nftables": []}"#, "ip", COUNTER), None);
        assert_eq!(packets("not json", "ip", COUNTER), None);
    }

    /// Both tables check the source against the routes of the link it
    /// came in on, each on its own links, each with its counter.
    #[test]
    fn each_family_has_its_table_links_and_counter() {
        let v4 = ruleset();
        assert!(
            v4.starts_with("table ip mip4-ha\ndelete table ip mip4-ha\n"),
            "{v4}"
        );
        assert!(v4.contains("iifname \"mip4-*\" fib saddr . iif oif missing counter name \"rfc3024_ingress_dropped\" drop"), "{v4}");
        let v6 = ruleset6();
        assert!(
            v6.starts_with("table ip6 mip4-ha\ndelete table ip6 mip4-ha\n"),
            "{v6}"
        );
        assert!(v6.contains("iifname \"mip6-*\" fib saddr . iif oif missing counter name \"ipv6_source_spoofed\" drop"), "{v6}");
    }
}
