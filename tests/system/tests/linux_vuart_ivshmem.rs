//! Two pre-launched VMs run Debian's unmodified Linux kernel to a busybox shell
//! (configs/qemu-epyc/linux-vuart-ivshmem.xml, QEMU TCG) and talk through Linux's own drivers:
//!
//! - PCI: each Linux enumerates its virtual bus through the ACPI host bridge (PNP0A08): the host
//!   bridge 00:00.0 and the IVSHMEM function 1af4:1110, BARs kept, no PCI errors in `dmesg`.
//! - IVSHMEM: the sender writes a random pattern into BAR2 (busybox `devmem` at the BAR's
//!   address from sysfs `resource`, after `enable`) and then a "written" flag; the receiver
//!   waits for the flag and reads the same words back.
//! - vUART: then the receiver raises a "ready" flag and reads N bytes from
//!   its ttyS1 (Linux's 8250 driver, raw mode), the sender writes N random bytes to its ttyS1;
//!   both print the MD5 of what they have, which must match. The receiver times the transfer
//!   in guest time (/proc/uptime) from the first byte.
//!
//! - Pass-through: the sender owns the board's e1000e (00:02.0) and loads Debian's e1000e
//!   module: the driver binds, the link comes up and the NIC's MSI-X vectors take interrupts
//!   (through the hypervisor's remapping to the VM's vLAPIC). Its INTx pin is routed by the
//!   VM's `_PRT` to GSI 22, the line `pt_intx` gives the VM.
//!
//! CI sends 64 KiB (about 30 s with the build); the issue's 1 MiB is opt-in (`#[ignore]`), and
//! so is the same exchange of 64 KiB on Intel VMX in Bochs
//! (configs/bochs-tigerlake/linux-vuart-ivshmem.xml, no pass-through NIC there): run them with
//! `cargo test -p acrn-system-tests --test linux_vuart_ivshmem -- --ignored`.

use std::time::Duration;

use acrn_system_tests::debian::{busybox_static, debian_kernel, debian_uvm_modules};
use acrn_system_tests::initramfs::{busybox_initramfs_with, Entry};
use acrn_system_tests::{check, linux_modules, require_tools, run, work_dir, RunSpec, Transcript};

const SENDER: &str = "[PRE_VM0] ";
const RECEIVER: &str = "[PRE_VM1] ";
/// Flags in the shared memory: the sender's "pattern written" (offset 0x1000 of BAR2) and the
/// receiver's "listening on ttyS1" (0x1004).
const WRITTEN: &str = "0x57524954";
const READY: &str = "0x52454459";

/// The init script of both VMs; the kernel command line's `role=` picks the side. `bytes`:
/// how many random bytes go over the vUART after the IVSHMEM exchange.
fn init_script(bytes: u32, nic: bool) -> String {
    // Seconds the receiver waits for the stream: a minute, plus one per kB.
    let patience = 60 + bytes / 1000;
    format!(
        r#"/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
role=$(sed -n 's/.*role=\([a-z]*\).*/\1/p' /proc/cmdline)
echo "t: up $role"
if [ "$role" = sender ] && [ {nic} = true ]; then
  insmod /lib/modules/e1000e.ko || echo "t: insmod e1000e failed"
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 1; done
  ip link set eth0 up
  for i in 1 2 3 4 5 6 7 8 9 10; do [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ] && break; sleep 1; done
  echo "t: eth0 $(basename $(readlink /sys/class/net/eth0/device/driver 2>/dev/null) 2>/dev/null) carrier $(cat /sys/class/net/eth0/carrier 2>/dev/null)"
  echo "t: eth0 interrupts $(grep eth0 /proc/interrupts | tr -s ' ' | tr '\n' ';')"
  irq=$(cat /sys/class/net/eth0/device/irq)
  echo "t: eth0 INTx $(cat /sys/kernel/irq/$irq/chip_name 2>/dev/null) pin $(cat /sys/kernel/irq/$irq/hwirq 2>/dev/null)"
fi
dmesg | grep -i -e pci -e ttyS | sed 's/^/t: dmesg: /'
echo "t: pci $(ls /sys/bus/pci/devices | tr '\n' ' ')"
dev=
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor):$(cat $d/device)" = "0x1af4:0x1110" ] && dev=$d
done
echo "t: ivshmem ${{dev##*/}}"
echo 1 > $dev/enable
bar2=$(sed -n 3p $dev/resource | cut -d' ' -f1)
echo "t: bar2 $bar2"
written=$((bar2 + 0x1000))
ready=$((bar2 + 0x1004))
wait_for() {{
  n=0
  while [ "$(devmem $1 32)" != "$2" ] && [ $n -lt 600 ]; do sleep 1; n=$((n + 1)); done
  echo "t: $3 after ${{n}}s"
}}
exec 3<>/dev/ttyS1
stty raw -echo <&3
if [ "$role" = sender ]; then
  head -c {bytes} /dev/urandom > /tmp/tx
  seed=0x$(head -c 16 /dev/urandom | md5sum | cut -c1-6)
  words=
  for i in 0 1 2 3 4 5 6 7; do
    v=$(printf 0x%08x $((seed * 16 + i)))
    devmem $((bar2 + 4 * i)) 32 $v
    words="$words $v"
  done
  devmem $written 32 {WRITTEN}
  echo "t: shm wrote$words"
  echo "t: tx md5 $(md5sum < /tmp/tx | cut -d' ' -f1)"
  wait_for $ready {READY} "peer ready"
  cat /tmp/tx >&3
  echo "t: sent"
else
  wait_for $written {WRITTEN} "pattern written"
  words=
  for i in 0 1 2 3 4 5 6 7; do
    words="$words $(printf 0x%08x $(devmem $((bar2 + 4 * i)) 32))"
  done
  echo "t: shm read$words"
  devmem $ready 32 {READY}
  # dd reads exactly one byte; head would buffer (stdio) and drop what follows it.
  dd bs=1 count=1 <&3 of=/tmp/rx 2>/dev/null
  t0=$(cut -d' ' -f1 /proc/uptime)
  timeout {patience} head -c $(({bytes} - 1)) <&3 >> /tmp/rx
  t1=$(cut -d' ' -f1 /proc/uptime)
  echo "t: received $(wc -c < /tmp/rx) bytes, from $t0 to $t1 s of guest time"
  echo "t: rx md5 $(md5sum < /tmp/rx | cut -d' ' -f1)"
fi
echo "t: done"
exec sh
"#
    )
}

