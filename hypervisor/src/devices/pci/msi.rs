//! A physical function's MSI capability with the guest's message kept apart from the
//! hardware's: the guest programs its own address, data, enable and mask bits and reads them
//! back; the hardware gets the hypervisor's message (a vector of its own aimed at a pCPU), and
//! the hypervisor turns each interrupt into the guest's message. Used for pass-through
//! functions and for the Service VM's physical devices alike.

/// The hardware's configuration space of one function (dword reads, sized writes).
pub trait PhysConfig {
    fn read32(&self, offset: u16) -> u32;
    fn write(&self, offset: u16, size: u8, value: u32);
}

const STATUS_CAPABILITIES: u32 = 1 << 4;
const MSI_CONTROL_ENABLE: u16 = 1 << 0;
const MSI_CONTROL_64BIT: u16 = 1 << 7;
const MSI_CONTROL_PER_VECTOR_MASK: u16 = 1 << 8;

/// Calls `f` with each capability of the function's list: the offset of the pointer that
/// links to it, its offset, and its first dword. A malformed (looping) list ends after as many
/// entries as fit the header.
pub fn for_each_capability(phys: &impl PhysConfig, mut f: impl FnMut(u16, u16, u32)) {
    let status = phys.read32(super::function::STATUS as u16 & !3) >> 16;
    if status & STATUS_CAPABILITIES == 0 {
        return;
    }
    let mut link = super::function::CAPABILITIES_PTR as u16;
    let mut at = (phys.read32(link) & 0xFC) as u16;
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let head = phys.read32(at);
        f(link, at, head);
        link = at + 1;
        at = ((head >> 8) & 0xFC) as u16;
    }
}

/// The `size` bytes at `offset` of `dword` (the configuration dword holding them).
pub fn extract(dword: u32, offset: u16, size: u8) -> u32 {
    let shifted = dword >> (8 * (offset & 3));
    match size {
        1 => shifted & 0xFF,
        2 => shifted & 0xFFFF,
        _ => shifted,
    }
}

/// `dword` with `value` (of `size` bytes at `offset`) written into it.
pub fn merge(dword: u32, offset: u16, size: u8, value: u32) -> u32 {
    let shift = 8 * (offset & 3) as u32;
    let mask: u32 = match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => u32::MAX,
    };
    (dword & !(mask << shift)) | ((value & mask) << shift)
}

/// The guest's MSI as programmed now (address and data), when it is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestMessage {
    pub addr: u64,
    pub data: u32,
}

/// The guest's view of the MSI capability registers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GuestMsi {
    control: u16,
    addr: u64,
    data: u16,
    mask: u32,
}

/// One function's MSI capability: where it is, its layout, and the guest's registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualMsi {
    at: u16,
    wide: bool,
    maskable: bool,
    guest: GuestMsi,
}

impl VirtualMsi {
    /// The capability at `at` whose message control the hardware reads as `control`.
    pub fn new(at: u16, control: u16) -> Self {
        VirtualMsi {
            at,
            wide: control & MSI_CONTROL_64BIT != 0,
            maskable: control & MSI_CONTROL_PER_VECTOR_MASK != 0,
            guest: GuestMsi::default(),
        }
    }

    fn len(&self) -> u16 {
        10 + if self.wide { 4 } else { 0 } + if self.maskable { 10 } else { 0 }
    }

    fn data_offset(&self) -> u16 {
        self.at + if self.wide { 12 } else { 8 }
    }

    /// Whether the byte at `offset` is one of the registers the guest owns (from message
    /// control on; the ID and next pointer stay the hardware's).
    fn covers(&self, offset: u16) -> bool {
        offset >= self.at + 2 && offset < self.at + self.len()
    }

    /// Whether an access of `size` bytes at `offset` reaches the guest's registers.
    pub fn touches(&self, offset: u16, size: u8) -> bool {
        (0..u16::from(size)).any(|k| self.covers(offset + k))
    }

