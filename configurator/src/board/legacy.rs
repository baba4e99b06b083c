//! Parsers for the raw-text sections of a board file (the part the ACRN board inspector prints
//! with `print()`: `/proc/iomem`, `lspci` output, `key:value` tokens, C `#define` lines).
//!
//! Every parser is pure: it takes the section text and a [`TextOrigin`] saying where that text
//! starts in the file, and returns typed items (each with the location of its line) plus the
//! problems it found. Parsers never panic, whatever the input.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::xml::Span;

/// Where a section's text starts in the file, to turn positions inside the text into
/// file positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TextOrigin {
    /// Byte offset of the first byte of the text in the file.
    pub offset: usize,
    /// 1-based line of that byte.
    pub line: u32,
    /// 1-based column (in characters) of that byte.
    pub column: u32,
}

impl TextOrigin {
    /// The span of `len` bytes at byte `at` of `text` (the section text this origin belongs to).
    /// Lines and columns are exact; offsets are exact unless the section used XML escapes.
    pub fn span(&self, text: &str, at: usize, len: usize) -> Span {
        let at = floor_char_boundary(text, at.min(text.len()));
        let before = &text[..at];
        let newlines = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col_chars = before[line_start..].chars().count();
        let column = if newlines == 0 {
            self.column as usize + col_chars
        } else {
            col_chars + 1
        };
        Span {
            offset: self.offset + at,
            len: len.min(text.len() - at),
            line: self
                .line
                .saturating_add(u32::try_from(newlines).unwrap_or(u32::MAX)),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A problem in one line of a raw-text section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// The section (element) name, e.g. `TTYS_INFO`.
    pub section: &'static str,
    /// The offending line, trimmed.
    pub line_text: String,
    pub message: String,
    pub span: Span,
}

/// Non-blank lines of a section with their byte offset (of the first non-blank character)
/// inside the text.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').filter_map(move |raw| {
        let start = offset;
        offset += raw.len();
        let lead = raw.len() - raw.trim_start().len();
        let t = raw.trim();
        (!t.is_empty()).then_some((start + lead, t))
    })
}

/// Parses an unsigned integer written in hex (`0x` prefix) or decimal, with optional C
/// suffixes `U`/`L`/`UL`.
pub fn parse_c_int(s: &str) -> Option<u64> {
    let s = s.trim().trim_end_matches(['U', 'L', 'u', 'l']);
    if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// A PCI bus/device/function number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Bdf {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl Bdf {
    /// A BDF if the numbers are in range (device < 32, function < 8).
    pub fn new(bus: u32, device: u32, function: u32) -> Option<Bdf> {
        (bus < 256 && device < 32 && function < 8).then_some(Bdf {
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }

    /// Parses `BB:DD.F` with each number in the given radix.
    pub fn parse_radix(s: &str, radix: u32) -> Option<Bdf> {
        let (bus, rest) = s.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let num = |x: &str| {
            if x.is_empty() || x.len() > 4 {
                None
            } else {
                u32::from_str_radix(x, radix).ok()
            }
        };
        Bdf::new(num(bus)?, num(dev)?, num(func)?)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02x}:{:02x}.{:x}",
            self.bus, self.device, self.function
        )
    }
}

impl FromStr for Bdf {
    type Err = String;
    /// `BB:DD.F` in hex, as lspci prints it.
    fn from_str(s: &str) -> Result<Bdf, String> {
        Bdf::parse_radix(s.trim(), 16).ok_or_else(|| format!("`{s}` is not a BDF (BB:DD.F)"))
    }
}

// ---------------------------------------------------------------------------------------------
// TTYS_INFO

/// How a UART is accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SerialAccess {
    Portio,
    Mmio,
}

/// One line of `TTYS_INFO`: `seri:/dev/ttyS0 type:portio base:0x3F8 irq:4 [bdf:..] [width:4byte]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SerialPort {
    pub dev_path: String,
    pub access: SerialAccess,
    /// I/O port or MMIO base address.
    pub base: u64,
    pub irq: Option<u32>,
    /// PCI function of a PCI UART. Port-I/O UARTs print it unquoted in decimal
    /// (`bdf:0:22.3`), MMIO UARTs quoted in hex (`bdf:"00:1e.0"`); both end up here.
    pub bdf: Option<Bdf>,
    /// Register width in bytes (`width:4byte`), when given.
    pub reg_width: Option<u8>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// Parses `TTYS_INFO`.