/// The rest of the first line of `vm` that starts with `t: {what}`.
fn said<'a>(t: &'a Transcript, vm: &str, what: &str) -> Option<&'a str> {
    let needle = format!("t: {what}");
    t.texts()
        .find_map(|l| l.strip_prefix(vm)?.strip_prefix(needle.as_str()))
        .map(str::trim)
}

/// The machine two Linux VMs talk on: its board and emulator, and whether the sender has the
/// board's e1000e passed through.
struct Machine {
    board: &'static str,
    emulator: &'static str,
    nic: bool,
}

const QEMU: Machine = Machine {
    board: "qemu-epyc",
    emulator: "qemu",
    nic: true,
};

const BOCHS: Machine = Machine {
    board: "bochs-tigerlake",
    emulator: "bochs",
    nic: false,
};

fn transfer(m: &Machine, bytes: u32, boot_limit: Duration) {
    require_tools(&[
        acrn_system_tests::emulator_binary(m.emulator),
        "grub-mkrescue",
        "xorriso",
    ]);
    if m.emulator == "bochs" && std::env::var_os("ACRN_BOCHS_MODEL").is_none() {
        // Debian's kernel hangs on Bochs' tigerlake model (see tests/linux.rs).
        std::env::set_var("ACRN_BOCHS_MODEL", "corei7_skylake_x");
    }
    let kernel = debian_kernel();
    let busybox = std::fs::read(busybox_static()).expect("read busybox");
    let dir = work_dir(&format!("{}-linux-vuart-ivshmem-{bytes}", m.emulator));
    let initrd = dir.join("initrd.cpio");
    let e1000e = debian_uvm_modules()
        .into_iter()
        .find(|m| m.ends_with("e1000e.ko"))
        .expect("e1000e among the User VM modules");
    let e1000e = std::fs::read(e1000e).expect("read e1000e.ko");
    let files = [
        Entry::Dir("lib"),
        Entry::Dir("lib/modules"),
        Entry::File("lib/modules/e1000e.ko", 0o644, &e1000e),
    ];
    std::fs::write(
        &initrd,
        busybox_initramfs_with(&busybox, &init_script(bytes, m.nic), &files),
    )
    .expect("write the initramfs");
    let t = run(
        &RunSpec {
            board: m.board,
            scenario: "linux-vuart-ivshmem",
            out: &dir.join("image"),
            extra: linux_modules(m.emulator, &kernel, &initrd),
            build_limit: Duration::from_secs(900),
            boot_limit,
        },
        |t| {
            (said(t, SENDER, "done").is_some() && said(t, RECEIVER, "done").is_some())
                || t.find_prefix("[hv] PANIC").is_some()
                || t.find_prefix("[hv] FATAL").is_some()
                || t.texts().any(|l| l.contains("Kernel panic"))
        },
    );
    eprintln!(
        "Linux vUART + IVSHMEM ({bytes} bytes): {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    for vm in [SENDER, RECEIVER] {
        check(
            &t,
            said(&t, vm, "up").is_some(),
            &format!("{vm}Linux did not reach its busybox shell"),
        );
        let pci = said(&t, vm, "pci ").unwrap_or_default();
        check(
            &t,
            pci.contains("0000:00:00.0") && pci.contains("0000:00:08.0"),
            &format!("{vm}Linux did not enumerate the host bridge and IVSHMEM ({pci:?})"),
        );
        check(
            &t,
            said(&t, vm, "ivshmem ") == Some("0000:00:08.0"),
            &format!("{vm}no 1af4:1110 function in sysfs"),
        );
        let bar2 = said(&t, vm, "bar2 ").unwrap_or_default();
        check(
            &t,
            bar2.starts_with("0x") && u64::from_str_radix(&bar2[2..], 16).is_ok_and(|a| a != 0),
            &format!("{vm}BAR2 has no address ({bar2:?})"),
        );
        let pci_errors: Vec<&str> = t
            .texts()
            .filter_map(|l| l.strip_prefix(vm)?.strip_prefix("t: dmesg: "))
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                [
                    "fail",
                    "error",
                    "conflict",
                    "can't",
                    "no space",
                    "not claimed",
                    "ignored",
                ]
                .iter()
                .any(|w| l.contains(w))
                    && l.contains("pci")
            })
            .collect();
        check(
            &t,
            pci_errors.is_empty(),
            &format!("{vm}PCI errors in dmesg: {pci_errors:#?}"),
        );
        check(
            &t,
            said(&t, vm, "done").is_some(),
            &format!("{vm}the script did not finish"),
        );
    }
    if m.nic {
        nic_checks(&t);
    }
    let wrote = said(&t, SENDER, "shm wrote");
    let read = said(&t, RECEIVER, "shm read");
    check(
        &t,
        wrote.is_some() && wrote == read,
        &format!("IVSHMEM: the sender wrote {wrote:?}, the receiver read {read:?}"),
    );
    let tx = said(&t, SENDER, "tx md5 ");
    let rx = said(&t, RECEIVER, "rx md5 ");
    check(
        &t,
        tx.is_some_and(|m| m.len() == 32) && tx == rx,
        &format!("vUART: the sender's MD5 {tx:?}, the receiver's {rx:?}"),
    );
    if let Some(timing) = said(&t, RECEIVER, "received ") {
        eprintln!("vUART transfer: {timing}");
        let secs: Vec<f64> = timing
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        if let [_, t0, t1] = secs[..] {
            if t1 > t0 {
                eprintln!(
                    "vUART throughput: {:.0} bytes/s of guest time",
                    f64::from(bytes - 1) / (t1 - t0)
                );
            }
        }
    }
}

