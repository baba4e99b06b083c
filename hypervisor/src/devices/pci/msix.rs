//! A function's MSI-X as a VM sees it when the hypervisor keeps the hardware's table: the
//! VM's table (up to [`MAX_MSIX_ENTRIES`] entries) lives here, its accesses trapped by the
//! glue; the hardware's table holds the hypervisor's messages; the VM's enable, function mask
//! and per-entry masks are mirrored to the hardware, which therefore keeps the pending bits
//! (the PBA stays the hardware's). Used for pass-through functions and for the Service VM's
//! own devices.

use super::msi::{merge, GuestMessage, PhysConfig};

const CONTROL_ENABLE: u16 = 1 << 15;
const CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const ENTRY_BYTES: u64 = 16;
const VECTOR_MASKED: u32 = 1;
const PAGE: u64 = 0x1000;
/// Table entries remapped per function; a larger table is announced this small.
pub const MAX_MSIX_ENTRIES: usize = 8;

/// Where a function's MSI-X capability and table are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCap {
    pub at: u16,
    /// The BAR holding the table, and the table's offset in it.
    pub bar: usize,
    pub offset: u64,
    /// The hardware's table size, and how many entries the VM sees (at most
    /// [`MAX_MSIX_ENTRIES`]).
    pub hw_entries: usize,
    pub entries: usize,
}

impl MsixCap {
    /// The capability at `at`, whose first dword is `head`.
    pub fn read(phys: &impl PhysConfig, at: u16, head: u32) -> Self {
        let table = phys.read32(at + 4);
        let hw_entries = ((head >> 16) & 0x7FF) as usize + 1;
        MsixCap {
            at,
            bar: (table & 7) as usize,
            offset: u64::from(table & !7),
            hw_entries,
            entries: hw_entries.min(MAX_MSIX_ENTRIES),
        }
    }

    /// The end of the hardware's table, as an offset into its BAR.
    pub fn table_end(&self) -> u64 {
        self.offset + self.hw_entries as u64 * ENTRY_BYTES
    }
}

/// One MSI-X table entry as the VM programmed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GuestMsixEntry {
    addr: u64,
    data: u32,
    control: u32,
}

const MASKED_ENTRY: GuestMsixEntry = GuestMsixEntry {
    addr: 0,
    data: 0,
    control: VECTOR_MASKED,
};

