//! The traffic verbs: ping and TCP streams across the lab, waited on
//! after an event, and their figures (RTT, loss, longest gap).

use std::path::PathBuf;

use super::{Args, Run};
use crate::lab::cpu;
use crate::lab::echo::EchoSender;
use crate::lab::stream::TcpProbe;
use crate::lab::timing::{read_cpu, stalled_ms, Heartbeat, RouteWatch, Stall};
use crate::lab::{wait, Error, Result};

impl Run<'_> {
    /// lab::pinger NAME HOST SRC DST [MS]: continuous ping, MS ms apart
    /// (20). A move timed by the first reply is late by up to MS (the
    /// wait for the next echo after the path works): a lab that times a
    /// move gives a small MS, so the figure is the path's, not ping's.
    /// Under 10 ms the lab sends the echoes itself ([`EchoSender`]): ping
    /// sends every 10 ms at best while its echoes go unanswered, which is
    /// the outage a move is timed across (on the host: see `lab_sends`).
    pub(super) fn pinger(&mut self, a: &Args) -> Result<()> {
        let (name, host, src, dst) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        let ms: u32 = match a.words.get(5) {
            None => 20,
            Some(w) => w
                .parse()
                .ok()
                .filter(|ms| *ms > 0)
                .ok_or_else(|| Error::Other(format!("`{w}` is not a ping interval in ms")))?,
        };
        let lab_sends = lab_sends(ms, wait::scale());
        let pinger = self.echoes(host, src, dst, name, ms, lab_sends, false)?;
        self.pingers.insert(name.to_string(), pinger);
        self.emit(
            "pinger_started",
            host,
            serde_json::json!({"name": name, "src": src, "dst": dst, "interval_ms": ms,
                "sender": if lab_sends { "lab" } else { "ping" }}),
        );
        Ok(())
    }

    /// lab::wait-reply NAME AFTER EVENT [SECS]: the first reply to
    /// an echo sent after event AFTER.
    pub(super) fn wait_reply(&mut self, a: &Args) -> Result<()> {
        let (name, after, event) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let t0 = self.path_time(after)?;
        let p = self
            .pingers
            .get(name)
            .ok_or_else(|| Error::Other(format!("no pinger `{name}`")))?;
        let what = format!("a reply on pinger `{name}` after `{after}`");
        let ((t, rtt), _) = wait::until(a.secs(4, 20)?, &what, || {
            p.replies().into_iter().find(|(t, rtt)| t - rtt / 1e3 >= t0)
        })?;
        let lost = p.replies().iter().filter(|(rt, _)| *rt >= t0).count();
        self.emit_at(
            event,
            "",
            serde_json::json!({"pinger": name, "rtt_ms": rtt, "replies_since": lost}),
            t,
        );
        Ok(())
    }

    /// lab::ipip-send HOST OUTER_SRC OUTER_DST INNER_SRC INNER_DST COUNT:
    /// COUNT IP-in-IP datagrams from HOST's raw socket, each carrying a UDP
    /// datagram INNER_SRC -> INNER_DST port 9 (`src/lab/spoof.rs`): a
    /// reverse-tunnelled datagram with a forged inner source.
    pub(super) fn ipip_send(&mut self, a: &Args) -> Result<()> {
        self.spoof_send(a, "ipip_sent", crate::lab::spoof::udp_in_ipip)
    }

    /// lab::ipv6-send HOST OUTER_SRC OUTER_DST INNER_SRC INNER_DST COUNT:
    /// `ipip-send` with an IPv6 datagram inside IPv4 protocol 41 (RFC
    /// 5454): an inner IPv6 source outside the tunnel's prefix.
    pub(super) fn ipv6_send(&mut self, a: &Args) -> Result<()> {
        self.spoof_send(a, "ipv6_sent", crate::lab::spoof::udp6_in_ipv4)
    }

    /// COUNT datagrams that `build` makes of the addresses in `a`, sent
    /// from a raw socket in HOST; event `event`.
    fn spoof_send<A>(&mut self, a: &Args, event: &str, build: SpoofBuilder<A>) -> Result<()>
    where
        A: std::str::FromStr + serde::Serialize + Copy,
    {
        let host = a.arg(1)?;
        fn addr<T: std::str::FromStr>(a: &Args, i: usize) -> Result<T> {
            let w = a.arg(i)?;
            w.parse()
                .map_err(|_| Error::Other(format!("`{w}` is not an address of that family")))
        }
        let (osrc, odst) = (addr(a, 2)?, addr(a, 3)?);
        let (isrc, idst): (A, A) = (addr(a, 4)?, addr(a, 5)?);
        let count: u16 = a
            .arg(6)?
            .parse()
            .map_err(|_| Error::Other(format!("`{}`: expected a count", a.words[6])))?;
        let datagrams = (1..=count)
            .map(|i| build(osrc, odst, isrc, idst, i, b"spoofed-inner-source"))
            .collect::<Result<Vec<_>>>()?;
        crate::lab::spoof::send_raw(self.lab.host(host)?, datagrams)?;
        self.emit(
            event,
            host,
            serde_json::json!({"outer_src": osrc, "outer_dst": odst, "inner_src": isrc, "inner_dst": idst, "count": count}),
        );
        Ok(())
    }

    /// lab::pmtu HOST DST VAR FIGURE: path MTU discovery with full-size echoes
    /// that may not be fragmented (RFC 1191): from 1500 bytes down to
    /// what each "fragmentation needed" (or the MTU the kernel learnt from
    /// one) names, until an echo comes back. The path MTU goes into
    /// `${VAR}` and FIGURE; no answer and no MTU named fails.
    pub(super) fn pmtu(&mut self, a: &Args) -> Result<()> {
        let (host, dst, var, fig) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        let ns = self.lab.host(host)?;
        let mut size: u32 = 1500;
        let mut tried = Vec::new();
        // Each hop that is too small names its MTU once; a few rounds
        // (the tunnel, then ESP inside it) and one retry for a lost echo.
        for _ in 0..6 {
            let payload = (size - 28).to_string();
            let out = ns
                .command("ping")
                .args(["-n", "-M", "do", "-c", "1", "-W", "3", "-s", &payload, dst])
                .output()
                .map_err(|source| Error::Spawn {
                    cmd: "ping".into(),
                    source,
                })?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            tried.push(size);
            if out.status.success() {
                self.vars.insert(var.to_string(), size.to_string());
                self.figures.insert(fig.to_string(), f64::from(size));
                self.emit(
                    "pmtu",
                    host,
                    serde_json::json!({"dst": dst, "path_mtu": size, "tried": tried}),
                );
                return Ok(());
            }
            if let Some(mtu) = named_mtu(&text).filter(|m| *m < size && *m >= 68) {
                size = mtu;
            }
        }
        Err(Error::Other(format!(
            "no path MTU to {dst} from {host}: echoes of {tried:?} bytes with DF got no answer"
        )))
    }

    /// lab::rtt HOST DST FIGURE [COUNT]: average ping RTT, ms.
    pub(super) fn rtt(&mut self, a: &Args) -> Result<()> {
        let (host, dst, fig) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let count = a.words.get(4).copied().unwrap_or("5");
        // `min`: the least of COUNT (where the host stalls at times, as
        // the kernel tier's guest, a stall inside one echo's flight is
        // not the path's); the average otherwise.
        let field = usize::from(a.words.get(5) != Some(&"min"));
        let ns = self.lab.host(host)?;
        let out = ns.exec("ping", &["-n", "-q", "-c", count, "-i", "0.05", dst])?;
        let avg = out
            .lines()
            .find(|l| l.starts_with("rtt"))
            .and_then(|l| {
                // rtt min/avg/max/mdev = 20.1/20.5/21.0/0.3 ms
                l.split('=')
                    .nth(1)?
                    .split('/')
                    .nth(field)?
                    .trim()
                    .parse()
                    .ok()
            })
            .ok_or_else(|| Error::Other(format!("no RTT in ping output: {out}")))?;
        self.figures.insert(fig.to_string(), avg);
        self.emit(
            "rtt",
            host,
            serde_json::json!({"dst": dst, "figure": fig, "avg_ms": avg}),
        );
        Ok(())
    }

    /// lab::tcp-stream NAME CLIENT_HOST SERVER_HOST ADDR:PORT: a
    /// checked echo stream from CLIENT_HOST to a server on ADDR.
    pub(super) fn tcp_stream(&mut self, a: &Args) -> Result<()> {
        let (name, client, server, addr) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?);
        // IPv4 `ADDR:PORT` or IPv6 `[ADDR]:PORT` (DSMIPv4's `dual-stack`).
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|_| Error::Other(format!("`{addr}`: expected ADDR:PORT or [ADDR]:PORT")))?;
        let probe = TcpProbe::start(
            self.lab.host(server)?.name(),
            addr,
            self.lab.host(client)?.name(),
        )?;
        let st = probe.state();
        self.streams.insert(name.to_string(), probe);
        self.emit(
            "tcp_connected",
            client,
            serde_json::json!({
                "stream": name,
                "client": st.client.map(|c| c.to_string()),
                "server": addr.to_string(),
            }),
        );
        Ok(())
    }

    /// lab::wait-stream NAME AFTER EVENT [SECS]: the stream's echo
    /// carries bytes written after event AFTER (they crossed the
    /// path as it is since AFTER).
    pub(super) fn wait_stream(&mut self, a: &Args) -> Result<()> {
        let (name, after, event) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let t0 = self.path_time(after)?;
        let probe = self
            .streams
            .get(name)
            .ok_or_else(|| Error::Other(format!("no stream `{name}`")))?;
        let what = format!("stream `{name}` echoing bytes written after `{after}`");
        let r = wait::until(a.secs(4, 20)?, &what, || {
            let st = probe.state();
            if st.error.is_some() {
                return Some(Err(st.describe()));
            }
            // A byte written after t0: the first write's end.
            let n = st.sent_by(t0);
            st.echoed_past(n).map(|t| Ok((t, st)))
        });
        let (t, st) = match r? {
            (Ok(v), _) => v,
            (Err(why), _) => return Err(Error::Other(format!("stream `{name}` broke: {why}"))),
        };
        self.emit_at(
            event,
            "",
            serde_json::json!({
                "stream": name,
                "connections": st.accepted,
                "client": st.client.map(|c| c.to_string()),
                // The source the server saw (the home address for a
                // stream the MN opened).
                "peer": st.server_peer.map(|c| c.to_string()),
                "bytes_sent": st.bytes_sent(),
                "bytes_echoed": st.bytes_echoed(),
            }),
            t,
        );
        Ok(())
    }

    /// lab::stream-pause NAME / lab::stream-resume NAME: the client of
    /// stream NAME stops writing (an idle application: nothing crosses
    /// the path but what keeps it up) or starts again.
    pub(super) fn stream_pause(&mut self, a: &Args, paused: bool) -> Result<()> {
        let name = a.arg(1)?;
        self.streams
            .get(name)
            .ok_or_else(|| Error::Other(format!("no stream `{name}`")))?
            .pause(paused);
        let event = if paused {
            "stream_paused"
        } else {
            "stream_resumed_writing"
        };
        self.emit(event, "", serde_json::json!({ "stream": name }));
        Ok(())
    }

    /// lab::stream-gap NAME FIGURE: the stream's longest stall, ms.
    pub(super) fn stream_gap(&mut self, a: &Args) -> Result<()> {
        let (name, fig) = (a.arg(1)?, a.arg(2)?);
        let st = self
            .streams
            .get(name)
            .ok_or_else(|| Error::Other(format!("no stream `{name}`")))?
            .state();
        self.figures
            .insert(fig.to_string(), (st.longest_gap_ms() * 10.0).round() / 10.0);
        Ok(())
    }

    /// lab::timed-move NET HOST SRC DST NAME [SECS [HOST2 SRC2 DST2 NAME2]]:
    /// a move timed for the kernel tier (`mip4-lab bench --handover N
    /// --vm`). Real-time echoes from HOST (SRC -> DST, [`timed_echo_ms`]
    /// apart: 2 ms, 10 on a one-vCPU tier guest) first
    /// shows the path working; then the move to NET (event
    /// `address_change`). The figure NAME is from the address change
    /// itself, the MN's new default route as its rtnetlink told a
    /// real-time thread in its namespace, to the first reply to an echo
    /// sent after it; NAME_stall_ms is how much of that the guest stood
    /// still (src/lab/timing.rs); event `timed_move`. With the second
    /// ping (HOST2: SRC2 -> DST2, e.g. the other end's echoes over the
    /// same path), figure NAME2 (and NAME2_stall_ms) times the same move
    /// by its first reply, from the same route: both directions of one
    /// move, not two moves.
    pub(super) fn timed_move(&mut self, a: &Args) -> Result<()> {
        let (net, host, src, dst, name) = (a.arg(1)?, a.arg(2)?, a.arg(3)?, a.arg(4)?, a.arg(5)?);
        let secs = a.secs(6, 20)?;
        let beside = match a.words.get(7) {
            None => None,
            Some(_) => Some((a.arg(7)?, a.arg(8)?, a.arg(9)?, a.arg(10)?)),
        };
        let mn = self.lab.spec.access(net)?.host.clone();
        if self.heartbeat.is_none() {
            self.heartbeat = Some(Heartbeat::start());
        }
        if self.route_watch.is_none() {
            self.route_watch = Some(RouteWatch::start(self.lab.host(&mn)?)?);
        }
        // Real-time echoes, the lab's own under ping's floor.
        let echo_ms = timed_echo_ms(wait::scale(), crate::lab::machines::cpus() > 1);
        let lab_sends_timed = echo_ms < PING_FLOOR_MS;
        let pinger = self.echoes(host, src, dst, name, echo_ms, lab_sends_timed, true)?;
        let other = match beside {
            Some((h, s, d, n)) => {
                Some((n, self.echoes(h, s, d, n, echo_ms, lab_sends_timed, true)?))
            }
            None => None,
        };
        let before = super::now();
        for p in std::iter::once(&pinger).chain(other.as_ref().map(|(_, p)| p)) {
            wait::until(secs, "a reply before the move", || {
                p.replies().into_iter().find(|&(t, _)| t >= before)
            })?;
        }
        let pids = self.cpu_threads();
        if let Some(w) = self.route_watch.as_ref() {
            w.read_cpu_of(pids.clone());
        }
        let cpu_before = read_cpu(&pids);
        self.attach(&Args::new(&format!("move {net}"), a.file))?;
        let command_t = self.event_time("address_change")?;
        let watch = self.route_watch.as_ref();
        let (route, _) = wait::until(
            std::time::Duration::from_secs(5),
            "the new default route on the MN's rtnetlink",
            || watch?.added_since(command_t),
        )?;
        let t0 = route.t;
        let first_reply = |p: &Pinger, name: &str| {
            let what = format!("a reply on `{name}` to an echo sent after the move");
            wait::until(secs, &what, || {
                p.replies()
                    .into_iter()
                    .find(|&(t, rtt)| t - rtt / 1e3 >= t0)
            })
            .map(|(r, _)| r)
        };
        let (t1, rtt) = first_reply(&pinger, name)?;
        let cpu_at_reply = read_cpu(&pids);
        let beside_reply = match &other {
            Some((n, p)) => Some((*n, first_reply(p, n)?)),
            None => None,
        };
        std::thread::sleep(SETTLE);
        let cpu_settled = read_cpu(&pids);
        let (cpu, faults) = self.cpu_figures(name, &route.cpu, &cpu_at_reply, "");
        let (settled, settled_faults) =
            self.cpu_figures(name, &cpu_before, &cpu_settled, "_settled");
        let stalls: Vec<Stall> = self
            .heartbeat
            .as_ref()
            .map(Heartbeat::stalls)
            .unwrap_or_default();
        let mut timed = |name: &str, t1: f64| {
            let stall_ms = stalled_ms(&stalls, t0, t1);
            let ms = ((t1 - t0) * 1e4).round() / 10.0;
            self.figures.insert(name.to_string(), ms);
            self.figures.insert(format!("{name}_stall_ms"), stall_ms);
            (ms, stall_ms)
        };
        let (ms, stall_ms) = timed(name, t1);
        let beside = beside_reply.map(|(n, (t, rtt))| {
            let (ms, stall_ms) = timed(n, t);
            serde_json::json!({"name": n, "ms": ms, "stall_ms": stall_ms, "reply_rtt_ms": rtt})
        });
        let realtime = self.heartbeat.as_ref().is_some_and(|h| h.realtime)
            && self.route_watch.as_ref().is_some_and(|w| w.realtime);
        self.emit_at(
            "timed_move",
            host,
            serde_json::json!({"name": name, "to": net, "ms": ms, "stall_ms": stall_ms,
                "command_to_route_ms": ((t0 - command_t) * 1e4).round() / 10.0,
                "reply_rtt_ms": rtt, "realtime": realtime, "echo_ms": echo_ms,
                "stalls": stalls.iter().filter(|s| s.to > t0 && s.from < t1).count(),
                "cpu_ms": cpu, "settled_cpu_ms": settled,
                "faults": faults, "settled_faults": settled_faults,
                "cpu_read_ms": (route.read_ms * 100.0).round() / 100.0,
                "beside": beside}),
            t1,
        );
        Ok(())
    }

    /// Echoes from HOST (SRC -> DST) `ms` apart, replies to
    /// `ping-NAME.txt`: sent by the lab ([`EchoSender`]) or by iputils
    /// ping; with `realtime`, at SCHED_FIFO 50 either way.
    #[allow(clippy::too_many_arguments)]
    fn echoes(
        &self,
        host: &str,
        src: &str,
        dst: &str,
        name: &str,
        ms: u32,
        lab_sends: bool,
        realtime: bool,
    ) -> Result<Pinger> {
        let ns = self.lab.host(host)?;
        let out = self.work.path().join(format!("ping-{name}.txt"));
        let source: Box<dyn Send> = if lab_sends {
            let addr = |w: &str| -> Result<std::net::Ipv4Addr> {
                w.parse()
                    .map_err(|_| Error::Other(format!("`{w}` is not an IPv4 address")))
            };
            let every = std::time::Duration::from_millis(u64::from(ms));
            let (src, dst) = (addr(src)?, addr(dst)?);
            Box::new(EchoSender::start(ns, src, dst, every, &out, realtime)?)
        } else {
            let interval = format!("{:.3}", f64::from(ms) / 1e3);
            let ping = [
                "ping", "-D", "-n", "-i", &interval, "-W", "1", "-I", src, dst,
            ];
            let mut cmd = ns.command(if realtime { "chrt" } else { "ping" });
            match realtime {
                true => cmd.args(["-f", "50"]).args(ping),
                false => cmd.args(&ping[1..]),
            };
            Box::new(ns.spawn(&format!("ping-{name}"), cmd, &out)?)
        };
        Ok(Pinger {
            _source: source,
            out,
        })
    }

    /// The processes whose share of a move `lab::timed-move` reports:
    /// each host's charon (`charon_HOST`) and mip4d (`mip4d`), their
    /// threads listed now.
    fn cpu_threads(&self) -> Vec<(String, cpu::Threads)> {
        let charons = self
            .charons
            .iter()
            .map(|(host, c)| (format!("charon_{host}"), c.pid()));
        let daemons = self
            .procs
            .iter()
            .filter(|(key, _)| key.ends_with("/mip4d"))
            .map(|(_, p)| ("mip4d".to_string(), p.pid()));
        charons
            .chain(daemons)
            .filter_map(|(label, pid)| Some((label, cpu::threads(pid)?)))
            .collect()
    }

    /// Figures `NAME{suffix}_cpu_LABEL_ms` of what each process spent from
    /// `before` to `after`, charon's less its plugin threads, which are
    /// `NAME{suffix}_cpu_plugin_ms` (summed over the charons); beside
    /// them `NAME{suffix}_minflt_LABEL` and `NAME{suffix}_majflt_LABEL`,
    /// each process's page faults (all its threads, charon's plugin
    /// included), and `NAME{suffix}_runs_LABEL`, how many times its threads
    /// were put on the CPU. The same as two JSON objects for the event:
    /// `{LABEL: ms}` and `{LABEL: {"minflt": N, "majflt": N, "runs": N}}`.
    fn cpu_figures(
        &mut self,
        name: &str,
        before: &[(String, cpu::Reading)],
        after: &[(String, cpu::Reading)],
        suffix: &str,
    ) -> (serde_json::Value, serde_json::Value) {
        let mut out = serde_json::Map::new();
        let mut faults = serde_json::Map::new();
        let mut plugin = None;
        for (label, b) in before {
            let Some((_, a)) = after.iter().find(|(l, _)| l == label) else {
                continue;
            };
            let (total, in_plugin) = a.since(b);
            let own = ((total - in_plugin) * 100.0).round() / 100.0;
            if label.starts_with("charon_") {
                *plugin.get_or_insert(0.0) += in_plugin;
            }
            out.insert(label.clone(), own.into());
            self.figures
                .insert(format!("{name}{suffix}_cpu_{label}_ms"), own);
            let (minflt, majflt, runs) = a.faults_since(b);
            faults.insert(
                label.clone(),
                serde_json::json!({"minflt": minflt, "majflt": majflt, "runs": runs}),
            );
            for (kind, n) in [("minflt", minflt), ("majflt", majflt), ("runs", runs)] {
                self.figures
                    .insert(format!("{name}{suffix}_{kind}_{label}"), n as f64);
            }
        }
        if let Some(p) = plugin {
            let p = (p * 100.0_f64).round() / 100.0;
            out.insert("plugin".into(), p.into());
            self.figures
                .insert(format!("{name}{suffix}_cpu_plugin_ms"), p);
        }
        (out.into(), faults.into())
    }

    /// lab::ping-lost NAME AROUND FIGURE: echoes of pinger NAME
    /// lost around event AROUND (see `lost_around`).
    pub(super) fn ping_lost(&mut self, a: &Args) -> Result<()> {
        let (name, around, fig) = (a.arg(1)?, a.arg(2)?, a.arg(3)?);
        let t0 = self.path_time(around)?;
        let p = self
            .pingers
            .get(name)
            .ok_or_else(|| Error::Other(format!("no pinger `{name}`")))?;
        let lost = lost_around(&p.replies_seq(), t0).ok_or_else(|| {
            Error::Other(format!(
                "pinger `{name}`: no replies on both sides of `{around}`"
            ))
        })?;
        self.figures.insert(fig.to_string(), lost as f64);
        Ok(())
    }
}

