//! `attacker`: after `delay_ms=` (default 300) it turns every interrupt source it can reach
//! towards every CPU: each I/O APIC pin to fixed delivery at physical destination 0xFF
//! (broadcast), the PIT (channel 0 mode 2, channel 2 mode 3 with the speaker gate), the RTC's
//! periodic interrupt (with the NMI-mask bit of port 0x70 set), the HPET in legacy-replacement
//! mode, and both 8259s unmasked behind LINT0. Then it sends, through its local APIC, a fixed
//! IPI to every APIC ID 0-255, one to all-excluding-self, a logical broadcast, an NMI, an
//! INIT and a SIPI to all-excluding-self. It keeps everything running for `attack_ms=`
//! (default 1000) with interrupts enabled, acknowledging what it gets so more comes (the first
//! half busy, the second in HLT woken by its own LAPIC timer), and reports what its own CPUs
//! received. The verdict is always PASS when it gets that far: what
//! the attacker receives is reported, and the other VM judges the containment.

use crate::idt::{self, count, NMI};
use crate::lapic::{
    self, ESR, LVT_EXTINT, LVT_LINT0, LVT_TIMER, LVT_TIMER_PERIODIC, TIMER_CURRENT, TIMER_DIVIDE,
    TIMER_INITIAL,
};
use crate::victim::{prepare_cpu, set_ap_mode, AP_MODE_LISTEN};
use crate::{arg_u64, spin_ms};
use core::arch::asm;
use guest_common::arch::{inb, outb, rdtsc};
use guest_common::platform::Platform;
use guest_common::println;

const IOAPIC: usize = 0xFEC0_0000;
/// Vector of I/O APIC pin `n`: IOAPIC_VECTOR + n (up to 120 pins: 0x40..=0xB7).
const IOAPIC_VECTOR: u8 = 0x40;
/// 8259 vector bases.
const PIC_MASTER_VECTOR: u8 = 0x20;
const PIC_SLAVE_VECTOR: u8 = 0x28;
/// Fixed IPI to each APIC ID 0..=255, to all-excluding-self, logical broadcast.
const IPI_EACH: u8 = 0xC0;
const IPI_ALL_BUT_SELF: u8 = 0xC1;
const IPI_LOGICAL_ALL: u8 = 0xC2;
/// The RTC's line on both controllers.
const RTC_IRQ: u8 = 8;
/// A real-mode page holding `cli; hlt; jmp <hlt>` for the SIPI: an AP it starts parks.
const SIPI_PAGE: u64 = 0x7000;
const HPET: usize = 0xFED0_0000;
/// The attacker's own LAPIC timer, which wakes it from HLT.
const WAKE_VECTOR: u8 = 0xD0;

const ICR_NMI: u32 = 4 << 8;
const ICR_INIT: u32 = 5 << 8;
const ICR_SIPI: u32 = 6 << 8;
const ICR_LOGICAL: u32 = 1 << 11;
const ICR_ASSERT: u32 = 1 << 14;
const ICR_ALL_BUT_SELF: u32 = 3 << 18;

fn ioapic_read(reg: u32) -> u32 {
    // SAFETY: IOREGSEL/IOWIN of the I/O APIC page, identity-mapped uncached.
    unsafe {
        core::ptr::write_volatile(IOAPIC as *mut u32, reg);
        core::ptr::read_volatile((IOAPIC + 0x10) as *const u32)
    }
}

pub fn ioapic_write(reg: u32, value: u32) {
    // SAFETY: as for `ioapic_read`.
    unsafe {
        core::ptr::write_volatile(IOAPIC as *mut u32, reg);
        core::ptr::write_volatile((IOAPIC + 0x10) as *mut u32, value);
    }
}

fn cmos_read(index: u8) -> u8 {
    // SAFETY: the RTC's index/data ports; bit 7 of the index also masks NMIs on a PC.
    unsafe {
        outb(0x70, index | 0x80);
        inb(0x71)
    }
}

fn cmos_write(index: u8, value: u8) {
    // SAFETY: as for `cmos_read`.
    unsafe {
        outb(0x70, index | 0x80);
        outb(0x71, value);
    }
}

/// Acknowledges what the attacker's own devices raise, so that they raise more.
fn acknowledge(vector: u8) {
    let rtc_vectors = [IOAPIC_VECTOR + RTC_IRQ, PIC_SLAVE_VECTOR + RTC_IRQ - 8];
    if rtc_vectors.contains(&vector) {
        cmos_read(0x0C);
    }
    if (PIC_MASTER_VECTOR..PIC_SLAVE_VECTOR + 8).contains(&vector) {
        // SAFETY: non-specific EOI to the 8259s this guest programmed.
        unsafe {
            if vector >= PIC_SLAVE_VECTOR {
                outb(0xA0, 0x20);
            }
            outb(0x20, 0x20);
        }
    }
}

