//! The hypervisor's own interrupts. Every physical interrupt exits the guest and lands here
//! (SVM INTR intercept, VMX external-interrupt exiting): the handler records it for the pCPU
//! loop and signals EOI. The loop then acts on it: its timer (virtual LAPIC timers, scheduler
//! ticks) and kicks from other pCPUs (a vCPU of theirs needs this one to re-evaluate).
//! The legacy platform devices (8259 PICs, PIT, RTC interrupts, IOAPIC pins) are silenced at
//! boot: no guest reaches them, and they must not interrupt anyone.
//!
//! Device interrupts remapped to a VM (`devices::ptirq`) arrive on vectors this module is
//! told about: a level-triggered one has its IOAPIC pin masked before the EOI, so the line
//! the device still holds does not interrupt again before the guest has served it.
//!
//! A pCPU whose local APIC a vCPU owns (`lapic_passthrough`) is different: every interrupt
//! there is the guest's. The hypervisor arms no timer on it and kicks it with an NMI, as ACRN
//! does; an interrupt the hypervisor takes there (while the vCPU halts) keeps its ISR bit and
//! is handed to the guest, whose EOI goes to the physical APIC.

use super::cpu::{this_cpu, MAX_PCPUS};
use super::{inb, lapic, outb, phys_read32, phys_write32, wrmsr, Leaf1Ecx};
use crate::devices::ioapic::RteFlags;
use crate::devices::lapic::LvtFlags;
use bitflags::bitflags;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use x86_64::instructions::{interrupts, nop};

/// The pCPU's one-shot timer.
pub const TIMER_VECTOR: u8 = 0xEF;
/// The IOMMU's fault event: a DMA remapping unit recorded a blocked request.
pub const DMA_FAULT_VECTOR: u8 = 0xF1;
/// A notification IPI: the target pCPU re-reads what other pCPUs changed for it.
pub const KICK_VECTOR: u8 = 0xF2;
/// The physical LAPIC's spurious vector (no EOI).
pub const SPURIOUS_VECTOR: u8 = 0xFF;

bitflags! {
    /// What [`take_events`] reports.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Events: u32 {
        const TIMER = 1 << 0;
        const KICK = 1 << 1;
        const DEVICE = 1 << 2;
        const DMA_FAULT = 1 << 3;
    }
}

static EVENTS: [AtomicU32; MAX_PCPUS] = [const { AtomicU32::new(0) }; MAX_PCPUS];
/// Vectors of device interrupts taken on each pCPU and not yet handled (256 bits).
static DEVICE_VECTORS: [[AtomicU64; 4]; MAX_PCPUS] =
    [const { [const { AtomicU64::new(0) }; 4] }; MAX_PCPUS];
/// Interrupts taken per pCPU and vector, for the record and the shell's `int`.
static COUNTS: [[AtomicU32; 256]; MAX_PCPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_PCPUS];
/// pCPUs whose local APIC a vCPU owns.
static PASSED_THROUGH: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];
/// Guest vectors taken by the hypervisor on such a pCPU, not yet injected (256 bits).
static GUEST_VECTORS: [[AtomicU64; 4]; MAX_PCPUS] =
    [const { [const { AtomicU64::new(0) }; 4] }; MAX_PCPUS];
/// Remapped device vectors: the IOAPIC's address | pin << 1 | level, with bit 0 set (0 = not
/// remapped). IOAPIC bases are 1 KiB aligned at least, so the low bits are free.
static REMAPPED: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];
/// Serializes IOREGSEL/IOWIN pairs of every physical IOAPIC (taken with interrupts off, also
/// by the interrupt handler).
static IOAPIC_LOCK: spin::Mutex<()> = spin::Mutex::new(());
/// Set by the sender of a kick NMI: the next NMI on that pCPU is the hypervisor's.
static KICK_NMI: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];
/// An NMI on a passed-through pCPU that was not a kick: the guest's.
static GUEST_NMI: [AtomicBool; MAX_PCPUS] = [const { AtomicBool::new(false) }; MAX_PCPUS];

fn cpu() -> usize {
    this_cpu().min(MAX_PCPUS - 1)
}

