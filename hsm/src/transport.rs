use acrn_abi::device::{AcrnMmiodev, AcrnPcidev, AcrnVdev};
use acrn_abi::hypercall::*;
use acrn_abi::irq::{AcrnIrqlineOps, AcrnMsiEntry, HcPtdevIrq};
use acrn_abi::memory::{SetRegions, VmGpa2Hpa, VmMemoryRegion};
use acrn_abi::misc::HcApiVersion;
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::AcrnVmCreation;
use core::fmt;

/// A way to issue ACRN hypercalls: `VMCALL`/`VMMCALL` with the ID in R8, `param1` in RDI,
/// `param2` in RSI, result in RAX (see [`acrn_abi::hypercall`]).
///
/// # Safety
///
/// Implementors promise that [`Hypercall::gpa_of`] returns the Service VM guest-physical address
/// of the memory at the pointer, valid for the whole object it points to (the safe
/// [`Hypercalls`] wrappers pass Rust objects to the hypervisor through it).
pub unsafe trait Hypercall: Send + Sync {
    /// Issues hypercall `id` and returns RAX.
    ///
    /// # Safety
    ///
    /// Parameters that the hypercall interprets as GPAs must refer to memory that is valid, and
    /// not otherwise borrowed, for the accesses that hypercall makes.
    unsafe fn hypercall(&self, id: u64, param1: u64, param2: u64) -> i64;

    /// Service VM GPA of `ptr`. The reference Service VM identity-maps its memory.
    fn gpa_of(&self, ptr: *const u8) -> u64 {
        ptr as u64
    }
}

/// A negative hypercall result, kept as the positive errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HcError(pub i64);

impl HcError {
    /// Converts RAX into `Ok(rax)` or the error it encodes.
    pub fn check(rax: i64) -> Result<i64, HcError> {
        if rax < 0 {
            Err(HcError(rax.unsigned_abs().min(i64::MAX as u64) as i64))
        } else {
            Ok(rax)
        }
    }
}

impl fmt::Display for HcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = i32::try_from(self.0).ok().and_then(acrn_abi::errno::name);
        match name {
            Some(n) => write!(f, "-{} ({n})", self.0),
            None => write!(f, "-{}", self.0),
        }
    }
}

/// Typed, safe wrappers of every Service VM hypercall the HSM uses. Each passes Rust objects by
/// GPA ([`Hypercall::gpa_of`]) and turns RAX into a `Result`. VM IDs are relative.
pub trait Hypercalls: Hypercall {
    /// `HC_GET_API_VERSION`.
    fn get_api_version(&self) -> Result<HcApiVersion, HcError> {
        let mut v = HcApiVersion::default();
        // SAFETY: `v` is a live, exclusively borrowed hc_api_version.
        HcError::check(unsafe { self.hypercall(HC_GET_API_VERSION, self.gpa_of(ptr(&mut v)), 0) })?;
        Ok(v)
    }

    /// `HC_SERVICE_VM_OFFLINE_CPU` for the vCPU with this LAPIC ID.
    fn service_vm_offline_cpu(&self, lapic_id: u32) -> Result<(), HcError> {
        // SAFETY: no pointer parameters.
        HcError::check(unsafe { self.hypercall(HC_SERVICE_VM_OFFLINE_CPU, lapic_id.into(), 0) })
            .map(drop)
    }

    /// `HC_SET_CALLBACK_VECTOR`.
    fn set_callback_vector(&self, vector: u8) -> Result<(), HcError> {
        // SAFETY: no pointer parameters.
        HcError::check(unsafe { self.hypercall(HC_SET_CALLBACK_VECTOR, vector.into(), 0) })
            .map(drop)
    }

    /// `HC_CREATE_VM`; the hypervisor writes `vmid` and `vcpu_num` back into `cv`.
    fn create_vm(&self, cv: &mut AcrnVmCreation) -> Result<(), HcError> {
        // SAFETY: `cv` is live and exclusively borrowed for the in/out access.
        HcError::check(unsafe { self.hypercall(HC_CREATE_VM, self.gpa_of(ptr(cv)), 0) }).map(drop)
    }

    /// `HC_DESTROY_VM`.
    fn destroy_vm(&self, vmid: u16) -> Result<(), HcError> {
        vm_op(self, HC_DESTROY_VM, vmid)
    }

    /// `HC_START_VM`.
    fn start_vm(&self, vmid: u16) -> Result<(), HcError> {
        vm_op(self, HC_START_VM, vmid)
    }

    /// `HC_PAUSE_VM`.
    fn pause_vm(&self, vmid: u16) -> Result<(), HcError> {
        vm_op(self, HC_PAUSE_VM, vmid)
    }

    /// `HC_RESET_VM`.
    fn reset_vm(&self, vmid: u16) -> Result<(), HcError> {
        vm_op(self, HC_RESET_VM, vmid)
    }

    /// `HC_SET_VCPU_REGS`.
    fn set_vcpu_regs(&self, vmid: u16, regs: &AcrnVcpuRegs) -> Result<(), HcError> {
        vm_in(self, HC_SET_VCPU_REGS, vmid, regs)
    }

    /// `HC_INJECT_MSI`.
    fn inject_msi(&self, vmid: u16, msi: &AcrnMsiEntry) -> Result<(), HcError> {
        vm_in(self, HC_INJECT_MSI, vmid, msi)
    }

    /// `HC_SET_IRQLINE` (the operation is passed by value).
    fn set_irqline(&self, vmid: u16, ops: AcrnIrqlineOps) -> Result<(), HcError> {
        // SAFETY: no pointer parameters.
        HcError::check(unsafe { self.hypercall(HC_SET_IRQLINE, vmid.into(), ops.to_u64()) })
            .map(drop)
    }

