//! A virtual pair of 8259A programmable interrupt controllers (master at ports 0x20/0x21,
//! slave at 0xA0/0xA1, cascaded on master IR2) with the edge/level control registers at
//! 0x4D0/0x4D1: the ICW1-ICW4 initialisation sequence, OCW1 (mask), OCW2 (EOIs and
//! rotation), OCW3 (IRR/ISR read select, poll, special mask), auto-EOI and the INTA cycle.
//!
//! The pair's INTR output reaches a vCPU through its vLAPIC's LINT0 in ExtINT mode (or
//! directly when that APIC is disabled): the caller checks [`Vpic::output`] and, when it
//! injects, calls [`Vpic::acknowledge`] for the vector.
//!
//! Limits: a chip gives no output until it has been initialised with ICW1-ICW4 (there is no
//! BIOS to do it; every IR starts masked); an edge request stays in IRR until acknowledged
//! even if the line drops first (the datasheet answers IR7 then); the master's IR2 follows
//! the slave's output as a level (so a slave with several requests is never lost);
//! buffered mode, 8080/8085 mode (ICW4 bit 0 clear) and the ICW1 ADI/interval bits are
//! ignored; special fully nested mode lets the slave interrupt a slave interrupt in service.

use super::irq::LineOp;

pub const MASTER_COMMAND: u16 = 0x20;
pub const MASTER_DATA: u16 = 0x21;
pub const SLAVE_COMMAND: u16 = 0xA0;
pub const SLAVE_DATA: u16 = 0xA1;
pub const ELCR_MASTER: u16 = 0x4D0;
pub const ELCR_SLAVE: u16 = 0x4D1;

/// The master IR the slave is cascaded on.
const CASCADE_IRQ: u8 = 2;
/// ELCR bits that may be level: not IRQ 0, 1, 2 (timer, keyboard, cascade) nor 8 and 13.
const ELCR_WRITABLE: [u8; 2] = [0xF8, 0xDE];

const ICW1: u8 = 1 << 4;
const ICW1_IC4: u8 = 1 << 0;
const ICW1_SINGLE: u8 = 1 << 1;
const ICW1_LTIM: u8 = 1 << 3;
const ICW4_AUTO_EOI: u8 = 1 << 1;
const ICW4_SFNM: u8 = 1 << 4;
const OCW3: u8 = 1 << 3;
const OCW3_POLL: u8 = 1 << 2;
const OCW3_READ_REGISTER: u8 = 1 << 1;
const OCW3_READ_ISR: u8 = 1 << 0;
const OCW3_SET_SPECIAL_MASK: u8 = 1 << 6;
const OCW3_SPECIAL_MASK: u8 = 1 << 5;

/// A line number the pair does not have (or the cascade line, which no device drives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PicIrqError(pub u8);

impl core::fmt::Display for PicIrqError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(
            f,
            "PIC IRQ {} cannot be driven (valid: 0..15 except 2, the cascade)",
            self.0
        )
    }
}

/// Where the chip is in its initialisation sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Init {
    Done,
    Icw2,
    Icw3,
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
struct Chip {
    irr: u8,
    isr: u8,
    imr: u8,
    /// The input lines as last driven (edge detection and level requests).
    lines: u8,
    elcr: u8,
    elcr_writable: u8,
    icw1: u8,
    init: Init,
    /// Set once ICW1-ICW4 ran: until then the chip gives no output.
    ready: bool,
    vector_base: u8,
    auto_eoi: bool,
    rotate_on_auto_eoi: bool,
    special_fully_nested: bool,
    special_mask: bool,
    read_isr: bool,
    poll: bool,
    /// The IR with the highest priority (rotation; 0 after initialisation).
    lowest_priority_plus_one: u8,
}

