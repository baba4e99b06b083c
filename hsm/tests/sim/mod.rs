//! A simulated hypervisor: implements the hypercall transport over host memory (GPAs are host
//! addresses) and plays the vCPUs' side of the I/O request page, checking the protocol.
#![allow(dead_code)] // each test binary uses a different part

use acrn_abi::hypercall::*;
use acrn_abi::ioreq::*;
use acrn_abi::irq::{AcrnIrqlineOps, AcrnMsiEntry};
use acrn_abi::memory::{SetRegions, VmMemoryRegion};
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::{AcrnVmCreation, GuestFlags, VmState, ACRN_INVALID_VMID};
use acrn_hsm::Hypercall;
use std::collections::BTreeMap;
use std::ptr::{addr_of, addr_of_mut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

const EINVAL: i64 = -22;
const ENOTTY: i64 = -25;

#[derive(Debug, Default)]
pub struct SimVm {
    pub name: String,
    pub state: Option<VmState>,
    pub vcpu_num: u16,
    pub polling: bool,
    pub page: usize,
    pub notified: [bool; 16],
    pub regions: Vec<VmMemoryRegion>,
    pub msis: Vec<AcrnMsiEntry>,
    pub irqlines: Vec<AcrnIrqlineOps>,
    pub regs: Vec<AcrnVcpuRegs>,
    pub completions: u64,
}

#[derive(Default)]
pub struct SimState {
    pub vms: BTreeMap<u16, SimVm>,
    pub calls: Vec<u64>,
    pub errors: Vec<String>,
    /// Makes the next hypercall with this ID fail with this value.
    pub fail_next: Option<(u64, i64)>,
}

#[derive(Default)]
pub struct SimHv {
    pub st: Mutex<SimState>,
    notify_cv: Condvar,
    upcalls: AtomicU64,
    upcall_mx: Mutex<()>,
    upcall_cv: Condvar,
}

/// One access a simulated vCPU makes.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    PioRead { port: u64, size: u64 },
    PioWrite { port: u64, size: u64, value: u32 },
    MmioRead { addr: u64, size: u64 },
    MmioWrite { addr: u64, size: u64, value: u64 },
}

impl SimHv {
    pub fn with<R>(&self, f: impl FnOnce(&mut SimState) -> R) -> R {
        f(&mut self.st.lock().unwrap())
    }

    pub fn errors(&self) -> Vec<String> {
        self.with(|s| s.errors.clone())
    }

    pub fn calls_of(&self, id: u64) -> usize {
        self.with(|s| s.calls.iter().filter(|&&c| c == id).count())
    }

    pub fn upcalls(&self) -> u64 {
        self.upcalls.load(Ordering::Acquire)
    }

    /// Waits until the upcall count differs from `seen` (or the timeout passes).
    pub fn wait_upcall(&self, seen: u64, timeout: Duration) {
        let g = self.upcall_mx.lock().unwrap();
        let _unused = self
            .upcall_cv
            .wait_timeout_while(g, timeout, |_| self.upcalls.load(Ordering::Acquire) == seen)
            .unwrap();
    }

    /// Wakes upcall waiters without a new request (to let them see a stop flag).
    pub fn kick(&self) {
        self.upcalls.fetch_add(1, Ordering::AcqRel);
        let _g = self.upcall_mx.lock().unwrap();
        self.upcall_cv.notify_all();
    }

    fn slot(&self, vmid: u16, vcpu: usize) -> *mut IoRequest {
        let page = self.with(|s| s.vms.get(&vmid).map(|v| v.page).unwrap_or(0));
        assert_ne!(page, 0, "VM {vmid} has no ioreq page");
        let page = page as *mut IoRequestBuffer;
        // SAFETY: the HSM keeps the page alive while the VM exists.
        unsafe { addr_of_mut!((*page).req_slot[vcpu]) }
    }

    /// Slot state, for tests.
    pub fn slot_state(&self, vmid: u16, vcpu: usize) -> u32 {
        // SAFETY: atomic field of a live page.
        unsafe { (*addr_of!((*self.slot(vmid, vcpu)).processed)).load(Ordering::Acquire) }
    }

