//! Intel VT-d DMA and interrupt remapping (the host's DMAR table names the units). Turned on at
//! boot, before any VM runs, when the scenario has a Service VM or pass-through
//! (`iommu::prepare`), else when a function is first given to a VM: every unit gets one root table
//! whose buses all point at a shared context table for the functions no VM owns: they are the
//! Service VM's, so their DMA goes through its NPT/EPT (its memory, identity-mapped: never the
//! hypervisor's or a pre-launched VM's), or passes untranslated in a scenario without a Service
//! VM. The buses of pass-through functions get context tables of their own that send those
//! functions through their VM's NPT/EPT. Those tables' leaf and table entries are valid
//! second-level entries (read/write in bits 0-1, superpages in bit 7, nothing in bit 11 or
//! above the address), so a device reaches exactly its VM's memory at the VM's guest-physical
//! addresses, as ACRN shares its EPT with VT-d. The units' register pages are the hypervisor's:
//! the Service VM cannot reach them. Where every unit has queued invalidation and interrupt
//! remapping, interrupts are remapped too: one shared table, an entry per hypervisor vector for
//! MSIs and per GSI for IOAPIC pins, each checked against its requester ([`msi_message`],
//! [`ioapic_entry`]).

use super::frames;
use super::iommu::{wait, CommandRing, Completion, IoapicSources, Iommu};
use crate::arch::vtd::*;
use crate::hvlog;
use crate::vm::acpi::{self, MAX_DRHDS};
use spin::Mutex;

/// Domain of pass-through (untranslated) DMA; VM domains are VM id + 1 (below it: at most 16
/// VMs, and every unit has at least 256 domains).
const PASS_THROUGH_DOMAIN: u64 = 255;

struct Remapping {
    units: [u64; MAX_DRHDS],
    count: usize,
    root: u64,
    /// The shared context table of the functions no VM owns.
    shared: u64,
    /// The context entry of a function no VM owns.
    unowned: (u64, u64),
    /// Buses with a context table of their own: (bus, table).
    own: [(u8, u64); 8],
    owned: usize,
    /// DMA faults seen per unit.
    faults: [u32; MAX_DRHDS],
    /// Each unit's invalidation queue (page, tail), when every unit has queued invalidation
    /// (interrupt remapping needs it: its cache is invalidated only through the queue).
    queues: Option<[CommandRing; MAX_DRHDS]>,
    completion: Completion,
    interrupts: Option<InterruptRemapping>,
}

/// The interrupt remapping table all units share: an entry per hypervisor vector for MSIs,
/// one per GSI for the IOAPICs' pins.
struct InterruptRemapping {
    table: u64,
    x2apic: bool,
    ioapics: IoapicSources,
}

static STATE: Mutex<Option<Remapping>> = Mutex::new(None);

impl Remapping {
    /// The context table of requester ID `id`'s bus that holds owned functions' entries: a
    /// copy of the shared one made when the bus gets its first (None when they ran out).
    fn own_context_table(&mut self, id: u16) -> Option<u64> {
        let bus = (id >> 8) as u8;
        if let Some(&(_, t)) = self.own[..self.owned].iter().find(|(b, _)| *b == bus) {
            return Some(t);
        }
        let t = frames::alloc(1).filter(|_| self.owned < self.own.len())?;
        // SAFETY: both are pool frames of 4 KiB.
        unsafe { core::ptr::copy_nonoverlapping(self.shared as *const u8, t as *mut u8, 4096) };
        self.own[self.owned] = (bus, t);
        self.owned += 1;
        write_entry(self.root, usize::from(bus), root_entry(t));
        Some(t)
    }

    /// Flushes every unit's context cache, IOTLB and interrupt entry cache.
    fn invalidate(&mut self) {
        if self.queues.is_none() {
            for &base in &self.units[..self.count] {
                invalidate(base);
            }
            return;
        }
        for u in 0..self.count {
            self.submit(
                u,
                &[
                    invalidate_context_global(),
                    invalidate_iotlb_global(),
                    invalidate_interrupt_entries(),
                ],
            );
        }
    }

    /// Queues `descriptors` on unit `u` and a wait after them; returns once the unit is done.
    fn submit(&mut self, u: usize, descriptors: &[[u64; 2]]) {
        let Some(queues) = self.queues.as_mut() else {
            return;
        };
        let (status, token) = self.completion.new_token();
        let wait_for = invalidation_wait(status, token);
        let mut tail = 0;
        for &d in descriptors.iter().chain([&wait_for]) {
            tail = queues[u].push(d);
        }
        let base = self.units[u];
        write64(base, IQT, tail);
        if !self.completion.arrived(token) {
            hvlog!("VT-d unit at {base:#x}: queued invalidation not completed");
        }
    }

