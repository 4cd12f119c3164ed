//! The operating-system calls that no crate covers in the shape needed:
//! one file per facility, every `unsafe` block in it with a SAFETY
//! comment, and a safe API above it. Everything else uses `nix`,
//! `socket2` or the netlink crates directly.
//! - [`tun`]: the TUN device (TUNSETIFF on /dev/net/tun).

pub mod tun;
