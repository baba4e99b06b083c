//! The hypervisor shell, driven through `acrn-configurator run --console-input`: the
//! partitioned scenario with PRE_VM0's hello guest in `echo` mode (it prints every console line
//! it receives) and PRE_VM1's rogue guest (stopped early by the hypervisor). The script lists
//! the VMs, vCPUs and interrupts, reads guest memory and registers, types a line into PRE_VM0
//! through `vm_console`, comes back with Ctrl+Space (NUL), and resets the machine.

use std::path::Path;
use std::time::Duration;

use acrn_system_tests::{check, repo_root, require_tools, run, work_dir, RunSpec, Transcript};

const PROMPT: &str = "ACRN:\\>";

/// What the test types. Everything after `vm_console 0` up to the NUL goes to PRE_VM0. Up
/// twice recalls `vioapic 0`; `versiom`, Backspace, `n` is `version`.
const SCRIPT: &[u8] = b"help\nversion\nvm_list\nvcpu_list\nint\nvmexit\ndumpmem 0 0x100000 16\n\
dumpmem 0 0xfffffff8 16\ndump_reg 0 0\nvioapic 0\npt\n\x1b[A\x1b[A\nversiom\x7fn\n\
bogus_cmd 1\nvm_list 7\nvm_console 9\nvm_console 0\nhello shell\n\0vm_list\nreboot\n";

/// The board's partitioned scenario with `echo` on PRE_VM0's command line, and the script.
fn prepare(board: &str, dir: &Path) -> (String, String) {
    let src = repo_root().join(format!("configs/{board}/partitioned.xml"));
    let xml = std::fs::read_to_string(&src).expect("read partitioned.xml");
    let plain = "<bootargs>console=ttyS0</bootargs>";
    assert!(xml.contains(plain), "{}: no `{plain}`", src.display());
    let xml = xml.replacen(plain, "<bootargs>console=ttyS0 echo</bootargs>", 1);
    let scenario = dir.join("shell.xml");
    std::fs::write(&scenario, xml).unwrap();
    let input = dir.join("input.txt");
    std::fs::write(&input, SCRIPT).unwrap();
    (scenario.display().to_string(), input.display().to_string())
}

fn complete(t: &Transcript) -> bool {
    let has = |p: &str| t.find_prefix(p).is_some();
    has("[hv] PANIC") || has("[hv] FATAL") || has("[hv] every VM has stopped")
}

/// Bochs resets the machine and starts its BIOS again (whose keyboard self-test then fails
/// at this `ips` with `Keyboard error:21`, ending Bochs): the reset line decides the run.
fn reset_seen(t: &Transcript) -> bool {
    complete(t) || t.find("[hv] shell: resetting the machine").is_some()
}

/// The lines a command printed: after its prompt line, up to the next prompt, other than the
/// VMs' and the hypervisor's own lines.
fn output<'a>(t: &'a Transcript, command: &str) -> Vec<&'a str> {
    after(t, command)
        .into_iter()
        .take_while(|l| !l.starts_with(PROMPT))
        .collect()
}

/// The shell's lines from a command's prompt line on (answers that come later included).
fn after<'a>(t: &'a Transcript, command: &str) -> Vec<&'a str> {
    let echo = format!("{PROMPT} {command}");
    let Some(start) = t.find(&echo) else {
        return Vec::new();
    };
    t.texts()
        .skip(start + 1)
        .filter(|l| !l.starts_with('['))
        .collect()
}

