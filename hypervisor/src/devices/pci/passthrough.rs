//! A physical PCI function given to a pre-launched VM (`pci_devs`): what the VM sees of its
//! configuration space. Reads and writes go to the hardware except where the hypervisor must
//! stay in charge:
//! - the BARs are virtual: the VM sees (and may move) them at its own guest-physical
//!   addresses, sized as the hardware's; the bus glue maps each window onto the physical BAR;
//! - the MSI capability is virtual: the VM programs its own address and data, the hardware gets
//!   the hypervisor's vector aimed at a pCPU of the VM, and the glue turns each interrupt into
//!   the VM's message;
//! - MSI-X is virtual: the VM's table lives here (the glue traps the table's pages of the
//!   BAR), the hardware's table holds the hypervisor's vectors, and the enable, function mask
//!   and per-entry masks the VM sets are mirrored to the hardware, which keeps the pending
//!   bits (the PBA stays the hardware's);
//! - the expansion ROM reads as absent, the interrupt line register is the VM's own.
//!
//! Only type-0 functions are accepted (a bridge would hand the VM other functions).
//! The model is a state machine over a [`PhysConfig`], host-tested with a fake one.

use super::function::{
    BarKind, BAR0, CAP_ID_MSI, CAP_ID_MSIX, COMMAND, COMMAND_IO, COMMAND_MEMORY, HEADER_TYPE,
    INTERRUPT_LINE,
};
use super::msi::{extract, for_each_capability, merge, VirtualMsi};
pub use super::msi::{GuestMessage, PhysConfig};
pub use super::msix::{MsixAccess, MAX_MSIX_ENTRIES};
use super::msix::{MsixCap, VirtualMsix};

/// The expansion ROM BAR of a type-0 header.
const ROM_BAR: u16 = 0x30;

/// What a physical BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtBarKind {
    Io,
    Mem(BarKind),
}

/// One implemented physical BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtBar {
    pub kind: PtBarKind,
    /// Where the hardware decodes it.
    pub host: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// No function answers at the address.
    Absent,
    /// A bridge or other non-type-0 header.
    NotType0,
}

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ProbeError::Absent => "no function answers there",
            ProbeError::NotType0 => "it is a bridge (only type-0 functions can be passed through)",
        })
    }
}

/// What a configuration write changed, for the glue to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteEffect {
    /// BAR windows (or memory/I/O decoding) changed: remap them.
    pub windows: bool,
    /// The VM's MSI (enable, address, data) changed: reprogram the hardware.
    pub msi: bool,
    /// The VM's MSI-X enable or function mask changed: mirror them to the hardware.
    pub msix: bool,
}

#[derive(Clone)]
pub struct PassthroughFunction {
    bars: [Option<PtBar>; 6],
    /// The dwords the VM reads at the BAR offsets.
    vbar: [u32; 6],
    msi: Option<VirtualMsi>,
    msix: Option<VirtualMsix>,
    interrupt_line: u8,
}

fn bar_offset(i: usize) -> u16 {
    (BAR0 + 4 * i) as u16
}

impl PassthroughFunction {
    /// Reads the function's header and sizes its BARs (with decoding off while sizing, then
    /// left off: the VM turns it on). `vbars` are the VM's BAR addresses from the scenario
    /// (0: keep the host address, as ACRN does).
    pub fn probe(phys: &impl PhysConfig, vbars: [u64; 6]) -> Result<Self, ProbeError> {
        let id = phys.read32(0);
        if id & 0xFFFF == 0xFFFF {
            return Err(ProbeError::Absent);
        }
        if (phys.read32(HEADER_TYPE as u16 & !3) >> 16) & 0x7F != 0 {
            return Err(ProbeError::NotType0);
        }
        let command = phys.read32(COMMAND as u16) & 0xFFFF;
        phys.write(
            COMMAND as u16,
            2,
            command & !u32::from(COMMAND_IO | COMMAND_MEMORY),
        );
        let mut bars = [None; 6];
        let mut i = 0;
        while i < 6 {
            let o = bar_offset(i);
            let orig = phys.read32(o);
            phys.write(o, 4, u32::MAX);
            let probe = phys.read32(o);
            phys.write(o, 4, orig);
            if orig & 1 == 1 {
                let mask = probe & !3 & 0xFFFF;
                if mask != 0 {
                    bars[i] = Some(PtBar {
                        kind: PtBarKind::Io,
                        host: u64::from(orig & !3),
                        size: u64::from((!mask & 0xFFFF) + 1),
                    });
                }
                i += 1;
                continue;
            }
            let wide = (orig >> 1) & 3 == 2 && i < 5;
            let (mut mask, mut host) = (u64::from(probe & !0xF), u64::from(orig & !0xF));
            if wide {
                let hi = bar_offset(i + 1);
                let orig_hi = phys.read32(hi);
                phys.write(hi, 4, u32::MAX);
                let probe_hi = phys.read32(hi);
                phys.write(hi, 4, orig_hi);
                mask |= u64::from(probe_hi) << 32;
                host |= u64::from(orig_hi) << 32;
            } else {
                mask |= 0xFFFF_FFFF_0000_0000;
            }
            if mask & 0xFFFF_FFF0 != 0 {
                let kind = if wide {
                    BarKind::Mem64 {
                        prefetchable: orig & 8 != 0,
                    }
                } else {
                    BarKind::Mem32
                };
                bars[i] = Some(PtBar {
                    kind: PtBarKind::Mem(kind),
                    host,
                    size: (!mask).wrapping_add(1),
                });
            }
            i += if wide { 2 } else { 1 };
        }
        let mut f = PassthroughFunction {
            bars,
            vbar: [0; 6],
            msi: None,
            msix: None,
            interrupt_line: 0xFF,
        };
        for (i, bar) in bars.iter().enumerate() {
            if let Some(b) = bar {
                let at = if vbars[i] & !0xF != 0 {
                    vbars[i] & !0xF
                } else {
                    b.host
                };
                f.place(i, at);
            }
        }
        f.walk_capabilities(phys);
        Ok(f)
    }

