//! The measuring verbs of issue 14 §5: a daemon's memory from /proc and
//! bulk throughput through the tunnel against the bare path.

use std::time::Duration;

use super::{Args, Run};
use crate::lab::bench::median;
use crate::lab::bulk;
use crate::lab::{Error, Result};

/// What `lab::memory` reads: /proc/PID/status keys and the
/// smaps_rollup key, each as the figure PREFIX_<name>_kib.
const STATUS_KEYS: [(&str, &str); 4] = [
    ("VmRSS", "rss"),
    ("RssAnon", "anon"),
    ("RssFile", "file"),
    ("VmHWM", "hwm"),
];

/// The value in kB of `key` in a /proc file of `Key:  N kB` lines.
pub(crate) fn proc_kib(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The clean pages (KiB) of `exe`'s own mappings and of every other
/// file's (the shared libraries), from /proc/PID/smaps: what the kernel
/// mapped from the page cache, as against what the process wrote
/// (Private_Dirty, which also takes the pages of the binary that
/// relocations wrote).
pub(crate) fn clean_file_kib(smaps: &str, exe: &str) -> (f64, f64) {
    let (mut binary, mut libraries) = (0.0, 0.0);
    for e in crate::sys::resident::smaps_entries(smaps) {
        let Some(path) = e.path else { continue };
        let clean = ["Shared_Clean", "Private_Clean"]
            .iter()
            .filter_map(|k| e.kib(k))
            .sum::<u64>() as f64;
        *(if path == exe {
            &mut binary
        } else {
            &mut libraries
        }) += clean;
    }
    (binary, libraries)
}

pub(crate) fn read_proc(pid: i32, file: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path).map_err(|source| Error::Io { path, source })
}

impl Run<'_> {
    /// lab::memory HOST/NAME PREFIX: the daemon's resident memory now,
    /// as figures PREFIX_rss_kib, _anon_kib, _file_kib (the binary's and
    /// libraries' pages: clean, shared with the page cache), _hwm_kib
    /// (the peak so far), _private_dirty_kib (smaps_rollup: what this
    /// process alone has written), and the file pages split into
    /// _binary_kib (the daemon's executable) and _libraries_kib.
    pub(super) fn memory(&mut self, a: &Args) -> Result<()> {
        let (key, prefix) = (a.arg(1)?, a.arg(2)?);
        let pid = self
            .procs
            .get(key)
            .ok_or_else(|| Error::Other(format!("no process `{key}` spawned")))?
            .pid();
        // A binary just built or copied is dirty in the page cache until
        // written back, and smaps counts its mapped pages as this
        // process's Private_Dirty: flush first, so the figure is the
        // process's own writes.
        nix::unistd::sync();
        let status = read_proc(pid, "status")?;
        let rollup = read_proc(pid, "smaps_rollup")?;
        let mut got = serde_json::Map::new();
        let keys = STATUS_KEYS.iter().map(|&(k, n)| (&status, k, n)).chain([(
            &rollup,
            "Private_Dirty",
            "private_dirty",
        )]);
        for (text, k, name) in keys {
            let v =
                proc_kib(text, k).ok_or_else(|| Error::Other(format!("/proc/{pid}: no {k}")))?;
            self.figures.insert(format!("{prefix}_{name}_kib"), v);
            got.insert(name.to_string(), v.into());
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (binary, libraries) = clean_file_kib(&read_proc(pid, "smaps")?, &exe);
        for (name, v) in [("binary", binary), ("libraries", libraries)] {
            self.figures.insert(format!("{prefix}_{name}_kib"), v);
            got.insert(name.to_string(), v.into());
        }
        self.emit("memory", key, serde_json::Value::Object(got));
        Ok(())
    }

    /// lab::throughput NAME SENDER RECEIVER TUNNEL_ADDR BARE_ADDR PAIRS MS:
    /// PAIRS pairs of bulk TCP transfers of MS ms from host SENDER to
    /// host RECEIVER, one to TUNNEL_ADDR and one to BARE_ADDR, the order
    /// alternating ABBA. Each pair is an event `throughput_pair`; the
    /// figures are NAME_tunnel_mbit_s and NAME_bare_mbit_s (medians),
    /// NAME_ratio (median of the pairs' tunnel/bare) and
    /// NAME_ratio_worst (the lowest), and NAME_pairs.
    pub(super) fn throughput(&mut self, a: &Args) -> Result<()> {
        let (name, sender, receiver) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let addr = |i: usize| -> Result<std::net::Ipv4Addr> {
            let w = a.arg(i)?;
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}`: expected an IPv4 address")))
        };
        let (tunnel, bare) = (addr(4)?, addr(5)?);
        let number = |i: usize| -> Result<u64> {
            let w = a.arg(i)?;
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}`: expected a number")))
        };
        let (pairs, ms) = (number(6)?, number(7)?);
        let (sender_ns, receiver_ns) = (
            self.lab.host(sender)?.name().to_string(),
            self.lab.host(receiver)?.name().to_string(),
        );
        let mut port = 5201;
        let mut run = |to: std::net::Ipv4Addr| -> Result<f64> {
            port += 1;
            let t = bulk::transfer(
                &sender_ns,
                &receiver_ns,
                std::net::SocketAddrV4::new(to, port),
                Duration::from_millis(ms),
            )?;
            Ok(t.mbit_s())
        };
        let (mut tun, mut bar, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for pair in 0..pairs {
            let (t, b) = if pair % 2 == 0 {
                let t = run(tunnel)?;
                (t, run(bare)?)
            } else {
                let b = run(bare)?;
                (run(tunnel)?, b)
            };
            let r = t / b;
            self.emit(
                "throughput_pair",
                sender,
                serde_json::json!({"name": name, "pair": pair, "tunnel_mbit_s": t, "bare_mbit_s": b, "ratio": r}),
            );
            tun.push(t);
            bar.push(b);
            ratios.push(r);
        }
        let worst = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let round = |v: f64| (v * 1000.0).round() / 1000.0;
        for (k, v) in [
            ("tunnel_mbit_s", median(&tun)),
            ("bare_mbit_s", median(&bar)),
            ("ratio", median(&ratios)),
            ("ratio_worst", worst),
            ("pairs", pairs as f64),
        ] {
            self.figures.insert(format!("{name}_{k}"), round(v));
        }
        Ok(())
    }
}

