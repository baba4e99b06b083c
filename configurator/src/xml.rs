//! A small XML DOM that keeps the position of every element, attribute and text.
//!
//! Stable interface (other modules build on it): [`Document`], [`Element`], [`Attr`],
//! [`Span`], [`XmlError`], [`parse_file`] and [`parse_str`].
//!
//! Board and scenario files are small (the largest ACRN board is ~300 KB), so a DOM is fine; the
//! reader still defends itself against hostile input: it reads at most [`MAX_INPUT_BYTES`] plus
//! one byte of a file ([`crate::bounded`]; devices and FIFOs included), and refuses nesting deeper than [`MAX_DEPTH`], and more than
//! [`MAX_ELEMENTS`] elements, and it never panics.
//!
//! Text is unescaped (`&amp;` -> `&`), CDATA is kept as text, comments, processing
//! instructions and the DOCTYPE are skipped. Namespaces are not interpreted: names are kept as
//! written (`xi:include`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Largest input accepted, in bytes (50 times the largest ACRN board file).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 256;
/// Most elements accepted in one document (bounds the DOM's memory).
pub const MAX_ELEMENTS: usize = 2_000_000;

/// A region of the source text: byte offset and length, plus the 1-based line and column
/// (in characters) of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
    pub line: u32,
    pub column: u32,
}

impl Span {
    /// The byte range of this span in the source.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One attribute of an element; `span` covers `name="value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub value: String,
    pub span: Span,
}

/// One element. `span` covers the start tag (`<name ...>`, or the whole `<name/>`);
/// `text_span` covers the trimmed text content, or is empty at the end of the start tag when
/// the element has no text, so a caret can always point at "the value".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    /// All text and CDATA directly inside this element, concatenated and unescaped.
    pub text: String,
    pub span: Span,
    pub text_span: Span,
}

impl Element {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this name, in document order.
    pub fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text content without leading and trailing whitespace.
    pub fn text_trim(&self) -> &str {
        self.text.trim()
    }

    /// The value of an attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attr_full(name).map(|a| a.value.as_str())
    }

    /// The attribute with its span.
    pub fn attr_full(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }

    /// Trimmed text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(Element::text_trim)
    }

    /// Depth-first iterator over this element and all its descendants.
    pub fn descendants(&self) -> impl Iterator<Item = &Element> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let e = stack.pop()?;
            stack.extend(e.children.iter().rev());
            Some(e)
        })
    }
}

/// A parsed file: its path, its full text (shared with diagnostics) and its root element.
#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub source: Arc<str>,
    pub root: Element,
}

impl Document {
    /// Fails with [`XmlErrorKind::WrongRoot`] unless the root element is `expected`.
    pub fn expect_root(&self, expected: &str) -> Result<(), XmlError> {
        if self.root.name == expected {
            Ok(())
        } else {
            Err(XmlError {
                path: self.path.clone(),
                span: Some(self.root.span),
                kind: XmlErrorKind::WrongRoot {
                    expected: expected.to_string(),
                    found: self.root.name.clone(),
                },
            })
        }
    }
}

/// Why a file could not be read as XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlErrorKind {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("the file is larger than the {limit} bytes accepted (at least {size} bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error("the file is not UTF-8 text (binary data or another encoding)")]
    NotUtf8,
    #[error("the file is empty or has no root element")]
    NoRoot,
    #[error("malformed XML: {0}")]
    Syntax(String),
    #[error("closing tag </{found}> does not match the open element <{expected}>")]
    MismatchedTag { expected: String, found: String },
    #[error("the file ends inside element <{open}> (truncated?)")]
    Truncated { open: String },
    #[error("text or a second element after the root element")]
    TrailingContent,
    #[error("text before the root element")]
    LeadingText,
    #[error("elements nest deeper than {0} levels")]
    TooDeep(usize),
    #[error("more than {0} elements")]
    TooManyElements(usize),
    #[error("the root element is <{found}>, expected <{expected}>")]
    WrongRoot { expected: String, found: String },
}

/// An XML error with the file and, when known, the position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct XmlError {
    pub path: PathBuf,
    pub span: Option<Span>,
    pub kind: XmlErrorKind,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.span {
            Some(s) => write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                s.line,
                s.column,
                self.kind
            ),
            None => write!(f, "{}: {}", self.path.display(), self.kind),
        }
    }
}

/// Reads and parses a file, refusing files over [`MAX_INPUT_BYTES`] (see [`crate::bounded`]).
pub fn parse_file(path: &Path) -> Result<Document, XmlError> {
    let text = read_text(path)?;
    parse_str(path, &text)
}

