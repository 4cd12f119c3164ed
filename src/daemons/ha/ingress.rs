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
//! `nft` (the nftables package) is run for the three operations; the table
//! is replaced atomically at start (what a killed instance left goes with
//! it) and deleted at a clean stop.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// mip4-ha's own nftables table (family ip).
pub const TABLE: &str = "mip4-ha";
/// Its named counter: reverse-tunnelled datagrams dropped.
pub const COUNTER: &str = "rfc3024_ingress_dropped";

/// The ruleset, loaded as one transaction: `table` + `delete table` first,
/// so that a table an earlier (killed) instance left is replaced whole and
/// a missing one is no error.
pub fn ruleset() -> String {
    let links = format!("{}*", crate::dataplane::kernel::LINK_PREFIX);
    format!(
        "table ip {TABLE}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tcounter {COUNTER} {{\n\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\tiifname \"{links}\" fib saddr . iif oif missing counter name \"{COUNTER}\" drop\n\
         \t}}\n\
         }}\n"
    )
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

/// Installs (or replaces) the table.
pub async fn install() -> Result<(), String> {
    nft(&["-f", "-"], Some(&ruleset())).await.map(|_| ())
}

/// Removes the table (a clean stop).
pub async fn remove() -> Result<(), String> {
    nft(&["delete", "table", "ip", TABLE], None)
        .await
        .map(|_| ())
}

/// Datagrams the rule dropped so far.
pub async fn dropped() -> Result<u64, String> {
    let text = nft(&["-j", "list", "counter", "ip", TABLE, COUNTER], None).await?;
    packets(&text).ok_or_else(|| format!("nft: no packet count for counter {COUNTER} in: {text}"))
}

/// The `packets` of the counter in `nft -j list counter` output.
fn packets(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["nftables"]
        .as_array()?
        .iter()
        .find_map(|o| o["counter"]["packets"].as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_read_from_nfts_json() {
        let j = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"counter": {"family": "ip", "name": "rfc3024_ingress_dropped", "table": "mip4-ha", "handle": 2, "packets": 3, "bytes": 252}}]}"#;
        assert_eq!(packets(j), Some(3));
        assert_eq!(packets(r#"{"nftables": []}"#), None);
        assert_eq!(packets("not json"), None);
    }
}
