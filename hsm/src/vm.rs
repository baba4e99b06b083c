//! One User VM as the HSM sees it.

use acrn_abi::device::{AcrnMmiodev, AcrnPcidev, AcrnVdev};
use acrn_abi::ioreq::*;
use acrn_abi::irq::{AcrnIrqlineOps, AcrnMsiEntry, GsiOp, HcPtdevIrq};
use acrn_abi::regs::AcrnVcpuRegs;
use acrn_abi::vm::{GuestFlags, VmState};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use spin::{Mutex, RwLock};

use crate::ioreq::{IoAccess, IoClient, IoHandler, IoReqPage};
use crate::memory::{MemSegment, MemoryMap};
use crate::notify::{IoEventFdConfig, IoEventFdHandler, IoEventFdId, IoEventFds, Irqfd, Notifier};
use crate::transport::{HcError, Hypercall, Hypercalls};
use crate::{HsmError, Result};

const PCI_CONF_ADDR: u64 = 0xCF8;
const PCI_CONF_DATA: u64 = 0xCFC;
const PCI_CONF_ENABLE: u32 = 0x8000_0000;

/// A lifecycle operation, for [`lifecycle_transition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VmOp {
    /// `HC_START_VM`.
    Start,
    /// `HC_PAUSE_VM`.
    Pause,
    /// `HC_RESET_VM`.
    Reset,
    /// `HC_DESTROY_VM`.
    Destroy,
    /// `HC_SET_VCPU_REGS` (leaves the state as it is).
    SetVcpuRegs,
}

/// The hypervisor's VM state machine (reference §4.6): the state after `op` from `from`, or
/// `None` if the hypervisor would refuse it.
pub fn lifecycle_transition(op: VmOp, from: VmState) -> Option<VmState> {
    use VmState::*;
    match (op, from) {
        (VmOp::Start, Created) => Some(Running),
        (VmOp::Pause, Running | ReadyToPowerOff | Created | Paused) => Some(Paused),
        (VmOp::Reset, Paused) => Some(Created),
        (VmOp::Destroy, Paused) => Some(PoweredOff),
        (VmOp::SetVcpuRegs, Created | Paused | ReadyToPowerOff) => Some(from),
        _ => None,
    }
}

fn hc(call: &'static str) -> impl FnOnce(HcError) -> HsmError {
    move |err| HsmError::Hypercall { call, err }
}

#[derive(Default)]
struct Clients {
    default: Option<Arc<IoClient>>,
    kernel: Vec<Arc<IoClient>>,
}

/// A User VM created by this HSM. Obtained from [`crate::Hsm::create_vm`]; all methods may be
/// called from several CPUs at once.
pub struct Vm<H: Hypercall + 'static> {
    hv: Arc<H>,
    vmid: u16,
    vcpu_num: u16,
    name: String,
    flags: GuestFlags,
    /// Serialises lifecycle operations; `state` itself is only held briefly.
    lifecycle: Mutex<()>,
    state: Mutex<VmState>,
    page: IoReqPage,
    /// Serialises dispatch; holds the latched 0xCF8 value.
    dispatch: Mutex<u32>,
    clients: RwLock<Clients>,
    next_client_id: AtomicU16,
    /// Per slot: `generation << 32 | client id << 1 | owned`. Set by dispatch, cleared by the
    /// one compare-exchange that wins the right to complete the request.
    owners: [AtomicU64; ACRN_IO_REQUEST_MAX],
    clearing: AtomicBool,
    memory: Mutex<MemoryMap>,
    ioeventfds: Arc<IoEventFds>,
    ioeventfd_client: Arc<IoClient>,
    irqfds: Mutex<Vec<Arc<Irqfd<H>>>>,
}

impl<H: Hypercall + 'static> core::fmt::Debug for Vm<H> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vm")
            .field("vmid", &self.vmid)
            .field("name", &self.name)
            .field("vcpu_num", &self.vcpu_num)
            .field("state", &self.state())
            .finish()
    }
}

