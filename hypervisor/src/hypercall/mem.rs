//! Access to hypercall parameters in the Service VM's memory. Every pointer a hypercall carries
//! is a Service VM GPA; it is honoured only if the whole object lies inside the Service VM's
//! RAM (it may cross pages and adjacent RAM ranges), never in the hypervisor's or another VM's
//! memory, which are holes in that map.

use crate::vm::layout::ranges_contain;

/// Guest-physical memory of the calling VM, as the hypercall layer sees it.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes from `gpa`; false (nothing read) if any byte is outside RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool;
    /// Copies `data` to `gpa`; false (nothing written) if any byte is outside RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool;
    /// True if `[gpa, gpa + len)` is entirely RAM.
    fn contains(&self, gpa: u64, len: u64) -> bool;
}

/// Raw byte access to host-physical memory (identity map on bare metal, a `Vec` in tests).
/// Callers check bounds first.
pub trait PhysBytes {
    fn read(&self, hpa: u64, buf: &mut [u8]);
    fn write(&mut self, hpa: u64, data: &[u8]);
}

/// The Service VM's memory: identity-mapped RAM ranges over a physical accessor. An optional
/// `limit` bounds what the hypervisor itself can reach (its own page tables may map less than
/// the Service VM owns).
pub struct IdentityRam<'a, P> {
    pub ranges: &'a [(u64, u64)],
    pub limit: u64,
    pub phys: P,
}

impl<P: PhysBytes> GuestMemory for IdentityRam<'_, P> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        if !self.contains(gpa, buf.len() as u64) {
            return false;
        }
        self.phys.read(gpa, buf);
        true
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> bool {
        if !self.contains(gpa, data.len() as u64) {
            return false;
        }
        self.phys.write(gpa, data);
        true
    }
    fn contains(&self, gpa: u64, len: u64) -> bool {
        ranges_contain(self.ranges, gpa, len)
            && gpa.checked_add(len).is_some_and(|e| e <= self.limit)
    }
}

/// Plain-old-data ABI structures that may be filled from arbitrary guest bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]` (or packed) structs of integers and arrays of integers only:
/// every bit pattern is a valid value.
pub unsafe trait Pod: Copy + Default {}

// SAFETY: all of these are repr(C) structs of integer fields (see acrn-abi).
unsafe impl Pod for acrn_abi::AcrnVmCreation {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnVcpuRegs {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::SetRegions {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::VmMemoryRegion {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnMsiEntry {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::memory::VmGpa2Hpa {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::vm::AcrnPlatformInfo {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::vm::AcrnVmConfigHeader {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::misc::AcrnHwInfo {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::sbuf::AcrnSbufParam {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::sbuf::SharedBuf {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::sbuf::AcrnAsyncioInfo {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::memory::WpData {}
// SAFETY: as above (the C `bool` is a `u8` here, so every byte value is valid).
unsafe impl Pod for acrn_abi::HcPtdevIrq {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnIntrMonitor {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnPcidev {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnMmiodev {}
// SAFETY: as above.
unsafe impl Pod for acrn_abi::AcrnVdev {}
// SAFETY: a plain integer.
unsafe impl Pod for u64 {}

/// Reads a `T` from guest memory; `None` if any byte of it is outside RAM.
pub fn read_obj<T: Pod>(mem: &impl GuestMemory, gpa: u64) -> Option<T> {
    let mut v = T::default();
    // SAFETY: `v` is a live, initialised T; any bytes written into it form a valid T (Pod).
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut v as *mut T as *mut u8, core::mem::size_of::<T>())
    };
    mem.read(gpa, bytes).then_some(v)
}

/// A [`Pod`] without implicit padding: every byte of a value is initialised, so it can be
/// copied out as bytes.
///
/// # Safety
/// The type's fields must cover all of its bytes.
pub unsafe trait Packed: Pod {}

// SAFETY: 2+2+4+4+64+52 and 2+2+4+8+8+104 bytes, 256 in all (acrn-abi layout tests).
unsafe impl Packed for acrn_abi::vm::AcrnPlatformInfo {}
// SAFETY: the padding byte is a field (40 bytes covered, acrn-abi layout tests).
unsafe impl Packed for acrn_abi::vm::AcrnVmConfigHeader {}
// SAFETY: 2 + 3 * 2 bytes.
unsafe impl Packed for acrn_abi::misc::AcrnHwInfo {}

/// Writes a `T` to guest memory; `false` (nothing written) if any byte of it is outside RAM.
pub fn write_obj<T: Packed>(mem: &mut impl GuestMemory, gpa: u64, v: &T) -> bool {
    // SAFETY: `v` is a live T whose bytes are all initialised (Packed).
    let bytes = unsafe {
        core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>())
    };
    mem.write(gpa, bytes)
}

/// A `Vec`-backed physical memory for host tests.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub struct VecPhys {
        pub base: u64,
        pub bytes: Vec<u8>,
    }
    impl PhysBytes for VecPhys {
        fn read(&self, hpa: u64, buf: &mut [u8]) {
            let off = (hpa - self.base) as usize;
            buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
        }
        fn write(&mut self, hpa: u64, data: &[u8]) {
            let off = (hpa - self.base) as usize;
            self.bytes[off..off + data.len()].copy_from_slice(data);
        }
    }

    /// Service VM RAM at [base, base + len) with a hole at `hole` (another VM's memory).
    pub fn ram<'a>(ranges: &'a [(u64, u64)], base: u64, len: usize) -> IdentityRam<'a, VecPhys> {
        IdentityRam {
            ranges,
            limit: u64::MAX,
            phys: VecPhys {
                base,
                bytes: vec![0; len],
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::ram;
    use super::*;

    const R: [(u64, u64); 2] = [(0x1000, 0x2000), (0x4000, 0x1000)];

    #[test]
    fn reads_across_pages_but_not_into_holes() {
        let mut m = ram(&R, 0x1000, 0x4000);
        assert!(m.write(0x1FFC, &[1, 2, 3, 4, 5, 6, 7, 8]));
        assert_eq!(read_obj::<u64>(&m, 0x1FFC), Some(0x0807_0605_0403_0201));
        // Crosses from RAM into the hole at 0x3000..0x4000.
        assert_eq!(read_obj::<u64>(&m, 0x2FFC), None);
        assert!(!m.write(0x2FFC, &[0; 8]));
        // Entirely outside, and wrapping.
        assert_eq!(read_obj::<u64>(&m, 0), None);
        assert_eq!(read_obj::<u64>(&m, u64::MAX - 3), None);
        assert_eq!(read_obj::<u64>(&m, 0x4FF8), Some(0));
        assert_eq!(read_obj::<u64>(&m, 0x4FF9), None);
    }

    #[test]
    fn limit_bounds_reachable_memory() {
        let mut m = ram(&R, 0x1000, 0x4000);
        m.limit = 0x2000;
        assert!(m.contains(0x1000, 0x1000));
        assert!(!m.contains(0x1000, 0x1001));
    }
}
