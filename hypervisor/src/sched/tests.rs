//! Properties of the schedulers, shown by a simulated pCPU whose run loop follows the contract
//! of the module documentation exactly, and by random call sequences.

use acrn_static_config::{BvtParams, Priority, Scheduler as Policy};

use super::bvt::{CSA_MCU, VT_RATIO_MAX};
use super::iorr::SLICE;
use super::*;

const ALL: [Policy; 4] = [Policy::Noop, Policy::Iorr, Policy::Bvt, Policy::Prio];
const SHARING: [Policy; 3] = [Policy::Iorr, Policy::Bvt, Policy::Prio];

/// What a simulated vCPU does with the pCPU.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Always runnable (a guest computing).
    Busy,
    /// Runs `run` ns, then sleeps (halts) `sleep` ns, over and over.
    Bursty { run: u64, sleep: u64 },
    /// Always runnable, yields after every `run` ns (a PAUSE loop).
    Spinner { run: u64 },
}

struct SimThread {
    id: ThreadId,
    load: Load,
    /// Sleeping until then.
    wakes_at: Option<u64>,
    /// Run time left until it sleeps or yields.
    burst_left: u64,
    ran: u64,
    /// Runnable but not running since then.
    waiting_since: Option<u64>,
    max_wait: u64,
}

impl SimThread {
    fn burst(&self) -> u64 {
        match self.load {
            Load::Busy => u64::MAX,
            Load::Bursty { run, .. } | Load::Spinner { run } => run,
        }
    }
}

/// One pCPU: the scheduler and the run loop the hypervisor will have.
struct Sim {
    sched: Scheduler,
    now: u64,
    threads: Vec<SimThread>,
    current: Option<usize>,
    reschedule: bool,
    switches: u64,
}

impl Sim {
    fn new(policy: Policy, threads: &[(SchedParams, Load)]) -> Sim {
        Self::starting(policy, threads.iter().map(|(p, l)| (*p, *l, 0)))
    }

    /// Threads with the time of their first wake.
    fn starting(policy: Policy, threads: impl Iterator<Item = (SchedParams, Load, u64)>) -> Sim {
        let mut sim = Sim {
            sched: Scheduler::new(policy),
            now: 0,
            threads: Vec::new(),
            current: None,
            reschedule: true,
            switches: 0,
        };
        for (i, (params, load, wake)) in threads.enumerate() {
            let id = ThreadId(100 + i as u16);
            sim.sched.add(id, params).unwrap();
            let mut t = SimThread {
                id,
                load,
                wakes_at: Some(wake),
                burst_left: 0,
                ran: 0,
                waiting_since: None,
                max_wait: 0,
            };
            t.burst_left = t.burst();
            sim.threads.push(t);
        }
        sim.deliver_wakes();
        sim
    }

    fn index(&self, id: ThreadId) -> usize {
        self.threads.iter().position(|t| t.id == id).unwrap()
    }

    fn deliver_wakes(&mut self) {
        for i in 0..self.threads.len() {
            if self.threads[i].wakes_at.is_some_and(|w| w <= self.now) {
                self.threads[i].wakes_at = None;
                self.threads[i].waiting_since = Some(self.now);
                let id = self.threads[i].id;
                self.reschedule |= self.sched.wake(id, self.now).unwrap();
            }
        }
    }

