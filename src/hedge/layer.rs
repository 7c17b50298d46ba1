use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::latency::{LatencyWindow, SLICES};
use super::{Delay, Handle, Hedge, Policy, Shared};
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;
use crate::retry::budget::RetryBudget;
use crate::retry::replay::CloneRequest;

/// The most hedges a call may send.
const MAX_HEDGES: u32 = 16;
/// The longest percentile window.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// The default percentile.
const DEFAULT_PERCENTILE: f64 = 0.95;
/// The default percentile window.
const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// The default number of latencies the window must hold before hedging.
const DEFAULT_MIN_SAMPLES: u32 = 100;

/// Applies hedging to services; see the [module docs](super). Every service it builds
/// shares one delay, one budget and one set of counts.
///
/// ```
/// use seawall::hedge::HedgeLayer;
/// use seawall::retry::budget::RetryBudget;
/// use std::time::Duration;
///
/// // Hedge the slowest 5 % of calls, at most 5 % more load (plus 1 hedge a second).
/// let budget = RetryBudget::builder().ratio(0.05).min_per_sec(1.0).build()?;
/// let layer = HedgeLayer::builder()
///     .name("search")
///     .percentile(0.95)
///     .window(Duration::from_secs(60))
///     .min_samples(200)
///     .budget(budget)
///     .build()?;
/// assert_eq!(layer.handle().delay(), None); // no latencies yet: no hedging
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct HedgeLayer<C = ErrorsAsFailures, R = CloneRequest> {
    policy: Arc<Policy<C, R>>,
}

impl HedgeLayer {
    /// A builder with the defaults: hedge at the 95th percentile of the latencies over
    /// 30 s, once 100 are known; at most 1 hedge per call; a new budget with the
    /// defaults of [`RetryBudget::builder`] (20 % plus 10/s over 10 s), deposited into
    /// for each request.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    ///
    /// let layer = HedgeLayer::builder().build()?;
    /// assert_eq!(layer.handle().name(), "default");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn builder() -> Builder {
        Builder {
            name: "default".to_owned(),
            delay: None,
            percentile: None,
            window: None,
            min_samples: None,
            max_hedges: 1,
            budget: None,
            deposit: true,
            classifier: ErrorsAsFailures,
            replay: CloneRequest,
        }
    }
}

impl<C, R> HedgeLayer<C, R> {
    /// A handle to the delay and counts shared by every service this layer builds.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use std::time::Duration;
    ///
    /// let layer = HedgeLayer::builder().delay(Duration::from_millis(30)).build()?;
    /// let handle = layer.handle();
    /// assert_eq!(handle.delay(), Some(Duration::from_millis(30)));
    /// assert_eq!(handle.snapshot().hedges, 0);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.policy.shared.clone())
    }

    /// The budget hedges are withdrawn from.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    ///
    /// let layer = HedgeLayer::builder().build()?;
    /// assert_eq!(layer.budget().snapshot().withdrawals, 0);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn budget(&self) -> &RetryBudget {
        &self.policy.shared.budget
    }
}

impl<C, R> Clone for HedgeLayer<C, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
        }
    }
}

impl<C, R> fmt::Debug for HedgeLayer<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.policy.shared;
        f.debug_struct("HedgeLayer")
            .field("name", &shared.name)
            .field("delay", &shared.delay)
            .field("max_hedges", &shared.max_hedges)
            .field("budget", &shared.budget)
            .field("deposit", &shared.deposit)
            .finish_non_exhaustive()
    }
}

impl<S, C, R> Layer<S> for HedgeLayer<C, R> {
    type Service = Hedge<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Hedge::new(inner, self.policy.clone())
    }
}

