//! Semantic checks over a loaded board and scenario (ACRN's 44 XSD asserts and the
//! allocator's checks). Each check reports [`Finding`](crate::diag::Finding)s with a stable
//! id (`C01`..) into the shared [`Findings`] and never stops at the first problem.
//!
//! Entry point for [`crate::validate`]: [`run_all`]. It only runs when the board loaded and
//! the scenario passed structure validation, so checks can rely on required elements being
//! present and defaults being populated.

use crate::board::Board;
use crate::diag::Findings;
use crate::scenario::Scenario;

/// A semantic check: reads both models, appends findings.
pub type Check = fn(&Board, &Scenario, &mut Findings);

/// The semantic checks that exist so far (id, function), in the order they run.
pub const CHECKS: &[(&str, Check)] = &[];

/// Runs every semantic check, appending findings.
pub fn run_all(board: &Board, scenario: &Scenario, findings: &mut Findings) {
    for (_, check) in CHECKS {
        check(board, scenario, findings);
    }
}
