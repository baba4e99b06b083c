//! Virtual interrupts of post-launched VMs (pure logic, host-tested): the per-vCPU pending
//! vector set, MSI decoding, interrupt selection by priority, a minimal local APIC register
//! model and a minimal I/O APIC. The bare-metal loop (`run`) wires them to the vCPUs.
//!
//! Documented limits: the local APIC has no timer (a guest that arms it is told so and
//! stopped), logical destinations use the flat model only, INIT/SIPI through the ICR are not
//! emulated (the Service VM starts APs with HC_SET_VCPU_REGS), and an interrupt reaches a vCPU
//! that runs without VM exits only at its next exit (no kick IPI: physical interrupts belong to
//! the guest pinned on the pCPU). A vector moves from IRR to ISR when it is handed to the
//! backend, which may still hold it until the guest opens its interrupt window; level-triggered
//! entries are not tracked in a TMR (every EOI goes to the I/O APIC, which matches by vector).
//! Only MOV accesses to the APIC pages are emulated (not the ALU/BT forms the pre-launched
//! path decodes).

use core::sync::atomic::{AtomicU64, Ordering};

/// Guest-physical base of every post-launched vCPU's xAPIC page.
pub const LAPIC_GPA: u64 = 0xFEE0_0000;
/// Guest-physical base of the post-launched VM's I/O APIC.
pub const IOAPIC_GPA: u64 = 0xFEC0_0000;
/// Pins of the virtual I/O APIC (ACRN's post-launched vIOAPIC has 48; HC_SET_IRQLINE checks).
pub const IOAPIC_PINS: usize = 48;

/// 256 vectors as four 64-bit words (bit `v % 64` of word `v / 64`).
pub type Vectors = [u64; 4];

/// The vectors requested for one vCPU and not yet taken by it (its IRR). Any pCPU may set
/// bits (hypercalls, other vCPUs' IPIs); the pCPU running the vCPU takes them.
pub struct PendingSet([AtomicU64; 4]);

impl PendingSet {
    pub const fn new() -> Self {
        PendingSet([const { AtomicU64::new(0) }; 4])
    }

    pub fn set(&self, vector: u8) {
        self.0[vector as usize / 64].fetch_or(1 << (vector % 64), Ordering::AcqRel);
    }

    /// Removes `vector`; true if it was pending.
    pub fn take(&self, vector: u8) -> bool {
        let bit = 1 << (vector % 64);
        self.0[vector as usize / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    pub fn snapshot(&self) -> Vectors {
        core::array::from_fn(|i| self.0[i].load(Ordering::Acquire))
    }

    pub fn clear(&self) {
        self.0.iter().for_each(|w| w.store(0, Ordering::Release));
    }
}

impl Default for PendingSet {
    fn default() -> Self {
        Self::new()
    }
}

/// The highest vector set in `v`.
pub fn highest(v: &Vectors) -> Option<u8> {
    (0..4)
        .rev()
        .find(|&i| v[i] != 0)
        .map(|i| (i * 64 + 63 - v[i].leading_zeros() as usize) as u8)
}

/// The vector to deliver next: the highest pending one, if its priority class (vector / 16)
/// is above the processor priority (the higher of the TPR's class and the highest in-service
/// vector's class), as the local APIC decides.
pub fn deliverable(irr: &Vectors, isr: &Vectors, tpr: u8) -> Option<u8> {
    let v = highest(irr)?;
    let ppr = (tpr >> 4).max(highest(isr).map_or(0, |i| i >> 4));
    (v >> 4 > ppr).then_some(v)
}

/// How an interrupt chooses among its destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    Fixed,
    LowestPriority,
}

/// An interrupt message: from an MSI, an I/O APIC redirection entry or an IPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub vector: u8,
    pub dest: u8,
    pub logical: bool,
    pub mode: DeliveryMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiError {
    Address(u64),
    Mode(u8),
    Vector(u8),
}

/// Decodes an x86 MSI: address bits 19:12 destination, bit 2 logical destination; data bits
/// 7:0 vector, 10:8 delivery mode.
impl core::fmt::Display for MsiError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            MsiError::Address(a) => write!(f, "MSI address {a:#x} is not in the 0xFEExxxxx window"),
            MsiError::Mode(m) => write!(
                f,
                "MSI delivery mode {m} is not supported (fixed and lowest priority are)"
            ),
            MsiError::Vector(v) => write!(f, "MSI vector {v} is an exception vector"),
        }
    }
}

