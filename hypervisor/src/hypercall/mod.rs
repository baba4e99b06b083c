//! The hypercall dispatcher: ACRN's ABI (ID in R8, parameters in RDI/RSI, result in RAX,
//! negative errno on failure). Only the Service VM may call (others get #UD, callers at CPL != 0
//! get #GP(0), RAX unchanged in both cases). Every parameter is decoded and checked here, in
//! pure code tested on the host: guest pointers through [`GuestMemory`], VM ids against the
//! table, states against ACRN's rules. The effects on VMs (page tables, vCPUs, interrupts) go
//! through [`VmOps`], which the bare-metal VM layer implements.
//!
//! Error codes follow ACRN: `-ENOTTY` for unknown calls and missing or non-post-launched target
//! VMs, `-EINVAL` for a bad pointer (ACRN's `copy_from_gpa` result) or a bad value, `-EPERM`
//! (ACRN's literal `-1`) for a call the target's state forbids, creating a VM that already
//! exists included. [`BEHAVIOUR`] lists every hypercall ID: what we do and what ACRN does.

pub mod mem;
pub mod regs;
#[cfg(target_os = "none")]
pub mod runtime;

pub use mem::{GuestMemory, IdentityRam, PhysBytes};

use crate::ioreq;
use acrn_abi::errno::{EINVAL, ENOTTY, EPERM};
use acrn_abi::hypercall::*;
use acrn_abi::irq::GsiOp;
use acrn_abi::memory::{MEM_ACCESS_RIGHT_MASK, MEM_TYPE_MASK, MR_ADD, MR_DEL, MR_MODIFY};
use acrn_abi::misc::{HV_API_MAJOR_VERSION, HV_API_MINOR_VERSION};
use acrn_abi::vm::{
    AcrnPlatformInfo, AcrnVmConfigHeader, LoadOrder, ACRN_INVALID_VMID, ACRN_PLATFORM_INFO_VERSION,
    ACRN_PLATFORM_LAPIC_IDS_MAX, DM_OWNED_GUEST_FLAG_MASK, MAX_VM_NAME_LEN, SEVERITY_RTVM,
    SEVERITY_SERVICE_VM, SEVERITY_STANDARD_VM,
};
use acrn_abi::{
    AcrnMsiEntry, AcrnRegs, AcrnVcpuRegs, AcrnVmCreation, GuestFlags, SetRegions, VmMemoryRegion,
    VmState,
};
use mem::{read_obj, write_obj};
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;

/// Most VM slots (ACRN's `CONFIG_MAX_VM_NUM` is at most this here).
pub const MAX_VM_NUM: usize = 16;
/// Most vCPUs of a post-launched VM: one I/O request slot each.
pub const MAX_VCPUS_PER_VM: u16 = acrn_abi::ioreq::ACRN_IO_REQUEST_MAX as u16;
/// Pins of the post-launched VM's virtual IOAPIC (ACRN: `VIOAPIC_RTE_NUM`).
pub const VIOAPIC_PINS: u32 = 48;
/// Highest guest-physical address (exclusive) a post-launched VM may have mapped.
pub const MAX_USER_GPA: u64 = 1 << 39;
/// Most `vm_memory_region` entries one HC_VM_SET_MEMORY_REGIONS may carry: bounds the time a
/// single hypercall can keep the hypervisor busy.
pub const MAX_MEMORY_REGIONS: u32 = 1 << 16;

