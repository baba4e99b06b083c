//! One virtual PCI function: its type-0 configuration header, BARs (sizing, moves, decode by the
//! command register), a capability list with MSI and MSI-X, and the MSI-X table and PBA that
//! live in one of its memory BARs. A plain state machine: accesses in, messages out; the bus glue
//! decides what a BAR window or a message means for the VM.
//!
//! The configuration space is PCIe-sized (4 KiB); the extended space holds no capability, so it
//! reads as zero (an empty extended capability list) and ignores writes. Only the first 256
//! bytes are stored.

/// Size of the configuration space a function answers for (ECAM gives each function 4 KiB).
pub const CONFIG_SIZE: u16 = 4096;
const HEADER_SIZE: usize = 256;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION: usize = 0x08;
pub const CLASS_PROG_IF: usize = 0x09;
pub const HEADER_TYPE: usize = 0x0E;
pub const BAR0: usize = 0x10;
pub const SUBSYSTEM_VENDOR_ID: usize = 0x2C;
pub const SUBSYSTEM_ID: usize = 0x2E;
pub const CAPABILITIES_PTR: usize = 0x34;
pub const INTERRUPT_LINE: usize = 0x3C;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
/// Command bits a guest may set on these devices (I/O, memory, bus master, parity, SERR,
/// INTx disable); the rest are hard-wired to zero.
const COMMAND_WRITABLE: u16 = 0x0547;
const STATUS_CAPABILITIES: u16 = 1 << 4;

pub const CAP_ID_MSI: u8 = 0x05;
pub const CAP_ID_MSIX: u8 = 0x11;

const MSI_CONTROL_ENABLE: u16 = 1 << 0;
const MSI_CONTROL_64BIT: u16 = 1 << 7;
const MSI_CAP_LEN: usize = 14;
const MSIX_CONTROL_MASK_ALL: u16 = 1 << 14;
const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
const MSIX_CAP_LEN: usize = 12;
/// Bytes per MSI-X table entry: address low, address high, data, vector control.
pub const MSIX_ENTRY_SIZE: u64 = 16;
const MSIX_VECTOR_MASKED: u32 = 1;
/// The most MSI-X vectors a function here has (IVSHMEM's 8; kept small because every VM slot
/// holds its functions statically).
pub const MAX_MSIX_VECTORS: usize = 8;

/// What a BAR decodes. I/O BARs are not modelled (no device here has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Mem32,
    Mem64 { prefetchable: bool },
}

/// A BAR a device declares: its kind and size (a power of two, at least 16 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarSpec {
    pub kind: BarKind,
    pub size: u64,
}

/// Where the MSI-X table and PBA sit: in BAR `bar`, at these offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixLayout {
    pub bar: u8,
    pub table_offset: u32,
    pub pba_offset: u32,
    pub vectors: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// A BAR index above 5, or the upper half of a 64-bit BAR taken.
    BarSlot,
    /// A BAR size that is not a power of two of at least 16 bytes (or too big for 32 bits).
    BarSize,
    /// No room for another capability in the 256-byte header.
    CapabilitySpace,
    /// MSI-X table or PBA outside its BAR, or too many vectors.
    MsixLayout,
}

impl core::fmt::Display for BuildError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BuildError::BarSlot => "BAR index taken or out of range",
            BuildError::BarSize => "BAR size is not a power of two of at least 16 bytes",
            BuildError::CapabilitySpace => "no room for the capability",
            BuildError::MsixLayout => "MSI-X table or PBA does not fit its BAR",
        })
    }
}

/// An interrupt message as the function sends it (address and data as programmed by the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub addr: u64,
    pub data: u32,
}

/// What raising one of the function's vectors did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Send this message now.
    Send(MsiMessage),
    /// MSI-X vector masked: its pending bit is set and it is sent when unmasked.
    Pending,
    /// No message can be sent: MSI and MSI-X are off, bus mastering is off, or no such vector.
    Dropped,
}

#[derive(Debug, Clone, Copy, Default)]
struct MsixEntry {
    addr: u64,
    data: u32,
    control: u32,
}

