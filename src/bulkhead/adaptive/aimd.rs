//! AIMD: additive increase, multiplicative decrease, driven by drops and timeouts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::atomic::AtomicF64;
use super::{check, check_limits, to_limit, LimitAlgorithm, Sample};
use crate::error::ConfigError;

/// Loss-based limit: grows while calls succeed, shrinks by a ratio when one is dropped or
/// takes longer than [`timeout`](AimdBuilder::timeout). The anchor is Netflix's
/// `AIMDLimit`, run as TCP Reno runs its window.
///
/// - **Slow start.** Until the first backoff the limit grows by one per successful call,
///   doubling each round trip, so a limit far below capacity finds it in a few round
///   trips.
/// - **Additive increase.** After that it grows by `1 / limit` per successful call: one
///   per round trip. (Netflix adds one per call, which doubles the limit every round trip
///   for ever and overshoots by a whole round trip of calls before the first timeout comes
///   back.)
/// - **Multiplicative decrease.** A dropped call, or one slower than the timeout,
///   multiplies the limit by [`backoff_ratio`](AimdBuilder::backoff_ratio), once per
///   round trip: a drop from a call that started under a higher limit than the current one
///   is news the limit has already acted on, and is ignored (TCP's "once per window").
/// - Calls that found less than half their limit in use do not grow it (Netflix's
///   app-limited rule): a limit nobody uses proves nothing.
///
/// AIMD sees no latency below the timeout. It settles where its signal starts: just below
/// the concurrency at which calls begin to time out or be dropped. Set the timeout to the
/// latency your callers consider a failure; with the default (5 s) only drops and very
/// slow calls count.
///
/// | setting | default | from |
/// |---|---|---|
/// | initial limit | 20 | Netflix |
/// | min limit | 1 | Netflix uses 20; a floor above the downstream's capacity would defeat the limit |
/// | max limit | 200 | Netflix |
/// | backoff ratio | 0.9 | Netflix |
/// | timeout | 5 s | Netflix |
///
/// ```
/// use seawall::bulkhead::adaptive::{Aimd, LimitAlgorithm, Sample};
/// use std::time::Duration;
///
/// let aimd = Aimd::builder()
///     .initial_limit(10)
///     .timeout(Duration::from_millis(250))
///     .build()?;
///
/// // A fast call that used the limit: slow start adds one.
/// let fast = Sample::new(Duration::from_millis(20), 10, 10, false);
/// assert_eq!(aimd.update(fast), 11);
/// // A call slower than the timeout counts as a drop: back off by 10 %.
/// let slow = Sample::new(Duration::from_millis(300), 11, 11, false);
/// assert_eq!(aimd.update(slow), 9);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct Aimd {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    backoff_ratio: f64,
    timeout: Duration,
    limit: AtomicF64,
    slow_start: AtomicBool,
}

impl Aimd {
    /// A builder with the defaults in the [type docs](Aimd).
    pub fn builder() -> AimdBuilder {
        AimdBuilder {
            initial_limit: 20,
            min_limit: 1,
            max_limit: 200,
            backoff_ratio: 0.9,
            timeout: Duration::from_secs(5),
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        to_limit(self.limit.load(), self.min_limit, self.max_limit)
    }
}

impl LimitAlgorithm for Aimd {
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
        let (min, max) = (f64::from(self.min_limit), f64::from(self.max_limit));
        let started_under = f64::from(sample.limit);
        let next = if sample.dropped || sample.rtt > self.timeout {
            let mut backed_off = false;
            let next = self.limit.update(|limit| {
                backed_off = started_under <= limit.floor();
                backed_off.then(|| (limit * self.backoff_ratio).max(min))
            });
            if backed_off {
                // A racing call may still grow the limit once at the slow-start rate
                // after this: one call's worth, which the next backoff takes back.
                self.slow_start.store(false, Ordering::Release);
            }
            next
        } else if sample.in_flight.saturating_mul(2) >= sample.limit {
            let slow_start = self.slow_start.load(Ordering::Acquire);
            self.limit.update(|limit| {
                let step = if slow_start { 1.0 } else { 1.0 / limit };
                Some((limit + step).min(max))
            })
        } else {
            self.limit.load()
        };
        to_limit(next, self.min_limit, self.max_limit)
    }
}

/// Configures an [`Aimd`] limit. Every setter takes the value as given;
/// [`build`](Self::build) checks them all and names the first bad one.
///
/// ```
/// use seawall::bulkhead::adaptive::{Aimd, LimitAlgorithm};
///
/// let err = Aimd::builder().backoff_ratio(1.0).build().unwrap_err();
/// assert_eq!(err.field(), "backoff_ratio");
///
/// let aimd = Aimd::builder().min_limit(5).max_limit(500).build()?;
/// assert_eq!((aimd.min_limit(), aimd.max_limit()), (5, 500));
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AimdBuilder {
    initial_limit: u32,
    min_limit: u32,
    max_limit: u32,
    backoff_ratio: f64,
    timeout: Duration,
}

impl AimdBuilder {
    /// The limit to start from (default 20), within `min_limit..=max_limit`.
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

    /// What a backoff multiplies the limit by (default 0.9; within `0.5..1.0`, Netflix's
    /// range: below 0.5 one drop halves the limit, and 1.0 never backs off).
    pub fn backoff_ratio(mut self, ratio: f64) -> Self {
        self.backoff_ratio = ratio;
        self
    }

    /// A call that takes longer than this counts as dropped (default 5 s; longer than
    /// zero).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Check every value and build the algorithm.
    pub fn build(self) -> Result<Aimd, ConfigError> {
        check_limits(self.initial_limit, self.min_limit, self.max_limit)?;
        check(
            (0.5..1.0).contains(&self.backoff_ratio),
            "backoff_ratio",
            || format!("must be within 0.5..1.0 (got {})", self.backoff_ratio),
        )?;
        check(!self.timeout.is_zero(), "timeout", || {
            "must be longer than zero".to_owned()
        })?;
        Ok(Aimd {
            initial_limit: self.initial_limit,
            min_limit: self.min_limit,
            max_limit: self.max_limit,
            backoff_ratio: self.backoff_ratio,
            timeout: self.timeout,
            limit: AtomicF64::new(f64::from(self.initial_limit)),
            slow_start: AtomicBool::new(true),
        })
    }
}
