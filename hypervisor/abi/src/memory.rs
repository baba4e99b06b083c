//! Guest memory mapping: the hypervisor's `vm_memory_region` / `set_regions` batch and the
//! uapi's `acrn_vm_memmap`.

use bitflags::bitflags;

bitflags! {
    /// `ACRN_MEM_ACCESS_*` / `MEM_ACCESS_*`: EPT access rights of a region.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemAccess: u32 {
        /// Readable.
        const READ = 0x1;
        /// Writable.
        const WRITE = 0x2;
        /// Executable.
        const EXEC = 0x4;
        /// Read, write and execute.
        const RWX = 0x7;
    }
}

bitflags! {
    /// `ACRN_MEM_TYPE_*` / `MEM_TYPE_*`: EPT memory type of a region (one bit set).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct MemType: u32 {
        /// Write-back.
        const WB = 0x40;
        /// Write-through.
        const WT = 0x80;
        /// Uncached.
        const UC = 0x100;
        /// Write-combining.
        const WC = 0x200;
        /// Write-protected.
        const WP = 0x400;
    }
}

/// `ACRN_MEM_ACCESS_RIGHT_MASK`.
pub const MEM_ACCESS_RIGHT_MASK: u32 = 0x7;
/// `ACRN_MEM_TYPE_MASK`.
pub const MEM_TYPE_MASK: u32 = 0x7C0;

/// `MR_ADD`: map `[gpa, gpa+size)` to the Service VM range at `service_vm_gpa`.
pub const MR_ADD: u32 = 0;
/// `MR_DEL`: unmap `[gpa, gpa+size)`.
pub const MR_DEL: u32 = 2;
/// `MR_MODIFY`: defined, but ACRN treats it like [`MR_DEL`].
pub const MR_MODIFY: u32 = 3;

/// `ACRN_MEMMAP_RAM`.
pub const ACRN_MEMMAP_RAM: u32 = 0;
/// `ACRN_MEMMAP_MMIO`.
pub const ACRN_MEMMAP_MMIO: u32 = 1;

/// `struct vm_memory_region` (Linux: `vm_memory_region_op`), 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmMemoryRegion {
    /// [`MR_ADD`], [`MR_DEL`] or [`MR_MODIFY`].
    pub r#type: u32,
    /// [`MemAccess`] | [`MemType`] bits.
    pub prot: u32,
    /// User VM GPA.
    pub gpa: u64,
    /// Service VM GPA of the backing (must be HPA-contiguous for `size`).
    pub service_vm_gpa: u64,
    /// Size in bytes, a multiple of 4 KiB.
    pub size: u64,
}

/// `struct set_regions` (Linux: `vm_memory_region_batch`), 24 bytes: argument of
/// `HC_VM_SET_MEMORY_REGIONS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetRegions {
    /// Relative VM ID.
    pub vmid: u16,
    /// Reserved.
    pub reserved0: u16,
    /// Reserved.
    pub reserved1: u32,
    /// Number of [`VmMemoryRegion`] entries at `regions_gpa`.
    pub mr_num: u32,
    /// The C compiler's padding, made explicit so it is always zero.
    pub padding: u32,
    /// Service VM GPA of the `VmMemoryRegion` array.
    pub regions_gpa: u64,
}

/// `struct acrn_vm_memmap` (32 bytes): argument of `ACRN_IOCTL_SET_MEMSEG` / `UNSET_MEMSEG`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnVmMemmap {
    /// [`ACRN_MEMMAP_RAM`] or [`ACRN_MEMMAP_MMIO`].
    pub r#type: u32,
    /// [`MemAccess`] bits.
    pub attr: u32,
    /// User VM GPA.
    pub user_vm_pa: u64,
    /// C union: `service_vm_pa` for MMIO, `vma_base` (user-space VA of the backing) for RAM.
    pub service_vm_pa: u64,
    /// Length in bytes.
    pub len: u64,
}

impl AcrnVmMemmap {
    /// The union's `vma_base` view (RAM mappings).
    pub fn vma_base(&self) -> u64 {
        self.service_vm_pa
    }
}

/// `struct wp_data` (16 bytes): argument of `HC_VM_WRITE_PROTECT_PAGE`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WpData {
    /// 1 to write-protect, 0 to make writable again.
    pub set: u8,
    /// The C bit-field `u64 pad:56`.
    pub pad: [u8; 7],
    /// User VM GPA of the page.
    pub gpa: u64,
}

/// `struct vm_gpa2hpa` (16 bytes): argument of `HC_VM_GPA2HPA`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmGpa2Hpa {
    /// In: User VM GPA.
    pub gpa: u64,
    /// Out: host physical address.
    pub hpa: u64,
}
