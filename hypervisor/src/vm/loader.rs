//! Guest kernel loaders following ACRN's boot contract (acrn-abi.md §10): KERNEL_RAWIMAGE,
//! KERNEL_ELF (with multiboot1 information when the image has a multiboot1 header) and
//! KERNEL_BZIMAGE (Linux boot protocol). They write into a [`GuestMem`] and return the BSP's
//! start state, so they run on the host in tests.

use crate::vcpu::{GuestRegs, InitialState, Segment};

/// GPA of the 4-entry boot GDT of the protected-mode start state.
pub const BOOT_GDT_GPA: u64 = 0x800;
const MBI_GPA: u64 = 0x1000;
const MB_MMAP_GPA: u64 = 0x1100;
const MB_LOADER_NAME_GPA: u64 = 0x1F00;
const MB_CMDLINE_GPA: u64 = 0x2000;
/// Multiboot1 module list (16 bytes per module) and the modules' strings after it.
const MB_MODS_GPA: u64 = 0x2800;
const MB_MOD_STRINGS_GPA: u64 = 0x2A00;
const MB_MOD_STRINGS_END: u64 = 0x3000;
/// Most boot modules passed on in a multiboot1 module list.
pub const MAX_MB1_MODULES: usize = 32;
const ZERO_PAGE_GPA: u64 = 0x7000;
const BZ_CMDLINE_GPA: u64 = 0x9000;
const CMDLINE_MAX: usize = 2048;
const MB1_MAGIC: u32 = 0x1BAD_B002;
pub const MB1_BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
pub const E820_RAM: u32 = 1;
pub const E820_RESERVED: u32 = 2;
pub const MAX_E820: usize = 16;

/// The memory of one VM as the loaders see it.
pub trait GuestMem {
    /// Copies `data` to guest-physical `gpa`; fails unless the whole range is the VM's RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError>;
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    NotElf,
    UnsupportedElf(&'static str),
    NotBzImage(&'static str),
    /// A segment or structure does not fit in the module or in the VM's memory.
    OutOfBounds {
        gpa: u64,
        len: u64,
    },
    EntryAbove4G(u64),
    MissingLoadAddress,
    CmdlineTooLong,
    /// A write would land on memory the load still reads (the kernel image itself when it lies
    /// in the VM's RAM) or hands to the guest (its boot modules).
    OverwritesSource {
        gpa: u64,
        len: u64,
    },
    /// A relocatable bzImage finds no room of `len` bytes aligned to `align` at or above its
    /// preferred address in the VM's RAM.
    NoRoomForKernel {
        len: u64,
        align: u64,
    },
    NoRoomForRamdisk {
        len: u64,
    },
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::NotElf => write!(f, "kernel module is not an ELF file"),
            LoadError::UnsupportedElf(w) => write!(f, "unsupported ELF: {w}"),
            LoadError::NotBzImage(w) => write!(f, "kernel module is not a bzImage: {w}"),
            LoadError::OutOfBounds { gpa, len } => {
                write!(
                    f,
                    "[{gpa:#x}, {:#x}) is outside the VM's memory or the module",
                    gpa.saturating_add(*len)
                )
            }
            LoadError::EntryAbove4G(e) => write!(f, "entry point {e:#x} is above 4 GiB"),
            LoadError::MissingLoadAddress => write!(
                f,
                "KERNEL_RAWIMAGE needs kern_load_addr and kern_entry_addr"
            ),
            LoadError::CmdlineTooLong => write!(f, "bootargs longer than {CMDLINE_MAX} bytes"),
            LoadError::NoRoomForKernel { len, align } => write!(
                f,
                "no room for the relocatable kernel ({len:#x} bytes, aligned to {align:#x}) \
                 at or above its preferred address in the VM's RAM"
            ),
            LoadError::NoRoomForRamdisk { len } => write!(
                f,
                "no room for the ramdisk ({len:#x} bytes) in the VM's RAM below initrd_addr_max"
            ),
            LoadError::OverwritesSource { gpa, len } => write!(
                f,
                "[{gpa:#x}, {:#x}) would overwrite the kernel image or a boot module",
                gpa.saturating_add(*len)
            ),
        }
    }
}

/// A [`GuestMem`] that refuses writes over `keep` (guest-physical ranges `(start, len)`): the
/// kernel image and modules a loader reads from or passes on when they lie in the VM's own RAM
/// (the Service VM's is identity-mapped over the boot modules). Writing there would change the
/// image under the loader's `&[u8]`.
pub struct Guarded<'a> {
    pub mem: &'a mut dyn GuestMem,
    pub keep: &'a [(u64, u64)],
}

impl Guarded<'_> {
    fn check(&self, gpa: u64, len: u64) -> Result<(), LoadError> {
        let hit = self
            .keep
            .iter()
            .any(|&(s, l)| gpa < s.saturating_add(l) && s < gpa.saturating_add(len));
        if hit {
            Err(LoadError::OverwritesSource { gpa, len })
        } else {
            Ok(())
        }
    }
}

impl GuestMem for Guarded<'_> {
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
        self.check(gpa, data.len() as u64)?;
        self.mem.write(gpa, data)
    }
    fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
        self.check(gpa, len)?;
        self.mem.zero(gpa, len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: u32,
}

