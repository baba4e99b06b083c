//! Board model tests: the ACRN corpus boards and malformed inputs.

use std::path::Path;

use super::*;

#[path = "../../tests/common/mod.rs"]
mod common;
use common::corpus as corpus_dir;

fn corpus_board(name: &str) -> Option<Board> {
    let path = corpus_dir()?.join(name).join(format!("{name}.xml"));
    Some(load_board(&path).unwrap_or_else(|e| panic!("{e}")))
}

fn serial_paths(b: &Board) -> Vec<&str> {
    b.legacy
        .serial_ports
        .iter()
        .map(|s| s.dev_path.as_str())
        .collect()
}

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

#[test]
fn adl_asrock() {
    let Some(b) = corpus_board("adl-asrock") else {
        return;
    };
    assert_eq!(b.name, "adl-asrock");
    let pcpus = b.pcpus();
    assert_eq!(pcpus.len(), 12);
    assert_eq!(
        pcpus
            .iter()
            .filter(|p| p.core_type == Some(CoreType::Core))
            .count(),
        8
    );
    assert_eq!(
        pcpus
            .iter()
            .filter(|p| p.core_type == Some(CoreType::Atom))
            .count(),
        4
    );
    assert_eq!(b.thread(8).map(|t| t.apic_id), Some(0x48));
    assert_eq!(b.legacy.serial_ports.len(), 8);
    let s6 = b.serial_port("/dev/ttyS6").unwrap();
    assert_eq!(
        (s6.base, s6.irq, s6.bdf),
        (0x30a0, Some(19), Some(bdf("00:16.3")))
    );
    let s7 = b.serial_port("/dev/ttyS7").unwrap();
    assert_eq!(s7.access, SerialAccess::Mmio);
    assert_eq!((s7.base, s7.bdf), (0x40_1700_0000, Some(bdf("00:1e.0"))));
    // The same UART in the device tree.
    assert_eq!(
        b.pci_function(bdf("00:1e.0")).unwrap().identifier,
        Some(0x7aa8)
    );
    // L2 CAT with 8 CLOS and CDP, L3 CAT with 16 CLOS.
    let l2 = b.cat_caches().find(|c| c.level == 2).unwrap();
    let cat = l2.cat.as_ref().unwrap();
    assert_eq!(
        (cat.clos_number, cat.cdp, cat.capacity_mask_length),
        (Some(8), true, 10)
    );
    let l3 = b.cat_caches().find(|c| c.level == 3).unwrap();
    assert_eq!(l3.cat.as_ref().unwrap().clos_number, Some(16));
    assert_eq!(l3.processors.len(), 12);
    assert_eq!(l3.waymasks("IA Waymask").len(), 16);
    assert_eq!(l3.waymasks("GT Waymask"), [1]);
    // An RTCT range with an id is not RAM.
    assert_eq!(b.memory.len(), 7);
    assert_eq!(b.ram_ranges().count(), 6);
    assert_eq!(b.physical_address_bits(), Some(46));
    assert_eq!(b.ioapics.len(), 1);
    assert_eq!(b.ioapics[0].gsi_number, 120);
    assert_eq!(b.max_pci_bus(), 8);
    assert_eq!(b.legacy.cpu_brand, "12th Gen Intel(R) Core(TM) i7-12700E");
    let classes = b.device_classes.as_ref().unwrap();
    assert_eq!(
        classes
            .serials
            .iter()
            .filter(|s| s.uart_type != "0")
            .count(),
        8
    );
    // Devices: the iGPU with its BARs and SR-IOV.
    let igd = b.pci_function(bdf("00:02.0")).unwrap();
    assert_eq!(igd.class, Some(0x030000));
    let bar0 = igd.bars().find(|r| r.bar_index() == Some(0)).unwrap();
    assert_eq!(
        (bar0.min, bar0.width, bar0.prefetchable),
        (Some(0x60_0000_0000), Some(64), Some(false))
    );
    assert_eq!(
        igd.capability("SR-IOV").and_then(|c| c.field("total_vfs")),
        Some("7")
    );
    assert_eq!(igd.capability("MSI").and_then(|c| c.count), Some(1));
}

