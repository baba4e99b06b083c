//! Bare-metal side of post-launched VMs (see the module documentation of `postvm`): the
//! per-VM run state the hypercalls change, and the loop a pCPU runs while the Service VM's vCPU
//! pinned to it waits for INIT/SIPI.

use super::initial_state_from_acrn;
use crate::arch::svm::{SvmCaps, SvmVcpu};
use crate::arch::vmx::{self, VmxVcpu};
use crate::arch::x86::cpu::{CpuCell, MAX_PCPUS};
use crate::arch::x86::{self, lapic, phys_write32};
use crate::hv::frames;
use crate::hvlog;
use crate::hypercall::{Outcome, MAX_VCPUS_PER_VM, MAX_VM_NUM};
use crate::ioreq::{self, Access};
use crate::vcpu::{InitialState, Injection, IoDirection, Segment, Vcpu, VmExit};
use acrn_abi::errno::ENOSYS;
use acrn_abi::{AcrnRegs, GuestFlags};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use spin::{Mutex, Once};

const VCPUS: usize = MAX_VCPUS_PER_VM as usize;

/// Run state of one post-launched VM slot (absolute VM id = index).
struct PostVm {
    /// Set by HC_START_VM, cleared by pause (and so before reset and destroy).
    run: AtomicBool,
    /// Bumped by every start: a pCPU reloads the vCPU's start state when it changes.
    generation: AtomicU32,
    /// pCPUs currently running (or holding) a vCPU of this VM, bit n = pCPU n.
    active: AtomicU64,
    /// Affinity: vCPU i runs on the i-th set bit.
    pcpus: AtomicU64,
    /// Root of the VM's nested page table.
    root: AtomicU64,
    /// Host-physical (= Service VM GPA) address of the VM's I/O request page.
    ioreq_page: AtomicU64,
    polling: AtomicBool,
    /// Start state per vCPU from HC_SET_VCPU_REGS; `None` = power-on state.
    regs: Mutex<[Option<InitialState>; VCPUS]>,
}

impl PostVm {
    const fn new() -> Self {
        PostVm {
            run: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            active: AtomicU64::new(0),
            pcpus: AtomicU64::new(0),
            root: AtomicU64::new(0),
            ioreq_page: AtomicU64::new(0),
            polling: AtomicBool::new(false),
            regs: Mutex::new([None; VCPUS]),
        }
    }
}

static POST: [PostVm; MAX_VM_NUM] = [const { PostVm::new() }; MAX_VM_NUM];

/// Per pCPU: the SVM host save area of the pCPU (0 = cannot run post-launched vCPUs) and the
/// VMCB page it uses for them.
static HOSTS: [AtomicU64; MAX_PCPUS] = [const { AtomicU64::new(0) }; MAX_PCPUS];
static VMCBS: [AtomicU64; MAX_PCPUS] = [const { AtomicU64::new(0) }; MAX_PCPUS];
static CAPS: Once<SvmCaps> = Once::new();
/// Per pCPU under VMX: whether it may run post-launched vCPUs (VMX is on there), and the VMCS
/// (with its bitmaps) it keeps for them between `serve_until` calls, recycled for each new vCPU.
static VMX_HOSTS: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];
static VMX_SPARE: [CpuCell<Option<VmxVcpu>>; MAX_PCPUS] = [const { CpuCell::new(None) }; MAX_PCPUS];

/// The Service VM's BSP (where the upcall goes) and the upcall vector.
static SERVICE_BSP_APIC: AtomicU32 = AtomicU32::new(u32::MAX);
static UPCALL_VECTOR: AtomicU8 = AtomicU8::new(acrn_abi::irq::HSM_UPCALL_VECTOR);

/// Cooperative pause: how long a hypercall waits for a vCPU to leave its pCPU.
const PAUSE_WAIT_US: u64 = 1_000_000;

pub fn set_service_bsp(apic_id: u32) {
    SERVICE_BSP_APIC.store(apic_id, Ordering::Relaxed);
}

pub fn set_upcall_vector(v: u8) {
    UPCALL_VECTOR.store(v, Ordering::Relaxed);
}

