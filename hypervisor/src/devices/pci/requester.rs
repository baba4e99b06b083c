//! The requester IDs a host function's DMA and interrupt requests carry. A PCIe function's
//! requests carry its own BDF; a conventional PCI function's do not always: a PCIe-to-PCI
//! bridge forwards them with its secondary bus and devfn 0, a conventional PCI-to-PCI bridge
//! with its own BDF. The IOMMU looks up the ID it sees (the alias of the bridge nearest the
//! root), so a function's context or device table entries must cover every ID on its way up,
//! and every function below that bridge shares the entry: they can only have one owner.
//!
//! The topology is read from the hardware when asked (the Service VM may renumber buses).

use super::msi::{for_each_capability, PhysConfig};
use acrn_static_config::Bdf;

/// Any function's configuration space (the first 256 bytes), by BDF.
pub trait HostConfig {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
}

/// Bridges between the root bus and a function, at most.
const MAX_DEPTH: usize = 8;
/// The function's own ID and at most this many aliases.
const MAX_REQUESTERS: usize = MAX_DEPTH + 1;

const PCIE_CAPABILITY_ID: u32 = 0x10;
/// PCIe device/port types (PCIe capability register bits 7:4) of bridges that pass IDs on.
const PCIE_ROOT_PORT: u32 = 0x4;
const PCIE_UPSTREAM_PORT: u32 = 0x5;
const PCIE_DOWNSTREAM_PORT: u32 = 0x6;
const PCIE_TO_PCI_BRIDGE: u32 = 0x7;
const PCI_TO_PCIE_BRIDGE: u32 = 0x8;

/// The IDs one function's requests may carry: its own first, then each alias bridges put on
/// them on the way to the root; the IOMMU sees the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requesters {
    ids: [u16; MAX_REQUESTERS],
    count: usize,
    /// The bridge that gives the alias the IOMMU sees and the buses below it (first, last):
    /// every function there has its requests seen with the same ID.
    aliased_by: Option<(Bdf, u8, u8)>,
}

impl Requesters {
    fn own(bdf: Bdf) -> Requesters {
        let mut ids = [0; MAX_REQUESTERS];
        ids[0] = bdf.raw();
        Requesters {
            ids,
            count: 1,
            aliased_by: None,
        }
    }

    /// Every ID, the function's own first.
    pub fn ids(&self) -> &[u16] {
        &self.ids[..self.count]
    }

    /// The ID the IOMMU sees on the function's requests.
    pub fn seen(&self) -> u16 {
        self.ids[self.count - 1]
    }

    /// The bridge whose alias the IOMMU sees, and the buses whose functions share it.
    pub fn aliased_by(&self) -> Option<(Bdf, u8, u8)> {
        self.aliased_by
    }

    /// The same with `id` as the ID the IOMMU sees, when the firmware names an alias the
    /// topology does not show (the IVRS's alias entries).
    pub fn aliased_to(mut self, id: u16) -> Requesters {
        self.push(id);
        self
    }

    fn push(&mut self, id: u16) {
        if self.count < MAX_REQUESTERS && !self.ids().contains(&id) {
            self.ids[self.count] = id;
            self.count += 1;
        }
    }
}

/// One function's configuration space through [`HostConfig`], for the capability walker.
struct At<'a, C: HostConfig>(&'a C, Bdf);

impl<C: HostConfig> PhysConfig for At<'_, C> {
    fn read32(&self, offset: u16) -> u32 {
        self.0.read32(self.1, offset)
    }

    fn write(&self, _: u16, _: u8, _: u32) {}
}

/// Every function present on `bus`.
fn functions(cfg: &impl HostConfig, bus: u8, mut f: impl FnMut(Bdf) -> bool) {
    for dev in 0..32 {
        let first = Bdf::new(bus, dev, 0);
        if cfg.read32(first, 0) & 0xFFFF == 0xFFFF {
            continue;
        }
        let multi = cfg.read32(first, 0x0C) >> 16 & 0x80 != 0;
        for func in 0..if multi { 8 } else { 1 } {
            let bdf = Bdf::new(bus, dev, func);
            if cfg.read32(bdf, 0) & 0xFFFF != 0xFFFF && !f(bdf) {
                return;
            }
        }
    }
}

/// A bridge's secondary and subordinate bus, if `bdf` is one (a type-1 header).
fn bridge_buses(cfg: &impl HostConfig, bdf: Bdf) -> Option<(u8, u8)> {
    if cfg.read32(bdf, 0x0C) >> 16 & 0x7F != 1 {
        return None;
    }
    let buses = cfg.read32(bdf, 0x18);
    Some(((buses >> 8) as u8, (buses >> 16) as u8))
}

