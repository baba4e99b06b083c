//! An IDT with a gate for every vector 0-255 that counts, per CPU, what each CPU received.
//! NMI (vector 2) and vectors 32-255 are counted and return; the other exceptions (0-31) are
//! fatal, as in the shared IDT. After counting, a mode's hook runs (it may acknowledge a
//! device), then the local APIC gets its EOI (not for NMI and the spurious vector).

use crate::lapic;
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use guest_common::arch::halt_forever;
use guest_common::println;

global_asm!(
    include_str!(concat!(env!("OUT_DIR"), "/vector_stubs.S")),
    r#"
.pushsection .text.vectors, "ax"
vector_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %rbp
    leaq 80(%rsp), %rdi
    movq %rsp, %rbp
    andq $-16, %rsp
    cld
    call count_vector
    movq %rbp, %rsp
    popq %rbp
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp
    iretq
.popsection
"#,
    options(att_syntax)
);

extern "C" {
    static vector_stubs: u8;
}

/// Each stub is 16 bytes long (see build.rs).
const STUB_SIZE: u64 = 16;
pub const NMI: u8 = 2;
/// The spurious-interrupt vector these guests program into the SVR.
pub const SPURIOUS: u8 = 0xFF;
/// CPUs counted apart; a higher APIC ID shares the last slot.
pub const MAX_CPUS: usize = 4;

static COUNTS: [[AtomicU32; 256]; MAX_CPUS] =
    [const { [const { AtomicU32::new(0) }; 256] }; MAX_CPUS];

/// Called (interrupts disabled) after a vector was counted (0: none). It must not print.
static HOOK: AtomicUsize = AtomicUsize::new(0);

pub fn on_vector(f: fn(u8)) {
    HOOK.store(f as usize, Ordering::SeqCst);
}

/// How often CPU `cpu` (its APIC ID) received `vector`.
pub fn count(cpu: usize, vector: u8) -> u32 {
    COUNTS[cpu.min(MAX_CPUS - 1)][vector as usize].load(Ordering::SeqCst)
}

/// The calling CPU's slot: its initial APIC ID (CPUID.1:EBX[31:24]), which works in both
/// xAPIC and x2APIC mode.
pub fn this_cpu() -> usize {
    let (_, ebx, _, _) = guest_common::arch::cpuid(1, 0);
    ((ebx >> 24) as usize).min(MAX_CPUS - 1)
}

#[repr(C)]
struct Frame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
}

/// While set, a #GP raised by a WRMSR is counted and the WRMSR skipped (a hypervisor that
/// refuses an ICR write answers #GP, as ACRN does for a VM with its local APIC passed
/// through); any other #GP is still fatal.
static SKIP_WRMSR_GP: AtomicBool = AtomicBool::new(false);
static WRMSR_GPS: AtomicU32 = AtomicU32::new(0);
const GP: u8 = 13;
const WRMSR: [u8; 2] = [0x0F, 0x30];

pub fn skip_wrmsr_gp(on: bool) {
    SKIP_WRMSR_GP.store(on, Ordering::SeqCst);
}

/// WRMSRs that raised #GP and were skipped.
pub fn wrmsr_gps() -> u32 {
    WRMSR_GPS.load(Ordering::SeqCst)
}

#[no_mangle]
extern "C" fn count_vector(f: &mut Frame) {
    let vector = f.vector as u8;
    if vector == GP && SKIP_WRMSR_GP.load(Ordering::SeqCst) {
        // SAFETY: RIP points at the faulting instruction in this guest's identity-mapped code.
        let insn = unsafe { core::ptr::read_unaligned(f.rip as *const [u8; 2]) };
        if insn == WRMSR {
            WRMSR_GPS.fetch_add(1, Ordering::SeqCst);
            f.rip += 2;
            return;
        }
    }
    if vector < 32 && vector != NMI {
        let cr2: u64;
        // SAFETY: reading CR2 has no side effects.
        unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
        guest_common::serial::Console::force_unlock();
        println!(
            "exception: vector={} error={:#x} rip={:#x} cs={:#x} rflags={:#x} cr2={:#x}",
            f.vector, f.error, f.rip, f.cs, f.rflags, cr2
        );
        println!("verdict: FAIL (exception)");
        halt_forever()
    }
    COUNTS[this_cpu()][vector as usize].fetch_add(1, Ordering::SeqCst);
    let hook = HOOK.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: only `on_vector` stores here, and it stores a `fn(u8)`.
        let hook: fn(u8) = unsafe { core::mem::transmute::<usize, fn(u8)>(hook) };
        hook(vector);
    }
    if vector >= 32 && vector != SPURIOUS {
        lapic::eoi();
    }
}

#[repr(C, align(16))]
struct Idt([u64; 512]);

static mut IDT: Idt = Idt([0; 512]);

/// Fills the IDT (first call) and loads it on this CPU.
pub fn load() {
    // SAFETY: every CPU writes identical values, so concurrent first calls are harmless, and
    // the table lives for the whole run.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        let base = core::ptr::addr_of!(vector_stubs) as u64;
        for v in 0..256 {
            let h = base + v as u64 * STUB_SIZE;
            // 64-bit interrupt gate, present, DPL 0, selector 0x08.
            idt.0[2 * v] =
                (h & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((h >> 16 & 0xFFFF) << 48);
            idt.0[2 * v + 1] = h >> 32;
        }
        let ptr = idt.0.as_ptr() as u64;
        let idtr: [u16; 5] = [
            (core::mem::size_of::<Idt>() - 1) as u16,
            ptr as u16,
            (ptr >> 16) as u16,
            (ptr >> 32) as u16,
            (ptr >> 48) as u16,
        ];
        asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(readonly, nostack, preserves_flags));
    }
}
