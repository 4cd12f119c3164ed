//! The scenario folder as data: `pre.dat`, `evaltest.dat`, `post.dat`
//! lines parsed, each error naming its file and line.

use std::path::{Path, PathBuf};

use crate::lab::{Error, Result};

/// A command line of `pre.dat`, `post.dat` or `evaltest.dat`.
#[derive(Debug, Clone)]
pub struct Line {
    pub file: String,
    pub line: usize,
    pub host: String,
    pub command: String,
    /// evaltest only: the pattern and whether it must match.
    pub expect: Option<(String, bool)>,
}

/// A scenario folder, parsed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub dir: PathBuf,
    pub description: String,
    /// `known-defect.txt`: a defect this scenario finds and that is not
    /// fixed yet (the scenario fails until it is; the tour skips it).
    pub known_defect: Option<String>,
    /// `kernel-only.txt`: why the scenario needs what only the kernel
    /// tier's kernel has (ESP for charon's kernel-netlink, `sit` links),
    /// so runs only there; elsewhere a run
    /// is refused with that reason and the tour skips it.
    pub kernel_only: Option<String>,
    /// `topology.toml`: the scenario's own topology instead of the lab's
    /// Figure 1 (e.g. access links without the delay line, for a
    /// throughput figure that the delay line would cap).
    pub topology: Option<PathBuf>,
    pub pre: Vec<Line>,
    pub evaltest: Vec<Line>,
    pub post: Vec<Line>,
}

pub(super) fn parse_dat(path: &Path, eval: bool) -> Result<Vec<Line>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Io {
                path: path.display().to_string(),
                source,
            })
        }
    };
    let file = path.display().to_string();
    let vars = regex::Regex::new(r"\$\{[A-Za-z0-9_]+\}").expect("static regex");
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |msg: &str| Error::Parse {
            file: file.clone(),
            line: i + 1,
            msg: msg.to_string(),
        };
        // The host ends at the first `::`, pattern and YES|NO are the last
        // two fields: the command in between may hold `::` (an IPv6
        // address, `ping 2001:db8::1`).
        let parts: Vec<&str> = match l.split_once("::") {
            None => vec![l],
            Some((h, rest)) if eval => {
                let mut tail: Vec<&str> = rest.rsplitn(3, "::").collect();
                tail.push(h);
                tail.reverse();
                tail
            }
            Some((h, c)) => vec![h, c],
        };
        let (host, command, expect) = match (eval, parts.as_slice()) {
            (false, [h, c]) => (h, c, None),
            (true, [h, c, p, yn]) => {
                let yes = match *yn {
                    "YES" => true,
                    "NO" => false,
                    _ => return Err(err("the last field must be YES or NO")),
                };
                // Variables are filled in at run time: check the rest.
                regex::Regex::new(&vars.replace_all(p, "x"))
                    .map_err(|e| err(&format!("bad pattern: {e}")))?;
                (h, c, Some((p.to_string(), yes)))
            }
            (false, _) => return Err(err("expected host::command")),
            (true, _) => return Err(err("expected host::command::pattern::YES|NO")),
        };
        out.push(Line {
            file: file.clone(),
            line: i + 1,
            host: host.trim().to_string(),
            command: command.trim().to_string(),
            expect,
        });
    }
    Ok(out)
}

