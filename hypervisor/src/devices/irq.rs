//! Interrupt messages shared by every virtual interrupt source: the 256-vector bit set, the
//! per-vCPU set of posted vectors, MSI decoding and the APIC destination logic that turns a
//! message into the set of vCPUs (of one VM) that receive it.
//!
//! Limits: at most 64 vCPUs per VM (destinations are a `u64` bit mask); SMI is decoded but
//! delivering it is the caller's choice (ACRN drops it); the MSI redirection hint with a
//! logical destination is treated as lowest-priority delivery (SDM 11.11.1), physical + RH as
//! fixed.

use bitflags::bitflags;
use core::sync::atomic::{AtomicU64, Ordering};

/// 256 interrupt vectors as four 64-bit words (bit `v % 64` of word `v / 64`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vectors(pub [u64; 4]);

impl Vectors {
    pub const EMPTY: Vectors = Vectors([0; 4]);

    pub fn set(&mut self, vector: u8) {
        self.0[vector as usize / 64] |= 1 << (vector % 64);
    }

    pub fn clear(&mut self, vector: u8) {
        self.0[vector as usize / 64] &= !(1 << (vector % 64));
    }

    pub fn contains(&self, vector: u8) -> bool {
        self.0[vector as usize / 64] & (1 << (vector % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// The highest vector in the set.
    pub fn highest(&self) -> Option<u8> {
        (0..4)
            .rev()
            .find(|&i| self.0[i] != 0)
            .map(|i| (i * 64 + 63 - self.0[i].leading_zeros() as usize) as u8)
    }

    /// The 32 bits `index * 32 ..` as the APIC's ISR/TMR/IRR register `index` (0..8) shows them.
    pub fn register(&self, index: usize) -> u32 {
        let index = index % 8;
        (self.0[index / 2] >> ((index % 2) * 32)) as u32
    }
}

/// The vectors posted to one vCPU and not yet pulled into its local APIC's IRR. Any pCPU may
/// post (IPIs of other vCPUs, device interrupts, hypercalls); the pCPU running the vCPU takes
/// them with [`PendingSet::take`].
pub struct PendingSet {
    vectors: [AtomicU64; 4],
    /// The posted vectors that are level-triggered (the receiving APIC sets its TMR bit).
    level: [AtomicU64; 4],
}

impl PendingSet {
    pub const fn new() -> Self {
        PendingSet {
            vectors: [const { AtomicU64::new(0) }; 4],
            level: [const { AtomicU64::new(0) }; 4],
        }
    }

    /// Posts `vector`; true if it was not already posted (the caller may then kick the vCPU).
    /// The trigger flag is published before the vector bit so a taker that sees the vector
    /// also sees its trigger mode.
    pub fn post(&self, vector: u8, level: bool) -> bool {
        let (word, bit) = (vector as usize / 64, 1u64 << (vector % 64));
        if level {
            self.level[word].fetch_or(bit, Ordering::Release);
        } else {
            self.level[word].fetch_and(!bit, Ordering::Release);
        }
        self.vectors[word].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    /// Takes every posted vector: (vectors, the level-triggered ones among them).
    pub fn take(&self) -> (Vectors, Vectors) {
        let mut vectors = Vectors::EMPTY;
        let mut level = Vectors::EMPTY;
        for i in 0..4 {
            let taken = self.vectors[i].swap(0, Ordering::AcqRel);
            vectors.0[i] = taken;
            level.0[i] = self.level[i].fetch_and(!taken, Ordering::AcqRel) & taken;
        }
        (vectors, level)
    }

    pub fn is_empty(&self) -> bool {
        self.vectors.iter().all(|w| w.load(Ordering::Acquire) == 0)
    }

    pub fn clear(&self) {
        self.vectors
            .iter()
            .chain(self.level.iter())
            .for_each(|w| w.store(0, Ordering::Release));
    }
}

impl Default for PendingSet {
    fn default() -> Self {
        Self::new()
    }
}

/// A change of an interrupt line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    Assert,
    Deassert,
    /// Assert then de-assert (an edge; a level entry gets one delivery).
    Pulse,
}

/// The electrical levels (true = high) an ACRN `GSI_*` operation (HC_SET_IRQLINE, ioctl
/// SET_IRQLINE) drives a line through, in order: a raising pulse is high then low, a falling
/// pulse low then high.
pub fn gsi_levels(op: acrn_abi::irq::GsiOp) -> &'static [bool] {
    use acrn_abi::irq::GsiOp;
    match op {
        GsiOp::SetHigh => &[true],
        GsiOp::SetLow => &[false],
        GsiOp::RaisingPulse => &[true, false],
        GsiOp::FallingPulse => &[false, true],
    }
}

/// How the destination field of a message is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestMode {
    Physical,
    Logical,
}

/// What the receiving local APIC does with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Fixed,
    LowestPriority,
    Smi,
    Nmi,
    Init,
    Startup,
    ExtInt,
}

