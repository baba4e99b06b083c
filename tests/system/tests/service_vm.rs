//! The Service VM scenarios of configs/qemu-epyc boot in QEMU TCG with the reference Service VM
//! (tests/guests/service-vm): it creates the post-launched VMs through hypercalls, loads
//! `hello` into them and serves their console through I/O requests; then it pauses, resets and
//! restarts POST_VM1, and destroys and re-creates it. In hybrid, the pre-launched VM runs
//! beside all that untouched. A variant with `fuzz=5000` on the Service VM's command line sends
//! 5000 bad hypercalls first; each must get its documented error and everything keeps running.

use std::path::Path;
use std::time::Duration;

use acrn_system_tests::{
    check, repo_root, require_tools, run, stopped_abnormally, work_dir, RunSpec, Transcript,
};

const SVM_VERDICT: &str = "[SERVICE_VM] verdict:";
const POST1_PASS: &str = "[SERVICE_VM] [POST_VM1] verdict: PASS";

fn count(t: &Transcript, line: &str) -> usize {
    t.texts().filter(|&l| l == line).count()
}

/// Decided once the Service VM gave its verdict (it waits for every guest verdict first), or
/// as soon as something stopped or failed.
fn decided(t: &Transcript) -> bool {
    let has = |p: &str| t.find_prefix(p).is_some();
    has("[hv] PANIC") || has("[hv] FATAL") || t.texts().any(|l| l.contains("SERVICE_VM stopped"))
}

/// The lifecycle every Service VM run shows: both creations, three POST_VM1 verdicts (first
/// boot, after reset, after re-create), the destroy, and the Service VM's PASS; and both
/// hypercall instructions (VMCALL and VMMCALL) answered.
fn check_lifecycle(t: &Transcript, post_vms: &[&str]) {
    check(
        t,
        t.find("[SERVICE_VM] svm: vmcall and vmmcall both answer HC_GET_API_VERSION 1.0")
            .is_some(),
        "VMCALL and VMMCALL did not both work as the hypercall instruction",
    );
    for (rel, vm) in post_vms.iter().enumerate() {
        let created = format!("[SERVICE_VM] svm: created VM {} {vm} vcpus=1", rel + 1);
        check(
            t,
            t.find(&created).is_some(),
            &format!("no `{created}` line"),
        );
        let pass = format!("[SERVICE_VM] [{vm}] verdict: PASS");
        check(t, t.find(&pass).is_some(), &format!("no `{pass}` line"));
    }
    check(
        t,
        count(t, POST1_PASS) == 3,
        "POST_VM1 did not pass three times (boot, after reset, after re-create)",
    );
    let destroyed = t.find("[SERVICE_VM] svm: destroyed VM 1");
    check(t, destroyed.is_some(), "POST_VM1 was not destroyed");
    let last_pass = t.lines.iter().rposition(|l| l.text == POST1_PASS);
    check(
        t,
        last_pass > destroyed,
        "POST_VM1 did not print again after it was destroyed and created again",
    );
    check(
        t,
        t.find("[SERVICE_VM] verdict: PASS").is_some(),
        "the Service VM did not pass",
    );
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
}

fn spec<'a>(scenario: &'a str, out: &'a Path) -> RunSpec<'a> {
    RunSpec {
        board: "qemu-epyc",
        scenario,
        out,
        extra: vec!["--emulator".into(), "qemu".into()],
        build_limit: Duration::from_secs(900),
        boot_limit: Duration::from_secs(180),
    }
}

/// A copy of configs/qemu-epyc/`name`.xml with `from` replaced by `to` (once).
fn variant(name: &str, from: &str, to: &str, dir: &Path) -> String {
    board_variant("qemu-epyc", name, from, to, dir)
}

/// A copy of configs/`board`/`name`.xml with `from` replaced by `to` (once).
fn board_variant(board: &str, name: &str, from: &str, to: &str, dir: &Path) -> String {
    let src = repo_root().join(format!("configs/{board}/{name}.xml"));
    let text = std::fs::read_to_string(&src).expect("read scenario");
    assert!(text.contains(from), "{} has no `{from}`", src.display());
    let path = dir.join(format!("{name}-variant.xml"));
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write scenario variant");
    path.display().to_string()
}

