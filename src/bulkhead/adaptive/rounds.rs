//! What Vegas and Gradient2 measure: the mean RTT of each round trip, and now and then
//! the no-load RTT, re-measured by a short probe at reduced concurrency.
//!
//! A *round* is as many completed calls as the limit: about one round trip's worth when
//! the limit is in use. Judging once per round, instead of once per call, keeps the
//! algorithms' speed independent of the call rate and stops one slow call from moving
//! the limit.
//!
//! A *probe* lowers the limit a little below the estimated knee (where queueing starts)
//! until enough calls started under that lower limit have completed, and takes their mean
//! RTT as the new no-load RTT. Without it a caller that keeps the downstream saturated
//! can never tell "the downstream got slower" from "I am queueing it", and must either
//! learn its own queue as normal (the limit drifts up) or never learn a slower
//! downstream (the limit collapses). Envoy's adaptive concurrency filter and BBR also
//! measure the no-load latency by lowering the concurrency for a moment; they lower it to
//! a handful of calls, this only to just below the knee.
//!
//! Everything here is atomics: recording a call is a few `fetch_add`s and at most one
//! compare-and-swap; the call that completes a round or a probe gets its figures back.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::Sample;
use crate::time::duration_to_nanos;

// The round word packs three 21-bit counters and a flag, so that one `fetch_add`
// records a call and one compare-and-swap closes the round: the closer gets exactly the
// counts it reset. A round holds at most `MAX_LIMIT` (< 2^20) calls plus the few that
// race with its close, far below 2^21.
const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;
const APP_LIMITED_SHIFT: u32 = FIELD_BITS;
const DROPPED_SHIFT: u32 = 2 * FIELD_BITS;
/// The round's calls started while the limit refilled after a probe: judge nothing.
const SKIP: u64 = 1 << 63;

// The probe word: active flag, probe limit (low 32 bits), calls counted (bits 32..63).
const PROBE_ACTIVE: u64 = 1 << 63;
const PROBE_COUNT_SHIFT: u32 = 32;
const PROBE_COUNT_MASK: u64 = (1 << 31) - 1;

/// A probe averages at least this many calls, so that a probe at a small limit does not
/// rest on one or two noisy calls.
const PROBE_MIN_CALLS: u32 = 16;

/// A probe runs at this share of the estimated knee: far enough below it that its calls
/// do not queue even if the estimate is somewhat high, so that a baseline that is too
/// high shrinks by at least this factor per probe instead of feeding itself.
const PROBE_RATIO: f64 = 0.9;

/// A probe whose result differs from the previous one by more than this share is
/// followed by another after [`REPROBE_ROUNDS`], not a whole interval.
const REPROBE_CHANGE: f64 = 0.05;

/// See [`REPROBE_CHANGE`].
const REPROBE_ROUNDS: u32 = 3;

/// One call's RTT counts as at most 2^40 ns (about 18 minutes), so that a round's sum of
/// up to 2^21 calls cannot overflow a `u64`.
const MAX_RTT_NANOS: u64 = 1 << 40;

/// The figures of a round that just closed.
#[derive(Debug, Clone, Copy)]
pub(super) struct RoundStats {
    /// Calls in the round, dropped ones included (at least 1).
    pub(super) calls: u32,
    /// Calls started with less than half their limit in flight.
    pub(super) app_limited: u32,
    /// Calls that were dropped.
    pub(super) dropped: u32,
    /// Mean RTT of the calls that were not dropped, in nanoseconds (at least 1); `None`
    /// if every call was dropped.
    pub(super) mean_rtt: Option<f64>,
    /// The probe interval has passed: the caller should start a probe (it stays due,
    /// round after round, until one starts).
    pub(super) probe_due: bool,
}

impl RoundStats {
    /// Most of the round's calls found less than half the limit in use: the caller is
    /// not pushing, so the round says nothing about where the limit should be (Netflix's
    /// "app-limited" rule).
    pub(super) fn app_limited(&self) -> bool {
        u64::from(self.app_limited) * 2 > u64::from(self.calls)
    }
}

/// What recording one call produced.
#[derive(Debug, Clone, Copy)]
pub(super) enum Observed {
    /// Counted toward the current round, which is not over.
    Counted,
    /// A probe is running: use this limit.
    Probing(u32),
    /// This call completed a probe: the new no-load RTT, in nanoseconds.
    Probed(f64),
    /// This call closed a round.
    Closed(RoundStats),
}

