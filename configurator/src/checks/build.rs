//! B01..B08: checks ACRN only makes during a build (reference §4.5): `board_cfg_gen.py`,
//! the allocator's `board_capability.py` and the `hv_prebuild` program run on the generated
//! configuration (`static_checks.c`, `vm_cfg_checks.c`). We report them at validation time.

use std::collections::BTreeSet;

use super::{is_rtvm, pcpu_ids, ranges_text, Ctx};
use crate::diag::Findings;
use crate::scenario::LoadOrder;

const DEFAULT_MAX_VM_NUM: u32 = 16;
const HV_RAM_ALIGN: u64 = 2 << 20;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let caps = cx.s.hv.capacities.as_ref();
    let max_vm = caps
        .and_then(|c| c.max_vm_num)
        .unwrap_or(DEFAULT_MAX_VM_NUM);

    // B01
    let n = cx.s.vm.len();
    if n > max_vm as usize {
        out.push(
            cx.finding(
                "B01",
                format!("the scenario has {n} VMs but MAX_VM_NUM is {max_vm}"),
            )
            .at_opt(cx.val("hv/CAPACITIES/MAX_VM_NUM"))
            .with_hint(format!(
                "raise hv/CAPACITIES/MAX_VM_NUM to at least {n}, or remove VMs"
            )),
        );
    }

    // B02
    let need_bus = u32::from(cx.board.max_pci_bus()) + 1;
    if let Some(bus) = caps.and_then(|c| c.max_pci_bus_num).filter(|&b| b != 0) {
        if bus < need_bus {
            out.push(
                cx.finding(
                    "B02",
                    format!(
                        "MAX_PCI_BUS_NUM is {bus} but board \"{}\" has PCI buses up to {}",
                        cx.board.name,
                        need_bus - 1
                    ),
                )
                .at_opt(cx.val("hv/CAPACITIES/MAX_PCI_BUS_NUM"))
                .with_hint(format!(
                    "set MAX_PCI_BUS_NUM to at least {need_bus}, or to 0 to compute it"
                )),
            );
        }
    }

    // The board's pCPUs as the build sees them (CPU_PROCESSOR_INFO, else the topology).
    let platform: BTreeSet<u32> = if cx.board.legacy.cpu_processors.is_empty() {
        cx.board.threads().map(|t| t.cpu_id).collect()
    } else {
        cx.board.legacy.cpu_processors.iter().copied().collect()
    };
    let pcpu_num = platform.len();

    // B03: the Service VM gets every pCPU no pre-launched VM takes.
    let pre_taken: BTreeSet<u32> =
        cx.s.vms_of(LoadOrder::PreLaunched)
            .flat_map(|(_, v)| pcpu_ids(v).map(|(_, p)| p))
            .collect();
    for (i, svc) in cx.s.vms_of(LoadOrder::Service) {
        if !platform.is_empty() && platform.is_subset(&pre_taken) {
            out.push(
                cx.finding(
                    "B03",
                    format!(
                        "Service VM \"{}\" is left without pCPUs: pre-launched VMs take all of them ({})",
                        svc.name,
                        ranges_text(&platform.iter().copied().collect::<Vec<_>>())
                    ),
                )
                .at_opt(cx.vm_at(i, ""))
                .with_hint("leave at least one pCPU out of the pre-launched VMs' CPU affinity"),
            );
        }
    }

    for (i, vm) in cx.s.vm.iter().enumerate() {
        // B04
        for (j, p) in pcpu_ids(vm) {
            if p as usize >= pcpu_num {
                out.push(
                    cx.finding(
                        "B04",
                        format!(
                            "pCPU {p} of VM \"{}\" is beyond the board's {pcpu_num} pCPUs; the hypervisor's configuration check would fail",
                            vm.name
                        ),
                    )
                    .at_opt(cx.vm_at(i, &format!("cpu_affinity/pcpu[{j}]/pcpu_id")))
                    .with_hint(format!("use pCPU ids below {pcpu_num}")),
                );
            }
        }
        if vm.load_order != Some(LoadOrder::PreLaunched) {
            continue;
        }
        // B06
        if is_rtvm(vm) && vm.lapic_passthrough != Some(true) {
            out.push(
                cx.finding(
                    "B06",
                    format!("pre-launched RTVM \"{}\" needs LAPIC pass-through", vm.name),
                )
                .at_opt(cx.vm_at(i, "lapic_passthrough"))
                .with_hint("set lapic_passthrough to y, or make the VM a STANDARD_VM"),
            );
        }
        // B07
        if let Some(size) = vm
            .epc_section
            .as_ref()
            .and_then(|e| e.size)
            .filter(|s| s.0 != 0)
        {
            out.push(
                cx.finding(
                    "B07",
                    format!("pre-launched VM \"{}\" has an SGX EPC section of size {size}; it must be 0", vm.name),
                )
                .at_opt(cx.vm_at(i, "epc_section/size"))
                .with_hint("set epc_section/size to 0"),
            );
        }
    }

    // B05
    if let Some(start) = cx.s.hv.memory.as_ref().and_then(|m| m.hv_ram_start) {
        if start.0 % HV_RAM_ALIGN != 0 {
            out.push(
                cx.finding("B05", format!("HV_RAM_START {start} is not 2 MiB aligned"))
                    .at_opt(cx.val("hv/MEMORY/HV_RAM_START"))
                    .with_hint(format!(
                        "use a multiple of 0x200000, e.g. {:#x}",
                        start.0 & !(HV_RAM_ALIGN - 1)
                    )),
            );
        }
    }

    // B08: MAX_VCPUS_PER_VM is the board's pCPU count.
    let vcpu_ids = u64::from(max_vm).saturating_mul(pcpu_num as u64);
    if vcpu_ids > 0xffff {
        out.push(
            cx.finding(
                "B08",
                format!(
                    "MAX_VM_NUM ({max_vm}) x vCPUs per VM ({pcpu_num}) = {vcpu_ids} exceeds 0xffff"
                ),
            )
            .at_opt(cx.val("hv/CAPACITIES/MAX_VM_NUM"))
            .with_hint(format!(
                "lower MAX_VM_NUM to at most {}",
                0xffff / pcpu_num.max(1)
            )),
        );
    }
}
