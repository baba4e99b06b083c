//! The Service VM's way to the physical devices it owns: PCI configuration mechanism #1
//! (ports 0xCF8-0xCFF), the host's ECAM window (which its MCFG and e820 announce) and device
//! MMIO are trapped and performed by the hypervisor on the hardware, configuration space
//! through both ways alike. Not forwarded: RAM (the hypervisor's and the VMs'), the IOAPIC,
//! HPET and local APIC windows, the IOMMU's registers and an MMIO console UART (all the
//! hypervisor's). ACRN maps device MMIO into the Service VM's EPT instead; trapping costs an
//! exit per access and keeps the mapping code unchanged.
//!
//! Functions a VM owns (a pre-launched VM's `pci_devs`, those assigned to post-launched VMs)
//! are hidden from the Service VM: their configuration space reads as absent, writes to it
//! are dropped, and their BAR windows are not forwarded. The MSI and MSI-X of the others are
//! remapped (`pci::service`): the hardware sends a hypervisor vector (0xA8-0xDF, one per MSI
//! and per MSI-X entry in use) to the pCPU of the Service VM's vCPU 0, which becomes the
//! message the Service VM programmed. The Service VM's accesses to an MSI-X table's pages are
//! served from its virtual table (the PBA and other registers there are the hardware's).

use super::bus::BusDevice;
use crate::devices::pci::msi::PhysConfig;
use crate::devices::pci::msix::{MsixAccess, MAX_MSIX_ENTRIES};
use crate::devices::pci::service::{ServiceFunction, ServiceWrite};
use crate::hvlog;
use crate::vm::Vm;
use acrn_static_config::{Bdf, SerialPort};
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
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

/// Serializes CONFIG_ADDRESS/CONFIG_DATA pairs on the hardware.
static CONFIG_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// The Service VM's MSI vectors on the hardware: one per function that enables MSI, one per
/// MSI-X entry it unmasks (kept while the Service VM has the function).
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
    /// The hypervisor vectors of its MSI-X entries, once they had one.
    msix_vectors: [Option<u8>; MAX_MSIX_ENTRIES],
    /// Where the MSI-X table's BAR is (physical), while memory decoding is on.
    msix_bar: Option<u64>,
}

impl ServiceSlot {
    /// The trapped pages of its MSI-X table: (start, length), physical.
    fn msix_window(&self) -> Option<(u64, u64)> {
        let (_, start, len) = self.function.msix()?.window();
        Some((self.msix_bar? + start, len))
    }

    /// Reads where the hardware decodes the MSI-X table's BAR now.
    fn locate_msix(&mut self, host: &HostFunction) {
        self.msix_bar = self.function.msix().and_then(|m| {
            let reg = 0x10 + 4 * m.cap().bar as u16;
            let low = host.read32(reg);
            let high = if low & 0x7 == 0x4 {
                u64::from(host.read32(reg + 4)) << 32
            } else {
                0
            };
            let base = high | u64::from(low & !0xF);
            (low & 1 == 0 && host.read32(0x04) & 0x2 != 0 && base != 0).then_some(base)
        });
    }
}

struct ServiceFunctions {
    slots: [Option<ServiceSlot>; MAX_SERVICE_FUNCTIONS],
    /// Vectors in use, bit n for `SERVICE_MSI_FIRST + n`.
    vectors_used: u64,
    full_reported: bool,
    out_of_vectors_reported: bool,
}

impl ServiceFunctions {
    /// A hypervisor vector for the Service VM's devices, if any is left.
    fn take_vector(&mut self, bdf: Bdf) -> Option<u8> {
        let free =
            (0..SERVICE_MSI_END - SERVICE_MSI_FIRST).find(|&n| self.vectors_used & 1 << n == 0);
        if let Some(n) = free {
            self.vectors_used |= 1 << n;
            return Some(SERVICE_MSI_FIRST + n);
        }
        if !core::mem::replace(&mut self.out_of_vectors_reported, true) {
            hvlog!(
                "Service VM: PCI {:02x}:{:02x}.{}: an MSI or MSI-X entry left off (the \
                 hypervisor's {} vectors for the Service VM's devices ran out)",
                bdf.bus,
                bdf.dev,
                bdf.func,
                SERVICE_MSI_END - SERVICE_MSI_FIRST
            );
        }
        None
    }
}