    fn walk_capabilities(&mut self, phys: &impl PhysConfig) {
        let bars = self.bars;
        let (mut msi, mut msix) = (None, None);
        for_each_capability(phys, |_, at, head| match head as u8 {
            CAP_ID_MSI => msi = Some(VirtualMsi::new(at, (head >> 16) as u16)),
            CAP_ID_MSIX if msix.is_none() => {
                let cap = MsixCap::read(phys, at, head);
                // A table in no memory BAR (or past it) cannot be trapped: no MSI-X.
                let fits = bars.get(cap.bar).copied().flatten().is_some_and(|b| {
                    matches!(b.kind, PtBarKind::Mem(_)) && cap.table_end() <= b.size
                });
                if fits {
                    msix = Some(VirtualMsix::new(cap));
                }
            }
            _ => {}
        });
        self.msi = msi;
        self.msix = msix;
    }

    /// Puts BAR `i` at guest-physical (or port) `at`, as the VM's BAR dword(s) read.
    fn place(&mut self, i: usize, at: u64) {
        let Some(b) = self.bars[i] else { return };
        let at = at & !(b.size - 1);
        match b.kind {
            PtBarKind::Io => self.vbar[i] = (at as u32 & 0xFFFC) | 1,
            PtBarKind::Mem(BarKind::Mem32) => self.vbar[i] = at as u32 & !0xF,
            PtBarKind::Mem(BarKind::Mem64 { prefetchable }) => {
                self.vbar[i] = (at as u32 & !0xF) | 0x4 | if prefetchable { 0x8 } else { 0 };
                self.vbar[i + 1] = (at >> 32) as u32;
            }
        }
    }

    /// Which BAR (and which half of it) the dword at BAR index `i` is.
    fn bar_of_dword(&self, i: usize) -> Option<(usize, bool)> {
        if self.bars[i].is_some() {
            return Some((i, false));
        }
        let lower = i.checked_sub(1)?;
        match self.bars[lower] {
            Some(PtBar {
                kind: PtBarKind::Mem(BarKind::Mem64 { .. }),
                ..
            }) => Some((lower, true)),
            _ => None,
        }
    }

    /// BAR `i` as the VM placed it: its guest address (or port) and the physical BAR.
    pub fn bar(&self, i: usize) -> Option<(u64, PtBar)> {
        let b = (*self.bars.get(i)?)?;
        let lo = u64::from(self.vbar[i] & if b.kind == PtBarKind::Io { !3 } else { !0xF });
        let hi = match b.kind {
            PtBarKind::Mem(BarKind::Mem64 { .. }) => u64::from(self.vbar[i + 1]) << 32,
            _ => 0,
        };
        Some((hi | lo, b))
    }

