//! The matrix over every example scenario, generated from the folders (a new scenario file
//! joins without a code change); each prints one summary line per pair.
//!
//! * configs/: every board/scenario pair is validated, built and booted on its board's
//!   emulator (`default_emulator` of the manifest: QEMU TCG for qemu-epyc, Bochs for
//!   bochs-tigerlake). A pair whose VMs need a module with no default (a Linux kernel:
//!   linux.xml) is validated and built only (acrn.elf, grub.cfg, no ISO); tests/linux.rs boots
//!   qemu-epyc/linux.xml with Debian's kernel. The boot check follows the manifest: each VM the
//!   hypervisor starts with `hello.elf` or `bench.elf` passes, with `rogue.elf` is stopped by
//!   the hypervisor, with `service-vm.elf` passes (after its post-launched VMs); no `[hv] PANIC`
//!   or `[hv] FATAL`. The scenario-specific tests (partitioned.rs, service_vm.rs) check more.
//! * ACRN's corpus: every valid pair is built into acrn.elf (debug; not booted: real boards),
//!   nuc11tnbi5/partitioned also in the release profile; the two pairs ACRN itself rejects are
//!   refused with nothing written.

use std::path::Path;
use std::time::{Duration, Instant};

use acrn_system_tests::{
    build, corpus, pairs_in, repo_root, require_tools, run, say, validate, work_dir, RunSpec,
    Transcript,
};

/// The two corpus scenarios ACRN rejects (as configurator/tests/common/mod.rs).
const INVALID: [&str; 2] = [
    "whl-ipc-i5/shared_launch_1user_vm_hardrt.xml",
    "whl-ipc-i5/shared_launch_1user_vm_vxworks.xml",
];

/// `board-folder/scenario-file`, the pair's name in the summary.
fn pair_name(scenario: &Path) -> String {
    let dir = scenario.parent().unwrap().file_name().unwrap();
    format!(
        "{}/{}",
        dir.to_string_lossy(),
        scenario.file_name().unwrap().to_string_lossy()
    )
}

fn manifest(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("manifest.json"))
        .unwrap_or_else(|e| panic!("{}/manifest.json: {e}", dir.display()));
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// What the console must show for each VM the hypervisor starts, from the manifest.
#[derive(Debug)]
enum Expect {
    Pass(String),
    Stopped(String),
}

impl Expect {
    fn met(&self, t: &Transcript) -> bool {
        match self {
            Expect::Pass(vm) => t.find(&format!("[{vm}] verdict: PASS")).is_some(),
            Expect::Stopped(prefix) => t.find_prefix(prefix).is_some(),
        }
    }
}

fn expectations(m: &serde_json::Value) -> Vec<Expect> {
    let vms = m["vms"].as_array().expect("vms");
    let mut out = Vec::new();
    for module in m["modules"].as_array().expect("modules") {
        if module["origin"] != "test-guest" {
            continue;
        }
        let name = module["vm"].as_str().unwrap_or_default();
        let Some(vm) = vms.iter().find(|v| v["name"] == name) else {
            continue;
        };
        // Post-launched VMs report through the Service VM, whose own verdict waits for theirs.
        if vm["load_order"] == "POST_LAUNCHED_VM" {
            continue;
        }
        let guest = Path::new(module["source"].as_str().unwrap_or_default())
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(match guest.as_str() {
            "rogue.elf" => Expect::Stopped(format!("[hv] VM {} {name} stopped", vm["id"])),
            _ => Expect::Pass(name.to_string()),
        });
    }
    out
}

/// The first line that decides failure: the hypervisor failed, or a VM that must pass failed
/// or was stopped (other than by ending normally: every vCPU halted after the guest was done).
fn failed(t: &Transcript, expect: &[Expect]) -> Option<String> {
    let must_pass: Vec<&str> = expect
        .iter()
        .filter_map(|e| match e {
            Expect::Pass(vm) => Some(vm.as_str()),
            Expect::Stopped(_) => None,
        })
        .collect();
    t.texts()
        .find(|l| {
            l.starts_with("[hv] PANIC")
                || l.starts_with("[hv] FATAL")
                || must_pass.iter().any(|vm| {
                    l.starts_with(&format!("[{vm}] verdict: FAIL"))
                        || (l.starts_with("[hv] VM ")
                            && l.contains(&format!(" {vm} stopped"))
                            && !l.ends_with("(the guest is done)"))
                })
        })
        .map(str::to_string)
}

