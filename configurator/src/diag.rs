//! Diagnostics: every problem the configurator finds in a user's files is a [`Finding`].
//!
//! Stable interface (every check reports through it): [`Finding`], [`Severity`], [`Location`],
//! [`Findings`], and the renderers [`Findings::render_human`] / [`Findings::render_json`].
//!
//! Check ids are stable strings, catalogued in [`crate::catalog`]: `F...` file level,
//! `D...` board file content, `S...` scenario structure, `C..`/`B..`/`X..` semantic checks,
//! `A..` allocation. Never reuse an id for a different rule.
//!
//! ```
//! use acrn_configurator::diag::{Finding, Findings};
//! let mut f = Findings::new();
//! f.push(Finding::error("S001", "unknown element <nmae>").with_hint("did you mean <name>?"));
//! assert!(f.has_errors());
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use codespan_reporting::diagnostic::{Diagnostic, Label};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term::{self, termcolor};
use serde::Serialize;

use crate::xml::Span;

/// How bad a finding is. As in ACRN, warnings fail validation unless allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file cannot be understood at all (not XML, wrong structure, duplicate VM names):
    /// later stages cannot run.
    Critical,
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A place in a user's file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: u32,
    pub column: u32,
    pub span: Span,
}

impl Location {
    pub fn new(file: impl Into<PathBuf>, span: Span) -> Self {
        Location {
            file: file.into(),
            line: span.line,
            column: span.column,
            span,
        }
    }

    /// A whole file, without a position (line and column 0).
    pub fn file(file: impl Into<PathBuf>) -> Self {
        Location {
            file: file.into(),
            line: 0,
            column: 0,
            span: Span::default(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// One problem: which rule (`check`), how bad, what, where, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub hint: Option<String>,
    /// Other places that explain the finding (e.g. the first definition of a duplicate).
    pub related: Vec<(Location, String)>,
}

impl Finding {
    pub fn new(check: &'static str, severity: Severity, message: impl Into<String>) -> Self {
        Finding {
            check,
            severity,
            message: message.into(),
            location: None,
            hint: None,
            related: Vec::new(),
        }
    }
    pub fn critical(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Critical, message)
    }
    pub fn error(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Error, message)
    }
    pub fn warning(check: &'static str, message: impl Into<String>) -> Self {
        Self::new(check, Severity::Warning, message)
    }
    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }
    /// Sets the location when there is one (convenient with span look-ups that may fail).
    pub fn at_opt(mut self, location: Option<Location>) -> Self {
        if location.is_some() {
            self.location = location;
        }
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_related(mut self, location: Location, message: impl Into<String>) -> Self {
        self.related.push((location, message.into()));
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{loc}: ")?;
        }
        write!(f, "{}[{}]: {}", self.severity, self.check, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

/// The JSON shape of one finding (`--format json` prints an array of these).
#[derive(Serialize)]
struct JsonFinding<'a> {
    check: &'a str,
    severity: Severity,
    message: &'a str,
    file: Option<String>,
    line: Option<u32>,
    column: Option<u32>,
    hint: Option<&'a str>,
    related: Vec<JsonRelated<'a>>,
}

#[derive(Serialize)]
struct JsonRelated<'a> {
    file: String,
    line: u32,
    column: u32,
    message: &'a str,
}

/// A collection of findings plus the text of the files they point into (for rendering).
#[derive(Debug, Clone, Default)]
pub struct Findings {
    items: Vec<Finding>,
    sources: HashMap<PathBuf, Arc<str>>,
}

impl Findings {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the text of a file so that findings in it render with the offending line.
    pub fn add_source(&mut self, file: &Path, text: Arc<str>) {
        self.sources.insert(file.to_path_buf(), text);
    }

    pub fn push(&mut self, finding: Finding) {
        self.items.push(finding);
    }

