//! Trusted-network detection (RFC 5266 §3.4, RFC 5265 §3.2-§3.3): on
//! every change of attachment the mobile node registers with the internal
//! home agent directly, without the VPN, from the new physical address as
//! co-located care-of address, and believes it is inside only when an
//! authenticated reply carries the Trusted Networks Configured extension.
//!
//! The probe is a real registration, run by a sibling of the node's
//! registration client ([`Client::sibling`]) so that a mode 'mc' binding
//! through the VPN keeps running (and renewing) beside it; when the probe
//! says "trusted" its binding *is* the mode 'c' registration and the node
//! adopts it ([`Client::adopt`]): nothing is registered twice.
//!
//! Rules kept here:
//! - trusted only after an accepted reply that matches the probe's
//!   Identification and home address, verifies under the MN-HA
//!   association, and has TNC *before the end of the MN-HA extension*
//!   (RFC 5266 §3.4: "MUST check that the Registration Reply is
//!   integrity protected"; RFC 5265 §3.2.3, §4.1: "MUST NOT disable IPsec
//!   protection unless the registration reply from the i-HA contains a
//!   Trusted Networks Configured extension");
//! - an accepted reply without TNC, a denial, or silence after the
//!   configured retransmissions (RFC 5266 §3.4: "configurable on the
//!   mobile node") means untrusted;
//! - an accepted reply without TNC left a binding at the i-HA: the
//!   outcome hands its client over, for the node to replace or
//!   deregister that binding (`node::stray`);
//! - what does not authenticate changes nothing: it is dropped by the
//!   client and counted here as forged (`forged_replies`);
//! - one probe at a time: a newer attachment cancels the older probe,
//!   whose late replies then count as late in the client;
//! - a verdict holds for one attachment (interface and address) until its
//!   connection status changes (RFC 5265 §3.2.1, §3.2.3).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::registration::{Binding, Client, ClientEvent, Retransmit, Stats, Transmit};
use crate::replay;
use crate::wire::ReplyPacket;

/// What to do with the VPN once the node knows it is inside (RFC 5266
/// §3.4.1 step 2: the MN "MAY tear down the VPN tunnel").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VpnWhenInside {
    /// Keep the IKE_SA (MOBIKE keeps it alive if the gateway is
    /// reachable from inside, RFC 5266 §3.4.2), so leaving again costs no
    /// new IKE exchange; it carries no data while inside.
    #[default]
    Keep,
    /// Ask charon (through the plugin) to terminate it.
    Terminate,
}

/// Detection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectConfig {
    /// Timeout and retransmissions of the probe (RFC 5266 §3.4).
    pub retransmit: Retransmit,
    /// RFC 5265 §3.2.4 T_MONITOR: while inside, no user data more than
    /// this long after the last successful registration; re-register
    /// every `t_monitor - monitor_grace`. `None` turns monitoring off
    /// (the lifetime-based renewals stay).
    pub t_monitor: Option<Duration>,
    /// The grace period N of §3.2.4.
    pub monitor_grace: Duration,
    pub vpn_when_inside: VpnWhenInside,
    /// The VPN connection to initiate when the probe fails and no VPN is
    /// up (RFC 5266 §3.4.2 step 1), and to terminate inside if asked.
    pub vpn_connection: Option<String>,
}

impl Default for DetectConfig {
    /// RFC 5265 §3.2.4's default T_MONITOR of 60 s with 10 s of grace;
    /// the probe of [`Retransmit::probe`] (1 s, 2 s, 2 s: untrusted
    /// after 5 s of silence).
    fn default() -> Self {
        DetectConfig {
            retransmit: Retransmit::probe(),
            t_monitor: Some(Duration::from_secs(60)),
            monitor_grace: Duration::from_secs(10),
            vpn_when_inside: VpnWhenInside::Keep,
            vpn_connection: None,
        }
    }
}

/// The outcome for one attachment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Trusted,
    Untrusted,
}

/// Why a verdict was reached (the `cause` of the `trust_verdict` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    /// Accepted, authenticated, TNC inside the authenticated part.
    TncReply,
    /// Accepted and authenticated, but no TNC in the authenticated part:
    /// the i-HA does not vouch for the source network (RFC 5265 §3.6.1).
    /// The home agent now has a binding for this address.
    AcceptedWithoutTnc,
    /// An authenticated denial.
    Denied { code: u8 },
    /// No acceptable reply after every transmission.
    NoReply { attempts: u32 },
    /// A renewal while inside came back without TNC (RFC 5265 §3.2.4).
    RenewalWithoutTnc,
    /// No successful re-registration within T_MONITOR (RFC 5265 §3.2.4).
    MonitorExpired,
    /// The network is on the configured list of networks never probed
    /// (`[multihoming] never_probe`): untrusted without a probe, which
    /// would reveal the home agent, the NAI and the home address in the
    /// clear (RFC 5266 §5).
    NeverProbe,
    /// The verdict cache holds an untrusted verdict for this network
    /// (gateway MAC and prefix) that has not expired: not probed again.
    Cached,
    /// The verdict cache holds an untrusted verdict for this prefix and
    /// the gateway's MAC stayed unknown: untrusted without a probe rather
    /// than a probe in the clear on what may be that network (RFC 5266 §5).
    CachedPrefix,
    /// A network is configured never to be probed by its gateway's MAC
    /// (`[multihoming] never_probe`) and this one's gateway MAC stayed
    /// unknown: it may be that network, so untrusted without a probe
    /// until the MAC is learnt (RFC 5266 §5).
    NeverProbeUnresolved,
}

