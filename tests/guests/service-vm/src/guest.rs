//! Building a post-launched VM's boot state in its RAM (a byte slice indexed by guest-physical
//! address): the KERNEL_ELF contract of ACRN's loaders (reference acrn-abi.md §10), done by the
//! device model as acrn-dm's ELF loader does.
//!
//! Guest-physical layout (all inside the VM's RAM, which starts at GPA 0):
//! * 0x800: the 4-entry flat GDT (null, null, code 0x10, data 0x18);
//! * 0x1000: multiboot1 information; 0x1100 its memory map; 0x1200 the boot loader name;
//!   0x1400 the command line — all below 0x8000, which the guests' SMP trampoline may use;
//! * 0xF2400: ACPI RSDP (where ACRN puts it), then an XSDT and a MADT with one enabled local
//!   APIC per vCPU, so a guest can count its CPUs as on a pre-launched VM;
//! * the kernel's PT_LOAD segments at their physical addresses, at or above 1 MiB.
//!
//! The e820 map the guest gets: RAM [0, 0x9FC00), reserved [0xF0000, 0x100000) (the ACPI
//! tables), RAM [1 MiB, size).

use acrn_abi::regs::{AcrnRegs, AcrnVcpuRegs};

/// EAX value a multiboot1 loader hands over.
pub const MULTIBOOT_BOOT_MAGIC: u32 = 0x2BAD_B002;
const MULTIBOOT_HEADER_MAGIC: u32 = 0x1BAD_B002;
const GDT_GPA: u64 = 0x800;
const MBI_GPA: u64 = 0x1000;
const MMAP_GPA: u64 = 0x1100;
const LOADER_GPA: u64 = 0x1200;
const CMDLINE_GPA: u64 = 0x1400;
const CMDLINE_MAX: usize = 0x1000 - 1;
const RSDP_GPA: u64 = 0xF2400;
const XSDT_GPA: u64 = 0xF2440;
const MADT_GPA: u64 = 0xF2480;
const LAPIC_BASE: u32 = 0xFEE0_0000;
/// Lowest address a kernel segment may use.
const KERNEL_MIN: u64 = 0x10_0000;
/// Smallest VM this layout fits in.
pub const MIN_RAM: u64 = 2 << 20;
/// Most vCPUs described in the MADT.
pub const MAX_VCPUS: u16 = 64;
/// Name the guest sees as its boot loader.
pub const LOADER_NAME: &str = "ACRN reference Service VM";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("not an ELF image")]
    NotElf,
    #[error("unsupported ELF: {0}")]
    Unsupported(&'static str),
    #[error("program header table outside the image")]
    BadPhdrs,
    #[error("segment data outside the image")]
    SegmentData,
    #[error("segment [{0:#x}, {1:#x}) outside the VM's kernel area")]
    SegmentPlace(u64, u64),
    #[error("entry point {0:#x} is not below 4 GiB")]
    Entry(u64),
    #[error("the VM's RAM is too small for its boot data")]
    RamTooSmall,
    #[error("command line longer than 4095 bytes")]
    CmdlineTooLong,
    #[error("more vCPUs than the MADT can describe")]
    TooManyVcpus,
}

/// What [`load`] set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    pub entry: u32,
    /// Whether the image had a multiboot1 header (and so gets the info structure).
    pub multiboot: bool,
    /// Bytes copied from the image.
    pub copied: u64,
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn r16(b: &[u8], off: usize) -> Option<u16> {
    rd(b, off).map(u16::from_le_bytes)
}
fn r32(b: &[u8], off: usize) -> Option<u32> {
    rd(b, off).map(u32::from_le_bytes)
}
fn r64(b: &[u8], off: usize) -> Option<u64> {
    rd(b, off).map(u64::from_le_bytes)
}

/// Whether the first 8 KiB hold a valid multiboot1 header (4-byte aligned, checksum ok).
pub fn has_multiboot1_header(image: &[u8]) -> bool {
    let end = image.len().min(8192);
    (0..end.saturating_sub(11)).step_by(4).any(|o| {
        let (Some(m), Some(f), Some(c)) = (r32(image, o), r32(image, o + 4), r32(image, o + 8))
        else {
            return false;
        };
        m == MULTIBOOT_HEADER_MAGIC && m.wrapping_add(f).wrapping_add(c) == 0
    })
}

struct Segment {
    offset: u64,
    filesz: u64,
    paddr: u64,
    memsz: u64,
}