/// Configures a [`HedgeLayer`]; [`build`](Self::build) checks every value and names the
/// first bad one.
///
/// ```
/// use seawall::hedge::HedgeLayer;
///
/// let err = HedgeLayer::builder().percentile(1.0).build().unwrap_err();
/// assert_eq!((err.component(), err.field()), ("hedge", "percentile"));
/// ```
pub struct Builder<C = ErrorsAsFailures, R = CloneRequest> {
    name: String,
    delay: Option<Duration>,
    percentile: Option<f64>,
    window: Option<Duration>,
    min_samples: Option<u32>,
    max_hedges: u32,
    budget: Option<RetryBudget>,
    deposit: bool,
    classifier: C,
    replay: R,
}

impl<C, R> fmt::Debug for Builder<C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("delay", &self.delay)
            .field("percentile", &self.percentile)
            .field("window", &self.window)
            .field("min_samples", &self.min_samples)
            .field("max_hedges", &self.max_hedges)
            .field("budget", &self.budget)
            .field("deposit", &self.deposit)
            .finish_non_exhaustive()
    }
}

impl<C, R> Builder<C, R> {
    /// The layer's name: the `policy` label of its metrics and tracing events. Default
    /// `"default"`; an empty name is a [`ConfigError`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Send a hedge when a call has not answered after `delay` (a fixed delay, instead of
    /// the default percentile). A zero delay sends every copy at once (as the budget
    /// allows) when the first attempt is not ready at once.
    ///
    /// Setting both this and [`percentile`](Self::percentile) is a [`ConfigError`].
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Send a hedge when a call has taken longer than the `p`-th percentile (within 0 and
    /// 1, both excluded) of the latencies in the [`window`](Self::window), e.g. 0.95 (the
    /// default) hedges about the slowest 5 % of calls. See the
    /// [module docs](super#the-percentile-delay) for what is recorded and how precisely.
    /// A value outside that range (NaN included) is a [`ConfigError`].
    pub fn percentile(mut self, p: f64) -> Self {
        self.percentile = Some(p);
        self
    }

    /// How long a latency counts toward the percentile (default 30 s, at least 6 ms, at
    /// most a day), kept in 6 slices. Only with a percentile delay: a value out of range,
    /// or set with a fixed [`delay`](Self::delay), is a [`ConfigError`].
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// How many latencies the window must hold before any call is hedged (default 100,
    /// at least 1). Only with a percentile delay: zero, or a value set with a fixed
    /// [`delay`](Self::delay), is a [`ConfigError`].
    pub fn min_samples(mut self, samples: u32) -> Self {
        self.min_samples = Some(samples);
        self
    }

    /// The most hedges one call may send, each one delay after the previous attempt
    /// (default 1; 1 to 16). Every hedge adds load when the downstream is slowest; past
    /// one or two, more copies rarely cut latency further. A value outside 1 to 16 is a
    /// [`ConfigError`].
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.max_hedges = hedges;
        self
    }

