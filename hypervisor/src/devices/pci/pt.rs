//! Pass-through functions on a pre-launched VM's virtual PCI bus (`pci_devs`), and their
//! hardware side: which host functions the VMs own (so the Service VM never reaches them),
//! their BAR windows mapped into the VM's NPT/EPT (uncached) or forwarded when they are
//! smaller than a page or I/O ports, and their MSI and MSI-X remapped: the hardware sends a
//! hypervisor vector to a pCPU of the VM, which becomes the message the VM programmed. The
//! pages of a BAR that hold the MSI-X table are not mapped: the VM's accesses there exit and
//! reach the virtual table.
//!
//! DMA is confined by the IOMMU when the machine has one (`hv::iommu`: VT-d sends the function's
//! DMA through its VM's NPT/EPT, AMD-Vi through an I/O page table that mirrors it). Without an IOMMU a pass-through function can read and write any host
//! memory, and its DMA addresses are the VM's guest-physical ones, which only equal host
//! addresses for a VM whose memory starts at host address 0; the boot log says which.

use super::passthrough::{
    reset_function, MsixAccess, PassthroughFunction, PhysConfig, ProbeError, PtBar, PtBarKind,
    WriteEffect,
};
use super::requester::{self, Requesters};
use crate::devices::held::HeldSource;
use crate::devices::physical::{self, HostFunction};
use crate::devices::IOAPIC_GPA;
use crate::hv::iommu::Iommu;
use crate::hvlog;
use crate::vm::Vm;
use acrn_static_config::{Bdf, LoadOrder};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::{Mutex, MutexGuard, Once};

/// Pass-through functions one VM may have.
pub const MAX_PT_FUNCTIONS: usize = 8;
/// Host functions the platform may pass through (all VMs).
const MAX_OWNED: usize = 16;
/// The hypervisor's vectors for pass-through MSIs: 0xE0..0xEF (below its timer at 0xEF).
const MSI_FIRST_VECTOR: u8 = 0xE0;
const MSI_VECTORS: usize = 15;
const PAGE: u64 = 0x1000;
const APICS_END: u64 = 0xFEF0_0000;

/// A host function a VM owns: a pre-launched VM's from its `pci_devs` (probed once at the
/// first use), a post-launched VM's from HC_ASSIGN_PCIDEV until HC_DEASSIGN_PCIDEV or its
/// destruction.
struct Owned {
    vm: u16,
    /// Its index in the VM's pass-through slots.
    slot: usize,
    pbdf: Bdf,
    vbdf: Bdf,
    function: PassthroughFunction,
    /// Its MSI vector (index into [`MSI_OWNERS`]).
    vector: Option<u8>,
    /// The vectors of its first MSI-X entries (the rest stay masked).
    msix: Vectors,
    /// The IDs its requests carry (its own and its bridges' aliases), for fault reports.
    requesters: Requesters,
}

/// Consecutive hypervisor vectors: the first and how many.
#[derive(Clone, Copy, Default)]
struct Vectors {
    first: u8,
    count: usize,
}

impl Vectors {
    fn get(&self, n: usize) -> Option<u8> {
        (n < self.count).then(|| self.first + n as u8)
    }
}

/// The MSI_OWNERS entry code of an MSI (not an MSI-X entry).
const MSI_ENTRY: u32 = 0xFF;

static OWNED: Mutex<[Option<Owned>; MAX_OWNED]> = Mutex::new([const { None }; MAX_OWNED]);
/// The pre-launched VMs' functions were probed into [`OWNED`].
static PRE_LAUNCHED_PROBED: Once<()> = Once::new();
/// Who each pass-through vector belongs to: VM id << 16 | slot << 8 | MSI-X entry (or
/// [`MSI_ENTRY`]), plus one (0: free).
static MSI_OWNERS: [AtomicU32; MSI_VECTORS] = [const { AtomicU32::new(0) }; MSI_VECTORS];
/// Interrupts each pass-through vector brought since its owner took it (HC_VM_INTR_MONITOR).
static MSI_COUNTS: [AtomicU64; MSI_VECTORS] = [const { AtomicU64::new(0) }; MSI_VECTORS];

