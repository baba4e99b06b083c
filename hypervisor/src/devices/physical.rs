//! The Service VM's way to the physical devices it owns: PCI configuration mechanism #1
//! (ports 0xCF8-0xCFF) and device MMIO are trapped and performed by the hypervisor on the
//! hardware. Not forwarded: RAM (the hypervisor's and the VMs'), the IOAPIC, HPET and local
//! APIC windows, the ECAM window and an MMIO console UART (all the hypervisor's). ACRN maps device MMIO into the Service VM's EPT instead; trapping
//! costs an exit per access and keeps the mapping code unchanged.
//!
//! Functions a pre-launched VM owns (`pci_devs`) are hidden from the Service VM: their
//! configuration space reads as absent, writes to it are dropped, and their BAR windows are
//! not forwarded. The MSI of the others is remapped (`pci::service`): the hardware sends a
//! hypervisor vector (0xA8-0xDF) to the pCPU of the Service VM's vCPU 0, which becomes the
//! message the Service VM programmed; their MSI-X is hidden.

use super::bus::BusDevice;
use crate::devices::pci::msi::PhysConfig;
use crate::devices::pci::service::ServiceFunction;
use crate::hvlog;
use crate::vm::Vm;
use acrn_static_config::{Bdf, SerialPort};
use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};
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

/// The Service VM's MSI vectors on the hardware: one per function that enables MSI.
const SERVICE_MSI_FIRST: u8 = crate::devices::ptirq::END_VECTOR;
const SERVICE_MSI_END: u8 = 0xE0;
/// Functions the Service VM's configuration accesses have reached (a table that is full
/// leaves later functions as the hardware has them, reported once).
const MAX_SERVICE_FUNCTIONS: usize = 256;

struct ServiceSlot {
    bdf: Bdf,
    function: ServiceFunction,
    /// The hypervisor vector its hardware MSI carries, once it had one.
    vector: Option<u8>,
}

struct ServiceFunctions {
    slots: [Option<ServiceSlot>; MAX_SERVICE_FUNCTIONS],
    next_vector: u8,
    full_reported: bool,
}

static SERVICE_FUNCTIONS: spin::Mutex<ServiceFunctions> = spin::Mutex::new(ServiceFunctions {
    slots: [const { None }; MAX_SERVICE_FUNCTIONS],
    next_vector: SERVICE_MSI_FIRST,
    full_reported: false,
});
/// The Service VM (whose messages the remapped vectors carry).
static SERVICE_VM: AtomicU16 = AtomicU16::new(u16::MAX);

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

    fn config_data(&self, vm: &Vm, port: u16, size: u8, value: Option<u32>) -> u32 {
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
        let offset = (address & 0xFC) as u16 + (port - CONFIG_DATA);
        if let Some(v) = service_function_access(vm, bdf, offset, size, value) {
            return v;
        }
        let _guard = CONFIG_LOCK.lock();
        // SAFETY: configuration mechanism #1 on behalf of the Service VM, which owns the
        // PCI devices; the pair is serialized against every other user.
        unsafe { Port::<u32>::new(CONFIG_ADDRESS).write(address) };
        port_access(port, size, value)
    }
}

/// A Service VM configuration access to `bdf` that its MSI or MSI-X capability decides: the
/// value read (None: plain hardware). Reprograms the hardware's MSI when the Service VM's
/// changed.
fn service_function_access(
    vm: &Vm,
    bdf: Bdf,
    offset: u16,
    size: u8,
    value: Option<u32>,
) -> Option<u32> {
    let host = HostFunction(bdf);
    let mut table = SERVICE_FUNCTIONS.lock();
    let index = match table
        .slots
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.bdf == bdf))
    {
        Some(i) => i,
        None => {
            if host.read32(0) & 0xFFFF == 0xFFFF {
                return None;
            }
            let Some(free) = table.slots.iter().position(|s| s.is_none()) else {
                if !core::mem::replace(&mut table.full_reported, true) {
                    hvlog!(
                        "Service VM: more than {MAX_SERVICE_FUNCTIONS} PCI functions: the MSI of \
                         {:02x}:{:02x}.{} and later ones is not remapped",
                        bdf.bus,
                        bdf.dev,
                        bdf.func
                    );
                }
                return None;
            };
            table.slots[free] = Some(ServiceSlot {
                bdf,
                function: ServiceFunction::probe(&host),
                vector: None,
            });
            free
        }
    };
    let state = &mut *table;
    let slot = state.slots[index].as_mut()?;
    let Some(value) = value else {
        return Some(slot.function.config_read(&host, offset, size));
    };
    if slot.function.config_write(&host, offset, size, value) {
        SERVICE_VM.store(vm.id, Ordering::Release);
        let message = slot.function.message();
        if message.is_some() && slot.vector.is_none() && state.next_vector < SERVICE_MSI_END {
            slot.vector = Some(state.next_vector);
            state.next_vector += 1;
        }
        let hw = match (message, slot.vector, vm.vcpu0_msi_address()) {
            (Some(_), Some(vector), Some(addr)) => Some((addr, u16::from(vector))),
            (Some(_), None, _) => {
                hvlog!(
                    "Service VM: PCI {:02x}:{:02x}.{}: MSI left off (the hypervisor's vectors \
                     for the Service VM's devices ran out)",
                    bdf.bus,
                    bdf.dev,
                    bdf.func
                );
                None
            }
            _ => None,
        };
        slot.function.program(&host, hw);
    }
    Some(0)
}

/// A remapped MSI vector of a Service VM device the calling pCPU took: the Service VM gets
/// the message it programmed. Whether `vector` was one.
pub fn dispatch_service_msi(vector: u8) -> bool {
    if !(SERVICE_MSI_FIRST..SERVICE_MSI_END).contains(&vector) {
        return false;
    }
    let message = SERVICE_FUNCTIONS
        .lock()
        .slots
        .iter()
        .flatten()
        .find(|s| s.vector == Some(vector))
        .and_then(|s| s.function.message());
    let vm = crate::vm::vm(SERVICE_VM.load(Ordering::Acquire));
    if let (Some(m), Some(vm)) = (message, vm) {
        let _ = vm.inject_msi(m.addr, u64::from(m.data));
    }
    true
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

impl PhysConfig for HostFunction {
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
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        let port = addr as u16;
        match port {
            CONFIG_ADDRESS if size == 4 => u64::from(self.config_address.load(Ordering::Relaxed)),
            CONFIG_ADDRESS..CONFIG_DATA => u64::MAX,
            _ => u64::from(self.config_data(vm, port, size, None)),
        }
    }

    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        let port = addr as u16;
        match port {
            CONFIG_ADDRESS if size == 4 => {
                self.config_address.store(value as u32, Ordering::Relaxed)
            }
            CONFIG_ADDRESS..CONFIG_DATA => {}
            _ => {
                self.config_data(vm, port, size, Some(value as u32));
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
