//! Intel VT-d formats (VT-d spec §9 and §10.4): register offsets, root and context entries,
//! the fault event message and fault recording registers. Pure encodings, checked on the host;
//! `hv::vtd` drives the units with them.

use acrn_static_config::Bdf;

pub const CAP: u64 = 0x08;
pub const ECAP: u64 = 0x10;
pub const GCMD: u64 = 0x18;
pub const GSTS: u64 = 0x1C;
pub const RTADDR: u64 = 0x20;
pub const CCMD: u64 = 0x28;
/// Fault status: PFO (bit 0, write 1 to clear), PPF (bit 1, set while a record is pending).
pub const FSTS: u64 = 0x34;
/// Fault event control: IM (bit 31) masks the fault event interrupt.
pub const FECTL: u64 = 0x38;
pub const FEDATA: u64 = 0x3C;
pub const FEADDR: u64 = 0x40;
pub const FEUADDR: u64 = 0x44;

/// Invalidation queue head, tail and address; interrupt remapping table address.
pub const IQH: u64 = 0x80;
pub const IQT: u64 = 0x88;
pub const IQA: u64 = 0x90;
pub const IRTA: u64 = 0xB8;

pub const GCMD_TE: u32 = 1 << 31;
pub const GCMD_SRTP: u32 = 1 << 30;
pub const GCMD_QIE: u32 = 1 << 26;
pub const GCMD_IRE: u32 = 1 << 25;
pub const GCMD_SIRTP: u32 = 1 << 24;
/// Compatibility format interrupts allowed: never set by the hypervisor.
pub const GCMD_CFI: u32 = 1 << 23;
/// The enables a GCMD write must repeat (GSTS reports them; a write without one turns it
/// off).
pub const GSTS_ENABLES: u32 = GCMD_TE | GCMD_QIE | GCMD_IRE | GCMD_CFI;
pub const ECAP_QI: u64 = 1 << 1;
pub const ECAP_IR: u64 = 1 << 3;
pub const CCMD_ICC: u64 = 1 << 63;
pub const CCMD_GLOBAL: u64 = 1 << 61;
pub const IOTLB_IVT: u64 = 1 << 63;
pub const IOTLB_GLOBAL: u64 = 1 << 60;
pub const ECAP_PT: u64 = 1 << 6;
/// SAGAW bit 2: 4-level (48-bit) second-level tables, what the NPT/EPT are.
pub const CAP_SAGAW_4LEVEL: u64 = 1 << 10;
pub const FSTS_PFO: u32 = 1 << 0;
pub const FSTS_PPF: u32 = 1 << 1;
pub const FECTL_IM: u32 = 1 << 31;

/// Context entry translation types.
pub const TT_UNTRANSLATED: u64 = 0;
pub const TT_PASS_THROUGH: u64 = 2;
/// Address width 2: 48 bits, 4 levels.
const AW_48: u64 = 2;

/// A context entry: (low, high) quadwords.
pub fn context_entry(tt: u64, table: u64, domain: u64) -> (u64, u64) {
    (
        (table & !0xFFF) | tt << 2 | 1,
        AW_48 | (domain & 0xFFFF) << 8,
    )
}

/// A root entry pointing at the context table of one bus.
pub fn root_entry(context_table: u64) -> (u64, u64) {
    ((context_table & !0xFFF) | 1, 0)
}

/// Where a unit's IOTLB registers are (ECAP.IRO, in 16-byte units), relative to its base.
pub fn iotlb_offset(ecap: u64) -> u64 {
    ((ecap >> 8) & 0x3FF) * 16 + 8
}

/// Where a unit's fault recording registers start (CAP.FRO, in 16-byte units) and how many
/// there are (CAP.NFR + 1).
pub fn fault_records(cap: u64) -> (u64, usize) {
    (
        ((cap >> 24) & 0x3FF) * 16,
        ((cap >> 40) & 0xFF) as usize + 1,
    )
}

