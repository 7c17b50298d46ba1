//! Adaptive concurrency limits: find how many calls a downstream can take at once from
//! the latency and the drops of the calls it answers.
//!
//! A fixed bulkhead limit is a guess, and the right number moves: the downstream scales,
//! deploys, shares its capacity with other callers. Past its capacity, extra concurrency
//! buys no throughput at all, only queueing (Little's law): a downstream that serves 100
//! calls at once in 10 ms serves 10 000 calls/s whether 100 or 300 are in flight, and at
//! 300 each waits 30 ms. An adaptive limit watches each completed call and keeps the
//! concurrency near that knee.
//!
//! Each algorithm is a [`LimitAlgorithm`]: feed it a [`Sample`] for every completed call
//! and use the limit it returns.
//!
//! ```
//! use seawall::bulkhead::adaptive::{Gradient2, LimitAlgorithm, Sample};
//! use std::time::Duration;
//!
//! let limit = Gradient2::builder().build()?;
//! let mut in_flight_limit = limit.initial_limit();
//!
//! // For each completed call: how long it took, how many calls were in flight when it
//! // started (itself included), the limit then, and whether it was dropped.
//! let sample = Sample::new(Duration::from_millis(12), 20, in_flight_limit, false);
//! in_flight_limit = limit.update(sample);
//! assert!((limit.min_limit()..=limit.max_limit()).contains(&in_flight_limit));
//! # Ok::<(), seawall::error::ConfigError>(())
//! ```
//!
//! # Algorithms
//!
//! | algorithm | signal | settles |
//! |---|---|---|
//! | [`Aimd`] | drops and calls slower than a timeout | just below where calls start to fail or time out |
//! | [`Vegas`] | the queue estimated from the RTT | with `alpha`..`beta` × log10(limit) calls queued |
//! | [`Gradient2`] | the ratio of the short-term to the no-load RTT | with the latency about `tolerance` over no-load |
//!
//! AIMD needs no latency model but sees nothing until calls fail, so it finds the
//! capacity only if you give it a [`timeout`](AimdBuilder::timeout) near the latency you
//! accept. Vegas and Gradient2 see the queue build before anything fails, and measure the
//! no-load latency themselves.
//!
//! Each type's docs give its rule, its parameters, their defaults and where those come
//! from: Netflix's concurrency-limits library (`AIMDLimit`, `VegasLimit`,
//! `Gradient2Limit`), Envoy's adaptive concurrency filter, TCP. Where this crate departs
//! from them it says so and why; the departures come from running the algorithms against
//! a simulated downstream that the caller keeps saturated, which is where a bulkhead
//! matters. `cargo run --release --example adaptive_convergence` runs that simulation and
//! prints how fast each algorithm finds the capacity, follows it when it halves and when
//! it returns.
//!
//! # Rounds
//!
//! Vegas and Gradient2 judge once per *round*: as many completed calls as the limit,
//! about one round trip when the limit is in use. Netflix's versions move the limit on
//! every call, so by the time the first call started under a new limit comes back, the
//! limit has moved a round trip's worth of calls further; in a saturated downstream they
//! oscillate between far too low and twice the capacity. AIMD grows by one per round
//! (`1 / limit` per call) for the same reason. Each round's mean RTT is compared with a
//! no-load RTT that the algorithm re-measures now and then by a *probe*: for about one
//! round the limit drops to 90 % of the estimated knee, and the mean RTT of the calls
//! started under that limit becomes the no-load RTT. A probe that finds it moved by more
//! than 5 % is checked by another three rounds later, in case the downstream changed
//! while it ran. A probe ends early, measuring nothing, when one of its calls is dropped.
//!
//! # Concurrency
//!
//! [`update`](LimitAlgorithm::update) takes `&self` and is called from many threads at
//! once. All state is in atomics: a call costs a few atomic adds and a compare-and-swap
//! loop or two, never blocks and never allocates. The limit is an `f64` kept in an
//! `AtomicU64` and changed only by compare-and-swap on its latest value, so no change is
//! lost; the counts that must change together (a round's calls, app-limited calls and
//! drops; a probe's limit and calls) are packed into one word each. Where two words are
//! involved (a round's counts and its RTT sum) a call racing with the close may count in
//! one round and time in the next, which moves one round's mean by one call: noise the
//! smoothing absorbs. Whatever the interleaving, the limit stays within
//! `min_limit..=max_limit`.
//!
//! These algorithms have no loom model (the bulkhead's permits, queue and lane do: see
//! `limiter.rs`), because nothing here can break the bulkhead, only tune it. Every
//! invariant that must hold exactly lives in one atomic word and is kept by a single
//! compare-and-swap or `fetch_add` on it (the limit and its clamp; a round's counts and
//! the one caller that closes it; a probe's limit and count and the one caller that ends
//! it), which is atomic whatever the order of the threads. What spans two words (a
//! round's counts and its RTT sum; a probe's count and its sum; the probe word and its
//! budget) may skew one round's or one probe's mean by the calls racing with its close,
//! as said above: accuracy, which the smoothing absorbs. A probe cannot stay on: it ends
//! when its count is reached, when one of its calls is dropped, or after a budget of
//! completions, each decided by one compare-and-swap on the probe word. And whatever
//! limit comes out, the bulkhead applies it with `set_limit`, whose permits stay exact.
//!
//! # Limits
//!
//! - Limits are whole calls from 1 to [`MAX_LIMIT`].
//! - A few calls are kept queued on purpose, so that the downstream never idles while
//!   the limit probes upward: for a downstream that serves only a handful of calls at
//!   once, that is a large share of its capacity.
//! - Latency-based limits need the latency to carry the signal. If it jitters by more
//!   than the tolerance from one round to the next (few calls per round, heavy tails),
//!   raise [`tolerance`](Gradient2Builder::tolerance) or [`alpha`](VegasBuilder::alpha) and
//!   [`beta`](VegasBuilder::beta), and accept the longer queue that comes with them.

