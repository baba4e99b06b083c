//! The board model: everything the configurator needs to know about the machine, read from an
//! ACRN board XML file (`<acrn-config board="NAME">`, written by ACRN's board inspector).
//!
//! A board file has two halves (see `reference/acrn-config.md` §2): 23 raw-text sections
//! (parsed by [`legacy`]; our optional `IVRS_INFO` is kept like them) and the structured
//! sections `processors`, `caches`, `memory`, `ioapics`, `devices` and optional
//! `device-classes` (read by `parse`). [`load_board`] reads both into a [`Board`], reporting
//! every problem at once with its file position.

pub mod legacy;
mod model;
mod parse;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use legacy::{
    Bdf, IomemRange, LspciDevice, LspciRegion, MmcfgRegion, PciVidPid, SerialAccess, SerialPort,
};
pub use model::*;

use crate::xml::{self, Document, Element, Span, XmlError};
use legacy::{LineProblem, TextOrigin};

/// The 23 raw-text sections, in the order the board inspector writes them.
pub const LEGACY_SECTIONS: [&str; 23] = [
    "BIOS_INFO",
    "BASE_BOARD_INFO",
    "PCI_DEVICE",
    "PCI_VID_PID",
    "WAKE_VECTOR_INFO",
    "RESET_REGISTER_INFO",
    "PM_INFO",
    "S3_INFO",
    "S5_INFO",
    "DRHD_INFO",
    "CPU_BRAND",
    "CX_INFO",
    "PX_INFO",
    "MMCFG_BASE_INFO",
    "TPM_INFO",
    "CLOS_INFO",
    "IOMEM_INFO",
    "BLOCK_DEVICE_INFO",
    "TTYS_INFO",
    "AVAILABLE_IRQ_INFO",
    "TOTAL_MEM_INFO",
    "CPU_PROCESSOR_INFO",
    "MAX_MSIX_TABLE_NUM",
];

/// Raw-text sections of our extension of the format, kept verbatim when present (ACRN's tools
/// ignore unknown sections, and its boards have none of them).
pub const OPTIONAL_LEGACY_SECTIONS: [&str; 1] = [
    // The AMD IOMMUs of the ACPI IVRS table, written by `acrn-configurator inspect`.
    "IVRS_INFO",
];

/// One problem found in a board file, located in that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardProblem {
    pub span: Span,
    /// Section (top-level element) the problem is in.
    pub section: String,
    pub message: String,
}

impl fmt::Display for BoardProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.span.line, self.span.column, self.section, self.message
        )
    }
}

impl From<LineProblem> for BoardProblem {
    fn from(p: LineProblem) -> Self {
        BoardProblem {
            span: p.span,
            section: p.section.to_string(),
            message: format!("{} (line: `{}`)", p.message, p.line_text),
        }
    }
}

/// Why a board file could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BoardError {
    /// Not readable, or not well-formed XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// The root element is not `<acrn-config board="...">`.
    #[error("{}:{}:{}: not an ACRN board file: {reason}", .path.display(), .span.line, .span.column)]
    NotABoard {
        path: PathBuf,
        span: Span,
        reason: String,
    },
    /// The file is an ACRN scenario (it has `<hv>`/`<vm>`), given where a board was expected.
    #[error("{}:{}:{}: this is a scenario file (it has <hv>/<vm> and no `board` attribute), not a board file", .path.display(), .span.line, .span.column)]
    ScenarioGivenAsBoard { path: PathBuf, span: Span },
    /// The file is a board file with malformed content; every problem is listed.
    #[error("{}", format_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<BoardProblem>,
    },
}

fn format_problems(path: &Path, problems: &[BoardProblem]) -> String {
    let mut s = format!(
        "{}: {} problem(s) in board file",
        path.display(),
        problems.len()
    );
    for p in problems {
        s.push_str(&format!("\n{}:{p}", path.display()));
    }
    s
}

/// Reads a board file.
pub fn load_board(path: &Path) -> Result<Board, BoardError> {
    let doc = xml::parse_file(path)?;
    board_from_document(&doc)
}