/// The fault event message: a fixed, edge-triggered MSI of `vector` to the local APIC with
/// physical ID `apic_id` (FEADDR, FEDATA).
pub fn fault_event(apic_id: u8, vector: u8) -> (u32, u32) {
    (0xFEE0_0000 | u32::from(apic_id) << 12, u32::from(vector))
}

/// Queued invalidation descriptors (VT-d spec §6.5.2): global context-cache, global IOTLB
/// (draining reads and writes), global interrupt entry cache, and a wait that writes `data`
/// to `status` once everything before it is done.
pub fn invalidate_context_global() -> [u64; 2] {
    [0x1 | 1 << 4, 0]
}
pub fn invalidate_iotlb_global() -> [u64; 2] {
    [0x2 | 1 << 4 | 1 << 6 | 1 << 7, 0]
}
pub fn invalidate_interrupt_entries() -> [u64; 2] {
    [0x4, 0]
}
pub fn invalidation_wait(status: u64, data: u32) -> [u64; 2] {
    [0x5 | 1 << 5 | u64::from(data) << 32, status & !3]
}

/// Interrupt remapping table entries: one per hypervisor vector for MSIs, then one per GSI
/// for the IOAPICs' pins; the IRTA size field S gives 2^(S+1) entries.
pub const IRT_ENTRIES: u16 = 512;
const IRTA_SIZE_512: u64 = 8;
const IRTA_EIME: u64 = 1 << 11;
/// The IRTE index of the pin of `gsi`.
pub fn ioapic_index(gsi: u32) -> Option<u16> {
    u16::try_from(gsi)
        .ok()
        .filter(|&g| g < 256)
        .map(|g| 256 + g)
}

/// The interrupt remapping table address register: the table at `table` (512 entries, 8
/// KiB), x2APIC destination IDs when `x2apic` (EIME).
pub fn irta(table: u64, x2apic: bool) -> u64 {
    (table & !0xFFF) | if x2apic { IRTA_EIME } else { 0 } | IRTA_SIZE_512
}

/// A remapped-format IRTE: present, fixed delivery of `vector` to the local APIC `dest`
/// (physical; bits 47:40 in xAPIC mode, 63:32 in x2APIC mode), edge or `level`; requests
/// must come from `source` (SVT 01: all 16 bits of the requester ID checked) when given.
pub fn irte(vector: u8, dest: u32, x2apic: bool, level: bool, source: Option<u16>) -> [u64; 2] {
    let dest = if x2apic {
        u64::from(dest) << 32
    } else {
        u64::from(dest & 0xFF) << 40
    };
    let low = 1 | u64::from(level) << 4 | u64::from(vector) << 16 | dest;
    let high = source.map_or(0, |sid| u64::from(sid) | 1 << 18);
    [low, high]
}

/// An MSI in the remappable format naming IRTE `index` (no subhandle; data 0).
pub fn remappable_msi(index: u16) -> (u32, u32) {
    let i = u32::from(index);
    (0xFEE0_0000 | (i & 0x7FFF) << 5 | 1 << 4 | (i >> 15) << 2, 0)
}

/// The remappable form of IOAPIC redirection entry `rte` for IRTE `index`: the vector (what
/// end-of-interrupt messages name), polarity, trigger mode and mask kept, the destination
/// replaced by the index.
pub fn remappable_rte(rte: u64, index: u16) -> u64 {
    let keep = rte & (0xFF | 1 << 13 | 1 << 15 | 1 << 16);
    let i = u64::from(index);
    keep | 1 << 48 | (i & 0x7FFF) << 49 | (i >> 15) << 11
}

/// One recorded DMA remapping fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaFault {
    /// The requester (bus, device, function).
    pub source: Bdf,
    /// The page the request addressed (bits 11:0 are not recorded).
    pub page: u64,
    pub read: bool,
    /// The fault reason (VT-d spec §7.1.3, e.g. 0x6: a second-level entry not present).
    pub reason: u8,
}

/// Bit 127 of a fault recording register: the record is valid (write 1 to clear).
pub const FRCD_F: u64 = 1 << 63;

