//! `hello`: identifies its VM, beats a heartbeat and gives a verdict.
#![no_std]
#![no_main]

use acrn_abi::hypercall::HC_CREATE_VM;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use guest_common::arch::{cpuid, halt_forever, rdmsr, rdtsc, spin_tsc, wrmsr};
use guest_common::fpu::{self, Fpu};
use guest_common::idt::{self, catch_ud};
use guest_common::platform::{identify, Verdict};
use guest_common::println;

/// Default heartbeat count; `ticks=N` on the command line overrides it (max 1000).
const DEFAULT_TICKS: u32 = 20;
/// TSC ticks between heartbeats (about 4 ms at 2.6 GHz, 0.1 s in Bochs; only the lines matter).
const TICK_TSC: u64 = 10_000_000;

#[no_mangle]
extern "C" fn kmain(magic: u32, info: u32) -> ! {
    let p = identify("hello", magic, info);
    let irqs = !p.flag("irqwait") || wait_interrupts();
    let mmio = !p.flag("mmioprobe") || mmio_probe();
    let refused = !p.flag("hypercall") || (hypercall_refused() & virtualization_refused());
    let removed = !p.flag("memread") || memory_removed();
    let ticks = p
        .arg("ticks")
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(DEFAULT_TICKS)
        .min(1000);
    if p.flag("echo") {
        echo_lines();
    }
    let mut vectors = p.flag("fpucheck").then(VectorCheck::start);
    for n in 1..=ticks {
        spin_tsc(TICK_TSC);
        // The tick's line is written through I/O exits (in a post-launched VM each one waits
        // for the Service VM), so the pattern lives through many context switches.
        if let Some(c) = vectors.as_mut() {
            c.step();
        }
        println!("tick {}", n);
    }
    let vectors_kept = vectors.is_none_or(|c| c.finish());
    let mut v = Verdict::new();
    v.check(!p.cmdline().is_empty(), "empty cmdline");
    v.check(p.cpus >= 1, "no cpus in MADT");
    v.check(p.online as usize == p.cpus, "cpus-online != cpus");
    v.check(p.memory_mib() > 0, "no memory");
    v.check(refused, "hypercall not refused with #UD");
    v.check(irqs, "interrupts not received");
    v.check(mmio, "MMIO without a device did not read all-ones");
    v.check(vectors_kept, "vector registers changed under the guest");
    v.check(removed, "removed memory did not read all-ones");
    if p.flag("spin") {
        println!(
            "spin: counter at {:#x}",
            core::ptr::addr_of!(SPIN_COUNTER) as usize
        );
        v.print();
        spin_forever()
    }
    v.print();
    halt_forever()
}

/// Longest line `echo` keeps (the rest of a longer line is dropped).
const ECHO_LINE_MAX: usize = 80;
/// TSC ticks between polls of the console's receiver.
const ECHO_POLL_TSC: u64 = 1_000_000;

/// `echo`: prints every line that arrives on the console as `echo: LINE` until the line
/// `quit` (what the hypervisor shell's `vm_console` types reaches us here).
fn echo_lines() {
    println!("echo: ready");
    let mut line = [0u8; ECHO_LINE_MAX];
    let mut len = 0;
    loop {
        let Some(b) = guest_common::serial::read_byte() else {
            spin_tsc(ECHO_POLL_TSC);
            continue;
        };
        match b {
            b'\r' | b'\n' if len == 0 => {}
            b'\r' | b'\n' => {
                let text = core::str::from_utf8(&line[..len]).unwrap_or("(not UTF-8)");
                println!("echo: {}", text);
                if text == "quit" {
                    return;
                }
                len = 0;
            }
            _ if len < ECHO_LINE_MAX => {
                line[len] = b;
                len += 1;
            }
            _ => {}
        }
    }
}

/// Counts the rounds of [`spin_forever`]; the Service VM reads it in this VM's RAM.
static SPIN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// `spin`: loops forever without a single VM exit (no I/O, no HLT, no PAUSE), so only the
/// hypervisor's own interrupts can take this vCPU off its pCPU.
fn spin_forever() -> ! {
    loop {
        SPIN_COUNTER.fetch_add(1, Ordering::Relaxed);
    }
}

/// `fpucheck`: a pattern of this VM in XMM0-15 (and the YMM upper halves with AVX), checked
/// and replaced by the next round's at every heartbeat.
struct VectorCheck {
    fpu: Fpu,
    seed: u64,
    round: u64,
    mismatches: u32,
}

impl VectorCheck {
    fn start() -> Self {
        let fpu = fpu::enable();
        // The TSC at start differs between VMs, so two VMs never share a pattern.
        let seed = rdtsc().wrapping_mul(0x2545_F491_4F6C_DD1D) | 1;
        println!(
            "fpu: xcr0={:#x} avx={} cpuid-osxsave={} seed={:#x}",
            fpu.xcr0, fpu.avx, fpu.cpuid_osxsave, seed
        );
        fpu::load(&fpu, seed, 0);
        VectorCheck {
            fpu,
            seed,
            round: 0,
            mismatches: 0,
        }
    }

