//! A set of free address ranges with first-fit allocation: the one data structure every
//! allocator here (RAM, MMIO windows) uses. Ranges are kept sorted and disjoint, so results
//! depend only on the input, never on hashing.

use serde::{Deserialize, Serialize};

/// A half-open range `[start, start + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Range {
    pub start: u64,
    pub size: u64,
}

impl Range {
    pub fn new(start: u64, size: u64) -> Range {
        Range { start, size }
    }
    /// Exclusive end; saturates so a range ending at 2^64 is representable.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start < other.end() && other.start < self.end()
    }
    pub fn contains_range(&self, other: &Range) -> bool {
        other.start >= self.start && other.end() <= self.end()
    }
}

pub fn align_up(v: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

/// Sorted, disjoint, non-empty `[start, end)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<(u64, u64)>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `[start, end)`, merging with touching or overlapping ranges.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.ranges {
            if b < s {
                out.push((a, b));
            } else if a > e {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.ranges = out;
    }

    /// Removes `[start, end)` from the set.
    pub fn remove(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for &(a, b) in &self.ranges {
            if b <= start || a >= end {
                out.push((a, b));
                continue;
            }
            if a < start {
                out.push((a, start));
            }
            if b > end {
                out.push((end, b));
            }
        }
        self.ranges = out;
    }

    pub fn remove_range(&mut self, r: Range) {
        self.remove(r.start, r.end());
    }

    /// Whether `[start, end)` lies entirely inside one range of the set.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        self.ranges.iter().any(|&(a, b)| a <= start && end <= b)
    }

    /// The part of the set inside `[lo, hi)`.
    pub fn clip(&self, lo: u64, hi: u64) -> RangeSet {
        let ranges = self
            .ranges
            .iter()
            .filter_map(|&(a, b)| {
                let (a, b) = (a.max(lo), b.min(hi));
                (a < b).then_some((a, b))
            })
            .collect();
        RangeSet { ranges }
    }

    /// Lowest `align`-aligned address where `size` bytes fit in one range.
    pub fn first_fit(&self, size: u64, align: u64) -> Option<u64> {
        self.ranges.iter().find_map(|&(a, b)| {
            let start = align_up(a, align)?;
            (start.checked_add(size)? <= b).then_some(start)
        })
    }

    /// Highest `align`-aligned address where `size` bytes fit in one range.
    pub fn last_fit(&self, size: u64, align: u64) -> Option<u64> {
        self.ranges.iter().rev().find_map(|&(a, b)| {
            let start = b.checked_sub(size)? & !(align - 1);
            (start >= a).then_some(start)
        })
    }

    /// Takes `size` bytes with [`Self::first_fit`] and removes them from the set.
    pub fn take_first(&mut self, size: u64, align: u64) -> Option<u64> {
        let at = self.first_fit(size, align)?;
        self.remove(at, at + size);
        Some(at)
    }

    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|&(a, b)| b - a).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = Range> + '_ {
        self.ranges.iter().map(|&(a, b)| Range::new(a, b - a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_merges_and_remove_splits() {
        let mut s = RangeSet::new();
        s.insert(0x3000, 0x4000);
        s.insert(0x1000, 0x2000);
        s.insert(0x2000, 0x3000);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Range::new(0x1000, 0x3000)]
        );
        s.remove(0x1800, 0x2000);
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Range::new(0x1000, 0x800), Range::new(0x2000, 0x2000)]
        );
        assert!(s.covers(0x2000, 0x4000));
        assert!(!s.covers(0x1000, 0x2000));
    }

    #[test]
    fn fits_respect_alignment() {
        let mut s = RangeSet::new();
        s.insert(0x1000, 0x5000);
        s.insert(0x10000, 0x30000);
        assert_eq!(s.first_fit(0x4000, 0x4000), Some(0x10000));
        assert_eq!(s.first_fit(0x3000, 0x1000), Some(0x1000));
        assert_eq!(s.last_fit(0x10000, 0x10000), Some(0x20000));
        assert_eq!(s.take_first(0x20000, 0x10000), Some(0x10000));
        assert_eq!(s.first_fit(0x20000, 0x1000), None);
        assert_eq!(s.total(), 0x4000);
    }
}
