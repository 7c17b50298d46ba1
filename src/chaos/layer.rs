use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::handle::Handle;
use super::state::{check, check_rate, Action, Config, Shared};
use super::FaultInjection;
use crate::error::ConfigError;
use crate::BoxError;

/// Injects faults into the calls of the services it wraps: an error, added latency, or a
/// hang, on a seeded random share of the calls, switched on and off at run time through
/// a [`Handle`]. Every service it builds, and every clone of those, shares one switch,
/// one rate and one seeded sequence of decisions.
///
/// Build one with [`FaultLayer::builder`]; see the [module docs](super).
///
/// ```
/// use seawall::chaos::{FaultLayer, InjectedFault};
/// use std::time::Duration;
///
/// // Of the calls, 15% get a fault: two thirds of those an error, one third 2 s of
/// // added latency.
/// let layer = FaultLayer::builder()
///     .name("payments")
///     .rate(0.15)
///     .seed(7)
///     .error_value(InjectedFault::new())
///     .weight(2)
///     .latency(Duration::from_secs(2))
///     .build()?;
/// let handle = layer.handle();
/// assert!(!handle.is_enabled(), "inert until switched on");
/// handle.enable();
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FaultLayer {
    shared: Arc<Shared>,
}

impl FaultLayer {
    /// A builder. [`rate`](Builder::rate) and at least one fault must be set.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(1.0).hang().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn builder() -> Builder {
        Builder {
            common: Common::new(),
        }
    }

    /// A handle to this layer's switch, rate and counts, shared by every service it
    /// builds.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.1).hang().build().unwrap();
    /// let handle = layer.handle();
    /// handle.enable();
    /// assert!(layer.handle().is_enabled());
    /// ```
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("name", &self.shared.name)
            .field("enabled", &self.shared.is_enabled())
            .field("rate", &self.shared.rate())
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = FaultInjection<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultInjection::from_parts(inner, self.shared.clone())
    }
}

/// The settings both fault layers' builders share, and the faults added so far.
#[derive(Clone)]
pub(crate) struct Common {
    name: String,
    rate: Option<f64>,
    seed: Option<u64>,
    enabled: bool,
    faults: Vec<(Action, u32)>,
    /// The first misuse of a modifier (`weight`, `retry_after`), reported by `build`.
    misuse: Option<ConfigError>,
}

impl Common {
    pub(crate) fn new() -> Self {
        Self {
            name: "default".to_owned(),
            rate: None,
            seed: None,
            enabled: false,
            faults: Vec::new(),
            misuse: None,
        }
    }

    pub(crate) fn name(&mut self, name: String) {
        self.name = name;
    }

    pub(crate) fn rate(&mut self, rate: f64) {
        self.rate = Some(rate);
    }

    pub(crate) fn seed(&mut self, seed: u64) {
        self.seed = Some(seed);
    }

    pub(crate) fn enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub(crate) fn push(&mut self, action: Action) {
        self.faults.push((action, 1));
    }

    /// Remember the first misuse; `build` reports it.
    pub(crate) fn misuse(&mut self, field: &'static str, reason: impl FnOnce() -> String) {
        if self.misuse.is_none() {
            self.misuse = Some(ConfigError::new("chaos", field, reason()));
        }
    }

    pub(crate) fn weight(&mut self, weight: u32) {
        match self.faults.last_mut() {
            Some((_, w)) => *w = weight,
            None => self.misuse("weight", || {
                "sets the weight of the fault added just before it, and no fault was added yet"
                    .to_owned()
            }),
        }
    }

    /// The fault added last, to modify.
    #[cfg(feature = "http")]
    pub(crate) fn last_mut(&mut self) -> Option<&mut Action> {
        self.faults.last_mut().map(|(action, _)| action)
    }

    pub(crate) fn build(self) -> Result<Arc<Shared>, ConfigError> {
        if let Some(err) = self.misuse {
            return Err(err);
        }
        check(!self.name.is_empty(), "name", || {
            "must not be empty".to_owned()
        })?;
        let rate = self.rate.ok_or_else(|| {
            ConfigError::new(
                "chaos",
                "rate",
                "must be set: the probability of a fault per call, from 0.0 to 1.0".to_owned(),
            )
        })?;
        check_rate(rate)?;
        check(!self.faults.is_empty(), "faults", || {
            "add at least one fault (an error, a latency, a hang...)".to_owned()
        })?;
        for (action, weight) in &self.faults {
            check(*weight > 0, "weight", || {
                "must be at least 1 (leave the fault out instead)".to_owned()
            })?;
            if let Action::Latency(latency) = action {
                check(!latency.is_zero(), "latency", || {
                    "must be longer than zero".to_owned()
                })?;
            }
        }
        check(u32::try_from(self.faults.len()).is_ok(), "faults", || {
            "too many faults".to_owned()
        })?;
        Ok(Shared::new(Config {
            name: self.name,
            rate,
            seed: self.seed.unwrap_or_else(crate::time::random_seed),
            enabled: self.enabled,
            faults: self.faults,
        }))
    }
}

impl fmt::Debug for Common {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("rate", &self.rate)
            .field("seed", &self.seed)
            .field("enabled", &self.enabled)
            .field("faults", &self.faults)
            .finish()
    }
}

