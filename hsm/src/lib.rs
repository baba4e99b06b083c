//! The Hypervisor Service Module: the Service VM's side of the ACRN ABI.
//!
//! [`Hsm`] keeps a registry of the User VMs this Service VM created and drives them through
//! hypercalls issued by a [`Hypercall`] transport (a `vmcall`/`vmmcall` in the reference Service
//! VM, a simulator in tests). Per VM ([`Vm`]) it owns the 16-slot I/O request page, dispatches
//! pending requests to I/O request clients on each upcall (the default client — the device model
//! — and kernel clients that claim PIO/MMIO address ranges), completes them and notifies the
//! hypervisor; maps guest memory; injects interrupts; and runs ioeventfd-style and irqfd-style
//! notifiers. It mirrors Linux's `drivers/virt/acrn` so that either can serve our hypervisor.
//!
//! Everything is `no_std` + `alloc` and safe to use from several CPUs at once (spin locks and
//! atomics). With the `std` feature on Linux, [`uapi`] wraps the `/dev/acrn_hsm` ioctls instead.
#![no_std]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod error;
mod hsm;
mod ioreq;
mod memory;
mod notify;
mod transport;
mod vm;

#[cfg(all(feature = "std", target_os = "linux"))]
pub mod uapi;

pub use error::HsmError;
pub use hsm::{Hsm, VmConfig};
pub use ioreq::{IoAccess, IoClient, IoHandler, IoKind, IoRange, RangeKind};
pub use memory::{MemKind, MemSegment, ACRN_MEM_MAPPING_MAX};
pub use notify::{IoEventFdConfig, IoEventFdId, Irqfd, Notifier};
pub use transport::{HcError, Hypercall, Hypercalls};
pub use vm::{lifecycle_transition, Vm, VmOp};

/// Result type of this crate.
pub type Result<T, E = HsmError> = core::result::Result<T, E>;
