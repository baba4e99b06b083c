//! The vendor-neutral VM layer: builds each pre-launched VM (nested/extended page tables over
//! exactly its HPA regions, kernel loaded per ACRN's boot contract, guest ACPI), then runs one
//! vCPU per pCPU (SCHED_NOOP) and handles exits. Anything a guest does that is not handled stops
//! that VM alone.

use crate::acpi;
use crate::arch::svm::{self, SvmCaps, SvmVcpu};
use crate::arch::vmx::{self, VmxVcpu};
use crate::arch::x86::{self, cpuid, lapic, phys_read32, phys_write32};
use crate::bootinfo::{BootInfo, Module};
use crate::decode::{self, AluSrc, CpuMode, Op};
use crate::gwalk::{self, GuestPhys};
use crate::hv::frames::{self, Frames};
use crate::hvlog;
use crate::loader::{self, E820Entry, Guarded, GuestMem, LoadError, Mb1Module, MAX_E820};
use crate::paging::{Ept, MemType, Npt, PageTable, Perm};
use crate::string_io;
use crate::vcpu::{
    AccessKind, GuestRegs, InitialState, Injection, IoDirection, Segment, Vcpu, VmExit,
};
use crate::vuart::Vuart;
use acrn_abi::cpuid::{
    ACRN_CPUID_MAX_LEAF, ACRN_CPUID_SIGNATURE, ACRN_CPUID_TIMING_INFO, ACRN_SIGNATURE_REG,
};
use acrn_static_config::{
    ConsoleVuart, GuestMemRegion, KernelType, LoadOrder, PlatformConfig, VmConfig,
};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use spin::{Mutex, Once};

pub const MAX_VMS: usize = 8;
const MAX_VCPUS: usize = 16;
const LAPIC_GPA: u64 = 0xFEE0_0000;
const SIPI_PENDING: u32 = 0x100;

#[derive(Clone, Copy)]
enum Backend {
    Svm(SvmCaps),
    Vmx,
}
static BACKEND: Once<Backend> = Once::new();

struct Vm {
    cfg: &'static VmConfig,
    /// Root of the VM's NPT or EPT.
    root: u64,
    boot: InitialState,
    kernel: KernelType,
    stopped: AtomicBool,
    /// Per vCPU: 0, or SIPI_PENDING | vector once the VM's BSP sent INIT-SIPI.
    sipi: [AtomicU32; MAX_VCPUS],
    /// Per vCPU: the logical APIC ID register (LDR) the guest programmed.
    ldr: [AtomicU32; MAX_VCPUS],
    vuart: Mutex<Vuart>,
    /// Owns the platform's legacy timer and interrupt devices (see [`LEGACY_PORTS`]).
    platform_devices: bool,
}

/// The VM that runs on pCPU 0 gets the legacy platform devices whose interrupts the chipset
/// routes to the boot CPU: PIT, PIC, ELCR, RTC/CMOS, port 0x61, the IOAPIC MMIO page and the
/// HPET (Linux needs it to calibrate the TSC under QEMU TCG, where PIT calibration fails).
/// No other VM and not the hypervisor uses them.
const HPET_PAGE: u64 = 0xFED0_0000;
const LEGACY_PORTS: [(u16, u16); 6] = [
    (0x20, 2),
    (0xA0, 2),
    (0x40, 4),
    (0x61, 1),
    (0x70, 2),
    (0x4D0, 2),
];

#[allow(clippy::declare_interior_mutable_const)]
const VM_SLOT: Once<Vm> = Once::new();
static VMS: [Once<Vm>; MAX_VMS] = [VM_SLOT; MAX_VMS];

fn prefix_line(vm: &Vm, text: &[u8]) {
    let mut buf = [0u8; 48];
    let name = vm.cfg.name.as_bytes();
    let n = name.len().min(buf.len() - 3);
    buf[0] = b'[';
    buf[1..1 + n].copy_from_slice(&name[..n]);
    buf[1 + n] = b']';
    buf[2 + n] = b' ';
    crate::console::vm_line(core::str::from_utf8(&buf[..3 + n]).unwrap_or("[?] "), text);
}

/// Stops `vm` (once) with a reason; its vCPUs halt at their next exit.
fn stop(vm: &Vm, reason: fmt::Arguments) {
    if vm.stopped.swap(true, Ordering::AcqRel) {
        return;
    }
    if let Some(partial) = vm.vuart.lock().take_partial() {
        prefix_line(vm, partial);
    }
    hvlog!("VM {} {} stopped: {}", vm.cfg.id, vm.cfg.name, reason);
}

/// Guest-physical memory of a pre-launched VM: its regions, reached through the identity map.
struct VmMem(&'static [GuestMemRegion]);

impl VmMem {
    fn hpa(&self, gpa: u64, len: u64) -> Option<u64> {
        self.0.iter().find_map(|r| {
            let off = gpa.checked_sub(r.gpa)?;
            (off.checked_add(len)? <= r.size).then_some(r.hpa + off)
        })
    }
}

impl GuestMem for VmMem {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        let hpa = self
            .hpa(gpa, data.len() as u64)
            .ok_or(LoadError::OutOfBounds {
                gpa,
                len: data.len() as u64,
            })?;
        // SAFETY: hpa range is this VM's RAM (checked below 4 GiB at prepare), identity-mapped.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), hpa as *mut u8, data.len()) };
        Ok(())
    }
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        let hpa = self
            .hpa(gpa, len)
            .ok_or(LoadError::OutOfBounds { gpa, len })?;
        // SAFETY: as above.
        unsafe { core::ptr::write_bytes(hpa as *mut u8, 0, len as usize) };
        Ok(())
    }
}

