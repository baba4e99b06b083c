//! Bounds-checked reads of guest-physical memory.
//!
//! Everything the guest learns from its loader or firmware (multiboot info, e820, ACPI) is
//! reached through [`PhysRead`], so a bad pointer becomes an error instead of a wild
//! access that could fault the VM. The parsers are generic over it, which lets host unit
//! tests feed them fabricated memory.

/// A read outside the memory the reader is willing to touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("physical range {addr:#x}+{len:#x} is outside readable memory")]
pub struct MemError {
    pub addr: u64,
    pub len: u64,
}

/// Reads guest-physical memory, refusing ranges it cannot vouch for.
pub trait PhysRead {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;

    fn read_u8(&self, addr: u64) -> Result<u8, MemError> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
    fn read_u16(&self, addr: u64) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Maximum number of readable windows a [`GuestMem`] tracks.
pub const MAX_WINDOWS: usize = 40;

/// The guest's own identity-mapped view of physical memory (the boot stub maps 0-4 GiB).
///
/// Without windows it accepts anything in `[4 KiB, 4 GiB)` (the null page is refused: no
/// loader puts boot data there, and it is the classic value of an unset pointer). With
/// windows (normally the e820 map plus the legacy BIOS area) a range must lie inside one.
pub struct GuestMem {
    windows: [(u64, u64); MAX_WINDOWS],
    count: usize,
}

/// Lowest address [`GuestMem`] reads.
pub const LOW_LIMIT: u64 = 0x1000;
/// End of the boot stub's identity map.
pub const IDENTITY_LIMIT: u64 = 0x1_0000_0000;

impl Default for GuestMem {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestMem {
    pub const fn new() -> Self {
        Self {
            windows: [(0, 0); MAX_WINDOWS],
            count: 0,
        }
    }

    /// Adds a readable window `[base, base + len)`; silently ignores windows beyond the
    /// table's capacity (reads there are then refused, which is the safe side).
    pub fn allow(&mut self, base: u64, len: u64) {
        if self.count < MAX_WINDOWS && len > 0 {
            self.windows[self.count] = (base, base.saturating_add(len));
            self.count += 1;
        }
    }

    /// Whether `[addr, addr + len)` may be read.
    pub fn permits(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else {
            return false;
        };
        if addr < LOW_LIMIT || end > IDENTITY_LIMIT {
            return false;
        }
        self.count == 0
            || self.windows[..self.count]
                .iter()
                .any(|&(b, e)| addr >= b && end <= e)
    }
}

impl PhysRead for GuestMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let len = buf.len() as u64;
        if !self.permits(addr, len) {
            return Err(MemError { addr, len });
        }
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: the range is inside the identity map set up by the boot stub and
            // above the null page; volatile because this is device-visible memory.
            *b = unsafe { core::ptr::read_volatile((addr as usize + i) as *const u8) };
        }
        Ok(())
    }
}

#[cfg(test)]
pub mod testmem {
    //! Fabricated physical memory for host tests.
    use super::{MemError, PhysRead};
    use std::vec::Vec;

    /// Sparse memory: a list of (base, bytes) segments.
    #[derive(Default)]
    pub struct FakeMem {
        pub segs: Vec<(u64, Vec<u8>)>,
    }

    impl FakeMem {
        pub fn put(&mut self, base: u64, bytes: &[u8]) {
            self.segs.push((base, bytes.to_vec()));
        }
    }

    impl PhysRead for FakeMem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let len = buf.len() as u64;
            for (base, bytes) in &self.segs {
                let end = base + bytes.len() as u64;
                if addr >= *base && addr.checked_add(len).is_some_and(|e| e <= end) {
                    let off = (addr - base) as usize;
                    buf.copy_from_slice(&bytes[off..off + buf.len()]);
                    return Ok(());
                }
            }
            Err(MemError { addr, len })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_mem_bounds() {
        let mut m = GuestMem::new();
        assert!(!m.permits(0, 4));
        assert!(m.permits(0x1000, 4));
        assert!(!m.permits(IDENTITY_LIMIT - 2, 4));
        assert!(!m.permits(u64::MAX - 1, 4));
        m.allow(0x10_0000, 0x1000);
        assert!(m.permits(0x10_0000, 0x1000));
        assert!(!m.permits(0x10_0ffe, 4));
        assert!(!m.permits(0x2000, 4));
    }
}
