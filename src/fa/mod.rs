//! The foreign agent (RFC 5944 §2, §3.7; RFC 3024 at the FA), sans-IO:
//! link and network datagrams and `now` in; advertisements, relayed
//! messages, visitor changes and timers out. The `mip4-fa` daemon is a
//! thin loop around [`ForeignAgent`]; [`link`] builds and reads the
//! link-layer frames.

pub mod advert;
pub mod agent;
pub mod config;
pub mod counters;
pub mod link;
pub mod reason;
pub mod visitor;

pub use agent::{Disposition, DownReason, DropReason, ForeignAgent, LinkRequest, Output};
pub use config::FaConfig;
pub use counters::Counters;
pub use reason::Denial;
pub use visitor::{Mac, Visitor, VisitorInfo, VisitorKey};
