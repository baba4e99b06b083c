//! PCI functions from sysfs (/sys/bus/pci/devices): IDs, BARs (the `resource` file) and the
//! capability list (the `config` file, parsed by the pure [`parse_capabilities`]).

use std::path::Path;

/// A decoded BAR (from a `resource` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub start: u64,
    pub end: u64,
    pub io: bool,
    pub is_64bit: bool,
    pub prefetchable: bool,
}

impl Bar {
    pub fn size(&self) -> u64 {
        self.end.wrapping_sub(self.start).wrapping_add(1)
    }
}

// include/linux/ioport.h
const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x10_0000;

/// The six BARs of a sysfs `resource` file (`START END FLAGS` per line, BARs first); unset
/// BARs are left out. Lines that are not three hex numbers are skipped.
pub fn parse_resource(text: &str) -> Vec<Bar> {
    let mut out = Vec::new();
    for (i, line) in text.lines().take(6).enumerate() {
        let nums: Vec<u64> = line
            .split_whitespace()
            .filter_map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok())
            .collect();
        let [start, end, flags] = nums[..] else {
            continue;
        };
        if flags & (IORESOURCE_IO | IORESOURCE_MEM) == 0 || end < start || end == 0 {
            continue;
        }
        out.push(Bar {
            index: i as u8,
            start,
            end,
            io: flags & IORESOURCE_IO != 0,
            is_64bit: flags & IORESOURCE_MEM_64 != 0,
            prefetchable: flags & IORESOURCE_PREFETCH != 0,
        });
    }
    out
}

/// MSI-X table layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msix {
    pub table_size: u32,
    pub table_bir: u8,
    pub table_offset: u32,
    pub pba_bir: u8,
    pub pba_offset: u32,
}

/// One capability of the standard list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    /// MSI: (vectors the function can ask for, 64-bit address, per-vector masking).
    pub msi: Option<(u32, bool, bool)>,
    pub msix: Option<Msix>,
}

impl Capability {
    /// The name lspci and ACRN's board inspector give the capability.
    pub fn name(&self) -> String {
        match self.id {
            0x01 => "Power Management".into(),
            0x02 => "AGP".into(),
            0x03 => "VPD".into(),
            0x04 => "Slot Identification".into(),
            0x05 => "MSI".into(),
            0x06 => "CompactPCI hot-swap".into(),
            0x07 => "PCI-X".into(),
            0x08 => "HyperTransport".into(),
            0x09 => "Vendor-Specific".into(),
            0x0a => "Debug port".into(),
            0x0c => "PCI Hot-plug".into(),
            0x0d => "Subsystem ID and Subsystem Vendor ID".into(),
            0x0e => "AGP 8x".into(),
            0x0f => "Secure device".into(),
            0x10 => "PCI Express".into(),
            0x11 => "MSI-X".into(),
            0x13 => "Conventional PCI Advanced Features".into(),
            id => format!("Reserved ({id:#04x})"),
        }
    }
}

/// The standard capability list of a configuration space (at least the 64-byte header;
/// capabilities past the end of `config` are not followed). Loops and bad pointers end the
/// walk; at most 48 capabilities fit in 256 bytes.
pub fn parse_capabilities(config: &[u8]) -> Vec<Capability> {
    let mut out = Vec::new();
    let status = config.get(6).copied().unwrap_or(0);
    if status & 0x10 == 0 {
        return out;
    }
    let mut ptr = usize::from(config.get(0x34).copied().unwrap_or(0) & 0xfc);
    let u16_at = |o: usize| -> Option<u16> {
        Some(u16::from_le_bytes(config.get(o..o + 2)?.try_into().ok()?))
    };
    let u32_at = |o: usize| -> Option<u32> {
        Some(u32::from_le_bytes(config.get(o..o + 4)?.try_into().ok()?))
    };
    for _ in 0..48 {
        if ptr < 0x40 || ptr + 2 > config.len() {
            break;
        }
        let id = config[ptr];
        let ctrl = u16_at(ptr + 2).unwrap_or(0);
        let mut cap = Capability {
            id,
            msi: None,
            msix: None,
        };
        match id {
            0x05 => {
                let count = 1u32 << ((ctrl >> 1) & 7).min(5);
                cap.msi = Some((count, ctrl & (1 << 7) != 0, ctrl & (1 << 8) != 0));
            }
            0x11 => {
                if let (Some(t), Some(p)) = (u32_at(ptr + 4), u32_at(ptr + 8)) {
                    cap.msix = Some(Msix {
                        table_size: u32::from(ctrl & 0x7ff) + 1,
                        table_bir: (t & 7) as u8,
                        table_offset: t & !7,
                        pba_bir: (p & 7) as u8,
                        pba_offset: p & !7,
                    });
                }
            }
            _ => {}
        }
        out.push(cap);
        ptr = usize::from(config[ptr + 1] & 0xfc);
    }
    out
}

