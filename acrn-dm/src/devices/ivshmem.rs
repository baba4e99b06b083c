//! IVSHMEM (1AF4:1110) as ACRN's acrn-dm sets it up (`hw/pci/ivshmem.c`): BAR0 registers
//! (256 bytes), BAR1 MSI-X table (4 KiB), BAR2 the shared memory.
//!
//! - `hv:/NAME`: the hypervisor emulates the device (HC_ADD_VDEV); acrn-dm only picks the BAR
//!   addresses and passes the name, as [`hv_vdev`] builds it.
//! - `dm:/NAME`: acrn-dm backs the region with POSIX shared memory `/NAME`, maps it into the
//!   guest at BAR2 with SET_MEMSEG, and emulates the configuration space; the registers read as
//!   zero (no doorbell, no interrupts), as ACRN's.
//!
//! BAR2 is a 32-bit BAR here (ACRN: 64-bit), placed in the 32-bit PCI window; like ACRN's, the
//! mapping does not follow the guest if it moves BAR2.

use super::pci::{Bar, BarKind, ConfigSpace, PciFunction, PciId};
use acrn_abi::device::{AcrnVdev, VDEV_ID_IVSHMEM, VDEV_ID_MCS9900};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// BAR0: the register block.
pub const REG_SIZE: u32 = 0x100;
/// BAR1: the MSI-X table and PBA.
pub const MSIX_SIZE: u32 = 0x1000;

/// `PCI_BDF(bus, dev, func)`.
pub fn bdf(bus: u8, dev: u8, func: u8) -> u64 {
    (u64::from(bus) << 8) | (u64::from(dev) << 3) | u64::from(func)
}

/// The HC_ADD_VDEV request for a hypervisor-land region: BAR2 flagged 64-bit prefetchable
/// (its upper half in BAR3), the size, and the full `hv:/NAME` in `args`.
pub fn hv_vdev(slot: u64, bars: [u32; 3], size: u32, full_name: &str) -> AcrnVdev {
    let mut v = AcrnVdev {
        id: VDEV_ID_IVSHMEM,
        slot,
        ..Default::default()
    };
    v.io_addr[0] = bars[0];
    v.io_addr[1] = bars[1];
    v.io_addr[2] = bars[2] | 0x0C;
    v.io_size[2] = size;
    let n = full_name.len().min(32);
    v.args[..n].copy_from_slice(&full_name.as_bytes()[..n]);
    v
}

/// The HC_ADD_VDEV request for the hypervisor's PCI vUART `vuart_idx` (MCS9900) with its two
/// memory BARs.
pub fn vuart_vdev(slot: u64, bars: [u32; 2], vuart_idx: u32) -> AcrnVdev {
    let mut v = AcrnVdev {
        id: VDEV_ID_MCS9900,
        slot,
        ..Default::default()
    };
    v.io_addr[0] = bars[0];
    v.io_addr[1] = bars[1];
    v.args[..4].copy_from_slice(&vuart_idx.to_le_bytes());
    v
}

/// A POSIX shared-memory region mapped into acrn-dm.
pub struct ShmRegion {
    addr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value.
unsafe impl Send for ShmRegion {}

impl ShmRegion {
    /// Opens (creating if needed) `/NAME` of `size` bytes; an existing region must have that
    /// size, as ACRN requires of the peer.
    pub fn open(name: &str, size: u32) -> io::Result<Self> {
        let path = std::ffi::CString::new(format!("/{name}"))
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NUL-terminated name.
        let fd = unsafe { libc::shm_open(path.as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o600) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor, ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        let cur = file.metadata()?.len();
        if cur == 0 {
            file.set_len(u64::from(size))?;
        } else if cur != u64::from(size) {
            return Err(io::Error::other(format!(
                "the region exists with {cur} bytes, not {size}"
            )));
        }
        // SAFETY: a shared mapping of the whole region.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr,
            len: size as usize,
        })
    }

