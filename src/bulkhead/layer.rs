use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::adaptive::LimitAlgorithm;
use super::handle::Handle;
use super::limiter::Shared;
use super::partition::{PartitionSpec, PartitionedBulkheadLayer};
use super::{Bulkhead, OnResponse};
use crate::error::ConfigError;

/// Applies a bulkhead to services. Every service it builds, and every clone of those,
/// shares one set of permits.
///
/// ```
/// use seawall::bulkhead::BulkheadLayer;
/// use std::time::Duration;
///
/// let layer = BulkheadLayer::builder()
///     .name("payments")
///     .max_concurrent(20)
///     .max_wait(Duration::from_millis(50))
///     .max_waiting(100)
///     .build()?;
/// let handle = layer.handle();
/// # let _ = handle;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub struct BulkheadLayer<H = OnResponse> {
    shared: Arc<Shared>,
    max_wait: Duration,
    _release: PhantomData<fn() -> H>,
}

impl BulkheadLayer {
    /// A builder with the default configuration (see the [module docs](super#defaults)).
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl<H> BulkheadLayer<H> {
    /// A handle to this layer's bulkhead, shared by every service it builds.
    pub fn handle(&self) -> Handle {
        Handle::new(self.shared.clone())
    }

    /// The bulkhead's shared state and its max wait (for the server shed layer).
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn parts(&self) -> (Arc<Shared>, Duration) {
        (self.shared.clone(), self.max_wait)
    }

    /// The same bulkhead, giving permits back as `H2` says (see [`Release`](super::Release)).
    pub fn release_on<H2>(self) -> BulkheadLayer<H2> {
        BulkheadLayer {
            shared: self.shared,
            max_wait: self.max_wait,
            _release: PhantomData,
        }
    }
}

impl<H> Clone for BulkheadLayer<H> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            max_wait: self.max_wait,
            _release: PhantomData,
        }
    }
}

impl<H> fmt::Debug for BulkheadLayer<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadLayer")
            .field("name", &self.shared.name)
            .field("limit", &self.shared.lane.limit())
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl<S, H> Layer<S> for BulkheadLayer<H> {
    type Service = Bulkhead<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Bulkhead::from_parts(inner, self.shared.clone(), self.max_wait)
    }
}

/// The most callers that may wait for a permit at once, unless
/// [`Builder::max_waiting`] says otherwise (Envoy's default for `max_pending_requests`).
///
/// ```
/// use seawall::bulkhead::{BulkheadLayer, DEFAULT_MAX_WAITING};
/// use std::time::Duration;
///
/// assert_eq!(DEFAULT_MAX_WAITING, 1024);
/// // Waiting is off by default; with a max wait, at most 1024 callers queue.
/// let layer = BulkheadLayer::builder().max_wait(Duration::from_millis(50)).build()?;
/// # let _ = layer;
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
pub const DEFAULT_MAX_WAITING: u32 = 1024;