/// Readable names of PCI base classes / subclasses, as lspci prints them.
pub fn class_name(class: u32) -> String {
    let (base, sub) = ((class >> 16) as u8, (class >> 8) as u8);
    let name = match (base, sub) {
        (0x01, 0x00) => "SCSI storage controller",
        (0x01, 0x01) => "IDE interface",
        (0x01, 0x06) => "SATA controller",
        (0x01, 0x08) => "Non-Volatile memory controller",
        (0x01, 0x80) => "Mass storage controller",
        (0x01, _) => "Mass storage controller",
        (0x02, 0x00) => "Ethernet controller",
        (0x02, _) => "Network controller",
        (0x03, 0x00) => "VGA compatible controller",
        (0x03, _) => "Display controller",
        (0x04, 0x03) => "Audio device",
        (0x04, _) => "Multimedia controller",
        (0x05, _) => "Memory controller",
        (0x06, 0x00) => "Host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "Bridge",
        (0x07, 0x00) => "Serial controller",
        (0x07, 0x80) => "Communication controller",
        (0x07, _) => "Communication controller",
        (0x08, 0x00) => "PIC",
        (0x08, 0x80) => "System peripheral",
        (0x08, _) => "System peripheral",
        (0x0c, 0x03) => "USB controller",
        (0x0c, 0x05) => "SMBus",
        (0x0c, _) => "Serial bus controller",
        (0xff, _) => "Unassigned class",
        _ => return format!("Class [{:04x}]", class >> 8),
    };
    name.to_string()
}

/// One function as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    pub segment: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
    pub vendor: u16,
    pub device_id: u16,
    pub subsystem_vendor: u16,
    pub subsystem_device: u16,
    /// Class code: base class, subclass, programming interface.
    pub class: u32,
    pub revision: u8,
    /// Interrupt pin (1 = INTA# .. 4 = INTD#), 0 for none.
    pub interrupt_pin: u8,
    pub bars: Vec<Bar>,
    pub capabilities: Vec<Capability>,
    /// A PCI-PCI bridge's secondary bus.
    pub secondary_bus: Option<u8>,
    /// Whether `config` gave more than the 64-byte header (only root reads the rest).
    pub full_config: bool,
    /// ACPI path of the function's firmware node, e.g. `\_SB_.PCI0.SF8_`.
    pub acpi_path: Option<String>,
    /// Vendor and device names from the machine's PCI ID database (pci.ids), where it has them.
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
}

impl PciFunction {
    pub fn bdf_text(&self) -> String {
        format!("{:02x}:{:02x}.{:x}", self.bus, self.device, self.function)
    }
}

/// `0000:00:1f.2` -> (segment, bus, device, function).
pub fn parse_address(name: &str) -> Option<(u16, u8, u8, u8)> {
    let (seg, rest) = name.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let dev = u8::from_str_radix(dev, 16).ok().filter(|d| *d < 32)?;
    let func = u8::from_str_radix(func, 16).ok().filter(|f| *f < 8)?;
    Some((
        u16::from_str_radix(seg, 16).ok()?,
        u8::from_str_radix(bus, 16).ok()?,
        dev,
        func,
    ))
}

fn hex_file(dir: &Path, name: &str) -> Option<u64> {
    let t = std::fs::read_to_string(dir.join(name)).ok()?;
    u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok()
}

/// Reads one function's directory. `None` if it has no readable vendor/device IDs.
pub fn read_function(dir: &Path) -> Option<PciFunction> {
    let name = dir.file_name()?.to_str()?;
    let (segment, bus, device, function) = parse_address(name)?;
    let config = std::fs::read(dir.join("config")).unwrap_or_default();
    let cfg8 = |o: usize| config.get(o).copied();
    let header_type = cfg8(0x0e).unwrap_or(0) & 0x7f;
    let secondary_bus = (header_type == 1).then(|| cfg8(0x19)).flatten();
    let resource = std::fs::read_to_string(dir.join("resource")).unwrap_or_default();
    let acpi_path = std::fs::read_to_string(dir.join("firmware_node/path"))
        .ok()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty());
    Some(PciFunction {
        segment,
        bus,
        device,
        function,
        vendor: hex_file(dir, "vendor")? as u16,
        device_id: hex_file(dir, "device")? as u16,
        subsystem_vendor: hex_file(dir, "subsystem_vendor").unwrap_or(0) as u16,
        subsystem_device: hex_file(dir, "subsystem_device").unwrap_or(0) as u16,
        class: hex_file(dir, "class").unwrap_or(0) as u32,
        revision: hex_file(dir, "revision")
            .map(|r| r as u8)
            .or(cfg8(8))
            .unwrap_or(0),
        interrupt_pin: cfg8(0x3d).unwrap_or(0),
        bars: parse_resource(&resource),
        capabilities: parse_capabilities(&config),
        secondary_bus,
        full_config: config.len() > 64,
        acpi_path,
        vendor_name: None,
        device_name: None,
    })
}

