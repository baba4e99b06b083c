//! The committed JSON Schemas in schemas/ must equal what the models generate.
//! Regenerate with `cargo run -p acrn-configurator -- schema --out schemas`.

use std::path::Path;

use acrn_configurator::schema;

fn check(file: &str, expected: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(file);
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `acrn-configurator schema --out schemas`",
            path.display()
        )
    });
    assert!(
        committed == expected,
        "{} is stale: run `cargo run -p acrn-configurator -- schema --out schemas`",
        path.display()
    );
}

#[test]
fn scenario_schema_is_up_to_date() {
    check(schema::SCENARIO_SCHEMA_FILE, &schema::scenario_schema());
}

#[test]
fn board_schema_is_up_to_date() {
    check(schema::BOARD_SCHEMA_FILE, &schema::board_schema());
}

#[test]
fn scenario_schema_describes_the_toml_names() {
    let v: serde_json::Value = serde_json::from_str(&schema::scenario_schema()).unwrap();
    let text = v.to_string();
    for name in [
        "BUILD_TYPE",
        "IVSHMEM_REGION",
        "vuart_connection",
        "cpu_affinity",
        "virtio_devices",
        "load_order",
    ] {
        assert!(text.contains(name), "{name} missing from the schema");
    }
    assert!(
        !text.contains("spans"),
        "spans must not be part of the schema"
    );
}
