//! Pure parsers for the ACPI tables the board file needs (MADT, MCFG, FADT, FACS, DMAR, IVRS,
//! HPET, and the `_S3_`/`_S5_` packages of the DSDT). Each takes the whole table as Linux
//! exports it in /sys/firmware/acpi/tables and never panics: a short or inconsistent table is an
//! [`AcpiError`], an unknown sub-structure is skipped.

/// Why a table could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("{table}: {len} bytes, shorter than its {need}-byte fixed part")]
    Short {
        table: &'static str,
        len: usize,
        need: usize,
    },
    #[error("{table}: signature is `{found}`")]
    Signature { table: &'static str, found: String },
    #[error("{table}: header length {header} does not match the {actual} bytes read")]
    Length {
        table: &'static str,
        header: u32,
        actual: usize,
    },
    #[error("{table}: structure at offset {offset} has length {len}, which does not fit")]
    Structure {
        table: &'static str,
        offset: usize,
        len: usize,
    },
}

const HEADER_LEN: usize = 36;

fn u8_at(b: &[u8], o: usize) -> Option<u8> {
    b.get(o).copied()
}
fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The standard header: checks signature and length, returns the revision and the table
/// trimmed to its header length.
fn table<'a>(
    name: &'static str,
    sig: &[u8; 4],
    bytes: &'a [u8],
    fixed: usize,
) -> Result<(&'a [u8], u8), AcpiError> {
    if bytes.len() < HEADER_LEN.max(fixed) {
        return Err(AcpiError::Short {
            table: name,
            len: bytes.len(),
            need: HEADER_LEN.max(fixed),
        });
    }
    if &bytes[..4] != sig {
        return Err(AcpiError::Signature {
            table: name,
            found: String::from_utf8_lossy(&bytes[..4]).into_owned(),
        });
    }
    let len = u32_at(bytes, 4).unwrap_or(0);
    let ulen = usize::try_from(len).unwrap_or(usize::MAX);
    if ulen < HEADER_LEN.max(fixed) || ulen > bytes.len() {
        return Err(AcpiError::Length {
            table: name,
            header: len,
            actual: bytes.len(),
        });
    }
    Ok((&bytes[..ulen], bytes[8]))
}

/// Walks `type, length` sub-structures from `start`; `hdr` is the size of the type/length
/// fields (2 for MADT: u8+u8, 4 for DMAR: u16+u16).
fn structures<'a>(
    name: &'static str,
    t: &'a [u8],
    start: usize,
    wide: bool,
) -> Result<Vec<(u16, &'a [u8])>, AcpiError> {
    let mut out = Vec::new();
    let mut o = start;
    while o < t.len() {
        let (ty, len) = if wide {
            (u16_at(t, o), u16_at(t, o + 2).map(usize::from))
        } else {
            (u8_at(t, o).map(u16::from), u8_at(t, o + 1).map(usize::from))
        };
        let min = if wide { 4 } else { 2 };
        match (ty, len) {
            (Some(ty), Some(len)) if len >= min && o + len <= t.len() => {
                out.push((ty, &t[o..o + len]));
                o += len;
            }
            _ => {
                return Err(AcpiError::Structure {
                    table: name,
                    offset: o,
                    len: len.unwrap_or(0),
                })
            }
        }
    }
    Ok(out)
}

/// An I/O APIC of the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtIoapic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

/// An interrupt source override of the MADT (an ISA IRQ routed to another GSI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptOverride {
    pub bus: u8,
    pub source: u8,
    pub gsi: u32,
    pub flags: u16,
}

/// A local APIC (or x2APIC) entry of the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadtLapic {
    pub processor_uid: u32,
    pub apic_id: u32,
    pub enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Madt {
    pub revision: u8,
    pub lapic_address: u32,
    pub lapics: Vec<MadtLapic>,
    pub ioapics: Vec<MadtIoapic>,
    pub overrides: Vec<InterruptOverride>,
}

