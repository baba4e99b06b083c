//! Hypervisor CPUID leaves a guest uses to detect ACRN.

use bitflags::bitflags;

/// Signature leaf: EAX = [`ACRN_CPUID_MAX_LEAF`], EBX/ECX/EDX = "ACRNACRNACRN".
pub const ACRN_CPUID_SIGNATURE: u32 = 0x4000_0000;
/// Feature leaf: EAX = [`AcrnCpuidFeatures`].
pub const ACRN_CPUID_FEATURES: u32 = 0x4000_0001;
/// Timing leaf: EAX = TSC frequency in kHz.
pub const ACRN_CPUID_TIMING_INFO: u32 = 0x4000_0010;
/// EAX of the signature leaf: the highest hypervisor leaf.
pub const ACRN_CPUID_MAX_LEAF: u32 = ACRN_CPUID_TIMING_INFO;
/// The vendor signature as EBX, ECX, EDX bytes.
pub const ACRN_SIGNATURE: &[u8; 12] = b"ACRNACRNACRN";
/// Each of EBX, ECX and EDX of the signature leaf ("ACRN" little-endian).
pub const ACRN_SIGNATURE_REG: u32 = 0x4e52_4341;

bitflags! {
    /// EAX of [`ACRN_CPUID_FEATURES`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct AcrnCpuidFeatures: u32 {
        /// `GUEST_CAPS_PRIVILEGE_VM` / `ACRN_FEATURE_PRIVILEGED_VM`: set only for the Service VM.
        const PRIVILEGED_VM = 1 << 0;
    }
}
