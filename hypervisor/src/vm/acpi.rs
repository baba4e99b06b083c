//! ACPI: reading the host's MADT (to check the board's CPUs) and building the small set of
//! tables a pre-launched VM gets (RSDP at GPA 0xF2400 as in ACRN, XSDT, MADT, FADT, DSDT, and
//! the MCFG of its virtual PCI, whose ECAM window the DSDT reserves).

use crate::bootinfo::PhysRead;
pub use acrn_static_config::IntxRoute;
use acrn_static_config::{Bdf, PassthroughDevice, PciRootBridge};

/// A PCI root bridge on segment 0 as a DSDT describes it: the board's, or a VM's virtual one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRoot<'a> {
    pub first_bus: u8,
    pub last_bus: u8,
    /// Memory windows, each `(first, last)` inclusive, in address order.
    pub mmio: &'a [(u64, u64)],
    pub intx_routes: &'a [IntxRoute],
}

impl From<PciRootBridge> for PciRoot<'static> {
    fn from(b: PciRootBridge) -> Self {
        PciRoot {
            first_bus: b.first_bus,
            last_bus: b.last_bus,
            mmio: b.mmio,
            intx_routes: b.intx_routes,
        }
    }
}

/// Guest-physical address of a pre-launched VM's RSDP (ACRN's `VIRT_RSDP_ADDR`).
pub const GUEST_RSDP_GPA: u64 = 0xF2400;
pub const MAX_CPUS: usize = 64;

fn checksum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |a, &x| a.wrapping_add(x))
}

/// Looks for "RSD PTR " in the BIOS area 0xE0000..0x100000 (16-byte steps, checksummed).
pub fn find_rsdp(m: &dyn PhysRead) -> Option<u64> {
    (0xE0000u64..0x10_0000).step_by(16).find(|&pa| {
        let mut b = [0u8; 20];
        m.read(pa, &mut b) && &b[..8] == b"RSD PTR " && checksum(&b) == 0
    })
}

/// Address and length of the first table with signature `sig` listed by the RSDT/XSDT of `rsdp`.
fn find_table(m: &dyn PhysRead, rsdp: u64, sig: &[u8; 4]) -> Option<(u64, u64)> {
    let mut r = [0u8; 36];
    if !m.read(rsdp, &mut r[..20]) {
        return None;
    }
    let (root, entry) = if r[15] >= 2 && m.read(rsdp, &mut r) {
        (u64::from_le_bytes(r[24..32].try_into().ok()?), 8u64)
    } else {
        (u32::from_le_bytes(r[16..20].try_into().ok()?) as u64, 4u64)
    };
    let mut h = [0u8; 36];
    if !m.read(root, &mut h) {
        return None;
    }
    let len = u32::from_le_bytes(h[4..8].try_into().ok()?) as u64;
    for i in 0..len.saturating_sub(36) / entry {
        let mut p = [0u8; 8];
        if !m.read(root + 36 + i * entry, &mut p[..entry as usize]) {
            return None;
        }
        let table = u64::from_le_bytes(p);
        let mut th = [0u8; 8];
        if m.read(table, &mut th) && &th[..4] == sig {
            return Some((table, u32::from_le_bytes(th[4..8].try_into().ok()?) as u64));
        }
    }
    None
}

/// Walks the variable-length structures of the table at `table` (`len` bytes) from offset
/// `first`: MADT entries have a 1-byte type and length, DMAR structures 2-byte ones (`wide`).
/// `f` gets each one's type, length, first 16 bytes (zero-padded) and address. None if one is
/// malformed (shorter than its header, or past the table's end) or unreadable.
fn structures(
    m: &dyn PhysRead,
    (table, len): (u64, u64),
    first: u64,
    wide: bool,
    mut f: impl FnMut(u16, u64, &[u8; 16], u64),
) -> Option<()> {
    let header = if wide { 4 } else { 2 };
    let mut pos = table + first;
    while pos + header <= table + len {
        let mut e = [0u8; 16];
        if !m.read(pos, &mut e[..header as usize]) {
            return None;
        }
        let (ty, elen) = if wide {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u64::from(u16::from_le_bytes([e[2], e[3]])),
            )
        } else {
            (u16::from(e[0]), u64::from(e[1]))
        };
        if elen < header
            || pos + elen > table + len
            || !m.read(pos, &mut e[..(elen as usize).min(16)])
        {
            return None;
        }
        f(ty, elen, &e, pos);
        pos += elen;
    }
    Some(())
}

/// APIC IDs of the enabled processors in the MADT reachable from `rsdp`.
pub fn madt_apic_ids(m: &dyn PhysRead, rsdp: u64, out: &mut [u32; MAX_CPUS]) -> Option<usize> {
    let madt = find_table(m, rsdp, b"APIC")?;
    let mut n = 0;
    structures(m, madt, 44, false, |ty, len, e, _| {
        let id = match ty {
            0 if len >= 8 && e[4] & 3 != 0 => Some(u32::from(e[3])),
            9 if len >= 16 && e[8] & 3 != 0 => Some(u32::from_le_bytes([e[4], e[5], e[6], e[7]])),
            _ => None,
        };
        if let Some(id) = id.filter(|_| n < MAX_CPUS) {
            out[n] = id;
            n += 1;
        }
    })?;
    Some(n)
}

/// Most DMA remapping units the hypervisor drives.
pub const MAX_DRHDS: usize = 8;

/// The register bases of the DMAR table's remapping units (DRHD structures of PCI segment 0);
/// how many were found (at most [`MAX_DRHDS`]), or None without a DMAR table.
pub fn dmar_units(m: &dyn PhysRead, rsdp: u64, out: &mut [u64; MAX_DRHDS]) -> Option<usize> {
    let dmar = find_table(m, rsdp, b"DMAR")?;
    let mut n = 0;
    // Remapping structures follow the 48-byte header (host address width, flags, reserved).
    structures(m, dmar, 48, true, |ty, len, h, _| {
        let segment = u16::from_le_bytes([h[6], h[7]]);
        let mut base = [0u8; 8];
        base.copy_from_slice(&h[8..16]);
        let base = u64::from_le_bytes(base);
        if ty == 0 && len >= 16 && segment == 0 && base != 0 && n < MAX_DRHDS {
            out[n] = base;
            n += 1;
        }
    })?;
    Some(n)
}

/// IOAPICs whose interrupt requests the DMAR names: (IOAPIC ID, the requester ID its
/// interrupts carry), from the DRHD units' IOAPIC device scopes (type 3); how many (at most
/// [`MAX_IVRS_IOAPICS`]), or None without a DMAR table or with a malformed structure.
pub fn dmar_ioapics(
    m: &dyn PhysRead,
    rsdp: u64,
    out: &mut [(u8, u16); MAX_IVRS_IOAPICS],
) -> Option<usize> {
    let dmar = find_table(m, rsdp, b"DMAR")?;
    let mut sources = Sources::new(out);
    structures(m, dmar, 48, true, |ty, len, _, at| {
        // A DRHD's device scopes follow its 16-byte header: type, length, 2 reserved bytes,
        // enumeration ID, start bus, then (device, function) pairs.
        let scopes = |_, e: &[u8; 8]| (e[1] >= 2).then_some(u64::from(e[1]));
        if ty == 0 {
            sources.ok &= entries(m, at + 16, at + len, scopes, |e| {
                if e[0] == 3 && e[1] >= 8 {
                    sources.add(e[4], Bdf::new(e[5], e[6] & 0x1F, e[7] & 7).raw());
                }
            });
        }
    })?;
    sources.count()
}

/// The IOAPIC sources found so far, at most [`MAX_IVRS_IOAPICS`], and whether every
/// structure they came from was well formed.
struct Sources<'a> {
    out: &'a mut [(u8, u16); MAX_IVRS_IOAPICS],
    n: usize,
    ok: bool,
}

impl<'a> Sources<'a> {
    fn new(out: &'a mut [(u8, u16); MAX_IVRS_IOAPICS]) -> Self {
        Sources {
            out,
            n: 0,
            ok: true,
        }
    }
    fn add(&mut self, id: u8, requester: u16) {
        if self.n < MAX_IVRS_IOAPICS && !self.out[..self.n].contains(&(id, requester)) {
            self.out[self.n] = (id, requester);
            self.n += 1;
        }
    }
    fn count(&self) -> Option<usize> {
        self.ok.then_some(self.n)
    }
}

/// Walks the variable-length entries in `[from, to)`: `size` gives an entry's length from its
/// address and first 8 bytes (None: unknown, the walk stops there), `f` gets each entry's
/// first 8 bytes. False if an entry is unreadable or runs past `to`.
fn entries(
    m: &dyn PhysRead,
    from: u64,
    to: u64,
    size: impl Fn(u64, &[u8; 8]) -> Option<u64>,
    mut f: impl FnMut(&[u8; 8]),
) -> bool {
    let mut at = from;
    while at < to {
        let mut e = [0u8; 8];
        if !m.read(at, &mut e[..(to - at).min(8) as usize]) {
            return false;
        }
        let Some(len) = size(at, &e) else {
            return true;
        };
        if len == 0 || at + len > to {
            return false;
        }
        f(&e);
        at += len;
    }
    true
}

/// An AMD IOMMU from an IVHD block of the IVRS table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmdIommu {
    /// Its register window.
    pub base: u64,
    /// Its own PCI function (requester ID) and the offset of its capability block there.
    pub device_id: u16,
    pub capability: u16,
}

