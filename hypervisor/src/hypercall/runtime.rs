//! Bare-metal side of the hypercall layer: the Service VM's memory map (built once at boot from
//! the static tables), the dispatcher state behind a lock, and [`VmOps`] over real NPT/EPT
//! tables for post-launched VMs.
//!
//! Post-launched VMs are [`crate::vm::Vm`]s like every other: the operations here set up,
//! start, pause, reset and destroy them in the VM table, and the pCPUs their affinity names
//! pick their vCPUs up from there. HC_SET_IRQLINE and HC_INJECT_MSI go to their virtual
//! interrupt controllers.

use super::{
    Caller, Hypercalls, IdentityRam, Outcome, PhysBytes, SlotConfig, SlotKind, VmOps, MAX_USER_GPA,
    MAX_VM_NUM,
};
use crate::devices::irq::{Delivery, DestMode, Message, Shorthand};
use crate::hvlog;
use crate::paging::{MemType, Perm};
use crate::vm::layout::{self, Layout, TRAMPOLINE};
use crate::vm::loader::{E820Entry, MAX_E820};
use crate::vm::memory::VmMemory;
use crate::vm::{self as vms, VmInfo};
use acrn_abi::device::AcrnVdev;
use acrn_abi::errno::{EINVAL, ENODEV, ENOMEM, EPERM};
use acrn_abi::irq::{GsiOp, HcPtdevIrq};
use acrn_abi::memory::MemType as AbiMemType;
use acrn_abi::AcrnRegs;
use acrn_abi::GuestFlags;
use acrn_static_config::{Bdf, GuestMemRegion, LoadOrder, OsConfig, PlatformConfig, VmConfig};
use core::sync::atomic::{AtomicU8, Ordering};
use spin::{Mutex, Once};

use crate::arch::x86::identity::reach as hv_reach;

struct Identity;

impl PhysBytes for Identity {
    fn read(&self, hpa: u64, buf: &mut [u8]) {
        // SAFETY: the caller (IdentityRam) checked the range is Service VM RAM below the
        // hypervisor's reach, which it maps 1:1.
        unsafe { core::ptr::copy_nonoverlapping(hpa as *const u8, buf.as_mut_ptr(), buf.len()) }
    }
    fn write(&mut self, hpa: u64, data: &[u8]) {
        // SAFETY: as above; Service VM RAM holds no hypervisor data.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), hpa as *mut u8, data.len()) }
    }
}

/// Second-level tables of post-launched VMs, by VM id. A table survives destroy (emptied) and
/// is reused when the slot is created again, so frames are not leaked per VM lifetime.
struct PostVms {
    tables: [Option<VmMemory>; MAX_VM_NUM],
    npt: bool,
}

static LAYOUT: Once<Layout> = Once::new();
static SERVICE_MEMORY: Once<([GuestMemRegion; layout::MAX_RANGES + 1], usize)> = Once::new();
static SERVICE_CONFIG: Once<VmConfig> = Once::new();

/// Low RAM that backs the Service VM's BIOS area (GPA 0xF0000, its ACPI tables): the BIOS
/// area itself is firmware, not RAM, so 64 KiB at the top of the 640 KiB are used instead and
/// taken out of the identity map.
const BIOS_BACKING: (u64, u64) = (0x8_F000, 0x1_0000);
static STATE: Once<Mutex<(Hypercalls, PostVms)>> = Once::new();
/// The Service VM's id, readable without the lock: other VMs' hypercalls are refused without
/// waiting for it (a pause holds it while the caller's vCPU is to leave its pCPU).
static SERVICE_VMID: Once<u16> = Once::new();

