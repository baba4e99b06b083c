use super::mem::testing::{ram, VecPhys};
use super::*;
use acrn_abi::errno::{EINVAL, ENODEV, ENOMEM, ENOTTY, EPERM};

/// Service VM RAM: 1 MiB at 1 MiB, then a hole (another VM at 2 MiB), then 64 KiB at 3 MiB.
const RANGES: [(u64, u64); 2] = [(0x10_0000, 0x10_0000), (0x30_0000, 0x1_0000)];
const BASE: u64 = 0x10_0000;
const ARG: u64 = 0x10_0000; // where tests put hypercall arguments
const SOS: Caller = Caller { vmid: 1, cpl: 0 };

#[derive(Default)]
struct Ops {
    log: Vec<String>,
    fail_create: bool,
    /// (VM, physical BDF) assigned through the ops.
    assigned: Vec<(u16, u16)>,
    /// (VM, BDF) of the devices added through the ops.
    vdevs: Vec<(u16, u16)>,
}

/// The only host function the fake Service VM can give: 00:02.0.
const NIC: u16 = 0x10;

impl VmOps for Ops {
    fn create(&mut self, vmid: u16, pcpus: u64, flags: u64) -> Result<(), i32> {
        self.log
            .push(format!("create {vmid} {pcpus:#x} {flags:#x}"));
        if self.fail_create {
            Err(ENOMEM)
        } else {
            Ok(())
        }
    }
    fn destroy(&mut self, vmid: u16) {
        self.log.push(format!("destroy {vmid}"));
    }
    fn start(&mut self, vmid: u16, _ioreq_page: u64) -> Result<(), i32> {
        self.log.push(format!("start {vmid}"));
        Ok(())
    }
    fn pause(&mut self, vmid: u16) {
        self.log.push(format!("pause {vmid}"));
    }
    fn reset(&mut self, vmid: u16) {
        self.log.push(format!("reset {vmid}"));
    }
    fn set_vcpu_regs(&mut self, vmid: u16, vcpu: u16, regs: &AcrnRegs) -> Result<(), i32> {
        let rip = regs.rip;
        self.log.push(format!("regs {vmid} {vcpu} {rip:#x}"));
        Ok(())
    }
    fn map(&mut self, vmid: u16, gpa: u64, hpa: u64, size: u64, prot: u32) -> Result<(), i32> {
        self.log
            .push(format!("map {vmid} {gpa:#x} {hpa:#x} {size:#x} {prot:#x}"));
        Ok(())
    }
    fn unmap(&mut self, vmid: u16, gpa: u64, size: u64) -> Result<(), i32> {
        self.log.push(format!("unmap {vmid} {gpa:#x} {size:#x}"));
        Ok(())
    }
    fn gpa2hpa(&mut self, _vmid: u16, gpa: u64) -> Option<u64> {
        // Only the first 16 MiB of every VM are mapped, at 1 GiB.
        (gpa < 16 << 20).then_some(gpa + (1 << 30))
    }
    fn notify_request_finish(&mut self, vmid: u16, vcpu: u16) {
        self.log.push(format!("notify {vmid} {vcpu}"));
    }
    fn set_irqline(&mut self, vmid: u16, gsi: u32, op: GsiOp) -> Result<(), i32> {
        self.log.push(format!("irqline {vmid} {gsi} {op:?}"));
        Ok(())
    }
    fn inject_msi(&mut self, vmid: u16, addr: u64, data: u64) -> Result<(), i32> {
        self.log.push(format!("msi {vmid} {addr:#x} {data:#x}"));
        Ok(())
    }
    fn write_protect(&mut self, vmid: u16, gpa: u64, protect: bool) -> Result<(), i32> {
        self.log.push(format!("wp {vmid} {gpa:#x} {protect}"));
        Ok(())
    }
    fn offline_service_vcpu(&mut self, lapic_id: u32) -> Result<(), i32> {
        self.log.push(format!("offline {lapic_id}"));
        // LAPIC ID 0 is the Service VM's BSP here.
        if lapic_id == 0 {
            Err(EPERM)
        } else {
            Ok(())
        }
    }
    fn assign_pcidev(
        &mut self,
        vmid: u16,
        phys: u16,
        virt: u16,
        bars: [u32; 6],
    ) -> Result<(), i32> {
        self.log
            .push(format!("assign {vmid} {phys:#x} {virt:#x} {:#x}", bars[0]));
        if phys != NIC || self.assigned.iter().any(|&(_, p)| p == phys) {
            return Err(ENODEV);
        }
        self.assigned.push((vmid, phys));
        Ok(())
    }
    fn deassign_pcidev(&mut self, vmid: u16, phys: u16, virt: u16) -> Result<(), i32> {
        self.log
            .push(format!("deassign {vmid} {phys:#x} {virt:#x}"));
        let at = self.assigned.iter().position(|&a| a == (vmid, phys));
        self.assigned.remove(at.ok_or(ENODEV)?);
        Ok(())
    }
    fn ptdev_intx(
        &mut self,
        vmid: u16,
        irq: &acrn_abi::irq::HcPtdevIrq,
        give: bool,
    ) -> Result<(), i32> {
        let (phys, virt) = (irq.intx.phys_pin, irq.intx.virt_pin);
        self.log.push(format!("intx {vmid} {phys} {virt} {give}"));
        Ok(())
    }
    fn add_vdev(&mut self, vmid: u16, dev: &acrn_abi::device::AcrnVdev) -> Result<(), i32> {
        let slot = dev.slot;
        self.log
            .push(format!("add_vdev {vmid} {:#x} {slot:#x}", dev.id));
        if dev.id != acrn_abi::device::VDEV_ID_IVSHMEM {
            return Err(EINVAL);
        }
        self.vdevs.push((vmid, slot as u16));
        Ok(())
    }
    fn intr_data(&mut self, vmid: u16, out: &mut [u64]) -> usize {
        // Two lines: GSI 22 with 5 interrupts, vector 0xE0 with 7 (as far as `out` holds).
        let pairs = [22, 5, 0xE0, 7];
        let n = out.len().min(pairs.len()) & !1;
        out[..n].copy_from_slice(&pairs[..n]);
        self.log.push(format!("intr_data {vmid} {}", out.len()));
        n
    }
    fn intr_delay(&mut self, vmid: u16, ms: u64) {
        self.log.push(format!("intr_delay {vmid} {ms}"));
    }
    fn remove_vdev(&mut self, vmid: u16, slot: u16) -> Result<(), i32> {
        self.log.push(format!("remove_vdev {vmid} {slot:#x}"));
        let at = self.vdevs.iter().position(|&v| v == (vmid, slot));
        self.vdevs.remove(at.ok_or(EINVAL)?);
        Ok(())
    }
}

