//! `SCHED_PRIO`: strict priority, after ACRN's `sched_prio`. The runnable thread of the
//! highest priority runs until it sleeps or yields; a waking thread of higher priority than the
//! current one preempts it; threads of equal priority take turns when the current one sleeps
//! or yields (a woken or yielding thread queues behind the others of its priority). Lower
//! priorities run only while no higher one is runnable, so a busy `PRIO_HIGH` vCPU starves
//! `PRIO_LOW` ones on its pCPU, as in ACRN. No timer.

use acrn_static_config::Priority;

use super::{RunQueue, SchedError, SchedParams, ThreadId, Threads};

#[derive(Debug)]
pub struct Prio {
    threads: Threads<Rank>,
    /// Runnable threads, highest priority first.
    queue: RunQueue,
    current: Option<ThreadId>,
}

/// A priority as a number, larger runs first.
type Rank = u8;

const fn rank(p: Priority) -> Rank {
    match p {
        Priority::Low => 0,
        Priority::High => 1,
    }
}

impl Prio {
    pub const fn new() -> Self {
        Prio {
            threads: Threads::new(),
            queue: RunQueue::new(),
            current: None,
        }
    }

    pub fn add(&mut self, thread: ThreadId, params: SchedParams) -> Result<(), SchedError> {
        self.threads.add(thread, rank(params.priority))
    }

    pub fn remove(&mut self, thread: ThreadId) -> Result<bool, SchedError> {
        self.threads.remove(thread)?;
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn wake(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        let rank = *self.threads.require(thread)?;
        if self.queue.contains(thread) {
            return Ok(false);
        }
        self.enqueue(thread, rank);
        let current_rank = self.current.and_then(|c| self.threads.get(c).copied());
        Ok(current_rank.is_none_or(|c| rank > c))
    }

    pub fn sleep(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn yield_now(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        let rank = *self.threads.require(thread)?;
        if self.current != Some(thread) {
            return Ok(false);
        }
        self.queue.remove(thread);
        self.enqueue(thread, rank);
        Ok(self.queue.first() != Some(thread))
    }

    pub fn pick_next(&mut self, _now: u64) -> Option<ThreadId> {
        self.current = self.queue.first();
        self.current
    }

    pub fn tick(&mut self, _now: u64) -> bool {
        self.queue.first() != self.current
    }

    pub fn next_event(&self, now: u64) -> Option<u64> {
        (self.queue.first() != self.current).then_some(now)
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

    /// Queues `thread` behind every runnable thread of its priority or higher.
    fn enqueue(&mut self, thread: ThreadId, rank: Rank) {
        let threads = &self.threads;
        self.queue
            .insert_before_first(thread, |t| threads.get(t).is_some_and(|r| *r < rank));
    }

    fn forget_if_current(&mut self, thread: ThreadId) -> bool {
        super::forget_if_current(&mut self.current, thread)
    }
}

impl Default for Prio {
    fn default() -> Self {
        Self::new()
    }
}