/// Builds the Service VM's memory layout and the hypercall table. Returns the layout, or
/// `None` if the scenario has no Service VM (or its layout cannot be built, which is logged).
pub fn init(p: &PlatformConfig, npt: bool) -> Option<&'static Layout> {
    let service = p.vms.iter().find(|v| v.load_order == LoadOrder::Service)?;
    let board: [(u64, u64); layout::MAX_RANGES] =
        core::array::from_fn(|i| p.board.ram.get(i).map_or((0, 0), |r| (r.start, r.size)));
    let mut carve = [(0u64, 0u64); 64];
    let mut n = 0;
    let owned = core::iter::once((p.hv.ram.start, p.hv.ram.size))
        .chain([TRAMPOLINE, BIOS_BACKING])
        .chain(
            p.hv.ivshmem_regions
                .iter()
                .map(|r| (r.hpa.start, r.hpa.size)),
        )
        .chain(
            p.vms
                .iter()
                .filter(|v| v.load_order == LoadOrder::PreLaunched)
                .flat_map(|v| v.memory.iter().map(|r| (r.hpa, r.size))),
        );
    for r in owned {
        if n == carve.len() {
            hvlog!(
                "VM {} {}: too many memory carve-outs",
                service.id,
                service.name
            );
            return None;
        }
        carve[n] = r;
        n += 1;
    }
    let layout = match layout::layout(
        &board[..p.board.ram.len().min(layout::MAX_RANGES)],
        &carve[..n],
    ) {
        Ok(l) => l,
        Err(e) => {
            hvlog!(
                "VM {} {}: memory layout failed: {e}",
                service.id,
                service.name
            );
            return None;
        }
    };
    let slots: [SlotConfig; MAX_VM_NUM] = core::array::from_fn(|i| match p.vms.get(i) {
        Some(v) => SlotConfig {
            kind: match v.load_order {
                LoadOrder::PreLaunched => SlotKind::PreLaunched,
                LoadOrder::Service => SlotKind::Service,
                LoadOrder::PostLaunched => SlotKind::PostLaunched,
            },
            name: v.name,
            pcpus: v.pcpus.0,
            flags: v.guest_flags.0,
        },
        None => SlotConfig {
            kind: SlotKind::Empty,
            name: "",
            pcpus: 0,
            flags: 0,
        },
    });
    let nslots = p.vms.len().min(MAX_VM_NUM);
    let mut hc = Hypercalls::new(&slots[..nslots], p.hv.max_vm_num as usize)?;
    hc.set_pcpus(p.board.pcpus.iter().map(|c| c.apic_id));
    SERVICE_VMID.call_once(|| hc.service_vmid());
    STATE.call_once(|| {
        Mutex::new((
            hc,
            PostVms {
                tables: [const { None }; MAX_VM_NUM],
                npt,
            },
        ))
    });
    Some(LAYOUT.call_once(|| layout))
}

/// Handles a VMCALL/VMMCALL of VM `vmid` at privilege `cpl` with the guest's R8/RDI/RSI.
pub fn handle(vmid: u16, cpl: u8, id: u64, p1: u64, p2: u64) -> Outcome {
    let (Some(state), Some(layout), Some(&service)) =
        (STATE.get(), LAYOUT.get(), SERVICE_VMID.get())
    else {
        return Outcome::InjectUd; // no Service VM: nobody may call
    };
    if vmid != service {
        return Outcome::InjectUd;
    }
    let mut mem = IdentityRam {
        ranges: layout.ram(),
        limit: hv_reach(),
        phys: Identity,
    };
    let mut g = state.lock();
    let (hc, ops) = &mut *g;
    let out = hc.dispatch(&mut mem, ops, Caller { vmid, cpl }, id, p1, p2);
    UPCALL_VECTOR.store(hc.upcall_vector(), Ordering::Relaxed);
    out
}

/// The vector HC_SET_CALLBACK_VECTOR chose for the upcall (ACRN's default 0xF3).
static UPCALL_VECTOR: AtomicU8 = AtomicU8::new(acrn_abi::irq::HSM_UPCALL_VECTOR);

/// Tells the Service VM that an I/O request waits: the upcall vector, through the local APIC
/// of its BSP (vCPU 0), as a virtual interrupt.
pub fn upcall() {
    if let Some(vm) = SERVICE_VMID.get().and_then(|&id| vms::vm(id)) {
        let msg = Message {
            vector: UPCALL_VECTOR.load(Ordering::Relaxed),
            dest: 0,
            wide_dest: false,
            dest_mode: DestMode::Physical,
            delivery: Delivery::Fixed,
            level_trigger: false,
            shorthand: Shorthand::None,
        };
        vm.deliver(&msg, None);
    }
}

/// EPT/NPT permissions and memory type from a checked `prot` (ACRN: UC unless WB/WT/WC/WP).
fn prot_to_pt(prot: u32) -> (Perm, MemType) {
    let perm = Perm {
        read: prot & 1 != 0,
        write: prot & 2 != 0,
        exec: prot & 4 != 0,
    };
    let cached = AbiMemType::from_bits_truncate(prot)
        .intersects(AbiMemType::WB | AbiMemType::WT | AbiMemType::WC | AbiMemType::WP);
    (
        perm,
        if cached {
            MemType::WriteBack
        } else {
            MemType::Uncached
        },
    )
}