/// Up to `count` free pass-through vectors in a row (from the first free one), now owned by
/// `owner(n)` for the n-th; how many were taken and the first.
fn take_vectors(count: usize, owner: impl Fn(u32) -> u32) -> Vectors {
    let Some(first) = MSI_OWNERS
        .iter()
        .position(|o| o.load(Ordering::Acquire) == 0)
        .filter(|_| count > 0)
    else {
        return Vectors::default();
    };
    let taken = MSI_OWNERS[first..]
        .iter()
        .take(count)
        .take_while(|o| o.load(Ordering::Acquire) == 0)
        .count();
    for (n, o) in MSI_OWNERS[first..first + taken].iter().enumerate() {
        MSI_COUNTS[first + n].store(0, Ordering::Relaxed);
        o.store(owner(n as u32) + 1, Ordering::Release);
    }
    Vectors {
        first: MSI_FIRST_VECTOR + first as u8,
        count: taken,
    }
}

/// Gives back the vectors of VM `vm`'s slot `slot`.
fn free_vectors(vm: u16, slot: usize) {
    let key = u32::from(vm) << 8 | slot as u32;
    for o in &MSI_OWNERS {
        let v = o.load(Ordering::Acquire);
        if v != 0 && (v - 1) >> 8 == key {
            o.store(0, Ordering::Release);
        }
    }
}

/// Probes `pbdf` for VM `vm` (its slot `slot`, at `vbdf`) and takes its vectors.
fn own(vm: u16, slot: usize, pbdf: Bdf, vbdf: Bdf, vbars: [u64; 6]) -> Result<Owned, ProbeError> {
    let function = PassthroughFunction::probe(&HostFunction(pbdf), vbars)?;
    let owner = u32::from(vm) << 16 | (slot as u32) << 8;
    let vector = function
        .has_msi()
        .then(|| take_vectors(1, |_| owner | MSI_ENTRY).get(0))
        .flatten();
    let msix = take_vectors(function.msix_entries(), |n| owner | n);
    if msix.count < function.msix_entries() {
        hvlog!(
            "VM {vm}: PCI {:02x}:{:02x}.{}: MSI-X entries {} and up stay masked (out of \
             pass-through vectors)",
            pbdf.bus,
            pbdf.dev,
            pbdf.func,
            msix.count
        );
    }
    Ok(Owned {
        vm,
        slot,
        pbdf,
        vbdf,
        function,
        vector,
        msix,
        requesters: crate::hv::iommu::requesters(pbdf),
    })
}

/// The table of owned functions, with the pre-launched VMs' probed.
fn owned() -> MutexGuard<'static, [Option<Owned>; MAX_OWNED]> {
    PRE_LAUNCHED_PROBED.call_once(|| {
        let mut table = OWNED.lock();
        let mut n = 0;
        for vm in crate::hv::platform()
            .vms
            .iter()
            .filter(|v| v.load_order == LoadOrder::PreLaunched)
        {
            for (slot, d) in vm.pci_devs.iter().enumerate() {
                let owned = if slot >= MAX_PT_FUNCTIONS || n >= MAX_OWNED {
                    Err(AssignError::Full)
                } else if crate::hv::iommu::iommu_function(d.pbdf) {
                    Err(AssignError::Iommu)
                } else if let Some(e) = shares_requester(&table, vm.id, d.pbdf) {
                    Err(e)
                } else {
                    own(vm.id, slot, d.pbdf, d.vbdf, d.vbars).map_err(AssignError::Probe)
                };
                match owned {
                    Ok(o) => {
                        table[n] = Some(o);
                        n += 1;
                    }
                    // Still claimed: the Service VM must not get a device the scenario gave
                    // to a pre-launched VM.
                    Err(e) => hvlog!(
                        "VM {} {}: pci_devs {:02x}:{:02x}.{} not passed through: {e}",
                        vm.id,
                        vm.name,
                        d.pbdf.bus,
                        d.pbdf.dev,
                        d.pbdf.func
                    ),
                }
            }
        }
    });
    OWNED.lock()
}

/// Whether `bdf` is a host function a VM owns (the Service VM must not see it).
pub fn owned_host_function(bdf: Bdf) -> bool {
    owner_of(bdf).is_some()
}

/// The VM that owns host function `bdf`: a pre-launched VM by its `pci_devs` (whether or not
/// the function could be probed), or the VM it is assigned to.
pub fn owner_of(bdf: Bdf) -> Option<u16> {
    owner_of_in(&owned(), bdf)
}

