//! The thin privileged layer: port I/O, MSRs, control registers, the local APIC, descriptor
//! tables and the exception entry. Everything that needs ring 0 lives here or in the backends.

pub mod cpu;
pub mod exceptions;
pub mod identity;
pub mod irq;

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));

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

pub use super::cpuid::{cpuid, ExtLeaf1Ecx, ExtLeaf1Edx, Leaf1Ecx, Leaf1Edx};

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

/// The pCPUs' local APICs: xAPIC (MMIO) by default; x2APIC (MSRs 0x800 + offset / 16) on
/// every pCPU when a VM gets its pCPUs' local APICs passed through, which ACRN does in x2APIC
/// mode only (QEMU TCG 7.x has no x2APIC; Bochs' tigerlake has).
pub mod lapic {
    use super::{phys_read32, phys_write32, rdmsr, wrmsr, Leaf1Ecx};
    use crate::devices::lapic::{IcrFlags, SvrFlags};
    use core::sync::atomic::{AtomicBool, Ordering};
    use x86_64::registers::model_specific::ApicBase;

    pub const ID: u32 = 0x20;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xB0;
    pub const SVR: u32 = 0xF0;
    pub const ISR: u32 = 0x100;
    pub const ESR: u32 = 0x280;
    const ICR_LO: u32 = 0x300;
    const ICR_HI: u32 = 0x310;
    pub const LVT_TIMER: u32 = 0x320;
    pub const LVT_THERMAL: u32 = 0x330;
    pub const LVT_PMC: u32 = 0x340;
    pub const LVT_LINT0: u32 = 0x350;
    pub const LVT_LINT1: u32 = 0x360;
    pub const LVT_ERROR: u32 = 0x370;
    pub const VERSION: u32 = 0x30;
    /// ICR delivery modes (bits 10:8).
    const DELIVERY_NMI: u32 = 4 << 8;
    const DELIVERY_INIT: u32 = 5 << 8;
    const DELIVERY_STARTUP: u32 = 6 << 8;
    const MSR_APIC_BASE: u32 = 0x1B;
    const APIC_BASE_EXTD: u64 = 1 << 10;
    const APIC_BASE_ENABLE: u64 = 1 << 11;
    pub const MSR_X2APIC_ICR: u32 = 0x830;
    pub const MSR_TSC_DEADLINE: u32 = 0x6E0;

    /// Every pCPU runs its local APIC in x2APIC mode (set by the BSP before any pCPU enables
    /// its local APIC).
    static X2APIC: AtomicBool = AtomicBool::new(false);

    /// Asks for x2APIC mode on every pCPU; false (and xAPIC stays) if the CPU has no x2APIC.
    pub fn request_x2apic() -> bool {
        let has = Leaf1Ecx::from_bits_retain(super::cpuid(1, 0)[2]).contains(Leaf1Ecx::X2APIC);
        X2APIC.store(has, Ordering::Release);
        has
    }

    pub fn x2apic() -> bool {
        X2APIC.load(Ordering::Acquire)
    }

    fn base() -> u64 {
        ApicBase::read_raw().0.start_address().as_u64()
    }
    /// Register `reg` (its xAPIC offset).
    pub fn read(reg: u32) -> u32 {
        if x2apic() {
            rdmsr(0x800 + (reg >> 4)) as u32
        } else {
            phys_read32(base() + reg as u64)
        }
    }
    pub fn write(reg: u32, value: u32) {
        if x2apic() {
            wrmsr(0x800 + (reg >> 4), value as u64)
        } else {
            phys_write32(base() + reg as u64, value)
        }
    }
    pub fn id() -> u32 {
        if x2apic() {
            read(ID)
        } else {
            read(ID) >> 24
        }
    }
    /// Software-enables the APIC (spurious vector 0xFF), switching it to x2APIC mode first
    /// when [`request_x2apic`] asked for it (xAPIC enabled -> x2APIC enabled, SDM 11.12.5).
    pub fn enable() {
        if x2apic() {
            let b = rdmsr(MSR_APIC_BASE);
            if b & APIC_BASE_EXTD == 0 {
                wrmsr(MSR_APIC_BASE, b | APIC_BASE_ENABLE | APIC_BASE_EXTD);
            }
        }
        let svr = SvrFlags::APIC_ENABLED.bits() | super::irq::SPURIOUS_VECTOR as u32;
        write(SVR, read(SVR) | svr);
    }
    /// Sends the IPI whose low ICR word is `low` to the APIC with `apic_id`.
    fn send(apic_id: u32, low: u32) {
        if x2apic() {
            // x2APIC has no delivery status: the write is the send.
            wrmsr(MSR_X2APIC_ICR, (apic_id as u64) << 32 | low as u64);
            return;
        }
        wait_idle();
        write(ICR_HI, apic_id << 24);
        write(ICR_LO, low);
    }
    fn wait_idle() {
        while !x2apic()
            && IcrFlags::from_bits_retain(read(ICR_LO)).contains(IcrFlags::DELIVERY_PENDING)
        {
            super::pause();
        }
    }
    pub fn send_init(apic_id: u32) {
        send(apic_id, IcrFlags::ASSERT.bits() | DELIVERY_INIT);
        wait_idle();
    }
    /// A fixed IPI with `vector` to one local APIC (physical destination).
    pub fn send_fixed(apic_id: u32, vector: u8) {
        send(apic_id, vector as u32);
    }
    /// An NMI to one local APIC (physical destination).
    pub fn send_nmi(apic_id: u32) {
        send(apic_id, IcrFlags::ASSERT.bits() | DELIVERY_NMI);
    }
    /// Writes a guest's already filtered x2APIC ICR value as it is.
    pub fn send_raw_x2apic(icr: u64) {
        wrmsr(MSR_X2APIC_ICR, icr);
    }
    pub fn send_sipi(apic_id: u32, vector: u8) {
        send(
            apic_id,
            IcrFlags::ASSERT.bits() | DELIVERY_STARTUP | vector as u32,
        );
        wait_idle();
    }
}

/// A busy delay at the calibrated TSC rate; before calibration (or without a PIT) it assumes
/// 3 GHz, which errs long on every CPU we target.
pub fn delay_us(us: u64) {
    let start = crate::tsc::now();
    let khz = match crate::tsc::khz() {
        0 => 3_000_000,
        k => k as u64,
    };
    let ticks = us * khz / 1000;
    while crate::tsc::now().wrapping_sub(start) < ticks {
        pause();
    }
}