#[no_mangle]
extern "C" fn hv_interrupt(vector: u64) {
    let cpu = cpu();
    let vector = vector as u8;
    COUNTS[cpu][vector as usize].fetch_add(1, Ordering::Relaxed);
    if PASSED_THROUGH[cpu].load(Ordering::Acquire) {
        // The guest's: no EOI here, the guest sends it after its handler ran.
        if vector != SPURIOUS_VECTOR {
            GUEST_VECTORS[cpu][vector as usize / 64].fetch_or(1 << (vector % 64), Ordering::AcqRel);
        }
        return;
    }
    match vector {
        SPURIOUS_VECTOR => return,
        TIMER_VECTOR => {
            EVENTS[cpu].fetch_or(Events::TIMER.bits(), Ordering::AcqRel);
        }
        KICK_VECTOR => {
            EVENTS[cpu].fetch_or(Events::KICK.bits(), Ordering::AcqRel);
        }
        DMA_FAULT_VECTOR => {
            EVENTS[cpu].fetch_or(Events::DMA_FAULT.bits(), Ordering::AcqRel);
        }
        v => {
            let remapped = REMAPPED[v as usize].load(Ordering::Acquire);
            if remapped & 1 != 0 && remapped & 2 != 0 {
                let pin = ((remapped >> 2) & 0xFF) as u32;
                mask_pin(remapped & !0x3FF, pin);
            }
            DEVICE_VECTORS[cpu][v as usize / 64].fetch_or(1 << (v % 64), Ordering::AcqRel);
            EVENTS[cpu].fetch_or(Events::DEVICE.bits(), Ordering::AcqRel);
        }
    }
    lapic::write(lapic::EOI, 0);
}

/// An NMI reached this pCPU (through the IDT, or as a VMX exit that consumed it): a kick if
/// one was sent, else the guest's (only pCPUs whose local APIC a guest owns get NMIs).
#[no_mangle]
pub extern "C" fn hv_nmi() {
    let cpu = cpu();
    if KICK_NMI[cpu].swap(false, Ordering::AcqRel) {
        EVENTS[cpu].fetch_or(Events::KICK.bits(), Ordering::AcqRel);
    } else if PASSED_THROUGH[cpu].load(Ordering::Acquire) {
        GUEST_NMI[cpu].store(true, Ordering::Release);
    }
}

/// The events recorded for the calling pCPU since the last call.
pub fn take_events() -> Events {
    Events::from_bits_retain(EVENTS[this_cpu().min(MAX_PCPUS - 1)].swap(0, Ordering::AcqRel))
}

/// Device interrupt vectors taken on the calling pCPU since the last call.
pub fn take_device_vectors() -> [u64; 4] {
    let cpu = this_cpu().min(MAX_PCPUS - 1);
    core::array::from_fn(|i| DEVICE_VECTORS[cpu][i].swap(0, Ordering::AcqRel))
}

/// How many interrupts of `vector` the hypervisor took (all pCPUs).
pub fn count(vector: u8) -> u32 {
    COUNTS
        .iter()
        .map(|c| c[vector as usize].load(Ordering::Relaxed))
        .fold(0, u32::wrapping_add)
}

/// How many interrupts of `vector` pCPU `pcpu` took.
pub fn count_on(pcpu: usize, vector: u8) -> u32 {
    COUNTS
        .get(pcpu)
        .map_or(0, |c| c[vector as usize].load(Ordering::Relaxed))
}

/// Takes the interrupts the LAPIC holds for this pCPU (after an exit for one): they are
/// recognized right after `sti`, before the `cli`.
pub fn take_pending() {
    // Only this CPU's interrupt flag changes; the handlers touch only atomics.
    interrupts::enable();
    nop();
    interrupts::disable();
}

