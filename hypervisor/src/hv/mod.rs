//! Bare-metal bring-up: the BSP checks the machine against the board, takes the platform's
//! interrupt hardware for the hypervisor, prepares the VMs and starts the APs; every pCPU then
//! runs the vCPU loop. Also the machine-wide services: power-off and the wall clock.

pub mod amdvi;
pub mod frames;
pub mod iommu;
pub mod vtd;

use crate::arch::x86::{self, cpu, irq};
use crate::bootinfo::{BootInfo, PhysRead};
use crate::hvlog;
use crate::vm::acpi;
use acrn_static_config::{LoadOrder, PlatformConfig};
use bitflags::bitflags;
use core::sync::atomic::{AtomicBool, Ordering};

/// Identity-mapped physical memory ([`x86::identity::reach`]).
pub struct Identity;
impl PhysRead for Identity {
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
        let reach = x86::identity::reach();
        if pa.checked_add(buf.len() as u64).is_none_or(|e| e > reach) {
            return false;
        }
        // SAFETY: identity-mapped RAM/ROM; reading it has no side effects.
        unsafe { core::ptr::copy_nonoverlapping(pa as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    }
}

extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

static mut PLATFORM_PTR: Option<&'static PlatformConfig> = None;
static BOOT_DONE: AtomicBool = AtomicBool::new(false);
static PM_TIMER: spin::Once<Option<acpi::PmTimer>> = spin::Once::new();
static SOFT_OFF: spin::Once<Option<acpi::SoftOff>> = spin::Once::new();
static RESET_REG: spin::Once<Option<acpi::ResetRegister>> = spin::Once::new();
static WALL_CLOCK: spin::Once<u64> = spin::Once::new();
static RSDP: spin::Once<Option<u64>> = spin::Once::new();

/// The machine's ACPI RSDP, if it has one.
pub fn rsdp() -> Option<u64> {
    RSDP.get().copied().flatten()
}

/// The machine's ACPI PM timer (from its FADT), which every VM may read.
pub fn pm_timer() -> Option<acpi::PmTimer> {
    PM_TIMER.get().copied().flatten()
}

pub fn platform() -> &'static PlatformConfig {
    // SAFETY: written once by the BSP before any AP starts and never again.
    unsafe { (*core::ptr::addr_of!(PLATFORM_PTR)).expect("platform set at boot") }
}

/// Stops boot with a message (configuration or machine mismatch: nothing can run).
fn fatal(args: core::fmt::Arguments) -> ! {
    crate::console::line("[hv] FATAL: ", args);
    x86::halt_forever()
}

pub fn panic(info: &core::panic::PanicInfo) -> ! {
    crate::console::emergency(format_args!("[hv] PANIC (hypervisor bug): {info}\n"));
    x86::halt_forever()
}

fn pcpu_of_apic(p: &PlatformConfig, apic_id: u32) -> Option<usize> {
    p.board.pcpus.iter().position(|c| c.apic_id == apic_id)
}

