//! C44 (ACRN `vm_memory.xsd`) and the stricter host-memory checks of pre-launched VMs:
//! X03 (`hpa_region`s overlap), X04 (overlap the hypervisor's RAM), X05 (outside board RAM).

use super::{is_non_service, Ctx, FindingExt};
use crate::diag::Findings;

const MB: u128 = 1 << 20;

/// Hypervisor RAM size as ACRN's `hv_ram.py` computes it.
pub(super) fn hv_ram_size(max_vm_num: u32, secure_world_vms: usize) -> u128 {
    0x140_0000 + 0x40_0000 * u128::from(max_vm_num) + 0x100_0000 * secure_world_vms as u128
}

/// One `hpa_region`: VM index, region index, [start, end) in bytes.
struct Region {
    vm: usize,
    idx: usize,
    start: u128,
    end: u128,
}

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    // C44
    let ram: u128 = cx.board.ram_ranges().map(|r| u128::from(r.size)).sum();
    let mut wanted_mb: u128 = 0;
    let mut first_mem = None;
    for (i, vm) in cx.s.vm.iter().enumerate() {
        if !is_non_service(vm) {
            continue;
        }
        // A VM without <memory> counts as 0 MB, as in ACRN (the element is optional and
        // not default-populated).
        let Some(m) = vm.memory.as_ref() else {
            continue;
        };
        first_mem.get_or_insert(i);
        wanted_mb += u128::from(m.size.unwrap_or(0));
        wanted_mb += m
            .hpa_region
            .iter()
            .map(|r| u128::from(r.size_hpa))
            .sum::<u128>();
    }
    if ram <= wanted_mb * MB {
        out.push(
            cx.finding(
                "C44",
                format!(
                    "the memory of all VMs ({wanted_mb} MB) exceeds the host memory of board \"{}\" ({} MB)",
                    cx.board.name,
                    ram / MB
                ),
            )
            .at_opt(first_mem.and_then(|i| cx.vm_el(i, "memory")))
            .with_hint("reduce the memory size of the pre- and post-launched VMs"),
        );
    }

    let mut regions: Vec<Region> = Vec::new();
    for (i, vm) in cx.s.vm.iter().enumerate() {
        for (j, r) in vm
            .memory
            .iter()
            .flat_map(|m| m.hpa_region.iter())
            .enumerate()
        {
            let start = u128::from(r.start_hpa.0);
            regions.push(Region {
                vm: i,
                idx: j,
                start,
                end: start + u128::from(r.size_hpa) * MB,
            });
        }
    }
    if regions.is_empty() {
        return;
    }
    let path = |r: &Region| format!("memory/hpa_region[{}]/start_hpa", r.idx);
    let name = |r: &Region| cx.s.vm.get(r.vm).map_or("", |v| v.name.as_str());
    let range = |r: &Region| format!("{:#x}-{:#x}", r.start, r.end.saturating_sub(1));

    // X03: sweep by start, remembering the region reaching furthest so far.
    let mut order: Vec<usize> = (0..regions.len())
        .filter(|&n| regions[n].end > regions[n].start)
        .collect();
    order.sort_by_key(|&n| (regions[n].start, regions[n].end));
    let mut reach: Option<usize> = None;
    for &n in &order {
        let r = &regions[n];
        if let Some(p) = reach.map(|p| &regions[p]) {
            if r.start < p.end {
                out.push(
                    cx.finding(
                        "X03",
                        format!(
                            "host memory region {} of VM \"{}\" overlaps region {} of VM \"{}\"",
                            range(r),
                            name(r),
                            range(p),
                            name(p)
                        ),
                    )
                    .at_opt(cx.vm_at(r.vm, &path(r)))
                    .with_related_opt(cx.vm_at(p.vm, &path(p)), "overlapping region")
                    .with_hint("move one of the hpa_regions (start_hpa) or make it smaller"),
                );
            }
        }
        if reach.is_none_or(|p| r.end > regions[p].end) {
            reach = Some(n);
        }
    }

    // X04
    if let Some(hv_start) = cx.s.hv.memory.as_ref().and_then(|m| m.hv_ram_start) {
        let max_vm =
            cx.s.hv
                .capacities
                .as_ref()
                .and_then(|c| c.max_vm_num)
                .unwrap_or(16);
        let secure =
            cx.s.vm
                .iter()
                .filter(|v| v.secure_world_support == Some(true))
                .count();
        let hv_lo = u128::from(hv_start.0);
        let hv_hi = hv_lo + hv_ram_size(max_vm, secure);
        for r in regions.iter().filter(|r| r.end > r.start) {
            if r.start < hv_hi && hv_lo < r.end {
                out.push(
                    cx.finding(
                        "X04",
                        format!(
                            "host memory region {} of VM \"{}\" overlaps the hypervisor's RAM {hv_lo:#x}-{:#x}",
                            range(r),
                            name(r),
                            hv_hi - 1
                        ),
                    )
                    .at_opt(cx.vm_at(r.vm, &path(r)))
                    .with_related_opt(cx.val("hv/MEMORY/HV_RAM_START"), "HV_RAM_START")
                    .with_hint("move the hpa_region or HV_RAM_START so they do not overlap"),
                );
            }
        }
    }

    // X05: merge the board's RAM ranges, then look each region up.
    let mut ram: Vec<(u128, u128)> = cx
        .board
        .ram_ranges()
        .map(|r| (u128::from(r.start), u128::from(r.end) + 1))
        .collect();
    ram.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ram.len());
    for (s, e) in ram {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    for r in &regions {
        let k = merged.partition_point(|&(s, _)| s <= r.start);
        let inside = k > 0 && merged.get(k - 1).is_some_and(|&(_, e)| r.end <= e);
        if !inside {
            out.push(
                cx.finding(
                    "X05",
                    format!(
                        "host memory region {} of VM \"{}\" is not inside the RAM of board \"{}\"",
                        range(r),
                        name(r),
                        cx.board.name
                    ),
                )
                .at_opt(cx.vm_at(r.vm, &path(r)))
                .with_hint(format!(
                    "place the region inside a RAM range of the board: {}",
                    ram_text(&merged)
                )),
            );
        }
    }
}

fn ram_text(merged: &[(u128, u128)]) -> String {
    let v: Vec<String> = merged
        .iter()
        .map(|(s, e)| format!("{s:#x}-{:#x}", e.saturating_sub(1)))
        .collect();
    if v.is_empty() {
        "the board lists no RAM".to_string()
    } else {
        v.join(", ")
    }
}