/// Whether host address `hpa` is in a memory BAR of a function a VM owns.
pub fn owned_host_window(hpa: u64) -> bool {
    owned().iter().flatten().any(|o| {
        (0..6).any(|i| {
            o.function.bar(i).is_some_and(|(_, b)| {
                matches!(b.kind, PtBarKind::Mem(_)) && hpa >= b.host && hpa - b.host < b.size
            })
        })
    })
}

/// Why a function cannot be assigned to a post-launched VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssignError {
    /// A VM owns it already.
    Owned(u16),
    /// It is a host bridge, an ISA/LPC bridge or another bridge: the platform's, not a VM's.
    Bridge,
    Probe(ProbeError),
    /// The VM has a pass-through function at that virtual BDF already.
    VbdfTaken,
    /// The VM (or the platform) has no pass-through slot left.
    Full,
    /// A BAR decodes the hypervisor's console UART.
    Console,
    /// It is an IOMMU: the hypervisor's.
    Iommu,
    /// The IOMMU sees its requests with the same ID as `with`'s (a bridge's alias), which
    /// another VM (`owner`), or the Service VM (None), has.
    SharesRequester {
        with: Bdf,
        owner: Option<u16>,
    },
}

impl core::fmt::Display for AssignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AssignError::Owned(vm) => write!(f, "VM {vm} owns it"),
            AssignError::Bridge => f.write_str("it is a bridge (the platform's)"),
            AssignError::Probe(e) => write!(f, "{e}"),
            AssignError::VbdfTaken => f.write_str("the VM has a device at that virtual BDF"),
            AssignError::Console => f.write_str("it is the hypervisor's console UART"),
            AssignError::Iommu => f.write_str("it is the hypervisor's IOMMU"),
            AssignError::SharesRequester { with, owner } => {
                write!(
                    f,
                    "the IOMMU sees its requests with the requester ID of {:02x}:{:02x}.{}'s \
                     (both are behind one PCIe-to-PCI or PCI bridge, whose ID replaces theirs), \
                     and ",
                    with.bus, with.dev, with.func
                )?;
                match owner {
                    Some(vm) => write!(f, "VM {vm} owns that function")?,
                    None => f.write_str("the Service VM has that function")?,
                }
                f.write_str(": the functions behind such a bridge can only go to one VM together")
            }
            AssignError::Full => write!(
                f,
                "no pass-through slot left ({MAX_PT_FUNCTIONS} per VM, {MAX_OWNED} in all)"
            ),
        }
    }
}

/// Hands host function `pbdf` from the Service VM to `vm` (post-launched, not running) at
/// `vbdf`, its BARs at `vbars` (0: the host address); the VM's virtual PCI gets it.
pub fn assign(vm: &Vm, pbdf: Bdf, vbdf: Bdf, vbars: [u64; 6]) -> Result<(), AssignError> {
    let host = HostFunction(pbdf);
    let class = host.read32(0x08) >> 24;
    let slot = {
        let table = owned();
        if let Some(owner) = owner_of_in(&table, pbdf) {
            return Err(AssignError::Owned(owner));
        }
        if class == 0x06 {
            return Err(AssignError::Bridge);
        }
        if crate::hv::iommu::iommu_function(pbdf) {
            return Err(AssignError::Iommu);
        }
        if let Some(e) = shares_requester(&table, vm.id, pbdf) {
            return Err(e);
        }
        let mine = || table.iter().flatten().filter(|o| o.vm == vm.id);
        if mine().any(|o| o.vbdf == vbdf) {
            return Err(AssignError::VbdfTaken);
        }
        if table.iter().all(|o| o.is_some()) {
            return Err(AssignError::Full);
        }
        let slot = (0..MAX_PT_FUNCTIONS)
            .find(|&s| !mine().any(|o| o.slot == s))
            .ok_or(AssignError::Full)?;
        // Before sizing, which turns decoding off.
        if decodes_console(&host) {
            return Err(AssignError::Console);
        }
        slot
    };
    // The Service VM's view goes first: its MSI remapping of the function ends. Then the
    // Service VM's state in the function, outside the table's lock (a reset takes 100 ms;
    // the Service VM's hypercalls come one at a time, so nothing took the function meanwhile).
    physical::release_service_function(pbdf);
    reset(&host);
    {
        let mut table = owned();
        let free = table
            .iter()
            .position(|o| o.is_none())
            .ok_or(AssignError::Full)?;
        table[free] = Some(own(vm.id, slot, pbdf, vbdf, vbars).map_err(AssignError::Probe)?);
    }
    vm.devices.pci().attach(vm);
    Ok(())
}

