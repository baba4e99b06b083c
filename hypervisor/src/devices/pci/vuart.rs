//! ACRN's PCI vUART: a 16550 behind a MosChip MCS9900 function (9710:9900, subsystem
//! a000:1000, class 07/00/02), what Linux's 8250_pci binds to. BAR0 is a 4 KiB 32-bit memory
//! window whose first 8 bytes are the UART registers (one byte apart, as in ACRN's
//! vmcs9900 and Linux's `pbn_b0_1_115200` entry for these IDs); BAR1 holds the MSI-X table
//! (one vector) and PBA. The UART's interrupt output goes out as that vector, on its rising
//! edge. The UART itself lives with the link or console it belongs to; this is the function.

use super::function::{BarKind, BarSpec, BuildError, Function, MsixLayout, Signal};

pub const VENDOR_ID: u16 = 0x9710;
pub const DEVICE_ID: u16 = 0x9900;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0xA000;
pub const SUBSYSTEM_ID: u16 = 0x1000;
/// Simple communication controller, serial, 16550-compatible.
pub const CLASS: [u8; 3] = [0x07, 0x00, 0x02];
pub const REGISTERS_SIZE: u64 = 4096;
pub const MSIX_BAR_SIZE: u64 = 4096;
const PBA_OFFSET: u32 = 0x800;
/// UART registers in BAR0 (offsets 0-7).
const UART_REGISTERS: u64 = 8;

pub const REGISTERS_BAR: usize = 0;
pub const MSIX_BAR: usize = 1;

/// The slot ACRN's vUART number `vuart_idx` (HC_ADD_VDEV's argument, acrn-dm's
/// `uart,vuart_idx:N`) takes among a VM's `links` PCI vUART slots and the console's after them:
/// 0 is the console, `n` the VM's n-th connection; `None` unless that vUART is a PCI one.
pub fn slot_of(
    vuart_idx: u32,
    console_is_pci: bool,
    link_is_pci: impl Fn(usize) -> bool,
    links: usize,
) -> Option<usize> {
    match vuart_idx {
        0 => console_is_pci.then_some(links),
        n => {
            let link = n as usize - 1;
            (link < links && link_is_pci(link)).then_some(link)
        }
    }
}

#[derive(Clone)]
pub struct PciVuart {
    pub function: Function,
    /// The UART's interrupt output as last seen: a message goes out when it rises.
    line: bool,
}

impl PciVuart {
    /// The function with BAR0 and BAR1 at `bars` (guest-physical, as allocated).
    pub fn new(bars: [u64; 2]) -> Result<Self, BuildError> {
        let mut f = Function::new(VENDOR_ID, DEVICE_ID, 0, CLASS);
        f.set_subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID);
        let mem32 = |size| BarSpec {
            kind: BarKind::Mem32,
            size,
        };
        f.add_bar(REGISTERS_BAR, mem32(REGISTERS_SIZE), bars[0])?;
        f.add_bar(MSIX_BAR, mem32(MSIX_BAR_SIZE), bars[1])?;
        f.add_msix(MsixLayout {
            bar: MSIX_BAR as u8,
            table_offset: 0,
            pba_offset: PBA_OFFSET,
            vectors: 1,
        })?;
        Ok(PciVuart {
            function: f,
            line: false,
        })
    }

    /// The UART register an access at `gpa` is for, if it hits BAR0's register bytes. The
    /// rest of BAR0 is not a register: it reads zero and ignores writes.
    pub fn register_at(&self, gpa: u64) -> Option<Option<u16>> {
        match self.function.bar_at(gpa)? {
            (REGISTERS_BAR, off) => Some((off < UART_REGISTERS).then_some(off as u16)),
            _ => None,
        }
    }

    /// Follows the UART's interrupt output: a rise raises the MSI-X vector (sent, left
    /// pending while masked, or dropped without MSI-X and bus mastering); anything else
    /// sends nothing.
    pub fn follow(&mut self, line: bool) -> Signal {
        let rose = line && !self.line;
        self.line = line;
        if rose {
            self.function.signal(0)
        } else {
            Signal::Dropped
        }
    }
}