    fn run_until(&mut self, end: u64) {
        let mut steps = 0u64;
        while self.now < end {
            steps += 1;
            assert!(
                steps < 1_000_000,
                "no progress at {} ns: the scheduler keeps asking for a tick",
                self.now
            );
            if self.reschedule {
                self.reschedule = false;
                self.switch_to_next();
            }
            assert_eq!(
                self.sched.current(),
                self.current.map(|i| self.threads[i].id)
            );
            // The timer as the run loop arms it after the calls above.
            let timer = self.sched.next_event(self.now);
            let mut stop = end;
            if let Some(t) = timer {
                stop = stop.min(t.max(self.now));
            }
            if let Some(c) = self.current {
                stop = stop.min(self.now.saturating_add(self.threads[c].burst_left));
            }
            for t in &self.threads {
                if let Some(w) = t.wakes_at {
                    stop = stop.min(w);
                }
            }
            let ran = stop - self.now;
            self.now = stop;
            if let Some(c) = self.current {
                let t = &mut self.threads[c];
                t.ran += ran;
                t.burst_left = t.burst_left.saturating_sub(ran);
                if t.burst_left == 0 {
                    t.burst_left = t.burst();
                    let id = t.id;
                    match t.load {
                        Load::Busy => {}
                        Load::Bursty { sleep, .. } => {
                            t.wakes_at = Some(self.now + sleep);
                            self.reschedule |= self.sched.sleep(id, self.now).unwrap();
                        }
                        Load::Spinner { .. } => {
                            self.reschedule |= self.sched.yield_now(id, self.now).unwrap();
                        }
                    }
                }
            }
            self.deliver_wakes();
            if timer.is_some_and(|t| t <= self.now) {
                self.reschedule |= self.sched.tick(self.now);
            }
        }
        for t in &mut self.threads {
            if let Some(w) = t.waiting_since {
                t.max_wait = t.max_wait.max(self.now - w);
            }
        }
    }

    fn switch_to_next(&mut self) {
        let next = self.sched.pick_next(self.now).map(|id| self.index(id));
        if let Some(n) = next {
            assert!(
                self.threads[n].wakes_at.is_none(),
                "picked sleeping thread {:?} at {}",
                self.threads[n].id,
                self.now
            );
        } else {
            // Idle is only right when nothing is runnable.
            assert!(
                self.threads.iter().all(|t| t.wakes_at.is_some()),
                "pCPU idles at {} with a runnable thread",
                self.now
            );
        }
        if next == self.current {
            return;
        }
        self.switches += 1;
        if let Some(c) = self.current {
            if self.threads[c].wakes_at.is_none() {
                self.threads[c].waiting_since = Some(self.now);
            }
        }
        if let Some(n) = next {
            let t = &mut self.threads[n];
            if let Some(w) = t.waiting_since.take() {
                t.max_wait = t.max_wait.max(self.now - w);
            }
        }
        self.current = next;
    }

    fn share(&self, i: usize) -> f64 {
        self.threads[i].ran as f64 / self.now as f64
    }
}

fn weight(w: u8) -> SchedParams {
    SchedParams {
        priority: Priority::Low,
        bvt: BvtParams {
            weight: w,
            ..BvtParams::DEFAULT
        },
    }
}

fn prio(p: Priority) -> SchedParams {
    SchedParams {
        priority: p,
        ..SchedParams::DEFAULT
    }
}

const SECOND: u64 = 1000 * MS;

#[test]
fn bvt_busy_threads_share_in_proportion_to_weight() {
    let cases: &[&[u8]] = &[
        &[1, 3],
        &[1, 1],
        &[2, 5],
        &[1, 2, 5],
        &[10, 20, 30, 40],
        &[7],
    ];
    for weights in cases {
        let threads: Vec<_> = weights.iter().map(|w| (weight(*w), Load::Busy)).collect();
        let mut sim = Sim::new(Policy::Bvt, &threads);
        sim.run_until(2 * SECOND);
        // ACRN's promise: shares in proportion to 1 / (VT_RATIO_MAX / weight).
        let inverse: Vec<f64> = weights
            .iter()
            .map(|w| 1.0 / (VT_RATIO_MAX / u64::from(*w)) as f64)
            .collect();
        let total: f64 = inverse.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let expected = inverse[i] / total;
            let got = sim.share(i);
            assert!(
                (got - expected).abs() < 0.01,
                "weights {weights:?}: weight {w} got {got:.4}, expected {expected:.4}"
            );
        }
    }
}

