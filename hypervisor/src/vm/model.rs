use crate::arch::x86::irq;
use crate::devices::irq::{decode_msi, destinations, Delivery, LapicView, Message, PendingSet};
use crate::devices::VmDevices;
use crate::hvlog;
use crate::hypercall::{MAX_VCPUS_PER_VM, MAX_VM_NUM};
use crate::vcpu::InitialState;
use crate::vm::memory::VmMemory;
use acrn_static_config::{LoadOrder, VmConfig};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use spin::Mutex;

pub const MAX_VMS: usize = MAX_VM_NUM;
pub const MAX_VCPUS: usize = MAX_VCPUS_PER_VM as usize;
const NO_PCPU: u8 = u8::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum VmState {
    /// No VM in this slot.
    Empty,
    /// Created by hypercall, not started yet (or reset).
    Created,
    Running,
    /// No vCPU runs until the VM is started, reset or destroyed.
    Paused,
    /// Stopped by the hypervisor (a fault, or its vCPUs all ended): for good.
    Stopped,
}

impl VmState {
    fn from_u8(v: u8) -> VmState {
        match v {
            1 => VmState::Created,
            2 => VmState::Running,
            3 => VmState::Paused,
            4 => VmState::Stopped,
            _ => VmState::Empty,
        }
    }
}

/// What a VM is, fixed while it exists.
#[derive(Clone, Copy)]
pub struct VmInfo {
    pub name: &'static str,
    pub load_order: LoadOrder,
    /// Its scenario entry, if it has one (dynamic post-launched VMs do not).
    pub cfg: Option<&'static VmConfig>,
    /// ACRN guest flags (GUEST_FLAG_*).
    pub flags: u64,
}

/// Requests other vCPUs (or the hypervisor) make of a vCPU, taken by the pCPU that runs it.
const SIGNAL_INIT: u32 = 1 << 31;
const SIGNAL_NMI: u32 = 1 << 30;
const SIGNAL_SIPI: u32 = 1 << 29;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals {
    pub init: bool,
    pub nmi: bool,
    pub sipi: Option<u8>,
}

/// The part of a vCPU other pCPUs see. Its architectural state and its local APIC belong to
/// the pCPU running it ([`crate::vcpu::run`]).
pub struct VcpuSlot {
    pcpu: AtomicU8,
    /// Interrupts posted to its local APIC (any pCPU posts, the running one takes).
    pub irqs: PendingSet,
    /// Its local APIC's destination state, for delivery from other pCPUs.
    pub view: Mutex<LapicView>,
    signals: AtomicU32,
    /// The start state the Service VM set (HC_SET_VCPU_REGS) or the boot protocol's.
    pub start: Mutex<Option<InitialState>>,
    /// Inside the run loop's slice for this vCPU (entering, in the guest, or handling an exit).
    pub active: AtomicBool,
    /// In guest mode, or about to enter it.
    pub in_guest: AtomicBool,
    /// The TLB generation of its VM this vCPU flushed to.
    pub flushed: AtomicU32,
    /// Runs no more unless another vCPU acts: halted with interrupts disabled, or waiting
    /// for INIT/SIPI.
    parked: AtomicBool,
}

const INITIAL_VIEW: LapicView = LapicView {
    id: 0,
    ldr: 0,
    dfr: u32::MAX,
    x2apic: false,
    ppr: 0,
    enabled: true,
    sw_enabled: false,
};

impl VcpuSlot {
    const fn new() -> Self {
        VcpuSlot {
            pcpu: AtomicU8::new(NO_PCPU),
            irqs: PendingSet::new(),
            view: Mutex::new(INITIAL_VIEW),
            signals: AtomicU32::new(0),
            start: Mutex::new(None),
            active: AtomicBool::new(false),
            in_guest: AtomicBool::new(false),
            flushed: AtomicU32::new(0),
            parked: AtomicBool::new(false),
        }
    }

    pub fn pcpu(&self) -> Option<usize> {
        match self.pcpu.load(Ordering::Acquire) {
            NO_PCPU => None,
            p => Some(p as usize),
        }
    }

