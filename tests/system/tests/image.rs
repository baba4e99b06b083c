//! `build` writes a complete image directory; a later failed build leaves it as it was.

use std::process::Command;

use acrn_system_tests::{build, repo_root, require_tools, work_dir};

fn sha256(path: &std::path::Path) -> String {
    let o = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn build_writes_the_image_and_a_failed_rebuild_keeps_it() {
    require_tools(&["grub-mkrescue", "xorriso", "sha256sum"]);
    let dir = work_dir("image");
    let out = dir.join("image");
    let o = build("qemu-epyc", "partitioned", &out, &[]);
    assert!(
        o.status.success(),
        "build failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );

    for f in [
        "acrn.elf",
        "acrn.iso",
        "grub.cfg",
        "gen/vm_tables.rs",
        "gen/partition.md",
        "bochsrc",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let cfg = std::fs::read_to_string(out.join("grub.cfg")).unwrap();
    assert!(cfg.contains("multiboot2 /boot/acrn.elf\n"), "{cfg}");
    assert!(
        cfg.contains("module2 /boot/hello.elf PRE_VM0_kernel\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("module2 /boot/rogue.elf PRE_VM1_kernel\n"),
        "{cfg}"
    );

    let text = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let m: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(m["hypervisor"]["sha256"], sha256(&out.join("acrn.elf")));
    let modules = m["modules"].as_array().unwrap();
    assert_eq!(modules.len(), 2, "{text}");
    for (module, guest) in modules.iter().zip(["hello.elf", "rogue.elf"]) {
        assert_eq!(
            module["sha256"],
            sha256(&out.join("guests").join(guest)),
            "{text}"
        );
    }
    assert_eq!(m["default_emulator"], "qemu");
    let qemu = m["emulators"]["qemu"].as_array().unwrap();
    assert!(
        qemu.iter().any(|a| a == "EPYC") && qemu.iter().any(|a| a == "2G"),
        "{text}"
    );
    assert!(
        m["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["memory_mb"] == 256),
        "{text}"
    );

    // An invalid scenario now: exit 1, and the image from before is untouched.
    let good =
        std::fs::read_to_string(repo_root().join("configs/qemu-epyc/partitioned.xml")).unwrap();
    let bad = dir.join("bad.xml");
    std::fs::write(
        &bad,
        good.replacen("<size>256</size>", "<size>99999</size>", 1),
    )
    .unwrap();
    let o = build("qemu-epyc", bad.to_str().unwrap(), &out, &[]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("manifest.json")).unwrap(),
        text
    );
    assert!(!dir.join("image.tmp").exists());
}
