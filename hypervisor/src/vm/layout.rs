//! The Service VM's memory, as ACRN builds it (`prepare_service_vm_memmap`): every byte of the
//! board's RAM that neither the hypervisor nor a pre-launched VM owns, identity-mapped
//! (GPA = HPA), with an e820 that lists that RAM and marks the carved-out pieces reserved.
//!
//! Pure logic, tested on the host; the VM layer maps the result into the Service VM's NPT/EPT
//! and hands the e820 to the loaders.

use crate::vm::loader::{E820Entry, E820_RAM, E820_RESERVED, MAX_E820};

/// Most RAM ranges the Service VM can have after carving (board ranges split by holes).
pub const MAX_RANGES: usize = 32;

/// The AP start-up trampoline page (SIPI vector 0x08): the hypervisor rewrites it when it starts
/// its APs, so the Service VM must not own it (ACRN reserves its trampoline the same way).
pub const TRAMPOLINE: (u64, u64) = (0x8000, 0x1000);

/// The legacy BIOS area that holds the VM's ACPI tables (see `acpi::GUEST_RSDP_GPA`).
pub const BIOS_AREA: (u64, u64) = (0xF_0000, 0x1_0000);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The carved RAM needs more than [`MAX_RANGES`] ranges.
    TooManyRanges,
    /// The e820 needs more than `MAX_E820` entries.
    TooManyE820,
    /// Nothing is left for the Service VM.
    NoRam,
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LayoutError::TooManyRanges => "its RAM splits into too many ranges",
            LayoutError::TooManyE820 => "its e820 has too many entries",
            LayoutError::NoRam => "no RAM is left for it",
        })
    }
}

/// The Service VM's RAM (sorted, disjoint, 4 KiB granular `(start, size)` ranges; GPA = HPA)
/// and its e820.
#[derive(Debug, Clone)]
pub struct Layout {
    ram: [(u64, u64); MAX_RANGES],
    nram: usize,
    e820: [E820Entry; MAX_E820],
    ne820: usize,
}

impl Layout {
    pub fn ram(&self) -> &[(u64, u64)] {
        &self.ram[..self.nram]
    }
    pub fn e820(&self) -> &[E820Entry] {
        &self.e820[..self.ne820]
    }
    /// The e820 cut at `limit` (the Service VM's RAM beyond the hypervisor's reach is not
    /// mapped into it, so it must not be offered either); returns the entry count in `out`.
    pub fn e820_below(&self, limit: u64, out: &mut [E820Entry; MAX_E820]) -> usize {
        let mut n = 0;
        for e in self.e820().iter().filter(|e| e.addr < limit) {
            out[n] = E820Entry {
                size: e.size.min(limit - e.addr),
                ..*e
            };
            n += 1;
        }
        n
    }
    /// [`Layout::e820_below`] with `reserved` ranges (device windows the Service VM reaches,
    /// such as the ECAM window, which Linux uses only if the e820 reserves it) added in address
    /// order. A range that overlaps an entry or finds no free entry is left out.
    pub fn e820_below_with(
        &self,
        limit: u64,
        reserved: &[(u64, u64)],
        out: &mut [E820Entry; MAX_E820],
    ) -> usize {
        let mut n = self.e820_below(limit, out);
        for &(addr, size) in reserved {
            let overlaps = out[..n].iter().any(|e| {
                addr < e.addr.saturating_add(e.size) && e.addr < addr.saturating_add(size)
            });
            if size == 0 || overlaps || n == MAX_E820 {
                continue;
            }
            let at = out[..n].iter().position(|e| e.addr > addr).unwrap_or(n);
            out.copy_within(at..n, at + 1);
            out[at] = E820Entry {
                addr,
                size,
                kind: E820_RESERVED,
            };
            n += 1;
        }
        n
    }
    /// True if `[addr, addr + len)` is entirely Service VM RAM (possibly across adjacent
    /// ranges). `len == 0` is never "inside".
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        ranges_contain(self.ram(), addr, len)
    }
}

/// True if `[addr, addr + len)` lies entirely inside the union of `ranges` (sorted, disjoint).
pub fn ranges_contain(ranges: &[(u64, u64)], addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    let mut cur = addr;
    while cur < end {
        match ranges.iter().find(|&&(s, n)| cur >= s && cur - s < n) {
            Some(&(s, n)) => cur = s.saturating_add(n),
            None => return false,
        }
    }
    true
}

