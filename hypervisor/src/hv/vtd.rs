//! Intel VT-d DMA remapping (the host's DMAR table names the units). Turned on when the first
//! function is given to a VM or when the Service VM is built: every unit gets one root table
//! whose buses all point at a shared context table for the functions no VM owns: they are the
//! Service VM's, so their DMA goes through its NPT/EPT (its memory, identity-mapped: never the
//! hypervisor's or a pre-launched VM's), or passes untranslated in a scenario without a Service
//! VM. The buses of pass-through functions get context tables of their own that send those
//! functions through their VM's NPT/EPT. Those tables' leaf and table entries are valid
//! second-level entries (read/write in bits 0-1, superpages in bit 7, nothing in bit 11 or
//! above the address), so a device reaches exactly its VM's memory at the VM's guest-physical
//! addresses, as ACRN shares its EPT with VT-d. The units' register pages are the hypervisor's:
//! the Service VM cannot reach them.

use super::frames;
use super::iommu::wait;
use crate::arch::vtd::*;
use crate::hvlog;
use crate::vm::acpi::{self, MAX_DRHDS};
use acrn_static_config::Bdf;
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
}

static STATE: Mutex<Option<Remapping>> = Mutex::new(None);

impl Remapping {
    /// Flushes every unit's context cache and IOTLB.
    fn invalidate(&self) {
        for &base in &self.units[..self.count] {
            invalidate(base);
        }
    }
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
    let (address, data) = fault_event(
        crate::arch::x86::lapic::id() as u8,
        crate::arch::x86::irq::DMA_FAULT_VECTOR,
    );
    for &base in &units[..count] {
        write32(base, FEDATA, data);
        write32(base, FEADDR, address);
        write32(base, FEUADDR, 0);
        write32(base, FECTL, 0);
        write64(base, RTADDR, root);
        write32(base, GCMD, GCMD_SRTP);
        wait(|| read32(base, GSTS) & GCMD_SRTP != 0);
        invalidate(base);
        write32(base, GCMD, GCMD_TE);
        if !wait(|| read32(base, GSTS) & GCMD_TE != 0) {
            hvlog!("VT-d unit at {base:#x}: translation did not turn on");
            return None;
        }
    }
    hvlog!("VT-d: DMA remapping on in {count} unit(s); pass-through functions are confined to their VM's memory");
    Some(Remapping {
        units,
        count,
        root,
        shared,
        unowned,
        own: [(0, 0); 8],
        owned: 0,
        faults: [0; MAX_DRHDS],
    })
}

static TRIED: spin::Once<()> = spin::Once::new();

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

/// Sends `bdf`'s DMA through the VM's second-level table `table` (its NPT/EPT root) in domain
/// `vm_id + 1`. Whether the function's DMA is confined now.
pub fn confine(bdf: Bdf, table: u64, vm_id: u16) -> bool {
    let mut state = STATE.lock();
    TRIED.call_once(|| *state = enable());
    let Some(r) = state.as_mut() else {
        return false;
    };
    let own = match r.own[..r.owned].iter().find(|(b, _)| *b == bdf.bus) {
        Some(&(_, t)) => t,
        None => {
            let Some(t) = frames::alloc(1).filter(|_| r.owned < r.own.len()) else {
                return false;
            };
            // SAFETY: both are pool frames of 4 KiB.
            unsafe { core::ptr::copy_nonoverlapping(r.shared as *const u8, t as *mut u8, 4096) };
            r.own[r.owned] = (bdf.bus, t);
            r.owned += 1;
            write_entry(r.root, usize::from(bdf.bus), root_entry(t));
            t
        }
    };
    let devfn = usize::from(bdf.dev & 0x1F) << 3 | usize::from(bdf.func & 7);
    write_entry(
        own,
        devfn,
        context_entry(TT_UNTRANSLATED, table, u64::from(vm_id) + 1),
    );
    r.invalidate();
    true
}

/// `bdf`'s DMA is the Service VM's again, as its other devices' (the function went back to
/// it).
pub fn release(bdf: Bdf) {
    let mut state = STATE.lock();
    let Some(r) = state.as_mut() else {
        return;
    };
    let Some(&(_, own)) = r.own[..r.owned].iter().find(|(b, _)| *b == bdf.bus) else {
        return;
    };
    let devfn = usize::from(bdf.dev & 0x1F) << 3 | usize::from(bdf.func & 7);
    write_entry(own, devfn, r.unowned);
    r.invalidate();
}

/// The VM's table changed (a mapping removed or moved): cached translations go.
pub fn flush() {
    if let Some(r) = STATE.lock().as_ref() {
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
