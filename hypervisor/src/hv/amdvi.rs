//! AMD-Vi DMA and interrupt remapping (the host's IVRS table names the IOMMUs). Turned on as
//! VT-d is: at boot, before any VM runs, when the scenario has a Service VM or pass-through
//! (`iommu::prepare`), else when a function is first given to a VM. All IOMMUs share one device
//! table covering every bus; a function no VM owns is the Service VM's, so its entry sends its
//! DMA through the Service VM's memory (or passes it untranslated in a scenario without a
//! Service VM), and a pass-through function's entry sends it through its VM's memory.
//!
//! The IOMMU cannot walk an NPT (its entries carry the rights in other bits), so each VM with
//! devices gets an I/O page table of its own in the AMD-Vi format, built from the VM's
//! NPT/EPT when the first device comes and kept equal to it afterwards: every change of a VM's
//! second-level table is applied to its I/O table too ([`mapped`], [`unmapped`]). A device
//! thus reaches exactly its VM's memory at the VM's guest-physical addresses.
//!
//! The IOMMUs' register windows and PCI functions are the hypervisor's: the Service VM
//! reaches neither. Faults are read from each IOMMU's event log when its MSI (the DMA fault
//! vector) arrives.

use super::frames::{self, Frames};
use super::iommu::{CommandRing, Completion, IoapicSources, Iommu};
use crate::arch::amdvi::*;
use crate::arch::vtd::DmaFault;
use crate::devices::pci::msi::{self, VirtualMsi};
use crate::devices::physical::HostFunction;
use crate::hvlog;
use crate::paging::{AmdVi, Ept, Npt, PageTable, Perm};
use crate::vm::acpi::{self, AmdIommu, MAX_DRHDS};
use acrn_static_config::Bdf;
use spin::Mutex;

/// Domain of the functions no VM owns while no Service VM has them; VM domains are VM id + 1.
const PASS_THROUGH_DOMAIN: u16 = 255;
const MSI_CAPABILITY_ID: u32 = 0x05;
/// Device table pages for all 256 buses (65536 entries of 32 bytes).
const DEVICE_TABLE_PAGES: u64 = 512;
/// VMs whose devices have an I/O page table at once.
const MAX_DOMAINS: usize = 16;

/// One VM's I/O page table and the second-level table it mirrors.
#[derive(Clone, Copy)]
struct Domain {
    id: u16,
    mirrors: u64,
    io_root: u64,
}

struct Unit {
    regs: AmdIommu,
    commands: CommandRing,
    events: u64,
    invalidate_all: bool,
    faults: u32,
}

struct Remapping {
    units: [Option<Unit>; MAX_DRHDS],
    device_table: u64,
    completion: Completion,
    /// The DMA half of the device table entry of a function no VM owns.
    unowned: [u64; 2],
    domains: [Option<Domain>; MAX_DOMAINS],
    /// Interrupt remapping, when the IVRS names every IOAPIC's requester.
    interrupts: Option<InterruptRemapping>,
}

/// Devices with an interrupt remapping table at once (the IOAPICs, the Service VM's devices
/// and the pass-through functions that use MSI or MSI-X).
const MAX_INTERRUPT_TABLES: usize = 64;
const NO_DEVICE: u16 = u16::MAX;

/// One interrupt remapping table per device, each indexed by hypervisor vector: a device
/// reaches exactly the vectors the hypervisor gave it, at the pCPUs it chose. A vector is in
/// one table at a time.
struct InterruptRemapping {
    tables: [(u16, u64); MAX_INTERRUPT_TABLES],
    count: usize,
    /// Where the next table goes (four per pool frame), and how many bytes of it are left.
    free: u64,
    free_bytes: u64,
    /// The device whose table holds each vector.
    owner: [u16; 256],
    ioapics: IoapicSources,
    full_reported: bool,
}

impl InterruptRemapping {
    fn table(&self, device: u16) -> Option<u64> {
        self.tables[..self.count]
            .iter()
            .find(|(d, _)| *d == device)
            .map(|&(_, t)| t)
    }

