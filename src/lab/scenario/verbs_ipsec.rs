//! The IPsec verbs: charon started, killed, its IKE_SAs brought up,
//! waited on, terminated and soaked, its memory read.

use std::time::Duration;

use super::{now, Args, Run};
use crate::lab::charon::{Charon, IkeSa, SWANCTL};
use crate::lab::{wait, Error, Result};

impl Run<'_> {
    /// lab::charon HOST [mip4=SOCKET] [set:KEY=VALUE ...]: start
    /// charon (with the mip4 plugin talking to SOCKET, the host's
    /// charon.conf lines if it has one, and each charon.KEY = VALUE),
    /// load the host's swanctl.conf. A
    /// second start on HOST (after charon-kill) gets a fresh folder
    /// HOST-N, so the first charon's log stays.
    /// With `--gateway libreswan`, vpngw's gateway is pluto instead
    /// (the host's ipsec.conf and ipsec.secrets).
    pub(super) fn start_charon(&mut self, a: &Args) -> Result<()> {
        if a.arg(1)? == "vpngw" && self.opts.libreswan_root.is_some() {
            return self.start_pluto(a);
        }
        let host = a.arg(1)?.to_string();
        let mip4 = a.words.iter().find_map(|w| w.strip_prefix("mip4="));
        let mut cfg = self.charon_config(mip4)?;
        cfg.extra_settings.push_str(&charon_settings(&a.words[2..]));
        // The host's own lines for strongswan.conf's charon section.
        let own = self.host_file(&host, "charon.conf");
        if let Ok(text) = std::fs::read_to_string(&own) {
            cfg.extra_settings.push_str(&text);
        }
        // `plugin:NAME`: one more plugin to load (e.g. eap-mschapv2), checked
        // at start like the base ones.
        cfg.extra_plugins.extend(
            a.words[2..]
                .iter()
                .filter_map(|w| w.strip_prefix("plugin:"))
                .map(String::from),
        );
        let starts = self
            .events
            .iter()
            .filter(|e| e.event == "charon_started" && e.host == host)
            .count();
        let dir = match starts {
            0 => self.work.path().join(&host),
            n => self.work.path().join(format!("{host}-{}", n + 1)),
        };
        // A charon still running on HOST goes first.
        drop(self.charons.remove(&host));
        let c = Charon::start(self.lab.host(&host)?, &dir, &cfg)?;
        let cpus = crate::lab::machines::cpus_allowed(c.pid());
        let conf = self.host_file(&host, "swanctl.conf");
        c.load_all(&conf)?;
        self.platform
            .ipsec
            .insert(host.clone(), c.ipsec_backend().to_string());
        self.charons.insert(host.clone(), c);
        self.emit(
            "charon_started",
            &host,
            serde_json::json!({"swanctl": conf, "mip4": mip4, "dir": dir, "cpus": cpus}),
        );
        Ok(())
    }

    /// `lab::charon vpngw` with `--gateway libreswan`: libreswan's pluto.
    fn start_pluto(&mut self, a: &Args) -> Result<()> {
        let host = a.arg(1)?.to_string();
        let root = self.opts.libreswan_root.clone().unwrap_or_default();
        let dir = self.work.path().join(&host);
        drop(self.plutos.remove(&host));
        let conf = self.host_file(&host, "ipsec.conf");
        let p = crate::lab::pluto::Pluto::start(
            self.lab.host(&host)?,
            &dir,
            &root,
            &conf,
            &self.host_file(&host, "ipsec.secrets"),
        )?;
        self.platform
            .ipsec
            .insert(host.clone(), "libreswan".to_string());
        self.emit(
            "pluto_started",
            &host,
            serde_json::json!({"ipsec_conf": conf, "log": p.log_path()}),
        );
        self.plutos.insert(host, p);
        Ok(())
    }

    /// lab::charon-kill HOST: charon dies (SIGKILL: no DELETE sent,
    /// kernel-libipsec's ipsec0 and its routes vanish with it).
    pub(super) fn kill_charon(&mut self, a: &Args) -> Result<()> {
        let host = a.arg(1)?.to_string();
        let mut c = self
            .charons
            .remove(&host)
            .ok_or_else(|| Error::Other(format!("no charon started on `{host}`")))?;
        let killed = now();
        c.process_mut().kill();
        drop(c);
        self.emit_at("charon_killed", &host, serde_json::json!({}), killed);
        Ok(())
    }

    /// lab::terminate HOST IKE: `swanctl --terminate --ike IKE`,
    /// waiting until charon has deleted it; the event is stamped
    /// when the command started (what follows it may come sooner
    /// than swanctl returns).
    pub(super) fn terminate(&mut self, a: &Args) -> Result<()> {
        let (host, ike) = (a.arg(1)?, a.arg(2)?);
        let started = now();
        let out = self
            .charon(host)?
            .swanctl(&["--terminate", "--ike", ike, "--timeout", "10"])?;
        self.emit_at(
            "vpn_terminated",
            host,
            serde_json::json!({"ike": ike, "out": out.trim()}),
            started,
        );
        Ok(())
    }

    /// lab::ike-soak HOST IKE CHILD ROUNDS REKEYS FIGURE: ROUNDS
    /// times initiate CHILD, rekey IKE REKEYS times and terminate
    /// it: 1 + REKEYS IKE_SAs a round (figure FIGURE, time
    /// FIGURE_ms).
    pub(super) fn soak_ike(&mut self, a: &Args) -> Result<()> {
        let (host, ike, child, fig) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(6)?);
        let count = |i: usize| -> Result<u32> {
            let w = a.arg(i)?;
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}` is not a count")))
        };
        let (rounds, rekeys) = (count(4)?, count(5)?);
        let started = now();
        let lives = ike_soak(self.charon(host)?, ike, child, rounds, rekeys)?;
        let ms = ((now() - started) * 1e3).round();
        self.figures.insert(fig.to_string(), f64::from(lives));
        self.figures.insert(format!("{fig}_ms"), ms);
        self.emit(
            "ike_soak_done",
            host,
            serde_json::json!({"ike": ike, "ike_sas": lives, "ms": ms}),
        );
        Ok(())
    }

    /// lab::rss HOST FIGURE: the resident memory of HOST's charon
    /// (KiB, /proc/PID/status VmRSS).
    pub(super) fn rss(&mut self, a: &Args) -> Result<()> {
        let (host, fig) = (a.arg(1)?, a.arg(2)?);
        let pid = self
            .charons
            .get_mut(host)
            .ok_or_else(|| Error::Other(format!("no charon started on `{host}`")))?
            .process_mut()
            .pid();
        self.figures.insert(fig.to_string(), rss_kib(pid)?);
        Ok(())
    }

    /// lab::initiate HOST CHILD: initiate, as the VPN's user would, and
    /// return when charon reports the CHILD_SA up (`swanctl --initiate`),
    /// without looking at the SAs: the lab's own `swanctl --list-sas`
    /// would share the CPU with the steps that follow, which a scenario
    /// may be timing (issue 14 §2); `lab::wait-sa` looks later.
    pub(super) fn initiate(&mut self, a: &Args) -> Result<()> {
        let (host, child) = (a.arg(1)?, a.arg(2)?);
        self.charon(host)?.initiate(child)?;
        self.emit("vpn_initiated", host, serde_json::json!({"child": child}));
        Ok(())
    }

    /// lab::user-initiate HOST CHILD: the user's own `swanctl --initiate
    /// --child CHILD` (as NetworkManager's or a shell's), not waited for:
    /// it races whatever mip4d does meanwhile. Event `user_initiate`,
    /// stamped when it started; its output in HOST-initiate-CHILD.log.
    pub(super) fn user_initiate(&mut self, a: &Args) -> Result<()> {
        let (host, child) = (a.arg(1)?, a.arg(2)?);
        let uri = self.charon(host)?.uri();
        let timeout = (20.0 * wait::scale()).ceil().to_string();
        let ns = self.lab.host(host)?;
        let mut cmd = ns.command(SWANCTL);
        cmd.args(["--initiate", "--child", child, "--timeout", &timeout])
            .args(["--uri", &uri]);
        let name = format!("initiate-{child}");
        let log = self.work.path().join(format!("{host}-{name}.log"));
        let started = now();
        let p = ns.spawn(&name, cmd, &log)?;
        self.procs.insert(format!("{host}/{name}"), p);
        self.emit_at(
            "user_initiate",
            host,
            serde_json::json!({"child": child}),
            started,
        );
        Ok(())
    }

    /// lab::vpn-up HOST IKE CHILD VAR: initiate, wait for the TIA.
    pub(super) fn vpn_up(&mut self, a: &Args) -> Result<()> {
        let (host, ike, child, var) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        let c = self.charon(host)?;
        // With trusted-network detection mip4d brings the VPN up itself
        // on an untrusted verdict (RFC 5266 §3.4). When its request came
        // first (the kernel tier's lab, on the other vCPU, still starting
        // its captures), charon refuses the lab's as a duplicate CHILD_SA
        // and swanctl fails, the VPN up all the same: the failure counts
        // only if no IKE_SA with this CHILD_SA and a TIA follows.
        let initiated = c.initiate(child);
        let up = c.wait_sa(ike, Duration::from_secs(15), "VPN with a TIA", |sa| {
            !sa.local_vips.is_empty() && sa.children.iter().any(|c| c.name == child)
        });
        let (sa, _) = match (initiated, up) {
            (_, Ok(up)) => up,
            (Err(e), Err(_)) | (Ok(_), Err(e)) => return Err(e),
        };
        let tia = sa.local_vips[0].clone();
        self.vars.insert(var.to_string(), tia.clone());
        self.emit("vpn_up", host, sa_json(&sa));
        Ok(())
    }

    /// lab::wait-sa HOST IKE FIELD=VALUE EVENT [SECS]
    pub(super) fn wait_sa(&mut self, a: &Args) -> Result<()> {
        let (host, ike, cond, event) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        let (key, value) = cond
            .split_once('=')
            .ok_or_else(|| Error::Other(format!("`{cond}`: expected field=value")))?;
        let c = self.charon(host)?;
        let (sa, _) = c.wait_sa(ike, a.secs(5, 20)?, cond, |sa| {
            sa_json(sa)[key].as_str() == Some(value)
                || sa_json(sa)[key]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == value))
        })?;
        self.emit(event, host, sa_json(&sa));
        Ok(())
    }
}

