//! What the hypervisor does not enforce yet is listed, per VM and element, and nothing else.

mod common;

use acrn_configurator::enforcement::unenforced;
use acrn_configurator::scenario::load_scenario;

fn elements(path: &std::path::Path) -> Vec<(Option<String>, &'static str)> {
    let (scenario, _) = load_scenario(path).expect("scenario loads");
    unenforced(&scenario)
        .into_iter()
        .map(|u| (u.vm, u.element))
        .collect()
}

#[test]
fn our_example_scenarios_ask_for_nothing_unenforced() {
    for (_, scenario) in common::pairs_in(&common::repo().join("configs"), "xml") {
        assert_eq!(elements(&scenario), vec![], "{}", scenario.display());
    }
}

#[test]
fn only_pci_vuart_connections_are_listed() {
    let path = common::repo().join("configs/qemu-epyc/vuart.xml");
    let text = std::fs::read_to_string(&path).expect("read vuart.xml");
    assert_eq!(elements(&path), vec![], "legacy connections are enforced");
    let dir = std::env::temp_dir().join(format!("enforcement-pci-vuart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pci = dir.join("vuart-pci.xml");
    let from = "<type>legacy</type>";
    assert_eq!(
        text.matches(from).count(),
        1,
        "vuart.xml has one legacy connection"
    );
    std::fs::write(&pci, text.replace(from, "<type>pci</type>")).unwrap();
    let got = elements(&pci);
    let _ = std::fs::remove_dir_all(&dir);
    let listed: Vec<_> = got
        .iter()
        .filter(|(_, e)| *e == "vuart_connection")
        .map(|(vm, _)| vm.clone().unwrap_or_default())
        .collect();
    assert_eq!(listed, ["PRE_VM0", "PRE_VM1"], "{got:?}");
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
    assert!(has("PRE_RT_VM0", "pci_devs"), "{got:?}");
    assert!(has("POST_STD_VM1", "pci_devs"), "{got:?}");
    // Its one vUART connection is legacy: emulated, so not listed.
    assert!(
        !got.iter().any(|(_, e)| *e == "vuart_connection"),
        "{got:?}"
    );
    // The pre-launched member gets its IVSHMEM device; the post-launched one does not yet.
    assert!(!has("PRE_RT_VM0", "IVSHMEM_REGION"), "{got:?}");
    assert!(has("POST_STD_VM1", "IVSHMEM_REGION"), "{got:?}");
    assert!(!has("ACRN_Service_VM", "lapic_passthrough"), "{got:?}");
}