    /// `device`'s table, a new one when it has none (None when the tables ran out).
    fn table_or_new(&mut self, device: u16) -> Option<(u64, bool)> {
        if let Some(t) = self.table(device) {
            return Some((t, false));
        }
        if self.count == MAX_INTERRUPT_TABLES {
            return None;
        }
        if self.free_bytes < INTERRUPT_TABLE_BYTES {
            self.free = frames::alloc(1)?;
            self.free_bytes = 4096;
        }
        let t = self.free;
        self.free += INTERRUPT_TABLE_BYTES;
        self.free_bytes -= INTERRUPT_TABLE_BYTES;
        self.tables[self.count] = (device, t);
        self.count += 1;
        Some((t, true))
    }
}

fn write_interrupt_table_entry(table: u64, index: u8, entry: u32) {
    // SAFETY: `table` is an interrupt remapping table of 256 4-byte entries in a pool frame.
    unsafe { core::ptr::write_volatile((table + 4 * u64::from(index)) as *mut u32, entry) }
}

static STATE: Mutex<Option<Remapping>> = Mutex::new(None);
static TRIED: spin::Once<()> = spin::Once::new();

fn read64(base: u64, off: u64) -> u64 {
    // SAFETY: an IOMMU's register window from the IVRS table, identity-mapped device MMIO.
    unsafe { core::ptr::read_volatile((base + off) as *const u64) }
}
fn write64(base: u64, off: u64, v: u64) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((base + off) as *mut u64, v) }
}

/// The IOMMUs of the host's IVRS table: (units, how many).
fn ivrs_units() -> ([AmdIommu; MAX_DRHDS], usize) {
    static UNITS: spin::Once<([AmdIommu; MAX_DRHDS], usize)> = spin::Once::new();
    *UNITS.call_once(|| {
        let mut units = [AmdIommu::default(); MAX_DRHDS];
        let count = super::rsdp()
            .and_then(|rsdp| acpi::ivrs_units(&super::Identity, rsdp, &mut units))
            .unwrap_or(0);
        (units, count)
    })
}

/// Whether the host has an AMD IOMMU.
pub fn present() -> bool {
    ivrs_units().1 > 0
}

/// The requester ID the IVRS says the IOMMUs see on `device`'s requests, if it names one
/// (aliases the PCI topology does not show); None without AMD IOMMUs.
pub fn ivrs_alias(device: u16) -> Option<u16> {
    if !present() {
        return None;
    }
    acpi::ivrs_alias(&super::Identity, super::rsdp()?, device).filter(|&a| a != device)
}

/// Whether `addr` is in an IOMMU's register window.
pub fn register_window(addr: u64) -> bool {
    let (units, count) = ivrs_units();
    units[..count]
        .iter()
        .any(|u| addr >= u.base && addr - u.base < REGISTER_WINDOW)
}

/// Whether `bdf` is an IOMMU's own PCI function (its capability block moves the register
/// window, its MSI is the fault interrupt).
pub fn iommu_function(bdf: Bdf) -> bool {
    let (units, count) = ivrs_units();
    units[..count].iter().any(|u| u.device_id == bdf.raw())
}

fn device_entry(table: u64, device: u16) -> *mut u64 {
    (table + u64::from(device) * DTE_SIZE as u64) as *mut u64
}

/// The DMA half (quadwords 0 and 1) of a device table entry.
fn read_device_entry(table: u64, device: u16) -> [u64; 2] {
    let e = device_entry(table, device);
    // SAFETY: `table` is the device table, 65536 entries of 4 quadwords.
    core::array::from_fn(|i| unsafe { core::ptr::read_volatile(e.add(i)) })
}

fn write_device_entry(table: u64, device: u16, entry: [u64; 2]) {
    let e = device_entry(table, device);
    // SAFETY: as in `read_device_entry`. The first quadword (V, TV, the root) goes last, so
    // the IOMMU never sees a valid entry with another entry's domain.
    unsafe {
        core::ptr::write_volatile(e.add(1), entry[1]);
        core::ptr::write_volatile(e, entry[0]);
    }
}

