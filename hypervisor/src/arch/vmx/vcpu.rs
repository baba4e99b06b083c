//! The VMX implementation of [`Vcpu`]: one VMCS per vCPU, created and run on its pCPU.

use super::bitmaps::{IoBitmap, MsrBitmap};
use super::caps::{
    msr, Controls, EntryControls, ExitControls, PinControls, PrimaryControls, SecondaryControls,
    VmxError,
};
use super::enable::{current, Page};
use super::exit::{decode, gpr, intr, Decoded, ExitReason, RawExit, VMFAIL_FLAG, VMFAIL_INVALID};
use super::fields::{self as f, Field};
use super::guest::{
    load_initial_state, sipi_state, CrPolicy, VmcsAccess, ACTIVITY_ACTIVE, ACTIVITY_WAIT_FOR_SIPI,
};
use super::instr::{self, EnterResult, InvEptType, InvVpidType, VmFail};
use crate::arch::x86::cpu::{CpuCell, MAX_PCPUS};
use crate::arch::x86::{rdmsr, read_cr0, read_cr3, read_cr4};
use crate::vcpu::{GuestRegs, InitialState, Injection, Segment, Vcpu, VmExit};
use crate::vcpu::{VECTOR_GP, VECTOR_UD};
use bitflags::bitflags;
use core::sync::atomic::{AtomicUsize, Ordering};
use x86_64::instructions::tables::{sgdt, sidt};
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags;

/// The hardware VMCS that is current on this CPU.
struct HwVmcs;

impl VmcsAccess for HwVmcs {
    fn read(&self, field: Field) -> u64 {
        instr::vmread(field).unwrap_or(0)
    }
    fn write(&mut self, field: Field, value: u64) {
        // A failing VMWRITE means a field this CPU lacks; VM entry then reports the bad state.
        let _ = instr::vmwrite(field, value);
    }
}

/// The pages one vCPU needs: its VMCS, the two I/O bitmaps and the MSR bitmap.
#[repr(C, align(4096))]
struct VcpuPages {
    vmcs: Page,
    io: [u8; 8192],
    msr: [u8; 4096],
}

/// One vCPU per pCPU (ACRN's partitioned model) plus room for a second per pCPU.
const MAX_VCPUS: usize = 2 * MAX_PCPUS;
static PAGES: [CpuCell<VcpuPages>; MAX_VCPUS] = [const {
    CpuCell::new(VcpuPages {
        vmcs: Page([0; 4096]),
        io: [0; 8192],
        msr: [0; 4096],
    })
}; MAX_VCPUS];
static NEXT_PAGES: AtomicUsize = AtomicUsize::new(0);

/// MSRs the guest reads and writes directly. EFER, PAT, FS/GS base and SYSENTER are switched
/// by the VMCS; the SYSCALL MSRs, KERNEL_GS_BASE and TSC_AUX by the run loop when a pCPU
/// changes vCPUs (`vcpu::context`); the hypervisor never uses SYSCALL, SWAPGS or RDTSCP. The
/// local APIC's MSRs (IA32_TSC_DEADLINE included) exit to the virtual LAPIC.
const PASSTHROUGH_MSRS: [u32; 12] = [
    msr::IA32_EFER,
    msr::IA32_FS_BASE,
    msr::IA32_GS_BASE,
    0xC000_0102, // KERNEL_GS_BASE
    0xC000_0081, // STAR
    0xC000_0082, // LSTAR
    0xC000_0083, // CSTAR
    0xC000_0084, // SFMASK
    0xC000_0103, // TSC_AUX (RDTSCP is enabled)
    msr::IA32_SYSENTER_CS,
    msr::IA32_SYSENTER_ESP,
    msr::IA32_SYSENTER_EIP,
];

/// Longest a guest runs without an exit: the pCPU loop then takes what interrupts and kicks
/// wait for it (an emulator may mask them while the guest has IF clear).
const SLICE_US: u64 = 1000;

/// Preemption-timer ticks of [`SLICE_US`] when the timer counts every 2^`shift` TSC ticks.
fn preemption_ticks(shift: u32) -> u32 {
    let khz = match crate::tsc::khz() {
        0 => 1_000_000,
        k => k as u64,
    };
    ((khz * SLICE_US / 1000) >> shift.min(31)).clamp(1, u32::MAX as u64) as u32
}

