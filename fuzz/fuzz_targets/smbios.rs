//! The SMBIOS structure-table parser of the board inspector (`inspect::smbios`) over raw
//! bytes, with the BIOS and base-board summaries built from its output. What must hold:
//! nothing panics; every structure has at least its 4-byte header and lies within the table;
//! the structures and their strings together never hold more bytes than the table.
#![no_main]

use acrn_configurator::inspect::smbios::{base_board_info, bios_info, parse_structures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|table: &[u8]| {
    let Ok(structures) = parse_structures(table) else {
        return;
    };
    assert!(
        structures.len() <= table.len() / 4,
        "{} structures in {} bytes",
        structures.len(),
        table.len()
    );
    let mut bytes = 0;
    for s in &structures {
        assert!(s.formatted.len() >= 4, "structure shorter than its header");
        assert_eq!(s.formatted[0], s.kind);
        // A string takes its bytes plus a NUL in the table (lossy UTF-8 may grow it).
        bytes += s.formatted.len() + s.strings.len();
        for offset in 0..s.formatted.len() {
            let _ = s.string_at(offset);
        }
    }
    assert!(
        bytes <= table.len(),
        "{bytes} bytes parsed out of {}",
        table.len()
    );
    let _ = bios_info(&structures);
    let _ = base_board_info(&structures);
});
