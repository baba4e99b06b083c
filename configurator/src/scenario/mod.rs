//! The scenario: typed model ([`model`]), schema table ([`spec`]), readers for XML and TOML
//! ([`read`]), writers ([`write`]), ACRN's default population ([`defaults`]) and the spans of
//! every element ([`spans`]).
//!
//! Stable interface: [`Scenario`] and the types in [`model`] (re-exported here),
//! [`load_scenario`], [`read_scenario_file`], [`populate_defaults`], [`SpanTable`],
//! [`to_xml`] / [`to_toml`].
//!
//! Locating a finding: `scenario.spans.vm(i, "cpu_affinity/pcpu[0]/pcpu_id")` gives the
//! file:line:column of that value in the user's file (XML or TOML), falling back to the
//! nearest ancestor for elements added by default population.

pub mod defaults;
pub mod model;
pub mod read;
pub mod spans;
pub mod spec;
pub mod write;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use defaults::{populate_defaults, PopulateError};
pub use model::*;
pub use read::{read_document, read_scenario_file, toml_to_document};
pub use spans::{ElementSpan, SpanTable};
pub use write::{to_toml, to_xml, WriteError};

use crate::diag::{Finding, Findings, Location};

/// Reads a scenario (XML or TOML), checks its structure and fills in ACRN's defaults.
/// `Err` holds the findings when the file is unusable (any structure error);
/// `Ok` may carry warnings.
pub fn load_scenario(path: &Path) -> Result<(Scenario, Findings), Findings> {
    let (s, mut findings) = read_scenario_file(path)?;
    match populate_defaults(&s) {
        Ok(p) => Ok((p, findings)),
        Err(e) => {
            findings.push(
                Finding::critical("F099", e.to_string())
                    .at(Location::file(path))
                    .with_hint(
                        "this is a bug in acrn-configurator; please report it with this file",
                    ),
            );
            Err(findings)
        }
    }
}

impl Scenario {
    /// The VM with this name.
    pub fn vm_by_name(&self, name: &str) -> Option<&Vm> {
        self.vm.iter().find(|v| v.name == name)
    }

    /// VMs of one load order, with their index in `vm` (which is the `vm[i]` of span paths).
    pub fn vms_of(&self, lo: LoadOrder) -> impl Iterator<Item = (usize, &Vm)> {
        self.vm
            .iter()
            .enumerate()
            .filter(move |(_, v)| v.load_order == Some(lo))
    }
}
