//! Turning VMX on, once per pCPU: feature control, fixed CR bits, VMXON region.

use super::caps::{
    msr, Controls, FeatureControl, PrimaryControls, RawCaps, SecondaryControls, VmxBasic, VmxError,
};
use super::guest::CrPolicy;
use super::instr;
use crate::arch::x86::cpu::{this_cpu, CpuCell, MAX_PCPUS};
use crate::arch::x86::{cpuid, rdmsr, read_cr0, read_cr4, wrmsr, Leaf1Ecx};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4};

/// A 4 KiB-aligned page (VMXON region, VMCS, bitmaps). The hypervisor is identity-mapped, so
/// its address is its physical address.
#[repr(C, align(4096))]
pub struct Page(pub [u8; 4096]);

impl Page {
    pub fn pa(&self) -> u64 {
        self as *const Page as u64
    }
    /// Writes the VMCS revision identifier into the first 31 bits (bit 31 clear: not shadow).
    pub fn stamp(&mut self, revision: u32) {
        self.0.fill(0);
        self.0[..4].copy_from_slice(&(revision & 0x7fff_ffff).to_le_bytes());
    }
}

/// What VMX looks like on this pCPU, recorded by [`enable_on_this_cpu`].
#[derive(Debug, Clone, Copy)]
pub struct CpuVmx {
    pub caps: RawCaps,
    pub controls: Controls,
    pub policy: CrPolicy,
}

static VMXON_REGIONS: [CpuCell<Page>; MAX_PCPUS] =
    [const { CpuCell::new(Page([0; 4096])) }; MAX_PCPUS];
static STATE: [CpuCell<Option<CpuVmx>>; MAX_PCPUS] = [const { CpuCell::new(None) }; MAX_PCPUS];

/// CPUID.1:ECX.VMX (bit 5).
pub fn is_supported() -> bool {
    Leaf1Ecx::from_bits_retain(cpuid(1, 0)[2]).contains(Leaf1Ecx::VMX)
}

fn read_caps() -> RawCaps {
    let basic = rdmsr(msr::IA32_VMX_BASIC);
    let true_ctls = VmxBasic::from_bits_retain(basic).contains(VmxBasic::TRUE_CONTROLS);
    let pick = |plain, tru| rdmsr(if true_ctls { tru } else { plain });
    let proc1 = pick(
        msr::IA32_VMX_PROCBASED_CTLS,
        msr::IA32_VMX_TRUE_PROCBASED_CTLS,
    );
    // The secondary controls MSR exists only if "activate secondary controls" may be 1.
    let proc1_allowed = PrimaryControls::from_bits_retain((proc1 >> 32) as u32);
    let proc2 = if proc1_allowed.contains(PrimaryControls::ACTIVATE_SECONDARY) {
        rdmsr(msr::IA32_VMX_PROCBASED_CTLS2)
    } else {
        0
    };
    let proc2_allowed = SecondaryControls::from_bits_retain((proc2 >> 32) as u32);
    let ept_vpid = if proc2_allowed
        .intersects(SecondaryControls::ENABLE_EPT | SecondaryControls::ENABLE_VPID)
    {
        rdmsr(msr::IA32_VMX_EPT_VPID_CAP)
    } else {
        0
    };
    RawCaps {
        basic,
        pin: pick(
            msr::IA32_VMX_PINBASED_CTLS,
            msr::IA32_VMX_TRUE_PINBASED_CTLS,
        ),
        proc1,
        proc2,
        exit: pick(msr::IA32_VMX_EXIT_CTLS, msr::IA32_VMX_TRUE_EXIT_CTLS),
        entry: pick(msr::IA32_VMX_ENTRY_CTLS, msr::IA32_VMX_TRUE_ENTRY_CTLS),
        cr0_fixed0: rdmsr(msr::IA32_VMX_CR0_FIXED0),
        cr0_fixed1: rdmsr(msr::IA32_VMX_CR0_FIXED1),
        cr4_fixed0: rdmsr(msr::IA32_VMX_CR4_FIXED0),
        cr4_fixed1: rdmsr(msr::IA32_VMX_CR4_FIXED1),
        ept_vpid,
        misc: rdmsr(msr::IA32_VMX_MISC),
    }
}

/// Enters VMX root operation on the calling pCPU (idempotent). Must run on each pCPU that will
/// run VMX vCPUs, after `cpu::init_this_cpu`.
pub fn enable_on_this_cpu() -> Result<CpuVmx, VmxError> {
    let id = this_cpu();
    if id >= MAX_PCPUS {
        return Err(VmxError::CpuIndexOutOfRange);
    }
    if let Some(state) = current() {
        return Ok(state);
    }
    if !is_supported() {
        return Err(VmxError::NotSupported);
    }
    let fc = FeatureControl::from_bits_retain(rdmsr(msr::IA32_FEATURE_CONTROL));
    if !fc.contains(FeatureControl::LOCK) {
        let enabled = fc | FeatureControl::LOCK | FeatureControl::VMX_OUTSIDE_SMX;
        wrmsr(msr::IA32_FEATURE_CONTROL, enabled.bits());
    } else if !fc.contains(FeatureControl::VMX_OUTSIDE_SMX) {
        return Err(VmxError::DisabledByFirmware);
    }
    let caps = read_caps();
    let controls = caps.controls()?;
    let (cr0_one, cr0_zero) = caps.cr0_forced();
    let (cr4_one, cr4_zero) = caps.cr4_forced();
    // CD/NW come from reset (GRUB leaves them set) and survive VM entry and exit untouched,
    // so a guest would run uncached too: enable caching while forcing the VMX bits.
    let cd_nw = (Cr0Flags::CACHE_DISABLE | Cr0Flags::NOT_WRITE_THROUGH).bits();
    let cr0 = (read_cr0() & !cd_nw) | caps.cr0_fixed0;
    let cr4 = read_cr4() | caps.cr4_fixed0;
    if cr0 & !caps.cr0_fixed1 != 0 || cr4 & !caps.cr4_fixed1 != 0 {
        return Err(VmxError::FixedBits);
    }
    // SAFETY: only bits VMX requires are added (NE, VMXE) and caching is enabled; paging and
    // protection stay as the boot path set them.
    unsafe {
        Cr0::write_raw(cr0);
        Cr4::write_raw(cr4);
    }
    // SAFETY: slot `id` belongs to this CPU.
    let region = unsafe { &mut *VMXON_REGIONS[id].get() };
    region.stamp(caps.revision_id());
    // SAFETY: the region is stamped and aligned, the fixed bits and feature control are set.
    unsafe { instr::vmxon(region.pa()) }.map_err(|_| VmxError::VmxonFailed)?;
    let state = CpuVmx {
        caps,
        controls,
        policy: CrPolicy {
            cr0_one,
            cr0_zero,
            cr4_one,
            cr4_zero,
        },
    };
    // SAFETY: as above.
    unsafe { *STATE[id].get() = Some(state) };
    Ok(state)
}

/// The VMX state of the calling pCPU, if [`enable_on_this_cpu`] succeeded on it.
pub fn current() -> Option<CpuVmx> {
    let id = this_cpu();
    // SAFETY: slot `id` belongs to this CPU.
    STATE.get(id).and_then(|s| unsafe { *s.get() })
}
