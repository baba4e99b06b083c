//! Allocation: invariants over every pair we have (memory disjoint and inside RAM, vBDFs
//! unique, BARs aligned and disjoint, vUART links symmetric), specific results on our
//! emulated boards and ACRN's whl-ipc-i5 hybrid_rt, and each failure as a finding.

use std::collections::BTreeSet;
use std::path::Path;

use acrn_configurator::alloc::{self, Allocation, Console, Range, RangeSet, VuartKind};
use acrn_configurator::board::{load_board, Board};
use acrn_configurator::diag::Findings;
use acrn_configurator::scenario::{self, Hex, IvshmemRegion, IvshmemVm, LoadOrder, Scenario, Vbdf};
use acrn_static_config::GuestFlags;

mod common;
use common::{corpus, repo};

fn load(board: &Path, scenario: &Path) -> (Board, Scenario) {
    let b = load_board(board).unwrap_or_else(|e| panic!("{}: {e}", board.display()));
    let (s, _) = scenario::load_scenario(scenario)
        .unwrap_or_else(|f| panic!("{}:\n{}", scenario.display(), f.render_plain()));
    (b, s)
}

/// One of our scenarios: configs/ is part of the repository, so a missing file fails.
fn ours(name: &str) -> (Board, Scenario) {
    let dir = repo().join("configs/qemu-epyc");
    let (b, s) = (dir.join("qemu-epyc.xml"), dir.join(format!("{name}.xml")));
    load(&b, &s)
}

fn whl(name: &str) -> Option<(Board, Scenario)> {
    let c = corpus()?;
    Some(load(
        &c.join("whl-ipc-i5/whl-ipc-i5.xml"),
        &c.join(format!("whl-ipc-i5/{name}.xml")),
    ))
}

fn ram(board: &Board) -> RangeSet {
    let mut s = RangeSet::new();
    for r in board.ram_ranges() {
        s.insert(r.start, r.end + 1);
    }
    s
}

/// Index of the first pre-launched VM.
fn first_pre(s: &Scenario) -> usize {
    s.vm.iter()
        .position(|v| v.load_order == Some(LoadOrder::PreLaunched))
        .unwrap()
}

fn service_vm_name(s: &Scenario) -> String {
    s.vm.iter()
        .find(|v| v.load_order == Some(LoadOrder::Service))
        .unwrap()
        .name
        .clone()
}

fn expect_finding(result: Result<Allocation, Findings>, id: &str) -> String {
    let f = result.expect_err("allocation must fail");
    let hit = f
        .iter()
        .find(|x| x.check == id)
        .unwrap_or_else(|| panic!("no {id} in:\n{}", f.render_plain()));
    assert!(hit.hint.is_some(), "{id} has no hint");
    hit.message.clone()
}

