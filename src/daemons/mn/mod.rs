//! mip4d's I/O around the sans-IO [`crate::mn::Node`]: rtnetlink events
//! in, registration datagrams out and in, the node's actions carried out
//! on the kernel, the control socket, and signals. Every decision is the
//! node's; this module only moves things.

pub mod config;
pub mod events;
pub mod kernel;
pub mod plugin;
pub mod probe;
mod run;
pub mod sockets;

pub use config::MnConfig;
pub use run::run;
