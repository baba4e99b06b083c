//! VMX capability MSRs and the computation of the execution controls (pure logic).

/// Model-specific registers VMX reads.
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3A;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48B;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48C;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    pub const IA32_EFER: u32 = 0xC000_0080;
    pub const IA32_FS_BASE: u32 = 0xC000_0100;
    pub const IA32_GS_BASE: u32 = 0xC000_0101;

    pub const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
    pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
}

/// Pin-based VM-execution controls.
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
}

/// Primary processor-based VM-execution controls.
pub mod proc1 {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const ACTIVATE_SECONDARY: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution controls.
pub mod proc2 {
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_XSAVES: u32 = 1 << 20;
}

/// VM-exit controls.
pub mod exit {
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const SAVE_PAT: u32 = 1 << 18;
    pub const LOAD_PAT: u32 = 1 << 19;
    pub const SAVE_EFER: u32 = 1 << 20;
    pub const LOAD_EFER: u32 = 1 << 21;
}

/// VM-entry controls.
pub mod entry {
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const LOAD_PAT: u32 = 1 << 14;
    pub const LOAD_EFER: u32 = 1 << 15;
}

/// Bits of IA32_VMX_EPT_VPID_CAP.
pub mod ept_vpid {
    pub const WALK_LENGTH_4: u64 = 1 << 6;
    pub const MEMTYPE_WB: u64 = 1 << 14;
    pub const PAGE_2M: u64 = 1 << 16;
    pub const PAGE_1G: u64 = 1 << 17;
    pub const INVEPT: u64 = 1 << 20;
    pub const INVEPT_SINGLE: u64 = 1 << 25;
    pub const INVEPT_ALL: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_SINGLE: u64 = 1 << 41;
    pub const INVVPID_ALL: u64 = 1 << 42;
}

/// The raw capability MSR values, read once per CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCaps {
    pub basic: u64,
    pub pin: u64,
    pub proc1: u64,
    pub proc2: u64,
    pub exit: u64,
    pub entry: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    pub ept_vpid: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlKind {
    PinBased,
    Primary,
    Secondary,
    Exit,
    Entry,
}

/// Why VMX cannot be used on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxError {
    /// CPUID.1:ECX.VMX is clear.
    NotSupported,
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled (firmware setting).
    DisabledByFirmware,
    /// The CPU cannot provide a control this backend depends on.
    MissingControl { kind: ControlKind, bits: u32 },
    /// EPT lacks a 4-level walk or write-back paging structures.
    EptUnsupported,
    /// The current CR0/CR4 violate the VMX fixed bits even after adjusting them.
    FixedBits,
    /// VMXON failed (RFLAGS.CF/ZF set).
    VmxonFailed,
    /// VMCLEAR/VMPTRLD of a vCPU's VMCS failed.
    VmcsLoadFailed,
    /// The pCPU index is beyond the per-CPU VMXON regions.
    CpuIndexOutOfRange,
    /// Every statically reserved vCPU (VMCS and bitmaps) is in use.
    OutOfVcpuSlots,
    /// `VmxVcpu::new` ran on a CPU where VMX is not on.
    NotEnabled,
}

/// The controls a vCPU runs with, computed from the capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controls {
    pub pin: u32,
    pub proc1: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    pub vpid: bool,
}

