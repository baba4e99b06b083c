//! INTx remapping of physical interrupts to a VM's vIOAPIC, as ACRN's ptirq does: when the
//! Service VM programs the vIOAPIC entry of a GSI it may own (or a pre-launched VM the virtual
//! GSI of one of its `pt_intx` lines, or a post-launched VM that of a line the Service VM gave
//! it), the physical IOAPIC pin of that GSI gets a hypervisor
//! vector (one per GSI), the guest's polarity and trigger mode, and a pCPU of that VM as
//! destination. When that vector arrives, the vIOAPIC pin is
//! pulsed (edge) or asserted (level). A level pin stays masked physically from its interrupt
//! until the guest's EOI for it reaches the vIOAPIC, which deasserts the virtual line; the
//! physical line, if the device still holds it, interrupts again after the unmask.
//!
//! This module is the pure part: who owns which GSI, the vector of each GSI, and the state
//! of each remapped pin (the hypervisor applies the physical entries it returns).

use super::ioapic::RteFlags;

/// The first vector given to remapped GSIs (below are the exceptions and the 8259's range).
pub const FIRST_VECTOR: u8 = 0x30;
/// GSIs the table can hold (the vIOAPIC addresses at most 120 pins).
pub const MAX_GSIS: usize = super::ioapic::MAX_PINS;
/// One past the last: one vector per GSI. Above lie the Service VM's MSI vectors, the
/// pass-through ones and the hypervisor's own (timer 0xEF, kick 0xF2, spurious 0xFF).
pub const END_VECTOR: u8 = FIRST_VECTOR + MAX_GSIS as u8;

/// Who a physical GSI belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The hypervisor's: the PIT and the 8259 cascade (GSI 0 and 2), the RTC (8), and its
    /// console UART's IRQ.
    Hypervisor,
    /// A pre-launched VM's pass-through line (`pt_intx`), by VM id.
    PreLaunched(u16),
    /// A line the Service VM gave a post-launched VM (HC_SET_PTDEV_INTR_INFO), by VM id.
    PostLaunched(u16),
    /// Any other pin of a physical IOAPIC: the Service VM may take it.
    ServiceVm,
    /// No physical IOAPIC has this GSI.
    NoPin,
}

/// The facts the ownership of GSIs follows from.
pub struct Ownership<'a> {
    /// (GSI base, pin count) of each physical IOAPIC.
    pub ioapics: &'a [(u32, u32)],
    /// The hypervisor console UART's IRQ, if it has one.
    pub console_irq: Option<u32>,
    /// (VM id, physical GSI) of each pre-launched VM's pass-through INTx line.
    pub pre_launched: &'a [(u16, u32)],
    /// (VM id, physical GSI) of each line given to a post-launched VM.
    pub post_launched: &'a [(u16, u32)],
}

/// GSIs the hypervisor keeps whatever the board: the 8259 cascade / ExtINT pin, the PIT
/// (IRQ 0 overridden to GSI 2 on every PC since the MP spec) and the RTC.
const HYPERVISOR_GSIS: [u32; 3] = [0, 2, 8];

impl Ownership<'_> {
    pub fn owner(&self, gsi: u32) -> Owner {
        let exists = self
            .ioapics
            .iter()
            .any(|&(base, count)| gsi >= base && gsi - base < count);
        if !exists {
            return Owner::NoPin;
        }
        if HYPERVISOR_GSIS.contains(&gsi) || self.console_irq == Some(gsi) {
            return Owner::Hypervisor;
        }
        if let Some(&(vm, _)) = self.pre_launched.iter().find(|&&(_, g)| g == gsi) {
            return Owner::PreLaunched(vm);
        }
        match self.post_launched.iter().find(|&&(_, g)| g == gsi) {
            Some(&(vm, _)) => Owner::PostLaunched(vm),
            None => Owner::ServiceVm,
        }
    }
}

/// What the pin of a remapped GSI must be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysEntry {
    pub gsi: u32,
    /// The 64-bit redirection entry (fixed delivery, physical destination).
    pub rte: u64,
}

/// The bits of a redirection entry that describe the line: polarity and trigger mode.
const LINE_BITS: u64 = RteFlags::ACTIVE_LOW.bits() | RteFlags::LEVEL.bits();

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remap {
    vector: u8,
    /// The guest's entry (polarity, trigger, mask) as last programmed.
    guest_rte: u64,
    /// Polarity and trigger mode of the guest's last unmasked entry: the pin keeps them
    /// while masked. A level line that rises while its pin is masked in edge mode is lost
    /// (the IOAPIC ignores edges on a masked pin, and the line does not rise again while it
    /// stays asserted), so a guest that masks with a bare mask must not turn it to edge.
    line: u64,
    /// The destination APIC ID.
    dest: u8,
    /// A level interrupt was taken and the guest has not sent its EOI yet: the physical pin
    /// stays masked.
    awaiting_eoi: bool,
}

