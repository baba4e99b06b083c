//! `acrn-configurator`: reads ACRN board and scenario files, validates them and (later)
//! allocates resources and generates the hypervisor's static tables.

pub mod board;
pub mod diag;
pub mod xml;
