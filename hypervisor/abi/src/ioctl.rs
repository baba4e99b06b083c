//! The Linux `/dev/acrn_hsm` ioctl interface: request numbers (computed like Linux's `_IOC`
//! macros on x86-64) and the ioctl-only argument structures.

use crate::device::{AcrnMmiodev, AcrnPcidev, AcrnVdev};
use crate::irq::{AcrnMsiEntry, AcrnPtdevIrq};
use crate::memory::AcrnVmMemmap;
use crate::regs::AcrnVcpuRegs;
use crate::vm::AcrnVmCreation;
use bitflags::bitflags;
use core::mem::size_of;

/// `_IOC_NONE`.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE` (user space writes, the kernel reads).
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ` (the kernel writes back).
pub const IOC_READ: u32 = 2;

const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_SIZEMASK: usize = (1 << 14) - 1;

/// `_IOC(dir, type, nr, size)`. Sizes above the 14-bit field fail at compile time when used in
/// a constant.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(size <= IOC_SIZEMASK, "ioctl argument too large");
    (dir << IOC_DIRSHIFT)
        | (ty << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IO(type, nr)`.
pub const fn io(ty: u32, nr: u32) -> u32 {
    ioc(IOC_NONE, ty, nr, 0)
}
/// `_IOR(type, nr, T)` with `size = size_of::<T>()`.
pub const fn ior(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}
/// `_IOW(type, nr, T)` with `size = size_of::<T>()`.
pub const fn iow(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_WRITE, ty, nr, size)
}
/// `_IOWR(type, nr, T)` with `size = size_of::<T>()`.
pub const fn iowr(ty: u32, nr: u32, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}

/// `ACRN_IOCTL_TYPE`: the ioctl "magic" of the HSM.
pub const ACRN_IOCTL_TYPE: u32 = 0xA2;
const T: u32 = ACRN_IOCTL_TYPE;

