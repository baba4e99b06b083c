//! PCI device, MMIO device and virtual device assignment structures.

/// `ACRN_PCI_NUM_BARS`.
pub const ACRN_PCI_NUM_BARS: usize = 6;
/// `ACRN_MMIODEV_RES_NUM`.
pub const ACRN_MMIODEV_RES_NUM: usize = 3;
/// `ACRN_PTDEV_QUIRK_ASSIGN`: assign the device to the device model's quirk handling.
pub const ACRN_PTDEV_QUIRK_ASSIGN: u32 = 1 << 0;

/// `struct acrn_pcidev` (36 bytes, align 4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnPcidev {
    /// [`ACRN_PTDEV_QUIRK_ASSIGN`] or 0.
    pub r#type: u32,
    /// Virtual BDF.
    pub virt_bdf: u16,
    /// Physical BDF.
    pub phys_bdf: u16,
    /// Interrupt line register.
    pub intr_line: u8,
    /// Interrupt pin register.
    pub intr_pin: u8,
    /// The C compiler's padding, made explicit.
    pub padding: [u8; 2],
    /// BAR values.
    pub bar: [u32; ACRN_PCI_NUM_BARS],
}

/// One resource of [`AcrnMmiodev`] (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmiodevResource {
    /// User VM GPA.
    pub user_vm_pa: u64,
    /// Host (Service VM) physical address (uapi name: `service_vm_pa`).
    pub host_pa: u64,
    /// Size in bytes.
    pub size: u64,
    /// EPT memory type.
    pub mem_type: u64,
}

/// `struct acrn_mmiodev` (104 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnMmiodev {
    /// Device name (not NUL-terminated when 8 bytes long).
    pub name: [u8; 8],
    /// MMIO resources.
    pub res: [MmiodevResource; ACRN_MMIODEV_RES_NUM],
}

/// `struct acrn_vdev` (192 bytes): a device the hypervisor emulates (`HC_ADD_VDEV`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcrnVdev {
    /// C union `{u64 value; struct {u16 vendor; u16 device; u32 legacy_id;}}`; see
    /// [`AcrnVdev::pci_id`].
    pub id: u64,
    /// BDF for a PCI device.
    pub slot: u64,
    /// I/O resource bases.
    pub io_addr: [u32; ACRN_PCI_NUM_BARS],
    /// I/O resource sizes.
    pub io_size: [u32; ACRN_PCI_NUM_BARS],
    /// Device-specific arguments (the PCI vUART puts `u32 vuart_idx` at offset 0).
    pub args: [u8; 128],
}

impl Default for AcrnVdev {
    fn default() -> Self {
        Self {
            id: 0,
            slot: 0,
            io_addr: [0; ACRN_PCI_NUM_BARS],
            io_size: [0; ACRN_PCI_NUM_BARS],
            args: [0; 128],
        }
    }
}

impl AcrnVdev {
    /// The `id.value` of a PCI device.
    pub const fn pci_id(vendor: u16, device: u16) -> u64 {
        (vendor as u64) | ((device as u64) << 16)
    }

    /// `id.fields.vendor`.
    pub const fn vendor(&self) -> u16 {
        self.id as u16
    }

    /// `id.fields.device`.
    pub const fn device(&self) -> u16 {
        (self.id >> 16) as u16
    }

    /// `id.fields.legacy_id`.
    pub const fn legacy_id(&self) -> u32 {
        (self.id >> 32) as u32
    }
}

/// IVSHMEM inter-VM shared memory device (1af4:1110).
pub const VDEV_ID_IVSHMEM: u64 = AcrnVdev::pci_id(0x1af4, 0x1110);
/// MCS9900 PCI vUART (9710:9900).
pub const VDEV_ID_MCS9900: u64 = AcrnVdev::pci_id(0x9710, 0x9900);
/// Virtual PCIe root port for PTM (8086:9d14).
pub const VDEV_ID_VROOT_PORT: u64 = AcrnVdev::pci_id(0x8086, 0x9d14);
