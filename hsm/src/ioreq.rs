//! The I/O request page and its clients.

use acrn_abi::ioreq::*;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::{addr_of, addr_of_mut, NonNull};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use spin::RwLock;

use crate::{HsmError, Result};

/// The page must be 4 KiB-aligned for the hypervisor to map it; the ABI type is only 256-aligned.
#[repr(C, align(4096))]
struct AlignedPage(IoRequestBuffer);

/// The I/O request page the HSM hands to the hypervisor. Slots are only reached through raw
/// pointers: the hypervisor writes them concurrently, and ownership of a slot passes through its
/// atomic `processed` field.
pub(crate) struct IoReqPage {
    page: NonNull<AlignedPage>,
}

// SAFETY: the page is plain memory; all access goes through the slot ownership protocol.
unsafe impl Send for IoReqPage {}
// SAFETY: as above.
unsafe impl Sync for IoReqPage {}

impl IoReqPage {
    pub(crate) fn new() -> Self {
        let page = Box::new(AlignedPage(IoRequestBuffer::new()));
        Self {
            page: NonNull::from(Box::leak(page)),
        }
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.page.as_ptr().cast_const().cast()
    }

    /// Raw pointer to slot `vcpu` (< 16).
    fn slot(&self, vcpu: usize) -> *mut IoRequest {
        // SAFETY: the page is live for `self`'s lifetime and `vcpu` is bounds-checked by the
        // array index on a place expression that creates no reference.
        unsafe { addr_of_mut!((*self.page.as_ptr()).0.req_slot[vcpu]) }
    }

    fn processed(&self, vcpu: usize) -> &AtomicU32 {
        // SAFETY: a shared reference to an atomic is fine while others write it atomically.
        unsafe { &*addr_of!((*self.slot(vcpu)).processed) }
    }

    pub(crate) fn state(&self, vcpu: usize) -> u32 {
        self.processed(vcpu).load(Ordering::Acquire)
    }

    pub(crate) fn set_state(&self, vcpu: usize, state: u32) {
        self.processed(vcpu).store(state, Ordering::Release);
    }

