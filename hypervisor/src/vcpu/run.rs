//! The per-pCPU loop, the same for every VM: it hosts the vCPUs the VM table binds to its
//! pCPU (any mix of Service VM, pre- and post-launched vCPUs), keeps their local APICs and
//! timers, picks one to run with the scenario's scheduler, switches the guest context, enters
//! the guest and hands each exit to [`super::exit`]. Other pCPUs reach it only through the VM
//! table and a kick IPI.

use super::context::GuestContext;
use super::exit::{self, Next};
use super::{InitialState, Injection, Segment, Vcpu};
use crate::arch::svm::{self, SvmCaps, SvmVcpu};
use crate::arch::vmx::{self, VmxVcpu};
use crate::arch::x86::cpu::{CpuCell, MAX_PCPUS};
use crate::arch::x86::{irq, lapic};
use crate::devices::lapic::{ApicMode, LapicEffect, Vlapic};
use crate::hv::frames;
use crate::hvlog;
use crate::ioreq::Access;
use crate::sched::{SchedParams, Scheduler, ThreadId};
use crate::vm::{self, Vm, VmState};
use acrn_static_config::{GuestFlags, LoadOrder};
use core::sync::atomic::Ordering;
use spin::Once;
use x86_64::registers::rflags::RFlags;

/// How often a pCPU looks at the slot of a vCPU waiting for its I/O request.
const IO_POLL_NS: u64 = 20_000;

/// The longest a pCPU that hosts vCPUs goes without looking at them again: a guest runs at
/// most this long (VMX's preemption timer does the same there), and an idle pCPU sleeps at
/// most this long. Under QEMU's single-threaded TCG, while a guest spun on one pCPU, the
/// Service VM's pCPU was seen to make no progress for up to 15 s until an interrupt reached
/// it; and a post-launched vCPU halted waiting for interrupts the Service VM had sent was
/// seen to stay halted (its pCPU idle, no timer armed) until the Service VM gave up. This
/// timer is the interrupt that ends both.
const MAX_SLICE_NS: u64 = 10_000_000;

/// vCPUs one pCPU can host.
pub const MAX_THREADS: usize = 8;

#[derive(Clone, Copy)]
pub enum Backend {
    Svm(SvmCaps),
    Vmx,
}
static BACKEND: Once<Backend> = Once::new();

pub fn set_backend(b: Backend) {
    BACKEND.call_once(|| b);
}

pub fn backend() -> Option<Backend> {
    BACKEND.get().copied()
}

/// The hardware half of a vCPU.
pub enum HwVcpu {
    Svm(SvmVcpu),
    Vmx(VmxVcpu),
}

