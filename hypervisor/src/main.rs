//! The hypervisor image: boot entry points and the compiled-in VM tables.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod tables {
    include!(concat!(env!("OUT_DIR"), "/vm_tables.rs"));
}

#[cfg(target_os = "none")]
#[no_mangle]
extern "C" fn hv_bsp_main(magic: u32, info: u32) -> ! {
    acrn_hypervisor::hv::bsp_main(&tables::PLATFORM, tables::HV_RAM_START, magic, info as u64)
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    acrn_hypervisor::hv::panic(info)
}

/// Host builds exist only so `cargo test --target <host>` can build the workspace.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("acrn: this image runs on bare metal; build it for x86_64-unknown-none");
}
