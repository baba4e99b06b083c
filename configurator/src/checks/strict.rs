//! Stricter than ACRN: X01/X02 (pass-through devices must be real devices of the board),
//! X06/X07 (vUART endpoints and IVSHMEM members must name existing VMs; ACRN only notices
//! the vUART case in `hv_prebuild`, and the IVSHMEM case not at all).

use std::collections::HashSet;

use super::pci::pci_dev_bdf;
use super::Ctx;
use crate::board::Bdf;
use crate::diag::Findings;
use crate::scenario::spec::closest;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let mut board_bdfs: HashSet<Bdf> = cx.board.pci_functions().filter_map(|n| n.bdf).collect();
    board_bdfs.extend(cx.board.legacy.pci_devices.iter().map(|d| d.bdf));

    for (i, vm) in cx.s.vm.iter().enumerate() {
        for (j, text) in vm
            .pci_devs
            .iter()
            .flat_map(|p| p.pci_dev.iter())
            .enumerate()
        {
            let loc = cx.vm_at(i, &format!("pci_devs/pci_dev[{j}]"));
            match pci_dev_bdf(text) {
                // X01
                None => out.push(
                    cx.finding(
                        "X01",
                        format!("pci_dev \"{text}\" of VM \"{}\" does not start with a PCI address BB:DD.F", vm.name),
                    )
                    .at_opt(loc)
                    .with_hint("write the device as in lspci, e.g. \"00:17.0 SATA controller: ...\""),
                ),
                // X02
                Some(bdf) if !board_bdfs.contains(&bdf) => out.push(
                    cx.finding(
                        "X02",
                        format!(
                            "PCI device {bdf} passed through to VM \"{}\" does not exist on board \"{}\"",
                            vm.name, cx.board.name
                        ),
                    )
                    .at_opt(loc)
                    .with_hint("pick a device of the board's PCI_DEVICE list (lspci) or remove the entry"),
                ),
                Some(_) => {}
            }
        }
    }

    let names = || cx.s.vm.iter().map(|v| v.name.as_str());
    let hint = |name: &str| match closest(name, names()) {
        Some(c) => format!("did you mean \"{c}\"?"),
        None => format!("VMs of this scenario: {}", super::quoted_names(names())),
    };

    // X06
    let conns =
        cx.s.hv
            .vuart_connections
            .iter()
            .flat_map(|c| c.connections.iter());
    for (k, c) in conns.enumerate() {
        for (e, ep) in c.endpoints.iter().enumerate() {
            if !ep.vm_name.is_empty() && cx.vm_index(&ep.vm_name).is_none() {
                out.push(
                    cx.finding(
                        "X06",
                        format!(
                            "vUART connection \"{}\" names VM \"{}\", which does not exist",
                            c.name, ep.vm_name
                        ),
                    )
                    .at_opt(cx.val(&format!(
                        "hv/vuart_connections/vuart_connection[{k}]/endpoint[{e}]/vm_name"
                    )))
                    .with_hint(hint(&ep.vm_name)),
                );
            }
        }
    }

    // X07
    for (r, region) in cx.s.hv.ivshmem_regions().enumerate() {
        for (m, member) in region.vms.vm.iter().enumerate() {
            if cx.vm_index(&member.vm_name).is_none() {
                out.push(
                    cx.finding(
                        "X07",
                        format!(
                            "shared memory region \"{}\" lists VM \"{}\", which does not exist",
                            region.name, member.vm_name
                        ),
                    )
                    .at_opt(cx.val(&format!(
                        "hv/FEATURES/IVSHMEM/IVSHMEM_REGION[{r}]/IVSHMEM_VMS/IVSHMEM_VM[{m}]/VM_NAME"
                    )))
                    .with_hint(hint(&member.vm_name)),
                );
            }
        }
    }
}