impl GuestPhys for VmMem {
    fn read_u64(&self, gpa: u64) -> Option<u64> {
        let hpa = self.hpa(gpa, 8)?;
        // SAFETY: as above.
        Some(unsafe { core::ptr::read_volatile(hpa as *const u64) })
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

/// Picks the backend, then builds every pre-launched VM. A VM that cannot be built is reported
/// and left stopped; the others go on.
pub fn prepare_all(p: &'static PlatformConfig, bi: &BootInfo) {
    let backend = match svm::detect() {
        Ok(caps) => Backend::Svm(caps),
        Err(svm::SvmError::NotAmd) if vmx::is_supported() => Backend::Vmx,
        Err(e) => {
            hvlog!("no usable virtualization: SVM: {e}; VMX not supported");
            x86::halt_forever();
        }
    };
    match backend {
        Backend::Svm(c) => {
            hvlog!(
                "virtualization: AMD SVM with NPT ({} ASIDs, NRIP save {})",
                c.asids,
                if c.nrips { "yes" } else { "no" }
            );
            if let Err(e) = svm::init_global(frames::alloc) {
                hvlog!("SVM setup failed: {e}");
                x86::halt_forever();
            }
        }
        Backend::Vmx => hvlog!("virtualization: Intel VMX with EPT and unrestricted guest"),
    }
    BACKEND.call_once(|| backend);

    crate::hypercall::runtime::init(p, matches!(backend, Backend::Svm(_)));
    // The Service VM last: its RAM holds every boot module, which loading it may overwrite.
    let order = p
        .vms
        .iter()
        .enumerate()
        .filter(|(_, c)| c.load_order != LoadOrder::Service);
    for (slot, cfg) in order.chain(
        p.vms
            .iter()
            .enumerate()
            .filter(|(_, c)| c.load_order == LoadOrder::Service),
    ) {
        let cfg = match cfg.load_order {
            LoadOrder::PreLaunched => cfg,
            // Built like a pre-launched VM over its identity-mapped RAM (hypercall::runtime).
            LoadOrder::Service => match crate::hypercall::runtime::service_vm_config(cfg) {
                Some(c) => c,
                None => continue,
            },
            LoadOrder::PostLaunched => {
                hvlog!(
                    "VM {} {}: post-launched, created by the Service VM",
                    cfg.id,
                    cfg.name
                );
                continue;
            }
        };
        if slot >= MAX_VMS {
            hvlog!(
                "VM {} {}: more than {MAX_VMS} VMs; skipped",
                cfg.id,
                cfg.name
            );
            continue;
        }
        match build_vm(p, cfg, bi, backend) {
            Ok(vm) => {
                VMS[slot].call_once(|| vm);
            }
            Err(e) => hvlog!("VM {} {} not started: {}", cfg.id, cfg.name, e),
        }
    }
}

enum BuildError {
    Config(&'static str),
    NoModule(&'static str),
    ModuleOverlaps {
        tag: &'static str,
        vm: &'static str,
    },
    /// No room in the Service VM's RAM to copy the module out of the kernel's way.
    NoRoom(&'static str),
    Load(LoadError),
    Memory,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(w) => f.write_str(w),
            BuildError::NoModule(t) => write!(f, "no boot module tagged {t:?}"),
            BuildError::ModuleOverlaps { tag, vm } => {
                write!(f, "boot module {tag:?} lies in the memory of VM {vm}")
            }
            BuildError::NoRoom(t) => write!(f, "no room to copy boot module {t:?} aside"),
            BuildError::Load(e) => write!(f, "kernel load failed: {e}"),
            BuildError::Memory => f.write_str("out of hypervisor memory for page tables"),
        }
    }
}

fn build_vm(
    p: &PlatformConfig,
    cfg: &'static VmConfig,
    bi: &BootInfo,
    backend: Backend,
) -> Result<Vm, BuildError> {
    let n = cfg.pcpus.count() as usize;
    if n == 0
        || n > MAX_VCPUS
        || (0..64).any(|c| cfg.pcpus.contains(c) && c as usize >= p.board.pcpus.len())
    {
        return Err(BuildError::Config("its pCPUs are not all on the board"));
    }
    if cfg.memory.is_empty() || cfg.memory[0].gpa != 0 {
        return Err(BuildError::Config(
            "pre-launched VM memory must start at GPA 0",
        ));
    }
    for r in cfg.memory {
        if r.hpa.saturating_add(r.size) > 1 << 32 || (r.gpa | r.hpa | r.size) & 0xFFF != 0 {
            return Err(BuildError::Config(
                "memory regions must be 4 KiB aligned and below 4 GiB",
            ));
        }
        if overlaps(r.hpa, r.size, p.hv.ram.start, p.hv.ram.size) {
            return Err(BuildError::Config("memory overlaps the hypervisor's RAM"));
        }
        for other in p.vms.iter().filter(|o| o.id != cfg.id) {
            if other
                .memory
                .iter()
                .any(|o| overlaps(r.hpa, r.size, o.hpa, o.size))
            {
                return Err(BuildError::Config("memory overlaps another VM's memory"));
            }
        }
    }
    let os = cfg
        .os
        .as_ref()
        .ok_or(BuildError::Config("no OS configured"))?;
    let mut module = *bi
        .module_by_tag(os.kern_mod)
        .ok_or(BuildError::NoModule(os.kern_mod))?;
    // Loading a VM overwrites its memory: no module (of any VM) may live there.
    for m in bi.modules() {
        for v in p.vms {
            if v.memory
                .iter()
                .any(|r| overlaps(m.start, m.size, r.hpa, r.size))
            {
                return Err(BuildError::ModuleOverlaps {
                    tag: os.kern_mod,
                    vm: v.name,
                });
            }
        }
    }
    let mut ramdisk = match os.ramdisk_mod {
        Some(tag) => Some(*bi.module_by_tag(tag).ok_or(BuildError::NoModule(tag))?),
        None => None,
    };
    let mem = VmMem(cfg.memory);
    // The Service VM's RAM is identity-mapped over the boot modules (the check above cannot see
    // it: its memory is computed at run time), so its kernel may load over a module's place, its
    // own image included: everything it reads or is handed is copied away first, and the
    // loader may not write over the copies.
    let mut staged = Staging::new(&mem, bi);
    if cfg.load_order == LoadOrder::Service {
        module.start = staged
            .copy(&mem, &module)
            .ok_or(BuildError::NoRoom(os.kern_mod))?;
        if let (Some(r), Some(tag)) = (ramdisk.as_mut(), os.ramdisk_mod) {
            r.start = staged.copy(&mem, r).ok_or(BuildError::NoRoom(tag))?;
        }
    }
    // SAFETY: the module is RAM the boot loader filled (or its staged copy), below 4 GiB; no
    // write reaches it while the slice lives (outside every other VM's memory; Guarded below).
    let image =
        unsafe { core::slice::from_raw_parts(module.start as *const u8, module.size as usize) };

    let platform_devices = cfg.pcpus.contains(0);
    let ioapic_page = platform_devices
        .then(|| p.board.ioapics.first().map(|io| io.address & !0xFFF))
        .flatten();
    let root = match backend {
        Backend::Svm(_) => map_all::<Npt>(cfg, ioapic_page, platform_devices)?,
        Backend::Vmx => map_all::<Ept>(cfg, ioapic_page, platform_devices)?,
    };
    let mut e820 = [E820Entry {
        addr: 0,
        size: 0,
        kind: 0,
    }; MAX_E820];
    let regions: [(u64, u64); 8] =
        core::array::from_fn(|i| cfg.memory.get(i).map_or((0, 0), |r| (r.gpa, r.size)));
    // The Service VM's e820 comes from its layout: the hypervisor's RAM and pre-launched VMs'
    // memory show as reserved there.
    let service = (cfg.load_order == LoadOrder::Service)
        .then(|| crate::hypercall::runtime::service_e820(&mut e820))
        .flatten();
    let ne = match service {
        Some(n) => n,
        None => loader::vm_e820(&regions[..cfg.memory.len().min(8)], &mut e820),
    };
    let e820 = &e820[..ne];

    let mut tables = [0u8; acpi::GUEST_TABLES_SIZE];
    let ioapic = ioapic_page
        .and(p.board.ioapics.first())
        .map(|io| (io.id, io.address as u32));
    let hpet = platform_devices.then_some(HPET_PAGE);
    acpi::build_guest_tables(
        &mut tables,
        acpi::GUEST_RSDP_GPA,
        n as u32,
        ioapic,
        hpet,
        crate::hv::pm_timer(),
    );
    let mut mods = [Mb1Module {
        start: 0,
        end: 0,
        string: "",
    }; loader::MAX_MB1_MODULES];
    let nmods = match (os.kern_type, cfg.load_order) {
        (KernelType::Elf, LoadOrder::Service) => {
            service_modules(p, &mem, bi, &mut staged, &mut mods)
        }
        _ => 0,
    };
    let mut mem = VmMem(cfg.memory);
    let mut mem = Guarded {
        mem: &mut mem,
        keep: staged.ranges(),
    };
    mem.write(acpi::GUEST_RSDP_GPA, &tables)
        .map_err(BuildError::Load)?;

    let boot = match os.kern_type {
        KernelType::Elf if nmods > 0 => {
            loader::load_elf_with_modules(&mut mem, image, os.bootargs, e820, &mods[..nmods])
        }
        KernelType::Elf => loader::load_elf(&mut mem, image, os.bootargs, e820),
        KernelType::RawImage => match (os.kern_load_addr, os.kern_entry_addr) {
            (Some(l), Some(e)) => loader::load_raw(&mut mem, image, l, e),
            _ => Err(LoadError::MissingLoadAddress),
        },
        KernelType::BzImage => {
            // SAFETY: as for the kernel module.
            let rd = ramdisk.map(|m| unsafe {
                core::slice::from_raw_parts(m.start as *const u8, m.size as usize)
            });
            loader::load_bzimage(&mut mem, image, os.bootargs, rd, e820, acpi::GUEST_RSDP_GPA)
        }
    }
    .map_err(BuildError::Load)?;

    Ok(Vm {
        cfg,
        root,
        boot,
        kernel: os.kern_type,
        stopped: AtomicBool::new(false),
        sipi: core::array::from_fn(|_| AtomicU32::new(0)),
        ldr: core::array::from_fn(|_| AtomicU32::new(0)),
        vuart: Mutex::new(Vuart::new()),
        platform_devices,
    })
}

/// Copies of boot modules at the top of the Service VM's RAM below 4 GiB (identity-mapped, so
/// GPA = HPA), going downwards, never over a boot module's original place (one not copied yet
/// would be lost) nor a hole. The loader may put the kernel over a module's original place, but
/// not over these copies (they are its `keep` ranges); the Service VM copies the modules it is
/// handed out before it gives RAM to guests.
struct Staging<'b> {
    bi: &'b BootInfo,
    top: u64,
    ranges: [(u64, u64); MAX_STAGED],
    n: usize,
}

/// The kernel, its ramdisk and the multiboot1 modules.
const MAX_STAGED: usize = loader::MAX_MB1_MODULES + 2;

impl<'b> Staging<'b> {
    fn new(mem: &VmMem, bi: &'b BootInfo) -> Self {
        let top = mem
            .0
            .iter()
            .filter(|r| r.gpa == r.hpa)
            .map(|r| (r.gpa + r.size).min(1 << 32))
            .max()
            .unwrap_or(0);
        Staging {
            bi,
            top,
            ranges: [(0, 0); MAX_STAGED],
            n: 0,
        }
    }

    fn ranges(&self) -> &[(u64, u64)] {
        &self.ranges[..self.n]
    }

    /// Copies `m` below the previous copies; its new start, or None when it does not fit.
    fn copy(&mut self, mem: &VmMem, m: &Module) -> Option<u64> {
        if self.n == MAX_STAGED {
            return None;
        }
        let size = m.size.next_multiple_of(0x1000);
        let dest = loop {
            let d = self.top.checked_sub(size)? & !0xFFF;
            if let Some(o) = self
                .bi
                .modules()
                .iter()
                .find(|o| overlaps(d, size, o.start, o.size))
            {
                self.top = o.start;
                continue;
            }
            if mem.hpa(d, size) != Some(d) {
                // Not RAM of the Service VM (a hole): continue below the hole's start.
                self.top = mem
                    .0
                    .iter()
                    .filter(|r| r.gpa == r.hpa && r.gpa + r.size <= d + size && r.gpa < d)
                    .map(|r| r.gpa + r.size)
                    .max()
                    .unwrap_or(0);
                continue;
            }
            break d;
        };
        if dest < 0x10_0000 {
            return None;
        }
        // SAFETY: source: a boot module the loader placed in RAM below 4 GiB; destination: RAM
        // of the Service VM (not yet running), identity-mapped; they do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(m.start as *const u8, dest as *mut u8, m.size as usize)
        };
        self.top = dest;
        self.ranges[self.n] = (dest, m.size);
        self.n += 1;
        Some(dest)
    }
}

/// The boot modules the hypervisor does not use itself (not a kernel or ramdisk of a VM it
/// boots), staged for the Service VM's multiboot1 module list. A module that does not fit is
/// logged and left out.
fn service_modules<'a>(
    p: &PlatformConfig,
    mem: &VmMem,
    bi: &'a BootInfo,
    staged: &mut Staging,
    out: &mut [Mb1Module<'a>; loader::MAX_MB1_MODULES],
) -> usize {
    let used = |tag: &str| {
        p.vms
            .iter()
            .filter(|v| v.load_order != LoadOrder::PostLaunched)
            .filter_map(|v| v.os.as_ref())
            .any(|o| o.kern_mod == tag || o.ramdisk_mod == Some(tag))
    };
    let mut n = 0;
    for m in bi.modules().iter().filter(|m| !used(m.tag())) {
        if n == out.len() {
            hvlog!(
                "more than {} boot modules for the Service VM; the rest are not passed on",
                out.len()
            );
            break;
        }
        let Some(dest) = staged.copy(mem, m) else {
            hvlog!(
                "boot module {:?} ({:#x} bytes) does not fit in the Service VM's RAM; not passed on",
                m.tag(),
                m.size
            );
            continue;
        };
        out[n] = Mb1Module {
            start: dest as u32,
            end: (dest + m.size) as u32,
            string: m.tag(),
        };
        n += 1;
    }
    n
}

/// The VM's second-level table: exactly its RAM regions and, for the platform VM, the IOAPIC page
/// (uncached); everything else (the LAPIC included) faults and is emulated or stops the VM.
fn map_all<F: crate::paging::EntryFormat>(
    cfg: &VmConfig,
    ioapic_page: Option<u64>,
    hpet: bool,
) -> Result<u64, BuildError> {
    let mut pt = PageTable::<F>::new(&mut Frames).map_err(|_| BuildError::Memory)?;
    for r in cfg.memory {
        pt.map(
            &mut Frames,
            r.gpa,
            r.hpa,
            r.size,
            Perm::RWX,
            MemType::WriteBack,
        )
        .map_err(|_| BuildError::Memory)?;
    }
    let rw = Perm {
        read: true,
        write: true,
        exec: false,
    };
    for pa in ioapic_page.into_iter().chain(hpet.then_some(HPET_PAGE)) {
        pt.map(&mut Frames, pa, pa, 0x1000, rw, MemType::Uncached)
            .map_err(|_| BuildError::Memory)?;
    }
    Ok(pt.root())
}

/// Port ranges `vm` accesses without exits: the legacy devices if it owns them, and for every VM
/// the PM timer (a read-only counter, which guests calibrate the TSC against).
fn direct_ports(vm: &Vm) -> impl Iterator<Item = (u16, u16)> {
    let legacy: &[(u16, u16)] = if vm.platform_devices {
        &LEGACY_PORTS
    } else {
        &[]
    };
    let pm = crate::hv::pm_timer().map(|t| (t.port, 4));
    legacy.iter().copied().chain(pm)
}

/// Runs the vCPU pinned to pCPU `pcpu`, forever.
pub fn pcpu_loop(pcpu: usize) -> ! {
    let found = VMS.iter().filter_map(|s| s.get()).find_map(|vm| {
        vm.cfg.pcpus.contains(pcpu as u16).then(|| {
            let idx = (0..pcpu as u16)
                .filter(|&c| vm.cfg.pcpus.contains(c))
                .count();
            (vm, idx)
        })
    });
    let Some((vm, idx)) = found else {
        x86::halt_forever()
    };
    let Some(&backend) = BACKEND.get() else {
        x86::halt_forever()
    };
    match backend {
        Backend::Svm(caps) => {
            let host = svm::enable_this_cpu(frames::alloc);
            let vmcb = frames::alloc(1);
            match (host, vmcb) {
                (Ok(host), Some(vmcb)) => {
                    let mut v = SvmVcpu::new(vmcb, host, vm.root, vm.cfg.id as u32 + 1, caps);
                    if vm.cfg.load_order == LoadOrder::Service && idx != 0 {
                        crate::postvm::run::register_svm_host(pcpu, host, caps);
                    }
                    for (base, n) in direct_ports(vm) {
                        if v.allow_io(base, n, frames::alloc).is_err() {
                            stop(
                                vm,
                                format_args!("pCPU {pcpu}: out of memory for its I/O map"),
                            );
                            x86::halt_forever();
                        }
                    }
                    run_vcpu(vm, idx, pcpu, v)
                }
                (Err(e), _) => stop(vm, format_args!("pCPU {pcpu}: {e}")),
                (_, None) => stop(vm, format_args!("pCPU {pcpu}: out of memory for its VMCB")),
            }
        }
        Backend::Vmx => match vmx::enable_on_this_cpu()
            .and_then(|_| VmxVcpu::new(vmx::eptp(vm.root), vm.cfg.id + 1))
        {
            Ok(mut v) => {
                if vm.cfg.load_order == LoadOrder::Service && idx != 0 {
                    crate::postvm::run::register_vmx_host(pcpu);
                }
                for (base, n) in direct_ports(vm) {
                    v.allow_io(base, n);
                }
                run_vcpu(vm, idx, pcpu, v)
            }
            Err(e) => stop(vm, format_args!("pCPU {pcpu}: VMX: {e:?}")),
        },
    }
    x86::halt_forever()
}

fn describe_memory(cfg: &VmConfig) -> impl fmt::Display + '_ {
    struct D<'a>(&'a VmConfig);
    impl fmt::Display for D<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} MiB [", self.0.host_memory() >> 20)?;
            for (i, r) in self.0.memory.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                write!(
                    f,
                    "{sep}GPA {:#x} -> HPA {:#x}..{:#x}",
                    r.gpa,
                    r.hpa,
                    r.hpa + r.size
                )?;
            }
            f.write_str("]")
        }
    }
    D(cfg)
}

