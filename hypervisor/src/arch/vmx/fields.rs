//! VMCS field encodings (Intel SDM vol. 3, appendix B).
//!
//! An encoding is a 32-bit value: bit 0 access type (0 = full, 1 = high half of a 64-bit field),
//! bits 9:1 index, bits 11:10 type (control, VM-exit information, guest state, host state),
//! bit 12 reserved (0), bits 14:13 width (16-bit, 64-bit, 32-bit, natural width).

/// A VMCS field encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    Bits16,
    Bits64,
    Bits32,
    Natural,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Control,
    ExitInfo,
    Guest,
    Host,
}

impl Field {
    /// Builds an encoding from its parts; used by the tests to cross-check the table below.
    pub const fn encode(width: Width, kind: Kind, index: u32) -> Field {
        let w = match width {
            Width::Bits16 => 0,
            Width::Bits64 => 1,
            Width::Bits32 => 2,
            Width::Natural => 3,
        };
        let k = match kind {
            Kind::Control => 0,
            Kind::ExitInfo => 1,
            Kind::Guest => 2,
            Kind::Host => 3,
        };
        Field((w << 13) | (k << 10) | (index << 1))
    }
    pub const fn width(self) -> Width {
        match (self.0 >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }
    pub const fn kind(self) -> Kind {
        match (self.0 >> 10) & 3 {
            0 => Kind::Control,
            1 => Kind::ExitInfo,
            2 => Kind::Guest,
            _ => Kind::Host,
        }
    }
    pub const fn index(self) -> u32 {
        (self.0 >> 1) & 0x1ff
    }
    pub const fn is_high(self) -> bool {
        self.0 & 1 != 0
    }
}

// 16-bit control fields.
pub const VPID: Field = Field(0x0000);
// 16-bit guest-state fields.
pub const GUEST_ES_SELECTOR: Field = Field(0x0800);
pub const GUEST_CS_SELECTOR: Field = Field(0x0802);
pub const GUEST_SS_SELECTOR: Field = Field(0x0804);
pub const GUEST_DS_SELECTOR: Field = Field(0x0806);
pub const GUEST_FS_SELECTOR: Field = Field(0x0808);
pub const GUEST_GS_SELECTOR: Field = Field(0x080A);
pub const GUEST_LDTR_SELECTOR: Field = Field(0x080C);
pub const GUEST_TR_SELECTOR: Field = Field(0x080E);
// 16-bit host-state fields.
pub const HOST_ES_SELECTOR: Field = Field(0x0C00);
pub const HOST_CS_SELECTOR: Field = Field(0x0C02);
pub const HOST_SS_SELECTOR: Field = Field(0x0C04);
pub const HOST_DS_SELECTOR: Field = Field(0x0C06);
pub const HOST_FS_SELECTOR: Field = Field(0x0C08);
pub const HOST_GS_SELECTOR: Field = Field(0x0C0A);
pub const HOST_TR_SELECTOR: Field = Field(0x0C0C);

// 64-bit control fields.
pub const IO_BITMAP_A: Field = Field(0x2000);
pub const IO_BITMAP_B: Field = Field(0x2002);
pub const MSR_BITMAP: Field = Field(0x2004);
pub const EXIT_MSR_STORE_ADDR: Field = Field(0x2006);
pub const EXIT_MSR_LOAD_ADDR: Field = Field(0x2008);
pub const ENTRY_MSR_LOAD_ADDR: Field = Field(0x200A);
pub const TSC_OFFSET: Field = Field(0x2010);
pub const EPT_POINTER: Field = Field(0x201A);
// 64-bit read-only data field.
pub const GUEST_PHYSICAL_ADDRESS: Field = Field(0x2400);
// 64-bit guest-state fields.
pub const VMCS_LINK_POINTER: Field = Field(0x2800);
pub const GUEST_IA32_DEBUGCTL: Field = Field(0x2802);
pub const GUEST_IA32_PAT: Field = Field(0x2804);
pub const GUEST_IA32_EFER: Field = Field(0x2806);
// 64-bit host-state fields.
pub const HOST_IA32_PAT: Field = Field(0x2C00);
pub const HOST_IA32_EFER: Field = Field(0x2C02);

// 32-bit control fields.
pub const PIN_BASED_CONTROLS: Field = Field(0x4000);
pub const PRIMARY_PROC_CONTROLS: Field = Field(0x4002);
pub const EXCEPTION_BITMAP: Field = Field(0x4004);
pub const PAGE_FAULT_ERROR_MASK: Field = Field(0x4006);
pub const PAGE_FAULT_ERROR_MATCH: Field = Field(0x4008);
pub const CR3_TARGET_COUNT: Field = Field(0x400A);
pub const EXIT_CONTROLS: Field = Field(0x400C);
pub const EXIT_MSR_STORE_COUNT: Field = Field(0x400E);
pub const EXIT_MSR_LOAD_COUNT: Field = Field(0x4010);
pub const ENTRY_CONTROLS: Field = Field(0x4012);
pub const ENTRY_MSR_LOAD_COUNT: Field = Field(0x4014);
pub const ENTRY_INTERRUPTION_INFO: Field = Field(0x4016);
pub const ENTRY_EXCEPTION_ERROR_CODE: Field = Field(0x4018);
pub const ENTRY_INSTRUCTION_LEN: Field = Field(0x401A);
pub const SECONDARY_PROC_CONTROLS: Field = Field(0x401E);
// 32-bit read-only data fields.
pub const VM_INSTRUCTION_ERROR: Field = Field(0x4400);
pub const EXIT_REASON: Field = Field(0x4402);
pub const EXIT_INTERRUPTION_INFO: Field = Field(0x4404);
pub const EXIT_INTERRUPTION_ERROR_CODE: Field = Field(0x4406);
pub const IDT_VECTORING_INFO: Field = Field(0x4408);
pub const IDT_VECTORING_ERROR_CODE: Field = Field(0x440A);
pub const EXIT_INSTRUCTION_LEN: Field = Field(0x440C);
pub const EXIT_INSTRUCTION_INFO: Field = Field(0x440E);
// 32-bit guest-state fields.
pub const GUEST_ES_LIMIT: Field = Field(0x4800);
pub const GUEST_CS_LIMIT: Field = Field(0x4802);
pub const GUEST_SS_LIMIT: Field = Field(0x4804);
pub const GUEST_DS_LIMIT: Field = Field(0x4806);
pub const GUEST_FS_LIMIT: Field = Field(0x4808);
pub const GUEST_GS_LIMIT: Field = Field(0x480A);
pub const GUEST_LDTR_LIMIT: Field = Field(0x480C);
pub const GUEST_TR_LIMIT: Field = Field(0x480E);
pub const GUEST_GDTR_LIMIT: Field = Field(0x4810);
pub const GUEST_IDTR_LIMIT: Field = Field(0x4812);
pub const GUEST_ES_AR: Field = Field(0x4814);
pub const GUEST_CS_AR: Field = Field(0x4816);
pub const GUEST_SS_AR: Field = Field(0x4818);
pub const GUEST_DS_AR: Field = Field(0x481A);
pub const GUEST_FS_AR: Field = Field(0x481C);
pub const GUEST_GS_AR: Field = Field(0x481E);
pub const GUEST_LDTR_AR: Field = Field(0x4820);
pub const GUEST_TR_AR: Field = Field(0x4822);
pub const GUEST_INTERRUPTIBILITY: Field = Field(0x4824);
pub const GUEST_ACTIVITY_STATE: Field = Field(0x4826);
pub const GUEST_SYSENTER_CS: Field = Field(0x482A);
pub const PREEMPTION_TIMER_VALUE: Field = Field(0x482E);
// 32-bit host-state field.
pub const HOST_SYSENTER_CS: Field = Field(0x4C00);

// Natural-width control fields.
pub const CR0_GUEST_HOST_MASK: Field = Field(0x6000);
pub const CR4_GUEST_HOST_MASK: Field = Field(0x6002);
pub const CR0_READ_SHADOW: Field = Field(0x6004);
pub const CR4_READ_SHADOW: Field = Field(0x6006);
// Natural-width read-only data fields.
pub const EXIT_QUALIFICATION: Field = Field(0x6400);
pub const GUEST_LINEAR_ADDRESS: Field = Field(0x640A);
// Natural-width guest-state fields.
pub const GUEST_CR0: Field = Field(0x6800);
pub const GUEST_CR3: Field = Field(0x6802);
pub const GUEST_CR4: Field = Field(0x6804);
pub const GUEST_ES_BASE: Field = Field(0x6806);
pub const GUEST_CS_BASE: Field = Field(0x6808);
pub const GUEST_SS_BASE: Field = Field(0x680A);
pub const GUEST_DS_BASE: Field = Field(0x680C);
pub const GUEST_FS_BASE: Field = Field(0x680E);
pub const GUEST_GS_BASE: Field = Field(0x6810);
pub const GUEST_LDTR_BASE: Field = Field(0x6812);
pub const GUEST_TR_BASE: Field = Field(0x6814);
pub const GUEST_GDTR_BASE: Field = Field(0x6816);
pub const GUEST_IDTR_BASE: Field = Field(0x6818);
pub const GUEST_DR7: Field = Field(0x681A);
pub const GUEST_RSP: Field = Field(0x681C);
pub const GUEST_RIP: Field = Field(0x681E);
pub const GUEST_RFLAGS: Field = Field(0x6820);
pub const GUEST_PENDING_DBG_EXCEPTIONS: Field = Field(0x6822);
pub const GUEST_SYSENTER_ESP: Field = Field(0x6824);
pub const GUEST_SYSENTER_EIP: Field = Field(0x6826);
// Natural-width host-state fields.
pub const HOST_CR0: Field = Field(0x6C00);
pub const HOST_CR3: Field = Field(0x6C02);
pub const HOST_CR4: Field = Field(0x6C04);
pub const HOST_FS_BASE: Field = Field(0x6C06);
pub const HOST_GS_BASE: Field = Field(0x6C08);
pub const HOST_TR_BASE: Field = Field(0x6C0A);
pub const HOST_GDTR_BASE: Field = Field(0x6C0C);
pub const HOST_IDTR_BASE: Field = Field(0x6C0E);
pub const HOST_SYSENTER_ESP: Field = Field(0x6C10);
pub const HOST_SYSENTER_EIP: Field = Field(0x6C12);
pub const HOST_RSP: Field = Field(0x6C14);
pub const HOST_RIP: Field = Field(0x6C16);

/// The encodings the entry stub writes itself (it cannot take them as operands from Rust).
pub const STUB_HOST_RSP: u32 = HOST_RSP.0;
pub const STUB_HOST_RIP: u32 = HOST_RIP.0;

#[cfg(test)]
mod tests {
    use super::*;
    use Kind::*;
    use Width::*;

