//! A virtual I/O APIC (Intel 82093AA datasheet): the IOREGSEL/IOWIN register window, the
//! ID, version and arbitration registers, and redirection entries that turn line changes into
//! [`Message`]s, with remote IRR for level-triggered entries.
//!
//! Pin counts: ACRN gives pre-launched and post-launched VMs one vIOAPIC of 48 pins
//! (`VIOAPIC_RTE_NUM`) and mirrors the physical I/O APICs (their pin counts) for the Service
//! VM; this model takes any count from 1 to 120 (the register window addresses at most 120
//! entries: 0x10 + 2 * 119 + 1 = 0xFF).
//!
//! Lines: [`Vioapic::set_irq`] changes a line logically (asserted = requesting);
//! [`Vioapic::set_level`] drives it electrically as ACRN's `GSI_SET_HIGH`/`GSI_SET_LOW` do, the
//! entry's polarity at the time deciding whether high is asserted. The state is kept
//! logically, so every line starts deasserted whatever its polarity and a polarity change by
//! the guest does not flip it (ACRN keeps the electrical level instead).
//!
//! Limits: an edge asserted while its entry is masked is lost at unmask (datasheet; ACRN
//! delivers it); SMI, NMI, INIT and ExtINT entries are delivered as edge-triggered (the
//! datasheet ignores their trigger mode); the EOI register at 0x40 (version 0x20 parts) is
//! accepted although the version register says 0x11; the extended destination bits 55:49 are
//! ignored.

use super::irq::{Delivery, DestMode, LineOp, Message, Shorthand};
use bitflags::bitflags;

/// The most pins the register window can address.
pub const MAX_PINS: usize = 120;
/// The pin count ACRN gives a pre-launched or post-launched VM.
pub const ACRN_VIOAPIC_PINS: usize = 48;
/// The usual guest-physical base of the (first) I/O APIC.
pub const IOAPIC_BASE_ADDRESS: u64 = 0xFEC0_0000;

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const IOEOI: u64 = 0x40;
const REG_ID: u32 = 0x00;
const REG_VERSION: u32 = 0x01;
const REG_ARBITRATION: u32 = 0x02;
const REG_REDIRECTION: u32 = 0x10;
/// The version register's version field: 82093AA-style, no EOI register advertised.
const VERSION: u32 = 0x11;

bitflags! {
    /// Redirection table entry flags (vector 7:0, delivery mode 10:8, destination 63:56).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RteFlags: u64 {
        const LOGICAL = 1 << 11;
        const DELIVERY_PENDING = 1 << 12;
        const ACTIVE_LOW = 1 << 13;
        const REMOTE_IRR = 1 << 14;
        const LEVEL = 1 << 15;
        const MASKED = 1 << 16;
    }
}

/// The bits of an entry the guest writes: all but delivery status and remote IRR.
const RTE_WRITABLE: u64 = 0xFF00_0000_0001_AFFF;

/// An access the model refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoapicError {
    PinOutOfRange {
        pin: usize,
        pins: usize,
    },
    /// Only 4-byte accesses at 0x00, 0x10 and 0x40 are registers.
    BadAccess {
        offset: u64,
        size: u8,
    },
}

impl core::fmt::Display for IoapicError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            IoapicError::PinOutOfRange { pin, pins } => {
                write!(
                    f,
                    "I/O APIC pin {pin} does not exist (the vIOAPIC has {pins} pins)"
                )
            }
            IoapicError::BadAccess { offset, size } => write!(
                f,
                "I/O APIC access of {size} bytes at offset {offset:#x}: only 4-byte accesses \
                 to IOREGSEL (0x0), IOWIN (0x10) and EOI (0x40) are registers"
            ),
        }
    }
}

/// One virtual I/O APIC.
#[derive(Debug, Clone)]
pub struct Vioapic {
    id: u32,
    pins: usize,
    regsel: u32,
    rte: [u64; MAX_PINS],
    /// Bit n: line n is asserted.
    asserted: u128,
}

