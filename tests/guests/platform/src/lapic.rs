//! The local APIC in xAPIC (MMIO at 0xFEE00000) or x2APIC (MSRs 0x800 + offset / 16) mode.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

const BASE: usize = 0xFEE0_0000;
const MSR_APIC_BASE: u32 = 0x1B;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ENABLE: u64 = 1 << 11;
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;

pub const ID: u32 = 0x20;
pub const EOI: u32 = 0xB0;
pub const LDR: u32 = 0xD0;
pub const DFR: u32 = 0xE0;
pub const SVR: u32 = 0xF0;
pub const ESR: u32 = 0x280;
pub const ICR_LO: u32 = 0x300;
pub const ICR_HI: u32 = 0x310;
pub const LVT_TIMER: u32 = 0x320;
pub const LVT_LINT0: u32 = 0x350;
pub const TIMER_INITIAL: u32 = 0x380;
pub const TIMER_CURRENT: u32 = 0x390;
pub const TIMER_DIVIDE: u32 = 0x3E0;

pub const LVT_MASKED: u32 = 1 << 16;
pub const LVT_TIMER_PERIODIC: u32 = 1 << 17;
pub const LVT_TIMER_TSC_DEADLINE: u32 = 2 << 17;
pub const LVT_EXTINT: u32 = 7 << 8;
const ICR_PENDING: u32 = 1 << 12;

/// Set once this guest switched to x2APIC mode (it never switches back).
static X2APIC: AtomicBool = AtomicBool::new(false);

pub fn x2apic() -> bool {
    X2APIC.load(Ordering::SeqCst)
}

pub fn rdmsr(msr: u32) -> u64 {
    // SAFETY: the callers read MSRs the (virtual) CPU advertises.
    unsafe { guest_common::arch::rdmsr(msr) }
}

pub fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the callers write MSRs the (virtual) CPU advertises.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    };
}

pub fn read(reg: u32) -> u32 {
    if x2apic() {
        rdmsr(0x800 + (reg >> 4)) as u32
    } else {
        // SAFETY: the xAPIC page lies in the identity-mapped, uncached top GiB.
        unsafe { core::ptr::read_volatile((BASE + reg as usize) as *const u32) }
    }
}

pub fn write(reg: u32, value: u32) {
    if x2apic() {
        wrmsr(0x800 + (reg >> 4), u64::from(value));
    } else {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((BASE + reg as usize) as *mut u32, value) }
    }
}

pub fn eoi() {
    write(EOI, 0);
}

/// Software-enables this CPU's local APIC with the spurious vector 0xFF.
pub fn enable() {
    write(SVR, read(SVR) | 0x1FF);
}

/// Sends an IPI: `dest` is the destination field (xAPIC: 8 bits), `command` the low ICR
/// word (vector, delivery mode, destination mode, level, shorthand).
pub fn send_ipi(dest: u32, command: u32) {
    if x2apic() {
        wrmsr(0x830, u64::from(dest) << 32 | u64::from(command));
        return;
    }
    write(ICR_HI, dest << 24);
    write(ICR_LO, command);
    for _ in 0..100_000 {
        if read(ICR_LO) & ICR_PENDING == 0 {
            break;
        }
        core::hint::spin_loop();
    }
}

/// Whether CPUID.1:ECX offers x2APIC (bit 21).
pub fn x2apic_offered() -> bool {
    guest_common::arch::cpuid(1, 0).2 & (1 << 21) != 0
}

/// Whether CPUID.1:ECX offers the TSC-deadline timer (bit 24).
pub fn tsc_deadline_offered() -> bool {
    guest_common::arch::cpuid(1, 0).2 & (1 << 24) != 0
}

/// Switches this CPU to x2APIC mode (xAPIC enabled -> x2APIC enabled, SDM 11.12.5).
pub fn enter_x2apic() {
    let base = rdmsr(MSR_APIC_BASE);
    wrmsr(MSR_APIC_BASE, base | APIC_BASE_ENABLE | APIC_BASE_X2APIC);
    X2APIC.store(true, Ordering::SeqCst);
}