/// VM 0 pre-launched, VM 1 Service VM (pCPUs 1-3), VM 2 post-launched "POST1" on pCPUs 2-3,
/// VM 3 a static post-launched "RTVM", slots 4.. dynamic (MAX_VM_NUM 6).
fn table() -> Hypercalls {
    let c = |kind, name, pcpus, flags| SlotConfig {
        kind,
        name,
        pcpus,
        flags,
    };
    Hypercalls::new(
        &[
            c(SlotKind::PreLaunched, "PRE", 0b0001, 0),
            c(SlotKind::Service, "SOS", 0b1110, 0),
            c(SlotKind::PostLaunched, "POST1", 0b1100, 0),
            c(
                SlotKind::PostLaunched,
                "RTVM",
                0b1000,
                GuestFlags::STATIC_VM.bits(),
            ),
        ],
        6,
    )
    .unwrap()
}

struct Env {
    hc: Hypercalls,
    mem: IdentityRam<'static, VecPhys>,
    ops: Ops,
}

fn env() -> Env {
    Env {
        hc: table(),
        mem: ram(&RANGES, BASE, 0x21_0000),
        ops: Ops::default(),
    }
}

impl Env {
    fn call(&mut self, id: u64, p1: u64, p2: u64) -> i64 {
        match self
            .hc
            .dispatch(&mut self.mem, &mut self.ops, SOS, id, p1, p2)
        {
            Outcome::Return(v) => v,
            o => panic!("unexpected {o:?}"),
        }
    }
    fn put<T: Copy>(&mut self, gpa: u64, v: &T) {
        // SAFETY: test structs are plain integers; reading their bytes is fine.
        let b = unsafe {
            core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>())
        };
        assert!(self.mem.write(gpa, b));
    }
    fn create(&mut self, name: &str, affinity: u64) -> (i64, AcrnVmCreation) {
        let mut cv = AcrnVmCreation {
            cpu_affinity: affinity,
            ..Default::default()
        };
        assert!(cv.set_name(name));
        self.put(ARG, &cv);
        let r = self.call(HC_CREATE_VM, ARG, 0);
        (r, read_obj::<AcrnVmCreation>(&self.mem, ARG).unwrap())
    }
    /// Creates POST1 (relative id 1) with its ioreq page set.
    fn created_post1(&mut self) {
        let (r, cv) = self.create("POST1", 0);
        assert_eq!((r, cv.vmid, cv.vcpu_num), (0, 1, 2));
        self.put(ARG + 0x100, &0x10_4000u64);
        assert_eq!(self.call(HC_SET_IOREQ_BUFFER, 1, ARG + 0x100), 0);
    }
}

const E: fn(i32) -> i64 = |e| -(e as i64);

#[test]
fn only_the_service_vm_may_call_and_only_from_ring_0() {
    let mut e = env();
    let pre = Caller { vmid: 0, cpl: 0 };
    let post = Caller { vmid: 2, cpl: 0 };
    for c in [pre, post] {
        assert_eq!(
            e.hc.dispatch(&mut e.mem, &mut e.ops, c, HC_GET_API_VERSION, ARG, 0),
            Outcome::InjectUd
        );
        assert_eq!(
            e.hc.dispatch(&mut e.mem, &mut e.ops, c, HC_CREATE_VM, ARG, 0),
            Outcome::InjectUd
        );
    }
    let ring3 = Caller { vmid: 1, cpl: 3 };
    assert_eq!(
        e.hc.dispatch(&mut e.mem, &mut e.ops, ring3, HC_GET_API_VERSION, ARG, 0),
        Outcome::InjectGp
    );
    // Nothing happened.
    assert!(e.ops.log.is_empty());
    assert_eq!(read_obj::<u64>(&e.mem, ARG), Some(0));
}

#[test]
fn api_version_and_pointer_checks() {
    let mut e = env();
    assert_eq!(e.call(HC_GET_API_VERSION, ARG, 0), 0);
    assert_eq!(read_obj::<u64>(&e.mem, ARG), Some(1)); // major 1, minor 0
                                                       // Outside Service VM RAM, in the hole, straddling the end of a range, wrapping.
    for bad in [0, 0x20_0000, 0x1F_FFFC, 0x30_FFFC, u64::MAX - 3] {
        assert_eq!(e.call(HC_GET_API_VERSION, bad, 0), E(EINVAL), "{bad:#x}");
    }
    // Crossing a page inside RAM is fine.
    assert_eq!(e.call(HC_GET_API_VERSION, 0x10_0FFC, 0), 0);
}

#[test]
fn unknown_ids_return_enotty() {
    let mut e = env();
    for id in [
        0x8000_00FF,
        0x8000_0050,
        0x8000_0051,
        0x8000_0052,
        0x8000_0070,
        0x8000_0090,
        0x0000_0010,
        0x8100_0010,
        0x1_8000_0010,
    ] {
        assert_eq!(e.call(id, ARG, 0), E(ENOTTY), "{id:#x}");
    }
}

#[test]
fn callback_vector_range() {
    let mut e = env();
    assert_eq!(e.hc.upcall_vector(), 0xF3);
    for bad in [0, 0x1F, 0x100, u64::MAX] {
        assert_eq!(e.call(HC_SET_CALLBACK_VECTOR, bad, 0), E(EINVAL));
    }
    assert_eq!(e.hc.upcall_vector(), 0xF3);
    assert_eq!(e.call(HC_SET_CALLBACK_VECTOR, 0x20, 0), 0);
    assert_eq!(e.hc.upcall_vector(), 0x20);
}

