//! The reference Service VM (see README.md beside this crate): runs acrn-hsm over
//! `vmcall`/`vmmcall` and a minimal device model that creates, runs, pauses, resets and
//! destroys the post-launched VMs of its launch description, emulating their console UART.
#![no_std]
#![no_main]

extern crate alloc;

mod intx;

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};

use acrn_abi::device::{AcrnVdev, VDEV_ID_IVSHMEM, VDEV_ID_MCS9900};
use acrn_abi::hypercall::{HC_DESTROY_VM, HC_GET_API_VERSION, HC_PAUSE_VM, HC_VM_INTR_MONITOR};
use acrn_abi::irq::{
    AcrnIntrMonitor, AcrnMsiEntry, GsiOp, HcPtdevIntx, HcPtdevIrq, ACRN_PTDEV_IRQ_INTX,
    INTR_CMD_DELAY_INT, INTR_CMD_GET_DATA, MAX_PTDEV_NUM,
};
use acrn_abi::memory::MemAccess;
use acrn_abi::misc::HcApiVersion;
use acrn_abi::vm::{AcrnVmCreation, GuestFlags};
use acrn_abi::AcrnPcidev;
use acrn_hsm::{Hsm, Hypercall, Hypercalls, IoAccess, IoKind, MemKind, MemSegment, Vm, VmConfig};
use acrn_launch::{KernelType, LaunchDescription, LaunchVm, PciAddr, VdevKind, MODULE_TAG};
use guest_common::arch::{cpuid, halt_forever, rdtsc, spin_tsc};
use guest_common::fpu;
use guest_common::mem::GuestMem;
use guest_common::multiboot::{MultibootInfo, E820_RAM};
use guest_common::platform::{identify, Platform};
use guest_common::println;
use guest_common::smp;
use service_vm::fuzz::{self, Rng, Target};
use service_vm::guest;
use service_vm::modules::{self, Module};
use service_vm::ram::RamPool;
use service_vm::uart::Uart;

// ---- heap ---------------------------------------------------------------------------------

/// Heap size: the HSM's VM records and I/O request pages, and copies of the boot modules. Kept
/// small so the image (linked at 1 MiB) ends below 4 MiB, where the qemu-epyc and
/// bochs-tigerlake scenarios put the hypervisor's RAM (a hole in the Service VM's memory).
const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct Arena([u8; HEAP_SIZE]);
static mut ARENA: Arena = Arena([0; HEAP_SIZE]);

/// A bump allocator that takes back only the last block: this kernel runs one short scenario.
/// Running out ends in the panic handler's `verdict: FAIL (panic)`.
struct Bump(AtomicUsize);

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let base = core::ptr::addr_of_mut!(ARENA) as usize;
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let start = (base + cur).next_multiple_of(l.align()) - base;
            let Some(end) = start.checked_add(l.size()).filter(|&e| e <= HEAP_SIZE) else {
                return core::ptr::null_mut();
            };
            match self
                .0
                .compare_exchange_weak(cur, end, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return (base + start) as *mut u8,
                Err(now) => cur = now,
            }
        }
    }
    /// Only the most recent block is given back (the serve loop allocates and frees in stack
    /// order on every poll, which would otherwise exhaust the arena).
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let start = p as usize - core::ptr::addr_of_mut!(ARENA) as usize;
        let _ =
            self.0
                .compare_exchange(start + l.size(), start, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[global_allocator]
static HEAP: Bump = Bump(AtomicUsize::new(0));

// ---- hypercall transport ------------------------------------------------------------------

/// ACRN hypercalls: ID in R8, parameters in RDI/RSI, result in RAX. `VMMCALL` on AMD.
struct Acrn {
    amd: bool,
}

// SAFETY: the Service VM is identity-mapped, so the default `gpa_of` (pointer value) is right.
unsafe impl Hypercall for Acrn {
    unsafe fn hypercall(&self, id: u64, p1: u64, p2: u64) -> i64 {
        let ret: i64;
        if self.amd {
            core::arch::asm!("vmmcall", in("r8") id, in("rdi") p1, in("rsi") p2, lateout("rax") ret, options(nostack));
        } else {
            core::arch::asm!("vmcall", in("r8") id, in("rdi") p1, in("rsi") p2, lateout("rax") ret, options(nostack));
        }
        ret
    }
}

fn vendor_is_amd() -> bool {
    let (_, b, c, d) = cpuid(0, 0);
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&b.to_le_bytes());
    v[4..8].copy_from_slice(&d.to_le_bytes());
    v[8..].copy_from_slice(&c.to_le_bytes());
    &v == b"AuthenticAMD" || &v == b"HygonGenuine"
}

/// Whether we run as ACRN's privileged VM (CPUID 0x40000001 EAX bit 0).
fn privileged(p: &Platform) -> bool {
    p.hypervisor
        .as_ref()
        .is_some_and(|s| s.as_str() == "ACRNACRNACRN")
        && cpuid(0x4000_0001, 0).0 & 1 != 0
}

// ---- device model -------------------------------------------------------------------------