pub fn bsp_main(p: &'static PlatformConfig, hv_ram_start: u64, magic: u32, info: u64) -> ! {
    crate::console::init(p.board.serial);
    // SAFETY: single-threaded boot, before any reader exists.
    unsafe { PLATFORM_PTR = Some(p) };
    cpu::init_idt();
    let bsp_apic = cpu::initial_apic_id();
    let Some(bsp) = pcpu_of_apic(p, bsp_apic) else {
        cpu::init_this_cpu(0);
        fatal(format_args!(
            "boot CPU has APIC ID {bsp_apic}, which board {} does not list",
            p.board.name
        ))
    };
    cpu::init_this_cpu(bsp);
    hvlog!(
        "ACRN hypervisor (Rust), board {}, {} pCPUs, boot pCPU {bsp}",
        p.board.name,
        p.board.pcpus.len()
    );

    let bi = BootInfo::parse(&Identity, magic, info).unwrap_or_else(|e| fatal(format_args!("{e}")));
    hvlog!(
        "boot protocol {:?}, {} memory map entries, {} modules",
        bi.protocol,
        bi.memmap().len(),
        bi.modules().len()
    );
    for m in bi.modules() {
        hvlog!(
            "  module {:?} at {:#x} size {:#x}",
            m.tag(),
            m.start,
            m.size
        );
    }
    check_machine(p, hv_ram_start, &bi);
    map_physical_memory(p, &bi);
    match crate::tsc::calibrate() {
        Some(khz) => hvlog!("TSC: {khz} kHz (PIT calibration)"),
        None => hvlog!("TSC: PIT calibration failed; guests see no TSC frequency"),
    }
    WALL_CLOCK.call_once(read_cmos_clock);
    // The legacy interrupt hardware is the hypervisor's and stays silent; guests get virtual
    // controllers. The LAPIC timer becomes this pCPU's timer.
    irq::quiesce_platform(p.board.ioapics.iter().map(|io| io.address));
    // ACRN passes local APICs through in x2APIC mode: every pCPU switches when a VM needs it.
    let lapic_pt = acrn_static_config::GuestFlags::LAPIC_PASSTHROUGH;
    if p.vms.iter().any(|v| v.guest_flags.0 & lapic_pt != 0) {
        if x86::lapic::request_x2apic() {
            hvlog!("local APICs: x2APIC mode (a VM has lapic_passthrough)");
        } else {
            hvlog!("local APICs: xAPIC mode; this CPU has no x2APIC for lapic_passthrough");
        }
    }
    x86::lapic::enable();
    let khz = irq::calibrate_timer();
    hvlog!("local APIC timer: {khz} kHz");
    crate::vm::prepare_all(p, &bi);
    let aps = p
        .board
        .pcpus
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != bsp)
        .map(|(i, c)| (i, c.apic_id));
    if let Err(e) = cpu::start_aps(aps) {
        hvlog!(
            "pCPU {} (APIC ID {}) did not start; its VM cannot run",
            e.pcpu,
            e.apic_id
        );
    }
    crate::shell::session::init(bsp);
    BOOT_DONE.store(true, Ordering::Release);
    crate::vcpu::run::pcpu_loop(bsp)
}

/// Maps the physical memory above 4 GiB: the RAM the board and the boot memory map report
/// and, where the CPU has 1 GiB pages (cheap: one table per 512 GiB), the address space up to
/// 1 TiB, where firmware puts 64-bit PCI windows.
fn map_physical_memory(p: &PlatformConfig, bi: &BootInfo) {
    const HIGH_MMIO_TOP: u64 = 1 << 40;
    let ram_top = p
        .board
        .ram
        .iter()
        .map(|r| r.end())
        .chain(bi.memmap().iter().map(|e| e.addr.saturating_add(e.size)))
        .max()
        .unwrap_or(0);
    let huge = x86::identity::has_1g_pages();
    let top = if huge {
        let width = u32::from(p.board.physical_address_bits.clamp(32, 63));
        ram_top.max(HIGH_MMIO_TOP.min(1 << width))
    } else {
        ram_top
    };
    if top <= x86::identity::reach() {
        return;
    }
    let reach = x86::identity::extend(top, huge, || frames::alloc(1));
    let pages = if huge { "1 GiB" } else { "2 MiB" };
    hvlog!("physical memory mapped 1:1 up to {reach:#x} ({pages} pages above 4 GiB)");
    if reach < ram_top {
        hvlog!(
            "out of page-table frames: RAM from {reach:#x} to {ram_top:#x} is left out of every VM"
        );
    }
}

#[no_mangle]
extern "C" fn hv_ap_main() -> ! {
    let id = cpu::starting_ap_id();
    cpu::init_this_cpu(id);
    x86::lapic::enable();
    cpu::ap_online();
    while !BOOT_DONE.load(Ordering::Acquire) {
        x86::pause();
    }
    crate::vcpu::run::pcpu_loop(id)
}

/// Seconds since the Unix epoch at boot, from the CMOS clock (0 if it reads as nonsense).
pub fn wall_clock() -> u64 {
    WALL_CLOCK.get().copied().unwrap_or(0)
}

