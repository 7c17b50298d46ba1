//! The breaker's state machine, shared by every clone of the service and every service
//! the layer builds.
//!
//! # How it stays cheap and correct
//!
//! All of the state that a call reads or writes lives in atomics:
//!
//! - The state word packs the [`State`], a generation number, and the half-open probe
//!   counters into one `AtomicU64`. A call in the Closed state only reads it.
//! - The window ([`super::window`]) counts outcomes with atomics only.
//! - The state word and the count window's totals live in a [`Lane`]: a pooled,
//!   `'static` pair of cache lines. A call admitted while the window is full of
//!   successes holds only `&'static Lane` (no reference count) and, if it succeeds while
//!   the window is still clean, records nothing: it would overwrite a success with a
//!   success. Everything else is recorded exactly.
//!
//! Transitions are rare, so they are serialised by a `Mutex` that only transitions take:
//! under it the transition re-checks the state and generation it expects, does its side
//! effects (reset the window, compute the open duration), publishes the new state with
//! one compare-and-swap, and queues its announcement. The announcements (events, state
//! gauge, log: user code) are made after the lock is released, in the order they were
//! queued, by one thread at a time, so that observers see the transitions in the order
//! they happened, and a recorder or subscriber may look at the breaker (take a snapshot)
//! or be slow without blocking or deadlocking a transition. Probe slots are taken and
//! given back with compare-and-swap on the same word, without the lock.
//!
//! # Timed transitions
//!
//! Two transitions happen because time passed: an open period ends (Open -> HalfOpen)
//! and a half-open period reaches `max_half_open_duration` with probes still out
//! (HalfOpen -> Open). They are made lazily by whoever looks at the breaker next (a
//! call, `poll_ready`, `state()`, a snapshot, a subscriber's `recv`, which waits for
//! them on a timer), each dated at the instant it was due, so that what the breaker
//! reports is true at that instant and the next open period is counted from when it
//! really started. This needs no timer task, so the breaker needs no runtime of its own.
//!
//! # Probes are taken by calls
//!
//! `poll_ready` only observes whether a probe slot is free; `call` takes it. A service
//! that was readied and never called (parked in tower's `ReadyCache`, an abandoned
//! `ready()`) holds nothing, so it cannot starve other callers or make the half-open
//! period time out. In backpressure mode the waiting services queue in a
//! [`WaitList`](super::wait) and are woken only as many at a time as can proceed.
//!
//! Every admitted call carries the generation it was admitted in. An outcome whose
//! generation is no longer current (the breaker moved on while the call was in flight)
//! is dropped: a call admitted while Closed never counts as a half-open probe, and a late
//! probe never decides a later half-open period.
//!
//! # Why a half-open breaker cannot get stuck
//!
//! A probe slot is held by a [`OutcomeRecorder`](super::future::OutcomeRecorder), which
//! gives it back when dropped (the caller dropped the future, or the body was dropped
//! before its end). A probe that never finishes at all (a downstream that hangs, with no
//! timeout below the breaker) is bounded by `max_half_open_duration`: once the breaker has
//! been half-open that long with a probe still out, it is open again, dated at the
//! limit, and the hung probes' late outcomes are ignored. A half-open period with no
//! probe out has nothing to wait for; the next probe after its limit starts the limit
//! afresh.
//!
//! # Loom models
//!
//! `state/loom_tests.rs` (run with `RUSTFLAGS="--cfg seawall_loom"`, see `crate::sync`)
//! checks under every interleaving: concurrent failures trip the breaker exactly once; a
//! half-open breaker never has more probes out than its slots, a dropped probe gives its
//! slot back and the breaker never ends stuck half-open; a hung probe's late outcome
//! decides nothing and subscribers see the transitions in order (announced outside the
//! lock); the fast path never keeps a stale failure streak; a caller waiting for a slot
//! (backpressure) is woken or admitted. Not modelled: lane reuse across breakers (in the models every lane is new,
//! since a pooled one would hold another loom execution's atomics); a reused lane's
//! generation carries on from its last breaker's, so a late call of that breaker matches
//! no generation of the next one, which a unit test checks.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::wait::WaitList;
use super::window::{CountWindow, Sample, TimeWindow, Totals, Window};
use super::{Cause, State, Transition};
use crate::classify::Health;
use crate::lane::{LaneRef, Pool, POOLED_LANES};
use crate::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::sync::{CachePadded, Mutex, MutexGuard};
use crate::time::{Clock, Jitter};

// ===== the packed state word =====

const TAG_BITS: u32 = 3;
const GEN_SHIFT: u32 = TAG_BITS;
const GEN_BITS: u32 = 32;
const IN_FLIGHT_SHIFT: u32 = GEN_SHIFT + GEN_BITS;
const PROBE_BITS: u32 = 14;
const SUCCESS_SHIFT: u32 = IN_FLIGHT_SHIFT + PROBE_BITS;
const PROBE_MASK: u64 = (1 << PROBE_BITS) - 1;