/// The AMD IOMMUs of the IVRS table (IVHD blocks of types 0x10, 0x11 and 0x40, each IOMMU
/// once however many blocks describe it); how many were found (at most [`MAX_DRHDS`]), or None
/// without an IVRS table.
pub fn ivrs_units(m: &dyn PhysRead, rsdp: u64, out: &mut [AmdIommu; MAX_DRHDS]) -> Option<usize> {
    let ivrs = find_table(m, rsdp, b"IVRS")?;
    let mut n = 0;
    // IVHD and IVMD blocks follow the 48-byte header (IVinfo and reserved bytes).
    structures(m, ivrs, 48, true, |ty, len, h, _| {
        let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
        let mut base = [0u8; 8];
        base.copy_from_slice(&h[8..16]);
        let unit = AmdIommu {
            base: u64::from_le_bytes(base),
            device_id: u16_at(4),
            capability: u16_at(6),
        };
        let ivhd = matches!(ty & 0xFF, 0x10 | 0x11 | 0x40) && len >= 24 && unit.base != 0;
        if ivhd && n < MAX_DRHDS && !out[..n].iter().any(|u| u.base == unit.base) {
            out[n] = unit;
            n += 1;
        }
    })?;
    Some(n)
}

/// IOAPICs whose interrupt requests an AMD IOMMU names: (IOAPIC ID, the requester ID its
/// interrupts carry), from the IVHD blocks' special device entries (type 0x48, variety 1).
pub const MAX_IVRS_IOAPICS: usize = 8;

/// Calls `f` with the first 8 bytes of every device entry of the IVRS table's IVHD blocks;
/// None without an IVRS table, false when a block is malformed.
fn ivhd_device_entries(m: &dyn PhysRead, rsdp: u64, mut f: impl FnMut(&[u8; 8])) -> Option<bool> {
    let ivrs = find_table(m, rsdp, b"IVRS")?;
    let mut ok = true;
    structures(m, ivrs, 48, true, |ty, len, _, at| {
        let header = match ty & 0xFF {
            0x10 => 24,
            0x11 | 0x40 => 40,
            _ => return,
        };
        // Device entries: 4 bytes (types below 0x40), 8 bytes (below 0x80), an ACPI HID
        // device (0xF0) 22 bytes and its UID; others unknown.
        let size = |entry: u64, e: &[u8; 8]| match e[0] {
            0..=0x3F => Some(4),
            0x40..=0x7F => Some(8),
            0xF0 => {
                let mut uid_len = [0u8; 1];
                m.read(entry + 21, &mut uid_len)
                    .then(|| 22 + u64::from(uid_len[0]))
            }
            _ => None,
        };
        ok &= entries(m, at + header, at + len, size, &mut f);
    })?;
    Some(ok)
}

/// The IOAPIC sources of the IVRS table; how many (at most [`MAX_IVRS_IOAPICS`]), or None
/// without an IVRS table or with a malformed block.
pub fn ivrs_ioapics(
    m: &dyn PhysRead,
    rsdp: u64,
    out: &mut [(u8, u16); MAX_IVRS_IOAPICS],
) -> Option<usize> {
    let mut sources = Sources::new(out);
    let ok = ivhd_device_entries(m, rsdp, |e| {
        // Special device 0x48: handle (IOAPIC ID) in byte 4, its requester ID in bytes 5-6,
        // variety 1 (IOAPIC) in byte 7.
        if e[0] == 0x48 && e[7] == 1 {
            sources.add(e[4], u16::from_le_bytes([e[5], e[6]]));
        }
    })?;
    sources.ok &= ok;
    sources.count()
}

/// The requester ID the IVRS table says an AMD IOMMU sees on `device`'s requests, when it
/// names one: an alias-select entry (0x42) for the device, or an alias range (0x43 up to the
/// end-of-range entry 0x04) holding it. Source IDs are in bytes 5-6 of those entries.
pub fn ivrs_alias(m: &dyn PhysRead, rsdp: u64, device: u16) -> Option<u16> {
    let mut alias = None;
    let mut range: Option<(u16, u16)> = None;
    ivhd_device_entries(m, rsdp, |e| {
        let id = u16::from_le_bytes([e[1], e[2]]);
        match e[0] {
            0x42 if id == device => alias = alias.or(Some(u16::from_le_bytes([e[5], e[6]]))),
            0x43 => range = Some((id, u16::from_le_bytes([e[5], e[6]]))),
            0x04 => {
                if let Some((start, source)) = range.take() {
                    if (start..=id).contains(&device) {
                        alias = alias.or(Some(source));
                    }
                }
            }
            _ => {}
        }
    })?;
    alias
}

/// The ACPI power-management timer: a free-running 3.579545 MHz counter in port space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PmTimer {
    pub port: u16,
    /// The counter has 32 bits (FADT flag TMR_VAL_EXT), else 24.
    pub ext32: bool,
}

// FADT offsets (ACPI 6.x, table 5.9).
const FADT_PM_TMR_BLK: usize = 76;
const FADT_PM_TMR_LEN: usize = 91;
const FADT_FLAGS: usize = 112;
const FADT_X_PM_TMR_BLK: usize = 208;
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_HW_REDUCED_ACPI: u32 = 1 << 20;

/// The machine's PM timer from its FADT: X_PM_TMR_BLK when it is in I/O space, else the 32-bit
/// PM_TMR_BLK (which must be 4 ports long).
pub fn pm_timer(m: &dyn PhysRead, rsdp: u64) -> Option<PmTimer> {
    let (fadt, len) = find_table(m, rsdp, b"FACP")?;
    let mut t = [0u8; FADT_X_PM_TMR_BLK + 12];
    let n = (len as usize).min(t.len());
    if n < FADT_FLAGS + 4 || !m.read(fadt, &mut t[..n]) {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    let ext32 = u32_at(FADT_FLAGS) & FADT_TMR_VAL_EXT != 0;
    let x = &t[FADT_X_PM_TMR_BLK..];
    let xaddr = u64::from_le_bytes(x[4..12].try_into().ok()?);
    let port = if n == t.len() && x[0] == 1 && xaddr != 0 {
        xaddr
    } else if t[FADT_PM_TMR_LEN] == 4 {
        u32_at(FADT_PM_TMR_BLK) as u64
    } else {
        0
    };
    (port != 0 && port <= 0xFFFC).then_some(PmTimer {
        port: port as u16,
        ext32,
    })
}

/// The FADT's reset register (ACPI 2.0+, RESET_REG_SUP): write `value` to it to reset the
/// machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetRegister {
    pub space: ResetSpace,
    pub address: u64,
    pub value: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpace {
    Memory,
    Port,
    /// PCI configuration space of bus 0: device, function and register in the address.
    PciConfig,
}

const FADT_RESET_REG: usize = 116;
const FADT_RESET_VALUE: usize = 128;
const FADT_RESET_REG_SUP: u32 = 1 << 10;

/// The reset register in a FADT's bytes, if the FADT announces one.
pub fn fadt_reset_register(fadt: &[u8]) -> Option<ResetRegister> {
    let flags = u32::from_le_bytes(fadt.get(FADT_FLAGS..FADT_FLAGS + 4)?.try_into().ok()?);
    let gas = fadt.get(FADT_RESET_REG..FADT_RESET_REG + 12)?;
    let value = *fadt.get(FADT_RESET_VALUE)?;
    if flags & FADT_RESET_REG_SUP == 0 {
        return None;
    }
    let space = match gas[0] {
        0 => ResetSpace::Memory,
        1 => ResetSpace::Port,
        2 => ResetSpace::PciConfig,
        _ => return None,
    };
    let address = u64::from_le_bytes(gas[4..12].try_into().ok()?);
    (address != 0).then_some(ResetRegister {
        space,
        address,
        value,
    })
}

/// The machine's reset register from its FADT.
pub fn reset_register(m: &dyn PhysRead, rsdp: u64) -> Option<ResetRegister> {
    let (fadt, len) = find_table(m, rsdp, b"FACP")?;
    let mut t = [0u8; FADT_RESET_VALUE + 1];
    if (len as usize) < t.len() || !m.read(fadt, &mut t) {
        return None;
    }
    fadt_reset_register(&t)
}

/// How to put the machine in ACPI S5 (soft off): write `SLP_TYP | SLP_EN` to the PM1 control
/// blocks, with the sleep types of the DSDT's `\_S5` package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftOff {
    pub pm1a_cnt: u16,
    pub pm1b_cnt: Option<u16>,
    pub slp_typ_a: u8,
    pub slp_typ_b: u8,
}

const FADT_DSDT: usize = 40;
const FADT_PM1A_CNT_BLK: usize = 64;
const FADT_PM1B_CNT_BLK: usize = 68;
/// How much of the DSDT is searched for `_S5_`.
const DSDT_SCAN_MAX: usize = 0x2_0000;

/// The first element values of the package that follows `_S5_` in AML `aml`: (SLP_TYPa,
/// SLP_TYPb). Understands `Name (_S5, Package (n) { a, b, ... })` with byte constants,
/// Zero, One and Ones.
pub fn s5_sleep_types(aml: &[u8]) -> Option<(u8, u8)> {
    let at = aml.windows(4).position(|w| w == b"_S5_")? + 4;
    let rest = aml.get(at..)?;
    if *rest.first()? != 0x12 {
        return None; // PackageOp
    }
    let lead = *rest.get(1)?;
    let pkg_len_bytes = 1 + (lead >> 6) as usize;
    let mut i = 1 + pkg_len_bytes + 1; // PkgLength, NumElements
    let mut element = || -> Option<u8> {
        let v = match *rest.get(i)? {
            0x0A => {
                i += 1;
                *rest.get(i)?
            }
            0x00 => 0,
            0x01 => 1,
            0xFF => 0xFF,
            _ => return None,
        };
        i += 1;
        Some(v & 7)
    };
    let a = element()?;
    let b = element().unwrap_or(a);
    Some((a, b))
}

