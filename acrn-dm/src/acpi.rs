//! The User VM's ACPI tables, at ACRN's acrn-dm addresses (`hw/platform/acpi/acpi.c`, the
//! bhyve-derived layout from 0xF2400): RSDP, RSDT, XSDT, MADT (one LAPIC per vCPU, the
//! vIOAPIC, ISA overrides), FADT (PM1a event/control blocks, reset register 0xCF9), FACS, and a
//! DSDT written directly in AML (no iasl): `\_S5` for power-off and `\_SB.PCI0` with its
//! resources and the INTx routing (`_PRT`) of the emulated devices.
//!
//! Linux finds the RSDP by scanning 0xE0000..0xFFFFF (and through the zero page's
//! `acpi_rsdp_addr`, which [`crate::boot`] fills in).

/// Guest-physical address of the RSDP (ACRN's `ACPI_BASE`).
pub const ACPI_BASE: u64 = 0xF2400;
const RSDT_OFFSET: usize = 0x40;
const XSDT_OFFSET: usize = 0x80;
const MADT_OFFSET: usize = 0x100;
const FADT_OFFSET: usize = 0x200;
const FACS_OFFSET: usize = 0x3C0;
const DSDT_OFFSET: usize = 0x400;

/// PM1a event block (status + enable), as ACRN's `PM1A_EVT_ADDR`.
pub const PM1A_EVT_ADDR: u16 = 0x400;
/// PM1a control block, as ACRN's `PM1A_CNT_ADDR`.
pub const PM1A_CNT_ADDR: u16 = 0x404;
/// The reset register (`0xCF9`), value [`RESET_VALUE`].
pub const RESET_PORT: u16 = 0xCF9;
/// What the guest writes to [`RESET_PORT`] to reset.
pub const RESET_VALUE: u8 = 0x06;
/// SLP_TYP of S5 in `\_S5`.
pub const S5_SLP_TYP: u16 = 5;
/// The SCI's IRQ.
pub const SCI_IRQ: u8 = 9;
/// vIOAPIC base.
pub const IOAPIC_ADDR: u32 = 0xFEC0_0000;
/// LAPIC base.
pub const LAPIC_ADDR: u32 = 0xFEE0_0000;
/// The 32-bit PCI memory window (ACRN's `PCI_EMUL_MEMBASE32`..`MEMLIMIT32`).
pub const PCI_MEM32: (u32, u32) = (0x8000_0000, 0xE000_0000);

const OEM_ID: &[u8; 6] = b"ACRN  ";
const OEM_TABLE_ID: &[u8; 8] = b"ACRNDM  ";
const CREATOR: &[u8; 4] = b"RUST";

/// The most vCPUs the MADT at its fixed offset has room for (and ACRN's ioreq page serves).
pub const MAX_VCPUS: usize = 16;

/// One INTx route: PCI device `slot`, pin (0 = INTA), and the vIOAPIC GSI it raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxRoute {
    /// Device number on bus 0.
    pub slot: u8,
    /// 0..=3 for INTA..INTD.
    pub pin: u8,
    /// GSI.
    pub gsi: u32,
}

/// Sum of `bytes`, wrapping: zero for a correctly checksummed table.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

fn header(sig: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = 36 + body.len();
    let mut t = Vec::with_capacity(len);
    t.extend_from_slice(sig);
    t.extend_from_slice(&(len as u32).to_le_bytes());
    t.push(revision);
    t.push(0);
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(CREATOR);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(body);
    t[9] = 0u8.wrapping_sub(checksum(&t));
    t
}

fn addr(offset: usize) -> u64 {
    ACPI_BASE + offset as u64
}

fn rsdp() -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(OEM_ID);
    r[15] = 2;
    r[16..20].copy_from_slice(&(addr(RSDT_OFFSET) as u32).to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&addr(XSDT_OFFSET).to_le_bytes());
    r[8] = 0u8.wrapping_sub(checksum(&r[..20]));
    r[32] = 0u8.wrapping_sub(checksum(&r));
    r
}