impl Vioapic {
    /// An I/O APIC with `pins` pins (clamped to 1..=120) and APIC ID `id` (4 bits), every
    /// entry masked.
    pub fn new(pins: usize, id: u8) -> Self {
        Vioapic {
            id: (id as u32 & 0xF) << 24,
            pins: pins.clamp(1, MAX_PINS),
            regsel: 0,
            rte: [RteFlags::MASKED.bits(); MAX_PINS],
            asserted: 0,
        }
    }

    pub fn pins(&self) -> usize {
        self.pins
    }

    /// Back to the reset state (ACRN resets the vIOAPIC with the VM).
    pub fn reset(&mut self) {
        *self = Vioapic::new(self.pins, (self.id >> 24) as u8);
    }

    /// The redirection entry of `pin`.
    pub fn entry(&self, pin: usize) -> Result<u64, IoapicError> {
        self.check_pin(pin)?;
        Ok(self.rte[pin])
    }

    fn check_pin(&self, pin: usize) -> Result<(), IoapicError> {
        if pin < self.pins {
            Ok(())
        } else {
            Err(IoapicError::PinOutOfRange {
                pin,
                pins: self.pins,
            })
        }
    }

    fn check_access(offset: u64, size: u8) -> Result<(), IoapicError> {
        if size == 4 && matches!(offset, IOREGSEL | IOWIN | IOEOI) {
            Ok(())
        } else {
            Err(IoapicError::BadAccess { offset, size })
        }
    }

    /// Reads the register at `offset` of the MMIO window.
    pub fn mmio_read(&self, offset: u64, size: u8) -> Result<u32, IoapicError> {
        Self::check_access(offset, size)?;
        Ok(match offset {
            IOREGSEL => self.regsel,
            IOWIN => self.read_register(self.regsel),
            _ => 0,
        })
    }

    /// Writes the register at `offset`; the messages it makes deliverable (an unmasked
    /// asserted level entry, or the entries an EOI-register write re-delivers) go to
    /// `deliver`.
    pub fn mmio_write(
        &mut self,
        offset: u64,
        size: u8,
        value: u32,
        mut deliver: impl FnMut(Message),
    ) -> Result<(), IoapicError> {
        Self::check_access(offset, size)?;
        match offset {
            IOREGSEL => self.regsel = value & 0xFF,
            IOWIN => {
                if let Some(m) = self.write_register(self.regsel, value) {
                    deliver(m);
                }
            }
            _ => self.eoi(value as u8, deliver),
        }
        Ok(())
    }

    /// The register `index` as IOWIN shows it.
    pub fn read_register(&self, index: u32) -> u32 {
        match index {
            REG_ID => self.id,
            REG_VERSION => VERSION | ((self.pins as u32 - 1) << 16),
            REG_ARBITRATION => self.id,
            _ => match self.entry_half(index) {
                Some((pin, false)) => self.rte[pin] as u32,
                Some((pin, true)) => (self.rte[pin] >> 32) as u32,
                None => 0,
            },
        }
    }

    /// The pin whose entry IOREGSEL selects, if it selects one.
    pub fn selected_pin(&self) -> Option<usize> {
        self.entry_half(self.regsel).map(|(pin, _)| pin)
    }

    /// The pin and half (true = high dword) register `index` selects, if it is an entry.
    fn entry_half(&self, index: u32) -> Option<(usize, bool)> {
        let n = index.checked_sub(REG_REDIRECTION)? as usize;
        (n / 2 < self.pins).then_some((n / 2, n % 2 == 1))
    }

    /// Writes register `index` through IOWIN.
    pub fn write_register(&mut self, index: u32, value: u32) -> Option<Message> {
        if index == REG_ID {
            self.id = value & 0x0F00_0000;
            return None;
        }
        let (pin, high) = self.entry_half(index)?;
        let old = self.rte[pin];
        let written = if high {
            (old & 0xFFFF_FFFF) | ((value as u64) << 32)
        } else {
            (old & !0xFFFF_FFFF) | value as u64
        };
        let mut new = (written & RTE_WRITABLE) | (old & RteFlags::REMOTE_IRR.bits());
        if new & RteFlags::LEVEL.bits() == 0 {
            // Remote IRR means nothing for an edge entry; drop it so a later switch to level
            // does not start blocked.
            new &= !RteFlags::REMOTE_IRR.bits();
        }
        self.rte[pin] = new;
        // Unmasking (or reprogramming) an asserted level entry delivers it now.
        if self.is_level(pin) && self.is_asserted(pin) {
            self.service(pin)
        } else {
            None
        }
    }