#[test]
fn bvt_weights_1_and_3_get_a_quarter_and_three_quarters_of_a_second() {
    let mut sim = Sim::new(
        Policy::Bvt,
        &[(weight(1), Load::Busy), (weight(3), Load::Busy)],
    );
    sim.run_until(SECOND);
    let (a, b) = (sim.share(0), sim.share(1));
    assert!(
        (a - 0.25).abs() < 0.01 && (b - 0.75).abs() < 0.01,
        "{a:.4} / {b:.4}"
    );
    assert_eq!(
        sim.threads[0].ran + sim.threads[1].ran,
        SECOND,
        "the pCPU idled"
    );
    // Turns end at the context-switch allowance, not at every tick.
    assert!(sim.switches < 200, "{} switches in a second", sim.switches);
}

#[test]
fn bvt_light_thread_still_runs_within_its_bound() {
    // Weight 1 against 128: the light thread's turn of CSA costs it 5 * 1024 AVT units, which
    // the heavy one (8 per ms) takes 640 ms to match; then the light one runs again.
    let mut sim = Sim::new(
        Policy::Bvt,
        &[(weight(1), Load::Busy), (weight(128), Load::Busy)],
    );
    sim.run_until(5 * SECOND);
    let bound = CSA_MCU * MS * VT_RATIO_MAX / 8 + CSA_MCU * MS;
    assert!(
        sim.threads[0].max_wait <= bound,
        "{}",
        sim.threads[0].max_wait
    );
    assert!(
        (sim.share(0) - 1.0 / 129.0).abs() < 0.005,
        "{}",
        sim.share(0)
    );
}

#[test]
fn bvt_sleeper_cannot_bank_time() {
    // B sleeps for the first half second while A runs, then both are busy: B must not get the
    // pCPU to itself for the time it slept.
    let mut sim = Sim::starting(
        Policy::Bvt,
        [
            (weight(1), Load::Busy, 0),
            (weight(1), Load::Busy, SECOND / 2),
        ]
        .into_iter(),
    );
    sim.run_until(SECOND / 2);
    let a_before = sim.threads[0].ran;
    sim.run_until(SECOND / 2 + 100 * MS);
    let a_share = (sim.threads[0].ran - a_before) as f64 / (100 * MS) as f64;
    assert!(
        (a_share - 0.5).abs() < 0.1,
        "A got {a_share:.3} after B woke"
    );
    assert!(
        sim.threads[0].max_wait <= 2 * CSA_MCU * MS,
        "{}",
        sim.threads[0].max_wait
    );
}

fn warped(warp_value: i16) -> SchedParams {
    SchedParams {
        priority: Priority::Low,
        bvt: BvtParams {
            weight: 1,
            warp_value,
            warp_limit: 2,
            unwarp_period: 0,
        },
    }
}

#[test]
fn bvt_warp_cuts_wake_latency_but_not_the_long_term_share() {
    let interactive = Load::Bursty {
        run: MS / 5,
        sleep: 3 * MS,
    };
    let latency = |warp| {
        let mut sim = Sim::new(
            Policy::Bvt,
            &[(weight(1), Load::Busy), (warped(warp), interactive)],
        );
        sim.run_until(SECOND);
        sim.threads[1].max_wait
    };
    let (without, with) = (latency(0), latency(2048));
    assert_eq!(with, 0, "a warped thread runs as soon as it wakes");
    assert!(without >= MS, "without warp it waits ({without} ns)");

    // A thread that wants 80% of the pCPU gets its fair half plus what a warp lends.
    let greedy = Load::Bursty {
        run: 4 * MS,
        sleep: MS,
    };
    let mut sim = Sim::new(
        Policy::Bvt,
        &[(weight(1), Load::Busy), (warped(8192), greedy)],
    );
    sim.run_until(2 * SECOND);
    assert!((sim.share(1) - 0.5).abs() < 0.05, "{}", sim.share(1));
}