    /// A configuration read of `size` bytes at `offset` (below 256; the extended space reads
    /// as empty).
    pub fn config_read(&self, phys: &impl PhysConfig, offset: u16, size: u8) -> u32 {
        if offset >= 0x100 {
            return 0;
        }
        let aligned = offset & !3;
        let dword = match aligned {
            o if (bar_offset(0)..bar_offset(6)).contains(&o) => {
                let i = usize::from((o - bar_offset(0)) / 4);
                if self.bar_of_dword(i).is_some() {
                    self.vbar[i]
                } else {
                    0
                }
            }
            ROM_BAR => 0,
            o if o == INTERRUPT_LINE as u16 => {
                merge(phys.read32(o), 0, 1, u32::from(self.interrupt_line))
            }
            o => {
                let mut d = phys.read32(o);
                if let Some(m) = &self.msi {
                    d = m.read_dword(o, d);
                }
                if let Some(m) = &self.msix {
                    d = m.read_dword(o, d);
                }
                d
            }
        };
        extract(dword, offset, size)
    }

    /// A configuration write; what the glue must apply.
    pub fn config_write(
        &mut self,
        phys: &impl PhysConfig,
        offset: u16,
        size: u8,
        value: u32,
    ) -> WriteEffect {
        let mut effect = WriteEffect::default();
        if offset >= 0x100 || !matches!(size, 1 | 2 | 4) || !offset.is_multiple_of(u16::from(size))
        {
            return effect;
        }
        let aligned = offset & !3;
        if (bar_offset(0)..bar_offset(6)).contains(&aligned) {
            let i = usize::from((aligned - bar_offset(0)) / 4);
            if let Some((bar, upper)) = self.bar_of_dword(i) {
                let written = merge(self.vbar[i], offset, size, value);
                let Some(b) = self.bars[bar] else {
                    return effect;
                };
                let (base, _) = self.bar(bar).unwrap_or((0, b));
                let at = if upper {
                    (base & 0xFFFF_FFFF) | u64::from(written) << 32
                } else {
                    (base & !0xFFFF_FFFF) | u64::from(written)
                };
                self.place(bar, at);
                effect.windows = true;
            }
            return effect;
        }
        if aligned == ROM_BAR {
            return effect;
        }
        if offset == INTERRUPT_LINE as u16 {
            self.interrupt_line = value as u8;
            return effect;
        }
        if aligned == COMMAND as u16 && offset < COMMAND as u16 + 2 {
            effect.windows = true;
        }
        if let Some(m) = self.msi.as_mut().filter(|m| m.touches(offset, size)) {
            m.write(phys, offset, size, value);
            effect.msi = true;
            return effect;
        }
        // MSI-X's message control is the VM's (mirrored by the glue); the table and PBA
        // offsets are read-only.
        if let Some(m) = self.msix.as_mut().filter(|m| m.touches(offset, size)) {
            effect.msix = m.write_control(offset, size, value);
            return effect;
        }
        phys.write(offset, size, value);
        effect
    }

    /// The VM's MSI while it has it enabled.
    pub fn guest_message(&self) -> Option<GuestMessage> {
        self.msi.as_ref()?.message()
    }

    /// Programs the hardware's MSI: `host` (the hypervisor's address and vector) enabled, or
    /// disabled.
    pub fn program_msi(&self, phys: &impl PhysConfig, host: Option<(u32, u16)>) {
        if let Some(m) = &self.msi {
            m.program(phys, host);
        }
    }

    /// Stops the function as a VM reset leaves it: no decoding, no bus mastering, no MSI.
    pub fn quiesce(&self, phys: &impl PhysConfig) {
        self.program_msi(phys, None);
        self.program_msix(phys, false);
        let command = phys.read32(COMMAND as u16) & 0xFFFF;
        phys.write(COMMAND as u16, 2, command & !0x7);
    }

    /// The hardware's command register (decoding and bus mastering as the VM set them).
    pub fn command(&self, phys: &impl PhysConfig) -> u16 {
        phys.read32(COMMAND as u16) as u16
    }

    pub fn has_msi(&self) -> bool {
        self.msi.is_some()
    }

    /// How many MSI-X entries the hardware's table has (0: no MSI-X).
    pub fn msix_hw_entries(&self) -> usize {
        self.msix.as_ref().map_or(0, VirtualMsix::hw_entries)
    }

    /// How many MSI-X entries the VM gets (0: no MSI-X).
    pub fn msix_entries(&self) -> usize {
        self.msix.as_ref().map_or(0, VirtualMsix::entries)
    }

    /// See [`VirtualMsix::window`].
    pub fn msix_window(&self) -> Option<(usize, u64, u64)> {
        Some(self.msix.as_ref()?.window())
    }

    /// See [`VirtualMsix::access`].
    pub fn msix_access(&mut self, offset: u64, size: u8, value: Option<u64>) -> MsixAccess {
        match &mut self.msix {
            Some(m) => m.access(offset, size, value),
            None => MsixAccess::Hardware(offset),
        }
    }

