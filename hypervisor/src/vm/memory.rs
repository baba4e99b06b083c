//! Guest-physical memory of any VM, through its own NPT/EPT: the one view the loaders, the
//! instruction fetch, string I/O and the guest page walker use, whatever the load order.

use crate::arch::x86::identity::reach as hv_reach;
use crate::hv::frames::Frames;
use crate::paging::{Ept, MapError, MemType, Npt, PageTable, Perm, Translation};
use crate::vcpu::gwalk::{self, GuestPhys};
use crate::vcpu::string_io::LinearMem;
use crate::vm::loader::{GuestMem, LoadError};

#[derive(Clone, Copy)]
pub struct VmMemory {
    root: u64,
    npt: bool,
}

impl VmMemory {
    /// The memory behind the second-level table at `root` (an NPT when `npt`, else an EPT).
    pub fn new(root: u64, npt: bool) -> Self {
        VmMemory { root, npt }
    }

    /// The memory behind a new, empty second-level table.
    pub fn empty(npt: bool) -> Result<Self, MapError> {
        let root = if npt {
            PageTable::<Npt>::new(&mut Frames)?.root()
        } else {
            PageTable::<Ept>::new(&mut Frames)?.root()
        };
        Ok(VmMemory { root, npt })
    }

    /// The root of the second-level table.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// How the second-level table maps `gpa`, wherever it leads.
    pub fn translate(&self, gpa: u64) -> Option<Translation> {
        if self.npt {
            PageTable::<Npt>::translate_root(self.root, &Frames, gpa)
        } else {
            PageTable::<Ept>::translate_root(self.root, &Frames, gpa)
        }
    }

    /// The host-physical address of `gpa` if it is mapped to memory the hypervisor reaches.
    pub fn hpa(&self, gpa: u64) -> Option<u64> {
        let t = self.translate(gpa)?;
        (t.hpa < hv_reach()).then_some(t.hpa)
    }

    /// Calls `f` with the host address of each piece of `[gpa, gpa + len)` that lies in one
    /// page; fails, touching nothing, unless the whole range is mapped.
    fn pieces(&self, gpa: u64, len: u64, mut f: impl FnMut(u64, usize, usize)) -> bool {
        let Some(end) = gpa.checked_add(len) else {
            return false;
        };
        // Within one page (every access but loading and string I/O): one translation.
        if gpa & !0xFFF == end.saturating_sub(1) & !0xFFF || len == 0 {
            return match self.hpa(gpa) {
                Some(hpa) => {
                    f(hpa, 0, len as usize);
                    true
                }
                None => len == 0,
            };
        }
        let mut at = gpa;
        while at < end {
            if self.hpa(at).is_none() {
                return false;
            }
            at = (at | 0xFFF).saturating_add(1);
        }
        let mut at = gpa;
        while at < end {
            let n = ((at | 0xFFF) + 1).min(end) - at;
            if let Some(hpa) = self.hpa(at) {
                f(hpa, (at - gpa) as usize, n as usize);
            }
            at += n;
        }
        true
    }

    /// Maps `[gpa, gpa + size)` to host memory at `hpa` (write-back, read/write/execute), as for
    /// a device's memory BAR. The caller flushes the VM's TLBs when it replaced a mapping.
    pub fn map(&self, gpa: u64, hpa: u64, size: u64) -> Result<(), MapError> {
        self.map_as(gpa, hpa, size, MemType::WriteBack)
    }

    /// Maps `[gpa, gpa + size)` to device registers at `hpa` (uncached, read/write): a
    /// pass-through function's BAR.
    pub fn map_device(&self, gpa: u64, hpa: u64, size: u64) -> Result<(), MapError> {
        self.map_as(gpa, hpa, size, MemType::Uncached)
    }

    fn map_as(&self, gpa: u64, hpa: u64, size: u64, mt: MemType) -> Result<(), MapError> {
        self.map_with(gpa, hpa, size, Perm::RWX, mt)
    }

    /// Maps `[gpa, gpa + size)` to `hpa` with `perm` and `mt`, for the VM's vCPUs and its
    /// devices alike. The caller flushes the VM's TLBs when it replaced a mapping.
    pub fn map_with(
        &self,
        gpa: u64,
        hpa: u64,
        size: u64,
        perm: Perm,
        mt: MemType,
    ) -> Result<(), MapError> {
        let replaced = if self.npt {
            PageTable::<Npt>::from_root(self.root).map(&mut Frames, gpa, hpa, size, perm, mt)
        } else {
            PageTable::<Ept>::from_root(self.root).map(&mut Frames, gpa, hpa, size, perm, mt)
        }?;
        crate::hv::iommu::mapped(self.root, gpa, hpa, size, perm, replaced);
        Ok(())
    }

