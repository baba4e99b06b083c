//! `SCHED_IORR`: round robin with a 10 ms slice, after ACRN's `sched_iorr`.
//!
//! The current thread runs until its slice is used up, it sleeps (halt, I/O wait) or yields;
//! then it goes to the queue's tail. A slice is used up across sleeps: a thread that sleeps
//! keeps what is left of its slice and gets a new one only when that is spent. Where ACRN
//! ticks every 1 ms and checks the slice, [`Iorr::next_event`] gives the slice's exact end.
//!
//! Deviation from ACRN: a waking thread joins the queue's *tail* and does not preempt. ACRN
//! puts it at the head and reschedules, and does not charge a thread that sleeps for the time
//! it ran, so a vCPU that sleeps briefly just before its slice ends would get a fresh slice on
//! every wake and leave the others fractions of a millisecond; at the tail every runnable
//! thread runs within (runnable threads - 1) x 10 ms.

use super::{RunQueue, SchedError, SchedParams, ThreadId, Threads, MS};

/// Length of a round-robin slice.
pub const SLICE: u64 = 10 * MS;

#[derive(Debug)]
pub struct Iorr {
    threads: Threads<IorrThread>,
    queue: RunQueue,
    current: Option<ThreadId>,
    /// When the current thread was last charged.
    since: u64,
}

#[derive(Debug, Clone, Copy)]
struct IorrThread {
    /// What is left of the thread's slice, in ns; it may go negative when a tick comes late.
    left: i64,
}

const SLICE_I64: i64 = SLICE as i64;

impl Iorr {
    pub const fn new() -> Self {
        Iorr {
            threads: Threads::new(),
            queue: RunQueue::new(),
            current: None,
            since: 0,
        }
    }

    pub fn add(&mut self, thread: ThreadId, _params: SchedParams) -> Result<(), SchedError> {
        self.threads.add(thread, IorrThread { left: SLICE_I64 })
    }

    pub fn remove(&mut self, thread: ThreadId) -> Result<bool, SchedError> {
        self.threads.remove(thread)?;
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn wake(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.queue.contains(thread) {
            return Ok(false);
        }
        self.queue.push_back(thread);
        Ok(self.current.is_none())
    }

    pub fn sleep(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.current == Some(thread) {
            self.charge_current(now);
        }
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn yield_now(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.current != Some(thread) || self.queue.len() < 2 {
            return Ok(false);
        }
        self.charge_current(now);
        self.queue.remove(thread);
        self.queue.push_back(thread);
        Ok(true)
    }

    pub fn pick_next(&mut self, now: u64) -> Option<ThreadId> {
        if let Some(current) = self.current {
            self.charge_current(now);
            let spent = self.threads.get(current).is_some_and(|d| d.left <= 0);
            if spent && self.queue.remove(current) {
                self.queue.push_back(current);
            }
        }
        let next = self.queue.first();
        if let Some(d) = next.and_then(|t| self.threads.get_mut(t)) {
            if d.left <= 0 {
                // As many new slices as the late tick overran, so lateness is not a gift.
                d.left = d.left % SLICE_I64 + SLICE_I64;
            }
        }
        self.current = next;
        self.since = self.since.max(now);
        next
    }

    pub fn tick(&mut self, now: u64) -> bool {
        self.next_event(now).is_some_and(|t| t <= now)
    }

    pub fn next_event(&self, now: u64) -> Option<u64> {
        let Some(current) = self.current else {
            return (self.queue.len() > 0).then_some(now);
        };
        if self.queue.len() < 2 {
            return None;
        }
        let left = self.threads.get(current).map_or(0, |d| d.left);
        let end = self.since.saturating_add(u64::try_from(left).unwrap_or(0));
        Some(end.max(now))
    }

    pub fn current(&self) -> Option<ThreadId> {
        self.current
    }

    pub fn is_runnable(&self, thread: ThreadId) -> bool {
        self.queue.contains(thread)
    }

    pub fn contains(&self, thread: ThreadId) -> bool {
        self.threads.get(thread).is_some()
    }

    fn charge_current(&mut self, now: u64) {
        let ran = now.saturating_sub(self.since);
        self.since = self.since.max(now);
        if let Some(d) = self.current.and_then(|t| self.threads.get_mut(t)) {
            d.left = d
                .left
                .saturating_sub(i64::try_from(ran).unwrap_or(i64::MAX));
        }
    }

    fn forget_if_current(&mut self, thread: ThreadId) -> bool {
        super::forget_if_current(&mut self.current, thread)
    }
}

impl Default for Iorr {
    fn default() -> Self {
        Self::new()
    }
}
