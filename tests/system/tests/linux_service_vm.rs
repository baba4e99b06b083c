//! Linux as the Service VM: Debian's 6.1 kernel built with ACRN_GUEST and ACRN_HSM
//! (scripts/build-service-vm-kernel.sh --small: no networking, graphics, sound, USB or disk
//! controllers, which this test does not need) boots on configs/qemu-epyc/linux-service-vm.xml
//! (the shared scenario with a KERNEL_BZIMAGE Service VM) in QEMU TCG, with a busybox
//! initramfs, to its shell; Linux detects ACRN and its HSM driver binds (/dev/acrn_hsm exists).
//! Then the launch script the configurator generates for the scenario's first post-launched VM
//! runs the Rust acrn-dm (static, in the initramfs) twice, after acrn-dm refused a bad option,
//! a missing kernel and more memory than the Service VM has (non-zero exits with messages):
//! each time Debian's unmodified kernel boots in the User VM with a busybox initramfs, prints
//! through acrn-dm's COM1 (on acrn-dm's stdio, so on the Service VM's console), loads Debian's
//! virtio modules and writes its virtio-blk disk (the scenario's `<block>`, an image file in
//! the Service VM), binds Debian's e1000e driver to the board's NIC that the launch script
//! passes through (`pci_devs`) and sees its link come up and its interrupts arrive, runs a
//! command and powers off, and acrn-dm exits 0; the Service VM reads the write back from the
//! image, and the second run's User VM finds the first run's. Both VMs share a
//! hypervisor-provided IVSHMEM region (acrn-dm's `ivshmem,hv:/`, made through the HSM's
//! CREATE_VDEV): the User VM reads the Service VM's pattern and the Service VM its answer. A
//! PCI vUART links them (acrn-dm's `uart,vuart_idx`): Linux's 8250_pci drives both ends, and
//! each User VM run's line reaches the Service VM.
//!
//! The same in the hybrid scenario (configs/qemu-epyc/linux-hybrid.xml): a pre-launched VM,
//! Debian's kernel with its own busybox init on pCPU 3, keeps printing through both launches
//! and after them, untouched.
//!
//! Opt-in: the kernel build takes minutes when its cache is empty. Run with
//! `cargo test -p acrn-system-tests --test linux_service_vm -- --ignored`.

use std::time::Duration;

use acrn_system_tests::debian::{
    busybox_static, debian_kernel, debian_uvm_modules, service_vm_kernel, ServiceVmKernel,
};
use acrn_system_tests::initramfs::{busybox_initramfs_with, Entry};
use acrn_system_tests::{
    acrn_dm_static, check, generate, qemu_linux_modules, require_tools, run, work_dir, RunSpec,
};

const VM: &str = "[SERVICE_VM] ";
const DONE: &str = "sos: checks done";
/// The User VM's marker line: its init ran.
const UVM_UP: &str = "uvm: init up";
/// The scenario's first post-launched VM (`launch_user_vm_id1.sh`).
const LAUNCH_SCRIPT: &str = "launch_user_vm_id1.sh";

/// The User VM's init: a marker, a command whose output the test checks, its virtio-blk disk
/// (Debian's virtio modules, loaded by hand) written with the launch's number, power-off.
const UVM_INIT: &str = r#"/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "uvm: init up"
echo "uvm: $(grep -c ^processor /proc/cpuinfo) CPUs, kernel $(uname -r)"
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk virtio_console; do
    insmod /lib/modules/$m.ko || echo "uvm: insmod $m failed"
done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
if [ -b /dev/vda ]; then
    run=$(( $(dd if=/dev/vda bs=1 count=1 2>/dev/null | od -An -tu1 | tr -d ' ') + 0 ))
    echo "uvm: vda $(cat /sys/block/vda/size) sectors, run byte $run"
    printf "\\$(printf %03o $((run + 1)))acrn-rs virtio-blk from the User VM" | dd of=/dev/vda conv=fsync 2>/dev/null
    echo "uvm: vda written"
    # Sequential read throughput: the whole disk, timed by the guest's uptime (busybox dd
    # prints no rate).
    echo 3 > /proc/sys/vm/drop_caches
    t0=$(cut -d' ' -f1 /proc/uptime)
    dd if=/dev/vda of=/dev/null bs=64k 2>/dev/null
    t1=$(cut -d' ' -f1 /proc/uptime)
    echo "uvm: read vda: $(cat /sys/block/vda/size) sectors from $t0 to $t1 s"