/// Resets `host` as it changes owner (see [`reset_function`]); logged, and so is a function
/// that has no way to be reset.
fn reset(host: &HostFunction) {
    if host.read32(0) & 0xFFFF == 0xFFFF {
        return;
    }
    let Bdf { bus, dev, func } = host.0;
    match reset_function(host, |ms| crate::arch::x86::delay_us(u64::from(ms) * 1000)) {
        Some(how) => hvlog!(
            "PCI {bus:02x}:{dev:02x}.{func}: reset ({}) for its next owner",
            how.describe()
        ),
        None => hvlog!(
            "PCI {bus:02x}:{dev:02x}.{func}: no reset (no FLR, no soft reset from D3hot): its \
             next owner may find its last owner's state"
        ),
    }
}

/// Whether a BAR of `f` is where the hypervisor's console UART is (its registers in the
/// first 4 KiB of a memory BAR or the first 8 ports of an I/O BAR), read without sizing.
fn decodes_console(f: &HostFunction) -> bool {
    let (io, addr) = match crate::hv::platform().board.serial {
        Some(acrn_static_config::SerialPort::Pio { base, .. }) => (true, u64::from(base)),
        Some(acrn_static_config::SerialPort::Mmio { base, .. }) => (false, base),
        None => return false,
    };
    let mut i = 0u16;
    while i < 6 {
        let low = f.read32(0x10 + 4 * i);
        let is_io = low & 1 == 1;
        let wide = !is_io && low & 0x6 == 0x4 && i < 5;
        let base = if is_io {
            u64::from(low & !3)
        } else if wide {
            u64::from(low & !0xF) | u64::from(f.read32(0x14 + 4 * i)) << 32
        } else {
            u64::from(low & !0xF)
        };
        let span = if is_io { 8 } else { PAGE };
        if base != 0 && is_io == io && addr >= base && addr - base < span {
            return true;
        }
        i += if wide { 2 } else { 1 };
    }
    false
}

/// Why `bdf` cannot go to VM `vm` alone: a function whose requests the IOMMU sees with the
/// same ID (behind the same aliasing bridge) has another owner, which would share the IOMMU
/// entry. A function no VM owns counts as the Service VM's when there is one.
fn shares_requester(table: &[Option<Owned>; MAX_OWNED], vm: u16, bdf: Bdf) -> Option<AssignError> {
    let service = crate::hv::platform()
        .vms
        .iter()
        .any(|v| v.load_order == LoadOrder::Service);
    // Another VM's function whose requests carry one of the same IDs (a bridge's alias or
    // one the firmware names).
    let ids = crate::hv::iommu::requesters(bdf);
    if let Some(o) = table
        .iter()
        .flatten()
        .find(|o| o.vm != vm && o.requesters.ids().iter().any(|id| ids.ids().contains(id)))
    {
        return Some(AssignError::SharesRequester {
            with: o.pbdf,
            owner: Some(o.vm),
        });
    }
    requester::other_owner(&physical::HostPci, bdf, vm, service, |f| {
        owner_of_in(table, f)
    })
    .map(|(with, owner)| AssignError::SharesRequester { with, owner })
}

/// Whether a VM owns a host function on a bus in `first..=last`.
pub fn owned_on_buses(first: u8, last: u8) -> bool {
    let on = |bdf: Bdf| (first..=last).contains(&bdf.bus);
    crate::hv::platform()
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
        .any(|v| v.pci_devs.iter().any(|d| on(d.pbdf)))
        || owned().iter().flatten().any(|o| on(o.pbdf))
}

/// The VM whose function's requests carry requester ID `id` (its own or a bridge's alias).
pub fn owner_of_requester(id: u16) -> Option<u16> {
    let table = owned();
    table
        .iter()
        .flatten()
        .find(|o| o.requesters.ids().contains(&id))
        .map(|o| o.vm)
        .or_else(|| owner_of_in(&table, Bdf::from_raw(id)))
}

fn owner_of_in(table: &[Option<Owned>; MAX_OWNED], bdf: Bdf) -> Option<u16> {
    let pre = crate::hv::platform()
        .vms
        .iter()
        .filter(|v| v.load_order == LoadOrder::PreLaunched)
        .find(|v| v.pci_devs.iter().any(|d| d.pbdf == bdf))
        .map(|v| v.id);
    pre.or_else(|| table.iter().flatten().find(|o| o.pbdf == bdf).map(|o| o.vm))
}