#[test]
fn create_matches_configured_name_then_dynamic_slots() {
    let mut e = env();
    let (r, cv) = e.create("POST1", 0);
    assert_eq!((r, cv.vmid, cv.vcpu_num), (0, 1, 2));
    assert_eq!(e.ops.log, ["create 2 0xc 0x0"]);
    assert_eq!(e.hc.state(2), Some(VmState::Created));
    // Same name again: the VM exists.
    let (r, cv) = e.create("POST1", 0);
    assert_eq!((r, cv.vmid), (E(EPERM), ACRN_INVALID_VMID));
    // An unknown name takes the first dynamic slot (4: "RTVM" is static), with the Service
    // VM's pCPUs.
    let (r, cv) = e.create("dyn", 0);
    assert_eq!((r, cv.vmid, cv.vcpu_num), (0, 3, 3));
    let (r, cv) = e.create("dyn", 0);
    assert_eq!((r, cv.vmid), (E(EPERM), ACRN_INVALID_VMID));
    let (r, cv) = e.create("dyn2", 0b0010);
    assert_eq!((r, cv.vmid, cv.vcpu_num), (0, 4, 1));
    // Slots are exhausted.
    let (r, _) = e.create("dyn3", 0);
    assert_eq!(r, E(ENOTTY));
    // The Service VM's and a pre-launched VM's names are not creatable.
    assert_eq!(e.create("SOS", 0).0, E(ENOTTY));
    assert_eq!(e.create("PRE", 0).0, E(ENOTTY));
}

#[test]
fn create_checks_arguments() {
    let mut e = env();
    // Affinity outside the configured pCPUs, or too wide.
    let (r, cv) = e.create("POST1", 0b0011);
    assert_eq!((r, cv.vmid, cv.vcpu_num), (E(EINVAL), ACRN_INVALID_VMID, 0));
    // Reserved fields.
    let mut cv = AcrnVmCreation {
        reserved1: 1,
        ..Default::default()
    };
    cv.set_name("POST1");
    e.put(ARG, &cv);
    assert_eq!(e.call(HC_CREATE_VM, ARG, 0), E(EINVAL));
    // Empty name, unterminated name.
    let cv = AcrnVmCreation::default();
    e.put(ARG, &cv);
    assert_eq!(e.call(HC_CREATE_VM, ARG, 0), E(EINVAL));
    let cv = AcrnVmCreation {
        name: [b'A'; 16],
        ..Default::default()
    };
    e.put(ARG, &cv);
    assert_eq!(e.call(HC_CREATE_VM, ARG, 0), E(EINVAL));
    // LAPIC pass-through without RT.
    let mut cv = AcrnVmCreation {
        vm_flag: GuestFlags::LAPIC_PASSTHROUGH.bits(),
        ..Default::default()
    };
    cv.set_name("POST1");
    e.put(ARG, &cv);
    assert_eq!(e.call(HC_CREATE_VM, ARG, 0), E(EINVAL));
    // Flags outside DM_OWNED are dropped.
    let mut cv = AcrnVmCreation {
        vm_flag: !GuestFlags::LAPIC_PASSTHROUGH.bits(),
        ..Default::default()
    };
    cv.set_name("POST1");
    e.put(ARG, &cv);
    assert_eq!(e.call(HC_CREATE_VM, ARG, 0), 0);
    let want =
        (GuestFlags::SECURE_WORLD_ENABLED | GuestFlags::RT | GuestFlags::IO_COMPLETION_POLLING)
            .bits();
    assert_eq!(
        e.ops.log.last().unwrap(),
        &format!("create 2 0xc {want:#x}")
    );
    // Struct in the hole / straddling.
    assert_eq!(e.call(HC_CREATE_VM, 0x20_0000, 0), E(EINVAL));
    assert_eq!(e.call(HC_CREATE_VM, 0x1F_FFF0, 0), E(EINVAL));
}

#[test]
fn create_failure_in_vm_layer_leaves_slot_free() {
    let mut e = env();
    e.ops.fail_create = true;
    let (r, cv) = e.create("POST1", 0);
    assert_eq!((r, cv.vmid), (E(ENOMEM), ACRN_INVALID_VMID));
    assert_eq!(e.hc.state(2), Some(VmState::PoweredOff));
}

#[test]
fn lifecycle_follows_acrn_states() {
    let mut e = env();
    // Nothing exists yet.
    for id in [HC_START_VM, HC_PAUSE_VM, HC_RESET_VM, HC_DESTROY_VM] {
        assert_eq!(e.call(id, 1, 0), E(EPERM));
    }
    let (r, _) = e.create("POST1", 0);
    assert_eq!(r, 0);
    // Start needs the I/O request buffer.
    assert_eq!(e.call(HC_START_VM, 1, 0), E(EPERM));
    e.put(ARG + 0x100, &0x10_4000u64);
    assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, ARG + 0x100), 0);
    assert_eq!(e.hc.ioreq_page(2), Some(0x10_4000));
    // Destroy and reset need PAUSED.
    assert_eq!(e.call(HC_DESTROY_VM, 1, 0), E(EPERM));
    assert_eq!(e.call(HC_RESET_VM, 1, 0), E(EPERM));
    assert_eq!(e.call(HC_START_VM, 1, 0), 0);
    assert_eq!(e.hc.state(2), Some(VmState::Running));
    assert_eq!(e.call(HC_START_VM, 1, 0), E(EPERM));
    assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, ARG + 0x100), E(EPERM));
    assert_eq!(e.call(HC_PAUSE_VM, 1, 0), 0);
    assert_eq!(e.call(HC_PAUSE_VM, 1, 0), 0); // already paused: no-op
    assert_eq!(e.call(HC_RESET_VM, 1, 0), 0);
    assert_eq!(e.hc.state(2), Some(VmState::Created));
    assert_eq!(e.call(HC_PAUSE_VM, 1, 0), 0);
    assert_eq!(e.call(HC_DESTROY_VM, 1, 0), 0);
    assert_eq!(e.hc.state(2), Some(VmState::PoweredOff));
    assert_eq!(e.hc.ioreq_page(2), None);
    assert_eq!(
        e.ops.log,
        [
            "create 2 0xc 0x0",
            "start 2",
            "pause 2",
            "reset 2",
            "pause 2",
            "destroy 2"
        ]
    );
    // The slot can be created again.
    assert_eq!(e.create("POST1", 0).0, 0);
}

#[test]
fn vm_ids_are_relative_and_checked() {
    let mut e = env();
    e.created_post1();
    // Relative 0 is the Service VM itself, 0xFFFF the pre-launched VM 0, 5 is past MAX_VM_NUM.
    for rel in [0, 0xFFFF, 5, 100, 0x1_0001] {
        assert_eq!(e.call(HC_PAUSE_VM, rel, 0), E(ENOTTY), "rel {rel}");
        assert_eq!(e.call(HC_SET_IRQLINE, rel, 0), E(ENOTTY), "rel {rel}");
    }
    assert!(e.ops.log.iter().all(|l| !l.starts_with("pause")));
}