impl Remap {
    fn level(&self) -> bool {
        self.line & RteFlags::LEVEL.bits() != 0
    }

    fn guest_masked(&self) -> bool {
        self.guest_rte & RteFlags::MASKED.bits() != 0
    }

    fn entry(&self, gsi: u32) -> PhysEntry {
        let mut rte = self.line | self.vector as u64 | (self.dest as u64) << 56;
        if self.guest_masked() || self.awaiting_eoi {
            rte |= RteFlags::MASKED.bits();
        }
        PhysEntry { gsi, rte }
    }
}

/// What the arrival of a remapped vector asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub gsi: u32,
    /// Assert the virtual line until the EOI (level), else pulse it.
    pub level: bool,
}

/// Every remapped GSI: its vector (kept for the GSI's life, as ACRN's per-GSI vectors) and
/// its pin state.
#[derive(Debug, Clone)]
pub struct RemapTable {
    by_gsi: [Option<Remap>; MAX_GSIS],
    next_vector: u8,
}

impl Default for RemapTable {
    fn default() -> Self {
        Self::new()
    }
}

impl RemapTable {
    pub const fn new() -> Self {
        RemapTable {
            by_gsi: [None; MAX_GSIS],
            next_vector: FIRST_VECTOR,
        }
    }

    /// The vector of `gsi`, if it has one.
    pub fn vector(&self, gsi: u32) -> Option<u8> {
        self.remap(gsi).map(|r| r.vector)
    }

    fn remap(&self, gsi: u32) -> Option<&Remap> {
        self.by_gsi.get(gsi as usize)?.as_ref()
    }

    /// The GSI whose vector is `vector`.
    pub fn gsi_of(&self, vector: u8) -> Option<u32> {
        self.by_gsi
            .iter()
            .position(|r| r.is_some_and(|r| r.vector == vector))
            .map(|g| g as u32)
    }

    /// The guest programmed `guest_rte` for `gsi` (which it owns); the physical pin gets the
    /// returned entry, destined to APIC ID `dest`. None when `gsi` is beyond the table or
    /// the vectors ran out (the pin stays masked).
    pub fn program(&mut self, gsi: u32, guest_rte: u64, dest: u8) -> Option<PhysEntry> {
        let next = self.next_vector;
        let slot = self.by_gsi.get_mut(gsi as usize)?;
        let remap = match slot {
            Some(r) => r,
            None => {
                if next >= END_VECTOR {
                    return None;
                }
                self.next_vector = next + 1;
                slot.insert(Remap {
                    vector: next,
                    guest_rte: RteFlags::MASKED.bits(),
                    line: guest_rte & LINE_BITS,
                    dest,
                    awaiting_eoi: false,
                })
            }
        };
        remap.guest_rte = guest_rte;
        if !remap.guest_masked() {
            remap.line = guest_rte & LINE_BITS;
        }
        remap.dest = dest;
        if !remap.level() {
            // An edge pin has no EOI to wait for.
            remap.awaiting_eoi = false;
        }
        Some(remap.entry(gsi))
    }

    /// `vector` arrived: which virtual line to drive. A level pin is now masked physically
    /// (the interrupt handler did so before its EOI) until [`RemapTable::eoi`].
    pub fn arrived(&mut self, vector: u8) -> Option<Arrival> {
        let gsi = self.gsi_of(vector)?;
        let remap = self.by_gsi[gsi as usize].as_mut()?;
        let level = remap.level();
        if level {
            remap.awaiting_eoi = true;
        }
        Some(Arrival { gsi, level })
    }

