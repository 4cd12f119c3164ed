//! RFC 5266 Figure 1 as data (`lab/figure1.toml`) and the function that
//! builds it from namespaces. Dropping the [`Lab`] tears it all down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::access;
use super::netns::{unique_prefix, veth, Netns};
use super::wire::Wire;
use super::{Error, Result};

/// The topology file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologySpec {
    #[serde(rename = "host")]
    pub hosts: Vec<HostSpec>,
    #[serde(rename = "link")]
    pub links: Vec<LinkSpec>,
    #[serde(rename = "access", default)]
    pub access: Vec<AccessSpec>,
}

/// One host (namespace).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    #[serde(default)]
    pub forward: bool,
    /// `ip route replace` arguments, e.g. `default via 10.1.1.1`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// An nftables ruleset file, relative to the topology file.
    pub nft: Option<String>,
}

/// One link: `host:dev[:address/len[,address/len]]` at each end (an
/// IPv4 and an IPv6 address on the same device: the IPv6 access
/// network of the `ipv6-access` scenario).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub a: String,
    pub b: String,
    /// One-way delay of the link (each direction), in milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
}

/// An access network the MN can attach to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    pub name: String,
    #[serde(default = "default_mn")]
    pub host: String,
    pub dev: String,
    pub addr: String,
    pub gateway: String,
    #[serde(default)]
    pub trusted: bool,
}

fn default_mn() -> String {
    "mn".to_string()
}

/// One end of a link, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub host: String,
    pub dev: String,
    pub addr: Option<String>,
}

impl End {
    fn parse(s: &str) -> Option<End> {
        let mut it = s.splitn(3, ':');
        let host = it.next()?.to_string();
        let dev = it.next()?.to_string();
        if host.is_empty() || dev.is_empty() || dev.len() > 15 {
            return None;
        }
        Some(End {
            host,
            dev,
            addr: it.next().map(str::to_string),
        })
    }
}

impl TopologySpec {
    /// Reads and checks a topology file; errors name the file.
    pub fn load(path: &Path) -> Result<TopologySpec> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        let spec: TopologySpec = toml::from_str(&text).map_err(|e| Error::Parse {
            file: path.display().to_string(),
            line: e
                .span()
                .map_or(0, |s| text[..s.start].matches('\n').count() + 1),
            msg: e.message().to_string(),
        })?;
        spec.check().map_err(|msg| Error::Parse {
            file: path.display().to_string(),
            line: 0,
            msg,
        })?;
        Ok(spec)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let hosts: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
        for l in &self.links {
            for e in [&l.a, &l.b] {
                let end = End::parse(e).ok_or(format!("link end `{e}` is not host:dev[:addr]"))?;
                if !hosts.contains(&end.host.as_str()) {
                    return Err(format!("link end `{e}`: no host `{}`", end.host));
                }
            }
        }
        for a in &self.access {
            if !hosts.contains(&a.host.as_str()) {
                return Err(format!("access `{}`: no host `{}`", a.name, a.host));
            }
        }
        Ok(())
    }

    pub fn access(&self, name: &str) -> Result<&AccessSpec> {
        self.access
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| Error::Other(format!("no access network `{name}` in the topology")))
    }

    /// The delay of the link whose ends include `host:dev`.
    pub fn link_delay(&self, host: &str, dev: &str) -> Option<Duration> {
        self.links.iter().find_map(|l| {
            let hit = [&l.a, &l.b]
                .iter()
                .any(|e| End::parse(e).is_some_and(|e| e.host == host && e.dev == dev));
            hit.then(|| Duration::from_millis(l.delay_ms))
        })
    }
}

/// The built lab. Fields drop in order: delay lines, then hosts.
#[derive(Debug)]
pub struct Lab {
    /// Delay lines, each with the index of its link in `spec.links`.
    wires: Vec<(usize, Wire)>,
    hosts: BTreeMap<String, Netns>,
    wire_ns: Netns,
    pub spec: TopologySpec,
    /// The access network the MN is attached to, if any.
    attached: BTreeMap<String, String>,
    /// Access networks up beside it ([`Lab::attach_also`]).
    also: Vec<String>,
    /// When the last [`Lab::attach`] had left the old network (unix
    /// seconds): the moment the old path was gone.
    left_at: Option<f64>,
    /// When the last [`Lab::attach`] gave the new network's address to
    /// the kernel (unix seconds, [`super::access::change`]).
    address_at: Option<f64>,
}

