//! mip4d's I/O around the sans-IO [`crate::mn::Node`], which makes every
//! decision: [`run`] is its loop, [`kernel`] its tunnel, routes and rules,
//! `control` its control-socket answers, [`config`] its file; beside
//! them the sockets it moves datagrams through ([`sockets`] for
//! registrations, [`probe`] for trusted-network detection, [`plugin`] for
//! the charon plugin) and the [`events`] it publishes.

pub mod config;
mod control;
pub mod events;
pub mod kernel;
pub mod plugin;
pub mod probe;
mod run;
pub mod sockets;

pub use config::MnConfig;
pub use run::run;