#[test]
fn bvt_yield_hands_the_pcpu_over() {
    let spin = Load::Spinner { run: MS / 2 };
    let mut sim = Sim::new(Policy::Bvt, &[(weight(1), spin), (weight(1), spin)]);
    sim.run_until(SECOND);
    assert!(sim.switches >= 1900, "{} switches", sim.switches);
    assert!((sim.share(0) - 0.5).abs() < 0.01);
}

#[test]
fn iorr_every_busy_thread_runs_within_a_round() {
    for n in 2..=6usize {
        let threads = vec![(SchedParams::DEFAULT, Load::Busy); n];
        let mut sim = Sim::new(Policy::Iorr, &threads);
        sim.run_until(SECOND);
        for (i, t) in sim.threads.iter().enumerate() {
            assert!(
                t.max_wait <= (n as u64 - 1) * SLICE,
                "{n} threads: thread {i} waited {} ns",
                t.max_wait
            );
            assert!(
                (sim.share(i) - 1.0 / n as f64).abs() < 0.011,
                "{}",
                sim.share(i)
            );
        }
        // A slice is a full 10 ms, not a 1 ms tick.
        assert!(sim.switches <= SECOND / SLICE + 1, "{}", sim.switches);
    }
}

#[test]
fn iorr_mixed_loads_starve_nobody() {
    let threads = [
        (SchedParams::DEFAULT, Load::Busy),
        (SchedParams::DEFAULT, Load::Busy),
        (
            SchedParams::DEFAULT,
            Load::Bursty {
                run: 3 * MS,
                sleep: 2 * MS,
            },
        ),
        (
            SchedParams::DEFAULT,
            Load::Bursty {
                run: 12 * MS,
                sleep: MS / 10,
            },
        ),
        (SchedParams::DEFAULT, Load::Spinner { run: MS }),
    ];
    let mut sim = Sim::new(Policy::Iorr, &threads);
    sim.run_until(2 * SECOND);
    for (i, t) in sim.threads.iter().enumerate() {
        assert!(
            t.max_wait <= 4 * SLICE,
            "thread {i} waited {} ns",
            t.max_wait
        );
    }
    // A thread that sleeps just before its slice ends does not get a new slice per wake: the
    // busy ones keep at least a fair fifth each.
    assert!(
        sim.share(0) > 0.19 && sim.share(1) > 0.19,
        "{} {}",
        sim.share(0),
        sim.share(1)
    );
}

#[test]
fn bvt_mixed_loads_starve_nobody() {
    let threads = [
        (weight(1), Load::Busy),
        (weight(4), Load::Busy),
        (
            weight(2),
            Load::Bursty {
                run: 3 * MS,
                sleep: 2 * MS,
            },
        ),
        (
            warped(1000),
            Load::Bursty {
                run: MS,
                sleep: 7 * MS,
            },
        ),
        (weight(1), Load::Spinner { run: MS }),
    ];
    let mut sim = Sim::new(Policy::Bvt, &threads);
    sim.run_until(3 * SECOND);
    for (i, t) in sim.threads.iter().enumerate() {
        assert!(
            t.max_wait <= 200 * MS,
            "thread {i} waited {} ns",
            t.max_wait
        );
        assert!(sim.share(i) > 0.02, "thread {i} got {}", sim.share(i));
    }
}

#[test]
fn prio_high_starves_low_while_runnable_and_preempts_it_on_wake() {
    let mut sim = Sim::new(
        Policy::Prio,
        &[
            (prio(Priority::Low), Load::Busy),
            (prio(Priority::High), Load::Busy),
        ],
    );
    sim.run_until(SECOND);
    assert_eq!(sim.threads[0].ran, 0);
    assert_eq!(sim.threads[1].ran, SECOND);

    let half = Load::Bursty {
        run: 5 * MS,
        sleep: 5 * MS,
    };
    let mut sim = Sim::new(
        Policy::Prio,
        &[
            (prio(Priority::Low), Load::Busy),
            (prio(Priority::High), half),
        ],
    );
    sim.run_until(SECOND);
    assert!((sim.share(0) - 0.5).abs() < 0.01, "{}", sim.share(0));
    assert_eq!(sim.threads[1].max_wait, 0, "the high thread waited");
}