pub fn decode_msi(addr: u64, data: u64) -> Result<Message, MsiError> {
    if addr >> 20 != 0xFEE {
        return Err(MsiError::Address(addr));
    }
    let vector = data as u8;
    if vector < 16 {
        return Err(MsiError::Vector(vector));
    }
    let mode = match (data >> 8) & 7 {
        0 => DeliveryMode::Fixed,
        1 => DeliveryMode::LowestPriority,
        m => return Err(MsiError::Mode(m as u8)),
    };
    Ok(Message {
        vector,
        dest: (addr >> 12) as u8,
        logical: addr & (1 << 2) != 0,
        mode,
    })
}

/// The vCPUs (bit i = vCPU i, whose APIC id is i) a message goes to among `n` vCPUs with the
/// logical destination registers `ldr`. Physical 0xFF is a broadcast; logical destinations use
/// the flat model (LDR bits 31:24 as a bit set). Lowest priority picks the first match.
pub fn destinations(m: &Message, ldr: &[u32]) -> u64 {
    let n = ldr.len().min(64);
    let all = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let set = if m.logical {
        ldr.iter()
            .take(n)
            .enumerate()
            .filter(|(_, &l)| (l >> 24) as u8 & m.dest != 0)
            .fold(0, |s, (i, _)| s | 1 << i)
    } else if m.dest == 0xFF {
        all
    } else if (m.dest as usize) < n {
        1 << m.dest
    } else {
        0
    };
    match m.mode {
        DeliveryMode::LowestPriority if set != 0 => set & set.wrapping_neg(),
        _ => set,
    }
}

/// What a guest write to its local APIC asks the hypervisor to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicEffect {
    None,
    /// End of interrupt for this vector (the I/O APIC may re-deliver level interrupts).
    Eoi(u8),
    /// A fixed IPI to these vCPUs (bit i = vCPU i).
    Ipi {
        vector: u8,
        targets: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicError {
    Timer,
    IpiMode(u8),
    Register(u64),
}

impl core::fmt::Display for LapicError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            LapicError::Timer => {
                write!(
                    f,
                    "the local APIC timer is not emulated for post-launched VMs"
                )
            }
            LapicError::IpiMode(m) => {
                write!(f, "IPI delivery mode {m} is not emulated (fixed only)")
            }
            LapicError::Register(r) => write!(f, "local APIC register {r:#x} is not emulated"),
        }
    }
}

/// One vCPU's local APIC registers (xAPIC layout, 32-bit accesses at 16-byte offsets).
#[derive(Debug, Clone)]
pub struct Vlapic {
    id: u8,
    pub isr: Vectors,
    tpr: u32,
    svr: u32,
    pub ldr: u32,
    dfr: u32,
    icr_high: u32,
    icr_low: u32,
    /// LVT CMCI (0x2F0) and LVT timer .. error (0x320-0x370), stored only.
    lvt: [u32; 8],
}

const LVT_MASKED: u32 = 1 << 16;
/// xAPIC version 0x14 with six LVT entries.
const VERSION: u32 = 0x14 | 5 << 16;

impl Vlapic {
    pub fn new(id: u8) -> Self {
        Vlapic {
            id,
            isr: [0; 4],
            tpr: 0,
            svr: 0xFF,
            ldr: 0,
            dfr: u32::MAX,
            icr_high: 0,
            icr_low: 0,
            lvt: [LVT_MASKED; 8],
        }
    }

