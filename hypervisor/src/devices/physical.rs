//! The Service VM's way to the physical devices it owns: PCI configuration mechanism #1
//! (ports 0xCF8-0xCFF) and device MMIO are trapped and performed by the hypervisor on the
//! hardware. Not forwarded: RAM (the hypervisor's and the VMs'), the IOAPIC, HPET and local
//! APIC windows, the ECAM window and an MMIO console UART (all the hypervisor's). ACRN maps device MMIO into the Service VM's EPT instead; trapping
//! costs an exit per access and keeps the mapping code unchanged.
//!
//! Functions a pre-launched VM owns (`pci_devs`) are hidden from the Service VM: their
//! configuration space reads as absent, writes to it are dropped, and their BAR windows are
//! not forwarded.

use super::bus::BusDevice;
use crate::vm::Vm;
use acrn_static_config::{Bdf, SerialPort};
use core::sync::atomic::{AtomicU32, Ordering};
use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xCF8;
const CONFIG_DATA: u16 = 0xCFC;
/// Physical windows the hypervisor keeps: IOAPICs, HPET, local APICs.
const HV_WINDOWS: [(u64, u64); 3] = [
    (0xFEC0_0000, 0x10_0000),
    (0xFED0_0000, 0x1000),
    (0xFEE0_0000, 0x10_0000),
];
/// An ECAM window covers up to 256 buses of 1 MiB.
const ECAM_BUS_SIZE: u64 = 1 << 20;
const FOUR_GIB: u64 = 1 << 32;

/// Serializes CONFIG_ADDRESS/CONFIG_DATA pairs on the hardware.
static CONFIG_LOCK: spin::Mutex<()> = spin::Mutex::new(());

pub struct PhysicalDevices {
    /// The Service VM's CONFIG_ADDRESS (applied to the hardware with each data access).
    config_address: AtomicU32,
}

impl PhysicalDevices {
    pub const fn new() -> Self {
        PhysicalDevices {
            config_address: AtomicU32::new(0),
        }
    }

    pub fn claims_port(port: u16) -> bool {
        (CONFIG_ADDRESS..CONFIG_DATA + 4).contains(&port)
    }

    /// Whether `gpa` (= HPA for the Service VM) is device MMIO the Service VM may reach.
    pub fn claims_mmio(gpa: u64) -> bool {
        let p = crate::hv::platform();
        let within = |base: u64, size: u64| gpa >= base && gpa - base < size;
        if gpa >= FOUR_GIB || p.board.ram.iter().any(|r| within(r.start, r.size)) {
            return false;
        }
        if HV_WINDOWS.iter().any(|&(b, s)| within(b, s)) {
            return false;
        }
        if let Some(m) = p.board.mmcfg {
            let buses = u64::from(m.end_bus.saturating_sub(m.start_bus)) + 1;
            if within(m.base, buses * ECAM_BUS_SIZE) {
                return false;
            }
        }
        if let Some(SerialPort::Mmio { base, .. }) = p.board.serial {
            if within(base & !0xFFF, 0x1000) {
                return false;
            }
        }
        !crate::devices::pci::owned_host_window(gpa)
    }

    fn config_data(&self, port: u16, size: u8, value: Option<u32>) -> u32 {
        let address = self.config_address.load(Ordering::Relaxed);
        if address & 0x8000_0000 == 0 {
            return u32::MAX;
        }
        let bdf = Bdf::new(
            (address >> 16) as u8,
            (address >> 11) as u8 & 0x1F,
            (address >> 8) as u8 & 7,
        );
        if crate::devices::pci::owned_host_function(bdf) {
            return u32::MAX;
        }
        let _guard = CONFIG_LOCK.lock();
        // SAFETY: configuration mechanism #1 on behalf of the Service VM, which owns the
        // PCI devices; the pair is serialized against every other user.
        unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(address) };
        port_access(port, size, value)
    }
}

/// The hardware's configuration space of one function, through mechanism #1 (the first 256
/// bytes).
pub struct HostFunction(pub Bdf);

impl HostFunction {
    fn address(&self, offset: u16) -> u32 {
        0x8000_0000
            | u32::from(self.0.bus) << 16
            | u32::from(self.0.dev & 0x1F) << 11
            | u32::from(self.0.func & 7) << 8
            | u32::from(offset & 0xFC)
    }
}

