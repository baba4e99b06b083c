//! Pure parsers for the procfs/sysfs text files `inspect` reads.

/// A CPU list like `0-3,8,10-11` (sysfs `online`/`possible`). `None` if malformed.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// A top-level-or-nested line of /proc/iomem or /proc/ioports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceLine {
    pub start: u64,
    pub end: u64,
    pub name: String,
    pub depth: usize,
}

/// /proc/iomem or /proc/ioports; lines that do not parse are skipped.
pub fn parse_resource_tree(text: &str) -> Vec<ResourceLine> {
    text.lines()
        .filter_map(|l| {
            let depth = (l.len() - l.trim_start().len()) / 2;
            let (range, name) = l.trim().split_once(" : ")?;
            let (s, e) = range.split_once('-')?;
            Some(ResourceLine {
                start: u64::from_str_radix(s, 16).ok()?,
                end: u64::from_str_radix(e, 16).ok()?,
                name: name.to_string(),
                depth,
            })
        })
        .collect()
}

/// Whether a resource tree hides its addresses (Linux prints zeros to non-root readers).
pub fn addresses_hidden(lines: &[ResourceLine]) -> bool {
    !lines.is_empty() && lines.iter().all(|l| l.start == 0 && l.end == 0)
}

/// `MemTotal:  2013952 kB` of /proc/meminfo, in kB.
pub fn mem_total_kb(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// IRQ numbers that /proc/interrupts lists (the numeric rows).
pub fn used_irqs(interrupts: &str) -> Vec<u32> {
    interrupts
        .lines()
        .filter_map(|l| l.trim_start().split_once(':')?.0.parse().ok())
        .collect()
}

/// The legacy IRQs ACRN's inspector offers for virtual UARTs, minus those in use.
pub fn available_irqs(used: &[u32]) -> Vec<u32> {
    [3, 5, 6, 7, 10, 11, 12, 13, 14, 15]
        .into_iter()
        .filter(|i| !used.contains(i))
        .collect()
}

/// `IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23` lines of the kernel log:
/// (IOAPIC id, first GSI, last GSI).
pub fn ioapic_gsi_ranges(log: &str) -> Vec<(u32, u32, u32)> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("IOAPIC[")?..];
            let id: u32 = rest
                .split("apic_id ")
                .nth(1)?
                .split(',')
                .next()?
                .trim()
                .parse()
                .ok()?;
            let gsi = rest.split("GSI ").nth(1)?;
            let (a, b) = gsi.trim().split_once('-')?;
            Some((id, a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// `N: Name="..."` / `P: Phys=...` pairs of /proc/bus/input/devices.
pub fn input_devices(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = None;
        let mut phys = String::new();
        for l in block.lines() {
            if let Some(n) = l.strip_prefix("N: Name=") {
                name = Some(n.trim().trim_matches('"').to_string());
            } else if let Some(p) = l.strip_prefix("P: Phys=") {
                phys = p.trim().to_string();
            }
        }
        if let Some(name) = name {
            out.push((name, phys));
        }
    }
    out
}

/// The ext2/3/4 type of a superblock (the 2 KiB from offset 0 of a block device), as blkid
/// names it; `None` for anything else.
pub fn ext_type(head: &[u8]) -> Option<&'static str> {
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(head.get(o..o + 4)?.try_into().ok()?))
    };
    let magic = u16::from_le_bytes(head.get(1024 + 0x38..1024 + 0x3a)?.try_into().ok()?);
    if magic != 0xef53 {
        return None;
    }
    let compat = u32_at(1024 + 0x5c)?;
    let incompat = u32_at(1024 + 0x60)?;
    // extents, 64bit, flex_bg: ext4; a journal: ext3.
    Some(if incompat & (0x40 | 0x80 | 0x200) != 0 {
        "ext4"
    } else if compat & 0x4 != 0 {
        "ext3"
    } else {
        "ext2"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3\n"), Some(vec![0, 1, 2, 3]));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(vec![0, 2, 3, 7]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn resource_trees() {
        let t = "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n  000f0000-000fffff : System ROM\nbad line\n";
        let r = parse_resource_tree(t);
        assert_eq!(r.len(), 3);
        assert_eq!(r[2].depth, 1);
        assert!(!addresses_hidden(&r));
        assert!(addresses_hidden(&parse_resource_tree(
            "00000000-00000000 : Reserved\n  00000000-00000000 : System RAM\n"
        )));
    }

    #[test]
    fn small_files() {
        assert_eq!(
            mem_total_kb("MemTotal:        2013952 kB\nMemFree: 1 kB\n"),
            Some(2013952)
        );
        let used = used_irqs("           CPU0\n  0:   44  IO-APIC   2-edge  timer\n  4: 1 IO-APIC 4-edge ttyS0\n 12: 5 x\nNMI: 0 Non-maskable\n");
        assert_eq!(used, [0, 4, 12]);
        assert_eq!(available_irqs(&used), [3, 5, 6, 7, 10, 11, 13, 14, 15]);
        assert_eq!(
            ioapic_gsi_ranges("<6>[    0.000000] IOAPIC[0]: apic_id 0, version 32, address 0xfec00000, GSI 0-23\n"),
            [(0, 0, 23)]
        );
        let inputs = input_devices("I: Bus=0019\nN: Name=\"Power Button\"\nP: Phys=LNXPWRBN/button/input0\n\nI: x\nN: Name=\"AT kbd\"\nP: Phys=isa0060/serio0/input0\n");
        assert_eq!(inputs[1], ("AT kbd".into(), "isa0060/serio0/input0".into()));
    }

    #[test]
    fn ext_superblocks() {
        let mut sb = vec![0u8; 2048];
        sb[1024 + 0x38] = 0x53;
        sb[1024 + 0x39] = 0xef;
        assert_eq!(ext_type(&sb), Some("ext2"));
        sb[1024 + 0x60] = 0x40;
        assert_eq!(ext_type(&sb), Some("ext4"));
        assert_eq!(ext_type(&sb[..100]), None);
    }
}
