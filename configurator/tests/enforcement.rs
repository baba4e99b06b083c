//! What the hypervisor does not enforce yet is listed, per VM and element, and nothing else.

mod common;

use acrn_configurator::board::{load_board, Board, IommuKind};
use acrn_configurator::enforcement::{shared_requesters, unenforced, unisolated_dma};
use acrn_configurator::scenario::load_scenario;

fn load_board_file(path: &std::path::Path) -> Board {
    load_board(path).expect("board loads")
}

fn elements(path: &std::path::Path) -> Vec<(Option<String>, &'static str)> {
    let (scenario, _) = load_scenario(path).expect("scenario loads");
    unenforced(&scenario)
        .into_iter()
        .map(|u| (u.vm, u.element))
        .collect()
}

#[test]
fn our_example_scenarios_ask_for_nothing_unenforced() {
    for (board, scenario) in common::pairs_in(&common::repo().join("configs"), "xml") {
        assert_eq!(elements(&scenario), vec![], "{}", scenario.display());
        let board = load_board_file(&board);
        let (s, _) = load_scenario(&scenario).expect("scenario loads");
        // Bochs has no IOMMU: its pass-through example is said to be unisolated, on purpose.
        let bochs_passthrough = scenario.ends_with("bochs-tigerlake/passthrough.xml");
        let said: Vec<_> = unisolated_dma(&board, &s)
            .into_iter()
            .map(|u| (u.vm, u.element))
            .collect();
        let expected = if bochs_passthrough {
            vec![(Some("PRE_VM0".to_string()), "pci_devs")]
        } else {
            vec![]
        };
        assert_eq!(said, expected, "{}", scenario.display());
        assert_eq!(
            shared_requesters(&board, &s),
            vec![],
            "{}",
            scenario.display()
        );
    }
}

/// configs/qemu-epyc with a second edu behind the PCIe-to-PCI bridge, at 01:02.0.
fn two_edus_behind_the_bridge() -> Board {
    let text =
        std::fs::read_to_string(common::repo().join("configs/qemu-epyc/qemu-epyc.xml")).unwrap();
    let start = text
        .find("<device address=\"0x10000\" id=\"0x11e8\"")
        .unwrap();
    let end = start + text[start..].find("</device>").unwrap() + "</device>".len();
    let second = text[start..end]
        .replace("address=\"0x10000\"", "address=\"0x20000\"")
        .replace("01:01.0", "01:02.0");
    let board = format!("{}\n{second}{}", &text[..end], &text[end..]);
    let path = std::env::temp_dir().join(format!("two-edus-{}.xml", std::process::id()));
    std::fs::write(&path, board).unwrap();
    let b = load_board_file(&path);
    let _ = std::fs::remove_file(&path);
    b
}

