//! Semantic checks over a loaded board and a default-populated scenario: ACRN's 44 XSD
//! asserts (reference acrn-config.md §4.4), the build-time checks that make ACRN's build fail
//! (§4.5) and stricter checks for mistakes ACRN lets through. Each finding has a stable id,
//! ACRN's severity, a message naming the VM / pCPU / port, the location of the offending
//! element in the user's file and a hint.
//!
//! Entry point for [`crate::validate`]: [`run_all`]. It only runs when the board loaded and
//! the scenario passed structure validation, so checks can rely on defaults being populated;
//! they still never assume anything about values (nothing here may panic).
//!
//! Id namespaces: `C01`..`C44` ACRN's checks in the order of the reference, `B01`.. build-time
//! (board_cfg_gen / hv_prebuild) checks, `X01`.. our stricter checks. The allocator reports
//! its own failures as `A..` (see `crate::alloc`).
//!
//! | id  | sev     | rule |
//! |-----|---------|------|
//! | C01 | warning | every `pcpu_id` exists (exactly once) as a board thread `cpu_id` |
//! | C02 | warning | a VM lists a pCPU only once |
//! | C03 | error   | a pCPU of an RTVM is not used by another VM (its `companion_vmid` excepted) |
//! | C04 | error   | same for the pCPUs of an `own_pcpu = y` VM |
//! | C05 | error   | every non-Service VM has at least one pCPU |
//! | C06 | error   | a non-Service VM does not mix P-cores (`Core`) and E-cores (`Atom`) |
//! | C07 | error   | an RTVM does not use pCPU 0 |
//! | C08 | warning | `VUART_TIMER_PCPU` is not a pCPU of a `lapic_passthrough = y` VM |
//! | C09 | error   | per VM, PCI vUART and IVSHMEM vBDFs are unique |
//! | C10 | error   | Service VM PCI vUART / IVSHMEM vBDFs are not native PCI BDFs of the board |
//! | C11 | error   | no P2SB pass-through to a pre-launched VM while `00:1f.1` is hidden |
//! | C12 | error   | IVSHMEM vBDF device of a post-launched VM is in 03..1e |
//! | C13 | error   | PCI vUART vBDF device of a post-launched VM is in 03..1e (upper bound enforced, unlike ACRN) |
//! | C14 | error   | at most one Service VM |
//! | C15 | error   | pre-launched VM ids are below the Service VM id |
//! | C16 | error   | post-launched VM ids are above the Service VM id |
//! | C17 | warning | at most one pre-launched RTVM |
//! | C18 | warning | pre-launched and post-launched RTVMs do not coexist |
//! | C19 | error   | a VM does not get both TPM2 and P2SB |
//! | C20 | error   | a pass-through PCI device (by BDF, not by its description text) is given only once |
//! | C21 | error   | vsock CIDs are unique across all VMs |
//! | C22 | error   | `Full screen` GPU displays have a `monitor_id` |
//! | C23 | error   | `Window` displays: as many resolutions as horizontal and vertical offsets |
//! | C24 | error   | `Window` displays have `window_resolutions` |
//! | C25 | error   | `Window` displays have `horizontal_offset` |
//! | C26 | error   | `Window` displays have `vertical_offset` |
//! | C27 | error   | `monitor_id`s of full-screen displays are unique |
//! | C28 | error   | at most 4 full-screen displays per VM |
//! | C29 | error   | at most 2 windowed displays per VM |
//! | C30 | error   | a vUART connection does not connect a VM to itself |
//! | C31 | error   | a VM does not use the same vUART endpoint `io_port` twice |
//! | C32 | error   | a VM's `console_vuart` COM port is not also one of its endpoint ports |
//! | C33 | error   | vUART endpoint `vm_name` is not empty |
//! | C34 | error   | `BUILD_TYPE = debug` needs a `SERIAL_CONSOLE` |
//! | C35 | error   | a VM appears once in an IVSHMEM region's VM list |
//! | C36 | error   | IVSHMEM region `NAME` is not empty |
//! | C37 | error   | `VCAT_ENABLED` needs `RDT_ENABLED` and not `CDP_ENABLED` |
//! | C38 | error   | RDT with CDP needs CDP on every L2/L3 cache |
//! | C39 | error   | `virtual_cat_support` needs `RDT_ENABLED` and `VCAT_ENABLED` |
//! | C40 | error   | Service VM `lapic_passthrough` needs a VM with `nested_virtualization_support` |
//! | C41 | warning | with a pre-launched RTVM, L3 Software SRAM lies below 2 GiB or at/above 0xf8000000 |
//! | C42 | error   | CLOS ids needed by `CACHE_REGION` fit the board's CAT `clos_number` |
//! | C43 | error   | a `CLOS_MASK` does not overlap the cache's Software SRAM waymask |
//! | C44 | warning | memory of all non-Service VMs is below the board's RAM |
//! | B01 | error   | number of VMs <= `MAX_VM_NUM` |
//! | B02 | error   | `MAX_PCI_BUS_NUM` (when not 0) >= board max PCI bus + 1 |
//! | B03 | error   | the Service VM keeps at least one pCPU (pre-launched VMs do not take all) |
//! | B04 | error   | every `pcpu_id` is below the board's number of pCPUs |
//! | B05 | error   | `HV_RAM_START` is 2 MiB aligned |
//! | B06 | error   | a pre-launched RTVM has `lapic_passthrough = y` |
//! | B07 | error   | a pre-launched VM's `epc_section/size` is 0 |
//! | B08 | error   | `MAX_VM_NUM` x pCPUs (MAX_VCPUS_PER_VM) <= 0xffff |
//! | X01 | error   | a `pci_dev` starts with a `BB:DD.F` address |
//! | X02 | error   | a pass-through BDF exists on the board (`devices` or `PCI_DEVICE`) |
//! | X03 | error   | pre-launched `hpa_region`s do not overlap each other |
//! | X04 | error   | `hpa_region`s do not overlap the hypervisor RAM (when `HV_RAM_START` is given) |
//! | X05 | error   | `hpa_region`s lie inside the board's RAM |
//! | X06 | error   | a vUART endpoint names an existing VM |
//! | X07 | error   | an IVSHMEM member names an existing VM |

