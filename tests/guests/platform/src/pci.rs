//! The guest's side of the hypervisor's virtual PCI, shared by the modes that use it: config
//! access through 0xCF8/0xCFC and ECAM, BAR sizing, the capability list, and MSI-X vectors
//! aimed at CPU 0.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::AtomicU8;
use guest_common::platform::Platform;

pub fn outl(port: u16, v: u32) {
    // SAFETY: the PCI configuration ports; the VM owns them (virtual).
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nomem, nostack)) };
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as for `outl`.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") v, options(nomem, nostack)) };
    v
}

/// Configuration access through 0xCF8/0xCFC (dwords).
pub fn cf8_read(dev: u8, off: u16) -> u32 {
    outl(
        0xCF8,
        1 << 31 | u32::from(dev) << 11 | u32::from(off & 0xFC),
    );
    inl(0xCFC)
}

pub fn cf8_write(dev: u8, off: u16, v: u32) {
    outl(
        0xCF8,
        1 << 31 | u32::from(dev) << 11 | u32::from(off & 0xFC),
    );
    outl(0xCFC, v);
}

pub fn mmio_read32(addr: u64) -> u32 {
    // SAFETY: a device register or ECAM dword the hypervisor emulates (identity-mapped).
    unsafe { read_volatile(addr as *const u32) }
}

pub fn mmio_write32(addr: u64, v: u32) {
    // SAFETY: as for `mmio_read32`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

/// The ECAM base from the MCFG the XSDT lists (0 when there is none).
pub fn mcfg_base(p: &Platform) -> u64 {
    let Ok(acpi) = &p.acpi else { return 0 };
    // SAFETY: ACPI tables in low RAM, identity-mapped; lengths bound every read.
    unsafe {
        let xsdt = read_volatile((acpi.rsdp + 24) as *const u64);
        if xsdt == 0 || xsdt >= 1 << 32 {
            return 0;
        }
        let len = read_volatile((xsdt + 4) as *const u32) as u64;
        for i in 0..(len.saturating_sub(36) / 8).min(32) {
            let t = read_volatile((xsdt + 36 + 8 * i) as *const u64);
            if t != 0 && t < 1 << 32 && read_volatile(t as *const [u8; 4]) == *b"MCFG" {
                return read_volatile((t + 44) as *const u64);
            }
        }
    }
    0
}

pub struct Device {
    pub dev: u8,
    pub ecam: u64,
}

impl Device {
    pub fn cfg(&self, off: u16) -> u32 {
        cf8_read(self.dev, off)
    }
    pub fn set_cfg(&self, off: u16, v: u32) {
        cf8_write(self.dev, off, v)
    }
    pub fn ecam(&self, off: u16) -> u32 {
        mmio_read32(self.ecam + (u64::from(self.dev) << 15) + u64::from(off))
    }
    pub fn set_ecam(&self, off: u16, v: u32) {
        mmio_write32(self.ecam + (u64::from(self.dev) << 15) + u64::from(off), v)
    }
    /// BAR `i` as (address, size) through sizing with decode off.
    pub fn size_bar(&self, i: u16, wide: bool) -> (u64, u64) {
        let o = 0x10 + 4 * i;
        let lo = self.cfg(o);
        let hi = if wide { self.cfg(o + 4) } else { 0 };
        self.set_cfg(o, u32::MAX);
        let mask_lo = self.cfg(o) & !0xF;
        self.set_cfg(o, lo);
        let mask = if wide {
            self.set_cfg(o + 4, u32::MAX);
            let m = self.cfg(o + 4);
            self.set_cfg(o + 4, hi);
            u64::from(m) << 32 | u64::from(mask_lo)
        } else {
            u64::from(mask_lo) | 0xFFFF_FFFF_0000_0000
        };
        (
            u64::from(hi) << 32 | u64::from(lo & !0xF),
            (!mask).wrapping_add(1),
        )
    }
    /// Offset of the capability with `id`.
    pub fn capability(&self, id: u8) -> Option<u16> {
        let mut at = (self.cfg(0x34) & 0xFC) as u16;
        for _ in 0..48 {
            if at == 0 {
                return None;
            }
            let head = self.cfg(at);
            if head as u8 == id {
                return Some(at);
            }
            at = ((head >> 8) & 0xFC) as u16;
        }
        None
    }
}

/// An MSI-X capability: its vector count and the BAR (and offset) of its table.
pub struct Msix {
    pub vectors: usize,
    pub table_bar: u32,
    pub table_offset: u32,
}

/// Finds the first device `vendor_device` (device << 16 | vendor) on bus 0.
pub fn find(vendor_device: u32) -> Option<u8> {
    find_all(vendor_device).next()
}

/// The device numbers of every `vendor_device` on bus 0, lowest first.
pub fn find_all(vendor_device: u32) -> impl Iterator<Item = u8> {
    (1..32u8).filter(move |&d| cf8_read(d, 0) == vendor_device)
}

/// ACRN's PCI vUART (MCS9900).
pub const PCI_VUART: u32 = 0x9900_9710;

/// The device number of the PCI vUART the console moved to (`pci_console`), 0 for none.
pub static CONSOLE_DEV: AtomicU8 = AtomicU8::new(0);

impl Device {
    /// The MSI-X capability as the header describes it.
    pub fn msix(&self) -> Option<Msix> {
        let at = self.capability(0x11)?;
        let table = self.cfg(at + 4);
        Some(Msix {
            vectors: ((self.cfg(at) >> 16) & 0x7FF) as usize + 1,
            table_bar: table & 7,
            table_offset: table & !7,
        })
    }

    /// Memory decoding and bus mastering on, vector k of the table (in the BAR at
    /// `table_bar_addr`) to IDT vector `first + k` on CPU 0 (physical, fixed, edge), then
    /// MSI-X enabled.
    pub fn enable_msix(&self, table_bar_addr: u64, first: u8) -> Option<Msix> {
        let at = self.capability(0x11)?;
        let m = self.msix()?;
        self.set_cfg(4, 0x6);
        let table = table_bar_addr + u64::from(m.table_offset);
        for k in 0..m.vectors {
            let e = table + 16 * k as u64;
            mmio_write32(e, 0xFEE0_0000);
            mmio_write32(e + 4, 0);
            mmio_write32(e + 8, u32::from(first) + k as u32);
            mmio_write32(e + 12, 0);
        }
        self.set_cfg(at, self.cfg(at) | 1 << 31);
        Some(m)
    }
}
