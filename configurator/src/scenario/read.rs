//! Scenario readers: XML and TOML both become an [`xml::Document`] (TOML keys become
//! elements, with the key's position), which is checked against [`spec`] (structure checks
//! `S0xx`, all findings at once) and then turned into the typed model.
//!
//! Structure check ids (stable):
//! S001 unknown element · S002 missing required element · S003 too many occurrences ·
//! S004 text where elements are expected or the reverse · S005 value not in the enumeration ·
//! S006 value does not match the pattern · S007 number out of range · S008 not a hex number ·
//! S009 not an integer · S010 element does not apply to the VM's load order ·
//! S011 not `y`/`n` · S012 bad or missing `vm` `id` attribute · S013 unknown attribute ·
//! S014 unknown `load_order` · S020 duplicate VM name (vmNameUnique, critical).
//! File-level: F001 cannot read · F002 not well-formed XML/TOML · F003 not a scenario file ·
//! F099 internal error (a bug: please report).

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::model::{LoadOrder, Scenario, Vbdf};
use super::spans::{ElementSpan, SpanTable};
use super::spec::{self, Applies, Kind, Spec, Ty};
use crate::diag::{Finding, Findings, Location};
use crate::xml::{self, Document, Element, LineIndex, Span, XmlError, XmlErrorKind};

/// Turns an XML reader error into a critical finding.
pub(crate) fn xml_error_finding(e: &XmlError) -> Finding {
    let (check, hint) = match &e.kind {
        XmlErrorKind::Io(_) => ("F001", "check the path and the file's permissions"),
        XmlErrorKind::TooLarge { .. } => ("F001", "board and scenario files are well under 1 MB (ACRN's largest board is 290 KB); give a regular file or a FIFO that ends"),
        XmlErrorKind::NotUtf8 => ("F001", "give a UTF-8 text file (XML or TOML)"),
        XmlErrorKind::WrongRoot { .. } => ("F003", "a scenario file starts with <acrn-config>"),
        XmlErrorKind::TooDeep(_) | XmlErrorKind::TooManyElements(_) => {
            ("F002", "this does not look like an ACRN configuration file")
        }
        _ => ("F002", "fix the XML syntax at this position"),
    };
    let loc = match e.span {
        Some(s) => Location::new(&e.path, s),
        None => Location::file(&e.path),
    };
    Finding::critical(check, e.kind.to_string())
        .at(loc)
        .with_hint(hint)
}

/// Reads a scenario file (XML, or TOML by the `.toml` extension) without default population.
pub fn read_scenario_file(path: &Path) -> Result<(Scenario, Findings), Findings> {
    let mut findings = Findings::new();
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    // Read once (bounded, see crate::bounded): a FIFO or /dev/stdin cannot be read twice.
    let text = xml::read_text(path).map_err(|e| one(xml_error_finding(&e)))?;
    let doc = if is_toml {
        toml_to_document(path, &text)?
    } else {
        xml::parse_str(path, &text).map_err(|e| {
            let mut f = one(xml_error_finding(&e));
            f.add_source(path, Arc::from(text.as_str()));
            f
        })?
    };
    findings.add_source(path, doc.source.clone());
    match read_document(&doc) {
        Ok((s, f)) => {
            findings.extend(f);
            Ok((s, findings))
        }
        Err(f) => {
            findings.extend(f);
            Err(findings)
        }
    }
}

fn one(f: Finding) -> Findings {
    let mut fs = Findings::new();
    fs.push(f);
    fs
}