#[derive(Debug)]
pub(super) struct Rounds {
    round: AtomicU64,
    rtt_sum: AtomicU64,
    probe: AtomicU64,
    probe_sum: AtomicU64,
    /// Completions seen while the probe runs, counted or not.
    probe_seen: AtomicU64,
    /// Give up the probe after this many completions.
    probe_budget: AtomicU64,
    rounds_since_probe: AtomicU32,
    probe_interval: u32,
}

impl Rounds {
    pub(super) fn new(probe_interval: u32) -> Self {
        Self {
            round: AtomicU64::new(0),
            rtt_sum: AtomicU64::new(0),
            probe: AtomicU64::new(0),
            probe_sum: AtomicU64::new(0),
            probe_seen: AtomicU64::new(0),
            probe_budget: AtomicU64::new(u64::MAX),
            rounds_since_probe: AtomicU32::new(0),
            probe_interval,
        }
    }

    /// Records one completed call under the current `limit`.
    pub(super) fn record(&self, sample: &Sample, limit: f64) -> Observed {
        let rtt = duration_to_nanos(sample.rtt).min(MAX_RTT_NANOS);
        let probe = self.probe.load(Ordering::Acquire);
        if probe & PROBE_ACTIVE != 0 {
            return self.record_probe(sample, rtt, probe);
        }

        let app_limited = sample.in_flight.saturating_mul(2) < sample.limit;
        let inc = 1
            | u64::from(app_limited) << APP_LIMITED_SHIFT
            | u64::from(sample.dropped) << DROPPED_SHIFT;
        if !sample.dropped {
            // The sum and the counts live in two words, so a call that races with the
            // round's close may land its RTT in one round and its count in the next:
            // that skews one round's mean by one call, which smoothing absorbs.
            self.rtt_sum.fetch_add(rtt, Ordering::AcqRel);
        }
        let word = self
            .round
            .fetch_add(inc, Ordering::AcqRel)
            .wrapping_add(inc);
        let calls = word & FIELD_MASK;
        if calls < round_len(limit) {
            return Observed::Counted;
        }
        // Every call that sees the round full tries to close it; the one whose
        // compare-and-swap succeeds (the last to arrive) owns exactly these counts.
        if self
            .round
            .compare_exchange(word, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Observed::Counted;
        }
        let sum = self.rtt_sum.swap(0, Ordering::AcqRel);
        if word & SKIP != 0 {
            return Observed::Counted;
        }
        let dropped = (word >> DROPPED_SHIFT) & FIELD_MASK;
        let answered = calls.saturating_sub(dropped);
        let mean_rtt = (answered > 0).then(|| (sum as f64 / answered as f64).max(1.0));
        Observed::Closed(RoundStats {
            calls: field(calls),
            app_limited: field((word >> APP_LIMITED_SHIFT) & FIELD_MASK),
            dropped: field(dropped),
            mean_rtt,
            probe_due: self.probe_due(),
        })
    }

