//! Reads a capture of an external link for traffic to or from the home
//! address outside IPsec (`lab::clear-text`): RFC 5266 §3.1.3 puts every
//! home-address packet of an MN outside the enterprise inside the VPN's
//! ESP, so an external link must never show the home address in an IP
//! header, outer or inner (an IPIP or UDP-tunnelled packet, or the copy
//! inside an ICMP error, counts too). tshark dissects all of them; ESP
//! stays opaque, as on the real Internet. Where tshark is not installed
//! (the kernel tier's guest), [`super::pcap`] reads the same headers.

use std::path::Path;
use std::process::Command;

use super::{Error, Result};

/// Frames in `pcap` (all, and those with `addr` in any IPv4 header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub total: u64,
    pub with_addr: u64,
}

impl Seen {
    pub fn describe(&self) -> String {
        format!("home={} total={}", self.with_addr, self.total)
    }
}

/// Counts the frames of `pcap`, and those carrying `addr` in any IPv4
/// header tshark finds.
pub fn count(pcap: &Path, addr: &str) -> Result<Seen> {
    let ip: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| Error::Other(format!("`{addr}` is not an IPv4 address")))?;
    if super::scenario::have("tshark") {
        count_tshark(pcap, ip)
    } else {
        super::pcap::count(pcap, ip)
    }
}

/// [`count`] by tshark's dissectors.
pub fn count_tshark(pcap: &Path, ip: std::net::Ipv4Addr) -> Result<Seen> {
    Ok(Seen {
        total: tshark_frames(pcap, None)?,
        with_addr: tshark_frames(pcap, Some(format!("ip.addr == {ip}")))?,
    })
}

/// IPv6 to and from `addr` inside IPv4 protocol 41 (RFC 5454; RFC 3519
/// next header 41 is UDP to port 434), with `outer` in the IPv4 header
/// when given, in the frames of `pcap` (`lab::ipv6-in-ipv4`): `to=N
/// from=M`, as tshark dissects them, or where it is not installed (the
/// kernel tier's guest) as [`super::pcap::ipv6_in_ipv4`] reads them.
pub fn ipv6_in_ipv4(pcap: &Path, addr: &str, outer: Option<&str>) -> Result<String> {
    let ip: std::net::Ipv6Addr = addr
        .parse()
        .map_err(|_| Error::Other(format!("`{addr}` is not an IPv6 address")))?;
    let outer = outer
        .map(|o| {
            o.parse::<std::net::Ipv4Addr>()
                .map_err(|_| Error::Other(format!("`{o}` is not an IPv4 address")))
        })
        .transpose()?;
    let (to, from) = if super::scenario::have("tshark") {
        ipv6_in_ipv4_tshark(pcap, ip, outer)?
    } else {
        super::pcap::ipv6_in_ipv4(pcap, ip, outer)?
    };
    Ok(format!("to={to} from={from}"))
}

/// [`ipv6_in_ipv4`] by tshark's dissectors: `(to, from)`.
pub fn ipv6_in_ipv4_tshark(
    pcap: &Path,
    ip: std::net::Ipv6Addr,
    outer: Option<std::net::Ipv4Addr>,
) -> Result<(u64, u64)> {
    let outer = outer
        .map(|o| format!(" && ip.addr == {o}"))
        .unwrap_or_default();
    let count = |dir: &str| {
        tshark_frames(
            pcap,
            Some(format!(
                "(ip.proto == 41 || udp.port == 434) && ipv6.{dir} == {ip}{outer}"
            )),
        )
    };
    Ok((count("dst")?, count("src")?))
}

/// The frames of `pcap` tshark shows through `filter` (all without one).
fn tshark_frames(pcap: &Path, filter: Option<String>) -> Result<u64> {
    {
        let mut cmd = Command::new("tshark");
        cmd.args(["-n", "-r"])
            .arg(pcap)
            .args(["-T", "fields", "-e", "frame.number"]);
        if let Some(f) = filter {
            cmd.args(["-Y", &f]);
        }
        let out = cmd.output().map_err(|source| Error::Spawn {
            cmd: "tshark".into(),
            source,
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // tcpdump is still writing: the last frame may be cut short, which
        // tshark reports (exit status 2) after reading every whole frame.
        if !out.status.success() && !stderr.contains("cut short") {
            return Err(Error::Other(format!(
                "tshark -r {}: {}",
                pcap.display(),
                stderr.trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().filter(|l| !l.trim().is_empty()).count() as u64)
    }
}