    /// Takes the pending INIT/SIPI/NMI requests.
    pub fn take_signals(&self) -> Signals {
        let s = self.signals.swap(0, Ordering::AcqRel);
        Signals {
            init: s & SIGNAL_INIT != 0,
            nmi: s & SIGNAL_NMI != 0,
            sipi: (s & SIGNAL_SIPI != 0).then_some(s as u8),
        }
    }

    fn reset(&self, apic_id: u32) {
        self.irqs.clear();
        *self.view.lock() = LapicView {
            id: apic_id,
            ..INITIAL_VIEW
        };
        self.signals.store(0, Ordering::Release);
        *self.start.lock() = None;
        self.parked.store(false, Ordering::Release);
    }
}

pub struct Vm {
    pub id: u16,
    state: AtomicU8,
    info: Mutex<Option<VmInfo>>,
    /// The load order, readable on every exit without the lock (0: no VM).
    order: AtomicU8,
    /// Bumped whenever the VM (re)starts from scratch: pCPUs rebuild their vCPUs of it.
    generation: AtomicU32,
    /// Root of its NPT/EPT.
    root: AtomicU64,
    npt: AtomicBool,
    /// pCPU affinity; vCPU i runs on the i-th pCPU of the set.
    pcpus: AtomicU64,
    pub vcpus: [VcpuSlot; MAX_VCPUS],
    /// Bumped when mappings are removed: vCPUs flush before they enter again.
    tlb_generation: AtomicU32,
    /// Service VM address of its I/O request page (post-launched VMs).
    ioreq_page: AtomicU64,
    /// I/O requests completed by polling (GUEST_FLAG_IO_COMPLETION_POLLING).
    pub polling: AtomicBool,
    pub devices: VmDevices,
    /// Exits by kind (see [`ExitKind`]), for the record printed when the VM stops.
    exits: [AtomicU64; ExitKind::COUNT],
}

/// The kinds of exit the VM's record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    PortIo,
    Mmio,
    LocalApic,
    Msr,
    Cpuid,
    Hypercall,
    Halt,
    Interrupt,
    Other,
}

impl ExitKind {
    const COUNT: usize = 9;
    pub const ALL: [(ExitKind, &'static str); ExitKind::COUNT] = [
        (ExitKind::PortIo, "io"),
        (ExitKind::Mmio, "mmio"),
        (ExitKind::LocalApic, "lapic"),
        (ExitKind::Msr, "msr"),
        (ExitKind::Cpuid, "cpuid"),
        (ExitKind::Hypercall, "hypercall"),
        (ExitKind::Halt, "hlt"),
        (ExitKind::Interrupt, "interrupt"),
        (ExitKind::Other, "other"),
    ];
}

impl Vm {
    const fn new(id: u16) -> Self {
        Vm {
            id,
            state: AtomicU8::new(VmState::Empty as u8),
            info: Mutex::new(None),
            order: AtomicU8::new(0),
            generation: AtomicU32::new(0),
            root: AtomicU64::new(0),
            npt: AtomicBool::new(false),
            pcpus: AtomicU64::new(0),
            vcpus: [const { VcpuSlot::new() }; MAX_VCPUS],
            tlb_generation: AtomicU32::new(0),
            ioreq_page: AtomicU64::new(0),
            polling: AtomicBool::new(false),
            devices: VmDevices::new(),
            exits: [const { AtomicU64::new(0) }; ExitKind::COUNT],
        }
    }

    pub fn count_exit(&self, kind: ExitKind) {
        self.exits[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The VM's exits so far by kind: (name, count) each, in [`ExitKind`]'s order.
    pub fn exit_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        ExitKind::ALL
            .iter()
            .zip(&self.exits)
            .map(|((_, name), n)| (*name, n.load(Ordering::Relaxed)))
    }

    pub fn state(&self) -> VmState {
        VmState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, s: VmState) {
        self.state.store(s as u8, Ordering::SeqCst);
        TABLE_GENERATION.fetch_add(1, Ordering::AcqRel);
    }

    pub fn info(&self) -> Option<VmInfo> {
        *self.info.lock()
    }

    pub fn name(&self) -> &'static str {
        self.info().map_or("", |i| i.name)
    }

