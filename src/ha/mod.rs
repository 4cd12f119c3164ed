//! The home agent (RFC 5944 §3.8), sans-IO: datagrams and `now` in;
//! replies, binding actions (tunnels, routes) and timers out. The
//! `mip4-ha` daemon is a thin loop around [`HomeAgent`].

pub mod accepted;
pub mod agent;
pub mod binding;
pub mod config;
pub mod counters;
pub mod persist;
pub mod reason;
pub mod screen;

pub use agent::{Changes, Disposition, DownReason, DropReason, HomeAgent, Output};
pub use binding::{Binding, BindingInfo, Ipv6Binding, Ipv6TunnelTo, TunnelMode};
pub use config::HaConfig;
pub use counters::Counters;
pub use persist::{Restored, SavedCache};
pub use reason::{Denial, Malformed, PrefixDenial};
pub use screen::{Screen, Screened, Verified};
