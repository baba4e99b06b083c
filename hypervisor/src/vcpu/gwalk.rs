//! Guest page-table walk (linear -> guest-physical), for fetching the instruction that caused an
//! exit when the CPU gives no decode assist. Handles paging off, 32-bit (with PSE), PAE and
//! 4-level long mode.

/// Reads guest-physical memory of one VM.
pub trait GuestPhys {
    /// The naturally aligned 8-byte word at `gpa` (the walk never asks for another).
    fn read_u64(&self, gpa: u64) -> Option<u64>;
}

use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::structures::paging::PageTableFlags;

const P: u64 = PageTableFlags::PRESENT.bits();
/// PS: a large page (the same bit in every paging mode).
const PS: u64 = PageTableFlags::HUGE_PAGE.bits();
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

/// Translates `la` with the guest's CR0/CR3/CR4/EFER; `None` if not present.
pub fn translate(
    m: &dyn GuestPhys,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
    la: u64,
) -> Option<u64> {
    if !Cr0Flags::from_bits_retain(cr0).contains(Cr0Flags::PAGING) {
        return Some(la);
    }
    let cr4 = Cr4Flags::from_bits_retain(cr4);
    if EferFlags::from_bits_retain(efer).contains(EferFlags::LONG_MODE_ACTIVE) {
        let mut table = cr3 & ADDR;
        for level in (1..=4u32).rev() {
            let e = m.read_u64(table + ((la >> (12 + 9 * (level - 1))) & 0x1FF) * 8)?;
            if e & P == 0 {
                return None;
            }
            if level == 1 || (level <= 3 && e & PS != 0) {
                let size = 1u64 << (12 + 9 * (level - 1));
                return Some((e & ADDR & !(size - 1)) | (la & (size - 1)));
            }
            table = e & ADDR;
        }
        None
    } else if cr4.contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION) {
        let la = la & 0xFFFF_FFFF;
        let pdpte = m.read_u64((cr3 & 0xFFFF_FFE0) + (la >> 30) * 8)?;
        if pdpte & P == 0 {
            return None;
        }
        let pde = m.read_u64((pdpte & ADDR) + ((la >> 21) & 0x1FF) * 8)?;
        if pde & P == 0 {
            return None;
        }
        if pde & PS != 0 {
            return Some((pde & ADDR & !0x1F_FFFF) | (la & 0x1F_FFFF));
        }
        let pte = m.read_u64((pde & ADDR) + ((la >> 12) & 0x1FF) * 8)?;
        (pte & P != 0).then_some((pte & ADDR) | (la & 0xFFF))
    } else {
        let la = la & 0xFFFF_FFFF;
        // 4-byte entries: half of an aligned word (an unaligned read would be refused by the
        // post-launched VM's reader, or cross the end of the table page).
        let rd32 = |a: u64| {
            m.read_u64(a & !7)
                .map(|v| (v >> (8 * (a & 4))) & 0xFFFF_FFFF)
        };
        let pde = rd32((cr3 & 0xFFFF_F000) + (la >> 22) * 4)?;
        if pde & P == 0 {
            return None;
        }
        if pde & PS != 0 && cr4.contains(Cr4Flags::PAGE_SIZE_EXTENSION) {
            return Some((pde & 0xFFC0_0000) | (la & 0x3F_FFFF));
        }
        let pte = rd32((pde & 0xFFFF_F000) + ((la >> 12) & 0x3FF) * 4)?;
        (pte & P != 0).then_some((pte & 0xFFFF_F000) | (la & 0xFFF))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct M(HashMap<u64, u64>);
    impl GuestPhys for M {
        fn read_u64(&self, gpa: u64) -> Option<u64> {
            assert_eq!(gpa % 8, 0, "unaligned read at {gpa:#x}");
            Some(*self.0.get(&gpa).unwrap_or(&0))
        }
    }

    /// Fuzzing found (gwalk target): 32-bit paging read odd-indexed 4-byte entries as
    /// unaligned 8-byte words, which the post-launched VM's reader refuses.
    #[test]
    fn legacy_32bit_entries_are_read_as_aligned_words() {
        let mut m = M(HashMap::new());
        // PDE 0x3FF (la 0xFFC0_0000..) is the upper half of the word at 0x5FF8; its PT entry
        // 0x3FF the upper half of the word at 0x6FF8.
        m.0.insert(0x5FF8, (0x6000 | 1) << 32 | 0xDEAD_0001);
        m.0.insert(0x6FF8, (0x0012_3000 | 1) << 32 | 0xBEEF_0001);
        let t = |la| translate(&m, 1 << 31 | 1, 0x5000, 0, 0, la);
        assert_eq!(t(0xFFFF_F456), Some(0x12_3456));
        assert_eq!(t(0xFFFF_E456), Some(0xBEEF_0456));
    }

    #[test]
    fn long_mode_4k_and_2m() {
        let mut m = M(HashMap::new());
        // la 0xFFFF_8000_0020_1234: PML4 idx 256, PDPT 0, PD 1, PT 1.
        m.0.insert(0x1000 + 256 * 8, 0x2000 | 3);
        m.0.insert(0x2000, 0x3000 | 3);
        m.0.insert(0x3000 + 8, 0x4000 | 3);
        m.0.insert(0x4000 + 8, 0xABC_D000 | 3);
        m.0.insert(0x3000 + 16, 0x60_0000 | 0x83);
        let t = |la| translate(&m, 1 << 31 | 1, 0x1000, 0x20, 1 << 10 | 1 << 8, la);
        assert_eq!(t(0xFFFF_8000_0020_1234), Some(0xABC_D234));
        assert_eq!(t(0xFFFF_8000_0041_2345), Some(0x61_2345));
        assert_eq!(t(0x1000), None);
    }

    #[test]
    fn legacy_modes() {
        let mut m = M(HashMap::new());
        assert_eq!(translate(&m, 0x11, 0, 0, 0, 0xFEE0_0300), Some(0xFEE0_0300));
        // 32-bit paging with a 4 MiB page at la 0xC000_0000 -> 0x0040_0000.
        m.0.insert(0x5000 + (0x300 * 4), 0x40_0000 | 0x83);
        assert_eq!(
            translate(&m, 1 << 31 | 1, 0x5000, 1 << 4, 0, 0xC012_3456),
            Some(0x52_3456)
        );
        // PAE: PDPTE 3 -> PD at 0x7000, PDE 0 -> 2 MiB page at 0x80_0000.
        m.0.insert(0x6000 + 3 * 8, 0x7000 | 1);
        m.0.insert(0x7000, 0x80_0000 | 0x83);
        assert_eq!(
            translate(&m, 1 << 31 | 1, 0x6000, 1 << 5, 0, 0xC000_0010),
            Some(0x80_0010)
        );
    }
}
