//! The board inspector's parsers of sysfs/procfs text and PCI configuration space
//! (`inspect::pci`, `inspect::text`) over raw bytes: PCI capability lists (loops and bad
//! pointers), `resource` files, PCI addresses, CPU lists, /proc/iomem, /proc/meminfo,
//! /proc/interrupts, the IOAPIC lines of the kernel log and input devices. What must hold:
//! nothing panics; a capability walk ends (at most 48 capabilities in 256 bytes); a resource
//! file gives at most 6 BARs; every count is bounded by the input.
#![no_main]

use acrn_configurator::inspect::{pci, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let s = String::from_utf8_lossy(rest);
    let lines = s.lines().count();
    match which % 9 {
        0 => {
            let caps = pci::parse_capabilities(rest);
            assert!(caps.len() <= 48, "{} capabilities", caps.len());
            for c in &caps {
                let _ = c.name();
            }
        }
        1 => {
            let bars = pci::parse_resource(&s);
            assert!(bars.len() <= 6, "{} BARs", bars.len());
            for b in &bars {
                let _ = b.size();
            }
        }
        2 => {
            let _ = pci::parse_address(&s);
            let _ = pci::class_name(u32::from_le_bytes(
                rest.get(..4).map_or([0; 4], |b| b.try_into().unwrap()),
            ));
        }
        3 => {
            if let Some(cpus) = text::parse_cpu_list(&s) {
                // A range names at most 65537 CPUs; each takes at least 2 bytes with its comma.
                let parts = s.len() / 2 + 1;
                assert!(
                    cpus.len() <= 65537 * parts,
                    "{} CPUs from {} bytes",
                    cpus.len(),
                    s.len()
                );
            }
        }
        4 => {
            let tree = text::parse_resource_tree(&s);
            assert!(
                tree.len() <= lines,
                "{} resources in {lines} lines",
                tree.len()
            );
            let _ = text::addresses_hidden(&tree);
        }
        5 => {
            let _ = text::mem_total_kb(&s);
        }
        6 => {
            let used = text::used_irqs(&s);
            assert!(used.len() <= lines, "{} IRQs in {lines} lines", used.len());
            let _ = text::available_irqs(&used);
        }
        7 => {
            let ranges = text::ioapic_gsi_ranges(&s);
            assert!(
                ranges.len() <= lines,
                "{} IOAPICs in {lines} lines",
                ranges.len()
            );
            let _ = text::input_devices(&s);
        }
        _ => {
            let _ = text::ext_type(rest);
        }
    }
});
