//! The VM registry.

use acrn_abi::vm::{AcrnVmCreation, GuestFlags, ACRN_INVALID_VMID};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::RwLock;

use crate::transport::{Hypercall, Hypercalls};
use crate::vm::Vm;
use crate::{HsmError, Result};

/// What to create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmConfig<'a> {
    /// Name of the VM configuration slot (at most 15 bytes, no NUL).
    pub name: &'a str,
    /// Guest flags; the hypervisor honours only the device-model-owned ones.
    pub flags: GuestFlags,
    /// pCPU bitmap; 0 for the static configuration.
    pub cpu_affinity: u64,
}

/// The Hypervisor Service Module: the VMs this Service VM created, over one transport.
pub struct Hsm<H: Hypercall + 'static> {
    hv: Arc<H>,
    vms: RwLock<BTreeMap<u16, Arc<Vm<H>>>>,
}

impl<H: Hypercall + 'static> Hsm<H> {
    /// An HSM with no VMs.
    pub fn new(hv: H) -> Self {
        Self {
            hv: Arc::new(hv),
            vms: RwLock::new(BTreeMap::new()),
        }
    }

    /// The transport, for hypercalls outside a VM's scope.
    pub fn hypervisor(&self) -> &H {
        &self.hv
    }

    /// `HC_CREATE_VM`, then gives the VM its I/O request page (`HC_SET_IOREQ_BUFFER`) and
    /// registers it. The VM starts in CREATED.
    pub fn create_vm(&self, cfg: &VmConfig<'_>) -> Result<Arc<Vm<H>>> {
        let mut cv = AcrnVmCreation {
            vm_flag: cfg.flags.bits(),
            cpu_affinity: cfg.cpu_affinity,
            ..AcrnVmCreation::default()
        };
        if !cv.set_name(cfg.name) {
            return Err(HsmError::InvalidArgument(
                "VM name must be at most 15 bytes without NUL",
            ));
        }
        self.hv
            .create_vm(&mut cv)
            .map_err(|err| HsmError::Hypercall {
                call: "HC_CREATE_VM",
                err,
            })?;
        let vmid = cv.vmid;
        if vmid == ACRN_INVALID_VMID {
            return Err(HsmError::InvalidVmid(vmid));
        }
        if self.vms.read().contains_key(&vmid) {
            return Err(HsmError::VmExists(vmid));
        }
        let vm = Arc::new(Vm::new(
            self.hv.clone(),
            vmid,
            cv.vcpu_num,
            String::from(cfg.name),
            cfg.flags,
        ));
        if let Err(err) = self.hv.set_ioreq_buffer(vmid, vm.ioreq_page_gpa()) {
            // Best effort: the hypervisor destroys only paused VMs.
            let _ = self.hv.pause_vm(vmid);
            let _ = self.hv.destroy_vm(vmid);
            return Err(HsmError::Hypercall {
                call: "HC_SET_IOREQ_BUFFER",
                err,
            });
        }
        self.vms.write().insert(vmid, vm.clone());
        Ok(vm)
    }

    /// `HC_DESTROY_VM` on a PAUSED VM, then forgets it.
    pub fn destroy_vm(&self, vmid: u16) -> Result<()> {
        let vm = self.vm(vmid).ok_or(HsmError::NoSuchVm(vmid))?;
        vm.destroy()?;
        self.vms.write().remove(&vmid);
        Ok(())
    }

    /// A registered VM.
    pub fn vm(&self, vmid: u16) -> Option<Arc<Vm<H>>> {
        self.vms.read().get(&vmid).cloned()
    }

    /// IDs of the registered VMs, ascending.
    pub fn vm_ids(&self) -> Vec<u16> {
        self.vms.read().keys().copied().collect()
    }

    fn snapshot(&self) -> Vec<Arc<Vm<H>>> {
        self.vms.read().values().cloned().collect()
    }

    /// Dispatches the pending requests of every VM (one upcall may cover many slots and VMs).
    /// Keeps going past a failing VM and returns the first error.
    pub fn dispatch(&self) -> Result<usize> {
        let mut count = 0;
        let mut first_err = None;
        for vm in self.snapshot() {
            match vm.dispatch() {
                Ok(n) => count += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(count), Err)
    }

    /// Runs every VM's kernel clients (see [`Vm::process_kernel_clients`]).
    pub fn process_kernel_clients(&self) -> Result<usize> {
        let mut count = 0;
        let mut first_err = None;
        for vm in self.snapshot() {
            match vm.process_kernel_clients() {
                Ok(n) => count += n,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(count), Err)
    }

    /// The upcall handler (vector 0xF3): dispatch, then run kernel clients inline. Returns how
    /// many requests were dispatched.
    pub fn handle_upcall(&self) -> Result<usize> {
        let dispatched = self.dispatch();
        let processed = self.process_kernel_clients();
        let n = dispatched?;
        processed?;
        Ok(n)
    }
}