/// The most half-open probes a breaker may admit (the packed counters' width).
pub(crate) const MAX_PROBES: u32 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

impl Word {
    fn new(state: State, generation: u32, in_flight: u32, successes: u32) -> Self {
        Word(
            state as u64
                | (u64::from(generation) << GEN_SHIFT)
                | (u64::from(in_flight) << IN_FLIGHT_SHIFT)
                | (u64::from(successes) << SUCCESS_SHIFT),
        )
    }

    #[inline]
    fn state(self) -> State {
        State::from_tag((self.0 & ((1 << TAG_BITS) - 1)) as u8)
    }

    /// Closed or Disabled: calls pass. Checked on every call, so it tests the tag bits
    /// directly: of the tags 0..=4, only Closed (0) and Disabled (4) have the low two
    /// bits clear.
    #[inline]
    fn admits_calls(self) -> bool {
        const _: () = assert!(State::Closed as u64 & 3 == 0 && State::Disabled as u64 & 3 == 0);
        self.0 & 3 == 0
    }

    #[inline]
    fn generation(self) -> u32 {
        (self.0 >> GEN_SHIFT) as u32
    }

    fn in_flight(self) -> u32 {
        ((self.0 >> IN_FLIGHT_SHIFT) & PROBE_MASK) as u32
    }

    fn successes(self) -> u32 {
        ((self.0 >> SUCCESS_SHIFT) & PROBE_MASK) as u32
    }
}

// ===== config =====

/// The slow-call rule: calls at least `threshold` long are slow; trip when the slow share
/// of the window reaches `rate`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SlowCallRule {
    pub(crate) threshold: Duration,
    pub(crate) rate: f64,
}

/// How long the breaker stays open, growing on repeated trips.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenBackoff {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) multiplier: f64,
    pub(crate) jitter: f64,
    pub(crate) reset_after: Duration,
}

impl OpenBackoff {
    /// The open duration after `trips` trips in a row (1 for the first), before jitter:
    /// `base * multiplier^(trips - 1)`, at most `max`.
    pub(crate) fn nominal(&self, trips: u32) -> Duration {
        let exponent = i32::try_from(trips.saturating_sub(1)).unwrap_or(i32::MAX);
        let nanos = self.base.as_nanos() as f64 * self.multiplier.powi(exponent);
        let max = self.max.as_nanos() as f64;
        if nanos.is_finite() && nanos < max {
            Duration::from_nanos(nanos as u64)
        } else {
            self.max
        }
    }

    /// The nominal duration shortened by up to `jitter` of itself, so that callers that
    /// tripped together do not probe together. Never longer than `max`.
    pub(crate) fn jittered(&self, trips: u32, unit: f64) -> Duration {
        let nominal = crate::time::duration_to_nanos(self.nominal(trips));
        // In nanoseconds: `Duration::mul_f64` panics near `Duration::MAX`, while a float
        // to integer `as` saturates. The factor is within (0, 1].
        Duration::from_nanos((nominal as f64 * (1.0 - self.jitter * unit)) as u64)
    }
}

/// A validated breaker configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) name: std::sync::Arc<str>,
    pub(crate) failure_rate: Option<f64>,
    pub(crate) slow_calls: Option<SlowCallRule>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u64,
    pub(crate) open: OpenBackoff,
    pub(crate) half_open_probes: u32,
    pub(crate) max_half_open: Duration,
}

// ===== admission =====

/// What an admitted call is, and the generation it was admitted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    /// A call in the Closed (or Disabled) state.
    Call { generation: u32 },
    /// A call in the Closed (or Disabled) state admitted while the count window was full
    /// of successes: it holds no reference count, and if it succeeds while the window is
    /// still clean, recording it would change nothing (see [`Lane`]).
    Fast { generation: u32 },
    /// A half-open probe holding one probe slot.
    Probe { generation: u32 },
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejection {
    /// Time until the next probe may go, when one is scheduled.
    pub(crate) retry_after: Option<Duration>,
    /// When a waiting caller should look again (backpressure mode), as clock nanoseconds.
    pub(crate) recheck_at: Option<u64>,
}

// ===== the lane =====

/// The part of a breaker that a call on the fast path reads: the state word and the
/// count window's totals, each on its own cache line, plus a weak way back to the whole
/// breaker for the rare call that must record something.
///
/// A lane is `'static` in the common case: the fast path holds a plain `&'static Lane`
/// instead of an `Arc`, so a call costs no reference count (two contended
/// read-modify-writes that would dominate the cost of the whole breaker). Such lanes are
/// never freed but pooled (see [`crate::lane`]): when a breaker is dropped its lane goes
/// back to a free list for the next breaker, and at most [`POOLED_LANES`] are ever made.
/// Beyond that many breakers alive at once, a breaker's lane is reference counted (its
/// calls hold an `Arc`) and freed with the breaker and its last call. The generation in
/// the state word carries on across breakers, so a late call of a dropped breaker never
/// matches a generation of the lane's next breaker.
#[derive(Debug)]
pub(crate) struct Lane {
    state: CachePadded<AtomicU64>,
    health: CachePadded<LaneHealth>,
    owner: Mutex<Weak<Shared>>,
}