/// Vectors whose hardware exceptions push an error code (#DF #TS #NP #SS #GP #PF #AC #CP).
fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

bitflags! {
    /// Guest interruptibility state (VMX-only, so not in the `x86_64` crate).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Interruptibility: u64 {
        const BLOCKING_BY_STI = 1 << 0;
        const BLOCKING_BY_MOV_SS = 1 << 1;
        const BLOCKING_BY_SMI = 1 << 2;
        const BLOCKING_BY_NMI = 1 << 3;
        const BLOCKING_BY_STI_OR_MOV_SS = Self::BLOCKING_BY_STI.bits() | Self::BLOCKING_BY_MOV_SS.bits();
        const _ = !0;
    }
}

pub struct VmxVcpu {
    pages: &'static mut VcpuPages,
    regs: GuestRegs,
    launched: bool,
    controls: Controls,
    policy: CrPolicy,
    vpid: u16,
    proc1: PrimaryControls,
    entry: EntryControls,
    /// Exception or NMI to deliver on the next entry.
    pending_event: Option<Injection>,
    /// External interrupt waiting for the guest to become interruptible.
    pending_irq: Option<u8>,
    /// Event whose delivery an exit interrupted (IDT-vectoring info, error code, length).
    reinject: Option<(u32, u32, u32)>,
    exit_len: u8,
    /// Preemption-timer ticks of one slice (None: the CPU has no preemption timer, or the
    /// guest owns the local APIC and runs unbounded).
    preemption: Option<u32>,
    /// The guest owns its pCPU's local APIC: NMIs exit, and are the hypervisor's kicks.
    lapic_pt: bool,
}

impl VmxVcpu {
    /// Creates a vCPU on the calling pCPU (VMX must be on there) for a VM whose EPT root is
    /// `eptp` (see [`super::eptp`]). `vpid` tags its TLB entries (0 disables tagging). All port
    /// I/O and MSR accesses exit until [`allow_io`](Self::allow_io) /
    /// [`allow_msr`](Self::allow_msr) open them, except [`PASSTHROUGH_MSRS`] and PAT. The vCPU
    /// starts in real mode at 0; call `set_initial_state` before running it.
    pub fn new(eptp: u64, vpid: u16) -> Result<Self, VmxError> {
        current().ok_or(VmxError::NotEnabled)?;
        let slot = NEXT_PAGES.fetch_add(1, Ordering::Relaxed);
        let cell = PAGES.get(slot).ok_or(VmxError::OutOfVcpuSlots)?;
        // SAFETY: each slot is handed out once, by the counter above.
        Self::setup(unsafe { &mut *cell.get() }, eptp, vpid)
    }

    /// Turns this vCPU into a fresh one for another VM (or a restarted one) on the same pCPU,
    /// reusing its pages: post-launched vCPUs come and go, the slots do not. Cached
    /// translations of `vpid` and `eptp` are dropped, since a re-created VM reuses both.
    pub fn recycle(self, eptp: u64, vpid: u16) -> Result<Self, VmxError> {
        // Flush the active VMCS to memory before `setup` rewrites its region.
        // SAFETY: our own VMCS, only ever loaded on this pCPU.
        unsafe { instr::vmclear(self.pages.vmcs.pa()) }.map_err(|_| VmxError::VmcsLoadFailed)?;
        let v = Self::setup(self.pages, eptp, vpid)?;
        if v.controls.vpid {
            let _ = instr::invvpid(InvVpidType::SingleContext, vpid, 0);
        }
        let _ = instr::invept(InvEptType::SingleContext, eptp);
        Ok(v)
    }

