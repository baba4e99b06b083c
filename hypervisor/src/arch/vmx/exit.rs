//! Translation of raw VMX exits into [`VmExit`] (pure: the VMCS values come in a [`RawExit`]).

use crate::vcpu::{AccessKind, GuestRegs, IoDirection, VmExit};
use bitflags::bitflags;

/// Basic exit reasons (SDM vol. 3, appendix C).
pub mod reason {
    pub const EXCEPTION_NMI: u16 = 0;
    pub const EXTERNAL_INTERRUPT: u16 = 1;
    pub const PREEMPTION_TIMER: u16 = 52;
    pub const TRIPLE_FAULT: u16 = 2;
    pub const INIT: u16 = 3;
    pub const SIPI: u16 = 4;
    pub const INTERRUPT_WINDOW: u16 = 7;
    pub const CPUID: u16 = 10;
    pub const HLT: u16 = 12;
    pub const VMCALL: u16 = 18;
    pub const VMCLEAR: u16 = 19;
    pub const VMXON: u16 = 27;
    pub const CR_ACCESS: u16 = 28;
    pub const IO: u16 = 30;
    pub const RDMSR: u16 = 31;
    pub const WRMSR: u16 = 32;
    pub const INVALID_GUEST_STATE: u16 = 33;
    pub const MSR_LOADING: u16 = 34;
    pub const MACHINE_CHECK_ON_ENTRY: u16 = 41;
    pub const EPT_VIOLATION: u16 = 48;
    pub const EPT_MISCONFIG: u16 = 49;
    pub const INVEPT: u16 = 50;
    pub const INVVPID: u16 = 53;
    pub const XSETBV: u16 = 55;
}

bitflags! {
    /// Flag bits of the exit-reason field (the basic reason is bits 15:0).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitReason: u32 {
        /// The exit is a failed VM entry.
        const ENTRY_FAILURE = 1 << 31;
        const _ = !0;
    }
}

/// `VmExit::EntryFailure` raw reasons for VMLAUNCH/VMRESUME that failed as instructions:
/// bit 32 set, low bits = VM-instruction error (0xFFFF when there was no current VMCS).
pub const VMFAIL_FLAG: u64 = 1 << 32;
pub const VMFAIL_INVALID: u64 = VMFAIL_FLAG | 0xFFFF;

/// Interruption-information layout (exit, IDT-vectoring and entry fields share it).
pub mod intr {
    use bitflags::bitflags;

    bitflags! {
        /// Flag bits (the vector is bits 7:0, the type bits 10:8).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct Info: u32 {
            const ERROR_CODE = 1 << 11;
            /// IDT-vectoring and exit information only; reserved on entry.
            const NMI_UNBLOCKING = 1 << 12;
            const VALID = 1 << 31;
            const _ = !0;
        }
    }

    pub const TYPE_SHIFT: u32 = 8;
    pub const TYPE_EXTERNAL: u32 = 0;
    pub const TYPE_NMI: u32 = 2;
    pub const TYPE_HW_EXCEPTION: u32 = 3;
    pub const TYPE_SW_INTERRUPT: u32 = 4;
    pub const TYPE_PRIV_SW_EXCEPTION: u32 = 5;
    pub const TYPE_SW_EXCEPTION: u32 = 6;

    pub const fn kind(info: u32) -> u32 {
        (info >> TYPE_SHIFT) & 7
    }
    /// Software-generated events need the instruction length on re-injection.
    pub const fn needs_instr_len(info: u32) -> bool {
        matches!(
            kind(info),
            TYPE_SW_INTERRUPT | TYPE_PRIV_SW_EXCEPTION | TYPE_SW_EXCEPTION
        )
    }
}

/// The VMCS values an exit is judged from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawExit {
    pub reason: u32,
    pub qualification: u64,
    pub intr_info: u32,
    pub intr_error: u32,
    pub guest_physical: u64,
}

/// What the backend does with an exit: hand it up, or finish it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Report(VmExit),
    /// MOV to CR0 or CR4 (only the bits VMX owns trap; the backend completes the write).
    MovToCr {
        cr: u8,
        gpr: u8,
    },
    /// A VMX instruction in the guest: VMX is not exposed, so it gets #UD.
    InvalidOpcode,
    /// XSETBV (always exits on VMX): the backend checks the value and loads XCR0 itself.
    Xsetbv {
        xcr: u32,
        value: u64,
    },
}