#[test]
fn qemu_epyc_shared_runs_post_launched_vms() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let out = work_dir("qemu-shared").join("image");
    let t = run(&spec("shared", &out), |t| {
        decided(t) || t.find_prefix(SVM_VERDICT).is_some()
    });
    eprintln!(
        "QEMU shared: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}

/// The same with the hypervisor in cargo's release profile. Its smaller image made GRUB put
/// the Service VM's kernel module inside the kernel's own load range, which loading overwrote
/// before the multiboot header was read: the Service VM started with EAX=0.
#[test]
fn qemu_epyc_shared_release_profile() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let out = work_dir("qemu-shared-release").join("image");
    let mut s = spec("shared", &out);
    s.extra.push("--release".into());
    let t = run(&s, |t| decided(t) || t.find_prefix(SVM_VERDICT).is_some());
    eprintln!(
        "QEMU shared (release): {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check(
        &t,
        t.find_prefix("[SERVICE_VM] boot: multiboot1 info=")
            .is_some(),
        "the Service VM was not booted with multiboot1 information",
    );
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}

#[test]
fn qemu_epyc_hybrid_leaves_the_pre_launched_vm_alone() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-hybrid");
    // PRE_VM0 beats long enough to be seen printing through the whole lifecycle.
    let scenario = variant(
        "hybrid",
        "<bootargs>console=ttyS0</bootargs>",
        "<bootargs>console=ttyS0 ticks=1000</bootargs>",
        &dir,
    );
    let out = dir.join("image");
    let t = run(&spec(&scenario, &out), |t| {
        decided(t)
            || stopped_abnormally(t, "PRE_VM0")
            || (t.find_prefix(SVM_VERDICT).is_some()
                && t.find_prefix("[PRE_VM0] verdict:").is_some())
    });
    eprintln!(
        "QEMU hybrid: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_lifecycle(&t, &["POST_VM1"]);
    check(
        &t,
        t.find("[PRE_VM0] verdict: PASS").is_some(),
        "PRE_VM0 did not pass",
    );
    check(
        &t,
        !stopped_abnormally(&t, "PRE_VM0"),
        "PRE_VM0 was stopped",
    );
    let pre = t.vm_lines("PRE_VM0");
    let destroyed = t
        .find("[SERVICE_VM] svm: destroyed VM 1")
        .unwrap_or(usize::MAX);
    let created = t.find("[SERVICE_VM] svm: created VM 1 POST_VM1 vcpus=1");
    check(
        &t,
        pre.iter().any(|&i| Some(i) < created) && pre.iter().any(|&i| i > destroyed),
        "PRE_VM0 did not keep printing while POST_VM1 was created, reset and destroyed",
    );
}

