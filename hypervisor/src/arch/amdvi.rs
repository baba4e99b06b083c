//! AMD-Vi formats (AMD I/O Virtualization Technology specification, rev. 3): the IOMMU's
//! register offsets, device table entries, commands and event log entries. Pure encodings,
//! checked on the host; `hv::amdvi` drives the IOMMUs with them. The I/O page table entries are
//! `paging::AmdVi`.

use super::vtd::DmaFault;
use acrn_static_config::Bdf;
use bitflags::bitflags;

pub const DEVICE_TABLE_BASE: u64 = 0x0000;
pub const COMMAND_BASE: u64 = 0x0008;
pub const EVENT_LOG_BASE: u64 = 0x0010;
pub const CONTROL: u64 = 0x0018;
pub const EXTENDED_FEATURES: u64 = 0x0030;
pub const COMMAND_HEAD: u64 = 0x2000;
pub const COMMAND_TAIL: u64 = 0x2008;
pub const EVENT_LOG_HEAD: u64 = 0x2010;
pub const EVENT_LOG_TAIL: u64 = 0x2018;
pub const STATUS: u64 = 0x2020;
/// The register window the hypervisor keeps to itself (the architected 16 KiB; the
/// performance counter pages beyond it are not used).
pub const REGISTER_WINDOW: u64 = 0x4000;

/// Extended feature register: INVALIDATE_IOMMU_ALL is supported.
pub const FEATURE_INVALIDATE_ALL: u64 = 1 << 6;

bitflags! {
    /// The control register (offset 0x18).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Control: u64 {
        const IOMMU_EN = 1 << 0;
        const EVENT_LOG_EN = 1 << 2;
        const EVENT_INT_EN = 1 << 3;
        const CMD_BUF_EN = 1 << 12;
        const _ = !0;
    }
}

bitflags! {
    /// The status register (offset 0x2020); the event bits are write-1-to-clear.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Status: u64 {
        const EVENT_OVERFLOW = 1 << 0;
        const EVENT_LOG_INT = 1 << 1;
        const COMPLETION_WAIT_INT = 1 << 2;
        const _ = !0;
    }
}

const ADDR_MASK: u64 = 0x000F_FFFF_FFFF_F000;

/// Bytes of one device table entry and event.
pub const DTE_SIZE: usize = 32;
pub const EVENT_SIZE: u64 = 16;

/// Entries of the command buffer and the event log: one 4 KiB page each (2^8 entries of 16
/// bytes, the smallest length the registers encode).
pub const RING_ENTRIES: u64 = 256;
const RING_LENGTH_LOG2: u64 = 8;

/// The device table base register: the table at `pa`, `pages` 4 KiB pages long (1 to 512).
pub fn device_table_base(pa: u64, pages: u64) -> u64 {
    (pa & ADDR_MASK) | (pages.clamp(1, 512) - 1)
}

/// The command buffer or event log base register for a one-page ring at `pa`.
pub fn ring_base(pa: u64) -> u64 {
    (pa & ADDR_MASK) | RING_LENGTH_LOG2 << 56
}

// Device table entry, first quadword.
const DTE_V: u64 = 1 << 0;
const DTE_TV: u64 = 1 << 1;
const DTE_MODE_SHIFT: u64 = 9;
const DTE_IR: u64 = 1 << 61;
const DTE_IW: u64 = 1 << 62;

/// The DMA half (quadwords 0 and 1) of the device table entry of a requester whose DMA is
/// translated by the 4-level I/O page table at `root` in `domain`.
pub fn translated_entry(root: u64, domain: u16) -> [u64; 2] {
    [
        (root & ADDR_MASK) | 4 << DTE_MODE_SHIFT | DTE_IR | DTE_IW | DTE_TV | DTE_V,
        u64::from(domain),
    ]
}