    /// Removes the mapping of `[gpa, gpa + size)`; the caller flushes the VM's TLBs. The
    /// IOMMU's translations go here (devices may use the table too).
    pub fn unmap(&self, gpa: u64, size: u64) -> Result<(), MapError> {
        let r = if self.npt {
            PageTable::<Npt>::from_root(self.root).unmap(&mut Frames, gpa, size)
        } else {
            PageTable::<Ept>::from_root(self.root).unmap(&mut Frames, gpa, size)
        };
        crate::hv::iommu::unmapped(self.root, gpa, size);
        r
    }

    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> bool {
        let ptr = buf.as_mut_ptr();
        self.pieces(gpa, buf.len() as u64, |hpa, off, n| {
            // SAFETY: guest RAM the hypervisor maps 1:1; `off + n` is within `buf`.
            unsafe { core::ptr::copy_nonoverlapping(hpa as *const u8, ptr.add(off), n) }
        })
    }

    pub fn write(&self, gpa: u64, data: &[u8]) -> bool {
        self.pieces(gpa, data.len() as u64, |hpa, off, n| {
            // SAFETY: as above; guest RAM holds no hypervisor data.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr().add(off), hpa as *mut u8, n) }
        })
    }

    pub fn fill(&self, gpa: u64, len: u64, byte: u8) -> bool {
        self.pieces(gpa, len, |hpa, _, n| {
            // SAFETY: as above.
            unsafe { core::ptr::write_bytes(hpa as *mut u8, byte, n) }
        })
    }
}

impl GuestPhys for VmMemory {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b).then(|| u64::from_le_bytes(b))
    }
}

impl GuestMem for VmMemory {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        VmMemory::write(self, gpa, data)
            .then_some(())
            .ok_or(LoadError::OutOfBounds {
                gpa,
                len: data.len() as u64,
            })
    }
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        self.fill(gpa, len, 0)
            .then_some(())
            .ok_or(LoadError::OutOfBounds { gpa, len })
    }
}

/// A VM's memory by guest linear address, through the guest's page tables (CR0, CR3, CR4,
/// EFER as the vCPU has them).
pub struct GuestLinear {
    pub mem: VmMemory,
    pub paging: (u64, u64, u64, u64),
}

impl GuestLinear {
    fn gpa(&self, la: u64) -> Option<u64> {
        let (cr0, cr3, cr4, efer) = self.paging;
        gwalk::translate(&self.mem, cr0, cr3, cr4, efer, la)
    }
}

impl GuestLinear {
    /// Reads as much of `buf` as is mapped from `la` on, a page at a time; returns how many
    /// bytes were read (fewer where the mapping ends).
    pub fn read_prefix(&self, la: u64, buf: &mut [u8]) -> usize {
        let mut done = 0;
        while done < buf.len() {
            let at = la.wrapping_add(done as u64);
            let n = (0x1000 - (at & 0xFFF) as usize).min(buf.len() - done);
            match self.gpa(at) {
                Some(gpa) if self.mem.read(gpa, &mut buf[done..done + n]) => done += n,
                _ => break,
            }
        }
        done
    }
}

impl LinearMem for GuestLinear {
    fn read(&self, la: u64, buf: &mut [u8]) -> bool {
        self.read_prefix(la, buf) == buf.len()
    }
    fn write(&mut self, la: u64, data: &[u8]) -> bool {
        // Translate every page first so a fault leaves memory untouched.
        let mut pieces = [(0u64, 0usize, 0usize); 2];
        let mut n = 0;
        let mut done = 0;
        while done < data.len() {
            let at = la.wrapping_add(done as u64);
            let len = (0x1000 - (at & 0xFFF) as usize).min(data.len() - done);
            match self.gpa(at) {
                Some(gpa) if n < pieces.len() && self.mem.hpa(gpa).is_some() => {
                    pieces[n] = (gpa, done, len);
                    n += 1;
                }
                _ => return false,
            }
            done += len;
        }
        pieces[..n]
            .iter()
            .all(|&(gpa, off, len)| self.mem.write(gpa, &data[off..off + len]))
    }
}
