//! Guest-state loading and the CR0/CR4 write rules, written against [`VmcsAccess`] so they run
//! on the host against a fake VMCS.

use super::fields::{self as f, Field};
use crate::vcpu::{InitialState, Segment};
use bitflags::bitflags;
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;

/// Access to the current VMCS (the hardware one on the target, a map in tests).
pub trait VmcsAccess {
    fn read(&self, field: Field) -> u64;
    fn write(&mut self, field: Field, value: u64);
}

/// Which CR bits VMX forces to 1 (`*_one`) or to 0 (`*_zero`) while the guest runs; they are
/// owned by the hypervisor through the guest/host masks and the guest sees its own value in the
/// read shadow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrPolicy {
    pub cr0_one: u64,
    pub cr0_zero: u64,
    pub cr4_one: u64,
    pub cr4_zero: u64,
}

bitflags! {
    /// VMX segment access-rights flags beyond the descriptor's access byte and flags (bits
    /// 7:0, 15:12), which VMX adds to the descriptor format (so not in the `x86_64` crate).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct AccessRights: u32 {
        /// The segment register is unusable.
        const UNUSABLE = 1 << 16;
        const _ = !0;
    }
}

/// Access rights of an unused segment register.
pub const AR_UNUSABLE: u32 = AccessRights::UNUSABLE.bits();
/// A present, busy 32/64-bit TSS (the only TR types VM entry accepts in every mode).
const AR_TSS_BUSY: u32 = 0x8b;
/// The architectural reset value of DR7.
const DR7_INIT: u64 = 0x400;
/// The power-on PAT (WB, WT, UC-, UC repeated).
const PAT_INIT: u64 = 0x0007_0406_0007_0406;

/// A fault the guest's CR write earns instead of taking effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralProtection;

/// The result of a guest MOV to CR0/CR4 the backend completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrUpdate {
    pub guest: u64,
    pub shadow: u64,
    pub efer: u64,
}

impl CrPolicy {
    pub fn cr0_mask(&self) -> u64 {
        self.cr0_one | self.cr0_zero
    }
    pub fn cr4_mask(&self) -> u64 {
        self.cr4_one | self.cr4_zero | Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits()
    }
    pub fn guest_cr0(&self, v: u64) -> u64 {
        (v | self.cr0_one) & !self.cr0_zero
    }
    pub fn guest_cr4(&self, v: u64) -> u64 {
        (v | self.cr4_one) & !self.cr4_zero
    }

    /// MOV to CR0 with the guest's value `v`, given its CR4 and EFER. Long mode is entered or
    /// left here when PG changes with EFER.LME set, as the CPU would do.
    pub fn mov_to_cr0(&self, v: u64, cr4: u64, efer: u64) -> Result<CrUpdate, GeneralProtection> {
        let cr0 = Cr0Flags::from_bits_retain(v);
        let paging = cr0.contains(Cr0Flags::PAGING);
        let long_mode =
            paging && EferFlags::from_bits_retain(efer).contains(EferFlags::LONG_MODE_ENABLE);
        let bad = v >> 32 != 0
            || v & self.cr0_zero != 0
            || (paging && !cr0.contains(Cr0Flags::PROTECTED_MODE_ENABLE))
            || (cr0.contains(Cr0Flags::NOT_WRITE_THROUGH)
                && !cr0.contains(Cr0Flags::CACHE_DISABLE))
            || (long_mode
                && !Cr4Flags::from_bits_retain(cr4).contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION));
        if bad {
            return Err(GeneralProtection);
        }
        Ok(CrUpdate {
            guest: self.guest_cr0(v),
            shadow: v,
            efer: with_long_mode_active(efer, long_mode),
        })
    }

    /// MOV to CR4: VMX is not offered to guests, so CR4.VMXE faults like a reserved bit.
    pub fn mov_to_cr4(&self, v: u64, efer: u64) -> Result<CrUpdate, GeneralProtection> {
        let cr4 = Cr4Flags::from_bits_retain(v);
        let long_mode = EferFlags::from_bits_retain(efer).contains(EferFlags::LONG_MODE_ACTIVE);
        let bad = v >> 32 != 0
            || v & self.cr4_zero != 0
            || cr4.contains(Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS)
            || (long_mode && !cr4.contains(Cr4Flags::PHYSICAL_ADDRESS_EXTENSION));
        if bad {
            return Err(GeneralProtection);
        }
        Ok(CrUpdate {
            guest: self.guest_cr4(v),
            shadow: v,
            efer,
        })
    }
}