/// Decodes a normal exit (not a VMfail of the entry instruction itself).
pub fn decode(raw: &RawExit, regs: &GuestRegs) -> Decoded {
    let basic = raw.reason as u16;
    let q = raw.qualification;
    let unhandled = VmExit::Unhandled {
        raw_reason: raw.reason as u64,
        qualification: q,
    };
    if ExitReason::from_bits_retain(raw.reason).contains(ExitReason::ENTRY_FAILURE) {
        return Decoded::Report(VmExit::EntryFailure {
            raw_reason: raw.reason as u64,
        });
    }
    let exit = match basic {
        reason::EXCEPTION_NMI => {
            let info = intr::Info::from_bits_retain(raw.intr_info);
            if !info.contains(intr::Info::VALID) {
                unhandled
            } else {
                let error_code = info
                    .contains(intr::Info::ERROR_CODE)
                    .then_some(raw.intr_error);
                VmExit::Exception {
                    vector: raw.intr_info as u8,
                    error_code,
                }
            }
        }
        // The hypervisor looks at what it has to do, as after an interrupt.
        reason::EXTERNAL_INTERRUPT | reason::PREEMPTION_TIMER => VmExit::ExternalInterrupt,
        reason::TRIPLE_FAULT => VmExit::Shutdown,
        reason::INIT => VmExit::Init,
        reason::SIPI => VmExit::Sipi { vector: q as u8 },
        reason::INTERRUPT_WINDOW => VmExit::InterruptWindow,
        reason::CPUID => VmExit::Cpuid {
            leaf: regs.rax as u32,
            subleaf: regs.rcx as u32,
        },
        reason::HLT => VmExit::Halt,
        reason::VMCALL => VmExit::Hypercall,
        reason::VMCLEAR..=reason::VMXON | reason::INVEPT | reason::INVVPID => {
            return Decoded::InvalidOpcode;
        }
        reason::CR_ACCESS => {
            let cr = (q & 0xf) as u8;
            let access = (q >> 4) & 3;
            let gpr = ((q >> 8) & 0xf) as u8;
            if access == 0 && (cr == 0 || cr == 4) {
                return Decoded::MovToCr { cr, gpr };
            }
            // MOV from CR (1), CLTS (2) and LMSW (3) only trap for bits we do not mask.
            VmExit::CrAccess {
                cr,
                write: access != 1,
            }
        }
        reason::XSETBV => {
            return Decoded::Xsetbv {
                xcr: regs.rcx as u32,
                value: (regs.rdx << 32) | (regs.rax & 0xffff_ffff),
            };
        }
        reason::IO => decode_io(q, regs),
        reason::RDMSR => VmExit::MsrRead {
            msr: regs.rcx as u32,
        },
        reason::WRMSR => VmExit::MsrWrite {
            msr: regs.rcx as u32,
            value: (regs.rdx << 32) | (regs.rax & 0xffff_ffff),
        },
        reason::INVALID_GUEST_STATE | reason::MSR_LOADING | reason::MACHINE_CHECK_ON_ENTRY => {
            VmExit::EntryFailure {
                raw_reason: raw.reason as u64,
            }
        }
        reason::EPT_VIOLATION => {
            let access = if q & 2 != 0 {
                AccessKind::Write
            } else if q & 4 != 0 {
                AccessKind::Execute
            } else {
                AccessKind::Read
            };
            VmExit::Mmio {
                gpa: raw.guest_physical,
                access,
            }
        }
        // A misconfigured EPT entry is a hypervisor bug for this VM: report the GPA.
        reason::EPT_MISCONFIG => VmExit::Unhandled {
            raw_reason: raw.reason as u64,
            qualification: raw.guest_physical,
        },
        _ => unhandled,
    };
    Decoded::Report(exit)
}

/// I/O instruction qualification: size-1 in bits 2:0, IN in bit 3, string bit 4, REP bit 5,
/// port in bits 31:16.
fn decode_io(q: u64, regs: &GuestRegs) -> VmExit {
    let size = match q & 7 {
        0 => 1,
        1 => 2,
        _ => 4,
    };
    let dir = if q & 8 != 0 {
        IoDirection::In
    } else {
        IoDirection::Out
    };
    let port = (q >> 16) as u16;
    if q & 0x10 != 0 {
        return VmExit::IoString {
            port,
            size,
            dir,
            rep: q & 0x20 != 0,
        };
    }
    let data = match dir {
        IoDirection::Out => (regs.rax as u32) & (u32::MAX >> (32 - 8 * size as u32)),
        IoDirection::In => 0,
    };
    VmExit::Io {
        port,
        size,
        dir,
        data,
    }
}

