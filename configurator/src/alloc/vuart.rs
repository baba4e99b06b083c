//! vUARTs: VM consoles and `vuart_connections` (both ends resolved to VM ids and indices),
//! legacy ports and IRQs (ACRN `intx.py`). PCI vUART addresses are placed by `pci`.

use std::collections::BTreeSet;

use super::{Allocation, Console, Ctx, VuartAlloc, VuartKind};
use crate::scenario::{ConsoleVuart, LoadOrder, Vbdf, VuartType};

/// COM1..COM4: port and the IRQ ACRN gives it.
const COM: [(u16, u8); 4] = [(0x3F8, 4), (0x2F8, 3), (0x3E8, 4), (0x2E8, 3)];
/// IRQs for other legacy ports of user VMs: 5..14 without 14.
const USER_IRQS: std::ops::RangeInclusive<u32> = 5..=13;
const FIRST_FREE_PORT: u16 = 0x9000;

pub(super) fn vuarts(cx: &mut Ctx, alloc: &mut Allocation) {
    for v in &mut alloc.vms {
        let vm = &cx.scenario.vm[v.index];
        let com = match vm.console_vuart {
            Some(ConsoleVuart::Com1) => Some(COM[0]),
            Some(ConsoleVuart::Com2) => Some(COM[1]),
            Some(ConsoleVuart::Com3) => Some(COM[2]),
            Some(ConsoleVuart::Com4) => Some(COM[3]),
            _ => None,
        };
        if let Some((port, irq)) = com {
            v.console = Console::Legacy { port, irq };
        }
    }

    let Some(conns) = cx.scenario.hv.vuart_connections.as_ref() else {
        return;
    };
    let pos = |name: &str, alloc: &Allocation| alloc.vms.iter().position(|v| v.name == name);
    for (c, conn) in conns.connections.iter().enumerate() {
        if conn.endpoints.len() != 2 {
            continue; // structure validation reports this
        }
        let ends: Vec<Option<usize>> = conn
            .endpoints
            .iter()
            .map(|e| pos(&e.vm_name, alloc))
            .collect();
        // An endpoint naming no VM is X06 of validation; nothing to allocate for it.
        let (Some(a), Some(b)) = (ends[0], ends[1]) else {
            continue;
        };
        let legacy = conn.vuart_type == Some(VuartType::Legacy);
        let mut idx = [0u16; 2];
        for (e, k) in [a, b].into_iter().enumerate() {
            let kind = if legacy {
                VuartKind::Legacy { port: 0, irq: 0 }
            } else {
                VuartKind::Pci {
                    vbdf: Vbdf {
                        bus: 0,
                        dev: 0,
                        func: 0,
                    },
                    bar0: 0,
                    bar1: 0,
                }
            };
            idx[e] = alloc.vms[k].vuarts.len() as u16;
            alloc.vms[k].vuarts.push(VuartAlloc {
                connection: conn.name.clone(),
                kind,
                peer_vm: 0,
                peer_index: 0,
                endpoint: (c, e),
            });
        }
        let (ida, idb) = (alloc.vms[a].id, alloc.vms[b].id);
        let ea = &mut alloc.vms[a].vuarts[idx[0] as usize];
        ea.peer_vm = idb;
        ea.peer_index = idx[1];
        let eb = &mut alloc.vms[b].vuarts[idx[1] as usize];
        eb.peer_vm = ida;
        eb.peer_index = idx[0];
    }

    // Legacy ports and IRQs, per VM.
    for v in &mut alloc.vms {
        let pool: Vec<u32> = if v.load_order == LoadOrder::Service {
            cx.board
                .legacy
                .available_irqs
                .iter()
                .copied()
                .filter(|i| *i != 3 && *i != 4 && *i <= 255)
                .collect()
        } else {
            USER_IRQS.collect()
        };
        let mut used_irqs: BTreeSet<u32> = BTreeSet::new();
        let mut used_ports: BTreeSet<u16> = BTreeSet::new();
        if let Console::Legacy { port, .. } = v.console {
            used_ports.insert(port);
        }
        let configured: Vec<Option<u64>> = v
            .vuarts
            .iter()
            .map(|va| {
                conns.connections[va.endpoint.0].endpoints[va.endpoint.1]
                    .io_port
                    .map(|p| p.0)
            })
            .collect();
        used_ports.extend(
            configured
                .iter()
                .flatten()
                .filter_map(|p| u16::try_from(*p).ok()),
        );
        for (va, conf) in v.vuarts.iter_mut().zip(configured) {
            if !matches!(va.kind, VuartKind::Legacy { .. }) {
                continue;
            }
            let (c, e) = va.endpoint;
            let at = cx.hv_at(&format!(
                "vuart_connections/vuart_connection[{c}]/endpoint[{e}]/io_port"
            ));
            let port = match conf {
                Some(p) => match u16::try_from(p) {
                    Ok(p) => p,
                    Err(_) => {
                        cx.error(
                            "A10",
                            format!("VM `{}`: vUART port {p:#x} is not an I/O port", v.name),
                            at,
                            "use a port below 0x10000",
                        );
                        continue;
                    }
                },
                None => {
                    let Some(p) = (0..0x800u16)
                        .map(|k| FIRST_FREE_PORT + 8 * k)
                        .find(|p| !used_ports.contains(p))
                    else {
                        continue;
                    };
                    used_ports.insert(p);
                    p
                }
            };
            let irq = match COM.iter().find(|(p, _)| *p == port) {
                Some(&(_, irq)) => u32::from(irq),
                None => match pool.iter().copied().find(|i| !used_irqs.contains(i)) {
                    Some(i) => i,
                    None => {
                        cx.error(
                            "A09",
                            format!(
                                "VM `{}`: no free IRQ for the legacy vUART at port {port:#x} ({} IRQs available, all used)",
                                v.name,
                                pool.len()
                            ),
                            at,
                            "use COM port addresses (0x3F8/0x2F8/0x3E8/0x2E8), or PCI vUARTs, for some connections",
                        );
                        continue;
                    }
                },
            };
            used_irqs.insert(irq);
            // Every pool value is <= 255 (filtered above; COM IRQs are 3/4).
            va.kind = VuartKind::Legacy {
                port,
                irq: irq as u8,
            };
        }
    }
}
