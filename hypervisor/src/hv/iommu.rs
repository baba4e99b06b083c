//! DMA remapping, whichever IOMMU the host has: Intel VT-d (`vtd`, from the DMAR table) or AMD-Vi
//! (`amdvi`, from the IVRS table). The rest of the hypervisor asks this module to confine a
//! function's DMA to a VM's memory and tells it when a VM's second-level table changes; it
//! never names the vendor.

use super::{amdvi, vtd};
use crate::arch::vtd::DmaFault;
use crate::bootinfo::PhysRead;
use crate::devices::pci::requester::{self, Requesters};
use crate::devices::physical::HostPci;
use crate::hvlog;
use crate::paging::Perm;
use crate::vm::acpi::MAX_IVRS_IOAPICS;
use acrn_static_config::{Bdf, LoadOrder, PlatformConfig};

/// Faults reported one by one per unit; the rest are counted (a device a guest drives can
/// fault at every DMA).
pub const REPORTED_FAULTS: u32 = 16;

/// The kind of IOMMU that confines a function's DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iommu {
    VtD,
    AmdVi,
}

impl core::fmt::Display for Iommu {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Iommu::VtD => "VT-d",
            Iommu::AmdVi => "AMD-Vi",
        })
    }
}

/// The requester ID each IOAPIC's interrupt requests carry, as the IOMMU's ACPI table names
/// them (the DMAR's IOAPIC scopes, the IVRS's special device entries).
#[derive(Clone, Copy)]
pub struct IoapicSources {
    list: [(u8, u16); MAX_IVRS_IOAPICS],
    count: usize,
}

type ReadSources = fn(&dyn PhysRead, u64, &mut [(u8, u16); MAX_IVRS_IOAPICS]) -> Option<usize>;

impl IoapicSources {
    /// The sources `read` finds in the host's `table`; None (interrupt remapping stays off,
    /// which the boot log says) unless it names every IOAPIC of the board.
    pub fn of_board(iommu: Iommu, table: &str, read: ReadSources) -> Option<IoapicSources> {
        let mut list = [(0, 0); MAX_IVRS_IOAPICS];
        let count = super::rsdp()
            .and_then(|rsdp| read(&super::Identity, rsdp, &mut list))
            .unwrap_or(0);
        let sources = IoapicSources { list, count };
        if let Some(missing) = super::platform()
            .board
            .ioapics
            .iter()
            .find(|io| sources.requester(io.id).is_none())
        {
            hvlog!(
                "{iommu}: interrupt remapping off: the {table} names no requester for IOAPIC \
                 {} (a device's DMA to 0xFEExxxxx can raise any interrupt)",
                missing.id
            );
            return None;
        }
        Some(sources)
    }

    /// The requester ID of IOAPIC `id`'s interrupts.
    pub fn requester(&self, id: u8) -> Option<u16> {
        self.list[..self.count]
            .iter()
            .find(|&&(i, _)| i == id)
            .map(|&(_, r)| r)
    }
}

/// A one-page ring of 256 16-byte commands, as AMD-Vi's command buffer and VT-d's
/// invalidation queue both are: the hypervisor writes at the tail and gives the unit the new
/// tail.
#[derive(Clone, Copy)]
pub struct CommandRing {
    page: u64,
    tail: u64,
}

impl CommandRing {
    const BYTES: u64 = 4096;

    pub fn new() -> Option<CommandRing> {
        Some(CommandRing {
            page: super::frames::alloc(1)?,
            tail: 0,
        })
    }

    /// Where the ring is, for the unit's base register.
    pub fn base(&self) -> u64 {
        self.page
    }

    /// Writes `cmd` at the tail; the new tail (a byte offset) for the unit's tail register.
    pub fn push(&mut self, cmd: [u64; 2]) -> u64 {
        let at = self.page + self.tail;
        // SAFETY: `page` is a pool frame of BYTES; `tail` < BYTES, 16-byte aligned.
        unsafe {
            core::ptr::write_volatile(at as *mut u64, cmd[0]);
            core::ptr::write_volatile((at + 8) as *mut u64, cmd[1]);
        }
        self.tail = (self.tail + 16) % Self::BYTES;
        self.tail
    }
}

