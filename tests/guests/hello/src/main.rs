//! `hello`: identifies its VM, beats a heartbeat and gives a verdict.
#![no_std]
#![no_main]

use guest_common::arch::{halt_forever, spin_tsc};
use guest_common::platform::{identify, Verdict};
use guest_common::println;

/// Default heartbeat count; `ticks=N` on the command line overrides it (max 1000).
const DEFAULT_TICKS: u32 = 20;
/// TSC ticks between heartbeats (about 4 ms at 2.6 GHz, 0.1 s in Bochs; only the lines matter).
const TICK_TSC: u64 = 10_000_000;

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    let p = identify("hello", magic, info);
    let ticks = p
        .arg("ticks")
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(DEFAULT_TICKS)
        .min(1000);
    for n in 1..=ticks {
        spin_tsc(TICK_TSC);
        println!("tick {}", n);
    }
    let mut v = Verdict::new();
    v.check(!p.cmdline().is_empty(), "empty cmdline");
    v.check(p.cpus >= 1, "no cpus in MADT");
    v.check(p.online as usize == p.cpus, "cpus-online != cpus");
    v.check(p.memory_mib() > 0, "no memory");
    v.print();
    halt_forever()
}