    /// Reads the request in slot `vcpu`. The caller must own the slot (PENDING or PROCESSING).
    pub(crate) fn read(&self, vcpu: usize) -> IoAccess {
        let s = self.slot(vcpu);
        // SAFETY: the caller owns the slot, so nobody writes it concurrently.
        let (ty, reqs) = unsafe {
            (
                addr_of!((*s).r#type).read_volatile(),
                addr_of!((*s).reqs).read_volatile(),
            )
        };
        IoAccess::decode(vcpu as u16, ty, &reqs)
    }

    /// Rewrites the request in slot `vcpu` (PCI config rewrite). The caller must own the slot.
    pub(crate) fn write_request(&self, vcpu: usize, ty: u32, reqs: IoRequestPayload) {
        let s = self.slot(vcpu);
        // SAFETY: the caller owns the slot.
        unsafe {
            addr_of_mut!((*s).r#type).write_volatile(ty);
            addr_of_mut!((*s).reqs).write_volatile(reqs);
        }
    }

    pub(crate) fn raw_payload(&self, vcpu: usize) -> (u32, IoRequestPayload) {
        let s = self.slot(vcpu);
        // SAFETY: the caller owns the slot.
        unsafe {
            (
                addr_of!((*s).r#type).read_volatile(),
                addr_of!((*s).reqs).read_volatile(),
            )
        }
    }

    pub(crate) fn set_kernel_handled(&self, vcpu: usize, kernel: bool) {
        // SAFETY: the caller owns the slot.
        unsafe { addr_of_mut!((*self.slot(vcpu)).kernel_handled).write_volatile(kernel.into()) }
    }

    pub(crate) fn completion_polling(&self, vcpu: usize) -> bool {
        // SAFETY: the caller owns the slot.
        unsafe { addr_of!((*self.slot(vcpu)).completion_polling).read_volatile() != 0 }
    }

    /// Stores the value of a read into slot `vcpu`, in the layout of its request type.
    pub(crate) fn write_read_value(&self, vcpu: usize, value: u64) {
        let (ty, mut reqs) = self.raw_payload(vcpu);
        // SAFETY: every view of the union is plain integers.
        unsafe {
            match ty {
                ACRN_IOREQ_TYPE_PORTIO if reqs.pio_request.direction == ACRN_IOREQ_DIR_READ => {
                    reqs.pio_request.value = value as u32
                }
                ACRN_IOREQ_TYPE_PCICFG if reqs.pci_request.direction == ACRN_IOREQ_DIR_READ => {
                    reqs.pci_request.value = value as u32
                }
                ACRN_IOREQ_TYPE_MMIO | ACRN_IOREQ_TYPE_WP
                    if reqs.mmio_request.direction == ACRN_IOREQ_DIR_READ =>
                {
                    reqs.mmio_request.value = value
                }
                _ => return,
            }
        }
        self.write_request(vcpu, ty, reqs);
    }
}

impl Drop for IoReqPage {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box` in `new` and freed only here.
        drop(unsafe { Box::from_raw(self.page.as_ptr()) });
    }
}

/// Kind of an address range a client can claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// Port I/O.
    Pio,
    /// Memory-mapped I/O.
    Mmio,
}

/// An address range claimed by a kernel client, `start..=end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoRange {
    /// PIO or MMIO.
    pub kind: RangeKind,
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
}

/// What a request accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoKind {
    /// Port I/O at `addr`.
    Pio,
    /// MMIO at guest-physical `addr`.
    Mmio,
    /// PCI configuration space (rewritten from 0xCFC-0xCFF by the HSM); `addr` is `reg`.
    PciCfg {
        /// Bus.
        bus: u8,
        /// Device.
        dev: u8,
        /// Function.
        func: u8,
    },
    /// Write to a write-protected page at `addr`.
    WriteProtect,
    /// A type outside the ABI (handled like MMIO by the default client).
    Unknown(u32),
}

/// A decoded I/O request, handed to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    /// The vCPU (slot) that made it.
    pub vcpu: u16,
    /// What is accessed.
    pub kind: IoKind,
    /// True for a guest write.
    pub write: bool,
    /// Port, GPA, or PCI register.
    pub addr: u64,
    /// Access size in bytes, as the hypervisor reported it.
    pub size: u64,
    /// The value written, or (set by the handler) the value a read returns.
    pub value: u64,
    /// Dispatch generation of the slot: identifies this request among the vCPU's successive
    /// requests, so a late completion cannot complete a newer one.
    pub seq: u32,
}

impl IoAccess {
    fn decode(vcpu: u16, ty: u32, reqs: &IoRequestPayload) -> Self {
        // SAFETY: every view of the union is plain integers.
        unsafe {
            match ty {
                ACRN_IOREQ_TYPE_PORTIO => {
                    let r = reqs.pio_request;
                    Self::new(
                        vcpu,
                        IoKind::Pio,
                        r.direction,
                        r.address,
                        r.size,
                        r.value.into(),
                    )
                }
                ACRN_IOREQ_TYPE_PCICFG => {
                    let r = reqs.pci_request;
                    let kind = IoKind::PciCfg {
                        bus: r.bus as u8,
                        dev: r.dev as u8,
                        func: r.func as u8,
                    };
                    Self::new(
                        vcpu,
                        kind,
                        r.direction,
                        r.reg.into(),
                        r.size,
                        r.value.into(),
                    )
                }
                other => {
                    let r = reqs.mmio_request;
                    let kind = match other {
                        ACRN_IOREQ_TYPE_MMIO => IoKind::Mmio,
                        ACRN_IOREQ_TYPE_WP => IoKind::WriteProtect,
                        _ => IoKind::Unknown(other),
                    };
                    Self::new(vcpu, kind, r.direction, r.address, r.size, r.value)
                }
            }
        }
    }

    fn new(vcpu: u16, kind: IoKind, dir: u32, addr: u64, size: u64, value: u64) -> Self {
        let write = dir == ACRN_IOREQ_DIR_WRITE;
        Self {
            vcpu,
            kind,
            write,
            addr,
            size,
            value: if write { value } else { 0 },
            seq: 0,
        }
    }

    /// The last byte accessed, for range matching; never overflows.
    pub(crate) fn last_addr(&self) -> u64 {
        self.addr.saturating_add(self.size.max(1) - 1)
    }

    pub(crate) fn range_kind(&self) -> Option<RangeKind> {
        match self.kind {
            IoKind::Pio => Some(RangeKind::Pio),
            IoKind::Mmio => Some(RangeKind::Mmio),
            _ => None,
        }
    }
}

/// A kernel I/O request client's emulation code. For reads it sets `access.value`.
pub trait IoHandler: Send + Sync {
    /// Emulates one access. Called with the request owned by this client.
    fn handle(&self, access: &mut IoAccess);
}

/// An I/O request client of one VM: the default client (the device model, which fetches and
/// completes requests itself) or a kernel client with a handler and claimed address ranges.
pub struct IoClient {
    id: u16,
    name: String,
    handler: Option<Box<dyn IoHandler>>,
    ranges: RwLock<Vec<IoRange>>,
    /// Bit `i`: the request of vCPU `i` is PROCESSING and owned by this client. A hint for
    /// scanning; ownership itself is the VM's per-slot token.
    pending: AtomicU32,
    destroyed: AtomicBool,
}

impl core::fmt::Debug for IoClient {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("IoClient")
            .field("name", &self.name)
            .field("default", &self.is_default())
            .field("pending", &self.pending())
            .finish()
    }
}

impl IoClient {
    pub(crate) fn new(id: u16, name: String, handler: Option<Box<dyn IoHandler>>) -> Self {
        Self {
            id,
            name,
            handler,
            ranges: RwLock::new(Vec::new()),
            pending: AtomicU32::new(0),
            destroyed: AtomicBool::new(false),
        }
    }

    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for the default client (no handler; gets every unclaimed request).
    pub fn is_default(&self) -> bool {
        self.handler.is_none()
    }

