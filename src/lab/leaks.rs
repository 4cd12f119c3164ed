//! What a host holds in the kernel and in sockets, normalised so that two
//! snapshots taken before and after a fault compare equal unless something
//! leaked or went missing: XFRM policies, IPv4 routes of every table,
//! rules, devices and UDP/unix sockets (`lab::snapshot`, `lab::same-as`).
//!
//! Normalising drops what legitimately changes when a daemon restarts:
//! interface indexes, queue sizes, socket inodes, pids and fds, ephemeral
//! ports. Names, addresses, tables, priorities, well-known ports and the
//! program owning a socket stay.

use std::collections::BTreeMap;

use super::netns::Netns;
use super::Result;

/// The commands a snapshot runs, by section.
const SECTIONS: [(&str, &str); 5] = [
    ("xfrm-policy", "ip xfrm policy"),
    ("route", "ip -4 route show table all"),
    ("rule", "ip -4 rule"),
    ("link", "ip -o link"),
    ("socket", "ss -uaxpnH"),
];

/// Normalised lines, sorted, per section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot(BTreeMap<String, Vec<String>>);

impl Snapshot {
    /// Takes the snapshot of the host `ns`.
    pub fn take(ns: &Netns) -> Result<Snapshot> {
        let mut out = BTreeMap::new();
        for (name, cmd) in SECTIONS {
            let text = ns.sh(cmd)?;
            out.insert(name.to_string(), normalise(name, &text));
        }
        Ok(Snapshot(out))
    }

    /// What `now` has that `self` lacks (`+`) and the reverse (`-`), one
    /// entry per line, prefixed with its section; empty when the same.
    pub fn diff(&self, now: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let empty = Vec::new();
        for (section, before) in &self.0 {
            let after = now.0.get(section).unwrap_or(&empty);
            for (sign, a, b) in [('-', before, after), ('+', after, before)] {
                // A multiset difference: two equal routes are two lines.
                let mut rest = b.clone();
                for l in a {
                    match rest.iter().position(|r| r == l) {
                        Some(i) => {
                            rest.remove(i);
                        }
                        None => out.push(format!("{sign}{section}: {l}")),
                    }
                }
            }
        }
        out
    }
}

/// One section's output as sorted, normalised lines.
pub fn normalise(section: &str, text: &str) -> Vec<String> {
    let mut lines: Vec<String> = match section {
        // A policy spans a line and its tab-indented continuations.
        "xfrm-policy" => {
            let mut out: Vec<String> = Vec::new();
            for l in text.lines() {
                match out.last_mut() {
                    Some(last) if l.starts_with(['\t', ' ']) => {
                        last.push(' ');
                        last.push_str(l.trim());
                    }
                    _ => out.push(l.trim().to_string()),
                }
            }
            out
        }
        "link" => text.lines().filter_map(link_line).collect(),
        "socket" => text.lines().filter_map(socket_line).collect(),
        _ => text.lines().map(|l| drop_fields(l, &["expires"])).collect(),
    };
    lines.retain(|l| !l.is_empty());
    lines.sort();
    lines
}

/// `words` without each field in `keys` and the value after it.
fn drop_fields(line: &str, keys: &[&str]) -> String {
    let mut out = Vec::new();
    let mut it = line.split_whitespace();
    while let Some(w) = it.next() {
        if keys.contains(&w) {
            it.next();
        } else {
            out.push(w);
        }
    }
    out.join(" ")
}

/// `7: eth-a@if12: <BROADCAST,UP,LOWER_UP> mtu ... link/ether ...` ->
/// `eth-a up ether` (name, administratively up or not, link type).
fn link_line(line: &str) -> Option<String> {
    let mut it = line.split_whitespace();
    it.next()?; // index
    let name = it.next()?.trim_end_matches(':');
    let name = name.split('@').next()?;
    let flags = it.next()?;
    let up = flags.trim_matches(['<', '>']).split(',').any(|f| f == "UP");
    let kind = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("link/"))
        .unwrap_or("none");
    Some(format!("{name} {} {kind}", if up { "up" } else { "down" }))
}

