//! How long to wait before each retry.
//!
//! A retry sent at once hits a downstream that just failed; a fleet of clients retrying
//! on the same schedule hits it together. Backoff spreads retries out: each waits longer
//! than the last (exponentially), up to a cap, with random jitter so that clients that
//! failed together do not retry together.
//!
//! [`ExponentialBackoff`] implements the four schedules of the AWS Architecture Blog's
//! "Exponential Backoff And Jitter", with `exp = min(cap, base * multiplier^(retry - 1))`:
//!
//! | [`Jitter`] | delay before retry `n` |
//! |---|---|
//! | `None` | `exp` |
//! | `Full` (default) | uniform in `0..=exp` |
//! | `Equal` | `exp / 2` plus uniform in `0..=exp / 2` |
//! | `Decorrelated` | `min(cap, uniform in base..=previous * 3)` (previous starts at `base`) |
//!
//! Defaults follow Envoy's retry policy: a 25 ms base, a 250 ms cap, doubling, full
//! jitter. [`ConstantBackoff`] waits the same every time; [`backoff_fn`] lets a closure
//! decide from the retry number, the previous delay and the failed result (say, a longer
//! wait after a 429 than after a 503).
//!
//! ```
//! use seawall::retry::backoff::{Backoff, ExponentialBackoff, Jitter, Retrying};
//! use std::time::Duration;
//!
//! let backoff = ExponentialBackoff::builder()
//!     .base(Duration::from_millis(100))
//!     .max(Duration::from_secs(1))
//!     .jitter(Jitter::None)
//!     .build()?;
//! let failed: Result<(), &str> = Err("503");
//! let delays: Vec<_> = (1..=5)
//!     .map(|n| backoff.delay(Retrying::new(n, Duration::ZERO, &failed)))
//!     .collect();
//! let ms = Duration::from_millis;
//! assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000)]);
//! # Ok::<(), seawall::error::ConfigError>(())
//! ```

use std::fmt;
use std::time::Duration;

use crate::error::ConfigError;
use crate::time::{duration_to_nanos, Jitter as Random};

/// One retry about to be scheduled: which one, the delay before the previous one, and
/// the result that failed.
#[derive(Debug)]
#[non_exhaustive]
pub struct Retrying<'a, T, E> {
    /// Which retry this is: 1 for the first (the second attempt in all).
    pub retry: u32,
    /// The delay chosen before the previous retry (zero before the first).
    pub previous_delay: Duration,
    /// The result of the attempt that failed.
    pub result: &'a Result<T, E>,
}

impl<'a, T, E> Retrying<'a, T, E> {
    /// Describe retry number `retry`.
    pub fn new(retry: u32, previous_delay: Duration, result: &'a Result<T, E>) -> Self {
        Self {
            retry,
            previous_delay,
            result,
        }
    }
}

/// Chooses the delay before a retry.
///
/// Implemented by [`ExponentialBackoff`], [`ConstantBackoff`] and closures wrapped with
/// [`backoff_fn`]. The retry layer bounds whatever it returns by the caller's deadline.
pub trait Backoff<T, E> {
    /// The delay before `retrying`.
    fn delay(&self, retrying: Retrying<'_, T, E>) -> Duration;
}

/// The jitter of an [`ExponentialBackoff`]; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No jitter: exactly the exponential delay.
    None,
    /// Uniform between zero and the exponential delay (the default; spreads retries
    /// the most).
    #[default]
    Full,
    /// Half the exponential delay, plus uniform up to the other half.
    Equal,
    /// Uniform between the base and three times the previous delay, capped.
    Decorrelated,
}

/// Exponential backoff with a cap and jitter; see the [module docs](self).
pub struct ExponentialBackoff {
    base: Duration,
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
    random: Random,
}

impl ExponentialBackoff {
    /// A builder with Envoy's defaults: 25 ms base, 250 ms cap, doubling, full jitter.
    pub fn builder() -> ExponentialBackoffBuilder {
        ExponentialBackoffBuilder::default()
    }

    /// The defaults, which are valid by construction.
    pub(crate) fn envoy_defaults() -> Self {
        let defaults = ExponentialBackoffBuilder::default();
        ExponentialBackoff {
            base: defaults.base,
            max: defaults.max,
            multiplier: defaults.multiplier,
            jitter: defaults.jitter,
            random: Random::new(crate::time::random_seed()),
        }
    }

    /// The delay before retry `retry` without jitter: `min(max, base * multiplier^(retry - 1))`.
    pub fn nominal(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let nanos = duration_to_nanos(self.base) as f64 * self.multiplier.powi(exponent);
        let max = duration_to_nanos(self.max);
        if nanos.is_finite() && nanos < max as f64 {
            Duration::from_nanos(nanos as u64)
        } else {
            self.max
        }
    }

    /// A duration uniform in `low..=high` (nanosecond resolution).
    fn uniform(&self, low: Duration, high: Duration) -> Duration {
        let (low, high) = (duration_to_nanos(low), duration_to_nanos(high.max(low)));
        // Float to integer `as` saturates, so the product can never overflow.
        let offset = ((high - low) as f64 * self.random.next_unit()) as u64;
        Duration::from_nanos(low.saturating_add(offset))
    }
}