/// The PT_LOAD segments of an ELF32 or ELF64 x86 executable, and its entry point.
fn segments(image: &[u8]) -> Result<(u64, impl Iterator<Item = Option<Segment>> + '_), LoadError> {
    if image.get(..4) != Some(b"\x7fELF") {
        return Err(LoadError::NotElf);
    }
    let class64 = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(LoadError::Unsupported("ELF class")),
    };
    if image.get(5) != Some(&1) {
        return Err(LoadError::Unsupported("not little-endian"));
    }
    let machine = r16(image, 18).ok_or(LoadError::NotElf)?;
    if machine != if class64 { 62 } else { 3 } {
        return Err(LoadError::Unsupported("not x86"));
    }
    let (entry, phoff, phentsize, phnum) = if class64 {
        (
            r64(image, 24),
            r64(image, 32),
            r16(image, 54),
            r16(image, 56),
        )
    } else {
        (
            r32(image, 24).map(u64::from),
            r32(image, 28).map(u64::from),
            r16(image, 42),
            r16(image, 44),
        )
    };
    let (Some(entry), Some(phoff), Some(phentsize), Some(phnum)) = (entry, phoff, phentsize, phnum)
    else {
        return Err(LoadError::NotElf);
    };
    let min_ent = if class64 { 56 } else { 32 };
    let table = u64::from(phentsize) * u64::from(phnum);
    if usize::from(phentsize) < min_ent
        || phoff
            .checked_add(table)
            .is_none_or(|e| e > image.len() as u64)
    {
        return Err(LoadError::BadPhdrs);
    }
    let iter = (0..u64::from(phnum)).filter_map(move |i| {
        let o = usize::try_from(phoff + i * u64::from(phentsize)).ok()?;
        let ty = r32(image, o)?;
        if ty != 1 {
            return None; // not PT_LOAD
        }
        Some(if class64 {
            (|| {
                Some(Segment {
                    offset: r64(image, o + 8)?,
                    paddr: r64(image, o + 24)?,
                    filesz: r64(image, o + 32)?,
                    memsz: r64(image, o + 40)?,
                })
            })()
        } else {
            (|| {
                Some(Segment {
                    offset: r32(image, o + 4)?.into(),
                    paddr: r32(image, o + 12)?.into(),
                    filesz: r32(image, o + 16)?.into(),
                    memsz: r32(image, o + 20)?.into(),
                })
            })()
        })
    });
    Ok((entry, iter))
}

/// Loads a KERNEL_ELF image into `ram` (GPA 0 = `ram[0]`): each PT_LOAD at its physical
/// address with its BSS cleared. Every segment is checked before anything is copied.
pub fn load_elf(ram: &mut [u8], image: &[u8]) -> Result<Loaded, LoadError> {
    let (entry, segs) = segments(image)?;
    let entry = u32::try_from(entry).map_err(|_| LoadError::Entry(entry))?;
    let mut plan = alloc::vec::Vec::new();
    for s in segs {
        let s = s.ok_or(LoadError::BadPhdrs)?;
        let data_end = s.offset.checked_add(s.filesz);
        if s.filesz > s.memsz || data_end.is_none_or(|e| e > image.len() as u64) {
            return Err(LoadError::SegmentData);
        }
        let end = s.paddr.checked_add(s.memsz);
        if s.paddr < KERNEL_MIN || end.is_none_or(|e| e > ram.len() as u64) {
            return Err(LoadError::SegmentPlace(
                s.paddr,
                s.paddr.saturating_add(s.memsz),
            ));
        }
        plan.push(s);
    }
    if plan.is_empty() {
        return Err(LoadError::Unsupported("no PT_LOAD segment"));
    }
    let mut copied = 0;
    for s in &plan {
        // All in range: checked above against both buffers.
        let (p, f, m, o) = (
            s.paddr as usize,
            s.filesz as usize,
            s.memsz as usize,
            s.offset as usize,
        );
        ram[p..p + f].copy_from_slice(&image[o..o + f]);
        ram[p + f..p + m].fill(0);
        copied += s.filesz;
    }
    Ok(Loaded {
        entry,
        multiboot: has_multiboot1_header(image),
        copied,
    })
}

fn put(ram: &mut [u8], gpa: u64, bytes: &[u8]) {
    let g = gpa as usize;
    ram[g..g + bytes.len()].copy_from_slice(bytes);
}