#[test]
fn ioreq_buffer_checks() {
    let mut e = env();
    let (r, _) = e.create("POST1", 0);
    assert_eq!(r, 0);
    // The u64 itself unreadable.
    assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, 0x20_0000), E(EINVAL));
    // Page not aligned, in the hole, crossing out of RAM.
    for page in [0x10_4008u64, 0x20_0000, 0x1F_F800, 0x30_F000 + 0x800] {
        e.put(ARG, &page);
        assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, ARG), E(EINVAL), "{page:#x}");
    }
    // Last page of the small range is fine; all slots become FREE.
    e.put(ARG, &0x30_F000u64);
    assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, ARG), 0);
    for i in 0..16 {
        let mut b = [0u8; 4];
        assert!(e.mem.read(0x30_F000 + i * 256 + 136, &mut b));
        assert_eq!(u32::from_le_bytes(b), 3);
    }
}

#[test]
fn notify_checks_vcpu_and_buffer() {
    let mut e = env();
    let (r, _) = e.create("POST1", 0);
    assert_eq!(r, 0);
    assert_eq!(e.call(HC_NOTIFY_REQUEST_FINISH, 1, 0), E(EINVAL)); // no buffer yet
    e.put(ARG + 0x100, &0x10_4000u64);
    assert_eq!(e.call(HC_SET_IOREQ_BUFFER, 1, ARG + 0x100), 0);
    assert_eq!(e.call(HC_NOTIFY_REQUEST_FINISH, 1, 2), E(EINVAL)); // 2 vCPUs: 0 and 1
    assert_eq!(e.call(HC_NOTIFY_REQUEST_FINISH, 1, u64::MAX), E(EINVAL));
    assert_eq!(e.call(HC_NOTIFY_REQUEST_FINISH, 1, 1), 0);
    assert_eq!(e.ops.log.last().unwrap(), "notify 2 1");
}

fn regs(vcpu: u16) -> AcrnVcpuRegs {
    let mut r = AcrnVcpuRegs {
        vcpu_id: vcpu,
        ..Default::default()
    };
    r.vcpu_regs.cr0 = 0x31;
    r.vcpu_regs.rip = 0x10_0000;
    r
}

#[test]
fn set_vcpu_regs_checks() {
    let mut e = env();
    e.created_post1();
    e.put(ARG, &regs(1));
    assert_eq!(e.call(HC_SET_VCPU_REGS, 1, ARG), 0);
    assert_eq!(e.ops.log.last().unwrap(), "regs 2 1 0x100000");
    let bad = |f: &dyn Fn(&mut AcrnVcpuRegs)| {
        let mut r = regs(0);
        f(&mut r);
        r
    };
    let cases = [
        bad(&|r| r.vcpu_id = 2),
        bad(&|r| r.reserved[1] = 1),
        bad(&|r| r.vcpu_regs.reserved_64[3] = 1),
        bad(&|r| r.vcpu_regs.gdt.reserved = [0, 0, 1]),
        bad(&|r| r.vcpu_regs.cr0 = 1 << 31), // PG without PE
        bad(&|r| r.vcpu_regs.cr0 = 0x31 | 1 << 29), // NW without CD
        bad(&|r| r.vcpu_regs.cr0 = 0x31 | 1 << 40), // reserved
        bad(&|r| r.vcpu_regs.cr4 = 1 << 13), // VMXE
        bad(&|r| (r.vcpu_regs.cr0, r.vcpu_regs.ia32_efer) = (0x8000_0031, 1 << 8)), // LME+PG without PAE
    ];
    for (i, c) in cases.iter().enumerate() {
        e.put(ARG, c);
        assert_eq!(e.call(HC_SET_VCPU_REGS, 1, ARG), E(EINVAL), "case {i}");
    }
    // Struct straddling the end of RAM.
    assert_eq!(e.call(HC_SET_VCPU_REGS, 1, 0x30_FF00), E(EINVAL));
    // Not while running.
    e.put(ARG, &regs(0));
    assert_eq!(e.call(HC_START_VM, 1, 0), 0);
    assert_eq!(e.call(HC_SET_VCPU_REGS, 1, ARG), E(EPERM));
}

fn region(kind: u32, gpa: u64, sos: u64, size: u64, prot: u32) -> VmMemoryRegion {
    VmMemoryRegion {
        r#type: kind,
        prot,
        gpa,
        service_vm_gpa: sos,
        size,
    }
}

