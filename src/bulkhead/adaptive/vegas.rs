//! Vegas: estimate the queue from the RTT and keep it between two thresholds.

use super::atomic::AtomicF64;
use super::rounds::{probe_limit, Observed, RoundStats, Rounds};
use super::{
    check, check_limits, check_probe_interval, check_smoothing, to_limit, LimitAlgorithm, Sample,
};
use crate::error::ConfigError;

/// Delay-based limit after TCP Vegas: estimate how many calls are queued in the
/// downstream and keep that queue small. The anchor is Netflix's `VegasLimit`.
///
/// Once per round (as many calls as the limit), with `rtt` the round's mean RTT and
/// `rtt_noload` the RTT the downstream gives without a queue, the queue is
/// `limit × (1 − rtt_noload / rtt)` calls: Little's law, if all of the extra latency is
/// waiting. With `log = max(1, log10(limit))`:
///
/// | estimated queue | step |
/// |---|---|
/// | at most `threshold × log` | grow by `beta × log` (nothing is queued: catch up fast) |
/// | below `alpha × log` | grow by `log` |
/// | above `beta × log` | shrink by `log` |
/// | otherwise | hold |
///
/// Each step is scaled by [`smoothing`](VegasBuilder::smoothing). A dropped call shrinks
/// the limit by `log` at once, as Netflix does. Rounds in which most calls found less than
/// half the limit in use change nothing (Netflix's app-limited rule).
///
/// # Where this differs from Netflix's, and why
///
/// - **Once per round, not once per call.** Netflix applies a step per call, which moves
///   the limit by a whole round trip of steps before the first response to the change
///   comes back; in a saturated downstream it swings between far too low and twice the
///   capacity.
/// - **Means, not minimums.** Netflix compares each call's RTT with the lowest RTT ever
///   seen. The lowest of many calls sits at the bottom of the latency's jitter, so the
///   ordinary spread of calls already looks like a queue: 10 % of the limit with ±10 %
///   jitter, more than `beta × log` above about 120 calls, so that the limit stops short
///   of a larger capacity. Comparing a round's mean with a mean measured without
///   queueing compares like with like.
/// - **`rtt_noload` is re-measured by a probe**, every
///   [`probe_interval`](VegasBuilder::probe_interval) rounds: the limit drops to 90 % of
///   the estimated knee until one round of calls started under that limit (16 at least)
///   has completed, and their mean RTT becomes `rtt_noload`. Netflix instead resets it to
///   the next call's RTT; in a saturated downstream that RTT includes the queue, which
///   each reset then takes for the no-load latency (in the simulation, with a capacity of
///   100, the limit then swings between 13 and 206). The first round's mean, at the
///   initial limit, is the first `rtt_noload`, so start below the downstream's capacity.
///
/// | setting | default | from |
/// |---|---|---|
/// | initial limit | 20 | Netflix |
/// | min limit | 1 | |
/// | max limit | 1000 | Netflix |
/// | alpha, beta, threshold | 3, 6, 1 (× log10 of the limit) | Netflix |
/// | smoothing | 1.0 | Netflix |
/// | probe interval | 30 rounds | Netflix's probe multiplier |
///
/// By design Vegas keeps `alpha × log` to `beta × log` calls queued: 6 to 12 at a limit of
/// 100, 4 to 8 at 25. That is what lets it see the queue; for a downstream that serves
/// fewer than about 50 calls at once it is more than a quarter of its capacity.
///
/// ```
/// use seawall::bulkhead::adaptive::{LimitAlgorithm, Sample, Vegas};
/// use std::time::Duration;
///
/// let vegas = Vegas::builder().initial_limit(4).build()?;
/// let call = |ms| Sample::new(Duration::from_millis(ms), 4, 4, false);
///
/// // The first round (4 calls at the initial limit) measures the no-load RTT: 10 ms.
/// for _ in 0..4 {
///     vegas.update(call(10));
/// }
/// // A round at 10 ms again: no queue, so it grows fast: by beta × max(1, log10 4) = 6.
/// for _ in 0..3 {
///     vegas.update(call(10));
/// }
/// assert_eq!(vegas.update(call(10)), 10);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Vegas {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    alpha: f64,
    beta: f64,
    threshold: f64,
    smoothing: f64,
    limit: AtomicF64,
    /// `rtt_noload` in nanoseconds; 0 until the first round measures it.
    rtt_noload: AtomicF64,
    rounds: Rounds,
}

impl Vegas {
    /// A builder with the defaults in the [type docs](Vegas).
    pub fn builder() -> VegasBuilder {
        VegasBuilder {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 1000,
            alpha: 3.0,
            beta: 6.0,
            threshold: 1.0,
            smoothing: 1.0,
            probe_interval: 30,
        }
    }

    /// The limit now (a probe, while it runs, lowers what [`update`] returns, not this).
    ///
    /// [`update`]: LimitAlgorithm::update
    pub fn limit(&self) -> u32 {
        to_limit(self.limit.load(), self.min_limit, self.max_limit)
    }