fn madt(vcpus: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: there are 8259s
    for i in 0..vcpus as u8 {
        // Processor Local APIC: UID i, APIC ID i (ACRN gives a User VM's vCPU n LAPIC ID n).
        b.extend_from_slice(&[0, 8, i, i, 1, 0, 0, 0]);
    }
    // I/O APIC: ID 0, GSI base 0.
    b.extend_from_slice(&[1, 12, 0, 0]);
    b.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    // ISA IRQ 0 -> GSI 2 (conforming); SCI: level, active high.
    b.extend_from_slice(&[2, 10, 0, 0]);
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&[2, 10, 0, SCI_IRQ]);
    b.extend_from_slice(&u32::from(SCI_IRQ).to_le_bytes());
    b.extend_from_slice(&0x000Du16.to_le_bytes());
    // LAPIC NMI on LINT1 of every processor.
    b.extend_from_slice(&[4, 6, 0xFF, 0x05, 0x00, 1]);
    header(b"APIC", 3, &b)
}

fn gas_io(bit_width: u8, address: u64) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O
    g[1] = bit_width;
    g[3] = match bit_width {
        8 => 1,
        16 => 2,
        _ => 3,
    };
    g[4..12].copy_from_slice(&address.to_le_bytes());
    g
}

fn fadt() -> Vec<u8> {
    // ACPI 5.0 FADT: 268 bytes, body from offset 36.
    let mut f = vec![0u8; 268];
    let put32 = |f: &mut Vec<u8>, o: usize, v: u32| f[o..o + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut f, 36, addr(FACS_OFFSET) as u32);
    put32(&mut f, 40, addr(DSDT_OFFSET) as u32);
    f[46..48].copy_from_slice(&u16::from(SCI_IRQ).to_le_bytes());
    // SMI_CMD = 0: the platform is always in ACPI mode, nothing to enable.
    put32(&mut f, 56, u32::from(PM1A_EVT_ADDR));
    put32(&mut f, 64, u32::from(PM1A_CNT_ADDR));
    f[88] = 4; // PM1_EVT_LEN
    f[89] = 2; // PM1_CNT_LEN
               // Flags: WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON as control methods (none), RESET_REG_SUP.
    put32(&mut f, 112, 1 | (1 << 2) | (1 << 4) | (1 << 5) | (1 << 10));
    f[116..128].copy_from_slice(&gas_io(8, u64::from(RESET_PORT)));
    f[128] = RESET_VALUE;
    f[140..148].copy_from_slice(&addr(DSDT_OFFSET).to_le_bytes());
    f[148..160].copy_from_slice(&gas_io(32, u64::from(PM1A_EVT_ADDR)));
    f[172..184].copy_from_slice(&gas_io(16, u64::from(PM1A_CNT_ADDR)));
    header(b"FACP", 5, &f[36..])
}

fn facs() -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[0..4].copy_from_slice(b"FACS");
    f[4..8].copy_from_slice(&64u32.to_le_bytes());
    f[32] = 2; // version
    f
}

/// Minimal AML encoder for what the DSDT needs.
mod aml {
    /// PkgLength: the encoded length counts itself.
    pub fn pkg(content: &[u8]) -> Vec<u8> {
        let n = content.len();
        let mut out = Vec::with_capacity(n + 4);
        if n + 1 < 0x40 {
            out.push((n + 1) as u8);
        } else {
            let (bytes, total) = (2..=4)
                .map(|k| (k, n + k))
                .find(|&(k, total)| total < 1 << (4 + 8 * (k - 1)))
                .expect("AML package under 256 MiB");
            out.push((((bytes - 1) as u8) << 6) | (total & 0xF) as u8);
            for i in 0..bytes - 1 {
                out.push((total >> (4 + 8 * i)) as u8);
            }
        }
        out.extend_from_slice(content);
        out
    }

    pub fn int(v: u64) -> Vec<u8> {
        match v {
            0 => vec![0x00],
            1 => vec![0x01],
            2..=0xFF => vec![0x0A, v as u8],
            0x100..=0xFFFF => [&[0x0B][..], &(v as u16).to_le_bytes()].concat(),
            0x1_0000..=0xFFFF_FFFF => [&[0x0C][..], &(v as u32).to_le_bytes()].concat(),
            _ => [&[0x0E][..], &v.to_le_bytes()].concat(),
        }
    }

