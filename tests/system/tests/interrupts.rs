//! Every VM's interrupt platform is its own, on both backends, with the `platform` test guest
//! (tests/guests/platform) in both VMs of a `partitioned` variant:
//! * containment: PRE_VM0 (pCPUs 0-1, the pCPU-0 owner) runs `attacker`: every I/O APIC pin
//!   to physical broadcast, PIT, RTC periodic interrupts, HPET, both 8259s, fixed IPIs to
//!   every APIC ID and to all-excluding-self, a logical broadcast, NMI, INIT and SIPI to
//!   all-excluding-self. PRE_VM1 runs `victim`: it counts every vector on both vCPUs while it
//!   listens, across the whole attack, and must see only its own self-test IPIs, be started
//!   once, and pass. The attacker must either finish or be stopped with a message; what its own
//!   virtual platform delivered to it is printed, and its self-IPIs must have arrived.
//! * the vLAPIC timer: both VMs run `timer`: one-shot, periodic and TSC-deadline, in xAPIC
//!   and x2APIC mode, measured against the TSC.
//!
//! The tests of this file run one emulator at a time (timing is measured).

use std::path::Path;

use acrn_system_tests::{check, repo_root, run_platform_vms, Transcript};

/// A copy of configs/`board`/partitioned.xml whose two VMs get `args0` and `args1` appended to
/// their bootargs.
fn scenario(board: &str, name: &str, args0: &str, args1: &str, dir: &Path) -> String {
    let src = repo_root().join(format!("configs/{board}/partitioned.xml"));
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
            &format!("<bootargs>console=ttyS0 {args0}</bootargs>"),
            1,
        )
        .replacen(
            from,
            &format!("<bootargs>console=ttyS0 {args1}</bootargs>"),
            1,
        );
    std::fs::create_dir_all(dir).expect("create work dir");
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, text).expect("write scenario variant");
    path.display().to_string()
}

/// Runs `partitioned` of `board` with the platform guest in both VMs.
fn run_platform(
    board: &str,
    emulator: &str,
    test: &str,
    args: [&str; 2],
    limit: u64,
) -> Transcript {
    let dir = acrn_system_tests::work_dir(test);
    let scenario = scenario(board, test, args[0], args[1], &dir);
    run_platform_vms(
        test,
        board,
        emulator,
        &scenario,
        &["PRE_VM0", "PRE_VM1"],
        limit,
    )
}

fn has(t: &Transcript, line: &str) {
    check(t, t.find(line).is_some(), &format!("no `{line}` line"));
}

/// The index of the first line starting with `prefix`, or a failure.
fn at(t: &Transcript, prefix: &str) -> usize {
    let i = t.find_prefix(prefix);
    check(t, i.is_some(), &format!("no line starting with `{prefix}`"));
    i.unwrap_or_default()
}

fn check_containment(t: &Transcript) {
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
    // The victim proved it counts (its self-test IPIs arrived on both vCPUs), listened
    // across the whole attack, saw nothing else, was started once and passed.
    has(t, "[PRE_VM1] platform: boot 1");
    has(t, "[PRE_VM1] cpus-online: 2");
    has(
        t,
        "[PRE_VM1] victim: self-test: cpu 0 got vector 0xee 1 time(s); APs got vector 0xed: 1",
    );
    let listening = at(t, "[PRE_VM1] victim: listening for");
    let attack = at(t, "[PRE_VM0] attacker: starting");
    check(
        t,
        listening < attack,
        "the victim was not listening yet when the attack started",
    );
    // The attack is over when the attacker says so or its VM was stopped (with a message).
    let attacker_end = t
        .find("[PRE_VM0] attacker: done; stopping")
        .or_else(|| t.find_prefix("[hv] VM 0 PRE_VM0 stopped:"));
    check(
        t,
        attacker_end.is_some(),
        "the attacker neither finished nor was stopped with a message",
    );
    // A stop must be the hypervisor's decision about what the guest did, not a VM entry the
    // hypervisor itself got wrong.
    check(
        t,
        !t.texts()
            .any(|l| l.starts_with("[hv] VM 0 PRE_VM0 stopped:") && l.contains("VM entry failed")),
        "the attacker's VM was stopped by a failed VM entry (the hypervisor's own state was invalid)",
    );
    let done = at(t, "[PRE_VM1] victim: listening done");
    check(
        t,
        attacker_end.is_some_and(|e| e < done),
        "the victim stopped listening before the attack was over",
    );
    has(t, "[PRE_VM1] victim: foreign interrupts: 0");
    // Its own IPIs must arrive too (the last one wakes its AP from `sti; hlt`).
    has(t, "[PRE_VM1] victim: own interrupts lost: 0");
    has(t, "[PRE_VM1] verdict: PASS");
    check(
        t,
        t.texts()
            .filter(|l| l.starts_with("[PRE_VM1] guest:"))
            .count()
            == 1,
        "the victim was started more than once",
    );
    let victim_stop = at(t, "[hv] VM 1 PRE_VM1 stopped:");
    check(
        t,
        t.find("[hv] VM 1 PRE_VM1 stopped: every vCPU halted with interrupts disabled (the guest is done)")
            == Some(victim_stop)
            && victim_stop > t.find("[PRE_VM1] verdict: PASS").unwrap_or(usize::MAX),
        "the victim's VM was stopped other than by ending after its verdict",
    );
    // The attacker's own platform: its IPIs reached its own vCPUs (physical 0xFF is a
    // broadcast, hence 2 of vector 0xc0 on each), the NMI its AP.
    if t.find("[PRE_VM0] attacker: done; stopping").is_some() {
        has(
            t,
            "[PRE_VM0] attacker: own ipis: cpu 0 vector 0xc0: 2, cpu 1 vectors 0xc0/0xc1/0xc2: 2/1/1, cpu 1 nmi: 1",
        );
    }
    has(t, "[hv] every VM has stopped; powering off");
    for l in t.texts().filter(|l| l.contains("attacker: own")) {
        eprintln!("{l}");
    }
}