/// Gives host function `pbdf` (at `vbdf` in `vm`) back to the Service VM: the VM's virtual
/// PCI loses it, its DMA is the Service VM's again. Whether it was assigned there.
pub fn deassign(vm: &Vm, pbdf: Bdf, vbdf: Bdf) -> bool {
    let slot = {
        let table = owned();
        let Some(o) = table
            .iter()
            .flatten()
            .find(|o| o.vm == vm.id && o.pbdf == pbdf && o.vbdf == vbdf)
        else {
            return false;
        };
        if is_pre_launched(vm.id) {
            return false;
        }
        o.slot
    };
    vm.devices.pci().detach(vm, slot);
    let mut table = owned();
    for entry in table.iter_mut() {
        if entry
            .as_ref()
            .is_some_and(|o| o.vm == vm.id && o.slot == slot)
        {
            *entry = None;
        }
    }
    free_vectors(vm.id, slot);
    // Outside the table's lock: VT-d's fault report looks owners up in it.
    drop(table);
    reset(&HostFunction(pbdf));
    crate::hv::iommu::release(pbdf);
    // The bridge's alias went back with it: the VM's other functions behind that bridge
    // (only this VM's can be there) take it again.
    if crate::hv::iommu::requesters(pbdf).aliased_by().is_some() {
        let mut others = [None; MAX_OWNED];
        for (slot, o) in others
            .iter_mut()
            .zip(owned().iter().flatten().filter(|o| o.vm == vm.id))
        {
            *slot = Some(o.pbdf);
        }
        for other in others.into_iter().flatten() {
            crate::hv::iommu::confine(other, vm.table_root(), vm.is_npt(), vm.id);
        }
    }
    hvlog!(
        "VM {} {}: PCI {:02x}:{:02x}.{} given back to the Service VM",
        vm.id,
        vm.name(),
        pbdf.bus,
        pbdf.dev,
        pbdf.func
    );
    true
}

/// Every function assigned to `vm` goes back to the Service VM (the VM is destroyed).
pub fn deassign_all(vm: &Vm) {
    loop {
        let next = owned()
            .iter()
            .flatten()
            .find(|o| o.vm == vm.id)
            .map(|o| (o.pbdf, o.vbdf));
        match next {
            Some((pbdf, vbdf)) if !is_pre_launched(vm.id) => {
                deassign(vm, pbdf, vbdf);
            }
            _ => return,
        }
    }
}

fn is_pre_launched(vm: u16) -> bool {
    crate::hv::platform()
        .vms
        .iter()
        .any(|v| v.id == vm && v.load_order == LoadOrder::PreLaunched)
}

/// The host function of `vm`'s pass-through device at `vbdf`, if it has one there.
pub fn assigned_at(vm: u16, vbdf: Bdf) -> Option<Bdf> {
    owned()
        .iter()
        .flatten()
        .find(|o| o.vm == vm && o.vbdf == vbdf)
        .map(|o| o.pbdf)
}

/// One pass-through function of a VM.
pub struct PtSlot {
    pub vbdf: Bdf,
    pbdf: Bdf,
    function: PassthroughFunction,
    vector: Option<u8>,
    msix: Vectors,
    /// Where the hardware's messages go: the local APIC of the pCPU of the VM's vCPU 0.
    message_addr: Option<u32>,
    /// DMA goes through the VM's table (VT-d).
    confined: Option<Iommu>,
    /// The hardware's command register as last written (its decode bits gate the windows);
    /// kept here so an access's routing costs no configuration cycle.
    command: u16,
    /// Memory BAR windows mapped into the VM now: (guest address, size).
    mapped: [Option<(u64, u64)>; 6],
    /// A refused window was reported (once per slot).
    reported: bool,
}

impl PtSlot {
    fn host(&self) -> HostFunction {
        HostFunction(self.pbdf)
    }

    pub fn pbdf(&self) -> Bdf {
        self.pbdf
    }