/// The `set:KEY=VALUE` words of `lab::charon` as strongswan.conf lines of
/// the `charon { }` section (e.g. `set:retransmit_timeout=1` for a fast
/// dead-peer detection).
fn charon_settings(words: &[&str]) -> String {
    words
        .iter()
        .filter_map(|w| w.strip_prefix("set:")?.split_once('='))
        .map(|(k, v)| format!("    {k} = {v}\n"))
        .collect()
}

fn sa_json(sa: &IkeSa) -> serde_json::Value {
    serde_json::json!({
        "name": sa.name,
        "state": sa.state,
        "local-host": sa.local_host,
        "local-port": sa.local_port,
        "remote-host": sa.remote_host,
        "remote-port": sa.remote_port,
        "local-vips": sa.local_vips,
        "remote-vips": sa.remote_vips,
        "nat-local": sa.nat_local,
    })
}

/// `rounds` times: initiate `child`, `rekeys` times rekey the IKE_SA
/// `ike` and wait for the new one, terminate it. Returns the IKE_SAs that
/// lived.
fn ike_soak(c: &Charon, ike: &str, child: &str, rounds: u32, rekeys: u32) -> Result<u32> {
    let established = |c: &Charon| -> Result<Vec<(u32, String)>> {
        Ok(ike_sa_states(
            &c.swanctl(&["--list-sas", "--ike", ike, "--raw"])?,
            ike,
        ))
    };
    let mut lives = 0;
    for _ in 0..rounds {
        c.initiate(child)?;
        lives += 1;
        let Some(&(mut old, _)) = established(c)?.first() else {
            return Err(Error::Other(format!("`{ike}` not up after initiate")));
        };
        for _ in 0..rekeys {
            c.swanctl(&["--rekey", "--ike", ike])?;
            let what = format!("IKE_SA {ike}[{old}] rekeyed");
            (old, _) = wait::until(Duration::from_secs(10), &what, || {
                match established(c).ok()?.as_slice() {
                    [(id, state)] if *id != old && state == "ESTABLISHED" => Some(*id),
                    _ => None,
                }
            })?;
            lives += 1;
        }
        c.swanctl(&["--terminate", "--ike", ike, "--timeout", "10"])?;
    }
    Ok(lives)
}

