//! Inspect and reset a throttle at run time.

use std::fmt;
use std::sync::Arc;

use super::state::Shared;
use super::Snapshot;

/// A handle to one throttle, from [`ThrottleLayer::handle`](super::ThrottleLayer::handle)
/// or [`Throttle::handle`](super::Throttle::handle): read its window and its rejection
/// probability, or forget the window. Clones refer to the same throttle.
///
/// ```
/// use seawall::throttle::ThrottleLayer;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let layer = ThrottleLayer::builder().name("search").minimum_calls(0).build().unwrap();
/// let handle = layer.handle();
/// let svc = layer.layer(tower::service_fn(|fail: bool| async move {
///     if fail { Err("503") } else { Ok(()) }
/// }));
/// let _ = svc.clone().oneshot(false).await;
/// let _ = svc.clone().oneshot(true).await;
/// let _ = svc.clone().oneshot(true).await;
///
/// let snap = handle.snapshot();
/// assert_eq!((snap.requests, snap.accepts), (3, 1));
/// // max(0, (3 - 2 * 1) / (3 + 1))
/// assert_eq!(snap.probability, 0.25);
/// assert_eq!(handle.probability(), 0.25);
///
/// handle.reset();
/// assert_eq!(handle.snapshot().requests, 0);
/// assert_eq!(handle.probability(), 0.0);
/// # }
/// ```
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The throttle's name (the `policy` label of its metrics).
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The window's requests and accepts now, the rejection probability they give, and
    /// the calls refused so far.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// The probability that the next call is refused, from the window as it is now:
    /// `max(0, (requests - k * accepts) / (requests + 1))`, or zero while fewer than
    /// [`minimum_calls`](super::Builder::minimum_calls) requests were sent.
    pub fn probability(&self) -> f64 {
        self.shared.probability_of(self.shared.counts())
    }

    /// Forget the window's counts: the throttle lets every call through until the
    /// backend rejects enough of them again. For an operator who knows the backend is
    /// back, or for tests. (The count of refused calls is kept.)
    pub fn reset(&self) {
        self.shared.reset();
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("name", &self.name())
            .field("snapshot", &self.snapshot())
            .finish()
    }
}
