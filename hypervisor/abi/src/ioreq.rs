//! The I/O request page: 16 slots of 256 bytes, one per vCPU, shared by the hypervisor, the HSM
//! and the device model.
//!
//! A slot moves `FREE -> PENDING -> PROCESSING -> COMPLETE -> FREE`. The hypervisor owns FREE and
//! COMPLETE slots, the Service VM owns PENDING and PROCESSING ones. Every transition of
//! [`IoRequest::processed`] is a release store after the slot's other fields are written, and
//! every read of it that hands over ownership is an acquire load.

use core::sync::atomic::{AtomicU32, Ordering};

/// Number of slots in the page (`ACRN_IO_REQUEST_MAX`); the slot index is the vCPU ID.
pub const ACRN_IO_REQUEST_MAX: usize = 16;

/// Filled by the hypervisor; the Service VM must pick it up.
pub const ACRN_IOREQ_STATE_PENDING: u32 = 0;
/// Handled; the hypervisor will finish the access and free the slot.
pub const ACRN_IOREQ_STATE_COMPLETE: u32 = 1;
/// Handed to an I/O request client.
pub const ACRN_IOREQ_STATE_PROCESSING: u32 = 2;
/// Unused; the hypervisor may fill it.
pub const ACRN_IOREQ_STATE_FREE: u32 = 3;

/// Port I/O request ([`PioRequest`]).
pub const ACRN_IOREQ_TYPE_PORTIO: u32 = 0;
/// MMIO request ([`MmioRequest`]).
pub const ACRN_IOREQ_TYPE_MMIO: u32 = 1;
/// PCI configuration request ([`PciRequest`]); only the HSM creates these, from 0xCF8/0xCFC.
pub const ACRN_IOREQ_TYPE_PCICFG: u32 = 2;
/// Write to a write-protected page (hypervisor only; not in the Linux uapi).
pub const ACRN_IOREQ_TYPE_WP: u32 = 3;

/// The guest reads; the Service VM supplies the value.
pub const ACRN_IOREQ_DIR_READ: u32 = 0;
/// The guest writes; the value is in the request.
pub const ACRN_IOREQ_DIR_WRITE: u32 = 1;

/// State of a slot, decoded from [`IoRequest::processed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum IoReqState {
    /// [`ACRN_IOREQ_STATE_PENDING`]
    Pending = ACRN_IOREQ_STATE_PENDING,
    /// [`ACRN_IOREQ_STATE_COMPLETE`]
    Complete = ACRN_IOREQ_STATE_COMPLETE,
    /// [`ACRN_IOREQ_STATE_PROCESSING`]
    Processing = ACRN_IOREQ_STATE_PROCESSING,
    /// [`ACRN_IOREQ_STATE_FREE`]
    Free = ACRN_IOREQ_STATE_FREE,
}

impl IoReqState {
    /// Decodes a raw state; `None` for values outside the ABI.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            ACRN_IOREQ_STATE_PENDING => Self::Pending,
            ACRN_IOREQ_STATE_COMPLETE => Self::Complete,
            ACRN_IOREQ_STATE_PROCESSING => Self::Processing,
            ACRN_IOREQ_STATE_FREE => Self::Free,
            _ => return None,
        })
    }
}

/// Type of a request, decoded from [`IoRequest::r#type`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum IoReqType {
    /// [`ACRN_IOREQ_TYPE_PORTIO`]
    PortIo = ACRN_IOREQ_TYPE_PORTIO,
    /// [`ACRN_IOREQ_TYPE_MMIO`]
    Mmio = ACRN_IOREQ_TYPE_MMIO,
    /// [`ACRN_IOREQ_TYPE_PCICFG`]
    PciCfg = ACRN_IOREQ_TYPE_PCICFG,
    /// [`ACRN_IOREQ_TYPE_WP`]
    Wp = ACRN_IOREQ_TYPE_WP,
}

impl IoReqType {
    /// Decodes a raw type; `None` for values outside the ABI.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            ACRN_IOREQ_TYPE_PORTIO => Self::PortIo,
            ACRN_IOREQ_TYPE_MMIO => Self::Mmio,
            ACRN_IOREQ_TYPE_PCICFG => Self::PciCfg,
            ACRN_IOREQ_TYPE_WP => Self::Wp,
            _ => return None,
        })
    }
}

/// `struct acrn_mmio_request` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmioRequest {
    /// `ACRN_IOREQ_DIR_*`
    pub direction: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Guest-physical address of the access.
    pub address: u64,
    /// Access size in bytes (1, 2, 4 or 8).
    pub size: u64,
    /// Value written, or value to return for a read.
    pub value: u64,
}

