//! Bare-metal side of post-launched VMs (see the module documentation of `postvm`): the
//! per-VM run state the hypercalls change, and the loop a pCPU runs while the Service VM's vCPU
//! pinned to it waits for INIT/SIPI.

use super::initial_state_from_acrn;
use super::vintr::{self, LapicEffect, Message, PendingSet, Vioapic, Vlapic};
use crate::arch::svm::{SvmCaps, SvmVcpu};
use crate::arch::vmx::{self, VmxVcpu};
use crate::arch::x86::cpu::{CpuCell, MAX_PCPUS};
use crate::arch::x86::{self, lapic, phys_write32};
use crate::decode;
use crate::gwalk::{self, GuestPhys};
use crate::hv::frames::{self, Frames};
use crate::hvlog;
use crate::hypercall::{Outcome, MAX_VCPUS_PER_VM, MAX_VM_NUM};
use crate::ioreq::{self, Access};
use crate::paging::{Ept, Npt, PageTable};
use crate::vcpu::{InitialState, Injection, IoDirection, Segment, Vcpu, VmExit};
use acrn_abi::errno::{EINVAL, ENOSYS};
use acrn_abi::irq::GsiOp;
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
    /// Per vCPU: interrupts requested and not yet taken (its IRR).
    irr: [PendingSet; VCPUS],
    /// Per vCPU: its local APIC's LDR (logical destinations are resolved by any pCPU).
    ldr: [AtomicU32; VCPUS],
    ioapic: Mutex<Vioapic>,
    /// Set once an MMIO access was forwarded to the Service VM (logged once per VM).
    mmio_forwarded: AtomicBool,
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
            irr: [const { PendingSet::new() }; VCPUS],
            ldr: [const { AtomicU32::new(0) }; VCPUS],
            ioapic: Mutex::new(Vioapic::new()),
            mmio_forwarded: AtomicBool::new(false),
        }
    }

    /// Interrupt controllers back to their reset state (create, reset).
    fn reset_interrupts(&self) {
        self.irr.iter().for_each(PendingSet::clear);
        self.ldr.iter().for_each(|l| l.store(0, Ordering::Relaxed));
        *self.ioapic.lock() = Vioapic::new();
        self.mmio_forwarded.store(false, Ordering::Relaxed);
    }

    /// Sends `m` to the vCPUs it addresses: their pending sets.
    fn deliver(&self, m: &Message) {
        let n = (self.pcpus.load(Ordering::Relaxed).count_ones() as usize).min(VCPUS);
        let ldrs: [u32; VCPUS] = core::array::from_fn(|i| self.ldr[i].load(Ordering::Relaxed));
        let targets = vintr::destinations(m, &ldrs[..n]);
        for (i, irr) in self.irr.iter().enumerate().take(n) {
            if targets & (1 << i) != 0 {
                irr.set(m.vector);
            }
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
        v.reset_interrupts();
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
        v.reset_interrupts();
    }
}

/// HC_INJECT_MSI: the message goes to the pending sets of the vCPUs it addresses; each takes it
/// at its next VM entry that can accept it (a halted vCPU wakes up).
pub fn inject_msi(vmid: u16, addr: u64, data: u64) -> Result<(), i32> {
    let v = vm(vmid).ok_or(EINVAL)?;
    match vintr::decode_msi(addr, data) {
        Ok(m) => {
            v.deliver(&m);
            Ok(())
        }
        Err(e) => {
            hvlog!("VM {vmid}: HC_INJECT_MSI refused: {e}");
            Err(EINVAL)
        }
    }
}