else
    echo "uvm: no /dev/vda"
fi
# The virtio console (acrn-dm's `virtio-console,@file:`): a line on hvc0.
for i in 1 2 3 4 5; do [ -c /dev/hvc0 ] && break; sleep 1; done
if [ -c /dev/hvc0 ]; then
    echo "on the virtio console, run $(( run + 1 ))" > /dev/hvc0
else
    echo "uvm: no /dev/hvc0"
fi
# The passed-through e1000e: Linux's driver, its link, its interrupts (MSI-X through the
# hypervisor's remapping).
insmod /lib/modules/e1000e.ko || echo "uvm: insmod e1000e failed"
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 1; done
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] && break; sleep 1; done
    echo "uvm: eth0 driver $(basename $(readlink /sys/class/net/eth0/device/driver)) carrier $(cat /sys/class/net/eth0/carrier 2>/dev/null)"
    echo "uvm: eth0 interrupts: $(grep eth0 /proc/interrupts | tr -s ' ' | tr '\n' ';')"
    # A clean shutdown stops the NIC (receive off, reset): QEMU's e1000e has no reset the
    # next owner could use (no FLR), so a NIC left receiving would write the next User VM's
    # memory at this run's ring addresses as soon as its driver turns bus mastering on.
    ip link set eth0 down
    rmmod e1000e
else
    echo "uvm: no eth0"
fi
# The IVSHMEM region it shares with the Service VM (acrn-dm's `ivshmem,hv:/sos_uvm`, made by
# the hypervisor through the HSM's CREATE_VDEV): read what the Service VM wrote, answer.
$PCI_FUNCTION
d=$(pci_function 0x1af4 0x1110)
if [ -n "$d" ]; then
    bar2=$(sed -n 3p $d/resource | cut -d' ' -f1)
    echo "uvm: ivshmem at $(basename $d) revision $(cat $d/revision), BAR2 size $(( $(sed -n 3p $d/resource | cut -d' ' -f2) - bar2 + 1 ))"
    echo "uvm: ivshmem reads $(devmem $bar2 32)"
    devmem $((bar2 + 4)) 32 $((0xc0ffee00 + run + 1))
else
    echo "uvm: no ivshmem"
fi
# The PCI vUART link to the Service VM (acrn-dm's `uart,vuart_idx`, the hypervisor's MCS9900
# through CREATE_VDEV), driven by Linux's 8250_pci.
d=$(pci_function 0x9710 0x9900)
tty=$([ -n "$d" ] && ls $d/tty 2>/dev/null | head -n 1)
[ -n "$d" ] && echo "uvm: vuart at $(basename $d) is ${tty:-no tty}"
if [ -n "$tty" ]; then
    stty -F /dev/$tty 115200 raw -echo clocal
    echo "hello from the User VM, run $((run + 1))" > /dev/$tty
fi
poweroff -f
"#;