pub fn parse_ttys(text: &str, origin: TextOrigin) -> (Vec<SerialPort>, Vec<LineProblem>) {
    let mut ports = Vec::new();
    let mut problems = Vec::new();
    for (at, line) in lines(text) {
        let span = origin.span(text, at, line.len());
        match parse_tty_line(line) {
            Ok(mut p) => {
                p.span = span;
                ports.push(p);
            }
            Err(message) => problems.push(LineProblem {
                section: "TTYS_INFO",
                line_text: line.to_string(),
                message,
                span,
            }),
        }
    }
    (ports, problems)
}

fn parse_tty_line(line: &str) -> Result<SerialPort, String> {
    let (mut dev, mut access, mut base, mut irq, mut bdf, mut width) =
        (None, None, None, None, None, None);
    for tok in line.split_whitespace() {
        let Some((key, value)) = tok.split_once(':') else {
            return Err(format!("token `{tok}` is not key:value"));
        };
        match key {
            "seri" => dev = Some(value.to_string()),
            "type" => {
                access = Some(match value {
                    "portio" => SerialAccess::Portio,
                    "mmio" => SerialAccess::Mmio,
                    _ => return Err(format!("type `{value}` is neither portio nor mmio")),
                })
            }
            "base" => base = Some(parse_c_int(value).ok_or_else(|| format!("bad base `{value}`"))?),
            "irq" => {
                irq = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| format!("bad irq `{value}`"))?,
                )
            }
            "bdf" => {
                let parsed = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                    Some(quoted) => Bdf::parse_radix(quoted, 16),
                    None => Bdf::parse_radix(value, 10),
                };
                bdf = Some(parsed.ok_or_else(|| format!("bad bdf `{value}`"))?);
            }
            "width" => {
                let n = value
                    .strip_suffix("byte")
                    .and_then(|n| n.parse::<u8>().ok())
                    .filter(|n| matches!(n, 1 | 2 | 4 | 8))
                    .ok_or_else(|| format!("bad width `{value}` (expected 1byte, 2byte, 4byte)"))?;
                width = Some(n);
            }
            _ => return Err(format!("unknown key `{key}`")),
        }
    }
    let dev_path = dev.ok_or("missing seri:/dev/ttySn")?;
    if dev_path.is_empty() {
        return Err("empty seri: device path".into());
    }
    Ok(SerialPort {
        dev_path,
        access: access.ok_or("missing type:portio|mmio")?,
        base: base.ok_or("missing base:")?,
        irq,
        bdf,
        reg_width: width,
        span: Span::default(),
    })
}

// ---------------------------------------------------------------------------------------------
// IOMEM_INFO

/// One line of `/proc/iomem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IomemRange {
    pub start: u64,
    /// Inclusive end, as `/proc/iomem` prints it.
    pub end: u64,
    pub name: String,
    /// Nesting depth in the tree (0 = top level).
    pub depth: u32,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// The PCI ECAM window from the `PCI MMCONFIG 0000 [bus 00-ff]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MmcfgRegion {
    pub base: u64,
    /// Inclusive end.
    pub end: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

/// Parses `IOMEM_INFO`. Depth comes from indentation relative to the least indented line
/// (two columns per level, as the kernel prints it).
pub fn parse_iomem(text: &str, origin: TextOrigin) -> (Vec<IomemRange>, Vec<LineProblem>) {
    let indent_of = |text: &str, at: usize| {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..at].chars().count()
    };
    let base_indent = lines(text).map(|(at, _)| indent_of(text, at)).min();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (at, line) in lines(text) {
        let span = origin.span(text, at, line.len());
        let parsed = line.split_once(" : ").and_then(|(range, name)| {
            let (s, e) = range.trim().split_once('-')?;
            let start = u64::from_str_radix(s, 16).ok()?;
            let end = u64::from_str_radix(e, 16).ok()?;
            (start <= end).then(|| (start, end, name.trim().to_string()))
        });
        match parsed {
            Some((start, end, name)) => {
                let indent = indent_of(text, at) - base_indent.unwrap_or(0);
                out.push(IomemRange {
                    start,
                    end,
                    name,
                    depth: u32::try_from(indent / 2).unwrap_or(u32::MAX),
                    span,
                });
            }
            None => problems.push(LineProblem {
                section: "IOMEM_INFO",
                line_text: line.to_string(),
                message: "expected `START-END : NAME` with hex START <= END".into(),
                span,
            }),
        }
    }
    (out, problems)
}