impl Lab {
    /// Builds the topology: namespaces, links (with netem where the kernel
    /// has it and a delay is set, else a userspace delay line), addresses,
    /// forwarding, routes and nftables rulesets.
    pub fn build(spec: TopologySpec, topology_dir: &Path) -> Result<Lab> {
        let prefix = unique_prefix();
        let wire_ns = Netns::new(&prefix, "wire")?;
        let mut lab = Lab {
            wires: Vec::new(),
            hosts: BTreeMap::new(),
            wire_ns,
            spec: spec.clone(),
            attached: BTreeMap::new(),
            also: Vec::new(),
            left_at: None,
            address_at: None,
        };
        for h in &spec.hosts {
            let ns = Netns::new(&prefix, &h.name)?;
            if h.forward {
                ns.enable_forwarding()?;
            }
            lab.hosts.insert(h.name.clone(), ns);
        }
        for (i, l) in spec.links.iter().enumerate() {
            let a = End::parse(&l.a).expect("checked at load");
            let b = End::parse(&l.b).expect("checked at load");
            if l.delay_ms == 0 {
                veth(lab.host(&a.host)?, &a.dev, lab.host(&b.host)?, &b.dev)?;
            } else if super::platform::Kernel::detect().netem {
                // The kernel's own delay: netem on both ends, each
                // delaying what it sends.
                veth(lab.host(&a.host)?, &a.dev, lab.host(&b.host)?, &b.dev)?;
                for end in [&a, &b] {
                    batch(
                        "tc",
                        lab.host(&end.host)?,
                        &link_delay(&end.dev, l.delay_ms),
                    )?;
                }
            } else {
                let (wa, wb) = (format!("w{i}a"), format!("w{i}b"));
                veth(lab.host(&a.host)?, &a.dev, &lab.wire_ns, &wa)?;
                veth(lab.host(&b.host)?, &b.dev, &lab.wire_ns, &wb)?;
                let wire = Wire::start(&lab.wire_ns, &wa, &wb, Duration::from_millis(l.delay_ms))?;
                lab.wires.push((i, wire));
            }
            for end in [&a, &b] {
                for addr in end.addr.iter().flat_map(|a| a.split(',')) {
                    lab.host(&end.host)?.add_addr(&end.dev, addr)?;
                }
            }
        }
        for h in &spec.hosts {
            let ns = lab.host(&h.name)?;
            for r in &h.routes {
                let mut args = vec!["route", "replace"];
                args.extend(r.split_whitespace());
                ns.ip(&args)?;
            }
            if let Some(nft) = &h.nft {
                let file = topology_dir.join(nft);
                ns.exec("nft", &["-f", &file.display().to_string()])?;
            }
        }
        // Access links start down on the MN side: the MN is nowhere yet.
        for a in &spec.access {
            lab.host(&a.host)?.link_up(&a.dev, false)?;
        }
        Ok(lab)
    }

    /// Loads `lab/figure1.toml` (or another topology file) and builds it.
    pub fn build_file(path: &Path) -> Result<Lab> {
        let spec = TopologySpec::load(path)?;
        let dir = path
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Lab::build(spec, &dir)
    }

    /// Sets every delayed link's delay (each way) to `delay_ms`: netem's
    /// `change` on both ends, in place, so that one lab serves a bench's
    /// rounds at several access RTTs. Only where netem carries the delay
    /// (the kernel tier): a delay line's delay is fixed when it starts.
    pub fn set_delay(&mut self, delay_ms: u64) -> Result<()> {
        if !self.wires.is_empty() {
            return Err(Error::Other(
                "lab::delay needs netem (the kernel tier): this lab's delay lines keep the delay they started with".into(),
            ));
        }
        for l in self.spec.links.iter_mut().filter(|l| l.delay_ms > 0) {
            for e in [&l.a, &l.b] {
                let end = End::parse(e).expect("checked at load");
                let ns = self.hosts.get(&end.host).expect("built from the spec");
                batch(
                    "tc",
                    ns,
                    &[format!(
                        "qdisc change dev {} parent 1:1 handle 10: netem delay {delay_ms}ms",
                        end.dev
                    )],
                )?;
            }
            l.delay_ms = delay_ms;
        }
        Ok(())
    }

    pub fn host(&self, name: &str) -> Result<&Netns> {
        self.hosts
            .get(name)
            .ok_or_else(|| Error::Other(format!("no host `{name}` in the topology")))
    }

    pub fn hosts(&self) -> impl Iterator<Item = &Netns> {
        self.hosts.values()
    }

