//! Bookkeeping and checks for a User VM's memory segments.

use acrn_abi::memory::{MemAccess, MemType, VmMemoryRegion, MR_ADD, MR_DEL};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::{HsmError, Result};

/// At most this many segments per VM (Linux's `ACRN_MEM_MAPPING_MAX`).
pub const ACRN_MEM_MAPPING_MAX: usize = 256;

const PAGE_MASK: u64 = 0xFFF;

/// What a segment maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemKind {
    /// Guest RAM, mapped write-back.
    Ram,
    /// Device memory, mapped uncached.
    Mmio,
}

/// A contiguous mapping of User VM GPAs onto Service VM GPAs (which must be host-contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemSegment {
    /// RAM or MMIO.
    pub kind: MemKind,
    /// First User VM GPA (4 KiB-aligned).
    pub user_vm_gpa: u64,
    /// First Service VM GPA of the backing (4 KiB-aligned).
    pub service_vm_gpa: u64,
    /// Size in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
    /// Access rights (non-empty).
    pub access: MemAccess,
}

impl MemSegment {
    fn validate(&self) -> Result<()> {
        if self.size == 0 || self.size & PAGE_MASK != 0 {
            return Err(HsmError::InvalidArgument(
                "segment size must be a non-zero multiple of 4 KiB",
            ));
        }
        if (self.user_vm_gpa | self.service_vm_gpa) & PAGE_MASK != 0 {
            return Err(HsmError::InvalidArgument(
                "segment addresses must be 4 KiB-aligned",
            ));
        }
        if self.user_vm_gpa.checked_add(self.size).is_none()
            || self.service_vm_gpa.checked_add(self.size).is_none()
        {
            return Err(HsmError::InvalidArgument(
                "segment wraps around the address space",
            ));
        }
        if self.access.is_empty() || !MemAccess::RWX.contains(self.access) {
            return Err(HsmError::InvalidArgument(
                "segment access must be a non-empty subset of RWX",
            ));
        }
        Ok(())
    }

    /// Last User VM GPA (inclusive); valid after `validate`.
    fn last(&self) -> u64 {
        self.user_vm_gpa + (self.size - 1)
    }

    fn region(&self) -> VmMemoryRegion {
        let mem_type = match self.kind {
            MemKind::Ram => MemType::WB,
            MemKind::Mmio => MemType::UC,
        };
        VmMemoryRegion {
            r#type: MR_ADD,
            prot: self.access.bits() | mem_type.bits(),
            gpa: self.user_vm_gpa,
            service_vm_gpa: self.service_vm_gpa,
            size: self.size,
        }
    }
}

/// The segments mapped in one VM, keyed by first User VM GPA.
#[derive(Debug, Default)]
pub(crate) struct MemoryMap {
    segments: BTreeMap<u64, MemSegment>,
}

impl MemoryMap {
    /// Checks a batch against itself and the map; returns the regions to send.
    pub(crate) fn plan_map(&self, batch: &[MemSegment]) -> Result<Vec<VmMemoryRegion>> {
        if batch.is_empty() {
            return Err(HsmError::InvalidArgument("empty segment batch"));
        }
        if self.segments.len() + batch.len() > ACRN_MEM_MAPPING_MAX {
            return Err(HsmError::TooManySegments);
        }
        for (i, seg) in batch.iter().enumerate() {
            seg.validate()?;
            if self.overlaps(seg)
                || batch[..i]
                    .iter()
                    .any(|o| o.user_vm_gpa <= seg.last() && seg.user_vm_gpa <= o.last())
            {
                return Err(HsmError::Overlap(seg.user_vm_gpa));
            }
        }
        Ok(batch.iter().map(MemSegment::region).collect())
    }

    fn overlaps(&self, seg: &MemSegment) -> bool {
        // The only candidate is the last segment starting at or before `seg`'s end.
        self.segments
            .range(..=seg.last())
            .next_back()
            .is_some_and(|(_, o)| o.last() >= seg.user_vm_gpa)
    }

    pub(crate) fn commit_map(&mut self, batch: &[MemSegment]) {
        for seg in batch {
            self.segments.insert(seg.user_vm_gpa, *seg);
        }
    }

    /// The delete region for an exactly matching segment.
    pub(crate) fn plan_unmap(&self, user_vm_gpa: u64, size: u64) -> Result<VmMemoryRegion> {
        match self.segments.get(&user_vm_gpa) {
            Some(seg) if seg.size == size => Ok(VmMemoryRegion {
                r#type: MR_DEL,
                prot: 0,
                gpa: user_vm_gpa,
                service_vm_gpa: 0,
                size,
            }),
            _ => Err(HsmError::NotMapped {
                gpa: user_vm_gpa,
                size,
            }),
        }
    }

    pub(crate) fn commit_unmap(&mut self, user_vm_gpa: u64) {
        self.segments.remove(&user_vm_gpa);
    }

    pub(crate) fn segments(&self) -> Vec<MemSegment> {
        self.segments.values().copied().collect()
    }

    /// Service VM GPA backing `user_vm_gpa`, if mapped.
    pub(crate) fn translate(&self, user_vm_gpa: u64) -> Option<u64> {
        let (_, seg) = self.segments.range(..=user_vm_gpa).next_back()?;
        (user_vm_gpa <= seg.last()).then(|| seg.service_vm_gpa + (user_vm_gpa - seg.user_vm_gpa))
    }
}