/// HC_SET_IRQLINE: the line of vIOAPIC pin `gsi` (checked below the pin count by the
/// dispatcher) changes; an unmasked entry sends its message.
pub fn set_irqline(vmid: u16, gsi: u32, op: GsiOp) -> Result<(), i32> {
    let v = vm(vmid).ok_or(EINVAL)?;
    if let Some(m) = v.ioapic.lock().set_line(gsi as usize, op) {
        v.deliver(&m);
    }
    Ok(())
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
    let cs = Segment {
        selector: 0xF000,
        base: 0xFFFF_0000,
        limit: 0xFFFF,
        access: 0x9B,
    };
    InitialState {
        rip: 0xFFF0,
        cr0: 0x6000_0010,
        gdtr_limit: 0xFFFF,
        ..InitialState::with_segments(cs, Segment::real_mode_data(0))
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
    run: RunState,
}

/// The loop's view of one vCPU besides its backend state.
struct RunState {
    /// Halted with interrupts off, or stopped after an exit that is not handled: it stays off
    /// until the VM is started again.
    idle: bool,
    /// Halted with interrupts on: runs again once an interrupt can be delivered.
    halted: bool,
    lapic: Vlapic,
    /// The VM's table is an NPT (SVM), else an EPT.
    npt: bool,
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
                v.ldr[idx].store(0, Ordering::Relaxed);
                let npt = matches!(vcpu, PostVcpu::Svm(_));
                *cur = Some(Current {
                    vmid,
                    generation,
                    vcpu,
                    run: RunState {
                        idle: false,
                        halted: false,
                        lapic: Vlapic::new(idx as u8),
                        npt,
                    },
                });
            }
            if let Some(c) = cur.as_mut().filter(|c| !c.run.idle) {
                let (vmid, st) = (c.vmid as u16, &mut c.run);
                ran |= match &mut c.vcpu {
                    PostVcpu::Svm(x) => run_slice(v, vmid, x, st, idx, pcpu, done),
                    PostVcpu::Vmx(x) => run_slice(v, vmid, x, st, idx, pcpu, done),
                };
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

/// Hands vCPU `idx` its highest deliverable pending interrupt (moved to its ISR) unless the
/// backend still holds one; true if one is (or was already) on its way.
fn take_interrupt<V: Vcpu>(v: &PostVm, vc: &mut V, st: &mut RunState, idx: usize) -> bool {
    if vc.interrupt_pending() {
        return true;
    }
    let irr = v.irr[idx].snapshot();
    let Some(vector) = vintr::deliverable(&irr, &st.lapic.isr, st.lapic.tpr()) else {
        return false;
    };
    if v.irr[idx].take(vector) {
        st.lapic.isr[vector as usize / 64] |= 1 << (vector % 64);
        vc.inject(Injection::ExternalInterrupt { vector });
    }
    true
}

/// Runs vCPU `idx` of `v` until it idles or halts, the VM stops running or `done()`. Returns
/// whether the vCPU ran (a halted one runs only once an interrupt can wake it).
fn run_slice<V: Vcpu>(
    v: &PostVm,
    vmid: u16,
    vc: &mut V,
    st: &mut RunState,
    idx: usize,
    pcpu: usize,
    done: &dyn Fn() -> bool,
) -> bool {
    let ncpu = v.pcpus.load(Ordering::Relaxed).count_ones();
    if st.halted {
        if !take_interrupt(v, vc, st, idx) {
            return false;
        }
        st.halted = false;
    }
    while !done() && v.run.load(Ordering::Acquire) {
        take_interrupt(v, vc, st, idx);
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
                    st.idle = true;
                    hvlog!("VM {vmid}: vCPU {idx}: port I/O exit without a next RIP; stopped");
                    return true;
                };
                let a = Access::Pio {
                    port,
                    size,
                    write: dir == IoDirection::Out,
                    value: data,
                };
                // None: the VM was paused while the request was pending.
                let Some(val) = forward(v, idx, &a) else {
                    return true;
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
                        st.idle = true;
                        hvlog!("VM {vmid}: vCPU {idx}: string I/O without a next RIP; stopped");
                        return true;
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
                if vc.rflags() & RFLAGS_IF != 0 {
                    // Waits for an interrupt (the serve loop checks its pending set).
                    st.halted = true;
                    return true;
                }
                hvlog!("VM {vmid}: vCPU {idx} (pCPU {pcpu}) halted with interrupts off");
                st.idle = true;
                return true;
            }
            VmExit::Mmio { gpa, access } => match mmio(v, vc, st, idx, gpa) {
                Ok(true) => {}
                Ok(false) => return true, // paused while the Service VM had the request
                Err(why) => {
                    hvlog!(
                        "VM {vmid}: vCPU {idx}: {access:?} access at GPA {gpa:#x} (RIP {:#x}) \
                         not emulated: {why}; stopped until reset or destroy",
                        vc.rip()
                    );
                    st.idle = true;
                    return true;
                }
            },
            VmExit::Init
            | VmExit::Sipi { .. }
            | VmExit::ExternalInterrupt
            | VmExit::InterruptWindow => {}
            other => {
                hvlog!(
                    "VM {vmid}: vCPU {idx}: {other:?} at RIP {:#x} not handled; stopped until reset or destroy",
                    vc.rip()
                );
                st.idle = true;
                return true;
            }
        }
    }
    true
}

const RFLAGS_IF: u64 = 1 << 9;

/// Guest-physical memory of a post-launched VM through its NPT/EPT (for instruction fetch).
struct PostMem {
    root: u64,
    npt: bool,
}

impl PostMem {
    /// Host-physical address of `gpa`, if mapped to RAM the hypervisor reaches (1:1 below
    /// 4 GiB, where the Service VM's RAM lies).
    fn hpa(&self, gpa: u64) -> Option<u64> {
        let t = if self.npt {
            PageTable::<Npt>::translate_root(self.root, &Frames, gpa)
        } else {
            PageTable::<Ept>::translate_root(self.root, &Frames, gpa)
        }?;
        (t.hpa < 1 << 32).then_some(t.hpa)
    }
}