    pub fn tpr(&self) -> u8 {
        self.tpr as u8
    }

    fn lvt_index(off: u64) -> Option<usize> {
        match off {
            0x2F0 => Some(0),
            0x320..=0x370 => Some((off as usize - 0x320) / 16 + 1),
            _ => None,
        }
    }

    /// The register at `off` (bits 11:4 of the address); `irr` is the vCPU's pending set.
    pub fn read(&self, off: u64, irr: &Vectors) -> Result<u32, LapicError> {
        let word = |v: &Vectors, base: u64| {
            let n = ((off - base) / 16) as usize;
            (v[n / 2] >> (32 * (n % 2))) as u32
        };
        Ok(match off {
            0x20 => (self.id as u32) << 24,
            0x30 => VERSION,
            0x80 => self.tpr,
            0xA0 => {
                let isr = highest(&self.isr).map_or(0, |v| v as u32 & 0xF0);
                if self.tpr & 0xF0 >= isr {
                    self.tpr
                } else {
                    isr
                }
            }
            0xB0 => 0,
            0xD0 => self.ldr,
            0xE0 => self.dfr,
            0xF0 => self.svr,
            0x100..=0x170 => word(&self.isr, 0x100),
            0x180..=0x1F0 | 0x280 => 0, // TMR (edge for all), ESR
            0x200..=0x270 => word(irr, 0x200),
            0x300 => self.icr_low & !(1 << 12), // delivery is instant: never "send pending"
            0x310 => self.icr_high,
            0x380 | 0x390 => 0, // the timer never runs
            0x3E0 => 0,
            _ => match Self::lvt_index(off) {
                Some(i) => self.lvt[i],
                None => return Err(LapicError::Register(off)),
            },
        })
    }

    /// Writes the register at `off`; `n` is the VM's vCPU count and `ldrs` their LDRs (for
    /// logical IPI destinations). Read-only registers ignore writes, as the hardware does.
    pub fn write(&mut self, off: u64, val: u32, ldrs: &[u32]) -> Result<LapicEffect, LapicError> {
        match off {
            0x80 => self.tpr = val & 0xFF,
            0xB0 => {
                if let Some(v) = highest(&self.isr) {
                    self.isr[v as usize / 64] &= !(1 << (v % 64));
                    return Ok(LapicEffect::Eoi(v));
                }
            }
            0xD0 => self.ldr = val & 0xFF00_0000,
            0xE0 => self.dfr = val | 0x0FFF_FFFF,
            0xF0 => self.svr = val & 0x13FF,
            0x280 => {}
            0x310 => self.icr_high = val,
            0x300 => {
                self.icr_low = val;
                return self.ipi(val, ldrs);
            }
            // Stopping the timer (initial count 0) and choosing a divider are harmless.
            0x380 if val == 0 => {}
            0x3E0 => {}
            0x380 => return Err(LapicError::Timer),
            0x20 | 0x30 | 0xA0 | 0x100..=0x270 | 0x390 => {}
            _ => match Self::lvt_index(off) {
                Some(i) => self.lvt[i] = val,
                None => return Err(LapicError::Register(off)),
            },
        }
        Ok(LapicEffect::None)
    }

    fn ipi(&self, low: u32, ldrs: &[u32]) -> Result<LapicEffect, LapicError> {
        let mode = ((low >> 8) & 7) as u8;
        if mode != 0 {
            return Err(LapicError::IpiMode(mode));
        }
        let vector = low as u8;
        if vector < 16 {
            // An illegal vector: a real local APIC flags it in the ESR and sends nothing.
            return Ok(LapicEffect::None);
        }
        let own = 1u64 << self.id;
        let m = Message {
            vector,
            dest: (self.icr_high >> 24) as u8,
            logical: low & (1 << 11) != 0,
            mode: DeliveryMode::Fixed,
        };
        let all = destinations(
            &Message {
                dest: 0xFF,
                logical: false,
                ..m
            },
            ldrs,
        );
        let targets = match (low >> 18) & 3 {
            0 => destinations(&m, ldrs),
            1 => own,
            2 => all,
            _ => all & !own,
        };
        Ok(LapicEffect::Ipi { vector, targets })
    }
}

