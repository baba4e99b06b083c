//! Vector-register patterns for checking that a hypervisor keeps each vCPU's x87/SSE/AVX state
//! across context switches. The guests are built soft-float, so compiled code never touches
//! XMM/YMM: a pattern loaded here stays in the registers until [`load`] or [`verify`] runs again,
//! unless something else (another vCPU on the same pCPU) changes them.

use core::arch::asm;

use crate::arch::cpuid;

const CR0_MP: u64 = 1 << 1;
const CR0_EM: u64 = 1 << 2;
const CR0_TS: u64 = 1 << 3;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const CR4_OSXSAVE: u64 = 1 << 18;
const XCR0_X87_SSE: u64 = 0b011;
const XCR0_AVX: u64 = 0b100;

/// 16 registers of 4 lanes of 64 bits (the YMM width; only lanes 0-1 without AVX).
type Regs = [u64; 64];

/// What [`enable`] switched on for this CPU.
#[derive(Debug, Clone, Copy)]
pub struct Fpu {
    /// YMM upper halves are part of the pattern (CPUID has AVX and XCR0 took it).
    pub avx: bool,
    /// XCR0 after enabling (0 without XSAVE).
    pub xcr0: u64,
    /// CPUID.1:ECX.OSXSAVE after CR4.OSXSAVE was set (the CPU reflects CR4 there).
    pub cpuid_osxsave: bool,
}

fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called with CR4.OSXSAVE set.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Makes SSE usable on this CPU (CR0.MP set, EM and TS clear; CR4.OSFXSR, OSXMMEXCPT) and,
/// when the CPU has XSAVE, sets CR4.OSXSAVE and XCR0 to x87|SSE, plus AVX when offered.
pub fn enable() -> Fpu {
    let (_, _, ecx, _) = cpuid(1, 0);
    let xsave = ecx & (1 << 26) != 0;
    let avx_cpu = ecx & (1 << 28) != 0;
    // SAFETY: the bits changed only enable FPU/SSE instruction classes; paging is untouched.
    unsafe {
        let mut cr0: u64;
        asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack));
        cr0 = (cr0 & !(CR0_EM | CR0_TS)) | CR0_MP;
        asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        let mut cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack));
        cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT | if xsave { CR4_OSXSAVE } else { 0 };
        asm!("mov cr4, {}", in(reg) cr4, options(nostack));
    }
    let cpuid_osxsave = cpuid(1, 0).2 & (1 << 27) != 0;
    if !xsave {
        return Fpu {
            avx: false,
            xcr0: 0,
            cpuid_osxsave,
        };
    }
    let supported = u64::from(cpuid(0xD, 0).0);
    let want = XCR0_X87_SSE | if avx_cpu { supported & XCR0_AVX } else { 0 };
    // SAFETY: only bits CPUID leaf 0xD reports as supported, x87 always set.
    unsafe {
        asm!("xsetbv", in("ecx") 0u32, in("eax") want as u32, in("edx") (want >> 32) as u32,
             options(nomem, nostack));
    }
    let xcr0 = xgetbv0();
    Fpu {
        avx: xcr0 & XCR0_AVX != 0,
        xcr0,
        cpuid_osxsave,
    }
}

/// The value of lane `lane` of register `reg` for `seed` in round `round`.
pub fn pattern(seed: u64, round: u64, reg: usize, lane: usize) -> u64 {
    let i = (reg * 4 + lane) as u32;
    seed.rotate_left(i) ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (u64::from(i) << 56)
}

fn fill(seed: u64, round: u64) -> Regs {
    let mut r = [0u64; 64];
    for (i, v) in r.iter_mut().enumerate() {
        *v = pattern(seed, round, i / 4, i % 4);
    }
    r
}

#[repr(C, align(32))]
struct Area(Regs);

