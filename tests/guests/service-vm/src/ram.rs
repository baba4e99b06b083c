//! The Service VM's pool of RAM for post-launched VMs: first-fit over the e820 RAM it owns,
//! returned on destroy. Guest memory must be host-contiguous per region, and the Service VM is
//! identity-mapped (GPA == HPA), so one contiguous Service VM range backs each VM.

use alloc::vec::Vec;

/// Free ranges `[start, end)`, sorted and coalesced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RamPool {
    free: Vec<(u64, u64)>,
}

impl RamPool {
    /// The RAM ranges given, minus everything below `floor` and at or above `ceiling`.
    pub fn new(ram: impl IntoIterator<Item = (u64, u64)>, floor: u64, ceiling: u64) -> Self {
        let mut p = Self::default();
        for (start, len) in ram {
            let (s, e) = (start.max(floor), start.saturating_add(len).min(ceiling));
            if s < e {
                p.free_range(s, e - s);
            }
        }
        p
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|(s, e)| e - s).sum()
    }

    /// Takes `size` bytes aligned to `align` (a power of two); lowest fit first.
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        for i in 0..self.free.len() {
            let (s, e) = self.free[i];
            let Some(base) = s.checked_add(align - 1).map(|v| v & !(align - 1)) else {
                continue;
            };
            let Some(end) = base.checked_add(size) else {
                continue;
            };
            if end > e {
                continue;
            }
            self.free.remove(i);
            if end < e {
                self.free.insert(i, (end, e));
            }
            if s < base {
                self.free.insert(i, (s, base));
            }
            return Some(base);
        }
        None
    }

    /// Returns a range; merges with neighbours. Overlap with free space is ignored.
    pub fn free_range(&mut self, base: u64, size: u64) {
        let end = base.saturating_add(size);
        if base >= end {
            return;
        }
        let mut ranges = core::mem::take(&mut self.free);
        ranges.push((base, end));
        ranges.sort_unstable();
        for (s, e) in ranges {
            match self.free.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => self.free.push((s, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn allocates_aligned_and_frees_back() {
        let mut p = RamPool::new([(0, 640 << 10), (MIB, 511 * MIB)], 16 * MIB, 4 << 30);
        assert_eq!(p.free_bytes(), 496 * MIB);
        let a = p.alloc(256 * MIB, 2 * MIB).unwrap();
        assert_eq!(a, 16 * MIB);
        let b = p.alloc(200 * MIB, 2 * MIB).unwrap();
        assert_eq!(b, 272 * MIB);
        assert_eq!(p.alloc(256 * MIB, 2 * MIB), None);
        p.free_range(a, 256 * MIB);
        assert_eq!(
            p.alloc(256 * MIB, 2 * MIB),
            Some(a),
            "re-created VM reuses the range"
        );
        p.free_range(a, 256 * MIB);
        p.free_range(b, 200 * MIB);
        assert_eq!(p.free_bytes(), 496 * MIB);
        assert_eq!(p.free.len(), 1, "coalesced");
    }

    #[test]
    fn alignment_and_edge_cases() {
        let mut p = RamPool::new([(0x10_1000, 0x40_0000)], 0, u64::MAX);
        assert_eq!(p.alloc(0x1000, 3), None);
        assert_eq!(p.alloc(0, 0x1000), None);
        assert_eq!(p.alloc(0x20_0000, 0x20_0000), Some(0x20_0000));
        assert_eq!(p.alloc(0x1000, 0x1000), Some(0x10_1000));
        assert_eq!(p.alloc(u64::MAX, 1), None);
        let mut q = RamPool::new([(u64::MAX - 0x1000, 0x1000)], 0, u64::MAX);
        assert_eq!(q.alloc(0x1000, 1 << 63), None);
    }
}
