//! Per-pCPU vCPU schedulers, chosen by the scenario's `<SCHEDULER>`: `Noop`, `Iorr`, `Bvt` and
//! `Prio`, after ACRN's `sched_{noop,iorr,bvt,prio}`. Pure logic: no hardware, no allocation.
//!
//! Each pCPU owns one [`Scheduler`] with a run queue of threads, each a vCPU pinned to that pCPU
//! and named by a [`ThreadId`] the caller maps to its (VM, vCPU). The idle thread is implicit:
//! [`Scheduler::pick_next`] returning `None` means "run idle".
//!
//! Time is monotonic **nanoseconds** (`now: u64`); the caller converts from the TSC with its
//! known frequency. Time going backwards is treated as no time passing.
//!
//! The contract the run loop follows:
//! - A thread is added sleeping ([`Scheduler::add`]) and becomes runnable with
//!   [`Scheduler::wake`]; a vCPU that halts or waits for an I/O request completion calls
//!   [`Scheduler::sleep`], the interrupt or completion that ends the wait calls `wake`.
//! - Every operation that returns `true` (or `Ok(true)`) asks for a reschedule: the run loop
//!   calls [`Scheduler::pick_next`] at its next chance and switches to the thread it returns.
//!   `pick_next` is safe to call at any other time too, but calling it only when asked keeps
//!   BVT's context-switch allowance (each call charges the current thread and restarts it).
//! - A scheduler is per pCPU and not synchronised: a wake from another pCPU takes that pCPU's
//!   lock, and when it returns `true` the waker kicks the pCPU (IPI) so it reschedules.
//! - After every call into the scheduler, the run loop re-arms the pCPU's timer at
//!   [`Scheduler::next_event`] (`None`: no timer needed; a time not after `now`: fire at once).
//!   When it fires, it calls [`Scheduler::tick`], which says whether to reschedule.

mod bvt;
mod iorr;
mod noop;
mod prio;
#[cfg(test)]
mod tests;

use core::fmt;

use acrn_static_config::{BvtParams, Priority, VmConfig};

pub use bvt::Bvt;
pub use iorr::Iorr;
pub use noop::Noop;
pub use prio::Prio;

/// Threads one pCPU can hold. A VM has at most one vCPU per pCPU, so this bounds the VMs that
/// can share a pCPU.
pub const MAX_THREADS: usize = 32;

/// One millisecond in the scheduler's time unit.
pub const MS: u64 = 1_000_000;

/// A schedulable thread (a vCPU) of one pCPU, numbered by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u16);

/// The scenario's scheduling settings of a vCPU: those of its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedParams {
    pub priority: Priority,
    pub bvt: BvtParams,
}

impl SchedParams {
    pub const DEFAULT: SchedParams = SchedParams {
        priority: Priority::Low,
        bvt: BvtParams::DEFAULT,
    };

    pub const fn of_vm(vm: &VmConfig) -> Self {
        SchedParams {
            priority: vm.priority,
            bvt: vm.bvt,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedError {
    /// The pCPU already holds [`MAX_THREADS`] threads.
    Full,
    /// The thread was added before.
    AlreadyAdded(ThreadId),
    /// The thread was never added or was removed.
    UnknownThread(ThreadId),
    /// `SCHED_NOOP` runs one thread per pCPU and holds `present` already.
    NoopOccupied { present: ThreadId },
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::Full => write!(f, "the pCPU runs {MAX_THREADS} threads already"),
            SchedError::AlreadyAdded(t) => write!(f, "thread {} is on this pCPU already", t.0),
            SchedError::UnknownThread(t) => write!(f, "thread {} is not on this pCPU", t.0),
            SchedError::NoopOccupied { present } => write!(
                f,
                "SCHED_NOOP runs one vCPU per pCPU and this pCPU runs thread {} already; \
                 give the VMs disjoint cpu_affinity or choose another SCHEDULER",
                present.0
            ),
        }
    }
}

/// Clears `current` if it is `thread`; true if it was (the caller must reschedule).
fn forget_if_current(current: &mut Option<ThreadId>, thread: ThreadId) -> bool {
    let was = *current == Some(thread);
    if was {
        *current = None;
    }
    was
}

/// One pCPU's scheduler, of the policy the scenario chose.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "no heap: one per pCPU in a static, sized for the largest policy (about 3 KiB)"
)]
pub enum Scheduler {
    Noop(Noop),
    Iorr(Iorr),
    Bvt(Bvt),
    Prio(Prio),
}