    /// Writes IRTE `index` and makes every unit drop its cached copy.
    fn set_irte(&mut self, index: u16, entry: [u64; 2]) {
        let Some(ir) = &self.interrupts else {
            return;
        };
        // SAFETY: the table has IRT_ENTRIES 16-byte entries; index < IRT_ENTRIES. The high
        // half (the source check) goes first, then the low half with its present bit.
        unsafe {
            let e = (ir.table + 16 * u64::from(index % IRT_ENTRIES)) as *mut u64;
            core::ptr::write_volatile(e.add(1), entry[1]);
            core::ptr::write_volatile(e, entry[0]);
        }
        for u in 0..self.count {
            self.submit(u, &[invalidate_interrupt_entries()]);
        }
    }
}

/// Sets a one-shot or enable bit of GCMD, repeating the enables already on; whether the unit
/// reports it done.
fn command(base: u64, bit: u32) -> bool {
    write32(base, GCMD, (read32(base, GSTS) & GSTS_ENABLES) | bit);
    wait(|| read32(base, GSTS) & bit != 0)
}

fn read32(base: u64, off: u64) -> u32 {
    // SAFETY: a remapping unit's register page from the DMAR table, identity-mapped device MMIO.
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}
fn read64(base: u64, off: u64) -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile((base + off) as *const u64) }
}
fn write32(base: u64, off: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((base + off) as *mut u32, v) }
}
fn write64(base: u64, off: u64, v: u64) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile((base + off) as *mut u64, v) }
}

fn write_entry(table: u64, index: usize, (lo, hi): (u64, u64)) {
    // SAFETY: `table` is a pool frame of 256 16-byte entries; index < 256.
    unsafe {
        let e = (table as *mut u64).add(2 * (index & 0xFF));
        core::ptr::write_volatile(e.add(1), hi);
        core::ptr::write_volatile(e, lo);
    }
}

fn read_entry(table: u64, index: usize) -> (u64, u64) {
    // SAFETY: as in `write_entry`.
    unsafe {
        let e = (table as *const u64).add(2 * (index & 0xFF));
        (
            core::ptr::read_volatile(e),
            core::ptr::read_volatile(e.add(1)),
        )
    }
}

/// Flushes a unit's context cache and IOTLB (global invalidation through the registers).
fn invalidate(base: u64) {
    write64(base, CCMD, CCMD_ICC | CCMD_GLOBAL);
    wait(|| read64(base, CCMD) & CCMD_ICC == 0);
    let iotlb = base + iotlb_offset(read64(base, ECAP));
    write64(iotlb, 0, IOTLB_IVT | IOTLB_GLOBAL);
    wait(|| read64(iotlb, 0) & IOTLB_IVT == 0);
}

/// The remapping units of the host's DMAR table: (register bases, how many).
fn dmar_units() -> ([u64; MAX_DRHDS], usize) {
    static UNITS: spin::Once<([u64; MAX_DRHDS], usize)> = spin::Once::new();
    *UNITS.call_once(|| {
        let mut units = [0u64; MAX_DRHDS];
        let count = super::rsdp()
            .and_then(|rsdp| acpi::dmar_units(&super::Identity, rsdp, &mut units))
            .unwrap_or(0);
        (units, count)
    })
}

/// Whether `addr` is in a remapping unit's register page.
pub fn register_page(addr: u64) -> bool {
    let (units, count) = dmar_units();
    units[..count]
        .iter()
        .any(|&base| addr & !0xFFF == base & !0xFFF)
}

