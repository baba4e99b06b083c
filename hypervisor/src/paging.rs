//! One 4-level page-table builder for second-level translation, generic over the entry
//! encoding: AMD NPT entries (the legacy x86-64 format) and Intel EPT entries differ only in how
//! an entry is encoded, never in how the tree is built. Table memory comes from a
//! [`TableMemory`] so the builder runs on the host in tests.

use bitflags::bitflags;
use core::marker::PhantomData;
use x86_64::structures::paging::PageTableFlags;

pub const PAGE_4K: u64 = 0x1000;
pub const PAGE_2M: u64 = 0x20_0000;
pub const PAGE_1G: u64 = 0x4000_0000;
const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// Access rights of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Perm {
    pub const RWX: Perm = Perm {
        read: true,
        write: true,
        exec: true,
    };
    pub const RX: Perm = Perm {
        read: true,
        write: false,
        exec: true,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemType {
    WriteBack,
    Uncached,
}

/// The encoding of one entry format. `level` is 1 for a 4 KiB leaf, 2 for 2 MiB, 3 for 1 GiB.
pub trait EntryFormat {
    /// A non-leaf entry at `level` (2 to 4) pointing at the next table.
    fn table(pa: u64, level: u8) -> u64;
    fn leaf(pa: u64, level: u8, perm: Perm, mt: MemType) -> u64;
    fn is_present(e: u64) -> bool;
    /// True if a present entry at `level` (2 or 3) maps a huge page.
    fn is_huge(e: u64) -> bool;
    fn perm(e: u64) -> Perm;
    fn mem_type(e: u64) -> MemType;
    fn addr(e: u64) -> u64 {
        e & ADDR_MASK
    }
}

/// AMD nested page table entries: legacy long-mode format. Every nested walk is a user access,
/// so U/S is set at every level; NX is never set because the host runs with EFER.NXE = 0, where
/// bit 63 would be reserved (the rights of NPT mappings are therefore always executable).
pub enum Npt {}

impl Npt {
    fn flags(e: u64) -> PageTableFlags {
        PageTableFlags::from_bits_retain(e)
    }
}

impl EntryFormat for Npt {
    fn table(pa: u64, _level: u8) -> u64 {
        let flags =
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        (pa & ADDR_MASK) | flags.bits()
    }
    fn leaf(pa: u64, level: u8, perm: Perm, mt: MemType) -> u64 {
        let mut f = PageTableFlags::USER_ACCESSIBLE;
        f.set(
            PageTableFlags::PRESENT,
            perm.read || perm.write || perm.exec,
        );
        f.set(PageTableFlags::WRITABLE, perm.write);
        f.set(PageTableFlags::HUGE_PAGE, level > 1);
        f.set(
            PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH,
            mt == MemType::Uncached,
        );
        (pa & ADDR_MASK) | f.bits()
    }
    fn is_present(e: u64) -> bool {
        Self::flags(e).contains(PageTableFlags::PRESENT)
    }
    fn is_huge(e: u64) -> bool {
        Self::flags(e).contains(PageTableFlags::HUGE_PAGE)
    }
    fn perm(e: u64) -> Perm {
        let p = Self::flags(e).contains(PageTableFlags::PRESENT);
        Perm {
            read: p,
            write: p && Self::flags(e).contains(PageTableFlags::WRITABLE),
            exec: p,
        }
    }
    fn mem_type(e: u64) -> MemType {
        if Self::flags(e).contains(PageTableFlags::NO_CACHE) {
            MemType::Uncached
        } else {
            MemType::WriteBack
        }
    }
}

/// Intel EPT entries (SDM vol. 3 §29.3.2): R/W/X in bits 0-2, memory type in bits 3-5 of a leaf,
/// bit 7 marks a 2 MiB/1 GiB leaf.
pub enum Ept {}

bitflags! {
    /// EPT entry bits (not the x86 page-table encoding, so not the `x86_64` crate's flags).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct EptFlags: u64 {
        const READ = 1 << 0;
        const WRITE = 1 << 1;
        const EXECUTE = 1 << 2;
        /// The memory-type field of a leaf (bits 5:3).
        const MEMORY_TYPE = 7 << 3;
        const HUGE_PAGE = 1 << 7;
        const RWX = Self::READ.bits() | Self::WRITE.bits() | Self::EXECUTE.bits();
        const _ = !0;
    }
}

