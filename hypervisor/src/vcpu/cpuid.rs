//! CPUID as a guest sees it: the host's, minus what the hypervisor does not give guests
//! (VMX/SVM, MONITOR, machine checks), plus ACRN's hypervisor leaves. The local APIC is
//! virtual, so x2APIC and the TSC-deadline timer are offered whatever the host has.

use crate::arch::x86::{cpuid, ExtLeaf1Ecx, Leaf1Ecx, Leaf1Edx};
use acrn_abi::cpuid::{
    ACRN_CPUID_MAX_LEAF, ACRN_CPUID_SIGNATURE, ACRN_CPUID_TIMING_INFO, ACRN_SIGNATURE_REG,
};

/// MCE and MCA, in leaves 1 and 0x80000001.
const MACHINE_CHECK: Leaf1Edx = Leaf1Edx::MCE.union(Leaf1Edx::MCA);

/// What of the vCPU CPUID depends on.
pub struct Asker {
    /// vCPUs of its VM.
    pub ncpu: u32,
    /// The Service VM.
    pub privileged: bool,
    pub idx: usize,
    /// Its CR4.OSXSAVE, which leaf 1 reports as OSXSAVE (the host's own CR4 does not count).
    pub osxsave: bool,
}

/// CPUID leaf `leaf`/`sub` as vCPU `who` sees it.
pub fn emulate(who: &Asker, leaf: u32, sub: u32) -> [u32; 4] {
    let Asker {
        ncpu,
        privileged,
        idx,
        osxsave,
    } = *who;
    match leaf {
        // ACRN's hypervisor leaves: signature "ACRNACRNACRN", max leaf 0x40000010.
        ACRN_CPUID_SIGNATURE => [
            ACRN_CPUID_MAX_LEAF,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
        ],
        // Guest capabilities: only the Service VM is privileged.
        0x4000_0001 => [
            if privileged {
                acrn_abi::cpuid::AcrnCpuidFeatures::PRIVILEGED_VM.bits()
            } else {
                0
            },
            0,
            0,
            0,
        ],
        // ACRN_CPUID_TIMING_INFO: the TSC frequency in kHz (guests run on the host TSC).
        ACRN_CPUID_TIMING_INFO => [crate::tsc::khz(), 0, 0, 0],
        0x4000_0002..=0x4000_00FF => [0; 4],
        _ => {
            let mut r = cpuid(leaf, sub);
            match leaf {
                1 => {
                    r[1] = (r[1] & 0x0000_FFFF) | (ncpu << 16) | ((idx as u32) << 24);
                    let ecx = (Leaf1Ecx::from_bits_retain(r[2])
                        - (Leaf1Ecx::VMX | Leaf1Ecx::MONITOR | Leaf1Ecx::OSXSAVE))
                        | Leaf1Ecx::X2APIC
                        | Leaf1Ecx::TSC_DEADLINE
                        | Leaf1Ecx::HYPERVISOR;
                    let ecx = if osxsave && ecx.contains(Leaf1Ecx::XSAVE) {
                        ecx | Leaf1Ecx::OSXSAVE
                    } else {
                        ecx
                    };
                    r[2] = ecx.bits();
                    // Machine check MSRs are not virtualized.
                    r[3] = (Leaf1Edx::from_bits_retain(r[3]) - MACHINE_CHECK).bits();
                }
                0xB | 0x1F => r[3] = idx as u32,
                0x8000_0001 => {
                    r[2] = (ExtLeaf1Ecx::from_bits_retain(r[2]) - ExtLeaf1Ecx::SVM).bits();
                    // AMD mirrors MCE/MCA here.
                    r[3] = (Leaf1Edx::from_bits_retain(r[3]) - MACHINE_CHECK).bits();
                }
                0x8000_000A => r = [0; 4],
                _ => {}
            }
            r
        }
    }
}
