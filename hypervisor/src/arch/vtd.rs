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

pub const GCMD_TE: u32 = 1 << 31;
pub const GCMD_SRTP: u32 = 1 << 30;
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
            source: Bdf {
                bus: (sid >> 8) as u8,
                dev: (sid >> 3) as u8 & 0x1F,
                func: sid as u8 & 7,
            },
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
