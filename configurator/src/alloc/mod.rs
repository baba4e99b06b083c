//! Resource allocation (reference acrn-config.md §3.6/§5.3): turns a validated board and
//! scenario into the numbers the hypervisor's static tables need: the hypervisor's RAM, host
//! memory of pre-launched VMs, IVSHMEM placement, pCPU sets, guest flags, virtual BDFs, BARs,
//! legacy vUART ports and IRQs.
//!
//! Deterministic: only sorted containers are iterated, so the same input always gives the
//! same [`Allocation`]. Every failure is a [`Finding`] with id `A01`..`A13`; nothing panics.
//!
//! Deviations from ACRN's Python allocators (documented where they happen):
//! * pre-launched VM memory without `hpa_region` comes from RAM at or above 4 GiB as in
//!   ACRN, but on boards with no RAM above 4 GiB (our small emulated boards) from RAM below
//!   4 GiB above the hypervisor's RAM;
//! * IVSHMEM regions provided by the hypervisor are carved out of RAM statically (top-down,
//!   2 MiB aligned) instead of at boot time, so the partition report shows where they live;
//! * post-launched VMs get the same static vBDF/BAR rules as pre-launched ones (ACRN leaves
//!   them to the device model), so their table entries are complete;
//! * the implicit S5 vUARTs ACRN adds for its Linux device model are not generated.

mod flags;
mod memory;
mod pci;
pub mod ranges;
mod vuart;

use serde::Serialize;

use crate::board::{Bdf, Board};
use crate::diag::{Finding, Findings, Location};
use crate::scenario::{LoadOrder, Scenario, Vbdf};

pub use ranges::{Range, RangeSet};