    pub fn load_order(&self) -> Option<LoadOrder> {
        match self.order.load(Ordering::Acquire) {
            1 => Some(LoadOrder::PreLaunched),
            2 => Some(LoadOrder::Service),
            3 => Some(LoadOrder::PostLaunched),
            _ => None,
        }
    }

    pub fn generation(&self) -> u32 {
        self.generation.load(Ordering::Acquire)
    }

    /// The root of the VM's NPT/EPT (also the second-level table of its pass-through DMA).
    pub fn table_root(&self) -> u64 {
        self.root.load(Ordering::Acquire)
    }

    /// Whether the VM's second-level table is an NPT (else an EPT).
    pub fn is_npt(&self) -> bool {
        self.npt.load(Ordering::Relaxed)
    }

    pub fn memory(&self) -> VmMemory {
        VmMemory::new(
            self.root.load(Ordering::Acquire),
            self.npt.load(Ordering::Relaxed),
        )
    }

    pub fn root(&self) -> u64 {
        self.root.load(Ordering::Acquire)
    }

    /// The MSI address (fixed, physical destination) of the local APIC of the pCPU that
    /// hosts vCPU 0: where the hypervisor aims the hardware messages it remaps for this VM.
    pub fn vcpu0_msi_address(&self) -> Option<u32> {
        self.vcpus[0]
            .pcpu()
            .and_then(|p| crate::hv::platform().board.pcpus.get(p))
            .map(|c| 0xFEE0_0000 | (c.apic_id & 0xFF) << 12)
    }

    pub fn vcpu_count(&self) -> usize {
        (self.pcpus.load(Ordering::Acquire).count_ones() as usize).min(MAX_VCPUS)
    }

    pub fn ioreq_page(&self) -> u64 {
        self.ioreq_page.load(Ordering::Acquire)
    }

    pub fn tlb_generation(&self) -> u32 {
        self.tlb_generation.load(Ordering::SeqCst)
    }

    /// Sets the VM up in this slot: its identity, memory table and vCPUs on `pcpus` (vCPU i
    /// on the i-th pCPU of the set), every vCPU and device at reset. Not running yet.
    pub fn setup(&self, info: VmInfo, root: u64, npt: bool, pcpus: u64) {
        *self.info.lock() = Some(info);
        let order = match info.load_order {
            LoadOrder::PreLaunched => 1,
            LoadOrder::Service => 2,
            LoadOrder::PostLaunched => 3,
        };
        self.order.store(order, Ordering::Release);
        self.root.store(root, Ordering::Release);
        self.npt.store(npt, Ordering::Relaxed);
        self.pcpus.store(pcpus, Ordering::Release);
        self.ioreq_page.store(0, Ordering::Relaxed);
        self.reset_platform();
        self.set_state(VmState::Created);
    }

