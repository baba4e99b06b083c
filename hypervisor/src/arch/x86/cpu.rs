//! Per-CPU data (GDT with a TSS, IDT, stacks) and application-processor start-up.

use super::{cpuid, delay_us, lapic, read_cr3};
use core::arch::asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::{lidt, load_tss};
use x86_64::registers::model_specific::GsBase;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::idt::{Entry, HandlerFunc};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::structures::DescriptorTablePointer;
use x86_64::{PrivilegeLevel, VirtAddr};

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

/// The code selector of every GDT here (boot.S's, the AP trampoline's long-mode one and the
/// per-CPU ones built below all put the 64-bit code segment at 0x08).
const CODE_SELECTOR: SegmentSelector = SegmentSelector::new(1, PrivilegeLevel::Ring0);

#[repr(C, align(64))]
pub struct PerCpu {
    /// pCPU id; at %gs:0 so `this_cpu()` is one load.
    pub id: u64,
    /// Null, code (0x08), data (0x10), TSS (0x18, two slots).
    gdt: GlobalDescriptorTable<5>,
    tss: TaskStateSegment,
}

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

#[allow(clippy::declare_interior_mutable_const)]
const PERCPU_INIT: CpuCell<PerCpu> = CpuCell::new(PerCpu {
    id: 0,
    gdt: GlobalDescriptorTable::empty(),
    tss: TaskStateSegment::new(),
});
static PERCPU: [CpuCell<PerCpu>; MAX_PCPUS] = [PERCPU_INIT; MAX_PCPUS];
#[allow(clippy::declare_interior_mutable_const)]
const STACK_INIT: CpuCell<Stack<STACK_SIZE>> = CpuCell::new(Stack([0; STACK_SIZE]));
static STACKS: [CpuCell<Stack<STACK_SIZE>>; MAX_PCPUS] = [STACK_INIT; MAX_PCPUS];
#[allow(clippy::declare_interior_mutable_const)]
const IST_INIT: CpuCell<Stack<IST_SIZE>> = CpuCell::new(Stack([0; IST_SIZE]));
static IST_STACKS: [CpuCell<Stack<IST_SIZE>>; MAX_PCPUS] = [IST_INIT; MAX_PCPUS];

/// Every vector has a stub, the reserved exception vectors too, so the IDT is a plain array of
/// gates rather than the crate's `InterruptDescriptorTable` (which hides the reserved ones).
static IDT: CpuCell<[Entry<HandlerFunc>; 256]> = CpuCell::new([const { Entry::missing() }; 256]);

extern "C" {
    static exc_table: [u64; 32];
    static irq_stubs: u8;
    static nmi_entry: u8;
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
    fn ap_start64();
}

/// Fills the shared IDT: the 32 exception stubs (#DF, NMI and #MC on IST1; NMI returns, see
/// `irq::hv_nmi`) and the external
/// interrupt stubs of vectors 32-255 (16 bytes apart, see boot.S). BSP only, once.
pub fn init_idt() {
    // SAFETY: runs on the BSP before any other CPU loads the IDT.
    let idt = unsafe { &mut *IDT.get() };
    // SAFETY: irq_stubs is a symbol of our own text.
    let stubs = unsafe { &irq_stubs as *const u8 as u64 };
    // SAFETY: as above.
    let nmi = unsafe { &nmi_entry as *const u8 as u64 };
    for (v, e) in idt.iter_mut().enumerate() {
        let off = match v {
            2 => nmi,
            // SAFETY: exc_table is a read-only table emitted by boot.S.
            0..32 => unsafe { exc_table[v] },
            _ => stubs + 16 * (v as u64 - 32),
        };
        set_gate(e, off, v == 8 || v == 18 || v == 2);
    }
}

/// An interrupt gate to `handler` in our code segment, on IST1 if `ist`.
fn set_gate(e: &mut Entry<HandlerFunc>, handler: u64, ist: bool) {
    // SAFETY: `handler` is the entry of our stub for this vector, which expects the CPU's frame.
    let options = unsafe { e.set_handler_addr(VirtAddr::new(handler)) };
    // SAFETY: the selector of our 64-bit code segment in every GDT we load.
    unsafe { options.set_code_selector(CODE_SELECTOR) };
    if ist {
        // SAFETY: IST1 is each CPU's own stack for #DF, NMI and #MC only.
        unsafe { options.set_stack_index(0) };
    }
}

/// Loads this CPU's GDT, TSS, IDT and GS base. Called once on each pCPU, on its own stack.
pub fn init_this_cpu(id: usize) {
    // SAFETY: slot `id` belongs to the calling CPU, which is the only one touching it now.
    let pc = unsafe { &mut *PERCPU[id].get() };
    pc.id = id as u64;
    let ist_top = IST_STACKS[id].get() as u64 + IST_SIZE as u64;
    pc.tss = TaskStateSegment::new();
    pc.tss.interrupt_stack_table[0] = VirtAddr::new(ist_top);
    let mut gdt = GlobalDescriptorTable::empty();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    // SAFETY: the TSS lives in this CPU's static slot, as long as the GDT that points at it.
    let tss = gdt.append(unsafe { Descriptor::tss_segment_unchecked(&pc.tss) });
    pc.gdt = gdt;
    let idtr = DescriptorTablePointer {
        limit: (256 * 16 - 1) as u16,
        base: VirtAddr::new(IDT.get() as u64),
    };
    // SAFETY: the GDT is static and no longer changes; its selectors are the ones already in
    // use (code 0x08, data 0x10, TSS 0x18); the IDT is filled by `init_idt`.
    unsafe {
        pc.gdt.load_unsafe();
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss);
        lidt(&idtr);
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
