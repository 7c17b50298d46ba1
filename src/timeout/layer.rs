//! The per-attempt timeout and the overall deadline, as layers and services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::deadline::{
    after, current_instant, in_attempt_scope, in_call_scope, in_scope, now_for_call,
};
use super::future::{DeadlineFuture, ResponseFuture};
use crate::error::ConfigError;
use crate::BoxError;

/// Bounds each attempt: an attempt that takes longer than the timeout (or than what is
/// left of the call's [`Deadline`](super::Deadline), if that is less) is dropped and
/// fails with [`Elapsed`](crate::error::Elapsed) (or
/// [`DeadlineExceeded`](crate::error::DeadlineExceeded) when the deadline was the
/// limit). An attempt whose deadline has already passed fails at once with
/// `DeadlineExceeded` and is not sent.
///
/// In the canonical stack it sits innermost, under the retry, breaker and bulkhead, so
/// that each attempt has its own timeout.
///
/// ```
/// use seawall::error::Elapsed;
/// use seawall::timeout::TimeoutLayer;
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::error::ConfigError> {
/// let layer = TimeoutLayer::new(Duration::from_millis(250))?;
/// let slow = layer.layer(tower::service_fn(|_: ()| async {
///     tokio::time::sleep(Duration::from_secs(10)).await;
///     Ok::<_, seawall::BoxError>("late")
/// }));
/// let error = slow.oneshot(()).await.unwrap_err();
/// assert_eq!(error.downcast_ref::<Elapsed>(), Some(&Elapsed::new(Duration::from_millis(250))));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// Bound each attempt by `timeout`. A zero timeout is a [`ConfigError`]: it would
    /// fail every attempt that is not ready at once.
    ///
    /// ```
    /// use seawall::timeout::TimeoutLayer;
    /// use std::time::Duration;
    ///
    /// let err = TimeoutLayer::new(Duration::ZERO).unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("timeout", "timeout"));
    /// ```
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        ConfigError::check("timeout", !timeout.is_zero(), "timeout", || {
            "must be more than zero".to_owned()
        })?;
        Ok(Self { timeout })
    }

    /// The timeout of each attempt.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service made by [`TimeoutLayer`]; see there.
///
/// ```
/// use seawall::timeout::{Deadline, TimeoutLayer};
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::error::ConfigError> {
/// let svc = TimeoutLayer::new(Duration::from_secs(5))?
///     .layer(tower::service_fn(|n: u32| async move { Ok::<_, seawall::BoxError>(n + 1) }));
/// // Inside a call whose deadline is 100 ms away, the attempt gets 100 ms, not 5 s.
/// let answer = Deadline::after(Duration::from_millis(100)).scope(svc.oneshot(1)).await;
/// assert_eq!(answer.unwrap(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S> Timeout<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwrap the service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let inner = &mut self.inner;
        let timeout = self.timeout;
        // The clock is read here only when there is a deadline to check; otherwise the
        // attempt's clock starts at its first `Pending` (a future does nothing before
        // it is polled, and one that is ready at once needs no clock at all). Either
        // way the service below sees the attempt's end as the deadline, so that what it
        // sends downstream (`grpc-timeout`, `x-request-timeout-ms`) is the attempt's
        // time, not the whole call's.
        let Some(deadline) = current_instant() else {
            let future = in_attempt_scope(timeout, || inner.call(request));
            return ResponseFuture::new(future, timeout, None, false);
        };
        let now = now_for_call();
        if deadline <= now {
            return ResponseFuture::rejected();
        }
        let own = after(now, timeout);
        let (end, by_deadline) = if deadline < own {
            (deadline, true)
        } else {
            (own, false)
        };
        let future = in_call_scope(end, now, || inner.call(request));
        ResponseFuture::new(future, timeout, Some(end), by_deadline)
    }
}

/// Bounds a whole call, every attempt, backoff and hedge of it, by one deadline, and
/// makes that deadline the [current one](super::Deadline::current) for every layer it
/// wraps. A call still running at the deadline is dropped and fails with
/// [`DeadlineExceeded`](crate::error::DeadlineExceeded).
///
/// The deadline is `timeout` after the call, or the deadline the caller already has
/// (from an incoming request, or an outer layer) if that is earlier: an inherited
/// deadline is never extended. A call whose deadline has already passed fails at once
/// and is not sent.
///
/// If the inner service makes the caller wait in `poll_ready` (a bulkhead's queue, a
/// breaker in backpressure mode), the wait is bounded too: by `timeout` from its start,
/// or the inherited deadline if that is earlier. A wait still going then ends (readiness
/// says "ready"), and the call that follows fails unsent with `DeadlineExceeded`. A wait
/// that ends in readiness leaves nothing behind: the call's own deadline starts when the
/// call is made. (A service cannot tell the caller that began a wait from a later one,
/// after the first gave up: so the time a wait took is not charged to the call that
/// follows it, and a readiness that ran out and was never used is looked at afresh by
/// the next `poll_ready` rather than failing an unrelated call. A later caller that
/// finds the inner service still not ready takes over the wait under way, and its end.)
///
/// In the canonical stack it sits outermost, over the retry and hedge layers.
///
/// ```
/// use seawall::error::DeadlineExceeded;
/// use seawall::retry::{backoff::ConstantBackoff, RetryLayer};
/// use seawall::timeout::DeadlineLayer;
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::BoxError> {
/// let svc = ServiceBuilder::new()
///     .layer(DeadlineLayer::new(Duration::from_secs(1))?)
///     .layer(RetryLayer::builder().backoff(ConstantBackoff::new(Duration::from_millis(1))).build()?)
///     .service_fn(|_: ()| async {
///         tokio::time::sleep(Duration::from_millis(700)).await;
///         Err::<(), seawall::BoxError>("unavailable".into())
///     });
/// // The first attempt fails after 700 ms; the retry is cut off at 1 s.
/// let error = svc.oneshot(()).await.unwrap_err();
/// assert!(error.downcast_ref::<DeadlineExceeded>().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    /// Give each call at most `timeout` in all. A zero timeout is a [`ConfigError`]:
    /// every call would fail unsent.
    ///
    /// ```
    /// use seawall::timeout::DeadlineLayer;
    /// use std::time::Duration;
    ///
    /// let err = DeadlineLayer::new(Duration::ZERO).unwrap_err();
    /// assert_eq!((err.component(), err.field()), ("deadline", "timeout"));
    /// ```
    pub fn new(timeout: Duration) -> Result<Self, ConfigError> {
        ConfigError::check("deadline", !timeout.is_zero(), "timeout", || {
            "must be more than zero".to_owned()
        })?;
        Ok(Self { timeout })
    }

    /// The most time a call may take in all.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            timeout: self.timeout,
            waiting: None,
        }
    }
}

