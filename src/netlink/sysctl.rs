//! The few sysctls an HA or MN sets, through /proc/sys (what `sysctl -w`
//! does; no netlink interface covers all of them).

use std::fs;
use std::io;
use std::path::PathBuf;

fn conf_path(ifname: &str, key: &str) -> io::Result<PathBuf> {
    family_conf_path("ipv4", ifname, key)
}

fn family_conf_path(family: &str, ifname: &str, key: &str) -> io::Result<PathBuf> {
    check_ifname(ifname)?;
    Ok(PathBuf::from(format!(
        "/proc/sys/net/{family}/conf/{ifname}/{key}"
    )))
}

/// An interface name is one path component; refuse anything else so a
/// configured name can never reach elsewhere under /proc or /sys.
fn check_ifname(ifname: &str) -> io::Result<()> {
    if ifname.is_empty()
        || ifname.len() > 15
        || ifname.contains('/')
        || ifname == "."
        || ifname == ".."
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid interface name {ifname:?}"),
        ));
    }
    Ok(())
}

fn write_bool(path: PathBuf, on: bool) -> io::Result<()> {
    write_value(path, u8::from(on))
}

fn write_value(path: PathBuf, value: impl std::fmt::Display) -> io::Result<()> {
    fs::write(&path, format!("{value}\n"))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn read_number<T: std::str::FromStr>(path: PathBuf) -> io::Result<T> {
    let s = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {s:?}", path.display()),
        )
    })
}

fn read_bool(path: PathBuf) -> io::Result<bool> {
    let s = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(s.trim() != "0")
}

/// net.ipv4.ip_forward: an HA forwards between the home link and tunnels.
pub fn set_ip_forward(on: bool) -> io::Result<()> {
    write_bool("/proc/sys/net/ipv4/ip_forward".into(), on)
}

pub fn ip_forward() -> io::Result<bool> {
    read_bool("/proc/sys/net/ipv4/ip_forward".into())
}

/// net.ipv6.conf.all.forwarding: an HA carrying DSMIPv4 prefixes (RFC
/// 5454) forwards IPv6 between its links and the tunnels.
pub fn set_ipv6_forwarding(on: bool) -> io::Result<()> {
    write_bool("/proc/sys/net/ipv6/conf/all/forwarding".into(), on)
}

pub fn ipv6_forwarding() -> io::Result<bool> {
    read_bool("/proc/sys/net/ipv6/conf/all/forwarding".into())
}

/// The interfaces with net.ipv6.conf.IF.accept_ra = 1: they take Router
/// Advertisements only while IPv6 forwarding is off.
pub fn accept_ra_unless_forwarding() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/proc/sys/net/ipv6/conf") else {
        return Vec::new();
    };
    let mut found: Vec<String> = dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "all" && n != "default")
        .filter(|n| {
            fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{n}/accept_ra"))
                .is_ok_and(|v| v.trim() == "1")
        })
        .collect();
    found.sort();
    found
}

/// net.ipv6.conf.IF.mtu: a link's IPv6 MTU, at most its link MTU (the
/// kernel puts it back to the link MTU whenever that changes).
pub fn set_ipv6_mtu(ifname: &str, mtu: u32) -> io::Result<()> {
    write_value(family_conf_path("ipv6", ifname, "mtu")?, mtu)
}

/// A link's MTU as the kernel has it now.
pub fn link_mtu(ifname: &str) -> io::Result<u32> {
    check_ifname(ifname)?;
    read_number(PathBuf::from(format!("/sys/class/net/{ifname}/mtu")))
}

/// net.ipv4.conf.IF.proxy_arp: answer ARP for any address routed
/// elsewhere (the coarse alternative to per-address proxy entries).
pub fn set_proxy_arp(ifname: &str, on: bool) -> io::Result<()> {
    write_bool(conf_path(ifname, "proxy_arp")?, on)
}

pub fn proxy_arp(ifname: &str) -> io::Result<bool> {
    read_bool(conf_path(ifname, "proxy_arp")?)
}

/// net.ipv4.conf.IF.rp_filter = 0: a tunnel device receives datagrams
/// whose source the reverse-path filter would judge by the wrong route.
pub fn disable_rp_filter(ifname: &str) -> io::Result<()> {
    write_bool(conf_path(ifname, "rp_filter")?, false)
}

/// net.ipv4.conf.IF.rp_filter as it is (0 off, 1 strict, 2 loose), so
/// that a daemon can put back the value it found.
pub fn rp_filter(ifname: &str) -> io::Result<u8> {
    read_number(conf_path(ifname, "rp_filter")?)
}

pub fn set_rp_filter(ifname: &str, value: u8) -> io::Result<()> {
    write_value(conf_path(ifname, "rp_filter")?, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_cannot_escape_proc_sys() {
        assert!(conf_path("../../kernel", "x").is_err());
        assert!(conf_path("..", "x").is_err());
        assert!(conf_path("", "x").is_err());
        assert_eq!(
            conf_path("eth0", "proxy_arp").unwrap(),
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0/proxy_arp")
        );
    }
}
