//! `timer`: measures the local APIC timer against the TSC, in xAPIC mode and then (when
//! CPUID offers it) in x2APIC mode. For each: the timer's rate (the current-count register
//! over 20 ms of TSC, at divide-by-1 and divide-by-16), then 20 ticks in each of one-shot
//! (re-armed from the handler), periodic and TSC-deadline (next deadline = previous + period)
//! modes, with a period of `period_us=` microseconds (default 10000) of TSC time. Each mode
//! prints the programmed period and the measured average, minimum and maximum interval
//! between interrupts in TSC ticks; then it checks that no tick comes after the timer was
//! stopped. The CPU waits for each tick in `sti; hlt`.
//!
//! The guest fails a mode when a tick came early (one-shot: an interval under 99% of the
//! programmed period; TSC deadline: the handler ran before the deadline), when ticks came after
//! the timer was stopped, when the median interval is outside [`MEDIAN_PERMILLE`] of the
//! programmed period, or the average below [`AVG_MIN_PERMILLE`].

use crate::idt;
use crate::lapic::{
    self, rdmsr, wrmsr, LVT_MASKED, LVT_TIMER, LVT_TIMER_PERIODIC, LVT_TIMER_TSC_DEADLINE,
    MSR_TSC_DEADLINE, TIMER_CURRENT, TIMER_DIVIDE, TIMER_INITIAL,
};
use crate::victim::{set_ap_mode, AP_MODE_HALT};
use crate::{arg_u64, spin_ms};
use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use guest_common::arch::rdtsc;
use guest_common::platform::{Platform, Verdict};
use guest_common::println;

const VECTOR: u8 = 0xE0;
const TICKS: usize = 20;
/// Bounds of the median and the average interval, in thousandths of the programmed period
/// (tests/system/tests/interrupts.rs checks the same). Late delivery only adds: one exit per
/// tick, and stalls of the emulator's thread on a busy host, which delay single ticks by
/// several periods (and coalesce periodic ones). The median of 20 intervals ignores up to 9
/// such outliers, so it stays within -10%/+25%; the average has no upper bound (one stall
/// of 100 ms doubles it), only a lower one: ticks are never early, so it cannot be short by
/// more than the error of the rate measurement. A wrong rate (divider, bus clock) is off by
/// 2x or more and fails the median.
pub const MEDIAN_PERMILLE: (u64, u64) = (900, 1250);
pub const AVG_MIN_PERMILLE: u64 = 950;

/// Divide configuration register values.
const DIVIDE_BY_1: u32 = 0b1011;
const DIVIDE_BY_16: u32 = 0b0011;

#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    OneShot = 1,
    Periodic = 2,
    Deadline = 3,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::OneShot => "one-shot",
            Mode::Periodic => "periodic",
            Mode::Deadline => "tsc-deadline",
        }
    }
}

static MODE: AtomicU8 = AtomicU8::new(0);
static FIRED: AtomicU32 = AtomicU32::new(0);
static TIMES: [AtomicU64; TICKS + 1] = [const { AtomicU64::new(0) }; TICKS + 1];
/// One-shot: the initial count to re-arm with; TSC deadline: the period in TSC ticks.
static RELOAD: AtomicU64 = AtomicU64::new(0);
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static EARLY: AtomicU32 = AtomicU32::new(0);

/// The timer interrupt: time-stamps the tick and re-arms (one-shot, deadline) or stops
/// (periodic, after the last tick) the timer.
fn on_tick(vector: u8) {
    if vector != VECTOR {
        return;
    }
    let now = rdtsc();
    let n = FIRED.fetch_add(1, Ordering::SeqCst) as usize + 1;
    if n <= TICKS {
        TIMES[n].store(now, Ordering::SeqCst);
    }
    let mode = MODE.load(Ordering::SeqCst);
    if mode == Mode::OneShot as u8 && n < TICKS {
        lapic::write(TIMER_INITIAL, RELOAD.load(Ordering::SeqCst) as u32);
    } else if mode == Mode::Deadline as u8 {
        let deadline = DEADLINE.load(Ordering::SeqCst);
        if now < deadline {
            EARLY.fetch_add(1, Ordering::SeqCst);
        }
        if n < TICKS {
            let next = deadline + RELOAD.load(Ordering::SeqCst);
            DEADLINE.store(next, Ordering::SeqCst);
            wrmsr(MSR_TSC_DEADLINE, next);
        }
    } else if mode == Mode::Periodic as u8 && n >= TICKS {
        lapic::write(TIMER_INITIAL, 0);
    }
}

