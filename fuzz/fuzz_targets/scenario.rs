//! Scenario files (XML or TOML) through the whole configurator against the project's QEMU
//! board: structure checks, defaults, both writers' round trips, semantic checks, allocation
//! and generation. What must hold: no panic anywhere, round trips equal, and a scenario that
//! passes the checks and allocates always generates tables naming all its VMs.
#![no_main]

use acrn_fuzz::{check_and_generate, fixed_board, read_scenario};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(s) = read_scenario(text) {
        check_and_generate(fixed_board(), &s);
    }
});