impl Scenario {
    pub fn load(dir: &Path) -> Result<Scenario> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let description = std::fs::read_to_string(dir.join("description.txt"))
            .map_err(|source| Error::Io {
                path: dir.join("description.txt").display().to_string(),
                source,
            })?
            .trim()
            .to_string();
        let known_defect = std::fs::read_to_string(dir.join("known-defect.txt"))
            .ok()
            .map(|t| t.trim().to_string());
        let kernel_only = std::fs::read_to_string(dir.join("kernel-only.txt"))
            .ok()
            .map(|t| t.trim().to_string());
        Ok(Scenario {
            name,
            dir: dir.to_path_buf(),
            description,
            known_defect,
            kernel_only,
            topology: Some(dir.join("topology.toml")).filter(|t| t.is_file()),
            pre: parse_dat(&dir.join("pre.dat"), false)?,
            evaltest: parse_dat(&dir.join("evaltest.dat"), true)?,
            post: parse_dat(&dir.join("post.dat"), false)?,
        })
    }

    /// Every scenario under `lab/scenarios`, by name.
    pub fn list(lab_dir: &Path) -> Result<Vec<Scenario>> {
        let root = lab_dir.join("scenarios");
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&root).map_err(|source| Error::Io {
            path: root.display().to_string(),
            source,
        })?;
        for e in entries.flatten() {
            if e.path().join("description.txt").exists() {
                out.push(Scenario::load(&e.path())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

impl Scenario {
    /// A config file of `host`: with `--gateway libreswan`
    /// (`libreswan`), the scenario's own for that gateway first
    /// (`hosts-libreswan/HOST/FILE`); then the scenario's own
    /// (`hosts/HOST/FILE`), else the lab's (`LAB/hosts/HOST/FILE`), file
    /// by file.
    pub fn host_file(&self, lab_dir: &Path, libreswan: bool, host: &str, file: &str) -> PathBuf {
        ["hosts-libreswan", "hosts"]
            .into_iter()
            .skip(usize::from(!libreswan))
            .map(|d| self.dir.join(d).join(host).join(file))
            .find(|p| p.exists())
            .unwrap_or_else(|| lab_dir.join("hosts").join(host).join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_parse() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
        let all = Scenario::list(&lab).unwrap();
        let s = all.iter().find(|s| s.name == "vpn-move").expect("vpn-move");
        assert!(!s.pre.is_empty() && !s.evaltest.is_empty());
        assert_eq!(s.known_defect, None);
        // mip4-ha now keeps its bindings across a restart: no
        // known-defect.txt any more.
        let ha = all.iter().find(|s| s.name == "ha-restart").expect("ha");
        assert_eq!(ha.known_defect, None);
    }

    #[test]
    fn host_files_per_gateway() {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab");
        let scenarios = lab.join("scenarios");
        // (scenario, libreswan, host, file, where it comes from). Against
        // pluto untrusted-move's MN forces ESP in UDP (docs/interop.md),
        // the strongSwan gateway gets the lab's MN as it is; without a
        // file of its own for the gateway: the scenario's, else the lab's.
        for (name, libreswan, host, file, from) in [
            (
                "untrusted-move",
                true,
                "mn",
                "swanctl.conf",
                "scenarios/untrusted-move/hosts-libreswan",
            ),
            ("untrusted-move", false, "mn", "swanctl.conf", "hosts"),
            ("untrusted-move", true, "vpngw", "ipsec.conf", "hosts"),
            (
                "tia-change",
                true,
                "vpngw",
                "ipsec.conf",
                "scenarios/tia-change/hosts",
            ),
        ] {
            let s = Scenario::load(&scenarios.join(name)).unwrap();
            assert_eq!(
                s.host_file(&lab, libreswan, host, file),
                lab.join(from).join(host).join(file),
                "{name} {host}/{file} (libreswan: {libreswan})"
            );
        }
    }

    #[test]
    fn evaltest_line_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("evaltest.dat");
        std::fs::write(&p, "# c\nmn::ping x::y::MAYBE\n").unwrap();
        let err = parse_dat(&p, true).unwrap_err().to_string();
        assert!(err.contains("evaltest.dat:2:"), "{err}");
    }

    #[test]
    fn commands_may_hold_ipv6_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("pre.dat");
        std::fs::write(&pre, "lab::rtt mn 2001:db8:cafe::10 rtt_ms\n").unwrap();
        let l = &parse_dat(&pre, false).unwrap()[0];
        assert_eq!(
            (l.host.as_str(), l.command.as_str()),
            ("lab", "rtt mn 2001:db8:cafe::10 rtt_ms")
        );
        let eval = dir.path().join("evaltest.dat");
        std::fs::write(&eval, "mn::ping -c 1 2001:db8::1::1 received::YES\n").unwrap();
        let l = &parse_dat(&eval, true).unwrap()[0];
        assert_eq!(l.command, "ping -c 1 2001:db8::1");
        assert_eq!(l.expect, Some(("1 received".to_string(), true)));
    }
}
