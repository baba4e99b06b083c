//! Builds the VMs the static tables describe (pre-launched VMs and the Service VM) into the
//! VM table: their NPT/EPT over exactly their memory, the kernel loaded per ACRN's boot
//! contract, guest ACPI tables and e820. A VM that cannot be built is reported and left out;
//! the others go on.

use super::memory::VmMemory;
use super::{vm as vm_slot, VmInfo};
use crate::arch::svm;
use crate::arch::vmx;
use crate::arch::x86;
use crate::bootinfo::{BootInfo, Module};
use crate::hv::frames::{self, Frames};
use crate::hvlog;
use crate::paging::{Ept, MemType, Npt, PageTable, Perm};
use crate::vcpu::run::{self, Backend};
use crate::vm::acpi;
use crate::vm::loader::{self, E820Entry, Guarded, GuestMem, LoadError, Mb1Module, MAX_E820};
use acrn_static_config::{
    ConsoleVuart, GuestFlags, GuestMemRegion, KernelType, LoadOrder, PlatformConfig, VmConfig,
    VuartKind,
};
use core::fmt;

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
    run::set_backend(backend);

    crate::hypercall::runtime::init(p, matches!(backend, Backend::Svm(_)));
    for cfg in p.vms {
        report_unenforced(cfg);
    }
    crate::hv::iommu::prepare(p);
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
        let Some(vm) = vm_slot(cfg.id).filter(|_| slot == cfg.id as usize) else {
            hvlog!(
                "VM {} {}: its id is not its place in the table, or above {}; skipped",
                cfg.id,
                cfg.name,
                super::MAX_VMS
            );
            continue;
        };
        match build_vm(p, cfg, bi, backend) {
            Ok(built) => {
                let npt = matches!(backend, Backend::Svm(_));
                vm.setup(
                    VmInfo {
                        name: cfg.name,
                        load_order: cfg.load_order,
                        cfg: Some(cfg),
                        flags: cfg.guest_flags.0,
                    },
                    built.root,
                    npt,
                    cfg.pcpus.0,
                );
                if cfg.load_order == LoadOrder::Service {
                    crate::hv::iommu::confine_service(built.root, npt, cfg.id);
                }
                *vm.vcpus[0].start.lock() = Some(built.boot);
                hvlog!(
                    "VM {} {} starting: pCPUs {}, memory {}, kernel {:?} entry {:#x}",
                    cfg.id,
                    cfg.name,
                    describe_pcpus(cfg),
                    describe_memory(cfg),
                    built.kernel,
                    built.boot.rip
                );
                vm.start(None);
            }
            Err(e) => hvlog!("VM {} {} not started: {}", cfg.id, cfg.name, e),
        }
    }
}

/// Says at boot what the VM's scenario entry asks for that this hypervisor does not enforce
/// yet (the configurator's `build` warns about the same).
fn report_unenforced(cfg: &VmConfig) {
    let say = |element: &str, what: &str| {
        hvlog!(
            "VM {} {}: <{element}> is not enforced yet: {what}",
            cfg.id,
            cfg.name
        )
    };
    if cfg.vuarts.len() > crate::devices::MAX_VUART_LINKS {
        say(
            "vuart_connection",
            "the VM gets only its first 7 VM-to-VM vUARTs",
        );
    }
    // A pre-launched VM's functions are described as its vPCI takes them (with whether an
    // IOMMU confines their DMA), a post-launched VM's as the Service VM assigns them.
    if !cfg.pt_intx.is_empty() && cfg.load_order != LoadOrder::PreLaunched {
        say(
            "pt_intx",
            "only pre-launched VMs' INTx lines are routed (as in ACRN)",
        );
    }
}

