//! CPUID: the instruction and the feature bits the hypervisor tests or hides (the `x86_64`
//! crate has no CPUID types). Unnamed bits are kept: guests see the host's.

use bitflags::bitflags;

bitflags! {
    /// CPUID.1:ECX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Leaf1Ecx: u32 {
        const MONITOR = 1 << 3;
        const VMX = 1 << 5;
        const SMX = 1 << 6;
        const EST = 1 << 7;
        const TM2 = 1 << 8;
        const SDBG = 1 << 11;
        const PDCM = 1 << 15;
        const X2APIC = 1 << 21;
        const TSC_DEADLINE = 1 << 24;
        const XSAVE = 1 << 26;
        const OSXSAVE = 1 << 27;
        const HYPERVISOR = 1 << 31;
        const _ = !0;
    }

    /// CPUID.1:EDX, mirrored in CPUID.0x80000001:EDX on AMD for these bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Leaf1Edx: u32 {
        const MCE = 1 << 7;
        const MCA = 1 << 14;
        const DS = 1 << 21;
        const ACPI = 1 << 22;
        const TM = 1 << 29;
        const PBE = 1 << 31;
        const _ = !0;
    }

    /// CPUID.0x80000001:ECX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExtLeaf1Ecx: u32 {
        const SVM = 1 << 2;
        const _ = !0;
    }

    /// CPUID.0x80000001:EDX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExtLeaf1Edx: u32 {
        const RDTSCP = 1 << 27;
        const _ = !0;
    }
}

pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}