/// Loads the pattern of (`seed`, `round`) into XMM0-15, and the YMM upper halves with AVX.
pub fn load(fpu: &Fpu, seed: u64, round: u64) {
    let a = Area(fill(seed, round));
    let p = a.0.as_ptr();
    // SAFETY: reads 512 bytes of `a` (256 without AVX); SSE/AVX were enabled by `enable`.
    // The registers are deliberately left holding the values: no compiled code uses them.
    unsafe {
        if fpu.avx {
            asm!(
                "vmovdqu ymm0, [{p}]", "vmovdqu ymm1, [{p} + 32]",
                "vmovdqu ymm2, [{p} + 64]", "vmovdqu ymm3, [{p} + 96]",
                "vmovdqu ymm4, [{p} + 128]", "vmovdqu ymm5, [{p} + 160]",
                "vmovdqu ymm6, [{p} + 192]", "vmovdqu ymm7, [{p} + 224]",
                "vmovdqu ymm8, [{p} + 256]", "vmovdqu ymm9, [{p} + 288]",
                "vmovdqu ymm10, [{p} + 320]", "vmovdqu ymm11, [{p} + 352]",
                "vmovdqu ymm12, [{p} + 384]", "vmovdqu ymm13, [{p} + 416]",
                "vmovdqu ymm14, [{p} + 448]", "vmovdqu ymm15, [{p} + 480]",
                p = in(reg) p, options(nostack, readonly),
            );
        } else {
            asm!(
                "movdqu xmm0, [{p}]", "movdqu xmm1, [{p} + 32]",
                "movdqu xmm2, [{p} + 64]", "movdqu xmm3, [{p} + 96]",
                "movdqu xmm4, [{p} + 128]", "movdqu xmm5, [{p} + 160]",
                "movdqu xmm6, [{p} + 192]", "movdqu xmm7, [{p} + 224]",
                "movdqu xmm8, [{p} + 256]", "movdqu xmm9, [{p} + 288]",
                "movdqu xmm10, [{p} + 320]", "movdqu xmm11, [{p} + 352]",
                "movdqu xmm12, [{p} + 384]", "movdqu xmm13, [{p} + 416]",
                "movdqu xmm14, [{p} + 448]", "movdqu xmm15, [{p} + 480]",
                p = in(reg) p, options(nostack, readonly),
            );
        }
    }
}

/// A register lane that did not hold its pattern.
#[derive(Debug, Clone, Copy)]
pub struct Mismatch {
    pub reg: usize,
    pub lane: usize,
    pub want: u64,
    pub got: u64,
}

/// Stores XMM0-15 (YMM0-15 with AVX) and compares them with the pattern of (`seed`, `round`).
pub fn verify(fpu: &Fpu, seed: u64, round: u64) -> Option<Mismatch> {
    let mut a = Area([0; 64]);
    let p = a.0.as_mut_ptr();
    // SAFETY: writes 512 bytes of `a` (16-byte halves without AVX).
    unsafe {
        if fpu.avx {
            asm!(
                "vmovdqu [{p}], ymm0", "vmovdqu [{p} + 32], ymm1",
                "vmovdqu [{p} + 64], ymm2", "vmovdqu [{p} + 96], ymm3",
                "vmovdqu [{p} + 128], ymm4", "vmovdqu [{p} + 160], ymm5",
                "vmovdqu [{p} + 192], ymm6", "vmovdqu [{p} + 224], ymm7",
                "vmovdqu [{p} + 256], ymm8", "vmovdqu [{p} + 288], ymm9",
                "vmovdqu [{p} + 320], ymm10", "vmovdqu [{p} + 352], ymm11",
                "vmovdqu [{p} + 384], ymm12", "vmovdqu [{p} + 416], ymm13",
                "vmovdqu [{p} + 448], ymm14", "vmovdqu [{p} + 480], ymm15",
                p = in(reg) p, options(nostack),
            );
        } else {
            asm!(
                "movdqu [{p}], xmm0", "movdqu [{p} + 32], xmm1",
                "movdqu [{p} + 64], xmm2", "movdqu [{p} + 96], xmm3",
                "movdqu [{p} + 128], xmm4", "movdqu [{p} + 160], xmm5",
                "movdqu [{p} + 192], xmm6", "movdqu [{p} + 224], xmm7",
                "movdqu [{p} + 256], xmm8", "movdqu [{p} + 288], xmm9",
                "movdqu [{p} + 320], xmm10", "movdqu [{p} + 352], xmm11",
                "movdqu [{p} + 384], xmm12", "movdqu [{p} + 416], xmm13",
                "movdqu [{p} + 448], xmm14", "movdqu [{p} + 480], xmm15",
                p = in(reg) p, options(nostack),
            );
        }
    }
    let lanes = if fpu.avx { 4 } else { 2 };
    (0..16).find_map(|reg| {
        (0..lanes).find_map(|lane| {
            let want = pattern(seed, round, reg, lane);
            let got = a.0[reg * 4 + lane];
            (got != want).then_some(Mismatch {
                reg,
                lane,
                want,
                got,
            })
        })
    })
}