    pub fn name(seg: &[u8], value: Vec<u8>) -> Vec<u8> {
        [&[0x08][..], seg, &value].concat()
    }

    pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
        let mut c = vec![elements.len() as u8];
        for e in elements {
            c.extend_from_slice(e);
        }
        [vec![0x12], pkg(&c)].concat()
    }

    pub fn buffer(bytes: &[u8]) -> Vec<u8> {
        let c = [int(bytes.len() as u64), bytes.to_vec()].concat();
        [vec![0x11], pkg(&c)].concat()
    }

    pub fn scope(path: &[u8], body: &[u8]) -> Vec<u8> {
        [vec![0x10], pkg(&[path, body].concat())].concat()
    }

    pub fn device(seg: &[u8], body: &[u8]) -> Vec<u8> {
        [vec![0x5B, 0x82], pkg(&[seg, body].concat())].concat()
    }

    /// `EisaId("PNP0A03")`-style compressed ID.
    pub fn eisa_id(id: &[u8; 7]) -> u32 {
        let l = |c: u8| u32::from(c - 0x40) & 0x1F;
        let hex = |c: u8| (c as char).to_digit(16).expect("hex digit");
        let v = (l(id[0]) << 26)
            | (l(id[1]) << 21)
            | (l(id[2]) << 16)
            | (hex(id[3]) << 12)
            | (hex(id[4]) << 8)
            | (hex(id[5]) << 4)
            | hex(id[6]);
        v.swap_bytes()
    }
}

/// Word/DWord address-space descriptors and the other resource items `_CRS` needs.
fn pci0_crs() -> Vec<u8> {
    let mut r = Vec::new();
    let word = |r: &mut Vec<u8>, kind: u8, tflags: u8, min: u16, max: u16| {
        r.extend_from_slice(&[0x88, 13, 0, kind, 0x0C, tflags]);
        for v in [0u16, min, max, 0, max - min + 1] {
            r.extend_from_slice(&v.to_le_bytes());
        }
    };
    word(&mut r, 2, 0, 0, 0xFF); // bus numbers
    r.extend_from_slice(&[0x47, 1, 0xF8, 0x0C, 0xF8, 0x0C, 1, 8]); // IO 0xCF8, 8 ports
    word(&mut r, 1, 3, 0, 0x0CF7);
    word(&mut r, 1, 3, 0x0D00, 0xFFFF);
    let dword = |r: &mut Vec<u8>, min: u32, max: u32| {
        r.extend_from_slice(&[0x87, 23, 0, 0, 0x0C, 0x01]);
        for v in [0u32, min, max, 0, max - min + 1] {
            r.extend_from_slice(&v.to_le_bytes());
        }
    };
    dword(&mut r, 0xA_0000, 0xB_FFFF);
    dword(&mut r, PCI_MEM32.0, PCI_MEM32.1 - 1);
    r.extend_from_slice(&[0x79, 0]);
    r
}

fn dsdt(routes: &[IntxRoute]) -> Vec<u8> {
    use aml::*;
    let s5 = name(
        b"_S5_",
        package(&[int(S5_SLP_TYP.into()), int(0), int(0), int(0)]),
    );
    let prt: Vec<Vec<u8>> = routes
        .iter()
        .map(|r| {
            package(&[
                // A value that is not 0/1/byte-sized must stay a DWord address.
                [
                    &[0x0C][..],
                    &((u32::from(r.slot) << 16) | 0xFFFF).to_le_bytes(),
                ]
                .concat(),
                int(r.pin.into()),
                int(0),
                int(r.gsi.into()),
            ])
        })
        .collect();
    let mut pci0 = Vec::new();
    pci0.extend(name(
        b"_HID",
        [&[0x0C][..], &eisa_id(b"PNP0A03").to_le_bytes()].concat(),
    ));
    pci0.extend(name(b"_ADR", int(0)));
    pci0.extend(name(b"_UID", int(0)));
    pci0.extend(name(b"_CRS", buffer(&pci0_crs())));
    pci0.extend(name(b"_PRT", package(&prt)));
    let sb = scope(b"\\_SB_", &device(b"PCI0", &pci0));
    header(b"DSDT", 2, &[s5, sb].concat())
}

