//! The HSM against the simulated hypervisor, feature by feature.

mod sim;

use acrn_abi::hypercall::*;
use acrn_abi::ioreq::*;
use acrn_abi::irq::{AcrnMsiEntry, GsiOp};
use acrn_abi::memory::{MemAccess, MR_ADD, MR_DEL};
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::{GuestFlags, VmState};
use acrn_hsm::*;
use sim::{Access, SharedSim, SimHv};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn setup() -> (Arc<SimHv>, Hsm<SharedSim>) {
    let sim = Arc::new(SimHv::default());
    (sim.clone(), Hsm::new(SharedSim(sim)))
}

fn cfg(name: &str) -> VmConfig<'_> {
    VmConfig {
        name,
        flags: GuestFlags::empty(),
        cpu_affinity: 0b11,
    }
}

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn lifecycle_state_machine_table() {
    use VmState::*;
    let all = [PoweredOff, Created, Running, ReadyToPowerOff, Paused];
    let expect = |op, from| match (op, from) {
        (VmOp::Start, Created) => Some(Running),
        (VmOp::Pause, Running | ReadyToPowerOff | Created | Paused) => Some(Paused),
        (VmOp::Reset, Paused) => Some(Created),
        (VmOp::Destroy, Paused) => Some(PoweredOff),
        (VmOp::SetVcpuRegs, s @ (Created | Paused | ReadyToPowerOff)) => Some(s),
        _ => None,
    };
    for op in [
        VmOp::Start,
        VmOp::Pause,
        VmOp::Reset,
        VmOp::Destroy,
        VmOp::SetVcpuRegs,
    ] {
        for from in all {
            assert_eq!(
                lifecycle_transition(op, from),
                expect(op, from),
                "{op:?} from {from:?}"
            );
        }
    }
}

#[test]
fn create_start_pause_reset_destroy() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("POST_STD_VM1")).unwrap();
    assert_eq!(
        (vm.vmid(), vm.vcpu_num(), vm.state()),
        (1, 2, VmState::Created)
    );
    assert_eq!(hsm.vm_ids(), vec![1]);
    // The page went to the hypervisor through the double indirection.
    assert_ne!(sim.with(|s| s.vms[&1].page), 0);

    // Illegal transitions are refused locally, without a hypercall.
    let before = sim.with(|s| s.calls.len());
    assert!(matches!(
        vm.reset(),
        Err(HsmError::InvalidState {
            state: VmState::Created,
            ..
        })
    ));
    assert!(matches!(
        hsm.destroy_vm(1),
        Err(HsmError::InvalidState { .. })
    ));
    assert_eq!(sim.with(|s| s.calls.len()), before);

    vm.start().unwrap();
    assert!(vm.start().is_err());
    assert!(
        vm.set_vcpu_regs(&AcrnVcpuRegs::default()).is_err(),
        "not while running"
    );
    vm.pause().unwrap();
    vm.set_vcpu_regs(&AcrnVcpuRegs {
        vcpu_id: 1,
        ..Default::default()
    })
    .unwrap();
    vm.reset().unwrap();
    assert_eq!(vm.state(), VmState::Created);
    vm.start().unwrap();
    vm.pause().unwrap();
    hsm.destroy_vm(1).unwrap();
    assert_eq!(vm.state(), VmState::PoweredOff);
    assert!(hsm.vm(1).is_none());
    assert!(sim.with(|s| s.vms.is_empty()));
    assert!(matches!(
        vm.inject_msi(AcrnMsiEntry::default()),
        Err(HsmError::InvalidState { .. })
    ));
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