impl RawCaps {
    pub fn revision_id(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// Bit 55 of IA32_VMX_BASIC: the TRUE_* control MSRs exist.
    pub fn has_true_controls(&self) -> bool {
        self.basic & (1 << 55) != 0
    }

    /// Computes the controls: `required` bits must be available, `optional` bits are taken
    /// when the CPU allows them; everything the CPU forces to 1 is set too. The caller fills
    /// `RawCaps` from the TRUE control MSRs when they exist, where CR3 load/store exiting are
    /// not forced on (EPT guests own their CR3).
    pub fn controls(&self) -> Result<Controls, VmxError> {
        // Physical interrupts belong to the hypervisor: they exit, and are taken through its own
        // IDT after the exit (no acknowledge-on-exit), as on SVM with the INTR intercept.
        let pin = adjust(
            ControlKind::PinBased,
            self.pin,
            pin::EXTERNAL_INTERRUPT_EXITING,
            0,
        )?;
        let proc1 = adjust(
            ControlKind::Primary,
            self.proc1,
            proc1::HLT_EXITING
                | proc1::USE_IO_BITMAPS
                | proc1::USE_MSR_BITMAPS
                | proc1::ACTIVATE_SECONDARY,
            0,
        )?;
        let proc2 = adjust(
            ControlKind::Secondary,
            self.proc2,
            proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST,
            proc2::ENABLE_VPID
                | proc2::ENABLE_RDTSCP
                | proc2::ENABLE_INVPCID
                | proc2::ENABLE_XSAVES,
        )?;
        let exit = adjust(
            ControlKind::Exit,
            self.exit,
            exit::HOST_ADDRESS_SPACE_SIZE | exit::SAVE_EFER | exit::LOAD_EFER,
            exit::SAVE_PAT | exit::LOAD_PAT,
        )?;
        let entry = adjust(
            ControlKind::Entry,
            self.entry,
            entry::LOAD_EFER,
            entry::LOAD_PAT,
        )? & !entry::IA32E_MODE_GUEST;
        let ept_needed = ept_vpid::WALK_LENGTH_4 | ept_vpid::MEMTYPE_WB;
        if self.ept_vpid & ept_needed != ept_needed {
            return Err(VmxError::EptUnsupported);
        }
        // VPID is only worth enabling when INVVPID can flush it.
        let vpid = proc2 & proc2::ENABLE_VPID != 0 && self.ept_vpid & ept_vpid::INVVPID != 0;
        let proc2 = if vpid {
            proc2
        } else {
            proc2 & !proc2::ENABLE_VPID
        };
        Ok(Controls {
            pin,
            proc1,
            proc2,
            exit,
            entry,
            vpid,
        })
    }

    /// Bits of CR0 the guest may not own: those VMX forces (except PE/PG, which unrestricted
    /// guest frees) and those it forbids.
    pub fn cr0_forced(&self) -> (u64, u64) {
        let forced1 = self.cr0_fixed0 & !(CR0_PE | CR0_PG);
        let forced0 = !self.cr0_fixed1 & 0xffff_ffff;
        (forced1, forced0)
    }

    pub fn cr4_forced(&self) -> (u64, u64) {
        (self.cr4_fixed0, !self.cr4_fixed1 & 0xffff_ffff)
    }
}

pub const CR0_PE: u64 = 1 << 0;
pub const CR0_ET: u64 = 1 << 4;
pub const CR0_NE: u64 = 1 << 5;
pub const CR0_NW: u64 = 1 << 29;
pub const CR0_CD: u64 = 1 << 30;
pub const CR0_PG: u64 = 1 << 31;
pub const CR4_PAE: u64 = 1 << 5;
pub const CR4_VMXE: u64 = 1 << 13;
pub const CR4_OSXSAVE: u64 = 1 << 18;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// Applies a capability MSR (low half: bits that must be 1, high half: bits that may be 1).
fn adjust(kind: ControlKind, cap: u64, required: u32, optional: u32) -> Result<u32, VmxError> {
    let must = cap as u32;
    let may = (cap >> 32) as u32;
    let missing = required & !may;
    if missing != 0 {
        return Err(VmxError::MissingControl {
            kind,
            bits: missing,
        });
    }
    Ok((required | optional | must) & may)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Bochs 2.7 `tigerlake` reports (basic and secondary from our measurements,
    /// the rest shaped like them).
    fn bochs() -> RawCaps {
        RawCaps {
            basic: 0x00d8_1000_0000_002b,
            pin: 0x0000_007f_0000_0016,
            proc1: 0xfff9_fffe_0400_6172,
            proc2: 0x0217_7fff_0000_0000,
            exit: 0x01ff_ffff_0003_6dfb,
            entry: 0x0003_ffff_0000_11fb,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_27ff,
            ept_vpid: 0x0f01_0633_4141,
        }
    }

    #[test]
    fn basic_fields() {
        let c = bochs();
        assert_eq!(c.revision_id(), 0x2b);
        assert!(c.has_true_controls());
    }

    #[test]
    fn controls_from_bochs_caps() {
        let c = bochs().controls().unwrap();
        assert_eq!(
            c.pin, 0x17,
            "default-1 pin bits and external-interrupt exiting"
        );
        assert_eq!(c.pin & pin::NMI_EXITING, 0);
        assert_ne!(c.proc1 & proc1::HLT_EXITING, 0);
        assert_ne!(c.proc1 & proc1::ACTIVATE_SECONDARY, 0);
        assert_eq!(
            c.proc1 & (proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING),
            0
        );
        assert_eq!(c.proc1 & proc1::INTERRUPT_WINDOW_EXITING, 0);
        for bit in [
            proc2::ENABLE_EPT,
            proc2::UNRESTRICTED_GUEST,
            proc2::ENABLE_VPID,
            proc2::ENABLE_RDTSCP,
            proc2::ENABLE_INVPCID,
            proc2::ENABLE_XSAVES,
        ] {
            assert_ne!(c.proc2 & bit, 0, "{bit:#x}");
        }
        assert!(c.vpid);
        assert_ne!(c.exit & exit::LOAD_EFER, 0);
        assert_ne!(c.entry & entry::LOAD_EFER, 0);
        assert_eq!(c.entry & entry::IA32E_MODE_GUEST, 0);
    }

    #[test]
    fn optional_features_drop_out() {
        let mut caps = bochs();
        caps.proc2 &= !(((proc2::ENABLE_XSAVES | proc2::ENABLE_VPID) as u64) << 32);
        let c = caps.controls().unwrap();
        assert_eq!(c.proc2 & (proc2::ENABLE_XSAVES | proc2::ENABLE_VPID), 0);
        assert!(!c.vpid);
    }

    #[test]
    fn missing_required_control_is_an_error() {
        let mut caps = bochs();
        caps.proc2 &= !((proc2::UNRESTRICTED_GUEST as u64) << 32);
        assert_eq!(
            caps.controls(),
            Err(VmxError::MissingControl {
                kind: ControlKind::Secondary,
                bits: proc2::UNRESTRICTED_GUEST
            })
        );
        let mut caps = bochs();
        caps.ept_vpid &= !ept_vpid::MEMTYPE_WB;
        assert_eq!(caps.controls(), Err(VmxError::EptUnsupported));
    }

    #[test]
    fn non_true_cr3_exiting_is_kept_when_forced() {
        let mut caps = bochs();
        caps.proc1 |= proc1::CR3_LOAD_EXITING as u64;
        let c = caps.controls().unwrap();
        assert_ne!(c.proc1 & proc1::CR3_LOAD_EXITING, 0);
    }

    #[test]
    fn cr_forced_bits() {
        let caps = bochs();
        let (one, zero) = caps.cr0_forced();
        assert_eq!(one, CR0_NE);
        assert_eq!(zero, 0);
        let (one, zero) = caps.cr4_forced();
        assert_eq!(one, CR4_VMXE);
        assert_eq!(zero & (1 << 22), 1 << 22);
    }
}
