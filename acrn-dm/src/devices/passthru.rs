//! PCI pass-through (`-s SLOT,passthru,BUS/DEV/FUNC`) as ACRN's acrn-dm hands a device to the
//! hypervisor: it reads the host function from sysfs, gives it virtual BARs and an INTx GSI,
//! and asks for ASSIGN_PCIDEV (the hypervisor then emulates its configuration space, maps the
//! BARs and remaps MSI/MSI-X) and SET_PTDEV_INTR for its INTx line. Undone with
//! RESET_PTDEV_INTR and DEASSIGN_PCIDEV before the VM is destroyed.
//!
//! The launch script unbinds the device from its Service VM driver (binding it to pci-stub)
//! first; a device still bound to another driver is refused.

use crate::cli::PciAddr;
use acrn_abi::device::AcrnPcidev;
use acrn_abi::irq::{AcrnPtdevIntx, AcrnPtdevIrq, ACRN_PTDEV_IRQ_INTX};
use std::io;
use std::path::{Path, PathBuf};

/// Where Linux lists PCI functions.
pub const PCI_SYSFS: &str = "/sys/bus/pci/devices";

const IORESOURCE_IO: u64 = 0x100;
const IORESOURCE_MEM: u64 = 0x200;
const IORESOURCE_PREFETCH: u64 = 0x2000;
const IORESOURCE_MEM_64: u64 = 0x0010_0000;

/// A host BAR's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostBarKind {
    /// Port I/O.
    Io,
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (takes two BAR registers).
    Mem64,
}

/// One host BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostBar {
    /// Kind.
    pub kind: HostBarKind,
    /// Prefetchable memory.
    pub prefetch: bool,
    /// Size in bytes.
    pub size: u64,
}

/// What acrn-dm needs to know about a host function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Host address.
    pub addr: PciAddr,
    /// BARs 0..6.
    pub bars: [Option<HostBar>; 6],
    /// Interrupt pin (1 = INTA, 0 = none).
    pub intr_pin: u8,
    /// The Service VM's IRQ (its I/O APIC pin) for the function.
    pub irq: u32,
    /// It has the PCIe Precision Time Measurement capability (extended capability 0x1F).
    pub ptm: bool,
}

/// PCIe extended capability ID of Precision Time Measurement.
const EXT_CAP_PTM: u32 = 0x1F;

/// Whether the extended capability list of `config` (a function's configuration space as
/// sysfs gives it: 4 KiB to root, 256 bytes otherwise) holds `id`.
fn has_extended_capability(config: &[u8], id: u32) -> bool {
    let mut at = 0x100usize;
    // Each capability is at least a dword: at most 960 in 4 KiB, so a looping list ends.
    for _ in 0..960 {
        let Some(h) = config.get(at..at + 4) else {
            return false;
        };
        let header = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        if header == 0 || header == u32::MAX {
            return false;
        }
        if header & 0xFFFF == id {
            return true;
        }
        at = (header >> 20) as usize & !3;
        if at < 0x100 {
            return false;
        }
    }
    false
}

/// Why a host function cannot be passed through.
#[derive(Debug, thiserror::Error)]
pub enum PassthruError {
    /// Reading sysfs failed.
    #[error("host PCI {addr}: {path}: {err}")]
    Sysfs {
        /// Host address.
        addr: PciAddr,
        /// The file.
        path: PathBuf,
        /// Why.
        err: io::Error,
    },
    /// sysfs said something unexpected.
    #[error("host PCI {addr}: cannot parse {path}")]
    Parse {
        /// Host address.
        addr: PciAddr,
        /// The file.
        path: PathBuf,
    },
    /// The device still has a Service VM driver.
    #[error("host PCI {addr} is still bound to driver {driver}; unbind it (the launch script binds it to pci-stub) first")]
    Bound {
        /// Host address.
        addr: PciAddr,
        /// Driver name.
        driver: String,
    },
}