    /// Withdraw each hedge from `budget`, and deposit one into it for each request this
    /// layer receives. Use this when no retry layer deposits into the same budget;
    /// otherwise use [`shared_budget`](Self::shared_budget). Default: a new budget with
    /// the defaults of [`RetryBudget::builder`].
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self.deposit = true;
        self
    }

    /// Withdraw each hedge from `budget`, and deposit nothing: a
    /// [`RetryLayer`](crate::retry::RetryLayer) above this layer, given the same budget,
    /// already deposits one for each request. Depositing here too would count each
    /// request twice, and count each retry as a new request. See
    /// [Sharing a budget](super#sharing-a-budget).
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use seawall::retry::budget::RetryBudget;
    /// use seawall::retry::RetryLayer;
    ///
    /// let budget = RetryBudget::builder().ratio(0.1).build()?;
    /// let retry = RetryLayer::builder().budget(budget.clone()).build()?;
    /// let hedge = HedgeLayer::builder().shared_budget(budget).build()?;
    /// let stack = tower::ServiceBuilder::new().layer(retry).layer(hedge);
    /// # let _ = stack;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn shared_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self.deposit = false;
        self
    }

    /// What an answer is (default [`ErrorsAsFailures`]): the first attempt whose result
    /// it does not call a failure wins.
    ///
    /// ```
    /// use seawall::classify::{classify_fn, Classification};
    /// use seawall::hedge::HedgeLayer;
    ///
    /// // A 5xx status is a failure: wait for the other attempts.
    /// let layer = HedgeLayer::builder()
    ///     .classifier(classify_fn(|r: &Result<u16, std::io::Error>| match r {
    ///         Ok(status) if *status >= 500 => Classification::failure(),
    ///         Ok(_) => Classification::success(),
    ///         Err(_) => Classification::failure(),
    ///     }))
    ///     .build()?;
    /// # let _ = layer;
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2, R> {
        Builder {
            name: self.name,
            delay: self.delay,
            percentile: self.percentile,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            budget: self.budget,
            deposit: self.deposit,
            classifier,
            replay: self.replay,
        }
    }

    /// How a request is copied for its hedges (default [`CloneRequest`]). A request it
    /// does not copy is never hedged: for HTTP, `seawall::http::IdempotentReplay`
    /// (feature `http`) copies only requests that are safe to send twice.
    pub fn replay<R2>(self, replay: R2) -> Builder<C, R2> {
        Builder {
            name: self.name,
            delay: self.delay,
            percentile: self.percentile,
            window: self.window,
            min_samples: self.min_samples,
            max_hedges: self.max_hedges,
            budget: self.budget,
            deposit: self.deposit,
            classifier: self.classifier,
            replay,
        }
    }

    /// Check every value and build the layer.
    pub fn build(self) -> Result<HedgeLayer<C, R>, ConfigError> {
        let check =
            |ok, field, reason: &dyn Fn() -> String| ConfigError::check("hedge", ok, field, reason);
        check(!self.name.is_empty(), "name", &|| {
            "must not be empty".to_owned()
        })?;
        check(
            (1..=MAX_HEDGES).contains(&self.max_hedges),
            "max_hedges",
            &|| {
                format!(
                    "must be between 1 and {MAX_HEDGES} (got {})",
                    self.max_hedges
                )
            },
        )?;
        let delay = match (self.delay, self.percentile) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "hedge",
                    "delay",
                    "set either a fixed delay or a percentile, not both".to_owned(),
                ))
            }
            (Some(delay), None) => {
                let only_with_percentile = || "applies only to a percentile delay".to_owned();
                check(self.window.is_none(), "window", &only_with_percentile)?;
                check(
                    self.min_samples.is_none(),
                    "min_samples",
                    &only_with_percentile,
                )?;
                Delay::Fixed(delay)
            }
            (None, percentile) => {
                let p = percentile.unwrap_or(DEFAULT_PERCENTILE);
                check(p > 0.0 && p < 1.0, "percentile", &|| {
                    format!("must be within 0.0 and 1.0, both excluded (got {p})")
                })?;
                let window = self.window.unwrap_or(DEFAULT_WINDOW);
                let slice_nanos = LatencyWindow::slice_nanos(window)
                    .filter(|_| window <= MAX_WINDOW)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "hedge",
                            "window",
                            format!(
                                "must be between {SLICES} ms (slices of 1 ms) and one day \
                                 (got {window:?})"
                            ),
                        )
                    })?;
                let min_samples = self.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
                check(min_samples >= 1, "min_samples", &|| {
                    "must be at least 1 (got 0)".to_owned()
                })?;
                Delay::Percentile(LatencyWindow::new(p, u64::from(min_samples), slice_nanos))
            }
        };
        let budget = match self.budget {
            Some(budget) => budget,
            None => RetryBudget::builder().build()?,
        };
        Ok(HedgeLayer {
            policy: Arc::new(Policy {
                shared: Arc::new(Shared::new(
                    Arc::from(self.name),
                    delay,
                    self.max_hedges,
                    budget,
                    self.deposit,
                )),
                classifier: self.classifier,
                replay: self.replay,
            }),
        })
    }
}
