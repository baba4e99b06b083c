//! Many VMs, vCPUs and clients at once, from several threads: every request is completed
//! exactly once with the right value, and the simulated hypervisor sees no protocol error.

mod sim;

use acrn_abi::irq::AcrnMsiEntry;
use acrn_abi::vm::GuestFlags;
use acrn_hsm::*;
use sim::{Access, SharedSim, SimHv};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const VMS: u16 = 3;
const VCPUS: u64 = 6;
const ROUNDS: u64 = 150;
const KERNEL_MMIO: u64 = 0xD000_0000;
const DOORBELL: u64 = 0x1000;

/// The "device model": reads return a value derived from the access so vCPUs can check it.
fn dm_value(a: &IoAccess) -> u64 {
    match a.kind {
        IoKind::PciCfg { bus, dev, func } => {
            u64::from(bus) << 24 | u64::from(dev) << 16 | u64::from(func) << 8 | a.addr
        }
        _ => a.addr ^ 0x5A5A,
    }
}

struct Kernel;
impl IoHandler for Kernel {
    fn handle(&self, a: &mut IoAccess) {
        if !a.write {
            a.value = a.addr.wrapping_mul(3);
        }
    }
}

struct Counter(AtomicU64);
impl Notifier for Counter {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn many_vcpus_and_clients_lose_nothing_and_complete_nothing_twice() {
    let sim = Arc::new(SimHv::default());
    let hsm = Arc::new(Hsm::new(SharedSim(sim.clone())));
    let mut doorbells = Vec::new();
    let mut irqfds = Vec::new();
    for i in 0..VMS {
        // VM 2 uses completion polling; the others are notified.
        let flags = if i == 1 {
            GuestFlags::IO_COMPLETION_POLLING
        } else {
            GuestFlags::empty()
        };
        let name = format!("VM{i}");
        let vm = hsm
            .create_vm(&VmConfig {
                name: &name,
                flags,
                cpu_affinity: (1 << VCPUS) - 1,
            })
            .unwrap();
        assert_eq!(u64::from(vm.vcpu_num()), VCPUS);
        vm.create_default_client().unwrap();
        let k = vm.create_client("kernel", Box::new(Kernel)).unwrap();
        k.add_range(RangeKind::Mmio, KERNEL_MMIO, KERNEL_MMIO + 0xFFFF)
            .unwrap();
        let bell = Arc::new(Counter(AtomicU64::new(0)));
        for v in 0..VCPUS {
            let cfg = IoEventFdConfig {
                kind: RangeKind::Pio,
                addr: DOORBELL,
                len: 4,
                datamatch: Some(v),
            };
            vm.assign_ioeventfd(cfg, bell.clone()).unwrap();
        }
        // Writes to a second doorbell raise an MSI through an irqfd.
        let irqfd = vm
            .assign_irqfd(AcrnMsiEntry {
                msi_addr: 0xFEE0_0000,
                msi_data: 0x30 + u64::from(i),
            })
            .unwrap();
        let cfg = IoEventFdConfig {
            kind: RangeKind::Mmio,
            addr: 0xC000_0000,
            len: 4,
            datamatch: None,
        };
        vm.assign_ioeventfd(cfg, irqfd.clone()).unwrap();
        doorbells.push(bell);
        irqfds.push(irqfd);
        vm.start().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dm_completions = Arc::new(AtomicU64::new(0));
    let dm_lost_races = Arc::new(AtomicU64::new(0));
    let mut service = Vec::new();
    // Two dispatchers (upcall handlers) that also run kernel clients.
    for _ in 0..2 {
        let (sim, hsm, stop) = (sim.clone(), hsm.clone(), stop.clone());
        service.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let seen = sim.upcalls();
                hsm.handle_upcall().unwrap();
                sim.wait_upcall(seen, Duration::from_millis(20));
            }
        }));
    }
    // A separate kernel-client worker, racing the dispatchers for the same requests.
    {
        let (hsm, stop) = (hsm.clone(), stop.clone());
        service.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                hsm.process_kernel_clients().unwrap();
                thread::yield_now();
            }
        }));
    }
    // Two device-model threads serving the default clients of all VMs.
    for _ in 0..2 {
        let (hsm, stop, done, lost) = (
            hsm.clone(),
            stop.clone(),
            dm_completions.clone(),
            dm_lost_races.clone(),
        );
        service.push(thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                for id in hsm.vm_ids() {
                    let Some(vm) = hsm.vm(id) else { continue };
                    for r in vm.default_requests() {
                        match vm.complete_request(&r, dm_value(&r)) {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(HsmError::NotPending(_)) => lost.fetch_add(1, Ordering::Relaxed),
                            Err(e) => panic!("{e}"),
                        };
                    }
                }
                thread::yield_now();
            }
        }));
    }
    // The vCPUs.
    let mut vcpus = Vec::new();
    for vmid in 1..=VMS {
        for vcpu in 0..VCPUS {
            let sim = sim.clone();
            vcpus.push(thread::spawn(move || {
                let v = vcpu as usize;
                let mut bad = Vec::new();
                let mut dm_reqs = 0u64;
                for round in 0..ROUNDS {
                    let port = 0x2000 + vcpu * 0x10 + (round % 4);
                    match round % 6 {
                        0 => {
                            let got = sim.io(vmid, v, Access::PioRead { port, size: 1 });
                            // PIO values are 32 bits wide.
                            if got != (port ^ 0x5A5A) & 0xFFFF_FFFF {
                                bad.push(format!("pio read {port:#x} -> {got:#x}"));
                            }
                            dm_reqs += 1;
                        }
                        1 => {
                            let addr = KERNEL_MMIO + vcpu * 0x100 + round * 8 % 0x100;
                            let got = sim.io(vmid, v, Access::MmioRead { addr, size: 8 });
                            if got != addr * 3 {
                                bad.push(format!("kernel mmio read {addr:#x} -> {got:#x}"));
                            }
                        }
                        2 => {
                            sim.io(
                                vmid,
                                v,
                                Access::PioWrite {
                                    port: DOORBELL,
                                    size: 4,
                                    value: vcpu as u32,
                                },
                            );
                        }
                        3 => {
                            let dev = vcpu as u32 + 1;
                            let cf8 = 0x8000_0000 | (dev << 11) | 0x10;
                            // The latch is per VM and vCPUs race on it, as on hardware; only
                            // check that the access arrives as PCICFG for some latched device.
                            sim.io(
                                vmid,
                                v,
                                Access::PioWrite {
                                    port: 0xCF8,
                                    size: 4,
                                    value: cf8,
                                },
                            );
                            let got = sim.io(
                                vmid,
                                v,
                                Access::PioRead {
                                    port: 0xCFC,
                                    size: 4,
                                },
                            );
                            let dev = (got >> 16) & 0xFF;
                            if got & 0xFF != 0x10 || !(1..=VCPUS).contains(&dev) {
                                bad.push(format!("pci read -> {got:#x}"));
                            }
                            dm_reqs += 1;
                        }
                        4 => {
                            sim.io(
                                vmid,
                                v,
                                Access::MmioWrite {
                                    addr: 0xC000_0000,
                                    size: 4,
                                    value: round,
                                },
                            );
                        }
                        _ => {
                            let addr = 0xFE00_0000 + vcpu * 8;
                            let got = sim.io(vmid, v, Access::MmioRead { addr, size: 8 });
                            if got != addr ^ 0x5A5A {
                                bad.push(format!("dm mmio read {addr:#x} -> {got:#x}"));
                            }
                            dm_reqs += 1;
                        }
                    }
                }
                (bad, dm_reqs)
            }));
        }
    }
    let mut bad = Vec::new();
    let mut dm_expected = 0;
    for h in vcpus {
        let (b, n) = h.join().unwrap();
        bad.extend(b);
        dm_expected += n;
    }
    stop.store(true, Ordering::Release);
    sim.kick();
    for h in service {
        h.join().unwrap();
    }
    assert!(bad.is_empty(), "wrong values: {bad:?}");
    assert!(
        sim.errors().is_empty(),
        "protocol errors: {:?}",
        sim.errors()
    );

    // Every request completed exactly once: the hypervisor consumed one completion per access.
    let per_vcpu: u64 = (0..ROUNDS).map(|r| if r % 6 == 3 { 2 } else { 1 }).sum();
    let total = per_vcpu * VCPUS;
    for vmid in 1..=VMS {
        assert_eq!(sim.with(|s| s.vms[&vmid].completions), total, "VM {vmid}");
    }
    // Doorbell writes each signalled once; irqfd doorbells each injected one MSI.
    let bells = (0..ROUNDS).filter(|r| r % 6 == 2).count() as u64 * VCPUS;
    let msis = (0..ROUNDS).filter(|r| r % 6 == 4).count() as u64 * VCPUS;
    for i in 0..VMS as usize {
        assert_eq!(
            doorbells[i].0.load(Ordering::Relaxed),
            bells,
            "VM {i} doorbell"
        );
        assert_eq!(irqfds[i].injected(), msis, "VM {i} irqfd");
        assert_eq!(sim.with(|s| s.vms[&(i as u16 + 1)].msis.len() as u64), msis);
    }
    // The DM completed each of its requests exactly once (stale duplicates were refused).
    let dm = dm_completions.load(Ordering::Relaxed);
    assert_eq!(dm, dm_expected);
    println!(
        "{} requests, {dm} by the DM, {} lost DM races, {} upcalls",
        total * u64::from(VMS),
        dm_lost_races.load(Ordering::Relaxed),
        sim.upcalls()
    );
}
