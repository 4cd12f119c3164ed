//! The fault verbs: daemons killed, faults held, losses set, random
//! choices seeded, hosts compared with snapshots, captures read for
//! clear text and datagram sizes, step files repeated.

use std::path::Path;
use std::time::Duration;

use super::parse::parse_dat;
use super::{now, Args, Run};
use crate::lab::leaks::Snapshot;
use crate::lab::{wait, Error, Result};

impl Run<'_> {
    /// `lab::move A,B,C`: the first of the list after the network the MN
    /// is on now (cyclic; the first if it is on none of them). A single
    /// name is itself.
    pub(super) fn next_net(&self, list: &str) -> Result<String> {
        let nets: Vec<&str> = list.split(',').collect();
        let host = self.lab.spec.access(nets[0])?.host.clone();
        let now = self.lab.attached(&host);
        let i = nets
            .iter()
            .position(|n| Some(*n) == now)
            .map_or(0, |i| (i + 1) % nets.len());
        Ok(nets[i].to_string())
    }

    /// lab::kill HOST/NAME [EVENT]: SIGKILL a daemon started by
    /// `lab::spawn` (a crash: no deregistration, no cleanup). Its log is
    /// kept as HOST-NAME.killed-N.log, so that a new one of the same name
    /// starts a fresh log.
    pub(super) fn kill(&mut self, key: &str, event: &str) -> Result<()> {
        let mut p = self
            .procs
            .remove(key)
            .ok_or_else(|| Error::Other(format!("no daemon `{key}` running")))?;
        let t = now();
        p.kill();
        let log = self
            .work
            .path()
            .join(format!("{}.log", key.replace('/', "-")));
        let n = self
            .events
            .iter()
            .filter(|e| e.event == event && e.host == key)
            .count();
        let kept = log.with_extension(format!("killed-{}.log", n + 1));
        let _ = std::fs::rename(&log, &kept);
        self.emit_at(event, key, serde_json::json!({"log": kept}), t);
        Ok(())
    }

    /// lab::snapshot HOST NAME: the host's XFRM policies, routes, rules,
    /// devices and sockets, normalised (src/lab/leaks.rs).
    pub(super) fn snapshot(&mut self, host: &str, name: &str) -> Result<()> {
        let snap = Snapshot::take(self.lab.host(host)?)?;
        self.snapshots.insert(format!("{host}/{name}"), snap);
        self.emit("snapshot", host, serde_json::json!({"name": name}));
        Ok(())
    }

    /// Query lab::same-as HOST NAME: `same`, or what differs from snapshot
    /// NAME (`+section: line` new, `-section: line` gone).
    pub(super) fn same_as(&self, host: &str, name: &str) -> Result<String> {
        let before = self
            .snapshots
            .get(&format!("{host}/{name}"))
            .ok_or_else(|| Error::Other(format!("no `lab::snapshot {host} {name}` yet")))?;
        let d = before.diff(&Snapshot::take(self.lab.host(host)?)?);
        Ok(if d.is_empty() {
            "same".into()
        } else {
            d.join("; ")
        })
    }

    /// lab::same-as HOST NAME [SECS] (a step): waits until the host is as
    /// snapshot NAME was, else fails with what differs (event
    /// `same_as_NAME`).
    pub(super) fn expect_same(&mut self, host: &str, name: &str, timeout: Duration) -> Result<()> {
        let mut last = String::new();
        let what = format!("{host} as in snapshot `{name}`");
        let r = wait::until(timeout, &what, || match self.same_as(host, name) {
            Ok(s) if s == "same" => Some(Ok(())),
            Ok(s) => {
                last = s;
                None
            }
            Err(e) => Some(Err(e)),
        });
        match r {
            Ok((r, _)) => r?,
            Err(e) => return Err(Error::Other(format!("{e}; differs: {last}"))),
        }
        self.emit(&format!("same_as_{name}"), host, serde_json::json!({}));
        Ok(())
    }

    /// lab::capture NAME HOST DEV: tcpdump on HOST:DEV into NAME.pcap in
    /// the work folder, for `lab::clear-text NAME ADDR`.
    pub(super) fn capture(&mut self, name: &str, host: &str, dev: &str) -> Result<()> {
        let pcap = self.work.path().join(format!("{name}.pcap"));
        self.capture_one(host, dev, &pcap)?;
        self.pcaps.insert(name.to_string(), pcap.clone());
        self.emit("capture_started", host, serde_json::json!({"pcap": pcap}));
        Ok(())
    }

    /// The file of capture NAME.
    fn pcap(&self, name: &str) -> Result<&std::path::PathBuf> {
        self.pcaps
            .get(name)
            .ok_or_else(|| Error::Other(format!("no `lab::capture {name}` yet")))
    }

    /// Query lab::clear-text NAME ADDR: `home=N total=M`, frames of
    /// capture NAME with ADDR in an IPv4 header (outside ESP) and all.
    pub(super) fn clear_text(&self, name: &str, addr: &str) -> Result<String> {
        let pcap = self.pcap(name)?;
        Ok(crate::lab::cleartext::count(pcap, addr)?.describe())
    }

    /// Query lab::ipv6-in-ipv4 NAME ADDR6 [OUTER]: `to=N from=M`, frames
    /// of capture NAME with IPv6 to / from ADDR6 inside IPv4 (with OUTER
    /// in the IPv4 header), as tshark dissects them.
    pub(super) fn ipv6_in_ipv4(&self, a: &Args) -> Result<String> {
        let pcap = self.pcap(a.arg(1)?)?;
        crate::lab::cleartext::ipv6_in_ipv4(pcap, a.arg(2)?, a.words.get(3).map(|w| &w[..]))
    }

    /// Query lab::largest NAME SRC DST PROTO [MAX]: `largest=N count=M
    /// above=K`, the longest IPv4 datagram (total length) SRC -> DST of
    /// protocol PROTO in capture NAME, how many there were, and how many
    /// were longer than MAX (0 without MAX).
    pub(super) fn largest(&self, a: &Args) -> Result<String> {
        let (name, src, dst, proto) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        let max: Option<u16> = match a.words.get(5) {
            Some(m) => Some(
                m.parse()
                    .map_err(|_| Error::Other(format!("`{m}` is not a datagram length")))?,
            ),
            None => None,
        };
        let pcap = self.pcap(name)?;
        let addr = |w: &str| {
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}` is not an IPv4 address")))
        };
        let proto: u8 = proto
            .parse()
            .map_err(|_| Error::Other(format!("`{proto}` is not an IP protocol number")))?;
        let sizes = crate::lab::pcap::sizes(pcap, addr(src)?, addr(dst)?, proto)?;
        let above = max.map_or(0, |m| sizes.iter().filter(|s| **s > m).count());
        Ok(format!(
            "largest={} count={} above={above}",
            sizes.iter().max().copied().unwrap_or(0),
            sizes.len()
        ))
    }

    /// The run's generator (`lab::seed` first).
    fn rng(&mut self) -> Result<&mut rand::rngs::StdRng> {
        self.rng
            .as_mut()
            .ok_or_else(|| Error::Other("random choice before `lab::seed`".into()))
    }

    /// lab::seed VAR: seeds every random choice of the run, from
    /// MIP4_LAB_SEED if set (to replay a run), else at random; the seed
    /// goes into ${VAR} and so into the summary.
    pub(super) fn seed(&mut self, var: &str) -> Result<()> {
        use rand::SeedableRng;
        let seed: u64 = match std::env::var("MIP4_LAB_SEED") {
            Ok(s) => s
                .parse()
                .map_err(|_| Error::Other(format!("MIP4_LAB_SEED `{s}` is not a number")))?,
            Err(_) => rand::random(),
        };
        self.rng = Some(rand::rngs::StdRng::seed_from_u64(seed));
        self.vars.insert(var.to_string(), seed.to_string());
        self.emit("seeded", "", serde_json::json!({"seed": seed}));
        Ok(())
    }

    /// lab::random VAR LO HI: an integer in LO..=HI into ${VAR}.
    pub(super) fn random(&mut self, var: &str, lo: &str, hi: &str) -> Result<()> {
        use rand::Rng;
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| Error::Other(format!("`{s}` is not a number")))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(Error::Other(format!("empty range {lo}..={hi}")));
        }
        let v = self.rng()?.gen_range(lo..=hi);
        self.vars.insert(var.to_string(), v.to_string());
        Ok(())
    }

    /// lab::pick VAR A B ...: one of the words into ${VAR}.
    pub(super) fn pick(&mut self, var: &str, choices: &[&str]) -> Result<()> {
        use rand::seq::SliceRandom;
        let v = choices
            .choose(self.rng()?)
            .ok_or_else(|| Error::Other(format!("`lab::pick {var}`: nothing to pick")))?
            .to_string();
        self.vars.insert(var.to_string(), v);
        Ok(())
    }

    /// lab::loss NET PERCENT: the access link of NET loses PERCENT % of
    /// its frames each way from now on (0: none), seeded from the run's
    /// generator (`lab::seed` first).
    pub(super) fn loss(&mut self, net: &str, percent: &str) -> Result<()> {
        use rand::Rng;
        let p: f64 = percent
            .parse()
            .map_err(|_| Error::Other(format!("`{percent}` is not a percentage")))?;
        let seed: u64 = self.rng()?.gen();
        let a = self.lab.spec.access(net)?.clone();
        let w = self
            .lab
            .wire(&a.host, &a.dev)
            .ok_or_else(|| Error::Other(format!("access `{net}` has no delay line to lose on")))?;
        w.set_loss(p, seed);
        let dropped = w.dropped();
        self.emit(
            "loss_set",
            net,
            serde_json::json!({"percent": p, "dropped_so_far": dropped}),
        );
        Ok(())
    }

    /// lab::var VAR EVENT FIELD: ${VAR} = field FIELD of the last event
    /// EVENT (e.g. the TIA a daemon reported).
    pub(super) fn var_from(&mut self, var: &str, event: &str, field: &str) -> Result<()> {
        let e = self
            .events
            .iter()
            .rev()
            .find(|e| e.event == event)
            .ok_or_else(|| Error::Other(format!("no event `{event}` yet")))?;
        let v = match &e.detail[field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => {
                return Err(Error::Other(format!("event `{event}` has no `{field}`")))
            }
            other => other.to_string(),
        };
        self.vars.insert(var.to_string(), v);
        Ok(())
    }

    /// lab::repeat N FILE: the lines of FILE (`pre.dat` syntax, beside the
    /// file of the line that names it: `from`) N times, with ${ROUND} =
    /// 1..=N; `lab::repeat 1 FILE` includes a file.
    pub(super) fn repeat(&mut self, n: &str, file: &str, from: &Path) -> Result<()> {
        let n: u32 = n
            .parse()
            .map_err(|_| Error::Other(format!("`{n}` is not a count")))?;
        let dir = from.parent().unwrap_or(&self.scenario.dir);
        let lines = parse_dat(&dir.join(file), false)?;
        if lines.is_empty() {
            return Err(Error::Other(format!("`{file}`: no lines to repeat")));
        }
        // A repeat inside a repeat (`lab::repeat 1 FILE` to include a
        // file) leaves the outer ${ROUND} as it was.
        let outer = self.vars.get("ROUND").cloned();
        for round in 1..=n {
            self.vars.insert("ROUND".into(), round.to_string());
            for l in &lines {
                self.step(l).map_err(|e| {
                    Error::Other(format!("round {round}, {}:{}: {e}", l.file, l.line))
                })?;
            }
        }
        match outer {
            Some(r) => self.vars.insert("ROUND".into(), r),
            None => self.vars.remove("ROUND"),
        };
        Ok(())
    }
}

/// lab::hold MS: keeps a fault in place for MS milliseconds (a fault's
/// length, as the scenario says it; never a wait for a result).
pub(super) fn hold(ms: &str) -> Result<()> {
    let ms: u64 = ms
        .parse()
        .map_err(|_| Error::Other(format!("`{ms}` is not a number of milliseconds")))?;
    std::thread::sleep(Duration::from_millis(ms));
    Ok(())
}
