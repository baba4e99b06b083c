//! The template context: every value pre-formatted as the Rust (or Markdown) text the
//! templates print, so the templates hold layout only.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::alloc::{Allocation, Console, Range, RangeSet, Serial, VmAlloc, VuartKind};
use crate::board::{Bdf, Board, CoreType};
use crate::scenario::{self, BuildType, KernType, LoadOrder, Scenario, Vbdf, VmType};

const MB: u64 = 1 << 20;

fn hex(v: u64) -> String {
    format!("{v:#x}")
}

fn bdf_expr(b: Vbdf) -> String {
    format!("Bdf::new({}, {:#x}, {})", b.bus, b.dev, b.func)
}

fn pbdf_expr(b: Bdf) -> String {
    format!("Bdf::new({}, {:#x}, {})", b.bus, b.device, b.function)
}

fn opt_hex(v: Option<scenario::Hex>) -> String {
    v.map_or("None".into(), |h| format!("Some({})", hex(h.0)))
}

fn size_text(bytes: u64) -> String {
    if bytes >= MB && bytes.is_multiple_of(MB) {
        format!("{} MiB", bytes / MB)
    } else if bytes >= MB {
        format!("{:.1} MiB", bytes as f64 / MB as f64)
    } else {
        format!("{} KiB", bytes / 1024)
    }
}

/// Whitespace-collapsed boot arguments (scenario files wrap long command lines; a newline
/// must not reach the kernel).
pub(crate) fn bootargs(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn board_ram(board: &Board) -> RangeSet {
    let mut s = RangeSet::new();
    for r in board.ram_ranges() {
        s.insert(r.start, r.end.saturating_add(1));
    }
    s
}

const FLAG_NAMES: [(u64, &str); 15] = {
    use acrn_static_config::GuestFlags as F;
    [
        (F::SECURE_WORLD_ENABLED, "SECURE_WORLD_ENABLED"),
        (F::LAPIC_PASSTHROUGH, "LAPIC_PASSTHROUGH"),
        (F::IO_COMPLETION_POLLING, "IO_COMPLETION_POLLING"),
        (F::HIDE_MTRR, "HIDE_MTRR"),
        (F::RT, "RT"),
        (F::NVMX_ENABLED, "NVMX_ENABLED"),
        (F::SECURITY_VM, "SECURITY_VM"),
        (F::VCAT_ENABLED, "VCAT_ENABLED"),
        (F::STATIC_VM, "STATIC_VM"),
        (F::TEE, "TEE"),
        (F::REE, "REE"),
        (F::PMU_PASSTHROUGH, "PMU_PASSTHROUGH"),
        (F::VHWP, "VHWP"),
        (F::VTM, "VTM"),
        (F::STATELESS, "STATELESS"),
    ]
};

fn flag_names(bits: u64) -> Vec<&'static str> {
    FLAG_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect()
}

fn core_type(c: Option<CoreType>) -> &'static str {
    match c {
        Some(CoreType::Core) => "Core",
        Some(CoreType::Atom) => "Atom",
        _ => "Unknown",
    }
}

pub(crate) fn load_order_variant(lo: LoadOrder) -> &'static str {
    match lo {
        LoadOrder::PreLaunched => "PreLaunched",
        LoadOrder::Service => "Service",
        LoadOrder::PostLaunched => "PostLaunched",
    }
}

fn console_expr(c: Console) -> String {
    match c {
        Console::None => "ConsoleVuart::None".into(),
        Console::Legacy { port, irq } => {
            format!("ConsoleVuart::Legacy {{ port: {port:#x}, irq: {irq} }}")
        }
        Console::Pci { vbdf, bar0, bar1 } => format!(
            "ConsoleVuart::Pci {{ vbdf: {}, bar0: {bar0:#x}, bar1: {bar1:#x} }}",
            bdf_expr(vbdf)
        ),
    }
}

fn console_text(c: Console) -> String {
    match c {
        Console::None => "none".into(),
        Console::Legacy { port, irq } => format!("legacy 16550 at port {port:#x}, IRQ {irq}"),
        Console::Pci { vbdf, bar0, bar1 } => {
            format!("PCI 16550 at {vbdf} (BAR0 {bar0:#x}, BAR1 {bar1:#x})")
        }
    }
}

fn vuart_expr(k: VuartKind) -> String {
    match k {
        VuartKind::Legacy { port, irq } => {
            format!("VuartKind::Legacy {{ port: {port:#x}, irq: {irq} }}")
        }
        VuartKind::Pci { vbdf, bar0, bar1 } => {
            format!(
                "VuartKind::Pci {{ vbdf: {}, bar0: {}, bar1: {} }}",
                bdf_expr(vbdf),
                hex(bar0),
                hex(bar1)
            )
        }
    }
}

