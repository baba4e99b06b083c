//! Hypercall IDs and the calling convention.
//!
//! # Calling convention
//!
//! * The Service VM (or a guest with the right guest flags) executes `VMCALL` on Intel VMX or
//!   `VMMCALL` on AMD SVM, at CPL 0.
//! * **R8** holds the hypercall ID (a 32-bit value, `0x80xxxxxx`), **RDI** holds `param1` and
//!   **RSI** holds `param2`. No other general-purpose register is changed.
//! * **RAX** receives the result: 0 on success, otherwise a negative errno
//!   ([`crate::errno`]) sign-extended from `i32` to 64 bits. ACRN handlers often return a plain
//!   `-1` (which Linux reads as `-EPERM`).
//! * Pointer parameters are Service VM guest-physical addresses (GPAs).
//! * A caller that is not allowed to use hypercalls gets `#UD`; a caller at CPL != 0 gets
//!   `#GP(0)`; RAX is left unchanged in both cases.
//! * ACRN dispatches on [`hc_idx`] (`id & 0xFF`) only; unknown indices return `-ENOTTY`.
//! * Most calls take a VM ID *relative to the Service VM* in `param1` (`abs = service + rel`).

/// High byte of every hypercall ID (`HC_ID`).
pub const HC_ID: u64 = 0x80;

/// `BASE_HC_ID(x, y)`: builds a hypercall ID from the high byte and a group offset.
pub const fn base_hc_id(x: u64, y: u64) -> u64 {
    (x << 24) | y
}

/// The table index ACRN dispatches on: the low byte of the ID.
pub const fn hc_idx(id: u64) -> u8 {
    (id & 0xFF) as u8
}

/// General (VMM-wide) group base.
pub const HC_ID_GEN_BASE: u64 = 0x00;
/// VM management group base.
pub const HC_ID_VM_BASE: u64 = 0x10;
/// Interrupt group base.
pub const HC_ID_IRQ_BASE: u64 = 0x20;
/// I/O request group base.
pub const HC_ID_IOREQ_BASE: u64 = 0x30;
/// Guest memory group base.
pub const HC_ID_MEM_BASE: u64 = 0x40;
/// PCI / device assignment group base.
pub const HC_ID_PCI_BASE: u64 = 0x50;
/// Debug group base.
pub const HC_ID_DBG_BASE: u64 = 0x60;
/// Trusty (secure world) group base.
pub const HC_ID_TRUSTY_BASE: u64 = 0x70;
/// Power management group base.
pub const HC_ID_PM_BASE: u64 = 0x80;
/// OP-TEE group base.
pub const HC_ID_TEE_BASE: u64 = 0x90;

const fn id(group: u64, n: u64) -> u64 {
    base_hc_id(HC_ID, group + n)
}

/// Returns `{major, minor}` in a `hc_api_version` at GPA `param1`.
pub const HC_GET_API_VERSION: u64 = id(HC_ID_GEN_BASE, 0x00);
/// Offlines the Service VM vCPU whose LAPIC ID is `param1` (Linux: `HC_SOS_REMOVE_CPU`).
pub const HC_SERVICE_VM_OFFLINE_CPU: u64 = id(HC_ID_GEN_BASE, 0x01);
/// Changes the upcall vector (`param1`, 0x20..=0xFF) from its default [`crate::irq::HSM_UPCALL_VECTOR`].
pub const HC_SET_CALLBACK_VECTOR: u64 = id(HC_ID_GEN_BASE, 0x02);
/// Removed from ACRN (returns `-ENOTTY`); kept because one Linux fork still names it.
pub const HC_GET_PLATFORM_INFO: u64 = id(HC_ID_GEN_BASE, 0x03);