    /// Posts a request from `vcpu` like the hypervisor's `acrn_insert_request` and fires an
    /// upcall. Does not wait.
    pub fn post(&self, vmid: u16, vcpu: usize, access: Access) {
        let polling = self.with(|s| s.vms[&vmid].polling);
        let slot = self.slot(vmid, vcpu);
        // SAFETY: the slot is FREE, so the hypervisor side owns it.
        unsafe {
            let state = (*addr_of!((*slot).processed)).load(Ordering::Acquire);
            if state != ACRN_IOREQ_STATE_FREE {
                self.with(|s| {
                    s.errors.push(format!(
                        "VM{vmid} vCPU{vcpu}: post into slot in state {state}"
                    ))
                });
            }
            let (ty, reqs) = encode(access);
            addr_of_mut!((*slot).r#type).write_volatile(ty);
            addr_of_mut!((*slot).reqs).write_volatile(reqs);
            addr_of_mut!((*slot).completion_polling).write_volatile(polling.into());
            (*addr_of!((*slot).processed)).store(ACRN_IOREQ_STATE_PENDING, Ordering::Release);
        }
        self.upcalls.fetch_add(1, Ordering::AcqRel);
        let _g = self.upcall_mx.lock().unwrap();
        self.upcall_cv.notify_all();
    }

    /// Waits for the request of `vcpu` to complete (notify or polling, as the VM is set up),
    /// frees the slot and returns the value a read produced. `None` on timeout.
    pub fn wait_complete(&self, vmid: u16, vcpu: usize, timeout: Duration) -> Option<u64> {
        let slot = self.slot(vmid, vcpu);
        let polling = self.with(|s| s.vms[&vmid].polling);
        // SAFETY: atomic field of a live page.
        let state = || unsafe { (*addr_of!((*slot).processed)).load(Ordering::Acquire) };
        let deadline = Instant::now() + timeout;
        if polling {
            while state() != ACRN_IOREQ_STATE_COMPLETE {
                if Instant::now() > deadline {
                    return None;
                }
                std::thread::yield_now();
            }
        } else {
            let mut g = self.st.lock().unwrap();
            while !g.vms[&vmid].notified[vcpu] {
                let left = deadline.checked_duration_since(Instant::now())?;
                g = self.notify_cv.wait_timeout(g, left).unwrap().0;
            }
            g.vms.get_mut(&vmid).unwrap().notified[vcpu] = false;
        }
        // SAFETY: COMPLETE: the hypervisor side owns the slot again.
        let value = unsafe {
            let ty = addr_of!((*slot).r#type).read_volatile();
            let reqs = addr_of!((*slot).reqs).read_volatile();
            match ty {
                ACRN_IOREQ_TYPE_PORTIO | ACRN_IOREQ_TYPE_PCICFG => {
                    u64::from(reqs.pio_request.value)
                }
                _ => reqs.mmio_request.value,
            }
        };
        // SAFETY: as above.
        unsafe { (*addr_of!((*slot).processed)).store(ACRN_IOREQ_STATE_FREE, Ordering::Release) };
        self.with(|s| s.vms.get_mut(&vmid).unwrap().completions += 1);
        Some(value)
    }

    /// `post` + `wait_complete` with a generous timeout; a timeout is recorded as an error.
    pub fn io(&self, vmid: u16, vcpu: usize, access: Access) -> u64 {
        self.post(vmid, vcpu, access);
        match self.wait_complete(vmid, vcpu, Duration::from_secs(20)) {
            Some(v) => v,
            None => {
                self.with(|s| {
                    s.errors
                        .push(format!("VM{vmid} vCPU{vcpu}: {access:?} never completed"))
                });
                0
            }
        }
    }

    fn call(&self, id: u64, p1: u64, p2: u64) -> i64 {
        let mut s = self.st.lock().unwrap();
        s.calls.push(id);
        if let Some((fid, ret)) = s.fail_next {
            if fid == id {
                s.fail_next = None;
                return ret;
            }
        }
        let vmid = p1 as u16;
        // SAFETY (all derefs below): the HSM passes host addresses of live objects as GPAs.
        match id {
            HC_CREATE_VM => unsafe {
                let cv = p1 as *mut AcrnVmCreation;
                let name = (*cv).name_bytes().to_vec();
                let name = String::from_utf8_lossy(&name).into_owned();
                if s.vms.values().any(|v| v.name == name) {
                    (*cv).vmid = ACRN_INVALID_VMID;
                    return -1;
                }
                let id = (1u16..).find(|i| !s.vms.contains_key(i)).unwrap();
                let affinity = (*cv).cpu_affinity;
                let vcpus = if affinity == 0 {
                    2
                } else {
                    affinity.count_ones() as u16
                };
                let polling = GuestFlags::from_bits_retain((*cv).vm_flag)
                    .contains(GuestFlags::IO_COMPLETION_POLLING);
                (*cv).vmid = id;
                (*cv).vcpu_num = vcpus;
                s.vms.insert(
                    id,
                    SimVm {
                        name,
                        state: Some(VmState::Created),
                        vcpu_num: vcpus,
                        polling,
                        ..SimVm::default()
                    },
                );
                0
            },
            HC_SET_IOREQ_BUFFER => {
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return EINVAL;
                };
                if vm.state != Some(VmState::Created) {
                    return -1;
                }
                // SAFETY: double indirection: p2 points at a u64 holding the page GPA.
                let page = unsafe { *(p2 as *const u64) };
                if page & 0xFFF != 0 {
                    s.errors
                        .push(format!("ioreq page {page:#x} not 4 KiB-aligned"));
                    return EINVAL;
                }
                vm.page = page as usize;
                let buf = page as *const IoRequestBuffer;
                for i in 0..ACRN_IO_REQUEST_MAX {
                    // SAFETY: live page.
                    unsafe { (*buf).req_slot[i].set_state(IoReqState::Free) };
                }
                0
            }
            HC_START_VM | HC_PAUSE_VM | HC_RESET_VM | HC_DESTROY_VM => {
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return ENOTTY;
                };
                let st = vm.state.unwrap();
                let next = match (id, st) {
                    (HC_START_VM, VmState::Created) if vm.page != 0 => VmState::Running,
                    (HC_PAUSE_VM, s) if s != VmState::PoweredOff => VmState::Paused,
                    (HC_RESET_VM, VmState::Paused) => VmState::Created,
                    (HC_DESTROY_VM, VmState::Paused) => VmState::PoweredOff,
                    _ => return -1,
                };
                vm.state = Some(next);
                if id == HC_DESTROY_VM {
                    s.vms.remove(&vmid);
                }
                0
            }
            HC_SET_VCPU_REGS => {
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return ENOTTY;
                };
                if matches!(vm.state, Some(VmState::Running | VmState::PoweredOff)) {
                    return -1;
                }
                // SAFETY: live AcrnVcpuRegs.
                vm.regs.push(unsafe { *(p2 as *const AcrnVcpuRegs) });
                0
            }
            HC_INJECT_MSI => {
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return ENOTTY;
                };
                // SAFETY: live AcrnMsiEntry.
                vm.msis.push(unsafe { *(p2 as *const AcrnMsiEntry) });
                0
            }
            HC_SET_IRQLINE => {
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return ENOTTY;
                };
                vm.irqlines.push(AcrnIrqlineOps::from_u64(p2));
                0
            }
            HC_VM_SET_MEMORY_REGIONS => {
                // SAFETY: live SetRegions and region array.
                let (hdr, regions) = unsafe {
                    let hdr = *(p1 as *const SetRegions);
                    let r = std::slice::from_raw_parts(
                        hdr.regions_gpa as *const VmMemoryRegion,
                        hdr.mr_num as usize,
                    );
                    (hdr, r.to_vec())
                };
                let Some(vm) = s.vms.get_mut(&hdr.vmid) else {
                    return ENOTTY;
                };
                vm.regions.extend(regions);
                0
            }
            HC_NOTIFY_REQUEST_FINISH => {
                let vcpu = p2 as usize;
                let Some(vm) = s.vms.get_mut(&vmid) else {
                    return ENOTTY;
                };
                if vcpu >= usize::from(vm.vcpu_num) {
                    return EINVAL;
                }
                let (page, polling, already) = (vm.page, vm.polling, vm.notified[vcpu]);
                vm.notified[vcpu] = true;
                let buf = page as *const IoRequestBuffer;
                // SAFETY: live page.
                let state = unsafe { (*buf).req_slot[vcpu].processed.load(Ordering::Acquire) };
                if polling {
                    s.errors
                        .push(format!("VM{vmid} vCPU{vcpu}: notify in polling mode"));
                }
                if already || state != ACRN_IOREQ_STATE_COMPLETE {
                    s.errors.push(format!(
                        "VM{vmid} vCPU{vcpu}: notify with state {state}, already={already}"
                    ));
                }
                self.notify_cv.notify_all();
                0
            }
            _ => ENOTTY,
        }
    }
}

