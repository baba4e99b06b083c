//! Just enough ACPI to count CPUs: RSDP -> XSDT (or RSDT) -> MADT.
//!
//! The RSDP is looked for where ACRN puts it for pre-launched VMs (GPA 0xF2400), then
//! where Linux looks on PCs: the first KiB of the EBDA and 0xE0000-0xFFFFF on 16-byte
//! boundaries. All checksums and lengths are verified before a table is used.

use crate::mem::{MemError, PhysRead};

/// ACRN's fixed RSDP address for pre-launched VMs.
pub const ACRN_RSDP: u64 = 0xF2400;
const BIOS_AREA: (u64, u64) = (0xE0000, 0x10_0000);
/// Largest SDT accepted; real MADTs are a few hundred bytes.
const MAX_SDT_LEN: u32 = 64 * 1024;
/// CPUs whose APIC IDs are remembered (all enabled ones are counted).
pub const MAX_CPUS: usize = 16;
/// Default xAPIC MMIO base.
pub const DEFAULT_LAPIC: u64 = 0xFEE0_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("no valid RSDP found")]
    NoRsdp,
    #[error("memory: {0}")]
    Mem(#[from] MemError),
    #[error("table at {addr:#x}: bad checksum")]
    Checksum { addr: u64 },
    #[error("table at {addr:#x}: implausible length {len}")]
    Length { addr: u64, len: u32 },
    #[error("table at {addr:#x}: expected signature {expected}")]
    Signature { addr: u64, expected: &'static str },
    #[error("no MADT (APIC) table")]
    NoMadt,
    #[error("no {0} table")]
    Missing(&'static str),
    #[error("MADT entry at {addr:#x} has length {len}")]
    MadtEntry { addr: u64, len: u8 },
}

/// What the MADT says about the CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Madt {
    pub addr: u64,
    pub lapic_base: u64,
    /// Enabled processors (local APIC and x2APIC entries with the enabled flag).
    pub enabled: usize,
    apic_ids: [u32; MAX_CPUS],
    stored: usize,
}

impl Madt {
    /// APIC IDs of the first [`MAX_CPUS`] enabled processors, in table order.
    pub fn apic_ids(&self) -> &[u32] {
        &self.apic_ids[..self.stored]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acpi {
    pub rsdp: u64,
    pub revision: u8,
    pub madt: Madt,
}

fn checksum_ok(mem: &impl PhysRead, addr: u64, len: u32) -> Result<bool, MemError> {
    let mut sum = 0u8;
    let mut chunk = [0u8; 64];
    let mut off = 0u32;
    while off < len {
        let n = (len - off).min(64) as usize;
        mem.read(addr + u64::from(off), &mut chunk[..n])?;
        sum = chunk[..n].iter().fold(sum, |a, &b| a.wrapping_add(b));
        off += n as u32;
    }
    Ok(sum == 0)
}

/// Checks an RSDP candidate; returns (revision, root table address, is_xsdt).
fn check_rsdp(mem: &impl PhysRead, addr: u64) -> Result<Option<(u8, u64, bool)>, MemError> {
    let mut sig = [0u8; 8];
    mem.read(addr, &mut sig)?;
    if &sig != b"RSD PTR " || !checksum_ok(mem, addr, 20)? {
        return Ok(None);
    }
    let revision = mem.read_u8(addr + 15)?;
    if revision >= 2 {
        let len = mem.read_u32(addr + 20)?;
        let xsdt = mem.read_u64(addr + 24)?;
        if (36..=1024).contains(&len) && checksum_ok(mem, addr, len)? && xsdt != 0 {
            return Ok(Some((revision, xsdt, true)));
        }
    }
    let rsdt = u64::from(mem.read_u32(addr + 16)?);
    Ok((rsdt != 0).then_some((revision, rsdt, false)))
}

/// Finds the RSDP; unreadable candidate areas are skipped, not fatal.
pub fn find_rsdp(mem: &impl PhysRead) -> Option<(u64, u8, u64, bool)> {
    let probe = |a: u64| {
        check_rsdp(mem, a)
            .ok()
            .flatten()
            .map(|(r, t, x)| (a, r, t, x))
    };
    if let Some(found) = probe(ACRN_RSDP) {
        return Some(found);
    }
    if let Ok(seg) = mem.read_u16(0x40E) {
        let ebda = u64::from(seg) << 4;
        if ebda >= 0x8_0000 && ebda < BIOS_AREA.0 {
            if let Some(found) = (ebda..ebda + 1024).step_by(16).find_map(probe) {
                return Some(found);
            }
        }
    }
    (BIOS_AREA.0..BIOS_AREA.1).step_by(16).find_map(probe)
}

/// Validates an SDT header and returns its length.
fn sdt(mem: &impl PhysRead, addr: u64, expected: &'static str) -> Result<u32, AcpiError> {
    let mut sig = [0u8; 4];
    mem.read(addr, &mut sig)?;
    if sig != expected.as_bytes() {
        return Err(AcpiError::Signature { addr, expected });
    }
    let len = mem.read_u32(addr + 4)?;
    if !(36..=MAX_SDT_LEN).contains(&len) {
        return Err(AcpiError::Length { addr, len });
    }
    if !checksum_ok(mem, addr, len)? {
        return Err(AcpiError::Checksum { addr });
    }
    Ok(len)
}

fn parse_madt(mem: &impl PhysRead, addr: u64, len: u32) -> Result<Madt, AcpiError> {
    let mut madt = Madt {
        addr,
        lapic_base: u64::from(mem.read_u32(addr + 36)?),
        enabled: 0,
        apic_ids: [0; MAX_CPUS],
        stored: 0,
    };
    let end = addr + u64::from(len);
    let mut p = addr + 44;
    while p + 2 <= end {
        let kind = mem.read_u8(p)?;
        let elen = mem.read_u8(p + 1)?;
        if elen < 2 || p + u64::from(elen) > end {
            return Err(AcpiError::MadtEntry { addr: p, len: elen });
        }
        // (APIC ID, flags) of processor entries; type 0 = local APIC, 9 = local x2APIC.
        let cpu = match (kind, elen) {
            (0, 8..) => Some((u32::from(mem.read_u8(p + 3)?), mem.read_u32(p + 4)?)),
            (9, 16..) => Some((mem.read_u32(p + 4)?, mem.read_u32(p + 8)?)),
            (5, 12..) => {
                madt.lapic_base = mem.read_u64(p + 4)?;
                None
            }
            _ => None,
        };
        if let Some((id, flags)) = cpu {
            if flags & 1 != 0 {
                madt.enabled += 1;
                if madt.stored < MAX_CPUS {
                    madt.apic_ids[madt.stored] = id;
                    madt.stored += 1;
                }
            }
        }
        p += u64::from(elen);
    }
    Ok(madt)
}

/// The table with signature `sig` (its address and length), through the XSDT or RSDT.
pub fn find_table(mem: &impl PhysRead, sig: &'static str) -> Result<(u64, u32), AcpiError> {
    let (_, _, root, is_xsdt) = find_rsdp(mem).ok_or(AcpiError::NoRsdp)?;
    let (root_sig, width) = if is_xsdt {
        ("XSDT", 8u32)
    } else {
        ("RSDT", 4u32)
    };
    let len = sdt(mem, root, root_sig)?;
    for i in 0..(len - 36) / width {
        let slot = root + 36 + u64::from(i * width);
        let table = if is_xsdt {
            mem.read_u64(slot)?
        } else {
            u64::from(mem.read_u32(slot)?)
        };
        // Tables we cannot read, or that are not the one asked for, are skipped.
        if let Ok(tlen) = sdt(mem, table, sig) {
            return Ok((table, tlen));
        }
    }
    Err(AcpiError::Missing(sig))
}

/// Finds and parses the MADT.
pub fn discover(mem: &impl PhysRead) -> Result<Acpi, AcpiError> {
    let (rsdp, revision, _, _) = find_rsdp(mem).ok_or(AcpiError::NoRsdp)?;
    let (table, len) = find_table(mem, "APIC").map_err(|e| match e {
        AcpiError::Missing(_) => AcpiError::NoMadt,
        e => e,
    })?;
    Ok(Acpi {
        rsdp,
        revision,
        madt: parse_madt(mem, table, len)?,
    })
}

/// The MCFG's first ECAM window: (base address, first bus, last bus).
pub fn ecam(mem: &impl PhysRead) -> Result<(u64, u8, u8), AcpiError> {
    let (table, len) = find_table(mem, "MCFG")?;
    if len < 44 + 16 {
        return Err(AcpiError::Length { addr: table, len });
    }
    let mut bus = [0u8; 2];
    mem.read(table + 44 + 10, &mut bus)?;
    Ok((mem.read_u64(table + 44)?, bus[0], bus[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::testmem::FakeMem;
    use std::vec::Vec;

    fn fix_checksum(t: &mut [u8], at: usize, len: usize) {
        t[at] = 0;
        let s = t[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn sdt_bytes(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = std::vec![0u8; 36];
        t[0..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[8] = 2;
        let n = t.len();
        fix_checksum(&mut t, 9, n);
        t
    }

    fn rsdp(rev: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = std::vec![0u8; 36];
        r[0..8].copy_from_slice(b"RSD PTR ");
        r[15] = rev;
        r[16..20].copy_from_slice(&rsdt.to_le_bytes());
        r[20..24].copy_from_slice(&36u32.to_le_bytes());
        r[24..32].copy_from_slice(&xsdt.to_le_bytes());
        fix_checksum(&mut r, 8, 20);
        fix_checksum(&mut r, 32, 36);
        r
    }

    fn madt_body(cpus: &[(u8, bool)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        for (i, &(id, en)) in cpus.iter().enumerate() {
            b.extend_from_slice(&[0, 8, i as u8, id]);
            b.extend_from_slice(&u32::from(en).to_le_bytes());
        }
        b.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]); // an IOAPIC
        b
    }

    fn acrn_layout(cpus: &[(u8, bool)]) -> FakeMem {
        let mut mem = FakeMem::default();
        let madt = sdt_bytes(b"APIC", &madt_body(cpus));
        let facp = sdt_bytes(b"FACP", &[0; 8]);
        let mut xbody = Vec::new();
        xbody.extend_from_slice(&0x7FF0_1000u64.to_le_bytes());
        xbody.extend_from_slice(&0xDEAD_BEEF_0000u64.to_le_bytes()); // unreadable: skipped
        xbody.extend_from_slice(&0x7FF0_2000u64.to_le_bytes());
        mem.put(0xF2400, &rsdp(2, 0, 0x7FF0_0000));
        mem.put(0x7FF0_0000, &sdt_bytes(b"XSDT", &xbody));
        mem.put(0x7FF0_1000, &facp);
        mem.put(0x7FF0_2000, &madt);
        mem
    }

    #[test]
    fn acrn_rsdp_xsdt_madt() {
        let mem = acrn_layout(&[(0, true), (2, true), (4, false)]);
        let a = discover(&mem).unwrap();
        assert_eq!((a.rsdp, a.revision), (ACRN_RSDP, 2));
        assert_eq!(a.madt.enabled, 2);
        assert_eq!(a.madt.apic_ids(), &[0, 2]);
        assert_eq!(a.madt.lapic_base, DEFAULT_LAPIC);
    }

    #[test]
    fn mcfg_names_the_ecam_window() {
        let mut mem = acrn_layout(&[(0, true)]);
        assert_eq!(ecam(&mem), Err(AcpiError::Missing("MCFG")));
        // The unreadable XSDT slot becomes the MCFG: base, segment 0, buses 0-0xff.
        let mut body = std::vec![0u8; 8];
        body.extend_from_slice(&0xB000_0000u64.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 0xFF, 0, 0, 0, 0]);
        mem.put(0x7FF0_3000, &sdt_bytes(b"MCFG", &body));
        let xsdt = &mut mem.segs[1].1;
        xsdt[44..52].copy_from_slice(&0x7FF0_3000u64.to_le_bytes());
        let n = xsdt.len();
        fix_checksum(xsdt, 9, n);
        assert_eq!(ecam(&mem), Ok((0xB000_0000, 0, 0xFF)));
    }

    #[test]
    fn bios_scan_and_rsdt() {
        let mut mem = FakeMem::default();
        mem.put(0xE0000, &std::vec![0u8; 0x20000 - 0x40]);
        mem.put(0xFFFC0, &rsdp(0, 0x10_0000, 0)[..20]);
        let rsdt_body = 0x20_0000u32.to_le_bytes();
        mem.put(0x10_0000, &sdt_bytes(b"RSDT", &rsdt_body));
        mem.put(0x20_0000, &sdt_bytes(b"APIC", &madt_body(&[(0, true)])));
        let a = discover(&mem).unwrap();
        assert_eq!((a.rsdp, a.revision, a.madt.enabled), (0xFFFC0, 0, 1));
    }

    #[test]
    fn corrupt_tables_are_errors() {
        assert_eq!(discover(&FakeMem::default()), Err(AcpiError::NoRsdp));
        let mut mem = acrn_layout(&[(0, true)]);
        mem.segs[3].1[40] ^= 0xFF; // MADT body changed, checksum now wrong: MADT skipped
        assert_eq!(discover(&mem), Err(AcpiError::NoMadt));

        // A zero-length MADT entry must stop the walk with an error, not loop.
        let mut body = madt_body(&[(0, true)]);
        body[9] = 0;
        let mut mem = acrn_layout(&[]);
        mem.segs[3].1 = sdt_bytes(b"APIC", &body);
        assert!(matches!(
            discover(&mem),
            Err(AcpiError::MadtEntry { len: 0, .. })
        ));
    }

    #[test]
    fn caps_stored_ids_but_counts_all() {
        let cpus: Vec<(u8, bool)> = (0..40).map(|i| (i, true)).collect();
        let a = discover(&acrn_layout(&cpus)).unwrap();
        assert_eq!(a.madt.enabled, 40);
        assert_eq!(a.madt.apic_ids().len(), MAX_CPUS);
    }

    #[test]
    fn random_bytes_never_panic() {
        // Deterministic xorshift noise laid over every place the parser reads.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for round in 0..300 {
            let mut mem = acrn_layout(&[(0, true), (1, true)]);
            let seg = round % mem.segs.len();
            let data = &mut mem.segs[seg].1;
            for _ in 0..1 + round % 6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % data.len();
                data[i] = (x >> 32) as u8;
            }
            let _ = discover(&mem);
        }
    }
}