fn check_shell(t: &Transcript) {
    check(
        t,
        t.find(PROMPT).is_some(),
        "the shell did not show its prompt",
    );
    for cmd in [
        "vm_list",
        "vcpu_list",
        "int",
        "vmexit",
        "version",
        "help",
        "pt",
    ] {
        check(
            t,
            t.find(&format!("{PROMPT} {cmd}")).is_some(),
            &format!("the shell did not take `{cmd}`"),
        );
    }

    // The line typed is echoed as it is edited: what ran shows after the prompt.
    for cmd in ["vioapic 0", "version"] {
        let echo = format!("{PROMPT} {cmd}");
        let n = t.texts().filter(|l| *l == echo).count();
        check(
            t,
            n == 2,
            &format!("`{echo}` {n} times, expected 2 (typed, then recalled or edited)"),
        );
    }

    let help = output(t, "help");
    for name in [
        "help",
        "version",
        "vm_list",
        "vcpu_list",
        "vm_console",
        "dump_reg",
        "dumpmem",
        "vioapic",
        "pt",
        "int",
        "vmexit",
        "reboot",
    ] {
        check(
            t,
            help.iter()
                .any(|l| l.split_whitespace().next() == Some(name)),
            &format!("help does not list `{name}`"),
        );
    }

    let version = output(t, "version");
    check(
        t,
        version
            .first()
            .is_some_and(|l| l.starts_with("ACRN hypervisor (Rust)") && l.contains("4 pCPUs")),
        "version does not say what runs",
    );

    // Both VMs with id, name, state and load order (rogue may have been stopped already).
    let vms = output(t, "vm_list");
    let row = |id: &str| {
        vms.iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&id))
    };
    check(
        t,
        vms.first().is_some_and(|h| h.starts_with("VM_ID")),
        "vm_list has no heading",
    );
    check(
        t,
        row("0").is_some_and(|w| w[1..4] == ["PRE_VM0", "Running", "PRE_LAUNCHED_VM"]),
        "vm_list: VM 0 is not PRE_VM0, running, pre-launched",
    );
    check(
        t,
        row("1").is_some_and(|w| {
            w[1] == "PRE_VM1" && ["Running", "Stopped"].contains(&w[2]) && w[3] == "PRE_LAUNCHED_VM"
        }),
        "vm_list: VM 1 is not PRE_VM1, running or stopped, pre-launched",
    );

    // Every vCPU on the pCPU the scenario gave it.
    let vcpus: Vec<Vec<&str>> = output(t, "vcpu_list")
        .iter()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    for (vm, name, vcpu, pcpu) in [
        ("0", "PRE_VM0", "0", "0"),
        ("0", "PRE_VM0", "1", "1"),
        ("1", "PRE_VM1", "0", "2"),
        ("1", "PRE_VM1", "1", "3"),
    ] {
        check(
            t,
            vcpus
                .iter()
                .any(|w| w.len() >= 5 && w[..4] == [vm, name, vcpu, pcpu]),
            &format!("vcpu_list has no line for VM {vm} vCPU {vcpu} on pCPU {pcpu}"),
        );
    }

    // The boot pCPU's timer fired (it polls the console and runs PRE_VM0's vCPU 0).
    let ints = output(t, "int");
    check(
        t,
        ints.first()
            .is_some_and(|h| h.starts_with("VECTOR") && h.contains("CPU3")),
        "int has no heading with every pCPU",
    );
    check(
        t,
        ints.iter().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 6 && w[..2] == ["0xef", "timer"] && w[2].parse::<u64>().is_ok_and(|n| n > 0)
        }),
        "int shows no timer interrupts on pCPU 0",
    );

    // Each VM's exits by kind: PRE_VM0 printed through its console vUART's ports.
    let exits: Vec<Vec<&str>> = output(t, "vmexit")
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    check(
        t,
        exits.first().is_some_and(|h| {
            h[..]
                == [
                    "VM_ID",
                    "VM_NAME",
                    "io",
                    "mmio",
                    "lapic",
                    "msr",
                    "cpuid",
                    "hypercall",
                    "hlt",
                    "interrupt",
                    "other",
                ]
        }),
        "vmexit has no heading with every kind",
    );
    check(
        t,
        exits.iter().any(|w| {
            w.len() == 11
                && w[..2] == ["0", "PRE_VM0"]
                && w[2..].iter().all(|n| n.parse::<u64>().is_ok())
                && w[2].parse::<u64>().is_ok_and(|n| n > 0)
        }),
        "vmexit shows no port I/O exits of PRE_VM0",
    );

    // Guest memory through the VM's own tables: hello's multiboot header at 1 MiB; the range
    // past the VM's memory is refused.
    let mem = output(t, "dumpmem 0 0x100000 16");
    check(
        t,
        mem.first()
            .is_some_and(|l| l.starts_with("0x0000000000100000: 02 b0 ad 1b")),
        "dumpmem does not show hello's multiboot header at 0x100000",
    );
    let outside = output(t, "dumpmem 0 0xfffffff8 16");
    check(
        t,
        outside.len() == 1 && outside[0].starts_with("0xfffffff8: not memory of VM 0"),
        "dumpmem past the VM's memory was not refused",
    );

    // Registers taken by the vCPU's pCPU (they may come after the next command's output):
    // hello runs in long mode in its image at 1 MiB.
    let regs = after(t, "dump_reg 0 0");
    check(
        t,
        regs.iter()
            .any(|l| l.starts_with("VM 0 vCPU 0 registers (taken by its pCPU")),
        "dump_reg 0 0 got no answer",
    );
    check(
        t,
        regs.iter().any(|l| l.starts_with("RIP=0x00000000001")),
        "dump_reg: RIP is not in hello's image",
    );
    check(
        t,
        regs.iter().any(|l| l.starts_with("CR0=0x0000000080000")),
        "dump_reg: CR0 does not have paging on",
    );

    let pins = output(t, "vioapic 0");
    check(
        t,
        pins.first()
            .is_some_and(|l| l.ends_with("vIOAPIC with 48 pins"))
            && pins.len() == 50,
        "vioapic 0 does not list 48 pins",
    );
    check(
        t,
        output(t, "pt")
            .first()
            .is_some_and(|l| l.starts_with("no passthrough devices")),
        "pt does not say there are none",
    );
    check(
        t,
        output(t, "bogus_cmd 1") == ["unknown command `bogus_cmd`; `help` lists them"],
        "an unknown command is not refused with a message",
    );
    check(
        t,
        output(t, "vm_list 7") == ["usage: vm_list (no arguments)"],
        "extra arguments are not refused with the usage",
    );

    check(
        t,
        output(t, "vm_console 9") == ["no VM 9 (`vm_list` shows the VMs)"],
        "vm_console to a VM that does not exist was not refused",
    );

    // vm_console: the line reaches the guest (it echoes it with its prefix, at its own pace:
    // maybe after the escape), not the shell; Ctrl+Space gives the input back and the next
    // line is a shell command again.
    let attach = t.find(&format!("{PROMPT} vm_console 0"));
    let echoed = t.find("[PRE_VM0] echo: hello shell");
    let back = t.find("[hv] shell: console input back to the shell from VM 0 (Ctrl+Space)");
    let texts: Vec<&str> = t.texts().collect();
    let next = texts
        .iter()
        .rposition(|l| *l == format!("{PROMPT} vm_list"));
    check(
        t,
        t.find(&format!("{PROMPT} hello shell")).is_none(),
        "the line typed in vm_console reached the shell",
    );
    check(
        t,
        matches!((attach, echoed), (Some(a), Some(e)) if a < e),
        "the guest did not echo the line typed after vm_console 0",
    );
    check(
        t,
        matches!((attach, back, next), (Some(a), Some(b), Some(n)) if a < b && b < n),
        "Ctrl+Space did not give the input back to the shell for the next command",
    );
    check(
        t,
        !t.texts()
            .any(|l| l.starts_with("[hv] shell: console input back") && l.contains("dropped")),
        "bytes typed for the VM were dropped",
    );

    check(
        t,
        t.find("[hv] shell: resetting the machine").is_some(),
        "reboot did not reset",
    );
}

