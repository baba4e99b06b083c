use super::vmcb::*;
use crate::arch::x86::{cpuid, rdmsr, wrmsr, ExtLeaf1Ecx};
use crate::vcpu::msr::lapic_pt::{
    MSR_TSC_DEADLINE, MSR_X2APIC_ICR, MSR_X2APIC_ID, MSR_X2APIC_LDR, X2APIC_PASSED,
};
use crate::vcpu::{
    AccessKind, GuestRegs, InitialState, Injection, IoDirection, Segment, Vcpu, VmExit, VECTOR_GP,
};
use bitflags::bitflags;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::idt::PageFaultErrorCode;

const MSR_VM_CR: u32 = 0xC001_0114;
const MSR_VM_HSAVE_PA: u32 = 0xC001_0117;
/// IA32_EFER's number for the MSR permission map (the crate's `Efer::MSR` hides it).
const MSR_EFER: u32 = 0xC000_0080;

bitflags! {
    /// VM_CR (AMD-specific, so not in the `x86_64` crate).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct VmCr: u64 {
        const SVMDIS = 1 << 4;
        const _ = !0;
    }

    /// EXITINFO1 of an IOIO intercept (the port is bits 31:16).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct IoioInfo: u64 {
        const IN = 1 << 0;
        const STRING = 1 << 2;
        const REP = 1 << 3;
        const SIZE8 = 1 << 4;
        const SIZE16 = 1 << 5;
        const SIZE32 = 1 << 6;
        const _ = !0;
    }

    /// CPUID.0x8000000A:EDX (SVM features).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct SvmFeatures: u32 {
        const NESTED_PAGING = 1 << 0;
        const NRIP_SAVE = 1 << 3;
        const _ = !0;
    }
}

/// What CPUID says about SVM on this CPU.
#[derive(Debug, Clone, Copy)]
pub struct SvmCaps {
    pub asids: u32,
    pub nrips: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvmError {
    NotAmd,
    NoSvm,
    NoNpt,
    DisabledByFirmware,
    OutOfMemory,
}

impl core::fmt::Display for SvmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SvmError::NotAmd => "CPU vendor is not AuthenticAMD",
            SvmError::NoSvm => "CPUID reports no SVM",
            SvmError::NoNpt => "SVM without nested paging (NPT)",
            SvmError::DisabledByFirmware => "SVM disabled by firmware (VM_CR.SVMDIS)",
            SvmError::OutOfMemory => "out of hypervisor memory for SVM structures",
        })
    }
}

pub fn is_amd() -> bool {
    let v = cpuid(0, 0);
    [v[1], v[3], v[2]] == [0x6874_7541, 0x6974_6e65, 0x444d_4163]
}

pub fn detect() -> Result<SvmCaps, SvmError> {
    if !is_amd() {
        return Err(SvmError::NotAmd);
    }
    let ext_ecx = ExtLeaf1Ecx::from_bits_retain(cpuid(0x8000_0001, 0)[2]);
    if cpuid(0x8000_0000, 0)[0] < 0x8000_000A || !ext_ecx.contains(ExtLeaf1Ecx::SVM) {
        return Err(SvmError::NoSvm);
    }
    let f = cpuid(0x8000_000A, 0);
    let features = SvmFeatures::from_bits_retain(f[3]);
    if !features.contains(SvmFeatures::NESTED_PAGING) {
        return Err(SvmError::NoNpt);
    }
    Ok(SvmCaps {
        asids: f[1],
        nrips: features.contains(SvmFeatures::NRIP_SAVE),
    })
}

/// Physical addresses of the shared I/O and MSR permission maps (set once by the BSP).
static IOPM_PA: AtomicU64 = AtomicU64::new(0);
static MSRPM_PA: AtomicU64 = AtomicU64::new(0);

/// MSRs the guest reads and writes directly: state VMLOAD/VMSAVE switch or the VMCB holds.
const PASSTHROUGH_MSRS: [u32; 12] = [
    0x174,
    0x175,
    0x176, // SYSENTER_CS/ESP/EIP
    0x277, // PAT (G_PAT under NPT)
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084, // STAR, LSTAR, CSTAR, SFMASK
    0xC000_0100,
    0xC000_0101,
    0xC000_0102, // FS_BASE, GS_BASE, KERNEL_GS_BASE
    0xC000_0103, // TSC_AUX (RDTSCP runs natively; the hypervisor does not use it)
];