/// A minimal I/O APIC (version 0x11): IOREGSEL at offset 0, IOWIN at 0x10; registers ID (0),
/// version (1), arbitration (2) and the redirection table (0x10 + 2 * pin, low then high).
#[derive(Debug, Clone)]
pub struct Vioapic {
    sel: u32,
    id: u32,
    rte: [u64; IOAPIC_PINS],
    /// Line levels (bit = pin), as HC_SET_IRQLINE left them.
    high: u64,
}

const RTE_MASKED: u64 = 1 << 16;
const RTE_LEVEL: u64 = 1 << 15;
const RTE_REMOTE_IRR: u64 = 1 << 14;
const RTE_LOGICAL: u64 = 1 << 11;
/// Bits the guest cannot write: delivery status (12) and remote IRR (14).
const RTE_READ_ONLY: u64 = 1 << 12 | RTE_REMOTE_IRR;

impl Default for Vioapic {
    fn default() -> Self {
        Self::new()
    }
}

impl Vioapic {
    pub const fn new() -> Self {
        Vioapic {
            sel: 0,
            id: 0,
            rte: [RTE_MASKED; IOAPIC_PINS],
            high: 0,
        }
    }

    pub fn read(&self, off: u64) -> u32 {
        match off {
            0x00 => self.sel,
            0x10 => match self.sel {
                0 => self.id,
                1 => 0x11 | ((IOAPIC_PINS as u32 - 1) << 16),
                2 => self.id,
                r => match Self::entry(r) {
                    Some((pin, true)) => (self.rte[pin] >> 32) as u32,
                    Some((pin, false)) => self.rte[pin] as u32,
                    None => 0,
                },
            },
            _ => 0,
        }
    }

    /// A register write; an unmasked level pin whose line is high delivers at once.
    pub fn write(&mut self, off: u64, val: u32) -> Option<Message> {
        match off {
            0x00 => self.sel = val & 0xFF,
            0x10 => match self.sel {
                0 => self.id = val & 0x0F00_0000,
                r => {
                    let (pin, hi) = Self::entry(r)?;
                    let old = self.rte[pin];
                    let new = if hi {
                        (old & 0xFFFF_FFFF) | (val as u64) << 32
                    } else {
                        (old & !0xFFFF_FFFF) | (val as u64 & !RTE_READ_ONLY) | (old & RTE_READ_ONLY)
                    };
                    self.rte[pin] = new;
                    if new & RTE_LEVEL != 0 && self.high & (1 << pin) != 0 {
                        return self.fire(pin);
                    }
                }
            },
            _ => {}
        }
        None
    }

    fn entry(reg: u32) -> Option<(usize, bool)> {
        let n = reg.checked_sub(0x10)? as usize;
        (n / 2 < IOAPIC_PINS).then_some((n / 2, n % 2 == 1))
    }

    /// The message pin `pin` sends now, if unmasked (and, for a level pin, not waiting for
    /// its EOI).
    fn fire(&mut self, pin: usize) -> Option<Message> {
        let e = self.rte[pin];
        if e & RTE_MASKED != 0 || e & (RTE_LEVEL | RTE_REMOTE_IRR) == RTE_LEVEL | RTE_REMOTE_IRR {
            return None;
        }
        if (e as u8) < 16 {
            // An exception vector: the receiving local APIC refuses it (illegal vector).
            return None;
        }
        if e & RTE_LEVEL != 0 {
            self.rte[pin] |= RTE_REMOTE_IRR;
        }
        Some(Message {
            vector: e as u8,
            dest: (e >> 56) as u8,
            logical: e & RTE_LOGICAL != 0,
            mode: if (e >> 8) & 7 == 1 {
                DeliveryMode::LowestPriority
            } else {
                DeliveryMode::Fixed
            },
        })
    }

