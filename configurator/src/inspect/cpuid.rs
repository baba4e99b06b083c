//! CPUID: one [`CpuidDump`] per logical CPU (taken on that CPU, Linux only), decoded by pure
//! functions into what the board file's `processors` and `caches` say.

use std::collections::BTreeMap;

/// The CPUID leaves of one CPU, keyed by (leaf, subleaf); a leaf not taken reads as zeros,
/// as CPUID does for leaves above the maximum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidDump {
    pub leaves: BTreeMap<(u32, u32), [u32; 4]>,
}

const EAX: usize = 0;
const EBX: usize = 1;
const ECX: usize = 2;
const EDX: usize = 3;

impl CpuidDump {
    pub fn get(&self, leaf: u32, sub: u32) -> [u32; 4] {
        self.leaves.get(&(leaf, sub)).copied().unwrap_or([0; 4])
    }

    /// Takes every leaf the decoders use with `cpuid(leaf, subleaf)`, within the CPU's
    /// maxima (subleaf walks stop at the leaf's end marker or after 64).
    pub fn take(cpuid: impl Fn(u32, u32) -> [u32; 4]) -> CpuidDump {
        let mut d = CpuidDump::default();
        let mut put = |l: u32, s: u32| {
            let v = cpuid(l, s);
            d.leaves.insert((l, s), v);
            v
        };
        let max = put(0, 0)[EAX];
        for leaf in [1, 6, 7, 0x1a] {
            if leaf <= max {
                put(leaf, 0);
            }
        }
        if max >= 4 {
            for s in 0..64 {
                if put(4, s)[EAX] & 0x1f == 0 {
                    break;
                }
            }
        }
        for leaf in [0xb, 0x1f] {
            if leaf <= max {
                for s in 0..64 {
                    if (put(leaf, s)[ECX] >> 8) & 0xff == 0 {
                        break;
                    }
                }
            }
        }
        if max >= 0x10 {
            for s in 0..4 {
                put(0x10, s);
            }
        }
        let ext = put(0x8000_0000, 0)[EAX];
        if ext & 0xffff_0000 == 0x8000_0000 {
            for leaf in [1, 2, 3, 4, 7, 8, 0xa].map(|l| 0x8000_0000 + l) {
                if leaf <= ext {
                    put(leaf, 0);
                }
            }
            if ext >= 0x8000_001d {
                for s in 0..64 {
                    if put(0x8000_001d, s)[EAX] & 0x1f == 0 {
                        break;
                    }
                }
            }
        }
        d
    }

    pub fn vendor(&self) -> String {
        let r = self.get(0, 0);
        let mut b = Vec::new();
        for reg in [r[EBX], r[EDX], r[ECX]] {
            b.extend(reg.to_le_bytes());
        }
        String::from_utf8_lossy(&b).trim_matches('\0').to_string()
    }

    pub fn is_amd(&self) -> bool {
        matches!(self.vendor().as_str(), "AuthenticAMD" | "HygonGenuine")
    }

    pub fn max_leaf(&self) -> u32 {
        self.get(0, 0)[EAX]
    }

    /// (family, model, stepping) with the extended fields folded in as the SDM says.
    pub fn signature(&self) -> (u32, u32, u32) {
        let a = self.get(1, 0)[EAX];
        let base_family = (a >> 8) & 0xf;
        let family = if base_family == 0xf {
            base_family + ((a >> 20) & 0xff)
        } else {
            base_family
        };
        let mut model = (a >> 4) & 0xf;
        if base_family == 0x6 || base_family == 0xf {
            model |= ((a >> 16) & 0xf) << 4;
        }
        (family, model, a & 0xf)
    }