/// Reads a board from text already in memory (`path` is used in messages only).
pub fn load_board_str(path: &Path, text: &str) -> Result<Board, BoardError> {
    let doc = xml::parse_str(path, text)?;
    board_from_document(&doc)
}

/// Builds the board model from a parsed document.
pub fn board_from_document(doc: &Document) -> Result<Board, BoardError> {
    let root = &doc.root;
    let not_board = |reason: String| BoardError::NotABoard {
        path: doc.path.clone(),
        span: root.span,
        reason,
    };
    if root.name != "acrn-config" {
        return Err(not_board(format!(
            "the root element is <{}>, expected <acrn-config board=\"...\">",
            root.name
        )));
    }
    let Some(name) = root.attr("board") else {
        if root.child("hv").is_some() || root.child("vm").is_some() {
            return Err(BoardError::ScenarioGivenAsBoard {
                path: doc.path.clone(),
                span: root.span,
            });
        }
        return Err(not_board("<acrn-config> has no `board` attribute".into()));
    };
    if root.child("hv").is_some() || root.child("vm").is_some() {
        return Err(BoardError::ScenarioGivenAsBoard {
            path: doc.path.clone(),
            span: root.span,
        });
    }

    let lines = xml::LineIndex::new(&doc.source);
    let mut ctx = parse::Ctx::default();
    let legacy = read_legacy(&mut ctx, doc, &lines);

    let mut section = |name: &str, required: bool| -> Option<&Element> {
        let el = root.child(name);
        if el.is_none() && required {
            ctx.problem(root.span, name, format!("missing <{name}> section"));
        }
        el
    };
    let processors_el = section("processors", true);
    let caches_el = section("caches", true);
    let memory_el = section("memory", true);
    let ioapics_el = section("ioapics", true);
    let devices_el = section("devices", true);
    let classes_el = section("device-classes", false);

    let processors = processors_el
        .map(|e| parse::processors(&mut ctx, e))
        .unwrap_or_default();
    let caches = caches_el
        .map(|e| parse::caches(&mut ctx, e))
        .unwrap_or_default();
    let memory = memory_el
        .map(|e| parse::memory(&mut ctx, e))
        .unwrap_or_default();
    let ioapics = ioapics_el
        .map(|e| parse::ioapics(&mut ctx, e))
        .unwrap_or_default();
    let devices = devices_el
        .map(|e| parse::devices(&mut ctx, e))
        .unwrap_or_default();
    let device_classes = classes_el.map(|e| parse::device_classes(&mut ctx, e));

    let board = Board {
        name: name.to_string(),
        legacy,
        processors,
        caches,
        memory,
        ioapics,
        devices,
        device_classes,
        span: root.span,
    };
    // Facts every later stage relies on.
    if let Some(p) = processors_el {
        if board.threads().next().is_none() {
            ctx.problem(p.span, "processors", "no <thread> in <processors>");
        }
    }
    if let Some(m) = memory_el {
        if board.ram_ranges().next().is_none() {
            ctx.problem(m.span, "memory", "no RAM <range> in <memory>");
        }
    }
    if ctx.problems.is_empty() {
        Ok(board)
    } else {
        Err(BoardError::Invalid {
            path: doc.path.clone(),
            problems: ctx.problems,
        })
    }
}