/// Creates the fd's VM; in/out [`AcrnVmCreation`].
pub const ACRN_IOCTL_CREATE_VM: u32 = iowr(T, 0x10, size_of::<AcrnVmCreation>());
/// Destroys the fd's VM.
pub const ACRN_IOCTL_DESTROY_VM: u32 = io(T, 0x11);
/// Starts the VM.
pub const ACRN_IOCTL_START_VM: u32 = io(T, 0x12);
/// Pauses the VM.
pub const ACRN_IOCTL_PAUSE_VM: u32 = io(T, 0x13);
/// Resets a paused VM.
pub const ACRN_IOCTL_RESET_VM: u32 = io(T, 0x15);
/// Sets a vCPU's registers from an [`AcrnVcpuRegs`].
pub const ACRN_IOCTL_SET_VCPU_REGS: u32 = iow(T, 0x16, size_of::<AcrnVcpuRegs>());
/// Injects an [`AcrnMsiEntry`].
pub const ACRN_IOCTL_INJECT_MSI: u32 = iow(T, 0x23, size_of::<AcrnMsiEntry>());
/// Argument: user VA of an interrupt-monitor page (`unsigned long`).
pub const ACRN_IOCTL_VM_INTR_MONITOR: u32 = iow(T, 0x24, size_of::<u64>());
/// Argument: the packed [`crate::irq::AcrnIrqlineOps`] *value*.
pub const ACRN_IOCTL_SET_IRQLINE: u32 = iow(T, 0x25, size_of::<u64>());
/// Completes the default client's request of a vCPU ([`AcrnIoreqNotify`]).
pub const ACRN_IOCTL_NOTIFY_REQUEST_FINISH: u32 = iow(T, 0x31, size_of::<AcrnIoreqNotify>());
/// Creates the default I/O request client.
pub const ACRN_IOCTL_CREATE_IOREQ_CLIENT: u32 = io(T, 0x32);
/// Blocks until the default client has requests.
pub const ACRN_IOCTL_ATTACH_IOREQ_CLIENT: u32 = io(T, 0x33);
/// Destroys the default client.
pub const ACRN_IOCTL_DESTROY_IOREQ_CLIENT: u32 = io(T, 0x34);
/// Force-completes pending requests (before a reset).
pub const ACRN_IOCTL_CLEAR_VM_IOREQ: u32 = io(T, 0x35);
/// Maps an [`AcrnVmMemmap`].
pub const ACRN_IOCTL_SET_MEMSEG: u32 = iow(T, 0x41, size_of::<AcrnVmMemmap>());
/// Unmaps an MMIO [`AcrnVmMemmap`].
pub const ACRN_IOCTL_UNSET_MEMSEG: u32 = iow(T, 0x42, size_of::<AcrnVmMemmap>());
/// Routes a pass-through INTx ([`AcrnPtdevIrq`]).
pub const ACRN_IOCTL_SET_PTDEV_INTR: u32 = iow(T, 0x53, size_of::<AcrnPtdevIrq>());
/// Removes a pass-through INTx route.
pub const ACRN_IOCTL_RESET_PTDEV_INTR: u32 = iow(T, 0x54, size_of::<AcrnPtdevIrq>());
/// Assigns an [`AcrnPcidev`].
pub const ACRN_IOCTL_ASSIGN_PCIDEV: u32 = iow(T, 0x55, size_of::<AcrnPcidev>());
/// Deassigns an [`AcrnPcidev`].
pub const ACRN_IOCTL_DEASSIGN_PCIDEV: u32 = iow(T, 0x56, size_of::<AcrnPcidev>());
/// Assigns an [`AcrnMmiodev`].
pub const ACRN_IOCTL_ASSIGN_MMIODEV: u32 = iow(T, 0x57, size_of::<AcrnMmiodev>());
/// Deassigns an [`AcrnMmiodev`].
pub const ACRN_IOCTL_DEASSIGN_MMIODEV: u32 = iow(T, 0x58, size_of::<AcrnMmiodev>());
/// Creates a hypervisor-emulated [`AcrnVdev`].
pub const ACRN_IOCTL_CREATE_VDEV: u32 = iow(T, 0x59, size_of::<AcrnVdev>());
/// Destroys an [`AcrnVdev`].
pub const ACRN_IOCTL_DESTROY_VDEV: u32 = iow(T, 0x5A, size_of::<AcrnVdev>());
/// In: PM command word; out (same pointer): count or P/C-state data.
pub const ACRN_IOCTL_PM_GET_CPU_STATE: u32 = iowr(T, 0x60, size_of::<u64>());
/// Assigns or deassigns an [`AcrnIoeventfd`].
pub const ACRN_IOCTL_IOEVENTFD: u32 = iow(T, 0x70, size_of::<AcrnIoeventfd>());
/// Assigns or deassigns an [`AcrnIrqfd`].
pub const ACRN_IOCTL_IRQFD: u32 = iow(T, 0x71, size_of::<AcrnIrqfd>());
/// acrn-dm / acrn-kernel only: user VA of the asyncio sbuf page.
pub const ACRN_IOCTL_SETUP_ASYNCIO: u32 = iow(T, 0x90, size_of::<u64>());
/// acrn-dm only: user VA of the VM-event sbuf page.
pub const ACRN_IOCTL_SETUP_VM_EVENT_RING: u32 = iow(T, 0xa0, size_of::<u64>());
/// acrn-dm only: an eventfd signalled on VM events.
pub const ACRN_IOCTL_SETUP_VM_EVENT_FD: u32 = iow(T, 0xa1, size_of::<i32>());