fn describe_pcpus(cfg: &VmConfig) -> impl fmt::Display + '_ {
    struct D<'a>(&'a VmConfig);
    impl fmt::Display for D<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut first = true;
            for c in (0..64).filter(|&c| self.0.pcpus.contains(c)) {
                write!(f, "{}{c}", if first { "" } else { "," })?;
                first = false;
            }
            Ok(())
        }
    }
    D(cfg)
}

fn real_mode_state(vector: u8) -> InitialState {
    let cs = Segment {
        selector: (vector as u16) << 8,
        base: (vector as u64) << 12,
        limit: 0xFFFF,
        access: 0x9B,
    };
    InitialState {
        cr0: 0x10,
        gdtr_limit: 0xFFFF,
        ..InitialState::with_segments(cs, Segment::real_mode_data(0))
    }
}

/// Parks the calling pCPU until the VM stops (it then halts for good). Meanwhile a pCPU of the
/// Service VM runs the post-launched vCPUs pinned to it.
fn park(vm: &Vm, pcpu: usize) -> ! {
    while !vm.stopped.load(Ordering::Acquire) {
        crate::postvm::run::serve_until(pcpu, &|| vm.stopped.load(Ordering::Acquire));
        x86::delay_us(1000);
    }
    x86::halt_forever()
}

