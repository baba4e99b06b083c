//! A pre-launched VM's virtual PCI on its device bus: the configuration ports, the ECAM window,
//! the register and MSI-X BARs of its IVSHMEM devices, the shared region mapped into its
//! NPT/EPT at BAR2 while memory decoding is on, and doorbells to the other members' devices;
//! the functions of its PCI vUART link ends (their register windows go to the link's UART on
//! the device bus, their MSI-X tables are here).

use super::access::{self, ConfigTarget, CONFIG_ADDRESS, CONFIG_DATA};
use super::function::{Function, MsiMessage, Signal};
use super::ivshmem::{self, Doorbell, Ivshmem};
use super::pt::{PtSlot, MAX_PT_FUNCTIONS};
use super::vuart::{self, PciVuart};
use super::{host_bridge, ECAM_BUSES, ECAM_GPA, ECAM_SIZE};
use crate::devices::{BusDevice, IOAPIC_GPA, MAX_VUART_LINKS};
use crate::hvlog;
use crate::vm::Vm;
use acrn_abi::device::{AcrnVdev, VDEV_ID_IVSHMEM, VDEV_ID_MCS9900};
use acrn_static_config::{Bdf, ConsoleVuart, IvshmemDevice, LoadOrder, VmConfig, VuartKind};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use spin::Mutex;

/// End of the interrupt controllers' range (vIOAPIC at 0xFEC00000, local APIC at 0xFEE00000).
const APICS_END: u64 = 0xFEF0_0000;
/// The PCI vUART slot of a PCI console (after the links').
pub const CONSOLE_SLOT: usize = MAX_VUART_LINKS;
/// IVSHMEM devices one VM may have.
const MAX_IVSHMEM: usize = 8;
/// Devices the Device Model may add to one VM.
const MAX_ADDED: usize = MAX_IVSHMEM + MAX_VUART_LINKS;

/// A device of the hypervisor's that the Device Model put on a post-launched VM's bus
/// (HC_ADD_VDEV), at the BDF and BARs it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AddedDevice {
    Ivshmem(IvshmemDevice),
    Vuart {
        index: usize,
        vbdf: Bdf,
        bars: [u64; 2],
    },
}

impl AddedDevice {
    fn vbdf(&self) -> Bdf {
        match self {
            AddedDevice::Ivshmem(d) => d.vbdf,
            AddedDevice::Vuart { vbdf, .. } => *vbdf,
        }
    }
}

/// Why HC_ADD_VDEV or HC_REMOVE_VDEV was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VdevError {
    /// Neither IVSHMEM (1af4:1110) nor the PCI vUART (9710:9900).
    UnknownDevice,
    /// No hypervisor-provided region of that name has this VM as a member.
    NotAMember,
    /// The scenario gives this VM no PCI vUART of that index.
    NoSuchVuart,
    /// Another function of the hypervisor's is at that BDF, or the device exists already.
    Taken,
    /// The device cannot be built as asked (its BARs, its region).
    Refused(&'static str),
    /// No device of the hypervisor's at that BDF.
    NoDevice,
    Full,
}

impl core::fmt::Display for VdevError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VdevError::UnknownDevice => f.write_str("not a device the hypervisor emulates"),
            VdevError::NotAMember => {
                f.write_str("the VM is in no hypervisor-provided region of that name")
            }
            VdevError::NoSuchVuart => f.write_str("the scenario gives the VM no such PCI vUART"),
            VdevError::Taken => f.write_str("the BDF or the device is taken"),
            VdevError::Refused(why) => f.write_str(why),
            VdevError::NoDevice => f.write_str("no such device"),
            VdevError::Full => f.write_str("too many devices"),
        }
    }
}

struct IvshmemSlot {
    bdf: Bdf,
    /// Index into the platform's IVSHMEM regions.
    region: u16,
    /// Host memory of the region.
    shm_hpa: u64,
    shm_size: u64,
    dev: Ivshmem,
    /// Where the region is mapped in the VM now.
    mapped: Option<u64>,
    /// A refused BAR2 placement was reported (once per device, so a guest cannot flood the
    /// console).
    reported: bool,
}

