//! Virtual PCI: BDFs (ACRN `bdf.py`) and BAR placement (`gpa.py`) for IVSHMEM devices, PCI
//! vUARTs, a PCI console and pass-through devices.

use std::collections::{BTreeMap, BTreeSet};

use super::ranges::RangeSet;
use super::{Allocation, Console, Ctx, IvshmemDevAlloc, PtDevAlloc, VuartKind};
use crate::board::{Bdf, NodeKind};
use crate::scenario::{ConsoleVuart, LoadOrder, Vbdf};

const MB: u64 = 1 << 20;
const PAGE: u64 = 0x1000;
/// MMIO windows of pre-launched (and, here, post-launched) VMs: 2 GiB..3.5 GiB, 256..512 GiB.
// The hypervisor's ACPI host bridge announces these windows (hypervisor/src/devices/pci
// BAR_WINDOW_LOW/HIGH): keep both in step.
pub(crate) const USER_LOW_MMIO: (u64, u64) = (0x8000_0000, 0xE000_0000);
pub(crate) const USER_HIGH_MMIO: (u64, u64) = (0x40_0000_0000, 0x80_0000_0000);
/// Pass-through devices ACRN keeps at their native BDF.
const HARDCODED_BDFS: [Bdf; 1] = [Bdf {
    bus: 0,
    device: 0x0e,
    function: 0,
}];

/// What occupies a virtual PCI slot of one VM.
#[derive(Clone, Copy)]
enum Item {
    Ivshmem(usize),
    Vuart(usize),
    Pt(usize),
    Console,
}

struct Slots {
    /// Device numbers not available at all (host bridge, the Service VM's native devices).
    reserved: BTreeSet<u8>,
    taken: BTreeSet<Vbdf>,
}

impl Slots {
    fn claim(&mut self, b: Vbdf) -> Result<(), &'static str> {
        if b.bus == 0 && self.reserved.contains(&b.dev) {
            return Err("a device of the platform is at that slot");
        }
        if !self.taken.insert(b) {
            return Err("another virtual device of this VM already uses it");
        }
        Ok(())
    }
    /// Lowest free device number 1..=0x1f on bus 0, function 0.
    fn next(&mut self) -> Option<Vbdf> {
        let dev = (1u8..=0x1f).find(|d| {
            !self.reserved.contains(d) && !self.taken.iter().any(|b| b.bus == 0 && b.dev == *d)
        })?;
        let b = Vbdf {
            bus: 0,
            dev,
            func: 0,
        };
        self.taken.insert(b);
        Some(b)
    }
}

/// One BAR to place.
struct BarReq {
    size: u64,
    is64: bool,
    item: Item,
    bar: usize,
}