impl PostVms {
    fn table(&self, vmid: u16) -> Option<VmMemory> {
        *self.tables.get(vmid as usize)?
    }

    fn root(&self, vmid: u16) -> Option<u64> {
        Some(self.table(vmid)?.root())
    }
}

fn post_vm(vmid: u16) -> Result<&'static vms::Vm, i32> {
    vms::vm(vmid).ok_or(EINVAL)
}

impl VmOps for PostVms {
    fn create(&mut self, vmid: u16, pcpus: u64, flags: u64) -> Result<(), i32> {
        let slot = self.tables.get_mut(vmid as usize).ok_or(ENOMEM)?;
        if slot.is_none() {
            *slot = Some(VmMemory::empty(self.npt).map_err(|_| ENOMEM)?);
        }
        let root = self.root(vmid).ok_or(ENOMEM)?;
        let cfg = crate::hv::platform()
            .vms
            .iter()
            .find(|c| c.id == vmid && c.load_order == LoadOrder::PostLaunched);
        let vm = post_vm(vmid)?;
        vm.polling.store(
            flags & GuestFlags::IO_COMPLETION_POLLING.bits() != 0,
            Ordering::Relaxed,
        );
        vm.setup(
            VmInfo {
                name: cfg.map_or("", |c| c.name),
                load_order: LoadOrder::PostLaunched,
                cfg,
                flags,
            },
            root,
            self.npt,
            pcpus,
        );
        Ok(())
    }
    fn destroy(&mut self, vmid: u16) {
        // Paused already (the dispatcher checks): no vCPU runs on the table emptied here for
        // the next VM in this slot.
        if let Ok(vm) = post_vm(vmid) {
            vm.destroy();
        }
        let _ = self.unmap(vmid, 0, MAX_USER_GPA);
    }
    fn start(&mut self, vmid: u16, ioreq_page: u64) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        vm.start(Some(ioreq_page));
        hvlog!("VM {vmid} {}: post-launched, started", vm.name());
        Ok(())
    }
    fn pause(&mut self, vmid: u16) {
        if let Ok(vm) = post_vm(vmid) {
            vm.pause();
        }
    }
    fn reset(&mut self, vmid: u16) {
        if let Ok(vm) = post_vm(vmid) {
            vm.reset();
        }
    }
    fn set_vcpu_regs(&mut self, vmid: u16, vcpu: u16, regs: &AcrnRegs) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        let slot = vm.vcpus.get(vcpu as usize).ok_or(EINVAL)?;
        *slot.start.lock() = Some(super::regs::initial_state_from_acrn(regs));
        Ok(())
    }
    fn map(&mut self, vmid: u16, gpa: u64, hpa: u64, size: u64, prot: u32) -> Result<(), i32> {
        let (perm, mt) = prot_to_pt(prot);
        self.table(vmid)
            .ok_or(ENOMEM)?
            .map_with(gpa, hpa, size, perm, mt)
            .map_err(|_| ENOMEM)
    }
    fn unmap(&mut self, vmid: u16, gpa: u64, size: u64) -> Result<(), i32> {
        // No vCPU of the VM, nor a function assigned to it (the IOMMU's part of the unmap),
        // may use a stale translation once the hypercall returns.
        let r = self.table(vmid).ok_or(ENOMEM)?.unmap(gpa, size);
        if let Ok(vm) = post_vm(vmid) {
            vm.flush_tlbs();
        }
        r.map_err(|_| ENOMEM)
    }
    fn gpa2hpa(&mut self, vmid: u16, gpa: u64) -> Option<u64> {
        self.table(vmid)?.translate(gpa).map(|t| t.hpa)
    }
    fn notify_request_finish(&mut self, vmid: u16, vcpu: u16) {
        // The vCPU's pCPU finds the slot COMPLETE when it looks again: make it look now.
        if let Some(p) = vms::vm(vmid)
            .and_then(|vm| vm.vcpus.get(vcpu as usize))
            .and_then(|v| v.pcpu())
        {
            vms::kick_pcpu(p);
        }
    }
    fn set_irqline(&mut self, vmid: u16, gsi: u32, op: GsiOp) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        vm.devices.set_irqline(vm, gsi, op);
        Ok(())
    }
    fn inject_msi(&mut self, vmid: u16, addr: u64, data: u64) -> Result<(), i32> {
        post_vm(vmid)?.inject_msi(addr, data).map_err(|e| {
            hvlog!("VM {vmid}: HC_INJECT_MSI refused: {e}");
            EINVAL
        })
    }
    fn write_protect(&mut self, vmid: u16, gpa: u64, protect: bool) -> Result<(), i32> {
        let table = self.table(vmid).ok_or(EINVAL)?;
        let t = table.translate(gpa).ok_or(EINVAL)?;
        let perm = Perm {
            write: !protect,
            ..t.perm
        };
        let hpa = t.hpa & !0xFFF;
        let r = table.map_with(gpa, hpa, 0x1000, perm, t.mem_type);
        // No vCPU may keep writing through a stale writable translation.
        if let Ok(vm) = post_vm(vmid) {
            vm.flush_tlbs();
        }
        r.map_err(|_| ENOMEM)
    }
    fn offline_service_vcpu(&mut self, lapic_id: u32) -> Result<(), i32> {
        let Some(vm) = SERVICE_VMID.get().and_then(|&id| vms::vm(id)) else {
            return Ok(());
        };
        let Some(idx) = (0..vm.vcpu_count()).find(|&i| vm.vcpus[i].view.lock().id == lapic_id)
        else {
            return Ok(());
        };
        if idx == 0 {
            return Err(EPERM);
        }
        hvlog!(
            "VM {} {}: vCPU {idx} (LAPIC ID {lapic_id}) offlined by the Service VM",
            vm.id,
            vm.name()
        );
        Ok(())
    }
    fn assign_pcidev(
        &mut self,
        vmid: u16,
        phys: u16,
        virt: u16,
        bars: [u32; 6],
    ) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        let (pbdf, vbdf) = (Bdf::from_raw(phys), Bdf::from_raw(virt));
        // The BAR registers as the Device Model wrote them: a 64-bit BAR's upper half is in
        // the next one.
        let mut vbars = [0u64; 6];
        for i in 0..6 {
            let wide = bars[i] & 0x7 == 0x4 && i < 5;
            let high = if wide {
                u64::from(bars[i + 1]) << 32
            } else {
                0
            };
            vbars[i] = high | u64::from(bars[i]);
        }
        crate::devices::pci::assign(vm, pbdf, vbdf, vbars).map_err(|e| {
            hvlog!(
                "VM {vmid} {}: HC_ASSIGN_PCIDEV {:02x}:{:02x}.{} refused: {e}",
                vm.name(),
                pbdf.bus,
                pbdf.dev,
                pbdf.func
            );
            ENODEV
        })
    }
    fn deassign_pcidev(&mut self, vmid: u16, phys: u16, virt: u16) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        if crate::devices::pci::deassign(vm, Bdf::from_raw(phys), Bdf::from_raw(virt)) {
            Ok(())
        } else {
            Err(ENODEV)
        }
    }
    fn add_vdev(&mut self, vmid: u16, dev: &AcrnVdev) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        vm.devices.pci().add_device(vm, dev).map_err(|e| {
            hvlog!(
                "VM {vmid} {}: HC_ADD_VDEV {:04x}:{:04x} at {:#x} refused: {e}",
                vm.name(),
                dev.id as u16,
                (dev.id >> 16) as u16,
                dev.slot
            );
            EINVAL
        })
    }
    fn remove_vdev(&mut self, vmid: u16, slot: u16) -> Result<(), i32> {
        let vm = post_vm(vmid)?;
        vm.devices
            .pci()
            .remove_device(vm, Bdf::from_raw(slot))
            .map_err(|_| EINVAL)
    }
    fn intr_data(&mut self, vmid: u16, out: &mut [u64]) -> usize {
        let mut n = 0;
        let mut put = |irq: u32, count: u64| {
            if let Some(pair) = out.get_mut(n..n + 2) {
                pair.copy_from_slice(&[u64::from(irq), count]);
                n += 2;
            }
        };
        crate::vm::ptirq::line_counts(vmid, &mut put);
        crate::devices::pci::msi_counts(vmid, &mut put);
        n
    }
    fn intr_delay(&mut self, vmid: u16, ms: u64) {
        if let Some(vm) = crate::vm::vm(vmid) {
            vm.devices.set_interrupt_delay(ms);
        }
    }
    fn ptdev_intx(&mut self, vmid: u16, irq: &HcPtdevIrq, give: bool) -> Result<(), i32> {
        let vm = post_vm(vmid).map_err(|_| EPERM)?;
        let (phys, virt) = (irq.intx.phys_pin, irq.intx.virt_pin);
        if !give {
            return if crate::vm::ptirq::take_line(vm, phys, virt) {
                Ok(())
            } else {
                Err(EPERM)
            };
        }
        let assigned = crate::devices::pci::assigned_at(vmid, Bdf::from_raw(irq.virt_bdf))
            == Some(Bdf::from_raw(irq.phys_bdf));
        let refused = if !assigned {
            Some("no function is assigned at virt_bdf from phys_bdf")
        } else if irq.intx.pic_pin != 0 {
            Some("a vPIC pin (only vIOAPIC pins are remapped)")
        } else {
            match crate::vm::ptirq::give_line(vm, phys, virt) {
                Ok(()) => None,
                Err(crate::vm::ptirq::LineError::NotServiceVms) => {
                    Some("the physical GSI is not the Service VM's to give")
                }
                Err(crate::vm::ptirq::LineError::VirtualGsi) => {
                    Some("the virtual GSI is beyond the vIOAPIC or taken")
                }
                Err(crate::vm::ptirq::LineError::Full) => Some("too many lines given"),
            }
        };
        match refused {
            None => {
                hvlog!(
                    "VM {vmid} {}: physical GSI {phys} drives its vIOAPIC GSI {virt}",
                    vm.name()
                );
                Ok(())
            }
            Some(why) => {
                hvlog!(
                    "VM {vmid} {}: HC_SET_PTDEV_INTR_INFO GSI {phys} -> {virt} refused: {why}",
                    vm.name()
                );
                Err(EPERM)
            }
        }
    }
}

