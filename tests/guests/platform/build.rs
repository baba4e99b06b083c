// Links with the shared linker script (see ../rogue/build.rs) and writes the 256 interrupt
// stubs of src/idt.rs: one 16-byte slot per vector, so the IDT needs no table of labels.
use std::fmt::Write as _;

/// Exceptions for which the CPU pushes an error code (SDM vol. 3 table 6-1).
const ERROR_CODE_VECTORS: [u32; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("../common/linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut asm = String::from(
        ".pushsection .text.vectors, \"ax\"\n.balign 16\n.global vector_stubs\nvector_stubs:\n",
    );
    for v in 0..256u32 {
        asm.push_str(".balign 16\n");
        if !ERROR_CODE_VECTORS.contains(&v) {
            asm.push_str("    pushq $0\n");
        }
        writeln!(asm, "    pushq ${v}\n    jmp vector_common").unwrap();
    }
    asm.push_str(".popsection\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("vector_stubs.S"), asm).expect("write vector_stubs.S");
}