/// A shell function both inits use: the sysfs directory of the first PCI function with vendor
/// `$1` and device `$2`.
const PCI_FUNCTION: &str = r#"pci_function() {
    for f in /sys/bus/pci/devices/*; do
        [ "$(cat $f/vendor)" = $1 ] && [ "$(cat $f/device)" = $2 ] && echo $f && return
    done
}"#;

/// The User VM's command line: its console on COM1; a TSC clock, its rate given, and no timer
/// check (calibrating against acrn-dm's PIT, one I/O request per read through the Service VM,
/// is slow under TCG; acrn-dm has no HPET).
const UVM_BOOTARGS: &str =
    "console=ttyS0 earlyprintk=serial,ttyS0 rdinit=/init no_timer_check clocksource=tsc tsc=reliable tsc_early_khz=$tsc_khz panic=-1";

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
# The User VM's early TSC rate: the Service VM's, which the hypervisor gives both (calibrating
# against acrn-dm's PIT takes an I/O request per read).
tsc_khz=$(dmesg | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9]*\) MHz.*/\1\2/p' | head -n 1)
# acrn-dm refuses bad requests with a message and a non-zero exit, leaving no VM behind
# (the launches below create the same VM).
for case in "bad option|--ovmf /x POST_VM1" \
    "missing kernel|--cpu_affinity 2 -m 256M --kernel /nonexistent -s 0:0,hostbridge POST_VM1" \
    "too much memory|--cpu_affinity 2 -m 65536M --kernel /uvm/vmlinuz -s 0:0,hostbridge POST_VM1"; do
    /bin/acrn-dm ${case#*|} >/tmp/dm.err 2>&1
    echo "sos: acrn-dm ${case%%|*}: exit $?: $(head -n 1 /tmp/dm.err)"
done
# The IVSHMEM region shared with the User VM (the hypervisor's, on this VM's bus too).
$PCI_FUNCTION
d=$(pci_function 0x1af4 0x1110)
bar2=$([ -n "$d" ] && sed -n 3p $d/resource | cut -d' ' -f1)
if [ -n "$bar2" ]; then
    echo "sos: ivshmem at $(basename $d)"
    devmem $bar2 32 0x5a05a05a
fi
# The PCI vUART link to the User VM: what arrives is kept.
d=$(pci_function 0x9710 0x9900)
tty=$([ -n "$d" ] && ls $d/tty 2>/dev/null | head -n 1)
[ -n "$d" ] && echo "sos: vuart at $(basename $d) is ${tty:-no tty}"
if [ -n "$tty" ]; then
    stty -F /dev/$tty 115200 raw -echo clocal
    cat /dev/$tty > /tmp/vuart.txt &
fi
# The User VM's virtio-blk disk (the scenario's <block>): its first byte counts the runs.
dd if=/dev/zero of=/uvm/disk.img bs=1M count=4 2>/dev/null
for run in 1 2; do
    echo "sos: launch $run"
    ACRN_DM=/bin/acrn-dm ACRN_UVM_KERNEL=/uvm/vmlinuz ACRN_UVM_RAMDISK=/uvm/initrd \
        ACRN_UVM_BOOTARGS="$UVM_BOOTARGS" sh /uvm/launch_user_vm_id1.sh &
    launched=$!
    # What a stuck launch is doing: upcalls taken (HYP) and where acrn-dm sleeps, said only
    # when no upcall came for 10 s (a line printed amid the User VM's console output cuts
    # one of its lines).
    n=0
    upcalls=
    while kill -0 $launched 2>/dev/null; do
        sleep 10
        n=$((n + 1))
        dm=$(pidof acrn-dm)
        now=$(grep -h HYP /proc/interrupts | tr -s ' ')
        [ "$now" = "$upcalls" ] && [ $n -le 30 ] && echo "sos: launch $run: ${n}0 s: no upcall: $now" \
            "acrn-dm ${dm:-gone}: $(for t in /proc/${dm:-0}/task/*; do
                echo "$(cut -d' ' -f3,39 $t/stat 2>/dev/null)/$(cat $t/wchan 2>/dev/null)"; done | tr '\n' ' ')"
        upcalls=$now
    done
    wait $launched
    echo "sos: launch $run: acrn-dm exited $?"
    echo "sos: disk after launch $run: byte $(dd if=/uvm/disk.img bs=1 count=1 2>/dev/null | od -An -tu1 | tr -d ' '):" \
        "$(dd if=/uvm/disk.img bs=1 skip=1 count=35 2>/dev/null)"
    [ -n "$bar2" ] && echo "sos: ivshmem after launch $run: $(devmem $((bar2 + 4)) 32)"
    [ -n "$tty" ] && echo "sos: vuart after launch $run: $(tr '\n' '|' < /tmp/vuart.txt)"
    echo "sos: virtio console after launch $run: $(tr '\n' '|' < /uvm/console.txt)"
done
echo "sos: launches done"
exec sh
"#;

/// PRE_VM0's init in the hybrid scenario: a line every 10 s, for as long as it runs.
const PRE_INIT: &str = r#"/bin/busybox --install -s /bin
mount -t proc proc /proc
n=0
while true; do
    echo "pre: alive $n, up $(cut -d' ' -f1 /proc/uptime) s"
    n=$((n + 1))
    sleep 10
done
"#;

const PRE: &str = "[PRE_VM0] ";

