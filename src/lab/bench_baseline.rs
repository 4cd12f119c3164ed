//! `mip4-lab bench-baseline`: the baselines RFC 4093 argues against
//! (issue 14 §3), measured in one invocation on the Figure 1 lab.
//!
//! Time per move, from the address change (the first `ip` command of a
//! break-before-make move between external networks A and B, B behind
//! NAT, 20 ms access RTT from the lab's delay line) to the first reply to
//! the correspondent's ping of the home address (20 ms apart), for:
//! - `untrusted-moves`: mip4 with MOBIKE (RFC 5266 §3.1.3): the IKE_SA
//!   moves, the TIA and the binding stay, no registration;
//! - `reestablish-psk`: no MOBIKE (`mobike = no`): charon re-authenticates
//!   from scratch on every move (IKE_SA_INIT, IKE_AUTH with a PSK), mip4d
//!   registers the TIA again through the new IKE_SA;
//! - `reestablish-eap`: the same with EAP-MSCHAPv2 (the gateway's
//!   eap-mschapv2 plugin, its EAP identity asked for first).
//!
//! Each round is one fresh lab per scenario with `--moves / --rounds`
//! moves; the scenarios' order changes every round (all six orders in
//! turn), so a drift of the machine's load falls on all three alike.
//! Ratios are of medians measured in this one invocation.
//!
//! Bytes per data packet: one more run of `untrusted-moves` with
//! captures. Mode 'mc' is read from the capture of external network B:
//! the ESP-in-UDP datagram (RFC 3948) that carries the correspondent's
//! echo to the MN (IP in IP inside ESP inside UDP 4500), and the echo
//! itself from the correspondent's link. RFC 5265's two-layer design
//! (x-MIP outside the VPN through an external home agent, IPsec, i-MIP
//! inside) is not built in the lab: its datagram is derived from that
//! captured one with the project's own tunnel code ([`two_layer`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::bench::median;
use super::pcap;
use super::scenario::{self, RunOptions, Scenario, Summary};
use super::{Error, Result, WorkDir};
use crate::dataplane::ipv4::{Ipv4Packet, Ipv4Repr, MIN_HEADER_LEN, PROTO_UDP};

pub mod tier;

/// One compared variant: its scenario and what it is.
#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub scenario: &'static str,
    pub label: &'static str,
}

/// mip4 with MOBIKE first: the numerator of every ratio.
pub const VARIANTS: [Variant; 3] = [
    Variant {
        scenario: "untrusted-moves",
        label: "mip4 + MOBIKE (mode mc)",
    },
    Variant {
        scenario: "reestablish-psk",
        label: "re-establish + re-register, PSK",
    },
    Variant {
        scenario: "reestablish-eap",
        label: "re-establish + re-register, EAP-MSCHAPv2",
    },
];

/// What to run.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// The lab folder (figure1.toml, hosts/, scenarios/).
    pub lab_dir: PathBuf,
    /// Moves measured per variant.
    pub moves: usize,
    /// Rounds (a fresh lab per scenario each); `moves` is split over them.
    pub rounds: usize,
    /// The programs and the plugin the scenarios run.
    pub run: RunOptions,
    /// Where to write the markdown section (e.g. build/bench/30-baselines.md).
    pub out: Option<PathBuf>,
    /// The command line, for the section's text.
    pub command: String,
    /// The kernel tier's side (`--timed`): each move by `lab::timed-move`
    /// on the guest's clock ([`tier`]); a run whose checks fail still
    /// gives the moves it timed, its failures named in the report.
    pub timed: bool,
}

/// One measured move.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub scenario: String,
    pub round: usize,
    pub index: u32,
    /// Address change -> first ping reply to the home address.
    pub move_to_ping_ms: f64,
    /// The IKE round trip on the new network, right after.
    pub ike_rtt_ms: f64,
    /// Baselines only: address change -> VPN up again / registered.
    pub move_to_vpn_ms: Option<f64>,
    pub move_to_registered_ms: Option<f64>,
    /// `--timed`: how long the guest stood still inside the move.
    #[serde(default)]
    pub stall_ms: Option<f64>,
}