    fn clamp(&self, limit: f64) -> f64 {
        limit
            .max(f64::from(self.min_limit))
            .min(f64::from(self.max_limit))
    }

    fn on_drop(&self) {
        self.limit
            .update(|limit| Some(self.clamp(limit - self.smoothing * log(limit))));
    }

    fn on_round(&self, stats: RoundStats) -> u32 {
        let Some(rtt) = stats.mean_rtt else {
            return self.limit();
        };
        let noload = self.rtt_noload.load();
        if noload <= 0.0 {
            self.rtt_noload.store(rtt);
            return self.limit();
        }
        if stats.app_limited() {
            return self.limit();
        }
        let next = self.limit.update(|limit| {
            let log = log(limit);
            let queue = limit * (1.0 - noload / rtt);
            let step = if queue <= self.threshold * log {
                self.beta * log
            } else if queue < self.alpha * log {
                log
            } else if queue > self.beta * log {
                -log
            } else {
                return None;
            };
            Some(self.clamp(limit + self.smoothing * step))
        });
        // A round with drops is no time to measure: a probe call dropped would end the
        // probe anyway. The probe waits for a round without.
        if stats.probe_due && stats.dropped == 0 {
            let probe = probe_limit(next, noload, rtt, self.min_limit);
            if self.rounds.start_probe(probe, next) {
                return probe;
            }
        }
        to_limit(next, self.min_limit, self.max_limit)
    }
}

/// `log10(limit)`, at least 1, so that steps never vanish at small limits.
fn log(limit: f64) -> f64 {
    limit.log10().max(1.0)
}

impl LimitAlgorithm for Vegas {
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
                self.rounds.probed(self.rtt_noload.load(), rtt);
                self.rtt_noload.store(rtt);
                self.limit()
            }
            Observed::Counted => {
                if sample.dropped {
                    self.on_drop();
                }
                self.limit()
            }
            Observed::Closed(stats) => {
                if sample.dropped {
                    self.on_drop();
                }
                self.on_round(stats)
            }
        }
    }
}

/// Configures a [`Vegas`] limit. Every setter takes the value as given;
/// [`build`](Self::build) checks them all and names the first bad one.
///
/// ```
/// use seawall::bulkhead::adaptive::Vegas;
///
/// let err = Vegas::builder().alpha(8.0).beta(6.0).build().unwrap_err();
/// assert_eq!(err.field(), "beta");
///
/// let vegas = Vegas::builder().alpha(2.0).beta(4.0).build()?;
/// # let _ = vegas;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct VegasBuilder {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    alpha: f64,
    beta: f64,
    threshold: f64,
    smoothing: f64,
    probe_interval: u32,
}

impl VegasBuilder {
    /// The limit to start from (default 20), within `min_limit..=max_limit`. The first
    /// round's calls measure the first no-load RTT, so it should be below the
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

    /// The highest the limit may grow (default 1000; at most
    /// [`MAX_LIMIT`](super::MAX_LIMIT)).
    pub fn max_limit(mut self, limit: u32) -> Self {
        self.max_limit = limit;
        self
    }

    /// Grow while fewer than `alpha × log10(limit)` calls are queued (default 3; at least
    /// `threshold`, below `beta`).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Shrink while more than `beta × log10(limit)` calls are queued (default 6; above
    /// `alpha`, finite).
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// At most `threshold × log10(limit)` calls queued counts as no queue at all: grow by
    /// `beta × log10(limit)` (default 1; at least 0, at most `alpha`).
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// The share of each step applied (default 1.0; within `0.0..=1.0`, above 0).
    pub fn smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = smoothing;
        self
    }

    /// Re-measure the no-load RTT every this many rounds (default 30; at least 1).
    pub fn probe_interval(mut self, rounds: u32) -> Self {
        self.probe_interval = rounds;
        self
    }

    /// Check every value and build the algorithm.
    pub fn build(self) -> Result<Vegas, ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check(
            self.threshold.is_finite() && self.threshold >= 0.0,
            "threshold",
            || format!("must be a finite number >= 0 (got {})", self.threshold),
        )?;
        check(
            self.alpha.is_finite() && self.alpha >= self.threshold,
            "alpha",
            || {
                format!(
                    "must be a finite number >= threshold ({}) (got {})",
                    self.threshold, self.alpha
                )
            },
        )?;
        check(
            self.beta.is_finite() && self.beta > self.alpha,
            "beta",
            || {
                format!(
                    "must be a finite number > alpha ({}) (got {})",
                    self.alpha, self.beta
                )
            },
        )?;
        check_smoothing(self.smoothing)?;
        check_probe_interval(self.probe_interval)?;
        Ok(Vegas {
            initial_limit: self.initial_limit,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            alpha: self.alpha,
            beta: self.beta,
            threshold: self.threshold,
            smoothing: self.smoothing,
            limit: AtomicF64::new(f64::from(self.initial_limit)),
            rtt_noload: AtomicF64::new(0.0),
            rounds: Rounds::new(self.probe_interval),
        })
    }
}