impl DmaFault {
    /// The fault in a recording register's (low, high) quadwords; None when its F bit is clear.
    pub fn decode(lo: u64, hi: u64) -> Option<DmaFault> {
        if hi & FRCD_F == 0 {
            return None;
        }
        let sid = hi as u16;
        Some(DmaFault {
            source: Bdf::from_raw(sid),
            page: lo & !0xFFF,
            // Bit 126 (T): 0 a write, 1 a read.
            read: hi & 1 << 62 != 0,
            reason: (hi >> 32) as u8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(
            context_entry(TT_PASS_THROUGH, 0, 255),
            (0b1001, 2 | 255 << 8)
        );
        assert_eq!(
            context_entry(TT_UNTRANSLATED, 0x1234_5678, 3),
            (0x1234_5001, 2 | 3 << 8)
        );
        assert_eq!(root_entry(0xABC_D123), (0xABC_D001, 0));
    }

    #[test]
    fn capability_fields() {
        // As QEMU's intel-iommu lays its registers out: fault records at 0x220 (FRO 0x22), one
        // of them (NFR 0), the IOTLB register at 0xf8 (IRO 0xf); other bits set around them.
        let cap = 0x22 << 24 | 0x0046_0462 | 0xD2 << 48;
        assert_eq!(fault_records(cap), (0x220, 1));
        assert_eq!(fault_records(cap | 7 << 40), (0x220, 8));
        assert_eq!(iotlb_offset(0xf << 8 | 0x5a), 0xf8);
    }

    #[test]
    fn queued_invalidation() {
        assert_eq!(invalidate_context_global(), [0x11, 0]);
        assert_eq!(invalidate_iotlb_global(), [0xD2, 0]);
        assert_eq!(invalidate_interrupt_entries(), [0x4, 0]);
        assert_eq!(
            invalidation_wait(0x1234_5008, 7),
            [0x0000_0007_0000_0025, 0x1234_5008]
        );
    }

    #[test]
    fn interrupt_remapping_formats() {
        assert_eq!(irta(0x20_0000, false), 0x20_0008);
        assert_eq!(irta(0x20_0000, true), 0x20_0808);
        // Vector 0x58 to APIC 2, edge, from 00:02.0 (SVT 01).
        assert_eq!(
            irte(0x58, 2, false, false, Some(0x10)),
            [0x0000_0200_0058_0001, 0x4_0010]
        );
        assert_eq!(irte(0x31, 3, true, true, None), [0x0000_0003_0031_0011, 0]);
        // Handle 0x58: address bits 19:5, interrupt format bit 4.
        assert_eq!(remappable_msi(0x58), (0xFEE0_0B10, 0));
        assert_eq!(remappable_msi(0x8001), (0xFEE0_0034, 0));
        // A level, active-low, masked entry for vector 0x30 to APIC 1: handle 0x116.
        let rte = 0x0100_0000_0001_A030;
        assert_eq!(remappable_rte(rte, 0x116), 0x022D_0000_0001_A030);
        assert_eq!(ioapic_index(22), Some(256 + 22));
        assert_eq!(ioapic_index(300), None);
    }

    #[test]
    fn fault_message() {
        assert_eq!(fault_event(2, 0xF1), (0xFEE0_2000, 0xF1));
    }

    #[test]
    fn fault_records_decode() {
        assert_eq!(DmaFault::decode(0x4000_0123, 0x10), None);
        // A read by 00:02.0 of page 0x40000000, reason 6.
        let hi = FRCD_F | 1 << 62 | 6 << 32 | 0x0010;
        assert_eq!(
            DmaFault::decode(0x4000_0123, hi),
            Some(DmaFault {
                source: Bdf {
                    bus: 0,
                    dev: 2,
                    func: 0
                },
                page: 0x4000_0000,
                read: true,
                reason: 6
            })
        );
        // A write by 3a:1f.7.
        let f = DmaFault::decode(0xFFFF_F000, FRCD_F | 0x3AFF).unwrap();
        assert_eq!(
            (f.source.bus, f.source.dev, f.source.func, f.read),
            (0x3A, 0x1F, 7, false)
        );
    }
}