    fn setup(pages: &'static mut VcpuPages, eptp: u64, vpid: u16) -> Result<Self, VmxError> {
        let cpu = current().ok_or(VmxError::NotEnabled)?;
        pages.vmcs.stamp(cpu.caps.revision_id());
        let pa = pages.vmcs.pa();
        // SAFETY: a freshly stamped VMCS that no other CPU has loaded.
        unsafe { instr::vmclear(pa).and_then(|()| instr::vmptrld(pa)) }
            .map_err(|_| VmxError::VmcsLoadFailed)?;

        let mut controls = cpu.controls;
        if vpid == 0 {
            controls.proc2.remove(SecondaryControls::ENABLE_VPID);
            controls.vpid = false;
        }
        let mut v = VmxVcpu {
            pages,
            regs: GuestRegs::default(),
            launched: false,
            controls,
            policy: cpu.policy,
            vpid,
            proc1: controls.proc1,
            entry: controls.entry,
            pending_event: None,
            pending_irq: None,
            reinject: None,
            exit_len: 0,
            preemption: controls
                .pin
                .contains(PinControls::PREEMPTION_TIMER)
                .then(|| preemption_ticks(cpu.caps.preemption_timer_shift())),
            lapic_pt: false,
        };
        IoBitmap(&mut v.pages.io).trap_all();
        let mut msrs = MsrBitmap(&mut v.pages.msr);
        msrs.trap_all();
        for m in PASSTHROUGH_MSRS {
            msrs.pass(m, true, true);
        }
        if controls.exit.contains(ExitControls::SAVE_PAT)
            && controls.entry.contains(EntryControls::LOAD_PAT)
        {
            msrs.pass(msr::IA32_PAT, true, true);
        }
        v.write_controls(eptp);
        v.write_host_state();
        v.set_initial_state(&sipi_state(0));
        Ok(v)
    }

    fn write_controls(&mut self, eptp: u64) {
        let c = self.controls;
        let mut w = HwVmcs;
        w.write(f::PIN_BASED_CONTROLS, c.pin.bits() as u64);
        w.write(f::PRIMARY_PROC_CONTROLS, self.proc1.bits() as u64);
        w.write(f::SECONDARY_PROC_CONTROLS, c.proc2.bits() as u64);
        w.write(f::EXIT_CONTROLS, c.exit.bits() as u64);
        w.write(f::ENTRY_CONTROLS, self.entry.bits() as u64);
        // #UD: VMMCALL, AMD's hypercall instruction, is taken as a hypercall on Intel too.
        w.write(f::EXCEPTION_BITMAP, 1 << 6);
        w.write(f::PAGE_FAULT_ERROR_MASK, 0);
        w.write(f::PAGE_FAULT_ERROR_MATCH, 0);
        w.write(f::CR3_TARGET_COUNT, 0);
        w.write(f::EXIT_MSR_STORE_COUNT, 0);
        w.write(f::EXIT_MSR_LOAD_COUNT, 0);
        w.write(f::ENTRY_MSR_LOAD_COUNT, 0);
        w.write(f::ENTRY_INTERRUPTION_INFO, 0);
        w.write(f::IO_BITMAP_A, self.pages.io.as_ptr() as u64);
        w.write(f::IO_BITMAP_B, self.pages.io.as_ptr() as u64 + 4096);
        w.write(f::MSR_BITMAP, self.pages.msr.as_ptr() as u64);
        w.write(f::TSC_OFFSET, 0);
        w.write(f::EPT_POINTER, eptp);
        if c.vpid {
            w.write(f::VPID, self.vpid as u64);
        }
    }

    /// Host state is this CPU's: the vCPU never migrates.
    fn write_host_state(&mut self) {
        let mut w = HwVmcs;
        w.write(f::HOST_CR0, read_cr0());
        w.write(f::HOST_CR3, read_cr3());
        w.write(f::HOST_CR4, read_cr4());
        let [cs, ss, ds, es, fs, gs, tr] = instr::selectors();
        // Selectors must have RPL 0 and TI 0; TR must be non-zero (it is not reloaded from
        // the GDT on exit, only its selector and base are restored).
        let sel = |s: u16| (s & !7) as u64;
        w.write(f::HOST_CS_SELECTOR, sel(cs));
        w.write(f::HOST_SS_SELECTOR, sel(ss));
        w.write(f::HOST_DS_SELECTOR, sel(ds));
        w.write(f::HOST_ES_SELECTOR, sel(es));
        w.write(f::HOST_FS_SELECTOR, sel(fs));
        w.write(f::HOST_GS_SELECTOR, sel(gs));
        let gdt = sgdt().base.as_u64();
        let idt = sidt().base.as_u64();
        let tr_base = if tr & !7 != 0 {
            // SAFETY: the selector indexes the GDT this CPU loaded (identity-mapped); a
            // 64-bit TSS descriptor is 16 bytes.
            let (lo, hi) = unsafe {
                let d = (gdt + (tr & !7) as u64) as *const u64;
                (d.read_volatile(), d.add(1).read_volatile())
            };
            ((lo >> 16) & 0xff_ffff) | ((lo >> 56) << 24) | (hi << 32)
        } else {
            0
        };
        w.write(
            f::HOST_TR_SELECTOR,
            if tr & !7 != 0 { sel(tr) } else { 0x18 },
        );
        w.write(f::HOST_TR_BASE, tr_base);
        w.write(f::HOST_GDTR_BASE, gdt);
        w.write(f::HOST_IDTR_BASE, idt);
        w.write(f::HOST_FS_BASE, rdmsr(msr::IA32_FS_BASE));
        w.write(f::HOST_GS_BASE, rdmsr(msr::IA32_GS_BASE));
        w.write(f::HOST_SYSENTER_CS, rdmsr(msr::IA32_SYSENTER_CS));
        w.write(f::HOST_SYSENTER_ESP, rdmsr(msr::IA32_SYSENTER_ESP));
        w.write(f::HOST_SYSENTER_EIP, rdmsr(msr::IA32_SYSENTER_EIP));
        w.write(f::HOST_IA32_EFER, rdmsr(msr::IA32_EFER));
        if self.controls.exit.contains(ExitControls::LOAD_PAT) {
            w.write(f::HOST_IA32_PAT, rdmsr(msr::IA32_PAT));
        }
    }