/// EFER with LMA as the CPU sets it: on exactly when paging is on with LME set.
fn with_long_mode_active(efer: u64, active: bool) -> u64 {
    let mut efer = EferFlags::from_bits_retain(efer);
    efer.set(EferFlags::LONG_MODE_ACTIVE, active);
    efer.bits()
}

struct SegFields {
    selector: Field,
    base: Field,
    limit: Field,
    ar: Field,
}

const fn seg(selector: Field, base: Field, limit: Field, ar: Field) -> SegFields {
    SegFields {
        selector,
        base,
        limit,
        ar,
    }
}

fn write_segment(v: &mut impl VmcsAccess, s: &Segment, fields: SegFields, fallback_ar: u32) {
    let ar = if s.access == 0 { fallback_ar } else { s.access };
    v.write(fields.selector, s.selector as u64);
    v.write(fields.base, s.base);
    v.write(fields.limit, s.limit as u64);
    v.write(fields.ar, ar as u64);
}

/// Loads the architectural start state. Segments with access rights 0 become unusable (TR
/// becomes a busy TSS: VM entry requires a usable TR). Returns the effective EFER (LMA set when
/// paging is on with LME, as VM entry demands); the caller sets "IA-32e mode guest" from it.
pub fn load_initial_state(v: &mut impl VmcsAccess, s: &InitialState, p: &CrPolicy) -> u64 {
    write_segment(
        v,
        &s.es,
        seg(
            f::GUEST_ES_SELECTOR,
            f::GUEST_ES_BASE,
            f::GUEST_ES_LIMIT,
            f::GUEST_ES_AR,
        ),
        AR_UNUSABLE,
    );
    write_segment(
        v,
        &s.cs,
        seg(
            f::GUEST_CS_SELECTOR,
            f::GUEST_CS_BASE,
            f::GUEST_CS_LIMIT,
            f::GUEST_CS_AR,
        ),
        0x9b,
    );
    write_segment(
        v,
        &s.ss,
        seg(
            f::GUEST_SS_SELECTOR,
            f::GUEST_SS_BASE,
            f::GUEST_SS_LIMIT,
            f::GUEST_SS_AR,
        ),
        AR_UNUSABLE,
    );
    write_segment(
        v,
        &s.ds,
        seg(
            f::GUEST_DS_SELECTOR,
            f::GUEST_DS_BASE,
            f::GUEST_DS_LIMIT,
            f::GUEST_DS_AR,
        ),
        AR_UNUSABLE,
    );
    write_segment(
        v,
        &s.fs,
        seg(
            f::GUEST_FS_SELECTOR,
            f::GUEST_FS_BASE,
            f::GUEST_FS_LIMIT,
            f::GUEST_FS_AR,
        ),
        AR_UNUSABLE,
    );
    write_segment(
        v,
        &s.gs,
        seg(
            f::GUEST_GS_SELECTOR,
            f::GUEST_GS_BASE,
            f::GUEST_GS_LIMIT,
            f::GUEST_GS_AR,
        ),
        AR_UNUSABLE,
    );
    write_segment(
        v,
        &s.ldtr,
        seg(
            f::GUEST_LDTR_SELECTOR,
            f::GUEST_LDTR_BASE,
            f::GUEST_LDTR_LIMIT,
            f::GUEST_LDTR_AR,
        ),
        AR_UNUSABLE,
    );
    let mut tr = s.tr;
    if tr.access == 0 {
        tr.limit = tr.limit.max(0x67);
    }
    write_segment(
        v,
        &tr,
        seg(
            f::GUEST_TR_SELECTOR,
            f::GUEST_TR_BASE,
            f::GUEST_TR_LIMIT,
            f::GUEST_TR_AR,
        ),
        AR_TSS_BUSY,
    );
    v.write(f::GUEST_GDTR_BASE, s.gdtr_base);
    v.write(f::GUEST_GDTR_LIMIT, s.gdtr_limit as u64);
    v.write(f::GUEST_IDTR_BASE, s.idtr_base);
    v.write(f::GUEST_IDTR_LIMIT, s.idtr_limit as u64);

    v.write(f::CR0_GUEST_HOST_MASK, p.cr0_mask());
    v.write(f::CR4_GUEST_HOST_MASK, p.cr4_mask());
    v.write(f::CR0_READ_SHADOW, s.cr0);
    v.write(f::CR4_READ_SHADOW, s.cr4);
    v.write(f::GUEST_CR0, p.guest_cr0(s.cr0));
    v.write(f::GUEST_CR3, s.cr3);
    v.write(f::GUEST_CR4, p.guest_cr4(s.cr4));
    let long_mode = Cr0Flags::from_bits_retain(s.cr0).contains(Cr0Flags::PAGING)
        && EferFlags::from_bits_retain(s.efer).contains(EferFlags::LONG_MODE_ENABLE);
    let efer = with_long_mode_active(s.efer, long_mode);
    v.write(f::GUEST_IA32_EFER, efer);
    v.write(f::GUEST_IA32_PAT, PAT_INIT);
    v.write(f::GUEST_IA32_DEBUGCTL, 0);
    v.write(f::GUEST_DR7, DR7_INIT);

    v.write(f::GUEST_RIP, s.rip);
    v.write(f::GUEST_RSP, s.rsp);
    // Bit 1 of RFLAGS is reserved as 1; VM entry rejects a 0.
    v.write(f::GUEST_RFLAGS, s.rflags | 2);
    v.write(f::GUEST_SYSENTER_CS, 0);
    v.write(f::GUEST_SYSENTER_ESP, 0);
    v.write(f::GUEST_SYSENTER_EIP, 0);
    v.write(f::GUEST_INTERRUPTIBILITY, 0);
    v.write(f::GUEST_ACTIVITY_STATE, ACTIVITY_ACTIVE);
    v.write(f::GUEST_PENDING_DBG_EXCEPTIONS, 0);
    v.write(f::VMCS_LINK_POINTER, u64::MAX);
    efer
}

