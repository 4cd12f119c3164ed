//! mip4-ha's I/O around the sans-IO [`crate::ha::HomeAgent`].

pub mod kernel;