macro_rules! dispatch {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Scheduler::Noop($s) => $e,
            Scheduler::Iorr($s) => $e,
            Scheduler::Bvt($s) => $e,
            Scheduler::Prio($s) => $e,
        }
    };
}

impl Scheduler {
    pub const fn new(policy: acrn_static_config::Scheduler) -> Self {
        use acrn_static_config::Scheduler as Policy;
        match policy {
            Policy::Noop => Scheduler::Noop(Noop::new()),
            Policy::Iorr => Scheduler::Iorr(Iorr::new()),
            Policy::Bvt => Scheduler::Bvt(Bvt::new()),
            Policy::Prio => Scheduler::Prio(Prio::new()),
        }
    }

    pub const fn policy(&self) -> acrn_static_config::Scheduler {
        use acrn_static_config::Scheduler as Policy;
        match self {
            Scheduler::Noop(_) => Policy::Noop,
            Scheduler::Iorr(_) => Policy::Iorr,
            Scheduler::Bvt(_) => Policy::Bvt,
            Scheduler::Prio(_) => Policy::Prio,
        }
    }

    /// Adds a sleeping thread; [`Scheduler::wake`] makes it runnable.
    pub fn add(&mut self, thread: ThreadId, params: SchedParams) -> Result<(), SchedError> {
        dispatch!(self, s => s.add(thread, params))
    }

    /// Takes a thread off the pCPU, runnable or not. `Ok(true)`: it was the current thread;
    /// reschedule.
    pub fn remove(&mut self, thread: ThreadId) -> Result<bool, SchedError> {
        dispatch!(self, s => s.remove(thread))
    }

    /// Makes a sleeping thread runnable (waking a runnable one does nothing). `Ok(true)`:
    /// reschedule, the woken thread should run before the current one (or the pCPU idles).
    pub fn wake(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        dispatch!(self, s => s.wake(thread, now))
    }

    /// Makes a thread not runnable until its next wake. `Ok(true)`: it was the current
    /// thread; reschedule.
    pub fn sleep(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        dispatch!(self, s => s.sleep(thread, now))
    }

    /// The current thread offers the pCPU to others (a PAUSE loop). `Ok(true)`: another
    /// thread is runnable; reschedule. A thread that is not current yields nothing.
    pub fn yield_now(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        dispatch!(self, s => s.yield_now(thread, now))
    }

    /// Charges the current thread for its time and chooses the thread to run from `now`
    /// (`None`: idle). It becomes the current thread.
    pub fn pick_next(&mut self, now: u64) -> Option<ThreadId> {
        dispatch!(self, s => s.pick_next(now))
    }

    /// The timer armed at [`Scheduler::next_event`] fired: `true` when the current thread's
    /// turn is over (reschedule).
    pub fn tick(&mut self, now: u64) -> bool {
        dispatch!(self, s => s.tick(now))
    }

    /// When to call [`Scheduler::tick`] next; `None` when nothing can end the current turn
    /// but a wake, sleep, yield or remove.
    pub fn next_event(&self, now: u64) -> Option<u64> {
        dispatch!(self, s => s.next_event(now))
    }

    /// The thread the last [`Scheduler::pick_next`] chose, if still on the pCPU and runnable.
    pub fn current(&self) -> Option<ThreadId> {
        dispatch!(self, s => s.current())
    }

