//! The requester-ID walk (`devices::pci::requester`) over a host PCI bus whose configuration
//! space comes from the input: any header types, bus numbers (a Service VM may program a
//! bridge's), capability lists and PCIe port types. What must hold: nothing panics or loops;
//! a function's own ID comes first; every alias is a bridge's own ID or a devfn-0 ID of a
//! bridge's secondary bus; the ID the IOMMU sees is the last; `sharing` names only present,
//! non-bridge functions other than the one asked about, on the buses below the aliasing
//! bridge.
#![no_main]

use acrn_hypervisor::devices::pci::requester::{requesters, sharing, HostConfig};
use acrn_static_config::Bdf;
use libfuzzer_sys::fuzz_target;

/// A bus whose functions are the input's: each function record is
/// [bus, devfn, header, class, secondary, subordinate, capability type, flags].
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn record(&self, bdf: Bdf) -> Option<&[u8]> {
        self.0
            .chunks_exact(8)
            .take(64)
            .find(|r| r[0] == bdf.bus && r[1] == (bdf.dev << 3 | bdf.func))
    }
}

impl HostConfig for Input<'_> {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        let Some(r) = self.record(bdf) else {
            return u32::MAX;
        };
        let pcie = r[7] & 1 != 0;
        match offset {
            0x00 => 0x0001_1B36,
            0x04 => u32::from(pcie) << 20,
            0x08 => u32::from(r[3]) << 24,
            // Header type (bit 7: multi-function).
            0x0C => u32::from(r[2]) << 16,
            0x18 => u32::from(r[5]) << 16 | u32::from(r[4]) << 8 | u32::from(bdf.bus),
            0x34 if pcie => 0x40 | u32::from(r[7] & 0x80),
            0x40 | 0xC0 if pcie => {
                u32::from(r[6] & 0xF) << 20 | u32::from(r[7] >> 1 & 0x3F) << 10 | 0x10
            }
            o if pcie && o >= 0x40 => u32::from(o as u8) << 8 | u32::from(r[6]),
            _ => 0,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let cfg = Input(rest);
    let bdf = Bdf::from_raw(u16::from(first) << 8 | u16::from(rest.first().copied().unwrap_or(0)));
    let r = requesters(&cfg, bdf);
    let ids = r.ids();
    assert_eq!(ids[0], bdf.raw());
    assert_eq!(r.seen(), *ids.last().unwrap());
    for (i, &id) in ids.iter().enumerate() {
        assert!(!ids[..i].contains(&id), "an ID twice: {ids:x?}");
    }
    if let Some((bridge, first_bus, last_bus)) = r.aliased_by() {
        assert!(
            cfg.record(bridge).is_some(),
            "the aliasing bridge is absent"
        );
        let seen = Bdf::from_raw(r.seen());
        assert!(
            seen == bridge || (seen.bus == first_bus && seen.dev == 0 && seen.func == 0),
            "alias {seen:?} of bridge {bridge:?}"
        );
        let mut named = 0;
        sharing(&cfg, bdf, |other| {
            named += 1;
            assert_ne!(other, bdf);
            assert!(cfg.record(other).is_some(), "an absent function");
            assert!((first_bus..=last_bus).contains(&other.bus));
            assert_ne!(cfg.read32(other, 0x08) >> 24, 0x06, "a bridge");
            named < 3
        });
    } else {
        assert_eq!(ids.len(), 1);
    }
});