impl Delivery {
    /// Decodes the 3-bit delivery mode of an ICR, MSI data word or redirection entry.
    /// `startup_allowed` is false for MSIs and I/O APIC entries, where 110b is reserved.
    pub fn decode(bits: u32, startup_allowed: bool) -> Option<Delivery> {
        match bits & 7 {
            0 => Some(Delivery::Fixed),
            1 => Some(Delivery::LowestPriority),
            2 => Some(Delivery::Smi),
            4 => Some(Delivery::Nmi),
            5 => Some(Delivery::Init),
            6 if startup_allowed => Some(Delivery::Startup),
            7 => Some(Delivery::ExtInt),
            _ => None,
        }
    }

    /// True for the modes whose vector must be 16 or above (SDM 11.5.2 illegal vectors).
    pub fn uses_vector(self) -> bool {
        matches!(self, Delivery::Fixed | Delivery::LowestPriority)
    }
}

/// The ICR destination shorthand (bits 19:18).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shorthand {
    None,
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// An interrupt message: from an IPI (ICR), an MSI or an I/O APIC redirection entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub vector: u8,
    /// The destination: an 8-bit xAPIC ID / logical mask, or a 32-bit x2APIC one.
    pub dest: u32,
    /// True when `dest` is a 32-bit x2APIC destination (ICR in x2APIC mode, MSI with an
    /// extended destination ID): then only 0xFFFF_FFFF is a broadcast, not 0xFF.
    pub wide_dest: bool,
    pub dest_mode: DestMode,
    pub delivery: Delivery,
    pub level_trigger: bool,
    pub shorthand: Shorthand,
}

#[cfg(test)]
impl Message {
    /// A fixed, edge-triggered, physical message to `dest`.
    pub fn fixed(vector: u8, dest: u32) -> Message {
        Message {
            vector,
            dest,
            wide_dest: false,
            dest_mode: DestMode::Physical,
            delivery: Delivery::Fixed,
            level_trigger: false,
            shorthand: Shorthand::None,
        }
    }
}

/// Why an MSI address/data pair was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsiError {
    /// Address bits 31:20 are not 0xFEE (or bits 63:32 are set).
    Address(u64),
    /// Delivery mode 011b or 110b (reserved for MSIs).
    DeliveryMode(u8),
}

impl core::fmt::Display for MsiError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            MsiError::Address(a) => {
                write!(f, "MSI address {a:#x} is not in the 0xFEExxxxx window")
            }
            MsiError::DeliveryMode(m) => write!(f, "MSI delivery mode {m:#b} is reserved"),
        }
    }
}

bitflags! {
    /// MSI address flags (destination ID and the 0xFEE window are values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct MsiAddress: u64 {
        const DEST_LOGICAL = 1 << 2;
        const REDIRECTION_HINT = 1 << 3;
        const _ = !0;
    }

    /// MSI data flags (vector and delivery mode are values).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct MsiData: u32 {
        const ASSERT = 1 << 14;
        const LEVEL = 1 << 15;
        const _ = !0;
    }
}

