//! Launch descriptions: what the reference Service VM (tests/guests/service-vm) needs to create
//! each `POST_LAUNCHED_VM` of a scenario, in a small line-based text format a `no_std` kernel
//! can parse safely. `acrn-configurator` maps a scenario to a [`LaunchDescription`] and renders
//! it; the Service VM parses it. Both sides use this crate, so writer and reader cannot drift.
//!
//! # Format (version 1)
//!
//! ```text
//! # comment lines and blank lines are ignored
//! acrn-launch 1              first other line: magic and version
//! service_vm_id=0            the Service VM's scenario id (relative VM ids are id - this)
//! vm                         starts one VM record
//! id=1                       scenario VM id (decimal, < 65535)
//! name=POST_VM1              1..=15 bytes of [A-Za-z0-9_-]; selects the hypervisor's config slot
//! memory_mb=256              RAM in MiB (decimal, 1..=65536)
//! pcpus=0x4                  pCPU bitmap (hex, non-zero; bit n = pCPU n)
//! kernel_mod=POST_VM1_kernel boot module tag of the kernel (1..=63 bytes, no space or '=')
//! kernel_type=KERNEL_ELF     KERNEL_ELF | KERNEL_RAWIMAGE | KERNEL_BZIMAGE
//! bootargs=console=ttyS0     the rest of the line (may be empty; may hold '='), <= 1023 bytes
//! console_port=0x3F8         the console 16550's PIO base (hex), or `none`
//! pci_devs=00:02.0           host PCI functions passed through (hex BB:DD.F, comma-separated,
//!                            at most 8; each at the same BDF in the VM), or `none`
//! vdevs=ivshmem:shm_0@00:08.0@0x80000000,0x80001000,0x4000000000
//!                            the hypervisor's devices to add (HC_ADD_VDEV), `;`-separated, at
//!                            most 16: `ivshmem:REGION` (3 BARs) or `vuart:INDEX` (2 BARs;
//!                            ACRN's vUART index, acrn-dm's `vuart_idx`: 0 the console, the
//!                            VM's connections from 1), at BB:DD.F with hex BAR addresses; or
//!                            `none`
//! end                        closes the record
//! ```
//!
//! Every key of a record is required exactly once and unknown keys are errors, so a reader that
//! accepts a file understood all of it. Lines end in `\n`; only printable ASCII is allowed
//! elsewhere. Limits: 16 KiB of text, 8 VMs, 2048 bytes per line. VM ids and names are unique.
//! The parser never panics, whatever the input.
#![no_std]

extern crate alloc;

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Tag of the boot module holding the launch description.
pub const MODULE_TAG: &str = "launch_vms";
/// The magic first line.
pub const MAGIC: &str = "acrn-launch 1";
/// Largest description accepted.
pub const MAX_TEXT: usize = 16 * 1024;
/// Most VM records accepted.
pub const MAX_VMS: usize = 8;
/// Longest line accepted (without its `\n`).
pub const MAX_LINE: usize = 2048;
/// Longest boot argument string.
pub const MAX_BOOTARGS: usize = 1023;
/// Longest VM name (the hypervisor's 16-byte name field holds a NUL too).
pub const MAX_NAME: usize = 15;
/// Longest module tag.
pub const MAX_TAG: usize = 63;
/// Largest memory size in MiB.
pub const MAX_MEMORY_MB: u32 = 65536;
/// Most pass-through functions of one VM.
pub const MAX_PCI_DEVS: usize = 8;
/// Most devices of the hypervisor's one VM asks for.
pub const MAX_VDEVS: usize = 16;

/// A device of the hypervisor's the Service VM adds to a VM (HC_ADD_VDEV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VdevKind {
    /// The IVSHMEM device of the hypervisor-provided region of that name.
    Ivshmem(String),
    /// The VM's PCI vUART of that index (its `vuart_connection` endpoints in scenario order).
    Vuart(u32),
}

/// One device to add: what, where, and its BARs (3 for IVSHMEM, 2 for a vUART).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchVdev {
    pub kind: VdevKind,
    pub bdf: PciAddr,
    pub bars: Vec<u64>,
}

impl fmt::Display for LaunchVdev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            VdevKind::Ivshmem(name) => write!(f, "ivshmem:{name}@{}@", self.bdf)?,
            VdevKind::Vuart(i) => write!(f, "vuart:{i}@{}@", self.bdf)?,
        }
        for (i, b) in self.bars.iter().enumerate() {
            write!(f, "{}{b:#x}", if i > 0 { "," } else { "" })?;
        }
        Ok(())
    }
}