/// Builds the Service VM's memory from the board's RAM minus `carve` (HPA ranges owned by the
/// hypervisor, pre-launched VMs, shared-memory regions). Everything is trimmed to 4 KiB pages
/// (a partial page at the edge of a board range is dropped). The e820 lists, in address order,
/// the RAM, each carved piece that lay inside board RAM as reserved, and the BIOS area as
/// reserved.
pub fn layout(board_ram: &[(u64, u64)], carve: &[(u64, u64)]) -> Result<Layout, LayoutError> {
    let mut out = Layout {
        ram: [(0, 0); MAX_RANGES],
        nram: 0,
        e820: [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820],
        ne820: 0,
    };
    let mut holes = [(0u64, 0u64); MAX_RANGES];
    let mut nholes = 0;
    for &(start, size) in board_ram {
        let (s, e) = (page_up(start), page_down(start.saturating_add(size)));
        // Walk [s, e) in order, cutting out every carve range.
        let mut cur = s;
        while cur < e {
            // The carve range that starts lowest at or overlapping `cur`.
            let next_hole = carve
                .iter()
                .map(|&(cs, cn)| (page_down(cs), page_up(cs.saturating_add(cn))))
                .filter(|&(cs, ce)| ce > cur && cs < e && ce > cs)
                .min_by_key(|&(cs, _)| cs);
            match next_hole {
                Some((cs, ce)) => {
                    if cs > cur {
                        push(&mut out.ram, &mut out.nram, (cur, cs - cur))
                            .ok_or(LayoutError::TooManyRanges)?;
                    }
                    let (hs, he) = (cs.max(cur), ce.min(e));
                    push(&mut holes, &mut nholes, (hs, he - hs))
                        .ok_or(LayoutError::TooManyRanges)?;
                    cur = he;
                }
                None => {
                    push(&mut out.ram, &mut out.nram, (cur, e - cur))
                        .ok_or(LayoutError::TooManyRanges)?;
                    cur = e;
                }
            }
        }
    }
    if out.nram == 0 {
        return Err(LayoutError::NoRam);
    }
    out.ram[..out.nram].sort_unstable();
    // The BIOS area is never RAM on a PC board; if a board says otherwise, RAM wins no byte of it.
    let (bs, bn) = BIOS_AREA;
    let mut entries = [E820Entry {
        addr: 0,
        size: 0,
        kind: 0,
    }; MAX_RANGES * 2 + 1];
    let mut n = 0;
    for &(a, s) in out.ram() {
        entries[n] = E820Entry {
            addr: a,
            size: s,
            kind: E820_RAM,
        };
        n += 1;
    }
    for &(a, s) in &holes[..nholes] {
        entries[n] = E820Entry {
            addr: a,
            size: s,
            kind: E820_RESERVED,
        };
        n += 1;
    }
    if !ranges_contain(out.ram(), bs, 1) && !ranges_contain(out.ram(), bs + bn - 1, 1) {
        entries[n] = E820Entry {
            addr: bs,
            size: bn,
            kind: E820_RESERVED,
        };
        n += 1;
    }
    let entries = &mut entries[..n];
    entries.sort_unstable_by_key(|e| e.addr);
    if n > MAX_E820 {
        return Err(LayoutError::TooManyE820);
    }
    out.e820[..n].copy_from_slice(entries);
    out.ne820 = n;
    Ok(out)
}

fn push(arr: &mut [(u64, u64); MAX_RANGES], n: &mut usize, r: (u64, u64)) -> Option<()> {
    let slot = arr.get_mut(*n)?;
    *slot = r;
    *n += 1;
    Some(())
}

const fn page_up(a: u64) -> u64 {
    a.saturating_add(0xFFF) & !0xFFF
}

