//! The three daemons' I/O, one folder each with the same parts, around
//! the sans-IO cores in [`crate::mn`], [`crate::ha`] and [`crate::fa`]
//! (which make every decision):
//! - [`mn`]: mip4d, the mobile node;
//! - [`ha`]: mip4-ha, the home agent;
//! - [`fa`]: mip4-fa, the foreign agent.
//!
//! What they share: [`control`], the control-socket server, and
//! [`accept`], its answer to a failing accept, [`udp`], the
//! UDP reader loop, [`wake`], the timer and signals of the loop, and
//! [`icmp`], reading raw ICMP sockets, [`nft`], the kernel backends'
//! nftables ingress checks, [`record`], the record each keeps of itself under /run for its next
//! instance (what it installed, sysctls it changed, mip4-ha's bindings).

pub mod accept;
pub mod control;
pub mod fa;
pub mod ha;
pub mod icmp;
pub mod mn;
pub mod nft;
pub mod nft_counter;
pub mod nft_setelem;
pub mod record;
pub mod udp;
pub mod wake;