/// Writes the interrupt half (quadword 2) of a device table entry.
fn write_interrupt_entry(table: u64, device: u16, entry: u64) {
    // SAFETY: as in `read_device_entry`.
    unsafe { core::ptr::write_volatile(device_entry(table, device).add(2), entry) }
}

impl Unit {
    /// Queues `cmd`; the IOMMU starts on it when the tail moves.
    fn push(&mut self, cmd: [u64; 2]) {
        let tail = self.commands.push(cmd);
        write64(self.regs.base, COMMAND_TAIL, tail);
    }
}

impl Remapping {
    /// Runs `cmds` on every IOMMU and waits until each has completed them.
    fn run(&mut self, cmds: &[[u64; 2]]) {
        for unit in self.units.iter_mut().flatten() {
            let (store, token) = self.completion.new_token();
            for &c in cmds {
                unit.push(c);
            }
            unit.push(completion_wait(store, u64::from(token)));
            if !self.completion.arrived(token) {
                hvlog!(
                    "AMD-Vi IOMMU at {:#x}: commands not completed",
                    unit.regs.base
                );
            }
        }
    }

    /// Drops every cached device table entry of `devices` and every cached translation.
    fn invalidate(&mut self, devices: &[u16]) {
        const DEVICES_AT_ONCE: usize = 8;
        let mut cmds = [[0u64; 2]; DEVICES_AT_ONCE + 1 + MAX_DOMAINS];
        let mut n = 0;
        for &d in devices {
            if n == DEVICES_AT_ONCE {
                self.run(&cmds[..n]);
                n = 0;
            }
            cmds[n] = invalidate_device_entry(d);
            n += 1;
        }
        let all = self.units.iter().flatten().all(|u| u.invalidate_all);
        if all {
            cmds[n] = invalidate_all();
            n += 1;
        } else {
            for d in [PASS_THROUGH_DOMAIN]
                .into_iter()
                .chain(self.domains.iter().flatten().map(|d| d.id))
            {
                cmds[n] = invalidate_domain(d);
                n += 1;
            }
        }
        self.run(&cmds[..n]);
    }

    /// The domain of the VM whose second-level table is at `root`, its I/O table built from
    /// that table when it has none yet.
    fn domain(&mut self, vm_id: u16, root: u64, npt: bool) -> Option<Domain> {
        if let Some(d) = self.domains.iter().flatten().find(|d| d.mirrors == root) {
            return Some(*d);
        }
        let slot = self.domains.iter().position(Option::is_none)?;
        let mut io = PageTable::<AmdVi>::new(&mut Frames).ok()?;
        let mut ok = true;
        let mut copy = |gpa, t: crate::paging::Translation| {
            ok &= io
                .map(&mut Frames, gpa, t.hpa, t.page_size, t.perm, t.mem_type)
                .is_ok();
        };
        if npt {
            PageTable::<Npt>::from_root(root).for_each_leaf(&Frames, &mut copy);
        } else {
            PageTable::<Ept>::from_root(root).for_each_leaf(&Frames, &mut copy);
        }
        if !ok {
            hvlog!("AMD-Vi: out of page-table frames for VM {vm_id}'s devices");
            return None;
        }
        let d = Domain {
            id: vm_id + 1,
            mirrors: root,
            io_root: io.root(),
        };
        self.domains[slot] = Some(d);
        Some(d)
    }
}

