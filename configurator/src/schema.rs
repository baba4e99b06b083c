//! JSON Schemas of the two models (schemars), committed under `schemas/` so editors can
//! complete TOML scenarios; a test keeps the committed files up to date.

use crate::board::Board;
use crate::scenario::Scenario;

/// File name of the scenario schema inside `schemas/`.
pub const SCENARIO_SCHEMA_FILE: &str = "scenario.schema.json";
/// File name of the board schema inside `schemas/`.
pub const BOARD_SCHEMA_FILE: &str = "board.schema.json";

/// The JSON Schema of the scenario model (TOML/JSON form), pretty-printed with a final newline.
pub fn scenario_schema() -> String {
    let s = schemars::schema_for!(Scenario);
    format!("{}\n", serde_json::to_string_pretty(&s).unwrap_or_default())
}

/// The JSON Schema of the board model, pretty-printed with a final newline.
pub fn board_schema() -> String {
    let s = schemars::schema_for!(Board);
    format!("{}\n", serde_json::to_string_pretty(&s).unwrap_or_default())
}
