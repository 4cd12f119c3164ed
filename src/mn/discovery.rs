//! Agent discovery on the mobile node (RFC 5944 §2.4), sans-IO: the
//! foreign agents heard on each link, from their Agent Advertisements
//! (ICMP Router Advertisements with the Mobility Agent Advertisement
//! Extension, §2.1), and the Agent Solicitations to send while a link has
//! none (§2.4).
//!
//! It runs beside co-located address acquisition on every attachment
//! (RFC 5266 §3.1.2): what it hears is only a candidate. Whether an
//! agent's care-of address is used is the node's decision, after the
//! authenticated probe found the network trusted (RFC 5266 §3, §3.4):
//! an advertisement carries no authentication, so on its own it proves
//! nothing about the network.
//!
//! Rules kept here:
//! - an agent counts only while its advertisement's Lifetime (RFC 1256
//!   §3, the ICMP header's) runs from the last one heard (§2.4.2: the
//!   node assumes it lost contact when none arrives within it);
//! - only an agent offering foreign-agent service ('F') with a care-of
//!   address, and not busy ('B': it takes no new registrations, §2.1.1);
//! - a sequence number below 256 after one at or above it means the
//!   agent rebooted and lost its visitor list: register again (§2.4.3);
//! - solicitations (§2.4): at most three, one a second, while a link has
//!   no agent; then a binary exponential backoff up to once a minute
//!   ("at least one minute" between them at the maximum).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::wire::icmp::{AdvFlags, AgentAdvertisementRepr};

/// §2.4: the first solicitations at most one a second, three of them.
const INITIAL_SOLICITATIONS: u32 = 3;
const INITIAL_INTERVAL: Duration = Duration::from_secs(1);
/// §2.4: the backoff's maximum interval, "at least one minute".
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// A foreign agent heard on a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeardAgent {
    pub ifname: String,
    /// The advertisement's IP source: the agent's address on the link,
    /// where requests go and the router for the home address (RFC 5944
    /// §3.6.1.1, §4.2.2).
    pub address: Ipv4Addr,
    /// The first care-of address it offers.
    pub care_of: Ipv4Addr,
    /// The longest registration lifetime it accepts (§2.1.1).
    pub registration_lifetime: u16,
    /// 'T': it offers reverse tunnelling (RFC 3024 §3.1).
    pub reverse_tunnel: bool,
    pub sequence: u16,
    #[serde(skip)]
    pub expires: Instant,
}

/// What an advertisement changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// A new agent (or another care-of address) on the link.
    New(HeardAgent),
    /// The same agent again: its lifetime runs anew.
    Refreshed,
    /// The same agent, rebooted (§2.4.3): its visitor list is gone.
    Rebooted(HeardAgent),
}

/// Why an advertisement is not used; each is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    /// Not an Agent Advertisement the codec accepts (checksum, length, no
    /// mobility extension, an unknown non-skippable extension).
    Malformed,
    /// A home agent only, or no care-of address offered.
    NoForeignAgent,
    /// 'B': the agent takes no new registrations.
    Busy,
    /// Lifetime 0: the agent withdrew (RFC 1256 §3).
    Withdrawn,
}

/// Counters for `mip4ctl status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiscoveryStats {
    pub advertisements: u64,
    pub ignored_malformed: u64,
    pub ignored_no_foreign_agent: u64,
    pub ignored_busy: u64,
    pub agents_expired: u64,
    pub agents_rebooted: u64,
    pub solicitations: u64,
}

#[derive(Debug, Clone)]
struct Soliciting {
    ifname: String,
    sent: u32,
    next: Instant,
    interval: Duration,
}

/// The agents heard and the solicitations due. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct Discovery {
    agents: Vec<HeardAgent>,
    soliciting: Vec<Soliciting>,
    due: Vec<String>,
    stats: DiscoveryStats,
}

impl Discovery {
    pub fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    /// The agent heard on `ifname`, if its lifetime still runs.
    pub fn agent(&self, ifname: &str) -> Option<&HeardAgent> {
        self.agents.iter().find(|a| a.ifname == ifname)
    }

    pub fn agents(&self) -> &[HeardAgent] {
        &self.agents
    }