    /// The VM's pass-through functions at power-on (indexed by slot), quiesced (no
    /// decoding, bus mastering or MSI until the VM turns them on).
    pub fn for_vm(vm: &Vm) -> [Option<PtSlot>; MAX_PT_FUNCTIONS] {
        let mut out: [Option<PtSlot>; MAX_PT_FUNCTIONS] = core::array::from_fn(|_| None);
        for o in owned().iter().flatten().filter(|o| o.vm == vm.id) {
            if let Some(slot) = out.get_mut(o.slot) {
                *slot = Some(PtSlot {
                    vbdf: o.vbdf,
                    pbdf: o.pbdf,
                    function: o.function.clone(),
                    vector: o.vector,
                    msix: o.msix,
                    message_addr: vm.vcpu0_msi_address(),
                    confined: None,
                    command: 0,
                    mapped: [None; 6],
                    reported: false,
                });
            }
        }
        // Outside the table's lock: VT-d's fault report looks owners up in it.
        for s in out.iter_mut().flatten() {
            s.confined = crate::hv::iommu::confine(s.pbdf, vm.table_root(), vm.is_npt(), vm.id);
            s.function.quiesce(&s.host());
        }
        out
    }

    /// Stops the function's decoding, bus mastering, MSI and MSI-X (its VM stopped).
    pub fn quiesce(&mut self) {
        self.mask_msix_entries();
        self.function.quiesce(&self.host());
        self.command = 0;
    }

    /// Stops the function and takes its windows out of the VM (a VM reset).
    pub fn release(&mut self, vm: &Vm) -> bool {
        self.quiesce();
        let mut flush = false;
        for w in self.mapped.iter_mut() {
            if let Some((gpa, size)) = w.take() {
                let _ = vm.memory().unmap(gpa, size);
                flush = true;
            }
        }
        flush
    }

    pub fn config_read(&self, offset: u16, size: u8) -> u32 {
        self.function.config_read(&self.host(), offset, size)
    }

    /// A configuration write; whether the VM must flush its TLBs.
    pub fn config_write(&mut self, vm: &Vm, offset: u16, size: u8, value: u32) -> bool {
        let WriteEffect { windows, msi, msix } =
            self.function
                .config_write(&self.host(), offset, size, value);
        if msi {
            self.program_msi();
        }
        if windows {
            self.command = self.function.command(&self.host());
        }
        // The hardware's table is only reachable while memory decoding is on.
        if msix || windows {
            self.program_msix();
        }
        windows && self.remap(vm)
    }

    fn program_msi(&self) {
        let host = match (
            self.function.guest_message(),
            self.vector,
            self.message_addr,
        ) {
            (Some(_), Some(vector), Some(addr)) => {
                let (address, data) = crate::hv::iommu::msi_message(self.pbdf, addr, vector);
                Some((address, data as u16))
            }
            _ => None,
        };
        self.function.program_msi(&self.host(), host);
    }

    /// The hardware's MSI-X table entry `n` as the VM's entry says, then (`all`) every entry
    /// and the enable and function mask.
    fn program_msix_entry(&self, n: usize) {
        let host = self
            .msix
            .get(n)
            .zip(self.message_addr)
            .map(|(v, addr)| crate::hv::iommu::msi_message(self.pbdf, addr, v));
        self.write_msix_entry(n, host);
    }

    fn write_msix_entry(&self, n: usize, host: Option<(u32, u32)>) {
        let Some((bar, _, _)) = self.function.msix_window() else {
            return;
        };
        let (Some((_, b)), Some((at, dwords))) = (
            self.function.bar(bar),
            self.function.msix_hardware_entry(n, host),
        ) else {
            return;
        };
        if self.command & super::function::COMMAND_MEMORY == 0 {
            return;
        }
        physical::write_msix_entry(b.host + at, dwords);
    }

    fn program_msix(&self) {
        if self.function.msix_entries() == 0 {
            return;
        }
        for n in 0..self.function.msix_hw_entries() {
            self.program_msix_entry(n);
        }
        self.function.program_msix(&self.host(), true);
    }

    fn mask_msix_entries(&self) {
        for n in 0..self.function.msix_hw_entries() {
            self.write_msix_entry(n, None);
        }
    }

