//! PCI configuration space (type 0 header), BAR sizing, and the two fixed functions ACRN's
//! launch scripts always add: the host bridge and the LPC (ISA) bridge.

/// A BAR's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space.
    Io,
    /// 32-bit memory.
    Mem32,
}

/// A BAR: its kind and size (a power of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// Kind.
    pub kind: BarKind,
    /// Size in bytes.
    pub size: u32,
}

/// Command register bits.
pub const CMD_IO: u16 = 1 << 0;
/// Memory space enable.
pub const CMD_MEM: u16 = 1 << 1;
/// INTx disable.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;

/// A function's 256-byte configuration space with the rules for guest writes.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    bars: [Option<Bar>; 6],
}

/// Identity of a function.
#[derive(Debug, Clone, Copy)]
pub struct PciId {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code (class, subclass, prog-if).
    pub class: u32,
    /// Revision.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsys_vendor: u16,
    /// Subsystem ID.
    pub subsys: u16,
}

impl ConfigSpace {
    /// A type 0 header with `id`.
    pub fn new(id: PciId) -> Self {
        let mut c = Self {
            bytes: [0; 256],
            bars: [None; 6],
        };
        c.set16(0x00, id.vendor);
        c.set16(0x02, id.device);
        c.bytes[0x08] = id.revision;
        c.bytes[0x09] = id.class as u8;
        c.bytes[0x0A] = (id.class >> 8) as u8;
        c.bytes[0x0B] = (id.class >> 16) as u8;
        c.set16(0x2C, id.subsys_vendor);
        c.set16(0x2E, id.subsys);
        c
    }