/// The sysfs directory of a host function.
pub fn sysfs_dir(root: &Path, addr: PciAddr) -> PathBuf {
    root.join(format!(
        "0000:{:02x}:{:02x}.{}",
        addr.bus, addr.dev, addr.func
    ))
}

/// Reads `addr` from sysfs under `root`.
pub fn read_host_device(root: &Path, addr: PciAddr) -> Result<HostDevice, PassthruError> {
    let dir = sysfs_dir(root, addr);
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|err| PassthruError::Sysfs { addr, path, err })
    };
    let parse_err = |name: &str| PassthruError::Parse {
        addr,
        path: dir.join(name),
    };
    if let Ok(driver) = std::fs::read_link(dir.join("driver")) {
        let driver = driver
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if driver != "pci-stub" && driver != "vfio-pci" {
            return Err(PassthruError::Bound { addr, driver });
        }
    }
    let resource = String::from_utf8(read("resource")?).map_err(|_| parse_err("resource"))?;
    let mut bars = [None; 6];
    for (i, line) in resource.lines().take(6).enumerate() {
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16))
            .collect::<Result<_, _>>()
            .map_err(|_| parse_err("resource"))?;
        let [start, end, flags] = v[..] else {
            return Err(parse_err("resource"));
        };
        if end == 0 || end < start {
            continue;
        }
        let kind = if flags & IORESOURCE_IO != 0 {
            HostBarKind::Io
        } else if flags & IORESOURCE_MEM != 0 {
            if flags & IORESOURCE_MEM_64 != 0 {
                HostBarKind::Mem64
            } else {
                HostBarKind::Mem32
            }
        } else {
            continue;
        };
        bars[i] = Some(HostBar {
            kind,
            prefetch: flags & IORESOURCE_PREFETCH != 0,
            size: end - start + 1,
        });
    }
    let config = read("config")?;
    let intr_pin = *config.get(0x3D).ok_or_else(|| parse_err("config"))?;
    // Linux routes a function's INTx through ACPI (the host bridge's `_PRT`) only when the
    // function is enabled; until then `irq` holds the firmware's interrupt line, which on a PC
    // is the legacy PIC's IRQ, not the GSI. A function no driver holds and nothing enabled is
    // enabled for the read and disabled again (sysfs refuses it for a bound function, which the
    // launch scripts enable before pci-stub takes it).
    let enable = dir.join("enable");
    let toggled = std::fs::read_to_string(&enable).is_ok_and(|s| s.trim() == "0")
        && std::fs::write(&enable, "1").is_ok();
    // The GSI is read while Linux still maps the interrupt (disabling unmaps it).
    let irq = read("irq").and_then(|raw| {
        let irq: u32 = String::from_utf8(raw)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| parse_err("irq"))?;
        // `root` is .../bus/pci/devices; Linux describes its interrupts in .../kernel/irq.
        Ok(
            match root.parent().and_then(Path::parent).and_then(Path::parent) {
                Some(sys) => gsi_of(&sys.join("kernel/irq"), irq),
                None => irq,
            },
        )
    });
    if toggled {
        let _ = std::fs::write(&enable, "0");
    }
    let irq = irq?;
    Ok(HostDevice {
        addr,
        bars,
        intr_pin,
        irq,
        ptm: has_extended_capability(&config, EXT_CAP_PTM),
    })
}

