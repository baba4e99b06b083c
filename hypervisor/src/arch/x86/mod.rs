//! The thin privileged layer: port I/O, MSRs, control registers, the local APIC, descriptor
//! tables and the exception entry. Everything that needs ring 0 lives here or in the backends.

pub mod cpu;
pub mod exceptions;
pub mod irq;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

use core::arch::asm;

#[inline]
pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects; callers own the device they address.
    unsafe {
        asm!("out dx, al", in("dx") port, in("al") v, options(nomem, nostack, preserves_flags))
    }
}
#[inline]
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as above.
    unsafe {
        asm!("in al, dx", out("al") v, in("dx") port, options(nomem, nostack, preserves_flags))
    }
    v
}
#[inline]
pub fn outw(port: u16, v: u16) {
    // SAFETY: as above.
    unsafe {
        asm!("out dx, ax", in("dx") port, in("ax") v, options(nomem, nostack, preserves_flags))
    }
}
#[inline]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as above.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack, preserves_flags))
    }
}

#[inline]
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called with MSRs that exist on the CPU we checked (EFER, VM_CR, ...).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) }
    (hi as u64) << 32 | lo as u64
}
#[inline]
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as above; the callers set architecturally valid values.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32, options(nostack))
    }
}

pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn read_cr0() -> u64 {
    let v;
    // SAFETY: reading a control register has no side effects.
    unsafe { asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) }
    v
}
pub fn read_cr3() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack)) }
    v
}
pub fn read_cr4() -> u64 {
    let v;
    // SAFETY: as above.
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) }
    v
}

/// Stops this pCPU for good (interrupts off; NMIs wake it only to halt again).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli/hlt only affect this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

pub fn pause() {
    core::hint::spin_loop();
}

pub const MSR_EFER: u32 = 0xC000_0080;
pub const MSR_GS_BASE: u32 = 0xC000_0101;
pub const EFER_SVME: u64 = 1 << 12;

/// Volatile access to identity-mapped physical memory.
pub fn phys_read32(pa: u64) -> u32 {
    // SAFETY: callers pass MMIO or RAM addresses covered by the identity map.
    unsafe { core::ptr::read_volatile(pa as *const u32) }
}
pub fn phys_write32(pa: u64, v: u32) {
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(pa as *mut u32, v) }
}

/// Local APIC in xAPIC mode (QEMU TCG has no x2APIC).
pub mod lapic {
    use super::{phys_read32, phys_write32, rdmsr};
    const MSR_APIC_BASE: u32 = 0x1B;
    const ICR_LO: u64 = 0x300;
    const ICR_HI: u64 = 0x310;

    pub fn base() -> u64 {
        rdmsr(MSR_APIC_BASE) & 0xF_FFFF_F000
    }
    pub fn id() -> u32 {
        phys_read32(base() + 0x20) >> 24
    }
    /// Software-enables the APIC (spurious vector 0xFF).
    pub fn enable() {
        let b = base();
        phys_write32(b + 0xF0, phys_read32(b + 0xF0) | 0x1FF);
    }
    fn wait_idle() {
        while phys_read32(base() + ICR_LO) & (1 << 12) != 0 {
            super::pause();
        }
    }
    pub fn send_init(apic_id: u32) {
        let b = base();
        phys_write32(b + ICR_HI, apic_id << 24);
        phys_write32(b + ICR_LO, 0x4500);
        wait_idle();
    }
    /// A fixed IPI with `vector` to one local APIC (physical destination).
    pub fn send_fixed(apic_id: u32, vector: u8) {
        let b = base();
        wait_idle();
        phys_write32(b + ICR_HI, apic_id << 24);
        phys_write32(b + ICR_LO, vector as u32);
    }
    pub fn send_sipi(apic_id: u32, vector: u8) {
        let b = base();
        phys_write32(b + ICR_HI, apic_id << 24);
        phys_write32(b + ICR_LO, 0x4600 | vector as u32);
        wait_idle();
    }
}

/// A busy delay at the calibrated TSC rate; before calibration (or without a PIT) it assumes
/// 3 GHz, which errs long on every CPU we target.
pub fn delay_us(us: u64) {
    // SAFETY: rdtsc has no side effects.
    let start = unsafe { core::arch::x86_64::_rdtsc() };
    let khz = match crate::tsc::khz() {
        0 => 3_000_000,
        k => k as u64,
    };
    let ticks = us * khz / 1000;
    // SAFETY: as above.
    while unsafe { core::arch::x86_64::_rdtsc() }.wrapping_sub(start) < ticks {
        pause();
    }
}