    /// Maps the memory BAR windows the VM decodes now; whether a mapping was replaced.
    fn remap(&mut self, vm: &Vm) -> bool {
        let command = self.command;
        let mem = vm.memory();
        let mut flush = false;
        for i in 0..6 {
            let want = self.function.bar(i).and_then(|(gpa, b)| {
                (matches!(b.kind, PtBarKind::Mem(_))
                    && command & super::function::COMMAND_MEMORY != 0
                    && b.size >= PAGE)
                    .then_some((gpa, b))
            });
            if self.mapped[i].map(|m| m.0) == want.map(|w| w.0) {
                continue;
            }
            if let Some((gpa, size)) = self.mapped[i].take() {
                let _ = mem.unmap(gpa, size);
                flush = true;
            }
            let Some((gpa, b)) = want else { continue };
            // The MSI-X table's pages stay unmapped: the VM's accesses exit to the table.
            let hole = self
                .function
                .msix_window()
                .filter(|(bar, _, _)| *bar == i)
                .map_or((b.size, 0), |(_, start, len)| (start, len));
            let pieces = [
                (0, hole.0),
                (hole.0 + hole.1, b.size.saturating_sub(hole.0 + hole.1)),
            ];
            let refused = if overlaps_reserved(vm, gpa, b.size) {
                Some("overlaps its RAM, ECAM or the APICs")
            } else if pieces
                .iter()
                .filter(|(_, len)| *len > 0)
                .any(|&(off, len)| mem.map_device(gpa + off, b.host + off, len).is_err())
            {
                let _ = mem.unmap(gpa, b.size);
                flush = true;
                Some("cannot be mapped")
            } else {
                self.mapped[i] = Some((gpa, b.size));
                None
            };
            if let Some(why) = refused.filter(|_| !self.reported) {
                self.reported = true;
                hvlog!(
                    "VM {} {}: pass-through {:02x}:{:02x}.{} BAR{i} at {gpa:#x} {why}; not \
                     mapped there (reported once)",
                    vm.id,
                    vm.name(),
                    self.vbdf.bus,
                    self.vbdf.dev,
                    self.vbdf.func
                );
            }
        }
        flush
    }

    /// The forwarded (unmapped) BAR holding `addr` in `io` space or memory: the host address.
    /// An access must lie inside the BAR whole (`len` bytes), so none reaches past it.
    fn forwarded(&self, addr: u64, len: u64, io: bool) -> Option<u64> {
        let command = self.command;
        (0..6).find_map(|i| {
            let (base, b): (u64, PtBar) = self.function.bar(i)?;
            let decodes = match b.kind {
                PtBarKind::Io => io && command & super::function::COMMAND_IO != 0,
                PtBarKind::Mem(_) => {
                    !io && command & super::function::COMMAND_MEMORY != 0 && b.size < PAGE
                }
            };
            let off = addr.checked_sub(base)?;
            (decodes && off.checked_add(len)? <= b.size).then_some(b.host + off)
        })
    }

    /// The offset into the MSI-X table's BAR of a VM access at `addr` to the table's pages
    /// (`len` bytes, inside them whole), and the BAR's host address.
    fn msix_page(&self, addr: u64, len: u64) -> Option<(u64, u64)> {
        let (bar, start, size) = self.function.msix_window()?;
        let (base, b) = self.function.bar(bar)?;
        let off = addr.checked_sub(base)?;
        let inside = self.command & super::function::COMMAND_MEMORY != 0
            && off >= start
            && off.checked_add(len)? <= start + size;
        inside.then_some((off, b.host))
    }

    pub fn claims(&self, addr: u64, io: bool) -> bool {
        self.forwarded(addr, 1, io).is_some() || (!io && self.msix_page(addr, 1).is_some())
    }

    /// A forwarded BAR access or one to the MSI-X table's pages: the value read.
    pub fn access(&mut self, addr: u64, io: bool, size: u8, value: Option<u64>) -> u64 {
        if let Some((off, host)) = self.msix_page(addr, u64::from(size.max(1))).filter(|_| !io) {
            return match self.function.msix_access(off, size, value) {
                MsixAccess::Table(v) => v,
                MsixAccess::EntryChanged(n) => {
                    self.program_msix_entry(n);
                    0
                }
                MsixAccess::Hardware(off) => physical::mmio_access(host + off, size, value),
            };
        }
        match self.forwarded(addr, u64::from(size.max(1)), io) {
            Some(host) if io => u64::from(physical::port_access(
                host as u16,
                size,
                value.map(|v| v as u32),
            )),
            Some(host) => physical::mmio_access(host, size, value),
            None => u64::MAX >> (64 - 8 * u32::from(size.clamp(1, 8))),
        }
    }

    /// The message the VM programmed, for an interrupt the function raised: its MSI, or
    /// MSI-X entry `n`.
    pub fn guest_message(&self, msix_entry: Option<usize>) -> Option<(u64, u32)> {
        match msix_entry {
            None => self.function.guest_message(),
            Some(n) => self.function.msix_message(n),
        }
        .map(|m| (m.addr, m.data))
    }

