//! Generation over every board/scenario pair we have: ACRN's corpus (../shared/acrn-corpus or
//! $ACRN_CORPUS; skipped with a message when absent unless ACRN_REQUIRE_CORPUS=1) and our
//! configs/. Every valid pair generates, the generated `vm_tables.rs` compiles against
//! `acrn-static-config` (one cargo build of a scratch crate), output is byte-identical run to
//! run, and the two invalid corpus scenarios generate nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use acrn_configurator::gen::{self, GenerateOptions, MANIFEST, PARTITION, VM_TABLES};

mod common;
use common::{corpus, is_invalid, pairs_in, repo};

fn all_pairs() -> Vec<(PathBuf, PathBuf)> {
    let mut v = pairs_in(&repo().join("configs"), "xml");
    if let Some(c) = corpus() {
        let corpus_pairs = pairs_in(&c, "xml");
        assert_eq!(corpus_pairs.len(), 30, "expected 30 corpus pairs");
        v.extend(corpus_pairs);
    }
    v
}

fn module_name(board: &Path, scenario: &Path) -> String {
    let b = board.file_stem().unwrap().to_string_lossy();
    let s = scenario.file_stem().unwrap().to_string_lossy();
    format!("{b}_{s}")
        .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        .to_lowercase()
}

#[test]
fn every_valid_pair_generates_tables_that_compile() {
    let pairs = all_pairs();
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-compile");
    let _ = std::fs::remove_dir_all(scratch.join("src"));
    std::fs::create_dir_all(scratch.join("src")).unwrap();
    let static_config = repo()
        .join("hypervisor/static-config")
        .canonicalize()
        .unwrap();
    std::fs::write(
        scratch.join("Cargo.toml"),
        format!(
            "[package]\nname = \"gen-compile-check\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nacrn-static-config = {{ path = {:?} }}\n\n[workspace]\n",
            static_config.display().to_string()
        ),
    )
    .unwrap();
    let mut lib = String::from("#![no_std]\n#![deny(warnings)]\n");
    let mut generated = 0;
    for (board, scenario) in &pairs {
        let result = gen::generate(board, scenario, &GenerateOptions::default());
        if is_invalid(scenario) {
            let report = result.expect_err("an invalid corpus scenario must not generate");
            assert!(report.findings.has_errors() || report.findings.has_critical());
            continue;
        }
        let files = result.unwrap_or_else(|r| {
            panic!(
                "{} + {}:\n{}",
                board.display(),
                scenario.display(),
                r.findings.render_plain()
            )
        });
        for name in [VM_TABLES, PARTITION, MANIFEST] {
            assert!(
                files.get(name).is_some_and(|c| !c.is_empty()),
                "{name} missing"
            );
        }
        let m = module_name(board, scenario);
        std::fs::write(
            scratch.join("src").join(format!("{m}.rs")),
            files.get(VM_TABLES).unwrap(),
        )
        .unwrap();
        lib.push_str(&format!("pub mod {m};\n"));
        generated += 1;
    }
    let expected_min = if corpus().is_some() { 28 } else { 0 };
    assert!(
        generated >= expected_min,
        "only {generated} pairs generated"
    );
    assert!(
        generated > 0,
        "no pairs at all: configs/ and the corpus are both missing"
    );
    std::fs::write(scratch.join("src/lib.rs"), lib).unwrap();

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--offline", "--manifest-path"])
        .arg(scratch.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "generated tables do not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn output_is_byte_identical_run_to_run() {
    for (board, scenario) in all_pairs().iter().filter(|(_, s)| !is_invalid(s)) {
        let opts = GenerateOptions::default();
        let a = gen::generate(board, scenario, &opts)
            .map_err(|r| r.findings.render_plain())
            .unwrap();
        let b = gen::generate(board, scenario, &opts)
            .map_err(|r| r.findings.render_plain())
            .unwrap();
        assert_eq!(a, b, "{} differs between runs", scenario.display());
    }
}

/// The CLI in two separate processes (different hash seeds) writes the same bytes, and an
/// invalid pair leaves the output directory untouched.
#[test]
fn cli_generate_is_deterministic_and_atomic() {
    let bin = env!("CARGO_BIN_EXE_acrn-configurator");
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gen-cli");
    let _ = std::fs::remove_dir_all(&base);
    let board = repo().join("configs/qemu-epyc/qemu-epyc.xml");
    let scenario = repo().join("configs/qemu-epyc/hybrid.xml");
    let run = |out: &Path, scenario: &Path| {
        Command::new(bin)
            .args(["generate", "--board"])
            .arg(&board)
            .arg("--scenario")
            .arg(scenario)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    for d in ["one", "two"] {
        let o = run(&base.join(d), &scenario);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for f in [VM_TABLES, PARTITION, MANIFEST] {
        let x = std::fs::read(base.join("one").join(f)).unwrap();
        let y = std::fs::read(base.join("two").join(f)).unwrap();
        assert_eq!(x, y, "{f} differs between runs");
    }

    // A scenario whose VM asks for more memory than the board has (rejected by the checks or
    // the allocator, whichever sees it first).
    let text = std::fs::read_to_string(&scenario).unwrap();
    assert!(
        text.contains("<size>256</size>"),
        "fixture changed: no 256 MB VM in {}",
        scenario.display()
    );
    let bad = base.join("too-big.xml");
    std::fs::write(
        &bad,
        text.replacen("<size>256</size>", "<size>65536</size>", 1),
    )
    .unwrap();
    let out = base.join("bad-out");
    let o = run(&out, &bad);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("nothing generated"), "{stderr}");
    assert!(
        !out.exists(),
        "an output directory was created for a failed generation"
    );
}

#[test]
fn toml_scenarios_generate_the_same_tables_as_their_xml() {
    let pairs = pairs_in(&repo().join("configs"), "toml");
    assert!(!pairs.is_empty(), "configs/ holds no TOML scenario");
    let opts = GenerateOptions::default();
    for (board, toml) in pairs {
        let xml = toml.with_extension("xml");
        let from_toml = gen::generate(&board, &toml, &opts)
            .unwrap_or_else(|r| panic!("{}:\n{}", toml.display(), r.findings.render_plain()));
        let from_xml = gen::generate(&board, &xml, &opts)
            .unwrap_or_else(|r| panic!("{}:\n{}", xml.display(), r.findings.render_plain()));
        assert_eq!(from_toml.files, from_xml.files, "{}", toml.display());
        // The first line points the editor at the committed schema.
        let text = std::fs::read_to_string(&toml).unwrap();
        assert!(
            text.starts_with("#:schema ../../schemas/scenario.schema.json\n"),
            "{}",
            toml.display()
        );
    }
}

#[test]
fn scheduler_parameters_reach_the_tables() {
    let dir = repo().join("configs/qemu-epyc");
    let text = std::fs::read_to_string(dir.join("shared.xml")).unwrap();
    let edited = text
        .replacen(
            "<SCHEDULER>SCHED_BVT</SCHEDULER>",
            "<SCHEDULER>SCHED_PRIO</SCHEDULER>",
            1,
        )
        .replacen(
            "<name>POST_VM1</name>",
            "<name>POST_VM1</name>\n    <priority>PRIO_HIGH</priority>\n    <bvt_weight>3</bvt_weight>\n    \
             <bvt_warp_value>-200</bvt_warp_value>\n    <bvt_warp_limit>4</bvt_warp_limit>\n    \
             <bvt_unwarp_period>7</bvt_unwarp_period>",
            1,
        );
    for needle in ["<SCHEDULER>SCHED_BVT</SCHEDULER>", "<name>POST_VM1</name>"] {
        assert!(
            text.contains(needle),
            "fixture changed: no {needle} in shared.xml"
        );
    }
    let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sched-params");
    std::fs::create_dir_all(&scratch).unwrap();
    let scenario = scratch.join("shared.xml");
    std::fs::write(&scenario, edited).unwrap();
    let board = dir.join("qemu-epyc.xml");
    let files = gen::generate(&board, &scenario, &GenerateOptions::default())
        .unwrap_or_else(|r| panic!("{}", r.findings.render_plain()));
    let tables = files.get(VM_TABLES).unwrap();
    assert!(tables.contains("scheduler: Scheduler::Prio,"), "{tables}");
    let post1 = &tables[tables.find("name: \"POST_VM1\"").unwrap()..];
    let post1 = &post1[..post1.find("VmConfig {").unwrap_or(post1.len())];
    assert!(post1.contains("priority: Priority::High,"), "{post1}");
    assert!(
        post1.contains(
            "bvt: BvtParams { weight: 3, warp_value: -200, warp_limit: 4, unwarp_period: 7 },"
        ),
        "{post1}"
    );
    // A VM without the settings gets ACRN's defaults.
    let post2 = &tables[tables.find("name: \"POST_VM2\"").unwrap()..];
    assert!(
        post2.contains(
            "bvt: BvtParams { weight: 1, warp_value: 0, warp_limit: 0, unwarp_period: 0 },"
        ),
        "{post2}"
    );
}