fn encode(access: Access) -> (u32, IoRequestPayload) {
    let mut p = IoRequestPayload::default();
    let ty = match access {
        Access::PioRead { port, size } => {
            p.pio_request = PioRequest {
                direction: ACRN_IOREQ_DIR_READ,
                address: port,
                size,
                ..Default::default()
            };
            ACRN_IOREQ_TYPE_PORTIO
        }
        Access::PioWrite { port, size, value } => {
            p.pio_request = PioRequest {
                direction: ACRN_IOREQ_DIR_WRITE,
                address: port,
                size,
                value,
                reserved: 0,
            };
            ACRN_IOREQ_TYPE_PORTIO
        }
        Access::MmioRead { addr, size } => {
            p.mmio_request = MmioRequest {
                direction: ACRN_IOREQ_DIR_READ,
                address: addr,
                size,
                ..Default::default()
            };
            ACRN_IOREQ_TYPE_MMIO
        }
        Access::MmioWrite { addr, size, value } => {
            p.mmio_request = MmioRequest {
                direction: ACRN_IOREQ_DIR_WRITE,
                address: addr,
                size,
                value,
                reserved: 0,
            };
            ACRN_IOREQ_TYPE_MMIO
        }
    };
    (ty, p)
}

/// Lets tests share one simulator between the HSM (which owns its transport) and vCPU threads.
pub struct SharedSim(pub std::sync::Arc<SimHv>);

// SAFETY: `gpa_of` is the identity, and the simulator dereferences GPAs as host addresses.
unsafe impl Hypercall for SharedSim {
    unsafe fn hypercall(&self, id: u64, param1: u64, param2: u64) -> i64 {
        self.0.call(id, param1, param2)
    }
}