/// Everything the allocator computed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Allocation {
    /// The hypervisor's own RAM (`HV_RAM_START`/`HV_RAM_SIZE`).
    pub hv_ram: Range,
    /// Hypervisor-provided IVSHMEM regions, in scenario order.
    pub ivshmem_regions: Vec<IvshmemRegionAlloc>,
    /// One entry per VM, sorted by VM id.
    pub vms: Vec<VmAlloc>,
    /// The hypervisor's console UART (`SERIAL_CONSOLE` resolved through `TTYS_INFO`).
    pub serial: Option<Serial>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Serial {
    Pio { base: u16, irq: u8 },
    Mmio { base: u64, reg_width: u8, irq: u8 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IvshmemRegionAlloc {
    pub name: String,
    pub region_id: u32,
    pub hpa: Range,
    /// Names of the VMs that map it.
    pub vms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmAlloc {
    /// Position of the VM in `Scenario::vm` (and in span paths `vm[i]`).
    pub index: usize,
    pub id: u16,
    pub name: String,
    pub load_order: LoadOrder,
    /// OR of `acrn_static_config::GuestFlags` bits.
    pub guest_flags: u64,
    /// Sorted pCPU ids.
    pub pcpus: Vec<u32>,
    /// Host memory of a pre-launched VM in guest-physical order.
    pub memory: Vec<MemRegion>,
    /// RAM left to the Service VM (host ranges, identity-mapped); empty for other VMs.
    pub service_ram: Vec<Range>,
    /// Bytes: pre-launched = sum of `memory`, Service VM = sum of `service_ram`,
    /// post-launched = the scenario's `memory/size`.
    pub memory_size: u64,
    pub console: Console,
    pub vuarts: Vec<VuartAlloc>,
    pub ivshmem: Vec<IvshmemDevAlloc>,
    pub pci_devs: Vec<PtDevAlloc>,
    /// (physical GSI, virtual GSI).
    pub pt_intx: Vec<(u32, u32)>,
}

/// Guest-physical `[gpa, gpa + size)` backed by host-physical `[hpa, hpa + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemRegion {
    pub gpa: u64,
    pub hpa: u64,
    pub size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Console {
    None,
    Legacy {
        port: u16,
        irq: u8,
    },
    /// ACRN's PCI vUART: BAR0 the register window, BAR1 the MSI-X table.
    Pci {
        vbdf: Vbdf,
        bar0: u64,
        bar1: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VuartAlloc {
    /// `name` of the `vuart_connection`.
    pub connection: String,
    pub kind: VuartKind,
    pub peer_vm: u16,
    /// Index of the other end in the peer's `vuarts`.
    pub peer_index: u16,
    /// (connection, endpoint) index in the scenario's `vuart_connections`.
    #[serde(skip)]
    pub(crate) endpoint: (usize, usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VuartKind {
    Legacy { port: u16, irq: u8 },
    Pci { vbdf: Vbdf, bar0: u64, bar1: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IvshmemDevAlloc {
    /// Index into [`Allocation::ivshmem_regions`].
    pub region: u16,
    pub vbdf: Vbdf,
    /// BAR0 (registers), BAR1 (MSI-X), BAR2 (shared memory), guest-physical.
    pub bars: [u64; 3],
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PtDevAlloc {
    pub pbdf: Bdf,
    pub vbdf: Vbdf,
    /// Guest BAR bases by BAR index (0 = unused; the upper half of a 64-bit BAR is 0).
    pub vbars: [u64; 6],
    /// The `pci_dev` text of the scenario (BDF and description).
    pub description: String,
}

/// Allocates every resource. `Err` carries at least one error finding.
pub fn allocate(board: &Board, scenario: &Scenario) -> Result<Allocation, Findings> {
    let mut cx = Ctx::new(board, scenario);
    let vms = cx.vm_skeletons();
    let hv_ram = memory::hv_ram(&mut cx).unwrap_or(Range::new(0, 0));
    let serial = serial(&mut cx);
    let mut alloc = Allocation {
        hv_ram,
        ivshmem_regions: Vec::new(),
        vms,
        serial,
    };
    memory::vm_memory(&mut cx, &mut alloc);
    flags::cpus_and_flags(&mut cx, &mut alloc);
    vuart::vuarts(&mut cx, &mut alloc);
    pci::devices(&mut cx, &mut alloc);
    if cx.findings.has_errors() || cx.findings.has_critical() {
        Err(cx.findings)
    } else {
        Ok(alloc)
    }
}

/// `SERIAL_CONSOLE` (`/dev/ttyS0`, `ttyS0` or `None`) resolved through the board's `TTYS_INFO`.
fn serial(cx: &mut Ctx) -> Option<Serial> {
    let name = cx
        .scenario
        .hv
        .debug_options
        .as_ref()?
        .serial_console
        .as_deref()?
        .trim();
    if name.is_empty() || name == "None" {
        return None;
    }
    let board = cx.board;
    let port = board.serial_port(name).or_else(|| {
        let short = name.rsplit('/').next().unwrap_or(name);
        board
            .legacy
            .serial_ports
            .iter()
            .find(|p| p.dev_path.rsplit('/').next() == Some(short))
    });
    let at = cx.hv_at("DEBUG_OPTIONS/SERIAL_CONSOLE");
    let Some(p) = port else {
        let known: Vec<&str> = board
            .legacy
            .serial_ports
            .iter()
            .map(|p| p.dev_path.as_str())
            .collect();
        cx.error(
            "A12",
            format!(
                "SERIAL_CONSOLE `{name}` is not a serial port of board `{}`",
                board.name
            ),
            at,
            &format!(
                "the board's TTYS_INFO lists: {}",
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        );
        return None;
    };
    let irq = p.irq.unwrap_or(0);
    let Ok(irq) = u8::try_from(irq) else {
        cx.error(
            "A12",
            format!("serial port {} has IRQ {irq}, above 255", p.dev_path),
            at,
            "",
        );
        return None;
    };
    match p.access {
        crate::board::SerialAccess::Portio => match u16::try_from(p.base) {
            Ok(base) => Some(Serial::Pio { base, irq }),
            Err(_) => {
                cx.error(
                    "A12",
                    format!(
                        "serial port {} has I/O base {:#x}, above 0xFFFF",
                        p.dev_path, p.base
                    ),
                    at,
                    "",
                );
                None
            }
        },
        crate::board::SerialAccess::Mmio => Some(Serial::Mmio {
            base: p.base,
            reg_width: p.reg_width.unwrap_or(1),
            irq,
        }),
    }
}

/// Shared state of one allocation run.
pub(crate) struct Ctx<'a> {
    pub board: &'a Board,
    pub scenario: &'a Scenario,
    pub findings: Findings,
}

impl<'a> Ctx<'a> {
    fn new(board: &'a Board, scenario: &'a Scenario) -> Self {
        let mut findings = Findings::new();
        if let Some(src) = &scenario.spans.source {
            findings.add_source(&scenario.spans.file, src.clone());
        }
        Ctx {
            board,
            scenario,
            findings,
        }
    }

    pub fn error(&mut self, id: &'static str, msg: String, at: Option<Location>, hint: &str) {
        let mut f = Finding::error(id, msg).at_opt(at);
        if !hint.is_empty() {
            f = f.with_hint(hint);
        }
        self.findings.push(f);
    }

    /// Location of `rel` inside `<vm>` number `index`.
    pub fn vm_at(&self, index: usize, rel: &str) -> Option<Location> {
        self.scenario.spans.vm(index, rel)
    }

    pub fn hv_at(&self, path: &str) -> Option<Location> {
        self.scenario.spans.value(&format!("hv/{path}"))
    }

    /// VM entries with ids and names, sorted by id; reports ids that do not fit the tables.
    fn vm_skeletons(&mut self) -> Vec<VmAlloc> {
        let mut out = Vec::new();
        for (index, vm) in self.scenario.vm.iter().enumerate() {
            let Some(load_order) = vm.load_order else {
                continue;
            };
            let Ok(id) = u16::try_from(vm.id) else {
                self.error(
                    "A13",
                    format!(
                        "VM id {} of `{}` does not fit the tables (max 65534)",
                        vm.id, vm.name
                    ),
                    self.vm_at(index, ""),
                    "number VMs from 0",
                );
                continue;
            };
            out.push(VmAlloc {
                index,
                id,
                name: vm.name.clone(),
                load_order,
                guest_flags: 0,
                pcpus: Vec::new(),
                memory: Vec::new(),
                service_ram: Vec::new(),
                memory_size: 0,
                console: Console::None,
                vuarts: Vec::new(),
                ivshmem: Vec::new(),
                pci_devs: Vec::new(),
                pt_intx: Vec::new(),
            });
        }
        out.sort_by_key(|v| v.id);
        out
    }
}

impl Allocation {
    pub fn vm(&self, id: u16) -> Option<&VmAlloc> {
        self.vms.iter().find(|v| v.id == id)
    }
}
