//! `victim`: every CPU counts every vector (NMI included) with interrupts enabled while the
//! guest listens for `listen_ms=` milliseconds of TSC time (default 3000): the BSP spins with
//! `pause`, each AP waits in `sti; hlt`. Before listening the BSP proves that counting works
//! (a self-IPI to itself, a fixed IPI to every AP); at the end it wakes the APs with one more
//! IPI. It passes iff exactly those interrupts arrived (none foreign, none of its own lost),
//! and it was started once.

use crate::idt::{self, count, MAX_CPUS};
use crate::lapic::{self, DFR, LDR};
use crate::{arg_u64, spin_ms};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use guest_common::arch::{halt_forever, rdtsc};
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

/// Self-IPI the BSP sends itself before listening.
const SELF_TEST: u8 = 0xEE;
/// Fixed IPI the BSP sends each AP before listening.
const AP_TEST: u8 = 0xED;
/// Fixed IPI that wakes the APs after `DONE` is set.
const AP_WAKE: u8 = 0xEF;
/// ICR: fixed delivery, physical destination, no shorthand.
const ICR_FIXED: u32 = 0;
/// ICR shorthand "self".
const ICR_SELF: u32 = 1 << 18;

/// What the APs should do, published by the BSP once it has read its command line.
static AP_MODE: AtomicU8 = AtomicU8::new(AP_MODE_UNKNOWN);
const AP_MODE_UNKNOWN: u8 = 0;
pub const AP_MODE_LISTEN: u8 = 1;
pub const AP_MODE_HALT: u8 = 2;
/// Listen, in x2APIC mode (the BSP switched first).
pub const AP_MODE_LISTEN_X2APIC: u8 = 3;
static APS_LISTENING: AtomicU32 = AtomicU32::new(0);
static DONE: AtomicBool = AtomicBool::new(false);
/// Set before `DONE`: the APs end with a triple fault instead of halting (the VM is then
/// stopped by the hypervisor while its BSP still runs).
static APS_CRASH: AtomicBool = AtomicBool::new(false);

/// Tells the APs what to do (they wait for this after coming up).
pub fn set_ap_mode(mode: u8) {
    AP_MODE.store(mode, Ordering::SeqCst);
}

/// Prepares this CPU to take interrupts: the counting IDT, the local APIC software-enabled,
/// and a logical (flat) destination bit per CPU so logical-mode messages can reach it.
pub fn prepare_cpu() {
    idt::load();
    lapic::enable();
    // x2APIC has no DFR, and its LDR is read-only (cluster mode, derived from the ID).
    if !lapic::x2apic() {
        lapic::write(DFR, 0xFFFF_FFFF);
        lapic::write(LDR, 1 << (24 + idt::this_cpu()));
    }
}

/// Every AP: wait for the mode, then (to listen) count interrupts in `sti; hlt` until `DONE`.
pub fn ap_listen(_index: u32) -> ! {
    while AP_MODE.load(Ordering::SeqCst) == AP_MODE_UNKNOWN {
        core::hint::spin_loop();
    }
    match AP_MODE.load(Ordering::SeqCst) {
        AP_MODE_LISTEN => {}
        AP_MODE_LISTEN_X2APIC => lapic::enter_x2apic(),
        _ => halt_forever(),
    }
    prepare_cpu();
    APS_LISTENING.fetch_add(1, Ordering::SeqCst);
    while !DONE.load(Ordering::SeqCst) {
        // SAFETY: the IDT handles every vector; STI's shadow covers HLT, so an interrupt
        // that arrives after the check still wakes it.
        unsafe { asm!("sti; hlt; cli", options(nomem, nostack)) };
    }
    if APS_CRASH.load(Ordering::SeqCst) {
        triple_fault()
    }
    halt_forever()
}

/// An empty IDT, then an exception: #BP, #DF and the shutdown find no gate.
fn triple_fault() -> ! {
    let idtr = [0u16; 5];
    // SAFETY: ends this CPU on purpose; the hypervisor stops the VM at the shutdown.
    unsafe {
        asm!("lidt [{}]", "int3", in(reg) idtr.as_ptr(), options(nostack));
    }
    halt_forever()
}

