//! Inspect and resize a bulkhead at run time.

use std::fmt;
use std::sync::Arc;

use super::limiter::Shared;

/// A handle to one bulkhead, from [`BulkheadLayer::handle`](super::BulkheadLayer::handle):
/// read its counters and change its limit while it runs. Clones refer to the same
/// bulkhead.
///
/// ```
/// use seawall::bulkhead::BulkheadLayer;
///
/// let layer = BulkheadLayer::builder().max_concurrent(10).build().unwrap();
/// let handle = layer.handle();
/// assert_eq!((handle.in_flight(), handle.limit(), handle.waiting()), (0, 10, 0));
/// handle.set_limit(4).unwrap();
/// assert_eq!(handle.limit(), 4);
/// assert!(handle.set_limit(0).is_err());
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bulkhead's name (the `policy` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Calls in flight now (each holding a permit).
    pub fn in_flight(&self) -> u32 {
        self.shared.lane.in_flight()
    }

    /// Callers queued for a permit now.
    pub fn waiting(&self) -> u32 {
        self.shared.lane.waiting()
    }

    /// The current limit on calls in flight.
    pub fn limit(&self) -> u32 {
        self.shared.lane.limit()
    }

    /// Calls rejected with [`BulkheadFull`](crate::error::BulkheadFull) since the bulkhead
    /// was built.
    pub fn rejections(&self) -> u64 {
        self.shared.rejections()
    }

    /// Change the limit while the bulkhead runs. Raising it admits queued callers at
    /// once. Lowering it takes no permit away: calls in flight finish, and nobody is
    /// admitted until fewer than the new limit are in flight. A limit of zero is a
    /// [`ConfigError`](crate::error::ConfigError).
    pub fn set_limit(&self, limit: u32) -> Result<(), crate::error::ConfigError> {
        if limit == 0 {
            return Err(crate::error::ConfigError::new(
                "bulkhead",
                "limit",
                "must be at least 1 (got 0)".to_owned(),
            ));
        }
        self.shared.set_limit(limit);
        Ok(())
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("in_flight", &self.in_flight())
            .field("waiting", &self.waiting())
            .field("limit", &self.limit())
            .finish()
    }
}