/// A valid IVSHMEM region name (ACRN's `\w{1,27}`).
pub fn valid_region_name(s: &str) -> bool {
    (1..=27).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl LaunchVdev {
    fn parse(s: &str) -> Option<Self> {
        let (what, rest) = s.split_once('@')?;
        let (bdf, bars) = rest.split_once('@')?;
        let (kind, count) = match what.split_once(':')? {
            ("ivshmem", name) if valid_region_name(name) => (VdevKind::Ivshmem(name.into()), 3),
            ("vuart", i) => (VdevKind::Vuart(parse_dec(i, 3)?), 2),
            _ => return None,
        };
        let bars: Vec<u64> = bars.split(',').map(parse_hex).collect::<Option<_>>()?;
        (bars.len() == count).then_some(LaunchVdev {
            kind,
            bdf: PciAddr::parse(bdf)?,
            bars,
        })
    }
}

/// A PCI function's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddr {
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl PciAddr {
    /// The 16-bit encoding of ACRN's hypercall structures: `bus << 8 | dev << 3 | func`.
    pub fn raw(self) -> u16 {
        u16::from(self.bus) << 8 | u16::from(self.dev) << 3 | u16::from(self.func)
    }

    /// `BB:DD.F` in hex (device below 0x20, function below 8).
    pub fn parse(s: &str) -> Option<Self> {
        let (bus, rest) = s.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let hex = |v: &str, max: u8| {
            (!v.is_empty() && v.len() <= 2 && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u8::from_str_radix(v, 16).ok())
                .flatten()
                .filter(|&n| n <= max)
        };
        Some(PciAddr {
            bus: hex(bus, 0xFF)?,
            dev: hex(dev, 0x1F)?,
            func: hex(func, 7)?,
        })
    }
}

impl fmt::Display for PciAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{:x}", self.bus, self.dev, self.func)
    }
}

/// Kernel image formats (the scenario's `kern_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelType {
    Elf,
    RawImage,
    BzImage,
}

impl KernelType {
    /// The scenario's spelling, as written in the description.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elf => "KERNEL_ELF",
            Self::RawImage => "KERNEL_RAWIMAGE",
            Self::BzImage => "KERNEL_BZIMAGE",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        [Self::Elf, Self::RawImage, Self::BzImage]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One post-launched VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchVm {
    /// Scenario VM id.
    pub id: u16,
    /// VM name.
    pub name: String,
    /// RAM in MiB.
    pub memory_mb: u32,
    /// pCPU bitmap.
    pub pcpus: u64,
    /// Boot module tag of the kernel.
    pub kernel_mod: String,
    /// Kernel image format.
    pub kernel_type: KernelType,
    /// Kernel command line.
    pub bootargs: String,
    /// Console 16550 PIO base, if the VM has a legacy console.
    pub console_port: Option<u16>,
    /// Host PCI functions passed through (`pci_devs`), at the same BDF in the VM.
    pub pci_devs: Vec<PciAddr>,
    /// The hypervisor's devices to add: IVSHMEM of hypervisor-provided regions, PCI vUARTs.
    pub vdevs: Vec<LaunchVdev>,
}

/// Everything the Service VM launches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchDescription {
    /// Scenario id of the Service VM.
    pub service_vm_id: u16,
    /// Post-launched VMs in scenario order.
    pub vms: Vec<LaunchVm>,
}

/// Why a text is not a valid description (or a description breaks its invariants).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: SyntaxError },
    #[error("VM `{vm}`: {what}")]
    Vm { vm: String, what: &'static str },
    #[error("the description is longer than {MAX_TEXT} bytes")]
    TooLong,
    #[error("the description is not UTF-8 text")]
    NotText,
    #[error("more than {MAX_VMS} VMs")]
    TooManyVms,
    #[error("missing `{MAGIC}` line")]
    NoMagic,
    #[error("missing service_vm_id")]
    NoServiceVmId,
    #[error("the last VM record has no `end`")]
    Unterminated,
}

/// What is wrong with one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    #[error("line too long")]
    LineTooLong,
    #[error("non-printable character")]
    NonPrintable,
    #[error("`vm` inside a record")]
    VmInsideRecord,
    #[error("`end` outside a record")]
    EndOutsideRecord,
    #[error("expected key=value")]
    NotKeyValue,
    #[error("bad service_vm_id")]
    BadServiceVmId,
    #[error("unexpected key outside a record")]
    KeyOutsideRecord,
    #[error("unknown key `{0}`")]
    UnknownKey(String),
    #[error("`{0}` given twice")]
    Twice(&'static str),
    #[error("bad value for `{0}`")]
    BadValue(&'static str),
    #[error("record lacks `{0}`")]
    Missing(&'static str),
}

/// A valid VM name: 1..=[`MAX_NAME`] bytes of `[A-Za-z0-9_-]`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A valid boot module tag: 1..=[`MAX_TAG`] printable bytes without space or `=`.
pub fn valid_tag(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TAG && s.bytes().all(|b| b.is_ascii_graphic() && b != b'=')
}

/// Valid boot arguments: at most [`MAX_BOOTARGS`] printable ASCII bytes.
pub fn valid_bootargs(s: &str) -> bool {
    s.len() <= MAX_BOOTARGS && printable(s)
}

fn printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7F).contains(&b))
}