    fn is_level(&self, pin: usize) -> bool {
        let rte = self.rte[pin];
        rte & RteFlags::LEVEL.bits() != 0
            && matches!(
                Delivery::decode((rte >> 8) as u32, false),
                Some(Delivery::Fixed | Delivery::LowestPriority)
            )
    }

    /// The message of `pin`'s entry if it may be delivered now; marks remote IRR for a level
    /// entry.
    fn service(&mut self, pin: usize) -> Option<Message> {
        let rte = self.rte[pin];
        let flags = RteFlags::from_bits_truncate(rte);
        if flags.contains(RteFlags::MASKED) {
            return None;
        }
        let level = self.is_level(pin);
        if level && flags.contains(RteFlags::REMOTE_IRR) {
            return None;
        }
        let delivery = Delivery::decode((rte >> 8) as u32, false)?;
        if level {
            self.rte[pin] |= RteFlags::REMOTE_IRR.bits();
        }
        Some(Message {
            vector: rte as u8,
            dest: (rte >> 56) as u32,
            wide_dest: false,
            dest_mode: if flags.contains(RteFlags::LOGICAL) {
                DestMode::Logical
            } else {
                DestMode::Physical
            },
            delivery,
            level_trigger: level,
            shorthand: Shorthand::None,
        })
    }

    fn active_low(&self, pin: usize) -> bool {
        self.rte[pin] & RteFlags::ACTIVE_LOW.bits() != 0
    }

    fn is_asserted(&self, pin: usize) -> bool {
        self.asserted & (1 << pin) != 0
    }

    fn set_asserted(&mut self, pin: usize, asserted: bool) {
        if asserted {
            self.asserted |= 1 << pin;
        } else {
            self.asserted &= !(1 << pin);
        }
    }

    /// Drives line `pin` electrically (ACRN's `GSI_SET_HIGH`/`GSI_SET_LOW`): high asserts an
    /// active-high entry, low an active-low one.
    pub fn set_level(&mut self, pin: usize, high: bool) -> Result<Option<Message>, IoapicError> {
        self.check_pin(pin)?;
        let op = if high != self.active_low(pin) {
            LineOp::Assert
        } else {
            LineOp::Deassert
        };
        self.set_irq(pin, op)
    }

    /// Changes line `pin` logically (asserted = requesting, whatever the polarity); returns
    /// the message to deliver, if any: an edge entry delivers on
    /// the rising edge, a level entry while asserted with remote IRR clear.
    pub fn set_irq(&mut self, pin: usize, op: LineOp) -> Result<Option<Message>, IoapicError> {
        self.check_pin(pin)?;
        let was_asserted = self.is_asserted(pin);
        let message = match op {
            LineOp::Deassert => None,
            LineOp::Assert | LineOp::Pulse => {
                self.set_asserted(pin, true);
                if self.is_level(pin) || !was_asserted {
                    self.service(pin)
                } else {
                    None
                }
            }
        };
        if op != LineOp::Assert {
            self.set_asserted(pin, false);
        }
        Ok(message)
    }

