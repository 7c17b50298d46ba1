use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::Shared;

/// A view of a hedge layer: its current delay and what it has done. Cheap to clone;
/// shared with the layer and every service it built.
///
/// ```
/// use seawall::hedge::HedgeLayer;
/// use std::time::Duration;
///
/// let layer = HedgeLayer::builder().percentile(0.9).min_samples(20).build()?;
/// let handle = layer.handle();
/// let snapshot = handle.snapshot();
/// assert_eq!(snapshot.delay, None); // warming up: fewer than 20 latencies known
/// assert_eq!((snapshot.samples, snapshot.hedges), (0, 0));
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// What a hedge layer has done, from [`Handle::snapshot`].
///
/// ```
/// use seawall::hedge::HedgeLayer;
/// use std::time::Duration;
///
/// let handle = HedgeLayer::builder().delay(Duration::from_millis(5)).build()?.handle();
/// let s = handle.snapshot();
/// assert_eq!(s.delay, Some(Duration::from_millis(5)));
/// assert_eq!((s.hedges, s.wins, s.denials), (0, 0, 0));
/// # Ok::<(), seawall::error::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgeSnapshot {
    /// The delay a call made now would wait before its first hedge; `None` while a
    /// percentile window holds too few latencies (no call is hedged).
    pub delay: Option<Duration>,
    /// Latencies in the percentile window now (always 0 with a fixed delay).
    pub samples: u64,
    /// Hedges passed to the inner service since the layer was built (including those a
    /// seawall layer below then rejected; see `rejected`).
    pub hedges: u64,
    /// Calls answered by a hedge rather than by their first attempt.
    pub wins: u64,
    /// Hedges the budget refused.
    pub denials: u64,
    /// Hedges rejected by a seawall layer below (an open breaker, a full bulkhead, a
    /// throttle): they never reached the downstream, and their retry went back to the
    /// budget.
    pub rejected: u64,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The layer's name (its `policy` label).
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    ///
    /// let handle = HedgeLayer::builder().name("search").build()?.handle();
    /// assert_eq!(handle.name(), "search");
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The delay a call made now would wait before its first hedge: the fixed delay, or
    /// the cached percentile (recomputed first if it is due, as a call would); `None`
    /// while too few latencies are known.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    /// use std::time::Duration;
    ///
    /// let handle = HedgeLayer::builder().delay(Duration::from_millis(5)).build()?.handle();
    /// assert_eq!(handle.delay(), Some(Duration::from_millis(5)));
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn delay(&self) -> Option<Duration> {
        self.shared.delay(None)
    }

    /// The delay, the latencies in the window, and the counts now.
    ///
    /// ```
    /// use seawall::hedge::HedgeLayer;
    ///
    /// let handle = HedgeLayer::builder().build()?.handle();
    /// assert_eq!(handle.snapshot().wins, 0);
    /// # Ok::<(), seawall::error::ConfigError>(())
    /// ```
    pub fn snapshot(&self) -> HedgeSnapshot {
        let (hedges, wins, denials, rejected) = self.shared.counts();
        HedgeSnapshot {
            delay: self.delay(),
            samples: self.shared.samples(),
            hedges,
            wins,
            denials,
            rejected,
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.shared.name)
            .field("snapshot", &self.snapshot())
            .finish()
    }
}
