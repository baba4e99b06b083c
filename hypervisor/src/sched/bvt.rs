//! `SCHED_BVT`: borrowed virtual time (Duda and Cheriton, SOSP '99), after ACRN's `sched_bvt`.
//!
//! Each thread has an actual virtual time (AVT) that advances while it runs, by its run time
//! times a ratio inversely proportional to its `bvt_weight` (`VT_RATIO_MAX / weight`), counted
//! in minimum charging units (MCU, 1 ms). The runnable thread with the earliest effective
//! virtual time (EVT) runs; EVT is AVT less the warp while a thread is warped. Over time every
//! runnable thread gets CPU time in proportion to its weight.
//!
//! The current thread runs until its EVT passes the next thread's by the context-switch
//! allowance (CSA, 5 MCU of its run time), so threads of equal weight alternate every 5 ms or
//! so instead of every tick. A waking thread's AVT is raised to the scheduler virtual time
//! (SVT, the least AVT of the runnable threads), so sleeping banks no time.
//!
//! Warp (`bvt_warp_value > 0`): on waking, a thread's EVT is its AVT less the warp value (in
//! AVT units) for `bvt_warp_limit` MCUs of its run time (1 if 0, as in ACRN), giving it a low
//! wake-up latency without changing its long-term share (AVT is still charged). After a warp
//! ends it may warp again only `bvt_unwarp_period` MCUs later.
//!
//! Deviation from ACRN: there a yield only reschedules, which picks the yielding thread again
//! while its EVT is the least. Here a yielding thread's AVT rises to the least AVT of the other
//! runnable threads and its warp ends, so the thread it spins for runs.

use super::{RunQueue, SchedError, SchedParams, ThreadId, Threads, MS};

/// Minimum charging unit.
pub const MCU: u64 = MS;
/// Context-switch allowance, in MCUs of the current thread's run time.
pub const CSA_MCU: u64 = 5;
pub const WEIGHT_MIN: u8 = 1;
pub const WEIGHT_MAX: u8 = 128;
/// AVT units one MCU of run time costs a thread of weight 1; weight w pays `VT_RATIO_MAX / w`
/// (ACRN's integer ratio: at weight 128 the ratio is 8, so rounding costs at most 1/8).
pub const VT_RATIO_MAX: u64 = WEIGHT_MAX as u64 * 8 / WEIGHT_MIN as u64;

#[derive(Debug)]
pub struct Bvt {
    threads: Threads<BvtThread>,
    /// Runnable threads by EVT, earliest first; equal EVTs in arrival order.
    queue: RunQueue,
    current: Option<ThreadId>,
    /// When the current thread was last charged.
    since: u64,
    /// Scheduler virtual time: the least AVT of the runnable threads last seen.
    svt: i64,
}

#[derive(Debug, Clone, Copy)]
struct BvtThread {
    vt_ratio: u64,
    avt: i64,
    evt: i64,
    /// Virtual time below one MCU not yet added to `avt`.
    residual: u64,
    warp_value: i64,
    /// Run time a warp lasts.
    warp_limit: u64,
    unwarp_period: u64,
    /// Run time left in the current warp, while warped.
    warp_left: Option<u64>,
    last_unwarp: Option<u64>,
}

impl BvtThread {
    fn new(params: SchedParams) -> Self {
        let weight = params.bvt.weight.clamp(WEIGHT_MIN, WEIGHT_MAX);
        BvtThread {
            vt_ratio: VT_RATIO_MAX / u64::from(weight),
            avt: 0,
            evt: 0,
            residual: 0,
            warp_value: i64::from(params.bvt.warp_value),
            warp_limit: u64::from(params.bvt.warp_limit.max(1)) * MCU,
            unwarp_period: u64::from(params.bvt.unwarp_period) * MCU,
            warp_left: None,
            last_unwarp: None,
        }
    }

    /// AVT units `ran` ns of run time cost, with the sub-MCU remainder.
    fn virtual_time(&self, ran: u64) -> (i64, u64) {
        let v = u128::from(ran) * u128::from(self.vt_ratio) + u128::from(self.residual);
        let mcus = i64::try_from(v / u128::from(MCU)).unwrap_or(i64::MAX);
        (mcus, (v % u128::from(MCU)) as u64)
    }

    fn charge(&mut self, ran: u64, now: u64) {
        let (mcus, residual) = self.virtual_time(ran);
        self.avt = self.avt.saturating_add(mcus);
        self.residual = residual;
        if let Some(left) = self.warp_left {
            if ran >= left {
                self.warp_left = None;
                self.last_unwarp = Some(now);
            } else {
                self.warp_left = Some(left - ran);
            }
        }
        self.update_evt();
    }

    fn start_warp(&mut self, now: u64) {
        if self.warp_value <= 0 || self.warp_left.is_some() {
            return;
        }
        let cooled = self
            .last_unwarp
            .is_none_or(|t| now.saturating_sub(t) >= self.unwarp_period);
        if cooled {
            self.warp_left = Some(self.warp_limit);
        }
    }

    fn end_warp(&mut self, now: u64) {
        if self.warp_left.take().is_some() {
            self.last_unwarp = Some(now);
        }
    }

    fn update_evt(&mut self) {
        let warp = if self.warp_left.is_some() {
            self.warp_value
        } else {
            0
        };
        self.evt = self.avt.saturating_sub(warp);
    }
}