enum Next {
    Continue,
    /// The vCPU halted with interrupts disabled: nothing can wake it.
    Halted,
    Stopped,
}

fn run_vcpu<V: Vcpu>(vm: &Vm, idx: usize, pcpu: usize, mut v: V) {
    if idx == 0 {
        hvlog!(
            "VM {} {} starting: pCPUs {}, memory {}, kernel {:?} entry {:#x}",
            vm.cfg.id,
            vm.cfg.name,
            describe_pcpus(vm.cfg),
            describe_memory(vm.cfg),
            vm.kernel,
            vm.boot.rip
        );
        v.set_initial_state(&vm.boot);
    } else {
        // Application processors wait for INIT/SIPI from the VM's own BSP.
        let vector = loop {
            if vm.stopped.load(Ordering::Acquire) {
                x86::halt_forever();
            }
            let s = vm.sipi[idx].load(Ordering::Acquire);
            if s & SIPI_PENDING != 0 {
                break s as u8;
            }
            // Meanwhile the pCPU runs the post-launched vCPUs pinned here (Service VM only).
            crate::postvm::run::serve_until(pcpu, &|| {
                vm.stopped.load(Ordering::Acquire)
                    || vm.sipi[idx].load(Ordering::Acquire) & SIPI_PENDING != 0
            });
            x86::pause();
        };
        v.set_initial_state(&real_mode_state(vector));
    }
    let mem = VmMem(vm.cfg.memory);
    loop {
        if vm.stopped.load(Ordering::Acquire) {
            return;
        }
        let exit = v.run();
        match handle_exit(vm, idx, pcpu, &mem, &mut v, exit) {
            Next::Continue => {}
            Next::Halted => park(vm, pcpu),
            Next::Stopped => return,
        }
    }
}

