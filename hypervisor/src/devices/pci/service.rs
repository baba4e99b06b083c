//! A physical function as the Service VM sees it: the hardware's configuration space except
//! - its MSI: the Service VM's message is kept here, the hardware gets the hypervisor's (a
//!   vector of its own), and the hypervisor turns each interrupt into the Service VM's message;
//!   otherwise a device would interrupt a pCPU with a vector the Service VM picked;
//! - its MSI-X, likewise (`msix`): the Service VM's table is virtual (the glue traps the
//!   table's pages of the BAR), the hardware's entries carry the hypervisor's vectors.

use super::function::{CAP_ID_MSI, CAP_ID_MSIX};
use super::msi::{extract, for_each_capability, GuestMessage, PhysConfig, VirtualMsi};
use super::msix::{MsixAccess, MsixCap, VirtualMsix};

/// What a configuration write changed, for the glue to apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceWrite {
    /// The Service VM's MSI changed: reprogram the hardware's.
    pub msi: bool,
    /// MSI-X enable or function mask changed: reprogram the hardware's table and mirror them.
    pub msix: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFunction {
    msi: Option<VirtualMsi>,
    msix: Option<VirtualMsix>,
}

impl ServiceFunction {
    /// Reads the function's capability list.
    pub fn probe(phys: &impl PhysConfig) -> Self {
        let mut f = ServiceFunction {
            msi: None,
            msix: None,
        };
        for_each_capability(phys, |_, at, head| match head as u8 {
            CAP_ID_MSI if f.msi.is_none() => f.msi = Some(VirtualMsi::new(at, (head >> 16) as u16)),
            CAP_ID_MSIX if f.msix.is_none() => {
                f.msix = Some(VirtualMsix::new(MsixCap::read(phys, at, head)));
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
        if let Some(m) = &self.msix {
            d = m.read_dword(aligned, d);
        }
        extract(d, offset, size)
    }

    /// A configuration write; what the glue must apply.
    pub fn config_write(
        &mut self,
        phys: &impl PhysConfig,
        offset: u16,
        size: u8,
        value: u32,
    ) -> ServiceWrite {
        if let Some(m) = self.msi.as_mut().filter(|m| m.touches(offset, size)) {
            m.write(phys, offset, size, value);
            return ServiceWrite {
                msi: true,
                msix: false,
            };
        }
        if let Some(m) = self.msix.as_mut().filter(|m| m.touches(offset, size)) {
            return ServiceWrite {
                msi: false,
                msix: m.write_control(offset, size, value),
            };
        }
        phys.write(offset, size, value);
        ServiceWrite::default()
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

    /// The MSI-X capability, if the function has one.
    pub fn msix(&self) -> Option<&VirtualMsix> {
        self.msix.as_ref()
    }

    /// A Service VM access to the table's pages (`offset` into the table's BAR).
    pub fn msix_access(&mut self, offset: u64, size: u8, value: Option<u64>) -> MsixAccess {
        match &mut self.msix {
            Some(m) => m.access(offset, size, value),
            None => MsixAccess::Hardware(offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::pci::msi::merge;
    use core::cell::RefCell;

    /// Status with a capability list: MSI (64-bit, maskable) at 0x50 -> MSI-X (5 entries,
    /// table in BAR 3 at 0, PBA at 0x800) at 0x70 -> PM at 0x90.
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
        c[0x78 / 4] = 0x803;
        c[0x90 / 4] = 0x0003_0001;
        Fake(RefCell::new(c))
    }

    #[test]
    fn msi_is_kept_apart() {
        let f = fake();
        let mut s = ServiceFunction::probe(&f);
        // The list is the hardware's: MSI links to MSI-X.
        assert_eq!(s.config_read(&f, 0x51, 1), 0x70);
        // The Service VM's message stays here until the glue programs the hardware.
        let msi = ServiceWrite {
            msi: true,
            msix: false,
        };
        assert_eq!(s.config_write(&f, 0x54, 4, 0xFEE0_1000), msi);
        assert_eq!(s.config_write(&f, 0x5C, 2, 0x41), msi);
        assert_eq!(s.message(), None);
        assert_eq!(s.config_write(&f, 0x52, 2, 1), msi);
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
        assert_eq!(s.config_write(&f, 0x60, 4, 1), msi);
        assert_eq!(s.message(), None);
        // Everything else is the hardware's.
        assert_eq!(s.config_write(&f, 0x04, 2, 0x7), ServiceWrite::default());
        assert_eq!(f.read32(0x04) & 0xFFFF, 0x7);
        s.program(&f, None);
        assert_eq!(f.read32(0x50) >> 16 & 1, 0);
    }

    #[test]
    fn msix_table_is_virtual() {
        let f = fake();
        let mut s = ServiceFunction::probe(&f);
        let m = *s.msix().expect("MSI-X");
        // Table in BAR 3 at offset 0, 5 entries (QEMU's e1000e).
        assert_eq!((m.cap().bar, m.cap().offset, m.entries()), (3, 0, 5));
        assert_eq!(m.window(), (3, 0, 0x1000));
        // Enable goes to the glue, not to the hardware.
        let msix = ServiceWrite {
            msi: false,
            msix: true,
        };
        assert_eq!(s.config_write(&f, 0x72, 2, 0x8004), msix);
        assert_eq!(f.read32(0x70) >> 31, 0);
        assert_eq!(s.config_read(&f, 0x72, 2), 0x8004);
        // Entry 2: address, data, then unmasked.
        assert_eq!(
            s.msix_access(0x20, 4, Some(0xFEE0_2000)),
            MsixAccess::Table(0)
        );
        assert_eq!(s.msix_access(0x28, 4, Some(0x45)), MsixAccess::Table(0));
        assert_eq!(s.msix_access(0x2C, 4, Some(0)), MsixAccess::EntryChanged(2));
        let m = *s.msix().unwrap();
        assert_eq!(
            m.message(2),
            Some(GuestMessage {
                addr: 0xFEE0_2000,
                data: 0x45
            })
        );
        assert_eq!(
            m.hardware_entry(2, Some((0xFEE0_0000, 0xA9))),
            Some((0x20, [0xFEE0_0000, 0, 0xA9, 0]))
        );
        assert_eq!(s.msix_access(0x20, 8, None), MsixAccess::Table(0xFEE0_2000));
        // The PBA (offset 0x800 on the same page) is the hardware's.
        assert_eq!(s.msix_access(0x800, 4, None), MsixAccess::Hardware(0x800));
        m.program(&f, true);
        assert_eq!(f.read32(0x70) >> 31, 1);
    }

    #[test]
    fn a_function_without_capabilities_is_the_hardware() {
        let f = fake();
        f.0.borrow_mut()[1] = 0x0000_0006;
        let mut s = ServiceFunction::probe(&f);
        assert_eq!(s.config_read(&f, 0x50, 4), 0x0188_7005);
        assert_eq!(s.config_write(&f, 0x52, 2, 1), ServiceWrite::default());
        assert_eq!(f.read32(0x50) >> 16 & 1, 1);
        assert_eq!(s.message(), None);
    }
}