impl Bvt {
    pub const fn new() -> Self {
        Bvt {
            threads: Threads::new(),
            queue: RunQueue::new(),
            current: None,
            since: 0,
            svt: 0,
        }
    }

    pub fn add(&mut self, thread: ThreadId, params: SchedParams) -> Result<(), SchedError> {
        self.threads.add(thread, BvtThread::new(params))
    }

    pub fn remove(&mut self, thread: ThreadId) -> Result<bool, SchedError> {
        self.threads.remove(thread)?;
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn wake(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.queue.contains(thread) {
            return Ok(false);
        }
        self.svt = self.svt.max(self.least_avt(now).unwrap_or(i64::MIN));
        let svt = self.svt;
        let Some(d) = self.threads.get_mut(thread) else {
            return Ok(false);
        };
        d.avt = d.avt.max(svt);
        d.start_warp(now);
        d.update_evt();
        let evt = d.evt;
        self.enqueue(thread);
        let current_evt = self.current.map(|c| self.projected(c, now).1);
        Ok(current_evt.is_none_or(|c| evt < c))
    }

    pub fn sleep(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.current == Some(thread) {
            self.charge_current(now);
        }
        self.svt = self.svt.max(self.least_avt(now).unwrap_or(i64::MIN));
        self.queue.remove(thread);
        Ok(self.forget_if_current(thread))
    }

    pub fn yield_now(&mut self, thread: ThreadId, now: u64) -> Result<bool, SchedError> {
        self.threads.require(thread)?;
        if self.current != Some(thread) || self.queue.len() < 2 {
            return Ok(false);
        }
        self.charge_current(now);
        let others = self
            .queue
            .as_slice()
            .iter()
            .filter(|t| **t != thread)
            .filter_map(|t| self.threads.get(*t).map(|d| d.avt))
            .min();
        if let (Some(least), Some(d)) = (others, self.threads.get_mut(thread)) {
            d.avt = d.avt.max(least);
            d.end_warp(now);
            d.update_evt();
        }
        self.requeue(thread);
        Ok(self.queue.first() != Some(thread))
    }

    pub fn pick_next(&mut self, now: u64) -> Option<ThreadId> {
        if let Some(current) = self.current {
            self.charge_current(now);
            self.requeue(current);
        }
        self.svt = self.svt.max(self.least_avt(now).unwrap_or(i64::MIN));
        self.current = self.queue.first();
        self.since = self.since.max(now);
        self.current
    }

    pub fn tick(&mut self, now: u64) -> bool {
        self.next_event(now).is_some_and(|t| t <= now)
    }

    pub fn next_event(&self, now: u64) -> Option<u64> {
        let Some(current) = self.current else {
            return (self.queue.len() > 0).then_some(now);
        };
        let d = self.threads.get(current)?;
        // The queue is sorted, so the first other thread has the earliest other EVT.
        let next = self.queue.as_slice().iter().find(|t| **t != current)?;
        let next_evt = self.threads.get(*next)?.evt;
        // How long the current thread may run until its EVT reaches the next one's (EVTs as of
        // the last charge), plus the allowance.
        let lead = u128::try_from(i128::from(next_evt) - i128::from(d.evt)).unwrap_or(0);
        let run =
            lead * u128::from(MCU) / u128::from(d.vt_ratio.max(1)) + u128::from(CSA_MCU * MCU);
        let end = u128::from(self.since) + run;
        Some(u64::try_from(end).unwrap_or(u64::MAX).max(now))
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

    /// A thread's (AVT, EVT) as if charged up to `now` (only the current thread runs).
    fn projected(&self, thread: ThreadId, now: u64) -> (i64, i64) {
        let Some(d) = self.threads.get(thread) else {
            return (i64::MAX, i64::MAX);
        };
        if self.current != Some(thread) {
            return (d.avt, d.evt);
        }
        let (mcus, _) = d.virtual_time(now.saturating_sub(self.since));
        (d.avt.saturating_add(mcus), d.evt.saturating_add(mcus))
    }

    /// The least AVT of the runnable threads, the current one charged up to `now`.
    fn least_avt(&self, now: u64) -> Option<i64> {
        self.queue
            .as_slice()
            .iter()
            .map(|t| self.projected(*t, now).0)
            .min()
    }

    fn charge_current(&mut self, now: u64) {
        let ran = now.saturating_sub(self.since);
        self.since = self.since.max(now);
        if let Some(d) = self.current.and_then(|t| self.threads.get_mut(t)) {
            d.charge(ran, now);
        }
    }

    fn enqueue(&mut self, thread: ThreadId) {
        let Some(evt) = self.threads.get(thread).map(|d| d.evt) else {
            return;
        };
        let threads = &self.threads;
        self.queue
            .insert_before_first(thread, |t| threads.get(t).is_some_and(|d| d.evt > evt));
    }

    /// Puts a runnable thread whose EVT changed back in order.
    fn requeue(&mut self, thread: ThreadId) {
        if self.queue.remove(thread) {
            self.enqueue(thread);
        }
    }

    fn forget_if_current(&mut self, thread: ThreadId) -> bool {
        super::forget_if_current(&mut self.current, thread)
    }
}

impl Default for Bvt {
    fn default() -> Self {
        Self::new()
    }
}