    /// The configuration dword at `aligned` as the guest reads it (`hw`: the hardware's).
    pub fn read_dword(&self, aligned: u16, hw: u32) -> u32 {
        let mut d = hw;
        for byte in 0..4 {
            let at = aligned + byte;
            if self.covers(at) {
                let hw_byte = extract(d, at, 1) as u8;
                d = merge(d, at, 1, u32::from(self.guest_byte(at, hw_byte)));
            }
        }
        d
    }

    /// The guest's byte at `at` (`hw`: the hardware's byte there).
    fn guest_byte(&self, at: u16, hw: u8) -> u8 {
        let g = &self.guest;
        let rel = at - self.at;
        let data_rel = self.data_offset() - self.at;
        let byte = |v: u64, i: u16| (v >> (8 * i)) as u8;
        match rel {
            // Message control: 64-bit and per-vector masking are the hardware's, enable the
            // guest's; one vector only (multiple-message capable and enable read 0).
            2 => (hw & !0x7F) | (g.control as u8 & 0x01),
            3 => hw,
            4..=7 => byte(g.addr, rel - 4),
            8..=11 if self.wide => byte(g.addr >> 32, rel - 8),
            r if (data_rel..data_rel + 2).contains(&r) => byte(u64::from(g.data), r - data_rel),
            r if self.maskable && (data_rel + 4..data_rel + 8).contains(&r) => {
                byte(u64::from(g.mask), r - data_rel - 4)
            }
            // Reserved bytes, and pending bits the guest cannot see through the remap.
            _ => 0,
        }
    }

    /// A guest write of `size` bytes at `offset` touching the capability. Byte by byte: a
    /// dword write at the capability's start also carries its ID and next pointer, which go
    /// to the hardware (read-only there).
    pub fn write(&mut self, phys: &impl PhysConfig, offset: u16, size: u8, value: u32) {
        for k in 0..u16::from(size) {
            let at = offset + k;
            let byte = (value >> (8 * k)) as u8;
            if !self.covers(at) {
                phys.write(at, 1, u32::from(byte));
                continue;
            }
            let rel = at - self.at;
            let data_rel = self.data_offset() - self.at;
            let wide = self.wide;
            let maskable = self.maskable;
            let g = &mut self.guest;
            let set = |v: u64, i: u16, b: u8| (v & !(0xFF << (8 * i))) | (u64::from(b) << (8 * i));
            match rel {
                // Enable only: one vector (multiple-message enable stays 0).
                2 => g.control = (g.control & !0xFF) | u16::from(byte & 0x01),
                4 => g.addr = set(g.addr, 0, byte & 0xFC),
                5..=7 => g.addr = set(g.addr, rel - 4, byte),
                8..=11 if wide => g.addr = set(g.addr, rel - 4, byte),
                r if (data_rel..data_rel + 2).contains(&r) => {
                    g.data = set(u64::from(g.data), r - data_rel, byte) as u16
                }
                r if maskable && (data_rel + 4..data_rel + 8).contains(&r) => {
                    g.mask = set(u64::from(g.mask), r - data_rel - 4, byte) as u32
                }
                _ => {}
            }
        }
    }

    /// The guest's message while it has MSI enabled (and vector 0 unmasked).
    pub fn message(&self) -> Option<GuestMessage> {
        let g = self.guest;
        (g.control & MSI_CONTROL_ENABLE != 0 && g.mask & 1 == 0).then_some(GuestMessage {
            addr: g.addr,
            data: u32::from(g.data),
        })
    }

    /// Programs the hardware: `host` (the hypervisor's address and vector) enabled, or MSI
    /// off.
    pub fn program(&self, phys: &impl PhysConfig, host: Option<(u32, u16)>) {
        let control = (phys.read32(self.at) >> 16) as u16 & !MSI_CONTROL_ENABLE & !(7 << 4);
        phys.write(self.at + 2, 2, u32::from(control));
        let Some((addr, data)) = host else { return };
        phys.write(self.at + 4, 4, addr);
        if self.wide {
            phys.write(self.at + 8, 4, 0);
        }
        phys.write(self.data_offset(), 2, u32::from(data));
        if self.maskable {
            phys.write(self.data_offset() + 4, 4, 0);
        }
        phys.write(self.at + 2, 2, u32::from(control | MSI_CONTROL_ENABLE));
    }
}
