//! Property tests: `inspect`'s byte parsers (ACPI tables, SMBIOS, PCI configuration space, the
//! procfs/sysfs text parsers) never panic, on random bytes and on mutations of well-formed
//! tables (bit flips, truncation, bogus length fields): 20,000 cases per property.

use acrn_configurator::inspect::{acpi, pci, smbios, text};
use proptest::prelude::*;

fn table(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
    let mut t = sig.to_vec();
    t.extend(((36 + body.len()) as u32).to_le_bytes());
    t.push(rev);
    t.resize(36, 0);
    t.extend(body);
    t
}

/// Well-formed seeds: MADT, MCFG, FADT, DMAR, IVRS, HPET, a DSDT fragment, an SMBIOS table.
fn seeds() -> Vec<Vec<u8>> {
    let mut madt = vec![0, 0, 0xe0, 0xfe, 1, 0, 0, 0];
    madt.extend([
        0, 8, 0, 0, 1, 0, 0, 0, 1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0,
    ]);
    madt.extend([
        2, 10, 0, 0, 2, 0, 0, 0, 0, 0, 9, 16, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0,
    ]);
    let mut mcfg = vec![0; 8];
    mcfg.extend(0xb000_0000u64.to_le_bytes());
    mcfg.extend([0, 0, 0, 0xff, 0, 0, 0, 0]);
    let mut fadt = vec![0u8; 240];
    fadt[20..24].copy_from_slice(&0x600u32.to_le_bytes());
    fadt[52] = 4;
    let mut dmar = vec![38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    dmar.extend([0, 0, 32, 0, 1, 0, 0, 0]);
    dmar.extend(0xfed9_0000u64.to_le_bytes());
    dmar.extend([3, 8, 0, 0, 0, 0xff, 0, 0, 1, 8, 0, 0, 0, 0, 2, 0]);
    let mut ivrs = vec![0; 12];
    ivrs.extend([0x10, 0, 24, 0, 2, 0, 0x40, 0]);
    ivrs.extend(0xfeb8_0000u64.to_le_bytes());
    ivrs.extend([0; 8]);
    let mut hpet = vec![0; 4];
    hpet.extend([0, 64, 0, 0]);
    hpet.extend(0xfed0_0000u64.to_le_bytes());
    hpet.extend([0; 8]);
    let dsdt = table(
        b"DSDT",
        2,
        &[
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x07, 0x00, 0x00, 0x00,
        ],
    );
    let mut dmi = vec![0, 0x18, 0, 0, 1, 2, 0, 0xe8, 3, 0];
    dmi.resize(0x18, 0);
    dmi.extend(b"SeaBIOS\0v\0d\0\0");
    dmi.extend([2, 8, 1, 0, 1, 2, 3, 0]);
    dmi.extend(b"A\0B\0C\0\0");
    dmi.extend([127, 4, 2, 0, 0, 0]);
    let mut config = vec![0u8; 256];
    config[6] = 0x10;
    config[0x34] = 0x40;
    config[0x40] = 0x05;
    config[0x41] = 0x50;
    config[0x50] = 0x11;
    config[0x51] = 0x60;
    config[0x60] = 0x10;
    vec![
        table(b"APIC", 5, &madt),
        table(b"MCFG", 1, &mcfg),
        table(b"FACP", 6, &fadt),
        table(b"DMAR", 1, &dmar),
        table(b"IVRS", 2, &ivrs),
        table(b"HPET", 1, &hpet),
        dsdt,
        dmi,
        config,
    ]
}

/// Every parser on the same bytes; a panic fails the property.
fn exercise(b: &[u8]) {
    let _ = acpi::parse_madt(b);
    let _ = acpi::parse_mcfg(b);
    let _ = acpi::parse_fadt(b);
    let _ = acpi::check_facs(b);
    let _ = acpi::parse_dmar(b);
    let _ = acpi::parse_ivrs(b);
    let _ = acpi::parse_hpet(b);
    let _ = acpi::find_sleep_package(b, 3);
    let _ = acpi::find_sleep_package(b, 5);
    if let Ok(s) = smbios::parse_structures(b) {
        let _ = smbios::bios_info(&s);
        let _ = smbios::base_board_info(&s);
    }
    for c in pci::parse_capabilities(b) {
        let _ = c.name();
    }
    let _ = text::ext_type(b);
    let s = String::from_utf8_lossy(b);
    let _ = pci::parse_resource(&s);
    let _ = text::parse_cpu_list(&s);
    let _ = text::parse_resource_tree(&s);
    let _ = text::used_irqs(&s);
    let _ = text::ioapic_gsi_ranges(&s);
    let _ = text::input_devices(&s);
    let _ = text::mem_total_kb(&s);
}

/// A seed with the table's signature and length kept plausible, so parsers go deep.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..seeds().len(),
        prop::collection::vec((any::<u16>(), any::<u8>()), 0..12),
        any::<u16>(),
        any::<Option<u32>>(),
    )
        .prop_map(|(i, flips, cut, len)| {
            let mut t = seeds()[i].clone();
            for (pos, x) in flips {
                if !t.is_empty() {
                    let p = usize::from(pos) % t.len();
                    t[p] ^= x;
                }
            }
            if let Some(l) = len {
                if t.len() >= 8 && i < 7 {
                    t[4..8].copy_from_slice(&(l % 512).to_le_bytes());
                }
            }
            let keep = usize::from(cut) % (t.len() + 40);
            t.truncate(keep);
            t
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn parsers_survive_random_bytes(b in prop::collection::vec(any::<u8>(), 0..600)) {
        exercise(&b);
    }

    #[test]
    fn parsers_survive_mutated_tables(b in mutated()) {
        exercise(&b);
    }

    #[test]
    fn parsers_survive_random_headers(
        sig in prop::sample::select(vec![*b"APIC", *b"MCFG", *b"FACP", *b"DMAR", *b"IVRS", *b"HPET"]),
        len in 0u32..400,
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut t = sig.to_vec();
        t.extend(len.to_le_bytes());
        t.extend(body);
        exercise(&t);
    }
}