#[test]
fn create_errors() {
    let (sim, hsm) = setup();
    assert!(matches!(
        hsm.create_vm(&cfg("0123456789abcdef")),
        Err(HsmError::InvalidArgument(_))
    ));
    hsm.create_vm(&cfg("A")).unwrap();
    // The simulated hypervisor refuses a second VM of the same name, like ACRN (slot in use).
    let err = hsm.create_vm(&cfg("A")).unwrap_err();
    assert!(
        matches!(
            err,
            HsmError::Hypercall {
                call: "HC_CREATE_VM",
                err: HcError(1)
            }
        ),
        "{err}"
    );
    // A failing HC_SET_IOREQ_BUFFER tears the new VM down again.
    sim.with(|s| s.fail_next = Some((HC_SET_IOREQ_BUFFER, -22)));
    let err = hsm.create_vm(&cfg("B")).unwrap_err();
    assert_eq!(err.to_string(), "HC_SET_IOREQ_BUFFER: -22 (EINVAL)");
    assert_eq!(hsm.vm_ids(), vec![1]);
    assert_eq!(
        sim.with(|s| s.vms.len()),
        1,
        "B was destroyed in the hypervisor"
    );
}

#[test]
fn set_vcpu_regs_checks() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("R")).unwrap();
    let bad_id = AcrnVcpuRegs {
        vcpu_id: 2,
        ..Default::default()
    };
    assert!(matches!(
        vm.set_vcpu_regs(&bad_id),
        Err(HsmError::InvalidArgument(_))
    ));
    let mut reserved = AcrnVcpuRegs::default();
    reserved.vcpu_regs.reserved_32[1] = 1;
    assert!(matches!(
        vm.set_vcpu_regs(&reserved),
        Err(HsmError::InvalidArgument(_))
    ));
    let mut ok = AcrnVcpuRegs::default();
    ok.vcpu_regs.rip = 0x1000;
    vm.set_vcpu_regs(&ok).unwrap();
    assert_eq!(sim.with(|s| s.vms[&1].regs[0].vcpu_regs.rip), 0x1000);
}

#[test]
fn memory_segments() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("M")).unwrap();
    let ram = MemSegment {
        kind: MemKind::Ram,
        user_vm_gpa: 0,
        service_vm_gpa: 0x1_0000_0000,
        size: 0x20_0000,
        access: MemAccess::RWX,
    };
    let mmio = MemSegment {
        kind: MemKind::Mmio,
        user_vm_gpa: 0xE000_0000,
        service_vm_gpa: 0xFE00_0000,
        size: 0x1000,
        access: MemAccess::READ | MemAccess::WRITE,
    };
    vm.map_memory(&[ram, mmio]).unwrap();
    let regions = sim.with(|s| s.vms[&1].regions.clone());
    assert_eq!(regions.len(), 2);
    assert_eq!(
        (regions[0].r#type, regions[0].prot, regions[0].size),
        (MR_ADD, 0x47, 0x20_0000)
    );
    assert_eq!(
        (regions[1].prot, regions[1].service_vm_gpa),
        (0x103, 0xFE00_0000)
    );
    assert_eq!(vm.translate_gpa(0x1234), Some(0x1_0000_1234));
    assert_eq!(vm.translate_gpa(0x20_0000), None);

    let bad = |seg: MemSegment| vm.map_memory(&[seg]).unwrap_err();
    assert!(matches!(
        bad(MemSegment {
            size: 0x1001,
            user_vm_gpa: 0x100_0000,
            ..ram
        }),
        HsmError::InvalidArgument(_)
    ));
    assert!(matches!(
        bad(MemSegment {
            user_vm_gpa: 0x100_0800,
            ..ram
        }),
        HsmError::InvalidArgument(_)
    ));
    assert!(matches!(
        bad(MemSegment {
            user_vm_gpa: u64::MAX - 0xFFF,
            ..ram
        }),
        HsmError::InvalidArgument(_)
    ));
    assert!(matches!(
        bad(MemSegment {
            access: MemAccess::empty(),
            user_vm_gpa: 0x100_0000,
            ..ram
        }),
        HsmError::InvalidArgument(_)
    ));
    assert!(matches!(
        bad(MemSegment {
            user_vm_gpa: 0x1F_F000,
            ..ram
        }),
        HsmError::Overlap(0x1F_F000)
    ));
    let twice = MemSegment {
        user_vm_gpa: 0x4000_0000,
        ..ram
    };
    assert!(matches!(
        vm.map_memory(&[twice, twice]),
        Err(HsmError::Overlap(_))
    ));
    assert_eq!(
        sim.with(|s| s.vms[&1].regions.len()),
        2,
        "nothing sent for rejected batches"
    );

    assert!(matches!(
        vm.unmap_memory(0, 0x1000),
        Err(HsmError::NotMapped { .. })
    ));
    vm.unmap_memory(0xE000_0000, 0x1000).unwrap();
    let del = sim.with(|s| s.vms[&1].regions[2]);
    assert_eq!(
        (del.r#type, del.gpa, del.size, del.prot),
        (MR_DEL, 0xE000_0000, 0x1000, 0)
    );
    assert_eq!(vm.memory_segments(), vec![ram]);

    // The per-VM segment limit.
    let many: Vec<MemSegment> = (1..ACRN_MEM_MAPPING_MAX as u64)
        .map(|i| MemSegment {
            user_vm_gpa: 0x1_0000_0000 + i * 0x1000,
            size: 0x1000,
            ..ram
        })
        .collect();
    vm.map_memory(&many).unwrap();
    let one_more = MemSegment {
        user_vm_gpa: 0x2_0000_0000,
        size: 0x1000,
        ..ram
    };
    assert!(matches!(
        vm.map_memory(&[one_more]),
        Err(HsmError::TooManySegments)
    ));
}

#[test]
fn interrupts_reach_the_hypervisor() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("I")).unwrap();
    let msi = AcrnMsiEntry {
        msi_addr: 0xFEE0_1000,
        msi_data: 0x31,
    };
    vm.inject_msi(msi).unwrap();
    vm.set_irqline(4, GsiOp::RaisingPulse).unwrap();
    sim.with(|s| {
        assert_eq!(s.vms[&1].msis, vec![msi]);
        assert_eq!(
            (s.vms[&1].irqlines[0].gsi, s.vms[&1].irqlines[0].op),
            (4, 2)
        );
    });
}

