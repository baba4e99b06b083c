//! Reader of the launch description (format: `configurator/src/launch.rs`, which writes it).
//!
//! Same rules as the configurator's reader: every record key exactly once, unknown keys and
//! non-printable bytes rejected, fixed limits. It never panics on any input; the host tests
//! feed it the configurator's golden file, truncations and random byte noise.

use alloc::string::String;
use alloc::vec::Vec;

/// Tag of the boot module holding the description.
pub const MODULE_TAG: &str = "launch_vms";
const MAGIC: &str = "acrn-launch 1";
const MAX_TEXT: usize = 16 * 1024;
/// Most VM records accepted.
pub const MAX_VMS: usize = 8;
const MAX_LINE: usize = 1100;
const MAX_BOOTARGS: usize = 1023;
const MAX_NAME: usize = 15;
const MAX_TAG: usize = 63;
const MAX_MEMORY_MB: u32 = 65536;

/// Kernel image formats of the scenario (`kern_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelType {
    Elf,
    RawImage,
    BzImage,
}

/// One post-launched VM to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchVm {
    pub id: u16,
    pub name: String,
    pub memory_mb: u32,
    pub pcpus: u64,
    pub kernel_mod: String,
    pub kernel_type: KernelType,
    pub bootargs: String,
    pub console_port: Option<u16>,
}

/// The whole description.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Launch {
    pub service_vm_id: u16,
    pub vms: Vec<LaunchVm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("description longer than 16 KiB")]
    TooLong,
    #[error("not UTF-8 text")]
    NotText,
    #[error("missing `acrn-launch 1` line")]
    NoMagic,
    #[error("missing service_vm_id")]
    NoServiceVmId,
    #[error("more than 8 VMs")]
    TooManyVms,
    #[error("the last record has no `end`")]
    Unterminated,
    #[error("line {0}: {1}")]
    Line(usize, &'static str),
    #[error("VM id or name used twice, or the Service VM's id")]
    Duplicate,
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7F).contains(&b))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn valid_tag(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TAG && s.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

fn parse_dec(v: &str, max_len: usize) -> Option<u32> {
    if v.is_empty() || v.len() > max_len || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_id(v: &str) -> Option<u16> {
    parse_dec(v, 5)
        .and_then(|i| u16::try_from(i).ok())
        .filter(|&i| i != u16::MAX)
}

fn parse_hex(v: &str) -> Option<u64> {
    let d = v.strip_prefix("0x")?;
    if d.is_empty() || d.len() > 16 {
        return None;
    }
    u64::from_str_radix(d, 16).ok()
}

#[derive(Default)]
struct Partial {
    id: Option<u16>,
    name: Option<String>,
    memory_mb: Option<u32>,
    pcpus: Option<u64>,
    kernel_mod: Option<String>,
    kernel_type: Option<KernelType>,
    bootargs: Option<String>,
    console_port: Option<Option<u16>>,
}

fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Result<(), &'static str> {
    if slot.is_some() {
        return Err("key given twice");
    }
    *slot = Some(v.ok_or("bad value")?);
    Ok(())
}

impl Partial {
    fn set(&mut self, k: &str, v: &str) -> Result<(), &'static str> {
        match k {
            "id" => once(&mut self.id, parse_id(v)),
            "name" => once(&mut self.name, valid_name(v).then(|| String::from(v))),
            "memory_mb" => once(
                &mut self.memory_mb,
                parse_dec(v, 5).filter(|m| (1..=MAX_MEMORY_MB).contains(m)),
            ),
            "pcpus" => once(&mut self.pcpus, parse_hex(v).filter(|&p| p != 0)),
            "kernel_mod" => once(&mut self.kernel_mod, valid_tag(v).then(|| String::from(v))),
            "kernel_type" => once(
                &mut self.kernel_type,
                match v {
                    "KERNEL_ELF" => Some(KernelType::Elf),
                    "KERNEL_RAWIMAGE" => Some(KernelType::RawImage),
                    "KERNEL_BZIMAGE" => Some(KernelType::BzImage),
                    _ => None,
                },
            ),
            "bootargs" => once(
                &mut self.bootargs,
                (v.len() <= MAX_BOOTARGS).then(|| String::from(v)),
            ),
            "console_port" => once(
                &mut self.console_port,
                if v == "none" {
                    Some(None)
                } else {
                    parse_hex(v).and_then(|p| u16::try_from(p).ok()).map(Some)
                },
            ),
            _ => Err("unknown key"),
        }
    }

    fn finish(self) -> Result<LaunchVm, &'static str> {
        Ok(LaunchVm {
            id: self.id.ok_or("record lacks id")?,
            name: self.name.ok_or("record lacks name")?,
            memory_mb: self.memory_mb.ok_or("record lacks memory_mb")?,
            pcpus: self.pcpus.ok_or("record lacks pcpus")?,
            kernel_mod: self.kernel_mod.ok_or("record lacks kernel_mod")?,
            kernel_type: self.kernel_type.ok_or("record lacks kernel_type")?,
            bootargs: self.bootargs.ok_or("record lacks bootargs")?,
            console_port: self.console_port.ok_or("record lacks console_port")?,
        })
    }
}

