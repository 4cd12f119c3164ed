//! mip4-fa's I/O around the sans-IO [`crate::fa::ForeignAgent`].

pub mod kernel;