/// Checks a parsed document against the schema and builds the model. `Err` when any
/// structure finding is an error (the model would be meaningless); warnings come with `Ok`.
pub fn read_document(doc: &Document) -> Result<(Scenario, Findings), Findings> {
    let mut r = Reader {
        file: &doc.path,
        findings: Findings::new(),
        spans: SpanTable::new(&doc.path, Some(doc.source.clone())),
    };
    r.findings.add_source(&doc.path, doc.source.clone());
    let root = &doc.root;
    if root.name != "acrn-config" {
        let e = doc.expect_root("acrn-config").err();
        if let Some(e) = e {
            r.findings.push(xml_error_finding(&e));
        }
        return Err(r.findings);
    }
    if root.child("hv").is_none() && root.attr("board").is_some() {
        r.findings.push(
            Finding::critical("F003", "this is a board file, not a scenario file")
                .at(r.loc(root.span))
                .with_hint("pass the board file with --board and a scenario (with <hv> and <vm>) with --scenario"),
        );
        return Err(r.findings);
    }
    let value = r.root(root);
    if r.findings.has_errors() {
        return Err(r.findings);
    }
    match serde_json::from_value::<Scenario>(value) {
        Ok(mut s) => {
            s.spans = r.spans;
            Ok((s, r.findings))
        }
        Err(e) => {
            r.findings.push(
                Finding::critical(
                    "F099",
                    format!("internal error building the scenario model: {e}"),
                )
                .at(r.loc(root.span))
                .with_hint("this is a bug in acrn-configurator; please report it with this file"),
            );
            Err(r.findings)
        }
    }
}

struct Reader<'a> {
    file: &'a Path,
    findings: Findings,
    spans: SpanTable,
}