/// Every hypercall of `acrn_abi::hypercall`: (ID, what this hypervisor does, what ACRN does).
/// Where we lack the feature behind a call, we answer what ACRN answers when the feature has
/// nothing to act on (no such device, no such buffer).
pub const BEHAVIOUR: &[(u64, &str, &str)] = &[
    (HC_GET_API_VERSION, "writes {1, 0}", "the same"),
    (
        HC_SERVICE_VM_OFFLINE_CPU,
        "-EPERM for the BSP's LAPIC ID, else 0; the vCPU, halted by Linux before it calls, \
         stays halted (it is not taken out of its pCPU's run queue)",
        "-1 for the BSP; zombies and offlines the vCPU with that LAPIC ID; 0 if none has it",
    ),
    (
        HC_SET_CALLBACK_VECTOR,
        "sets the upcall vector (0x20..=0xFF, else -EINVAL)",
        "the same",
    ),
    (
        HC_GET_PLATFORM_INFO,
        "fills acrn_platform_info (pCPUs, LAPIC IDs, VM slots) and, if vm_configs_addr is \
         set, one 40-byte acrn_vm_config_header per VM slot; -EINVAL for a bad pointer",
        "v3.0: the same with its whole acrn_vm_config per slot; removed later (-ENOTTY)",
    ),
    (
        HC_CREATE_VM,
        "creates a post-launched VM (by name or a dynamic slot)",
        "the same",
    ),
    (HC_DESTROY_VM, "PAUSED -> powered off", "the same"),
    (
        HC_START_VM,
        "CREATED with an ioreq page -> RUNNING",
        "the same",
    ),
    (HC_PAUSE_VM, "-> PAUSED", "the same"),
    (HC_CREATE_VCPU, "0", "0 (no-op)"),
    (
        HC_RESET_VM,
        "PAUSED -> CREATED, ioreq slots FREE",
        "the same",
    ),
    (
        HC_SET_VCPU_REGS,
        "checked, stored as the vCPU's start state",
        "the same",
    ),
    (HC_INJECT_MSI, "to the VM's vLAPICs", "the same"),
    (
        HC_VM_INTR_MONITOR,
        "-EINVAL if powered off, unreadable or buf_cnt > 48; GET_DATA writes (irq, count) pairs \
         of the VM's pass-through lines (physical GSI) and MSI/MSI-X vectors (the hypervisor's \
         vector), counted since each was given, and buf_cnt; DELAY_INT: each pass-through \
         interrupt from then on held back buffer[0] ms (at most 10 s), one per source",
        "GET_DATA: (irq, count) pairs of the VM's pass-through interrupts; DELAY_INT delays them",
    ),
    (
        HC_SET_IRQLINE,
        "drives the vIOAPIC (and vPIC) line",
        "the same",
    ),
    (
        HC_SET_IOREQ_BUFFER,
        "registers the ioreq page (CREATED)",
        "the same",
    ),
    (HC_NOTIFY_REQUEST_FINISH, "wakes the vCPU", "the same"),
    (
        HC_ASYNCIO_ASSIGN,
        "-EPERM: no asyncio buffer can be set up (HC_SETUP_SBUF refuses ACRN_ASYNCIO)",
        "-1 without an asyncio buffer; else registers the (addr, type, data) match",
    ),
    (
        HC_ASYNCIO_DEASSIGN,
        "-EPERM, as for HC_ASYNCIO_ASSIGN",
        "-1 if nothing matches",
    ),
    (
        HC_VM_GPA2HPA,
        "translates through the VM's table",
        "the same",
    ),
    (
        HC_VM_SET_MEMORY_REGIONS,
        "maps and unmaps regions",
        "the same",
    ),
    (
        HC_VM_WRITE_PROTECT_PAGE,
        "toggles write permission of one mapped 4 KiB page; -EINVAL if unaligned or unmapped; \
         writes to it then reach the device model as MMIO requests",
        "the same, the writes as WP requests",
    ),
    (
        HC_SETUP_SBUF,
        "TRACE/HVLOG/SEP/SOCWATCH: checks the pCPU and the header (magic, sizes), then 0 \
         though nothing is written there yet; ASYNCIO and VM_EVENT: -EPERM (not supported)",
        "registers the buffer; the hypervisor logs, traces, queues asyncio and VM events there",
    ),
    (HC_ASSIGN_PTDEV, "-ENOTTY", "-ENOTTY (no handler)"),
    (HC_DEASSIGN_PTDEV, "-ENOTTY", "-ENOTTY (no handler)"),
    (HC_VM_PCI_MSIX_REMAP, "-ENOTTY", "-ENOTTY (no handler)"),
    (
        HC_SET_PTDEV_INTR_INFO,
        "INTx only: the Service VM's physical GSI phys_pin drives the VM's vIOAPIC GSI \
         virt_pin (the Service VM's entry stops driving the pin); -EPERM unless CREATED, \
         unreadable, not INTx, no function assigned at virt_bdf from phys_bdf, a vPIC pin, a \
         GSI not the Service VM's to give or a virt_pin beyond the vIOAPIC",
        "INTx only: remaps the physical pin from the Service VM to the VM; -1 if no device",
    ),
    (
        HC_RESET_PTDEV_INTR_INFO,
        "gives the line back to the Service VM's vIOAPIC entry; -EPERM unless CREATED or \
         PAUSED, or the VM does not have that line",
        "removes the INTx remapping; -1 if no device",
    ),
    (
        HC_ASSIGN_PCIDEV,
        "moves a type-0 non-bridge function from the Service VM (hidden from it, its MSI/MSI-X \
         vectors freed) to the VM's virtual PCI at virt_bdf with BARs at bar[] (0: the host \
         address), DMA confined by the IOMMU when present; -EINVAL unless CREATED or unreadable; \
         -ENODEV if absent, a bridge, owned by another VM, virt_bdf taken or no slot left",
        "moves the device from the Service VM; -ENODEV if it has no such device",
    ),
    (
        HC_DEASSIGN_PCIDEV,
        "gives the function back to the Service VM (stopped, DMA untranslated again); -EINVAL \
         unless CREATED or PAUSED or unreadable; -ENODEV if not assigned at virt_bdf",
        "gives the device back; -ENODEV if not assigned",
    ),
    (
        HC_ASSIGN_MMIODEV,
        "-EINVAL: MMIO device pass-through is not supported",
        "moves the MMIO ranges from the Service VM; -EINVAL if they are not its",
    ),
    (
        HC_DEASSIGN_MMIODEV,
        "-EINVAL: nothing is assigned",
        "gives the ranges back; -EINVAL if not assigned",
    ),
    (
        HC_ADD_VDEV,
        "IVSHMEM of a hypervisor-provided region the VM is a member of (args: hv:/NAME) or its \
         PCI vUART vuart_idx (MCS9900), at slot with BARs io_addr, kept across HC_RESET_VM; \
         -EINVAL unless CREATED, unreadable, another ID (the virtual root port too), not a \
         member, no such vUART, the BDF or device taken, or BARs that do not fit",
        "creates IVSHMEM, the MCS9900 vUART or a virtual root port; -EINVAL for other IDs",
    ),
    (
        HC_REMOVE_VDEV,
        "removes the added device at slot; -EINVAL unless CREATED or PAUSED, or none there",
        "removes the device at `slot`; -EINVAL if none",
    ),
    (
        HC_SETUP_HV_NPK_LOG,
        "-EPERM",
        "-EPERM in release builds (debug: Intel NPK log)",
    ),
    (
        HC_PROFILING_OPS,
        "-EPERM",
        "-EPERM in release builds (debug: SEP/SoCWatch)",
    ),
    (
        HC_GET_HW_INFO,
        "writes the pCPU count",
        "debug builds: the same; release: -EPERM",
    ),
    (
        HC_INITIALIZE_TRUSTY,
        "-ENOTTY",
        "-ENOTTY for a caller without SECURE_WORLD_ENABLED",
    ),
    (
        HC_WORLD_SWITCH,
        "-ENOTTY",
        "-ENOTTY for a caller without SECURE_WORLD_ENABLED",
    ),
    (
        HC_SAVE_RESTORE_SWORLD_CTX,
        "-ENOTTY",
        "-ENOTTY for a caller without SECURE_WORLD_ENABLED",
    ),
    (
        HC_PM_GET_CPU_STATE,
        "target from bits 31:24; -EPERM unless CREATED or PAUSED; PX_CNT: 0 with VHWP, else \
         -EPERM; PX_DATA, CX_CNT, CX_DATA: -EPERM (no P-/C-state data from the board)",
        "the same with the board's P-/C-state tables when it has them",
    ),
    (
        HC_TEE_VCPU_BOOT_DONE,
        "-ENOTTY",
        "-ENOTTY for a caller without GUEST_FLAG_TEE",
    ),
    (
        HC_SWITCH_EE,
        "-ENOTTY",
        "-ENOTTY for a caller without GUEST_FLAG_TEE or _REE",
    ),
];