/// MADT (`APIC`).
pub fn parse_madt(bytes: &[u8]) -> Result<Madt, AcpiError> {
    let (t, revision) = table("MADT", b"APIC", bytes, 44)?;
    let mut m = Madt {
        revision,
        lapic_address: u32_at(t, 36).unwrap_or(0),
        ..Madt::default()
    };
    for (ty, s) in structures("MADT", t, 44, false)? {
        match ty {
            0 if s.len() >= 8 => m.lapics.push(MadtLapic {
                processor_uid: u32::from(s[2]),
                apic_id: u32::from(s[3]),
                enabled: u32_at(s, 4).unwrap_or(0) & 1 != 0,
            }),
            1 if s.len() >= 12 => m.ioapics.push(MadtIoapic {
                id: s[2],
                address: u32_at(s, 4).unwrap_or(0),
                gsi_base: u32_at(s, 8).unwrap_or(0),
            }),
            2 if s.len() >= 10 => m.overrides.push(InterruptOverride {
                bus: s[2],
                source: s[3],
                gsi: u32_at(s, 4).unwrap_or(0),
                flags: u16_at(s, 8).unwrap_or(0),
            }),
            9 if s.len() >= 16 => m.lapics.push(MadtLapic {
                apic_id: u32_at(s, 4).unwrap_or(0),
                enabled: u32_at(s, 8).unwrap_or(0) & 1 != 0,
                processor_uid: u32_at(s, 12).unwrap_or(0),
            }),
            _ => {}
        }
    }
    Ok(m)
}

/// One ECAM window of the MCFG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McfgEntry {
    pub base: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

/// MCFG: the PCI ECAM windows.
pub fn parse_mcfg(bytes: &[u8]) -> Result<Vec<McfgEntry>, AcpiError> {
    let (t, _) = table("MCFG", b"MCFG", bytes, 44)?;
    Ok(t[44..]
        .chunks_exact(16)
        .map(|e| McfgEntry {
            base: u64_at(e, 0).unwrap_or(0),
            segment: u16_at(e, 8).unwrap_or(0),
            bus_start: e[10],
            bus_end: e[11],
        })
        .collect())
}

/// A Generic Address Structure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gas {
    pub space_id: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

fn gas_at(b: &[u8], o: usize) -> Option<Gas> {
    Some(Gas {
        space_id: u8_at(b, o)?,
        bit_width: u8_at(b, o + 1)?,
        bit_offset: u8_at(b, o + 2)?,
        access_size: u8_at(b, o + 3)?,
        address: u64_at(b, o + 4)?,
    })
}

/// What the board file takes from the FADT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fadt {
    pub revision: u8,
    pub facs: u64,
    pub dsdt: u64,
    pub pm1a_evt: Gas,
    pub pm1b_evt: Gas,
    pub pm1a_cnt: Gas,
    pub pm1b_cnt: Gas,
    /// `None` when the table is too short to have one (ACPI 1.0).
    pub reset_reg: Option<Gas>,
    pub reset_value: u8,
}

/// A legacy 32-bit I/O block of `len` bytes as a GAS (what ACPI 1.0 tables give).
fn legacy_block(address: u32, len: u8) -> Gas {
    if address == 0 {
        return Gas::default();
    }
    Gas {
        space_id: 1,
        bit_width: len.saturating_mul(8),
        bit_offset: 0,
        access_size: 0,
        address: u64::from(address),
    }
}

/// FADT (`FACP`): PM1 blocks (the 64-bit X_ fields where present, else the 32-bit ones),
/// reset register, FACS and DSDT addresses.
pub fn parse_fadt(bytes: &[u8]) -> Result<Fadt, AcpiError> {
    let (t, revision) = table("FADT", b"FACP", bytes, 116)?;
    let x_field = |o: usize| gas_at(t, o).filter(|g| g.address != 0);
    let evt_len = u8_at(t, 88).unwrap_or(0);
    let cnt_len = u8_at(t, 89).unwrap_or(0);
    let pick = |x: usize, legacy: usize, len: u8| {
        x_field(x).unwrap_or_else(|| legacy_block(u32_at(t, legacy).unwrap_or(0), len))
    };
    let facs = u64_at(t, 132)
        .filter(|v| *v != 0)
        .unwrap_or_else(|| u64::from(u32_at(t, 36).unwrap_or(0)));
    let dsdt = u64_at(t, 140)
        .filter(|v| *v != 0)
        .unwrap_or_else(|| u64::from(u32_at(t, 40).unwrap_or(0)));
    Ok(Fadt {
        revision,
        facs,
        dsdt,
        pm1a_evt: pick(148, 56, evt_len),
        pm1b_evt: pick(160, 60, evt_len),
        pm1a_cnt: pick(172, 64, cnt_len),
        pm1b_cnt: pick(184, 68, cnt_len),
        reset_reg: gas_at(t, 116),
        reset_value: u8_at(t, 128).unwrap_or(0),
    })
}

