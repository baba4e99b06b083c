//! VM-to-VM vUART over a legacy `vuart_connection` (configs/<board>/vuart.xml: PRE_VM0 and
//! PRE_VM1 joined at COM2, port 0x2F8, which the allocator gives IRQ 3), on both backends,
//! with the `platform` test guest's `vuart` mode in both VMs: PRE_VM0 streams pseudo-random
//! bytes from its THR-empty interrupt through the 16-byte FIFO, PRE_VM1 reads them more slowly
//! (woken by its receive interrupt, byte by byte with a delay) and checks each against the
//! same sequence. The receiver's buffer (VUART_RX_BUF_SIZE, 256 by default) is far smaller
//! than the stream, so the sender must be held back: every byte arrives, in order, once,
//! without an overrun, and both ends agree on the checksum. Each end prints its throughput in
//! bytes per second of guest TSC time (the test prints both).
//!
//! The same over a PCI `vuart_connection` (configs/<board>/pci-vuart.xml): both VMs find
//! ACRN's PCI vUART (MCS9900 9710:9900, subsystem a000:1000) at the vBDF the configurator
//! allocated, check its header and BAR sizes, and run the same stream through its BAR0
//! register window with its MSI-X vector as the interrupt.
//!
//! And a PCI console: the legacy link again, with both VMs' `console_vuart` made `PCI`; the
//! guests move their console to that function, so every line the test checks came through
//! the PCI console's register window to the physical console with the VM's prefix.

use std::path::Path;

use acrn_system_tests::{
    check, check_prefixes, decided_by, hybrid_variant, pci_vuart_link_xml, repo_root,
    run_platform_vms, run_qemu_variant_with, target_dir, Transcript,
};

/// A copy of configs/`board`/`file` with the guest's mode appended to each VM's bootargs
/// (and with PCI consoles if `pci_console`).
fn scenario(
    board: &str,
    file: &str,
    pci_console: bool,
    name: &str,
    args: [&str; 2],
    dir: &Path,
) -> String {
    let src = repo_root().join(format!("configs/{board}/{file}"));
    let mut text = std::fs::read_to_string(&src).expect("read scenario");
    if pci_console {
        let com1 = "<console_vuart>COM Port 1</console_vuart>";
        assert_eq!(text.matches(com1).count(), 2, "{} consoles", src.display());
        text = text.replace(com1, "<console_vuart>PCI</console_vuart>");
    }
    let from = "<bootargs>console=ttyS0</bootargs>";
    assert_eq!(
        text.matches(from).count(),
        2,
        "{} no longer has two `{from}`",
        src.display()
    );
    for a in args {
        text = text.replacen(from, &format!("<bootargs>console=ttyS0 {a}</bootargs>"), 1);
    }
    std::fs::create_dir_all(dir).expect("create work dir");
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, text).expect("write scenario variant");
    path.display().to_string()
}

/// How the guests reach their end of the link.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// configs/<board>/vuart.xml: COM2.
    Legacy,
    /// configs/<board>/pci-vuart.xml: the PCI vUART on bus 0.
    Pci,
    /// configs/<board>/vuart.xml with PCI consoles.
    LegacyPciConsole,
}

fn run_link(
    board: &str,
    kind: Kind,
    emulator: &str,
    test: &str,
    bytes: u64,
    limit: u64,
) -> Transcript {
    let dir = acrn_system_tests::work_dir(test);
    let (file, link, console) = match kind {
        Kind::Legacy => ("vuart.xml", "port=0x2f8 irq=3", ""),
        Kind::Pci => ("pci-vuart.xml", "pci", ""),
        Kind::LegacyPciConsole => ("vuart.xml", "port=0x2f8 irq=3", "pci_console "),
    };
    let scenario = scenario(
        board,
        file,
        kind == Kind::LegacyPciConsole,
        test,
        [
            &format!("{console}vuart role=send {link} bytes={bytes}"),
            &format!("{console}vuart role=recv {link} bytes={bytes}"),
        ],
        &dir,
    );
    run_platform_vms(
        test,
        board,
        emulator,
        &scenario,
        &["PRE_VM0", "PRE_VM1"],
        limit,
    )
}