    /// Every vCPU slot and device back to reset; vCPU i bound to its pCPU.
    fn reset_platform(&self) {
        let pcpus = self.pcpus.load(Ordering::Acquire);
        for (i, v) in self.vcpus.iter().enumerate() {
            let pcpu = (0..64u8).filter(|&c| pcpus & (1 << c) != 0).nth(i);
            v.reset(i as u32);
            v.pcpu.store(pcpu.unwrap_or(NO_PCPU), Ordering::Release);
        }
        self.devices.reset(self);
        self.exits
            .iter()
            .for_each(|e| e.store(0, Ordering::Relaxed));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Lets its vCPUs run (BSP from its start state; APs wait for INIT/SIPI unless the
    /// Service VM gave them a start state).
    pub fn start(&self, ioreq_page: Option<u64>) {
        if let Some(p) = ioreq_page {
            self.ioreq_page.store(p, Ordering::Release);
        }
        self.set_state(VmState::Running);
        self.kick_all();
    }

    /// Takes every vCPU off its pCPU: when this returns, none runs or handles an exit, and
    /// none will until the VM is started again.
    pub fn pause(&self) {
        if self.state() == VmState::Running {
            self.set_state(VmState::Paused);
        }
        self.kick_all();
        self.wait_until(|v| !v.active.load(Ordering::SeqCst));
    }

    /// Power-on state again (paused first): vCPUs, their local APICs and the devices.
    pub fn reset(&self) {
        self.pause();
        // Created before the new generation: a pCPU adopts vCPUs of running or paused VMs
        // only, so none takes a vCPU before the Service VM has set its start state.
        self.set_state(VmState::Created);
        self.reset_platform();
    }

    /// Empties the slot (paused first).
    pub fn destroy(&self) {
        self.pause();
        // Functions and lines the Service VM gave the VM go back to it (ACRN does the same
        // for a Device Model that did not deassign them).
        crate::vm::ptirq::take_all_lines(self);
        crate::devices::pci::deassign_all(self);
        self.devices.pci().forget_added();
        // Not Empty yet: the slot must not be taken for a new VM while it is cleared.
        self.set_state(VmState::Created);
        self.reset_platform();
        self.pcpus.store(0, Ordering::Release);
        self.vcpus
            .iter()
            .for_each(|v| v.pcpu.store(NO_PCPU, Ordering::Release));
        *self.info.lock() = None;
        self.order.store(0, Ordering::Release);
        self.set_state(VmState::Empty);
    }

    /// Records whether vCPU `idx` is parked (see [`VcpuSlot`]); once every vCPU of a VM that
    /// nobody else can wake (not post-launched) is, the guest is done and the VM stops.
    pub fn set_parked(&self, idx: usize, parked: bool) {
        let Some(slot) = self.vcpus.get(idx) else {
            return;
        };
        slot.parked.store(parked, Ordering::SeqCst);
        let all = self.vcpus[..self.vcpu_count()]
            .iter()
            .all(|v| v.parked.load(Ordering::SeqCst));
        if parked && all && self.load_order() != Some(LoadOrder::PostLaunched) {
            self.stop(format_args!(
                "every vCPU halted with interrupts disabled (the guest is done)"
            ));
        }
    }

    /// Stops the VM for good (once) with a reason; its vCPUs leave at their next exit.
    pub fn stop(&self, reason: fmt::Arguments) {
        let prev = self.state.swap(VmState::Stopped as u8, Ordering::SeqCst);
        TABLE_GENERATION.fetch_add(1, Ordering::AcqRel);
        if prev == VmState::Stopped as u8 || prev == VmState::Empty as u8 {
            return;
        }
        self.devices.flush_console(self);
        self.devices.pci().quiesce_passthrough();
        hvlog!("VM {} {} stopped: {}", self.id, self.name(), reason);
        hvlog!("VM {} {} exits: {}", self.id, self.name(), ExitRecord(self));
        self.kick_all();
        if self.load_order() == Some(LoadOrder::Service) {
            // Nobody serves the post-launched VMs any more.
            for vm in VMS
                .iter()
                .filter(|v| v.load_order() == Some(LoadOrder::PostLaunched))
            {
                vm.stop(format_args!("the Service VM stopped"));
            }
        }
        power_off_if_all_stopped();
    }

    /// After removing mappings: every vCPU of the VM drops its cached translations before
    /// this returns (or before it enters the guest again).
    pub fn flush_tlbs(&self) {
        let generation = self.tlb_generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.kick_all();
        self.wait_until(|v| {
            !v.in_guest.load(Ordering::SeqCst)
                || v.flushed.load(Ordering::SeqCst).wrapping_sub(generation) as i32 >= 0
        });
    }

    /// Waits until `done` holds for every vCPU that runs on another pCPU (the caller's own
    /// pCPU is busy with the caller).
    fn wait_until(&self, done: impl Fn(&VcpuSlot) -> bool) {
        let me = crate::arch::x86::cpu::this_cpu();
        for v in &self.vcpus[..self.vcpu_count()] {
            if v.pcpu() == Some(me) {
                continue;
            }
            while !done(v) {
                crate::arch::x86::pause();
            }
        }
    }

    /// Makes every pCPU that hosts a vCPU of this VM re-evaluate (exit the guest if in it).
    pub fn kick_all(&self) {
        for v in &self.vcpus[..self.vcpu_count()] {
            if let Some(p) = v.pcpu() {
                kick_pcpu(p);
            }
        }
    }

    /// Delivers `msg` to the vCPUs of this VM it addresses (`source`: the sending vCPU of an
    /// IPI). Nothing leaves the VM: only its own vCPUs are candidates.
    pub fn deliver(&self, msg: &Message, source: Option<usize>) {
        let n = self.vcpu_count();
        let views: [LapicView; MAX_VCPUS] = core::array::from_fn(|i| *self.vcpus[i].view.lock());
        let targets = destinations(msg, source, &views[..n]);
        for (i, v) in self.vcpus.iter().enumerate().take(n) {
            if targets & (1 << i) == 0 {
                continue;
            }
            match msg.delivery {
                Delivery::Fixed | Delivery::LowestPriority => {
                    // Already pending: its earlier post kicked the pCPU.
                    if !v.irqs.post(msg.vector, msg.level_trigger) {
                        continue;
                    }
                }
                Delivery::Nmi => {
                    v.signals.fetch_or(SIGNAL_NMI, Ordering::AcqRel);
                }
                Delivery::Init => {
                    v.signals.fetch_or(SIGNAL_INIT, Ordering::AcqRel);
                }
                Delivery::Startup => {
                    let sipi = SIGNAL_SIPI | msg.vector as u32;
                    let _ = v
                        .signals
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                            Some((s & !(SIGNAL_SIPI | 0xFF)) | sipi)
                        });
                }
                // ExtINT comes from the vPIC through LINT0; SMI is not emulated.
                Delivery::ExtInt | Delivery::Smi => continue,
            }
            if let Some(p) = v.pcpu() {
                kick_pcpu(p);
            }
        }
    }