#[test]
fn prio_equal_priorities_take_turns_on_yield_and_sleep() {
    let spin = Load::Spinner { run: MS };
    let mut sim = Sim::new(
        Policy::Prio,
        &[
            (prio(Priority::High), spin),
            (prio(Priority::High), spin),
            (prio(Priority::Low), Load::Busy),
        ],
    );
    sim.run_until(SECOND);
    assert!((sim.share(0) - 0.5).abs() < 0.01 && (sim.share(1) - 0.5).abs() < 0.01);
    assert_eq!(sim.threads[2].ran, 0);

    let io = Load::Bursty {
        run: 2 * MS,
        sleep: MS,
    };
    let mut sim = Sim::new(
        Policy::Prio,
        &[(prio(Priority::Low), io), (prio(Priority::Low), io)],
    );
    sim.run_until(SECOND);
    assert!(
        sim.share(0) > 0.45 && sim.share(1) > 0.45,
        "{} {}",
        sim.share(0),
        sim.share(1)
    );
}

#[test]
fn noop_runs_its_one_vcpu_and_refuses_a_second() {
    let mut s = Scheduler::new(Policy::Noop);
    s.add(ThreadId(1), SchedParams::DEFAULT).unwrap();
    assert_eq!(
        s.add(ThreadId(2), SchedParams::DEFAULT),
        Err(SchedError::NoopOccupied {
            present: ThreadId(1)
        })
    );
    assert_eq!(s.pick_next(0), None, "added threads sleep until woken");
    assert_eq!(s.wake(ThreadId(1), 0), Ok(true));
    assert_eq!(s.pick_next(0), Some(ThreadId(1)));
    assert_eq!(s.next_event(0), None);
    assert_eq!(s.sleep(ThreadId(1), 5), Ok(true));
    assert_eq!(s.pick_next(5), None);
    assert_eq!(s.remove(ThreadId(1)), Ok(false));
    s.add(ThreadId(2), SchedParams::DEFAULT).unwrap();

    let mut sim = Sim::new(
        Policy::Noop,
        &[(SchedParams::DEFAULT, Load::Bursty { run: MS, sleep: MS })],
    );
    sim.run_until(SECOND);
    assert_eq!(sim.threads[0].ran, SECOND / 2);
    assert_eq!(sim.threads[0].max_wait, 0);
}

#[test]
fn one_runnable_thread_needs_no_timer() {
    for policy in ALL {
        let mut s = Scheduler::new(policy);
        s.add(ThreadId(1), weight(5)).unwrap();
        s.wake(ThreadId(1), 0).unwrap();
        assert_eq!(
            s.next_event(0),
            Some(0),
            "{policy:?}: idle with a runnable thread"
        );
        assert!(s.tick(0), "{policy:?}");
        assert_eq!(s.pick_next(0), Some(ThreadId(1)));
        assert_eq!(s.next_event(0), None, "{policy:?}");
        assert!(!s.tick(50 * MS), "{policy:?}");
    }
}

#[test]
fn a_sleeping_thread_is_never_picked() {
    for policy in SHARING {
        let mut s = Scheduler::new(policy);
        for t in 1..=3 {
            s.add(ThreadId(t), prio(Priority::High)).unwrap();
            s.wake(ThreadId(t), 0).unwrap();
        }
        s.sleep(ThreadId(2), 0).unwrap();
        let mut now = 0;
        for _ in 0..50 {
            let next = s.pick_next(now);
            assert!(
                matches!(next, Some(ThreadId(1 | 3))),
                "{policy:?}: {next:?}"
            );
            s.yield_now(next.unwrap(), now).unwrap();
            now += 7 * MS;
        }
        assert!(!s.is_runnable(ThreadId(2)));
        assert_eq!(
            s.wake(ThreadId(2), now).map(|_| s.is_runnable(ThreadId(2))),
            Ok(true)
        );
    }
}