/// The machine's soft-off controls from its FADT and DSDT.
pub fn soft_off(m: &dyn PhysRead, rsdp: u64) -> Option<SoftOff> {
    let (fadt, len) = find_table(m, rsdp, b"FACP")?;
    let mut t = [0u8; FADT_PM1B_CNT_BLK + 4];
    if (len as usize) < t.len() || !m.read(fadt, &mut t) {
        return None;
    }
    let u32_at = |o: usize| u32::from_le_bytes([t[o], t[o + 1], t[o + 2], t[o + 3]]);
    let dsdt = u32_at(FADT_DSDT) as u64;
    let pm1a = u32_at(FADT_PM1A_CNT_BLK);
    let pm1b = u32_at(FADT_PM1B_CNT_BLK);
    let mut h = [0u8; 8];
    if dsdt == 0 || pm1a == 0 || pm1a > 0xFFFF || !m.read(dsdt, &mut h) || &h[..4] != b"DSDT" {
        return None;
    }
    let dsdt_len = (u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize).min(DSDT_SCAN_MAX);
    let mut buf = [0u8; 256];
    let mut off = 0;
    // Scan in overlapping windows so `_S5_` and its package are never cut.
    while off < dsdt_len {
        let n = buf.len().min(dsdt_len - off);
        if !m.read(dsdt + off as u64, &mut buf[..n]) {
            return None;
        }
        if let Some((a, b)) = s5_sleep_types(&buf[..n]) {
            return Some(SoftOff {
                pm1a_cnt: pm1a as u16,
                pm1b_cnt: (pm1b != 0 && pm1b <= 0xFFFF).then_some(pm1b as u16),
                slp_typ_a: a,
                slp_typ_b: b,
            });
        }
        off += buf.len() - 32;
    }
    None
}

/// Size of the area [`build_guest_tables`] fills.
pub const GUEST_TABLES_SIZE: usize = 0x2000;

fn header(t: &mut [u8], sig: &[u8; 4], len: usize, rev: u8) {
    t[..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    t[8] = rev;
    t[10..16].copy_from_slice(b"ACRN  ");
    t[16..24].copy_from_slice(b"ACRNVM  ");
    t[24..28].copy_from_slice(&1u32.to_le_bytes());
    t[28..32].copy_from_slice(b"ACRN");
    t[32..36].copy_from_slice(&1u32.to_le_bytes());
}

fn seal(t: &mut [u8], len: usize) {
    t[9] = 0;
    t[9] = 0u8.wrapping_sub(checksum(&t[..len]));
}

/// An ECAM window: the address of bus 0's configuration space and the buses it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecam {
    pub base: u64,
    pub start_bus: u8,
    pub end_bus: u8,
}

impl Ecam {
    /// The window's memory: (address of its first bus, length).
    pub fn window(&self) -> (u64, u64) {
        let buses = u64::from(self.end_bus.saturating_sub(self.start_bus)) + 1;
        (self.base + (u64::from(self.start_bus) << 20), buses << 20)
    }
}

/// What a VM's ACPI tables describe (see [`build_guest_tables`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestPlatform<'a> {
    pub vcpus: u32,
    /// The IOAPIC's ID and address.
    pub ioapic: Option<(u8, u32)>,
    pub hpet: Option<u64>,
    pub pm_timer: Option<PmTimer>,
    /// The ECAM window the MCFG announces.
    pub mcfg: Option<Ecam>,
    /// The legacy console UART's base port and ISA IRQ.
    pub com: Option<(u16, u8)>,
    /// The legacy VM-to-VM vUARTs' base ports and ISA IRQs (COM2.. in the DSDT).
    pub link_uarts: [Option<(u16, u8)>; MAX_LINK_UARTS],
    /// The PCI host bridge the DSDT describes (Linux enumerates PCI through it).
    pub pci_root: Option<PciRoot<'a>>,
}

/// Legacy VM-to-VM vUARTs the DSDT names.
pub const MAX_LINK_UARTS: usize = 4;

