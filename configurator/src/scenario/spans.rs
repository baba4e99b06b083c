//! Where each scenario element came from, kept beside the model (never serialized).
//!
//! Keys are element paths below the root: segments joined by `/`, each the element name
//! followed by `[i]` (0-based among siblings of that name) when the element may repeat:
//! `vm[1]/cpu_affinity/pcpu[0]/pcpu_id`, `hv/FEATURES/IVSHMEM/IVSHMEM_REGION[0]/NAME`.
//! `vm[i]` is the i-th `<vm>` of the file, which is `Scenario::vm[i]`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diag::Location;
use crate::xml::Span;

/// Spans of one element: its start tag (or TOML key) and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementSpan {
    pub element: Span,
    pub value: Span,
}

#[derive(Debug, Clone, Default)]
pub struct SpanTable {
    /// The file the scenario was read from.
    pub file: PathBuf,
    /// Its text, for rendering findings.
    pub source: Option<Arc<str>>,
    map: HashMap<String, ElementSpan>,
}

/// Spans are bookkeeping: two scenarios with equal values are equal wherever they came from.
impl PartialEq for SpanTable {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl SpanTable {
    pub fn new(file: &Path, source: Option<Arc<str>>) -> Self {
        SpanTable {
            file: file.to_path_buf(),
            source,
            map: HashMap::new(),
        }
    }

    pub fn insert(&mut self, path: String, span: ElementSpan) {
        self.map.insert(path, span);
    }

    pub fn get(&self, path: &str) -> Option<ElementSpan> {
        self.map.get(path).copied()
    }

    /// Location of the element at `path`, or of its nearest ancestor present in the file
    /// (elements added by default population have no span of their own).
    pub fn element(&self, path: &str) -> Option<Location> {
        self.find(path)
            .map(|s| Location::new(&self.file, s.element))
    }

    /// Location of the value (text) of the element at `path`; falls back like [`Self::element`].
    pub fn value(&self, path: &str) -> Option<Location> {
        self.find(path).map(|s| {
            let span = if s.value.len > 0 { s.value } else { s.element };
            Location::new(&self.file, span)
        })
    }

    /// Location of `<vm>` number `index` (position in the file) or of `rel` below it.
    pub fn vm(&self, index: usize, rel: &str) -> Option<Location> {
        if rel.is_empty() {
            self.element(&format!("vm[{index}]"))
        } else {
            self.value(&format!("vm[{index}]/{rel}"))
        }
    }

    fn find(&self, path: &str) -> Option<ElementSpan> {
        let mut p = path;
        loop {
            if let Some(s) = self.map.get(p) {
                return Some(*s);
            }
            p = &p[..p.rfind('/')?];
        }
    }
}
