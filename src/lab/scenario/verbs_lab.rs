//! The lab's own verbs: the MN attached and moved, variables set,
//! events marked, figures computed from events and other figures.

use super::{now, Args, Run};
use crate::lab::{Error, Result};

impl Run<'_> {
    /// lab::attach NET: first attachment of the MN.
    /// lab::move NET [LATE_MS]: the measured move (event
    /// `address_change`); with LATE_MS, the new network's address and
    /// default route come that long after its link is up, as a DHCP
    /// lease would (event `address_up` then).
    pub(super) fn attach(&mut self, a: &Args) -> Result<()> {
        let net = self.next_net(a.arg(1)?)?;
        let net = net.as_str();
        let late_ms: u64 = match a.words.get(2) {
            Some(w) if a.words[0] == "move" => w
                .parse()
                .map_err(|_| Error::Other(format!("`{w}` is not a delay in ms")))?,
            _ => 0,
        };
        let host = self.lab.spec.access(net)?.host.clone();
        let from = self.lab.attached(&host).map(str::to_string);
        let before = now();
        self.lab
            .attach_late(net, std::time::Duration::from_millis(late_ms))?;
        // The change counts from its first command; the data
        // checks after it (`path_time`) from the moment the old
        // path was gone, the end of the detach: under the kernel
        // tier's emulation a process start takes ~0.1 s, and
        // echoes sent before the break still went through.
        let gone = self.lab.left_at().unwrap_or(before);
        // ${MN_ADDR}: the MN's address on the network it is on now.
        let addr = self.lab.spec.access(net)?.addr.clone();
        let addr = addr.split('/').next().unwrap_or_default().to_string();
        self.vars.insert("MN_ADDR".into(), addr);
        let name = if a.words[0] == "move" {
            "address_change"
        } else {
            "attached"
        };
        let took_ms = ((now() - before) * 1e4).round() / 10.0;
        let ms_from_start = |t: f64| ((t - before) * 1e4).round() / 10.0;
        let address_at = self.lab.address_at().unwrap_or(before);
        self.emit_at(
            name,
            &host,
            serde_json::json!({"from": from, "to": net, "took_ms": took_ms,
                "path_gone_ms": ms_from_start(gone), "path_gone_t": gone,
                "address_up_ms": ms_from_start(address_at), "late_ms": late_ms}),
            before,
        );
        if name == "address_change" {
            // The address change itself, for the handover's figures: the
            // new network's address given to the kernel. What the lab did
            // before it (the old network's release, the new link up and
            // operational) is the lab's own, the same for every variant
            // timed, and nothing a VPN or mip4d can act on.
            self.emit_at(
                "address_up",
                &host,
                serde_json::json!({"to": net}),
                address_at,
            );
        }
        Ok(())
    }

    /// lab::attach-also NET: NET up beside the networks the MN is on
    /// (event `attached_also`). lab::detach NET: NET down, whichever way
    /// it came up (event `detached`). Each event is stamped when its
    /// command started.
    pub(super) fn attach_also(&mut self, a: &Args) -> Result<()> {
        let net = a.arg(1)?;
        let host = self.lab.spec.access(net)?.host.clone();
        let before = now();
        let name = if a.words[0] == "detach" {
            self.lab.detach_net(net)?;
            "detached"
        } else {
            self.lab.attach_also(net)?;
            "attached_also"
        };
        let took_ms = ((now() - before) * 1e4).round() / 10.0;
        self.emit_at(
            name,
            &host,
            serde_json::json!({"net": net, "took_ms": took_ms}),
            before,
        );
        Ok(())
    }

    /// lab::delay MS: every delayed link (the access links) now holds IP
    /// MS each way (netem only: the kernel tier); event `delay_set`.
    pub(super) fn delay(&mut self, a: &Args) -> Result<()> {
        let arg = a.arg(1)?;
        let ms: u64 = arg
            .parse()
            .map_err(|_| Error::Other(format!("`{arg}` is not a delay in ms")))?;
        self.lab.set_delay(ms)?;
        self.emit("delay_set", "lab", serde_json::json!({"delay_ms": ms}));
        Ok(())
    }

    /// lab::mac VAR HOST DEV: the MAC address of HOST's DEV into ${VAR}
    /// (a gateway's, for a configuration that names it).
    pub(super) fn mac(&mut self, a: &Args) -> Result<()> {
        let (var, host, dev) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        // `eth-b  UP  02:00:5e:00:53:01 <BROADCAST,...>`
        let out = self
            .lab
            .host(host)?
            .ip(&["-br", "link", "show", "dev", dev])?;
        let mac = out
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string();
        if mac.split(':').count() != 6 {
            return Err(Error::Other(format!(
                "{host}:{dev} has no MAC address (`{mac}`)"
            )));
        }
        self.vars.insert(var.to_string(), mac);
        Ok(())
    }

    /// lab::figure NAME FROM TO: ms between two events.
    pub(super) fn figure(&mut self, a: &Args) -> Result<()> {
        let (fig, from, to) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let ms = (self.event_time(to)? - self.event_time(from)?) * 1e3;
        self.figures
            .insert(fig.to_string(), (ms * 10.0).round() / 10.0);
        Ok(())
    }

    /// lab::delta NAME A B: figure A - figure B (e.g. a counter
    /// after and before a move).
    pub(super) fn delta(&mut self, a: &Args) -> Result<()> {
        let (fig, a, b) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let d = self.figure_value(a)? - self.figure_value(b)?;
        self.figures.insert(fig.to_string(), d);
        Ok(())
    }

    /// lab::ratio NAME A B: figure A / figure B.
    pub(super) fn ratio(&mut self, a: &Args) -> Result<()> {
        let (fig, a, b) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let r = self.figure_value(a)? / self.figure_value(b)?;
        self.figures
            .insert(fig.to_string(), (r * 100.0).round() / 100.0);
        Ok(())
    }

    /// lab::set VAR WORDS...: ${VAR} = the words.
    pub(super) fn set_var(&mut self, a: &Args) -> Result<()> {
        let v = a.words.get(2..).unwrap_or_default().join(" ");
        self.vars.insert(a.arg(1)?.to_string(), v);
        Ok(())
    }

    /// lab::mark EVENT: an event now (e.g. a fault's end, for `after`).
    pub(super) fn mark(&mut self, a: &Args) -> Result<()> {
        self.emit(a.arg(1)?, "", serde_json::json!({}));
        Ok(())
    }

    /// Figure `k` of this run so far.
    fn figure_value(&self, k: &str) -> Result<f64> {
        self.figures
            .get(k)
            .copied()
            .ok_or_else(|| Error::Other(format!("no figure `{k}`")))
    }
}