/// The Service VM gives function `bdf` up (to a post-launched VM): its view of the function
/// and the vectors of its MSI and MSI-X go.
pub fn release_service_function(bdf: Bdf) {
    let mut table = SERVICE_FUNCTIONS.lock();
    let Some(slot) = table
        .slots
        .iter_mut()
        .find(|s| s.as_ref().is_some_and(|s| s.bdf == bdf))
        .and_then(|s| s.take())
    else {
        return;
    };
    for v in slot.msix_vectors.iter().chain([&slot.vector]).flatten() {
        table.vectors_used &= !(1 << (v - SERVICE_MSI_FIRST));
    }
}

static SERVICE_FUNCTIONS: spin::Mutex<ServiceFunctions> = spin::Mutex::new(ServiceFunctions {
    slots: [const { None }; MAX_SERVICE_FUNCTIONS],
    vectors_used: 0,
    full_reported: false,
    out_of_vectors_reported: false,
});
/// Some Service VM function has an MSI-X table placed: MMIO accesses look for it.
static MSIX_PLACED: AtomicBool = AtomicBool::new(false);
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
        if gpa >= crate::arch::x86::identity::reach()
            || p.board.ram.iter().any(|r| within(r.start, r.size))
        {
            return false;
        }
        if HV_WINDOWS.iter().any(|&(b, s)| within(b, s)) || crate::hv::iommu::register_window(gpa) {
            return false;
        }
        if service_ecam().is_some_and(|(base, size, _)| within(base, size)) {
            return false;
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
        if crate::devices::pci::owned_host_function(bdf) || crate::hv::iommu::iommu_function(bdf) {
            return u32::MAX;
        }
        let offset = (address & 0xFC) as u16 + (port - CONFIG_DATA);
        if value.is_some_and(|v| renumbers_owned_buses(bdf, offset, size, v)) {
            return u32::MAX;
        }
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

/// The host's ECAM window: (address of its first bus, size, first bus), from the board.
pub fn service_ecam() -> Option<(u64, u64, u8)> {
    let m = crate::hv::platform().board.mmcfg?;
    let buses = u64::from(m.end_bus.checked_sub(m.start_bus)?) + 1;
    let start = m.base.checked_add(u64::from(m.start_bus) * ECAM_BUS_SIZE)?;
    Some((start, buses * ECAM_BUS_SIZE, m.start_bus))
}

/// The Service VM's accesses to the host's ECAM window: the functions it may see, with their
/// MSI and MSI-X kept virtual exactly as through ports 0xCF8/0xCFC; the extended space
/// (0x100 up) is the hardware's.
pub struct PhysicalEcam;

impl PhysicalEcam {
    pub fn claims(gpa: u64) -> bool {
        service_ecam().is_some_and(|(base, size, _)| gpa >= base && gpa - base < size)
    }

    fn access(vm: &Vm, addr: u64, size: u8, value: Option<u32>) -> u32 {
        let Some((base, _, first_bus)) = service_ecam() else {
            return u32::MAX;
        };
        let rel = addr - base;
        let bdf = Bdf::new(
            first_bus.wrapping_add((rel >> 20) as u8),
            (rel >> 15) as u8 & 0x1F,
            (rel >> 12) as u8 & 7,
        );
        let offset = (rel & 0xFFF) as u16;
        // ECAM accesses are naturally aligned, at most a dword; anything else reads as
        // nothing and writes nothing, as on an empty bus.
        let aligned = matches!(size, 1 | 2 | 4) && offset.is_multiple_of(u16::from(size));
        if !aligned
            || crate::devices::pci::owned_host_function(bdf)
            || crate::hv::iommu::iommu_function(bdf)
            || value.is_some_and(|v| renumbers_owned_buses(bdf, offset, size, v))
        {
            return u32::MAX;
        }
        // The scenario's IVSHMEM devices and PCI vUARTs of the Service VM.
        let vpci = vm.devices.pci();
        if vpci.has_function(bdf) {
            return vpci.function_access(vm, bdf, offset, size, value);
        }
        if offset < 0x100 {
            if let Some(v) = service_function_access(vm, bdf, offset, size, value) {
                return v;
            }
        }
        mmio_access(addr, size, value.map(u64::from)) as u32
    }
}

impl BusDevice for PhysicalEcam {
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        let v = Self::access(vm, addr, size, None);
        match size {
            1 => u64::from(v as u8),
            2 => u64::from(v as u16),
            _ => u64::from(v),
        }
    }

    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        Self::access(vm, addr, size, Some(value as u32));
    }
}