/// The vendor and device names of a PCI ID database (`pci.ids`, as lspci reads it): vendor
/// lines `VVVV  Name`, device lines `<TAB>DDDD  Name` under them; subsystem lines, comments and
/// the class section (from the first `C ` line) are skipped.
#[derive(Debug, Default)]
pub struct PciIds {
    vendors: std::collections::HashMap<u16, String>,
    devices: std::collections::HashMap<(u16, u16), String>,
}

impl PciIds {
    pub fn parse(text: &str) -> PciIds {
        let mut ids = PciIds::default();
        let mut vendor = None;
        for line in text.lines() {
            if line.starts_with("C ") {
                break;
            }
            let id_and_name = |l: &str| -> Option<(u16, String)> {
                let (id, name) = l.split_once("  ")?;
                let id = u16::from_str_radix(id, 16).ok()?;
                Some((id, name.trim().to_string()))
            };
            if line.starts_with("\t\t") || line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('\t') {
                if let (Some(v), Some((d, name))) = (vendor, id_and_name(rest)) {
                    ids.devices.insert((v, d), name);
                }
                continue;
            }
            vendor = id_and_name(line).map(|(v, name)| {
                ids.vendors.insert(v, name);
                v
            });
        }
        ids
    }

    /// Names `f` as far as the database knows it.
    pub fn name(&self, f: &mut PciFunction) {
        f.vendor_name = self.vendors.get(&f.vendor).cloned();
        f.device_name = self.devices.get(&(f.vendor, f.device_id)).cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_ids_name_vendors_and_devices() {
        let db = "# comment\n8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n\t\t8086 0000  Subsystem\n\t29c0  82G33/G31/P35/P31 Express DRAM Controller\n1234  Technical Corp.\nC 02  Network controller\n\t00  Ethernet controller\n";
        let ids = PciIds::parse(db);
        let mut f = PciFunction {
            segment: 0,
            bus: 0,
            device: 2,
            function: 0,
            vendor: 0x8086,
            device_id: 0x10d3,
            subsystem_vendor: 0,
            subsystem_device: 0,
            class: 0x020000,
            revision: 0,
            interrupt_pin: 0,
            bars: Vec::new(),
            capabilities: Vec::new(),
            secondary_bus: None,
            full_config: false,
            acpi_path: None,
            vendor_name: None,
            device_name: None,
        };
        ids.name(&mut f);
        assert_eq!(f.vendor_name.as_deref(), Some("Intel Corporation"));
        assert_eq!(
            f.device_name.as_deref(),
            Some("82574L Gigabit Network Connection")
        );
        // A known vendor, an unknown device; the class section is no vendor.
        f.device_id = 0x1111;
        ids.name(&mut f);
        assert_eq!((f.vendor_name.is_some(), &f.device_name), (true, &None));
        f.vendor = 0x0002;
        ids.name(&mut f);
        assert_eq!(f.vendor_name, None);
    }

    #[test]
    fn resource_lines() {
        let text = "0x00000000febd0000 0x00000000febd3fff 0x0000000000040200\n\
                    0x0000000000000000 0x0000000000000000 0x0000000000000000\n\
                    0x000000000000c040 0x000000000000c05f 0x0000000000040101\n\
                    0x0000000800000000 0x0000000800003fff 0x000000000014220c\n\
                    garbage\n";
        let b = parse_resource(text);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].index, b[0].size(), b[0].io), (0, 0x4000, false));
        assert!(b[1].io);
        assert_eq!(b[1].index, 2);
        assert!(b[2].is_64bit && b[2].prefetchable);
    }

    #[test]
    fn capability_list() {
        let mut c = vec![0u8; 256];
        c[6] = 0x10;
        c[0x34] = 0x40;
        c[0x40] = 0x05; // MSI, 64-bit, 2 vectors
        c[0x41] = 0x60;
        c[0x42] = (1 << 1) | 0x80;
        c[0x60] = 0x11; // MSI-X, 5 entries in BAR 3 at 0, PBA at 0x2000
        c[0x61] = 0x60; // points to itself: the walk must end
        c[0x62] = 4;
        c[0x64] = 3;
        c[0x68..0x6c].copy_from_slice(&0x2003u32.to_le_bytes());
        let caps = parse_capabilities(&c);
        assert_eq!(caps[0].msi, Some((2, true, false)));
        let m = caps[1].msix.unwrap();
        assert_eq!((m.table_size, m.table_bir, m.pba_offset), (5, 3, 0x2000));
        assert_eq!(caps.len(), 48);
        assert!(parse_capabilities(&c[..64]).is_empty());
        for n in 0..c.len() {
            let _ = parse_capabilities(&c[..n]);
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("0000:00:1f.2"), Some((0, 0, 0x1f, 2)));
        assert_eq!(parse_address("0000:00:20.0"), None);
        assert_eq!(parse_address("bogus"), None);
    }
}
