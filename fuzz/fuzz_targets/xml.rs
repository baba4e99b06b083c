//! The configurator's XML reader on any text, then the board and scenario readers on whatever
//! it parses. What must hold: no panic, every span inside the source and on the right line,
//! and (for scenarios) population and both writers work and round-trip (see `read_scenario`).
#![no_main]

use std::path::Path;

use acrn_configurator::board::board_from_document;
use acrn_configurator::xml::parse_str;
use acrn_fuzz::{check_spans, read_scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = parse_str(Path::new("f.xml"), &text) else {
        return;
    };
    check_spans(&doc);
    let _ = board_from_document(&doc);
    read_scenario(&text);
});