/// What changes only when a call fails (or the first success after failures): the
/// count window's totals and the failure streak, on one cache line.
#[derive(Debug)]
struct LaneHealth {
    totals: Totals,
    consecutive_failures: AtomicU32,
    /// The current breaker's clean word (see [`Totals::clean_word`]); 0 when its calls
    /// never take the fast path. Set once per breaker, read with the totals.
    clean_word: AtomicU64,
}

/// The breakers' lanes not in use.
static LANES: Pool<Lane> = Pool::new(POOLED_LANES);

impl AsRef<Totals> for Lane {
    fn as_ref(&self) -> &Totals {
        &self.health.totals
    }
}

impl Lane {
    fn acquire() -> LaneRef<Lane> {
        LANES.take(|| Lane {
            state: CachePadded::new(AtomicU64::new(Word::new(State::Closed, 0, 0, 0).0)),
            health: CachePadded::new(LaneHealth {
                totals: Totals::new(),
                consecutive_failures: AtomicU32::new(0),
                clean_word: AtomicU64::new(0),
            }),
            owner: Mutex::new(Weak::new()),
        })
    }

    fn owner(&self) -> MutexGuard<'_, Weak<Shared>> {
        self.owner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The breaker this lane belongs to, if it is still alive.
    pub(crate) fn breaker(&self) -> Option<Arc<Shared>> {
        self.owner().upgrade()
    }

    /// Whether a success changes nothing: the window is full of successes and no
    /// failure streak is running (a success would reset it). Checked when a call is
    /// admitted (to take the fast path) and again when a fast call succeeds. The
    /// generation needs no check: if the breaker moved on, the outcome of a call from an
    /// earlier generation would be ignored anyway, and a window that is clean again (or
    /// a lane reused by another breaker) is unchanged by skipping it.
    #[inline]
    pub(crate) fn success_is_a_no_op(&self) -> bool {
        self.health.totals.raw() == self.health.clean_word.load(Ordering::Relaxed)
            && self.health.consecutive_failures.load(Ordering::Relaxed) == 0
    }

    /// Admit a call if the breaker is Closed or Disabled: on the fast path if a success
    /// would change nothing. `None` means "ask [`Shared::try_acquire`]".
    #[inline]
    pub(crate) fn try_admit(&self) -> Option<Ticket> {
        let word = Word(self.state.load(Ordering::Acquire));
        if !word.admits_calls() {
            return None;
        }
        let generation = word.generation();
        Some(if self.success_is_a_no_op() {
            Ticket::Fast { generation }
        } else {
            Ticket::Call { generation }
        })
    }

    /// Whether the breaker lets calls through now (Closed or Disabled).
    #[inline]
    pub(crate) fn admits_calls(&self) -> bool {
        Word(self.state.load(Ordering::Acquire)).admits_calls()
    }

    fn consecutive_failures(&self) -> &AtomicU32 {
        &self.health.consecutive_failures
    }
}

impl LaneRef<Lane> {
    /// Hand the lane back once its breaker is gone: a pooled lane to the pool (a counted
    /// one is freed with its last reference).
    fn release(&self) {
        let word = Word(self.state.load(Ordering::Acquire));
        self.state.store(
            Word::new(State::Closed, word.generation().wrapping_add(1), 0, 0).0,
            Ordering::Release,
        );
        self.health.totals.clear();
        self.health.consecutive_failures.store(0, Ordering::Release);
        self.health.clean_word.store(0, Ordering::Release);
        *self.owner() = Weak::new();
        if let Some(lane) = self.pooled() {
            LANES.give_back(lane);
        }
    }
}

// ===== shared state =====

#[derive(Debug)]
struct TransitionState {
    /// Trips in a row without a healthy Closed period between them.
    trips: u32,
    /// When the breaker last became Closed (clock nanoseconds).
    closed_since: u64,
    /// Transitions made and not yet announced, in the order they happened.
    announcements: VecDeque<Transition>,
}

/// A rate rule holds but the window has fewer than `minimum_calls` calls: the next
/// success may complete the minimum, so it must evaluate the rules too. (Two threads
/// evaluating at once may store in either order; a trip missed that way happens at the
/// next failure instead.)
#[derive(Debug)]
struct Streak {
    armed: AtomicBool,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) lane: LaneRef<Lane>,
    streak: CachePadded<Streak>,
    window: Window,
    open_until: AtomicU64,
    half_open_since: AtomicU64,
    rejections: AtomicU64,
    transition_lock: Mutex<TransitionState>,
    pub(crate) clock: Clock,
    jitter: Jitter,
    /// Created by the first subscriber: most breakers never have one.
    events: OnceLock<broadcast::Sender<Transition>>,
    /// Whether a thread is announcing transitions (see `announce_pending`).
    announcing_now: AtomicBool,
    pub(crate) waiters: WaitList,
    metrics: crate::metrics::BreakerMetrics,
    /// The loom models only: see `announce`.
    #[cfg(all(test, seawall_loom))]
    announcing: AtomicU64,
}

