//! Board files through the configurator with the project's QEMU scenario: the board reader,
//! then semantic checks, allocation and generation. What must hold: no panic, and a board the
//! checks accept with an allocation always generates tables.
#![no_main]

use std::path::Path;

use acrn_configurator::board::board_from_document;
use acrn_configurator::xml::parse_str;
use acrn_fuzz::{check_and_generate, check_spans, fixed_scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse_str(Path::new("b.xml"), text) else {
        return;
    };
    check_spans(&doc);
    if let Ok(board) = board_from_document(&doc) {
        check_and_generate(&board, fixed_scenario());
    }
});
