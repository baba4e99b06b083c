//! The guest state neither the VMCS nor the VMCB switches, saved when a pCPU changes vCPUs:
//! x87/SSE/AVX through XSAVE, XCR0, the SYSCALL MSRs, KERNEL_GS_BASE, TSC_AUX, CR2 and the
//! debug registers. The hypervisor itself uses none of them (no FPU code, no SYSCALL), so
//! whatever the CPU holds between two vCPUs is the last guest's.

use crate::arch::x86::{cpuid, rdmsr, read_cr4, wrmsr, ExtLeaf1Edx, Leaf1Ecx};
use crate::hv::frames;
use core::arch::asm;
use core::arch::x86_64::{_fxrstor64, _fxsave64, _xrstor64, _xsave64};
use x86_64::registers::control::{Cr2, Cr4, Cr4Flags};
use x86_64::registers::debug::{DebugAddressRegister, Dr0, Dr1, Dr2, Dr3, Dr6};
use x86_64::registers::xcontrol::XCr0;

/// KERNEL_GS_BASE, STAR, LSTAR, CSTAR, SFMASK.
const SYSCALL_MSRS: [u32; 5] = [
    0xC000_0102,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
];
const TSC_AUX: u32 = 0xC000_0103;

/// Free FPU save pages, for vCPUs that come later (frames are never returned to the pool).
static SPARE_PAGES: spin::Mutex<[u64; 32]> = spin::Mutex::new([0; 32]);

pub struct GuestContext {
    /// A 4 KiB page for XSAVE (or FXSAVE).
    area: u64,
    xcr0: u64,
    msrs: [u64; SYSCALL_MSRS.len()],
    tsc_aux: u64,
    cr2: u64,
    dr: [u64; 5],
}

fn has_xsave() -> bool {
    Leaf1Ecx::from_bits_retain(cpuid(1, 0)[2]).contains(Leaf1Ecx::XSAVE)
}

fn has_rdtscp() -> bool {
    ExtLeaf1Edx::from_bits_retain(cpuid(0x8000_0001, 0)[3]).contains(ExtLeaf1Edx::RDTSCP)
}

/// Runs `f` with CR4.OSXSAVE (and OSFXSR) set, which XSAVE, XRSTOR and XSETBV need; the host
/// keeps them clear otherwise, so that CPUID shows guests no OSXSAVE of the host's.
fn with_xsave_enabled(f: impl FnOnce()) {
    let cr4 = read_cr4();
    let mut extra = Cr4Flags::OSFXSR;
    extra.set(Cr4Flags::OSXSAVE, has_xsave());
    // SAFETY: enabling OSXSAVE/OSFXSR on a CPU that has them changes no memory.
    unsafe { Cr4::write_raw(cr4 | extra.bits()) };
    f();
    // SAFETY: restores the value read above.
    unsafe { Cr4::write_raw(cr4) };
}

/// The XCR0 of the vCPU this pCPU runs (the CPU holds the guest's: the host has no extended
/// state of its own); 1 (x87) on a CPU without XSAVE.
pub fn current_xcr0() -> u64 {
    let mut xcr0 = 1;
    if has_xsave() {
        with_xsave_enabled(|| xcr0 = XCr0::read_raw());
    }
    xcr0
}

/// A guest's XSETBV of `value` into XCR `xcr`, as the instruction would take it and against the
/// components CPUID offers guests: loaded into the CPU (the host has no extended state of its
/// own, so XCR0 is the one guest's of this pCPU) and true, or false for a #GP.
pub fn guest_xsetbv(xcr: u32, value: u64) -> bool {
    let supported = super::cpuid::guest_xcr0_supported(cpuid);
    if !has_xsave() || !super::cpuid::xsetbv_allowed(xcr, value, supported) {
        return false;
    }
    // SAFETY: the CPU has XSAVE and the value passed XSETBV's checks, so the write cannot
    // fault; OSXSAVE is set around it only (host CPUID must keep reporting OSXSAVE = 0).
    with_xsave_enabled(|| unsafe { XCr0::write_raw(value) });
    true
}