/// (uniqueid, state) of each IKE_SA named `ike` in `--list-sas --raw`.
fn ike_sa_states(raw: &str, ike: &str) -> Vec<(u32, String)> {
    let key = format!("{ike} {{uniqueid=");
    raw.match_indices(&key)
        .filter_map(|(at, _)| {
            let rest = &raw[at + key.len()..];
            let id = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()?;
            let state = rest.split("state=").nth(1)?.split([' ', '}']).next()?;
            Some((id, state.to_string()))
        })
        .collect()
}

/// VmRSS of process `pid` in KiB.
fn rss_kib(pid: i32) -> Result<f64> {
    let text = super::verbs_measure::read_proc(pid, "status")?;
    super::verbs_measure::proc_kib(&text, "VmRSS")
        .ok_or_else(|| Error::Other(format!("/proc/{pid}/status: no VmRSS")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ike_sa_states_reads_every_ike_sa_of_the_name() {
        let raw = "list-sa event {soak {uniqueid=7 version=2 state=REKEYING local-host=1} }\n\
                   list-sa event {soak {uniqueid=8 version=2 state=ESTABLISHED} vpn {uniqueid=1 state=ESTABLISHED}}";
        assert_eq!(
            ike_sa_states(raw, "soak"),
            vec![(7, "REKEYING".into()), (8, "ESTABLISHED".into())]
        );
        assert!(ike_sa_states(raw, "other").is_empty());
    }
}
