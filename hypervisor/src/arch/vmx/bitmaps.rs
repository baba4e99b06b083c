//! I/O and MSR bitmaps (pure logic over the bitmap bytes). A set bit means "exit".

/// The two 4 KiB I/O bitmaps A (ports 0..0x7fff) and B (0x8000..0xffff), contiguous.
pub struct IoBitmap<'a>(pub &'a mut [u8; 8192]);

impl IoBitmap<'_> {
    pub fn trap_all(&mut self) {
        self.0.fill(0xff);
    }
    /// Lets the guest reach `count` ports from `base` directly (pass-through hardware).
    pub fn pass(&mut self, base: u16, count: u16) {
        for port in (base as u32)..(base as u32 + count as u32).min(0x1_0000) {
            self.0[port as usize / 8] &= !(1 << (port % 8));
        }
    }
    pub fn traps(&self, port: u16) -> bool {
        self.0[port as usize / 8] & (1 << (port % 8)) != 0
    }
}

/// The 4 KiB MSR bitmap: read-low, read-high, write-low, write-high quarters. MSRs outside
/// 0..0x1fff and 0xc0000000..0xc0001fff always exit, whatever the bitmap says.
pub struct MsrBitmap<'a>(pub &'a mut [u8; 4096]);

impl MsrBitmap<'_> {
    pub fn trap_all(&mut self) {
        self.0.fill(0xff);
    }
    /// Bit position of `msr` in the read quarter (the write quarter is 0x800 bytes further),
    /// or `None` when the MSR is outside the bitmap's ranges.
    fn slot(msr: u32) -> Option<usize> {
        match msr {
            0..=0x1fff => Some(msr as usize),
            0xc000_0000..=0xc000_1fff => Some(0x400 * 8 + (msr - 0xc000_0000) as usize),
            _ => None,
        }
    }
    /// Stops trapping reads and/or writes of `msr`. Returns false when the MSR cannot be
    /// passed through (outside the bitmap ranges).
    pub fn pass(&mut self, msr: u32, read: bool, write: bool) -> bool {
        let Some(bit) = Self::slot(msr) else {
            return false;
        };
        if read {
            self.0[bit / 8] &= !(1 << (bit % 8));
        }
        if write {
            let bit = bit + 0x800 * 8;
            self.0[bit / 8] &= !(1 << (bit % 8));
        }
        true
    }
    /// Traps reads and/or writes of `msr` again (false outside the bitmap ranges, where
    /// every access exits anyway).
    pub fn trap(&mut self, msr: u32, read: bool, write: bool) -> bool {
        let Some(bit) = Self::slot(msr) else {
            return false;
        };
        if read {
            self.0[bit / 8] |= 1 << (bit % 8);
        }
        if write {
            let bit = bit + 0x800 * 8;
            self.0[bit / 8] |= 1 << (bit % 8);
        }
        true
    }
    pub fn traps(&self, msr: u32, write: bool) -> bool {
        match Self::slot(msr) {
            None => true,
            Some(bit) => {
                let bit = if write { bit + 0x800 * 8 } else { bit };
                self.0[bit / 8] & (1 << (bit % 8)) != 0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_bitmap_pass_range() {
        let mut bytes = [0u8; 8192];
        let mut b = IoBitmap(&mut bytes);
        b.trap_all();
        b.pass(0x60, 1);
        b.pass(0xfff8, 100);
        assert!(b.traps(0x3f8));
        assert!(!b.traps(0x60));
        assert!(b.traps(0x61));
        assert!(b.traps(0xfff7));
        assert!(!b.traps(0xffff));
        // Port 0x8000 lives in bitmap B (byte 0x1000).
        b.pass(0x8000, 1);
        assert_eq!(bytes[0x1000], 0xfe);
    }

    #[test]
    fn msr_bitmap_quarters() {
        let mut bytes = [0u8; 4096];
        let mut b = MsrBitmap(&mut bytes);
        b.trap_all();
        assert!(b.pass(0xc000_0080, true, true));
        assert!(b.pass(0x174, true, false));
        assert!(!b.pass(0x4000_0000, true, true));
        assert!(!b.traps(0xc000_0080, false));
        assert!(!b.traps(0xc000_0080, true));
        assert!(!b.traps(0x174, false));
        assert!(b.traps(0x174, true));
        assert!(b.traps(0xc001_0000, false));
        // EFER (0xc0000080): bit 0x80 of the read-high quarter at byte 0x400.
        assert_eq!(bytes[0x400 + 0x10], 0xfe);
        assert_eq!(bytes[0xc00 + 0x10], 0xfe);
        // SYSENTER_CS read: byte 0x174/8 = 0x2e, bit 4.
        assert_eq!(bytes[0x2e], 0xef);
        let mut b = MsrBitmap(&mut bytes);
        assert!(b.trap(0x174, true, false));
        assert!(b.traps(0x174, false));
        assert!(!b.traps(0xc000_0080, true));
        assert!(b.trap(0xc000_0080, false, true));
        assert!(b.traps(0xc000_0080, true));
        assert!(!b.traps(0xc000_0080, false));
    }
}