impl Chip {
    fn new(elcr_writable: u8) -> Self {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0xFF,
            lines: 0,
            elcr: 0,
            elcr_writable,
            icw1: 0,
            init: Init::Done,
            ready: false,
            vector_base: 0,
            auto_eoi: false,
            rotate_on_auto_eoi: false,
            special_fully_nested: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            lowest_priority_plus_one: 0,
        }
    }

    fn level_mask(&self) -> u8 {
        if self.icw1 & ICW1_LTIM != 0 {
            0xFF
        } else {
            self.elcr
        }
    }

    /// Drives input `irq` (0..8) to `high`.
    fn set_line(&mut self, irq: u8, high: bool) {
        let bit = 1u8 << (irq & 7);
        if high {
            if self.level_mask() & bit != 0 || self.lines & bit == 0 {
                self.irr |= bit;
            }
            self.lines |= bit;
        } else {
            if self.level_mask() & bit != 0 {
                self.irr &= !bit;
            }
            self.lines &= !bit;
        }
    }

    /// Priority rank of `irq` (0 = highest) under the current rotation.
    fn rank(&self, irq: u8) -> u8 {
        irq.wrapping_sub(self.lowest_priority_plus_one) & 7
    }

    /// The highest-priority IR set in `bits`.
    fn highest(&self, bits: u8) -> Option<u8> {
        (0..8)
            .map(|rank| (rank + self.lowest_priority_plus_one) & 7)
            .find(|&irq| bits & (1 << irq) != 0)
    }

    /// The IR the chip raises INT for: the highest unmasked request above every in-service
    /// level that blocks it.
    fn deliverable(&self, is_master: bool) -> Option<u8> {
        if !self.ready {
            return None;
        }
        let request = self.highest(self.irr & !self.imr)?;
        let mut blocking = self.isr;
        if self.special_mask {
            blocking &= !self.imr;
        }
        if is_master && self.special_fully_nested {
            // A higher slave request may interrupt a slave interrupt in service.
            blocking &= !(1 << CASCADE_IRQ);
        }
        match self.highest(blocking) {
            Some(in_service) if self.rank(in_service) <= self.rank(request) => None,
            _ => Some(request),
        }
    }

    /// The INTA cycle for `irq`: IRR to ISR (or auto-EOI).
    fn acknowledge(&mut self, irq: u8) {
        let bit = 1 << irq;
        if self.level_mask() & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_auto_eoi {
                self.lowest_priority_plus_one = (irq + 1) & 7;
            }
        } else {
            self.isr |= bit;
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & ICW1 != 0 {
            self.icw1 = value;
            self.init = Init::Icw2;
            self.ready = false;
            // The edge sense circuit resets: edges need a new low-to-high transition.
            self.lines = 0;
            self.irr = 0;
            self.isr = 0;
            self.imr = 0;
            self.special_mask = false;
            self.read_isr = false;
            self.poll = false;
            self.lowest_priority_plus_one = 0;
            self.rotate_on_auto_eoi = false;
            if value & ICW1_IC4 == 0 {
                self.auto_eoi = false;
                self.special_fully_nested = false;
            }
        } else if value & OCW3 != 0 {
            if value & OCW3_POLL != 0 {
                self.poll = true;
            }
            if value & OCW3_READ_REGISTER != 0 {
                self.read_isr = value & OCW3_READ_ISR != 0;
            }
            if value & OCW3_SET_SPECIAL_MASK != 0 {
                self.special_mask = value & OCW3_SPECIAL_MASK != 0;
            }
        } else {
            self.write_ocw2(value);
        }
    }

    fn write_ocw2(&mut self, value: u8) {
        let level = value & 7;
        let in_service = self.highest(self.isr);
        match value >> 5 {
            // Non-specific EOI, optionally rotating.
            0b001 | 0b101 => {
                if let Some(irq) = in_service {
                    self.isr &= !(1 << irq);
                    if value >> 5 == 0b101 {
                        self.lowest_priority_plus_one = (irq + 1) & 7;
                    }
                }
            }
            // Specific EOI, optionally rotating.
            0b011 | 0b111 => {
                self.isr &= !(1 << level);
                if value >> 5 == 0b111 {
                    self.lowest_priority_plus_one = (level + 1) & 7;
                }
            }
            0b100 => self.rotate_on_auto_eoi = true,
            0b000 => self.rotate_on_auto_eoi = false,
            // Set priority: `level` becomes the lowest.
            0b110 => self.lowest_priority_plus_one = (level + 1) & 7,
            _ => {}
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.init {
            Init::Done => self.imr = value,
            Init::Icw2 => {
                self.vector_base = value & 0xF8;
                self.init = if self.icw1 & ICW1_SINGLE == 0 {
                    Init::Icw3
                } else {
                    self.after_icw3()
                };
            }
            // The cascade wiring is fixed (slave on IR2); ICW3 is accepted as written.
            Init::Icw3 => self.init = self.after_icw3(),
            Init::Icw4 => {
                self.auto_eoi = value & ICW4_AUTO_EOI != 0;
                self.special_fully_nested = value & ICW4_SFNM != 0;
                self.init = Init::Done;
                self.ready = true;
            }
        }
    }

    fn after_icw3(&mut self) -> Init {
        if self.icw1 & ICW1_IC4 != 0 {
            Init::Icw4
        } else {
            self.ready = true;
            Init::Done
        }
    }
}

