//! Mapping one extra 2 MiB page above the boot stub's 4 GiB identity map.

use crate::arch::flush_tlb;

extern "C" {
    static mut boot_pdpt: [u64; 512];
    static mut spare_pd: [u64; 512];
}

/// Lowest GPA that needs this (everything below is already identity-mapped).
const MAPPED_LIMIT: u64 = 0x1_0000_0000;
/// PML4[0] covers 512 GiB; the spare directory hangs off that PDPT.
const PDPT_SPAN: u64 = 512 << 30;

/// Identity-maps the 2 MiB page holding `gpa` (uncached) through the spare page directory
/// and returns `gpa` as a pointer. Replaces whatever the spare directory mapped before.
/// Returns None for addresses below 4 GiB (already mapped) or beyond 512 GiB.
pub fn map_high(gpa: u64) -> Option<*mut u64> {
    if !(MAPPED_LIMIT..PDPT_SPAN).contains(&gpa) {
        return None;
    }
    let slot = (gpa >> 30) as usize;
    // SAFETY: single-threaded use by the BSP; PDPT slots 4..512 are never used by the boot
    // stub, so repointing them cannot unmap anything the guest relies on.
    unsafe {
        let pdpt = &mut *core::ptr::addr_of_mut!(boot_pdpt);
        let pd = &mut *core::ptr::addr_of_mut!(spare_pd);
        pdpt[4..].iter_mut().for_each(|e| *e = 0);
        pd.iter_mut().for_each(|e| *e = 0);
        pd[((gpa >> 21) & 511) as usize] = (gpa & !0x1F_FFFF) | 0x9B; // P|RW|PWT|PCD|PS
        pdpt[slot] = (core::ptr::addr_of!(spare_pd) as u64) | 3;
        flush_tlb();
    }
    Some(gpa as usize as *mut u64)
}
