//! ACRN-compatible hypervisor. The pure logic (boot-info parsing, page tables, VMCB layout,
//! instruction decoding, vUART, loaders) builds and is unit-tested on the host; everything that
//! needs ring 0 is compiled only for `x86_64-unknown-none` (`target_os = "none"`).
#![cfg_attr(not(test), no_std)]

pub mod arch;
pub mod bootinfo;
pub mod paging;
pub mod vcpu;

pub mod acpi;
#[cfg(target_os = "none")]
pub mod console;
pub mod decode;
pub mod gwalk;
#[cfg(target_os = "none")]
pub mod hv;
pub mod hypercall;
pub mod ioreq;
pub mod loader;
pub mod postvm;
pub mod sched;
pub mod service_vm;
pub mod string_io;
pub mod tsc;
#[cfg(target_os = "none")]
pub mod vm;
pub mod vuart;
