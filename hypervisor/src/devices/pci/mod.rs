//! Virtual PCI: what a pre-launched VM sees of PCI. Bus 0 holds a host bridge at 00:00.0 and
//! the VM's virtual functions (IVSHMEM, PCI vUARTs); configuration space is reached through the port pair
//! 0xCF8/0xCFC and through ECAM at [`ECAM_GPA`], which the VM's ACPI MCFG announces.
//!
//! `function` is the generic function model (header, BARs, capabilities, MSI, MSI-X),
//! `ivshmem` the inter-VM shared-memory device, `vuart` ACRN's PCI vUART function,
//! `passthrough` a host function's configuration space as a VM sees it, `msi` a physical
//! function's MSI with the guest's message kept apart, `service` a physical function as the
//! Service VM sees it, `requester` the requester IDs a host function's requests carry, `access` the decoding
//! of the two configuration mechanisms; all host-tested. `bus` (hypervisor only) puts them on
//! a VM's device bus, `pt` gives pass-through functions their hardware.

pub mod access;
pub mod function;
pub mod ivshmem;
pub mod msi;
pub mod msix;
pub mod passthrough;
pub mod requester;
pub mod service;
pub mod vuart;

#[cfg(target_os = "none")]
mod bus;
#[cfg(target_os = "none")]
mod pt;
#[cfg(target_os = "none")]
pub(super) use bus::{ConfigPorts, PciMmio, PtPorts};
#[cfg(target_os = "none")]
pub use bus::{Vpci, CONSOLE_SLOT};
#[cfg(target_os = "none")]
pub use pt::{
    assign, assigned_at, deassign, deassign_all, dispatch as pt_dispatch, msi_counts,
    owned_host_function, owned_host_window, owned_on_buses, owner_of, owner_of_requester,
    AssignError, MAX_PT_FUNCTIONS,
};

use function::Function;

/// Guest-physical base of every pre-launched VM's ECAM window (ACRN's virtual MMCONFIG base),
/// above the allocator's 32-bit BAR window (2 GiB .. 3.5 GiB).
pub const ECAM_GPA: u64 = 0xE000_0000;
/// The ECAM window covers bus 0 only: the VM has no bridge.
pub const ECAM_BUSES: u8 = 1;
pub const ECAM_SIZE: u64 = ECAM_BUSES as u64 * (1 << 20);
/// The windows the configurator places a pre-launched VM's BARs in (its `USER_LOW_MMIO` and
/// `USER_HIGH_MMIO`: 32-bit BARs low, 64-bit BARs high), as (first, end) with `end` exclusive.
/// The VM's ACPI host bridge announces them so Linux keeps the BARs where they are.
pub const BAR_WINDOW_LOW: (u64, u64) = (0x8000_0000, 0xE000_0000);
pub const BAR_WINDOW_HIGH: (u64, u64) = (0x40_0000_0000, 0x80_0000_0000);

/// The host bridge at 00:00.0 (ACRN's virtual host bridge IDs: 8086:5af0, class 06/00/00).
pub fn host_bridge() -> Function {
    Function::new(0x8086, 0x5AF0, 0, [0x06, 0x00, 0x00])
}

#[cfg(test)]
mod tests;
