//! `build` refuses bad input with the configurator's findings and writes nothing.

use std::path::Path;

use acrn_system_tests::{build, repo_root, work_dir};

fn assert_nothing_written(out: &Path) {
    assert!(!out.exists(), "{} was created", out.display());
    let tmp = out.with_file_name(format!(
        "{}.tmp",
        out.file_name().unwrap().to_string_lossy()
    ));
    assert!(!tmp.exists(), "{} was left behind", tmp.display());
}

#[test]
fn invalid_scenario_fails_with_findings_and_leaves_no_directory() {
    let dir = work_dir("invalid-scenario");
    let good =
        std::fs::read_to_string(repo_root().join("configs/qemu-epyc/partitioned.xml")).unwrap();
    // PRE_VM1 on a pCPU the board does not have.
    let bad = good.replacen("<pcpu_id>3</pcpu_id>", "<pcpu_id>9</pcpu_id>", 1);
    assert_ne!(good, bad, "the edit must change the scenario");
    let scenario = dir.join("bad-pcpu.xml");
    std::fs::write(&scenario, bad).unwrap();
    let out = dir.join("image");

    let o = build("qemu-epyc", scenario.to_str().unwrap(), &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{stderr}");
    // The findings name the file and the position of the bad value, and the pCPU.
    assert!(
        stderr.contains("bad-pcpu.xml:"),
        "no file location in:\n{stderr}"
    );
    assert!(
        stderr.contains('9'),
        "the bad pCPU is not mentioned:\n{stderr}"
    );
    assert!(stderr.contains("nothing was built"), "stderr:\n{stderr}");
    assert_nothing_written(&out);
}

#[test]
fn unknown_module_tag_is_a_usage_error() {
    let dir = work_dir("unknown-module");
    let out = dir.join("image");
    let file = repo_root().join("README.md");
    let arg = format!("NO_SUCH_TAG={}", file.display());
    let o = build("qemu-epyc", "partitioned", &out, &["--module".into(), arg]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(
        stderr.contains("NO_SUCH_TAG") && stderr.contains("PRE_VM0_kernel"),
        "the message should name the bad tag and the scenario's tags:\n{stderr}"
    );
    assert_nothing_written(&out);
}

#[test]
fn a_directory_build_did_not_write_is_not_replaced() {
    let dir = work_dir("not-ours");
    let out = dir.join("mine");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "precious").unwrap();
    let o = build("qemu-epyc", "partitioned", &out, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("refusing to replace"), "stderr:\n{stderr}");
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "precious"
    );
}