/// An `ss -uaxpnH` line -> `netid state local peer programs`, without
/// queue sizes, unix inodes, pids, fds and ephemeral ports.
fn socket_line(line: &str) -> Option<String> {
    let w: Vec<&str> = line.split_whitespace().collect();
    let (netid, state) = (*w.first()?, *w.get(1)?);
    let programs = w
        .iter()
        .find(|x| x.starts_with("users:"))
        .map(|u| {
            let mut names: Vec<&str> = u.split('"').skip(1).step_by(2).collect();
            names.sort_unstable();
            names.dedup();
            names.join(",")
        })
        .unwrap_or_default();
    let (local, peer) = if netid.starts_with("u_") {
        // u_str ESTAB 0 0 /path 1234 * 5678 users:... The socket's file
        // name, not its folder: a restarted charon gets a fresh work
        // folder from the lab, and the socket is the same one.
        let file = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
        (file(w.get(4)?), file(w.get(6)?))
    } else {
        (port_class(w.get(4)?), port_class(w.get(5)?))
    };
    Some(format!("{netid} {state} {local} {peer} {programs}"))
}

/// `addr:port` with an ephemeral port (Linux's default range starts at
/// 32768) written as `addr:eph`: it differs from run to run.
fn port_class(a: &str) -> String {
    match a.rsplit_once(':') {
        Some((h, p)) if p.parse::<u32>().is_ok_and(|p| p >= 32768) => format!("{h}:eph"),
        _ => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_lose_indexes_and_keep_name_state_and_type() {
        let t = "7: eth-a@if12: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 3e:1c:aa:bb:cc:dd brd ff:ff:ff:ff:ff:ff link-netns w\n\
                 9: mip4mn0: <POINTOPOINT,NOARP> mtu 1480 qdisc noop state DOWN\\    link/none \n";
        assert_eq!(
            normalise("link", t),
            vec!["eth-a up ether", "mip4mn0 down none"]
        );
    }

    #[test]
    fn sockets_lose_inodes_pids_and_ephemeral_ports() {
        let a = "u_str LISTEN 0 128 /tmp/w/mn/mip4d.sock 207435 * 0 users:((\"mip4d\",pid=15401,fd=3))\n\
                 udp UNCONN 0 0 0.0.0.0:434 0.0.0.0:* users:((\"mip4-ha\",pid=15401,fd=4))\n\
                 udp UNCONN 0 0 10.1.10.100:45123 0.0.0.0:* users:((\"mip4d\",pid=15401,fd=9))\n";
        let b = "u_str LISTEN 0 128 /tmp/w/mn/mip4d.sock 99 * 0 users:((\"mip4d\",pid=2,fd=7))\n\
                 udp UNCONN 0 0 0.0.0.0:434 0.0.0.0:* users:((\"mip4-ha\",pid=3,fd=4))\n\
                 udp UNCONN 0 0 10.1.10.100:51000 0.0.0.0:* users:((\"mip4d\",pid=2,fd=9))\n";
        assert_eq!(normalise("socket", a), normalise("socket", b));
        let moved = b.replace("/tmp/w/mn/", "/tmp/w/mn-2/");
        assert_eq!(normalise("socket", a), normalise("socket", &moved));
        // A second socket of the same kind is a difference.
        let c =
            format!("{b}udp UNCONN 0 0 0.0.0.0:434 0.0.0.0:* users:((\"mip4-ha\",pid=3,fd=5))\n");
        assert_ne!(normalise("socket", a), normalise("socket", &c));
    }

    #[test]
    fn diff_names_what_leaked_and_what_went_missing() {
        let snap = |rules: &str| {
            let mut m = BTreeMap::new();
            m.insert("rule".to_string(), normalise("rule", rules));
            Snapshot(m)
        };
        let before = snap("0: from all lookup local\n32766: from all lookup main\n");
        let after = snap(
            "0: from all lookup local\n100: from 10.1.100.5 lookup 434\n100: from 10.1.100.5 lookup 434\n",
        );
        let d = before.diff(&after);
        assert_eq!(
            d,
            vec![
                "-rule: 32766: from all lookup main",
                "+rule: 100: from 10.1.100.5 lookup 434",
                "+rule: 100: from 10.1.100.5 lookup 434",
            ]
        );
        assert!(before.diff(&before.clone()).is_empty());
    }

    #[test]
    fn xfrm_policies_join_their_template_lines() {
        let t = "src 10.1.100.5/32 dst 10.1.1.2/32 \n\tdir out priority 0 ptype main \n\ttmpl src 0.0.0.0 dst 0.0.0.0\n\t\tproto esp reqid 0 mode transport\n";
        let n = normalise("xfrm-policy", t);
        assert_eq!(n.len(), 1, "{n:?}");
        assert!(n[0].contains("dir out") && n[0].contains("proto esp"));
    }
}