impl GuestContext {
    /// The reset state: x87 only in XCR0, every register in its init state.
    pub fn new() -> Option<Self> {
        let area = {
            let mut spare = SPARE_PAGES.lock();
            match spare.iter_mut().find(|p| **p != 0) {
                Some(p) => core::mem::take(p),
                None => frames::alloc(1)?,
            }
        };
        // SAFETY: a page of the pool that nobody else uses; a zero header is XRSTOR's init.
        unsafe { core::ptr::write_bytes(area as *mut u8, 0, 4096) };
        // MXCSR at its reset value, for FXRSTOR and the legacy area.
        // SAFETY: offset 24 of our own page.
        unsafe { core::ptr::write_volatile((area + 24) as *mut u32, 0x1F80) };
        Some(GuestContext {
            area,
            xcr0: 1,
            msrs: [0; SYSCALL_MSRS.len()],
            tsc_aux: 0,
            cr2: 0,
            dr: [0; 5],
        })
    }

    /// Gives the save page back for later vCPUs.
    pub fn release(self) {
        if let Some(p) = SPARE_PAGES.lock().iter_mut().find(|p| **p == 0) {
            *p = self.area;
        }
    }

    /// Saves what the CPU holds of this vCPU.
    pub fn save(&mut self) {
        let area = self.area;
        let mut xcr0 = self.xcr0;
        with_xsave_enabled(|| {
            if has_xsave() {
                xcr0 = XCr0::read_raw();
                // SAFETY: OSXSAVE is set; XSAVE of every XCR0 component into our 64-byte-aligned
                // page.
                unsafe { _xsave64(area as *mut u8, u64::MAX) };
            } else {
                // SAFETY: FXSAVE into our 16-byte-aligned page.
                unsafe { _fxsave64(area as *mut u8) };
            }
        });
        self.xcr0 = xcr0;
        for (v, &m) in self.msrs.iter_mut().zip(&SYSCALL_MSRS) {
            *v = rdmsr(m);
        }
        if has_rdtscp() {
            self.tsc_aux = rdmsr(TSC_AUX);
        }
        self.cr2 = Cr2::read_raw();
        self.dr = [
            Dr0::read(),
            Dr1::read(),
            Dr2::read(),
            Dr3::read(),
            Dr6::read_raw(),
        ];
    }

    /// Loads this vCPU's state into the CPU.
    pub fn restore(&self) {
        let (area, xcr0) = (self.area, self.xcr0);
        with_xsave_enabled(|| {
            if has_xsave() {
                // SAFETY: XCR0 as this guest set it (checked by the XSETBV emulation, or the
                // reset value 1); XRSTOR of a page XSAVE wrote or zeroed.
                unsafe {
                    XCr0::write_raw(xcr0);
                    _xrstor64(area as *const u8, u64::MAX);
                }
            } else {
                // SAFETY: FXRSTOR of a page FXSAVE wrote or set up in `new`.
                unsafe { _fxrstor64(area as *const u8) };
            }
        });
        for (&v, &m) in self.msrs.iter().zip(&SYSCALL_MSRS) {
            wrmsr(m, v);
        }
        if has_rdtscp() {
            wrmsr(TSC_AUX, self.tsc_aux);
        }
        Dr0::write(self.dr[0]);
        Dr1::write(self.dr[1]);
        Dr2::write(self.dr[2]);
        Dr3::write(self.dr[3]);
        // SAFETY: guest values of registers the host does not use. The `x86_64` crate writes
        // neither CR2 nor DR6.
        unsafe {
            asm!("mov cr2, {}", in(reg) self.cr2, options(nostack, nomem));
            asm!("mov dr6, {}", in(reg) self.dr[4], options(nostack, nomem));
        }
    }
}