/// Builds the permission maps: every port intercepted, every MSR intercepted except
/// [`PASSTHROUGH_MSRS`] (and EFER: a guest that clears EFER.SVME only fails its own next VMRUN). `alloc(pages)` returns zeroed, contiguous memory.
pub fn init_global(alloc: impl Fn(usize) -> Option<u64>) -> Result<(), SvmError> {
    let iopm = alloc(3).ok_or(SvmError::OutOfMemory)?;
    let msrpm = alloc(2).ok_or(SvmError::OutOfMemory)?;
    // SAFETY: freshly allocated, identity-mapped pages owned by us.
    unsafe {
        core::ptr::write_bytes(iopm as *mut u8, 0xFF, 3 * 4096);
        core::ptr::write_bytes(msrpm as *mut u8, 0xFF, 2 * 4096);
    }
    for m in PASSTHROUGH_MSRS {
        msrpm_set(msrpm, m, false, false);
    }
    msrpm_set(msrpm, MSR_EFER, false, false);
    IOPM_PA.store(iopm, Ordering::Release);
    MSRPM_PA.store(msrpm, Ordering::Release);
    Ok(())
}

/// Sets whether reads and writes of `msr` exit in the permission map at `msrpm` (MSRs
/// 0..0x1FFF, 0xC0000000.. and 0xC0010000.., two bits each: read, write).
fn msrpm_set(msrpm: u64, msr: u32, read: bool, write: bool) {
    let (base, idx) = match msr {
        0..=0x1FFF => (0u64, msr),
        0xC000_0000..=0xC000_1FFF => (0x800, msr - 0xC000_0000),
        _ => (0x1000, msr - 0xC001_0000),
    };
    let bit = idx as u64 * 2;
    let byte = (msrpm + base + bit / 8) as *mut u8;
    let shift = bit % 8;
    let value = (read as u8) | (write as u8) << 1;
    // SAFETY: inside a two-page MSRPM of ours (every `msr` passed here is in its ranges).
    unsafe { *byte = (*byte & !(3 << shift)) | value << shift };
}

/// Turns SVM on for the calling pCPU; returns the page its host state is VMSAVEd to.
pub fn enable_this_cpu(alloc: impl Fn(usize) -> Option<u64>) -> Result<u64, SvmError> {
    if VmCr::from_bits_retain(rdmsr(MSR_VM_CR)).contains(VmCr::SVMDIS) {
        return Err(SvmError::DisabledByFirmware);
    }
    let hsave = alloc(1).ok_or(SvmError::OutOfMemory)?;
    let host_vmcb = alloc(1).ok_or(SvmError::OutOfMemory)?;
    // SAFETY: SVM is present and not disabled (checked above); EFER.SVME only allows VMRUN.
    unsafe { Efer::update(|f| f.insert(EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE)) };
    wrmsr(MSR_VM_HSAVE_PA, hsave);
    Ok(host_vmcb)
}

core::arch::global_asm!(
    r#"
.pushsection .text.svm_run, "ax"
.global svm_run
/* rdi = guest VMCB pa, rsi = &mut GuestRegs, rdx = host VMSAVE area pa */
svm_run:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdx
    push %rdi
    push %rsi
    /* GIF=0 holds physical interrupts back until VMRUN; RFLAGS.IF=1 lets them exit the guest.
       STI here, not just before VMRUN: QEMU's TCG would carry the STI interrupt shadow into
       the guest's first instruction and hold a virtual interrupt back past it. */
    clgi
    sti
    mov %rdx, %rax
    vmsave %rax
    mov %rdi, %rax
    vmload %rax
    mov 8(%rsi), %rbx
    mov 16(%rsi), %rcx
    mov 24(%rsi), %rdx
    mov 40(%rsi), %rdi
    mov 48(%rsi), %rbp
    mov 56(%rsi), %r8
    mov 64(%rsi), %r9
    mov 72(%rsi), %r10
    mov 80(%rsi), %r11
    mov 88(%rsi), %r12
    mov 96(%rsi), %r13
    mov 104(%rsi), %r14
    mov 112(%rsi), %r15
    mov 32(%rsi), %rsi
    vmrun %rax
    cli
    push %rsi
    mov 8(%rsp), %rsi
    mov %rbx, 8(%rsi)
    mov %rcx, 16(%rsi)
    mov %rdx, 24(%rsi)
    mov %rdi, 40(%rsi)
    mov %rbp, 48(%rsi)
    mov %r8, 56(%rsi)
    mov %r9, 64(%rsi)
    mov %r10, 72(%rsi)
    mov %r11, 80(%rsi)
    mov %r12, 88(%rsi)
    mov %r13, 96(%rsi)
    mov %r14, 104(%rsi)
    mov %r15, 112(%rsi)
    pop %rax
    mov %rax, 32(%rsi)
    mov 8(%rsp), %rax
    vmsave %rax
    mov 16(%rsp), %rax
    vmload %rax
    stgi
    add $24, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret
.popsection
"#,
    options(att_syntax)
);