fn program_ioapic() {
    let version = ioapic_read(1);
    let pins = ((version >> 16) & 0xFF) + 1;
    println!("attacker: ioapic version={:#x} pins={}", version, pins);
    for pin in 0..pins.min(120) {
        let vector = u32::from(IOAPIC_VECTOR) + pin;
        // Fixed, physical, edge, active high, unmasked, destination 0xFF (broadcast).
        ioapic_write(0x11 + 2 * pin, 0xFF << 24);
        ioapic_write(0x10 + 2 * pin, vector);
    }
    let rte8 = u64::from(ioapic_read(0x11 + 16)) << 32 | u64::from(ioapic_read(0x10 + 16));
    println!(
        "attacker: {} ioapic pins routed to physical broadcast 0xff, vectors {:#x}+pin; pin 8 reads back {:#x}",
        pins.min(120),
        IOAPIC_VECTOR,
        rte8
    );
}

fn start_pit() {
    // SAFETY: the PIT's ports and port 0x61 (speaker gate), as a PC guest programs them.
    let (lo, hi) = unsafe {
        outb(0x43, 0x34); // channel 0, lobyte/hibyte, mode 2
        outb(0x40, 0xA9); // 1193: about 1 kHz
        outb(0x40, 0x04);
        outb(0x43, 0xB6); // channel 2, lobyte/hibyte, mode 3
        outb(0x42, 0x00);
        outb(0x42, 0x10);
        outb(0x61, inb(0x61) | 0x03);
        outb(0x43, 0x00); // latch channel 0
        (inb(0x40), inb(0x40))
    };
    println!(
        "attacker: pit channel 0 mode 2 at 1 kHz started; latched count reads {:#x}",
        u16::from(hi) << 8 | u16::from(lo)
    );
}

fn start_rtc() {
    cmos_write(0x0A, 0x26); // 32.768 kHz base, 1024 Hz periodic rate
    let b = cmos_read(0x0B);
    cmos_write(0x0B, b | 0x40); // PIE
    let c = cmos_read(0x0C);
    println!(
        "attacker: rtc periodic interrupt at 1024 Hz enabled: reg A={:#x} B={:#x} C={:#x}",
        cmos_read(0x0A),
        cmos_read(0x0B),
        c
    );
}

fn start_hpet() {
    // SAFETY: the HPET's page, identity-mapped uncached; without an HPET the VM's bus
    // decides what these accesses do.
    let caps = unsafe {
        let caps = core::ptr::read_volatile(HPET as *const u64);
        core::ptr::write_volatile((HPET + 0x100) as *mut u64, 1 << 2 | 1 << 3); // T0 int, periodic
        core::ptr::write_volatile((HPET + 0x108) as *mut u64, 100_000);
        core::ptr::write_volatile((HPET + 0x10) as *mut u64, 0b11); // enable, legacy routing
        caps
    };
    println!(
        "attacker: hpet enabled in legacy-replacement mode; capabilities read {:#x}",
        caps
    );
}

fn start_pic() {
    // SAFETY: the 8259 pair's ports: ICW1-ICW4, then OCW1 with every line unmasked.
    unsafe {
        outb(0x20, 0x11);
        outb(0x21, PIC_MASTER_VECTOR);
        outb(0x21, 0x04);
        outb(0x21, 0x01);
        outb(0xA0, 0x11);
        outb(0xA1, PIC_SLAVE_VECTOR);
        outb(0xA1, 0x02);
        outb(0xA1, 0x01);
        outb(0x21, 0x00);
        outb(0xA1, 0x00);
    }
    // Virtual wire: the 8259's INTR reaches this CPU through LINT0 as ExtINT.
    lapic::write(LVT_LINT0, LVT_EXTINT);
    println!(
        "attacker: both 8259s unmasked, vectors {:#x} and {:#x}, LINT0 ExtINT",
        PIC_MASTER_VECTOR, PIC_SLAVE_VECTOR
    );
}

fn send_ipis(khz: u64) {
    for id in 0..=255 {
        lapic::send_ipi(id, u32::from(IPI_EACH));
    }
    println!(
        "attacker: sent fixed IPIs with vector {:#x} to APIC IDs 0-255 (ESR {:#x})",
        IPI_EACH,
        esr()
    );
    lapic::send_ipi(0, ICR_ALL_BUT_SELF | u32::from(IPI_ALL_BUT_SELF));
    lapic::send_ipi(0xFF, ICR_LOGICAL | u32::from(IPI_LOGICAL_ALL));
    println!(
        "attacker: sent fixed IPIs to all-excluding-self (vector {:#x}) and logical 0xff (vector {:#x})",
        IPI_ALL_BUT_SELF, IPI_LOGICAL_ALL
    );
    lapic::send_ipi(0, ICR_ALL_BUT_SELF | ICR_NMI | ICR_ASSERT);
    println!("attacker: sent NMI to all-excluding-self");
    spin_ms(khz, 50);
    report("before INIT");
    // SAFETY: a page of this VM's low RAM that nothing else uses after boot.
    unsafe {
        core::ptr::copy_nonoverlapping([0xFAu8, 0xF4, 0xEB, 0xFD].as_ptr(), SIPI_PAGE as *mut u8, 4)
    };
    lapic::send_ipi(0, ICR_ALL_BUT_SELF | ICR_INIT | ICR_ASSERT);
    lapic::send_ipi(0, ICR_ALL_BUT_SELF | ICR_INIT);
    spin_ms(khz, 10);
    lapic::send_ipi(0, ICR_ALL_BUT_SELF | ICR_SIPI | (SIPI_PAGE >> 12) as u32);
    println!("attacker: sent INIT and SIPI to all-excluding-self");
}