    /// Starts a probe at `probe_limit` unless one is running, while the limit is `limit`.
    /// Returns whether it started.
    pub(super) fn start_probe(&self, probe_limit: u32, limit: f64) -> bool {
        // The probe's sum and counts were cleared when the last probe ended, so that
        // nothing but the probe word needs to change to start one: a second round closer
        // racing to start a probe cannot disturb the one that won.
        let started = self
            .probe
            .compare_exchange(
                0,
                PROBE_ACTIVE | u64::from(probe_limit),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if started {
            // The calls started under the old limit complete first, then the probe's
            // own; a probe that has not gathered its calls well after that is told
            // nothing useful (a caller that does not report the limit it used) and gives
            // up. Until this store the budget is unlimited.
            let needed = u64::from(probe_limit.max(PROBE_MIN_CALLS));
            self.probe_budget
                .store(round_len(limit) + 4 * needed, Ordering::Release);
            self.rounds_since_probe.store(0, Ordering::Release);
        }
        started
    }

    fn record_probe(&self, sample: &Sample, rtt: u64, mut probe: u64) -> Observed {
        let probe_limit = (probe & u64::from(u32::MAX)) as u32;
        let seen = self.probe_seen.fetch_add(1, Ordering::AcqRel) + 1;
        let started_under_probe = sample.limit <= probe_limit;
        if (started_under_probe && sample.dropped)
            || seen > self.probe_budget.load(Ordering::Acquire)
        {
            // A drop under the probe limit means the downstream is overloaded whatever
            // its no-load latency: end the probe, measuring nothing, and let the caller
            // treat the drop as it always does. The same when the probe ran out of time.
            self.abandon_probe(probe);
            return Observed::Counted;
        }
        // Only calls started under the probe limit measure the latency at it; the ones
        // started before the probe wait.
        if !started_under_probe || sample.dropped {
            return Observed::Probing(probe_limit);
        }
        self.probe_sum.fetch_add(rtt, Ordering::AcqRel);
        loop {
            let next = probe + (1 << PROBE_COUNT_SHIFT);
            match self
                .probe
                .compare_exchange_weak(probe, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let counted = (next >> PROBE_COUNT_SHIFT) & PROBE_COUNT_MASK;
                    if counted < u64::from(probe_limit.max(PROBE_MIN_CALLS)) {
                        return Observed::Probing(probe_limit);
                    }
                    // Exactly one call reaches the count, so exactly one ends the probe.
                    // A call that added its RTT but lost the race to count it skews
                    // this probe's mean by one call at most.
                    let sum = self.probe_sum.load(Ordering::Acquire);
                    self.end_probe();
                    return Observed::Probed((sum as f64 / counted as f64).max(1.0));
                }
                Err(current) if current & PROBE_ACTIVE != 0 => probe = current,
                // Another call ended the probe meanwhile.
                Err(_) => return Observed::Counted,
            }
        }
    }

    /// Ends the probe `probe` (if it is still the one running) without a measurement.
    fn abandon_probe(&self, mut probe: u64) {
        let probe_limit = probe as u32;
        let same = |word: u64| word & PROBE_ACTIVE != 0 && word as u32 == probe_limit;
        while same(probe) {
            match self
                .probe
                .compare_exchange_weak(probe, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return self.end_probe(),
                Err(current) => probe = current,
            }
        }
    }

    fn end_probe(&self) {
        // Ready the next probe before clearing the probe word that lets one start. A
        // call of this probe that still adds its RTT after this lands in the next probe's
        // sum: one call's worth, as above.
        self.probe_sum.store(0, Ordering::Release);
        self.probe_seen.store(0, Ordering::Release);
        self.probe_budget.store(u64::MAX, Ordering::Release);
        // The calls of the next round started while the limit refilled from the probe
        // limit: that round says nothing, skip it.
        self.round.store(SKIP, Ordering::Release);
        self.rtt_sum.store(0, Ordering::Release);
        self.probe.store(0, Ordering::Release);
    }

    /// Tells the probe schedule what the probe that just ended measured, against the
    /// no-load RTT before it (0 if none). A probe that moved the no-load RTT a lot may
    /// have measured a downstream that changed under it (its capacity fell while the
    /// probe ran, so the probe's calls queued): another follows soon, each at 90 % of a
    /// knee estimated from the last, until two agree.
    pub(super) fn probed(&self, before: f64, after: f64) {
        if before > 0.0 && (after / before - 1.0).abs() > REPROBE_CHANGE {
            self.rounds_since_probe.store(
                self.probe_interval.saturating_sub(REPROBE_ROUNDS),
                Ordering::Release,
            );
        }
    }

    /// Counts a closed round toward the probe interval; true once the interval has
    /// passed, until a probe starts.
    fn probe_due(&self) -> bool {
        let rounds = self
            .rounds_since_probe
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        rounds >= self.probe_interval
    }
}

/// A round is as many calls as the limit, at least one.
fn round_len(limit: f64) -> u64 {
    (limit.floor() as u64).max(1)
}

fn field(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// The limit a probe runs at: [`PROBE_RATIO`] of the estimated knee, which is where the
/// latency would fall back to `baseline` if the extra latency is all queueing
/// (`limit × baseline / latency`), and never below `min_limit`.
pub(super) fn probe_limit(limit: f64, baseline: f64, latency: f64, min_limit: u32) -> u32 {
    let ratio = if latency > 0.0 && baseline > 0.0 {
        (baseline / latency).min(1.0)
    } else {
        1.0
    };
    ((PROBE_RATIO * limit * ratio).floor() as u32).max(min_limit)
}
