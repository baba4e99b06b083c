//! The hypercall dispatcher (the host-testable part: argument checks and the VM state machine)
//! with a sequence of calls from any VM at any privilege level, parameters in a model of the
//! Service VM's RAM (two ranges around a hole that is another VM's memory). The VM layer is a
//! recording model that asserts every effect the dispatcher asks for is allowed:
//! - only the Service VM at CPL 0 gets anything done (#UD / #GP otherwise, nothing changes);
//! - effects only ever reach post-launched or dynamic slots, never a pre-launched VM or the
//!   Service VM, and only VMs that exist, in a state that permits them (start a created VM,
//!   destroy/reset only a paused one, registers not while running);
//! - every mapping is page-granular, below the user VM limit, and backed by Service VM RAM;
//!   pCPU affinities stay inside what the slot allows; vCPU indexes inside the VM;
//! - results are 0 or a negative errno; the dispatcher's view of each VM's state matches.
#![no_main]

use acrn_abi::errno::{EINVAL, ENOMEM, ENOTTY, EPERM};
use acrn_abi::hypercall::*;
use acrn_abi::irq::GsiOp;
use acrn_abi::memory::{MEM_ACCESS_RIGHT_MASK, MEM_TYPE_MASK};
use acrn_abi::{AcrnRegs, GuestFlags, VmState};
use acrn_hypervisor::hypercall::{
    Caller, GuestMemory, Hypercalls, IdentityRam, Outcome, PhysBytes, SlotConfig, SlotKind, VmOps,
    MAX_USER_GPA, MAX_VCPUS_PER_VM, VIOAPIC_PINS,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// Service VM RAM: two ranges around a hole (another VM's memory at 0x8000..0x9000).
const RAM: [(u64, u64); 2] = [(0x1000, 0x7000), (0x9000, 0x7000)];
const PHYS_LEN: usize = 0x10000;
const SERVICE: u16 = 1;
const SERVICE_PCPUS: u64 = 0b1111;
const MAX_VM: usize = 8;

fn configs() -> [SlotConfig; 5] {
    let slot = |kind, name, pcpus, flags: GuestFlags| SlotConfig {
        kind,
        name,
        pcpus,
        flags: flags.bits(),
    };
    [
        slot(SlotKind::PreLaunched, "PRE_RT", 0b1_0000, GuestFlags::RT),
        slot(SlotKind::Service, "SOS", SERVICE_PCPUS, GuestFlags::empty()),
        slot(
            SlotKind::PostLaunched,
            "POST_STD",
            0b0110,
            GuestFlags::empty(),
        ),
        slot(
            SlotKind::PostLaunched,
            "POST_RT",
            0b1000,
            GuestFlags::RT.union(GuestFlags::LAPIC_PASSTHROUGH),
        ),
        slot(
            SlotKind::PostLaunched,
            "STATIC",
            0b0010,
            GuestFlags::STATIC_VM,
        ),
    ]
}

/// Byte-addressed host memory; the dispatcher must only ever reach Service VM RAM.
struct Phys(Vec<u8>);

fn in_ram(a: u64, len: usize) -> bool {
    (0..len as u64).all(|i| {
        RAM.iter()
            .any(|&(s, n)| a.checked_add(i).is_some_and(|x| x >= s && x - s < n))
    })
}

impl PhysBytes for Phys {
    fn read(&self, hpa: u64, buf: &mut [u8]) {
        assert!(
            in_ram(hpa, buf.len()),
            "read outside Service VM RAM at {hpa:#x}"
        );
        buf.copy_from_slice(&self.0[hpa as usize..hpa as usize + buf.len()]);
    }
    fn write(&mut self, hpa: u64, data: &[u8]) {
        assert!(
            in_ram(hpa, data.len()),
            "write outside Service VM RAM at {hpa:#x}"
        );
        self.0[hpa as usize..hpa as usize + data.len()].copy_from_slice(data);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Created,
    Running,
    Paused,
}

/// The VM layer: what exists, per absolute VM id.
struct Model {
    vms: [Option<(State, u16)>; 16],
    /// Whether the next effect fails (an out-of-memory VM layer).
    fail: bool,
}

impl Model {
    fn vm(&self, vmid: u16) -> (State, u16) {
        let kind = configs().get(vmid as usize).map(|c| c.kind);
        assert!(
            !matches!(kind, Some(SlotKind::PreLaunched | SlotKind::Service)),
            "an effect on VM {vmid}, which is not post-launched"
        );
        self.vms[vmid as usize]
            .unwrap_or_else(|| panic!("an effect on VM {vmid}, which does not exist"))
    }
    fn set(&mut self, vmid: u16, s: State) {
        self.vms[vmid as usize].as_mut().expect("exists").0 = s;
    }
    fn result(&self) -> Result<(), i32> {
        if self.fail {
            Err(ENOMEM)
        } else {
            Ok(())
        }
    }
}

fn check_range(gpa: u64, size: u64) {
    assert!(
        size > 0 && (gpa | size) & 0xFFF == 0,
        "unaligned range {gpa:#x}+{size:#x}"
    );
    assert!(
        gpa.checked_add(size).is_some_and(|e| e <= MAX_USER_GPA),
        "range above the limit"
    );
}

impl VmOps for Model {
    fn create(&mut self, vmid: u16, pcpus: u64, flags: u64) -> Result<(), i32> {
        let kind = configs()
            .get(vmid as usize)
            .map(|c| (c.kind, c.name, c.pcpus));
        let allowed = match kind {
            None => SERVICE_PCPUS,
            Some((SlotKind::PostLaunched, "", _)) => SERVICE_PCPUS,
            Some((SlotKind::PostLaunched, _, p)) => p,
            Some(k) => panic!("create in slot {vmid} ({k:?})"),
        };
        assert!((vmid as usize) < MAX_VM, "create beyond max_vm_num");
        assert!(
            self.vms[vmid as usize].is_none(),
            "create of existing VM {vmid}"
        );
        assert!(
            pcpus != 0 && pcpus & !allowed == 0,
            "affinity {pcpus:#x} not in {allowed:#x}"
        );
        assert!(pcpus.count_ones() <= u32::from(MAX_VCPUS_PER_VM));
        let f = GuestFlags::from_bits_retain(flags);
        assert!(!f.contains(GuestFlags::LAPIC_PASSTHROUGH) || f.contains(GuestFlags::RT));
        self.result()?;
        self.vms[vmid as usize] = Some((State::Created, pcpus.count_ones() as u16));
        Ok(())
    }
    fn destroy(&mut self, vmid: u16) {
        // Also called to undo a creation whose answer could not be written back.
        let (s, _) = self.vm(vmid);
        assert!(s != State::Running, "destroy of a running VM");
        self.vms[vmid as usize] = None;
    }
    fn start(&mut self, vmid: u16, ioreq_page: u64) -> Result<(), i32> {
        assert_eq!(self.vm(vmid).0, State::Created, "start");
        assert!(
            ioreq_page & 0xFFF == 0 && in_ram(ioreq_page, 0x1000),
            "request page"
        );
        self.result()?;
        self.set(vmid, State::Running);
        Ok(())
    }
    fn pause(&mut self, vmid: u16) {
        assert_ne!(self.vm(vmid).0, State::Paused, "pause of a paused VM");
        self.set(vmid, State::Paused);
    }
    fn reset(&mut self, vmid: u16) {
        assert_eq!(self.vm(vmid).0, State::Paused, "reset");
        self.set(vmid, State::Created);
    }
    fn set_vcpu_regs(&mut self, vmid: u16, vcpu: u16, _: &AcrnRegs) -> Result<(), i32> {
        let (s, n) = self.vm(vmid);
        assert!(s != State::Running && vcpu < n, "set_vcpu_regs");
        self.result()
    }
    fn map(&mut self, vmid: u16, gpa: u64, hpa: u64, size: u64, prot: u32) -> Result<(), i32> {
        self.vm(vmid);
        check_range(gpa, size);
        assert!(hpa & 0xFFF == 0, "unaligned backing");
        assert!(
            RAM.iter().any(|&(s, n)| hpa >= s && hpa - s < n)
                && hpa.checked_add(size).is_some_and(|e| in_ram(e - 1, 1))
                && (hpa..hpa + size).step_by(0x1000).all(|p| in_ram(p, 1)),
            "backing {hpa:#x}+{size:#x} not Service VM RAM"
        );
        assert_eq!(prot & !(MEM_ACCESS_RIGHT_MASK | MEM_TYPE_MASK), 0);
        self.result()
    }
    fn unmap(&mut self, vmid: u16, gpa: u64, size: u64) -> Result<(), i32> {
        self.vm(vmid);
        check_range(gpa, size);
        self.result()
    }
    fn notify_request_finish(&mut self, vmid: u16, vcpu: u16) {
        let (_, n) = self.vm(vmid);
        assert!(vcpu < n, "notify for vCPU {vcpu} of {n}");
    }
    fn gpa2hpa(&mut self, vmid: u16, gpa: u64) -> Option<u64> {
        self.vm(vmid);
        (!self.fail).then_some(gpa ^ 0x5000)
    }
    fn set_irqline(&mut self, vmid: u16, gsi: u32, _: GsiOp) -> Result<(), i32> {
        self.vm(vmid);
        assert!(gsi < VIOAPIC_PINS);
        self.result()
    }
    fn inject_msi(&mut self, vmid: u16, addr: u64, data: u64) -> Result<(), i32> {
        self.vm(vmid);
        assert!(
            addr >> 20 == 0xFEE && data & 0xFF >= 16,
            "MSI {addr:#x}/{data:#x}"
        );
        self.result()
    }
    fn write_protect(&mut self, vmid: u16, gpa: u64, _protect: bool) -> Result<(), i32> {
        self.vm(vmid);
        assert_eq!(
            gpa & 0xFFF,
            0,
            "write-protect of an unaligned page {gpa:#x}"
        );
        self.result()
    }
    fn offline_service_vcpu(&mut self, _lapic_id: u32) -> Result<(), i32> {
        self.result()
    }
    fn assign_pcidev(
        &mut self,
        vmid: u16,
        _phys: u16,
        _virt: u16,
        _bars: [u32; 6],
    ) -> Result<(), i32> {
        let (state, _) = self.vm(vmid);
        assert_eq!(
            state,
            State::Created,
            "HC_ASSIGN_PCIDEV on a VM that is not created"
        );
        self.result()
    }
    fn deassign_pcidev(&mut self, vmid: u16, _phys: u16, _virt: u16) -> Result<(), i32> {
        let (state, _) = self.vm(vmid);
        assert!(
            matches!(state, State::Created | State::Paused),
            "HC_DEASSIGN_PCIDEV on a VM that is neither created nor paused"
        );
        self.result()
    }
    fn ptdev_intx(
        &mut self,
        vmid: u16,
        irq: &acrn_abi::irq::HcPtdevIrq,
        give: bool,
    ) -> Result<(), i32> {
        let (state, _) = self.vm(vmid);
        assert_eq!(irq.r#type, acrn_abi::irq::ACRN_PTDEV_IRQ_INTX, "not INTx");
        assert!(
            state == State::Created || (!give && state == State::Paused),
            "a pass-through line changed in state {state:?}"
        );
        self.result()
    }
    fn add_vdev(&mut self, vmid: u16, _dev: &acrn_abi::device::AcrnVdev) -> Result<(), i32> {
        let (state, _) = self.vm(vmid);
        assert_eq!(
            state,
            State::Created,
            "HC_ADD_VDEV on a VM that is not created"
        );
        self.result()
    }
    fn intr_data(&mut self, vmid: u16, out: &mut [u64]) -> usize {
        self.vm(vmid);
        assert!(
            out.len() <= 48,
            "an interrupt monitor buffer of {}",
            out.len()
        );
        0
    }
    fn intr_delay(&mut self, vmid: u16, _ms: u64) {
        self.vm(vmid);
    }
    fn remove_vdev(&mut self, vmid: u16, _slot: u16) -> Result<(), i32> {
        let (state, _) = self.vm(vmid);
        assert!(
            matches!(state, State::Created | State::Paused),
            "HC_REMOVE_VDEV on a VM that is neither created nor paused"
        );
        self.result()
    }
}

const IDS: [u64; 23] = [
    HC_GET_API_VERSION,
    HC_SET_CALLBACK_VECTOR,
    HC_CREATE_VM,
    HC_DESTROY_VM,
    HC_START_VM,
    HC_PAUSE_VM,
    HC_CREATE_VCPU,
    HC_RESET_VM,
    HC_SET_VCPU_REGS,
    HC_INJECT_MSI,
    HC_SET_IRQLINE,
    HC_SET_IOREQ_BUFFER,
    HC_NOTIFY_REQUEST_FINISH,
    HC_VM_GPA2HPA,
    HC_VM_SET_MEMORY_REGIONS,
    HC_VM_WRITE_PROTECT_PAGE,
    HC_SERVICE_VM_OFFLINE_CPU,
    HC_ASSIGN_PCIDEV,
    HC_DEASSIGN_PCIDEV,
    HC_SET_PTDEV_INTR_INFO,
    HC_RESET_PTDEV_INTR_INFO,
    HC_ADD_VDEV,
    HC_REMOVE_VDEV,
];

/// A hypercall parameter: mostly an address in (or near) the Service VM's RAM.
#[derive(Debug, Arbitrary)]
enum Param {
    Ram(u16),
    Small(u8),
    Raw(u64),
}

impl Param {
    fn value(&self) -> u64 {
        match *self {
            Param::Ram(off) => 0x1000 + u64::from(off),
            Param::Small(v) => u64::from(v),
            Param::Raw(v) => v,
        }
    }
}

/// A structure written at the first pointer parameter before the call.
#[derive(Debug, Arbitrary)]
enum Prep {
    None,
    Create {
        name: u8,
        flags: u64,
        affinity: u64,
    },
    Regions {
        vmid: u16,
        regions: Vec<(u8, u32, u32, u16, u16)>,
    },
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Call {
    caller: u8,
    cpl: u8,
    id: u8,
    p1: Param,
    p2: Param,
    prep: Prep,
    fail: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    memory: Vec<u8>,
    calls: Vec<Call>,
}

fn put(mem: &mut impl GuestMemory, at: u64, bytes: &[u8]) {
    let _ = mem.write(at, bytes);
}

fn prepare(mem: &mut impl GuestMemory, at: u64, prep: &Prep) {
    match prep {
        Prep::None => {}
        Prep::Create {
            name,
            flags,
            affinity,
        } => {
            let names = [
                "POST_STD", "POST_RT", "STATIC", "SOS", "PRE_RT", "dyn_a", "dyn_b", "",
            ];
            let mut b = [0u8; 48];
            let n = names[*name as usize % names.len()].as_bytes();
            b[8..8 + n.len()].copy_from_slice(n);
            b[24..32].copy_from_slice(&flags.to_le_bytes());
            b[40..48].copy_from_slice(&affinity.to_le_bytes());
            put(mem, at, &b);
        }
        Prep::Regions { vmid, regions } => {
            let mut b = Vec::new();
            b.extend_from_slice(&vmid.to_le_bytes());
            b.extend_from_slice(&[0; 6]);
            b.extend_from_slice(&(regions.len().min(64) as u32).to_le_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&at.wrapping_add(24).to_le_bytes());
            for &(ty, prot, gpa_page, hpa_page, pages) in regions.iter().take(64) {
                b.extend_from_slice(&u32::from(ty % 4).to_le_bytes());
                b.extend_from_slice(&prot.to_le_bytes());
                b.extend_from_slice(&(u64::from(gpa_page) << 12).to_le_bytes());
                b.extend_from_slice(&(u64::from(hpa_page) << 12).to_le_bytes());
                b.extend_from_slice(&(u64::from(pages) << 12).to_le_bytes());
            }
            put(mem, at, &b);
        }
        Prep::Raw(bytes) => put(mem, at, bytes),
    }
}

fuzz_target!(|input: Input| {
    let configs = configs();
    let mut hc = Hypercalls::new(&configs, MAX_VM).expect("a Service VM");
    let mut phys = vec![0u8; PHYS_LEN];
    for (d, s) in phys.iter_mut().zip(&input.memory) {
        *d = *s;
    }
    let mut mem = IdentityRam {
        ranges: &RAM,
        limit: u64::MAX,
        phys: Phys(phys),
    };
    let mut model = Model {
        vms: [None; 16],
        fail: false,
    };
    for call in input.calls.iter().take(64) {
        let (p1, p2) = (call.p1.value(), call.p2.value());
        let at = if matches!(call.prep, Prep::Create { .. }) || call.id % 16 == 14 {
            p1
        } else {
            p2
        };
        prepare(&mut mem, at, &call.prep);
        model.fail = call.fail;
        let caller = Caller {
            vmid: if call.caller < 200 {
                SERVICE
            } else {
                u16::from(call.caller % 8)
            },
            cpl: if call.cpl < 200 { 0 } else { call.cpl % 4 },
        };
        let id = match call.id {
            0..=239 => IDS[call.id as usize % IDS.len()],
            x => HC_ID << 24 | u64::from(x) << 8 | u64::from(x),
        };
        let before = mem.phys.0.clone();
        let out = hc.dispatch(&mut mem, &mut model, caller, id, p1, p2);
        if caller.vmid != SERVICE {
            assert_eq!(out, Outcome::InjectUd);
        } else if caller.cpl != 0 {
            assert_eq!(out, Outcome::InjectGp);
        }
        match out {
            Outcome::Return(r) => {
                assert!(
                    r == 0 || [EINVAL, ENOTTY, EPERM, ENOMEM].contains(&(-r as i32)),
                    "result {r}"
                );
                let writes = [
                    HC_GET_API_VERSION,
                    HC_CREATE_VM,
                    HC_SET_IOREQ_BUFFER,
                    HC_RESET_VM,
                    HC_VM_GPA2HPA,
                ];
                if !writes.contains(&id) || r != 0 && id != HC_CREATE_VM {
                    assert!(
                        mem.phys.0 == before,
                        "call {id:#x} (result {r}) wrote memory"
                    );
                }
            }
            _ => assert!(mem.phys.0 == before, "a refused call wrote memory"),
        }
        for vmid in 0..16u16 {
            let want = model.vms[vmid as usize].map(|(s, _)| match s {
                State::Created => VmState::Created,
                State::Running => VmState::Running,
                State::Paused => VmState::Paused,
            });
            match hc.state(vmid) {
                Some(VmState::PoweredOff) | None => assert_eq!(want, None, "VM {vmid}"),
                Some(s) => assert_eq!(Some(s), want, "VM {vmid}"),
            }
        }
    }
});
