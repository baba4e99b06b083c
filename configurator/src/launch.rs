//! Launch descriptions: what the reference Service VM (tests/guests/service-vm) needs to create
//! each `POST_LAUNCHED_VM` of a scenario, in a small line-based text format a `no_std` kernel
//! can parse safely.
//!
//! # How it reaches the Service VM
//!
//! The text is a boot module tagged [`MODULE_TAG`] (`launch_vms`). Each post-launched VM's kernel
//! is a boot module too, tagged by the VM's `kernel_mod` line: ACRN's scenario has no
//! `os_config` for post-launched VMs, so the tag is `<VM name>_kernel` (e.g. `POST_VM1_kernel`,
//! [`kernel_tag`]) unless the VM carries an `os_config/kern_mod`. The image builder must put the
//! description and every tag of [`LaunchDescription::module_tags`] on the ISO (GRUB
//! `module /path TAG`), and the hypervisor hands the boot modules it does not use itself to the
//! Service VM in its multiboot1 module list, with the tag as each module's string.
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
//! end                        closes the record
//! ```
//!
//! Every key of a record is required exactly once and unknown keys are errors, so a reader that
//! accepts a file understood all of it. Lines end in `\n`; only printable ASCII is allowed
//! elsewhere. Limits: 16 KiB of text, 8 VMs, 1100 bytes per line. VM ids and names are unique.

use std::fmt::Write as _;

use crate::scenario::{ConsoleVuart, KernType, LoadOrder, Scenario};

/// Tag of the boot module holding the launch description.
pub const MODULE_TAG: &str = "launch_vms";
/// The magic first line.
pub const MAGIC: &str = "acrn-launch 1";
/// Largest description accepted.
pub const MAX_TEXT: usize = 16 * 1024;
/// Most VM records accepted.
pub const MAX_VMS: usize = 8;
/// Longest line accepted (without its `\n`).
pub const MAX_LINE: usize = 1100;
/// Longest boot argument string.
pub const MAX_BOOTARGS: usize = 1023;
/// Longest VM name (the hypervisor's 16-byte name field holds a NUL too).
pub const MAX_NAME: usize = 15;
/// Longest module tag.
pub const MAX_TAG: usize = 63;
/// Largest memory size in MiB.
pub const MAX_MEMORY_MB: u32 = 65536;
/// Boot arguments of a post-launched VM whose scenario gives none.
pub const DEFAULT_BOOTARGS: &str = "console=ttyS0";

/// The boot module tag of a post-launched VM's kernel when the scenario names none.
pub fn kernel_tag(vm_name: &str) -> String {
    format!("{vm_name}_kernel")
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
    pub kernel_type: KernType,
    /// Kernel command line.
    pub bootargs: String,
    /// Console 16550 PIO base, if the VM has a legacy console.
    pub console_port: Option<u16>,
}

/// Everything the Service VM launches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LaunchDescription {
    /// Scenario id of the Service VM.
    pub service_vm_id: u16,
    /// Post-launched VMs in scenario order.
    pub vms: Vec<LaunchVm>,
}

/// Why a scenario cannot be described, or a text is not a valid description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("the scenario has post-launched VMs but no Service VM")]
    NoServiceVm,
    #[error("VM `{vm}`: {what}")]
    Vm { vm: String, what: String },
    #[error("line {line}: {what}")]
    Syntax { line: usize, what: String },
    #[error("the description is longer than {MAX_TEXT} bytes")]
    TooLong,
    #[error("more than {MAX_VMS} VMs")]
    TooManyVms,
    #[error("missing `{MAGIC}` line")]
    NoMagic,
    #[error("missing service_vm_id")]
    NoServiceVmId,
    #[error("the last VM record has no `end`")]
    Unterminated,
}

fn vm_err(vm: &str, what: impl Into<String>) -> LaunchError {
    LaunchError::Vm {
        vm: vm.to_owned(),
        what: what.into(),
    }
}

