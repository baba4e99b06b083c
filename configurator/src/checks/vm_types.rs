//! C14..C18: VM kinds and ids (ACRN `vm_types.xsd`).

use super::{is_rtvm, quoted_names, Ctx, FindingExt};
use crate::diag::Findings;
use crate::scenario::LoadOrder;

pub(super) fn check(cx: &Ctx<'_>, out: &mut Findings) {
    let vms = &cx.s.vm;
    let services: Vec<usize> = cx.s.vms_of(LoadOrder::Service).map(|(i, _)| i).collect();

    // C14
    if services.len() > 1 {
        let names = quoted_names(
            services
                .iter()
                .filter_map(|&i| vms.get(i))
                .map(|v| v.name.as_str()),
        );
        for &i in services.iter().skip(1) {
            out.push(
                cx.finding(
                    "C14",
                    format!("there may be at most one Service VM, but {names} are all SERVICE_VM"),
                )
                .at_opt(cx.vm_at(i, "load_order"))
                .with_related_opt(
                    services.first().and_then(|&f| cx.vm_at(f, "load_order")),
                    "first Service VM",
                )
                .with_hint("change the load_order of all but one of them"),
            );
        }
    }

    for &si in &services {
        let Some(svc) = vms.get(si) else { continue };
        for (i, vm) in vms.iter().enumerate() {
            let (id, bad, rel, fix) = match vm.load_order {
                Some(LoadOrder::PreLaunched) => ("C15", vm.id >= svc.id, "less", "below"),
                Some(LoadOrder::PostLaunched) => ("C16", vm.id <= svc.id, "greater", "above"),
                _ => continue,
            };
            if bad {
                let kind = if id == "C15" { "pre" } else { "post" };
                out.push(
                    cx.finding(
                        id,
                        format!(
                            "{kind}-launched VM \"{}\" (id {}) must have an id {rel} than the Service VM \"{}\" (id {})",
                            vm.name, vm.id, svc.name, svc.id
                        ),
                    )
                    .at_opt(cx.vm_at(i, ""))
                    .with_related_opt(cx.vm_at(si, ""), "the Service VM")
                    .with_hint(format!(
                        "renumber the VMs so that pre-launched VMs come first, then the Service VM, then post-launched VMs (ids {fix} {})",
                        svc.id
                    )),
                );
            }
        }
    }

    // C17
    let pre_rt: Vec<usize> =
        cx.s.vms_of(LoadOrder::PreLaunched)
            .filter(|(_, v)| is_rtvm(v))
            .map(|(i, _)| i)
            .collect();
    if pre_rt.len() > 1 {
        let names = quoted_names(
            pre_rt
                .iter()
                .filter_map(|&i| vms.get(i))
                .map(|v| v.name.as_str()),
        );
        for &i in pre_rt.iter().skip(1) {
            out.push(
                cx.finding(
                    "C17",
                    format!("ACRN supports at most one pre-launched RTVM, but {names} are pre-launched RTVMs"),
                )
                .at_opt(cx.vm_at(i, "vm_type"))
                .with_hint("make all but one of them STANDARD_VM"),
            );
        }
    }

    // C18
    let post_rt: Vec<usize> =
        cx.s.vms_of(LoadOrder::PostLaunched)
            .filter(|(_, v)| is_rtvm(v))
            .map(|(i, _)| i)
            .collect();
    if !pre_rt.is_empty() && !post_rt.is_empty() {
        let names = |l: &[usize]| {
            quoted_names(
                l.iter()
                    .filter_map(|&i| vms.get(i))
                    .map(|v| v.name.as_str()),
            )
        };
        let mut f = cx
            .finding(
                "C18",
                format!(
                    "pre-launched RTVM(s) {} and post-launched RTVM(s) {} may not coexist",
                    names(&pre_rt),
                    names(&post_rt)
                ),
            )
            .at_opt(post_rt.first().and_then(|&i| cx.vm_at(i, "vm_type")))
            .with_hint("make the RTVMs of one kind STANDARD_VM");
        for &i in &pre_rt {
            f = f.with_related_opt(cx.vm_at(i, "vm_type"), "pre-launched RTVM");
        }
        out.push(f);
    }
}