/// The VM's e820: its RAM regions in GPA order, with 0xF0000..0x100000 reserved (the virtual
/// BIOS area holding the ACPI tables) as ACRN does.
pub fn vm_e820(regions: &[(u64, u64)], out: &mut [E820Entry; MAX_E820]) -> usize {
    let mut n = 0;
    let mut push = |e: E820Entry| {
        if n < MAX_E820 && e.size > 0 {
            out[n] = e;
            n += 1;
        }
    };
    for &(gpa, size) in regions {
        let end = gpa + size;
        if gpa < 0xF0000 && end > 0xF0000 {
            push(E820Entry {
                addr: gpa,
                size: 0xF0000 - gpa,
                kind: E820_RAM,
            });
            push(E820Entry {
                addr: 0xF0000,
                size: 0x10000,
                kind: E820_RESERVED,
            });
            if end > 0x10_0000 {
                push(E820Entry {
                    addr: 0x10_0000,
                    size: end - 0x10_0000,
                    kind: E820_RAM,
                });
            }
        } else {
            push(E820Entry {
                addr: gpa,
                size,
                kind: E820_RAM,
            });
        }
    }
    n
}

fn flat(selector: u16, access: u32) -> Segment {
    Segment {
        selector,
        base: 0,
        limit: 0xFFFF_FFFF,
        access,
    }
}

/// ACRN's protected-mode start: flat GDT at [`BOOT_GDT_GPA`] (code 0x10, data 0x18), CR0 =
/// ET|NE|PE, paging off.
pub fn protected_mode_state(mem: &mut dyn GuestMem, entry: u64) -> Result<InitialState, LoadError> {
    let gdt: [u64; 4] = [0, 0, 0x00CF_9B00_0000_FFFF, 0x00CF_9300_0000_FFFF];
    let mut b = [0u8; 32];
    for (i, e) in gdt.iter().enumerate() {
        b[i * 8..i * 8 + 8].copy_from_slice(&e.to_le_bytes());
    }
    mem.write(BOOT_GDT_GPA, &b)?;
    Ok(InitialState {
        rip: entry,
        cr0: 0x31, // PE | ET | NE
        gdtr_base: BOOT_GDT_GPA,
        gdtr_limit: 31,
        ..InitialState::with_segments(flat(0x10, 0xC09B), flat(0x18, 0xC093))
    })
}

/// KERNEL_RAWIMAGE: copy to `load`, start at `entry`, no boot information.
pub fn load_raw(
    mem: &mut dyn GuestMem,
    image: &[u8],
    load: u64,
    entry: u64,
) -> Result<InitialState, LoadError> {
    mem.write(load, image)?;
    protected_mode_state(mem, entry)
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Flags of a valid multiboot1 header in the first 8 KiB, if any.
pub fn multiboot1_flags(image: &[u8]) -> Option<u32> {
    (0..image.len().min(8192).saturating_sub(11))
        .step_by(4)
        .find_map(|o| {
            let (m, f, c) = (
                u32_at(image, o)?,
                u32_at(image, o + 4)?,
                u32_at(image, o + 8)?,
            );
            (m == MB1_MAGIC && m.wrapping_add(f).wrapping_add(c) == 0).then_some(f)
        })
}

/// A boot module handed to a guest in its multiboot1 module list: guest-physical
/// `[start, end)` and its string (the module's tag).
#[derive(Debug, Clone, Copy)]
pub struct Mb1Module<'a> {
    pub start: u32,
    pub end: u32,
    pub string: &'a str,
}

/// KERNEL_ELF: loads PT_LOAD segments at their physical addresses, clears BSS, and adds
/// multiboot1 information when the image carries a multiboot1 header.
pub fn load_elf(
    mem: &mut dyn GuestMem,
    image: &[u8],
    cmdline: &str,
    e820: &[E820Entry],
) -> Result<InitialState, LoadError> {
    load_elf_with_modules(mem, image, cmdline, e820, &[])
}