/// Decodes an x86 MSI (SDM 11.11): address bits 19:12 destination ID, bit 3 redirection
/// hint, bit 2 logical destination; data bits 7:0 vector, 10:8 delivery mode, 15 level
/// trigger. With `extended_dest_id`, address bits 11:5 give destination ID bits 14:8 (the
/// 15-bit extended destination ID some hypervisors offer for x2APIC guests).
/// A level-triggered MSI with the assert bit clear is a de-assert and still decodes; the
/// caller drops it. Vectors below 16 decode too: the receiving APIC rejects them (ESR).
pub fn decode_msi(addr: u64, data: u32, extended_dest_id: bool) -> Result<Message, MsiError> {
    if addr >> 20 != 0xFEE {
        return Err(MsiError::Address(addr));
    }
    let mode = (data >> 8) & 7;
    let mut delivery = Delivery::decode(mode, false).ok_or(MsiError::DeliveryMode(mode as u8))?;
    let flags = MsiAddress::from_bits_retain(addr);
    let dest_mode = if flags.contains(MsiAddress::DEST_LOGICAL) {
        DestMode::Logical
    } else {
        DestMode::Physical
    };
    if flags.contains(MsiAddress::REDIRECTION_HINT)
        && dest_mode == DestMode::Logical
        && delivery == Delivery::Fixed
    {
        delivery = Delivery::LowestPriority;
    }
    let mut dest = ((addr >> 12) & 0xFF) as u32;
    let ext = ((addr >> 5) & 0x7F) as u32;
    let wide_dest = extended_dest_id && ext != 0;
    if wide_dest {
        dest |= ext << 8;
    }
    Ok(Message {
        vector: data as u8,
        dest,
        wide_dest,
        dest_mode,
        delivery,
        level_trigger: MsiData::from_bits_retain(data).contains(MsiData::LEVEL | MsiData::ASSERT),
        shorthand: Shorthand::None,
    })
}

/// The destination-relevant state of one vCPU's local APIC, taken with `Vlapic::view`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicView {
    /// The APIC ID (8 bits used in xAPIC mode).
    pub id: u32,
    /// The logical destination register as the mode shows it (xAPIC: bits 31:24).
    pub ldr: u32,
    /// The destination format register (bits 31:28: 1111b flat, 0000b cluster).
    pub dfr: u32,
    pub x2apic: bool,
    /// The processor priority (lowest-priority arbitration).
    pub ppr: u8,
    /// Globally enabled (IA32_APIC_BASE bit 11): a disabled APIC receives nothing.
    pub enabled: bool,
    /// Software enabled (SVR bit 8): only such an APIC accepts fixed interrupts, so lowest
    /// priority arbitration prefers it.
    pub sw_enabled: bool,
}

const XAPIC_BROADCAST: u32 = 0xFF;
const X2APIC_BROADCAST: u32 = 0xFFFF_FFFF;

fn matches_physical(msg: &Message, target: &LapicView) -> bool {
    if msg.dest == X2APIC_BROADCAST || (!msg.wide_dest && msg.dest & 0xFF == XAPIC_BROADCAST) {
        return true;
    }
    if target.x2apic {
        target.id == msg.dest
    } else {
        target.id & 0xFF == msg.dest & 0xFF
    }
}

fn matches_logical(msg: &Message, target: &LapicView) -> bool {
    if target.x2apic {
        if msg.dest == X2APIC_BROADCAST || (!msg.wide_dest && msg.dest & 0xFF == XAPIC_BROADCAST) {
            return true;
        }
        // x2APIC logical: cluster in bits 31:16, member bit mask in 15:0 (SDM 11.12.10.2).
        msg.dest >> 16 == target.ldr >> 16 && msg.dest & target.ldr & 0xFFFF != 0
    } else {
        let mda = (msg.dest & 0xFF) as u8;
        let ldr = (target.ldr >> 24) as u8;
        if target.dfr >> 28 == 0xF {
            mda & ldr != 0
        } else {
            // Cluster model: cluster in bits 7:4 (15 = all clusters), members in 3:0.
            (mda >> 4 == 0xF || mda >> 4 == ldr >> 4) && mda & ldr & 0xF != 0
        }
    }
}

