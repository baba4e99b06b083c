//! C21..C29: virtio devices (ACRN `virtio_devices.xsd`).

use std::collections::HashMap;

use super::{Ctx, FindingExt};
use crate::diag::Findings;
use crate::scenario::DisplayType;

const MAX_FULL_SCREEN: usize = 4;
const MAX_WINDOWS: usize = 2;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    // C21: vsock CIDs, across all VMs.
    let mut cids: HashMap<u64, (usize, usize)> = HashMap::new();
    // C27: monitor ids of full-screen displays, across all VMs.
    let mut monitors: HashMap<u32, (usize, usize)> = HashMap::new();

    for (i, vm) in cx.s.vm.iter().enumerate() {
        let Some(vd) = vm.virtio_devices.as_ref() else {
            continue;
        };
        for (j, &cid) in vd.vsock.iter().enumerate() {
            if let Some(&(fi, fj)) = cids.get(&cid) {
                let first = cx.s.vm.get(fi).map_or("", |v| v.name.as_str());
                out.push(
                    cx.finding(
                        "C21",
                        format!(
                            "VM \"{}\" repeats vsock CID {cid}, already used by VM \"{first}\"",
                            vm.name
                        ),
                    )
                    .at_opt(cx.vm_at(i, &format!("virtio_devices/vsock[{j}]")))
                    .with_related_opt(
                        cx.vm_at(fi, &format!("virtio_devices/vsock[{fj}]")),
                        "first used here",
                    )
                    .with_hint("give every vsock device a CID no other vsock uses"),
                );
            } else {
                cids.insert(cid, (i, j));
            }
        }

        let Some(gpu) = vd.gpu.as_ref() else { continue };
        let displays: &[_] = gpu.displays.as_ref().map_or(&[], |d| d.display.as_slice());
        let disp = |j: usize, leaf: &str| {
            let rel = format!("virtio_devices/gpu/displays/display[{j}]");
            if leaf.is_empty() {
                cx.vm_el(i, &rel)
            } else {
                cx.vm_at(i, &format!("{rel}/{leaf}"))
            }
        };
        match gpu.display_type {
            Some(DisplayType::FullScreen) => {
                for (j, d) in displays.iter().enumerate() {
                    match d.monitor_id {
                        // C22
                        None => out.push(
                            cx.finding(
                                "C22",
                                format!(
                                    "VM \"{}\": a full-screen virtual display needs a monitor_id",
                                    vm.name
                                ),
                            )
                            .at_opt(disp(j, ""))
                            .with_hint(
                                "add <monitor_id>N</monitor_id> naming the physical monitor to use",
                            ),
                        ),
                        Some(m) => {
                            // C27
                            if let Some(&(fi, fj)) = monitors.get(&m) {
                                let first = cx.s.vm.get(fi).map_or("", |v| v.name.as_str());
                                out.push(
                                    cx.finding(
                                        "C27",
                                        format!(
                                            "monitor id {m} of VM \"{}\" is already used by a full-screen display of VM \"{first}\"",
                                            vm.name
                                        ),
                                    )
                                    .at_opt(disp(j, "monitor_id"))
                                    .with_related_opt(
                                        cx.vm_at(fi, &format!("virtio_devices/gpu/displays/display[{fj}]/monitor_id")),
                                        "first used here",
                                    )
                                    .with_hint("choose a different monitor id or remove one of the displays"),
                                );
                            } else {
                                monitors.insert(m, (i, j));
                            }
                        }
                    }
                }
                // C28
                if displays.len() > MAX_FULL_SCREEN {
                    out.push(
                        cx.finding(
                            "C28",
                            format!(
                                "VM \"{}\" has {} full-screen virtual displays; at most {MAX_FULL_SCREEN} are supported",
                                vm.name,
                                displays.len()
                            ),
                        )
                        .at_opt(disp(MAX_FULL_SCREEN, ""))
                        .with_hint("remove virtual displays until at most 4 remain"),
                    );
                }
            }
            Some(DisplayType::Window) => {
                let res = displays
                    .iter()
                    .filter(|d| {
                        d.window_resolutions
                            .as_deref()
                            .is_some_and(|r| !r.is_empty())
                    })
                    .count();
                let hor = displays
                    .iter()
                    .filter(|d| d.horizontal_offset.is_some())
                    .count();
                let ver = displays
                    .iter()
                    .filter(|d| d.vertical_offset.is_some())
                    .count();
                // C23
                if res != hor || res != ver {
                    out.push(
                        cx.finding(
                            "C23",
                            format!(
                                "VM \"{}\": every window display needs a window resolution, a horizontal and a vertical offset ({res} resolutions, {hor} horizontal and {ver} vertical offsets)",
                                vm.name
                            ),
                        )
                        .at_opt(cx.vm_el(i, "virtio_devices/gpu"))
                        .with_hint("give each <display> all three values"),
                    );
                }
                for (j, d) in displays.iter().enumerate() {
                    let missing = [
                        (
                            "C24",
                            d.window_resolutions.as_deref().is_none_or(str::is_empty),
                            "window_resolutions",
                            "a window resolution",
                        ),
                        (
                            "C25",
                            d.horizontal_offset.is_none(),
                            "horizontal_offset",
                            "a horizontal offset (pixels)",
                        ),
                        (
                            "C26",
                            d.vertical_offset.is_none(),
                            "vertical_offset",
                            "a vertical offset (pixels)",
                        ),
                    ];
                    for (id, is_missing, tag, what) in missing {
                        if is_missing {
                            out.push(
                                cx.finding(
                                    id,
                                    format!(
                                        "VM \"{}\": window virtual display {j} needs {what}",
                                        vm.name
                                    ),
                                )
                                .at_opt(disp(j, ""))
                                .with_hint(format!("add <{tag}> to this <display>")),
                            );
                        }
                    }
                }
                // C29
                if displays.len() > MAX_WINDOWS {
                    out.push(
                        cx.finding(
                            "C29",
                            format!(
                                "VM \"{}\" has {} virtual windows; at most {MAX_WINDOWS} are supported",
                                vm.name,
                                displays.len()
                            ),
                        )
                        .at_opt(disp(MAX_WINDOWS, ""))
                        .with_hint("remove virtual displays until at most 2 remain"),
                    );
                }
            }
            None => {}
        }
    }
}
