//! An unmodified Debian Linux kernel boots as a `KERNEL_BZIMAGE` pre-launched VM
//! (configs/qemu-epyc/linux.xml: 2 pCPUs, 512 MB) in QEMU TCG, to the end of kernel init
//! (its "VFS: Unable to mount root fs" panic: there is no root file system), and sees the
//! memory and CPUs its VM was given. The same on Intel VMX in Bochs
//! (configs/bochs-tigerlake/linux.xml: 2 pCPUs, 256 MB) is opt-in, `#[ignore]`d: run it with
//! `cargo test -p acrn-system-tests --test linux -- --ignored`.
//!
//! The kernel comes from Debian's archive with `apt-get download linux-image-amd64` (the
//! metapackage), then the real `linux-image-6.x` package it depends on, unpacked with
//! `dpkg-deb -x`. It is cached in `<target>/linux-cache/vmlinuz` (or `$ACRN_LINUX_CACHE`), so
//! only the first run needs the network.

use std::time::Duration;

use acrn_system_tests::debian::debian_kernel;
use acrn_system_tests::{check, require_tools, run, RunSpec, Transcript};

const VM: &str = "LINUX_VM";

/// Linux's `Memory: AVAILK/TOTALK available ...` line: the total in KiB.
fn linux_total_kib(t: &Transcript) -> Option<u64> {
    let prefix = format!("[{VM}] ");
    t.texts().find_map(|l| {
        let rest = l.strip_prefix(&prefix)?;
        // Timestamps come first: "[    0.123456] Memory: ...".
        let m = &rest[rest.find("Memory: ")? + 8..];
        let total = m.split('/').nth(1)?.split('K').next()?;
        total.parse().ok()
    })
}

/// Boots `configs/<board>/linux.xml` with the Debian kernel in `emulator` and checks the end of
/// kernel init, the VM's 2 CPUs and its `mem_mib` of memory.
fn linux_boots(board: &str, emulator: &str, mem_mib: u64, boot_limit: Duration) {
    let kernel = debian_kernel();
    let out = acrn_system_tests::work_dir(&format!("{emulator}-linux")).join("image");
    let vfs = "VFS: Unable to mount root fs";
    let t = run(
        &RunSpec {
            board,
            scenario: "linux",
            out: &out,
            extra: vec![
                "--emulator".into(),
                emulator.into(),
                "--module".into(),
                format!("Linux_bzImage={}", kernel.display()),
            ],
            build_limit: Duration::from_secs(900),
            boot_limit,
        },
        |t| {
            t.texts().any(|l| l.contains(vfs))
                || t.find_prefix(&format!("[hv] VM 0 {VM} stopped")).is_some()
                || t.find_prefix("[hv] PANIC").is_some()
                || t.find_prefix("[hv] FATAL").is_some()
        },
    );
    eprintln!(
        "Linux: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    let vm_line = |needle: &str| {
        t.texts()
            .any(|l| l.starts_with(&format!("[{VM}] ")) && l.contains(needle))
    };
    check(
        &t,
        vm_line(vfs),
        "Linux did not reach the end of kernel init (the VFS line)",
    );
    check(
        &t,
        vm_line("smp: Brought up 1 node, 2 CPUs"),
        "Linux did not bring up the VM's 2 CPUs",
    );
    // Linux times its TSC calibration with the PIT's channel 2 through port 0x61: the
    // hypervisor's speaker timer answers those ports (no "no device" report), so the loop
    // ends as on a PC instead of spinning on all-ones reads.
    for port in ["0x42", "0x61"] {
        check(
            &t,
            t.find_prefix(&format!("[hv] VM 0 {VM}: no device at port {port}:"))
                .is_none(),
            &format!("port {port} (the speaker timer) found no device"),
        );
    }
    check(
        &t,
        vm_line("tsc: Detected"),
        "Linux did not calibrate its TSC",
    );
    // Every rate Linux takes for its TSC (calibrated, or from CPUID 0x15/0x16) is the one the
    // hypervisor measured: Bochs' CPU model claims 3.5 GHz for a TSC that runs at 200 MHz.
    let hv_khz = t.find_prefix("[hv] TSC: ").and_then(|i| {
        t.lines[i].text["[hv] TSC: ".len()..]
            .split(' ')
            .next()?
            .parse::<f64>()
            .ok()
    });
    let linux_mhz: Vec<f64> = t
        .texts()
        .filter(|l| l.starts_with(&format!("[{VM}] ")))
        .filter_map(|l| {
            l.split("tsc: Detected ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    check(
        &t,
        hv_khz.is_some_and(|khz| {
            !linux_mhz.is_empty()
                && linux_mhz
                    .iter()
                    .all(|mhz| (mhz * 1000.0 - khz).abs() <= khz * 0.02)
        }),
        &format!("Linux's TSC rates {linux_mhz:?} MHz are not the hypervisor's {hv_khz:?} kHz"),
    );
    // The CPU it sees is consistent: no feature whose MSRs the vCPU lacks (Linux's access
    // would #GP) and no XSAVE layout Linux finds inconsistent (a WARN splat).
    for (needle, what) in [
        (
            "unchecked MSR access error",
            "Linux took a #GP on an MSR that its CPUID offered",
        ),
        ("[ cut here ]", "Linux printed a warning splat"),
    ] {
        check(&t, !vm_line(needle), what);
    }
    // Linux's total excludes the firmware holes below 1 MiB (under 12 MiB in all).
    let total = linux_total_kib(&t);
    check(
        &t,
        total.is_some_and(|k| ((mem_mib - 12) * 1024..=mem_mib * 1024).contains(&k)),
        &format!("Linux's total memory is {total:?} KiB, not about {mem_mib} MiB"),
    );
}

#[test]
fn debian_linux_boots_as_a_pre_launched_vm_in_qemu() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    linux_boots("qemu-epyc", "qemu", 512, Duration::from_secs(120));
}

/// The same kernel on the Intel VMX backend in Bochs (configs/bochs-tigerlake/linux.xml: 2
/// pCPUs, 256 MB; 4 emulated CPUs, 1 GiB). Bochs interprets every instruction, so this takes
/// about 4 minutes: opt-in.
#[test]
#[ignore = "about 4 minutes in Bochs; run with: cargo test -p acrn-system-tests --test linux -- --ignored"]
fn debian_linux_boots_in_bochs_vmx() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    // Debian's kernel hangs on Bochs' tigerlake model right after "LSM: Security Framework
    // initializing", with or without a hypervisor; corei7_skylake_x (also VMX with EPT and
    // unrestricted guest) boots it. The configurator's bochsrc takes the model from here.
    if std::env::var_os("ACRN_BOCHS_MODEL").is_none() {
        std::env::set_var("ACRN_BOCHS_MODEL", "corei7_skylake_x");
    }
    linux_boots("bochs-tigerlake", "bochs", 256, Duration::from_secs(900));
}