/// Boots a built pair with `acrn-configurator run` on its default emulator; the outcome for
/// the summary, or the failure.
fn boot(
    board: &Path,
    scenario: &Path,
    out: &Path,
    m: &serde_json::Value,
) -> Result<String, String> {
    let emulator = m["default_emulator"]
        .as_str()
        .expect("default_emulator")
        .to_string();
    require_tools(&[
        if emulator == "qemu" {
            "qemu-system-x86_64"
        } else {
            "bochs"
        },
        "grub-mkrescue",
        "xorriso",
    ]);
    let expect = expectations(m);
    if expect.is_empty() {
        return Err("no VM runs a test guest: nothing to check on the console".into());
    }
    let t = run(
        &RunSpec {
            board: board.to_str().unwrap(),
            scenario: scenario.to_str().unwrap(),
            out,
            extra: vec!["--emulator".into(), emulator.clone()],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(if emulator == "qemu" { 180 } else { 900 }),
        },
        |t| failed(t, &expect).is_some() || expect.iter().all(|e| e.met(t)),
    );
    if t.find_prefix("[hv] ACRN hypervisor").is_none() {
        return Err(format!("the hypervisor did not start\n{}", t.summary()));
    }
    if let Some(line) = failed(&t, &expect) {
        return Err(format!("`{line}`\n{}", t.summary()));
    }
    let unmet: Vec<String> = expect
        .iter()
        .filter(|e| !e.met(&t))
        .map(|e| format!("{e:?}"))
        .collect();
    if !unmet.is_empty() {
        return Err(format!("not seen: {}\n{}", unmet.join(", "), t.summary()));
    }
    Ok(format!(
        "boot PASS in {emulator} ({:.1} s; {} VM(s) checked)",
        t.seconds,
        expect.len()
    ))
}