/// FACS has no standard header: signature, then its length.
pub fn check_facs(bytes: &[u8]) -> Result<(), AcpiError> {
    if bytes.len() < 32 {
        return Err(AcpiError::Short {
            table: "FACS",
            len: bytes.len(),
            need: 32,
        });
    }
    if &bytes[..4] != b"FACS" {
        return Err(AcpiError::Signature {
            table: "FACS",
            found: String::from_utf8_lossy(&bytes[..4]).into_owned(),
        });
    }
    Ok(())
}

/// A DMAR device scope: the device type (1 endpoint, 2 bridge, 3 IOAPIC, 4 HPET, 5 ACPI
/// namespace device), enumeration id, start bus and the (device, function) path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceScope {
    pub kind: u8,
    pub enumeration_id: u8,
    pub bus: u8,
    pub path: Vec<(u8, u8)>,
}

/// A DMA remapping hardware unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drhd {
    pub flags: u8,
    pub segment: u16,
    pub register_base: u64,
    pub scopes: Vec<DeviceScope>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmar {
    pub host_address_width: u8,
    pub flags: u8,
    pub drhds: Vec<Drhd>,
}

/// DMAR: the DRHD units and their device scopes (RMRR, ATSR, ... are skipped).
pub fn parse_dmar(bytes: &[u8]) -> Result<Dmar, AcpiError> {
    let (t, _) = table("DMAR", b"DMAR", bytes, 48)?;
    let mut d = Dmar {
        host_address_width: t[36].saturating_add(1),
        flags: t[37],
        drhds: Vec::new(),
    };
    for (ty, s) in structures("DMAR", t, 48, true)? {
        if ty != 0 || s.len() < 16 {
            continue;
        }
        let mut scopes = Vec::new();
        let mut o = 16;
        while o + 6 <= s.len() {
            let len = usize::from(s[o + 1]);
            if len < 6 || o + len > s.len() {
                return Err(AcpiError::Structure {
                    table: "DMAR",
                    offset: o,
                    len,
                });
            }
            let sc = &s[o..o + len];
            scopes.push(DeviceScope {
                kind: sc[0],
                enumeration_id: sc[4],
                bus: sc[5],
                path: sc[6..].chunks_exact(2).map(|p| (p[0], p[1])).collect(),
            });
            o += len;
        }
        d.drhds.push(Drhd {
            flags: s[4],
            segment: u16_at(s, 6).unwrap_or(0),
            register_base: u64_at(s, 8).unwrap_or(0),
            scopes,
        });
    }
    Ok(d)
}

/// An AMD IOMMU (IVHD block of the IVRS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ivhd {
    pub kind: u8,
    pub device_id: u16,
    pub base_address: u64,
    pub segment: u16,
}

/// IVRS: the IOMMUs (IVHD types 0x10, 0x11, 0x40); memory definitions are skipped.
pub fn parse_ivrs(bytes: &[u8]) -> Result<Vec<Ivhd>, AcpiError> {
    let (t, _) = table("IVRS", b"IVRS", bytes, 48)?;
    let mut out = Vec::new();
    let mut o = 48;
    while o + 4 <= t.len() {
        let kind = t[o];
        let len = usize::from(u16_at(t, o + 2).unwrap_or(0));
        if len < 4 || o + len > t.len() {
            return Err(AcpiError::Structure {
                table: "IVRS",
                offset: o,
                len,
            });
        }
        let s = &t[o..o + len];
        if matches!(kind, 0x10 | 0x11 | 0x40) && s.len() >= 24 {
            out.push(Ivhd {
                kind,
                device_id: u16_at(s, 4).unwrap_or(0),
                base_address: u64_at(s, 8).unwrap_or(0),
                segment: u16_at(s, 16).unwrap_or(0),
            });
        }
        o += len;
    }
    Ok(out)
}

/// HPET: the timer block's address (always memory space in practice) and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hpet {
    pub address: Gas,
    pub number: u8,
}

pub fn parse_hpet(bytes: &[u8]) -> Result<Hpet, AcpiError> {
    let (t, _) = table("HPET", b"HPET", bytes, 56)?;
    Ok(Hpet {
        address: gas_at(t, 40).unwrap_or_default(),
        number: t[52],
    })
}

/// The values of a sleep-state package (`Name (_S5_, Package () {PM1a, PM1b, ...})`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepPackage {
    pub pm1a: u8,
    pub pm1b: u8,
}