/// The RTC interrupts this VM's CPUs took so far: through the I/O APIC, through the 8259.
fn own_rtc() -> (u32, u32) {
    (
        count(0, IOAPIC_VECTOR + RTC_IRQ) + count(1, IOAPIC_VECTOR + RTC_IRQ),
        count(0, PIC_SLAVE_VECTOR + RTC_IRQ - 8),
    )
}

/// A LAPIC timer count (divide by 1) for about `ms` milliseconds, from the timer's own rate.
fn lapic_count_for_ms(khz: u64, ms: u64) -> u32 {
    lapic::write(TIMER_INITIAL, u32::MAX);
    let c0 = lapic::read(TIMER_CURRENT);
    spin_ms(khz, 1);
    let per_ms = u64::from(c0.saturating_sub(lapic::read(TIMER_CURRENT))).max(1);
    lapic::write(TIMER_INITIAL, 0);
    (per_ms * ms).min(u64::from(u32::MAX)) as u32
}

fn esr() -> u32 {
    lapic::write(ESR, 0);
    lapic::read(ESR)
}

/// Prints every vector a CPU of this VM received so far.
fn report(when: &str) {
    for cpu in 0..2 {
        for v in 0..=255u8 {
            let n = count(cpu, v);
            if n != 0 {
                println!("attacker: {}: cpu {} vector {:#x}: {}", when, cpu, v, n);
            }
        }
    }
}

pub fn run(p: &Platform, khz: u64) {
    let delay_ms = arg_u64(p, "delay_ms", 300);
    let attack_ms = arg_u64(p, "attack_ms", 1000);
    prepare_cpu();
    idt::on_vector(acknowledge);
    set_ap_mode(AP_MODE_LISTEN);
    spin_ms(khz, delay_ms);

    println!("attacker: starting");
    program_ioapic();
    start_pit();
    start_rtc();
    start_hpet();
    start_pic();
    // SAFETY: every vector has a gate.
    unsafe { asm!("sti", options(nomem, nostack)) };
    send_ipis(khz);
    println!(
        "attacker: barrage sent; keeping everything running for {} ms",
        attack_ms
    );
    // First half busy (no exits), second half in HLT woken at least every 10 ms by its own
    // LAPIC timer: the vRTC's interrupts should arrive in both.
    spin_ms(khz, attack_ms / 2);
    let rtc_spinning = own_rtc();
    lapic::write(TIMER_DIVIDE, 0b1011);
    lapic::write(LVT_TIMER, LVT_TIMER_PERIODIC | u32::from(WAKE_VECTOR));
    let start = rdtsc();
    let per_tick = lapic_count_for_ms(khz, 10);
    lapic::write(TIMER_INITIAL, per_tick);
    while rdtsc().wrapping_sub(start) < attack_ms / 2 * khz {
        // SAFETY: every vector has a gate; the LAPIC timer wakes the HLT.
        unsafe { asm!("hlt", options(nomem, nostack)) };
    }
    lapic::write(TIMER_INITIAL, 0);
    // SAFETY: the reporting below must see stable counts.
    unsafe { asm!("cli", options(nomem, nostack)) };
    report("at the end");
    let rtc = own_rtc();
    println!(
        "attacker: own rtc interrupts: {} (ioapic {}, pic {}); {} while spinning {} ms, {} while halting {} ms",
        rtc.0 + rtc.1,
        rtc.0,
        rtc.1,
        rtc_spinning.0 + rtc_spinning.1,
        attack_ms / 2,
        rtc.0 + rtc.1 - rtc_spinning.0 - rtc_spinning.1,
        attack_ms / 2
    );
    println!(
        "attacker: own ipis: cpu 0 vector {:#x}: {}, cpu 1 vectors {:#x}/{:#x}/{:#x}: {}/{}/{}, cpu 1 nmi: {}",
        IPI_EACH,
        count(0, IPI_EACH),
        IPI_EACH,
        IPI_ALL_BUT_SELF,
        IPI_LOGICAL_ALL,
        count(1, IPI_EACH),
        count(1, IPI_ALL_BUT_SELF),
        count(1, IPI_LOGICAL_ALL),
        count(1, NMI)
    );
    cmos_write(0x0B, cmos_read(0x0B) & !0x40);
    println!("attacker: done; stopping");
}
