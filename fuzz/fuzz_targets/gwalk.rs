//! The guest page-table walk (linear -> guest-physical) in every paging mode the walker
//! handles (paging off, 32-bit with 4 MiB pages, PAE, 4-level long mode) over a model of guest
//! memory built from the input. What must hold: the walk reads only naturally aligned 8-byte
//! words (the post-launched VM's memory reader refuses anything else, and a word must not
//! straddle the end of a table page), and its answer equals a reference walk written from the
//! SDM's tables. Documented limits the reference shares: no 5-level paging, no PSE-36, no
//! permission or reserved-bit checks (the walk only finds the bytes of an instruction).
#![no_main]

use std::cell::RefCell;

use acrn_hypervisor::vcpu::gwalk::{translate, GuestPhys};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Guest-physical memory: `words` at GPA 0, 8 bytes each; nothing above.
struct Memory {
    words: Vec<u64>,
    reads: RefCell<Vec<u64>>,
}

impl GuestPhys for Memory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        self.reads.borrow_mut().push(gpa);
        if !gpa.is_multiple_of(8) {
            return None;
        }
        self.words.get(usize::try_from(gpa / 8).ok()?).copied()
    }
}

impl Memory {
    /// The reference's own reads: naturally aligned entries of `width` bytes.
    fn entry(&self, gpa: u64, width: u64) -> Option<u64> {
        let word = *self.words.get(usize::try_from(gpa / 8).ok()?)?;
        Some(if width == 4 {
            (word >> (8 * (gpa % 8))) & 0xFFFF_FFFF
        } else {
            word
        })
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    mode: u8,
    cr3: u32,
    cr4_pse: bool,
    la: u64,
    /// Table entries (present and large-page bits are up to the fuzzer).
    words: Vec<u64>,
}

const P: u64 = 1;
const PS: u64 = 1 << 7;
const ADDR: u64 = 0x000F_FFFF_FFFF_F000;

fuzz_target!(|input: Input| {
    let mut words = input.words;
    // At least 16 pages so that tables at small addresses exist.
    words.resize(words.len().max(16 * 512), 0);
    let mem = Memory {
        words,
        reads: RefCell::new(Vec::new()),
    };
    let (cr0, cr4, efer) = match input.mode % 4 {
        0 => (0x11, 0, 0),                                     // paging off
        1 => (1 << 31 | 0x11, (input.cr4_pse as u64) << 4, 0), // 32-bit
        2 => (1 << 31 | 0x11, 1 << 5, 0),                      // PAE
        _ => (1 << 31 | 0x11, 1 << 5, 1 << 10 | 1 << 8),       // long mode
    };
    let cr3 = u64::from(input.cr3);
    let got = translate(&mem, cr0, cr3, cr4, efer, input.la);
    for &gpa in mem.reads.borrow().iter() {
        assert_eq!(gpa % 8, 0, "unaligned page-table read at {gpa:#x}");
    }
    let want = reference(&mem, input.mode % 4, cr3, input.cr4_pse, input.la);
    assert_eq!(got, want, "la {:#x} mode {}", input.la, input.mode % 4);
});

/// The SDM's walk (Vol. 3A 4.3-4.5), level by level from a table of (index shift, index
/// bits, entry width, whether PS may end the walk here).
fn reference(m: &Memory, mode: u8, cr3: u64, pse: bool, la: u64) -> Option<u64> {
    struct Level {
        shift: u32,
        bits: u32,
        width: u64,
        large: bool,
    }
    let lv = |shift, bits, width, large| Level {
        shift,
        bits,
        width,
        large,
    };
    let (levels, mut table, la, addr_mask): (Vec<Level>, u64, u64, u64) = match mode {
        0 => return Some(la),
        1 => (
            vec![lv(22, 10, 4, pse), lv(12, 10, 4, false)],
            cr3 & 0xFFFF_F000,
            la & 0xFFFF_FFFF,
            0xFFFF_F000,
        ),
        2 => (
            vec![lv(30, 2, 8, false), lv(21, 9, 8, true), lv(12, 9, 8, false)],
            cr3 & 0xFFFF_FFE0,
            la & 0xFFFF_FFFF,
            ADDR,
        ),
        _ => (
            vec![
                lv(39, 9, 8, false),
                lv(30, 9, 8, true),
                lv(21, 9, 8, true),
                lv(12, 9, 8, false),
            ],
            cr3 & ADDR,
            la,
            ADDR,
        ),
    };
    for (i, l) in levels.iter().enumerate() {
        let index = (la >> l.shift) & ((1 << l.bits) - 1);
        let e = m.entry(table + index * l.width, l.width)?;
        if e & P == 0 {
            return None;
        }
        let last = i == levels.len() - 1;
        if last || (l.large && e & PS != 0) {
            let page = 1u64 << l.shift;
            return Some((e & addr_mask & !(page - 1)) | (la & (page - 1)));
        }
        table = e & addr_mask;
    }
    unreachable!("the last level always ends the walk")
}