fn checksum_fix(ram: &mut [u8], start: u64, len: usize, at: u64) {
    let s = start as usize;
    let sum = ram[s..s + len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    ram[at as usize] = ram[at as usize].wrapping_sub(sum);
}

fn acpi_header(ram: &mut [u8], gpa: u64, sig: &[u8; 4], len: u32, rev: u8) {
    let mut h = [0u8; 36];
    h[0..4].copy_from_slice(sig);
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[8] = rev;
    h[10..16].copy_from_slice(b"ACRNRS");
    h[16..24].copy_from_slice(b"SVMTESTS");
    h[24..28].copy_from_slice(&1u32.to_le_bytes());
    h[28..32].copy_from_slice(b"RUST");
    h[32..36].copy_from_slice(&1u32.to_le_bytes());
    put(ram, gpa, &h);
}

/// Writes the GDT, the ACPI tables and (for multiboot kernels) the multiboot1 information.
pub fn write_boot_data(
    ram: &mut [u8],
    vcpus: u16,
    cmdline: &str,
    multiboot: bool,
) -> Result<(), LoadError> {
    let size = ram.len() as u64;
    if size < MIN_RAM {
        return Err(LoadError::RamTooSmall);
    }
    if cmdline.len() > CMDLINE_MAX {
        return Err(LoadError::CmdlineTooLong);
    }
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(LoadError::TooManyVcpus);
    }
    // The boot-data pages start clean: a reused or reset VM must not see stale bytes.
    ram[..0x8000].fill(0);
    ram[0xF0000..0x100000].fill(0);
    for (i, d) in [0u64, 0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF]
        .iter()
        .enumerate()
    {
        put(ram, GDT_GPA + 8 * i as u64, &d.to_le_bytes());
    }

    // ACPI: RSDP rev 2 -> XSDT -> MADT.
    let madt_len = 44 + 8 * u32::from(vcpus);
    acpi_header(ram, MADT_GPA, b"APIC", madt_len, 3);
    put(ram, MADT_GPA + 36, &LAPIC_BASE.to_le_bytes());
    put(ram, MADT_GPA + 40, &1u32.to_le_bytes()); // PC-AT compatible
    for i in 0..vcpus {
        let id = i as u8;
        put(
            ram,
            MADT_GPA + 44 + 8 * u64::from(i),
            &[0, 8, id, id, 1, 0, 0, 0],
        );
    }
    checksum_fix(ram, MADT_GPA, madt_len as usize, MADT_GPA + 9);
    acpi_header(ram, XSDT_GPA, b"XSDT", 44, 1);
    put(ram, XSDT_GPA + 36, &MADT_GPA.to_le_bytes());
    checksum_fix(ram, XSDT_GPA, 44, XSDT_GPA + 9);
    let mut rsdp = [0u8; 36];
    rsdp[0..8].copy_from_slice(b"RSD PTR ");
    rsdp[9..15].copy_from_slice(b"ACRNRS");
    rsdp[15] = 2;
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&XSDT_GPA.to_le_bytes());
    put(ram, RSDP_GPA, &rsdp);
    checksum_fix(ram, RSDP_GPA, 20, RSDP_GPA + 8);
    checksum_fix(ram, RSDP_GPA, 36, RSDP_GPA + 32);

    if multiboot {
        let e820 = [
            (0u64, 0x9FC00u64, 1u32),
            (0xF0000, 0x10000, 2),
            (0x10_0000, size - 0x10_0000, 1),
        ];
        for (i, (base, len, ty)) in e820.iter().enumerate() {
            let at = MMAP_GPA + 24 * i as u64;
            put(ram, at, &20u32.to_le_bytes());
            put(ram, at + 4, &base.to_le_bytes());
            put(ram, at + 12, &len.to_le_bytes());
            put(ram, at + 20, &ty.to_le_bytes());
        }
        put(ram, LOADER_GPA, LOADER_NAME.as_bytes());
        put(ram, CMDLINE_GPA, cmdline.as_bytes());
        let mem_upper_kib = u32::try_from((size - 0x10_0000) >> 10).unwrap_or(u32::MAX);
        // flags: mem (0), cmdline (2), mmap (6), boot loader name (9).
        let fields: [(u64, u32); 7] = [
            (0, 1 | 1 << 2 | 1 << 6 | 1 << 9),
            (4, 639),
            (8, mem_upper_kib),
            (16, CMDLINE_GPA as u32),
            (44, 24 * e820.len() as u32),
            (48, MMAP_GPA as u32),
            (64, LOADER_GPA as u32),
        ];
        for (off, v) in fields {
            put(ram, MBI_GPA + off, &v.to_le_bytes());
        }
    }
    Ok(())
}

