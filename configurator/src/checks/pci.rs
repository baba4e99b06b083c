//! C09..C13 (ACRN `vbdf_assignment.xsd`), C19 (`passthrough_devices.xsd`) and C20
//! (`pci_config.xsd`, by BDF instead of ACRN's description-text comparison).

use std::collections::{HashMap, HashSet};

use super::{Ctx, FindingExt};
use crate::board::Bdf;
use crate::diag::Findings;
use crate::scenario::{LoadOrder, Vbdf, VuartType};

/// A virtual PCI device some VM gets from `<hv>`: a PCI vUART endpoint or an IVSHMEM member.
pub(super) struct VirtDev<'a> {
    pub vm_name: &'a str,
    pub vbdf: Vbdf,
    /// Span path of the `vbdf` / `VBDF` element.
    pub path: String,
    pub ivshmem: bool,
}

impl VirtDev<'_> {
    fn what(&self) -> &'static str {
        if self.ivshmem {
            "IVSHMEM device"
        } else {
            "PCI vUART"
        }
    }
}

/// PCI vUART endpoints (connections of type `pci`) and IVSHMEM members, in file order.
pub(super) fn virtual_devices<'a>(cx: &Ctx<'a>) -> Vec<VirtDev<'a>> {
    let mut v = Vec::new();
    let hv = &cx.s.hv;
    for (k, c) in hv
        .vuart_connections
        .iter()
        .flat_map(|c| c.connections.iter())
        .enumerate()
    {
        if c.vuart_type.unwrap_or(VuartType::Pci) != VuartType::Pci {
            continue;
        }
        for (e, ep) in c.endpoints.iter().enumerate() {
            if let Some(vbdf) = ep.vbdf {
                v.push(VirtDev {
                    vm_name: &ep.vm_name,
                    vbdf,
                    path: format!("hv/vuart_connections/vuart_connection[{k}]/endpoint[{e}]/vbdf"),
                    ivshmem: false,
                });
            }
        }
    }
    for (r, region) in hv.ivshmem_regions().enumerate() {
        for (m, member) in region.vms.vm.iter().enumerate() {
            if let Some(vbdf) = member.vbdf {
                v.push(VirtDev {
                    vm_name: &member.vm_name,
                    vbdf,
                    path: format!(
                        "hv/FEATURES/IVSHMEM/IVSHMEM_REGION[{r}]/IVSHMEM_VMS/IVSHMEM_VM[{m}]/VBDF"
                    ),
                    ivshmem: true,
                });
            }
        }
    }
    v
}

fn to_bdf(v: Vbdf) -> Option<Bdf> {
    Bdf::new(v.bus.into(), v.dev.into(), v.func.into())
}