#[test]
fn qemu_shell_commands_and_vm_console() {
    require_tools(&["qemu-system-x86_64", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("qemu-shell");
    let (scenario, input) = prepare("qemu-epyc", &dir);
    let out = dir.join("image");
    let t = run(
        &RunSpec {
            board: "qemu-epyc",
            scenario: &scenario,
            out: &out,
            extra: vec![
                "--emulator".into(),
                "qemu".into(),
                "--console-input".into(),
                input,
            ],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(120),
        },
        complete,
    );
    eprintln!(
        "QEMU shell: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_shell(&t);
    // The script starts well after rogue's triple fault (within the first second).
    check(
        &t,
        output(&t, "vcpu_list").iter().any(|l| {
            l.split_whitespace().collect::<Vec<_>>() == ["1", "PRE_VM1", "0", "2", "Stopped"]
        }),
        "vcpu_list does not show PRE_VM1's vCPUs stopped",
    );
    // QEMU runs with -no-reboot: the reset ends it.
    check(
        &t,
        t.ended_by == "exited" && t.stderr.contains("run: qemu exited (status 0)"),
        "QEMU did not end at the machine reset",
    );
}

#[test]
fn bochs_shell_commands_and_vm_console() {
    require_tools(&["bochs", "grub-mkrescue", "xorriso"]);
    let dir = work_dir("bochs-shell");
    let (scenario, input) = prepare("bochs-tigerlake", &dir);
    let out = dir.join("image");
    let t = run(
        &RunSpec {
            board: "bochs-tigerlake",
            scenario: &scenario,
            out: &out,
            extra: vec![
                "--emulator".into(),
                "bochs".into(),
                "--console-input".into(),
                input,
            ],
            build_limit: Duration::from_secs(900),
            boot_limit: Duration::from_secs(300),
        },
        reset_seen,
    );
    eprintln!(
        "Bochs shell: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    check_shell(&t);
}
