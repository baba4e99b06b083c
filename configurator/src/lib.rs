//! `acrn-configurator`: reads ACRN board and scenario files, validates them and (later)
//! allocates resources and generates the hypervisor's static tables.
//!
//! Library entry point: [`validate`] (board + scenario -> [`Report`] with every finding).
//! Modules: [`xml`] (position-keeping DOM), [`diag`] (findings and their rendering),
//! [`scenario`] (model, readers, defaults), [`board`] (board model), [`checks`] (semantic
//! checks), [`paths`] (resolving board/scenario names like ACRN's make), [`catalog`] (every
//! check id).

pub mod alloc;
pub mod board;
pub mod bounded;
pub mod catalog;
pub mod checks;
pub mod diag;
pub mod enforcement;
pub mod gen;
pub mod image;
pub mod inspect;
pub mod launch;
pub mod paths;
pub mod scenario;
pub mod schema;
pub mod xml;

use std::path::Path;
use std::sync::Arc;

use board::{Board, BoardError};
use diag::{Finding, Findings, Location};
use scenario::Scenario;

/// Options of [`validate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidateOptions {
    /// As `--allow-warnings`: warnings alone do not make the configuration invalid.
    pub allow_warnings: bool,
}

/// The outcome of [`validate`]: every finding, plus the loaded models when they could be read.
#[derive(Debug)]
pub struct Report {
    pub findings: Findings,
    pub board: Option<Board>,
    /// Default-populated; `None` when the file failed structure validation.
    pub scenario: Option<Scenario>,
    pub valid: bool,
}

/// Loads both files, checks the scenario's structure, fills in defaults and runs the
/// semantic checks ([`checks::run_all`]) when both models are usable.
pub fn validate(board_path: &Path, scenario_path: &Path, opts: &ValidateOptions) -> Report {
    let mut findings = Findings::new();
    // Read once (bounded): the same text is parsed and quoted in findings; a FIFO cannot be
    // read twice.
    let board = match xml::read_text(board_path) {
        Ok(text) => match board::load_board_str(board_path, &text) {
            Ok(b) => Some(b),
            Err(e) => {
                findings.extend(board_error_findings(board_path, Some(&text), &e));
                None
            }
        },
        Err(e) => {
            findings.extend(board_error_findings(board_path, None, &e.into()));
            None
        }
    };
    let scenario = match scenario::load_scenario(scenario_path) {
        Ok((s, f)) => {
            findings.extend(f);
            Some(s)
        }
        Err(f) => {
            findings.extend(f);
            None
        }
    };
    if let (Some(b), Some(s)) = (&board, &scenario) {
        checks::run_all(b, s, &mut findings);
    }
    findings.sort();
    let valid = findings.is_valid(opts.allow_warnings);
    Report {
        findings,
        board,
        scenario,
        valid,
    }
}

/// Turns a board loading error into findings (`F...` for the file, `D001` for problems
/// inside a board file; see [`catalog`]). `source` is the file's text, when it could be read,
/// for the excerpts under each finding.
pub fn board_error_findings(path: &Path, source: Option<&str>, e: &BoardError) -> Findings {
    let mut f = Findings::new();
    if let Some(text) = source {
        f.add_source(path, Arc::from(text));
    }
    match e {
        BoardError::Xml(x) => f.push(scenario::read::xml_error_finding(x)),
        BoardError::NotABoard { path, span, reason } => f.push(
            Finding::critical("F003", format!("not an ACRN board file: {reason}"))
                .at(Location::new(path, *span))
                .with_hint("a board file starts with <acrn-config board=\"NAME\">"),
        ),
        BoardError::ScenarioGivenAsBoard { path, span } => f.push(
            Finding::critical("F003", "this is a scenario file, not a board file")
                .at(Location::new(path, *span))
                .with_hint("pass the board file with --board and the scenario with --scenario"),
        ),
        BoardError::Invalid { path, problems } => {
            for p in problems {
                f.push(
                    Finding::error("D001", format!("<{}>: {}", p.section, p.message))
                        .at(Location::new(path, p.span))
                        .with_hint("regenerate the board file with ACRN's board inspector"),
                );
            }
        }
    }
    f
}