/// How many APs listen.
pub fn aps_listening() -> u32 {
    APS_LISTENING.load(Ordering::SeqCst)
}

/// Ends the APs' listening: they leave `sti; hlt` at a wake-up IPI, then halt (or, with
/// `crash`, triple-fault).
pub fn release_aps(p: &Platform, crash: bool) {
    APS_CRASH.store(crash, Ordering::SeqCst);
    DONE.store(true, Ordering::SeqCst);
    for id in ap_ids(p) {
        lapic::send_ipi(id, ICR_FIXED | u32::from(AP_WAKE));
    }
}

/// Waits up to `ms` for `cond`, interrupts enabled.
pub fn wait_for(khz: u64, ms: u64, cond: impl Fn() -> bool) -> bool {
    let start = rdtsc();
    while !cond() {
        if rdtsc().wrapping_sub(start) > ms * khz {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// APIC IDs of the APs that are listening: the VM's vCPUs are numbered 0..online.
fn ap_ids(p: &Platform) -> core::ops::Range<u32> {
    1..p.online.min(MAX_CPUS as u32)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    let listen_ms = arg_u64(p, "listen_ms", 3000);
    prepare_cpu();
    set_ap_mode(AP_MODE_LISTEN);
    let aps = p.online.saturating_sub(1);
    let ready = wait_for(khz, 1000, || APS_LISTENING.load(Ordering::SeqCst) >= aps);
    verdict.check(ready, "an AP did not start listening");
    // SAFETY: every vector has a gate.
    unsafe { asm!("sti", options(nomem, nostack)) };

    // Counting works, on every CPU, before anything else is believed.
    lapic::send_ipi(0, ICR_SELF | ICR_FIXED | u32::from(SELF_TEST));
    for id in ap_ids(p) {
        lapic::send_ipi(id, ICR_FIXED | u32::from(AP_TEST));
    }
    let self_test = wait_for(khz, 1000, || {
        count(0, SELF_TEST) == 1 && ap_ids(p).all(|id| count(id as usize, AP_TEST) == 1)
    });
    println!(
        "victim: self-test: cpu 0 got vector {:#x} {} time(s); APs got vector {:#x}: {}",
        SELF_TEST,
        count(0, SELF_TEST),
        AP_TEST,
        ap_ids(p).map(|id| count(id as usize, AP_TEST)).sum::<u32>()
    );
    verdict.check(self_test, "self-test interrupts did not arrive");

    println!(
        "victim: listening for {} ms on {} cpu(s), interrupts enabled",
        listen_ms, p.online
    );
    let quarter = (listen_ms / 4).max(1);
    for n in 1..=4 {
        spin_ms(khz, quarter);
        println!("victim: alive {} ms", n * quarter);
    }
    println!("victim: listening done");
    // SAFETY: counting stops here; the rest is reporting.
    unsafe { asm!("cli", options(nomem, nostack)) };

    release_aps(p, false);
    spin_ms(khz, 10);

    let expected = |cpu: usize, v: u8| -> u32 {
        match (cpu, v) {
            (0, SELF_TEST) => 1,
            (c, AP_TEST | AP_WAKE) if c > 0 && (c as u32) < p.online => 1,
            _ => 0,
        }
    };
    let (mut foreign, mut lost) = (0u32, 0u32);
    for cpu in 0..(p.online as usize).min(MAX_CPUS) {
        let mut total = 0u32;
        for v in 0..=255u8 {
            let n = count(cpu, v);
            total += n;
            let want = expected(cpu, v);
            if n != want {
                println!(
                    "victim: cpu {} vector {:#x}: {} interrupt(s), expected {}",
                    cpu, v, n, want
                );
                foreign += n.saturating_sub(want);
                lost += want.saturating_sub(n);
            }
        }
        println!("victim: cpu {} received {} interrupt(s) in all", cpu, total);
    }
    println!("victim: foreign interrupts: {}", foreign);
    println!("victim: own interrupts lost: {}", lost);
    verdict.check(foreign == 0, "foreign interrupts");
    verdict.check(lost == 0, "own interrupts lost");
}
