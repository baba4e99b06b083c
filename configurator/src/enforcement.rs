//! What a scenario asks of the hypervisor that this release validates and writes into the
//! tables but does not enforce yet. `build` and `run` print every item as a warning (the
//! hypervisor prints the same at boot), so nothing the user wrote is dropped in silence.

use crate::board::{Bdf, Board, DeviceNode, NodeKind};
use crate::scenario::model::{LoadOrder, ProvidedBy, Scenario};

/// One scenario element the hypervisor does not enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unenforced {
    /// The VM it belongs to (None: the `<hv>` section).
    pub vm: Option<String>,
    /// The element as the scenario file names it.
    pub element: &'static str,
    /// What is not done and what the VM gets instead.
    pub detail: String,
}

impl std::fmt::Display for Unenforced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.vm {
            Some(vm) => write!(
                f,
                "VM {vm}: <{}> is not enforced yet: {}",
                self.element, self.detail
            ),
            None => write!(f, "<{}> is not enforced yet: {}", self.element, self.detail),
        }
    }
}

/// Pass-through the board cannot isolate: VMs' `pci_devs` on a board without an IOMMU
/// ([`Board::iommu`]), whose DMA reaches all host memory.
pub fn unisolated_dma(board: &Board, scenario: &Scenario) -> Vec<Unenforced> {
    if board.iommu().is_some() {
        return Vec::new();
    }
    scenario
        .vm
        .iter()
        .filter_map(|vm| {
            let devs = vm.pci_devs.as_ref().map_or(0, |d| d.pci_dev.len());
            (devs > 0).then(|| Unenforced {
                vm: Some(vm.name.clone()),
                element: "pci_devs",
                detail: format!(
                    "the board has no IOMMU (neither DRHD_INFO nor IVRS_INFO lists one): the DMA of \
                     its {devs} passthrough device(s) is not isolated from other VMs and the \
                     hypervisor"
                ),
            })
        })
        .collect()
}

/// Pass-through the hypervisor refuses at boot: a VM's `pci_devs` function whose requests the
/// IOMMU sees with the ID of a bridge above it (a PCIe-to-PCI bridge over conventional
/// functions, or a conventional PCI bridge), shared with another function behind that bridge
/// that another VM has, or the Service VM (when there is one) keeps. One IOMMU entry serves
/// them all, so they can only go to one VM together.
pub fn shared_requesters(board: &Board, scenario: &Scenario) -> Vec<Unenforced> {
    let owner = |bdf: Bdf| {
        scenario.vm.iter().find(|vm| {
            vm.pci_devs
                .iter()
                .flat_map(|p| p.pci_dev.iter())
                .any(|t| t.split_whitespace().next().and_then(|b| b.parse().ok()) == Some(bdf))
        })
    };
    let service = scenario
        .vm
        .iter()
        .any(|vm| vm.load_order == Some(LoadOrder::Service));
    let mut groups: Vec<(Bdf, Vec<Bdf>)> = Vec::new();
    for root in &board.devices.nodes {
        aliased_functions(root, None, &mut groups);
    }
    let mut out = Vec::new();
    for (bridge, functions) in &groups {
        for &f in functions {
            let Some(vm) = owner(f) else { continue };
            let other = functions.iter().find_map(|&g| match owner(g) {
                Some(o) if o.name != vm.name => Some((g, format!("VM {}'s", o.name))),
                None if service && g != f => Some((g, "the Service VM's".to_string())),
                _ => None,
            });
            if let Some((g, whose)) = other {
                out.push(Unenforced {
                    vm: Some(vm.name.clone()),
                    element: "pci_devs",
                    detail: format!(
                        "{f} is not passed through: it is behind bridge {bridge}, whose ID the \
                         IOMMU sees on the requests of every conventional PCI function there, \
                         and {g} behind it is {whose}; give the functions behind one such bridge \
                         to one VM"
                    ),
                });
            }
        }
    }
    out
}