/// Length of the instruction at the guest's RIP: from the CPU if it reports it, else decoded.
fn insn_len<V: Vcpu>(v: &V, mem: &VmMem) -> Option<u8> {
    v.exit_instruction_len()
        .or_else(|| fetch_decode(v, mem).map(|i| i.len))
}

pub(crate) fn cpu_mode<V: Vcpu>(v: &V) -> CpuMode {
    let (cr0, _, _, efer) = v.paging_state();
    let cs = v.code_segment();
    if efer & (1 << 10) != 0 && cs.access & (1 << 13) != 0 {
        CpuMode::Long64
    } else if cr0 & 1 == 0 {
        CpuMode::Real16
    } else if cs.access & (1 << 14) != 0 {
        CpuMode::Prot32
    } else {
        CpuMode::Prot16
    }
}

fn fetch_decode<V: Vcpu>(v: &V, mem: &VmMem) -> Option<decode::Insn> {
    let (bytes, n) = fetch(v, mem);
    decode::decode(&bytes[..n], cpu_mode(v)).ok()
}

/// Up to 15 bytes at the guest's RIP (fewer where its mapping ends) and how many were read.
fn fetch<V: Vcpu>(v: &V, mem: &VmMem) -> ([u8; 15], usize) {
    let mode = cpu_mode(v);
    let (cr0, cr3, cr4, efer) = v.paging_state();
    let la = match mode {
        CpuMode::Long64 => v.rip(),
        _ => v.code_segment().base.wrapping_add(v.rip()) & 0xFFFF_FFFF,
    };
    let mut bytes = [0u8; 15];
    let mut n = 0;
    while n < bytes.len() {
        let Some(gpa) = gwalk::translate(mem, cr0, cr3, cr4, efer, la.wrapping_add(n as u64))
        else {
            break;
        };
        let Some(hpa) = mem.hpa(gpa, 1) else { break };
        // SAFETY: a byte of this VM's RAM.
        bytes[n] = unsafe { core::ptr::read_volatile(hpa as *const u8) };
        n += 1;
    }
    (bytes, n)
}

/// A VM's memory by guest linear address, through the guest's page tables.
struct GuestLinear<'a> {
    mem: &'a VmMem,
    paging: (u64, u64, u64, u64),
}

impl GuestLinear<'_> {
    fn hpa(&self, la: u64) -> Option<u64> {
        let (cr0, cr3, cr4, efer) = self.paging;
        let gpa = gwalk::translate(self.mem, cr0, cr3, cr4, efer, la)?;
        self.mem.hpa(gpa, 1)
    }
}

