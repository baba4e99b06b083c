//! TSC frequency, measured once at boot against PIT channel 2. Guests read it from CPUID
//! 0x40000010 (ACRN's timing leaf), and the hypervisor's own delays use it.

use core::sync::atomic::{AtomicU32, Ordering};

/// The PIT's input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Channel 2 count of one measurement: 11932 ticks, i.e. 10 ms.
#[cfg(any(target_os = "none", test))]
const PIT_COUNT: u16 = 11_932;
/// No real TSC runs faster than this (kHz); a measurement loop that lasts longer has failed.
const MAX_TSC_KHZ: u64 = 20_000_000;

static TSC_KHZ: AtomicU32 = AtomicU32::new(0);

/// The TSC of the calling CPU.
pub fn now() -> u64 {
    // SAFETY: rdtsc has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC kHz from the TSC ticks that elapsed during `pit_ticks` PIT input clocks.
pub fn khz_from(tsc_ticks: u64, pit_ticks: u64) -> Option<u32> {
    if pit_ticks == 0 {
        return None;
    }
    let khz = (tsc_ticks as u128 * PIT_HZ as u128 / (pit_ticks as u128 * 1000)) as u64;
    (1..=MAX_TSC_KHZ).contains(&khz).then_some(khz as u32)
}

/// Bounds (fewest, most) on the TSC ticks of one 10 ms window: channel 2 in mode 0 (OUT goes
/// high at terminal count, visible in port 0x61 bit 5), gate raised through port 0x61 bit 0
/// with the speaker off. The window starts at the write of the count's high byte and ends at
/// the OUT edge, which lies between the last poll that saw it low and the one that saw it high.
#[cfg(target_os = "none")]
fn measure_once() -> Option<(u64, u64)> {
    use crate::arch::x86::{inb, outb};
    let port61 = inb(0x61);
    outb(0x61, (port61 & !0x02) | 0x01);
    outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
    outb(0x42, PIT_COUNT as u8);
    let before_start = now();
    outb(0x42, (PIT_COUNT >> 8) as u8);
    let after_start = now();
    // Give up after what 10 ms would be at MAX_TSC_KHZ, times ten: no PIT, or it is stuck.
    let limit = MAX_TSC_KHZ * 100;
    let mut last_low = after_start;
    let result = loop {
        let high = inb(0x61) & 0x20 != 0;
        let now = now();
        if high {
            break Some((
                last_low.saturating_sub(after_start),
                now.saturating_sub(before_start),
            ));
        }
        if now.wrapping_sub(before_start) > limit {
            break None;
        }
        last_low = now;
    };
    outb(0x61, port61);
    result
}

/// Measures the TSC and records it: of up to eight windows, the one measured most tightly (a
/// host preemption or an SMI only widens a window's bounds), if it is tight to 0.1%. Returns the
/// frequency in kHz, or None when the PIT does not answer or no window is tight.
#[cfg(target_os = "none")]
pub fn calibrate() -> Option<u32> {
    let (lo, hi) = (0..8)
        .filter_map(|_| measure_once())
        .min_by_key(|&(lo, hi)| hi.saturating_sub(lo))?;
    if hi.saturating_sub(lo) > hi / 1000 {
        return None;
    }
    let khz = khz_from(lo / 2 + hi / 2, PIT_COUNT as u64)?;
    TSC_KHZ.store(khz, Ordering::Relaxed);
    Some(khz)
}

/// The calibrated TSC frequency in kHz, 0 before (or without) calibration.
pub fn khz() -> u32 {
    TSC_KHZ.load(Ordering::Relaxed)
}

/// The frequency time conversions use: the calibrated one, or 1 GHz without calibration.
fn khz_for_time() -> u128 {
    match khz() {
        0 => 1_000_000,
        k => u128::from(k),
    }
}

/// Nanoseconds of `tsc` TSC ticks.
pub fn nanos(tsc: u64) -> u64 {
    (u128::from(tsc) * 1_000_000 / khz_for_time()).min(u128::from(u64::MAX)) as u64
}

/// TSC ticks of `ns` nanoseconds.
pub fn ticks(ns: u64) -> u64 {
    (u128::from(ns) * khz_for_time() / 1_000_000).min(u128::from(u64::MAX)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_pit_windows_to_khz() {
        // 2.6 GHz for 10 ms is 26,000,000 TSC ticks (within rounding of the 11932-tick window).
        let khz = khz_from(26_001_000, PIT_COUNT as u64).unwrap();
        assert!((2_599_000..=2_601_000).contains(&khz), "{khz}");
        assert_eq!(khz_from(1_193_182, 1_193_182), Some(1_193));
    }

    #[test]
    fn converts_between_ticks_and_nanoseconds() {
        TSC_KHZ.store(2_000_000, Ordering::Relaxed);
        assert_eq!(nanos(2_000), 1_000);
        assert_eq!(ticks(1_000), 2_000);
        assert_eq!(ticks(u64::MAX), u64::MAX);
        TSC_KHZ.store(0, Ordering::Relaxed);
        assert_eq!(nanos(5), 5);
    }

    #[test]
    fn rejects_impossible_measurements() {
        assert_eq!(khz_from(0, PIT_COUNT as u64), None);
        assert_eq!(khz_from(1000, 0), None);
        assert_eq!(khz_from(u64::MAX, 1), None);
    }
}