/// Invariants every successful allocation must satisfy.
fn check_invariants(board: &Board, s: &Scenario, a: &Allocation, what: &str) {
    let ram = ram(board);
    // Host memory: HV RAM, pre-launched VMs, IVSHMEM and the Service VM's share are in RAM
    // and pairwise disjoint.
    let mut owned: Vec<(Range, String)> = vec![(a.hv_ram, "hv".into())];
    assert!(
        a.hv_ram.start.is_multiple_of(0x20_0000) && a.hv_ram.start >= 0x10_0000,
        "{what}: HV RAM {:?}",
        a.hv_ram
    );
    for v in &a.vms {
        let mut gpa_end = 0;
        for m in &v.memory {
            assert!(m.gpa >= gpa_end, "{what}: {} GPAs out of order", v.name);
            gpa_end = m.gpa + m.size;
            assert!(
                !(0x8000_0000..0x1_0000_0000).contains(&m.gpa),
                "{what}: {} RAM in the MMIO hole",
                v.name
            );
            owned.push((Range::new(m.hpa, m.size), v.name.clone()));
        }
        owned.extend(
            v.service_ram
                .iter()
                .map(|r| (*r, format!("{} (service)", v.name))),
        );
        if v.load_order == LoadOrder::PreLaunched {
            assert!(!v.memory.is_empty(), "{what}: {} has no memory", v.name);
            assert_eq!(v.memory_size, v.memory.iter().map(|m| m.size).sum::<u64>());
        }
        assert!(v.guest_flags & GuestFlags::STATIC_VM != 0);
    }
    owned.extend(a.ivshmem_regions.iter().map(|r| (r.hpa, r.name.clone())));
    for (i, (r, n)) in owned.iter().enumerate() {
        assert!(
            ram.covers(r.start, r.end()),
            "{what}: {n} {r:?} is not inside RAM"
        );
        for (q, m) in &owned[i + 1..] {
            assert!(!r.overlaps(q), "{what}: {n} {r:?} overlaps {m} {q:?}");
        }
    }
    // pCPUs: the Service VM has every board pCPU no pre-launched VM has; pre-launched VMs
    // do not share.
    let board_cpus: BTreeSet<u32> = board.pcpus().iter().map(|p| p.cpu_id).collect();
    let pre: Vec<u32> = a
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
        .flat_map(|v| v.pcpus.clone())
        .collect();
    let pre_set: BTreeSet<u32> = pre.iter().copied().collect();
    assert_eq!(
        pre.len(),
        pre_set.len(),
        "{what}: pre-launched VMs share pCPUs"
    );
    for v in a.vms.iter().filter(|v| v.load_order == LoadOrder::Service) {
        let expect: Vec<u32> = board_cpus.difference(&pre_set).copied().collect();
        assert_eq!(v.pcpus, expect, "{what}: Service VM pCPUs");
    }
    // Per VM: vBDFs unique and not the host bridge; BARs aligned, disjoint.
    for v in &a.vms {
        let mut bdfs: Vec<Vbdf> = v.ivshmem.iter().map(|d| d.vbdf).collect();
        bdfs.extend(v.pci_devs.iter().map(|d| d.vbdf));
        let mut bars: Vec<(u64, u64)> = Vec::new();
        for u in &v.vuarts {
            if let VuartKind::Pci { vbdf, bar0, bar1 } = u.kind {
                bdfs.push(vbdf);
                bars.extend([(bar0, 0x1000), (bar1, 0x1000)]);
            }
        }
        if let Console::Pci { vbdf, bar0, bar1 } = v.console {
            bdfs.push(vbdf);
            bars.extend([(bar0, 0x1000), (bar1, 0x1000)]);
        }
        let set: BTreeSet<Vbdf> = bdfs.iter().copied().collect();
        assert_eq!(
            set.len(),
            bdfs.len(),
            "{what}: {} has duplicate vBDFs {bdfs:?}",
            v.name
        );
        assert!(
            bdfs.iter().all(|b| !(b.bus == 0 && b.dev == 0)),
            "{what}: vBDF 00:00.x is the host bridge"
        );
        for d in &v.ivshmem {
            let size = a.ivshmem_regions[d.region as usize].hpa.size;
            bars.extend([(d.bars[0], 0x1000), (d.bars[1], 0x1000), (d.bars[2], size)]);
        }
        for d in &v.pci_devs {
            let node = board
                .pci_function(d.pbdf)
                .expect("pass-through device on the board");
            for r in node
                .bars()
                .filter(|r| r.kind == "memory" && r.min.unwrap_or(0) >= 1 << 20)
            {
                let i = r.bar_index().unwrap() as usize;
                let size = r
                    .len
                    .filter(|l| *l > 0)
                    .unwrap_or_else(|| r.max.unwrap() - r.min.unwrap() + 1);
                assert_ne!(
                    d.vbars[i], 0,
                    "{what}: {} BAR{i} of {} not placed",
                    v.name, d.pbdf
                );
                bars.push((d.vbars[i], size));
            }
        }
        bars.sort();
        for (base, size) in &bars {
            let align = size.max(&0x1000).next_power_of_two();
            assert!(
                base.is_multiple_of(align),
                "{what}: {} BAR {base:#x} (size {size:#x}) misaligned",
                v.name
            );
            if v.load_order != LoadOrder::Service {
                let low = (0x8000_0000..0xE000_0000).contains(base);
                let high = (0x40_0000_0000..0x80_0000_0000).contains(base);
                assert!(
                    low || high,
                    "{what}: {} BAR {base:#x} outside the VM's MMIO windows",
                    v.name
                );
            }
        }
        for w in bars.windows(2) {
            let (a0, s0) = w[0];
            assert!(
                a0 + s0.max(0x1000) <= w[1].0,
                "{what}: {} BARs {:#x} and {:#x} overlap",
                v.name,
                a0,
                w[1].0
            );
        }
    }
    // vUART links are symmetric.
    for v in &a.vms {
        for (i, u) in v.vuarts.iter().enumerate() {
            let peer = a.vm(u.peer_vm).expect("peer VM exists");
            let back = &peer.vuarts[u.peer_index as usize];
            assert_eq!(
                (back.peer_vm, back.peer_index as usize),
                (v.id, i),
                "{what}: link not symmetric"
            );
            assert_eq!(back.connection, u.connection);
        }
    }
    let _ = s;
}