/// All tables as one blob to copy to [`ACPI_BASE`].
pub fn build(vcpus: usize, routes: &[IntxRoute]) -> Vec<u8> {
    assert!(
        (1..=MAX_VCPUS).contains(&vcpus),
        "vCPU count checked by the caller"
    );
    let madt = madt(vcpus);
    let fadt = fadt();
    let dsdt = dsdt(routes);
    let tables = [addr(MADT_OFFSET), addr(FADT_OFFSET)];
    let rsdt_body: Vec<u8> = tables
        .iter()
        .flat_map(|a| (*a as u32).to_le_bytes())
        .collect();
    let xsdt_body: Vec<u8> = tables.iter().flat_map(|a| a.to_le_bytes()).collect();
    let mut blob = vec![0u8; DSDT_OFFSET + dsdt.len()];
    for (off, t) in [
        (0, rsdp()),
        (RSDT_OFFSET, header(b"RSDT", 1, &rsdt_body)),
        (XSDT_OFFSET, header(b"XSDT", 1, &xsdt_body)),
        (MADT_OFFSET, madt),
        (FADT_OFFSET, fadt),
        (FACS_OFFSET, facs()),
        (DSDT_OFFSET, dsdt),
    ] {
        blob[off..off + t.len()].copy_from_slice(&t);
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_at(blob: &[u8], gpa: u64) -> &[u8] {
        let off = (gpa - ACPI_BASE) as usize;
        let len = u32::from_le_bytes(blob[off + 4..off + 8].try_into().unwrap()) as usize;
        &blob[off..off + len]
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    #[test]
    fn rsdp_xsdt_chain_and_checksums() {
        let blob = build(2, &[]);
        let r = &blob[..36];
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(checksum(&r[..20]), 0);
        assert_eq!(checksum(r), 0);
        assert_eq!(r[15], 2);
        let xsdt = table_at(&blob, u64_at(r, 24));
        assert_eq!(&xsdt[..4], b"XSDT");
        assert_eq!(checksum(xsdt), 0);
        let rsdt = table_at(&blob, u32_at(r, 16).into());
        assert_eq!(&rsdt[..4], b"RSDT");
        assert_eq!(checksum(rsdt), 0);
        let sigs: Vec<&[u8]> = (0..2)
            .map(|i| &table_at(&blob, u64_at(xsdt, 36 + 8 * i))[..4])
            .collect();
        assert_eq!(sigs, [b"APIC", b"FACP"]);
        // The tables do not overlap each other.
        let madt = table_at(&blob, ACPI_BASE + MADT_OFFSET as u64);
        assert!(MADT_OFFSET + madt.len() <= FADT_OFFSET);
        const { assert!(FADT_OFFSET + 268 <= FACS_OFFSET) };
        assert_eq!(
            (ACPI_BASE + FACS_OFFSET as u64) % 64,
            0,
            "FACS is 64-byte aligned"
        );
    }

    #[test]
    fn madt_lists_each_vcpu() {
        let blob = build(MAX_VCPUS, &[]);
        let madt = table_at(&blob, ACPI_BASE + MADT_OFFSET as u64);
        assert_eq!(checksum(madt), 0);
        assert_eq!(u32_at(madt, 36), LAPIC_ADDR);
        let mut lapics = Vec::new();
        let mut ioapic = None;
        let mut o = 44;
        while o < madt.len() {
            let (kind, len) = (madt[o], madt[o + 1] as usize);
            assert!(len >= 2, "entry length");
            match kind {
                0 => lapics.push((madt[o + 2], madt[o + 3], madt[o + 4] & 1)),
                1 => ioapic = Some(u32_at(madt, o + 4)),
                _ => {}
            }
            o += len;
        }
        assert_eq!(o, madt.len(), "entries fill the table exactly");
        assert_eq!(lapics.len(), MAX_VCPUS);
        assert!(lapics
            .iter()
            .enumerate()
            .all(|(i, l)| *l == (i as u8, i as u8, 1)));
        assert_eq!(ioapic, Some(IOAPIC_ADDR));
    }

    #[test]
    fn fadt_points_at_dsdt_facs_pm_and_reset() {
        let blob = build(1, &[]);
        let f = table_at(&blob, ACPI_BASE + FADT_OFFSET as u64);
        assert_eq!(f.len(), 268);
        assert_eq!(checksum(f), 0);
        assert_eq!(u32_at(f, 36) as u64, ACPI_BASE + FACS_OFFSET as u64);
        let dsdt_gpa = u64_at(f, 140);
        assert_eq!(u32_at(f, 40) as u64, dsdt_gpa);
        assert_eq!(u32_at(f, 56), PM1A_EVT_ADDR.into());
        assert_eq!(u32_at(f, 64), PM1A_CNT_ADDR.into());
        assert_eq!((f[88], f[89]), (4, 2));
        assert_eq!(u32_at(f, 112) & (1 << 10), 1 << 10, "RESET_REG_SUP");
        assert_eq!(f[116], 1, "reset register in I/O space");
        assert_eq!(u64_at(f, 120), u64::from(RESET_PORT));
        assert_eq!(f[128], RESET_VALUE);
        let dsdt = table_at(&blob, dsdt_gpa);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(checksum(dsdt), 0);
        let facs = &blob[FACS_OFFSET..FACS_OFFSET + 64];
        assert_eq!(&facs[..4], b"FACS");
    }

    #[test]
    fn aml_encodings() {
        assert_eq!(aml::eisa_id(b"PNP0A03"), 0x030A_D041);
        assert_eq!(aml::pkg(&[0; 10])[0], 11);
        // 100 bytes: two-byte PkgLength, total 102 = 0x66.
        let p = aml::pkg(&[0; 100]);
        assert_eq!(&p[..2], &[0x40 | 0x6, 0x6]);
        // 5000 bytes: two length bytes reach only 4095, so three: total 5003.
        let p = aml::pkg(&vec![0; 5000]);
        assert_eq!(p[0] >> 6, 2);
        let total = (p[0] & 0xF) as usize | ((p[1] as usize) << 4) | ((p[2] as usize) << 12);
        assert_eq!(total, 5003);
        assert_eq!(p.len(), 5003);
        assert_eq!(aml::int(5), [0x0A, 5]);
        assert_eq!(aml::int(0x1234), [0x0B, 0x34, 0x12]);
        assert_eq!(aml::int(0x12_3456), [0x0C, 0x56, 0x34, 0x12, 0]);
    }

    #[test]
    fn dsdt_carries_s5_pci0_and_routes() {
        let routes = [
            IntxRoute {
                slot: 3,
                pin: 0,
                gsi: 16,
            },
            IntxRoute {
                slot: 5,
                pin: 0,
                gsi: 17,
            },
        ];
        let blob = build(1, &routes);
        let d = &blob[DSDT_OFFSET..];
        let len = u32_at(d, 4) as usize;
        let d = &d[..len];
        let find = |needle: &[u8]| d.windows(needle.len()).position(|w| w == needle);
        // Name(_S5_, Package(4){5,0,0,0})
        assert!(find(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x07, 4, 0x0A, 5, 0, 0, 0]).is_some());
        assert!(find(b"\\_SB_").is_some() && find(&[0x5B, 0x82]).is_some());
        assert!(find(b"PCI0").is_some());
        assert!(
            find(&[0x0C, 0x41, 0xD0, 0x0A, 0x03]).is_some(),
            "_HID PNP0A03"
        );
        // _PRT entries: {0x0003FFFF, 0, 0, 16}
        assert!(find(&[0x0C, 0xFF, 0xFF, 3, 0, 0x00, 0x00, 0x0A, 16]).is_some());
        assert!(find(&[0x0C, 0xFF, 0xFF, 5, 0, 0x00, 0x00, 0x0A, 17]).is_some());
        // The resource template ends with an end tag.
        assert!(find(&[0x79, 0]).is_some());
    }
}
