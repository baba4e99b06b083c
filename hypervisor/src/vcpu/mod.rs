//! The vendor-neutral vCPU interface. The VMX and SVM backends implement [`Vcpu`] and translate
//! their raw exit reasons into [`VmExit`]; everything above (device models, hypercalls, the VM
//! loop) sees only these types and never touches a VMCS or VMCB.
//!

#[cfg(target_os = "none")]
pub mod context;
pub mod cpuid;
pub mod decode;
#[cfg(target_os = "none")]
pub mod exit;
pub mod gwalk;
pub mod msr;
#[cfg(target_os = "none")]
pub mod run;
pub mod string_io;

/// The exception vectors the hypervisor raises in guests.
pub const VECTOR_UD: u8 = 6;
pub const VECTOR_GP: u8 = 13;

/// General-purpose registers of a guest, saved on every exit and restored on entry.
#[derive(Debug, Default, Clone, Copy)]
#[repr(C)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl GuestRegs {
    /// The general-purpose register numbered as in instruction encodings (RAX = 0 ... R15 = 15);
    /// `None` for RSP (4), which lives in the VMCB/VMCS, not here.
    pub fn gpr_mut(&mut self, n: u8) -> Option<&mut u64> {
        Some(match n {
            0 => &mut self.rax,
            1 => &mut self.rcx,
            2 => &mut self.rdx,
            3 => &mut self.rbx,
            5 => &mut self.rbp,
            6 => &mut self.rsi,
            7 => &mut self.rdi,
            8 => &mut self.r8,
            9 => &mut self.r9,
            10 => &mut self.r10,
            11 => &mut self.r11,
            12 => &mut self.r12,
            13 => &mut self.r13,
            14 => &mut self.r14,
            15 => &mut self.r15,
            _ => return None,
        })
    }

    /// The value of register `n` (see [`GuestRegs::gpr_mut`]).
    pub fn gpr(&self, n: u8) -> Option<u64> {
        let mut copy = *self;
        copy.gpr_mut(n).map(|r| *r)
    }

    /// The value of an instruction's register operand: with `high_byte`, `n` is 4..7 and names
    /// AH, CH, DH or BH (bits 8..16 of RAX, RCX, RDX, RBX).
    pub fn operand(&self, n: u8, high_byte: bool) -> Option<u64> {
        if high_byte {
            self.gpr(n.checked_sub(4)?).map(|x| x >> 8)
        } else {
            self.gpr(n)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDirection {
    In,
    Out,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Execute,
}

/// Why the guest stopped running, in terms every backend shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// Port I/O. For `Out`, `data` holds the value written (low `size` bytes). String and REP
    /// forms arrive as `IoString`.
    Io {
        port: u16,
        size: u8,
        dir: IoDirection,
        data: u32,
    },
    /// INS/OUTS, possibly with REP: the handler may emulate or stop the VM.
    IoString {
        port: u16,
        size: u8,
        dir: IoDirection,
        rep: bool,
    },
    /// A guest-physical access that is not backed by RAM of this VM (emulated MMIO or a stray
    /// access). `instr_len` is 0 when the backend could not determine it.
    Mmio {
        gpa: u64,
        access: AccessKind,
    },
    Cpuid {
        leaf: u32,
        subleaf: u32,
    },
    MsrRead {
        msr: u32,
    },
    MsrWrite {
        msr: u32,
        value: u64,
    },
    /// VMCALL (Intel) or VMMCALL (AMD).
    Hypercall,
    Halt,
    /// Triple fault or shutdown.
    Shutdown,
    /// INIT signal received (Intel: the vCPU is to wait for SIPI).
    Init,
    /// Startup IPI received with its vector (Intel wait-for-SIPI state).
    Sipi {
        vector: u8,
    },
    ExternalInterrupt,
    /// An interrupt window opened: pending virtual interrupts can be injected.
    InterruptWindow,
    /// A guest exception the backend intercepted.
    Exception {
        vector: u8,
        error_code: Option<u32>,
    },
    /// CR access the backend could not complete on its own.
    CrAccess {
        cr: u8,
        write: bool,
    },
    /// Anything else, with the backend's raw reason, for the log. Stops the VM.
    Unhandled {
        raw_reason: u64,
        qualification: u64,
    },
    /// VM entry itself failed (bad guest state): stops the VM.
    EntryFailure {
        raw_reason: u64,
    },
}

/// Event to inject into the guest on the next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    Exception { vector: u8, error_code: Option<u32> },
    ExternalInterrupt { vector: u8 },
    Nmi,
}