/// The BSP's start state: 32-bit protected mode, paging off, flat segments from the GDT at
/// 0x800, EAX/EBX as a multiboot1 loader leaves them.
pub fn bsp_regs(entry: u32, multiboot: bool) -> AcrnVcpuRegs {
    let mut r = AcrnRegs::default();
    r.gdt.limit = 31;
    r.gdt.base = GDT_GPA;
    r.rip = entry.into();
    r.cr0 = 0x31; // PE | ET | NE
    r.rflags = 0x2;
    r.cs_sel = 0x10;
    r.cs_ar = 0xC09B;
    r.cs_limit = 0xFFFF_FFFF;
    r.ss_sel = 0x18;
    r.ds_sel = 0x18;
    r.es_sel = 0x18;
    r.fs_sel = 0x18;
    r.gs_sel = 0x18;
    if multiboot {
        r.gprs.rax = MULTIBOOT_BOOT_MAGIC.into();
        r.gprs.rbx = MBI_GPA;
    }
    AcrnVcpuRegs {
        vcpu_id: 0,
        reserved: [0; 3],
        vcpu_regs: r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// A minimal ELF64 with one PT_LOAD at `paddr`, a multiboot header and a BSS tail.
    fn elf64(paddr: u64, data: &[u8], memsz: u64, entry: u64) -> Vec<u8> {
        let mut f = vec![0u8; 0x1000];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&62u16.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        f[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
        f[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        f[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        f[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
        f[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        f.extend_from_slice(data);
        f
    }

    fn with_mb_header(mut data: Vec<u8>) -> Vec<u8> {
        let flags = 0x0001_0002u32;
        data[0..4].copy_from_slice(&MULTIBOOT_HEADER_MAGIC.to_le_bytes());
        data[4..8].copy_from_slice(&flags.to_le_bytes());
        let c = 0u32
            .wrapping_sub(MULTIBOOT_HEADER_MAGIC)
            .wrapping_sub(flags);
        data[8..12].copy_from_slice(&c.to_le_bytes());
        data
    }

    #[test]
    fn loads_segments_and_clears_bss() {
        let data = with_mb_header((0..64u8).collect());
        let img = elf64(0x10_0000, &data, 0x2000, 0x10_0020);
        let mut ram = vec![0xAAu8; 4 << 20];
        let l = load_elf(&mut ram, &img).unwrap();
        assert_eq!(l.entry, 0x10_0020);
        assert!(l.multiboot);
        assert_eq!(l.copied, 64);
        assert_eq!(&ram[0x10_0000 + 12..0x10_0000 + 64], &data[12..]);
        assert!(ram[0x10_0040..0x10_2000].iter().all(|&b| b == 0));
        assert_eq!(ram[0x10_2000], 0xAA);
    }

    #[test]
    fn the_real_guest_image_loads() {
        // hello.elf as tests/guests/build.sh builds it; built here when it is not there yet.
        let guests = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let path = format!("{guests}/out/hello.elf");
        if !std::path::Path::new(&path).is_file() {
            let status = std::process::Command::new("bash")
                .arg(format!("{guests}/build.sh"))
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET")
                .status()
                .expect("run tests/guests/build.sh");
            assert!(status.success(), "tests/guests/build.sh failed ({status})");
        }
        let img = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut ram = vec![0u8; 128 << 20];
        let l = load_elf(&mut ram, &img).unwrap();
        assert!(l.multiboot);
        assert!(l.entry >= 0x10_0000);
    }

    #[test]
    fn bad_images_are_refused_before_any_copy() {
        let mut ram = vec![0x55u8; 4 << 20];
        let data = vec![1u8; 32];
        let cases = [
            (vec![0u8; 100], LoadError::NotElf),
            (b"\x7fELF".to_vec(), LoadError::Unsupported("ELF class")),
            (
                elf64(0x1000, &data, 32, 0x1000),
                LoadError::SegmentPlace(0x1000, 0x1020),
            ),
            (
                elf64(0x3F_FFF0, &data, 32, 0),
                LoadError::SegmentPlace(0x3F_FFF0, 0x40_0010),
            ),
            (
                elf64(0x10_0000, &data, u64::MAX, 0),
                LoadError::SegmentPlace(0x10_0000, u64::MAX),
            ),
            (elf64(0x10_0000, &data, 8, 0), LoadError::SegmentData),
            (
                elf64(0x10_0000, &data, 32, 1 << 32),
                LoadError::Entry(1 << 32),
            ),
        ];
        for (img, want) in cases {
            assert_eq!(load_elf(&mut ram, &img), Err(want));
        }
        let mut img = elf64(0x10_0000, &data, 32, 0);
        img[32..40].copy_from_slice(&u64::MAX.to_le_bytes()); // phoff
        assert_eq!(load_elf(&mut ram, &img), Err(LoadError::BadPhdrs));
        let mut img = elf64(0x10_0000, &data, 32, 0);
        img[64 + 8..64 + 16].copy_from_slice(&(u64::MAX - 4).to_le_bytes()); // p_offset
        assert_eq!(load_elf(&mut ram, &img), Err(LoadError::SegmentData));
        assert!(ram.iter().all(|&b| b == 0x55));
        // Truncations of a good image never panic.
        let good = elf64(0x10_0000, &data, 64, 0x10_0000);
        for cut in 0..good.len() {
            let _ = load_elf(&mut ram, &good[..cut]);
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
    }

    #[test]
    fn boot_data_has_valid_acpi_and_multiboot() {
        let mut ram = vec![0xEEu8; 8 << 20];
        write_boot_data(&mut ram, 2, "console=ttyS0 ticks=3", true).unwrap();
        let rsdp = &ram[0xF2400..0xF2400 + 36];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        assert_eq!(sum(&ram[0xF2440..0xF2440 + 44]), 0);
        let madt = &ram[0xF2480..0xF2480 + 60];
        assert_eq!(&madt[..4], b"APIC");
        assert_eq!(sum(madt), 0);
        assert_eq!(madt[44 + 8 + 3], 1); // second LAPIC's APIC id
        let w = |a: usize| u32::from_le_bytes(ram[a..a + 4].try_into().unwrap());
        assert_eq!(w(0x1000), 1 | 4 | 64 | 512);
        assert_eq!(w(0x1000 + 8), (7 << 10) as u32);
        let cmd = w(0x1000 + 16) as usize;
        assert_eq!(&ram[cmd..cmd + 22], b"console=ttyS0 ticks=3\0");
        assert_eq!(w(0x1000 + 44), 72);
        let mmap = w(0x1000 + 48) as usize;
        let last = mmap + 48;
        assert_eq!(
            u64::from_le_bytes(ram[last + 12..last + 20].try_into().unwrap()),
            7 << 20
        );
        assert_eq!(&ram[0x808..0x810], &[0; 8]);
        assert_eq!(
            u64::from_le_bytes(ram[0x810..0x818].try_into().unwrap()),
            0x00CF_9B00_0000_FFFF
        );
        assert_eq!(
            ram[0x8000], 0xEE,
            "nothing written at or above 0x8000 but ACPI"
        );
    }

    #[test]
    fn boot_data_limits() {
        let mut small = vec![0u8; 1 << 20];
        assert_eq!(
            write_boot_data(&mut small, 1, "", true),
            Err(LoadError::RamTooSmall)
        );
        let mut ram = vec![0u8; 4 << 20];
        let long = "x".repeat(CMDLINE_MAX + 1);
        assert_eq!(
            write_boot_data(&mut ram, 1, &long, true),
            Err(LoadError::CmdlineTooLong)
        );
        assert_eq!(
            write_boot_data(&mut ram, 65, "", true),
            Err(LoadError::TooManyVcpus)
        );
        assert_eq!(
            write_boot_data(&mut ram, 0, "", true),
            Err(LoadError::TooManyVcpus)
        );
    }

    #[test]
    fn bsp_state_is_acrns_protected_mode() {
        let r = bsp_regs(0x10_0020, true);
        assert!(r.reserved_fields_clear());
        let v = r.vcpu_regs;
        assert_eq!((v.cs_sel, v.ds_sel, v.cr0, v.cr4), (0x10, 0x18, 0x31, 0));
        assert_eq!(v.gprs.rax, 0x2BAD_B002);
        assert_eq!(v.gprs.rbx, 0x1000);
        assert_eq!(v.rip, 0x10_0020);
        let limit = v.gdt.limit;
        assert_eq!(limit, 31);
        assert_eq!(bsp_regs(0x10_0000, false).vcpu_regs.gprs.rax, 0);
    }
}
