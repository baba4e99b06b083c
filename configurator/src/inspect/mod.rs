//! `acrn-configurator inspect`: writes an ACRN board file for the running Linux machine, as
//! ACRN's board inspector does, from CPUID on each CPU, /sys/firmware (ACPI tables, e820,
//! SMBIOS), /sys/bus/pci, /sys/class/tty and /proc.
//!
//! The byte parsers ([`acpi`], [`smbios`], [`pci::parse_capabilities`], [`text`]) are pure
//! functions over slices, for tests and fuzzing. What cannot be read (no root, a missing file,
//! a table of an unknown revision) becomes a [`Warning`] naming the sections it affects; the
//! board file lists the warnings in a comment at its top.

pub mod acpi;
pub mod cli;
pub mod cpuid;
pub mod pci;
pub mod smbios;
pub mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cpuid::CpuidDump;

/// Where the kernel's file systems are: `/sys`, `/proc`, `/dev` on a live machine, or a copy
/// of them under another directory (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysRoot {
    pub sys: PathBuf,
    pub proc: PathBuf,
    pub dev: PathBuf,
    /// `/usr/share`, where the PCI ID database is.
    pub share: PathBuf,
}

impl SysRoot {
    pub fn host() -> SysRoot {
        SysRoot::under(Path::new("/"))
    }

    /// `DIR/sys`, `DIR/proc`, `DIR/dev`.
    pub fn under(dir: &Path) -> SysRoot {
        SysRoot {
            sys: dir.join("sys"),
            proc: dir.join("proc"),
            dev: dir.join("dev"),
            share: dir.join("usr/share"),
        }
    }
}

/// What only the running machine can answer: CPUID on a given CPU and the kernel log.
pub trait Platform {
    /// The CPUID leaves as Linux CPU `cpu` reports them; `None` if we cannot run there.
    fn cpuid(&self, cpu: u32) -> Option<CpuidDump>;
    /// The kernel's message buffer (for the IOAPICs' GSI counts); `None` if not readable.
    fn kernel_log(&self) -> Option<String>;
}

/// The machine `inspect` runs on.
pub struct HostPlatform;

impl Platform for HostPlatform {
    fn cpuid(&self, cpu: u32) -> Option<CpuidDump> {
        #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
        {
            cpuid::on_cpu(cpu as usize, || CpuidDump::take(cpuid::cpuid))
        }
        #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
        {
            let _ = cpu;
            None
        }
    }

    fn kernel_log(&self) -> Option<String> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: klogctl writes at most `len` bytes into the buffer we own.
            unsafe {
                let size = libc::klogctl(10, std::ptr::null_mut(), 0); // SYSLOG_ACTION_SIZE_BUFFER
                if size <= 0 {
                    return None;
                }
                let mut buf = vec![0u8; size as usize];
                let n = libc::klogctl(3, buf.as_mut_ptr().cast(), size); // SYSLOG_ACTION_READ_ALL
                if n < 0 {
                    return None;
                }
                buf.truncate(n as usize);
                Some(String::from_utf8_lossy(&buf).into_owned())
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            None
        }
    }
}

/// Something `inspect` could not read, and the board-file sections it affects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub sections: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.sections, self.message)
    }
}

/// A board file and what could not be read for it.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub xml: String,
    pub warnings: Vec<Warning>,
}

/// Inspects the machine behind `root` and `platform` and writes board `name`.
pub fn inspect(root: &SysRoot, platform: &dyn Platform, name: &str) -> Inspection {
    let mut i = Inspector {
        root,
        platform,
        warnings: Vec::new(),
    };
    let xml = i.board(name);
    Inspection {
        xml,
        warnings: i.warnings,
    }
}

struct Inspector<'a> {
    root: &'a SysRoot,
    platform: &'a dyn Platform,
    warnings: Vec<Warning>,
}

/// XML text escaping that keeps `"` as is (the raw-text sections hold C strings that ACRN's
/// line-based readers take verbatim).
fn esc_text(s: &str) -> String {
    esc(s).replace("&quot;", "\"")
}

/// XML text/attribute escaping.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
}

fn space_name(id: u8) -> String {
    match id {
        0 => "SPACE_SYSTEM_MEMORY".into(),
        1 => "SPACE_SYSTEM_IO".into(),
        2 => "SPACE_PCI_CONFIG".into(),
        3 => "SPACE_Embedded_Control".into(),
        4 => "SPACE_SMBUS".into(),
        0x7f => "SPACE_FFixedHW".into(),
        other => format!("{other:#x}"),
    }
}

/// `#define NAME VALUE` with the value column ACRN's inspector uses.
fn define(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "#define {name:<23} {value}");
}

struct CpuInfo {
    cpu: u32,
    dump: CpuidDump,
}

