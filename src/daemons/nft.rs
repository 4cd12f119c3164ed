//! Running `nft` (the nftables package) for the kernel tunnel backends'
//! ingress checks, mip4-ha's ([`super::ha`]) and mip4-fa's
//! ([`super::fa`]): each daemon loads a table of its own as one
//! transaction and deletes the table at a clean stop. The table's named
//! counter is read over netlink ([`super::nft_counter`]).

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

    /// Datagrams the rule dropped so far, read over netlink
    /// ([`super::nft_counter`]): a control answer never waits on `nft`.
    pub fn dropped(&self) -> Result<u64, String> {
        super::nft_counter::packets(self.family, self.name, self.counter)
    }
}

/// Loads `ruleset` (`nft -f -`), one transaction.
pub async fn load(ruleset: &str) -> Result<(), String> {
    nft(&["-f", "-"], Some(ruleset)).await.map(|_| ())
}
