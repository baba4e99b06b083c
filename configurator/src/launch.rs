//! The scenario -> launch description mapping: what the reference Service VM
//! (tests/guests/service-vm) needs to create each `POST_LAUNCHED_VM` of a scenario. The format,
//! its renderer and its strict parser live in the `acrn-launch` crate (launch/), shared with the
//! Service VM.
//!
//! # How it reaches the Service VM
//!
//! The text is a boot module tagged [`MODULE_TAG`] (`launch_vms`). Each post-launched VM's kernel
//! is a boot module too, tagged by the VM's `kernel_mod` line: ACRN's scenario has no
//! `os_config` for post-launched VMs, so the tag is `<VM name>_kernel` (e.g. `POST_VM1_kernel`,
//! [`kernel_tag`]) unless the VM carries an `os_config/kern_mod`. The image builder must put the
//! description and every tag of [`LaunchDescription::module_tags`] on the ISO (GRUB
//! `module /path TAG`), and the hypervisor hands the boot modules it does not use itself to the
//! Service VM in its multiboot1 module list, with the tag as each module's string.

use acrn_launch::{
    valid_bootargs, valid_name, valid_tag, LaunchVdev, PciAddr, VdevKind, MAX_BOOTARGS,
    MAX_MEMORY_MB, MAX_PCI_DEVS, MAX_VMS,
};
pub use acrn_launch::{KernelType, LaunchDescription, LaunchVm, MODULE_TAG};

use crate::scenario::{ConsoleVuart, KernType, LoadOrder, Scenario};

/// Boot arguments of a post-launched VM whose scenario gives none.
pub const DEFAULT_BOOTARGS: &str = "console=ttyS0";

/// The boot module tag of a post-launched VM's kernel when the scenario names none.
pub fn kernel_tag(vm_name: &str) -> String {
    format!("{vm_name}_kernel")
}

/// Why a scenario cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    #[error("the scenario has post-launched VMs but no Service VM")]
    NoServiceVm,
    #[error("VM `{vm}`: {what}")]
    Vm { vm: String, what: String },
    /// The description breaks the format's own rules (VM count, unique ids and names).
    #[error(transparent)]
    Format(#[from] acrn_launch::Error),
}

fn vm_err(vm: &str, what: impl Into<String>) -> LaunchError {
    LaunchError::Vm {
        vm: vm.to_owned(),
        what: what.into(),
    }
}

/// The legacy console port of `COM Port n` (ACRN's fixed COM1..COM4 bases).
fn console_port(c: Option<ConsoleVuart>) -> Option<u16> {
    match c {
        Some(ConsoleVuart::Com1) => Some(0x3F8),
        Some(ConsoleVuart::Com2) => Some(0x2F8),
        Some(ConsoleVuart::Com3) => Some(0x3E8),
        Some(ConsoleVuart::Com4) => Some(0x2E8),
        _ => None,
    }
}

fn kernel_type(k: KernType) -> KernelType {
    match k {
        KernType::Elf => KernelType::Elf,
        KernType::RawImage => KernelType::RawImage,
        KernType::BzImage => KernelType::BzImage,
    }
}