/// Hybrid with `hypercall` on PRE_VM0's and POST_VM1's command lines: each issues HC_CREATE_VM
/// once. Neither is the Service VM, so each must get #UD with its argument untouched, then
/// run on to its verdict, while the Service VM's lifecycle goes on as usual. Each also sets its
/// EFER.SVME and issues VMLOAD, which must be a #UD as well (SVM is not offered).
#[test]
fn qemu_epyc_hybrid_hypercalls_from_other_vms_get_ud() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-hybrid-hypercall");
    let scenario = variant(
        "hybrid",
        "<bootargs>console=ttyS0</bootargs>",
        "<bootargs>console=ttyS0 ticks=200 hypercall</bootargs>",
        &dir,
    );
    // Post-launched VMs take no <os_config>: the Service VM passes the flag on to them.
    let text = std::fs::read_to_string(&scenario).expect("read variant");
    let svm = "<bootargs>console=ttyS0</bootargs>";
    assert!(text.contains(svm));
    let text = text.replacen(
        svm,
        "<bootargs>console=ttyS0 guestargs=hypercall</bootargs>",
        1,
    );
    std::fs::write(&scenario, text).expect("write variant");
    let out = dir.join("image");
    let t = run(&spec(&scenario, &out), |t| {
        decided(t)
            || stopped_abnormally(t, "PRE_VM0")
            || (t.find_prefix(SVM_VERDICT).is_some()
                && t.find_prefix("[PRE_VM0] verdict:").is_some())
    });
    eprintln!(
        "QEMU hybrid hypercall: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    for vm in ["[PRE_VM0]", "[SERVICE_VM] [POST_VM1]"] {
        // So does an SVM instruction, with the guest's own EFER.SVME set.
        for ud in [
            format!("{vm} hypercall: #UD"),
            format!("{vm} virtualization: VMLOAD #UD"),
        ] {
            check(&t, t.find(&ud).is_some(), &format!("no `{ud}` line"));
        }
        let kept = format!("{vm} hypercall: record untouched=true");
        check(&t, t.find(&kept).is_some(), &format!("no `{kept}` line"));
        check(
            &t,
            t.find_prefix(&format!("{vm} hypercall: returned"))
                .is_none(),
            &format!("{vm}'s hypercall was served"),
        );
    }
    check(
        &t,
        t.find("[PRE_VM0] verdict: PASS").is_some(),
        "PRE_VM0 did not reach verdict PASS after its refused hypercall",
    );
    check(
        &t,
        !stopped_abnormally(&t, "PRE_VM0"),
        "PRE_VM0 was stopped",
    );
    // POST_VM1 issues its hypercall on every boot (three); the lifecycle is unchanged.
    check(
        &t,
        count(&t, "[SERVICE_VM] [POST_VM1] hypercall: #UD") == 3,
        "POST_VM1 did not get #UD on each of its three boots",
    );
    check_lifecycle(&t, &["POST_VM1"]);
}

#[test]
fn qemu_epyc_shared_survives_a_hypercall_fuzzer() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-shared-fuzz");
    let scenario = variant(
        "shared",
        "<bootargs>console=ttyS0</bootargs>",
        "<bootargs>console=ttyS0 fuzz=5000</bootargs>",
        &dir,
    );
    let out = dir.join("image");
    let t = run(&spec(&scenario, &out), |t| {
        decided(t)
            || t.find("[SERVICE_VM] svm: fuzz FAIL").is_some()
            || t.find_prefix(SVM_VERDICT).is_some()
    });
    eprintln!(
        "QEMU shared fuzz: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check(
        &t,
        t.find("[SERVICE_VM] svm: fuzz calls=5000 mismatches=0 hypervisor-alive=true")
            .is_some(),
        "the fuzzer saw a wrong error or a dead hypervisor",
    );
    check(
        &t,
        t.find("[SERVICE_VM] svm: fuzz PASS").is_some(),
        "no `svm: fuzz PASS`",
    );
    // Afterwards the hypervisor and the post-launched VMs still work.
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}

/// Shared with `guestargs=irqwait,mmioprobe`: each post-launched `hello` programs its I/O APIC
/// entry for GSI 5 (vector 0x41), enables interrupts and halts; after every start the Service
/// VM injects MSI vector 0x40 (HC_INJECT_MSI) and raises GSI 5 (HC_SET_IRQLINE). Each guest
/// must take both through its IDT (EOI to its virtual local APIC) before its verdict, on every
/// boot. It also writes and reads MMIO without a device: forwarded to the Service VM, whose
/// default client reads all-ones.
#[test]
fn qemu_epyc_shared_delivers_msi_and_irq_lines_to_post_launched_vms() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-shared-irq");
    let scenario = variant(
        "shared",
        "<bootargs>console=ttyS0</bootargs>",
        "<bootargs>console=ttyS0 guestargs=irqwait,mmioprobe</bootargs>",
        &dir,
    );
    let out = dir.join("image");
    let t = run(&spec(&scenario, &out), |t| {
        decided(t) || t.find_prefix(SVM_VERDICT).is_some()
    });
    eprintln!(
        "QEMU shared irq: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_interrupts_and_mmio(&t);
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}