/// Reads a whole text file with the same limits and errors as [`parse_file`] (used for TOML).
pub fn read_text(path: &Path) -> Result<String, XmlError> {
    let err = |kind| XmlError {
        path: path.to_path_buf(),
        span: None,
        kind,
    };
    let bytes = crate::bounded::read(path, MAX_INPUT_BYTES).map_err(|e| {
        err(match e {
            crate::bounded::ReadError::TooLarge { limit, read } => {
                XmlErrorKind::TooLarge { size: read, limit }
            }
            e => XmlErrorKind::Io(e.to_string()),
        })
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        // Position of the first bad byte, computed on the valid prefix.
        let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let lines = LineIndex::new(prefix);
        XmlError {
            path: path.to_path_buf(),
            span: Some(lines.span(prefix, valid, 1)),
            kind: XmlErrorKind::NotUtf8,
        }
    })
}

/// Parses text already in memory; `path` is only used in errors and the [`Document`].
pub fn parse_str(path: &Path, text: &str) -> Result<Document, XmlError> {
    if text.len() as u64 > MAX_INPUT_BYTES {
        return Err(XmlError {
            path: path.to_path_buf(),
            span: None,
            kind: XmlErrorKind::TooLarge {
                size: text.len() as u64,
                limit: MAX_INPUT_BYTES,
            },
        });
    }
    let source: Arc<str> = Arc::from(text);
    let root = Parser::new(path, &source).run()?;
    Ok(Document {
        path: path.to_path_buf(),
        source,
        root,
    })
}

/// Maps byte offsets to 1-based (line, column).
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// A span at `offset` (clamped to the text and to a char boundary) of `len` bytes.
    pub(crate) fn span(&self, text: &str, offset: usize, len: usize) -> Span {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let len = len.min(text.len() - offset);
        let line_idx = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let line_start = self.starts.get(line_idx).copied().unwrap_or(0);
        let column = text
            .get(line_start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        Span {
            offset,
            len,
            line: u32::try_from(line_idx + 1).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }
}

/// Element under construction, with the byte range of its text so far.
struct Open {
    el: Element,
    text_range: Option<(usize, usize)>,
}

struct Parser<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex,
    elements: usize,
}

