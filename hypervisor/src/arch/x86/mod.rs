//! The thin privileged layer: port I/O, MSRs, control registers, the local APIC, descriptor
//! tables and the exception entry. Everything that needs ring 0 lives here or in the backends.

pub mod cpu;
pub mod exceptions;
pub mod irq;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

use bitflags::bitflags;
use x86_64::instructions::{hlt, interrupts, port::Port};
use x86_64::registers::control::{Cr0, Cr3, Cr4};
use x86_64::registers::model_specific::Msr;

#[inline]
pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects; callers own the device they address.
    unsafe { Port::new(port).write(v) }
}
#[inline]
pub fn inb(port: u16) -> u8 {
    // SAFETY: as above.
    unsafe { Port::new(port).read() }
}
#[inline]
pub fn outw(port: u16, v: u16) {
    // SAFETY: as above.
    unsafe { Port::new(port).write(v) }
}
#[inline]
pub fn outl(port: u16, v: u32) {
    // SAFETY: as above.
    unsafe { Port::new(port).write(v) }
}

#[inline]
pub fn rdmsr(msr: u32) -> u64 {
    // SAFETY: only called with MSRs that exist on the CPU we checked (EFER, VM_CR, ...).
    unsafe { Msr::new(msr).read() }
}
#[inline]
pub fn wrmsr(msr: u32, v: u64) {
    // SAFETY: as above; the callers set architecturally valid values.
    unsafe { Msr::new(msr).write(v) }
}

bitflags! {
    // CPUID feature bits the hypervisor tests or hides (the `x86_64` crate has no CPUID types).
    // Unnamed bits are kept: guests see the host's.

    /// CPUID.1:ECX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Leaf1Ecx: u32 {
        const MONITOR = 1 << 3;
        const VMX = 1 << 5;
        const X2APIC = 1 << 21;
        const TSC_DEADLINE = 1 << 24;
        const XSAVE = 1 << 26;
        const OSXSAVE = 1 << 27;
        const HYPERVISOR = 1 << 31;
        const _ = !0;
    }

    /// CPUID.1:EDX, mirrored in CPUID.0x80000001:EDX on AMD for these bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Leaf1Edx: u32 {
        const MCE = 1 << 7;
        const MCA = 1 << 14;
        const _ = !0;
    }

    /// CPUID.0x80000001:ECX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExtLeaf1Ecx: u32 {
        const SVM = 1 << 2;
        const _ = !0;
    }

    /// CPUID.0x80000001:EDX.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExtLeaf1Edx: u32 {
        const RDTSCP = 1 << 27;
        const _ = !0;
    }
}

pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

pub fn read_cr0() -> u64 {
    Cr0::read_raw()
}
pub fn read_cr3() -> u64 {
    let (frame, low_bits) = Cr3::read_raw();
    frame.start_address().as_u64() | u64::from(low_bits)
}
pub fn read_cr4() -> u64 {
    Cr4::read_raw()
}

/// Stops this pCPU for good (interrupts off; NMIs wake it only to halt again).
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        hlt();
    }
}

pub fn pause() {
    core::hint::spin_loop();
}

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
    use super::{phys_read32, phys_write32};
    use crate::devices::lapic::{IcrFlags, SvrFlags};
    use x86_64::registers::model_specific::ApicBase;
    const ICR_LO: u64 = 0x300;
    const ICR_HI: u64 = 0x310;
    /// ICR delivery modes (bits 10:8).
    const DELIVERY_INIT: u32 = 5 << 8;
    const DELIVERY_STARTUP: u32 = 6 << 8;

    pub fn base() -> u64 {
        ApicBase::read_raw().0.start_address().as_u64()
    }
    pub fn id() -> u32 {
        phys_read32(base() + 0x20) >> 24
    }
    /// Software-enables the APIC (spurious vector 0xFF).
    pub fn enable() {
        let b = base();
        let svr = SvrFlags::APIC_ENABLED.bits() | super::irq::SPURIOUS_VECTOR as u32;
        phys_write32(b + 0xF0, phys_read32(b + 0xF0) | svr);
    }
    fn wait_idle() {
        while IcrFlags::from_bits_retain(phys_read32(base() + ICR_LO))
            .contains(IcrFlags::DELIVERY_PENDING)
        {
            super::pause();
        }
    }
    pub fn send_init(apic_id: u32) {
        let b = base();
        phys_write32(b + ICR_HI, apic_id << 24);
        phys_write32(b + ICR_LO, IcrFlags::ASSERT.bits() | DELIVERY_INIT);
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
        phys_write32(
            b + ICR_LO,
            IcrFlags::ASSERT.bits() | DELIVERY_STARTUP | vector as u32,
        );
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