fn read_cmos_clock() -> u64 {
    let reg = |r: u8| {
        x86::outb(0x70, r);
        x86::inb(0x71)
    };
    // Wait for an update cycle to be over (UIP clear), then read the fields twice until equal.
    for _ in 0..100_000 {
        if reg(0x0A) & 0x80 == 0 {
            break;
        }
    }
    let read = || [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(reg);
    let mut t = read();
    for _ in 0..4 {
        let again = read();
        if again == t {
            break;
        }
        t = again;
    }
    let b = reg(0x0B);
    let bin = |v: u8| {
        if b & 0x04 != 0 {
            v as u64
        } else {
            ((v >> 4) * 10 + (v & 0xF)) as u64
        }
    };
    let hour = if b & 0x02 == 0 && t[2] & 0x80 != 0 {
        (bin(t[2] & 0x7F) % 12) + 12
    } else {
        bin(t[2] & 0x7F)
    };
    let century = match bin(t[6]) {
        19..=21 => bin(t[6]),
        _ => 20,
    };
    let days = crate::devices::rtc::days_from_civil(
        (century * 100 + bin(t[5])) as i64,
        bin(t[4]) as u8,
        bin(t[3]) as u8,
    );
    let secs = days * 86_400 + (hour * 3600 + bin(t[1]) * 60 + bin(t[0])) as i64;
    secs.max(0) as u64
}

bitflags! {
    /// ACPI PM1 control register (SLP_TYP is the value in bits 12:10).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Pm1Control: u16 {
        const SLP_EN = 1 << 13;
    }
}

/// Every VM has stopped: the machine is switched off (ACPI S5 through the FADT's PM1 control
/// blocks; the emulators' exit ports where ACPI does not end the run), else this pCPU halts.
pub fn power_off() -> ! {
    if let Some(Some(s)) = SOFT_OFF.get() {
        let sleep = |slp_typ: u8| (slp_typ as u16) << 10 | Pm1Control::SLP_EN.bits();
        x86::outw(s.pm1a_cnt, sleep(s.slp_typ_a));
        if let Some(b) = s.pm1b_cnt {
            x86::outw(b, sleep(s.slp_typ_b));
        }
        x86::delay_us(100_000);
    }
    // Bochs' shutdown port, then QEMU's isa-debug-exit (when the run added it).
    for &c in b"Shutdown" {
        x86::outb(0x8900, c);
    }
    x86::outl(0xF4, 0);
    crate::console::line("[hv] ", format_args!("power-off failed; halting"));
    x86::halt_forever()
}

/// Resets the machine (the shell's `reboot`): the FADT's reset register, then the PCI reset
/// control port 0xCF9 (full reset), then the keyboard controller's reset line; halts if the
/// machine is still there.
pub fn reboot() -> ! {
    if let Some(Some(r)) = RESET_REG.get() {
        match r.space {
            acpi::ResetSpace::Port if r.address <= 0xFFFF => x86::outb(r.address as u16, r.value),
            acpi::ResetSpace::Memory if r.address < 1 << 32 => {
                // SAFETY: the register the firmware names for this, identity-mapped below 4 GiB.
                unsafe { core::ptr::write_volatile(r.address as *mut u8, r.value) }
            }
            acpi::ResetSpace::PciConfig => {
                // Bus 0; ACPI packs device (bits 47:32), function (31:16), register (15:0).
                let dev = (r.address >> 32) as u32 & 0x1F;
                let func = (r.address >> 16) as u32 & 0x7;
                let reg = r.address as u32 & 0xFC;
                x86::outl(0xCF8, 0x8000_0000 | dev << 11 | func << 8 | reg);
                x86::outb(0xCFC + (r.address as u16 & 3), r.value);
            }
            _ => {}
        }
        x86::delay_us(100_000);
    }
    // Reset control register: system reset (bit 1) with a full reset (bit 3), as a 0->1 edge
    // of bit 2.
    x86::outb(0xCF9, 0x0A);
    x86::outb(0xCF9, 0x0E);
    x86::delay_us(100_000);
    // The 8042's pulse of the CPU reset line.
    x86::outb(0x64, 0xFE);
    x86::delay_us(100_000);
    crate::console::line("[hv] ", format_args!("reset failed; halting"));
    x86::halt_forever()
}