impl string_io::LinearMem for GuestLinear<'_> {
    fn read(&self, la: u64, buf: &mut [u8]) -> bool {
        for (i, b) in buf.iter_mut().enumerate() {
            let Some(hpa) = self.hpa(la.wrapping_add(i as u64)) else {
                return false;
            };
            // SAFETY: a byte of this VM's RAM.
            *b = unsafe { core::ptr::read_volatile(hpa as *const u8) };
        }
        true
    }
    fn write(&mut self, la: u64, data: &[u8]) -> bool {
        // Translate every byte first so a fault leaves memory untouched.
        let mut hpas = [0u64; 4];
        for (i, h) in hpas.iter_mut().enumerate().take(data.len()) {
            match self.hpa(la.wrapping_add(i as u64)) {
                Some(x) => *h = x,
                None => return false,
            }
        }
        for (&b, &hpa) in data.iter().zip(&hpas) {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(hpa as *mut u8, b) };
        }
        true
    }
}

/// Emulates INS/OUTS (REP included) against the VM's port handlers.
fn string_io<V: Vcpu>(
    vm: &Vm,
    mem: &VmMem,
    v: &mut V,
    port: u16,
    size: u8,
    dir: IoDirection,
    rep: bool,
) -> Result<string_io::Outcome, &'static str> {
    let mode = cpu_mode(v);
    let (bytes, n) = fetch(v, mem);
    let pre = string_io::scan_prefixes(&bytes[..n], mode).ok_or("instruction not decodable")?;
    let long_mode = mode == CpuMode::Long64;
    let seg_base = match pre.seg {
        // Long mode ignores the bases of ES, CS, SS and DS.
        string_io::SegReg::Fs | string_io::SegReg::Gs => v.segment_base(pre.seg),
        _ if long_mode => Some(0),
        s => v.segment_base(s),
    }
    .ok_or("segment base not available")?;
    let op = string_io::StringOp {
        size,
        dir,
        rep,
        addr_size: pre.addr_size,
        seg_base,
        df: v.rflags() & (1 << 10) != 0,
        long_mode,
    };
    let mut lin = GuestLinear {
        mem,
        paging: v.paging_state(),
    };
    string_io::execute(&op, v.regs_mut(), &mut lin, |d, data| {
        let mut scratch = GuestRegs::default();
        io_access(vm, port, size, d, data, &mut scratch);
        scratch.rax as u32
    })
    .map_err(|_| "guest memory not mapped")
}

fn handle_exit<V: Vcpu>(
    vm: &Vm,
    idx: usize,
    pcpu: usize,
    mem: &VmMem,
    v: &mut V,
    exit: VmExit,
) -> Next {
    let name = vm.cfg.name;
    let id = vm.cfg.id;
    let skip = |v: &mut V| -> bool {
        match insn_len(v, mem) {
            Some(l) => {
                v.advance_rip(l);
                true
            }
            None => false,
        }
    };
    macro_rules! stop_vm {
        ($($t:tt)*) => {{
            stop(vm, format_args!($($t)*));
            return Next::Stopped;
        }};
    }
    match exit {
        VmExit::Io {
            port,
            size,
            dir,
            data,
        } => {
            let len = insn_len(v, mem);
            io_access(vm, port, size, dir, data, v.regs_mut());
            match len {
                Some(l) => v.advance_rip(l),
                None => stop_vm!(
                    "cannot decode the port I/O instruction at RIP {:#x}",
                    v.rip()
                ),
            }
        }
        VmExit::IoString {
            port,
            size,
            dir,
            rep,
        } => match string_io(vm, mem, v, port, size, dir, rep) {
            Ok(string_io::Outcome::Again) => {}
            Ok(string_io::Outcome::Done) => {
                if !skip(v) {
                    stop_vm!(
                        "cannot decode the string I/O instruction at RIP {:#x}",
                        v.rip()
                    );
                }
            }
            Err(why) => stop_vm!(
                "vCPU {idx}: string I/O on port {port:#x} at RIP {:#x} not emulated: {why}",
                v.rip()
            ),
        },
        VmExit::Cpuid { leaf, subleaf } => {
            let r = emulate_cpuid(
                vm.cfg.pcpus.count(),
                vm.cfg.load_order == LoadOrder::Service,
                idx,
                leaf,
                subleaf,
            );
            let g = v.regs_mut();
            (g.rax, g.rbx, g.rcx, g.rdx) = (r[0] as u64, r[1] as u64, r[2] as u64, r[3] as u64);
            if !skip(v) {
                stop_vm!("cannot decode CPUID at RIP {:#x}", v.rip());
            }
        }
        VmExit::MsrRead { msr } => match read_msr(idx, msr) {
            Some(val) => {
                let g = v.regs_mut();
                g.rax = val & 0xFFFF_FFFF;
                g.rdx = val >> 32;
                if !skip(v) {
                    stop_vm!("cannot decode RDMSR at RIP {:#x}", v.rip());
                }
            }
            None => v.inject(Injection::Exception {
                vector: 13,
                error_code: Some(0),
            }),
        },
        VmExit::MsrWrite { msr, value } => {
            if write_msr_ok(msr, value) {
                if !skip(v) {
                    stop_vm!("cannot decode WRMSR at RIP {:#x}", v.rip());
                }
            } else {
                v.inject(Injection::Exception {
                    vector: 13,
                    error_code: Some(0),
                });
            }
        }
        VmExit::Hypercall => {
            let cpl = (v.code_segment().selector & 3) as u8;
            let r = v.regs();
            match crate::hypercall::runtime::handle(id, cpl, r.r8, r.rdi, r.rsi) {
                crate::hypercall::Outcome::Return(ret) => {
                    v.regs_mut().rax = ret as u64;
                    if !skip(v) {
                        stop_vm!(
                            "cannot decode the hypercall instruction at RIP {:#x}",
                            v.rip()
                        );
                    }
                }
                crate::hypercall::Outcome::InjectUd => v.inject(Injection::Exception {
                    vector: 6,
                    error_code: None,
                }),
                crate::hypercall::Outcome::InjectGp => v.inject(Injection::Exception {
                    vector: 13,
                    error_code: Some(0),
                }),
            }
        }
        VmExit::Halt => {
            if !skip(v) {
                stop_vm!("cannot decode HLT at RIP {:#x}", v.rip());
            }
            if v.rflags() & (1 << 9) == 0 {
                hvlog!("VM {id} {name}: vCPU {idx} (pCPU {pcpu}) halted with interrupts disabled");
                return Next::Halted;
            }
        }
        VmExit::Shutdown => stop_vm!(
            "triple fault (shutdown) on vCPU {idx} at RIP {:#x}",
            v.rip()
        ),
        VmExit::Mmio { gpa, access } if gpa & !0xFFF == LAPIC_GPA => {
            if let Err(why) = lapic_access(vm, idx, mem, v, gpa) {
                stop_vm!("vCPU {idx}: local APIC access at GPA {gpa:#x} ({access:?}) not emulated: {why}");
            }
        }
        VmExit::Mmio { gpa, access } => {
            stop_vm!(
                "vCPU {idx}: {access:?} access outside its memory at GPA {gpa:#x} (RIP {:#x})",
                v.rip()
            )
        }
        VmExit::Init
        | VmExit::Sipi { .. }
        | VmExit::ExternalInterrupt
        | VmExit::InterruptWindow => {}
        VmExit::Exception { vector, error_code } => {
            stop_vm!(
                "vCPU {idx}: exception {vector} (error {error_code:?}) at RIP {:#x}",
                v.rip()
            )
        }
        VmExit::CrAccess { cr, write } => {
            stop_vm!(
                "vCPU {idx}: CR{cr} {} not handled",
                if write { "write" } else { "read" }
            )
        }
        VmExit::Unhandled {
            raw_reason,
            qualification,
        } => {
            stop_vm!(
                "vCPU {idx}: unhandled exit {raw_reason:#x} (qualification {qualification:#x}) at RIP {:#x}",
                v.rip()
            )
        }
        VmExit::EntryFailure { raw_reason } => {
            stop_vm!("vCPU {idx}: VM entry failed (invalid guest state, reason {raw_reason:#x})")
        }
    }
    Next::Continue
}

