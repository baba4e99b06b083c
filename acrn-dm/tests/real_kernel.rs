//! Loads a real bzImage (path in ACRN_DM_BZIMAGE, e.g. Debian's vmlinuz) into heap-backed
//! guest memory the way a VM start does, and checks the layout against its header.
//! Opt-in: `ACRN_DM_BZIMAGE=/path/vmlinuz cargo test -p acrn-dm --test real_kernel -- --ignored`.

use acrn_dm::boot::{boot_regs, load_linux, SetupHeader, KERNEL_LOAD};
use acrn_dm::memory::GuestMemory;

#[test]
#[ignore = "needs a real bzImage in ACRN_DM_BZIMAGE"]
fn a_real_bzimage_loads() {
    let path = std::env::var("ACRN_DM_BZIMAGE").expect("set ACRN_DM_BZIMAGE to a bzImage");
    let kernel = std::fs::read(&path).unwrap();
    let hdr = SetupHeader::parse(&path, &kernel).unwrap();
    assert!(hdr.relocatable, "distribution kernels are relocatable");
    eprintln!("{path}: {hdr:?}");
    let mem = GuestMemory::heap(512 << 20);
    let ramdisk = vec![0xA5u8; 8 << 20];
    let layout = load_linux(
        &mem,
        &path,
        &kernel,
        Some(&ramdisk),
        "console=ttyS0",
        0xF2400,
    )
    .unwrap();
    assert_eq!(layout.entry, KERNEL_LOAD + hdr.setup_size() as u64);
    // The protected-mode code starts right after the setup sectors.
    let mut first = [0u8; 16];
    mem.read(layout.entry, &mut first).unwrap();
    assert_eq!(&first, &kernel[hdr.setup_size()..hdr.setup_size() + 16]);
    let regs = boot_regs(&layout);
    assert_eq!(regs.vcpu_regs.rip, layout.entry);
    eprintln!("{layout:x?}");
}