    /// `HC_SET_IOREQ_BUFFER`: `page_gpa` goes through a u64 in memory (double indirection).
    fn set_ioreq_buffer(&self, vmid: u16, page_gpa: u64) -> Result<(), HcError> {
        vm_in(self, HC_SET_IOREQ_BUFFER, vmid, &page_gpa)
    }

    /// `HC_NOTIFY_REQUEST_FINISH` (the vCPU ID is passed by value).
    fn notify_request_finish(&self, vmid: u16, vcpu: u16) -> Result<(), HcError> {
        // SAFETY: no pointer parameters.
        HcError::check(unsafe {
            self.hypercall(HC_NOTIFY_REQUEST_FINISH, vmid.into(), vcpu.into())
        })
        .map(drop)
    }

    /// `HC_VM_SET_MEMORY_REGIONS` for a batch of regions of one VM.
    fn set_memory_regions(&self, vmid: u16, regions: &[VmMemoryRegion]) -> Result<(), HcError> {
        let mr_num =
            u32::try_from(regions.len()).map_err(|_| HcError(acrn_abi::errno::EINVAL.into()))?;
        let batch = SetRegions {
            vmid,
            mr_num,
            regions_gpa: self.gpa_of(regions.as_ptr().cast()),
            ..SetRegions::default()
        };
        // SAFETY: `batch` and `regions` are live and only read by the hypervisor.
        HcError::check(unsafe {
            self.hypercall(HC_VM_SET_MEMORY_REGIONS, self.gpa_of(ptr_ref(&batch)), 0)
        })
        .map(drop)
    }

    /// `HC_VM_GPA2HPA`.
    fn vm_gpa2hpa(&self, vmid: u16, gpa: u64) -> Result<u64, HcError> {
        let mut q = VmGpa2Hpa { gpa, hpa: 0 };
        // SAFETY: `q` is live and exclusively borrowed for the in/out access.
        HcError::check(unsafe {
            self.hypercall(HC_VM_GPA2HPA, vmid.into(), self.gpa_of(ptr(&mut q)))
        })?;
        Ok(q.hpa)
    }

    /// `HC_SET_PTDEV_INTR_INFO`.
    fn set_ptdev_intr(&self, vmid: u16, irq: &HcPtdevIrq) -> Result<(), HcError> {
        vm_in(self, HC_SET_PTDEV_INTR_INFO, vmid, irq)
    }

    /// `HC_RESET_PTDEV_INTR_INFO`.
    fn reset_ptdev_intr(&self, vmid: u16, irq: &HcPtdevIrq) -> Result<(), HcError> {
        vm_in(self, HC_RESET_PTDEV_INTR_INFO, vmid, irq)
    }

    /// `HC_ASSIGN_PCIDEV`.
    fn assign_pcidev(&self, vmid: u16, dev: &AcrnPcidev) -> Result<(), HcError> {
        vm_in(self, HC_ASSIGN_PCIDEV, vmid, dev)
    }

    /// `HC_DEASSIGN_PCIDEV`.
    fn deassign_pcidev(&self, vmid: u16, dev: &AcrnPcidev) -> Result<(), HcError> {
        vm_in(self, HC_DEASSIGN_PCIDEV, vmid, dev)
    }

    /// `HC_ASSIGN_MMIODEV`.
    fn assign_mmiodev(&self, vmid: u16, dev: &AcrnMmiodev) -> Result<(), HcError> {
        vm_in(self, HC_ASSIGN_MMIODEV, vmid, dev)
    }

    /// `HC_DEASSIGN_MMIODEV`.
    fn deassign_mmiodev(&self, vmid: u16, dev: &AcrnMmiodev) -> Result<(), HcError> {
        vm_in(self, HC_DEASSIGN_MMIODEV, vmid, dev)
    }

    /// `HC_ADD_VDEV` (Linux: `HC_CREATE_VDEV`).
    fn add_vdev(&self, vmid: u16, dev: &AcrnVdev) -> Result<(), HcError> {
        vm_in(self, HC_ADD_VDEV, vmid, dev)
    }

    /// `HC_REMOVE_VDEV` (Linux: `HC_DESTROY_VDEV`).
    fn remove_vdev(&self, vmid: u16, dev: &AcrnVdev) -> Result<(), HcError> {
        vm_in(self, HC_REMOVE_VDEV, vmid, dev)
    }
}

impl<H: Hypercall + ?Sized> Hypercalls for H {}

fn ptr<T>(r: &mut T) -> *const u8 {
    (r as *mut T).cast_const().cast()
}

fn ptr_ref<T>(r: &T) -> *const u8 {
    (r as *const T).cast()
}

/// A hypercall whose only parameter is the VM ID. Private: `id` must be such a hypercall.
fn vm_op<H: Hypercall + ?Sized>(h: &H, id: u64, vmid: u16) -> Result<(), HcError> {
    // SAFETY: callers pass only IDs that take no pointer parameter.
    HcError::check(unsafe { h.hypercall(id, vmid.into(), 0) }).map(drop)
}

/// A hypercall taking the VM ID and the GPA of an input structure the hypervisor only reads.
/// Private: `id` must be such a hypercall and `T` its argument type.
fn vm_in<H: Hypercall + ?Sized, T>(h: &H, id: u64, vmid: u16, arg: &T) -> Result<(), HcError> {
    // SAFETY: `arg` is live; callers pass only IDs whose handler reads `T` and writes nothing.
    HcError::check(unsafe { h.hypercall(id, vmid.into(), h.gpa_of(ptr_ref(arg))) }).map(drop)
}