pub struct Vpci {
    /// The whole virtual PCI is the hypervisor's (pre-launched VMs).
    enabled: AtomicBool,
    /// A post-launched VM has functions of the hypervisor's (pass-through, or devices the
    /// Device Model asked for): the hypervisor answers their configuration space, the Device
    /// Model every other function's.
    partial: AtomicBool,
    /// The devices the Device Model asked for (HC_ADD_VDEV), made again at each reset.
    added: Mutex<[Option<AddedDevice>; MAX_ADDED]>,
    /// The value latched in port 0xCF8.
    address: AtomicU32,
    host: Mutex<Option<Function>>,
    ivshmem: [Mutex<Option<IvshmemSlot>>; MAX_IVSHMEM],
    /// PCI vUART functions by link index, then the console's at [`CONSOLE_SLOT`].
    vuarts: [Mutex<Option<VuartSlot>>; MAX_VUART_LINKS + 1],
    /// Host functions passed through (`pci_devs`).
    passthrough: [Mutex<Option<PtSlot>>; MAX_PT_FUNCTIONS],
}

struct VuartSlot {
    bdf: Bdf,
    dev: PciVuart,
}

/// The configuration ports on the bus.
pub(in crate::devices) struct ConfigPorts;
/// ECAM and the devices' emulated BARs on the bus.
pub(in crate::devices) struct PciMmio;
/// The I/O BARs of pass-through functions, forwarded to the hardware.
pub(in crate::devices) struct PtPorts;

impl Default for Vpci {
    fn default() -> Self {
        Self::new()
    }
}

fn all_ones(size: u8) -> u64 {
    u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32)
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

impl Vpci {
    pub const fn new() -> Self {
        Vpci {
            enabled: AtomicBool::new(false),
            partial: AtomicBool::new(false),
            added: Mutex::new([None; MAX_ADDED]),
            address: AtomicU32::new(0),
            host: Mutex::new(None),
            ivshmem: [const { Mutex::new(None) }; MAX_IVSHMEM],
            vuarts: [const { Mutex::new(None) }; MAX_VUART_LINKS + 1],
            passthrough: [const { Mutex::new(None) }; MAX_PT_FUNCTIONS],
        }
    }

    /// Power-on state for `vm`: pre-launched VMs get the host bridge and one IVSHMEM device per
    /// region they are a member of; other VMs get no virtual PCI here.
    pub fn reset(&self, vm: &Vm) {
        self.address.store(0, Ordering::Relaxed);
        for slot in &self.ivshmem {
            let mut s = slot.lock();
            if let Some(gpa) = s.as_ref().and_then(|d| d.mapped.map(|g| (g, d.shm_size))) {
                let _ = vm.memory().unmap(gpa.0, gpa.1);
            }
            *s = None;
        }
        for slot in &self.vuarts {
            *slot.lock() = None;
        }
        let mut flush = false;
        for slot in &self.passthrough {
            if let Some(mut s) = slot.lock().take() {
                flush |= s.release(vm);
            }
        }
        if flush {
            vm.flush_tlbs();
        }
        self.partial.store(false, Ordering::Release);
        self.enabled.store(false, Ordering::Release);
        *self.host.lock() = None;
        let info = vm.info();
        let cfg = info.and_then(|i| i.cfg);
        match (info.map(|i| i.load_order), cfg) {
            (Some(LoadOrder::PreLaunched), Some(cfg)) => {
                *self.host.lock() = Some(host_bridge());
                for (slot, s) in self.passthrough.iter().zip(PtSlot::for_vm(vm)) {
                    if let Some(s) = &s {
                        s.describe(vm);
                    }
                    *slot.lock() = s;
                }
                self.static_devices(cfg);
                self.enabled.store(true, Ordering::Release);
            }
            // The Service VM's bus is the hardware's, with the scenario's IVSHMEM devices, PCI
            // vUARTs and PCI console of the hypervisor's at their allocated BDFs.
            (Some(LoadOrder::Service), Some(cfg)) => {
                self.static_devices(cfg);
                self.update_partial();
            }
            // A post-launched VM keeps the functions assigned to it and the devices its
            // Device Model added across its resets.
            (Some(LoadOrder::PostLaunched), _) => {
                self.attach(vm);
                let added = *self.added.lock();
                for d in added.iter().flatten() {
                    if let Err(why) = self.instantiate(vm, *d) {
                        hvlog!(
                            "VM {} {}: device {d:?} not made again: {why}",
                            vm.id,
                            vm.name()
                        );
                    }
                }
                self.update_partial();
            }
            _ => {}
        }
    }

