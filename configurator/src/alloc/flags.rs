//! pCPU sets (ACRN `cpu_affinity.py`), guest flags (`guest_flags.py`) and explicit
//! pass-through INTx lines.

use acrn_static_config::GuestFlags as F;

use super::{Allocation, Ctx};
use crate::scenario::{BuildType, LoadOrder, OsType, VmType};

pub(super) fn cpus_and_flags(cx: &mut Ctx, alloc: &mut Allocation) {
    let board_cpus: Vec<u32> = cx.board.pcpus().iter().map(|p| p.cpu_id).collect();
    let pre_cpus: Vec<u32> = alloc
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
        .flat_map(|v| affinity(cx, v.index))
        .collect();
    let debug = cx.scenario.hv.build_type != Some(BuildType::Release);
    let hwp = cx.board.has_cpu_capability("hwp_supported");
    for v in &mut alloc.vms {
        v.pcpus = match v.load_order {
            LoadOrder::Service => board_cpus
                .iter()
                .copied()
                .filter(|c| !pre_cpus.contains(c))
                .collect(),
            _ => affinity(cx, v.index),
        };
        if let Some(&c) = v.pcpus.iter().find(|c| **c >= 64) {
            cx.error(
                "A06",
                format!("VM `{}` uses pCPU {c}; the tables hold pCPUs 0..63", v.name),
                cx.vm_at(v.index, "cpu_affinity"),
                "use pCPUs below 64",
            );
        }
        if v.pcpus.is_empty() && v.load_order != LoadOrder::PostLaunched {
            let msg = match v.load_order {
                LoadOrder::Service => {
                    "no pCPU is left for the Service VM: pre-launched VMs own them all"
                }
                _ => "has no pCPU (cpu_affinity is empty)",
            };
            cx.error(
                "A06",
                format!("VM `{}`: {msg}", v.name),
                cx.vm_at(v.index, ""),
                "give the VM at least one pCPU",
            );
        }

        let vm = &cx.scenario.vm[v.index];
        let y = |b: Option<bool>| b == Some(true);
        let mut f = F::STATIC_VM;
        let mut set = |cond: bool, bit: u64| {
            if cond {
                f |= bit;
            }
        };
        set(y(vm.lapic_passthrough), F::LAPIC_PASSTHROUGH);
        set(y(vm.io_completion_polling), F::IO_COMPLETION_POLLING);
        set(y(vm.virtual_cat_support), F::VCAT_ENABLED);
        set(y(vm.secure_world_support), F::SECURE_WORLD_ENABLED);
        set(y(vm.hide_mtrr_support), F::HIDE_MTRR);
        set(y(vm.nested_virtualization_support), F::NVMX_ENABLED);
        set(y(vm.virtual_thermal_monitor), F::VTM);
        set(y(vm.security_vm), F::SECURITY_VM);
        set(y(vm.stateless), F::STATELESS);
        set(vm.vm_type == Some(VmType::Rtvm), F::RT);
        set(vm.vm_type == Some(VmType::Tee), F::TEE);
        set(vm.vm_type == Some(VmType::Ree), F::REE);
        set(
            vm.vm_type == Some(VmType::Rtvm) && v.load_order == LoadOrder::PreLaunched && debug,
            F::PMU_PASSTHROUGH,
        );
        set(
            hwp && y(vm.own_pcpu) && vm.os_type != Some(OsType::Windows),
            F::VHWP,
        );
        v.guest_flags = f;

        if let Some(text) = vm.pt_intx.as_deref() {
            match parse_pt_intx(text) {
                Some(pairs) => v.pt_intx = pairs,
                None => cx.error(
                    "A11",
                    format!(
                        "VM `{}`: pt_intx `{}` is not a list of (phys, virt) pairs",
                        v.name,
                        text.trim()
                    ),
                    cx.vm_at(v.index, "pt_intx"),
                    "write it like `(3, 3)(5, 6)`",
                ),
            }
        }
    }
}

/// Sorted, de-duplicated `cpu_affinity/pcpu/pcpu_id` of a VM.
fn affinity(cx: &Ctx, index: usize) -> Vec<u32> {
    let mut v: Vec<u32> = cx.scenario.vm[index]
        .cpu_affinity
        .as_ref()
        .map(|a| a.pcpu.iter().map(|p| p.pcpu_id).collect())
        .unwrap_or_default();
    v.sort_unstable();
    v.dedup();
    v
}

/// Parses `(phys, virt)(phys, virt)...` (decimal or 0x-hex numbers, any spacing; empty = none).
pub(crate) fn parse_pt_intx(text: &str) -> Option<Vec<(u32, u32)>> {
    let num = |s: &str| {
        let s = s.trim();
        match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u32::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        }
    };
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let body = rest.strip_prefix('(')?;
        let close = body.find(')')?;
        let (a, b) = body[..close].split_once(',')?;
        out.push((num(a)?, num(b)?));
        rest = body[close + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::parse_pt_intx;

    #[test]
    fn pt_intx_forms() {
        assert_eq!(parse_pt_intx(""), Some(vec![]));
        assert_eq!(parse_pt_intx("(3, 3)(0x10,5)"), Some(vec![(3, 3), (16, 5)]));
        assert_eq!(parse_pt_intx(" (1,2), (3 ,4) "), Some(vec![(1, 2), (3, 4)]));
        assert_eq!(parse_pt_intx("(1 2)"), None);
        assert_eq!(parse_pt_intx("(1, 2"), None);
        assert_eq!(parse_pt_intx("1, 2"), None);
    }
}