#[test]
fn memory_regions_map_only_service_vm_ram() {
    let mut e = env();
    e.created_post1();
    let list = ARG + 0x1000;
    e.put(list, &region(MR_ADD, 0, 0x18_0000, 0x8_0000, 0x47));
    e.put(list + 32, &region(MR_DEL, 0x1000, 0, 0x1000, 0));
    e.put(
        ARG,
        &SetRegions {
            vmid: 1,
            mr_num: 2,
            regions_gpa: list,
            ..Default::default()
        },
    );
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), 0);
    assert_eq!(
        &e.ops.log[1..],
        ["map 2 0x0 0x180000 0x80000 0x47", "unmap 2 0x1000 0x1000"]
    );

    let bad = [
        region(MR_ADD, 0, 0x20_0000, 0x1000, 0x47), // source in the hole (another VM)
        region(MR_ADD, 0, 0x1F_F000, 0x2000, 0x47), // source runs out of RAM
        region(MR_ADD, 0, 0x8_0000, 0x1000, 0x47),  // hypervisor/unowned memory
        region(MR_ADD, 0, 0x18_0800, 0x1000, 0x47), // unaligned source
        region(MR_ADD, 0x800, 0x18_0000, 0x1000, 0x47), // unaligned GPA
        region(MR_ADD, 0, 0x18_0000, 0x1800, 0x47), // unaligned size
        region(MR_ADD, 0, 0x18_0000, 0, 0x47),      // empty
        region(MR_ADD, MAX_USER_GPA, 0x18_0000, 0x1000, 0x47),
        region(MR_ADD, !0xFFF, 0x18_0000, 0x1000, 0x47),
        region(MR_ADD, 0, !0xFFF, 0x2000, 0x47), // source wraps
        region(MR_ADD, 0, 0x18_0000, 0x1000, 0x800), // unknown prot bits
        region(7, 0, 0x18_0000, 0x1000, 0x47),   // unknown type
    ];
    for (i, r) in bad.iter().enumerate() {
        e.ops.log.clear();
        e.put(list, r);
        e.put(
            ARG,
            &SetRegions {
                vmid: 1,
                mr_num: 1,
                regions_gpa: list,
                ..Default::default()
            },
        );
        assert_eq!(
            e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0),
            E(EINVAL),
            "case {i}"
        );
        assert!(e.ops.log.is_empty(), "case {i}: {:?}", e.ops.log);
    }
    // The list itself runs out of RAM after the first entry: the first stays applied.
    e.ops.log.clear();
    let edge = 0x1F_FFE0;
    e.put(edge, &region(MR_ADD, 0, 0x18_0000, 0x1000, 0x47));
    e.put(
        ARG,
        &SetRegions {
            vmid: 1,
            mr_num: 2,
            regions_gpa: edge,
            ..Default::default()
        },
    );
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), E(EINVAL));
    assert_eq!(e.ops.log.len(), 1);
    // Wrapping list address, absurd count, bad VM ids, no VM.
    e.put(
        ARG,
        &SetRegions {
            vmid: 1,
            mr_num: 2,
            regions_gpa: u64::MAX - 31,
            ..Default::default()
        },
    );
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), E(EINVAL));
    e.put(
        ARG,
        &SetRegions {
            vmid: 1,
            mr_num: u32::MAX,
            regions_gpa: list,
            ..Default::default()
        },
    );
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), E(EINVAL));
    for vmid in [0u16, 0xFFFF, 9] {
        e.put(
            ARG,
            &SetRegions {
                vmid,
                mr_num: 1,
                regions_gpa: list,
                ..Default::default()
            },
        );
        assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), E(ENOTTY));
    }
    e.put(
        ARG,
        &SetRegions {
            vmid: 3,
            mr_num: 1,
            regions_gpa: list,
            ..Default::default()
        },
    );
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, ARG, 0), E(EPERM)); // dynamic slot, no VM
    assert_eq!(e.call(HC_VM_SET_MEMORY_REGIONS, 0x20_0000, 0), E(EINVAL));
}

#[test]
fn irqline_and_msi_checks() {
    let mut e = env();
    e.created_post1();
    let line = |gsi: u32, op: u32| acrn_abi::AcrnIrqlineOps { gsi, op }.to_u64();
    assert_eq!(e.call(HC_SET_IRQLINE, 1, line(4, 2)), 0);
    assert_eq!(e.ops.log.last().unwrap(), "irqline 2 4 RaisingPulse");
    assert_eq!(e.call(HC_SET_IRQLINE, 1, line(48, 0)), E(EINVAL));
    assert_eq!(e.call(HC_SET_IRQLINE, 1, line(4, 4)), E(EINVAL));
    e.put(
        ARG,
        &AcrnMsiEntry {
            msi_addr: 0xFEE0_1000,
            msi_data: 0x41,
        },
    );
    assert_eq!(e.call(HC_INJECT_MSI, 1, ARG), 0);
    assert_eq!(e.ops.log.last().unwrap(), "msi 2 0xfee01000 0x41");
    e.put(
        ARG,
        &AcrnMsiEntry {
            msi_addr: 0xFED0_0000,
            msi_data: 0x41,
        },
    );
    assert_eq!(e.call(HC_INJECT_MSI, 1, ARG), E(EINVAL));
    e.put(
        ARG,
        &AcrnMsiEntry {
            msi_addr: 0xFEE0_0000,
            msi_data: 0x0E,
        },
    );
    assert_eq!(e.call(HC_INJECT_MSI, 1, ARG), E(EINVAL));
    assert_eq!(e.call(HC_INJECT_MSI, 1, 0x20_0000), E(EINVAL));
}

#[test]
fn no_service_vm_no_table() {
    let c = SlotConfig {
        kind: SlotKind::PreLaunched,
        name: "A",
        pcpus: 1,
        flags: 0,
    };
    assert!(Hypercalls::new(&[c], 4).is_none());
}

/// Arbitrary IDs and parameters never panic and never touch memory outside the Service VM.
#[test]
fn fuzz_dispatch_never_panics() {
    let mut e = env();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ids: Vec<u64> = acrn_abi::hypercall::HYPERCALLS
        .iter()
        .map(|h| h.0)
        .collect();
    for _ in 0..20_000 {
        let id = ids[(next() % ids.len() as u64) as usize];
        let pick = |v: u64| match v % 4 {
            0 => v,
            1 => v % 8,
            2 => BASE + (v % 0x11_0000),
            _ => 0x30_0000 + (v % 0x1_0000),
        };
        let (p1, p2) = (pick(next()), pick(next()));
        // Random bytes at a random argument spot.
        let spot = BASE + (next() % 0xFF00);
        let bytes = next().to_le_bytes();
        assert!(e.mem.write(spot, &bytes));
        let _ = e.hc.dispatch(&mut e.mem, &mut e.ops, SOS, id, p1, p2);
    }
}

#[test]
fn gpa2hpa_translates_or_reports_einval() {
    use acrn_abi::memory::VmGpa2Hpa;
    let mut e = env();
    // No such VM yet.
    e.put(
        ARG,
        &VmGpa2Hpa {
            gpa: 0x1000,
            hpa: 0,
        },
    );
    assert_eq!(e.call(HC_VM_GPA2HPA, 1, ARG), E(EPERM));
    e.created_post1();
    e.put(
        ARG,
        &VmGpa2Hpa {
            gpa: 0x1000,
            hpa: 0,
        },
    );
    assert_eq!(e.call(HC_VM_GPA2HPA, 1, ARG), 0);
    let mut out = [0u8; 8];
    assert!(e.mem.read(ARG + 8, &mut out));
    assert_eq!(u64::from_le_bytes(out), (1 << 30) + 0x1000);
    // Not mapped, an unbacked argument, one straddling the end of RAM.
    e.put(
        ARG,
        &VmGpa2Hpa {
            gpa: 32 << 20,
            hpa: 0,
        },
    );
    assert_eq!(e.call(HC_VM_GPA2HPA, 1, ARG), E(EINVAL));
    assert_eq!(e.call(HC_VM_GPA2HPA, 1, 1 << 48), E(EINVAL));
    assert_eq!(e.call(HC_VM_GPA2HPA, 1, 0x30_FFF8), E(EINVAL));
}

