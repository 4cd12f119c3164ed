//! The home agent (RFC 5944 §3.8), sans-IO: datagrams and `now` in;
//! replies, binding actions (tunnels, routes) and timers out. The
//! `mip4-ha` daemon is a thin loop around [`HomeAgent`].

pub mod config;

pub use config::HaConfig;