#[test]
fn removing_the_current_thread_reschedules_to_another() {
    for policy in SHARING {
        let mut s = Scheduler::new(policy);
        for t in 1..=2 {
            s.add(ThreadId(t), weight(1)).unwrap();
            s.wake(ThreadId(t), 0).unwrap();
        }
        let first = s.pick_next(0).unwrap();
        assert_eq!(s.remove(first), Ok(true), "{policy:?}");
        assert_eq!(s.current(), None);
        let other = s.pick_next(MS).unwrap();
        assert_ne!(other, first);
        assert_eq!(s.remove(other), Ok(true));
        assert_eq!(s.pick_next(2 * MS), None);
        for r in [
            s.wake(first, 3 * MS),
            s.sleep(first, 3 * MS),
            s.yield_now(first, 3 * MS),
            s.remove(first),
        ] {
            assert_eq!(r, Err(SchedError::UnknownThread(first)), "{policy:?}");
        }
        // A removed thread can come back.
        s.add(first, weight(1)).unwrap();
        s.wake(first, 4 * MS).unwrap();
        assert_eq!(s.pick_next(4 * MS), Some(first));
    }
}

#[test]
fn a_full_pcpu_and_duplicates_are_errors() {
    for policy in SHARING {
        let mut s = Scheduler::new(policy);
        for t in 0..MAX_THREADS as u16 {
            s.add(ThreadId(t), SchedParams::DEFAULT).unwrap();
        }
        assert_eq!(
            s.add(ThreadId(999), SchedParams::DEFAULT),
            Err(SchedError::Full)
        );
        assert_eq!(
            s.add(ThreadId(3), SchedParams::DEFAULT),
            Err(SchedError::AlreadyAdded(ThreadId(3)))
        );
        for t in 0..MAX_THREADS as u16 {
            s.wake(ThreadId(t), 0).unwrap();
        }
        assert!(s.pick_next(0).is_some());
    }
}

/// xorshift64*: reproducible random call sequences without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn any_call_sequence_is_panic_free_and_consistent() {
    for seed in 1..=40u64 {
        for policy in ALL {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut s = Scheduler::new(policy);
            // Late seeds start near the end of time to reach the saturating paths.
            let mut now: u64 = if seed % 4 == 0 { u64::MAX - SECOND } else { 0 };
            for _ in 0..3000 {
                let t = ThreadId(rng.below(MAX_THREADS as u64 + 4) as u16);
                match rng.below(9) {
                    0 => {
                        let params = SchedParams {
                            priority: if rng.below(2) == 0 {
                                Priority::Low
                            } else {
                                Priority::High
                            },
                            bvt: BvtParams {
                                weight: rng.next() as u8,
                                warp_value: rng.next() as i16,
                                warp_limit: rng.next() as u8,
                                unwarp_period: rng.next() as u8,
                            },
                        };
                        let had = s.contains(t);
                        match s.add(t, params) {
                            Ok(()) => assert!(!had && s.contains(t) && !s.is_runnable(t)),
                            Err(SchedError::AlreadyAdded(_)) => assert!(had),
                            Err(_) => assert!(!had),
                        }
                    }
                    1 => {
                        let was_current = s.current() == Some(t);
                        match s.remove(t) {
                            Ok(resched) => assert_eq!(resched, was_current),
                            Err(e) => assert_eq!(e, SchedError::UnknownThread(t)),
                        }
                        assert!(!s.contains(t));
                    }
                    2 => {
                        if s.wake(t, now).is_ok() {
                            assert!(s.is_runnable(t));
                        }
                    }
                    3 => {
                        if s.sleep(t, now).is_ok() {
                            assert!(!s.is_runnable(t) && s.current() != Some(t));
                        }
                    }
                    4 => {
                        let _ = s.yield_now(t, now);
                    }
                    5 | 6 => {
                        let next = s.pick_next(now);
                        if let Some(n) = next {
                            assert!(s.is_runnable(n), "{policy:?} picked {n:?}, not runnable");
                        }
                        assert_eq!(s.current(), next);
                    }
                    7 => {
                        if s.tick(now) {
                            s.pick_next(now);
                        }
                    }
                    _ => {
                        let _ = s.next_event(now);
                    }
                }
                // Mostly forward, sometimes backwards or far ahead.
                now = match rng.below(20) {
                    0 => now.saturating_sub(rng.below(SECOND)),
                    1 => now.saturating_add(rng.next() >> rng.below(64)),
                    _ => now.saturating_add(rng.below(20 * MS)),
                };
                if let Some(c) = s.current() {
                    assert!(s.is_runnable(c), "{policy:?}: current {c:?} not runnable");
                }
            }
        }
    }
}