/// The leading `BB:DD.F` of a `pci_dev` text.
pub(super) fn pci_dev_bdf(text: &str) -> Option<Bdf> {
    text.split_whitespace().next()?.parse().ok()
}

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let devs = virtual_devices(cx);

    // C09: unique per VM.
    let mut first: HashMap<(&str, Vbdf), usize> = HashMap::new();
    for (n, d) in devs.iter().enumerate() {
        if cx.vm_index(d.vm_name).is_none() {
            continue;
        }
        match first.get(&(d.vm_name, d.vbdf)) {
            None => {
                first.insert((d.vm_name, d.vbdf), n);
            }
            Some(&f) => {
                let prev = &devs[f];
                out.push(
                    cx.finding(
                        "C09",
                        format!(
                            "VM \"{}\" has several virtual UART controllers or IVSHMEM interfaces at BDF {}",
                            d.vm_name, d.vbdf
                        ),
                    )
                    .at_opt(cx.val(&d.path))
                    .with_related_opt(cx.val(&prev.path), &format!("{} at {} here", prev.what(), prev.vbdf))
                    .with_hint("give each vUART and IVSHMEM device of a VM its own virtual BDF (or remove the value to get a free default)"),
                );
            }
        }
    }

    // C10: Service VM virtual devices vs native devices.
    let native: HashSet<Bdf> = cx.board.legacy.pci_devices.iter().map(|d| d.bdf).collect();
    for d in &devs {
        let Some(vm) = cx.vm_by_name(d.vm_name) else {
            continue;
        };
        if vm.load_order != Some(LoadOrder::Service) {
            continue;
        }
        if to_bdf(d.vbdf).is_some_and(|b| native.contains(&b)) {
            out.push(
                cx.finding(
                    "C10",
                    format!(
                        "{} of Service VM \"{}\" at BDF {} conflicts with a native PCI device of the board",
                        d.what(),
                        d.vm_name,
                        d.vbdf
                    ),
                )
                .at_opt(cx.val(&d.path))
                .with_hint("pick a virtual BDF that no device in the board's PCI_DEVICE list uses"),
            );
        }
    }

    // C12 / C13: device number window of post-launched VMs.
    for d in &devs {
        let Some(vm) = cx.vm_by_name(d.vm_name) else {
            continue;
        };
        if vm.load_order != Some(LoadOrder::PostLaunched) {
            continue;
        }
        if !(0x03..=0x1e).contains(&d.vbdf.dev) {
            let id = if d.ivshmem { "C12" } else { "C13" };
            out.push(
                cx.finding(
                    id,
                    format!(
                        "{} of post-launched VM \"{}\" uses virtual BDF {}: the device number must be between 03 and 1e",
                        d.what(),
                        d.vm_name,
                        d.vbdf
                    ),
                )
                .at_opt(cx.val(&d.path))
                .with_hint("device numbers 00-02 and 1f are used by the device model; choose e.g. 00:08.0"),
            );
        }
    }

    // C11
    let hidden_p2sb = cx.s.hv.hidden_pdev_region.as_ref().is_some_and(|h| {
        h.hidden_pdev
            .iter()
            .any(|v| (v.bus, v.dev, v.func) == (0, 0x1f, 1))
    });
    for (i, vm) in cx.s.vm.iter().enumerate() {
        let mmio = vm.mmio_resources.as_ref();
        let p2sb = mmio.and_then(|m| m.p2sb) == Some(true);
        if hidden_p2sb && p2sb && vm.load_order == Some(LoadOrder::PreLaunched) {
            out.push(
                cx.finding(
                    "C11",
                    format!(
                        "P2SB can not be passed through to VM \"{}\" because 00:1f.1 is a hidden device (HIDDEN_PDEV)",
                        vm.name
                    ),
                )
                .at_opt(cx.vm_at(i, "mmio_resources/p2sb"))
                .with_related_opt(cx.el("hv/HIDDEN_PDEV_REGION"), "00:1f.1 hidden here")
                .with_hint("set p2sb to n, or remove 00:1f.1 from hv/HIDDEN_PDEV_REGION"),
            );
        }
        // C19
        if p2sb && mmio.and_then(|m| m.tpm2) == Some(true) {
            out.push(
                cx.finding(
                    "C19",
                    format!(
                        "VM \"{}\" is assigned both TPM2 and P2SB, which is not supported",
                        vm.name
                    ),
                )
                .at_opt(cx.vm_el(i, "mmio_resources"))
                .with_hint("set either mmio_resources/TPM2 or mmio_resources/p2sb to n"),
            );
        }
    }

    // C20: a device (by BDF) is passed through once.
    let mut owner: HashMap<Bdf, (usize, usize)> = HashMap::new();
    for (i, vm) in cx.s.vm.iter().enumerate() {
        for (j, text) in vm
            .pci_devs
            .iter()
            .flat_map(|p| p.pci_dev.iter())
            .enumerate()
        {
            let Some(bdf) = pci_dev_bdf(text) else {
                continue;
            };
            match owner.get(&bdf) {
                None => {
                    owner.insert(bdf, (i, j));
                }
                Some(&(fi, fj)) => {
                    let first_name = cx.s.vm.get(fi).map_or("", |v| v.name.as_str());
                    let msg = if fi == i {
                        format!("PCI device {bdf} is assigned twice to VM \"{}\"", vm.name)
                    } else {
                        format!(
                            "PCI device {bdf} is assigned to more than one VM: \"{first_name}\" and \"{}\"",
                            vm.name
                        )
                    };
                    out.push(
                        cx.finding("C20", msg)
                            .at_opt(cx.vm_at(i, &format!("pci_devs/pci_dev[{j}]")))
                            .with_related_opt(
                                cx.vm_at(fi, &format!("pci_devs/pci_dev[{fj}]")),
                                &format!("{bdf} first assigned to \"{first_name}\" here"),
                            )
                            .with_hint("a pass-through device can belong to one VM only; remove one of the entries"),
                    );
                }
            }
        }
    }
}