/// The bridge whose secondary bus is `bus`, searched on the buses below it (a parent's bus
/// number is lower than its children's); None for a root bus.
fn parent_bridge(cfg: &impl HostConfig, bus: u8) -> Option<Bdf> {
    let mut found = None;
    for upper in (0..bus).rev() {
        functions(cfg, upper, |bdf| {
            if bridge_buses(cfg, bdf).is_some_and(|(secondary, _)| secondary == bus) {
                found = Some(bdf);
            }
            found.is_none()
        });
        if found.is_some() {
            break;
        }
    }
    found
}

/// A function's PCIe device/port type, None for a conventional function.
fn pcie_type(cfg: &impl HostConfig, bdf: Bdf) -> Option<u32> {
    let mut kind = None;
    for_each_capability(&At(cfg, bdf), |_, _, head| {
        if head & 0xFF == PCIE_CAPABILITY_ID && kind.is_none() {
            kind = Some(head >> 20 & 0xF);
        }
    });
    kind
}

/// The IDs `bdf`'s requests may carry, walking the bridges above it as the IOMMU's view of
/// the bus does: PCIe ports pass IDs on unchanged, a PCIe-to-PCI bridge replaces them with
/// its secondary bus and devfn 0, a PCI-to-PCIe or conventional bridge with its own.
pub fn requesters(cfg: &impl HostConfig, bdf: Bdf) -> Requesters {
    let mut r = Requesters::own(bdf);
    let mut bus = bdf.bus;
    for _ in 0..MAX_DEPTH {
        let Some(bridge) = parent_bridge(cfg, bus) else {
            break;
        };
        let Some((secondary, subordinate)) = bridge_buses(cfg, bridge) else {
            break;
        };
        let alias = match pcie_type(cfg, bridge) {
            Some(PCIE_ROOT_PORT | PCIE_UPSTREAM_PORT | PCIE_DOWNSTREAM_PORT) => None,
            Some(PCIE_TO_PCI_BRIDGE) => Some(Bdf::new(secondary, 0, 0).raw()),
            Some(PCI_TO_PCIE_BRIDGE) | None => Some(bridge.raw()),
            Some(_) => None,
        };
        if let Some(id) = alias {
            r.push(id);
            r.aliased_by = Some((bridge, secondary, subordinate));
        }
        if bridge.bus >= bus {
            break;
        }
        bus = bridge.bus;
    }
    r
}

/// The functions other than `bdf` whose requests the IOMMU sees with the same ID as `bdf`'s
/// (every function below the bridge that gives it), bridges excepted: `f` is called with each
/// until it returns false.
pub fn sharing(cfg: &impl HostConfig, bdf: Bdf, mut f: impl FnMut(Bdf) -> bool) {
    let Some((_, first, last)) = requesters(cfg, bdf).aliased_by() else {
        return;
    };
    let mut go = true;
    for bus in first..=last {
        functions(cfg, bus, |other| {
            let bridge = cfg.read32(other, 0x08) >> 24 == 0x06;
            if other != bdf && !bridge {
                go = f(other);
            }
            go
        });
        if !go || bus == u8::MAX {
            break;
        }
    }
}

