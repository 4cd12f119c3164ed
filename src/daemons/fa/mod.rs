//! mip4-fa's I/O around the sans-IO [`crate::fa::ForeignAgent`], which
//! makes every decision: [`run`] is its loop, [`sockets`] its link
//! sockets, [`kernel`] its per-visitor routes, neighbour entries and
//! tunnels, `control` its control-socket answers, [`config`] its file.

pub mod config;
mod control;
pub mod kernel;
mod run;
pub mod sockets;

pub use run::run;