const fn page_down(a: u64) -> u64 {
    a & !0xFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    // The qemu-epyc board: 640 KiB low RAM and 2 GiB from 1 MiB.
    const BOARD: [(u64, u64); 2] = [(0, 0x9_fc00), (0x10_0000, 0x7fed_f000)];
    const HV: (u64, u64) = (0x7000_0000, 0x0200_0000);

    #[test]
    fn shared_scenario_gets_everything_but_hv_and_trampoline() {
        let l = layout(&BOARD, &[HV, TRAMPOLINE]).unwrap();
        assert_eq!(
            l.ram(),
            &[
                (0, 0x8000),
                (0x9000, 0x9_f000 - 0x9000),
                (0x10_0000, 0x7000_0000 - 0x10_0000),
                (0x7200_0000, 0x7ffd_f000 - 0x7200_0000)
            ]
        );
        // Partial page at 0x9f000..0x9fc00 dropped; board end 0x7ffdf000 is page aligned.
        let kinds: Vec<(u64, u64, u32)> =
            l.e820().iter().map(|e| (e.addr, e.size, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, 0x8000, E820_RAM),
                (0x8000, 0x1000, E820_RESERVED),
                (0x9000, 0x96000, E820_RAM),
                (0xF_0000, 0x1_0000, E820_RESERVED),
                (0x10_0000, 0x6ff0_0000, E820_RAM),
                (0x7000_0000, 0x200_0000, E820_RESERVED),
                (0x7200_0000, 0xdfd_f000, E820_RAM),
            ]
        );
    }

    #[test]
    fn hybrid_carves_prelaunched_vm_memory() {
        let pre = (0x4000_0000, 0x2000_0000);
        let l = layout(&BOARD, &[HV, TRAMPOLINE, pre]).unwrap();
        assert!(!l.contains(0x4000_0000, 1));
        assert!(!l.contains(0x5fff_ffff, 1));
        assert!(l.contains(0x3fff_f000, 0x1000));
        assert!(l.contains(0x6000_0000, 0x1000));
        // A range crossing into the pre-launched VM is not inside.
        assert!(!l.contains(0x3fff_f000, 0x2000));
        assert!(l
            .e820()
            .iter()
            .any(|e| e.addr == 0x4000_0000 && e.size == 0x2000_0000 && e.kind == E820_RESERVED));
        // No RAM entry overlaps any carved range.
        for e in l.e820().iter().filter(|e| e.kind == E820_RAM) {
            for &(cs, cn) in &[HV, TRAMPOLINE, pre] {
                assert!(
                    e.addr + e.size <= cs || cs + cn <= e.addr,
                    "{e:?} overlaps {cs:#x}"
                );
            }
        }
    }

    /// A layout of RAM below and above 4 GiB (the first `below` bytes from 1 MiB), and an
    /// empty e820 to fill.
    fn split_layout(below: u64) -> (Layout, [E820Entry; MAX_E820]) {
        let board = [
            (0, 0x9_f000),
            (0x10_0000, below),
            (0x1_0000_0000, 0x4000_0000),
        ];
        let empty = E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        };
        (layout(&board, &[HV]).unwrap(), [empty; MAX_E820])
    }

    #[test]
    fn e820_below_the_hypervisors_reach() {
        let (l, mut out) = split_layout(0xFFF0_0000);
        let n = l.e820_below(1 << 32, &mut out);
        let all = l.e820();
        assert_eq!(n, all.len() - 1, "the range above 4 GiB is dropped");
        assert_eq!(&out[..n - 1], &all[..n - 1]);
        let last = out[n - 1];
        assert_eq!((last.addr, last.addr + last.size), (0x7200_0000, 1 << 32));
        assert_eq!(last.kind, E820_RAM);
        assert_eq!(l.e820_below(u64::MAX, &mut out), all.len());
    }

    #[test]
    fn reserved_windows_join_the_e820_in_order() {
        let (l, mut out) = split_layout(0x7FF0_0000);
        let plain = l.e820_below(u64::MAX, &mut out);
        let ecam = (0xB000_0000, 0x1000_0000);
        // The ECAM window lands between the RAM below and above 4 GiB; one that overlaps RAM
        // is left out.
        let n = l.e820_below_with(u64::MAX, &[ecam, (0x20_0000, 0x1000)], &mut out);
        assert_eq!(n, plain + 1);
        let at = out[..n].iter().position(|e| e.addr == ecam.0).unwrap();
        assert_eq!((out[at].size, out[at].kind), (ecam.1, E820_RESERVED));
        assert!(out[..n].windows(2).all(|w| w[0].addr < w[1].addr));
        assert_eq!(out[n - 1].addr, 0x1_0000_0000);
    }

    #[test]
    fn carve_outside_ram_is_not_reported() {
        let l = layout(&BOARD, &[(0x1_0000_0000, 0x1000)]).unwrap();
        assert!(l.e820().iter().all(|e| e.addr != 0x1_0000_0000));
    }

    #[test]
    fn unaligned_carve_rounds_outwards() {
        let l = layout(&[(0x10_0000, 0x10_0000)], &[(0x18_0800, 0x100)]).unwrap();
        assert_eq!(l.ram(), &[(0x10_0000, 0x8_0000), (0x18_1000, 0x7_f000)]);
    }

    #[test]
    fn everything_carved_is_an_error() {
        assert_eq!(
            layout(&[(0x10_0000, 0x10_0000)], &[(0, 0x100_0000)]).unwrap_err(),
            LayoutError::NoRam
        );
    }

    #[test]
    fn too_many_pieces_is_an_error_not_a_panic() {
        let carve: Vec<(u64, u64)> = (0..40).map(|i| (0x100_0000 + i * 0x2000, 0x1000)).collect();
        assert!(layout(&[(0x100_0000, 0x100_0000)], &carve).is_err());
    }

    #[test]
    fn contains_rules() {
        let r = [(0x1000, 0x1000), (0x2000, 0x1000), (0x5000, 0x1000)];
        assert!(ranges_contain(&r, 0x1800, 0x1000)); // crosses adjacent ranges
        assert!(!ranges_contain(&r, 0x2800, 0x1000)); // runs into a hole
        assert!(!ranges_contain(&r, 0x1000, 0)); // empty
        assert!(!ranges_contain(&r, u64::MAX - 1, 4)); // wraps
        assert!(ranges_contain(&r, 0x5FFF, 1));
        assert!(!ranges_contain(&r, 0x6000, 1));
    }
}