/// The sender's NIC: Linux's driver bound, link up, interrupts on its MSI-X vectors, its
/// INTx routed.
fn nic_checks(t: &Transcript) {
    let eth0 = said(t, SENDER, "eth0 e1000e").unwrap_or_default();
    check(
        t,
        eth0 == "carrier 1",
        &format!(
            "{SENDER}the e1000e driver did not bring the passed-through NIC's link up ({eth0:?})"
        ),
    );
    let irqs = said(t, SENDER, "eth0 interrupts").unwrap_or_default();
    // Lines of /proc/interrupts: `N: count... PCI-MSI K-edge eth0-...`.
    let msix_taken = irqs.split(';').filter(|l| l.contains("PCI-MSI")).any(|l| {
        l.split_whitespace()
            .skip_while(|w| !w.ends_with(':'))
            .skip(1)
            .map_while(|w| w.parse::<u64>().ok())
            .any(|n| n > 0)
    });
    check(
        t,
        msix_taken,
        &format!("{SENDER}no interrupt on the NIC's MSI-X vectors ({irqs:?})"),
    );
    // Its INTx: the DSDT's `_PRT` names GSI 22 for the NIC's virtual device, which Linux maps
    // to pin 22 of the VM's IOAPIC.
    let intx = said(t, SENDER, "eth0 INTx").unwrap_or_default();
    check(
        t,
        intx == "IO-APIC pin 22",
        &format!("{SENDER}the NIC's INTx pin is not routed to GSI 22 ({intx:?})"),
    );
}

#[test]
fn linux_vms_send_64k_over_the_vuart_in_qemu() {
    transfer(&QEMU, 64 * 1024, Duration::from_secs(600));
}

/// The same on Intel VMX in Bochs: two Linux boots and the transfer, interpreted instruction
/// by instruction.
#[test]
#[ignore = "about 8 minutes in Bochs; run with: cargo test -p acrn-system-tests --test linux_vuart_ivshmem bochs -- --ignored"]
fn linux_vms_send_64k_over_the_vuart_in_bochs() {
    transfer(&BOCHS, 64 * 1024, Duration::from_secs(3600));
}

#[test]
#[ignore = "1 MiB through the emulated 16550A link takes many minutes in TCG; run with: cargo test -p acrn-system-tests --test linux_vuart_ivshmem 1m -- --ignored"]
fn linux_vms_send_1m_over_the_vuart_in_qemu() {
    transfer(&QEMU, 1024 * 1024, Duration::from_secs(1800));
}