/// The timer's rate: TSC ticks per timer count over about 20 ms, as (tsc, counts). Each count
/// read is bracketed by TSC reads and taken at their midpoint; a sample whose brackets are
/// wider than 0.5% of the interval (the emulator stalled during an exit) is taken again, up to
/// five times, and the narrowest is kept.
fn measure_rate(khz: u64, divide: u32) -> (u64, u64) {
    let mut best = (0, 0, u64::MAX);
    for _ in 0..5 {
        lapic::write(LVT_TIMER, LVT_MASKED | u32::from(VECTOR));
        lapic::write(TIMER_DIVIDE, divide);
        lapic::write(TIMER_INITIAL, u32::MAX);
        let a0 = rdtsc();
        let c0 = lapic::read(TIMER_CURRENT);
        let b0 = rdtsc();
        spin_ms(khz, 20);
        let a1 = rdtsc();
        let c1 = lapic::read(TIMER_CURRENT);
        let b1 = rdtsc();
        lapic::write(TIMER_INITIAL, 0);
        let tsc = (a1 / 2 + b1 / 2).saturating_sub(a0 / 2 + b0 / 2);
        let width = (b0 - a0) + (b1 - a1);
        if width < best.2 {
            best = (tsc, u64::from(c0.saturating_sub(c1)), width);
        }
        if width * 200 < tsc {
            break;
        }
    }
    (best.0, best.1)
}

fn wait_ticks() {
    while (FIRED.load(Ordering::SeqCst) as usize) < TICKS {
        // SAFETY: the IDT handles every vector; STI's shadow covers HLT.
        unsafe { asm!("sti; hlt; cli", options(nomem, nostack)) };
    }
}

/// Whether to run the TSC-deadline mode, and on which local APIC.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Not offered: skipped.
    Off,
    /// The hypervisor's virtual LAPIC: IA32_TSC_DEADLINE must read 0 after the last tick
    /// (SDM: the timer clears it when it fires).
    Virtual,
    /// The hardware's (a passed-through LAPIC): the reading is printed, not judged.
    Physical,
}

/// Runs one mode for [`TICKS`] ticks; false if it failed.
fn run_mode(
    apic: &str,
    mode: Mode,
    khz: u64,
    period_tsc: u64,
    rate: (u64, u64),
    deadline: Deadline,
) -> bool {
    FIRED.store(0, Ordering::SeqCst);
    EARLY.store(0, Ordering::SeqCst);
    MODE.store(mode as u8, Ordering::SeqCst);
    lapic::write(TIMER_DIVIDE, DIVIDE_BY_1);
    // The initial count for the period, and the period it really programs.
    let count = (u128::from(period_tsc) * u128::from(rate.1) / u128::from(rate.0))
        .clamp(1, u128::from(u32::MAX)) as u64;
    let programmed = match mode {
        Mode::Deadline => period_tsc,
        _ => (u128::from(count) * u128::from(rate.0) / u128::from(rate.1)) as u64,
    };
    RELOAD.store(
        if mode == Mode::Deadline {
            period_tsc
        } else {
            count
        },
        Ordering::SeqCst,
    );
    let lvt = u32::from(VECTOR)
        | match mode {
            Mode::OneShot => 0,
            Mode::Periodic => LVT_TIMER_PERIODIC,
            Mode::Deadline => LVT_TIMER_TSC_DEADLINE,
        };
    lapic::write(LVT_TIMER, lvt);
    let start = rdtsc();
    TIMES[0].store(start, Ordering::SeqCst);
    if mode == Mode::Deadline {
        DEADLINE.store(start + period_tsc, Ordering::SeqCst);
        wrmsr(MSR_TSC_DEADLINE, start + period_tsc);
    } else {
        lapic::write(TIMER_INITIAL, count as u32);
    }
    wait_ticks();
    let deadline_after = if mode == Mode::Deadline {
        rdmsr(MSR_TSC_DEADLINE)
    } else {
        0
    };
    lapic::write(LVT_TIMER, LVT_MASKED | u32::from(VECTOR));
    lapic::write(TIMER_INITIAL, 0);
    wrmsr(MSR_TSC_DEADLINE, 0);
    // Nothing may come after the stop.
    // SAFETY: as in `wait_ticks`.
    unsafe { asm!("sti", options(nomem, nostack)) };
    spin_ms(khz, 3 * period_tsc / khz.max(1) + 1);
    // SAFETY: as above.
    unsafe { asm!("cli", options(nomem, nostack)) };
    let after_stop = FIRED.load(Ordering::SeqCst) as usize - TICKS;

    let t = |i: usize| TIMES[i].load(Ordering::SeqCst);
    let intervals = (1..=TICKS).map(|i| t(i) - t(i - 1));
    let min = intervals.clone().min().unwrap_or(0);
    let max = intervals.max().unwrap_or(0);
    let avg = (t(TICKS) - t(0)) / TICKS as u64;
    let permille = avg * 1000 / programmed.max(1);
    let mut sorted = [0u64; TICKS];
    (1..=TICKS).for_each(|i| sorted[i - 1] = t(i) - t(i - 1));
    sorted.sort_unstable();
    let median = (sorted[TICKS / 2 - 1] + sorted[TICKS / 2]) / 2;
    let median_permille = median * 1000 / programmed.max(1);
    let early = match mode {
        Mode::OneShot => (1..=TICKS)
            .filter(|&i| (t(i) - t(i - 1)) * 100 < programmed * 99)
            .count() as u32,
        Mode::Deadline => EARLY.load(Ordering::SeqCst),
        Mode::Periodic => 0,
    };
    println!(
        "timer: {} {}: programmed={} avg={} median={} min={} max={} ticks={} avg_permille={} median_permille={} early={} after_stop={}",
        apic,
        mode.name(),
        programmed,
        avg,
        median,
        min,
        max,
        TICKS,
        permille,
        median_permille,
        early,
        after_stop
    );
    if mode == Mode::Deadline && deadline_after != 0 {
        let judged = if deadline == Deadline::Physical {
            "the hardware's, not judged"
        } else {
            "expected 0"
        };
        println!(
            "timer: {} tsc-deadline: IA32_TSC_DEADLINE reads {:#x} after the last tick, {}",
            apic, deadline_after, judged
        );
    }
    early == 0
        && after_stop == 0
        && (deadline_after == 0 || deadline == Deadline::Physical)
        && (MEDIAN_PERMILLE.0..=MEDIAN_PERMILLE.1).contains(&median_permille)
        && permille >= AVG_MIN_PERMILLE
}

