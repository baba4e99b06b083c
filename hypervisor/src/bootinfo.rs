//! Boot information from the loader: PVH `hvm_start_info` (QEMU `-kernel`) or multiboot2 (GRUB).
//! Parsed into fixed-capacity tables (no heap) through [`PhysRead`], so the logic runs on the host.
//!
//! Module tags: a multiboot2 module's command line is `[path] TAG ...`; the tag is its first word
//! that does not start with `/` (ACRN's GRUB convention `module2 /boot/x.elf PRE_VM0_kernel`).
//! PVH carries one module without a usable name; when it is a `newc` cpio archive, every file in
//! it becomes a module tagged with its file name (so `qemu -kernel acrn.elf -initrd mods.cpio`
//! can deliver several VM kernels).

pub const PVH_MAGIC: u32 = 0x336e_c578;
pub const MB2_MAGIC: u32 = 0x36d7_6289;
pub const MAX_MEMMAP: usize = 64;
pub const MAX_MODULES: usize = 16;
pub const TAG_LEN: usize = 64;
pub const CMDLINE_LEN: usize = 256;

/// Reads physical memory (identity-mapped on the target, a fake buffer in tests).
pub trait PhysRead {
    /// Fills `buf` from physical address `pa`; false if the range is not readable.
    fn read(&self, pa: u64, buf: &mut [u8]) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Pvh,
    Multiboot2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemmapEntry {
    pub addr: u64,
    pub size: u64,
    /// E820 type (1 = usable RAM).
    pub kind: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Module {
    pub start: u64,
    pub size: u64,
    tag: [u8; TAG_LEN],
    tag_len: usize,
}

impl Module {
    pub fn tag(&self) -> &str {
        core::str::from_utf8(&self.tag[..self.tag_len]).unwrap_or("")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootInfoError {
    UnknownProtocol { magic: u32 },
    Unreadable { addr: u64 },
    Malformed(&'static str),
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::UnknownProtocol { magic } => {
                write!(
                    f,
                    "unknown boot protocol (magic {magic:#x}): boot with PVH or multiboot2"
                )
            }
            BootInfoError::Unreadable { addr } => {
                write!(f, "boot information at {addr:#x} is unreadable")
            }
            BootInfoError::Malformed(what) => write!(f, "malformed boot information: {what}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BootInfo {
    pub protocol: Protocol,
    memmap: [MemmapEntry; MAX_MEMMAP],
    memmap_len: usize,
    modules: [Module; MAX_MODULES],
    modules_len: usize,
    cmdline: [u8; CMDLINE_LEN],
    cmdline_len: usize,
    /// ACPI RSDP physical address if the loader gave one (0 otherwise).
    pub rsdp: u64,
}

fn rd<const N: usize>(m: &dyn PhysRead, pa: u64) -> Result<[u8; N], BootInfoError> {
    let mut b = [0u8; N];
    if m.read(pa, &mut b) {
        Ok(b)
    } else {
        Err(BootInfoError::Unreadable { addr: pa })
    }
}
fn rd32(m: &dyn PhysRead, pa: u64) -> Result<u32, BootInfoError> {
    Ok(u32::from_le_bytes(rd::<4>(m, pa)?))
}
fn rd64(m: &dyn PhysRead, pa: u64) -> Result<u64, BootInfoError> {
    Ok(u64::from_le_bytes(rd::<8>(m, pa)?))
}

/// Reads a NUL-terminated string of at most `out.len()` bytes; returns its length.
fn read_cstr(m: &dyn PhysRead, pa: u64, out: &mut [u8]) -> Result<usize, BootInfoError> {
    for (i, slot) in out.iter_mut().enumerate() {
        let [c] = rd::<1>(m, pa + i as u64)?;
        if c == 0 {
            return Ok(i);
        }
        *slot = c;
    }
    Ok(out.len())
}

/// The module tag within a module command line: first word not starting with '/'.
pub fn tag_of(cmdline: &[u8]) -> &[u8] {
    cmdline
        .split(|c| c.is_ascii_whitespace())
        .find(|w| !w.is_empty() && w[0] != b'/')
        .unwrap_or(&[])
}

impl BootInfo {
    fn empty(protocol: Protocol) -> Self {
        BootInfo {
            protocol,
            memmap: [MemmapEntry {
                addr: 0,
                size: 0,
                kind: 0,
            }; MAX_MEMMAP],
            memmap_len: 0,
            modules: [Module {
                start: 0,
                size: 0,
                tag: [0; TAG_LEN],
                tag_len: 0,
            }; MAX_MODULES],
            modules_len: 0,
            cmdline: [0; CMDLINE_LEN],
            cmdline_len: 0,
            rsdp: 0,
        }
    }

    pub fn memmap(&self) -> &[MemmapEntry] {
        &self.memmap[..self.memmap_len]
    }
    pub fn modules(&self) -> &[Module] {
        &self.modules[..self.modules_len]
    }
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }
    pub fn module_by_tag(&self, tag: &str) -> Option<&Module> {
        self.modules().iter().find(|m| m.tag() == tag)
    }

    /// True if `[start, start+size)` lies entirely in usable RAM of the memory map.
    pub fn is_ram(&self, start: u64, size: u64) -> bool {
        let mut cur = start;
        let end = start.saturating_add(size);
        // Entries may be unsorted or adjacent: repeatedly extend `cur` through a covering entry.
        while cur < end {
            let next = self
                .memmap()
                .iter()
                .filter(|e| e.kind == 1 && e.addr <= cur && cur < e.addr.saturating_add(e.size))
                .map(|e| e.addr.saturating_add(e.size))
                .max();
            match next {
                Some(n) => cur = n,
                None => return false,
            }
        }
        true
    }

    fn push_mem(&mut self, e: MemmapEntry) -> Result<(), BootInfoError> {
        if self.memmap_len == MAX_MEMMAP {
            return Err(BootInfoError::Malformed("more than 64 memory map entries"));
        }
        self.memmap[self.memmap_len] = e;
        self.memmap_len += 1;
        Ok(())
    }

    fn push_module(&mut self, start: u64, size: u64, tag: &[u8]) -> Result<(), BootInfoError> {
        if self.modules_len == MAX_MODULES {
            return Err(BootInfoError::Malformed("more than 16 boot modules"));
        }
        let mut m = Module {
            start,
            size,
            tag: [0; TAG_LEN],
            tag_len: tag.len().min(TAG_LEN),
        };
        m.tag[..m.tag_len].copy_from_slice(&tag[..m.tag_len]);
        self.modules[self.modules_len] = m;
        self.modules_len += 1;
        Ok(())
    }

    /// Parses the boot information the entry stub received.
    pub fn parse(m: &dyn PhysRead, magic: u32, info: u64) -> Result<Self, BootInfoError> {
        if magic == MB2_MAGIC {
            return Self::parse_mb2(m, info);
        }
        if rd32(m, info)? == PVH_MAGIC {
            return Self::parse_pvh(m, info);
        }
        Err(BootInfoError::UnknownProtocol { magic })
    }

    fn parse_pvh(m: &dyn PhysRead, info: u64) -> Result<Self, BootInfoError> {
        let mut bi = Self::empty(Protocol::Pvh);
        let version = rd32(m, info + 4)?;
        let nr_modules = rd32(m, info + 12)?;
        let modlist = rd64(m, info + 16)?;
        let cmdline = rd64(m, info + 24)?;
        bi.rsdp = rd64(m, info + 32)?;
        if cmdline != 0 {
            bi.cmdline_len = read_cstr(m, cmdline, &mut bi.cmdline)?;
        }
        if version >= 1 {
            let memmap = rd64(m, info + 40)?;
            let entries = rd32(m, info + 48)?;
            for i in 0..entries as u64 {
                let e = memmap + i * 24;
                bi.push_mem(MemmapEntry {
                    addr: rd64(m, e)?,
                    size: rd64(m, e + 8)?,
                    kind: rd32(m, e + 16)?,
                })?;
            }
        }
        for i in 0..nr_modules as u64 {
            let e = modlist + i * 32;
            let (start, size, cmd) = (rd64(m, e)?, rd64(m, e + 8)?, rd64(m, e + 16)?);
            if is_cpio(m, start, size) {
                bi.add_cpio(m, start, size)?;
                continue;
            }
            let mut buf = [0u8; CMDLINE_LEN];
            let n = if cmd != 0 {
                read_cstr(m, cmd, &mut buf)?
            } else {
                0
            };
            let tag = tag_of(&buf[..n]);
            let mut t = [0u8; TAG_LEN];
            let tl = tag.len().min(TAG_LEN);
            t[..tl].copy_from_slice(&tag[..tl]);
            bi.push_module(start, size, &t[..tl])?;
        }
        Ok(bi)
    }

    /// Adds every regular file of a `newc` cpio archive as a module tagged with its name.
    fn add_cpio(&mut self, m: &dyn PhysRead, start: u64, size: u64) -> Result<(), BootInfoError> {
        // The loader's start and size are not trusted: no arithmetic below may overflow.
        let end = start.checked_add(size).ok_or(BootInfoError::Malformed(
            "cpio archive: module beyond the address space",
        ))?;
        let mut pos = start;
        while pos.saturating_add(110) <= end {
            let hdr = rd::<110>(m, pos)?;
            if &hdr[..6] != b"070701" {
                return Err(BootInfoError::Malformed("cpio archive: bad header"));
            }
            let field = |i: usize| -> Result<u64, BootInfoError> {
                let s = core::str::from_utf8(&hdr[6 + i * 8..14 + i * 8])
                    .map_err(|_| BootInfoError::Malformed("cpio archive: bad field"))?;
                u64::from_str_radix(s, 16)
                    .map_err(|_| BootInfoError::Malformed("cpio archive: bad field"))
            };
            let mode = field(1)?;
            let filesize = field(6)?;
            let namesize = field(11)?;
            let mut name = [0u8; TAG_LEN];
            let nl = (namesize.saturating_sub(1) as usize).min(TAG_LEN);
            if !m.read(pos + 110, &mut name[..nl]) {
                return Err(BootInfoError::Unreadable { addr: pos + 110 });
            }
            // The name ends at its NUL even if namesize claims more.
            let nl = name[..nl].iter().position(|&c| c == 0).unwrap_or(nl);
            let data = (pos + 110).saturating_add(namesize + 3) & !3;
            if &name[..nl] == b"TRAILER!!!" {
                break;
            }
            if data.saturating_add(filesize) > end {
                return Err(BootInfoError::Malformed(
                    "cpio archive: file beyond its end",
                ));
            }
            if mode & 0o170000 == 0o100000 {
                let n = &name[..nl];
                let base = n.rsplit(|&c| c == b'/').next().unwrap_or(n);
                let mut t = [0u8; TAG_LEN];
                t[..base.len()].copy_from_slice(base);
                self.push_module(data, filesize, &t[..base.len()])?;
            }
            pos = (data + filesize).saturating_add(3) & !3;
        }
        Ok(())
    }

    fn parse_mb2(m: &dyn PhysRead, info: u64) -> Result<Self, BootInfoError> {
        let mut bi = Self::empty(Protocol::Multiboot2);
        let total = rd32(m, info)? as u64;
        if total < 16 {
            return Err(BootInfoError::Malformed("multiboot2 information too short"));
        }
        let mut pos = info + 8;
        while pos + 8 <= info + total {
            let ty = rd32(m, pos)?;
            let size = rd32(m, pos + 4)? as u64;
            if size < 8 {
                return Err(BootInfoError::Malformed(
                    "multiboot2 tag shorter than 8 bytes",
                ));
            }
            // Everything a tag holds is read from inside it, so it must end inside the
            // information (whose total_size the loader gave).
            if pos + size > info + total {
                return Err(BootInfoError::Malformed(
                    "multiboot2 tag runs past the information's total size",
                ));
            }
            // Module and memory-map tags have 8 bytes of fields after the header.
            if matches!(ty, 3 | 6) && size < 16 {
                return Err(BootInfoError::Malformed(
                    "multiboot2 module or memory map tag shorter than 16 bytes",
                ));
            }
            match ty {
                0 => break,
                1 => {
                    let max = ((size - 8) as usize).min(CMDLINE_LEN);
                    bi.cmdline_len = read_cstr(m, pos + 8, &mut bi.cmdline[..max])?;
                }
                3 => {
                    let s = rd32(m, pos + 8)? as u64;
                    let e = rd32(m, pos + 12)? as u64;
                    let mut buf = [0u8; CMDLINE_LEN];
                    let max = (size.saturating_sub(16) as usize).min(CMDLINE_LEN);
                    let n = read_cstr(m, pos + 16, &mut buf[..max])?;
                    let tag = tag_of(&buf[..n]);
                    let mut t = [0u8; TAG_LEN];
                    let tl = tag.len().min(TAG_LEN);
                    t[..tl].copy_from_slice(&tag[..tl]);
                    bi.push_module(s, e.saturating_sub(s), &t[..tl])?;
                }
                6 => {
                    let esz = rd32(m, pos + 8)? as u64;
                    if esz < 24 {
                        return Err(BootInfoError::Malformed("multiboot2 memory map entry size"));
                    }
                    let mut e = pos + 16;
                    while e + esz <= pos + size {
                        bi.push_mem(MemmapEntry {
                            addr: rd64(m, e)?,
                            size: rd64(m, e + 8)?,
                            kind: rd32(m, e + 16)?,
                        })?;
                        e += esz;
                    }
                }
                // ACPI old/new: a copy of the RSDP itself; remember where it is.
                14 | 15 if bi.rsdp == 0 => bi.rsdp = pos + 8,
                _ => {}
            }
            pos += (size + 7) & !7;
        }
        Ok(bi)
    }
}

fn is_cpio(m: &dyn PhysRead, start: u64, size: u64) -> bool {
    let mut magic = [0u8; 6];
    size >= 110 && m.read(start, &mut magic) && &magic == b"070701"
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        base: u64,
        mem: Vec<u8>,
    }
    impl PhysRead for Fake {
        fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
            let Some(off) = pa.checked_sub(self.base) else {
                return false;
            };
            let off = off as usize;
            match self.mem.get(off..off + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }
    impl Fake {
        fn put(&mut self, pa: u64, b: &[u8]) {
            let o = (pa - self.base) as usize;
            self.mem[o..o + b.len()].copy_from_slice(b);
        }
    }

    fn cpio_entry(out: &mut Vec<u8>, name: &str, data: &[u8], mode: u32) {
        let hdr = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.extend_from_slice(hdr.as_bytes());
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    #[test]
    fn pvh_with_cpio_modules() {
        let mut f = Fake {
            base: 0x1000,
            mem: vec![0; 0x4000],
        };
        let mut si = Vec::new();
        si.extend_from_slice(&PVH_MAGIC.to_le_bytes());
        si.extend_from_slice(&1u32.to_le_bytes()); // version
        si.extend_from_slice(&0u32.to_le_bytes()); // flags
        si.extend_from_slice(&1u32.to_le_bytes()); // nr_modules
        si.extend_from_slice(&0x1100u64.to_le_bytes()); // modlist
        si.extend_from_slice(&0x1200u64.to_le_bytes()); // cmdline
        si.extend_from_slice(&0u64.to_le_bytes()); // rsdp
        si.extend_from_slice(&0x1300u64.to_le_bytes()); // memmap
        si.extend_from_slice(&2u32.to_le_bytes());
        f.put(0x1000, &si);
        let mut cpio = Vec::new();
        cpio_entry(&mut cpio, "guests", &[], 0o040755);
        cpio_entry(&mut cpio, "guests/PRE_VM0_kernel", b"ELF0", 0o100644);
        cpio_entry(&mut cpio, "PRE_VM1_kernel", b"xyz12", 0o100644);
        cpio_entry(&mut cpio, "TRAILER!!!", &[], 0);
        f.put(0x2000, &cpio);
        let mut ml = Vec::new();
        ml.extend_from_slice(&0x2000u64.to_le_bytes());
        ml.extend_from_slice(&(cpio.len() as u64).to_le_bytes());
        f.put(0x1100, &ml);
        f.put(0x1200, b"loglevel=3\0");
        let mut mm = Vec::new();
        for (a, s, t) in [(0u64, 0x9fc00u64, 1u32), (0x100000u64, 0x7ff00000u64, 1u32)] {
            mm.extend_from_slice(&a.to_le_bytes());
            mm.extend_from_slice(&s.to_le_bytes());
            mm.extend_from_slice(&t.to_le_bytes());
            mm.extend_from_slice(&0u32.to_le_bytes());
        }
        f.put(0x1300, &mm);

        let bi = BootInfo::parse(&f, 0, 0x1000).unwrap();
        assert_eq!(bi.protocol, Protocol::Pvh);
        assert_eq!(bi.cmdline(), "loglevel=3");
        assert_eq!(bi.memmap().len(), 2);
        assert_eq!(bi.modules().len(), 2);
        let m0 = bi.module_by_tag("PRE_VM0_kernel").unwrap();
        let mut b = [0u8; 4];
        assert!(f.read(m0.start, &mut b));
        assert_eq!(&b, b"ELF0");
        assert_eq!(bi.module_by_tag("PRE_VM1_kernel").unwrap().size, 5);
        assert!(bi.is_ram(0x100000, 0x1000_0000));
        assert!(!bi.is_ram(0x9f000, 0x2000));
    }

    #[test]
    fn mb2_modules_and_memmap() {
        let mut f = Fake {
            base: 0x10000,
            mem: vec![0; 0x1000],
        };
        let mut t = vec![0u8; 8];
        let tag = |t: &mut Vec<u8>, ty: u32, body: &[u8]| {
            t.extend_from_slice(&ty.to_le_bytes());
            t.extend_from_slice(&((8 + body.len()) as u32).to_le_bytes());
            t.extend_from_slice(body);
            while !t.len().is_multiple_of(8) {
                t.push(0);
            }
        };
        tag(&mut t, 1, b"hv cmd\0");
        let mut m = Vec::new();
        m.extend_from_slice(&0x200000u32.to_le_bytes());
        m.extend_from_slice(&0x201000u32.to_le_bytes());
        m.extend_from_slice(b"/boot/guest0.elf PRE_VM0_kernel\0");
        tag(&mut t, 3, &m);
        let mut mm = Vec::new();
        mm.extend_from_slice(&24u32.to_le_bytes());
        mm.extend_from_slice(&0u32.to_le_bytes());
        for (a, s, ty) in [(0u64, 0x9fc00u64, 1u32), (0xf0000, 0x10000, 2)] {
            mm.extend_from_slice(&a.to_le_bytes());
            mm.extend_from_slice(&s.to_le_bytes());
            mm.extend_from_slice(&ty.to_le_bytes());
            mm.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(&mut t, 6, &mm);
        tag(&mut t, 0, &[]);
        let total = t.len() as u32;
        t[..4].copy_from_slice(&total.to_le_bytes());
        f.put(0x10000, &t);
        let bi = BootInfo::parse(&f, MB2_MAGIC, 0x10000).unwrap();
        assert_eq!(bi.protocol, Protocol::Multiboot2);
        assert_eq!(bi.cmdline(), "hv cmd");
        let m = bi.module_by_tag("PRE_VM0_kernel").unwrap();
        assert_eq!((m.start, m.size), (0x200000, 0x1000));
        assert_eq!(
            bi.memmap()[1],
            MemmapEntry {
                addr: 0xf0000,
                size: 0x10000,
                kind: 2
            }
        );
    }

    /// Fuzzing found (bootinfo target, fuzz/regressions/bootinfo/mb2-tag-past-total): a tag
    /// longer than the rest of the information was read past `total_size`.
    #[test]
    fn mb2_tag_past_total_size_is_refused() {
        let mut f = Fake {
            base: 0x1000,
            mem: vec![0; 0x100],
        };
        let mut t = Vec::new();
        t.extend_from_slice(&32u32.to_le_bytes()); // total_size
        t.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes()); // command line tag of 27 bytes at 8..35
        t.extend_from_slice(&27u32.to_le_bytes());
        t.extend_from_slice(b"acrn console=ttyS0\0");
        f.put(0x1000, &t);
        assert_eq!(
            BootInfo::parse(&f, MB2_MAGIC, 0x1000).unwrap_err(),
            BootInfoError::Malformed("multiboot2 tag runs past the information's total size")
        );
    }

    /// Fuzzing found (bootinfo target, fuzz/regressions/bootinfo/mb2-short-module-tag): a
    /// module tag of 13 bytes had its start and end fields read past the tag and the
    /// information's total size.
    #[test]
    fn mb2_short_module_tag_is_refused() {
        let mut f = Fake {
            base: 0x1000,
            mem: vec![0; 0x100],
        };
        let mut t = Vec::new();
        t.extend_from_slice(&0x15u32.to_le_bytes()); // total_size
        t.extend_from_slice(&0u32.to_le_bytes());
        t.extend_from_slice(&3u32.to_le_bytes()); // module tag of 13 bytes at 8..21
        t.extend_from_slice(&13u32.to_le_bytes());
        t.extend_from_slice(&[0x20, 0, 0, 1, 0]);
        f.put(0x1000, &t);
        assert_eq!(
            BootInfo::parse(&f, MB2_MAGIC, 0x1000).unwrap_err(),
            BootInfoError::Malformed("multiboot2 module or memory map tag shorter than 16 bytes")
        );
    }

    /// PVH information at 0x1000 with one module `[start, start + size)` (its list at 0x1100).
    fn pvh_one_module(f: &mut Fake, start: u64, size: u64) {
        let mut si = Vec::new();
        for v in [PVH_MAGIC, 0, 0, 1] {
            si.extend_from_slice(&v.to_le_bytes()); // magic, version 0, flags, nr_modules
        }
        si.extend_from_slice(&0x1100u64.to_le_bytes()); // modlist
        si.extend_from_slice(&[0; 16]); // cmdline, rsdp
        f.put(0x1000, &si);
        let mut ml = Vec::new();
        for v in [start, size, 0, 0] {
            ml.extend_from_slice(&v.to_le_bytes());
        }
        f.put(0x1100, &ml);
    }

    /// Fuzzing found (bootinfo target, fuzz/regressions/bootinfo/cpio-name-with-nul): a cpio
    /// name size larger than the name put the NUL and what follows it into the tag.
    #[test]
    fn cpio_name_ends_at_its_nul() {
        let mut f = Fake {
            base: 0x1000,
            mem: vec![0; 0x1000],
        };
        let mut cpio = Vec::new();
        cpio_entry(&mut cpio, "PRE_VM0_kernel", b"ELF0", 0o100644);
        // namesize (field 11) claims 16 bytes: the name, its NUL and a byte of padding.
        cpio[94..102].copy_from_slice(b"00000010");
        f.put(0x1400, &cpio);
        pvh_one_module(&mut f, 0x1400, cpio.len() as u64);
        let bi = BootInfo::parse(&f, 0, 0x1000).unwrap();
        assert_eq!(bi.modules()[0].tag(), "PRE_VM0_kernel");
    }

    /// A module size reaching past the end of the address space is refused, not overflowed.
    #[test]
    fn cpio_module_size_overflow_is_refused() {
        let mut f = Fake {
            base: 0x1000,
            mem: vec![0; 0x1000],
        };
        let mut cpio = Vec::new();
        cpio_entry(&mut cpio, "PRE_VM0_kernel", b"ELF0", 0o100644);
        f.put(0x1400, &cpio);
        pvh_one_module(&mut f, 0x1400, u64::MAX);
        assert!(matches!(
            BootInfo::parse(&f, 0, 0x1000),
            Err(BootInfoError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_unknown_and_truncated() {
        let f = Fake {
            base: 0,
            mem: vec![0; 64],
        };
        assert_eq!(
            BootInfo::parse(&f, 0x1234, 0).unwrap_err(),
            BootInfoError::UnknownProtocol { magic: 0x1234 }
        );
        assert!(matches!(
            BootInfo::parse(&f, 0, 0x1000),
            Err(BootInfoError::Unreadable { .. })
        ));
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of(b"/boot/x.elf Zephyr_ElfImage"), b"Zephyr_ElfImage");
        assert_eq!(tag_of(b"  bzImage root=/dev/sda"), b"bzImage");
        assert_eq!(tag_of(b"/only/path"), b"");
    }
}