    /// The user address of the mapping (the `vma_base` for SET_MEMSEG).
    pub fn host_addr(&self) -> u64 {
        self.addr as u64
    }

    /// Its length.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether it is empty (never: sizes are at least 2 MiB).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for ShmRegion {
    fn drop(&mut self) {
        // SAFETY: our own mapping. The shared-memory object itself stays, as ACRN's does, so
        // a peer keeps its contents across restarts.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// The device-model-land IVSHMEM function.
pub struct DmIvshmem {
    cfg: ConfigSpace,
}

impl DmIvshmem {
    /// Config space with the three BARs at `bars`, region `size`.
    pub fn new(bars: [u32; 3], size: u32) -> Self {
        let mut cfg = ConfigSpace::new(PciId {
            vendor: 0x1AF4,
            device: 0x1110,
            class: 0x05_00_00,
            revision: 1,
            subsys_vendor: 0,
            subsys: 0,
        });
        cfg.set_bar(
            0,
            Bar {
                kind: BarKind::Mem32,
                size: REG_SIZE,
            },
            bars[0],
        );
        cfg.set_bar(
            1,
            Bar {
                kind: BarKind::Mem32,
                size: MSIX_SIZE,
            },
            bars[1],
        );
        cfg.set_bar(
            2,
            Bar {
                kind: BarKind::Mem32,
                size,
            },
            bars[2],
        );
        Self { cfg }
    }
}

impl PciFunction for DmIvshmem {
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    fn bar_read(&mut self, bar: usize, _offset: u64, _size: u8) -> u64 {
        // Interrupt mask/status and IVPosition read as zero: no interrupts, no peer ID.
        if bar == 0 {
            0
        } else {
            u64::MAX
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vdev_requests_as_acrn_builds_them() {
        let v = hv_vdev(
            bdf(0, 8, 0),
            [0x8000_0000, 0x8000_1000, 0x8020_0000],
            2 << 20,
            "hv:/shm_region_0",
        );
        assert_eq!((v.vendor(), v.device()), (0x1AF4, 0x1110));
        assert_eq!(v.slot, 8 << 3);
        assert_eq!(v.io_addr[..4], [0x8000_0000, 0x8000_1000, 0x8020_000C, 0]);
        assert_eq!(v.io_size[2], 2 << 20);
        assert_eq!(&v.args[..17], b"hv:/shm_region_0\0");

        let u = vuart_vdev(bdf(0, 16, 0), [0x8000_2000, 0x8000_3000], 1);
        assert_eq!((u.vendor(), u.device()), (0x9710, 0x9900));
        assert_eq!(u.slot, 16 << 3);
        assert_eq!(u.io_addr[..2], [0x8000_2000, 0x8000_3000]);
        assert_eq!(u.args[..4], 1u32.to_le_bytes());
    }

    #[test]
    fn dm_land_function_and_region() {
        let mut f = DmIvshmem::new([0x8000_0000, 0x8000_1000, 0x8020_0000], 2 << 20);
        assert_eq!(f.config().read(0, 4), 0x1110_1AF4);
        assert_eq!(f.config().read(0x18, 4), 0x8020_0000);
        assert_eq!(f.bar_read(0, 8, 4), 0);
        let name = format!("acrn-dm-test-{}", std::process::id());
        let r = ShmRegion::open(&name, 2 << 20).unwrap();
        assert_eq!(r.len(), 2 << 20);
        // A second opener with another size is refused.
        assert!(ShmRegion::open(&name, 4 << 20).is_err());
        let again = ShmRegion::open(&name, 2 << 20).unwrap();
        // SAFETY: both map the same object; the test writes through one, reads the other.
        unsafe {
            *(r.host_addr() as *mut u8) = 0x5A;
            assert_eq!(*(again.host_addr() as *const u8), 0x5A);
        }
        let c = std::ffi::CString::new(format!("/{name}")).unwrap();
        // SAFETY: removing the test's own object.
        unsafe { libc::shm_unlink(c.as_ptr()) };
    }
}