/// Called by the VM layer on a pCPU that runs a Service VM AP under SVM: post-launched vCPUs
/// pinned here may use it while that AP waits for SIPI.
pub fn register_svm_host(pcpu: usize, host_pa: u64, caps: SvmCaps) {
    if let Some(h) = HOSTS.get(pcpu) {
        CAPS.call_once(|| caps);
        h.store(host_pa, Ordering::Release);
    }
}

/// As [`register_svm_host`] under VMX (VMX is already on for this pCPU).
pub fn register_vmx_host(pcpu: usize) {
    if let Some(h) = VMX_HOSTS.get(pcpu) {
        h.store(true, Ordering::Release);
    }
}

fn can_host(pcpu: usize) -> bool {
    HOSTS
        .get(pcpu)
        .is_some_and(|h| h.load(Ordering::Acquire) != 0)
        || VMX_HOSTS
            .get(pcpu)
            .is_some_and(|h| h.load(Ordering::Acquire))
}

fn vm(vmid: u16) -> Option<&'static PostVm> {
    POST.get(vmid as usize)
}

/// HC_CREATE_VM: a VM with `pcpus` as affinity and every vCPU in its power-on state.
pub fn create(vmid: u16, pcpus: u64, flags: u64) {
    if let Some(v) = vm(vmid) {
        v.run.store(false, Ordering::SeqCst);
        *v.regs.lock() = [None; VCPUS];
        v.polling.store(
            flags & GuestFlags::IO_COMPLETION_POLLING.bits() != 0,
            Ordering::Relaxed,
        );
        v.pcpus.store(pcpus, Ordering::Release);
    }
}

pub fn set_vcpu_regs(vmid: u16, vcpu: u16, regs: &AcrnRegs) {
    if let Some(v) = vm(vmid) {
        if let Some(slot) = v.regs.lock().get_mut(vcpu as usize) {
            *slot = Some(initial_state_from_acrn(regs));
        }
    }
}

/// HC_START_VM: the BSP (vCPU 0) runs on the lowest pCPU of the affinity.
pub fn start(vmid: u16, root: u64, ioreq_page: u64) -> Result<(), i32> {
    let v = vm(vmid).ok_or(ENOSYS)?;
    let pcpus = v.pcpus.load(Ordering::Acquire);
    let bsp_pcpu = pcpus.trailing_zeros() as usize;
    if !can_host(bsp_pcpu) {
        hvlog!(
            "VM {vmid}: pCPU {bsp_pcpu} cannot run post-launched vCPUs (only pCPUs of Service VM \
             APs waiting for SIPI can); HC_START_VM refused"
        );
        return Err(ENOSYS);
    }
    v.root.store(root, Ordering::Relaxed);
    v.ioreq_page.store(ioreq_page, Ordering::Relaxed);
    v.generation.fetch_add(1, Ordering::Release);
    v.run.store(true, Ordering::SeqCst);
    hvlog!("VM {vmid}: post-launched, BSP on pCPU {bsp_pcpu}, started");
    Ok(())
}

/// HC_PAUSE_VM: no vCPU of the VM runs once this returns (unless one never leaves the guest
/// within [`PAUSE_WAIT_US`], which is logged; it then stops at its next exit).
pub fn pause(vmid: u16) {
    let Some(v) = vm(vmid) else { return };
    v.run.store(false, Ordering::SeqCst);
    for _ in 0..PAUSE_WAIT_US / 10 {
        if v.active.load(Ordering::SeqCst) == 0 {
            return;
        }
        x86::delay_us(10);
    }
    hvlog!(
        "VM {vmid}: a vCPU did not leave the guest within {} ms of the pause; it stops at its next exit",
        PAUSE_WAIT_US / 1000
    );
}

/// HC_RESET_VM / HC_DESTROY_VM (the VM is paused): every vCPU back to its power-on state.
pub fn reset(vmid: u16) {
    if let Some(v) = vm(vmid) {
        *v.regs.lock() = [None; VCPUS];
    }
}

pub fn destroy(vmid: u16) {
    if let Some(v) = vm(vmid) {
        reset(vmid);
        v.pcpus.store(0, Ordering::Release);
    }
}