pub(super) fn devices(cx: &mut Ctx, alloc: &mut Allocation) {
    let board = cx.board;
    // Pass-through devices of every VM, parsed once.
    let mut pt: Vec<Vec<(Bdf, String)>> = vec![Vec::new(); alloc.vms.len()];
    for (k, v) in alloc.vms.iter().enumerate() {
        let devs = cx.scenario.vm[v.index]
            .pci_devs
            .as_ref()
            .map(|p| p.pci_dev.clone())
            .unwrap_or_default();
        for (i, text) in devs.iter().enumerate() {
            let at = cx.vm_at(v.index, &format!("pci_devs/pci_dev[{i}]"));
            let first = text.split_whitespace().next().unwrap_or("");
            match first.parse::<Bdf>() {
                Ok(b) if board.pci_function(b).is_some() => {
                    pt[k].push((b, text.trim().to_string()))
                }
                // Only in the board's legacy PCI_DEVICE list: validation (X02) accepts it,
                // but the BARs needed for the tables are missing.
                Ok(b) if board.legacy.pci_devices.iter().any(|d| d.bdf == b) => cx.error(
                    "A10",
                    format!(
                        "VM `{}`: pass-through device {b} has no PCI details (BARs) in board `{}`",
                        v.name, board.name
                    ),
                    at,
                    "regenerate the board file with ACRN's board inspector so <devices> lists it",
                ),
                // Not a BDF (X01) or not on the board (X02): validation reported it.
                _ => {}
            }
        }
    }
    let pre_pt: BTreeSet<Bdf> = alloc
        .vms
        .iter()
        .zip(&pt)
        .filter(|(v, _)| v.load_order == LoadOrder::PreLaunched)
        .flat_map(|(_, p)| p.iter().map(|(b, _)| *b))
        .collect();
    // Native bus-0 device numbers the Service VM keeps: all but those whose every function
    // went to pre-launched VMs (ACRN frees a number if any function went; that can clash
    // with the functions left behind).
    let mut native: BTreeMap<u8, bool> = BTreeMap::new();
    for n in board.pci_functions() {
        if let Some(b) = n.bdf.filter(|b| b.bus == 0) {
            let kept = !pre_pt.contains(&b);
            *native.entry(b.device).or_insert(false) |= kept;
        }
    }
    let service_reserved: BTreeSet<u8> = native
        .iter()
        .filter(|(_, k)| **k)
        .map(|(d, _)| *d)
        .collect();
    let service_windows = service_mmio(cx, &pre_pt);

    let regions: BTreeMap<&str, u16> = alloc
        .ivshmem_regions
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i as u16))
        .collect();

    for (k, pt_k) in pt.iter().enumerate() {
        let (index, name, lo) = (
            alloc.vms[k].index,
            alloc.vms[k].name.clone(),
            alloc.vms[k].load_order,
        );
        let vm = &cx.scenario.vm[index];
        let mut slots = Slots {
            reserved: BTreeSet::from([0]),
            taken: BTreeSet::new(),
        };
        if lo == LoadOrder::Service {
            slots.reserved.extend(&service_reserved);
        }
        // (item, configured vBDF, span path for messages)
        let mut items: Vec<(Item, Option<Vbdf>, Option<crate::diag::Location>)> = Vec::new();
        let mut ivshmem = Vec::new();
        if let Some(iv) = cx
            .scenario
            .hv
            .features
            .as_ref()
            .and_then(|f| f.ivshmem.as_ref())
        {
            for (ri, r) in iv.regions.iter().enumerate() {
                let Some(&region) = regions.get(r.name.as_str()) else {
                    continue;
                };
                for (mi, m) in r
                    .vms
                    .vm
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| m.vm_name == name)
                {
                    let at = cx.hv_at(&format!(
                        "FEATURES/IVSHMEM/IVSHMEM_REGION[{ri}]/IVSHMEM_VMS/IVSHMEM_VM[{mi}]/VBDF"
                    ));
                    items.push((Item::Ivshmem(ivshmem.len()), m.vbdf, at));
                    ivshmem.push(IvshmemDevAlloc {
                        region,
                        vbdf: Vbdf {
                            bus: 0,
                            dev: 0,
                            func: 0,
                        },
                        bars: [0; 3],
                    });
                }
            }
        }
        for (i, va) in alloc.vms[k].vuarts.iter().enumerate() {
            if matches!(va.kind, VuartKind::Pci { .. }) {
                let (c, e) = va.endpoint;
                let conn = &cx
                    .scenario
                    .hv
                    .vuart_connections
                    .as_ref()
                    .map(|v| &v.connections[c]);
                let configured = conn.and_then(|c| c.endpoints[e].vbdf);
                let at = cx.hv_at(&format!(
                    "vuart_connections/vuart_connection[{c}]/endpoint[{e}]/vbdf"
                ));
                items.push((Item::Vuart(i), configured, at));
            }
        }
        let mut pci_devs: Vec<PtDevAlloc> = Vec::new();
        for (i, (b, text)) in pt_k.iter().enumerate() {
            let keep = HARDCODED_BDFS.contains(b).then_some(Vbdf {
                bus: b.bus,
                dev: b.device,
                func: b.function,
            });
            items.push((
                Item::Pt(i),
                keep,
                cx.vm_at(index, &format!("pci_devs/pci_dev[{i}]")),
            ));
            pci_devs.push(PtDevAlloc {
                pbdf: *b,
                vbdf: Vbdf {
                    bus: 0,
                    dev: 0,
                    func: 0,
                },
                vbars: [0; 6],
                description: text.clone(),
            });
        }
        if vm.console_vuart == Some(ConsoleVuart::Pci) {
            items.push((Item::Console, None, cx.vm_at(index, "console_vuart")));
        }

        // Configured addresses first, then the rest in order.
        let mut assigned: Vec<(Item, Vbdf)> = Vec::new();
        for (item, conf, at) in &items {
            if let Some(b) = conf {
                match slots.claim(*b) {
                    Ok(()) => assigned.push((*item, *b)),
                    Err(why) => cx.error(
                        "A07",
                        format!("VM `{name}`: virtual BDF {b} cannot be used: {why}"),
                        at.clone(),
                        "choose a free device number (see the VM's devices in the board file)",
                    ),
                }
            }
        }
        for (item, conf, at) in &items {
            if conf.is_none() {
                match slots.next() {
                    Some(b) => assigned.push((*item, b)),
                    None => cx.error(
                        "A07",
                        format!("VM `{name}`: no free virtual PCI slot on bus 0 (all 31 device numbers are used)"),
                        at.clone(),
                        "pass through or share fewer devices with this VM",
                    ),
                }
            }
        }
        let v = &mut alloc.vms[k];
        for (item, b) in assigned {
            match item {
                Item::Ivshmem(i) => ivshmem[i].vbdf = b,
                Item::Vuart(i) => {
                    if let VuartKind::Pci { vbdf, .. } = &mut v.vuarts[i].kind {
                        *vbdf = b;
                    }
                }
                Item::Pt(i) => pci_devs[i].vbdf = b,
                Item::Console => {
                    v.console = Console::Pci {
                        vbdf: b,
                        bar0: 0,
                        bar1: 0,
                    }
                }
            }
        }

        // BARs.
        let mut reqs = Vec::new();
        for (i, d) in ivshmem.iter().enumerate() {
            let size = alloc.ivshmem_regions[d.region as usize].hpa.size;
            reqs.push(BarReq {
                size: PAGE,
                is64: false,
                item: Item::Ivshmem(i),
                bar: 0,
            });
            reqs.push(BarReq {
                size: PAGE,
                is64: false,
                item: Item::Ivshmem(i),
                bar: 1,
            });
            reqs.push(BarReq {
                size,
                is64: true,
                item: Item::Ivshmem(i),
                bar: 2,
            });
        }
        for (i, va) in v.vuarts.iter().enumerate() {
            if matches!(va.kind, VuartKind::Pci { .. }) {
                reqs.push(BarReq {
                    size: PAGE,
                    is64: false,
                    item: Item::Vuart(i),
                    bar: 0,
                });
                reqs.push(BarReq {
                    size: PAGE,
                    is64: false,
                    item: Item::Vuart(i),
                    bar: 1,
                });
            }
        }
        if matches!(v.console, Console::Pci { .. }) {
            for bar in 0..2 {
                reqs.push(BarReq {
                    size: PAGE,
                    is64: false,
                    item: Item::Console,
                    bar,
                });
            }
        }
        for (i, d) in pci_devs.iter_mut().enumerate() {
            let Some(node) = board.pci_function(d.pbdf) else {
                continue;
            };
            for r in node.bars() {
                let (Some(bar), Some(min)) = (r.bar_index().map(usize::from), r.min) else {
                    continue;
                };
                if bar >= 6 {
                    continue;
                }
                if r.kind == "io_port" {
                    d.vbars[bar] = min; // I/O BARs are passed through 1:1
                } else if r.kind == "memory" && min >= MB {
                    let size = r
                        .len
                        .filter(|l| *l > 0)
                        .or_else(|| r.max.map(|m| m.saturating_sub(min) + 1))
                        .unwrap_or(PAGE);
                    reqs.push(BarReq {
                        size,
                        is64: r.width == Some(64),
                        item: Item::Pt(i),
                        bar,
                    });
                }
            }
        }
        if reqs.is_empty() {
            v.ivshmem = ivshmem;
            v.pci_devs = pci_devs;
            continue;
        }
        // Sizes descending; ties keep the order above (stable sort).
        reqs.sort_by_key(|r| std::cmp::Reverse(r.size));
        let (mut low, mut high) = match lo {
            LoadOrder::Service => service_windows.clone(),
            _ => {
                let mut l = RangeSet::new();
                l.insert(USER_LOW_MMIO.0, USER_LOW_MMIO.1);
                let mut h = RangeSet::new();
                h.insert(USER_HIGH_MMIO.0, USER_HIGH_MMIO.1);
                (l, h)
            }
        };
        let mut failed = false;
        for r in &reqs {
            let size = r
                .size
                .max(PAGE)
                .checked_next_power_of_two()
                .unwrap_or(u64::MAX);
            let at = if r.is64 {
                high.take_first(size, size)
                    .or_else(|| low.take_first(size, size))
            } else {
                low.take_first(size, size)
            };
            let Some(at) = at else {
                failed = true;
                continue;
            };
            match r.item {
                Item::Ivshmem(i) => ivshmem[i].bars[r.bar] = at,
                Item::Vuart(i) => {
                    if let VuartKind::Pci { bar0, bar1, .. } = &mut v.vuarts[i].kind {
                        *(if r.bar == 0 { bar0 } else { bar1 }) = at;
                    }
                }
                Item::Pt(i) => pci_devs[i].vbars[r.bar] = at,
                Item::Console => {
                    if let Console::Pci { bar0, bar1, .. } = &mut v.console {
                        *(if r.bar == 0 { bar0 } else { bar1 }) = at;
                    }
                }
            }
        }
        v.ivshmem = ivshmem;
        v.pci_devs = pci_devs;
        if failed {
            let total: u64 = reqs.iter().map(|r| r.size).sum();
            let msg = if lo == LoadOrder::Service && service_windows_empty(cx, &pre_pt) {
                format!("VM `{name}`: board `{}` lists no PCI memory window (host bridge resource) to place virtual BARs in", board.name)
            } else {
                format!(
                    "VM `{name}`: the MMIO window is full: {} BAR(s) totalling {} KiB do not fit",
                    reqs.len(),
                    total / 1024
                )
            };
            cx.error(
                "A08",
                msg,
                cx.vm_at(index, ""),
                "share fewer or smaller IVSHMEM regions / devices with this VM",
            );
        }
    }
}