/// Turns the IOMMUs of the IVRS table on, all DMA passed through.
fn enable() -> Option<Remapping> {
    let (units, count) = ivrs_units();
    if count == 0 {
        return None;
    }
    let device_table = frames::alloc(DEVICE_TABLE_PAGES as usize)?;
    let unowned = untranslated_entry(PASS_THROUGH_DOMAIN);
    let interrupts = interrupt_remapping();
    for device in 0..=u16::MAX {
        write_device_entry(device_table, device, unowned);
        if interrupts.is_some() {
            write_interrupt_entry(device_table, device, interrupt_entry(None));
        }
    }
    let mut r = Remapping {
        units: [const { None }; MAX_DRHDS],
        device_table,
        completion: Completion::new()?,
        unowned,
        domains: [None; MAX_DOMAINS],
        interrupts,
    };
    let vector = crate::arch::x86::irq::DMA_FAULT_VECTOR;
    let (address, _) = crate::arch::vtd::fault_event(crate::arch::x86::lapic::id() as u8, vector);
    for (slot, regs) in r.units.iter_mut().zip(&units[..count]) {
        let (commands, events) = (CommandRing::new()?, frames::alloc(1)?);
        let base = regs.base;
        write64(base, CONTROL, 0);
        write64(
            base,
            DEVICE_TABLE_BASE,
            device_table_base(device_table, DEVICE_TABLE_PAGES),
        );
        write64(base, COMMAND_BASE, ring_base(commands.base()));
        write64(base, EVENT_LOG_BASE, ring_base(events));
        write64(base, COMMAND_HEAD, 0);
        write64(base, COMMAND_TAIL, 0);
        write64(base, EVENT_LOG_HEAD, 0);
        write64(base, EVENT_LOG_TAIL, 0);
        let interrupt = program_msi(regs.device_id, address, vector);
        let mut control = Control::IOMMU_EN | Control::CMD_BUF_EN | Control::EVENT_LOG_EN;
        control.set(Control::EVENT_INT_EN, interrupt);
        write64(base, CONTROL, control.bits());
        *slot = Some(Unit {
            regs: *regs,
            commands,
            events,
            invalidate_all: read64(base, EXTENDED_FEATURES) & FEATURE_INVALIDATE_ALL != 0,
            faults: 0,
        });
        if !interrupt {
            hvlog!(
                "AMD-Vi IOMMU at {base:#x}: no MSI capability: DMA faults are recorded, not \
                 reported as they come"
            );
        }
    }
    r.invalidate(&[]);
    hvlog!(
        "AMD-Vi: DMA remapping on in {count} IOMMU(s); pass-through functions are confined to \
         their VM's memory"
    );
    if r.interrupts.is_some() {
        hvlog!(
            "AMD-Vi: interrupt remapping on: each device raises only the vectors the hypervisor \
             gave it"
        );
    }
    Some(r)
}

/// Interrupt remapping's state, if the IVRS names the requester of every IOAPIC of the board
/// (without it the IOAPICs' interrupts could not be remapped, so none are).
fn interrupt_remapping() -> Option<InterruptRemapping> {
    Some(InterruptRemapping {
        tables: [(NO_DEVICE, 0); MAX_INTERRUPT_TABLES],
        count: 0,
        free: 0,
        free_bytes: 0,
        owner: [NO_DEVICE; 256],
        ioapics: IoapicSources::of_board(Iommu::AmdVi, "IVRS", acpi::ivrs_ioapics)?,
        full_reported: false,
    })
}

/// Points the IOMMU function's MSI at the hypervisor's DMA fault vector; whether it has one.
fn program_msi(device: u16, address: u32, vector: u8) -> bool {
    let f = HostFunction(Bdf::from_raw(device));
    let mut msi = None;
    msi::for_each_capability(&f, |_, at, head| {
        if head & 0xFF == MSI_CAPABILITY_ID && msi.is_none() {
            msi = Some(VirtualMsi::new(at, (head >> 16) as u16));
        }
    });
    msi.inspect(|m| m.program(&f, Some((address, u16::from(vector)))))
        .is_some()
}

/// Turns remapping on now, if the host has IOMMUs (and it is not on already).
pub fn turn_on() {
    with_state(|_| ());
}

fn with_state<T>(f: impl FnOnce(&mut Remapping) -> T) -> Option<T> {
    let mut state = STATE.lock();
    TRIED.call_once(|| *state = enable());
    state.as_mut().map(f)
}

/// Sends the DMA of every function no VM owns, the Service VM's, through the Service VM's
/// memory (`root`: its NPT when `npt`, else its EPT). Whether it is confined now.
pub fn confine_service(root: u64, npt: bool, vm_id: u16) -> bool {
    with_state(|r| {
        let Some(d) = r.domain(vm_id, root, npt) else {
            return false;
        };
        let old = r.unowned;
        r.unowned = translated_entry(d.io_root, d.id);
        for device in 0..=u16::MAX {
            if read_device_entry(r.device_table, device) == old {
                write_device_entry(r.device_table, device, r.unowned);
            }
        }
        r.invalidate(&[]);
        hvlog!("AMD-Vi: the Service VM's devices are confined to its memory");
        true
    })
    .unwrap_or(false)
}

