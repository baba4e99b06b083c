//! ACRN-compatible hypervisor. The pure logic (boot-info parsing, page tables, VMCB layout,
//! instruction decoding, virtual devices, schedulers, loaders) builds and is unit-tested on
//! the host; everything that needs ring 0 is compiled only for `x86_64-unknown-none`
//! (`target_os = "none"`).
//!
//! Layout (one folder a concern): `boot` data in `bootinfo`, `arch/` (x86 primitives, the VMX
//! and SVM backends), `vm/` (the one VM model, its memory, loaders and guest tables), `vcpu/`
//! (the vCPU trait, the run loop, exit dispatch and instruction emulation), `devices/` (the
//! per-VM device bus and virtual devices), `hypercall/`, `ioreq`.
#![cfg_attr(not(test), no_std)]

pub mod arch;
pub mod bootinfo;
#[cfg(target_os = "none")]
pub mod console;
pub mod devices;
#[cfg(target_os = "none")]
pub mod hv;
pub mod hypercall;
pub mod ioreq;
pub mod paging;
pub mod sched;
pub mod shell;
pub mod tsc;
pub mod vcpu;
pub mod vm;