#[derive(Clone)]
pub struct Function {
    cfg: [u8; HEADER_SIZE],
    bars: [Option<BarSpec>; 6],
    /// Config offset of the last capability added (0: none yet) and the next free offset.
    last_cap: u8,
    next_cap: u8,
    msi_cap: Option<u8>,
    msix_cap: Option<u8>,
    msix: Option<MsixLayout>,
    msix_table: [MsixEntry; MAX_MSIX_VECTORS],
    msix_pending: u64,
}

fn bar_offset(i: usize) -> usize {
    BAR0 + 4 * i
}

impl Function {
    /// A function with these IDs and class (base class, subclass, programming interface),
    /// no BARs and no capabilities, decoding nothing.
    pub fn new(vendor: u16, device: u16, revision: u8, class: [u8; 3]) -> Self {
        let mut f = Function {
            cfg: [0; HEADER_SIZE],
            bars: [None; 6],
            last_cap: 0,
            next_cap: 0x40,
            msi_cap: None,
            msix_cap: None,
            msix: None,
            msix_table: [MsixEntry {
                addr: 0,
                data: 0,
                control: MSIX_VECTOR_MASKED,
            }; MAX_MSIX_VECTORS],
            msix_pending: 0,
        };
        f.set16(VENDOR_ID, vendor);
        f.set16(DEVICE_ID, device);
        f.cfg[REVISION] = revision;
        f.cfg[CLASS_PROG_IF] = class[2];
        f.cfg[CLASS_PROG_IF + 1] = class[1];
        f.cfg[CLASS_PROG_IF + 2] = class[0];
        f.cfg[INTERRUPT_LINE] = 0xFF;
        f
    }

    pub fn set_subsystem(&mut self, vendor: u16, device: u16) {
        self.set16(SUBSYSTEM_VENDOR_ID, vendor);
        self.set16(SUBSYSTEM_ID, device);
    }