    /// Where `host` is attached now.
    pub fn attached(&self, host: &str) -> Option<&str> {
        self.attached.get(host).map(String::as_str)
    }

    /// Moves the MN to access network `name`, break before make: the old
    /// link loses the network's address and goes down, then the new one comes up with
    /// its address and default route (what a DHCP client would set).
    /// Both halves go through rtnetlink from this process
    /// ([`super::access`]): no process start inside the measured move.
    /// [`Lab::left_at`] says when the old path was gone.
    pub fn attach(&mut self, name: &str) -> Result<()> {
        self.attach_late(name, Duration::ZERO)
    }

    /// [`Lab::attach`], the new network's address and default route
    /// coming `late` after its link is up (a DHCP lease's exchange).
    pub fn attach_late(&mut self, name: &str, late: Duration) -> Result<()> {
        let access = self.spec.access(name)?.clone();
        self.detach(&access.host)?;
        self.left_at = Some(unix_now());
        self.address_at = self.bring_up(&access, None, late)?;
        self.attached
            .insert(access.host.clone(), access.name.clone());
        Ok(())
    }

    /// When the last [`Lab::attach`] had left the old network (or began,
    /// on a first attachment), unix seconds.
    pub fn left_at(&self) -> Option<f64> {
        self.left_at
    }

    /// When the last [`Lab::attach`] gave the kernel the new network's
    /// address (unix seconds): the address change itself, before which
    /// neither charon nor mip4d can do anything about the move.
    pub fn address_at(&self) -> Option<f64> {
        self.address_at
    }

    /// Detaches `host` from its current access network, if any.
    pub fn detach(&mut self, host: &str) -> Result<()> {
        let Some(current) = self.attached.remove(host) else {
            return Ok(());
        };
        let access = self.spec.access(&current)?.clone();
        self.take_down(&access)
    }

    /// Brings access network `name` up beside the ones its host is on
    /// (more than one interface): its address, and a default route with
    /// a metric of its own (100 + the network's place in the topology),
    /// so that each network's route stays while the others come and go.
    pub fn attach_also(&mut self, name: &str) -> Result<()> {
        let access = self.spec.access(name)?.clone();
        let place = self.spec.access.iter().position(|a| a.name == name);
        let metric = 100 + place.unwrap_or_default();
        self.bring_up(&access, u32::try_from(metric).ok(), Duration::ZERO)?;
        self.also.push(name.to_string());
        Ok(())
    }

    /// The access link up with its address and a default route
    /// (replacing the default route, or beside the others with `metric`).
    fn bring_up(
        &self,
        access: &AccessSpec,
        metric: Option<u32>,
        late: Duration,
    ) -> Result<Option<f64>> {
        let ns = self.host(&access.host)?;
        let step = access::Step::Up { metric, late };
        access::change(ns.name(), &[(access, step, self.peer(access)?)])
    }

    /// The network's end of `access`'s link (its namespace and device).
    fn peer(&self, access: &AccessSpec) -> Result<Option<access::Peer>> {
        let ours = |e: &End| e.host == access.host && e.dev == access.dev;
        for l in &self.spec.links {
            let (Some(a), Some(b)) = (End::parse(&l.a), End::parse(&l.b)) else {
                continue;
            };
            let other = match (ours(&a), ours(&b)) {
                (true, _) => b,
                (_, true) => a,
                _ => continue,
            };
            return Ok(Some((
                self.host(&other.host)?.name().to_string(),
                other.dev,
            )));
        }
        Ok(None)
    }

    /// Only the network's own address goes (what a DHCP client
    /// releases): with kernel-netlink, charon installs the VPN's virtual
    /// IP on the access interface too, and it must stay. Then the link.
    fn take_down(&self, access: &AccessSpec) -> Result<()> {
        let ns = self.host(&access.host)?;
        access::change(ns.name(), &[(access, access::Step::Down, None)]).map(drop)
    }

    /// Takes access network `name` down, whether it came up by
    /// [`Lab::attach`] or [`Lab::attach_also`]: its address goes, then
    /// its link.
    pub fn detach_net(&mut self, name: &str) -> Result<()> {
        let access = self.spec.access(name)?.clone();
        if self.attached(&access.host) == Some(name) {
            return self.detach(&access.host);
        }
        let Some(i) = self.also.iter().position(|n| n == name) else {
            return Err(Error::Other(format!("the MN is not on `{name}`")));
        };
        self.also.remove(i);
        self.take_down(&access)
    }