fn read_legacy(ctx: &mut parse::Ctx, doc: &Document, lines: &xml::LineIndex) -> Legacy {
    let root = &doc.root;
    let mut out = Legacy::default();
    let add = |ctx: &mut parse::Ctx, ps: Vec<LineProblem>| {
        ctx.problems.extend(ps.into_iter().map(BoardProblem::from));
    };
    let sections = LEGACY_SECTIONS.iter().map(|n| (*n, true));
    let optional = OPTIONAL_LEGACY_SECTIONS.iter().map(|n| (*n, false));
    for (name, required) in sections.chain(optional) {
        let Some(el) = root.child(name) else {
            if required {
                ctx.problem(root.span, name, format!("missing <{name}> section"));
            }
            continue;
        };
        if let Some(c) = el.children.first() {
            ctx.problem(
                c.span,
                name,
                format!("<{name}> holds text, not elements (found <{}>)", c.name),
            );
            continue;
        }
        // The text starts right after the start tag.
        let text_start = el.span.offset + el.span.len;
        let at = lines.span(&doc.source, text_start, 0);
        let origin = TextOrigin {
            offset: at.offset,
            line: at.line,
            column: at.column,
        };
        let text = el.text.as_str();
        match name {
            "PCI_DEVICE" => {
                let (v, p) = legacy::parse_pci_devices(text, origin);
                out.pci_devices = v;
                add(ctx, p);
            }
            "PCI_VID_PID" => {
                let (v, p) = legacy::parse_vid_pid(text, origin);
                out.pci_vid_pid = v;
                add(ctx, p);
            }
            "TTYS_INFO" => {
                let (v, p) = legacy::parse_ttys(text, origin);
                out.serial_ports = v;
                add(ctx, p);
            }
            "IOMEM_INFO" => {
                let (v, p) = legacy::parse_iomem(text, origin);
                out.iomem_mmcfg = legacy::mmcfg_from_iomem(&v);
                out.iomem = v;
                add(ctx, p);
            }
            "MMCFG_BASE_INFO" => match legacy::parse_mmcfg_base(text, origin) {
                Ok(v) => out.mmcfg_base = v,
                Err(p) => add(ctx, vec![p]),
            },
            "AVAILABLE_IRQ_INFO" | "CPU_PROCESSOR_INFO" => {
                let (v, p) = legacy::parse_int_list(name_static(name), text, origin);
                if name == "AVAILABLE_IRQ_INFO" {
                    out.available_irqs = v;
                } else {
                    out.cpu_processors = v;
                }
                add(ctx, p);
            }
            "TOTAL_MEM_INFO" => {
                match legacy::parse_single_number("TOTAL_MEM_INFO", text, Some("kB"), origin) {
                    Ok(v) => out.total_mem_kb = v,
                    Err(p) => add(ctx, vec![p]),
                }
            }
            "MAX_MSIX_TABLE_NUM" => {
                match legacy::parse_single_number("MAX_MSIX_TABLE_NUM", text, None, origin) {
                    Ok(v) => out.max_msix_table_num = v,
                    Err(p) => add(ctx, vec![p]),
                }
            }
            "CPU_BRAND" => {
                let t = text.trim();
                out.cpu_brand = t
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(t)
                    .to_string();
            }
            _ => {
                out.raw.insert(name.to_string(), text.trim().to_string());
            }
        }
    }
    out
}

fn name_static(name: &str) -> &'static str {
    LEGACY_SECTIONS
        .iter()
        .copied()
        .find(|n| *n == name)
        .unwrap_or("legacy")
}

/// See [`Board::pci_root_bridge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootBridge {
    /// First and last bus it decodes.
    pub buses: (u8, u8),
    /// Memory windows `(first, last)`, inclusive, in address order.
    pub mmio: Vec<(u64, u64)>,
    /// Sorted by device and pin, one per pair.
    pub intx_routes: Vec<IntxRoute>,
}

/// INTx pin `pin` (0 = INTA#) of device `device` on the root bus arrives on `gsi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntxRoute {
    pub device: u8,
    pub pin: u8,
    pub gsi: u32,
}

/// The kind of DMA remapping unit (IOMMU) a board has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IommuKind {
    /// Intel VT-d: `DRHD_INFO` (ACPI DMAR) lists a remapping unit.
    IntelVtd,
    /// AMD-Vi: `IVRS_INFO` (ACPI IVRS) lists an IOMMU.
    AmdVi,
}

/// A physical CPU as the later stages see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pcpu {
    pub cpu_id: u32,
    pub apic_id: u32,
    pub core_type: Option<CoreType>,
}

impl Board {
    /// All threads, in document order.
    pub fn threads(&self) -> impl Iterator<Item = &Thread> {
        let mut stack: Vec<&TopologyNode> = self.processors.topology.iter().rev().collect();
        let mut pending: std::slice::Iter<'_, Thread> = [].iter();
        std::iter::from_fn(move || loop {
            if let Some(t) = pending.next() {
                return Some(t);
            }
            let n = stack.pop()?;
            stack.extend(n.children.iter().rev());
            pending = n.threads.iter();
        })
    }