    /// The IVSHMEM devices, PCI vUARTs and PCI console the scenario gives the VM, at their
    /// allocated BDFs and BARs.
    fn static_devices(&self, cfg: &VmConfig) {
        if cfg.ivshmem.len() > MAX_IVSHMEM {
            hvlog!(
                "VM {} {}: only the first {MAX_IVSHMEM} IVSHMEM devices are emulated",
                cfg.id,
                cfg.name
            );
        }
        for (slot, d) in self.ivshmem.iter().zip(cfg.ivshmem) {
            match ivshmem_slot(cfg, d) {
                Ok(s) => *slot.lock() = Some(s),
                Err(why) => hvlog!(
                    "VM {} {}: no IVSHMEM device at {:02x}:{:02x}.{}: {why}",
                    cfg.id,
                    cfg.name,
                    d.vbdf.bus,
                    d.vbdf.dev,
                    d.vbdf.func
                ),
            }
        }
        let console = match cfg.console {
            ConsoleVuart::Pci { vbdf, bar0, bar1 } => Some((CONSOLE_SLOT, vbdf, bar0, bar1)),
            _ => None,
        };
        let links = cfg
            .vuarts
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match l.kind {
                VuartKind::Pci { vbdf, bar0, bar1 } if i < MAX_VUART_LINKS => {
                    Some((i, vbdf, bar0, bar1))
                }
                _ => None,
            });
        for (index, vbdf, bar0, bar1) in links.chain(console) {
            let slot = &self.vuarts[index];
            // The allocator ORs the BAR type flags into the addresses.
            match PciVuart::new([bar0 & !0xF, bar1 & !0xF]) {
                Ok(dev) => *slot.lock() = Some(VuartSlot { bdf: vbdf, dev }),
                Err(why) => hvlog!(
                    "VM {} {}: no PCI vUART at {:02x}:{:02x}.{}: {why}",
                    cfg.id,
                    cfg.name,
                    vbdf.bus,
                    vbdf.dev,
                    vbdf.func
                ),
            }
        }
    }

    /// Takes in the functions assigned to the (post-launched) VM that its virtual PCI does not
    /// hold yet.
    pub fn attach(&self, vm: &Vm) {
        for (slot, new) in self.passthrough.iter().zip(PtSlot::for_vm(vm)) {
            let mut s = slot.lock();
            if s.is_none() {
                if let Some(n) = &new {
                    n.describe(vm);
                }
                *s = new;
            }
        }
        self.update_partial();
    }

    /// A configuration access to the hypervisor's function at `bdf` (the Service VM reaches
    /// it through the host's ECAM window too): the value read.
    pub fn function_access(
        &self,
        vm: &Vm,
        bdf: Bdf,
        offset: u16,
        size: u8,
        value: Option<u32>,
    ) -> u32 {
        let t = ConfigTarget { bdf, offset };
        match value {
            None => self.config_read(t, size) as u32,
            Some(v) => {
                self.config_write(vm, t, size, v);
                0
            }
        }
    }

    /// Whether a function of the hypervisor's is at `bdf`.
    pub fn has_function(&self, bdf: Bdf) -> bool {
        self.passthrough
            .iter()
            .any(|s| s.lock().as_ref().is_some_and(|d| d.vbdf == bdf))
            || self
                .ivshmem
                .iter()
                .any(|s| s.lock().as_ref().is_some_and(|d| d.bdf == bdf))
            || self
                .vuarts
                .iter()
                .any(|s| s.lock().as_ref().is_some_and(|d| d.bdf == bdf))
    }

    /// A post-launched VM's bus is partly the hypervisor's while it holds any function.
    fn update_partial(&self) {
        let any = !self.enabled()
            && (self.passthrough.iter().any(|s| s.lock().is_some())
                || self.ivshmem.iter().any(|s| s.lock().is_some())
                || self.vuarts.iter().any(|s| s.lock().is_some()));
        self.partial.store(any, Ordering::Release);
    }

    /// HC_ADD_VDEV: the IVSHMEM device of a hypervisor-provided region the (post-launched)
    /// VM is a member of (`args` names it, `hv:/NAME` or `NAME`), or its PCI vUART `vuart_idx`
    /// (`args[0..4]`), at the BDF (`slot`) and BARs (`io_addr`) the Device Model chose.
    pub fn add_device(&self, vm: &Vm, v: &AcrnVdev) -> Result<(), VdevError> {
        let cfg = vm.info().and_then(|i| i.cfg).ok_or(VdevError::NotAMember)?;
        let vbdf = Bdf::from_raw(v.slot as u16);
        let bar = |i: usize| u64::from(v.io_addr[i] & !0xF);
        let d = match v.id & 0xFFFF_FFFF {
            VDEV_ID_IVSHMEM => {
                let len = v.args.iter().position(|&b| b == 0).unwrap_or(v.args.len());
                let full = core::str::from_utf8(&v.args[..len]).unwrap_or("");
                let name = full.strip_prefix("hv:/").unwrap_or(full);
                let regions = crate::hv::platform().hv.ivshmem_regions;
                let region = regions
                    .iter()
                    .position(|r| r.name == name)
                    .filter(|&r| cfg.ivshmem.iter().any(|e| usize::from(e.region) == r))
                    .ok_or(VdevError::NotAMember)?;
                // BAR2 is 64-bit: its upper half is the next BAR register's.
                let wide = v.io_addr[2] & 0x6 == 0x4;
                let high = if wide {
                    u64::from(v.io_addr[3]) << 32
                } else {
                    0
                };
                AddedDevice::Ivshmem(IvshmemDevice {
                    region: region as u16,
                    vbdf,
                    bars: [bar(0), bar(1), high | bar(2)],
                })
            }
            VDEV_ID_MCS9900 => {
                let vuart_idx = u32::from_le_bytes([v.args[0], v.args[1], v.args[2], v.args[3]]);
                let index = vuart::slot_of(
                    vuart_idx,
                    matches!(cfg.console, ConsoleVuart::Pci { .. }),
                    |link| {
                        cfg.vuarts
                            .get(link)
                            .is_some_and(|l| matches!(l.kind, VuartKind::Pci { .. }))
                    },
                    MAX_VUART_LINKS,
                )
                .ok_or(VdevError::NoSuchVuart)?;
                AddedDevice::Vuart {
                    index,
                    vbdf,
                    bars: [bar(0), bar(1)],
                }
            }
            _ => return Err(VdevError::UnknownDevice),
        };
        let mut added = self.added.lock();
        let same = |a: &AddedDevice| match (a, &d) {
            (AddedDevice::Ivshmem(x), AddedDevice::Ivshmem(y)) => x.region == y.region,
            (AddedDevice::Vuart { index: x, .. }, AddedDevice::Vuart { index: y, .. }) => x == y,
            _ => false,
        };
        if self.has_function(vbdf) || added.iter().flatten().any(same) {
            return Err(VdevError::Taken);
        }
        let free = added
            .iter()
            .position(|a| a.is_none())
            .ok_or(VdevError::Full)?;
        self.instantiate(vm, d).map_err(VdevError::Refused)?;
        added[free] = Some(d);
        drop(added);
        self.update_partial();
        hvlog!(
            "VM {} {}: {} at {:02x}:{:02x}.{} (HC_ADD_VDEV)",
            vm.id,
            vm.name(),
            match d {
                AddedDevice::Ivshmem(_) => "IVSHMEM device",
                AddedDevice::Vuart { .. } => "PCI vUART",
            },
            vbdf.bus,
            vbdf.dev,
            vbdf.func
        );
        Ok(())
    }

    /// Puts an added device on the bus.
    fn instantiate(&self, vm: &Vm, d: AddedDevice) -> Result<(), &'static str> {
        let cfg = vm
            .info()
            .and_then(|i| i.cfg)
            .ok_or("the VM has no configuration")?;
        match d {
            AddedDevice::Ivshmem(dev) => {
                let slot = self
                    .ivshmem
                    .iter()
                    .find(|s| s.lock().is_none())
                    .ok_or("too many IVSHMEM devices")?;
                *slot.lock() = Some(ivshmem_slot(cfg, &dev)?);
            }
            AddedDevice::Vuart { index, vbdf, bars } => {
                let dev = PciVuart::new(bars).map_err(|_| "its BARs do not fit")?;
                *self.vuarts[index].lock() = Some(VuartSlot { bdf: vbdf, dev });
            }
        }
        Ok(())
    }

    /// HC_REMOVE_VDEV: the added device at `vbdf` leaves the bus (its shared region unmapped).
    pub fn remove_device(&self, vm: &Vm, vbdf: Bdf) -> Result<(), VdevError> {
        let d = {
            let mut added = self.added.lock();
            let at = added
                .iter()
                .position(|a| a.is_some_and(|a| a.vbdf() == vbdf))
                .ok_or(VdevError::NoDevice)?;
            added[at].take().ok_or(VdevError::NoDevice)?
        };
        let mut flush = false;
        match d {
            AddedDevice::Ivshmem(_) => {
                for slot in &self.ivshmem {
                    let mut s = slot.lock();
                    if s.as_ref().is_some_and(|x| x.bdf == vbdf) {
                        if let Some((gpa, size)) =
                            s.as_ref().and_then(|x| x.mapped.map(|g| (g, x.shm_size)))
                        {
                            let _ = vm.memory().unmap(gpa, size);
                            flush = true;
                        }
                        *s = None;
                    }
                }
            }
            AddedDevice::Vuart { index, .. } => *self.vuarts[index].lock() = None,
        }
        if flush {
            vm.flush_tlbs();
        }
        self.update_partial();
        Ok(())
    }

    /// The VM is destroyed: the devices its Device Model added are not made again.
    pub fn forget_added(&self) {
        *self.added.lock() = [None; MAX_ADDED];
    }

    /// Takes pass-through slot `slot` out of the VM: the function stops, its windows leave the
    /// VM's memory.
    pub fn detach(&self, vm: &Vm, slot: usize) {
        let flush = self
            .passthrough
            .get(slot)
            .and_then(|s| s.lock().take())
            .is_some_and(|mut d| d.release(vm));
        if flush {
            vm.flush_tlbs();
        }
        self.update_partial();
    }

    /// A post-launched VM wrote `value` to port 0xCF8 (the write goes on to the Device
    /// Model, which latches it too): the data ports' next target.
    pub fn observe_address(&self, value: u32) {
        if self.partial.load(Ordering::Acquire) {
            self.address.store(value, Ordering::Relaxed);
        }
    }

    /// Which PCI vUART's register window holds `gpa`: its slot (link index, or
    /// [`CONSOLE_SLOT`]) and the UART register (None for the bytes of BAR0 past the registers).
    pub fn vuart_register(&self, gpa: u64) -> Option<(usize, Option<u16>)> {
        if !self.has_functions() {
            return None;
        }
        self.vuarts.iter().enumerate().find_map(|(i, slot)| {
            let reg = slot.lock().as_ref()?.dev.register_at(gpa)?;
            Some((i, reg))
        })
    }

    /// Slot `index`'s UART interrupt output is `line` now: on a rise its function sends its
    /// MSI-X message.
    pub fn vuart_follow(&self, vm: &Vm, index: usize, line: bool) {
        let Some(slot) = self.vuarts.get(index) else {
            return;
        };
        let signal = match slot.lock().as_mut() {
            Some(s) => s.dev.follow(line),
            None => return,
        };
        if let Signal::Send(m) = signal {
            send(vm, m);
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether functions of the hypervisor's are here (a pre-launched VM's vPCI, or a
    /// post-launched VM's assigned and added functions).
    fn has_functions(&self) -> bool {
        self.enabled() || self.partial.load(Ordering::Acquire)
    }

    /// Whether the configuration ports decode `port`: all of them for a pre-launched VM;
    /// for a post-launched VM the data ports while 0xCF8 selects one of its pass-through
    /// functions.
    pub fn claims_port(&self, port: u16) -> bool {
        if self.enabled() {
            return (CONFIG_ADDRESS..CONFIG_DATA + 4).contains(&port);
        }
        self.partial.load(Ordering::Acquire)
            && access::port_target(self.address.load(Ordering::Relaxed), port, 1)
                .is_some_and(|t| self.has_function(t.bdf))
    }

    /// Whether an I/O BAR of a pass-through function decodes `port`.
    pub fn claims_pt_port(&self, port: u16) -> bool {
        self.has_functions()
            && self.passthrough.iter().any(|s| {
                s.lock()
                    .as_ref()
                    .is_some_and(|d| d.claims(u64::from(port), true))
            })
    }

    fn pt_access(&self, addr: u64, io: bool, size: u8, value: Option<u64>) -> Option<u64> {
        self.passthrough.iter().find_map(|s| {
            let mut s = s.lock();
            let d = s.as_mut().filter(|d| d.claims(addr, io))?;
            Some(d.access(addr, io, size, value))
        })
    }

    /// Stops every pass-through function (its VM stopped: no more DMA or interrupts).
    pub fn quiesce_passthrough(&self) {
        for slot in &self.passthrough {
            if let Some(s) = slot.lock().as_mut() {
                s.quiesce();
            }
        }
    }

    /// Pass-through slot `slot`'s function, if it holds one: host and virtual BDF, and
    /// whether its MSI is on.
    pub fn pt_summary(&self, slot: usize) -> Option<(Bdf, Bdf, bool)> {
        let s = self.passthrough.get(slot)?.lock();
        let d = s.as_ref()?;
        Some((d.pbdf(), d.vbdf, d.guest_message(None).is_some()))
    }

    /// The message pass-through slot `slot` should send now for its MSI (or MSI-X entry
    /// `msix_entry`), if its VM enabled and did not mask it.
    pub fn pt_message(&self, slot: usize, msix_entry: Option<usize>) -> Option<(u64, u32)> {
        self.passthrough
            .get(slot)?
            .lock()
            .as_ref()?
            .guest_message(msix_entry)
    }

    /// Whether ECAM or an emulated BAR decodes `gpa`.
    pub fn claims_mmio(&self, gpa: u64) -> bool {
        let full = self.enabled();
        if !full && !self.partial.load(Ordering::Acquire) {
            return false;
        }
        (full && (ECAM_GPA..ECAM_GPA + ECAM_SIZE).contains(&gpa))
            || self.ivshmem.iter().any(|s| {
                s.lock()
                    .as_ref()
                    .and_then(|d| d.dev.function.bar_at(gpa))
                    .is_some_and(|(bar, _)| bar != ivshmem::SHM_BAR)
            })
            || self.vuarts.iter().any(|s| {
                s.lock()
                    .as_ref()
                    .and_then(|d| d.dev.function.bar_at(gpa))
                    .is_some()
            })
            || self
                .passthrough
                .iter()
                .any(|s| s.lock().as_ref().is_some_and(|d| d.claims(gpa, false)))
    }

    fn config_read(&self, t: ConfigTarget, size: u8) -> u64 {
        if t.bdf == Bdf::new(0, 0, 0) {
            if let Some(h) = self.host.lock().as_ref() {
                return h.config_read(t.offset, size) as u64;
            }
        }
        for slot in &self.ivshmem {
            if let Some(d) = slot.lock().as_ref().filter(|d| d.bdf == t.bdf) {
                return d.dev.function.config_read(t.offset, size) as u64;
            }
        }
        for slot in &self.vuarts {
            if let Some(d) = slot.lock().as_ref().filter(|d| d.bdf == t.bdf) {
                return d.dev.function.config_read(t.offset, size) as u64;
            }
        }
        for slot in &self.passthrough {
            if let Some(d) = slot.lock().as_ref().filter(|d| d.vbdf == t.bdf) {
                return u64::from(d.config_read(t.offset, size));
            }
        }
        all_ones(size)
    }

    fn config_write(&self, vm: &Vm, t: ConfigTarget, size: u8, value: u32) {
        if t.bdf == Bdf::new(0, 0, 0) {
            if let Some(h) = self.host.lock().as_mut() {
                h.config_write(t.offset, size, value);
            }
            return;
        }
        for slot in &self.ivshmem {
            let mut out = Messages::default();
            let mut flush = false;
            {
                let mut s = slot.lock();
                let Some(d) = s.as_mut().filter(|d| d.bdf == t.bdf) else {
                    continue;
                };
                let fired = d.dev.function.config_write(t.offset, size, value);
                out.collect(&d.dev.function, fired);
                let want = d.dev.function.bar_window(ivshmem::SHM_BAR).map(|w| w.0);
                if want != d.mapped {
                    flush = remap(vm, d, want);
                }
            }
            // Outside the device lock: other vCPUs may be waiting for it in their exits.
            if flush {
                vm.flush_tlbs();
            }
            out.deliver(vm);
            return;
        }
        for slot in &self.vuarts {
            let mut out = Messages::default();
            {
                let mut s = slot.lock();
                let Some(d) = s.as_mut().filter(|d| d.bdf == t.bdf) else {
                    continue;
                };
                let fired = d.dev.function.config_write(t.offset, size, value);
                out.collect(&d.dev.function, fired);
            }
            out.deliver(vm);
            return;
        }
        for slot in &self.passthrough {
            let flush = {
                let mut s = slot.lock();
                let Some(d) = s.as_mut().filter(|d| d.vbdf == t.bdf) else {
                    continue;
                };
                d.config_write(vm, t.offset, size, value)
            };
            if flush {
                vm.flush_tlbs();
            }
            return;
        }
    }

    fn mmio_read(&self, gpa: u64, size: u8) -> u64 {
        if let Some(v) = self.pt_access(gpa, false, size, None) {
            return v;
        }
        if let Some(off) = gpa.checked_sub(ECAM_GPA).filter(|&o| o < ECAM_SIZE) {
            return match access::ecam_target(off, size, ECAM_BUSES) {
                Some(t) => self.config_read(t, size),
                None => all_ones(size),
            };
        }
        for slot in &self.ivshmem {
            let s = slot.lock();
            let Some(d) = s.as_ref() else { continue };
            match d.dev.function.bar_at(gpa) {
                Some((ivshmem::REGISTERS_BAR, off)) => return d.dev.register_read(off, size),
                Some((bar, off)) if d.dev.function.is_msix(bar, off) => {
                    return d.dev.function.msix_read(bar, off, size).unwrap_or(0)
                }
                // The rest of the MSI-X BAR reads zero.
                Some((ivshmem::MSIX_BAR, _)) => return 0,
                _ => {}
            }
        }
        // BAR0 (the UART registers) is routed on the device bus; this is BAR1.
        for slot in &self.vuarts {
            let s = slot.lock();
            let Some(d) = s.as_ref() else { continue };
            if let Some((bar, off)) = d.dev.function.bar_at(gpa) {
                return d.dev.function.msix_read(bar, off, size).unwrap_or(0);
            }
        }
        all_ones(size)
    }

    fn mmio_write(&self, vm: &Vm, gpa: u64, size: u8, value: u64) {
        if self.pt_access(gpa, false, size, Some(value)).is_some() {
            return;
        }
        if let Some(off) = gpa.checked_sub(ECAM_GPA).filter(|&o| o < ECAM_SIZE) {
            if let Some(t) = access::ecam_target(off, size, ECAM_BUSES) {
                self.config_write(vm, t, size, value as u32);
            }
            return;
        }
        for slot in &self.ivshmem {
            let mut out = Messages::default();
            let mut bell = None;
            {
                let mut s = slot.lock();
                let Some(d) = s.as_mut() else { continue };
                match d.dev.function.bar_at(gpa) {
                    Some((ivshmem::REGISTERS_BAR, off)) => {
                        bell = d
                            .dev
                            .register_write(off, size, value)
                            .map(|b| (d.region, b));
                    }
                    Some((bar, off)) if bar != ivshmem::SHM_BAR => {
                        let fired = d.dev.function.msix_write(bar, off, size, value);
                        out.collect(&d.dev.function, fired);
                    }
                    _ => continue,
                }
            }
            out.deliver(vm);
            if let Some((region, b)) = bell {
                ring(region, b);
            }
            return;
        }
        for slot in &self.vuarts {
            let mut out = Messages::default();
            {
                let mut s = slot.lock();
                let Some(d) = s.as_mut() else { continue };
                match d.dev.function.bar_at(gpa) {
                    Some((bar, off)) if bar == vuart::MSIX_BAR => {
                        let fired = d.dev.function.msix_write(bar, off, size, value);
                        out.collect(&d.dev.function, fired);
                    }
                    _ => continue,
                }
            }
            out.deliver(vm);
            return;
        }
    }
}

/// The IVSHMEM device of `cfg` for region entry `d`, checked against the platform.
fn ivshmem_slot(
    cfg: &VmConfig,
    d: &acrn_static_config::IvshmemDevice,
) -> Result<IvshmemSlot, &'static str> {
    let p = crate::hv::platform();
    let region =
        p.hv.ivshmem_regions
            .get(d.region as usize)
            .ok_or("its region is not in the platform tables")?;
    let (hpa, size) = (region.hpa.start, region.hpa.size);
    if overlaps(hpa, size, p.hv.ram.start, p.hv.ram.size) {
        return Err("its region overlaps the hypervisor's RAM");
    }
    if p.vms
        .iter()
        .flat_map(|v| v.memory.iter())
        .any(|m| overlaps(hpa, size, m.hpa, m.size))
    {
        return Err("its region overlaps a VM's memory");
    }
    // The allocator ORs the BAR type flags into the addresses.
    let bars = d.bars.map(|b| b & !0xF);
    let dev = Ivshmem::new(cfg.id, bars, size).map_err(|e| match e {
        super::function::BuildError::BarSize => "its region size is not a power of two",
        _ => "its BARs do not fit",
    })?;
    Ok(IvshmemSlot {
        bdf: d.vbdf,
        region: d.region,
        shm_hpa: hpa,
        shm_size: size,
        dev,
        mapped: None,
        reported: false,
    })
}

