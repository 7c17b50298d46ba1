use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::handle::Handle;
use super::state::{Config, OpenBackoff, Shared, SlowCallRule, WindowKind, MAX_PROBES};
use super::window::{MAX_BUCKETS, MAX_COUNT_WINDOW};
use super::{CircuitBreaker, Readiness};
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;

/// Applies a circuit breaker to services. Every service it builds, and every clone of
/// those, shares one breaker.
///
/// Build one with [`CircuitBreakerLayer::builder`]; see the [module docs](super) for the
/// behaviour and the defaults.
///
/// ```
/// use seawall::circuit_breaker::CircuitBreakerLayer;
/// use std::time::Duration;
///
/// let layer = CircuitBreakerLayer::builder()
///     .name("payments")
///     .failure_rate(0.5)
///     .minimum_calls(20)
///     .consecutive_failures(5)
///     .open_duration(Duration::from_secs(5))
///     .build()?;
/// let handle = layer.handle();
/// # let _ = handle;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    shared: Arc<Shared>,
    classifier: C,
    readiness: Readiness,
}

impl CircuitBreakerLayer {
    /// A builder with the default configuration (see the [module docs](super#defaults)).
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// A handle to this layer's breaker, shared by every service it builds.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl<C: Clone> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
            readiness: self.readiness,
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("name", &self.shared.config.name)
            .field("state", &self.shared.state())
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::from_parts(
            inner,
            self.shared.clone(),
            self.classifier.clone(),
            self.readiness,
        )
    }
}

// ===== builder =====

#[derive(Debug, Clone, Copy)]
enum WindowSpec {
    Count(u32),
    Time { length: Duration, buckets: u32 },
}

/// Configures a [`CircuitBreakerLayer`]. Every setter takes the value as given;
/// [`build`](Self::build) checks them all and names the first bad one.
#[derive(Clone)]
pub struct Builder<C = ErrorsAsFailures> {
    name: String,
    window: WindowSpec,
    failure_rate: Option<f64>,
    minimum_calls: u64,
    slow_calls: Option<(Duration, f64)>,
    consecutive_failures: Option<u32>,
    open_duration: Duration,
    max_open_duration: Duration,
    multiplier: f64,
    jitter: f64,
    reset_backoff_after: Option<Duration>,
    half_open_probes: u32,
    max_half_open_duration: Duration,
    readiness: Readiness,
    seed: Option<u64>,
    classifier: C,
}