#[test]
fn cfl_k700_i7() {
    let Some(b) = corpus_board("cfl-k700-i7") else {
        return;
    };
    assert_eq!(b.threads().count(), 8);
    assert!(b.device_classes.is_none());
    assert_eq!(serial_paths(&b), ["/dev/ttyS0", "/dev/ttyS1"]);
    assert_eq!(b.cat_caches().count(), 0);
    assert!(b.legacy.raw["CX_INFO"].contains("C1"));
    assert!(b.legacy.raw["PX_INFO"].contains("P0"));
    assert_eq!(b.mmcfg_base(), Some(0xe000_0000));
    assert_eq!(b.legacy.iomem_mmcfg.map(|m| m.base), Some(0xe000_0000));
    assert_eq!(b.max_pci_bus(), 10);
}

#[test]
fn generic_board_equals_tgl_vecow() {
    let (Some(g), Some(t)) = (
        corpus_board("generic_board"),
        corpus_board("tgl-vecow-spc-7100-Corei7"),
    ) else {
        return;
    };
    // Byte-identical except the board name (reference §2.1).
    assert_eq!(g.name, "generic_board");
    // Spans differ (the root tag has a different length); the data must not.
    let json = |b: &Board| serde_json::to_value(&b.legacy).unwrap();
    assert_eq!(json(&g), json(&t));
    assert_eq!(
        serde_json::to_value(&g.devices).unwrap(),
        serde_json::to_value(&t.devices).unwrap()
    );
    assert_eq!(g.pcpus(), t.pcpus());
    assert_eq!(g.threads().count(), 4);
    assert_eq!(g.legacy.serial_ports.len(), 5);
    assert_eq!(g.cat_caches().filter(|c| c.level == 2).count(), 4);
    // An ACPI IRQ resource listing several possible IRQs.
    assert!(g
        .device_nodes()
        .flat_map(|n| &n.resources)
        .any(|r| r.irqs == [0, 1, 3, 7]));
}

#[test]
fn nuc11tnbi5() {
    let Some(b) = corpus_board("nuc11tnbi5") else {
        return;
    };
    assert_eq!(b.threads().count(), 4);
    assert_eq!(serial_paths(&b), ["/dev/ttyS0"]);
    assert_eq!(b.cat_caches().filter(|c| c.level == 2).count(), 4);
    assert_eq!(
        b.legacy.cpu_brand,
        "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz"
    );
    assert_eq!(b.max_pci_bus(), 0x58);
    assert_eq!(
        b.pci_function(bdf("58:00.0")).and_then(|n| n.identifier),
        Some(0x15f2)
    );
}