/// What a VM access to the trapped MSI-X pages does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsixAccess {
    /// Served from the VM's table: the value read (writes: 0).
    Table(u64),
    /// Entry `n` changed: the glue mirrors its mask to the hardware.
    EntryChanged(usize),
    /// Not the table (the PBA or other registers on its pages): the hardware's, at this
    /// offset into the BAR.
    Hardware(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualMsix {
    cap: MsixCap,
    /// The VM's enable and function mask.
    control: u16,
    table: [GuestMsixEntry; MAX_MSIX_ENTRIES],
}

impl VirtualMsix {
    pub fn new(cap: MsixCap) -> Self {
        VirtualMsix {
            cap,
            control: 0,
            table: [MASKED_ENTRY; MAX_MSIX_ENTRIES],
        }
    }

    pub fn cap(&self) -> MsixCap {
        self.cap
    }

    pub fn hw_entries(&self) -> usize {
        self.cap.hw_entries
    }

    pub fn entries(&self) -> usize {
        self.cap.entries
    }

    /// The capability's first dword as the VM reads it (`hw`: the hardware's) when `aligned`
    /// is its offset: the table size it may use, its own enable and function mask.
    pub fn read_dword(&self, aligned: u16, hw: u32) -> u32 {
        if aligned != self.cap.at {
            return hw;
        }
        let reserved = (hw >> 16) as u16 & 0x3800;
        let control = reserved | (self.cap.entries as u16 - 1) | self.control;
        merge(hw, aligned + 2, 2, u32::from(control))
    }

    /// Whether a configuration write touches the capability (its 12 bytes).
    pub fn touches(&self, offset: u16, size: u8) -> bool {
        offset + u16::from(size) > self.cap.at && offset < self.cap.at + 12
    }

    /// A configuration write to the capability: message control is the VM's (the glue
    /// mirrors it), the table and PBA offsets are read-only. True if enable or function mask
    /// changed.
    pub fn write_control(&mut self, offset: u16, size: u8, value: u32) -> bool {
        // Enable and function mask are bits 15 and 14: the byte at the capability's offset 3.
        let mut control = self.control;
        for k in 0..u16::from(size) {
            if offset + k == self.cap.at + 3 {
                let byte = (value >> (8 * k)) as u16 & 0xFF;
                control = (byte << 8) & (CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
            }
        }
        let changed = control != self.control;
        self.control = control;
        changed
    }

    /// The pages of the table's BAR that hold the table: (BAR, offset into it, length). The
    /// glue traps them.
    pub fn window(&self) -> (usize, u64, u64) {
        let start = self.cap.offset & !(PAGE - 1);
        let end = self.cap.table_end().next_multiple_of(PAGE);
        (self.cap.bar, start, end - start)
    }

    /// A VM access of `size` bytes at `offset` into the table's BAR, inside the window.
    pub fn access(&mut self, offset: u64, size: u8, value: Option<u64>) -> MsixAccess {
        let m = self.cap;
        let Some(rel) = offset
            .checked_sub(m.offset)
            .filter(|r| *r < m.hw_entries as u64 * ENTRY_BYTES)
        else {
            return MsixAccess::Hardware(offset);
        };
        let (n, field) = ((rel / ENTRY_BYTES) as usize, rel % ENTRY_BYTES);
        // Dword and aligned qword accesses, as the PCI spec allows; entries beyond what the
        // VM was told read as masked and ignore writes.
        let aligned = match size {
            4 => field % 4 == 0,
            8 => field % 8 == 0,
            _ => false,
        };
        if n >= m.entries || !aligned {
            let masked = if field == 12 { VECTOR_MASKED } else { 0 };
            return MsixAccess::Table(if value.is_none() && aligned {
                u64::from(masked)
            } else {
                0
            });
        }
        let e = &mut self.table[n];
        let mut dwords = [e.addr as u32, (e.addr >> 32) as u32, e.data, e.control];
        let first = (field / 4) as usize;
        let count = usize::from(size / 4);
        match value {
            None => {
                let mut v = 0u64;
                for k in 0..count {
                    v |= u64::from(dwords[first + k]) << (32 * k);
                }
                MsixAccess::Table(v)
            }
            Some(v) => {
                for k in 0..count {
                    dwords[first + k] = (v >> (32 * k)) as u32;
                }
                let before = e.control & VECTOR_MASKED;
                *e = GuestMsixEntry {
                    addr: u64::from(dwords[0] & !3) | u64::from(dwords[1]) << 32,
                    data: dwords[2],
                    control: dwords[3] & VECTOR_MASKED,
                };
                if e.control != before {
                    MsixAccess::EntryChanged(n)
                } else {
                    MsixAccess::Table(0)
                }
            }
        }
    }

    /// Whether MSI-X is enabled and the function not masked.
    pub fn enabled(&self) -> bool {
        self.control & (CONTROL_ENABLE | CONTROL_FUNCTION_MASK) == CONTROL_ENABLE
    }

    /// The message entry `n` sends now: the VM's address and data, unless MSI-X is off or
    /// the function or the entry is masked.
    pub fn message(&self, n: usize) -> Option<GuestMessage> {
        if n >= self.cap.entries {
            return None;
        }
        let e = self.table[n];
        (self.enabled() && e.control & VECTOR_MASKED == 0).then_some(GuestMessage {
            addr: e.addr,
            data: e.data,
        })
    }

    /// Whether the VM masks entry `n` (the hardware's entry is masked likewise, so the
    /// hardware holds the interrupt pending in its PBA).
    pub fn entry_masked(&self, n: usize) -> bool {
        self.table
            .get(n)
            .is_none_or(|e| e.control & VECTOR_MASKED != 0)
    }

    /// The hardware's table entry `n`: where in the table's BAR it is, and the dwords to
    /// write there (the hypervisor's `host` message; masked as the VM masks it, or always
    /// without a host message).
    pub fn hardware_entry(&self, n: usize, host: Option<(u32, u32)>) -> Option<(u64, [u32; 4])> {
        let m = self.cap;
        if n >= m.hw_entries {
            return None;
        }
        let at = m.offset + n as u64 * ENTRY_BYTES;
        Some(match host {
            Some((addr, data)) if n < m.entries => (
                at,
                [
                    addr,
                    0,
                    data,
                    u32::from(self.entry_masked(n)) * VECTOR_MASKED,
                ],
            ),
            _ => (at, [0, 0, 0, VECTOR_MASKED]),
        })
    }

    /// Mirrors the VM's enable and function mask to the hardware (`on`: false turns MSI-X
    /// off whatever the VM set).
    pub fn program(&self, phys: &impl PhysConfig, on: bool) {
        let at = self.cap.at;
        let keep = (phys.read32(at) >> 16) as u16 & !(CONTROL_ENABLE | CONTROL_FUNCTION_MASK);
        let control = if on { self.control } else { 0 };
        phys.write(at + 2, 2, u32::from(keep | control));
    }
}
