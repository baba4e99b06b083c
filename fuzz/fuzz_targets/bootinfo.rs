//! The boot information parser (PVH `hvm_start_info` with cpio modules, multiboot2) over a
//! model of physical memory holding the input. What must hold: no panic (no overflow on any
//! pointer or size the loader gives), the tables stay within their capacities, a multiboot2
//! parse reads nothing outside the information's `total_size`, and `is_ram` agrees with a
//! model of the memory map.
#![no_main]

use std::cell::RefCell;

use acrn_hypervisor::bootinfo::{
    BootInfo, PhysRead, Protocol, CMDLINE_LEN, MAX_MEMMAP, MAX_MODULES, MB2_MAGIC, PVH_MAGIC,
    TAG_LEN,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Physical memory: the input bytes at `BASE`, nothing elsewhere; remembers every read.
struct Memory<'a> {
    bytes: &'a [u8],
    reads: RefCell<Vec<(u64, usize)>>,
}

const BASE: u64 = 0x1000;

impl PhysRead for Memory<'_> {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        self.reads.borrow_mut().push((pa, buf.len()));
        let Some(off) = pa.checked_sub(BASE) else {
            return false;
        };
        let Some(src) = usize::try_from(off)
            .ok()
            .and_then(|o| self.bytes.get(o..o.checked_add(buf.len())?))
        else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    multiboot2: bool,
    /// Offset of the information structure in the memory.
    info_offset: u16,
    /// A range to ask `is_ram` about.
    query: (u64, u64),
    memory: &'a [u8],
}

fuzz_target!(|input: Input| {
    let mem = Memory {
        bytes: input.memory,
        reads: RefCell::new(Vec::new()),
    };
    let info = BASE + u64::from(input.info_offset);
    let magic = if input.multiboot2 {
        MB2_MAGIC
    } else {
        PVH_MAGIC
    };
    let Ok(bi) = BootInfo::parse(&mem, magic, info) else {
        return;
    };
    assert_eq!(
        bi.protocol,
        if input.multiboot2 {
            Protocol::Multiboot2
        } else {
            Protocol::Pvh
        }
    );
    assert!(bi.memmap().len() <= MAX_MEMMAP);
    assert!(bi.modules().len() <= MAX_MODULES);
    assert!(bi.cmdline().len() <= CMDLINE_LEN);
    for m in bi.modules() {
        assert!(m.tag().len() <= TAG_LEN);
        assert!(!m.tag().bytes().any(|b| b == 0), "tag {:?}", m.tag());
    }
    if input.multiboot2 {
        let mut total = [0u8; 4];
        assert!(mem.read(info, &mut total));
        let end = info.saturating_add(u64::from(u32::from_le_bytes(total)));
        for &(pa, len) in mem.reads.borrow().iter() {
            assert!(
                pa >= info && pa.checked_add(len as u64).is_some_and(|e| e <= end),
                "read of {len} bytes at {pa:#x} outside the information [{info:#x}, {end:#x})"
            );
        }
    }
    let (start, size) = input.query;
    let covered = covered_by_ram(
        bi.memmap().iter().map(|e| (e.addr, e.size, e.kind)),
        start,
        size,
    );
    assert_eq!(
        bi.is_ram(start, size),
        covered,
        "is_ram({start:#x}, {size:#x})"
    );
});

/// Whether the usable (type 1) entries cover `[start, start + size)` (saturating at 2^64, as
/// `is_ram` does), by sweeping the entries' boundaries.
fn covered_by_ram(entries: impl Iterator<Item = (u64, u64, u32)>, start: u64, size: u64) -> bool {
    let end = start.saturating_add(size);
    let mut ram: Vec<(u64, u64)> = entries
        .filter(|&(_, s, k)| k == 1 && s > 0)
        .map(|(a, s, _)| (a, a.saturating_add(s)))
        .collect();
    ram.sort();
    let mut cur = start;
    for (a, e) in ram {
        if cur >= end {
            break;
        }
        if a <= cur && cur < e {
            cur = e;
        }
    }
    cur >= end
}