impl GuestPhys for PostMem {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let hpa = self.hpa(gpa).filter(|h| h & 7 == 0)?;
        // SAFETY: an aligned word of Service VM RAM mapped into this VM (identity-mapped).
        Some(unsafe { core::ptr::read_volatile(hpa as *const u64) })
    }
}

/// Decodes the instruction at the guest's RIP (through its page tables and the VM's table).
fn fetch_decode<V: Vcpu>(v: &PostVm, vc: &V, npt: bool) -> Option<decode::Insn> {
    let mem = PostMem {
        root: v.root.load(Ordering::Relaxed),
        npt,
    };
    let mode = crate::vm::cpu_mode(vc);
    let (cr0, cr3, cr4, efer) = vc.paging_state();
    let la = match mode {
        decode::CpuMode::Long64 => vc.rip(),
        _ => vc.code_segment().base.wrapping_add(vc.rip()) & 0xFFFF_FFFF,
    };
    let mut bytes = [0u8; 15];
    let mut n = 0;
    while n < bytes.len() {
        let Some(hpa) = gwalk::translate(&mem, cr0, cr3, cr4, efer, la.wrapping_add(n as u64))
            .and_then(|gpa| mem.hpa(gpa))
        else {
            break;
        };
        // SAFETY: a byte of Service VM RAM mapped into this VM.
        bytes[n] = unsafe { core::ptr::read_volatile(hpa as *const u8) };
        n += 1;
    }
    decode::decode(&bytes[..n], mode).ok()
}

/// An MMIO access of vCPU `idx`: its local APIC and the VM's I/O APIC are emulated here,
/// everything else goes to the Service VM as an MMIO I/O request. Ok(false): the VM was
/// paused while the request was pending (the access is redone after restart).
fn mmio<V: Vcpu>(
    v: &PostVm,
    vc: &mut V,
    st: &mut RunState,
    idx: usize,
    gpa: u64,
) -> Result<bool, &'static str> {
    let insn = fetch_decode(v, vc, st.npt).ok_or("instruction not decodable")?;
    let a = ioreq::mmio_access(insn.op, vc.regs(), gpa).ok_or("not a MOV to or from memory")?;
    let Access::Mmio {
        size, write, value, ..
    } = a
    else {
        return Err("not an MMIO access");
    };
    let page = gpa & !0xFFF;
    let read = if page == vintr::LAPIC_GPA || page == vintr::IOAPIC_GPA {
        if size != 4 {
            return Err("APIC registers take 32-bit accesses");
        }
        if page == vintr::LAPIC_GPA {
            lapic_access(v, st, idx, gpa & 0xFF0, write, value as u32)?
        } else {
            let mut io = v.ioapic.lock();
            if write {
                if let Some(m) = io.write(gpa & 0xFF, value as u32) {
                    v.deliver(&m);
                }
                0
            } else {
                io.read(gpa & 0xFF) as u64
            }
        }
    } else {
        if !v.mmio_forwarded.swap(true, Ordering::Relaxed) {
            hvlog!(
                "vCPU {idx}: MMIO at GPA {gpa:#x} forwarded to the Service VM (logged once per VM)"
            );
        }
        match forward(v, idx, &a) {
            Some(val) => val,
            None => return Ok(false),
        }
    };
    if !write && !ioreq::complete_mmio_read(insn.op, vc.regs_mut(), read) {
        return Err("read into a register that cannot be written");
    }
    vc.advance_rip(insn.len);
    Ok(true)
}

/// A 32-bit access to register `off` of vCPU `idx`'s local APIC; returns the value read.
fn lapic_access(
    v: &PostVm,
    st: &mut RunState,
    idx: usize,
    off: u64,
    write: bool,
    value: u32,
) -> Result<u64, &'static str> {
    let lapic_why = |e: vintr::LapicError| {
        hvlog!("vCPU {idx}: {e}");
        "local APIC access"
    };
    let irr = v.irr[idx].snapshot();
    if !write {
        return st.lapic.read(off, &irr).map(u64::from).map_err(lapic_why);
    }
    let n = (v.pcpus.load(Ordering::Relaxed).count_ones() as usize).min(VCPUS);
    let ldrs: [u32; VCPUS] = core::array::from_fn(|i| v.ldr[i].load(Ordering::Relaxed));
    let effect = st.lapic.write(off, value, &ldrs[..n]).map_err(lapic_why)?;
    v.ldr[idx].store(st.lapic.ldr, Ordering::Relaxed);
    match effect {
        LapicEffect::None => {}
        LapicEffect::Eoi(vector) => {
            // Level pins still asserted send again (delivery only sets pending bits).
            v.ioapic.lock().eoi(vector).for_each(|m| v.deliver(&m));
        }
        LapicEffect::Ipi { vector, targets } => {
            for (i, irr) in v.irr.iter().enumerate().take(n) {
                if targets & (1 << i) != 0 {
                    irr.set(vector);
                }
            }
        }
    }
    Ok(0)
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