mod build;
mod cpu;
mod memory;
mod pci;
mod rdt;
mod strict;
mod virtio;
mod vm_types;
mod vuart;

use std::collections::HashMap;

use crate::board::{Board, CoreType};
use crate::diag::{Finding, Findings, Location, Severity};
use crate::scenario::{LoadOrder, Scenario, Vm, VmType};

/// Every check id with its severity and a one-line rule (same content as the table above).
pub const CATALOG: &[(&str, Severity, &str)] = &[
    ("C01", Severity::Warning, "pCPU exists on the board"),
    ("C02", Severity::Warning, "pCPU listed once per VM"),
    ("C03", Severity::Error, "RTVM pCPUs are not shared"),
    ("C04", Severity::Error, "own_pcpu pCPUs are not shared"),
    ("C05", Severity::Error, "non-Service VM has a pCPU"),
    ("C06", Severity::Error, "no mix of P-cores and E-cores"),
    ("C07", Severity::Error, "RTVM does not use pCPU 0"),
    (
        "C08",
        Severity::Warning,
        "VUART_TIMER_PCPU not on a LAPIC pass-through VM",
    ),
    ("C09", Severity::Error, "vUART/IVSHMEM vBDFs unique per VM"),
    (
        "C10",
        Severity::Error,
        "Service VM vBDFs are not native BDFs",
    ),
    (
        "C11",
        Severity::Error,
        "P2SB pass-through needs 00:1f.1 not hidden",
    ),
    (
        "C12",
        Severity::Error,
        "post-launched IVSHMEM vBDF device in 03..1e",
    ),
    (
        "C13",
        Severity::Error,
        "post-launched PCI vUART vBDF device in 03..1e",
    ),
    ("C14", Severity::Error, "at most one Service VM"),
    (
        "C15",
        Severity::Error,
        "pre-launched ids below the Service VM's",
    ),
    (
        "C16",
        Severity::Error,
        "post-launched ids above the Service VM's",
    ),
    ("C17", Severity::Warning, "at most one pre-launched RTVM"),
    (
        "C18",
        Severity::Warning,
        "pre- and post-launched RTVMs do not coexist",
    ),
    ("C19", Severity::Error, "not both TPM2 and P2SB"),
    (
        "C20",
        Severity::Error,
        "a PCI device is passed through once",
    ),
    ("C21", Severity::Error, "vsock CIDs unique"),
    ("C22", Severity::Error, "full-screen display has monitor_id"),
    ("C23", Severity::Error, "window display value counts agree"),
    (
        "C24",
        Severity::Error,
        "window display has window_resolutions",
    ),
    (
        "C25",
        Severity::Error,
        "window display has horizontal_offset",
    ),
    ("C26", Severity::Error, "window display has vertical_offset"),
    ("C27", Severity::Error, "full-screen monitor_id unique"),
    ("C28", Severity::Error, "at most 4 full-screen displays"),
    ("C29", Severity::Error, "at most 2 windowed displays"),
    (
        "C30",
        Severity::Error,
        "vUART does not connect a VM to itself",
    ),
    ("C31", Severity::Error, "vUART io_port unique per VM"),
    (
        "C32",
        Severity::Error,
        "console COM port not reused by a vUART",
    ),
    ("C33", Severity::Error, "vUART endpoint names a VM"),
    ("C34", Severity::Error, "debug build needs a serial console"),
    ("C35", Severity::Error, "VM once per IVSHMEM region"),
    ("C36", Severity::Error, "IVSHMEM region has a name"),
    ("C37", Severity::Error, "vCAT needs RDT without CDP"),
    ("C38", Severity::Error, "CDP needs CDP-capable L2/L3 caches"),
    ("C39", Severity::Error, "VM vCAT needs hypervisor vCAT"),
    (
        "C40",
        Severity::Error,
        "Service VM LAPIC pass-through needs nested virtualization",
    ),
    (
        "C41",
        Severity::Warning,
        "Software SRAM outside the guest PCI hole",
    ),
    ("C42", Severity::Error, "enough CLOS ids"),
    (
        "C43",
        Severity::Error,
        "CLOS mask does not overlap Software SRAM",
    ),
    ("C44", Severity::Warning, "VM memory fits the board's RAM"),
    ("B01", Severity::Error, "VM count within MAX_VM_NUM"),
    (
        "B02",
        Severity::Error,
        "MAX_PCI_BUS_NUM covers the board's buses",
    ),
    ("B03", Severity::Error, "Service VM keeps a pCPU"),
    (
        "B04",
        Severity::Error,
        "pCPU id below the board's pCPU count",
    ),
    ("B05", Severity::Error, "HV_RAM_START 2 MiB aligned"),
    (
        "B06",
        Severity::Error,
        "pre-launched RTVM has LAPIC pass-through",
    ),
    ("B07", Severity::Error, "pre-launched EPC size is 0"),
    (
        "B08",
        Severity::Error,
        "MAX_VM_NUM x MAX_VCPUS_PER_VM <= 0xffff",
    ),
    ("X01", Severity::Error, "pci_dev starts with a BDF"),
    (
        "X02",
        Severity::Error,
        "pass-through BDF exists on the board",
    ),
    ("X03", Severity::Error, "hpa_regions do not overlap"),
    (
        "X04",
        Severity::Error,
        "hpa_regions do not overlap hypervisor RAM",
    ),
    ("X05", Severity::Error, "hpa_regions inside board RAM"),
    (
        "X06",
        Severity::Error,
        "vUART endpoint names an existing VM",
    ),
    (
        "X07",
        Severity::Error,
        "IVSHMEM member names an existing VM",
    ),
];