impl<H: Hypercall + 'static> Vm<H> {
    /// A freshly created VM (state CREATED) with its ioeventfd client.
    pub(crate) fn new(
        hv: Arc<H>,
        vmid: u16,
        vcpu_num: u16,
        name: String,
        flags: GuestFlags,
    ) -> Self {
        let ioeventfds = Arc::new(IoEventFds::default());
        let handler: Box<dyn IoHandler> = Box::new(IoEventFdHandler(ioeventfds.clone()));
        let ioeventfd_client =
            Arc::new(IoClient::new(1, format!("ioeventfd-{vmid}"), Some(handler)));
        Self {
            hv,
            vmid,
            vcpu_num,
            name,
            flags,
            lifecycle: Mutex::new(()),
            state: Mutex::new(VmState::Created),
            page: IoReqPage::new(),
            dispatch: Mutex::new(0),
            clients: RwLock::new(Clients {
                default: None,
                kernel: alloc::vec![ioeventfd_client.clone()],
            }),
            next_client_id: AtomicU16::new(2),
            owners: [const { AtomicU64::new(0) }; ACRN_IO_REQUEST_MAX],
            clearing: AtomicBool::new(false),
            memory: Mutex::new(MemoryMap::default()),
            ioeventfds,
            ioeventfd_client,
            irqfds: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn ioreq_page_gpa(&self) -> u64 {
        self.hv.gpa_of(self.page.as_ptr())
    }

    /// Relative VM ID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// Number of vCPUs the hypervisor created.
    pub fn vcpu_num(&self) -> u16 {
        self.vcpu_num
    }

    /// The name it was created with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The guest flags it was created with.
    pub fn flags(&self) -> GuestFlags {
        self.flags
    }

    /// The state as far as this HSM knows (a real-time VM's self power-off is not visible).
    pub fn state(&self) -> VmState {
        *self.state.lock()
    }

    /// Slots that can hold requests: one per vCPU, at most 16.
    fn slots(&self) -> usize {
        usize::from(self.vcpu_num).min(ACRN_IO_REQUEST_MAX)
    }

    fn alive(&self, op: &'static str) -> Result<()> {
        match self.state() {
            VmState::PoweredOff => Err(self.bad_state(op, VmState::PoweredOff)),
            _ => Ok(()),
        }
    }

    fn bad_state(&self, op: &'static str, state: VmState) -> HsmError {
        HsmError::InvalidState {
            vmid: self.vmid,
            op,
            state,
        }
    }

    /// Runs a lifecycle hypercall if the state machine allows it, then moves to the new state.
    fn transition(
        &self,
        op: VmOp,
        name: &'static str,
        call: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let from = self.state();
        let to = lifecycle_transition(op, from).ok_or_else(|| self.bad_state(name, from))?;
        call()?;
        *self.state.lock() = to;
        Ok(())
    }

    /// `HC_START_VM`: CREATED -> RUNNING.
    pub fn start(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        self.transition(VmOp::Start, "start", || {
            self.hv.start_vm(self.vmid).map_err(hc("HC_START_VM"))
        })
    }

    /// `HC_PAUSE_VM`: RUNNING, READY_TO_POWEROFF or CREATED -> PAUSED.
    pub fn pause(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        self.transition(VmOp::Pause, "pause", || {
            self.hv.pause_vm(self.vmid).map_err(hc("HC_PAUSE_VM"))
        })
    }

    /// Clears outstanding I/O requests, then `HC_RESET_VM`: PAUSED -> CREATED.
    pub fn reset(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        let from = self.state();
        if lifecycle_transition(VmOp::Reset, from).is_none() {
            return Err(self.bad_state("reset", from));
        }
        self.clear_ioreqs()?;
        self.transition(VmOp::Reset, "reset", || {
            self.hv.reset_vm(self.vmid).map_err(hc("HC_RESET_VM"))
        })?;
        *self.dispatch.lock() = 0;
        Ok(())
    }

    /// `HC_DESTROY_VM` (PAUSED -> POWERED_OFF), then drops clients, notifiers and mappings.
    pub(crate) fn destroy(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        self.transition(VmOp::Destroy, "destroy", || {
            self.hv.destroy_vm(self.vmid).map_err(hc("HC_DESTROY_VM"))
        })?;
        for irqfd in self.irqfds.lock().drain(..) {
            irqfd.deactivate();
        }
        self.ioeventfds.clear();
        let clients = core::mem::take(&mut *self.clients.write());
        for c in clients.kernel.iter().chain(clients.default.iter()) {
            // The hypervisor no longer waits for these requests.
            c.mark_destroyed();
            c.take_all();
        }
        *self.memory.lock() = MemoryMap::default();
        Ok(())
    }

    /// `HC_SET_VCPU_REGS`; not while RUNNING. Reserved fields must be zero.
    pub fn set_vcpu_regs(&self, regs: &AcrnVcpuRegs) -> Result<()> {
        if regs.vcpu_id >= self.vcpu_num {
            return Err(HsmError::InvalidArgument("vcpu_id out of range"));
        }
        if !regs.reserved_fields_clear() {
            return Err(HsmError::InvalidArgument(
                "reserved register fields must be zero",
            ));
        }
        let _l = self.lifecycle.lock();
        self.transition(VmOp::SetVcpuRegs, "set vCPU registers", || {
            self.hv
                .set_vcpu_regs(self.vmid, regs)
                .map_err(hc("HC_SET_VCPU_REGS"))
        })
    }

    // ---- memory -------------------------------------------------------------------------

    /// Maps a batch of segments with one `HC_VM_SET_MEMORY_REGIONS`. The batch is checked first
    /// (alignment, size, access, overlap with itself and with mapped segments, count). If the
    /// hypervisor fails part-way, earlier regions may be mapped but none is recorded.
    pub fn map_memory(&self, batch: &[MemSegment]) -> Result<()> {
        self.alive("map memory")?;
        let mut mem = self.memory.lock();
        let regions = mem.plan_map(batch)?;
        self.hv
            .set_memory_regions(self.vmid, &regions)
            .map_err(hc("HC_VM_SET_MEMORY_REGIONS"))?;
        mem.commit_map(batch);
        Ok(())
    }

    /// Unmaps a segment previously mapped with exactly this GPA and size.
    pub fn unmap_memory(&self, user_vm_gpa: u64, size: u64) -> Result<()> {
        self.alive("unmap memory")?;
        let mut mem = self.memory.lock();
        let region = mem.plan_unmap(user_vm_gpa, size)?;
        self.hv
            .set_memory_regions(self.vmid, &[region])
            .map_err(hc("HC_VM_SET_MEMORY_REGIONS"))?;
        mem.commit_unmap(user_vm_gpa);
        Ok(())
    }

    /// The mapped segments, by User VM GPA.
    pub fn memory_segments(&self) -> Vec<MemSegment> {
        self.memory.lock().segments()
    }

    /// The Service VM GPA backing a User VM GPA, if mapped.
    pub fn translate_gpa(&self, user_vm_gpa: u64) -> Option<u64> {
        self.memory.lock().translate(user_vm_gpa)
    }

    // ---- interrupts and devices ---------------------------------------------------------

    /// `HC_INJECT_MSI`.
    pub fn inject_msi(&self, msi: AcrnMsiEntry) -> Result<()> {
        self.alive("inject an MSI")?;
        self.hv
            .inject_msi(self.vmid, &msi)
            .map_err(hc("HC_INJECT_MSI"))
    }

    /// `HC_SET_IRQLINE`.
    pub fn set_irqline(&self, gsi: u32, op: GsiOp) -> Result<()> {
        self.alive("set an IRQ line")?;
        let ops = AcrnIrqlineOps { gsi, op: op as u32 };
        self.hv
            .set_irqline(self.vmid, ops)
            .map_err(hc("HC_SET_IRQLINE"))
    }

    fn setup_state(&self, op: &'static str, also_paused: bool) -> Result<()> {
        match self.state() {
            VmState::Created => Ok(()),
            VmState::Paused if also_paused => Ok(()),
            s => Err(self.bad_state(op, s)),
        }
    }

    /// `HC_ASSIGN_PCIDEV` (CREATED only).
    pub fn assign_pcidev(&self, dev: &AcrnPcidev) -> Result<()> {
        self.setup_state("assign a PCI device", false)?;
        self.hv
            .assign_pcidev(self.vmid, dev)
            .map_err(hc("HC_ASSIGN_PCIDEV"))
    }

    /// `HC_DEASSIGN_PCIDEV` (CREATED or PAUSED).
    pub fn deassign_pcidev(&self, dev: &AcrnPcidev) -> Result<()> {
        self.setup_state("deassign a PCI device", true)?;
        self.hv
            .deassign_pcidev(self.vmid, dev)
            .map_err(hc("HC_DEASSIGN_PCIDEV"))
    }

    /// `HC_ASSIGN_MMIODEV` (CREATED only).
    pub fn assign_mmiodev(&self, dev: &AcrnMmiodev) -> Result<()> {
        self.setup_state("assign an MMIO device", false)?;
        self.hv
            .assign_mmiodev(self.vmid, dev)
            .map_err(hc("HC_ASSIGN_MMIODEV"))
    }

    /// `HC_DEASSIGN_MMIODEV` (CREATED or PAUSED).
    pub fn deassign_mmiodev(&self, dev: &AcrnMmiodev) -> Result<()> {
        self.setup_state("deassign an MMIO device", true)?;
        self.hv
            .deassign_mmiodev(self.vmid, dev)
            .map_err(hc("HC_DEASSIGN_MMIODEV"))
    }

    /// `HC_ADD_VDEV` (CREATED only).
    pub fn add_vdev(&self, dev: &AcrnVdev) -> Result<()> {
        self.setup_state("add a virtual device", false)?;
        self.hv.add_vdev(self.vmid, dev).map_err(hc("HC_ADD_VDEV"))
    }

    /// `HC_REMOVE_VDEV` (CREATED or PAUSED).
    pub fn remove_vdev(&self, dev: &AcrnVdev) -> Result<()> {
        self.setup_state("remove a virtual device", true)?;
        self.hv
            .remove_vdev(self.vmid, dev)
            .map_err(hc("HC_REMOVE_VDEV"))
    }

    /// `HC_SET_PTDEV_INTR_INFO` (CREATED only).
    pub fn set_ptdev_intr(&self, irq: &HcPtdevIrq) -> Result<()> {
        self.setup_state("route a pass-through interrupt", false)?;
        self.hv
            .set_ptdev_intr(self.vmid, irq)
            .map_err(hc("HC_SET_PTDEV_INTR_INFO"))
    }

    /// `HC_RESET_PTDEV_INTR_INFO` (CREATED or PAUSED).
    pub fn reset_ptdev_intr(&self, irq: &HcPtdevIrq) -> Result<()> {
        self.setup_state("unroute a pass-through interrupt", true)?;
        self.hv
            .reset_ptdev_intr(self.vmid, irq)
            .map_err(hc("HC_RESET_PTDEV_INTR_INFO"))
    }

    // ---- I/O request clients ------------------------------------------------------------

    /// Creates the default client, which gets every request no kernel client claims.
    pub fn create_default_client(&self) -> Result<Arc<IoClient>> {
        self.alive("create an I/O request client")?;
        let client = {
            let mut clients = self.clients.write();
            if clients.default.is_some() {
                return Err(HsmError::ClientExists);
            }
            let c = Arc::new(IoClient::new(
                self.client_id()?,
                String::from("acrndm"),
                None,
            ));
            clients.default = Some(c.clone());
            c
        };
        // Requests that arrived with no client to take them are still PENDING.
        self.dispatch()?;
        Ok(client)
    }

    /// Creates a kernel client; it gets the requests inside the ranges it claims with
    /// [`IoClient::add_range`], which [`Vm::process_kernel_clients`] hands to `handler`.
    pub fn create_client(&self, name: &str, handler: Box<dyn IoHandler>) -> Result<Arc<IoClient>> {
        self.alive("create an I/O request client")?;
        let c = Arc::new(IoClient::new(
            self.client_id()?,
            String::from(name),
            Some(handler),
        ));
        self.clients.write().kernel.push(c.clone());
        Ok(c)
    }

    /// Destroys a client. Requests it still owns are completed (reads return all ones) so no
    /// vCPU waits forever.
    pub fn destroy_client(&self, client: &Arc<IoClient>) -> Result<()> {
        if Arc::ptr_eq(client, &self.ioeventfd_client) {
            return Err(HsmError::InvalidArgument(
                "the ioeventfd client belongs to the VM",
            ));
        }
        {
            let mut clients = self.clients.write();
            if clients
                .default
                .as_ref()
                .is_some_and(|d| Arc::ptr_eq(d, client))
            {
                clients.default = None;
            } else if let Some(i) = clients.kernel.iter().position(|c| Arc::ptr_eq(c, client)) {
                clients.kernel.swap_remove(i);
            } else {
                return Err(HsmError::NoClient);
            }
        }
        client.mark_destroyed();
        self.complete_owned(client, Some(u64::MAX))
    }

    /// The default client, if created.
    pub fn default_client(&self) -> Option<Arc<IoClient>> {
        self.clients.read().default.clone()
    }

    /// Scans the slots for PENDING requests and hands each to its client (the upcall's work
    /// for this VM). PIO 0xCF8/0xCFC-0xCFF are merged into PCI configuration requests as Linux
    /// does. Returns how many requests were handed out or completed.
    pub fn dispatch(&self) -> Result<usize> {
        let mut conf_addr = self.dispatch.lock();
        let clients = self.clients.read();
        let mut count = 0;
        let mut first_err = None;
        for vcpu in 0..self.slots() {
            if self.page.state(vcpu) != ACRN_IOREQ_STATE_PENDING {
                continue;
            }
            let step = if self.clearing.load(Ordering::Acquire) {
                self.complete_slot(vcpu, Some(u64::MAX)).map(|()| true)
            } else {
                self.handle_cf8cfc(&mut conf_addr, vcpu)
            };
            match step {
                Ok(true) => {
                    count += 1;
                    continue;
                }
                Ok(false) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            }
            let access = self.page.read(vcpu);
            let client = clients
                .kernel
                .iter()
                .find(|c| c.claims(&access))
                .or(clients.default.as_ref());
            // With no client the request stays PENDING until one is created.
            let Some(client) = client else { continue };
            let generation =
                (self.owners[vcpu].load(Ordering::Acquire) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
            self.owners[vcpu].store(
                generation << 32 | u64::from(client.id()) << 1 | 1,
                Ordering::Release,
            );
            self.page.set_kernel_handled(vcpu, !client.is_default());
            self.page.set_state(vcpu, ACRN_IOREQ_STATE_PROCESSING);
            client.mark_pending(vcpu);
            count += 1;
        }
        first_err.map_or(Ok(count), Err)
    }

    /// Completes 0xCF8 accesses and 0xCFC-0xCFF accesses with config space disabled; rewrites
    /// enabled 0xCFC-0xCFF accesses into PCICFG requests. True if the request was completed.
    fn handle_cf8cfc(&self, conf_addr: &mut u32, vcpu: usize) -> Result<bool> {
        let (ty, mut reqs) = self.page.raw_payload(vcpu);
        if ty != ACRN_IOREQ_TYPE_PORTIO {
            return Ok(false);
        }
        // SAFETY: every view of the union is plain integers.
        let pio = unsafe { reqs.pio_request };
        let write = pio.direction == ACRN_IOREQ_DIR_WRITE;
        if pio.address == PCI_CONF_ADDR && pio.size == 4 {
            if write {
                *conf_addr = pio.value;
            }
            self.complete_slot(vcpu, Some((*conf_addr).into()))?;
            return Ok(true);
        }
        if !(PCI_CONF_DATA..PCI_CONF_DATA + 4).contains(&pio.address) {
            return Ok(false);
        }
        let addr = *conf_addr;
        if addr & PCI_CONF_ENABLE == 0 {
            self.complete_slot(vcpu, Some(u64::MAX))?;
            return Ok(true);
        }
        let offset = (pio.address - PCI_CONF_DATA) as u32;
        // Only the PCI fields past the header shared with the PIO layout change.
        reqs.pci_request.bus = (addr >> 16) & 0xFF;
        reqs.pci_request.dev = (addr >> 11) & 0x1F;
        reqs.pci_request.func = (addr >> 8) & 0x7;
        reqs.pci_request.reg = (addr & 0xFC) + ((addr >> 16) & 0xF00) + offset;
        self.page.write_request(vcpu, ACRN_IOREQ_TYPE_PCICFG, reqs);
        Ok(false)
    }

    /// Writes the read value (if the request is a read), marks the slot COMPLETE and, unless the
    /// hypervisor polls, sends `HC_NOTIFY_REQUEST_FINISH`. The caller must own the slot.
    fn complete_slot(&self, vcpu: usize, read_value: Option<u64>) -> Result<()> {
        if let Some(v) = read_value {
            self.page.write_read_value(vcpu, v);
        }
        // Read before COMPLETE: afterwards the slot belongs to the hypervisor again.
        let polling = self.page.completion_polling(vcpu);
        self.page.set_state(vcpu, ACRN_IOREQ_STATE_COMPLETE);
        if polling {
            return Ok(());
        }
        self.hv
            .notify_request_finish(self.vmid, vcpu as u16)
            .map_err(hc("HC_NOTIFY_REQUEST_FINISH"))
    }

    /// Completes every request `client` still owns.
    fn complete_owned(&self, client: &IoClient, read_value: Option<u64>) -> Result<()> {
        let bits = client.pending();
        let mut first_err = Ok(());
        for vcpu in (0..self.slots()).filter(|v| bits & (1 << v) != 0) {
            if self.claim(client, vcpu, None).is_none() {
                continue;
            }
            if let Err(e) = self.complete_slot(vcpu, read_value) {
                first_err = first_err.and(Err(e));
            }
        }
        first_err
    }

    /// Runs every kernel client's handler on the requests it owns and completes them. Returns
    /// how many were completed.
    pub fn process_kernel_clients(&self) -> Result<usize> {
        let clients = self.clients.read().kernel.clone();
        let mut count = 0;
        for client in &clients {
            let Some(handler) = client.handler() else {
                continue;
            };
            let bits = client.pending();
            for vcpu in (0..self.slots()).filter(|v| bits & (1 << v) != 0) {
                // Whoever wins the claim owns the request: it is handled exactly once.
                let Some(seq) = self.claim(client, vcpu, None) else {
                    continue;
                };
                let mut access = self.read(vcpu, seq);
                handler.handle(&mut access);
                self.complete_slot(vcpu, (!access.write).then_some(access.value))?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// The request the default client owns for `vcpu`.
    pub fn request(&self, vcpu: u16) -> Result<IoAccess> {
        let client = self.default_client().ok_or(HsmError::NoClient)?;
        if usize::from(vcpu) >= self.slots() {
            return Err(HsmError::InvalidArgument("vCPU out of range"));
        }
        let token = self.owners[usize::from(vcpu)].load(Ordering::Acquire);
        if token & 1 == 0 || (token >> 1) as u16 != client.id() {
            return Err(HsmError::NotPending(vcpu));
        }
        Ok(self.read(usize::from(vcpu), (token >> 32) as u32))
    }

    /// Every request the default client owns, lowest vCPU first.
    pub fn default_requests(&self) -> Vec<IoAccess> {
        let Some(client) = self.default_client() else {
            return Vec::new();
        };
        let bits = client.pending();
        (0..self.slots())
            .filter(|v| bits & (1 << v) != 0)
            .filter_map(|v| self.request(v as u16).ok())
            .collect()
    }

    /// Completes a request the default client got from [`Vm::request`] or
    /// [`Vm::default_requests`]; `read_value` is what a read returns (ignored for writes).
    /// Completing a request twice, or after its vCPU moved on to a newer request, fails with
    /// [`HsmError::NotPending`].
    pub fn complete_request(&self, req: &IoAccess, read_value: u64) -> Result<()> {
        let client = self.default_client().ok_or(HsmError::NoClient)?;
        let vcpu = usize::from(req.vcpu);
        if vcpu >= self.slots() {
            return Err(HsmError::InvalidArgument("vCPU out of range"));
        }
        self.claim(&client, vcpu, Some(req.seq))
            .ok_or(HsmError::NotPending(req.vcpu))?;
        self.complete_slot(vcpu, Some(read_value))
    }

    /// Wins the right to complete slot `vcpu` if `client` owns it (and, if given, it is still
    /// generation `seq`); returns the generation.
    fn claim(&self, client: &IoClient, vcpu: usize, seq: Option<u32>) -> Option<u32> {
        let owner = &self.owners[vcpu];
        let mut token = owner.load(Ordering::Acquire);
        loop {
            let generation = (token >> 32) as u32;
            if token & 1 == 0
                || (token >> 1) as u16 != client.id()
                || seq.is_some_and(|s| s != generation)
            {
                return None;
            }
            match owner.compare_exchange_weak(
                token,
                token & !1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    client.clear_pending(vcpu);
                    return Some(generation);
                }
                Err(now) => token = now,
            }
        }
    }

    fn read(&self, vcpu: usize, seq: u32) -> IoAccess {
        IoAccess {
            seq,
            ..self.page.read(vcpu)
        }
    }

    fn client_id(&self) -> Result<u16> {
        // Ids are never reused so a stale token cannot match a new client.
        self.next_client_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |id| id.checked_add(1))
            .map_err(|_| HsmError::InvalidArgument("out of I/O request client ids"))
    }

    /// Completes every outstanding request (reads return all ones, kernel clients run first),
    /// as before a reset.
    pub fn clear_ioreqs(&self) -> Result<()> {
        self.clearing.store(true, Ordering::Release);
        let result = (|| {
            self.process_kernel_clients()?;
            if let Some(d) = self.default_client() {
                self.complete_owned(&d, Some(u64::MAX))?;
            }
            self.dispatch().map(drop)
        })();
        self.clearing.store(false, Ordering::Release);
        result
    }

    // ---- notifiers ----------------------------------------------------------------------

    /// Assigns an ioeventfd: guest writes matching `cfg` call `notifier`, and the request is
    /// completed in the HSM (reads of the register return 0).
    pub fn assign_ioeventfd(
        &self,
        cfg: IoEventFdConfig,
        notifier: Arc<dyn Notifier>,
    ) -> Result<IoEventFdId> {
        self.alive("assign an ioeventfd")?;
        let id = self.ioeventfds.assign(cfg, notifier)?;
        let last = cfg.addr + u64::from(cfg.len) - 1;
        self.ioeventfd_client.add_range(cfg.kind, cfg.addr, last)?;
        Ok(id)
    }

    /// Removes an ioeventfd.
    pub fn deassign_ioeventfd(&self, id: IoEventFdId) -> Result<()> {
        let cfg = self.ioeventfds.deassign(id)?;
        let last = cfg.addr + u64::from(cfg.len) - 1;
        self.ioeventfd_client.remove_range(cfg.kind, cfg.addr, last)
    }

    /// Assigns an irqfd: a [`Notifier`] whose every signal injects `msi`.
    pub fn assign_irqfd(self: &Arc<Self>, msi: AcrnMsiEntry) -> Result<Arc<Irqfd<H>>> {
        self.alive("assign an irqfd")?;
        let irqfd = Arc::new(Irqfd::new(Arc::downgrade(self), msi));
        self.irqfds.lock().push(irqfd.clone());
        Ok(irqfd)
    }

    /// Deassigns an irqfd; later signals do nothing.
    pub fn deassign_irqfd(&self, irqfd: &Arc<Irqfd<H>>) -> Result<()> {
        let mut list = self.irqfds.lock();
        let i = list
            .iter()
            .position(|i| Arc::ptr_eq(i, irqfd))
            .ok_or(HsmError::NoNotifier)?;
        list.swap_remove(i).deactivate();
        Ok(())
    }
}