/// `struct acrn_pio_request` (32 bytes, 4 bytes of tail padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PioRequest {
    /// `ACRN_IOREQ_DIR_*`
    pub direction: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Port number.
    pub address: u64,
    /// Access size in bytes (1, 2 or 4).
    pub size: u64,
    /// Value written, or value to return for a read.
    pub value: u32,
}

/// `struct acrn_pci_request` (48 bytes); its first 28 bytes overlay [`PioRequest`] on purpose.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciRequest {
    /// `ACRN_IOREQ_DIR_*`
    pub direction: u32,
    /// Must be 0.
    pub reserved: [u32; 3],
    /// Access size in bytes.
    pub size: u64,
    /// Value written, or value to return for a read.
    pub value: u32,
    /// PCI bus.
    pub bus: u32,
    /// PCI device.
    pub dev: u32,
    /// PCI function.
    pub func: u32,
    /// Configuration-space offset (including extended-register bits).
    pub reg: u32,
}

/// The `reqs` union of [`IoRequest`] (64 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub union IoRequestPayload {
    /// Valid when the type is [`ACRN_IOREQ_TYPE_PORTIO`].
    pub pio_request: PioRequest,
    /// Valid when the type is [`ACRN_IOREQ_TYPE_PCICFG`].
    pub pci_request: PciRequest,
    /// Valid when the type is [`ACRN_IOREQ_TYPE_MMIO`] or [`ACRN_IOREQ_TYPE_WP`].
    pub mmio_request: MmioRequest,
    /// Raw view.
    pub data: [u64; 8],
}

impl Default for IoRequestPayload {
    fn default() -> Self {
        Self { data: [0; 8] }
    }
}

impl core::fmt::Debug for IoRequestPayload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: every bit pattern is a valid [u64; 8].
        let data = unsafe { self.data };
        f.debug_struct("IoRequestPayload")
            .field("data", &data)
            .finish()
    }
}

/// `struct acrn_io_request`: one 256-byte, 256-aligned slot of the I/O request page.
#[repr(C, align(256))]
#[derive(Debug)]
pub struct IoRequest {
    /// `ACRN_IOREQ_TYPE_*`, written by the hypervisor (and by the HSM for PCICFG rewrites).
    pub r#type: u32,
    /// 1 when the hypervisor polls for COMPLETE; the HSM then must not send
    /// `HC_NOTIFY_REQUEST_FINISH`.
    pub completion_polling: u32,
    /// Reserved.
    pub reserved0: [u32; 14],
    /// The request itself, at offset 64.
    pub reqs: IoRequestPayload,
    /// Reserved.
    pub reserved1: u32,
    /// 1 if a kernel (non-default) client owns the request, written by the HSM. ACRN declares it
    /// `int32_t`, Linux `__u32`.
    pub kernel_handled: u32,
    /// `ACRN_IOREQ_STATE_*`; the ownership token, so it is only touched atomically.
    pub processed: AtomicU32,
}

impl IoRequest {
    /// A zeroed slot in the FREE state.
    pub const fn new_free() -> Self {
        Self {
            r#type: 0,
            completion_polling: 0,
            reserved0: [0; 14],
            reqs: IoRequestPayload { data: [0; 8] },
            reserved1: 0,
            kernel_handled: 0,
            processed: AtomicU32::new(ACRN_IOREQ_STATE_FREE),
        }
    }

    /// Acquire-loads the state; the raw value is returned when it is outside the ABI.
    pub fn state(&self) -> Result<IoReqState, u32> {
        let raw = self.processed.load(Ordering::Acquire);
        IoReqState::from_raw(raw).ok_or(raw)
    }

    /// Release-stores the state, publishing every earlier write to the slot.
    pub fn set_state(&self, state: IoReqState) {
        self.processed.store(state as u32, Ordering::Release);
    }
}

impl Default for IoRequest {
    fn default() -> Self {
        Self::new_free()
    }
}

/// `struct acrn_io_request_buffer`: the 4 KiB page of [`ACRN_IO_REQUEST_MAX`] slots.
#[repr(C, align(256))]
#[derive(Debug, Default)]
pub struct IoRequestBuffer {
    /// Slot `i` belongs to vCPU `i`.
    pub req_slot: [IoRequest; ACRN_IO_REQUEST_MAX],
}

impl IoRequestBuffer {
    /// A page with every slot FREE.
    pub const fn new() -> Self {
        Self {
            req_slot: [const { IoRequest::new_free() }; ACRN_IO_REQUEST_MAX],
        }
    }
}