/// [`load_elf`] with a multiboot1 module list (flag bit 3) when `modules` is not empty (the
/// Service VM gets the boot modules the hypervisor does not use itself).
pub fn load_elf_with_modules(
    mem: &mut dyn GuestMem,
    image: &[u8],
    cmdline: &str,
    e820: &[E820Entry],
    modules: &[Mb1Module],
) -> Result<InitialState, LoadError> {
    if image.get(..4) != Some(b"\x7FELF") {
        return Err(LoadError::NotElf);
    }
    let class64 = match image.get(4) {
        Some(1) => false,
        Some(2) => true,
        _ => return Err(LoadError::UnsupportedElf("bad class")),
    };
    if image.get(5) != Some(&1) {
        return Err(LoadError::UnsupportedElf("not little-endian"));
    }
    let bad = LoadError::UnsupportedElf("truncated header");
    let (entry, phoff, phentsize, phnum) = if class64 {
        (
            u64_at(image, 24).ok_or(bad)?,
            u64_at(image, 32).ok_or(bad)? as usize,
            u16_at(image, 54).ok_or(bad)? as usize,
            u16_at(image, 56).ok_or(bad)? as usize,
        )
    } else {
        (
            u32_at(image, 24).ok_or(bad)? as u64,
            u32_at(image, 28).ok_or(bad)? as usize,
            u16_at(image, 42).ok_or(bad)? as usize,
            u16_at(image, 44).ok_or(bad)? as usize,
        )
    };
    if entry >= 1 << 32 {
        return Err(LoadError::EntryAbove4G(entry));
    }
    // Everything read from the image is read before the first write into guest memory.
    let mb1 = multiboot1_flags(image);
    let mut loaded = 0;
    for i in 0..phnum {
        let ph = phoff
            .checked_add(i.checked_mul(phentsize).ok_or(bad)?)
            .ok_or(bad)?;
        let (ty, off, paddr, filesz, memsz) = if class64 {
            (
                u32_at(image, ph).ok_or(bad)?,
                u64_at(image, ph + 8).ok_or(bad)?,
                u64_at(image, ph + 24).ok_or(bad)?,
                u64_at(image, ph + 32).ok_or(bad)?,
                u64_at(image, ph + 40).ok_or(bad)?,
            )
        } else {
            (
                u32_at(image, ph).ok_or(bad)?,
                u32_at(image, ph + 4).ok_or(bad)? as u64,
                u32_at(image, ph + 12).ok_or(bad)? as u64,
                u32_at(image, ph + 16).ok_or(bad)? as u64,
                u32_at(image, ph + 20).ok_or(bad)? as u64,
            )
        };
        if ty != 1 || memsz == 0 {
            continue;
        }
        let data = off
            .checked_add(filesz)
            .and_then(|end| image.get(off as usize..end as usize))
            .ok_or(LoadError::OutOfBounds {
                gpa: paddr,
                len: filesz,
            })?;
        if filesz > memsz {
            return Err(LoadError::UnsupportedElf(
                "segment file size exceeds memory size",
            ));
        }
        mem.write(paddr, data)?;
        mem.zero(paddr + filesz, memsz - filesz)?;
        loaded += 1;
    }
    if loaded == 0 {
        return Err(LoadError::UnsupportedElf("no loadable segment"));
    }
    let mut st = protected_mode_state(mem, entry)?;
    if let Some(flags) = mb1 {
        write_multiboot1_info(mem, flags, cmdline, e820, modules)?;
        st.regs.rax = MB1_BOOTLOADER_MAGIC as u64;
        st.regs.rbx = MBI_GPA;
    }
    Ok(st)
}

fn write_multiboot1_info(
    mem: &mut dyn GuestMem,
    hdr_flags: u32,
    cmdline: &str,
    e820: &[E820Entry],
    modules: &[Mb1Module],
) -> Result<(), LoadError> {
    if cmdline.len() >= CMDLINE_MAX {
        return Err(LoadError::CmdlineTooLong);
    }
    let mut mbi = [0u8; 72];
    if !modules.is_empty() {
        let mut list = [0u8; 16 * MAX_MB1_MODULES];
        let mut at = MB_MOD_STRINGS_GPA;
        let mut n = 0;
        for m in modules.iter().take(MAX_MB1_MODULES) {
            let len = m.string.len() as u64 + 1;
            if at + len > MB_MOD_STRINGS_END {
                break; // no room for more strings: the list ends here
            }
            mem.write(at, m.string.as_bytes())?;
            mem.zero(at + len - 1, 1)?;
            let e = &mut list[n * 16..n * 16 + 16];
            e[0..4].copy_from_slice(&m.start.to_le_bytes());
            e[4..8].copy_from_slice(&m.end.to_le_bytes());
            e[8..12].copy_from_slice(&(at as u32).to_le_bytes());
            at += len;
            n += 1;
        }
        mem.write(MB_MODS_GPA, &list[..n * 16])?;
        mbi[20..24].copy_from_slice(&(n as u32).to_le_bytes());
        mbi[24..28].copy_from_slice(&(MB_MODS_GPA as u32).to_le_bytes());
    }
    let mut flags: u32 = 1 << 2 | 1 << 9; // cmdline, boot loader name
    if !modules.is_empty() {
        flags |= 1 << 3;
    }
    mbi[16..20].copy_from_slice(&(MB_CMDLINE_GPA as u32).to_le_bytes());
    mbi[64..68].copy_from_slice(&(MB_LOADER_NAME_GPA as u32).to_le_bytes());
    mem.write(MB_CMDLINE_GPA, cmdline.as_bytes())?;
    mem.zero(MB_CMDLINE_GPA + cmdline.len() as u64, 1)?;
    mem.write(MB_LOADER_NAME_GPA, b"ACRN hypervisor\0")?;
    if hdr_flags & 2 != 0 {
        // Memory information: mem_lower/upper in KiB and the full map.
        let lower = e820
            .iter()
            .find(|e| e.addr == 0 && e.kind == E820_RAM)
            .map_or(0, |e| e.size.min(0xA0000));
        let upper = e820
            .iter()
            .find(|e| e.addr == 0x10_0000 && e.kind == E820_RAM)
            .map_or(0, |e| e.size);
        mbi[4..8].copy_from_slice(&((lower / 1024) as u32).to_le_bytes());
        mbi[8..12].copy_from_slice(&((upper / 1024).min(u32::MAX as u64) as u32).to_le_bytes());
        let mut mm = [0u8; 24 * MAX_E820];
        for (i, e) in e820.iter().take(MAX_E820).enumerate() {
            let o = i * 24;
            mm[o..o + 4].copy_from_slice(&20u32.to_le_bytes());
            mm[o + 4..o + 12].copy_from_slice(&e.addr.to_le_bytes());
            mm[o + 12..o + 20].copy_from_slice(&e.size.to_le_bytes());
            mm[o + 20..o + 24].copy_from_slice(&e.kind.to_le_bytes());
        }
        let len = 24 * e820.len().min(MAX_E820);
        mem.write(MB_MMAP_GPA, &mm[..len])?;
        mbi[44..48].copy_from_slice(&(len as u32).to_le_bytes());
        mbi[48..52].copy_from_slice(&(MB_MMAP_GPA as u32).to_le_bytes());
        flags |= 1 | 1 << 6;
    }
    mbi[0..4].copy_from_slice(&flags.to_le_bytes());
    mem.write(MBI_GPA, &mbi)
}

