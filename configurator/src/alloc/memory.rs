//! Host memory: the hypervisor's RAM (ACRN `hv_ram.py`), pre-launched VMs' RAM
//! (`memory_allocator.py`), hypervisor-provided IVSHMEM regions and what is left for the
//! Service VM.

use super::ranges::{align_up, Range, RangeSet};
use super::Allocation;
use super::{Ctx, IvshmemRegionAlloc, MemRegion};
use crate::scenario::{LoadOrder, ProvidedBy};

const MB: u64 = 1 << 20;
const ALIGN_2M: u64 = 2 * MB;
const FOUR_GB: u64 = 1 << 32;
/// ACRN: 20 MiB base + 4 MiB per VM + 16 MiB per VM with a secure world, at most 1 GiB.
const HV_RAM_BASE: u64 = 0x140_0000;
const HV_RAM_PER_VM: u64 = 0x40_0000;
const HV_RAM_PER_SECURE_WORLD: u64 = 0x100_0000;
const HV_RAM_MAX: u64 = 1 << 30;
/// Lowest address the hypervisor's RAM may start at.
const HV_RAM_MIN_START: u64 = 0x40_0000;
/// Guest RAM of a pre-launched VM fills GPAs up to here, then continues at 4 GiB; the
/// 2 MiB below 2 GiB hold the VM's ACPI tables (ACRN's `ACPI_VM<n>` image at 0x7FE00000)
/// and 2 GiB..4 GiB is the VM's MMIO hole.
const GUEST_LOW_RAM_END: u64 = 0x7FE0_0000;

/// RAM of the board from its `<memory>` section.
pub(crate) fn board_ram(cx: &Ctx) -> RangeSet {
    let mut s = RangeSet::new();
    for r in cx.board.ram_ranges() {
        s.insert(r.start, r.end.saturating_add(1));
    }
    s
}

/// Chooses the hypervisor's RAM.
pub(super) fn hv_ram(cx: &mut Ctx) -> Option<Range> {
    let s = cx.scenario;
    let max_vm =
        s.hv.capacities
            .as_ref()
            .and_then(|c| c.max_vm_num)
            .unwrap_or(16) as u64;
    let secure =
        s.vm.iter()
            .filter(|v| v.secure_world_support == Some(true))
            .count() as u64;
    let size = HV_RAM_BASE + HV_RAM_PER_VM * max_vm + HV_RAM_PER_SECURE_WORLD * secure;
    if size > HV_RAM_MAX {
        cx.error(
            "A01",
            format!(
                "the hypervisor needs {} MiB of RAM for MAX_VM_NUM={max_vm} and {secure} secure-world VM(s); the limit is 1024 MiB",
                size / MB
            ),
            cx.hv_at("CAPACITIES/MAX_VM_NUM"),
            "lower MAX_VM_NUM to the number of VMs you run",
        );
        return None;
    }
    let ram = board_ram(cx);
    if let Some(start) = s.hv.memory.as_ref().and_then(|m| m.hv_ram_start) {
        let at = cx.hv_at("MEMORY/HV_RAM_START");
        if start.0 % ALIGN_2M != 0 {
            cx.error(
                "A02",
                format!("HV_RAM_START {start} is not 2 MiB aligned"),
                at,
                "use a multiple of 0x200000, or remove HV_RAM_START to let the allocator choose",
            );
            return None;
        }
        if !start
            .0
            .checked_add(size)
            .is_some_and(|end| ram.covers(start.0, end))
        {
            cx.error(
                "A02",
                format!(
                    "HV_RAM_START {start} + {} MiB of hypervisor RAM is not inside one RAM range of board `{}`",
                    size / MB,
                    cx.board.name
                ),
                at,
                "remove HV_RAM_START to let the allocator choose, or pick an address inside the board's <memory> ranges",
            );
            return None;
        }
        return Some(Range::new(start.0, size));
    }
    // ACRN reads /proc/iomem's "System RAM"; boards written by hand may only have <memory>.
    let mut iomem = RangeSet::new();
    for r in cx.board.iomem_system_ram() {
        iomem.insert(r.start, r.end.saturating_add(1));
    }
    let pool = if iomem.is_empty() { ram } else { iomem };
    // First fit at or above 4 MiB, rounded up to 2 MiB inside the same range (ACRN rounds
    // after the search, which can push the region past the end of its range).
    let found = pool
        .clip(HV_RAM_MIN_START, u64::MAX)
        .first_fit(size, ALIGN_2M);
    match found {
        Some(start) => Some(Range::new(start, size)),
        None => {
            cx.error(
                "A02",
                format!(
                    "no System RAM range of board `{}` has {} MiB free above 4 MiB for the hypervisor",
                    cx.board.name,
                    size / MB
                ),
                cx.hv_at("CAPACITIES/MAX_VM_NUM"),
                "lower MAX_VM_NUM (each VM slot costs 4 MiB)",
            );
            None
        }
    }
}