    fn step(&mut self) {
        if let Some(m) = fpu::verify(&self.fpu, self.seed, self.round) {
            self.mismatches += 1;
            println!(
                "fpu: round {} register {} lane {}: want {:#x} got {:#x}",
                self.round, m.reg, m.lane, m.want, m.got
            );
        }
        self.round += 1;
        fpu::load(&self.fpu, self.seed, self.round);
    }

    fn finish(mut self) -> bool {
        self.step();
        println!("fpu: checks={} mismatches={}", self.round, self.mismatches);
        self.mismatches == 0
    }
}

/// Guest-physical address of the page the Service VM maps for `memread` and later removes.
const REMOVED_GPA: usize = 0x8000_0000;
/// What the Service VM writes there before mapping it.
const REMOVED_PATTERN: u64 = 0x4D45_4D52_4541_4430;
/// How long to keep reading for the removal (about 15 s under TCG, 200 s in Bochs: a loaded
/// machine slows the Service VM that removes it).
const REMOVAL_WAIT_TSC: u64 = 40_000_000_000;

/// `memread`: reads REMOVED_GPA in a loop until its value changes, which happens when the
/// Service VM removes the page from this VM while it runs. After the removal the address has
/// no RAM: the hypervisor forwards the read to the Service VM, which answers all-ones. The
/// Service VM writes another value into the old page afterwards; reading that would mean a
/// stale translation still reached it. True if the page first held the pattern and then read
/// all-ones.
fn memory_removed() -> bool {
    // SAFETY: identity-mapped below 4 GiB; RAM of this VM until the Service VM removes it,
    // then an address without a device (reads are forwarded).
    let read = || unsafe { core::ptr::read_volatile(REMOVED_GPA as *const u64) };
    let first = read();
    println!("memread: {:#x} = {:#x}", REMOVED_GPA, first);
    let start = rdtsc();
    let mut reads = 0u64;
    loop {
        let v = read();
        reads += 1;
        if v != first {
            println!(
                "memread: {:#x} = {:#x} after {} reads",
                REMOVED_GPA, v, reads
            );
            return first == REMOVED_PATTERN && v == u64::MAX;
        }
        if reads.is_multiple_of(1024) && rdtsc().wrapping_sub(start) > REMOVAL_WAIT_TSC {
            println!("memread: unchanged after {} reads", reads);
            return false;
        }
    }
}

/// Issues HC_CREATE_VM like a Service VM would (pointer to a zeroed creation record). This VM
/// is not the Service VM, so the hypervisor must answer with #UD and change nothing.
/// Returns whether it did.
fn hypercall_refused() -> bool {
    #[repr(C, align(64))]
    struct Record([u8; 64]);
    let rec = Record([0; 64]);
    let arg = core::ptr::addr_of!(rec) as u64;
    // "AuthenticAMD": EBX = "Auth".
    let amd = cpuid(0, 0).1 == u32::from_le_bytes(*b"Auth");
    println!(
        "hypercall: {} id={:#x} arg={:#x}",
        if amd { "vmmcall" } else { "vmcall" },
        HC_CREATE_VM,
        arg
    );
    // Both instructions are 3 bytes long.
    let r = catch_ud(3, || {
        let rax: u64;
        // SAFETY: a hypercall changes no guest state here except RAX; on #UD the handler
        // skips it. RAX starts at a marker so an unchanged RAX is visible.
        unsafe {
            if amd {
                core::arch::asm!("vmmcall", in("r8") HC_CREATE_VM, in("rdi") arg, in("rsi") 0u64,
                    inlateout("rax") 0x5A5Au64 => rax, options(nostack));
            } else {
                core::arch::asm!("vmcall", in("r8") HC_CREATE_VM, in("rdi") arg, in("rsi") 0u64,
                    inlateout("rax") 0x5A5Au64 => rax, options(nostack));
            }
        }
        rax
    });
    match r {
        None => println!("hypercall: #UD"),
        Some(rax) => println!("hypercall: returned {:#x}", rax),
    }
    // The record must be untouched either way (a refused call writes nothing back).
    let untouched = rec.0.iter().all(|&b| b == 0);
    println!("hypercall: record untouched={}", untouched);
    r.is_none() && untouched
}