    fn set16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn get32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.bytes[off..off + 4].try_into().expect("4 bytes"))
    }

    /// Declares BAR `i` and gives it its initial address (firmware-assigned, as ACRN does).
    pub fn set_bar(&mut self, i: usize, bar: Bar, addr: u32) {
        assert!(bar.size.is_power_of_two() && addr.is_multiple_of(bar.size));
        self.bars[i] = Some(bar);
        let flags = match bar.kind {
            BarKind::Io => 1,
            BarKind::Mem32 => 0,
        };
        let off = 0x10 + 4 * i;
        self.bytes[off..off + 4].copy_from_slice(&(addr | flags).to_le_bytes());
    }

    /// The current address of BAR `i` and whether its space is enabled in the command register.
    pub fn bar_addr(&self, i: usize) -> Option<(BarKind, u64, u64, bool)> {
        let bar = self.bars[i]?;
        let raw = self.get32(0x10 + 4 * i);
        let cmd = self.command();
        let (addr, enabled) = match bar.kind {
            BarKind::Io => (raw & !0x3, cmd & CMD_IO != 0),
            BarKind::Mem32 => (raw & !0xF, cmd & CMD_MEM != 0),
        };
        Some((bar.kind, u64::from(addr), u64::from(bar.size), enabled))
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.bytes[4], self.bytes[5]])
    }

    /// Sets the interrupt pin (1 = INTA) and line.
    pub fn set_intx(&mut self, pin: u8, line: u8) {
        self.bytes[0x3D] = pin;
        self.bytes[0x3C] = line;
    }

    /// Marks the function as part of a multi-function device.
    pub fn set_multifunction(&mut self) {
        self.bytes[0x0E] |= 0x80;
    }

    /// A configuration read of `size` bytes at `reg` (out of range reads as zero).
    pub fn read(&self, reg: u16, size: u8) -> u32 {
        let reg = reg as usize;
        let size = size as usize;
        if reg + size > 256 || !matches!(size, 1 | 2 | 4) {
            return 0;
        }
        let mut v = [0u8; 4];
        v[..size].copy_from_slice(&self.bytes[reg..reg + size]);
        u32::from_le_bytes(v)
    }

    /// A configuration write: only the command register, BARs, the interrupt line and the
    /// cache-line/latency bytes are writable; BARs keep their size alignment and type bits.
    pub fn write(&mut self, reg: u16, size: u8, value: u32) {
        let reg = reg as usize;
        let size = size as usize;
        if reg + size > 256 || !matches!(size, 1 | 2 | 4) {
            return;
        }
        for i in 0..size {
            let off = reg + i;
            let byte = (value >> (8 * i)) as u8;
            match off {
                0x04 => self.bytes[off] = byte & 0x07,
                0x05 => self.bytes[off] = byte & 0x04,
                0x0C | 0x0D | 0x3C => self.bytes[off] = byte,
                0x10..=0x27 => self.write_bar_byte(off, byte),
                _ => {}
            }
        }
    }

    fn write_bar_byte(&mut self, off: usize, byte: u8) {
        let i = (off - 0x10) / 4;
        let Some(bar) = self.bars[i] else { return };
        let base = 0x10 + 4 * i;
        let mut raw = self.get32(base).to_le_bytes();
        raw[off - base] = byte;
        let (mask, flags) = match bar.kind {
            BarKind::Io => (!(bar.size - 1) & !0x3, 1),
            BarKind::Mem32 => (!(bar.size - 1) & !0xF, 0),
        };
        let v = (u32::from_le_bytes(raw) & mask) | flags;
        self.bytes[base..base + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// A PCI function on the virtual bus.
pub trait PciFunction: Send {
    /// Its configuration space.
    fn config(&self) -> &ConfigSpace;
    /// Mutable configuration space.
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// A read inside BAR `bar` at `offset`.
    fn bar_read(&mut self, _bar: usize, _offset: u64, _size: u8) -> u64 {
        u64::MAX
    }
    /// A write inside BAR `bar` at `offset`.
    fn bar_write(&mut self, _bar: usize, _offset: u64, _size: u8, _value: u64) {}
    /// Interrupt line changes since the last call (`true` = assert).
    fn take_intx(&mut self) -> Option<bool> {
        None
    }
    /// Bytes from this function's host backend (console input, a frame from a tap).
    fn host_input(&mut self, _bytes: &[u8]) {}
    /// Serves work the guest queued without notifying (`--virtio_poll`).
    fn poll(&mut self) {}
}

/// A function with nothing but its configuration space.
pub struct PlainFunction(pub ConfigSpace);

impl PciFunction for PlainFunction {
    fn config(&self) -> &ConfigSpace {
        &self.0
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.0
    }
}

/// ACRN's `hostbridge`: an Intel host bridge, class 06/00.
pub fn hostbridge() -> PlainFunction {
    PlainFunction(ConfigSpace::new(PciId {
        vendor: 0x8086,
        device: 0x5AF0,
        class: 0x06_00_00,
        revision: 0x0B,
        subsys_vendor: 0,
        subsys: 0,
    }))
}

/// ACRN's `lpc`: an ISA bridge, class 06/01 (it only anchors the legacy COM ports).
pub fn lpc() -> PlainFunction {
    let mut c = ConfigSpace::new(PciId {
        vendor: 0x8086,
        device: 0x7000,
        class: 0x06_01_00,
        revision: 0,
        subsys_vendor: 0,
        subsys: 0,
    });
    c.set_multifunction();
    PlainFunction(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_read_widths() {
        let h = hostbridge();
        assert_eq!(h.0.read(0, 4), 0x5AF0_8086);
        assert_eq!(h.0.read(0, 2), 0x8086);
        assert_eq!(h.0.read(0x0A, 2), 0x0600);
        assert_eq!(h.0.read(0x0B, 1), 0x06);
        assert_eq!(h.0.read(0xFE, 4), 0, "past the end");
        assert_eq!(lpc().0.read(0x0A, 2), 0x0601);
        assert_eq!(lpc().0.read(0x0E, 1), 0x80);
    }

    #[test]
    fn read_only_fields_stay() {
        let mut h = hostbridge();
        h.0.write(0, 4, 0xFFFF_FFFF);
        h.0.write(0x08, 4, 0);
        assert_eq!(h.0.read(0, 4), 0x5AF0_8086);
        assert_eq!(h.0.read(0x08, 4), 0x0600_000B);
        h.0.write(0x04, 2, 0xFFFF);
        assert_eq!(h.0.command(), 0x0407);
    }

    #[test]
    fn bar_sizing_and_relocation() {
        let mut c = ConfigSpace::new(PciId {
            vendor: 1,
            device: 2,
            class: 0,
            revision: 0,
            subsys_vendor: 0,
            subsys: 0,
        });
        c.set_bar(
            0,
            Bar {
                kind: BarKind::Io,
                size: 64,
            },
            0x2000,
        );
        c.set_bar(
            1,
            Bar {
                kind: BarKind::Mem32,
                size: 0x1000,
            },
            0x8000_0000,
        );
        assert_eq!(c.read(0x10, 4), 0x2001);
        c.write(0x10, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x10, 4), 0xFFFF_FFC1, "I/O BAR of 64 ports");
        c.write(0x14, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x14, 4), 0xFFFF_F000, "4 KiB memory BAR");
        c.write(0x10, 4, 0x3040);
        c.write(0x14, 2, 0x1234);
        c.write(0x16, 2, 0x9000);
        assert_eq!(c.read(0x10, 4), 0x3041);
        assert_eq!(c.read(0x14, 4), 0x9000_1000);
        assert_eq!(c.bar_addr(0), Some((BarKind::Io, 0x3040, 64, false)));
        c.write(0x04, 2, u32::from(CMD_IO | CMD_MEM));
        assert_eq!(
            c.bar_addr(1),
            Some((BarKind::Mem32, 0x9000_1000, 0x1000, true))
        );
        // An unimplemented BAR reads as zero and ignores writes.
        c.write(0x18, 4, 0xFFFF_FFFF);
        assert_eq!(c.read(0x18, 4), 0);
    }
}
