//! Interrupt injection and pass-through interrupt structures.

/// `HYPERVISOR_CALLBACK_HSM_VECTOR`: the upcall vector the hypervisor raises (edge) on Service VM
/// vCPU 0 when new I/O requests are pending. Linux's `HYPERVISOR_CALLBACK_VECTOR` is the same.
pub const HSM_UPCALL_VECTOR: u8 = 0xF3;

/// `GSI_SET_HIGH`: assert the line.
pub const GSI_SET_HIGH: u32 = 0;
/// `GSI_SET_LOW`: deassert the line.
pub const GSI_SET_LOW: u32 = 1;
/// `GSI_RAISING_PULSE`: low-high-low.
pub const GSI_RAISING_PULSE: u32 = 2;
/// `GSI_FALLING_PULSE`: high-low-high.
pub const GSI_FALLING_PULSE: u32 = 3;

/// Operation on an interrupt line (`acrn_irqline_ops.op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GsiOp {
    /// [`GSI_SET_HIGH`]
    SetHigh = GSI_SET_HIGH,
    /// [`GSI_SET_LOW`]
    SetLow = GSI_SET_LOW,
    /// [`GSI_RAISING_PULSE`]
    RaisingPulse = GSI_RAISING_PULSE,
    /// [`GSI_FALLING_PULSE`]
    FallingPulse = GSI_FALLING_PULSE,
}

impl GsiOp {
    /// Decodes a raw op.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            GSI_SET_HIGH => Self::SetHigh,
            GSI_SET_LOW => Self::SetLow,
            GSI_RAISING_PULSE => Self::RaisingPulse,
            GSI_FALLING_PULSE => Self::FallingPulse,
            _ => return None,
        })
    }
}

/// `struct acrn_irqline_ops` (8 bytes). `HC_SET_IRQLINE` and `ACRN_IOCTL_SET_IRQLINE` take it
/// *by value*, packed into a u64 ([`AcrnIrqlineOps::to_u64`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnIrqlineOps {
    /// Global system interrupt (vIOAPIC pin; below the PIC pin count it also drives the vPIC).
    pub gsi: u32,
    /// `GSI_*`.
    pub op: u32,
}

impl AcrnIrqlineOps {
    /// The by-value encoding: gsi in bits 31:0, op in bits 63:32.
    pub const fn to_u64(self) -> u64 {
        (self.gsi as u64) | ((self.op as u64) << 32)
    }

    /// Inverse of [`Self::to_u64`].
    pub const fn from_u64(v: u64) -> Self {
        Self {
            gsi: v as u32,
            op: (v >> 32) as u32,
        }
    }
}

/// `struct acrn_msi_entry` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AcrnMsiEntry {
    /// MSI address; destination APIC ID in bits 19:12.
    pub msi_addr: u64,
    /// MSI data; vector in bits 7:0.
    pub msi_data: u64,
}

/// `ACRN_PTDEV_IRQ_INTX`.
pub const ACRN_PTDEV_IRQ_INTX: u32 = 0;
/// `ACRN_PTDEV_IRQ_MSI`.
pub const ACRN_PTDEV_IRQ_MSI: u32 = 1;
/// `ACRN_PTDEV_IRQ_MSIX`.
pub const ACRN_PTDEV_IRQ_MSIX: u32 = 2;

/// The INTx part of [`HcPtdevIrq`] as the hypervisor reads it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcPtdevIntx {
    /// Virtual IOAPIC pin.
    pub virt_pin: u32,
    /// Physical IOAPIC pin.
    pub phys_pin: u32,
    /// C `bool`: non-zero for a PIC pin. A `u8` so any guest byte is a valid value.
    pub pic_pin: u8,
    /// Reserved.
    pub reserved: [u8; 3],
}

/// `struct hc_ptdev_irq` as the hypervisor reads it (24 bytes, align 8). Linux sends the 20-byte
/// [`AcrnPtdevIrq`]; the first 17 bytes agree.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HcPtdevIrq {
    /// `ACRN_PTDEV_IRQ_*` (only INTx is accepted).
    pub r#type: u32,
    /// Virtual BDF.
    pub virt_bdf: u16,
    /// Physical BDF.
    pub phys_bdf: u16,
    /// INTx routing.
    pub intx: HcPtdevIntx,
}

/// The `intx` part of [`AcrnPtdevIrq`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnPtdevIntx {
    /// Virtual IOAPIC pin.
    pub virt_pin: u32,
    /// Physical IOAPIC pin.
    pub phys_pin: u32,
    /// Non-zero for a PIC pin.
    pub is_pic_pin: u32,
}

/// Linux uapi `struct acrn_ptdev_irq` (20 bytes, align 4).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnPtdevIrq {
    /// `ACRN_PTDEV_IRQ_*`.
    pub r#type: u32,
    /// Virtual BDF.
    pub virt_bdf: u16,
    /// Physical BDF.
    pub phys_bdf: u16,
    /// INTx routing.
    pub intx: AcrnPtdevIntx,
}

/// `MAX_PTDEV_NUM`: (pirq, count) pairs an interrupt monitor page can hold.
pub const MAX_PTDEV_NUM: usize = 24;
/// `INTR_CMD_GET_DATA`: fill the buffer with (pirq, count) pairs.
pub const INTR_CMD_GET_DATA: u32 = 0;
/// `INTR_CMD_DELAY_INT`: delay interrupts by `buffer[0]` ms.
pub const INTR_CMD_DELAY_INT: u32 = 1;

/// `struct acrn_intr_monitor` (392 bytes), in a page passed to `HC_VM_INTR_MONITOR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcrnIntrMonitor {
    /// `INTR_CMD_*`.
    pub cmd: u32,
    /// Number of valid `buffer` entries (at most 48).
    pub buf_cnt: u32,
    /// Data.
    pub buffer: [u64; MAX_PTDEV_NUM * 2],
}

impl Default for AcrnIntrMonitor {
    fn default() -> Self {
        Self {
            cmd: 0,
            buf_cnt: 0,
            buffer: [0; MAX_PTDEV_NUM * 2],
        }
    }
}
