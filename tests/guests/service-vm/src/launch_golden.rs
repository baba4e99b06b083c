//! The launch description is read with the shared `acrn-launch` crate (launch/ at the repository
//! root), which `acrn-configurator` writes it with. This checks that the configurator's golden
//! output (its own test keeps the file current) parses to what the Service VM expects.

use acrn_launch::{KernelType, LaunchDescription};

const GOLDEN: &str = include_str!("../testdata/qemu-epyc-shared.launch");

#[test]
fn reads_the_configurators_output() {
    let l = LaunchDescription::parse_bytes(GOLDEN.as_bytes()).unwrap();
    assert_eq!(l.service_vm_id, 0);
    assert_eq!(l.vms.len(), 2);
    let v = &l.vms[0];
    assert_eq!(
        (v.id, v.name.as_str(), v.memory_mb, v.pcpus),
        (1, "POST_VM1", 256, 4)
    );
    assert_eq!(v.kernel_mod, "POST_VM1_kernel");
    assert_eq!(v.kernel_type, KernelType::Elf);
    assert_eq!(v.bootargs, "console=ttyS0");
    assert_eq!(v.console_port, Some(0x3F8));
    assert_eq!(l.vms[1].pcpus, 8);
}