/// What `guestargs=irqwait,mmioprobe` must show: on every boot of each post-launched VM both
/// interrupts and the all-ones MMIO read, the Service VM's hypercalls succeeding, its MMIO line
/// once per VM, and its e820 from its layout.
fn check_interrupts_and_mmio(t: &Transcript) {
    for (id, vm) in ["POST_VM1", "POST_VM2"].into_iter().enumerate() {
        let want = if vm == "POST_VM1" { 3 } else { 1 };
        let line = format!("[SERVICE_VM] [{vm}] mmio: read 0xffffffff at 0xd0000000");
        let n = count(t, &line);
        check(
            t,
            n == want,
            &format!("`{line}` {n} times, expected {want}"),
        );
        let svm = format!(
            "[SERVICE_VM] svm: VM {} MMIO write 0xd0000000 size 4: no device (reads all-ones, writes ignored)",
            id + 1
        );
        check(t, t.find(&svm).is_some(), &format!("no `{svm}` line"));
        for v in ["0x40", "0x41"] {
            let line = format!("[SERVICE_VM] [{vm}] irq: vector {v}");
            let n = count(t, &line);
            check(
                t,
                n == want,
                &format!("`{line}` {n} times, expected {want} (once per boot)"),
            );
        }
    }
    check(
        t,
        count(
            t,
            "[SERVICE_VM] svm: VM 1 MSI vector 0x40: ok, GSI 5 high: ok",
        ) == 3,
        "the Service VM's MSI/IRQ-line hypercalls for POST_VM1 did not all succeed",
    );
    // The Service VM's e820 is its memory layout's: the hypervisor's own RAM (above 1 MiB,
    // below the top of the Service VM's RAM, unlike device windows) shows as reserved, not
    // only the BIOS area.
    let hex = |a: &str| u64::from_str_radix(a.strip_prefix("0x")?, 16).ok();
    let ram_top = t
        .texts()
        .find_map(|l| l.strip_prefix("[SERVICE_VM] memory-top: "))
        .and_then(hex);
    let reserved_high = t.texts().any(|l| {
        let Some(e) = l.strip_prefix("[SERVICE_VM] e820: ") else {
            return false;
        };
        let start = e.split('-').next().and_then(hex);
        e.ends_with(" type 2")
            && start >= Some(0x10_0000)
            && ram_top.is_some_and(|top| start < Some(top))
    });
    check(
        t,
        reserved_high,
        "the Service VM's e820 has no reserved range above 1 MiB (hypervisor RAM)",
    );
}

/// Shared of configs/bochs-tigerlake in Bochs (Intel VMX): the same lifecycle as in QEMU, with
/// the post-launched vCPUs on a second VMCS of their pCPUs. Bochs takes about 40 s to reach the
/// hypervisor (BIOS, GRUB) and runs guests about 100 times slower than TCG.
#[test]
fn bochs_tigerlake_shared_runs_post_launched_vms() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    let out = work_dir("bochs-shared").join("image");
    let t = run(
        &RunSpec {
            board: "bochs-tigerlake",
            scenario: "shared",
            out: &out,
            extra: vec!["--emulator".into(), "bochs".into()],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(600),
        },
        |t| decided(t) || t.find_prefix(SVM_VERDICT).is_some(),
    );
    eprintln!(
        "Bochs shared: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check(
        &t,
        t.find("[SERVICE_VM] svm: hypercalls via vmcall").is_some(),
        "the Service VM did not use VMCALL (not a VMX run?)",
    );
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}

/// The interrupt and MMIO test on bochs-tigerlake in Bochs: VMX injection with interrupt-window
/// exiting and EPT-violation MMIO decoding.
#[test]
fn bochs_tigerlake_shared_delivers_msi_and_irq_lines_to_post_launched_vms() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("bochs-shared-irq");
    let scenario = board_variant(
        "bochs-tigerlake",
        "shared",
        "<bootargs>console=ttyS0</bootargs>",
        "<bootargs>console=ttyS0 guestargs=irqwait,mmioprobe</bootargs>",
        &dir,
    );
    let out = dir.join("image");
    let t = run(
        &RunSpec {
            board: "bochs-tigerlake",
            scenario: &scenario,
            out: &out,
            extra: vec!["--emulator".into(), "bochs".into()],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(600),
        },
        |t| decided(t) || t.find_prefix(SVM_VERDICT).is_some(),
    );
    eprintln!(
        "Bochs shared irq: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_interrupts_and_mmio(&t);
    check_lifecycle(&t, &["POST_VM1", "POST_VM2"]);
}
