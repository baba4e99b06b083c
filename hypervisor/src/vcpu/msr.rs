//! MSRs a guest reads or writes that exit and are not its local APIC's: a small set with
//! fixed answers; anything else is #GP, as on a CPU without it.

/// IA32_APIC_BASE, IA32_TSC_DEADLINE and the x2APIC range belong to the vCPU's local APIC.
pub fn is_lapic(msr: u32) -> bool {
    matches!(msr, 0x1B | 0x6E0 | 0x800..=0x8FF)
}

pub fn read(_idx: usize, msr: u32) -> Option<u64> {
    Some(match msr {
        0x10 => crate::tsc::now(),
        0xFE => 0,         // MTRRcap: no variable ranges
        0x2FF => 0xC06,    // MTRRdefType: enabled, write-back
        0x8B | 0x1A0 => 0, // microcode revision, MISC_ENABLE
        // AMD NB_CFG: Linux reads it unguarded (to enable extended PCI config access).
        0xC001_001F => 0,
        // IA32_XSS: CPUID offers no supervisor state component.
        IA32_XSS => 0,
        _ => return None,
    })
}

const IA32_XSS: u32 = 0xDA0;

pub fn write_ok(msr: u32, value: u64) -> bool {
    // Ignored: TSC writes, microcode, MTRRs, NB_CFG; IA32_XSS only as it is (Linux writes 0
    // when the CPU has XSAVES).
    matches!(msr, 0x10 | 0x8B | 0x2FF | 0x200..=0x27F | 0xC001_001F)
        || (msr == IA32_XSS && value == 0)
}

/// The MSRs of a vCPU that owns its pCPU's local APIC (`lapic_passthrough`), as ACRN sets its
/// MSR bitmap: the x2APIC registers 0x800-0x83F and IA32_TSC_DEADLINE go to the hardware,
/// except reads of the APIC ID and LDR (the guest sees its virtual ones) and writes of the
/// ICR (filtered to the VM's own pCPUs).
pub mod lapic_pt {
    pub const X2APIC_PASSED: core::ops::RangeInclusive<u32> = 0x800..=0x83F;
    pub const MSR_X2APIC_ID: u32 = 0x802;
    pub const MSR_X2APIC_LDR: u32 = 0x80D;
    pub const MSR_X2APIC_ICR: u32 = 0x830;
    pub const MSR_TSC_DEADLINE: u32 = 0x6E0;

    const DEST_LOGICAL: u32 = 1 << 11;
    const SHORTHAND: u32 = 3 << 18;

    /// What a guest's x2APIC ICR write asks for, once checked as ACRN does.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PtIpi {
        /// A fixed (or lowest-priority) interrupt or an NMI for vCPU `vcpu`: the hypervisor
        /// writes `low` to the ICR with the physical x2APIC ID of that vCPU's pCPU.
        Physical { vcpu: usize, low: u32 },
        /// INIT or SIPI for vCPU `vcpu`: emulated, as every vCPU start is.
        Virtual { vcpu: usize },
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PtIcrError {
        /// Logical destinations and shorthands are not supported (ACRN answers #GP too).
        LogicalOrShorthand,
        /// The destination is no vCPU of the VM.
        NoSuchVcpu(u32),
        /// SMI, ExtINT and reserved delivery modes are refused.
        DeliveryMode(u32),
    }

    /// Checks the ICR value `icr` a vCPU of a VM with `vcpus` vCPUs writes: physical
    /// destination mode without shorthand, to a virtual APIC ID (= vCPU index) of its VM.
    pub fn decode_icr(icr: u64, vcpus: usize) -> Result<PtIpi, PtIcrError> {
        let low = icr as u32;
        let dest = (icr >> 32) as u32;
        if low & (DEST_LOGICAL | SHORTHAND) != 0 {
            return Err(PtIcrError::LogicalOrShorthand);
        }
        let vcpu = dest as usize;
        if vcpu >= vcpus {
            return Err(PtIcrError::NoSuchVcpu(dest));
        }
        match (low >> 8) & 7 {
            0 | 1 | 4 => Ok(PtIpi::Physical { vcpu, low }),
            5 | 6 => Ok(PtIpi::Virtual { vcpu }),
            mode => Err(PtIcrError::DeliveryMode(mode)),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_physical_destinations_inside_the_vm() {
            assert_eq!(
                decode_icr(1 << 32 | 0xC1, 2),
                Ok(PtIpi::Physical { vcpu: 1, low: 0xC1 })
            );
            assert_eq!(
                decode_icr(0x4400, 2),
                Ok(PtIpi::Physical {
                    vcpu: 0,
                    low: 0x4400
                })
            );
            assert_eq!(
                decode_icr(1 << 32 | 0x4500, 2),
                Ok(PtIpi::Virtual { vcpu: 1 })
            );
            assert_eq!(decode_icr(0x4620, 2), Ok(PtIpi::Virtual { vcpu: 0 }));
            assert_eq!(
                decode_icr(2 << 32 | 0xC1, 2),
                Err(PtIcrError::NoSuchVcpu(2))
            );
            assert_eq!(
                decode_icr(0xFFFF_FFFF << 32 | 0x4400, 2),
                Err(PtIcrError::NoSuchVcpu(0xFFFF_FFFF))
            );
            // All-excluding-self, all-including-self, self, logical.
            for low in [
                3 << 18 | 0xC1,
                2 << 18 | 0x4400,
                1 << 18 | 0xC1,
                1 << 11 | 0xC1,
            ] {
                assert_eq!(decode_icr(low, 2), Err(PtIcrError::LogicalOrShorthand));
            }
            assert_eq!(decode_icr(0x200, 2), Err(PtIcrError::DeliveryMode(2)));
            assert_eq!(decode_icr(0x700, 2), Err(PtIcrError::DeliveryMode(7)));
        }
    }
}
