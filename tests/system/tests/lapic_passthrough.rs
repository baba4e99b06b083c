//! `lapic_passthrough` (ACRN's RTVM) with configs/`board`/rtvm.xml and the `platform` test
//! guest (tests/guests/platform) in both VMs: PRE_VM0 (pCPUs 0-1) runs `victim`, counting
//! every vector on both vCPUs while it listens; PRE_RT_VM1 (pCPUs 2-3) runs `rtvm`.
//! * Bochs (tigerlake, x2APIC): the RTVM's vCPUs get the physical local APICs of pCPUs 2
//!   and 3. Its
//!   timer runs at the programmed rate in one-shot, periodic and TSC-deadline modes; its
//!   IPIs and NMIs to its own vCPUs arrive, every other destination, logical mode and every
//!   shorthand is refused with #GP, and the victim sees nothing and is started once. Then its
//!   AP triple-faults while the BSP spins: the hypervisor stops the VM through the NMI kick
//!   and takes pCPU 2's local APIC back.
//! * QEMU TCG (no x2APIC): the hypervisor refuses the RTVM with a message at boot and runs
//!   the other VM.

use std::path::Path;

use acrn_system_tests::{check, repo_root, run_platform_vms, Transcript};

/// configs/`board`/rtvm.xml with the victim's and the RTVM's command lines.
fn scenario(board: &str, name: &str, dir: &Path) -> String {
    let src = repo_root().join(format!("configs/{board}/rtvm.xml"));
    let text = std::fs::read_to_string(&src).expect("read scenario");
    let from = "<bootargs>console=ttyS0</bootargs>";
    assert_eq!(
        text.matches(from).count(),
        2,
        "{} no longer has two `{from}`",
        src.display()
    );
    let text = text
        .replacen(
            from,
            "<bootargs>console=ttyS0 victim listen_ms=4000</bootargs>",
            1,
        )
        .replacen(
            from,
            "<bootargs>console=ttyS0 rtvm wait_ms=200</bootargs>",
            1,
        );
    std::fs::create_dir_all(dir).expect("create work dir");
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, text).expect("write scenario variant");
    path.display().to_string()
}

fn run_rtvm(board: &str, emulator: &str, test: &str, limit: u64) -> Transcript {
    let dir = acrn_system_tests::work_dir(test);
    let scenario = scenario(board, test, &dir);
    run_platform_vms(
        test,
        board,
        emulator,
        &scenario,
        &["PRE_VM0", "PRE_RT_VM1"],
        limit,
    )
}

fn has(t: &Transcript, line: &str) {
    check(t, t.find(line).is_some(), &format!("no `{line}` line"));
}

fn at(t: &Transcript, prefix: &str) -> usize {
    let i = t.find_prefix(prefix);
    check(t, i.is_some(), &format!("no line starting with `{prefix}`"));
    i.unwrap_or_default()
}