/// How long after a timed move's reply its settled CPU figures are read:
/// what mip4d leaves until after the data flows (the table-435 rewrite,
/// the path MTU's lookups) is done by then in the kernel tier's guest.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(500);

/// iputils ping's MININTERVAL: with echoes unanswered it sends no
/// faster, whatever `-i` says (ping_common.c, main_loop).
const PING_FLOOR_MS: u32 = 10;

/// Whether the lab sends a pinger's echoes itself: under ping's floor,
/// on the host. The kernel tier's guest (its clock scaled, one emulated
/// CPU) keeps ping, as many echoes as before: five times as many would
/// cost it a share of its CPU, and its handover is timed by
/// `lab::timed-move`, 10 ms apart.
fn lab_sends(ms: u32, clock_scale: f64) -> bool {
    ms < PING_FLOOR_MS && clock_scale <= 1.0
}

/// How far apart a timed move's echoes go, ms. A move is timed by the
/// first reply after its outage, so it is late by up to the interval
/// (half of it on average, for stock and mip4 alike): 2 ms, sent by the
/// lab (ping cannot go under its floor through an outage), on the host
/// and on a tier guest with more than one vCPU (pinned as two machines,
/// the sender runs on its host's: src/lab/machines.rs). A one-vCPU
/// guest keeps ping 10 ms apart: five times as many echoes would take a
/// share of the one CPU every lab host shares.
fn timed_echo_ms(clock_scale: f64, more_cpus: bool) -> u32 {
    if clock_scale <= 1.0 || more_cpus {
        2
    } else {
        PING_FLOOR_MS
    }
}