/// The DMA half of the device table entry of a requester whose DMA passes untranslated
/// (Mode 0) in `domain`: a scenario without a Service VM leaves the functions no VM owns so.
pub fn untranslated_entry(domain: u16) -> [u64; 2] {
    [DTE_IR | DTE_IW | DTE_TV | DTE_V, u64::from(domain)]
}

// Device table entry, third quadword: interrupt remapping.
const DTE_IV: u64 = 1 << 0;
/// IntTabLen: 2^8 entries.
const DTE_INT_TAB_LEN_256: u64 = 8 << 1;
const DTE_INT_TABLE_MASK: u64 = 0x000F_FFFF_FFFF_FFC0;
/// IntCtl (bits 61:60): fixed and arbitrated interrupts remapped through the table.
const DTE_INT_CTL_REMAPPED: u64 = 2 << 60;

/// Entries of a device's interrupt remapping table, one per hypervisor vector.
pub const INTERRUPT_TABLE_ENTRIES: usize = 256;
/// Bytes of an interrupt remapping table (4-byte entries, 128-byte aligned).
pub const INTERRUPT_TABLE_BYTES: u64 = 4 * INTERRUPT_TABLE_ENTRIES as u64;

/// The interrupt half (quadword 2) of a requester's device table entry: its fixed interrupts
/// go through the table at `table` (256 entries, indexed by the MSI data's bits 10:0), or with
/// no table are aborted; NMI, INIT, ExtInt and LINT requests are aborted either way.
pub fn interrupt_entry(table: Option<u64>) -> u64 {
    match table {
        Some(t) => DTE_IV | DTE_INT_TAB_LEN_256 | (t & DTE_INT_TABLE_MASK) | DTE_INT_CTL_REMAPPED,
        None => DTE_IV,
    }
}

/// An interrupt remapping table entry (the 32-bit format): fixed delivery of `vector` to the
/// local APIC with physical ID `apic_id`.
pub fn interrupt_table_entry(vector: u8, apic_id: u8) -> u32 {
    // RemapEn (bit 0), IntType fixed (bits 4:2 = 0), DM physical (bit 6 = 0).
    1 | u32::from(apic_id) << 8 | u32::from(vector) << 16
}

/// The MSI a device sends, under interrupt remapping, for its table entry `index`: the
/// address carries no destination (the entry has it), the data the index with fixed delivery.
pub fn remapped_msi(index: u8) -> (u32, u32) {
    (0xFEE0_0000, u32::from(index))
}

const OPCODE_SHIFT: u64 = 60;

/// COMPLETION_WAIT: the IOMMU stores `data` at `store` (8-byte aligned) once every command
/// before it has completed.
pub fn completion_wait(store: u64, data: u64) -> [u64; 2] {
    [
        (store & 0x000F_FFFF_FFFF_FFF8) | 1 | 1 << OPCODE_SHIFT,
        data,
    ]
}

/// INVALIDATE_DEVTAB_ENTRY for `device`.
pub fn invalidate_device_entry(device: u16) -> [u64; 2] {
    [u64::from(device) | 2 << OPCODE_SHIFT, 0]
}

/// INVALIDATE_IOMMU_PAGES of every address of `domain` (S and PDE set, the all-pages address).
pub fn invalidate_domain(domain: u16) -> [u64; 2] {
    [
        u64::from(domain) << 32 | 3 << OPCODE_SHIFT,
        0x7FFF_FFFF_FFFF_F000 | 0b11,
    ]
}

/// INVALIDATE_INTERRUPT_TABLE of `device`.
pub fn invalidate_interrupt_table(device: u16) -> [u64; 2] {
    [u64::from(device) | 5 << OPCODE_SHIFT, 0]
}

/// INVALIDATE_IOMMU_ALL (where the extended features say it is supported).
pub fn invalidate_all() -> [u64; 2] {
    [8 << OPCODE_SHIFT, 0]
}

const EVENT_IO_PAGE_FAULT: u64 = 2;
/// IO_PAGE_FAULT flags: the access was a write.
const EVENT_RW: u64 = 1 << 53;

