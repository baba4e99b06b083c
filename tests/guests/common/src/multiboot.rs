//! Multiboot1 information structure (as ACRN's ELF loader and QEMU's `-kernel` build it).
//!
//! Only the fields the guests use are read: flags, mem_lower/mem_upper (bit 0), cmdline
//! (bit 2), mmap (bit 6) and boot_loader_name (bit 9). Every pointer is followed through a
//! [`PhysRead`], and a field whose pointer is bad is reported as an error on its own
//! without spoiling the others. ACRN builds the struct on its stack without zeroing it, so
//! unknown flag bits are possible and ignored.

use crate::mem::{MemError, PhysRead};
use crate::text::FixedStr;

/// EAX value a multiboot1 loader hands over.
pub const BOOT_MAGIC: u32 = 0x2BAD_B002;

const FLAG_MEM: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MMAP: u32 = 1 << 6;
const FLAG_LOADER_NAME: u32 = 1 << 9;

/// Bytes of the info struct read: up to and including boot_loader_name.
const INFO_LEN: usize = 72;
/// Longest command line kept (ACRN reserves 2 KiB for it).
pub const CMDLINE_MAX: usize = 1024;
pub const LOADER_NAME_MAX: usize = 64;
/// e820 entries kept; more are counted as truncation.
pub const MAX_E820: usize = 32;
/// Largest mmap_length accepted (ACRN reserves 20 KiB).
const MMAP_MAX_BYTES: u32 = 64 * 1024;
/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MultibootError {
    #[error("not booted by a multiboot1 loader (eax={0:#x})")]
    BadMagic(u32),
    #[error("memory: {0}")]
    Mem(#[from] MemError),
    #[error("string at {0:#x} has no terminating NUL within its limit")]
    Unterminated(u64),
    #[error("mmap entry at {addr:#x} has size {size} (< 20)")]
    BadMmapEntry { addr: u64, size: u32 },
    #[error("mmap_length {0:#x} is implausible")]
    BadMmapLength(u32),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct E820Entry {
    pub base: u64,
    pub len: u64,
    pub kind: u32,
}

impl E820Entry {
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
}

/// The memory map copied out of the loader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct MemoryMap {
    entries: [E820Entry; MAX_E820],
    count: usize,
    /// More entries were present than [`MAX_E820`].
    pub truncated: bool,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self {
            entries: [E820Entry::default(); MAX_E820],
            count: 0,
            truncated: false,
        }
    }
}

impl MemoryMap {
    pub fn entries(&self) -> &[E820Entry] {
        &self.entries[..self.count]
    }

    fn push(&mut self, e: E820Entry) {
        if self.count < MAX_E820 {
            self.entries[self.count] = e;
            self.count += 1;
        } else {
            self.truncated = true;
        }
    }

    /// Bytes of usable RAM.
    pub fn ram_bytes(&self) -> u64 {
        self.ram().fold(0u64, |a, e| a.saturating_add(e.len))
    }

    /// End of the highest usable RAM region.
    pub fn ram_top(&self) -> u64 {
        self.ram().map(|e| e.end()).max().unwrap_or(0)
    }

    fn ram(&self) -> impl Iterator<Item = &E820Entry> {
        self.entries().iter().filter(|e| e.kind == E820_RAM)
    }
}

/// What the guest took from the multiboot info. `Ok(None)`: the loader did not supply the
/// field; `Err`: it claimed to, but the data could not be read safely.
#[derive(Debug, Clone, Copy)]
pub struct MultibootInfo {
    pub info_addr: u64,
    pub flags: u32,
    /// (mem_lower, mem_upper) in KiB.
    pub mem_kib: Option<(u32, u32)>,
    pub mmap: Result<Option<MemoryMap>, MultibootError>,
    pub cmdline: Result<Option<FixedStr<CMDLINE_MAX>>, MultibootError>,
    pub loader_name: Result<Option<FixedStr<LOADER_NAME_MAX>>, MultibootError>,
}

impl MultibootInfo {
    /// Reads the info struct at `info` and the memory map it points to. Strings are read
    /// later by [`MultibootInfo::read_strings`], through a reader limited by this map.
    pub fn parse(mem: &impl PhysRead, magic: u32, info: u32) -> Result<Self, MultibootError> {
        if magic != BOOT_MAGIC {
            return Err(MultibootError::BadMagic(magic));
        }
        let addr = u64::from(info);
        let mut raw = [0u8; INFO_LEN];
        mem.read(addr, &mut raw)?;
        let word =
            |off: usize| u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
        let flags = word(0);
        let mem_kib = (flags & FLAG_MEM != 0).then(|| (word(4), word(8)));
        let mmap = if flags & FLAG_MMAP != 0 {
            read_mmap(mem, u64::from(word(48)), word(44)).map(Some)
        } else {
            Ok(None)
        };
        Ok(Self {
            info_addr: addr,
            flags,
            mem_kib,
            mmap,
            cmdline: Ok(None),
            loader_name: Ok(None),
        })
    }