/// Collects, below `node`, the non-bridge functions whose requests carry a bridge's alias,
/// grouped by the topmost such bridge (`aliasing`: the one above `node`, if any). A bridge
/// aliases when it is a conventional PCI bridge (no `PCI Express` capability) or a PCIe bridge
/// whose secondary bus holds conventional functions (a PCIe-to-PCI bridge).
fn aliased_functions(node: &DeviceNode, aliasing: Option<Bdf>, groups: &mut Vec<(Bdf, Vec<Bdf>)>) {
    let buses: Vec<&DeviceNode> = node
        .children
        .iter()
        .filter(|c| c.kind == NodeKind::Bus && c.bus_type.as_deref() == Some("pci"))
        .collect();
    // Conventional: capabilities listed, none of them PCI Express (a board that lists none
    // says nothing either way).
    let is_pcie = |n: &DeviceNode| n.capability("PCI Express").is_some();
    let conventional = |n: &DeviceNode| !n.capabilities.is_empty() && !is_pcie(n);
    let mut aliasing = aliasing;
    if let (Some(bdf), false) = (node.bdf, buses.is_empty()) {
        let conventional_below = buses.iter().any(|b| {
            b.children
                .iter()
                .any(|c| c.kind == NodeKind::Device && c.bdf.is_some() && conventional(c))
        });
        if aliasing.is_none() && (conventional(node) || (is_pcie(node) && conventional_below)) {
            aliasing = Some(bdf);
        }
    } else if let (Some(bdf), Some(bridge)) = (node.bdf, aliasing) {
        if node.kind == NodeKind::Device && node.vendor.is_some() {
            match groups.iter_mut().find(|(b, _)| *b == bridge) {
                Some((_, fs)) => fs.push(bdf),
                None => groups.push((bridge, vec![bdf])),
            }
        }
    }
    for c in &node.children {
        aliased_functions(c, aliasing, groups);
    }
}

/// Every element of `scenario` the hypervisor does not enforce, in file order.
pub fn unenforced(scenario: &Scenario) -> Vec<Unenforced> {
    let mut out = Vec::new();
    let hv = &scenario.hv;
    // VM-to-VM vUARTs of either type and hypervisor-provided regions are emulated for every
    // member (the vPCI of a pre-launched VM, the Service VM's bus, HC_ADD_VDEV for a
    // post-launched VM). A Device Model region is acrn-dm's (`ivshmem,dm:/NAME` in the launch
    // script, backed by shared memory in the Service VM): only post-launched VMs have one.
    let post_launched = |name: &str| {
        scenario
            .vm
            .iter()
            .any(|vm| vm.name == name && vm.load_order == Some(LoadOrder::PostLaunched))
    };
    for r in hv.ivshmem_regions() {
        if r.provided_by != Some(ProvidedBy::DeviceModel) {
            continue;
        }
        for m in r.vms.vm.iter().filter(|m| !post_launched(&m.vm_name)) {
            let why = "a region provided by the Device Model reaches only post-launched VMs, \
                       through acrn-dm";
            out.push(Unenforced {
                vm: Some(m.vm_name.clone()),
                element: "IVSHMEM_REGION",
                detail: format!(
                    "region {:?}: no IVSHMEM device or shared memory is given to the VM ({why})",
                    r.name
                ),
            });
        }
    }
    let rdt = hv
        .features
        .as_ref()
        .and_then(|f| f.rdt.as_ref())
        .is_some_and(|r| r.rdt_enabled == Some(true));
    if rdt {
        out.push(Unenforced {
            vm: None,
            element: "RDT",
            detail: "cache allocation (CAT/CLOS) is not programmed; VMs share the caches".into(),
        });
    }
    for vm in &scenario.vm {
        let name = || Some(vm.name.clone());
        // A pre-launched VM's lines are remapped to its vIOAPIC; ACRN reads pt_intx of no other.
        if vm.load_order != Some(LoadOrder::PreLaunched)
            && vm.pt_intx.as_deref().is_some_and(|s| !s.trim().is_empty())
        {
            out.push(Unenforced {
                vm: name(),
                element: "pt_intx",
                detail: "only pre-launched VMs' INTx lines are routed (as in ACRN)".into(),
            });
        }
    }
    out
}