/// Median and worst of one variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub scenario: String,
    pub label: String,
    pub n: usize,
    pub median_ms: f64,
    pub worst_ms: f64,
    pub best_ms: f64,
    pub median_ike_rtt_ms: f64,
    pub median_vpn_ms: Option<f64>,
    pub median_registered_ms: Option<f64>,
    /// `--timed`: the moves less the guest's stalls inside each.
    #[serde(default)]
    pub median_unstalled_ms: Option<f64>,
    #[serde(default)]
    pub worst_unstalled_ms: Option<f64>,
    /// `--timed`: moves with a stall inside.
    #[serde(default)]
    pub stalled: usize,
}

/// Bytes of one data packet (IPv4 datagram lengths, outer header included).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bytes {
    /// The correspondent's echo request to the home address, as sent.
    pub inner: usize,
    /// Mode 'mc' behind NAT: IP, UDP 4500, ESP, IP (i-HA -> TIA), the echo.
    pub mc: usize,
    /// How many such datagrams the capture held (all of that size).
    pub mc_count: usize,
    /// RFC 5265 behind the same NAT: IP, UDP 434, Tunnel Data header, IP
    /// (gateway -> x-HoA), ESP, IP (i-HA -> TIA), the echo.
    pub two_layer: usize,
}

/// The result of one invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub stats: Vec<Stats>,
    /// Median of each baseline / median of mip4 + MOBIKE.
    pub ratio_psk: f64,
    pub ratio_eap: f64,
    /// `--timed`: the same, of the medians less the stalls.
    #[serde(default)]
    pub ratio_psk_unstalled: Option<f64>,
    #[serde(default)]
    pub ratio_eap_unstalled: Option<f64>,
    /// None where the capture run failed (`--timed`; see `notes`).
    pub bytes: Option<Bytes>,
    pub kernel: String,
    pub ipsec: String,
    /// `--timed`: runs that failed or whose checks did not hold (their
    /// timed moves still count).
    #[serde(default)]
    pub notes: Vec<String>,
    /// `--vm`: QEMU's vCPU thread over the boot, as the host saw it.
    #[serde(default, skip_deserializing)]
    pub host: Option<super::bench::tier::HostView>,
    pub samples: Vec<Sample>,
}

/// The order of the variants in round `r`: all six permutations in turn.
pub fn order(r: usize) -> [usize; 3] {
    const ORDERS: [[usize; 3]; 6] = [
        [0, 1, 2],
        [2, 1, 0],
        [1, 2, 0],
        [0, 2, 1],
        [2, 0, 1],
        [1, 0, 2],
    ];
    ORDERS[r % ORDERS.len()]
}

/// `scenario` with its `lab::set MOVES k` line saying `moves`.
pub fn with_moves(scenario: &Scenario, moves: usize) -> Result<Scenario> {
    let mut s = scenario.clone();
    let line = s
        .pre
        .iter_mut()
        .find(|l| l.host == "lab" && l.command.starts_with("set MOVES "))
        .ok_or_else(|| {
            Error::Other(format!(
                "scenario `{}` has no `lab::set MOVES` line",
                s.name
            ))
        })?;
    line.command = format!("set MOVES {moves}");
    Ok(s)
}

/// The figures `PREFIX_N` of a run, by N.
fn per_move(s: &Summary, prefix: &str) -> BTreeMap<u32, f64> {
    s.figures
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.parse().ok()?, *v)))
        .collect()
}

fn samples_of(s: &Summary, round: usize) -> Vec<Sample> {
    let rtt = per_move(s, "ike_rtt_ms_");
    let vpn = per_move(s, "move_to_vpn_ms_");
    let reg = per_move(s, "move_to_registered_ms_");
    per_move(s, "move_to_ping_ms_")
        .into_iter()
        .map(|(index, ms)| Sample {
            stall_ms: s
                .figures
                .get(&format!("move_to_ping_ms_{index}_stall_ms"))
                .copied(),
            scenario: s.scenario.clone(),
            round,
            index,
            move_to_ping_ms: ms,
            ike_rtt_ms: rtt.get(&index).copied().unwrap_or(f64::NAN),
            move_to_vpn_ms: vpn.get(&index).copied(),
            move_to_registered_ms: reg.get(&index).copied(),
        })
        .collect()
}