#[test]
fn default_client_round_trip_and_no_double_completion() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("D")).unwrap();
    // A request before any client exists stays PENDING...
    sim.post(
        1,
        0,
        Access::PioRead {
            port: 0x3F8,
            size: 1,
        },
    );
    assert_eq!(hsm.handle_upcall().unwrap(), 0);
    assert_eq!(sim.slot_state(1, 0), ACRN_IOREQ_STATE_PENDING);
    // ...and is handed out when the default client appears.
    let dm = vm.create_default_client().unwrap();
    assert!(matches!(
        vm.create_default_client(),
        Err(HsmError::ClientExists)
    ));
    assert_eq!(dm.pending(), 0b1);
    assert_eq!(sim.slot_state(1, 0), ACRN_IOREQ_STATE_PROCESSING);
    let reqs = vm.default_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].kind, reqs[0].addr, reqs[0].size, reqs[0].write),
        (IoKind::Pio, 0x3F8, 1, false)
    );
    vm.complete_request(&reqs[0], 0x41).unwrap();
    assert!(matches!(
        vm.complete_request(&reqs[0], 0x41),
        Err(HsmError::NotPending(0))
    ));
    assert_eq!(sim.wait_complete(1, 0, SHORT), Some(0x41));
    assert_eq!(sim.calls_of(HC_NOTIFY_REQUEST_FINISH), 1);

    // MMIO write goes to the DM too, with its value.
    sim.post(
        1,
        1,
        Access::MmioWrite {
            addr: 0xFEB0_0010,
            size: 4,
            value: 0xAB,
        },
    );
    hsm.handle_upcall().unwrap();
    let r = vm.request(1).unwrap();
    assert_eq!(
        (r.kind, r.addr, r.value, r.write),
        (IoKind::Mmio, 0xFEB0_0010, 0xAB, true)
    );
    assert!(matches!(vm.request(0), Err(HsmError::NotPending(0))));
    vm.complete_request(&r, 0).unwrap();
    // A completion that arrives after the vCPU moved on must not complete the newer request.
    let stale = r;
    assert!(sim.wait_complete(1, 1, SHORT).is_some());
    sim.post(
        1,
        1,
        Access::PioRead {
            port: 0x3F9,
            size: 1,
        },
    );
    hsm.handle_upcall().unwrap();
    let newer = vm.request(1).unwrap();
    assert_ne!(newer.seq, stale.seq);
    assert!(matches!(
        vm.complete_request(&stale, 0),
        Err(HsmError::NotPending(1))
    ));
    vm.complete_request(&newer, 0x7).unwrap();
    assert!(sim.wait_complete(1, 1, SHORT).is_some());
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

