//! `SCHED_NOOP`: one vCPU owns the pCPU; it runs whenever it is runnable, else the pCPU idles.

use super::{SchedError, SchedParams, ThreadId};

#[derive(Debug)]
pub struct Noop {
    thread: Option<NoopThread>,
    running: bool,
}

#[derive(Debug, Clone, Copy)]
struct NoopThread {
    id: ThreadId,
    runnable: bool,
}

impl Noop {
    pub const fn new() -> Self {
        Noop {
            thread: None,
            running: false,
        }
    }

    fn require(&mut self, thread: ThreadId) -> Result<&mut NoopThread, SchedError> {
        match &mut self.thread {
            Some(t) if t.id == thread => Ok(t),
            _ => Err(SchedError::UnknownThread(thread)),
        }
    }

    pub fn add(&mut self, thread: ThreadId, _params: SchedParams) -> Result<(), SchedError> {
        match self.thread {
            Some(t) if t.id == thread => Err(SchedError::AlreadyAdded(thread)),
            Some(t) => Err(SchedError::NoopOccupied { present: t.id }),
            None => {
                self.thread = Some(NoopThread {
                    id: thread,
                    runnable: false,
                });
                Ok(())
            }
        }
    }

    pub fn remove(&mut self, thread: ThreadId) -> Result<bool, SchedError> {
        self.require(thread)?;
        self.thread = None;
        Ok(core::mem::take(&mut self.running))
    }

    pub fn wake(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        let running = self.running;
        let t = self.require(thread)?;
        t.runnable = true;
        Ok(!running)
    }

    pub fn sleep(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        self.require(thread)?.runnable = false;
        Ok(core::mem::take(&mut self.running))
    }

    pub fn yield_now(&mut self, thread: ThreadId, _now: u64) -> Result<bool, SchedError> {
        self.require(thread)?;
        Ok(false)
    }

    pub fn pick_next(&mut self, _now: u64) -> Option<ThreadId> {
        let next = self.thread.filter(|t| t.runnable).map(|t| t.id);
        self.running = next.is_some();
        next
    }

    pub fn tick(&mut self, _now: u64) -> bool {
        !self.running && self.runnable_thread().is_some()
    }

    pub fn next_event(&self, now: u64) -> Option<u64> {
        (!self.running && self.runnable_thread().is_some()).then_some(now)
    }

    pub fn current(&self) -> Option<ThreadId> {
        if self.running {
            self.runnable_thread()
        } else {
            None
        }
    }

    fn runnable_thread(&self) -> Option<ThreadId> {
        self.thread.filter(|t| t.runnable).map(|t| t.id)
    }

    pub fn is_runnable(&self, thread: ThreadId) -> bool {
        self.runnable_thread() == Some(thread)
    }

    pub fn contains(&self, thread: ThreadId) -> bool {
        self.thread.is_some_and(|t| t.id == thread)
    }
}

impl Default for Noop {
    fn default() -> Self {
        Self::new()
    }
}
