//! A physical function as the Service VM sees it: the hardware's configuration space except
//! - its MSI: the Service VM's message is kept here, the hardware gets the hypervisor's (a
//!   vector of its own), and the hypervisor turns each interrupt into the Service VM's message;
//!   otherwise a device would interrupt a pCPU with a vector the Service VM picked;
//! - its MSI-X capability, hidden (the table is device memory the Service VM would program
//!   directly): drivers fall back to MSI or INTx.

use super::function::{CAP_ID_MSI, CAP_ID_MSIX};
use super::msi::{extract, for_each_capability, merge, GuestMessage, PhysConfig, VirtualMsi};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFunction {
    msi: Option<VirtualMsi>,
    /// The hidden MSI-X capability: the pointer that links to it, the capability after it,
    /// and where it is (writes to it are dropped).
    hidden_msix: Option<(u16, u8, u16)>,
}

impl ServiceFunction {
    /// Reads the function's capability list.
    pub fn probe(phys: &impl PhysConfig) -> Self {
        let mut f = ServiceFunction {
            msi: None,
            hidden_msix: None,
        };
        for_each_capability(phys, |link, at, head| match head as u8 {
            CAP_ID_MSI if f.msi.is_none() => f.msi = Some(VirtualMsi::new(at, (head >> 16) as u16)),
            CAP_ID_MSIX if f.hidden_msix.is_none() => {
                f.hidden_msix = Some((link, (head >> 8) as u8 & 0xFC, at));
            }
            _ => {}
        });
        f
    }

    /// A configuration read of `size` bytes at `offset`.
    pub fn config_read(&self, phys: &impl PhysConfig, offset: u16, size: u8) -> u32 {
        let aligned = offset & !3;
        let mut d = phys.read32(aligned);
        if let Some(m) = &self.msi {
            d = m.read_dword(aligned, d);
        }
        if let Some((link, next, _)) = self.hidden_msix.filter(|(l, _, _)| l & !3 == aligned) {
            d = merge(d, link, 1, u32::from(next));
        }
        extract(d, offset, size)
    }

    /// A configuration write; true if it changed the MSI (the glue reprograms the
    /// hardware).
    pub fn config_write(
        &mut self,
        phys: &impl PhysConfig,
        offset: u16,
        size: u8,
        value: u32,
    ) -> bool {
        if let Some(m) = self.msi.as_mut().filter(|m| m.touches(offset, size)) {
            m.write(phys, offset, size, value);
            return true;
        }
        let end = offset + u16::from(size);
        if self
            .hidden_msix
            .is_some_and(|(_, _, at)| end > at && offset < at + 12)
        {
            return false;
        }
        phys.write(offset, size, value);
        false
    }

    /// The Service VM's MSI while it has it enabled.
    pub fn message(&self) -> Option<GuestMessage> {
        self.msi.as_ref()?.message()
    }

    /// Programs the hardware's MSI: `host` (the hypervisor's address and vector), or off.
    pub fn program(&self, phys: &impl PhysConfig, host: Option<(u32, u16)>) {
        if let Some(m) = &self.msi {
            m.program(phys, host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::RefCell;

    /// Status with a capability list: MSI (64-bit, maskable) at 0x50 -> MSI-X at 0x70 -> PM at
    /// 0x90.
    struct Fake(RefCell<[u32; 64]>);

    impl PhysConfig for Fake {
        fn read32(&self, offset: u16) -> u32 {
            self.0.borrow()[usize::from(offset / 4) % 64]
        }
        fn write(&self, offset: u16, size: u8, value: u32) {
            let i = usize::from(offset / 4) % 64;
            let mut c = self.0.borrow_mut();
            c[i] = merge(c[i], offset, size, value);
        }
    }

    fn fake() -> Fake {
        let mut c = [0u32; 64];
        c[0] = 0x10D3_8086;
        c[1] = 0x0010_0006;
        c[13] = 0x50;
        // 16 vectors capable (MMC 4).
        c[0x50 / 4] = 0x0188_7005;
        c[0x70 / 4] = 0x0004_9011;
        c[0x74 / 4] = 3;
        c[0x90 / 4] = 0x0003_0001;
        Fake(RefCell::new(c))
    }

    #[test]
    fn msix_is_hidden_and_msi_kept_apart() {
        let f = fake();
        let mut s = ServiceFunction::probe(&f);
        // MSI links past MSI-X to PM; MSI-X stays off.
        assert_eq!(s.config_read(&f, 0x51, 1), 0x90);
        assert_eq!(s.config_read(&f, 0x50, 2), 0x7005 & 0xFF | 0x90 << 8);
        assert!(!s.config_write(&f, 0x72, 2, 0x8000));
        assert_eq!(f.read32(0x70) >> 31, 0);
        // The Service VM's message stays here until the glue programs the hardware.
        assert!(s.config_write(&f, 0x54, 4, 0xFEE0_1000));
        assert!(s.config_write(&f, 0x5C, 2, 0x41));
        assert_eq!(s.message(), None);
        assert!(s.config_write(&f, 0x52, 2, 1));
        assert_eq!(
            s.message(),
            Some(GuestMessage {
                addr: 0xFEE0_1000,
                data: 0x41
            })
        );
        assert_eq!(s.config_read(&f, 0x54, 4), 0xFEE0_1000);
        // One vector is offered: multiple-message capable reads 0.
        assert_eq!(s.config_read(&f, 0x52, 2), 0x0181);
        assert_eq!(f.read32(0x54), 0);
        assert_eq!(f.read32(0x50) >> 16 & 1, 0);
        s.program(&f, Some((0xFEE0_0000, 0xA8)));
        assert_eq!(
            (f.read32(0x54), f.read32(0x5C) & 0xFFFF),
            (0xFEE0_0000, 0xA8)
        );
        assert_eq!(f.read32(0x50) >> 16 & 1, 1);
        // Masking vector 0 silences the message.
        assert!(s.config_write(&f, 0x60, 4, 1));
        assert_eq!(s.message(), None);
        // Everything else is the hardware's.
        assert!(!s.config_write(&f, 0x04, 2, 0x7));
        assert_eq!(f.read32(0x04) & 0xFFFF, 0x7);
        s.program(&f, None);
        assert_eq!(f.read32(0x50) >> 16 & 1, 0);
    }

    #[test]
    fn a_function_without_capabilities_is_the_hardware() {
        let f = fake();
        f.0.borrow_mut()[1] = 0x0000_0006;
        let mut s = ServiceFunction::probe(&f);
        assert_eq!(s.config_read(&f, 0x50, 4), 0x0188_7005);
        assert!(!s.config_write(&f, 0x52, 2, 1));
        assert_eq!(f.read32(0x50) >> 16 & 1, 1);
        assert_eq!(s.message(), None);
    }
}
