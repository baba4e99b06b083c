//! The catalogue of every check id the configurator reports, printed by
//! `acrn-configurator explain [ID]` and listed in configurator/README.md.
//!
//! Prefixes (each names one stage; an id is never reused for another rule):
//!
//! | prefix | stage | where |
//! |--------|-------|-------|
//! | `F001`.. | file level: unreadable, not XML/TOML, wrong kind of file | [`crate::scenario`], [`crate::board`] |
//! | `D001`   | board file content (a section the board inspector wrote is unusable) | [`crate::board`] |
//! | `S001`.. | scenario structure (elements, types, enumerations, ranges) | [`crate::scenario`] |
//! | `C01`..`C44` | ACRN's semantic checks (reference §4.4) | [`crate::checks`] |
//! | `B01`..`B08` | ACRN's build-time checks (reference §4.5) | [`crate::checks`] |
//! | `X01`..`X07` | our checks, stricter than ACRN | [`crate::checks`] |
//! | `A01`..`A14` | allocation and launch scripts (only problems validation cannot see) | [`crate::alloc`], [`crate::gen::launch_script`] |
//!
//! File and board ids have three digits and letters of their own so they cannot be confused
//! with the two-digit build-time (`B..`) and stricter (`X..`) checks.

use crate::diag::Severity;

/// One catalogued check: id, the severity it reports with, and its rule in one line.
pub type Entry = (&'static str, Severity, &'static str);

/// File-level problems (`F...`): later stages cannot run.
pub const FILE: &[Entry] = &[
    (
        "F001",
        Severity::Critical,
        "the file cannot be read (missing, unreadable, not UTF-8, over 16 MiB: at most that plus one byte is read, also from devices and FIFOs)",
    ),
    (
        "F002",
        Severity::Critical,
        "the file is not well-formed XML (or TOML for a .toml scenario)",
    ),
    (
        "F003",
        Severity::Critical,
        "wrong kind of file (a board given as scenario or the reverse, wrong root element)",
    ),
    (
        "F099",
        Severity::Critical,
        "internal error while building the model (a bug: please report it with the file)",
    ),
];

/// Board file content (`D...`).
pub const BOARD: &[Entry] = &[(
    "D001",
    Severity::Error,
    "a board section cannot be used (bad number, missing attribute, unparsable legacy text)",
)];

/// Scenario structure (`S...`), checked before the model is built.
pub const STRUCTURE: &[Entry] = &[
    ("S001", Severity::Error, "unknown element"),
    (
        "S002",
        Severity::Error,
        "missing required element (<hv>, a <vm>, a required child)",
    ),
    (
        "S003",
        Severity::Error,
        "element appears more often than allowed",
    ),
    (
        "S004",
        Severity::Error,
        "text where elements are expected, or elements where a value is",
    ),
    (
        "S005",
        Severity::Error,
        "value not in the enumeration (or not a power of two where one is required)",
    ),
    (
        "S006",
        Severity::Error,
        "value does not match the pattern (VM name, vBDF, serial console, region name, interface)",
    ),
    ("S007", Severity::Error, "number out of range"),
    ("S008", Severity::Error, "not a hexadecimal number"),
    ("S009", Severity::Error, "not an integer"),
    (
        "S010",
        Severity::Error,
        "element does not apply to the VM's load_order",
    ),
    ("S011", Severity::Error, "not y or n"),
    (
        "S012",
        Severity::Error,
        "<vm> id attribute missing or not a non-negative integer",
    ),
    ("S013", Severity::Error, "unknown attribute"),
    ("S014", Severity::Error, "unknown load_order value"),
    (
        "S020",
        Severity::Critical,
        "VM name used by more than one VM",
    ),
];

