// Every guest links with the shared linker script: one RWX PT_LOAD at 1 MiB whose
// p_paddr == p_vaddr, so both ACRN's ELF loader and QEMU's multiboot a.out kludge agree.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&dir).join("../common/linker.ld");
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
}