/// A CPU model: family, model, and hybrid core type with native model id.
type ModelKey = (u32, u32, Option<(&'static str, u32)>);

/// A cache seen on several CPUs: its descriptor, the x2APIC IDs sharing it, the first CPU.
struct SharedCache {
    leaf: cpuid::CacheLeaf,
    apic_ids: Vec<u32>,
    cpu: u32,
}

impl Inspector<'_> {
    fn warn(&mut self, sections: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            sections: sections.to_string(),
            message: message.into(),
        });
    }

    /// Reads a file; a failure other than "not found" is a warning for `sections`.
    fn read(&mut self, path: &Path, sections: &str) -> Option<Vec<u8>> {
        match std::fs::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let hint = if e.kind() == std::io::ErrorKind::PermissionDenied && !is_root() {
                    " (run as root)"
                } else {
                    ""
                };
                self.warn(
                    sections,
                    format!("cannot read {}: {e}{hint}", path.display()),
                );
                None
            }
        }
    }

    fn read_text(&mut self, path: &Path, sections: &str) -> Option<String> {
        self.read(path, sections)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Like [`read`](Self::read) but a missing file is a warning too.
    fn need_text(&mut self, path: &Path, sections: &str) -> Option<String> {
        if !path.exists() {
            self.warn(sections, format!("{} does not exist", path.display()));
            return None;
        }
        self.read_text(path, sections)
    }

    fn acpi_table(&mut self, sig: &str, sections: &str) -> Option<Vec<u8>> {
        let dir = self.root.sys.join("firmware/acpi/tables");
        self.read(&dir.join(sig), sections)
    }

    fn acpi_dir_readable(&mut self) -> bool {
        let dir = self.root.sys.join("firmware/acpi/tables");
        if !dir.is_dir() {
            self.warn(
                "ioapics, PM_INFO, RESET_REGISTER_INFO, WAKE_VECTOR_INFO, S3_INFO, S5_INFO, DRHD_INFO, MMCFG_BASE_INFO",
                format!("{} does not exist (no ACPI?)", dir.display()),
            );
            return false;
        }
        true
    }

    fn revision_check(&mut self, table: &str, rev: u8, known: u8, sections: &str) {
        if rev > known {
            self.warn(
                sections,
                format!("{table} revision {rev} is newer than the {known} this reader knows; read by the fields of revision {known}"),
            );
        }
    }

    fn board(&mut self, name: &str) -> String {
        let cpus = self.cpus();
        let pci = self.pci_functions();
        let acpi_ok = self.acpi_dir_readable();
        let fadt = if acpi_ok {
            self.acpi_table(
                "FACP",
                "PM_INFO, RESET_REGISTER_INFO, WAKE_VECTOR_INFO, S3_INFO, S5_INFO",
            )
            .and_then(|b| match acpi::parse_fadt(&b) {
                Ok(f) => Some(f),
                Err(e) => {
                    self.warn(
                        "PM_INFO, RESET_REGISTER_INFO, WAKE_VECTOR_INFO",
                        e.to_string(),
                    );
                    None
                }
            })
        } else {
            None
        };
        if let Some(f) = &fadt {
            self.revision_check("FADT", f.revision, 6, "PM_INFO, RESET_REGISTER_INFO");
        }
        let mcfg = if acpi_ok {
            self.acpi_table("MCFG", "MMCFG_BASE_INFO, devices")
                .and_then(|b| match acpi::parse_mcfg(&b) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.warn("MMCFG_BASE_INFO", e.to_string());
                        None
                    }
                })
        } else {
            None
        };
        let iomem_text = self.need_text(&self.root.proc.join("iomem"), "IOMEM_INFO, devices");
        let iomem = iomem_text
            .as_deref()
            .map(text::parse_resource_tree)
            .unwrap_or_default();
        let iomem_hidden = text::addresses_hidden(&iomem);
        if iomem_hidden {
            self.warn(
                "IOMEM_INFO, devices (host bridge windows)",
                format!(
                    "{} shows all addresses as 0 (run as root)",
                    self.root.proc.join("iomem").display()
                ),
            );
        }

        let mut x = String::from("<?xml version=\"1.0\"?>\n");
        let mut body = String::new();
        let _ = writeln!(body, "<acrn-config board=\"{}\">", esc(name));
        let mut legacy = vec![
            ("BIOS_INFO", self.smbios_section(0)),
            ("BASE_BOARD_INFO", self.smbios_section(2)),
            ("PCI_DEVICE", pci_device_text(&pci)),
            ("PCI_VID_PID", pci_vid_pid_text(&pci)),
            ("WAKE_VECTOR_INFO", self.wake_vector(fadt.as_ref())),
            ("RESET_REGISTER_INFO", reset_text(fadt.as_ref())),
            ("PM_INFO", pm_text(fadt.as_ref())),
            ("S3_INFO", self.sleep_text(3, fadt.is_some())),
            ("S5_INFO", self.sleep_text(5, fadt.is_some())),
            ("DRHD_INFO", self.drhd_text(acpi_ok)),
            ("CPU_BRAND", self.brand_text(&cpus)),
            ("CX_INFO", self.cx_text()),
            ("PX_INFO", self.px_text()),
            ("MMCFG_BASE_INFO", mmcfg_text(mcfg.as_deref())),
            ("TPM_INFO", self.tpm_text(acpi_ok)),
            ("CLOS_INFO", clos_text(&cpus)),
            (
                "IOMEM_INFO",
                if iomem_hidden {
                    String::new()
                } else {
                    iomem_text.clone().unwrap_or_default()
                },
            ),
            ("BLOCK_DEVICE_INFO", self.block_devices()),
            ("TTYS_INFO", self.ttys_text(&pci)),
            ("AVAILABLE_IRQ_INFO", self.irq_text()),
            ("TOTAL_MEM_INFO", self.mem_text()),
            ("CPU_PROCESSOR_INFO", self.possible_text()),
            ("MAX_MSIX_TABLE_NUM", max_msix_text(&pci)),
        ];
        if let Some(ivrs) = self.ivrs_text(acpi_ok) {
            let at = legacy
                .iter()
                .position(|(t, _)| *t == "DRHD_INFO")
                .unwrap_or(0)
                + 1;
            legacy.insert(at, ("IVRS_INFO", ivrs));
        }
        for (tag, content) in legacy {
            let _ = writeln!(body, "  <{tag}>");
            for line in content.lines() {
                let _ = writeln!(body, "\t{}", esc_text(line));
            }
            let _ = writeln!(body, "\t</{tag}>");
        }
        body.push_str(&self.processors(&cpus));
        body.push_str(&self.caches(&cpus));
        body.push_str(&self.memory(&iomem, iomem_hidden));
        body.push_str(&self.ioapics(acpi_ok));
        body.push_str(&self.devices(&pci, mcfg.as_deref(), &iomem, acpi_ok));
        body.push_str(&self.device_classes());
        body.push_str("</acrn-config>\n");

        x.push_str("<!--\n  Written by `acrn-configurator inspect` on the machine it describes.\n");
        if self.warnings.is_empty() {
            x.push_str("  Everything was read.\n");
        } else {
            x.push_str("  Not read (the sections named are incomplete or empty):\n");
            for w in &self.warnings {
                let line = w.to_string().replace("--", "- -");
                let _ = writeln!(x, "  - {line}");
            }
        }
        x.push_str("-->\n");
        x.push_str(&body);
        x
    }

    // -------------------------------------------------------------------------------------
    // CPUs

    fn cpus(&mut self) -> Vec<CpuInfo> {
        let path = self.root.sys.join("devices/system/cpu/online");
        let online = self
            .need_text(&path, "processors, caches")
            .and_then(|t| text::parse_cpu_list(&t));
        let list = match online {
            Some(l) if !l.is_empty() => l,
            _ => {
                self.warn(
                    "processors, caches",
                    format!("no CPU list in {}; only CPU 0 is described", path.display()),
                );
                vec![0]
            }
        };
        let mut out = Vec::new();
        for cpu in list {
            match self.platform.cpuid(cpu) {
                Some(dump) => out.push(CpuInfo { cpu, dump }),
                None => self.warn(
                    "processors, caches",
                    format!(
                        "cannot run CPUID on CPU {cpu} (sched_setaffinity failed); it is left out"
                    ),
                ),
            }
        }
        out
    }

    fn msr(&self, cpu: u32, msr: u32) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(self.root.dev.join(format!("cpu/{cpu}/msr"))).ok()?;
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, u64::from(msr)).ok()?;
        Some(u64::from_le_bytes(b))
    }

    fn brand_text(&mut self, cpus: &[CpuInfo]) -> String {
        match cpus.first() {
            Some(c) => format!("\"{}\"", c.dump.brand()),
            None => {
                self.warn("CPU_BRAND", "no CPU could be inspected");
                String::new()
            }
        }
    }

    fn processors(&mut self, cpus: &[CpuInfo]) -> String {
        let mut o = String::from("  <processors>\n");
        let mut models: Vec<ModelKey> = Vec::new();
        for c in cpus {
            let (f, m, _) = c.dump.signature();
            let key = (f, m, c.dump.core_type());
            if !models.contains(&key) {
                models.push(key);
            }
        }
        let mut vmx_warned = false;
        for key in &models {
            let Some(c) = cpus.iter().find(|c| {
                let (f, m, _) = c.dump.signature();
                (f, m, c.dump.core_type()) == *key
            }) else {
                continue;
            };
            let d = &c.dump;
            let (ct, native) = match key.2 {
                Some((t, n)) => (t.to_string(), format!("{n:#x}")),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(o, "    <model description=\"{}\">", esc(&d.brand()));
            let _ = writeln!(o, "      <family_id>{:#x}</family_id>", key.0);
            let _ = writeln!(o, "      <model_id>{:#x}</model_id>", key.1);
            let _ = writeln!(o, "      <core_type>{ct}</core_type>");
            let _ = writeln!(o, "      <native_model_id>{native}</native_model_id>");
            let mut caps: Vec<&str> = d.capabilities();
            if caps.contains(&"vmx") {
                match cpuid::vmx_capabilities(|m| self.msr(c.cpu, m)) {
                    Some(v) => caps.extend(v),
                    None if !vmx_warned => {
                        vmx_warned = true;
                        self.warn(
                            "processors (VMX capabilities: ept, unrestricted_guest, ...)",
                            format!(
                                "cannot read the VMX capability MSRs from {} (root and the msr module needed: modprobe msr)",
                                self.root.dev.join(format!("cpu/{}/msr", c.cpu)).display()
                            ),
                        );
                    }
                    None => {}
                }
            }
            for cap in caps {
                let _ = writeln!(o, "      <capability id=\"{cap}\"/>");
            }
            let _ = writeln!(
                o,
                "      <attribute id=\"cpuid_level\">{:#x}</attribute>",
                d.max_leaf()
            );
            if let Some((phys, lin)) = d.address_bits() {
                let _ = writeln!(
                    o,
                    "      <attribute id=\"physical_address_bits\">{phys}</attribute>"
                );
                let _ = writeln!(
                    o,
                    "      <attribute id=\"linear_address_bits\">{lin}</attribute>"
                );
            }
            o.push_str("    </model>\n");
        }
        // die > core > thread, from the x2APIC ID split at the topology shifts.
        let mut tree: BTreeMap<u32, BTreeMap<u32, Vec<&CpuInfo>>> = BTreeMap::new();
        for c in cpus {
            let (smt, pkg) = c.dump.topology_shifts();
            let x2 = c.dump.x2apic_id();
            let die = x2.checked_shr(pkg).unwrap_or(0);
            let core = x2.checked_shr(smt).unwrap_or(0);
            tree.entry(die)
                .or_default()
                .entry(core)
                .or_default()
                .push(c);
        }
        for (die, cores) in tree {
            let _ = writeln!(o, "    <die id=\"{die:#x}\">");
            for (core, threads) in cores {
                let _ = writeln!(o, "      <core id=\"{core:#x}\">");
                for c in threads {
                    let d = &c.dump;
                    let (f, m, s) = d.signature();
                    let (ct, native) = match d.core_type() {
                        Some((t, n)) => (t.to_string(), format!("{n:#x}")),
                        None => (String::new(), String::new()),
                    };
                    let _ = writeln!(o, "        <thread id=\"{:#x}\">", d.x2apic_id());
                    let _ = writeln!(o, "          <cpu_id>{}</cpu_id>", c.cpu);
                    let _ = writeln!(o, "          <apic_id>{:#x}</apic_id>", d.apic_id());
                    let _ = writeln!(o, "          <x2apic_id>{:#x}</x2apic_id>", d.x2apic_id());
                    let _ = writeln!(o, "          <family_id>{f:#x}</family_id>");
                    let _ = writeln!(o, "          <model_id>{m:#x}</model_id>");
                    let _ = writeln!(o, "          <stepping_id>{s:#x}</stepping_id>");
                    let _ = writeln!(o, "          <core_type>{ct}</core_type>");
                    let _ = writeln!(o, "          <native_model_id>{native}</native_model_id>");
                    o.push_str("        </thread>\n");
                }
                o.push_str("      </core>\n");
            }
            o.push_str("    </die>\n");
        }
        o.push_str("  </processors>\n");
        o
    }

    fn caches(&mut self, cpus: &[CpuInfo]) -> String {
        let mut groups: BTreeMap<(u32, u32, u32), SharedCache> = BTreeMap::new();
        for c in cpus {
            for leaf in c.dump.caches() {
                groups
                    .entry((leaf.level, leaf.id, leaf.kind))
                    .or_insert(SharedCache {
                        leaf,
                        apic_ids: Vec::new(),
                        cpu: c.cpu,
                    })
                    .apic_ids
                    .push(c.dump.x2apic_id());
            }
        }
        if groups.is_empty() {
            if cpus
                .iter()
                .any(|c| c.dump.is_amd() && !c.dump.has_topology_extensions())
            {
                self.warn(
                    "caches",
                    "AMD CPU without topology extensions (CPUID 0x80000001 ECX[22]): its cache leaf 0x8000001D is undefined, no cache listed",
                );
            }
            return "  <caches/>\n".into();
        }
        let mut o = String::from("  <caches>\n");
        for ((level, id, kind), g) in groups {
            let (l, apics, cpu) = (g.leaf, g.apic_ids, g.cpu);
            let _ = writeln!(
                o,
                "    <cache level=\"{level}\" id=\"{id:#x}\" type=\"{kind}\">"
            );
            for (tag, v) in [
                ("cache_size", l.size),
                ("line_size", u64::from(l.line_size)),
                ("ways", u64::from(l.ways)),
                ("sets", u64::from(l.sets)),
                ("partitions", u64::from(l.partitions)),
                ("self_initializing", u64::from(l.self_initializing)),
                ("fully_associative", u64::from(l.fully_associative)),
                ("write_back_invalidate", u64::from(l.write_back_invalidate)),
                ("cache_inclusiveness", u64::from(l.inclusive)),
                ("complex_cache_indexing", u64::from(l.complex_indexing)),
            ] {
                let _ = writeln!(o, "      <{tag}>{v}</{tag}>");
            }
            o.push_str("      <processors>\n");
            for a in apics {
                let _ = writeln!(o, "        <processor>{a:#x}</processor>");
            }
            o.push_str("      </processors>\n");
            let cat = cpus
                .iter()
                .find(|c| c.cpu == cpu)
                .and_then(|c| c.dump.cat(level));
            if let (Some((mask, clos, cdp)), 3) = (cat, kind) {
                o.push_str("      <capability id=\"CAT\">\n");
                let _ = writeln!(
                    o,
                    "        <capacity_mask_length>{mask}</capacity_mask_length>"
                );
                let _ = writeln!(o, "        <clos_number>{clos}</clos_number>");
                if cdp {
                    o.push_str("        <capability id=\"CDP\"/>\n");
                }
                o.push_str("      </capability>\n");
            }
            o.push_str("    </cache>\n");
        }
        o.push_str("  </caches>\n");
        o
    }

    // -------------------------------------------------------------------------------------
    // Memory, ACPI

    fn memory(&mut self, iomem: &[text::ResourceLine], iomem_hidden: bool) -> String {
        let dir = self.root.sys.join("firmware/memmap");
        let mut ranges = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries.filter_map(Result::ok) {
                    let p = e.path();
                    let rd = |n: &str| std::fs::read_to_string(p.join(n)).ok();
                    let num = |t: Option<String>| {
                        t.and_then(|t| {
                            u64::from_str_radix(t.trim().trim_start_matches("0x"), 16).ok()
                        })
                    };
                    let ty = rd("type").unwrap_or_default();
                    if ty.trim() != "System RAM" {
                        continue;
                    }
                    match (num(rd("start")), num(rd("end"))) {
                        (Some(s), Some(e)) if e >= s => ranges.push((s, e)),
                        _ => self.warn("memory", format!("{}: no readable start/end", p.display())),
                    }
                }
            }
            Err(e) => {
                self.warn(
                    "memory",
                    format!(
                        "cannot read {}: {e}; RAM taken from /proc/iomem instead",
                        dir.display()
                    ),
                );
                if !iomem_hidden {
                    ranges.extend(
                        iomem
                            .iter()
                            .filter(|r| r.depth == 0 && r.name == "System RAM")
                            .map(|r| (r.start, r.end)),
                    );
                }
            }
        }
        ranges.sort_unstable();
        ranges.dedup();
        if ranges.is_empty() {
            self.warn("memory", "no RAM range found");
        }
        let mut o = String::from("  <memory>\n");
        for (s, e) in ranges {
            let _ = writeln!(
                o,
                "    <range start=\"0x{s:016x}\" end=\"0x{e:016x}\" size=\"{}\"/>",
                e - s + 1
            );
        }
        o.push_str("  </memory>\n");
        o
    }

    fn ioapics(&mut self, acpi_ok: bool) -> String {
        let madt = if acpi_ok {
            self.acpi_table("APIC", "ioapics")
                .and_then(|b| match acpi::parse_madt(&b) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        self.warn("ioapics", e.to_string());
                        None
                    }
                })
        } else {
            None
        };
        let Some(madt) = madt else {
            if acpi_ok {
                self.warn("ioapics", "no readable MADT (APIC table): no IOAPIC listed");
            }
            return "  <ioapics/>\n".into();
        };
        self.revision_check("MADT", madt.revision, 6, "ioapics");
        let log = self.platform.kernel_log();
        let ranges = log
            .as_deref()
            .map(text::ioapic_gsi_ranges)
            .unwrap_or_default();
        let mut bases: Vec<u32> = madt.ioapics.iter().map(|a| a.gsi_base).collect();
        bases.sort_unstable();
        let mut o = String::from("  <ioapics>\n");
        for a in &madt.ioapics {
            let from_log = ranges
                .iter()
                .find(|r| r.0 == u32::from(a.id) && r.1 == a.gsi_base)
                .map(|r| r.2 - r.1 + 1);
            let count = match from_log {
                Some(n) => n,
                None => {
                    let next = bases
                        .iter()
                        .find(|b| **b > a.gsi_base)
                        .map(|b| b - a.gsi_base);
                    let n = next.unwrap_or(24);
                    self.warn(
                        "ioapics",
                        format!(
                            "IOAPIC {} GSI count not in the kernel log ({}); {n} assumed",
                            a.id,
                            if log.is_some() {
                                "no IOAPIC line"
                            } else {
                                "log not readable: run as root"
                            }
                        ),
                    );
                    n
                }
            };
            let _ = writeln!(o, "    <ioapic id=\"{:#x}\">", a.id);
            let _ = writeln!(o, "      <address>{:#x}</address>", a.address);
            let _ = writeln!(o, "      <gsi_base>{:#x}</gsi_base>", a.gsi_base);
            let _ = writeln!(o, "      <gsi_number>{count}</gsi_number>");
            o.push_str("    </ioapic>\n");
        }
        o.push_str("  </ioapics>\n");
        o
    }

    fn wake_vector(&mut self, fadt: Option<&acpi::Fadt>) -> String {
        let Some(f) = fadt.filter(|f| f.facs != 0) else {
            return String::new();
        };
        if let Some(b) = self.acpi_table("FACS", "WAKE_VECTOR_INFO") {
            if let Err(e) = acpi::check_facs(&b) {
                self.warn("WAKE_VECTOR_INFO", e.to_string());
            }
        }
        let mut o = String::new();
        define(&mut o, "WAKE_VECTOR_32", &format!("0x{:X}UL", f.facs + 12));
        define(&mut o, "WAKE_VECTOR_64", &format!("0x{:X}UL", f.facs + 24));
        o
    }

    fn sleep_text(&mut self, state: u8, have_fadt: bool) -> String {
        if !have_fadt {
            return String::new();
        }
        let section = if state == 3 { "S3_INFO" } else { "S5_INFO" };
        let Some(dsdt) = self.acpi_table("DSDT", section) else {
            return String::new();
        };
        let Some(p) = acpi::find_sleep_package(&dsdt, state) else {
            return String::new();
        };
        let mut o = String::new();
        define(
            &mut o,
            &format!("S{state}_PKG_VAL_PM1A"),
            &format!("{:#x}U", p.pm1a),
        );
        define(
            &mut o,
            &format!("S{state}_PKG_VAL_PM1B"),
            &format!("{}U", p.pm1b),
        );
        define(&mut o, &format!("S{state}_PKG_RESERVED"), "0x0U");
        o
    }

    fn drhd_text(&mut self, acpi_ok: bool) -> String {
        let mut o = String::new();
        let dmar = if acpi_ok {
            self.acpi_table("DMAR", "DRHD_INFO")
                .and_then(|b| match acpi::parse_dmar(&b) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        self.warn("DRHD_INFO", e.to_string());
                        None
                    }
                })
        } else {
            None
        };
        let Some(d) = dmar else {
            define(&mut o, "DRHD_COUNT", "0U");
            return o;
        };
        define(&mut o, "DRHD_COUNT", &format!("{}U", d.drhds.len()));
        let max_scopes = d.drhds.iter().map(|u| u.scopes.len()).max().unwrap_or(0);
        define(&mut o, "DRHD_MAX_DEVSCOPE_COUNT", &format!("{max_scopes}U"));
        for (n, u) in d.drhds.iter().enumerate() {
            o.push('\n');
            define(
                &mut o,
                &format!("DRHD{n}_DEV_CNT"),
                &format!("{:#x}U", u.scopes.len()),
            );
            define(
                &mut o,
                &format!("DRHD{n}_SEGMENT"),
                &format!("{:#x}U", u.segment),
            );
            define(
                &mut o,
                &format!("DRHD{n}_FLAGS"),
                &format!("{:#x}U", u.flags),
            );
            define(
                &mut o,
                &format!("DRHD{n}_REG_BASE"),
                &format!("0x{:X}UL", u.register_base),
            );
            define(&mut o, &format!("DRHD{n}_IGNORE"), "false");
            for (m, s) in u.scopes.iter().enumerate() {
                let (dev, func) = s.path.last().copied().unwrap_or((0, 0));
                let p = format!("DRHD{n}_DEVSCOPE{m}");
                define(&mut o, &format!("{p}_TYPE"), &format!("{:#x}U", s.kind));
                define(
                    &mut o,
                    &format!("{p}_ID"),
                    &format!("{:#x}U", s.enumeration_id),
                );
                define(&mut o, &format!("{p}_BUS"), &format!("{:#x}U", s.bus));
                define(
                    &mut o,
                    &format!("{p}_PATH"),
                    &format!("{:#x}U", (u16::from(dev) << 3) | u16::from(func & 7)),
                );
            }
        }
        o
    }

    /// `IVRS_INFO`, our extension of the format: the AMD IOMMUs, one per register block. None
    /// without an IVRS table, so other boards come out as ACRN's inspector writes them.
    fn ivrs_text(&mut self, acpi_ok: bool) -> Option<String> {
        let path = self.root.sys.join("firmware/acpi/tables/IVRS");
        if !acpi_ok || !path.exists() {
            return None;
        }
        let units = self
            .acpi_table("IVRS", "IVRS_INFO")
            .and_then(|b| match acpi::parse_ivrs(&b) {
                Ok(u) => Some(u),
                Err(e) => {
                    self.warn("IVRS_INFO", e.to_string());
                    None
                }
            })
            .unwrap_or_default();
        // Firmware describes one IOMMU in several IVHD types (0x10 and 0x11/0x40).
        let mut seen = Vec::new();
        let units: Vec<&acpi::Ivhd> = units
            .iter()
            .filter(|u| {
                let new = !seen.contains(&u.base_address);
                if new {
                    seen.push(u.base_address);
                }
                new
            })
            .collect();
        let mut o = String::new();
        define(&mut o, "IVHD_COUNT", &format!("{}U", units.len()));
        for (n, u) in units.iter().enumerate() {
            define(&mut o, &format!("IVHD{n}_TYPE"), &format!("{:#x}U", u.kind));
            define(
                &mut o,
                &format!("IVHD{n}_REG_BASE"),
                &format!("0x{:X}UL", u.base_address),
            );
            define(
                &mut o,
                &format!("IVHD{n}_DEVICE_ID"),
                &format!("{:#x}U", u.device_id),
            );
            define(
                &mut o,
                &format!("IVHD{n}_SEGMENT"),
                &format!("{:#x}U", u.segment),
            );
        }
        Some(o)
    }

    fn tpm_text(&mut self, acpi_ok: bool) -> String {
        if acpi_ok && self.acpi_table("TPM2", "TPM_INFO").is_some() {
            "TPM2".into()
        } else {
            "/* no TPM device */".into()
        }
    }

    fn cx_text(&mut self) -> String {
        if self
            .root
            .sys
            .join("devices/system/cpu/cpu0/cpuidle/state1")
            .exists()
        {
            self.warn(
                "CX_INFO",
                "the CPU has idle states, but reading them (ACPI _CST) is not implemented",
            );
        }
        "/* Cx data is not available */".into()
    }

    fn px_text(&mut self) -> String {
        if self
            .root
            .sys
            .join("devices/system/cpu/cpu0/cpufreq")
            .exists()
        {
            self.warn(
                "PX_INFO",
                "the CPU has frequency states, but reading them (ACPI _PSS) is not implemented",
            );
        }
        "/* Px data is not available */".into()
    }

    fn smbios_section(&mut self, kind: u8) -> String {
        let section = if kind == 0 {
            "BIOS_INFO"
        } else {
            "BASE_BOARD_INFO"
        };
        let path = self.root.sys.join("firmware/dmi/tables/DMI");
        let table = match std::fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) => {
                if kind == 0 {
                    self.warn(
                        "BIOS_INFO, BASE_BOARD_INFO",
                        format!(
                            "cannot read {}: {e}; taken from /sys/class/dmi/id instead",
                            path.display()
                        ),
                    );
                }
                None
            }
        };
        if let Some(t) = table {
            match smbios::parse_structures(&t) {
                Ok(s) => {
                    let text = if kind == 0 {
                        smbios::bios_info(&s)
                    } else {
                        smbios::base_board_info(&s)
                    };
                    return text.unwrap_or_default();
                }
                Err(e) => self.warn(section, e.to_string()),
            }
        }
        // World-readable fallback (the kernel's copy of the same strings).
        let id = self.root.sys.join("class/dmi/id");
        let rd = |n: &str| {
            std::fs::read_to_string(id.join(n))
                .map(|s| s.trim().to_string())
                .ok()
        };
        if kind == 0 {
            let Some(vendor) = rd("bios_vendor") else {
                return String::new();
            };
            let mut t = format!(
                "BIOS Information\nVendor: {vendor}\nVersion: {}\nRelease Date: {}\n",
                rd("bios_version").unwrap_or_default(),
                rd("bios_date").unwrap_or_default()
            );
            if let Some(r) = rd("bios_release") {
                let _ = writeln!(t, "BIOS Revision: {r}");
            }
            t
        } else {
            match rd("board_vendor") {
                Some(v) => format!(
                    "Base Board Information\nManufacturer: {v}\nProduct Name: {}\nVersion: {}\n",
                    rd("board_name").unwrap_or_default(),
                    rd("board_version").unwrap_or_default()
                ),
                None => String::new(),
            }
        }
    }

    // -------------------------------------------------------------------------------------
    // PCI

    fn pci_functions(&mut self) -> Vec<pci::PciFunction> {
        let dir = self.root.sys.join("bus/pci/devices");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                self.warn(
                    "PCI_DEVICE, PCI_VID_PID, devices, MAX_MSIX_TABLE_NUM",
                    format!("cannot read {}: {e}", dir.display()),
                );
                return Vec::new();
            }
        };
        let mut out: Vec<pci::PciFunction> = entries
            .filter_map(Result::ok)
            .filter_map(|e| pci::read_function(&e.path()))
            .collect();
        out.sort_by_key(|f| (f.segment, f.bus, f.device, f.function));
        match PCI_IDS
            .iter()
            .find_map(|p| std::fs::read_to_string(self.root.share.join(p)).ok())
        {
            Some(db) => {
                let ids = pci::PciIds::parse(&db);
                out.iter_mut().for_each(|f| ids.name(f));
            }
            None if !out.is_empty() => self.warn(
                "PCI_DEVICE, devices (descriptions)",
                format!(
                    "no PCI ID database ({}/{{{}}}; pciutils or hwdata has it): functions are named by their IDs",
                    self.root.share.display(),
                    PCI_IDS.join(",")
                ),
            ),
            None => {}
        }
        let partial: Vec<String> = out
            .iter()
            .filter(|f| !f.full_config)
            .map(|f| f.bdf_text())
            .collect();
        if !partial.is_empty() {
            self.warn(
                "devices (PCI capabilities: MSI, MSI-X), MAX_MSIX_TABLE_NUM",
                format!(
                    "only the 64-byte configuration header of {} is readable (run as root)",
                    partial.join(", ")
                ),
            );
        }
        out
    }

    fn devices(
        &mut self,
        pci: &[pci::PciFunction],
        mcfg: Option<&[acpi::McfgEntry]>,
        iomem: &[text::ResourceLine],
        acpi_ok: bool,
    ) -> String {
        let mut o = String::from(
            "  <devices>\n    <bus type=\"system\">\n      <acpi_object>\\_SB_</acpi_object>\n",
        );
        let host = pci
            .iter()
            .find(|f| (f.bus, f.device, f.function) == (0, 0, 0));
        let desc = host.map(describe).unwrap_or_default();
        let _ = writeln!(
            o,
            "      <bus id=\"PNP0A08\" type=\"pci\" address=\"0x0\" description=\"{}\">",
            esc(&desc)
        );
        if let Some(h) = host {
            ids(&mut o, h, 8);
        }
        let root_acpi =
            std::fs::read_to_string(self.root.sys.join("devices/pci0000:00/firmware_node/path"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
        if let Some(p) = root_acpi {
            let _ = writeln!(o, "        <acpi_object>{}</acpi_object>", esc(&p));
        }
        // Host bridge windows: the bus range of MCFG, the root bus' windows in /proc/ioports
        // and /proc/iomem (what Linux took from the bridge's _CRS).
        let (b0, b1) = mcfg
            .and_then(|m| m.iter().find(|e| e.segment == 0))
            .map(|e| (e.bus_start, e.bus_end))
            .unwrap_or((0, 0xff));
        let mut res = 0;
        let _ = writeln!(
            o,
            "        <resource id=\"res{res}\" type=\"bus_number\" min=\"{b0:#x}\" max=\"{b1:#x}\" len=\"{:#x}\"/>",
            u32::from(b1) - u32::from(b0) + 1
        );
        res += 1;
        let ioports = self
            .read_text(
                &self.root.proc.join("ioports"),
                "devices (host bridge I/O windows)",
            )
            .map(|t| text::parse_resource_tree(&t))
            .unwrap_or_default();
        let windows = |tree: &[text::ResourceLine]| -> Vec<(u64, u64)> {
            tree.iter()
                .filter(|r| r.name == "PCI Bus 0000:00" && !(r.start == 0 && r.end == 0))
                .map(|r| (r.start, r.end))
                .collect()
        };
        for (kind, list) in [("io_port", windows(&ioports)), ("memory", windows(iomem))] {
            for (s, e) in list {
                let _ = writeln!(
                    o,
                    "        <resource id=\"res{res}\" type=\"{kind}\" min=\"{s:#x}\" max=\"{e:#x}\" len=\"{:#x}\"/>",
                    e - s + 1
                );
                res += 1;
            }
        }
        // Functions by bus; bridges carry their secondary bus.
        let secondaries: BTreeSet<u8> = pci.iter().filter_map(|f| f.secondary_bus).collect();
        let mut emitted = BTreeSet::new();
        self.pci_bus(&mut o, pci, 0, 8, &mut emitted);
        o.push_str("      </bus>\n");
        // Root buses other than 0 (e.g. a second host bridge).
        let other_roots: BTreeSet<u8> = pci
            .iter()
            .map(|f| f.bus)
            .filter(|b| *b != 0 && !secondaries.contains(b))
            .collect();
        for b in other_roots {
            let _ = writeln!(o, "      <bus type=\"pci\" address=\"{b:#x}\">");
            self.pci_bus(&mut o, pci, b, 8, &mut emitted);
            o.push_str("      </bus>\n");
        }
        if acpi_ok {
            if let Some(h) = self
                .acpi_table("HPET", "devices (HPET)")
                .and_then(|b| acpi::parse_hpet(&b).ok())
            {
                let a = h.address.address;
                let _ = writeln!(
                    o,
                    "      <device id=\"PNP0103\">\n        <acpi_uid>{}</acpi_uid>\n        <resource id=\"res0\" type=\"memory\" min=\"{a:#x}\" max=\"{:#x}\" len=\"0x400\"/>\n      </device>",
                    h.number,
                    a + 0x3ff
                );
            }
        }
        o.push_str("    </bus>\n  </devices>\n");
        o
    }

    fn pci_bus(
        &mut self,
        o: &mut String,
        pci: &[pci::PciFunction],
        bus: u8,
        indent: usize,
        emitted: &mut BTreeSet<(u8, u8, u8)>,
    ) {
        let pad = " ".repeat(indent);
        for f in pci.iter().filter(|f| f.bus == bus) {
            if (f.bus, f.device, f.function) == (0, 0, 0) {
                continue;
            }
            // A bus cycle in odd firmware must not recurse forever.
            if !emitted.insert((f.bus, f.device, f.function)) {
                continue;
            }
            let addr = (u32::from(f.device) << 16) | u32::from(f.function);
            let _ = writeln!(
                o,
                "{pad}<device address=\"{addr:#x}\" id=\"{:#06x}\" description=\"{}\">",
                f.device_id,
                esc(&describe(f))
            );
            ids(o, f, indent + 2);
            if let Some(p) = &f.acpi_path {
                let _ = writeln!(o, "{pad}  <acpi_object>{}</acpi_object>", esc(p));
            }
            if (1..=4).contains(&f.interrupt_pin) {
                let pin = (b'A' + f.interrupt_pin - 1) as char;
                let _ = writeln!(
                    o,
                    "{pad}  <resource type=\"interrupt_pin\" pin=\"INT{pin}#\"/>"
                );
            }
            for b in &f.bars {
                if b.io {
                    let _ = writeln!(
                        o,
                        "{pad}  <resource type=\"io_port\" min=\"{:#x}\" max=\"{:#x}\" len=\"{:#x}\" id=\"bar{}\"/>",
                        b.start, b.end, b.size(), b.index
                    );
                } else {
                    let _ = writeln!(
                        o,
                        "{pad}  <resource type=\"memory\" min=\"{:#x}\" max=\"{:#x}\" len=\"{:#x}\" id=\"bar{}\" width=\"{}\" prefetchable=\"{}\"/>",
                        b.start,
                        b.end,
                        b.size(),
                        b.index,
                        if b.is_64bit { 64 } else { 32 },
                        u8::from(b.prefetchable)
                    );
                }
            }
            for c in &f.capabilities {
                let name = c.name();
                if let Some((count, is64, masking)) = c.msi {
                    let _ = writeln!(
                        o,
                        "{pad}  <capability id=\"{name}\">\n{pad}    <count>{count}</count>"
                    );
                    if is64 {
                        let _ = writeln!(o, "{pad}    <capability id=\"64-bit address\"/>");
                    }
                    if masking {
                        let _ = writeln!(o, "{pad}    <capability id=\"per-vector masking\"/>");
                    }
                    let _ = writeln!(o, "{pad}  </capability>");
                } else if let Some(m) = c.msix {
                    let _ = writeln!(
                        o,
                        "{pad}  <capability id=\"{name}\">\n{pad}    <table_size>{}</table_size>\n{pad}    <table_bir>{}</table_bir>\n{pad}    <table_offset>{:#x}</table_offset>\n{pad}    <pba_bir>{}</pba_bir>\n{pad}    <pba_offset>{:#x}</pba_offset>\n{pad}  </capability>",
                        m.table_size, m.table_bir, m.table_offset, m.pba_bir, m.pba_offset
                    );
                } else {
                    let _ = writeln!(o, "{pad}  <capability id=\"{}\"/>", esc(&name));
                }
            }
            if let Some(sec) = f.secondary_bus.filter(|s| *s > bus) {
                let _ = writeln!(o, "{pad}  <bus type=\"pci\" address=\"{sec:#x}\">");
                self.pci_bus(o, pci, sec, indent + 4, emitted);
                let _ = writeln!(o, "{pad}  </bus>");
            }
            let _ = writeln!(o, "{pad}</device>");
        }
    }

    // -------------------------------------------------------------------------------------
    // Serial ports, IRQs, memory size, block devices, device classes

    /// `ttyS*` of /sys/class/tty with their sysfs attributes, in numeric order.
    fn serial_ttys(&mut self) -> Vec<(String, PathBuf)> {
        let dir = self.root.sys.join("class/tty");
        let mut v: Vec<(u32, String, PathBuf)> = match std::fs::read_dir(&dir) {
            Ok(e) => e
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let num = n.strip_prefix("ttyS")?.parse().ok()?;
                    Some((num, n, e.path()))
                })
                .collect(),
            Err(e) => {
                self.warn(
                    "TTYS_INFO, device-classes",
                    format!("cannot read {}: {e}", dir.display()),
                );
                Vec::new()
            }
        };
        v.sort();
        v.into_iter().map(|(_, n, p)| (n, p)).collect()
    }

    fn ttys_text(&mut self, pci: &[pci::PciFunction]) -> String {
        let mut o = String::new();
        for (name, p) in self.serial_ttys() {
            let rd = |n: &str| {
                std::fs::read_to_string(p.join(n))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let uart_type = rd("type").and_then(|t| t.parse::<u32>().ok()).unwrap_or(0);
            if uart_type == 0 {
                continue;
            }
            let io_type = rd("io_type")
                .and_then(|t| t.parse::<u32>().ok())
                .unwrap_or(0);
            let hex = |t: Option<String>| {
                t.and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
            };
            let irq = rd("irq").unwrap_or_default();
            // The PCI function the UART belongs to, if its device link points at one.
            let bdf = std::fs::canonicalize(p.join("device"))
                .ok()
                .and_then(|d| {
                    d.ancestors()
                        .filter_map(|a| pci::parse_address(a.file_name()?.to_str()?))
                        .next()
                })
                .filter(|(_, b, d, f)| {
                    pci.iter()
                        .any(|x| (x.bus, x.device, x.function) == (*b, *d, *f))
                });
            if io_type == 0 {
                let Some(base) = hex(rd("port")) else {
                    self.warn("TTYS_INFO", format!("{name}: no readable port"));
                    continue;
                };
                let _ = write!(o, "seri:/dev/{name} type:portio base:0x{base:X} irq:{irq}");
                if let Some((_, b, d, f)) = bdf {
                    let _ = write!(o, " bdf:{b}:{d}.{f}");
                }
            } else {
                let Some(base) = hex(rd("iomem_base")) else {
                    self.warn("TTYS_INFO", format!("{name}: no readable iomem_base"));
                    continue;
                };
                let _ = write!(o, "seri:/dev/{name} type:mmio base:0x{base:X}");
                if io_type == 3 {
                    o.push_str(" width:4byte");
                }
                let _ = write!(o, " irq:{irq}");
                if let Some((_, b, d, f)) = bdf {
                    let _ = write!(o, " bdf:\"{b:02x}:{d:02x}.{f:x}\"");
                }
            }
            o.push('\n');
        }
        o
    }

    fn irq_text(&mut self) -> String {
        let Some(t) = self.need_text(&self.root.proc.join("interrupts"), "AVAILABLE_IRQ_INFO")
        else {
            return String::new();
        };
        let list: Vec<String> = text::available_irqs(&text::used_irqs(&t))
            .iter()
            .map(u32::to_string)
            .collect();
        list.join(", ")
    }

    fn mem_text(&mut self) -> String {
        self.need_text(&self.root.proc.join("meminfo"), "TOTAL_MEM_INFO")
            .and_then(|t| text::mem_total_kb(&t))
            .map(|k| format!("{k} kB"))
            .unwrap_or_default()
    }

    fn possible_text(&mut self) -> String {
        let path = self.root.sys.join("devices/system/cpu/possible");
        match self
            .need_text(&path, "CPU_PROCESSOR_INFO")
            .and_then(|t| text::parse_cpu_list(&t))
        {
            Some(l) => l.iter().map(u32::to_string).collect::<Vec<_>>().join(", "),
            None => String::new(),
        }
    }

    fn block_devices(&mut self) -> String {
        let dir = self.root.sys.join("class/block");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return String::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
            .collect();
        names.sort();
        let mut o = String::new();
        let mut unreadable = Vec::new();
        for n in names {
            use std::io::Read;
            let path = self.root.dev.join(&n);
            let mut head = vec![0u8; 2048];
            match std::fs::File::open(&path).and_then(|mut f| f.read_exact(&mut head)) {
                Ok(()) => {
                    if let Some(t) = text::ext_type(&head) {
                        let _ = writeln!(o, "/dev/{n}: TYPE=\"{t}\"");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => unreadable.push(format!("{}: {e}", path.display())),
            }
        }
        if !unreadable.is_empty() {
            self.warn(
                "BLOCK_DEVICE_INFO",
                format!(
                    "cannot read {}{}",
                    unreadable.join(", "),
                    if is_root() { "" } else { " (run as root)" }
                ),
            );
        }
        o
    }

    fn device_classes(&mut self) -> String {
        let mut o = String::from("  <device-classes>\n    <inputs>\n");
        if let Some(t) = self.read_text(&self.root.proc.join("bus/input/devices"), "device-classes")
        {
            for (name, phys) in text::input_devices(&t) {
                let _ = writeln!(
                    o,
                    "      <input>\n        <name>{}</name>\n        <phys>{}</phys>\n      </input>",
                    esc(&name),
                    esc(&phys)
                );
            }
        }
        o.push_str("    </inputs>\n    <ttys>\n");
        for (name, p) in self.serial_ttys() {
            let ty = std::fs::read_to_string(p.join("type"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "      <serial>\n        <dev_path>/dev/{name}</dev_path>\n        <type>{}</type>\n      </serial>",
                esc(&ty)
            );
        }
        o.push_str("    </ttys>\n  </device-classes>\n");
        o
    }
}

fn is_root() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// `BB:DD.F Class: Vendor Device` as lspci names a function: from its ID database where that
/// knows them, else `Vendor Device DDDD` or `Device VVVV:DDDD`.
fn describe(f: &pci::PciFunction) -> String {
    let what = match (&f.vendor_name, &f.device_name) {
        (Some(v), Some(d)) => format!("{v} {d}"),
        (Some(v), None) => format!("{v} Device {:04x}", f.device_id),
        _ => format!("Device {:04x}:{:04x}", f.vendor, f.device_id),
    };
    format!("{} {}: {what}", f.bdf_text(), pci::class_name(f.class))
}

/// Where distributions keep the PCI ID database (pciutils, hwdata).
const PCI_IDS: [&str; 3] = ["misc/pci.ids", "hwdata/pci.ids", "pci.ids"];

fn ids(o: &mut String, f: &pci::PciFunction, indent: usize) {
    let pad = " ".repeat(indent);
    let _ = writeln!(o, "{pad}<vendor>{:#06x}</vendor>", f.vendor);
    let _ = writeln!(o, "{pad}<identifier>{:#06x}</identifier>", f.device_id);
    let _ = writeln!(
        o,
        "{pad}<subsystem_vendor>{:#06x}</subsystem_vendor>",
        f.subsystem_vendor
    );
    let _ = writeln!(
        o,
        "{pad}<subsystem_identifier>{:#06x}</subsystem_identifier>",
        f.subsystem_device
    );
    let _ = writeln!(o, "{pad}<class>{:#08x}</class>", f.class);
}

fn rev_suffix(f: &pci::PciFunction) -> String {
    if f.revision != 0 {
        format!(" (rev {:02x})", f.revision)
    } else {
        String::new()
    }
}

/// lspci's size notation: the largest unit that divides the size.
fn lspci_size(size: u64) -> String {
    for (shift, unit) in [(30, 'G'), (20, 'M'), (10, 'K')] {
        if size >= 1 << shift && size & ((1 << shift) - 1) == 0 {
            return format!("{}{unit}", size >> shift);
        }
    }
    size.to_string()
}

fn pci_device_text(pci: &[pci::PciFunction]) -> String {
    let mut o = String::new();
    for f in pci {
        let _ = writeln!(o, "{}{}", describe(f), rev_suffix(f));
        for b in f.bars.iter().filter(|b| !b.io) {
            let _ = writeln!(
                o,
                "Region {}: Memory at {:x} ({}-bit, {}prefetchable) [size={}]",
                b.index,
                b.start,
                if b.is_64bit { 64 } else { 32 },
                if b.prefetchable { "" } else { "non-" },
                lspci_size(b.size())
            );
        }
    }
    o
}

fn pci_vid_pid_text(pci: &[pci::PciFunction]) -> String {
    let mut o = String::new();
    for f in pci {
        let _ = writeln!(
            o,
            "{} {:04x}: {:04x}:{:04x}{}",
            f.bdf_text(),
            f.class >> 8,
            f.vendor,
            f.device_id,
            rev_suffix(f)
        );
    }
    o
}

fn max_msix_text(pci: &[pci::PciFunction]) -> String {
    pci.iter()
        .flat_map(|f| f.capabilities.iter().filter_map(|c| c.msix))
        .map(|m| m.table_size)
        .max()
        .map(|m| m.to_string())
        .unwrap_or_default()
}

fn reset_text(fadt: Option<&acpi::Fadt>) -> String {
    let Some(r) = fadt.and_then(|f| f.reset_reg.map(|r| (r, f.reset_value))) else {
        return String::new();
    };
    let mut o = String::new();
    define(
        &mut o,
        "RESET_REGISTER_ADDRESS",
        &format!("0x{:X}UL", r.0.address),
    );
    define(&mut o, "RESET_REGISTER_SPACE_ID", &space_name(r.0.space_id));
    define(&mut o, "RESET_REGISTER_VALUE", &format!("{:#x}U", r.1));
    o
}

fn pm_text(fadt: Option<&acpi::Fadt>) -> String {
    let Some(f) = fadt else {
        return String::new();
    };
    let mut o = String::new();
    for (name, g) in [
        ("PM1A_EVT", f.pm1a_evt),
        ("PM1B_EVT", f.pm1b_evt),
        ("PM1A_CNT", f.pm1a_cnt),
        ("PM1B_CNT", f.pm1b_cnt),
    ] {
        define(&mut o, &format!("{name}_SPACE_ID"), &space_name(g.space_id));
        define(
            &mut o,
            &format!("{name}_BIT_WIDTH"),
            &format!("{:#x}U", g.bit_width),
        );
        define(
            &mut o,
            &format!("{name}_BIT_OFFSET"),
            &format!("{:#x}U", g.bit_offset),
        );
        define(
            &mut o,
            &format!("{name}_ADDRESS"),
            &format!("0x{:X}UL", g.address),
        );
        define(
            &mut o,
            &format!("{name}_ACCESS_SIZE"),
            &format!("{:#x}U", g.access_size),
        );
    }
    o
}

fn mmcfg_text(mcfg: Option<&[acpi::McfgEntry]>) -> String {
    match mcfg.and_then(|m| m.iter().find(|e| e.segment == 0)) {
        Some(e) => format!(
            "/* PCI mmcfg base of MCFG */\n#define DEFAULT_PCI_MMCFG_BASE   {:#x}UL\n",
            e.base
        ),
        None => {
            "/* no MCFG table: PCI configuration space through ports 0xcf8/0xcfc only */\n".into()
        }
    }
}

fn clos_text(cpus: &[CpuInfo]) -> String {
    let Some(c) = cpus.first() else {
        return String::new();
    };
    let mut o = String::new();
    for level in [2, 3] {
        if let Some((mask, clos, _)) = c.dump.cat(level) {
            let _ = writeln!(o, "rdt resources supported: L{level}");
            let _ = writeln!(o, "rdt resource clos max: {clos}");
            let _ = writeln!(o, "rdt resource mask max: '{:#x}'", (1u64 << mask) - 1);
        }
    }
    o
}

#[cfg(test)]
mod tests;