/// The severity a check id reports with (from [`CATALOG`]).
pub fn severity_of(id: &str) -> Option<Severity> {
    CATALOG
        .iter()
        .find(|(i, _, _)| *i == id)
        .map(|(_, s, _)| *s)
}

type CheckFn = fn(&Ctx<'_>, &mut Findings);

/// The check groups in the order they run (each may report several ids).
const GROUPS: &[CheckFn] = &[
    cpu::check,
    pci::check,
    vm_types::check,
    virtio::check,
    vuart::check,
    rdt::check,
    memory::check,
    build::check,
    strict::check,
];

/// Runs every semantic check, appending findings.
pub fn run_all(board: &Board, scenario: &Scenario, findings: &mut Findings) {
    let ctx = Ctx::new(board, scenario);
    for group in GROUPS {
        group(&ctx, findings);
    }
}

/// What the checks share: the inputs plus look-up tables built once (keeps checks linear).
pub(crate) struct Ctx<'a> {
    pub board: &'a Board,
    pub s: &'a Scenario,
    /// First VM (index into `s.vm`) with each name.
    by_name: HashMap<&'a str, usize>,
    /// Board threads by `cpu_id`: how many threads carry that id, and the core type.
    threads: HashMap<u32, (u32, Option<CoreType>)>,
}

impl<'a> Ctx<'a> {
    fn new(board: &'a Board, s: &'a Scenario) -> Self {
        let mut by_name = HashMap::new();
        for (i, vm) in s.vm.iter().enumerate() {
            by_name.entry(vm.name.as_str()).or_insert(i);
        }
        let mut threads: HashMap<u32, (u32, Option<CoreType>)> = HashMap::new();
        for t in board.threads() {
            let e = threads.entry(t.cpu_id).or_insert((0, t.core_type));
            e.0 = e.0.saturating_add(1);
        }
        Ctx {
            board,
            s,
            by_name,
            threads,
        }
    }