/// A function whose requests the IOMMU sees with `bdf`'s ID and that is not VM `vm`'s: one
/// another VM owns (`owner_of`), or, when there is a Service VM (`service`), one no VM owns
/// (the Service VM's). `bdf` can only go to `vm` without it.
pub fn other_owner(
    cfg: &impl HostConfig,
    bdf: Bdf,
    vm: u16,
    service: bool,
    owner_of: impl Fn(Bdf) -> Option<u16>,
) -> Option<(Bdf, Option<u16>)> {
    let mut conflict = None;
    sharing(cfg, bdf, |other| {
        match owner_of(other) {
            Some(owner) if owner != vm => conflict = Some((other, Some(owner))),
            None if service => conflict = Some((other, None)),
            _ => {}
        }
        conflict.is_none()
    });
    conflict
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A host bus built from functions' config dwords.
    #[derive(Default)]
    struct Topology(BTreeMap<(u16, u16), u32>);

    const PCIE_CAP_AT: u16 = 0x40;

    impl Topology {
        fn function(&mut self, bdf: Bdf, id: u32, class: u32) -> &mut Self {
            self.0.insert((bdf.raw(), 0), id);
            self.0.insert((bdf.raw(), 0x08), class << 24);
            self
        }

        fn multifunction(&mut self, bdf: Bdf) -> &mut Self {
            *self.0.entry((bdf.raw(), 0x0C)).or_default() |= 0x80 << 16;
            self
        }

        /// A bridge `bdf` to buses `secondary..=subordinate`, with a PCIe capability of
        /// `pcie` type (None: conventional).
        fn bridge(
            &mut self,
            bdf: Bdf,
            secondary: u8,
            subordinate: u8,
            pcie: Option<u32>,
        ) -> &mut Self {
            self.function(bdf, 0x0001_1B36, 0x06);
            *self.0.entry((bdf.raw(), 0x0C)).or_default() |= 1 << 16;
            self.0.insert(
                (bdf.raw(), 0x18),
                u32::from(subordinate) << 16 | u32::from(secondary) << 8 | u32::from(bdf.bus),
            );
            if let Some(kind) = pcie {
                self.0.insert((bdf.raw(), 0x04), 1 << 20);
                self.0.insert((bdf.raw(), 0x34), u32::from(PCIE_CAP_AT));
                self.0
                    .insert((bdf.raw(), PCIE_CAP_AT), kind << 20 | 2 << 16 | 0x10);
            }
            self
        }
    }

    impl HostConfig for Topology {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            let present = self.0.contains_key(&(bdf.raw(), 0));
            match self.0.get(&(bdf.raw(), offset)) {
                Some(&v) => v,
                None if present => 0,
                None => u32::MAX,
            }
        }
    }

    fn b(bus: u8, dev: u8, func: u8) -> Bdf {
        Bdf::new(bus, dev, func)
    }

    #[test]
    fn a_root_bus_function_is_seen_with_its_own_id() {
        let mut t = Topology::default();
        t.function(b(0, 2, 0), 0x10D3_8086, 0x02);
        let r = requesters(&t, b(0, 2, 0));
        assert_eq!(r.ids(), [b(0, 2, 0).raw()]);
        assert_eq!(r.seen(), b(0, 2, 0).raw());
        assert_eq!(r.aliased_by(), None);
    }

    #[test]
    fn pcie_ports_pass_the_id_on() {
        let mut t = Topology::default();
        t.bridge(b(0, 0x1c, 0), 1, 3, Some(PCIE_ROOT_PORT))
            .bridge(b(1, 0, 0), 2, 3, Some(PCIE_UPSTREAM_PORT))
            .bridge(b(2, 1, 0), 3, 3, Some(PCIE_DOWNSTREAM_PORT))
            .function(b(3, 0, 0), 0x1234_8086, 0x02);
        let r = requesters(&t, b(3, 0, 0));
        assert_eq!(r.ids(), [b(3, 0, 0).raw()]);
        assert_eq!(r.aliased_by(), None);
    }

    #[test]
    fn a_pcie_to_pci_bridge_puts_its_secondary_bus_and_devfn_0_on_requests() {
        // QEMU's pcie-pci-bridge at 00:04.0, its bus 1 with edu at 01:01.0 and a
        // multi-function device at 01:02.x.
        let mut t = Topology::default();
        t.bridge(b(0, 4, 0), 1, 1, Some(PCIE_TO_PCI_BRIDGE))
            .function(b(1, 1, 0), 0x11E8_1234, 0x00)
            .function(b(1, 2, 0), 0x100E_8086, 0x02)
            .multifunction(b(1, 2, 0))
            .function(b(1, 2, 3), 0x100E_8086, 0x02);
        let r = requesters(&t, b(1, 1, 0));
        assert_eq!(r.ids(), [b(1, 1, 0).raw(), b(1, 0, 0).raw()]);
        assert_eq!(r.seen(), b(1, 0, 0).raw());
        assert_eq!(r.aliased_by(), Some((b(0, 4, 0), 1, 1)));
        let mut shared = Vec::new();
        sharing(&t, b(1, 1, 0), |f| {
            shared.push(f);
            true
        });
        assert_eq!(shared, [b(1, 2, 0), b(1, 2, 3)]);
        // The function at devfn 0 of that bus is its own alias: one ID.
        t.function(b(1, 0, 0), 0x11E8_1234, 0x00);
        assert_eq!(requesters(&t, b(1, 0, 0)).ids(), [b(1, 0, 0).raw()]);
    }

    #[test]
    fn a_conventional_bridge_puts_its_own_id_and_the_topmost_alias_is_seen() {
        // Root port 00:1c.0 -> bus 1: PCIe-to-PCI bridge 01:00.0 -> bus 2: conventional
        // PCI-to-PCI bridge 02:03.0 -> bus 3: a NIC at 03:05.0.
        let mut t = Topology::default();
        t.bridge(b(0, 0x1c, 0), 1, 3, Some(PCIE_ROOT_PORT))
            .bridge(b(1, 0, 0), 2, 3, Some(PCIE_TO_PCI_BRIDGE))
            .bridge(b(2, 3, 0), 3, 3, None)
            .function(b(3, 5, 0), 0x100E_8086, 0x02)
            .function(b(2, 4, 0), 0x100E_8086, 0x02);
        let r = requesters(&t, b(3, 5, 0));
        assert_eq!(
            r.ids(),
            [b(3, 5, 0).raw(), b(2, 3, 0).raw(), b(2, 0, 0).raw()]
        );
        assert_eq!(r.seen(), b(2, 0, 0).raw());
        assert_eq!(r.aliased_by(), Some((b(1, 0, 0), 2, 3)));
        // Everything below the PCIe-to-PCI bridge shares it; the bridges do not count.
        let mut shared = Vec::new();
        sharing(&t, b(3, 5, 0), |f| {
            shared.push(f);
            true
        });
        assert_eq!(shared, [b(2, 4, 0)]);
        // A function beside the root port is not aliased.
        t.function(b(0, 2, 0), 0x10D3_8086, 0x02);
        let mut none = 0;
        sharing(&t, b(0, 2, 0), |_| {
            none += 1;
            true
        });
        assert_eq!(none, 0);
    }

    #[test]
    fn functions_behind_one_aliasing_bridge_have_one_owner() {
        // Two functions behind QEMU's PCIe-to-PCI bridge, one beside it on bus 0.
        let mut t = Topology::default();
        t.bridge(b(0, 4, 0), 1, 1, Some(PCIE_TO_PCI_BRIDGE))
            .function(b(1, 1, 0), 0x11E8_1234, 0x00)
            .function(b(1, 2, 0), 0x11E8_1234, 0x00)
            .function(b(0, 2, 0), 0x10D3_8086, 0x02);
        let owners = |vm1: Option<u16>, vm2: Option<u16>| {
            move |f: Bdf| match (f.dev, f.bus) {
                (1, 1) => vm1,
                (2, 1) => vm2,
                _ => None,
            }
        };
        // Both to VM 1: fine, with or without a Service VM.
        for service in [false, true] {
            assert_eq!(
                other_owner(&t, b(1, 1, 0), 1, service, owners(Some(1), Some(1))),
                None
            );
        }
        // The other one is VM 2's.
        assert_eq!(
            other_owner(&t, b(1, 1, 0), 1, false, owners(Some(1), Some(2))),
            Some((b(1, 2, 0), Some(2)))
        );
        // The other one is nobody's: the Service VM's when there is one.
        assert_eq!(
            other_owner(&t, b(1, 1, 0), 1, false, owners(Some(1), None)),
            None
        );
        assert_eq!(
            other_owner(&t, b(1, 1, 0), 1, true, owners(Some(1), None)),
            Some((b(1, 2, 0), None))
        );
        // The function on bus 0 shares nothing with anyone.
        assert_eq!(other_owner(&t, b(0, 2, 0), 1, true, |_| Some(2)), None);
    }

    #[test]
    fn a_firmware_alias_becomes_the_seen_id() {
        let mut t = Topology::default();
        t.function(b(0, 2, 0), 0x10D3_8086, 0x02);
        let r = requesters(&t, b(0, 2, 0)).aliased_to(b(0, 0x1e, 0).raw());
        assert_eq!(r.ids(), [b(0, 2, 0).raw(), b(0, 0x1e, 0).raw()]);
        assert_eq!(r.seen(), b(0, 0x1e, 0).raw());
        // Naming an ID it already has changes nothing.
        assert_eq!(r.aliased_to(b(0, 2, 0).raw()).ids(), r.ids());
    }

    #[test]
    fn a_looping_or_absent_topology_ends() {
        // A bridge whose secondary bus is its own (misprogrammed) and a function on a bus no
        // bridge leads to (another root bus).
        let mut t = Topology::default();
        t.bridge(b(0, 1, 0), 0, 0, None)
            .function(b(0x40, 1, 0), 0x100E_8086, 0x02);
        assert_eq!(requesters(&t, b(0x40, 1, 0)).ids(), [b(0x40, 1, 0).raw()]);
        t.bridge(b(2, 1, 0), 2, 2, None)
            .function(b(2, 3, 0), 0x100E_8086, 0x02);
        let r = requesters(&t, b(2, 3, 0));
        assert!(r.ids().len() <= MAX_REQUESTERS);
    }
}
