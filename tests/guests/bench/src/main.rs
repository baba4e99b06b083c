//! `bench`: average TSC ticks per exit-causing instruction (vUART port write/read, CPUID).
#![no_std]
#![no_main]

use guest_common::arch::{cpuid, halt_forever, inb, outb, rdtsc};
use guest_common::platform::{identify, Verdict};
use guest_common::println;
use guest_common::serial::COM1;

const N: u64 = 10_000;
/// The 16550 scratch register: writes have no side effect on the console.
const SCRATCH: u16 = COM1 + 7;

/// Average TSC ticks of `f` over N calls.
fn measure(mut f: impl FnMut(u64)) -> u64 {
    f(0); // warm-up
    let t0 = rdtsc();
    for i in 0..N {
        f(i);
    }
    rdtsc().wrapping_sub(t0) / N
}

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    identify("bench", magic, info);
    println!("bench: iterations={}", N);
    // SAFETY: the scratch register of our own UART.
    let pio_write = measure(|i| unsafe { outb(SCRATCH, i as u8) });
    let pio_read = measure(|_| unsafe {
        core::hint::black_box(inb(SCRATCH));
    });
    let cpuid_t = measure(|_| {
        core::hint::black_box(cpuid(0, 0));
    });
    let base = measure(|i| {
        core::hint::black_box(i);
    });
    println!("bench: pio_write_ticks={}", pio_write);
    println!("bench: pio_read_ticks={}", pio_read);
    println!("bench: cpuid_ticks={}", cpuid_t);
    println!("bench: loop_ticks={}", base);
    let mut v = Verdict::new();
    v.check(pio_write > 0 && cpuid_t > 0, "zero timings");
    v.print();
    halt_forever()
}
