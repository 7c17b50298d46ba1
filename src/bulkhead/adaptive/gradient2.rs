//! Gradient2: scale the limit by how far the short-term RTT has moved from the long-term
//! one.

use super::atomic::AtomicF64;
use super::rounds::{probe_limit, Observed, RoundStats, Rounds};
use super::{
    check, check_limits, check_probe_interval, check_smoothing, to_limit, LimitAlgorithm, Sample,
};
use crate::error::ConfigError;

/// The gradient never cuts the limit by more than half in one step (Netflix).
const MIN_GRADIENT: f64 = 0.5;
/// Nor more than doubles it (Envoy's bound; Netflix's is 1.0, see the type docs).
const MAX_GRADIENT: f64 = 2.0;

/// Delay-based limit that follows the *gradient* between a short-term and a long-term
/// RTT. The anchor is Netflix's `Gradient2Limit`; Envoy's adaptive concurrency filter
/// uses a similar rule against a periodically measured minimum RTT.
///
/// Once per round (as many calls as the limit):
///
/// ```text
/// short    = EWMA of the rounds' mean RTTs over `short_window` rounds
/// gradient = clamp(tolerance × long / short, 0.5, 2.0)
/// target   = limit × gradient + queue_size(limit)
/// limit    = limit + smoothing × (target − limit)
/// ```
///
/// While the short-term RTT stays within `tolerance` of the long-term one the limit grows
/// (by the queue size, plus the gradient's headroom); once queueing pushes it further the
/// gradient falls below 1 and the limit shrinks in proportion. The limit settles where the
/// latency is about `tolerance` over the no-load latency, plus `queue_size` calls. Each
/// dropped call in a round counts as a call with the smallest gradient (0.5). Rounds in
/// which most calls found less than half the limit in use change nothing (Netflix's
/// app-limited rule).
///
/// # Where this differs from Netflix's, and why
///
/// These changes were needed to settle on the capacity of a simulated saturated
/// downstream (see `tests/bulkhead_adaptive.rs` and the `adaptive_convergence` example):
///
/// - **The long-term RTT is the no-load RTT, re-measured by a probe**, not an average of
///   every call. An average of every call learns the queue the limiter itself creates:
///   with a downstream kept saturated, the long-term RTT catches up with the short-term
///   one, the gradient returns to 1, the queue size grows the limit, and the limit drifts
///   up until calls are dropped. Every [`probe_interval`](Gradient2Builder::probe_interval)
///   rounds the limit drops to 90 % of the estimated knee until one round of calls started
///   under that limit (16 at least) has completed; their mean RTT is the new long-term
///   RTT, whether the downstream got faster or slower. The first round, at the initial
///   limit, gives the first one, so start below the downstream's capacity.
/// - **Once per round, not once per call.** Netflix applies its smoothing per call,
///   which moves the limit by a whole round trip of steps before the first response to
///   the change comes back.
/// - **Means of rounds, not single calls,** on the short side, so that both sides of the
///   ratio are means and one slow call moves nothing. That is also why the default
///   tolerance can be 1.05 instead of Netflix's 1.5, which absorbs the spread of single
///   calls but lets a saturated downstream queue half again as many calls as it serves.
/// - **The gradient may exceed 1** (up to 2, as in Envoy), so that a limit far below the
///   capacity grows geometrically instead of by the queue size per round.
/// - **Drops count** as the smallest gradient; Netflix ignores them.
///
/// | setting | default | from |
/// |---|---|---|
/// | initial limit | 20 | Netflix |
/// | min limit | 1 | Netflix uses 20; a floor above the downstream's capacity would defeat the limit |
/// | max limit | 200 | Netflix |
/// | tolerance | 1.05 | Netflix uses 1.5 on single calls; see above |
/// | smoothing | 0.5 per round | Netflix uses 0.2 per call |
/// | short window | 3 rounds | Netflix uses the last call |
/// | queue size | `max(1, log10(limit))` | Netflix uses 4, which is already 20 % of a limit of 20 |
/// | probe interval | 30 rounds | Netflix's Vegas probe multiplier |
///
/// ```
/// use seawall::bulkhead::adaptive::{Gradient2, LimitAlgorithm, Sample};
/// use std::time::Duration;
///
/// let gradient = Gradient2::builder().initial_limit(10).build()?;
/// // One round: as many calls as the limit, each using the whole limit.
/// let round = |ms| {
///     for _ in 0..gradient.limit() {
///         let used = gradient.limit();
///         gradient.update(Sample::new(Duration::from_millis(ms), used, used, false));
///     }
/// };
///
/// round(10); // the first round measures the no-load RTT: 10 ms
/// for _ in 0..5 {
///     round(10); // no slower: grow
/// }
/// let grown = gradient.limit();
/// assert!(grown > 10);
/// round(30); // three times slower: shrink
/// assert!(gradient.limit() < grown);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Gradient2 {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    tolerance: f64,
    smoothing: f64,
    short_alpha: f64,
    queue_size: fn(f64) -> f64,
    limit: AtomicF64,
    /// The long-term (no-load) RTT in nanoseconds; 0 until the first round measures it.
    long_rtt: AtomicF64,
    /// The short-term RTT in nanoseconds; 0 until the first round.
    short_rtt: AtomicF64,
    rounds: Rounds,
}

