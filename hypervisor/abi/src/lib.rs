//! The public interface of the ACRN-compatible hypervisor, shared by the hypervisor, the HSM and
//! the test guests.
//!
//! Everything here is types and constants: hypercall IDs ([`hypercall`]), errno values
//! ([`errno`]), every structure exchanged through guest memory with its exact `#[repr(C)]` layout,
//! and the Linux `/dev/acrn_hsm` ioctl numbers ([`ioctl`]). Layouts follow ACRN's
//! `hypervisor/include/public/acrn_common.h` and Linux's `include/uapi/linux/acrn.h`; host tests
//! check every size and offset against both. All structures are little-endian x86-64.
//!
//! Field names keep the C names (using `r#type` where C says `type`) so that code can be checked
//! against ACRN's headers by eye.
#![no_std]
#![deny(missing_docs)]

pub mod cpuid;
pub mod device;
pub mod errno;
pub mod hypercall;
pub mod ioctl;
pub mod ioreq;
pub mod irq;
pub mod memory;
pub mod misc;
pub mod pm;
pub mod regs;
pub mod sbuf;
pub mod vm;

pub use device::{AcrnMmiodev, AcrnPcidev, AcrnVdev, MmiodevResource};
pub use ioreq::{
    IoRequest, IoRequestBuffer, IoRequestPayload, MmioRequest, PciRequest, PioRequest,
};
pub use irq::{AcrnIntrMonitor, AcrnIrqlineOps, AcrnMsiEntry, AcrnPtdevIrq, HcPtdevIrq};
pub use memory::{AcrnVmMemmap, SetRegions, VmMemoryRegion};
pub use regs::{AcrnDescriptorPtr, AcrnGpRegs, AcrnRegs, AcrnVcpuRegs};
pub use vm::{AcrnVmCreation, GuestFlags, VmState};

/// Size of a guest page; the I/O request buffer and many hypercall arguments are one page.
pub const PAGE_SIZE: usize = 4096;