    /// What the boot log says about the function.
    pub fn describe(&self, vm: &Vm) {
        hvlog!(
            "VM {} {}: PCI {:02x}:{:02x}.{} passed through at {:02x}:{:02x}.{}{}{}; {}{}",
            vm.id,
            vm.name(),
            self.pbdf.bus,
            self.pbdf.dev,
            self.pbdf.func,
            self.vbdf.bus,
            self.vbdf.dev,
            self.vbdf.func,
            if self.vector.is_some() { ", MSI" } else { "" },
            MsixNote(self.function.msix_entries(), self.msix.count),
            Confinement(self.confined),
            Aliases(crate::hv::iommu::requesters(self.pbdf))
        );
    }
}

/// The boot log's note on the IDs a function's requests carry besides its own.
struct Aliases(Requesters);

impl core::fmt::Display for Aliases {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Some((bridge, _, _)) = self.0.aliased_by() else {
            return Ok(());
        };
        let seen = Bdf::from_raw(self.0.seen());
        write!(
            f,
            ", its requests seen as {:02x}:{:02x}.{} (the alias of bridge {:02x}:{:02x}.{})",
            seen.bus, seen.dev, seen.func, bridge.bus, bridge.dev, bridge.func
        )
    }
}

/// The boot log's DMA part: which IOMMU confines the function, if any.
struct Confinement(Option<Iommu>);

impl core::fmt::Display for Confinement {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(iommu) => write!(f, "DMA confined to the VM's memory ({iommu})"),
            None => f.write_str("DMA is not confined (no IOMMU)"),
        }
    }
}

/// The boot log's MSI-X part: entries the VM sees, entries with a vector.
struct MsixNote(usize, usize);

impl core::fmt::Display for MsixNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            MsixNote(0, _) => Ok(()),
            MsixNote(n, v) if v == n => write!(f, ", MSI-X ({n} entries)"),
            MsixNote(n, v) => write!(f, ", MSI-X ({n} entries, {v} with a vector)"),
        }
    }
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

fn overlaps_reserved(vm: &Vm, gpa: u64, size: u64) -> bool {
    let over_ram = vm
        .info()
        .and_then(|i| i.cfg)
        .is_some_and(|c| c.memory.iter().any(|r| overlaps(gpa, size, r.gpa, r.size)));
    over_ram
        || overlaps(gpa, size, IOAPIC_GPA, APICS_END - IOAPIC_GPA)
        || overlaps(gpa, size, super::ECAM_GPA, super::ECAM_SIZE)
}

/// The MSI and MSI-X interrupts of VM `vm`'s pass-through functions: (hypervisor vector,
/// interrupts since the function was given) each.
pub fn msi_counts(vm: u16, mut f: impl FnMut(u32, u64)) {
    for (i, o) in MSI_OWNERS.iter().enumerate() {
        let owner = o.load(Ordering::Acquire);
        if owner != 0 && ((owner - 1) >> 16) as u16 == vm {
            f(
                u32::from(MSI_FIRST_VECTOR) + i as u32,
                MSI_COUNTS[i].load(Ordering::Relaxed),
            );
        }
    }
}

/// A pass-through MSI vector the calling pCPU took: the owning VM gets the message it
/// programmed. Whether `vector` was one.
pub fn dispatch(vector: u8) -> bool {
    let Some(index) = vector
        .checked_sub(MSI_FIRST_VECTOR)
        .map(usize::from)
        .filter(|&i| i < MSI_VECTORS)
    else {
        return false;
    };
    let owner = MSI_OWNERS[index].load(Ordering::Acquire);
    let Some(owner) = owner.checked_sub(1) else {
        return false;
    };
    MSI_COUNTS[index].fetch_add(1, Ordering::Relaxed);
    let (vm_id, slot, entry) = (
        (owner >> 16) as u16,
        (owner >> 8 & 0xFF) as usize,
        owner & 0xFF,
    );
    let msix_entry = (entry != MSI_ENTRY).then_some(entry as usize);
    if let Some(vm) = crate::vm::vm(vm_id) {
        let source = HeldSource::Msi {
            slot,
            entry: msix_entry,
        };
        vm.devices.passthrough_interrupt(vm, source);
    }
    true
}