mod aimd;
mod atomic;
mod gradient2;
mod rounds;
mod vegas;

use std::sync::Arc;
use std::time::Duration;

pub use self::aimd::{Aimd, AimdBuilder};
pub use self::gradient2::{Gradient2, Gradient2Builder};
pub use self::vegas::{Vegas, VegasBuilder};

use crate::error::ConfigError;

/// The highest `max_limit` any algorithm accepts: a million calls in flight.
///
/// ```
/// use seawall::bulkhead::adaptive::{Vegas, MAX_LIMIT};
///
/// assert!(Vegas::builder().max_limit(MAX_LIMIT).build().is_ok());
/// assert!(Vegas::builder().max_limit(MAX_LIMIT + 1).build().is_err());
/// ```
pub const MAX_LIMIT: u32 = 1_000_000;

/// One completed call, as the limiter saw it.
///
/// ```
/// use seawall::bulkhead::adaptive::Sample;
/// use std::time::Duration;
///
/// let sample = Sample::new(Duration::from_millis(8), 3, 10, false);
/// assert_eq!(sample.rtt, Duration::from_millis(8));
/// assert_eq!((sample.in_flight, sample.limit, sample.dropped), (3, 10, false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// How long the call took.
    pub rtt: Duration,
    /// Calls in flight when this one started, itself included.
    pub in_flight: u32,
    /// The limit in force when it started.
    pub limit: u32,
    /// The call failed in a way that signals overload (a timeout, a rejection, a 503).
    pub dropped: bool,
}

impl Sample {
    /// A sample of a call that took `rtt`, started with `in_flight` calls in flight
    /// (itself included) under `limit`, and was `dropped` or not.
    ///
    /// ```
    /// use seawall::bulkhead::adaptive::Sample;
    /// use std::time::Duration;
    ///
    /// let timed_out = Sample::new(Duration::from_secs(1), 40, 40, true);
    /// assert!(timed_out.dropped);
    /// ```
    pub fn new(rtt: Duration, in_flight: u32, limit: u32, dropped: bool) -> Self {
        Self {
            rtt,
            in_flight,
            limit,
            dropped,
        }
    }
}

