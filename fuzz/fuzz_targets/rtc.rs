//! The virtual MC146818 RTC (`devices::rtc`) driven by a sequence of index/data port accesses
//! with the TSC advancing by arbitrary amounts (and an arbitrary start time, TSC frequency and
//! wall clock). What must hold: nothing panics; the time registers always read a valid value in
//! the format register B selects (BCD digits or binary; seconds and minutes 0-59, hours 0-23
//! or 1-12 with the PM bit, day of week 1-7, day 1-31, month 1-12, year and century 0-99);
//! register D reads VRT; `next_event`, when Some, is not in the past; `tick` reports a rising
//! IRQ output only while IRQF is set; an undecoded port reads 0xFF.
#![no_main]

use acrn_hypervisor::devices::rtc::{Vrtc, DATA_PORT, INDEX_PORT};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Action {
    Select {
        index: u8,
    },
    Read,
    Write {
        value: u8,
    },
    /// Selects and writes in one go (the usual guest sequence).
    Set {
        index: u8,
        value: u8,
    },
    ReadOther {
        port: u16,
    },
    Advance {
        ticks: u32,
    },
    Jump {
        ticks: u64,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    epoch_seconds: i64,
    start_tsc: u64,
    tsc_hz: u32,
    actions: Vec<Action>,
}

fn read(rtc: &mut Vrtc, index: u8, now: u64) -> u8 {
    rtc.io_write(INDEX_PORT, index, now);
    rtc.io_read(DATA_PORT, now)
}

/// Reads every time register and checks it (restores the index afterwards).
fn check_time(rtc: &mut Vrtc, index: u8, now: u64) {
    let b = read(rtc, 0x0B, now);
    let binary = b & 0x04 != 0;
    let h24 = b & 0x02 != 0;
    let decode = |reg: u8, raw: u8| -> u8 {
        if binary {
            raw
        } else {
            assert!(
                raw >> 4 <= 9 && raw & 0xF <= 9,
                "register {reg:#x}: {raw:#x} is not BCD"
            );
            (raw >> 4) * 10 + (raw & 0xF)
        }
    };
    for (reg, lo, hi) in [
        (0x00, 0, 59),
        (0x02, 0, 59),
        (0x06, 1, 7),
        (0x07, 1, 31),
        (0x08, 1, 12),
        (0x09, 0, 99),
        (0x32, 0, 99),
    ] {
        let value = decode(reg, read(rtc, reg, now));
        assert!(
            (lo..=hi).contains(&value),
            "register {reg:#x} reads {value}"
        );
    }
    let raw = read(rtc, 0x04, now);
    if h24 {
        let hour = decode(4, raw);
        assert!(hour <= 23, "hour {hour} (24 h)");
    } else {
        let hour = decode(4, raw & 0x7F);
        assert!((1..=12).contains(&hour), "hour {hour} (12 h, raw {raw:#x})");
    }
    assert_eq!(read(rtc, 0x0D, now), 0x80, "register D without VRT");
    rtc.io_write(INDEX_PORT, index, now);
}

fuzz_target!(|input: Input| {
    let mut now = input.start_tsc;
    // Small frequencies make seconds pass within a few actions.
    let hz = input.tsc_hz as u64;
    let mut rtc = Vrtc::new(input.epoch_seconds, now, hz);
    let mut index = 0u8;
    for action in input.actions.iter().take(256) {
        match *action {
            Action::Select { index: i } => {
                index = i;
                rtc.io_write(INDEX_PORT, i, now);
            }
            Action::Read => {
                rtc.io_read(DATA_PORT, now);
            }
            Action::Write { value } => rtc.io_write(DATA_PORT, value, now),
            Action::Set { index: i, value } => {
                index = i;
                rtc.io_write(INDEX_PORT, i, now);
                rtc.io_write(DATA_PORT, value, now);
            }
            Action::ReadOther { port } => {
                let value = rtc.io_read(port, now);
                if !Vrtc::claims_port(port) {
                    assert_eq!(value, 0xFF, "undecoded port {port:#x}");
                }
            }
            Action::Advance { ticks } => now = now.saturating_add(ticks as u64),
            Action::Jump { ticks } => now = now.saturating_add(ticks),
        }
        if rtc.tick(now) {
            assert!(rtc.irq_asserted(), "IRQ rose without IRQF");
        }
        if let Some(event) = rtc.next_event(now) {
            assert!(event >= now, "next event {event} before now {now}");
        }
        // Reading register C clears the flags: checking must not disturb the model there.
        check_time(&mut rtc, index, now);
    }
});