impl Reader<'_> {
    fn loc(&self, span: Span) -> Location {
        Location::new(self.file, span)
    }

    fn record(&mut self, path: &str, el: &Element) {
        self.spans.insert(
            path.to_string(),
            ElementSpan {
                element: el.span,
                value: el.text_span,
            },
        );
    }

    fn root(&mut self, root: &Element) -> Value {
        let mut obj = Map::new();
        for a in &root.attrs {
            match a.name.as_str() {
                "board" | "scenario" => {
                    obj.insert(a.name.clone(), Value::String(a.value.clone()));
                }
                n if n.starts_with("xmlns") || n.contains(':') => {}
                _ => self.unknown_attr(root, a),
            }
        }
        self.no_text(root);
        let hvs: Vec<&Element> = root.children("hv").collect();
        let vms: Vec<&Element> = root.children("vm").collect();
        for c in &root.children {
            if c.name != "hv" && c.name != "vm" {
                self.unknown(c, &["hv", "vm"], "acrn-config");
            }
        }
        match hvs.as_slice() {
            [] => self.findings.push(
                Finding::error("S002", "missing required element <hv>")
                    .at(self.loc(root.span))
                    .with_hint("add an <hv> element with the hypervisor settings"),
            ),
            [hv, rest @ ..] => {
                for extra in rest {
                    self.findings.push(
                        Finding::error("S003", "<hv> appears more than once")
                            .at(self.loc(extra.span))
                            .with_related(self.loc(hv.span), "first <hv> here")
                            .with_hint("merge the <hv> elements into one"),
                    );
                }
                self.record("hv", hv);
                let v = self.group(hv, spec::HV, "hv", None);
                obj.insert("hv".into(), Value::Object(v));
            }
        }
        if vms.is_empty() {
            self.findings.push(
                Finding::error("S002", "the scenario has no <vm>")
                    .at(self.loc(root.span))
                    .with_hint("add at least one <vm id=\"0\"> element"),
            );
        }
        let mut list = Vec::new();
        let mut names: Vec<(String, Span)> = Vec::new();
        for (i, vm) in vms.iter().enumerate() {
            list.push(Value::Object(self.vm(vm, i)));
            if let Some(n) = vm.child("name") {
                let name = n.text_trim().to_string();
                match names.iter().find(|(m, _)| *m == name) {
                    Some((_, first)) if !name.is_empty() => self.findings.push(
                        Finding::critical(
                            "S020",
                            format!("VM name `{name}` is used by more than one VM"),
                        )
                        .at(self.loc(n.text_span))
                        .with_related(self.loc(*first), "first used here")
                        .with_hint("every <vm> needs a unique <name> (vmNameUnique)"),
                    ),
                    _ => names.push((name, n.text_span)),
                }
            }
        }
        obj.insert("vm".into(), Value::Array(list));
        Value::Object(obj)
    }

    fn vm(&mut self, vm: &Element, i: usize) -> Map<String, Value> {
        let path = format!("vm[{i}]");
        self.record(&path, vm);
        let mut id = None;
        for a in &vm.attrs {
            if a.name == "id" {
                match a.value.trim().parse::<u32>() {
                    Ok(v) => id = Some(v),
                    Err(_) => self.findings.push(
                        Finding::error(
                            "S012",
                            format!("the vm id `{}` is not a non-negative integer", a.value),
                        )
                        .at(self.loc(a.span))
                        .with_hint("number the VMs 0, 1, 2, ..."),
                    ),
                }
            } else {
                self.unknown_attr(vm, a);
            }
        }
        if vm.attr("id").is_none() {
            self.findings.push(
                Finding::error("S012", "<vm> has no id attribute")
                    .at(self.loc(vm.span))
                    .with_hint(format!("write <vm id=\"{i}\">")),
            );
        }
        let applies = vm
            .child("load_order")
            .and_then(|lo| lo.text_trim().parse::<LoadOrder>().ok());
        let mut obj = Map::new();
        obj.insert("id".into(), Value::from(id.unwrap_or(0)));
        obj.extend(self.group(
            vm,
            spec::VM,
            &path,
            Some(applies.map_or(spec::ALL, spec::load_order_bit)),
        ));
        obj
    }

    fn no_text(&mut self, el: &Element) {
        if !el.text_trim().is_empty() {
            self.findings.push(
                Finding::error("S004", format!("<{}> holds elements, not text", el.name))
                    .at(self.loc(el.text_span))
                    .with_hint("remove the stray text"),
            );
        }
    }

    fn unknown_attr(&mut self, el: &Element, a: &xml::Attr) {
        self.findings.push(
            Finding::error(
                "S013",
                format!("unknown attribute `{}` on <{}>", a.name, el.name),
            )
            .at(self.loc(a.span))
            .with_hint("remove the attribute"),
        );
    }

    fn unknown(&mut self, el: &Element, siblings: &[&'static str], parent: &str) {
        let hint = match spec::closest(&el.name, siblings.iter().copied()) {
            Some(s) => format!("did you mean <{s}>?"),
            None => match spec::all_names().into_iter().find(|(n, _)| *n == el.name) {
                Some((_, p)) => format!("<{}> belongs inside <{p}>, not <{parent}>", el.name),
                None => format!("<{parent}> may contain: {}", siblings.join(", ")),
            },
        };
        self.findings.push(
            Finding::error(
                "S001",
                format!("unknown element <{}> in <{parent}>", el.name),
            )
            .at(self.loc(el.span))
            .with_hint(hint),
        );
    }

    /// Checks the children of `el` against `specs`; `applies` is the VM's load order (None
    /// outside `<vm>`). Returns the element as a JSON object shaped like the model.
    fn group(
        &mut self,
        el: &Element,
        specs: &'static [Spec],
        path: &str,
        applies: Option<Applies>,
    ) -> Map<String, Value> {
        self.no_text(el);
        // A <vm>'s own attributes (id) are checked by `vm`.
        if !path.starts_with("vm[") || path.contains('/') {
            for a in &el.attrs {
                self.unknown_attr(el, a);
            }
        }
        let mut obj = Map::new();
        let mut counts = vec![0u32; specs.len()];
        let names: Vec<&'static str> = specs.iter().map(|s| s.name).collect();
        for child in &el.children {
            let Some(k) = specs.iter().position(|s| s.name == child.name) else {
                self.unknown(child, &names, &el.name);
                continue;
            };
            let s = &specs[k];
            let idx = counts[k];
            counts[k] += 1;
            if idx >= s.max {
                self.findings.push(
                    Finding::error(
                        "S003",
                        format!(
                            "<{}> appears more than {} time(s) in <{}>",
                            s.name, s.max, el.name
                        ),
                    )
                    .at(self.loc(child.span))
                    .with_hint("remove the extra element"),
                );
                continue;
            }
            if let Some(a) = applies {
                if a & s.applies == 0 {
                    self.not_applicable(child, s, a);
                    continue;
                }
            }
            let cpath = if s.repeats() {
                format!("{path}/{}[{idx}]", s.name)
            } else {
                format!("{path}/{}", s.name)
            };
            self.record(&cpath, child);
            let value = match s.kind {
                Kind::Group(children) => {
                    Some(Value::Object(self.group(child, children, &cpath, applies)))
                }
                // An empty element is an absent one: a required one is missing.
                Kind::Leaf(ty) if is_empty_leaf(child, ty) => {
                    counts[k] -= 1;
                    continue;
                }
                Kind::Leaf(ty) => self.leaf(child, ty),
            };
            let Some(value) = value else { continue };
            if s.repeats() {
                if let Value::Array(a) = obj
                    .entry(s.name)
                    .or_insert_with(|| Value::Array(Vec::new()))
                {
                    a.push(value);
                }
            } else {
                obj.insert(s.name.to_string(), value);
            }
        }
        for (s, &n) in specs.iter().zip(&counts) {
            let applicable = applies.is_none_or(|a| a & s.applies != 0);
            if applicable && n < s.min && (s.required() || n > 0) {
                let msg = if s.min == 1 {
                    format!("missing required element <{}> in <{}>", s.name, el.name)
                } else {
                    format!(
                        "<{}> needs {} <{}> elements, found {n}",
                        el.name, s.min, s.name
                    )
                };
                self.findings.push(
                    Finding::error("S002", msg)
                        .at(self.loc(el.span))
                        .with_hint(format!("add <{}>", s.name)),
                );
            }
        }
        obj
    }

    fn not_applicable(&mut self, child: &Element, s: &Spec, vm_applies: Applies) {
        let lo = spec::applies_text(vm_applies);
        self.findings.push(
            Finding::error("S010", format!("<{}> does not apply to a {lo}", s.name))
                .at(self.loc(child.span))
                .with_hint(format!(
                    "remove <{}>: it applies only to {}",
                    s.name,
                    spec::applies_text(s.applies)
                )),
        );
    }

    /// Checks a text value (a string may be empty; other types are not asked when empty, see
    /// [`is_empty_leaf`]); `None` when it is wrong (reported).
    fn leaf(&mut self, el: &Element, ty: Ty) -> Option<Value> {
        if let Some(c) = el.children.first() {
            self.findings.push(
                Finding::error("S004", format!("<{}> holds a value, not elements", el.name))
                    .at(self.loc(c.span))
                    .with_hint(format!("<{}> takes text only", el.name)),
            );
            return None;
        }
        let text = el.text_trim();
        if text.is_empty() {
            return Some(Value::String(String::new()));
        }
        match check_value(text, ty) {
            Ok(v) => Some(v),
            Err((mut check, msg, hint)) => {
                if el.name == "load_order" {
                    check = "S014";
                }
                let f = Finding::error(check, format!("<{}>: {msg}", el.name))
                    .at(self.loc(el.text_span));
                self.findings.push(match hint {
                    Some(h) => f.with_hint(h),
                    None => f,
                });
                None
            }
        }
    }
}