/// An algorithm that turns samples into a concurrency limit.
///
/// Implementations keep their state in atomics: [`update`](Self::update) is called
/// concurrently from many threads, takes `&self`, never blocks and never allocates.
///
/// ```
/// use seawall::bulkhead::adaptive::{LimitAlgorithm, Sample};
/// use std::sync::atomic::{AtomicU32, Ordering};
///
/// /// Halves the limit on a drop, adds one otherwise.
/// #[derive(Debug)]
/// struct Halving(AtomicU32);
///
/// impl LimitAlgorithm for Halving {
///     fn initial_limit(&self) -> u32 { 10 }
///     fn min_limit(&self) -> u32 { 1 }
///     fn max_limit(&self) -> u32 { 100 }
///     fn update(&self, sample: Sample) -> u32 {
///         let step = |l: u32| if sample.dropped { l / 2 } else { l + 1 };
///         let clamp = |l: u32| l.clamp(self.min_limit(), self.max_limit());
///         let prev = self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
///             Some(clamp(step(l)))
///         });
///         clamp(step(prev.unwrap_or_else(|l| l)))
///     }
/// }
///
/// let limit = Halving(AtomicU32::new(10));
/// let drop = Sample::new(std::time::Duration::from_millis(5), 10, 10, true);
/// assert_eq!(limit.update(drop), 5);
/// ```
pub trait LimitAlgorithm: Send + Sync + std::fmt::Debug + 'static {
    /// The limit to use before the first sample.
    fn initial_limit(&self) -> u32;

    /// The lowest limit [`update`](Self::update) returns.
    fn min_limit(&self) -> u32;

    /// The highest limit [`update`](Self::update) returns.
    fn max_limit(&self) -> u32;

    /// Learn from one completed call; return the limit to use from now on (within
    /// `min_limit..=max_limit`).
    fn update(&self, sample: Sample) -> u32;
}

/// Shares one algorithm between several limiters, or keeps a handle to read it.
///
/// ```
/// use seawall::bulkhead::adaptive::{Aimd, LimitAlgorithm};
/// use std::sync::Arc;
///
/// let shared = Arc::new(Aimd::builder().build()?);
/// let for_the_bulkhead: Arc<Aimd> = shared.clone();
/// assert_eq!(for_the_bulkhead.initial_limit(), shared.limit());
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
impl<T: LimitAlgorithm> LimitAlgorithm for Arc<T> {
    fn initial_limit(&self) -> u32 {
        (**self).initial_limit()
    }

    fn min_limit(&self) -> u32 {
        (**self).min_limit()
    }

    fn max_limit(&self) -> u32 {
        (**self).max_limit()
    }

    fn update(&self, sample: Sample) -> u32 {
        (**self).update(sample)
    }
}

/// The whole calls of `limit`, within `min..=max` whatever the float holds.
fn to_limit(limit: f64, min: u32, max: u32) -> u32 {
    (limit.floor() as u32).clamp(min, max)
}

// ===== configuration checks shared by the builders =====

fn check(
    ok: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    ConfigError::check("adaptive", ok, field, reason)
}

fn check_limits(initial: u32, min: u32, max: u32) -> Result<(), ConfigError> {
    check(min >= 1, "min_limit", || {
        "must be at least 1 (got 0)".to_owned()
    })?;
    check(max <= MAX_LIMIT, "max_limit", || {
        format!("must be at most {MAX_LIMIT} (got {max})")
    })?;
    check(max >= min, "max_limit", || {
        format!("must be at least min_limit ({min}) (got {max})")
    })?;
    check((min..=max).contains(&initial), "initial_limit", || {
        format!("must be within min_limit..=max_limit ({min}..={max}) (got {initial})")
    })
}

fn check_smoothing(smoothing: f64) -> Result<(), ConfigError> {
    check(smoothing > 0.0 && smoothing <= 1.0, "smoothing", || {
        format!("must be above 0 and at most 1.0 (got {smoothing})")
    })
}

fn check_probe_interval(rounds: u32) -> Result<(), ConfigError> {
    check(rounds >= 1, "probe_interval", || {
        "must be at least 1 round (got 0)".to_owned()
    })
}