impl Gradient2 {
    /// A builder with the defaults in the [type docs](Gradient2).
    pub fn builder() -> Gradient2Builder {
        Gradient2Builder {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 200,
            tolerance: 1.05,
            smoothing: 0.5,
            short_window: 3,
            queue_size: default_queue_size,
            probe_interval: 30,
        }
    }

    /// The limit now (a probe, while it runs, lowers what [`update`] returns, not this).
    ///
    /// [`update`]: LimitAlgorithm::update
    pub fn limit(&self) -> u32 {
        to_limit(self.limit.load(), self.min_limit, self.max_limit)
    }

    fn on_round(&self, stats: RoundStats) -> u32 {
        // The EWMA is one compare-and-swap on its own word. Two rounds closing at once
        // (possible with tiny limits and many threads) both land, in either order; the
        // limit below reads whichever value is newest, which is as good as any.
        let short = match stats.mean_rtt {
            Some(rtt) => self.short_rtt.update(|short| {
                Some(if short > 0.0 {
                    short + self.short_alpha * (rtt - short)
                } else {
                    rtt
                })
            }),
            None => self.short_rtt.load(),
        };
        let long = self.long_rtt.load();
        if long <= 0.0 {
            if let Some(rtt) = stats.mean_rtt {
                self.long_rtt.store(rtt);
            }
            return self.limit();
        }
        if stats.app_limited() {
            return self.limit();
        }
        let answered = if stats.mean_rtt.is_some() && short > 0.0 {
            (self.tolerance * long / short).clamp(MIN_GRADIENT, MAX_GRADIENT)
        } else {
            MIN_GRADIENT
        };
        let calls = f64::from(stats.calls.max(1));
        let dropped = f64::from(stats.dropped.min(stats.calls));
        let gradient = (dropped * MIN_GRADIENT + (calls - dropped) * answered) / calls;
        let next = self.limit.update(|limit| {
            let queue = (self.queue_size)(limit);
            // A queue-size function is user code: a result that is not a finite,
            // non-negative number counts as no queue rather than poisoning the limit.
            let queue = if queue.is_finite() && queue > 0.0 {
                queue
            } else {
                0.0
            };
            let target = limit * gradient + queue;
            let next = limit + self.smoothing * (target - limit);
            Some(
                next.max(f64::from(self.min_limit))
                    .min(f64::from(self.max_limit)),
            )
        });
        // A round with drops is no time to measure: a probe call dropped would end the
        // probe anyway. The probe waits for a round without.
        if let (true, 0, Some(rtt)) = (stats.probe_due, stats.dropped, stats.mean_rtt) {
            // The knee from this round's RTT rather than the smoothed one: right after a
            // change the smoothed RTT lags, and a knee estimated from it is too high.
            let probe = probe_limit(next, long, rtt, self.min_limit);
            if self.rounds.start_probe(probe, next) {
                return probe;
            }
        }
        to_limit(next, self.min_limit, self.max_limit)
    }
}

/// The default queue size: `log10(limit)`, at least 1.
fn default_queue_size(limit: f64) -> f64 {
    limit.log10().max(1.0)
}

impl LimitAlgorithm for Gradient2 {
    fn initial_limit(&self) -> u32 {
        self.initial_limit
    }