    pub fn is_runnable(&self, thread: ThreadId) -> bool {
        dispatch!(self, s => s.is_runnable(thread))
    }

    pub fn contains(&self, thread: ThreadId) -> bool {
        dispatch!(self, s => s.contains(thread))
    }
}

/// The threads of a pCPU with the policy's per-thread data `D`, in fixed slots.
#[derive(Debug)]
struct Threads<D: Copy> {
    slots: [Option<(ThreadId, D)>; MAX_THREADS],
}

impl<D: Copy> Threads<D> {
    const fn new() -> Self {
        Threads {
            slots: [None; MAX_THREADS],
        }
    }

    fn add(&mut self, thread: ThreadId, data: D) -> Result<(), SchedError> {
        if self.get(thread).is_some() {
            return Err(SchedError::AlreadyAdded(thread));
        }
        let free = self
            .slots
            .iter_mut()
            .find(|s| s.is_none())
            .ok_or(SchedError::Full)?;
        *free = Some((thread, data));
        Ok(())
    }

    fn remove(&mut self, thread: ThreadId) -> Result<(), SchedError> {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| matches!(s, Some((t, _)) if *t == thread))
            .ok_or(SchedError::UnknownThread(thread))?;
        *slot = None;
        Ok(())
    }

    fn get(&self, thread: ThreadId) -> Option<&D> {
        self.slots.iter().find_map(|s| match s {
            Some((t, d)) if *t == thread => Some(d),
            _ => None,
        })
    }

    fn get_mut(&mut self, thread: ThreadId) -> Option<&mut D> {
        self.slots.iter_mut().find_map(|s| match s {
            Some((t, d)) if *t == thread => Some(d),
            _ => None,
        })
    }

    fn require(&self, thread: ThreadId) -> Result<&D, SchedError> {
        self.get(thread).ok_or(SchedError::UnknownThread(thread))
    }
}

/// The runnable threads of a pCPU in the order a policy keeps them (the current thread stays
/// in it while it runs).
#[derive(Debug)]
struct RunQueue {
    ids: [ThreadId; MAX_THREADS],
    len: usize,
}

impl RunQueue {
    const fn new() -> Self {
        RunQueue {
            ids: [ThreadId(0); MAX_THREADS],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[ThreadId] {
        self.ids.get(..self.len).unwrap_or(&[])
    }

    fn contains(&self, thread: ThreadId) -> bool {
        self.as_slice().contains(&thread)
    }

    fn first(&self) -> Option<ThreadId> {
        self.as_slice().first().copied()
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Inserts at `index` (clamped to the end). Callers hold at most [`MAX_THREADS`] threads,
    /// so the queue has room; a full queue ignores the insert rather than lose another entry.
    fn insert(&mut self, index: usize, thread: ThreadId) {
        if self.len >= MAX_THREADS || self.contains(thread) {
            return;
        }
        let index = index.min(self.len);
        self.ids.copy_within(index..self.len, index + 1);
        self.ids[index] = thread;
        self.len += 1;
    }

    fn push_back(&mut self, thread: ThreadId) {
        self.insert(self.len, thread);
    }

    fn remove(&mut self, thread: ThreadId) -> bool {
        let Some(index) = self.as_slice().iter().position(|t| *t == thread) else {
            return false;
        };
        self.ids.copy_within(index + 1..self.len, index);
        self.len -= 1;
        true
    }

    /// Inserts `thread` before the first queued thread for which `goes_before` holds, else
    /// at the end: threads that compare equal keep their arrival order.
    fn insert_before_first(&mut self, thread: ThreadId, goes_before: impl Fn(ThreadId) -> bool) {
        let index = self
            .as_slice()
            .iter()
            .position(|t| goes_before(*t))
            .unwrap_or(self.len);
        self.insert(index, thread);
    }
}
