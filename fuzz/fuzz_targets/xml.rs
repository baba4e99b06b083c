//! The configurator's XML reader on any text, then the board and scenario readers on whatever
//! it parses. What must hold: no panic, and every element and attribute span inside the source,
//! on character boundaries and on the right line (findings point there). The scenario target
//! takes accepted scenarios further (defaults, writers, checks, generation).
#![no_main]

use std::path::Path;

use acrn_configurator::board::board_from_document;
use acrn_configurator::scenario::read_document;
use acrn_configurator::xml::parse_str;
use acrn_fuzz::check_spans;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(doc) = parse_str(Path::new("f.xml"), &text) else {
        return;
    };
    check_spans(&doc);
    let _ = board_from_document(&doc);
    let _ = read_document(&doc);
});