impl LaunchDescription {
    /// The boot module tags the image must carry: the description's, then each kernel's.
    pub fn module_tags(&self) -> Vec<String> {
        let mut tags = alloc::vec![MODULE_TAG.to_owned()];
        for vm in &self.vms {
            if !tags.contains(&vm.kernel_mod) {
                tags.push(vm.kernel_mod.clone());
            }
        }
        tags
    }

    /// Writes the text form (deterministic).
    pub fn render_into(&self, out: &mut impl Write) -> fmt::Result {
        writeln!(
            out,
            "# ACRN launch description for the reference Service VM (launch/src/lib.rs)"
        )?;
        writeln!(out, "{MAGIC}")?;
        writeln!(out, "service_vm_id={}", self.service_vm_id)?;
        for vm in &self.vms {
            writeln!(out, "vm\nid={}\nname={}", vm.id, vm.name)?;
            writeln!(out, "memory_mb={}\npcpus={:#x}", vm.memory_mb, vm.pcpus)?;
            writeln!(out, "kernel_mod={}", vm.kernel_mod)?;
            writeln!(out, "kernel_type={}", vm.kernel_type.as_str())?;
            writeln!(out, "bootargs={}", vm.bootargs)?;
            match vm.console_port {
                Some(p) => writeln!(out, "console_port=0x{p:X}")?,
                None => writeln!(out, "console_port=none")?,
            }
            write_list(out, "pci_devs", &vm.pci_devs, ",")?;
            write_list(out, "vdevs", &vm.vdevs, ";")?;
            writeln!(out, "end")?;
        }
        Ok(())
    }

    /// The text form (deterministic).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = self.render_into(&mut out);
        out
    }

    /// Parses a description from the bytes of its boot module.
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_TEXT {
            return Err(Error::TooLong);
        }
        Self::parse(core::str::from_utf8(bytes).map_err(|_| Error::NotText)?)
    }

    /// Parses the text form strictly (see the crate docs).
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.len() > MAX_TEXT {
            return Err(Error::TooLong);
        }
        let mut magic = false;
        let mut service_vm_id = None;
        let mut vms = Vec::new();
        let mut cur: Option<Partial> = None;
        for (i, line) in text.split('\n').enumerate() {
            let syn = |what| Error::Syntax { line: i + 1, what };
            if line.len() > MAX_LINE {
                return Err(syn(SyntaxError::LineTooLong));
            }
            if !printable(line) {
                return Err(syn(SyntaxError::NonPrintable));
            }
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            if !magic {
                if line != MAGIC {
                    return Err(Error::NoMagic);
                }
                magic = true;
                continue;
            }
            match (line, cur.as_mut()) {
                ("vm", None) => {
                    if service_vm_id.is_none() {
                        return Err(Error::NoServiceVmId);
                    }
                    if vms.len() == MAX_VMS {
                        return Err(Error::TooManyVms);
                    }
                    cur = Some(Partial::default());
                }
                ("vm", Some(_)) => return Err(syn(SyntaxError::VmInsideRecord)),
                ("end", Some(p)) => {
                    vms.push(p.finish().map_err(syn)?);
                    cur = None;
                }
                ("end", None) => return Err(syn(SyntaxError::EndOutsideRecord)),
                (_, p) => {
                    let (k, v) = line.split_once('=').ok_or(syn(SyntaxError::NotKeyValue))?;
                    match p {
                        Some(p) => p.set(k, v).map_err(syn)?,
                        None if k == "service_vm_id" && service_vm_id.is_none() => {
                            service_vm_id =
                                Some(parse_id(v).ok_or(syn(SyntaxError::BadServiceVmId))?)
                        }
                        None => return Err(syn(SyntaxError::KeyOutsideRecord)),
                    }
                }
            }
        }
        if cur.is_some() {
            return Err(Error::Unterminated);
        }
        if !magic {
            return Err(Error::NoMagic);
        }
        let d = Self {
            service_vm_id: service_vm_id.ok_or(Error::NoServiceVmId)?,
            vms,
        };
        d.check_unique()?;
        Ok(d)
    }

    /// No VM has the Service VM's id, and VM ids and names are unique.
    pub fn check_unique(&self) -> Result<(), Error> {
        for (i, a) in self.vms.iter().enumerate() {
            let err = |what| Error::Vm {
                vm: a.name.clone(),
                what,
            };
            if a.id == self.service_vm_id {
                return Err(err("has the Service VM's id"));
            }
            if self.vms[..i]
                .iter()
                .any(|b| b.id == a.id || b.name == a.name)
            {
                return Err(err("id or name used twice"));
            }
        }
        Ok(())
    }
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

