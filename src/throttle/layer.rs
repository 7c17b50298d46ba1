use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::handle::Handle;
use super::state::{Config, Shared};
use super::window::MAX_BUCKETS;
use super::Throttle;
use crate::classify::ErrorsAsFailures;
use crate::error::ConfigError;

/// Applies client-side throttling to services. Every service it builds, and every clone
/// of those, shares one window and one rejection probability.
///
/// Build one with [`ThrottleLayer::builder`]; see the [module docs](super) for the
/// behaviour and the defaults.
///
/// ```
/// use seawall::throttle::ThrottleLayer;
/// use std::time::Duration;
///
/// let layer = ThrottleLayer::builder()
///     .name("search")
///     .k(1.5)
///     .window(Duration::from_secs(60))
///     .buckets(12)
///     .build()?;
/// let handle = layer.handle();
/// assert_eq!(handle.probability(), 0.0);
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct ThrottleLayer<C = ErrorsAsFailures> {
    shared: Arc<Shared>,
    classifier: C,
}

impl ThrottleLayer {
    /// A builder with the defaults (see the [module docs](super#defaults)).
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl<C> ThrottleLayer<C> {
    /// A handle to this layer's throttle, shared by every service it builds.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl<C: Clone> Clone for ThrottleLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C> fmt::Debug for ThrottleLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("name", &self.shared.config.name)
            .field("k", &self.shared.config.k)
            .field("window", &self.shared.config.window)
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for ThrottleLayer<C> {
    type Service = Throttle<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Throttle::from_parts(inner, self.shared.clone(), self.classifier.clone())
    }
}

/// Configures a [`ThrottleLayer`]. Every setter takes the value as given;
/// [`build`](Self::build) checks them all and names the first bad one.
///
/// ```
/// use seawall::throttle::ThrottleLayer;
///
/// let err = ThrottleLayer::builder().k(0.5).build().unwrap_err();
/// assert_eq!((err.component(), err.field()), ("throttle", "k"));
/// ```
#[derive(Clone)]
pub struct Builder<C = ErrorsAsFailures> {
    name: String,
    k: f64,
    minimum_calls: u64,
    window: Duration,
    buckets: u32,
    seed: Option<u64>,
    classifier: C,
}

impl Builder {
    fn new() -> Self {
        Self {
            name: "default".to_owned(),
            k: 2.0,
            minimum_calls: 20,
            window: Duration::from_secs(120),
            buckets: 12,
            seed: None,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> Builder<C> {
    /// The throttle's name: the `policy` label of its metrics and tracing events.
    /// Default `"default"`; an empty name is a [`ConfigError`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The multiplier `K`: calls pass freely while the window holds at most `k` requests
    /// per accept. A finite number of at least 1.0 (default 2.0, the SRE book's). Lower
    /// is more aggressive: 1.1 throttles as soon as a tenth of the requests are not
    /// accepted, but then wastes little of the backend's work on requests it rejects;
    /// higher lets more requests through to a struggling backend. Below 1.0 the throttle
    /// would refuse calls to a backend that accepts every one of them, so it is an error.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }

    /// Refuse nothing while the window holds fewer than `calls` requests that were sent
    /// and answered, accepted or failed (default 20, as the circuit breaker's
    /// `minimum_calls`; calls this throttle refused do not count towards it). A few
    /// answers cannot tell an overloaded backend from a blip: without this, one error on
    /// a dependency called a few times a minute would refuse the next call with
    /// probability 1/2, and every refusal, counted as a request, would keep refusing its
    /// healthy calls for much of the window. Zero applies the SRE book's formula from the
    /// first answer.
    ///
    /// ```
    /// use seawall::throttle::ThrottleLayer;
    /// use tower::{Layer, ServiceExt};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let layer = ThrottleLayer::builder().minimum_calls(3).build().unwrap();
    /// let handle = layer.handle();
    /// let svc = layer.layer(tower::service_fn(|()| async { Err::<(), _>("503") }));
    /// let _ = svc.clone().oneshot(()).await;
    /// let _ = svc.clone().oneshot(()).await;
    /// assert_eq!(handle.probability(), 0.0, "two answers: too few to judge");
    /// let _ = svc.clone().oneshot(()).await;
    /// assert_eq!(handle.probability(), 3.0 / 4.0, "three: the SRE book's formula");
    /// # }
    /// ```
    pub fn minimum_calls(mut self, calls: u64) -> Self {
        self.minimum_calls = calls;
        self
    }

    /// How long requests and accepts count (default 120 s, the SRE book's two minutes).
    /// The window slides in steps of `window / buckets`. Zero is a [`ConfigError`].
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many time slots the window is kept in, 1 to 100 (default 12: 10 s each with
    /// the default window). Every call sums them all, so more buckets cost a little more
    /// per call for a smoother slide. Each must be at least 1 ms long.
    pub fn buckets(mut self, buckets: u32) -> Self {
        self.buckets = buckets;
        self
    }

    /// Seed the random generator that decides which calls to refuse, for reproducible
    /// tests. By default every throttle gets a different seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Decide what counts as accepted (default [`ErrorsAsFailures`]): a
    /// [`Success`](crate::classify::Health::Success) is a request the backend accepted, a
    /// [`Failure`](crate::classify::Health::Failure) one it did not, and an
    /// [`Ignored`](crate::classify::Health::Ignored) call counts as nothing (neither a
    /// request nor an accept; the default classifier ignores local rejections by other
    /// seawall layers).
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2> {
        Builder {
            name: self.name,
            k: self.k,
            minimum_calls: self.minimum_calls,
            window: self.window,
            buckets: self.buckets,
            seed: self.seed,
            classifier,
        }
    }

    /// Check every value and build the layer (and with it, the throttle).
    pub fn build(self) -> Result<ThrottleLayer<C>, ConfigError> {
        check(!self.name.is_empty(), "name", || {
            "must not be empty".to_owned()
        })?;
        check(self.k.is_finite() && self.k >= 1.0, "k", || {
            format!(
                "must be a finite number >= 1.0 (got {}); below 1.0 a backend that accepts every request would be throttled",
                self.k
            )
        })?;
        check(!self.window.is_zero(), "window", || {
            "must be longer than zero".to_owned()
        })?;
        check((1..=MAX_BUCKETS).contains(&self.buckets), "buckets", || {
            format!("must be between 1 and {MAX_BUCKETS} (got {})", self.buckets)
        })?;
        let slot_nanos = crate::time::duration_to_nanos(self.window) / u64::from(self.buckets);
        check(slot_nanos >= 1_000_000, "window", || {
            format!(
                "its buckets must be at least 1ms long (got {:?} in {} buckets)",
                self.window, self.buckets
            )
        })?;
        let config = Config {
            name: Arc::from(self.name),
            k: self.k,
            minimum_calls: self.minimum_calls,
            window: self.window,
            buckets: self.buckets,
            slot_nanos,
            seed: self.seed.unwrap_or_else(crate::time::random_seed),
        };
        Ok(ThrottleLayer {
            shared: Shared::new(config),
            classifier: self.classifier,
        })
    }
}

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("k", &self.k)
            .field("minimum_calls", &self.minimum_calls)
            .field("window", &self.window)
            .field("buckets", &self.buckets)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

fn check(
    ok: bool,
    field: &'static str,
    reason: impl FnOnce() -> String,
) -> Result<(), ConfigError> {
    ConfigError::check("throttle", ok, field, reason)
}
