//! Virtual PCI and hypervisor-backed IVSHMEM on both backends: configs/<board>/ivshmem.xml (two
//! pre-launched VMs, one 2 MB region `shm_0` at 00:08.0 in both) with tests/guests' `platform`
//! guest in `ivshmem` mode, PRE_VM0 the writer and PRE_VM1 the reader. Each finds the host
//! bridge and the device through 0xCF8/0xCFC, reads the same header through ECAM at the base
//! its MCFG names, sizes the BARs, enables MSI-X; the writer puts a 64 KiB pattern into BAR2 and
//! rings the reader's doorbell; the reader, woken by the vector, finds the pattern, moves BAR2
//! and BAR0 and finds the region and the registers at the new places (and nothing at the old
//! ones), acknowledges and rings back; then 100 doorbell round trips.

use acrn_system_tests::{
    check, check_prefixes, decided_by, hybrid_variant, ivshmem_region_xml, repo_root,
    run_platform_vms, run_qemu_variant_with, Transcript,
};

fn run_ivshmem(board: &str, emulator: &str, test: &str, limit: u64) -> Transcript {
    let scenario = repo_root()
        .join(format!("configs/{board}/ivshmem.xml"))
        .display()
        .to_string();
    run_platform_vms(
        test,
        board,
        emulator,
        &scenario,
        &["PRE_VM0", "PRE_VM1"],
        limit,
    )
}

fn has(t: &Transcript, line: &str) -> usize {
    let i = t.find(line);
    check(t, i.is_some(), &format!("no `{line}` line"));
    i.unwrap_or_default()
}

fn check_ivshmem(t: &Transcript) {
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
    check(
        t,
        !t.texts()
            .any(|l| l.contains("<IVSHMEM_REGION> is not enforced yet")),
        "the hypervisor still says IVSHMEM is not enforced",
    );
    for (id, vm) in ["PRE_VM0", "PRE_VM1"].iter().enumerate() {
        for line in [
            "ivshmem: 00:00.0 8086:5af0 class 060000".to_string(),
            "ivshmem: 00:08.0 1af4:1110 revision 1 class 050000; ECAM at 0xe0000000".into(),
            "ivshmem: ECAM header matches the ports: true; empty slot reads all-ones: true".into(),
            "ivshmem: BAR0 0x80000000 size 0x100, BAR1 0x80001000 size 0x1000, BAR2 0x4000000000 size 0x200000 flags 0xc".into(),
            "ivshmem: MSI-X 8 vectors, table in BAR1 at 0x0".into(),
            format!("ivshmem: IVPosition {id} (read-only: true)"),
            format!("ivshmem: peer {} ready: true", 1 - id),
            "ivshmem: stray device vectors: 0".into(),
            "verdict: PASS".into(),
        ] {
            has(t, &format!("[{vm}] {line}"));
        }
    }
    let written = has(
        t,
        "[PRE_VM0] ivshmem: pattern of 65536 bytes written; ringing peer 1 vector 1",
    );
    let seen = has(
        t,
        "[PRE_VM1] ivshmem: woken by vector 1: true; pattern of 65536 bytes: 0 word(s) differ",
    );
    check(
        t,
        written < seen,
        "the reader saw the pattern before it was written",
    );
    has(t, "[PRE_VM1] ivshmem: BAR2 moved to 0xd0000000: 0 word(s) differ; BAR0 moved to 0xd8000000: IVPosition 1; old BAR0 reads 0xffffffff, old BAR2 reads 0xffffffffffffffff");
    has(t, "[PRE_VM1] ivshmem: BARs moved back: 0 word(s) differ");
    has(
        t,
        "[PRE_VM0] ivshmem: woken by the peer: true; acknowledgement: true",
    );
    has(t, "[PRE_VM1] ivshmem: answered 100/100 doorbells");
    let rt = t
        .texts()
        .find(|l| l.starts_with("[PRE_VM0] ivshmem: doorbell round trips 100/100, average "));
    check(
        t,
        rt.is_some(),
        "the writer did not finish its 100 round trips",
    );
    if let Some(l) = rt {
        eprintln!("{l}");
    }
    has(t, "[hv] every VM has stopped; powering off");
}

#[test]
fn qemu_epyc_ivshmem_pattern_and_doorbells_between_two_vms() {
    let t = run_ivshmem("qemu-epyc", "qemu", "qemu-ivshmem", 120);
    check_ivshmem(&t);
}

#[test]
fn bochs_tigerlake_ivshmem_pattern_and_doorbells_between_two_vms() {
    let t = run_ivshmem("bochs-tigerlake", "bochs", "bochs-ivshmem", 600);
    check_ivshmem(&t);
}