/// Load order of a VM slot, as far as the dispatcher cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// No VM configured: a dynamic slot a post-launched VM may take.
    Empty,
    PreLaunched,
    Service,
    PostLaunched,
}

/// The static configuration of one VM slot (VM id = slot index).
#[derive(Debug, Clone, Copy)]
pub struct SlotConfig {
    pub kind: SlotKind,
    pub name: &'static str,
    /// pCPUs the VM may run on (bit n = pCPU n).
    pub pcpus: u64,
    /// Guest flags from the scenario (`GUEST_FLAG_*`).
    pub flags: u64,
}

/// Run-time state of one post-launched VM slot.
#[derive(Debug, Clone, Copy)]
struct Slot {
    state: VmState,
    /// Name of a dynamic VM while it exists (NUL-padded).
    name: [u8; MAX_VM_NAME_LEN],
    vcpu_num: u16,
    /// HPA (= Service VM GPA) of the VM's I/O request page.
    ioreq_page: Option<u64>,
    /// Guest flags the VM was created with.
    flags: u64,
}

const FREE_SLOT: Slot = Slot {
    state: VmState::PoweredOff,
    name: [0; MAX_VM_NAME_LEN],
    vcpu_num: 0,
    ioreq_page: None,
    flags: 0,
};

/// Who executed the hypercall instruction.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Absolute VM id of the caller.
    pub vmid: u16,
    /// Current privilege level (CS selector bits 1:0).
    pub cpl: u8,
}

/// What the VM layer must do with the calling vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Write this value to RAX and skip the instruction.
    Return(i64),
    /// Inject #UD (caller may not use hypercalls); RAX unchanged.
    InjectUd,
    /// Inject #GP(0) (caller not at CPL 0); RAX unchanged.
    InjectGp,
}

/// Effects of hypercalls on post-launched VMs (absolute VM ids). Arguments are already
/// checked; an `Err` carries a negative errno for the caller.
pub trait VmOps {
    /// Builds an empty VM (no memory mapped) with `pcpus.count_ones()` vCPUs.
    fn create(&mut self, vmid: u16, pcpus: u64, flags: u64) -> Result<(), i32>;
    fn destroy(&mut self, vmid: u16);
    /// Launches the VM's BSP; its I/O requests go to the page at `ioreq_page` (Service VM GPA).
    fn start(&mut self, vmid: u16, ioreq_page: u64) -> Result<(), i32>;
    /// Stops every vCPU of the VM (they stay stopped until reset or destroy).
    fn pause(&mut self, vmid: u16);
    /// Returns every vCPU to its power-on state.
    fn reset(&mut self, vmid: u16);
    fn set_vcpu_regs(&mut self, vmid: u16, vcpu: u16, regs: &AcrnRegs) -> Result<(), i32>;
    /// Maps `[gpa, gpa + size)` of the VM to host `[hpa, hpa + size)`; `prot` is the checked
    /// `MEM_ACCESS_*` | `MEM_TYPE_*` value.
    fn map(&mut self, vmid: u16, gpa: u64, hpa: u64, size: u64, prot: u32) -> Result<(), i32>;
    fn unmap(&mut self, vmid: u16, gpa: u64, size: u64) -> Result<(), i32>;
    /// The Service VM finished the vCPU's I/O request: wake the vCPU.
    fn notify_request_finish(&mut self, vmid: u16, vcpu: u16);
    /// The host-physical address `gpa` of the VM maps to, if mapped.
    fn gpa2hpa(&mut self, vmid: u16, gpa: u64) -> Option<u64>;
    fn set_irqline(&mut self, vmid: u16, gsi: u32, op: GsiOp) -> Result<(), i32>;
    fn inject_msi(&mut self, vmid: u16, addr: u64, data: u64) -> Result<(), i32>;
    /// Makes the mapped 4 KiB page at `gpa` read-only (`protect`) or writable again.
    fn write_protect(&mut self, vmid: u16, gpa: u64, protect: bool) -> Result<(), i32>;
    /// The Service VM offlines its vCPU with LAPIC ID `lapic_id`: `Err(EPERM)` for the BSP,
    /// `Ok` otherwise (also when no vCPU has that ID, as in ACRN).
    fn offline_service_vcpu(&mut self, lapic_id: u32) -> Result<(), i32>;
    /// Moves host function `phys` from the Service VM to the VM at `virt`, its BAR
    /// registers at `bars`; `Err(ENODEV)` if the Service VM has no such function to give.
    fn assign_pcidev(&mut self, vmid: u16, phys: u16, virt: u16, bars: [u32; 6])
        -> Result<(), i32>;
    /// Gives host function `phys` (at `virt` in the VM) back; `Err(ENODEV)` if not assigned.
    fn deassign_pcidev(&mut self, vmid: u16, phys: u16, virt: u16) -> Result<(), i32>;
    /// Gives the VM physical INTx GSI `phys_pin` of its function at `virt_bdf` as its
    /// vIOAPIC GSI `virt_pin` (`give`), or takes it back.
    fn ptdev_intx(
        &mut self,
        vmid: u16,
        irq: &acrn_abi::irq::HcPtdevIrq,
        give: bool,
    ) -> Result<(), i32>;
    /// Puts the IVSHMEM device or PCI vUART `dev` describes on the VM's bus.
    fn add_vdev(&mut self, vmid: u16, dev: &acrn_abi::device::AcrnVdev) -> Result<(), i32>;
    /// Takes the device the Device Model added at BDF `slot` off the VM's bus.
    fn remove_vdev(&mut self, vmid: u16, slot: u16) -> Result<(), i32>;
    /// The VM's pass-through interrupts as (irq, count) pairs into `out`; how many u64 were
    /// written (whole pairs only).
    fn intr_data(&mut self, vmid: u16, out: &mut [u64]) -> usize;
    /// DELAY_INT: the VM's pass-through interrupts are held back `ms` (0: not at all).
    fn intr_delay(&mut self, vmid: u16, ms: u64);
}