/// Configures a [`FaultLayer`]: the share of calls that get a fault
/// ([`rate`](Self::rate), required), and the faults ([`error`](Self::error),
/// [`error_value`](Self::error_value), [`latency`](Self::latency), [`hang`](Self::hang);
/// at least one), each with a [`weight`](Self::weight).
///
/// Every setter takes the value as given; [`build`](Self::build) checks them all and
/// names the first bad one.
///
/// ```
/// use seawall::chaos::FaultLayer;
///
/// let err = FaultLayer::builder().rate(1.5).hang().build().unwrap_err();
/// assert_eq!((err.component(), err.field()), ("chaos", "rate"));
///
/// let err = FaultLayer::builder().rate(0.5).build().unwrap_err();
/// assert_eq!(err.field(), "faults");
/// ```
#[derive(Clone)]
pub struct Builder {
    common: Common,
}

impl Builder {
    /// The layer's name: the `policy` label of its metrics and tracing events. Default
    /// `"default"`.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().name("search").rate(0.1).hang().build().unwrap();
    /// assert_eq!(layer.handle().name(), "search");
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.common.name(name.into());
        self
    }

    /// The probability that a call gets a fault, from 0.0 (never) to 1.0 (every call).
    /// Required: there is no default, so that no layer injects more than was asked for.
    /// Change it at run time with [`Handle::set_rate`].
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.01).hang().build().unwrap();
    /// assert_eq!(layer.handle().rate(), 0.01);
    /// ```
    pub fn rate(mut self, rate: f64) -> Self {
        self.common.rate(rate);
        self
    }

    /// Seed the generator that decides which calls get a fault, for reproducible tests
    /// and game days: with the same seed, the n-th call the layer decides on gets the
    /// same decision every run. By default every layer gets a different seed.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.3).seed(42).hang().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.common.seed(seed);
        self
    }

    /// Whether the layer injects faults from the start (default `false`: a fault layer
    /// does nothing until it is switched on with [`Handle::enable`], so that one built
    /// and deployed by mistake is inert). `true` starts it injecting, for a test or a
    /// game-day binary.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.05).hang().build().unwrap();
    /// assert!(!layer.handle().is_enabled());
    /// let layer = FaultLayer::builder().rate(0.05).hang().enabled(true).build().unwrap();
    /// assert!(layer.handle().is_enabled());
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.common.enabled(enabled);
        self
    }

    /// Add an error fault: the call fails with the error `make` returns, boxed as
    /// [`BoxError`], and the inner service is not called (nothing is sent).
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use std::io;
    ///
    /// let layer = FaultLayer::builder()
    ///     .rate(0.1)
    ///     .error(|| io::Error::new(io::ErrorKind::ConnectionReset, "injected reset"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn error<F, E>(mut self, make: F) -> Self
    where
        F: Fn() -> E + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.common
            .push(Action::Error(Arc::new(move || make().into())));
        self
    }

    /// Add an error fault that fails the call with a clone of `error` (see
    /// [`error`](Self::error)).
    ///
    /// ```
    /// use seawall::chaos::{FaultLayer, InjectedFault};
    ///
    /// let layer = FaultLayer::builder()
    ///     .rate(0.1)
    ///     .error_value(InjectedFault::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn error_value<E>(self, error: E) -> Self
    where
        E: Into<BoxError> + Clone + Send + Sync + 'static,
    {
        self.error(move || error.clone())
    }

    /// Add a latency fault: the call waits `latency` (more than zero), then goes on as
    /// usual.
    ///
    /// The inner service is called at once and its future is first polled after the
    /// delay: with clients whose futures do nothing until polled (hyper, reqwest, `async`
    /// functions) the request leaves after the delay, as if the network were slow; with a
    /// service that starts work in `call` (such as `tower::buffer::Buffer`) the work
    /// starts at once and only the answer is delayed.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    /// use std::time::Duration;
    ///
    /// let layer = FaultLayer::builder()
    ///     .rate(0.2)
    ///     .latency(Duration::from_millis(800))
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn latency(mut self, latency: Duration) -> Self {
        self.common.push(Action::Latency(latency));
        self
    }

    /// Add a hang fault: the call never answers, until the caller drops its future (a
    /// timeout above the layer, or a client giving up). It models a downstream that
    /// accepted the request and never replies; the inner service is not called, so the
    /// real downstream sees no load and no side effects from these calls.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let layer = FaultLayer::builder().rate(0.05).hang().build().unwrap();
    /// # let _ = layer;
    /// ```
    pub fn hang(mut self) -> Self {
        self.common.push(Action::Hang);
        self
    }

    /// The weight of the fault added just before (default 1): when a call gets a fault,
    /// each fault is chosen in proportion to its weight. At least 1; calling it before
    /// any fault is added is a [`ConfigError`] from [`build`](Self::build).
    ///
    /// ```
    /// use seawall::chaos::{FaultLayer, InjectedFault};
    ///
    /// // 10% of calls fail and 5% hang: 15% get a fault, split 2 to 1.
    /// let layer = FaultLayer::builder()
    ///     .rate(0.15)
    ///     .error_value(InjectedFault::new())
    ///     .weight(2)
    ///     .hang()
    ///     .weight(1)
    ///     .build()
    ///     .unwrap();
    /// # let _ = layer;
    /// ```
    pub fn weight(mut self, weight: u32) -> Self {
        self.common.weight(weight);
        self
    }

    /// Check every value and build the layer.
    ///
    /// ```
    /// use seawall::chaos::FaultLayer;
    ///
    /// let err = FaultLayer::builder().hang().build().unwrap_err();
    /// assert_eq!(err.field(), "rate"); // required
    /// ```
    pub fn build(self) -> Result<FaultLayer, ConfigError> {
        Ok(FaultLayer {
            shared: self.common.build()?,
        })
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.common.fmt(f)
    }
}