fn vuart_text(k: VuartKind) -> String {
    match k {
        VuartKind::Legacy { port, irq } => format!("legacy port {port:#x} IRQ {irq}"),
        VuartKind::Pci { vbdf, bar0, bar1 } => {
            format!("PCI {vbdf} BAR0 `{}` BAR1 `{}`", hex(bar0), hex(bar1))
        }
    }
}

pub(crate) fn pcpu_mask(pcpus: &[u32]) -> u64 {
    pcpus
        .iter()
        .filter(|c| **c < 64)
        .fold(0u64, |m, c| m | (1 << c))
}

pub(crate) fn build(board: &Board, s: &Scenario, a: &Allocation, scenario_name: &str) -> Value {
    let pcpus = board.pcpus();
    let hv = &s.hv;
    let features = hv.features.clone().unwrap_or_default();
    let caps = hv.capacities.clone().unwrap_or_default();
    let release = hv.build_type == Some(BuildType::Release);
    let scheduler = match features.scheduler.unwrap_or(scenario::Scheduler::Bvt) {
        scenario::Scheduler::Noop => "Noop",
        scenario::Scheduler::Iorr => "Iorr",
        scenario::Scheduler::Bvt => "Bvt",
        scenario::Scheduler::Prio => "Prio",
    };
    let loglevel = hv
        .debug_options
        .as_ref()
        .and_then(|d| d.console_loglevel)
        .unwrap_or(5)
        .min(5);
    let serial = match a.serial {
        None => "None".to_string(),
        Some(Serial::Pio { base, irq }) => {
            format!("Some(SerialPort::Pio {{ base: {base:#x}, irq: {irq} }})")
        }
        Some(Serial::Mmio {
            base,
            reg_width,
            irq,
        }) => {
            format!(
                "Some(SerialPort::Mmio {{ base: {base:#x}, reg_width: {reg_width}, irq: {irq} }})"
            )
        }
    };
    let serial_text = match a.serial {
        None => "none".to_string(),
        Some(Serial::Pio { base, irq }) => format!("16550 at port {base:#x}, IRQ {irq}"),
        Some(Serial::Mmio {
            base,
            reg_width,
            irq,
        }) => format!("MMIO 16550 at {base:#x} (registers {reg_width} byte(s) apart), IRQ {irq}"),
    };
    let mmcfg = match board.mmcfg_base() {
        None => "None".to_string(),
        Some(base) => {
            let (sb, eb) = board
                .legacy
                .iomem_mmcfg
                .map_or((0, 255), |m| (m.bus_start, m.bus_end));
            format!("Some(Mmcfg {{ base: {base:#x}, start_bus: {sb}, end_bus: {eb} }})")
        }
    };
    // IOAPIC ids are 8-bit by definition; the low byte is the id the MADT carries.
    let ioapics: Vec<Value> = board
        .ioapics
        .iter()
        .map(|i| json!({"id": i.id & 0xff, "address": hex(i.address), "gsi_base": i.gsi_base, "gsi_count": i.gsi_number}))
        .collect();

    let vms: Vec<Value> = a.vms.iter().map(|v| vm_context(s, a, v)).collect();

    // Report: pCPU owners, memory map, IVSHMEM.
    let cpu_owners: Vec<Value> = pcpus
        .iter()
        .map(|p| {
            let owners: Vec<String> = a
                .vms
                .iter()
                .filter(|v| v.pcpus.contains(&p.cpu_id))
                .map(|v| v.name.clone())
                .collect();
            json!({"id": p.cpu_id, "apic_id": p.apic_id, "core_type": core_type(p.core_type),
                   "owners": if owners.is_empty() { "-".into() } else { owners.join(", ") }})
        })
        .collect();
    let mut map: BTreeMap<u64, (Range, String)> = BTreeMap::new();
    map.insert(a.hv_ram.start, (a.hv_ram, "hypervisor".into()));
    for v in &a.vms {
        for m in &v.memory {
            map.insert(
                m.hpa,
                (Range::new(m.hpa, m.size), format!("VM {} {}", v.id, v.name)),
            );
        }
        for r in &v.service_ram {
            map.insert(
                r.start,
                (*r, format!("VM {} {} (Service VM)", v.id, v.name)),
            );
        }
    }
    for r in &a.ivshmem_regions {
        map.insert(r.hpa.start, (r.hpa, format!("IVSHMEM `{}`", r.name)));
    }
    let mut free = board_ram(board);
    for (r, _) in map.values() {
        free.remove_range(*r);
    }
    for r in free.iter() {
        map.insert(r.start, (r, "unassigned".into()));
    }
    let memory_map: Vec<Value> = map
        .values()
        .map(|(r, o)| json!({"start": hex(r.start), "end": hex(r.end()), "size": size_text(r.size), "owner": o}))
        .collect();
    let ivshmem: Vec<Value> = a
        .ivshmem_regions
        .iter()
        .map(|r| {
            json!({"name": r.name, "region_id": r.region_id, "start": hex(r.hpa.start), "end": hex(r.hpa.end()),
                   "size": size_text(r.hpa.size), "vms": r.vms.join(", ")})
        })
        .collect();

    json!({
        "board_name": board.name,
        "scenario_name": scenario_name,
        "serial_text": serial_text,
        "board": {
            "pcpus": pcpus.iter().map(|p| json!({"id": p.cpu_id, "apic_id": hex(u64::from(p.apic_id)), "core_type": core_type(p.core_type)})).collect::<Vec<_>>(),
            "ram": board_ram(board).iter().map(|r| json!({"start": hex(r.start), "size": hex(r.size)})).collect::<Vec<_>>(),
            "serial": serial,
            "ioapics": ioapics,
            "mmcfg": mmcfg,
            "pci_root": board.pci_root_bridge().map(|r| json!({
                "first_bus": r.buses.0,
                "last_bus": r.buses.1,
                "mmio": r.mmio.iter().map(|(a, b)| [hex(*a), hex(*b)]).collect::<Vec<_>>(),
                "intx_routes": r.intx_routes.iter().map(|i| json!({"device": i.device, "pin": i.pin, "gsi": i.gsi})).collect::<Vec<_>>(),
            })),
            "physical_address_bits": board.physical_address_bits().unwrap_or(39).min(64),
        },
        "hv": {
            "ram_start": hex(a.hv_ram.start),
            "ram_end": hex(a.hv_ram.end()),
            "ram_size": hex(a.hv_ram.size),
            "ram_mib": a.hv_ram.size / MB,
            "stack_size": hex(hv.memory.as_ref().and_then(|m| m.stack_size).map_or(0x2000, |h| h.0)),
            "release": if release { "true" } else { "false" },
            "scheduler": scheduler,
            "console_loglevel": loglevel,
            "max_vm_num": caps.max_vm_num.unwrap_or(16).min(u32::from(u16::MAX)),
            "ivshmem_regions": a.ivshmem_regions.iter().map(|r| json!({"name": r.name, "start": hex(r.hpa.start), "size": hex(r.hpa.size), "region_id": r.region_id})).collect::<Vec<_>>(),
            "vuart_rx_buf_size": features.vuart_rx_buf_size.unwrap_or(256),
            "vuart_tx_buf_size": features.vuart_tx_buf_size.unwrap_or(8192),
        },
        "vms": vms,
        "cpu_owners": cpu_owners,
        "memory_map": memory_map,
        "ivshmem": ivshmem,
    })
}