/// Measures the rate and runs every mode in the current APIC mode.
pub fn run_all(apic: &str, khz: u64, period_tsc: u64, deadline: Deadline, verdict: &mut Verdict) {
    lapic::enable();
    println!("timer: {} apic id {:#x}", apic, lapic::read(lapic::ID));
    let rate = measure_rate(khz, DIVIDE_BY_1);
    let rate16 = measure_rate(khz, DIVIDE_BY_16);
    println!(
        "timer: {} rate: divide 1: {} tsc ticks per 1000 counts; divide 16: {} tsc ticks per 1000 counts",
        apic,
        rate.0 * 1000 / rate.1.max(1),
        rate16.0 * 1000 / rate16.1.max(1)
    );
    if rate.1 == 0 || rate16.1 == 0 {
        println!("timer: {} timer does not count", apic);
        verdict.check(false, "timer does not count");
        return;
    }
    for mode in [Mode::OneShot, Mode::Periodic, Mode::Deadline] {
        if mode == Mode::Deadline && deadline == Deadline::Off {
            continue;
        }
        let ok = run_mode(apic, mode, khz, period_tsc, rate, deadline);
        verdict.check(ok, "timer mode out of bounds");
    }
}

/// Counts the timer's ticks from here on (the IDT hook).
pub fn count_ticks() {
    idt::on_vector(on_tick);
}

/// The tick period of `period_us=` microseconds (default 10 ms).
pub fn period_us(p: &Platform) -> u64 {
    arg_u64(p, "period_us", 10_000).clamp(100, 1_000_000)
}

pub fn run(p: &Platform, khz: u64, verdict: &mut Verdict) {
    set_ap_mode(AP_MODE_HALT);
    idt::load();
    count_ticks();
    let period_us = period_us(p);
    let period_tsc = period_us * khz / 1000;
    let deadline = lapic::tsc_deadline_offered();
    println!(
        "timer: period {} us = {} tsc ticks; tsc-deadline offered: {}; x2apic offered: {}",
        period_us,
        period_tsc,
        deadline,
        lapic::x2apic_offered()
    );
    verdict.check(deadline, "TSC deadline not offered");
    let deadline = if deadline {
        Deadline::Virtual
    } else {
        Deadline::Off
    };
    run_all("xapic", khz, period_tsc, deadline, verdict);
    if lapic::x2apic_offered() {
        lapic::enter_x2apic();
        run_all("x2apic", khz, period_tsc, deadline, verdict);
    } else {
        verdict.check(false, "x2APIC not offered");
    }
}