/// A scenario of configs/qemu-epyc with the Linux Service VM, and its VMs' ids.
struct Scenario {
    name: &'static str,
    service_vm: u16,
    post_vm1: u16,
    /// PRE_VM0 runs Debian's kernel throughout.
    pre_vm0: bool,
}

#[test]
#[ignore = "builds the Service VM kernel (minutes with an empty cache); run with: cargo test -p acrn-system-tests --test linux_service_vm binds -- --ignored"]
fn linux_service_vm_binds_the_hsm_driver_and_launches_a_user_vm_in_qemu() {
    linux_service_vm(&Scenario {
        name: "linux-service-vm",
        service_vm: 0,
        post_vm1: 1,
        pre_vm0: false,
    });
}

#[test]
#[ignore = "builds the Service VM kernel (minutes with an empty cache); run with: cargo test -p acrn-system-tests --test linux_service_vm hybrid -- --ignored"]
fn hybrid_linux_service_vm_launches_a_user_vm_beside_a_pre_launched_vm_in_qemu() {
    linux_service_vm(&Scenario {
        name: "linux-hybrid",
        service_vm: 1,
        post_vm1: 2,
        pre_vm0: true,
    });
}

fn linux_service_vm(sc: &Scenario) {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let kernel = service_vm_kernel(ServiceVmKernel::Small);
    let busybox = std::fs::read(busybox_static()).expect("read busybox");
    let dir = work_dir(&format!("qemu-{}", sc.name));
    let gen = dir.join("gen");
    let g = generate("qemu-epyc", sc.name, &gen);
    assert!(
        g.status.success(),
        "acrn-configurator generate failed:\n{}",
        String::from_utf8_lossy(&g.stderr)
    );
    let launch = std::fs::read(gen.join(LAUNCH_SCRIPT)).expect("read the launch script");
    let acrn_dm = std::fs::read(acrn_dm_static()).expect("read acrn-dm");
    let uvm_kernel = std::fs::read(debian_kernel()).expect("read the Debian kernel");
    let modules: Vec<(String, Vec<u8>)> = debian_uvm_modules()
        .iter()
        .map(|m| {
            (
                format!("lib/modules/{}", m.file_name().unwrap().to_string_lossy()),
                std::fs::read(m).expect("read a module"),
            )
        })
        .collect();
    let mut uvm_files = vec![Entry::Dir("lib"), Entry::Dir("lib/modules")];
    uvm_files.extend(
        modules
            .iter()
            .map(|(path, bytes)| Entry::File(path, 0o644, bytes)),
    );
    let uvm_init = UVM_INIT.replace("$PCI_FUNCTION", PCI_FUNCTION);
    let uvm_initrd = busybox_initramfs_with(&busybox, &uvm_init, &uvm_files);
    let init = INIT
        .replace("$UVM_BOOTARGS", UVM_BOOTARGS)
        .replace("$PCI_FUNCTION", PCI_FUNCTION);
    let initrd = dir.join("initrd.cpio");
    let sos_initrd = busybox_initramfs_with(
        &busybox,
        &init,
        &[
            Entry::File("bin/acrn-dm", 0o755, &acrn_dm),
            Entry::Dir("uvm"),
            Entry::File("uvm/launch_user_vm_id1.sh", 0o755, &launch),
            Entry::File("uvm/vmlinuz", 0o644, &uvm_kernel),
            Entry::File("uvm/initrd", 0o644, &uvm_initrd),
        ],
    );
    std::fs::write(&initrd, sos_initrd).expect("write the initramfs");
    let mut extra = qemu_linux_modules(&kernel, &initrd);
    if sc.pre_vm0 {
        let pre_initrd = dir.join("pre-initrd.cpio");
        std::fs::write(&pre_initrd, busybox_initramfs_with(&busybox, PRE_INIT, &[]))
            .expect("write PRE_VM0's initramfs");
        extra.extend([
            "--module".to_string(),
            format!("PRE_VM0_bzImage={}", debian_kernel().display()),
            "--module".to_string(),
            format!("PRE_VM0_initrd={}", pre_initrd.display()),
        ]);
    }
    let service_stopped = format!("[hv] VM {} SERVICE_VM stopped", sc.service_vm);
    let out = dir.join("image");
    let t = run(
        &RunSpec {
            board: "qemu-epyc",
            scenario: sc.name,
            out: &out,
            extra,
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(900),
        },
        |t| {
            // In the hybrid scenario, until PRE_VM0 has spoken after the launches too.
            let done_at = t
                .lines
                .iter()
                .find(|l| l.text.contains("sos: launches done"))
                .map(|l| l.at);
            done_at.is_some_and(|at| !sc.pre_vm0 || alive_after(t, at))
                || t.find_prefix(&service_stopped).is_some()
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
    check(&t, vm_line(DONE), "the Service VM's checks did not finish");
    let marker_at: Vec<f64> = t
        .lines
        .iter()
        .filter(|l| l.text.starts_with(VM) && l.text.contains(UVM_UP))
        .map(|l| l.at)
        .collect();
    let launch_at: Vec<f64> = t
        .lines
        .iter()
        .filter(|l| {
            l.text.starts_with(VM)
                && l.text.split_once("sos: launch ").is_some_and(|(_, run)| {
                    !run.is_empty() && run.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .map(|l| l.at)
        .collect();
    for (run, (m, l)) in marker_at.iter().zip(&launch_at).enumerate() {
        eprintln!(
            "User VM run {}: marker line {:.1}s after the launch",
            run + 1,
            m - l
        );
    }
    for run in 1..=2 {
        check(
            &t,
            marker_at.len() >= run,
            &format!("run {run}: the User VM's init did not print its marker"),
        );
        check(
            &t,
            vm_line(&format!("sos: launch {run}: acrn-dm exited 0")),
            &format!("run {run}: acrn-dm did not exit 0"),
        );
    }
    check(
        &t,
        vm_line("uvm: 1 CPUs, kernel"),
        "the User VM's command output did not reach the console",
    );
    for (case, code, says) in [
        ("bad option", 2, "--ovmf"),
        ("missing kernel", 1, "kernel /nonexistent"),
        ("too much memory", 1, "65536 MiB"),
    ] {
        let line = t
            .texts()
            .find(|l| l.starts_with(VM) && l.contains(&format!("sos: acrn-dm {case}: exit ")));
        check(
            &t,
            line.is_some_and(|l| l.contains(&format!("exit {code}:")) && l.contains(says)),
            &format!("acrn-dm {case}: not exit {code} with a message naming `{says}`"),
        );
    }
    // virtio-blk: each run's User VM wrote the disk the Service VM reads back after it.
    for run in 1..=2 {
        check(
            &t,
            vm_line(&format!(
                "sos: disk after launch {run}: byte {run}: acrn-rs virtio-blk from the User VM"
            )),
            &format!("run {run}: the User VM's virtio-blk write is not on the disk image"),
        );
    }
    for l in t
        .texts()
        .filter_map(|l| l.split_once("uvm: read vda: ").map(|(_, r)| r))
    {
        let numbers: Vec<f64> = l
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [sectors, t0, t1] = numbers[..] {
            let kib_per_s = sectors / 2.0 / (t1 - t0).max(0.01);
            eprintln!("virtio-blk sequential read in the User VM: {l} ({kib_per_s:.0} KiB/s of guest time)");
        }
    }
    check(
        &t,
        vm_line("uvm: vda 8192 sectors, run byte 1"),
        "the second run's User VM did not read the first run's write",
    );
    // The e1000e the launch script passes through (`-s N,passthru,0/2/0`): Linux's driver
    // binds in the User VM, the link comes up, and its interrupts arrive, in both runs.
    let links = t
        .texts()
        .filter(|l| l.starts_with(VM) && l.contains("uvm: eth0 driver e1000e carrier 1"))
        .count();
    check(
        &t,
        links == 2,
        "the passed-through e1000e did not come up in both User VM runs",
    );
    let interrupts = t
        .texts()
        .filter_map(|l| l.split_once("uvm: eth0 interrupts: ").map(|(_, r)| r))
        .filter(|r| {
            r.split(';').any(|line| {
                line.split(' ')
                    .filter_map(|w| w.parse::<u64>().ok())
                    .any(|n| n > 0)
            })
        })
        .count();
    check(
        &t,
        interrupts == 2,
        "the passed-through e1000e's interrupts did not arrive in both runs",
    );
    // The hypervisor-provided IVSHMEM region: the Service VM has it on its bus, the User VM
    // gets it from acrn-dm (HC_ADD_VDEV through Linux's HSM); each reads the other's writes.
    for (line, what) in [
        (
            "sos: ivshmem at 0000:00:08.0",
            "the Service VM has no IVSHMEM device at 00:08.0",
        ),
        (
            "uvm: ivshmem at 0000:00:08.0 revision 0x01, BAR2 size 2097152",
            "the User VM has no 2 MiB IVSHMEM device at 00:08.0",
        ),
        (
            "uvm: ivshmem reads 0x5A05A05A",
            "the User VM did not read the Service VM's pattern",
        ),
        (
            "sos: ivshmem after launch 1: 0xC0FFEE01",
            "run 1: the Service VM did not read the User VM's answer",
        ),
        (
            "sos: ivshmem after launch 2: 0xC0FFEE02",
            "run 2: the Service VM did not read the User VM's answer",
        ),
    ] {
        check(&t, vm_line(line), what);
    }
    // The PCI vUART link: the Service VM's 8250_pci port receives what the User VM's sends.
    for (line, what) in [
        ("sos: vuart at 0000:00:10.0 is ttyS", "the Service VM has no vUART tty at 00:10.0"),
        ("uvm: vuart at 0000:00:10.0 is ttyS", "the User VM has no vUART tty at 00:10.0"),
        (
            "sos: vuart after launch 2: hello from the User VM, run 1|hello from the User VM, run 2|",
            "the Service VM did not receive both User VM runs' lines over the vUART",
        ),
    ] {
        check(&t, vm_line(line), what);
    }
    // The virtio console: acrn-dm appends what the User VM writes on hvc0 to its file.
    check(
        &t,
        vm_line("sos: virtio console after launch 2: on the virtio console, run 1|on the virtio console, run 2|"),
        "the User VM's virtio console lines did not reach acrn-dm's file",
    );
    // Its INTx line is the one the board's _PRT names (q35: slot 2, INTA# on GSI 22), as the
    // Service VM's Linux routes it, not the firmware's legacy interrupt line.
    let gsi_line = format!(
        "[hv] VM {} POST_VM1: physical GSI 22 drives its vIOAPIC GSI",
        sc.post_vm1
    );
    let lines = t.texts().filter(|l| l.starts_with(&gsi_line)).count();
    check(
        &t,
        lines == 2,
        "the e1000e's INTx was not given to the User VM as GSI 22 in both runs",
    );
    if sc.pre_vm0 {
        pre_vm0_ran_throughout(&t, &launch_at);
    }
}

/// Whether PRE_VM0 printed its line after `at` seconds.
fn alive_after(t: &acrn_system_tests::Transcript, at: f64) -> bool {
    t.lines
        .iter()
        .any(|l| l.at > at && l.text.starts_with(PRE) && l.text.contains("pre: alive"))
}

/// PRE_VM0 printed before the first launch and after the last User VM run ended, and nothing
/// stopped or broke it.
fn pre_vm0_ran_throughout(t: &acrn_system_tests::Transcript, launch_at: &[f64]) {
    let first_launch = launch_at.first().copied().unwrap_or(f64::MAX);
    check(
        t,
        t.lines.iter().any(|l| {
            l.at < first_launch && l.text.starts_with(PRE) && l.text.contains("pre: alive")
        }),
        "PRE_VM0 did not print before the first launch",
    );
    let done_at = t
        .lines
        .iter()
        .find(|l| l.text.contains("sos: launches done"))
        .map(|l| l.at);
    check(
        t,
        done_at.is_some_and(|at| alive_after(t, at)),
        "PRE_VM0 did not print after the launches",
    );
    let alive = t
        .texts()
        .filter(|l| l.starts_with(PRE) && l.contains("pre: alive"))
        .count();
    eprintln!("PRE_VM0: {alive} lines of its init during the run");
    check(
        t,
        t.find_prefix("[hv] VM 0 PRE_VM0 stopped").is_none()
            && !t.texts().any(|l| {
                l.starts_with(PRE)
                    && [
                        "Kernel panic",
                        "Oops",
                        "BUG:",
                        "soft lockup",
                        "rcu_sched self-detected",
                    ]
                    .iter()
                    .any(|w| l.contains(w))
            }),
        "PRE_VM0 was stopped or broke",
    );
}
