//! `rtvm`: the guest of a VM with `lapic_passthrough` (ACRN's RTVM). Every CPU switches to
//! x2APIC, after which the hypervisor gives it its pCPU's local APIC; the APs listen as the
//! victim's do, and the BSP:
//! * reads its APIC ID and LDR (virtual in ACRN: its vCPU index, and the x2APIC cluster LDR
//!   made from it);
//! * runs the timer (timer.rs) on the physical local APIC: its rate against the TSC, then
//!   one-shot, periodic and TSC-deadline ticks at the programmed period;
//! * sends IPIs to its own vCPUs, which arrive (fixed and NMI, to itself and to its AP), then
//!   tries every other destination (the physical APIC IDs of every pCPU, broadcast), logical
//!   mode and the shorthands with fixed, NMI and INIT: each must be refused with #GP;
//! * prints its verdict, lets its AP end in a triple fault and spins with interrupts on: the
//!   hypervisor must stop the VM while this vCPU runs on its passed-through pCPU.
//!
//! `wait_ms=` delays the IPI part (default 0), so that a victim can listen first.

use crate::idt::{self, count, NMI};
use crate::lapic::{self, rdmsr};
use crate::victim::{self, set_ap_mode, wait_for, AP_MODE_LISTEN_X2APIC};
use crate::{arg_u64, spin_ms, timer};
use core::arch::asm;
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

const OWN_SELF: u8 = 0xC0;
const OWN_AP: u8 = 0xC1;
const FOREIGN: u8 = 0xC2;
const DELIVERY_NMI: u32 = 4 << 8;
const DELIVERY_INIT: u32 = 5 << 8 | 1 << 14;
const LOGICAL: u32 = 1 << 11;
const ALL_EXCLUDING_SELF: u32 = 3 << 18;
const ALL_INCLUDING_SELF: u32 = 2 << 18;
const SELF: u32 = 1 << 18;
const MSR_X2APIC_LDR: u32 = 0x80D;

/// Every ICR value that must not leave the VM: (destination, low word).
fn refused() -> impl Iterator<Item = (u32, u32)> {
    let commands = [u32::from(FOREIGN), DELIVERY_NMI, DELIVERY_INIT];
    let physical = [2u32, 3, 4, 0xFF, 0xFFFF_FFFF]
        .into_iter()
        .flat_map(move |dest| commands.map(|c| (dest, c)));
    let shorthands = [ALL_EXCLUDING_SELF, ALL_INCLUDING_SELF, SELF]
        .into_iter()
        .flat_map(move |s| commands.map(|c| (0, s | c)));
    let logical = [
        (0xFFFF_FFFF, LOGICAL | u32::from(FOREIGN)),
        (3, LOGICAL | DELIVERY_NMI),
    ];
    physical.chain(shorthands).chain(logical)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    idt::load();
    lapic::enable();
    if !lapic::x2apic_offered() {
        println!("rtvm: x2APIC not offered");
        verdict.check(false, "x2APIC not offered");
        return;
    }
    // The BSP first: the guest's register accessors follow the mode it switches to.
    lapic::enter_x2apic();
    lapic::enable();
    set_ap_mode(AP_MODE_LISTEN_X2APIC);
    let aps = p.online.saturating_sub(1);
    let ready = wait_for(khz, 1000, || victim::aps_listening() >= aps);
    verdict.check(ready, "an AP did not start listening");
    let id = lapic::read(lapic::ID);
    let ldr = rdmsr(MSR_X2APIC_LDR) as u32;
    println!("rtvm: x2apic id {:#x} ldr {:#x}", id, ldr);
    verdict.check(id == 0 && ldr == 1, "APIC ID or LDR not the virtual ones");

    timer::count_ticks();
    let period_us = timer::period_us(p);
    println!("rtvm: timer period {} us", period_us);
    // The physical local APIC's IA32_TSC_DEADLINE is the emulator's to reset after it fired
    // (Bochs keeps the last deadline): reported, not judged.
    timer::run_all(
        "x2apic-pt",
        khz,
        period_us * khz / 1000,
        timer::Deadline::Physical,
        verdict,
    );

    spin_ms(khz, arg_u64(p, "wait_ms", 0));
    println!("rtvm: ipis starting");
    // SAFETY: every vector has a gate.
    unsafe { asm!("sti", options(nomem, nostack)) };
    idt::skip_wrmsr_gp(true);
    lapic::send_ipi(0, u32::from(OWN_SELF));
    lapic::send_ipi(0, DELIVERY_NMI);
    if aps > 0 {
        lapic::send_ipi(1, u32::from(OWN_AP));
        lapic::send_ipi(1, DELIVERY_NMI);
    }
    let own = wait_for(khz, 1000, || {
        count(0, OWN_SELF) == 1
            && count(0, NMI) == 1
            && (aps == 0 || (count(1, OWN_AP) == 1 && count(1, NMI) == 1))
    });
    println!(
        "rtvm: own ipis: cpu 0 vector {:#x}: {}, cpu 0 nmi: {}, cpu 1 vector {:#x}: {}, cpu 1 nmi: {}",
        OWN_SELF,
        count(0, OWN_SELF),
        count(0, NMI),
        OWN_AP,
        count(1, OWN_AP),
        count(1, NMI)
    );
    verdict.check(own, "IPIs to its own vCPUs did not arrive");

    let mut tried = 0u32;
    for (dest, low) in refused() {
        lapic::send_ipi(dest, low);
        tried += 1;
    }
    spin_ms(khz, 50);
    idt::skip_wrmsr_gp(false);
    let refused = idt::wrmsr_gps();
    let foreign = (0..idt::MAX_CPUS).map(|c| count(c, FOREIGN)).sum::<u32>();
    println!(
        "rtvm: refused with #GP: {} of {}; vector {:#x} arrived {} time(s)",
        refused, tried, FOREIGN, foreign
    );
    verdict.check(refused == tried, "an IPI outside the VM was not refused");
    verdict.check(foreign == 0, "a refused IPI arrived");
    let nmis = count(0, NMI) + count(1, NMI);
    verdict.check(nmis == 1 + u32::from(aps > 0), "a refused NMI arrived");
    println!("rtvm: ipis done");
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
}

/// After the verdict: the AP triple-faults, the BSP spins until the hypervisor stops the VM.
pub fn end(p: &Platform) -> ! {
    println!("rtvm: spinning until the VM is stopped");
    victim::release_aps(p, true);
    // SAFETY: every vector has a gate.
    unsafe { asm!("sti", options(nomem, nostack)) };
    loop {
        core::hint::spin_loop();
    }
}