#[test]
fn errors_say_what_to_do() {
    let text = SchedError::NoopOccupied {
        present: ThreadId(4),
    }
    .to_string();
    assert!(
        text.contains("SCHED_NOOP") && text.contains("cpu_affinity"),
        "{text}"
    );
}

#[test]
fn wake_asks_for_a_reschedule_only_when_the_woken_thread_goes_first() {
    let (low, high, other) = (ThreadId(1), ThreadId(2), ThreadId(3));
    let mut s = Scheduler::new(Policy::Prio);
    s.add(low, prio(Priority::Low)).unwrap();
    s.add(other, prio(Priority::Low)).unwrap();
    s.add(high, prio(Priority::High)).unwrap();
    assert_eq!(s.wake(low, 0), Ok(true), "the pCPU idles");
    assert_eq!(s.pick_next(0), Some(low));
    assert_eq!(
        s.wake(other, MS),
        Ok(false),
        "equal priority waits its turn"
    );
    assert!(!s.tick(MS));
    assert_eq!(s.wake(high, 2 * MS), Ok(true), "higher priority preempts");
    assert_eq!(s.pick_next(2 * MS), Some(high));
    assert_eq!(s.sleep(high, 3 * MS), Ok(true));
    assert_eq!(
        s.pick_next(3 * MS),
        Some(low),
        "low resumes before the later arrival"
    );

    let mut s = Scheduler::new(Policy::Iorr);
    for t in [low, other] {
        s.add(t, SchedParams::DEFAULT).unwrap();
    }
    assert_eq!(s.wake(low, 0), Ok(true));
    assert_eq!(s.pick_next(0), Some(low));
    assert_eq!(s.next_event(0), None);
    assert_eq!(
        s.wake(other, MS),
        Ok(false),
        "a woken thread queues at the tail"
    );
    assert_eq!(
        s.next_event(MS),
        Some(SLICE),
        "the current slice now has an end"
    );

    let mut s = Scheduler::new(Policy::Bvt);
    s.add(low, weight(1)).unwrap();
    s.add(other, weight(1)).unwrap();
    s.add(high, warped(4096)).unwrap();
    assert_eq!(s.wake(low, 0), Ok(true));
    assert_eq!(s.pick_next(0), Some(low));
    // `other` catches up to `low`'s AVT (3 ms of run time): it is not ahead, so `low` runs on
    // until it is the allowance past it.
    assert_eq!(s.wake(other, 3 * MS), Ok(false));
    assert_eq!(s.next_event(3 * MS), Some(3 * MS + CSA_MCU * MS));
    // A warped thread is ahead by its warp and preempts.
    assert_eq!(s.wake(high, 4 * MS), Ok(true));
    assert_eq!(s.pick_next(4 * MS), Some(high));
}
