//! Linux as the Service VM: Debian's 6.1 kernel built with ACRN_GUEST and ACRN_HSM
//! (scripts/build-service-vm-kernel.sh --small: no networking, graphics, sound, USB or disk
//! controllers, which this test does not need) boots on configs/qemu-epyc/linux-service-vm.xml (the
//! shared scenario with a KERNEL_BZIMAGE Service VM) in QEMU TCG, with a busybox initramfs, to
//! its shell; Linux detects ACRN and its HSM driver binds (/dev/acrn_hsm exists).
//!
//! Opt-in: the kernel build takes minutes when its cache is empty. Run with
//! `cargo test -p acrn-system-tests --test linux_service_vm -- --ignored`.

use std::time::Duration;

use acrn_system_tests::debian::{busybox_static, service_vm_kernel, ServiceVmKernel};
use acrn_system_tests::initramfs::busybox_initramfs;
use acrn_system_tests::{check, require_tools, run, work_dir, RunSpec};

const VM: &str = "[SERVICE_VM] ";
const DONE: &str = "sos: checks done";

/// What the Service VM's init does: mount the pseudo file systems, report what the test checks,
/// then leave a shell on the console.
const INIT: &str = r#"/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "sos: shell up, $(grep -c ^processor /proc/cpuinfo) CPUs"
dmesg | grep -i -e acrn -e hsm | sed 's/^/sos: dmesg: /'
[ -c /dev/acrn_hsm ] && echo "sos: /dev/acrn_hsm is a character device"
[ -d /sys/devices/virtual/misc/acrn_hsm ] && echo "sos: acrn_hsm misc device registered"
echo "sos: checks done"
exec sh
"#;

#[test]
#[ignore = "builds the Service VM kernel (minutes with an empty cache); run with: cargo test -p acrn-system-tests --test linux_service_vm -- --ignored"]
fn linux_service_vm_binds_the_hsm_driver_in_qemu() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let kernel = service_vm_kernel(ServiceVmKernel::Small);
    let busybox = std::fs::read(busybox_static()).expect("read busybox");
    let dir = work_dir("qemu-linux-service-vm");
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, busybox_initramfs(&busybox, INIT)).expect("write the initramfs");
    let out = dir.join("image");
    let t = run(
        &RunSpec {
            board: "qemu-epyc",
            scenario: "linux-service-vm",
            out: &out,
            extra: vec![
                "--emulator".into(),
                "qemu".into(),
                "--module".into(),
                format!("Linux_bzImage={}", kernel.display()),
                "--module".into(),
                format!("Linux_initrd={}", initrd.display()),
            ],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(240),
        },
        |t| {
            t.texts().any(|l| l.contains(DONE))
                || t.find_prefix("[hv] VM 0 SERVICE_VM stopped").is_some()
                || t.find_prefix("[hv] PANIC").is_some()
                || t.find_prefix("[hv] FATAL").is_some()
        },
    );
    eprintln!(
        "Linux Service VM: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    let vm_line = |needle: &str| t.texts().any(|l| l.starts_with(VM) && l.contains(needle));
    check(
        &t,
        vm_line("Hypervisor detected: ACRN"),
        "Linux did not detect ACRN",
    );
    check(
        &t,
        vm_line("sos: shell up"),
        "Linux did not reach its busybox shell",
    );
    check(
        &t,
        vm_line("sos: /dev/acrn_hsm is a character device"),
        "the HSM driver did not bind (no /dev/acrn_hsm)",
    );
    check(
        &t,
        vm_line("sos: acrn_hsm misc device registered"),
        "no acrn_hsm misc device in sysfs",
    );
}