impl Cause {
    pub fn verdict(self) -> Verdict {
        match self {
            Cause::TncReply => Verdict::Trusted,
            _ => Verdict::Untrusted,
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::TncReply => f.write_str("authenticated reply from the i-HA with the Trusted Networks Configured extension (RFC 5266 §3.4, RFC 5265 §4.1)"),
            Cause::AcceptedWithoutTnc => f.write_str("the i-HA accepted but its authenticated reply has no TNC: not proof of a trusted network (RFC 5265 §4.1)"),
            Cause::Denied { code } => write!(f, "the i-HA denied the probe (code {code})"),
            Cause::NoReply { attempts } => write!(f, "no authenticated reply from the i-HA after {attempts} transmissions (RFC 5266 §3.4)"),
            Cause::RenewalWithoutTnc => f.write_str("a renewal was accepted without TNC (RFC 5265 §3.2.3)"),
            Cause::MonitorExpired => f.write_str("no successful re-registration within T_MONITOR (RFC 5265 §3.2.4)"),
            Cause::NeverProbe => f.write_str("a network configured never to be probed: untrusted without a probe, which would reveal the home agent, the NAI and the home address in the clear (RFC 5266 §5)"),
            Cause::Cached => f.write_str("the verdict cache holds an untrusted verdict for this gateway and prefix: not probed in the clear again (RFC 5266 §5)"),
            Cause::CachedPrefix => f.write_str("the verdict cache holds an untrusted verdict for this prefix and the gateway's MAC address stayed unknown: not probed in the clear (RFC 5266 §5)"),
            Cause::NeverProbeUnresolved => f.write_str("a network is configured never to be probed by its gateway's MAC address and this gateway's stayed unknown: not probed in the clear until it is known (RFC 5266 §5)"),
        }
    }
}

/// The low-order 32 bits of a reply's Identification (the MN's half,
/// RFC 5944 §3.6.2.1), if the datagram is a reply at all.
pub fn reply_mn_half(payload: &[u8]) -> Option<u32> {
    ReplyPacket::new_checked(payload)
        .ok()
        .map(|p| replay::mn_half(p.identification()))
}

/// A probe datagram: to be sent from a socket that bypasses the VPN
/// (XFRM socket policy, bound to `ifname` and to `transmit.src`, see
/// [`crate::netlink::bypass::probe_socket`]). The transmit says its
/// Identification and whether it is a retransmission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTransmit {
    pub ifname: String,
    pub transmit: Transmit,
    /// The interface to bind when `ifname` no longer binds (renamed,
    /// gone): the one charon reports for the source address. The node
    /// fills it in from its view of the VPN.
    pub fallback_ifname: Option<String>,
}

/// What a finished probe says.
#[derive(Debug)]
pub struct Outcome {
    pub ifname: String,
    pub address: Ipv4Addr,
    pub cause: Cause,
    pub started: Instant,
    /// Unauthenticated or mismatching replies the probe dropped.
    pub forged: u64,
    /// For a trusted verdict: the client holding the accepted binding,
    /// to adopt.
    pub accepted: Option<(Client, Binding)>,
    /// Accepted without TNC (an i-HA that ignores RFC 5265 §4.3): the
    /// client whose registration the i-HA took. Its binding names the
    /// untrusted address, where home traffic would flow in the clear; the
    /// node replaces it or deregisters it with this client.
    pub stray: Option<Client>,
}

/// Detection counters (`mip4ctl status`: `detection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DetectStats {
    pub probes_started: u64,
    pub probe_requests_sent: u64,
    pub probes_cancelled: u64,
    pub trusted: u64,
    pub untrusted: u64,
    pub accepted_without_tnc: u64,
    pub denied: u64,
    pub no_reply: u64,
    /// Replies to a probe that did not authenticate, did not parse, or
    /// named another home address: never believed.
    pub forged_replies: u64,
    /// Verdicts withdrawn by registration-based monitoring (§3.2.4).
    pub monitor_failures: u64,
    /// Untrusted verdicts without a probe: a network never probed, or an
    /// untrusted verdict from the cache.
    pub never_probed: u64,
    pub cached_untrusted: u64,
}

