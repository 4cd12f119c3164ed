//! The emulation's factor for the kernel work charon does at a move
//! (issue 14 §1 on the kernel tier): the same XFRM policy add/delete
//! cycles, timed by this code on the host and in the guest. A MOBIKE move
//! is mostly such work (kernel-netlink replaces the SAs' addresses and
//! updates every policy); policies need no ESP, so the cycle runs on the
//! host's kernel too, and guest time / host time is how much slower the
//! guest does this kind of work. The tier's fixed cost divided by it is
//! then an estimate of the same cost on a real CPU (lab/README.md).
//!
//! Each run is in a network namespace of its own (the calling thread
//! unshares one), so the SPD starts empty and no real policy is touched.
//! The time is the thread's CPU time (user and kernel: the syscalls' work
//! is the thread's). In the guest that still counts the host's stalls
//! that land inside the run (the guest's clock runs on while QEMU waits
//! for a host CPU, charged to whatever ran), so of several runs the least
//! is taken: the one the fewest stalls hit, on either side.
//!
//! The messages are packed here, as `<linux/xfrm.h>` lays them out (no
//! XFRM crate is among the project's dependencies): struct
//! `xfrm_userpolicy_info` (168 bytes) with one `xfrm_user_tmpl` (64
//! bytes, attribute XFRMA_TMPL) as charon's tunnel-mode ESP policies
//! carry, and `xfrm_userpolicy_id` (64 bytes) to delete it.

use std::net::Ipv4Addr;
use std::time::Instant;

use netlink_sys::{protocols::NETLINK_XFRM, Socket, SocketAddr};
use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

const XFRM_MSG_NEWPOLICY: u16 = 0x13;
const XFRM_MSG_DELPOLICY: u16 = 0x14;
const XFRMA_TMPL: u16 = 5;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const XFRM_POLICY_OUT: u8 = 1;
const XFRM_MODE_TUNNEL: u8 = 1;
const IPPROTO_ESP: u8 = 50;
const AF_INET: u16 = libc::AF_INET as u16;

/// sizeof(struct xfrm_selector).
const SELECTOR_LEN: usize = 56;
/// sizeof(struct xfrm_userpolicy_info).
const POLICY_INFO_LEN: usize = 168;
/// sizeof(struct xfrm_userpolicy_id).
const POLICY_ID_LEN: usize = 64;
/// sizeof(struct xfrm_user_tmpl).
const TMPL_LEN: usize = 64;

/// One measurement: `cycles` policies added and deleted, `runs` times.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Cost {
    pub cycles: usize,
    pub runs: usize,
    /// One add + delete, the thread's CPU time, µs: the least run's.
    pub cycle_cpu_us: f64,
    /// The same in wall time (the least run's).
    pub cycle_wall_us: f64,
}

/// struct xfrm_selector for `src/32 -> dst/16`, family AF_INET.
fn selector(src: Ipv4Addr, dst: Ipv4Addr) -> [u8; SELECTOR_LEN] {
    let mut s = [0u8; SELECTOR_LEN];
    s[0..4].copy_from_slice(&dst.octets()); // daddr
    s[16..20].copy_from_slice(&src.octets()); // saddr
    s[40..42].copy_from_slice(&AF_INET.to_ne_bytes()); // family
    s[42] = 16; // prefixlen_d
    s[43] = 32; // prefixlen_s
    s
}