    fn get16(&self, o: usize) -> u16 {
        u16::from_le_bytes([self.cfg[o], self.cfg[o + 1]])
    }
    fn set16(&mut self, o: usize, v: u16) {
        self.cfg[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn get32(&self, o: usize) -> u32 {
        u32::from_le_bytes(self.cfg[o..o + 4].try_into().unwrap_or([0; 4]))
    }
    fn set32(&mut self, o: usize, v: u32) {
        self.cfg[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Declares BAR `index` (a 64-bit BAR also takes `index + 1`), placed at `base`.
    pub fn add_bar(&mut self, index: usize, spec: BarSpec, base: u64) -> Result<(), BuildError> {
        let wide = matches!(spec.kind, BarKind::Mem64 { .. });
        if index > 5
            || (wide && index > 4)
            || self.bar_taken(index)
            || (wide && self.bar_taken(index + 1))
        {
            return Err(BuildError::BarSlot);
        }
        if !spec.size.is_power_of_two() || spec.size < 16 || (!wide && spec.size > 1 << 31) {
            return Err(BuildError::BarSize);
        }
        self.bars[index] = Some(spec);
        let flags = match spec.kind {
            BarKind::Mem32 => 0,
            BarKind::Mem64 { prefetchable } => 0x4 | if prefetchable { 0x8 } else { 0 },
        };
        let base = base & !(spec.size - 1);
        self.set32(bar_offset(index), (base as u32 & !0xF) | flags);
        if wide {
            self.set32(bar_offset(index + 1), (base >> 32) as u32);
        }
        Ok(())
    }

    fn bar_taken(&self, index: usize) -> bool {
        self.bars[index].is_some()
            || (index > 0
                && matches!(
                    self.bars[index - 1],
                    Some(BarSpec {
                        kind: BarKind::Mem64 { .. },
                        ..
                    })
                ))
    }

    /// Appends a capability of `len` bytes with ID `id`; its config offset.
    fn add_capability(&mut self, id: u8, len: usize) -> Result<u8, BuildError> {
        let at = self.next_cap as usize;
        let end = (at + len).next_multiple_of(4);
        if end > HEADER_SIZE {
            return Err(BuildError::CapabilitySpace);
        }
        self.cfg[at] = id;
        self.cfg[at + 1] = 0;
        if self.last_cap == 0 {
            self.cfg[CAPABILITIES_PTR] = at as u8;
        } else {
            self.cfg[self.last_cap as usize + 1] = at as u8;
        }
        let status = self.get16(STATUS) | STATUS_CAPABILITIES;
        self.set16(STATUS, status);
        self.last_cap = at as u8;
        self.next_cap = end as u8;
        Ok(at as u8)
    }

    /// An MSI capability with 64-bit addresses and one vector.
    pub fn add_msi(&mut self) -> Result<(), BuildError> {
        let at = self.add_capability(CAP_ID_MSI, MSI_CAP_LEN)?;
        self.set16(at as usize + 2, MSI_CONTROL_64BIT);
        self.msi_cap = Some(at);
        Ok(())
    }

    /// An MSI-X capability with its table and PBA in a memory BAR declared before.
    pub fn add_msix(&mut self, layout: MsixLayout) -> Result<(), BuildError> {
        let bar = self
            .bars
            .get(layout.bar as usize)
            .copied()
            .flatten()
            .ok_or(BuildError::MsixLayout)?;
        let n = layout.vectors as u64;
        let fits = |off: u32, len: u64| off.is_multiple_of(8) && off as u64 + len <= bar.size;
        if n == 0
            || n as usize > MAX_MSIX_VECTORS
            || !fits(layout.table_offset, n * MSIX_ENTRY_SIZE)
            || !fits(layout.pba_offset, 8)
        {
            return Err(BuildError::MsixLayout);
        }
        let at = self.add_capability(CAP_ID_MSIX, MSIX_CAP_LEN)? as usize;
        self.set16(at + 2, layout.vectors - 1);
        self.set32(at + 4, layout.table_offset | layout.bar as u32);
        self.set32(at + 8, layout.pba_offset | layout.bar as u32);
        self.msix_cap = Some(at as u8);
        self.msix = Some(layout);
        Ok(())
    }

    pub fn command(&self) -> u16 {
        self.get16(COMMAND)
    }

    /// BAR `index`'s current base (the guest's last placement), whether or not it decodes.
    pub fn bar_base(&self, index: usize) -> Option<u64> {
        let spec = (*self.bars.get(index)?)?;
        let lo = (self.get32(bar_offset(index)) & !0xF) as u64;
        let hi = match spec.kind {
            BarKind::Mem64 { .. } => (self.get32(bar_offset(index + 1)) as u64) << 32,
            BarKind::Mem32 => 0,
        };
        Some(hi | lo)
    }

    /// The guest-physical range BAR `index` claims now: (base, size), if memory decoding is on.
    pub fn bar_window(&self, index: usize) -> Option<(u64, u64)> {
        let spec = (*self.bars.get(index)?)?;
        if self.command() & COMMAND_MEMORY == 0 {
            return None;
        }
        Some((self.bar_base(index)?, spec.size))
    }

    /// The BAR whose window holds `gpa`, and the offset into it.
    pub fn bar_at(&self, gpa: u64) -> Option<(usize, u64)> {
        (0..6).find_map(|i| {
            let (base, size) = self.bar_window(i)?;
            let off = gpa.checked_sub(base)?;
            (off < size).then_some((i, off))
        })
    }

    /// A configuration read of `size` (1, 2 or 4) bytes at `offset`.
    pub fn config_read(&self, offset: u16, size: u8) -> u32 {
        let o = offset as usize;
        if o + size as usize > HEADER_SIZE {
            return 0;
        }
        let mut b = [0u8; 4];
        b[..size as usize].copy_from_slice(&self.cfg[o..o + size as usize]);
        u32::from_le_bytes(b)
    }

    /// A configuration write of `size` bytes at `offset`; MSI-X vectors that an unmask made
    /// deliverable are returned as a bit set (see [`Function::message`]).
    pub fn config_write(&mut self, offset: u16, size: u8, value: u32) -> u64 {
        let o = offset as usize;
        if o + size as usize > HEADER_SIZE || !matches!(size, 1 | 2 | 4) {
            return 0;
        }
        let was_deliverable = self.msix_deliverable();
        // Apply byte by byte, each through the rule of the register it belongs to.
        for i in 0..size as usize {
            let byte = (value >> (8 * i)) as u8;
            self.write_byte(o + i, byte);
        }
        // BARs are applied per dword once all bytes are in (sizing writes all-ones).
        for bar in 0..6 {
            let start = bar_offset(bar);
            if o < start + 4 && start < o + size as usize {
                self.settle_bar_dword(bar);
            }
        }
        if !was_deliverable && self.msix_deliverable() {
            return self.take_unmasked_pending();
        }
        0
    }

    fn write_byte(&mut self, o: usize, v: u8) {
        match o {
            // Command: the writable bits.
            0x04 | 0x05 => {
                let mask = COMMAND_WRITABLE.to_le_bytes()[o - COMMAND];
                self.cfg[o] = v & mask;
            }
            // Status: RW1C error bits are never set here; reads stay as built.
            0x10..=0x27 => self.cfg[o] = v, // settled per dword below
            0x0C | 0x0D | 0x3C => self.cfg[o] = v, // cache line, latency timer, interrupt line
            _ => self.capability_byte(o, v),
        }
    }

    /// Turns the raw value written into BAR `index`'s dword into what the BAR holds: address
    /// bits above its size, its type flags (and for the upper half of a 64-bit BAR, the bits
    /// the size allows). A dword that belongs to no BAR reads zero.
    fn settle_bar_dword(&mut self, index: usize) {
        let o = bar_offset(index);
        let raw = self.get32(o);
        let upper_of = if index > 0 {
            match self.bars[index - 1] {
                Some(
                    s @ BarSpec {
                        kind: BarKind::Mem64 { .. },
                        ..
                    },
                ) => Some(s),
                _ => None,
            }
        } else {
            None
        };
        let settled = if let Some(spec) = upper_of {
            raw & (!(spec.size - 1) >> 32) as u32
        } else if let Some(spec) = self.bars[index] {
            let flags = match spec.kind {
                BarKind::Mem32 => 0,
                BarKind::Mem64 { prefetchable } => 0x4 | if prefetchable { 0x8 } else { 0 },
            };
            (raw & !(spec.size - 1) as u32 & !0xF) | flags
        } else {
            0
        };
        self.set32(o, settled);
    }

    /// Writes into the MSI or MSI-X capability (only their writable fields).
    fn capability_byte(&mut self, o: usize, v: u8) {
        if let Some(at) = self.msi_cap.map(usize::from) {
            if (at + 2..at + MSI_CAP_LEN).contains(&o) {
                let rel = o - at;
                let byte = match rel {
                    // Message control: only enable is writable (one vector: MME stays 0).
                    2 => (self.cfg[o] & !0x71) | (v & 0x01),
                    3 => self.cfg[o],
                    // Address low is dword aligned.
                    4 => v & 0xFC,
                    _ => v,
                };
                self.cfg[o] = byte;
                return;
            }
        }
        if let Some(at) = self.msix_cap.map(usize::from) {
            // Message control's upper byte: enable and function mask.
            if o == at + 3 {
                self.cfg[o] = (self.cfg[o] & 0x3F) | (v & 0xC0);
            }
        }
    }

    fn msi_control(&self) -> u16 {
        self.msi_cap.map_or(0, |at| self.get16(at as usize + 2))
    }

    fn msix_control(&self) -> u16 {
        self.msix_cap.map_or(0, |at| self.get16(at as usize + 2))
    }

    pub fn msix_enabled(&self) -> bool {
        self.msix_control() & MSIX_CONTROL_ENABLE != 0
    }

    pub fn msi_enabled(&self) -> bool {
        self.msi_control() & MSI_CONTROL_ENABLE != 0
    }

    /// MSI-X on, the function not masked and bus mastering on: unmasked vectors go out.
    fn msix_deliverable(&self) -> bool {
        let c = self.msix_control();
        c & MSIX_CONTROL_ENABLE != 0
            && c & MSIX_CONTROL_MASK_ALL == 0
            && self.command() & COMMAND_BUS_MASTER != 0
    }

    fn msix_vectors(&self) -> usize {
        self.msix.map_or(0, |m| m.vectors as usize)
    }

    /// Raises vector `v`: MSI-X when enabled (entry `v`), else MSI (vector 0 only).
    pub fn signal(&mut self, v: u16) -> Signal {
        let v = v as usize;
        if self.msix_enabled() {
            if v >= self.msix_vectors() || self.command() & COMMAND_BUS_MASTER == 0 {
                return Signal::Dropped;
            }
            if !self.msix_deliverable() || self.msix_table[v].control & MSIX_VECTOR_MASKED != 0 {
                self.msix_pending |= 1 << v;
                return Signal::Pending;
            }
            return Signal::Send(self.msix_message(v));
        }
        if self.msi_enabled() && v == 0 && self.command() & COMMAND_BUS_MASTER != 0 {
            if let Some(at) = self.msi_cap.map(usize::from) {
                let lo = self.get32(at + 4) as u64;
                let hi = self.get32(at + 8) as u64;
                let data = self.get16(at + 12) as u32;
                return Signal::Send(MsiMessage {
                    addr: hi << 32 | lo,
                    data,
                });
            }
        }
        Signal::Dropped
    }

    fn msix_message(&self, v: usize) -> MsiMessage {
        let e = &self.msix_table[v];
        MsiMessage {
            addr: e.addr,
            data: e.data,
        }
    }

    /// The message of MSI-X vector `v` as programmed now.
    pub fn message(&self, v: usize) -> Option<MsiMessage> {
        (v < self.msix_vectors()).then(|| self.msix_message(v))
    }

    /// Pending vectors that are unmasked now: cleared from the PBA and returned for sending.
    fn take_unmasked_pending(&mut self) -> u64 {
        if !self.msix_deliverable() {
            return 0;
        }
        let unmasked = (0..self.msix_vectors())
            .filter(|&v| self.msix_table[v].control & MSIX_VECTOR_MASKED == 0)
            .fold(0u64, |a, v| a | 1 << v);
        let fire = self.msix_pending & unmasked;
        self.msix_pending &= !fire;
        fire
    }

    /// Whether `(bar, offset)` is in the MSI-X table or PBA: 0 table, 1 PBA.
    fn msix_region(&self, bar: usize, off: u64) -> Option<(bool, u64)> {
        let m = self.msix?;
        if m.bar as usize != bar {
            return None;
        }
        let table_len = m.vectors as u64 * MSIX_ENTRY_SIZE;
        if let Some(rel) = off
            .checked_sub(m.table_offset as u64)
            .filter(|&r| r < table_len)
        {
            return Some((true, rel));
        }
        off.checked_sub(m.pba_offset as u64)
            .filter(|&r| r < 8)
            .map(|r| (false, r))
    }

    /// Whether an MMIO access at `(bar, offset)` is for the MSI-X table or PBA.
    pub fn is_msix(&self, bar: usize, off: u64) -> bool {
        self.msix_region(bar, off).is_some()
    }

    /// A read of the MSI-X table or PBA (4 or 8 bytes, naturally aligned, as the spec allows).
    pub fn msix_read(&self, bar: usize, off: u64, size: u8) -> Option<u64> {
        let (table, rel) = self.msix_region(bar, off)?;
        if !matches!(size, 4 | 8) || rel % size as u64 != 0 {
            return Some(u64::MAX >> (64 - 8 * size.clamp(1, 8) as u32));
        }
        if !table {
            let v = self.msix_pending >> (8 * rel);
            return Some(if size == 4 { v as u32 as u64 } else { v });
        }
        let e = &self.msix_table[(rel / MSIX_ENTRY_SIZE) as usize];
        let dword = |i: u64| -> u64 {
            match i {
                0 => e.addr as u32 as u64,
                1 => e.addr >> 32,
                2 => e.data as u64,
                _ => e.control as u64,
            }
        };
        let i = (rel % MSIX_ENTRY_SIZE) / 4;
        Some(if size == 4 {
            dword(i)
        } else {
            dword(i) | dword(i + 1) << 32
        })
    }

    /// A write of the MSI-X table (the PBA is read-only); vectors that became deliverable
    /// are returned as a bit set.
    pub fn msix_write(&mut self, bar: usize, off: u64, size: u8, value: u64) -> u64 {
        let Some((true, rel)) = self.msix_region(bar, off) else {
            return 0;
        };
        if !matches!(size, 4 | 8) || rel % size as u64 != 0 {
            return 0;
        }
        let v = (rel / MSIX_ENTRY_SIZE) as usize;
        let first = (rel % MSIX_ENTRY_SIZE) / 4;
        let count = size as u64 / 4;
        for k in 0..count {
            let d = (value >> (32 * k)) as u32;
            let e = &mut self.msix_table[v];
            match first + k {
                0 => e.addr = (e.addr & !0xFFFF_FFFF) | (d & !3) as u64,
                1 => e.addr = (e.addr & 0xFFFF_FFFF) | (d as u64) << 32,
                2 => e.data = d,
                _ => e.control = d & MSIX_VECTOR_MASKED,
            }
        }
        self.take_unmasked_pending()
    }
}
