//! The three daemons' I/O, one folder each with the same parts, around
//! the sans-IO cores in [`crate::mn`], [`crate::ha`] and [`crate::fa`]
//! (which make every decision):
//! - [`mn`]: mip4d, the mobile node;
//! - [`ha`]: mip4-ha, the home agent;
//! - [`fa`]: mip4-fa, the foreign agent.
//!
//! What they share: [`control`], the control-socket server, [`udp`], the
//! UDP reader loop, and [`wake`], the timer and stop signals of the loop.

pub mod control;
pub mod fa;
pub mod ha;
pub mod mn;
pub mod udp;
pub mod wake;