/// Pre-launched VM memory, IVSHMEM regions, the Service VM's share, post-launched sizes.
pub(super) fn vm_memory(cx: &mut Ctx, alloc: &mut Allocation) {
    let ram = board_ram(cx);
    let mut free = ram.clone();
    free.remove_range(alloc.hv_ram);

    // Explicit hpa_regions first, for every pre-launched VM.
    // Entry 0 is the hypervisor.
    let mut taken: Vec<Range> = vec![alloc.hv_ram];
    let hv_explicit = cx
        .scenario
        .hv
        .memory
        .as_ref()
        .is_some_and(|m| m.hv_ram_start.is_some());
    let mut chunks: Vec<Vec<Range>> = vec![Vec::new(); alloc.vms.len()];
    for (k, v) in alloc.vms.iter().enumerate() {
        if v.load_order != LoadOrder::PreLaunched {
            continue;
        }
        let vm = &cx.scenario.vm[v.index];
        let regions = vm
            .memory
            .as_ref()
            .map(|m| m.hpa_region.as_slice())
            .unwrap_or(&[]);
        for (i, r) in regions.iter().enumerate() {
            let at = cx.vm_at(v.index, &format!("memory/hpa_region[{i}]/start_hpa"));
            let Some(size) = r.size_hpa.checked_mul(MB).filter(|s| *s > 0) else {
                cx.error(
                    "A03",
                    format!("VM `{}`: hpa_region {i} has size 0", v.name),
                    at,
                    "size_hpa is in MB",
                );
                continue;
            };
            let range = Range::new(r.start_hpa.0, size);
            // Validation already rejected regions outside RAM (X05), overlapping each other
            // (X03) or an explicit HV_RAM_START (X04); `generate` never gets here with them,
            // so they are skipped without a second report. Only the hypervisor RAM this
            // allocator placed itself is new information.
            if range.start.checked_add(size).is_none() || !ram.covers(range.start, range.end()) {
                continue;
            }
            if let Some((k, _)) = taken.iter().enumerate().find(|(_, t)| t.overlaps(&range)) {
                if k == 0 && !hv_explicit {
                    cx.error(
                        "A03",
                        format!(
                            "VM `{}`: hpa_region {}..{:#x} overlaps the hypervisor's RAM {:#x}..{:#x} (placed by the allocator)",
                            v.name,
                            r.start_hpa,
                            range.end(),
                            alloc.hv_ram.start,
                            alloc.hv_ram.end()
                        ),
                        at,
                        "move the region, or set HV_RAM_START so the hypervisor lives elsewhere",
                    );
                }
                continue;
            }
            taken.push(range);
            free.remove_range(range);
            chunks[k].push(range);
        }
    }

    // Then memory/size, first fit from RAM >= 4 GiB (or, on boards without any, from RAM
    // below 4 GiB above the hypervisor).
    let high = free.clip(FOUR_GB, u64::MAX);
    let use_high = !board_ram(cx).clip(FOUR_GB, u64::MAX).is_empty();
    let mut pool = if use_high {
        high
    } else {
        free.clip(alloc.hv_ram.end(), FOUR_GB)
    };
    for (k, v) in alloc.vms.iter().enumerate() {
        if v.load_order != LoadOrder::PreLaunched || !chunks[k].is_empty() {
            continue;
        }
        let vm = &cx.scenario.vm[v.index];
        let explicit = vm.memory.as_ref().is_some_and(|m| !m.hpa_region.is_empty());
        if explicit {
            continue; // its regions were rejected above
        }
        let mb = vm.memory_size_mb();
        let at = cx.vm_at(v.index, "memory/size");
        let Some(size) = mb.checked_mul(MB).filter(|s| *s > 0) else {
            cx.error(
                "A04",
                format!("VM `{}` asks for no memory", v.name),
                at,
                "set memory/size (MB)",
            );
            continue;
        };
        match take_memory(&mut pool, size) {
            Some(c) => {
                for r in &c {
                    free.remove_range(*r);
                }
                chunks[k] = c;
            }
            None => {
                let where_ = if use_high {
                    "at or above 4 GiB"
                } else {
                    "above the hypervisor's RAM"
                };
                cx.error(
                    "A04",
                    format!(
                        "not enough RAM for VM `{}`: it asks for {mb} MB, {} MB are free {where_}",
                        v.name,
                        pool.total() / MB
                    ),
                    at,
                    "lower memory/size of this or earlier pre-launched VMs",
                );
            }
        }
    }
    for (v, c) in alloc.vms.iter_mut().zip(&chunks) {
        v.memory = guest_layout(c);
        v.memory_size = c.iter().map(|r| r.size).sum();
    }

    ivshmem_regions(cx, alloc, &mut free);

    for v in &mut alloc.vms {
        match v.load_order {
            LoadOrder::Service => {
                v.service_ram = free.clip(MB, u64::MAX).iter().collect();
                v.memory_size = v.service_ram.iter().map(|r| r.size).sum();
            }
            LoadOrder::PostLaunched => {
                let vm = &cx.scenario.vm[v.index];
                v.memory_size = vm.memory_size_mb().saturating_mul(MB);
            }
            LoadOrder::PreLaunched => {}
        }
    }
}