/// Creates a VM: `param1` = GPA of an [`crate::vm::AcrnVmCreation`] (in/out).
pub const HC_CREATE_VM: u64 = id(HC_ID_VM_BASE, 0x00);
/// Destroys a PAUSED VM: `param1` = vmid.
pub const HC_DESTROY_VM: u64 = id(HC_ID_VM_BASE, 0x01);
/// Starts a CREATED VM: `param1` = vmid.
pub const HC_START_VM: u64 = id(HC_ID_VM_BASE, 0x02);
/// Pauses a VM: `param1` = vmid.
pub const HC_PAUSE_VM: u64 = id(HC_ID_VM_BASE, 0x03);
/// No-op in ACRN (returns 0).
pub const HC_CREATE_VCPU: u64 = id(HC_ID_VM_BASE, 0x04);
/// Resets a PAUSED VM back to CREATED: `param1` = vmid.
pub const HC_RESET_VM: u64 = id(HC_ID_VM_BASE, 0x05);
/// `param1` = vmid, `param2` = GPA of an [`crate::regs::AcrnVcpuRegs`].
pub const HC_SET_VCPU_REGS: u64 = id(HC_ID_VM_BASE, 0x06);

/// `param1` = vmid, `param2` = GPA of an [`crate::irq::AcrnMsiEntry`].
pub const HC_INJECT_MSI: u64 = id(HC_ID_IRQ_BASE, 0x03);
/// `param1` = vmid, `param2` = page-aligned GPA of an [`crate::irq::AcrnIntrMonitor`].
pub const HC_VM_INTR_MONITOR: u64 = id(HC_ID_IRQ_BASE, 0x04);
/// `param1` = vmid, `param2` = an [`crate::irq::AcrnIrqlineOps`] packed into a u64 (by value).
pub const HC_SET_IRQLINE: u64 = id(HC_ID_IRQ_BASE, 0x05);

/// `param1` = vmid, `param2` = GPA of a u64 that holds the GPA of the I/O request page.
pub const HC_SET_IOREQ_BUFFER: u64 = id(HC_ID_IOREQ_BASE, 0x00);
/// `param1` = vmid, `param2` = vCPU ID (by value) whose request is COMPLETE.
pub const HC_NOTIFY_REQUEST_FINISH: u64 = id(HC_ID_IOREQ_BASE, 0x01);
/// `param1` = vmid, `param2` = GPA of an [`crate::sbuf::AcrnAsyncioInfo`].
pub const HC_ASYNCIO_ASSIGN: u64 = id(HC_ID_IOREQ_BASE, 0x02);
/// `param1` = vmid, `param2` = GPA of an [`crate::sbuf::AcrnAsyncioInfo`].
pub const HC_ASYNCIO_DEASSIGN: u64 = id(HC_ID_IOREQ_BASE, 0x03);

/// `param1` = vmid, `param2` = GPA of a [`crate::memory::VmGpa2Hpa`].
pub const HC_VM_GPA2HPA: u64 = id(HC_ID_MEM_BASE, 0x01);
/// `param1` = GPA of a [`crate::memory::SetRegions`] (the vmid is inside it).
pub const HC_VM_SET_MEMORY_REGIONS: u64 = id(HC_ID_MEM_BASE, 0x02);
/// `param1` = vmid, `param2` = GPA of a [`crate::memory::WpData`].
pub const HC_VM_WRITE_PROTECT_PAGE: u64 = id(HC_ID_MEM_BASE, 0x03);
/// `param1` = vmid, `param2` = GPA of an [`crate::sbuf::AcrnSbufParam`].
pub const HC_SETUP_SBUF: u64 = id(HC_ID_MEM_BASE, 0x04);

