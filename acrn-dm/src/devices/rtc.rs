//! The MC146818 RTC/CMOS at ports 0x70/0x71. ACRN's hypervisor emulates it only for the Service
//! VM, pre-launched and RT VMs; a post-launched VM's RTC is acrn-dm's (reference §7.2).
//!
//! The clock reads the host's UTC time in the format register B selects (BCD or binary, 12 or
//! 24 hours); update-in-progress is never reported. Guest writes to the time registers are
//! stored in the CMOS RAM but do not change the clock (no per-VM time offset yet).

/// Index port.
pub const RTC_INDEX_PORT: u16 = 0x70;
/// Data port.
pub const RTC_DATA_PORT: u16 = 0x71;

const REG_A: usize = 0x0A;
const REG_B: usize = 0x0B;
const REG_C: usize = 0x0C;
const REG_D: usize = 0x0D;
const REG_CENTURY: usize = 0x32;
const B_24H: u8 = 1 << 1;
const B_BINARY: u8 = 1 << 2;
const D_VALID_RAM: u8 = 1 << 7;

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Full year.
    pub year: u32,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
    /// 1 (Sunday) ..= 7.
    pub weekday: u8,
}

impl DateTime {
    /// From seconds since the Unix epoch (days-to-civil, proleptic Gregorian).
    pub fn from_unix(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u32;
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday (5 when Sunday is 1).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }
}

/// The RTC and its CMOS RAM.
pub struct Rtc {
    index: usize,
    ram: [u8; 128],
    now: fn() -> u64,
}

fn host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Default for Rtc {
    fn default() -> Self {
        Self::with_clock(host_now)
    }
}

impl Rtc {
    /// An RTC reading time from `now` (seconds since the epoch).
    pub fn with_clock(now: fn() -> u64) -> Self {
        let mut ram = [0u8; 128];
        ram[REG_A] = 0x26; // 32.768 kHz time base, 1024 Hz rate
        ram[REG_B] = B_24H;
        Self { index: 0, ram, now }
    }

    fn encode(&self, v: u8) -> u8 {
        if self.ram[REG_B] & B_BINARY != 0 {
            v
        } else {
            ((v / 10) << 4) | (v % 10)
        }
    }

    fn register(&self, i: usize) -> u8 {
        let t = DateTime::from_unix((self.now)());
        match i {
            0x00 => self.encode(t.second),
            0x02 => self.encode(t.minute),
            0x04 => {
                if self.ram[REG_B] & B_24H != 0 {
                    self.encode(t.hour)
                } else {
                    let h12 = match t.hour % 12 {
                        0 => 12,
                        h => h,
                    };
                    self.encode(h12) | if t.hour >= 12 { 0x80 } else { 0 }
                }
            }
            0x06 => self.encode(t.weekday),
            0x07 => self.encode(t.day),
            0x08 => self.encode(t.month),
            0x09 => self.encode((t.year % 100) as u8),
            REG_CENTURY => self.encode((t.year / 100) as u8),
            // Update-in-progress (bit 7) is never set.
            REG_A => self.ram[REG_A] & 0x7F,
            REG_C => 0,
            REG_D => D_VALID_RAM,
            _ => self.ram[i],
        }
    }

    /// A byte read from `port`.
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            RTC_DATA_PORT => self.register(self.index),
            _ => 0xFF,
        }
    }

    /// A byte written to `port`.
    pub fn write(&mut self, port: u16, value: u8) {
        match port {
            // Bit 7 of the index port masks NMIs on PCs; only the index matters here.
            RTC_INDEX_PORT => self.index = usize::from(value & 0x7F),
            RTC_DATA_PORT => match self.index {
                REG_C | REG_D => {}
                i => self.ram[i] = value,
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(
            DateTime::from_unix(0),
            DateTime {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                weekday: 5
            }
        );
        // 2024-02-29 12:34:56 UTC, a Thursday.
        assert_eq!(
            DateTime::from_unix(1_709_210_096),
            DateTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 12,
                minute: 34,
                second: 56,
                weekday: 5
            }
        );
        // 2000-03-01 00:00:00, a Wednesday.
        let t = DateTime::from_unix(951_868_800);
        assert_eq!((t.year, t.month, t.day, t.weekday), (2000, 3, 1, 4));
    }

    fn at(reg: u8, rtc: &mut Rtc) -> u8 {
        rtc.write(RTC_INDEX_PORT, reg);
        rtc.read(RTC_DATA_PORT)
    }

    #[test]
    fn registers_in_bcd_binary_and_12_hour() {
        let mut rtc = Rtc::with_clock(|| 1_709_210_096);
        assert_eq!(at(0x00, &mut rtc), 0x56);
        assert_eq!(at(0x02, &mut rtc), 0x34);
        assert_eq!(at(0x04, &mut rtc), 0x12);
        assert_eq!(at(0x07, &mut rtc), 0x29);
        assert_eq!(at(0x08, &mut rtc), 0x02);
        assert_eq!(at(0x09, &mut rtc), 0x24);
        assert_eq!(at(0x32, &mut rtc), 0x20);
        assert_eq!(at(0x0A, &mut rtc) & 0x80, 0, "never updating");
        assert_eq!(at(0x0D, &mut rtc), 0x80, "valid RAM and time");
        // Binary, 12-hour: 12:34 is 12 PM.
        rtc.write(RTC_INDEX_PORT, 0x0B);
        rtc.write(RTC_DATA_PORT, B_BINARY);
        assert_eq!(at(0x00, &mut rtc), 56);
        assert_eq!(at(0x04, &mut rtc), 0x80 | 12);
        // CMOS RAM keeps what is written; the NMI-mask bit of the index is ignored.
        rtc.write(RTC_INDEX_PORT, 0x80 | 0x40);
        rtc.write(RTC_DATA_PORT, 0xAB);
        assert_eq!(at(0x40, &mut rtc), 0xAB);
    }
}