/// A VM record being read: each key at most once.
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
    pci_devs: Option<Vec<PciAddr>>,
    vdevs: Option<Vec<LaunchVdev>>,
}

fn once<T>(slot: &mut Option<T>, key: &'static str, v: Option<T>) -> Result<(), SyntaxError> {
    if slot.is_some() {
        return Err(SyntaxError::Twice(key));
    }
    *slot = Some(v.ok_or(SyntaxError::BadValue(key))?);
    Ok(())
}

impl Partial {
    fn set(&mut self, k: &str, v: &str) -> Result<(), SyntaxError> {
        let owned = |ok: bool| ok.then(|| v.to_owned());
        match k {
            "id" => once(&mut self.id, "id", parse_id(v)),
            "name" => once(&mut self.name, "name", owned(valid_name(v))),
            "memory_mb" => once(
                &mut self.memory_mb,
                "memory_mb",
                parse_dec(v, 5).filter(|m| (1..=MAX_MEMORY_MB).contains(m)),
            ),
            "pcpus" => once(&mut self.pcpus, "pcpus", parse_hex(v).filter(|&p| p != 0)),
            "kernel_mod" => once(&mut self.kernel_mod, "kernel_mod", owned(valid_tag(v))),
            "kernel_type" => once(
                &mut self.kernel_type,
                "kernel_type",
                KernelType::from_name(v),
            ),
            "bootargs" => once(&mut self.bootargs, "bootargs", owned(valid_bootargs(v))),
            "console_port" => {
                let p = if v == "none" {
                    Some(None)
                } else {
                    parse_hex(v).and_then(|p| u16::try_from(p).ok()).map(Some)
                };
                once(&mut self.console_port, "console_port", p)
            }
            "pci_devs" => once(&mut self.pci_devs, "pci_devs", parse_pci_devs(v)),
            "vdevs" => once(&mut self.vdevs, "vdevs", parse_vdevs(v)),
            _ => Err(SyntaxError::UnknownKey(k.to_owned())),
        }
    }

    fn finish(&mut self) -> Result<LaunchVm, SyntaxError> {
        let p = core::mem::take(self);
        Ok(LaunchVm {
            id: p.id.ok_or(SyntaxError::Missing("id"))?,
            name: p.name.ok_or(SyntaxError::Missing("name"))?,
            memory_mb: p.memory_mb.ok_or(SyntaxError::Missing("memory_mb"))?,
            pcpus: p.pcpus.ok_or(SyntaxError::Missing("pcpus"))?,
            kernel_mod: p.kernel_mod.ok_or(SyntaxError::Missing("kernel_mod"))?,
            kernel_type: p.kernel_type.ok_or(SyntaxError::Missing("kernel_type"))?,
            bootargs: p.bootargs.ok_or(SyntaxError::Missing("bootargs"))?,
            console_port: p.console_port.ok_or(SyntaxError::Missing("console_port"))?,
            pci_devs: p.pci_devs.ok_or(SyntaxError::Missing("pci_devs"))?,
            vdevs: p.vdevs.ok_or(SyntaxError::Missing("vdevs"))?,
        })
    }
}

/// `key=` and the items joined by `sep`, or `key=none`.
fn write_list<T: fmt::Display>(
    out: &mut impl Write,
    key: &str,
    items: &[T],
    sep: &str,
) -> fmt::Result {
    if items.is_empty() {
        return writeln!(out, "{key}=none");
    }
    write!(out, "{key}=")?;
    for (i, d) in items.iter().enumerate() {
        write!(out, "{}{d}", if i > 0 { sep } else { "" })?;
    }
    writeln!(out)
}

/// `none`, or 1..=[`MAX_VDEVS`] `;`-separated devices at distinct BDFs.
fn parse_vdevs(v: &str) -> Option<Vec<LaunchVdev>> {
    if v == "none" {
        return Some(Vec::new());
    }
    let mut out: Vec<LaunchVdev> = Vec::new();
    for d in v.split(';') {
        let d = LaunchVdev::parse(d)?;
        if out.len() == MAX_VDEVS || out.iter().any(|o| o.bdf == d.bdf) {
            return None;
        }
        out.push(d);
    }
    Some(out)
}

/// `none`, or 1..=[`MAX_PCI_DEVS`] distinct comma-separated addresses.
fn parse_pci_devs(v: &str) -> Option<Vec<PciAddr>> {
    if v == "none" {
        return Some(Vec::new());
    }
    let mut out: Vec<PciAddr> = Vec::new();
    for a in v.split(',') {
        let a = PciAddr::parse(a)?;
        if out.len() == MAX_PCI_DEVS || out.contains(&a) {
            return None;
        }
        out.push(a);
    }
    Some(out)
}