#[test]
fn every_pair_satisfies_the_invariants() {
    let mut all = common::pairs_in(&repo().join("configs"), "xml");
    if let Some(c) = corpus() {
        all.extend(common::pairs_in(&c, "xml"));
    }
    let mut n = 0;
    for (b, sp) in &all {
        if sp.ends_with("shared_launch_1user_vm_hardrt.xml") {
            continue; // duplicate VM names: the scenario does not load
        }
        let (board, s) = load(b, sp);
        match alloc::allocate(&board, &s) {
            Ok(a) => check_invariants(&board, &s, &a, &sp.display().to_string()),
            Err(f) => panic!("{}:\n{}", sp.display(), f.render_plain()),
        }
        n += 1;
    }
    assert!(n > 0);
}

#[test]
fn qemu_epyc_partitioned() {
    let (board, s) = ours("partitioned");
    let a = alloc::allocate(&board, &s).unwrap();
    let max_vm = s.hv.capacities.as_ref().and_then(|c| c.max_vm_num).unwrap() as u64;
    assert_eq!(a.hv_ram.size, 0x140_0000 + 0x40_0000 * max_vm);
    // No RAM above 4 GiB on this board: VMs come from low RAM above the hypervisor.
    let pre: Vec<_> = a
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
        .collect();
    assert!(pre.len() >= 2);
    for v in &pre {
        assert_eq!(v.memory[0].gpa, 0);
        assert!(v
            .memory
            .iter()
            .all(|m| m.hpa >= a.hv_ram.end() && m.hpa + m.size <= 1 << 32));
        let asked = s.vm[v.index].memory.as_ref().and_then(|m| m.size).unwrap() << 20;
        assert_eq!(v.memory_size, asked);
        assert!(!v.pcpus.is_empty());
    }
    assert_eq!(
        a.serial,
        Some(alloc::Serial::Pio {
            base: 0x3F8,
            irq: 4
        })
    );
}

#[test]
fn qemu_epyc_hybrid_service_vm_gets_the_rest() {
    let (board, s) = ours("hybrid");
    let a = alloc::allocate(&board, &s).unwrap();
    let svc = a
        .vms
        .iter()
        .find(|v| v.load_order == LoadOrder::Service)
        .expect("a Service VM");
    let used: u64 = a.hv_ram.size
        + a.vms
            .iter()
            .map(|v| v.memory.iter().map(|m| m.size).sum::<u64>())
            .sum::<u64>()
        + a.ivshmem_regions.iter().map(|r| r.hpa.size).sum::<u64>();
    // Everything above 1 MiB that nobody else owns.
    let above_1m = ram(&board).clip(1 << 20, u64::MAX).total();
    assert_eq!(svc.memory_size, above_1m - used);
    check_invariants(&board, &s, &a, "qemu-epyc hybrid");
}