/// Builds RSDP, XSDT, MADT (one enabled local APIC per vCPU, IDs 0..n, plus the IOAPIC with the
/// IRQ0 -> GSI 2 override), FADT (hardware-reduced, so no SCI or PM1 registers are implied; it
/// names `pm_timer`, the machine's read-only PM timer, which guests calibrate the TSC against)
/// a DSDT and, with `mcfg`, an MCFG for PCI segment 0 into
/// `buf`, which the caller places at guest-physical `base` (= [`GUEST_RSDP_GPA`]). The DSDT
/// reserves the ECAM window and describes `com`, the VM's legacy console UART (base port, ISA
/// IRQ), when it has one: a hardware-reduced platform has no legacy PIC and so no ISA IRQs
/// unless ACPI names them, and Linux's 8250 driver needs the UART's IRQ for its tty; the same
/// for `link_uarts` (COM2..). With `pci_root` it describes the PCI host bridge `PCI0`, through
/// which Linux enumerates the VM's virtual PCI bus.
pub fn build_guest_tables(buf: &mut [u8; GUEST_TABLES_SIZE], base: u64, platform: &GuestPlatform) {
    let GuestPlatform {
        vcpus,
        ioapic,
        hpet,
        pm_timer,
        mcfg,
        com,
        link_uarts,
        pci_root,
    } = *platform;
    buf.fill(0);
    const XSDT: usize = 0x40;
    const MADT: usize = 0x90;
    const FADT: usize = 0x400;
    const DSDT: usize = 0x600;
    const DSDT_MAX: usize = GUEST_TABLES_SIZE - DSDT;
    const HPET: usize = 0x520;
    const MCFG: usize = 0x560;
    const MCFG_LEN: usize = 60;
    let vcpus = vcpus.min(MAX_CPUS as u32) as usize;
    // RSDP (revision 2).
    let r = &mut buf[..36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(b"ACRN  ");
    r[15] = 2;
    r[16..20].copy_from_slice(&((base as usize + XSDT) as u32).to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&(base + XSDT as u64).to_le_bytes());
    r[8] = 0u8.wrapping_sub(checksum(&r[..20]));
    r[32] = 0u8.wrapping_sub(checksum(&r[..36]));
    // XSDT -> MADT, FADT (, HPET) (, MCFG).
    let mut entries = [0u64; 4];
    let mut n = 0;
    for (table, present) in [
        (MADT, true),
        (FADT, true),
        (HPET, hpet.is_some()),
        (MCFG, mcfg.is_some()),
    ] {
        if present {
            entries[n] = base + table as u64;
            n += 1;
        }
    }
    let xlen = 36 + 8 * n;
    let x = &mut buf[XSDT..XSDT + xlen];
    header(x, b"XSDT", xlen, 1);
    for (i, e) in entries[..n].iter().enumerate() {
        x[36 + 8 * i..44 + 8 * i].copy_from_slice(&e.to_le_bytes());
    }
    seal(x, xlen);
    if let Some(e) = mcfg {
        let t = &mut buf[MCFG..MCFG + MCFG_LEN];
        header(t, b"MCFG", MCFG_LEN, 1);
        // One allocation: base (of bus 0), segment 0, buses start_bus..=end_bus.
        t[44..52].copy_from_slice(&e.base.to_le_bytes());
        t[54] = e.start_bus;
        t[55] = e.end_bus;
        seal(t, MCFG_LEN);
    }
    if let Some(addr) = hpet {
        let t = &mut buf[HPET..HPET + 56];
        header(t, b"HPET", 56, 1);
        t[36..40].copy_from_slice(&0x8086_A201u32.to_le_bytes()); // event timer block id
        t[40] = 0; // GAS: system memory
        t[41] = 64;
        t[44..52].copy_from_slice(&addr.to_le_bytes());
        t[54..56].copy_from_slice(&0x80u16.to_le_bytes()); // minimum tick
        seal(t, 56);
    }
    // MADT.
    let mut len = 44;
    {
        let t = &mut buf[MADT..FADT];
        t[36..40].copy_from_slice(&0xFEE0_0000u32.to_le_bytes());
        for i in 0..vcpus {
            t[len..len + 8].copy_from_slice(&[0, 8, i as u8, i as u8, 1, 0, 0, 0]);
            len += 8;
        }
        if let Some((id, addr)) = ioapic {
            t[len..len + 12].copy_from_slice(&[1, 12, id, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            t[len + 4..len + 8].copy_from_slice(&addr.to_le_bytes());
            len += 12;
            // ISA IRQ 0 (PIT) arrives on GSI 2, as on PC chipsets.
            t[len..len + 10].copy_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
            len += 10;
        }
        header(t, b"APIC", len, 4);
        seal(t, len);
    }
    // FADT (revision 6, 276 bytes): HW_REDUCED_ACPI, X_DSDT.
    {
        let t = &mut buf[FADT..FADT + 276];
        header(t, b"FACP", 276, 6);
        t[40..44].copy_from_slice(&((base as usize + DSDT) as u32).to_le_bytes());
        let mut flags = FADT_HW_REDUCED_ACPI;
        if let Some(pm) = pm_timer {
            t[FADT_PM_TMR_BLK..FADT_PM_TMR_BLK + 4]
                .copy_from_slice(&(pm.port as u32).to_le_bytes());
            t[FADT_PM_TMR_LEN] = 4;
            // GAS: system I/O, 32 bits wide, dword access.
            let x = &mut t[FADT_X_PM_TMR_BLK..FADT_X_PM_TMR_BLK + 12];
            x[..4].copy_from_slice(&[1, 32, 0, 3]);
            x[4..12].copy_from_slice(&(pm.port as u64).to_le_bytes());
            if pm.ext32 {
                flags |= FADT_TMR_VAL_EXT;
            }
        }
        t[FADT_FLAGS..FADT_FLAGS + 4].copy_from_slice(&flags.to_le_bytes());
        t[131] = 5; // FADT minor version
        t[140..148].copy_from_slice(&(base + DSDT as u64).to_le_bytes());
        seal(t, 276);
    }
    // The DSDT reserves the ECAM window as a motherboard resource: without that, Linux
    // refuses the MCFG and falls back to port 0xCF8.
    const AML_MAX: usize = ECAM_AML_LEN + (1 + MAX_LINK_UARTS) * 64 + PCI_ROOT_AML_MAX;
    const _: () = assert!(36 + AML_MAX <= DSDT_MAX);
    let mut aml = [0u8; AML_MAX];
    let mut n = 0;
    if let Some(e) = mcfg {
        let (start, len) = e.window();
        aml[..ECAM_AML_LEN].copy_from_slice(&ecam_reservation(start, len as u32));
        n = ECAM_AML_LEN;
    }
    // The console is COM1 and the links COM2..: Linux's 8250 driver needs each one's IRQ.
    for (i, uart) in core::iter::once(com).chain(link_uarts).enumerate() {
        if let Some((port, irq)) = uart {
            let mut com_aml = [0u8; 64];
            let len = com_device_aml(port, irq, i as u8 + 1, &mut com_aml);
            aml[n..n + len].copy_from_slice(&com_aml[..len]);
            n += len;
        }
    }
    if let Some(root) = pci_root {
        let root_aml = pci_root_aml(&root);
        let bytes = root_aml.bytes();
        if root_aml.fits() {
            aml[n..n + bytes.len()].copy_from_slice(bytes);
            n += bytes.len();
        }
    }
    let d = &mut buf[DSDT..DSDT + 36 + n];
    header(d, b"DSDT", 36 + n, 2);
    d[36..].copy_from_slice(&aml[..n]);
    seal(d, 36 + n);
}

/// Length of [`ecam_reservation`]'s AML.
const ECAM_AML_LEN: usize = 46;

/// AML for `Scope (\_SB) { Device (ECAM) { Name (_HID, EisaId ("PNP0C02")) Name (_CRS,
/// ResourceTemplate () { Memory32Fixed (ReadOnly, base, len) }) } }`.
fn ecam_reservation(base: u64, len: u32) -> [u8; ECAM_AML_LEN] {
    let mut a = [0u8; ECAM_AML_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        a[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    // ScopeOp, PkgLength (everything after ScopeOp), \_SB_ path.
    put(&[0x10, (ECAM_AML_LEN - 1) as u8, b'_', b'S', b'B', b'_']);
    // DeviceOp, PkgLength, name.
    put(&[0x5B, 0x82, (ECAM_AML_LEN - 8) as u8, b'E', b'C', b'A', b'M']);
    // Name (_HID, DWordConst EISA "PNP0C02").
    put(&[0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0C, 0x02]);
    // Name (_CRS, Buffer (14) { Memory32Fixed, EndTag }).
    put(&[0x08, b'_', b'C', b'R', b'S', 0x11, 0x11, 0x0A, 0x0E]);
    put(&[0x86, 0x09, 0x00, 0x00]);
    put(&(base as u32).to_le_bytes());
    put(&len.to_le_bytes());
    put(&[0x79, 0x00]);
    a
}

/// AML for `Scope (\_SB) { Device (COMn) { _HID PNP0501, _UID n, _CRS { IO (Decode16, port,
/// port, 1, 8), IRQNoFlags () {irq} } } }` (n = `uid`, 1..=9) into `out`; its length (0 for an
/// IRQ above 15, which IRQNoFlags cannot name).
fn com_device_aml(port: u16, irq: u8, uid: u8, out: &mut [u8; 64]) -> usize {
    if irq > 15 || !(1..=9).contains(&uid) {
        return 0;
    }
    let [plo, phi] = port.to_le_bytes();
    let [mlo, mhi] = (1u16 << irq).to_le_bytes();
    // Name (_HID, EisaId ("PNP0501")), Name (_UID, One).
    let hid = [0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x05, 0x01];
    let uid_name = [0x08, b'_', b'U', b'I', b'D', 0x0A, uid];
    // Name (_CRS, Buffer (13) { IO descriptor, IRQ descriptor, end tag }).
    let crs = [
        0x08, b'_', b'C', b'R', b'S', 0x11, 0x10, 0x0A, 0x0D, // buffer of 13 bytes
        0x47, 0x01, plo, phi, plo, phi, 0x01, 0x08, // IO: decode16, min = max = port, 8 ports
        0x22, mlo, mhi, // IRQNoFlags: edge, active high
        0x79, 0x00, // end tag
    ];
    let body = 4 + hid.len() + uid_name.len() + crs.len();
    let device_len = 1 + body; // one PkgLength byte (< 64)
    let scope_len = 1 + 5 + 2 + device_len;
    let mut n = 0;
    let mut put = |b: &[u8]| {
        out[n..n + b.len()].copy_from_slice(b);
        n += b.len();
    };
    put(&[0x10, scope_len as u8, b'\\', b'_', b'S', b'B', b'_']);
    put(&[0x5B, 0x82, device_len as u8, b'C', b'O', b'M', b'0' + uid]);
    put(&hid);
    put(&uid_name);
    put(&crs);
    n
}

/// An AML byte stream being written into a fixed buffer; bytes past its end are dropped and
/// make [`Aml::fits`] false.
struct Aml<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> Aml<N> {
    const fn new() -> Self {
        Aml {
            buf: [0; N],
            len: 0,
            overflow: false,
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        match self.buf.get_mut(self.len..self.len + bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            None => self.overflow = true,
        }
    }

    /// A PkgLength for `content` bytes that follow it, then the content.
    fn package(&mut self, content: &[u8]) {
        let (enc, n) = pkg_length(content.len());
        self.put(&enc[..n]);
        self.put(content);
    }

    /// The shortest integer encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordConst).
    fn integer(&mut self, v: u64) {
        match v {
            0 => self.put(&[0x00]),
            1 => self.put(&[0x01]),
            2..=0xFF => self.put(&[0x0A, v as u8]),
            0x100..=0xFFFF => {
                self.put(&[0x0B]);
                self.put(&(v as u16).to_le_bytes());
            }
            0x1_0000..=0xFFFF_FFFF => {
                self.put(&[0x0C]);
                self.put(&(v as u32).to_le_bytes());
            }
            _ => {
                self.put(&[0x0E]);
                self.put(&v.to_le_bytes());
            }
        }
    }

    /// `Name (NAME, value)` with an integer value.
    fn name_integer(&mut self, name: &[u8; 4], v: u64) {
        self.put(&[0x08]);
        self.put(name);
        self.integer(v);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn fits(&self) -> bool {
        !self.overflow
    }
}

/// The PkgLength encoding of a package whose content after the PkgLength is `content` bytes:
/// (bytes, how many of them).
fn pkg_length(content: usize) -> ([u8; 3], usize) {
    if content + 1 < 0x40 {
        ([(content + 1) as u8, 0, 0], 1)
    } else if content + 2 < 0x1000 {
        let l = content + 2;
        ([0x40 | (l & 0xF) as u8, (l >> 4) as u8, 0], 2)
    } else {
        let l = content + 3;
        ([0x80 | (l & 0xF) as u8, (l >> 4) as u8, (l >> 12) as u8], 3)
    }
}

/// Memory windows a DSDT's host bridge describes at most.
pub const MAX_PCI_WINDOWS: usize = 8;
/// Room for the host bridge's AML: its names, a `_CRS` with three word windows and
/// [`MAX_PCI_WINDOWS`] QWord ones, and a `_PRT` of 128 routes (32 devices, 4 pins).
const PCI_ROOT_AML_MAX: usize = 112 + 3 * 16 + MAX_PCI_WINDOWS * 46 + 128 * 14;

/// AML for `Scope (\_SB) { Device (PCI0) { _HID PNP0A08, _CID PNP0A03, _SEG 0, _BBN first_bus,
/// _UID 0, _CRS { WordBusNumber first_bus..=last_bus, WordIO 0..0xCF7 and 0xD00..0xFFFF, a
/// DWordMemory or QWordMemory per window }, _PRT { Package { 0xDDDDFFFF, pin, Zero, GSI } per
/// route } } }`; no `_PRT` without routes (the functions of a pre-launched VM's virtual bus
/// interrupt by MSI/MSI-X only). Windows are producers with fixed bounds, so Linux keeps BARs
/// inside them.
fn pci_root_aml(root: &PciRoot<'_>) -> Aml<PCI_ROOT_AML_MAX> {
    // Every window: ResourceProducer, PosDecode, MinFixed, MaxFixed (general flags 0x0C).
    let word_window = |kind: u8, type_flags: u8, min: u16, max: u16| {
        let mut d = [0u8; 16];
        d[..6].copy_from_slice(&[0x88, 0x0D, 0x00, kind, 0x0C, type_flags]);
        d[8..10].copy_from_slice(&min.to_le_bytes());
        d[10..12].copy_from_slice(&max.to_le_bytes());
        d[14..16].copy_from_slice(&(max.wrapping_sub(min).wrapping_add(1)).to_le_bytes());
        d
    };
    let mut crs = Aml::<{ 3 * 16 + MAX_PCI_WINDOWS * 46 + 2 }>::new();
    crs.put(&word_window(
        2,
        0,
        root.first_bus as u16,
        root.last_bus.max(root.first_bus) as u16,
    ));
    // I/O ranges: EntireRange (type flags 3); the gap is the 0xCF8 configuration ports.
    crs.put(&word_window(1, 3, 0, 0xCF7));
    crs.put(&word_window(1, 3, 0xD00, 0xFFFF));
    for &(min, max) in root
        .mmio
        .iter()
        .filter(|(a, b)| a <= b)
        .take(MAX_PCI_WINDOWS)
    {
        let len = max.wrapping_sub(min).wrapping_add(1);
        if max <= u64::from(u32::MAX) {
            // Memory, ReadWrite, NonCacheable.
            let mut d = [0u8; 26];
            d[..6].copy_from_slice(&[0x87, 0x17, 0x00, 0x00, 0x0C, 0x01]);
            d[10..14].copy_from_slice(&(min as u32).to_le_bytes());
            d[14..18].copy_from_slice(&(max as u32).to_le_bytes());
            d[22..26].copy_from_slice(&(len as u32).to_le_bytes());
            crs.put(&d);
        } else {
            let mut q = [0u8; 46];
            q[..6].copy_from_slice(&[0x8A, 0x2B, 0x00, 0x00, 0x0C, 0x01]);
            q[14..22].copy_from_slice(&min.to_le_bytes());
            q[22..30].copy_from_slice(&max.to_le_bytes());
            q[38..46].copy_from_slice(&len.to_le_bytes());
            crs.put(&q);
        }
    }
    crs.put(&[0x79, 0x00]);

    let mut dev = Aml::<PCI_ROOT_AML_MAX>::new();
    dev.put(b"PCI0");
    dev.put(&[0x08, b'_', b'H', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0A, 0x08]); // EisaId PNP0A08
    dev.put(&[0x08, b'_', b'C', b'I', b'D', 0x0C, 0x41, 0xD0, 0x0A, 0x03]); // EisaId PNP0A03
    dev.name_integer(b"_SEG", 0);
    dev.name_integer(b"_BBN", u64::from(root.first_bus));
    dev.name_integer(b"_UID", 0);
    // Name (_CRS, Buffer (n) { template }).
    let mut buffer = Aml::<{ 3 + 3 * 16 + MAX_PCI_WINDOWS * 46 + 2 }>::new();
    buffer.integer(crs.bytes().len() as u64);
    buffer.put(crs.bytes());
    dev.put(&[0x08, b'_', b'C', b'R', b'S', 0x11]);
    dev.package(buffer.bytes());
    let routes = root.intx_routes;
    if !routes.is_empty() {
        let mut table = Aml::<{ 1 + 128 * 14 }>::new();
        let count = routes.iter().take(128).count();
        table.put(&[count as u8]);
        for r in routes.iter().take(128) {
            let mut entry = Aml::<14>::new();
            entry.put(&[0x04]);
            entry.put(&[0x0C]);
            entry.put(&((u32::from(r.device) << 16) | 0xFFFF).to_le_bytes());
            entry.integer(u64::from(r.pin));
            entry.put(&[0x00]); // Source: Zero, the GSI is global.
            entry.integer(u64::from(r.gsi));
            table.put(&[0x12]);
            table.package(entry.bytes());
        }
        dev.put(&[0x08, b'_', b'P', b'R', b'T', 0x12]);
        dev.package(table.bytes());
    }
    let mut scope_body = Aml::<PCI_ROOT_AML_MAX>::new();
    scope_body.put(b"\\_SB_");
    scope_body.put(&[0x5B, 0x82]);
    scope_body.package(dev.bytes());
    let mut out = Aml::<PCI_ROOT_AML_MAX>::new();
    out.put(&[0x10]);
    out.package(scope_body.bytes());
    out
}

/// Routes a `_PRT` holds at most: one per pin of every device number.
pub const MAX_INTX_ROUTES: usize = 128;

/// The `_PRT` of a pre-launched VM's virtual bus: the INTx pin of each pass-through function
/// (`pin_of` its physical function: 1 = INTA#, 0 = none) at its virtual device number, to the
/// virtual GSI that `pt_intx` gives for the GSI the board routes that pin to (`board`, for
/// functions on the root bus). A function without a pin, a board route or a `pt_intx` pair
/// gets none: it interrupts by MSI or MSI-X only, as ACRN's. Returns how many routes `out` got.
pub fn passthrough_routes(
    devs: &[PassthroughDevice],
    pin_of: impl Fn(Bdf) -> u8,
    board: &[IntxRoute],
    pt_intx: &[(u32, u32)],
    out: &mut [IntxRoute],
) -> usize {
    let mut n = 0;
    for d in devs {
        let pin = pin_of(d.pbdf);
        if d.pbdf.bus != 0 || d.vbdf.bus != 0 || !(1..=4).contains(&pin) {
            continue;
        }
        let pin = pin - 1;
        let Some(phys) = board
            .iter()
            .find(|r| r.device == d.pbdf.dev && r.pin == pin)
            .map(|r| r.gsi)
        else {
            continue;
        };
        let Some(&(_, virt)) = pt_intx.iter().find(|&&(p, _)| p == phys) else {
            continue;
        };
        let route = IntxRoute {
            device: d.vbdf.dev,
            pin,
            gsi: virt,
        };
        // Functions of one device share its pins' routes.
        if out[..n].contains(&route) || n == out.len() {
            continue;
        }
        out[n] = route;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {

    #[test]
    fn reset_register_of_a_fadt() {
        // QEMU q35: port 0xCF9, value 0x0F, RESET_REG_SUP set.
        let mut t = [0u8; 129];
        t[112..116].copy_from_slice(&(1u32 << 10).to_le_bytes());
        t[116..120].copy_from_slice(&[1, 8, 0, 0]);
        t[120..128].copy_from_slice(&0xCF9u64.to_le_bytes());
        t[128] = 0x0F;
        assert_eq!(
            super::fadt_reset_register(&t),
            Some(super::ResetRegister {
                space: super::ResetSpace::Port,
                address: 0xCF9,
                value: 0x0F
            })
        );
        let mut unsupported = t;
        unsupported[113] = 0;
        assert_eq!(super::fadt_reset_register(&unsupported), None);
        let mut odd_space = t;
        odd_space[116] = 0x7F;
        assert_eq!(super::fadt_reset_register(&odd_space), None);
        assert_eq!(super::fadt_reset_register(&t[..100]), None, "ACPI 1.0 FADT");
    }

    #[test]
    fn s5_package_forms() {
        // Name (_S5, Package (4) { 0x05, Zero, Zero, Zero })
        let aml = [
            b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0A, 0x05, 0x00, 0x00, 0x00,
        ];
        assert_eq!(super::s5_sleep_types(&aml), Some((5, 0)));
        // Package (2) { Zero, Zero } as QEMU's q35 writes it.
        let aml = [
            0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(super::s5_sleep_types(&aml), Some((0, 0)));
        // Not a package, truncated, absent.
        assert_eq!(super::s5_sleep_types(b"_S5_\x10"), None);
        assert_eq!(super::s5_sleep_types(&[b'_', b'S', b'5', b'_', 0x12]), None);
        assert_eq!(super::s5_sleep_types(b"_S4_"), None);
    }
    use super::*;

    #[test]
    fn passthrough_functions_route_their_pins_through_pt_intx() {
        let dev = |pb: (u8, u8, u8), vb: (u8, u8, u8)| PassthroughDevice {
            pbdf: Bdf::new(pb.0, pb.1, pb.2),
            vbdf: Bdf::new(vb.0, vb.1, vb.2),
            vbars: [0; 6],
        };
        // q35: 00:02.0 INTA# -> GSI 22, 00:03.0 INTA# -> GSI 23.
        let board = [
            IntxRoute {
                device: 2,
                pin: 0,
                gsi: 22,
            },
            IntxRoute {
                device: 3,
                pin: 0,
                gsi: 23,
            },
        ];
        let devs = [
            dev((0, 2, 0), (0, 1, 0)),
            dev((0, 3, 0), (0, 4, 0)),
            dev((0, 5, 0), (0, 5, 0)),
            dev((1, 0, 0), (0, 6, 0)),
        ];
        // Every function has INTA#, 00:05.0 none.
        let pins = |b: Bdf| if b.dev == 5 { 0 } else { 1 };
        let mut out = [IntxRoute {
            device: 0,
            pin: 0,
            gsi: 0,
        }; MAX_INTX_ROUTES];
        // Only GSI 22 is given (as GSI 20): 00:03.0's line is not the VM's, 00:05.0 has no pin,
        // 01:00.0 is behind a bridge.
        let n = passthrough_routes(&devs, pins, &board, &[(22, 20)], &mut out);
        assert_eq!(
            out[..n],
            [IntxRoute {
                device: 1,
                pin: 0,
                gsi: 20
            }]
        );
        let n = passthrough_routes(&devs, pins, &board, &[(22, 22), (23, 23)], &mut out);
        assert_eq!(
            out[..n],
            [
                IntxRoute {
                    device: 1,
                    pin: 0,
                    gsi: 22
                },
                IntxRoute {
                    device: 4,
                    pin: 0,
                    gsi: 23
                }
            ]
        );
        // No board routes: none.
        assert_eq!(
            passthrough_routes(&devs, pins, &[], &[(22, 22)], &mut out),
            0
        );
    }

    struct Mem(u64, Vec<u8>);
    impl PhysRead for Mem {
        fn read(&self, pa: u64, buf: &mut [u8]) -> bool {
            let Some(o) = pa.checked_sub(self.0) else {
                return false;
            };
            match self.1.get(o as usize..o as usize + buf.len()) {
                Some(s) => {
                    buf.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }
    }

    /// Memory holding an RSDP (revision 2) at 0 and an XSDT at 0x40 that lists `table` at
    /// 0x100.
    fn firmware_with(table: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 0x200];
        m[..8].copy_from_slice(b"RSD PTR ");
        m[15] = 2;
        m[24..32].copy_from_slice(&0x40u64.to_le_bytes());
        m[0x40..0x44].copy_from_slice(b"XSDT");
        m[0x44..0x48].copy_from_slice(&44u32.to_le_bytes());
        m[0x40 + 36..0x40 + 44].copy_from_slice(&0x100u64.to_le_bytes());
        m[0x100..0x100 + table.len()].copy_from_slice(table);
        m
    }

    #[test]
    fn dmar_units_are_found_through_the_xsdt() {
        // RSDP (rev 2) at 0, XSDT at 0x40 listing one table at 0x100: a DMAR with an RMRR
        // (skipped), a DRHD of segment 0 at 0xFED90000 and a DRHD of segment 1.
        let mut dmar = vec![0u8; 48];
        dmar[..4].copy_from_slice(b"DMAR");
        let mut rmrr = vec![0u8; 24];
        rmrr[0] = 1;
        rmrr[2] = 24;
        let drhd = |segment: u16, base: u64| {
            let mut d = vec![0u8; 16];
            d[2] = 16;
            d[4] = 1; // INCLUDE_PCI_ALL
            d[6..8].copy_from_slice(&segment.to_le_bytes());
            d[8..16].copy_from_slice(&base.to_le_bytes());
            d
        };
        dmar.extend(rmrr);
        // The first DRHD carries an IOAPIC scope: ID 0 at ff:00.0, as QEMU's q35 names it.
        let mut first = drhd(0, 0xFED9_0000);
        first[2] = 24;
        first.extend([3, 8, 0, 0, 0, 0xFF, 0, 0]);
        dmar.extend(first);
        dmar.extend(drhd(1, 0xFEDA_0000));
        let len = dmar.len() as u32;
        dmar[4..8].copy_from_slice(&len.to_le_bytes());
        let mut m = firmware_with(&dmar);
        let mut out = [0; MAX_DRHDS];
        assert_eq!(dmar_units(&Mem(0, m.clone()), 0, &mut out), Some(1));
        assert_eq!(out[0], 0xFED9_0000);
        let mut ioapics = [(0, 0); MAX_IVRS_IOAPICS];
        assert_eq!(dmar_ioapics(&Mem(0, m.clone()), 0, &mut ioapics), Some(1));
        assert_eq!(ioapics[0], (0, 0xFF00));
        // A structure with length 0 ends the walk as malformed instead of looping.
        m[0x100 + 48 + 2] = 0;
        assert_eq!(dmar_units(&Mem(0, m), 0, &mut out), None);
    }

    /// QEMU 7.2's IVRS for `-machine q35 -device amd-iommu` (the IOMMU at 00:03.0), as Linux
    /// shows it in /sys/firmware/acpi/tables/IVRS.
    const QEMU_IVRS: [u8; 108] = [
        0x49, 0x56, 0x52, 0x53, 0x6c, 0x00, 0x00, 0x00, 0x01, 0x19, 0x42, 0x4f, 0x43, 0x48, 0x53,
        0x20, 0x42, 0x58, 0x50, 0x43, 0x20, 0x20, 0x20, 0x20, 0x01, 0x00, 0x00, 0x00, 0x42, 0x58,
        0x50, 0x43, 0x01, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x10, 0xd1, 0x3c, 0x00, 0x18, 0x00, 0x40, 0x00, 0x00, 0x00, 0xd8, 0xfe,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x44, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
        0x00, 0x02, 0x08, 0x00, 0x00, 0x02, 0x10, 0x00, 0x00, 0x02, 0x18, 0x00, 0x00, 0x02, 0xf8,
        0x00, 0x00, 0x02, 0xfa, 0x00, 0x00, 0x02, 0xfb, 0x00, 0x00, 0x48, 0x00, 0x00, 0x00, 0x00,
        0xa0, 0x00, 0x01,
    ];

    #[test]
    fn qemu_ivrs_names_its_iommu_and_ioapic() {
        let mem = Mem(0, firmware_with(&QEMU_IVRS));
        let mut units = [AmdIommu::default(); MAX_DRHDS];
        assert_eq!(ivrs_units(&mem, 0, &mut units), Some(1));
        assert_eq!(
            units[0],
            AmdIommu {
                base: 0xFED8_0000,
                device_id: 0x18,
                capability: 0x40
            }
        );
        let mut sources = [(0, 0); MAX_IVRS_IOAPICS];
        assert_eq!(ivrs_ioapics(&mem, 0, &mut sources), Some(1));
        assert_eq!(sources[0], (0, 0x00A0));
    }

    #[test]
    fn ivrs_alias_entries_name_the_id_the_iommu_sees() {
        let mut ivrs = vec![0u8; 48];
        ivrs[..4].copy_from_slice(b"IVRS");
        let mut ivhd = vec![0u8; 24];
        ivhd[0] = 0x10;
        ivhd[8..16].copy_from_slice(&0xFED8_0000u64.to_le_bytes());
        // 01:05.0 as 01:00.0 (alias select); 02:00.0-02:1f.7 as 00:1e.0 (an alias range and
        // its end); a 4-byte select entry between them.
        ivhd.extend([0x42, 0x28, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00]);
        ivhd.extend([0x02, 0x10, 0x00, 0x00]);
        ivhd.extend([0x43, 0x00, 0x02, 0x00, 0x00, 0xF0, 0x00, 0x00]);
        ivhd.extend([0x04, 0xFF, 0x02, 0x00]);
        let len = ivhd.len() as u16;
        ivhd[2..4].copy_from_slice(&len.to_le_bytes());
        ivrs.extend(ivhd);
        let len = ivrs.len() as u32;
        ivrs[4..8].copy_from_slice(&len.to_le_bytes());
        let m = Mem(0, firmware_with(&ivrs));
        assert_eq!(ivrs_alias(&m, 0, 0x0128), Some(0x0100));
        assert_eq!(ivrs_alias(&m, 0, 0x0200), Some(0x00F0));
        assert_eq!(ivrs_alias(&m, 0, 0x02FF), Some(0x00F0));
        assert_eq!(ivrs_alias(&m, 0, 0x0300), None);
        assert_eq!(ivrs_alias(&m, 0, 0x0010), None);
    }

    #[test]
    fn ivrs_names_each_iommu_once() {
        // RSDP at 0, XSDT at 0x40 listing an IVRS at 0x100: the same IOMMU in an IVHD of type
        // 0x10 and one of type 0x11 (QEMU's amd-iommu at 00:02.0), an IVMD (skipped).
        let mut ivrs = vec![0u8; 48];
        ivrs[..4].copy_from_slice(b"IVRS");
        let ivhd = |ty: u8, len: u16| {
            let mut d = vec![0u8; usize::from(len)];
            d[0] = ty;
            d[2..4].copy_from_slice(&len.to_le_bytes());
            d[4..6].copy_from_slice(&0x10u16.to_le_bytes());
            d[6..8].copy_from_slice(&0x40u16.to_le_bytes());
            d[8..16].copy_from_slice(&0xFED8_0000u64.to_le_bytes());
            d
        };
        let mut first = ivhd(0x10, 40);
        // Device entries: select 00:02.0, then the IOAPIC (ID 0) as 00:14.0.
        first[24..28].copy_from_slice(&[0x02, 0x10, 0x00, 0x00]);
        first[28..36].copy_from_slice(&[0x48, 0, 0, 0, 0x00, 0xA0, 0x00, 0x01]);
        ivrs.extend(first);
        ivrs.extend(ivhd(0x11, 44));
        let mut ivmd = vec![0u8; 32];
        ivmd[0] = 0x20;
        ivmd[2] = 32;
        ivrs.extend(ivmd);
        let len = ivrs.len() as u32;
        ivrs[4..8].copy_from_slice(&len.to_le_bytes());
        let mut m = firmware_with(&ivrs);
        let mut out = [AmdIommu::default(); MAX_DRHDS];
        assert_eq!(ivrs_units(&Mem(0, m.clone()), 0, &mut out), Some(1));
        assert_eq!(
            out[0],
            AmdIommu {
                base: 0xFED8_0000,
                device_id: 0x10,
                capability: 0x40
            }
        );
        let mut sources = [(0, 0); MAX_IVRS_IOAPICS];
        assert_eq!(ivrs_ioapics(&Mem(0, m.clone()), 0, &mut sources), Some(1));
        assert_eq!(sources[0], (0, 0xA0));
        assert_eq!(ivrs_alias(&Mem(0, m.clone()), 0, 0x0010), None);
        // No IVRS: None (the DMAR walk's tables are not taken for one).
        m[0x100..0x104].copy_from_slice(b"DMAR");
        assert_eq!(ivrs_units(&Mem(0, m.clone()), 0, &mut out), None);
        assert_eq!(ivrs_ioapics(&Mem(0, m), 0, &mut sources), None);
    }

    #[test]
    fn dsdt_names_the_console_uart() {
        let mut buf = [0u8; GUEST_TABLES_SIZE];
        build_guest_tables(
            &mut buf,
            GUEST_RSDP_GPA,
            &GuestPlatform {
                vcpus: 1,
                com: Some((0x2F8, 3)),
                ..GuestPlatform::default()
            },
        );
        let d = &buf[0x600..];
        let len = u32::from_le_bytes(d[4..8].try_into().unwrap()) as usize;
        assert_eq!(len, 36 + 53);
        assert_eq!(checksum(&d[..len]), 0);
        let aml = &d[36..len];
        // Scope (\_SB) of 52 bytes holding Device (COM1) of 44, _UID 1.
        assert_eq!(aml[..7], [0x10, 52, b'\\', b'_', b'S', b'B', b'_']);
        assert_eq!(aml[7..14], [0x5B, 0x82, 44, b'C', b'O', b'M', b'1']);
        assert_eq!(aml[24..31], [0x08, b'_', b'U', b'I', b'D', 0x0A, 1]);
        let has = |s: &[u8]| aml.windows(s.len()).any(|w| w == s);
        assert!(has(&[0x0C, 0x41, 0xD0, 0x05, 0x01]), "EisaId PNP0501");
        assert!(
            has(&[0x47, 0x01, 0xF8, 0x02, 0xF8, 0x02, 0x01, 0x08]),
            "IO 0x2F8, 8 ports"
        );
        assert!(has(&[0x22, 0x08, 0x00, 0x79, 0x00]), "IRQ 3, end tag");
        // No UART, or one on an IRQ IRQNoFlags cannot name: the empty DSDT.
        for com in [None, Some((0x3F8, 16))] {
            build_guest_tables(
                &mut buf,
                GUEST_RSDP_GPA,
                &GuestPlatform {
                    vcpus: 1,
                    com,
                    ..GuestPlatform::default()
                },
            );
            assert_eq!(
                u32::from_le_bytes(buf[0x604..0x608].try_into().unwrap()),
                36
            );
        }
    }

    #[test]
    fn guest_tables_roundtrip_through_the_madt_reader() {
        let mut buf = [0u8; GUEST_TABLES_SIZE];
        build_guest_tables(
            &mut buf,
            GUEST_RSDP_GPA,
            &GuestPlatform {
                vcpus: 3,
                ioapic: Some((0, 0xFEC0_0000)),
                hpet: Some(0xFED0_0000),
                pm_timer: Some(PmTimer {
                    port: 0x608,
                    ext32: true,
                }),
                mcfg: Some(Ecam {
                    base: 0xE000_0000,
                    start_bus: 0,
                    end_bus: 0,
                }),
                com: None,
                link_uarts: [None; MAX_LINK_UARTS],
                pci_root: None,
            },
        );
        let mut bios = vec![0u8; 0x20000];
        let off = (GUEST_RSDP_GPA - 0xE0000) as usize;
        bios[off..off + GUEST_TABLES_SIZE].copy_from_slice(&buf);
        let m = Mem(0xE0000, bios);
        assert_eq!(find_rsdp(&m), Some(GUEST_RSDP_GPA));
        let mut ids = [0u32; MAX_CPUS];
        assert_eq!(madt_apic_ids(&m, GUEST_RSDP_GPA, &mut ids), Some(3));
        assert_eq!(&ids[..3], &[0, 1, 2]);
        // The guest FADT names the PM timer the way a host FADT is read.
        assert_eq!(
            pm_timer(&m, GUEST_RSDP_GPA),
            Some(PmTimer {
                port: 0x608,
                ext32: true
            })
        );
        // The MCFG names the ECAM window for buses 0..=0.
        let (mcfg, mlen) = find_table(&m, GUEST_RSDP_GPA, b"MCFG").unwrap();
        assert_eq!(mlen, 60);
        let mut t = [0u8; 60];
        assert!(m.read(mcfg, &mut t));
        assert_eq!(
            u64::from_le_bytes(t[44..52].try_into().unwrap()),
            0xE000_0000
        );
        assert_eq!((t[54], t[55]), (0, 0));
        // A window starting at bus 2: the MCFG keeps bus 0's base and names the buses, the
        // DSDT reserves only their part.
        let e = Ecam {
            base: 0xB000_0000,
            start_bus: 2,
            end_bus: 3,
        };
        assert_eq!(e.window(), (0xB020_0000, 2 << 20));
        // The DSDT reserves the ECAM window (PNP0C02 with Memory32Fixed base, 1 MiB).
        let dsdt = &buf[0x600..0x600 + 36 + ECAM_AML_LEN];
        assert_eq!(
            u32::from_le_bytes(dsdt[4..8].try_into().unwrap()) as usize,
            dsdt.len()
        );
        let aml = &dsdt[36..];
        assert_eq!(aml[1] as usize, aml.len() - 1); // Scope PkgLength
        assert_eq!(aml[8] as usize, aml.len() - 8); // Device PkgLength
        assert!(aml.windows(4).any(|w| w == [0x41, 0xD0, 0x0C, 0x02]));
        let crs = aml.windows(4).position(|w| w == *b"_CRS").unwrap() + 4;
        assert_eq!(aml[crs + 1] as usize, aml.len() - crs - 1); // Buffer PkgLength
        assert_eq!(&aml[crs + 4..crs + 8], &[0x86, 0x09, 0x00, 0x00]);
        assert_eq!(&aml[crs + 8..crs + 12], &0xE000_0000u32.to_le_bytes());
        assert_eq!(&aml[crs + 12..crs + 16], &0x10_0000u32.to_le_bytes());
        assert_eq!(&aml[aml.len() - 2..], &[0x79, 0x00]);
        // Every table checksums to zero.
        for (o, l) in [
            (0x40usize, 68usize),
            (0x520, 56),
            (0x560, 60),
            (0x90, 44 + 24 + 12 + 10),
            (0x400, 276),
            (0x600, 36 + ECAM_AML_LEN),
        ] {
            assert_eq!(checksum(&buf[o..o + l]), 0, "table at {o:#x}");
        }
        assert_eq!(checksum(&buf[..20]), 0);
        assert_eq!(checksum(&buf[..36]), 0);
    }

    /// A PkgLength at `b`: (the length it encodes, how many bytes it takes).
    fn read_pkg_length(b: &[u8]) -> (usize, usize) {
        let extra = (b[0] >> 6) as usize;
        if extra == 0 {
            return ((b[0] & 0x3F) as usize, 1);
        }
        let mut len = (b[0] & 0xF) as usize;
        for (k, byte) in b[1..=extra].iter().enumerate() {
            len |= (*byte as usize) << (4 + 8 * k);
        }
        (len, 1 + extra)
    }

    /// An AML integer at `b`: (value, bytes taken).
    fn read_integer(b: &[u8]) -> (u64, usize) {
        let le = |n: usize| {
            let mut v = [0u8; 8];
            v[..n].copy_from_slice(&b[1..1 + n]);
            (u64::from_le_bytes(v), 1 + n)
        };
        match b[0] {
            0x00 => (0, 1),
            0x01 => (1, 1),
            0x0A => le(1),
            0x0B => le(2),
            0x0C => le(4),
            0x0E => le(8),
            other => panic!("not an integer: {other:#x}"),
        }
    }

    fn dsdt_with_root(root: PciRoot<'_>) -> Vec<u8> {
        let mut buf = [0u8; GUEST_TABLES_SIZE];
        build_guest_tables(
            &mut buf,
            GUEST_RSDP_GPA,
            &GuestPlatform {
                vcpus: 1,
                mcfg: Some(Ecam {
                    base: 0xE000_0000,
                    start_bus: 0,
                    end_bus: 0,
                }),
                com: Some((0x3F8, 4)),
                link_uarts: [Some((0x2F8, 3)), None, None, None],
                pci_root: Some(root),
                ..GuestPlatform::default()
            },
        );
        let d = &buf[0x600..];
        let len = u32::from_le_bytes(d[4..8].try_into().unwrap()) as usize;
        assert!(0x600 + len <= GUEST_TABLES_SIZE);
        assert_eq!(checksum(&d[..len]), 0);
        d[..len].to_vec()
    }

    #[test]
    fn dsdt_describes_the_pci_root_bridge() {
        static ROUTES: [IntxRoute; 3] = [
            IntxRoute {
                device: 2,
                pin: 0,
                gsi: 22,
            },
            IntxRoute {
                device: 2,
                pin: 1,
                gsi: 1,
            },
            IntxRoute {
                device: 31,
                pin: 3,
                gsi: 300,
            },
        ];
        let d = dsdt_with_root(PciRoot {
            first_bus: 0,
            last_bus: 0,
            mmio: &[(0x8000_0000, 0xDFFF_FFFF), (0x40_0000_0000, 0x7F_FFFF_FFFF)],
            intx_routes: &ROUTES,
        });
        // The link UART is COM2 at 0x2F8, IRQ 3, after the console's COM1.
        let com2 = &d[36 + ECAM_AML_LEN + 53..36 + ECAM_AML_LEN + 2 * 53];
        assert_eq!(com2[7..14], [0x5B, 0x82, 44, b'C', b'O', b'M', b'2']);
        assert_eq!(com2[24..31], [0x08, b'_', b'U', b'I', b'D', 0x0A, 2]);
        assert_eq!(
            com2[40..48],
            [0x47, 0x01, 0xF8, 0x02, 0xF8, 0x02, 0x01, 0x08]
        );
        assert_eq!(com2[48..51], [0x22, 0x08, 0x00]);
        let aml = &d[36 + ECAM_AML_LEN + 2 * 53..];
        // Scope (\_SB) and Device (PCI0): PkgLengths that cover exactly the rest of the AML.
        assert_eq!(aml[0], 0x10);
        let (scope_len, n) = read_pkg_length(&aml[1..]);
        assert_eq!(scope_len, aml.len() - 1);
        assert_eq!(&aml[1 + n..6 + n], b"\\_SB_");
        let dev = &aml[6 + n..];
        assert_eq!(dev[..2], [0x5B, 0x82]);
        let (dev_len, m) = read_pkg_length(&dev[2..]);
        assert_eq!(dev_len, dev.len() - 2);
        assert_eq!(&dev[2 + m..6 + m], b"PCI0");
        let at = |s: &[u8]| dev.windows(s.len()).position(|w| w == s);
        let hid = at(b"_HID").unwrap();
        assert_eq!(
            dev[hid + 4..hid + 9],
            [0x0C, 0x41, 0xD0, 0x0A, 0x08],
            "PNP0A08"
        );
        let cid = at(b"_CID").unwrap();
        assert_eq!(
            dev[cid + 4..cid + 9],
            [0x0C, 0x41, 0xD0, 0x0A, 0x03],
            "PNP0A03"
        );
        for name in [b"_SEG", b"_BBN", b"_UID"] {
            let o = at(name).unwrap();
            assert_eq!(
                dev[o - 1..o + 5],
                [0x08, name[0], name[1], name[2], name[3], 0x00]
            );
        }
        // _CRS: a buffer whose size and PkgLength match the resource template.
        let crs = at(b"_CRS").unwrap() + 4;
        assert_eq!(dev[crs], 0x11);
        let (buf_len, k) = read_pkg_length(&dev[crs + 1..]);
        let (size, s) = read_integer(&dev[crs + 1 + k..]);
        let t = &dev[crs + 1 + k + s..crs + 1 + buf_len];
        assert_eq!(t.len(), size as usize);
        // Walk the large resource descriptors up to the end tag.
        let mut kinds = Vec::new();
        let mut o = 0;
        while t[o] != 0x79 {
            let dlen = u16::from_le_bytes([t[o + 1], t[o + 2]]) as usize;
            kinds.push((t[o], t[o + 3], t[o + 4]));
            let body = &t[o + 3..o + 3 + dlen];
            match t[o] {
                0x88 => {
                    let w = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
                    // min, max, length agree.
                    assert_eq!(w(7).wrapping_sub(w(5)).wrapping_add(1), w(11));
                }
                0x87 => {
                    let d = |i: usize| u32::from_le_bytes(body[i..i + 4].try_into().unwrap());
                    assert_eq!(
                        (d(7), d(11), d(19)),
                        (0x8000_0000, 0xDFFF_FFFF, 0x6000_0000)
                    );
                }
                0x8A => {
                    let q = |i: usize| u64::from_le_bytes(body[i..i + 8].try_into().unwrap());
                    assert_eq!(
                        (q(11), q(19), q(35)),
                        (0x40_0000_0000, 0x7F_FFFF_FFFF, 0x40_0000_0000)
                    );
                }
                other => panic!("unexpected descriptor {other:#x}"),
            }
            o += 3 + dlen;
        }
        assert_eq!(&t[o..], &[0x79, 0x00]);
        // Bus numbers, two I/O ranges, 32-bit and 64-bit memory: all producers with fixed
        // bounds (general flags 0x0C).
        assert_eq!(
            kinds,
            [
                (0x88, 2, 0x0C),
                (0x88, 1, 0x0C),
                (0x88, 1, 0x0C),
                (0x87, 0, 0x0C),
                (0x8A, 0, 0x0C),
            ]
        );
        let io = |o: usize| u16::from_le_bytes([t[o], t[o + 1]]);
        assert_eq!((io(16 + 8), io(16 + 10)), (0, 0xCF7));
        assert_eq!((io(32 + 8), io(32 + 10)), (0xD00, 0xFFFF));
        assert_eq!((io(8), io(10)), (0, 0), "bus 0 only");
        // _PRT: a package of (address, pin, source, GSI) packages, in the order given.
        let prt = at(b"_PRT").unwrap() + 4;
        assert_eq!(dev[prt], 0x12);
        let (pkg_len, k) = read_pkg_length(&dev[prt + 1..]);
        assert_eq!(prt + 1 + pkg_len, dev.len(), "_PRT ends the device");
        assert_eq!(dev[prt + 1 + k], ROUTES.len() as u8);
        let mut o = prt + 2 + k;
        for r in &ROUTES {
            assert_eq!(dev[o], 0x12);
            let (len, k) = read_pkg_length(&dev[o + 1..]);
            let end = o + 1 + len;
            let mut e = o + 1 + k;
            assert_eq!(dev[e], 4, "four elements");
            e += 1;
            let mut next = || {
                let (v, n) = read_integer(&dev[e..]);
                e += n;
                v
            };
            let got = [next(), next(), next(), next()];
            assert_eq!(
                got,
                [
                    (u64::from(r.device) << 16) | 0xFFFF,
                    u64::from(r.pin),
                    0,
                    u64::from(r.gsi)
                ]
            );
            assert_eq!(e, end);
            o = end;
        }
        assert_eq!(o, dev.len());
    }

    #[test]
    fn a_root_without_routes_has_no_prt_and_the_largest_fits() {
        let d = dsdt_with_root(PciRoot {
            first_bus: 0,
            last_bus: 255,
            mmio: &[(0xA_0000, 0xB_FFFF)],
            intx_routes: &[],
        });
        assert!(d.windows(4).any(|w| w == b"PCI0"));
        assert!(
            !d.windows(4).any(|w| w == b"_PRT"),
            "MSI-only functions need no routing"
        );
        // Every device and pin of the root bus routed, the most windows and then some.
        static ALL: [IntxRoute; 128] = {
            let mut all = [IntxRoute {
                device: 0,
                pin: 0,
                gsi: 0,
            }; 128];
            let mut i = 0;
            while i < 128 {
                all[i] = IntxRoute {
                    device: (i / 4) as u8,
                    pin: (i % 4) as u8,
                    gsi: 0x1_0000 + i as u32,
                };
                i += 1;
            }
            all
        };
        static WINDOWS: [(u64, u64); MAX_PCI_WINDOWS + 2] =
            [(1 << 40, (1 << 41) - 1); MAX_PCI_WINDOWS + 2];
        let d = dsdt_with_root(PciRoot {
            first_bus: 0,
            last_bus: 255,
            mmio: &WINDOWS,
            intx_routes: &ALL,
        });
        let prt = d.windows(4).position(|w| w == b"_PRT").expect("_PRT") + 4;
        let (_, k) = read_pkg_length(&d[prt + 1..]);
        assert_eq!(d[prt + 1 + k], 128);
        let qwords = d.windows(3).filter(|w| *w == [0x8A, 0x2B, 0x00]).count();
        assert_eq!(qwords, MAX_PCI_WINDOWS);
    }

    fn tables(pm: Option<PmTimer>) -> Mem {
        let mut buf = [0u8; GUEST_TABLES_SIZE];
        build_guest_tables(
            &mut buf,
            GUEST_RSDP_GPA,
            &GuestPlatform {
                vcpus: 1,
                pm_timer: pm,
                ..GuestPlatform::default()
            },
        );
        Mem(GUEST_RSDP_GPA, buf.to_vec())
    }

    #[test]
    fn pm_timer_from_legacy_field_or_absent() {
        let pm = PmTimer {
            port: 0xB008,
            ext32: false,
        };
        let mut m = tables(Some(pm));
        assert_eq!(pm_timer(&m, GUEST_RSDP_GPA), Some(pm));
        // Without X_PM_TMR_BLK the 32-bit PM_TMR_BLK is used...
        let x = 0x400 + FADT_X_PM_TMR_BLK;
        m.1[x..x + 12].fill(0);
        assert_eq!(pm_timer(&m, GUEST_RSDP_GPA), Some(pm));
        // ...but only when it is 4 ports long.
        m.1[0x400 + FADT_PM_TMR_LEN] = 0;
        assert_eq!(pm_timer(&m, GUEST_RSDP_GPA), None);
        // A memory-mapped X_PM_TMR_BLK is not a port.
        let mut m = tables(Some(pm));
        m.1[x] = 0;
        m.1[0x400 + FADT_PM_TMR_LEN] = 0;
        assert_eq!(pm_timer(&m, GUEST_RSDP_GPA), None);
        assert_eq!(pm_timer(&tables(None), GUEST_RSDP_GPA), None);
    }
}
