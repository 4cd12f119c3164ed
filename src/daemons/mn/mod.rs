//! mip4d's I/O around the sans-IO [`crate::mn::Node`], which makes every
//! decision: [`run`] is its loop, [`kernel`] its tunnel, routes and rules
//! ([`home6`] the IPv6 home address of DSMIPv4),
//! `control` its control-socket answers, [`config`] its file; beside
//! them the sockets it moves datagrams through ([`sockets`] for
//! registrations, [`probe`] for trusted-network detection, [`agents`] for
//! agent discovery, [`plugin`] for the charon plugin) and the [`events`] it publishes; `guard` feeds the
//! node's guardrails ([`crate::mn::guard`]) what the plugin reports.

pub mod agents;
pub mod config;
mod control;
pub mod events;
mod guard;
pub mod home6;
pub mod kernel;
pub mod plugin;
pub mod probe;
mod run;
pub mod sockets;

pub use config::MnConfig;
pub use run::run;