/// Moves the shared region's mapping to `to` (None: unmapped); whether the VM must flush its
/// TLBs. A window over the VM's own RAM, or one the table cannot hold, is not mapped.
fn remap(vm: &Vm, d: &mut IvshmemSlot, to: Option<u64>) -> bool {
    let mem = vm.memory();
    let mut flush = false;
    if let Some(old) = d.mapped.take() {
        let _ = mem.unmap(old, d.shm_size);
        flush = true;
    }
    let Some(gpa) = to else {
        return flush;
    };
    let over_ram = vm.info().and_then(|i| i.cfg).is_some_and(|c| {
        c.memory
            .iter()
            .any(|r| overlaps(gpa, d.shm_size, r.gpa, r.size))
    });
    // The vIOAPIC and local APIC pages stay the hypervisor's.
    let over_apics = overlaps(gpa, d.shm_size, IOAPIC_GPA, APICS_END - IOAPIC_GPA);
    let refused = if over_ram || over_apics || overlaps(gpa, d.shm_size, ECAM_GPA, ECAM_SIZE) {
        Some("overlaps its RAM, ECAM or the APICs")
    } else if mem.map(gpa, d.shm_hpa, d.shm_size).is_err() {
        // A partial map is undone so nothing of the region stays reachable.
        let _ = mem.unmap(gpa, d.shm_size);
        flush = true;
        Some("cannot be mapped")
    } else {
        d.mapped = Some(gpa);
        None
    };
    if let Some(why) = refused.filter(|_| !d.reported) {
        d.reported = true;
        hvlog!(
            "VM {} {}: IVSHMEM BAR2 at {gpa:#x} {why}; the region is not mapped there (reported once)",
            vm.id,
            vm.name()
        );
    }
    flush
}

