//! A virtual MC146818 real-time clock and CMOS memory behind ports 0x70 (index) and 0x71
//! (data), keeping the real time: a wall-clock base (seconds since 1970-01-01 UTC, read at
//! construction) plus the TSC time elapsed since.
//!
//! Registers: time and date 0x00-0x09 and the century at 0x32 (IBM PC convention), in BCD or
//! binary (register B bit 2) and 12/24-hour (bit 1) form; the three alarms with "don't care"
//! values (0xC0-0xFF); register A with the update-in-progress flag (raised 244 us before each
//! second change, the datasheet's t_BUC), the divider (a divider reset stops the clock; the
//! first update follows 500 ms after it is released) and the periodic rate; register B (SET
//! stops updates, not the periodic flag, and lets the guest set the time, which then runs on
//! from the written value; setting it clears UIE); register C (PF/AF/UF flags set whether enabled or not, IRQF when an
//! enabled one is, all cleared by reading it); register D (VRT always 1). The other bytes of the
//! 128-byte CMOS are plain storage, with base memory 640 KiB (0x15/0x16) and no floppy (0x10).
//!
//! Bit 7 of the index port is the NMI mask of the PC: it is recorded ([`Vrtc::nmi_masked`])
//! and affects nothing else, least of all the host.
//!
//! The caller delivers IRQ 8: call [`Vrtc::tick`] after every port access and when the TSC
//! reaches [`Vrtc::next_event`]; it says when the IRQ output rose (IRQF 0 -> 1). As on the
//! chip, no further interrupt comes until the guest reads register C.
//!
//! Limits: the time is kept as seconds, so after a change of the BCD/binary or 12/24-hour
//! bits the time registers read in the new format at once (the chip would keep the old
//! contents until the next update); invalid written values are clamped to their ranges (a day
//! beyond the month's end rolls into the next month); daylight-saving (DSE) and the square-wave
//! output are not modelled; years from 0 to 9999 are representable.

/// The ports the RTC decodes.
pub const INDEX_PORT: u16 = 0x70;
pub const DATA_PORT: u16 = 0x71;

const REG_SECONDS: u8 = 0x00;
const REG_SECONDS_ALARM: u8 = 0x01;
const REG_MINUTES: u8 = 0x02;
const REG_MINUTES_ALARM: u8 = 0x03;
const REG_HOURS: u8 = 0x04;
const REG_HOURS_ALARM: u8 = 0x05;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DAY: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0A;
const REG_B: u8 = 0x0B;
const REG_C: u8 = 0x0C;
const REG_D: u8 = 0x0D;
const REG_CENTURY: u8 = 0x32;

const A_UIP: u8 = 1 << 7;
const A_DIVIDER_SHIFT: u8 = 4;
/// Divider 010b: 32.768 kHz time base, normal operation.
const A_DIVIDER_NORMAL: u8 = 2;
const B_SET: u8 = 1 << 7;
const B_PIE: u8 = 1 << 6;
const B_AIE: u8 = 1 << 5;
const B_UIE: u8 = 1 << 4;
const B_BINARY: u8 = 1 << 2;
const B_24H: u8 = 1 << 1;
const C_IRQF: u8 = 1 << 7;
const C_PF: u8 = 1 << 6;
const C_AF: u8 = 1 << 5;
const C_UF: u8 = 1 << 4;
const D_VRT: u8 = 1 << 7;
const HOUR_PM: u8 = 1 << 7;

/// Microseconds UIP is raised before each update (t_BUC).
const UIP_WINDOW_US: u64 = 244;
const SECONDS_PER_DAY: i64 = 86_400;
/// 9999-12-31 23:59:59 UTC, the last second the registers can show.
const MAX_EPOCH_SECONDS: i64 = 253_402_300_799;
/// 0000-01-01 00:00:00.
const MIN_EPOCH_SECONDS: i64 = -62_167_219_200;

/// Days since 1970-01-01 of the proleptic Gregorian date `year`-`month`-`day` (month 1..=12,
/// day counted on from the month's first, so day 32 is the next month's first).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let month = month.clamp(1, 12) as i64;
    // Years start in March so the leap day is the last day of the year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day as i64 - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1..=12, day 1..=31) `days` days after 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u8;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u8;
    let year = year_of_era + era * 400 + (month <= 2) as i64;
    (year, month, day)
}

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl DateTime {
    fn from_epoch(seconds: i64) -> DateTime {
        let seconds = seconds.clamp(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS);
        let (year, month, day) = civil_from_days(seconds.div_euclid(SECONDS_PER_DAY));
        let of_day = seconds.rem_euclid(SECONDS_PER_DAY);
        DateTime {
            year,
            month,
            day,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
        }
    }

    fn to_epoch(self) -> i64 {
        let seconds = days_from_civil(self.year, self.month, self.day) * SECONDS_PER_DAY
            + self.hour as i64 * 3600
            + self.minute as i64 * 60
            + self.second as i64;
        seconds.clamp(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS)
    }
}

