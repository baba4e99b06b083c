//! The ACPI table parsers of the board inspector (`inspect::acpi`: MADT, MCFG, FADT, FACS,
//! DMAR, IVRS, HPET, and the `_Sx_` package search in AML) over raw bytes. The first byte
//! picks the parser; the signature is written over the input so every input reaches the
//! length and structure checks. What must hold: nothing panics (the inspector reads these
//! from a machine we do not control), and every count is bounded by what the bytes can hold.
#![no_main]

use acrn_configurator::inspect::acpi::{
    check_facs, find_sleep_package, parse_dmar, parse_fadt, parse_hpet, parse_ivrs, parse_madt,
    parse_mcfg,
};
use libfuzzer_sys::fuzz_target;

/// The smallest MADT sub-structure (type, length) the walker accepts.
const MADT_MIN_STRUCTURE: usize = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut table = rest.to_vec();
    let signature: &[u8; 4] = match which % 8 {
        0 => b"APIC",
        1 => b"MCFG",
        2 => b"FACP",
        3 => b"FACS",
        4 => b"DMAR",
        5 => b"IVRS",
        6 => b"HPET",
        _ => {
            let state = table.first().copied().unwrap_or(5) % 10;
            if find_sleep_package(&table, state).is_some() {
                let name = [b'_', b'S', b'0' + state, b'_'];
                assert!(
                    table.windows(4).any(|w| w == name),
                    "_S{state}_ found in bytes without it"
                );
            }
            return;
        }
    };
    if table.len() >= 4 {
        table[..4].copy_from_slice(signature);
    }
    let len = table.len();
    match which % 8 {
        0 => {
            if let Ok(m) = parse_madt(&table) {
                let entries = m.lapics.len() + m.ioapics.len() + m.overrides.len();
                assert!(
                    entries <= (len - 44) / MADT_MIN_STRUCTURE,
                    "MADT: {entries} in {len} bytes"
                );
            }
        }
        1 => {
            if let Ok(entries) = parse_mcfg(&table) {
                assert!(
                    entries.len() <= (len - 44) / 16,
                    "MCFG: {} in {len} bytes",
                    entries.len()
                );
            }
        }
        2 => {
            let _ = parse_fadt(&table);
        }
        3 => {
            let _ = check_facs(&table);
        }
        4 => {
            if let Ok(d) = parse_dmar(&table) {
                assert!(
                    d.drhds.len() <= (len - 48) / 4,
                    "DMAR: {} units in {len} bytes",
                    d.drhds.len()
                );
                let scopes: usize = d.drhds.iter().map(|u| u.scopes.len()).sum();
                let path: usize = d
                    .drhds
                    .iter()
                    .flat_map(|u| &u.scopes)
                    .map(|s| s.path.len())
                    .sum();
                assert!(
                    scopes <= len / 4 && path <= len / 2,
                    "DMAR: {scopes} scopes, {path} path entries"
                );
            }
        }
        5 => {
            if let Ok(units) = parse_ivrs(&table) {
                assert!(
                    units.len() <= (len - 48) / 24,
                    "IVRS: {} in {len} bytes",
                    units.len()
                );
            }
        }
        _ => {
            let _ = parse_hpet(&table);
        }
    }
});