/// A VM gets its pCPUs' local APICs (ACRN's `lapic_passthrough`) only in x2APIC mode, and
/// only on pCPUs no other VM may use: nothing of the hypervisor's runs there.
fn lapic_pt_allowed(p: &PlatformConfig, cfg: &VmConfig) -> Result<(), BuildError> {
    if cfg.load_order == LoadOrder::Service {
        return Err(BuildError::Config(
            "lapic_passthrough of the Service VM is not supported (ACRN needs nested \
             virtualization for it)",
        ));
    }
    if !x86::lapic::x2apic() {
        return Err(BuildError::Config(
            "lapic_passthrough needs the local APICs in x2APIC mode, and this CPU has no \
             x2APIC (CPUID.1:ECX bit 21)",
        ));
    }
    if p.vms
        .iter()
        .any(|o| o.id != cfg.id && o.pcpus.0 & cfg.pcpus.0 != 0)
    {
        return Err(BuildError::Config(
            "lapic_passthrough needs pCPUs of its own, and another VM's cpu_affinity shares one",
        ));
    }
    Ok(())
}

/// What building a static VM produced.
struct Built {
    root: u64,
    boot: crate::vcpu::InitialState,
    kernel: KernelType,
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

/// The windows of a pre-launched VM's virtual host bridge, inclusive.
const PRE_LAUNCHED_BAR_WINDOWS: [(u64, u64); 2] = {
    use crate::devices::pci::{BAR_WINDOW_HIGH as HIGH, BAR_WINDOW_LOW as LOW};
    [(LOW.0, LOW.1 - 1), (HIGH.0, HIGH.1 - 1)]
};

fn build_vm(
    p: &PlatformConfig,
    cfg: &'static VmConfig,
    bi: &BootInfo,
    backend: Backend,
) -> Result<Built, BuildError> {
    let n = cfg.pcpus.count() as usize;
    if n == 0
        || n > super::MAX_VCPUS
        || (0..64).any(|c| cfg.pcpus.contains(c) && c as usize >= p.board.pcpus.len())
    {
        return Err(BuildError::Config("its pCPUs are not all on the board"));
    }
    if cfg.guest_flags.0 & GuestFlags::LAPIC_PASSTHROUGH != 0 {
        lapic_pt_allowed(p, cfg)?;
    }
    if cfg.memory.is_empty() || cfg.memory[0].gpa != 0 {
        return Err(BuildError::Config(
            "pre-launched VM memory must start at GPA 0",
        ));
    }
    for r in cfg.memory {
        if (r.gpa | r.hpa | r.size) & 0xFFF != 0 {
            return Err(BuildError::Config("memory regions must be 4 KiB aligned"));
        }
        if r.hpa.saturating_add(r.size) > crate::arch::x86::identity::reach() {
            return Err(BuildError::Config(
                "memory lies beyond the physical memory the hypervisor maps",
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
    let mem = Regions(cfg.memory);
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

    let (root, npt) = match backend {
        Backend::Svm(_) => (map_all::<Npt>(cfg)?, true),
        Backend::Vmx => (map_all::<Ept>(cfg)?, false),
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

    let mut link_uarts = [None; acpi::MAX_LINK_UARTS];
    let legacy_links = cfg.vuarts.iter().filter_map(|l| match l.kind {
        VuartKind::Legacy { port, irq } => Some((port, irq)),
        VuartKind::Pci { .. } => None,
    });
    for (slot, link) in link_uarts.iter_mut().zip(legacy_links) {
        *slot = Some(link);
    }
    let mut tables = [0u8; acpi::GUEST_TABLES_SIZE];
    // A pre-launched VM's pass-through functions interrupt by INTx where `pt_intx` gives it
    // the line their pin arrives on; Linux finds the route in the DSDT's `_PRT`.
    let mut routes = [acpi::IntxRoute {
        device: 0,
        pin: 0,
        gsi: 0,
    }; acpi::MAX_INTX_ROUTES];
    let nroutes = match (cfg.load_order, p.board.pci_root) {
        (LoadOrder::PreLaunched, Some(root)) => acpi::passthrough_routes(
            cfg.pci_devs,
            |b| {
                use crate::devices::pci::msi::PhysConfig;
                (crate::devices::physical::HostFunction(b).read32(0x3C) >> 8) as u8
            },
            root.intx_routes,
            cfg.pt_intx,
            &mut routes,
        ),
        _ => 0,
    };
    // Every VM has its virtual IOAPIC at the usual address and no HPET (the hypervisor owns
    // the physical one).
    acpi::build_guest_tables(
        &mut tables,
        acpi::GUEST_RSDP_GPA,
        &acpi::GuestPlatform {
            vcpus: n as u32,
            ioapic: Some((0, crate::devices::IOAPIC_GPA as u32)),
            hpet: None,
            pm_timer: crate::hv::pm_timer(),
            // Pre-launched VMs have a virtual PCI bus whose ECAM window the MCFG announces;
            // the Service VM reaches the host's.
            mcfg: match cfg.load_order {
                LoadOrder::PreLaunched => Some(acpi::Ecam {
                    base: crate::devices::pci::ECAM_GPA,
                    start_bus: 0,
                    end_bus: crate::devices::pci::ECAM_BUSES - 1,
                }),
                // Only a window the hypervisor forwards (its buses in order).
                LoadOrder::Service => crate::devices::physical::service_ecam()
                    .and(crate::hv::platform().board.mmcfg)
                    .map(|m| acpi::Ecam {
                        base: m.base,
                        start_bus: m.start_bus,
                        end_bus: m.end_bus,
                    }),
                LoadOrder::PostLaunched => None,
            },
            com: match cfg.console {
                ConsoleVuart::Legacy { port, irq } => Some((port, irq)),
                _ => None,
            },
            link_uarts,
            pci_root: match cfg.load_order {
                // A host bridge whose windows hold the BARs the configurator placed...
                LoadOrder::PreLaunched => Some(acpi::PciRoot {
                    first_bus: 0,
                    last_bus: crate::devices::pci::ECAM_BUSES - 1,
                    mmio: &PRE_LAUNCHED_BAR_WINDOWS,
                    intx_routes: &routes[..nroutes],
                }),
                // ...and the host's, as the board's firmware describes it: its windows and
                // where its devices' INTx pins arrive, which Linux finds nowhere else.
                LoadOrder::Service => p.board.pci_root.map(acpi::PciRoot::from),
                LoadOrder::PostLaunched => None,
            },
        },
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
    let mut mem = VmMemory::new(root, npt);
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
            let keep = mem.keep;
            loader::load_bzimage(
                &mut mem,
                image,
                os.bootargs,
                rd,
                e820,
                keep,
                acpi::GUEST_RSDP_GPA,
            )
        }
    }
    .map_err(BuildError::Load)?;

    Ok(Built {
        root,
        boot,
        kernel: os.kern_type,
    })
}

/// A static VM's memory by its regions, before its table exists (to find room for staging).
struct Regions(&'static [GuestMemRegion]);

impl Regions {
    fn hpa(&self, gpa: u64, len: u64) -> Option<u64> {
        self.0.iter().find_map(|r| {
            let off = gpa.checked_sub(r.gpa)?;
            (off.checked_add(len)? <= r.size).then_some(r.hpa + off)
        })
    }
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
    fn new(mem: &Regions, bi: &'b BootInfo) -> Self {
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
    fn copy(&mut self, mem: &Regions, m: &Module) -> Option<u64> {
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
    mem: &Regions,
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

/// The VM's second-level table: exactly its RAM regions; everything else (its local APIC,
/// IOAPIC and any device) faults and goes to its device bus.
fn map_all<F: crate::paging::EntryFormat>(cfg: &VmConfig) -> Result<u64, BuildError> {
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
    Ok(pt.root())
}

/// Port ranges `vm` accesses without exits: the legacy devices if it owns them, and for every VM
/// the PM timer (a read-only counter, which guests calibrate the TSC against).
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
