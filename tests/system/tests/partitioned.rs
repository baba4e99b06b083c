//! The partitioned scenario of each emulated board boots: both pre-launched VMs print their
//! identification with the memory and CPUs the scenario gave them, on the pCPUs it gave them,
//! at the same time; the misbehaving guest (PRE_VM1 runs `rogue` by default) is stopped by
//! the hypervisor while its sibling (`hello`) keeps printing and passes.

use std::time::Duration;

use acrn_system_tests::{check, require_tools, run, work_dir, RunSpec, Transcript};

/// What a board's partitioned scenario gives each VM.
struct Expect {
    memory_mb: u32,
    pcpus: [&'static str; 2],
}

/// The run is complete once hello has its verdict and the rogue VM was stopped, and decided
/// as soon as the hypervisor stops hello's VM or fails.
fn complete(t: &Transcript) -> bool {
    let has = |p: &str| t.find_prefix(p).is_some();
    has("[hv] every VM has stopped") || has("[hv] PANIC") || has("[hv] FATAL")
}

fn check_partitioned(t: &Transcript, e: &Expect) {
    check(
        t,
        t.find_prefix("[hv] ACRN hypervisor").is_some(),
        "the hypervisor did not start",
    );
    for (id, vm) in ["PRE_VM0", "PRE_VM1"].iter().enumerate() {
        let starting = format!("[hv] VM {id} {vm} starting: pCPUs {},", e.pcpus[id]);
        check(
            t,
            t.find_prefix(&starting).is_some(),
            &format!("no `{starting}` line"),
        );
        for line in [
            format!("[{vm}] memory: {}", e.memory_mb),
            format!("[{vm}] cpus: 2"),
        ] {
            check(t, t.find(&line).is_some(), &format!("no `{line}` line"));
        }
    }
    // hello saw both of its vCPUs run and passed; its VM ended only when the guest was done.
    for line in ["[PRE_VM0] cpus-online: 2", "[PRE_VM0] verdict: PASS"] {
        check(t, t.find(line).is_some(), &format!("no `{line}` line"));
    }
    let verdict = t.find("[PRE_VM0] verdict: PASS").unwrap_or(usize::MAX);
    let end =
        t.find_prefix("[hv] VM 0 PRE_VM0 stopped: every vCPU halted with interrupts disabled");
    check(
        t,
        end.is_some_and(|e| e > verdict)
            && t.find_prefix("[hv] VM 0 PRE_VM0 stopped")
                .is_some_and(|s| s >= verdict),
        "PRE_VM0 was stopped other than by ending after its verdict",
    );

    // Both VMs run at the same time: their lines interleave.
    let (v0, v1) = (t.vm_lines("PRE_VM0"), t.vm_lines("PRE_VM1"));
    check(t, !v0.is_empty() && !v1.is_empty(), "a VM printed nothing");
    check(
        t,
        v1[0] < *v0.last().unwrap() && v0[0] < *v1.last().unwrap(),
        "the VMs' lines do not interleave: they did not run at the same time",
    );

    // The rogue VM's accesses outside its memory reached nothing: reads gave all-ones (not
    // the other VM's data), writes were dropped (hello still passed), each range reported
    // once. Its triple fault then stopped it alone, and hello kept printing after that.
    check(
        t,
        t.find_prefix("[PRE_VM1] rogue: touching memory outside my VM")
            .is_some(),
        "PRE_VM1 (rogue) did not get to its out-of-bounds accesses",
    );
    let top = u64::from(e.memory_mb) << 20;
    for line in [
        format!("[PRE_VM1] rogue: read {top:#x} = 0xffffffffffffffff"),
        format!(
            "[PRE_VM1] rogue: read {:#x} = 0xffffffffffffffff",
            (1u64 << 32) + top
        ),
        format!(
            "[hv] VM 1 PRE_VM1: no device at MMIO page {top:#x}: reads return all-ones, \
             writes are ignored (reported once)"
        ),
    ] {
        check(t, t.find(&line).is_some(), &format!("no `{line}` line"));
    }
    let stop = t.find_prefix("[hv] VM 1 PRE_VM1 stopped: vCPU 0: triple fault");
    check(
        t,
        stop.is_some(),
        "the hypervisor did not stop PRE_VM1 at its triple fault",
    );
    let stop = stop.unwrap();
    check(
        t,
        v1.iter().all(|&i| i < stop),
        "PRE_VM1 printed after it was stopped",
    );
    check(
        t,
        v0.iter().any(|&i| i > stop),
        "PRE_VM0 printed nothing after its sibling was stopped",
    );
    // Both guests are done: the hypervisor says so and switches the machine off.
    check(
        t,
        t.find("[hv] every VM has stopped; powering off").is_some(),
        "the hypervisor did not power off after every VM stopped",
    );
}

#[test]
fn qemu_epyc_partitioned_boots_in_qemu_tcg() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let out = work_dir("qemu-partitioned").join("image");
    let t = run(
        &RunSpec {
            board: "qemu-epyc",
            scenario: "partitioned",
            out: &out,
            extra: vec!["--emulator".into(), "qemu".into()],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(60),
        },
        complete,
    );
    eprintln!(
        "QEMU partitioned: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_partitioned(
        &t,
        &Expect {
            memory_mb: 256,
            pcpus: ["0,1", "2,3"],
        },
    );
}

#[test]
fn bochs_tigerlake_partitioned_boots_in_bochs() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    let out = work_dir("bochs-partitioned").join("image");
    let t = run(
        &RunSpec {
            board: "bochs-tigerlake",
            scenario: "partitioned",
            out: &out,
            extra: vec!["--emulator".into(), "bochs".into()],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(600),
        },
        complete,
    );
    eprintln!(
        "Bochs partitioned: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_partitioned(
        &t,
        &Expect {
            memory_mb: 128,
            pcpus: ["0,1", "2,3"],
        },
    );
}
