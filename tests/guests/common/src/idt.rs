//! A minimal IDT for CPU exceptions 0-31: any exception prints one `exception:` line and a
//! failing verdict instead of silently triple-faulting. The one exception a guest may survive is
//! a #UD it asked for ([`catch_ud`]). Vectors [`IRQ_BASE`]..+8 go to the handler a guest sets
//! with [`on_interrupt`] (interrupts stay disabled unless the guest enables them).

use crate::arch::halt_forever;
use crate::println;
use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

global_asm!(
    r#"
.pushsection .text.isr, "ax"
.macro ISR_NOERR n
isr_\n:
    pushq $0
    pushq $\n
    jmp isr_common
.endm
.macro ISR_ERR n
isr_\n:
    pushq $\n
    jmp isr_common
.endm
ISR_NOERR 0
ISR_NOERR 1
ISR_NOERR 2
ISR_NOERR 3
ISR_NOERR 4
ISR_NOERR 5
ISR_NOERR 6
ISR_NOERR 7
ISR_ERR 8
ISR_NOERR 9
ISR_ERR 10
ISR_ERR 11
ISR_ERR 12
ISR_ERR 13
ISR_ERR 14
ISR_NOERR 15
ISR_NOERR 16
ISR_ERR 17
ISR_NOERR 18
ISR_NOERR 19
ISR_NOERR 20
ISR_ERR 21
ISR_NOERR 22
ISR_NOERR 23
ISR_NOERR 24
ISR_NOERR 25
ISR_NOERR 26
ISR_NOERR 27
ISR_NOERR 28
ISR_ERR 29
ISR_ERR 30
ISR_NOERR 31
ISR_NOERR 64
ISR_NOERR 65
ISR_NOERR 66
ISR_NOERR 67
ISR_NOERR 68
ISR_NOERR 69
ISR_NOERR 70
ISR_NOERR 71
isr_common:
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
    call exception_handler
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
.pushsection .rodata.isr, "a"
.balign 8
.global isr_table
isr_table:
    .quad isr_0, isr_1, isr_2, isr_3, isr_4, isr_5, isr_6, isr_7
    .quad isr_8, isr_9, isr_10, isr_11, isr_12, isr_13, isr_14, isr_15
    .quad isr_16, isr_17, isr_18, isr_19, isr_20, isr_21, isr_22, isr_23
    .quad isr_24, isr_25, isr_26, isr_27, isr_28, isr_29, isr_30, isr_31
    .quad isr_64, isr_65, isr_66, isr_67, isr_68, isr_69, isr_70, isr_71
.popsection
"#,
    options(att_syntax)
);

extern "C" {
    static isr_table: [u64; 40];
}

/// First of the eight interrupt vectors with a stub (0x40..0x48).
pub const IRQ_BASE: u8 = 0x40;
const IRQ_COUNT: usize = 8;

/// The guest's interrupt handler (0: none; the interrupt is then ignored).
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Sets the function called (with interrupts disabled) for vectors [`IRQ_BASE`]..+8. It must
/// not print (the interrupted code may hold the console) and sends its own EOI.
pub fn on_interrupt(f: fn(u8)) {
    IRQ_HANDLER.store(f as usize, Ordering::SeqCst);
}

/// What the stubs leave on the stack.
#[repr(C)]
struct Frame {
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
}

/// Length of the instruction whose #UD the guest expects (0: none expected).
static UD_SKIP: AtomicU8 = AtomicU8::new(0);
/// Set when an expected #UD was taken.
static UD_SEEN: AtomicBool = AtomicBool::new(false);

/// Runs `f`, which executes an instruction of `len` bytes that may raise #UD. If it does, the
/// handler skips the instruction and this returns `None`; otherwise `Some` of `f`'s result.
/// Any other exception, or a #UD elsewhere, stays fatal.
pub fn catch_ud<T>(len: u8, f: impl FnOnce() -> T) -> Option<T> {
    UD_SEEN.store(false, Ordering::SeqCst);
    UD_SKIP.store(len, Ordering::SeqCst);
    let r = f();
    UD_SKIP.store(0, Ordering::SeqCst);
    (!UD_SEEN.swap(false, Ordering::SeqCst)).then_some(r)
}

/// Returns (to the stub, which IRETs) only for an expected #UD, with RIP moved past it.
#[no_mangle]
extern "C" fn exception_handler(f: &mut Frame) {
    if f.vector >= 32 {
        let h = IRQ_HANDLER.load(Ordering::SeqCst);
        if h != 0 {
            // SAFETY: only `on_interrupt` stores here, and it stores a `fn(u8)`.
            let h: fn(u8) = unsafe { core::mem::transmute::<usize, fn(u8)>(h) };
            h(f.vector as u8);
        }
        return;
    }
    if f.vector == 6 {
        let len = UD_SKIP.swap(0, Ordering::SeqCst);
        if len != 0 {
            f.rip += u64::from(len);
            UD_SEEN.store(true, Ordering::SeqCst);
            return;
        }
    }
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    crate::serial::Console::force_unlock();
    println!(
        "exception: vector={} error={:#x} rip={:#x} cs={:#x} rflags={:#x} cr2={:#x}",
        f.vector, f.error, f.rip, f.cs, f.rflags, cr2
    );
    println!("verdict: FAIL (exception)");
    halt_forever()
}

/// Two words per gate, up to the last interrupt stub.
const GATES: usize = IRQ_BASE as usize + IRQ_COUNT;

#[repr(C, align(16))]
struct Idt([u64; 2 * GATES]);

static mut IDT: Idt = Idt([0; 2 * GATES]);

/// Fills the IDT (first call) and loads it on this CPU.
pub fn load() {
    // SAFETY: every CPU writes identical values, so concurrent first calls are harmless,
    // and the table lives for the whole run.
    unsafe {
        let idt = &mut *core::ptr::addr_of_mut!(IDT);
        for (n, &h) in (*core::ptr::addr_of!(isr_table)).iter().enumerate() {
            let i = if n < 32 {
                n
            } else {
                IRQ_BASE as usize + n - 32
            };
            // 64-bit interrupt gate, present, DPL 0, selector 0x08.
            idt.0[2 * i] =
                (h & 0xFFFF) | (0x08 << 16) | (0x8E00 << 32) | ((h >> 16 & 0xFFFF) << 48);
            idt.0[2 * i + 1] = h >> 32;
        }
        let idtr: [u16; 5] = {
            let base = idt.0.as_ptr() as u64;
            [
                (core::mem::size_of::<Idt>() - 1) as u16,
                base as u16,
                (base >> 16) as u16,
                (base >> 32) as u16,
                (base >> 48) as u16,
            ]
        };
        asm!("lidt [{}]", in(reg) idtr.as_ptr(), options(readonly, nostack, preserves_flags));
    }
}