impl EptFlags {
    /// Values of [`EptFlags::MEMORY_TYPE`].
    const MEMORY_TYPE_UC: u64 = 0;
    const MEMORY_TYPE_WB: u64 = 6 << 3;
}

impl EntryFormat for Ept {
    fn table(pa: u64, _level: u8) -> u64 {
        (pa & ADDR_MASK) | EptFlags::RWX.bits()
    }
    fn leaf(pa: u64, level: u8, perm: Perm, mt: MemType) -> u64 {
        let mut f = EptFlags::from_bits_retain(match mt {
            MemType::WriteBack => EptFlags::MEMORY_TYPE_WB,
            MemType::Uncached => EptFlags::MEMORY_TYPE_UC,
        });
        f.set(EptFlags::READ, perm.read);
        f.set(EptFlags::WRITE, perm.write);
        f.set(EptFlags::EXECUTE, perm.exec);
        f.set(EptFlags::HUGE_PAGE, level > 1);
        (pa & ADDR_MASK) | f.bits()
    }
    fn is_present(e: u64) -> bool {
        EptFlags::from_bits_retain(e).intersects(EptFlags::RWX)
    }
    fn is_huge(e: u64) -> bool {
        EptFlags::from_bits_retain(e).contains(EptFlags::HUGE_PAGE)
    }
    fn perm(e: u64) -> Perm {
        let f = EptFlags::from_bits_retain(e);
        Perm {
            read: f.contains(EptFlags::READ),
            write: f.contains(EptFlags::WRITE),
            exec: f.contains(EptFlags::EXECUTE),
        }
    }
    fn mem_type(e: u64) -> MemType {
        if e & EptFlags::MEMORY_TYPE.bits() == EptFlags::MEMORY_TYPE_WB {
            MemType::WriteBack
        } else {
            MemType::Uncached
        }
    }
}

/// AMD-Vi I/O page table entries (AMD IOMMU spec, "I/O Page Tables for Host Translations"):
/// present in bit 0, the level of the table an entry points at in bits 11:9 (0 marks a leaf,
/// whose page size is its level's), read and write permission in bits 61 and 62. The IOMMU
/// cannot share the NPT (its rights are elsewhere), so a VM's devices get a second tree in this
/// format that mirrors the VM's NPT.
pub enum AmdVi {}

bitflags! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct AmdViFlags: u64 {
        const PRESENT = 1 << 0;
        /// Next Level (bits 11:9).
        const NEXT_LEVEL = 7 << 9;
        const READ = 1 << 61;
        const WRITE = 1 << 62;
        const _ = !0;
    }
}

impl EntryFormat for AmdVi {
    fn table(pa: u64, level: u8) -> u64 {
        let next = u64::from(level.saturating_sub(1)) << 9;
        (pa & ADDR_MASK)
            | next
            | (AmdViFlags::PRESENT | AmdViFlags::READ | AmdViFlags::WRITE).bits()
    }
    fn leaf(pa: u64, _level: u8, perm: Perm, _mt: MemType) -> u64 {
        let mut f = AmdViFlags::empty();
        f.set(AmdViFlags::PRESENT, perm.read || perm.write);
        f.set(AmdViFlags::READ, perm.read);
        f.set(AmdViFlags::WRITE, perm.write);
        (pa & ADDR_MASK) | f.bits()
    }
    fn is_present(e: u64) -> bool {
        AmdViFlags::from_bits_retain(e).contains(AmdViFlags::PRESENT)
    }
    fn is_huge(e: u64) -> bool {
        !AmdViFlags::from_bits_retain(e).intersects(AmdViFlags::NEXT_LEVEL)
    }
    fn perm(e: u64) -> Perm {
        let f = AmdViFlags::from_bits_retain(e);
        let p = f.contains(AmdViFlags::PRESENT);
        Perm {
            read: p && f.contains(AmdViFlags::READ),
            write: p && f.contains(AmdViFlags::WRITE),
            exec: false,
        }
    }
    fn mem_type(_e: u64) -> MemType {
        // Device accesses take the memory type of the target; the entry has none.
        MemType::WriteBack
    }
}