/// Where a bzImage's protected-mode kernel goes, as ACRN places it: at its preferred address
/// when `[pref, pref + need)` is RAM clear of `avoid`; else, for a relocatable kernel, at the
/// lowest address at or above `pref` aligned to `align` where `need` bytes are RAM clear of
/// `avoid`. Not below `pref`: a relocatable kernel loaded lower decompresses itself to
/// `pref` (its LOAD_PHYSICAL_ADDR) anyway, which may not be the VM's memory.
pub fn place_kernel(
    e820: &[E820Entry],
    avoid: &[(u64, u64)],
    pref: u64,
    align: u64,
    need: u64,
    relocatable: bool,
) -> Option<u64> {
    // The 32-bit boot protocol: code32_start is a 32-bit address.
    const LIMIT: u64 = 1 << 32;
    let clear = |a: u64| {
        let end = a.checked_add(need).filter(|&e| e <= LIMIT)?;
        let in_ram = e820
            .iter()
            .any(|e| e.kind == E820_RAM && e.addr <= a && end <= e.addr + e.size);
        let hit = avoid
            .iter()
            .filter(|&&(s, l)| a < s.saturating_add(l) && s < end)
            .map(|&(s, l)| s.saturating_add(l))
            .max();
        match (in_ram, hit) {
            (true, None) => Some(Ok(a)),
            // Retry past the range in the way.
            (_, Some(past)) => Some(Err(past)),
            (false, None) => Some(Err(a)),
        }
    };
    if let Some(Ok(a)) = clear(pref) {
        return Some(a);
    }
    if !relocatable || !align.is_power_of_two() {
        return None;
    }
    let up = |a: u64| a.checked_add(align - 1).map(|v| v & !(align - 1));
    let mut ram: [(u64, u64); MAX_E820] = [(0, 0); MAX_E820];
    let mut n = 0;
    for e in e820.iter().filter(|e| e.kind == E820_RAM).take(MAX_E820) {
        ram[n] = (e.addr, e.addr.saturating_add(e.size).min(LIMIT));
        n += 1;
    }
    ram[..n].sort_unstable();
    for &(start, end) in &ram[..n] {
        let mut a = up(start.max(pref))?;
        while a.checked_add(need).is_some_and(|e| e <= end) {
            match clear(a)? {
                Ok(a) => return Some(a),
                Err(past) => a = up(past.max(a + align))?,
            }
        }
    }
    None
}

/// Most ranges [`load_bzimage`] keeps its ramdisk away from (besides the kernel).
pub const MAX_AVOID: usize = 64;

/// The highest page-aligned address below `limit` where `len` bytes are RAM at or above 1 MiB
/// clear of `avoid`.
pub fn place_ramdisk(
    e820: &[E820Entry],
    avoid: &[(u64, u64)],
    limit: u64,
    len: u64,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    for e in e820.iter().filter(|e| e.kind == E820_RAM) {
        let lo = e.addr.max(0x10_0000);
        let mut top = e.addr.saturating_add(e.size).min(limit);
        while let Some(a) = top
            .checked_sub(len)
            .map(|a| a & !0xFFF)
            .filter(|&a| a >= lo)
        {
            match avoid
                .iter()
                .filter(|&&(s, l)| a < s.saturating_add(l) && s < a + len)
                .map(|&(s, _)| s)
                .min()
            {
                None => {
                    best = best.max(Some(a));
                    break;
                }
                // Retry below the range in the way.
                Some(s) => top = s,
            }
        }
    }
    best
}