/// Which window a breaker judges.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WindowKind {
    Count { size: u32 },
    Time { bucket_nanos: u64, buckets: u32 },
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.lane.release();
    }
}

impl Shared {
    pub(crate) fn new(config: Config, window: WindowKind, seed: u64) -> Arc<Self> {
        let lane = Lane::acquire();
        let (window, clean_word) = match window {
            WindowKind::Count { size } => (
                Window::Count(CountWindow::new(size, lane.part())),
                Some(Totals::clean_word(size)),
            ),
            WindowKind::Time {
                bucket_nanos,
                buckets,
            } => (Window::Time(TimeWindow::new(bucket_nanos, buckets)), None),
        };
        // The fast path (see `Lane`) needs a count window. Every success must be seen when
        // the slow-call rule needs its duration, when metrics count it, or when a zero
        // threshold makes a clean window trip.
        let fast = config.slow_calls.is_none()
            && !cfg!(feature = "metrics")
            && config.failure_rate != Some(0.0);
        let clean_word = clean_word.filter(|_| fast);
        let metrics = crate::metrics::BreakerMetrics::new(&config.name);
        metrics.state(State::Closed);
        let armed = initially_armed(&config);
        lane.health
            .clean_word
            .store(clean_word.unwrap_or(0), Ordering::Release);
        Arc::new_cyclic(|weak| {
            *lane.owner() = weak.clone();
            Self {
                lane,
                streak: CachePadded::new(Streak {
                    armed: AtomicBool::new(armed),
                }),
                window,
                open_until: AtomicU64::new(0),
                half_open_since: AtomicU64::new(0),
                rejections: AtomicU64::new(0),
                transition_lock: Mutex::new(TransitionState {
                    trips: 0,
                    closed_since: 0,
                    announcements: VecDeque::new(),
                }),
                clock: Clock::new(),
                jitter: Jitter::new(seed),
                events: OnceLock::new(),
                announcing_now: AtomicBool::new(false),
                waiters: WaitList::new(),
                metrics,
                config,
                #[cfg(all(test, seawall_loom))]
                announcing: AtomicU64::new(0),
            }
        })
    }

    #[inline]
    fn word(&self) -> Word {
        Word(self.lane.state.load(Ordering::Acquire))
    }

    /// The state now, with any timed transition that is due made first.
    pub(crate) fn state(&self) -> State {
        let word = self.word();
        if word.admits_calls() || word.state() == State::ForcedOpen {
            return word.state();
        }
        self.catch_up(self.clock.now()).state()
    }

    /// Make the timed transitions that are due by `now`, each dated when it was due: an
    /// open period that is over goes half-open at its end, and a half-open period whose
    /// probes are still out at its limit re-opens at the limit (its open period counted
    /// from there). Transitions are evaluated here, lazily, by whoever looks at the
    /// breaker (a call, `poll_ready`, `state()`, a snapshot, a subscriber), so the
    /// breaker needs no timer task and no runtime; whatever it reports is true at that
    /// instant. Returns the word it leaves.
    pub(crate) fn catch_up(&self, now: u64) -> Word {
        loop {
            let word = self.word();
            let (due, to, cause) = match word.state() {
                State::Open => (
                    self.open_until.load(Ordering::Acquire),
                    State::HalfOpen,
                    Cause::OpenElapsed,
                ),
                State::HalfOpen if word.in_flight() > 0 => (
                    self.half_open_deadline(),
                    State::Open,
                    Cause::HalfOpenTimeout,
                ),
                _ => return word,
            };
            if now < due {
                return word;
            }
            // Whether this thread made it or another did, look again.
            let _ = self.transition(Some(word), to, cause, due);
        }
    }

    /// When the next timed transition is due, if one is scheduled (clock nanoseconds).
    pub(crate) fn next_due(&self) -> Option<u64> {
        let word = self.word();
        match word.state() {
            State::Open => Some(self.open_until.load(Ordering::Acquire)),
            State::HalfOpen if word.in_flight() > 0 => Some(self.half_open_deadline()),
            _ => None,
        }
    }

    fn half_open_deadline(&self) -> u64 {
        self.half_open_since
            .load(Ordering::Acquire)
            .saturating_add(crate::time::duration_to_nanos(self.config.max_half_open))
    }

    /// Admit a call, or say why not. Reads the clock only when the breaker is not Closed.
    #[inline]
    pub(crate) fn try_acquire(&self) -> Result<Ticket, Rejection> {
        loop {
            if let Some(ticket) = self.lane.try_admit() {
                return Ok(ticket);
            }
            if let Some(result) = self.acquire_slow() {
                return result;
            }
        }
    }