    /// HC_SET_IRQLINE on `pin`: an edge pin sends on a rising edge, a level pin while high.
    pub fn set_line(&mut self, pin: usize, op: acrn_abi::irq::GsiOp) -> Option<Message> {
        use acrn_abi::irq::GsiOp;
        let bit = 1u64 << pin.min(63);
        if pin >= IOAPIC_PINS {
            return None;
        }
        let was_high = self.high & bit != 0;
        let level = self.rte[pin] & RTE_LEVEL != 0;
        let (rises, end_high) = match op {
            GsiOp::SetHigh => (!was_high, true),
            GsiOp::SetLow => (false, false),
            GsiOp::RaisingPulse => (true, false),
            GsiOp::FallingPulse => (true, true),
        };
        self.high = if end_high {
            self.high | bit
        } else {
            self.high & !bit
        };
        if rises || (level && end_high) {
            self.fire(pin)
        } else {
            None
        }
    }

    /// End of interrupt for `vector`: level pins with that vector leave remote IRR and send
    /// again if their line is still high.
    pub fn eoi(&mut self, vector: u8) -> impl Iterator<Item = Message> + '_ {
        (0..IOAPIC_PINS).filter_map(move |pin| {
            let e = self.rte[pin];
            if e as u8 != vector || e & RTE_REMOTE_IRR == 0 {
                return None;
            }
            self.rte[pin] &= !RTE_REMOTE_IRR;
            if self.high & (1 << pin) != 0 {
                self.fire(pin)
            } else {
                None
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acrn_abi::irq::GsiOp;

    fn vecs(list: &[u8]) -> Vectors {
        let mut v = [0; 4];
        for &x in list {
            v[x as usize / 64] |= 1 << (x % 64);
        }
        v
    }

    #[test]
    fn pending_set_and_highest() {
        let p = PendingSet::new();
        assert_eq!(highest(&p.snapshot()), None);
        p.set(0x40);
        p.set(0xF3);
        p.set(0x21);
        assert_eq!(highest(&p.snapshot()), Some(0xF3));
        assert!(p.take(0xF3));
        assert!(!p.take(0xF3));
        assert_eq!(highest(&p.snapshot()), Some(0x40));
        p.clear();
        assert_eq!(p.snapshot(), [0; 4]);
    }

    #[test]
    fn selection_respects_isr_and_tpr_classes() {
        let irr = vecs(&[0x41, 0x30]);
        assert_eq!(deliverable(&irr, &[0; 4], 0), Some(0x41));
        // 0x40 in service: 0x41 is the same class and waits; so does 0x30.
        assert_eq!(deliverable(&irr, &vecs(&[0x40]), 0), None);
        assert_eq!(deliverable(&vecs(&[0x51]), &vecs(&[0x40]), 0), Some(0x51));
        assert_eq!(deliverable(&irr, &[0; 4], 0x40), None, "TPR class 4");
        assert_eq!(deliverable(&irr, &[0; 4], 0x3F), Some(0x41));
        assert_eq!(deliverable(&[0; 4], &[0; 4], 0), None);
    }

    #[test]
    fn msi_decoding() {
        let m = decode_msi(0xFEE0_1000, 0x40).unwrap();
        assert_eq!(
            m,
            Message {
                vector: 0x40,
                dest: 1,
                logical: false,
                mode: DeliveryMode::Fixed
            }
        );
        let m = decode_msi(0xFEE0_3004, 0x155).unwrap();
        assert_eq!(
            (m.dest, m.logical, m.mode),
            (3, true, DeliveryMode::LowestPriority)
        );
        assert_eq!(
            decode_msi(0xFED0_0000, 0x40),
            Err(MsiError::Address(0xFED0_0000))
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x440),
            Err(MsiError::Mode(4)),
            "NMI"
        );
        assert_eq!(decode_msi(0xFEE0_0000, 0x0E), Err(MsiError::Vector(14)));
    }

    #[test]
    fn destination_resolution() {
        let fixed = |dest, logical| Message {
            vector: 0x40,
            dest,
            logical,
            mode: DeliveryMode::Fixed,
        };
        let ldr = [1 << 24, 2 << 24, 4 << 24];
        assert_eq!(destinations(&fixed(1, false), &ldr), 0b010);
        assert_eq!(destinations(&fixed(5, false), &ldr), 0, "no such APIC id");
        assert_eq!(destinations(&fixed(0xFF, false), &ldr), 0b111);
        assert_eq!(destinations(&fixed(0b110, true), &ldr), 0b110);
        let lowest = Message {
            mode: DeliveryMode::LowestPriority,
            ..fixed(0b110, true)
        };
        assert_eq!(destinations(&lowest, &ldr), 0b010);
    }

    #[test]
    fn lapic_registers_eoi_and_ipis() {
        let mut l = Vlapic::new(1);
        let ldrs = [0, 0];
        assert_eq!(l.read(0x20, &[0; 4]), Ok(1 << 24));
        assert_eq!(l.read(0x30, &[0; 4]), Ok(0x50014));
        l.write(0x80, 0x20, &ldrs).unwrap();
        assert_eq!(l.read(0x80, &[0; 4]), Ok(0x20));
        l.write(0xF0, 0x1FF, &ldrs).unwrap();
        assert_eq!(l.read(0xF0, &[0; 4]), Ok(0x1FF));
        l.write(0xD0, 0x0200_0001, &ldrs).unwrap();
        assert_eq!(l.ldr, 0x0200_0000);
        // IRR words come from the pending set; ISR from the model.
        assert_eq!(l.read(0x220, &vecs(&[0x41])), Ok(2), "IRR bits 64..95");
        l.isr = vecs(&[0x40, 0x50]);
        assert_eq!(l.read(0x120, &[0; 4]), Ok(1 | 1 << 16), "ISR bits 64..95");
        assert_eq!(l.read(0xA0, &[0; 4]), Ok(0x50), "PPR from the ISR");
        assert_eq!(l.write(0xB0, 0, &ldrs), Ok(LapicEffect::Eoi(0x50)));
        assert_eq!(l.write(0xB0, 0, &ldrs), Ok(LapicEffect::Eoi(0x40)));
        assert_eq!(l.write(0xB0, 0, &ldrs), Ok(LapicEffect::None));
        l.write(0x310, 0, &ldrs).unwrap();
        assert_eq!(
            l.write(0x300, 0x45, &ldrs),
            Ok(LapicEffect::Ipi {
                vector: 0x45,
                targets: 1
            })
        );
        assert_eq!(
            l.write(0x300, 0x45 | 3 << 18, &ldrs),
            Ok(LapicEffect::Ipi {
                vector: 0x45,
                targets: 1
            }),
            "all excluding self"
        );
        assert_eq!(
            l.write(0x300, 0x4500, &ldrs),
            Err(LapicError::IpiMode(5)),
            "INIT"
        );
        assert_eq!(l.write(0x380, 1000, &ldrs), Err(LapicError::Timer));
        assert_eq!(l.write(0x380, 0, &ldrs), Ok(LapicEffect::None));
        assert_eq!(l.read(0x400, &[0; 4]), Err(LapicError::Register(0x400)));
    }

    /// Fuzzing found (vintr target, fuzz/regressions/vintr/ipi-vector-0): an IPI or an I/O
    /// APIC entry with an exception vector (0-15) was delivered; a local APIC refuses those.
    #[test]
    fn exception_vectors_are_never_delivered() {
        let mut l = Vlapic::new(0);
        assert_eq!(
            l.write(0x300, 0x0E | 2 << 18, &[0, 0]),
            Ok(LapicEffect::None)
        );
        let mut io = Vioapic::new();
        assert_eq!(program(&mut io, 2, 0x05, 0), None); // edge, vector 5, unmasked
        assert_eq!(io.set_line(2, GsiOp::RaisingPulse), None);
        assert_eq!(program(&mut io, 2, 0x25, 0), None);
        assert_eq!(
            io.set_line(2, GsiOp::RaisingPulse).map(|m| m.vector),
            Some(0x25)
        );
    }

    fn program(io: &mut Vioapic, pin: u32, low: u32, high: u32) -> Option<Message> {
        io.write(0, 0x11 + 2 * pin);
        io.write(0x10, high);
        io.write(0, 0x10 + 2 * pin);
        io.write(0x10, low)
    }

    #[test]
    fn ioapic_registers() {
        let mut io = Vioapic::new();
        io.write(0, 1);
        assert_eq!(io.read(0x10), 0x2F0011, "version 0x11, 48 pins");
        io.write(0, 0x10 + 10);
        assert_eq!(io.read(0x10), 1 << 16, "masked after reset");
        program(&mut io, 5, 0x41 | 1 << 14 | 1 << 12, 3 << 24);
        io.write(0, 0x10 + 10);
        assert_eq!(
            io.read(0x10),
            0x41,
            "delivery status and remote IRR are read-only"
        );
        io.write(0, 0x11 + 10);
        assert_eq!(io.read(0x10), 3 << 24);
        io.write(0, 0x10 + 2 * 48);
        assert_eq!(io.read(0x10), 0, "beyond the table");
        assert_eq!(io.read(0), 0x70);
    }

    #[test]
    fn ioapic_edge_pin_sends_on_rising_edges_only() {
        let mut io = Vioapic::new();
        program(&mut io, 3, 0x33, 0);
        let sent = io.set_line(3, GsiOp::SetHigh).map(|m| m.vector);
        assert_eq!(sent, Some(0x33));
        assert_eq!(io.set_line(3, GsiOp::SetHigh), None, "already high");
        assert_eq!(io.set_line(3, GsiOp::SetLow), None);
        assert!(io.set_line(3, GsiOp::RaisingPulse).is_some());
        assert!(io.set_line(3, GsiOp::RaisingPulse).is_some());
        assert_eq!(io.set_line(47, GsiOp::SetHigh), None, "masked");
        assert_eq!(io.set_line(48, GsiOp::SetHigh), None, "no such pin");
    }

    #[test]
    fn ioapic_level_pin_waits_for_unmask_and_eoi() {
        let mut io = Vioapic::new();
        // Asserted while masked: nothing yet; unmasking sends it.
        assert_eq!(io.set_line(5, GsiOp::SetHigh), None);
        let m = program(&mut io, 5, 0x41 | 1 << 15, 0).unwrap();
        assert_eq!((m.vector, m.dest, m.logical), (0x41, 0, false));
        // Remote IRR holds it until EOI; EOI with the line still high sends it again.
        assert_eq!(io.set_line(5, GsiOp::SetHigh), None);
        assert_eq!(io.eoi(0x41).count(), 1);
        io.set_line(5, GsiOp::SetLow);
        assert_eq!(io.eoi(0x41).count(), 0, "line low: done");
        assert_eq!(io.eoi(0x41).count(), 0);
        // Masking in the handler before EOI stops re-delivery.
        assert!(io.set_line(5, GsiOp::SetHigh).is_some());
        program(&mut io, 5, 0x41 | 1 << 15 | 1 << 16, 0);
        assert_eq!(io.eoi(0x41).count(), 0);
    }
}