/// A doorbell from `vm`'s device of `region`: raises the vector in the device of the peer VM
/// for the same region, if that VM has one.
fn ring(region: u16, b: Doorbell) {
    let Some(peer) = crate::vm::vm(b.peer).filter(|p| p.devices.pci().has_functions()) else {
        return;
    };
    for slot in &peer.devices.pci().ivshmem {
        let signal = {
            let mut s = slot.lock();
            match s.as_mut().filter(|d| d.region == region) {
                Some(d) => d.dev.function.signal(b.vector),
                None => continue,
            }
        };
        if let Signal::Send(m) = signal {
            send(peer, m);
        }
        return;
    }
}

/// Delivers a device's message to its VM. A message the guest aimed at no local APIC is
/// dropped, as the hardware drops a write to nowhere.
fn send(vm: &Vm, m: MsiMessage) {
    let _ = vm.inject_msi(m.addr, m.data as u64);
}

/// MSI-X messages a write made deliverable, sent after the device lock is released.
#[derive(Default)]
struct Messages {
    msgs: [Option<MsiMessage>; ivshmem::VECTORS as usize],
}

impl Messages {
    fn collect(&mut self, f: &Function, fired: u64) {
        for (v, slot) in self.msgs.iter_mut().enumerate() {
            if fired & (1 << v) != 0 {
                *slot = f.message(v);
            }
        }
    }
    fn deliver(&self, vm: &Vm) {
        for m in self.msgs.iter().flatten() {
            send(vm, *m);
        }
    }
}