impl crate::devices::pci::passthrough::PhysConfig for HostFunction {
    fn read32(&self, offset: u16) -> u32 {
        let _guard = CONFIG_LOCK.lock();
        // SAFETY: configuration mechanism #1 for a function the hypervisor manages; the
        // address/data pair is serialized against every other user.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS).write(self.address(offset));
            Port::<u32>::new(CONFIG_DATA).read()
        }
    }

    fn write(&self, offset: u16, size: u8, value: u32) {
        let _guard = CONFIG_LOCK.lock();
        // SAFETY: as for `read32`.
        unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(self.address(offset)) };
        port_access(CONFIG_DATA + (offset & 3), size, Some(value));
    }
}

/// A device register access on the hardware at `addr` (a BAR window the hypervisor forwards).
pub fn mmio_access(addr: u64, size: u8, value: Option<u64>) -> u64 {
    // SAFETY: callers pass device MMIO outside RAM and the hypervisor's windows, which the
    // hypervisor identity-maps.
    unsafe {
        match (size, value) {
            (1, None) => u64::from(core::ptr::read_volatile(addr as *const u8)),
            (2, None) => u64::from(core::ptr::read_volatile(addr as *const u16)),
            (4, None) => u64::from(core::ptr::read_volatile(addr as *const u32)),
            (_, None) => core::ptr::read_volatile(addr as *const u64),
            (1, Some(v)) => {
                core::ptr::write_volatile(addr as *mut u8, v as u8);
                0
            }
            (2, Some(v)) => {
                core::ptr::write_volatile(addr as *mut u16, v as u16);
                0
            }
            (4, Some(v)) => {
                core::ptr::write_volatile(addr as *mut u32, v as u32);
                0
            }
            (_, Some(v)) => {
                core::ptr::write_volatile(addr as *mut u64, v);
                0
            }
        }
    }
}

/// A port access on the hardware (an I/O BAR the hypervisor forwards).
pub fn port_access(port: u16, size: u8, value: Option<u32>) -> u32 {
    // SAFETY: callers pass ports of an I/O BAR of a function the hypervisor manages.
    unsafe {
        match (size, value) {
            (1, None) => u32::from(Port::<u8>::new(port).read()),
            (2, None) => u32::from(Port::<u16>::new(port).read()),
            (_, None) => Port::<u32>::new(port).read(),
            (1, Some(v)) => {
                Port::<u8>::new(port).write(v as u8);
                0
            }
            (2, Some(v)) => {
                Port::<u16>::new(port).write(v as u16);
                0
            }
            (_, Some(v)) => {
                Port::<u32>::new(port).write(v);
                0
            }
        }
    }
}

impl Default for PhysicalDevices {
    fn default() -> Self {
        Self::new()
    }
}

impl BusDevice for PhysicalDevices {
    fn read(&self, _vm: &Vm, addr: u64, size: u8) -> u64 {
        let port = addr as u16;
        match port {
            CONFIG_ADDRESS if size == 4 => u64::from(self.config_address.load(Ordering::Relaxed)),
            CONFIG_ADDRESS..CONFIG_DATA => u64::MAX,
            _ => u64::from(self.config_data(port, size, None)),
        }
    }

    fn write(&self, _vm: &Vm, addr: u64, size: u8, value: u64) {
        let port = addr as u16;
        match port {
            CONFIG_ADDRESS if size == 4 => {
                self.config_address.store(value as u32, Ordering::Relaxed)
            }
            CONFIG_ADDRESS..CONFIG_DATA => {}
            _ => {
                self.config_data(port, size, Some(value as u32));
            }
        }
    }
}

/// Device MMIO of the Service VM, performed on the hardware.
pub struct PhysicalMmio;

impl BusDevice for PhysicalMmio {
    fn read(&self, _vm: &Vm, addr: u64, size: u8) -> u64 {
        mmio_access(addr, size, None)
    }

    fn write(&self, _vm: &Vm, addr: u64, size: u8, value: u64) {
        mmio_access(addr, size, Some(value));
    }
}