/// The vendor's virtualization instructions, which CPUID does not offer: VMLOAD with
/// EFER.SVME set (AMD, where EFER is the guest's own) or VMXON (Intel) must raise #UD here, as
/// on a CPU without them, and reach nothing of the hypervisor's. Returns whether both did.
fn virtualization_refused() -> bool {
    const EFER: u32 = 0xC000_0080;
    const EFER_SVME: u64 = 1 << 12;
    let amd = cpuid(0, 0).1 == u32::from_le_bytes(*b"Auth");
    // A page-aligned operand: a misaligned one is a #GP before the intercept.
    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    static REGION: Page = Page([0; 4096]);
    let region = core::ptr::addr_of!(REGION);
    let r = if amd {
        // SAFETY: EFER exists on every x86-64 CPU; SVME only makes the SVM instructions legal.
        let efer = unsafe { rdmsr(EFER) };
        unsafe { wrmsr(EFER, efer | EFER_SVME) };
        // VMLOAD rax (0F 01 DA): with SVM intercepted it must come back as #UD.
        // SAFETY: on #UD the handler skips the 3 bytes; nothing else happens.
        let r = catch_ud(3, || unsafe {
            core::arch::asm!(".byte 0x0f, 0x01, 0xda", in("rax") region, options(nostack))
        });
        // SAFETY: the value read above.
        unsafe { wrmsr(EFER, efer) };
        r
    } else {
        // VMXON [rax] (F3 0F C7 30).
        // SAFETY: as above, 4 bytes.
        catch_ud(4, || unsafe {
            core::arch::asm!(".byte 0xf3, 0x0f, 0xc7, 0x30", in("rax") region, options(nostack))
        })
    };
    let name = if amd { "VMLOAD" } else { "VMXON" };
    match r {
        None => println!("virtualization: {name} #UD"),
        Some(()) => println!("virtualization: {name} executed"),
    }
    r.is_none()
}

/// The MSI vector the Service VM sends (`irqwait`).
const MSI_VECTOR: u8 = 0x40;
/// GSI 5's I/O APIC entry sends this vector (level-triggered, to APIC id 0).
const GSI5_VECTOR: u8 = 0x41;
const GSI: u32 = 5;
const LAPIC_EOI: usize = 0xFEE0_00B0;
const LAPIC_SVR: usize = 0xFEE0_00F0;
const IOAPIC: usize = 0xFEC0_0000;
const RTE_LEVEL: u32 = 1 << 15;
const RTE_MASKED: u32 = 1 << 16;

/// Vectors taken so far (bit n = IRQ_BASE + n).
static SEEN: AtomicU32 = AtomicU32::new(0);

fn ioapic_write(reg: u32, value: u32) {
    // SAFETY: the I/O APIC's index and data registers (identity-mapped below 4 GiB); the
    // handler and the main code never interleave (the handler runs with interrupts off and
    // the main code writes before enabling them).
    unsafe {
        core::ptr::write_volatile(IOAPIC as *mut u32, reg);
        core::ptr::write_volatile((IOAPIC + 0x10) as *mut u32, value);
    }
}

fn on_irq(vector: u8) {
    if vector == GSI5_VECTOR {
        // The line stays high: mask the entry before the EOI, or it would send again.
        ioapic_write(
            0x10 + 2 * GSI,
            u32::from(GSI5_VECTOR) | RTE_LEVEL | RTE_MASKED,
        );
    }
    SEEN.fetch_or(1 << (vector - idt::IRQ_BASE), Ordering::SeqCst);
    // SAFETY: the local APIC's EOI register.
    unsafe { core::ptr::write_volatile(LAPIC_EOI as *mut u32, 0) };
}

/// Programs GSI 5, enables interrupts and halts until MSI vector 0x40 and GSI 5's vector 0x41
/// arrived, printing each. The Service VM sends both after starting this VM.
fn wait_interrupts() -> bool {
    idt::on_interrupt(on_irq);
    // A local APIC leaves reset software-disabled and then takes no fixed interrupts.
    // SAFETY: the local APIC's spurious-vector register; software-enable, vector 0xFF.
    unsafe { core::ptr::write_volatile(LAPIC_SVR as *mut u32, 0x1FF) };
    ioapic_write(0x11 + 2 * GSI, 0); // destination APIC id 0
    ioapic_write(0x10 + 2 * GSI, u32::from(GSI5_VECTOR) | RTE_LEVEL);
    println!(
        "irq: waiting for vectors {:#x} and {:#x}",
        MSI_VECTOR, GSI5_VECTOR
    );
    let want = 1 << (MSI_VECTOR - idt::IRQ_BASE) | 1 << (GSI5_VECTOR - idt::IRQ_BASE);
    let mut printed = 0;
    while printed != want {
        // SAFETY: the handlers are installed; STI's shadow covers HLT, so an interrupt pending
        // now wakes the HLT instead of slipping in before it.
        unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
        let seen = SEEN.load(Ordering::SeqCst);
        for n in 0..8 {
            if seen & !printed & (1 << n) != 0 {
                println!("irq: vector {:#x}", idt::IRQ_BASE + n);
            }
        }
        printed = seen & want;
    }
    true
}

/// Guest-physical address with nothing behind it in a post-launched VM (below the I/O APIC).
const MMIO_PROBE: usize = 0xD000_0000;

/// Writes and reads an address without a device: the hypervisor forwards both to the Service
/// VM, whose default client ignores the write and answers the read with all-ones.
fn mmio_probe() -> bool {
    // SAFETY: identity-mapped below 4 GiB; no RAM or device of this VM lives there.
    let value = unsafe {
        core::ptr::write_volatile(MMIO_PROBE as *mut u32, 0x1234_5678);
        core::ptr::read_volatile(MMIO_PROBE as *const u32)
    };
    println!("mmio: read {:#x} at {:#x}", value, MMIO_PROBE);
    value == u32::MAX
}
