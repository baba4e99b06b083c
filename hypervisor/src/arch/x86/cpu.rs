//! Per-CPU data (GDT with a TSS, IDT, stacks) and application-processor start-up.

use super::{cpuid, delay_us, lapic, read_cr3};
use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

pub const MAX_PCPUS: usize = 16;
pub const STACK_SIZE: usize = 0x10000;
const IST_SIZE: usize = 0x2000;
/// Physical page the AP trampoline is copied to (SIPI vector 0x08); must match `TRAMP` in boot.S.
const AP_TRAMPOLINE: u64 = 0x8000;

/// Interior-mutable storage touched only by the CPU that owns the slot (or by the BSP before
/// that CPU starts).
#[repr(transparent)]
pub struct CpuCell<T>(UnsafeCell<T>);
// SAFETY: every slot is owned by one CPU; see the users.
unsafe impl<T> Sync for CpuCell<T> {}
impl<T> CpuCell<T> {
    pub const fn new(v: T) -> Self {
        CpuCell(UnsafeCell::new(v))
    }
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

#[repr(C, packed)]
struct Tss {
    _r0: u32,
    rsp: [u64; 3],
    _r1: u64,
    ist: [u64; 7],
    _r2: u64,
    _r3: u16,
    iomap: u16,
}

#[repr(C, align(64))]
pub struct PerCpu {
    /// pCPU id; at %gs:0 so `this_cpu()` is one load.
    pub id: u64,
    gdt: [u64; 5],
    tss: Tss,
}

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

#[allow(clippy::declare_interior_mutable_const)]
const PERCPU_INIT: CpuCell<PerCpu> = CpuCell::new(PerCpu {
    id: 0,
    gdt: [0; 5],
    tss: Tss {
        _r0: 0,
        rsp: [0; 3],
        _r1: 0,
        ist: [0; 7],
        _r2: 0,
        _r3: 0,
        iomap: 104,
    },
});
static PERCPU: [CpuCell<PerCpu>; MAX_PCPUS] = [PERCPU_INIT; MAX_PCPUS];
#[allow(clippy::declare_interior_mutable_const)]
const STACK_INIT: CpuCell<Stack<STACK_SIZE>> = CpuCell::new(Stack([0; STACK_SIZE]));
static STACKS: [CpuCell<Stack<STACK_SIZE>>; MAX_PCPUS] = [STACK_INIT; MAX_PCPUS];
#[allow(clippy::declare_interior_mutable_const)]
const IST_INIT: CpuCell<Stack<IST_SIZE>> = CpuCell::new(Stack([0; IST_SIZE]));
static IST_STACKS: [CpuCell<Stack<IST_SIZE>>; MAX_PCPUS] = [IST_INIT; MAX_PCPUS];

static IDT: CpuCell<[u128; 256]> = CpuCell::new([0; 256]);

extern "C" {
    static exc_table: [u64; 32];
    static irq_stubs: u8;
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    fn ap_start64();
}

/// Fills the shared IDT: the 32 exception stubs (#DF, NMI and #MC on IST1) and the external
/// interrupt stubs of vectors 32-255 (16 bytes apart, see boot.S). BSP only, once.
pub fn init_idt() {
    // SAFETY: runs on the BSP before any other CPU loads the IDT.
    let idt = unsafe { &mut *IDT.get() };
    // SAFETY: irq_stubs is a symbol of our own text.
    let stubs = unsafe { &irq_stubs as *const u8 as u64 };
    for (v, e) in idt.iter_mut().enumerate() {
        let off = match v {
            // SAFETY: exc_table is a read-only table emitted by boot.S.
            0..32 => unsafe { exc_table[v] },
            _ => stubs + 16 * (v as u64 - 32),
        };
        let ist: u128 = if v == 8 || v == 18 || v == 2 { 1 } else { 0 };
        *e = (off & 0xFFFF) as u128
            | (0x08u128 << 16)
            | (ist << 32)
            | (0x8Eu128 << 40)
            | (((off >> 16) & 0xFFFF) as u128) << 48
            | ((off >> 32) as u128) << 64;
    }
}

/// Loads this CPU's GDT, TSS, IDT and GS base. Called once on each pCPU, on its own stack.
pub fn init_this_cpu(id: usize) {
    // SAFETY: slot `id` belongs to the calling CPU, which is the only one touching it now.
    let pc = unsafe { &mut *PERCPU[id].get() };
    pc.id = id as u64;
    let ist_top = IST_STACKS[id].get() as u64 + IST_SIZE as u64;
    pc.tss.ist = [ist_top, 0, 0, 0, 0, 0, 0];
    let tss = &pc.tss as *const Tss as u64;
    let limit = (core::mem::size_of::<Tss>() - 1) as u64;
    pc.gdt = [
        0,
        0x00AF_9B00_0000_FFFF,
        0x00CF_9300_0000_FFFF,
        (limit & 0xFFFF) | (tss & 0xFF_FFFF) << 16 | 0x89 << 40 | ((tss >> 24) & 0xFF) << 56,
        tss >> 32,
    ];
    #[repr(C, packed)]
    struct Dtr {
        limit: u16,
        base: u64,
    }
    let gdtr = Dtr {
        limit: (5 * 8 - 1) as u16,
        base: pc.gdt.as_ptr() as u64,
    };
    let idtr = Dtr {
        limit: (256 * 16 - 1) as u16,
        base: IDT.get() as u64,
    };
    // SAFETY: the descriptors above are valid for the code/data selectors we already use.
    unsafe {
        asm!(
            "lgdt [{g}]",
            "push 0x08",
            "lea {t}, [rip + 2f]",
            "push {t}",
            "retfq",
            "2:",
            "mov {t:e}, 0x10",
            "mov ds, {t:e}",
            "mov es, {t:e}",
            "mov ss, {t:e}",
            "mov {t:e}, 0x18",
            "ltr {t:x}",
            "lidt [{i}]",
            g = in(reg) &gdtr,
            i = in(reg) &idtr,
            t = out(reg) _,
        );
    }
    GsBase::write(VirtAddr::new(pc as *mut PerCpu as u64));
}

/// The pCPU id of the caller.
pub fn this_cpu() -> usize {
    let id: u64;
    // SAFETY: GS base points at this CPU's PerCpu, whose first field is the id.
    unsafe { asm!("mov {}, gs:[0]", out(reg) id, options(nostack, readonly)) }
    id as usize
}

pub fn stack_top(id: usize) -> u64 {
    STACKS[id].get() as u64 + STACK_SIZE as u64
}

/// APIC ID of the calling CPU from CPUID (works before the APIC is touched).
pub fn initial_apic_id() -> u32 {
    cpuid(1, 0)[1] >> 24
}

static AP_STARTING: AtomicUsize = AtomicUsize::new(usize::MAX);
static AP_ONLINE: AtomicU32 = AtomicU32::new(0);

/// The pCPU id the trampoline hands to the AP that is starting right now.
pub fn starting_ap_id() -> usize {
    AP_STARTING.load(Ordering::Acquire)
}
/// Called by an AP once it runs on its own descriptors.
pub fn ap_online() {
    AP_ONLINE.fetch_add(1, Ordering::AcqRel);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApTimeout {
    pub pcpu: usize,
    pub apic_id: u32,
}

/// Copies the trampoline below 1 MiB and starts each AP in turn with INIT-SIPI-SIPI, waiting
/// for it to report before the next (they share the trampoline's stack word).
pub fn start_aps(aps: impl Iterator<Item = (usize, u32)>) -> Result<(), ApTimeout> {
    // SAFETY: the trampoline symbols delimit a read-only blob in our image; the destination page
    // is conventional memory below 1 MiB that nothing else uses after boot-info parsing.
    unsafe {
        let start = &ap_trampoline_start as *const u8;
        let len = &ap_trampoline_end as *const u8 as usize - start as usize;
        core::ptr::copy_nonoverlapping(start, AP_TRAMPOLINE as *mut u8, len);
        core::ptr::write_volatile((AP_TRAMPOLINE + 8) as *mut u64, read_cr3());
        core::ptr::write_volatile(
            (AP_TRAMPOLINE + 24) as *mut u64,
            ap_start64 as *const () as u64,
        );
    }
    for (pcpu, apic_id) in aps {
        let before = AP_ONLINE.load(Ordering::Acquire);
        AP_STARTING.store(pcpu, Ordering::Release);
        // SAFETY: patching the stack word of our own trampoline copy.
        unsafe { core::ptr::write_volatile((AP_TRAMPOLINE + 16) as *mut u64, stack_top(pcpu)) };
        lapic::send_init(apic_id);
        delay_us(10_000);
        for _ in 0..2 {
            lapic::send_sipi(apic_id, (AP_TRAMPOLINE >> 12) as u8);
            delay_us(200);
        }
        let mut waited = 0;
        while AP_ONLINE.load(Ordering::Acquire) == before {
            delay_us(100);
            waited += 1;
            if waited > 20_000 {
                return Err(ApTimeout { pcpu, apic_id });
            }
        }
    }
    Ok(())
}
