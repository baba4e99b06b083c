//! The hypervisor's readers of the host's ACPI tables (`vm::acpi`: the RSDP search, MADT,
//! DMAR units and IOAPIC scopes, IVRS IOMMUs, IOAPIC and alias entries, the FADT's PM timer and reset
//! register, `\_S5`) over a model of physical memory that holds the input at address 0, where
//! the RSDP is looked for. What must hold: no panic for any table contents, lengths or
//! pointers (the firmware is not ours), and every count within its table's capacity.
#![no_main]

use acrn_hypervisor::bootinfo::PhysRead;
use acrn_hypervisor::vm::acpi::{
    dmar_ioapics, dmar_units, find_rsdp, ivrs_alias, ivrs_ioapics, ivrs_units, madt_apic_ids,
    pm_timer, reset_register, soft_off, AmdIommu, MAX_CPUS, MAX_DRHDS, MAX_IVRS_IOAPICS,
};
use libfuzzer_sys::fuzz_target;

/// Physical memory: the input bytes at address 0, nothing elsewhere.
struct Memory<'a>(&'a [u8]);

impl PhysRead for Memory<'_> {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        let Some(src) = usize::try_from(pa)
            .ok()
            .and_then(|o| self.0.get(o..o.checked_add(buf.len())?))
        else {
            return false;
        };
        buf.copy_from_slice(src);
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let m = Memory(data);
    // The RSDP at 0 as the hypervisor is handed it, and wherever the search finds one.
    for rsdp in [Some(0), find_rsdp(&m)].into_iter().flatten() {
        let mut ids = [0u32; MAX_CPUS];
        assert!(madt_apic_ids(&m, rsdp, &mut ids).is_none_or(|n| n <= MAX_CPUS));
        let mut units = [0u64; MAX_DRHDS];
        assert!(dmar_units(&m, rsdp, &mut units).is_none_or(|n| n <= MAX_DRHDS));
        let mut iommus = [AmdIommu::default(); MAX_DRHDS];
        assert!(ivrs_units(&m, rsdp, &mut iommus).is_none_or(|n| n <= MAX_DRHDS));
        let mut sources = [(0, 0); MAX_IVRS_IOAPICS];
        assert!(dmar_ioapics(&m, rsdp, &mut sources).is_none_or(|n| n <= MAX_IVRS_IOAPICS));
        assert!(ivrs_ioapics(&m, rsdp, &mut sources).is_none_or(|n| n <= MAX_IVRS_IOAPICS));
        // A device the input names (its last two bytes), and the first device ID.
        let device = match data {
            [.., a, b] => u16::from_le_bytes([*a, *b]),
            _ => 0,
        };
        let _ = ivrs_alias(&m, rsdp, device);
        let _ = ivrs_alias(&m, rsdp, 0);
        let _ = pm_timer(&m, rsdp);
        let _ = reset_register(&m, rsdp);
        let _ = soft_off(&m, rsdp);
    }
});