    /// Whether a call made now would be admitted, without taking anything: `poll_ready`
    /// observes, `call` takes (a half-open probe slot is taken by the call that uses it,
    /// so that a service readied and never called holds nothing).
    pub(crate) fn observe(&self) -> Result<(), Rejection> {
        let word = self.word();
        if word.admits_calls() {
            return Ok(());
        }
        let now = self.clock.now();
        let word = self.catch_up(now);
        match word.state() {
            State::Closed | State::Disabled => Ok(()),
            State::HalfOpen
                if word.in_flight() + word.successes() < self.config.half_open_probes =>
            {
                Ok(())
            }
            _ => Err(self.rejection(word, now)),
        }
    }

    /// Why a call is turned away from `word` (after `catch_up(now)`).
    fn rejection(&self, word: Word, now: u64) -> Rejection {
        match word.state() {
            State::Open => {
                let until = self.open_until.load(Ordering::Acquire);
                Rejection {
                    retry_after: Some(Duration::from_nanos(until.saturating_sub(now))),
                    recheck_at: Some(until),
                }
            }
            // Every slot is taken, by probes still out: the limit on how long they may
            // hold them is the next instant anything can change without an outcome.
            State::HalfOpen => Rejection {
                retry_after: None,
                recheck_at: Some(self.half_open_deadline()),
            },
            _ => Rejection {
                retry_after: None,
                recheck_at: None,
            },
        }
    }

    /// Admission when the breaker is not Closed. `None` means the state moved; look again.
    #[cold]
    fn acquire_slow(&self) -> Option<Result<Ticket, Rejection>> {
        let now = self.clock.now();
        let word = self.catch_up(now);
        match word.state() {
            State::Closed | State::Disabled => Some(Ok(Ticket::Call {
                generation: word.generation(),
            })),
            State::HalfOpen
                if word.in_flight() + word.successes() < self.config.half_open_probes =>
            {
                if word.in_flight() == 0 && now >= self.half_open_deadline() {
                    // The half-open period has been idle past its limit (no probe out,
                    // so nothing was due): this probe starts the limit afresh.
                    self.restart_half_open(word, now);
                }
                let next = Word(word.0 + (1 << IN_FLIGHT_SHIFT));
                self.lane
                    .state
                    .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                    .ok()
                    .map(|_| {
                        Ok(Ticket::Probe {
                            generation: word.generation(),
                        })
                    })
            }
            _ => Some(Err(self.rejection(word, now))),
        }
    }

    /// Restart the half-open limit of an idle half-open period at `now`.
    #[cold]
    fn restart_half_open(&self, word: Word, now: u64) {
        let _guard = self.lock();
        let current = self.word();
        if current.state() == State::HalfOpen
            && current.generation() == word.generation()
            && current.in_flight() == 0
            && now > self.half_open_since.load(Ordering::Acquire)
        {
            self.half_open_since.store(now, Ordering::Release);
        }
    }

    /// Count a rejected call.
    pub(crate) fn note_rejection(&self) {
        self.rejections.fetch_add(1, Ordering::Relaxed);
        self.metrics.rejection();
    }

    /// Record the outcome of an admitted call. `slow` is whether it took at least the
    /// slow-call threshold (always false without a slow-call rule).
    #[inline]
    pub(crate) fn record(&self, ticket: Ticket, health: Health, slow: bool) {
        self.metrics.call(health, slow);
        match ticket {
            Ticket::Call { generation } | Ticket::Fast { generation } => {
                self.record_call(generation, health, slow)
            }
            Ticket::Probe { generation } => self.record_probe(generation, health, slow),
        }
    }

    /// A ticket was dropped without an outcome: give back its probe slot, if any.
    pub(crate) fn abandon(&self, ticket: Ticket) {
        if let Ticket::Probe { generation } = ticket {
            self.release_probe(generation);
        }
    }

    #[inline]
    fn record_call(&self, generation: u32, health: Health, slow: bool) {
        let word = self.word();
        if word.generation() != generation {
            return; // The breaker moved on while this call was in flight.
        }
        let failure = match health {
            Health::Ignored => return,
            Health::Failure => true,
            Health::Success => false,
        };
        let sample = Sample { failure, slow };
        let config = &self.config;
        // Whether the counts moved does not matter here: a success that completes the
        // minimum number of calls is caught by the `armed` watch below.
        let _ = self.window.record(sample, || self.clock.now());
        let mut cause = None;
        if let Some(limit) = config.consecutive_failures {
            let streak = self.lane.consecutive_failures();
            if failure {
                if streak.fetch_add(1, Ordering::AcqRel).saturating_add(1) >= limit {
                    cause = Some(Cause::ConsecutiveFailures);
                }
            } else if streak.load(Ordering::Relaxed) != 0 {
                streak.store(0, Ordering::Release);
            }
        }
        let rates_may_trip = failure || slow || self.streak.armed.load(Ordering::Relaxed);
        if cause.is_none() && rates_may_trip {
            cause = self.evaluate_rates();
        }
        if let Some(cause) = cause {
            if word.state() == State::Closed {
                self.transition(Some(word), State::Open, cause, self.clock.now());
            }
        }
    }

