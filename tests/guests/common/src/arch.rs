//! The few privileged x86 instructions the guests need.

use core::arch::asm;

/// # Safety
/// Port I/O has device side effects; the caller owns the port.
pub unsafe fn outb(port: u16, val: u8) {
    asm!("out dx, al", in("dx") port, in("al") val, options(nomem, nostack, preserves_flags));
}

/// # Safety
/// Port I/O has device side effects; the caller owns the port.
pub unsafe fn inb(port: u16) -> u8 {
    let v: u8;
    asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags));
    v
}

pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects (CR4.TSD is never set by these guests).
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// CPUID leaf/subleaf -> (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, sub: u32) -> (u32, u32, u32, u32) {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU.
    let r = unsafe { core::arch::x86_64::__cpuid_count(leaf, sub) };
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// # Safety
/// The MSR must exist (a missing one raises #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    u64::from(hi) << 32 | u64::from(lo)
}

/// # Safety
/// The MSR must exist and `value` be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
         options(nostack, preserves_flags));
}

/// Busy-waits for about `cycles` TSC ticks.
pub fn spin_tsc(cycles: u64) {
    let start = rdtsc();
    while rdtsc().wrapping_sub(start) < cycles {
        core::hint::spin_loop();
    }
}

/// Disables interrupts and halts forever. The guests never exit the machine: other VMs may
/// still be running, and the harness decides when to stop.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stopping this CPU is the intent.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// Flushes the whole TLB by reloading CR3.
///
/// # Safety
/// The current page tables must stay valid.
pub unsafe fn flush_tlb() {
    asm!("mov {t}, cr3", "mov cr3, {t}", t = out(reg) _, options(nostack, preserves_flags));
}