impl Run<'_> {
    /// lab::xfrm-cost CYCLES RUNS PREFIX: XFRM policy add/delete cycles
    /// in a namespace of their own (src/lab/xfrm_cost.rs), the figures
    /// PREFIX_cycle_cpu_us and PREFIX_cycle_wall_us (medians of RUNS);
    /// the kernel tier's bench compares them with the host's.
    pub(super) fn xfrm_cost(&mut self, a: &Args) -> Result<()> {
        let num = |i: usize| -> Result<usize> {
            a.arg(i)?
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::Other(format!("`{}` is not a count", a.words[i])))
        };
        let (cycles, runs, prefix) = (num(1)?, num(2)?, a.arg(3)?);
        let c = crate::lab::xfrm_cost::measure(cycles, runs).map_err(Error::Other)?;
        self.figures
            .insert(format!("{prefix}_cycle_cpu_us"), c.cycle_cpu_us);
        self.figures
            .insert(format!("{prefix}_cycle_wall_us"), c.cycle_wall_us);
        self.emit(
            "xfrm_cost",
            "lab",
            serde_json::to_value(c).unwrap_or_default(),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_values_are_read_by_exact_key() {
        let status = "VmHWM:\t    8412 kB\nVmRSS:\t    8380 kB\nRssAnon:\t    1044 kB\n";
        assert_eq!(proc_kib(status, "VmRSS"), Some(8380.0));
        assert_eq!(proc_kib(status, "VmHWM"), Some(8412.0));
        assert_eq!(proc_kib(status, "Rss"), None);
        assert_eq!(
            proc_kib("Private_Dirty:      1044 kB\n", "Private_Dirty"),
            Some(1044.0)
        );
    }

    #[test]
    fn clean_file_pages_split_into_the_binary_and_the_libraries() {
        let smaps = "\
55d0-55e0 r-xp 00218000 fe:00 9415222    /usr/sbin/mip4d
Rss:                4152 kB
Shared_Clean:        100 kB
Private_Clean:      4052 kB
Private_Dirty:         0 kB
55f0-5600 rw-p 006c5000 fe:00 9415222    /usr/sbin/mip4d
Rss:                 392 kB
Private_Clean:         0 kB
Private_Dirty:       392 kB
7f00-7f10 r-xp 00028000 fe:00 325843     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1000 kB
Shared_Clean:       1000 kB
Private_Clean:         0 kB
7f20-7f30 rw-p 00000000 00:00 0          [heap]
Rss:                 652 kB
Private_Clean:         4 kB
Private_Dirty:       648 kB
";
        assert_eq!(clean_file_kib(smaps, "/usr/sbin/mip4d"), (4152.0, 1000.0));
    }
}
