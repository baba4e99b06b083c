//! Writers: the model to XML (ACRN's format) and to TOML (with a `#:schema` line).

use std::fmt::Write as _;

use serde_json::Value;

use super::model::Scenario;

/// Errors while writing a scenario.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot serialize the scenario: {0}")]
    Serialize(String),
}

/// The scenario as TOML; the first line is `#:schema {schema}` so editors offer completion.
pub fn to_toml(s: &Scenario, schema: &str) -> Result<String, WriteError> {
    let body = toml::to_string_pretty(s).map_err(|e| WriteError::Serialize(e.to_string()))?;
    Ok(format!("#:schema {schema}\n\n{body}"))
}

/// The scenario as ACRN scenario XML.
pub fn to_xml(s: &Scenario) -> Result<String, WriteError> {
    let v = serde_json::to_value(s).map_err(|e| WriteError::Serialize(e.to_string()))?;
    let Value::Object(root) = v else {
        return Err(WriteError::Serialize(
            "the scenario is not an object".into(),
        ));
    };
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<acrn-config");
    for attr in ["board", "scenario"] {
        if let Some(Value::String(a)) = root.get(attr) {
            let _ = write!(out, " {attr}=\"{}\"", escape(a, true));
        }
    }
    out.push_str(">\n");
    for (k, v) in &root {
        if k != "board" && k != "scenario" {
            element(&mut out, k, v, 1);
        }
    }
    out.push_str("</acrn-config>\n");
    Ok(out)
}

fn element(out: &mut String, name: &str, v: &Value, depth: usize) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for i in items {
                element(out, name, i, depth);
            }
        }
        Value::Object(map) => {
            let _ = write!(out, "{pad}<{name}");
            if name == "vm" {
                if let Some(id) = map.get("id") {
                    let _ = write!(out, " id=\"{}\"", scalar(id));
                }
            }
            let children: Vec<_> = map
                .iter()
                .filter(|(k, _)| !(name == "vm" && *k == "id"))
                .collect();
            if children.is_empty() {
                out.push_str("/>\n");
                return;
            }
            out.push_str(">\n");
            for (k, c) in children {
                element(out, k, c, depth + 1);
            }
            let _ = writeln!(out, "{pad}</{name}>");
        }
        scalar_value => {
            let text = scalar(scalar_value);
            if text.is_empty() {
                let _ = writeln!(out, "{pad}<{name}/>");
            } else {
                let _ = writeln!(out, "{pad}<{name}>{}</{name}>", escape(&text, false));
            }
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Bool(true) => "y".into(),
        Value::Bool(false) => "n".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

fn escape(s: &str, attr: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' if attr => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}