    /// A link has an address: solicit on it until an agent answers.
    pub fn attached(&mut self, now: Instant, ifname: &str) {
        if self.agent(ifname).is_some() || self.soliciting.iter().any(|s| s.ifname == ifname) {
            return;
        }
        self.soliciting.push(Soliciting {
            ifname: ifname.to_string(),
            sent: 0,
            next: now,
            interval: INITIAL_INTERVAL,
        });
        self.run_solicitations(now);
    }

    /// The link went (down, no address): its agents and solicitations
    /// with it. Returns the agent it had.
    pub fn detached(&mut self, ifname: &str) -> Option<HeardAgent> {
        self.soliciting.retain(|s| s.ifname != ifname);
        self.due.retain(|i| i != ifname);
        let i = self.agents.iter().position(|a| a.ifname == ifname)?;
        Some(self.agents.remove(i))
    }

    /// An ICMP message of type 9 received on `ifname` from `src`.
    pub fn advertisement(
        &mut self,
        now: Instant,
        ifname: &str,
        src: Ipv4Addr,
        icmp: &[u8],
    ) -> Result<Heard, Ignored> {
        self.stats.advertisements += 1;
        let adv = AgentAdvertisementRepr::parse_bytes(icmp).map_err(|_| {
            self.stats.ignored_malformed += 1;
            Ignored::Malformed
        })?;
        let m = &adv.mobility;
        let care_of = m.care_of_addresses.first().copied();
        let (true, Some(care_of)) = (m.flags.contains(AdvFlags::F), care_of) else {
            self.stats.ignored_no_foreign_agent += 1;
            return Err(Ignored::NoForeignAgent);
        };
        if adv.lifetime == 0 {
            self.forget(ifname, src);
            return Err(Ignored::Withdrawn);
        }
        if m.flags.contains(AdvFlags::B) {
            // A busy agent keeps no place for us: as if not heard.
            self.stats.ignored_busy += 1;
            self.forget(ifname, src);
            return Err(Ignored::Busy);
        }
        let heard = HeardAgent {
            ifname: ifname.to_string(),
            address: src,
            care_of,
            registration_lifetime: m.registration_lifetime,
            reverse_tunnel: m.flags.contains(AdvFlags::T),
            sequence: m.sequence,
            expires: now + Duration::from_secs(adv.lifetime.into()),
        };
        self.soliciting.retain(|s| s.ifname != ifname);
        self.due.retain(|i| i != ifname);
        let slot = self.agents.iter_mut().find(|a| a.ifname == ifname);
        let outcome = match slot {
            Some(old) if old.address == src && old.care_of == care_of => {
                let rebooted =
                    heard.sequence < 256 && (old.sequence >= 256 || heard.sequence < old.sequence);
                *old = heard.clone();
                if rebooted {
                    self.stats.agents_rebooted += 1;
                    Heard::Rebooted(heard)
                } else {
                    Heard::Refreshed
                }
            }
            // One agent per link: the newest heard (another agent, or
            // another care-of address, is a move, §2.4.2).
            Some(old) => {
                *old = heard.clone();
                Heard::New(heard)
            }
            None => {
                self.agents.push(heard.clone());
                Heard::New(heard)
            }
        };
        Ok(outcome)
    }

    fn forget(&mut self, ifname: &str, src: Ipv4Addr) {
        self.agents
            .retain(|a| !(a.ifname == ifname && a.address == src));
    }

    /// The interface to send the next Agent Solicitation on (to
    /// 224.0.0.2, TTL 1: RFC 5944 §2.2).
    pub fn poll_solicitation(&mut self) -> Option<String> {
        (!self.due.is_empty()).then(|| self.due.remove(0))
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.agents.iter().map(|a| a.expires);
        let solicit = self.soliciting.iter().map(|s| s.next);
        expiry.chain(solicit).min()
    }