const MIB: u64 = 1 << 20;
/// Post-launched VM RAM comes from below 3 GiB: the boot stub maps the top GiB uncached.
const RAM_CEILING: u64 = 3 << 30;
/// TSC ticks to wait for a guest's verdict (about 10 s under TCG, 2 min in Bochs), unless
/// `verdictwait=SECONDS` on the command line says otherwise.
static WAIT_TSC: AtomicU64 = AtomicU64::new(30_000_000_000);
/// Unhandled accesses reported per VM; the rest are only counted.
const REPORT_UNHANDLED: u32 = 5;
/// How long to watch a `spin` guest's counter (about 0.1 s under TCG).
const SPIN_WATCH_TSC: u64 = 250_000_000;
/// The `memread` page: where the guest sees it, its size, what it holds while mapped and what
/// its old RAM holds after the removal.
const REMOVABLE_GPA: u64 = 0x8000_0000;
const REMOVABLE_SIZE: u64 = 2 * MIB;
const REMOVABLE_PATTERN: u64 = 0x4D45_4D52_4541_4430;
const REMOVABLE_STALE: u64 = 0x5354_414C_4520_5047;
/// How long the guest reads the page before it is removed (about 20 ms under TCG).
const REMOVE_DELAY_TSC: u64 = 50_000_000;

/// Fills the first 4 KiB at `hpa` (our identity-mapped RAM from the pool) with `value`.
fn fill_u64(hpa: u64, value: u64) {
    for i in 0..512 {
        // SAFETY: the page belongs to the pool allocation of the caller.
        unsafe { core::ptr::write_volatile((hpa + 8 * i) as *mut u64, value) };
    }
}

type Hv = Hsm<Acrn>;

/// A post-launched VM and its device model state.
struct Guest {
    desc: LaunchVm,
    kernel: Arc<Vec<u8>>,
    vm: Arc<Vm<Acrn>>,
    ram: u64,
    uart: Uart,
    /// `verdict:` lines seen, and how many said PASS.
    verdicts: u32,
    passes: u32,
    unhandled: u32,
    /// An MMIO access reached the default client (reported once per VM).
    mmio_seen: bool,
    /// The guest said it waits for the test interrupts (`irqwait`): its local APIC is enabled.
    irq_ready: bool,
    /// GPA of the counter a `spin` guest increments forever (from its `spin:` line).
    spin_counter: Option<u64>,
    /// The `memread` page: its RAM (Service VM address) and whether it is mapped now.
    removable: Option<u64>,
    removable_mapped: bool,
    /// The guest said it reads the removable page (`memread:` line).
    remove_now: bool,
    /// When to remove it (TSC): a little later, so the guest's loop has its translation cached.
    remove_at: Option<u64>,
    remove_failed: bool,
}

impl Guest {
    fn ram_size(&self) -> u64 {
        u64::from(self.desc.memory_mb) * MIB
    }

    /// Loads the kernel and boot data into RAM and sets the BSP's registers.
    fn load(&mut self) -> Result<(), String> {
        // SAFETY: [ram, ram + size) is ours (taken from the pool), identity-mapped, and no
        // vCPU of this VM runs while it is loaded (CREATED state).
        let mem = unsafe {
            core::slice::from_raw_parts_mut(self.ram as *mut u8, self.ram_size() as usize)
        };
        let l = guest::load_elf(mem, &self.kernel).map_err(|e| alloc::format!("{e}"))?;
        guest::write_boot_data(mem, self.vm.vcpu_num(), &self.desc.bootargs, l.multiboot)
            .map_err(|e| alloc::format!("{e}"))?;
        self.vm
            .set_vcpu_regs(&guest::bsp_regs(l.entry, l.multiboot))
            .map_err(|e| alloc::format!("{e}"))?;
        self.uart = Uart::new();
        self.spin_counter = None;
        Ok(())
    }

    fn has_flag(&self, flag: &str) -> bool {
        self.desc.bootargs.split(' ').any(|w| w == flag)
    }

    /// Reads the `spin` guest's counter in its RAM.
    fn spin_count(&self) -> Option<u64> {
        let gpa = self.spin_counter?;
        if gpa.checked_add(8).is_none_or(|end| end > self.ram_size()) {
            return None;
        }
        // SAFETY: inside the VM's RAM, which is ours and identity-mapped; the guest updates
        // it atomically (aligned u64).
        Some(unsafe { core::ptr::read_volatile((self.ram + gpa) as *const u64) })
    }

    /// How far the `spin` guest's counter moves in SPIN_WATCH_TSC (None: not a spin guest).
    fn spin_progress(&self) -> Option<u64> {
        let before = self.spin_count()?;
        spin_tsc(SPIN_WATCH_TSC);
        Some(self.spin_count()?.wrapping_sub(before))
    }

    /// `memread`: fills the removable page with the pattern and maps it at REMOVABLE_GPA.
    fn map_removable(&mut self, pool: &mut RamPool) -> Result<(), String> {
        if !self.has_flag("memread") || self.removable_mapped {
            return Ok(());
        }
        let hpa = match self.removable {
            Some(h) => h,
            None => {
                let h = pool
                    .alloc(REMOVABLE_SIZE, REMOVABLE_SIZE)
                    .ok_or_else(|| String::from("no RAM for the removable page"))?;
                self.removable = Some(h);
                h
            }
        };
        fill_u64(hpa, REMOVABLE_PATTERN);
        self.vm
            .map_memory(&[MemSegment {
                kind: MemKind::Ram,
                user_vm_gpa: REMOVABLE_GPA,
                service_vm_gpa: hpa,
                size: REMOVABLE_SIZE,
                access: MemAccess::RWX,
            }])
            .map_err(|e| alloc::format!("map removable page: {e}"))?;
        self.removable_mapped = true;
        Ok(())
    }