fn stats(v: &Variant, samples: &[Sample]) -> Stats {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.scenario == v.scenario)
        .collect();
    let ms: Vec<f64> = mine.iter().map(|s| s.move_to_ping_ms).collect();
    let opt = |f: fn(&Sample) -> Option<f64>| {
        let x: Vec<f64> = mine.iter().filter_map(|s| f(s)).collect();
        (!x.is_empty()).then(|| median(&x))
    };
    let unstalled: Vec<f64> = mine
        .iter()
        .filter_map(|s| Some(s.move_to_ping_ms - s.stall_ms?))
        .collect();
    let some = !unstalled.is_empty();
    Stats {
        scenario: v.scenario.into(),
        label: v.label.into(),
        n: ms.len(),
        median_ms: median(&ms),
        worst_ms: ms.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        best_ms: ms.iter().copied().fold(f64::INFINITY, f64::min),
        median_ike_rtt_ms: median(&mine.iter().map(|s| s.ike_rtt_ms).collect::<Vec<_>>()),
        median_vpn_ms: opt(|s| s.move_to_vpn_ms),
        median_registered_ms: opt(|s| s.move_to_registered_ms),
        median_unstalled_ms: some.then(|| median(&unstalled)),
        worst_unstalled_ms: some.then(|| unstalled.iter().copied().fold(f64::NAN, f64::max)),
        stalled: mine.iter().filter(|s| s.stall_ms > Some(0.0)).count(),
    }
}

/// One scenario run with `moves` moves (timed in the guest's way with
/// `timed`, from a file written into that folder). A run whose checks
/// fail is an error, except under `--timed`: there it comes back with its
/// failures (the kernel tier's loaded guest can fail a check the host
/// lab holds, and the moves it timed still count).
fn run_one(
    opts: &BaselineOptions,
    name: &str,
    moves: usize,
    run: &RunOptions,
    timed: Option<&std::path::Path>,
) -> Result<(Summary, Option<String>)> {
    let s = Scenario::load(&opts.lab_dir.join("scenarios").join(name))?;
    let mut s = with_moves(&s, moves)?;
    if let Some(dir) = timed {
        s = tier::timed(&s, dir)?;
    }
    let summary = scenario::run(&opts.lab_dir, &s, run, &mut |_| {})?;
    if summary.passed() {
        return Ok((summary, None));
    }
    let failed: Vec<String> = summary
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}::{}", c.host, c.command))
        .collect();
    let failed: Vec<String> = failed.iter().map(|f| work_dir_named(f, name)).collect();
    let why = format!(
        "{name} failed: {} {}",
        summary.error.clone().unwrap_or_default(),
        failed.join("; ")
    );
    if opts.timed {
        Ok((summary, Some(why)))
    } else {
        Err(Error::Other(why))
    }
}

/// `text` with the run's own folder (`.../PREFIX-NAME`, a path that
/// differs every run) written as the scenario files write it.
fn work_dir_named(text: &str, name: &str) -> String {
    let tail = format!("-{name}/");
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(&tail) {
        let start = rest[..at].rfind([' ', '\'', '"']).map_or(0, |i| i + 1);
        out.push_str(&rest[..start]);
        out.push_str("${WORK_DIR}/");
        rest = &rest[at + tail.len()..];
    }
    out.push_str(rest);
    out
}

