//! VMX capability MSRs and the computation of the execution controls (pure logic).

use bitflags::bitflags;
use x86_64::registers::control::Cr0Flags;

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
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48D;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48E;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48F;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    pub const IA32_EFER: u32 = 0xC000_0080;
    pub const IA32_FS_BASE: u32 = 0xC000_0100;
    pub const IA32_GS_BASE: u32 = 0xC000_0101;
}

// VMX-specific registers: the `x86_64` crate has no types for them. Every set keeps the bits it
// does not name (`_ = !0`): the CPU forces default-1 bits that must survive a round trip.
bitflags! {
    /// IA32_FEATURE_CONTROL.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct FeatureControl: u64 {
        const LOCK = 1 << 0;
        const VMX_OUTSIDE_SMX = 1 << 2;
        const _ = !0;
    }

    /// Pin-based VM-execution controls.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PinControls: u32 {
        const EXTERNAL_INTERRUPT_EXITING = 1 << 0;
        const NMI_EXITING = 1 << 3;
        const VIRTUAL_NMIS = 1 << 5;
        const PREEMPTION_TIMER = 1 << 6;
        const _ = !0;
    }

    /// Primary processor-based VM-execution controls.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PrimaryControls: u32 {
        const INTERRUPT_WINDOW_EXITING = 1 << 2;
        const HLT_EXITING = 1 << 7;
        const CR3_LOAD_EXITING = 1 << 15;
        const CR3_STORE_EXITING = 1 << 16;
        const USE_IO_BITMAPS = 1 << 25;
        const USE_MSR_BITMAPS = 1 << 28;
        const ACTIVATE_SECONDARY = 1 << 31;
        const _ = !0;
    }

    /// Secondary processor-based VM-execution controls.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SecondaryControls: u32 {
        const ENABLE_EPT = 1 << 1;
        const ENABLE_RDTSCP = 1 << 3;
        const ENABLE_VPID = 1 << 5;
        const UNRESTRICTED_GUEST = 1 << 7;
        const ENABLE_INVPCID = 1 << 12;
        const ENABLE_XSAVES = 1 << 20;
        const _ = !0;
    }

    /// VM-exit controls.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitControls: u32 {
        const HOST_ADDRESS_SPACE_SIZE = 1 << 9;
        const SAVE_PAT = 1 << 18;
        const LOAD_PAT = 1 << 19;
        const SAVE_EFER = 1 << 20;
        const LOAD_EFER = 1 << 21;
        const _ = !0;
    }

    /// VM-entry controls.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EntryControls: u32 {
        const IA32E_MODE_GUEST = 1 << 9;
        const LOAD_PAT = 1 << 14;
        const LOAD_EFER = 1 << 15;
        const _ = !0;
    }

    /// IA32_VMX_BASIC flags (the VMCS revision id is bits 30:0).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct VmxBasic: u64 {
        /// The TRUE_* control MSRs exist.
        const TRUE_CONTROLS = 1 << 55;
        const _ = !0;
    }

    /// IA32_VMX_EPT_VPID_CAP.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EptVpidCap: u64 {
        const WALK_LENGTH_4 = 1 << 6;
        const MEMTYPE_WB = 1 << 14;
        const PAGE_2M = 1 << 16;
        const PAGE_1G = 1 << 17;
        const INVEPT = 1 << 20;
        const INVEPT_SINGLE = 1 << 25;
        const INVEPT_ALL = 1 << 26;
        const INVVPID = 1 << 32;
        const INVVPID_SINGLE = 1 << 41;
        const INVVPID_ALL = 1 << 42;
        const _ = !0;
    }
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
    /// IA32_VMX_MISC (bits 4:0: the preemption timer counts every 2^n TSC ticks).
    pub misc: u64,
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
    pub pin: PinControls,
    pub proc1: PrimaryControls,
    pub proc2: SecondaryControls,
    pub exit: ExitControls,
    pub entry: EntryControls,
    pub vpid: bool,
}