/// Describes every `POST_LAUNCHED_VM` of a validated, default-populated scenario.
pub fn from_scenario(s: &Scenario) -> Result<LaunchDescription, LaunchError> {
    let post: Vec<_> = s.vms_of(LoadOrder::PostLaunched).collect();
    let service = s.vms_of(LoadOrder::Service).next();
    let service_vm_id = match (service, post.is_empty()) {
        (Some((_, vm)), _) => {
            u16::try_from(vm.id).map_err(|_| vm_err(&vm.name, "id does not fit 16 bits"))?
        }
        (None, true) => 0,
        (None, false) => return Err(LaunchError::NoServiceVm),
    };
    if post.len() > MAX_VMS {
        return Err(acrn_launch::Error::TooManyVms.into());
    }
    let mut vms = Vec::new();
    for (_, vm) in post {
        let name = &vm.name;
        if !valid_name(name) {
            return Err(vm_err(
                name,
                "name must be 1-15 characters of A-Z a-z 0-9 _ -",
            ));
        }
        let id = u16::try_from(vm.id)
            .ok()
            .filter(|&i| i != u16::MAX)
            .ok_or_else(|| vm_err(name, "id does not fit 16 bits"))?;
        let memory_mb = u32::try_from(vm.memory_size_mb())
            .ok()
            .filter(|m| (1..=MAX_MEMORY_MB).contains(m))
            .ok_or_else(|| vm_err(name, format!("memory/size must be 1..={MAX_MEMORY_MB} MB")))?;
        let mut pcpus = 0u64;
        for p in vm.cpu_affinity.iter().flat_map(|a| &a.pcpu) {
            if p.pcpu_id >= 64 {
                return Err(vm_err(name, format!("pCPU {} is beyond 63", p.pcpu_id)));
            }
            pcpus |= 1 << p.pcpu_id;
        }
        if pcpus == 0 {
            return Err(vm_err(name, "no pCPUs in cpu_affinity"));
        }
        let os = vm.os_config.as_ref();
        let kernel_mod = os
            .and_then(|o| o.kern_mod.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| kernel_tag(name));
        if !valid_tag(&kernel_mod) {
            return Err(vm_err(name, format!("kernel module tag `{kernel_mod}` is not 1-63 printable characters without space or '='")));
        }
        let kernel_type = kernel_type(os.and_then(|o| o.kern_type).unwrap_or(KernType::Elf));
        let bootargs = os
            .and_then(|o| o.bootargs.clone())
            .unwrap_or_else(|| DEFAULT_BOOTARGS.to_owned());
        // Scenario files may wrap long bootargs over several lines.
        let bootargs = bootargs.split_whitespace().collect::<Vec<_>>().join(" ");
        if !valid_bootargs(&bootargs) {
            return Err(vm_err(
                name,
                format!("bootargs must be at most {MAX_BOOTARGS} printable ASCII characters"),
            ));
        }
        let mut pci_devs: Vec<PciAddr> = Vec::new();
        for b in vm
            .pci_devs
            .iter()
            .flat_map(|p| &p.pci_dev)
            .filter_map(|d| crate::gen::launch_script::leading_bdf(d))
        {
            let a = PciAddr {
                bus: b.bus,
                dev: b.device,
                func: b.function,
            };
            if !pci_devs.contains(&a) {
                pci_devs.push(a);
            }
        }
        if pci_devs.len() > MAX_PCI_DEVS {
            return Err(vm_err(
                name,
                format!("at most {MAX_PCI_DEVS} pci_devs can be passed through"),
            ));
        }
        vms.push(LaunchVm {
            id,
            name: name.clone(),
            memory_mb,
            pcpus,
            kernel_mod,
            kernel_type,
            bootargs,
            console_port: console_port(vm.console_vuart),
            pci_devs,
            vdevs: Vec::new(),
        });
    }
    let d = LaunchDescription { service_vm_id, vms };
    d.check_unique()?;
    Ok(d)
}