/// `size` bytes from `pool`: one 2 MiB-aligned piece when some range is big enough, else
/// pieces from the lowest ranges up (as ACRN's allocator, which may split a VM's memory).
fn take_memory(pool: &mut RangeSet, size: u64) -> Option<Vec<Range>> {
    if let Some(at) = pool.take_first(size, ALIGN_2M) {
        return Some(vec![Range::new(at, size)]);
    }
    let mut left = size;
    let mut out = Vec::new();
    for r in pool.iter() {
        let start = align_up(r.start, ALIGN_2M)?;
        let avail = r.end().saturating_sub(start) & !(ALIGN_2M - 1);
        if avail == 0 {
            continue;
        }
        let n = avail.min(left);
        out.push(Range::new(start, n));
        left -= n;
        if left == 0 {
            break;
        }
    }
    if left != 0 {
        return None;
    }
    for r in &out {
        pool.remove_range(*r);
    }
    Some(out)
}

/// Lays host chunks out in guest-physical order from GPA 0, skipping the MMIO hole.
fn guest_layout(chunks: &[Range]) -> Vec<MemRegion> {
    let mut out = Vec::new();
    let mut gpa = 0u64;
    for c in chunks {
        let (mut hpa, mut left) = (c.start, c.size);
        while left > 0 {
            if gpa == GUEST_LOW_RAM_END {
                gpa = FOUR_GB;
            }
            let room = if gpa < GUEST_LOW_RAM_END {
                GUEST_LOW_RAM_END - gpa
            } else {
                left
            };
            let n = room.min(left);
            out.push(MemRegion { gpa, hpa, size: n });
            gpa += n;
            hpa += n;
            left -= n;
        }
    }
    out
}

/// Hypervisor-provided IVSHMEM regions: carved from the top of the RAM still free (ACRN
/// takes them from the top of RAM at boot), 2 MiB aligned.
fn ivshmem_regions(cx: &mut Ctx, alloc: &mut Allocation, free: &mut RangeSet) {
    let Some(iv) = cx
        .scenario
        .hv
        .features
        .as_ref()
        .and_then(|f| f.ivshmem.as_ref())
    else {
        return;
    };
    for (i, r) in iv.regions.iter().enumerate() {
        if r.provided_by == Some(ProvidedBy::DeviceModel) {
            continue;
        }
        let path = format!("FEATURES/IVSHMEM/IVSHMEM_REGION[{i}]");
        let region_id = match r.region_id.as_deref().unwrap_or("0").trim().parse::<u32>() {
            Ok(id) => id,
            Err(_) => {
                cx.error(
                    "A05",
                    format!(
                        "IVSHMEM region `{}`: IVSHMEM_REGION_ID is not a number",
                        r.name
                    ),
                    cx.hv_at(&format!("{path}/IVSHMEM_REGION_ID")),
                    "use a small integer, unique among regions",
                );
                continue;
            }
        };
        let size = u64::from(r.size_mb.unwrap_or(2)) * MB;
        let Some(at) = free.last_fit(size, ALIGN_2M) else {
            cx.error(
                "A05",
                format!(
                    "no free RAM left for IVSHMEM region `{}` ({} MB)",
                    r.name,
                    size / MB
                ),
                cx.hv_at(&format!("{path}/IVSHMEM_SIZE")),
                "make the region or the pre-launched VMs smaller",
            );
            continue;
        };
        free.remove(at, at + size);
        alloc.ivshmem_regions.push(IvshmemRegionAlloc {
            name: r.name.clone(),
            region_id,
            hpa: Range::new(at, size),
            vms: r.vms.vm.iter().map(|m| m.vm_name.clone()).collect(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_layout_skips_the_mmio_hole() {
        let l = guest_layout(&[Range::new(0x1_0000_0000, 0x8000_0000)]);
        assert_eq!(
            l,
            vec![
                MemRegion {
                    gpa: 0,
                    hpa: 0x1_0000_0000,
                    size: GUEST_LOW_RAM_END
                },
                MemRegion {
                    gpa: FOUR_GB,
                    hpa: 0x1_0000_0000 + GUEST_LOW_RAM_END,
                    size: 0x8000_0000 - GUEST_LOW_RAM_END
                },
            ]
        );
    }

    #[test]
    fn take_memory_splits_only_when_needed() {
        let mut pool = RangeSet::new();
        pool.insert(0x20_0000, 0x60_0000);
        pool.insert(0x100_0000, 0x140_0000);
        assert_eq!(
            take_memory(&mut pool, 0x20_0000),
            Some(vec![Range::new(0x20_0000, 0x20_0000)])
        );
        // 2 MiB left in the first range, 4 MiB in the second: 6 MiB needs both.
        assert_eq!(
            take_memory(&mut pool, 0x60_0000),
            Some(vec![
                Range::new(0x40_0000, 0x20_0000),
                Range::new(0x100_0000, 0x40_0000)
            ])
        );
        assert!(pool.is_empty());
        assert_eq!(take_memory(&mut pool, 0x20_0000), None);
    }
}