/// The text after `prefix` on the first line that starts with it.
fn after<'a>(t: &'a Transcript, prefix: &str) -> &'a str {
    let line = t.texts().find(|l| l.starts_with(prefix));
    check(
        t,
        line.is_some(),
        &format!("no line starting with `{prefix}`"),
    );
    &line.unwrap_or_default()[prefix.len()..]
}

/// The word after `key=` in `text`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split([' ', ';', ':'])
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn check_link(t: &Transcript, bytes: u64) {
    check(
        t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
    check(
        t,
        !t.texts()
            .any(|l| l.contains("<vuart_connection> is not enforced")),
        "the hypervisor still calls the vuart_connection unenforced",
    );
    check(
        t,
        t.find("[PRE_VM0] vuart: peer ready (DSR and CTS up)")
            .is_some(),
        "the sender did not see the receiver's DTR and RTS",
    );
    let sent = after(t, "[PRE_VM0] vuart: sent ");
    let received = after(t, "[PRE_VM1] vuart: received ");
    let count = |s: &str| s.split(' ').next().and_then(|n| n.parse::<u64>().ok());
    check(
        t,
        count(sent) == Some(bytes),
        "the sender did not send the stream",
    );
    check(
        t,
        count(received) == Some(bytes),
        "the receiver did not get the stream",
    );
    check(
        t,
        field(sent, "fnv").is_some() && field(sent, "fnv") == field(received, "fnv"),
        "the two ends disagree on the checksum",
    );
    let status = after(t, "[PRE_VM1] vuart: mismatches=");
    check(
        t,
        status.starts_with("0 first_mismatch=-1 overruns=0 extra=false"),
        "bytes lost, reordered, duplicated or overrun",
    );
    // The 256-byte receive buffer filled and held the sender back.
    let held = after(t, "[PRE_VM0] vuart: thre interrupts ");
    let held_back = held
        .split("held back in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    check(
        t,
        held_back.is_some_and(|n| n > 0),
        "the sender was never held back by the full receiver",
    );
    check(
        t,
        t.find("[PRE_VM0] verdict: PASS").is_some() && t.find("[PRE_VM1] verdict: PASS").is_some(),
        "a guest's verdict is not PASS",
    );
    for l in t.lines.iter().filter(|l| {
        l.text.contains("vuart:") || l.text.contains(" exits: ") || l.text.contains(" stopped:")
    }) {
        eprintln!("{:7.1}s {}", l.at, l.text);
    }
    eprintln!("throughput: sender {}", sent);
    eprintln!("throughput: receiver {}", received);
    eprintln!("sender: {}", held);
}

/// Both ends found the PCI vUART with ACRN's IDs at the allocated vBDF (00:10.0), 4 KiB
/// BARs and one MSI-X vector in BAR1 (the guest's own checks, part of its verdict).
fn check_pci_function(t: &Transcript) {
    for vm in ["PRE_VM0", "PRE_VM1"] {
        let line = after(t, &format!("[{vm}] vuart: pci "));
        check(
            t,
            line.starts_with(
                "00:10.0 9710:9900 subsystem a000:1000 class 070002 BAR0 0x80000000 size 0x1000 \
                 BAR1 0x80001000 size 0x1000 msix vectors 1",
            ),
            &format!("{vm}'s PCI vUART is not as allocated: {line}"),
        );
    }
}

#[test]
fn qemu_epyc_legacy_vuart_link_carries_a_stream_with_back_pressure() {
    let bytes = 65536;
    let t = run_link("qemu-epyc", Kind::Legacy, "qemu", "qemu-vuart", bytes, 150);
    check_link(&t, bytes);
}

#[test]
fn bochs_tigerlake_legacy_vuart_link_carries_a_stream_with_back_pressure() {
    let bytes = 16384;
    let t = run_link(
        "bochs-tigerlake",
        Kind::Legacy,
        "bochs",
        "bochs-vuart",
        bytes,
        600,
    );
    check_link(&t, bytes);
}

#[test]
fn qemu_epyc_pci_vuart_link_carries_a_stream_with_back_pressure() {
    let bytes = 65536;
    let t = run_link("qemu-epyc", Kind::Pci, "qemu", "qemu-pci-vuart", bytes, 150);
    check_pci_function(&t);
    check_link(&t, bytes);
}

#[test]
fn bochs_tigerlake_pci_vuart_link_carries_a_stream_with_back_pressure() {
    let bytes = 16384;
    let t = run_link(
        "bochs-tigerlake",
        Kind::Pci,
        "bochs",
        "bochs-pci-vuart",
        bytes,
        600,
    );
    check_pci_function(&t);
    check_link(&t, bytes);
}

#[test]
fn qemu_epyc_pci_console_carries_the_guests_output() {
    let bytes = 4096;
    let t = run_link(
        "qemu-epyc",
        Kind::LegacyPciConsole,
        "qemu",
        "qemu-pci-console",
        bytes,
        150,
    );
    check(
        &t,
        !t.texts()
            .any(|l| l.contains("<console_vuart> is not enforced")),
        "the hypervisor still calls the PCI console unenforced",
    );
    for vm in ["PRE_VM0", "PRE_VM1"] {
        check(
            &t,
            t.find_prefix(&format!("[{vm}] platform: console on the PCI vUART at 00:"))
                .is_some(),
            &format!("{vm} did not move its console to the PCI vUART"),
        );
    }
    check_link(&t, bytes);
}

/// A PCI link between a pre-launched VM and a post-launched one: configs/qemu-epyc/hybrid.xml
/// with a PCI `vuart_connection` between PRE_VM0 and POST_VM1. PRE_VM0's end is on its vPCI
/// from the scenario; the reference Service VM asks for POST_VM1's with HC_ADD_VDEV (ACRN's
/// vUART index 1, the first connection, at the allocator's BDF and BARs, as acrn-dm does for
/// the launch script's `uart,vuart_idx:1`), and the
/// stream runs from PRE_VM0 to POST_VM1 with back-pressure.
#[test]
fn qemu_epyc_pci_vuart_link_between_a_pre_and_a_post_launched_vm() {
    let post = "[SERVICE_VM] [POST_VM1]";
    let t = run_hybrid_link(
        "qemu-pci-vuart-post",
        "POST_VM1",
        "once guestargs=vuart,role=recv,pci,bytes=16384",
        &[("PRE_VM0", "platform"), ("POST_VM1", "platform")],
        &["[SERVICE_VM] verdict:"],
    );
    check_hybrid_link(&t, post);
    check_prefixes(
        &t,
        &[
            "[SERVICE_VM] svm: VM 1 POST_VM1: added vuart:1@",
            "[hv] VM 2 POST_VM1: PCI vUART at ",
            "[SERVICE_VM] verdict: PASS",
        ],
    );
}

/// The same link with the Service VM as the other end: its bus is the hardware's, with the
/// PCI vUART at the BDF and BARs the allocator gave it; the `platform` guest is its kernel.
/// Its console is a PCI vUART too (`console_vuart` PCI), another function on that bus, which
/// carries the Service VM's lines from the moment the guest moves its console there. The
/// allocator puts it in the first slot the board leaves free, 00:03.0.
#[test]
fn qemu_epyc_pci_vuart_link_between_a_pre_launched_vm_and_the_service_vm() {
    let test = "qemu-pci-vuart-service";
    let t = run_hybrid_link(
        test,
        "SERVICE_VM",
        "pci_console pci_console_dev=3 vuart role=recv pci bytes=16384",
        &[("PRE_VM0", "platform"), ("SERVICE_VM", "platform")],
        &["[SERVICE_VM] verdict:", "[PRE_VM0] verdict:"],
    );
    let tables = target_dir()
        .join("system-tests")
        .join(test)
        .join("image/gen/vm_tables.rs");
    let tables = std::fs::read_to_string(&tables).expect("the generated tables");
    check(
        &t,
        tables.contains("console: ConsoleVuart::Pci { vbdf: Bdf::new(0, 0x3, 0)"),
        "the allocator did not put the Service VM's PCI console at 00:03.0",
    );
    check_hybrid_link(&t, "[SERVICE_VM]");
    check(
        &t,
        t.find_prefix("[SERVICE_VM] platform: console on the PCI vUART at 00:03.0")
            .is_some(),
        "the Service VM did not move its console to its PCI vUART",
    );
    check(
        &t,
        !t.texts()
            .any(|l| l.contains("<console_vuart> is not enforced")),
        "the PCI console is still called unenforced",
    );
}

/// configs/qemu-epyc/hybrid.xml with a PCI link from PRE_VM0 (sending 16 KiB) to `peer`.
fn run_hybrid_link(
    test: &str,
    peer: &str,
    service_args: &str,
    kernels: &[(&str, &str)],
    verdicts: &[&str],
) -> Transcript {
    let link = pci_vuart_link_xml("PRE_VM0", peer);
    let edit = |text: &str| {
        let text = if service_args.contains("pci_console") {
            service_vm_pci_console(text)
        } else {
            text.to_string()
        };
        hybrid_variant(
            &text,
            "<vuart_connections></vuart_connections>",
            &link,
            "vuart role=send pci bytes=16384",
            service_args,
        )
    };
    run_qemu_variant_with(test, "hybrid.xml", edit, kernels, 240, decided_by(verdicts))
}

/// hybrid.xml with the Service VM's (the second VM's) console made a PCI vUART.
fn service_vm_pci_console(text: &str) -> String {
    let com1 = "<console_vuart>COM Port 1</console_vuart>";
    let (at, _) = text
        .match_indices(com1)
        .nth(1)
        .expect("hybrid.xml's Service VM console");
    format!(
        "{}<console_vuart>PCI</console_vuart>{}",
        &text[..at],
        &text[at + com1.len()..]
    )
}

/// The 16 KiB stream from PRE_VM0 reached the end whose lines start with `receiver`, whole
/// and in order, and the link is enforced.
fn check_hybrid_link(t: &Transcript, receiver: &str) {
    check(
        t,
        !t.texts()
            .any(|l| l.contains("<vuart_connection> is not enforced")),
        "the hypervisor still calls the vuart_connection unenforced",
    );
    check_prefixes(
        t,
        &[
            format!("{receiver} vuart: pci 00:"),
            "[PRE_VM0] vuart: peer ready (DSR and CTS up)".into(),
            "[PRE_VM0] vuart: sent 16384 ".into(),
            format!("{receiver} vuart: received 16384 "),
            format!("{receiver} vuart: mismatches=0 first_mismatch=-1 overruns=0 extra=false"),
            "[PRE_VM0] verdict: PASS".into(),
            format!("{receiver} verdict: PASS"),
        ],
    );
    let received = format!("{receiver} vuart: received ");
    let fnv = |prefix: &str| field(after(t, prefix), "fnv").map(str::to_owned);
    check(
        t,
        fnv("[PRE_VM0] vuart: sent ").is_some() && fnv("[PRE_VM0] vuart: sent ") == fnv(&received),
        "the two ends disagree on the checksum",
    );
    eprintln!("throughput: sender {}", after(t, "[PRE_VM0] vuart: sent "));
    eprintln!("throughput: receiver {}", after(t, &received));
}

/// A post-launched VM's PCI console: configs/qemu-epyc/hybrid.xml with POST_VM1's
/// `console_vuart` made PCI. The reference Service VM adds it with HC_ADD_VDEV as acrn-dm does
/// for the launch script's `uart,vuart_idx:0` (ACRN's vUART 0 is the console), and the guest's
/// output leaves through the hypervisor's console with its VM's prefix.
#[test]
fn qemu_epyc_post_launched_vm_gets_its_pci_console() {
    let com1 = "<console_vuart>COM Port 1</console_vuart>";
    let edit = |text: &str| {
        assert_eq!(text.matches(com1).count(), 3, "hybrid.xml's consoles");
        // POST_VM1 is the last VM.
        let at = text.rfind(com1).unwrap();
        let text = format!(
            "{}<console_vuart>PCI</console_vuart>{}",
            &text[..at],
            &text[at + com1.len()..]
        );
        let none = "<vuart_connections></vuart_connections>";
        hybrid_variant(
            &text,
            none,
            none,
            "timer",
            "once guestargs=pci_console,timer",
        )
    };
    let t = run_qemu_variant_with(
        "qemu-post-pci-console",
        "hybrid.xml",
        edit,
        &[("PRE_VM0", "platform"), ("POST_VM1", "platform")],
        240,
        decided_by(&["[POST_VM1] verdict:"]),
    );
    check_prefixes(
        &t,
        &[
            "[SERVICE_VM] svm: VM 1 POST_VM1: added vuart:0@",
            "[hv] VM 2 POST_VM1: PCI vUART at ",
            "[POST_VM1] platform: console on the PCI vUART at 00:",
            "[POST_VM1] verdict: PASS",
        ],
    );
}
