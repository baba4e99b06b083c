//! C30..C34: vUART connections and the debug console (ACRN `vuart_config.xsd`);
//! C35..C36: IVSHMEM regions (ACRN `ivsh_memory.xsd`).

use std::collections::HashMap;

use super::{Ctx, FindingExt};
use crate::diag::Findings;
use crate::scenario::{BuildType, ConsoleVuart};

fn com_port(c: ConsoleVuart) -> Option<u64> {
    match c {
        ConsoleVuart::Com1 => Some(0x3F8),
        ConsoleVuart::Com2 => Some(0x2F8),
        ConsoleVuart::Com3 => Some(0x3E8),
        ConsoleVuart::Com4 => Some(0x2E8),
        ConsoleVuart::None | ConsoleVuart::Pci => None,
    }
}

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let conns: &[_] =
        cx.s.hv
            .vuart_connections
            .as_ref()
            .map_or(&[], |c| c.connections.as_slice());
    let ep_path = |k: usize, e: usize, leaf: &str| {
        format!("hv/vuart_connections/vuart_connection[{k}]/endpoint[{e}]/{leaf}")
    };

    // (vm name, port) -> first endpoint, for C31 and C32.
    let mut ports: HashMap<(&str, u64), (usize, usize)> = HashMap::new();
    for (k, c) in conns.iter().enumerate() {
        // C30
        if let [a, b] = c.endpoints.as_slice() {
            if !a.vm_name.is_empty() && a.vm_name == b.vm_name {
                out.push(
                    cx.finding(
                        "C30",
                        format!(
                            "vUART connection \"{}\" connects VM \"{}\" to itself",
                            c.name, a.vm_name
                        ),
                    )
                    .at_opt(cx.val(&ep_path(k, 1, "vm_name")))
                    .with_hint("connect the second endpoint to another VM"),
                );
            }
        }
        for (e, ep) in c.endpoints.iter().enumerate() {
            // C33
            if ep.vm_name.is_empty() {
                out.push(
                    cx.finding(
                        "C33",
                        format!(
                            "the VM name of an endpoint of vUART connection \"{}\" must be set",
                            c.name
                        ),
                    )
                    .at_opt(cx.val(&ep_path(k, e, "vm_name")))
                    .with_hint("put the name of the VM this endpoint belongs to in <vm_name>"),
                );
                continue;
            }
            let Some(port) = ep.io_port else { continue };
            // C31
            if let Some(&(fk, fe)) = ports.get(&(ep.vm_name.as_str(), port.0)) {
                out.push(
                    cx.finding(
                        "C31",
                        format!("VM \"{}\" uses vUART port {port} more than once", ep.vm_name),
                    )
                    .at_opt(cx.val(&ep_path(k, e, "io_port")))
                    .with_related_opt(cx.val(&ep_path(fk, fe, "io_port")), "first used here")
                    .with_hint("give each vUART endpoint of a VM its own io_port (or remove the value to get a free default)"),
                );
            } else {
                ports.insert((ep.vm_name.as_str(), port.0), (k, e));
            }
        }
    }

    // C32
    for (i, vm) in cx.s.vm.iter().enumerate() {
        let Some(console) = vm.console_vuart else {
            continue;
        };
        let Some(port) = com_port(console) else {
            continue;
        };
        if let Some(&(k, e)) = ports.get(&(vm.name.as_str(), port)) {
            out.push(
                cx.finding(
                    "C32",
                    format!(
                        "VM \"{}\" uses {console} (port {port:#X}) as its console and also for a vUART connection",
                        vm.name
                    ),
                )
                .at_opt(cx.vm_at(i, "console_vuart"))
                .with_related_opt(cx.val(&ep_path(k, e, "io_port")), "vUART endpoint on the same port")
                .with_hint("choose another console COM port, or another io_port for the vUART connection"),
            );
        }
    }

    // C34
    let debug = cx.s.hv.build_type == Some(BuildType::Debug);
    let serial =
        cx.s.hv
            .debug_options
            .as_ref()
            .and_then(|d| d.serial_console.as_deref())
            .unwrap_or("None");
    if debug && serial == "None" {
        out.push(
            cx.finding("C34", "a debug build needs a hypervisor serial console, but SERIAL_CONSOLE is None")
                .at_opt(cx.val("hv/BUILD_TYPE"))
                .with_related_opt(cx.val("hv/DEBUG_OPTIONS/SERIAL_CONSOLE"), "serial console setting")
                .with_hint(format!(
                    "set hv/DEBUG_OPTIONS/SERIAL_CONSOLE to a serial port of the board ({}), or use BUILD_TYPE release",
                    board_serials(cx)
                )),
        );
    }

    // C35 / C36
    let regions: Vec<_> = cx.s.hv.ivshmem_regions().collect();
    let rpath = |r: usize| format!("hv/FEATURES/IVSHMEM/IVSHMEM_REGION[{r}]");
    // (region name, vm name) -> first member; regions with the same name count together, as in ACRN.
    let mut members: HashMap<(&str, &str), (usize, usize)> = HashMap::new();
    for (r, region) in regions.iter().enumerate() {
        if region.name.is_empty() {
            out.push(
                cx.finding(
                    "C36",
                    "the name of an inter-VM shared memory region must be set",
                )
                .at_opt(cx.val(&format!("{}/NAME", rpath(r))))
                .with_hint("give the region a <NAME> of up to 27 letters, digits or '_'"),
            );
        }
        for (m, member) in region.vms.vm.iter().enumerate() {
            let key = (region.name.as_str(), member.vm_name.as_str());
            if let Some(&(fr, fm)) = members.get(&key) {
                let mpath = |r: usize, m: usize| {
                    format!("{}/IVSHMEM_VMS/IVSHMEM_VM[{m}]/VM_NAME", rpath(r))
                };
                out.push(
                    cx.finding(
                        "C35",
                        format!(
                            "VM \"{}\" appears more than once in the VM list of shared memory region \"{}\"",
                            member.vm_name, region.name
                        ),
                    )
                    .at_opt(cx.val(&mpath(r, m)))
                    .with_related_opt(cx.val(&mpath(fr, fm)), "first listed here")
                    .with_hint("list each VM once per IVSHMEM region"),
                );
            } else {
                members.insert(key, (r, m));
            }
        }
    }
}

fn board_serials(cx: &Ctx<'_>) -> String {
    let v: Vec<&str> = cx
        .board
        .legacy
        .serial_ports
        .iter()
        .map(|p| p.dev_path.as_str())
        .collect();
    if v.is_empty() {
        "the board lists none".to_string()
    } else {
        v.join(", ")
    }
}