impl<T, E> Backoff<T, E> for ExponentialBackoff {
    fn delay(&self, retrying: Retrying<'_, T, E>) -> Duration {
        let exp = self.nominal(retrying.retry);
        match self.jitter {
            Jitter::None => exp,
            Jitter::Full => self.uniform(Duration::ZERO, exp),
            Jitter::Equal => exp / 2 + self.uniform(Duration::ZERO, exp - exp / 2),
            Jitter::Decorrelated => {
                let previous = retrying.previous_delay.max(self.base);
                let high = previous.saturating_mul(3).min(self.max);
                self.uniform(self.base.min(self.max), high)
            }
        }
    }
}

impl fmt::Debug for ExponentialBackoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExponentialBackoff")
            .field("base", &self.base)
            .field("max", &self.max)
            .field("multiplier", &self.multiplier)
            .field("jitter", &self.jitter)
            .finish_non_exhaustive()
    }
}

/// Configures an [`ExponentialBackoff`]; [`build`](Self::build) checks every value.
#[derive(Debug, Clone)]
pub struct ExponentialBackoffBuilder {
    base: Duration,
    max: Duration,
    multiplier: f64,
    jitter: Jitter,
    seed: Option<u64>,
}

impl Default for ExponentialBackoffBuilder {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
            multiplier: 2.0,
            jitter: Jitter::Full,
            seed: None,
        }
    }
}

impl ExponentialBackoffBuilder {
    /// The delay before the first retry, before jitter (default 25 ms). Zero is a
    /// [`ConfigError`].
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The longest delay (default 250 ms). Less than [`base`](Self::base) is a
    /// [`ConfigError`].
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// How much each delay grows over the last (at least 1.0; default 2.0). Below 1.0,
    /// NaN or infinite is a [`ConfigError`].
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// The jitter (default [`Jitter::Full`]).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Seed the jitter, for reproducible tests (default: a different seed each time).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Check every value and build.
    pub fn build(self) -> Result<ExponentialBackoff, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("backoff", field, reason));
        if self.base.is_zero() {
            return err("base", "must be longer than zero".to_owned());
        }
        if self.max < self.base {
            return err(
                "max",
                format!(
                    "must be at least the base ({:?}); got {:?}",
                    self.base, self.max
                ),
            );
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return err(
                "multiplier",
                format!("must be a finite number >= 1.0 (got {})", self.multiplier),
            );
        }
        Ok(ExponentialBackoff {
            base: self.base,
            max: self.max,
            multiplier: self.multiplier,
            jitter: self.jitter,
            random: Random::new(self.seed.unwrap_or_else(crate::time::random_seed)),
        })
    }
}

/// The same delay before every retry.
///
/// ```
/// use seawall::retry::backoff::{Backoff, ConstantBackoff, Retrying};
/// use std::time::Duration;
///
/// let backoff = ConstantBackoff::new(Duration::from_millis(50));
/// let failed: Result<(), ()> = Err(());
/// assert_eq!(backoff.delay(Retrying::new(7, Duration::ZERO, &failed)), Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConstantBackoff {
    delay: Duration,
}

impl ConstantBackoff {
    /// Wait `delay` before every retry (zero: retry at once).
    pub const fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl<T, E> Backoff<T, E> for ConstantBackoff {
    fn delay(&self, _retrying: Retrying<'_, T, E>) -> Duration {
        self.delay
    }
}

/// A backoff made from a closure; see [`backoff_fn`].
#[derive(Clone, Copy)]
pub struct BackoffFn<F> {
    f: F,
}

impl<F> fmt::Debug for BackoffFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackoffFn").finish_non_exhaustive()
    }
}

/// A backoff from a closure that sees the retry number, the previous delay and the
/// failed result.
///
/// ```
/// use seawall::retry::backoff::{backoff_fn, Backoff, Retrying};
/// use std::time::Duration;
///
/// // Throttled (429): wait a second; anything else: 100 ms per retry so far.
/// let backoff = backoff_fn(|r: Retrying<'_, u16, std::io::Error>| match r.result {
///     Ok(429) => Duration::from_secs(1),
///     _ => Duration::from_millis(100) * r.retry,
/// });
/// assert_eq!(backoff.delay(Retrying::new(1, Duration::ZERO, &Ok(429))), Duration::from_secs(1));
/// assert_eq!(backoff.delay(Retrying::new(3, Duration::ZERO, &Ok(503))), Duration::from_millis(300));
/// ```
pub fn backoff_fn<F>(f: F) -> BackoffFn<F> {
    BackoffFn { f }
}

impl<T, E, F> Backoff<T, E> for BackoffFn<F>
where
    F: Fn(Retrying<'_, T, E>) -> Duration,
{
    fn delay(&self, retrying: Retrying<'_, T, E>) -> Duration {
        (self.f)(retrying)
    }
}