    /// Check the rate rules against the window; arm or disarm the minimum-calls watch.
    fn evaluate_rates(&self) -> Option<Cause> {
        let config = &self.config;
        if config.failure_rate.is_none() && config.slow_calls.is_none() {
            return None;
        }
        let counts = self.window.counts(|| self.clock.now());
        let calls = counts.calls as f64;
        let failing = config
            .failure_rate
            .is_some_and(|rate| counts.failures as f64 >= rate * calls);
        let slow = config
            .slow_calls
            .is_some_and(|rule| counts.slow as f64 >= rule.rate * calls);
        if !(failing || slow) {
            self.streak.armed.store(false, Ordering::Relaxed);
            return None;
        }
        if counts.calls < config.minimum_calls {
            self.streak.armed.store(true, Ordering::Relaxed);
            return None;
        }
        Some(if failing {
            Cause::FailureRate
        } else {
            Cause::SlowCallRate
        })
    }

    fn record_probe(&self, generation: u32, health: Health, slow: bool) {
        let good = match health {
            Health::Ignored => return self.release_probe(generation),
            Health::Success => !(slow && self.config.slow_calls.is_some()),
            Health::Failure => false,
        };
        // A half-open period that ran past its limit ended at the limit, whether or not
        // anyone looked at the breaker since: this late outcome must not decide it.
        let now = self.clock.now();
        self.catch_up(now);
        loop {
            let word = self.word();
            if word.state() != State::HalfOpen || word.generation() != generation {
                return; // A late probe of an earlier half-open period.
            }
            if !good {
                self.transition(Some(word), State::Open, Cause::ProbeFailed, now);
                return;
            }
            if word.successes() + 1 >= self.config.half_open_probes {
                self.transition(Some(word), State::Closed, Cause::ProbesSucceeded, now);
                return;
            }
            let next = Word::new(
                State::HalfOpen,
                generation,
                word.in_flight().saturating_sub(1),
                word.successes() + 1,
            );
            if self
                .lane
                .state
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // A success keeps its slot (it counts toward closing): nobody new may go.
                return;
            }
        }
    }

    fn release_probe(&self, generation: u32) {
        // A probe still out at the half-open limit ended the period at the limit; giving
        // its slot back later must not undo that.
        self.catch_up(self.clock.now());
        loop {
            let word = self.word();
            if word.state() != State::HalfOpen
                || word.generation() != generation
                || word.in_flight() == 0
            {
                return;
            }
            let next = Word(word.0 - (1 << IN_FLIGHT_SHIFT));
            if self
                .lane
                .state
                .compare_exchange(word.0, next.0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // One slot came back: one waiter may take it.
                self.waiters.wake(1);
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, TransitionState> {
        // A panic while holding this lock cannot leave it half-updated in a way that
        // matters (plain numbers and a queue, each updated in one step), so a poisoned
        // lock is still usable.
        self.transition_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Move to `to`, if the state is still `expected` (same state and generation); with
    /// `expected = None`, from whatever the state is (operator actions). Returns the new
    /// word, or `None` if the state had moved on.
    pub(crate) fn transition(
        &self,
        expected: Option<Word>,
        to: State,
        cause: Cause,
        now: u64,
    ) -> Option<Word> {
        let mut guard = self.lock();
        let mut current = self.word();
        if let Some(expected) = expected {
            if current.state() != expected.state() || current.generation() != expected.generation()
            {
                return None;
            }
        }
        let from = current.state();
        let probes = match to {
            State::Open => {
                if from == State::Closed {
                    let healthy = now.saturating_sub(guard.closed_since);
                    if healthy >= crate::time::duration_to_nanos(self.config.open.reset_after) {
                        guard.trips = 0;
                    }
                }
                guard.trips = guard.trips.saturating_add(1);
                let open_for = self
                    .config
                    .open
                    .jittered(guard.trips, self.jitter.next_unit());
                self.open_until.store(
                    now.saturating_add(crate::time::duration_to_nanos(open_for)),
                    Ordering::Release,
                );
                0
            }
            State::HalfOpen => {
                self.half_open_since.store(now, Ordering::Release);
                // Probes take their slots when they are called.
                0
            }
            State::Closed => {
                self.window.reset();
                self.lane.consecutive_failures().store(0, Ordering::Release);
                self.streak
                    .armed
                    .store(initially_armed(&self.config), Ordering::Release);
                guard.closed_since = now;
                if cause == Cause::Reset {
                    guard.trips = 0;
                }
                0
            }
            State::ForcedOpen => 0,
            State::Disabled => {
                self.window.reset();
                self.lane.consecutive_failures().store(0, Ordering::Release);
                0
            }
        };
        let next = Word::new(to, current.generation().wrapping_add(1), probes, 0);
        // Only probe counters can change without the lock; keep trying until the swap
        // lands on a word of the same state and generation.
        loop {
            match self.lane.state.compare_exchange(
                current.0,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(actual) => {
                    let actual = Word(actual);
                    if actual.state() != current.state()
                        || actual.generation() != current.generation()
                    {
                        return None;
                    }
                    current = actual;
                }
            }
        }
        // Queued under the lock, in the order the transitions happened, and announced
        // after it: the announcement runs user code (a metrics recorder, a tracing
        // subscriber), which may look at the breaker (a snapshot takes this lock) or be
        // slow, and must not hold up the next transition. Announced straight after
        // the lock, a transition could be overtaken by the next one (found by the loom
        // model `concurrent_transitions_agree_and_a_late_probe_decides_nothing`); the
        // queue keeps the order.
        if from != to {
            guard.announcements.push_back(Transition {
                from,
                to,
                cause,
                at: self.clock.instant(now),
            });
        }
        drop(guard);
        self.announce_pending();
        match to {
            State::Closed | State::Disabled => self.waiters.wake(usize::MAX),
            State::HalfOpen => self.waiters.wake(self.config.half_open_probes as usize),
            // No one may go, but the instant the timer keeper sleeps until has changed.
            State::Open => self.waiters.wake_keeper(),
            State::ForcedOpen => {}
        }
        Some(next)
    }

    /// Announce the queued transitions, in order, without holding the transition lock.
    /// One thread announces at a time: a thread that finds another announcing leaves its
    /// transition to it (which is how a recorder or subscriber that makes a transition
    /// itself, by looking at the breaker, does not announce out of order or recurse).
    fn announce_pending(&self) {
        loop {
            if self.announcing_now.swap(true, Ordering::AcqRel) {
                return;
            }
            loop {
                let next = self.lock().announcements.pop_front();
                match next {
                    Some(transition) => self.announce(transition),
                    None => break,
                }
            }
            // A swap, not a store, though a store would do in the memory model: loom
            // (0.7, tokio-rs/loom#254) lets a plain store slip before another thread's
            // swap that read this thread's `true`, so that this thread's next swap reads
            // `true` again and the last transition is never announced (an interleaving
            // the memory model rules out, which the model
            // `concurrent_transitions_agree_and_a_late_probe_decides_nothing` reported as
            // a lost announcement). Every access being a read-modify-write, loom keeps
            // them in one order. A cold path: once per batch of transitions.
            self.announcing_now.swap(false, Ordering::Release);
            // A transition queued after the last look, by a thread that found this one
            // still announcing, is announced by this one.
            if self.lock().announcements.is_empty() {
                return;
            }
        }
    }

    fn announce(&self, transition: Transition) {
        // The loom models only: a step loom sees (the broadcast is tokio's, which loom
        // does not model), so that loom tries the announcements in every order.
        #[cfg(all(test, seawall_loom))]
        self.announcing.fetch_add(1, Ordering::Relaxed);
        self.metrics.transition(transition.from, transition.to);
        #[cfg(feature = "tracing")]
        {
            let policy: &str = &self.config.name;
            if transition.to == State::Open || transition.to == State::ForcedOpen {
                tracing::warn!(
                    target: "seawall::circuit_breaker",
                    policy,
                    from = ?transition.from,
                    to = ?transition.to,
                    cause = ?transition.cause,
                    "circuit breaker opened"
                );
            } else {
                tracing::info!(
                    target: "seawall::circuit_breaker",
                    policy,
                    from = ?transition.from,
                    to = ?transition.to,
                    cause = ?transition.cause,
                    "circuit breaker state changed"
                );
            }
        }
        // No subscriber is fine: nobody is listening.
        if let Some(events) = self.events.get() {
            let _ = events.send(transition);
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.events
            .get_or_init(|| broadcast::channel(64).0)
            .subscribe()
    }

    // ===== snapshots =====

    pub(crate) fn snapshot(&self) -> super::Snapshot {
        let now = self.clock.now();
        let word = self.catch_up(now);
        let counts = self.window.counts(|| now);
        let retry_after = match word.state() {
            State::Open => Some(Duration::from_nanos(
                self.open_until.load(Ordering::Acquire).saturating_sub(now),
            )),
            _ => None,
        };
        super::Snapshot {
            state: word.state(),
            calls: counts.calls,
            failures: counts.failures,
            slow_calls: counts.slow,
            consecutive_failures: self.lane.consecutive_failures().load(Ordering::Acquire),
            rejections: self.rejections.load(Ordering::Relaxed),
            trips: self.lock().trips,
            probes_in_flight: word.in_flight(),
            probe_successes: word.successes(),
            next_probe_in: retry_after,
        }
    }
}

fn initially_armed(config: &Config) -> bool {
    // A zero threshold holds with no failures at all, so the minimum-calls watch starts
    // armed.
    config.failure_rate == Some(0.0) || config.slow_calls.is_some_and(|r| r.rate == 0.0)
}

// The unit tests below use `std`'s locks in statics; the loom build runs only the models.
#[cfg(all(test, not(seawall_loom)))]
mod tests {
    use super::*;

    fn backoff() -> OpenBackoff {
        OpenBackoff {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.0,
            reset_after: Duration::from_secs(300),
        }
    }

    fn config(consecutive_failures: Option<u32>) -> Config {
        Config {
            name: Arc::from("test"),
            failure_rate: None,
            slow_calls: None,
            consecutive_failures,
            minimum_calls: 1,
            open: backoff(),
            half_open_probes: 1,
            max_half_open: Duration::from_secs(30),
        }
    }

    fn sample(failure: bool) -> Sample {
        Sample {
            failure,
            slow: false,
        }
    }

    #[test]
    fn jitter_near_duration_max_does_not_panic() {
        for jitter in [0.0, 0.5, 1.0] {
            let b = OpenBackoff {
                base: Duration::MAX,
                max: Duration::MAX,
                multiplier: 1e300,
                jitter,
                reset_after: Duration::MAX,
            };
            for trips in [1, 2, 1_000, u32::MAX] {
                for unit in [0.0, 0.5, 0.999_999] {
                    let d = b.jittered(trips, unit);
                    assert!(d <= Duration::MAX && d > Duration::ZERO);
                }
            }
        }
    }

    /// Unit tests that build a `Shared` take lanes from the global pool: run them one at
    /// a time so that a lane released by one is not taken by another.
    static POOL: Mutex<()> = Mutex::new(());

    fn pool() -> MutexGuard<'static, ()> {
        POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn a_stale_failure_streak_never_survives_on_the_fast_path() {
        let _pool = pool();
        // Replay a race: a failure writes its window slot, a success makes the window
        // clean again, then the failure bumps the streak. The fast path must not hide the
        // stale streak: the next success must take the tracked path and clear it.
        let shared = Shared::new(config(Some(2)), WindowKind::Count { size: 1 }, 1);
        let generation = shared.word().generation();
        let _ = shared.window.record(sample(true), || 0); // the failure, part 1
        shared.record_call(generation, Health::Success, false); // the success
        shared
            .lane
            .consecutive_failures()
            .fetch_add(1, Ordering::AcqRel); // the failure, part 2
        let ticket = shared.try_acquire().unwrap();
        assert_eq!(ticket, Ticket::Call { generation }, "not the fast path");
        shared.record(ticket, Health::Success, false);
        assert_eq!(
            shared.lane.consecutive_failures().load(Ordering::Acquire),
            0
        );
        // Clean again: the fast path is back (it is off when `metrics` counts every call).
        let fast = matches!(shared.try_acquire(), Ok(Ticket::Fast { .. }));
        assert_eq!(fast, cfg!(not(feature = "metrics")));
        // One failure now is one failure, not two in a row.
        shared.record_call(generation, Health::Failure, false);
        assert_eq!(shared.state(), State::Closed);
    }

    #[test]
    fn a_dropped_breakers_lane_is_reused_with_a_later_generation() {
        let _pool = pool();
        let first = Shared::new(config(Some(1)), WindowKind::Count { size: 4 }, 1);
        let lane: *const Lane = &*first.lane;
        let generation = first.word().generation();
        first.record_call(generation, Health::Failure, false);
        assert_eq!(first.state(), State::Open);
        drop(first);
        let second = Shared::new(config(Some(1)), WindowKind::Count { size: 4 }, 1);
        assert!(
            std::ptr::eq(lane, &*second.lane),
            "the pooled lane is reused"
        );
        assert_eq!(second.state(), State::Closed);
        assert_ne!(second.word().generation(), generation);
        assert_eq!(second.window.counts(|| 0).calls, 0);
        assert_eq!(
            second.lane.consecutive_failures().load(Ordering::Acquire),
            0
        );
        // A late outcome of the first breaker's generation counts for nothing.
        second.record(Ticket::Call { generation }, Health::Failure, false);
        assert_eq!(second.state(), State::Closed);
        assert_eq!(second.window.counts(|| 0).calls, 0);
    }

    #[test]
    fn word_round_trips() {
        let w = Word::new(State::HalfOpen, u32::MAX, MAX_PROBES, MAX_PROBES - 1);
        assert_eq!(w.state(), State::HalfOpen);
        assert_eq!(w.generation(), u32::MAX);
        assert_eq!(w.in_flight(), MAX_PROBES);
        assert_eq!(w.successes(), MAX_PROBES - 1);
    }

    #[test]
    fn open_duration_grows_and_caps() {
        let b = backoff();
        assert_eq!(b.nominal(1), Duration::from_secs(5));
        assert_eq!(b.nominal(2), Duration::from_secs(10));
        assert_eq!(b.nominal(4), Duration::from_secs(40));
        assert_eq!(b.nominal(7), Duration::from_secs(300));
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_only_shortens() {
        let b = OpenBackoff {
            jitter: 0.5,
            ..backoff()
        };
        assert_eq!(b.jittered(1, 0.0), Duration::from_secs(5));
        assert_eq!(b.jittered(1, 0.5), Duration::from_millis(3750));
        assert!(b.jittered(100, 0.999) >= Duration::from_secs(150));
        assert!(b.jittered(100, 0.0) <= Duration::from_secs(300));
    }
}

#[cfg(all(test, seawall_loom))]
mod loom_tests;
