//! The i8254 programmable interval timer at ports 0x40-0x43, and the timer bits of port 0x61
//! (NMI status and control), as a pure state machine: counters are derived from a monotonic
//! time in nanoseconds the caller passes in, so the model is a function of the guest's accesses
//! and the clock alone.
//!
//! Two users, as in ACRN. A post-launched VM's PIT is acrn-dm's ([`Pit`]): Linux reads channel
//! 2 to calibrate its TSC and polls OUT2 through port 0x61; channel 0 raises ISA IRQ 0 (GSI 2
//! through the MADT's override) in its periodic and one-shot modes. The hypervisor emulates no
//! interval timer for the other VMs, only the speaker timer ([`SpeakerTimer`]): channel 2 and
//! port 0x61, which have no interrupt line, so that a guest's calibration loop ends as on a PC
//! instead of spinning on a port that reads all-ones.
#![no_std]

/// Channel 0's data port; channels 1 and 2 follow.
pub const PIT_CHANNEL0_PORT: u16 = 0x40;
/// The mode/command register.
pub const PIT_COMMAND_PORT: u16 = 0x43;
/// NMI status and control: bit 0 gate 2, bit 1 speaker, bit 4 refresh toggle, bit 5 OUT2.
pub const NMI_SC_PORT: u16 = 0x61;
/// Input clock of every channel.
pub const PIT_HZ: u64 = 1_193_182;

const NMI_SC_GATE2: u8 = 1 << 0;
const NMI_SC_SPEAKER: u8 = 1 << 1;
const NMI_SC_REFRESH: u8 = 1 << 4;
const NMI_SC_OUT2: u8 = 1 << 5;
/// DRAM refresh toggles every 15.085 µs on PCs.
const REFRESH_NS: u64 = 15_085;

/// How a channel's data port is read and written (command bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteAccess {
    Lsb,
    Msb,
    /// LSB then MSB.
    Word,
}

#[derive(Debug, Clone, Copy)]
struct Channel {
    mode: u8,
    access: ByteAccess,
    bcd: bool,
    /// The programmed count (0 stands for 65536).
    reload: u32,
    /// Tick at which counting started; `None` until a count is written.
    start: Option<u64>,
    gate: bool,
    /// Word access: the next write is the MSB (its LSB is kept here).
    written_lsb: Option<u8>,
    /// Word access: the next read returns the MSB.
    read_msb_next: bool,
    latched_count: Option<u16>,
    /// Word access of a latched count: the LSB was read.
    latched_msb_next: bool,
    latched_status: Option<u8>,
    /// Rising edges of OUT already reported (channel 0's interrupt).
    edges_seen: u64,
    /// When a low gate suspended counting.
    paused_at: Option<u64>,
}

impl Channel {
    fn new(gate: bool) -> Self {
        Channel {
            mode: 0,
            access: ByteAccess::Word,
            bcd: false,
            reload: 0x1_0000,
            start: None,
            gate,
            written_lsb: None,
            read_msb_next: false,
            latched_count: None,
            latched_msb_next: false,
            latched_status: None,
            edges_seen: 0,
            paused_at: None,
        }
    }

    /// Ticks counted since the count was loaded; a low gate holds the count.
    fn elapsed(&self, now: u64) -> Option<u64> {
        let start = self.start?;
        Some(self.paused_at.unwrap_or(now).saturating_sub(start))
    }

    /// Modes whose counting a low gate suspends (1 and 5 only wait for its rising edge).
    fn gated(&self) -> bool {
        matches!(self.mode, 0 | 2 | 3 | 4)
    }

    /// The counting element's value at tick `now`.
    fn count(&self, now: u64) -> u16 {
        let reload = u64::from(self.reload);
        let Some(e) = self.elapsed(now) else {
            return self.reload as u16;
        };
        let value = match self.mode {
            2 => reload - e % reload,
            3 => {
                // Counts down by two, through each half of the period.
                let half = reload.div_ceil(2);
                let phase = e % reload;
                let into_half = if phase < half { phase } else { phase - half };
                (reload - 2 * into_half) & !1
            }
            // One-shot modes: down through 0, then on from 0xFFFF.
            _ => reload.wrapping_sub(e) & 0xFFFF,
        };
        value as u16
    }

