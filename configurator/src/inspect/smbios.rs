//! Pure parser for the SMBIOS structure table (/sys/firmware/dmi/tables/DMI): the BIOS (type 0)
//! and base board (type 2) strings the board file's `BIOS_INFO`/`BASE_BOARD_INFO` hold, in
//! dmidecode's wording. Never panics: a structure running past the end is an error, a missing
//! string is empty.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmbiosError {
    #[error("SMBIOS structure at offset {offset}: formatted length {len} runs past the table ({total} bytes)")]
    Truncated {
        offset: usize,
        len: usize,
        total: usize,
    },
    #[error(
        "SMBIOS structure at offset {offset}: formatted length {len} is below the 4-byte header"
    )]
    BadLength { offset: usize, len: usize },
}

/// One structure: type, formatted area (header included) and its strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    pub kind: u8,
    pub formatted: Vec<u8>,
    pub strings: Vec<String>,
}

impl Structure {
    /// The string a formatted-area byte at `offset` refers to (1-based; 0 or out of range: "").
    pub fn string_at(&self, offset: usize) -> &str {
        match self.formatted.get(offset) {
            Some(&i) if i > 0 => self
                .strings
                .get(usize::from(i) - 1)
                .map(String::as_str)
                .unwrap_or(""),
            _ => "",
        }
    }
}

/// Every structure up to the end-of-table (type 127) or the end of the bytes.
pub fn parse_structures(table: &[u8]) -> Result<Vec<Structure>, SmbiosError> {
    let mut out = Vec::new();
    let mut o = 0;
    while o + 4 <= table.len() {
        let kind = table[o];
        let len = usize::from(table[o + 1]);
        if len < 4 {
            return Err(SmbiosError::BadLength { offset: o, len });
        }
        if o + len > table.len() {
            return Err(SmbiosError::Truncated {
                offset: o,
                len,
                total: table.len(),
            });
        }
        let formatted = table[o..o + len].to_vec();
        // Strings: NUL-terminated, the set ends with an extra NUL (two NULs if there is none).
        let mut p = o + len;
        let mut strings = Vec::new();
        loop {
            let Some(end) = table.get(p..).and_then(|r| r.iter().position(|b| *b == 0)) else {
                p = table.len();
                break;
            };
            if end == 0 {
                p += 1;
                if strings.is_empty() {
                    p += usize::from(table.get(p) == Some(&0));
                }
                break;
            }
            strings.push(
                String::from_utf8_lossy(&table[p..p + end])
                    .trim()
                    .to_string(),
            );
            p += end + 1;
        }
        out.push(Structure {
            kind,
            formatted,
            strings,
        });
        if kind == 127 {
            break;
        }
        o = p;
    }
    Ok(out)
}

/// `BIOS_INFO` as ACRN writes it (dmidecode -t 0), or `None` without a type-0 structure.
pub fn bios_info(structures: &[Structure]) -> Option<String> {
    let s = structures.iter().find(|s| s.kind == 0)?;
    let mut t = format!(
        "BIOS Information\nVendor: {}\nVersion: {}\nRelease Date: {}\n",
        s.string_at(4),
        s.string_at(5),
        s.string_at(8)
    );
    // SMBIOS 2.4+: BIOS major/minor release at 0x14/0x15; 0xFF means not given.
    if let (Some(&major), Some(&minor)) = (s.formatted.get(0x14), s.formatted.get(0x15)) {
        if major != 0xff {
            t.push_str(&format!("BIOS Revision: {major}.{minor}\n"));
        }
    }
    Some(t)
}

/// `BASE_BOARD_INFO` (dmidecode -t 2), or `None` without a type-2 structure.
pub fn base_board_info(structures: &[Structure]) -> Option<String> {
    let s = structures.iter().find(|s| s.kind == 2)?;
    Some(format!(
        "Base Board Information\nManufacturer: {}\nProduct Name: {}\nVersion: {}\n",
        s.string_at(4),
        s.string_at(5),
        s.string_at(6)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bios_and_board() {
        let mut t = vec![0, 0x18, 0, 0, 1, 2, 0, 0xe8, 3, 0];
        t.resize(0x18, 0);
        t.extend(b"SeaBIOS\0 1.16.2 \x0004/01/2014\0\0");
        t.extend([2, 8, 1, 0, 1, 2, 0, 0]);
        t.extend(b"ACME\0Board\0\0");
        t.extend([127, 4, 2, 0, 0, 0]);
        let s = parse_structures(&t).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            bios_info(&s).unwrap(),
            "BIOS Information\nVendor: SeaBIOS\nVersion: 1.16.2\nRelease Date: 04/01/2014\nBIOS Revision: 0.0\n"
        );
        assert_eq!(
            base_board_info(&s).unwrap(),
            "Base Board Information\nManufacturer: ACME\nProduct Name: Board\nVersion: \n"
        );
    }

    #[test]
    fn errors_and_truncation() {
        assert!(matches!(
            parse_structures(&[0, 2, 0, 0]),
            Err(SmbiosError::BadLength { .. })
        ));
        assert!(matches!(
            parse_structures(&[0, 0x30, 0, 0, 1]),
            Err(SmbiosError::Truncated { .. })
        ));
        let t = b"\x00\x18\x00\x00\x01\x02\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00abc\0def";
        for n in 0..t.len() {
            if let Ok(s) = parse_structures(&t[..n]) {
                let _ = bios_info(&s);
                let _ = base_board_info(&s);
            }
        }
    }
}