fn vm_context(s: &Scenario, a: &Allocation, v: &VmAlloc) -> Value {
    let vm = &s.vm[v.index];
    let vm_type = match vm.vm_type.unwrap_or(VmType::Standard) {
        VmType::Standard => "Standard",
        VmType::Rtvm => "RealTime",
        VmType::Tee => "Tee",
        VmType::Ree => "Ree",
    };
    let names = flag_names(v.guest_flags);
    let flags_expr = if names.is_empty() {
        "0".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("GuestFlags::{n}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    // Post-launched VMs get their kernel from the device model, not from the tables.
    let os = vm
        .os_config
        .as_ref()
        .filter(|_| v.load_order != LoadOrder::PostLaunched)
        .map(|o| {
            let kern_type = match o.kern_type.unwrap_or(KernType::BzImage) {
                KernType::BzImage => "BzImage",
                KernType::RawImage => "RawImage",
                KernType::Elf => "Elf",
            };
            json!({
                "kern_type": kern_type,
                "kern_mod": o.kern_mod.as_deref().map(str::trim).unwrap_or("Linux_bzImage"),
                "ramdisk_mod": o.ramdisk_mod.as_deref().map(str::trim).filter(|r| !r.is_empty()),
                "bootargs": bootargs(o.bootargs.as_deref().unwrap_or("")),
                "kern_load_addr": opt_hex(o.kern_load_addr),
                "kern_entry_addr": opt_hex(o.kern_entry_addr),
            })
        });
    let companion = vm
        .companion_vmid
        .filter(|c| *c != 65535)
        .and_then(|c| u16::try_from(c).ok())
        .map_or("None".to_string(), |c| format!("Some({c})"));
    let priority = if vm.priority == Some(scenario::Priority::High) {
        "High"
    } else {
        "Low"
    };
    // The checks keep these in ACRN's ranges; clamping here keeps the generated Rust compiling
    // (the fields are u8/i16) even for a scenario that skipped them.
    let bvt = json!({
        "weight": vm.bvt_weight.unwrap_or(1).clamp(1, 128),
        "warp_value": vm.bvt_warp_value.unwrap_or(0).clamp(-8192, 8192),
        "warp_limit": vm.bvt_warp_limit.unwrap_or(0).min(10),
        "unwarp_period": vm.bvt_unwarp_period.unwrap_or(0).min(10),
    });
    let region_name = |i: u16| {
        a.ivshmem_regions
            .get(usize::from(i))
            .map_or("?", |r| r.name.as_str())
    };
    let memory_text = match v.load_order {
        LoadOrder::PreLaunched => format!(
            "{} in {} region(s)",
            size_text(v.memory_size),
            v.memory.len()
        ),
        LoadOrder::Service => format!(
            "{} (all RAM no one else owns, identity-mapped)",
            size_text(v.memory_size)
        ),
        LoadOrder::PostLaunched => format!(
            "{} (mapped by the Service VM at launch)",
            size_text(v.memory_size)
        ),
    };
    json!({
        "id": v.id,
        "name": v.name,
        "load_order": load_order_variant(v.load_order),
        "load_order_text": v.load_order.as_str(),
        "vm_type": vm_type,
        "guest_flags": flags_expr,
        "flag_names": names.join(", "),
        "pcpus": format!("{:#b}", pcpu_mask(&v.pcpus)),
        "pcpu_list": if v.pcpus.is_empty() { "none".into() } else { v.pcpus.iter().map(u32::to_string).collect::<Vec<_>>().join(", ") },
        "memory": v.memory.iter().map(|m| json!({"gpa": hex(m.gpa), "hpa": hex(m.hpa), "size": hex(m.size)})).collect::<Vec<_>>(),
        "memory_rows": v.memory.iter().map(|m| json!({"gpa": hex(m.gpa), "hpa": hex(m.hpa), "size": size_text(m.size)})).collect::<Vec<_>>(),
        "memory_size": hex(v.memory_size),
        "memory_text": memory_text,
        "os": os,
        "kern_mod": os.as_ref().and_then(|o| o["kern_mod"].as_str().map(str::to_string)),
        "ramdisk_mod": os.as_ref().and_then(|o| o["ramdisk_mod"].as_str().map(str::to_string)),
        "console": console_expr(v.console),
        "console_text": console_text(v.console),
        "vuarts": v.vuarts.iter().map(|u| json!({"kind": vuart_expr(u.kind), "peer_vm": u.peer_vm, "peer_index": u.peer_index})).collect::<Vec<_>>(),
        "vuart_rows": v.vuarts.iter().map(|u| json!({"connection": u.connection, "text": vuart_text(u.kind), "peer_vm": u.peer_vm, "peer_index": u.peer_index})).collect::<Vec<_>>(),
        "ivshmem": v.ivshmem.iter().map(|d| json!({"region": d.region, "vbdf": bdf_expr(d.vbdf), "bars": d.bars.iter().map(|b| hex(*b)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "ivshmem_rows": v.ivshmem.iter().map(|d| json!({"region": region_name(d.region), "vbdf": d.vbdf.to_string(), "bar0": hex(d.bars[0]), "bar1": hex(d.bars[1]), "bar2": hex(d.bars[2])})).collect::<Vec<_>>(),
        "pci_devs": v.pci_devs.iter().map(|d| json!({"pbdf": pbdf_expr(d.pbdf), "vbdf": bdf_expr(d.vbdf), "vbars": d.vbars.iter().map(|b| hex(*b)).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "pt_rows": v.pci_devs.iter().map(|d| {
            let bars: Vec<String> = d.vbars.iter().enumerate().filter(|(_, b)| **b != 0).map(|(i, b)| format!("{i}: `{}`", hex(*b))).collect();
            json!({"pbdf": d.pbdf.to_string(), "vbdf": d.vbdf.to_string(), "description": d.description, "bars": bars.join(", ")})
        }).collect::<Vec<_>>(),
        "pt_intx": v.pt_intx.iter().map(|(p, q)| json!([p, q])).collect::<Vec<_>>(),
        "pt_intx_text": v.pt_intx.iter().map(|(p, q)| format!("({p}, {q})")).collect::<String>(),
        "priority": priority,
        "bvt": bvt,
        "companion_vm": companion,
    })
}