    /// The OUT pin at tick `now`.
    fn out(&self, now: u64) -> bool {
        let reload = u64::from(self.reload);
        let Some(e) = self.elapsed(now) else {
            // Mode 0 drives OUT low from the command; the others high.
            return self.mode != 0;
        };
        match self.mode {
            0 | 1 => e >= reload,
            2 => e % reload != reload - 1,
            3 => e % reload < reload.div_ceil(2),
            _ => e != reload,
        }
    }

    /// Rising edges of OUT from the load up to tick `now`.
    fn rising_edges(&self, now: u64) -> u64 {
        let reload = u64::from(self.reload);
        let Some(e) = self.elapsed(now) else {
            return 0;
        };
        match self.mode {
            0 | 1 => u64::from(e >= reload),
            2 => e / reload,
            3 => e / reload,
            _ => u64::from(e > reload),
        }
    }

    /// The tick of the next rising edge after `now`, if OUT will rise again.
    fn next_edge(&self, now: u64) -> Option<u64> {
        let start = self.start?;
        let reload = u64::from(self.reload);
        let e = now.saturating_sub(start);
        match self.mode {
            2 | 3 => Some(start + (e / reload + 1) * reload),
            0 | 1 if e < reload => Some(start + reload),
            4 | 5 if e <= reload => Some(start + reload + 1),
            _ => None,
        }
    }

    fn status(&self, now: u64) -> u8 {
        let access = match self.access {
            ByteAccess::Lsb => 1,
            ByteAccess::Msb => 2,
            ByteAccess::Word => 3,
        };
        u8::from(self.out(now)) << 7
            | u8::from(self.start.is_none()) << 6
            | access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    fn command(&mut self, access: ByteAccess, mode: u8, bcd: bool) {
        self.access = access;
        self.mode = mode;
        self.bcd = bcd;
        self.start = None;
        self.written_lsb = None;
        self.read_msb_next = false;
        self.edges_seen = 0;
        self.paused_at = None;
    }

    fn load(&mut self, value: u16, now: u64) {
        self.reload = if value == 0 {
            0x1_0000
        } else {
            u32::from(value)
        };
        // Hardware-triggered modes wait for a gate edge; a gate already high counts as one.
        let counting = self.gate || self.gated();
        self.start = counting.then_some(now);
        self.paused_at = (!self.gate && self.gated()).then_some(now);
        self.edges_seen = 0;
    }

    fn write(&mut self, value: u8, now: u64) {
        match self.access {
            ByteAccess::Lsb => self.load(u16::from(value), now),
            ByteAccess::Msb => self.load(u16::from(value) << 8, now),
            ByteAccess::Word => match self.written_lsb.take() {
                None => self.written_lsb = Some(value),
                Some(lsb) => self.load(u16::from(lsb) | u16::from(value) << 8, now),
            },
        }
    }

    fn read(&mut self, now: u64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        if let Some(c) = self.latched_count {
            let (byte, done) = match self.access {
                ByteAccess::Lsb => (c as u8, true),
                ByteAccess::Msb => ((c >> 8) as u8, true),
                ByteAccess::Word if !self.latched_msb_next => (c as u8, false),
                ByteAccess::Word => ((c >> 8) as u8, true),
            };
            self.latched_msb_next = !done;
            if done {
                self.latched_count = None;
            }
            return byte;
        }
        let c = self.count(now);
        match self.access {
            ByteAccess::Lsb => c as u8,
            ByteAccess::Msb => (c >> 8) as u8,
            ByteAccess::Word => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    c as u8
                } else {
                    (c >> 8) as u8
                }
            }
        }
    }

    fn latch_count(&mut self, now: u64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.count(now));
            self.latched_msb_next = false;
        }
    }

    fn set_gate(&mut self, gate: bool, now: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        if !gate {
            if self.start.is_some() && self.gated() {
                self.paused_at = Some(now);
            }
            return;
        }
        if let (Some(paused), Some(start)) = (self.paused_at.take(), self.start) {
            // Modes 0 and 4 go on from where they were held (a clock read on another CPU
            // may lag the pause a little).
            self.start = Some(start + now.saturating_sub(paused));
        }
        // A rising gate restarts modes 1, 2, 3 and 5 from the programmed count.
        if matches!(self.mode, 1 | 2 | 3 | 5)
            && (self.start.is_some() || matches!(self.mode, 1 | 5))
        {
            self.start = Some(now);
            self.edges_seen = 0;
        }
    }
}

