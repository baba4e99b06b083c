//! vCPU scheduling with shared pCPUs (issue 7 item 4), on QEMU TCG (AMD SVM) and Bochs (VMX).
//!
//! * `sharing`: the Service VM has 2 vCPUs (pCPUs 0-1; a pre-launched VM takes 2-3) and keeps
//!   both busy (`apwork`: its AP never halts and prints heartbeats; its BSP polls the I/O
//!   request slots). POST_VM1 runs on pCPU 1 and POST_VM2 on pCPUs 0-1, so every pCPU of the
//!   Service VM hosts two or three vCPUs of different VMs. All three must keep printing, under
//!   SCHED_BVT and SCHED_IORR. The post-launched guests and the Service VM's AP keep a pattern
//!   of their own in XMM0-15/YMM0-15 (`fpucheck`) that they check at every heartbeat, and the
//!   post-launched guests spin without exits after their verdict (`spin`), so the Service VM's
//!   pause, reset, destroy and re-create of POST_VM1 act on a busy-looping vCPU: it reads the
//!   guest's spin counter and requires it to move before the pause and stand still after.
//! * `memory removal`: the Service VM maps a page for POST_VM1 (`memread`), removes it
//!   (HC_VM_SET_MEMORY_REGIONS, MR_DEL) while the guest reads it in a loop, then writes a new
//!   value into the old page. The hypervisor's promise for a post-launched VM: an access to a
//!   GPA without RAM is forwarded to the Service VM as an MMIO request (its default client reads
//!   all-ones), or the VM is stopped; the guest must never read the old page again.

use std::path::Path;
use std::time::Duration;

use acrn_system_tests::{check, repo_root, require_tools, run, work_dir, RunSpec, Transcript};

const SVM_VERDICT: &str = "[SERVICE_VM] verdict:";
/// Heartbeats of each post-launched boot in the sharing runs.
const TICKS: u32 = 30;

fn count(t: &Transcript, line: &str) -> usize {
    t.texts().filter(|&l| l == line).count()
}

fn decided(t: &Transcript) -> bool {
    let has = |p: &str| t.find_prefix(p).is_some();
    has("[hv] PANIC")
        || has("[hv] FATAL")
        || has(SVM_VERDICT)
        || t.texts().any(|l| l.contains("SERVICE_VM stopped"))
}

/// The `<hv>` section of configs/`board`/shared.xml with `scheduler` as `<SCHEDULER>`.
fn hv_section(board: &str, scheduler: &str) -> String {
    let src = repo_root().join(format!("configs/{board}/shared.xml"));
    let text = std::fs::read_to_string(&src).expect("read shared.xml");
    let start = text.find("<hv>").expect("shared.xml has <hv>");
    let end = text.find("</hv>").expect("shared.xml has </hv>") + "</hv>".len();
    let hv = &text[start..end];
    let old = "<SCHEDULER>SCHED_BVT</SCHEDULER>";
    assert!(hv.contains(old), "{} has no `{old}`", src.display());
    hv.replace(old, &format!("<SCHEDULER>{scheduler}</SCHEDULER>"))
}

fn pcpus(ids: &[u32]) -> String {
    ids.iter()
        .map(|i| format!("<pcpu><pcpu_id>{i}</pcpu_id></pcpu>"))
        .collect()
}

fn post_vm(id: u32, name: &str, cpus: &[u32]) -> String {
    format!(
        r#"  <vm id="{id}">
    <load_order>POST_LAUNCHED_VM</load_order>
    <vm_type>STANDARD_VM</vm_type>
    <name>{name}</name>
    <cpu_affinity>{}</cpu_affinity>
    <memory><size>256</size></memory>
    <console_vuart>COM Port 1</console_vuart>
  </vm>
"#,
        pcpus(cpus)
    )
}