    /// pCPUs sorted by `cpu_id`.
    pub fn pcpus(&self) -> Vec<Pcpu> {
        let mut v: Vec<Pcpu> = self
            .threads()
            .map(|t| Pcpu {
                cpu_id: t.cpu_id,
                apic_id: t.apic_id,
                core_type: t.core_type,
            })
            .collect();
        v.sort_by_key(|p| p.cpu_id);
        v
    }

    /// The thread with this Linux CPU number.
    pub fn thread(&self, cpu_id: u32) -> Option<&Thread> {
        self.threads().find(|t| t.cpu_id == cpu_id)
    }

    /// RAM ranges of `memory` (`range[not(@id) or @id='RAM']`).
    pub fn ram_ranges(&self) -> impl Iterator<Item = &MemoryRange> {
        self.memory.iter().filter(|r| r.is_ram())
    }

    /// Total RAM in bytes over [`Board::ram_ranges`].
    pub fn total_ram(&self) -> u64 {
        self.ram_ranges().map(|r| r.size).sum()
    }

    /// `System RAM` ranges of `IOMEM_INFO` (what ACRN's HV RAM allocator reads).
    pub fn iomem_system_ram(&self) -> impl Iterator<Item = &IomemRange> {
        self.legacy.iomem.iter().filter(|r| r.name == "System RAM")
    }

    /// Every node of the device tree, depth-first.
    pub fn device_nodes(&self) -> impl Iterator<Item = &DeviceNode> {
        self.devices.nodes.iter().flat_map(DeviceNode::walk)
    }

    /// PCI functions of the device tree (nodes with a computed BDF).
    pub fn pci_functions(&self) -> impl Iterator<Item = &DeviceNode> {
        self.device_nodes().filter(|n| n.bdf.is_some())
    }

    /// The PCI function at `bdf` in the device tree; an entry with IDs wins over a bare ACPI
    /// object at the same address.
    pub fn pci_function(&self, bdf: Bdf) -> Option<&DeviceNode> {
        let mut first = None;
        for n in self.pci_functions().filter(|n| n.bdf == Some(bdf)) {
            if n.vendor.is_some() {
                return Some(n);
            }
            first.get_or_insert(n);
        }
        first
    }

    /// The `PCI_DEVICE` (lspci) entry for `bdf`.
    pub fn lspci_device(&self, bdf: Bdf) -> Option<&LspciDevice> {
        self.legacy.pci_devices.iter().find(|d| d.bdf == bdf)
    }

    /// The `PCI_VID_PID` entry for `bdf`.
    pub fn vid_pid(&self, bdf: Bdf) -> Option<&PciVidPid> {
        self.legacy.pci_vid_pid.iter().find(|d| d.bdf == bdf)
    }

    /// The `TTYS_INFO` serial port with this device path (e.g. `/dev/ttyS0`).
    pub fn serial_port(&self, dev_path: &str) -> Option<&SerialPort> {
        self.legacy
            .serial_ports
            .iter()
            .find(|p| p.dev_path == dev_path)
    }

    /// Highest PCI bus number in the device tree (`max(//bus[@type='pci']/@address)`).
    pub fn max_pci_bus(&self) -> u8 {
        self.device_nodes()
            .filter(|n| n.kind == NodeKind::Bus && n.bus_type.as_deref() == Some("pci"))
            .filter_map(|n| n.address.and_then(|a| u8::try_from(a).ok()))
            .max()
            .unwrap_or(0)
    }

    /// `physical_address_bits` of the (first) CPU model.
    pub fn physical_address_bits(&self) -> Option<u32> {
        self.processors.models.iter().find_map(|m| {
            m.attributes
                .get("physical_address_bits")
                .and_then(|v| legacy::parse_c_int(v))
                .and_then(|v| u32::try_from(v).ok())
        })
    }

    /// Whether any CPU model lists this capability (`vmx`, `svm`, `gbyte_pages`, ...).
    pub fn has_cpu_capability(&self, id: &str) -> bool {
        self.processors
            .models
            .iter()
            .any(|m| m.capabilities.iter().any(|c| c == id))
    }

    /// Caches that support CAT.
    pub fn cat_caches(&self) -> impl Iterator<Item = &Cache> {
        self.caches.caches.iter().filter(|c| c.cat.is_some())
    }