    /// Moves all findings (and sources) of `other` into `self`.
    pub fn extend(&mut self, other: Findings) {
        self.items.extend(other.items);
        self.sources.extend(other.sources);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Finding> {
        self.items.iter()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn count(&self, severity: Severity) -> usize {
        self.items.iter().filter(|f| f.severity == severity).count()
    }
    /// True if any finding is critical or an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|f| f.severity != Severity::Warning)
    }
    pub fn has_critical(&self) -> bool {
        self.items.iter().any(|f| f.severity == Severity::Critical)
    }
    /// ACRN's rule: any finding fails validation, warnings too unless `allow_warnings`.
    pub fn is_valid(&self, allow_warnings: bool) -> bool {
        if allow_warnings {
            !self.has_errors()
        } else {
            self.items.is_empty()
        }
    }

    /// Sorts by file, position, then check id, so output is stable.
    pub fn sort(&mut self) {
        self.items.sort_by(|a, b| {
            let key = |f: &Finding| {
                f.location
                    .as_ref()
                    .map(|l| (l.file.clone(), l.span.offset))
                    .unwrap_or_default()
            };
            key(a).cmp(&key(b)).then(a.check.cmp(b.check))
        });
    }

    /// rustc-like text: the offending line with a caret under the span, the hint as a note.
    pub fn render_human(&self, color: bool) -> String {
        let mut files = SimpleFiles::new();
        let mut ids: HashMap<&Path, usize> = HashMap::new();
        for (path, text) in &self.sources {
            ids.insert(
                path.as_path(),
                files.add(path.display().to_string(), text.clone()),
            );
        }
        let mut buf = if color {
            termcolor::Buffer::ansi()
        } else {
            termcolor::Buffer::no_color()
        };
        let config = term::Config::default();
        for f in &self.items {
            let mut d = match f.severity {
                Severity::Critical => Diagnostic::bug(),
                Severity::Error => Diagnostic::error(),
                Severity::Warning => Diagnostic::warning(),
            }
            .with_code(f.check)
            .with_message(&f.message);
            let mut notes = Vec::new();
            let mut labels = Vec::new();
            let mut label_for = |loc: &Location, primary: bool, msg: &str| -> Option<String> {
                match ids.get(loc.file.as_path()) {
                    Some(&id) if loc.line > 0 => {
                        let l = if primary {
                            Label::primary(id, loc.span.range())
                        } else {
                            Label::secondary(id, loc.span.range())
                        };
                        labels.push(l.with_message(msg));
                        None
                    }
                    _ => Some(format!(
                        "at {loc}{}{msg}",
                        if msg.is_empty() { "" } else { ": " }
                    )),
                }
            };
            if let Some(loc) = &f.location {
                notes.extend(label_for(loc, true, ""));
            }
            for (loc, msg) in &f.related {
                notes.extend(label_for(loc, false, msg));
            }
            if let Some(h) = &f.hint {
                notes.push(format!("help: {h}"));
            }
            d = d.with_labels(labels).with_notes(notes);
            if term::emit(&mut buf, &config, &files, &d).is_err() {
                // A span outside the registered text: fall back to the one-line form.
                buf.clear();
                return self.render_plain();
            }
        }
        String::from_utf8_lossy(buf.as_slice()).replace("bug[", "critical[")
    }

    /// One line per finding, `file:line:col: severity[check]: message (hint: ...)`.
    pub fn render_plain(&self) -> String {
        self.items.iter().map(|f| format!("{f}\n")).collect()
    }

    /// A JSON array of `{check, severity, message, file, line, column, hint, related}`.
    pub fn render_json(&self) -> String {
        let items: Vec<JsonFinding<'_>> = self
            .items
            .iter()
            .map(|f| JsonFinding {
                check: f.check,
                severity: f.severity,
                message: &f.message,
                file: f.location.as_ref().map(|l| l.file.display().to_string()),
                line: f.location.as_ref().filter(|l| l.line > 0).map(|l| l.line),
                column: f.location.as_ref().filter(|l| l.line > 0).map(|l| l.column),
                hint: f.hint.as_deref(),
                related: f
                    .related
                    .iter()
                    .map(|(l, m)| JsonRelated {
                        file: l.file.display().to_string(),
                        line: l.line,
                        column: l.column,
                        message: m,
                    })
                    .collect(),
            })
            .collect();
        serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_string())
    }
}

impl<'a> IntoIterator for &'a Findings {
    type Item = &'a Finding;
    type IntoIter = std::slice::Iter<'a, Finding>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::parse_str;

    #[test]
    fn human_rendering_shows_line_and_caret() {
        let path = Path::new("s.xml");
        let doc = parse_str(path, "<a>\n  <nmae>x</nmae>\n</a>\n").unwrap();
        let el = doc.root.child("nmae").unwrap();
        let mut f = Findings::new();
        f.add_source(path, doc.source.clone());
        f.push(
            Finding::error("S001", "unknown element <nmae>")
                .at(Location::new(path, el.span))
                .with_hint("did you mean <name>?"),
        );
        let out = f.render_human(false);
        assert!(out.contains("error[S001]: unknown element <nmae>"), "{out}");
        assert!(out.contains("s.xml:2:3"), "{out}");
        assert!(out.contains("<nmae>x</nmae>"), "{out}");
        assert!(out.contains("^^^^^^"), "{out}");
        assert!(out.contains("help: did you mean <name>?"), "{out}");
    }

    fn line3_col7() -> Span {
        Span {
            offset: 0,
            len: 1,
            line: 3,
            column: 7,
        }
    }

    #[test]
    fn json_rendering_has_stable_keys() {
        let mut f = Findings::new();
        f.push(Finding::warning("C01", "w").at(Location::new("x.xml", line3_col7())));
        f.push(Finding::critical("F001", "bad"));
        let v: serde_json::Value = serde_json::from_str(&f.render_json()).unwrap();
        assert_eq!(v[0]["check"], "C01");
        assert_eq!(v[0]["severity"], "warning");
        assert_eq!(v[0]["file"], "x.xml");
        assert_eq!(v[0]["line"], 3);
        assert_eq!(v[0]["column"], 7);
        assert_eq!(v[1]["severity"], "critical");
        assert!(v[1]["line"].is_null());
        assert!(!f.is_valid(true));
    }

    #[test]
    fn warnings_fail_unless_allowed() {
        let mut f = Findings::new();
        f.push(Finding::warning("C01", "w"));
        assert!(!f.is_valid(false));
        assert!(f.is_valid(true));
    }

    #[test]
    fn unknown_source_falls_back_to_text() {
        let mut f = Findings::new();
        f.push(Finding::error("S002", "m").at(Location::new("missing.xml", line3_col7())));
        let out = f.render_human(false);
        assert!(out.contains("missing.xml:3:7"), "{out}");
    }
}