/// The dispatcher's state: the VM table and the upcall vector.
pub struct Hypercalls {
    config: [Option<SlotConfig>; MAX_VM_NUM],
    slots: [Slot; MAX_VM_NUM],
    max_vm_num: usize,
    service_vmid: u16,
    /// The Service VM's pCPUs: the affinity of dynamic VMs.
    service_pcpus: u64,
    upcall_vector: u8,
    /// LAPIC ID of each pCPU, by pCPU id (HC_GET_PLATFORM_INFO, HC_GET_HW_INFO).
    lapic_ids: [u32; ACRN_PLATFORM_LAPIC_IDS_MAX],
    pcpu_num: u16,
}

fn err(e: i32) -> i64 {
    -(e as i64)
}

impl Hypercalls {
    /// `configs[i]` is VM id `i`; slots up to `max_vm_num` without a config are dynamic.
    /// `None` if there is no Service VM (nobody could call).
    pub fn new(configs: &[SlotConfig], max_vm_num: usize) -> Option<Self> {
        let max_vm_num = max_vm_num.clamp(configs.len().min(MAX_VM_NUM), MAX_VM_NUM);
        let mut config = [None; MAX_VM_NUM];
        for (c, s) in config.iter_mut().zip(configs) {
            *c = Some(*s);
        }
        let service = configs.iter().position(|c| c.kind == SlotKind::Service)?;
        Some(Hypercalls {
            config,
            slots: [FREE_SLOT; MAX_VM_NUM],
            max_vm_num,
            service_vmid: service as u16,
            service_pcpus: configs[service].pcpus,
            upcall_vector: acrn_abi::irq::HSM_UPCALL_VECTOR,
            lapic_ids: [0; ACRN_PLATFORM_LAPIC_IDS_MAX],
            pcpu_num: 0,
        })
    }

    /// The machine's pCPUs by their LAPIC IDs (pCPU id = index; at most 64 are kept).
    pub fn set_pcpus(&mut self, lapic_ids: impl IntoIterator<Item = u32>) {
        self.pcpu_num = 0;
        for (slot, id) in self.lapic_ids.iter_mut().zip(lapic_ids) {
            *slot = id;
            self.pcpu_num += 1;
        }
    }

    pub fn service_vmid(&self) -> u16 {
        self.service_vmid
    }

    /// The vector that announces I/O requests to the Service VM's BSP.
    pub fn upcall_vector(&self) -> u8 {
        self.upcall_vector
    }

    /// The I/O request page of post-launched VM `vmid`, once set.
    pub fn ioreq_page(&self, vmid: u16) -> Option<u64> {
        self.slots.get(vmid as usize).and_then(|s| s.ioreq_page)
    }

    /// State of VM `vmid` as the hypercalls see it (post-launched slots only).
    pub fn state(&self, vmid: u16) -> Option<VmState> {
        let i = vmid as usize;
        matches!(self.kind(i), SlotKind::PostLaunched | SlotKind::Empty)
            .then(|| self.slots[i].state)
    }

    fn kind(&self, i: usize) -> SlotKind {
        match self.config.get(i) {
            Some(Some(c)) if !c.name.is_empty() || c.kind != SlotKind::PostLaunched => c.kind,
            _ => SlotKind::Empty,
        }
    }

    /// Handles one hypercall. `mem` is the Service VM's memory.
    pub fn dispatch(
        &mut self,
        mem: &mut impl GuestMemory,
        ops: &mut impl VmOps,
        caller: Caller,
        id: u64,
        p1: u64,
        p2: u64,
    ) -> Outcome {
        if caller.vmid != self.service_vmid {
            return Outcome::InjectUd;
        }
        if caller.cpl != 0 {
            return Outcome::InjectGp;
        }
        // ACRN dispatches on the low byte only (gotcha 1); IDs with another high byte are ours
        // to refuse, and no caller sends them.
        if id >> 8 != HC_ID << 16 {
            return Outcome::Return(err(ENOTTY));
        }
        let r = match id {
            HC_GET_API_VERSION => {
                let mut v = [0u8; 8];
                v[..4].copy_from_slice(&HV_API_MAJOR_VERSION.to_le_bytes());
                v[4..].copy_from_slice(&HV_API_MINOR_VERSION.to_le_bytes());
                if mem.write(p1, &v) {
                    0
                } else {
                    err(EINVAL)
                }
            }
            HC_SET_CALLBACK_VECTOR => match u8::try_from(p1) {
                Ok(v) if v >= 0x20 => {
                    self.upcall_vector = v;
                    0
                }
                _ => err(EINVAL),
            },
            HC_SERVICE_VM_OFFLINE_CPU => match ops.offline_service_vcpu(p1 as u32) {
                Ok(()) => 0,
                Err(e) => err(e),
            },
            HC_GET_PLATFORM_INFO => self.platform_info(mem, p1),
            HC_GET_HW_INFO => {
                let info = acrn_abi::misc::AcrnHwInfo {
                    cpu_num: self.pcpu_num,
                    reserved: [0; 3],
                };
                if write_obj(mem, p1, &info) {
                    0
                } else {
                    err(EINVAL)
                }
            }
            HC_SETUP_HV_NPK_LOG | HC_PROFILING_OPS => err(EPERM),
            HC_CREATE_VM => self.create_vm(mem, ops, p1),
            HC_CREATE_VCPU => 0,
            HC_VM_SET_MEMORY_REGIONS => self.set_memory_regions(mem, ops, p1),
            HC_DESTROY_VM
            | HC_START_VM
            | HC_PAUSE_VM
            | HC_RESET_VM
            | HC_SET_VCPU_REGS
            | HC_INJECT_MSI
            | HC_SET_IRQLINE
            | HC_SET_IOREQ_BUFFER
            | HC_VM_GPA2HPA
            | HC_NOTIFY_REQUEST_FINISH
            | HC_VM_INTR_MONITOR
            | HC_ASYNCIO_ASSIGN
            | HC_ASYNCIO_DEASSIGN
            | HC_VM_WRITE_PROTECT_PAGE
            | HC_SETUP_SBUF
            | HC_SET_PTDEV_INTR_INFO
            | HC_RESET_PTDEV_INTR_INFO
            | HC_ASSIGN_PCIDEV
            | HC_DEASSIGN_PCIDEV
            | HC_ASSIGN_MMIODEV
            | HC_DEASSIGN_MMIODEV
            | HC_ADD_VDEV
            | HC_REMOVE_VDEV => match self.target(p1) {
                Ok(vmid) => self.vm_call(mem, ops, id, vmid, p2),
                Err(e) => err(e),
            },
            // ACRN takes the target of this one from the command word's bits 31:24.
            HC_PM_GET_CPU_STATE => match self.target((p1 >> 24) & 0xFF) {
                Ok(vmid) => self.pm_get_cpu_state(mem, vmid, p1, p2),
                Err(e) => err(e),
            },
            _ => err(ENOTTY),
        };
        Outcome::Return(r)
    }