/// Runs the comparison and the capture; `progress` gets a line per run.
pub fn run(opts: &BaselineOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if opts.moves == 0 || opts.rounds == 0 || opts.moves < opts.rounds {
        return Err(Error::Other(
            "--moves must be at least --rounds, both above 0".into(),
        ));
    }
    let timed_dir = opts
        .timed
        .then(|| WorkDir::new("baseline-timed"))
        .transpose()?;
    let timed = timed_dir.as_ref().map(WorkDir::path);
    let mut samples = Vec::new();
    let mut notes = Vec::new();
    let mut platform = None;
    for round in 0..opts.rounds {
        let n = opts.moves / opts.rounds + usize::from(round < opts.moves % opts.rounds);
        for i in order(round) {
            let v = &VARIANTS[i];
            let (s, failed) = match run_one(opts, v.scenario, n, &opts.run, timed) {
                Ok(r) => r,
                Err(e) if opts.timed => {
                    progress(&format!("round {round} {}: {e}", v.scenario));
                    notes.push(format!("round {round}: {e}"));
                    continue;
                }
                Err(e) => return Err(e),
            };
            let got = samples_of(&s, round);
            if got.len() != n && failed.is_none() {
                return Err(Error::Other(format!(
                    "{}: {} moves measured of {n}",
                    v.scenario,
                    got.len()
                )));
            }
            if let Some(f) = failed {
                notes.push(format!(
                    "round {round}: {} of {n} moves timed; {f}",
                    got.len()
                ));
            }
            let list: Vec<String> = got
                .iter()
                .map(|m| match m.stall_ms {
                    Some(st) if st > 0.0 => format!("{:.0}(stall {st:.0})", m.move_to_ping_ms),
                    _ => format!("{:.0}", m.move_to_ping_ms),
                })
                .collect();
            progress(&format!(
                "round {round} {:<16} move -> ping ms: {}",
                v.scenario,
                list.join(" ")
            ));
            samples.extend(got);
            platform.get_or_insert(s.platform);
        }
    }
    progress("captures: untrusted-moves, one move");
    let bytes = match bytes_per_packet(opts) {
        Ok(b) => Some(b),
        Err(e) if opts.timed => {
            progress(&format!("captures: {e}"));
            notes.push(format!("bytes per data packet: {e}"));
            None
        }
        Err(e) => return Err(e),
    };
    let stats: Vec<Stats> = VARIANTS.iter().map(|v| stats(v, &samples)).collect();
    let platform = platform.unwrap_or_default();
    let unstalled = |i: usize| {
        Some(round2(
            stats[i].median_unstalled_ms? / stats[0].median_unstalled_ms?,
        ))
    };
    Ok(Report {
        ratio_psk: round2(stats[1].median_ms / stats[0].median_ms),
        ratio_eap: round2(stats[2].median_ms / stats[0].median_ms),
        ratio_psk_unstalled: unstalled(1),
        ratio_eap_unstalled: unstalled(2),
        stats,
        bytes,
        kernel: platform.kernel,
        ipsec: platform.ipsec.get("mn").cloned().unwrap_or_default(),
        notes,
        host: None,
        samples,
    })
}

/// The lab's addresses the captured datagram is read with.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
const MN_ON_B: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);
const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 2, 2);
const HOME_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 1, 100, 5);
/// RFC 5265's outer layer, placed on the lab's Internet (198.51.100.0/24,
/// the firewall's uplink): an external home agent and the home address it
/// gives the MN (the VPN's outer address). Addresses only: no such host
/// exists in the lab.
pub const X_HA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
pub const X_HOA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 200);
const NAT_T: u16 = 4500;
const MIP_PORT: u16 = 434;
const PROTO_ESP: u8 = 50;

/// ESP in UDP (RFC 3948 §2.1-2.3): UDP to or from 4500 whose payload starts
/// with a non-zero SPI (zero is the non-ESP marker of IKE; one 0xff byte
/// is a NAT-keepalive).
fn esp_in_udp(ip: &[u8]) -> Option<&[u8]> {
    let p = Ipv4Packet::new_checked(ip).ok()?;
    if p.protocol() != PROTO_UDP {
        return None;
    }
    let udp = ip.get(p.header_len()..p.total_len())?;
    let esp = udp.get(8..)?;
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    ((port(0) == NAT_T || port(2) == NAT_T) && esp.len() > 8 && esp[..4] != [0, 0, 0, 0])
        .then_some(esp)
}