#[test]
fn whl_hybrid_rt_matches_acrn_rules() {
    let Some((board, s)) = whl("hybrid_rt") else {
        return;
    };
    let a = alloc::allocate(&board, &s).unwrap();
    let rt = a.vms.iter().find(|v| v.name == "PRE_RT_VM0").unwrap();
    // Explicit hpa_region 0x100000000, 1024 MB.
    assert_eq!(rt.memory.len(), 1);
    assert_eq!(
        (rt.memory[0].hpa, rt.memory[0].size),
        (0x1_0000_0000, 1 << 30)
    );
    let f = rt.guest_flags;
    for flag in [
        GuestFlags::RT,
        GuestFlags::LAPIC_PASSTHROUGH,
        GuestFlags::STATIC_VM,
        GuestFlags::PMU_PASSTHROUGH,
    ] {
        assert!(f & flag != 0, "flag {flag:#x} missing in {f:#x}");
    }
    assert_eq!(rt.pcpus, vec![2, 3]);
    // IVSHMEM: configured 00:08.0; BAR2 is 64-bit -> high window; region placed in RAM.
    assert_eq!(a.ivshmem_regions.len(), 1);
    assert_eq!(a.ivshmem_regions[0].hpa.size, 2 << 20);
    let d = rt.ivshmem[0];
    assert_eq!(
        d.vbdf,
        Vbdf {
            bus: 0,
            dev: 8,
            func: 0
        }
    );
    assert!(d.bars[2] >= 0x40_0000_0000);
    // Pass-through devices get the lowest free device numbers, 00:01.0 and 00:02.0.
    let vbdfs: Vec<u8> = rt.pci_devs.iter().map(|p| p.vbdf.dev).collect();
    assert_eq!(vbdfs, vec![1, 2]);
    // Legacy vUART at 0x2F8 (COM2) gets IRQ 3 on both ends; consoles are COM1 = 0x3F8/4.
    assert_eq!(
        rt.vuarts[0].kind,
        VuartKind::Legacy {
            port: 0x2F8,
            irq: 3
        }
    );
    assert_eq!(
        rt.console,
        Console::Legacy {
            port: 0x3F8,
            irq: 4
        }
    );
    let svc = a
        .vms
        .iter()
        .find(|v| v.load_order == LoadOrder::Service)
        .unwrap();
    assert_eq!(svc.pcpus, vec![0, 1]);
    assert_eq!(svc.vuarts[0].peer_vm, rt.id);
}

#[test]
fn deterministic_allocation() {
    let Some((board, s)) = whl("hybrid_rt") else {
        return;
    };
    let a = alloc::allocate(&board, &s).unwrap();
    for _ in 0..3 {
        assert_eq!(alloc::allocate(&board, &s).unwrap(), a);
    }
}

// ----------------------------------------------------------------------------------------
// Failures are findings.

#[test]
fn a01_hypervisor_ram_over_1_gib() {
    let (board, mut s) = ours("partitioned");
    s.hv.capacities.as_mut().unwrap().max_vm_num = Some(300);
    let m = expect_finding(alloc::allocate(&board, &s), "A01");
    assert!(m.contains("1024 MiB"), "{m}");
}

#[test]
fn a02_unaligned_hv_ram_start() {
    let (board, mut s) = ours("partitioned");
    s.hv.memory
        .get_or_insert_with(Default::default)
        .hv_ram_start = Some(Hex(0x100_1000));
    expect_finding(alloc::allocate(&board, &s), "A02");
}

#[test]
fn a03_hpa_region_over_the_hypervisor() {
    let (board, mut s) = ours("partitioned");
    let hv = alloc::allocate(&board, &s).unwrap().hv_ram;
    let i = first_pre(&s);
    s.vm[i]
        .memory
        .get_or_insert_with(Default::default)
        .hpa_region = vec![scenario::HpaRegion {
        start_hpa: Hex(hv.start),
        size_hpa: 64,
    }];
    let m = expect_finding(alloc::allocate(&board, &s), "A03");
    assert!(m.contains("hypervisor"), "{m}");
}

#[test]
fn a04_not_enough_ram_for_a_vm() {
    let (board, mut s) = ours("partitioned");
    let i = first_pre(&s);
    s.vm[i].memory.get_or_insert_with(Default::default).size = Some(64 * 1024);
    let m = expect_finding(alloc::allocate(&board, &s), "A04");
    assert!(m.contains("65536 MB"), "{m}");
}