/// The sharing scenario: PRE_VM0 on pCPUs 2-3 (so the Service VM gets 0-1), POST_VM1 on
/// pCPU 1, POST_VM2 on pCPUs 0-1.
fn sharing_scenario(board: &str, scheduler: &str, dir: &Path) -> String {
    let guest = format!("ticks={TICKS},fpucheck,spin");
    let xml = format!(
        r#"<?xml version="1.0"?>
<!-- Written by tests/system/tests/scheduling.rs: the Service VM's two vCPUs share their pCPUs with two post-launched VMs. -->
<acrn-config>
  {hv}
  <vm id="0">
    <load_order>PRE_LAUNCHED_VM</load_order>
    <vm_type>STANDARD_VM</vm_type>
    <name>PRE_VM0</name>
    <cpu_affinity>{pre}</cpu_affinity>
    <memory><size>256</size></memory>
    <os_config>
      <kern_type>KERNEL_ELF</kern_type>
      <kern_mod>PRE_VM0_kernel</kern_mod>
      <ramdisk_mod/>
      <bootargs>console=ttyS0</bootargs>
    </os_config>
    <console_vuart>COM Port 1</console_vuart>
  </vm>
  <vm id="1">
    <load_order>SERVICE_VM</load_order>
    <vm_type>STANDARD_VM</vm_type>
    <name>SERVICE_VM</name>
    <os_config>
      <kern_type>KERNEL_ELF</kern_type>
      <kern_mod>SERVICE_VM_kernel</kern_mod>
      <ramdisk_mod/>
      <bootargs>console=ttyS0 apwork verdictwait=300 guestargs={guest}</bootargs>
    </os_config>
    <console_vuart>COM Port 1</console_vuart>
  </vm>
{post1}{post2}</acrn-config>
"#,
        hv = hv_section(board, scheduler),
        pre = pcpus(&[2, 3]),
        post1 = post_vm(2, "POST_VM1", &[1]),
        post2 = post_vm(3, "POST_VM2", &[0, 1]),
    );
    let path = dir.join(format!("sharing-{scheduler}.xml"));
    std::fs::write(&path, xml).expect("write scenario");
    path.display().to_string()
}

fn qemu_spec<'a>(scenario: &'a str, out: &'a Path) -> RunSpec<'a> {
    RunSpec {
        board: "qemu-epyc",
        scenario,
        out,
        extra: vec!["--emulator".into(), "qemu".into()],
        build_limit: Duration::from_secs(900),
        boot_limit: Duration::from_secs(300),
    }
}

fn bochs_spec<'a>(scenario: &'a str, out: &'a Path) -> RunSpec<'a> {
    RunSpec {
        board: "bochs-tigerlake",
        scenario,
        out,
        extra: vec!["--emulator".into(), "bochs".into()],
        build_limit: Duration::from_secs(900),
        boot_limit: Duration::from_secs(1800),
    }
}

/// Which VM's progress a line shows: 0 the Service VM's AP, 1 POST_VM1, 2 POST_VM2.
fn progress_source(line: &str) -> Option<usize> {
    if line.starts_with("[SERVICE_VM] svm: ap 1 beat ") {
        Some(0)
    } else if line.starts_with("[SERVICE_VM] [POST_VM1] ") {
        Some(1)
    } else if line.starts_with("[SERVICE_VM] [POST_VM2] ") {
        Some(2)
    } else {
        None
    }
}