    /// The brand string (leaves 0x80000002..4), trimmed.
    pub fn brand(&self) -> String {
        let mut b = Vec::new();
        for leaf in 0x8000_0002..=0x8000_0004 {
            for reg in self.get(leaf, 0) {
                b.extend(reg.to_le_bytes());
            }
        }
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).trim().to_string()
    }

    pub fn apic_id(&self) -> u32 {
        self.get(1, 0)[EBX] >> 24
    }

    /// The x2APIC ID from leaf 0xB (or 0x1F) when the CPU has it, else the APIC ID.
    pub fn x2apic_id(&self) -> u32 {
        for leaf in [0x1f, 0xb] {
            if leaf <= self.max_leaf() && self.get(leaf, 0)[EBX] != 0 {
                return self.get(leaf, 0)[EDX];
            }
        }
        self.apic_id()
    }

    /// Bits of the x2APIC ID below the core level and below the package (die) level, from
    /// leaf 0xB/0x1F (level types 1 SMT, 2 core); without them from leaf 1's logical count.
    pub fn topology_shifts(&self) -> (u32, u32) {
        for leaf in [0x1f, 0xb] {
            if leaf > self.max_leaf() || self.get(leaf, 0)[EBX] == 0 {
                continue;
            }
            let (mut smt, mut pkg) = (0, 0);
            for s in 0..64 {
                let r = self.get(leaf, s);
                let ty = (r[ECX] >> 8) & 0xff;
                if ty == 0 {
                    break;
                }
                if ty == 1 {
                    smt = r[EAX] & 0x1f;
                }
                pkg = r[EAX] & 0x1f;
            }
            return (smt, pkg.max(smt));
        }
        let logical = (self.get(1, 0)[EBX] >> 16) & 0xff;
        let pkg = if self.get(1, 0)[EDX] & (1 << 28) != 0 {
            u32::BITS - logical.saturating_sub(1).leading_zeros()
        } else {
            0
        };
        (0, pkg)
    }

    /// Core type of a hybrid part (leaf 0x1A) and its native model id.
    pub fn core_type(&self) -> Option<(&'static str, u32)> {
        if self.get(7, 0)[EDX] & (1 << 15) == 0 || self.max_leaf() < 0x1a {
            return None;
        }
        let a = self.get(0x1a, 0)[EAX];
        let ty = match a >> 24 {
            0x20 => "Atom",
            0x40 => "Core",
            _ => "Reserved",
        };
        Some((ty, a & 0xff_ffff))
    }

    /// Capability names in ACRN's board-inspector spelling, in CPUID bit order.
    pub fn capabilities(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut bits = |value: u32, names: &[(u32, &'static str)]| {
            for &(bit, name) in names {
                if value & (1 << bit) != 0 {
                    out.push(name);
                }
            }
        };
        let l1 = self.get(1, 0);
        bits(l1[ECX], LEAF1_ECX);
        bits(l1[EDX], LEAF1_EDX);
        if self.max_leaf() >= 6 {
            bits(self.get(6, 0)[EAX], LEAF6_EAX);
            bits(self.get(6, 0)[ECX], LEAF6_ECX);
        }
        if self.max_leaf() >= 7 {
            let l7 = self.get(7, 0);
            bits(l7[EBX], LEAF7_EBX);
            bits(l7[ECX], LEAF7_ECX);
            bits(l7[EDX], LEAF7_EDX);
        }
        let e1 = self.get(0x8000_0001, 0);
        bits(e1[ECX], EXT1_ECX);
        bits(e1[EDX], EXT1_EDX);
        bits(self.get(0x8000_0007, 0)[EDX], &[(8, "invariant_tsc")]);
        if self.is_amd() && e1[ECX] & (1 << 2) != 0 {
            // SVM features: nested paging (NPT).
            bits(self.get(0x8000_000a, 0)[EDX], &[(0, "npt")]);
        }
        out
    }

    /// AMD: leaf 0x8000001D (cache topology) is defined only with TopoExt
    /// (0x80000001 ECX bit 22).
    pub fn has_topology_extensions(&self) -> bool {
        self.get(0x8000_0001, 0)[ECX] & (1 << 22) != 0
    }

    /// (physical, linear) address bits from leaf 0x80000008.
    pub fn address_bits(&self) -> Option<(u32, u32)> {
        let a = self.get(0x8000_0008, 0)[EAX];
        (a != 0).then_some((a & 0xff, (a >> 8) & 0xff))
    }

    /// The cache descriptors (leaf 4, or 0x8000001D on AMD with topology extensions).
    pub fn caches(&self) -> Vec<CacheLeaf> {
        let leaf = if self.is_amd() { 0x8000_001d } else { 4 };
        if self.is_amd() && !self.has_topology_extensions() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for s in 0..64 {
            let r = self.get(leaf, s);
            let ty = r[EAX] & 0x1f;
            if ty == 0 {
                break;
            }
            let sharing = ((r[EAX] >> 14) & 0xfff) + 1;
            let line = (r[EBX] & 0xfff) + 1;
            let partitions = ((r[EBX] >> 12) & 0x3ff) + 1;
            let ways = ((r[EBX] >> 22) & 0x3ff) + 1;
            let sets = r[ECX].saturating_add(1);
            out.push(CacheLeaf {
                level: (r[EAX] >> 5) & 7,
                kind: ty,
                // The cache id: the x2APIC ID without the bits that number its sharers.
                id: self.x2apic_id() >> (u32::BITS - (sharing - 1).leading_zeros()),
                size: u64::from(line) * u64::from(partitions) * u64::from(ways) * u64::from(sets),
                line_size: line,
                ways,
                sets,
                partitions,
                self_initializing: (r[EAX] >> 8) & 1,
                fully_associative: (r[EAX] >> 9) & 1,
                write_back_invalidate: r[EDX] & 1,
                inclusive: (r[EDX] >> 1) & 1,
                complex_indexing: (r[EDX] >> 2) & 1,
            });
        }
        out
    }

    /// Cache Allocation on the level-`level` cache (2 or 3): (mask length, CLOS count, CDP),
    /// from leaf 0x10 when leaf 7 announces RDT allocation.
    pub fn cat(&self, level: u32) -> Option<(u32, u32, bool)> {
        if self.max_leaf() < 0x10 || self.get(7, 0)[EBX] & (1 << 15) == 0 {
            return None;
        }
        let (bit, sub) = match level {
            3 => (1, 1),
            2 => (2, 2),
            _ => return None,
        };
        if self.get(0x10, 0)[EBX] & (1 << bit) == 0 {
            return None;
        }
        let r = self.get(0x10, sub);
        Some((
            (r[EAX] & 0x1f) + 1,
            (r[EDX] & 0xffff) + 1,
            r[ECX] & (1 << 2) != 0,
        ))
    }
}