/// Segment register state of a vCPU (for initial setup and for decoding guest accesses).
#[derive(Debug, Default, Clone, Copy)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    /// Access rights in the VMX layout (type, S, DPL, P, AVL, L, D/B, G at bits 0..16).
    pub access: u32,
}

/// The architectural state a vCPU starts from (boot protocols fill this in).
#[derive(Debug, Default, Clone, Copy)]
pub struct InitialState {
    pub regs: GuestRegs,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    pub cs: Segment,
    pub ds: Segment,
    pub es: Segment,
    pub ss: Segment,
    pub fs: Segment,
    pub gs: Segment,
    pub tr: Segment,
    pub ldtr: Segment,
    pub gdtr_base: u64,
    pub gdtr_limit: u32,
    pub idtr_base: u64,
    pub idtr_limit: u32,
}

impl Segment {
    /// A 64 KiB real-mode data segment at `base` (as after reset or SIPI).
    pub const fn real_mode_data(base: u64) -> Segment {
        Segment {
            selector: (base >> 4) as u16,
            base,
            limit: 0xFFFF,
            access: 0x93,
        }
    }
}

impl InitialState {
    /// A start state with code segment `cs`, every data segment `data`, the reset values of TR
    /// and LDTR (busy TSS, LDT, limit 0xFFFF) and a 0xFFFF IDT limit; the boot protocols then set
    /// RIP, CR0 and the GDT.
    pub fn with_segments(cs: Segment, data: Segment) -> InitialState {
        InitialState {
            rflags: 2,
            cs,
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
            idtr_limit: 0xFFFF,
            ..Default::default()
        }
    }
}

/// A virtual CPU of one backend, pinned to the pCPU that created it.
pub trait Vcpu {
    /// Load the architectural start state (before the first `run`).
    fn set_initial_state(&mut self, state: &InitialState);
    /// Enter the guest and return on the next exit, already translated.
    fn run(&mut self) -> VmExit;
    fn regs(&self) -> &GuestRegs;
    fn regs_mut(&mut self) -> &mut GuestRegs;
    fn rip(&self) -> u64;
    /// Guest RSP (kept in the VMCB/VMCS, not in [`GuestRegs`]).
    fn rsp(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    /// Guest RFLAGS.
    fn rflags(&self) -> u64;
    /// Sets guest RFLAGS (arithmetic flags after an emulated instruction).
    fn set_rflags(&mut self, rflags: u64);
    /// Length of the instruction that caused the last exit, if the backend knows it
    /// (VMX always does; SVM under QEMU TCG has no NRIP and returns `None`).
    fn exit_instruction_len(&self) -> Option<u8>;
    /// Skip the instruction that caused the last exit.
    fn advance_rip(&mut self, len: u8) {
        let rip = self.rip();
        self.set_rip(rip.wrapping_add(len as u64));
    }
    /// Queues `event` for the next entry. An external interrupt waits (with an interrupt-window
    /// exit requested) until the guest can take it: RFLAGS.IF set and no interrupt shadow.
    fn inject(&mut self, event: Injection);
    /// Whether an external interrupt given to [`Vcpu::inject`] still waits for its window.
    fn interrupt_pending(&self) -> bool;
    /// Whether the guest is in the shadow of an STI or MOV SS (interrupts held for one
    /// instruction).
    fn interrupt_shadow(&self) -> bool;
    /// Guest CR0, CR3, CR4 and EFER, for walking guest page tables.
    fn paging_state(&self) -> (u64, u64, u64, u64);
    /// Guest CS access rights and base (to know the operand size when decoding).
    fn code_segment(&self) -> Segment;
    /// Base of a segment register (string I/O addresses memory through one); None when the
    /// backend does not report it.
    fn segment_base(&self, _seg: crate::vcpu::string_io::SegReg) -> Option<u64> {
        None
    }
    /// Drops the guest's cached translations before its next entry (after the VM lost
    /// mappings).
    fn flush_guest_tlb(&mut self);
}