/// Where page tables live: zeroed 4 KiB tables addressed by their physical address.
pub trait TableMemory {
    /// A fresh zeroed table, or `None` when out of memory.
    fn alloc_table(&mut self) -> Option<u64>;
    fn read(&self, table: u64, index: usize) -> u64;
    fn write(&mut self, table: u64, index: usize, entry: u64);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    OutOfMemory,
    /// Addresses or size not 4 KiB aligned, or beyond 48 bits.
    BadRange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub hpa: u64,
    pub perm: Perm,
    pub mem_type: MemType,
    /// Size of the page that maps the address.
    pub page_size: u64,
}

/// A 4-level table rooted at `root` (the PML4 physical address).
pub struct PageTable<F: EntryFormat> {
    root: u64,
    _f: PhantomData<F>,
}

fn index(addr: u64, level: u8) -> usize {
    ((addr >> (12 + 9 * (level as u64 - 1))) & 0x1FF) as usize
}

fn level_size(level: u8) -> u64 {
    1 << (12 + 9 * (level as u64 - 1))
}

impl<F: EntryFormat> PageTable<F> {
    pub fn new(mem: &mut impl TableMemory) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(PageTable {
            root,
            _f: PhantomData,
        })
    }

    pub fn root(&self) -> u64 {
        self.root
    }

    /// The table rooted at `root`, to change it after it was built. The caller serializes
    /// changes to the same range.
    pub fn from_root(root: u64) -> Self {
        PageTable {
            root,
            _f: PhantomData,
        }
    }

    /// Maps `[gpa, gpa+size)` to `[hpa, hpa+size)`, using 1 GiB and 2 MiB pages wherever both
    /// addresses are aligned and enough remains. Existing mappings in the range are replaced
    /// (a huge page that is only partly covered is split first). Whether any was: cached
    /// translations of the range are stale then.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        hpa: u64,
        size: u64,
        perm: Perm,
        mt: MemType,
    ) -> Result<bool, MapError> {
        if (gpa | hpa | size) & (PAGE_4K - 1) != 0
            || gpa.checked_add(size).is_none_or(|e| e > 1 << 48)
            || hpa.checked_add(size).is_none_or(|e| e > 1 << 52)
        {
            return Err(MapError::BadRange);
        }
        let (mut off, mut replaced) = (0, false);
        while off < size {
            let (g, h, left) = (gpa + off, hpa + off, size - off);
            let level = [3u8, 2, 1]
                .into_iter()
                .find(|&l| {
                    let s = level_size(l);
                    g % s == 0 && h % s == 0 && left >= s
                })
                .unwrap_or(1);
            replaced |= self.set_leaf(mem, g, F::leaf(h, level, perm, mt), level)?;
            off += level_size(level);
        }
        Ok(replaced)
    }

    /// Removes the mapping of `[gpa, gpa+size)` (4 KiB aligned), splitting huge pages as needed.
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        size: u64,
    ) -> Result<(), MapError> {
        if (gpa | size) & (PAGE_4K - 1) != 0 || gpa.checked_add(size).is_none_or(|e| e > 1 << 48) {
            return Err(MapError::BadRange);
        }
        let mut off = 0;
        while off < size {
            let g = gpa + off;
            let level = [3u8, 2, 1]
                .into_iter()
                .find(|&l| g.is_multiple_of(level_size(l)) && size - off >= level_size(l))
                .unwrap_or(1);
            self.set_leaf(mem, g, 0, level)?;
            off += level_size(level);
        }
        Ok(())
    }

    /// Installs `entry` at `level` for `gpa`, creating or splitting tables above it; whether
    /// it replaced (part of) a present mapping.
    fn set_leaf(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        entry: u64,
        level: u8,
    ) -> Result<bool, MapError> {
        let mut table = self.root;
        let mut l = 4;
        let mut split = false;
        while l > level {
            let i = index(gpa, l);
            let e = mem.read(table, i);
            let next = if !F::is_present(e) {
                if entry == 0 {
                    return Ok(false); // nothing mapped here: nothing to remove
                }
                let t = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                mem.write(table, i, F::table(t, l));
                t
            } else if l <= 3 && F::is_huge(e) {
                // Split: the new table maps the same range with pages one level smaller.
                let t = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                let (base, perm, mt) = (F::addr(e), F::perm(e), F::mem_type(e));
                let sub = level_size(l - 1);
                for j in 0..512 {
                    mem.write(t, j, F::leaf(base + j as u64 * sub, l - 1, perm, mt));
                }
                mem.write(table, i, F::table(t, l));
                split = true;
                t
            } else {
                F::addr(e)
            };
            table = next;
            l -= 1;
        }
        let old = mem.read(table, index(gpa, level));
        mem.write(table, index(gpa, level), entry);
        Ok(split || F::is_present(old))
    }

    /// Calls `f` with every present leaf in address order: (gpa, translation), the translation's
    /// `hpa` being the page's start.
    pub fn for_each_leaf(&self, mem: &impl TableMemory, mut f: impl FnMut(u64, Translation)) {
        Self::leaves_below(mem, self.root, 4, 0, &mut f);
    }

    fn leaves_below(
        mem: &impl TableMemory,
        table: u64,
        l: u8,
        base: u64,
        f: &mut impl FnMut(u64, Translation),
    ) {
        for i in 0..512u64 {
            let e = mem.read(table, i as usize);
            if !F::is_present(e) {
                continue;
            }
            let gpa = base + i * level_size(l);
            if l == 1 || (l <= 3 && F::is_huge(e)) {
                let translation = Translation {
                    hpa: F::addr(e) & !(level_size(l) - 1),
                    perm: F::perm(e),
                    mem_type: F::mem_type(e),
                    page_size: level_size(l),
                };
                f(gpa, translation);
            } else {
                Self::leaves_below(mem, F::addr(e), l - 1, gpa, f);
            }
        }
    }

    /// Walks the table like the hardware would.
    pub fn translate(&self, mem: &impl TableMemory, gpa: u64) -> Option<Translation> {
        Self::translate_root(self.root, mem, gpa)
    }

    /// [`PageTable::translate`] for the table rooted at `root` (a vCPU's loop knows only the
    /// root: the table itself sits behind the hypercall lock).
    pub fn translate_root(root: u64, mem: &impl TableMemory, gpa: u64) -> Option<Translation> {
        let mut table = root;
        let mut l = 4u8;
        loop {
            let e = mem.read(table, index(gpa, l));
            if !F::is_present(e) {
                return None;
            }
            if l == 1 || (l <= 3 && F::is_huge(e)) {
                let s = level_size(l);
                return Some(Translation {
                    hpa: (F::addr(e) & !(s - 1)) + (gpa & (s - 1)),
                    perm: F::perm(e),
                    mem_type: F::mem_type(e),
                    page_size: s,
                });
            }
            table = F::addr(e);
            l -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct HostMem {
        tables: HashMap<u64, Box<[u64; 512]>>,
        next: u64,
        limit: usize,
    }
    impl TableMemory for HostMem {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit != 0 && self.tables.len() >= self.limit {
                return None;
            }
            self.next += PAGE_4K;
            let pa = 0x100_0000 + self.next;
            self.tables.insert(pa, Box::new([0; 512]));
            Some(pa)
        }
        fn read(&self, t: u64, i: usize) -> u64 {
            self.tables[&t][i]
        }
        fn write(&mut self, t: u64, i: usize, e: u64) {
            self.tables.get_mut(&t).unwrap()[i] = e;
        }
    }

    fn maps_like_identity<F: EntryFormat>() {
        let mut m = HostMem::default();
        let mut pt = PageTable::<F>::new(&mut m).unwrap();
        // 256 MiB at GPA 0 -> HPA 0x1000_0000: 2 MiB pages only (1 GiB not reachable).
        pt.map(
            &mut m,
            0,
            0x1000_0000,
            0x1000_0000,
            Perm::RWX,
            MemType::WriteBack,
        )
        .unwrap();
        let t = pt.translate(&m, 0x12_3456).unwrap();
        assert_eq!(t.hpa, 0x1012_3456);
        assert_eq!(t.page_size, PAGE_2M);
        assert_eq!(t.perm, Perm::RWX);
        assert_eq!(pt.translate(&m, 0x0FFF_FFFF).unwrap().hpa, 0x1FFF_FFFF);
        // Unmapped by default, just past the end and far away.
        assert!(pt.translate(&m, 0x1000_0000).is_none());
        assert!(pt.translate(&m, 0xFEE0_0000).is_none());
        // PML4 + PDPT + PD: three tables.
        assert_eq!(m.tables.len(), 3);
    }

    #[test]
    fn npt_map_translate() {
        maps_like_identity::<Npt>();
    }
    #[test]
    fn ept_map_translate() {
        maps_like_identity::<Ept>();
    }

    #[test]
    fn gigabyte_pages_and_split() {
        let mut m = HostMem::default();
        let mut pt = PageTable::<Ept>::new(&mut m).unwrap();
        pt.map(&mut m, 0, 0, 4 * PAGE_1G, Perm::RWX, MemType::WriteBack)
            .unwrap();
        assert_eq!(pt.translate(&m, 0xFEE0_0000).unwrap().page_size, PAGE_1G);
        // Punch one 4 KiB hole: 1 GiB -> 2 MiB -> 4 KiB splits, neighbours keep their mapping.
        pt.unmap(&mut m, 0xFEE0_0000, PAGE_4K).unwrap();
        assert!(pt.translate(&m, 0xFEE0_0000).is_none());
        let n = pt.translate(&m, 0xFEE0_1000).unwrap();
        assert_eq!((n.hpa, n.page_size), (0xFEE0_1000, PAGE_4K));
        assert_eq!(pt.translate(&m, 0xFE00_0000).unwrap().page_size, PAGE_2M);
        assert_eq!(pt.translate(&m, 0x4000_0000).unwrap().page_size, PAGE_1G);
    }

    #[test]
    fn unaligned_mixed_sizes() {
        let mut m = HostMem::default();
        let mut pt = PageTable::<Npt>::new(&mut m).unwrap();
        pt.map(
            &mut m,
            0x1F_F000,
            0x2F_F000,
            0x40_2000,
            Perm::RX,
            MemType::Uncached,
        )
        .unwrap();
        assert_eq!(pt.translate(&m, 0x1F_F000).unwrap().page_size, PAGE_4K);
        let mid = pt.translate(&m, 0x30_0000).unwrap();
        assert_eq!(
            mid.page_size, PAGE_4K,
            "hpa 0x40_0000+0x1000 misaligned for 2 MiB"
        );
        assert_eq!(mid.hpa, 0x40_0000);
        assert_eq!(
            mid.perm,
            Perm {
                read: true,
                write: false,
                exec: true
            }
        );
        assert_eq!(mid.mem_type, MemType::Uncached);
        assert!(pt.translate(&m, 0x60_1000).is_none());
        assert!(pt.translate(&m, 0x60_0000).is_some());
    }

    #[test]
    fn errors() {
        let mut m = HostMem {
            limit: 2,
            ..Default::default()
        };
        let mut pt = PageTable::<Npt>::new(&mut m).unwrap();
        assert_eq!(
            pt.map(&mut m, 0x800, 0, 0x1000, Perm::RWX, MemType::WriteBack),
            Err(MapError::BadRange)
        );
        assert_eq!(
            pt.map(&mut m, 0, 0, PAGE_2M, Perm::RWX, MemType::WriteBack),
            Err(MapError::OutOfMemory)
        );
        assert_eq!(
            pt.map(&mut m, !0xFFF, 0, 0x2000, Perm::RWX, MemType::WriteBack),
            Err(MapError::BadRange)
        );
    }

    #[test]
    fn map_says_whether_it_replaced_a_mapping() {
        let mut m = HostMem::default();
        let mut pt = PageTable::<Npt>::new(&mut m).unwrap();
        let rw = (Perm::RWX, MemType::WriteBack);
        assert_eq!(pt.map(&mut m, 0, 0, PAGE_2M, rw.0, rw.1), Ok(false));
        assert_eq!(
            pt.map(&mut m, PAGE_2M, PAGE_2M, PAGE_4K, rw.0, rw.1),
            Ok(false)
        );
        // Part of the 2 MiB page (split) and one 4 KiB page mapped again.
        assert_eq!(
            pt.map(&mut m, 0x1000, 0x9000, PAGE_4K, rw.0, rw.1),
            Ok(true)
        );
        assert_eq!(
            pt.map(&mut m, PAGE_2M, PAGE_2M, PAGE_4K, Perm::RX, rw.1),
            Ok(true)
        );
    }

    #[test]
    fn amdvi_encoding() {
        // PR, Next Level 3, IR and IW.
        assert_eq!(AmdVi::table(0x5000, 4), 0x6000_0000_0000_5601);
        assert_eq!(AmdVi::table(0x5000, 2), 0x6000_0000_0000_5201);
        // A 2 MiB leaf: Next Level 0 at level 2.
        assert_eq!(
            AmdVi::leaf(0x20_0000, 2, Perm::RWX, MemType::WriteBack),
            0x6000_0000_0020_0001
        );
        assert_eq!(
            AmdVi::leaf(0x3000, 1, Perm::RX, MemType::Uncached),
            0x2000_0000_0000_3001
        );
        assert!(AmdVi::is_huge(AmdVi::leaf(
            0,
            2,
            Perm::RWX,
            MemType::WriteBack
        )));
        assert!(!AmdVi::is_huge(AmdVi::table(0x5000, 2)));
    }

    /// An NPT's leaves copied into an AMD-Vi tree translate every address the same way.
    #[test]
    fn amdvi_tree_mirrors_an_npt() {
        let mut m = HostMem::default();
        let mut npt = PageTable::<Npt>::new(&mut m).unwrap();
        npt.map(&mut m, 0, 0, 2 * PAGE_1G, Perm::RWX, MemType::WriteBack)
            .unwrap();
        npt.unmap(&mut m, 0x40_0000, 0x20_0000 + PAGE_4K).unwrap();
        npt.map(
            &mut m,
            0x1_0000_0000,
            0x8000_0000,
            PAGE_2M,
            Perm::RX,
            MemType::WriteBack,
        )
        .unwrap();
        let mut io = PageTable::<AmdVi>::new(&mut m).unwrap();
        let mut leaves = Vec::new();
        npt.for_each_leaf(&m, |gpa, t| leaves.push((gpa, t)));
        assert!(leaves.windows(2).all(|w| w[0].0 < w[1].0), "address order");
        for (gpa, t) in leaves {
            io.map(&mut m, gpa, t.hpa, t.page_size, t.perm, t.mem_type)
                .unwrap();
        }
        for gpa in [
            0,
            0x3F_F000,
            0x40_0000,
            0x60_0000,
            0x60_1000,
            0x7FFF_F000,
            0x1_0000_1000,
            0x1_0020_0000,
        ] {
            let (a, b) = (npt.translate(&m, gpa), io.translate(&m, gpa));
            assert_eq!(a.map(|t| t.hpa), b.map(|t| t.hpa), "{gpa:#x}");
            assert_eq!(a.map(|t| t.perm.write), b.map(|t| t.perm.write), "{gpa:#x}");
        }
        assert_eq!(io.translate(&m, 0x1_0000_1000).unwrap().hpa, 0x8000_1000);
        assert_eq!(io.translate(&m, 0x4000_0000).unwrap().page_size, PAGE_1G);
    }

    #[test]
    fn npt_encoding() {
        assert_eq!(Npt::table(0x5000, 4), 0x5007);
        assert_eq!(
            Npt::leaf(0x20_0000, 2, Perm::RWX, MemType::WriteBack),
            0x20_0087
        );
        assert_eq!(Npt::leaf(0x3000, 1, Perm::RX, MemType::Uncached), 0x301D);
        assert_eq!(
            Npt::leaf(
                0x3000,
                1,
                Perm {
                    read: false,
                    write: false,
                    exec: false
                },
                MemType::WriteBack
            ) & 1,
            0
        );
        assert_eq!(core::mem::size_of::<u64>(), 8);
    }

    #[test]
    fn ept_encoding() {
        assert_eq!(Ept::table(0x5000, 4), 0x5007);
        assert_eq!(
            Ept::leaf(0x20_0000, 2, Perm::RWX, MemType::WriteBack),
            0x20_00B7
        );
        assert_eq!(
            Ept::leaf(0x4000_0000, 3, Perm::RX, MemType::Uncached),
            0x4000_0085
        );
        assert_eq!(Ept::leaf(0x1000, 1, Perm::RWX, MemType::WriteBack), 0x1037);
        assert!(!Ept::is_present(Ept::leaf(
            0x1000,
            1,
            Perm {
                read: false,
                write: false,
                exec: false
            },
            MemType::Uncached
        )));
    }
}
