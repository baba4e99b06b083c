//! Starting the application processors with INIT-SIPI-SIPI through the xAPIC.
//!
//! The real-mode trampoline from boot.S is copied to a free page below 1 MiB; each AP
//! runs it, enters long mode on the BSP's page tables, takes the next stack and calls
//! [`ap_main`], which prints `cpu N up`, counts itself online and halts (or runs the task
//! a guest set with [`set_ap_task`]).

use crate::acpi::{Madt, DEFAULT_LAPIC};
use crate::arch::{halt_forever, spin_tsc};
use crate::multiboot::{MemoryMap, E820_RAM};
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// CPUs that reached Rust, the BSP included.
static ONLINE: AtomicU32 = AtomicU32::new(1);

/// The `fn(u32) -> !` every AP runs once online, as an address (0: halt).
static AP_TASK: AtomicUsize = AtomicUsize::new(0);

/// Makes every AP started afterwards run `task(index)` instead of halting.
pub fn set_ap_task(task: fn(u32) -> !) {
    AP_TASK.store(task as usize, Ordering::SeqCst);
}

/// TSC ticks per millisecond assumed for the start-up delays. Deliberately high (3 GHz):
/// a slower TSC only makes the waits longer, never too short.
const TSC_PER_MS: u64 = 3_000_000;
/// How long to wait for one AP to report in.
const AP_TIMEOUT_MS: u64 = 500;

const LAPIC_SVR: usize = 0xF0;
const LAPIC_ICR_LO: usize = 0x300;
const LAPIC_ICR_HI: usize = 0x310;
const ICR_PENDING: u32 = 1 << 12;
const ICR_INIT: u32 = 0x4500; // INIT, level assert
const ICR_SIPI: u32 = 0x4600; // start-up, level assert; low byte = vector (page number)

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SmpError {
    #[error("no free RAM page below 1 MiB for the AP trampoline")]
    NoTrampolinePage,
    #[error("local APIC base {0:#x} is not a usable xAPIC address")]
    BadLapicBase(u64),
}

extern "C" {
    static ap_tramp_start: u8;
    static ap_tramp_end: u8;
}

/// Entry of every AP (called from boot.S with its index, 1-based).
#[no_mangle]
extern "C" fn ap_main(index: u32) -> ! {
    crate::idt::load();
    crate::println!("cpu {} up", index);
    ONLINE.fetch_add(1, Ordering::SeqCst);
    match AP_TASK.load(Ordering::SeqCst) {
        0 => halt_forever(),
        task => {
            // SAFETY: only `set_ap_task` stores here, always a `fn(u32) -> !`.
            let task: fn(u32) -> ! = unsafe { core::mem::transmute(task) };
            task(index)
        }
    }
}

/// Number of CPUs that have reached Rust code.
pub fn online() -> u32 {
    ONLINE.load(Ordering::SeqCst)
}

struct Lapic(u64);

impl Lapic {
    fn read(&self, reg: usize) -> u32 {
        // SAFETY: the base was validated to lie in the identity-mapped, uncached top GiB.
        unsafe { core::ptr::read_volatile((self.0 as usize + reg) as *const u32) }
    }
    fn write(&self, reg: usize, v: u32) {
        // SAFETY: as for `read`.
        unsafe { core::ptr::write_volatile((self.0 as usize + reg) as *mut u32, v) }
    }
    fn ipi(&self, apic_id: u32, cmd: u32) {
        self.write(LAPIC_ICR_HI, apic_id << 24);
        self.write(LAPIC_ICR_LO, cmd);
        for _ in 0..100_000 {
            if self.read(LAPIC_ICR_LO) & ICR_PENDING == 0 {
                break;
            }
            core::hint::spin_loop();
        }
    }
}

/// First 4 KiB page at or above 0x8000 (and below the EBDA) that the e820 map calls RAM.
fn trampoline_page(map: Option<&MemoryMap>) -> Option<u64> {
    let Some(map) = map else {
        return Some(0x8000); // no map: the conventional choice
    };
    (0x8000..0x9F000u64).step_by(0x1000).find(|&p| {
        map.entries()
            .iter()
            .any(|e| e.kind == E820_RAM && e.base <= p && e.end() >= p + 0x1000)
    })
}

/// Starts every enabled CPU of the MADT except the BSP, one at a time. Returns how many
/// CPUs (BSP included) are online afterwards.
pub fn start_aps(madt: &Madt, map: Option<&MemoryMap>) -> Result<u32, SmpError> {
    let base = if madt.lapic_base == 0 {
        DEFAULT_LAPIC
    } else {
        madt.lapic_base
    };
    if base % 0x1000 != 0 || !(0xC000_0000..0xFFFF_F000).contains(&base) {
        return Err(SmpError::BadLapicBase(base));
    }
    // The initial APIC ID from CPUID, so a single-CPU VM never touches the LAPIC.
    let bsp = crate::arch::cpuid(1, 0).1 >> 24;
    let mut aps = madt
        .apic_ids()
        .iter()
        .copied()
        .filter(|&id| id != bsp && id < 0xFF)
        .peekable();
    if aps.peek().is_none() {
        return Ok(online());
    }
    let lapic = Lapic(base);
    let page = trampoline_page(map).ok_or(SmpError::NoTrampolinePage)?;

    // SAFETY: the symbols delimit the trampoline bytes in our image, and `page` is RAM
    // below 1 MiB that nothing else uses once boot information has been copied out.
    unsafe {
        let start = core::ptr::addr_of!(ap_tramp_start);
        let len = core::ptr::addr_of!(ap_tramp_end) as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, page as usize as *mut u8, len.min(0x1000));
    }

    lapic.write(LAPIC_SVR, lapic.read(LAPIC_SVR) | 0x1FF); // software-enable, vector 0xFF
    let vector = (page >> 12) as u32;
    for id in aps {
        let before = online();
        lapic.ipi(id, ICR_INIT);
        spin_tsc(10 * TSC_PER_MS);
        for _ in 0..2 {
            if online() > before {
                break;
            }
            lapic.ipi(id, ICR_SIPI | vector);
            spin_tsc(TSC_PER_MS / 5);
        }
        let start = crate::arch::rdtsc();
        while online() == before
            && crate::arch::rdtsc().wrapping_sub(start) < AP_TIMEOUT_MS * TSC_PER_MS
        {
            core::hint::spin_loop();
        }
    }
    Ok(online())
}