/// The virtual RTC.
#[derive(Debug, Clone)]
pub struct Vrtc {
    tsc_hz: u64,
    /// The clock showed `base_seconds` exactly at `base_tsc` (a second boundary).
    base_seconds: i64,
    base_tsc: u64,
    /// The time while updates are stopped (SET or divider reset).
    frozen: Option<DateTime>,
    /// Added to the computed day of the week (the guest may set it freely).
    day_of_week_offset: u8,
    /// Events are accounted up to this TSC.
    accounted_tsc: u64,
    index: u8,
    nmi_masked: bool,
    irq_raised: bool,
    cmos: [u8; 128],
}

impl Vrtc {
    /// An RTC showing `epoch_seconds` (UTC) at `now_tsc`, counting at `tsc_hz` (0 is taken as
    /// 1). Register A selects the 1024 Hz periodic rate, register B BCD 24-hour mode.
    pub fn new(epoch_seconds: i64, now_tsc: u64, tsc_hz: u64) -> Self {
        let mut cmos = [0u8; 128];
        cmos[REG_A as usize] = (A_DIVIDER_NORMAL << A_DIVIDER_SHIFT) | 0x6;
        cmos[REG_B as usize] = B_24H;
        cmos[REG_D as usize] = D_VRT;
        // Base memory 640 KiB; no floppy drive (0x10 = 0).
        cmos[0x15] = 0x80;
        cmos[0x16] = 0x02;
        Vrtc {
            tsc_hz: tsc_hz.max(1),
            base_seconds: epoch_seconds.clamp(MIN_EPOCH_SECONDS, MAX_EPOCH_SECONDS),
            base_tsc: now_tsc,
            frozen: None,
            day_of_week_offset: 0,
            accounted_tsc: now_tsc,
            index: 0,
            nmi_masked: false,
            irq_raised: false,
            cmos,
        }
    }

    /// True for the ports the RTC decodes.
    pub fn claims_port(port: u16) -> bool {
        matches!(port, INDEX_PORT | DATA_PORT)
    }

    /// The guest's NMI mask (index port bit 7), for the record only.
    pub fn nmi_masked(&self) -> bool {
        self.nmi_masked
    }

    /// Sets a plain CMOS byte (memory sizes and the like); the clock registers 0x00-0x0D and
    /// the century are not plain bytes and are left alone.
    pub fn set_nvram(&mut self, index: u8, value: u8) {
        let index = index & 0x7F;
        if index > REG_D && index != REG_CENTURY {
            self.cmos[index as usize] = value;
        }
    }

    fn reg_a(&self) -> u8 {
        self.cmos[REG_A as usize]
    }

    fn reg_b(&self) -> u8 {
        self.cmos[REG_B as usize]
    }

    fn divider_running(&self) -> bool {
        (self.reg_a() >> A_DIVIDER_SHIFT) & 7 == A_DIVIDER_NORMAL
    }

    fn updating(&self) -> bool {
        self.frozen.is_none()
    }

    /// Whole seconds elapsed since the base at `now_tsc`.
    fn seconds_elapsed(&self, now_tsc: u64) -> u64 {
        now_tsc.saturating_sub(self.base_tsc) / self.tsc_hz
    }

    /// Seconds since the epoch the clock shows at `now_tsc`.
    pub fn epoch_seconds(&self, now_tsc: u64) -> i64 {
        match self.frozen {
            Some(time) => time.to_epoch(),
            None => {
                let elapsed = i64::try_from(self.seconds_elapsed(now_tsc)).unwrap_or(i64::MAX);
                self.base_seconds
                    .saturating_add(elapsed)
                    .min(MAX_EPOCH_SECONDS)
            }
        }
    }

    fn now(&self, now_tsc: u64) -> DateTime {
        self.frozen
            .unwrap_or_else(|| DateTime::from_epoch(self.epoch_seconds(now_tsc)))
    }

    /// Restarts the clock from `time` at `start_tsc` (a second boundary).
    fn rebase(&mut self, time: DateTime, start_tsc: u64) {
        self.base_seconds = time.to_epoch();
        self.base_tsc = start_tsc;
    }

    /// The periodic interrupt frequency in Hz (register A rate select), None when off.
    fn periodic_hz(&self) -> Option<u64> {
        match self.reg_a() & 0xF {
            0 => None,
            1 => Some(256),
            2 => Some(128),
            rate => Some(65_536 >> rate),
        }
    }

