//! ACRN's own scenarios (../shared/acrn-corpus, or $ACRN_CORPUS): every one parses, passes
//! structure validation (except the one with a duplicate VM name), and converts XML <-> TOML
//! without losing anything.

use std::path::{Path, PathBuf};

use acrn_configurator::scenario::{self, read_document, toml_to_document, Scenario};
use acrn_configurator::xml;

mod common;
use common::corpus;

/// Scenario files: XML files whose root has no `board=` attribute.
fn scenarios(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for board in std::fs::read_dir(dir).unwrap().flatten() {
        if !board.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(board.path()).unwrap().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "xml") {
                let doc = xml::parse_file(&p).unwrap();
                if doc.root.attr("board").is_none() {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

const DUPLICATE_NAME: &str = "whl-ipc-i5/shared_launch_1user_vm_hardrt.xml";

#[test]
fn every_corpus_scenario_passes_structure_validation() {
    let Some(dir) = corpus() else { return };
    let all = scenarios(&dir);
    assert!(
        all.len() >= 30,
        "expected 30 corpus scenarios, found {}",
        all.len()
    );
    for p in &all {
        let result = scenario::load_scenario(p);
        if p.ends_with(DUPLICATE_NAME) {
            let findings = result.expect_err("the duplicate VM name must be rejected");
            let checks: Vec<_> = findings
                .iter()
                .map(|f| (f.check, f.message.clone()))
                .collect();
            assert_eq!(checks.len(), 1, "{checks:?}");
            assert_eq!(checks[0].0, "S020");
            assert!(checks[0].1.contains("POST_STD_VM1"), "{checks:?}");
            let loc = findings.iter().next().unwrap().location.clone().unwrap();
            assert!(loc.line > 0);
        } else {
            match result {
                Ok((s, f)) => {
                    assert!(f.is_empty(), "{}: {}", p.display(), f.render_plain());
                    assert!(!s.vm.is_empty());
                }
                Err(f) => panic!("{} rejected:\n{}", p.display(), f.render_plain()),
            }
        }
    }
}

fn read(path: &Path, text: &str) -> Scenario {
    let doc = if path.extension().is_some_and(|e| e == "toml") {
        toml_to_document(path, text).unwrap_or_else(|f| panic!("{}", f.render_plain()))
    } else {
        xml::parse_str(path, text).unwrap()
    };
    read_document(&doc)
        .unwrap_or_else(|f| panic!("{}:\n{}\n{text}", path.display(), f.render_plain()))
        .0
}

#[test]
fn every_corpus_scenario_round_trips_through_toml_and_xml() {
    let Some(dir) = corpus() else { return };
    for p in scenarios(&dir) {
        if p.ends_with(DUPLICATE_NAME) {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        let model = read(&p, &text);

        // XML -> model -> XML -> model
        let xml2 = scenario::to_xml(&model).unwrap();
        let back = read(Path::new("again.xml"), &xml2);
        assert_eq!(
            model,
            back,
            "{}: XML round trip changed the model",
            p.display()
        );

        // XML -> TOML -> XML -> model
        let toml = scenario::to_toml(&model, "scenario.schema.json").unwrap();
        assert!(toml.starts_with("#:schema "));
        let from_toml = read(Path::new("s.toml"), &toml);
        assert_eq!(model, from_toml, "{}: TOML changed the model", p.display());
        let xml3 = scenario::to_xml(&from_toml).unwrap();
        assert_eq!(
            model,
            read(Path::new("again2.xml"), &xml3),
            "{}",
            p.display()
        );

        // Nothing lost: same number of elements with text, and same texts (order aside).
        let leaves = |doc: &xml::Document| {
            let mut v: Vec<(String, String)> = doc
                .root
                .descendants()
                .filter(|e| e.children.is_empty() && !e.text_trim().is_empty())
                .map(|e| (e.name.clone(), e.text_trim().to_string()))
                .collect();
            v.sort();
            v
        };
        let orig = leaves(&xml::parse_str(&p, &text).unwrap());
        let conv = leaves(&xml::parse_str(Path::new("x.xml"), &xml3).unwrap());
        let norm = |v: Vec<(String, String)>| -> Vec<(String, String)> {
            // Hex spelling may change (0x00000010 -> 0x10); compare the values.
            let mut v: Vec<_> = v
                .into_iter()
                .map(|(n, t)| match scenario::Hex::parse(&t) {
                    Some(h) => (n, h.to_string()),
                    _ => (n, t),
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            norm(orig),
            norm(conv),
            "{}: leaf values differ",
            p.display()
        );
    }
}

#[test]
fn defaults_are_populated_per_load_order() {
    let Some(dir) = corpus() else { return };
    let (s, _) = scenario::load_scenario(&dir.join("whl-ipc-i5/hybrid_rt.xml")).unwrap();
    let dbg = s.hv.debug_options.as_ref().unwrap();
    assert_eq!(dbg.console_vm, Some(65535));
    for (i, vm) in s.vm.iter().enumerate() {
        assert_eq!(vm.own_pcpu, Some(false), "vm {i}");
        assert_eq!(vm.priority, Some(scenario::Priority::Low));
        assert_eq!(vm.bvt_weight, Some(1));
        assert_eq!(vm.companion_vmid, Some(65535));
        match vm.load_order.unwrap() {
            scenario::LoadOrder::PostLaunched => {
                assert_eq!(vm.secure_world_support, Some(false));
                assert!(vm.os_config.is_none());
                assert!(vm.virtio_devices.is_some());
            }
            scenario::LoadOrder::Service => {
                assert_eq!(vm.secure_world_support, None);
                assert!(vm.memory.is_none() && vm.cpu_affinity.is_none());
            }
            scenario::LoadOrder::PreLaunched => {
                assert!(vm.epc_section.is_some());
                for p in &vm.cpu_affinity.as_ref().unwrap().pcpu {
                    assert!(p.real_time_vcpu.is_some());
                }
            }
        }
    }
    for c in &s.hv.vuart_connections.as_ref().unwrap().connections {
        for e in &c.endpoints {
            assert!(e.vbdf.is_some() && e.io_port.is_some());
        }
    }
}
