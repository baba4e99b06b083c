//! The reference Service VM's logic that does not need the machine: the KERNEL_ELF loader and
//! boot data builder, the console UART model, the boot module
//! list, the RAM pool and the hypercall fuzzer's case generator. `main.rs` is the kernel.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod fuzz;
pub mod guest;
#[cfg(test)]
mod launch_golden;
pub mod modules;
pub mod ram;
pub mod uart;