/// A background pinger whose replies are read from its output file
/// (`ping -D`'s lines, or the lab's own in the same form).
pub(super) struct Pinger {
    out: PathBuf,
    /// What sends the echoes (a `ping` process or an [`EchoSender`]),
    /// stopped when dropped.
    _source: Box<dyn Send>,
}

impl Pinger {
    /// Replies as (unix time received, rtt ms).
    fn replies(&self) -> Vec<(f64, f64)> {
        self.replies_seq()
            .into_iter()
            .map(|(t, rtt, _)| (t, rtt))
            .collect()
    }

    /// Replies as (unix time received, rtt ms, icmp_seq).
    fn replies_seq(&self) -> Vec<(f64, f64, u64)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        parse_ping(&text)
    }
}

/// `ping -D` reply lines as (unix time received, rtt ms, icmp_seq).
/// The MTU in ping's "Frag needed and DF set (mtu = N)" or "local
/// error: message too long, mtu=N".
fn named_mtu(text: &str) -> Option<u32> {
    let at = text.find("mtu")?;
    let rest = text[at + 3..].trim_start_matches([' ', '=']);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn parse_ping(text: &str) -> Vec<(f64, f64, u64)> {
    let field = |l: &str, key: &str| -> Option<String> {
        Some(l.split(key).nth(1)?.split_whitespace().next()?.to_string())
    };
    text.lines()
        .filter_map(|l| {
            // [1700000000.123456] 64 bytes from 10.1.2.2: icmp_seq=5 ttl=62 time=21.3 ms
            let t: f64 = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
            let rtt: f64 = field(l, "time=")?.parse().ok()?;
            let seq: u64 = field(l, "icmp_seq=")?.parse().ok()?;
            Some((t, rtt, seq))
        })
        .collect()
}

/// Echoes lost around unix time `t0`: the sequence numbers missing
/// between the last reply to an echo sent before `t0` and the first reply
/// to one sent at or after it (echoes in flight when the path broke count).
fn lost_around(replies: &[(f64, f64, u64)], t0: f64) -> Option<u64> {
    let sent = |r: &(f64, f64, u64)| r.0 - r.1 / 1e3;
    let before = replies.iter().filter(|r| sent(r) < t0).map(|r| r.2).max()?;
    let after = replies
        .iter()
        .filter(|r| sent(r) >= t0)
        .map(|r| r.2)
        .min()?;
    let replied: std::collections::BTreeSet<u64> = replies.iter().map(|r| r.2).collect();
    Some((before + 1..after).filter(|n| !replied.contains(n)).count() as u64)
}

/// Builds one spoofed datagram: outer source and destination, inner
/// source and destination, identification, payload.
type SpoofBuilder<A> =
    fn(std::net::Ipv4Addr, std::net::Ipv4Addr, A, A, u16, &[u8]) -> Result<Vec<u8>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mtu_is_read_from_both_ping_messages() {
        assert_eq!(
            named_mtu("From 10.1.1.2 icmp_seq=1 Frag needed and DF set (mtu = 1480)"),
            Some(1480)
        );
        assert_eq!(
            named_mtu("ping: local error: message too long, mtu=1418"),
            Some(1418)
        );
        assert_eq!(named_mtu("1 packets transmitted, 0 received"), None);
    }

    #[test]
    fn ping_loss_counts_the_gap_around_the_move() {
        let text = "\
[100.000] 64 bytes from 10.1.100.5: icmp_seq=1 ttl=62 time=20.0 ms
[100.020] 64 bytes from 10.1.100.5: icmp_seq=2 ttl=62 time=20.0 ms
[100.600] 64 bytes from 10.1.100.5: icmp_seq=31 ttl=62 time=20.0 ms
[100.620] 64 bytes from 10.1.100.5: icmp_seq=32 ttl=62 time=20.0 ms
";
        let r = parse_ping(text);
        assert_eq!(r.len(), 4);
        assert_eq!(r[2], (100.6, 20.0, 31));
        // The path broke at 100.01: echoes 3..=30 never came back.
        assert_eq!(lost_around(&r, 100.01), Some(28));
        // No reply after the event: no figure rather than a wrong one.
        assert_eq!(lost_around(&r, 101.0), None);
    }

    #[test]
    fn the_lab_sends_echoes_under_ping_s_floor_on_the_host_only() {
        assert!(lab_sends(2, 1.0));
        assert!(!lab_sends(10, 1.0));
        assert!(!lab_sends(20, 1.0));
        assert!(!lab_sends(2, 4.0));
    }

    #[test]
    fn a_timed_move_s_echoes_go_2_ms_apart_but_on_a_one_cpu_guest() {
        // The host lab; a tier guest with two vCPUs.
        assert_eq!(timed_echo_ms(1.0, false), 2);
        assert_eq!(timed_echo_ms(4.0, true), 2);
        // The tier's one-vCPU guest keeps ping's 10 ms.
        assert_eq!(timed_echo_ms(4.0, false), 10);
    }

    #[test]
    fn the_lab_s_own_echo_replies_read_as_ping_s() {
        let to = "10.1.100.5".parse().unwrap();
        let line = crate::lab::echo::reply_line(100.0215, 64, to, 70_000, 62, 21.25);
        assert_eq!(
            line,
            "[100.021500] 64 bytes from 10.1.100.5: icmp_seq=70000 ttl=62 time=21.250 ms\n"
        );
        assert_eq!(parse_ping(&line), vec![(100.0215, 21.25, 70_000)]);
    }
}
