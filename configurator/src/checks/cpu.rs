//! C01..C08: pCPU assignment (ACRN `schema/checks/cpu_assignment.xsd`).

use std::collections::{BTreeSet, HashMap};

use super::{is_non_service, is_rtvm, pcpu_ids, quoted_names, Ctx, FindingExt};
use crate::board::CoreType;
use crate::diag::Findings;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    // pCPU -> VMs (indices, ascending, each once) whose cpu_affinity lists it.
    let mut users: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, vm) in cx.s.vm.iter().enumerate() {
        for (_, p) in pcpu_ids(vm) {
            let v = users.entry(p).or_default();
            if v.last() != Some(&i) {
                v.push(i);
            }
        }
    }

    for (i, vm) in cx.s.vm.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (j, p) in pcpu_ids(vm) {
            let path = format!("cpu_affinity/pcpu[{j}]/pcpu_id");
            // C01
            let count = cx.thread(p).map_or(0, |t| t.0);
            if count != 1 {
                let problem = if count == 0 {
                    "does not exist on the target board".to_string()
                } else {
                    format!(
                        "is listed {count} times in the board's processors (board file damaged?)"
                    )
                };
                out.push(
                    cx.finding(
                        "C01",
                        format!("physical CPU {p} allocated to VM \"{}\" {problem}", vm.name),
                    )
                    .at_opt(cx.vm_at(i, &path))
                    .with_hint(format!(
                        "remove pCPU {p} from the CPU affinity; board \"{}\" has pCPUs {}",
                        cx.board.name,
                        cx.pcpu_list()
                    )),
                );
            }
            // C02
            if !seen.insert(p) {
                out.push(
                    cx.finding(
                        "C02",
                        format!("VM \"{}\" lists physical CPU {p} more than once", vm.name),
                    )
                    .at_opt(cx.vm_at(i, &path))
                    .with_hint("remove the duplicate <pcpu> entry"),
                );
            }
        }

        // C03 / C04: exclusive pCPUs.
        let exclusive = [
            ("C03", is_rtvm(vm), "is assigned to RTVM"),
            (
                "C04",
                vm.own_pcpu == Some(true),
                "is owned exclusively (own_pcpu) by VM",
            ),
        ];
        for (id, applies, what) in exclusive {
            if !applies {
                continue;
            }
            let mut reported = BTreeSet::new();
            for (j, p) in pcpu_ids(vm) {
                if !reported.insert(p) {
                    continue;
                }
                let sharing: Vec<usize> = users
                    .get(&p)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|&k| {
                        cx.s.vm
                            .get(k)
                            .is_some_and(|o| vm.companion_vmid != Some(o.id))
                    })
                    .collect();
                if sharing.len() <= 1 {
                    continue;
                }
                let others: Vec<usize> = sharing.iter().copied().filter(|&k| k != i).collect();
                let names = quoted_names(
                    others
                        .iter()
                        .filter_map(|&k| cx.s.vm.get(k))
                        .map(|o| o.name.as_str()),
                );
                let mut f = cx
                    .finding(
                        id,
                        format!(
                            "physical CPU {p} {what} \"{}\" and may not be shared with other VMs, but VM(s) {names} also use it",
                            vm.name
                        ),
                    )
                    .at_opt(cx.vm_at(i, &format!("cpu_affinity/pcpu[{j}]/pcpu_id")))
                    .with_hint(format!(
                        "remove pCPU {p} from the CPU affinity of {names}, or give \"{}\" another pCPU",
                        vm.name
                    ));
                for k in others {
                    if let Some(loc) = cx.vm_el(k, "cpu_affinity") {
                        f = f.with_related(loc, format!("pCPU {p} also assigned here"));
                    }
                }
                out.push(f);
            }
        }

        if is_non_service(vm) {
            // C05
            if pcpu_ids(vm).next().is_none() {
                out.push(
                    cx.finding(
                        "C05",
                        format!("VM \"{}\" has no physical CPU assigned", vm.name),
                    )
                    .at_opt(cx.vm_el(i, "cpu_affinity"))
                    .with_hint(format!(
                        "add <cpu_affinity><pcpu><pcpu_id>N</pcpu_id></pcpu></cpu_affinity> with a pCPU of {}",
                        cx.pcpu_list()
                    )),
                );
            }
            // C06
            let mut big = BTreeSet::new();
            let mut little = BTreeSet::new();
            let mut kinds = BTreeSet::new();
            for (_, p) in pcpu_ids(vm) {
                if let Some((_, Some(ct))) = cx.thread(p) {
                    kinds.insert(format!("{ct:?}"));
                    match ct {
                        CoreType::Core => big.insert(p),
                        CoreType::Atom => little.insert(p),
                        CoreType::Reserved => false,
                    };
                }
            }
            if kinds.len() > 1 {
                let list =
                    |s: &BTreeSet<u32>| s.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                out.push(
                    cx.finding(
                        "C06",
                        format!(
                            "the physical CPUs of VM \"{}\" mix performance cores ({}) and efficiency cores ({})",
                            vm.name,
                            list(&big),
                            list(&little)
                        ),
                    )
                    .at_opt(cx.vm_el(i, "cpu_affinity"))
                    .with_hint("give the VM only performance cores or only efficiency cores"),
                );
            }
        }

        // C07
        if is_rtvm(vm) {
            if let Some((j, _)) = pcpu_ids(vm).find(|&(_, p)| p == 0) {
                out.push(
                    cx.finding(
                        "C07",
                        format!("CPU 0 can not be assigned to real-time VM \"{}\"", vm.name),
                    )
                    .at_opt(cx.vm_at(i, &format!("cpu_affinity/pcpu[{j}]/pcpu_id")))
                    .with_hint("remove pCPU 0 from this VM's CPU affinity; pCPU 0 runs hypervisor housekeeping"),
                );
            }
        }
    }

    // C08
    let timer =
        cx.s.hv
            .features
            .as_ref()
            .and_then(|f| f.vuart_timer_pcpu)
            .unwrap_or(0);
    for (i, vm) in cx.s.vm.iter().enumerate() {
        if vm.lapic_passthrough != Some(true) {
            continue;
        }
        if pcpu_ids(vm).any(|(_, p)| p == timer) {
            out.push(
                cx.finding(
                    "C08",
                    format!(
                        "VUART_TIMER_PCPU is pCPU {timer}, which belongs to VM \"{}\" with LAPIC pass-through; vUART timers would not run there",
                        vm.name
                    ),
                )
                // The timer pCPU is usually the default (not in the file): then point at the VM.
                .at_opt(match cx.s.spans.get("hv/FEATURES/VUART_TIMER_PCPU") {
                    Some(_) => cx.val("hv/FEATURES/VUART_TIMER_PCPU"),
                    None => cx.vm_at(i, "lapic_passthrough"),
                })
                .with_related_opt(cx.vm_el(i, "cpu_affinity"), "LAPIC pass-through VM's pCPUs")
                .with_hint("set hv/FEATURES/VUART_TIMER_PCPU to a pCPU no LAPIC pass-through VM uses"),
            );
        }
    }
}