    /// Periodic ticks since the base at `tsc` (aligned to the seconds, like the divider chain).
    fn periodic_ticks(&self, tsc: u64, hz: u64) -> u128 {
        tsc.saturating_sub(self.base_tsc) as u128 * hz as u128 / self.tsc_hz as u128
    }

    fn encode(&self, value: u8) -> u8 {
        if self.reg_b() & B_BINARY != 0 {
            value
        } else {
            ((value / 10) << 4) | (value % 10)
        }
    }

    fn decode(&self, value: u8) -> u8 {
        if self.reg_b() & B_BINARY != 0 {
            value
        } else {
            (value >> 4).saturating_mul(10).saturating_add(value & 0xF)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b() & B_24H != 0 {
            self.encode(hour)
        } else {
            let twelve = match hour % 12 {
                0 => 12,
                h => h,
            };
            self.encode(twelve) | if hour >= 12 { HOUR_PM } else { 0 }
        }
    }

    fn decode_hour(&self, value: u8) -> u8 {
        if self.reg_b() & B_24H != 0 {
            self.decode(value).min(23)
        } else {
            let hour = self.decode(value & !HOUR_PM).clamp(1, 12) % 12;
            hour + if value & HOUR_PM != 0 { 12 } else { 0 }
        }
    }

    fn day_of_week(&self, time: &DateTime) -> u8 {
        // 1970-01-01 was a Thursday; the register counts Sunday = 1.
        let natural = (days_from_civil(time.year, time.month, time.day) + 4).rem_euclid(7) as u8;
        (natural + self.day_of_week_offset) % 7 + 1
    }

    fn read_time_register(&self, index: u8, now_tsc: u64) -> u8 {
        let time = self.now(now_tsc);
        match index {
            REG_SECONDS => self.encode(time.second),
            REG_MINUTES => self.encode(time.minute),
            REG_HOURS => self.encode_hour(time.hour),
            REG_DAY_OF_WEEK => self.encode(self.day_of_week(&time)),
            REG_DAY => self.encode(time.day),
            REG_MONTH => self.encode(time.month),
            REG_YEAR => self.encode(time.year.rem_euclid(100) as u8),
            _ => self.encode((time.year.div_euclid(100)).clamp(0, 99) as u8),
        }
    }

    fn write_time_register(&mut self, index: u8, value: u8, now_tsc: u64) {
        let mut time = self.now(now_tsc);
        let decoded = self.decode(value);
        match index {
            REG_SECONDS => time.second = decoded.min(59),
            REG_MINUTES => time.minute = decoded.min(59),
            REG_HOURS => time.hour = self.decode_hour(value),
            REG_DAY_OF_WEEK => {
                let natural = self.day_of_week(&time) - 1;
                let wanted = decoded.clamp(1, 7) - 1;
                self.day_of_week_offset = (self.day_of_week_offset + 7 + wanted - natural) % 7;
                return;
            }
            REG_DAY => time.day = decoded.clamp(1, 31),
            REG_MONTH => time.month = decoded.clamp(1, 12),
            REG_YEAR => time.year = time.year.div_euclid(100) * 100 + decoded.min(99) as i64,
            _ => time.year = decoded.min(99) as i64 * 100 + time.year.rem_euclid(100),
        }
        match &mut self.frozen {
            Some(frozen) => *frozen = time,
            None => {
                // Keep the phase within the second: the written time runs on from here.
                let phase = now_tsc.saturating_sub(self.base_tsc) % self.tsc_hz;
                self.rebase(time, now_tsc.saturating_sub(phase));
            }
        }
    }

    /// True if the second `epoch` matches the three alarm registers.
    fn alarm_matches(&self, epoch: i64) -> bool {
        let of_day = epoch.rem_euclid(SECONDS_PER_DAY);
        let current = [
            (REG_SECONDS_ALARM, self.encode((of_day % 60) as u8)),
            (REG_MINUTES_ALARM, self.encode((of_day / 60 % 60) as u8)),
            (REG_HOURS_ALARM, self.encode_hour((of_day / 3600) as u8)),
        ];
        current.iter().all(|&(reg, now)| {
            let alarm = self.cmos[reg as usize];
            alarm & 0xC0 == 0xC0 || alarm == now
        })
    }

    /// Sets the flags of the events between the last accounting and `now_tsc`.
    fn advance(&mut self, now_tsc: u64) {
        let from = self.accounted_tsc;
        if now_tsc <= from {
            return;
        }
        self.accounted_tsc = now_tsc;
        // The divider drives the periodic flag even while SET stops the updates.
        if !self.divider_running() {
            return;
        }
        let mut flags = 0;
        let (first, last) = (self.seconds_elapsed(from), self.seconds_elapsed(now_tsc));
        if self.updating() && last > first {
            flags |= C_UF;
            // The alarm repeats daily: the last day of crossed seconds decides.
            let crossed = (last - first).min(SECONDS_PER_DAY as u64) as i64;
            let newest = self.epoch_seconds(now_tsc);
            if (0..crossed).any(|back| self.alarm_matches(newest - back)) {
                flags |= C_AF;
            }
        }
        if let Some(hz) = self.periodic_hz() {
            if self.periodic_ticks(now_tsc, hz) > self.periodic_ticks(from, hz) {
                flags |= C_PF;
            }
        }
        self.set_flags(flags);
    }

    fn set_flags(&mut self, flags: u8) {
        let enabled = self.reg_b() & (B_PIE | B_AIE | B_UIE);
        let c = &mut self.cmos[REG_C as usize];
        *c |= flags;
        // PIE, AIE, UIE sit at the bit positions of PF, AF, UF.
        if *c & enabled != 0 && *c & C_IRQF == 0 {
            *c |= C_IRQF;
            self.irq_raised = true;
        }
    }

    /// Accounts the time up to `now_tsc`; true if the IRQ 8 output rose since the last call.
    pub fn tick(&mut self, now_tsc: u64) -> bool {
        self.advance(now_tsc);
        core::mem::take(&mut self.irq_raised)
    }

    /// The level of the IRQ 8 output: IRQF, held until the guest reads register C. A caller
    /// that drives a level-triggered input follows this instead of [`Vrtc::tick`]'s edges.
    pub fn irq_asserted(&self) -> bool {
        self.cmos[REG_C as usize] & C_IRQF != 0
    }

    /// The TSC of the next event that can raise IRQ 8, for the caller to arm a timer. None
    /// while nothing can (no interrupt enabled, clock stopped, or IRQF still set).
    pub fn next_event(&self, now_tsc: u64) -> Option<u64> {
        let b = self.reg_b();
        if !self.divider_running() || self.cmos[REG_C as usize] & C_IRQF != 0 {
            return None;
        }
        let elapsed = now_tsc.saturating_sub(self.base_tsc);
        let next_second = (self.updating() && b & (B_UIE | B_AIE) != 0).then(|| {
            self.base_tsc.saturating_add(
                (elapsed / self.tsc_hz)
                    .saturating_add(1)
                    .saturating_mul(self.tsc_hz),
            )
        });
        let next_periodic = self.periodic_hz().filter(|_| b & B_PIE != 0).map(|hz| {
            let next = self.periodic_ticks(now_tsc, hz) + 1;
            let offset = (next * self.tsc_hz as u128).div_ceil(hz as u128);
            self.base_tsc
                .saturating_add(u64::try_from(offset).unwrap_or(u64::MAX))
        });
        match (next_second, next_periodic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn update_in_progress(&self, now_tsc: u64) -> bool {
        if !self.updating() {
            return false;
        }
        let window = self.tsc_hz.saturating_mul(UIP_WINDOW_US) / 1_000_000;
        let phase = now_tsc.saturating_sub(self.base_tsc) % self.tsc_hz;
        phase >= self.tsc_hz - window
    }

    /// A port read: the index port reads back the index (without the NMI bit, as ACRN's
    /// vRTC answers); 0xFF for ports the RTC does not decode.
    pub fn io_read(&mut self, port: u16, now_tsc: u64) -> u8 {
        match port {
            INDEX_PORT => return self.index,
            DATA_PORT => {}
            _ => return 0xFF,
        }
        self.advance(now_tsc);
        match self.index {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY_OF_WEEK..=REG_YEAR | REG_CENTURY => {
                self.read_time_register(self.index, now_tsc)
            }
            REG_A => {
                let uip = if self.update_in_progress(now_tsc) {
                    A_UIP
                } else {
                    0
                };
                (self.reg_a() & !A_UIP) | uip
            }
            REG_C => core::mem::take(&mut self.cmos[REG_C as usize]),
            REG_D => D_VRT,
            index => self.cmos[index as usize],
        }
    }

    /// A port write; ignored for ports the RTC does not decode.
    pub fn io_write(&mut self, port: u16, value: u8, now_tsc: u64) {
        match port {
            INDEX_PORT => {
                self.index = value & 0x7F;
                self.nmi_masked = value & 0x80 != 0;
                return;
            }
            DATA_PORT => {}
            _ => return,
        }
        self.advance(now_tsc);
        match self.index {
            REG_SECONDS | REG_MINUTES | REG_HOURS | REG_DAY_OF_WEEK..=REG_YEAR | REG_CENTURY => {
                self.write_time_register(self.index, value, now_tsc)
            }
            REG_A => {
                let was_running = self.divider_running();
                self.cmos[REG_A as usize] = value & !A_UIP;
                self.update_stopped_state(was_running, self.reg_b() & B_SET == 0, now_tsc);
            }
            REG_B => {
                let was_running = self.divider_running();
                let was_set = self.reg_b() & B_SET != 0;
                let mut value = value;
                if value & B_SET != 0 && !was_set {
                    value &= !B_UIE;
                }
                self.cmos[REG_B as usize] = value;
                self.update_stopped_state(was_running, !was_set, now_tsc);
                // Enabling an interrupt whose flag is already set raises IRQF.
                self.set_flags(0);
            }
            REG_C | REG_D => {}
            index => self.cmos[index as usize] = value,
        }
    }

    /// Stops or restarts updates after a register A or B write. `was_running` /
    /// `was_not_set`: the divider and SET state before the write.
    fn update_stopped_state(&mut self, was_running: bool, was_not_set: bool, now_tsc: u64) {
        let running = self.divider_running() && self.reg_b() & B_SET == 0;
        match (self.frozen, running) {
            (None, false) => self.frozen = Some(self.now(now_tsc)),
            (Some(time), true) => {
                self.frozen = None;
                // After a divider reset the first update comes 500 ms later; after SET,
                // a full second later.
                let start = if !was_running && was_not_set {
                    now_tsc.saturating_sub(self.tsc_hz / 2)
                } else {
                    now_tsc
                };
                self.rebase(time, start);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000;
    /// 2024-02-29 23:59:58 UTC (a Thursday).
    const LEAP_EVE: i64 = 1_709_251_198;

    fn read(rtc: &mut Vrtc, reg: u8, now: u64) -> u8 {
        rtc.io_write(0x70, reg, now);
        rtc.io_read(0x71, now)
    }

    fn write(rtc: &mut Vrtc, reg: u8, value: u8, now: u64) {
        rtc.io_write(0x70, reg, now);
        rtc.io_write(0x71, value, now);
    }

    #[test]
    fn civil_date_conversion() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2,
            "2000 leap"
        );
        assert_eq!(
            days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28),
            1,
            "2100 not"
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
        assert_eq!(
            days_from_civil(2024, 3, 1) - days_from_civil(2024, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(2023, 3, 1) - days_from_civil(2023, 2, 28),
            1
        );
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            days_from_civil(2024, 2, 30),
            days_from_civil(2024, 3, 1),
            "rolls over"
        );
        for days in (-800_000..3_000_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn reads_the_real_time_in_bcd_24h() {
        let mut rtc = Vrtc::new(LEAP_EVE, 5 * HZ, HZ);
        let t = 5 * HZ;
        assert_eq!(read(&mut rtc, 0x00, t), 0x58);
        assert_eq!(read(&mut rtc, 0x02, t), 0x59);
        assert_eq!(read(&mut rtc, 0x04, t), 0x23);
        assert_eq!(read(&mut rtc, 0x07, t), 0x29);
        assert_eq!(read(&mut rtc, 0x08, t), 0x02);
        assert_eq!(read(&mut rtc, 0x09, t), 0x24);
        assert_eq!(read(&mut rtc, 0x32, t), 0x20);
        assert_eq!(read(&mut rtc, 0x06, t), 5, "Thursday");
        // Two seconds later: 2024-03-01 00:00:00, Friday.
        let t = t + 2 * HZ;
        assert_eq!(read(&mut rtc, 0x00, t), 0x00);
        assert_eq!(read(&mut rtc, 0x04, t), 0x00);
        assert_eq!(read(&mut rtc, 0x07, t), 0x01);
        assert_eq!(read(&mut rtc, 0x08, t), 0x03);
        assert_eq!(read(&mut rtc, 0x06, t), 6);
        assert_eq!(rtc.epoch_seconds(t), LEAP_EVE + 2);
    }

    #[test]
    fn century_rollover() {
        // 2099-12-31 23:59:59 -> 2100-01-01.
        let eve = days_from_civil(2099, 12, 31) * 86_400 + 86_399;
        let mut rtc = Vrtc::new(eve, 0, HZ);
        assert_eq!(read(&mut rtc, 0x32, 0), 0x20);
        assert_eq!(read(&mut rtc, 0x09, 0), 0x99);
        assert_eq!(read(&mut rtc, 0x32, HZ), 0x21);
        assert_eq!(read(&mut rtc, 0x09, HZ), 0x00);
        assert_eq!(read(&mut rtc, 0x08, HZ), 0x01);
    }

    #[test]
    fn year_2000_rollover() {
        let eve = days_from_civil(1999, 12, 31) * 86_400 + 86_399;
        let mut rtc = Vrtc::new(eve, 0, HZ);
        assert_eq!(read(&mut rtc, 0x32, 0), 0x19);
        assert_eq!(read(&mut rtc, 0x09, 0), 0x99);
        assert_eq!(read(&mut rtc, 0x06, 0), 6, "Friday");
        assert_eq!(read(&mut rtc, 0x32, HZ), 0x20);
        assert_eq!(read(&mut rtc, 0x09, HZ), 0x00);
        assert_eq!(read(&mut rtc, 0x07, HZ), 0x01);
        assert_eq!(read(&mut rtc, 0x06, HZ), 7, "Saturday");
        // The guest sets 2000-02-28 23:59:59: the next day is the 29th (2000 is a leap year).
        write(&mut rtc, 0x08, 0x02, HZ);
        write(&mut rtc, 0x07, 0x28, HZ);
        write(&mut rtc, 0x04, 0x23, HZ);
        write(&mut rtc, 0x02, 0x59, HZ);
        write(&mut rtc, 0x00, 0x59, HZ);
        assert_eq!(read(&mut rtc, 0x07, 2 * HZ), 0x29);
        assert_eq!(read(&mut rtc, 0x08, 2 * HZ), 0x02);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        // 13:05:09 on 2024-03-01.
        let t0 = days_from_civil(2024, 3, 1) * 86_400 + 13 * 3600 + 5 * 60 + 9;
        let mut rtc = Vrtc::new(t0, 0, HZ);
        write(&mut rtc, 0x0B, 0x06, 0); // binary, 24h
        assert_eq!(read(&mut rtc, 0x00, 0), 9);
        assert_eq!(read(&mut rtc, 0x04, 0), 13);
        assert_eq!(read(&mut rtc, 0x09, 0), 24);
        write(&mut rtc, 0x0B, 0x04, 0); // binary, 12h
        assert_eq!(read(&mut rtc, 0x04, 0), 0x80 | 1, "1 PM");
        write(&mut rtc, 0x0B, 0x00, 0); // BCD, 12h
        assert_eq!(read(&mut rtc, 0x04, 0), 0x81);
        // Midnight and noon in 12-hour form.
        write(&mut rtc, 0x04, 0x12, 0);
        assert_eq!(
            rtc.epoch_seconds(0).rem_euclid(86_400) / 3600,
            0,
            "12 AM = 0h"
        );
        write(&mut rtc, 0x04, 0x92, 0);
        assert_eq!(
            rtc.epoch_seconds(0).rem_euclid(86_400) / 3600,
            12,
            "12 PM = 12h"
        );
        assert_eq!(read(&mut rtc, 0x04, 0), 0x92);
    }

    #[test]
    fn set_bit_stops_the_clock_and_the_written_time_runs_on() {
        let mut rtc = Vrtc::new(LEAP_EVE, 0, HZ);
        write(&mut rtc, 0x0B, 0x82 | 0x10, 0); // SET with UIE: UIE is cleared
        assert_eq!(read(&mut rtc, 0x0B, 0), 0x82);
        write(&mut rtc, 0x00, 0x30, 0);
        write(&mut rtc, 0x02, 0x15, 0);
        write(&mut rtc, 0x04, 0x10, 0);
        write(&mut rtc, 0x07, 0x15, 0);
        write(&mut rtc, 0x08, 0x06, 0);
        write(&mut rtc, 0x09, 0x30, 0);
        write(&mut rtc, 0x32, 0x20, 0);
        assert_eq!(read(&mut rtc, 0x00, 10 * HZ), 0x30, "stopped while SET");
        assert_eq!(read(&mut rtc, 0x0A, 10 * HZ) & 0x80, 0, "no UIP while SET");
        assert_eq!(
            read(&mut rtc, 0x0C, 10 * HZ),
            0x40,
            "the divider still sets PF, no UF while SET"
        );
        write(&mut rtc, 0x0B, 0x02, 10 * HZ);
        let expected = days_from_civil(2030, 6, 15) * 86_400 + 10 * 3600 + 15 * 60 + 30;
        assert_eq!(rtc.epoch_seconds(10 * HZ), expected);
        assert_eq!(rtc.epoch_seconds(13 * HZ + HZ / 2), expected + 3);
        // A write without SET moves the time and keeps counting.
        write(&mut rtc, 0x02, 0x45, 14 * HZ);
        assert_eq!(read(&mut rtc, 0x02, 14 * HZ), 0x45);
        assert_eq!(read(&mut rtc, 0x00, 15 * HZ), 0x35);
    }

    #[test]
    fn update_in_progress_window() {
        let mut rtc = Vrtc::new(0, 0, HZ);
        assert_eq!(read(&mut rtc, 0x0A, 0), 0x26);
        assert_eq!(read(&mut rtc, 0x0A, HZ - 245) & 0x80, 0);
        assert_eq!(read(&mut rtc, 0x0A, HZ - 244) & 0x80, 0x80);
        assert_eq!(read(&mut rtc, 0x0A, HZ - 1) & 0x80, 0x80);
        assert_eq!(read(&mut rtc, 0x0A, HZ) & 0x80, 0);
        write(&mut rtc, 0x0A, 0xFF, HZ);
        assert_eq!(
            read(&mut rtc, 0x0A, HZ) & 0x80,
            0,
            "UIP is read-only; divider reset"
        );
    }

    #[test]
    fn divider_reset_stops_and_first_update_after_half_a_second() {
        let mut rtc = Vrtc::new(1000, 0, HZ);
        write(&mut rtc, 0x0A, 0x66, HZ / 4); // divider reset
        assert_eq!(rtc.epoch_seconds(50 * HZ), 1000);
        write(&mut rtc, 0x0A, 0x26, 50 * HZ);
        assert_eq!(rtc.epoch_seconds(50 * HZ + HZ / 2 - 1), 1000);
        assert_eq!(rtc.epoch_seconds(50 * HZ + HZ / 2), 1001);
    }

    #[test]
    fn register_c_d_and_update_interrupts() {
        let mut rtc = Vrtc::new(0, 0, HZ);
        assert_eq!(read(&mut rtc, 0x0D, 0), 0x80);
        assert_eq!(rtc.next_event(0), None, "nothing enabled");
        write(&mut rtc, 0x0B, 0x12, 0); // UIE
        assert!(!rtc.tick(0));
        assert_eq!(rtc.next_event(HZ / 3), Some(HZ));
        assert!(!rtc.tick(HZ - 1));
        assert!(rtc.tick(HZ));
        assert_eq!(
            rtc.next_event(HZ),
            None,
            "IRQF set: nothing until C is read"
        );
        assert!(!rtc.tick(3 * HZ), "no new edge while IRQF is set");
        assert_eq!(
            read(&mut rtc, 0x0C, 3 * HZ),
            0xD0,
            "IRQF | UF | PF (1024 Hz, not enabled)"
        );
        assert_eq!(read(&mut rtc, 0x0C, 3 * HZ), 0, "read clears");
        assert!(!rtc.irq_asserted());
        assert_eq!(rtc.next_event(3 * HZ), Some(4 * HZ));
        // PF is set at the periodic rate even with PIE clear, and without IRQF.
        rtc.tick(4 * HZ);
        read(&mut rtc, 0x0C, 4 * HZ);
        assert_eq!(read(&mut rtc, 0x0C, 4 * HZ + 2000) & 0xC0, 0x40);
    }

    #[test]
    fn periodic_interrupt_rate() {
        let mut rtc = Vrtc::new(0, 0, HZ);
        write(&mut rtc, 0x0A, 0x2F, 0); // 2 Hz
        write(&mut rtc, 0x0B, 0x42, 0); // PIE
        assert_eq!(rtc.next_event(0), Some(HZ / 2));
        let mut now = 0;
        let mut irqs = 0;
        while now < 10 * HZ {
            now = rtc.next_event(now).unwrap();
            if rtc.tick(now) {
                irqs += 1;
                assert_eq!(read(&mut rtc, 0x0C, now) & 0xC0, 0xC0);
            }
        }
        assert_eq!(irqs, 20);
        // 1024 Hz: the ticks land on the 976.5625 us grid.
        write(&mut rtc, 0x0A, 0x26, now);
        let next = rtc.next_event(now).unwrap();
        assert_eq!(next - now, 977);
        // Rates 1 and 2 are 256 and 128 Hz.
        write(&mut rtc, 0x0A, 0x21, now);
        assert_eq!(rtc.next_event(now), Some(now + 3907));
        write(&mut rtc, 0x0A, 0x20, now);
        assert_eq!(rtc.next_event(now), None, "rate 0: off");
    }

    #[test]
    fn alarm_interrupts_with_dont_care() {
        // 00:00:00 on day 0.
        let mut rtc = Vrtc::new(0, 0, HZ);
        write(&mut rtc, 0x0A, 0x20, 0); // no periodic flag
        write(&mut rtc, 0x01, 0x05, 0);
        write(&mut rtc, 0x03, 0x00, 0);
        write(&mut rtc, 0x05, 0x00, 0);
        write(&mut rtc, 0x0B, 0x22, 0); // AIE
        assert!(!rtc.tick(4 * HZ));
        assert!(rtc.tick(5 * HZ));
        assert_eq!(read(&mut rtc, 0x0C, 5 * HZ), 0xB0, "IRQF | AF | UF");
        // Every minute at second 5: don't-care hours and minutes.
        write(&mut rtc, 0x03, 0xC0, 5 * HZ);
        write(&mut rtc, 0x05, 0xFF, 5 * HZ);
        assert!(!rtc.tick(64 * HZ));
        assert!(rtc.tick(65 * HZ));
        read(&mut rtc, 0x0C, 65 * HZ);
        // Sleeping over the alarm still reports it.
        assert!(rtc.tick(1000 * HZ));
        assert_eq!(read(&mut rtc, 0x0C, 1000 * HZ) & 0x20, 0x20);
    }

    #[test]
    fn enabling_an_interrupt_with_its_flag_set_raises_irq() {
        let mut rtc = Vrtc::new(0, 0, HZ);
        rtc.tick(2 * HZ);
        write(&mut rtc, 0x0B, 0x12, 2 * HZ);
        assert!(rtc.tick(2 * HZ));
    }

    #[test]
    fn nmi_bit_and_nvram() {
        let mut rtc = Vrtc::new(0, 0, HZ);
        rtc.io_write(0x70, 0x8F, 0);
        assert!(rtc.nmi_masked());
        rtc.io_write(0x71, 0x5A, 0);
        assert_eq!(
            rtc.io_read(0x71, 0),
            0x5A,
            "index 0x0F with the NMI bit stripped"
        );
        rtc.io_write(0x70, 0x0F, 0);
        assert!(!rtc.nmi_masked());
        assert_eq!(rtc.io_read(0x70, 0), 0x0F);
        assert_eq!(rtc.io_read(0x72, 0), 0xFF);
        assert_eq!(read(&mut rtc, 0x10, 0), 0, "no floppy");
        assert_eq!(read(&mut rtc, 0x15, 0), 0x80);
        assert_eq!(read(&mut rtc, 0x16, 0), 0x02);
        rtc.set_nvram(0x34, 0x12);
        rtc.set_nvram(0x00, 0x12);
        assert_eq!(read(&mut rtc, 0x34, 0), 0x12);
        assert_eq!(read(&mut rtc, 0x00, 0), 0x00);
        write(&mut rtc, 0x7F, 0xAB, 0);
        assert_eq!(read(&mut rtc, 0x7F, 0), 0xAB);
        write(&mut rtc, 0x0D, 0x00, 0);
        assert_eq!(read(&mut rtc, 0x0D, 0), 0x80, "VRT read-only");
        assert!(Vrtc::claims_port(0x71) && !Vrtc::claims_port(0x72));
    }

    #[test]
    fn the_end_of_the_tsc_is_no_panic() {
        let mut rtc = Vrtc::new(0, 0, 1);
        write(&mut rtc, 0x0B, 0x72, 0); // PIE, AIE, UIE
        write(&mut rtc, 0x0A, 0x23, 0); // 8192 Hz
        assert_eq!(rtc.next_event(u64::MAX), Some(u64::MAX));
        assert!(rtc.tick(u64::MAX));
        let mut rtc = Vrtc::new(0, u64::MAX, u64::MAX);
        assert_eq!(rtc.epoch_seconds(0), 0);
        assert_eq!(read(&mut rtc, 0x00, 0), 0);
    }

    #[test]
    fn arbitrary_traffic_never_panics() {
        for (base, hz) in [
            (0, 1),
            (MAX_EPOCH_SECONDS, 3),
            (i64::MIN, u64::MAX),
            (i64::MAX, 0),
        ] {
            let mut rtc = Vrtc::new(base, 0, hz);
            let mut x: u64 = 0xDEAD_BEEF_CAFE_F00D;
            let mut now = 0u64;
            for _ in 0..50_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                now = now.saturating_add(x >> (x % 64));
                match x % 4 {
                    0 => rtc.io_write(0x70 + (x >> 8) as u16 % 3, (x >> 16) as u8, now),
                    1 => {
                        let _ = rtc.io_read(0x70 + (x >> 8) as u16 % 3, now);
                    }
                    2 => {
                        let _ = rtc.tick(now);
                    }
                    _ => {
                        let _ = rtc.next_event(now);
                    }
                }
            }
        }
    }
}