pub const ACTIVITY_ACTIVE: u64 = 0;
pub const ACTIVITY_WAIT_FOR_SIPI: u64 = 3;

/// The real-mode state an AP starts in after a SIPI with `vector` (execution at vector << 12).
pub fn sipi_state(vector: u8) -> InitialState {
    let data = Segment {
        selector: 0,
        base: 0,
        limit: 0xffff,
        access: 0x93,
    };
    InitialState {
        rip: 0,
        rflags: 2,
        cr0: Cr0Flags::EXTENSION_TYPE.bits(),
        cs: Segment {
            selector: (vector as u16) << 8,
            base: (vector as u64) << 12,
            limit: 0xffff,
            access: 0x9b,
        },
        ds: data,
        es: data,
        ss: data,
        fs: data,
        gs: data,
        tr: Segment {
            selector: 0,
            base: 0,
            limit: 0xffff,
            access: AR_TSS_BUSY,
        },
        gdtr_limit: 0xffff,
        idtr_limit: 0xffff,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Short names for the raw register values the tests combine.
    const CR0_PE: u64 = Cr0Flags::PROTECTED_MODE_ENABLE.bits();
    const CR0_ET: u64 = Cr0Flags::EXTENSION_TYPE.bits();
    const CR0_NE: u64 = Cr0Flags::NUMERIC_ERROR.bits();
    const CR0_NW: u64 = Cr0Flags::NOT_WRITE_THROUGH.bits();
    const CR0_PG: u64 = Cr0Flags::PAGING.bits();
    const CR4_PAE: u64 = Cr4Flags::PHYSICAL_ADDRESS_EXTENSION.bits();
    const CR4_VMXE: u64 = Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS.bits();
    const EFER_LME: u64 = EferFlags::LONG_MODE_ENABLE.bits();
    const EFER_LMA: u64 = EferFlags::LONG_MODE_ACTIVE.bits();
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct FakeVmcs(BTreeMap<u32, u64>);
    impl VmcsAccess for FakeVmcs {
        fn read(&self, field: Field) -> u64 {
            self.0.get(&field.0).copied().unwrap_or(0)
        }
        fn write(&mut self, field: Field, value: u64) {
            self.0.insert(field.0, value);
        }
    }

    const POLICY: CrPolicy = CrPolicy {
        cr0_one: CR0_NE,
        cr0_zero: 0,
        cr4_one: CR4_VMXE,
        cr4_zero: 0xffc0_0000,
    };

    /// ACRN's protected-mode boot contract: flat GDT, CS 0x10, data 0x18, CR0 = PE|ET|NE.
    fn protected_mode() -> InitialState {
        let code = Segment {
            selector: 0x10,
            base: 0,
            limit: 0xffff_ffff,
            access: 0xc09b,
        };
        let data = Segment {
            selector: 0x18,
            base: 0,
            limit: 0xffff_ffff,
            access: 0xc093,
        };
        InitialState {
            rip: 0x10_0000,
            cr0: CR0_PE | CR0_ET | CR0_NE,
            cs: code,
            ds: data,
            es: data,
            ss: data,
            gdtr_base: 0x800,
            gdtr_limit: 31,
            ..Default::default()
        }
    }

    #[test]
    fn protected_mode_contract() {
        let mut v = FakeVmcs::default();
        let efer = load_initial_state(&mut v, &protected_mode(), &POLICY);
        assert_eq!(efer, 0);
        assert_eq!(v.read(f::GUEST_CS_SELECTOR), 0x10);
        assert_eq!(v.read(f::GUEST_CS_AR), 0xc09b);
        assert_eq!(v.read(f::GUEST_SS_SELECTOR), 0x18);
        assert_eq!(v.read(f::GUEST_FS_AR), AR_UNUSABLE as u64);
        assert_eq!(v.read(f::GUEST_LDTR_AR), AR_UNUSABLE as u64);
        assert_eq!(v.read(f::GUEST_TR_AR), 0x8b);
        assert_eq!(v.read(f::GUEST_TR_LIMIT), 0x67);
        assert_eq!(v.read(f::GUEST_CR0), 0x31);
        assert_eq!(v.read(f::CR0_READ_SHADOW), 0x31);
        assert_eq!(v.read(f::GUEST_CR4), CR4_VMXE);
        assert_eq!(v.read(f::CR4_READ_SHADOW), 0);
        assert_eq!(v.read(f::GUEST_RFLAGS), 2);
        assert_eq!(v.read(f::GUEST_RIP), 0x10_0000);
        assert_eq!(v.read(f::GUEST_GDTR_LIMIT), 31);
        assert_eq!(v.read(f::VMCS_LINK_POINTER), u64::MAX);
        assert_eq!(v.read(f::GUEST_DR7), 0x400);
        assert_eq!(v.read(f::CR4_GUEST_HOST_MASK), 0xffc0_0000 | CR4_VMXE);
    }

    #[test]
    fn real_mode_guest_gets_ne_but_sees_its_cr0() {
        let mut v = FakeVmcs::default();
        load_initial_state(&mut v, &sipi_state(0x9a), &POLICY);
        assert_eq!(v.read(f::GUEST_CS_SELECTOR), 0x9a00);
        assert_eq!(v.read(f::GUEST_CS_BASE), 0x9_a000);
        assert_eq!(v.read(f::GUEST_RIP), 0);
        assert_eq!(v.read(f::GUEST_CR0), CR0_ET | CR0_NE);
        assert_eq!(v.read(f::CR0_READ_SHADOW), CR0_ET);
        assert_eq!(v.read(f::GUEST_DS_AR), 0x93);
    }

    #[test]
    fn long_mode_state_sets_lma() {
        let mut s = protected_mode();
        s.cr0 |= CR0_PG;
        s.cr4 = CR4_PAE;
        s.efer = EFER_LME;
        s.cs.access = 0xa09b;
        let mut v = FakeVmcs::default();
        assert_eq!(load_initial_state(&mut v, &s, &POLICY), EFER_LME | EFER_LMA);
        assert_eq!(v.read(f::GUEST_IA32_EFER), EFER_LME | EFER_LMA);
    }

    #[test]
    fn cr0_writes() {
        let pm = CR0_PE | CR0_ET;
        let u = POLICY.mov_to_cr0(pm, 0, 0).unwrap();
        assert_eq!(u.guest, pm | CR0_NE);
        assert_eq!(u.shadow, pm);
        // Paging without protection, NW without CD, upper bits: #GP.
        assert_eq!(POLICY.mov_to_cr0(CR0_PG, 0, 0), Err(GeneralProtection));
        assert_eq!(POLICY.mov_to_cr0(pm | CR0_NW, 0, 0), Err(GeneralProtection));
        assert_eq!(
            POLICY.mov_to_cr0(1 << 32 | pm, 0, 0),
            Err(GeneralProtection)
        );
        // Enabling paging with LME enters long mode; it needs PAE.
        assert_eq!(
            POLICY.mov_to_cr0(pm | CR0_PG, 0, EFER_LME),
            Err(GeneralProtection)
        );
        let u = POLICY.mov_to_cr0(pm | CR0_PG, CR4_PAE, EFER_LME).unwrap();
        assert_eq!(u.efer, EFER_LME | EFER_LMA);
        let u = POLICY.mov_to_cr0(pm, CR4_PAE, EFER_LME | EFER_LMA).unwrap();
        assert_eq!(u.efer, EFER_LME);
    }

    #[test]
    fn cr4_writes() {
        assert_eq!(POLICY.mov_to_cr4(CR4_VMXE, 0), Err(GeneralProtection));
        assert_eq!(POLICY.mov_to_cr4(1 << 23, 0), Err(GeneralProtection));
        assert_eq!(POLICY.mov_to_cr4(0, EFER_LMA), Err(GeneralProtection));
        let u = POLICY.mov_to_cr4(CR4_PAE, 0).unwrap();
        assert_eq!(u.guest, CR4_PAE | CR4_VMXE);
        assert_eq!(u.shadow, CR4_PAE);
    }
}
