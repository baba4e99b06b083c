//! Page frames for hypervisor structures (VMCBs, permission maps, nested page tables): a bump
//! allocator over a pool in the image's .bss, so it lies inside the hypervisor's RAM. Frames are
//! never freed (VMs are static).

use crate::arch::x86::cpu::CpuCell;
use crate::paging::TableMemory;
use spin::Mutex;

/// 8 MiB for page tables and VM structures, 2 MiB more for an AMD IOMMU's device table.
const POOL_SIZE: usize = 10 << 20;

#[repr(C, align(4096))]
struct Pool([u8; POOL_SIZE]);

static POOL: CpuCell<Pool> = CpuCell::new(Pool([0; POOL_SIZE]));
static NEXT: Mutex<usize> = Mutex::new(0);

/// `pages` contiguous zeroed 4 KiB frames (identity-mapped: address = physical address).
pub fn alloc(pages: usize) -> Option<u64> {
    let mut next = NEXT.lock();
    let len = pages.checked_mul(4096)?;
    if *next + len > POOL_SIZE {
        return None;
    }
    let pa = POOL.get() as u64 + *next as u64;
    *next += len;
    // .bss is zeroed at boot and frames are handed out once, so they are still zero.
    Some(pa)
}

/// Nested/extended page tables in pool frames.
pub struct Frames;

impl TableMemory for Frames {
    fn alloc_table(&mut self) -> Option<u64> {
        alloc(1)
    }
    fn read(&self, table: u64, index: usize) -> u64 {
        // SAFETY: `table` is a pool frame handed out by alloc_table; index < 512.
        unsafe { core::ptr::read_volatile((table as *const u64).add(index & 511)) }
    }
    fn write(&mut self, table: u64, index: usize, entry: u64) {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile((table as *mut u64).add(index & 511), entry) }
    }
}