/// The legacy console port of `COM Port n` (ACRN's fixed COM1..COM4 bases).
fn console_port(c: Option<ConsoleVuart>) -> Option<u16> {
    match c {
        Some(ConsoleVuart::Com1) => Some(0x3F8),
        Some(ConsoleVuart::Com2) => Some(0x2F8),
        Some(ConsoleVuart::Com3) => Some(0x3E8),
        Some(ConsoleVuart::Com4) => Some(0x2E8),
        _ => None,
    }
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

fn valid_bootargs(s: &str) -> bool {
    s.len() <= MAX_BOOTARGS && s.bytes().all(|b| (0x20..0x7F).contains(&b))
}

impl LaunchDescription {
    /// Describes every `POST_LAUNCHED_VM` of a validated, default-populated scenario.
    pub fn from_scenario(s: &Scenario) -> Result<Self, LaunchError> {
        let post: Vec<_> = s.vms_of(LoadOrder::PostLaunched).collect();
        let service = s.vms_of(LoadOrder::Service).next();
        let service_vm_id = match (service, post.is_empty()) {
            (Some((_, vm)), _) => {
                u16::try_from(vm.id).map_err(|_| vm_err(&vm.name, "id does not fit 16 bits"))?
            }
            (None, true) => 0,
            (None, false) => return Err(LaunchError::NoServiceVm),
        };
        if post.len() > MAX_VMS {
            return Err(LaunchError::TooManyVms);
        }
        let mut vms = Vec::new();
        for (_, vm) in post {
            let name = &vm.name;
            if !valid_name(name) {
                return Err(vm_err(
                    name,
                    "name must be 1-15 characters of A-Z a-z 0-9 _ -",
                ));
            }
            let id = u16::try_from(vm.id)
                .ok()
                .filter(|&i| i != u16::MAX)
                .ok_or_else(|| vm_err(name, "id does not fit 16 bits"))?;
            let memory_mb = u32::try_from(vm.memory_size_mb())
                .ok()
                .filter(|m| (1..=MAX_MEMORY_MB).contains(m))
                .ok_or_else(|| {
                    vm_err(name, format!("memory/size must be 1..={MAX_MEMORY_MB} MB"))
                })?;
            let mut pcpus = 0u64;
            for p in vm.cpu_affinity.iter().flat_map(|a| &a.pcpu) {
                if p.pcpu_id >= 64 {
                    return Err(vm_err(name, format!("pCPU {} is beyond 63", p.pcpu_id)));
                }
                pcpus |= 1 << p.pcpu_id;
            }
            if pcpus == 0 {
                return Err(vm_err(name, "no pCPUs in cpu_affinity"));
            }
            let os = vm.os_config.as_ref();
            let kernel_mod = os
                .and_then(|o| o.kern_mod.clone())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| kernel_tag(name));
            if !valid_tag(&kernel_mod) {
                return Err(vm_err(name, format!("kernel module tag `{kernel_mod}` is not 1-63 printable characters without space or '='")));
            }
            let kernel_type = os.and_then(|o| o.kern_type).unwrap_or(KernType::Elf);
            let bootargs = os
                .and_then(|o| o.bootargs.clone())
                .unwrap_or_else(|| DEFAULT_BOOTARGS.to_owned());
            // Scenario files may wrap long bootargs over several lines.
            let bootargs = bootargs.split_whitespace().collect::<Vec<_>>().join(" ");
            if !valid_bootargs(&bootargs) {
                return Err(vm_err(
                    name,
                    format!("bootargs must be at most {MAX_BOOTARGS} printable ASCII characters"),
                ));
            }
            vms.push(LaunchVm {
                id,
                name: name.clone(),
                memory_mb,
                pcpus,
                kernel_mod,
                kernel_type,
                bootargs,
                console_port: console_port(vm.console_vuart),
            });
        }
        let d = Self { service_vm_id, vms };
        d.check_unique()?;
        Ok(d)
    }

    /// The boot module tags the image must carry: the description's, then each kernel's.
    pub fn module_tags(&self) -> Vec<String> {
        let mut tags = vec![MODULE_TAG.to_owned()];
        for vm in &self.vms {
            if !tags.contains(&vm.kernel_mod) {
                tags.push(vm.kernel_mod.clone());
            }
        }
        tags
    }

    /// The text form (deterministic).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# ACRN launch description for the reference Service VM (configurator/src/launch.rs)\n",
        );
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(out, "service_vm_id={}", self.service_vm_id);
        for vm in &self.vms {
            let port = vm.console_port.map_or_else(
                || "none".to_owned(),
                |p| format!("{p:#X}").replace("0X", "0x"),
            );
            let _ = write!(
                out,
                "vm\nid={}\nname={}\nmemory_mb={}\npcpus={:#x}\nkernel_mod={}\nkernel_type={}\nbootargs={}\nconsole_port={}\nend\n",
                vm.id, vm.name, vm.memory_mb, vm.pcpus, vm.kernel_mod, vm.kernel_type, vm.bootargs, port
            );
        }
        out
    }

    /// Parses the text form with the same rules as the Service VM's reader.
    pub fn parse(text: &str) -> Result<Self, LaunchError> {
        if text.len() > MAX_TEXT {
            return Err(LaunchError::TooLong);
        }
        let mut magic = false;
        let mut service_vm_id = None;
        let mut vms = Vec::new();
        let mut cur: Option<Partial> = None;
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            let syn = |what: &str| LaunchError::Syntax {
                line: n,
                what: what.to_owned(),
            };
            if line.len() > MAX_LINE {
                return Err(syn("line too long"));
            }
            if !line.bytes().all(|b| (0x20..0x7F).contains(&b)) {
                return Err(syn("non-printable character"));
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
            match (line, cur.as_mut()) {
                ("vm", None) => {
                    if service_vm_id.is_none() {
                        return Err(LaunchError::NoServiceVmId);
                    }
                    if vms.len() == MAX_VMS {
                        return Err(LaunchError::TooManyVms);
                    }
                    cur = Some(Partial::default());
                }
                ("vm", Some(_)) => return Err(syn("`vm` inside a record")),
                ("end", Some(p)) => {
                    let vm = p.finish().map_err(|w| syn(&w))?;
                    vms.push(vm);
                    cur = None;
                }
                ("end", None) => return Err(syn("`end` outside a record")),
                (_, p) => {
                    let (k, v) = line
                        .split_once('=')
                        .ok_or_else(|| syn("expected key=value"))?;
                    match p {
                        Some(p) => p.set(k, v).map_err(|w| syn(&w))?,
                        None if k == "service_vm_id" && service_vm_id.is_none() => {
                            service_vm_id =
                                Some(parse_id(v).ok_or_else(|| syn("bad service_vm_id"))?)
                        }
                        None => return Err(syn("unexpected key outside a record")),
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
        let d = Self {
            service_vm_id: service_vm_id.ok_or(LaunchError::NoServiceVmId)?,
            vms,
        };
        d.check_unique()?;
        Ok(d)
    }

    fn check_unique(&self) -> Result<(), LaunchError> {
        for (i, a) in self.vms.iter().enumerate() {
            if a.id == self.service_vm_id {
                return Err(vm_err(&a.name, "has the Service VM's id"));
            }
            if self.vms[..i]
                .iter()
                .any(|b| b.id == a.id || b.name == a.name)
            {
                return Err(vm_err(&a.name, "id or name used twice"));
            }
        }
        Ok(())
    }
}

fn parse_id(v: &str) -> Option<u16> {
    if v.is_empty() || v.len() > 5 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u16>().ok().filter(|&i| i != u16::MAX)
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
    kernel_type: Option<KernType>,
    bootargs: Option<String>,
    console_port: Option<Option<u16>>,
}

fn once<T>(slot: &mut Option<T>, key: &str, v: Option<T>) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("`{key}` given twice"));
    }
    *slot = Some(v.ok_or_else(|| format!("bad value for `{key}`"))?);
    Ok(())
}