/// Value of GPR `n` in the VMX numbering (RSP is 4 and lives in the VMCS, passed in).
pub fn gpr(regs: &GuestRegs, n: u8, rsp: u64) -> u64 {
    match n & 0xf {
        0 => regs.rax,
        1 => regs.rcx,
        2 => regs.rdx,
        3 => regs.rbx,
        4 => rsp,
        5 => regs.rbp,
        6 => regs.rsi,
        7 => regs.rdi,
        8 => regs.r8,
        9 => regs.r9,
        10 => regs.r10,
        11 => regs.r11,
        12 => regs.r12,
        13 => regs.r13,
        14 => regs.r14,
        _ => regs.r15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(reason: u16, qualification: u64) -> RawExit {
        RawExit {
            reason: reason as u32,
            qualification,
            ..Default::default()
        }
    }

    #[test]
    fn io_out_byte_masks_data() {
        let regs = GuestRegs {
            rax: 0xdead_be47,
            ..Default::default()
        };
        // OUT DX, AL to 0x3f8: size 0 (1 byte), direction out.
        let d = decode(&raw(reason::IO, 0x03f8_0000), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::Io {
                port: 0x3f8,
                size: 1,
                dir: IoDirection::Out,
                data: 0x47
            })
        );
        let d = decode(&raw(reason::IO, 0x8900_0001), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::Io {
                port: 0x8900,
                size: 2,
                dir: IoDirection::Out,
                data: 0xbe47
            })
        );
        let d = decode(&raw(reason::IO, 0x00f4_0003), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::Io {
                port: 0xf4,
                size: 4,
                dir: IoDirection::Out,
                data: 0xdead_be47
            })
        );
    }

    #[test]
    fn io_in_and_string_forms() {
        let regs = GuestRegs::default();
        let d = decode(&raw(reason::IO, 0x03fd_0008 | 0x40), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::Io {
                port: 0x3fd,
                size: 1,
                dir: IoDirection::In,
                data: 0
            })
        );
        // REP OUTSB.
        let d = decode(&raw(reason::IO, 0x03f8_0030), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::IoString {
                port: 0x3f8,
                size: 1,
                dir: IoDirection::Out,
                rep: true
            })
        );
        // INSD without REP.
        let d = decode(&raw(reason::IO, 0x0060_001b), &regs);
        assert_eq!(
            d,
            Decoded::Report(VmExit::IoString {
                port: 0x60,
                size: 4,
                dir: IoDirection::In,
                rep: false
            })
        );
    }

    #[test]
    fn cpuid_msr_and_simple_exits() {
        let regs = GuestRegs {
            rax: 0xffff_ffff_4000_0000,
            rcx: 0x1_0000_0003,
            rdx: 0x1234,
            ..Default::default()
        };
        assert_eq!(
            decode(&raw(reason::CPUID, 0), &regs),
            Decoded::Report(VmExit::Cpuid {
                leaf: 0x4000_0000,
                subleaf: 3
            })
        );
        assert_eq!(
            decode(&raw(reason::RDMSR, 0), &regs),
            Decoded::Report(VmExit::MsrRead { msr: 3 })
        );
        assert_eq!(
            decode(&raw(reason::WRMSR, 0), &regs),
            Decoded::Report(VmExit::MsrWrite {
                msr: 3,
                value: 0x1234_4000_0000
            })
        );
        assert_eq!(
            decode(&raw(reason::VMCALL, 0), &regs),
            Decoded::Report(VmExit::Hypercall)
        );
        assert_eq!(
            decode(&raw(reason::HLT, 0), &regs),
            Decoded::Report(VmExit::Halt)
        );
        assert_eq!(
            decode(&raw(reason::TRIPLE_FAULT, 0), &regs),
            Decoded::Report(VmExit::Shutdown)
        );
        assert_eq!(
            decode(&raw(reason::INIT, 0), &regs),
            Decoded::Report(VmExit::Init)
        );
        assert_eq!(
            decode(&raw(reason::SIPI, 0x9a), &regs),
            Decoded::Report(VmExit::Sipi { vector: 0x9a })
        );
        assert_eq!(
            decode(&raw(reason::INTERRUPT_WINDOW, 0), &regs),
            Decoded::Report(VmExit::InterruptWindow)
        );
        assert_eq!(
            decode(&raw(reason::EXTERNAL_INTERRUPT, 0), &regs),
            Decoded::Report(VmExit::ExternalInterrupt)
        );
    }

    #[test]
    fn ept_violation_access_kinds() {
        let regs = GuestRegs::default();
        let mut r = raw(reason::EPT_VIOLATION, 0x182);
        r.guest_physical = 0xfec0_0010;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Mmio {
                gpa: 0xfec0_0010,
                access: AccessKind::Write
            })
        );
        r.qualification = 0x181;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Mmio {
                gpa: 0xfec0_0010,
                access: AccessKind::Read
            })
        );
        r.qualification = 0x184;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Mmio {
                gpa: 0xfec0_0010,
                access: AccessKind::Execute
            })
        );
        r.reason = reason::EPT_MISCONFIG as u32;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Unhandled {
                raw_reason: 49,
                qualification: 0xfec0_0010
            })
        );
    }

    #[test]
    fn exceptions_and_entry_failures() {
        let regs = GuestRegs::default();
        let mut r = raw(reason::EXCEPTION_NMI, 0);
        r.intr_info = (intr::Info::VALID | intr::Info::ERROR_CODE).bits()
            | (intr::TYPE_HW_EXCEPTION << 8)
            | 13;
        r.intr_error = 0x18;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Exception {
                vector: 13,
                error_code: Some(0x18)
            })
        );
        r.intr_info = intr::Info::VALID.bits() | (intr::TYPE_NMI << 8) | 2;
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::Exception {
                vector: 2,
                error_code: None
            })
        );
        let r = RawExit {
            reason: ExitReason::ENTRY_FAILURE.bits() | 33,
            ..Default::default()
        };
        assert_eq!(
            decode(&r, &regs),
            Decoded::Report(VmExit::EntryFailure {
                raw_reason: 0x8000_0021
            })
        );
    }

    #[test]
    fn cr_access_and_vmx_instructions() {
        let regs = GuestRegs::default();
        // MOV CR0, RBX (gpr 3).
        assert_eq!(
            decode(&raw(reason::CR_ACCESS, 0x300), &regs),
            Decoded::MovToCr { cr: 0, gpr: 3 }
        );
        assert_eq!(
            decode(&raw(reason::CR_ACCESS, 0x0c04), &regs),
            Decoded::MovToCr { cr: 4, gpr: 12 }
        );
        // MOV RAX, CR3 (read) and MOV CR8 are reported.
        assert_eq!(
            decode(&raw(reason::CR_ACCESS, 0x13), &regs),
            Decoded::Report(VmExit::CrAccess {
                cr: 3,
                write: false
            })
        );
        assert_eq!(
            decode(&raw(reason::CR_ACCESS, 0x08), &regs),
            Decoded::Report(VmExit::CrAccess { cr: 8, write: true })
        );
        for r in [19u16, 24, 27, 50, 53] {
            assert_eq!(decode(&raw(r, 0), &regs), Decoded::InvalidOpcode, "{r}");
        }
        assert_eq!(
            decode(&raw(54, 7), &regs),
            Decoded::Report(VmExit::Unhandled {
                raw_reason: 54,
                qualification: 7
            })
        );
        let regs = GuestRegs {
            rax: 0xffff_ffff_0000_0007,
            ..Default::default()
        };
        assert_eq!(
            decode(&raw(55, 0), &regs),
            Decoded::Xsetbv { xcr: 0, value: 7 }
        );
    }

    #[test]
    fn gpr_numbering() {
        let regs = GuestRegs {
            rcx: 1,
            rbx: 3,
            rbp: 5,
            r15: 15,
            ..Default::default()
        };
        assert_eq!(gpr(&regs, 1, 0), 1);
        assert_eq!(gpr(&regs, 3, 0), 3);
        assert_eq!(gpr(&regs, 4, 0x44), 0x44);
        assert_eq!(gpr(&regs, 5, 0), 5);
        assert_eq!(gpr(&regs, 15, 0), 15);
    }
}