    /// See [`VirtualMsix::message`].
    pub fn msix_message(&self, n: usize) -> Option<GuestMessage> {
        self.msix.as_ref()?.message(n)
    }

    /// See [`VirtualMsix::hardware_entry`].
    pub fn msix_hardware_entry(
        &self,
        n: usize,
        host: Option<(u32, u32)>,
    ) -> Option<(u64, [u32; 4])> {
        self.msix.as_ref()?.hardware_entry(n, host)
    }

    /// See [`VirtualMsix::program`].
    pub fn program_msix(&self, phys: &impl PhysConfig, on: bool) {
        if let Some(m) = &self.msix {
            m.program(phys, on);
        }
    }
}

/// PCI Express capability ID, and in it: Device Capabilities (FLR capable, bit 28), Device
/// Control (Initiate FLR, bit 15) and Device Status (Transactions Pending, bit 5).
const CAP_ID_PCIE: u8 = 0x10;
const PCIE_DEVCAP: u16 = 4;
const DEVCAP_FLR: u32 = 1 << 28;
const PCIE_DEVCTL: u16 = 8;
const DEVCTL_INITIATE_FLR: u32 = 1 << 15;
const DEVSTA_TRANSACTIONS_PENDING: u32 = 1 << (16 + 5);
/// Advanced Features capability (conventional PCI's FLR): AF capabilities in the header's
/// byte 3 (FLR capable, bit 1), AF control at +4 (Initiate FLR, bit 0) and AF status at +5
/// (Transactions Pending, bit 0).
const CAP_ID_AF: u8 = 0x13;
const AF_CAP_FLR: u32 = 1 << (24 + 1);
const AF_CONTROL: u16 = 4;
const AF_STATUS_TRANSACTIONS_PENDING: u32 = 1 << 8;
/// Power Management capability: PMCSR at +4 (power state in bits 1:0, No_Soft_Reset in bit 3:
/// set, a function keeps its state from D3hot to D0; PME_Status, bit 15, is write-1-to-clear).
const CAP_ID_PM: u8 = 0x01;
const PM_CSR: u16 = 4;
const PMCSR_STATE: u32 = 3;
const PMCSR_D3HOT: u32 = 3;
const PMCSR_NO_SOFT_RESET: u32 = 1 << 3;
const PMCSR_PME_STATUS: u32 = 1 << 15;

/// How a function was reset for its next owner, in the order of preference (Linux's too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetMethod {
    /// PCI Express Function Level Reset.
    Flr,
    /// The Advanced Features capability's FLR.
    AfFlr,
    /// D3hot and back to D0, where the function does not set No_Soft_Reset.
    PowerCycle,
}

impl ResetMethod {
    pub fn describe(self) -> &'static str {
        match self {
            ResetMethod::Flr => "FLR",
            ResetMethod::AfFlr => "Advanced Features FLR",
            ResetMethod::PowerCycle => "D3hot to D0",
        }
    }
}

