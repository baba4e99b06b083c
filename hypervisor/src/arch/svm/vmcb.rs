//! The VMCB (AMD APM vol. 2, appendix B): a 4 KiB page, control area at 0x000, state save area
//! at 0x400. Pure data, so its layout is checked by host tests.

use bitflags::bitflags;

/// A segment in the VMCB's format: attributes are the descriptor's access byte in bits 0-7 and
/// its AVL/L/D/G flags in bits 8-11.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct VmcbSegment {
    pub selector: u16,
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

impl VmcbSegment {
    /// From the VMX-style access rights used by [`crate::vcpu::Segment`] (flags at bits 12-15).
    pub fn from_vmx(selector: u16, base: u64, limit: u32, access: u32) -> Self {
        let attrib = ((access & 0xFF) | ((access >> 4) & 0xF00)) as u16;
        VmcbSegment {
            selector,
            attrib,
            limit,
            base,
        }
    }
    pub fn vmx_access(&self) -> u32 {
        let a = self.attrib as u32;
        (a & 0xFF) | ((a & 0xF00) << 4)
    }
}

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct ControlArea {
    pub intercept_cr_read: u16,
    pub intercept_cr_write: u16,
    pub intercept_dr_read: u16,
    pub intercept_dr_write: u16,
    pub intercept_exceptions: u32,
    /// INTR, NMI, SMI, INIT, VINTR, ..., CPUID (18), HLT (24), IOIO_PROT (27), MSR_PROT (28),
    /// SHUTDOWN (31).
    pub intercept_misc1: InterceptMisc1,
    /// VMRUN (0), VMMCALL (1), VMLOAD, VMSAVE, STGI, CLGI, SKINIT, RDTSCP, ...
    pub intercept_misc2: InterceptMisc2,
    pub intercept_misc3: u32,
    _reserved0: [u8; 0x3C - 0x18],
    pub pause_filter_threshold: u16,
    pub pause_filter_count: u16,
    pub iopm_base_pa: u64,
    pub msrpm_base_pa: u64,
    pub tsc_offset: u64,
    pub guest_asid: u32,
    pub tlb_control: u8,
    _reserved1: [u8; 3],
    /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING (bit 24), V_INTR_VECTOR (32-39).
    pub vintr: VIntr,
    pub interrupt_shadow: u64,
    pub exit_code: u64,
    pub exit_info1: u64,
    pub exit_info2: u64,
    pub exit_int_info: u64,
    /// NP_ENABLE is bit 0.
    pub np_control: u64,
    pub avic_apic_bar: u64,
    pub ghcb_pa: u64,
    pub event_inject: EventInject,
    pub n_cr3: u64,
    pub lbr_virt: u64,
    pub clean_bits: u32,
    _reserved2: u32,
    pub next_rip: u64,
    pub insn_len: u8,
    pub insn_bytes: [u8; 15],
    _reserved3: [u8; 0x400 - 0xE0],
}

#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct SaveArea {
    pub es: VmcbSegment,
    pub cs: VmcbSegment,
    pub ss: VmcbSegment,
    pub ds: VmcbSegment,
    pub fs: VmcbSegment,
    pub gs: VmcbSegment,
    pub gdtr: VmcbSegment,
    pub ldtr: VmcbSegment,
    pub idtr: VmcbSegment,
    pub tr: VmcbSegment,
    _reserved0: [u8; 0x4CB - 0x4A0],
    pub cpl: u8,
    _reserved1: u32,
    pub efer: u64,
    _reserved2: [u8; 0x548 - 0x4D8],
    pub cr4: u64,
    pub cr3: u64,
    pub cr0: u64,
    pub dr7: u64,
    pub dr6: u64,
    pub rflags: u64,
    pub rip: u64,
    _reserved3: [u8; 0x5D8 - 0x580],
    pub rsp: u64,
    pub s_cet: u64,
    pub ssp: u64,
    pub isst_addr: u64,
    pub rax: u64,
    pub star: u64,
    pub lstar: u64,
    pub cstar: u64,
    pub sfmask: u64,
    pub kernel_gs_base: u64,
    pub sysenter_cs: u64,
    pub sysenter_esp: u64,
    pub sysenter_eip: u64,
    pub cr2: u64,
    _reserved4: [u8; 0x668 - 0x648],
    pub g_pat: u64,
    pub dbgctl: u64,
    pub br_from: u64,
    pub br_to: u64,
    pub last_excp_from: u64,
    pub last_excp_to: u64,
    _reserved5: [u8; 0x1000 - 0x698],
}