/// Configures a [`BulkheadLayer`]; [`build`](Self::build) checks every value and names
/// the first bad one.
#[derive(Clone)]
pub struct Builder {
    name: String,
    max_concurrent: u32,
    /// `max_concurrent` was set explicitly (it may not be, with an adaptive limit).
    max_concurrent_set: bool,
    adaptive: Option<Arc<dyn LimitAlgorithm>>,
    max_wait: Duration,
    max_waiting: Option<u32>,
    partitions: Vec<PartitionSpec>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            name: "default".to_owned(),
            max_concurrent: 25,
            max_concurrent_set: false,
            adaptive: None,
            max_wait: Duration::ZERO,
            max_waiting: None,
            partitions: Vec::new(),
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("max_concurrent", &self.max_concurrent)
            .field("adaptive", &self.adaptive)
            .field("max_wait", &self.max_wait)
            .field("max_waiting", &self.max_waiting)
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl Builder {
    /// The bulkhead's name: the `policy` label of its metrics. Default `"default"`; an
    /// empty name is a [`ConfigError`].
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The most calls in flight at once (default 25, as Resilience4j). Zero is a
    /// [`ConfigError`].
    pub fn max_concurrent(mut self, calls: u32) -> Self {
        self.max_concurrent = calls;
        self.max_concurrent_set = true;
        self
    }

    /// Let `algorithm` find the limit from the latency and failures of the calls (see
    /// [`adaptive`](super::adaptive)): the limit starts at its initial limit and moves
    /// within its bounds as calls complete. [`Handle::limit`] and the
    /// `seawall_bulkhead_limit` gauge show it. Calls that fail count as drops (overload);
    /// local rejections by an inner seawall layer and cancelled calls teach nothing.
    ///
    /// The algorithm owns the limit, so setting [`max_concurrent`](Self::max_concurrent)
    /// too is a [`ConfigError`]. So is an algorithm whose limits make no sense (a
    /// [`min_limit`](LimitAlgorithm::min_limit) of zero, or an
    /// [`initial_limit`](LimitAlgorithm::initial_limit) outside `min_limit..=max_limit`):
    /// the algorithms of this crate check theirs when built, a hand-written one is
    /// checked here.
    pub fn adaptive(mut self, algorithm: impl LimitAlgorithm) -> Self {
        self.adaptive = Some(Arc::new(algorithm));
        self
    }

    /// How long a caller may wait for a permit, in FIFO order, before it is rejected
    /// (default zero: reject at once when every permit is taken).
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// The most callers that may wait at once; more are rejected at once (default
    /// [`DEFAULT_MAX_WAITING`], 1024). Only meaningful with a positive
    /// [`max_wait`](Self::max_wait): zero, or any value with a zero `max_wait`, is a
    /// [`ConfigError`]. A caller that gives up leaves the queue in O(1), so even a long
    /// queue costs the releasers little; what the bound caps is the memory and the
    /// latency a queue can hide.
    pub fn max_waiting(mut self, callers: u32) -> Self {
        self.max_waiting = Some(callers);
        self
    }

    /// Reserve `share` (0.0 to 1.0) of [`max_concurrent`](Self::max_concurrent) for the
    /// class of traffic `name`; see [`build_partitioned`](Self::build_partitioned). Each
    /// class gets `floor(share * max_concurrent)` permits of its own.
    pub fn partition(mut self, name: impl Into<String>, share: f64) -> Self {
        self.partitions.push(PartitionSpec {
            name: name.into(),
            share,
        });
        self
    }

    /// Build a [`PartitionedBulkheadLayer`] from the declared
    /// [`partition`](Self::partition)s, with `select` naming each request's class (an
    /// unknown name falls into the first partition). Partitions shed at once, so a
    /// positive [`max_wait`](Self::max_wait) or any [`max_waiting`](Self::max_waiting) is
    /// a [`ConfigError`], as are an [`adaptive`](Self::adaptive) limit, shares outside
    /// (0, 1], shares adding up to more than 1, repeated names, and a share too small for
    /// one permit.
    pub fn build_partitioned<F>(
        self,
        select: F,
    ) -> Result<PartitionedBulkheadLayer<F>, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("bulkhead", field, reason));
        if self.partitions.is_empty() {
            return err("partition", "no partition is declared".to_owned());
        }
        if !self.max_wait.is_zero() {
            return err(
                "max_wait",
                "partitions shed at once: the class is known only in `call`".to_owned(),
            );
        }
        if self.max_waiting.is_some() {
            return err(
                "max_waiting",
                "partitions shed at once, so nobody waits: leave max_waiting unset".to_owned(),
            );
        }
        if self.adaptive.is_some() {
            return err(
                "adaptive",
                "partitions have fixed shares; an adaptive limit is not supported with them"
                    .to_owned(),
            );
        }
        if self.max_concurrent == 0 {
            return err("max_concurrent", "must be at least 1 (got 0)".to_owned());
        }
        if self.name.is_empty() {
            return err("name", "must not be empty".to_owned());
        }
        PartitionedBulkheadLayer::build(&self.name, self.max_concurrent, &self.partitions, select)
    }

    /// Check every value and build the layer (and with it, the bulkhead).
    pub fn build(self) -> Result<BulkheadLayer, ConfigError> {
        let err = |field, reason: String| Err(ConfigError::new("bulkhead", field, reason));
        if !self.partitions.is_empty() {
            return err(
                "partition",
                "partitions are declared: build them with build_partitioned".to_owned(),
            );
        }
        if self.name.is_empty() {
            return err("name", "must not be empty".to_owned());
        }
        if self.max_concurrent == 0 {
            return err("max_concurrent", "must be at least 1 (got 0)".to_owned());
        }
        if self.adaptive.is_some() && self.max_concurrent_set {
            return err(
                "max_concurrent",
                "the adaptive algorithm sets the limit; set its min and max limits instead"
                    .to_owned(),
            );
        }
        if let Some(algorithm) = &self.adaptive {
            let (initial, min, max) = (
                algorithm.initial_limit(),
                algorithm.min_limit(),
                algorithm.max_limit(),
            );
            if min == 0 || !(min..=max).contains(&initial) {
                return err(
                    "adaptive",
                    format!(
                        "the algorithm's limits must satisfy 1 <= min_limit <= initial_limit \
                         <= max_limit (got min {min}, initial {initial}, max {max})"
                    ),
                );
            }
        }
        if let Some(waiting) = self.max_waiting {
            if waiting == 0 {
                return err(
                    "max_waiting",
                    "must be at least 1 (got 0); use a zero max_wait to never wait".to_owned(),
                );
            }
            if self.max_wait.is_zero() {
                return err(
                    "max_waiting",
                    "bounds waiting callers, but max_wait is zero so nobody waits".to_owned(),
                );
            }
        }
        Ok(BulkheadLayer {
            shared: Shared::new(
                Arc::from(self.name),
                self.max_concurrent,
                self.max_waiting.unwrap_or(DEFAULT_MAX_WAITING),
                self.adaptive,
            ),
            max_wait: self.max_wait,
            _release: PhantomData,
        })
    }
}