/// The GSI behind Linux interrupt `irq` (`kernel_irq` is /sys/kernel/irq): an I/O APIC
/// interrupt's pin, which is its GSI with the Service VM's one I/O APIC at GSI 0. Linux numbers
/// interrupts apart from GSIs when the platform has no legacy PIC (our Service VM's
/// hardware-reduced ACPI): GSI 22 may be IRQ 123. `irq` itself when Linux says nothing else
/// (without a legacy PIC nothing is mapped 1:1; with one, IRQs below 16 are their GSIs).
fn gsi_of(kernel_irq: &Path, irq: u32) -> u32 {
    let dir = kernel_irq.join(irq.to_string());
    let chip = std::fs::read_to_string(dir.join("chip_name")).unwrap_or_default();
    if chip.trim() != "IO-APIC" {
        return irq;
    }
    std::fs::read_to_string(dir.join("hwirq"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(irq)
}

/// `PCI_BDF` as a u16.
pub fn bdf16(a: PciAddr) -> u16 {
    (u16::from(a.bus) << 8) | (u16::from(a.dev) << 3) | u16::from(a.func)
}

/// The ASSIGN_PCIDEV request: virtual BAR register values (`vbars`, flags included) and the
/// INTx line the guest sees.
pub fn assignment(
    guest: PciAddr,
    host: &HostDevice,
    vbars: [u32; 6],
    gsi: Option<u32>,
) -> AcrnPcidev {
    AcrnPcidev {
        r#type: 0,
        virt_bdf: bdf16(guest),
        phys_bdf: bdf16(host.addr),
        intr_line: gsi.map_or(0xFF, |g| g as u8),
        intr_pin: host.intr_pin,
        padding: [0; 2],
        bar: vbars,
    }
}

/// The SET_PTDEV_INTR request routing the host IRQ to guest GSI `gsi`.
pub fn intx_remap(guest: PciAddr, host: &HostDevice, gsi: u32) -> AcrnPtdevIrq {
    AcrnPtdevIrq {
        r#type: ACRN_PTDEV_IRQ_INTX,
        virt_bdf: bdf16(guest),
        phys_bdf: bdf16(host.addr),
        intx: AcrnPtdevIntx {
            virt_pin: gsi,
            phys_pin: host.irq,
            is_pic_pin: 0,
        },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fake sysfs function directory.
    pub(crate) fn fake_sysfs(root: &Path, addr: PciAddr, driver: Option<&str>) {
        let dir = sysfs_dir(root, addr);
        std::fs::create_dir_all(&dir).unwrap();
        let resource = "\
0x00000000fe000000 0x00000000fe00ffff 0x0000000000040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x000000000000e000 0x000000000000e01f 0x0000000000040101
0x00000000c0000000 0x00000000c0ffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000000000000000 0x0000000000000000 0x0000000000000000
";
        std::fs::write(dir.join("resource"), resource).unwrap();
        let mut config = vec![0u8; 256];
        config[0x3D] = 1;
        std::fs::write(dir.join("config"), config).unwrap();
        std::fs::write(dir.join("irq"), "19\n").unwrap();
        std::fs::write(dir.join("enable"), "0\n").unwrap();
        if let Some(d) = driver {
            let drv = root.join("drivers").join(d);
            std::fs::create_dir_all(&drv).unwrap();
            std::os::unix::fs::symlink(&drv, dir.join("driver")).unwrap();
        }
    }

    #[test]
    fn extended_capabilities_are_walked_safely() {
        let mut c = vec![0u8; 4096];
        // AER at 0x100 -> PTM at 0x140.
        c[0x100..0x104].copy_from_slice(&(0x0001u32 | 0x140 << 20 | 1 << 16).to_le_bytes());
        c[0x140..0x144].copy_from_slice(&(0x001Fu32 | 1 << 16).to_le_bytes());
        assert!(has_extended_capability(&c, EXT_CAP_PTM));
        assert!(!has_extended_capability(&c, 0x0B));
        // A list that loops back on itself, one that points below 0x100, one off the end.
        c[0x140..0x144].copy_from_slice(&(0x0002u32 | 0x100 << 20).to_le_bytes());
        assert!(!has_extended_capability(&c, EXT_CAP_PTM));
        c[0x140..0x144].copy_from_slice(&(0x0002u32 | 0x040 << 20).to_le_bytes());
        assert!(!has_extended_capability(&c, EXT_CAP_PTM));
        assert!(!has_extended_capability(&c[..0x142], EXT_CAP_PTM));
        assert!(!has_extended_capability(&c[..256], EXT_CAP_PTM));
    }

    #[test]
    fn host_function_from_sysfs() {
        let root = std::env::temp_dir().join(format!("acrn-dm-sysfs-{}", std::process::id()));
        let addr = PciAddr {
            bus: 0,
            dev: 0x1f,
            func: 3,
        };
        fake_sysfs(&root, addr, Some("pci-stub"));
        let h = read_host_device(&root, addr).unwrap();
        assert_eq!(
            h.bars[0],
            Some(HostBar {
                kind: HostBarKind::Mem32,
                prefetch: false,
                size: 0x1_0000
            })
        );
        assert_eq!(h.bars[1], None);
        assert_eq!(
            h.bars[2],
            Some(HostBar {
                kind: HostBarKind::Io,
                prefetch: false,
                size: 32
            })
        );
        assert_eq!(
            h.bars[3],
            Some(HostBar {
                kind: HostBarKind::Mem64,
                prefetch: true,
                size: 16 << 20
            })
        );
        assert_eq!((h.intr_pin, h.irq), (1, 19));
        // Enabled for the read (Linux routes INTx then) and left as it was found.
        let dir = sysfs_dir(&root, addr);
        assert_eq!(std::fs::read_to_string(dir.join("enable")).unwrap(), "0");
        // A Linux IRQ number of an I/O APIC pin is translated to the pin's GSI.
        let kernel_irq = root.join("sys/kernel/irq/123");
        std::fs::create_dir_all(&kernel_irq).unwrap();
        std::fs::write(kernel_irq.join("chip_name"), "IO-APIC\n").unwrap();
        std::fs::write(kernel_irq.join("hwirq"), "22\n").unwrap();
        let devices = root.join("sys/bus/pci/devices");
        fake_sysfs(&devices, addr, Some("pci-stub"));
        std::fs::write(sysfs_dir(&devices, addr).join("irq"), "123\n").unwrap();
        assert_eq!(read_host_device(&devices, addr).unwrap().irq, 22);
        // Another chip's interrupt, or one Linux does not describe, stays as it is.
        std::fs::write(kernel_irq.join("chip_name"), "PCI-MSI\n").unwrap();
        assert_eq!(read_host_device(&devices, addr).unwrap().irq, 123);
        std::fs::write(sysfs_dir(&devices, addr).join("irq"), "11\n").unwrap();
        assert_eq!(read_host_device(&devices, addr).unwrap().irq, 11);
        assert!(
            !h.ptm,
            "256 bytes of configuration space hold no extended capability"
        );
        // Read as root: 4 KiB, here with PTM as the first extended capability.
        let mut config = vec![0u8; 4096];
        config[0x3D] = 1;
        config[0x100..0x104].copy_from_slice(&(EXT_CAP_PTM | 1 << 16).to_le_bytes());
        std::fs::write(sysfs_dir(&root, addr).join("config"), config).unwrap();
        assert!(read_host_device(&root, addr).unwrap().ptm);

        let guest = PciAddr {
            bus: 0,
            dev: 6,
            func: 0,
        };
        let a = assignment(
            guest,
            &h,
            [0x8000_0000, 0, 0x2001, 0x8100_000C, 0, 0],
            Some(20),
        );
        assert_eq!((a.virt_bdf, a.phys_bdf), (6 << 3, (0x1f << 3) | 3));
        assert_eq!((a.intr_line, a.intr_pin), (20, 1));
        let r = intx_remap(guest, &h, 20);
        assert_eq!(
            (r.intx.virt_pin, r.intx.phys_pin, r.intx.is_pic_pin),
            (20, 19, 0)
        );

        let other = PciAddr {
            bus: 0,
            dev: 2,
            func: 0,
        };
        fake_sysfs(&root, other, Some("i915"));
        let e = read_host_device(&root, other).unwrap_err().to_string();
        assert!(e.contains("bound to driver i915"), "{e}");
        let e = read_host_device(
            &root,
            PciAddr {
                bus: 3,
                dev: 0,
                func: 0,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0000:03:00.0"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