/// The vCPUs (bit i = `lapics[i]`, at most 64) that receive `msg`, sent by vCPU `source` (an
/// IPI) or by a device (`None`). `lapics` holds the vCPUs of one VM only, so no message can
/// leave its VM. Lowest-priority delivery picks exactly one receiver: the software-enabled one
/// with the lowest processor priority, then the lowest index (deterministic).
pub fn destinations(msg: &Message, source: Option<usize>, lapics: &[LapicView]) -> u64 {
    let self_bit = source
        .filter(|&s| s < 64 && s < lapics.len())
        .map_or(0, |s| 1u64 << s);
    let candidates = lapics
        .iter()
        .take(64)
        .enumerate()
        .filter(|(_, l)| l.enabled)
        .filter(|(i, l)| match msg.shorthand {
            Shorthand::None => match msg.dest_mode {
                DestMode::Physical => matches_physical(msg, l),
                DestMode::Logical => matches_logical(msg, l),
            },
            Shorthand::SelfOnly => self_bit & (1 << i) != 0,
            Shorthand::AllIncludingSelf => true,
            Shorthand::AllExcludingSelf => self_bit & (1 << i) == 0,
        });
    if msg.delivery == Delivery::LowestPriority {
        candidates
            .min_by_key(|(i, l)| (!l.sw_enabled, l.ppr, *i))
            .map_or(0, |(i, _)| 1 << i)
    } else {
        candidates.fold(0, |set, (i, _)| set | 1 << i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xapic(id: u32) -> LapicView {
        LapicView {
            id,
            ldr: 0,
            dfr: 0xFFFF_FFFF,
            x2apic: false,
            ppr: 0,
            enabled: true,
            sw_enabled: true,
        }
    }

    fn x2apic(id: u32) -> LapicView {
        LapicView {
            id,
            ldr: ((id >> 4) << 16) | (1 << (id & 0xF)),
            dfr: 0xFFFF_FFFF,
            x2apic: true,
            ppr: 0,
            enabled: true,
            sw_enabled: true,
        }
    }

    #[test]
    fn vectors_set_clear_highest_and_registers() {
        let mut v = Vectors::EMPTY;
        assert_eq!(v.highest(), None);
        v.set(0x31);
        v.set(0xEF);
        v.set(0x80);
        assert_eq!(v.highest(), Some(0xEF));
        assert!(v.contains(0x80) && !v.contains(0x81));
        assert_eq!(v.register(1), 1 << 0x11);
        assert_eq!(v.register(7), 1 << 0xF);
        v.clear(0xEF);
        assert_eq!(v.highest(), Some(0x80));
        v.set(0xFF);
        assert_eq!(v.highest(), Some(0xFF));
        v.set(0);
        assert_eq!(v.register(0), 1);
        assert!(!v.is_empty());
    }

    #[test]
    fn pending_set_keeps_trigger_mode_per_vector() {
        let p = PendingSet::new();
        assert!(p.is_empty());
        assert!(p.post(0x40, false));
        assert!(!p.post(0x40, false), "already posted");
        p.post(0x41, true);
        p.post(0xFF, true);
        let (v, level) = p.take();
        assert!(v.contains(0x40) && v.contains(0x41) && v.contains(0xFF));
        assert_eq!(v.0.iter().map(|w| w.count_ones()).sum::<u32>(), 3);
        assert!(!level.contains(0x40) && level.contains(0x41) && level.contains(0xFF));
        assert!(p.is_empty());
        // Re-posting as edge drops the old level flag.
        p.post(0x41, true);
        p.post(0x41, false);
        let (v, level) = p.take();
        assert!(v.contains(0x41) && level.is_empty());
        p.post(3, true);
        p.clear();
        assert_eq!(p.take(), (Vectors::EMPTY, Vectors::EMPTY));
    }

    #[test]
    fn pending_set_from_many_threads() {
        let p = std::sync::Arc::new(PendingSet::new());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for v in (t * 64)..=(t * 64 + 63) {
                        p.post(v, v % 2 == 1);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let (v, level) = p.take();
        assert_eq!(v.0, [u64::MAX; 4]);
        assert_eq!(level.0, [0xAAAA_AAAA_AAAA_AAAA; 4]);
    }

    #[test]
    fn gsi_operations_as_levels() {
        use acrn_abi::irq::GsiOp;
        assert_eq!(gsi_levels(GsiOp::SetHigh), [true]);
        assert_eq!(gsi_levels(GsiOp::SetLow), [false]);
        assert_eq!(gsi_levels(GsiOp::RaisingPulse), [true, false]);
        assert_eq!(gsi_levels(GsiOp::FallingPulse), [false, true]);
    }

    #[test]
    fn msi_decoding() {
        let m = decode_msi(0xFEE0_3000, 0x4031, false).unwrap();
        assert_eq!(m.vector, 0x31);
        assert_eq!(m.dest, 3);
        assert_eq!(m.dest_mode, DestMode::Physical);
        assert_eq!(m.delivery, Delivery::Fixed);
        assert!(!m.level_trigger);
        let m = decode_msi(0xFEE0_F00C, 0xC122, false).unwrap();
        assert_eq!((m.dest, m.dest_mode), (0xF, DestMode::Logical));
        assert_eq!(m.delivery, Delivery::LowestPriority);
        assert!(m.level_trigger);
        // RH with physical destination stays fixed.
        let m = decode_msi(0xFEE0_1008, 0x30, false).unwrap();
        assert_eq!(
            (m.dest_mode, m.delivery),
            (DestMode::Physical, Delivery::Fixed)
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x400, false).unwrap().delivery,
            Delivery::Nmi
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x500, false).unwrap().delivery,
            Delivery::Init
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x700, false).unwrap().delivery,
            Delivery::ExtInt
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x200, false).unwrap().delivery,
            Delivery::Smi
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x600, false),
            Err(MsiError::DeliveryMode(6))
        );
        assert_eq!(
            decode_msi(0xFEE0_0000, 0x300, false),
            Err(MsiError::DeliveryMode(3))
        );
        assert_eq!(
            decode_msi(0xFED0_0000, 0x30, false),
            Err(MsiError::Address(0xFED0_0000))
        );
        assert!(decode_msi(0x1_FEE0_0000, 0x30, false).is_err());
        // Extended destination ID: address bits 11:5 are destination bits 14:8.
        let m = decode_msi(0xFEE1_2000 | (0x5 << 5), 0x30, true).unwrap();
        assert_eq!((m.dest, m.wide_dest), (0x512, true));
        let m = decode_msi(0xFEE1_2000 | (0x5 << 5), 0x30, false).unwrap();
        assert_eq!((m.dest, m.wide_dest), (0x12, false));
        // Level de-assert decodes as edge.
        assert!(
            !decode_msi(0xFEE0_0000, 0x8030, false)
                .unwrap()
                .level_trigger
        );
    }

    #[test]
    fn physical_destinations_and_broadcast() {
        let l = [xapic(0), xapic(2), xapic(4)];
        assert_eq!(destinations(&Message::fixed(0x30, 2), None, &l), 0b010);
        assert_eq!(destinations(&Message::fixed(0x30, 1), None, &l), 0);
        assert_eq!(destinations(&Message::fixed(0x30, 0xFF), None, &l), 0b111);
        // Only the upper bits differ: an xAPIC compares 8 bits.
        assert_eq!(destinations(&Message::fixed(0x30, 0x104), None, &l), 0b100);
        let x = [x2apic(0), x2apic(0x104), x2apic(0xFF)];
        assert_eq!(destinations(&Message::fixed(0x30, 0x104), None, &x), 0b010);
        // An 8-bit 0xFF (I/O APIC, MSI) is a broadcast for x2APIC receivers too ...
        assert_eq!(destinations(&Message::fixed(0x30, 0xFF), None, &x), 0b111);
        // ... but a 32-bit 0xFF is the APIC with ID 0xFF.
        let wide = Message {
            wide_dest: true,
            ..Message::fixed(0x30, 0xFF)
        };
        assert_eq!(destinations(&wide, None, &x), 0b100);
        let bcast = Message {
            wide_dest: true,
            ..Message::fixed(0x30, 0xFFFF_FFFF)
        };
        assert_eq!(destinations(&bcast, Some(0), &x), 0b111);
    }

    #[test]
    fn broadcast_reaches_exactly_the_vms_vcpus() {
        // The slice is one VM: a broadcast of any kind sets only bits of its vCPUs, and
        // disabled APICs receive nothing.
        let mut vm = [xapic(0), xapic(1), xapic(7)];
        for shorthand in [Shorthand::None, Shorthand::AllIncludingSelf] {
            let m = Message {
                shorthand,
                ..Message::fixed(0x30, 0xFF)
            };
            assert_eq!(destinations(&m, Some(0), &vm), 0b111);
        }
        let nmi = Message {
            delivery: Delivery::Nmi,
            shorthand: Shorthand::AllExcludingSelf,
            ..Message::fixed(0, 0)
        };
        assert_eq!(destinations(&nmi, Some(1), &vm), 0b101);
        vm[2].enabled = false;
        assert_eq!(destinations(&nmi, Some(1), &vm), 0b001);
        // 70 vCPUs: only the first 64 are addressable, none beyond.
        let big: Vec<_> = (0..70).map(xapic).collect();
        assert_eq!(
            destinations(&Message::fixed(0x30, 0xFF), None, &big),
            u64::MAX
        );
        assert_eq!(destinations(&Message::fixed(0x30, 0xFF), None, &[]), 0);
    }

    #[test]
    fn shorthands() {
        let l = [xapic(0), xapic(1), xapic(2)];
        let m = |shorthand| Message {
            shorthand,
            ..Message::fixed(0x30, 0)
        };
        assert_eq!(destinations(&m(Shorthand::SelfOnly), Some(2), &l), 0b100);
        assert_eq!(destinations(&m(Shorthand::SelfOnly), None, &l), 0);
        assert_eq!(destinations(&m(Shorthand::SelfOnly), Some(9), &l), 0);
        assert_eq!(
            destinations(&m(Shorthand::AllExcludingSelf), Some(2), &l),
            0b011
        );
        assert_eq!(
            destinations(&m(Shorthand::AllExcludingSelf), None, &l),
            0b111
        );
        assert_eq!(
            destinations(&m(Shorthand::AllIncludingSelf), Some(1), &l),
            0b111
        );
    }

    #[test]
    fn logical_flat_and_cluster() {
        let mut l = [xapic(0), xapic(1), xapic(2)];
        for (i, v) in l.iter_mut().enumerate() {
            v.ldr = (1 << i) << 24;
        }
        let logical = |dest| Message {
            dest_mode: DestMode::Logical,
            ..Message::fixed(0x30, dest)
        };
        assert_eq!(destinations(&logical(0b101), None, &l), 0b101);
        assert_eq!(destinations(&logical(0), None, &l), 0);
        assert_eq!(destinations(&logical(0xFF), None, &l), 0b111);
        // Cluster model: LDR = cluster << 4 | member bit.
        let mut c = [xapic(0), xapic(1), xapic(2)];
        c[0].ldr = 0x11 << 24;
        c[1].ldr = 0x12 << 24;
        c[2].ldr = 0x21 << 24;
        c.iter_mut().for_each(|v| v.dfr = 0x0FFF_FFFF);
        assert_eq!(destinations(&logical(0x13), None, &c), 0b011);
        assert_eq!(destinations(&logical(0x21), None, &c), 0b100);
        assert_eq!(destinations(&logical(0x22), None, &c), 0);
        assert_eq!(destinations(&logical(0xF1), None, &c), 0b101);
    }

    #[test]
    fn x2apic_logical() {
        let l = [x2apic(0), x2apic(1), x2apic(0x10), x2apic(0x11)];
        let logical = |dest| Message {
            dest_mode: DestMode::Logical,
            wide_dest: true,
            ..Message::fixed(0x30, dest)
        };
        assert_eq!(destinations(&logical(0x0000_0003), None, &l), 0b0011);
        assert_eq!(destinations(&logical(0x0001_0002), None, &l), 0b1000);
        assert_eq!(destinations(&logical(0x0002_0001), None, &l), 0);
        assert_eq!(destinations(&logical(0xFFFF_FFFF), None, &l), 0b1111);
    }

    #[test]
    fn lowest_priority_picks_one_deterministically() {
        let mut l = [xapic(0), xapic(1), xapic(2), xapic(3)];
        let lp = Message {
            delivery: Delivery::LowestPriority,
            ..Message::fixed(0x30, 0xFF)
        };
        assert_eq!(destinations(&lp, None, &l), 0b0001);
        l[0].ppr = 0x40;
        l[1].ppr = 0x20;
        l[2].ppr = 0x20;
        l[3].ppr = 0x30;
        assert_eq!(destinations(&lp, None, &l), 0b0010);
        l[1].sw_enabled = false;
        assert_eq!(destinations(&lp, None, &l), 0b0100);
        let none = Message {
            delivery: Delivery::LowestPriority,
            ..Message::fixed(0x30, 9)
        };
        assert_eq!(destinations(&none, None, &l), 0);
    }
}
