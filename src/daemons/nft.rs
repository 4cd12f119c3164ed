//! Running `nft` (the nftables package) for the kernel tunnel backends'
//! ingress checks, mip4-ha's ([`super::ha`]) and mip4-fa's
//! ([`super::fa`]): each daemon loads a table of its own as one
//! transaction, reads its named counter, and deletes the table at a clean
//! stop.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Runs `nft` with `args`, `stdin` as its input; its stdout, or an error
/// naming the command and what nft said.
pub async fn nft(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
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

/// A daemon's own table (family `ip` or `ip6`) and the named counter of
/// what its rule drops.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub family: &'static str,
    pub name: &'static str,
    pub counter: &'static str,
}

impl Table {
    /// The ruleset that replaces the table whole, as one transaction:
    /// `table` + `delete table` first, so that a table an earlier (killed)
    /// instance left goes and a missing one is no error; then the table
    /// with its counter and `body` (its sets and chains).
    pub fn ruleset(&self, body: &str) -> String {
        let Table {
            family,
            name,
            counter,
        } = self;
        format!(
            "table {family} {name}\n\
             delete table {family} {name}\n\
             table {family} {name} {{\n\
             \tcounter {counter} {{\n\
             \t}}\n\
             {body}\
             }}\n"
        )
    }

    /// Removes the table (a clean stop).
    pub async fn remove(&self) -> Result<(), String> {
        nft(&["delete", "table", self.family, self.name], None)
            .await
            .map(|_| ())
    }

    /// Datagrams the rule dropped so far.
    pub async fn dropped(&self) -> Result<u64, String> {
        let text = nft(
            &[
                "-j",
                "list",
                "counter",
                self.family,
                self.name,
                self.counter,
            ],
            None,
        )
        .await?;
        packets(&text).ok_or_else(|| {
            format!(
                "nft: no packet count for counter {} in: {text}",
                self.counter
            )
        })
    }
}

/// Loads `ruleset` (`nft -f -`), one transaction.
pub async fn load(ruleset: &str) -> Result<(), String> {
    nft(&["-f", "-"], Some(ruleset)).await.map(|_| ())
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
