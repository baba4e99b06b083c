//! Intel VMX backend: VMCS encodings, capability handling, guest-state rules and exit decoding
//! are pure and unit-tested on the host; VMXON, the VMCS and the entry stub exist only on the
//! target (`target_os = "none"`).
//!
//! Use: `is_supported()` picks the backend at boot, `enable_on_this_cpu()` runs once per pCPU,
//! then `VmxVcpu::new(eptp(pml4), vpid)` on the pCPU that will run the vCPU.

pub mod bitmaps;
pub mod caps;
pub mod exit;
pub mod fields;
pub mod guest;

#[cfg(target_os = "none")]
mod enable;
#[cfg(target_os = "none")]
pub mod instr;
#[cfg(target_os = "none")]
mod vcpu;

pub use caps::VmxError;
#[cfg(target_os = "none")]
pub use enable::{current, enable_on_this_cpu, is_supported, CpuVmx};
#[cfg(target_os = "none")]
pub use vcpu::VmxVcpu;

/// EPT pointer for a 4-level EPT rooted at `pml4_pa`: write-back paging structures, no
/// accessed/dirty flags. (The entries themselves are `paging::Ept`.)
pub const fn eptp(pml4_pa: u64) -> u64 {
    (pml4_pa & 0x000f_ffff_ffff_f000) | (3 << 3) | 6
}

#[cfg(test)]
mod tests {
    #[test]
    fn eptp_layout() {
        // Memory type WB (6) in bits 2:0, walk length - 1 (3) in bits 5:3.
        assert_eq!(super::eptp(0x12_3000), 0x12_301e);
        assert_eq!(super::eptp(0x12_3fff), 0x12_301e);
    }
}