struct Probe {
    ifname: String,
    address: Ipv4Addr,
    started: Instant,
    client: Client,
    /// Identifications (MN half) this probe sent.
    ids: VecDeque<u32>,
    forged: u64,
}

fn dropped(s: &Stats) -> u64 {
    s.dropped_malformed
        + s.dropped_unauthenticated
        + s.dropped_wrong_home_address
        + s.dropped_unmatched
}

/// One verdict per attachment.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub ifname: String,
    pub address: Ipv4Addr,
    pub verdict: Verdict,
}

/// The detector: at most one probe, and the verdicts so far. Sans-IO
/// like the client; the node drives it.
pub struct Detector {
    cfg: DetectConfig,
    probe: Option<Probe>,
    verdicts: Vec<Attachment>,
    transmits: VecDeque<ProbeTransmit>,
    stats: DetectStats,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("probing", &self.probing())
            .field("verdicts", &self.verdicts)
            .finish_non_exhaustive()
    }
}

impl Detector {
    pub fn new(cfg: DetectConfig) -> Self {
        Detector {
            cfg,
            probe: None,
            verdicts: Vec::new(),
            transmits: VecDeque::new(),
            stats: DetectStats::default(),
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &DetectStats {
        &self.stats
    }

    pub fn verdicts(&self) -> &[Attachment] {
        &self.verdicts
    }

    /// The attachment being probed.
    pub fn probing(&self) -> Option<(&str, Ipv4Addr)> {
        self.probe.as_ref().map(|p| (p.ifname.as_str(), p.address))
    }

    pub fn verdict(&self, address: Ipv4Addr) -> Option<Verdict> {
        self.verdicts
            .iter()
            .find(|a| a.address == address)
            .map(|a| a.verdict)
    }

    /// Starts a probe of `address` on `ifname` with `client` (a sibling
    /// of the node's client, see [`Client::sibling`]). A running probe is
    /// cancelled; its attachment is returned.
    pub fn start(
        &mut self,
        now: Instant,
        ifname: &str,
        address: Ipv4Addr,
        mut client: Client,
    ) -> Option<(String, Ipv4Addr)> {
        let cancelled = self.cancel();
        self.stats.probes_started += 1;
        client.register(now);
        self.probe = Some(Probe {
            ifname: ifname.to_string(),
            address,
            started: now,
            client,
            ids: VecDeque::new(),
            forged: 0,
        });
        self.drain_transmits();
        cancelled
    }

    /// Drops the running probe (a newer attachment, or its address is
    /// gone). Its replies are then nobody's: the node's client counts
    /// them as unmatched.
    pub fn cancel(&mut self) -> Option<(String, Ipv4Addr)> {
        let p = self.probe.take()?;
        self.stats.probes_cancelled += 1;
        self.transmits.clear();
        Some((p.ifname, p.address))
    }

    /// The connection status of the attachment changed (address gone,
    /// link down): its verdict no longer holds (RFC 5265 §3.2.3), and a
    /// probe of it stops. Returns whether a probe was cancelled.
    pub fn forget(&mut self, ifname: &str, address: Option<Ipv4Addr>) -> bool {
        let hit = |i: &str, a: Ipv4Addr| i == ifname && address.is_none_or(|x| x == a);
        self.verdicts.retain(|v| !hit(&v.ifname, v.address));
        if self
            .probe
            .as_ref()
            .is_some_and(|p| hit(&p.ifname, p.address))
        {
            self.cancel();
            return true;
        }
        false
    }

    /// An untrusted verdict reached without a probe (`NeverProbe`,
    /// `Cached`). Trusted is never decided here: only an authenticated
    /// reply with TNC says so (RFC 5265 §4.1).
    pub fn decide_untrusted(&mut self, ifname: &str, address: Ipv4Addr, cause: Cause) {
        match cause {
            Cause::Cached | Cause::CachedPrefix => self.stats.cached_untrusted += 1,
            _ => self.stats.never_probed += 1,
        }
        self.stats.untrusted += 1;
        self.record(ifname, address, Verdict::Untrusted);
    }

    /// Withdraws a trusted verdict (monitoring failed, RFC 5265 §3.2.4).
    pub fn withdraw(&mut self, address: Ipv4Addr, cause: Cause) {
        if let Some(a) = self.verdicts.iter_mut().find(|a| a.address == address) {
            a.verdict = Verdict::Untrusted;
        }
        if matches!(cause, Cause::MonitorExpired | Cause::RenewalWithoutTnc) {
            self.stats.monitor_failures += 1;
        }
    }

    /// Drops the verdict of `address` so that the next evaluation probes
    /// it again.
    pub fn reprobe(&mut self, address: Ipv4Addr) {
        self.verdicts.retain(|v| v.address != address);
    }

    /// Whether a reply belongs to the running probe (its Identification
    /// is one the probe sent).
    pub fn owns(&self, payload: &[u8]) -> bool {
        match (&self.probe, reply_mn_half(payload)) {
            (Some(p), Some(id)) => p.ids.contains(&id),
            _ => false,
        }
    }

    /// A reply to the probe (the caller checked [`owns`](Self::owns)).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddrV4,
        payload: &[u8],
    ) -> Option<Outcome> {
        let p = self.probe.as_mut()?;
        let before = dropped(p.client.stats());
        p.client.handle_datagram(now, from, payload);
        if dropped(p.client.stats()) > before {
            p.forged += 1;
            self.stats.forged_replies += 1;
            tracing::warn!(%from, address = %p.address, "probe reply dropped: not authenticated under the MN-HA association, or not ours");
        }
        let out = self.outcome(now);
        self.drain_transmits();
        out
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Option<Outcome> {
        let p = self.probe.as_mut()?;
        if p.client.poll_timeout().is_some_and(|t| now >= t) {
            p.client.handle_timeout(now);
        }
        let out = self.outcome(now);
        self.drain_transmits();
        out
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.probe.as_ref().and_then(|p| p.client.poll_timeout())
    }

    /// The daemon holds the probe datagram with `identification` for
    /// want of a route ([`Client::transmit_parked`]).
    pub fn transmit_parked(&mut self, identification: u64) {
        if let Some(p) = self.probe.as_mut() {
            p.client.transmit_parked(identification);
        }
    }

    /// The held probe datagram left at `now` ([`Client::transmit_left`]).
    pub fn transmit_left(&mut self, now: Instant, identification: u64) {
        if let Some(p) = self.probe.as_mut() {
            p.client.transmit_left(now, identification);
        }
    }

    pub fn poll_transmit(&mut self) -> Option<ProbeTransmit> {
        self.transmits.pop_front()
    }

    fn drain_transmits(&mut self) {
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        while let Some(t) = p.client.poll_transmit() {
            if p.ids.len() == 16 {
                p.ids.pop_front();
            }
            p.ids.push_back(replay::mn_half(t.identification));
            self.stats.probe_requests_sent += 1;
            self.transmits.push_back(ProbeTransmit {
                ifname: p.ifname.clone(),
                transmit: t,
                fallback_ifname: None,
            });
        }
    }

    /// Reads the probe client's events; a verdict ends the probe.
    fn outcome(&mut self, _now: Instant) -> Option<Outcome> {
        let p = self.probe.as_mut()?;
        let mut result = None;
        while let Some(e) = p.client.poll_event() {
            match e {
                ClientEvent::Registered { binding, tnc, .. } => {
                    let cause = if tnc {
                        Cause::TncReply
                    } else {
                        Cause::AcceptedWithoutTnc
                    };
                    result = Some((cause, Some(binding)));
                    break;
                }
                ClientEvent::Denied { code, .. } => {
                    result = Some((Cause::Denied { code: code.0 }, None));
                    break;
                }
                ClientEvent::Failed { attempts, .. } => {
                    result = Some((Cause::NoReply { attempts }, None));
                    break;
                }
                // 133 resynchronised and resent, 136 named another
                // address: the probe goes on.
                _ => {}
            }
        }
        let (cause, binding) = result?;
        let p = self.probe.take().expect("checked above");
        self.transmits.clear();
        match cause {
            Cause::TncReply => self.stats.trusted += 1,
            Cause::AcceptedWithoutTnc => {
                self.stats.untrusted += 1;
                self.stats.accepted_without_tnc += 1
            }
            Cause::Denied { .. } => {
                self.stats.untrusted += 1;
                self.stats.denied += 1
            }
            _ => {
                self.stats.untrusted += 1;
                self.stats.no_reply += 1
            }
        }
        self.record(&p.ifname, p.address, cause.verdict());
        let (accepted, stray) = match (cause, binding) {
            (Cause::TncReply, Some(b)) => (Some((p.client, b)), None),
            (Cause::AcceptedWithoutTnc, Some(_)) => (None, Some(p.client)),
            _ => (None, None),
        };
        Some(Outcome {
            ifname: p.ifname,
            address: p.address,
            cause,
            started: p.started,
            forged: p.forged,
            accepted,
            stray,
        })
    }

    fn record(&mut self, ifname: &str, address: Ipv4Addr, verdict: Verdict) {
        self.verdicts.retain(|a| a.address != address);
        self.verdicts.push(Attachment {
            ifname: ifname.to_string(),
            address,
            verdict,
        });
    }
}
