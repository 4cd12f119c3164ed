//! mip4-fa's I/O around the sans-IO [`crate::fa::ForeignAgent`], which
//! makes every decision: [`run`] is its loop, [`sockets`] its link
//! sockets, [`kernel`] its per-visitor routes, neighbour entries and
//! rules, `tunnels` its tunnel end (userspace plane or kernel ipip links,
//! [`ha_links`]), [`ingress`] the kernel backend's decapsulation check,
//! `control` its control-socket answers, [`config`] its file.

pub mod config;
mod control;
pub mod ha_links;
pub mod ingress;
pub mod kernel;
mod run;
pub mod sockets;
mod tunnels;

pub use run::run;
