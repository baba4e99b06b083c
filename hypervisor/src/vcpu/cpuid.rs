//! CPUID as a guest sees it: the host's, minus what the hypervisor does not give guests, plus
//! ACRN's hypervisor leaves. The local APIC is virtual, so x2APIC and the TSC-deadline timer
//! are offered whatever the host has.
//!
//! A feature whose MSRs the vCPU does not have is hidden, as ACRN hides it: a guest that saw
//! it would take a #GP at its first access (Linux then prints "unchecked MSR access error").
//! That covers VMX/SVM, MONITOR, machine checks, thermal and power management (leaf 1's
//! ACPI/TM/EST bits and leaf 6 except ARAT), the debug store and perfmon (leaf 0xA), TSC_ADJUST,
//! RDT, SGX, processor trace, the speculation-control MSRs (IBRS/IBPB/STIBP/SSBD,
//! ARCH_CAPABILITIES, CORE_CAPABILITIES) and user wait. Extended state is limited to what fits
//! the vCPU's 4 KiB save page (AMX tile data does not), and leaf 0xD's sizes are computed for
//! the guest's own XCR0, with no supervisor state (IA32_XSS stays 0).

use crate::arch::cpuid::{ExtLeaf1Ecx, Leaf1Ecx, Leaf1Edx};
use acrn_abi::cpuid::{
    ACRN_CPUID_MAX_LEAF, ACRN_CPUID_SIGNATURE, ACRN_CPUID_TIMING_INFO, ACRN_SIGNATURE_REG,
};

/// MCE and MCA, in leaves 1 and 0x80000001.
const MACHINE_CHECK: Leaf1Edx = Leaf1Edx::MCE.union(Leaf1Edx::MCA);

/// Leaf 1 ECX features guests do not get: SMX, Enhanced SpeedStep, TM2, silicon debug and the
/// perfmon capabilities MSR, besides VMX and MONITOR.
const HIDDEN_LEAF1_ECX: Leaf1Ecx = Leaf1Ecx::VMX
    .union(Leaf1Ecx::MONITOR)
    .union(Leaf1Ecx::SMX)
    .union(Leaf1Ecx::EST)
    .union(Leaf1Ecx::TM2)
    .union(Leaf1Ecx::SDBG)
    .union(Leaf1Ecx::PDCM);

/// Leaf 1 EDX features guests do not get (these positions mean other things in 0x80000001).
const HIDDEN_LEAF1_EDX: Leaf1Edx = MACHINE_CHECK
    .union(Leaf1Edx::DS)
    .union(Leaf1Edx::ACPI)
    .union(Leaf1Edx::TM)
    .union(Leaf1Edx::PBE);

/// Leaf 6 EAX: the local APIC timer runs in deep C-states (always true of the virtual one).
const LEAF6_ARAT: u32 = 1 << 2;

/// Leaf 7 (subleaf 0) EBX: TSC_ADJUST (1), SGX (2), RDT monitoring (12), MPX (14), RDT
/// allocation (15), processor trace (25).
const HIDDEN_LEAF7_EBX: u32 = 1 << 1 | 1 << 2 | 1 << 12 | 1 << 14 | 1 << 15 | 1 << 25;
/// Leaf 7 ECX: user wait (5), SGX launch control (30).
const HIDDEN_LEAF7_ECX: u32 = 1 << 5 | 1 << 30;
/// Leaf 7 EDX: AMX (22, 24, 25), IBRS/IBPB (26), STIBP (27), L1D_FLUSH (28),
/// ARCH_CAPABILITIES (29), CORE_CAPABILITIES (30), SSBD (31).
const HIDDEN_LEAF7_EDX: u32 = 1 << 22 | 0xFF << 24;
/// Leaf 0x80000008 EBX (AMD): IBPB (12), IBRS (14), STIBP (15), SSBD (24), VIRT_SSBD (25).
const HIDDEN_EXT8_EBX: u32 = 1 << 12 | 1 << 14 | 1 << 15 | 1 << 24 | 1 << 25;

/// Leaf 0xD subleaf 1 EAX: XSAVEOPT, XSAVEC, XGETBV with ECX = 1, XSAVES (not XFD).
const XSAVE_SUBLEAF1_EAX: u32 = 0xF;