    /// Index of the VM with this name.
    pub fn vm_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn vm_by_name(&self, name: &str) -> Option<&'a Vm> {
        self.vm_index(name).and_then(|i| self.s.vm.get(i))
    }

    /// How many board threads carry this `cpu_id`, and their core type.
    pub fn thread(&self, cpu_id: u32) -> Option<(u32, Option<CoreType>)> {
        self.threads.get(&cpu_id).copied()
    }

    /// Board pCPU ids, sorted, as `0-3, 6` (for hints).
    pub fn pcpu_list(&self) -> String {
        let mut ids: Vec<u32> = self.threads.keys().copied().collect();
        ids.sort_unstable();
        ranges_text(&ids)
    }

    /// Location of the element at `path` (its start tag), falling back to an ancestor.
    pub fn el(&self, path: &str) -> Option<Location> {
        self.s.spans.element(path)
    }

    /// Location of the value of the element at `path`, falling back to an ancestor.
    pub fn val(&self, path: &str) -> Option<Location> {
        self.s.spans.value(path)
    }

    /// Location of `<vm>` number `i` (`rel` empty) or of the value of `rel` below it.
    pub fn vm_at(&self, i: usize, rel: &str) -> Option<Location> {
        self.s.spans.vm(i, rel)
    }

    /// Location of the element `rel` (start tag) below `<vm>` number `i`.
    pub fn vm_el(&self, i: usize, rel: &str) -> Option<Location> {
        self.s.spans.element(&format!("vm[{i}]/{rel}"))
    }

    /// A finding with the catalogued severity of `id`.
    pub fn finding(&self, id: &'static str, message: impl Into<String>) -> Finding {
        Finding::new(id, severity_of(id).unwrap_or(Severity::Error), message)
    }
}

/// Adds a related location only when the span look-up found one.
pub(crate) trait FindingExt {
    fn with_related_opt(self, loc: Option<Location>, message: &str) -> Self;
}

impl FindingExt for Finding {
    fn with_related_opt(self, loc: Option<Location>, message: &str) -> Self {
        match loc {
            Some(l) => self.with_related(l, message),
            None => self,
        }
    }
}

/// ACRN's `load_order != 'SERVICE_VM'`: false when the element is missing.
pub(crate) fn is_non_service(vm: &Vm) -> bool {
    matches!(vm.load_order, Some(lo) if lo != LoadOrder::Service)
}

pub(crate) fn is_rtvm(vm: &Vm) -> bool {
    vm.vm_type == Some(VmType::Rtvm)
}

pub(crate) fn pcpu_ids(vm: &Vm) -> impl Iterator<Item = (usize, u32)> + '_ {
    vm.cpu_affinity
        .iter()
        .flat_map(|a| a.pcpu.iter().map(|p| p.pcpu_id).enumerate())
}

/// `0-3, 6, 8-9` for a sorted list.
pub(crate) fn ranges_text(sorted: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && end.checked_add(1) == Some(sorted[i + 1]) {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    if out.is_empty() {
        "none".to_string()
    } else {
        out.join(", ")
    }
}

/// `"A", "B"` for a list of VM names.
pub(crate) fn quoted_names<'n>(names: impl IntoIterator<Item = &'n str>) -> String {
    names
        .into_iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges_text(&[0, 1, 2, 3, 6, 8, 9]), "0-3, 6, 8-9");
        assert_eq!(ranges_text(&[]), "none");
        assert_eq!(
            ranges_text(&[u32::MAX - 1, u32::MAX]),
            format!("{}-{}", u32::MAX - 1, u32::MAX)
        );
    }

    #[test]
    fn catalog_ids_are_unique_and_documented() {
        let doc = include_str!("mod.rs");
        for (i, (id, sev, _)) in CATALOG.iter().enumerate() {
            assert!(
                CATALOG[i + 1..].iter().all(|(j, _, _)| j != id),
                "{id} twice"
            );
            let row = format!("//! | {id} | {:<7} |", sev.to_string());
            assert!(
                doc.contains(&row),
                "table row for {id} missing or wrong severity"
            );
        }
        assert_eq!(
            CATALOG
                .iter()
                .filter(|(i, _, _)| i.starts_with('C'))
                .count(),
            44
        );
    }
}