/// One cache descriptor as CPUID reports it on one CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLeaf {
    pub level: u32,
    /// 1 data, 2 instruction, 3 unified.
    pub kind: u32,
    pub id: u32,
    pub size: u64,
    pub line_size: u32,
    pub ways: u32,
    pub sets: u32,
    pub partitions: u32,
    pub self_initializing: u32,
    pub fully_associative: u32,
    pub write_back_invalidate: u32,
    pub inclusive: u32,
    pub complex_indexing: u32,
}

const LEAF1_ECX: &[(u32, &str)] = &[
    (0, "sse3"),
    (1, "pclmulqdq"),
    (2, "dtes64"),
    (3, "monitor"),
    (4, "ds_cpl"),
    (5, "vmx"),
    (6, "smx"),
    (7, "est"),
    (8, "tm2"),
    (9, "ssse3"),
    (10, "cnxt_id"),
    (11, "sdbg"),
    (12, "fma"),
    (13, "cmpxchg16b"),
    (14, "xtpr"),
    (15, "pdcm"),
    (17, "pcid"),
    (18, "dca"),
    (19, "sse4_1"),
    (20, "sse4_2"),
    (21, "x2apic"),
    (22, "movbe"),
    (23, "popcnt"),
    (24, "tsc_deadline"),
    (25, "aes"),
    (26, "xsave"),
    (28, "avx"),
    (29, "f16c"),
    (30, "rdrand"),
];
const LEAF1_EDX: &[(u32, &str)] = &[
    (0, "fpu"),
    (1, "vme"),
    (2, "de"),
    (3, "pse"),
    (4, "tsc"),
    (5, "msr"),
    (6, "pae"),
    (7, "mce"),
    (8, "cx8"),
    (9, "apic"),
    (11, "sep"),
    (12, "mtrr"),
    (13, "pge"),
    (14, "mca"),
    (15, "cmov"),
    (16, "pat"),
    (17, "pse36"),
    (18, "psn"),
    (19, "clfsh"),
    (21, "ds"),
    (22, "acpi"),
    (23, "mmx"),
    (24, "fxsr"),
    (25, "sse"),
    (26, "sse2"),
    (27, "ss"),
    (28, "htt"),
    (29, "tm"),
    (31, "pbe"),
];
const LEAF6_EAX: &[(u32, &str)] = &[
    (0, "digital_temperature_sensor_supported"),
    (1, "turbo_boost_available"),
    (2, "arat_supported"),
    (4, "pln_supported"),
    (5, "ecmd_supported"),
    (6, "package_thermal_management_supported"),
    (7, "hwp_supported"),
    (8, "hwp_notification"),
    (9, "hwp_activity_window"),
    (10, "hwp_energy_performance_preference"),
    (11, "hwp_package_level_request"),
    (15, "hwp_capabilities"),
    (16, "hwp_peci_override"),
    (17, "flexible_hwp"),
    (18, "fast_hwp_request"),
    (19, "hw_feedback"),
    (20, "ignoring_idle_hwp"),
    (23, "thread_director"),
];
const LEAF6_ECX: &[(u32, &str)] = &[
    (0, "hardware_coordination_feedback_capability"),
    (3, "performance_energy_bias"),
];
const LEAF7_EBX: &[(u32, &str)] = &[
    (0, "fsgsbase"),
    (1, "ia32_tsc_adjust_msr"),
    (2, "sgx"),
    (3, "bmi1"),
    (4, "hle"),
    (5, "avx2"),
    (6, "fdp_excptn_only"),
    (7, "smep"),
    (8, "bmi2"),
    (9, "erms"),
    (10, "invpcid"),
    (11, "rtm"),
    (12, "rdt_m"),
    (13, "deprecate_fpu"),
    (14, "mpx"),
    (15, "rdt_a"),
    (16, "avx512f"),
    (17, "avx512dq"),
    (18, "rdseed"),
    (19, "adx"),
    (20, "smap"),
    (21, "avx512_ifma"),
    (23, "clflushopt"),
    (24, "clwb"),
    (25, "intel_pt"),
    (26, "avx512pf"),
    (27, "avx512er"),
    (28, "avx512cd"),
    (29, "sha"),
    (30, "avx512bw"),
    (31, "avx512vl"),
];
const LEAF7_ECX: &[(u32, &str)] = &[
    (0, "prefetchwt1"),
    (1, "avx512_vbmi"),
    (2, "umip"),
    (3, "pku"),
    (5, "waitpkg"),
    (6, "avx512_vbmi2"),
    (7, "cet_ss"),
    (8, "gfni"),
    (9, "vaes"),
    (10, "vpclmulqdq"),
    (11, "avx512_vnni"),
    (12, "avx512_bitalg"),
    (13, "tme_en"),
    (14, "avx512_vpopcntdq"),
    (16, "la57"),
    (22, "rdpid"),
    (23, "kl"),
    (25, "cldemote"),
    (27, "movdiri"),
    (28, "movdiri64b"),
    (30, "sgx_lc"),
    (31, "pks"),
];
const LEAF7_EDX: &[(u32, &str)] = &[
    (4, "fast_short_rep_mov"),
    (8, "avx512_vp2intersect"),
    (10, "md_clear"),
    (15, "hybrid"),
    (18, "pconfig"),
    (20, "cet_ibt"),
    (26, "ibrs_ibpb"),
    (27, "stibp"),
    (28, "l1d_flush"),
    (29, "ia32_arch_capabilities"),
    (30, "ia32_core_capabilities"),
    (31, "ssbd"),
];
const EXT1_ECX: &[(u32, &str)] = &[
    (0, "lahf_sahf_64"),
    (2, "svm"),
    (5, "lzcnt"),
    (8, "prefetchw"),
    (22, "topoext"),
];
const EXT1_EDX: &[(u32, &str)] = &[
    (11, "syscall_sysret_64"),
    (20, "execute_disable"),
    (26, "gbyte_pages"),
    (27, "rdtscp_ia32_tsc_aux"),
    (29, "intel_64"),
];