/// Bytes of each vCPU's extended-state save page (`vcpu::context`).
pub const XSAVE_AREA_SIZE: u32 = 4096;
/// The legacy region and the XSAVE header: where components 2 and up start.
const XSAVE_HEADER_END: u32 = 576;

/// What of the vCPU CPUID depends on.
pub struct Asker {
    /// vCPUs of its VM.
    pub ncpu: u32,
    /// The Service VM.
    pub privileged: bool,
    pub idx: usize,
    /// Its CR4.OSXSAVE, which leaf 1 reports as OSXSAVE (the host's own CR4 does not count).
    pub osxsave: bool,
    /// Its XCR0, which leaf 0xD's sizes describe.
    pub xcr0: u64,
    /// The TSC frequency the hypervisor measured (kHz; 0 when unknown), which the timing
    /// leaves report.
    pub tsc_khz: u32,
}

/// Leaf 0x15 (TSC/crystal ratio, crystal Hz) for a TSC of `tsc_khz`: a crystal at the TSC
/// rate, ratio 1/1. Linux takes the local APIC timer's rate from the crystal, and the virtual
/// one counts at the TSC rate. None when the rate is unknown or does not fit ECX.
fn tsc_leaf(tsc_khz: u32) -> Option<[u32; 4]> {
    let hz = u32::try_from(u64::from(tsc_khz) * 1000).ok()?;
    (tsc_khz != 0).then_some([1, 1, hz, 0])
}

/// The XCR0 components guests may enable: the CPU's (CPUID.(0xD,0) EDX:EAX) whose
/// standard-format slot ends within the vCPU's save page.
pub fn guest_xcr0_supported(host: impl Fn(u32, u32) -> [u32; 4]) -> u64 {
    let leaf = host(0xD, 0);
    let cpu = u64::from(leaf[3]) << 32 | u64::from(leaf[0]);
    let fitting = (0..63)
        .filter(|&i| cpu & 1 << i != 0)
        .filter(|&i| {
            i < 2 || {
                let c = host(0xD, i);
                c[1].saturating_add(c[0]) <= XSAVE_AREA_SIZE
            }
        })
        .fold(0, |mask, i| mask | 1 << i);
    // XSETBV takes the AMX tile configuration and tile data only together; MPX is hidden.
    let fitting = fitting & !MPX_STATE;
    if fitting & AMX_TILES != AMX_TILES {
        fitting & !AMX_TILES
    } else {
        fitting
    }
}

/// XCR0's MPX components: bounds registers (3) and configuration (4).
const MPX_STATE: u64 = 3 << 3;

/// XCR0's AMX components: tile configuration (17) and tile data (18).
const AMX_TILES: u64 = 3 << 17;

/// Bytes an XSAVE of the components `xcr0` takes: standard format (`compacted` false, offsets
/// from leaf 0xD) or compacted (components packed in order, some 64-byte aligned).
fn xsave_size(host: &impl Fn(u32, u32) -> [u32; 4], xcr0: u64, compacted: bool) -> u32 {
    (2..63)
        .filter(|&i| xcr0 & 1 << i != 0)
        .fold(XSAVE_HEADER_END, |end, i| {
            let [size, offset, flags, _] = host(0xD, i);
            if compacted {
                let start = if flags & 2 != 0 {
                    end.next_multiple_of(64)
                } else {
                    end
                };
                start.saturating_add(size)
            } else {
                end.max(offset.saturating_add(size))
            }
        })
}

/// Checks a guest XSETBV of `value` into XCR `xcr` against the XCR0 bits the CPU supports
/// (CPUID.(0xD,0) EDX:EAX), as the instruction would: only XCR0, x87 always on, AVX needs SSE,
/// the three AVX-512 components together and only with AVX.
pub fn xsetbv_allowed(xcr: u32, value: u64, supported: u64) -> bool {
    const X87: u64 = 1;
    const SSE: u64 = 2;
    const AVX: u64 = 4;
    const AVX512: u64 = 0xe0;
    let avx512 = value & AVX512;
    xcr == 0
        && value & !supported == 0
        && value & X87 != 0
        && (value & AVX == 0 || value & SSE != 0)
        && (avx512 == 0 || (avx512 == AVX512 && value & AVX != 0))
}