/// The machine must be the board the tables were generated for: same CPUs (by APIC ID), the
/// board's RAM present, the hypervisor's and every VM's memory in RAM.
fn check_machine(p: &PlatformConfig, hv_ram_start: u64, bi: &BootInfo) {
    if p.board.pcpus.len() > cpu::MAX_PCPUS {
        fatal(format_args!(
            "board has {} pCPUs; this build supports {}",
            p.board.pcpus.len(),
            cpu::MAX_PCPUS
        ));
    }
    if hv_ram_start != p.hv.ram.start {
        fatal(format_args!(
            "linked at {hv_ram_start:#x} but the tables put the hypervisor at {:#x}",
            p.hv.ram.start
        ));
    }
    // SAFETY: linker-provided symbols; only their addresses are used.
    let (img_start, img_end) = unsafe {
        (
            &__image_start as *const u8 as u64,
            &__image_end as *const u8 as u64,
        )
    };
    if img_start < p.hv.ram.start || img_end > p.hv.ram.end() {
        fatal(format_args!(
            "hypervisor image [{img_start:#x}, {img_end:#x}) exceeds its RAM [{:#x}, {:#x})",
            p.hv.ram.start,
            p.hv.ram.end()
        ));
    }
    let rsdp = if bi.rsdp != 0 {
        Some(bi.rsdp)
    } else {
        acpi::find_rsdp(&Identity)
    };
    RSDP.call_once(|| rsdp);
    let pm = PM_TIMER.call_once(|| rsdp.and_then(|r| acpi::pm_timer(&Identity, r)));
    SOFT_OFF.call_once(|| rsdp.and_then(|r| acpi::soft_off(&Identity, r)));
    RESET_REG.call_once(|| rsdp.and_then(|r| acpi::reset_register(&Identity, r)));
    match pm {
        Some(t) => hvlog!("ACPI PM timer at port {:#x}", t.port),
        None => hvlog!("no ACPI PM timer: guests calibrate the TSC without one"),
    }
    let mut ids = [0u32; acpi::MAX_CPUS];
    let found = rsdp.and_then(|r| acpi::madt_apic_ids(&Identity, r, &mut ids));
    match found {
        None => hvlog!("no ACPI MADT found: CPU check limited to the APs answering"),
        Some(n) => {
            let ids = &ids[..n];
            for c in p.board.pcpus {
                if !ids.contains(&c.apic_id) {
                    fatal(format_args!(
                        "board {} lists pCPU {} with APIC ID {}, which this machine does not have (MADT: {:?})",
                        p.board.name, c.id, c.apic_id, ids
                    ));
                }
            }
            if n != p.board.pcpus.len() {
                fatal(format_args!(
                    "machine has {n} CPUs (APIC IDs {ids:?}) but board {} lists {}",
                    p.board.name,
                    p.board.pcpus.len()
                ));
            }
        }
    }
    for r in p.board.ram {
        if !bi.is_ram(r.start, r.size) {
            fatal(format_args!(
                "board RAM [{:#x}, {:#x}) is not RAM on this machine (boot memory map {:x?})",
                r.start,
                r.end(),
                bi.memmap()
            ));
        }
    }
    if !bi.is_ram(p.hv.ram.start, p.hv.ram.size) {
        fatal(format_args!(
            "hypervisor RAM [{:#x}, {:#x}) is not RAM on this machine",
            p.hv.ram.start,
            p.hv.ram.end()
        ));
    }
    for vm in p
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
    {
        for r in vm.memory {
            if !bi.is_ram(r.hpa, r.size) {
                fatal(format_args!(
                    "VM {} {}: memory [{:#x}, {:#x}) is not RAM on this machine",
                    vm.id,
                    vm.name,
                    r.hpa,
                    r.hpa + r.size
                ));
            }
        }
    }
}