#[derive(Clone, Copy)]
#[repr(C, align(4096))]
pub struct Vmcb {
    pub control: ControlArea,
    pub save: SaveArea,
}

impl Vmcb {
    pub const fn zeroed() -> Self {
        // SAFETY: every field is an integer or an array of integers; all-zero is valid.
        unsafe { core::mem::zeroed() }
    }
}

// The SVM-specific fields (the `x86_64` crate has no SVM types). They sit in the VMCB itself,
// hence `repr(transparent)`; unnamed bits are kept as written.
bitflags! {
    /// Intercept vector 3.
    #[repr(transparent)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InterceptMisc1: u32 {
        const INTR = 1 << 0;
        const NMI = 1 << 1;
        const INIT = 1 << 3;
        const VINTR = 1 << 4;
        const CPUID = 1 << 18;
        const HLT = 1 << 24;
        const IOIO = 1 << 27;
        const MSR = 1 << 28;
        const SHUTDOWN = 1 << 31;
        const _ = !0;
    }

    /// Intercept vector 4.
    #[repr(transparent)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InterceptMisc2: u32 {
        const VMRUN = 1 << 0;
        const VMMCALL = 1 << 1;
        const VMLOAD = 1 << 2;
        const VMSAVE = 1 << 3;
        const STGI = 1 << 4;
        const CLGI = 1 << 5;
        const SKINIT = 1 << 6;
        const MONITOR = 1 << 10;
        const MWAIT = 1 << 11;
        const MWAIT_ARMED = 1 << 12;
        const XSETBV = 1 << 13;
        /// The SVM instructions other than VMRUN/VMMCALL, and MONITOR/MWAIT (RDTSCP runs).
        const OTHER_SVM_AND_MWAIT = Self::VMLOAD.bits()
            | Self::VMSAVE.bits()
            | Self::STGI.bits()
            | Self::CLGI.bits()
            | Self::SKINIT.bits()
            | Self::MONITOR.bits()
            | Self::MWAIT.bits()
            | Self::MWAIT_ARMED.bits();
        const _ = !0;
    }

    /// `vintr` (V_TPR 3:0, V_INTR_PRIO 19:16, V_INTR_VECTOR 39:32 are values).
    #[repr(transparent)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VIntr: u64 {
        /// A virtual interrupt request.
        const V_IRQ = 1 << 8;
        /// The request ignores the virtual TPR.
        const V_IGN_TPR = 1 << 20;
        /// Physical interrupts follow the host's RFLAGS.IF while the guest runs (its IF masks
        /// only virtual ones).
        const V_INTR_MASKING = 1 << 24;
        const _ = !0;
    }

    /// EVENTINJ (vector 7:0, type 10:8, error code 63:32).
    #[repr(transparent)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EventInject: u64 {
        const ERROR_CODE_VALID = 1 << 11;
        const VALID = 1 << 31;
        const _ = !0;
    }
}

impl VIntr {
    /// V_INTR_PRIO (bits 19:16) and V_INTR_VECTOR (bits 39:32).
    pub const PRIO_AND_VECTOR: u64 = 0xF << 16 | 0xFF << 32;

    /// A virtual interrupt request for `vector` at the highest priority, ignoring the virtual
    /// TPR, over the other bits of `self`.
    pub fn with_request(self, vector: u8) -> VIntr {
        let others = self.bits() & !Self::PRIO_AND_VECTOR & !(Self::V_IRQ | Self::V_IGN_TPR).bits();
        VIntr::from_bits_retain(
            others | (Self::V_IRQ | Self::V_IGN_TPR).bits() | 0xF << 16 | (vector as u64) << 32,
        )
    }