/// The architectural power-on state (reset vector 0xFFFF0), for a vCPU started without
/// HC_SET_VCPU_REGS.
fn power_on_state() -> InitialState {
    let data = Segment {
        selector: 0,
        base: 0,
        limit: 0xFFFF,
        access: 0x93,
    };
    InitialState {
        rip: 0xFFF0,
        rflags: 2,
        cr0: 0x6000_0010,
        cs: Segment {
            selector: 0xF000,
            base: 0xFFFF_0000,
            limit: 0xFFFF,
            access: 0x9B,
        },
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        tr: Segment {
            selector: 0,
            base: 0,
            limit: 0xFFFF,
            access: 0x8B,
        },
        ldtr: Segment {
            selector: 0,
            base: 0,
            limit: 0xFFFF,
            access: 0x82,
        },
        gdtr_limit: 0xFFFF,
        idtr_limit: 0xFFFF,
        ..Default::default()
    }
}

/// A post-launched vCPU of either backend.
enum PostVcpu {
    Svm(SvmVcpu),
    Vmx(VmxVcpu),
}

/// The vCPU this pCPU currently holds.
struct Current {
    vmid: usize,
    generation: u32,
    vcpu: PostVcpu,
    /// Halted (nothing can wake it: no interrupts reach post-launched VMs) or stopped after
    /// an exit that is not handled: it stays off until the VM is started again.
    idle: bool,
}

/// Runs the post-launched vCPUs pinned to `pcpu` until `done()` (the Service VM's vCPU here
/// got its SIPI, or its VM stopped). Returns at once if this pCPU cannot run them.
pub fn serve_until(pcpu: usize, done: &dyn Fn() -> bool) {
    if !can_host(pcpu) {
        return;
    }
    // SAFETY: the slot of the calling pCPU, touched only here.
    let spare = unsafe { &mut *VMX_SPARE[pcpu].get() };
    let mut cur: Option<Current> = None;
    serve(pcpu, done, &mut cur, spare);
    // Keep the VMCS for the next call (the pool of VMX vCPU pages is fixed).
    if let Some(Current {
        vcpu: PostVcpu::Vmx(v),
        ..
    }) = cur
    {
        *spare = Some(v);
    }
}

/// A fresh vCPU for absolute VM `vmid` on this pCPU, reusing the VMCS `old` or `spare` holds.
fn new_vcpu(
    pcpu: usize,
    vmid: usize,
    root: u64,
    old: Option<PostVcpu>,
    spare: &mut Option<VmxVcpu>,
) -> Result<PostVcpu, &'static str> {
    let host = HOSTS[pcpu].load(Ordering::Acquire);
    if let (true, Some(&caps)) = (host != 0, CAPS.get()) {
        let vmcb = vmcb_page(pcpu).ok_or("out of memory for a post-launched VMCB")?;
        return Ok(PostVcpu::Svm(SvmVcpu::new(
            vmcb,
            host,
            root,
            vmid as u32 + 1,
            caps,
        )));
    }
    let reuse = match old {
        Some(PostVcpu::Vmx(v)) => Some(v),
        _ => spare.take(),
    };
    let vpid = vmid as u16 + 1;
    let v = match reuse {
        Some(v) => v.recycle(vmx::eptp(root), vpid),
        None => VmxVcpu::new(vmx::eptp(root), vpid),
    };
    v.map(PostVcpu::Vmx)
        .map_err(|_| "no VMCS for a post-launched vCPU")
}

