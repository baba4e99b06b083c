//! `inspect` over a fake /sys, /proc, /dev tree and a fake CPUID: the board it writes loads
//! in our board reader with the values the tree holds, and missing files become warnings.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::board::{load_board_str, Bdf};

/// A fresh directory under the system temp dir, removed on drop.
struct TempTree(PathBuf);

impl TempTree {
    fn new() -> TempTree {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "acrn-inspect-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempTree(d)
    }

    fn put(&self, rel: &str, data: impl AsRef<[u8]>) {
        let p = self.0.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two EPYC-like CPUs with APIC IDs 0 and 1.
struct FakeCpus;

impl Platform for FakeCpus {
    fn cpuid(&self, cpu: u32) -> Option<CpuidDump> {
        let mut d = CpuidDump::default();
        d.leaves
            .insert((0, 0), [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
        d.leaves
            .insert((1, 0), [0x0080_0f12, cpu << 24, 0x8000_0001, 0x078b_fbff]);
        d.leaves.insert((0x8000_0000, 0), [0x8000_000a, 0, 0, 0]);
        d.leaves
            .insert((0x8000_0001, 0), [0, 0, 0x0000_0005, 0x2d93_fbff]);
        d.leaves.insert((0x8000_0008, 0), [0x3028, 0, 0, 0]);
        d.leaves.insert((0x8000_000a, 0), [1, 0x10, 0, 1]);
        (cpu < 2).then_some(d)
    }
    fn kernel_log(&self) -> Option<String> {
        Some("[0.0] IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23\n".into())
    }
}

fn table(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
    let mut t = sig.to_vec();
    t.extend(((36 + body.len()) as u32).to_le_bytes());
    t.push(rev);
    t.resize(36, 0);
    t.extend(body);
    t
}

fn pci_dev(t: &TempTree, addr: &str, ids: (u16, u16, u32), resource: &str, config: &[u8]) {
    let d = format!("sys/bus/pci/devices/{addr}");
    t.put(&format!("{d}/vendor"), format!("{:#06x}\n", ids.0));
    t.put(&format!("{d}/device"), format!("{:#06x}\n", ids.1));
    t.put(&format!("{d}/class"), format!("{:#08x}\n", ids.2));
    t.put(&format!("{d}/subsystem_vendor"), "0x1af4\n");
    t.put(&format!("{d}/subsystem_device"), "0x1100\n");
    t.put(&format!("{d}/revision"), "0x02\n");
    t.put(&format!("{d}/resource"), resource);
    t.put(&format!("{d}/config"), config);
}

fn machine() -> TempTree {
    let t = TempTree::new();
    t.put("sys/devices/system/cpu/online", "0-1\n");
    t.put("sys/devices/system/cpu/possible", "0-1\n");
    let mut madt = vec![0, 0, 0xe0, 0xfe, 1, 0, 0, 0];
    madt.extend([1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
    t.put("sys/firmware/acpi/tables/APIC", table(b"APIC", 3, &madt));
    let mut mcfg = vec![0; 8];
    mcfg.extend(0xb000_0000u64.to_le_bytes());
    mcfg.extend([0, 0, 0, 0xff, 0, 0, 0, 0]);
    t.put("sys/firmware/acpi/tables/MCFG", table(b"MCFG", 1, &mcfg));
    let mut fadt = vec![0u8; 244 - 36];
    fadt[0..4].copy_from_slice(&0x7ffe_0000u32.to_le_bytes());
    fadt[56 - 36..60 - 36].copy_from_slice(&0x600u32.to_le_bytes());
    fadt[88 - 36] = 4;
    t.put("sys/firmware/acpi/tables/FACP", table(b"FACP", 3, &fadt));
    for (i, (s, e, ty)) in [
        (0u64, 0x9fbffu64, "System RAM"),
        (0x9fc00, 0x9ffff, "Reserved"),
        (0x100000, 0x7ffd_efff, "System RAM"),
    ]
    .iter()
    .enumerate()
    {
        t.put(
            &format!("sys/firmware/memmap/{i}/start"),
            format!("{s:#x}\n"),
        );
        t.put(&format!("sys/firmware/memmap/{i}/end"), format!("{e:#x}\n"));
        t.put(&format!("sys/firmware/memmap/{i}/type"), format!("{ty}\n"));
    }
    let mut cfg = vec![0u8; 256];
    pci_dev(&t, "0000:00:00.0", (0x8086, 0x29c0, 0x060000), "", &cfg);
    cfg[6] = 0x10;
    cfg[0x34] = 0x40;
    cfg[0x3d] = 1;
    cfg[0x40] = 0x11;
    cfg[0x42] = 4;
    cfg[0x44] = 3;
    cfg[0x48..0x4c].copy_from_slice(&0x2003u32.to_le_bytes());
    pci_dev(
        &t,
        "0000:00:02.0",
        (0x8086, 0x10d3, 0x020000),
        "0x00000000feb80000 0x00000000feb9ffff 0x0000000000040200\n\
         0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
         0x000000000000c040 0x000000000000c05f 0x0000000000040101\n\
         0x00000000febd0000 0x00000000febd3fff 0x0000000000040200\n",
        &cfg,
    );
    t.put("sys/class/tty/ttyS0/type", "4\n");
    t.put("sys/class/tty/ttyS0/io_type", "0\n");
    t.put("sys/class/tty/ttyS0/port", "0x3F8\n");
    t.put("sys/class/tty/ttyS0/irq", "4\n");
    t.put("sys/class/tty/ttyS1/type", "0\n");
    t.put(
        "proc/iomem",
        "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n00100000-7ffdefff : System RAM\n\
         b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]\nc0000000-febfffff : PCI Bus 0000:00\n  feb80000-feb9ffff : 0000:00:02.0\n",
    );
    t.put(
        "proc/ioports",
        "0000-0cf7 : PCI Bus 0000:00\n0d00-ffff : PCI Bus 0000:00\n",
    );
    t.put("proc/meminfo", "MemTotal:        2013952 kB\n");
    t.put(
        "proc/interrupts",
        "  0: 1 IO-APIC timer\n  4: 1 IO-APIC ttyS0\n 12: 1 i8042\n",
    );
    t
}

#[test]
fn fake_machine_board_loads_with_its_values() {
    let t = machine();
    t.put(
        "usr/share/misc/pci.ids",
        "8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n",
    );
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "fake");
    let board = load_board_str(Path::new("fake.xml"), &ins.xml)
        .unwrap_or_else(|e| panic!("{e}\n{}", ins.xml));
    assert_eq!(board.name, "fake");
    let pcpus = board.pcpus();
    assert_eq!(pcpus.len(), 2);
    assert_eq!((pcpus[1].cpu_id, pcpus[1].apic_id), (1, 1));
    assert!(board.has_cpu_capability("svm") && board.has_cpu_capability("npt"));
    assert_eq!(board.physical_address_bits(), Some(40));
    assert_eq!(board.legacy.cpu_brand, "");
    let ram: Vec<(u64, u64)> = board.ram_ranges().map(|r| (r.start, r.end)).collect();
    assert_eq!(ram, [(0, 0x9fbff), (0x100000, 0x7ffd_efff)]);
    assert_eq!(board.mmcfg_base(), Some(0xb000_0000));
    assert_eq!(board.ioapics[0].address, 0xfec0_0000);
    assert_eq!(board.ioapics[0].gsi_number, 24);
    let nic = board.pci_function(Bdf::new(0, 2, 0).unwrap()).unwrap();
    assert_eq!(nic.vendor, Some(0x8086));
    assert_eq!(nic.bars().count(), 3);
    assert_eq!(
        nic.capability("MSI-X")
            .and_then(|c| c.msix)
            .map(|m| m.table_size),
        Some(5)
    );
    assert_eq!(board.legacy.max_msix_table_num, Some(5));
    assert_eq!(board.legacy.serial_ports.len(), 1);
    assert_eq!(board.legacy.serial_ports[0].base, 0x3f8);
    assert_eq!(
        board.legacy.available_irqs,
        [3, 5, 6, 7, 10, 11, 13, 14, 15]
    );
    assert_eq!(board.legacy.total_mem_kb, Some(2013952));
    assert_eq!(board.legacy.cpu_processors, [0, 1]);
    assert_eq!(board.legacy.pci_vid_pid.len(), 2);
    assert_eq!(board.legacy.pci_devices[1].regions.len(), 2);
    // Named from the ID database as lspci names them: the NIC fully, the host bridge (a
    // device the database lacks) by its vendor.
    assert!(
        ins.xml.contains(
            "00:02.0 Ethernet controller: Intel Corporation 82574L Gigabit Network Connection"
        ),
        "{}",
        ins.xml
    );
    assert!(ins
        .xml
        .contains("00:00.0 Host bridge: Intel Corporation Device 29c0"));
    assert!(board.legacy.raw["PM_INFO"].contains("PM1A_EVT_ADDRESS        0x600UL"));
    assert!(board.legacy.raw["WAKE_VECTOR_INFO"].contains("0x7FFE000CUL"));
    // The host bridge windows come from /proc/iomem and /proc/ioports.
    let host = board
        .device_nodes()
        .find(|n| n.id.as_deref() == Some("PNP0A08"))
        .unwrap();
    assert!(host
        .resources
        .iter()
        .any(|r| r.kind == "memory" && r.min == Some(0xc000_0000)));
    // Only what the fake tree lacks is reported (no DMI, no DSDT, no block devices...).
    let text: Vec<String> = ins.warnings.iter().map(Warning::to_string).collect();
    assert!(text.iter().all(|w| !w.contains("ioapics")), "{text:?}");
}

#[test]
fn missing_and_hidden_files_are_warnings_in_the_file() {
    let t = machine();
    // As a non-root reader sees them: zeros in /proc/iomem, no ACPI tables, 64-byte config.
    t.put(
        "proc/iomem",
        "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n",
    );
    std::fs::remove_dir_all(t.0.join("sys/firmware/acpi")).unwrap();
    std::fs::write(
        t.0.join("sys/bus/pci/devices/0000:00:02.0/config"),
        [0u8; 64],
    )
    .unwrap();
    std::fs::remove_file(t.0.join("proc/meminfo")).unwrap();
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "fake");
    let w: Vec<String> = ins.warnings.iter().map(Warning::to_string).collect();
    for needle in [
        "no PCI ID database",
        "IOMEM_INFO",
        "ioapics",
        "MSI-X",
        "TOTAL_MEM_INFO",
        "00:02.0",
    ] {
        assert!(w.iter().any(|l| l.contains(needle)), "no {needle} in {w:?}");
        assert!(ins.xml.contains(needle));
    }
    let comment_end = ins.xml.find("-->").unwrap();
    assert!(ins.xml[..comment_end].contains("Not read"));
    // Still a board our reader takes.
    load_board_str(Path::new("fake.xml"), &ins.xml).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn empty_tree_gives_warnings_not_panics() {
    let t = TempTree::new();
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "empty");
    assert!(ins.warnings.len() >= 5, "{:?}", ins.warnings);
    assert!(ins.xml.contains("<acrn-config board=\"empty\">"));
}

/// An IVHD block of `kind` (0x10: 24 bytes, 0x11/0x40: 40) for the IOMMU at `base`.
fn ivhd(kind: u8, device_id: u16, base: u64, segment: u16) -> Vec<u8> {
    let len: u16 = if kind == 0x10 { 24 } else { 40 };
    let mut b = vec![kind, 0];
    b.extend(len.to_le_bytes());
    b.extend(device_id.to_le_bytes());
    b.extend(0x40u16.to_le_bytes());
    b.extend(base.to_le_bytes());
    b.extend(segment.to_le_bytes());
    b.resize(usize::from(len), 0);
    b
}

#[test]
fn ivrs_gives_one_ivrs_info_block_per_iommu() {
    let t = machine();
    // QEMU's amd-iommu at 00:03.0 described twice (IVHD 0x10 and 0x11), then a second IOMMU
    // in segment 1; the memory definition between them is skipped.
    let mut body = vec![0u8; 12];
    body.extend(ivhd(0x10, 0x18, 0xfed8_0000, 0));
    body.extend(ivhd(0x11, 0x18, 0xfed8_0000, 0));
    body.extend([0x20, 0, 32, 0]);
    body.resize(body.len() + 28, 0);
    body.extend(ivhd(0x40, 0x0102, 0xfd20_0000, 1));
    t.put("sys/firmware/acpi/tables/IVRS", table(b"IVRS", 2, &body));
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "amd");
    let w: Vec<String> = ins.warnings.iter().map(Warning::to_string).collect();
    assert!(w.iter().all(|l| !l.contains("IVRS")), "{w:?}");
    let expected = "  <IVRS_INFO>\n\
                    \t#define IVHD_COUNT              2U\n\
                    \t#define IVHD0_TYPE              0x10U\n\
                    \t#define IVHD0_REG_BASE          0xFED80000UL\n\
                    \t#define IVHD0_DEVICE_ID         0x18U\n\
                    \t#define IVHD0_SEGMENT           0x0U\n\
                    \t#define IVHD1_TYPE              0x40U\n\
                    \t#define IVHD1_REG_BASE          0xFD200000UL\n\
                    \t#define IVHD1_DEVICE_ID         0x102U\n\
                    \t#define IVHD1_SEGMENT           0x1U\n\
                    \t</IVRS_INFO>\n";
    assert!(ins.xml.contains(expected), "{}", ins.xml);
    // Right after DRHD_INFO, among the ACPI sections.
    let drhd_end = ins.xml.find("</DRHD_INFO>\n").unwrap() + "</DRHD_INFO>\n".len();
    assert!(ins.xml[drhd_end..].starts_with("  <IVRS_INFO>"));
    let board = load_board_str(Path::new("amd.xml"), &ins.xml)
        .unwrap_or_else(|e| panic!("{e}\n{}", ins.xml));
    assert_eq!(
        board.legacy.raw["IVRS_INFO"],
        expected
            .trim_start_matches("  <IVRS_INFO>\n")
            .trim_end_matches("\t</IVRS_INFO>\n")
            .trim()
    );
    assert_eq!(board.iommu(), Some(crate::board::IommuKind::AmdVi));
}

#[test]
fn no_ivrs_no_ivrs_info_and_a_broken_one_is_a_warning() {
    let t = machine();
    let plain = inspect(&SysRoot::under(&t.0), &FakeCpus, "fake");
    assert!(!plain.xml.contains("IVRS"), "{}", plain.xml);
    let board = load_board_str(Path::new("fake.xml"), &plain.xml).unwrap();
    assert!(!board.legacy.raw.contains_key("IVRS_INFO"));
    assert_eq!(board.iommu(), None);

    let mut body = vec![0u8; 12];
    let mut bad = ivhd(0x10, 0x10, 0xfed8_0000, 0);
    bad[2] = 200; // longer than the table
    body.extend(bad);
    t.put("sys/firmware/acpi/tables/IVRS", table(b"IVRS", 2, &body));
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "fake");
    let w: Vec<String> = ins.warnings.iter().map(Warning::to_string).collect();
    assert!(w.iter().any(|l| l.contains("IVRS_INFO")), "{w:?}");
    assert!(ins
        .xml
        .contains("  <IVRS_INFO>\n\t#define IVHD_COUNT              0U\n\t</IVRS_INFO>\n"));
    let board = load_board_str(Path::new("fake.xml"), &ins.xml).unwrap();
    assert_eq!(board.iommu(), None);
}

/// The IVRS of QEMU 7.2's `-machine q35 -device amd-iommu` (the default NIC at 00:02.0 puts
/// the IOMMU at 00:03.0), as Linux shows it in /sys/firmware/acpi/tables/IVRS.
const QEMU_AMD_IOMMU_IVRS: [u8; 108] = [
    0x49, 0x56, 0x52, 0x53, 0x6c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x42, 0x4f, 0x43, 0x48, 0x53, 0x20,
    0x42, 0x58, 0x50, 0x43, 0x20, 0x20, 0x20, 0x20, 0x01, 0x00, 0x00, 0x00, 0x42, 0x58, 0x50, 0x43,
    0x01, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x10, 0xd1, 0x3c, 0x00, 0x18, 0x00, 0x40, 0x00, 0x00, 0x00, 0xd8, 0xfe, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, 0x00,
    0x02, 0x10, 0x00, 0x00, 0x02, 0x18, 0x00, 0x00, 0x02, 0xf8, 0x00, 0x00, 0x02, 0xfa, 0x00, 0x00,
    0x02, 0xfb, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x00, 0x01,
];

#[test]
fn qemus_amd_iommu_ivrs() {
    let t = machine();
    t.put("sys/firmware/acpi/tables/IVRS", QEMU_AMD_IOMMU_IVRS);
    let ins = inspect(&SysRoot::under(&t.0), &FakeCpus, "fake");
    assert!(
        ins.xml.contains(
            "  <IVRS_INFO>\n\
             \t#define IVHD_COUNT              1U\n\
             \t#define IVHD0_TYPE              0x10U\n\
             \t#define IVHD0_REG_BASE          0xFED80000UL\n\
             \t#define IVHD0_DEVICE_ID         0x18U\n\
             \t#define IVHD0_SEGMENT           0x0U\n\
             \t</IVRS_INFO>\n"
        ),
        "{}",
        ins.xml
    );
    let w: Vec<String> = ins.warnings.iter().map(Warning::to_string).collect();
    assert!(w.iter().all(|l| !l.contains("IVRS")), "{w:?}");
}