/// RFC 5265's data packet from a captured mode 'mc' one (IP, UDP 4500,
/// ESP, i-MIP inside), built with the project's tunnel code. The IPsec
/// layer runs between the gateway and the x-HoA, which no NAT separates:
/// ESP straight in IP (RFC 4303), the captured ESP bytes unchanged. The
/// x-HA tunnels that to the MN's care-of address behind the NAT: RFC 3519
/// Tunnel Data (`dataplane::udp::encapsulate`) in UDP from port 434 to
/// the NAT's port, in IP from the x-HA (Tunnel Data: RFC 3519 §3.3).
pub fn two_layer(mc: &[u8], nat: Ipv4Addr, nat_port: u16) -> Result<Vec<u8>> {
    let esp = esp_in_udp(mc).ok_or_else(|| Error::Other("not an ESP-in-UDP datagram".into()))?;
    let ipsec = ipv4(GATEWAY, X_HOA, PROTO_ESP, esp);
    let mut tunnel_data = Vec::new();
    crate::dataplane::udp::encapsulate(&ipsec, &mut tunnel_data)
        .map_err(|e| Error::Other(format!("tunnel data: {e}")))?;
    Ok(ipv4(
        X_HA,
        nat,
        PROTO_UDP,
        &udp(MIP_PORT, nat_port, &tunnel_data),
    ))
}

/// An IPv4 datagram around `payload` (the data plane's header codec).
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut hdr = [0u8; MIN_HEADER_LEN];
    Ipv4Repr {
        src,
        dst,
        protocol,
        tos: 0,
        ident: 0,
        dont_frag: false,
        ttl: crate::dataplane::ipip::DEFAULT_TTL,
        payload_len: payload.len(),
    }
    .emit(&mut hdr);
    [&hdr[..], payload].concat()
}

/// A UDP datagram with checksum 0 (none, which RFC 768 allows over IPv4;
/// the length is all the comparison needs). No datagram here nears 65535.
fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(8 + payload.len()).unwrap_or(u16::MAX);
    [
        &sport.to_be_bytes()[..],
        &dport.to_be_bytes(),
        &len.to_be_bytes(),
        &[0, 0],
        payload,
    ]
    .concat()
}

/// The most frequent datagram length of `sizes` and how often it came.
fn mode(sizes: impl Iterator<Item = usize>) -> Option<(usize, usize)> {
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for s in sizes {
        *counts.entry(s).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n)
}

fn bytes_per_packet(opts: &BaselineOptions) -> Result<Bytes> {
    let work = WorkDir::new("baseline-capture")?;
    let mut run = opts.run.clone();
    run.capture = Some(work.path().to_path_buf());
    // One move: A -> B, where the MN stays behind the NAT to the end
    // (by `lab::move`: the capture needs no timing).
    run_one(opts, VARIANTS[0].scenario, 1, &run, None)?;
    let echoes = pcap::sizes(&work.path().join("cn-eth0.pcap"), CN, HOME_ADDRESS, 1)?;
    let (inner, _) = mode(echoes.iter().map(|s| usize::from(*s)))
        .ok_or_else(|| Error::Other("no echo to the home address on cn's link".into()))?;
    let from_gateway: Vec<Vec<u8>> = pcap::datagrams(&work.path().join("natb-eth-b.pcap"))?
        .into_iter()
        .filter(|d| d.len() >= 20 && d[12..16] == GATEWAY.octets() && d[16..20] == MN_ON_B.octets())
        .filter(|d| esp_in_udp(d).is_some())
        .collect();
    let (mc, mc_count) = mode(from_gateway.iter().map(Vec::len))
        .ok_or_else(|| Error::Other("no ESP in UDP to the MN on network B".into()))?;
    let sample = from_gateway
        .iter()
        .find(|d| d.len() == mc)
        .expect("the mode is one of them");
    let nat_port = u16::from_be_bytes([sample[22], sample[23]]);
    let two = two_layer(sample, MN_ON_B, nat_port)?;
    Ok(Bytes {
        inner,
        mc,
        mc_count,
        two_layer: two.len(),
    })
}