#[test]
fn a07_vbdf_on_a_native_device_of_the_service_vm() {
    let Some((board, mut s)) = whl("hybrid_rt") else {
        return;
    };
    let svc = service_vm_name(&s);
    let iv = s.hv.features.as_mut().unwrap().ivshmem.as_mut().unwrap();
    // 00:02.0 is the board's GPU, which the Service VM keeps.
    iv.regions[0].vms.vm.push(IvshmemVm {
        vm_name: svc,
        vbdf: Some(Vbdf {
            bus: 0,
            dev: 2,
            func: 0,
        }),
    });
    let m = expect_finding(alloc::allocate(&board, &s), "A07");
    assert!(m.contains("00:02.0"), "{m}");
}

#[test]
fn a08_service_vm_mmio_window_full() {
    let Some((board, mut s)) = whl("hybrid_rt") else {
        return;
    };
    let svc = service_vm_name(&s);
    let iv = s.hv.features.as_mut().unwrap().ivshmem.as_mut().unwrap();
    // The board's PCI window below 4 GiB is 1.25 GiB and it has none above: 3 x 512 MB
    // shared-memory BARs cannot fit.
    for k in 0..3u8 {
        iv.regions.push(IvshmemRegion {
            name: format!("big{k}"),
            size_mb: Some(512),
            region_id: Some(format!("{}", k + 1)),
            vms: scenario::IvshmemVms {
                vm: vec![IvshmemVm {
                    vm_name: svc.clone(),
                    vbdf: Some(Vbdf {
                        bus: 0,
                        dev: 0x1a + k,
                        func: 0,
                    }),
                }],
            },
            ..Default::default()
        });
    }
    let m = expect_finding(alloc::allocate(&board, &s), "A08");
    assert!(m.contains("full"), "{m}");
}

#[test]
fn a09_legacy_vuart_irqs_run_out() {
    let (board, mut s) = ours("partitioned");
    let names: Vec<String> =
        s.vm.iter()
            .filter(|v| v.load_order == Some(LoadOrder::PreLaunched))
            .map(|v| v.name.clone())
            .collect();
    let conns = &mut s
        .hv
        .vuart_connections
        .get_or_insert_with(Default::default)
        .connections;
    conns.clear();
    // User VMs have 9 IRQs for non-COM ports (5..13): the 10th connection has none.
    for k in 0..10u64 {
        conns.push(scenario::VuartConnection {
            name: format!("c{k}"),
            vuart_type: Some(scenario::VuartType::Legacy),
            endpoints: names[..2]
                .iter()
                .map(|n| scenario::VuartEndpoint {
                    vm_name: n.clone(),
                    io_port: Some(Hex(0x9000 + 8 * k)),
                    vbdf: None,
                })
                .collect(),
        });
    }
    let m = expect_finding(alloc::allocate(&board, &s), "A09");
    assert!(m.contains("0x9048"), "{m}");
}

#[test]
fn a12_serial_console_not_on_board() {
    let (board, mut s) = ours("partitioned");
    s.hv.debug_options
        .get_or_insert_with(Default::default)
        .serial_console = Some("/dev/ttyS7".into());
    let m = expect_finding(alloc::allocate(&board, &s), "A12");
    assert!(m.contains("ttyS7"), "{m}");
}

#[test]
fn a05_ivshmem_region_id_not_a_number() {
    let (board, mut s) = ours("partitioned");
    let name = s.vm[first_pre(&s)].name.clone();
    let feats = s.hv.features.get_or_insert_with(Default::default);
    let iv = feats.ivshmem.get_or_insert_with(Default::default);
    iv.regions.push(IvshmemRegion {
        name: "r".into(),
        size_mb: Some(2),
        region_id: Some("one".into()),
        vms: scenario::IvshmemVms {
            vm: vec![IvshmemVm {
                vm_name: name,
                vbdf: None,
            }],
        },
        ..Default::default()
    });
    let m = expect_finding(alloc::allocate(&board, &s), "A05");
    assert!(m.contains("not a number"), "{m}");
    // The same region with a numeric id allocates.
    s.hv.features
        .as_mut()
        .unwrap()
        .ivshmem
        .as_mut()
        .unwrap()
        .regions[0]
        .region_id = Some("1".into());
    alloc::allocate(&board, &s).unwrap();
}