impl<'a> Parser<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        Parser {
            path,
            text,
            lines: LineIndex::new(text),
            elements: 0,
        }
    }

    fn error(&self, offset: usize, len: usize, kind: XmlErrorKind) -> XmlError {
        XmlError {
            path: self.path.to_path_buf(),
            span: Some(self.lines.span(self.text, offset, len)),
            kind,
        }
    }

    fn run(mut self) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(self.text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = false;
        config.trim_text(false);
        config.expand_empty_elements = false;

        let mut stack: Vec<Open> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let start = to_usize(reader.buffer_position());
            let event = match reader.read_event() {
                Ok(ev) => ev,
                Err(e) => return Err(self.syntax_error(&reader, start, &stack, e)),
            };
            let end = to_usize(reader.buffer_position());
            match event {
                Event::Start(ref tag) | Event::Empty(ref tag) => {
                    if root.is_some() {
                        return Err(self.error(start, end - start, XmlErrorKind::TrailingContent));
                    }
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.error(
                            start,
                            end - start,
                            XmlErrorKind::TooDeep(MAX_DEPTH),
                        ));
                    }
                    let el = self.element(tag, start, end)?;
                    if matches!(event, Event::Start(_)) {
                        stack.push(Open {
                            el,
                            text_range: None,
                        });
                    } else {
                        match stack.last_mut() {
                            Some(parent) => parent.el.children.push(el),
                            None => root = Some(el),
                        }
                    }
                }
                Event::End(_) => {
                    // quick-xml has already checked that the name matches.
                    let Some(open) = stack.pop() else {
                        return Err(self.error(start, end - start, XmlErrorKind::TrailingContent));
                    };
                    let mut el = open.el;
                    if let Some((a, b)) = open.text_range {
                        el.text_span = self.trimmed_span(a, b, el.text_span);
                    }
                    match stack.last_mut() {
                        Some(parent) => parent.el.children.push(el),
                        None => root = Some(el),
                    }
                }
                Event::Text(t) => {
                    let value = t.unescape().map_err(|e| {
                        self.error(start, end - start, XmlErrorKind::Syntax(e.to_string()))
                    })?;
                    self.add_text(&mut stack, root.is_some(), &value, start, end)?;
                }
                Event::CData(c) => {
                    let value = std::str::from_utf8(&c)
                        .map_err(|_| self.error(start, end - start, XmlErrorKind::NotUtf8))?;
                    if !value.is_empty() {
                        self.add_text(&mut stack, root.is_some(), value, start, end)?;
                    }
                }
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(open) = stack.last() {
            return Err(self.error(
                self.text.len(),
                0,
                XmlErrorKind::Truncated {
                    open: open.el.name.clone(),
                },
            ));
        }
        root.ok_or_else(|| self.error(0, 0, XmlErrorKind::NoRoot))
    }

    fn add_text(
        &self,
        stack: &mut [Open],
        after_root: bool,
        value: &str,
        start: usize,
        end: usize,
    ) -> Result<(), XmlError> {
        match stack.last_mut() {
            Some(open) => {
                open.el.text.push_str(value);
                // Only non-blank source text counts, so indentation around child elements
                // does not stretch the span over them.
                let raw = self.text.get(start..end).unwrap_or("");
                let trimmed = raw.trim();
                if !trimmed.is_empty() {
                    let a = start + (raw.len() - raw.trim_start().len());
                    let b = a + trimmed.len();
                    open.text_range = Some(match open.text_range {
                        Some((first, _)) => (first, b),
                        None => (a, b),
                    });
                }
                Ok(())
            }
            None if value.trim().is_empty() => Ok(()),
            None => {
                let kind = if after_root {
                    XmlErrorKind::TrailingContent
                } else {
                    XmlErrorKind::LeadingText
                };
                let skip = value.len() - value.trim_start().len();
                Err(self.error(start + skip.min(end - start), 1, kind))
            }
        }
    }

    /// Span of the source text between `a` and `b` without surrounding whitespace.
    fn trimmed_span(&self, a: usize, b: usize, empty: Span) -> Span {
        let Some(raw) = self.text.get(a..b) else {
            return empty;
        };
        let lead = raw.len() - raw.trim_start().len();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return empty;
        }
        self.lines.span(self.text, a + lead, trimmed.len())
    }

    fn element(
        &mut self,
        tag: &BytesStart<'_>,
        start: usize,
        end: usize,
    ) -> Result<Element, XmlError> {
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(self.error(
                start,
                end - start,
                XmlErrorKind::TooManyElements(MAX_ELEMENTS),
            ));
        }
        let name = std::str::from_utf8(tag.name().as_ref())
            .map_err(|_| self.error(start, end - start, XmlErrorKind::NotUtf8))?
            .to_string();
        let raw = self.text.get(start..end).unwrap_or("");
        let mut attrs = Vec::new();
        // Search for each attribute after the previous one, so spans follow document order.
        let mut cursor = 1 + name.len();
        for attr in tag.attributes().with_checks(true) {
            let attr = attr
                .map_err(|e| self.error(start, end - start, XmlErrorKind::Syntax(e.to_string())))?;
            let aname = std::str::from_utf8(attr.key.as_ref())
                .map_err(|_| self.error(start, end - start, XmlErrorKind::NotUtf8))?
                .to_string();
            let value = attr
                .unescape_value()
                .map_err(|e| self.error(start, end - start, XmlErrorKind::Syntax(e.to_string())))?
                .into_owned();
            let rel = raw
                .get(cursor..)
                .and_then(|r| r.find(&aname))
                .map(|i| i + cursor);
            let span = match rel {
                Some(i) => {
                    let vlen = attr.value.len() + 2; // the quotes
                    let after = raw.get(i + aname.len()..).unwrap_or("");
                    let eq = after.len() - after.trim_start().len() + 1;
                    let after_eq = after.get(eq..).unwrap_or("");
                    let ws = after_eq.len() - after_eq.trim_start().len();
                    let len = aname.len() + eq + ws + vlen;
                    cursor = i + len.min(raw.len() - i);
                    self.lines.span(self.text, start + i, len)
                }
                None => self.lines.span(self.text, start, end - start),
            };
            attrs.push(Attr {
                name: aname,
                value,
                span,
            });
        }
        let span = self.lines.span(self.text, start, end - start);
        Ok(Element {
            name,
            attrs,
            children: Vec::new(),
            text: String::new(),
            span,
            text_span: self.lines.span(self.text, end, 0),
        })
    }

    fn syntax_error(
        &self,
        reader: &Reader<&[u8]>,
        start: usize,
        stack: &[Open],
        e: quick_xml::Error,
    ) -> XmlError {
        use quick_xml::errors::{IllFormedError, SyntaxError};
        let pos = to_usize(reader.error_position()).max(start);
        match e {
            quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
                self.error(
                    start,
                    pos.saturating_sub(start).max(1),
                    XmlErrorKind::MismatchedTag { expected, found },
                )
            }
            quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(found)) => self.error(
                start,
                1,
                XmlErrorKind::MismatchedTag {
                    expected: "(none)".into(),
                    found,
                },
            ),
            quick_xml::Error::Syntax(
                SyntaxError::UnclosedTag
                | SyntaxError::UnclosedComment
                | SyntaxError::UnclosedCData
                | SyntaxError::UnclosedDoctype
                | SyntaxError::UnclosedPIOrXmlDecl,
            ) => {
                // quick-xml reports these only when the input ends inside the construct.
                let open = stack
                    .last()
                    .map_or_else(|| "(document)".to_string(), |o| o.el.name.clone());
                self.error(pos, 1, XmlErrorKind::Truncated { open })
            }
            other => self.error(pos, 1, XmlErrorKind::Syntax(other.to_string())),
        }
    }
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Document, XmlError> {
        parse_str(Path::new("t.xml"), s)
    }

    #[test]
    fn positions_text_and_attrs() {
        let d = parse("<?xml version=\"1.0\"?>\n<acrn-config board=\"x&amp;y\">\n  <vm id=\"1\">\n    <name> A&lt;B </name>\n    <e/>\n  </vm>\n</acrn-config>\n").unwrap();
        assert_eq!(d.root.name, "acrn-config");
        assert_eq!(d.root.attr("board"), Some("x&y"));
        assert_eq!((d.root.span.line, d.root.span.column), (2, 1));
        let a = d.root.attr_full("board").unwrap();
        assert_eq!(&d.source[a.span.range()], "board=\"x&amp;y\"");
        let vm = d.root.child("vm").unwrap();
        assert_eq!(vm.attr("id"), Some("1"));
        assert_eq!((vm.span.line, vm.span.column), (3, 3));
        let name = vm.child("name").unwrap();
        assert_eq!(name.text_trim(), "A<B");
        assert_eq!((name.text_span.line, name.text_span.column), (4, 12));
        assert_eq!(&d.source[name.text_span.range()], "A&lt;B");
        let e = vm.child("e").unwrap();
        assert_eq!(e.text, "");
        assert_eq!(e.text_span.len, 0);
        assert_eq!(vm.children("e").count(), 1);
        assert_eq!(d.root.descendants().count(), 4);
    }

    #[test]
    fn text_span_ignores_indentation_around_children() {
        let d = parse("<a>\n  <b>x</b>\n</a>").unwrap();
        assert_eq!(d.root.text_span.len, 0);
        assert_eq!(d.root.child("b").unwrap().text_span.len, 1);
    }

    #[test]
    fn cdata_and_comments() {
        let d = parse("<r><!-- c --><x><![CDATA[a<b]]></x></r>").unwrap();
        assert_eq!(d.root.child_text("x"), Some("a<b"));
    }

    #[test]
    fn errors_have_kinds_and_positions() {
        let e = parse("<a>\n<b></c>\n</a>").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::MismatchedTag { .. }), "{e}");
        assert_eq!(e.span.unwrap().line, 2);

        let e = parse("<a>\n<b>text").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::Truncated { .. }), "{e}");

        let e = parse("<a><b").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::Truncated { .. }), "{e}");

        let e = parse("").unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::NoRoot);

        let e = parse("hello world").unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::LeadingText);

        let e = parse("<a/><b/>").unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::TrailingContent);

        let e = parse("<a x=1/>").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::Syntax(_)), "{e}");

        let e = parse("<a>&bogus;</a>").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::Syntax(_)), "{e}");
    }

    #[test]
    fn depth_cap() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::TooDeep(MAX_DEPTH));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn wrong_root() {
        let d = parse("<board/>").unwrap();
        let e = d.expect_root("acrn-config").unwrap_err();
        assert!(matches!(e.kind, XmlErrorKind::WrongRoot { .. }));
    }

    #[test]
    fn binary_file() {
        let dir = std::env::temp_dir().join(format!("acrn-xml-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bin.xml");
        std::fs::write(&p, b"<a>\n\xff\xfe\x00</a>").unwrap();
        let e = parse_file(&p).unwrap_err();
        assert_eq!(e.kind, XmlErrorKind::NotUtf8);
        assert_eq!(e.span.unwrap().line, 2);
        std::fs::remove_dir_all(&dir).ok();
    }
}