/// All three VMs print while they share pCPUs: from the later of the two post-launched VMs'
/// first line to the earlier of their first verdicts (both boot and tick then), each third of
/// the lines holds lines of all three. The Service VM's AP still beats after POST_VM1's
/// re-creation.
fn check_interleaved(t: &Transcript) {
    let texts: Vec<&str> = t.texts().collect();
    let first = |vm: &str| t.find(&format!("[SERVICE_VM] [{vm}] guest: hello"));
    let verdict = |vm: &str| t.find_prefix(&format!("[SERVICE_VM] [{vm}] verdict: "));
    let (Some(f1), Some(f2), Some(v1), Some(v2)) = (
        first("POST_VM1"),
        first("POST_VM2"),
        verdict("POST_VM1"),
        verdict("POST_VM2"),
    ) else {
        check(t, false, "a post-launched VM did not boot to its verdict");
        return;
    };
    let (start, end) = (f1.max(f2), v1.min(v2));
    check(
        t,
        end > start + 30,
        &format!("the post-launched VMs barely ran together (lines {start}..{end})"),
    );
    let third = (end - start) / 3;
    for part in 0..3 {
        let (a, b) = (start + part * third, start + (part + 1) * third);
        let mut seen = [false; 3];
        for text in &texts[a..=b] {
            if let Some(s) = progress_source(text) {
                seen[s] = true;
            }
        }
        check(
            t,
            seen == [true; 3],
            &format!(
                "lines {a}..={b} (third {} of the time both post-launched VMs run) lack lines of {}",
                part + 1,
                ["the Service VM's AP", "POST_VM1", "POST_VM2"]
                    .iter()
                    .zip(seen)
                    .filter(|(_, s)| !s)
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let recreated = t
        .lines
        .iter()
        .rposition(|l| l.text == "[SERVICE_VM] svm: created VM 1 POST_VM1 vcpus=1");
    let last_beat = t
        .lines
        .iter()
        .rposition(|l| progress_source(&l.text) == Some(0));
    check(
        t,
        recreated.is_some() && last_beat > recreated,
        "the Service VM's AP stopped beating before POST_VM1 was re-created",
    );
}

/// The vector-register checks: every boot of each post-launched VM checked its pattern at every
/// heartbeat without a mismatch, and the Service VM's AP never saw one. `avx`: whether the
/// checks must have covered the YMM upper halves (None: whatever the CPU model offers).
fn check_vectors(t: &Transcript, avx: Option<bool>) {
    let avx_ok = |r: &str| avx.is_none_or(|a| r.contains(&format!("avx={a}")));
    for (vm, boots) in [("POST_VM1", 3), ("POST_VM2", 1)] {
        let enabled = t
            .texts()
            .filter(|l| {
                l.strip_prefix(&format!("[SERVICE_VM] [{vm}] fpu: xcr0="))
                    .is_some_and(avx_ok)
            })
            .count();
        check(
            t,
            enabled == boots,
            &format!(
                "{vm} enabled its vector check (avx: {avx:?}) {enabled} times, expected {boots}"
            ),
        );
        let ok = format!("[SERVICE_VM] [{vm}] fpu: checks={} mismatches=0", TICKS + 1);
        check(
            t,
            count(t, &ok) == boots,
            &format!("`{ok}` not seen on each of {vm}'s {boots} boots"),
        );
    }
    let beats: Vec<&str> = t
        .texts()
        .filter(|l| l.starts_with("[SERVICE_VM] svm: ap 1 beat "))
        .collect();
    check(t, beats.len() >= 3, "the Service VM's AP printed < 3 beats");
    check(
        t,
        beats
            .iter()
            .all(|l| avx_ok(l) && l.ends_with(" fpu-mismatches=0")),
        "the Service VM's AP found its vector registers changed (or avx differs)",
    );
}

/// Pause, reset, destroy and re-create of the spinning POST_VM1, with its spin counter moving
/// before each pause and still after it, and three PASS verdicts.
fn check_spin_lifecycle(t: &Transcript) {
    let spinning = t
        .texts()
        .filter(|l| {
            l.strip_prefix("[SERVICE_VM] svm: VM 1 spinning: counter +")
                .and_then(|r| r.strip_suffix(" before pause"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
        .count();
    check(
        t,
        spinning == 2,
        "POST_VM1 was not seen spinning before each of its 2 pauses",
    );
    check(
        t,
        count(t, "[SERVICE_VM] svm: VM 1 paused: counter +0 after pause") == 2,
        "POST_VM1 did not stand still after each of its 2 pauses",
    );
    for line in [
        "[SERVICE_VM] svm: reset VM 1",
        "[SERVICE_VM] svm: restarted VM 1 POST_VM1",
        "[SERVICE_VM] svm: destroyed VM 1",
    ] {
        check(t, t.find(line).is_some(), &format!("no `{line}` line"));
    }
    check(
        t,
        count(t, "[SERVICE_VM] [POST_VM1] verdict: PASS") == 3,
        "POST_VM1 did not pass three times (boot, after reset, after re-create)",
    );
    check(
        t,
        t.find("[SERVICE_VM] [POST_VM2] verdict: PASS").is_some(),
        "POST_VM2 did not pass",
    );
    check(
        t,
        t.find("[SERVICE_VM] verdict: PASS").is_some(),
        "the Service VM did not pass",
    );
}

fn check_hypervisor_ok(t: &Transcript) {
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
    check(
        t,
        !t.texts().any(|l| {
            l.starts_with("[hv] VM ") && l.contains("POST_VM") && l.contains(" stopped: ")
        }),
        "the hypervisor stopped a post-launched VM",
    );
}

fn sharing(board: &str, scheduler: &str, avx: Option<bool>) {
    let dir = work_dir(&format!("{board}-sharing-{scheduler}"));
    let scenario = sharing_scenario(board, scheduler, &dir);
    let out = dir.join("image");
    let spec = if board == "qemu-epyc" {
        qemu_spec(&scenario, &out)
    } else {
        bochs_spec(&scenario, &out)
    };
    let t = run(&spec, decided);
    eprintln!(
        "{board} sharing {scheduler}: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check(
        &t,
        t.find("[SERVICE_VM] cpus-online: 2").is_some(),
        "the Service VM did not start its 2 vCPUs",
    );
    check_hypervisor_ok(&t);
    check_interleaved(&t);
    check_vectors(&t, avx);
    check_spin_lifecycle(&t);
}

#[test]
fn qemu_epyc_sharing_under_bvt() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    sharing("qemu-epyc", "SCHED_BVT", Some(true));
}

#[test]
fn qemu_epyc_sharing_under_iorr() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    sharing("qemu-epyc", "SCHED_IORR", Some(true));
}

/// configs/`board`/shared.xml with `memread` for the post-launched guests.
fn memread_scenario(board: &str, dir: &Path) -> String {
    let src = repo_root().join(format!("configs/{board}/shared.xml"));
    let text = std::fs::read_to_string(&src).expect("read shared.xml");
    let from = "<bootargs>console=ttyS0</bootargs>";
    assert!(text.contains(from), "{} has no `{from}`", src.display());
    let path = dir.join("shared-memread.xml");
    let text = text.replacen(
        from,
        "<bootargs>console=ttyS0 guestargs=memread</bootargs>",
        1,
    );
    std::fs::write(&path, text).expect("write scenario");
    path.display().to_string()
}

const OLD_PAGE: &str = "0x5354414c45205047";

/// Every boot of every post-launched VM: the page held the pattern, was removed while the guest
/// read it, and afterwards the guest read all-ones (or was stopped, or faulted), never the
/// value written into the old page after the removal.
fn check_memory_removal(t: &Transcript) {
    for (id, vm, boots) in [(1, "POST_VM1", 3), (2, "POST_VM2", 1)] {
        let guest = format!("[SERVICE_VM] [{vm}] memread: ");
        check(
            t,
            count(t, &format!("{guest}0x80000000 = 0x4d454d5245414430")) == boots,
            &format!("{vm} did not read the mapped pattern on each of its {boots} boots"),
        );
        let removed =
            format!("[SERVICE_VM] svm: VM {id} removed 0x80000000+0x200000 while it runs");
        check(
            t,
            count(t, &removed) == boots,
            &format!("`{removed}` not seen on each of {vm}'s {boots} boots"),
        );
        check(
            t,
            !t.texts()
                .any(|l| l.starts_with(&guest) && l.contains(OLD_PAGE)),
            &format!("{vm} read the old page after it was removed"),
        );
        let after: Vec<&str> = t
            .texts()
            .filter(|l| l.starts_with(&guest) && l.contains(" after "))
            .collect();
        let stopped = t
            .texts()
            .any(|l| l.starts_with("[hv] VM ") && l.contains(&format!(" {vm} stopped: ")));
        let faulted = t
            .find_prefix(&format!("[SERVICE_VM] [{vm}] exception:"))
            .is_some();
        // Reads of the mapped page before the removal: many, so the guest's translation of
        // it was in use when it went away.
        let ones = after
            .iter()
            .filter(|l| {
                l.split_once(" = 0xffffffffffffffff after ")
                    .and_then(|(_, n)| n.strip_suffix(" reads"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= 1000)
            })
            .count();
        check(
            t,
            ones == after.len() && (ones == boots || stopped || faulted),
            &format!(
                "{vm}: after the removal it read {after:?} (want all-ones after >= 1000 reads of the page on each boot, or a stop or fault)"
            ),
        );
    }
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

fn memory_removal(board: &str) {
    let dir = work_dir(&format!("{board}-memread"));
    let scenario = memread_scenario(board, &dir);
    let out = dir.join("image");
    let spec = if board == "qemu-epyc" {
        qemu_spec(&scenario, &out)
    } else {
        bochs_spec(&scenario, &out)
    };
    let t = run(&spec, decided);
    eprintln!(
        "{board} memory removal: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_memory_removal(&t);
}

#[test]
fn qemu_epyc_removing_memory_of_a_running_vm() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    memory_removal("qemu-epyc");
}

#[test]
#[ignore = "slow: Bochs runs the sharing lifecycle for many minutes"]
fn bochs_tigerlake_sharing_under_bvt() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    sharing("bochs-tigerlake", "SCHED_BVT", None);
}

#[test]
#[ignore = "slow: Bochs runs the sharing lifecycle for many minutes"]
fn bochs_tigerlake_sharing_under_iorr() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    sharing("bochs-tigerlake", "SCHED_IORR", None);
}

#[test]
fn bochs_tigerlake_removing_memory_of_a_running_vm() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    memory_removal("bochs-tigerlake");
}