/// The PIT and port 0x61.
#[derive(Debug, Clone)]
pub struct Pit {
    channels: [Channel; 3],
    speaker: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Pit {
            channels: [Channel::new(true), Channel::new(true), Channel::new(false)],
            speaker: false,
        }
    }
}

/// PIT ticks at `ns` nanoseconds.
pub fn ticks(ns: u64) -> u64 {
    (u128::from(ns) * u128::from(PIT_HZ) / 1_000_000_000) as u64
}

/// Nanoseconds at PIT tick `tick` (rounded up, so a sleep until then does not wake early).
pub fn nanos(tick: u64) -> u64 {
    (u128::from(tick) * 1_000_000_000).div_ceil(u128::from(PIT_HZ)) as u64
}

impl Pit {
    /// Whether the PIT or port 0x61 decodes `port`.
    pub fn claims(port: u16) -> bool {
        (PIT_CHANNEL0_PORT..=PIT_COMMAND_PORT).contains(&port) || port == NMI_SC_PORT
    }

    /// A one-byte read at time `ns`.
    pub fn read(&mut self, port: u16, ns: u64) -> u8 {
        let now = ticks(ns);
        match port {
            NMI_SC_PORT => {
                let ch2 = &self.channels[2];
                let bit = |on: bool, mask: u8| if on { mask } else { 0 };
                bit(ch2.gate, NMI_SC_GATE2)
                    | bit(self.speaker, NMI_SC_SPEAKER)
                    | bit((ns / REFRESH_NS) % 2 == 1, NMI_SC_REFRESH)
                    | bit(ch2.out(now), NMI_SC_OUT2)
            }
            PIT_COMMAND_PORT => 0xFF,
            p if (PIT_CHANNEL0_PORT..PIT_COMMAND_PORT).contains(&p) => {
                self.channels[usize::from(p - PIT_CHANNEL0_PORT)].read(now)
            }
            _ => 0xFF,
        }
    }

    /// A one-byte write at time `ns`.
    pub fn write(&mut self, port: u16, value: u8, ns: u64) {
        let now = ticks(ns);
        match port {
            NMI_SC_PORT => {
                self.speaker = value & NMI_SC_SPEAKER != 0;
                self.channels[2].set_gate(value & NMI_SC_GATE2 != 0, now);
            }
            PIT_COMMAND_PORT => self.command(value, now),
            p if (PIT_CHANNEL0_PORT..PIT_COMMAND_PORT).contains(&p) => {
                self.channels[usize::from(p - PIT_CHANNEL0_PORT)].write(value, now)
            }
            _ => {}
        }
    }

    fn command(&mut self, value: u8, now: u64) {
        let select = value >> 6;
        let access = (value >> 4) & 3;
        if select == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches statuses.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    ch.latch_count(now);
                }
                if value & 0x10 == 0 && ch.latched_status.is_none() {
                    ch.latched_status = Some(ch.status(now));
                }
            }
            return;
        }
        let ch = &mut self.channels[usize::from(select)];
        let access = match access {
            0 => return ch.latch_count(now),
            1 => ByteAccess::Lsb,
            2 => ByteAccess::Msb,
            _ => ByteAccess::Word,
        };
        // Modes 6 and 7 are 2 and 3.
        let mode = match (value >> 1) & 7 {
            m @ 6..=7 => m - 4,
            m => m,
        };
        ch.command(access, mode, value & 1 != 0);
    }

    /// Whether channel 0's OUT rose since the last call (ISA IRQ 0 is due); several edges
    /// missed while the caller slept make one interrupt, as a late timer tick would.
    pub fn take_irq0(&mut self, ns: u64) -> bool {
        let ch = &mut self.channels[0];
        let edges = ch.rising_edges(ticks(ns));
        let due = edges > ch.edges_seen;
        ch.edges_seen = edges;
        due
    }

    /// When channel 0's OUT rises next (nanoseconds), if it will.
    pub fn next_irq0(&self, ns: u64) -> Option<u64> {
        self.channels[0].next_edge(ticks(ns)).map(nanos)
    }
}

/// Channel 2 of the PIT and port 0x61 alone: the counter behind the PC speaker, which firmware
/// and operating systems read to time short delays and to calibrate the TSC. Channels 0 and 1
/// are absent: their data ports are not decoded ([`SpeakerTimer::claims`]) and commands that
/// select them are ignored, so nothing here can raise an interrupt.
#[derive(Debug, Clone, Default)]
pub struct SpeakerTimer(Pit);