/// The master/slave pair.
#[derive(Debug, Clone)]
pub struct Vpic {
    chips: [Chip; 2],
}

impl Default for Vpic {
    fn default() -> Self {
        Self::new()
    }
}

impl Vpic {
    /// Both chips uninitialised with every IR masked and edge-triggered.
    pub fn new() -> Self {
        Vpic {
            chips: [Chip::new(ELCR_WRITABLE[0]), Chip::new(ELCR_WRITABLE[1])],
        }
    }

    /// True for the ports the pair decodes.
    pub fn claims_port(port: u16) -> bool {
        matches!(
            port,
            MASTER_COMMAND | MASTER_DATA | SLAVE_COMMAND | SLAVE_DATA | ELCR_MASTER | ELCR_SLAVE
        )
    }

    /// The master's IR2 follows the slave's output as a level (ELCR cannot mark IR2 level,
    /// so this bypasses the edge logic).
    fn update_cascade(&mut self) {
        let bit = 1 << CASCADE_IRQ;
        let slave_int = self.chips[1].deliverable(false).is_some();
        let master = &mut self.chips[0];
        if slave_int {
            master.irr |= bit;
            master.lines |= bit;
        } else {
            master.irr &= !bit;
            master.lines &= !bit;
        }
    }

    /// Drives IRQ `irq` (0..16, not the cascade IRQ 2).
    pub fn set_irq(&mut self, irq: u8, op: LineOp) -> Result<(), PicIrqError> {
        if irq >= 16 || irq == CASCADE_IRQ {
            return Err(PicIrqError(irq));
        }
        let chip = &mut self.chips[irq as usize / 8];
        match op {
            LineOp::Assert => chip.set_line(irq % 8, true),
            LineOp::Deassert => chip.set_line(irq % 8, false),
            LineOp::Pulse => {
                chip.set_line(irq % 8, true);
                chip.set_line(irq % 8, false);
            }
        }
        self.update_cascade();
        Ok(())
    }

    /// The vector the next INTA cycle would return while INTR is raised, None while it is
    /// low.
    pub fn output(&self) -> Option<u8> {
        let irq = self.chips[0].deliverable(true)?;
        if irq != CASCADE_IRQ {
            return Some(self.chips[0].vector_base | irq);
        }
        Some(match self.chips[1].deliverable(false) {
            Some(slave_irq) => self.chips[1].vector_base | slave_irq,
            None => self.chips[1].vector_base | 7,
        })
    }

