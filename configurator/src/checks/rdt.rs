//! C37..C43: RDT, CAT, CDP, vCAT and Software SRAM (ACRN `rdt_support.xsd`).

use super::{is_rtvm, Ctx, FindingExt};
use crate::board::legacy::parse_c_int;
use crate::diag::Findings;
use std::collections::HashMap;

use crate::scenario::{CachePolicy, CacheType, LoadOrder};

/// Software SRAM given to a pre-launched RTVM sits at the same guest address; it must stay
/// clear of the guest PCI hole (2 GiB .. 0xf8000000).
const PCI_HOLE_START: u64 = 0x8000_0000;
const PCI_HOLE_END: u64 = 0xf800_0000;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let rdt = cx.s.hv.features.as_ref().and_then(|f| f.rdt.as_ref());
    let flag = |f: fn(&crate::scenario::Rdt) -> Option<bool>| rdt.and_then(f) == Some(true);
    let rdt_on = flag(|r| r.rdt_enabled);
    let cdp_on = flag(|r| r.cdp_enabled);
    let vcat_on = flag(|r| r.vcat_enabled);

    // C37
    if vcat_on && (cdp_on || !rdt_on) {
        out.push(
            cx.finding(
                "C37",
                "hypervisor vCAT (VCAT_ENABLED) may be enabled only with RDT_ENABLED = y and CDP_ENABLED = n",
            )
            .at_opt(cx.val("hv/FEATURES/RDT/VCAT_ENABLED"))
            .with_hint(if cdp_on { "set CDP_ENABLED to n or VCAT_ENABLED to n" } else { "set RDT_ENABLED to y or VCAT_ENABLED to n" }),
        );
    }

    // C38
    if rdt_on && cdp_on {
        let lacking: Vec<String> = cx
            .board
            .caches
            .caches
            .iter()
            .filter(|c| matches!(c.level, 2 | 3) && !c.cat.as_ref().is_some_and(|k| k.cdp))
            .map(|c| format!("L{} cache {:#x}", c.level, c.id))
            .collect();
        if !lacking.is_empty() {
            out.push(
                cx.finding(
                    "C38",
                    format!(
                        "Code and Data Prioritization needs the CDP capability on every L2 and L3 cache; {} lack it",
                        lacking.join(", ")
                    ),
                )
                .at_opt(cx.val("hv/FEATURES/RDT/CDP_ENABLED"))
                .with_hint("set CDP_ENABLED to n on this board"),
            );
        }
    }

    for (i, vm) in cx.s.vm.iter().enumerate() {
        // C39
        if vm.virtual_cat_support == Some(true) && !(rdt_on && vcat_on) {
            out.push(
                cx.finding(
                    "C39",
                    format!(
                        "VM \"{}\" has virtual_cat_support, which needs hypervisor RDT_ENABLED = y and VCAT_ENABLED = y",
                        vm.name
                    ),
                )
                .at_opt(cx.vm_at(i, "virtual_cat_support"))
                .with_related_opt(cx.el("hv/FEATURES/RDT"), "hypervisor RDT settings")
                .with_hint("enable RDT_ENABLED and VCAT_ENABLED, or set virtual_cat_support to n"),
            );
        }
    }

    // C40
    let nested =
        cx.s.vm
            .iter()
            .any(|v| v.nested_virtualization_support == Some(true));
    for (i, vm) in cx.s.vms_of(LoadOrder::Service) {
        if vm.lapic_passthrough == Some(true) && !nested {
            out.push(
                cx.finding(
                    "C40",
                    format!(
                        "Service VM \"{}\" may not use LAPIC pass-through unless nested virtualization is enabled",
                        vm.name
                    ),
                )
                .at_opt(cx.vm_at(i, "lapic_passthrough"))
                .with_hint("set lapic_passthrough to n, or nested_virtualization_support to y"),
            );
        }
    }

    // C41
    let pre_rtvm =
        cx.s.vms_of(LoadOrder::PreLaunched)
            .find(|(_, v)| is_rtvm(v));
    if let Some((ri, rtvm)) = pre_rtvm {
        for c in cx.board.software_sram_caches().filter(|c| c.level == 3) {
            let Some(ss) = c.software_sram.as_ref() else {
                continue;
            };
            let (Some(start), Some(end)) = (ss.start, ss.end) else {
                continue;
            };
            if !(end < PCI_HOLE_START || start >= PCI_HOLE_END) {
                out.push(
                    cx.finding(
                        "C41",
                        format!(
                            "the software SRAM of L3 cache {:#x} ({start:#x}-{end:#x}) overlaps the guest PCI hole (2 GiB - 0xf8000000) of pre-launched RTVM \"{}\"",
                            c.id, rtvm.name
                        ),
                    )
                    .at_opt(cx.val("hv/FEATURES/SSRAM/SSRAM_ENABLED").or_else(|| cx.vm_at(ri, "vm_type")))
                    .with_hint("this can not be fixed in the scenario; report it to ACRN (the board's software SRAM must move)"),
                );
            }
        }
    }

    let allocations: &[_] =
        cx.s.hv
            .cache_region
            .as_ref()
            .map_or(&[], |c| c.allocations.as_slice());

    // C42
    let capacity = cx
        .board
        .cat_caches()
        .filter_map(|c| c.cat.as_ref().and_then(|k| k.clos_number))
        .min();
    if let Some(capacity) = capacity {
        let needed = clos_ids_needed(cx, cdp_on, vcat_on, u64::from(capacity));
        if needed >= u64::from(capacity) {
            out.push(
                cx.finding(
                    "C42",
                    format!(
                        "the cache allocation needs {needed} CLOS ids, but the board supports at most {capacity}"
                    ),
                )
                .at_opt(cx.el("hv/CACHE_REGION"))
                .with_hint("let more vCPUs share the same CLOS masks, or remove cache allocation policies"),
            );
        }
    }

    // C43
    for (a, alloc) in allocations.iter().enumerate() {
        let cache = cx
            .board
            .caches
            .caches
            .iter()
            .find(|c| c.level == alloc.cache_level && u64::from(c.id) == alloc.cache_id.0);
        let Some(waymask) = cache
            .and_then(|c| c.software_sram.as_ref())
            .and_then(|s| s.fields.get("waymask"))
            .and_then(|w| parse_c_int(w))
        else {
            continue;
        };
        for (p, pol) in alloc.policies.iter().enumerate() {
            let overlap = pol.clos_mask.0 & waymask;
            if overlap != 0 {
                out.push(
                    cx.finding(
                        "C43",
                        format!(
                            "VM \"{}\" vCPU {} can not use chunk(s) {} of L{} cache {} (mask {}) as they are used by software SRAM (waymask {waymask:#x})",
                            pol.vm,
                            pol.vcpu,
                            bits(overlap),
                            alloc.cache_level,
                            alloc.cache_id,
                            pol.clos_mask
                        ),
                    )
                    .at_opt(cx.val(&format!("hv/CACHE_REGION/CACHE_ALLOCATION[{a}]/POLICY[{p}]/CLOS_MASK")))
                    .with_hint(format!("clear bits {waymask:#x} from the CLOS mask")),
                );
            }
        }
    }
}