/// The victim counted only its own interrupts across the whole time it listened, was started
/// once, passed and ended by itself.
fn check_victim(t: &Transcript) {
    has(t, "[PRE_VM0] platform: boot 1");
    has(t, "[PRE_VM0] victim: foreign interrupts: 0");
    has(t, "[PRE_VM0] victim: own interrupts lost: 0");
    has(t, "[PRE_VM0] verdict: PASS");
    check(
        t,
        t.texts()
            .filter(|l| l.starts_with("[PRE_VM0] guest:"))
            .count()
            == 1,
        "the victim was started more than once",
    );
    has(
        t,
        "[hv] VM 0 PRE_VM0 stopped: every vCPU halted with interrupts disabled (the guest is done)",
    );
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// tests/guests/platform/src/timer.rs: MEDIAN_PERMILLE and AVG_MIN_PERMILLE.
const MEDIAN_PERMILLE: std::ops::RangeInclusive<u64> = 900..=1250;
const AVG_MIN_PERMILLE: u64 = 950;

#[test]
fn bochs_tigerlake_rtvm_owns_its_local_apic_and_reaches_no_other_vm() {
    let t = run_rtvm("bochs-tigerlake", "bochs", "bochs-rtvm", 900);
    check(
        &t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
    has(
        &t,
        "[hv] local APICs: x2APIC mode (a VM has lapic_passthrough)",
    );
    let owned = at(
        &t,
        "[hv] VM 1 PRE_RT_VM1: vCPU 0 owns the local APIC of pCPU 2",
    );
    // Its APIC ID and LDR are virtual (vCPU 0), not those of pCPU 2.
    has(&t, "[PRE_RT_VM1] rtvm: x2apic id 0x0 ldr 0x1");
    check(
        &t,
        owned < at(&t, "[PRE_RT_VM1] rtvm: x2apic id"),
        "the guest read its APIC ID before it owned the local APIC",
    );
    for mode in ["one-shot", "periodic", "tsc-deadline"] {
        let i = at(
            &t,
            &format!("[PRE_RT_VM1] timer: x2apic-pt {mode}: programmed="),
        );
        let line = &t.lines[i].text;
        let get = |k: &str| field(line, k).unwrap_or(u64::MAX);
        check(
            &t,
            get("ticks") == 20 && get("early") == 0 && get("after_stop") == 0,
            &format!("{mode}: ticks missing, early or after the stop: {line}"),
        );
        check(
            &t,
            MEDIAN_PERMILLE.contains(&get("median_permille"))
                && get("avg_permille") >= AVG_MIN_PERMILLE,
            &format!("{mode}: not at the programmed rate: {line}"),
        );
        eprintln!("{line}");
    }
    has(
        &t,
        "[PRE_RT_VM1] rtvm: own ipis: cpu 0 vector 0xc0: 1, cpu 0 nmi: 1, cpu 1 vector 0xc1: 1, cpu 1 nmi: 1",
    );
    has(
        &t,
        "[PRE_RT_VM1] rtvm: refused with #GP: 26 of 26; vector 0xc2 arrived 0 time(s)",
    );
    has(&t, "[PRE_RT_VM1] verdict: PASS");
    // The IPIs were sent while the victim listened.
    let listening = at(&t, "[PRE_VM0] victim: listening for");
    let ipis = at(&t, "[PRE_RT_VM1] rtvm: ipis starting");
    let ipis_done = at(&t, "[PRE_RT_VM1] rtvm: ipis done");
    let done = at(&t, "[PRE_VM0] victim: listening done");
    check(
        &t,
        listening < ipis && ipis_done < done,
        "the RTVM's IPIs were not sent while the victim listened",
    );
    check_victim(&t);
    // Stopped while its BSP ran on the passed-through pCPU (the kick is an NMI there), and
    // the hypervisor has that local APIC back.
    let spinning = at(&t, "[PRE_RT_VM1] rtvm: spinning until the VM is stopped");
    let stopped = at(&t, "[hv] VM 1 PRE_RT_VM1 stopped: vCPU 1: triple fault");
    let back = at(
        &t,
        "[hv] pCPU 2: local APIC back with the hypervisor (VM 1 PRE_RT_VM1 vCPU 0 gone)",
    );
    let back_ap = at(
        &t,
        "[hv] pCPU 3: local APIC back with the hypervisor (VM 1 PRE_RT_VM1 vCPU 1 gone)",
    );
    check(
        &t,
        spinning < stopped && stopped < back && stopped < back_ap,
        "the RTVM was not stopped while it ran, or its pCPUs' local APICs were not taken back",
    );
    has(&t, "[hv] every VM has stopped; powering off");
}

#[test]
fn qemu_epyc_rtvm_is_refused_without_x2apic() {
    let t = run_rtvm("qemu-epyc", "qemu", "qemu-rtvm", 120);
    has(
        &t,
        "[hv] local APICs: xAPIC mode; this CPU has no x2APIC for lapic_passthrough",
    );
    has(
        &t,
        "[hv] VM 1 PRE_RT_VM1 not started: lapic_passthrough needs the local APICs in x2APIC \
         mode, and this CPU has no x2APIC (CPUID.1:ECX bit 21)",
    );
    check(
        &t,
        !t.texts().any(|l| l.starts_with("[PRE_RT_VM1]")),
        "the refused RTVM ran",
    );
    check_victim(&t);
    has(&t, "[hv] every VM has stopped; powering off");
}