/// Allocation (`A...`): reported by `generate` after validation passed.
pub const ALLOC: &[Entry] = &[
    (
        "A01",
        Severity::Error,
        "the hypervisor's RAM for MAX_VM_NUM exceeds 1024 MiB",
    ),
    (
        "A02",
        Severity::Error,
        "HV_RAM_START unaligned or not in one RAM range, or no room for the hypervisor",
    ),
    (
        "A03",
        Severity::Error,
        "an hpa_region has size 0 or overlaps the hypervisor RAM the allocator placed",
    ),
    (
        "A04",
        Severity::Error,
        "a pre-launched VM's memory/size is 0 or does not fit in free RAM",
    ),
    (
        "A05",
        Severity::Error,
        "IVSHMEM region id not a number, or no free RAM for the region",
    ),
    (
        "A06",
        Severity::Error,
        "a VM has no pCPU, or a pCPU id above 63",
    ),
    (
        "A07",
        Severity::Error,
        "a virtual BDF cannot be used, or no free virtual PCI slot",
    ),
    (
        "A08",
        Severity::Error,
        "virtual BARs do not fit the VM's MMIO window",
    ),
    ("A09", Severity::Error, "no free IRQ for a legacy vUART"),
    (
        "A10",
        Severity::Error,
        "a pass-through device has no PCI details in the board file, or a vUART port above 0xFFFF",
    ),
    (
        "A11",
        Severity::Error,
        "pt_intx is not a list of (phys, virt) pairs",
    ),
    (
        "A12",
        Severity::Error,
        "SERIAL_CONSOLE is not a usable serial port of the board",
    ),
    ("A13", Severity::Error, "a VM id does not fit the tables"),
    (
        "A14",
        Severity::Error,
        "a post-launched VM's launch script cannot be derived (a virtio network without interface_name, a virtio console without the path its backend needs, no free PCI slot in 3..29)",
    ),
    (
        "A99",
        Severity::Critical,
        "internal error rendering the tables (a bug: please report it)",
    ),
];

/// Every catalogued id, in the order of the README table.
pub fn all() -> impl Iterator<Item = &'static Entry> {
    FILE.iter()
        .chain(BOARD)
        .chain(STRUCTURE)
        .chain(crate::checks::CATALOG)
        .chain(ALLOC)
}

/// The entry of `id` (case-insensitive).
pub fn lookup(id: &str) -> Option<&'static Entry> {
    all().find(|(i, _, _)| i.eq_ignore_ascii_case(id))
}

/// The catalogue as a Markdown table (the README's table is this text).
pub fn markdown() -> String {
    let mut s = String::from("| id | severity | rule |\n|----|----------|------|\n");
    for (id, sev, rule) in all() {
        s.push_str(&format!("| {id} | {sev} | {rule} |\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let ids: Vec<_> = all().map(|e| e.0).collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(!ids[i + 1..].contains(id), "{id} twice");
        }
    }

    #[test]
    fn every_id_the_code_reports_is_catalogued() {
        // Scan the sources for string literals that look like check ids.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        let mut seen = 0;
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                if name == "tests.rs" || name == "catalog.rs" || name == "diag.rs" {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                // Every segment between quotes (escaped quotes shift string/code parity, so all
                // segments are looked at; code between literals is never id-shaped).
                for part in text.split('"') {
                    let b = part.as_bytes();
                    let id_like = (3..=4).contains(&b.len())
                        && b[0].is_ascii_uppercase()
                        && b[1..].iter().all(u8::is_ascii_digit);
                    if id_like && "FDSCBXA".contains(char::from(b[0])) {
                        seen += 1;
                        assert!(
                            lookup(part).is_some(),
                            "{part} in {} is not catalogued",
                            p.display()
                        );
                    }
                }
            }
        }
        assert!(seen > 100, "the scan found only {seen} ids");
    }

    /// Every id a user's input can trigger is named by a test (the tests assert it fires on a
    /// broken input; the clean corpus and configs/ pairs are the non-trigger side for all).
    #[test]
    fn every_id_has_a_test() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut tests = String::new();
        for sub in ["tests", "src/scenario", "src/board"] {
            for e in std::fs::read_dir(dir.join(sub)).unwrap() {
                let p = e.unwrap().path();
                let n = p.file_name().unwrap().to_string_lossy().into_owned();
                if sub == "tests" && n.ends_with(".rs") || n == "tests.rs" {
                    tests.push_str(&std::fs::read_to_string(&p).unwrap());
                }
            }
        }
        // Internal errors: only a bug can raise them.
        let untestable = ["F099", "A99"];
        let missing: Vec<_> = all()
            .map(|e| e.0)
            .filter(|id| !untestable.contains(id) && !tests.contains(&format!("\"{id}\"")))
            .collect();
        assert!(missing.is_empty(), "no test names {missing:?}");
    }

    #[test]
    fn readme_lists_the_catalogue() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&markdown()),
            "configurator/README.md's check table is stale; paste `acrn-configurator explain --markdown`"
        );
    }
}