impl HwVcpu {
    pub fn get(&mut self) -> &mut dyn Vcpu {
        match self {
            HwVcpu::Svm(v) => v,
            HwVcpu::Vmx(v) => v,
        }
    }
    pub fn get_ref(&self) -> &dyn Vcpu {
        match self {
            HwVcpu::Svm(v) => v,
            HwVcpu::Vmx(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Runnable,
    /// HLT with interrupts enabled: runs again when an interrupt is deliverable.
    Halted,
    /// HLT with interrupts disabled: only NMI or INIT wake it.
    HaltedNoInterrupts,
    /// An AP before its SIPI (or any vCPU after INIT).
    WaitForSipi,
    /// Its I/O request is with the Service VM.
    WaitForIo,
}

/// How to finish an instruction whose access the Service VM serves.
#[derive(Clone, Copy)]
pub enum IoFinish {
    /// IN/OUT of `size` bytes, `len` bytes long.
    Pio { size: u8, len: u8 },
    /// A MOV to or from MMIO.
    Mmio { op: super::decode::Op, len: u8 },
}

#[derive(Clone, Copy)]
pub struct PendingIo {
    pub access: Access,
    pub finish: IoFinish,
    /// Posted already (else waiting for its slot to become free).
    pub posted: bool,
}

/// One vCPU as the pCPU hosting it holds it.
pub struct Thread {
    pub vm: &'static Vm,
    pub idx: usize,
    generation: u32,
    pub hw: HwVcpu,
    pub lapic: Vlapic,
    pub state: RunState,
    pub io: Option<PendingIo>,
    pub nmi: bool,
    /// The VM's TLB generation this vCPU flushed to.
    tlb: u32,
    context: GuestContext,
    /// The scheduler's handle.
    tid: ThreadId,
    /// It owns its pCPU's local APIC (`lapic_passthrough`, after its x2APIC switch).
    pub lapic_pt: bool,
    /// ICR writes refused so far (the first is reported).
    pub refused_icrs: u32,
}

impl Thread {
    /// Publishes its local APIC's destination state for other pCPUs.
    pub fn publish_lapic(&self) {
        *self.vm.vcpus[self.idx].view.lock() = self.lapic.view();
    }

    /// Acts on what a local APIC write asks for; true when the pCPU must re-arm its timer
    /// (the vCPU's timer deadline may have changed).
    pub fn lapic_effect(&mut self, effect: Option<LapicEffect>) -> bool {
        self.publish_lapic();
        match effect {
            Some(LapicEffect::Ipi(msg)) => self.vm.deliver(&msg, Some(self.idx)),
            Some(LapicEffect::Eoi { vector, level }) if level => {
                self.vm.devices.eoi(self.vm, vector)
            }
            Some(LapicEffect::ModeChanged(ApicMode::X2Apic)) if self.wants_lapic_pt() => {
                self.pass_lapic_through();
                return true;
            }
            Some(LapicEffect::TimerChanged) | Some(LapicEffect::ModeChanged(_)) => return true,
            Some(LapicEffect::Eoi { .. }) | None => {}
        }
        false
    }
}

impl Thread {
    /// A vCPU of a `lapic_passthrough` VM that switched its local APIC to x2APIC mode gets
    /// the physical one, as in ACRN, if the hypervisor runs its pCPUs in x2APIC mode (it
    /// refused to start such a static VM otherwise).
    fn wants_lapic_pt(&self) -> bool {
        let flag = self
            .vm
            .info()
            .is_some_and(|i| i.flags & GuestFlags::LAPIC_PASSTHROUGH != 0);
        flag && !self.lapic_pt && lapic::x2apic()
    }

    fn pass_lapic_through(&mut self) {
        // Nothing else may run on a pCPU that has neither the hypervisor's timer nor its IPIs
        // (a post-launched VM's pCPUs may be the Service VM's too).
        let me = crate::arch::x86::cpu::this_cpu();
        let sharer = vm::all().iter().find(|v| {
            !core::ptr::eq(*v, self.vm)
                && matches!(
                    v.state(),
                    VmState::Created | VmState::Running | VmState::Paused
                )
                && (0..v.vcpu_count()).any(|i| v.vcpus[i].pcpu() == Some(me))
        });
        if let Some(other) = sharer {
            self.vm.stop(format_args!(
                "vCPU {}: lapic_passthrough needs pCPU {me} for itself, and VM {} {} has a \
                 vCPU there",
                self.idx,
                other.id,
                other.name()
            ));
            return;
        }
        let done = match &mut self.hw {
            HwVcpu::Svm(v) => v.pass_lapic_through(frames::alloc).is_ok(),
            HwVcpu::Vmx(v) => {
                v.pass_lapic_through();
                true
            }
        };
        if !done {
            self.vm.stop(format_args!(
                "vCPU {}: out of memory for its MSR map",
                self.idx
            ));
            return;
        }
        irq::pass_through();
        // The guest goes on with the spurious vector and enable bit it gave its virtual APIC.
        let svr = self.lapic.msr_read(0x80F, crate::tsc::now()).unwrap_or(0);
        lapic::write(lapic::SVR, svr as u32);
        lapic::write(lapic::TPR, 0);
        self.lapic_pt = true;
        hvlog!(
            "VM {} {}: vCPU {} owns the local APIC of pCPU {} (x2APIC ID {:#x}): no timer, \
             interrupt or IPI of the hypervisor on it",
            self.vm.id,
            self.vm.name(),
            self.idx,
            crate::arch::x86::cpu::this_cpu(),
            lapic::id()
        );
    }
}

/// What one pCPU keeps.
struct Pcpu {
    id: usize,
    threads: [Option<Thread>; MAX_THREADS],
    /// The thread whose guest context is in the CPU's registers.
    loaded: Option<usize>,
    sched: Scheduler,
    /// SVM host save area of this pCPU (0 under VMX).
    svm_host: u64,
    /// VMCB pages and VMCSs of threads that ended, for the next ones.
    spare_vmcbs: [u64; MAX_THREADS],
    spare_vmx: [Option<VmxVcpu>; MAX_THREADS],
    /// The VM table's generation this pCPU last looked at.
    table_seen: u32,
}

static PCPUS: [CpuCell<Option<Pcpu>>; MAX_PCPUS] = [const { CpuCell::new(None) }; MAX_PCPUS];

/// TSC ticks per local APIC bus tick of every vLAPIC: as in ACRN, the timer counts at the
/// TSC's rate, which guests read from CPUID 0x40000010.
pub const TSC_PER_BUS_TICK: u64 = 1;

/// The architectural power-on state (reset vector 0xFFFF0).
pub fn power_on_state() -> InitialState {
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

/// The state a SIPI with `vector` starts a vCPU in.
pub fn sipi_state(vector: u8) -> InitialState {
    let cs = Segment {
        selector: (vector as u16) << 8,
        base: (vector as u64) << 12,
        limit: 0xFFFF,
        access: 0x9B,
    };
    InitialState {
        cr0: 0x10,
        gdtr_limit: 0xFFFF,
        ..InitialState::with_segments(cs, Segment::real_mode_data(0))
    }
}

/// Runs pCPU `pcpu` forever.
pub fn pcpu_loop(pcpu: usize) -> ! {
    let Some(backend) = backend() else {
        crate::arch::x86::halt_forever()
    };
    let svm_host = match backend {
        Backend::Svm(_) => match svm::enable_this_cpu(frames::alloc) {
            Ok(h) => h,
            Err(e) => {
                hvlog!("pCPU {pcpu}: SVM: {e}; its vCPUs cannot run");
                crate::arch::x86::halt_forever()
            }
        },
        Backend::Vmx => {
            if let Err(e) = vmx::enable_on_this_cpu() {
                hvlog!("pCPU {pcpu}: VMX: {e:?}; its vCPUs cannot run");
                crate::arch::x86::halt_forever()
            }
            0
        }
    };
    // SAFETY: the slot of the calling pCPU, touched only by it from here on.
    let slot = unsafe { &mut *PCPUS[pcpu].get() };
    *slot = Some(Pcpu {
        id: pcpu,
        threads: [const { None }; MAX_THREADS],
        loaded: None,
        sched: Scheduler::new(crate::hv::platform().hv.scheduler),
        svm_host,
        spare_vmcbs: [0; MAX_THREADS],
        spare_vmx: [const { None }; MAX_THREADS],
        table_seen: vm::table_generation().wrapping_sub(1),
    });
    let Some(p) = slot.as_mut() else {
        crate::arch::x86::halt_forever()
    };
    loop {
        p.iterate();
    }
}

impl Pcpu {
    fn iterate(&mut self) {
        let events = irq::take_events();
        if events.contains(irq::Events::DEVICE) {
            crate::vm::ptirq::dispatch(irq::take_device_vectors());
        }
        if events.contains(irq::Events::DMA_FAULT) {
            crate::hv::iommu::report_faults();
        }
        self.refresh();
        let now = crate::tsc::now();
        crate::shell::session::poll(now);
        for t in self.threads.iter_mut().flatten() {
            service(t, now);
            crate::shell::session::publish(t);
        }
        // The scheduler rotates only when it asks to (BVT's context-switch allowance restarts
        // at every pick).
        let mut resched = false;
        for i in 0..MAX_THREADS {
            resched |= self.update_sched(i, now);
        }
        let now_ns = crate::tsc::nanos(now);
        if self.sched.next_event(now_ns).is_some_and(|t| t <= now_ns) {
            resched |= self.sched.tick(now_ns);
        }
        let picked = match self.sched.current() {
            Some(t) if !resched => Some(t),
            _ => self.sched.pick_next(now_ns),
        };
        let slot = picked.and_then(|tid| self.slot_of(tid));
        // A guest owns the local APIC (and timer) of a passed-through pCPU.
        if !irq::passed_through() {
            let hosts_vcpus = self.threads.iter().any(Option::is_some);
            let slice_end =
                hosts_vcpus.then(|| now.saturating_add(crate::tsc::ticks(MAX_SLICE_NS)));
            let deadline = self.next_deadline(now).into_iter().chain(slice_end).min();
            irq::arm_timer(deadline);
        }
        match slot {
            None => irq::wait_for_interrupt(),
            Some(i) => self.run(i),
        }
    }

    fn slot_of(&self, tid: ThreadId) -> Option<usize> {
        self.threads
            .iter()
            .position(|t| t.as_ref().is_some_and(|t| t.tid == tid))
    }

    /// The earliest of the local APIC timers, the devices' timers and the scheduler's.
    fn next_deadline(&self, now: u64) -> Option<u64> {
        let lapics = self
            .threads
            .iter()
            .flatten()
            .filter_map(|t| t.lapic.timer_deadline());
        let devices = self
            .threads
            .iter()
            .flatten()
            .filter(|t| t.idx == 0)
            .filter_map(|t| t.vm.devices.next_event(now));
        // A vCPU whose I/O request the Service VM completes by polling (no notification)
        // is looked at again soon.
        let io_poll = self
            .threads
            .iter()
            .flatten()
            .any(|t| t.state == RunState::WaitForIo)
            .then(|| now.saturating_add(crate::tsc::ticks(IO_POLL_NS)));
        lapics
            .chain(devices)
            .chain(io_poll)
            .chain(crate::shell::session::next_deadline())
            .chain(
                self.sched
                    .next_event(crate::tsc::nanos(now))
                    .map(crate::tsc::ticks),
            )
            .min()
    }

    /// Tells the scheduler whether thread `i` can run; true if it asks to reschedule.
    fn update_sched(&mut self, i: usize, now: u64) -> bool {
        let Some(t) = self.threads[i].as_ref() else {
            return false;
        };
        let runnable = t.state == RunState::Runnable && t.vm.state() == VmState::Running;
        let now = crate::tsc::nanos(now);
        let asked = if runnable {
            self.sched.wake(t.tid, now)
        } else {
            self.sched.sleep(t.tid, now)
        };
        // Only fails for a thread the scheduler does not hold, and adopt added every one.
        asked.unwrap_or(true)
    }

    /// Adds the vCPUs the VM table binds here and drops the ones it no longer does.
    fn refresh(&mut self) {
        let generation = vm::table_generation();
        if generation == self.table_seen {
            return;
        }
        self.table_seen = generation;
        for i in 0..MAX_THREADS {
            // A stopped VM keeps its vCPUs here, except one that owns this pCPU's local
            // APIC: the hypervisor takes that back at once.
            let gone = self.threads[i].as_ref().is_some_and(|t| {
                !matches!(
                    t.vm.state(),
                    VmState::Running | VmState::Paused | VmState::Stopped
                ) || (t.lapic_pt && t.vm.state() == VmState::Stopped)
                    || t.vm.generation() != t.generation
                    || t.vm.vcpus[t.idx].pcpu() != Some(self.id)
            });
            if gone {
                self.retire(i);
            }
        }
        for vm in vm::all() {
            if !matches!(vm.state(), VmState::Running | VmState::Paused) {
                continue;
            }
            let generation = vm.generation();
            for idx in 0..vm.vcpu_count() {
                if vm.vcpus[idx].pcpu() != Some(self.id) {
                    continue;
                }
                let hosted =
                    self.threads.iter().flatten().any(|t| {
                        core::ptr::eq(t.vm, vm) && t.idx == idx && t.generation == generation
                    });
                if !hosted {
                    self.adopt(vm, idx, generation);
                }
            }
        }
    }

    fn retire(&mut self, i: usize) {
        let Some(t) = self.threads[i].take() else {
            return;
        };
        let _ = self.sched.remove(t.tid);
        if self.loaded == Some(i) {
            self.loaded = None;
        }
        t.vm.vcpus[t.idx].active.store(false, Ordering::SeqCst);
        if t.lapic_pt {
            irq::take_back();
            hvlog!(
                "pCPU {}: local APIC back with the hypervisor (VM {} {} vCPU {} gone)",
                self.id,
                t.vm.id,
                t.vm.name(),
                t.idx
            );
        }
        self.recycle_hw(t.hw);
        t.context.release();
    }

    /// A new thread for vCPU `idx` of `vm`.
    fn adopt(&mut self, vm: &'static Vm, idx: usize, generation: u32) {
        if irq::passed_through() {
            vm.stop(format_args!(
                "vCPU {idx}: pCPU {} belongs to a vCPU that owns its local APIC \
                 (lapic_passthrough)",
                self.id
            ));
            return;
        }
        let Some(free) = self.threads.iter().position(|t| t.is_none()) else {
            vm.stop(format_args!(
                "vCPU {idx}: pCPU {} already hosts {MAX_THREADS} vCPUs",
                self.id
            ));
            return;
        };
        let hw = match self.new_hw(vm) {
            Ok(hw) => hw,
            Err(why) => {
                vm.stop(format_args!("vCPU {idx} on pCPU {}: {why}", self.id));
                return;
            }
        };
        let Some(context) = GuestContext::new() else {
            vm.stop(format_args!("vCPU {idx}: out of memory for its FPU state"));
            return;
        };
        let start = *vm.vcpus[idx].start.lock();
        let post = vm.load_order() == Some(LoadOrder::PostLaunched);
        let (state, initial) = match (idx, start) {
            (_, Some(s)) => (RunState::Runnable, Some(s)),
            (0, None) if post => (RunState::Runnable, Some(power_on_state())),
            _ => (RunState::WaitForSipi, None),
        };
        let params = vm
            .info()
            .and_then(|i| i.cfg)
            .map_or(SchedParams::DEFAULT, SchedParams::of_vm);
        let tid = ThreadId((vm.id << 8) | idx as u16);
        if let Err(e) = self.sched.add(tid, params) {
            vm.stop(format_args!("vCPU {idx} on pCPU {}: {e}", self.id));
            self.recycle_hw(hw);
            context.release();
            return;
        }
        let mut t = Thread {
            vm,
            idx,
            generation,
            hw,
            lapic: Vlapic::new(idx as u32, idx == 0, TSC_PER_BUS_TICK),
            state,
            io: None,
            nmi: false,
            tlb: vm.tlb_generation(),
            context,
            tid,
            lapic_pt: false,
            refused_icrs: 0,
        };
        if let Some(s) = initial {
            t.hw.get().set_initial_state(&s);
        }
        t.publish_lapic();
        vm.set_parked(idx, state == RunState::WaitForSipi);
        if idx == 0 {
            hvlog!(
                "VM {} {}: vCPU 0 starts on pCPU {} at RIP {:#x}",
                vm.id,
                vm.name(),
                self.id,
                initial.map_or(0, |s| s.rip)
            );
        }
        self.threads[free] = Some(t);
    }

    fn recycle_hw(&mut self, hw: HwVcpu) {
        match hw {
            HwVcpu::Svm(v) => {
                if let Some(s) = self.spare_vmcbs.iter_mut().find(|s| **s == 0) {
                    *s = v.vmcb_page();
                }
            }
            HwVcpu::Vmx(v) => {
                if let Some(s) = self.spare_vmx.iter_mut().find(|s| s.is_none()) {
                    *s = Some(v);
                }
            }
        }
    }

    fn new_hw(&mut self, vm: &Vm) -> Result<HwVcpu, &'static str> {
        let asid_or_vpid = vm.id + 1;
        match backend() {
            Some(Backend::Svm(caps)) => {
                let page = match self.spare_vmcbs.iter_mut().find(|s| **s != 0) {
                    Some(s) => core::mem::take(s),
                    None => frames::alloc(1).ok_or("out of memory for a VMCB")?,
                };
                // SAFETY: a VMCB page of this pCPU that no vCPU uses any more.
                unsafe { core::ptr::write_bytes(page as *mut u8, 0, 4096) };
                let mut v = SvmVcpu::new(page, self.svm_host, vm.root(), asid_or_vpid as u32, caps);
                for (base, n) in direct_ports(vm) {
                    v.allow_io(base, n, frames::alloc)
                        .map_err(|_| "out of memory for an I/O map")?;
                }
                Ok(HwVcpu::Svm(v))
            }
            Some(Backend::Vmx) => {
                let eptp = vmx::eptp(vm.root());
                let v = match self.spare_vmx.iter_mut().find_map(|s| s.take()) {
                    Some(v) => v.recycle(eptp, asid_or_vpid),
                    None => VmxVcpu::new(eptp, asid_or_vpid),
                };
                let mut v = v.map_err(|_| "no VMCS left")?;
                for (base, n) in direct_ports(vm) {
                    v.allow_io(base, n);
                }
                Ok(HwVcpu::Vmx(v))
            }
            None => Err("no virtualization backend"),
        }
    }

    /// Runs thread `i` until it blocks, its VM stops running, or an interrupt arrives for
    /// the hypervisor (its timer, a kick): the loop then re-evaluates.
    fn run(&mut self, i: usize) {
        if self.loaded != Some(i) {
            if let Some(prev) = self.loaded.and_then(|p| self.threads[p].as_mut()) {
                prev.context.save();
            }
            if let Some(t) = self.threads[i].as_mut() {
                t.context.restore();
            }
            self.loaded = Some(i);
        }
        let Some(t) = self.threads[i].as_mut() else {
            return;
        };
        let slot = &t.vm.vcpus[t.idx];
        loop {
            slot.active.store(true, Ordering::SeqCst);
            if t.vm.state() != VmState::Running || t.state != RunState::Runnable {
                break;
            }
            prepare_injection(t);
            complete_halt_in_shadow(t);
            slot.in_guest.store(true, Ordering::SeqCst);
            let generation = t.vm.tlb_generation();
            if generation != t.tlb {
                t.hw.get().flush_guest_tlb();
                t.tlb = generation;
            }
            slot.flushed.store(generation, Ordering::Release);
            let e = t.hw.get().run();
            slot.in_guest.store(false, Ordering::Release);
            let next = exit::handle(t, e);
            slot.active.store(false, Ordering::Release);
            match next {
                Next::Continue => {}
                Next::Leave => break,
            }
        }
        slot.active.store(false, Ordering::SeqCst);
    }
}

/// Port ranges a vCPU of `vm` reaches without exits: the ACPI PM timer, a read-only counter
/// every guest calibrates against, except for post-launched VMs (their device model owns
/// their ports).
fn direct_ports(vm: &Vm) -> impl Iterator<Item = (u16, u16)> {
    let post = vm.load_order() == Some(LoadOrder::PostLaunched);
    crate::hv::pm_timer()
        .filter(|_| !post)
        .map(|t| (t.port, 4))
        .into_iter()
}

/// Brings a thread up to date with what happened while it was not running: INIT/SIPI/NMI
/// requests, posted interrupts, its timer, the Service VM's completion of its I/O request.
fn service(t: &mut Thread, now: u64) {
    let slot = &t.vm.vcpus[t.idx];
    let signals = slot.take_signals();
    if signals.init {
        t.lapic.reset_registers();
        t.publish_lapic();
        t.io = None;
        t.nmi = false;
        t.state = RunState::WaitForSipi;
        t.vm.set_parked(t.idx, true);
    }
    if let (Some(vector), RunState::WaitForSipi) = (signals.sipi, t.state) {
        t.hw.get().set_initial_state(&sipi_state(vector));
        t.state = RunState::Runnable;
        t.vm.set_parked(t.idx, false);
    }
    if signals.nmi || (t.lapic_pt && irq::take_guest_nmi()) {
        t.nmi = true;
    }
    t.lapic.sync(&slot.irqs);
    if t.lapic.timer_expired(now) {
        t.publish_lapic();
    }
    if t.idx == 0 {
        t.vm.devices.tick(t.vm, now);
    }
    if t.state == RunState::WaitForIo && exit::poll_io(t) {
        t.state = RunState::Runnable;
    }
    match t.state {
        RunState::Halted
            if t.nmi
                || t.lapic.pending().is_some()
                || extint_pending(t)
                || t.hw.get_ref().interrupt_pending()
                || (t.lapic_pt && irq::guest_vector_pending()) =>
        {
            t.state = RunState::Runnable
        }
        RunState::HaltedNoInterrupts if t.nmi => {
            t.state = RunState::Runnable;
            t.vm.set_parked(t.idx, false);
        }
        _ => {}
    }
}

fn extint_pending(t: &Thread) -> bool {
    t.idx == 0 && t.lapic.accepts_extint() && t.vm.devices.pic_output().is_some()
}

/// Hands the backend what the vCPU should take at its next entry: an NMI, else the highest
/// deliverable local APIC interrupt, else the vPIC's (virtual wire through LINT0).
fn prepare_injection(t: &mut Thread) {
    let slot = &t.vm.vcpus[t.idx];
    if !slot.irqs.is_empty() {
        t.lapic.sync(&slot.irqs);
    }
    if t.nmi {
        t.nmi = false;
        t.hw.get().inject(Injection::Nmi);
    }
    if t.hw.get_ref().interrupt_pending() {
        return;
    }
    if t.lapic_pt {
        // Its interrupts the hypervisor took while the vCPU halted; the rest reach the
        // guest directly.
        if let Some(vector) = irq::take_guest_vector() {
            t.hw.get().inject(Injection::ExternalInterrupt { vector });
        }
        return;
    }
    if let Some(vector) = t.lapic.pending() {
        t.lapic.ack(vector);
        t.hw.get().inject(Injection::ExternalInterrupt { vector });
        t.publish_lapic();
    } else if extint_pending(t) {
        if let Some(vector) = t.vm.devices.pic_acknowledge() {
            t.hw.get().inject(Injection::ExternalInterrupt { vector });
        }
    }
}

/// An interrupt waits for a vCPU that sits in an STI shadow at a HLT (an exit came between
/// the two, as in Linux's idle `sti; hlt`). With an interrupt pending the HLT ends at once,
/// so it is completed here and the interrupt arrives after it, as on hardware. Left to the
/// CPU, QEMU's SVM was seen to deliver the virtual interrupt before the HLT: the handler's
/// wake-up (a task made runnable on that CPU) then went to sleep with the HLT, and a Linux
/// Service VM CPU idled for good with a runnable task.
fn complete_halt_in_shadow(t: &mut Thread) {
    const HLT: u8 = 0xF4;
    if !t.hw.get_ref().interrupt_pending() || !t.hw.get_ref().interrupt_shadow() {
        return;
    }
    let interrupts_on =
        RFlags::from_bits_retain(t.hw.get_ref().rflags()).contains(RFlags::INTERRUPT_FLAG);
    let (bytes, n) = exit::fetch(t.vm, t.hw.get_ref());
    if interrupts_on && n > 0 && bytes[0] == HLT {
        t.hw.get().advance_rip(1);
    }
}