#[test]
fn every_hypercall_is_in_the_behaviour_table() {
    let ours: Vec<u64> = BEHAVIOUR.iter().map(|b| b.0).collect();
    let abi: Vec<u64> = acrn_abi::hypercall::HYPERCALLS
        .iter()
        .map(|h| h.0)
        .collect();
    assert_eq!(ours, abi);
    assert!(BEHAVIOUR.iter().all(|b| !b.1.is_empty() && !b.2.is_empty()));
}

#[test]
fn platform_info_reports_pcpus_and_vm_configurations() {
    use acrn_abi::vm::{AcrnPlatformInfo, AcrnVmConfigHeader};
    let mut e = env();
    e.hc.set_pcpus([0, 2, 4, 6]);
    let configs = ARG + 0x400;
    let pi = AcrnPlatformInfo {
        sw: acrn_abi::vm::PlatformSwInfo {
            vm_configs_addr: configs,
            ..AcrnPlatformInfo::default().sw
        },
        ..Default::default()
    };
    e.put(ARG, &pi);
    assert_eq!(e.call(HC_GET_PLATFORM_INFO, ARG, 0), 0);
    let out = read_obj::<AcrnPlatformInfo>(&e.mem, ARG).unwrap();
    assert_eq!((out.hw.cpu_num, out.hw.version), (4, 0x100));
    assert_eq!(out.hw.lapic_ids[..5], [0, 2, 4, 6, 0]);
    assert_eq!(
        (
            out.sw.max_vms,
            out.sw.vm_config_size,
            out.sw.max_vcpus_per_vm
        ),
        (6, 40, 16)
    );
    let h = |i: u64| read_obj::<AcrnVmConfigHeader>(&e.mem, configs + 40 * i).unwrap();
    let name = |h: &AcrnVmConfigHeader| {
        let n = h.name.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(h.name[..n].to_vec()).unwrap()
    };
    let (pre, sos, post, rt, dynamic) = (h(0), h(1), h(2), h(3), h(4));
    assert_eq!(
        (pre.load_order, name(&pre).as_str(), pre.cpu_affinity),
        (0, "PRE", 1)
    );
    assert_eq!(
        (sos.load_order, name(&sos).as_str(), sos.severity),
        (1, "SOS", 0x20)
    );
    assert_eq!(
        (post.load_order, name(&post).as_str(), post.cpu_affinity),
        (2, "POST1", 0b1100)
    );
    assert_eq!(rt.guest_flags, GuestFlags::STATIC_VM.bits());
    assert_eq!((dynamic.load_order, name(&dynamic).as_str()), (2, ""));
    // Without a configuration buffer only the header comes back.
    e.put(ARG, &AcrnPlatformInfo::default());
    assert_eq!(e.call(HC_GET_PLATFORM_INFO, ARG, 0), 0);
    // Bad pointers: the record itself, the configuration buffer (6 * 40 bytes past RAM's end).
    assert_eq!(e.call(HC_GET_PLATFORM_INFO, 0x20_0000, 0), E(EINVAL));
    let pi = AcrnPlatformInfo {
        sw: acrn_abi::vm::PlatformSwInfo {
            vm_configs_addr: 0x1F_FF80,
            ..AcrnPlatformInfo::default().sw
        },
        ..Default::default()
    };
    e.put(ARG, &pi);
    assert_eq!(e.call(HC_GET_PLATFORM_INFO, ARG, 0), E(EINVAL));
}

#[test]
fn offline_cpu_hw_info_and_debug_calls() {
    let mut e = env();
    e.hc.set_pcpus([0, 1, 2]);
    assert_eq!(e.call(HC_SERVICE_VM_OFFLINE_CPU, 0, 0), E(EPERM));
    assert_eq!(e.call(HC_SERVICE_VM_OFFLINE_CPU, 2, 0), 0);
    assert_eq!(e.ops.log, ["offline 0", "offline 2"]);
    assert_eq!(e.call(HC_GET_HW_INFO, ARG, 0), 0);
    assert_eq!(read_obj::<u64>(&e.mem, ARG), Some(3));
    assert_eq!(e.call(HC_GET_HW_INFO, 0x20_0000, 0), E(EINVAL));
    assert_eq!(e.call(HC_SETUP_HV_NPK_LOG, ARG, 0), E(EPERM));
    assert_eq!(e.call(HC_PROFILING_OPS, 0, ARG), E(EPERM));
}

#[test]
fn intr_monitor_checks_and_reports_the_vm_layers_counts() {
    use acrn_abi::AcrnIntrMonitor;
    let mut e = env();
    let page = 0x10_8000;
    let m = AcrnIntrMonitor {
        cmd: acrn_abi::irq::INTR_CMD_GET_DATA,
        buf_cnt: 6,
        ..Default::default()
    };
    e.put(page, &m);
    // POST1 not created yet.
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, page), E(EINVAL));
    e.created_post1();
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, page), 0);
    let got = read_obj::<AcrnIntrMonitor>(&e.mem, page).unwrap();
    assert_eq!((got.cmd, got.buf_cnt), (0, 4), "two pairs written");
    assert_eq!(got.buffer[..5], [22, 5, 0xE0, 7, 0]);
    // A buffer of 3 holds one pair.
    e.put(page, &AcrnIntrMonitor { buf_cnt: 3, ..m });
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, page), 0);
    let got = read_obj::<AcrnIntrMonitor>(&e.mem, page).unwrap();
    assert_eq!((got.buf_cnt, got.buffer[..3].to_vec()), (2, vec![22, 5, 0]));
    let too_many = AcrnIntrMonitor { buf_cnt: 49, ..m };
    e.put(page, &too_many);
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, page), E(EINVAL));
    let mut delay = AcrnIntrMonitor {
        cmd: acrn_abi::irq::INTR_CMD_DELAY_INT,
        buf_cnt: 1,
        ..m
    };
    delay.buffer[0] = 50;
    e.put(page, &delay);
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, page), 0);
    assert_eq!(
        e.ops.log.last().map(String::as_str),
        Some("intr_delay 2 50")
    );
    assert_eq!(e.call(HC_VM_INTR_MONITOR, 1, 0x1F_FF00), E(EINVAL));
}

