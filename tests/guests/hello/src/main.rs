//! `hello`: identifies its VM, beats a heartbeat and gives a verdict.
#![no_std]
#![no_main]

use acrn_abi::hypercall::HC_CREATE_VM;
use guest_common::arch::{cpuid, halt_forever, spin_tsc};
use guest_common::idt::catch_ud;
use guest_common::platform::{identify, Verdict};
use guest_common::println;

/// Default heartbeat count; `ticks=N` on the command line overrides it (max 1000).
const DEFAULT_TICKS: u32 = 20;
/// TSC ticks between heartbeats (about 4 ms at 2.6 GHz, 0.1 s in Bochs; only the lines matter).
const TICK_TSC: u64 = 10_000_000;

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    let p = identify("hello", magic, info);
    let refused = !p.flag("hypercall") || hypercall_refused();
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
    v.check(refused, "hypercall not refused with #UD");
    v.print();
    halt_forever()
}

/// Issues HC_CREATE_VM like a Service VM would (pointer to a zeroed creation record). This VM
/// is not the Service VM, so the hypervisor must answer with #UD and change nothing.
/// Returns whether it did.
fn hypercall_refused() -> bool {
    #[repr(C, align(64))]
    struct Record([u8; 64]);
    let rec = Record([0; 64]);
    let arg = core::ptr::addr_of!(rec) as u64;
    // "AuthenticAMD": EBX = "Auth".
    let amd = cpuid(0, 0).1 == u32::from_le_bytes(*b"Auth");
    println!(
        "hypercall: {} id={:#x} arg={:#x}",
        if amd { "vmmcall" } else { "vmcall" },
        HC_CREATE_VM,
        arg
    );
    // Both instructions are 3 bytes long.
    let r = catch_ud(3, || {
        let rax: u64;
        // SAFETY: a hypercall changes no guest state here except RAX; on #UD the handler
        // skips it. RAX starts at a marker so an unchanged RAX is visible.
        unsafe {
            if amd {
                core::arch::asm!("vmmcall", in("r8") HC_CREATE_VM, in("rdi") arg, in("rsi") 0u64,
                    inlateout("rax") 0x5A5Au64 => rax, options(nostack));
            } else {
                core::arch::asm!("vmcall", in("r8") HC_CREATE_VM, in("rdi") arg, in("rsi") 0u64,
                    inlateout("rax") 0x5A5Au64 => rax, options(nostack));
            }
        }
        rax
    });
    match r {
        None => println!("hypercall: #UD"),
        Some(rax) => println!("hypercall: returned {:#x}", rax),
    }
    // The record must be untouched either way (a refused call writes nothing back).
    let untouched = rec.0.iter().all(|&b| b == 0);
    println!("hypercall: record untouched={}", untouched);
    r.is_none() && untouched
}