/// Whether a Service VM write of `value` (`size` bytes at `offset` of `bdf`) would change the
/// bus numbers of a bridge above a function a VM owns, or give a bridge buses where such a
/// function is. Dropped (and logged): the function's BDF, and the requester IDs the IOMMU
/// confines it by, would change under its VM, or another bridge's alias would name its bus.
fn renumbers_owned_buses(bdf: Bdf, offset: u16, size: u8, value: u32) -> bool {
    // Primary, secondary and subordinate bus numbers: bytes 0x18..=0x1A of a type-1 header.
    if offset > 0x1A || offset + u16::from(size) <= 0x18 {
        return false;
    }
    let host = HostFunction(bdf);
    if host.read32(0x0C) >> 16 & 0x7F != 1 {
        return false;
    }
    let old = host.read32(0x18);
    let new = crate::devices::pci::msi::merge(old, offset, size, value);
    // Bytes 0x18..=0x1A unchanged: nothing moves (the secondary latency timer may).
    if (new ^ old) & 0x00FF_FFFF == 0 {
        return false;
    }
    // A bridge not numbered (secondary bus not above its own) leads nowhere.
    let leads_to_owned = |buses: u32| {
        let (secondary, subordinate) = ((buses >> 8) as u8, (buses >> 16) as u8);
        secondary > bdf.bus
            && subordinate >= secondary
            && crate::devices::pci::owned_on_buses(secondary, subordinate)
    };
    let refused = leads_to_owned(old) || leads_to_owned(new);
    if refused {
        hvlog!(
            "Service VM: write of {value:#x} to the bus numbers of bridge {:02x}:{:02x}.{} \
             dropped: a VM owns a function on its buses (now {:#04x}-{:#04x})",
            bdf.bus,
            bdf.dev,
            bdf.func,
            (old >> 8) as u8,
            (old >> 16) as u8
        );
    }
    refused
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
            let mut slot = ServiceSlot {
                bdf,
                function: ServiceFunction::probe(&host),
                vector: None,
                msix_vectors: [None; MAX_MSIX_ENTRIES],
                msix_bar: None,
            };
            slot.locate_msix(&host);
            MSIX_PLACED.fetch_or(slot.msix_bar.is_some(), Ordering::AcqRel);
            table.slots[free] = Some(slot);
            free
        }
    };
    let state = &mut *table;
    let slot = state.slots[index].as_mut()?;
    let Some(value) = value else {
        return Some(slot.function.config_read(&host, offset, size));
    };
    SERVICE_VM.store(vm.id, Ordering::Release);
    let ServiceWrite { msi, msix } = slot.function.config_write(&host, offset, size, value);
    if msi && slot.vector.is_none() && slot.function.message().is_some() {
        let vector = state.take_vector(bdf);
        state.slots[index].as_mut()?.vector = vector;
    }
    let slot = state.slots[index].as_mut()?;
    if msi {
        let hw = match (slot.function.message(), slot.vector, vm.vcpu0_msi_address()) {
            (Some(_), Some(vector), Some(addr)) => {
                let (address, data) = crate::hv::iommu::msi_message(bdf, addr, vector);
                Some((address, data as u16))
            }
            _ => None,
        };
        slot.function.program(&host, hw);
    }
    // The command register or a BAR may have moved or hidden the table.
    if (0x04..0x28).contains(&(offset & !3)) {
        slot.locate_msix(&host);
        MSIX_PLACED.fetch_or(slot.msix_bar.is_some(), Ordering::AcqRel);
    }
    if msix {
        program_msix(vm, state, index, None);
    }
    Some(0)
}

