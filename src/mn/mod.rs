//! The sans-IO mobile-node core: no sockets, no clocks, no threads.
//! The daemon (mip4d) feeds it datagrams and `now`, and sends what it
//! asks for (quinn-proto style, see docs/ARCHITECTURE.md).
//!
//! - [`registration`]: the RFC 5944 §3.6 registration client (one binding
//!   with one home agent): registration, renewal, deregistration,
//!   retransmission and reply processing.
//! - [`mode`]: the RFC 5266 access modes and the trusted-network decision.
//! - [`node`]: the mobile node above the client: attachment (addresses,
//!   links, home link), mode, state machine, tunnel actions (one file
//!   per concern, see its documentation).
//! - [`detect`]: the RFC 5266 §3.4 probe and its verdicts.
//! - [`discovery`]: agent discovery (RFC 5944 §2.4): foreign agents heard
//!   on each link, and solicitations, for mode 'f'.
//! - [`vpn`]: what charon's plugin reports (TIA, MOBIKE moves, rekeys),
//!   typed for mode 'mc', and the MTU of the tunnel inside ESP.
//! - [`guard`]: deployment mistakes to warn of (charon free to use the
//!   tunnel device for IKE, an IKE_SA without MOBIKE).

pub mod detect;
pub mod discovery;
pub mod guard;
pub mod mode;
pub mod node;
pub mod registration;
pub mod vpn;

pub use mode::{Mode, Trust, TrustPolicy};
pub use node::{Action, HomeSource, Ipv6Home, Node, NodeConfig, NodeEvent, State};
pub use registration::{
    Agent, Binding, Client, ClientEvent, Config, ConfigError, Purpose, Retransmit, Stats, Transmit,
};
pub use vpn::{PathMtu, VpnInput, VpnSa};