    fn min_limit(&self) -> u32 {
        self.min_limit
    }

    fn max_limit(&self) -> u32 {
        self.max_limit
    }

    fn update(&self, sample: Sample) -> u32 {
        match self.rounds.record(&sample, self.limit.load()) {
            Observed::Probing(limit) => limit,
            Observed::Probed(rtt) => {
                self.rounds.probed(self.long_rtt.load(), rtt);
                self.long_rtt.store(rtt);
                self.short_rtt.store(rtt);
                self.limit()
            }
            Observed::Counted => self.limit(),
            Observed::Closed(stats) => self.on_round(stats),
        }
    }
}

/// Configures a [`Gradient2`] limit. Every setter takes the value as given;
/// [`build`](Self::build) checks them all and names the first bad one.
///
/// ```
/// use seawall::bulkhead::adaptive::Gradient2;
///
/// let err = Gradient2::builder().tolerance(0.9).build().unwrap_err();
/// assert_eq!(err.field(), "tolerance");
///
/// // Netflix's settings: more tolerant of jitter, at the cost of a longer queue.
/// let gradient = Gradient2::builder()
///     .tolerance(1.5)
///     .queue_size(|_| 4.0)
///     .build()?;
/// # let _ = gradient;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Gradient2Builder {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    tolerance: f64,
    smoothing: f64,
    short_window: u32,
    queue_size: fn(f64) -> f64,
    probe_interval: u32,
}

impl Gradient2Builder {
    /// The limit to start from (default 20), within `min_limit..=max_limit`. The first
    /// round's calls measure the first long-term RTT, so it should be below the
    /// downstream's capacity.
    pub fn initial_limit(mut self, limit: u32) -> Self {
        self.initial_limit = limit;
        self
    }

    /// The lowest the limit may fall (default 1; at least 1).
    pub fn min_limit(mut self, limit: u32) -> Self {
        self.min_limit = limit;
        self
    }

    /// The highest the limit may grow (default 200; at most
    /// [`MAX_LIMIT`](super::MAX_LIMIT)).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max_limit = limit;
        self
    }

    /// How far the short-term RTT may rise over the long-term one before the limit
    /// shrinks, as a ratio (default 1.05; finite, at least 1.0). Raise it for a downstream
    /// whose latency jitters a lot from round to round; the limit then settles with about
    /// that much more queueing.
    pub fn tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The share of the way to the target the limit moves each round (default 0.5; within
    /// `0.0..=1.0`, above 0).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// The short-term RTT averages the rounds' mean RTTs over about this many rounds, as
    /// an EWMA with weight `2 / (rounds + 1)` (default 3; at least 1, where 1 is the last
    /// round alone).
    pub fn short_window(mut self, rounds: u32) -> Self {
        self.short_window = rounds;
        self
    }

    /// The calls the limit keeps queued on purpose, as a function of the limit (default
    /// `max(1, log10(limit))`). A result that is negative or not a finite number counts as
    /// zero.
    pub fn queue_size(mut self, queue_size: fn(f64) -> f64) -> Self {
        self.queue_size = queue_size;
        self
    }

    /// Re-measure the long-term (no-load) RTT every this many rounds (default 30; at
    /// least 1).
    pub fn probe_interval(mut self, rounds: u32) -> Self {
        self.probe_interval = rounds;
        self
    }

    /// Check every value and build the algorithm.
    pub fn build(self) -> Result<Gradient2, ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check(
            self.tolerance.is_finite() && self.tolerance >= 1.0,
            "tolerance",
            || format!("must be a finite number >= 1.0 (got {})", self.tolerance),
        )?;
        check_smoothing(self.smoothing)?;
        check(self.short_window >= 1, "short_window", || {
            "must be at least 1 round (got 0)".to_owned()
        })?;
        check_probe_interval(self.probe_interval)?;
        Ok(Gradient2 {
            initial_limit: self.initial_limit,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            tolerance: self.tolerance,
            smoothing: self.smoothing,
            short_alpha: 2.0 / (f64::from(self.short_window) + 1.0),
            queue_size: self.queue_size,
            limit: AtomicF64::new(f64::from(self.initial_limit)),
            long_rtt: AtomicF64::new(0.0),
            short_rtt: AtomicF64::new(0.0),
            rounds: Rounds::new(self.probe_interval),
        })
    }
}
