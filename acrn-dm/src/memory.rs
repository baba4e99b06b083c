//! Guest RAM: one host mapping per contiguous guest range, laid out as ACRN's acrn-dm does
//! (`core/hugetlb.c`): low memory from GPA 0 up to 2 GiB, the rest from 4 GiB.
//!
//! The backing is hugetlbfs (a `MFD_HUGETLB` memfd) when hugetlbfs is mounted and enough huge
//! pages are free, else anonymous memory (with transparent huge pages requested, so the HSM can
//! map it in 2 MiB regions). Mappings are unmapped on drop. Tests use heap-backed memory.

use std::io;

/// Low memory ends at 2 GiB at most (the 32-bit PCI hole starts there).
pub const LOWMEM_LIMIT: u64 = 0x8000_0000;
/// Where high memory starts (`HIGHRAM_START_ADDR`).
pub const HIGHMEM_BASE: u64 = 0x1_0000_0000;
const HUGE_PAGE: u64 = 2 << 20;

/// A guest-physical access outside RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest-physical range [{gpa:#x}, +{len:#x}) is not guest RAM")]
pub struct OutOfRange {
    /// Start.
    pub gpa: u64,
    /// Length.
    pub len: u64,
}

/// How guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size is not a multiple of 2 MiB (ACRN maps guest RAM in huge pages).
    #[error("guest memory size {0:#x} is not a multiple of 2 MiB")]
    Unaligned(u64),
    /// mmap failed.
    #[error("cannot map {size:#x} bytes of guest memory: {err}")]
    Map {
        /// Bytes requested.
        size: u64,
        /// Why.
        err: io::Error,
    },
}

/// Which backing the memory got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// hugetlbfs pages.
    HugeTlb,
    /// Anonymous memory.
    Anonymous,
    /// Heap (tests only: never given to the HSM).
    Heap,
}

struct Region {
    gpa: u64,
    len: u64,
    host: *mut u8,
}

/// Guest RAM and its host mappings.
pub struct GuestMemory {
    regions: Vec<Region>,
    backing: Backing,
    /// The single host mapping to release (mmap'd backings), or the heap buffer.
    mapping: Option<(*mut libc::c_void, usize)>,
    heap: Vec<u8>,
}

// SAFETY: the raw pointers point into a mapping owned by this value for its whole life; all
// access goes through copying methods that take care of bounds, so sharing between threads is
// as safe as sharing guest memory with the guest itself.
unsafe impl Send for GuestMemory {}
// SAFETY: as above.
unsafe impl Sync for GuestMemory {}

/// Splits `size` into ACRN's (low, high) memory.
pub fn split(size: u64) -> (u64, u64) {
    let low = size.min(LOWMEM_LIMIT);
    (low, size - low)
}

fn hugetlbfs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(2) == Some("hugetlbfs"))
        })
        .unwrap_or(false)
}

impl GuestMemory {
    /// Maps `size` bytes of guest RAM for a real VM.
    pub fn map(size: u64) -> Result<Self, MemoryError> {
        if size == 0 || !size.is_multiple_of(HUGE_PAGE) {
            return Err(MemoryError::Unaligned(size));
        }
        if hugetlbfs_mounted() {
            match Self::map_hugetlb(size) {
                Ok(m) => return Ok(m),
                Err(err) => eprintln!(
                    "acrn-dm: hugetlbfs is mounted but {size:#x} bytes of huge pages are not \
                     available ({err}); using anonymous memory"
                ),
            }
        }
        Self::map_anonymous(size)
    }

