//! The hypervisor's 1:1 map of physical memory. The boot code maps the first 4 GiB with 2 MiB
//! pages; [`extend`] maps the rest of what the machine has, so that guest RAM and device MMIO
//! above 4 GiB are reachable too (ACRN's allocator puts pre-launched VMs' RAM there first).

use core::sync::atomic::{AtomicU64, Ordering};

use super::{cpuid, read_cr3};

const GIB: u64 = 1 << 30;
const MIB2: u64 = 2 << 20;
/// What the boot page tables map.
const BOOT_REACH: u64 = 4 * GIB;
/// Page-table entry bits.
const PRESENT: u64 = 1;
const WRITABLE: u64 = 1 << 1;
const LARGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
/// One PML4 entry covers 512 GiB; four levels cover 256 TiB.
const FOUR_LEVEL_LIMIT: u64 = 1 << 48;

static REACH: AtomicU64 = AtomicU64::new(BOOT_REACH);

/// Physical memory below this address is mapped 1:1 (address = physical address).
pub fn reach() -> u64 {
    REACH.load(Ordering::Acquire)
}

/// Whether the CPU maps 1 GiB pages (CPUID 0x80000001 EDX bit 26).
pub fn has_1g_pages() -> bool {
    cpuid(0x8000_0000, 0)[0] >= 0x8000_0001 && cpuid(0x8000_0001, 0)[3] & (1 << 26) != 0
}

/// Maps `[reach(), top)` 1:1, `top` rounded up to 1 GiB: with 1 GiB pages when `huge` (the
/// CPU has them, [`has_1g_pages`]), else with 2 MiB pages in page directories taken from `alloc` (zeroed, identity-mapped
/// 4 KiB frames), which also gives the page-directory-pointer tables above 512 GiB. Stops
/// short when `alloc` runs out. Call on the boot pCPU before the others start: they share
/// these tables, and entries that were not present need no TLB flush.
pub fn extend(top: u64, huge: bool, mut alloc: impl FnMut() -> Option<u64>) -> u64 {
    let top = top.min(FOUR_LEVEL_LIMIT).next_multiple_of(GIB);
    let pml4 = read_cr3() & ADDRESS;
    let mut at = reach();
    while at < top {
        let pml4e = pml4 + ((at >> 39) & 511) * 8;
        let mut entry = read(pml4e);
        if entry & PRESENT == 0 {
            let Some(pdpt) = alloc() else { break };
            entry = pdpt | PRESENT | WRITABLE;
            write(pml4e, entry);
        }
        let pdpte = (entry & ADDRESS) + ((at >> 30) & 511) * 8;
        if huge {
            write(pdpte, at | PRESENT | WRITABLE | LARGE);
        } else {
            let Some(pd) = alloc() else { break };
            for i in 0..512 {
                write(pd + i * 8, (at + i * MIB2) | PRESENT | WRITABLE | LARGE);
            }
            write(pdpte, pd | PRESENT | WRITABLE);
        }
        at += GIB;
        REACH.store(at, Ordering::Release);
    }
    at
}

fn read(pa: u64) -> u64 {
    // SAFETY: a page-table entry in a table below the boot reach (the image or the frame pool).
    unsafe { core::ptr::read_volatile(pa as *const u64) }
}

fn write(pa: u64, v: u64) {
    // SAFETY: as in `read`; the entry maps memory that nothing used before.
    unsafe { core::ptr::write_volatile(pa as *mut u64, v) }
}
