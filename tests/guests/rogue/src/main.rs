//! `rogue`: identifies its VM, then touches guest-physical memory it does not own and,
//! if it survives, triple-faults on purpose. The transcript shows how far it got.
#![no_std]
#![no_main]

use guest_common::arch::halt_forever;
use guest_common::paging::map_high;
use guest_common::platform::identify;
use guest_common::println;

const MIB: u64 = 1 << 20;
const PATTERN: u64 = 0x524F_4755_4521_2121; // "ROGUE!!!"

/// Reads then writes one u64, announcing each step first so the transcript shows which
/// access (if any) stopped the VM.
fn poke(what: &str, gpa: u64, ptr: *mut u64) {
    println!("rogue: reading {} {:#x}", what, gpa);
    // SAFETY: the address is identity-mapped; touching memory the VM does not own is the
    // point of this guest, and whatever happens next is the hypervisor's decision.
    let old = unsafe { core::ptr::read_volatile(ptr) };
    println!("rogue: read {:#x} = {:#x}", gpa, old);
    println!("rogue: writing {} {:#x}", what, gpa);
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(ptr, PATTERN) };
    println!("rogue: wrote {:#x}", gpa);
}

/// Loads an empty IDT and raises #UD: #UD -> #GP (no gate) -> #DF -> shutdown.
fn triple_fault() -> ! {
    let idtr = [0u16; 5]; // limit 0, base 0
                          // SAFETY: ending this VM is the intent.
    unsafe { core::arch::asm!("lidt [{}]", "ud2", in(reg) idtr.as_ptr(), options(noreturn)) }
}

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    let p = identify("rogue", magic, info);
    // The VM's size as the guest knows it; 256 MiB if the loader did not say.
    let top = match p.ram_top() {
        0 => 256 * MIB,
        t => t.div_ceil(MIB) * MIB,
    };
    println!("rogue: touching memory outside my VM");
    // Just past the end of RAM: below 4 GiB, so already identity-mapped.
    if top < 0x1_0000_0000 {
        poke("past-end", top, top as usize as *mut u64);
    }
    let far = 0x1_0000_0000 + top;
    match map_high(far) {
        Some(ptr) => poke("far", far, ptr),
        None => println!("rogue: cannot map {:#x}", far),
    }
    println!("rogue: still alive");
    println!("rogue: triple-faulting now");
    triple_fault();
    #[allow(unreachable_code)]
    halt_forever()
}
