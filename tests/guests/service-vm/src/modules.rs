//! Boot modules the hypervisor passes on to the Service VM in its multiboot1 information
//! (flag bit 3: `mods_count` at offset 20, `mods_addr` at 24; 16-byte entries
//! `mod_start, mod_end, string, reserved`). A module matches a tag when one of the
//! space-separated words of its string equals the tag: GRUB and our hypervisor give the tag
//! alone, QEMU's `-initrd "file tag"` gives the file name first.

use alloc::string::String;
use alloc::vec::Vec;
use guest_common::mem::{MemError, PhysRead};

const FLAG_MODS: u32 = 1 << 3;
/// Most modules read.
pub const MAX_MODULES: u32 = 32;
/// Largest module copied (a bigger one is refused rather than eating the heap).
pub const MAX_MODULE_BYTES: u64 = 16 << 20;
const MAX_STRING: u64 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("memory: {0}")]
    Mem(#[from] MemError),
    #[error("{0} modules (at most 32 are read)")]
    TooMany(u32),
    #[error("module [{0:#x}, {1:#x}) is empty, inverted or larger than 16 MiB")]
    BadRange(u32, u32),
}

/// One boot module, its string and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub string: String,
    pub start: u64,
    pub end: u64,
}

impl Module {
    /// Whether one word of the module's string is `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.string.split(' ').any(|w| w == tag)
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Copies the module's bytes out of loader memory.
    pub fn read(&self, mem: &impl PhysRead) -> Result<Vec<u8>, MemError> {
        let mut v = alloc::vec![0u8; self.len() as usize];
        mem.read(self.start, &mut v)?;
        Ok(v)
    }
}

/// The module list of the multiboot1 info at `info` (empty when flag bit 3 is clear).
pub fn list(mem: &impl PhysRead, info: u64) -> Result<Vec<Module>, ModuleError> {
    let flags = mem.read_u32(info)?;
    if flags & FLAG_MODS == 0 {
        return Ok(Vec::new());
    }
    let count = mem.read_u32(info + 20)?;
    let addr = u64::from(mem.read_u32(info + 24)?);
    if count > MAX_MODULES {
        return Err(ModuleError::TooMany(count));
    }
    let mut out = Vec::new();
    for i in 0..u64::from(count) {
        let e = addr + 16 * i;
        let (start, end, s) = (mem.read_u32(e)?, mem.read_u32(e + 4)?, mem.read_u32(e + 8)?);
        if end <= start || u64::from(end - start) > MAX_MODULE_BYTES {
            return Err(ModuleError::BadRange(start, end));
        }
        let mut string = String::new();
        if s != 0 {
            for p in u64::from(s)..=u64::from(s) + MAX_STRING {
                match mem.read_u8(p)? {
                    0 => break,
                    b if (0x20..0x7F).contains(&b) => string.push(b as char),
                    _ => string.push('?'),
                }
            }
        }
        out.push(Module {
            string,
            start: start.into(),
            end: end.into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Mem(BTreeMap<u64, u8>);
    impl Mem {
        fn put(&mut self, a: u64, b: &[u8]) {
            for (i, &x) in b.iter().enumerate() {
                self.0.insert(a + i as u64, x);
            }
        }
    }
    impl PhysRead for Mem {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let len = buf.len() as u64;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = *self
                    .0
                    .get(&(addr + i as u64))
                    .ok_or(MemError { addr, len })?;
            }
            Ok(())
        }
    }

    fn info(mem: &mut Mem, flags: u32, count: u32, addr: u32) {
        let mut v = [0u8; 32];
        v[0..4].copy_from_slice(&flags.to_le_bytes());
        v[20..24].copy_from_slice(&count.to_le_bytes());
        v[24..28].copy_from_slice(&addr.to_le_bytes());
        mem.put(0x9000, &v);
    }

    fn entry(mem: &mut Mem, at: u64, start: u32, end: u32, s: u32) {
        let mut v = [0u8; 16];
        v[0..4].copy_from_slice(&start.to_le_bytes());
        v[4..8].copy_from_slice(&end.to_le_bytes());
        v[8..12].copy_from_slice(&s.to_le_bytes());
        mem.put(at, &v);
    }

    #[test]
    fn lists_and_reads_modules() {
        let mut m = Mem::default();
        info(&mut m, FLAG_MODS, 2, 0xA000);
        entry(&mut m, 0xA000, 0x20_0000, 0x20_0004, 0xB000);
        entry(&mut m, 0xA010, 0x30_0000, 0x30_0002, 0xB100);
        m.put(0xB000, b"launch_vms\0");
        m.put(0xB100, b"out/hello.elf POST_VM1_kernel\0");
        m.put(0x20_0000, b"abcd");
        m.put(0x30_0000, b"\x7fE");
        let mods = list(&m, 0x9000).unwrap();
        assert_eq!(mods.len(), 2);
        assert!(mods[0].has_tag("launch_vms"));
        assert!(mods[1].has_tag("POST_VM1_kernel"));
        assert!(!mods[1].has_tag("POST_VM1"));
        assert_eq!(mods[0].read(&m).unwrap(), b"abcd");
    }

    #[test]
    fn bad_lists_are_errors() {
        let mut m = Mem::default();
        info(&mut m, 0, 5, 0xA000);
        assert_eq!(list(&m, 0x9000).unwrap(), []);
        info(&mut m, FLAG_MODS, 1000, 0xA000);
        assert_eq!(list(&m, 0x9000), Err(ModuleError::TooMany(1000)));
        info(&mut m, FLAG_MODS, 1, 0xA000);
        assert!(matches!(list(&m, 0x9000), Err(ModuleError::Mem(_))));
        entry(&mut m, 0xA000, 0x30_0000, 0x20_0000, 0);
        assert_eq!(
            list(&m, 0x9000),
            Err(ModuleError::BadRange(0x30_0000, 0x20_0000))
        );
        entry(&mut m, 0xA000, 0x20_0000, 0x20_0010, 0xC000);
        m.put(0xC000, &[b'x'; 300]);
        assert_eq!(
            list(&m, 0x9000).unwrap()[0].string.len(),
            256,
            "no NUL: cut, not overrun"
        );
        m.put(0xC000 + 20, b"\x01\0");
        assert_eq!(list(&m, 0x9000).unwrap()[0].string.len(), 21);
    }
}