#[test]
fn pci_config_ports_become_pcicfg_requests() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("P")).unwrap();
    vm.create_default_client().unwrap();
    // Disabled config space: 0xCFC reads all ones without the DM.
    assert_eq!(
        sim.io_with(
            &hsm,
            1,
            0,
            Access::PioRead {
                port: 0xCFC,
                size: 4
            }
        ),
        0xFFFF_FFFF
    );
    // Latch bus 2, dev 3, func 1, reg 0x40 plus extended bits 0x100 (bits 27:24 = 1).
    let addr = 0x8000_0000 | (1 << 24) | (2 << 16) | (3 << 11) | (1 << 8) | 0x40;
    sim.io_with(
        &hsm,
        1,
        0,
        Access::PioWrite {
            port: 0xCF8,
            size: 4,
            value: addr,
        },
    );
    assert_eq!(
        sim.io_with(
            &hsm,
            1,
            0,
            Access::PioRead {
                port: 0xCF8,
                size: 4
            }
        ),
        u64::from(addr)
    );
    assert!(
        vm.default_requests().is_empty(),
        "0xCF8 never reaches the DM"
    );

    sim.post(
        1,
        1,
        Access::PioRead {
            port: 0xCFE,
            size: 2,
        },
    );
    hsm.handle_upcall().unwrap();
    let r = vm.request(1).unwrap();
    assert_eq!(
        r.kind,
        IoKind::PciCfg {
            bus: 2,
            dev: 3,
            func: 1
        }
    );
    assert_eq!((r.addr, r.size), (0x140 + 2, 2));
    vm.complete_request(&r, 0x1234).unwrap();
    assert_eq!(sim.wait_complete(1, 1, SHORT), Some(0x1234));
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

/// A kernel client that answers reads with `addr + 1` and counts writes.
struct Echo(AtomicU64);
impl IoHandler for Echo {
    fn handle(&self, a: &mut IoAccess) {
        if a.write {
            self.0.fetch_add(1, Ordering::Relaxed);
        } else {
            a.value = a.addr + 1;
        }
    }
}

#[test]
fn range_clients_claim_whole_accesses_only() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("K")).unwrap();
    vm.create_default_client().unwrap();
    let echo = Arc::new(Echo(AtomicU64::new(0)));
    struct Fwd(Arc<Echo>);
    impl IoHandler for Fwd {
        fn handle(&self, a: &mut IoAccess) {
            self.0.handle(a)
        }
    }
    let k = vm
        .create_client("echo", Box::new(Fwd(echo.clone())))
        .unwrap();
    k.add_range(RangeKind::Mmio, 0xD000_0000, 0xD000_0FFF)
        .unwrap();
    assert!(k.add_range(RangeKind::Mmio, 5, 4).is_err());
    assert_eq!(
        sim.io_with(
            &hsm,
            1,
            0,
            Access::MmioRead {
                addr: 0xD000_0FF8,
                size: 8
            }
        ),
        0xD000_0FF9
    );
    sim.io_with(
        &hsm,
        1,
        0,
        Access::MmioWrite {
            addr: 0xD000_0000,
            size: 4,
            value: 7,
        },
    );
    assert_eq!(echo.0.load(Ordering::Relaxed), 1);
    // Straddling the end of the range, or PIO at the same numbers: the default client.
    sim.post(
        1,
        0,
        Access::MmioRead {
            addr: 0xD000_0FFC,
            size: 8,
        },
    );
    sim.post(
        1,
        1,
        Access::PioRead {
            port: 0xD000_0000,
            size: 4,
        },
    );
    hsm.handle_upcall().unwrap();
    assert_eq!(vm.default_requests().len(), 2);
    // Destroying the default client completes what it held, reads returning all ones.
    let dm = vm.default_client().unwrap();
    vm.destroy_client(&dm).unwrap();
    assert!(dm.is_destroyed());
    assert_eq!(sim.wait_complete(1, 0, SHORT), Some(u64::MAX));
    assert_eq!(sim.wait_complete(1, 1, SHORT), Some(0xFFFF_FFFF));
    assert!(matches!(vm.destroy_client(&dm), Err(HsmError::NoClient)));
    k.remove_range(RangeKind::Mmio, 0xD000_0000, 0xD000_0FFF)
        .unwrap();
    assert!(k.ranges().is_empty());
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