/// A netlink message: header, then `body` (already 4-aligned).
fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = 16 + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// XFRM_MSG_NEWPOLICY: out, ESP tunnel `local -> gateway`, reqid `reqid`.
fn new_policy(seq: u32, sel: &[u8; SELECTOR_LEN], local: Ipv4Addr, gateway: Ipv4Addr) -> Vec<u8> {
    let mut info = [0u8; POLICY_INFO_LEN];
    info[..SELECTOR_LEN].copy_from_slice(sel);
    // struct xfrm_lifetime_cfg at 56: soft/hard byte and packet limits
    // infinite (as charon sets them), the four time limits 0 (none).
    for i in 0..4 {
        let at = 56 + 8 * i;
        info[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
    }
    // curlft (152..) stays 0; priority at 152, index 156, dir 160.
    info[152..156].copy_from_slice(&100u32.to_ne_bytes());
    info[160] = XFRM_POLICY_OUT;
    let mut tmpl = [0u8; TMPL_LEN];
    tmpl[0..4].copy_from_slice(&gateway.octets()); // id.daddr
    tmpl[20] = IPPROTO_ESP; // id.proto
    tmpl[24..26].copy_from_slice(&AF_INET.to_ne_bytes()); // family
    tmpl[28..32].copy_from_slice(&local.octets()); // saddr
    tmpl[44..48].copy_from_slice(&seq.to_ne_bytes()); // reqid
    tmpl[48] = XFRM_MODE_TUNNEL;
    for at in [52, 56, 60] {
        tmpl[at..at + 4].copy_from_slice(&u32::MAX.to_ne_bytes()); // algos
    }
    let mut body = info.to_vec();
    body.extend_from_slice(&((4 + TMPL_LEN) as u16).to_ne_bytes());
    body.extend_from_slice(&XFRMA_TMPL.to_ne_bytes());
    body.extend_from_slice(&tmpl);
    message(XFRM_MSG_NEWPOLICY, NLM_F_CREATE | NLM_F_EXCL, seq, &body)
}

/// XFRM_MSG_DELPOLICY by selector and direction.
fn del_policy(seq: u32, sel: &[u8; SELECTOR_LEN]) -> Vec<u8> {
    let mut id = [0u8; POLICY_ID_LEN];
    id[..SELECTOR_LEN].copy_from_slice(sel);
    id[60] = XFRM_POLICY_OUT; // after index (56..60)
    message(XFRM_MSG_DELPOLICY, 0, seq, &id)
}

/// Sends `req` and reads its ACK: Err with the kernel's error otherwise.
fn round_trip(sock: &Socket, req: &[u8], buf: &mut Vec<u8>) -> Result<(), String> {
    sock.send(req, 0)
        .map_err(|e| format!("netlink send: {e}"))?;
    buf.clear();
    let n = sock
        .recv(buf, 0)
        .map_err(|e| format!("netlink receive: {e}"))?;
    let reply = &buf[..n];
    let kind = reply.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let code = reply
        .get(16..20)
        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    match (kind, code) {
        (Some(NLMSG_ERROR), Some(0)) => Ok(()),
        (Some(NLMSG_ERROR), Some(e)) => Err(format!(
            "the kernel refused an XFRM policy: {}",
            std::io::Error::from_raw_os_error(-e)
        )),
        _ => Err("an XFRM reply that is no ACK".into()),
    }
}

fn thread_cpu_s() -> f64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
}

/// One run in the calling thread's namespace: (CPU s, wall s).
fn one_run(cycles: usize) -> Result<(f64, f64), String> {
    let mut sock = Socket::new(NETLINK_XFRM).map_err(|e| format!("netlink socket: {e}"))?;
    sock.bind_auto().map_err(|e| format!("netlink bind: {e}"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(|e| format!("netlink connect: {e}"))?;
    let (local, gateway) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 1));
    let mut buf = Vec::with_capacity(8192);
    let (cpu0, wall0) = (thread_cpu_s(), Instant::now());
    for i in 0..cycles {
        let seq = i as u32 + 1;
        let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + seq);
        let sel = selector(src, Ipv4Addr::new(10, 1, 0, 0));
        round_trip(&sock, &new_policy(seq, &sel, local, gateway), &mut buf)?;
        round_trip(&sock, &del_policy(seq, &sel), &mut buf)?;
    }
    Ok((thread_cpu_s() - cpu0, wall0.elapsed().as_secs_f64()))
}

/// `runs` runs of `cycles` add/delete cycles, each run in a new network
/// namespace (a thread of its own unshares one: needs root).
pub fn measure(cycles: usize, runs: usize) -> Result<Cost, String> {
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for _ in 0..runs.max(1) {
        let (c, w) = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("a network namespace for the XFRM cycles: {e}"))?;
            one_run(cycles)
        })
        .join()
        .map_err(|_| "the XFRM cycle thread panicked".to_string())??;
        cpu.push(c);
        wall.push(w);
    }
    let per_cycle_us = |v: &[f64]| {
        let least = v.iter().copied().fold(f64::INFINITY, f64::min);
        (least / cycles.max(1) as f64 * 1e8).round() / 100.0
    };
    Ok(Cost {
        cycles,
        runs: cpu.len(),
        cycle_cpu_us: per_cycle_us(&cpu),
        cycle_wall_us: per_cycle_us(&wall),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_have_the_kernels_sizes_and_fields() {
        let sel = selector(Ipv4Addr::new(10, 200, 0, 1), Ipv4Addr::new(10, 1, 0, 0));
        let add = new_policy(7, &sel, Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::LOCALHOST);
        // nlmsghdr + xfrm_userpolicy_info + nlattr + xfrm_user_tmpl.
        assert_eq!(add.len(), 16 + 168 + 4 + 64);
        assert_eq!(u32::from_ne_bytes(add[0..4].try_into().unwrap()), 252);
        assert_eq!(add[16 + 16..16 + 20], [10, 200, 0, 1]);
        assert_eq!(add[16 + 160], XFRM_POLICY_OUT);
        let del = del_policy(7, &sel);
        assert_eq!(del.len(), 16 + 64);
        assert_eq!(del[16 + 60], XFRM_POLICY_OUT);
    }

    /// The cycles run against this machine's kernel (XFRM is built in on
    /// the development machines and the tier's guest alike): every
    /// policy added is accepted and deleted again.
    #[test]
    fn the_kernel_accepts_each_policy_and_its_deletion() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: a network namespace needs root");
            return;
        }
        let c = measure(20, 2).expect("the cycles run");
        assert_eq!((c.cycles, c.runs), (20, 2));
        assert!(c.cycle_cpu_us > 0.0 && c.cycle_wall_us > 0.0, "{c:?}");
    }
}