/// The service made by [`DeadlineLayer`]; see there.
///
/// ```
/// use seawall::timeout::{Deadline, DeadlineLayer};
/// use std::time::Duration;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), seawall::error::ConfigError> {
/// let svc = DeadlineLayer::new(Duration::from_secs(3))?.layer(tower::service_fn(|_: ()| async {
///     // Inner layers and the service itself see the call's deadline.
///     Ok::<_, seawall::BoxError>(Deadline::current().map(|d| d.remaining()))
/// }));
/// assert_eq!(svc.oneshot(()).await.unwrap(), Some(Duration::from_secs(3)));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DeadlineService<S> {
    inner: S,
    timeout: Duration,
    /// Set while the inner service keeps `poll_ready` waiting, so that the wait ends at
    /// its deadline; cleared when the wait ends.
    waiting: Option<WaitingForReady>,
}

#[derive(Debug)]
struct WaitingForReady {
    /// When the wait ends: `timeout` after it began, or the inherited deadline.
    deadline: Instant,
    /// Boxed: allocated only when readiness has to wait, never on a ready service.
    timer: Pin<Box<Sleep>>,
    /// The deadline passed while waiting, and readiness said "ready": the next call
    /// fails unsent.
    expired: bool,
}

impl<S: Clone> Clone for DeadlineService<S> {
    /// A clone has not waited for anything yet.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            timeout: self.timeout,
            waiting: None,
        }
    }
}

impl<S> DeadlineService<S> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwrap the service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Readiness has to wait: a timer ends the wait at its deadline.
    #[cold]
    fn start_waiting<E>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        let own = after(Instant::now(), self.timeout);
        let deadline = match current_instant() {
            Some(inherited) => inherited.min(own),
            None => own,
        };
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        let expired = timer.as_mut().poll(cx).is_ready();
        self.waiting = Some(WaitingForReady {
            deadline,
            timer,
            expired,
        });
        if expired {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

impl<S, Req> Service<Req> for DeadlineService<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = DeadlineFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.waiting.as_ref().is_some_and(|waiting| waiting.expired) {
            // Asked again after a wait that ran out, with no call in between: whoever it
            // ran out for has gone (tower lets a caller drop a readiness unused). Look
            // again, rather than fail a later, unrelated call for it.
            self.waiting = None;
        }
        let Some(waiting) = &mut self.waiting else {
            return match self.inner.poll_ready(cx) {
                Poll::Ready(ready) => Poll::Ready(ready.map_err(Into::into)),
                Poll::Pending => self.start_waiting(cx),
            };
        };
        let inner = &mut self.inner;
        match in_scope(waiting.deadline, || inner.poll_ready(cx)) {
            Poll::Ready(ready) => {
                // The wait is over, and leaves nothing for the call: this poll may come
                // from a new caller, after the one that began the wait gave up, and that
                // caller's call must not inherit the old wait's deadline. (So a failed
                // readiness, with no call after it, also ends the wait.)
                self.waiting = None;
                Poll::Ready(ready.map_err(Into::into))
            }
            Poll::Pending => {
                if waiting.timer.as_mut().poll(cx).is_ready() {
                    waiting.expired = true;
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending
            }
        }
    }

    #[inline]
    fn call(&mut self, request: Req) -> Self::Future {
        let now = Instant::now();
        // A readiness that ran out: the call fails unsent. (A wait still going, for a
        // call made without readiness, is simply over.)
        if let Some(waiting) = self.waiting.take() {
            if waiting.expired {
                return DeadlineFuture::rejected();
            }
        }
        let own = after(now, self.timeout);
        let deadline = match current_instant() {
            Some(inherited) => inherited.min(own),
            None => own,
        };
        if deadline <= now {
            return DeadlineFuture::rejected();
        }
        let inner = &mut self.inner;
        // Inner layers' `call`s (a retry's budget deposit, an attempt timeout) reuse this
        // clock read.
        let future = in_call_scope(deadline, now, || inner.call(request));
        DeadlineFuture::new(future, deadline)
    }
}