    /// Absolute id of an existing post-launched VM from a relative id (ACRN: `param1`).
    fn target(&self, rel: u64) -> Result<u16, i32> {
        let rel = u16::try_from(rel).map_err(|_| ENOTTY)?;
        let abs = self.service_vmid.wrapping_add(rel);
        let i = abs as usize;
        if i >= self.max_vm_num || !matches!(self.kind(i), SlotKind::PostLaunched | SlotKind::Empty)
        {
            return Err(ENOTTY);
        }
        Ok(abs)
    }

    fn vm_call(
        &mut self,
        mem: &mut impl GuestMemory,
        ops: &mut impl VmOps,
        id: u64,
        vmid: u16,
        p2: u64,
    ) -> i64 {
        let slot = self.slots[vmid as usize];
        let state = slot.state;
        if state == VmState::PoweredOff {
            // Nothing but creation applies to a VM that does not exist; ACRN's handlers that
            // start from -EINVAL say so.
            return err(match id {
                HC_VM_INTR_MONITOR | HC_ASSIGN_PCIDEV | HC_DEASSIGN_PCIDEV | HC_ASSIGN_MMIODEV
                | HC_DEASSIGN_MMIODEV | HC_ADD_VDEV | HC_REMOVE_VDEV => EINVAL,
                _ => EPERM,
            });
        }
        let created = state == VmState::Created;
        let created_or_paused = created || state == VmState::Paused;
        match id {
            HC_VM_INTR_MONITOR => {
                let Some(m) = read_obj::<acrn_abi::AcrnIntrMonitor>(mem, p2) else {
                    return err(EINVAL);
                };
                if m.buf_cnt as usize > m.buffer.len() {
                    return err(EINVAL);
                }
                if m.cmd == acrn_abi::irq::INTR_CMD_DELAY_INT {
                    ops.intr_delay(vmid, m.buffer[0]);
                }
                if m.cmd == acrn_abi::irq::INTR_CMD_GET_DATA {
                    let mut buf = [0u64; acrn_abi::irq::MAX_PTDEV_NUM * 2];
                    let n = ops.intr_data(vmid, &mut buf[..m.buf_cnt as usize]);
                    let written = buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(i, v)| mem.write(p2 + 8 + 8 * i as u64, &v.to_le_bytes()));
                    if !written || !mem.write(p2 + 4, &(n as u32).to_le_bytes()) {
                        return err(EINVAL);
                    }
                }
                0
            }
            HC_ASYNCIO_ASSIGN | HC_ASYNCIO_DEASSIGN => {
                // No asyncio buffer is ever set up (HC_SETUP_SBUF), the case ACRN answers -1.
                err(EPERM)
            }
            HC_VM_WRITE_PROTECT_PAGE => {
                let Some(wp) = read_obj::<acrn_abi::memory::WpData>(mem, p2) else {
                    return err(EINVAL);
                };
                if wp.gpa & 0xFFF != 0 || ops.gpa2hpa(vmid, wp.gpa).is_none() {
                    return err(EINVAL);
                }
                match ops.write_protect(vmid, wp.gpa, wp.set != 0) {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            }
            HC_SETUP_SBUF => self.setup_sbuf(mem, p2),
            // ACRN answers -1 for a wrong state, an unreadable argument, a type other than INTx
            // and a virt_bdf without an assigned device.
            HC_SET_PTDEV_INTR_INFO | HC_RESET_PTDEV_INTR_INFO => {
                let give = id == HC_SET_PTDEV_INTR_INFO;
                let state_ok = if give { created } else { created_or_paused };
                let irq = read_obj::<acrn_abi::irq::HcPtdevIrq>(mem, p2);
                match irq.filter(|i| state_ok && i.r#type == acrn_abi::irq::ACRN_PTDEV_IRQ_INTX) {
                    Some(i) => match ops.ptdev_intx(vmid, &i, give) {
                        Ok(()) => 0,
                        Err(e) => err(e),
                    },
                    None => err(EPERM),
                }
            }
            HC_ASSIGN_PCIDEV | HC_DEASSIGN_PCIDEV => {
                let assign = id == HC_ASSIGN_PCIDEV;
                let state_ok = if assign { created } else { created_or_paused };
                let Some(d) = read_obj::<acrn_abi::AcrnPcidev>(mem, p2).filter(|_| state_ok) else {
                    return err(EINVAL);
                };
                let r = if assign {
                    ops.assign_pcidev(vmid, d.phys_bdf, d.virt_bdf, d.bar)
                } else {
                    ops.deassign_pcidev(vmid, d.phys_bdf, d.virt_bdf)
                };
                match r {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            }
            HC_ASSIGN_MMIODEV | HC_DEASSIGN_MMIODEV => {
                // Not supported: the ranges are never the Service VM's to move, none assigned.
                err(EINVAL)
            }
            // Every refusal is -EINVAL in ACRN too: wrong state, unreadable, a device the
            // hypervisor does not emulate, or (remove) none at that slot.
            HC_ADD_VDEV | HC_REMOVE_VDEV => {
                let add = id == HC_ADD_VDEV;
                let state_ok = if add { created } else { created_or_paused };
                let Some(d) = read_obj::<acrn_abi::device::AcrnVdev>(mem, p2).filter(|_| state_ok)
                else {
                    return err(EINVAL);
                };
                let r = if add {
                    ops.add_vdev(vmid, &d)
                } else {
                    ops.remove_vdev(vmid, d.slot as u16)
                };
                match r {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            }
            HC_DESTROY_VM => {
                if state != VmState::Paused {
                    return err(EPERM);
                }
                ops.destroy(vmid);
                self.slots[vmid as usize] = FREE_SLOT;
                0
            }
            HC_START_VM => {
                let Some(page) = slot.ioreq_page.filter(|_| state == VmState::Created) else {
                    return err(EPERM);
                };
                match ops.start(vmid, page) {
                    Ok(()) => {
                        self.slots[vmid as usize].state = VmState::Running;
                        0
                    }
                    Err(e) => err(e),
                }
            }
            HC_PAUSE_VM => {
                if state != VmState::Paused {
                    ops.pause(vmid);
                    self.slots[vmid as usize].state = VmState::Paused;
                }
                0
            }
            HC_RESET_VM => {
                if state != VmState::Paused {
                    return err(EPERM);
                }
                ops.reset(vmid);
                if let Some(page) = slot.ioreq_page {
                    ioreq::reset_page(mem, page);
                }
                self.slots[vmid as usize].state = VmState::Created;
                0
            }
            HC_SET_VCPU_REGS => {
                if state == VmState::Running {
                    return err(EPERM);
                }
                let Some(regs) = read_obj::<AcrnVcpuRegs>(mem, p2) else {
                    return err(EINVAL);
                };
                if !regs.reserved_fields_clear()
                    || regs.vcpu_id >= slot.vcpu_num
                    || !control_regs_valid(&regs.vcpu_regs)
                {
                    return err(EINVAL);
                }
                match ops.set_vcpu_regs(vmid, regs.vcpu_id, &regs.vcpu_regs) {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            }
            HC_SET_IOREQ_BUFFER => {
                if state != VmState::Created {
                    return err(EPERM);
                }
                let Some(page) = read_obj::<u64>(mem, p2) else {
                    return err(EINVAL);
                };
                if page & 0xFFF != 0 || !mem.contains(page, acrn_abi::PAGE_SIZE as u64) {
                    return err(EINVAL);
                }
                ioreq::reset_page(mem, page);
                self.slots[vmid as usize].ioreq_page = Some(page);
                0
            }
            HC_NOTIFY_REQUEST_FINISH => {
                if slot.ioreq_page.is_none() || p2 >= slot.vcpu_num as u64 {
                    return err(EINVAL);
                }
                ops.notify_request_finish(vmid, p2 as u16);
                0
            }
            HC_VM_GPA2HPA => {
                let Some(mut q) = read_obj::<acrn_abi::memory::VmGpa2Hpa>(mem, p2) else {
                    return err(EINVAL);
                };
                let Some(hpa) = ops.gpa2hpa(vmid, q.gpa) else {
                    return err(EINVAL); // ACRN: "gpa not mapped"
                };
                q.hpa = hpa;
                if mem.write(p2 + 8, &q.hpa.to_le_bytes()) {
                    0
                } else {
                    err(EINVAL)
                }
            }
            HC_SET_IRQLINE => {
                let ops_val = acrn_abi::AcrnIrqlineOps::from_u64(p2);
                match GsiOp::from_raw(ops_val.op) {
                    Some(op) if ops_val.gsi < VIOAPIC_PINS => {
                        match ops.set_irqline(vmid, ops_val.gsi, op) {
                            Ok(()) => 0,
                            Err(e) => err(e),
                        }
                    }
                    _ => err(EINVAL),
                }
            }
            HC_INJECT_MSI => {
                let Some(msi) = read_obj::<AcrnMsiEntry>(mem, p2) else {
                    return err(EINVAL);
                };
                // An x86 MSI: address 0xFEExxxxx, a vector above the exception range.
                if msi.msi_addr >> 20 != 0xFEE || (msi.msi_data & 0xFF) < 16 {
                    return err(EINVAL);
                }
                match ops.inject_msi(vmid, msi.msi_addr, msi.msi_data) {
                    Ok(()) => 0,
                    Err(e) => err(e),
                }
            }
            _ => err(ENOTTY),
        }
    }

    fn create_vm(&mut self, mem: &mut impl GuestMemory, ops: &mut impl VmOps, gpa: u64) -> i64 {
        let Some(mut cv) = read_obj::<AcrnVmCreation>(mem, gpa) else {
            return err(EINVAL);
        };
        let r = self.create_vm_checked(ops, &mut cv);
        if r != 0 {
            cv.vmid = ACRN_INVALID_VMID;
            cv.vcpu_num = 0;
        }
        // Write back vmid and vcpu_num (offsets 0 and 4); the struct was readable, so it is
        // writable unless the Service VM's map changed in between.
        let mut out = [0u8; 6];
        out[..2].copy_from_slice(&cv.vmid.to_le_bytes());
        out[2..4].copy_from_slice(&cv.reserved0.to_le_bytes());
        out[4..].copy_from_slice(&cv.vcpu_num.to_le_bytes());
        if !mem.write(gpa, &out) && r == 0 {
            let abs = self.service_vmid.wrapping_add(cv.vmid);
            ops.destroy(abs);
            self.slots[abs as usize] = FREE_SLOT;
            return err(EINVAL);
        }
        r
    }

    fn create_vm_checked(&mut self, ops: &mut impl VmOps, cv: &mut AcrnVmCreation) -> i64 {
        if cv.reserved0 != 0 || cv.reserved1 != 0 {
            return err(EINVAL);
        }
        let name = match cv.name.iter().position(|&b| b == 0) {
            Some(0) | None => return err(EINVAL),
            Some(n) => &cv.name[..n],
        };
        // ACRN (`get_vmid_by_name`): a configured VM of that name, or a dynamic VM that took
        // the name; else the first unused dynamic slot.
        let by_name = (0..self.max_vm_num).find(|&i| match self.kind(i) {
            SlotKind::Empty => {
                self.slots[i].state != VmState::PoweredOff
                    && self.slots[i].name.starts_with(name)
                    && self.slots[i].name.get(name.len()).is_none_or(|&b| b == 0)
            }
            _ => self.config[i].is_some_and(|c| c.name.as_bytes() == name),
        });
        let i = match by_name {
            Some(i)
                if self.kind(i) == SlotKind::PostLaunched || self.kind(i) == SlotKind::Empty =>
            {
                i
            }
            Some(_) => return err(ENOTTY), // the name of a pre-launched VM or the Service VM
            None => {
                let static_vm = |i: usize| {
                    self.config[i].is_some_and(|c| c.flags & GuestFlags::STATIC_VM.bits() != 0)
                };
                match (0..self.max_vm_num).find(|&i| {
                    self.kind(i) == SlotKind::Empty
                        && !static_vm(i)
                        && self.slots[i].state == VmState::PoweredOff
                }) {
                    Some(i) => i,
                    None => return err(ENOTTY),
                }
            }
        };
        if self.slots[i].state != VmState::PoweredOff {
            return err(EPERM); // ACRN: the target must be POWERED_OFF, else -1
        }
        let (allowed, cfg_flags) = match self.config[i] {
            Some(c) if self.kind(i) == SlotKind::PostLaunched => (c.pcpus, c.flags),
            _ => (self.service_pcpus, 0),
        };
        let pcpus = if cv.cpu_affinity == 0 {
            allowed
        } else {
            cv.cpu_affinity
        };
        if pcpus & !allowed != 0 || pcpus == 0 || pcpus.count_ones() > MAX_VCPUS_PER_VM as u32 {
            return err(EINVAL);
        }
        let flags = (cv.vm_flag & DM_OWNED_GUEST_FLAG_MASK.bits()) | cfg_flags;
        let f = GuestFlags::from_bits_retain(flags);
        if f.contains(GuestFlags::LAPIC_PASSTHROUGH) && !f.contains(GuestFlags::RT) {
            return err(EINVAL);
        }
        if let Err(e) = ops.create(i as u16, pcpus, flags) {
            return err(e);
        }
        let mut slot = FREE_SLOT;
        slot.state = VmState::Created;
        slot.flags = flags;
        slot.vcpu_num = pcpus.count_ones() as u16;
        if self.kind(i) == SlotKind::Empty {
            slot.name[..name.len()].copy_from_slice(name);
        }
        self.slots[i] = slot;
        cv.vmid = (i as u16).wrapping_sub(self.service_vmid);
        cv.vcpu_num = slot.vcpu_num;
        0
    }

    /// HC_GET_PLATFORM_INFO (ACRN v3.0): the machine and, if the caller gave a buffer, one
    /// configuration header per VM slot.
    fn platform_info(&self, mem: &mut impl GuestMemory, gpa: u64) -> i64 {
        let Some(mut pi) = read_obj::<AcrnPlatformInfo>(mem, gpa) else {
            return err(EINVAL);
        };
        pi.hw.cpu_num = self.pcpu_num;
        pi.hw.version = ACRN_PLATFORM_INFO_VERSION;
        // No cache allocation: nothing shares a CAT class.
        pi.hw.l2_cat_shift = 0;
        pi.hw.l3_cat_shift = 0;
        for (out, id) in pi.hw.lapic_ids.iter_mut().zip(&self.lapic_ids) {
            *out = *id as u8;
        }
        pi.hw.reserved = [0; 52];
        pi.sw.max_vcpus_per_vm = MAX_VCPUS_PER_VM;
        pi.sw.max_vms = self.max_vm_num as u16;
        pi.sw.vm_config_size = core::mem::size_of::<AcrnVmConfigHeader>() as u32;
        pi.sw.max_kata_containers = 0;
        pi.sw.reserved = [0; 104];
        if pi.sw.vm_configs_addr != 0 {
            let size = pi.sw.vm_config_size as u64;
            if !mem.contains(pi.sw.vm_configs_addr, size * self.max_vm_num as u64) {
                return err(EINVAL);
            }
            for i in 0..self.max_vm_num {
                let at = pi.sw.vm_configs_addr + i as u64 * size;
                if !write_obj(mem, at, &self.config_header(i)) {
                    return err(EINVAL);
                }
            }
        }
        if write_obj(mem, gpa, &pi) {
            0
        } else {
            err(EINVAL)
        }
    }

    /// The public head of VM slot `i`'s configuration, as ACRN's configuration tables hold it:
    /// an unconfigured slot is a nameless post-launched VM.
    fn config_header(&self, i: usize) -> AcrnVmConfigHeader {
        let mut h = AcrnVmConfigHeader {
            load_order: LoadOrder::PostLaunchedVm as u32,
            severity: SEVERITY_STANDARD_VM,
            ..Default::default()
        };
        if let Some(c) = self.config[i].filter(|_| self.kind(i) != SlotKind::Empty) {
            h.load_order = match c.kind {
                SlotKind::PreLaunched => LoadOrder::PreLaunchedVm,
                SlotKind::Service => LoadOrder::ServiceVm,
                SlotKind::PostLaunched | SlotKind::Empty => LoadOrder::PostLaunchedVm,
            } as u32;
            let n = c.name.len().min(MAX_VM_NAME_LEN - 1);
            h.name[..n].copy_from_slice(&c.name.as_bytes()[..n]);
            h.cpu_affinity = c.pcpus;
            h.guest_flags = c.flags;
            h.severity = if c.kind == SlotKind::Service {
                SEVERITY_SERVICE_VM
            } else if c.flags & GuestFlags::RT.bits() != 0 {
                SEVERITY_RTVM
            } else {
                SEVERITY_STANDARD_VM
            };
        }
        h
    }

    /// HC_SETUP_SBUF: per-pCPU buffers are checked and accepted (nothing writes to them yet);
    /// per-VM ones (asyncio, VM events) are not supported.
    fn setup_sbuf(&self, mem: &impl GuestMemory, p2: u64) -> i64 {
        use acrn_abi::sbuf::{AcrnSbufParam, SharedBuf, ACRN_SBUF_PER_PCPU_ID_MAX, SBUF_HEAD_SIZE};
        use acrn_abi::sbuf::{SBUF_MAGIC, SBUF_MAX_SIZE};
        let Some(p) = read_obj::<AcrnSbufParam>(mem, p2) else {
            return err(EPERM);
        };
        if p.gpa == 0 || p.sbuf_id >= ACRN_SBUF_PER_PCPU_ID_MAX {
            return err(EPERM);
        }
        if p.cpu_id >= self.pcpu_num {
            return err(EINVAL);
        }
        let Some(h) = read_obj::<SharedBuf>(mem, p.gpa) else {
            return err(EINVAL);
        };
        let sized = h.ele_size != 0
            && h.ele_num.checked_mul(h.ele_size) == Some(h.size)
            && h.size <= SBUF_MAX_SIZE
            && mem.contains(p.gpa, SBUF_HEAD_SIZE as u64 + h.size as u64);
        if h.magic != SBUF_MAGIC || !sized {
            return err(EINVAL);
        }
        0
    }

    /// HC_PM_GET_CPU_STATE for VM `vmid`: ACRN's answers for a VM without P-/C-state data
    /// (the boards give none).
    fn pm_get_cpu_state(&self, mem: &mut impl GuestMemory, vmid: u16, cmd: u64, out: u64) -> i64 {
        use acrn_abi::pm::{PmCmdType, PMCMD_TYPE_MASK};
        let slot = self.slots[vmid as usize];
        if !matches!(slot.state, VmState::Created | VmState::Paused) {
            return err(EPERM);
        }
        let vhwp = slot.flags & GuestFlags::VHWP.bits() != 0;
        match cmd as u32 & PMCMD_TYPE_MASK {
            // With vHWP the guest has continuous P-states: success and a count of 0.
            t if t == PmCmdType::GetPxCnt as u32 && vhwp => {
                if mem.write(out, &[0]) {
                    0
                } else {
                    err(EINVAL)
                }
            }
            _ => err(EPERM),
        }
    }

    fn set_memory_regions(
        &mut self,
        mem: &mut impl GuestMemory,
        ops: &mut impl VmOps,
        gpa: u64,
    ) -> i64 {
        let Some(sr) = read_obj::<SetRegions>(mem, gpa) else {
            return err(EINVAL);
        };
        let vmid = match self.target(sr.vmid as u64) {
            Ok(v) => v,
            Err(e) => return err(e),
        };
        if self.slots[vmid as usize].state == VmState::PoweredOff {
            return err(EPERM);
        }
        if sr.mr_num > MAX_MEMORY_REGIONS {
            return err(EINVAL);
        }
        let entry = core::mem::size_of::<VmMemoryRegion>() as u64;
        for n in 0..sr.mr_num as u64 {
            let Some(at) = sr.regions_gpa.checked_add(n * entry) else {
                return err(EINVAL);
            };
            let Some(r) = read_obj::<VmMemoryRegion>(mem, at) else {
                return err(EINVAL);
            };
            // ACRN stops at the first bad entry; the earlier ones stay applied.
            if let Err(e) = check_region(mem, &r) {
                return err(e);
            }
            let res = match r.r#type {
                MR_ADD => ops.map(vmid, r.gpa, r.service_vm_gpa, r.size, r.prot),
                _ => ops.unmap(vmid, r.gpa, r.size),
            };
            if let Err(e) = res {
                return err(e);
            }
        }
        0
    }
}

/// Checks one `vm_memory_region`: 4 KiB granular, non-empty, inside the user VM's physical
/// space, known type and protection bits, and for MR_ADD a source entirely in Service VM RAM
/// (identity-mapped, so host-contiguous).
pub fn check_region(mem: &impl GuestMemory, r: &VmMemoryRegion) -> Result<(), i32> {
    if r.size == 0 || (r.gpa | r.size | r.service_vm_gpa) & 0xFFF != 0 {
        return Err(EINVAL);
    }
    if r.gpa.checked_add(r.size).is_none_or(|e| e > MAX_USER_GPA) {
        return Err(EINVAL);
    }
    match r.r#type {
        MR_ADD => {
            if r.prot & !(MEM_ACCESS_RIGHT_MASK | MEM_TYPE_MASK) != 0
                || !mem.contains(r.service_vm_gpa, r.size)
            {
                return Err(EINVAL);
            }
            Ok(())
        }
        MR_DEL | MR_MODIFY => Ok(()),
        _ => Err(EINVAL),
    }
}

/// ACRN refuses register sets a VM entry would reject: CR0.PG without PE, NW without CD,
/// reserved CR0/CR4 bits, long mode without paging and PAE.
pub fn control_regs_valid(r: &AcrnRegs) -> bool {
    const CR0_DEFINED: u64 = 0xE005_003F;
    // Architecturally defined CR4 bits up to bit 24 except VMXE and SMXE.
    const CR4_ALLOWED: u64 = 0x01FF_FFFF
        & !(Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits() | Cr4Flags::SAFER_MODE_EXTENSIONS.bits());
    if r.cr0 & !CR0_DEFINED != 0 || r.cr4 & !CR4_ALLOWED != 0 {
        return false;
    }
    let cr0 = Cr0Flags::from_bits_retain(r.cr0);
    let cr4 = Cr4Flags::from_bits_retain(r.cr4);
    let efer = EferFlags::from_bits_retain(r.ia32_efer);
    if cr0.contains(Cr0Flags::PAGING) && !cr0.contains(Cr0Flags::PROTECTED_MODE_ENABLE)
        || cr0.contains(Cr0Flags::NOT_WRITE_THROUGH) && !cr0.contains(Cr0Flags::CACHE_DISABLE)
    {
        return false;
    }
    !(efer.contains(EferFlags::LONG_MODE_ENABLE)
        && cr0.contains(Cr0Flags::PAGING)
        && !cr4.contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION))
}

#[cfg(test)]
mod tests;
