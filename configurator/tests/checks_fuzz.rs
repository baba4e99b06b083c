//! The semantic checks never panic, whatever the model holds: random scenarios (VM kinds,
//! ids, names, pCPUs, devices, memory, vUARTs, IVSHMEM, RDT) over a real board, and the
//! same over a board with its topology, caches and memory emptied.
//!
//! Needs the ACRN corpus for the board (`../shared/acrn-corpus` or `$ACRN_CORPUS`); skips
//! with a message without it, unless `ACRN_REQUIRE_CORPUS=1`.

use std::sync::OnceLock;

use acrn_configurator::board::{load_board, Board, CatCapability, SoftwareSram};
use acrn_configurator::checks::run_all;
use acrn_configurator::diag::Findings;
use acrn_configurator::scenario::*;
use proptest::prelude::*;

mod common;

fn board() -> Option<&'static (Board, Board)> {
    static B: OnceLock<Option<(Board, Board)>> = OnceLock::new();
    B.get_or_init(|| {
        let p = common::corpus()?.join("adl-asrock/adl-asrock.xml");
        let mut b = load_board(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // Give it Software SRAM too, so C41/C43 have something to look at.
        if let Some(c) = b.caches.caches.iter_mut().find(|c| c.level == 3) {
            let mut fields = std::collections::BTreeMap::new();
            fields.insert("waymask".to_string(), "0x3".to_string());
            c.software_sram = Some(SoftwareSram {
                start: Some(0x8000_0000),
                end: Some(0x8010_0000),
                size: None,
                fields,
                span: Default::default(),
            });
            c.cat.get_or_insert(CatCapability {
                capacity_mask_length: 8,
                clos_number: Some(0),
                cdp: true,
                span: Default::default(),
            });
        }
        let mut empty = b.clone();
        empty.processors = Default::default();
        empty.caches = Default::default();
        empty.memory.clear();
        empty.devices = Default::default();
        empty.legacy = Default::default();
        Some((b, empty))
    })
    .as_ref()
}

const NAMES: [&str; 5] = ["A", "B", "C", "", "ghost"];
const PCI: [&str; 6] = [
    "00:02.0 VGA",
    "00:02.0 other text",
    "zz",
    "",
    "ff:1f.7",
    "00:14.0",
];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&NAMES[..]).prop_map(str::to_string)
}

fn num() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..20, Just(u32::MAX), any::<u32>()]
}

fn big() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..0x2_0000_0000, Just(u64::MAX), any::<u64>()]
}

fn vbdf() -> impl Strategy<Value = Vbdf> {
    (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(bus, dev, func)| Vbdf { bus, dev, func })
}

prop_compose! {
    fn display()(m in prop::option::of(num()), r in prop::option::of(prop_oneof![Just(String::new()), Just("1920x1080".to_string())]),
                 h in prop::option::of(num()), v in prop::option::of(num())) -> Display {
        Display { monitor_id: m, window_resolutions: r, horizontal_offset: h, vertical_offset: v }
    }
}