    /// Bitmap of vCPUs whose request this client owns.
    pub fn pending(&self) -> u16 {
        self.pending.load(Ordering::Acquire) as u16
    }

    /// True once the client was destroyed; it receives no more requests.
    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }

    /// Claims `start..=end` of `kind`. Requests that fall wholly inside go to this client.
    pub fn add_range(&self, kind: RangeKind, start: u64, end: u64) -> Result<()> {
        if self.is_default() {
            return Err(HsmError::InvalidArgument(
                "the default client claims no ranges",
            ));
        }
        if start > end {
            return Err(HsmError::InvalidArgument("range start is after its end"));
        }
        self.ranges.write().push(IoRange { kind, start, end });
        Ok(())
    }

    /// Releases one claim made by [`IoClient::add_range`] with the same arguments.
    pub fn remove_range(&self, kind: RangeKind, start: u64, end: u64) -> Result<()> {
        let mut ranges = self.ranges.write();
        let want = IoRange { kind, start, end };
        let i = ranges
            .iter()
            .position(|r| *r == want)
            .ok_or(HsmError::InvalidArgument(
                "range not claimed by this client",
            ))?;
        ranges.swap_remove(i);
        Ok(())
    }

    /// The claimed ranges.
    pub fn ranges(&self) -> Vec<IoRange> {
        self.ranges.read().clone()
    }

    pub(crate) fn claims(&self, a: &IoAccess) -> bool {
        let Some(kind) = a.range_kind() else {
            return false;
        };
        let last = a.last_addr();
        self.ranges
            .read()
            .iter()
            .any(|r| r.kind == kind && r.start <= a.addr && last <= r.end)
    }

    pub(crate) fn handler(&self) -> Option<&dyn IoHandler> {
        self.handler.as_deref()
    }

    pub(crate) fn mark_pending(&self, vcpu: usize) {
        self.pending.fetch_or(1 << vcpu, Ordering::AcqRel);
    }

    pub(crate) fn id(&self) -> u16 {
        self.id
    }

    pub(crate) fn clear_pending(&self, vcpu: usize) {
        self.pending.fetch_and(!(1u32 << vcpu), Ordering::AcqRel);
    }

    pub(crate) fn take_all(&self) -> u32 {
        self.pending.swap(0, Ordering::AcqRel)
    }

    pub(crate) fn mark_destroyed(&self) {
        self.destroyed.store(true, Ordering::Release);
    }
}
