//! `acrn-launch`, both ways. Text: whatever parses renders to a text that parses to the same
//! description (and renders identically again). Structure: a description built from arbitrary
//! fields renders to a text that parses back equal when every field is valid (writer and
//! reader never drift), and that never parses back as itself when a field is invalid (the
//! reader accepts nothing the format forbids; the configurator checks before it renders).
#![no_main]

use acrn_launch::{
    valid_bootargs, valid_name, valid_region_name, valid_tag, KernelType, LaunchDescription,
    LaunchVdev, LaunchVm, PciAddr, VdevKind, MAX_MEMORY_MB, MAX_PCI_DEVS, MAX_TEXT, MAX_VDEVS,
    MAX_VMS,
};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Text(&'a [u8]),
    Fields(u16, Vec<VmFields>),
}

#[derive(Debug, Arbitrary)]
struct VmFields {
    id: u16,
    name: String,
    memory_mb: u32,
    pcpus: u64,
    kernel_mod: String,
    kernel_type: u8,
    bootargs: String,
    console_port: Option<u16>,
    pci_devs: Vec<(u8, u8, u8)>,
    vdevs: Vec<VdevFields>,
}

#[derive(Debug, Arbitrary)]
struct VdevFields {
    /// An IVSHMEM region name, else a vUART index.
    ivshmem: Option<String>,
    index: u32,
    bdf: (u8, u8, u8),
    bars: Vec<u64>,
}

fuzz_target!(|input: Input| match input {
    Input::Text(bytes) => text_round_trip(bytes),
    Input::Fields(service_vm_id, vms) => fields_round_trip(service_vm_id, vms),
});

fn text_round_trip(bytes: &[u8]) {
    let Ok(d) = LaunchDescription::parse_bytes(bytes) else {
        return;
    };
    assert!(d.vms.len() <= MAX_VMS);
    let text = d.render();
    assert_eq!(LaunchDescription::parse(&text).as_ref(), Ok(&d), "{text}");
    assert_eq!(
        LaunchDescription::parse(&text).map(|again| again.render()),
        Ok(text)
    );
}

fn fields_round_trip(service_vm_id: u16, vms: Vec<VmFields>) {
    let vms: Vec<LaunchVm> = vms
        .into_iter()
        .map(|v| LaunchVm {
            id: v.id,
            name: v.name,
            memory_mb: v.memory_mb,
            pcpus: v.pcpus,
            kernel_mod: v.kernel_mod,
            kernel_type: [KernelType::Elf, KernelType::RawImage, KernelType::BzImage]
                [v.kernel_type as usize % 3],
            bootargs: v.bootargs,
            console_port: v.console_port,
            pci_devs: v
                .pci_devs
                .iter()
                .map(|&(bus, dev, func)| PciAddr { bus, dev, func })
                .collect(),
            vdevs: v
                .vdevs
                .into_iter()
                .map(|d| LaunchVdev {
                    kind: match d.ivshmem {
                        Some(name) => VdevKind::Ivshmem(name),
                        None => VdevKind::Vuart(d.index),
                    },
                    bdf: PciAddr {
                        bus: d.bdf.0,
                        dev: d.bdf.1,
                        func: d.bdf.2,
                    },
                    bars: d.bars,
                })
                .collect(),
        })
        .collect();
    let d = LaunchDescription { service_vm_id, vms };
    let text = d.render();
    let valid = service_vm_id != u16::MAX
        && d.vms.len() <= MAX_VMS
        && text.len() <= MAX_TEXT
        && d.vms.iter().enumerate().all(|(i, v)| {
            v.id != u16::MAX
                && v.id != service_vm_id
                && valid_name(&v.name)
                && (1..=MAX_MEMORY_MB).contains(&v.memory_mb)
                && v.pcpus != 0
                && valid_tag(&v.kernel_mod)
                && valid_bootargs(&v.bootargs)
                && v.pci_devs.len() <= MAX_PCI_DEVS
                && v.pci_devs
                    .iter()
                    .enumerate()
                    .all(|(k, a)| a.dev <= 0x1F && a.func <= 7 && !v.pci_devs[..k].contains(a))
                && v.vdevs.len() <= MAX_VDEVS
                && v.vdevs.iter().enumerate().all(|(k, dev)| {
                    let (kind_ok, bars) = match &dev.kind {
                        VdevKind::Ivshmem(name) => (valid_region_name(name), 3),
                        VdevKind::Vuart(index) => (*index <= 999, 2),
                    };
                    kind_ok
                        && dev.bars.len() == bars
                        && dev.bdf.dev <= 0x1F
                        && dev.bdf.func <= 7
                        && !v.vdevs[..k].iter().any(|o| o.bdf == dev.bdf)
                })
                && d.vms[..i].iter().all(|o| o.id != v.id && o.name != v.name)
        });
    let again = LaunchDescription::parse(&text);
    if valid {
        assert_eq!(again, Ok(d), "a valid description does not round-trip");
    } else {
        assert_ne!(
            again,
            Ok(d),
            "an invalid description was accepted as itself"
        );
    }
}