    /// Removes the `memread` page while the guest reads it, then writes another value into
    /// the old page: a guest that still reaches it through a stale translation would see it.
    fn remove_removable(&mut self) -> bool {
        let Some(hpa) = self.removable.filter(|_| self.removable_mapped) else {
            return true;
        };
        let id = self.vm.vmid();
        match self.vm.unmap_memory(REMOVABLE_GPA, REMOVABLE_SIZE) {
            Ok(()) => {
                self.removable_mapped = false;
                println!(
                    "svm: VM {} removed {:#x}+{:#x} while it runs",
                    id, REMOVABLE_GPA, REMOVABLE_SIZE
                );
                fill_u64(hpa, REMOVABLE_STALE);
                println!(
                    "svm: VM {} old page {:#x} now holds {:#x}",
                    id, hpa, REMOVABLE_STALE
                );
                true
            }
            Err(e) => {
                println!("svm: VM {} remove {:#x}: {}", id, REMOVABLE_GPA, e);
                false
            }
        }
    }

    /// Emulates one request of the default client; returns what a read yields.
    fn emulate(&mut self, a: &IoAccess) -> u64 {
        let ones = match a.size {
            1 => 0xFF,
            2 => 0xFFFF,
            4 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        if let (IoKind::Pio, Some(base)) = (a.kind, self.desc.console_port) {
            if (u64::from(base)..u64::from(base) + 8).contains(&a.addr) {
                let off = (a.addr - u64::from(base)) as u16;
                if !a.write {
                    return u64::from(self.uart.read(off));
                }
                let (name, verdicts, passes, irq_ready, spin_counter, remove_now) = (
                    &self.desc.name,
                    &mut self.verdicts,
                    &mut self.passes,
                    &mut self.irq_ready,
                    &mut self.spin_counter,
                    &mut self.remove_now,
                );
                self.uart.write(off, a.value as u8, &mut |line| {
                    let text = core::str::from_utf8(line).unwrap_or("?");
                    println!("[{}] {}", name, text);
                    *irq_ready |= text.starts_with("irq: waiting for vectors");
                    if let Some(hex) = text.strip_prefix("spin: counter at 0x") {
                        *spin_counter = u64::from_str_radix(hex, 16).ok();
                    }
                    // The first `memread:` line: the guest reads the page in a loop now.
                    *remove_now |= text.starts_with("memread: ") && !text.contains(" after ");
                    if let Some(v) = text.strip_prefix("verdict: ") {
                        *verdicts += 1;
                        *passes += u32::from(v == "PASS");
                    }
                });
                return 0;
            }
        }
        if matches!(a.kind, IoKind::PciCfg { .. }) {
            // No emulated PCI function: an empty bus (the hypervisor answers for the VM's
            // pass-through functions itself).
            return if a.write { 0 } else { ones };
        }
        if a.kind == IoKind::Mmio {
            // No emulated MMIO device: reads float high, writes vanish, as on an empty bus.
            if !self.mmio_seen {
                self.mmio_seen = true;
                println!(
                    "svm: VM {} MMIO {} {:#x} size {}: no device (reads all-ones, writes ignored)",
                    self.vm.vmid(),
                    if a.write { "write" } else { "read" },
                    a.addr,
                    a.size
                );
            }
            return if a.write { 0 } else { ones };
        }
        self.unhandled += 1;
        if self.unhandled <= REPORT_UNHANDLED {
            println!(
                "svm: VM {} unhandled {:?} {} {:#x} size {}",
                self.vm.vmid(),
                a.kind,
                if a.write { "write" } else { "read" },
                a.addr,
                a.size
            );
        }
        if a.write {
            0
        } else {
            ones
        }
    }

    fn flush_console(&mut self) {
        let name = &self.desc.name;
        self.uart.flush(&mut |l| {
            println!("[{}] {}", name, core::str::from_utf8(l).unwrap_or("?"));
        });
    }
}

/// Dispatches pending requests and serves the default clients' ones (polling: the Service VM
/// keeps interrupts off, so the 0xF3 upcall is not taken; every slot is scanned instead).
fn serve(hsm: &Hv, guests: &mut [Guest]) {
    if let Err(e) = hsm.dispatch() {
        println!("svm: dispatch: {}", e);
    }
    for g in guests.iter_mut() {
        for req in g.vm.default_requests() {
            let v = g.emulate(&req);
            if let Err(e) = g.vm.complete_request(&req, v) {
                println!("svm: VM {} complete: {}", g.vm.vmid(), e);
            }
        }
        if core::mem::take(&mut g.irq_ready) {
            send_test_interrupts(g);
        }
        if core::mem::take(&mut g.remove_now) {
            g.remove_at = Some(rdtsc().wrapping_add(REMOVE_DELAY_TSC));
        }
        if g.remove_at.is_some_and(|t| rdtsc() >= t) {
            g.remove_at = None;
            if !g.remove_removable() {
                g.remove_failed = true;
            }
        }
    }
}

/// Serves until guest `i` has printed `count` verdicts; false on timeout.
fn wait_verdicts(hsm: &Hv, guests: &mut [Guest], i: usize, count: u32) -> bool {
    let start = rdtsc();
    while guests[i].verdicts < count {
        if rdtsc().wrapping_sub(start) > WAIT_TSC.load(Ordering::Relaxed) {
            guests[i].flush_console();
            println!(
                "svm: VM {} {}: no verdict in time",
                guests[i].vm.vmid(),
                guests[i].desc.name
            );
            return false;
        }
        serve(hsm, guests);
        core::hint::spin_loop();
    }
    true
}

/// The physical GSI of each host function's INTx line (`ptgsi=BB:DD.F@GSI,...` on the command
/// line: what Linux reads from the ACPI _PRT and acrn-dm from sysfs).
type PtGsis = [(PciAddr, u32)];

fn parse_pt_gsis(arg: Option<&str>) -> Vec<(PciAddr, u32)> {
    arg.into_iter()
        .flat_map(|a| a.split(','))
        .filter_map(|e| {
            let (bdf, gsi) = e.split_once('@')?;
            Some((PciAddr::parse(bdf)?, gsi.parse().ok()?))
        })
        .collect()
}

/// Where each pass-through function of `desc` goes in the VM: function 0 of its host device
/// number, or of the next free one (a guest scans function 0 of each slot first, as acrn-dm
/// puts each `passthru` at a slot of its own); the hypervisor's added devices keep theirs.
fn virtual_slots(desc: &LaunchVm) -> Vec<(PciAddr, PciAddr)> {
    let mut used: Vec<u8> = desc.vdevs.iter().map(|d| d.bdf.dev).collect();
    used.push(0);
    let mut out = Vec::new();
    for &host in &desc.pci_devs {
        let Some(dev) = (0..32u8)
            .map(|k| (host.dev + k) % 32)
            .find(|d| !used.contains(d))
        else {
            continue;
        };
        used.push(dev);
        out.push((
            host,
            PciAddr {
                bus: 0,
                dev,
                func: 0,
            },
        ));
    }
    out
}

fn pcidev(host: PciAddr, virt: PciAddr) -> AcrnPcidev {
    AcrnPcidev {
        virt_bdf: virt.raw(),
        phys_bdf: host.raw(),
        ..Default::default()
    }
}

fn intx_line(host: PciAddr, virt: PciAddr, gsi: u32) -> HcPtdevIrq {
    HcPtdevIrq {
        r#type: ACRN_PTDEV_IRQ_INTX,
        virt_bdf: virt.raw(),
        phys_bdf: host.raw(),
        intx: HcPtdevIntx {
            virt_pin: gsi,
            phys_pin: gsi,
            ..Default::default()
        },
    }
}

/// Gives the VM its pass-through functions (BARs at the host addresses) and their INTx lines,
/// as acrn-dm does for `-s N,passthru,B/D/F`.
fn assign_devices(vm: &Vm<Acrn>, desc: &LaunchVm, gsis: &PtGsis) -> Result<(), String> {
    for (host, virt) in virtual_slots(desc) {
        vm.assign_pcidev(&pcidev(host, virt))
            .map_err(|e| alloc::format!("assign {host}: {e}"))?;
        let gsi = gsis.iter().find(|(b, _)| *b == host).map(|&(_, g)| g);
        if let Some(g) = gsi {
            vm.set_ptdev_intr(&intx_line(host, virt, g))
                .map_err(|e| alloc::format!("INTx of {host}: {e}"))?;
        }
        println!(
            "svm: VM {} {}: PCI {} assigned at {}{}",
            vm.vmid(),
            desc.name,
            host,
            virt,
            match gsi {
                Some(g) => alloc::format!(", INTx GSI {g}"),
                None => String::new(),
            }
        );
    }
    Ok(())
}

/// Adds the hypervisor's devices the description lists (HC_ADD_VDEV), as acrn-dm does for
/// `ivshmem,hv:/NAME` and `uart,vuart_idx:N`.
fn add_devices(vm: &Vm<Acrn>, desc: &LaunchVm) -> Result<(), String> {
    for d in &desc.vdevs {
        let mut v = AcrnVdev {
            slot: u64::from(d.bdf.raw()),
            ..Default::default()
        };
        for (i, &b) in d.bars.iter().enumerate() {
            v.io_addr[i] = b as u32;
        }
        match &d.kind {
            VdevKind::Ivshmem(name) => {
                v.id = VDEV_ID_IVSHMEM;
                // BAR2 is 64-bit prefetchable: its upper half in the next register.
                v.io_addr[2] |= 0xC;
                v.io_addr[3] = (d.bars[2] >> 32) as u32;
                let full = alloc::format!("hv:/{name}");
                let n = full.len().min(v.args.len() - 1);
                v.args[..n].copy_from_slice(&full.as_bytes()[..n]);
            }
            VdevKind::Vuart(i) => {
                v.id = VDEV_ID_MCS9900;
                v.args[..4].copy_from_slice(&i.to_le_bytes());
            }
        }
        vm.add_vdev(&v)
            .map_err(|e| alloc::format!("add {d}: {e}"))?;
        println!("svm: VM {} {}: added {}", vm.vmid(), desc.name, d);
    }
    Ok(())
}

/// Takes the VM's pass-through functions and lines back (before it is destroyed).
fn deassign_devices(vm: &Vm<Acrn>, desc: &LaunchVm, gsis: &PtGsis) -> Result<(), String> {
    for (host, virt) in virtual_slots(desc) {
        if let Some(&(_, g)) = gsis.iter().find(|(b, _)| *b == host) {
            vm.reset_ptdev_intr(&intx_line(host, virt, g))
                .map_err(|e| alloc::format!("INTx of {host}: {e}"))?;
        }
        vm.deassign_pcidev(&pcidev(host, virt))
            .map_err(|e| alloc::format!("deassign {host}: {e}"))?;
        println!(
            "svm: VM {} {}: PCI {} given back",
            vm.vmid(),
            desc.name,
            host
        );
    }
    Ok(())
}

/// Creates, maps, loads and starts one VM.
fn launch_vm(
    hsm: &Hv,
    pool: &mut RamPool,
    desc: &LaunchVm,
    kernel: Arc<Vec<u8>>,
    gsis: &PtGsis,
) -> Result<Guest, String> {
    let size = u64::from(desc.memory_mb) * MIB;
    let vm = hsm
        .create_vm(&VmConfig {
            name: &desc.name,
            flags: GuestFlags::empty(),
            cpu_affinity: desc.pcpus,
        })
        .map_err(|e| alloc::format!("create: {e}"))?;
    println!(
        "svm: created VM {} {} vcpus={}",
        vm.vmid(),
        desc.name,
        vm.vcpu_num()
    );
    let fail = |vm: &Arc<Vm<Acrn>>, e: String| {
        let _ = vm.pause();
        let _ = hsm.destroy_vm(vm.vmid());
        e
    };
    let Some(ram) = pool.alloc(size, 2 * MIB) else {
        return Err(fail(
            &vm,
            alloc::format!("no {} MiB of free RAM", desc.memory_mb),
        ));
    };
    let mut g = Guest {
        desc: desc.clone(),
        kernel,
        vm: vm.clone(),
        ram,
        uart: Uart::new(),
        verdicts: 0,
        passes: 0,
        unhandled: 0,
        mmio_seen: false,
        irq_ready: false,
        spin_counter: None,
        removable: None,
        removable_mapped: false,
        remove_now: false,
        remove_at: None,
        remove_failed: false,
    };
    let seg = MemSegment {
        kind: MemKind::Ram,
        user_vm_gpa: 0,
        service_vm_gpa: ram,
        size,
        access: MemAccess::RWX,
    };
    let r = vm
        .map_memory(&[seg])
        .map_err(|e| alloc::format!("map: {e}"))
        .and_then(|()| g.load())
        .and_then(|()| g.map_removable(pool))
        .and_then(|()| assign_devices(&vm, desc, gsis))
        .and_then(|()| add_devices(&vm, desc))
        .and_then(|()| {
            vm.create_default_client()
                .map(drop)
                .map_err(|e| alloc::format!("client: {e}"))
        })
        .and_then(|()| vm.start().map_err(|e| alloc::format!("start: {e}")));
    if let Err(e) = r {
        pool.free_range(ram, size);
        if let Some(h) = g.removable {
            pool.free_range(h, REMOVABLE_SIZE);
        }
        return Err(fail(&vm, e));
    }
    println!(
        "svm: started VM {} {} ram={:#x}+{:#x}",
        vm.vmid(),
        desc.name,
        ram,
        size
    );
    Ok(g)
}

/// Pauses a guest; a `spin` guest must be seen spinning before and standing still after.
fn pause(g: &mut Guest) -> Result<(), String> {
    let id = g.vm.vmid();
    if let Some(moved) = g.spin_progress() {
        println!("svm: VM {} spinning: counter +{} before pause", id, moved);
        if moved == 0 {
            return Err(String::from("the spinning guest did not run"));
        }
    }
    g.vm.pause().map_err(|e| alloc::format!("pause: {e}"))?;
    g.flush_console();
    println!("svm: paused VM {}", id);
    if let Some(moved) = g.spin_progress() {
        println!("svm: VM {} paused: counter +{} after pause", id, moved);
        if moved != 0 {
            return Err(String::from("the paused guest still runs"));
        }
    }
    Ok(())
}

/// Pause, reset, reload and restart a running guest; with `intr_delay` (ms), its pass-through
/// interrupts are held back that long after the reset (DELAY_INT, as acrn-dm's storm monitor
/// asks).
fn restart(
    hsm: &Hv,
    g: &mut Guest,
    pool: &mut RamPool,
    intr_delay: Option<u64>,
) -> Result<(), String> {
    let id = g.vm.vmid();
    pause(g)?;
    g.vm.reset().map_err(|e| alloc::format!("reset: {e}"))?;
    println!("svm: reset VM {}", id);
    if let Some(ms) = intr_delay {
        let (r, _) = intr_monitor(hsm, g, INTR_CMD_DELAY_INT, ms);
        println!(
            "svm: VM {} {}: pass-through interrupts held back {} ms (HC_VM_INTR_MONITOR {})",
            id, g.desc.name, ms, r
        );
    }
    g.load()?;
    g.map_removable(pool)?;
    g.vm.start().map_err(|e| alloc::format!("start: {e}"))?;
    println!("svm: restarted VM {} {}", id, g.desc.name);
    Ok(())
}

/// A guest with `irqwait` on its command line waits for MSI vector 0x40 and for GSI 5 (its I/O
/// APIC entry turns it into vector 0x41): both are sent once it says it waits (a local APIC
/// drops interrupts until the guest enables it). The line stays high (level); the guest masks
/// the entry in its handler.
fn send_test_interrupts(g: &Guest) {
    if !g.desc.bootargs.split(' ').any(|w| w == "irqwait") {
        return;
    }
    let msi = AcrnMsiEntry {
        msi_addr: 0xFEE0_0000,
        msi_data: 0x40,
    };
    let show = |r: acrn_hsm::Result<()>| match r {
        Ok(()) => String::from("ok"),
        Err(e) => alloc::format!("{e}"),
    };
    println!(
        "svm: VM {} MSI vector 0x40: {}, GSI 5 high: {}",
        g.vm.vmid(),
        show(g.vm.inject_msi(msi)),
        show(g.vm.set_irqline(5, GsiOp::SetHigh))
    );
}

/// HC_VM_INTR_MONITOR `cmd` for the VM with `first` in its buffer: the hypercall's result and
/// what the hypervisor left in the buffer.
fn intr_monitor(hsm: &Hv, g: &Guest, cmd: u32, first: u64) -> (i64, Vec<u64>) {
    let mut m = alloc::boxed::Box::new(AcrnIntrMonitor {
        cmd,
        buf_cnt: (MAX_PTDEV_NUM * 2) as u32,
        ..Default::default()
    });
    m.buffer[0] = first;
    let hv = hsm.hypervisor();
    // SAFETY: `m` lives across the call; the hypervisor writes only inside it.
    let r = unsafe {
        hv.hypercall(
            HC_VM_INTR_MONITOR,
            g.vm.vmid().into(),
            hv.gpa_of((&*m as *const AcrnIntrMonitor).cast()),
        )
    };
    let n = (m.buf_cnt as usize).min(m.buffer.len());
    (r, m.buffer[..n].to_vec())
}

/// The VM's pass-through interrupt counts (HC_VM_INTR_MONITOR, GET_DATA), printed as
/// `irq:count` pairs, as acrn-dm's storm monitor reads them.
fn print_interrupt_counts(hsm: &Hv, g: &Guest) {
    let (r, counts) = intr_monitor(hsm, g, INTR_CMD_GET_DATA, 0);
    let pairs: Vec<String> = counts
        .chunks_exact(2)
        .map(|p| alloc::format!("{:#x}:{}", p[0], p[1]))
        .collect();
    println!(
        "svm: VM {} {}: pass-through interrupts (HC_VM_INTR_MONITOR {}): {}",
        g.vm.vmid(),
        g.desc.name,
        r,
        pairs.join(" ")
    );
}

/// Pause, give the devices back and destroy; the RAM goes back to the pool.
fn destroy(hsm: &Hv, pool: &mut RamPool, mut g: Guest, gsis: &PtGsis) -> Result<(), String> {
    let id = g.vm.vmid();
    pause(&mut g)?;
    if !g.desc.pci_devs.is_empty() {
        print_interrupt_counts(hsm, &g);
    }
    deassign_devices(&g.vm, &g.desc, gsis)?;
    hsm.destroy_vm(id)
        .map_err(|e| alloc::format!("destroy: {e}"))?;
    pool.free_range(g.ram, g.ram_size());
    if let Some(h) = g.removable {
        pool.free_range(h, REMOVABLE_SIZE);
    }
    println!("svm: destroyed VM {}", id);
    Ok(())
}

// ---- busy APs ------------------------------------------------------------------------------

/// What the APs do once started: wait for the BSP to read the command line, then halt or work.
static AP_MODE: AtomicU8 = AtomicU8::new(AP_UNDECIDED);
const AP_UNDECIDED: u8 = 0;
const AP_HALT: u8 = 1;
const AP_WORK: u8 = 2;
/// TSC ticks between two AP heartbeats (about 40 ms under TCG, 1 s in Bochs).
const AP_BEAT_TSC: u64 = 100_000_000;

/// `apwork`: every AP keeps its vCPU busy for good, printing a heartbeat with the result of a
/// vector-register check (a pattern of its own in XMM/YMM, checked and renewed every beat), so
/// the post-launched VMs sharing its pCPU compete with a vCPU that never halts.
fn ap_task(index: u32) -> ! {
    let mode = loop {
        match AP_MODE.load(Ordering::SeqCst) {
            AP_UNDECIDED => core::hint::spin_loop(),
            m => break m,
        }
    };
    if mode != AP_WORK {
        halt_forever()
    }
    let fpu = fpu::enable();
    let seed = rdtsc().rotate_left(index) | 1;
    fpu::load(&fpu, seed, 0);
    let mut mismatches = 0u64;
    for beat in 1u64.. {
        spin_tsc(AP_BEAT_TSC);
        if let Some(m) = fpu::verify(&fpu, seed, beat - 1) {
            mismatches += 1;
            println!(
                "svm: ap {} register {} lane {}: want {:#x} got {:#x}",
                index, m.reg, m.lane, m.want, m.got
            );
        }
        fpu::load(&fpu, seed, beat);
        println!(
            "svm: ap {} beat {} avx={} fpu-mismatches={}",
            index, beat, fpu.avx, mismatches
        );
    }
    halt_forever()
}

// ---- hypercall fuzzer ---------------------------------------------------------------------

/// Issues `n` random bad hypercalls; true if each returned its documented error and the
/// hypervisor still serves us afterwards.
fn fuzz(hv: &Acrn, n: u32, target_vm: Option<&LaunchVm>) -> bool {
    let mut ok = true;
    let mut cv = alloc::boxed::Box::new(AcrnVmCreation::default());
    let target = target_vm.and_then(|d| {
        cv.cpu_affinity = d.pcpus;
        cv.set_name(&d.name);
        match hv.create_vm(&mut cv) {
            Ok(()) => {
                println!("svm: fuzz target VM {} {}", cv.vmid, d.name);
                Some(Target {
                    vmid: cv.vmid,
                    creation_gpa: hv.gpa_of((&*cv as *const AcrnVmCreation).cast()),
                })
            }
            Err(e) => {
                println!("svm: fuzz: cannot create {}: {}", d.name, e);
                ok = false;
                None
            }
        }
    });
    let mut rng = Rng::new(rdtsc());
    let mut mismatches = 0u32;
    for _ in 0..n {
        let c = fuzz::next_case(&mut rng, target);
        // SAFETY: the generator passes only unbacked GPAs (>= 2^48) or `cv`, which lives until
        // the end of this function.
        let rax = unsafe { hv.hypercall(c.id, c.p1, c.p2) };
        if !c.accepts(rax) {
            mismatches += 1;
            if mismatches <= 10 {
                println!(
                    "svm: fuzz mismatch: {} id={:#x} p1={:#x} p2={:#x} got {} want {:?}",
                    c.what, c.id, c.p1, c.p2, rax, c.expect
                );
            }
        }
    }
    if let Some(t) = target {
        // SAFETY: no pointer parameters.
        let (p, d) = unsafe {
            (
                hv.hypercall(HC_PAUSE_VM, t.vmid.into(), 0),
                hv.hypercall(HC_DESTROY_VM, t.vmid.into(), 0),
            )
        };
        if p != 0 || d != 0 {
            println!(
                "svm: fuzz: tearing down VM {} gave pause={} destroy={}",
                t.vmid, p, d
            );
            ok = false;
        }
    }
    let alive = hv.get_api_version().is_ok();
    println!(
        "svm: fuzz calls={} mismatches={} hypervisor-alive={}",
        n, mismatches, alive
    );
    ok && alive && mismatches == 0
}

// ---- main ---------------------------------------------------------------------------------

extern "C" {
    static __bss_end: u8;
}

fn find<'a>(mods: &'a [Module], tag: &str) -> Option<&'a Module> {
    mods.iter().find(|m| m.has_tag(tag))
}

