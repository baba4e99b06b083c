//! acrn-dm: ACRN's device model for post-launched User VMs, in Rust.
//!
//! [`cli`] reads ACRN's command line; [`boot`] and [`acpi`] build what a directly booted Linux
//! needs in guest memory; [`vmm`] is the narrow interface to `/dev/acrn_hsm` (a fake in tests);
//! [`ioreq`] serves the I/O request page; [`devices`] are the emulated devices; [`vm`] ties them
//! into one VM's life.

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod devices;
pub mod ioreq;
pub mod logger;
pub mod memory;
pub mod monitor;
pub mod vm;
pub mod vmm;