    /// Level GSIs waiting for the EOI of guest vector `guest_vector`.
    pub fn awaiting_eoi(&self, guest_vector: u8) -> impl Iterator<Item = u32> + '_ {
        self.by_gsi.iter().enumerate().filter_map(move |(g, r)| {
            r.filter(|r| r.awaiting_eoi && r.guest_rte as u8 == guest_vector)
                .map(|_| g as u32)
        })
    }

    /// Whether any level pin waits for an EOI.
    pub fn awaiting_any(&self) -> bool {
        self.by_gsi.iter().flatten().any(|r| r.awaiting_eoi)
    }

    /// The guest's EOI for `gsi`'s interrupt: the entry that unmasks its pin, if it waited.
    pub fn eoi(&mut self, gsi: u32) -> Option<PhysEntry> {
        let remap = self.by_gsi.get_mut(gsi as usize)?.as_mut()?;
        if !remap.awaiting_eoi {
            return None;
        }
        remap.awaiting_eoi = false;
        Some(remap.entry(gsi))
    }

    /// The remapped GSIs `which` selects, with their pins masked (their VM was reset): vectors
    /// stay allocated.
    pub fn mask<'a>(
        &'a mut self,
        which: impl Fn(u32) -> bool + 'a,
    ) -> impl Iterator<Item = PhysEntry> + 'a {
        self.by_gsi
            .iter_mut()
            .enumerate()
            .filter_map(move |(g, r)| {
                let r = r.as_mut().filter(|_| which(g as u32))?;
                r.guest_rte = RteFlags::MASKED.bits();
                r.awaiting_eoi = false;
                Some(r.entry(g as u32))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASKED: u64 = RteFlags::MASKED.bits();
    const LEVEL: u64 = RteFlags::LEVEL.bits();
    const LOW: u64 = RteFlags::ACTIVE_LOW.bits();

    #[test]
    fn ownership_follows_the_board_and_scenario() {
        let o = Ownership {
            ioapics: &[(0, 24), (24, 8)],
            console_irq: Some(4),
            pre_launched: &[(1, 17)],
            post_launched: &[(3, 18), (3, 17), (4, 2)],
        };
        assert_eq!(o.owner(0), Owner::Hypervisor);
        assert_eq!(o.owner(2), Owner::Hypervisor, "PIT");
        assert_eq!(o.owner(8), Owner::Hypervisor, "RTC");
        assert_eq!(o.owner(4), Owner::Hypervisor, "console UART");
        assert_eq!(o.owner(3), Owner::ServiceVm);
        assert_eq!(
            o.owner(17),
            Owner::PreLaunched(1),
            "a pre-launched line is never lent"
        );
        assert_eq!(o.owner(18), Owner::PostLaunched(3));
        assert_eq!(o.owner(2), Owner::Hypervisor, "the hypervisor's stays");
        assert_eq!(o.owner(16), Owner::ServiceVm);
        assert_eq!(o.owner(31), Owner::ServiceVm, "second IOAPIC");
        assert_eq!(o.owner(32), Owner::NoPin);
        assert_eq!(o.owner(u32::MAX), Owner::NoPin);
        let no_console = Ownership {
            console_irq: None,
            ..o
        };
        assert_eq!(no_console.owner(4), Owner::ServiceVm);
    }

    #[test]
    fn vectors_are_per_gsi_and_kept() {
        let mut t = RemapTable::new();
        let a = t.program(16, 0x8041 | MASKED, 0).unwrap();
        let b = t.program(9, 0x0042, 0).unwrap();
        assert_eq!(a.rte as u8, FIRST_VECTOR);
        assert_eq!(b.rte as u8, FIRST_VECTOR + 1);
        // Reprogramming (a new guest vector too) keeps the hypervisor vector.
        let a2 = t.program(16, 0x8077, 2).unwrap();
        assert_eq!(a2.rte as u8, FIRST_VECTOR);
        assert_eq!(t.gsi_of(FIRST_VECTOR), Some(16));
        assert_eq!(t.gsi_of(FIRST_VECTOR + 1), Some(9));
        assert_eq!(t.gsi_of(FIRST_VECTOR + 2), None);
        assert_eq!(t.program(MAX_GSIS as u32, 0, 0), None, "beyond the table");
    }

    #[test]
    fn every_gsi_gets_its_own_vector_below_the_hypervisors() {
        let mut t = RemapTable::new();
        for gsi in 0..MAX_GSIS as u32 {
            assert!(t.program(gsi, MASKED, 0).is_some());
        }
        let mut vectors: Vec<u8> = (0..MAX_GSIS as u32).filter_map(|g| t.vector(g)).collect();
        vectors.sort();
        vectors.dedup();
        assert_eq!(vectors.len(), MAX_GSIS);
        assert!(vectors
            .iter()
            .all(|&v| (FIRST_VECTOR..END_VECTOR).contains(&v)));
    }

    #[test]
    fn physical_entry_follows_the_guest() {
        let mut t = RemapTable::new();
        let e = t.program(20, LEVEL | LOW | 0x0955 | MASKED, 3);
        let e = e.unwrap();
        assert_eq!(e.gsi, 20);
        assert_eq!(e.rte as u8, FIRST_VECTOR, "the hypervisor's vector");
        assert_eq!(e.rte >> 56, 3, "physical destination");
        assert_eq!(e.rte & 0x700, 0, "fixed delivery, whatever the guest chose");
        assert_eq!(e.rte & (1 << 11), 0, "physical destination mode");
        assert_eq!(e.rte & (LEVEL | LOW | MASKED), LEVEL | LOW | MASKED);
        let e = t.program(20, 0x0055, 3).unwrap();
        assert_eq!(
            e.rte & (LEVEL | LOW | MASKED),
            0,
            "edge, active high, unmasked"
        );
    }

    #[test]
    fn level_pin_stays_masked_until_the_eoi() {
        let mut t = RemapTable::new();
        t.program(16, LEVEL | 0x61, 0).unwrap();
        let v = t.vector(16).unwrap();
        assert_eq!(
            t.arrived(v),
            Some(Arrival {
                gsi: 16,
                level: true
            })
        );
        assert_eq!(t.awaiting_eoi(0x61).collect::<Vec<_>>(), [16]);
        assert_eq!(t.awaiting_eoi(0x62).count(), 0, "another guest vector");
        // Reprogramming meanwhile keeps the pin masked.
        let e = t.program(16, LEVEL | 0x61, 1).unwrap();
        assert_ne!(e.rte & MASKED, 0);
        let e = t.eoi(16).unwrap();
        assert_eq!(e.rte & MASKED, 0, "unmasked by the EOI");
        assert_eq!(e.rte >> 56, 1);
        assert_eq!(t.eoi(16), None, "a second EOI changes nothing");
        assert_eq!(t.awaiting_eoi(0x61).count(), 0);
        // The guest masked it while waiting: the EOI leaves it masked.
        t.arrived(v).unwrap();
        t.program(16, LEVEL | MASKED | 0x61, 1).unwrap();
        assert_ne!(t.eoi(16).unwrap().rte & MASKED, 0);
    }

    #[test]
    fn edge_pins_are_pulsed_and_never_wait() {
        let mut t = RemapTable::new();
        t.program(3, 0x44, 0).unwrap();
        let v = t.vector(3).unwrap();
        assert_eq!(
            t.arrived(v),
            Some(Arrival {
                gsi: 3,
                level: false
            })
        );
        assert_eq!(t.awaiting_eoi(0x44).count(), 0);
        assert_eq!(t.eoi(3), None);
        assert_eq!(t.arrived(0x20), None, "not a remapped vector");
        // Level, taken, then switched to edge: nothing waits any more.
        t.program(3, LEVEL | 0x44, 0).unwrap();
        t.arrived(v).unwrap();
        assert_eq!(t.program(3, 0x44, 0).unwrap().rte & MASKED, 0);
        assert_eq!(t.eoi(3), None);
    }

    #[test]
    fn a_masked_pin_keeps_its_line_mode() {
        let mut t = RemapTable::new();
        t.program(22, LEVEL | LOW | 0x59, 0).unwrap();
        // A bare mask (vector 0, edge, active high) leaves the pin level and active low.
        let e = t.program(22, MASKED, 0).unwrap();
        assert_eq!(e.rte & (LEVEL | LOW | MASKED), LEVEL | LOW | MASKED);
        assert!(t
            .mask(|_| true)
            .all(|e| e.rte & (LEVEL | LOW) == LEVEL | LOW));
        // The next unmasked entry decides again.
        let e = t.program(22, 0x33, 0).unwrap();
        assert_eq!(e.rte & (LEVEL | LOW | MASKED), 0);
        // A first entry that is masked sets the mode it names.
        let e = t.program(23, MASKED | LEVEL, 0).unwrap();
        assert_eq!(e.rte & (LEVEL | MASKED), LEVEL | MASKED);
    }

    #[test]
    fn reset_masks_every_pin() {
        let mut t = RemapTable::new();
        t.program(5, 0x40, 0).unwrap();
        t.program(16, LEVEL | 0x41, 0).unwrap();
        t.arrived(t.vector(16).unwrap()).unwrap();
        let all: Vec<_> = t.mask(|_| true).collect();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|e| e.rte & MASKED != 0));
        assert_eq!(t.eoi(16), None);
        assert_eq!(t.vector(5), Some(FIRST_VECTOR), "vectors stay");
    }
}