fn io_access(vm: &Vm, port: u16, size: u8, dir: IoDirection, data: u32, regs: &mut GuestRegs) {
    let console = match vm.cfg.console {
        ConsoleVuart::Legacy { port, .. } => Some(port),
        _ => None,
    };
    let mask: u64 = match size {
        1 => 0xFF,
        2 => 0xFFFF,
        _ => 0xFFFF_FFFF,
    };
    match (console, dir) {
        (Some(base), IoDirection::Out) if (base..base + 8).contains(&port) => {
            let mut u = vm.vuart.lock();
            if let Some(line) = u.write(port - base, data as u8) {
                prefix_line(vm, line);
            }
        }
        (Some(base), IoDirection::In) if (base..base + 8).contains(&port) => {
            let val = vm.vuart.lock().read(port - base) as u64;
            regs.rax = (regs.rax & !mask) | val;
        }
        // No device: reads float high, writes are dropped.
        (_, IoDirection::In) => regs.rax |= mask,
        (_, IoDirection::Out) => {}
    }
}

/// CPUID EDX bits MCE (7) and MCA (14), in leaves 1 and 0x80000001.
const MACHINE_CHECK: u32 = 1 << 7 | 1 << 14;

/// CPUID as a VM of `ncpu` vCPUs sees it on vCPU `idx`; `privileged` for the Service VM.
pub(crate) fn emulate_cpuid(
    ncpu: u32,
    privileged: bool,
    idx: usize,
    leaf: u32,
    sub: u32,
) -> [u32; 4] {
    match leaf {
        // ACRN's hypervisor leaves: signature "ACRNACRNACRN", max leaf 0x40000010.
        ACRN_CPUID_SIGNATURE => [
            ACRN_CPUID_MAX_LEAF,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
        ],
        // Guest capabilities: only the Service VM is privileged.
        0x4000_0001 => [
            if privileged {
                acrn_abi::cpuid::AcrnCpuidFeatures::PRIVILEGED_VM.bits()
            } else {
                0
            },
            0,
            0,
            0,
        ],
        // ACRN_CPUID_TIMING_INFO: the TSC frequency in kHz (guests run on the host TSC).
        ACRN_CPUID_TIMING_INFO => [crate::tsc::khz(), 0, 0, 0],
        0x4000_0002..=0x4000_00FF => [0; 4],
        _ => {
            let mut r = cpuid(leaf, sub);
            match leaf {
                1 => {
                    r[1] = (r[1] & 0x0000_FFFF) | (ncpu << 16) | ((idx as u32) << 24);
                    // Hide VMX, MONITOR/MWAIT and x2APIC; announce a hypervisor.
                    r[2] = (r[2] & !(1 << 5 | 1 << 3 | 1 << 21)) | 1 << 31;
                    // Hide machine check (MCE, MCA): its MSRs are not virtualized.
                    r[3] &= !MACHINE_CHECK;
                }
                0xB | 0x1F => r[3] = idx as u32,
                0x8000_0001 => {
                    r[2] &= !(1 << 2); // SVM
                    r[3] &= !MACHINE_CHECK; // AMD mirrors MCE/MCA here
                }
                0x8000_000A => r = [0; 4],
                _ => {}
            }
            r
        }
    }
}

pub(crate) fn read_msr(idx: usize, msr: u32) -> Option<u64> {
    Some(match msr {
        0x1B => LAPIC_GPA | 1 << 11 | if idx == 0 { 1 << 8 } else { 0 },
        // SAFETY: rdtsc has no side effects.
        0x10 => unsafe { core::arch::x86_64::_rdtsc() },
        0xFE => 0,         // MTRRcap: no variable ranges
        0x2FF => 0xC06,    // MTRRdefType: enabled, write-back
        0x8B | 0x1A0 => 0, // microcode revision, MISC_ENABLE
        // AMD NB_CFG: Linux reads it unguarded (to enable extended PCI config access).
        0xC001_001F => 0,
        _ => return None,
    })
}