    /// (field, width, type, index) as listed in SDM appendix B.
    const TABLE: &[(Field, Width, Kind, u32)] = &[
        (VPID, Bits16, Control, 0),
        (GUEST_ES_SELECTOR, Bits16, Guest, 0),
        (GUEST_CS_SELECTOR, Bits16, Guest, 1),
        (GUEST_SS_SELECTOR, Bits16, Guest, 2),
        (GUEST_DS_SELECTOR, Bits16, Guest, 3),
        (GUEST_FS_SELECTOR, Bits16, Guest, 4),
        (GUEST_GS_SELECTOR, Bits16, Guest, 5),
        (GUEST_LDTR_SELECTOR, Bits16, Guest, 6),
        (GUEST_TR_SELECTOR, Bits16, Guest, 7),
        (HOST_ES_SELECTOR, Bits16, Host, 0),
        (HOST_CS_SELECTOR, Bits16, Host, 1),
        (HOST_SS_SELECTOR, Bits16, Host, 2),
        (HOST_DS_SELECTOR, Bits16, Host, 3),
        (HOST_FS_SELECTOR, Bits16, Host, 4),
        (HOST_GS_SELECTOR, Bits16, Host, 5),
        (HOST_TR_SELECTOR, Bits16, Host, 6),
        (IO_BITMAP_A, Bits64, Control, 0),
        (IO_BITMAP_B, Bits64, Control, 1),
        (MSR_BITMAP, Bits64, Control, 2),
        (EXIT_MSR_STORE_ADDR, Bits64, Control, 3),
        (EXIT_MSR_LOAD_ADDR, Bits64, Control, 4),
        (ENTRY_MSR_LOAD_ADDR, Bits64, Control, 5),
        (TSC_OFFSET, Bits64, Control, 8),
        (EPT_POINTER, Bits64, Control, 13),
        (GUEST_PHYSICAL_ADDRESS, Bits64, ExitInfo, 0),
        (VMCS_LINK_POINTER, Bits64, Guest, 0),
        (GUEST_IA32_DEBUGCTL, Bits64, Guest, 1),
        (GUEST_IA32_PAT, Bits64, Guest, 2),
        (GUEST_IA32_EFER, Bits64, Guest, 3),
        (HOST_IA32_PAT, Bits64, Host, 0),
        (HOST_IA32_EFER, Bits64, Host, 1),
        (PIN_BASED_CONTROLS, Bits32, Control, 0),
        (PRIMARY_PROC_CONTROLS, Bits32, Control, 1),
        (EXCEPTION_BITMAP, Bits32, Control, 2),
        (PAGE_FAULT_ERROR_MASK, Bits32, Control, 3),
        (PAGE_FAULT_ERROR_MATCH, Bits32, Control, 4),
        (CR3_TARGET_COUNT, Bits32, Control, 5),
        (EXIT_CONTROLS, Bits32, Control, 6),
        (EXIT_MSR_STORE_COUNT, Bits32, Control, 7),
        (EXIT_MSR_LOAD_COUNT, Bits32, Control, 8),
        (ENTRY_CONTROLS, Bits32, Control, 9),
        (ENTRY_MSR_LOAD_COUNT, Bits32, Control, 10),
        (ENTRY_INTERRUPTION_INFO, Bits32, Control, 11),
        (ENTRY_EXCEPTION_ERROR_CODE, Bits32, Control, 12),
        (ENTRY_INSTRUCTION_LEN, Bits32, Control, 13),
        (SECONDARY_PROC_CONTROLS, Bits32, Control, 15),
        (VM_INSTRUCTION_ERROR, Bits32, ExitInfo, 0),
        (EXIT_REASON, Bits32, ExitInfo, 1),
        (EXIT_INTERRUPTION_INFO, Bits32, ExitInfo, 2),
        (EXIT_INTERRUPTION_ERROR_CODE, Bits32, ExitInfo, 3),
        (IDT_VECTORING_INFO, Bits32, ExitInfo, 4),
        (IDT_VECTORING_ERROR_CODE, Bits32, ExitInfo, 5),
        (EXIT_INSTRUCTION_LEN, Bits32, ExitInfo, 6),
        (EXIT_INSTRUCTION_INFO, Bits32, ExitInfo, 7),
        (GUEST_ES_LIMIT, Bits32, Guest, 0),
        (GUEST_CS_LIMIT, Bits32, Guest, 1),
        (GUEST_SS_LIMIT, Bits32, Guest, 2),
        (GUEST_DS_LIMIT, Bits32, Guest, 3),
        (GUEST_FS_LIMIT, Bits32, Guest, 4),
        (GUEST_GS_LIMIT, Bits32, Guest, 5),
        (GUEST_LDTR_LIMIT, Bits32, Guest, 6),
        (GUEST_TR_LIMIT, Bits32, Guest, 7),
        (GUEST_GDTR_LIMIT, Bits32, Guest, 8),
        (GUEST_IDTR_LIMIT, Bits32, Guest, 9),
        (GUEST_ES_AR, Bits32, Guest, 10),
        (GUEST_CS_AR, Bits32, Guest, 11),
        (GUEST_SS_AR, Bits32, Guest, 12),
        (GUEST_DS_AR, Bits32, Guest, 13),
        (GUEST_FS_AR, Bits32, Guest, 14),
        (GUEST_GS_AR, Bits32, Guest, 15),
        (GUEST_LDTR_AR, Bits32, Guest, 16),
        (GUEST_TR_AR, Bits32, Guest, 17),
        (GUEST_INTERRUPTIBILITY, Bits32, Guest, 18),
        (GUEST_ACTIVITY_STATE, Bits32, Guest, 19),
        (GUEST_SYSENTER_CS, Bits32, Guest, 21),
        (HOST_SYSENTER_CS, Bits32, Host, 0),
        (CR0_GUEST_HOST_MASK, Natural, Control, 0),
        (CR4_GUEST_HOST_MASK, Natural, Control, 1),
        (CR0_READ_SHADOW, Natural, Control, 2),
        (CR4_READ_SHADOW, Natural, Control, 3),
        (EXIT_QUALIFICATION, Natural, ExitInfo, 0),
        (GUEST_LINEAR_ADDRESS, Natural, ExitInfo, 5),
        (GUEST_CR0, Natural, Guest, 0),
        (GUEST_CR3, Natural, Guest, 1),
        (GUEST_CR4, Natural, Guest, 2),
        (GUEST_ES_BASE, Natural, Guest, 3),
        (GUEST_CS_BASE, Natural, Guest, 4),
        (GUEST_SS_BASE, Natural, Guest, 5),
        (GUEST_DS_BASE, Natural, Guest, 6),
        (GUEST_FS_BASE, Natural, Guest, 7),
        (GUEST_GS_BASE, Natural, Guest, 8),
        (GUEST_LDTR_BASE, Natural, Guest, 9),
        (GUEST_TR_BASE, Natural, Guest, 10),
        (GUEST_GDTR_BASE, Natural, Guest, 11),
        (GUEST_IDTR_BASE, Natural, Guest, 12),
        (GUEST_DR7, Natural, Guest, 13),
        (GUEST_RSP, Natural, Guest, 14),
        (GUEST_RIP, Natural, Guest, 15),
        (GUEST_RFLAGS, Natural, Guest, 16),
        (GUEST_PENDING_DBG_EXCEPTIONS, Natural, Guest, 17),
        (GUEST_SYSENTER_ESP, Natural, Guest, 18),
        (GUEST_SYSENTER_EIP, Natural, Guest, 19),
        (HOST_CR0, Natural, Host, 0),
        (HOST_CR3, Natural, Host, 1),
        (HOST_CR4, Natural, Host, 2),
        (HOST_FS_BASE, Natural, Host, 3),
        (HOST_GS_BASE, Natural, Host, 4),
        (HOST_TR_BASE, Natural, Host, 5),
        (HOST_GDTR_BASE, Natural, Host, 6),
        (HOST_IDTR_BASE, Natural, Host, 7),
        (HOST_SYSENTER_ESP, Natural, Host, 8),
        (HOST_SYSENTER_EIP, Natural, Host, 9),
        (HOST_RSP, Natural, Host, 10),
        (HOST_RIP, Natural, Host, 11),
    ];

    #[test]
    fn encodings_match_their_layout() {
        for &(field, width, kind, index) in TABLE {
            assert_eq!(field, Field::encode(width, kind, index), "{:#x}", field.0);
            assert_eq!(field.width(), width, "{:#x}", field.0);
            assert_eq!(field.kind(), kind, "{:#x}", field.0);
            assert_eq!(field.index(), index, "{:#x}", field.0);
            assert!(!field.is_high(), "{:#x} is a high-half access", field.0);
            assert_eq!(field.0 & (1 << 12), 0, "{:#x}: reserved bit 12", field.0);
            assert!(field.0 < 1 << 15, "{:#x}: bits above 14", field.0);
        }
    }

    #[test]
    fn encodings_are_unique() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert_ne!(a.0, b.0);
            }
        }
    }

    #[test]
    fn decode_of_a_high_access() {
        let high = Field(EPT_POINTER.0 | 1);
        assert!(high.is_high());
        assert_eq!(high.index(), 13);
        assert_eq!(high.width(), Bits64);
    }
}
