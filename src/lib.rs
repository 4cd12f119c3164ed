//! mip4-mobike: the mobile-node side of RFC 5266 (BCP 136), "Secure
//! Connectivity and Mobility Using Mobile IPv4 and MOBIKE", with the
//! internal home agent, foreign agent, charon plugin and lab around it.
//!
//! Layout (one job per module, see docs/ARCHITECTURE.md):
//! - [`wire`]: zero-copy views and owned representations of every message
//!   on the wire (RFC 5944, 3024, 3519, 2794, 5265, 5454).
//! - [`auth`], [`replay`]: MN-HA authentication (RFC 5944 §3.5) and
//!   replay protection (RFC 5944 §5.7).
//! - [`mn`]: the sans-IO mobile-node core (registration client, modes).
//! - [`ha`]: the sans-IO home-agent core (binding cache, request processing).
//! - [`fa`]: the sans-IO foreign-agent core (advertisements, visitor list,
//!   registration relay).
//! - [`dataplane`]: tunnels (kernel ipip or userspace TUN + raw socket).
//! - [`daemons`]: the I/O of mip4d, mip4-ha and mip4-fa around those cores.
//! - [`netlink`]: kernel glue (addresses, routes, rules, events, bypass).
//! - [`bridge`]: the plugin-side bridge to mip4d and the protocol both use.
//! - [`ffi`]: the C ABI the strongSwan shim calls.
//! - [`sys`]: the OS calls no crate covers (TUN, AF_PACKET, a few socket
//!   options, tokio fd registration).
//! - [`lab`]: RFC 5266 Figure 1 from network namespaces, and scenarios.
//!
//! `unsafe` lives in two modules only, [`ffi`] and [`sys`], each block with
//! a SAFETY comment; the rest of the crate, and the binaries, use their
//! safe APIs (and `nix` or `socket2`), which the lint below enforces.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod auth;
pub mod bridge;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod daemons;
pub mod dataplane;
pub mod fa;
#[allow(unsafe_code)]
pub mod ffi;
pub mod ha;
pub mod lab;
pub mod mn;
pub mod netlink;
pub mod ratelimit;
pub mod replay;
pub mod request;
#[allow(unsafe_code)]
pub mod sys;
pub mod wire;
