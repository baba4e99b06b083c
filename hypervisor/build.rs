//! Brings the static VM tables into the build and emits the linker script.
//!
//! With `ACRN_BOARD` and `ACRN_SCENARIO` set (absolute paths; `acrn-configurator build` sets
//! them), the configurator library generates the tables from those files; an invalid scenario
//! fails the build with the configurator's findings. Otherwise the tables come from the file
//! named by `ACRN_TABLES_RS` (a Rust source defining
//! `pub static PLATFORM: acrn_static_config::PlatformConfig` and `pub const HV_RAM_START: u64`).
//! The hypervisor is linked at `HV_RAM_START`, so its image lies inside the RAM the allocator
//! reserved for it and never overlaps the VMs' memory; the boot code checks at run time that
//! `HV_RAM_START == PLATFORM.hv.ram.start` and that the image fits in `PLATFORM.hv.ram`.
//! Host builds (unit tests of the pure logic) need no tables.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=ACRN_TABLES_RS");
    println!("cargo:rerun-if-env-changed=ACRN_BOARD");
    println!("cargo:rerun-if-env-changed=ACRN_SCENARIO");
    println!("cargo:rerun-if-changed=linker.ld.in");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let (tables, src) = match (env::var_os("ACRN_BOARD"), env::var_os("ACRN_SCENARIO")) {
        (Some(b), Some(s)) => generated_tables(&PathBuf::from(b), &PathBuf::from(s)),
        (None, None) => tables_file(),
        _ => fail("set both ACRN_BOARD and ACRN_SCENARIO (board and scenario files), or neither"),
    };
    let start = hv_ram_start(&src).unwrap_or_else(|| {
        fail(&format!(
            "{}: no `pub const HV_RAM_START: u64 = <number>;` (the link address)",
            tables.display()
        ))
    });
    if !start.is_multiple_of(0x20_0000) || !(0x10_0000..0xC000_0000).contains(&start) {
        fail(&format!(
            "HV_RAM_START {start:#x} must be 2 MiB aligned and between 1 MiB and 3 GiB"
        ));
    }
    fs::write(out.join("vm_tables.rs"), &src).expect("write vm_tables.rs");

    let script = fs::read_to_string("linker.ld.in").expect("read linker.ld.in");
    let script = script.replace("@HV_RAM_START@", &format!("{start:#x}"));
    let ld = out.join("linker.ld");
    fs::write(&ld, script).expect("write linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", ld.display());
}

/// Runs the configurator on the board and scenario: (the scenario's path, vm_tables.rs).
fn generated_tables(board: &Path, scenario: &Path) -> (PathBuf, String) {
    for p in [board, scenario] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let opts = acrn_configurator::gen::GenerateOptions::default();
    match acrn_configurator::gen::generate(board, scenario, &opts) {
        Ok(files) => match files.get(acrn_configurator::gen::VM_TABLES) {
            Some(src) => (scenario.to_path_buf(), src.to_string()),
            None => fail("the configurator generated no vm_tables.rs"),
        },
        Err(report) => {
            eprint!("{}", report.findings.render_human(false));
            fail(&format!(
                "invalid configuration (ACRN_BOARD={}, ACRN_SCENARIO={}): no VM tables generated",
                board.display(),
                scenario.display()
            ))
        }
    }
}

/// Reads the tables from the file ACRN_TABLES_RS names.
fn tables_file() -> (PathBuf, String) {
    let Some(tables) = env::var_os("ACRN_TABLES_RS") else {
        fail("neither ACRN_BOARD/ACRN_SCENARIO nor ACRN_TABLES_RS is set: point ACRN_TABLES_RS at VM tables (a .rs file \
              defining `pub static PLATFORM: acrn_static_config::PlatformConfig` and \
              `pub const HV_RAM_START: u64`), e.g. ACRN_TABLES_RS=$PWD/tests-tables/qemu_partitioned.rs");
    };
    let tables = PathBuf::from(tables);
    let tables = if tables.is_absolute() {
        tables
    } else {
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join(tables)
    };
    println!("cargo:rerun-if-changed={}", tables.display());
    let src = fs::read_to_string(&tables).unwrap_or_else(|e| {
        fail(&format!(
            "cannot read ACRN_TABLES_RS={}: {e}",
            tables.display()
        ))
    });
    (tables, src)
}

fn hv_ram_start(src: &str) -> Option<u64> {
    let rest = &src[src.find("const HV_RAM_START")?..];
    let value = rest[rest.find('=')? + 1..rest.find(';')?]
        .trim()
        .replace('_', "");
    let value = value.trim_end_matches("u64");
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