/// One event log entry, as far as the hypervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A DMA that the I/O page table does not allow.
    PageFault(DmaFault),
    /// Any other event: its code (bits 63:60), device ID and address.
    Other { code: u8, device: u16, address: u64 },
}

impl Event {
    pub fn decode([lo, hi]: [u64; 2]) -> Event {
        let code = lo >> 60;
        let device = lo as u16;
        if code == EVENT_IO_PAGE_FAULT {
            return Event::PageFault(DmaFault {
                source: Bdf::from_raw(device),
                page: hi & !0xFFF,
                read: lo & EVENT_RW == 0,
                reason: code as u8,
            });
        }
        Event::Other {
            code: code as u8,
            device,
            address: hi,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_registers() {
        assert_eq!(device_table_base(0x20_0000, 512), 0x20_01FF);
        assert_eq!(device_table_base(0x20_0000, 1), 0x20_0000);
        assert_eq!(ring_base(0x1234_5000), 0x0800_0000_1234_5000);
    }

    #[test]
    fn device_table_entries() {
        let e = translated_entry(0x0012_3000, 5);
        // V, TV, Mode 4 (bits 11:9), root, IR, IW; domain in the second quadword.
        assert_eq!(e, [0x6000_0000_0012_3803, 5]);
        // QEMU's check of the reserved bits of the first quadword.
        assert_eq!(e[0] & 0x8030_0000_0000_00FC, 0);
        assert_eq!(untranslated_entry(255), [0x6000_0000_0000_0003, 255]);
        // IV, IntTabLen 8, the table, IntCtl 10b; QEMU's reserved bits of quadword 2 clear.
        let ir = interrupt_entry(Some(0x0045_6780));
        assert_eq!(ir, 0x2000_0000_0045_6791);
        assert_eq!(ir & 0x08F0_0000_0000_0000, 0);
        assert_eq!(interrupt_entry(None), 1);
    }

    #[test]
    fn commands() {
        assert_eq!(
            completion_wait(0x8_1008, 0xC0FFEE),
            [0x1000_0000_0008_1009, 0xC0FFEE]
        );
        assert_eq!(invalidate_device_entry(0x10), [0x2000_0000_0000_0010, 0]);
        assert_eq!(
            invalidate_domain(3),
            [0x3000_0003_0000_0000, 0x7FFF_FFFF_FFFF_F003]
        );
        assert_eq!(invalidate_all(), [0x8000_0000_0000_0000, 0]);
        assert_eq!(invalidate_interrupt_table(0xA0), [0x5000_0000_0000_00A0, 0]);
    }

    #[test]
    fn interrupt_remapping() {
        // Vector 0x58 to APIC ID 2, fixed, physical, RemapEn.
        assert_eq!(interrupt_table_entry(0x58, 2), 0x0058_0201);
        assert_eq!(remapped_msi(0x58), (0xFEE0_0000, 0x58));
    }

    #[test]
    fn events() {
        // A write by 00:02.0 to 0x400123, domain 1.
        let write = Event::decode([2 << 60 | EVENT_RW | 1 << 32 | 0x10, 0x40_0123]);
        assert_eq!(
            write,
            Event::PageFault(DmaFault {
                source: Bdf {
                    bus: 0,
                    dev: 2,
                    func: 0
                },
                page: 0x40_0000,
                read: false,
                reason: 2
            })
        );
        let Event::PageFault(read) = Event::decode([2 << 60 | 0x3AFF, 0x1000]) else {
            panic!("not a page fault");
        };
        assert!(read.read);
        assert_eq!(
            (read.source.bus, read.source.dev, read.source.func),
            (0x3A, 0x1F, 7)
        );
        assert_eq!(
            Event::decode([1 << 60 | 0x10, 0xDEAD_0000]),
            Event::Other {
                code: 1,
                device: 0x10,
                address: 0xDEAD_0000
            }
        );
    }
}