/// Turns remapping on in every unit of the DMAR table, all DMA passed through. Whether it is on
/// (no DMAR table, or a unit without pass-through or 4-level tables, leaves it off).
fn enable() -> Option<Remapping> {
    let (units, count) = dmar_units();
    if count == 0 {
        return None;
    }
    for &base in &units[..count] {
        let (cap, ecap) = (read64(base, CAP), read64(base, ECAP));
        if cap & CAP_SAGAW_4LEVEL == 0 || ecap & ECAP_PT == 0 {
            hvlog!(
                "VT-d unit at {base:#x}: no 4-level tables or no pass-through (CAP {cap:#x}, \
                 ECAP {ecap:#x}): DMA remapping stays off"
            );
            return None;
        }
    }
    let root = frames::alloc(1)?;
    let shared = frames::alloc(1)?;
    let unowned = context_entry(TT_PASS_THROUGH, 0, PASS_THROUGH_DOMAIN);
    for devfn in 0..256 {
        write_entry(shared, devfn, unowned);
    }
    for bus in 0..256 {
        write_entry(root, bus, root_entry(shared));
    }
    let ecaps = || units[..count].iter().map(|&b| read64(b, ECAP));
    let queued = ecaps().all(|e| e & ECAP_QI != 0);
    let queues = if queued {
        // Slots past `count` keep a copy of the first ring; nothing uses them.
        let mut q = [CommandRing::new()?; MAX_DRHDS];
        for ring in &mut q[1..count] {
            *ring = CommandRing::new()?;
        }
        Some(q)
    } else {
        None
    };
    let mut r = Remapping {
        units,
        count,
        root,
        shared,
        unowned,
        own: [(0, 0); 8],
        owned: 0,
        faults: [0; MAX_DRHDS],
        queues,
        completion: Completion::new()?,
        interrupts: None,
    };
    let interrupts = if queued && ecaps().all(|e| e & ECAP_IR != 0) {
        interrupt_remapping()
    } else {
        hvlog!(
            "VT-d: interrupt remapping off: a unit has no queued invalidation or no interrupt \
             remapping (a device's DMA to 0xFEExxxxx can raise any interrupt)"
        );
        None
    };
    let (address, data) = fault_event(
        crate::arch::x86::lapic::id() as u8,
        crate::arch::x86::irq::DMA_FAULT_VECTOR,
    );
    for u in 0..count {
        let base = units[u];
        write32(base, FEDATA, data);
        write32(base, FEADDR, address);
        write32(base, FEUADDR, 0);
        write32(base, FECTL, 0);
        write64(base, RTADDR, root);
        command(base, GCMD_SRTP);
        if let Some(q) = r.queues {
            write64(base, IQT, 0);
            write64(base, IQA, q[u].base());
            if !command(base, GCMD_QIE) {
                hvlog!("VT-d unit at {base:#x}: queued invalidation did not turn on");
                return None;
            }
        }
    }
    r.invalidate();
    if let Some(ir) = interrupts.as_ref() {
        for &base in &units[..count] {
            write64(base, IRTA, irta(ir.table, ir.x2apic));
            command(base, GCMD_SIRTP);
        }
        r.interrupts = interrupts;
        r.invalidate();
        for &base in &units[..count] {
            if !command(base, GCMD_IRE) {
                hvlog!("VT-d unit at {base:#x}: interrupt remapping did not turn on");
                return None;
            }
        }
    }
    for &base in &units[..count] {
        if !command(base, GCMD_TE) {
            hvlog!("VT-d unit at {base:#x}: translation did not turn on");
            return None;
        }
    }
    hvlog!("VT-d: DMA remapping on in {count} unit(s); pass-through functions are confined to their VM's memory");
    if r.interrupts.is_some() {
        hvlog!(
            "VT-d: interrupt remapping on: each device raises only the vectors the hypervisor \
             gave it (compatibility-format requests blocked)"
        );
    }
    Some(r)
}

/// Interrupt remapping's table, if the DMAR names the requester of every IOAPIC of the board
/// (their entries check it).
fn interrupt_remapping() -> Option<InterruptRemapping> {
    Some(InterruptRemapping {
        ioapics: IoapicSources::of_board(Iommu::VtD, "DMAR", acpi::dmar_ioapics)?,
        table: frames::alloc(usize::from(IRT_ENTRIES) * 16 / 4096)?,
        x2apic: crate::arch::x86::lapic::x2apic(),
    })
}

/// The message a function's MSI or MSI-X entry carries to raise `vector` at the local APIC
/// `apic_id`, when interrupts are remapped: IRTE `vector`, which only requests with the ID
/// `source` (the one the unit sees on that function's requests) may use.
pub fn msi_message(source: u16, vector: u8, apic_id: u32) -> Option<(u32, u32)> {
    let mut state = STATE.lock();
    let r = state.as_mut()?;
    let x2apic = r.interrupts.as_ref()?.x2apic;
    let index = u16::from(vector);
    r.set_irte(index, irte(vector, apic_id, x2apic, false, Some(source)));
    Some(remappable_msi(index))
}