#[test]
fn write_protect_page_checks() {
    use acrn_abi::memory::WpData;
    let mut e = env();
    let wp = |set: u8, gpa: u64| WpData {
        set,
        pad: [0; 7],
        gpa,
    };
    e.put(ARG, &wp(1, 0x1000));
    assert_eq!(e.call(HC_VM_WRITE_PROTECT_PAGE, 1, ARG), E(EPERM)); // not created
    e.created_post1();
    e.put(ARG, &wp(1, 0x1000));
    assert_eq!(e.call(HC_VM_WRITE_PROTECT_PAGE, 1, ARG), 0);
    e.put(ARG, &wp(0, 0x1000));
    assert_eq!(e.call(HC_VM_WRITE_PROTECT_PAGE, 1, ARG), 0);
    for bad in [wp(1, 0x1001), wp(1, 16 << 20)] {
        e.put(ARG, &bad);
        assert_eq!(e.call(HC_VM_WRITE_PROTECT_PAGE, 1, ARG), E(EINVAL));
    }
    assert_eq!(e.call(HC_VM_WRITE_PROTECT_PAGE, 1, 0x20_0000), E(EINVAL));
    assert_eq!(
        e.ops.log[e.ops.log.len() - 2..],
        ["wp 2 0x1000 true", "wp 2 0x1000 false"]
    );
}

#[test]
fn setup_sbuf_checks_the_buffer() {
    use acrn_abi::sbuf::*;
    let mut e = env();
    e.hc.set_pcpus([0, 1]);
    e.created_post1();
    let buf = 0x10_8000;
    let header = SharedBuf {
        magic: SBUF_MAGIC,
        ele_num: 16,
        ele_size: 64,
        size: 1024,
        ..Default::default()
    };
    e.put(buf, &header);
    let param = |cpu_id, sbuf_id, gpa| AcrnSbufParam {
        cpu_id,
        reserved: 0,
        sbuf_id,
        gpa,
    };
    let setup = |e: &mut Env, p: AcrnSbufParam| {
        e.put(ARG, &p);
        e.call(HC_SETUP_SBUF, 1, ARG)
    };
    assert_eq!(setup(&mut e, param(1, ACRN_SBUF_HVLOG, buf)), 0);
    assert_eq!(setup(&mut e, param(2, ACRN_SBUF_HVLOG, buf)), E(EINVAL)); // no pCPU 2
    assert_eq!(setup(&mut e, param(0, ACRN_SBUF_TRACE, 0)), E(EPERM));
    assert_eq!(setup(&mut e, param(0, ACRN_SBUF_ASYNCIO, buf)), E(EPERM));
    assert_eq!(setup(&mut e, param(0, ACRN_SBUF_VM_EVENT, buf)), E(EPERM));
    assert_eq!(setup(&mut e, param(0, 7, buf)), E(EPERM));
    e.put(buf, &SharedBuf { magic: 1, ..header });
    assert_eq!(setup(&mut e, param(0, ACRN_SBUF_TRACE, buf)), E(EINVAL));
    e.put(
        buf,
        &SharedBuf {
            size: 1000,
            ..header
        },
    );
    assert_eq!(setup(&mut e, param(0, ACRN_SBUF_TRACE, buf)), E(EINVAL));
    // Data running past the end of Service VM RAM.
    e.put(0x1F_FF00, &header);
    assert_eq!(
        setup(&mut e, param(0, ACRN_SBUF_TRACE, 0x1F_FF00)),
        E(EINVAL)
    );
    assert_eq!(e.call(HC_SETUP_SBUF, 1, 0x20_0000), E(EPERM));
}

