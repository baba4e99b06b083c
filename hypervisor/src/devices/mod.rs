//! The virtual platform every VM gets, as plain host-tested state machines (`irq`, `lapic`,
//! `ioapic`, `pic`, `rtc`, `uart`, and the
//! virtual PCI functions in `pci`): each device takes its inputs (register accesses, line
//! changes, the time as TSC values) and returns its effects (messages to deliver, timers to
//! arm). On the hypervisor, [`VmDevices`] is a VM's device bus: port and MMIO ranges routed
//! to device objects behind one small trait ([`BusDevice`]). The local APIC is per vCPU and
//! lives with the vCPU (`vcpu::run`), not on the bus.

pub mod held;
pub mod ioapic;
pub mod irq;
pub mod lapic;
pub mod pci;
pub mod pic;
pub mod ptirq;
pub mod rtc;
pub mod uart;

#[cfg(target_os = "none")]
mod bus;
#[cfg(target_os = "none")]
pub mod physical;
#[cfg(target_os = "none")]
pub use bus::{BusDevice, Space, VmDevices, IOAPIC_GPA, MAX_VUART_LINKS};