struct Counter(AtomicU64);
impl Notifier for Counter {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn ioeventfd_signals_without_the_device_model() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("E")).unwrap();
    vm.create_default_client().unwrap();
    let n = Arc::new(Counter(AtomicU64::new(0)));
    let cfg = IoEventFdConfig {
        kind: RangeKind::Pio,
        addr: 0x1010,
        len: 2,
        datamatch: Some(3),
    };
    let id = vm.assign_ioeventfd(cfg, n.clone()).unwrap();
    assert!(matches!(
        vm.assign_ioeventfd(cfg, n.clone()),
        Err(HsmError::IoEventFdConflict)
    ));
    assert!(matches!(
        vm.assign_ioeventfd(
            IoEventFdConfig {
                datamatch: None,
                ..cfg
            },
            n.clone()
        ),
        Err(HsmError::IoEventFdConflict)
    ));
    assert!(matches!(
        vm.assign_ioeventfd(IoEventFdConfig { len: 3, ..cfg }, n.clone()),
        Err(HsmError::InvalidArgument(_))
    ));
    let id4 = vm
        .assign_ioeventfd(
            IoEventFdConfig {
                datamatch: Some(4),
                ..cfg
            },
            n.clone(),
        )
        .unwrap();

    sim.io_with(
        &hsm,
        1,
        0,
        Access::PioWrite {
            port: 0x1010,
            size: 2,
            value: 3,
        },
    );
    sim.io_with(
        &hsm,
        1,
        0,
        Access::PioWrite {
            port: 0x1010,
            size: 2,
            value: 4,
        },
    );
    sim.io_with(
        &hsm,
        1,
        0,
        Access::PioWrite {
            port: 0x1010,
            size: 2,
            value: 5,
        },
    );
    assert_eq!(
        n.0.load(Ordering::Relaxed),
        2,
        "values 3 and 4 match, 5 does not"
    );
    assert_eq!(
        sim.io_with(
            &hsm,
            1,
            0,
            Access::PioRead {
                port: 0x1010,
                size: 2
            }
        ),
        0
    );
    assert!(vm.default_requests().is_empty(), "nothing reached the DM");

    vm.deassign_ioeventfd(id).unwrap();
    vm.deassign_ioeventfd(id4).unwrap();
    assert!(matches!(
        vm.deassign_ioeventfd(id),
        Err(HsmError::NoNotifier)
    ));
    sim.post(
        1,
        0,
        Access::PioWrite {
            port: 0x1010,
            size: 2,
            value: 3,
        },
    );
    hsm.handle_upcall().unwrap();
    assert_eq!(
        vm.default_requests().len(),
        1,
        "after deassign the DM gets it"
    );
    assert_eq!(n.0.load(Ordering::Relaxed), 2);
}

