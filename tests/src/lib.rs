//! Support for the end-to-end tests and the demo: see [`harness`].

pub mod harness;