/// Sends the DMA of requester IDs `ids` (one function's own and its aliases) through the
/// memory of VM `vm_id` (its second-level table at `root`). Whether the function's DMA is
/// confined now.
pub fn confine(ids: &[u16], root: u64, npt: bool, vm_id: u16) -> bool {
    with_state(|r| {
        let Some(d) = r.domain(vm_id, root, npt) else {
            return false;
        };
        for &device in ids {
            write_device_entry(r.device_table, device, translated_entry(d.io_root, d.id));
        }
        r.invalidate(ids);
        true
    })
    .unwrap_or(false)
}

impl Remapping {
    /// Puts `vector` at the local APIC `apic_id` into `device`'s interrupt remapping table
    /// (taking it out of any other device's). Whether interrupts are remapped.
    fn remap(&mut self, device: u16, vector: u8, apic_id: u8) -> bool {
        let Some(ir) = self.interrupts.as_mut() else {
            return false;
        };
        let Some((table, new)) = ir.table_or_new(device) else {
            if !core::mem::replace(&mut ir.full_reported, true) {
                hvlog!(
                    "AMD-Vi: device {device:#06x}: no interrupt remapping table left \
                     ({MAX_INTERRUPT_TABLES}): its interrupts are blocked"
                );
            }
            return true;
        };
        let previous = core::mem::replace(&mut ir.owner[usize::from(vector)], device);
        let mut cmds = [[0u64; 2]; 3];
        let mut n = 0;
        if previous != device && previous != NO_DEVICE {
            if let Some(t) = ir.table(previous) {
                write_interrupt_table_entry(t, vector, 0);
                cmds[n] = invalidate_interrupt_table(previous);
                n += 1;
            }
        }
        write_interrupt_table_entry(table, vector, interrupt_table_entry(vector, apic_id));
        if new {
            write_interrupt_entry(self.device_table, device, interrupt_entry(Some(table)));
            cmds[n] = invalidate_device_entry(device);
            n += 1;
        }
        cmds[n] = invalidate_interrupt_table(device);
        self.run(&cmds[..=n]);
        true
    }
}

/// The message a function's MSI or MSI-X entry carries to raise `vector` at the local APIC
/// `apic_id`, when interrupts are remapped: the entry goes into the table of `source`, the ID
/// the IOMMU sees on that function's requests.
pub fn msi_message(source: u16, vector: u8, apic_id: u8) -> Option<(u32, u32)> {
    let mut state = STATE.lock();
    let r = state.as_mut()?;
    r.remap(source, vector, apic_id)
        .then(|| remapped_msi(vector))
}

/// The redirection entry for `rte` (fixed, physical destination) of a pin of IOAPIC
/// `ioapic_id`, when interrupts are remapped: the IOAPIC's table holds the destination, the
/// entry keeps the vector (the table's index, and what end-of-interrupt messages name).
pub fn ioapic_entry(ioapic_id: u8, rte: u64) -> Option<u64> {
    let mut state = STATE.lock();
    let r = state.as_mut()?;
    let device = r.interrupts.as_ref()?.ioapics.requester(ioapic_id)?;
    let (vector, apic_id) = (rte as u8, (rte >> 56) as u8);
    r.remap(device, vector, apic_id);
    // Destination 0, physical, fixed: the request's address is 0xFEE00000, its data the index.
    Some(rte & !(0xFF << 56 | 1 << 11 | 7 << 8))
}

/// The DMA of requester IDs `ids` is the Service VM's again.
pub fn release(ids: &[u16]) {
    if let Some(r) = STATE.lock().as_mut() {
        for &device in ids {
            write_device_entry(r.device_table, device, r.unowned);
        }
        r.invalidate(ids);
    }
}

