//! The few IPv4 sysctls an HA or MN sets, through /proc/sys (what
//! `sysctl -w` does; no netlink interface covers all of them).

use std::fs;
use std::io;
use std::path::PathBuf;

fn conf_path(ifname: &str, key: &str) -> io::Result<PathBuf> {
    // An interface name is one path component; refuse anything else so a
    // configured name can never write elsewhere under /proc/sys.
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
    Ok(PathBuf::from(format!(
        "/proc/sys/net/ipv4/conf/{ifname}/{key}"
    )))
}

fn write_bool(path: PathBuf, on: bool) -> io::Result<()> {
    fs::write(&path, if on { "1\n" } else { "0\n" })
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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
    let path = conf_path(ifname, "rp_filter")?;
    let s = fs::read_to_string(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    s.trim().parse().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {s:?}", path.display()),
        )
    })
}

pub fn set_rp_filter(ifname: &str, value: u8) -> io::Result<()> {
    let path = conf_path(ifname, "rp_filter")?;
    fs::write(&path, format!("{value}\n"))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
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
