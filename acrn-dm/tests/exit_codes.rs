//! The binary: bad command lines and unusable inputs end with a non-zero status and a message
//! naming the problem, before any VM exists (this host has no /dev/acrn_hsm).

use std::process::Command;

fn acrn_dm(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_acrn-dm"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_exit_2_naming_the_option() {
    let (code, err) = acrn_dm(&["--ovmf", "/usr/share/acrn/bios/OVMF.fd", "vm1"]);
    assert_eq!(code, 2);
    assert!(err.contains("option --ovmf is not supported"), "{err}");
    let (code, err) = acrn_dm(&["-s", "3,virtio-gpu", "vm1"]);
    assert_eq!(code, 2);
    assert!(err.contains("virtio-gpu"), "{err}");
    let (code, err) = acrn_dm(&["-m", "NoneM", "vm1"]);
    assert_eq!(code, 2);
    assert!(err.contains("NoneM"), "{err}");
    let (code, _) = acrn_dm(&["--help"]);
    assert_eq!(code, 0);
}

#[test]
fn missing_or_bad_kernel_and_too_much_memory_exit_1() {
    let (code, err) = acrn_dm(&["-m", "256M", "--kernel", "/nonexistent/bzImage", "vm1"]);
    assert_eq!(code, 1);
    assert!(err.contains("kernel /nonexistent/bzImage"), "{err}");
    let junk = std::env::temp_dir().join(format!("acrn-dm-exit-{}", std::process::id()));
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let (code, err) = acrn_dm(&["-m", "256M", "--kernel", junk.to_str().unwrap(), "vm1"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a Linux bzImage"), "{err}");
    std::fs::remove_file(&junk).unwrap();
}

/// The smallest file that passes as a bzImage: boot flag, HdrS, protocol 2.15, loaded high.
fn tiny_bzimage() -> std::path::PathBuf {
    let mut img = vec![0u8; 5 * 512 + 4096];
    img[0x1F1] = 4;
    img[0x1FE..0x200].copy_from_slice(&[0x55, 0xAA]);
    img[0x201] = 0x66;
    img[0x202..0x206].copy_from_slice(b"HdrS");
    img[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    img[0x211] = 1;
    let path = std::env::temp_dir().join(format!("acrn-dm-bz-{}", std::process::id()));
    std::fs::write(&path, img).unwrap();
    path
}

#[test]
fn too_much_memory_and_no_hsm_are_clear() {
    let k = tiny_bzimage();
    let (code, err) = acrn_dm(&["-m", "60000G", "--kernel", k.to_str().unwrap(), "vm1"]);
    assert_eq!(code, 1);
    assert!(err.contains("the VM asks for 61440000 MiB"), "{err}");
    if !std::path::Path::new("/dev/acrn_hsm").exists() {
        let (code, err) = acrn_dm(&["-m", "256M", "--kernel", k.to_str().unwrap(), "vm1"]);
        assert_eq!(code, 1);
        assert!(err.contains("cannot open /dev/acrn_hsm"), "{err}");
    }
    std::fs::remove_file(&k).unwrap();
}