/// Sleeps until an interrupt arrives (`sti; hlt` leaves no window between the two).
pub fn wait_for_interrupt() {
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// Kicks pCPU `pcpu`, whose local APIC has `apic_id`: the kick IPI, or an NMI when a guest
/// owns that local APIC (no vector of it is the hypervisor's there).
pub fn kick(pcpu: usize, apic_id: u32) {
    match PASSED_THROUGH.get(pcpu) {
        Some(pt) if pt.load(Ordering::Acquire) => {
            KICK_NMI[pcpu].store(true, Ordering::Release);
            lapic::send_nmi(apic_id);
        }
        _ => lapic::send_fixed(apic_id, KICK_VECTOR),
    }
}

/// Whether a guest owns the local APIC of pCPU `pcpu`.
pub fn passed_through_on(pcpu: usize) -> bool {
    PASSED_THROUGH
        .get(pcpu)
        .is_some_and(|p| p.load(Ordering::Acquire))
}

/// Whether a guest owns the calling pCPU's local APIC.
pub fn passed_through() -> bool {
    PASSED_THROUGH[cpu()].load(Ordering::Acquire)
}

/// Hands the calling pCPU's local APIC to its guest: the hypervisor's timer stopped, what it
/// had pending taken first, its timer LVT masked.
pub fn pass_through() {
    arm_timer(None);
    take_pending();
    let _ = take_events();
    lapic::write(LVT_TIMER, LvtFlags::MASKED.bits() | TIMER_VECTOR as u32);
    let cpu = cpu();
    for w in &GUEST_VECTORS[cpu] {
        w.store(0, Ordering::Release);
    }
    GUEST_NMI[cpu].store(false, Ordering::Release);
    PASSED_THROUGH[cpu].store(true, Ordering::Release);
}

/// Takes the calling pCPU's local APIC back from a guest that is gone: its timers stopped,
/// its LVTs masked, TPR 0, every in-service interrupt ended, the hypervisor's SVR.
pub fn take_back() {
    let cpu = cpu();
    PASSED_THROUGH[cpu].store(false, Ordering::Release);
    let leaf1 = Leaf1Ecx::from_bits_retain(super::cpuid(1, 0)[2]);
    if leaf1.contains(Leaf1Ecx::TSC_DEADLINE) {
        wrmsr(lapic::MSR_TSC_DEADLINE, 0);
    }
    lapic::write(TIMER_INITIAL, 0);
    let max_lvt = (lapic::read(lapic::VERSION) >> 16) & 0xFF;
    let masked = LvtFlags::MASKED.bits();
    lapic::write(LVT_TIMER, masked | TIMER_VECTOR as u32);
    lapic::write(lapic::LVT_LINT0, masked);
    lapic::write(lapic::LVT_LINT1, masked);
    lapic::write(lapic::LVT_ERROR, masked);
    if max_lvt >= 4 {
        lapic::write(lapic::LVT_PMC, masked);
    }
    if max_lvt >= 5 {
        lapic::write(lapic::LVT_THERMAL, masked);
    }
    lapic::write(lapic::TPR, 0);
    lapic::write(lapic::ESR, 0);
    lapic::write(
        lapic::SVR,
        crate::devices::lapic::SvrFlags::APIC_ENABLED.bits() | SPURIOUS_VECTOR as u32,
    );
    // One EOI ends the highest in-service interrupt; at most 256 can be in service.
    for _ in 0..256 {
        if (0..8).all(|i| lapic::read(lapic::ISR + 0x10 * i) == 0) {
            break;
        }
        lapic::write(lapic::EOI, 0);
    }
    for w in &GUEST_VECTORS[cpu] {
        w.store(0, Ordering::Release);
    }
    GUEST_NMI[cpu].store(false, Ordering::Release);
}

/// The highest guest vector the hypervisor took on this pCPU and has not handed over yet.
pub fn take_guest_vector() -> Option<u8> {
    let words = &GUEST_VECTORS[cpu()];
    for i in (0..4).rev() {
        let w = words[i].load(Ordering::Acquire);
        if w != 0 {
            let bit = 63 - w.leading_zeros();
            words[i].fetch_and(!(1 << bit), Ordering::AcqRel);
            return Some((i * 64) as u8 + bit as u8);
        }
    }
    None
}

pub fn guest_vector_pending() -> bool {
    GUEST_VECTORS[cpu()]
        .iter()
        .any(|w| w.load(Ordering::Acquire) != 0)
}

/// Whether the guest of this pCPU got an NMI the hypervisor took for it.
pub fn take_guest_nmi() -> bool {
    GUEST_NMI[cpu()].swap(false, Ordering::AcqRel)
}

const LVT_TIMER: u32 = lapic::LVT_TIMER;
const TIMER_INITIAL: u32 = 0x380;
const TIMER_CURRENT: u32 = 0x390;
const TIMER_DIVIDE: u32 = 0x3E0;

/// LAPIC timer ticks per 2^20 TSC ticks (divide by 1), measured at boot.
static LAPIC_PER_TSC: AtomicU64 = AtomicU64::new(0);

/// Measures the LAPIC timer against the TSC (BSP, once, after the TSC is calibrated) and
/// returns the LAPIC timer frequency in kHz.
pub fn calibrate_timer() -> u64 {
    lapic::write(TIMER_DIVIDE, 0xB); // divide by 1
    lapic::write(LVT_TIMER, LvtFlags::MASKED.bits() | TIMER_VECTOR as u32);
    lapic::write(TIMER_INITIAL, u32::MAX);
    let t0 = crate::tsc::now();
    super::delay_us(10_000);
    let left = lapic::read(TIMER_CURRENT);
    let t1 = crate::tsc::now();
    lapic::write(TIMER_INITIAL, 0);
    let lapic_ticks = (u32::MAX - left) as u64;
    let tsc_ticks = t1.wrapping_sub(t0).max(1);
    let ratio = ((lapic_ticks as u128) << 20) / tsc_ticks as u128;
    LAPIC_PER_TSC.store(ratio.max(1) as u64, Ordering::Relaxed);
    lapic_ticks * 100 / 1000
}

/// Arms this pCPU's timer to fire at TSC `deadline` (at once if it has passed), replacing
/// any earlier deadline; `None` disarms it.
pub fn arm_timer(deadline: Option<u64>) {
    let Some(deadline) = deadline else {
        lapic::write(TIMER_INITIAL, 0);
        return;
    };
    let delta = deadline.saturating_sub(crate::tsc::now()) as u128;
    let count = (delta * LAPIC_PER_TSC.load(Ordering::Relaxed) as u128) >> 20;
    lapic::write(TIMER_DIVIDE, 0xB);
    lapic::write(LVT_TIMER, TIMER_VECTOR as u32);
    lapic::write(TIMER_INITIAL, count.clamp(1, u32::MAX as u128) as u32);
}

/// Silences the legacy platform: the 8259 pair remapped to vectors 0x20-0x2F and masked, PIT
/// channel 0 stopped, the RTC's interrupt sources off, and every IOAPIC pin masked. From here
/// on only the hypervisor's timer and IPIs (and, later, passed-through devices whose pins it
/// unmasks itself) interrupt a pCPU.
pub fn quiesce_platform(ioapics: impl Iterator<Item = u64>) {
    // ICW1-ICW4 for both PICs, then OCW1 masks everything.
    for (cmd, data, base, cascade) in [(0x20, 0x21, 0x20, 0x04), (0xA0, 0xA1, 0x28, 0x02)] {
        outb(cmd, 0x11);
        outb(data, base);
        outb(data, cascade);
        outb(data, 0x01);
        outb(data, 0xFF);
    }
    // PIT channel 0, mode 0, waiting for a count that never comes: OUT stays low.
    outb(0x43, 0x30);
    // RTC register B: periodic, alarm and update-ended interrupts off; C read clears flags.
    outb(0x70, 0x8B);
    let b = inb(0x71);
    outb(0x70, 0x8B);
    outb(0x71, b & !0x70);
    outb(0x70, 0x8C);
    let _ = inb(0x71);
    outb(0x70, 0x0D);
    for base in ioapics {
        phys_write32(base, 1);
        let pins = ((phys_read32(base + 0x10) >> 16) & 0xFF) + 1;
        for pin in 0..pins {
            phys_write32(base, 0x10 + 2 * pin);
            phys_write32(base + 0x10, RteFlags::MASKED.bits() as u32);
        }
    }
}

/// Tells the interrupt handler that `vector` is the remapped interrupt of pin `pin` of the
/// IOAPIC at `ioapic`, level-triggered or not.
pub fn set_remapped(vector: u8, ioapic: u64, pin: u32, level: bool) {
    let word = ioapic | ((pin as u64 & 0xFF) << 2) | (level as u64) << 1 | 1;
    REMAPPED[vector as usize].store(word, Ordering::Release);
}

/// Writes redirection entry `pin` of the physical IOAPIC at `ioapic`: masked first, then the
/// destination, then the low half, so no half-written entry is ever live.
pub fn write_ioapic_rte(ioapic: u64, pin: u32, rte: u64) {
    let _guard = IOAPIC_LOCK.lock();
    let index = 0x10 + 2 * pin;
    // Masked in the new entry's trigger mode: a level line that rises meanwhile is kept.
    phys_write32(ioapic, index);
    phys_write32(ioapic + 0x10, (rte | RteFlags::MASKED.bits()) as u32);
    phys_write32(ioapic, index + 1);
    phys_write32(ioapic + 0x10, (rte >> 32) as u32);
    phys_write32(ioapic, index);
    phys_write32(ioapic + 0x10, rte as u32);
}

/// Ends a level interrupt of pin `pin` (vector `vector`) at the IOAPIC at `ioapic`: its EOI
/// register (IOAPIC version 0x20 and up) clears the pin's Remote IRR, as the local APIC's EOI
/// broadcast does for a level interrupt it accepted as one (a remapped interrupt may arrive
/// as an edge); an older IOAPIC gets the pin switched to edge and back, which clears it too.
pub fn ioapic_eoi(ioapic: u64, pin: u32, vector: u8) {
    let _guard = IOAPIC_LOCK.lock();
    phys_write32(ioapic, 1);
    if phys_read32(ioapic + 0x10) & 0xFF >= 0x20 {
        phys_write32(ioapic + 0x40, u32::from(vector));
        return;
    }
    let index = 0x10 + 2 * pin;
    phys_write32(ioapic, index);
    let low = phys_read32(ioapic + 0x10);
    let edge = (low | RteFlags::MASKED.bits() as u32) & !(RteFlags::LEVEL.bits() as u32);
    phys_write32(ioapic + 0x10, edge);
    phys_write32(ioapic + 0x10, low);
}

fn mask_pin(ioapic: u64, pin: u32) {
    let _guard = IOAPIC_LOCK.lock();
    let index = 0x10 + 2 * pin;
    phys_write32(ioapic, index);
    let low = phys_read32(ioapic + 0x10);
    phys_write32(ioapic, index);
    phys_write32(ioapic + 0x10, low | RteFlags::MASKED.bits() as u32);
}