/// Defined by ACRN but without a handler (`-ENOTTY`).
pub const HC_ASSIGN_PTDEV: u64 = id(HC_ID_PCI_BASE, 0x00);
/// Defined by ACRN but without a handler (`-ENOTTY`).
pub const HC_DEASSIGN_PTDEV: u64 = id(HC_ID_PCI_BASE, 0x01);
/// Defined by ACRN but without a handler (`-ENOTTY`).
pub const HC_VM_PCI_MSIX_REMAP: u64 = id(HC_ID_PCI_BASE, 0x02);
/// `param1` = vmid, `param2` = GPA of an [`crate::irq::HcPtdevIrq`] (Linux: `HC_SET_PTDEV_INTR`).
pub const HC_SET_PTDEV_INTR_INFO: u64 = id(HC_ID_PCI_BASE, 0x03);
/// `param1` = vmid, `param2` = GPA of an [`crate::irq::HcPtdevIrq`] (Linux: `HC_RESET_PTDEV_INTR`).
pub const HC_RESET_PTDEV_INTR_INFO: u64 = id(HC_ID_PCI_BASE, 0x04);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnPcidev`].
pub const HC_ASSIGN_PCIDEV: u64 = id(HC_ID_PCI_BASE, 0x05);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnPcidev`].
pub const HC_DEASSIGN_PCIDEV: u64 = id(HC_ID_PCI_BASE, 0x06);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnMmiodev`].
pub const HC_ASSIGN_MMIODEV: u64 = id(HC_ID_PCI_BASE, 0x07);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnMmiodev`].
pub const HC_DEASSIGN_MMIODEV: u64 = id(HC_ID_PCI_BASE, 0x08);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnVdev`] (Linux: `HC_CREATE_VDEV`).
pub const HC_ADD_VDEV: u64 = id(HC_ID_PCI_BASE, 0x09);
/// `param1` = vmid, `param2` = GPA of an [`crate::device::AcrnVdev`] (Linux: `HC_DESTROY_VDEV`).
pub const HC_REMOVE_VDEV: u64 = id(HC_ID_PCI_BASE, 0x0A);

/// `param1` = GPA of a [`crate::misc::HvNpkLogParam`] (debug builds only).
pub const HC_SETUP_HV_NPK_LOG: u64 = id(HC_ID_DBG_BASE, 0x01);
/// `param1` = [`crate::misc::ProfilingCmd`], `param2` = GPA (debug builds only).
pub const HC_PROFILING_OPS: u64 = id(HC_ID_DBG_BASE, 0x02);
/// `param1` = GPA of an [`crate::misc::AcrnHwInfo`] (debug builds only).
pub const HC_GET_HW_INFO: u64 = id(HC_ID_DBG_BASE, 0x03);

/// Needs `GUEST_FLAG_SECURE_WORLD_ENABLED`; `param1` = GPA of `trusty_boot_param`.
pub const HC_INITIALIZE_TRUSTY: u64 = id(HC_ID_TRUSTY_BASE, 0x00);
/// Needs `GUEST_FLAG_SECURE_WORLD_ENABLED`.
pub const HC_WORLD_SWITCH: u64 = id(HC_ID_TRUSTY_BASE, 0x01);
/// Needs `GUEST_FLAG_SECURE_WORLD_ENABLED`.
pub const HC_SAVE_RESTORE_SWORLD_CTX: u64 = id(HC_ID_TRUSTY_BASE, 0x02);

/// `param1` = PM command ([`crate::pm::pm_cmd`]), `param2` = GPA of the output buffer.
pub const HC_PM_GET_CPU_STATE: u64 = id(HC_ID_PM_BASE, 0x00);

/// Needs `GUEST_FLAG_TEE`.
pub const HC_TEE_VCPU_BOOT_DONE: u64 = id(HC_ID_TEE_BASE, 0x00);
/// Needs `GUEST_FLAG_TEE` or `GUEST_FLAG_REE`.
pub const HC_SWITCH_EE: u64 = id(HC_ID_TEE_BASE, 0x01);

/// Linux's name for [`HC_SERVICE_VM_OFFLINE_CPU`].
pub const HC_SOS_REMOVE_CPU: u64 = HC_SERVICE_VM_OFFLINE_CPU;
/// Linux's name for [`HC_SET_PTDEV_INTR_INFO`].
pub const HC_SET_PTDEV_INTR: u64 = HC_SET_PTDEV_INTR_INFO;
/// Linux's name for [`HC_RESET_PTDEV_INTR_INFO`].
pub const HC_RESET_PTDEV_INTR: u64 = HC_RESET_PTDEV_INTR_INFO;
/// Linux's name for [`HC_ADD_VDEV`].
pub const HC_CREATE_VDEV: u64 = HC_ADD_VDEV;
/// Linux's name for [`HC_REMOVE_VDEV`].
pub const HC_DESTROY_VDEV: u64 = HC_REMOVE_VDEV;

/// Every hypercall ID with its hypervisor name, in ID order.
pub const HYPERCALLS: &[(u64, &str)] = &[
    (HC_GET_API_VERSION, "HC_GET_API_VERSION"),
    (HC_SERVICE_VM_OFFLINE_CPU, "HC_SERVICE_VM_OFFLINE_CPU"),
    (HC_SET_CALLBACK_VECTOR, "HC_SET_CALLBACK_VECTOR"),
    (HC_GET_PLATFORM_INFO, "HC_GET_PLATFORM_INFO"),
    (HC_CREATE_VM, "HC_CREATE_VM"),
    (HC_DESTROY_VM, "HC_DESTROY_VM"),
    (HC_START_VM, "HC_START_VM"),
    (HC_PAUSE_VM, "HC_PAUSE_VM"),
    (HC_CREATE_VCPU, "HC_CREATE_VCPU"),
    (HC_RESET_VM, "HC_RESET_VM"),
    (HC_SET_VCPU_REGS, "HC_SET_VCPU_REGS"),
    (HC_INJECT_MSI, "HC_INJECT_MSI"),
    (HC_VM_INTR_MONITOR, "HC_VM_INTR_MONITOR"),
    (HC_SET_IRQLINE, "HC_SET_IRQLINE"),
    (HC_SET_IOREQ_BUFFER, "HC_SET_IOREQ_BUFFER"),
    (HC_NOTIFY_REQUEST_FINISH, "HC_NOTIFY_REQUEST_FINISH"),
    (HC_ASYNCIO_ASSIGN, "HC_ASYNCIO_ASSIGN"),
    (HC_ASYNCIO_DEASSIGN, "HC_ASYNCIO_DEASSIGN"),
    (HC_VM_GPA2HPA, "HC_VM_GPA2HPA"),
    (HC_VM_SET_MEMORY_REGIONS, "HC_VM_SET_MEMORY_REGIONS"),
    (HC_VM_WRITE_PROTECT_PAGE, "HC_VM_WRITE_PROTECT_PAGE"),
    (HC_SETUP_SBUF, "HC_SETUP_SBUF"),
    (HC_ASSIGN_PTDEV, "HC_ASSIGN_PTDEV"),
    (HC_DEASSIGN_PTDEV, "HC_DEASSIGN_PTDEV"),
    (HC_VM_PCI_MSIX_REMAP, "HC_VM_PCI_MSIX_REMAP"),
    (HC_SET_PTDEV_INTR_INFO, "HC_SET_PTDEV_INTR_INFO"),
    (HC_RESET_PTDEV_INTR_INFO, "HC_RESET_PTDEV_INTR_INFO"),
    (HC_ASSIGN_PCIDEV, "HC_ASSIGN_PCIDEV"),
    (HC_DEASSIGN_PCIDEV, "HC_DEASSIGN_PCIDEV"),
    (HC_ASSIGN_MMIODEV, "HC_ASSIGN_MMIODEV"),
    (HC_DEASSIGN_MMIODEV, "HC_DEASSIGN_MMIODEV"),
    (HC_ADD_VDEV, "HC_ADD_VDEV"),
    (HC_REMOVE_VDEV, "HC_REMOVE_VDEV"),
    (HC_SETUP_HV_NPK_LOG, "HC_SETUP_HV_NPK_LOG"),
    (HC_PROFILING_OPS, "HC_PROFILING_OPS"),
    (HC_GET_HW_INFO, "HC_GET_HW_INFO"),
    (HC_INITIALIZE_TRUSTY, "HC_INITIALIZE_TRUSTY"),
    (HC_WORLD_SWITCH, "HC_WORLD_SWITCH"),
    (HC_SAVE_RESTORE_SWORLD_CTX, "HC_SAVE_RESTORE_SWORLD_CTX"),
    (HC_PM_GET_CPU_STATE, "HC_PM_GET_CPU_STATE"),
    (HC_TEE_VCPU_BOOT_DONE, "HC_TEE_VCPU_BOOT_DONE"),
    (HC_SWITCH_EE, "HC_SWITCH_EE"),
];

/// The hypervisor name of a hypercall, looked up by [`hc_idx`] as ACRN dispatches.
pub fn name(id: u64) -> Option<&'static str> {
    HYPERCALLS
        .iter()
        .find(|(known, _)| hc_idx(*known) == hc_idx(id))
        .map(|(_, n)| *n)
}