    /// Caches with a Software SRAM region.
    pub fn software_sram_caches(&self) -> impl Iterator<Item = &Cache> {
        self.caches
            .caches
            .iter()
            .filter(|c| c.software_sram.is_some())
    }

    /// The host bridge of PCI bus 0 as the firmware describes it (the first PCI bus at address
    /// 0 in the device tree), with its INTx routes resolved to GSIs; `None` without one that
    /// has a memory window.
    pub fn pci_root_bridge(&self) -> Option<RootBridge> {
        let root = self.device_nodes().find(|n| {
            n.kind == NodeKind::Bus
                && n.bus_type.as_deref() == Some("pci")
                && n.address.unwrap_or(0) == 0
        })?;
        let mut mmio: Vec<(u64, u64)> = root
            .resources
            .iter()
            .filter(|r| r.kind == "memory")
            .filter_map(|r| Some((r.min?, r.max?)))
            .filter(|(min, max)| min <= max)
            .collect();
        if mmio.is_empty() {
            return None;
        }
        mmio.sort_unstable();
        let buses = root
            .resources
            .iter()
            .find(|r| r.kind == "bus_number")
            .and_then(|r| Some((u8::try_from(r.min?).ok()?, u8::try_from(r.max?).ok()?)))
            .filter(|(first, last)| first <= last)
            .unwrap_or((0, self.max_pci_bus()));
        let mut intx_routes: Vec<IntxRoute> = root
            .intx_routing
            .iter()
            .filter_map(|r| {
                let (device, pin) = r.device_pin()?;
                Some(IntxRoute {
                    device,
                    pin,
                    gsi: self.route_gsi(r)?,
                })
            })
            .collect();
        intx_routes.sort_unstable_by_key(|r| (r.device, r.pin));
        intx_routes.dedup_by_key(|r| (r.device, r.pin));
        Some(RootBridge {
            buses,
            mmio,
            intx_routes,
        })
    }

    /// The GSI a `_PRT` entry names: its source as a number, or the one interrupt of the link
    /// device its source names.
    fn route_gsi(&self, r: &PinRoute) -> Option<u32> {
        if let Ok(gsi) = r.source.parse::<u32>() {
            return Some(gsi);
        }
        let link = self
            .device_nodes()
            .find(|n| n.acpi_object.as_deref() == Some(r.source.as_str()))?;
        match link.resources.iter().find(|res| res.kind == "irq")?.irqs[..] {
            [gsi] => Some(gsi),
            _ => None,
        }
    }

    /// The board's IOMMU: VT-d when `DRHD_INFO` defines `DRHD0_REG_BASE`, else AMD-Vi when
    /// `IVRS_INFO` defines `IVHD0_REG_BASE`.
    pub fn iommu(&self) -> Option<IommuKind> {
        let defines = |section: &str, name: &str| {
            self.legacy.raw.get(section).is_some_and(|t| {
                t.lines().any(|l| {
                    let mut w = l.split_whitespace();
                    w.next() == Some("#define") && w.next() == Some(name)
                })
            })
        };
        if defines("DRHD_INFO", "DRHD0_REG_BASE") {
            Some(IommuKind::IntelVtd)
        } else if defines("IVRS_INFO", "IVHD0_REG_BASE") {
            Some(IommuKind::AmdVi)
        } else {
            None
        }
    }

    /// PCI ECAM base: `MMCFG_BASE_INFO`, else the `IOMEM_INFO` MMCONFIG line.
    pub fn mmcfg_base(&self) -> Option<u64> {
        self.legacy
            .mmcfg_base
            .or(self.legacy.iomem_mmcfg.map(|m| m.base))
    }
}

impl Cache {
    /// The waymasks of a `parameter` (e.g. `IA Waymask`), in order.
    pub fn waymasks(&self, parameter_id: &str) -> Vec<u64> {
        self.parameters
            .iter()
            .filter(|p| p.id == parameter_id)
            .flat_map(|p| p.values.iter())
            .filter(|f| f.name == "waymask")
            .filter_map(|f| legacy::parse_c_int(&f.value))
            .collect()
    }
}