/// A region shared by a pre-launched VM and a post-launched one, as ACRN's hybrid scenarios
/// do: configs/qemu-epyc/hybrid.xml with `shm_0` in PRE_VM0 and POST_VM1 (00:08.0 in both).
/// The hypervisor builds PRE_VM0's device from the scenario; the reference Service VM reads
/// POST_VM1's from the launch description and asks for it with HC_ADD_VDEV (region name,
/// BDF and BARs as acrn-dm gives them for `ivshmem,hv:/shm_0`). POST_VM1's bus is otherwise
/// the Service VM's (no host bridge, no ECAM: `nohost`), so its configuration accesses to
/// 00:08.0 are the hypervisor's and every other one goes to the Service VM. PRE_VM0 writes,
/// POST_VM1 reads, moves the BARs through the ports, and both ring each other 100 times.
#[test]
fn qemu_epyc_ivshmem_between_a_pre_and_a_post_launched_vm() {
    let region = ivshmem_region_xml(
        "shm_0",
        &[("PRE_VM0", Some("00:08.0")), ("POST_VM1", Some("00:08.0"))],
    );
    let edit = |text: &str| {
        hybrid_variant(
            text,
            "<IVSHMEM/>",
            &region,
            "ivshmem role=writer peer=2",
            "once guestargs=ivshmem,role=reader,peer=0,nohost",
        )
    };
    let t = run_qemu_variant_with(
        "qemu-ivshmem-post",
        "hybrid.xml",
        edit,
        &[("PRE_VM0", "platform"), ("POST_VM1", "platform")],
        240,
        decided_by(&["[SERVICE_VM] verdict:"]),
    );
    check_enforced(&t);
    let post = "[SERVICE_VM] [POST_VM1]";
    check_prefixes(
        &t,
        &[
            "[SERVICE_VM] svm: VM 1 POST_VM1: added ivshmem:shm_0@00:08.0@".to_string(),
            "[hv] VM 2 POST_VM1: IVSHMEM device at 00:08.0 (HC_ADD_VDEV)".into(),
            "[PRE_VM0] ivshmem: IVPosition 0 (read-only: true)".into(),
            "[PRE_VM0] ivshmem: peer 2 ready: true".into(),
            "[PRE_VM0] ivshmem: pattern of 65536 bytes written; ringing peer 2 vector 1".into(),
            "[PRE_VM0] ivshmem: woken by the peer: true; acknowledgement: true".into(),
            "[PRE_VM0] ivshmem: doorbell round trips 100/100, average ".into(),
            "[PRE_VM0] verdict: PASS".into(),
            format!("{post} ivshmem: 00:08.0 1af4:1110 revision 1 class 050000; ECAM at 0x0"),
            format!("{post} ivshmem: IVPosition 2 (read-only: true)"),
            format!("{post} ivshmem: peer 0 ready: true"),
            format!(
                "{post} ivshmem: woken by vector 1: true; pattern of 65536 bytes: 0 word(s) differ"
            ),
            format!("{post} ivshmem: BARs moved back: 0 word(s) differ"),
            format!("{post} ivshmem: answered 100/100 doorbells"),
            format!("{post} ivshmem: stray device vectors: 0"),
            format!("{post} verdict: PASS"),
            "[SERVICE_VM] verdict: PASS".into(),
        ],
    );
}

/// Neither the boot log nor `build` calls the region unenforced, and the hypervisor lived.
fn check_enforced(t: &Transcript) {
    check(
        t,
        !t.texts()
            .any(|l| l.contains("<IVSHMEM_REGION> is not enforced yet")),
        "the hypervisor still says IVSHMEM is not enforced",
    );
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
}

/// A region shared by a pre-launched VM and the Service VM: configs/qemu-epyc/hybrid.xml with
/// `shm_0` in PRE_VM0 and SERVICE_VM, the `platform` guest as both kernels. The Service VM's
/// bus is the hardware's with the IVSHMEM device at the BDF and BARs the allocator gave it
/// (a device number no physical function uses, BARs in the host bridge's windows); it finds
/// the device among the physical functions, through the ports and through the host's ECAM
/// window alike (the BAR moves go through ECAM; `hwbus`: slot 31 and the old BAR addresses
/// are the hardware's, where the region must no longer show), and reads what PRE_VM0 wrote.
#[test]
fn qemu_epyc_ivshmem_between_a_pre_launched_vm_and_the_service_vm() {
    let region = ivshmem_region_xml(
        "shm_0",
        &[("PRE_VM0", Some("00:08.0")), ("SERVICE_VM", None)],
    );
    let edit = |text: &str| {
        hybrid_variant(
            text,
            "<IVSHMEM/>",
            &region,
            "ivshmem role=writer peer=1",
            "ivshmem role=reader peer=0 hwbus",
        )
    };
    let t = run_qemu_variant_with(
        "qemu-ivshmem-service",
        "hybrid.xml",
        edit,
        &[("PRE_VM0", "platform"), ("SERVICE_VM", "platform")],
        240,
        decided_by(&["[SERVICE_VM] verdict:", "[PRE_VM0] verdict:"]),
    );
    check_enforced(&t);
    check_prefixes(
        &t,
        &[
            "[PRE_VM0] ivshmem: peer 1 ready: true",
            "[PRE_VM0] ivshmem: woken by the peer: true; acknowledgement: true",
            "[PRE_VM0] ivshmem: doorbell round trips 100/100, average ",
            "[PRE_VM0] verdict: PASS",
            "[SERVICE_VM] ivshmem: ECAM header matches the ports: true;",
            "[SERVICE_VM] ivshmem: IVPosition 1 (read-only: true)",
            "[SERVICE_VM] ivshmem: woken by vector 1: true; pattern of 65536 bytes: 0 word(s) differ",
            "[SERVICE_VM] ivshmem: BARs moved back: 0 word(s) differ",
            "[SERVICE_VM] ivshmem: answered 100/100 doorbells",
            "[SERVICE_VM] ivshmem: stray device vectors: 0",
            "[SERVICE_VM] verdict: PASS",
        ],
    );
}
