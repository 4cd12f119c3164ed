//! Letting one socket past the VPN: the boundary-detection probe of RFC
//! 5266 §3.4 must leave "without VPN encapsulation" from the physical
//! interface even while the VPN's policies and routes would catch it.
//!
//! Two mechanisms catch traffic on an MN running strongSwan, and each has
//! its per-socket antidote, so nothing global is changed and nothing is
//! left behind when the process dies (the kernel drops socket policies
//! with the socket):
//!
//! 1. Kernel IPsec (XFRM) policies: a *socket policy* takes precedence
//!    over the SPD for that socket. An `xfrm_userpolicy_info` with action
//!    ALLOW and no templates means "no IPsec", installed for both
//!    directions with `setsockopt(IPPROTO_IP, IP_XFRM_POLICY)` (linux/in.h
//!    `IP_XFRM_POLICY`, linux/xfrm.h structures; the same mechanism
//!    strongSwan's kernel-netlink plugin uses for charon's own IKE sockets).
//! 2. kernel-libipsec (userspace ESP) routes the VPN's traffic into its TUN
//!    device (routing table 220 by default). `SO_BINDTODEVICE` makes route
//!    lookups for the socket consider only the physical interface, and
//!    binding to the physical address fixes the source, so the probe is
//!    sent from the new care-of address (RFC 5266 §3.4: the co-located
//!    care-of address is the physical address).

use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::sys::socket::setsockopt;

// linux/in.h
const IP_XFRM_POLICY: libc::c_int = 17;
// linux/xfrm.h
const XFRM_POLICY_IN: u8 = 0;
const XFRM_POLICY_OUT: u8 = 1;
const XFRM_POLICY_ALLOW: u8 = 0;
const XFRM_INF: u64 = u64::MAX;

/// `struct xfrm_selector` (linux/xfrm.h). All zero with `family` set
/// selects everything.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XfrmSelector {
    daddr: [u32; 4],
    saddr: [u32; 4],
    dport: u16,
    dport_mask: u16,
    sport: u16,
    sport_mask: u16,
    family: u16,
    prefixlen_d: u8,
    prefixlen_s: u8,
    proto: u8,
    ifindex: libc::c_int,
    user: u32,
}

/// `struct xfrm_lifetime_cfg`.
#[repr(C)]
#[derive(Clone, Copy)]
struct XfrmLifetimeCfg {
    soft_byte_limit: u64,
    hard_byte_limit: u64,
    soft_packet_limit: u64,
    hard_packet_limit: u64,
    soft_add_expires_seconds: u64,
    hard_add_expires_seconds: u64,
    soft_use_expires_seconds: u64,
    hard_use_expires_seconds: u64,
}

/// `struct xfrm_lifetime_cur`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct XfrmLifetimeCur {
    bytes: u64,
    packets: u64,
    add_time: u64,
    use_time: u64,
}

/// `struct xfrm_userpolicy_info`.
#[repr(C)]
#[derive(Clone, Copy)]
struct XfrmUserpolicyInfo {
    sel: XfrmSelector,
    lft: XfrmLifetimeCfg,
    curlft: XfrmLifetimeCur,
    priority: u32,
    index: u32,
    dir: u8,
    action: u8,
    flags: u8,
    share: u8,
}

// The kernel checks the option length against its own struct.
const _: () = assert!(mem::size_of::<XfrmSelector>() == 56);
const _: () = assert!(mem::size_of::<XfrmUserpolicyInfo>() == 168);

fn bypass_policy(dir: u8) -> XfrmUserpolicyInfo {
    XfrmUserpolicyInfo {
        sel: XfrmSelector {
            family: libc::AF_INET as u16,
            ..Default::default()
        },
        lft: XfrmLifetimeCfg {
            soft_byte_limit: XFRM_INF,
            hard_byte_limit: XFRM_INF,
            soft_packet_limit: XFRM_INF,
            hard_packet_limit: XFRM_INF,
            soft_add_expires_seconds: 0,
            hard_add_expires_seconds: 0,
            soft_use_expires_seconds: 0,
            hard_use_expires_seconds: 0,
        },
        curlft: XfrmLifetimeCur::default(),
        priority: 0,
        index: 0,
        dir,
        action: XFRM_POLICY_ALLOW,
        flags: 0,
        share: 0,
    }
}

/// Exempts an IPv4 socket from all XFRM (kernel IPsec) policies, inbound
/// and outbound. Needs CAP_NET_ADMIN.
pub fn bypass_ipsec<S: AsFd>(sock: &S) -> io::Result<()> {
    for dir in [XFRM_POLICY_IN, XFRM_POLICY_OUT] {
        // The struct has the kernel's layout (size asserted above).
        let policy = bypass_policy(dir);
        setsockopt(sock.as_fd(), libc::IPPROTO_IP, IP_XFRM_POLICY, &policy).map_err(|e| {
            io::Error::new(e.kind(), format!("IP_XFRM_POLICY bypass (dir {dir}): {e}"))
        })?;
    }
    Ok(())
}

/// Pins a socket to the physical interface `ifname` (SO_BINDTODEVICE) and
/// binds it to `local` (the physical address, any port if 0).
pub fn pin_to_interface(sock: &Socket, ifname: &str, local: SocketAddrV4) -> io::Result<()> {
    sock.bind_device(Some(ifname.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("SO_BINDTODEVICE {ifname}: {e}")))?;
    sock.bind(&local.into())
        .map_err(|e| io::Error::new(e.kind(), format!("bind {local}: {e}")))
}

/// The firewall mark of the probe's datagrams (SO_MARK): mip4d's VPN
/// guard in mode 'mc' lets datagrams with this mark through to the main
/// table, ahead of the rules that refuse what must stay inside ESP
/// (`daemons::mn::kernel`). 434, the Mobile IP port.
pub const PROBE_FWMARK: u32 = 0x434;

/// A UDP socket for the boundary-detection probe: IPsec bypassed both
/// ways, pinned to the physical interface and bound to its address, and
/// marked ([`PROBE_FWMARK`]).
pub fn probe_socket(ifname: &str, local: SocketAddrV4) -> io::Result<std::net::UdpSocket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_cloexec(true)?;
    bypass_ipsec(&sock)?;
    sock.set_mark(PROBE_FWMARK)
        .map_err(|e| io::Error::new(e.kind(), format!("SO_MARK: {e}")))?;
    pin_to_interface(&sock, ifname, local)?;
    Ok(sock.into())
}
