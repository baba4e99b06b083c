//! Shared ring buffers (sbuf), asynchronous I/O and VM events.

/// `SBUF_MAGIC`.
pub const SBUF_MAGIC: u64 = 0x5aa5_7aa7_1aa1_3aa3;
/// `SBUF_MAX_SIZE`.
pub const SBUF_MAX_SIZE: u32 = 1 << 22;
/// `SBUF_HEAD_SIZE`: element data starts this many bytes after the header.
pub const SBUF_HEAD_SIZE: usize = 64;
/// `OVERRUN_CNT_EN`.
pub const SBUF_OVERRUN_CNT_EN: u32 = 1 << 0;
/// `OVERWRITE_EN`.
pub const SBUF_OVERWRITE_EN: u32 = 1 << 1;

/// `ACRN_TRACE` (per pCPU).
pub const ACRN_SBUF_TRACE: u32 = 0;
/// `ACRN_HVLOG` (per pCPU).
pub const ACRN_SBUF_HVLOG: u32 = 1;
/// `ACRN_SEP` (per pCPU).
pub const ACRN_SBUF_SEP: u32 = 2;
/// `ACRN_SOCWATCH` (per pCPU).
pub const ACRN_SBUF_SOCWATCH: u32 = 3;
/// `ACRN_SBUF_PER_PCPU_ID_MAX`.
pub const ACRN_SBUF_PER_PCPU_ID_MAX: u32 = 4;
/// `ACRN_ASYNCIO` (per VM).
pub const ACRN_SBUF_ASYNCIO: u32 = 64;
/// `ACRN_VM_EVENT` (per VM).
pub const ACRN_SBUF_VM_EVENT: u32 = 65;

/// `struct shared_buf` (64-byte header). Empty when `head == tail`; full when
/// `(tail + ele_size) % size == head`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedBuf {
    /// [`SBUF_MAGIC`].
    pub magic: u64,
    /// Number of elements.
    pub ele_num: u32,
    /// Element size.
    pub ele_size: u32,
    /// Read offset from the data base.
    pub head: u32,
    /// Write offset from the data base.
    pub tail: u32,
    /// `SBUF_OVERRUN_CNT_EN` | `SBUF_OVERWRITE_EN`.
    pub flags: u32,
    /// Reserved.
    pub reserved: u32,
    /// Overruns counted.
    pub overrun_cnt: u32,
    /// `ele_num * ele_size`.
    pub size: u32,
    /// Pads the header to 64 bytes.
    pub padding: [u32; 6],
}

/// `struct acrn_sbuf_param` (16 bytes): argument of `HC_SETUP_SBUF`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnSbufParam {
    /// pCPU for per-pCPU buffers.
    pub cpu_id: u16,
    /// Reserved.
    pub reserved: u16,
    /// `ACRN_SBUF_*`.
    pub sbuf_id: u32,
    /// Service VM GPA of the buffer.
    pub gpa: u64,
}

/// `ACRN_ASYNCIO_PIO`.
pub const ACRN_ASYNCIO_PIO: u32 = 1;
/// `ACRN_ASYNCIO_MMIO`.
pub const ACRN_ASYNCIO_MMIO: u32 = 2;

/// `struct acrn_asyncio_info` (32 bytes): argument of `HC_ASYNCIO_(DE)ASSIGN`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnAsyncioInfo {
    /// `ACRN_ASYNCIO_PIO` or `ACRN_ASYNCIO_MMIO`.
    pub r#type: u32,
    /// Non-zero: the written value must equal `data`.
    pub match_data: u32,
    /// Port or GPA.
    pub addr: u64,
    /// Opaque value pushed into the asyncio sbuf on a match.
    pub fd: u64,
    /// Value to match.
    pub data: u64,
}

/// `VM_EVENT_RTC_CHG`.
pub const VM_EVENT_RTC_CHG: u32 = 0;
/// `VM_EVENT_POWEROFF`.
pub const VM_EVENT_POWEROFF: u32 = 1;
/// `VM_EVENT_TRIPLE_FAULT`.
pub const VM_EVENT_TRIPLE_FAULT: u32 = 2;

/// `struct vm_event` (32 bytes), an element of the VM-event sbuf.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmEvent {
    /// `VM_EVENT_*`.
    pub r#type: u32,
    /// Event-specific data.
    pub event_data: [u8; 28],
}

/// `struct rtc_change_event_data` (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RtcChangeEventData {
    pub last_time: i64,
    pub delta_time: i64,
}