    /// `self` without a virtual interrupt request.
    pub fn without_request(self) -> VIntr {
        VIntr::from_bits_retain(
            self.bits() & !Self::PRIO_AND_VECTOR & !(Self::V_IRQ | Self::V_IGN_TPR).bits(),
        )
    }
}

impl EventInject {
    /// The bits EXITINTINFO shares with EVENTINJ (vector, type, error-code valid, valid, error
    /// code); 30:12 are reserved.
    pub const LAYOUT: u64 = 0xFFFF_FFFF_8000_0FFF;
    pub const TYPE_MASK: u64 = 7 << 8;

    /// The TYPE field (bits 10:8).
    pub const TYPE_INTR: u64 = 0;
    pub const TYPE_NMI: u64 = 2 << 8;
    pub const TYPE_EXCEPTION: u64 = 3 << 8;
}

// Exit codes.
pub const EXIT_EXCP_BASE: u64 = 0x40;
pub const EXIT_INTR: u64 = 0x60;
pub const EXIT_NMI: u64 = 0x61;
pub const EXIT_INIT: u64 = 0x63;
pub const EXIT_VINTR: u64 = 0x64;
pub const EXIT_CPUID: u64 = 0x72;
pub const EXIT_HLT: u64 = 0x78;
pub const EXIT_IOIO: u64 = 0x7B;
pub const EXIT_MSR: u64 = 0x7C;
pub const EXIT_SHUTDOWN: u64 = 0x7F;
pub const EXIT_VMMCALL: u64 = 0x81;
/// VMRUN (0x80) and VMLOAD through SKINIT (0x82-0x86); MONITOR, MWAIT and MWAIT with a
/// condition (0x8A-0x8C).
pub const EXIT_SVM_INSTRUCTIONS: [core::ops::RangeInclusive<u64>; 3] =
    [0x80..=0x80, 0x82..=0x86, 0x8A..=0x8C];