    /// HC_INJECT_MSI and MSIs of the VM's devices.
    pub fn inject_msi(&self, addr: u64, data: u64) -> Result<(), crate::devices::irq::MsiError> {
        let msg = decode_msi(addr, data as u32, false)?;
        self.deliver(&msg, None);
        Ok(())
    }
}

struct ExitRecord<'a>(&'a Vm);

impl fmt::Display for ExitRecord<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, n)) in self.0.exit_counts().enumerate() {
            let sep = if i > 0 { " " } else { "" };
            write!(f, "{sep}{name}={n}")?;
        }
        Ok(())
    }
}

/// Bumped by every change of a VM's state, generation or vCPU placement: a pCPU looks
/// through the table for its vCPUs only when this moved.
static TABLE_GENERATION: AtomicU32 = AtomicU32::new(0);

pub fn table_generation() -> u32 {
    TABLE_GENERATION.load(Ordering::Acquire)
}

/// Every VM slot, by VM id.
static VMS: [Vm; MAX_VMS] = {
    let mut i = 0;
    let mut vms = [const { Vm::new(0) }; MAX_VMS];
    while i < MAX_VMS {
        vms[i] = Vm::new(i as u16);
        i += 1;
    }
    vms
};

pub fn vm(id: u16) -> Option<&'static Vm> {
    VMS.get(id as usize)
}

pub fn all() -> &'static [Vm] {
    &VMS
}

/// Makes pCPU `pcpu` re-evaluate its vCPUs: a kick IPI, unless it is the caller's.
pub fn kick_pcpu(pcpu: usize) {
    if pcpu == crate::arch::x86::cpu::this_cpu() {
        return;
    }
    if let Some(c) = crate::hv::platform().board.pcpus.get(pcpu) {
        irq::kick(pcpu, c.apic_id);
    }
}

/// Whether any VM is still alive (created, running or paused).
fn anything_left() -> bool {
    VMS.iter()
        .any(|v| !matches!(v.state(), VmState::Stopped | VmState::Empty))
}

fn power_off_if_all_stopped() {
    if !anything_left() {
        hvlog!("{}", acrn_static_config::POWER_OFF_LINE);
        crate::hv::power_off();
    }
}