    /// Makes this vCPU's VMCS current if another one is (several vCPUs on one pCPU).
    fn make_current(&self) {
        let pa = self.pages.vmcs.pa();
        if instr::vmptrst() != pa {
            // SAFETY: our own VMCS, only ever loaded on this pCPU.
            let _ = unsafe { instr::vmptrld(pa) };
        }
    }

    /// Lets the guest access `count` ports from `base` directly.
    pub fn allow_io(&mut self, base: u16, count: u16) {
        IoBitmap(&mut self.pages.io).pass(base, count);
    }

    /// Lets the guest read and/or write `msr` directly; false if the MSR cannot be passed.
    pub fn allow_msr(&mut self, msr: u32, read: bool, write: bool) -> bool {
        MsrBitmap(&mut self.pages.msr).pass(msr, read, write)
    }

    /// Gives the guest its pCPU's local APIC (x2APIC mode, ACRN's `lapic_passthrough`): the
    /// MSR bitmap passes the x2APIC registers and IA32_TSC_DEADLINE except reads of the APIC
    /// ID and LDR (virtual) and writes of the ICR (filtered); physical interrupts go straight
    /// to the guest (no external-interrupt exiting), NMIs exit (the hypervisor's kick), and
    /// no preemption timer bounds the guest.
    pub fn pass_lapic_through(&mut self) {
        use crate::vcpu::msr::lapic_pt::*;
        self.make_current();
        let mut msrs = MsrBitmap(&mut self.pages.msr);
        for m in X2APIC_PASSED {
            msrs.pass(m, true, true);
        }
        msrs.pass(MSR_TSC_DEADLINE, true, true);
        msrs.trap(MSR_X2APIC_ID, true, false);
        msrs.trap(MSR_X2APIC_LDR, true, false);
        msrs.trap(MSR_X2APIC_ICR, false, true);
        let mut pin = self.controls.pin;
        pin.remove(PinControls::EXTERNAL_INTERRUPT_EXITING | PinControls::PREEMPTION_TIMER);
        // Virtual NMIs too: with NMI exiting alone, the guest's IRET would not end the
        // blocking an injected NMI leaves, and the kick NMI would never exit (SDM 26.3).
        pin.insert(PinControls::NMI_EXITING | PinControls::VIRTUAL_NMIS);
        self.controls.pin = pin;
        HwVmcs.write(f::PIN_BASED_CONTROLS, pin.bits() as u64);
        self.preemption = None;
        self.lapic_pt = true;
    }

    /// Parks an AP in wait-for-SIPI: the next `run` returns `Sipi` when a SIPI reaches this
    /// pCPU. (With an emulated LAPIC use [`start_at_sipi`](Self::start_at_sipi) instead.)
    pub fn set_wait_for_sipi(&mut self) {
        self.make_current();
        HwVmcs.write(f::GUEST_ACTIVITY_STATE, ACTIVITY_WAIT_FOR_SIPI);
    }

    /// Starts the vCPU in real mode at `vector << 12`, as a SIPI does.
    pub fn start_at_sipi(&mut self, vector: u8) {
        self.set_initial_state(&sipi_state(vector));
    }