/// The MMCONFIG window of `/proc/iomem`, if the kernel listed one
/// (`PCI MMCONFIG 0000 [bus 00-ff]`).
pub fn mmcfg_from_iomem(ranges: &[IomemRange]) -> Option<MmcfgRegion> {
    ranges.iter().find_map(|r| {
        let rest = r.name.strip_prefix("PCI MMCONFIG ")?;
        let (seg, buses) = rest.split_once(' ')?;
        let buses = buses.trim().strip_prefix("[bus ")?.strip_suffix(']')?;
        let (a, b) = buses.split_once('-')?;
        Some(MmcfgRegion {
            base: r.start,
            end: r.end,
            segment: u16::from_str_radix(seg, 16).ok()?,
            bus_start: u8::from_str_radix(a, 16).ok()?,
            bus_end: u8::from_str_radix(b, 16).ok()?,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// C #define sections

/// `#define NAME VALUE` lines of a section (comments and other lines are skipped).
pub fn defines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    lines(text).filter_map(|(_, l)| {
        let rest = l.strip_prefix("#define")?;
        let mut it = rest.split_whitespace();
        Some((it.next()?, it.next()?))
    })
}

/// Parses `MMCFG_BASE_INFO` (`#define DEFAULT_PCI_MMCFG_BASE 0x...UL`; the `MMCONFIG`
/// spelling is accepted too). `Ok(None)` when the section has no such define.
pub fn parse_mmcfg_base(text: &str, origin: TextOrigin) -> Result<Option<u64>, LineProblem> {
    for (at, line) in lines(text) {
        let Some(rest) = line.strip_prefix("#define") else {
            continue;
        };
        let mut it = rest.split_whitespace();
        let name = it.next().unwrap_or("");
        if name != "DEFAULT_PCI_MMCFG_BASE" && name != "DEFAULT_PCI_MMCONFIG_BASE" {
            continue;
        }
        let value = it.next().unwrap_or("");
        return parse_c_int(value).map(Some).ok_or_else(|| LineProblem {
            section: "MMCFG_BASE_INFO",
            line_text: line.to_string(),
            message: format!("`{value}` is not a number"),
            span: origin.span(text, at, line.len()),
        });
    }
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// PCI_DEVICE (lspci -vv, filtered) and PCI_VID_PID (lspci -n)

/// A memory BAR line of `lspci -vv`: `Region N: Memory at ADDR (64-bit, prefetchable) [size=16K]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LspciRegion {
    pub index: u8,
    /// `None` when lspci printed `<ignored>` or `<unassigned>`.
    pub address: Option<u64>,
    pub is_64bit: bool,
    pub prefetchable: bool,
    /// Size in bytes, when printed.
    pub size: Option<u64>,
    pub disabled: bool,
    pub virtual_: bool,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

/// One function in `PCI_DEVICE`: `BB:DD.F Class: Vendor Device (rev NN)` plus its regions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LspciDevice {
    pub bdf: Bdf,
    /// The class text, e.g. `Host bridge` or `Unclassified device [00ff]`.
    pub class: String,
    /// Vendor and device names as lspci printed them (with any `(rev NN)`).
    pub name: String,
    pub regions: Vec<LspciRegion>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

fn lspci_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' => (&s[..s.len() - 1], 1 << 20),
        b'G' => (&s[..s.len() - 1], 1 << 30),
        b'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn parse_region(line: &str) -> Result<LspciRegion, String> {
    let rest = line.strip_prefix("Region ").ok_or("not a Region line")?;
    let (idx, rest) = rest
        .split_once(':')
        .ok_or("missing `:` after region number")?;
    let index = idx
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|i| *i < 6)
        .ok_or_else(|| format!("bad region number `{idx}`"))?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("Memory at ")
        .ok_or("only `Memory at` regions are expected here")?;
    let (addr, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let address = if addr.starts_with('<') {
        None
    } else {
        Some(u64::from_str_radix(addr, 16).map_err(|_| format!("bad address `{addr}`"))?)
    };
    let rest = rest.trim_start();
    let (flags, rest) = rest
        .strip_prefix('(')
        .and_then(|r| r.split_once(')'))
        .ok_or("missing `(NN-bit, [non-]prefetchable)`")?;
    let (bits, pf) = flags.split_once(',').ok_or("bad flags")?;
    let is_64bit = match bits.trim() {
        "64-bit" => true,
        "32-bit" | "low-1M" => false,
        other => return Err(format!("bad width `{other}`")),
    };
    let prefetchable = match pf.trim() {
        "prefetchable" => true,
        "non-prefetchable" => false,
        other => return Err(format!("bad prefetch flag `{other}`")),
    };
    let (mut size, mut disabled, mut virtual_) = (None, false, false);
    for tag in rest.split('[').skip(1) {
        let tag = tag.trim().trim_end_matches(']');
        if let Some(s) = tag.strip_prefix("size=") {
            size = Some(lspci_size(s).ok_or_else(|| format!("bad size `{s}`"))?);
        } else if tag == "disabled" {
            disabled = true;
        } else if tag == "virtual" {
            virtual_ = true;
        }
    }
    Ok(LspciRegion {
        index,
        address,
        is_64bit,
        prefetchable,
        size,
        disabled,
        virtual_,
        span: Span::default(),
    })
}

/// Parses `PCI_DEVICE`.
pub fn parse_pci_devices(text: &str, origin: TextOrigin) -> (Vec<LspciDevice>, Vec<LineProblem>) {
    let mut out: Vec<LspciDevice> = Vec::new();
    let mut problems = Vec::new();
    for (at, line) in lines(text) {
        let span = origin.span(text, at, line.len());
        let mut problem = |message: String| {
            problems.push(LineProblem {
                section: "PCI_DEVICE",
                line_text: line.to_string(),
                message,
                span,
            })
        };
        if line.starts_with("Region ") {
            match (parse_region(line), out.last_mut()) {
                (Ok(mut r), Some(dev)) => {
                    r.span = span;
                    dev.regions.push(r);
                }
                (Ok(_), None) => problem("Region line before any device line".into()),
                (Err(m), _) => problem(m),
            }
            continue;
        }
        let (bdf, rest) = line.split_once(' ').unwrap_or((line, ""));
        let Some(bdf) = Bdf::parse_radix(bdf, 16) else {
            problem("expected `BB:DD.F Class: Name` or `Region N: ...`".into());
            continue;
        };
        let (class, name) = rest.split_once(": ").unwrap_or((rest, ""));
        out.push(LspciDevice {
            bdf,
            class: class.trim().to_string(),
            name: name.trim().to_string(),
            regions: Vec::new(),
            span,
        });
    }
    (out, problems)
}

/// One line of `PCI_VID_PID`: `BB:DD.F CCCC: VVVV:DDDD (rev NN)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PciVidPid {
    pub bdf: Bdf,
    pub class: u16,
    pub vendor: u16,
    pub device: u16,
    pub revision: Option<u8>,
    #[serde(skip)]
    #[schemars(skip)]
    pub span: Span,
}

fn parse_vid_pid_line(line: &str) -> Option<PciVidPid> {
    let mut it = line.split_whitespace();
    let bdf = Bdf::parse_radix(it.next()?, 16)?;
    let class = u16::from_str_radix(it.next()?.strip_suffix(':')?, 16).ok()?;
    let (v, d) = it.next()?.split_once(':')?;
    let revision = match (it.next(), it.next()) {
        (None, _) => None,
        (Some("(rev"), Some(r)) => Some(u8::from_str_radix(r.strip_suffix(')')?, 16).ok()?),
        _ => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some(PciVidPid {
        bdf,
        class,
        vendor: u16::from_str_radix(v, 16).ok()?,
        device: u16::from_str_radix(d, 16).ok()?,
        revision,
        span: Span::default(),
    })
}

/// Parses `PCI_VID_PID`.
pub fn parse_vid_pid(text: &str, origin: TextOrigin) -> (Vec<PciVidPid>, Vec<LineProblem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (at, line) in lines(text) {
        let span = origin.span(text, at, line.len());
        match parse_vid_pid_line(line) {
            Some(mut v) => {
                v.span = span;
                out.push(v);
            }
            None => problems.push(LineProblem {
                section: "PCI_VID_PID",
                line_text: line.to_string(),
                message: "expected `BB:DD.F CCCC: VVVV:DDDD [(rev NN)]`".into(),
                span,
            }),
        }
    }
    (out, problems)
}

// ---------------------------------------------------------------------------------------------
// Small sections

/// Parses a comma-separated list of decimal integers (`AVAILABLE_IRQ_INFO`,
/// `CPU_PROCESSOR_INFO`). Blank text is an empty list.
pub fn parse_int_list(
    section: &'static str,
    text: &str,
    origin: TextOrigin,
) -> (Vec<u32>, Vec<LineProblem>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (at, line) in lines(text) {
        let mut pos = 0;
        for item in line.split(',') {
            let t = item.trim();
            let lead = item.len() - item.trim_start().len();
            if !t.is_empty() {
                match t.parse::<u32>() {
                    Ok(v) => out.push(v),
                    Err(_) => problems.push(LineProblem {
                        section,
                        line_text: line.to_string(),
                        message: format!("`{t}` is not a decimal number"),
                        span: origin.span(text, at + pos + lead, t.len()),
                    }),
                }
            }
            pos += item.len() + 1;
        }
    }
    (out, problems)
}

/// Parses a section holding a single number with an optional unit word, e.g.
/// `TOTAL_MEM_INFO` (`4038724 kB`) or `MAX_MSIX_TABLE_NUM` (`16`). Blank text is `Ok(None)`.
pub fn parse_single_number(
    section: &'static str,
    text: &str,
    unit: Option<&str>,
    origin: TextOrigin,
) -> Result<Option<u64>, LineProblem> {
    let mut it = lines(text);
    let Some((at, line)) = it.next() else {
        return Ok(None);
    };
    let mut words = line.split_whitespace();
    let number = words.next().and_then(|w| w.parse::<u64>().ok());
    let rest: Vec<&str> = words.collect();
    let unit_ok = match unit {
        Some(u) => rest.is_empty() || rest == [u],
        None => rest.is_empty(),
    };
    match number {
        Some(n) if unit_ok && it.next().is_none() => Ok(Some(n)),
        _ => Err(LineProblem {
            section,
            line_text: line.to_string(),
            message: match unit {
                Some(u) => format!("expected one decimal number followed by `{u}`"),
                None => "expected one decimal number".into(),
            },
            span: origin.span(text, at, line.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const O: TextOrigin = TextOrigin {
        offset: 100,
        line: 10,
        column: 14,
    };

    #[test]
    fn ttys_both_bdf_encodings_and_width() {
        let text = "\n\tseri:/dev/ttyS0 type:portio base:0x3F8 irq:4\n\tseri:/dev/ttyS6 type:portio base:0x30A0 irq:19 bdf:0:22.3\n\tseri:/dev/ttyS7 type:mmio base:0x4017000000 width:4byte irq:16 bdf:\"00:1e.0\"\n\t";
        let (p, e) = parse_ttys(text, O);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].base, 0x3f8);
        assert_eq!(p[0].irq, Some(4));
        assert_eq!(p[0].access, SerialAccess::Portio);
        assert_eq!(p[1].bdf, Bdf::new(0, 22, 3));
        assert_eq!(p[1].bdf.unwrap().to_string(), "00:16.3");
        assert_eq!(p[2].bdf, Bdf::new(0, 0x1e, 0));
        assert_eq!(p[2].access, SerialAccess::Mmio);
        assert_eq!(p[2].reg_width, Some(4));
        assert_eq!((p[0].span.line, p[0].span.column), (11, 2));
        assert_eq!((p[2].span.line, p[2].span.column), (13, 2));
    }

    #[test]
    fn ttys_bad_line_is_located() {
        let text = "\n  seri:/dev/ttyS0 type:portio base:0x3F8 irq:4\n  seri:/dev/ttyS1 type:usb base:0x2F8 irq:3\n";
        let (p, e) = parse_ttys(text, O);
        assert_eq!(p.len(), 1);
        assert_eq!(e.len(), 1);
        assert_eq!((e[0].span.line, e[0].span.column), (12, 3));
        assert!(e[0].message.contains("usb"), "{}", e[0].message);
        for bad in [
            "seri:/dev/ttyS0 base:0x3F8",
            "type:portio base:0x3F8",
            "seri:/dev/ttyS0 type:portio base:zz",
            "seri:/dev/ttyS0 type:portio base:0x1 bdf:\"0g:00.0\"",
            "seri:/dev/ttyS0 type:portio base:0x1 bdf:0:40.0",
            "seri:/dev/ttyS0 type:portio base:0x1 width:3byte",
            "garbage",
        ] {
            let (_, e) = parse_ttys(bad, O);
            assert_eq!(e.len(), 1, "{bad}");
        }
    }

    #[test]
    fn iomem_tree_and_mmcfg() {
        let text = "\n        00000000-00000fff : Reserved\n        00001000-0009fbff : System RAM\n        b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]\n          b0000000-bfffffff : Reserved\n        100000000-17fffffff : System RAM\n            116200000-116e031d0 : Kernel code\n";
        let (r, e) = parse_iomem(text, O);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(r.len(), 6);
        assert_eq!(r[3].depth, 1);
        assert_eq!(r[5].depth, 2);
        assert_eq!(r[4].start, 0x1_0000_0000);
        let m = mmcfg_from_iomem(&r).unwrap();
        assert_eq!(
            (m.base, m.end, m.bus_start, m.bus_end),
            (0xb000_0000, 0xbfff_ffff, 0, 0xff)
        );
        let (_, e) = parse_iomem("  0000-zz : x\n  10-5 : y\n no separator\n", O);
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn mmcfg_define() {
        let t = "\n /* PCI mmcfg base of MCFG */\n #define DEFAULT_PCI_MMCFG_BASE   0xb0000000UL\n";
        assert_eq!(parse_mmcfg_base(t, O), Ok(Some(0xb000_0000)));
        assert_eq!(parse_mmcfg_base("", O), Ok(None));
        assert!(parse_mmcfg_base("#define DEFAULT_PCI_MMCONFIG_BASE nope", O).is_err());
    }

    #[test]
    fn lspci_blocks() {
        let t = "\n00:00.0 Host bridge: Intel Corporation 82G33 DRAM Controller\n01:00.0 Ethernet controller: Red Hat, Inc. Virtio network device (rev 01)\nRegion 1: Memory at fdc80000 (32-bit, non-prefetchable) [size=4K]\nRegion 4: Memory at fea00000 (64-bit, prefetchable) [size=16K]\nRegion 0: Memory at <ignored> (32-bit, non-prefetchable)\nRegion 2: Memory at 6000000000 (64-bit, non-prefetchable) [disabled] [size=16M]\n";
        let (d, e) = parse_pci_devices(t, O);
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].bdf, Bdf::new(1, 0, 0).unwrap());
        assert_eq!(d[1].class, "Ethernet controller");
        assert_eq!(d[1].regions.len(), 4);
        let r = &d[1].regions[1];
        assert_eq!(
            (r.index, r.address, r.is_64bit, r.prefetchable, r.size),
            (4, Some(0xfea0_0000), true, true, Some(16384))
        );
        assert_eq!(d[1].regions[2].address, None);
        assert!(d[1].regions[3].disabled);
        let (_, e) = parse_pci_devices(
            "Region 0: Memory at 1000 (32-bit, non-prefetchable)\nxx\n",
            O,
        );
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn vid_pid() {
        let (v, e) = parse_vid_pid(
            "00:00.0 0600: 8086:29c0\n00:1f.0 0601: 8086:2918 (rev 02)\n",
            O,
        );
        assert!(e.is_empty());
        assert_eq!(
            (v[1].class, v[1].vendor, v[1].device, v[1].revision),
            (0x0601, 0x8086, 0x2918, Some(2))
        );
        let (_, e) = parse_vid_pid("00:00.0 0600 8086:29c0\n", O);
        assert_eq!(e.len(), 1);
    }

    #[test]
    fn small_sections() {
        let (v, e) = parse_int_list("AVAILABLE_IRQ_INFO", "\n 3, 5, 6, 7, 10\n", O);
        assert!(e.is_empty());
        assert_eq!(v, [3, 5, 6, 7, 10]);
        let (v, e) = parse_int_list("CPU_PROCESSOR_INFO", "0, x, 2", O);
        assert_eq!(v, [0, 2]);
        assert_eq!(e[0].span.column, O.column + 3);
        assert_eq!(
            parse_single_number("TOTAL_MEM_INFO", " 4038724 kB\n", Some("kB"), O),
            Ok(Some(4038724))
        );
        assert!(parse_single_number("TOTAL_MEM_INFO", " 4038724 MB\n", Some("kB"), O).is_err());
        assert_eq!(
            parse_single_number("MAX_MSIX_TABLE_NUM", "\n 16 \n", None, O),
            Ok(Some(16))
        );
        assert_eq!(
            parse_single_number("MAX_MSIX_TABLE_NUM", "\n", None, O),
            Ok(None)
        );
        assert_eq!(parse_c_int("0xCF9UL"), Some(0xcf9));
        assert_eq!(parse_c_int("15U"), Some(15));
    }
}
