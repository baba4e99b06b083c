//! INTx remapping for the Service VM in QEMU TCG: the reference Service VM (`intx` on its
//! command line) programs the vIOAPIC pins of the PCI GSIs, makes the e1000e NIC of every q35
//! machine raise its INTx line, and counts the interrupts it takes. They reach it only if the
//! hypervisor remapped the physical IOAPIC pin to a vector of its own, asserted the vIOAPIC
//! pin on its arrival, kept a level pin masked until the guest's EOI, and followed the
//! guest's masking and trigger mode. Then the NIC's MSI: the Service VM programs its own
//! message (and reads it back), the hypervisor gives the hardware a vector of its own and
//! delivers the Service VM's message on each interrupt. Then its MSI-X: the Service VM
//! programs the table in the NIC's BAR, the hypervisor keeps that table virtual and gives the
//! hardware's entries vectors of its own; each queue's interrupt arrives on its entry's
//! vector, and a masked entry holds its interrupt in the hardware's pending bits. In between,
//! the same configuration space through the host's ECAM window (its MCFG, its e820): the
//! MSI capability as virtual as through the ports, the PCIe extended space the hardware's.

use acrn_system_tests::{check, run_qemu_variant, Transcript};

fn decided(t: &Transcript) -> bool {
    let has = |p: &str| t.find_prefix(p).is_some();
    has("[hv] PANIC")
        || has("[hv] FATAL")
        || has("[SERVICE_VM] verdict:")
        || t.texts().any(|l| l.contains("SERVICE_VM stopped"))
}

#[test]
fn qemu_epyc_service_vm_takes_its_device_interrupts_through_the_vioapic() {
    let from = "<bootargs>console=ttyS0</bootargs>";
    let t = run_qemu_variant(
        "qemu-ptirq",
        "shared.xml",
        |text| {
            assert!(text.contains(from), "shared.xml has no `{from}`");
            text.replacen(from, "<bootargs>console=ttyS0 intx</bootargs>", 1)
        },
        120,
        decided,
    );
    eprintln!(
        "QEMU ptirq: {} lines, ended by {} after {:.1}s",
        t.lines.len(),
        t.ended_by,
        t.seconds
    );
    let level = t
        .texts()
        .find(|l| l.starts_with("[SERVICE_VM] svm: intx: 3 level interrupts on GSI "));
    check(
        &t,
        level.is_some(),
        "the Service VM did not take 3 level-triggered e1000e interrupts on one GSI",
    );
    check(
        &t,
        t.find("[SERVICE_VM] e820: 0xb0000000-0xc0000000 type 2")
            .is_some(),
        "the Service VM's e820 does not reserve the host's ECAM window",
    );
    for line in [
        "[SERVICE_VM] svm: intx: masked entry held the interrupt; unmasking delivered it",
        "[SERVICE_VM] svm: intx: edge-triggered interrupt delivered",
        "[SERVICE_VM] svm: intx: MSI 3 of 3 on vector 0x47 (vectors seen 0b10000000); reads back its message: true; MSI-X listed: true",
        "[SERVICE_VM] svm: ecam: buses 0-255 at 0xb0000000; 00:02.0 0x10d38086 (ports agree: true), MSI data 0x47, extended space: true; data written: ports read 0x46, MSI on 0x46: true",
        "[SERVICE_VM] svm: intx: MSI-X 5 entries; entry 1 (TxQ0) 3 of 3 on vector 0x41, entry 3 (RxQ0) 3 of 3 on vector 0x43; reads back its data: true",
        "[SERVICE_VM] svm: intx: MSI-X entry 3 masked: arrived false, pending bit 1; unmasked: delivered true",
        "[SERVICE_VM] verdict: PASS",
    ] {
        check(&t, t.find(line).is_some(), &format!("no `{line}` line"));
    }
    check(
        &t,
        t.find_prefix("[hv] PANIC").is_none() && t.find_prefix("[hv] FATAL").is_none(),
        "the hypervisor failed",
    );
}