/// Where units write the tokens of their completion commands (AMD-Vi's COMPLETION_WAIT,
/// VT-d's invalidation wait): a unit has done every command before one once its token is there.
pub struct Completion {
    store: u64,
    token: u32,
}

impl Completion {
    pub fn new() -> Option<Completion> {
        Some(Completion {
            store: super::frames::alloc(1)?,
            token: 0,
        })
    }

    /// A new token and the address to have it written to.
    pub fn new_token(&mut self) -> (u64, u32) {
        self.token = self.token.wrapping_add(1);
        (self.store, self.token)
    }

    /// Waits (bounded) until `token` was written; whether it was.
    pub fn arrived(&self, token: u32) -> bool {
        let store = self.store;
        // SAFETY: `store` is a pool frame the units write their tokens to.
        wait(|| unsafe { core::ptr::read_volatile(store as *const u32) } == token)
    }
}

/// Polls until `done` holds (a bounded wait: a unit that never answers is reported).
pub fn wait(done: impl Fn() -> bool) -> bool {
    for _ in 0..10_000_000 {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Turns the IOMMU on before any VM runs when the scenario needs it (a Service VM, whose
/// devices it confines, or pass-through functions or lines), so that no device's interrupt
/// is programmed before interrupt remapping is on.
pub fn prepare(p: &PlatformConfig) {
    let needed = p.vms.iter().any(|v| {
        v.load_order == LoadOrder::Service || !v.pci_devs.is_empty() || !v.pt_intx.is_empty()
    });
    if !needed {
        return;
    }
    if amdvi::present() {
        amdvi::turn_on();
    } else {
        vtd::turn_on();
    }
}

/// Sends the DMA of every function no VM owns (the Service VM's) through the Service VM's
/// second-level table at `root` (an NPT when `npt`). Whether it is confined now.
pub fn confine_service(root: u64, npt: bool, vm_id: u16) -> bool {
    if amdvi::present() {
        amdvi::confine_service(root, npt, vm_id)
    } else {
        vtd::confine_service(root, vm_id)
    }
}

/// The IDs `bdf`'s requests carry on their way to the IOMMU (its own, and the aliases of the
/// bridges above it), read from the hardware now; on AMD-Vi also the alias the IVRS names for
/// the ID the bridges leave.
pub fn requesters(bdf: Bdf) -> Requesters {
    let r = requester::requesters(&HostPci, bdf);
    match amdvi::ivrs_alias(r.seen()) {
        Some(alias) => r.aliased_to(alias),
        None => r,
    }
}

/// Sends `bdf`'s DMA through VM `vm_id`'s second-level table at `root`: the IOMMU that
/// confines it now, if any. Every requester ID the function's requests may carry is covered,
/// so the functions that share an alias with it go along (`pt` gives them to one VM only).
pub fn confine(bdf: Bdf, root: u64, npt: bool, vm_id: u16) -> Option<Iommu> {
    let ids = requesters(bdf);
    if amdvi::present() {
        amdvi::confine(ids.ids(), root, npt, vm_id).then_some(Iommu::AmdVi)
    } else {
        vtd::confine(ids.ids(), root, vm_id).then_some(Iommu::VtD)
    }
}

/// `bdf`'s DMA, under every ID it carries, is the Service VM's again.
pub fn release(bdf: Bdf) {
    let ids = requesters(bdf);
    amdvi::release(ids.ids());
    vtd::release(ids.ids());
}

/// A VM's second-level table at `root` maps `[gpa, gpa + size)` to `hpa` now; when it
/// `replaced` a mapping, no device may use a translation of the old one once this returns.
pub fn mapped(root: u64, gpa: u64, hpa: u64, size: u64, perm: Perm, replaced: bool) {
    amdvi::mapped(root, gpa, hpa, size, perm);
    // VT-d caches no translation of an entry that was not present.
    if replaced {
        vtd::flush();
    }
}

/// A VM's second-level table at `root` no longer maps `[gpa, gpa + size)`: no device may use a
/// translation of it once this returns.
pub fn unmapped(root: u64, gpa: u64, size: u64) {
    amdvi::unmapped(root, gpa, size);
    vtd::flush();
}

/// The message a function's MSI or MSI-X entry is programmed with to raise `vector` at the
/// local APIC that `address` names (0xFEE00000 | APIC ID << 12; fixed, physical, edge). With
/// interrupt remapping on, the IOMMU's entry for it is written first and the message names
/// that entry.
pub fn msi_message(bdf: Bdf, address: u32, vector: u8) -> (u32, u32) {
    let apic_id = (address >> 12) as u8;
    // The entry is checked against (AMD-Vi: looked up by) the ID the IOMMU sees.
    let source = requesters(bdf).seen();
    amdvi::msi_message(source, vector, apic_id)
        .or_else(|| vtd::msi_message(source, vector, u32::from(apic_id)))
        .unwrap_or((address, u32::from(vector)))
}

/// The redirection entry the pin of `gsi` on IOAPIC `ioapic_id` is programmed with for `rte`
/// (fixed, physical destination): remapped by the IOMMU when it remaps interrupts.
pub fn ioapic_entry(ioapic_id: u8, gsi: u32, rte: u64) -> u64 {
    amdvi::ioapic_entry(ioapic_id, rte)
        .or_else(|| vtd::ioapic_entry(ioapic_id, gsi, rte))
        .unwrap_or(rte)
}

/// Whether `addr` is in an IOMMU's registers (the hypervisor's alone).
pub fn register_window(addr: u64) -> bool {
    vtd::register_page(addr) || amdvi::register_window(addr)
}

/// Whether host function `bdf` is an IOMMU itself (the hypervisor's alone).
pub fn iommu_function(bdf: Bdf) -> bool {
    amdvi::iommu_function(bdf)
}

/// Reports the DMA the IOMMUs blocked since the last call (their fault interrupt came): the
/// requester, its VM, the page and why.
pub fn report_faults() {
    let report = |iommu: Iommu| {
        move |f: &DmaFault, count: u32| {
            if count > REPORTED_FAULTS {
                return;
            }
            // Interrupt remapping faults (VT-d reasons 0x20 and up) name the IRTE index in
            // the record's bits 63:48 where a DMA fault has its page.
            if f.reason >= 0x20 && iommu == Iommu::VtD {
                hvlog!(
                    "{iommu}: blocked an interrupt request (IRTE {:#x}) by {:02x}:{:02x}.{} \
                     ({}): fault reason {:#x}",
                    f.page >> 48,
                    f.source.bus,
                    f.source.dev,
                    f.source.func,
                    Requester(crate::devices::pci::owner_of_requester(f.source.raw())),
                    f.reason
                );
                return;
            }
            hvlog!(
                "{iommu}: blocked a DMA {} of page {:#x} by {:02x}:{:02x}.{} ({}): not in its \
                 VM's memory (fault reason {:#x}){}",
                if f.read { "read" } else { "write" },
                f.page,
                f.source.bus,
                f.source.dev,
                f.source.func,
                Requester(crate::devices::pci::owner_of_requester(f.source.raw())),
                f.reason,
                if count == REPORTED_FAULTS {
                    "; further faults of this unit are only counted (shell `pt`)"
                } else {
                    ""
                }
            );
        }
    };
    vtd::report_faults(report(Iommu::VtD));
    amdvi::report_faults(report(Iommu::AmdVi));
}

/// DMA faults recorded so far, all IOMMUs.
pub fn fault_count() -> u32 {
    vtd::fault_count().saturating_add(amdvi::fault_count())
}

/// A requester's VM, for the fault report.
struct Requester(Option<u16>);

impl core::fmt::Display for Requester {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(id) => write!(
                f,
                "VM {id} {}",
                crate::vm::vm(id).map_or("", |vm| vm.name())
            ),
            None => f.write_str("a Service VM device"),
        }
    }
}