/// Adds to each VM of `d` the devices of the hypervisor's its Service VM asks for, where the
/// allocator placed them: the IVSHMEM device of each hypervisor-provided region it is a member
/// of, and its PCI vUARTs, the PCI console among them (by ACRN's vUART index, as the launch
/// script's `vuart_idx`).
pub fn with_devices(d: &mut LaunchDescription, alloc: &crate::alloc::Allocation) {
    let addr = |b: crate::scenario::Vbdf| PciAddr {
        bus: b.bus,
        dev: b.dev,
        func: b.func,
    };
    for vm in &mut d.vms {
        let Some(a) = alloc.vms.iter().find(|a| a.name == vm.name) else {
            continue;
        };
        for dev in &a.ivshmem {
            let Some(region) = alloc.ivshmem_regions.get(dev.region as usize) else {
                continue;
            };
            vm.vdevs.push(LaunchVdev {
                kind: VdevKind::Ivshmem(region.name.clone()),
                bdf: addr(dev.vbdf),
                bars: dev.bars.iter().map(|b| b & !0xF).collect(),
            });
        }
        // ACRN numbers a VM's vUARTs from its console (0): connection i is vUART i + 1.
        if let crate::alloc::Console::Pci { vbdf, bar0, bar1 } = a.console {
            vm.vdevs.push(LaunchVdev {
                kind: VdevKind::Vuart(0),
                bdf: addr(vbdf),
                bars: vec![bar0 & !0xF, bar1 & !0xF],
            });
        }
        for (i, v) in a.vuarts.iter().enumerate() {
            if let crate::alloc::VuartKind::Pci { vbdf, bar0, bar1 } = v.kind {
                vm.vdevs.push(LaunchVdev {
                    kind: VdevKind::Vuart(i as u32 + 1),
                    bdf: addr(vbdf),
                    bars: vec![bar0 & !0xF, bar1 & !0xF],
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
    }

    fn load(board: &str, scen: &str) -> Scenario {
        let dir = repo().join("configs").join(board);
        let r = crate::validate(
            &dir.join(format!("{board}.xml")),
            &dir.join(scen),
            &crate::ValidateOptions::default(),
        );
        r.scenario.expect("scenario loads")
    }

    #[test]
    fn shared_scenarios_describe_both_post_vms() {
        for board in ["qemu-epyc", "bochs-tigerlake"] {
            let d = from_scenario(&load(board, "shared.xml")).unwrap();
            assert_eq!(d.service_vm_id, 0);
            let names: Vec<_> = d.vms.iter().map(|v| v.name.as_str()).collect();
            assert_eq!(names, ["POST_VM1", "POST_VM2"], "{board}");
            assert_eq!(d.vms[0].pcpus, 1 << 2);
            assert_eq!(d.vms[1].pcpus, 1 << 3);
            assert_eq!(d.vms[0].kernel_mod, "POST_VM1_kernel");
            assert_eq!(d.vms[0].console_port, Some(0x3F8));
            assert_eq!(d.vms[0].bootargs, DEFAULT_BOOTARGS);
            assert_eq!(
                d.module_tags(),
                ["launch_vms", "POST_VM1_kernel", "POST_VM2_kernel"]
            );
            assert_eq!(LaunchDescription::parse(&d.render()).unwrap(), d);
        }
        let d = from_scenario(&load("qemu-epyc", "partitioned.xml")).unwrap();
        assert!(d.vms.is_empty());
    }

    #[test]
    fn post_launched_pci_devs_are_described_by_their_host_bdf() {
        use crate::scenario::PciDevs;
        let mut s = load("qemu-epyc", "shared.xml");
        let devs = |list: &[&str]| PciDevs {
            pci_dev: list.iter().map(|d| d.to_string()).collect(),
        };
        s.vm[1].pci_devs = Some(devs(&[
            "00:02.0 Ethernet controller: Device 8086:10d3",
            "not a BDF",
            "00:1f.2 SATA controller",
            "00:02.0 again",
        ]));
        let d = from_scenario(&s).unwrap();
        let at = |bus, dev, func| PciAddr { bus, dev, func };
        assert_eq!(d.vms[0].pci_devs, [at(0, 2, 0), at(0, 0x1f, 2)]);
        assert!(d.vms[1].pci_devs.is_empty());
        assert!(d.render().contains("pci_devs=00:02.0,00:1f.2\n"));
        let nine: Vec<String> = (1..=9).map(|n| format!("00:{n:02x}.0 NIC")).collect();
        s.vm[1].pci_devs = Some(PciDevs { pci_dev: nine });
        let e = from_scenario(&s).unwrap_err().to_string();
        assert!(e.contains("at most 8 pci_devs"), "{e}");
    }

    #[test]
    fn devices_of_the_hypervisors_are_listed_where_the_allocator_put_them() {
        let dir = repo().join("configs/qemu-epyc");
        let board = crate::board::load_board(&dir.join("qemu-epyc.xml")).unwrap();
        let text = std::fs::read_to_string(dir.join("hybrid.xml")).unwrap();
        let region = "<IVSHMEM><IVSHMEM_REGION><NAME>shm_0</NAME>\
            <PROVIDED_BY>Hypervisor</PROVIDED_BY><IVSHMEM_SIZE>2</IVSHMEM_SIZE><IVSHMEM_VMS>\
            <IVSHMEM_VM><VM_NAME>PRE_VM0</VM_NAME><VBDF>00:08.0</VBDF></IVSHMEM_VM>\
            <IVSHMEM_VM><VM_NAME>POST_VM1</VM_NAME><VBDF>00:09.0</VBDF></IVSHMEM_VM>\
            </IVSHMEM_VMS></IVSHMEM_REGION></IVSHMEM>";
        let path = std::env::temp_dir().join(format!("launch-vdevs-{}.xml", std::process::id()));
        std::fs::write(&path, text.replacen("<IVSHMEM/>", region, 1)).unwrap();
        let (s, _) = crate::scenario::load_scenario(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let alloc = crate::alloc::allocate(&board, &s).unwrap();
        let mut d = from_scenario(&s).unwrap();
        with_devices(&mut d, &alloc);
        let at = |bus, dev, func| PciAddr { bus, dev, func };
        assert_eq!(
            d.vms[0].vdevs,
            [LaunchVdev {
                kind: VdevKind::Ivshmem("shm_0".into()),
                bdf: at(0, 9, 0),
                bars: vec![0x8000_0000, 0x8000_1000, 0x40_0000_0000],
            }]
        );
        assert_eq!(LaunchDescription::parse(&d.render()).unwrap(), d);
    }

    /// A PCI vUART is named by the same ACRN index in the description (what a Service VM
    /// passes to HC_ADD_VDEV) and in the launch script (acrn-dm's `vuart_idx`).
    #[test]
    fn pci_vuart_indices_agree_with_the_launch_script() {
        let dir = repo().join("configs/qemu-epyc");
        let board = crate::board::load_board(&dir.join("qemu-epyc.xml")).unwrap();
        let s = load("qemu-epyc", "linux-service-vm.xml");
        let alloc = crate::alloc::allocate(&board, &s).unwrap();
        let mut d = from_scenario(&s).unwrap();
        with_devices(&mut d, &alloc);
        let scripts = crate::gen::launch_script::scripts(&board, &s).unwrap();
        let text = scripts[0].render("qemu-epyc", "linux-service-vm");
        let indices: Vec<u32> = d.vms[0]
            .vdevs
            .iter()
            .filter_map(|v| match v.kind {
                VdevKind::Vuart(i) => Some(i),
                _ => None,
            })
            .collect();
        assert_eq!(indices, [1], "the first connection follows the console (0)");
        assert!(text.contains(",uart,vuart_idx:1"), "{text}");
    }

    /// The Service VM's test reads the same file (tests/guests/service-vm), so what the
    /// configurator writes is what the Service VM is tested to accept. `UPDATE_GOLDEN=1`
    /// rewrites it.
    #[test]
    fn golden_file_shared_with_the_service_vm() {
        let text = from_scenario(&load("qemu-epyc", "shared.xml"))
            .unwrap()
            .render();
        let golden = repo().join("tests/guests/service-vm/testdata/qemu-epyc-shared.launch");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden, &text).unwrap();
        }
        assert_eq!(std::fs::read_to_string(&golden).unwrap(), text);
    }

    #[test]
    fn scenario_problems_are_errors() {
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm[1].memory = Some(crate::scenario::VmMemory {
            size: Some(0),
            ..Default::default()
        });
        assert!(matches!(from_scenario(&s), Err(LaunchError::Vm { .. })));
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm[1].cpu_affinity = None;
        assert!(matches!(from_scenario(&s), Err(LaunchError::Vm { .. })));
        let mut s = load("qemu-epyc", "shared.xml");
        s.vm.remove(0);
        assert_eq!(from_scenario(&s), Err(LaunchError::NoServiceVm));
    }
}