    /// Flushes this vCPU's cached linear translations (after emulating a paging change).
    fn flush_vpid(&self) {
        if self.controls.vpid {
            let _ = instr::invvpid(InvVpidType::SingleContext, self.vpid, 0);
        }
    }

    fn set_entry_ia32e(&mut self, efer: u64) {
        let long_mode = EferFlags::from_bits_retain(efer).contains(EferFlags::LONG_MODE_ACTIVE);
        self.entry.set(EntryControls::IA32E_MODE_GUEST, long_mode);
        HwVmcs.write(f::ENTRY_CONTROLS, self.entry.bits() as u64);
    }

    fn set_interrupt_window(&mut self, on: bool) {
        let mut p = self.proc1;
        p.set(PrimaryControls::INTERRUPT_WINDOW_EXITING, on);
        if p != self.proc1 {
            self.proc1 = p;
            HwVmcs.write(f::PRIMARY_PROC_CONTROLS, p.bits() as u64);
        }
    }

    /// Programs the VM-entry interruption information for the next entry.
    fn prepare_injection(&mut self) {
        let mut w = HwVmcs;
        if let Some((info, error, len)) = self.reinject.take() {
            // NMI unblocking (IDT-vectoring info) is reserved in the entry field.
            let info = intr::Info::from_bits_retain(info) - intr::Info::NMI_UNBLOCKING;
            w.write(f::ENTRY_INTERRUPTION_INFO, info.bits() as u64);
            w.write(f::ENTRY_EXCEPTION_ERROR_CODE, error as u64);
            w.write(f::ENTRY_INSTRUCTION_LEN, len as u64);
            return;
        }
        if self.pending_event.is_none() && self.pending_irq.is_none() {
            return;
        }
        let blocking = Interruptibility::from_bits_retain(w.read(f::GUEST_INTERRUPTIBILITY));
        let active = w.read(f::GUEST_ACTIVITY_STATE) == ACTIVITY_ACTIVE;
        match self.pending_event {
            Some(Injection::Exception { vector, error_code }) => {
                self.pending_event = None;
                let mut info = intr::Info::VALID.bits()
                    | intr::TYPE_HW_EXCEPTION << intr::TYPE_SHIFT
                    | vector as u32;
                // Real-mode delivery pushes no error code, and VM entry rejects one.
                let protected = w.read(f::GUEST_CR0) & 1 != 0;
                if let (Some(code), true, true) = (error_code, has_error_code(vector), protected) {
                    info |= intr::Info::ERROR_CODE.bits();
                    w.write(f::ENTRY_EXCEPTION_ERROR_CODE, code as u64);
                }
                w.write(f::ENTRY_INTERRUPTION_INFO, info as u64);
                return;
            }
            // VM entry refuses an NMI under blocking by NMI, STI or MOV SS.
            Some(Injection::Nmi)
                if active
                    && !blocking.intersects(
                        Interruptibility::BLOCKING_BY_NMI
                            | Interruptibility::BLOCKING_BY_STI_OR_MOV_SS,
                    ) =>
            {
                self.pending_event = None;
                let info = intr::Info::VALID.bits() | intr::TYPE_NMI << intr::TYPE_SHIFT | 2;
                w.write(f::ENTRY_INTERRUPTION_INFO, info as u64);
                return;
            }
            Some(Injection::Nmi) | Some(Injection::ExternalInterrupt { .. }) | None => {}
        }
        if let Some(vector) = self.pending_irq {
            let rflags = RFlags::from_bits_retain(w.read(f::GUEST_RFLAGS));
            if active
                && rflags.contains(RFlags::INTERRUPT_FLAG)
                && !blocking.intersects(Interruptibility::BLOCKING_BY_STI_OR_MOV_SS)
            {
                self.pending_irq = None;
                let info = intr::Info::VALID.bits()
                    | intr::TYPE_EXTERNAL << intr::TYPE_SHIFT
                    | vector as u32;
                w.write(f::ENTRY_INTERRUPTION_INFO, info as u64);
                self.set_interrupt_window(false);
            } else {
                self.set_interrupt_window(true);
            }
        }
    }