/// Validates and builds one pair into `out`: the build's summary, or the failure.
fn validate_and_build(
    board: &Path,
    scenario: &Path,
    out: &Path,
    extra: &[String],
) -> Result<(String, serde_json::Value), String> {
    let (code, stderr) = validate(board, scenario);
    if code != Some(0) {
        return Err(format!("validate exited {code:?}:\n{stderr}"));
    }
    let start = Instant::now();
    let o = build(
        board.to_str().unwrap(),
        scenario.to_str().unwrap(),
        out,
        extra,
    );
    let secs = start.elapsed().as_secs_f64();
    if !o.status.success() {
        return Err(format!(
            "build exited {:?}:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let m = manifest(out);
    let elf = out.join("acrn.elf");
    let size = std::fs::metadata(&elf)
        .map_err(|e| format!("{}: {e}", elf.display()))?
        .len();
    let missing: Vec<&str> = m["missing_modules"]
        .as_array()
        .expect("missing_modules")
        .iter()
        .filter_map(|x| x["tag"].as_str())
        .collect();
    let iso = out.join("acrn.iso").is_file();
    if iso != missing.is_empty() {
        return Err(format!(
            "acrn.iso {} with {} module(s) missing",
            if iso { "written" } else { "not written" },
            missing.len()
        ));
    }
    let what = if missing.is_empty() {
        "acrn.elf + acrn.iso".to_string()
    } else {
        format!("acrn.elf only, modules to add: {}", missing.join(", "))
    };
    Ok((
        format!(
            "validate ok, build ok ({}, {secs:.1} s, acrn.elf {size} bytes, {what})",
            m["profile"].as_str().unwrap_or("?")
        ),
        m,
    ))
}

/// Prints the summary and fails with every failure's details.
fn finish(title: &str, summary: &[String], failures: &[String]) {
    say(&format!("\n{title}: {} pair(s)", summary.len()));
    for line in summary {
        say(&format!("  {line}"));
    }
    assert!(
        failures.is_empty(),
        "{} failure(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_configs_pair_validates_builds_and_boots_on_its_emulator() {
    let pairs = pairs_in(&repo_root().join("configs"));
    assert!(!pairs.is_empty(), "no pairs in configs/");
    let base = work_dir("matrix-configs");
    let (mut summary, mut failures) = (Vec::new(), Vec::new());
    for (board, scenario) in &pairs {
        let name = pair_name(scenario);
        let out = base.join(name.replace('/', "-"));
        let line = validate_and_build(board, scenario, &out, &[]).and_then(|(built, m)| {
            if m["iso"].is_null() {
                return Ok(format!(
                    "{built}; not booted: no default for its modules (tests/linux.rs boots linux.xml with Debian's kernel)"
                ));
            }
            // These scenarios' VMs need the `platform` guest and its arguments; their own tests
            // (tests/lapic_passthrough.rs, tests/vuart.rs) boot them.
            let stem = scenario.file_stem().and_then(|s| s.to_str()).unwrap_or("");
            if ["rtvm", "vuart", "pci-vuart"].contains(&stem) {
                return Ok(format!("{built}; booted by its own test with the platform guest"));
            }
            boot(board, scenario, &out, &m).map(|booted| format!("{built}; {booted}"))
        });
        match line {
            Ok(l) => summary.push(format!("{name:<34} {l}")),
            Err(e) => {
                summary.push(format!("{name:<34} FAILED"));
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    finish("matrix configs/", &summary, &failures);
}

#[test]
fn every_valid_corpus_pair_builds_into_acrn_elf() {
    let Some(corpus) = corpus() else {
        return;
    };
    let pairs = pairs_in(&corpus);
    assert_eq!(pairs.len(), 30, "expected 30 corpus pairs");
    let invalid = pairs
        .iter()
        .filter(|(_, s)| INVALID.contains(&pair_name(s).as_str()))
        .count();
    assert_eq!(invalid, INVALID.len(), "ACRN's two rejected scenarios");
    let base = work_dir("matrix-corpus");
    let (mut summary, mut failures) = (Vec::new(), Vec::new());
    for (board, scenario) in &pairs {
        let name = pair_name(scenario);
        let out = base.join(name.replace('/', "-"));
        if INVALID.contains(&name.as_str()) {
            let o = build(
                board.to_str().unwrap(),
                scenario.to_str().unwrap(),
                &out,
                &[],
            );
            if o.status.code() == Some(1) && !out.exists() {
                summary.push(format!(
                    "{name:<52} invalid (as in ACRN): refused, nothing written"
                ));
            } else {
                summary.push(format!("{name:<52} FAILED"));
                failures.push(format!(
                    "{name}: ACRN rejects it, but build exited {:?} (output written: {})",
                    o.status.code(),
                    out.exists()
                ));
            }
            continue;
        }
        match validate_and_build(board, scenario, &out, &[]) {
            Ok((l, _)) => summary.push(format!("{name:<52} {l}")),
            Err(e) => {
                summary.push(format!("{name:<52} FAILED"));
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    // The release profile too, for one pair.
    let (board, scenario) = pairs
        .iter()
        .find(|(_, s)| s.ends_with("nuc11tnbi5/partitioned.xml"))
        .expect("nuc11tnbi5/partitioned.xml in the corpus");
    let out = base.join("nuc11tnbi5-partitioned-release");
    match validate_and_build(board, scenario, &out, &["--release".into()]) {
        Ok((l, m)) if m["profile"] == "release" => summary.push(format!(
            "{:<52} {l}",
            "nuc11tnbi5/partitioned.xml (release)"
        )),
        Ok((_, m)) => failures.push(format!("release build has profile {}", m["profile"])),
        Err(e) => failures.push(format!("nuc11tnbi5/partitioned.xml --release: {e}")),
    }
    finish("matrix corpus", &summary, &failures);
}

/// `build --all-scenarios` of a board folder: every scenario into DIR/<scenario>/, going on
/// past one that fails, exit 1 with the list.
#[test]
fn all_scenarios_builds_each_and_lists_the_failures() {
    let dir = work_dir("all-scenarios");
    let board_dir = dir.join("board");
    std::fs::create_dir_all(&board_dir).unwrap();
    let configs = repo_root().join("configs/qemu-epyc");
    for f in ["qemu-epyc.xml", "partitioned.xml", "linux.xml"] {
        std::fs::copy(configs.join(f), board_dir.join(f)).unwrap();
    }
    let good = std::fs::read_to_string(configs.join("partitioned.xml")).unwrap();
    std::fs::write(
        board_dir.join("broken.xml"),
        good.replacen("<pcpu_id>3</pcpu_id>", "<pcpu_id>9</pcpu_id>", 1),
    )
    .unwrap();
    let out = dir.join("out");
    let o = std::process::Command::new(acrn_system_tests::configurator())
        .args(["build", "--all-scenarios", "--board"])
        .arg(board_dir.join("qemu-epyc.xml"))
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 3 scenario(s) failed: broken"),
        "{stderr}"
    );
    // A board outside configs/ gets no test guests: every kernel is the user's to add.
    for (scenario, tags) in [
        ("partitioned", &["PRE_VM0_kernel", "PRE_VM1_kernel"][..]),
        ("linux", &["Linux_bzImage"][..]),
    ] {
        let d = out.join(scenario);
        assert!(d.join("acrn.elf").is_file(), "{scenario}: {stderr}");
        assert!(
            !d.join("acrn.iso").exists(),
            "{scenario}: ISO without its modules"
        );
        let cfg = std::fs::read_to_string(d.join("grub.cfg")).unwrap();
        for tag in tags {
            assert!(
                cfg.contains(&format!("  module2 /boot/FILL-IN-{tag} {tag}\n")),
                "{scenario}: {cfg}"
            );
            assert!(
                stderr.contains(&format!("warning: module `{tag}`")),
                "{stderr}"
            );
        }
    }
    assert!(!out.join("broken").exists());
}

/// Every pair of configs/ is a file of the repository, so the matrix above has them all.
#[test]
fn configs_pairs_are_found() {
    let names: Vec<String> = pairs_in(&repo_root().join("configs"))
        .iter()
        .map(|(_, s)| pair_name(s))
        .collect();
    for want in [
        "qemu-epyc/partitioned.xml",
        "qemu-epyc/partitioned.toml",
        "bochs-tigerlake/shared.xml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
}
