//! The command line against malformed input: a clear message with the file (and position
//! when there is one), exit status 1 (2 for usage errors), no panic, no half-written output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::corpus;

const BIN: &str = env!("CARGO_BIN_EXE_acrn-configurator");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("acrn-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A board to validate against: our qemu-epyc board (always in the repository).
fn board() -> PathBuf {
    common::repo().join("configs/qemu-epyc/qemu-epyc.xml")
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn validate_json(scenario: &Path) -> (i32, serde_json::Value, String) {
    let b = board();
    let out = run(&[
        "validate",
        "--board",
        b.to_str().unwrap(),
        "--scenario",
        scenario.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap(), v, stderr)
}

/// The findings about `file`, as (check, line).
fn about(v: &serde_json::Value, file: &Path) -> Vec<(String, u64)> {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|f| f["file"] == file.to_str().unwrap())
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn expect_rejected(name: &str, content: &[u8], check: &str) -> Vec<(String, u64)> {
    let d = tmpdir(name);
    let p = d.join("scenario.xml");
    std::fs::write(&p, content).unwrap();
    let (code, v, _) = validate_json(&p);
    assert_eq!(code, 1, "{name}: {v}");
    let found = about(&v, &p);
    assert!(
        found.iter().any(|(c, _)| c == check),
        "{name}: expected {check}, got {found:?}"
    );
    std::fs::remove_dir_all(&d).ok();
    found
}

#[test]
fn not_xml() {
    let f = expect_rejected("notxml", b"this is not xml at all\n", "F002");
    assert_eq!(f[0].1, 1);
}

#[test]
fn wrong_root() {
    expect_rejected(
        "root",
        b"<?xml version=\"1.0\"?>\n<config><hv/></config>\n",
        "F003",
    );
}

#[test]
fn truncated_file() {
    let f = expect_rejected(
        "trunc",
        b"<acrn-config>\n  <hv>\n    <BUILD_TYPE>debug</BUILD_TY",
        "F002",
    );
    assert_eq!(f[0].1, 3, "{f:?}");
}

#[test]
fn binary_garbage() {
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    expect_rejected("bin", &garbage, "F001");
}

#[test]
fn mismatched_tags() {
    let f = expect_rejected(
        "mismatch",
        b"<acrn-config>\n<hv>\n</vm>\n</acrn-config>",
        "F002",
    );
    assert_eq!(f[0].1, 3);
}

#[test]
fn deep_nesting() {
    let deep = format!(
        "<acrn-config>{}{}</acrn-config>",
        "<hv>".repeat(10_000),
        "</hv>".repeat(10_000)
    );
    expect_rejected("deep", deep.as_bytes(), "F002");
}

#[test]
fn huge_file_is_refused_after_the_limit() {
    let d = tmpdir("huge");
    let p = d.join("huge.xml");
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    drop(f);
    let (code, v, _) = validate_json(&p);
    assert_eq!(code, 1);
    assert!(about(&v, &p).iter().any(|(c, _)| c == "F001"), "{v}");
    assert!(v.to_string().contains("bytes"), "{v}");
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn board_given_as_scenario_and_the_reverse() {
    let Some(c) = corpus() else { return };
    let board = c.join("qemu/qemu.xml");
    let scen = c.join("qemu/shared.xml");
    let out = run(&[
        "validate",
        "--board",
        scen.to_str().unwrap(),
        "--scenario",
        board.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(about(&v, &board)[0].0, "F003", "{v}");
    assert_eq!(about(&v, &scen)[0].0, "F003", "{v}");
}

#[test]
fn valid_pair_and_duplicate_name() {
    let Some(c) = corpus() else { return };
    let b = c.join("whl-ipc-i5/whl-ipc-i5.xml");
    let ok = run(&[
        "validate",
        "--board",
        b.to_str().unwrap(),
        "--scenario",
        c.join("whl-ipc-i5/hybrid.xml").to_str().unwrap(),
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad_path = c.join("whl-ipc-i5/shared_launch_1user_vm_hardrt.xml");
    let bad = run(&[
        "validate",
        "--board",
        b.to_str().unwrap(),
        "--scenario",
        bad_path.to_str().unwrap(),
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(
        text.contains("[S020]") && text.contains("POST_STD_VM1"),
        "{text}"
    );
    assert!(
        text.contains("^^^^"),
        "the offending line with a caret: {text}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        run(&["validate", "--board", "x.xml"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(&[
            "validate",
            "--board",
            "no_such_board_name",
            "--scenario",
            "shared"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(run(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(run(&["schema"]).status.code(), Some(2));
    assert_eq!(run(&["convert", "a.xml", "b.txt"]).status.code(), Some(2));
}

#[test]
fn convert_invalid_input_writes_nothing() {
    let d = tmpdir("conv");
    let input = d.join("in.xml");
    std::fs::write(
        &input,
        "<acrn-config><hv><BUILD_TYPE>fast</BUILD_TYPE></hv><vm id=\"0\"/></acrn-config>",
    )
    .unwrap();
    let out = d.join("out.toml");
    let r = run(&["convert", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(&d).unwrap().count(),
        1,
        "no temporary files left"
    );
    let text = String::from_utf8_lossy(&r.stderr);
    assert!(
        text.contains("S005") && text.contains("in.xml:1:"),
        "{text}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn convert_round_trip_on_disk() {
    let Some(c) = corpus() else { return };
    let d = tmpdir("conv2");
    let toml = d.join("s.toml");
    let xml = d.join("s.xml");
    let src = c.join("cfl-k700-i7/shared.xml");
    assert!(
        run(&["convert", src.to_str().unwrap(), toml.to_str().unwrap()])
            .status
            .success()
    );
    let t = std::fs::read_to_string(&toml).unwrap();
    assert!(
        t.starts_with("#:schema ")
            && t.lines()
                .next()
                .unwrap()
                .ends_with("schemas/scenario.schema.json"),
        "{t}"
    );
    assert!(
        run(&["convert", toml.to_str().unwrap(), xml.to_str().unwrap()])
            .status
            .success()
    );
    let b = c.join("cfl-k700-i7/cfl-k700-i7.xml");
    let v = run(&[
        "validate",
        "--board",
        b.to_str().unwrap(),
        "--scenario",
        toml.to_str().unwrap(),
    ]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn schema_command_prints_json() {
    let out = run(&["schema", "scenario"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["title"], "Scenario");
}

#[test]
fn missing_files_and_unknown_names_are_usage_errors() {
    let b = board();
    let b = b.to_str().unwrap();
    for args in [
        &["validate", "--board", b, "--scenario", "/nonexistent/s.xml"][..],
        &[
            "validate",
            "--board",
            "/nonexistent/b.xml",
            "--scenario",
            "shared",
        ][..],
        &[
            "validate",
            "--board",
            "no-such-board",
            "--scenario",
            "shared",
        ][..],
        &["validate", "--board", b][..],
        &["explain", "Q99"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = run(&["explain", "c07"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("C07 (error): "));
}

#[test]
fn run_refuses_a_console_input_it_cannot_read_before_building() {
    let dir = tmpdir("console-input");
    let out_dir = dir.join("image");
    let b = board();
    for (input, says) in [
        (dir.join("missing.txt"), "No such file"),
        (dir.clone(), "is a directory"),
    ] {
        let out = run(&[
            "run",
            "--board",
            b.to_str().unwrap(),
            "--scenario",
            "partitioned",
            "--out",
            out_dir.to_str().unwrap(),
            "--console-input",
            input.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("--console-input {}: ", input.display()))
                && stderr.contains(says),
            "{stderr}"
        );
        assert!(!out_dir.exists(), "nothing is built");
    }
}