    /// Completes a guest MOV to CR0/CR4 that touched bits the hypervisor owns.
    fn mov_to_cr(&mut self, cr: u8, gpr_index: u8) {
        let mut w = HwVmcs;
        let value = gpr(&self.regs, gpr_index, w.read(f::GUEST_RSP));
        let efer = w.read(f::GUEST_IA32_EFER);
        let result = if cr == 0 {
            self.policy.mov_to_cr0(value, w.read(f::GUEST_CR4), efer)
        } else {
            self.policy.mov_to_cr4(value, efer)
        };
        match result {
            Ok(u) => {
                let (guest, shadow) = if cr == 0 {
                    (f::GUEST_CR0, f::CR0_READ_SHADOW)
                } else {
                    (f::GUEST_CR4, f::CR4_READ_SHADOW)
                };
                w.write(guest, u.guest);
                w.write(shadow, u.shadow);
                if u.efer != efer {
                    w.write(f::GUEST_IA32_EFER, u.efer);
                    self.set_entry_ia32e(u.efer);
                }
                self.flush_vpid();
                let len = self.exit_len;
                self.advance_rip(len);
            }
            Err(_) => self.inject(Injection::Exception {
                vector: VECTOR_GP,
                error_code: Some(0),
            }),
        }
    }

    /// XSETBV (it always exits on VMX): the shared rule and XCR0 load, or #GP.
    fn xsetbv(&mut self, xcr: u32, value: u64) {
        if crate::vcpu::context::guest_xsetbv(xcr, value) {
            let len = self.exit_len;
            self.advance_rip(len);
        } else {
            self.inject(Injection::Exception {
                vector: VECTOR_GP,
                error_code: Some(0),
            });
        }
    }

    fn read_exit(&mut self) -> RawExit {
        let w = HwVmcs;
        let raw = RawExit {
            reason: w.read(f::EXIT_REASON) as u32,
            qualification: w.read(f::EXIT_QUALIFICATION),
            intr_info: w.read(f::EXIT_INTERRUPTION_INFO) as u32,
            intr_error: w.read(f::EXIT_INTERRUPTION_ERROR_CODE) as u32,
            guest_physical: w.read(f::GUEST_PHYSICAL_ADDRESS),
        };
        self.exit_len = w.read(f::EXIT_INSTRUCTION_LEN) as u8;
        let idt = w.read(f::IDT_VECTORING_INFO) as u32;
        if intr::Info::from_bits_retain(idt).contains(intr::Info::VALID) {
            let len = if intr::needs_instr_len(idt) {
                self.exit_len as u32
            } else {
                0
            };
            self.reinject = Some((idt, w.read(f::IDT_VECTORING_ERROR_CODE) as u32, len));
        }
        raw
    }
}

impl Vcpu for VmxVcpu {
    fn set_initial_state(&mut self, state: &InitialState) {
        self.make_current();
        self.regs = state.regs;
        let efer = load_initial_state(&mut HwVmcs, state, &self.policy);
        self.set_entry_ia32e(efer);
        HwVmcs.write(f::ENTRY_INTERRUPTION_INFO, 0);
        self.pending_event = None;
        self.pending_irq = None;
        self.reinject = None;
        self.set_interrupt_window(false);
    }

    fn run(&mut self) -> VmExit {
        loop {
            self.make_current();
            self.prepare_injection();
            if let Some(ticks) = self.preemption {
                HwVmcs.write(f::PREEMPTION_TIMER_VALUE, ticks as u64);
            }
            // SAFETY: the VMCS was fully initialised by `new` and `set_initial_state`.
            match unsafe { instr::enter(&mut self.regs, self.launched) } {
                EnterResult::Exited => {}
                EnterResult::Failed(VmFail::Invalid) => {
                    return VmExit::EntryFailure {
                        raw_reason: VMFAIL_INVALID,
                    };
                }
                EnterResult::Failed(VmFail::Valid(n)) => {
                    return VmExit::EntryFailure {
                        raw_reason: VMFAIL_FLAG | n as u64,
                    };
                }
            }
            // VM exit clears the valid bit of the entry interruption information itself.
            let raw = self.read_exit();
            if !ExitReason::from_bits_retain(raw.reason).contains(ExitReason::ENTRY_FAILURE) {
                self.launched = true;
            }
            match decode(&raw, &self.regs) {
                Decoded::Report(VmExit::InterruptWindow) => {
                    self.set_interrupt_window(false);
                    return VmExit::InterruptWindow;
                }
                // With NMI exiting (local APIC passed through) the exit consumed the NMI.
                Decoded::Report(VmExit::Exception {
                    vector: 2,
                    error_code: None,
                }) if self.lapic_pt => {
                    crate::arch::x86::irq::hv_nmi();
                    return VmExit::ExternalInterrupt;
                }
                Decoded::Report(exit) => return exit,
                Decoded::MovToCr { cr, gpr } => self.mov_to_cr(cr, gpr),
                Decoded::InvalidOpcode => self.inject(Injection::Exception {
                    vector: VECTOR_UD,
                    error_code: None,
                }),
                Decoded::Xsetbv { xcr, value } => self.xsetbv(xcr, value),
            }
        }
    }

