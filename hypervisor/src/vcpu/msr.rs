//! MSRs a guest reads or writes that exit and are not its local APIC's: a small set with
//! fixed answers; anything else is #GP, as on a CPU without it.

/// IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC range belong to the vCPU's local APIC.
pub fn is_lapic(msr: u32) -> bool {
    matches!(msr, 0x1B | 0x6E0 | 0x800..=0x8FF)
}

pub fn read(_idx: usize, msr: u32) -> Option<u64> {
    Some(match msr {
        // SAFETY: rdtsc has no side effects.
        0x10 => unsafe { core::arch::x86_64::_rdtsc() },
        0xFE => 0,         // MTRRcap: no variable ranges
        0x2FF => 0xC06,    // MTRRdefType: enabled, write-back
        0x8B | 0x1A0 => 0, // microcode revision, MISC_ENABLE
        // AMD NB_CFG: Linux reads it unguarded (to enable extended PCI config access).
        0xC001_001F => 0,
        _ => return None,
    })
}

pub fn write_ok(msr: u32, _value: u64) -> bool {
    // Ignored: TSC writes, microcode, MTRRs, NB_CFG.
    matches!(msr, 0x10 | 0x8B | 0x2FF | 0x200..=0x27F | 0xC001_001F)
}