/// The redirection entry for `rte` (fixed, physical destination) of the pin of `gsi` on IOAPIC
/// `ioapic_id`, when interrupts are remapped: the GSI's IRTE, which only that IOAPIC may use.
pub fn ioapic_entry(ioapic_id: u8, gsi: u32, rte: u64) -> Option<u64> {
    let mut state = STATE.lock();
    let r = state.as_mut()?;
    let ir = r.interrupts.as_ref()?;
    let source = ir.ioapics.requester(ioapic_id)?;
    let index = ioapic_index(gsi)?;
    let level = rte & 1 << 15 != 0;
    let entry = irte(
        rte as u8,
        (rte >> 56) as u32,
        ir.x2apic,
        level,
        Some(source),
    );
    r.set_irte(index, entry);
    Some(remappable_rte(rte, index))
}

static TRIED: spin::Once<()> = spin::Once::new();

/// Turns remapping on now, if the host has units (and it is not on already).
pub fn turn_on() {
    let mut state = STATE.lock();
    TRIED.call_once(|| *state = enable());
}

/// Sends the DMA of every function no VM owns, the Service VM's, through its second-level
/// table `table` (its NPT/EPT root) in domain `vm_id + 1`. Whether it is confined now.
pub fn confine_service(table: u64, vm_id: u16) -> bool {
    let mut state = STATE.lock();
    TRIED.call_once(|| *state = enable());
    let Some(r) = state.as_mut() else {
        return false;
    };
    let old = r.unowned;
    r.unowned = context_entry(TT_UNTRANSLATED, table, u64::from(vm_id) + 1);
    for devfn in 0..256 {
        write_entry(r.shared, devfn, r.unowned);
    }
    for &(_, own) in &r.own[..r.owned] {
        for devfn in 0..256 {
            if read_entry(own, devfn) == old {
                write_entry(own, devfn, r.unowned);
            }
        }
    }
    r.invalidate();
    hvlog!("VT-d: the Service VM's devices are confined to its memory");
    true
}

/// Sends the DMA of requester IDs `ids` (one function's own and its aliases) through the
/// VM's second-level table `table` (its NPT/EPT root) in domain `vm_id + 1`. Whether the
/// function's DMA is confined now.
pub fn confine(ids: &[u16], table: u64, vm_id: u16) -> bool {
    let mut state = STATE.lock();
    TRIED.call_once(|| *state = enable());
    let Some(r) = state.as_mut() else {
        return false;
    };
    let entry = context_entry(TT_UNTRANSLATED, table, u64::from(vm_id) + 1);
    for &id in ids {
        let Some(own) = r.own_context_table(id) else {
            return false;
        };
        write_entry(own, devfn(id), entry);
    }
    r.invalidate();
    true
}

/// The DMA of requester IDs `ids` is the Service VM's again, as its other devices' (the
/// function went back to it).
pub fn release(ids: &[u16]) {
    let mut state = STATE.lock();
    let Some(r) = state.as_mut() else {
        return;
    };
    for &id in ids {
        let bus = (id >> 8) as u8;
        if let Some(&(_, own)) = r.own[..r.owned].iter().find(|(b, _)| *b == bus) {
            write_entry(own, devfn(id), r.unowned);
        }
    }
    r.invalidate();
}

/// The context table index of requester ID `id`.
fn devfn(id: u16) -> usize {
    usize::from(id & 0xFF)
}

/// The VM's table changed (a mapping removed or moved): cached translations go.
pub fn flush() {
    if let Some(r) = STATE.lock().as_mut() {
        r.invalidate();
    }
}

/// Reports (through `report`, with the unit's count so far) and clears the faults the units
/// recorded.
pub fn report_faults(report: impl Fn(&DmaFault, u32)) {
    let mut state = STATE.lock();
    let Some(r) = state.as_mut() else {
        return;
    };
    for (u, &base) in r.units[..r.count].iter().enumerate() {
        let status = read32(base, FSTS);
        if status & (FSTS_PPF | FSTS_PFO) == 0 {
            continue;
        }
        let (first, records) = fault_records(read64(base, CAP));
        for i in 0..records as u64 {
            let at = base + first + 16 * i;
            let Some(f) = DmaFault::decode(read64(at, 0), read64(at, 8)) else {
                continue;
            };
            write32(at, 12, (FRCD_F >> 32) as u32);
            r.faults[u] = r.faults[u].saturating_add(1);
            report(&f, r.faults[u]);
        }
        if status & FSTS_PFO != 0 {
            r.faults[u] = r.faults[u].saturating_add(1);
        }
        write32(base, FSTS, FSTS_PFO);
    }
}

/// DMA faults recorded so far, all units.
pub fn fault_count() -> u32 {
    STATE.lock().as_ref().map_or(0, |r| {
        r.faults[..r.count]
            .iter()
            .fold(0, |a, &n| a.saturating_add(n))
    })
}