    /// The INTA cycle: the vector of the highest request, moved from IRR to ISR. With no
    /// request left (it went away) the answer is the spurious IRQ 7 (or 15 through the
    /// cascade) with no ISR bit set.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.chips[0].deliverable(true) {
            None => self.chips[0].vector_base | 7,
            Some(CASCADE_IRQ) => {
                self.chips[0].acknowledge(CASCADE_IRQ);
                match self.chips[1].deliverable(false) {
                    Some(irq) => {
                        self.chips[1].acknowledge(irq);
                        self.chips[1].vector_base | irq
                    }
                    None => self.chips[1].vector_base | 7,
                }
            }
            Some(irq) => {
                self.chips[0].acknowledge(irq);
                self.chips[0].vector_base | irq
            }
        };
        self.update_cascade();
        vector
    }

    /// A port read; 0xFF for a port the pair does not decode.
    pub fn io_read(&mut self, port: u16) -> u8 {
        let (index, command) = match port {
            MASTER_COMMAND => (0, true),
            MASTER_DATA => (0, false),
            SLAVE_COMMAND => (1, true),
            SLAVE_DATA => (1, false),
            ELCR_MASTER => return self.chips[0].elcr,
            ELCR_SLAVE => return self.chips[1].elcr,
            _ => return 0xFF,
        };
        let value = if self.chips[index].poll {
            // Poll: acts as an INTA on this chip alone and returns 1000_0LLL.
            let chip = &mut self.chips[index];
            chip.poll = false;
            match chip.deliverable(index == 0) {
                Some(irq) => {
                    chip.acknowledge(irq);
                    0x80 | irq
                }
                None => 0,
            }
        } else if command {
            let chip = &self.chips[index];
            if chip.read_isr {
                chip.isr
            } else {
                chip.irr
            }
        } else {
            self.chips[index].imr
        };
        self.update_cascade();
        value
    }

    /// A port write; ignored for a port the pair does not decode.
    pub fn io_write(&mut self, port: u16, value: u8) {
        match port {
            MASTER_COMMAND => self.chips[0].write_command(value),
            MASTER_DATA => self.chips[0].write_data(value),
            SLAVE_COMMAND => self.chips[1].write_command(value),
            SLAVE_DATA => self.chips[1].write_data(value),
            ELCR_MASTER | ELCR_SLAVE => {
                let chip = &mut self.chips[(port - ELCR_MASTER) as usize];
                chip.elcr = value & chip.elcr_writable;
            }
            _ => return,
        }
        self.update_cascade();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The initialisation Linux and BIOSes use: edge, cascade, 8086 mode.
    fn initialised(auto_eoi: bool) -> Vpic {
        let mut p = Vpic::new();
        let icw4 = if auto_eoi { 0x03 } else { 0x01 };
        for (cmd, data, base, icw3) in [(0x20, 0x21, 0x30, 0x04), (0xA0, 0xA1, 0x38, 0x02)] {
            p.io_write(cmd, 0x11);
            p.io_write(data, base);
            p.io_write(data, icw3);
            p.io_write(data, icw4);
        }
        p.io_write(0x21, 0x00);
        p.io_write(0xA1, 0x00);
        p
    }

    fn eoi(p: &mut Vpic, slave: bool) {
        if slave {
            p.io_write(0xA0, 0x20);
        }
        p.io_write(0x20, 0x20);
    }

    #[test]
    fn nothing_before_initialisation() {
        let mut p = Vpic::new();
        assert_eq!(p.io_read(0x21), 0xFF, "all masked at power-up");
        p.io_write(0x21, 0);
        p.set_irq(1, LineOp::Assert).unwrap();
        assert_eq!(p.output(), None);
        // ICW1 without ICW4 also completes.
        p.io_write(0x20, 0x12); // single, no ICW4
        p.io_write(0x21, 0x40);
        p.set_irq(1, LineOp::Pulse).unwrap();
        assert_eq!(p.output(), Some(0x41));
    }

    #[test]
    fn edge_request_ack_and_eoi() {
        let mut p = initialised(false);
        p.set_irq(1, LineOp::Assert).unwrap();
        assert_eq!(p.output(), Some(0x31));
        assert_eq!(p.io_read(0x20), 0b10, "IRR by default");
        assert_eq!(p.acknowledge(), 0x31);
        assert_eq!(p.output(), None);
        p.io_write(0x20, 0x0B);
        assert_eq!(p.io_read(0x20), 0b10, "ISR after OCW3 RIS");
        p.set_irq(1, LineOp::Assert).unwrap();
        assert_eq!(p.output(), None, "still high: no new edge");
        p.set_irq(1, LineOp::Deassert).unwrap();
        p.set_irq(1, LineOp::Assert).unwrap();
        assert_eq!(p.output(), None, "blocked by the in-service IRQ 1");
        eoi(&mut p, false);
        assert_eq!(p.io_read(0x20), 0);
        assert_eq!(p.output(), Some(0x31));
    }

    #[test]
    fn priorities_and_nesting() {
        let mut p = initialised(false);
        p.set_irq(4, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x34);
        p.set_irq(6, LineOp::Pulse).unwrap();
        assert_eq!(p.output(), None, "lower priority than IRQ 4 in service");
        p.set_irq(3, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x33, "higher priority nests");
        eoi(&mut p, false); // clears 3 (highest in service)
        assert_eq!(p.output(), None, "4 still in service");
        eoi(&mut p, false);
        assert_eq!(p.acknowledge(), 0x36);
        // Masking.
        p.io_write(0x21, 1 << 5);
        p.set_irq(5, LineOp::Pulse).unwrap();
        eoi(&mut p, false);
        assert_eq!(p.output(), None);
        p.io_write(0x21, 0);
        assert_eq!(p.output(), Some(0x35));
    }

    #[test]
    fn slave_through_the_cascade() {
        let mut p = initialised(false);
        p.set_irq(8, LineOp::Pulse).unwrap();
        p.set_irq(12, LineOp::Pulse).unwrap();
        assert_eq!(p.output(), Some(0x38));
        assert_eq!(p.acknowledge(), 0x38);
        assert_eq!(p.output(), None);
        eoi(&mut p, true);
        assert_eq!(
            p.acknowledge(),
            0x3C,
            "the second slave request is not lost"
        );
        eoi(&mut p, true);
        assert_eq!(p.output(), None);
        // A master IRQ 1 beats the slave (IR2 ranks below IR1), IRQ 3 does not.
        p.set_irq(3, LineOp::Pulse).unwrap();
        p.set_irq(9, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x39);
        p.set_irq(1, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x31);
        eoi(&mut p, false);
        eoi(&mut p, true);
        assert_eq!(p.acknowledge(), 0x33);
    }

    #[test]
    fn spurious_interrupts() {
        let mut p = initialised(false);
        assert_eq!(p.acknowledge(), 0x37, "no request: IRQ 7");
        p.io_write(0x20, 0x0B);
        assert_eq!(p.io_read(0x20), 0, "spurious IRQ 7 sets no ISR bit");
        // The slave's request vanishes (level line dropped) between output and INTA.
        p.io_write(0x4D1, 0x02); // IRQ 9 level
        p.set_irq(9, LineOp::Assert).unwrap();
        assert_eq!(p.output(), Some(0x39));
        p.set_irq(9, LineOp::Deassert).unwrap();
        assert_eq!(p.output(), None);
        assert_eq!(p.acknowledge(), 0x37);
    }

    #[test]
    fn level_triggered_via_elcr() {
        let mut p = initialised(false);
        p.io_write(0x4D0, 0xFF);
        assert_eq!(p.io_read(0x4D0), 0xF8, "IRQ 0-2 cannot be level");
        p.io_write(0x4D1, 0xFF);
        assert_eq!(p.io_read(0x4D1), 0xDE, "IRQ 8 and 13 cannot be level");
        p.set_irq(5, LineOp::Assert).unwrap();
        assert_eq!(p.acknowledge(), 0x35);
        eoi(&mut p, false);
        assert_eq!(p.output(), Some(0x35), "still asserted: requested again");
        p.set_irq(5, LineOp::Deassert).unwrap();
        assert_eq!(p.output(), None);
        // LTIM makes every input level-sensitive.
        let mut p = Vpic::new();
        p.io_write(0x20, 0x1B);
        p.io_write(0x21, 0x20);
        p.io_write(0x21, 0x01);
        p.io_write(0x21, 0x00);
        p.set_irq(1, LineOp::Assert).unwrap();
        p.set_irq(1, LineOp::Deassert).unwrap();
        assert_eq!(p.output(), None);
    }

    #[test]
    fn auto_eoi_and_rotation() {
        let mut p = initialised(true);
        p.set_irq(4, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x34);
        p.io_write(0x20, 0x0B);
        assert_eq!(p.io_read(0x20), 0, "auto-EOI sets no ISR bit");
        p.set_irq(6, LineOp::Pulse).unwrap();
        assert_eq!(p.output(), Some(0x36));
        p.acknowledge();
        // Rotate on auto-EOI: IRQ 3 served, so IRQ 4 now outranks IRQ 1.
        p.io_write(0x20, 0x80);
        p.set_irq(3, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x33);
        p.set_irq(1, LineOp::Pulse).unwrap();
        p.set_irq(4, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x34);
        assert_eq!(p.acknowledge(), 0x31);
    }

    #[test]
    fn specific_eoi_rotation_and_set_priority() {
        let mut p = initialised(false);
        p.set_irq(0, LineOp::Pulse).unwrap();
        p.set_irq(5, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x30);
        p.io_write(0x20, 0x60); // specific EOI level 0
        assert_eq!(p.acknowledge(), 0x35);
        p.io_write(0x20, 0xE5); // rotate on specific EOI 5: IRQ 6 highest
        p.set_irq(0, LineOp::Pulse).unwrap();
        p.set_irq(7, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x37);
        p.io_write(0x20, 0xA0); // rotate on non-specific EOI of 7: IRQ 0 highest
        assert_eq!(p.acknowledge(), 0x30);
        p.io_write(0x20, 0x20);
        p.io_write(0x20, 0xC3); // set priority: IRQ 3 lowest, 4 highest
        p.set_irq(3, LineOp::Pulse).unwrap();
        p.set_irq(4, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x34);
    }

    #[test]
    fn special_mask_mode() {
        let mut p = initialised(false);
        p.set_irq(3, LineOp::Pulse).unwrap();
        assert_eq!(p.acknowledge(), 0x33);
        p.set_irq(5, LineOp::Pulse).unwrap();
        assert_eq!(p.output(), None);
        p.io_write(0x21, 1 << 3);
        p.io_write(0x20, 0x68); // set special mask
        assert_eq!(
            p.output(),
            Some(0x35),
            "masked in-service IRQ 3 no longer blocks"
        );
        p.io_write(0x20, 0x48); // reset special mask
        assert_eq!(p.output(), None);
    }

    #[test]
    fn poll_mode() {
        let mut p = initialised(false);
        p.io_write(0x20, 0x0C);
        assert_eq!(p.io_read(0x20), 0, "no request");
        p.set_irq(6, LineOp::Pulse).unwrap();
        p.io_write(0x20, 0x0C);
        assert_eq!(p.io_read(0x20), 0x86);
        p.io_write(0x20, 0x0B);
        assert_eq!(p.io_read(0x20), 1 << 6, "poll acknowledged IRQ 6");
        assert_eq!(p.io_read(0x21), 0, "poll is one read only");
    }

    #[test]
    fn bad_lines_and_ports() {
        let mut p = initialised(false);
        assert_eq!(p.set_irq(2, LineOp::Assert), Err(PicIrqError(2)));
        assert_eq!(p.set_irq(16, LineOp::Assert), Err(PicIrqError(16)));
        assert_eq!(p.io_read(0x22), 0xFF);
        p.io_write(0x22, 0);
        assert!(Vpic::claims_port(0x4D1) && !Vpic::claims_port(0x4D2));
    }

    #[test]
    fn arbitrary_traffic_never_panics() {
        let ports = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x22];
        let mut p = Vpic::new();
        let mut x: u64 = 0x0123_4567_89AB_CDEF;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = ports[(x >> 8) as usize % ports.len()];
            match x % 5 {
                0 | 1 => p.io_write(port, (x >> 32) as u8),
                2 => {
                    let _ = p.io_read(port);
                }
                3 => {
                    let op =
                        [LineOp::Assert, LineOp::Deassert, LineOp::Pulse][(x >> 24) as usize % 3];
                    let _ = p.set_irq((x >> 16) as u8 % 18, op);
                }
                _ => {
                    if p.output().is_some() {
                        p.acknowledge();
                    }
                }
            }
        }
    }
}