    fn regs(&self) -> &GuestRegs {
        &self.regs
    }
    fn regs_mut(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rip(&self) -> u64 {
        self.make_current();
        HwVmcs.read(f::GUEST_RIP)
    }
    fn rsp(&self) -> u64 {
        self.make_current();
        HwVmcs.read(f::GUEST_RSP)
    }
    fn set_rip(&mut self, rip: u64) {
        self.make_current();
        HwVmcs.write(f::GUEST_RIP, rip);
    }
    fn rflags(&self) -> u64 {
        self.make_current();
        HwVmcs.read(f::GUEST_RFLAGS)
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.make_current();
        HwVmcs.write(f::GUEST_RFLAGS, rflags);
    }
    fn exit_instruction_len(&self) -> Option<u8> {
        Some(self.exit_len)
    }
    /// Skipping an instruction also ends STI/MOV-SS blocking, as executing it would.
    fn advance_rip(&mut self, len: u8) {
        self.make_current();
        let mut w = HwVmcs;
        w.write(f::GUEST_RIP, w.read(f::GUEST_RIP).wrapping_add(len as u64));
        // The emulated instruction completed: an STI or MOV SS shadow before it has ended
        // (a HLT after STI must take the interrupt that wakes it at once).
        let blocking = Interruptibility::from_bits_retain(w.read(f::GUEST_INTERRUPTIBILITY));
        if blocking.intersects(Interruptibility::BLOCKING_BY_STI_OR_MOV_SS) {
            let unblocked = blocking - Interruptibility::BLOCKING_BY_STI_OR_MOV_SS;
            w.write(f::GUEST_INTERRUPTIBILITY, unblocked.bits());
        }
    }
    fn inject(&mut self, event: Injection) {
        match event {
            Injection::ExternalInterrupt { vector } => self.pending_irq = Some(vector),
            other => self.pending_event = Some(other),
        }
    }
    fn interrupt_pending(&self) -> bool {
        self.pending_irq.is_some()
    }
    fn interrupt_shadow(&self) -> bool {
        self.make_current();
        Interruptibility::from_bits_retain(HwVmcs.read(f::GUEST_INTERRUPTIBILITY))
            .intersects(Interruptibility::BLOCKING_BY_STI_OR_MOV_SS)
    }
    fn flush_guest_tlb(&mut self) {
        self.make_current();
        let eptp = HwVmcs.read(f::EPT_POINTER);
        let _ = instr::invept(InvEptType::SingleContext, eptp);
        self.flush_vpid();
    }
    fn paging_state(&self) -> (u64, u64, u64, u64) {
        self.make_current();
        let r = HwVmcs;
        (
            r.read(f::GUEST_CR0),
            r.read(f::GUEST_CR3),
            r.read(f::GUEST_CR4),
            r.read(f::GUEST_IA32_EFER),
        )
    }
    fn code_segment(&self) -> Segment {
        self.make_current();
        let r = HwVmcs;
        Segment {
            selector: r.read(f::GUEST_CS_SELECTOR) as u16,
            base: r.read(f::GUEST_CS_BASE),
            limit: r.read(f::GUEST_CS_LIMIT) as u32,
            access: r.read(f::GUEST_CS_AR) as u32,
        }
    }
    fn segment_base(&self, seg: crate::vcpu::string_io::SegReg) -> Option<u64> {
        use crate::vcpu::string_io::SegReg;
        self.make_current();
        Some(HwVmcs.read(match seg {
            SegReg::Es => f::GUEST_ES_BASE,
            SegReg::Cs => f::GUEST_CS_BASE,
            SegReg::Ss => f::GUEST_SS_BASE,
            SegReg::Ds => f::GUEST_DS_BASE,
            SegReg::Fs => f::GUEST_FS_BASE,
            SegReg::Gs => f::GUEST_GS_BASE,
        }))
    }
}