/// Resets the function so its next owner finds none of its last owner's state (rings, DMA
/// addresses, interrupts): a PCIe FLR, else an Advanced Features FLR (each after up to 100 ms
/// for pending transactions, then 100 ms for the reset), else D3hot to D0 (10 ms each way).
/// Its BARs, interrupt line and command register are written back afterwards: they are the
/// platform's. The method used, or None when the function has none; `wait_ms` waits.
pub fn reset_function(phys: &impl PhysConfig, mut wait_ms: impl FnMut(u32)) -> Option<ResetMethod> {
    let (mut pcie, mut af, mut pm) = (None, None, None);
    for_each_capability(phys, |_, at, head| {
        let slot = match head as u8 {
            CAP_ID_PCIE => &mut pcie,
            CAP_ID_AF => &mut af,
            CAP_ID_PM => &mut pm,
            _ => return,
        };
        slot.get_or_insert((at, head));
    });
    // The method and where its capability is.
    let (method, at) = if let Some((at, _)) =
        pcie.filter(|&(at, _)| phys.read32(at + PCIE_DEVCAP) & DEVCAP_FLR != 0)
    {
        (ResetMethod::Flr, at)
    } else if let Some((at, _)) = af.filter(|&(_, head)| head & AF_CAP_FLR != 0) {
        (ResetMethod::AfFlr, at)
    } else if let Some((at, _)) =
        pm.filter(|&(at, _)| phys.read32(at + PM_CSR) & PMCSR_NO_SOFT_RESET == 0)
    {
        (ResetMethod::PowerCycle, at)
    } else {
        return None;
    };
    let saved: [u32; 16] = core::array::from_fn(|i| phys.read32(4 * i as u16));
    let mut drain = |pending: &dyn Fn() -> bool| {
        for _ in 0..10 {
            if !pending() {
                break;
            }
            wait_ms(10);
        }
    };
    match method {
        ResetMethod::Flr => {
            drain(&|| phys.read32(at + PCIE_DEVCTL) & DEVSTA_TRANSACTIONS_PENDING != 0);
            let control = phys.read32(at + PCIE_DEVCTL) & 0xFFFF;
            phys.write(at + PCIE_DEVCTL, 2, control | DEVCTL_INITIATE_FLR);
            wait_ms(100);
        }
        ResetMethod::AfFlr => {
            drain(&|| phys.read32(at + AF_CONTROL) & AF_STATUS_TRANSACTIONS_PENDING != 0);
            phys.write(at + AF_CONTROL, 1, 1);
            wait_ms(100);
        }
        ResetMethod::PowerCycle => {
            let csr = phys.read32(at + PM_CSR) & 0xFFFF & !PMCSR_PME_STATUS & !PMCSR_STATE;
            phys.write(at + PM_CSR, 2, csr | PMCSR_D3HOT);
            wait_ms(10);
            phys.write(at + PM_CSR, 2, csr);
            wait_ms(10);
        }
    }
    for i in 0..6 {
        phys.write(bar_offset(i), 4, saved[4 + i]);
    }
    phys.write(INTERRUPT_LINE as u16, 1, saved[15] & 0xFF);
    phys.write(COMMAND as u16, 2, saved[1] & 0xFFFF);
    Some(method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// A function with BAR0 a 128 KiB 32-bit MMIO BAR, BAR1 unimplemented, BAR2 32 I/O ports,
    /// BAR3+4 a 16 KiB 64-bit BAR; capabilities MSI (64-bit) at 0x50, MSI-X at 0x70, PM at
    /// 0x90.
    struct Fake {
        cfg: RefCell<[u32; 64]>,
        sizes: [u64; 6],
        writes: RefCell<u32>,
    }

    impl Fake {
        fn new() -> Self {
            let mut c = [0u32; 64];
            c[0] = 0x10D3_8086;
            c[1] = 0x0010_0007; // capabilities; I/O, memory, bus master on
            c[3] = 0x0000_0000;
            c[4] = 0xFEB8_0000;
            c[6] = 0xC041;
            c[7] = 0xFEBD_0004;
            c[8] = 0x0000_0000;
            c[13] = 0x50;
            c[15] = 0x0000_010B;
            c[0x50 / 4] = 0x0080_7005; // MSI, next 0x70, 64-bit
            c[0x70 / 4] = 0x0004_9011; // MSI-X, next 0x90, 5 vectors
            c[0x74 / 4] = 0x0000_0003;
            c[0x90 / 4] = 0x0003_0001; // PM, last
            Fake {
                cfg: RefCell::new(c),
                sizes: [0x2_0000, 0, 0x20, 0x4000, 0, 0],
                writes: RefCell::new(0),
            }
        }
        fn dword(&self, o: u16) -> u32 {
            self.cfg.borrow()[usize::from(o / 4)]
        }
    }

    impl PhysConfig for Fake {
        fn read32(&self, offset: u16) -> u32 {
            self.cfg.borrow()[usize::from(offset / 4) % 64]
        }
        fn write(&self, offset: u16, size: u8, value: u32) {
            *self.writes.borrow_mut() += 1;
            let i = usize::from(offset / 4) % 64;
            let mut c = self.cfg.borrow_mut();
            let mut v = merge(c[i], offset, size, value);
            if (4..10).contains(&i) {
                let bar = i - 4;
                let flags = c[i] & if c[4 + bar.min(5)] & 1 == 1 { 3 } else { 0xF };
                v = match (bar, self.sizes[bar]) {
                    // The upper half of the 64-bit BAR3: all address bits writable.
                    (4, _) => v,
                    (_, 0) => 0,
                    (_, s) => (v & !(s as u32 - 1)) | flags,
                };
            }
            c[i] = v;
        }
    }

    /// The header a reset keeps: BARs, interrupt line, command register.
    fn header(f: &Fake) -> (Vec<u32>, u32, u32) {
        (
            (4..10).map(|i| f.read32(4 * i)).collect(),
            f.read32(0x3C) & 0xFF,
            f.read32(4) & 0xFFFF,
        )
    }

    #[test]
    fn functions_are_reset_the_best_way_they_have_and_keep_their_header() {
        // PM (at 0x90) without No_Soft_Reset only: D3hot, then D0.
        let f = Fake::new();
        let before = header(&f);
        f.cfg.borrow_mut()[0x94 / 4] = 0x8000; // PME_Status pending, D0
        let mut waited = 0;
        assert_eq!(
            reset_function(&f, |ms| waited += ms),
            Some(ResetMethod::PowerCycle)
        );
        assert_eq!(waited, 20);
        assert_eq!(f.dword(0x94) & PMCSR_STATE, 0, "back in D0");
        assert_eq!(header(&f), before);
        // No_Soft_Reset: a power cycle would not reset it, and nothing else can.
        f.cfg.borrow_mut()[0x94 / 4] = PMCSR_NO_SOFT_RESET;
        let writes = *f.writes.borrow();
        assert_eq!(reset_function(&f, |_| {}), None);
        assert_eq!(*f.writes.borrow(), writes, "nothing written");
        // An Advanced Features capability (at 0xB0) that can FLR: preferred.
        {
            let mut c = f.cfg.borrow_mut();
            c[0x90 / 4] = (c[0x90 / 4] & !0xFF00) | 0xB0 << 8;
            c[0xB0 / 4] = 0x0300_0613; // TP and FLR capable, length 6, last
        }
        let mut waited = 0;
        assert_eq!(
            reset_function(&f, |ms| waited += ms),
            Some(ResetMethod::AfFlr)
        );
        assert_eq!((waited, f.dword(0xB4) & 1), (100, 1));
        assert_eq!(header(&f), before);
        // A PCIe capability (at 0xA0) that can FLR: preferred to both, after its transactions
        // drained.
        {
            let mut c = f.cfg.borrow_mut();
            c[0x90 / 4] = (c[0x90 / 4] & !0xFF00) | 0xA0 << 8;
            c[0xA0 / 4] = 0x0002_B010;
            c[0xA4 / 4] = DEVCAP_FLR;
            c[0xA8 / 4] = 0x0020_2810; // transactions pending (never drain here)
        }
        let mut waited = 0;
        assert_eq!(
            reset_function(&f, |ms| waited += ms),
            Some(ResetMethod::Flr)
        );
        assert_eq!(
            waited,
            100 + 100,
            "100 ms for transactions, 100 ms for the reset"
        );
        assert_ne!(f.read32(0xA8) & DEVCTL_INITIATE_FLR, 0);
        assert_eq!(header(&f), before);
        // No capability list at all: nothing.
        let f = Fake::new();
        f.cfg.borrow_mut()[1] &= !0x0010_0000;
        assert_eq!(reset_function(&f, |_| {}), None);
        assert_eq!(*f.writes.borrow(), 0);
    }

    fn probe(f: &Fake) -> PassthroughFunction {
        PassthroughFunction::probe(f, [0x8000_0000, 0, 0, 0x40_0000_0000, 0, 0]).unwrap()
    }

    #[test]
    fn bars_are_sized_and_placed_where_the_scenario_says() {
        let f = Fake::new();
        let p = probe(&f);
        let (gpa, b) = p.bar(0).unwrap();
        assert_eq!((gpa, b.host, b.size), (0x8000_0000, 0xFEB8_0000, 0x2_0000));
        assert_eq!(b.kind, PtBarKind::Mem(BarKind::Mem32));
        // An I/O BAR without a scenario address keeps the host's ports.
        let (port, io) = p.bar(2).unwrap();
        assert_eq!(
            (port, io.host, io.size, io.kind),
            (0xC040, 0xC040, 0x20, PtBarKind::Io)
        );
        let (gpa3, b3) = p.bar(3).unwrap();
        assert_eq!(
            (gpa3, b3.host, b3.size),
            (0x40_0000_0000, 0xFEBD_0000, 0x4000)
        );
        assert!(p.bar(1).is_none() && p.bar(4).is_none());
        // Sizing restored the hardware's BARs and left decoding off.
        assert_eq!(f.dword(0x10), 0xFEB8_0000);
        assert_eq!(f.dword(0x04) & 3, 0);
        // The VM reads its own addresses, and sizes them like hardware.
        assert_eq!(p.config_read(&f, 0x10, 4), 0x8000_0000);
        assert_eq!(p.config_read(&f, 0x1C, 4), 0x0000_0004);
        assert_eq!(p.config_read(&f, 0x20, 4), 0x40);
        assert_eq!(p.config_read(&f, 0x14, 4), 0);
        let mut p = p;
        assert!(p.config_write(&f, 0x10, 4, u32::MAX).windows);
        assert_eq!(p.config_read(&f, 0x10, 4), 0xFFFE_0000);
        p.config_write(&f, 0x10, 4, 0x9000_0000);
        assert_eq!(p.bar(0).unwrap().0, 0x9000_0000);
        // The hardware BAR never moved.
        assert_eq!(f.dword(0x10), 0xFEB8_0000);
        p.config_write(&f, 0x1C, 4, u32::MAX);
        p.config_write(&f, 0x20, 4, u32::MAX);
        assert_eq!(p.config_read(&f, 0x1C, 4), 0xFFFF_C004);
        assert_eq!(p.config_read(&f, 0x20, 4), 0xFFFF_FFFF);
        assert_eq!(p.bar(3).unwrap().0, 0xFFFF_FFFF_FFFF_C000);
        // No expansion ROM.
        assert_eq!(p.config_read(&f, 0x30, 4), 0);
    }

    #[test]
    fn msix_is_virtual_and_mirrored_to_the_hardware() {
        let f = Fake::new();
        let mut p = probe(&f);
        // Listed after MSI, 5 entries in BAR3 at offset 0, off.
        assert_eq!(p.config_read(&f, 0x51, 1), 0x70);
        assert_eq!(p.config_read(&f, 0x70, 4), 0x0004_9011);
        assert_eq!(p.msix_entries(), 5);
        assert_eq!(p.msix_window(), Some((3, 0, 0x1000)));
        // Entry 1 to vector 0x61 of APIC 1, unmasked last.
        assert_eq!(
            p.msix_access(0x10, 4, Some(0xFEE0_1000)),
            MsixAccess::Table(0)
        );
        assert_eq!(p.msix_access(0x14, 4, Some(0)), MsixAccess::Table(0));
        assert_eq!(p.msix_access(0x18, 4, Some(0x61)), MsixAccess::Table(0));
        assert_eq!(p.msix_access(0x1C, 4, Some(0)), MsixAccess::EntryChanged(1));
        assert_eq!(p.msix_access(0x10, 8, None), MsixAccess::Table(0xFEE0_1000));
        assert_eq!(p.msix_access(0x1C, 4, None), MsixAccess::Table(0));
        // Entries start masked.
        assert_eq!(p.msix_access(0x0C, 4, None), MsixAccess::Table(1));
        // Off: no message yet, and the hardware untouched until the glue mirrors it.
        assert_eq!(p.msix_message(1), None);
        let effect = p.config_write(&f, 0x72, 2, 0x8000);
        assert!(effect.msix && !effect.msi);
        assert_eq!(f.dword(0x70) >> 31, 0);
        assert_eq!(p.config_read(&f, 0x72, 2), 0x8004);
        assert_eq!(
            p.msix_message(1),
            Some(GuestMessage {
                addr: 0xFEE0_1000,
                data: 0x61
            })
        );
        assert_eq!(p.msix_message(0), None, "entry 0 is masked");
        assert_eq!(p.msix_message(5), None);
        p.program_msix(&f, true);
        assert_eq!(f.dword(0x70) >> 30, 0b10);
        // The hardware's entries: the hypervisor's message, masked as the VM masks them.
        let host = Some((0xFEE0_0000, 0xE4));
        assert_eq!(
            p.msix_hardware_entry(1, host),
            Some((0x10, [0xFEE0_0000, 0, 0xE4, 0]))
        );
        assert_eq!(
            p.msix_hardware_entry(0, host),
            Some((0x00, [0xFEE0_0000, 0, 0xE4, 1]))
        );
        assert_eq!(p.msix_hardware_entry(2, None), Some((0x20, [0, 0, 0, 1])));
        assert_eq!(p.msix_hardware_entry(5, host), None);
        // The function mask silences every entry.
        p.config_write(&f, 0x70, 4, 0xC000_0000 | p.config_read(&f, 0x70, 4));
        assert_eq!(p.msix_message(1), None);
        p.program_msix(&f, true);
        assert_eq!(f.dword(0x70) >> 30, 0b11);
        // The table offset registers stay the hardware's; the PBA is the hardware's.
        p.config_write(&f, 0x74, 4, 0x1234_5678);
        assert_eq!(f.dword(0x74), 3);
        assert_eq!(
            p.config_read(&f, 0x72, 2),
            0xC004,
            "still enabled and masked"
        );
        p.config_write(&f, 0x73, 1, 0x80);
        assert_eq!(p.msix_message(1).map(|m| m.data), Some(0x61));
        assert_eq!(p.msix_access(0x800, 4, None), MsixAccess::Hardware(0x800));
        p.quiesce(&f);
        assert_eq!(f.dword(0x70) >> 30, 0);
    }

    #[test]
    fn a_large_msix_table_is_announced_smaller() {
        let f = Fake::new();
        f.cfg.borrow_mut()[0x70 / 4] = 0x001F_9011; // 32 entries
        f.cfg.borrow_mut()[0x74 / 4] = 0x0000_0803; // at 0x800 in BAR3
        let mut p = probe(&f);
        assert_eq!(p.msix_entries(), MAX_MSIX_ENTRIES);
        assert_eq!(
            p.config_read(&f, 0x72, 2) & 0x7FF,
            MAX_MSIX_ENTRIES as u32 - 1
        );
        assert_eq!(p.msix_window(), Some((3, 0, 0x1000)));
        // Entry 20 reads masked and ignores writes.
        let e20 = 0x800 + 20 * 16;
        assert_eq!(p.msix_access(e20 + 12, 4, None), MsixAccess::Table(1));
        assert_eq!(
            p.msix_access(e20, 4, Some(0xFEE0_0000)),
            MsixAccess::Table(0)
        );
        assert_eq!(p.msix_access(e20, 4, None), MsixAccess::Table(0));
        // Below the table: the hardware's.
        assert_eq!(p.msix_access(0x10, 4, None), MsixAccess::Hardware(0x10));
        // A table that does not fit its BAR is not offered.
        f.cfg.borrow_mut()[0x74 / 4] = 0x0000_3F03;
        assert_eq!(probe(&f).msix_entries(), 0);
    }

    #[test]
    fn msi_is_virtual_and_the_hardware_gets_the_hypervisor_s_message() {
        let f = Fake::new();
        let mut p = probe(&f);
        assert!(p.has_msi());
        assert_eq!(p.guest_message(), None);
        assert!(p.config_write(&f, 0x54, 4, 0xFEE0_1000).msi);
        p.config_write(&f, 0x58, 4, 0);
        p.config_write(&f, 0x5C, 2, 0x41);
        // Enabled with a dword write at the capability's start, as drivers do.
        let head = p.config_read(&f, 0x50, 4);
        p.config_write(&f, 0x50, 4, head | 1 << 16);
        assert_eq!(
            (f.dword(0x50) >> 16) & 1,
            0,
            "the hardware is not enabled by the VM"
        );
        assert_eq!(
            p.guest_message(),
            Some(GuestMessage {
                addr: 0xFEE0_1000,
                data: 0x41
            })
        );
        assert_eq!(p.config_read(&f, 0x54, 4), 0xFEE0_1000);
        assert_eq!(p.config_read(&f, 0x5C, 2), 0x41);
        // 64-bit capable is the hardware's; enable is the VM's.
        assert_eq!(p.config_read(&f, 0x52, 2), 0x0081);
        // The hardware has not been touched until the glue programs it.
        assert_eq!(f.dword(0x54), 0);
        p.program_msi(&f, Some((0xFEE0_0000, 0xE3)));
        assert_eq!(f.dword(0x54), 0xFEE0_0000);
        assert_eq!(f.dword(0x5C) & 0xFFFF, 0xE3);
        assert_eq!((f.dword(0x50) >> 16) & 1, 1);
        p.quiesce(&f);
        assert_eq!((f.dword(0x50) >> 16) & 1, 0);
        assert_eq!(f.dword(0x04) & 7, 0);
    }

    #[test]
    fn bridges_and_absent_functions_are_refused() {
        let f = Fake::new();
        f.cfg.borrow_mut()[3] = 0x0001_0000;
        assert_eq!(
            PassthroughFunction::probe(&f, [0; 6]).err(),
            Some(ProbeError::NotType0)
        );
        f.cfg.borrow_mut()[0] = u32::MAX;
        assert_eq!(
            PassthroughFunction::probe(&f, [0; 6]).err(),
            Some(ProbeError::Absent)
        );
    }

    #[test]
    fn arbitrary_config_traffic_never_panics() {
        let f = Fake::new();
        let mut p = probe(&f);
        let mut x: u32 = 0x1234_5678;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let off = (x >> 8) as u16 % 0x1100;
            let size = [1u8, 2, 4][(x % 3) as usize];
            if x & 0x10_0000 != 0 {
                p.config_write(&f, off, size, x);
            } else {
                p.config_read(&f, off, size);
            }
            let _ = p.bar((x % 7) as usize);
            let _ = p.guest_message();
            let value = (x & 0x20_0000 != 0).then_some(u64::from(x) << 7);
            let _ = p.msix_access(
                u64::from(x >> 4) % 0x1100,
                [1u8, 2, 4, 8][(x % 4) as usize],
                value,
            );
            let _ = p.msix_message((x % 10) as usize);
            let _ = p.msix_hardware_entry((x % 40) as usize, Some((x, x)));
        }
    }
}