/// VMX capabilities from the VMX capability MSRs (IA32_VMX_PROCBASED_CTLS2 0x48B and
/// IA32_VMX_EPT_VPID_CAP 0x48C), in ACRN's names: `read(msr)` gives an MSR or `None`.
pub fn vmx_capabilities(read: impl Fn(u32) -> Option<u64>) -> Option<Vec<&'static str>> {
    let procbased = read(0x482)?;
    let mut out = Vec::new();
    if procbased >> 63 & 1 == 0 {
        return Some(out);
    }
    let ctls2 = read(0x48b)? >> 32;
    for (bit, name) in [
        (0, "vmx_procbased_ctls2_vapic"),
        (1, "vmx_procbased_ctls2_ept"),
        (3, "vmx_procbased_ctls2_rdtscp"),
        (5, "vmx_procbased_ctls2_vpid"),
        (7, "vmx_procbased_ctls2_unrestrict"),
    ] {
        if ctls2 & (1 << bit) != 0 {
            out.push(name);
        }
    }
    if ctls2 & (1 << 1) != 0 {
        out.push("ept");
    }
    if ctls2 & (1 << 7) != 0 {
        out.push("unrestricted_guest");
    }
    if let Some(ept) = read(0x48c) {
        for (bit, name) in [
            (16, "ept_2mb_page"),
            (17, "vmx_ept_1gb_page"),
            (20, "invept"),
            (32, "invvpid"),
        ] {
            if ept & (1 << bit) != 0 {
                out.push(name);
            }
        }
    }
    Some(out)
}

