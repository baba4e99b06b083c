//! RAM above 4 GiB. configs/qemu-epyc's machine with 4 GiB instead of 2 (q35 keeps 2 GiB below
//! its PCI hole and puts the other 2 GiB at 4 GiB): its board file gains that range, and
//! `acrn-configurator run` starts QEMU with `-m 4G` from it. On `hybrid.xml`, ACRN's allocator
//! gives PRE_VM0 RAM at 4 GiB first, and the Service VM gets the rest of the high RAM.
//!
//! The hypervisor maps physical memory above 4 GiB, PRE_VM0 runs from RAM there, the Service
//! VM (the `platform` guest) finds RAM above 4 GiB in its e820 map and a pattern written there
//! reads back, and its NIC's DMA into PRE_VM0's RAM at 4 GiB is blocked by the IOMMU.

use acrn_system_tests::{
    check, check_prefixes, decided_by, emulator_binary, guest_elf, hybrid_variant, repo_root,
    require_tools, run, work_dir, RunSpec,
};
use std::time::Duration;

/// What q35 with `-m 4G` adds to the 2 GiB machine's RAM.
const HIGH_RAM: (u64, u64) = (0x1_0000_0000, 0x8000_0000);

/// configs/qemu-epyc's board with [`HIGH_RAM`] in `<memory>` and in IOMEM_INFO's System RAM.
fn board_with_high_ram(text: &str) -> String {
    let (start, size) = HIGH_RAM;
    let end = start + size - 1;
    let last_low = "    <range start=\"0x0000000000100000\" end=\"0x000000007ffdefff\" size=\"2146299904\"/>\n";
    assert_eq!(
        text.matches(last_low).count(),
        1,
        "qemu-epyc's RAM below 4 GiB"
    );
    assert_eq!(
        text.matches("</IOMEM_INFO>").count(),
        1,
        "qemu-epyc's IOMEM_INFO"
    );
    text.replacen(
        last_low,
        &format!(
            "{last_low}    <range start=\"{start:#018x}\" end=\"{end:#018x}\" size=\"{size}\"/>\n"
        ),
        1,
    )
    .replacen(
        "</IOMEM_INFO>",
        &format!("\t{start:x}-{end:x} : System RAM\n\t</IOMEM_INFO>"),
        1,
    )
}

#[test]
fn qemu_epyc_with_ram_above_4_gib_runs_vms_there() {
    require_tools(&[emulator_binary("qemu"), "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-high-memory");
    let board = std::fs::read_to_string(repo_root().join("configs/qemu-epyc/qemu-epyc.xml"))
        .expect("configs/qemu-epyc/qemu-epyc.xml");
    let board_path = dir.join("qemu-epyc-4g.xml");
    std::fs::write(&board_path, board_with_high_ram(&board)).unwrap();
    let scenario = std::fs::read_to_string(repo_root().join("configs/qemu-epyc/hybrid.xml"))
        .expect("configs/qemu-epyc/hybrid.xml");
    let dma_target = HIGH_RAM.0;
    let scenario = hybrid_variant(
        &scenario,
        "<IVSHMEM/>",
        "<IVSHMEM/>",
        "passthrough absent",
        &format!("passthrough highmem iommu=0xfed90000 dma_outside={dma_target:#x}"),
    );
    let scenario_path = dir.join("hybrid.xml");
    std::fs::write(&scenario_path, scenario).unwrap();
    let out = dir.join("image");
    let elf = guest_elf("platform").display().to_string();
    let t = run(
        &RunSpec {
            board: board_path.to_str().unwrap(),
            scenario: scenario_path.to_str().unwrap(),
            out: &out,
            extra: vec![
                "--emulator".into(),
                "qemu".into(),
                "--module".into(),
                format!("PRE_VM0_kernel={elf}"),
                "--module".into(),
                format!("SERVICE_VM_kernel={elf}"),
                // Not started: the Service VM here is no device model.
                "--module".into(),
                format!("POST_VM1_kernel={}", guest_elf("hello").display()),
            ],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(150),
        },
        decided_by(&["[SERVICE_VM] verdict:", "[PRE_VM0] verdict:"]),
    );
    check(
        &t,
        t.stderr.contains(" -m 4G "),
        "run did not start QEMU with the board's 4 GiB",
    );
    // PRE_VM0's RAM is at 4 GiB, where the DMA aims.
    let tables =
        std::fs::read_to_string(out.join("gen/vm_tables.rs")).expect("the generated tables");
    check(
        &t,
        tables.contains(&format!("gpa: 0x0, hpa: {dma_target:#x},")),
        "the allocator did not put PRE_VM0's RAM at 4 GiB",
    );
    check_prefixes(
        &t,
        &[
            "[hv] physical memory mapped 1:1 up to 0x10000000000",
            "[PRE_VM0] verdict: PASS",
            "[SERVICE_VM] highmem: 0x1",
            "[SERVICE_VM] highmem: 1 RAM range(s) above 4 GiB",
            "[SERVICE_VM] passthrough: DMA: descriptor done true, head 1",
            "[hv] VT-d: blocked a DMA read of page 0x100000000 by 00:02.0 (a Service VM device)",
            "[SERVICE_VM] verdict: PASS",
        ],
    );
    check(
        &t,
        t.find_prefix("[SERVICE_VM] highmem: 0x")
            .is_some_and(|i| t.lines[i].text.ends_with("-0x180000000: pattern read back")),
        "the Service VM's RAM above 4 GiB does not end where the board's does",
    );
}