/// Every ioctl with its Linux name.
pub const IOCTLS: &[(u32, &str)] = &[
    (ACRN_IOCTL_CREATE_VM, "ACRN_IOCTL_CREATE_VM"),
    (ACRN_IOCTL_DESTROY_VM, "ACRN_IOCTL_DESTROY_VM"),
    (ACRN_IOCTL_START_VM, "ACRN_IOCTL_START_VM"),
    (ACRN_IOCTL_PAUSE_VM, "ACRN_IOCTL_PAUSE_VM"),
    (ACRN_IOCTL_RESET_VM, "ACRN_IOCTL_RESET_VM"),
    (ACRN_IOCTL_SET_VCPU_REGS, "ACRN_IOCTL_SET_VCPU_REGS"),
    (ACRN_IOCTL_INJECT_MSI, "ACRN_IOCTL_INJECT_MSI"),
    (ACRN_IOCTL_VM_INTR_MONITOR, "ACRN_IOCTL_VM_INTR_MONITOR"),
    (ACRN_IOCTL_SET_IRQLINE, "ACRN_IOCTL_SET_IRQLINE"),
    (
        ACRN_IOCTL_NOTIFY_REQUEST_FINISH,
        "ACRN_IOCTL_NOTIFY_REQUEST_FINISH",
    ),
    (
        ACRN_IOCTL_CREATE_IOREQ_CLIENT,
        "ACRN_IOCTL_CREATE_IOREQ_CLIENT",
    ),
    (
        ACRN_IOCTL_ATTACH_IOREQ_CLIENT,
        "ACRN_IOCTL_ATTACH_IOREQ_CLIENT",
    ),
    (
        ACRN_IOCTL_DESTROY_IOREQ_CLIENT,
        "ACRN_IOCTL_DESTROY_IOREQ_CLIENT",
    ),
    (ACRN_IOCTL_CLEAR_VM_IOREQ, "ACRN_IOCTL_CLEAR_VM_IOREQ"),
    (ACRN_IOCTL_SET_MEMSEG, "ACRN_IOCTL_SET_MEMSEG"),
    (ACRN_IOCTL_UNSET_MEMSEG, "ACRN_IOCTL_UNSET_MEMSEG"),
    (ACRN_IOCTL_SET_PTDEV_INTR, "ACRN_IOCTL_SET_PTDEV_INTR"),
    (ACRN_IOCTL_RESET_PTDEV_INTR, "ACRN_IOCTL_RESET_PTDEV_INTR"),
    (ACRN_IOCTL_ASSIGN_PCIDEV, "ACRN_IOCTL_ASSIGN_PCIDEV"),
    (ACRN_IOCTL_DEASSIGN_PCIDEV, "ACRN_IOCTL_DEASSIGN_PCIDEV"),
    (ACRN_IOCTL_ASSIGN_MMIODEV, "ACRN_IOCTL_ASSIGN_MMIODEV"),
    (ACRN_IOCTL_DEASSIGN_MMIODEV, "ACRN_IOCTL_DEASSIGN_MMIODEV"),
    (ACRN_IOCTL_CREATE_VDEV, "ACRN_IOCTL_CREATE_VDEV"),
    (ACRN_IOCTL_DESTROY_VDEV, "ACRN_IOCTL_DESTROY_VDEV"),
    (ACRN_IOCTL_PM_GET_CPU_STATE, "ACRN_IOCTL_PM_GET_CPU_STATE"),
    (ACRN_IOCTL_IOEVENTFD, "ACRN_IOCTL_IOEVENTFD"),
    (ACRN_IOCTL_IRQFD, "ACRN_IOCTL_IRQFD"),
    (ACRN_IOCTL_SETUP_ASYNCIO, "ACRN_IOCTL_SETUP_ASYNCIO"),
    (
        ACRN_IOCTL_SETUP_VM_EVENT_RING,
        "ACRN_IOCTL_SETUP_VM_EVENT_RING",
    ),
    (ACRN_IOCTL_SETUP_VM_EVENT_FD, "ACRN_IOCTL_SETUP_VM_EVENT_FD"),
];

/// `struct acrn_ioreq_notify` (8 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnIoreqNotify {
    /// Ignored by the HSM (the fd's VM is used).
    pub vmid: u16,
    /// Must be 0.
    pub reserved: u16,
    /// vCPU whose request is complete.
    pub vcpu: u32,
}

bitflags! {
    /// `ACRN_IOEVENTFD_FLAG_*`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct IoeventfdFlags: u32 {
        /// Port I/O (otherwise MMIO).
        const PIO = 0x01;
        /// Signal only when the written value equals `data`.
        const DATAMATCH = 0x02;
        /// Remove instead of add.
        const DEASSIGN = 0x04;
        /// acrn-dm / acrn-kernel only: route through the hypervisor's asyncio path.
        const ASYNCIO = 0x08;
    }
}

/// `struct acrn_ioeventfd` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnIoeventfd {
    /// eventfd file descriptor (uapi: `__u32`).
    pub fd: i32,
    /// [`IoeventfdFlags`] bits.
    pub flags: u32,
    /// Port or GPA.
    pub addr: u64,
    /// Access length: 1, 2, 4 or 8.
    pub len: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Value to match with [`IoeventfdFlags::DATAMATCH`].
    pub data: u64,
}

/// `ACRN_IRQFD_FLAG_DEASSIGN`.
pub const ACRN_IRQFD_FLAG_DEASSIGN: u32 = 0x01;

/// `struct acrn_irqfd` (24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcrnIrqfd {
    /// eventfd file descriptor.
    pub fd: i32,
    /// `ACRN_IRQFD_FLAG_*`.
    pub flags: u32,
    /// MSI injected when the eventfd is signalled.
    pub msi: AcrnMsiEntry,
}