#[test]
fn qemu() {
    let Some(b) = corpus_board("qemu") else {
        return;
    };
    let pcpus = b.pcpus();
    assert_eq!(
        pcpus.iter().map(|p| p.apic_id).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(pcpus.iter().all(|p| p.core_type.is_none()));
    assert_eq!(serial_paths(&b), ["/dev/ttyS0"]);
    let com1 = b.serial_port("/dev/ttyS0").unwrap();
    assert_eq!(
        (com1.access, com1.base, com1.irq),
        (SerialAccess::Portio, 0x3f8, Some(4))
    );
    assert!(b.device_classes.is_none());
    // Memory map: 3 RAM ranges, the same RAM in /proc/iomem.
    let ram: Vec<_> = b.ram_ranges().map(|r| (r.start, r.end)).collect();
    assert_eq!(
        ram,
        [
            (0, 0x9fbff),
            (0x10_0000, 0x7ffd_7fff),
            (0x1_0000_0000, 0x1_7fff_ffff)
        ]
    );
    assert_eq!(b.iomem_system_ram().count(), 3);
    let m = b.legacy.iomem_mmcfg.unwrap();
    assert_eq!(
        (m.base, m.end, m.bus_start, m.bus_end),
        (0xb000_0000, 0xbfff_ffff, 0, 0xff)
    );
    assert_eq!(b.legacy.mmcfg_base, Some(0xb000_0000));
    assert_eq!(b.ioapics[0].address, 0xfec0_0000);
    assert_eq!((b.ioapics[0].gsi_base, b.ioapics[0].gsi_number), (0, 24));
    assert_eq!(b.legacy.available_irqs, [3, 5, 6, 7, 10, 11, 13, 14, 15]);
    assert_eq!(b.legacy.total_mem_kb, Some(4_038_724));
    assert_eq!(b.legacy.cpu_processors, [0, 1, 2, 3]);
    assert_eq!(b.legacy.max_msix_table_num, Some(3));
    assert_eq!(b.legacy.raw["BASE_BOARD_INFO"], "");
    assert_eq!(b.physical_address_bits(), Some(40));
    assert!(b.has_cpu_capability("vmx"));
    // PCI: host bridge from the bus element, virtio behind root ports, lspci regions.
    assert_eq!(
        b.pci_function(bdf("00:00.0")).and_then(|n| n.identifier),
        Some(0x29c0)
    );
    let net = b.pci_function(bdf("01:00.0")).unwrap();
    assert_eq!((net.vendor, net.identifier), (Some(0x1af4), Some(0x1041)));
    let lspci = b.lspci_device(bdf("01:00.0")).unwrap();
    assert_eq!(lspci.class, "Ethernet controller");
    assert_eq!(lspci.regions.len(), 2);
    assert_eq!(lspci.regions[1].address, Some(0xfea0_0000));
    assert_eq!(lspci.regions[1].size, Some(16 * 1024));
    assert!(lspci.regions[1].is_64bit && lspci.regions[1].prefetchable);
    assert_eq!(
        b.vid_pid(bdf("00:1f.2")).map(|v| (v.vendor, v.device)),
        Some((0x8086, 0x2922))
    );
    assert_eq!(b.legacy.pci_devices.len(), 19);
    assert_eq!(b.max_pci_bus(), 6);
    let bridge = b.pci_function(bdf("00:01.0")).unwrap();
    assert_eq!(
        bridge
            .capability("MSI-X")
            .and_then(|c| c.msix)
            .map(|m| m.table_size),
        Some(1)
    );
    // Positions are kept: COM1's line in TTYS_INFO.
    assert_eq!(com1.span.line, 205);
}

#[test]
fn whl_ipc_i5() {
    let Some(b) = corpus_board("whl-ipc-i5") else {
        return;
    };
    assert_eq!(b.threads().count(), 4);
    assert_eq!(b.legacy.serial_ports.len(), 6);
    assert_eq!(b.serial_port("/dev/ttyS5").map(|s| s.base), Some(0x2e0));
    assert!(b.legacy.raw["DRHD_INFO"].contains("DRHD0"));
    assert_eq!(
        b.pci_function(bdf("03:00.0")).and_then(|n| n.identifier),
        Some(0x157b)
    );
}

#[test]
fn model_serializes_and_has_a_schema() {
    let Some(b) = corpus_board("qemu") else {
        return;
    };
    let json = serde_json::to_string(&b).unwrap();
    let back: Board = serde_json::from_str(&json).unwrap();
    assert_eq!(back.pcpus(), b.pcpus());
    assert_eq!(back.legacy.serial_ports.len(), 1);
    let schema = serde_json::to_value(schemars::schema_for!(Board)).unwrap();
    assert!(schema["properties"]["legacy"].is_object(), "{schema}");
}

// ---------------------------------------------------------------------------------------------
// Our own boards (configs/)

fn our_board(name: &str) -> Board {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../configs")
        .join(name)
        .join(format!("{name}.xml"));
    load_board(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Facts shared by both emulated machines.
fn check_emulated(b: &Board, ram_ranges: &[(u64, u64)]) {
    let pcpus = b.pcpus();
    assert_eq!(
        pcpus
            .iter()
            .map(|p| (p.cpu_id, p.apic_id))
            .collect::<Vec<_>>(),
        [(0, 0), (1, 1), (2, 2), (3, 3)]
    );
    assert_eq!(b.legacy.cpu_processors, [0, 1, 2, 3]);
    let com1 = b.serial_port("/dev/ttyS0").unwrap();
    assert_eq!(
        (com1.access, com1.base, com1.irq),
        (SerialAccess::Portio, 0x3f8, Some(4))
    );
    assert_eq!(b.ioapics.len(), 1);
    let io = &b.ioapics[0];
    assert_eq!(
        (io.address, io.gsi_base, io.gsi_number),
        (0xfec0_0000, 0, 24)
    );
    let ram: Vec<_> = b.ram_ranges().map(|r| (r.start, r.end)).collect();
    assert_eq!(ram, ram_ranges);
    // /proc/iomem agrees with the e820 RAM (Linux keeps page 0 for itself).
    let sys: Vec<_> = b.iomem_system_ram().map(|r| (r.start, r.end)).collect();
    assert_eq!(sys[0], (0x1000, ram_ranges[0].1));
    assert_eq!(&sys[1..], &ram_ranges[1..]);
    // Every PCI function of the device tree is also in lspci output, with the same IDs.
    for f in b.pci_functions() {
        let bdf = f.bdf.unwrap();
        let v = b
            .vid_pid(bdf)
            .unwrap_or_else(|| panic!("{bdf} not in PCI_VID_PID"));
        assert_eq!(
            (Some(v.vendor), Some(v.device)),
            (f.vendor, f.identifier),
            "{bdf}"
        );
        assert!(b.lspci_device(bdf).is_some(), "{bdf} not in PCI_DEVICE");
        // Memory BARs agree with the lspci regions.
        for bar in f.bars().filter(|r| r.kind == "memory") {
            let region = b
                .lspci_device(bdf)
                .unwrap()
                .regions
                .iter()
                .find(|r| Some(r.index) == bar.bar_index());
            assert_eq!(
                region.and_then(|r| r.address),
                bar.min,
                "{bdf} {:?}",
                bar.id
            );
            assert_eq!(region.and_then(|r| r.size), bar.len, "{bdf} {:?}", bar.id);
        }
    }
    assert_eq!(b.pci_functions().count(), b.legacy.pci_vid_pid.len());
}

#[test]
fn qemu_epyc_board() {
    let b = our_board("qemu-epyc");
    check_emulated(&b, &[(0, 0x9_fbff), (0x10_0000, 0x7ffd_efff)]);
    assert!(b.has_cpu_capability("svm") && !b.has_cpu_capability("vmx"));
    assert_eq!(b.legacy.cpu_brand, "AMD EPYC Processor");
    assert_eq!(b.physical_address_bits(), Some(40));
    assert_eq!(b.mmcfg_base(), Some(0xb000_0000));
    let m = b.legacy.iomem_mmcfg.unwrap();
    assert_eq!((m.base, m.end, m.bus_end), (0xb000_0000, 0xbfff_ffff, 0xff));
    let ids = |s: &str| {
        b.pci_function(bdf(s))
            .map(|f| (f.vendor.unwrap(), f.identifier.unwrap()))
    };
    assert_eq!(ids("00:00.0"), Some((0x8086, 0x29c0)));
    assert_eq!(ids("00:01.0"), Some((0x1234, 0x1111)));
    assert_eq!(ids("00:02.0"), Some((0x8086, 0x10d3)));
    assert_eq!(ids("00:1f.0"), Some((0x8086, 0x2918)));
    assert_eq!(ids("00:1f.2"), Some((0x8086, 0x2922)));
    assert_eq!(ids("00:1f.3"), Some((0x8086, 0x2930)));
    let nic = b.pci_function(bdf("00:02.0")).unwrap();
    assert_eq!(
        nic.capability("MSI-X")
            .and_then(|c| c.msix)
            .map(|m| m.table_size),
        Some(5)
    );
    assert_eq!(b.legacy.max_msix_table_num, Some(5));
}

#[test]
fn bochs_tigerlake_board() {
    let b = our_board("bochs-tigerlake");
    check_emulated(&b, &[(0, 0x9_efff), (0x10_0000, 0x3ffe_ffff)]);
    assert!(b.has_cpu_capability("vmx") && b.has_cpu_capability("ept"));
    assert_eq!(b.thread(0).and_then(|t| t.model_id), Some(0x8c));
    // i440FX: no ECAM.
    assert_eq!(b.mmcfg_base(), None);
    assert_eq!(
        b.pci_function(bdf("00:00.0")).and_then(|f| f.identifier),
        Some(0x1237)
    );
    assert_eq!(b.pci_functions().count(), 5);
    assert_eq!(b.total_ram(), 0x9_f000 + 0x3fef_0000);
}

/// The scenarios beside our boards only name pCPUs the board has, and their VMs fit in RAM.
#[test]
fn our_scenarios_fit_their_boards() {
    for board in ["qemu-epyc", "bochs-tigerlake"] {
        let b = our_board(board);
        let cpus: Vec<u32> = b.pcpus().iter().map(|p| p.cpu_id).collect();
        for scenario in ["partitioned", "hybrid", "shared"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../configs")
                .join(board)
                .join(format!("{scenario}.xml"));
            let doc = crate::xml::parse_file(&path).unwrap_or_else(|e| panic!("{e}"));
            // A scenario is refused as a board.
            assert!(matches!(
                board_from_document(&doc),
                Err(BoardError::ScenarioGivenAsBoard { .. })
            ));
            let mut mb = 0u64;
            let mut used: Vec<(String, u32)> = Vec::new();
            for vm in doc.root.children("vm") {
                let order = vm.child_text("load_order").unwrap();
                for p in vm.descendants().filter(|e| e.name == "pcpu_id") {
                    let id: u32 = p.text_trim().parse().unwrap();
                    assert!(cpus.contains(&id), "{board}/{scenario}: pCPU {id}");
                    used.push((order.to_string(), id));
                }
                if order != "SERVICE_VM" {
                    assert!(vm.child("cpu_affinity").is_some(), "{board}/{scenario}");
                    mb += vm
                        .child("memory")
                        .and_then(|m| m.child_text("size"))
                        .unwrap()
                        .parse::<u64>()
                        .unwrap();
                } else {
                    assert!(vm.child("cpu_affinity").is_none() && vm.child("memory").is_none());
                }
            }
            assert!(mb << 20 < b.total_ram(), "{board}/{scenario}: {mb} MB");
            // Pre-launched VMs own their pCPUs.
            for (order, id) in &used {
                if order == "PRE_LAUNCHED_VM" {
                    assert_eq!(
                        used.iter().filter(|(_, i)| i == id).count(),
                        1,
                        "{board}/{scenario}: pCPU {id}"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed input

fn load(text: &str) -> Result<Board, BoardError> {
    load_board_str(Path::new("b.xml"), text)
}

/// A small but complete board; tests break one thing at a time.
fn minimal_board(ttys: &str) -> String {
    let mut s = String::from("<acrn-config board=\"mini\">\n");
    for name in LEGACY_SECTIONS {
        let body = match name {
            "TTYS_INFO" => ttys,
            "CPU_PROCESSOR_INFO" => "0, 1",
            _ => "",
        };
        s.push_str(&format!("  <{name}>\n    {body}\n  </{name}>\n"));
    }
    s.push_str(
        r#"  <processors>
    <die id="0x0"><core id="0x0">
      <thread id="0x0"><cpu_id>0</cpu_id><apic_id>0x0</apic_id></thread>
      <thread id="0x1"><cpu_id>1</cpu_id><apic_id>0x1</apic_id></thread>
    </core></die>
  </processors>
  <caches/>
  <memory><range start="0x0" end="0xfff" size="4096"/></memory>
  <ioapics/>
  <devices/>
</acrn-config>
"#,
    );
    s
}

#[test]
fn minimal_board_loads() {
    let text = minimal_board("seri:/dev/ttyS0 type:portio base:0x3F8 irq:4");
    let b = load(&text).unwrap();
    assert_eq!(b.pcpus().len(), 2);
    assert_eq!(b.legacy.cpu_processors, [0, 1]);
    let line_no = text.lines().position(|l| l.contains("ttyS0")).unwrap() + 1;
    let span = b.serial_port("/dev/ttyS0").unwrap().span;
    assert_eq!((span.line as usize, span.column), (line_no, 5));
    assert_eq!(
        &text[span.range()],
        "seri:/dev/ttyS0 type:portio base:0x3F8 irq:4"
    );
}

#[test]
fn ivrs_info_is_optional_and_kept_verbatim() {
    let text = minimal_board("");
    let b = load(&text).unwrap();
    assert!(!b.legacy.raw.contains_key("IVRS_INFO"));
    assert_eq!(b.iommu(), None);
    let ivrs = "#define IVHD_COUNT              1U\n\t#define IVHD0_REG_BASE          0xFED80000UL";
    let with = text.replacen(
        "  <CPU_BRAND>",
        &format!("  <IVRS_INFO>\n\t{ivrs}\n\t</IVRS_INFO>\n  <CPU_BRAND>"),
        1,
    );
    let b = load(&with).unwrap();
    assert_eq!(b.legacy.raw["IVRS_INFO"], ivrs);
    assert_eq!(b.iommu(), Some(IommuKind::AmdVi));
    // Only a #define line counts, and VT-d is named first.
    let commented = with.replace("#define IVHD0_REG_BASE", "/* IVHD0_REG_BASE */");
    assert_eq!(load(&commented).unwrap().iommu(), None);
    let both = with.replacen(
        "  <DRHD_INFO>\n    \n",
        "  <DRHD_INFO>\n    #define DRHD0_REG_BASE 0xFED90000UL\n",
        1,
    );
    assert_eq!(load(&both).unwrap().iommu(), Some(IommuKind::IntelVtd));
    let nested = text.replacen(
        "  <CPU_BRAND>",
        "  <IVRS_INFO><x/></IVRS_INFO>\n  <CPU_BRAND>",
        1,
    );
    let err = load(&nested).unwrap_err();
    assert!(err.to_string().contains("IVRS_INFO"), "{err}");
}

#[test]
fn bad_ttys_line_is_located() {
    let text = minimal_board("seri:/dev/ttyS0 type:portio base:0x3F8 irq:4\n    seri:/dev/ttyS1 type:portio base:0xZZ irq:3");
    let err = load(&text).unwrap_err();
    let BoardError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(problems[0].section, "TTYS_INFO");
    // Reported as D001 (board file content), at the line.
    let f = crate::board_error_findings(Path::new("b.xml"), Some(&text), &err);
    let ids: Vec<&str> = f.iter().map(|x| x.check).collect();
    assert_eq!(ids, ["D001"]);
    let line_no = text.lines().position(|l| l.contains("ttyS1")).unwrap() + 1;
    assert_eq!(problems[0].span.line as usize, line_no);
    assert_eq!(problems[0].span.column, 5);
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("b.xml:{line_no}:5: TTYS_INFO")),
        "{msg}"
    );
}

#[test]
fn garbage_and_truncated_files() {
    assert!(matches!(load("this is not xml"), Err(BoardError::Xml(_))));
    assert!(matches!(load("\u{0}\u{1}\u{2}"), Err(BoardError::Xml(_))));
    let full = minimal_board("");
    let cut = &full[..full.len() / 2];
    let err = load(cut).unwrap_err();
    assert!(matches!(err, BoardError::Xml(_)), "{err}");
    assert!(err.to_string().starts_with("b.xml:"), "{err}");
}

#[test]
fn wrong_root_and_scenario_as_board() {
    let err = load("<board name=\"x\"/>").unwrap_err();
    assert!(matches!(err, BoardError::NotABoard { .. }), "{err}");
    assert!(err.to_string().contains("b.xml:1:1"), "{err}");
    let err = load("<acrn-config>\n<hv/>\n<vm id=\"0\"/>\n</acrn-config>").unwrap_err();
    assert!(
        matches!(err, BoardError::ScenarioGivenAsBoard { .. }),
        "{err}"
    );
    let err = load("<acrn-config/>").unwrap_err();
    assert!(matches!(err, BoardError::NotABoard { .. }), "{err}");
}

#[test]
fn structured_problems_are_collected() {
    let text = minimal_board("")
        .replace("<apic_id>0x1</apic_id>", "<apic_id>one</apic_id>")
        .replace("size=\"4096\"", "size=\"1\"")
        .replace("<PM_INFO>", "<PM_INFO><x/>");
    let err = load(&text).unwrap_err();
    let BoardError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    let sections: Vec<_> = problems.iter().map(|p| p.section.as_str()).collect();
    assert!(sections.contains(&"processors"), "{err}");
    assert!(sections.contains(&"memory"), "{err}");
    assert!(sections.contains(&"PM_INFO"), "{err}");
    // Missing sections are named.
    let err = load("<acrn-config board=\"x\"><processors/></acrn-config>").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("missing <TTYS_INFO>") && msg.contains("missing <memory>"),
        "{msg}"
    );
}

mod robustness {
    use super::super::legacy::*;
    use proptest::prelude::*;

    const O: TextOrigin = TextOrigin {
        offset: 0,
        line: 1,
        column: 1,
    };

    fn lineish() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ \t]*(seri|type|base|irq|bdf|width|[a-z]{0,4}):[\"0-9a-fA-Fx:.]{0,12}( [a-z]{1,5}:[0-9a-zA-Z\":.]{0,10}){0,5}",
            "[ \t]*[0-9a-f]{1,17}-[0-9a-f]{1,17} : [A-Za-z \\[\\]0-9-]{0,30}",
            "[0-9a-f]{2}:[0-9a-f]{2}\\.[0-9] [A-Za-z :\\[\\]()0-9-]{0,40}",
            "Region [0-9]{1,3}: Memory at [0-9a-f<>a-z]{0,12} \\([0-9a-z, -]{0,30}\\)( \\[[a-z=0-9KMGT]{0,10}\\]){0,3}",
            "[0-9, x-]{0,30}",
            "#define [A-Z_]{0,25} [0-9a-fxUL]{0,12}",
        ]
    }

    fn textish() -> impl Strategy<Value = String> {
        prop::collection::vec(lineish(), 0..8).prop_map(|v| v.join("\n"))
    }

    proptest! {
        #[test]
        fn legacy_parsers_never_panic(text in textish()) {
            let (ports, p1) = parse_ttys(&text, O);
            let (ranges, p2) = parse_iomem(&text, O);
            let _ = mmcfg_from_iomem(&ranges);
            let (devs, p3) = parse_pci_devices(&text, O);
            let (_, p4) = parse_vid_pid(&text, O);
            let (_, p5) = parse_int_list("AVAILABLE_IRQ_INFO", &text, O);
            let _ = parse_single_number("TOTAL_MEM_INFO", &text, Some("kB"), O);
            let _ = parse_mmcfg_base(&text, O);
            let _ = defines(&text).count();
            // Every problem points inside the text.
            let lines = text.split('\n').count() as u32;
            for p in p1.iter().chain(&p2).chain(&p3).chain(&p4).chain(&p5) {
                prop_assert!(p.span.line >= 1 && p.span.line <= lines, "{p:?}");
                prop_assert!(p.span.offset + p.span.len <= text.len());
            }
            for s in &ports {
                prop_assert!(!s.dev_path.is_empty());
            }
            for d in &devs {
                prop_assert!(d.bdf.device < 32 && d.bdf.function < 8);
            }
        }

        #[test]
        fn bdf_display_round_trips(bus in 0u32..256, dev in 0u32..32, func in 0u32..8) {
            let b = Bdf::new(bus, dev, func).unwrap();
            prop_assert_eq!(b.to_string().parse::<Bdf>().unwrap(), b);
        }
    }
}

/// The GSI of INTx `pin` of `device` on the root bus, from the board's `_PRT`.
fn root_gsi(b: &Board, device: u8, pin: u8) -> Option<u32> {
    b.pci_root_bridge()?
        .intx_routes
        .iter()
        .find(|r| (r.device, r.pin) == (device, pin))
        .map(|r| r.gsi)
}

#[test]
fn root_bridge_routes_through_links_or_gsis() {
    // QEMU's q35 firmware routes through GSIA..GSIH link devices.
    if let Some(b) = corpus_board("qemu") {
        let r = b.pci_root_bridge().unwrap();
        assert_eq!(r.buses, (0, 0xff));
        assert_eq!(r.mmio[0], (0xa_0000, 0xb_ffff));
        assert_eq!(r.mmio.len(), 4);
        assert_eq!(r.intx_routes.len(), 128);
        assert_eq!(root_gsi(&b, 2, 0), Some(22));
        assert_eq!(root_gsi(&b, 0x1f, 3), Some(19));
    }
    // Real Intel boards name GSIs directly.
    if let Some(b) = corpus_board("nuc11tnbi5") {
        assert_eq!(root_gsi(&b, 1, 0), Some(16));
        assert_eq!(root_gsi(&b, 1, 3), Some(19));
    }
    // Ours: q35's routes, the NIC at 00:02.0 on GSI 22.
    let b = our_board("qemu-epyc");
    assert_eq!(root_gsi(&b, 2, 0), Some(22));
    assert_eq!(root_gsi(&b, 0x1f, 0), Some(16));
    assert_eq!(root_gsi(&b, 0x1e, 1), Some(21));
}

#[test]
fn root_bridge_routes_that_do_not_resolve_are_left_out() {
    let text = minimal_board("").replace(
        "<devices/>",
        r#"<devices><bus type="system"><acpi_object>\_SB_</acpi_object>
        <bus id="PNP0A08" type="pci" address="0x0">
          <resource type="memory" min="0x80000000" max="0x8fffffff" len="0x10000000"/>
          <interrupt_pin_routing>
            <routing address="0x3ffff">
              <mapping pin="INTA#" source="\_SB_.LNKA" index="0"/>
              <mapping pin="INTB#" source="\_SB_.NONE" index="0"/>
              <mapping pin="INTC#" source="\_SB_.LNKC" index="0"/>
              <mapping pin="INTE#" source="17"/>
            </routing>
            <routing address="0x20ffff"><mapping pin="INTA#" source="18"/></routing>
          </interrupt_pin_routing>
        </bus>
        <device id="PNP0C0F"><acpi_object>\_SB_.LNKA</acpi_object><resource type="irq" int="11"/></device>
        <device id="PNP0C0F"><acpi_object>\_SB_.LNKC</acpi_object><resource type="irq" int="5, 10, 11"/></device>
        </bus></devices>"#,
    );
    let b = load(&text).unwrap();
    let r = b.pci_root_bridge().unwrap();
    // A link with one IRQ resolves; a missing link, a link with a choice of IRQs, an unknown
    // pin and a device number above 31 do not.
    assert_eq!(
        r.intx_routes,
        [IntxRoute {
            device: 3,
            pin: 0,
            gsi: 11
        }]
    );
    assert_eq!(r.mmio, [(0x8000_0000, 0x8fff_ffff)]);
}
