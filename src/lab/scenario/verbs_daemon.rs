//! The daemon verbs: mip4d, mip4-ha and helpers spawned and stopped,
//! their configs rendered (with run-only keys), their logs, events,
//! bindings and status waited on and read.

use std::path::Path;
use std::time::Duration;

use super::{now, Args, Run};
use crate::lab::daemon::{self, Events};
use crate::lab::{wait, Error, Result};

impl Run<'_> {
    /// lab::wait-log HOST[/PROC] NEEDLE EVENT [SECS]
    pub(super) fn wait_log(&mut self, a: &Args) -> Result<()> {
        let (target, needle, event) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let path = match target.split_once('/') {
            None => self.charon(target)?.log_path().to_path_buf(),
            Some((h, p)) => self.work.path().join(format!("{h}-{p}.log")),
        };
        let what = format!("`{needle}` in {}", path.display());
        let (line, _) = wait::until(a.secs(4, 20)?, &what, || {
            let text = std::fs::read_to_string(&path).ok()?;
            text.lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })?;
        self.emit(event, target, serde_json::json!({"line": line}));
        Ok(())
    }

    /// lab::spawn HOST NAME CMD...: a daemon inside HOST, log in
    /// the work dir as HOST-NAME.log (mip4d, mip4-ha later).
    pub(super) fn spawn(&mut self, a: &Args) -> Result<()> {
        let (host, name) = (a.arg(1)?, a.arg(2)?);
        let rest = a.words.get(3..).unwrap_or_default().join(" ");
        let ns = self.lab.host(host)?;
        let mut cmd = ns.command("sh");
        cmd.args(["-c", &format!("exec {rest}")]);
        let log = self.work.path().join(format!("{host}-{name}.log"));
        let p = ns.spawn(name, cmd, &log)?;
        let cpus = crate::lab::machines::cpus_allowed(p.pid());
        self.procs.insert(format!("{host}/{name}"), p);
        self.emit(
            "spawned",
            host,
            serde_json::json!({"name": name, "cmd": rest, "cpus": cpus}),
        );
        Ok(())
    }

    /// lab::stop HOST/NAME
    pub(super) fn stop(&mut self, a: &Args) -> Result<()> {
        let key = a.arg(1)?;
        if let Some(mut p) = self.procs.remove(key) {
            p.stop(Duration::from_secs(3));
        }
        if let Some(mut s) = self.streams.remove(key) {
            s.stop();
        }
        self.emit("stopped", key, serde_json::json!({}));
        Ok(())
    }

    /// lab::forge-tnc NAME HOST HOME_AGENT: HOST answers the
    /// registration requests passing it towards HOME_AGENT with
    /// forged TNC replies (src/lab/forger.rs).
    pub(super) fn forge_tnc(&mut self, a: &Args) -> Result<()> {
        let (name, host, ha) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let f = crate::lab::forger::Forger::start(self.lab.host(host)?, ha)?;
        self.forgers.insert(name.to_string(), f);
        self.emit(
            "forger_started",
            host,
            serde_json::json!({"name": name, "home_agent": ha}),
        );
        Ok(())
    }

    /// lab::forged NAME FIGURE: requests forger NAME answered.
    pub(super) fn forged(&mut self, a: &Args) -> Result<()> {
        let (name, fig) = (a.arg(1)?, a.arg(2)?);
        let f = self
            .forgers
            .get(name)
            .ok_or_else(|| Error::Other(format!("no forger `{name}`")))?;
        self.figures.insert(fig.to_string(), f.answered() as f64);
        Ok(())
    }

    /// lab::secret VAR BYTES: a random key (hex) for this run only,
    /// substituted like a variable but never reported or logged.
    pub(super) fn secret(&mut self, a: &Args) -> Result<()> {
        let (var, n) = (a.arg(1)?, a.arg(2)?);
        let n: usize = n
            .parse()
            .map_err(|_| Error::Other(format!("`{n}` is not a byte count")))?;
        let mut key = vec![0u8; n];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        self.secrets.insert(var.to_string(), hex);
        self.emit(
            "secret_made",
            "",
            serde_json::json!({"var": var, "bytes": n}),
        );
        Ok(())
    }

    /// lab::render HOST FILE VAR: the host's config FILE with
    /// ${VARS} filled in, written to the work dir (mode 0600, it may
    /// hold a key); its path goes into ${VAR}.
    pub(super) fn render(&mut self, a: &Args) -> Result<()> {
        let (host, file, var) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let src = self.host_file(host, file);
        let text = std::fs::read_to_string(&src).map_err(|source| Error::Io {
            path: src.display().to_string(),
            source,
        })?;
        let dir = self.work.path().join(host);
        let dst = dir.join(file);
        write_private(&dir, &dst, &self.subst(&text))?;
        self.vars.insert(var.to_string(), dst.display().to_string());
        self.emit(
            "config_written",
            host,
            serde_json::json!({"from": src, "to": dst}),
        );
        Ok(())
    }

    /// lab::subscribe HOST/PROC SOCKET [SECS]: mip4d's event stream
    /// (no backlog: subscribe before the events that matter).
    pub(super) fn subscribe(&mut self, a: &Args) -> Result<()> {
        let (key, socket) = (a.arg(1)?, a.arg(2)?);
        let ev = Events::subscribe(Path::new(socket), a.secs(3, 10)?)?;
        self.subscriptions.insert(key.to_string(), ev);
        let host = key.split('/').next().unwrap_or(key);
        self.control_sockets
            .insert(host.to_string(), socket.to_string());
        self.emit("subscribed", key, serde_json::json!({"socket": socket}));
        Ok(())
    }

    /// lab::wait-event HOST/PROC EVENT [field=value ...]
    ///   [after=LABEVENT] [last-before=LABEVENT] NAME [SECS]: waits
    /// for the daemon's first EVENT with those fields (stamped at or
    /// after `after`; with `last-before`, the last one stamped up to
    /// then) and records it as NAME at the daemon's own timestamp.
    pub(super) fn wait_event(&mut self, a: &Args) -> Result<()> {
        let (key, dev) = (a.arg(1)?, a.arg(2)?);
        let mut conds = Vec::new();
        let mut after = 0.0;
        let mut last_before = None;
        let mut rest = a.words.get(3..).unwrap_or_default().iter();
        let name = loop {
            let Some(w) = rest.next() else {
                return Err(Error::Other(format!(
                    "`lab::{}`: the lab event name is missing",
                    a.command
                )));
            };
            match w.split_once('=') {
                Some(("after", ev)) => after = self.event_time(ev)?,
                Some(("last-before", ev)) => last_before = Some(self.event_time(ev)?),
                Some((k, v)) => conds.push((k.to_string(), v.to_string())),
                None => break *w,
            }
        };
        let timeout = match rest.next() {
            None => Duration::from_secs(20),
            Some(s) => Duration::from_secs(
                s.parse()
                    .map_err(|_| Error::Other(format!("`{s}` is not a number of seconds")))?,
            ),
        };
        let sub = self
            .subscriptions
            .get(key)
            .ok_or_else(|| Error::Other(format!("no `lab::subscribe {key}` yet")))?;
        let what = format!("`{dev}` {conds:?} from {key}");
        let (e, _) = wait::until(timeout, &what, || sub.find(dev, &conds, after, last_before))?;
        let t = daemon::wall(&e).unwrap_or_else(now);
        self.emit_at(name, key, e, t);
        Ok(())
    }

    /// lab::binding HOST SOCKET HOA COA NAME [SECS]: waits until
    /// the HA's binding for HOA has care-of address COA.
    pub(super) fn wait_binding(&mut self, a: &Args) -> Result<()> {
        let (host, socket, hoa, coa, name) =
            (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?, a.arg(5)?);
        self.control_sockets
            .insert(host.to_string(), socket.to_string());
        let what = format!("binding {hoa} -> {coa} at {host}");
        let mut last = None;
        let r = wait::until(a.secs(6, 20)?, &what, || {
            let b = daemon::binding(Path::new(socket), hoa).ok()?;
            last = b.clone();
            b.filter(|b| b["care_of_address"] == coa)
        });
        let (b, _) = r.map_err(|e| {
            Error::Other(format!(
                "{e}; last seen: {}",
                daemon::describe_binding(last.as_ref())
            ))
        })?;
        self.emit(name, host, b);
        Ok(())
    }

    /// lab::dsmip-register HOST HA HOA COA SPI SECRET MODE LIFETIME VAR:
    /// one signed registration from HOST's care-of address COA with an
    /// IPv6 Prefix Request (RFC 5454 §2.1), to the home address or, with
    /// MODE `care-of`, to the care-of address (§2.3); SECRET names the
    /// `lab::secret` holding the MN-HA key. The reply must accept it and
    /// grant the prefix with the code of MODE (§2.2: 0 or 1); the prefix's
    /// network goes into ${VAR} (e.g. `2001:db8:100:5::`).
    pub(super) fn dsmip_register(&mut self, a: &Args) -> Result<()> {
        let host = a.arg(1)?;
        let addr = |i: usize| a.ipv4(i);
        let num = |i: usize| -> Result<u32> {
            let w = a.arg(i)?;
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}` is not a number")))
        };
        let secret = a.arg(6)?;
        let key_hex = self
            .secrets
            .get(secret)
            .ok_or_else(|| Error::Other(format!("no lab::secret `{secret}`")))?;
        let key = (0..key_hex.len() / 2)
            .map(|i| u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16))
            .collect::<std::result::Result<Vec<u8>, _>>()
            .map_err(|_| Error::Other(format!("secret `{secret}` is not hex")))?;
        let tunnel_to = tunnel_to(a.arg(7)?)?;
        let ask = crate::lab::dsmip::Ask {
            home_agent: addr(2)?,
            home: addr(3)?,
            care_of: addr(4)?,
            spi: num(5)?,
            key,
            lifetime: u16::try_from(num(8)?)
                .map_err(|_| Error::Other("lifetime above 65535".into()))?,
            tunnel_to,
        };
        let var = a.arg(9)?;
        let ans = crate::lab::dsmip::register(self.lab.host(host)?, &ask)?;
        let want = match tunnel_to {
            crate::dataplane::binding::Ipv6TunnelTo::HomeAddress => 0,
            crate::dataplane::binding::Ipv6TunnelTo::CareOf => 1,
        };
        let detail = serde_json::json!({
            "code": ans.code,
            "prefix_reply_code": ans.prefix_reply.map(|p| p.0),
            "prefix": ans.prefix_reply.map(|p| p.1.to_string()),
            "lifetime": ask.lifetime,
        });
        let granted = match ans.prefix_reply {
            Some((code, p)) if ans.code <= 1 && code == want => p,
            _ if ask.lifetime == 0 && ans.code <= 1 => {
                self.emit("dsmip_deregistered", host, detail);
                return Ok(());
            }
            _ => {
                return Err(Error::Other(format!(
                    "registration with an IPv6 Prefix Request not granted as asked (prefix code {want}): {detail}"
                )))
            }
        };
        self.vars
            .insert(var.to_string(), granted.network().to_string());
        self.emit("dsmip_registered", host, detail);
        Ok(())
    }

    /// lab::sit-up HOST HOA COA HA MODE ADDRESS/LEN: the mobile node's
    /// IPv6 tunnel as mip4d's kernel backend makes it
    /// (`lab::dsmip::sit_up`): its `sit` link to the home
    /// agent from the home address or (MODE `care-of`) the care-of
    /// address, ADDRESS on it, the IPv6 default route into it.
    pub(super) fn sit_up(&mut self, a: &Args) -> Result<()> {
        let host = a.arg(1)?;
        let addr = |i: usize| a.ipv4(i);
        let (home, care_of, ha) = (addr(2)?, addr(3)?, addr(4)?);
        let to = tunnel_to(a.arg(5)?)?;
        let address: ipnet::Ipv6Net = a
            .arg(6)?
            .parse()
            .map_err(|_| Error::Other(format!("`{}` is not an IPv6 address/len", a.words[6])))?;
        let link = crate::lab::dsmip::sit_up(self.lab.host(host)?, home, care_of, ha, to, address)?;
        self.emit(
            "sit_up",
            host,
            serde_json::json!({"link": link, "address": address.to_string(), "tunnel_to": to}),
        );
        Ok(())
    }

    /// lab::status-figure SOCKET FIELD.PATH FIGURE: a number from a
    /// daemon's `mip4ctl status --json` (e.g. a counter).
    pub(super) fn status_figure(&mut self, a: &Args) -> Result<()> {
        let (socket, field, fig) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        // A daemon busy moving datagrams (a userspace data plane in the
        // kernel tier's emulated guest) may miss one query's 2 s.
        let mut last = None;
        let asked = wait::until(
            Duration::from_secs(10),
            &format!("status of {socket}"),
            || match daemon::status(Path::new(socket)) {
                Ok(v) => Some(v),
                Err(e) => {
                    last = Some(e);
                    None
                }
            },
        );
        let v = match (asked, last) {
            (Ok((v, _)), _) => v,
            (Err(_), Some(e)) => return Err(e),
            (Err(e), None) => return Err(e),
        };
        let n = field
            .split('.')
            .fold(&v, |v, part| &v[part])
            .as_f64()
            .ok_or_else(|| Error::Other(format!("status of {socket}: no number at `{field}`")))?;
        self.figures.insert(fig.to_string(), n);
        Ok(())
    }
}

/// RFC 5454 §2.2's choice as a scenario writes it.
fn tunnel_to(w: &str) -> Result<crate::dataplane::binding::Ipv6TunnelTo> {
    use crate::dataplane::binding::Ipv6TunnelTo;
    match w {
        "home-address" => Ok(Ipv6TunnelTo::HomeAddress),
        "care-of" => Ok(Ipv6TunnelTo::CareOf),
        _ => Err(Error::Other(format!(
            "`{w}`: expected home-address or care-of"
        ))),
    }
}

/// Writes `text` to `path` (in `dir`, made if needed), readable by root
/// only: rendered configs may hold a key.
fn write_private(dir: &Path, path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}
