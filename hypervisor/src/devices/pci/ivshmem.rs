//! The inter-VM shared-memory device (ivshmem v1, 1af4:1110 revision 1, class 05/00) as ACRN's
//! hypervisor provides it: BAR0 the 256-byte register page, BAR1 the MSI-X table (8 vectors) and
//! PBA, BAR2 the shared region (64-bit, prefetchable). A VM's peer id is its VM id, as in ACRN;
//! a doorbell write names the peer and the vector to raise there.

use super::function::{BarKind, BarSpec, BuildError, Function, MsixLayout};

pub const VENDOR_ID: u16 = 0x1AF4;
pub const DEVICE_ID: u16 = 0x1110;
pub const REVISION: u8 = 1;
/// Memory controller, RAM.
pub const CLASS: [u8; 3] = [0x05, 0x00, 0x00];
pub const REGISTERS_SIZE: u64 = 256;
pub const MSIX_BAR_SIZE: u64 = 4096;
/// MSI-X vectors per device (ACRN's MAX_IVSHMEM_MSIX_TBL_ENTRY_NUM).
pub const VECTORS: u16 = 8;
const PBA_OFFSET: u32 = 0x800;

pub const REGISTERS_BAR: usize = 0;
pub const MSIX_BAR: usize = 1;
pub const SHM_BAR: usize = 2;

const INTR_MASK: u64 = 0x0;
const INTR_STATUS: u64 = 0x4;
const IV_POSITION: u64 = 0x8;
const DOORBELL: u64 = 0xC;

/// A doorbell write: raise `vector` in the device of VM `peer` for the same region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doorbell {
    pub peer: u16,
    pub vector: u16,
}

#[derive(Clone)]
pub struct Ivshmem {
    pub function: Function,
    intr_mask: u32,
    intr_status: u32,
    peer_id: u16,
}

impl Ivshmem {
    /// The device of peer `peer_id` with its BARs at `bars` (guest-physical, as allocated) and a
    /// shared region of `shm_size` bytes.
    pub fn new(peer_id: u16, bars: [u64; 3], shm_size: u64) -> Result<Self, BuildError> {
        let mut f = Function::new(VENDOR_ID, DEVICE_ID, REVISION, CLASS);
        let mem32 = |size| BarSpec {
            kind: BarKind::Mem32,
            size,
        };
        f.add_bar(REGISTERS_BAR, mem32(REGISTERS_SIZE), bars[0])?;
        f.add_bar(MSIX_BAR, mem32(MSIX_BAR_SIZE), bars[1])?;
        f.add_bar(
            SHM_BAR,
            BarSpec {
                kind: BarKind::Mem64 { prefetchable: true },
                size: shm_size,
            },
            bars[2],
        )?;
        f.add_msix(MsixLayout {
            bar: MSIX_BAR as u8,
            table_offset: 0,
            pba_offset: PBA_OFFSET,
            vectors: VECTORS,
        })?;
        Ok(Ivshmem {
            function: f,
            intr_mask: 0,
            intr_status: 0,
            peer_id,
        })
    }

    pub fn peer_id(&self) -> u16 {
        self.peer_id
    }

    /// A read of the register page (dword registers; other accesses read zero).
    pub fn register_read(&self, off: u64, size: u8) -> u64 {
        if size != 4 {
            return 0;
        }
        match off {
            INTR_MASK => self.intr_mask as u64,
            INTR_STATUS => self.intr_status as u64,
            IV_POSITION => self.peer_id as u64,
            // Doorbell is write-only.
            _ => 0,
        }
    }

    /// A write of the register page; a doorbell write is returned for the caller to ring.
    pub fn register_write(&mut self, off: u64, size: u8, value: u64) -> Option<Doorbell> {
        if size != 4 {
            return None;
        }
        let v = value as u32;
        match off {
            INTR_MASK => self.intr_mask = v,
            INTR_STATUS => self.intr_status = v,
            DOORBELL => {
                return Some(Doorbell {
                    peer: (v >> 16) as u16,
                    vector: v as u16,
                })
            }
            // IVPosition is read-only.
            _ => {}
        }
        None
    }
}