impl BusDevice for ConfigPorts {
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        let pci = vm.devices.pci();
        let port = addr as u16;
        if port == CONFIG_ADDRESS && size == 4 {
            return pci.address.load(Ordering::Relaxed) as u64;
        }
        match access::port_target(pci.address.load(Ordering::Relaxed), port, size) {
            Some(t) => pci.config_read(t, size),
            None => all_ones(size),
        }
    }
    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        let pci = vm.devices.pci();
        let port = addr as u16;
        if port == CONFIG_ADDRESS && size == 4 {
            pci.address.store(value as u32, Ordering::Relaxed);
            return;
        }
        if let Some(t) = access::port_target(pci.address.load(Ordering::Relaxed), port, size) {
            pci.config_write(vm, t, size, value as u32);
        }
    }
}

impl BusDevice for PtPorts {
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        vm.devices
            .pci()
            .pt_access(addr, true, size, None)
            .unwrap_or(all_ones(size))
    }
    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        vm.devices.pci().pt_access(addr, true, size, Some(value));
    }
}

impl BusDevice for PciMmio {
    fn read(&self, vm: &Vm, addr: u64, size: u8) -> u64 {
        vm.devices.pci().mmio_read(addr, size)
    }
    fn write(&self, vm: &Vm, addr: u64, size: u8, value: u64) {
        vm.devices.pci().mmio_write(vm, addr, size, value)
    }
}