impl Partial {
    fn set(&mut self, k: &str, v: &str) -> Result<(), String> {
        match k {
            "id" => once(&mut self.id, k, parse_id(v)),
            "name" => once(&mut self.name, k, valid_name(v).then(|| v.to_owned())),
            "memory_mb" => {
                let ok = !v.is_empty() && v.len() <= 5 && v.bytes().all(|b| b.is_ascii_digit());
                let m = ok.then(|| v.parse::<u32>().ok()).flatten();
                once(
                    &mut self.memory_mb,
                    k,
                    m.filter(|m| (1..=MAX_MEMORY_MB).contains(m)),
                )
            }
            "pcpus" => once(&mut self.pcpus, k, parse_hex(v).filter(|&p| p != 0)),
            "kernel_mod" => once(&mut self.kernel_mod, k, valid_tag(v).then(|| v.to_owned())),
            "kernel_type" => once(&mut self.kernel_type, k, v.parse().ok()),
            "bootargs" => once(
                &mut self.bootargs,
                k,
                valid_bootargs(v).then(|| v.to_owned()),
            ),
            "console_port" => {
                let p = if v == "none" {
                    Some(None)
                } else {
                    parse_hex(v).and_then(|p| u16::try_from(p).ok()).map(Some)
                };
                once(&mut self.console_port, k, p)
            }
            _ => Err(format!("unknown key `{k}`")),
        }
    }