extern "C" {
    fn svm_run(vmcb_pa: u64, regs: *mut GuestRegs, host_pa: u64);
}

pub struct SvmVcpu {
    vmcb: *mut Vmcb,
    host_pa: u64,
    regs: GuestRegs,
    /// Next RIP the CPU reported for the last exit (IOIO always gives it), else 0.
    next_rip: u64,
    nrips: bool,
    /// An external interrupt waiting for the guest to accept it (see [`Vcpu::inject`]).
    pending_irq: Option<u8>,
}

impl SvmVcpu {
    /// A vCPU whose guest-physical space is the nested table at `ncr3`. `vmcb_page` is a zeroed
    /// page; `host_pa` comes from [`enable_this_cpu`] on the pCPU that will run it.
    pub fn new(vmcb_page: u64, host_pa: u64, ncr3: u64, asid: u32, caps: SvmCaps) -> Self {
        let vmcb = vmcb_page as *mut Vmcb;
        // SAFETY: the page is ours, zeroed, 4 KiB aligned and identity-mapped.
        let v = unsafe { &mut *vmcb };
        let c = &mut v.control;
        // #MC; #UD for VMCALL, the hypercall instruction Linux issues on AMD too.
        c.intercept_exceptions = 1 << 18 | 1 << 6;
        // Physical interrupts belong to the hypervisor: they exit (host IF is set around VMRUN).
        c.vintr = VIntr::V_INTR_MASKING;
        c.intercept_misc1 = InterceptMisc1::INTR
            | InterceptMisc1::INIT
            | InterceptMisc1::CPUID
            | InterceptMisc1::HLT
            | InterceptMisc1::IOIO
            | InterceptMisc1::MSR
            | InterceptMisc1::SHUTDOWN;
        c.intercept_misc2 = InterceptMisc2::VMRUN
            | InterceptMisc2::VMMCALL
            | InterceptMisc2::OTHER_SVM_AND_MWAIT
            | InterceptMisc2::XSETBV;
        c.iopm_base_pa = IOPM_PA.load(Ordering::Acquire);
        c.msrpm_base_pa = MSRPM_PA.load(Ordering::Acquire);
        c.guest_asid = asid.clamp(1, caps.asids.saturating_sub(1).max(1));
        c.tlb_control = 1;
        c.np_control = 1;
        c.n_cr3 = ncr3;
        SvmVcpu {
            vmcb,
            host_pa,
            regs: GuestRegs::default(),
            next_rip: 0,
            nrips: caps.nrips,
            pending_irq: None,
        }
    }

    /// Lets the guest access ports `[base, base+count)` directly (gives the vCPU its own IOPM).
    pub fn allow_io(
        &mut self,
        base: u16,
        count: u16,
        alloc: impl Fn(usize) -> Option<u64>,
    ) -> Result<(), SvmError> {
        let global = IOPM_PA.load(Ordering::Acquire);
        if self.v().control.iopm_base_pa == global {
            let own = alloc(3).ok_or(SvmError::OutOfMemory)?;
            // SAFETY: both are 12 KiB IOPMs in our pool.
            unsafe {
                core::ptr::copy_nonoverlapping(global as *const u8, own as *mut u8, 3 * 4096)
            };
            self.vm().control.iopm_base_pa = own;
        }
        let iopm = self.v().control.iopm_base_pa as *mut u8;
        for port in base as u32..base as u32 + count as u32 {
            // SAFETY: port < 65536, inside the 12 KiB map.
            unsafe { *iopm.add(port as usize / 8) &= !(1 << (port % 8)) };
        }
        Ok(())
    }