/// The section for docs/PERFORMANCE.md.
pub fn markdown(r: &Report, command: &str) -> String {
    let m = &r.stats[0];
    let mut t = String::new();
    t.push_str("## The baselines RFC 4093 argues against (issue 14 §3)\n\n");
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    t.push_str(&format!("Command: `{command}` ({build} build)\n\n"));
    t.push_str(&format!(
        "The Figure 1 lab (`lab/figure1.toml`), 20 ms access RTT from the lab's delay line \
         (IKE round trip measured after each move: median {:.1} ms), kernel {}, ESP by {} on \
         both charons. Each move is break before make between external network A and external \
         network B (behind NAT), timed from the address change to the first reply to the \
         correspondent's ping of the home address (pings 20 ms apart). The three scenarios ran \
         interleaved in this one invocation, a fresh lab for each per round, their order \
         changing every round.\n\n",
        m.median_ike_rtt_ms, r.kernel, r.ipsec
    ));
    t.push_str("| variant | scenario | moves | median ms | worst ms | best ms | median in IKE RTTs | VPN up again (median ms) | registered (median ms) | median / mip4 + MOBIKE |\n");
    t.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
    let dash = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
    for s in &r.stats {
        t.push_str(&format!(
            "| {} | `{}` | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.2} |\n",
            s.label,
            s.scenario,
            s.n,
            s.median_ms,
            s.worst_ms,
            s.best_ms,
            s.median_ms / s.median_ike_rtt_ms,
            dash(s.median_vpn_ms),
            dash(s.median_registered_ms),
            s.median_ms / m.median_ms,
        ));
    }
    let verdict = |ratio: f64, goal: f64| {
        if ratio >= goal {
            format!("{ratio:.2}×: met")
        } else {
            format!("{ratio:.2}×: not met")
        }
    };
    t.push_str(&format!(
        "\nGoal: mip4 + MOBIKE at least 2× faster than re-establish + re-register with PSK \
         ({}), at least 3× with EAP-MSCHAPv2 ({}).\n\n",
        verdict(r.ratio_psk, 2.0),
        verdict(r.ratio_eap, 3.0)
    ));
    t.push_str(
        "Round trips after the address change, all of them charon 5.9.8's: mip4 + MOBIKE \
         needs the MOBIKE path check (an empty INFORMATIONAL; none with the plugin's direct \
         update), UPDATE_SA_ADDRESSES (RFC 4555 §3.5), a CHILD_SA rekey (kernel-libipsec \
         cannot update an SA in place, so both ends rekey after each update) and half a \
         round trip more for the DELETE of the old SA, before which the rekey's responder \
         does not send on the new one. Re-establishing needs IKE_SA_INIT and IKE_AUTH (with \
         EAP-MSCHAPv2, IKE_AUTH takes more exchanges); the gateway's pool hands the same TIA \
         back, so the home agent's binding still holds and data flows before the \
         re-registration is answered. Where each move's time goes and why the loaded \
         machine's medians are far above the best: lab/README.md, \"Where a move's time \
         goes\".\n\n",
    );
    if let Some(b) = &r.bytes {
        t.push_str(&bytes_markdown(
            b,
            "captured on external network B (`natb:eth-b`)",
        ));
    }
    t
}

/// The bytes-per-packet subsection; `where_` says where mode mc's
/// datagram was captured.
pub fn bytes_markdown(b: &Bytes, where_: &str) -> String {
    let mut t = String::new();
    t.push_str("### Bytes per data packet\n\n");
    t.push_str(&format!(
        "The correspondent's echo request to the home address ({} bytes as an IPv4 datagram) \
         on its way to the MN behind network B's NAT:\n\n",
        b.inner
    ));
    t.push_str(
        "| design | headers around the echo | IPv4 datagram bytes | added bytes | how obtained |\n",
    );
    t.push_str("| --- | --- | --- | --- | --- |\n");
    t.push_str(&format!(
        "| RFC 5266 mode mc | IP, UDP 4500, ESP (AES-GCM-128), IP (i-HA -> TIA) | {} | {} | {where_}, {} such datagrams from the gateway |\n",
        b.mc,
        b.mc - b.inner,
        b.mc_count
    ));
    t.push_str(&format!(
        "| RFC 5265 two layers | IP (x-HA -> NAT), UDP 434, RFC 3519 Tunnel Data, IP (gateway -> x-HoA), ESP, IP (i-HA -> TIA) | {} | {} | derived: the captured datagram's ESP bytes in IP from the gateway to an x-HoA, then `dataplane::udp::encapsulate` and UDP/IP from an x-HA (`bench_baseline::two_layer`); no x-HA runs in the lab |\n",
        b.two_layer,
        b.two_layer - b.inner
    ));
    t.push_str(&format!(
        "\nThe two-layer design costs {} bytes more per data packet behind a NAT (the x-MIP \
         layer's IP header, UDP header and Tunnel Data header; ESP itself no longer needs UDP \
         between the gateway and the x-HoA), {:.1} % more on the wire for this echo.\n",
        b.two_layer - b.mc,
        100.0 * (b.two_layer - b.mc) as f64 / b.mc as f64
    ));
    t
}