fn finish(failures: &[&str]) -> ! {
    finish_line(failures);
    halt_forever()
}

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    smp::on_ap_start(ap_task);
    let p = identify("service-vm", magic, info);
    AP_MODE.store(
        if p.flag("apwork") { AP_WORK } else { AP_HALT },
        Ordering::SeqCst,
    );
    if let Some(secs) = p.arg("verdictwait").and_then(|v| v.parse::<u64>().ok()) {
        // ACRN's timing leaf gives the TSC rate in kHz; assume 3 GHz without it.
        let khz = match cpuid(0x4000_0010, 0).0 {
            0 => 3_000_000,
            k => u64::from(k),
        };
        WAIT_TSC.store(secs.saturating_mul(khz * 1000), Ordering::Relaxed);
    }
    // Copy everything out of loader memory before handing RAM to guests.
    let mem = GuestMem::new();
    let mods = match modules::list(&mem, info.into()) {
        Ok(m) => m,
        Err(e) => {
            println!("svm: boot modules: {}", e);
            finish(&["boot modules"]);
        }
    };
    for m in &mods {
        println!("svm: module {:#x}-{:#x} {}", m.start, m.end, m.string);
    }
    let Some(desc) = find(&mods, MODULE_TAG) else {
        println!("svm: no `{}` boot module", MODULE_TAG);
        finish(&["no launch description"]);
    };
    let mut launch = match desc
        .read(&mem)
        .map_err(|e| alloc::format!("{e}"))
        .and_then(|b| LaunchDescription::parse_bytes(&b).map_err(|e| alloc::format!("{e}")))
    {
        Ok(l) => l,
        Err(e) => {
            println!("svm: launch description: {}", e);
            finish(&["bad launch description"]);
        }
    };
    println!("svm: launch description: {} VMs", launch.vms.len());
    // `guestargs=a,b` appends `a b` to every post-launched VM's command line (scenario files
    // give post-launched VMs no <os_config>, so tests pass guest flags this way).
    if let Some(extra) = p.arg("guestargs") {
        for d in &mut launch.vms {
            for w in extra.split(',').filter(|w| !w.is_empty()) {
                d.bootargs.push(' ');
                d.bootargs.push_str(w);
            }
        }
    }
    let mut failures: Vec<&str> = Vec::new();
    let mut kernels = Vec::new();
    for d in &launch.vms {
        let k = match (d.kernel_type, find(&mods, &d.kernel_mod)) {
            (KernelType::Elf, Some(m)) => m
                .read(&mem)
                .map(Arc::new)
                .map_err(|e| alloc::format!("{e}")),
            (KernelType::Elf, None) => {
                Err(alloc::format!("no boot module tagged {}", d.kernel_mod))
            }
            (t, _) => Err(alloc::format!(
                "kernel type {t:?} is not supported (KERNEL_ELF only)"
            )),
        };
        match k {
            Ok(k) => kernels.push(Some(k)),
            Err(e) => {
                println!("svm: VM {} {}: {}", d.id, d.name, e);
                failures.push("missing kernel");
                kernels.push(None);
            }
        }
    }

    // Everything above works without a hypervisor (a plain QEMU boot checks it); hypercalls
    // need ACRN.
    if !privileged(&p) {
        println!("svm: not running as the ACRN Service VM (no ACRN signature or privilege bit)");
        finish(&["not the Service VM"]);
    }
    let hv = Acrn {
        amd: vendor_is_amd(),
    };
    println!(
        "svm: hypercalls via {}",
        if hv.amd { "vmmcall" } else { "vmcall" }
    );
    match hv.get_api_version() {
        Ok(v) => println!("svm: api {}.{}", v.major_version, v.minor_version),
        Err(e) => println!("svm: HC_GET_API_VERSION: {}", e),
    }
    if !both_hypercall_instructions_work() {
        failures.push("hypercall instructions");
    }
    if let Some(dev) = p.arg("renumber").and_then(|v| v.parse::<u8>().ok()) {
        intx::renumber(dev);
    }
    if p.flag("intx") {
        failures.extend(intx::run());
        finish(&failures);
    }
    if let Some(n) = p.arg("hcbench").and_then(|v| v.parse::<u64>().ok()) {
        bench_hypercalls(&hv, n.max(1));
    }

    let image_end = core::ptr::addr_of!(__bss_end) as u64;
    let ram = match &p.boot {
        Ok(MultibootInfo {
            mmap: Ok(Some(m)), ..
        }) => m
            .entries()
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| (e.base, e.len))
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let mut pool = RamPool::new(
        ram,
        image_end.next_multiple_of(2 * MIB).max(16 * MIB),
        RAM_CEILING,
    );
    println!("svm: guest RAM pool {} MiB", pool.free_bytes() / MIB);

    if let Some(n) = p.arg("fuzz").and_then(|v| v.parse::<u32>().ok()) {
        if fuzz(&hv, n, launch.vms.first()) {
            println!("svm: fuzz PASS");
        } else {
            println!("svm: fuzz FAIL");
            failures.push("fuzz");
        }
    }

    let pt_gsis = parse_pt_gsis(p.arg("ptgsi"));
    let hsm = Hsm::new(hv);
    let mut guests: Vec<Guest> = Vec::new();
    for (d, k) in launch.vms.iter().zip(&kernels) {
        let Some(k) = k else { continue };
        match launch_vm(&hsm, &mut pool, d, k.clone(), &pt_gsis) {
            Ok(g) => guests.push(g),
            Err(e) => {
                println!("svm: VM {} {}: {}", d.id, d.name, e);
                failures.push("launch");
            }
        }
    }
    for i in 0..guests.len() {
        if !wait_verdicts(&hsm, &mut guests, i, 1) {
            failures.push("no verdict");
        }
    }

    // The lifecycle exercise on the first VM: pause/reset/restart, then destroy/create
    // (`once`: the guests run once, e.g. when they talk to a pre-launched VM that does not
    // run again).
    if !guests.is_empty() && !p.flag("once") {
        let delay = p.arg("intr_delay").and_then(|v| v.parse().ok());
        let step = restart(&hsm, &mut guests[0], &mut pool, delay);
        match step {
            Ok(()) if wait_verdicts(&hsm, &mut guests, 0, 2) => {}
            Ok(()) => failures.push("no verdict after reset"),
            Err(e) => {
                println!("svm: VM {}: {}", guests[0].vm.vmid(), e);
                failures.push("reset");
            }
        }
        let g = guests.remove(0);
        let (desc, kernel) = (g.desc.clone(), g.kernel.clone());
        if g.passes != g.verdicts {
            failures.push("guest verdict FAIL");
        }
        if g.remove_failed {
            failures.push("memory removal");
        }
        match destroy(&hsm, &mut pool, g, &pt_gsis) {
            Ok(()) => match launch_vm(&hsm, &mut pool, &desc, kernel, &pt_gsis) {
                Ok(g) => {
                    guests.insert(0, g);
                    if !wait_verdicts(&hsm, &mut guests, 0, 1) {
                        failures.push("no verdict after re-create");
                    }
                }
                Err(e) => {
                    println!("svm: VM {} {}: {}", desc.id, desc.name, e);
                    failures.push("re-create");
                }
            },
            Err(e) => {
                println!("svm: {}: {}", desc.name, e);
                failures.push("destroy");
            }
        }
    }
    for g in &guests {
        println!(
            "svm: VM {} {} verdicts={} passed={} unhandled={}",
            g.vm.vmid(),
            g.desc.name,
            g.verdicts,
            g.passes,
            g.unhandled
        );
        if g.passes != g.verdicts {
            failures.push("guest verdict FAIL");
        }
        if g.remove_failed {
            failures.push("memory removal");
        }
    }
    failures.dedup();
    finish_line(&failures);
    // Keep serving: the guests still run and print.
    loop {
        serve(&hsm, &mut guests);
        core::hint::spin_loop();
    }
}