/// Writes the hardware's MSI-X entries of function `index` (only entry `only` if given),
/// giving a vector to each the Service VM uses, and mirrors enable and function mask.
fn program_msix(vm: &Vm, state: &mut ServiceFunctions, index: usize, only: Option<usize>) {
    let Some(slot) = state.slots[index].as_ref() else {
        return;
    };
    let (bdf, function) = (slot.bdf, slot.function);
    let Some(m) = function.msix().copied() else {
        return;
    };
    let Some(bar) = slot.msix_bar else {
        return;
    };
    for n in (0..m.hw_entries()).filter(|&n| only.is_none_or(|o| o == n)) {
        let used = m.message(n).is_some();
        let mut vector = state.slots[index]
            .as_ref()
            .and_then(|s| s.msix_vectors.get(n).copied().flatten());
        if used && vector.is_none() && n < MAX_MSIX_ENTRIES {
            vector = state.take_vector(bdf);
            if let Some(s) = state.slots[index].as_mut() {
                s.msix_vectors[n] = vector;
            }
        }
        let host = match (vector, vm.vcpu0_msi_address()) {
            (Some(v), Some(addr)) => Some(crate::hv::iommu::msi_message(bdf, addr, v)),
            _ => None,
        };
        if let Some((at, dwords)) = m.hardware_entry(n, host) {
            write_msix_entry(bar + at, dwords);
        }
    }
    if only.is_none() {
        m.program(&HostFunction(bdf), true);
    }
}

/// A Service VM MMIO access that falls on an MSI-X table's pages: served from its virtual
/// table, or (the PBA and other registers there) performed on the hardware. None: not such
/// an access.
fn msix_table_access(vm: &Vm, addr: u64, size: u8, value: Option<u64>) -> Option<u64> {
    if !MSIX_PLACED.load(Ordering::Acquire) {
        return None;
    }
    let mut table = SERVICE_FUNCTIONS.lock();
    let state = &mut *table;
    let (index, bar) = state.slots.iter().enumerate().find_map(|(i, s)| {
        let s = s.as_ref()?;
        let (start, len) = s.msix_window()?;
        (addr >= start && addr - start < len).then_some((i, s.msix_bar?))
    })?;
    let access = state.slots[index]
        .as_mut()?
        .function
        .msix_access(addr - bar, size, value);
    Some(match access {
        MsixAccess::Table(v) => v,
        MsixAccess::EntryChanged(n) => {
            program_msix(vm, state, index, Some(n));
            0
        }
        MsixAccess::Hardware(offset) => mmio_access(bar + offset, size, value),
    })
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
        .find_map(|s| {
            if s.vector == Some(vector) {
                return Some(s.function.message());
            }
            let n = s.msix_vectors.iter().position(|v| *v == Some(vector))?;
            Some(s.function.msix()?.message(n))
        })
        .flatten();
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

/// Every host function's configuration space, through mechanism #1.
pub struct HostPci;

impl crate::devices::pci::requester::HostConfig for HostPci {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        HostFunction(bdf).read32(offset)
    }
}

/// Writes a hardware MSI-X table entry at `entry` (physical): masked while it changes, its
/// vector control (the mask) written last, so the entry opens only once it is complete.
pub fn write_msix_entry(entry: u64, dwords: [u32; 4]) {
    mmio_access(entry + 12, 4, Some(1));
    for (k, d) in dwords.iter().enumerate() {
        mmio_access(entry + 4 * k as u64, 4, Some(u64::from(*d)));
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
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        msix_table_access(vm, addr, size, None).unwrap_or_else(|| mmio_access(addr, size, None))
    }

    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        if msix_table_access(vm, addr, size, Some(value)).is_none() {
            mmio_access(addr, size, Some(value));
        }
    }
}