impl RawCaps {
    pub fn revision_id(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// TSC ticks per preemption-timer tick, as a power of two.
    pub fn preemption_timer_shift(&self) -> u32 {
        (self.misc & 0x1F) as u32
    }

    /// The TRUE_* control MSRs exist.
    pub fn has_true_controls(&self) -> bool {
        VmxBasic::from_bits_retain(self.basic).contains(VmxBasic::TRUE_CONTROLS)
    }

    /// Computes the controls: `required` bits must be available, `optional` bits are taken
    /// when the CPU allows them; everything the CPU forces to 1 is set too. The caller fills
    /// `RawCaps` from the TRUE control MSRs when they exist, where CR3 load/store exiting are
    /// not forced on (EPT guests own their CR3).
    pub fn controls(&self) -> Result<Controls, VmxError> {
        // Physical interrupts belong to the hypervisor: they exit, and are taken through its own
        // IDT after the exit (no acknowledge-on-exit), as on SVM with the INTR intercept. The
        // preemption timer bounds how long a guest runs without an exit, whatever masks the
        // emulator applies to interrupts.
        let pin = PinControls::from_bits_retain(adjust(
            ControlKind::PinBased,
            self.pin,
            PinControls::EXTERNAL_INTERRUPT_EXITING.bits(),
            PinControls::PREEMPTION_TIMER.bits(),
        )?);
        let proc1 = PrimaryControls::from_bits_retain(adjust(
            ControlKind::Primary,
            self.proc1,
            (PrimaryControls::HLT_EXITING
                | PrimaryControls::USE_IO_BITMAPS
                | PrimaryControls::USE_MSR_BITMAPS
                | PrimaryControls::ACTIVATE_SECONDARY)
                .bits(),
            0,
        )?);
        let mut proc2 = SecondaryControls::from_bits_retain(adjust(
            ControlKind::Secondary,
            self.proc2,
            (SecondaryControls::ENABLE_EPT | SecondaryControls::UNRESTRICTED_GUEST).bits(),
            (SecondaryControls::ENABLE_VPID
                | SecondaryControls::ENABLE_RDTSCP
                | SecondaryControls::ENABLE_INVPCID
                | SecondaryControls::ENABLE_XSAVES)
                .bits(),
        )?);
        let exit = ExitControls::from_bits_retain(adjust(
            ControlKind::Exit,
            self.exit,
            (ExitControls::HOST_ADDRESS_SPACE_SIZE
                | ExitControls::SAVE_EFER
                | ExitControls::LOAD_EFER)
                .bits(),
            (ExitControls::SAVE_PAT | ExitControls::LOAD_PAT).bits(),
        )?);
        let entry = EntryControls::from_bits_retain(adjust(
            ControlKind::Entry,
            self.entry,
            EntryControls::LOAD_EFER.bits(),
            EntryControls::LOAD_PAT.bits(),
        )?) - EntryControls::IA32E_MODE_GUEST;
        let ept_vpid = EptVpidCap::from_bits_retain(self.ept_vpid);
        if !ept_vpid.contains(EptVpidCap::WALK_LENGTH_4 | EptVpidCap::MEMTYPE_WB) {
            return Err(VmxError::EptUnsupported);
        }
        // VPID is only worth enabling when INVVPID can flush it.
        let vpid = proc2.contains(SecondaryControls::ENABLE_VPID)
            && ept_vpid.contains(EptVpidCap::INVVPID);
        proc2.set(SecondaryControls::ENABLE_VPID, vpid);
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
        let pe_pg = (Cr0Flags::PROTECTED_MODE_ENABLE | Cr0Flags::PAGING).bits();
        let forced1 = self.cr0_fixed0 & !pe_pg;
        let forced0 = !self.cr0_fixed1 & 0xffff_ffff;
        (forced1, forced0)
    }

    pub fn cr4_forced(&self) -> (u64, u64) {
        (self.cr4_fixed0, !self.cr4_fixed1 & 0xffff_ffff)
    }
}

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
    use x86_64::registers::control::Cr4Flags;

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
            misc: 0x0000_0000_0000_0005,
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
            c.pin.bits(),
            0x57,
            "default-1 pin bits, external-interrupt exiting and the preemption timer"
        );
        assert!(!c.pin.contains(PinControls::NMI_EXITING));
        assert!(c.proc1.contains(PrimaryControls::HLT_EXITING));
        assert!(c.proc1.contains(PrimaryControls::ACTIVATE_SECONDARY));
        assert!(!c
            .proc1
            .intersects(PrimaryControls::CR3_LOAD_EXITING | PrimaryControls::CR3_STORE_EXITING));
        assert!(!c.proc1.contains(PrimaryControls::INTERRUPT_WINDOW_EXITING));
        for bit in [
            SecondaryControls::ENABLE_EPT,
            SecondaryControls::UNRESTRICTED_GUEST,
            SecondaryControls::ENABLE_VPID,
            SecondaryControls::ENABLE_RDTSCP,
            SecondaryControls::ENABLE_INVPCID,
            SecondaryControls::ENABLE_XSAVES,
        ] {
            assert!(c.proc2.contains(bit), "{bit:?}");
        }
        assert!(c.vpid);
        assert!(c.exit.contains(ExitControls::LOAD_EFER));
        assert!(c.entry.contains(EntryControls::LOAD_EFER));
        assert!(!c.entry.contains(EntryControls::IA32E_MODE_GUEST));
    }

    #[test]
    fn optional_features_drop_out() {
        let mut caps = bochs();
        let xsaves_vpid = SecondaryControls::ENABLE_XSAVES | SecondaryControls::ENABLE_VPID;
        caps.proc2 &= !((xsaves_vpid.bits() as u64) << 32);
        let c = caps.controls().unwrap();
        assert!(!c.proc2.intersects(xsaves_vpid));
        assert!(!c.vpid);
    }

    #[test]
    fn missing_required_control_is_an_error() {
        let mut caps = bochs();
        caps.proc2 &= !((SecondaryControls::UNRESTRICTED_GUEST.bits() as u64) << 32);
        assert_eq!(
            caps.controls(),
            Err(VmxError::MissingControl {
                kind: ControlKind::Secondary,
                bits: SecondaryControls::UNRESTRICTED_GUEST.bits()
            })
        );
        let mut caps = bochs();
        caps.ept_vpid &= !EptVpidCap::MEMTYPE_WB.bits();
        assert_eq!(caps.controls(), Err(VmxError::EptUnsupported));
    }

    #[test]
    fn non_true_cr3_exiting_is_kept_when_forced() {
        let mut caps = bochs();
        caps.proc1 |= PrimaryControls::CR3_LOAD_EXITING.bits() as u64;
        let c = caps.controls().unwrap();
        assert!(c.proc1.contains(PrimaryControls::CR3_LOAD_EXITING));
    }

    #[test]
    fn cr_forced_bits() {
        let caps = bochs();
        let (one, zero) = caps.cr0_forced();
        assert_eq!(one, Cr0Flags::NUMERIC_ERROR.bits());
        assert_eq!(zero, 0);
        let (one, zero) = caps.cr4_forced();
        assert_eq!(one, Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits());
        assert_eq!(zero & (1 << 22), 1 << 22);
    }
}