/// KERNEL_BZIMAGE: Linux 32-bit boot protocol. The protected-mode kernel goes where
/// [`place_kernel`] puts it (never over `avoid`: the boot modules the load reads from), the
/// zero page to 0x7000 with the setup header, the VM's e820, the command line and the ramdisk
/// (the highest room in RAM below `initrd_addr_max`). `rsdp` is the guest ACPI RSDP for
/// `acpi_rsdp_addr`.
pub fn load_bzimage(
    mem: &mut dyn GuestMem,
    image: &[u8],
    cmdline: &str,
    ramdisk: Option<&[u8]>,
    e820: &[E820Entry],
    avoid: &[(u64, u64)],
    rsdp: u64,
) -> Result<InitialState, LoadError> {
    if u16_at(image, 0x1FE) != Some(0xAA55) || image.get(0x202..0x206) != Some(b"HdrS") {
        return Err(LoadError::NotBzImage("no boot signature or HdrS"));
    }
    let version = u16_at(image, 0x206).ok_or(LoadError::NotBzImage("truncated"))?;
    if version < 0x20C {
        return Err(LoadError::NotBzImage("boot protocol older than 2.12"));
    }
    let loadflags = image[0x211];
    if loadflags & 1 == 0 {
        return Err(LoadError::NotBzImage("not loaded high (zImage)"));
    }
    if cmdline.len() >= CMDLINE_MAX {
        return Err(LoadError::CmdlineTooLong);
    }
    let setup_sects = match image[0x1F1] {
        0 => 4,
        n => n as usize,
    };
    let kernel_off = (setup_sects + 1) * 512;
    let kernel = image
        .get(kernel_off..)
        .ok_or(LoadError::NotBzImage("truncated"))?;
    let pref = u64_at(image, 0x258).unwrap_or(0x100_0000);
    let init_size = u32_at(image, 0x260).unwrap_or(0) as u64;
    let relocatable = image.get(0x234).is_some_and(|&r| r != 0);
    let align = u32_at(image, 0x230).unwrap_or(0) as u64;
    let need = init_size.max(kernel.len() as u64);
    let load = place_kernel(e820, avoid, pref, align, need, relocatable).ok_or(if relocatable {
        LoadError::NoRoomForKernel { len: need, align }
    } else {
        LoadError::OutOfBounds {
            gpa: pref,
            len: need,
        }
    })?;
    mem.write(load, kernel)?;

    let mut zp = [0u8; 4096];
    let hdr_end = (0x202 + image[0x201] as usize).min(image.len()).max(0x1F1);
    zp[0x1F1..hdr_end].copy_from_slice(&image[0x1F1..hdr_end]);
    zp[0x210] = 0xFF; // type_of_loader: undefined
    zp[0x211] = loadflags & !0x20 | 0x80; // no QUIET; CAN_USE_HEAP
    zp[0x214..0x218].copy_from_slice(&(load as u32).to_le_bytes());
    zp[0x224..0x226].copy_from_slice(&0xFE00u16.to_le_bytes()); // heap_end_ptr
    zp[0x228..0x22C].copy_from_slice(&(BZ_CMDLINE_GPA as u32).to_le_bytes());
    zp[0x070..0x078].copy_from_slice(&rsdp.to_le_bytes());
    mem.write(BZ_CMDLINE_GPA, cmdline.as_bytes())?;
    mem.zero(BZ_CMDLINE_GPA + cmdline.len() as u64, 1)?;
    if let Some(rd) = ramdisk {
        let max = u32_at(image, 0x22C).unwrap_or(0x37FF_FFFF) as u64;
        let len = rd.len() as u64;
        let mut taken = [(0u64, 0u64); MAX_AVOID + 1];
        let navoid = avoid.len().min(MAX_AVOID);
        taken[..navoid].copy_from_slice(&avoid[..navoid]);
        taken[navoid] = (load, need);
        let at = place_ramdisk(e820, &taken[..=navoid], max.saturating_add(1), len)
            .ok_or(LoadError::NoRoomForRamdisk { len })?;
        mem.write(at, rd)?;
        zp[0x218..0x21C].copy_from_slice(&(at as u32).to_le_bytes());
        zp[0x21C..0x220].copy_from_slice(&(len as u32).to_le_bytes());
    }
    let n = e820.len().min(128);
    zp[0x1E8] = n as u8;
    for (i, e) in e820.iter().take(n).enumerate() {
        let o = 0x2D0 + i * 20;
        zp[o..o + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[o + 8..o + 16].copy_from_slice(&e.size.to_le_bytes());
        zp[o + 16..o + 20].copy_from_slice(&e.kind.to_le_bytes());
    }
    mem.write(ZERO_PAGE_GPA, &zp)?;
    let mut st = protected_mode_state(mem, load)?;
    st.regs = GuestRegs {
        rsi: ZERO_PAGE_GPA,
        ..Default::default()
    };
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl GuestMem for Mem {
        fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), LoadError> {
            let s = self.0.get_mut(gpa as usize..gpa as usize + data.len());
            s.ok_or(LoadError::OutOfBounds {
                gpa,
                len: data.len() as u64,
            })?
            .copy_from_slice(data);
            Ok(())
        }
        fn zero(&mut self, gpa: u64, len: u64) -> Result<(), LoadError> {
            let s = self.0.get_mut(gpa as usize..(gpa + len) as usize);
            s.ok_or(LoadError::OutOfBounds { gpa, len })?.fill(0);
            Ok(())
        }
    }
    fn rd32(m: &Mem, a: u64) -> u32 {
        u32::from_le_bytes(m.0[a as usize..a as usize + 4].try_into().unwrap())
    }

    fn elf32(entry: u32, segs: &[(u32, &[u8], u32)], mb1: bool) -> Vec<u8> {
        let mut img = vec![0u8; 0x1000];
        img[..4].copy_from_slice(b"\x7FELF");
        img[4] = 1;
        img[5] = 1;
        img[24..28].copy_from_slice(&entry.to_le_bytes());
        img[28..32].copy_from_slice(&52u32.to_le_bytes());
        img[42..44].copy_from_slice(&32u16.to_le_bytes());
        img[44..46].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (paddr, data, memsz)) in segs.iter().enumerate() {
            let off = img.len() as u32;
            let ph = 52 + i * 32;
            img[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
            img[ph + 4..ph + 8].copy_from_slice(&off.to_le_bytes());
            img[ph + 12..ph + 16].copy_from_slice(&paddr.to_le_bytes());
            img[ph + 16..ph + 20].copy_from_slice(&(data.len() as u32).to_le_bytes());
            img[ph + 20..ph + 24].copy_from_slice(&memsz.to_le_bytes());
            img.extend_from_slice(data);
        }
        if mb1 {
            let f = 3u32;
            img[0x400..0x404].copy_from_slice(&MB1_MAGIC.to_le_bytes());
            img[0x404..0x408].copy_from_slice(&f.to_le_bytes());
            img[0x408..0x40C]
                .copy_from_slice(&0u32.wrapping_sub(MB1_MAGIC).wrapping_sub(f).to_le_bytes());
        }
        img
    }

    fn e820_256m() -> ([E820Entry; MAX_E820], usize) {
        let mut e = [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820];
        let n = vm_e820(&[(0, 0x1000_0000)], &mut e);
        (e, n)
    }

    #[test]
    fn e820_has_bios_hole() {
        let (e, n) = e820_256m();
        assert_eq!(n, 3);
        assert_eq!(
            e[0],
            E820Entry {
                addr: 0,
                size: 0xF0000,
                kind: E820_RAM
            }
        );
        assert_eq!(e[1].kind, E820_RESERVED);
        assert_eq!(
            e[2],
            E820Entry {
                addr: 0x10_0000,
                size: 0x0FF0_0000,
                kind: E820_RAM
            }
        );
    }

    /// The Service VM case: the kernel image (here its placeholder range) lies in the VM's RAM
    /// where its own BSS would go. The load must fail cleanly, not overwrite it; a load that
    /// leaves it alone passes through.
    #[test]
    fn guarded_refuses_writes_over_kept_ranges() {
        let img = elf32(0x10_0000, &[(0x10_0000, &[0x90; 16], 0x4_0000)], true);
        let (e, n) = e820_256m();
        let mut m = Mem(vec![0xAA; 0x20_0000]);
        let keep = [(0x10_9000, img.len() as u64)];
        let r = load_elf(
            &mut Guarded {
                mem: &mut m,
                keep: &keep,
            },
            &img,
            "x",
            &e[..n],
        );
        assert!(
            matches!(r, Err(LoadError::OverwritesSource { gpa, len }) if gpa < 0x10_9000 && gpa + len > 0x10_9000),
            "{r:?}"
        );
        assert!(m.0[0x10_9000..0x10_9000 + img.len()]
            .iter()
            .all(|&b| b == 0xAA));
        // A kept range overlapping only the multiboot information is refused as well.
        let keep = [(0x2000, 8)];
        let r = load_elf(
            &mut Guarded {
                mem: &mut m,
                keep: &keep,
            },
            &img,
            "x",
            &e[..n],
        );
        assert!(
            matches!(r, Err(LoadError::OverwritesSource { .. })),
            "{r:?}"
        );
        let keep = [(0x18_0000, 0x1000)];
        let st = load_elf(
            &mut Guarded {
                mem: &mut m,
                keep: &keep,
            },
            &img,
            "x",
            &e[..n],
        )
        .unwrap();
        assert_eq!(st.regs.rax, MB1_BOOTLOADER_MAGIC as u64);
        assert_eq!(m.0[0x10_0000], 0x90);
        assert_eq!(m.0[0x18_0000], 0xAA);
    }

    #[test]
    fn elf_with_multiboot() {
        let mut m = Mem(vec![0xAA; 0x40_0000]);
        let img = elf32(0x10_0010, &[(0x10_0000, b"code", 0x2000)], true);
        let (e, n) = e820_256m();
        let st = load_elf(&mut m, &img, "console=ttyS0", &e[..n]).unwrap();
        assert_eq!(&m.0[0x10_0000..0x10_0004], b"code");
        assert!(
            m.0[0x10_0004..0x10_2000].iter().all(|&b| b == 0),
            "BSS cleared"
        );
        assert_eq!(m.0[0x10_2000], 0xAA, "nothing past memsz");
        assert_eq!(st.rip, 0x10_0010);
        assert_eq!((st.cs.selector, st.ds.selector, st.cr0), (0x10, 0x18, 0x31));
        assert_eq!(st.regs.rax, 0x2BAD_B002);
        assert_eq!(st.regs.rbx, MBI_GPA);
        assert_eq!(
            rd32(&m, MBI_GPA) & 0x245,
            0x245,
            "mem, cmdline, mmap, loader name"
        );
        assert_eq!(rd32(&m, MBI_GPA + 4), 640, "mem_lower stops at 640 KiB");
        assert_eq!(rd32(&m, MBI_GPA + 8), 0x0FF0_0000 / 1024);
        assert_eq!(rd32(&m, MBI_GPA + 44), 3 * 24);
        let cl = rd32(&m, MBI_GPA + 16) as usize;
        assert_eq!(&m.0[cl..cl + 14], b"console=ttyS0\0");
        assert_eq!(&m.0[0x810..0x818], &0x00CF_9B00_0000_FFFFu64.to_le_bytes());
    }

    #[test]
    fn elf_with_module_list() {
        let mut m = Mem(vec![0; 0x40_0000]);
        let img = elf32(0x10_0010, &[(0x10_0000, b"code", 0x10)], true);
        let (e, n) = e820_256m();
        let mods = [
            Mb1Module {
                start: 0x20_0000,
                end: 0x20_0100,
                string: "launch_vms",
            },
            Mb1Module {
                start: 0x30_0000,
                end: 0x31_0000,
                string: "POST_VM1_kernel",
            },
        ];
        load_elf_with_modules(&mut m, &img, "x", &e[..n], &mods).unwrap();
        assert_ne!(rd32(&m, MBI_GPA) & 8, 0, "mods flag");
        assert_eq!(rd32(&m, MBI_GPA + 20), 2, "mods_count");
        let list = rd32(&m, MBI_GPA + 24) as u64;
        assert_eq!(rd32(&m, list + 16), 0x30_0000);
        assert_eq!(rd32(&m, list + 20), 0x31_0000);
        let s = rd32(&m, list + 24) as usize;
        assert_eq!(&m.0[s..s + 16], b"POST_VM1_kernel\0");
        // Without modules the flag stays clear.
        load_elf(&mut m, &img, "x", &e[..n]).unwrap();
        assert_eq!(rd32(&m, MBI_GPA) & 8, 0);
    }

    #[test]
    fn elf_without_multiboot_and_bad_inputs() {
        let mut m = Mem(vec![0; 0x40_0000]);
        let (e, n) = e820_256m();
        let st = load_elf(
            &mut m,
            &elf32(0x20_0000, &[(0x20_0000, b"x", 1)], false),
            "",
            &e[..n],
        )
        .unwrap();
        assert_eq!(st.regs.rax, 0);
        assert!(matches!(
            load_elf(&mut m, b"MZ..", "", &e[..n]),
            Err(LoadError::NotElf)
        ));
        let far = elf32(0x10_0000, &[(0x4000_0000, b"x", 1)], false);
        assert!(matches!(
            load_elf(&mut m, &far, "", &e[..n]),
            Err(LoadError::OutOfBounds { .. })
        ));
        let mut trunc = elf32(0x10_0000, &[(0x10_0000, b"abcd", 4)], false);
        trunc.truncate(trunc.len() - 2);
        assert!(matches!(
            load_elf(&mut m, &trunc, "", &e[..n]),
            Err(LoadError::OutOfBounds { .. })
        ));
        assert!(load_elf(&mut m, &elf32(0x10_0000, &[], false), "", &e[..n]).is_err());
    }

    #[test]
    fn bzimage_zero_page() {
        let mut img = vec![0u8; 5 * 512 + 0x100];
        img[0x1F1] = 4;
        img[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        img[0x201] = 0x6A;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20Fu16.to_le_bytes());
        img[0x211] = 1;
        img[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        img[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        img[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes());
        img[5 * 512..5 * 512 + 4].copy_from_slice(b"KERN");
        let mut m = Mem(vec![0; 0x200_0000]);
        let mut e = [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820];
        let n = vm_e820(&[(0, 0x200_0000)], &mut e);
        let st = load_bzimage(
            &mut m,
            &img,
            "console=ttyS0",
            Some(b"RD"),
            &e[..n],
            &[],
            0xF2400,
        )
        .unwrap();
        assert_eq!(st.rip, 0x100_0000);
        assert_eq!(st.regs.rsi, ZERO_PAGE_GPA);
        assert_eq!(&m.0[0x100_0000..0x100_0004], b"KERN");
        let zp = ZERO_PAGE_GPA as usize;
        assert_eq!(m.0[zp + 0x1E8], 3);
        assert_eq!(m.0[zp + 0x210], 0xFF);
        assert_eq!(rd32(&m, ZERO_PAGE_GPA + 0x228), BZ_CMDLINE_GPA as u32);
        assert_eq!(rd32(&m, ZERO_PAGE_GPA + 0x70), 0xF2400);
        let rd = rd32(&m, ZERO_PAGE_GPA + 0x218) as usize;
        assert_eq!(rd, 0x1FF_F000);
        assert_eq!(&m.0[rd..rd + 2], b"RD");
        assert_eq!(rd32(&m, ZERO_PAGE_GPA + 0x2D0 + 2 * 20 + 8), 0x1F0_0000);
        img[0x202] = b'X';
        assert!(matches!(
            load_bzimage(&mut m, &img, "", None, &e[..n], &[], 0),
            Err(LoadError::NotBzImage(_))
        ));
    }

    /// A minimal bzImage: 4 setup sectors, preferred address 16 MiB, `init_size` 1 MiB.
    fn bzimage(relocatable: bool, align: u32) -> Vec<u8> {
        let mut img = vec![0u8; 5 * 512 + 0x100];
        img[0x1F1] = 4;
        img[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
        img[0x201] = 0x6A;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20Fu16.to_le_bytes());
        img[0x211] = 1;
        img[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        img[0x230..0x234].copy_from_slice(&align.to_le_bytes());
        img[0x234] = relocatable as u8;
        img[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        img[0x260..0x264].copy_from_slice(&0x10_0000u32.to_le_bytes());
        img[5 * 512..5 * 512 + 4].copy_from_slice(b"KERN");
        img
    }

    /// The Service VM of configs/qemu-epyc: RAM below 4 MiB and from 88 MiB (the hypervisor's
    /// RAM is carved out between), here up to 128 MiB.
    fn carved_e820() -> ([E820Entry; MAX_E820], usize) {
        let mut e = [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820];
        let n = vm_e820(&[(0, 0x40_0000), (0x580_0000, 0x280_0000)], &mut e);
        (e, n)
    }

    #[test]
    fn relocatable_bzimage_goes_to_the_first_aligned_room_above_its_preferred_address() {
        let (e, n) = carved_e820();
        let mut m = Mem(vec![0; 0x800_0000]);
        let img = bzimage(true, 0x20_0000);
        let st = load_bzimage(&mut m, &img, "", Some(b"RD"), &e[..n], &[], 0).unwrap();
        assert_eq!(st.rip, 0x580_0000);
        assert_eq!(&m.0[0x580_0000..0x580_0004], b"KERN");
        assert_eq!(rd32(&m, ZERO_PAGE_GPA + 0x214), 0x580_0000);
        // The ramdisk at the top of RAM, above the kernel's init_size.
        assert_eq!(rd32(&m, ZERO_PAGE_GPA + 0x218), 0x7FF_F000);
    }

    #[test]
    fn kernel_placement_honours_alignment_init_size_and_modules() {
        let (e, n) = carved_e820();
        let e = &e[..n];
        // Preferred address free: taken as is.
        assert_eq!(
            place_kernel(e, &[], 0x580_0000, 0x20_0000, 0x10_0000, false),
            Some(0x580_0000)
        );
        // A boot module at 88 MiB + 4 KiB: the next 16 MiB boundary after it.
        assert_eq!(
            place_kernel(
                e,
                &[(0x580_1000, 0x1000)],
                0x100_0000,
                0x100_0000,
                0x10_0000,
                true
            ),
            Some(0x600_0000)
        );
        // init_size larger than any room: nothing.
        assert_eq!(
            place_kernel(e, &[], 0x100_0000, 0x20_0000, 0x300_0000, true),
            None
        );
        // Never below the preferred address (the kernel would decompress to it anyway).
        assert_eq!(
            place_kernel(e, &[], 0x600_0000, 0x20_0000, 0x10_0000, true),
            Some(0x600_0000)
        );
        // Alignment not a power of two: refused.
        assert_eq!(place_kernel(e, &[], 0x100_0000, 3, 0x10_0000, true), None);
        // Never above 4 GiB (code32_start is 32 bits).
        let mut hi = [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820];
        let nh = vm_e820(&[(0, 0x40_0000), (0x1_0000_0000, 0x1000_0000)], &mut hi);
        assert_eq!(
            place_kernel(&hi[..nh], &[], 0x100_0000, 0x20_0000, 0x10_0000, true),
            None
        );
    }

    #[test]
    fn kernel_outside_ram_and_not_relocatable_is_a_clear_error() {
        let (e, n) = carved_e820();
        let mut m = Mem(vec![0; 0x800_0000]);
        let r = load_bzimage(
            &mut m,
            &bzimage(false, 0x20_0000),
            "",
            None,
            &e[..n],
            &[],
            0,
        );
        assert_eq!(
            r.unwrap_err(),
            LoadError::OutOfBounds {
                gpa: 0x100_0000,
                len: 0x10_0000
            }
        );
        let mut small = [E820Entry {
            addr: 0,
            size: 0,
            kind: 0,
        }; MAX_E820];
        let ns = vm_e820(&[(0, 0x40_0000), (0x580_0000, 0x8_0000)], &mut small);
        let err = load_bzimage(
            &mut m,
            &bzimage(true, 0x20_0000),
            "",
            None,
            &small[..ns],
            &[],
            0,
        )
        .unwrap_err();
        assert_eq!(
            err,
            LoadError::NoRoomForKernel {
                len: 0x10_0000,
                align: 0x20_0000
            }
        );
        assert!(err
            .to_string()
            .contains("no room for the relocatable kernel"));
    }

    #[test]
    fn ramdisk_stays_clear_of_the_kernel_and_the_boot_modules() {
        let (e, n) = carved_e820();
        let e = &e[..n];
        // The staged module copies at the top of RAM: the ramdisk goes below them.
        assert_eq!(
            place_ramdisk(e, &[(0x7F0_0000, 0x10_0000)], 0x8000_0000, 0x2000),
            Some(0x7EF_E000)
        );
        // Below initrd_addr_max.
        assert_eq!(place_ramdisk(e, &[], 0x600_0000, 0x1000), Some(0x5FF_F000));
        // Nowhere big enough.
        assert_eq!(
            place_ramdisk(e, &[(0x580_0000, 0x280_0000)], u64::MAX, 0x1000),
            Some(0x3F_F000)
        );
        assert_eq!(place_ramdisk(e, &[(0, 0x800_0000)], u64::MAX, 0x1000), None);
        let mut m = Mem(vec![0; 0x800_0000]);
        let err = load_bzimage(
            &mut m,
            &bzimage(true, 0x20_0000),
            "",
            Some(&vec![1u8; 0x40_0000]),
            e,
            &[(0x590_0000, 0x270_0000)],
            0,
        )
        .unwrap_err();
        // 4 MiB: more than the RAM below 4 MiB, and the rest is the kernel's and the modules'.
        assert_eq!(err, LoadError::NoRoomForRamdisk { len: 0x40_0000 });
    }
}