fn serve(
    pcpu: usize,
    done: &dyn Fn() -> bool,
    cur: &mut Option<Current>,
    spare: &mut Option<VmxVcpu>,
) {
    let bit = 1u64 << pcpu;
    while !done() {
        let mut ran = false;
        for (vmid, v) in POST.iter().enumerate() {
            let pcpus = v.pcpus.load(Ordering::Acquire);
            if pcpus & bit == 0 || !v.run.load(Ordering::Acquire) {
                continue;
            }
            v.active.fetch_or(bit, Ordering::SeqCst);
            if !v.run.load(Ordering::SeqCst) {
                v.active.fetch_and(!bit, Ordering::SeqCst);
                continue;
            }
            let idx = (pcpus & (bit - 1)).count_ones() as usize;
            let generation = v.generation.load(Ordering::Acquire);
            let fresh = cur
                .as_ref()
                .is_some_and(|c| c.vmid == vmid && c.generation == generation);
            if !fresh {
                // Only the BSP starts by itself (ACRN launches the BSP only); an AP runs once
                // the Service VM gave it registers.
                let st = match (idx, v.regs.lock()[idx]) {
                    (_, Some(st)) => st,
                    (0, None) => power_on_state(),
                    _ => {
                        v.active.fetch_and(!bit, Ordering::SeqCst);
                        continue;
                    }
                };
                let root = v.root.load(Ordering::Relaxed);
                let old = cur.take().map(|c| c.vcpu);
                let mut vcpu = match new_vcpu(pcpu, vmid, root, old, spare) {
                    Ok(vc) => vc,
                    Err(why) => {
                        hvlog!("pCPU {pcpu}: {why}");
                        v.active.fetch_and(!bit, Ordering::SeqCst);
                        return;
                    }
                };
                match &mut vcpu {
                    PostVcpu::Svm(x) => x.set_initial_state(&st),
                    PostVcpu::Vmx(x) => x.set_initial_state(&st),
                }
                *cur = Some(Current {
                    vmid,
                    generation,
                    vcpu,
                    idle: false,
                });
            }
            if let Some(c) = cur.as_mut().filter(|c| !c.idle) {
                let (vmid, idle) = (c.vmid as u16, &mut c.idle);
                match &mut c.vcpu {
                    PostVcpu::Svm(x) => run_slice(v, vmid, x, idle, idx, pcpu, done),
                    PostVcpu::Vmx(x) => run_slice(v, vmid, x, idle, idx, pcpu, done),
                }
                ran = true;
            }
            v.active.fetch_and(!bit, Ordering::SeqCst);
        }
        if !ran {
            x86::pause();
        }
    }
}