    /// An EOI for `vector` (broadcast from a vLAPIC, or the EOI register): clears remote IRR
    /// of the level entries with that vector and re-delivers those whose line is still
    /// asserted, through `deliver`.
    pub fn eoi(&mut self, vector: u8, mut deliver: impl FnMut(Message)) {
        for pin in 0..self.pins {
            let rte = self.rte[pin];
            if rte as u8 != vector || rte & RteFlags::REMOTE_IRR.bits() == 0 {
                continue;
            }
            self.rte[pin] &= !RteFlags::REMOTE_IRR.bits();
            if self.is_asserted(pin) {
                if let Some(m) = self.service(pin) {
                    deliver(m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(io: &mut Vioapic, pin: usize, low: u32, dest: u8) -> Option<Message> {
        let index = 0x10 + 2 * pin as u32;
        io.write_register(index + 1, (dest as u32) << 24);
        io.write_register(index, low)
    }

    fn eoi_all(io: &mut Vioapic, vector: u8) -> Vec<Message> {
        let mut out = Vec::new();
        io.eoi(vector, |m| out.push(m));
        out
    }

    #[test]
    fn identification_registers() {
        let mut io = Vioapic::new(48, 2);
        io.mmio_write(0, 4, 0, |_| {}).unwrap();
        assert_eq!(io.mmio_read(0x10, 4).unwrap(), 2 << 24);
        io.mmio_write(0, 4, 1, |_| {}).unwrap();
        assert_eq!(io.mmio_read(0x10, 4).unwrap(), 0x002F_0011);
        assert_eq!(io.mmio_read(0, 4).unwrap(), 1);
        io.mmio_write(0x10, 4, 0xFFFF_FFFF, |_| {}).unwrap();
        assert_eq!(io.read_register(1), 0x002F_0011, "version is read-only");
        io.write_register(0, 0x0500_0000);
        assert_eq!(io.read_register(0), 0x0500_0000);
        assert_eq!(io.read_register(2), 0x0500_0000);
        assert_eq!(Vioapic::new(24, 0).read_register(1), 0x0017_0011);
        assert_eq!(Vioapic::new(0, 0).pins(), 1);
        assert_eq!(Vioapic::new(1000, 0).pins(), 120);
        assert_eq!(Vioapic::new(120, 0).read_register(0x10 + 2 * 119), 0x1_0000);
    }

    #[test]
    fn bad_accesses_and_pins_are_errors() {
        let mut io = Vioapic::new(24, 0);
        assert_eq!(
            io.mmio_read(0x4, 4),
            Err(IoapicError::BadAccess { offset: 4, size: 4 })
        );
        assert!(io.mmio_read(0x10, 1).is_err());
        assert!(io.mmio_write(0x20, 4, 0, |_| {}).is_err());
        assert_eq!(
            io.set_irq(24, LineOp::Assert),
            Err(IoapicError::PinOutOfRange { pin: 24, pins: 24 })
        );
        assert!(io.set_irq(usize::MAX, LineOp::Pulse).is_err());
        assert!(io.entry(24).is_err());
        // Entries beyond the pin count read 0 and ignore writes.
        assert_eq!(io.write_register(0x10 + 48, 0x30), None);
        assert_eq!(io.read_register(0x10 + 48), 0);
    }

    #[test]
    fn entries_reset_masked_and_keep_read_only_bits() {
        let mut io = Vioapic::new(24, 0);
        assert_eq!(io.entry(5).unwrap(), 0x1_0000);
        program(&mut io, 5, 0x0000_FFFF | (1 << 14) | (1 << 12), 0x03);
        let rte = io.entry(5).unwrap();
        assert_eq!(
            rte & (1 << 12 | 1 << 14),
            0,
            "delivery status and remote IRR read-only"
        );
        assert_eq!(rte >> 56, 3);
        assert_eq!(io.read_register(0x10 + 11), 0x0300_0000);
        io.mmio_write(0, 4, 0x10 + 11, |_| {}).unwrap();
        assert_eq!(io.selected_pin(), Some(5));
        io.mmio_write(0, 4, 0x10 + 48, |_| {}).unwrap();
        assert_eq!(io.selected_pin(), None, "beyond the pins");
        io.mmio_write(0, 4, 1, |_| {}).unwrap();
        assert_eq!(io.selected_pin(), None);
    }

    #[test]
    fn edge_entries_deliver_on_rising_edges() {
        let mut io = Vioapic::new(24, 0);
        assert_eq!(io.set_irq(4, LineOp::Pulse).unwrap(), None, "masked");
        assert_eq!(program(&mut io, 4, 0x0834, 0x01), None);
        let m = io.set_irq(4, LineOp::Assert).unwrap().unwrap();
        assert_eq!(m.vector, 0x34);
        assert_eq!(m.dest, 1);
        assert_eq!(m.dest_mode, DestMode::Logical);
        assert!(!m.level_trigger);
        assert_eq!(io.set_irq(4, LineOp::Assert).unwrap(), None, "no new edge");
        io.set_irq(4, LineOp::Deassert).unwrap();
        assert!(io.set_irq(4, LineOp::Pulse).unwrap().is_some());
        assert!(io.set_irq(4, LineOp::Pulse).unwrap().is_some());
        // An edge while masked is lost at unmask.
        program(&mut io, 4, 0x1_0034, 0);
        io.set_irq(4, LineOp::Assert).unwrap();
        assert_eq!(program(&mut io, 4, 0x34, 0), None);
    }

    #[test]
    fn level_entries_use_remote_irr_and_redeliver_after_eoi() {
        let mut io = Vioapic::new(48, 0);
        program(&mut io, 40, 0x8041, 0x02);
        let m = io.set_irq(40, LineOp::Assert).unwrap().unwrap();
        assert!(m.level_trigger);
        assert_eq!(m.dest, 2);
        assert_ne!(io.entry(40).unwrap() & (1 << 14), 0, "remote IRR set");
        assert_eq!(
            io.set_irq(40, LineOp::Assert).unwrap(),
            None,
            "blocked by remote IRR"
        );
        assert_eq!(
            eoi_all(&mut io, 0x41),
            vec![m],
            "still asserted: delivered again"
        );
        io.set_irq(40, LineOp::Deassert).unwrap();
        assert!(eoi_all(&mut io, 0x41).is_empty());
        assert_eq!(io.entry(40).unwrap() & (1 << 14), 0);
        assert!(
            eoi_all(&mut io, 0x41).is_empty(),
            "EOI with nothing outstanding"
        );
        // A pulse on a level entry delivers once; its EOI re-delivers nothing.
        assert!(io.set_irq(40, LineOp::Pulse).unwrap().is_some());
        assert!(eoi_all(&mut io, 0x41).is_empty());
        // The EOI register does the same.
        io.set_irq(40, LineOp::Assert).unwrap();
        let mut out = Vec::new();
        io.mmio_write(0x40, 4, 0x42, |m| out.push(m)).unwrap();
        assert!(out.is_empty());
        io.mmio_write(0x40, 4, 0x41, |m| out.push(m)).unwrap();
        assert_eq!(out, vec![m]);
    }

    #[test]
    fn eoi_matches_vector_on_every_pin() {
        let mut io = Vioapic::new(24, 0);
        program(&mut io, 9, 0x8050, 0);
        program(&mut io, 10, 0x8050, 1);
        program(&mut io, 11, 0x8051, 1);
        for pin in [9, 10, 11] {
            assert!(io.set_irq(pin, LineOp::Assert).unwrap().is_some());
        }
        let out = eoi_all(&mut io, 0x50);
        assert_eq!(out.iter().map(|m| m.dest).collect::<Vec<_>>(), [0, 1]);
        assert_ne!(
            io.entry(11).unwrap() & (1 << 14),
            0,
            "other vector untouched"
        );
        // The EOI register re-delivers every matching asserted entry too.
        let mut via_register = Vec::new();
        io.mmio_write(0x40, 4, 0x50, |m| via_register.push(m))
            .unwrap();
        assert_eq!(via_register, out);
    }

    #[test]
    fn unmasking_an_asserted_level_pin_delivers() {
        let mut io = Vioapic::new(24, 0);
        program(&mut io, 3, 0x1_8060, 0);
        assert_eq!(io.set_irq(3, LineOp::Assert).unwrap(), None);
        let m = program(&mut io, 3, 0x8060, 0).unwrap();
        assert_eq!(m.vector, 0x60);
        // Re-writing the entry with remote IRR set does not deliver twice.
        assert_eq!(program(&mut io, 3, 0x8060, 0), None);
        // Switching to edge clears remote IRR.
        program(&mut io, 3, 0x0060, 0);
        assert_eq!(io.entry(3).unwrap() & (1 << 14), 0);
    }

    #[test]
    fn electrical_levels_follow_the_polarity() {
        let mut io = Vioapic::new(24, 0);
        // Active-low, level: low asserts; an undriven line is idle.
        assert!(program(&mut io, 16, 0xA051, 0).is_none());
        assert!(io.set_level(16, true).unwrap().is_none(), "high is idle");
        let m = io.set_level(16, false).unwrap().unwrap();
        assert_eq!(m.vector, 0x51);
        let mut out = Vec::new();
        io.eoi(0x51, |m| out.push(m));
        assert_eq!(out.len(), 1, "still low: still asserted");
        io.set_level(16, true).unwrap();
        out.clear();
        io.eoi(0x51, |m| out.push(m));
        assert!(out.is_empty());
        // Active-high edge: a rising edge delivers; a logical assert of an active-low line
        // drives it low.
        program(&mut io, 5, 0x0052, 0);
        assert!(io.set_level(5, true).unwrap().is_some());
        assert!(io.set_level(5, true).unwrap().is_none());
        program(&mut io, 6, 0x2053, 0);
        assert!(io.set_irq(6, LineOp::Assert).unwrap().is_some());
        assert!(io.set_level(6, false).unwrap().is_none(), "already low");
        assert!(io.set_level(99, true).is_err());
    }

    #[test]
    fn delivery_modes() {
        let mut io = Vioapic::new(24, 0);
        program(&mut io, 1, 0x0400, 0xFF);
        let m = io.set_irq(1, LineOp::Pulse).unwrap().unwrap();
        assert_eq!((m.delivery, m.dest), (Delivery::Nmi, 0xFF));
        // A level NMI entry behaves as edge: no remote IRR.
        program(&mut io, 2, 0x8400, 0);
        assert!(
            !io.set_irq(2, LineOp::Assert)
                .unwrap()
                .unwrap()
                .level_trigger
        );
        assert_eq!(io.entry(2).unwrap() & (1 << 14), 0);
        program(&mut io, 0, 0x0700, 0);
        assert_eq!(
            io.set_irq(0, LineOp::Pulse).unwrap().unwrap().delivery,
            Delivery::ExtInt
        );
        program(&mut io, 5, 0x0130, 0);
        assert_eq!(
            io.set_irq(5, LineOp::Pulse).unwrap().unwrap().delivery,
            Delivery::LowestPriority
        );
        // Reserved delivery modes deliver nothing.
        program(&mut io, 6, 0x0630, 0);
        assert_eq!(io.set_irq(6, LineOp::Pulse).unwrap(), None);
    }

    #[test]
    fn reset_masks_everything() {
        let mut io = Vioapic::new(24, 3);
        program(&mut io, 1, 0x8030, 0);
        io.set_irq(1, LineOp::Assert).unwrap();
        io.reset();
        assert_eq!(io.entry(1).unwrap(), 0x1_0000);
        assert_eq!(io.read_register(0), 3 << 24);
        assert_eq!(program(&mut io, 1, 0x8030, 0), None, "line state cleared");
    }

    #[test]
    fn arbitrary_traffic_never_panics() {
        let mut io = Vioapic::new(120, 0);
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match x % 5 {
                0 => {
                    let _ = io.mmio_write(
                        (x >> 8) & 0x7C,
                        (x >> 16) as u8 & 7,
                        (x >> 32) as u32,
                        |_| {},
                    );
                }
                1 => {
                    let _ = io.mmio_read((x >> 8) & 0x7C, 4);
                }
                2 => {
                    let _ = io.write_register((x >> 8) as u32 & 0xFF, (x >> 32) as u32);
                }
                3 => {
                    let op =
                        [LineOp::Assert, LineOp::Deassert, LineOp::Pulse][(x >> 20) as usize % 3];
                    let _ = io.set_irq((x >> 8) as usize % 130, op);
                }
                _ => io.eoi((x >> 8) as u8, |_| {}),
            }
            let pin = (x >> 40) as usize % 120;
            let rte = io.entry(pin).unwrap();
            assert_eq!(rte & (1 << 12), 0, "delivery status never shows");
            if rte & (1 << 14) != 0 {
                assert_ne!(rte & (1 << 15), 0, "remote IRR only on level entries");
            }
        }
    }
}