    /// Gives the guest its pCPU's local APIC (x2APIC mode, ACRN's `lapic_passthrough`): its own
    /// MSR map passes the x2APIC registers and IA32_TSC_DEADLINE except reads of the APIC ID
    /// and LDR (virtual) and writes of the ICR (filtered); physical interrupts no longer exit
    /// and the guest's RFLAGS.IF masks them; NMIs exit (the hypervisor's kick).
    pub fn pass_lapic_through(
        &mut self,
        alloc: impl Fn(usize) -> Option<u64>,
    ) -> Result<(), SvmError> {
        let own = alloc(2).ok_or(SvmError::OutOfMemory)?;
        let global = MSRPM_PA.load(Ordering::Acquire);
        // SAFETY: both are 8 KiB MSRPMs in our pool.
        unsafe { core::ptr::copy_nonoverlapping(global as *const u8, own as *mut u8, 2 * 4096) };
        for msr in X2APIC_PASSED {
            msrpm_set(own, msr, false, false);
        }
        msrpm_set(own, MSR_TSC_DEADLINE, false, false);
        msrpm_set(own, MSR_X2APIC_ID, true, false);
        msrpm_set(own, MSR_X2APIC_LDR, true, false);
        msrpm_set(own, MSR_X2APIC_ICR, false, true);
        let c = &mut self.vm().control;
        c.msrpm_base_pa = own;
        c.vintr.remove(VIntr::V_INTR_MASKING);
        c.intercept_misc1.remove(InterceptMisc1::INTR);
        c.intercept_misc1.insert(InterceptMisc1::NMI);
        Ok(())
    }

    /// The VMCB page this vCPU was built on (for reuse once it is gone).
    pub fn vmcb_page(&self) -> u64 {
        self.vmcb as u64
    }

    fn v(&self) -> &Vmcb {
        // SAFETY: the VMCB page is owned by this vCPU for its whole life.
        unsafe { &*self.vmcb }
    }
    fn vm(&mut self) -> &mut Vmcb {
        // SAFETY: as above.
        unsafe { &mut *self.vmcb }
    }

    fn translate(&mut self) -> VmExit {
        let c = self.v().control;
        self.next_rip = if self.nrips { c.next_rip } else { 0 };
        match c.exit_code {
            EXIT_IOIO => {
                let i = IoioInfo::from_bits_retain(c.exit_info1);
                let port = (c.exit_info1 >> 16) as u16;
                let size = if i.contains(IoioInfo::SIZE8) {
                    1
                } else if i.contains(IoioInfo::SIZE16) {
                    2
                } else {
                    4
                };
                let dir = if i.contains(IoioInfo::IN) {
                    IoDirection::In
                } else {
                    IoDirection::Out
                };
                self.next_rip = c.exit_info2;
                if i.contains(IoioInfo::STRING) {
                    VmExit::IoString {
                        port,
                        size,
                        dir,
                        rep: i.contains(IoioInfo::REP),
                    }
                } else {
                    let data = self.v().save.rax as u32;
                    VmExit::Io {
                        port,
                        size,
                        dir,
                        data,
                    }
                }
            }
            EXIT_CPUID => VmExit::Cpuid {
                leaf: self.v().save.rax as u32,
                subleaf: self.regs.rcx as u32,
            },
            EXIT_MSR => {
                let msr = self.regs.rcx as u32;
                if c.exit_info1 & 1 == 0 {
                    VmExit::MsrRead { msr }
                } else {
                    let value =
                        (self.regs.rdx & 0xFFFF_FFFF) << 32 | (self.v().save.rax & 0xFFFF_FFFF);
                    VmExit::MsrWrite { msr, value }
                }
            }
            EXIT_HLT => VmExit::Halt,
            EXIT_VMMCALL => VmExit::Hypercall,
            EXIT_SHUTDOWN => VmExit::Shutdown,
            EXIT_INIT => VmExit::Init,
            EXIT_INTR | EXIT_NMI => VmExit::ExternalInterrupt,
            EXIT_VINTR => VmExit::InterruptWindow,
            EXIT_NPF => {
                // EXITINFO1 is a #PF error code.
                let e = PageFaultErrorCode::from_bits_retain(c.exit_info1);
                let access = if e.contains(PageFaultErrorCode::INSTRUCTION_FETCH) {
                    AccessKind::Execute
                } else if e.contains(PageFaultErrorCode::CAUSED_BY_WRITE) {
                    AccessKind::Write
                } else {
                    AccessKind::Read
                };
                VmExit::Mmio {
                    gpa: c.exit_info2,
                    access,
                }
            }
            x if (EXIT_EXCP_BASE..EXIT_EXCP_BASE + 32).contains(&x) => {
                let vector = (x - EXIT_EXCP_BASE) as u8;
                let has_err = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
                VmExit::Exception {
                    vector,
                    error_code: has_err.then_some(c.exit_info1 as u32),
                }
            }
            // SVM is not offered (CPUID), nor MONITOR: the guest gets the #UD it would without
            // them, through the common #UD path (which also takes VMCALL as the hypercall).
            x if EXIT_SVM_INSTRUCTIONS.iter().any(|r| r.contains(&x)) => VmExit::Exception {
                vector: crate::vcpu::VECTOR_UD,
                error_code: None,
            },
            EXIT_INVALID => VmExit::EntryFailure {
                raw_reason: c.exit_code,
            },
            raw => VmExit::Unhandled {
                raw_reason: raw,
                qualification: c.exit_info1,
            },
        }
    }
}