#[test]
fn device_assignment_follows_acrn_states_and_reaches_the_vm_layer() {
    use acrn_abi::irq::{HcPtdevIntx, HcPtdevIrq, ACRN_PTDEV_IRQ_INTX, ACRN_PTDEV_IRQ_MSI};
    let mut e = env();
    let nic = acrn_abi::AcrnPcidev {
        virt_bdf: 0x18,
        phys_bdf: NIC,
        bar: [0x8000_0000, 0, 0, 0, 0, 0],
        ..Default::default()
    };
    let intx = |r#type, virt_bdf| HcPtdevIrq {
        r#type,
        virt_bdf,
        phys_bdf: NIC,
        intx: HcPtdevIntx {
            virt_pin: 17,
            phys_pin: 22,
            ..Default::default()
        },
    };
    const IRQ: u64 = ARG + 0x300;
    const DEV: u64 = ARG + 0x400;
    e.put(DEV, &nic);
    e.put(IRQ, &intx(ACRN_PTDEV_IRQ_INTX, 0x18));
    // Powered off.
    for id in [
        HC_ASSIGN_PCIDEV,
        HC_DEASSIGN_PCIDEV,
        HC_ASSIGN_MMIODEV,
        HC_ADD_VDEV,
        HC_REMOVE_VDEV,
    ] {
        assert_eq!(e.call(id, 1, DEV), E(EINVAL), "{id:#x}");
    }
    for id in [HC_SET_PTDEV_INTR_INFO, HC_RESET_PTDEV_INTR_INFO] {
        assert_eq!(e.call(id, 1, IRQ), E(EPERM), "{id:#x}");
    }
    assert_eq!(e.call(HC_ASYNCIO_ASSIGN, 1, DEV), E(EPERM));
    e.created_post1();
    // Created: the function and its line reach the VM layer.
    assert_eq!(e.call(HC_ASSIGN_PCIDEV, 1, DEV), 0);
    assert_eq!(e.call(HC_ASSIGN_PCIDEV, 1, DEV), E(ENODEV), "given already");
    assert_eq!(e.call(HC_SET_PTDEV_INTR_INFO, 1, IRQ), 0);
    // Unreadable arguments, and MSI (ACRN remaps only INTx this way).
    assert_eq!(e.call(HC_ASSIGN_PCIDEV, 1, 0x20_0000), E(EINVAL));
    assert_eq!(e.call(HC_SET_PTDEV_INTR_INFO, 1, 0x20_0000), E(EPERM));
    e.put(IRQ + 0x40, &intx(ACRN_PTDEV_IRQ_MSI, 0x18));
    assert_eq!(e.call(HC_SET_PTDEV_INTR_INFO, 1, IRQ + 0x40), E(EPERM));
    for id in [
        HC_ASSIGN_MMIODEV,
        HC_DEASSIGN_MMIODEV,
        HC_ADD_VDEV,
        HC_REMOVE_VDEV,
    ] {
        assert_eq!(e.call(id, 1, DEV), E(EINVAL), "{id:#x}");
    }
    for id in [HC_ASYNCIO_ASSIGN, HC_ASYNCIO_DEASSIGN] {
        assert_eq!(e.call(id, 1, DEV), E(EPERM), "{id:#x}");
    }
    // An IVSHMEM device is added and removed; another ID is refused by the VM layer.
    let ivshmem = acrn_abi::device::AcrnVdev {
        id: acrn_abi::device::VDEV_ID_IVSHMEM,
        slot: 0x40,
        ..Default::default()
    };
    const VDEV: u64 = ARG + 0x600;
    e.put(VDEV, &ivshmem);
    assert_eq!(e.call(HC_ADD_VDEV, 1, VDEV), 0);
    assert_eq!(e.call(HC_ADD_VDEV, 1, 0x20_0000), E(EINVAL), "unreadable");
    // Running: assignment is for CREATED VMs only, and nothing is taken back.
    assert_eq!(e.call(HC_START_VM, 1, 0), 0);
    let other = acrn_abi::AcrnPcidev {
        phys_bdf: 0x20,
        ..nic
    };
    e.put(DEV + 0x80, &other);
    assert_eq!(e.call(HC_ASSIGN_PCIDEV, 1, DEV + 0x80), E(EINVAL));
    assert_eq!(e.call(HC_SET_PTDEV_INTR_INFO, 1, IRQ), E(EPERM));
    assert_eq!(e.call(HC_RESET_PTDEV_INTR_INFO, 1, IRQ), E(EPERM));
    assert_eq!(e.call(HC_DEASSIGN_PCIDEV, 1, DEV), E(EINVAL));
    assert_eq!(e.call(HC_ADD_VDEV, 1, VDEV), E(EINVAL));
    assert_eq!(e.call(HC_REMOVE_VDEV, 1, VDEV), E(EINVAL));
    // Paused: the line and the function go back.
    assert_eq!(e.call(HC_PAUSE_VM, 1, 0), 0);
    assert_eq!(e.call(HC_RESET_PTDEV_INTR_INFO, 1, IRQ), 0);
    assert_eq!(e.call(HC_DEASSIGN_PCIDEV, 1, DEV), 0);
    assert_eq!(
        e.call(HC_DEASSIGN_PCIDEV, 1, DEV),
        E(ENODEV),
        "not assigned"
    );
    assert_eq!(e.call(HC_REMOVE_VDEV, 1, VDEV), 0);
    assert_eq!(
        e.call(HC_REMOVE_VDEV, 1, VDEV),
        E(EINVAL),
        "removed already"
    );
    // No such VM.
    assert_eq!(e.call(HC_ASSIGN_PCIDEV, 9, DEV), E(ENOTTY));
    let vm_layer: Vec<_> = e
        .ops
        .log
        .iter()
        .filter(|l| {
            ["assign", "deassign", "intx", "add_vdev", "remove_vdev"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .cloned()
        .collect();
    assert_eq!(
        vm_layer,
        [
            "assign 2 0x10 0x18 0x80000000",
            "assign 2 0x10 0x18 0x80000000",
            "intx 2 22 17 true",
            // The NIC's pcidev read as a vdev: an ID the VM layer refuses, no such device.
            "add_vdev 2 0x10001800000000 0x8000000000000000",
            "remove_vdev 2 0x0",
            "add_vdev 2 0x11101af4 0x40",
            "intx 2 22 17 false",
            "deassign 2 0x10 0x18",
            "deassign 2 0x10 0x18",
            "remove_vdev 2 0x40",
            "remove_vdev 2 0x40",
        ]
    );
}

#[test]
fn pm_cpu_state_without_board_data() {
    use acrn_abi::pm::{pm_cmd, PmCmdType};
    let c = |kind, name, pcpus, flags| SlotConfig {
        kind,
        name,
        pcpus,
        flags,
    };
    let mut e = env();
    e.hc = Hypercalls::new(
        &[
            c(SlotKind::PreLaunched, "PRE", 0b0001, 0),
            c(SlotKind::Service, "SOS", 0b1110, 0),
            c(
                SlotKind::PostLaunched,
                "POST1",
                0b1100,
                GuestFlags::VHWP.bits(),
            ),
            c(SlotKind::PostLaunched, "POST2", 0b1000, 0),
        ],
        4,
    )
    .unwrap();
    let out = ARG + 0x800;
    let cmd = |vm, t| pm_cmd(vm, 0, 0, t);
    // Not created yet.
    assert_eq!(
        e.call(HC_PM_GET_CPU_STATE, cmd(1, PmCmdType::GetPxCnt), out),
        E(EPERM)
    );
    e.created_post1();
    e.put(out, &0xFFFFu64);
    assert_eq!(
        e.call(HC_PM_GET_CPU_STATE, cmd(1, PmCmdType::GetPxCnt), out),
        0
    );
    assert_eq!(read_obj::<u64>(&e.mem, out), Some(0xFF00)); // one byte written: 0
    for t in [
        PmCmdType::GetPxData,
        PmCmdType::GetCxCnt,
        PmCmdType::GetCxData,
    ] {
        assert_eq!(
            e.call(HC_PM_GET_CPU_STATE, cmd(1, t), out),
            E(EPERM),
            "{t:?}"
        );
    }
    // POST2 has no vHWP: no P-state count either.
    let (r, _) = e.create("POST2", 0);
    assert_eq!(r, 0);
    assert_eq!(
        e.call(HC_PM_GET_CPU_STATE, cmd(2, PmCmdType::GetPxCnt), out),
        E(EPERM)
    );
    // The target comes from bits 31:24: the Service VM itself (0) or a missing VM is -ENOTTY.
    assert_eq!(
        e.call(HC_PM_GET_CPU_STATE, cmd(0, PmCmdType::GetPxCnt), out),
        E(ENOTTY)
    );
    assert_eq!(
        e.call(HC_PM_GET_CPU_STATE, cmd(9, PmCmdType::GetPxCnt), out),
        E(ENOTTY)
    );
}
