//! mip4-ha's I/O around the sans-IO [`crate::ha::HomeAgent`], which makes
//! every decision: [`run`] is its loop, `intake` the screen between UDP
//! 434 and the loop, [`kernel`] its tunnels, routes and
//! proxy ARP, `ingress` the kernel backend's RFC 3024 check, `control` its
//! control-socket answers, [`config`] its file, `state` its record under
//! /run for the next instance (restarts).

pub mod config;
mod control;
pub mod ingress;
mod intake;
pub mod kernel;
mod run;
mod state;

/// UDP 434's receive buffer, which the bench's echo server copies.
pub use intake::widen_receive_buffer;
pub use run::run;