#[test]
fn functions_behind_one_aliasing_bridge_given_apart_are_said_to_be_refused() {
    let board = two_edus_behind_the_bridge();
    let repo = common::repo();
    let text = std::fs::read_to_string(repo.join("configs/qemu-epyc/passthrough.xml")).unwrap();
    let load = |text: &str| {
        let path = std::env::temp_dir().join(format!("alias-{}.xml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let (s, _) = load_scenario(&path).expect("scenario loads");
        let _ = std::fs::remove_file(&path);
        s
    };
    // PRE_VM1 has 01:01.0; 01:02.0 is nobody's and there is no Service VM: nothing to say.
    assert_eq!(shared_requesters(&board, &load(&text)), vec![]);
    // PRE_VM0 takes 01:02.0: both are refused, each naming the other.
    let apart = text.replacen(
        "<pci_dev>00:02.0 Ethernet controller: Device 8086:10d3</pci_dev>",
        "<pci_dev>00:02.0 Ethernet controller: Device 8086:10d3</pci_dev>\n      <pci_dev>01:02.0 Class [00ff]: Device 1234:11e8 (rev 10)</pci_dev>",
        1,
    );
    let said = shared_requesters(&board, &load(&apart));
    let mut lines: Vec<String> = said.iter().map(ToString::to_string).collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].starts_with("VM PRE_VM0: <pci_devs>")
            && lines[0].contains("01:02.0 is not passed through: it is behind bridge 00:04.0")
            && lines[0].contains("01:01.0 behind it is VM PRE_VM1's"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("VM PRE_VM1: <pci_devs>")
            && lines[1].contains("01:01.0 is not passed through")
            && lines[1].contains("01:02.0 behind it is VM PRE_VM0's"),
        "{lines:#?}"
    );
    // Both in PRE_VM1: fine.
    let together = text.replacen(
        "<pci_dev>01:01.0 Class [00ff]: Device 1234:11e8 (rev 10)</pci_dev>",
        "<pci_dev>01:01.0 Class [00ff]: Device 1234:11e8 (rev 10)</pci_dev>\n      <pci_dev>01:02.0 Class [00ff]: Device 1234:11e8 (rev 10)</pci_dev>",
        1,
    );
    assert_eq!(shared_requesters(&board, &load(&together)), vec![]);
}

#[test]
fn passthrough_without_an_iommu_is_said_to_be_unisolated() {
    let repo = common::repo();
    let (s, _) = load_scenario(&repo.join("configs/qemu-epyc/passthrough.xml")).unwrap();
    let with = load_board_file(&repo.join("configs/qemu-epyc/qemu-epyc.xml"));
    assert_eq!(unisolated_dma(&with, &s), vec![]);
    let text = std::fs::read_to_string(repo.join("configs/qemu-epyc/qemu-epyc.xml")).unwrap();
    let start = text.find("<DRHD_INFO>").unwrap();
    let end = text.find("</DRHD_INFO>").unwrap();
    let without = format!(
        "{}<DRHD_INFO>\n\t#define DRHD_COUNT              0U\n\t{}",
        &text[..start],
        &text[end..]
    );
    let path = std::env::temp_dir().join(format!("no-iommu-{}.xml", std::process::id()));
    std::fs::write(&path, &without).unwrap();
    let board = load_board_file(&path);
    assert_eq!(board.iommu(), None);
    let said = unisolated_dma(&board, &s);
    // PRE_VM0 has the e1000e, PRE_VM1 the edu.
    assert_eq!(
        said.iter()
            .map(|u| (u.vm.as_deref(), u.element))
            .collect::<Vec<_>>(),
        [(Some("PRE_VM0"), "pci_devs"), (Some("PRE_VM1"), "pci_devs")]
    );
    let text = said[0].to_string();
    assert!(text.contains("not isolated"), "{text}");
    assert!(
        text.contains("neither DRHD_INFO nor IVRS_INFO lists one"),
        "{text}"
    );
    // The same board with an AMD IOMMU (QEMU's amd-iommu) isolates the device.
    let ivrs = "</DRHD_INFO>\n  <IVRS_INFO>\n\
                \t#define IVHD_COUNT              1U\n\
                \t#define IVHD0_TYPE              0x10U\n\
                \t#define IVHD0_REG_BASE          0xFED80000UL\n\
                \t#define IVHD0_DEVICE_ID         0x18U\n\
                \t#define IVHD0_SEGMENT           0x0U\n\
                \t</IVRS_INFO>";
    let amd = without.replacen("</DRHD_INFO>", ivrs, 1);
    std::fs::write(&path, amd).unwrap();
    let board = load_board_file(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(board.iommu(), Some(IommuKind::AmdVi));
    assert_eq!(unisolated_dma(&board, &s), vec![]);
    assert_eq!(with.iommu(), Some(IommuKind::IntelVtd));
}

#[test]
fn pci_vuart_connections_are_enforced_for_every_load_order() {
    let path = common::repo().join("configs/qemu-epyc/vuart.xml");
    let text = std::fs::read_to_string(&path).expect("read vuart.xml");
    assert_eq!(elements(&path), vec![], "legacy connections are enforced");
    let dir = std::env::temp_dir().join(format!("enforcement-pci-vuart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let from = "<type>legacy</type>";
    assert_eq!(
        text.matches(from).count(),
        1,
        "vuart.xml has one legacy connection"
    );
    let pci_text = text.replace(from, "<type>pci</type>");
    let pci = dir.join("vuart-pci.xml");
    std::fs::write(&pci, &pci_text).unwrap();
    // The second VM made post-launched: its Device Model asks for the vUART.
    let pre = "<load_order>PRE_LAUNCHED_VM</load_order>";
    let at = pci_text.rfind(pre).expect("a pre-launched VM");
    let mut with_post = pci_text.clone();
    with_post.replace_range(
        at..at + pre.len(),
        "<load_order>POST_LAUNCHED_VM</load_order>",
    );
    // A post-launched VM's kernel is the Device Model's business.
    let os_from = at + with_post[at..].find("<os_config>").expect("os_config");
    let os_to = at + with_post[at..].find("</os_config>").expect("/os_config") + 12;
    with_post.replace_range(os_from..os_to, "");
    let post = dir.join("vuart-pci-post.xml");
    std::fs::write(&post, &with_post).unwrap();
    // ... and made the Service VM, whose bus gets the vUART at its allocated BDF.
    let service = dir.join("vuart-pci-service.xml");
    let mut service_text = with_post.replace(
        "<load_order>POST_LAUNCHED_VM</load_order>",
        "<load_order>SERVICE_VM</load_order>",
    );
    let at = service_text
        .find("<load_order>SERVICE_VM")
        .expect("the Service VM");
    for (open, close) in [
        ("<cpu_affinity>", "</cpu_affinity>"),
        ("<memory>", "</memory>"),
    ] {
        let from = at + service_text[at..].find(open).expect(open);
        let to = at + service_text[at..].find(close).expect(close) + close.len();
        service_text.replace_range(from..to, "");
    }
    std::fs::write(&service, service_text).unwrap();
    let listed = |p: &std::path::Path| -> Vec<String> {
        elements(p)
            .iter()
            .filter(|(_, e)| *e == "vuart_connection")
            .map(|(vm, _)| vm.clone().unwrap_or_default())
            .collect()
    };
    let between_pre_launched = listed(&pci);
    let with_post_launched = listed(&post);
    let with_service_vm = listed(&service);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(between_pre_launched, Vec::<String>::new());
    assert_eq!(
        with_post_launched,
        Vec::<String>::new(),
        "HC_ADD_VDEV makes it"
    );
    assert_eq!(with_service_vm, Vec::<String>::new());
}

#[test]
fn a_hybrid_rt_scenario_lists_each_vm_and_element() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let got = elements(&corpus.join("cfl-k700-i7/hybrid_rt.xml"));
    let has = |vm: &str, element: &str| {
        got.iter()
            .any(|(v, e)| v.as_deref() == Some(vm) && *e == element)
    };
    // Enforced now: the RTVM gets its pCPUs' local APICs (or is refused at boot).
    assert!(!has("PRE_RT_VM0", "lapic_passthrough"), "{got:?}");
    // Pass-through functions are given (the post-launched VM's by its Device Model through
    // HC_ASSIGN_PCIDEV) and, on this VT-d board, isolated.
    assert!(!has("PRE_RT_VM0", "pci_devs"), "{got:?}");
    assert!(!has("POST_STD_VM1", "pci_devs"), "{got:?}");
    let board = load_board(&corpus.join("cfl-k700-i7/cfl-k700-i7.xml")).expect("board loads");
    let (s, _) = load_scenario(&corpus.join("cfl-k700-i7/hybrid_rt.xml")).unwrap();
    assert_eq!(unisolated_dma(&board, &s), vec![]);
    // Its one vUART connection is legacy: emulated, so not listed.
    assert!(
        !got.iter().any(|(_, e)| *e == "vuart_connection"),
        "{got:?}"
    );
    // Both members get their IVSHMEM device (the post-launched one through HC_ADD_VDEV).
    assert!(!has("PRE_RT_VM0", "IVSHMEM_REGION"), "{got:?}");
    assert!(!has("POST_STD_VM1", "IVSHMEM_REGION"), "{got:?}");
    assert!(!has("ACRN_Service_VM", "lapic_passthrough"), "{got:?}");
}

/// A Device Model region is acrn-dm's: its post-launched members get it from their launch
/// scripts; a Service VM member gets nothing and is listed.
#[test]
fn device_model_regions_are_listed_only_for_members_acrn_dm_does_not_serve() {
    let path = common::repo().join("configs/qemu-epyc/shared.xml");
    let text = std::fs::read_to_string(&path).expect("read shared.xml");
    let member = |vm: &str, dev: u8| {
        format!("<IVSHMEM_VM><VM_NAME>{vm}</VM_NAME><VBDF>00:{dev:02x}.0</VBDF></IVSHMEM_VM>")
    };
    let region = format!(
        "<IVSHMEM><IVSHMEM_REGION><NAME>dm_shm</NAME><PROVIDED_BY>Device Model</PROVIDED_BY>\
         <IVSHMEM_SIZE>2</IVSHMEM_SIZE><IVSHMEM_VMS>{}{}{}</IVSHMEM_VMS></IVSHMEM_REGION>\
         </IVSHMEM>",
        member("SERVICE_VM", 8),
        member("POST_VM1", 8),
        member("POST_VM2", 8)
    );
    assert_eq!(text.matches("<IVSHMEM/>").count(), 1, "shared.xml");
    let dir = std::env::temp_dir().join(format!("enforcement-dm-region-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let variant = dir.join("shared-dm-region.xml");
    std::fs::write(&variant, text.replacen("<IVSHMEM/>", &region, 1)).unwrap();
    let got = elements(&variant);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        got,
        vec![(Some("SERVICE_VM".to_string()), "IVSHMEM_REGION")],
        "only the Service VM's membership is unserved"
    );
}

/// ACRN's own scenarios give no function behind an aliasing bridge apart from its neighbours.
#[test]
fn acrn_corpus_scenarios_share_no_bridge_alias_across_vms() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let pairs = common::pairs_in(&corpus, "xml");
    assert!(!pairs.is_empty());
    for (board, scenario) in pairs {
        let board = load_board_file(&board);
        let Ok((s, _)) = load_scenario(&scenario) else {
            continue;
        };
        let said: Vec<String> = shared_requesters(&board, &s)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(said, Vec::<String>::new(), "{}", scenario.display());
    }
}