    /// Copies the command line and boot loader name (NUL-terminated strings).
    pub fn read_strings(&mut self, mem: &impl PhysRead) -> Result<(), MultibootError> {
        let mut raw = [0u8; INFO_LEN];
        mem.read(self.info_addr, &mut raw)?;
        let word =
            |off: usize| u32::from_le_bytes([raw[off], raw[off + 1], raw[off + 2], raw[off + 3]]);
        if self.flags & FLAG_CMDLINE != 0 {
            self.cmdline = read_cstr(mem, u64::from(word(16))).map(Some);
        }
        if self.flags & FLAG_LOADER_NAME != 0 {
            self.loader_name = read_cstr(mem, u64::from(word(64))).map(Some);
        }
        Ok(())
    }

    /// Usable RAM in bytes: from the memory map, else from mem_lower/mem_upper.
    pub fn ram_bytes(&self) -> u64 {
        match (&self.mmap, self.mem_kib) {
            (Ok(Some(map)), _) => map.ram_bytes(),
            (_, Some((lo, hi))) => (u64::from(lo) + u64::from(hi)) * 1024,
            _ => 0,
        }
    }

    /// End of usable RAM: from the memory map, else 1 MiB + mem_upper.
    pub fn ram_top(&self) -> u64 {
        match (&self.mmap, self.mem_kib) {
            (Ok(Some(map)), _) => map.ram_top(),
            (_, Some((_, hi))) => 0x10_0000 + u64::from(hi) * 1024,
            _ => 0,
        }
    }
}

fn read_mmap(mem: &impl PhysRead, addr: u64, length: u32) -> Result<MemoryMap, MultibootError> {
    if length > MMAP_MAX_BYTES {
        return Err(MultibootError::BadMmapLength(length));
    }
    let mut map = MemoryMap::default();
    let end = addr + u64::from(length);
    let mut p = addr;
    // Each entry: u32 size (not counting itself), then base u64, len u64, type u32.
    while p + 4 <= end {
        let size = mem.read_u32(p)?;
        if size < 20 {
            return Err(MultibootError::BadMmapEntry { addr: p, size });
        }
        let mut e = [0u8; 20];
        mem.read(p + 4, &mut e)?;
        let q = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap_or([0; 8]));
        map.push(E820Entry {
            base: q(0),
            len: q(8),
            kind: u32::from_le_bytes([e[16], e[17], e[18], e[19]]),
        });
        p += u64::from(size) + 4;
    }
    Ok(map)
}