prop_compose! {
    fn vm()(id in num(), lo in 0usize..4, ty in 0usize..3, name in name(),
            pcpus in prop::collection::vec(prop_oneof![0u32..14, Just(u32::MAX)], 0..5),
            flags in any::<[bool; 8]>(), companion in prop::option::of(num()),
            pci in prop::collection::vec(prop::sample::select(&PCI[..]), 0..3),
            size in prop::option::of(big()), hpa in prop::collection::vec((big(), big()), 0..3),
            vsock in prop::collection::vec(prop_oneof![3u64..6, Just(u64::MAX)], 0..3),
            gpu in prop::option::of((any::<bool>(), prop::collection::vec(display(), 0..6))),
            epc in big(), console in 0usize..6) -> Vm {
        Vm {
            id,
            load_order: [Some(LoadOrder::PreLaunched), Some(LoadOrder::Service), Some(LoadOrder::PostLaunched), None][lo],
            vm_type: [Some(VmType::Rtvm), Some(VmType::Standard), None][ty],
            name,
            console_vuart: ConsoleVuart::NAMES.get(console).and_then(|n| n.parse().ok()),
            cpu_affinity: Some(CpuAffinity { pcpu: pcpus.into_iter().map(|p| Pcpu { pcpu_id: p, real_time_vcpu: None }).collect() }),
            own_pcpu: Some(flags[0]),
            lapic_passthrough: Some(flags[1]),
            nested_virtualization_support: Some(flags[2]),
            virtual_cat_support: Some(flags[3]),
            secure_world_support: Some(flags[4]),
            companion_vmid: companion,
            mmio_resources: Some(MmioResources { tpm2: Some(flags[5]), p2sb: Some(flags[6]) }),
            pci_devs: Some(PciDevs { pci_dev: pci.into_iter().map(str::to_string).collect() }),
            memory: Some(VmMemory { size, hpa_region: hpa.into_iter().map(|(s, z)| HpaRegion { start_hpa: Hex(s), size_hpa: z }).collect() }),
            epc_section: Some(EpcSection { base: None, size: Some(Hex(epc)) }),
            virtio_devices: Some(VirtioDevices {
                vsock,
                gpu: gpu.map(|(full, d)| VirtioGpu {
                    display_type: Some(if full { DisplayType::FullScreen } else { DisplayType::Window }),
                    displays: Some(Displays { display: d }),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

prop_compose! {
    fn endpoint()(vm_name in name(), port in prop::option::of(big()), b in prop::option::of(vbdf())) -> VuartEndpoint {
        VuartEndpoint { vm_name, io_port: port.map(Hex), vbdf: b }
    }
}

prop_compose! {
    fn scenario()(vms in prop::collection::vec(vm(), 0..7),
                  conns in prop::collection::vec((any::<bool>(), prop::collection::vec(endpoint(), 0..4)), 0..3),
                  regions in prop::collection::vec((name(), prop::collection::vec((name(), vbdf()), 0..4)), 0..3),
                  rdt in any::<[bool; 4]>(), caps in (prop::option::of(num()), prop::option::of(num())),
                  hv_ram in prop::option::of(big()), timer in prop::option::of(num()),
                  policies in prop::collection::vec((0u32..4, big(), name(), num(), big(), 0usize..4), 0..6),
                  hidden in prop::collection::vec(vbdf(), 0..2)) -> Scenario {
        let mut s = Scenario { vm: vms, ..Default::default() };
        s.hv.build_type = Some(if rdt[3] { BuildType::Debug } else { BuildType::Release });
        s.hv.debug_options = Some(DebugOptions { serial_console: Some("None".into()), ..Default::default() });
        s.hv.vuart_connections = Some(VuartConnections {
            connections: conns.into_iter().map(|(pci, endpoints)| VuartConnection {
                name: "c".into(),
                vuart_type: Some(if pci { VuartType::Pci } else { VuartType::Legacy }),
                endpoints,
            }).collect(),
        });
        s.hv.features = Some(Features {
            vuart_timer_pcpu: timer,
            rdt: Some(Rdt { rdt_enabled: Some(rdt[0]), cdp_enabled: Some(rdt[1]), vcat_enabled: Some(rdt[2]) }),
            ivshmem: Some(Ivshmem {
                regions: regions.into_iter().map(|(name, m)| IvshmemRegion {
                    name,
                    vms: IvshmemVms { vm: m.into_iter().map(|(vm_name, b)| IvshmemVm { vm_name, vbdf: Some(b) }).collect() },
                    ..Default::default()
                }).collect(),
            }),
            ..Default::default()
        });
        s.hv.capacities = Some(Capacities { max_vm_num: caps.0, max_pci_bus_num: caps.1, ..Default::default() });
        s.hv.memory = Some(HvMemory { stack_size: None, hv_ram_start: hv_ram.map(Hex) });
        s.hv.hidden_pdev_region = Some(HiddenPdevRegion { hidden_pdev: hidden });
        s.hv.cache_region = Some(CacheRegion {
            allocations: policies.into_iter().map(|(level, id, vm, vcpu, mask, ty)| CacheAllocation {
                cache_id: Hex(id),
                cache_level: level,
                policies: vec![CachePolicy {
                    vm, vcpu, clos_mask: Hex(mask),
                    cache_type: [Some(CacheType::Unified), Some(CacheType::Code), Some(CacheType::Data), None][ty],
                }],
            }).collect(),
        });
        s
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn checks_never_panic(s in scenario()) {
        let Some((full, empty)) = board() else { return Ok(()) };
        for b in [full, empty] {
            let mut f = Findings::new();
            run_all(b, &s, &mut f);
            for x in &f {
                prop_assert!(x.hint.is_some(), "{}", x);
            }
        }
    }
}
