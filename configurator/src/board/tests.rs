//! Board model tests: the ACRN corpus boards and malformed inputs.

use std::path::{Path, PathBuf};

use super::*;

/// `ACRN_CORPUS`, else `../shared/acrn-corpus` beside the repository.
fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("ACRN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/acrn-corpus"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: ACRN corpus not found at {} (set ACRN_CORPUS)",
            dir.display()
        );
        None
    }
}

fn corpus_board(name: &str) -> Option<Board> {
    let path = corpus_dir()?.join(name).join(format!("{name}.xml"));
    Some(load_board(&path).unwrap_or_else(|e| panic!("{e}")))
}

#[test]
fn debug_summary() {
    for b in [
        "adl-asrock",
        "cfl-k700-i7",
        "generic_board",
        "nuc11tnbi5",
        "qemu",
        "tgl-vecow-spc-7100-Corei7",
        "whl-ipc-i5",
    ] {
        let Some(board) = corpus_board(b) else { return };
        let cores: Vec<_> = board
            .pcpus()
            .iter()
            .map(|p| format!("{}:{:#x}:{:?}", p.cpu_id, p.apic_id, p.core_type))
            .collect();
        println!("{b}: threads={} {:?}", board.threads().count(), cores);
        println!(
            "  serial={:?}",
            board
                .legacy
                .serial_ports
                .iter()
                .map(|s| (&s.dev_path, s.base, s.irq, s.bdf.map(|b| b.to_string())))
                .collect::<Vec<_>>()
        );
        println!(
            "  ram={} ranges={} iomem={} sysram={} mmcfg={:?} base={:?}",
            board.total_ram(),
            board.ram_ranges().count(),
            board.legacy.iomem.len(),
            board.iomem_system_ram().count(),
            board.legacy.iomem_mmcfg,
            board.legacy.mmcfg_base
        );
        println!(
            "  pci_fn={} lspci={} vidpid={} maxbus={} pa={:?} ioapics={:?}",
            board.pci_functions().count(),
            board.legacy.pci_devices.len(),
            board.legacy.pci_vid_pid.len(),
            board.max_pci_bus(),
            board.physical_address_bits(),
            board
                .ioapics
                .iter()
                .map(|i| (i.id, i.address, i.gsi_number))
                .collect::<Vec<_>>()
        );
        println!(
            "  caches={} cat={:?} irqs={:?} cpus={:?} mem={:?} msix={:?} brand={}",
            board.caches.caches.len(),
            board
                .cat_caches()
                .map(|c| (
                    c.level,
                    c.id,
                    c.cat.as_ref().unwrap().clos_number,
                    c.cat.as_ref().unwrap().cdp
                ))
                .collect::<Vec<_>>(),
            board.legacy.available_irqs,
            board.legacy.cpu_processors,
            board.legacy.total_mem_kb,
            board.legacy.max_msix_table_num,
            board.legacy.cpu_brand
        );
        println!(
            "  classes={:?}",
            board.device_classes.as_ref().map(|c| (
                c.inputs.len(),
                c.serials.iter().filter(|s| s.uart_type != "0").count()
            ))
        );
        let bdfs: Vec<_> = board
            .pci_functions()
            .filter(|n| n.vendor.is_some())
            .map(|n| {
                format!(
                    "{}={:04x}:{:04x}",
                    n.bdf.unwrap(),
                    n.vendor.unwrap(),
                    n.identifier.unwrap_or(0)
                )
            })
            .collect();
        println!("  {}", bdfs.join(" "));
    }
}