fn read_cstr<const N: usize>(
    mem: &impl PhysRead,
    addr: u64,
) -> Result<FixedStr<N>, MultibootError> {
    let mut s = FixedStr::new();
    // Byte by byte, so a string ending right at the edge of a readable window still works.
    for p in addr..=addr + N as u64 {
        let b = mem.read_u8(p)?;
        if b == 0 {
            return Ok(s);
        }
        s.push(b);
    }
    Err(MultibootError::Unterminated(addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::testmem::FakeMem;
    use std::vec::Vec;

    fn info(flags: u32, cmd: u32, mmap_len: u32, mmap: u32, name: u32) -> Vec<u8> {
        let mut v = std::vec![0u8; INFO_LEN];
        v[0..4].copy_from_slice(&flags.to_le_bytes());
        v[4..8].copy_from_slice(&639u32.to_le_bytes());
        v[8..12].copy_from_slice(&(255 * 1024u32).to_le_bytes());
        v[16..20].copy_from_slice(&cmd.to_le_bytes());
        v[44..48].copy_from_slice(&mmap_len.to_le_bytes());
        v[48..52].copy_from_slice(&mmap.to_le_bytes());
        v[64..68].copy_from_slice(&name.to_le_bytes());
        v
    }

    fn entry(size: u32, base: u64, len: u64, kind: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&size.to_le_bytes());
        v.extend_from_slice(&base.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&kind.to_le_bytes());
        v
    }

    fn acrn_like_map() -> Vec<u8> {
        let mut m = entry(20, 0, 0xA0000, 1);
        m.extend(entry(20, 0xA0000, 0x60000, 2));
        m.extend(entry(20, 0x10_0000, 0xFE0_0000, 1));
        m.extend(entry(20, 0x7FF0_0000, 0xF_0000, 3));
        m
    }

    #[test]
    fn parses_acrn_style_info() {
        let mut mem = FakeMem::default();
        let map = acrn_like_map();
        mem.put(
            0xE000,
            &info(
                FLAG_CMDLINE | FLAG_MMAP | FLAG_LOADER_NAME,
                0xF000,
                map.len() as u32,
                0xE800,
                0xF800,
            ),
        );
        mem.put(0xE800, &map);
        mem.put(0xF000, b"console=ttyS0 hello\0");
        mem.put(0xF800, b"ACRN ELF LOADER\0");
        let mut mb = MultibootInfo::parse(&mem, BOOT_MAGIC, 0xE000).unwrap();
        mb.read_strings(&mem).unwrap();
        assert_eq!(mb.cmdline.unwrap().unwrap().as_str(), "console=ttyS0 hello");
        assert_eq!(mb.loader_name.unwrap().unwrap().as_str(), "ACRN ELF LOADER");
        assert_eq!(mb.mem_kib, None);
        let m = mb.mmap.unwrap().unwrap();
        assert_eq!(m.entries().len(), 4);
        assert_eq!(m.ram_top(), 0xFF0_0000);
        assert_eq!(mb.ram_bytes(), 0xA0000 + 0xFE0_0000);
    }

    #[test]
    fn rejects_bad_magic_and_unreadable_info() {
        let mem = FakeMem::default();
        assert_eq!(
            MultibootInfo::parse(&mem, 0, 0x1000).unwrap_err(),
            MultibootError::BadMagic(0)
        );
        assert!(matches!(
            MultibootInfo::parse(&mem, BOOT_MAGIC, 0x1000),
            Err(MultibootError::Mem(_))
        ));
    }

    #[test]
    fn bad_pointers_spoil_only_their_field() {
        let mut mem = FakeMem::default();
        // Garbage flags (as ACRN's unzeroed struct may have) and wild pointers.
        mem.put(
            0xE000,
            &info(0xFFFF_FFFF, 0xDEAD_0000, 24, 0xBEEF_0000, 0xF000),
        );
        mem.put(0xF000, b"name\0");
        let mut mb = MultibootInfo::parse(&mem, BOOT_MAGIC, 0xE000).unwrap();
        mb.read_strings(&mem).unwrap();
        assert!(matches!(mb.mmap, Err(MultibootError::Mem(_))));
        assert!(matches!(mb.cmdline, Err(MultibootError::Mem(_))));
        assert_eq!(mb.loader_name.unwrap().unwrap().as_str(), "name");
        // Falls back to mem_upper when the map is unusable.
        assert_eq!(mb.ram_top(), 0x10_0000 + 255 * 1024 * 1024);
    }

    #[test]
    fn malformed_mmap_and_strings() {
        let mut mem = FakeMem::default();
        mem.put(
            0xE000,
            &info(FLAG_MMAP | FLAG_CMDLINE, 0xF000, 48, 0xE800, 0),
        );
        mem.put(0xE800, &entry(4, 0, 0x1000, 1)); // size < 20: would loop or misparse
        mem.put(0xE818, &[0; 24]);
        mem.put(0xF000, &[b'x'; CMDLINE_MAX + 8]); // no NUL
        let mut mb = MultibootInfo::parse(&mem, BOOT_MAGIC, 0xE000).unwrap();
        mb.read_strings(&mem).unwrap();
        assert_eq!(
            mb.mmap.unwrap_err(),
            MultibootError::BadMmapEntry {
                addr: 0xE800,
                size: 4
            }
        );
        assert_eq!(
            mb.cmdline.unwrap_err(),
            MultibootError::Unterminated(0xF000)
        );
        assert_eq!(mb.ram_top(), 0);
    }

    #[test]
    fn huge_mmap_is_truncated_not_overflowed() {
        let mut mem = FakeMem::default();
        let mut map = Vec::new();
        for i in 0..(MAX_E820 as u64 + 5) {
            map.extend(entry(20, i << 20, 1 << 20, 1));
        }
        mem.put(0xE000, &info(FLAG_MMAP, 0, map.len() as u32, 0x20000, 0));
        mem.put(0x20000, &map);
        let mb = MultibootInfo::parse(&mem, BOOT_MAGIC, 0xE000).unwrap();
        let m = mb.mmap.unwrap().unwrap();
        assert!(m.truncated);
        assert_eq!(m.entries().len(), MAX_E820);
    }

    #[test]
    fn non_printable_bytes_are_masked() {
        let mut mem = FakeMem::default();
        mem.put(0xE000, &info(FLAG_CMDLINE, 0xF000, 0, 0, 0));
        mem.put(0xF000, b"a\nb\xff\0");
        let mut mb = MultibootInfo::parse(&mem, BOOT_MAGIC, 0xE000).unwrap();
        mb.read_strings(&mem).unwrap();
        assert_eq!(mb.cmdline.unwrap().unwrap().as_str(), "a?b?");
    }
}
