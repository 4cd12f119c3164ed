//! A Linux TUN device (layer 3, no packet-information prefix): what the
//! kernel routes into it we read as bare IPv4 datagrams, and what we write
//! the kernel receives as if it came in on that interface.
//!
//! Why not the `tun` crate: the data plane needs one ioctl (TUNSETIFF) on
//! /dev/net/tun and a non-blocking fd for tokio's `AsyncFd`; link state and
//! MTU go through rtnetlink like every other link change in this project.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca; // _IOW('T', 202, int)
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFNAMSIZ: usize = 16;

// The kernel reads the request and writes the chosen name back, hence
// read-write; "bad" because TUNSETIFF's number does not encode the
// `struct ifreq` it really takes.
nix::ioctl_readwrite_bad!(tunsetiff, TUNSETIFF, IfReqFlags);

/// `struct ifreq` as TUNSETIFF reads it: the name and the flags member of
/// the union, padded to the union's full size (24 bytes on 64-bit Linux).
#[repr(C)]
struct IfReqFlags {
    name: [u8; IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An open TUN device; the interface disappears when this is dropped.
#[derive(Debug)]
pub struct TunDevice {
    file: File,
    name: String,
}

impl TunDevice {
    /// Creates (or attaches to) the TUN interface `name`. A name ending in
    /// `%d` lets the kernel pick the number.
    pub fn open(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= IFNAMSIZ || name.contains(['/', ' ', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid interface name {name:?}"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let mut req = IfReqFlags {
            name: [0; IFNAMSIZ],
            flags: IFF_TUN | IFF_NO_PI,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `req` is a properly sized and aligned `struct ifreq`
        // (name, flags, padded to the union's size) that lives across the
        // call; the fd is open /dev/net/tun.
        unsafe { tunsetiff(file.as_raw_fd(), &mut req) }.map_err(io::Error::from)?;
        let len = req.name.iter().position(|b| *b == 0).unwrap_or(IFNAMSIZ);
        let name = String::from_utf8_lossy(&req.name[..len]).into_owned();
        Ok(TunDevice { file, name })
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads one datagram (non-blocking: `WouldBlock` when none is queued).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one datagram (non-blocking).
    pub fn send(&self, datagram: &[u8]) -> io::Result<usize> {
        (&self.file).write(datagram)
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl AsFd for TunDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