/// `mip4-lab bench-baseline`: runs, prints each run's moves, then the
/// section (or one JSON object), and writes the section to `--out`.
pub fn cli(opts: BaselineOptions, json: bool) -> std::process::ExitCode {
    eprintln!(
        "mip4-lab bench-baseline: {} moves per variant in {} rounds",
        opts.moves, opts.rounds
    );
    let r = match run(&opts, &mut |line| eprintln!("{line}")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mip4-lab bench-baseline: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let text = markdown(&r, &opts.command);
    super::bench::emit("bench-baseline", &r, &text, opts.out.as_deref(), json)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_is_a_permutation_and_each_variant_leads_twice_in_six() {
        let mut first = [0; 3];
        for r in 0..6 {
            let mut o = order(r);
            first[o[0]] += 1;
            o.sort_unstable();
            assert_eq!(o, [0, 1, 2]);
        }
        assert_eq!(first, [2, 2, 2]);
    }

    /// An mc datagram as the capture shows it: IP, UDP 4500, ESP.
    fn mc_datagram(esp_len: usize) -> Vec<u8> {
        // A NAT-keepalive is one 0xff byte; anything longer starts with
        // an SPI.
        let mut esp = vec![0xff; esp_len];
        if esp_len >= 4 {
            esp[..4].copy_from_slice(&[0, 0, 0x12, 0x34]);
        }
        ipv4(GATEWAY, MN_ON_B, PROTO_UDP, &udp(NAT_T, 4501, &esp))
    }

    #[test]
    fn two_layer_adds_ip_udp_and_tunnel_data_and_drops_nat_t() {
        let mc = mc_datagram(140);
        let two = two_layer(&mc, MN_ON_B, 4501).unwrap();
        // IP 20 + UDP 8 + Tunnel Data 4 + IP 20 + ESP, against IP 20 +
        // UDP 8 + ESP.
        assert_eq!(two.len(), mc.len() + 24);
        // The lab's own capture reader sees every layer's addresses
        // (RFC 3519 tunnel data is one it dissects).
        let mut seen = Vec::new();
        pcap::addresses(&two, &mut seen);
        assert_eq!(seen, [X_HA, MN_ON_B, GATEWAY, X_HOA]);
        // The ESP bytes are the captured ones.
        assert!(two.ends_with(&mc[28..]));
        assert_eq!(two[20..22], MIP_PORT.to_be_bytes());
        assert_eq!(two[28..30], [4, 4]);
    }

    #[test]
    fn ike_and_keepalives_are_not_esp() {
        let mut ike = mc_datagram(40);
        ike[28..32].copy_from_slice(&[0, 0, 0, 0]);
        assert!(esp_in_udp(&ike).is_none());
        assert!(esp_in_udp(&mc_datagram(1)).is_none());
        assert!(esp_in_udp(&mc_datagram(40)).is_some());
        assert!(two_layer(&ike, MN_ON_B, 4501).is_err());
    }

    #[test]
    fn with_moves_rewrites_the_count() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/scenarios/untrusted-moves");
        let s = with_moves(&Scenario::load(&dir).unwrap(), 7).unwrap();
        assert!(s.pre.iter().any(|l| l.command == "set MOVES 7"));
    }

    #[test]
    fn a_failed_checks_work_folder_is_named_as_the_scenario_names_it() {
        assert_eq!(
            work_dir_named(
                "mn::grep -c 'x y' /tmp/lab/m4l118x1-untrusted-moves/mn/charon.log; mn::cat /tmp/lab/m4l118x1-untrusted-moves/mn/a",
                "untrusted-moves"
            ),
            "mn::grep -c 'x y' ${WORK_DIR}/mn/charon.log; mn::cat ${WORK_DIR}/mn/a"
        );
    }

    #[test]
    fn mode_is_the_most_frequent_size() {
        assert_eq!(mode([168, 96, 168, 168, 96].into_iter()), Some((168, 3)));
        assert_eq!(mode(std::iter::empty()), None);
    }
}