impl Launch {
    /// Parses a description from the bytes of its boot module.
    pub fn parse(bytes: &[u8]) -> Result<Self, LaunchError> {
        if bytes.len() > MAX_TEXT {
            return Err(LaunchError::TooLong);
        }
        let text = core::str::from_utf8(bytes).map_err(|_| LaunchError::NotText)?;
        let mut magic = false;
        let mut service_vm_id = None;
        let mut vms = Vec::new();
        let mut cur: Option<Partial> = None;
        for (i, line) in text.split('\n').enumerate() {
            let err = |w| LaunchError::Line(i + 1, w);
            if line.len() > MAX_LINE {
                return Err(err("line too long"));
            }
            if !printable(line) {
                return Err(err("non-printable character"));
            }
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if !magic {
                if line != MAGIC {
                    return Err(LaunchError::NoMagic);
                }
                magic = true;
                continue;
            }
            match (line, cur.take()) {
                ("vm", None) => {
                    if service_vm_id.is_none() {
                        return Err(LaunchError::NoServiceVmId);
                    }
                    if vms.len() == MAX_VMS {
                        return Err(LaunchError::TooManyVms);
                    }
                    cur = Some(Partial::default());
                }
                ("vm", Some(_)) => return Err(err("`vm` inside a record")),
                ("end", Some(p)) => vms.push(p.finish().map_err(err)?),
                ("end", None) => return Err(err("`end` outside a record")),
                (_, p) => {
                    let (k, v) = line.split_once('=').ok_or(err("expected key=value"))?;
                    match p {
                        Some(mut p) => {
                            p.set(k, v).map_err(err)?;
                            cur = Some(p);
                        }
                        None if k == "service_vm_id" && service_vm_id.is_none() => {
                            service_vm_id = Some(parse_id(v).ok_or(err("bad service_vm_id"))?);
                        }
                        None => return Err(err("unexpected key outside a record")),
                    }
                }
            }
        }
        if cur.is_some() {
            return Err(LaunchError::Unterminated);
        }
        if !magic {
            return Err(LaunchError::NoMagic);
        }
        let l = Launch {
            service_vm_id: service_vm_id.ok_or(LaunchError::NoServiceVmId)?,
            vms,
        };
        for (i, a) in l.vms.iter().enumerate() {
            if a.id == l.service_vm_id
                || l.vms[..i].iter().any(|b| b.id == a.id || b.name == a.name)
            {
                return Err(LaunchError::Duplicate);
            }
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../testdata/qemu-epyc-shared.launch");

    #[test]
    fn reads_the_configurators_output() {
        let l = Launch::parse(GOLDEN.as_bytes()).unwrap();
        assert_eq!(l.service_vm_id, 0);
        assert_eq!(l.vms.len(), 2);
        let v = &l.vms[0];
        assert_eq!(
            (v.id, v.name.as_str(), v.memory_mb, v.pcpus),
            (1, "POST_VM1", 256, 4)
        );
        assert_eq!(v.kernel_mod, "POST_VM1_kernel");
        assert_eq!(v.kernel_type, KernelType::Elf);
        assert_eq!(v.bootargs, "console=ttyS0");
        assert_eq!(v.console_port, Some(0x3F8));
        assert_eq!(l.vms[1].pcpus, 8);
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let bad = [
            GOLDEN.replace("acrn-launch 1", "acrn-launch 9"),
            GOLDEN.replace("service_vm_id=0\n", ""),
            GOLDEN.replacen("end\n", "", 2),
            GOLDEN.replacen("id=1\n", "id=1\nid=1\n", 1),
            GOLDEN.replacen("memory_mb=256", "memory_mb=0", 1),
            GOLDEN.replacen("memory_mb=256", "memory_mb=4294967297", 1),
            GOLDEN.replacen("pcpus=0x4", "pcpus=0x", 1),
            GOLDEN.replacen("pcpus=0x4", "pcpus=0x11111111111111111", 1),
            GOLDEN.replacen("name=POST_VM1", "name=", 1),
            GOLDEN.replacen("kernel_mod=POST_VM1_kernel", "kernel_mod=a b", 1),
            GOLDEN.replacen("console_port=0x3F8", "console_port=0x3F8F8", 1),
            GOLDEN.replacen("id=2", "id=1", 1),
            GOLDEN.replacen("bootargs=console", "bootargs=\u{7f}", 1),
            GOLDEN.replacen("bootargs=console", "bootargs=\u{e9}", 1),
            GOLDEN.replacen("id=1\n", "pets=1\n", 1),
            GOLDEN.replacen("id=1\n", "", 1),
            alloc::format!("{GOLDEN}end\n"),
            String::new(),
        ];
        for (i, text) in bad.iter().enumerate() {
            assert!(Launch::parse(text.as_bytes()).is_err(), "case {i} accepted");
        }
        assert_eq!(Launch::parse(&[0xFF, 0xFE]), Err(LaunchError::NotText));
        assert_eq!(
            Launch::parse(&[b'#'; MAX_TEXT + 1]),
            Err(LaunchError::TooLong)
        );
    }

    #[test]
    fn noise_never_panics() {
        for cut in 0..GOLDEN.len() {
            let _ = Launch::parse(&GOLDEN.as_bytes()[..cut]);
        }
        let mut bytes = GOLDEN.as_bytes().to_vec();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % bytes.len();
            bytes[i] = (x >> 40) as u8;
            let _ = Launch::parse(&bytes);
        }
    }
}