impl SvmVcpu {
    /// Hands the pending external interrupt to the CPU as a virtual interrupt (V_IRQ with its
    /// vector, ignoring the virtual TPR): the CPU delivers it as soon as the guest can take it
    /// (RFLAGS.IF set, no interrupt shadow, no event being injected) and clears V_IRQ then, so
    /// no interrupt window exit is needed. Not through EVENTINJ: QEMU's TCG (7.2) leaves an
    /// EVENTINJ interrupt's vector as its pending exception and delivers it a second time at
    /// the guest's next exit request, wherever the guest is, even with IF clear (a Linux
    /// Service VM panicked on a user GS base at the first instruction of its timer handler).
    fn present_interrupt(&mut self) {
        let pending = self.pending_irq;
        let c = &mut self.vm().control;
        c.vintr = match pending {
            Some(vector) => c.vintr.with_request(vector),
            None => c.vintr.without_request(),
        };
    }

    /// After an exit: the virtual interrupt was taken if the CPU cleared V_IRQ; an event whose
    /// delivery the exit interrupted (EXITINTINFO) is delivered again at the next entry, an
    /// external interrupt as the virtual interrupt again, anything else through EVENTINJ.
    /// XSETBV, intercepted (as on VMX) so that a guest enables only the XCR0 components CPUID
    /// offers it: the shared rule and XCR0 load, or #GP.
    fn xsetbv(&mut self) {
        let xcr = self.regs.rcx as u32;
        let value = (self.regs.rdx & 0xFFFF_FFFF) << 32 | (self.v().save.rax & 0xFFFF_FFFF);
        if !crate::vcpu::context::guest_xsetbv(xcr, value) {
            self.inject(Injection::Exception {
                vector: VECTOR_GP,
                error_code: Some(0),
            });
            return;
        }
        // XSETBV is 0F 01 D1.
        let len = if self.nrips {
            self.v().control.next_rip.saturating_sub(self.rip())
        } else {
            3
        };
        let rip = self.rip();
        self.set_rip(rip + len);
    }

    fn after_exit(&mut self) {
        let c = &mut self.vm().control;
        c.tlb_control = 0;
        c.event_inject = EventInject::empty();
        let taken = !c.vintr.contains(VIntr::V_IRQ);
        let interrupted = EventInject::from_bits_retain(c.exit_int_info & EventInject::LAYOUT);
        if taken {
            self.pending_irq = None;
        }
        if !interrupted.contains(EventInject::VALID) {
            return;
        }
        if interrupted.bits() & EventInject::TYPE_MASK == EventInject::TYPE_INTR {
            self.pending_irq = Some(interrupted.bits() as u8);
        } else {
            self.vm().control.event_inject = interrupted;
        }
    }
}

fn seg(s: &Segment) -> VmcbSegment {
    VmcbSegment::from_vmx(s.selector, s.base, s.limit, s.access)
}

