//! The one VM model. Pre-launched VMs and the Service VM are built from the static tables at
//! boot, post-launched VMs by hypercall; all of them are a [`Vm`] in one table, run by the same
//! vCPU loop with the same exit dispatcher and device bus. The load order only decides which
//! hypercalls a VM may make and which devices it gets.

pub mod acpi;
pub mod layout;
pub mod loader;

#[cfg(target_os = "none")]
mod build;
#[cfg(target_os = "none")]
pub mod memory;
#[cfg(target_os = "none")]
mod model;
#[cfg(target_os = "none")]
pub mod ptirq;

#[cfg(target_os = "none")]
pub use build::prepare_all;
#[cfg(target_os = "none")]
pub use model::*;