/// Whether `el` is a leaf of a non-string type with no value (`<x/>`, `<x> </x>`), which reads
/// as absent.
fn is_empty_leaf(el: &Element, ty: Ty) -> bool {
    ty != Ty::Str && el.children.is_empty() && el.text_trim().is_empty()
}

type ValueError = (&'static str, String, Option<String>);

/// Checks `text` (trimmed, non-empty) against `ty`; returns the JSON value for the model.
pub(crate) fn check_value(text: &str, ty: Ty) -> Result<Value, ValueError> {
    let s = || Ok(Value::String(text.to_string()));
    match ty {
        Ty::Str => s(),
        Ty::Bool => match text {
            "y" => Ok(Value::Bool(true)),
            "n" => Ok(Value::Bool(false)),
            _ => Err((
                "S011",
                format!("`{text}` is not y or n"),
                Some("write y or n".into()),
            )),
        },
        Ty::Int { min, max } | Ty::PowerOfTwo { min, max } => {
            let v: i64 = text.parse().map_err(|_| {
                let hint = if super::model::Hex::parse(text).is_some() {
                    "write this number in decimal".to_string()
                } else {
                    "write a decimal integer".to_string()
                };
                ("S009", format!("`{text}` is not an integer"), Some(hint))
            })?;
            if v < min || v > max {
                return Err((
                    "S007",
                    format!("{v} is out of range {min}..={max}"),
                    Some(format!("use a value from {min} to {max}")),
                ));
            }
            if matches!(ty, Ty::PowerOfTwo { .. }) && (v as u64).count_ones() != 1 {
                return Err((
                    "S005",
                    format!("{v} is not a power of two"),
                    Some(format!("use one of 2, 4, 8, ... {max}")),
                ));
            }
            Ok(Value::from(v))
        }
        Ty::Hex | Ty::HexOrEmpty => match super::model::Hex::parse(text) {
            Some(_) => s(),
            None => Err((
                "S008",
                format!("`{text}` is not a hexadecimal number"),
                Some("write it as 0x followed by hex digits, e.g. 0x2000 (or 0)".into()),
            )),
        },
        Ty::Enum(names) => {
            if names.contains(&text) {
                return s();
            }
            let hint = match names.iter().find(|n| n.eq_ignore_ascii_case(text)) {
                Some(n) => format!("did you mean `{n}`? (values are case-sensitive)"),
                None => match spec::closest(text, names.iter().copied()) {
                    Some(n) => format!("did you mean `{n}`? allowed: {}", names.join(", ")),
                    None => format!("allowed: {}", names.join(", ")),
                },
            };
            Err((
                "S005",
                format!("`{text}` is not an allowed value"),
                Some(hint),
            ))
        }
        Ty::VmName => {
            let ok = (1..=15).contains(&text.len())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                s()
            } else {
                Err((
                    "S006",
                    format!("`{text}` is not a valid VM name"),
                    Some("use 1 to 15 characters from a-z A-Z 0-9 _ -".into()),
                ))
            }
        }
        Ty::Vbdf => match Vbdf::parse(text) {
            Some(_) => s(),
            None => Err((
                "S006",
                format!("`{text}` is not a virtual BDF"),
                Some("write bus:device.function as BB:DD.F, device 00-1f, e.g. 00:08.0".into()),
            )),
        },
        Ty::SerialConsole => {
            let ok = text == "None"
                || text.rfind("ttyS").is_some_and(|i| {
                    let d = &text[i + 4..];
                    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
                });
            if ok {
                s()
            } else {
                Err((
                    "S006",
                    format!("`{text}` is not a serial console"),
                    Some("use a device like /dev/ttyS0, or None".into()),
                ))
            }
        }
        Ty::IvshmemName => {
            let n = text.chars().count();
            if (1..=27).contains(&n) && text.chars().all(|c| c.is_alphanumeric() || c == '_') {
                s()
            } else {
                Err((
                    "S006",
                    format!("`{text}` is not a valid IVSHMEM region name"),
                    Some("use 1 to 27 letters, digits or _".into()),
                ))
            }
        }
        Ty::InterfaceName => {
            if text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                s()
            } else {
                Err((
                    "S006",
                    format!("`{text}` is not a valid interface name"),
                    Some("use letters, digits, _ and -".into()),
                ))
            }
        }
    }
}