/// Leaf 0xD subleaf `sub` for a guest with `xcr0` of the `supported` components.
fn xsave_leaf(
    host: &impl Fn(u32, u32) -> [u32; 4],
    sub: u32,
    xcr0: u64,
    supported: u64,
) -> [u32; 4] {
    let xcr0 = xcr0 & supported;
    match sub {
        0 => [
            supported as u32,
            xsave_size(host, xcr0, false),
            xsave_size(host, supported, false),
            (supported >> 32) as u32,
        ],
        1 => [
            host(0xD, 1)[0] & XSAVE_SUBLEAF1_EAX,
            xsave_size(host, xcr0, true),
            0,
            0,
        ],
        i if i < 63 && supported & 1 << i != 0 => host(0xD, i),
        _ => [0; 4],
    }
}

/// CPUID leaf `leaf`/`sub` as vCPU `who` sees it.
pub fn emulate(who: &Asker, leaf: u32, sub: u32) -> [u32; 4] {
    emulate_with(crate::arch::cpuid::cpuid, who, leaf, sub)
}

/// [`emulate`] with the host's CPUID answered by `host`.
pub fn emulate_with(
    host: impl Fn(u32, u32) -> [u32; 4],
    who: &Asker,
    leaf: u32,
    sub: u32,
) -> [u32; 4] {
    let Asker {
        ncpu,
        privileged,
        idx,
        osxsave,
        xcr0,
        tsc_khz,
    } = *who;
    match leaf {
        // ACRN's hypervisor leaves: signature "ACRNACRNACRN", max leaf 0x40000010.
        ACRN_CPUID_SIGNATURE => [
            ACRN_CPUID_MAX_LEAF,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
            ACRN_SIGNATURE_REG,
        ],
        // Guest capabilities: only the Service VM is privileged.
        0x4000_0001 => [
            if privileged {
                acrn_abi::cpuid::AcrnCpuidFeatures::PRIVILEGED_VM.bits()
            } else {
                0
            },
            0,
            0,
            0,
        ],
        // ACRN_CPUID_TIMING_INFO: the TSC frequency in kHz (guests run on the host TSC).
        ACRN_CPUID_TIMING_INFO => [tsc_khz, 0, 0, 0],
        // The timing leaves describe the TSC the hypervisor measured: an emulator's CPU model
        // may claim one rate while its TSC runs at another (Bochs: 3.5 GHz claimed, 200 MHz).
        0x15 if host(0, 0)[0] >= 0x15 => tsc_leaf(tsc_khz).unwrap_or_else(|| host(0x15, 0)),
        // Base and maximum frequency (MHz), which Linux reads where leaf 0x15 has no crystal.
        0x16 if host(0, 0)[0] >= 0x16 && tsc_leaf(tsc_khz).is_some() => {
            [tsc_khz / 1000, tsc_khz / 1000, host(0x16, 0)[2], 0]
        }
        0x4000_0002..=0x4000_00FF => [0; 4],
        // Thermal and power management: only ARAT.
        6 => [host(6, 0)[0] & LEAF6_ARAT, 0, 0, 0],
        // Perfmon, RDT monitoring and allocation, SGX, processor trace, AMX tiles.
        0xA | 0xF | 0x10 | 0x12 | 0x14 | 0x1D | 0x1E => [0; 4],
        0xD if host(0xD, 0)[0] == 0 => [0; 4],
        0xD => xsave_leaf(&host, sub, xcr0, guest_xcr0_supported(&host)),
        _ => {
            let mut r = host(leaf, sub);
            match leaf {
                1 => {
                    r[1] = (r[1] & 0x0000_FFFF) | (ncpu << 16) | ((idx as u32) << 24);
                    let ecx = (Leaf1Ecx::from_bits_retain(r[2])
                        - (HIDDEN_LEAF1_ECX | Leaf1Ecx::OSXSAVE))
                        | Leaf1Ecx::X2APIC
                        | Leaf1Ecx::TSC_DEADLINE
                        | Leaf1Ecx::HYPERVISOR;
                    let ecx = if osxsave && ecx.contains(Leaf1Ecx::XSAVE) {
                        ecx | Leaf1Ecx::OSXSAVE
                    } else {
                        ecx
                    };
                    r[2] = ecx.bits();
                    r[3] = (Leaf1Edx::from_bits_retain(r[3]) - HIDDEN_LEAF1_EDX).bits();
                }
                7 if sub == 0 => {
                    r[1] &= !HIDDEN_LEAF7_EBX;
                    r[2] &= !HIDDEN_LEAF7_ECX;
                    r[3] &= !HIDDEN_LEAF7_EDX;
                }
                0xB | 0x1F => r[3] = idx as u32,
                0x8000_0001 => {
                    r[2] = (ExtLeaf1Ecx::from_bits_retain(r[2]) - ExtLeaf1Ecx::SVM).bits();
                    // AMD mirrors MCE/MCA here.
                    r[3] = (Leaf1Edx::from_bits_retain(r[3]) - MACHINE_CHECK).bits();
                }
                0x8000_0008 => r[1] &= !HIDDEN_EXT8_EBX,
                0x8000_000A => r = [0; 4],
                _ => {}
            }
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bochs' corei7_skylake_x leaf 0xD (x87, SSE, AVX, AVX-512), as a Linux guest printed it,
    /// plus MPX (3/4, hidden) and AMX (17/18: the tile data does not fit the save page).
    fn skylake(leaf: u32, sub: u32) -> [u32; 4] {
        match (leaf, sub) {
            (0xD, 0) => [0x600FF, 0xA80, 0x2B00, 0],
            (0xD, 1) => [0x1F, 0xA80, 0, 0],
            (0xD, 2) => [0x100, 0x240, 0, 0],
            (0xD, 3) => [0x40, 0x3C0, 0, 0],
            (0xD, 4) => [0x40, 0x400, 0, 0],
            (0xD, 5) => [0x40, 0x440, 0, 0],
            (0xD, 6) => [0x200, 0x480, 0, 0],
            (0xD, 7) => [0x400, 0x680, 0, 0],
            (0xD, 17) => [0x40, 0xAC0, 0, 0],
            (0xD, 18) => [0x2000, 0xB00, 2, 0],
            (1, 0) => [0x50654, 0x0800, u32::MAX, u32::MAX],
            (6, 0) => [0x77, 0x2, 0x9, 0],
            (7, 0) => [0, u32::MAX, u32::MAX, u32::MAX],
            (0xA, 0) => [0x07300404, 0, 0, 0x603],
            _ => [0; 4],
        }
    }

    fn asker(xcr0: u64) -> Asker {
        Asker {
            ncpu: 2,
            privileged: false,
            idx: 1,
            osxsave: true,
            xcr0,
            tsc_khz: 200_000,
        }
    }

    #[test]
    fn timing_leaves_describe_the_measured_tsc() {
        // Bochs' Skylake-X model: a 3.5 GHz TSC by leaf 0x15 (25 MHz crystal, 280/2), base
        // 3500 MHz by leaf 0x16; its TSC runs at 200 MHz.
        let bochs = |leaf: u32, sub: u32| match leaf {
            0 => [0x16, 0, 0, 0],
            0x15 => [2, 280, 25_000_000, 0],
            0x16 => [3500, 3500, 100, 0],
            _ => skylake(leaf, sub),
        };
        let a = asker(0x7);
        let l15 = emulate_with(bochs, &a, 0x15, 0);
        let tsc_hz = u64::from(l15[2]) * u64::from(l15[1]) / u64::from(l15[0]);
        assert_eq!(tsc_hz, 200_000_000);
        assert_eq!(
            l15[2], 200_000_000,
            "the crystal is the vLAPIC timer's clock"
        );
        assert_eq!(emulate_with(bochs, &a, 0x16, 0), [200, 200, 100, 0]);
        assert_eq!(
            emulate_with(bochs, &a, ACRN_CPUID_TIMING_INFO, 0)[0],
            200_000
        );
        // Unknown rate: the host's leaves. Beyond the host's last basic leaf: as the host.
        let unknown = Asker { tsc_khz: 0, ..a };
        assert_eq!(
            emulate_with(bochs, &unknown, 0x15, 0),
            [2, 280, 25_000_000, 0]
        );
        let old = |leaf: u32, sub: u32| {
            if leaf == 0 {
                [0xD, 0, 0, 0]
            } else {
                bochs(leaf, sub)
            }
        };
        assert_eq!(emulate_with(old, &a, 0x15, 0), [2, 280, 25_000_000, 0]);
        // A TSC whose Hz do not fit ECX keeps the host's leaf.
        let fast = Asker {
            tsc_khz: 5_000_000,
            ..a
        };
        assert_eq!(emulate_with(bochs, &fast, 0x16, 0), [3500, 3500, 100, 0]);
    }

    #[test]
    fn xsave_sizes_follow_the_guest_xcr0_and_leave_out_what_does_not_fit() {
        assert_eq!(
            guest_xcr0_supported(skylake),
            0xE7,
            "AMX tile data is not offered"
        );
        let a = asker(0xE7);
        let l0 = emulate_with(skylake, &a, 0xD, 0);
        assert_eq!(l0, [0xE7, 0xA80, 0xA80, 0]);
        // Compacted: 576 + 256 (AVX) + 64 + 512 + 1024 (AVX-512) = 2432, what Linux computes
        // (Bochs' own answer, 0xA80, made it warn of an XSAVE consistency problem).
        let l1 = emulate_with(skylake, &a, 0xD, 1);
        assert_eq!(l1, [0xF, 2432, 0, 0], "no XFD, no supervisor state");
        let avx = emulate_with(skylake, &asker(0x7), 0xD, 0);
        assert_eq!(avx[1], 832);
        assert_eq!(emulate_with(skylake, &asker(0x7), 0xD, 1)[1], 832);
        assert_eq!(emulate_with(skylake, &a, 0xD, 7), [0x400, 0x680, 0, 0]);
        assert_eq!(emulate_with(skylake, &a, 0xD, 18), [0; 4]);
        // Bits a guest cannot have set do not count.
        assert_eq!(emulate_with(skylake, &asker(0x60007), 0xD, 0)[1], 832);
    }

    #[test]
    fn xsetbv_rules() {
        let cpu = 0xe7; // x87 SSE AVX + AVX-512
        assert!(xsetbv_allowed(0, 0x1, cpu));
        assert!(xsetbv_allowed(0, 0x7, cpu));
        assert!(xsetbv_allowed(0, 0xe7, cpu));
        assert!(!xsetbv_allowed(1, 0x1, cpu));
        assert!(!xsetbv_allowed(0, 0x6, cpu), "x87 off");
        assert!(!xsetbv_allowed(0, 0x5, cpu), "AVX without SSE");
        assert!(!xsetbv_allowed(0, 0x27, cpu), "partial AVX-512");
        assert!(!xsetbv_allowed(0, 0x207, cpu), "unsupported component");
    }

    #[test]
    fn features_without_their_msrs_are_hidden() {
        let a = asker(1);
        let l1 = emulate_with(skylake, &a, 1, 0);
        let ecx = Leaf1Ecx::from_bits_retain(l1[2]);
        let edx = Leaf1Edx::from_bits_retain(l1[3]);
        assert!(!ecx.intersects(HIDDEN_LEAF1_ECX));
        assert!(ecx.contains(Leaf1Ecx::X2APIC | Leaf1Ecx::OSXSAVE | Leaf1Ecx::HYPERVISOR));
        assert!(!edx.intersects(HIDDEN_LEAF1_EDX));
        assert_eq!(l1[1] >> 16, 2 | 1 << 8, "vCPU count and APIC ID");
        assert_eq!(emulate_with(skylake, &a, 6, 0), [LEAF6_ARAT, 0, 0, 0]);
        let l7 = emulate_with(skylake, &a, 7, 0);
        assert_eq!(l7[1] & 2, 0, "TSC_ADJUST");
        assert_eq!(l7[3] >> 24, 0, "speculation-control MSRs");
        assert_eq!(l7[1] & 1 << 5, 1 << 5, "AVX2 stays");
        assert_eq!(emulate_with(skylake, &a, 0xA, 0), [0; 4], "no perfmon");
        assert_eq!(emulate_with(skylake, &a, 7, 1), [0; 4]);
    }
}