#[test]
fn qemu_epyc_attacker_in_pre_vm0_reaches_nothing_in_pre_vm1() {
    let t = run_platform(
        "qemu-epyc",
        "qemu",
        "qemu-containment",
        ["attacker", "victim"],
        120,
    );
    check_containment(&t);
}

#[test]
fn bochs_tigerlake_attacker_in_pre_vm0_reaches_nothing_in_pre_vm1() {
    let t = run_platform(
        "bochs-tigerlake",
        "bochs",
        "bochs-containment",
        ["attacker", "victim"],
        600,
    );
    check_containment(&t);
}

/// `key=N` in a line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// Bounds of tests/guests/platform/src/timer.rs (MEDIAN_PERMILLE, AVG_MIN_PERMILLE), where
/// they are justified: stalls of the emulator only delay ticks, so the median of 20 intervals
/// stays within -10%/+25% of the programmed period and the average is never short.
const MEDIAN_PERMILLE: std::ops::RangeInclusive<u64> = 900..=1250;
const AVG_MIN_PERMILLE: u64 = 950;

fn check_timer(t: &Transcript) {
    for vm in ["PRE_VM0", "PRE_VM1"] {
        for apic in ["xapic", "x2apic"] {
            // The divider divides: divide-by-16 counts 16 times slower (within 2%).
            let rate = at(t, &format!("[{vm}] timer: {apic} rate: divide 1: "));
            let words: Vec<u64> = t.lines[rate]
                .text
                .split(' ')
                .filter_map(|w| w.parse().ok())
                .collect();
            check(
                t,
                matches!(words.as_slice(), [r1, 1000, r16, 1000]
                    if r16 * 100 >= r1 * 16 * 98 && r16 * 100 <= r1 * 16 * 102),
                &format!("{vm} {apic}: divide-by-16 is not 16 times divide-by-1"),
            );
            for mode in ["one-shot", "periodic", "tsc-deadline"] {
                let i = at(t, &format!("[{vm}] timer: {apic} {mode}: programmed="));
                let line = &t.lines[i].text;
                let get = |k: &str| field(line, k).unwrap_or(u64::MAX);
                check(
                    t,
                    get("ticks") == 20 && get("early") == 0 && get("after_stop") == 0,
                    &format!("{vm} {apic} {mode}: ticks missing, early or after the stop"),
                );
                check(
                    t,
                    MEDIAN_PERMILLE.contains(&get("median_permille"))
                        && get("avg_permille") >= AVG_MIN_PERMILLE,
                    &format!("{vm} {apic} {mode}: not at the programmed rate: {line}"),
                );
                eprintln!("{line}");
            }
        }
        has(t, &format!("[{vm}] verdict: PASS"));
    }
    has(t, "[hv] every VM has stopped; powering off");
}

#[test]
fn qemu_epyc_vlapic_timer_runs_at_the_programmed_rate() {
    let t = run_platform("qemu-epyc", "qemu", "qemu-timer", ["timer", "timer"], 120);
    check_timer(&t);
}

#[test]
fn bochs_tigerlake_vlapic_timer_runs_at_the_programmed_rate() {
    let t = run_platform(
        "bochs-tigerlake",
        "bochs",
        "bochs-timer",
        ["timer", "timer"],
        900,
    );
    check_timer(&t);
}