/// Deepest bracket nesting accepted in TOML (the parser recurses on nested arrays/tables).
const MAX_TOML_DEPTH: usize = 64;

/// The offset of the first bracket that nests deeper than [`MAX_TOML_DEPTH`], counting only
/// TOML's own brackets: those in strings and comments are text.
fn too_deep_at(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_TOML_DEPTH {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'#' => {
                i += rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
                continue;
            }
            quote @ (b'"' | b'\'') => {
                let basic = quote == b'"';
                let fence = if rest.starts_with(&[quote; 3]) { 3 } else { 1 };
                let mut j = fence;
                // A string ends at its unescaped closing quote(s); a single-line one also at
                // the line's end (the parser reports that error itself).
                while j < rest.len() {
                    match rest[j] {
                        b'\\' if basic => j += 1,
                        b'\n' if fence == 1 => break,
                        q if q == quote && rest[j..].starts_with(&[quote; 3][..fence]) => {
                            j += fence;
                            // Up to two more quotes may end a multi-line string's content.
                            while fence == 3 && rest.get(j) == Some(&quote) {
                                j += 1;
                            }
                            break;
                        }
                        _ => {}
                    }
                    j += 1;
                }
                i += j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Converts TOML text to the same element tree the XML reader produces: keys are element
/// names, arrays are repeated elements, `board`/`scenario` at the top and `id` in a `[[vm]]`
/// become attributes, booleans become `y`/`n`.
pub fn toml_to_document(path: &Path, text: &str) -> Result<Document, Findings> {
    let source: Arc<str> = Arc::from(text);
    let lines = LineIndex::new(text);
    let mut findings = Findings::new();
    findings.add_source(path, source.clone());
    let fail = |mut findings: Findings, f: Finding| {
        findings.push(f);
        Err(findings)
    };
    if let Some(at) = too_deep_at(text) {
        return fail(
            findings,
            Finding::critical(
                "F002",
                format!("brackets nest deeper than {MAX_TOML_DEPTH} levels"),
            )
            .at(Location::new(path, lines.span(text, at, 1)))
            .with_hint("this does not look like a scenario file"),
        );
    }
    let table = match toml::de::DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let span = e.span().map_or(Span::default(), |r| {
                lines.span(text, r.start, r.end - r.start)
            });
            let loc = if span.line > 0 {
                Location::new(path, span)
            } else {
                Location::file(path)
            };
            let msg = e.message().trim().to_string();
            return fail(
                findings,
                Finding::critical("F002", format!("malformed TOML: {msg}"))
                    .at(loc)
                    .with_hint("fix the TOML syntax at this position"),
            );
        }
    };
    let conv = TomlConv {
        text,
        lines: &lines,
    };
    let whole = lines.span(text, 0, 0);
    let mut root = Element {
        name: "acrn-config".into(),
        attrs: Vec::new(),
        children: Vec::new(),
        text: String::new(),
        span: whole,
        text_span: whole,
    };
    for (k, v) in table.get_ref() {
        let key = k.get_ref().as_ref();
        let kspan = conv.span(k.span());
        if matches!(key, "board" | "scenario")
            && !matches!(v.get_ref(), toml::de::DeValue::Table(_))
        {
            root.attrs.push(xml::Attr {
                name: key.to_string(),
                value: conv.scalar(v.get_ref()),
                span: kspan,
            });
        } else {
            conv.push(&mut root.children, key, kspan, v, 0);
        }
    }
    Ok(Document {
        path: path.to_path_buf(),
        source,
        root,
    })
}

struct TomlConv<'a> {
    text: &'a str,
    lines: &'a LineIndex,
}