pub const EXIT_XSETBV: u64 = 0x8D;
pub const EXIT_NPF: u64 = 0x400;
pub const EXIT_INVALID: u64 = u64::MAX;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn flag_encodings() {
        assert_eq!(InterceptMisc2::OTHER_SVM_AND_MWAIT.bits(), 0x1C7C);
        assert_eq!(InterceptMisc1::SHUTDOWN.bits(), 0x8000_0000);
        assert_eq!(VIntr::V_INTR_MASKING.bits(), 0x100_0000);
        let request = VIntr::V_INTR_MASKING.with_request(0xF3);
        assert_eq!(request.bits(), 0xF3_011F_0100);
        assert_eq!(request.with_request(0x31).bits() >> 32, 0x31);
        assert_eq!(request.without_request(), VIntr::V_INTR_MASKING);
        let nmi = EventInject::from_bits_retain(2 | EventInject::TYPE_NMI) | EventInject::VALID;
        assert_eq!(nmi.bits(), 0x8000_0202);
    }

    #[test]
    fn sizes() {
        assert_eq!(size_of::<Vmcb>(), 4096);
        assert_eq!(size_of::<ControlArea>(), 0x400);
        assert_eq!(size_of::<SaveArea>(), 0xC00);
        assert_eq!(size_of::<VmcbSegment>(), 16);
        assert_eq!(size_of::<InterceptMisc1>(), 4);
        assert_eq!(size_of::<InterceptMisc2>(), 4);
        assert_eq!(size_of::<VIntr>(), 8);
        assert_eq!(size_of::<EventInject>(), 8);
        assert_eq!(core::mem::align_of::<Vmcb>(), 4096);
    }

    #[test]
    fn control_area_offsets() {
        assert_eq!(offset_of!(ControlArea, intercept_exceptions), 0x08);
        assert_eq!(offset_of!(ControlArea, intercept_misc1), 0x0C);
        assert_eq!(offset_of!(ControlArea, intercept_misc2), 0x10);
        assert_eq!(offset_of!(ControlArea, pause_filter_threshold), 0x3C);
        assert_eq!(offset_of!(ControlArea, iopm_base_pa), 0x40);
        assert_eq!(offset_of!(ControlArea, msrpm_base_pa), 0x48);
        assert_eq!(offset_of!(ControlArea, tsc_offset), 0x50);
        assert_eq!(offset_of!(ControlArea, guest_asid), 0x58);
        assert_eq!(offset_of!(ControlArea, tlb_control), 0x5C);
        assert_eq!(offset_of!(ControlArea, vintr), 0x60);
        assert_eq!(offset_of!(ControlArea, interrupt_shadow), 0x68);
        assert_eq!(offset_of!(ControlArea, exit_code), 0x70);
        assert_eq!(offset_of!(ControlArea, exit_info1), 0x78);
        assert_eq!(offset_of!(ControlArea, exit_info2), 0x80);
        assert_eq!(offset_of!(ControlArea, exit_int_info), 0x88);
        assert_eq!(offset_of!(ControlArea, np_control), 0x90);
        assert_eq!(offset_of!(ControlArea, event_inject), 0xA8);
        assert_eq!(offset_of!(ControlArea, n_cr3), 0xB0);
        assert_eq!(offset_of!(ControlArea, clean_bits), 0xC0);
        assert_eq!(offset_of!(ControlArea, next_rip), 0xC8);
        assert_eq!(offset_of!(ControlArea, insn_len), 0xD0);
    }

    #[test]
    fn save_area_offsets() {
        let o = |x: usize| x + 0x400;
        assert_eq!(o(offset_of!(SaveArea, es)), 0x400);
        assert_eq!(o(offset_of!(SaveArea, cs)), 0x410);
        assert_eq!(o(offset_of!(SaveArea, gdtr)), 0x460);
        assert_eq!(o(offset_of!(SaveArea, tr)), 0x490);
        assert_eq!(o(offset_of!(SaveArea, cpl)), 0x4CB);
        assert_eq!(o(offset_of!(SaveArea, efer)), 0x4D0);
        assert_eq!(o(offset_of!(SaveArea, cr4)), 0x548);
        assert_eq!(o(offset_of!(SaveArea, cr3)), 0x550);
        assert_eq!(o(offset_of!(SaveArea, cr0)), 0x558);
        assert_eq!(o(offset_of!(SaveArea, dr7)), 0x560);
        assert_eq!(o(offset_of!(SaveArea, rflags)), 0x570);
        assert_eq!(o(offset_of!(SaveArea, rip)), 0x578);
        assert_eq!(o(offset_of!(SaveArea, rsp)), 0x5D8);
        assert_eq!(o(offset_of!(SaveArea, rax)), 0x5F8);
        assert_eq!(o(offset_of!(SaveArea, star)), 0x600);
        assert_eq!(o(offset_of!(SaveArea, kernel_gs_base)), 0x620);
        assert_eq!(o(offset_of!(SaveArea, sysenter_eip)), 0x638);
        assert_eq!(o(offset_of!(SaveArea, cr2)), 0x640);
        assert_eq!(o(offset_of!(SaveArea, g_pat)), 0x668);
        assert_eq!(o(offset_of!(SaveArea, dbgctl)), 0x670);
        assert_eq!(o(offset_of!(SaveArea, last_excp_to)), 0x690);
        assert_eq!(offset_of!(Vmcb, save), 0x400);
    }

    #[test]
    fn segment_attribute_conversion() {
        // 32-bit flat code: access 0x9B, G and D/B set -> VMX 0xC09B, VMCB 0xC9B.
        let s = VmcbSegment::from_vmx(0x10, 0, 0xFFFF_FFFF, 0xC09B);
        assert_eq!(s.attrib, 0xC9B);
        assert_eq!(s.vmx_access(), 0xC09B);
        // 64-bit code: L bit.
        assert_eq!(VmcbSegment::from_vmx(8, 0, 0, 0xA09B).attrib, 0xA9B);
    }
}