    /// Runs what is due; returns the agents whose lifetime ran out.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<HeardAgent> {
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.agents)
            .into_iter()
            .partition(|a| now >= a.expires);
        self.agents = kept;
        self.stats.agents_expired += gone.len() as u64;
        self.run_solicitations(now);
        gone
    }

    /// Queues the solicitations due at `now`, and backs off (§2.4).
    fn run_solicitations(&mut self, now: Instant) {
        for s in &mut self.soliciting {
            if now < s.next {
                continue;
            }
            s.sent += 1;
            self.stats.solicitations += 1;
            self.due.push(s.ifname.clone());
            if s.sent >= INITIAL_SOLICITATIONS {
                s.interval = (s.interval * 2).min(MAX_INTERVAL);
            }
            s.next = now + s.interval;
        }
    }

    /// The agent's lifetime ran out without a new advertisement: solicit
    /// again on its link while the link stays.
    pub fn resolicit(&mut self, now: Instant, ifname: &str) {
        self.attached(now, ifname);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::icmp::MobilityAgentAdv;

    fn adv(seq: u16, lifetime: u16, flags: AdvFlags) -> Vec<u8> {
        AgentAdvertisementRepr {
            code: 0,
            lifetime,
            routers: vec![([10, 1, 20, 1].into(), 0)],
            mobility: MobilityAgentAdv {
                sequence: seq,
                registration_lifetime: 300,
                flags,
                care_of_addresses: vec![[10, 1, 20, 1].into()],
            },
            prefix_lengths: None,
            unknown: vec![],
            padding: false,
        }
        .to_bytes()
    }

    fn fa() -> AdvFlags {
        let mut f = AdvFlags::F;
        f.insert(AdvFlags::T);
        f
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 1, 20, 1);

    #[test]
    fn an_agent_counts_for_its_advertised_lifetime_only() {
        let t0 = Instant::now();
        let mut d = Discovery::default();
        let h = d.advertisement(t0, "eth0", SRC, &adv(0, 9, fa())).unwrap();
        assert!(matches!(h, Heard::New(ref a) if a.care_of == SRC && a.reverse_tunnel));
        assert_eq!(
            d.advertisement(t0, "eth0", SRC, &adv(1, 9, fa())),
            Ok(Heard::Refreshed)
        );
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_secs(9)));
        assert!(d
            .handle_timeout(t0 + Duration::from_millis(8999))
            .is_empty());
        let gone = d.handle_timeout(t0 + Duration::from_secs(9));
        assert_eq!(gone.len(), 1);
        assert!(d.agent("eth0").is_none());
    }

    #[test]
    fn home_agents_busy_agents_and_garbage_are_not_candidates() {
        let t0 = Instant::now();
        let mut d = Discovery::default();
        assert_eq!(
            d.advertisement(t0, "eth0", SRC, &adv(0, 9, AdvFlags::H)),
            Err(Ignored::NoForeignAgent)
        );
        let mut busy = fa();
        busy.insert(AdvFlags::B);
        assert_eq!(
            d.advertisement(t0, "eth0", SRC, &adv(0, 9, busy)),
            Err(Ignored::Busy)
        );
        let mut bad = adv(0, 9, fa());
        bad[2] ^= 0xff; // checksum
        assert_eq!(
            d.advertisement(t0, "eth0", SRC, &bad),
            Err(Ignored::Malformed)
        );
        assert!(d.agent("eth0").is_none());
        assert_eq!(d.stats().advertisements, 3);
    }

    #[test]
    fn a_sequence_number_below_256_after_one_above_means_a_reboot() {
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.advertisement(t0, "eth0", SRC, &adv(300, 9, fa()))
            .unwrap();
        assert!(matches!(
            d.advertisement(t0, "eth0", SRC, &adv(0, 9, fa())),
            Ok(Heard::Rebooted(_))
        ));
        // 0xffff wraps to 256 (§2.3.2): not a reboot.
        d.advertisement(t0, "eth0", SRC, &adv(0xffff, 9, fa()))
            .unwrap();
        assert_eq!(
            d.advertisement(t0, "eth0", SRC, &adv(256, 9, fa())),
            Ok(Heard::Refreshed)
        );
    }

    #[test]
    fn solicitations_three_a_second_apart_then_backing_off_to_a_minute() {
        let t0 = Instant::now();
        let mut d = Discovery::default();
        d.attached(t0, "eth0");
        let mut sent = vec![];
        let mut now = t0;
        while now < t0 + Duration::from_secs(400) {
            d.handle_timeout(now);
            while let Some(i) = d.poll_solicitation() {
                assert_eq!(i, "eth0");
                sent.push((now - t0).as_secs());
            }
            now = d.poll_timeout().unwrap();
        }
        assert_eq!(&sent[..6], &[0, 1, 2, 4, 8, 16]);
        let gaps: Vec<u64> = sent.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g <= 60));
        assert_eq!(gaps.last(), Some(&60));
        // An agent heard: no more solicitations on that link.
        d.advertisement(now, "eth0", SRC, &adv(0, 9, fa())).unwrap();
        assert_eq!(d.poll_timeout(), Some(now + Duration::from_secs(9)));
    }
}