/// Finds `Name(_Sx_, Package(){...})` in AML (a DSDT or SSDT) by its byte pattern, as an AML
/// interpreter is out of scope: NameOp `_Sx_` PackageOp PkgLength NumElements, then the first
/// two elements as ZeroOp / OneOp / BytePrefix n.
pub fn find_sleep_package(aml: &[u8], state: u8) -> Option<SleepPackage> {
    let name = [b'_', b'S', b'0' + state.min(9), b'_'];
    let mut from = 0;
    while let Some(pos) = aml
        .get(from..)?
        .windows(4)
        .position(|w| w == name)
        .map(|p| p + from)
    {
        from = pos + 1;
        // Preceded by NameOp (0x08), optionally with a root/parent prefix.
        let named = pos >= 1 && aml[pos - 1] == 0x08
            || pos >= 2 && aml[pos - 2] == 0x08 && matches!(aml[pos - 1], b'\\' | b'^');
        if !named || aml.get(pos + 4) != Some(&0x12) {
            continue;
        }
        let lead = *aml.get(pos + 5)?;
        let pkg_len_bytes = 1 + usize::from(lead >> 6);
        let mut o = pos + 5 + pkg_len_bytes + 1; // + NumElements
        let mut value = || -> Option<u8> {
            let v = match *aml.get(o)? {
                0x00 => (0, 1),
                0x01 => (1, 1),
                0x0a => (*aml.get(o + 1)?, 2),
                0xff => (0xff, 1),
                _ => return None,
            };
            o += v.1;
            Some(v.0)
        };
        if let (Some(pm1a), Some(pm1b)) = (value(), value()) {
            return Some(SleepPackage { pm1a, pm1b });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_bytes(sig: &[u8; 4], rev: u8, body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
        t.push(rev);
        t.resize(36, 0);
        t.extend_from_slice(body);
        t
    }

    #[test]
    fn madt_ioapic_override_lapics() {
        let mut body = vec![0, 0, 0xe0, 0xfe, 1, 0, 0, 0];
        body.extend([0, 8, 0, 0, 1, 0, 0, 0]); // LAPIC uid 0 apic 0 enabled
        body.extend([0, 8, 1, 2, 0, 0, 0, 0]); // LAPIC uid 1 apic 2 disabled
        body.extend([1, 12, 4, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
        body.extend([2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend([0x7f, 3, 9]); // unknown type: skipped
        let m = parse_madt(&table_bytes(b"APIC", 3, &body)).unwrap();
        assert_eq!(m.lapic_address, 0xfee0_0000);
        assert_eq!(m.lapics.len(), 2);
        assert!(!m.lapics[1].enabled);
        assert_eq!(
            m.ioapics,
            [MadtIoapic {
                id: 4,
                address: 0xfec0_0000,
                gsi_base: 0
            }]
        );
        assert_eq!((m.overrides[0].source, m.overrides[0].gsi), (0, 2));
    }

    #[test]
    fn madt_errors() {
        assert!(matches!(parse_madt(b"APIC"), Err(AcpiError::Short { .. })));
        let mut t = table_bytes(b"APIC", 1, &[0; 8]);
        t.extend([1, 40]); // structure longer than the table
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(parse_madt(&t), Err(AcpiError::Structure { .. })));
        let mut bad = table_bytes(b"APIC", 1, &[0; 8]);
        bad[4] = 0xff;
        assert!(matches!(parse_madt(&bad), Err(AcpiError::Length { .. })));
        assert!(matches!(
            parse_madt(&table_bytes(b"XSDT", 1, &[0; 8])),
            Err(AcpiError::Signature { .. })
        ));
    }

    #[test]
    fn mcfg_and_hpet() {
        let mut body = vec![0; 8];
        body.extend(0xb000_0000u64.to_le_bytes());
        body.extend([0, 0, 0, 0xff, 0, 0, 0, 0]);
        let m = parse_mcfg(&table_bytes(b"MCFG", 1, &body)).unwrap();
        assert_eq!(m[0].base, 0xb000_0000);
        assert_eq!(m[0].bus_end, 0xff);
        let mut hb = vec![0; 4];
        hb.extend([0, 64, 0, 0]);
        hb.extend(0xfed0_0000u64.to_le_bytes());
        hb.extend([0, 0, 0, 0, 0, 0, 0, 0]);
        let h = parse_hpet(&table_bytes(b"HPET", 1, &hb)).unwrap();
        assert_eq!(h.address.address, 0xfed0_0000);
    }

    #[test]
    fn fadt_x_fields_and_legacy_fallback() {
        let mut body = vec![0; 244 - 36];
        let put32 =
            |b: &mut Vec<u8>, o: usize, v: u32| b[o - 36..o - 32].copy_from_slice(&v.to_le_bytes());
        put32(&mut body, 36, 0x7ffe_0000);
        put32(&mut body, 56, 0x600);
        put32(&mut body, 64, 0x604);
        body[88 - 36] = 4;
        body[89 - 36] = 2;
        body[116 - 36] = 1;
        body[117 - 36] = 8;
        body[120 - 36..128 - 36].copy_from_slice(&0xcf9u64.to_le_bytes());
        body[128 - 36] = 0xf;
        let f = parse_fadt(&table_bytes(b"FACP", 3, &body)).unwrap();
        assert_eq!(f.facs, 0x7ffe_0000);
        assert_eq!(
            (
                f.pm1a_evt.space_id,
                f.pm1a_evt.bit_width,
                f.pm1a_evt.address
            ),
            (1, 32, 0x600)
        );
        assert_eq!(f.pm1a_cnt.bit_width, 16);
        assert_eq!(f.pm1b_evt, Gas::default());
        assert_eq!(f.reset_reg.unwrap().address, 0xcf9);
        assert_eq!(f.reset_value, 0xf);
    }

    #[test]
    fn dmar_units_and_scopes() {
        let mut body = vec![38, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // DRHD, length 16 + 8 (one scope: IOAPIC id 0, bus 0xff, path 00.0)
        body.extend([0, 0, 24, 0, 1, 0, 0, 0]);
        body.extend(0xfed9_0000u64.to_le_bytes());
        body.extend([3, 8, 0, 0, 0, 0xff, 0, 0]);
        body.extend([1, 0, 8, 0, 0, 0, 0, 0]); // RMRR stub: skipped
        let d = parse_dmar(&table_bytes(b"DMAR", 1, &body)).unwrap();
        assert_eq!(d.host_address_width, 39);
        assert_eq!(d.drhds.len(), 1);
        assert_eq!(d.drhds[0].register_base, 0xfed9_0000);
        assert_eq!(d.drhds[0].scopes[0].kind, 3);
        assert_eq!(d.drhds[0].scopes[0].path, [(0, 0)]);
    }

    #[test]
    fn ivrs_units() {
        let mut body = vec![0; 12];
        body.extend([0x10, 0, 24, 0, 2, 0, 0x40, 0]);
        body.extend(0xfeb8_0000u64.to_le_bytes());
        body.extend([0; 8]);
        body.extend([0x20, 0, 8, 0, 0, 0, 0, 0]); // memory definition: skipped
        let u = parse_ivrs(&table_bytes(b"IVRS", 2, &body)).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!(
            (u[0].kind, u[0].device_id, u[0].base_address),
            (0x10, 2, 0xfeb8_0000)
        );
        let mut bad = body.clone();
        bad[14] = 200; // IVHD length past the end
        assert!(matches!(
            parse_ivrs(&table_bytes(b"IVRS", 2, &bad)),
            Err(AcpiError::Structure { .. })
        ));
    }

    #[test]
    fn sleep_packages() {
        // Name (_S5_, Package (0x04) { 0x07, Zero, Zero, Zero })
        let aml = [
            0x10, 0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04, 0x0a, 0x07, 0x00, 0x00, 0x00,
        ];
        assert_eq!(
            find_sleep_package(&aml, 5),
            Some(SleepPackage { pm1a: 7, pm1b: 0 })
        );
        assert_eq!(find_sleep_package(&aml, 3), None);
        assert_eq!(find_sleep_package(&aml[..10], 5), None);
    }

    #[test]
    fn parsers_survive_truncation() {
        let mut body = vec![0u8; 300];
        for (i, b) in body.iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        for sig in [b"APIC", b"MCFG", b"FACP", b"DMAR", b"IVRS", b"HPET"] {
            let t = table_bytes(sig, 2, &body);
            for n in 0..t.len() {
                let cut = &t[..n];
                let _ = parse_madt(cut);
                let _ = parse_mcfg(cut);
                let _ = parse_fadt(cut);
                let _ = parse_dmar(cut);
                let _ = parse_ivrs(cut);
                let _ = parse_hpet(cut);
                let _ = find_sleep_package(cut, 5);
            }
        }
    }
}