impl Vcpu for SvmVcpu {
    fn set_initial_state(&mut self, st: &InitialState) {
        self.regs = st.regs;
        let s = &mut self.vm().save;
        s.es = seg(&st.es);
        s.cs = seg(&st.cs);
        s.ss = seg(&st.ss);
        s.ds = seg(&st.ds);
        s.fs = seg(&st.fs);
        s.gs = seg(&st.gs);
        s.tr = seg(&st.tr);
        s.ldtr = seg(&st.ldtr);
        s.gdtr = VmcbSegment {
            selector: 0,
            attrib: 0,
            limit: st.gdtr_limit,
            base: st.gdtr_base,
        };
        s.idtr = VmcbSegment {
            selector: 0,
            attrib: 0,
            limit: st.idtr_limit,
            base: st.idtr_base,
        };
        s.cpl = ((st.ss.access >> 5) & 3) as u8;
        s.efer = st.efer | EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE.bits();
        s.cr0 = st.cr0;
        s.cr3 = st.cr3;
        s.cr4 = st.cr4;
        s.rflags = st.rflags | 2;
        s.rip = st.rip;
        s.rsp = st.rsp;
        s.rax = st.regs.rax;
        s.dr6 = 0xFFFF_0FF0;
        s.dr7 = 0x400;
        s.g_pat = 0x0007_0406_0007_0406;
        self.vm().control.tlb_control = 1;
        self.pending_irq = None;
    }

    fn run(&mut self) -> VmExit {
        loop {
            self.present_interrupt();
            let rax = self.regs.rax;
            self.vm().save.rax = rax;
            let (pa, host) = (self.vmcb as u64, self.host_pa);
            // SAFETY: the VMCB and host area are valid pages of this pCPU; svm_run saves and
            // restores all host state it touches.
            unsafe { svm_run(pa, &mut self.regs, host) };
            self.regs.rax = self.v().save.rax;
            self.after_exit();
            if self.v().control.exit_code != EXIT_XSETBV {
                return self.translate();
            }
            self.xsetbv();
        }
    }

    fn regs(&self) -> &GuestRegs {
        &self.regs
    }
    fn regs_mut(&mut self) -> &mut GuestRegs {
        &mut self.regs
    }
    fn rip(&self) -> u64 {
        self.v().save.rip
    }
    fn rsp(&self) -> u64 {
        self.v().save.rsp
    }
    fn set_rip(&mut self, rip: u64) {
        self.vm().save.rip = rip;
        // Skipping an instruction ends a MOV SS/STI interrupt shadow.
        self.vm().control.interrupt_shadow = 0;
    }
    fn rflags(&self) -> u64 {
        self.v().save.rflags
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.vm().save.rflags = rflags;
    }
    fn exit_instruction_len(&self) -> Option<u8> {
        let rip = self.rip();
        (self.next_rip > rip && self.next_rip - rip <= 15).then(|| (self.next_rip - rip) as u8)
    }
    fn inject(&mut self, event: Injection) {
        let raw = match event {
            Injection::Exception { vector, error_code } => {
                let ev = error_code.map_or(0, |e| {
                    EventInject::ERROR_CODE_VALID.bits() | (e as u64) << 32
                });
                vector as u64 | EventInject::TYPE_EXCEPTION | ev
            }
            Injection::ExternalInterrupt { vector } => {
                self.pending_irq = Some(vector);
                return;
            }
            Injection::Nmi => 2 | EventInject::TYPE_NMI,
        };
        self.vm().control.event_inject = EventInject::from_bits_retain(raw) | EventInject::VALID;
    }
    fn interrupt_pending(&self) -> bool {
        self.pending_irq.is_some()
    }
    fn interrupt_shadow(&self) -> bool {
        self.v().control.interrupt_shadow & 1 != 0
    }
    fn flush_guest_tlb(&mut self) {
        // Without flush-by-ASID (QEMU TCG) TLB_CONTROL 1 flushes everything, which is as good.
        self.vm().control.tlb_control = 1;
    }
    fn paging_state(&self) -> (u64, u64, u64, u64) {
        let s = &self.v().save;
        (s.cr0, s.cr3, s.cr4, s.efer)
    }
    fn segment_base(&self, seg: crate::vcpu::string_io::SegReg) -> Option<u64> {
        use crate::vcpu::string_io::SegReg;
        let s = &self.v().save;
        Some(match seg {
            SegReg::Es => s.es.base,
            SegReg::Cs => s.cs.base,
            SegReg::Ss => s.ss.base,
            SegReg::Ds => s.ds.base,
            SegReg::Fs => s.fs.base,
            SegReg::Gs => s.gs.base,
        })
    }
    fn code_segment(&self) -> Segment {
        let cs = self.v().save.cs;
        Segment {
            selector: cs.selector,
            base: cs.base,
            limit: cs.limit,
            access: cs.vmx_access(),
        }
    }
}