fn bits(v: u64) -> String {
    (0..64)
        .filter(|b| v >> b & 1 == 1)
        .map(|b: u32| b.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Masks of one owner: per L2 cache id (in `l2_ids` order) and the L3 mask.
#[derive(Clone, PartialEq)]
struct Masks {
    l2: Vec<Option<u64>>,
    l3: Option<u64>,
}

impl Masks {
    fn matches(&self, o: &Masks) -> bool {
        let eq = |a: Option<u64>, b: Option<u64>| a.is_none() || b.is_none() || a == b;
        self.l2.iter().zip(&o.l2).all(|(a, b)| eq(*a, *b)) && eq(self.l3, o.l3)
    }

    /// ACRN fills in missing L2 masks on a merge but never the L3 one.
    fn merge(&mut self, o: &Masks) {
        for (a, b) in self.l2.iter_mut().zip(&o.l2) {
            if a.is_none() {
                *a = *b;
            }
        }
    }
}

enum Policy {
    Rdt(Masks),
    /// A vCAT VM's vCPU: gets a CLOS of its own (never takes others in).
    Vcat(Masks),
    Cdp {
        data: Masks,
        code: Masks,
    },
}

impl Policy {
    fn plain(&self) -> Option<&Masks> {
        match self {
            Policy::Rdt(m) | Policy::Vcat(m) => Some(m),
            Policy::Cdp { .. } => None,
        }
    }

    fn try_merge(&mut self, src: &Policy) -> bool {
        match (self, src) {
            (Policy::Rdt(m), s) => match s.plain() {
                Some(o) if m.matches(o) => {
                    m.merge(o);
                    true
                }
                _ => false,
            },
            (Policy::Cdp { data, code }, Policy::Cdp { data: d2, code: c2 })
                if data.matches(d2) && code.matches(c2) =>
            {
                data.merge(d2);
                code.merge(c2);
                true
            }
            _ => false,
        }
    }
}

/// The last L2 (cache id, mask) and the last L3 mask of one owner.
type OwnerMasks = (Option<(u64, u64)>, Option<u64>);

/// ACRN's `number-of-clos-id-needed` (`library/rdt.py get_policy_list`): one policy per
/// `POLICY` owner (VM, vCPU, type), merged into an earlier one when their masks agree;
/// with CDP each merged policy needs two CLOS ids. Counting stops at `limit` (the check
/// only needs to know whether the board's capacity is reached), which keeps it linear.
fn clos_ids_needed(cx: &Ctx<'_>, cdp: bool, vcat: bool, limit: u64) -> u64 {
    let allocations: &[_] =
        cx.s.hv
            .cache_region
            .as_ref()
            .map_or(&[], |c| c.allocations.as_slice());
    let mut l2_ids: Vec<u64> = allocations
        .iter()
        .filter(|a| a.cache_level == 2)
        .map(|a| a.cache_id.0)
        .collect();
    l2_ids.sort_unstable();
    l2_ids.dedup();
    let all: Vec<(u32, u64, &CachePolicy)> = allocations
        .iter()
        .flat_map(|a| {
            a.policies
                .iter()
                .map(move |p| (a.cache_level, a.cache_id.0, p))
        })
        .collect();

    // Masks per (owner, type filter), built in one pass: the last POLICY of a level wins.
    let mut masks: HashMap<(&str, u32, Option<CacheType>), OwnerMasks> = HashMap::new();
    for &(level, id, p) in &all {
        let filters = [None, p.cache_type];
        for ty in filters
            .iter()
            .take(if p.cache_type.is_some() { 2 } else { 1 })
        {
            let e = masks.entry((p.vm.as_str(), p.vcpu, *ty)).or_default();
            if level == 2 {
                e.0 = Some((id, p.clos_mask.0));
            } else {
                e.1 = Some(p.clos_mask.0);
            }
        }
    }
    let get = |vm: &str, vcpu: u32, ty: Option<CacheType>| {
        let (l2, l3) = masks.get(&(vm, vcpu, ty)).copied().unwrap_or_default();
        Masks {
            l2: l2_ids
                .iter()
                .map(|&id| l2.filter(|(i, _)| *i == id).map(|(_, m)| m))
                .collect(),
            l3,
        }
    };

    let per_policy = if cdp { 2 } else { 1 };
    let mut result: Vec<Policy> = Vec::new();
    for &(_, _, p) in &all {
        let pol = if cdp {
            match p.cache_type {
                Some(CacheType::Data) => Policy::Cdp {
                    data: get(&p.vm, p.vcpu, Some(CacheType::Data)),
                    code: get(&p.vm, p.vcpu, Some(CacheType::Code)),
                },
                _ => continue,
            }
        } else if vcat
            && cx
                .vm_by_name(&p.vm)
                .is_some_and(|v| v.virtual_cat_support == Some(true))
        {
            Policy::Vcat(get(&p.vm, p.vcpu, None))
        } else {
            Policy::Rdt(get(&p.vm, p.vcpu, None))
        };
        if !result.iter_mut().any(|r| r.try_merge(&pol)) {
            result.push(pol);
            let n = (result.len() as u64).saturating_mul(per_policy);
            if n >= limit {
                return n;
            }
        }
    }
    (result.len() as u64).saturating_mul(per_policy)
}
