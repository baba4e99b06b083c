//! Brings the static VM tables into the build and emits the linker script.
//!
//! The tables come from the file named by `ACRN_TABLES_RS` (a Rust source defining
//! `pub static PLATFORM: acrn_static_config::PlatformConfig` and `pub const HV_RAM_START: u64`).
//! The hypervisor is linked at `HV_RAM_START`, so its image lies inside the RAM the allocator
//! reserved for it and never overlaps the VMs' memory; the boot code checks at run time that
//! `HV_RAM_START == PLATFORM.hv.ram.start` and that the image fits in `PLATFORM.hv.ram`.
//! Host builds (unit tests of the pure logic) need no tables.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=ACRN_TABLES_RS");
    println!("cargo:rerun-if-changed=linker.ld.in");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "none" {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let Some(tables) = env::var_os("ACRN_TABLES_RS") else {
        fail("ACRN_TABLES_RS is not set: point it at the generated VM tables (a .rs file \
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
    let src = fs::read_to_string(&tables)
        .unwrap_or_else(|e| fail(&format!("cannot read ACRN_TABLES_RS={}: {e}", tables.display())));
    let start = hv_ram_start(&src).unwrap_or_else(|| {
        fail(&format!(
            "{}: no `pub const HV_RAM_START: u64 = <number>;` (the link address)",
            tables.display()
        ))
    });
    if start % 0x20_0000 != 0 || !(0x10_0000..0xC000_0000).contains(&start) {
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

fn hv_ram_start(src: &str) -> Option<u64> {
    let rest = &src[src.find("const HV_RAM_START")?..];
    let value = rest[rest.find('=')? + 1..rest.find(';')?].trim().replace('_', "");
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
