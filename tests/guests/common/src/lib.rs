//! Shared support for the test guests (see tests/guests/README.md).
//!
//! The parsers (`mem`, `multiboot`, `acpi`, `text`) are plain Rust and unit-tested on the
//! host; everything that needs the bare machine is compiled only for `target_os = "none"`.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod mem;
pub mod multiboot;
pub mod text;

#[cfg(target_os = "none")]
pub mod arch;
#[cfg(target_os = "none")]
pub mod fpu;
#[cfg(target_os = "none")]
pub mod idt;
#[cfg(target_os = "none")]
pub mod paging;
#[cfg(target_os = "none")]
pub mod platform;
#[cfg(target_os = "none")]
pub mod serial;
#[cfg(target_os = "none")]
pub mod smp;

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

/// A panic is a guest bug: say so on the console, give a verdict, and stop this CPU.
#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    serial::Console::force_unlock();
    println!("panic: {}", info);
    println!("verdict: FAIL (panic)");
    arch::halt_forever()
}