pub(crate) fn write_msr_ok(msr: u32, value: u64) -> bool {
    match msr {
        // The APIC stays an xAPIC at its default base.
        0x1B => value & 0xFFFF_F000 == LAPIC_GPA && value & (1 << 10) == 0,
        0x10 | 0x8B | 0x2FF | 0x200..=0x27F | 0xC001_001F => true, // ignored
        _ => false,
    }
}

/// A local APIC register access: ID, LDR/DFR and the ICR are virtual (IPIs reach only this
/// VM's vCPUs, INIT/SIPI start them); the rest goes to this pCPU's physical LAPIC, which belongs
/// to the VM pinned here.
fn lapic_access<V: Vcpu>(
    vm: &Vm,
    idx: usize,
    mem: &VmMem,
    v: &mut V,
    gpa: u64,
) -> Result<(), &'static str> {
    let insn = fetch_decode(v, mem).ok_or("instruction not decodable")?;
    let off = gpa & 0xFF0;
    match insn.op {
        Op::StoreReg {
            size,
            reg,
            high_byte,
        } => {
            let val = v.regs().operand(reg, high_byte).ok_or("RSP as source")?;
            if size != 4 {
                return Err("APIC registers are 32-bit");
            }
            lapic_write(vm, idx, off, val as u32);
        }
        Op::StoreImm { size: 4, imm } => lapic_write(vm, idx, off, imm as u32),
        Op::Load {
            size: 4,
            reg,
            zero_extend_to: None,
            ..
        } => {
            let val = lapic_read(vm, idx, off) as u64;
            let slot = v.regs_mut().gpr_mut(reg).ok_or("RSP as destination")?;
            *slot = val; // a 32-bit load zero-extends
        }
        Op::Alu { size: 4, kind, src } => {
            let src = match src {
                AluSrc::Imm(imm) => imm,
                AluSrc::Reg { reg, high_byte } => {
                    v.regs().operand(reg, high_byte).ok_or("RSP as source")?
                }
            };
            let old = lapic_read(vm, idx, off) as u64;
            let (result, rflags) = decode::alu(kind, 4, old, src, v.rflags());
            if kind.writes_back() {
                lapic_write(vm, idx, off, result as u32);
            }
            v.set_rflags(rflags);
        }
        Op::BitTest { size: 4, bit } => {
            let value = lapic_read(vm, idx, off) as u64;
            let rflags = decode::bit_test(4, value, bit, v.rflags());
            v.set_rflags(rflags);
        }
        _ => return Err("not a 32-bit MOV, ALU or BT access"),
    }
    v.advance_rip(insn.len);
    Ok(())
}

static ICR_HIGH: [AtomicU32; MAX_VCPUS * MAX_VMS] =
    [const { AtomicU32::new(0) }; MAX_VCPUS * MAX_VMS];
static ICR_LOW: [AtomicU32; MAX_VCPUS * MAX_VMS] =
    [const { AtomicU32::new(0) }; MAX_VCPUS * MAX_VMS];

fn icr_slot(vm: &Vm, idx: usize) -> usize {
    (vm.cfg.id as usize % MAX_VMS) * MAX_VCPUS + idx
}

fn lapic_read(vm: &Vm, idx: usize, off: u64) -> u32 {
    match off {
        0x20 => (idx as u32) << 24,
        0xD0 => vm.ldr[idx].load(Ordering::Relaxed),
        0xE0 => 0xFFFF_FFFF,
        0x300 => ICR_LOW[icr_slot(vm, idx)].load(Ordering::Relaxed) & !(1 << 12),
        0x310 => ICR_HIGH[icr_slot(vm, idx)].load(Ordering::Relaxed),
        _ => phys_read32(lapic::base() + off),
    }
}

fn lapic_write(vm: &Vm, idx: usize, off: u64, val: u32) {
    match off {
        0x20 => {}
        0xD0 | 0xE0 if vm.platform_devices => {
            // The IOAPIC may deliver in logical mode: the physical LDR/DFR must match.
            if off == 0xD0 {
                vm.ldr[idx].store(val, Ordering::Relaxed);
            }
            phys_write32(lapic::base() + off, val);
        }
        0xD0 => vm.ldr[idx].store(val, Ordering::Relaxed),
        0xE0 => {}
        0x310 => ICR_HIGH[icr_slot(vm, idx)].store(val, Ordering::Relaxed),
        0x300 => {
            ICR_LOW[icr_slot(vm, idx)].store(val, Ordering::Relaxed);
            send_ipi(
                vm,
                idx,
                val,
                ICR_HIGH[icr_slot(vm, idx)].load(Ordering::Relaxed),
            );
        }
        _ => phys_write32(lapic::base() + off, val),
    }
}

fn send_ipi(vm: &Vm, idx: usize, lo: u32, hi: u32) {
    let n = vm.cfg.pcpus.count() as usize;
    let dest = hi >> 24;
    let targets = (0..n).filter(|&t| match (lo >> 18) & 3 {
        0 if lo & (1 << 11) != 0 => vm.ldr[t].load(Ordering::Relaxed) >> 24 & dest != 0,
        0 => t as u32 == dest || dest == 0xFF,
        1 => t == idx,
        2 => true,
        _ => t != idx,
    });
    let vector = lo & 0xFF;
    let pcpus = crate::hv::platform().board.pcpus;
    for t in targets {
        match (lo >> 8) & 7 {
            // INIT (assert only): the target waits for SIPI; a running vCPU is not reset.
            5 if lo & (1 << 14) != 0 || lo & (1 << 15) == 0 => {}
            6 => {
                let _ = vm.sipi[t].compare_exchange(
                    0,
                    SIPI_PENDING | vector,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
            }
            0 | 1 => {
                // Fixed IPI to another vCPU: a physical IPI to the pCPU it is pinned to.
                let pcpu = (0..64u16).filter(|&c| vm.cfg.pcpus.contains(c)).nth(t);
                if let Some(p) = pcpu.and_then(|c| pcpus.get(c as usize)) {
                    let b = lapic::base();
                    phys_write32(b + 0x310, p.apic_id << 24);
                    phys_write32(b + 0x300, vector);
                }
            }
            _ => {} // NMI, SMI and the rest are not forwarded
        }
    }
    let _ = AccessKind::Read;
}
