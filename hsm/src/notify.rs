//! ioeventfd-style and irqfd-style notifiers.
//!
//! An *ioeventfd* turns a guest write of a value to an address into a [`Notifier`] call, handled
//! entirely inside the HSM (a kernel I/O request client), without a round trip to the device
//! model. An *irqfd* is a [`Notifier`] that injects an MSI into the VM. Chaining the two gives a
//! guest doorbell that raises an interrupt with no device model involvement at all.

use acrn_abi::irq::AcrnMsiEntry;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

use crate::ioreq::{IoAccess, IoHandler, RangeKind};
use crate::transport::Hypercall;
use crate::vm::Vm;
use crate::{HsmError, Result};

/// Something to signal (an eventfd in Linux).
pub trait Notifier: Send + Sync {
    /// Signals once. Must not block.
    fn notify(&self);
}

/// An ioeventfd to assign.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IoEventFdConfig {
    /// Port or MMIO address space.
    pub kind: RangeKind,
    /// Address of the register.
    pub addr: u64,
    /// Register width: 1, 2, 4 or 8 bytes. Writes of at most this size at `addr` match.
    pub len: u32,
    /// Signal only when the written value equals this (`None`: any value).
    pub datamatch: Option<u64>,
}

/// Handle of an assigned ioeventfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoEventFdId(pub u64);

struct IoEventFd {
    id: IoEventFdId,
    cfg: IoEventFdConfig,
    notifier: Arc<dyn Notifier>,
}

/// The ioeventfds of one VM, shared with the VM's ioeventfd client.
#[derive(Default)]
pub(crate) struct IoEventFds {
    list: Mutex<Vec<IoEventFd>>,
    next_id: AtomicU64,
}

impl IoEventFds {
    /// Validates and records an ioeventfd; the caller claims the address range.
    pub(crate) fn assign(
        &self,
        cfg: IoEventFdConfig,
        notifier: Arc<dyn Notifier>,
    ) -> Result<IoEventFdId> {
        if !matches!(cfg.len, 1 | 2 | 4 | 8) {
            return Err(HsmError::InvalidArgument(
                "ioeventfd length must be 1, 2, 4 or 8",
            ));
        }
        if cfg.addr.checked_add(cfg.len.into()).is_none() {
            return Err(HsmError::InvalidArgument("ioeventfd range wraps around"));
        }
        let mut list = self.list.lock();
        // Two entries that could both fire on one write would make the result ambiguous.
        let conflict = list.iter().any(|e| {
            e.cfg.kind == cfg.kind
                && e.cfg.addr == cfg.addr
                && match (e.cfg.datamatch, cfg.datamatch) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        });
        if conflict {
            return Err(HsmError::IoEventFdConflict);
        }
        let id = IoEventFdId(self.next_id.fetch_add(1, Ordering::Relaxed));
        list.push(IoEventFd { id, cfg, notifier });
        Ok(id)
    }

    /// Forgets an ioeventfd and returns its configuration (to release its range).
    pub(crate) fn deassign(&self, id: IoEventFdId) -> Result<IoEventFdConfig> {
        let mut list = self.list.lock();
        let i = list
            .iter()
            .position(|e| e.id == id)
            .ok_or(HsmError::NoNotifier)?;
        Ok(list.swap_remove(i).cfg)
    }

    pub(crate) fn clear(&self) {
        self.list.lock().clear();
    }
}

/// The handler of the VM's ioeventfd client: reads return 0, matching writes notify.
pub(crate) struct IoEventFdHandler(pub(crate) Arc<IoEventFds>);

impl IoHandler for IoEventFdHandler {
    fn handle(&self, access: &mut IoAccess) {
        if !access.write {
            access.value = 0;
            return;
        }
        let Some(kind) = access.range_kind() else {
            return;
        };
        // Clone the notifier out so it runs without the list lock held.
        let hit = self.0.list.lock().iter().find_map(|e| {
            let matches = e.cfg.kind == kind
                && e.cfg.addr == access.addr
                && u64::from(e.cfg.len) >= access.size
                && e.cfg.datamatch.is_none_or(|d| d == access.value);
            matches.then(|| e.notifier.clone())
        });
        if let Some(n) = hit {
            n.notify();
        }
    }
}

/// An irqfd: each [`Notifier::notify`] injects its MSI into the VM, until deassigned.
pub struct Irqfd<H: Hypercall + 'static> {
    vm: Weak<Vm<H>>,
    msi: AcrnMsiEntry,
    active: AtomicBool,
    injected: AtomicU64,
    failed: AtomicU64,
}

impl<H: Hypercall + 'static> Irqfd<H> {
    pub(crate) fn new(vm: Weak<Vm<H>>, msi: AcrnMsiEntry) -> Self {
        Self {
            vm,
            msi,
            active: AtomicBool::new(true),
            injected: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The MSI it injects.
    pub fn msi(&self) -> AcrnMsiEntry {
        self.msi
    }

    /// False once deassigned or once its VM is destroyed.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// MSIs injected successfully.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    /// Injections the hypervisor refused (the notifier cannot report errors to its caller).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
    }
}

impl<H: Hypercall + 'static> Notifier for Irqfd<H> {
    fn notify(&self) {
        if !self.is_active() {
            return;
        }
        let Some(vm) = self.vm.upgrade() else { return };
        match vm.inject_msi(self.msi) {
            Ok(()) => self.injected.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}