/// HC_GET_API_VERSION through VMCALL and through VMMCALL: the hypervisor takes both on every
/// vendor (Linux's ACRN guest code issues VMCALL on AMD too; the other vendor's instruction
/// raises #UD, which the hypervisor intercepts). Returns whether both answered 1.0.
fn both_hypercall_instructions_work() -> bool {
    let call = |vmmcall: bool| {
        let mut v = HcApiVersion::default();
        let gpa = core::ptr::addr_of_mut!(v) as u64;
        let ret: i64;
        // SAFETY: the Service VM is identity-mapped: `gpa` is `v`, which lives across the call;
        // the hypercall changes RAX and `v` only.
        unsafe {
            if vmmcall {
                core::arch::asm!("vmmcall", in("r8") HC_GET_API_VERSION, in("rdi") gpa,
                    in("rsi") 0u64, lateout("rax") ret, options(nostack));
            } else {
                core::arch::asm!("vmcall", in("r8") HC_GET_API_VERSION, in("rdi") gpa,
                    in("rsi") 0u64, lateout("rax") ret, options(nostack));
            }
        }
        (ret, v.major_version, v.minor_version)
    };
    let (vmcall, vmmcall) = (call(false), call(true));
    let ok = vmcall == (0, 1, 0) && vmmcall == (0, 1, 0);
    if ok {
        println!("svm: vmcall and vmmcall both answer HC_GET_API_VERSION 1.0");
    } else {
        println!(
            "svm: hypercall instructions: vmcall {:?}, vmmcall {:?} (want (0, 1, 0) from both)",
            vmcall, vmmcall
        );
    }
    ok
}

/// Times `n` HC_GET_API_VERSION round trips (the cheapest hypercall with a pointer argument)
/// with RDTSC and prints the average, minus the cost of the empty loop.
fn bench_hypercalls(hv: &Acrn, n: u64) {
    let t0 = rdtsc();
    let mut ok = 0u64;
    for _ in 0..n {
        ok += u64::from(hv.get_api_version().is_ok());
    }
    let calls = rdtsc().wrapping_sub(t0);
    let t0 = rdtsc();
    for i in 0..n {
        core::hint::black_box(i);
    }
    let base = rdtsc().wrapping_sub(t0);
    println!(
        "svm: bench hypercalls={} ok={} hypercall_ticks={} loop_ticks={}",
        n,
        ok,
        calls / n,
        base / n
    );
}

fn finish_line(failures: &[&str]) {
    if failures.is_empty() {
        println!("verdict: PASS");
    } else {
        println!("verdict: FAIL ({})", failures.join(", "));
    }
}