/// The Service VM's e820 (its layout's, cut at the hypervisor's reach like its memory, with
/// the host's ECAM window reserved as firmware reserves it) into `out`; `None` before
/// [`init`] or without a Service VM.
pub fn service_e820(out: &mut [E820Entry; MAX_E820]) -> Option<usize> {
    let ecam = crate::devices::physical::service_ecam().map(|(base, size, _)| (base, size));
    LAYOUT
        .get()
        .map(|l| l.e820_below_with(hv_reach(), ecam.as_slice(), out))
}

/// The Service VM as the VM layer builds it: its scenario entry with `memory` set to its
/// identity-mapped RAM below the hypervisor's reach (GPA = HPA) plus the BIOS area. Call after
/// [`init`].
pub fn service_vm_config(cfg: &'static VmConfig) -> Option<&'static VmConfig> {
    let layout = LAYOUT.get()?;
    let mem = SERVICE_MEMORY.call_once(|| {
        let mut regions = [GuestMemRegion {
            gpa: 0,
            hpa: 0,
            size: 0,
        }; layout::MAX_RANGES + 1];
        let mut n = 0;
        let (bios, bios_len) = layout::BIOS_AREA;
        let reach = hv_reach();
        let clipped = layout
            .ram()
            .iter()
            .filter(|r| r.0 < reach)
            .map(|&(s, len)| (s, len.min(reach - s)));
        for (s, len) in clipped.chain(core::iter::once((bios, bios_len))) {
            let hpa = if s == bios { BIOS_BACKING.0 } else { s };
            regions[n] = GuestMemRegion {
                gpa: s,
                hpa,
                size: len,
            };
            n += 1;
        }
        regions[..n].sort_unstable_by_key(|r| r.gpa);
        (regions, n)
    });
    let os = cfg.os.as_ref().map(|o| OsConfig {
        kern_type: o.kern_type,
        kern_mod: o.kern_mod,
        ramdisk_mod: o.ramdisk_mod,
        bootargs: o.bootargs,
        kern_load_addr: o.kern_load_addr,
        kern_entry_addr: o.kern_entry_addr,
    });
    Some(SERVICE_CONFIG.call_once(|| VmConfig {
        id: cfg.id,
        name: cfg.name,
        load_order: cfg.load_order,
        vm_type: cfg.vm_type,
        guest_flags: cfg.guest_flags,
        pcpus: cfg.pcpus,
        memory: &mem.0[..mem.1],
        memory_size: cfg.memory_size,
        os,
        console: cfg.console,
        vuarts: cfg.vuarts,
        ivshmem: cfg.ivshmem,
        pci_devs: cfg.pci_devs,
        pt_intx: cfg.pt_intx,
        priority: cfg.priority,
        bvt: cfg.bvt,
        companion_vm: cfg.companion_vm,
    }))
}