#[test]
fn a06_pcpu_above_63() {
    let (board, mut s) = ours("partitioned");
    let i = first_pre(&s);
    s.vm[i].cpu_affinity.as_mut().unwrap().pcpu[0].pcpu_id = 64;
    let m = expect_finding(alloc::allocate(&board, &s), "A06");
    assert!(m.contains("pCPU 64"), "{m}");
}

#[test]
fn a11_pt_intx_not_pairs() {
    let (board, mut s) = ours("partitioned");
    let i = first_pre(&s);
    s.vm[i].pt_intx = Some("(1, 2)(3".into());
    let m = expect_finding(alloc::allocate(&board, &s), "A11");
    assert!(m.contains("pt_intx"), "{m}");
    s.vm[i].pt_intx = Some("(1, 2)(3, 4)".into());
    alloc::allocate(&board, &s).unwrap();
}

#[test]
fn a13_vm_id_too_large() {
    let (board, mut s) = ours("partitioned");
    let i = first_pre(&s);
    s.vm[i].id = 70_000;
    let m = expect_finding(alloc::allocate(&board, &s), "A13");
    assert!(m.contains("70000"), "{m}");
}

/// Generation runs validation first: an overlap is reported once, by validation (X03), not
/// again by the allocator.
#[test]
fn overlapping_hpa_regions_are_reported_once() {
    let dir = repo().join("configs/qemu-epyc");
    let text = std::fs::read_to_string(dir.join("partitioned.xml")).unwrap();
    let region =
        "<hpa_region><start_hpa>0x20000000</start_hpa><size_hpa>64</size_hpa></hpa_region>";
    let mut n = 0;
    let text = text
        .split("<memory>")
        .enumerate()
        .map(|(k, part)| {
            if k == 0 {
                part.to_string()
            } else {
                n += 1;
                format!("<memory>{region}{part}")
            }
        })
        .collect::<Vec<_>>()
        .join("");
    assert!(n >= 2, "expected two VMs with <memory>");
    let tmp = std::env::temp_dir().join(format!("acrn-overlap-{}.xml", std::process::id()));
    std::fs::write(&tmp, text).unwrap();
    let r = acrn_configurator::gen::generate(&dir.join("qemu-epyc.xml"), &tmp, &Default::default())
        .expect_err("overlap must fail");
    std::fs::remove_file(&tmp).ok();
    let ids: Vec<&str> = r.findings.iter().map(|f| f.check).collect();
    assert!(ids.contains(&"X03"), "{ids:?}");
    assert!(!ids.iter().any(|i| i.starts_with('A')), "{ids:?}");
}

#[test]
fn a10_vuart_port_above_0xffff() {
    let (board, mut s) = ours("partitioned");
    let names: Vec<String> =
        s.vm.iter()
            .filter(|v| v.load_order == Some(LoadOrder::PreLaunched))
            .map(|v| v.name.clone())
            .collect();
    let conn = |port: u64| scenario::VuartConnection {
        name: "c".into(),
        vuart_type: Some(scenario::VuartType::Legacy),
        endpoints: names[..2]
            .iter()
            .map(|n| scenario::VuartEndpoint {
                vm_name: n.clone(),
                io_port: Some(Hex(port)),
                vbdf: None,
            })
            .collect(),
    };
    let conns = &mut s
        .hv
        .vuart_connections
        .get_or_insert_with(Default::default)
        .connections;
    conns.clear();
    conns.push(conn(0x1_0000));
    let m = expect_finding(alloc::allocate(&board, &s), "A10");
    assert!(m.contains("not an I/O port"), "{m}");
    let conns = &mut s.hv.vuart_connections.as_mut().unwrap().connections;
    conns[0] = conn(0x9000);
    alloc::allocate(&board, &s).unwrap();
}