fn service_windows_empty(cx: &Ctx, pre_pt: &BTreeSet<Bdf>) -> bool {
    let (l, h) = service_mmio(cx, pre_pt);
    l.is_empty() && h.is_empty()
}

/// The Service VM's MMIO windows (low < 4 GiB, high): the host bridge's memory windows
/// minus every memory range a device or bridge below it decodes, except the BARs of devices
/// passed through to pre-launched VMs (released, as in ACRN).
fn service_mmio(cx: &Ctx, pre_pt: &BTreeSet<Bdf>) -> (RangeSet, RangeSet) {
    let mut win = RangeSet::new();
    let mut used = RangeSet::new();
    for root in cx.board.device_nodes().filter(|n| {
        n.kind == NodeKind::Bus && n.bus_type.as_deref() == Some("pci") && n.address == Some(0)
    }) {
        for r in root
            .resources
            .iter()
            .filter(|r| r.kind == "memory" && r.width.is_none())
        {
            if let (Some(a), Some(b)) = (r.min, r.max) {
                if a >= MB && b >= a {
                    win.insert(a, b.saturating_add(1));
                }
            }
        }
        for n in root.children.iter().flat_map(|c| c.walk()) {
            if n.bdf.is_some_and(|b| pre_pt.contains(&b)) {
                continue;
            }
            for r in n.resources.iter().filter(|r| r.kind == "memory") {
                if let (Some(a), Some(b)) = (r.min, r.max) {
                    if b >= a {
                        used.insert(a, b.saturating_add(1));
                    }
                }
            }
        }
    }
    for r in used.iter() {
        win.remove_range(r);
    }
    (win.clip(0, 1 << 32), win.clip(1 << 32, u64::MAX))
}