impl Builder {
    fn new() -> Self {
        Self {
            name: "default".to_owned(),
            window: WindowSpec::Count(100),
            failure_rate: Some(0.5),
            minimum_calls: 20,
            slow_calls: None,
            consecutive_failures: None,
            open_duration: Duration::from_secs(5),
            max_open_duration: Duration::from_secs(300),
            multiplier: 2.0,
            jitter: 0.1,
            reset_backoff_after: None,
            half_open_probes: 1,
            max_half_open_duration: Duration::from_secs(30),
            readiness: Readiness::FailFast,
            seed: None,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> Builder<C> {
    /// The breaker's name: the `policy` label of its metrics and tracing events.
    /// Default `"default"`; an empty name is a [`ConfigError`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Judge the last `calls` calls (default: a count window of 100 calls). Zero, or
    /// more than a million, is a [`ConfigError`].
    pub fn count_window(mut self, calls: u32) -> Self {
        self.window = WindowSpec::Count(calls);
        self
    }

    /// Judge the calls of the last `length`, kept in `buckets` buckets of
    /// `length / buckets` each (e.g. 10 s in 10 buckets). Zero or more than 1000
    /// buckets, or buckets shorter than 1 ms, are a [`ConfigError`].
    pub fn time_window(mut self, length: Duration, buckets: u32) -> Self {
        self.window = WindowSpec::Time { length, buckets };
        self
    }

    /// Trip when at least this share of the window's calls failed (0.0 to 1.0; default
    /// 0.5), once the window holds [`minimum_calls`](Self::minimum_calls). A value
    /// outside `0.0..=1.0` (NaN included) is a [`ConfigError`].
    pub fn failure_rate(mut self, threshold: f64) -> Self {
        self.failure_rate = Some(threshold);
        self
    }

    /// Do not trip on the failure rate (use the slow-call or consecutive-failure rules;
    /// with neither set, the breaker could never trip, and that is a [`ConfigError`]
    /// naming `failure_rate`).
    pub fn without_failure_rate(mut self) -> Self {
        self.failure_rate = None;
        self
    }

    /// The rate rules judge the window only once it holds at least this many calls
    /// (default 20). Zero, or (for a count window) more than the window's size, is a
    /// [`ConfigError`].
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// Calls that take at least `threshold` are slow; trip when at least `rate` (0.0 to
    /// 1.0) of the window's calls were slow. Off by default. With it on, a half-open probe
    /// that is slow counts as a failed probe. A zero threshold, or a rate outside
    /// `0.0..=1.0` (NaN included), is a [`ConfigError`].
    pub fn slow_calls(mut self, threshold: Duration, rate: f64) -> Self {
        self.slow_calls = Some((threshold, rate));
        self
    }

    /// Trip after this many failures in a row, whatever the window says. Off by default.
    /// Zero is a [`ConfigError`].
    pub fn consecutive_failures(mut self, failures: u32) -> Self {
        self.consecutive_failures = Some(failures);
        self
    }

    /// How long the breaker stays open after its first trip (default 5 s). Zero is a
    /// [`ConfigError`].
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = duration;
        self
    }

    /// The longest the open duration may grow to on repeated trips (default 300 s).
    /// Less than [`open_duration`](Self::open_duration) is a [`ConfigError`].
    pub fn max_open_duration(mut self, duration: Duration) -> Self {
        self.max_open_duration = duration;
        self
    }

    /// Each trip that follows another without a healthy period between them multiplies
    /// the open duration by this factor (at least 1.0; default 2.0; 1.0 keeps it fixed).
    /// Below 1.0, NaN or infinite is a [`ConfigError`].
    pub fn open_duration_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Shorten each open duration by a random share of up to `jitter` (0.0 to 1.0; default
    /// 0.1), so that clients that tripped together do not probe together. A value
    /// outside `0.0..=1.0` (NaN included) is a [`ConfigError`].
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// After the breaker has stayed closed this long, the next trip starts again from
    /// [`open_duration`](Self::open_duration) (default: the max open duration). Zero is a
    /// [`ConfigError`].
    pub fn reset_backoff_after(mut self, healthy: Duration) -> Self {
        self.reset_backoff_after = Some(healthy);
        self
    }

    /// How many probes the half-open state admits (default 1). All of them must succeed
    /// to close the breaker; the first that fails re-opens it. Zero, or more than 10 000,
    /// is a [`ConfigError`].
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open_probes = probes;
        self
    }

    /// The longest the breaker stays half-open waiting for probes that never finish
    /// (default 30 s); when it is reached with a probe still out, the breaker re-opens at
    /// that instant (whether or not a call arrives; its open period counts from there)
    /// and the late probes count for nothing. A half-open period with no probe out has
    /// nothing to wait for: the next probe starts the limit afresh. Put a timeout below
    /// the breaker so probes finish well before this. Zero is a [`ConfigError`].
    pub fn max_half_open_duration(mut self, duration: Duration) -> Self {
        self.max_half_open_duration = duration;
        self
    }

    /// Fail fast (default) or exert backpressure while the breaker rejects; see
    /// [`Readiness`].
    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// Seed the jitter's random generator, for reproducible tests. By default every
    /// breaker gets a different seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Decide what counts as success, failure or neither (default
    /// [`ErrorsAsFailures`]).
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2> {
        Builder {
            name: self.name,
            window: self.window,
            failure_rate: self.failure_rate,
            minimum_calls: self.minimum_calls,
            slow_calls: self.slow_calls,
            consecutive_failures: self.consecutive_failures,
            open_duration: self.open_duration,
            max_open_duration: self.max_open_duration,
            multiplier: self.multiplier,
            jitter: self.jitter,
            reset_backoff_after: self.reset_backoff_after,
            half_open_probes: self.half_open_probes,
            max_half_open_duration: self.max_half_open_duration,
            readiness: self.readiness,
            seed: self.seed,
            classifier,
        }
    }

    /// Check every value and build the layer (and with it, the breaker).
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let window = match self.window {
            WindowSpec::Count(size) => {
                check(
                    (1..=MAX_COUNT_WINDOW).contains(&size),
                    "count_window",
                    || format!("must be between 1 and {MAX_COUNT_WINDOW} calls (got {size})"),
                )?;
                check(
                    self.minimum_calls <= u64::from(size),
                    "minimum_calls",
                    || {
                        format!(
                            "must not exceed the count window of {size} calls (got {})",
                            self.minimum_calls
                        )
                    },
                )?;
                WindowKind::Count { size }
            }
            WindowSpec::Time { length, buckets } => {
                check((1..=MAX_BUCKETS).contains(&buckets), "time_window", || {
                    format!("must have between 1 and {MAX_BUCKETS} buckets (got {buckets})")
                })?;
                let bucket_nanos = crate::time::duration_to_nanos(length) / u64::from(buckets);
                check(bucket_nanos >= 1_000_000, "time_window", || {
                    format!(
                        "buckets must be at least 1ms long (got {length:?} in {buckets} buckets)"
                    )
                })?;
                WindowKind::Time {
                    bucket_nanos,
                    buckets,
                }
            }
        };
        check(self.minimum_calls >= 1, "minimum_calls", || {
            "must be at least 1 (got 0)".to_owned()
        })?;
        if let Some(rate) = self.failure_rate {
            check_rate("failure_rate", rate)?;
        }
        let slow_calls = match self.slow_calls {
            Some((threshold, rate)) => {
                check(!threshold.is_zero(), "slow_calls", || {
                    "threshold must be longer than zero".to_owned()
                })?;
                check_rate("slow_calls", rate)?;
                Some(SlowCallRule { threshold, rate })
            }
            None => None,
        };
        if let Some(n) = self.consecutive_failures {
            check(n >= 1, "consecutive_failures", || {
                "must be at least 1 (got 0)".to_owned()
            })?;
        }
        check(
            self.failure_rate.is_some()
                || slow_calls.is_some()
                || self.consecutive_failures.is_some(),
            "failure_rate",
            || {
                "no trip rule is set: keep the failure rate or set slow_calls or consecutive_failures".to_owned()
            },
        )?;
        check(!self.open_duration.is_zero(), "open_duration", || {
            "must be longer than zero".to_owned()
        })?;
        check(
            self.max_open_duration >= self.open_duration,
            "max_open_duration",
            || {
                format!(
                    "must be at least open_duration ({:?}); got {:?}",
                    self.open_duration, self.max_open_duration
                )
            },
        )?;
        check(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "open_duration_multiplier",
            || format!("must be a finite number >= 1.0 (got {})", self.multiplier),
        )?;
        check((0.0..=1.0).contains(&self.jitter), "jitter", || {
            format!("must be within 0.0..=1.0 (got {})", self.jitter)
        })?;
        let reset_after = self.reset_backoff_after.unwrap_or(self.max_open_duration);
        check(!reset_after.is_zero(), "reset_backoff_after", || {
            "must be longer than zero".to_owned()
        })?;
        check(
            (1..=MAX_PROBES).contains(&self.half_open_probes),
            "half_open_probes",
            || {
                format!(
                    "must be between 1 and {MAX_PROBES} (got {})",
                    self.half_open_probes
                )
            },
        )?;
        check(
            !self.max_half_open_duration.is_zero(),
            "max_half_open_duration",
            || "must be longer than zero".to_owned(),
        )?;
        check(!self.name.is_empty(), "name", || {
            "must not be empty".to_owned()
        })?;

        let config = Config {
            name: Arc::from(self.name),
            failure_rate: self.failure_rate,
            slow_calls,
            consecutive_failures: self.consecutive_failures,
            minimum_calls: self.minimum_calls,
            open: OpenBackoff {
                base: self.open_duration,
                max: self.max_open_duration,
                multiplier: self.multiplier,
                jitter: self.jitter,
                reset_after,
            },
            half_open_probes: self.half_open_probes,
            max_half_open: self.max_half_open_duration,
        };
        let seed = self.seed.unwrap_or_else(crate::time::random_seed);
        Ok(CircuitBreakerLayer {
            shared: Shared::new(config, window, seed),
            classifier: self.classifier,
            readiness: self.readiness,
        })
    }
}

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("window", &self.window)
            .field("failure_rate", &self.failure_rate)
            .field("minimum_calls", &self.minimum_calls)
            .field("slow_calls", &self.slow_calls)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("open_duration", &self.open_duration)
            .field("max_open_duration", &self.max_open_duration)
            .field("half_open_probes", &self.half_open_probes)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

fn check(
    ok: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    ConfigError::check("circuit_breaker", ok, field, reason)
}

fn check_rate(field: &'static str, rate: f64) -> Result<(), ConfigError> {
    check((0.0..=1.0).contains(&rate), field, || {
        format!("must be a rate within 0.0..=1.0 (got {rate})")
    })
}