/// This pCPU's VMCB page for post-launched vCPUs, zeroed.
fn vmcb_page(pcpu: usize) -> Option<u64> {
    let slot = VMCBS.get(pcpu)?;
    let page = match slot.load(Ordering::Relaxed) {
        0 => {
            let p = frames::alloc(1)?;
            slot.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    };
    // SAFETY: a page of the hypervisor's pool owned by this pCPU; no vCPU uses it now.
    unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
    Some(page)
}

/// Runs vCPU `idx` of `v` until it idles, the VM stops running or `done()`.
fn run_slice<V: Vcpu>(
    v: &PostVm,
    vmid: u16,
    vc: &mut V,
    idle: &mut bool,
    idx: usize,
    pcpu: usize,
    done: &dyn Fn() -> bool,
) {
    let ncpu = v.pcpus.load(Ordering::Relaxed).count_ones();
    while !done() && v.run.load(Ordering::Acquire) {
        let exit = vc.run();
        // NRIP is not always available (QEMU TCG): the fixed lengths of the instructions that
        // exit here (CPUID, RDMSR/WRMSR 2 bytes, HLT 1, VMMCALL/VMCALL 3) are used then.
        let skip = |vc: &mut V, fixed: u8| {
            let len = vc.exit_instruction_len().unwrap_or(fixed);
            vc.advance_rip(len);
        };
        match exit {
            VmExit::Io {
                port,
                size,
                dir,
                data,
            } => {
                let Some(len) = vc.exit_instruction_len() else {
                    *idle = true;
                    hvlog!("VM {vmid}: vCPU {idx}: port I/O exit without a next RIP; stopped");
                    return;
                };
                let a = Access::Pio {
                    port,
                    size,
                    write: dir == IoDirection::Out,
                    value: data,
                };
                // None: the VM was paused while the request was pending.
                let Some(val) = forward(v, idx, &a) else {
                    return;
                };
                if dir == IoDirection::In {
                    let r = vc.regs_mut();
                    r.rax = ioreq::merge_pio_read(r.rax, size, val);
                }
                vc.advance_rip(len);
            }
            VmExit::IoString { size, dir, rep, .. } => {
                // Not forwarded: writes are dropped, reads deliver nothing (as for the
                // Service VM's and pre-launched VMs' unhandled string I/O).
                let r = vc.regs_mut();
                let count = if rep { r.rcx } else { 1 };
                let bytes = count.wrapping_mul(size as u64);
                match dir {
                    IoDirection::Out => r.rsi = r.rsi.wrapping_add(bytes),
                    IoDirection::In => r.rdi = r.rdi.wrapping_add(bytes),
                }
                if rep {
                    r.rcx = 0;
                }
                match vc.exit_instruction_len() {
                    Some(l) => vc.advance_rip(l),
                    None => {
                        *idle = true;
                        hvlog!("VM {vmid}: vCPU {idx}: string I/O without a next RIP; stopped");
                        return;
                    }
                }
            }
            VmExit::Cpuid { leaf, subleaf } => {
                let r = crate::vm::emulate_cpuid(ncpu, false, idx, leaf, subleaf);
                let g = vc.regs_mut();
                (g.rax, g.rbx, g.rcx, g.rdx) = (r[0] as u64, r[1] as u64, r[2] as u64, r[3] as u64);
                skip(vc, 2);
            }
            VmExit::MsrRead { msr } => match crate::vm::read_msr(idx, msr) {
                Some(val) => {
                    let g = vc.regs_mut();
                    g.rax = val & 0xFFFF_FFFF;
                    g.rdx = val >> 32;
                    skip(vc, 2);
                }
                None => vc.inject(Injection::Exception {
                    vector: 13,
                    error_code: Some(0),
                }),
            },
            VmExit::MsrWrite { msr, value } => {
                if crate::vm::write_msr_ok(msr, value) {
                    skip(vc, 2);
                } else {
                    vc.inject(Injection::Exception {
                        vector: 13,
                        error_code: Some(0),
                    });
                }
            }
            VmExit::Hypercall => {
                let cpl = (vc.code_segment().selector & 3) as u8;
                let r = *vc.regs();
                match crate::hypercall::runtime::handle(vmid, cpl, r.r8, r.rdi, r.rsi) {
                    Outcome::Return(ret) => {
                        vc.regs_mut().rax = ret as u64;
                        skip(vc, 3);
                    }
                    Outcome::InjectUd => vc.inject(Injection::Exception {
                        vector: 6,
                        error_code: None,
                    }),
                    Outcome::InjectGp => vc.inject(Injection::Exception {
                        vector: 13,
                        error_code: Some(0),
                    }),
                }
            }
            VmExit::Halt => {
                skip(vc, 1);
                hvlog!("VM {vmid}: vCPU {idx} (pCPU {pcpu}) halted");
                *idle = true;
                return;
            }
            VmExit::Init
            | VmExit::Sipi { .. }
            | VmExit::ExternalInterrupt
            | VmExit::InterruptWindow => {}
            other => {
                hvlog!(
                    "VM {vmid}: vCPU {idx}: {other:?} at RIP {:#x} not handled; stopped until reset or destroy",
                    vc.rip()
                );
                *idle = true;
                return;
            }
        }
    }
}

/// Posts `a` in vCPU `idx`'s request slot, raises the upcall and waits for the Service VM to
/// complete it. Returns the value read, or `None` if the VM was paused meanwhile (the request
/// is abandoned; reset frees the slot).
fn forward(v: &PostVm, idx: usize, a: &Access) -> Option<u64> {
    let page = v.ioreq_page.load(Ordering::Relaxed);
    let slot = ioreq::slot_ptr(page, idx)?;
    let polling = v.polling.load(Ordering::Relaxed);
    // SAFETY: the dispatcher checked the page is 4 KiB of Service VM RAM the hypervisor maps
    // 1:1; slots are 256-byte aligned inside it.
    while unsafe { ioreq::post(slot, a, polling) }.is_err() {
        // The Service VM still holds this vCPU's previous request (it owns PENDING and
        // PROCESSING slots): wait for it, or for a pause.
        if !v.run.load(Ordering::Acquire) {
            return None;
        }
        x86::pause();
    }
    upcall();
    loop {
        // SAFETY: as above; `a` is what was posted.
        if let Some(val) = unsafe { ioreq::take_completion(slot, a) } {
            return Some(val);
        }
        if !v.run.load(Ordering::Acquire) {
            return None;
        }
        x86::pause();
    }
}

/// Announces a new request to the Service VM's BSP with the upcall vector. The Service VM's
/// local APIC is its pCPU's physical one, so this is a physical fixed IPI.
fn upcall() {
    let apic = SERVICE_BSP_APIC.load(Ordering::Relaxed);
    if apic == u32::MAX {
        return;
    }
    let b = lapic::base();
    phys_write32(b + 0x310, apic << 24);
    phys_write32(b + 0x300, UPCALL_VECTOR.load(Ordering::Relaxed) as u32);
}