impl TomlConv<'_> {
    fn span(&self, r: std::ops::Range<usize>) -> Span {
        self.lines
            .span(self.text, r.start, r.end.saturating_sub(r.start))
    }

    fn scalar(&self, v: &toml::de::DeValue<'_>) -> String {
        use toml::de::DeValue;
        match v {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.to_string(),
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => if *b { "y" } else { "n" }.to_string(),
            DeValue::Datetime(d) => d.to_string(),
            DeValue::Array(_) | DeValue::Table(_) => String::new(),
        }
    }

    fn push(
        &self,
        out: &mut Vec<Element>,
        name: &str,
        key_span: Span,
        v: &toml::Spanned<toml::de::DeValue<'_>>,
        depth: usize,
    ) {
        use toml::de::DeValue;
        let vspan = self.span(v.span());
        match v.get_ref() {
            DeValue::Array(items) => {
                for item in items {
                    // Each item of `[[vm]]` / `pcpu = [..]` is one element; point at the item.
                    let s = self.span(item.span());
                    if depth < MAX_TOML_DEPTH {
                        self.push(out, name, s, item, depth + 1);
                    }
                }
            }
            DeValue::Table(t) => {
                let mut el = Element {
                    name: name.to_string(),
                    attrs: Vec::new(),
                    children: Vec::new(),
                    text: String::new(),
                    span: key_span,
                    text_span: vspan,
                };
                for (k, cv) in t {
                    let key = k.get_ref().as_ref();
                    let kspan = self.span(k.span());
                    if name == "vm"
                        && key == "id"
                        && !matches!(cv.get_ref(), DeValue::Table(_) | DeValue::Array(_))
                    {
                        el.attrs.push(xml::Attr {
                            name: "id".into(),
                            value: self.scalar(cv.get_ref()),
                            span: kspan,
                        });
                    } else if depth < MAX_TOML_DEPTH {
                        self.push(&mut el.children, key, kspan, cv, depth + 1);
                    }
                }
                out.push(el);
            }
            other => out.push(Element {
                name: name.to_string(),
                attrs: Vec::new(),
                children: Vec::new(),
                text: self.scalar(other),
                span: key_span,
                text_span: vspan,
            }),
        }
    }
}