/// Channel 2's data port.
pub const PIT_CHANNEL2_PORT: u16 = PIT_CHANNEL0_PORT + 2;

impl SpeakerTimer {
    /// Whether the speaker timer decodes `port`.
    pub fn claims(port: u16) -> bool {
        matches!(port, PIT_CHANNEL2_PORT | PIT_COMMAND_PORT | NMI_SC_PORT)
    }

    /// A one-byte read at time `ns`.
    pub fn read(&mut self, port: u16, ns: u64) -> u8 {
        if Self::claims(port) {
            self.0.read(port, ns)
        } else {
            0xFF
        }
    }

    /// A one-byte write at time `ns`.
    pub fn write(&mut self, port: u16, value: u8, ns: u64) {
        if !Self::claims(port) {
            return;
        }
        let value = if port == PIT_COMMAND_PORT {
            match value >> 6 {
                2 => value,
                // Read-back: only channel 2's select bit (3) counts.
                3 if value & 0x08 != 0 => value & !0x06,
                _ => return,
            }
        } else {
            value
        };
        self.0.write(port, value, ns);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(ticks: u64) -> u64 {
        nanos(ticks)
    }

    /// What Linux's quick TSC calibration programs: gate high, speaker off; channel 2,
    /// LSB then MSB, mode 0; count 0xFFFF.
    fn quick_calibration_start(mut write: impl FnMut(u16, u8)) {
        write(NMI_SC_PORT, 0x01);
        write(PIT_COMMAND_PORT, 0xB0);
        write(0x42, 0xFF);
        write(0x42, 0xFF);
    }

    /// A count read as LSB then MSB.
    fn count(mut read: impl FnMut() -> u8) -> u16 {
        let lsb = read();
        u16::from(lsb) | u16::from(read()) << 8
    }

    #[test]
    fn channel2_counts_down_as_linux_quick_calibration_reads_it() {
        let mut p = Pit::default();
        quick_calibration_start(|port, v| p.write(port, v, 0));
        let read = |p: &mut Pit, t| count(|| p.read(0x42, ns(t)));
        assert_eq!(read(&mut p, 0), 0xFFFF);
        assert_eq!(read(&mut p, 256), 0xFFFF - 256);
        assert_eq!(read(&mut p, 0x1000), 0xFFFF - 0x1000);
        // OUT2 rises at terminal count.
        assert_eq!(p.read(NMI_SC_PORT, ns(0xFFFE)) & NMI_SC_OUT2, 0);
        assert_ne!(p.read(NMI_SC_PORT, ns(0xFFFF)) & NMI_SC_OUT2, 0);
        assert_eq!(p.read(NMI_SC_PORT, 0) & NMI_SC_GATE2, NMI_SC_GATE2);
        // A low gate holds the count; raising it again goes on from there (mode 0).
        p.write(NMI_SC_PORT, 0x00, ns(0x2000));
        assert_eq!(read(&mut p, 0x3000), 0xFFFF - 0x2000);
        p.write(NMI_SC_PORT, 0x01, ns(0x3000));
        assert_eq!(read(&mut p, 0x3100), 0xFFFF - 0x2100);
    }

    #[test]
    fn latched_counts_and_read_back_status() {
        let mut p = Pit::default();
        p.write(PIT_COMMAND_PORT, 0x34, 0); // channel 0, word, mode 2
        p.write(0x40, 0x00, 0);
        p.write(0x40, 0x10, 0); // 0x1000
        p.write(PIT_COMMAND_PORT, 0x00, ns(0x100)); // latch channel 0
                                                    // The latched value holds however late it is read.
        assert_eq!(p.read(0x40, ns(0x800)), 0x00);
        assert_eq!(p.read(0x40, ns(0x900)), 0x0F);
        // Read-back of channel 0's status: OUT high, count loaded, word access, mode 2.
        p.write(PIT_COMMAND_PORT, 0xE2, ns(0x10));
        assert_eq!(p.read(0x40, ns(0x10)), 0x80 | 0x30 | 2 << 1);
        // Status and count latched together: status first.
        p.write(PIT_COMMAND_PORT, 0xC2, ns(0x20));
        assert_eq!(p.read(0x40, ns(0x30)), 0xB4);
        assert_eq!(p.read(0x40, ns(0x30)), 0xE0);
        assert_eq!(p.read(0x40, ns(0x30)), 0x0F);
    }

    #[test]
    fn channel0_periodic_interrupts() {
        let mut p = Pit::default();
        // Linux's periodic tick at HZ=250: mode 2, count 4773.
        p.write(PIT_COMMAND_PORT, 0x34, 0);
        p.write(0x40, (4773 & 0xFF) as u8, 0);
        p.write(0x40, (4773 >> 8) as u8, 0);
        assert!(!p.take_irq0(ns(100)));
        let next = p.next_irq0(ns(100)).unwrap();
        assert_eq!(ticks(next), 4773);
        assert!(p.take_irq0(next));
        assert!(!p.take_irq0(next));
        // Missed periods make one interrupt.
        assert!(p.take_irq0(ns(4773 * 5)));
        assert!(!p.take_irq0(ns(4773 * 5 + 1)));
        // A new command stops the channel until a count is written.
        p.write(PIT_COMMAND_PORT, 0x30, ns(4773 * 6));
        assert_eq!(p.next_irq0(ns(4773 * 6)), None);
    }

    #[test]
    fn one_shot_interrupts_once_and_square_wave_halves() {
        let mut p = Pit::default();
        p.write(PIT_COMMAND_PORT, 0x30, 0); // mode 0
        p.write(0x40, 100, 0);
        p.write(0x40, 0, 0);
        assert!(p.take_irq0(ns(150)));
        assert_eq!(p.next_irq0(ns(150)), None);
        assert!(!p.take_irq0(ns(100_000)));

        p.write(PIT_COMMAND_PORT, 0xB6, 0); // channel 2, mode 3
        p.write(0x42, 100, 0);
        p.write(0x42, 0, 0);
        p.write(NMI_SC_PORT, 0x01, 0);
        assert_ne!(p.read(NMI_SC_PORT, ns(10)) & NMI_SC_OUT2, 0);
        assert_eq!(p.read(NMI_SC_PORT, ns(60)) & NMI_SC_OUT2, 0);
        assert_ne!(p.read(NMI_SC_PORT, ns(110)) & NMI_SC_OUT2, 0);
    }

    #[test]
    fn speaker_timer_is_channel_2_without_interrupts() {
        let mut t = SpeakerTimer::default();
        assert!(SpeakerTimer::claims(0x42) && SpeakerTimer::claims(0x43));
        assert!(SpeakerTimer::claims(0x61));
        assert!(!SpeakerTimer::claims(0x40) && !SpeakerTimer::claims(0x41));
        quick_calibration_start(|port, v| t.write(port, v, 0));
        let read = |t: &mut SpeakerTimer, tick| count(|| t.read(0x42, ns(tick)));
        assert_eq!(read(&mut t, 0x300), 0xFFFF - 0x300);
        assert_eq!(t.read(NMI_SC_PORT, ns(0x300)) & NMI_SC_OUT2, 0);
        assert_ne!(t.read(NMI_SC_PORT, ns(0xFFFF)) & NMI_SC_OUT2, 0);
        // Channel 0 cannot be programmed: its commands, its data port and a read-back of its
        // status change nothing and latch nothing.
        t.write(PIT_COMMAND_PORT, 0x34, ns(0x400));
        t.write(0x40, 0x10, ns(0x400));
        t.write(PIT_COMMAND_PORT, 0xE2, ns(0x400));
        assert_eq!(t.read(0x40, ns(0x400)), 0xFF);
        assert_eq!(t.0.next_irq0(ns(0x400)), None);
        assert_eq!(read(&mut t, 0x500), 0xFFFF - 0x500);
        // A read-back naming channels 0 and 2 latches channel 2's status only.
        t.write(PIT_COMMAND_PORT, 0xEA, ns(0x500));
        assert_eq!(t.read(0x42, ns(0x600)), 0x30);
        assert_eq!(t.0.channels[0].latched_status, None);
    }

    #[test]
    fn arbitrary_accesses_never_panic() {
        let mut p = Pit::default();
        let mut x: u32 = 12345;
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let port = [0x40, 0x41, 0x42, 0x43, 0x61][(x % 5) as usize];
            if x & 0x100 != 0 {
                p.write(port, (x >> 8) as u8, i * 997);
            } else {
                p.read(port, i * 997);
            }
            p.take_irq0(i * 997);
            let _ = p.next_irq0(i * 997);
        }
    }
}