    /// The delay line of the link with an end at `host:dev`, if it has one
    /// (to make it lossy).
    pub fn wire(&self, host: &str, dev: &str) -> Option<&Wire> {
        self.wires.iter().find_map(|(i, w)| {
            let l = &self.spec.links[*i];
            [&l.a, &l.b]
                .iter()
                .any(|e| End::parse(e).is_some_and(|e| e.host == host && e.dev == dev))
                .then_some(w)
        })
    }

    /// The interfaces of every host (for captures): `(host, dev)`.
    pub fn interfaces(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for l in &self.spec.links {
            for e in [&l.a, &l.b] {
                let e = End::parse(e).expect("checked at load");
                out.push((e.host, e.dev));
            }
        }
        out
    }
}

pub(super) fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// netem's delay for what `dev` sends, as `tc -batch` lines: only IP
/// that is not Neighbor Discovery waits (RFC 4861 §4's types 133-137,
/// right after the IPv6 header); ARP and ND pass at once, as the
/// userspace delay line lets them (`wire::held`): the delay stands for
/// the path beyond the access router, not for the access link itself.
/// A prio qdisc with two bands: band 1:1 is netem, band 1:2 (where the
/// priomap sends everything unclassified) a plain FIFO.
fn link_delay(dev: &str, delay_ms: u64) -> Vec<String> {
    let mut lines = vec![
        format!(
            "qdisc add dev {dev} root handle 1: prio bands 2 priomap{}",
            " 1".repeat(16)
        ),
        format!("qdisc add dev {dev} parent 1:1 handle 10: netem delay {delay_ms}ms"),
    ];
    for t in 133..=137 {
        lines.push(format!(
            "filter add dev {dev} parent 1: prio 1 protocol ipv6 u32 \
             match u8 58 0xff at 6 match u8 {t} 0xff at 40 flowid 1:2"
        ));
    }
    // One protocol per filter priority (the kernel's rule).
    for (prio, protocol) in [(2, "ipv6"), (3, "ip")] {
        lines.push(format!(
            "filter add dev {dev} parent 1: prio {prio} protocol {protocol} u32 \
             match u32 0 0 flowid 1:1"
        ));
    }
    lines
}

/// `TOOL -n NS -batch -` (ip or tc) with `lines`.
fn batch(tool: &str, ns: &Netns, lines: &[String]) -> Result<()> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let cmd = format!("{tool} -n {} -batch - <<< {lines:?}", ns.name());
    let spawn = |source| Error::Spawn {
        cmd: cmd.clone(),
        source,
    };
    let mut child = Command::new(tool)
        .args(["-n", ns.name(), "-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("{}\n", lines.join("\n")).as_bytes())
            .map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(Error::Command {
            cmd,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure1_file_is_consistent() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/figure1.toml");
        let spec = TopologySpec::load(&path).unwrap();
        assert!(spec.access("ext-b").is_ok());
        // ext-a6 is ext-a's link with an IPv6 address only.
        let a6 = spec.access("ext-a6").unwrap();
        assert_eq!(
            (a6.dev.as_str(), a6.gateway.as_str()),
            ("eth-a", "2001:db8:a::1")
        );
        let inet_a = spec
            .links
            .iter()
            .filter_map(|l| End::parse(&l.a))
            .find(|e| e.host == "inet" && e.dev == "eth-a")
            .unwrap();
        assert_eq!(
            inet_a.addr.as_deref(),
            Some("192.0.2.1/24,2001:db8:a::1/64,172.16.3.1/24")
        );
        // ext-p is ext-a's link too, with a private range routed without
        // NAT; ext-c a second NATed network, its router natc.
        let p = spec.access("ext-p").unwrap();
        assert_eq!(
            (p.dev.as_str(), p.gateway.as_str()),
            ("eth-a", "172.16.3.1")
        );
        assert_eq!(spec.access("ext-c").unwrap().host, "mn");
        assert!(spec.hosts.iter().any(|h| h.name == "natc"));
        assert_eq!(
            spec.link_delay("mn", "eth-a"),
            Some(Duration::from_millis(10))
        );
    }

    #[test]
    fn bad_link_end_is_named() {
        let text = "[[host]]\nname = \"a\"\n[[link]]\na = \"a:eth0\"\nb = \"zz:eth0\"\n";
        let spec: TopologySpec = toml::from_str(text).unwrap();
        let err = spec.check().unwrap_err();
        assert!(err.contains("no host `zz`"), "{err}");
    }
}