    fn finish(&mut self) -> Result<LaunchVm, String> {
        let missing = |k: &str| format!("record lacks `{k}`");
        let p = std::mem::take(self);
        Ok(LaunchVm {
            id: p.id.ok_or_else(|| missing("id"))?,
            name: p.name.ok_or_else(|| missing("name"))?,
            memory_mb: p.memory_mb.ok_or_else(|| missing("memory_mb"))?,
            pcpus: p.pcpus.ok_or_else(|| missing("pcpus"))?,
            kernel_mod: p.kernel_mod.ok_or_else(|| missing("kernel_mod"))?,
            kernel_type: p.kernel_type.ok_or_else(|| missing("kernel_type"))?,
            bootargs: p.bootargs.ok_or_else(|| missing("bootargs"))?,
            console_port: p.console_port.ok_or_else(|| missing("console_port"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    fn load(board: &str, scen: &str) -> Scenario {
        let dir = repo().join("configs").join(board);
        let r = crate::validate(
            &dir.join(format!("{board}.xml")),
            &dir.join(scen),
            &crate::ValidateOptions::default(),
        );
        r.scenario.expect("scenario loads")
    }

    fn sample() -> LaunchDescription {
        LaunchDescription {
            service_vm_id: 0,
            vms: vec![
                LaunchVm {
                    id: 1,
                    name: "POST_VM1".into(),
                    memory_mb: 256,
                    pcpus: 0x4,
                    kernel_mod: "POST_VM1_kernel".into(),
                    kernel_type: KernType::Elf,
                    bootargs: "console=ttyS0 ticks=5 a=b".into(),
                    console_port: Some(0x3F8),
                },
                LaunchVm {
                    id: 2,
                    name: "vm-2".into(),
                    memory_mb: 1,
                    pcpus: u64::MAX,
                    kernel_mod: "k".into(),
                    kernel_type: KernType::RawImage,
                    bootargs: String::new(),
                    console_port: None,
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let d = sample();
        let text = d.render();
        assert_eq!(LaunchDescription::parse(&text).unwrap(), d);
        assert_eq!(
            LaunchDescription::parse(&LaunchDescription::default().render()).unwrap(),
            LaunchDescription::default()
        );
    }

    #[test]
    fn shared_scenarios_describe_both_post_vms() {
        for board in ["qemu-epyc", "bochs-tigerlake"] {
            let d = LaunchDescription::from_scenario(&load(board, "shared.xml")).unwrap();
            assert_eq!(d.service_vm_id, 0);
            let names: Vec<_> = d.vms.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["POST_VM1", "POST_VM2"], "{board}");
            assert_eq!(d.vms[0].pcpus, 1 << 2);
            assert_eq!(d.vms[1].pcpus, 1 << 3);
            assert_eq!(d.vms[0].kernel_mod, "POST_VM1_kernel");
            assert_eq!(d.vms[0].console_port, Some(0x3F8));
            assert_eq!(d.vms[0].bootargs, DEFAULT_BOOTARGS);
            assert_eq!(
                d.module_tags(),
                ["launch_vms", "POST_VM1_kernel", "POST_VM2_kernel"]
            );
            assert_eq!(LaunchDescription::parse(&d.render()).unwrap(), d);
        }
        let d = LaunchDescription::from_scenario(&load("qemu-epyc", "partitioned.xml")).unwrap();
        assert!(d.vms.is_empty());
    }

    /// The Service VM's own reader is tested against the same file (tests/guests/service-vm),
    /// which keeps the two readers of this format in step. `UPDATE_GOLDEN=1` rewrites it.
    #[test]
    fn golden_file_shared_with_the_service_vm() {
        let text = LaunchDescription::from_scenario(&load("qemu-epyc", "shared.xml"))
            .unwrap()
            .render();
        let golden = repo().join("tests/guests/service-vm/testdata/qemu-epyc-shared.launch");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&golden).unwrap(), text);
    }

    #[test]
    fn malformed_input_is_rejected() {
        let good = sample().render();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            (good.replace(MAGIC, "acrn-launch 2"), "version"),
            (good.replace("service_vm_id=0\n", ""), "no service id"),
            (good.replace("end\n", ""), "no end"),
            (good.replacen("id=1\n", "id=1\nid=1\n", 1), "duplicate key"),
            (good.replacen("id=1\n", "", 1), "missing key"),
            (good.replace("memory_mb=256", "memory_mb=0"), "zero memory"),
            (
                good.replace("memory_mb=256", "memory_mb=99999999999"),
                "huge memory",
            ),
            (good.replace("pcpus=0x4", "pcpus=0x0"), "no pcpus"),
            (good.replace("pcpus=0x4", "pcpus=4"), "pcpus not hex"),
            (
                good.replace("pcpus=0x4", "pcpus=0x10000000000000000"),
                "pcpus overflow",
            ),
            (
                good.replace("name=POST_VM1", "name=POST VM1"),
                "space in name",
            ),
            (
                good.replace("name=POST_VM1", "name=ABCDEFGHIJKLMNOP"),
                "long name",
            ),
            (
                good.replace("kernel_type=KERNEL_ELF", "kernel_type=ELF"),
                "kernel type",
            ),
            (
                good.replace("console_port=0x3F8", "console_port=0x10000"),
                "port",
            ),
            (good.replace("id=2", "id=1"), "duplicate id"),
            (good.replace("id=2", "id=0"), "service id"),
            (good.replace("id=1\n", "id=65535\n"), "invalid vmid"),
            (
                good.replace("bootargs=console", "bootargs=con\tsole"),
                "tab",
            ),
            (good.replace("bootargs=console", "bootargs=con\rsole"), "CR"),
            (
                good.replace("bootargs=console", "bootargs=\u{e9}"),
                "non-ASCII",
            ),
            (good.replace("id=1\n", "id=1\ncolour=blue\n"), "unknown key"),
            (good.replace("id=1\n", "id=1\nvm\n"), "nested vm"),
            (format!("{good}end\n"), "stray end"),
            (format!("{good}x=1\n"), "key outside"),
            (format!("{good}{}\n", "#".repeat(MAX_TEXT)), "too long"),
            (
                good.replace(
                    "bootargs=console",
                    &format!("bootargs={}", "a".repeat(MAX_LINE)),
                ),
                "long line",
            ),
        ];
        for (text, what) in cases {
            assert!(LaunchDescription::parse(&text).is_err(), "{what} accepted");
        }
        let nine = (1..=9).map(|i| format!("vm\nid={i}\nname=V{i}\nmemory_mb=1\npcpus=0x1\nkernel_mod=k\nkernel_type=KERNEL_ELF\nbootargs=\nconsole_port=none\nend\n"));
        let text = format!("{MAGIC}\nservice_vm_id=0\n{}", nine.collect::<String>());
        assert_eq!(
            LaunchDescription::parse(&text),
            Err(LaunchError::TooManyVms)
        );
    }

    #[test]
    fn truncations_and_byte_noise_never_panic() {
        let good = sample().render();
        for cut in 0..good.len() {
            let _ = LaunchDescription::parse(&good[..cut]);
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut bytes = good.into_bytes();
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % bytes.len();
            bytes[i] = (seed >> 32) as u8 & 0x7F;
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = LaunchDescription::parse(s);
            }
        }
    }

    #[test]
    fn scenario_problems_are_errors() {
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm[1].memory = Some(crate::scenario::VmMemory {
            size: Some(0),
            ..Default::default()
        });
        assert!(matches!(
            LaunchDescription::from_scenario(&s),
            Err(LaunchError::Vm { .. })
        ));
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm[1].cpu_affinity = None;
        assert!(matches!(
            LaunchDescription::from_scenario(&s),
            Err(LaunchError::Vm { .. })
        ));
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm.remove(0);
        assert_eq!(
            LaunchDescription::from_scenario(&s),
            Err(LaunchError::NoServiceVm)
        );
    }
}