    fn map_hugetlb(size: u64) -> Result<Self, io::Error> {
        // SAFETY: the name is a NUL-terminated literal.
        let fd = unsafe {
            libc::memfd_create(
                c"acrn_memfd".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is ours; the mapping is shared so the pages are the memfd's.
        let res = unsafe {
            if libc::ftruncate(fd, size as libc::off_t) < 0 {
                Err(io::Error::last_os_error())
            } else {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    0,
                );
                if p == libc::MAP_FAILED {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(p)
                }
            }
        };
        // SAFETY: the mapping keeps the pages; the fd is no longer needed.
        unsafe { libc::close(fd) };
        Ok(Self::from_mapping(res?, size, Backing::HugeTlb))
    }

    fn map_anonymous(size: u64) -> Result<Self, MemoryError> {
        // SAFETY: a fresh private anonymous mapping.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(MemoryError::Map {
                size,
                err: io::Error::last_os_error(),
            });
        }
        // Huge pages make the HSM's regions 2 MiB instead of 4 KiB; only a hint.
        // SAFETY: advising our own mapping.
        unsafe { libc::madvise(p, size as usize, libc::MADV_HUGEPAGE) };
        Ok(Self::from_mapping(p, size, Backing::Anonymous))
    }

    fn from_mapping(p: *mut libc::c_void, size: u64, backing: Backing) -> Self {
        let mut m = Self {
            regions: Vec::new(),
            backing,
            mapping: Some((p, size as usize)),
            heap: Vec::new(),
        };
        m.lay_out(p.cast(), size);
        m
    }

    /// Heap-backed memory of `size` bytes with the same layout (for tests).
    pub fn heap(size: u64) -> Self {
        let mut m = Self {
            regions: Vec::new(),
            backing: Backing::Heap,
            mapping: None,
            heap: vec![0; size as usize],
        };
        let p = m.heap.as_mut_ptr();
        m.lay_out(p, size);
        m
    }

    fn lay_out(&mut self, base: *mut u8, size: u64) {
        let (low, high) = split(size);
        self.regions.push(Region {
            gpa: 0,
            len: low,
            host: base,
        });
        if high > 0 {
            self.regions.push(Region {
                gpa: HIGHMEM_BASE,
                len: high,
                // SAFETY: `low` bytes into a mapping of `size` bytes.
                host: unsafe { base.add(low as usize) },
            });
        }
    }

    /// The backing kind.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// RAM below 4 GiB.
    pub fn lowmem(&self) -> u64 {
        self.regions[0].len
    }

    /// RAM from 4 GiB.
    pub fn highmem(&self) -> u64 {
        self.regions.get(1).map_or(0, |r| r.len)
    }

    /// `(guest-physical address, host address, length)` of each contiguous range, for
    /// `SET_MEMSEG`.
    pub fn ranges(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.regions.iter().map(|r| (r.gpa, r.host as u64, r.len))
    }

    fn host(&self, gpa: u64, len: u64) -> Result<*mut u8, OutOfRange> {
        let err = OutOfRange { gpa, len };
        let end = gpa.checked_add(len).ok_or(err)?;
        self.regions
            .iter()
            .find(|r| gpa >= r.gpa && end <= r.gpa + r.len)
            // SAFETY: the offset is inside the region.
            .map(|r| unsafe { r.host.add((gpa - r.gpa) as usize) })
            .ok_or(err)
    }

    /// Checks that `[gpa, gpa + len)` is guest RAM (before allocating for a guest-given length).
    pub fn check(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        self.host(gpa, len).map(drop)
    }

    /// A copy of `len` bytes at `gpa`; the range is checked before anything is allocated, so a
    /// guest-given length cannot make acrn-dm allocate more than guest RAM.
    pub fn read_vec(&self, gpa: u64, len: u64) -> Result<Vec<u8>, OutOfRange> {
        self.check(gpa, len)?;
        let mut v = vec![0u8; len as usize];
        self.read(gpa, &mut v)?;
        Ok(v)
    }

    /// Copies guest memory at `gpa` into `buf`.
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let src = self.host(gpa, buf.len() as u64)?;
        // SAFETY: bounds checked above; guest memory is plain bytes.
        unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let dst = self.host(gpa, data.len() as u64)?;
        // SAFETY: bounds checked above; the mapping is writable.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
        Ok(())
    }

    /// Fills `[gpa, gpa + len)` with zeros.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), OutOfRange> {
        let dst = self.host(gpa, len)?;
        // SAFETY: bounds checked above.
        unsafe { std::ptr::write_bytes(dst, 0, len as usize) };
        Ok(())
    }

    /// Little-endian u16 at `gpa`.
    pub fn read_u16(&self, gpa: u64) -> Result<u16, OutOfRange> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Little-endian u32 at `gpa`.
    pub fn read_u32(&self, gpa: u64) -> Result<u32, OutOfRange> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Little-endian u64 at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRange> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        if let Some((p, len)) = self.mapping.take() {
            // SAFETY: our own mapping, unmapped once.
            unsafe { libc::munmap(p, len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_splits_at_2g_and_resumes_at_4g() {
        assert_eq!(split(512 << 20), (512 << 20, 0));
        assert_eq!(split(3 << 30), (2 << 30, 1 << 30));
    }

    #[test]
    fn reads_and_writes_are_bounds_checked() {
        let m = GuestMemory::heap(128 << 20);
        m.write(0x1000, &[1, 2, 3, 4]).unwrap();
        assert_eq!(m.read_u32(0x1000).unwrap(), 0x0403_0201);
        let end = 128 << 20;
        assert!(m.write(end - 2, &[0; 2]).is_ok());
        assert_eq!(
            m.write(end - 2, &[0; 4]),
            Err(OutOfRange {
                gpa: end - 2,
                len: 4
            })
        );
        assert!(m.read_u64(u64::MAX - 3).is_err());
        assert!(m.read_u64(HIGHMEM_BASE).is_err());
        assert_eq!(m.read_vec(0x1000, 2).unwrap(), [1, 2]);
        // A huge guest-given length fails before any allocation.
        assert!(m.read_vec(0x1000, u64::from(u32::MAX)).is_err());
    }

    #[test]
    fn anonymous_mapping_is_usable_and_rejects_odd_sizes() {
        assert!(matches!(
            GuestMemory::map(3 << 20),
            Err(MemoryError::Unaligned(_))
        ));
        let m = GuestMemory::map_anonymous(4 << 20).unwrap();
        m.write(0x20_0000, b"acrn").unwrap();
        let mut b = [0; 4];
        m.read(0x20_0000, &mut b).unwrap();
        assert_eq!(&b, b"acrn");
        assert_eq!(m.ranges().count(), 1);
    }
}
