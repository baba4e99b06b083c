//! `bench`: average TSC ticks per exit-causing instruction (vUART port write/read, CPUID, a
//! local APIC EOI write, a TSC-deadline timer re-arm).
#![no_std]
#![no_main]

use guest_common::arch::{cpuid, halt_forever, inb, outb, rdtsc, wrmsr};
use guest_common::platform::{identify, Verdict};
use guest_common::println;
use guest_common::serial::COM1;

/// Iterations per measurement; `iterations=N` overrides it (post-launched VMs in Bochs, where
/// every port access is a round trip through the Service VM, use fewer).
const N: u64 = 10_000;
/// The 16550 scratch register: writes have no side effect on the console.
const SCRATCH: u16 = COM1 + 7;
const LAPIC_SVR: usize = 0xFEE0_00F0;
const LAPIC_EOI: usize = 0xFEE0_00B0;
const LAPIC_LVT_TIMER: usize = 0xFEE0_0320;
const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// LVT timer: TSC-deadline mode, masked (re-arming must not interrupt the measurement).
const LVT_TSC_DEADLINE_MASKED: u32 = 2 << 17 | 1 << 16 | 0xEF;

/// Average TSC ticks of `f` over `n` calls.
fn measure(n: u64, mut f: impl FnMut(u64)) -> u64 {
    f(0); // warm-up
    let t0 = rdtsc();
    for i in 0..n {
        f(i);
    }
    rdtsc().wrapping_sub(t0) / n
}

/// `0x2f8` or `760`.
fn parse_u16(v: &str) -> Option<u16> {
    match v.strip_prefix("0x") {
        Some(h) => u16::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    let p = identify("bench", magic, info);
    let n = p
        .arg("iterations")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(N);
    println!("bench: iterations={}", n);
    // SAFETY: the scratch register of our own UART.
    let pio_write = measure(n, |i| unsafe { outb(SCRATCH, i as u8) });
    let pio_read = measure(n, |_| unsafe {
        core::hint::black_box(inb(SCRATCH));
    });
    let cpuid_t = measure(n, |_| {
        core::hint::black_box(cpuid(0, 0));
    });
    // SAFETY: this vCPU's local APIC registers (xAPIC page) and its TSC-deadline MSR, in
    // TSC-deadline mode with the timer masked: each write is one exit and nothing fires.
    let (eoi, rearm) = unsafe {
        core::ptr::write_volatile(LAPIC_SVR as *mut u32, 0x1FF);
        core::ptr::write_volatile(LAPIC_LVT_TIMER as *mut u32, LVT_TSC_DEADLINE_MASKED);
        let eoi = measure(n, |_| core::ptr::write_volatile(LAPIC_EOI as *mut u32, 0));
        let rearm = measure(n, |i| wrmsr(IA32_TSC_DEADLINE, rdtsc() + 1_000_000 + i));
        wrmsr(IA32_TSC_DEADLINE, 0);
        (eoi, rearm)
    };
    let base = measure(n, |i| {
        core::hint::black_box(i);
    });
    // `port=P reads=N`: N more reads of port P, e.g. one the Service VM's device model serves
    // in a post-launched VM (each read is then a full I/O request round trip).
    let port = p.arg("port").and_then(parse_u16);
    let reads = p.arg("reads").and_then(|v| v.parse::<u64>().ok());
    if let (Some(port), Some(n)) = (port, reads.filter(|&n| n > 0)) {
        let t0 = rdtsc();
        for _ in 0..n {
            // SAFETY: the command line names a port of this VM's own devices.
            core::hint::black_box(unsafe { inb(port) });
        }
        let t = rdtsc().wrapping_sub(t0) / n;
        println!("bench: port={:#x} reads={} port_read_ticks={}", port, n, t);
    }
    println!("bench: pio_write_ticks={}", pio_write);
    println!("bench: pio_read_ticks={}", pio_read);
    println!("bench: cpuid_ticks={}", cpuid_t);
    println!("bench: eoi_ticks={}", eoi);
    println!("bench: tsc_deadline_ticks={}", rearm);
    println!("bench: loop_ticks={}", base);
    let mut v = Verdict::new();
    v.check(pio_write > 0 && cpuid_t > 0, "zero timings");
    v.print();
    halt_forever()
}