#[test]
fn irqfd_injects_msi_and_chains_with_ioeventfd() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("Q")).unwrap();
    let msi = AcrnMsiEntry {
        msi_addr: 0xFEE0_0000,
        msi_data: 0x45,
    };
    let irqfd = vm.assign_irqfd(msi).unwrap();
    irqfd.notify();
    assert_eq!(irqfd.injected(), 1);
    // Doorbell: an MMIO write with any value raises the MSI, no DM involved.
    let cfg = IoEventFdConfig {
        kind: RangeKind::Mmio,
        addr: 0xC000_3000,
        len: 4,
        datamatch: None,
    };
    vm.assign_ioeventfd(cfg, irqfd.clone()).unwrap();
    for v in 0..5 {
        sim.io_with(
            &hsm,
            1,
            1,
            Access::MmioWrite {
                addr: 0xC000_3000,
                size: 4,
                value: v,
            },
        );
    }
    assert_eq!(irqfd.injected(), 6);
    assert_eq!(sim.with(|s| s.vms[&1].msis.len()), 6);
    vm.deassign_irqfd(&irqfd).unwrap();
    assert!(!irqfd.is_active());
    irqfd.notify();
    assert_eq!(
        sim.with(|s| s.vms[&1].msis.len()),
        6,
        "deassigned irqfds do nothing"
    );
    assert!(matches!(
        vm.deassign_irqfd(&irqfd),
        Err(HsmError::NoNotifier)
    ));
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

#[test]
fn polling_mode_skips_the_notify_hypercall() {
    let (sim, hsm) = setup();
    let vm = hsm
        .create_vm(&VmConfig {
            name: "RT",
            flags: GuestFlags::IO_COMPLETION_POLLING | GuestFlags::RT,
            cpu_affinity: 1,
        })
        .unwrap();
    vm.create_default_client().unwrap();
    sim.post(
        1,
        0,
        Access::PioRead {
            port: 0x60,
            size: 1,
        },
    );
    hsm.handle_upcall().unwrap();
    vm.complete_request(&vm.request(0).unwrap(), 0xFA).unwrap();
    assert_eq!(sim.wait_complete(1, 0, SHORT), Some(0xFA));
    assert_eq!(sim.calls_of(HC_NOTIFY_REQUEST_FINISH), 0);
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

#[test]
fn reset_clears_outstanding_requests() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("C")).unwrap();
    let dm = vm.create_default_client().unwrap();
    vm.start().unwrap();
    sim.post(
        1,
        0,
        Access::PioRead {
            port: 0x70,
            size: 1,
        },
    );
    hsm.handle_upcall().unwrap();
    sim.post(
        1,
        1,
        Access::PioRead {
            port: 0x71,
            size: 1,
        },
    );
    vm.pause().unwrap();
    vm.reset().unwrap();
    assert_eq!(dm.pending(), 0);
    assert_eq!(sim.wait_complete(1, 0, SHORT), Some(0xFFFF_FFFF));
    assert_eq!(
        sim.wait_complete(1, 1, SHORT),
        Some(0xFFFF_FFFF),
        "the undispatched one too"
    );
    assert_eq!(vm.state(), VmState::Created);
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
}

#[test]
fn hypercall_errors_are_typed() {
    let (sim, hsm) = setup();
    let vm = hsm.create_vm(&cfg("H")).unwrap();
    sim.with(|s| s.fail_next = Some((HC_START_VM, -1)));
    let err = vm.start().unwrap_err();
    assert_eq!(
        err,
        HsmError::Hypercall {
            call: "HC_START_VM",
            err: HcError(1)
        }
    );
    assert_eq!(err.to_string(), "HC_START_VM: -1 (EPERM)");
    assert_eq!(
        vm.state(),
        VmState::Created,
        "a refused transition changes nothing"
    );
    assert_eq!(hsm.hypervisor().get_api_version().unwrap_err(), HcError(25));
}

trait IoWith {
    fn io_with(&self, hsm: &Hsm<SharedSim>, vmid: u16, vcpu: usize, a: Access) -> u64;
}

impl IoWith for SimHv {
    /// One access, serviced synchronously: upcall, then the DM answers reads with 0.
    fn io_with(&self, hsm: &Hsm<SharedSim>, vmid: u16, vcpu: usize, a: Access) -> u64 {
        self.post(vmid, vcpu, a);
        hsm.handle_upcall().unwrap();
        if let Some(vm) = hsm.vm(vmid) {
            for r in vm.default_requests() {
                if usize::from(r.vcpu) == vcpu {
                    vm.complete_request(&r, 0).unwrap();
                }
            }
        }
        self.wait_complete(vmid, vcpu, SHORT).expect("completed")
    }
}