/// Runs `f` on Linux CPU `cpu` (the calling thread is pinned there for the call, then its
/// previous affinity is restored). `None` if the CPU cannot be pinned to.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> Option<T> {
    // SAFETY: cpu_set_t is plain data; sched_{get,set}affinity only read/write the set we pass
    // with its exact size, for the calling thread (pid 0).
    unsafe {
        let mut old: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut old) != 0 {
            return None;
        }
        if cpu >= libc::CPU_SETSIZE as usize {
            return None;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            return None;
        }
        let v = f();
        libc::sched_setaffinity(0, size, &old);
        Some(v)
    }
}

/// The CPUID instruction on the current CPU.
#[cfg(target_arch = "x86_64")]
pub fn cpuid(leaf: u32, sub: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, sub);
    [r.eax, r.ebx, r.ecx, r.edx]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU `-cpu EPYC` under TCG, as Linux saw it (the values a guest reads).
    fn epyc() -> CpuidDump {
        let mut d = CpuidDump::default();
        d.leaves
            .insert((0, 0), [0xd, 0x6874_7541, 0x444d_4163, 0x6974_6e65]);
        d.leaves
            .insert((1, 0), [0x0080_0f12, 0x0204_0800, 0xf6d8_3203, 0x078b_fbff]);
        d.leaves.insert((0x8000_0000, 0), [0x8000_001f, 0, 0, 0]);
        d.leaves
            .insert((0x8000_0001, 0), [0, 0, 0x0000_0005, 0x2d93_fbff]);
        d.leaves.insert((0x8000_0008, 0), [0x3028, 0, 0, 0]);
        d.leaves.insert((0x8000_000a, 0), [1, 0x10, 0, 1]);
        let brand =
            b"AMD EPYC Processor\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
        for (i, chunk) in brand.chunks(16).enumerate() {
            let r: Vec<u32> = chunk
                .chunks(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            d.leaves
                .insert((0x8000_0002 + i as u32, 0), [r[0], r[1], r[2], r[3]]);
        }
        d
    }

    #[test]
    fn epyc_decodes() {
        let d = epyc();
        assert!(d.is_amd());
        assert_eq!(d.signature(), (0x17, 0x1, 0x2));
        assert_eq!(d.brand(), "AMD EPYC Processor");
        assert_eq!(d.apic_id(), 2);
        assert_eq!(d.x2apic_id(), 2);
        assert_eq!(d.address_bits(), Some((40, 48)));
        let caps = d.capabilities();
        for c in ["svm", "npt", "sse3", "fpu", "intel_64", "lahf_sahf_64"] {
            assert!(caps.contains(&c), "{c} missing from {caps:?}");
        }
        assert!(!caps.contains(&"vmx"));
        assert!(d.caches().is_empty());
        assert_eq!(d.cat(3), None);
    }

    #[test]
    fn intel_leaf4_and_cat() {
        let mut d = CpuidDump::default();
        d.leaves
            .insert((0, 0), [0x1b, 0x756e_6547, 0x6c65_746e, 0x4965_6e69]);
        d.leaves.insert((1, 0), [0x000806c1, 0x0300_0800, 0, 0]);
        d.leaves.insert((7, 0), [0, 1 << 15, 0, 0]);
        // L2 unified, 2 sharing threads, 64 B lines, 20 ways, 1024 sets, 1 partition.
        d.leaves
            .insert((4, 0), [(1 << 14) | (2 << 5) | 3, (19 << 22) | 63, 1023, 0]);
        d.leaves.insert((0x10, 0), [0, 1 << 2, 0, 0]);
        d.leaves.insert((0x10, 2), [19, 0, 1 << 2, 7]);
        assert_eq!(d.signature(), (6, 0x8c, 1));
        let c = d.caches();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].level, c[0].kind, c[0].id), (2, 3, 1));
        assert_eq!(c[0].size, 64 * 20 * 1024);
        assert_eq!(d.cat(2), Some((20, 8, true)));
        assert_eq!(d.cat(3), None);
    }

    #[test]
    fn take_follows_the_maxima() {
        let e = epyc();
        let d = CpuidDump::take(|l, s| e.get(l, s));
        assert_eq!(d.signature(), e.signature());
        assert!(!d.leaves.contains_key(&(0x1f, 0)));
    }

    #[test]
    fn vmx_msrs() {
        let caps = vmx_capabilities(|m| match m {
            0x482 => Some(1 << 63),
            0x48b => Some(((1u64 << 1) | (1 << 7)) << 32),
            0x48c => Some(1 << 16),
            _ => None,
        })
        .unwrap();
        assert!(caps.contains(&"ept") && caps.contains(&"unrestricted_guest"));
        assert!(caps.contains(&"ept_2mb_page"));
        assert_eq!(vmx_capabilities(|_| None), None);
    }
}