/// The second-level table at `root` maps `[gpa, gpa + size)` to `hpa` now: so does the I/O
/// table that mirrors it.
pub fn mapped(root: u64, gpa: u64, hpa: u64, size: u64, perm: Perm) {
    if let Some(r) = STATE.lock().as_mut() {
        let Some(d) = r.domains.iter().flatten().find(|d| d.mirrors == root) else {
            return;
        };
        let mt = crate::paging::MemType::WriteBack;
        if PageTable::<AmdVi>::from_root(d.io_root)
            .map(&mut Frames, gpa, hpa, size, perm, mt)
            .is_err()
        {
            hvlog!(
                "AMD-Vi: domain {}: GPA {gpa:#x}+{size:#x} not mapped for its devices (out of \
                 page-table frames)",
                d.id
            );
        }
        r.invalidate(&[]);
    }
}

/// The second-level table at `root` no longer maps `[gpa, gpa + size)`: neither does its
/// mirror, and no IOMMU keeps a cached translation of it.
pub fn unmapped(root: u64, gpa: u64, size: u64) {
    if let Some(r) = STATE.lock().as_mut() {
        if let Some(d) = r.domains.iter().flatten().find(|d| d.mirrors == root) {
            // Unmapping only splits tables, which the pool may run out of: then the whole
            // range goes, which removes more than asked and never leaves a stale page.
            let mut io = PageTable::<AmdVi>::from_root(d.io_root);
            if io.unmap(&mut Frames, gpa, size).is_err() {
                let from = gpa & !(crate::paging::PAGE_1G - 1);
                let to = (gpa + size).next_multiple_of(crate::paging::PAGE_1G);
                let _ = io.unmap(&mut Frames, from, to - from);
            }
            r.invalidate(&[]);
        }
    }
}

/// Reports and consumes the events the IOMMUs logged: each blocked DMA with its requester.
pub fn report_faults(report: impl Fn(&DmaFault, u32)) {
    let mut state = STATE.lock();
    let Some(r) = state.as_mut() else {
        return;
    };
    for unit in r.units.iter_mut().flatten() {
        let base = unit.regs.base;
        let ring = RING_ENTRIES * EVENT_SIZE;
        let tail = read64(base, EVENT_LOG_TAIL) % ring;
        let mut head = read64(base, EVENT_LOG_HEAD) % ring;
        while head != tail {
            let at = unit.events + head;
            // SAFETY: `events` is this unit's one-page event log; `head` < 4096.
            let raw = unsafe {
                [
                    core::ptr::read_volatile(at as *const u64),
                    core::ptr::read_volatile((at + 8) as *const u64),
                ]
            };
            unit.faults = unit.faults.saturating_add(1);
            match Event::decode(raw) {
                Event::PageFault(f) => report(&f, unit.faults),
                Event::Other {
                    code,
                    device,
                    address,
                } if unit.faults <= super::iommu::REPORTED_FAULTS => hvlog!(
                    "AMD-Vi IOMMU at {base:#x}: event {code:#x} for device {device:#06x}, \
                         address {address:#x}"
                ),
                Event::Other { .. } => {}
            }
            head = (head + EVENT_SIZE) % ring;
        }
        write64(base, EVENT_LOG_HEAD, head);
        let status = Status::from_bits_retain(read64(base, STATUS));
        if status.contains(Status::EVENT_OVERFLOW) {
            unit.faults = unit.faults.saturating_add(1);
            // The log stops at an overflow until it is restarted.
            write64(
                base,
                CONTROL,
                read64(base, CONTROL) & !Control::EVENT_LOG_EN.bits(),
            );
            write64(base, EVENT_LOG_HEAD, 0);
            write64(base, EVENT_LOG_TAIL, 0);
            write64(
                base,
                CONTROL,
                read64(base, CONTROL) | Control::EVENT_LOG_EN.bits(),
            );
        }
        write64(
            base,
            STATUS,
            (Status::EVENT_OVERFLOW | Status::EVENT_LOG_INT).bits(),
        );
    }
}

/// Events logged so far, all IOMMUs.
pub fn fault_count() -> u32 {
    STATE.lock().as_ref().map_or(0, |r| {
        r.units
            .iter()
            .flatten()
            .fold(0, |a, u| a.saturating_add(u.faults))
    })
}
